use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An API error: a status and a JSON body that says what is wrong.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// One sentence for a person.
    pub message: String,
    /// Per-item problems (e.g. each invalid sample), if any.
    pub details: Vec<String>,
}

impl ApiError {
    /// An error without details.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": { "status": self.status.as_u16(), "message": self.message } });
        if !self.details.is_empty() {
            body["error"]["details"] = serde_json::json!(self.details);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<gpuwatch_store::StoreError> for ApiError {
    fn from(e: gpuwatch_store::StoreError) -> Self {
        tracing::error!(error = %e, "database error while serving a request");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unavailable, retry later: {e}"),
        )
    }
}
