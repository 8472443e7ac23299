//! `/ready` and `/metrics` (`/health` is a constant in the route table).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
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
    st.exporter.http_response(&headers)
}
