//! `/ready` and `/metrics` (`/health` is a constant in the route table).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::{ApiError, AppState};

/// `/ready`: 200 when the database answers and every migration this binary
/// embeds is applied; 503 saying which check failed otherwise.
pub(crate) async fn ready(State(st): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let client = st.pool.get().await?;
    let role = gpuwatch_store::replication::role(&**client).await?;
    let pending = gpuwatch_store::pending_migrations(&client).await?;
    if !pending.is_empty() {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the database schema is not current on the {} reached: run `gpuwatch migrate`",
                role.as_str()
            ),
        );
        e.details = pending;
        return Err(e);
    }
    Ok(Json(serde_json::json!({
        "status": "ready",
        "migrations": gpuwatch_store::migrations().len(),
        "database": { "role": role.as_str() },
    })))
}

/// `/metrics`: the snapshot's bytes as they are (gzip'd once per refresh
/// for scrapers that accept it), then self-metrics.
pub(crate) async fn metrics(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    let accept_gzip = gpuwatch_exporter::accepts_gzip(
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
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
