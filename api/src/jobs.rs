//! `GET /api/v1/jobs`: the DLWorkspace training jobs the sync mirrors into
//! `training_jobs`, paged, sorted and filtered like every list; and one job
//! with its status history.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use gpuwatch_store::jobs::JobStatus;
use gpuwatch_store::StoreError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;

use crate::extract::{Params, PathParam};
use crate::list::{fetch, order_by, window, Filter, Page, Source};
use crate::{ApiError, AppState};

/// Filters and paging of `GET /api/v1/jobs`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// Page size, 1–1000 (default 50).
    pub limit: Option<i64>,
    /// Items to skip.
    pub offset: Option<i64>,
    /// job_time, last_updated, job_id, cluster, status, owner, type, gpu_count; `-` for
    /// descending (default `-job_time`, newest first).
    pub sort: Option<String>,
    /// DLWorkspace status: unapproved, queued, scheduling, running, finished, failed, pausing,
    /// paused, killing, killed or error; several comma-separated.
    pub status: Option<String>,
    /// The job's owner, DLWorkspace's `userName`, exactly.
    pub owner: Option<String>,
    /// The customer the owner maps to (`customers.id`).
    pub customer_id: Option<i64>,
    /// The cluster id of `[[dlworkspace.clusters]]`.
    pub cluster: Option<String>,
    /// DLWorkspace's `jobType`, exactly.
    pub r#type: Option<String>,
    /// The virtual cluster (`vcName`), exactly.
    pub vc: Option<String>,
    /// Submitted at or after this time (RFC 3339), on `jobTime`.
    pub since: Option<DateTime<Utc>>,
    /// Submitted before this time (RFC 3339), on `jobTime`.
    pub until: Option<DateTime<Utc>>,
    /// `true`: only jobs whose owner maps to no customer; `false`: only mapped ones.
    pub unmapped: Option<bool>,
}

/// A training job.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Job {
    /// The cluster it ran on.
    pub cluster: String,
    /// DLWorkspace's `jobId`, unique within its cluster.
    pub job_id: String,
    /// `jobName`.
    pub job_name: String,
    /// `userName`.
    pub owner: String,
    /// The customer the owner maps to; null when unmapped.
    pub customer_id: Option<i64>,
    /// `vcName` (upstream table version).
    pub vc: Option<String>,
    /// The current status.
    pub status: String,
    /// `jobType`.
    pub r#type: String,
    /// The training type from `jobParams` (e.g. RegularJob, PSDistJob).
    pub training_type: Option<String>,
    /// GPUs asked for (`jobParams.resourcegpu`).
    pub gpu_count: i32,
    /// GPU type from `jobParams`.
    pub gpu_type: Option<String>,
    /// Host the job ran on, where the source says.
    pub host_id: Option<String>,
    /// `priority`.
    pub priority: i32,
    /// `retries`.
    pub retries: i32,
    /// `jobTime`: submission.
    pub job_time: DateTime<Utc>,
    /// First seen running.
    pub started_at: Option<DateTime<Utc>>,
    /// Reached a final status.
    pub finished_at: Option<DateTime<Utc>>,
    /// `lastUpdated` (upstream table version).
    pub last_updated: Option<DateTime<Utc>>,
    /// `errorMsg`, as the source wrote it.
    pub error_message: Option<String>,
}

/// A job and every status the sync saw it in.
#[derive(Debug, Serialize, JsonSchema)]
pub struct JobDetail {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// Its statuses, oldest first.
    pub history: Vec<JobStatusChange>,
}

/// One status of a job's history.
#[derive(Debug, Serialize, JsonSchema)]
pub struct JobStatusChange {
    /// The status.
    pub status: String,
    /// Since when (the source's `lastUpdated` where it moved with the status, else when the
    /// sync first saw it).
    pub valid_from: DateTime<Utc>,
    /// GPUs at that time.
    pub gpu_count: i32,
}

const JOB_COLUMNS: &str = "j.cluster_id, j.job_id, j.job_name, j.user_name, j.customer_id,
    j.vc_name, j.job_status, j.job_type, j.job_training_type, j.gpu_count, j.gpu_type,
    j.host_id, j.priority, j.retries, j.job_time, j.started_at, j.finished_at, j.last_updated,
    j.error_message";

const JOBS: Source = Source {
    what: "training jobs",
    from: "training_jobs j",
    columns: JOB_COLUMNS,
};

fn job(r: &Row) -> Job {
    Job {
        cluster: r.get(0),
        job_id: r.get(1),
        job_name: r.get(2),
        owner: r.get(3),
        customer_id: r.get(4),
        vc: r.get(5),
        status: r.get(6),
        r#type: r.get(7),
        training_type: r.get(8),
        gpu_count: r.get(9),
        gpu_type: r.get(10),
        host_id: r.get(11),
        priority: r.get(12),
        retries: r.get(13),
        job_time: r.get(14),
        started_at: r.get(15),
        finished_at: r.get(16),
        last_updated: r.get(17),
        error_message: r.get(18),
    }
}

/// The statuses of a `status=` filter, each checked against DLWorkspace's set.
fn statuses(spec: &str) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match JobStatus::parse(part) {
            Some(s) => out.push(s.as_str().to_string()),
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "status {part:?} is not a DLWorkspace status; use one of {}",
                        JobStatus::ALL.map(JobStatus::as_str).join(", ")
                    ),
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "status is empty; name one or more statuses, comma-separated",
        ));
    }
    Ok(out)
}

/// `GET /api/v1/jobs`
pub async fn list_jobs(
    State(state): State<AppState>,
    Params(q): Params<JobQuery>,
) -> Result<Json<Page<Job>>, ApiError> {
    let win = window(q.limit, q.offset)?;
    let order = order_by(
        q.sort.as_deref(),
        &[
            ("job_time", "j.job_time"),
            ("last_updated", "j.last_updated"),
            ("job_id", "j.job_id"),
            ("cluster", "j.cluster_id"),
            ("status", "j.job_status"),
            ("owner", "j.user_name"),
            ("type", "j.job_type"),
            ("gpu_count", "j.gpu_count"),
        ],
        "-job_time",
        "j.id",
    )?;
    if let (Some(since), Some(until)) = (q.since, q.until) {
        if until <= since {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("until ({until}) must be after since ({since})"),
            ));
        }
    }
    let mut f = Filter::default();
    if let Some(spec) = q.status.as_deref() {
        f.add("j.job_status = ANY($?)", statuses(spec)?);
    }
    f.opt("j.user_name = $?", q.owner);
    f.opt("j.customer_id = $?", q.customer_id);
    f.opt("j.cluster_id = $?", q.cluster);
    f.opt("j.job_type = $?", q.r#type);
    f.opt("j.vc_name = $?", q.vc);
    f.opt("j.job_time >= $?", q.since);
    f.opt("j.job_time < $?", q.until);
    match q.unmapped {
        Some(true) => f.raw("j.customer_id IS NULL"),
        Some(false) => f.raw("j.customer_id IS NOT NULL"),
        None => {}
    }
    Ok(Json(
        fetch(state.pool().readers(), &JOBS, &f, &order, win, job).await?,
    ))
}

/// `GET /api/v1/jobs/{cluster}/{job_id}`
pub async fn get_job(
    State(state): State<AppState>,
    PathParam((cluster, job_id)): PathParam<(String, String)>,
) -> Result<Json<JobDetail>, ApiError> {
    let client = state.pool().readers().get().await?;
    let what = || format!("reading job {job_id:?} of cluster {cluster:?}");
    let row = client
        .query_opt(
            &format!(
                "SELECT {JOB_COLUMNS} FROM training_jobs j WHERE j.cluster_id = $1 AND j.job_id = $2"
            ),
            &[&cluster, &job_id],
        )
        .await
        .map_err(|e| StoreError::query(what(), e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no job {job_id:?} in cluster {cluster:?}"),
            )
        })?;
    let history = client
        .query(
            "SELECT status, valid_from, gpu_count FROM training_job_status_history
             WHERE cluster_id = $1 AND job_id = $2 ORDER BY valid_from, id",
            &[&cluster, &job_id],
        )
        .await
        .map_err(|e| StoreError::query(what(), e))?
        .iter()
        .map(|r| JobStatusChange {
            status: r.get(0),
            valid_from: r.get(1),
            gpu_count: r.get(2),
        })
        .collect();
    Ok(Json(JobDetail {
        job: job(&row),
        history,
    }))
}
