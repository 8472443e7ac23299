//! The agent's HTTP side: `/metrics` answered as `gpuwatch serve` answers
//! it, and `/health`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
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
    let accept_gzip = gpuwatch_exporter::accepts_gzip(
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let (chunks, gzipped) = exporter.scrape_encoded(accept_gzip);
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let mut resp = (
        [(header::CONTENT_TYPE, gpuwatch_exporter::CONTENT_TYPE)],
        Body::from_stream(stream),
    )
        .into_response();
    if gzipped {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}
