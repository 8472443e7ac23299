//! `POST /api/v1/ingest`: a host's inventory and one batch of its samples.
//!
//! Everything is checked before anything is written: size (compressed and
//! decompressed), JSON shape (unknown fields rejected), payload version,
//! that the token may report for the host, that every sample belongs to the
//! host and its GPUs, value ranges, and timestamps. Any problem answers 4xx
//! with every problem listed and nothing stored, so a bad sample never
//! slips in beside good ones. Writes are idempotent: a re-sent batch stores
//! nothing twice.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Read;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use flate2::read::GzDecoder;
use gpuwatch_store::{inventory, GpuSample, IngestPayload, PAYLOAD_VERSION};

use crate::validate::check_payload;
use crate::{ApiError, AppState};

/// Answer of a successful ingest.
#[derive(Debug, serde::Serialize)]
pub struct IngestResult {
    /// Samples in the request.
    pub rows: u64,
    /// Samples newly stored.
    pub inserted: u64,
    /// Samples that were already stored (a re-sent batch).
    pub duplicates: u64,
}

/// The handler.
pub async fn ingest(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResult>, ApiError> {
    let caller = st.caller(&headers).await?;
    if caller.role != "agent" && caller.role != "admin" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("role {} may not ingest; use an agent token", caller.role),
        ));
    }
    let payload = decode(&st, &headers, body).await?;
    if let Some(bound) = &caller.host_id {
        if *bound != payload.host.id {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this token reports for host {bound:?}, the payload is for host {:?}",
                    payload.host.id
                ),
            ));
        }
    }
    let now = Utc::now();
    let problems = check_payload(&payload, &st.cfg, now);
    if !problems.is_empty() {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{} problem(s) in the payload; nothing was stored",
                problems.len()
            ),
        );
        e.details = problems;
        return Err(e);
    }
    let ids = st.register(&payload).await?;
    let gpu: Vec<GpuSample> = payload
        .batch
        .gpu
        .iter()
        .map(|r| GpuSample {
            gpu_id: ids[&r.uuid],
            ..r.sample.clone()
        })
        .collect();
    let mut stats = st.writer.write(&gpu).await?;
    stats += st.writer.write(&payload.batch.host).await?;
    stats += st.writer.write(&payload.batch.env).await?;
    if let Some(at) = payload.batch.host.iter().map(|h| h.collected_at).max() {
        inventory::heartbeat(&st.pool, std::slice::from_ref(&payload.host.id), at).await?;
    }
    Ok(Json(IngestResult {
        rows: stats.rows,
        inserted: stats.inserted,
        duplicates: stats.duplicates,
    }))
}

/// Reads the body within the limits, gunzips it if sent so, parses it.
async fn decode(st: &AppState, headers: &HeaderMap, body: Body) -> Result<IngestPayload, ApiError> {
    let too_big = |what: &str, limit: usize| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the {what} body exceeds {limit} bytes; send smaller batches"),
        )
    };
    let raw = to_bytes(body, st.cfg.max_body_bytes)
        .await
        .map_err(|_| too_big("request", st.cfg.max_body_bytes))?;
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    let json = match encoding {
        "gzip" => {
            let mut out = Vec::new();
            let limit = st.cfg.max_decompressed_bytes as u64;
            GzDecoder::new(&raw[..])
                .take(limit + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("the body is not valid gzip: {e}"),
                    )
                })?;
            if out.len() as u64 > limit {
                return Err(too_big("decompressed", st.cfg.max_decompressed_bytes));
            }
            out
        }
        "identity" => raw.to_vec(),
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content-encoding {other:?} is not supported; send gzip or nothing"),
            ))
        }
    };
    let payload: IngestPayload = serde_json::from_slice(&json).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not a valid ingest payload: {e}"),
        )
    })?;
    if payload.version != PAYLOAD_VERSION {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("payload version {} is not supported; this server accepts version {PAYLOAD_VERSION}", payload.version),
        ));
    }
    Ok(payload)
}

impl AppState {
    /// Upserts the host and its GPUs when they changed since this server last
    /// saw them, and returns UUID → `gpus.id`.
    async fn register(&self, p: &IngestPayload) -> Result<HashMap<String, i64>, ApiError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(&(&p.host, &p.gpus))
            .unwrap_or_default()
            .hash(&mut h);
        let fingerprint = h.finish();
        if let Some((f, ids)) = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&p.host.id)
        {
            if *f == fingerprint {
                return Ok(ids.clone());
            }
        }
        inventory::upsert_host(&self.pool, &p.host, Utc::now()).await?;
        let mut ids = HashMap::new();
        for g in &p.gpus {
            ids.insert(g.uuid.clone(), inventory::upsert_gpu(&self.pool, g).await?);
        }
        tracing::info!(host.id = %p.host.id, gpus = ids.len(), "inventory registered");
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.host.id.clone(), (fingerprint, ids.clone()));
        Ok(ids)
    }
}
