use thiserror::Error;

/// What the collector can fail with.
#[derive(Debug, Error)]
pub enum CollectorError {
    /// The database refused or could not be reached.
    #[error(transparent)]
    Store(#[from] gpuwatch_store::StoreError),
}
