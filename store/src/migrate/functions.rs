//! Repeatable migrations: `migrations/functions/*.sql`, one current
//! definition per SQL function, applied after the versioned migrations
//! whenever a file's text differs from the one recorded in
//! `gpuwatch_schema_functions`.

use tokio_postgres::Client;

use super::{checksum, render, run_statements, FUNCTIONS};
use crate::{backend::Backend, Result, StoreError};

/// One embedded file of `migrations/functions/`: the current definition
/// of one SQL function (or a small group), `CREATE OR REPLACE`d by every
/// `migrate` after the versioned migrations whenever its text changed.
#[derive(Debug)]
pub struct Repeatable {
    /// File name in `migrations/functions/`.
    pub name: &'static str,
    /// File contents.
    pub sql: &'static str,
}

async fn applied(client: &Client) -> Result<Vec<(String, String)>> {
    let rows = client
        .query("SELECT name, checksum FROM gpuwatch_schema_functions", &[])
        .await
        .map_err(|e| StoreError::query("reading gpuwatch_schema_functions", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Applies the function files whose text differs from what was last
/// applied (all of them on a new database, or one migrated before the
/// functions had files of their own), so an unchanged file costs nothing
/// and a second `migrate` changes nothing.
pub(super) async fn apply(
    client: &mut Client,
    backend: &Backend,
    dbname: &str,
) -> Result<Vec<&'static str>> {
    let done = applied(client).await?;
    let mut applied = Vec::new();
    for f in FUNCTIONS {
        let sum = checksum(f.sql);
        if done.iter().any(|(n, s)| n == f.name && *s == sum) {
            continue;
        }
        let sql = render(f.sql, backend);
        let file = format!("functions/{}", f.name);
        let tx = client
            .transaction()
            .await
            .map_err(|e| StoreError::query(format!("starting {file}"), e))?;
        run_statements(&tx, &file, &sql, dbname).await?;
        tx.execute(
            "INSERT INTO gpuwatch_schema_functions (name, checksum) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
            &[&f.name, &sum],
        )
        .await
        .map_err(|e| StoreError::query(format!("recording {file}"), e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::query(format!("committing {file}"), e))?;
        tracing::info!(function = f.name, "applied function file");
        applied.push(f.name);
    }
    Ok(applied)
}

/// Function files this binary embeds that the database has not applied,
/// or applied with other contents.
pub(super) async fn pending(client: &Client) -> Result<Vec<String>> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('gpuwatch_schema_functions') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| StoreError::query("looking for gpuwatch_schema_functions", e))?
        .get(0);
    let done = if exists {
        applied(client).await?
    } else {
        Vec::new()
    };
    Ok(FUNCTIONS
        .iter()
        .filter_map(|f| match done.iter().find(|(n, _)| n == f.name) {
            None => Some(format!("functions/{} not applied", f.name)),
            Some((_, sum)) if *sum != checksum(f.sql) => {
                Some(format!("functions/{} applied with other contents", f.name))
            }
            Some(_) => None,
        })
        .collect())
}
