use thiserror::Error;

/// What the collector can fail with.
#[derive(Debug, Error)]
pub enum CollectorError {
    /// The database refused or could not be reached.
    #[error(transparent)]
    Store(#[from] gpuwatch_store::StoreError),
    /// A source failed in a way the agent cannot work around.
    #[error(transparent)]
    Source(#[from] crate::sources::SourceError),
    /// The spool directory cannot be used.
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    /// The configured sink cannot be set up.
    #[error("cannot set up the {sink} sink: {source}")]
    Sink {
        /// `direct` or `http`
        sink: &'static str,
        /// why
        source: crate::sinks::SinkError,
    },
    /// `collector.listen` cannot be bound.
    #[error("cannot listen on {addr} (collector.listen / --web.listen-address): {source}; pick a free address or port")]
    Listen {
        /// the address
        addr: String,
        /// the OS error
        source: std::io::Error,
    },
    /// `--once`: the batch could not be delivered (it is spooled).
    #[error("batch not delivered ({spooled} batches spooled for the next run): {reason}")]
    Undelivered {
        /// batches now in the spool
        spooled: usize,
        /// why
        reason: String,
    },
}
