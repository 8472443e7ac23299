//! gpuwatch's HTTP service, `gpuwatch serve`.
//!
//! - [`ingest`]: `POST /api/v1/ingest`, where agents push batches
//!   ([`gpuwatch_store::IngestPayload`], gzip'd JSON), checked in full
//!   ([`validate`]) before the store's batch writer stores them.
//! - [`auth`]: bearer tokens with roles, stored hashed, made and revoked
//!   by `gpuwatch token`.
//! - `GET /health`: the process is up.
//!
//! Every error is a JSON body `{"error": {"status", "message", "details"?}}`.
//! The management and reporting routes, `/ready` and `/metrics` arrive with
//! the exporter/API issue.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
mod config;
mod error;
pub mod ingest;
pub mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Json, Router};
use gpuwatch_store::{BatchWriter, Pool, WriterConfig};
use tokio_util::sync::CancellationToken;

pub use config::ApiConfig;
pub use error::ApiError;

/// host id → (inventory fingerprint, UUID → gpus.id).
type KnownInventory = Arc<Mutex<HashMap<String, (u64, HashMap<String, i64>)>>>;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pool: Pool,
    writer: Arc<BatchWriter>,
    cfg: Arc<ApiConfig>,
    /// host id → (inventory fingerprint, UUID → gpus.id): inventory is
    /// written only when it changes.
    known: KnownInventory,
}

impl AppState {
    /// State over a pool.
    pub fn new(pool: Pool, writer: WriterConfig, cfg: ApiConfig) -> Self {
        AppState {
            writer: Arc::new(BatchWriter::new(pool.clone(), writer)),
            pool,
            cfg: Arc::new(cfg),
            known: Arc::default(),
        }
    }
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/api/v1/ingest", post(ingest::ingest))
        // The ingest handler enforces its own limits, with a JSON answer.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Serves until `shutdown`, finishing requests in flight.
pub async fn serve(state: AppState, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(&state.cfg.listen)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {} (api.listen / GPUWATCH_API__LISTEN): {e}",
                    state.cfg.listen
                ),
            )
        })?;
    tracing::info!(listen = %state.cfg.listen, "serving /api/v1");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
