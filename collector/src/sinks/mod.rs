//! Where batches go, one file per sink: straight into the database
//! ([`copy::CopySink`]) or to the central service ([`http::HttpSink`]).

pub mod copy;
pub mod http;
pub mod tls;

use gpuwatch_store::{Batch, StoreConfig};

use crate::{CollectorConfig, CollectorError, Inventory, SinkKind};

/// A failed delivery.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// What went wrong, for the log.
    pub message: String,
    /// True when the same batch may succeed later (receiver down, 5xx,
    /// 408/429, and 401/403: a token problem is the agent's configuration,
    /// not the batch's); false when the receiver refused the batch itself
    /// for good (any other 4xx).
    pub transient: bool,
}

impl From<gpuwatch_store::StoreError> for SinkError {
    fn from(e: gpuwatch_store::StoreError) -> Self {
        // A store error on an already-validated batch is the database's
        // state (down, full, failing over), not the batch's fault.
        SinkError {
            transient: true,
            message: e.to_string(),
        }
    }
}

/// The configured sink.
pub enum Sink {
    /// Binary COPY into the database (boxed: it holds the writer's state).
    Copy(Box<copy::CopySink>),
    /// `POST /api/v1/ingest` on `gpuwatch serve`.
    Http(http::HttpSink),
}

impl Sink {
    /// The sink `collector.sink` names: `direct` over `database` (a lazy
    /// pool: an agent keeps collecting into its spool while the database is
    /// down), or `http` to `collector.http`.
    pub fn from_config(
        collector: &CollectorConfig,
        database: &StoreConfig,
    ) -> Result<Sink, CollectorError> {
        Ok(match collector.sink {
            SinkKind::Direct => Sink::Copy(Box::new(copy::CopySink::new(
                gpuwatch_store::connect_lazy(database)?,
                database.writer.clone(),
            ))),
            SinkKind::Http => {
                Sink::Http(http::HttpSink::new(&collector.http).map_err(|source| {
                    CollectorError::Sink {
                        sink: "http",
                        source,
                    }
                })?)
            }
        })
    }
}

impl Sink {
    /// The database of the direct sink; none over HTTP.
    pub fn pool(&self) -> Option<&gpuwatch_store::Pool> {
        match self {
            Sink::Copy(s) => Some(s.pool()),
            Sink::Http(_) => None,
        }
    }

    /// Registers (or refreshes) the inventory; later batches may only name
    /// GPUs it holds.
    pub async fn register(&mut self, inventory: &Inventory) -> Result<(), SinkError> {
        match self {
            Sink::Copy(s) => s.register(inventory).await,
            Sink::Http(s) => {
                s.register(inventory);
                Ok(())
            }
        }
    }

    /// The running environments of `host` to sample: from the database, or
    /// from `gpuwatch serve`'s agent endpoint. `None` (logged) when the
    /// sink cannot say now; the caller keeps its previous list then.
    pub async fn environments(&self, host: &str) -> Option<Vec<crate::sources::cgroup::EnvTarget>> {
        match self {
            Sink::Copy(s) => s.environments(host).await,
            Sink::Http(s) => s.environments(host).await,
        }
    }

    /// Delivers a batch; safe to repeat after a failure (duplicates are
    /// skipped downstream). Returns rows newly stored, when the sink knows.
    pub async fn send(&mut self, batch: &Batch) -> Result<u64, SinkError> {
        match self {
            Sink::Copy(s) => s.send(batch).await,
            Sink::Http(s) => s.send(batch).await,
        }
    }
}
