use gpuwatch_store::StoreError;
use thiserror::Error;

/// What one sync cycle of a cluster can fail with. Rows that do not map
/// are no error: they are logged, kept for the next cycle, and the rest
/// goes on.
#[derive(Debug, Error)]
pub enum DlwsError {
    /// `url` did not parse.
    #[error("dlworkspace cluster {cluster}: url is not a MySQL URL ({reason}); write mysql://user:pass@host:3306/DLWorkspaceCluster-<id>")]
    BadUrl {
        /// cluster id
        cluster: String,
        /// parser message
        reason: String,
    },
    /// MySQL could not be reached or a SELECT failed.
    #[error("dlworkspace cluster {cluster}: {what} at {target} failed: {source}; is MySQL up, and may url's user SELECT there?")]
    Mysql {
        /// cluster id
        cluster: String,
        /// host:port/database, no password
        target: String,
        /// what the sync was doing
        what: &'static str,
        /// driver error
        #[source]
        source: mysql_async::Error,
    },
    /// The database has no `jobs` table.
    #[error("dlworkspace cluster {cluster}: database {target} has no `jobs` table; point url at the cluster's DLWorkspaceCluster-<id> database")]
    NoJobsTable {
        /// cluster id
        cluster: String,
        /// host:port/database
        target: String,
    },
    /// PostgreSQL failed.
    #[error("dlworkspace cluster {cluster}: {source}")]
    Store {
        /// cluster id
        cluster: String,
        /// store error (names the query)
        #[source]
        source: StoreError,
    },
}

impl DlwsError {
    /// Whether the cause is a server that is temporarily unavailable (the
    /// next cycle may well succeed), rather than configuration.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DlwsError::Mysql { .. } | DlwsError::Store { .. })
    }
}
