//! gpuwatch's HTTP service, `gpuwatch serve`.
//!
//! - `GET /health`: the process is up. `GET /ready`: the database answers
//!   and its schema is what this binary expects (seed 003's probes).
//! - `GET /metrics`: Prometheus exposition from the [`gpuwatch_exporter`]
//!   snapshot (dcgm-exporter and node_exporter names).
//! - `/api/v1`: [`ingest`] for agents, then the management and reporting
//!   routes declared in one table ([`endpoints`]) that also writes the
//!   OpenAPI document served at `/api/v1/openapi.json`.
//! - [`auth`]: bearer tokens with roles, stored hashed, made and revoked
//!   by `gpuwatch token`; every route states the roles that may call it.
//!
//! Every error is a JSON body `{"error": {"status", "message", "details"?}}`,
//! unknown routes and methods included.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
mod config;
pub mod endpoints;
mod error;
pub mod extract;
pub mod ingest;
pub mod inventory;
pub mod list;
pub mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gpuwatch_exporter::Exporter;
use gpuwatch_store::{BatchWriter, Pool, WriterConfig};
use tokio_util::sync::CancellationToken;

pub use config::ApiConfig;
use endpoints::{query, schema, Api, Endpoint, AGENT, READ};
pub use error::ApiError;

/// host id → (inventory fingerprint, UUID → gpus.id).
type KnownInventory = Arc<Mutex<HashMap<String, (u64, HashMap<String, i64>)>>>;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pool: Pool,
    writer: Arc<BatchWriter>,
    cfg: Arc<ApiConfig>,
    exporter: Arc<Exporter>,
    /// host id → (inventory fingerprint, UUID → gpus.id): inventory is
    /// written only when it changes.
    known: KnownInventory,
}

impl AppState {
    /// State over a pool; `exporter` serves `/metrics` (its refresh loop
    /// is run by the caller, see [`Exporter::run`]).
    pub fn new(pool: Pool, writer: WriterConfig, cfg: ApiConfig, exporter: Arc<Exporter>) -> Self {
        AppState {
            writer: Arc::new(BatchWriter::new(pool.clone(), writer)),
            pool,
            cfg: Arc::new(cfg),
            exporter,
            known: Arc::default(),
        }
    }

    /// The database pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// `/api/v1`'s endpoints: the router and the OpenAPI document, from one table.
pub fn api(state: AppState) -> (Router<AppState>, serde_json::Value) {
    use inventory as inv;
    Api::new(state)
        .add_self_authenticated(
            Endpoint::get(
                "/api/v1/ingest",
                AGENT,
                "Store one batch of a host's samples (gzip'd JSON, IngestPayload).",
                schema::<serde_json::Value>,
            )
            .with_body("post", schema::<serde_json::Value>, 200),
            post(ingest::ingest),
        )
        .add(
            Endpoint::get(
                "/api/v1/hosts",
                READ,
                "Hosts with their latest sample.",
                schema::<list::Page<inv::Host>>,
            )
            .query(query::<inv::HostQuery>),
            get(inv::list_hosts),
        )
        .add(
            Endpoint::get(
                "/api/v1/hosts/{id}",
                READ,
                "One host, its latest sample and its GPUs.",
                schema::<inv::HostDetail>,
            ),
            get(inv::get_host),
        )
        .add(
            Endpoint::get(
                "/api/v1/gpus",
                READ,
                "GPUs with their latest sample.",
                schema::<list::Page<inv::Gpu>>,
            )
            .query(query::<inv::GpuQuery>),
            get(inv::list_gpus),
        )
        .add(
            Endpoint::get(
                "/api/v1/gpus/{id}",
                READ,
                "One GPU and its latest sample.",
                schema::<inv::Gpu>,
            ),
            get(inv::get_gpu),
        )
        .add(
            Endpoint::get(
                "/api/v1/series",
                READ,
                "A metric over time from the right tier (raw, hourly, daily), averaged per step.",
                schema::<inv::Series>,
            )
            .query(query::<inv::SeriesQuery>),
            get(inv::series),
        )
        .finish()
}

/// The routes.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api(state.clone());
    let doc = Arc::new(doc);
    Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json((*doc).clone()) }
            }),
        )
        .merge(api)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such route; the routes are listed in /api/v1/openapi.json",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method; see /api/v1/openapi.json",
            )
        })
        // The ingest handler enforces its own limits, with a JSON answer;
        // other bodies are small JSON documents.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// `/ready`: 200 when the database answers and every migration this binary
/// embeds is applied; 503 saying which check failed otherwise.
async fn ready(State(st): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let client = st.pool.get().await?;
    let pending = gpuwatch_store::pending_migrations(&client).await?;
    if !pending.is_empty() {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database schema is not current: run `gpuwatch migrate`",
        );
        e.details = pending;
        return Err(e);
    }
    Ok(Json(
        serde_json::json!({ "status": "ready", "migrations": gpuwatch_store::migrations().len() }),
    ))
}

/// `/metrics`: the snapshot's bytes as they are (gzip'd once per refresh
/// for scrapers that accept it), then self-metrics.
async fn metrics(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let accept_gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let (chunks, gzipped) = st.exporter.scrape_encoded(accept_gzip);
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let mut resp = (
        [(header::CONTENT_TYPE, gpuwatch_exporter::CONTENT_TYPE)],
        Body::from_stream(stream),
    )
        .into_response();
    if gzipped {
        resp.headers_mut().insert(
            header::CONTENT_ENCODING,
            axum::http::HeaderValue::from_static("gzip"),
        );
    }
    resp
}

/// Serves until `shutdown`, finishing requests in flight.
pub async fn serve(state: AppState, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(&state.cfg.listen)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {} (api.listen / GPUWATCH_LISTEN): {e}",
                    state.cfg.listen
                ),
            )
        })?;
    let addr = listener.local_addr()?;
    // One line a supervisor (or a test) can read the real port from.
    tracing::info!(listen = %addr, "serving /api/v1, /metrics, /health and /ready");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
