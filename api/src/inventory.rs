//! Hosts and GPUs with their latest figures, an operator's changes to a
//! host (maintenance, labels), an admin's move of a GPU to another host,
//! and series through the tier-aware `gpuwatch_series`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use gpuwatch_store::StoreError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;

use crate::extract::{Params, PathParam};
use crate::list::{fetch, labels, order_by, window, Filter, Page, Source};
use crate::{ApiError, AppState};

/// Filters and paging of `GET /api/v1/hosts`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostQuery {
    /// Page size, 1–1000 (default 50).
    pub limit: Option<i64>,
    /// Items to skip.
    pub offset: Option<i64>,
    /// id, name, status, last_heartbeat, total_gpu; `-` for descending.
    pub sort: Option<String>,
    /// online, offline or maintenance.
    pub status: Option<String>,
    /// healthy, degraded, unhealthy or unknown.
    pub health_status: Option<String>,
    /// Label matchers, all must match: `k=v,k!=v,k=~re,k!~re` (Alertmanager's syntax).
    pub label: Option<String>,
    /// Substring of the name or hostname.
    pub q: Option<String>,
}

/// A host and its latest sample.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Host {
    /// Host id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Hostname.
    pub hostname: Option<String>,
    /// Address.
    pub ip_address: String,
    /// online, offline or maintenance.
    pub status: String,
    /// Health.
    pub health_status: String,
    /// Labels.
    pub labels: serde_json::Value,
    /// CPU cores.
    pub total_cpu: i32,
    /// Memory, bytes.
    pub total_memory: i64,
    /// GPUs.
    pub total_gpu: i32,
    /// Last heartbeat of its agent.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// The latest `host_metrics` row (within the raw tier), null if none.
    pub latest: Option<serde_json::Value>,
}

const HOST_COLUMNS: &str =
    "h.id, h.name, h.hostname, h.ip_address, h.status, h.health_status, h.labels,
    h.total_cpu, h.total_memory, h.total_gpu, h.last_heartbeat,
    (SELECT to_jsonb(m) - 'host_id' FROM host_metrics m
      WHERE m.host_id = h.id AND m.collected_at > now() - interval '7 days'
        AND m.collected_at <= now() + interval '10 minutes'
      ORDER BY m.collected_at DESC LIMIT 1)";

const HOSTS: Source = Source {
    what: "hosts",
    from: "hosts h",
    columns: HOST_COLUMNS,
};

fn host(r: &Row) -> Host {
    Host {
        id: r.get(0),
        name: r.get(1),
        hostname: r.get(2),
        ip_address: r.get(3),
        status: r.get(4),
        health_status: r.get(5),
        labels: r.get(6),
        total_cpu: r.get(7),
        total_memory: r.get(8),
        total_gpu: r.get(9),
        last_heartbeat: r.get(10),
        latest: r.get(11),
    }
}

fn one_of(name: &str, v: Option<String>, allowed: &[&str]) -> Result<Option<String>, ApiError> {
    match v {
        Some(s) if !allowed.contains(&s.as_str()) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{name} must be one of {}, got {s:?}", allowed.join(", ")),
        )),
        v => Ok(v),
    }
}

/// `GET /api/v1/hosts`
pub async fn list_hosts(
    State(state): State<AppState>,
    Params(q): Params<HostQuery>,
) -> Result<Json<Page<Host>>, ApiError> {
    let win = window(q.limit, q.offset)?;
    let order = order_by(
        q.sort.as_deref(),
        &[
            ("id", "h.id"),
            ("name", "h.name"),
            ("status", "h.status"),
            ("last_heartbeat", "h.last_heartbeat"),
            ("total_gpu", "h.total_gpu"),
        ],
        "id",
        "h.id",
    )?;
    let mut f = Filter::default();
    f.opt(
        "h.status = $?",
        one_of("status", q.status, &["online", "offline", "maintenance"])?,
    );
    f.opt(
        "h.health_status = $?",
        one_of(
            "health_status",
            q.health_status,
            &["healthy", "degraded", "unhealthy", "unknown"],
        )?,
    );
    labels(&mut f, "h.labels", q.label.as_deref())?;
    f.opt(
        "(h.name ILIKE $? OR h.hostname ILIKE $?)",
        q.q.map(|s| format!("%{}%", s.replace(['%', '_'], ""))),
    );
    Ok(Json(
        fetch(state.pool().readers(), &HOSTS, &f, &order, win, host).await?,
    ))
}

/// A host with its GPUs.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HostDetail {
    /// The host.
    #[serde(flatten)]
    pub host: Host,
    /// Its GPUs with their latest figures.
    pub gpus: Vec<Gpu>,
}

/// `GET /api/v1/hosts/{id}`
pub async fn get_host(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Json<HostDetail>, ApiError> {
    Ok(Json(host_detail(&state, &id).await?))
}

/// A status an operator may set; `offline` is liveness's to set.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperatorStatus {
    /// Kept through the host's own reports and by liveness until set back.
    Maintenance,
    /// Back in service (liveness marks it offline if it stays silent).
    Online,
}

/// Body of `PATCH /api/v1/hosts/{id}`: what to change, absent fields kept.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostPatch {
    /// `maintenance` or `online`.
    pub status: Option<OperatorStatus>,
    /// The operator's labels, replacing the previous ones; they win over
    /// the agent's labels on the same key and survive its re-registration.
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// `PATCH /api/v1/hosts/{id}` (admin, operator)
pub async fn patch_host(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
    crate::extract::Body(patch): crate::extract::Body<HostPatch>,
) -> Result<Json<HostDetail>, ApiError> {
    if id.contains('\0') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a host id cannot contain NUL",
        ));
    }
    if let Some((k, _)) = patch
        .labels
        .iter()
        .flatten()
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("labels.{k}: a label cannot contain NUL"),
        ));
    }
    let status = patch.status.map(|s| match s {
        OperatorStatus::Maintenance => "maintenance",
        OperatorStatus::Online => "online",
    });
    let labels = patch.labels.map(|l| serde_json::json!(l));
    let client = state.pool().get().await?;
    // Labels: drop the keys the operator set before, then add theirs.
    let n = client
        .execute(
            "UPDATE hosts SET status = COALESCE($2, status),
                    labels = CASE WHEN $3::jsonb IS NULL THEN labels
                                  ELSE (labels - ARRAY(SELECT jsonb_object_keys(operator_labels))) || $3::jsonb END,
                    operator_labels = COALESCE($3::jsonb, operator_labels)
              WHERE id = $1",
            &[&id, &status, &labels],
        )
        .await
        .map_err(|e| StoreError::query(format!("changing host {id}"), e))?;
    if n == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no host with id {id:?}"),
        ));
    }
    tracing::info!(host.id = %id.escape_debug(), status = ?status, "host changed by an operator");
    Ok(Json(host_detail(&state, &id).await?))
}

/// Body of `POST /api/v1/gpus/{id}/move`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuMove {
    /// The host the card is in now.
    pub host_id: String,
    /// Its index there, 0–1023.
    pub gpu_index: i32,
}

/// `POST /api/v1/gpus/{id}/move` (admin): the card was physically moved.
/// Its samples stay with the host they were taken on; the old host's
/// agent is refused the UUID from now on, the new host's accepted.
pub async fn move_gpu(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
    crate::extract::Body(m): crate::extract::Body<GpuMove>,
) -> Result<Json<Gpu>, ApiError> {
    if !(0..1024).contains(&m.gpu_index) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("gpu_index: {} is outside [0, 1023]", m.gpu_index),
        ));
    }
    if m.host_id.contains('\0') || m.host_id.is_empty() || m.host_id.chars().count() > 64 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "host_id: must be 1 to 64 characters without NUL",
        ));
    }
    let client = state.pool().get().await?;
    let c: &tokio_postgres::Client = &client;
    let host_exists = c
        .query_opt("SELECT 1 FROM hosts WHERE id = $1", &[&m.host_id])
        .await
        .map_err(|e| StoreError::query(format!("reading host {}", m.host_id), e))?
        .is_some();
    if !host_exists {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("host_id: no host with id {:?}", m.host_id),
        ));
    }
    let busy = c
        .query_opt(
            "SELECT uuid FROM gpus WHERE host_id = $1 AND gpu_index = $2 AND removed_at IS NULL AND id <> $3",
            &[&m.host_id, &m.gpu_index, &id],
        )
        .await
        .map_err(|e| StoreError::query(format!("reading the GPUs of host {}", m.host_id), e))?;
    if let Some(r) = busy {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "host {:?} has GPU {:?} at index {}; move or remove that one first",
                m.host_id,
                r.get::<_, Option<String>>(0).unwrap_or_default(),
                m.gpu_index
            ),
        ));
    }
    if !gpuwatch_store::inventory::move_gpu(c, id, &m.host_id, m.gpu_index).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no GPU with id {id}"),
        ));
    }
    tracing::info!(gpu.id = id, host.id = %m.host_id.escape_debug(), "GPU moved by an admin");
    get_gpu(State(state), PathParam(id.to_string())).await
}

async fn host_detail(state: &AppState, id: &str) -> Result<HostDetail, ApiError> {
    let id = id.to_string();
    let client = state.pool().get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {HOST_COLUMNS} FROM hosts h WHERE h.id = $1"),
            &[&id],
        )
        .await
        .map_err(|e| StoreError::query(format!("reading host {id}"), e))?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no host with id {id:?}")))?;
    let gpus = client
        .query(
            &format!("SELECT {GPU_COLUMNS} FROM gpus g WHERE g.host_id = $1 ORDER BY g.gpu_index"),
            &[&id],
        )
        .await
        .map_err(|e| StoreError::query(format!("reading the GPUs of host {id}"), e))?;
    Ok(HostDetail {
        host: host(&row),
        gpus: gpus.iter().map(gpu).collect(),
    })
}

/// Filters and paging of `GET /api/v1/gpus`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuQuery {
    /// Page size, 1–1000 (default 50).
    pub limit: Option<i64>,
    /// Items to skip.
    pub offset: Option<i64>,
    /// id, host_id, gpu_index, model, status; `-` for descending.
    pub sort: Option<String>,
    /// Only this host's GPUs.
    pub host_id: Option<String>,
    /// Model name, exactly (e.g. `NVIDIA H100 80GB HBM3`).
    pub model: Option<String>,
    /// available, allocated, maintenance or error.
    pub status: Option<String>,
    /// Only GPUs allocated to this environment.
    pub environment: Option<String>,
    /// Label matchers, all must match: `k=v,k!=v,k=~re,k!~re` (Alertmanager's syntax).
    pub label: Option<String>,
}

/// A GPU and its latest sample.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Gpu {
    /// `gpus.id`
    pub id: i64,
    /// Host.
    pub host_id: String,
    /// NVML index.
    pub gpu_index: i32,
    /// NVML UUID.
    pub uuid: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Memory, bytes.
    pub memory_total: Option<i64>,
    /// available, allocated, maintenance or error.
    pub status: String,
    /// Health.
    pub health_status: String,
    /// Environment it is allocated to.
    pub allocated_to: Option<String>,
    /// Labels.
    pub labels: serde_json::Value,
    /// The latest `gpu_metrics` row (within the raw tier), null if none.
    pub latest: Option<serde_json::Value>,
    /// Time of its latest stored sample.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When it left its host's inventory (replaced or missing); null while present.
    pub removed_at: Option<DateTime<Utc>>,
    /// PCI bus id.
    pub pci_bus_id: Option<String>,
    /// Driver version.
    pub driver_version: Option<String>,
    /// Board serial number.
    pub serial: Option<String>,
    /// VBIOS version.
    pub vbios_version: Option<String>,
}

const GPU_COLUMNS: &str = "g.id, g.host_id, g.gpu_index, g.uuid, g.name, g.memory_total, g.status,
    g.health_status, g.allocated_to, g.labels,
    (SELECT to_jsonb(m) - 'gpu_id' - 'host_id' FROM gpu_metrics m
      WHERE m.gpu_id = g.id AND m.collected_at > now() - interval '7 days'
        AND m.collected_at <= now() + interval '10 minutes'
      ORDER BY m.collected_at DESC LIMIT 1),
    g.last_seen_at, g.removed_at, g.pci_bus_id, g.driver_version, g.serial, g.vbios_version";

const GPUS: Source = Source {
    what: "GPUs",
    from: "gpus g",
    columns: GPU_COLUMNS,
};

fn gpu(r: &Row) -> Gpu {
    Gpu {
        id: r.get(0),
        host_id: r.get(1),
        gpu_index: r.get(2),
        uuid: r.get(3),
        model: r.get(4),
        memory_total: r.get(5),
        status: r.get(6),
        health_status: r.get(7),
        allocated_to: r.get(8),
        labels: r.get(9),
        latest: r.get(10),
        last_seen_at: r.get(11),
        removed_at: r.get(12),
        pci_bus_id: r.get(13),
        driver_version: r.get(14),
        serial: r.get(15),
        vbios_version: r.get(16),
    }
}

/// `GET /api/v1/gpus`
pub async fn list_gpus(
    State(state): State<AppState>,
    Params(q): Params<GpuQuery>,
) -> Result<Json<Page<Gpu>>, ApiError> {
    let win = window(q.limit, q.offset)?;
    let order = order_by(
        q.sort.as_deref(),
        &[
            ("id", "g.id"),
            ("host_id", "g.host_id"),
            ("gpu_index", "g.gpu_index"),
            ("model", "g.name"),
            ("status", "g.status"),
        ],
        "id",
        "g.id",
    )?;
    let mut f = Filter::default();
    f.opt("g.host_id = $?", q.host_id);
    f.opt("g.name = $?", q.model);
    f.opt(
        "g.status = $?",
        one_of(
            "status",
            q.status,
            &["available", "allocated", "maintenance", "error"],
        )?,
    );
    f.opt("g.allocated_to = $?", q.environment);
    labels(&mut f, "g.labels", q.label.as_deref())?;
    Ok(Json(
        fetch(state.pool().readers(), &GPUS, &f, &order, win, gpu).await?,
    ))
}

/// `GET /api/v1/gpus/{id}`
pub async fn get_gpu(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Json<Gpu>, ApiError> {
    let Ok(num) = id.parse::<i64>() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("a GPU id is a number (gpus.id), got {id:?}"),
        ));
    };
    let client = state.pool().get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {GPU_COLUMNS} FROM gpus g WHERE g.id = $1"),
            &[&num],
        )
        .await
        .map_err(|e| StoreError::query(format!("reading GPU {id}"), e))?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no GPU with id {id}")))?;
    Ok(Json(gpu(&row)))
}

/// `GET /api/v1/series` parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    /// gpu, host or environment.
    pub source: String,
    /// A gauge column of the source, e.g. utilization_percent, temperature, cpu_usage_percent.
    pub metric: String,
    /// Series ids, comma-separated (GPU ids, host ids or environment ids); all series when absent.
    pub ids: Option<String>,
    /// Start, RFC 3339.
    pub from: DateTime<Utc>,
    /// End, RFC 3339 (inclusive).
    pub to: DateTime<Utc>,
    /// Bucket width, e.g. 60s, 5m, 1h, 1d (default: range / 300, at least 10s).
    pub step: Option<String>,
    /// What each point is (default avg).
    pub agg: Option<Aggregate>,
}

/// What a series point holds. Gauges: avg, min, max, sum, count (exact over
/// any range and tier) and p95 where the tiers keep one (exact from raw rows
/// within raw retention, else the stored hourly p95 of one series).
/// Counters: increase (reset-corrected, as Prometheus' increase()) and rate
/// (that increase per second of the bucket).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// Mean of the samples.
    #[default]
    Avg,
    /// Smallest sample.
    Min,
    /// Largest sample.
    Max,
    /// Sum of the samples.
    Sum,
    /// Number of samples.
    Count,
    /// 95th percentile (continuous, as `percentile_cont`).
    P95,
    /// Reset-corrected increase of a counter.
    Increase,
    /// Reset-corrected increase of a counter per second.
    Rate,
}

impl Aggregate {
    /// The name the SQL functions take.
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Sum => "sum",
            Aggregate::Count => "count",
            Aggregate::P95 => "p95",
            Aggregate::Increase => "increase",
            Aggregate::Rate => "rate",
        }
    }

    fn counter(self) -> bool {
        matches!(self, Aggregate::Increase | Aggregate::Rate)
    }
}

/// One point.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Point {
    /// Bucket start.
    pub t: DateTime<Utc>,
    /// The aggregate over the bucket and the series.
    pub v: Option<f64>,
}

/// A series answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Series {
    /// Source.
    pub source: String,
    /// Metric.
    pub metric: String,
    /// The aggregate of each point.
    pub agg: Aggregate,
    /// Bucket width asked for, seconds (the tier may widen it).
    pub step_secs: u64,
    /// Points in time order.
    pub points: Vec<Point>,
}

/// `GET /api/v1/series`
pub async fn series(
    State(state): State<AppState>,
    Params(q): Params<SeriesQuery>,
) -> Result<Json<Series>, ApiError> {
    let table = match q.source.as_str() {
        "gpu" => "gpu_metrics",
        "host" => "host_metrics",
        "environment" => "environment_metrics",
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("source must be gpu, host or environment, got {other:?}"),
            ))
        }
    };
    if q.to <= q.from {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("to ({}) must be after from ({})", q.to, q.from),
        ));
    }
    let step = match &q.step {
        Some(s) => humantime::parse_duration(s).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("step {s:?} is not a duration like 60s, 5m, 1h: {e}"),
            )
        })?,
        None => {
            std::time::Duration::from_secs(((q.to - q.from).num_seconds() as u64 / 300).max(10))
        }
    };
    if step.as_secs() == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "step must be at least 1s",
        ));
    }
    let points_asked = (q.to - q.from).num_seconds() as u64 / step.as_secs();
    if points_asked > 20_000 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{points_asked} points asked; widen step so that range / step ≤ 20000"),
        ));
    }
    let ids: Option<Vec<String>> = q.ids.as_deref().map(|s| {
        s.split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    });
    let client = state.pool().readers().get().await?;
    let step_secs = step.as_secs() as f64;
    let agg = q.agg.unwrap_or_default();
    // Counters read through their own function, which also requires ids.
    let sql = if agg.counter() {
        "SELECT bucket, value FROM gpuwatch_counter_series($1, $2, $3, $4, $5, make_interval(secs => $6), $7) ORDER BY bucket"
    } else {
        "SELECT bucket, value FROM gpuwatch_series($1, $2, $3, $4, $5, make_interval(secs => $6), $7) ORDER BY bucket"
    };
    let rows = client
        .query(
            sql,
            &[
                &table,
                &ids,
                &q.metric,
                &q.from,
                &q.to,
                &step_secs,
                &agg.name(),
            ],
        )
        .await
        .map_err(|e| match e.as_db_error() {
            // The series functions raise for an unknown metric, a counter
            // asked as a gauge (or the reverse), a p95 that is not kept or
            // ids missing, with a message that names it.
            Some(db) if db.code().code() == "P0001" => {
                ApiError::new(StatusCode::BAD_REQUEST, db.message().to_string())
            }
            _ => StoreError::query("reading a series", e).into(),
        })?;
    Ok(Json(Series {
        source: q.source,
        metric: q.metric,
        agg,
        step_secs: step.as_secs(),
        points: rows
            .iter()
            .map(|r| Point {
                t: r.get(0),
                v: r.get(1),
            })
            .collect(),
    }))
}
