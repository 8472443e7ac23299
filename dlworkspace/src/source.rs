//! Reading a DLWorkspace cluster's MySQL: its `jobs` table (either
//! version) and the latest `clusterstatus`. SELECT only.

use chrono::NaiveDateTime;
use mysql_async::{prelude::Queryable, Conn, Row, Value};

/// Which version of the `jobs` table a cluster has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableVersion {
    /// Seed 002's: no `vcName`, no `lastUpdated`, `jobId` not unique.
    Seed,
    /// Upstream DLWorkspace's later one: `vcName`, `lastUpdated`, unique `jobId`.
    Upstream,
}

impl TableVersion {
    /// The name kept in `dlworkspace_cursors.table_version`.
    pub fn name(self) -> &'static str {
        match self {
            TableVersion::Seed => "seed",
            TableVersion::Upstream => "upstream",
        }
    }
}

/// The optional columns a cluster's `jobs` table has, from
/// `information_schema.columns`.
#[derive(Debug, Clone, Copy)]
pub struct Columns {
    /// `vcName` exists.
    pub vc_name: bool,
    /// `lastUpdated` exists: changed jobs can be found by it.
    pub last_updated: bool,
}

impl Columns {
    /// The version the columns make: `lastUpdated` decides, as it decides
    /// how changes are found.
    pub fn version(self) -> TableVersion {
        if self.last_updated {
            TableVersion::Upstream
        } else {
            TableVersion::Seed
        }
    }

    fn select(self) -> String {
        format!(
            "SELECT id, jobId, familyToken, isParent, jobName, userName, {}, jobStatus, \
             jobStatusDetail, jobType, jobDescriptionPath, jobDescription, jobTime, endpoints, \
             errorMsg, jobParams, jobMeta, jobLog, retries, {} FROM jobs",
            if self.vc_name { "vcName" } else { "NULL" },
            if self.last_updated {
                "lastUpdated"
            } else {
                "NULL"
            },
        )
    }
}

/// One `jobs` row as MySQL holds it; text is text, JSON not yet parsed.
#[derive(Debug, Clone)]
pub struct SourceJob {
    /// `id` (AUTO_INCREMENT).
    pub id: i64,
    /// `jobId`.
    pub job_id: String,
    /// `familyToken`.
    pub family_token: Option<String>,
    /// `isParent`.
    pub is_parent: Option<i64>,
    /// `jobName`: the kind of job, e.g. pytorch-bert.
    pub job_name: String,
    /// `userName`: the owner.
    pub user_name: String,
    /// `vcName` (upstream only).
    pub vc_name: Option<String>,
    /// `jobStatus`, unparsed.
    pub job_status: String,
    /// `jobStatusDetail`.
    pub job_status_detail: Option<String>,
    /// `jobType`.
    pub job_type: String,
    /// `jobDescriptionPath`.
    pub job_description_path: Option<String>,
    /// `jobDescription`.
    pub job_description: Option<String>,
    /// `jobTime`: submit time, UTC.
    pub job_time: NaiveDateTime,
    /// `endpoints`.
    pub endpoints: Option<String>,
    /// `errorMsg`.
    pub error_msg: Option<String>,
    /// `jobParams`.
    pub job_params: String,
    /// `jobMeta`.
    pub job_meta: Option<String>,
    /// `jobLog`.
    pub job_log: Option<String>,
    /// `retries`.
    pub retries: Option<i64>,
    /// `lastUpdated` (upstream only), UTC.
    pub last_updated: Option<NaiveDateTime>,
}

/// A row that did not convert: its `id`, `jobId` where readable, and why.
#[derive(Debug, Clone)]
pub struct BadRow {
    /// `id`.
    pub id: i64,
    /// `jobId`, if it could be read.
    pub job_id: Option<String>,
    /// What was wrong.
    pub reason: String,
}

/// The latest `clusterstatus` row.
#[derive(Debug, Clone)]
pub struct ClusterStatusRow {
    /// `id`.
    pub id: i64,
    /// `status` (JSON as DLWorkspace writes it).
    pub status: String,
    /// `time`, UTC.
    pub time: NaiveDateTime,
}

/// Finds which optional columns `jobs` has; `None` when there is no
/// `jobs` table in the connection's database.
pub async fn columns(conn: &mut Conn) -> mysql_async::Result<Option<Columns>> {
    let names: Vec<String> = conn
        .query(
            "SELECT COLUMN_NAME FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = 'jobs'",
        )
        .await?;
    if names.is_empty() {
        return Ok(None);
    }
    let has = |c: &str| names.iter().any(|n| n.eq_ignore_ascii_case(c));
    Ok(Some(Columns {
        vc_name: has("vcName"),
        last_updated: has("lastUpdated"),
    }))
}

/// Jobs with `id > after`, in id order, at most `limit`.
pub async fn new_jobs(
    conn: &mut Conn,
    cols: Columns,
    after: i64,
    limit: usize,
) -> mysql_async::Result<Vec<Result<SourceJob, BadRow>>> {
    let sql = format!("{} WHERE id > ? ORDER BY id LIMIT {limit}", cols.select());
    let rows: Vec<Row> = conn.exec(sql, (after,)).await?;
    Ok(rows.into_iter().map(convert).collect())
}

/// Jobs whose `(lastUpdated, id)` is after `(since, after_id)`, at most
/// `limit`, in that order, among ids up to `max_id` (newer ones are read
/// as new jobs).
pub async fn changed_jobs(
    conn: &mut Conn,
    cols: Columns,
    since: NaiveDateTime,
    after_id: i64,
    max_id: i64,
    limit: usize,
) -> mysql_async::Result<Vec<Result<SourceJob, BadRow>>> {
    let sql = format!(
        "{} WHERE id <= ? AND (lastUpdated > ? OR (lastUpdated = ? AND id > ?)) \
         ORDER BY lastUpdated, id LIMIT {limit}",
        cols.select()
    );
    let rows: Vec<Row> = conn.exec(sql, (max_id, since, since, after_id)).await?;
    Ok(rows.into_iter().map(convert).collect())
}

/// The jobs with these ids (those that still exist).
pub async fn jobs_by_id(
    conn: &mut Conn,
    cols: Columns,
    ids: &[i64],
) -> mysql_async::Result<Vec<Result<SourceJob, BadRow>>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(",");
    let sql = format!("{} WHERE id IN ({marks}) ORDER BY id", cols.select());
    let params: Vec<Value> = ids.iter().map(|&i| Value::from(i)).collect();
    let rows: Vec<Row> = conn.exec(sql, params).await?;
    Ok(rows.into_iter().map(convert).collect())
}

/// The newest `clusterstatus` row, if the table has any.
pub async fn latest_cluster_status(
    conn: &mut Conn,
) -> mysql_async::Result<Option<Result<ClusterStatusRow, BadRow>>> {
    let row: Option<Row> = conn
        .query_first("SELECT id, status, time FROM clusterstatus ORDER BY id DESC LIMIT 1")
        .await?;
    Ok(row.map(|mut r| {
        let id = take::<i64>(&mut r, 0).unwrap_or_default().unwrap_or(0);
        let read = |r: &mut Row| -> Result<ClusterStatusRow, String> {
            Ok(ClusterStatusRow {
                id,
                status: text(r, 1)?.unwrap_or_default(),
                time: take(r, 2)?.ok_or("time is NULL")?,
            })
        };
        read(&mut r).map_err(|reason| BadRow {
            id,
            job_id: None,
            reason: format!("clusterstatus: {reason}"),
        })
    }))
}

const COLUMN_NAMES: [&str; 20] = [
    "id",
    "jobId",
    "familyToken",
    "isParent",
    "jobName",
    "userName",
    "vcName",
    "jobStatus",
    "jobStatusDetail",
    "jobType",
    "jobDescriptionPath",
    "jobDescription",
    "jobTime",
    "endpoints",
    "errorMsg",
    "jobParams",
    "jobMeta",
    "jobLog",
    "retries",
    "lastUpdated",
];

fn take<T: mysql_async::prelude::FromValue>(r: &mut Row, i: usize) -> Result<Option<T>, String> {
    match r.take_opt::<Value, usize>(i) {
        None => Err(format!("{} missing", COLUMN_NAMES[i])),
        Some(Err(e)) => Err(format!("{}: {e}", COLUMN_NAMES[i])),
        Some(Ok(Value::NULL)) => Ok(None),
        Some(Ok(v)) => mysql_async::from_value_opt::<T>(v)
            .map(Some)
            .map_err(|e| format!("{}: {e}", COLUMN_NAMES[i])),
    }
}

/// Text columns are read as bytes and decoded leniently: a stray invalid
/// byte in a log must not make the whole job unreadable.
fn text(r: &mut Row, i: usize) -> Result<Option<String>, String> {
    Ok(take::<Vec<u8>>(r, i)?.map(|b| match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

fn required(r: &mut Row, i: usize) -> Result<String, String> {
    text(r, i)?.ok_or_else(|| format!("{} is NULL", COLUMN_NAMES[i]))
}

fn convert(mut r: Row) -> Result<SourceJob, BadRow> {
    let id = take::<i64>(&mut r, 0).ok().flatten().unwrap_or(0);
    // Taken once here: a taken value is gone from the row.
    let job_id = text(&mut r, 1);
    let read = |r: &mut Row| read(r, id, job_id.clone()?.ok_or("jobId is NULL")?);
    read(&mut r).map_err(|reason| BadRow {
        id,
        job_id: job_id.clone().ok().flatten(),
        reason,
    })
}

/// Reads the columns after `id` and `jobId`, which [`convert`] took.
fn read(r: &mut Row, id: i64, job_id: String) -> Result<SourceJob, String> {
    Ok(SourceJob {
        id,
        job_id,
        family_token: text(r, 2)?,
        is_parent: take(r, 3)?,
        job_name: required(r, 4)?,
        user_name: required(r, 5)?,
        vc_name: text(r, 6)?,
        job_status: required(r, 7)?,
        job_status_detail: text(r, 8)?,
        job_type: required(r, 9)?,
        job_description_path: text(r, 10)?,
        job_description: text(r, 11)?,
        job_time: take(r, 12)?.ok_or("jobTime is NULL")?,
        endpoints: text(r, 13)?,
        error_msg: text(r, 14)?,
        job_params: required(r, 15)?,
        job_meta: text(r, 16)?,
        job_log: text(r, 17)?,
        retries: take(r, 18)?,
        last_updated: take(r, 19)?,
    })
}
