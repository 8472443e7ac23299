//! Every PostgreSQL query of the sync: the job upsert with its status
//! history, the cursor, rows kept for retry, the cluster record, owners.

use chrono::{DateTime, Utc};
use gpuwatch_store::StoreError;
use tokio_postgres::{types::Json, GenericClient};

use crate::{
    config::{JobBilling, OwnerRule},
    mapping::{MappedJob, JOB_COLUMNS},
    source::{BadRow, ClusterStatusRow, TableVersion},
    JobStatus,
};

type Result<T> = std::result::Result<T, StoreError>;

fn q(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::query(what, e)
}

/// Serialises writers of one cluster (replicas, or a sync next to a
/// backfill) for the rest of the transaction, so the status each history
/// row is compared with is the one committed last.
pub async fn lock_cluster<C: GenericClient>(c: &C, cluster: &str) -> Result<()> {
    c.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('gpuwatch dlworkspace ' || $1, 0))",
        &[&cluster],
    )
    .await
    .map_err(q("locking the cluster's rows"))?;
    Ok(())
}

/// Where a cluster's sync stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cursor {
    /// Highest MySQL `id` read.
    pub last_id: i64,
    /// Highest `lastUpdated` read (upstream tables).
    pub last_updated: Option<DateTime<Utc>>,
}

/// The cluster's cursor; the default (start) when it has none.
pub async fn cursor<C: GenericClient>(c: &C, cluster: &str) -> Result<Cursor> {
    let row = c
        .query_opt(
            "SELECT last_id, last_updated FROM dlworkspace_cursors WHERE cluster_id = $1",
            &[&cluster],
        )
        .await
        .map_err(q("reading dlworkspace_cursors"))?;
    Ok(row
        .map(|r| Cursor {
            last_id: r.get(0),
            last_updated: r.get(1),
        })
        .unwrap_or_default())
}

/// Moves the cursor forward (never back).
pub async fn save_cursor<C: GenericClient>(
    c: &C,
    cluster: &str,
    version: TableVersion,
    cur: &Cursor,
) -> Result<()> {
    c.execute(
        "INSERT INTO dlworkspace_cursors (cluster_id, table_version, last_id, last_updated)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (cluster_id) DO UPDATE SET
             table_version = EXCLUDED.table_version,
             last_id = GREATEST(dlworkspace_cursors.last_id, EXCLUDED.last_id),
             last_updated = GREATEST(dlworkspace_cursors.last_updated, EXCLUDED.last_updated),
             updated_at = now()
         WHERE (dlworkspace_cursors.table_version, dlworkspace_cursors.last_id,
                dlworkspace_cursors.last_updated)
               IS DISTINCT FROM (EXCLUDED.table_version,
                GREATEST(dlworkspace_cursors.last_id, EXCLUDED.last_id),
                GREATEST(dlworkspace_cursors.last_updated, EXCLUDED.last_updated))",
        &[&cluster, &version.name(), &cur.last_id, &cur.last_updated],
    )
    .await
    .map_err(q("saving dlworkspace_cursors"))?;
    Ok(())
}

/// MySQL ids of the cluster's jobs not yet in a final status.
pub async fn open_source_ids<C: GenericClient>(c: &C, cluster: &str) -> Result<Vec<i64>> {
    let sql = format!(
        "SELECT source_id FROM training_jobs WHERE cluster_id = $1 \
         AND job_status NOT IN ({}) AND source_id IS NOT NULL ORDER BY source_id",
        JobStatus::final_sql_list()
    );
    let rows = c
        .query(&sql, &[&cluster])
        .await
        .map_err(q("reading the open jobs of training_jobs"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// MySQL ids of rows kept for retry.
pub async fn retry_ids<C: GenericClient>(c: &C, cluster: &str) -> Result<Vec<i64>> {
    let rows = c
        .query(
            "SELECT source_id FROM dlworkspace_retry WHERE cluster_id = $1 ORDER BY source_id",
            &[&cluster],
        )
        .await
        .map_err(q("reading dlworkspace_retry"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Keeps rows that did not map for the next cycle.
pub async fn record_bad<C: GenericClient>(c: &C, cluster: &str, bad: &[BadRow]) -> Result<()> {
    for b in bad {
        c.execute(
            "INSERT INTO dlworkspace_retry (cluster_id, source_id, job_id, reason)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (cluster_id, source_id) DO UPDATE SET
                 job_id = EXCLUDED.job_id, reason = EXCLUDED.reason,
                 attempts = dlworkspace_retry.attempts + 1, last_seen = now()",
            &[&cluster, &b.id, &b.job_id, &b.reason],
        )
        .await
        .map_err(q("recording a row in dlworkspace_retry"))?;
    }
    Ok(())
}

/// Forgets retries of rows that mapped now.
pub async fn clear_retries<C: GenericClient>(c: &C, cluster: &str, ids: &[i64]) -> Result<u64> {
    c.execute(
        "DELETE FROM dlworkspace_retry WHERE cluster_id = $1 AND source_id = ANY($2)",
        &[&cluster, &ids],
    )
    .await
    .map_err(q("clearing dlworkspace_retry"))
}

/// What one upsert changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Upserted {
    /// Jobs inserted or changed.
    pub changed: u64,
    /// Status history rows written.
    pub transitions: u64,
}

fn customer_expr(rule: OwnerRule) -> &'static str {
    match rule {
        OwnerRule::Username => {
            "(SELECT c.id FROM customers c WHERE c.username = s.user_name AND c.deleted_at IS NULL)"
        }
        OwnerRule::Table => {
            "(SELECT m.customer_id FROM dlworkspace_owner_map m \
              WHERE m.cluster_id = $2 AND m.user_name = s.user_name)"
        }
    }
}

/// Columns of training_jobs filled from the source (the recordset's two
/// times are not columns).
fn job_cols() -> impl Iterator<Item = &'static str> {
    JOB_COLUMNS
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| *c != "valid_from" && *c != "observed_at")
}

fn upsert_sql(rule: OwnerRule) -> String {
    let defs = JOB_COLUMNS
        .iter()
        .map(|(c, t)| format!("{c} {t}"))
        .collect::<Vec<_>>()
        .join(", ");
    let cols = job_cols().collect::<Vec<_>>().join(", ");
    let set = job_cols()
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let old = job_cols()
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let new = job_cols()
        .map(|c| format!("EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let fin = JobStatus::final_sql_list();
    let customer = customer_expr(rule);
    format!(
        "WITH src AS (
            SELECT s.*, {customer} AS customer_id
            FROM jsonb_to_recordset($1::jsonb) AS s({defs})
         ),
         prev AS (
            SELECT t.job_id, t.job_status, t.last_updated FROM training_jobs t
            WHERE t.cluster_id = $2 AND t.job_id IN (SELECT job_id FROM src)
         ),
         eff AS (
            SELECT s.*, p.job_status AS prev_status,
                   CASE WHEN s.last_updated IS NOT NULL
                             AND (p.job_id IS NULL OR p.last_updated IS NULL
                                  OR s.last_updated > p.last_updated)
                        THEN s.valid_from ELSE s.observed_at END AS since
            FROM src s LEFT JOIN prev p ON p.job_id = s.job_id
         ),
         up AS (
            INSERT INTO training_jobs AS t (cluster_id, {cols}, customer_id, started_at, finished_at)
            SELECT $2, {cols}, customer_id,
                   CASE WHEN job_status = 'running' THEN since END,
                   CASE WHEN job_status IN ({fin}) THEN since END
            FROM eff
            ON CONFLICT (cluster_id, job_id) DO UPDATE SET {set},
                customer_id = COALESCE(EXCLUDED.customer_id, t.customer_id),
                started_at = COALESCE(t.started_at, EXCLUDED.started_at),
                finished_at = CASE WHEN EXCLUDED.job_status IN ({fin}) THEN
                    GREATEST(COALESCE(t.finished_at, EXCLUDED.finished_at),
                             COALESCE(t.started_at, EXCLUDED.started_at)) END
            WHERE ({old}, t.customer_id) IS DISTINCT FROM
                  ({new}, COALESCE(EXCLUDED.customer_id, t.customer_id))
            RETURNING 1
         ),
         hist AS (
            INSERT INTO training_job_status_history
                (cluster_id, job_id, status, user_name, customer_id, gpu_count, gpu_type, valid_from)
            SELECT $2, job_id, job_status, user_name, customer_id, gpu_count, gpu_type, since
            FROM eff
            WHERE prev_status IS DISTINCT FROM job_status
            RETURNING 1
         )
         SELECT (SELECT count(*) FROM up), (SELECT count(*) FROM hist)"
    )
}

/// Inserts or updates the jobs and records each status change once. Jobs
/// must have distinct `job_id`s. A row equal to the stored one changes
/// nothing (not even `updated_at`).
///
/// A new status starts at the row's `lastUpdated` only where that moved
/// since the job was last stored: upstream DLWorkspace's own updates of
/// `jobStatus` leave `lastUpdated` alone, and its stale value would date
/// the change back to the job's submission. Otherwise the status starts
/// when the sync saw it.
pub async fn upsert<C: GenericClient>(
    c: &C,
    cluster: &str,
    rule: OwnerRule,
    jobs: &[MappedJob],
) -> std::result::Result<Upserted, tokio_postgres::Error> {
    if jobs.is_empty() {
        return Ok(Upserted::default());
    }
    let row = c
        .query_one(&upsert_sql(rule), &[&Json(jobs), &cluster])
        .await?;
    Ok(Upserted {
        changed: row.get::<_, i64>(0) as u64,
        transitions: row.get::<_, i64>(1) as u64,
    })
}

/// clusterstatus.status is JSON in seed 002's description and base64 of
/// JSON as upstream DLWorkspace writes it (UpdateClusterStatus).
fn status_json(raw: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    serde_json::from_str(raw).ok().or_else(|| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    })
}

/// Keeps the latest clusterstatus row in the cluster's record.
pub async fn cluster_status<C: GenericClient>(
    c: &C,
    cluster: &str,
    row: &ClusterStatusRow,
) -> Result<()> {
    let json = status_json(&row.status);
    let text = json.is_none().then_some(row.status.as_str());
    c.execute(
        "INSERT INTO dlworkspace_clusters (cluster_id, status, status_text, status_time, status_source_id)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (cluster_id) DO UPDATE SET status = EXCLUDED.status,
             status_text = EXCLUDED.status_text, status_time = EXCLUDED.status_time,
             status_source_id = EXCLUDED.status_source_id
         WHERE dlworkspace_clusters.status_source_id IS DISTINCT FROM EXCLUDED.status_source_id",
        &[&cluster, &json, &text, &row.time.and_utc(), &row.id],
    )
    .await
    .map_err(q("saving clusterstatus into dlworkspace_clusters"))?;
    Ok(())
}

/// Gives jobs (and their history) whose owner had no customer one where
/// the rule finds it now; returns the owners still unmapped.
pub async fn remap_owners<C: GenericClient>(
    c: &C,
    cluster: &str,
    rule: OwnerRule,
) -> Result<Vec<String>> {
    let customer = customer_expr(rule).replace("$2", "$1");
    for table in ["training_jobs", "training_job_status_history"] {
        let sql = format!(
            "UPDATE {table} s SET customer_id = {customer}
             WHERE s.cluster_id = $1 AND s.customer_id IS NULL AND {customer} IS NOT NULL"
        );
        c.execute(&sql, &[&cluster])
            .await
            .map_err(q("mapping owners to customers"))?;
    }
    let rows = c
        .query(
            "SELECT DISTINCT user_name FROM training_jobs
             WHERE cluster_id = $1 AND customer_id IS NULL ORDER BY user_name",
            &[&cluster],
        )
        .await
        .map_err(q("counting unmapped owners"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Records the end of a cycle in the cluster's record.
pub async fn cycle_done<C: GenericClient>(
    c: &C,
    cluster: &str,
    billing: JobBilling,
    unmapped: i32,
) -> Result<()> {
    c.execute(
        "INSERT INTO dlworkspace_clusters (cluster_id, billing, unmapped_owners, last_sync_at, last_error)
         VALUES ($1, $2, $3, now(), NULL)
         ON CONFLICT (cluster_id) DO UPDATE SET billing = EXCLUDED.billing,
             unmapped_owners = EXCLUDED.unmapped_owners, last_sync_at = now(), last_error = NULL",
        &[&cluster, &billing.name(), &unmapped],
    )
    .await
    .map_err(q("recording the sync in dlworkspace_clusters"))?;
    Ok(())
}

/// Records a failed cycle, keeping the last known unmapped count.
pub async fn cycle_failed<C: GenericClient>(c: &C, cluster: &str, error: &str) -> Result<()> {
    c.execute(
        "INSERT INTO dlworkspace_clusters (cluster_id, last_error) VALUES ($1, $2)
         ON CONFLICT (cluster_id) DO UPDATE SET last_error = EXCLUDED.last_error",
        &[&cluster, &error],
    )
    .await
    .map_err(q("recording a failed sync in dlworkspace_clusters"))?;
    Ok(())
}
