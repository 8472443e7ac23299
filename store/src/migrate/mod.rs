//! Versioned migrations: the SQL files of `migrations/`, embedded in the
//! binary, applied in order, each in its own transaction, recorded in
//! `gpuwatch_schema_migrations` with a checksum.
//!
//! The metric tables differ per backend, so `0007_monitoring.sql` carries two
//! markers rendered here: `__PARTITION_CLAUSE__` (empty for TimescaleDB,
//! `PARTITION BY RANGE (collected_at)` for plain PostgreSQL) and
//! `__MAKE_TIME_SERIES__` (the function that makes a hypertable, or the
//! first daily partitions).

mod split;

use tokio_postgres::Client;

use crate::{
    backend::{detect, Backend, BackendPreference},
    connect_one,
    error::db_message,
    pool::redact,
    Result, StoreConfig, StoreError,
};

/// One embedded migration file.
#[derive(Debug)]
pub struct Migration {
    /// Number from the file name.
    pub version: i32,
    /// File name in `migrations/`.
    pub name: &'static str,
    /// File contents.
    pub sql: &'static str,
}

macro_rules! migration {
    ($v:expr, $f:literal) => {
        Migration {
            version: $v,
            name: $f,
            sql: include_str!(concat!("../../../migrations/", $f)),
        }
    };
}

static MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_init_database.sql"),
    migration!(2, "0002_system_config.sql"),
    migration!(3, "0003_users_and_permissions.sql"),
    migration!(4, "0004_hosts_and_devices.sql"),
    migration!(5, "0005_environments.sql"),
    migration!(6, "0006_data_and_images.sql"),
    migration!(7, "0007_monitoring.sql"),
    migration!(8, "0008_billing.sql"),
    migration!(9, "0009_training_and_inference.sql"),
    migration!(10, "0010_notifications_and_logs.sql"),
    migration!(11, "0011_alerts_and_webhooks.sql"),
    migration!(12, "0012_issues_and_requirements.sql"),
    migration!(13, "0013_relationships.sql"),
    migration!(14, "0014_tiers.sql"),
    migration!(15, "0015_series.sql"),
    migration!(16, "0016_api_tokens.sql"),
    migration!(17, "0017_fleet_tiers.sql"),
    migration!(18, "0018_alerting.sql"),
    migration!(19, "0019_billing.sql"),
    migration!(20, "0020_exporter.sql"),
    migration!(21, "0021_dashboards.sql"),
    migration!(25, "0025_replication.sql"),
];

/// The embedded migrations, in order.
pub fn migrations() -> &'static [Migration] {
    MIGRATIONS
}

/// What a `migrate` run did.
#[derive(Debug)]
pub struct MigrateReport {
    /// Backend of the metric tables.
    pub backend: Backend,
    /// Server version string.
    pub server_version: String,
    /// Files applied by this run, in order.
    pub applied: Vec<&'static str>,
    /// Files that were already applied.
    pub already_applied: usize,
}

/// Session-level advisory lock key ("gpuwatch migrate"), so concurrent
/// `migrate` runs queue instead of racing.
const MIGRATE_LOCK: i64 = 0x6770_7577_6d69_6772;

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS gpuwatch_schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    backend    text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())";

/// Brings the database at `cfg.url` up to the newest schema.
pub async fn migrate(cfg: &StoreConfig) -> Result<MigrateReport> {
    let mut client = connect_one(cfg).await?;
    let q = |what: &'static str| move |e| StoreError::query(what, e);
    client
        .query("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(q("taking the migration lock"))?;
    let result = run(&mut client, cfg).await;
    // The lock is session-scoped and dies with the connection anyway.
    let _ = client
        .query("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK])
        .await;
    result
}

async fn run(client: &mut Client, cfg: &StoreConfig) -> Result<MigrateReport> {
    client
        .batch_execute(&format!("SET client_min_messages = warning; {LEDGER}"))
        .await
        .map_err(|e| ledger_error(cfg, e))?;
    let applied = applied(client).await?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(&(v, _)) = applied.iter().find(|(v, _)| *v > latest) {
        return Err(StoreError::MigrationFromFuture { version: v, latest });
    }
    for m in MIGRATIONS {
        if let Some((_, sum)) = applied.iter().find(|(v, _)| *v == m.version) {
            let current = checksum(m.sql);
            if *sum != current {
                return Err(StoreError::MigrationChanged {
                    file: m.name.into(),
                    applied: sum.clone(),
                    current,
                });
            }
        }
    }
    let backend = choose_backend(client, cfg).await?;
    let mut report = MigrateReport {
        backend: backend.clone(),
        server_version: detect(client).await?.server_version,
        applied: Vec::new(),
        already_applied: applied.len(),
    };
    for m in MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
    {
        apply(client, m, &backend, cfg).await?;
        tracing::info!(
            migration = m.name,
            backend = backend.name(),
            "applied migration"
        );
        report.applied.push(m.name);
    }
    record_backend(client, &backend).await?;
    Ok(report)
}

fn ledger_error(cfg: &StoreConfig, e: tokio_postgres::Error) -> StoreError {
    let target = cfg.url.parse().map(|c| redact(&c)).unwrap_or_default();
    StoreError::query(
        format!("creating gpuwatch_schema_migrations in {target}"),
        e,
    )
}

async fn applied(client: &Client) -> Result<Vec<(i32, String)>> {
    let rows = client
        .query(
            "SELECT version, checksum FROM gpuwatch_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(|e| StoreError::query("reading gpuwatch_schema_migrations", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Migrations this binary embeds that the database has not applied, or
/// applied with different contents: what `/ready` checks. An empty list
/// means the schema is current.
pub async fn pending(client: &Client) -> Result<Vec<String>> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('gpuwatch_schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| StoreError::query("looking for gpuwatch_schema_migrations", e))?
        .get(0);
    let done = if exists {
        applied(client).await?
    } else {
        Vec::new()
    };
    Ok(MIGRATIONS
        .iter()
        .filter_map(|m| match done.iter().find(|(v, _)| *v == m.version) {
            None => Some(format!("{} not applied", m.name)),
            Some((_, sum)) if *sum != checksum(m.sql) => {
                Some(format!("{} applied with other contents", m.name))
            }
            Some(_) => None,
        })
        .collect())
}

/// The backend already in use, or the one the preference picks for a new
/// database (creating the timescaledb extension where that is the choice).
async fn choose_backend(client: &Client, cfg: &StoreConfig) -> Result<Backend> {
    let info = detect(client).await?;
    let existing = client
        .query_opt(
            "SELECT relkind::text FROM pg_class WHERE oid = to_regclass('gpu_metrics')",
            &[],
        )
        .await
        .map_err(|e| StoreError::query("looking for gpu_metrics", e))?;
    if let Some(row) = existing {
        let partitioned = row.get::<_, String>(0) == "p";
        return Ok(if partitioned {
            Backend::Postgres
        } else {
            info.backend
        });
    }
    let dbname = dbname(cfg);
    match (cfg.backend, &info.backend) {
        (BackendPreference::Postgres, _) => Ok(Backend::Postgres),
        (_, Backend::TimescaleDb { .. }) => Ok(info.backend),
        (BackendPreference::Timescaledb, _) if !info.timescaledb_available => Err(StoreError::Unsupported(format!(
            "database.backend is \"timescaledb\" but PostgreSQL {} at {dbname:?} has no timescaledb extension; install postgresql-NN-timescaledb (scripts/timescaledb.sh) or set database.backend = \"postgres\"",
            info.server_version
        ))),
        (BackendPreference::Auto, _) if !info.timescaledb_available => Ok(Backend::Postgres),
        (pref, _) => match client.batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb").await {
            Ok(()) => Ok(detect(client).await?.backend),
            Err(e) if pref == BackendPreference::Auto => {
                tracing::warn!(error = %db_message(&e), "timescaledb is installed but cannot be created here; using plain PostgreSQL partitions");
                Ok(Backend::Postgres)
            }
            Err(e) => Err(extension_error("timescaledb", &dbname, &e)),
        },
    }
}

fn extension_error(ext: &str, dbname: &str, e: &tokio_postgres::Error) -> StoreError {
    let reason = db_message(e);
    let hint = if reason.contains("shared_preload_libraries") || reason.contains("preload") {
        "add timescaledb to shared_preload_libraries in postgresql.conf and restart the server"
            .to_string()
    } else {
        format!(
            "connect as a role that may create extensions (superuser, or the database owner with CREATE on it), or have an administrator run CREATE EXTENSION IF NOT EXISTS \"{ext}\" in database {dbname:?} once"
        )
    };
    StoreError::Extension {
        extension: ext.into(),
        dbname: dbname.into(),
        reason,
        hint,
    }
}

/// The database name of `database.url`, for messages.
fn dbname(cfg: &StoreConfig) -> String {
    cfg.url
        .parse::<tokio_postgres::Config>()
        .ok()
        .and_then(|c| c.get_dbname().map(String::from))
        .unwrap_or_default()
}

/// Renders the backend markers of a migration file.
pub(crate) fn render(sql: &str, backend: &Backend) -> String {
    let (clause, func) = match backend {
        Backend::TimescaleDb { .. } => ("", "gpuwatch_make_hypertable"),
        Backend::Postgres => (
            "PARTITION BY RANGE (collected_at)",
            "gpuwatch_make_partitioned",
        ),
    };
    sql.replace("__PARTITION_CLAUSE__", clause)
        .replace("__MAKE_TIME_SERIES__", func)
}

async fn apply(
    client: &mut Client,
    m: &Migration,
    backend: &Backend,
    cfg: &StoreConfig,
) -> Result<()> {
    let sql = render(m.sql, backend);
    let dbname = dbname(cfg);
    let tx = client
        .transaction()
        .await
        .map_err(|e| StoreError::query(format!("starting migration {}", m.name), e))?;
    for (n, stmt) in split::split(&sql).iter().enumerate() {
        if let Err(e) = tx.batch_execute(stmt.sql).await {
            let upper = stmt.sql.to_ascii_uppercase();
            if upper.starts_with("CREATE EXTENSION")
                && e.code().is_some_and(|c| c.code() == "42501")
            {
                let ext = stmt
                    .sql
                    .split_whitespace()
                    .last()
                    .unwrap_or("?")
                    .trim_matches('"');
                return Err(extension_error(ext, &dbname, &e));
            }
            return Err(StoreError::Migration {
                file: m.name.into(),
                statement: n + 1,
                line: stmt.line,
                snippet: stmt
                    .sql
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(80)
                    .collect(),
                reason: db_message(&e),
            });
        }
    }
    tx.execute(
        "INSERT INTO gpuwatch_schema_migrations (version, name, checksum, backend) VALUES ($1, $2, $3, $4)",
        &[&m.version, &m.name, &checksum(m.sql), &backend.name()],
    )
    .await
    .map_err(|e| StoreError::query(format!("recording migration {}", m.name), e))?;
    tx.commit()
        .await
        .map_err(|e| StoreError::query(format!("committing migration {}", m.name), e))
}

/// Records the backend in `system_configs`, touching the row only if it changed,
/// so a second `migrate` writes nothing.
async fn record_backend(client: &Client, backend: &Backend) -> Result<()> {
    client
        .execute(
            "INSERT INTO system_configs (config_key, config_value, config_type, description)
             VALUES ('storage.backend', $1, 'string', 'storage backend chosen by gpuwatch migrate')
             ON CONFLICT (config_key) DO UPDATE SET config_value = EXCLUDED.config_value
             WHERE system_configs.config_value IS DISTINCT FROM EXCLUDED.config_value",
            &[&backend.name()],
        )
        .await
        .map_err(|e| StoreError::query("recording the backend in system_configs", e))?;
    Ok(())
}

/// Detects an edited migration file; not a security measure.
fn checksum(s: &str) -> String {
    format!("{:016x}", crate::fnv1a(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_match_their_files() {
        // Strictly increasing, not contiguous: numbers are reserved per
        // branch (0018-0021), so a branch may lack one until all are merged.
        for (i, m) in MIGRATIONS.iter().enumerate() {
            let prev = if i == 0 { 0 } else { MIGRATIONS[i - 1].version };
            assert!(m.version > prev, "{} is out of order", m.name);
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{}",
                m.name
            );
            assert!(
                !split::split(m.sql).is_empty(),
                "{} has no statement",
                m.name
            );
        }
    }

    #[test]
    fn checksum_changes_with_content() {
        assert_ne!(checksum("SELECT 1"), checksum("SELECT 2"));
        assert_eq!(checksum("x"), checksum("x"));
    }
}
