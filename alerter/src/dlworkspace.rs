//! Series of DLWorkspace jobs and clusters, from what the DLWorkspace sync
//! mirrors into PostgreSQL (`training_jobs`, `training_job_status_history`,
//! `dlworkspace_clusters`):
//!
//! - `job.status`: 1 for a job that entered failed, killed or error within
//!   the rule's window and is still in it; 0 for one whose entry lies in the
//!   window before that, or that has left the status since. So an alert
//!   fires once per entry (also for a job that failed while the alerter was
//!   down, if it comes back within the window) and resolves when the entry
//!   leaves the window, instead of an old failed job firing for ever.
//! - `job.queued_seconds`: how long a job has waited in queued or
//!   scheduling without running; 0 for a job that stopped waiting within
//!   the rule's window, so its alert resolves rather than going to no data.
//! - `dlworkspace.cluster_status_age_seconds`: the age of each cluster's
//!   latest `clusterstatus` row (a cluster that never wrote one counts from
//!   the Unix epoch: it has never reported).
//!
//! Labels are the job's identity and what rules scope on, and stay the same
//! through its life (else its alert would change identity); errorMsg, the
//! status detail, the current status and the node are details for the
//! annotations only.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gpuwatch_store::jobs::JobStatus;
use tokio_postgres::{GenericClient, Row};

use crate::error::{q, Result};
use crate::series::{Labels, Point, Values};

/// The longest errorMsg or status detail an annotation carries, in characters.
pub const DETAIL_CHARS: usize = 500;

/// The statuses `job.status` reports: the job ended badly.
const ENDED_BADLY: [JobStatus; 3] = [JobStatus::Failed, JobStatus::Killed, JobStatus::Error];

/// The statuses `job.queued_seconds` counts: waiting for resources.
const WAITING: [JobStatus; 2] = [JobStatus::Queued, JobStatus::Scheduling];

fn sql_list(set: &[JobStatus]) -> String {
    set.iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cuts `s` to `max` characters, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// DLWorkspace's jobStatusDetail is a JSON list of objects with a
/// `message`; the messages joined, else the text as stored.
fn status_detail(json: Option<serde_json::Value>, text: Option<String>) -> String {
    let from_json = json.as_ref().and_then(|v| {
        let msgs: Vec<&str> = v
            .as_array()?
            .iter()
            .filter_map(|i| i.get("message")?.as_str())
            .collect();
        (!msgs.is_empty()).then(|| msgs.join("; "))
    });
    let s = from_json
        .or_else(|| json.map(|v| v.to_string()))
        .or(text)
        .unwrap_or_default();
    truncate(&s, DETAIL_CHARS)
}

/// The columns of training_jobs every job series reads, in this order.
const JOB_COLUMNS: &str = "t.cluster_id, t.job_id, t.job_name, t.user_name, t.customer_id, \
    t.vc_name, t.job_type, t.job_training_type, t.gpu_type, t.host_id, t.job_status, \
    t.error_message, t.job_status_detail, t.job_status_detail_text";

/// Labels and details of a job from a row starting with [`JOB_COLUMNS`].
fn job_point(r: &Row, value: f64, status_label: Option<&str>) -> Point {
    let mut l = Labels::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            l.insert(k.to_string(), v);
        }
    };
    put("scope", Some("job".into()));
    put("cluster", r.get(0));
    put("job", r.get(1));
    put("job_name", r.get(2));
    put("owner", r.get(3));
    put(
        "customer",
        r.get::<_, Option<i64>>(4).map(|c| c.to_string()),
    );
    put("vc", r.get(5));
    put("job_type", r.get(6));
    put("training_type", r.get(7));
    put("gpu_type", r.get(8));
    put("status", status_label.map(str::to_string));
    let current: String = r.get(10);
    let details: Labels = [
        ("current_status".to_string(), current),
        // Where it runs is known only once it runs: a label would re-key
        // the job's alert at that moment.
        (
            "node".to_string(),
            r.get::<_, Option<String>>(9).unwrap_or_default(),
        ),
        (
            "error_msg".to_string(),
            truncate(
                &r.get::<_, Option<String>>(11).unwrap_or_default(),
                DETAIL_CHARS,
            ),
        ),
        (
            "status_detail".to_string(),
            status_detail(r.get(12), r.get(13)),
        ),
    ]
    .into();
    Point {
        labels: Arc::new(l),
        value,
        details: Some(Arc::new(details)),
    }
}

/// `job.status` at `now` for a rule window of `window` seconds.
pub async fn job_status<C: GenericClient>(
    c: &C,
    now: DateTime<Utc>,
    window: i32,
) -> Result<Values> {
    let bad = sql_list(&ENDED_BADLY);
    // The latest entry of each job into a bad status within two windows
    // (the index on valid_from finds them), and whether the job is still
    // in that status with the entry inside the last window.
    let sql = format!(
        "WITH entered AS (
            SELECT DISTINCT ON (h.cluster_id, h.job_id) h.cluster_id, h.job_id, h.status, h.valid_from, h.id
            FROM training_job_status_history h
            WHERE h.status IN ({bad}) AND h.valid_from > $1::timestamptz - 2 * $2::float8 * interval '1 second'
            ORDER BY h.cluster_id, h.job_id, h.id DESC
         )
         SELECT {JOB_COLUMNS}, e.status,
                (t.job_status = e.status AND e.valid_from > $1::timestamptz - $2::float8 * interval '1 second'
                 AND NOT EXISTS (SELECT 1 FROM training_job_status_history x
                                 WHERE x.cluster_id = e.cluster_id AND x.job_id = e.job_id
                                   AND x.id > e.id))
         FROM entered e JOIN training_jobs t USING (cluster_id, job_id)"
    );
    let window = f64::from(window.max(1));
    let rows = c
        .query(&sql, &[&now, &window])
        .await
        .map_err(q("reading DLWorkspace jobs that ended badly"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let status: String = r.get(14);
            let value = if r.get::<_, bool>(15) { 1.0 } else { 0.0 };
            job_point(r, value, Some(&status))
        })
        .collect())
}

/// `job.queued_seconds` at `now` for a rule window of `window` seconds.
pub async fn job_queued<C: GenericClient>(
    c: &C,
    now: DateTime<Utc>,
    window: i32,
) -> Result<Values> {
    let waiting = sql_list(&WAITING);
    // Waiting jobs count from the first waiting row after their last other
    // status (queued → scheduling is one wait); jobs whose last change,
    // within the window, ended a wait read 0.
    let sql = format!(
        "SELECT {JOB_COLUMNS}, w.since
         FROM training_jobs t
         CROSS JOIN LATERAL (
            SELECT min(h.valid_from) AS since FROM training_job_status_history h
            WHERE h.cluster_id = t.cluster_id AND h.job_id = t.job_id AND h.status IN ({waiting})
              AND h.id > coalesce((SELECT max(x.id) FROM training_job_status_history x
                                   WHERE x.cluster_id = t.cluster_id AND x.job_id = t.job_id
                                     AND x.status NOT IN ({waiting})), 0)
         ) w
         WHERE t.job_status IN ({waiting}) AND w.since IS NOT NULL
         UNION ALL
         SELECT {JOB_COLUMNS}, NULL
         FROM (SELECT DISTINCT ON (h.cluster_id, h.job_id) h.cluster_id, h.job_id, h.status, h.id
               FROM training_job_status_history h
               WHERE h.valid_from > $1::timestamptz - $2::float8 * interval '1 second'
               ORDER BY h.cluster_id, h.job_id, h.id DESC) last
         JOIN training_jobs t USING (cluster_id, job_id)
         WHERE last.status NOT IN ({waiting})
           AND EXISTS (SELECT 1 FROM training_job_status_history p
                       WHERE p.cluster_id = last.cluster_id AND p.job_id = last.job_id
                         AND p.status IN ({waiting}) AND p.id < last.id)"
    );
    let window = f64::from(window.max(1));
    let rows = c
        .query(&sql, &[&now, &window])
        .await
        .map_err(q("reading DLWorkspace jobs waiting in the queue"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let since: Option<DateTime<Utc>> = r.get(14);
            let secs = since.map_or(0.0, |s| {
                ((now - s).num_milliseconds() as f64 / 1e3).max(0.0)
            });
            job_point(r, secs, None)
        })
        .collect())
}

/// `dlworkspace.cluster_status_age_seconds` at `now`.
pub async fn cluster_status_age<C: GenericClient>(c: &C, now: DateTime<Utc>) -> Result<Values> {
    let rows = c
        .query(
            "SELECT cluster_id, status_time,
                    greatest(0, extract(epoch FROM $1 - coalesce(status_time, 'epoch')))::float8
             FROM dlworkspace_clusters",
            &[&now],
        )
        .await
        .map_err(q("reading the age of DLWorkspace cluster statuses"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let labels: Labels = [
                ("scope".to_string(), "dlworkspace_cluster".to_string()),
                ("cluster".to_string(), r.get::<_, String>(0)),
            ]
            .into();
            let at: Option<DateTime<Utc>> = r.get(1);
            let details: Labels = [(
                "status_time".to_string(),
                at.map_or_else(|| "never".to_string(), |t| t.to_rfc3339()),
            )]
            .into();
            Point {
                labels: Arc::new(labels),
                value: r.get(2),
                details: Some(Arc::new(details)),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_cut_on_a_character_and_marked() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééééé", 3), "ééé…");
        assert_eq!(
            truncate(&"x".repeat(600), DETAIL_CHARS).chars().count(),
            DETAIL_CHARS + 1
        );
    }

    #[test]
    fn the_status_detail_reads_dlworkspace_messages_else_the_text() {
        let v = serde_json::json!([{"message": "job is failed"}, {"message": "exit 1"}]);
        assert_eq!(status_detail(Some(v), None), "job is failed; exit 1");
        assert_eq!(
            status_detail(Some(serde_json::json!({"a": 1})), None),
            "{\"a\":1}"
        );
        assert_eq!(status_detail(None, Some("raw".into())), "raw");
        assert_eq!(status_detail(None, None), "");
    }

    #[test]
    fn the_status_sets_are_dlworkspace_statuses() {
        assert_eq!(sql_list(&ENDED_BADLY), "'failed', 'killed', 'error'");
        assert_eq!(sql_list(&WAITING), "'queued', 'scheduling'");
    }
}
