use thiserror::Error;

/// What the aggregator can fail with.
#[derive(Debug, Error)]
pub enum AggregatorError {
    /// The database refused or could not be reached.
    #[error(transparent)]
    Store(#[from] gpuwatch_store::StoreError),
    /// A query of the aggregator failed.
    #[error("{what} failed: {source}")]
    Query {
        /// what we were doing
        what: String,
        /// underlying error
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Shorthand for mapping a query error with what we were doing.
pub(crate) fn q(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> AggregatorError {
    let what = what.into();
    move |source| AggregatorError::Query { what, source }
}
