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
    /// Classed by whose fault it is: what the caller sent is a 4xx naming
    /// the field or constraint, a conflict with stored state a 409, an
    /// unavailable database a 503 (the only answer worth retrying), and
    /// anything else a 500, which is a bug.
    fn from(e: gpuwatch_store::StoreError) -> Self {
        use gpuwatch_store::{ErrorClass, StoreError};
        match (e.class(), e) {
            (_, StoreError::Rejected { problems }) => {
                let more = problems.last().and_then(|p| {
                    p.strip_prefix("... and ")?
                        .strip_suffix(" more")?
                        .parse::<usize>()
                        .ok()
                });
                let n = problems.len() - usize::from(more.is_some()) + more.unwrap_or(0);
                let mut a = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{n} problem(s) in the payload; nothing was stored"),
                );
                a.details = problems;
                a
            }
            (ErrorClass::Conflict, e) => {
                let msg = e.input_problem().unwrap_or_else(|| e.to_string());
                ApiError::new(StatusCode::CONFLICT, format!("{msg}; nothing was stored"))
            }
            (ErrorClass::Invalid, e) => {
                let msg = e.input_problem().unwrap_or_else(|| e.to_string());
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("the database refused the input: {msg}; nothing was stored"),
                )
            }
            (ErrorClass::Temporary, e) => {
                tracing::warn!(error = %e, "database unavailable while serving a request");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("database unavailable, retry later: {e}"),
                )
            }
            (ErrorClass::Internal, e) => {
                tracing::error!(error = %e, "database error while serving a request");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal error: {e}"),
                )
            }
        }
    }
}
