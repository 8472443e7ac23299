//! A `jobs` row of MySQL into a `training_jobs` row: statuses parsed,
//! JSON parsed where it parses, GPU count and type, training type, virtual
//! cluster and host taken from where DLWorkspace keeps them.

use chrono::{DateTime, DurationRound, NaiveDateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{source::SourceJob, JobStatus};

/// The tail of `jobLog` that is kept.
pub const JOB_LOG_TAIL: usize = 64 * 1024;

/// A job as `training_jobs` stores it. Field names are the columns'; the
/// upsert reads this struct's JSON with `jsonb_to_recordset` over
/// [`JOB_COLUMNS`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MappedJob {
    /// MySQL `id`.
    pub source_id: i64,
    /// `jobId`.
    pub job_id: String,
    /// `familyToken`.
    pub family_token: Option<String>,
    /// `isParent`.
    pub is_parent: Option<i64>,
    /// `jobName`.
    pub job_name: String,
    /// `userName`.
    pub user_name: String,
    /// `vcName`, or `jobParams.vcName` where the table has no such column.
    pub vc_name: Option<String>,
    /// `jobStatus`.
    pub job_status: &'static str,
    /// `jobStatusDetail` where it is JSON.
    pub job_status_detail: Option<Value>,
    /// `jobStatusDetail` where it is not.
    pub job_status_detail_text: Option<String>,
    /// `jobType`.
    pub job_type: String,
    /// `jobDescriptionPath`.
    pub job_description_path: Option<String>,
    /// `jobDescription`.
    pub job_description: Option<String>,
    /// `jobTime`.
    pub job_time: DateTime<Utc>,
    /// `endpoints` where it is JSON.
    pub endpoints: Option<Value>,
    /// `endpoints` where it is not.
    pub endpoints_text: Option<String>,
    /// `errorMsg`.
    pub error_message: Option<String>,
    /// `jobParams` where it is JSON.
    pub job_params: Option<Value>,
    /// `jobParams` where it is not.
    pub job_params_text: Option<String>,
    /// `jobMeta` where it is JSON.
    pub job_meta: Option<Value>,
    /// `jobMeta` where it is not.
    pub job_meta_text: Option<String>,
    /// The last [`JOB_LOG_TAIL`] bytes of `jobLog`.
    pub job_log: Option<String>,
    /// The full length of `jobLog`.
    pub job_log_bytes: Option<i64>,
    /// `retries`.
    pub retries: i64,
    /// `lastUpdated`.
    pub last_updated: Option<DateTime<Utc>>,
    /// `jobParams.resourcegpu`.
    pub gpu_count: i64,
    /// `jobParams.gpuType`.
    pub gpu_type: Option<String>,
    /// `jobParams.jobtrainingtype` (RegularJob, PSDistJob, InferenceJob…).
    pub job_training_type: Option<String>,
    /// The node the job ran on: `nodeName` of its endpoints, else
    /// `jobParams.nodeName`.
    pub host_id: Option<String>,
    /// `lastUpdated`, else the time the sync saw the row; whole seconds.
    /// Not a column of `training_jobs`: the upsert takes it as the start of
    /// a new status only where `lastUpdated` moved with the status (see
    /// [`crate::store::upsert`]).
    pub valid_from: DateTime<Utc>,
    /// When the sync read the row, whole seconds.
    pub observed_at: DateTime<Utc>,
}

/// The recordset columns of [`MappedJob`] with their SQL types, in field
/// order; the upsert is built from this list, and a test checks it against
/// the struct.
pub const JOB_COLUMNS: &[(&str, &str)] = &[
    ("source_id", "bigint"),
    ("job_id", "text"),
    ("family_token", "text"),
    ("is_parent", "int"),
    ("job_name", "text"),
    ("user_name", "text"),
    ("vc_name", "text"),
    ("job_status", "text"),
    ("job_status_detail", "jsonb"),
    ("job_status_detail_text", "text"),
    ("job_type", "text"),
    ("job_description_path", "text"),
    ("job_description", "text"),
    ("job_time", "timestamptz"),
    ("endpoints", "jsonb"),
    ("endpoints_text", "text"),
    ("error_message", "text"),
    ("job_params", "jsonb"),
    ("job_params_text", "text"),
    ("job_meta", "jsonb"),
    ("job_meta_text", "text"),
    ("job_log", "text"),
    ("job_log_bytes", "bigint"),
    ("retries", "int"),
    ("last_updated", "timestamptz"),
    ("gpu_count", "int"),
    ("gpu_type", "text"),
    ("job_training_type", "text"),
    ("host_id", "text"),
    ("valid_from", "timestamptz"),
    ("observed_at", "timestamptz"),
];

fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    // DLWorkspace writes DATETIME in UTC (its services run in UTC).
    t.and_utc()
}

fn second(t: DateTime<Utc>) -> DateTime<Utc> {
    // Truncating to a whole second cannot overflow for any DATETIME.
    t.duration_trunc(TimeDelta::seconds(1)).unwrap_or(t)
}

/// PostgreSQL text holds no NUL character, which MySQL text may.
fn clean(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    }
}

/// JSON where it parses, the text otherwise.
fn json_or_text(raw: Option<String>) -> (Option<Value>, Option<String>) {
    match raw.map(clean) {
        None => (None, None),
        Some(s) if s.trim().is_empty() => (None, None),
        Some(s) => match serde_json::from_str::<Value>(&s) {
            Ok(v) if !json_has_nul(&v) => (Some(v), None),
            _ => (None, Some(s)),
        },
    }
}

fn json_has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(json_has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

fn tail(s: String) -> String {
    if s.len() <= JOB_LOG_TAIL {
        return s;
    }
    let mut from = s.len() - JOB_LOG_TAIL;
    while !s.is_char_boundary(from) {
        from += 1;
    }
    s[from..].to_string()
}

fn str_field(v: Option<&Value>, key: &str) -> Option<String> {
    match v?.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `resourcegpu` is a number, or a string of one, in DLWorkspace's JSON.
fn gpu_count(params: Option<&Value>) -> Result<i64, String> {
    let Some(v) = params.and_then(|p| p.get("resourcegpu")) else {
        return Ok(0);
    };
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Null => Some(0),
        _ => None,
    };
    match n {
        Some(n) if (0..=100_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "jobParams.resourcegpu is not a GPU count: {v}; it must be a whole number from 0"
        )),
    }
}

/// The node of the first endpoint that names one (DLWorkspace writes
/// `nodeName` into each endpoint once its pod runs), else `jobParams.nodeName`.
fn host(endpoints: Option<&Value>, params: Option<&Value>) -> Option<String> {
    let from_endpoints = endpoints.and_then(|e| {
        let items: Vec<&Value> = match e {
            Value::Object(m) => m.values().collect(),
            Value::Array(a) => a.iter().collect(),
            _ => Vec::new(),
        };
        items
            .into_iter()
            .find_map(|i| str_field(Some(i), "nodeName"))
    });
    from_endpoints.or_else(|| str_field(params, "nodeName"))
}

/// Maps one row; `Err` names what makes it unusable (it is retried next
/// cycle). `observed` is when the sync read it.
pub fn map(src: SourceJob, observed: DateTime<Utc>) -> Result<MappedJob, String> {
    let status = JobStatus::parse(src.job_status.trim()).ok_or_else(|| {
        format!(
            "jobStatus {:?} is not a DLWorkspace status (one of {})",
            src.job_status,
            JobStatus::ALL.map(|s| s.as_str()).join(", ")
        )
    })?;
    let (params, params_text) = json_or_text(Some(src.job_params));
    let (meta, meta_text) = json_or_text(src.job_meta);
    let (detail, detail_text) = json_or_text(src.job_status_detail);
    let (endpoints, endpoints_text) = json_or_text(src.endpoints);
    let gpus = gpu_count(params.as_ref())?;
    let last_updated = src.last_updated.map(utc);
    let retries = src.retries.unwrap_or(0);
    if retries < 0 {
        return Err(format!("retries is negative ({retries})"));
    }
    let job_log_bytes = src.job_log.as_ref().map(|l| l.len() as i64);
    Ok(MappedJob {
        source_id: src.id,
        job_id: clean(src.job_id),
        family_token: src.family_token.map(clean),
        is_parent: src.is_parent,
        job_name: clean(src.job_name),
        user_name: clean(src.user_name),
        vc_name: src
            .vc_name
            .map(clean)
            .or_else(|| str_field(params.as_ref(), "vcName")),
        job_status: status.as_str(),
        job_status_detail: detail,
        job_status_detail_text: detail_text,
        job_type: clean(src.job_type),
        job_description_path: src.job_description_path.map(clean),
        job_description: src.job_description.map(clean),
        job_time: utc(src.job_time),
        host_id: host(endpoints.as_ref(), params.as_ref()),
        endpoints,
        endpoints_text,
        error_message: src.error_msg.map(clean),
        gpu_type: str_field(params.as_ref(), "gpuType"),
        job_training_type: str_field(params.as_ref(), "jobtrainingtype"),
        job_params: params,
        job_params_text: params_text,
        job_meta: meta,
        job_meta_text: meta_text,
        job_log: src.job_log.map(|l| tail(clean(l))),
        job_log_bytes,
        retries,
        last_updated,
        gpu_count: gpus,
        valid_from: second(last_updated.unwrap_or(observed)),
        observed_at: second(observed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> SourceJob {
        SourceJob {
            id: 7,
            job_id: "j-7".into(),
            family_token: Some("f".into()),
            is_parent: Some(1),
            job_name: "pytorch-bert".into(),
            user_name: "alice".into(),
            vc_name: None,
            job_status: "running".into(),
            job_status_detail: Some("[{\"message\":\"ok\"}]".into()),
            job_type: "training".into(),
            job_description_path: None,
            job_description: None,
            job_time: DateTime::from_timestamp(1_700_000_000, 0).unwrap().naive_utc(),
            endpoints: Some(r#"{"e1":{"name":"ssh","nodeName":"node-3"}}"#.into()),
            error_msg: None,
            job_params: r#"{"resourcegpu":"4","gpuType":"A100","jobtrainingtype":"PSDistJob","vcName":"vc1"}"#
                .into(),
            job_meta: Some("not json".into()),
            job_log: None,
            retries: None,
            last_updated: None,
        }
    }

    #[test]
    fn the_struct_serialises_to_exactly_the_recordset_columns() {
        let m = map(src(), Utc::now()).unwrap();
        let v = serde_json::to_value(&m).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want: Vec<&str> = JOB_COLUMNS.iter().map(|(c, _)| *c).collect();
        want.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn params_give_gpus_type_training_type_vc_and_host_comes_from_endpoints() {
        let m = map(src(), Utc::now()).unwrap();
        assert_eq!(m.gpu_count, 4);
        assert_eq!(m.gpu_type.as_deref(), Some("A100"));
        assert_eq!(m.job_training_type.as_deref(), Some("PSDistJob"));
        assert_eq!(m.vc_name.as_deref(), Some("vc1"));
        assert_eq!(m.host_id.as_deref(), Some("node-3"));
        assert_eq!(m.job_meta, None);
        assert_eq!(m.job_meta_text.as_deref(), Some("not json"));
        assert!(m.job_status_detail.is_some());
    }

    #[test]
    fn text_that_is_not_json_is_kept_as_text_and_no_gpus_are_invented() {
        let mut s = src();
        s.job_params = "{broken".into();
        let m = map(s, Utc::now()).unwrap();
        assert_eq!(m.job_params, None);
        assert_eq!(m.job_params_text.as_deref(), Some("{broken"));
        assert_eq!(m.gpu_count, 0);
    }

    #[test]
    fn an_unknown_status_or_a_bad_gpu_count_is_an_error_naming_it() {
        let mut s = src();
        s.job_status = "exploded".into();
        assert!(map(s, Utc::now()).unwrap_err().contains("\"exploded\""));
        let mut s = src();
        s.job_params = r#"{"resourcegpu":-1}"#.into();
        assert!(map(s, Utc::now()).unwrap_err().contains("resourcegpu"));
    }

    #[test]
    fn the_log_keeps_a_tail_on_a_char_boundary_and_its_full_length() {
        let mut s = src();
        s.job_log = Some(format!("{}{}", "é".repeat(JOB_LOG_TAIL), "end"));
        let m = map(s, Utc::now()).unwrap();
        let log = m.job_log.unwrap();
        assert!(log.len() <= JOB_LOG_TAIL && log.ends_with("end"));
        assert_eq!(m.job_log_bytes, Some((2 * JOB_LOG_TAIL + 3) as i64));
    }

    #[test]
    fn valid_from_is_last_updated_else_the_observation_in_whole_seconds() {
        let seen = DateTime::from_timestamp(1_700_000_100, 600_000_000).unwrap();
        let m = map(src(), seen).unwrap();
        assert_eq!(m.valid_from.timestamp(), 1_700_000_100);
        assert_eq!(m.valid_from.timestamp_subsec_nanos(), 0);
        let mut s = src();
        s.last_updated = Some(
            DateTime::from_timestamp(1_700_000_050, 0)
                .unwrap()
                .naive_utc(),
        );
        assert_eq!(map(s, seen).unwrap().valid_from.timestamp(), 1_700_000_050);
    }
}
