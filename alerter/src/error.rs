use gpuwatch_store::StoreError;
use thiserror::Error;

/// Everything the alerter's library functions can fail with. The API maps
/// `Invalid` to 422, `NotFound` to 404, `Conflict` to 409, `Unreadable` to 500
/// and `Store` to 503/500.
#[derive(Debug, Error)]
pub enum AlerterError {
    /// The input is wrong; each message names the field and what is wrong.
    #[error("invalid input: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The named thing does not exist (or was deleted).
    #[error("{0} not found")]
    NotFound(String),
    /// The change clashes with existing state (e.g. a duplicate name).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored row does not parse (edited past the API); the message names
    /// the row, the column and how to fix it.
    #[error("{0}")]
    Unreadable(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AlerterError {
    /// Wraps a query error with what we were doing, turning unique
    /// violations into `Conflict` so callers can answer 409.
    pub(crate) fn query(what: &str, e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            if db.code().code() == "23505" {
                return AlerterError::Conflict(format!(
                    "{what}: {}",
                    db.detail().unwrap_or(db.message())
                ));
            }
        }
        AlerterError::Store(StoreError::query(what, e))
    }
}

/// Result type of this crate.
pub type Result<T, E = AlerterError> = std::result::Result<T, E>;

/// Shorthand for query errors inside the crate.
pub(crate) fn q(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> AlerterError {
    move |e| AlerterError::query(what, e)
}
