use gpuwatch_store::StoreError;
use tokio_postgres::error::SqlState;

/// What a billing function can fail with; the API maps each variant to a
/// status code (Invalid 422, NotFound 404, Conflict 409, Store 503/500).
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// Bad input: each message names the field and what is wrong with it.
    #[error("invalid request: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts the current state (a transition that is not
    /// allowed, a price overlapping another, an interval already billed).
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result type of this crate.
pub type Result<T, E = BillingError> = std::result::Result<T, E>;

/// Wraps a query error: constraint violations (an overlapping billed
/// interval, a forbidden invoice change) become `Conflict` with the server's
/// message and detail; anything else is a store error naming `what`.
pub(crate) fn db(what: &str) -> impl FnOnce(tokio_postgres::Error) -> BillingError + '_ {
    move |e| {
        let conflict = e.code().is_some_and(|c| {
            *c == SqlState::EXCLUSION_VIOLATION
                || *c == SqlState::UNIQUE_VIOLATION
                || *c == SqlState::INTEGRITY_CONSTRAINT_VIOLATION
                || *c == SqlState::CHECK_VIOLATION
        });
        match (conflict, e.as_db_error()) {
            (true, Some(d)) => {
                let detail = d.detail().map(|x| format!(" ({x})")).unwrap_or_default();
                BillingError::Conflict(format!("{what}: {}{detail}", d.message()))
            }
            _ => BillingError::Store(StoreError::query(what, e)),
        }
    }
}
