//! `POST /api/v1/ingest`: a host's inventory and one batch of its samples.
//!
//! Here: size (compressed and decompressed), JSON shape (unknown fields
//! rejected), payload version, and that the token may report for the host.
//! The rest is the store's one ingest path ([`gpuwatch_store::Ingestor`]),
//! which the direct sink uses too: the schema's rules, that every sample
//! belongs to the host and its GPUs, that no GPU or environment of another
//! host is named, value ranges, timestamps; then everything is written in
//! one transaction. Any problem answers 4xx (409 for a GPU another host
//! holds) with every problem listed and nothing stored. Writes are
//! idempotent: a re-sent batch stores nothing twice.

use std::io::Read;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use flate2::read::GzDecoder;
use gpuwatch_store::{IngestLimits, IngestPayload, PAYLOAD_VERSION};

use crate::{ApiConfig, ApiError, AppState};

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
    let IngestPayload {
        host, gpus, batch, ..
    } = payload;
    let stats = st
        .ingestor
        .ingest(&[(host, gpus)], &batch, Utc::now())
        .await?;
    Ok(Json(IngestResult {
        rows: stats.rows,
        inserted: stats.inserted,
        duplicates: stats.duplicates,
    }))
}

/// The store's ingest limits from `[api]`.
pub(crate) fn limits(cfg: &ApiConfig) -> IngestLimits {
    IngestLimits {
        max_samples: cfg.max_samples,
        max_age: chrono::Duration::days(cfg.max_age_days),
        max_future: chrono::Duration::seconds(cfg.max_future_secs),
    }
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
