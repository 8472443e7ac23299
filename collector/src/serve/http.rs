//! The agent's HTTP side: `/metrics` answered as `gpuwatch serve` answers
//! it, and `/health`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use gpuwatch_exporter::Exporter;

/// `/health` and the metrics at `path` over `exporter`.
pub fn router(exporter: Arc<Exporter>, path: &str) -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route(path, get(metrics))
        .with_state(exporter)
}

/// The rendered cycle as it is (gzip'd for scrapers that accept it), then
/// the self-metrics.
async fn metrics(State(exporter): State<Arc<Exporter>>, headers: HeaderMap) -> Response {
    exporter.http_response(&headers)
}
