//! `/ready` and `/metrics` (`/health` is a constant in the route table).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;

use crate::{ApiError, AppState};

/// `/ready`: 200 when the database answers and every migration this binary
/// embeds is applied, and, where `database.read_url` is set, its readers
/// answer too; 503 saying which check failed otherwise. It names the role of
/// each server reached, so a probe shows where reads are served from.
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
    let mut body = serde_json::json!({
        "status": "ready",
        "migrations": gpuwatch_store::migrations().len(),
        "database": { "role": role.as_str() },
    });
    if st.pool.has_readers() {
        let readers = st.pool.readers();
        let reached = async {
            let c = readers.get().await?;
            gpuwatch_store::replication::role(&**c).await
        };
        let role = reached.await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the readers of database.read_url ({}) do not answer: {e}",
                    readers.target()
                ),
            )
        })?;
        body["readers"] = serde_json::json!({ "role": role.as_str() });
    }
    Ok(Json(body))
}

/// `/metrics`: the snapshot's bytes as they are (gzip'd once per refresh
/// for scrapers that accept it), then self-metrics.
pub(crate) async fn metrics(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    st.exporter.http_response(&headers)
}
