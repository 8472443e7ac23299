//! The direct sink: the store's one ingest path ([`Ingestor`]), straight
//! into the database, with the same checks and the same all-or-nothing
//! transaction as `POST /api/v1/ingest`.

use chrono::Utc;
use gpuwatch_store::{Batch, ErrorClass, IngestLimits, Ingestor, Pool, StoreError, WriterConfig};

use super::SinkError;
use crate::sources::cgroup::EnvTarget;
use crate::Inventory;

/// Writes batches with binary COPY into the metric tables.
pub struct CopySink {
    pool: Pool,
    ingestor: Ingestor,
    /// The inventory as last registered; written with the next batch, in
    /// its transaction (and only when it changed since the last one).
    inventory: Inventory,
}

impl CopySink {
    /// A sink over `pool`.
    pub fn new(pool: Pool, cfg: WriterConfig) -> Self {
        CopySink {
            ingestor: Ingestor::new(pool.clone(), cfg, IngestLimits::default()),
            pool,
            inventory: Vec::new(),
        }
    }

    /// The database it writes to.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Takes the inventory that later batches belong to. Nothing is
    /// written yet: each batch registers what changed in its own
    /// transaction, so a refused inventory leaves the database as it was.
    pub async fn register(&mut self, inv: &Inventory) -> Result<(), SinkError> {
        self.inventory = inv.clone();
        Ok(())
    }

    /// The running environments placed on `host`, or `None` (logged) when
    /// the database cannot say; the caller keeps its previous list then.
    pub async fn environments(&self, host: &str) -> Option<Vec<EnvTarget>> {
        match gpuwatch_store::placement::running_on(&self.pool, host).await {
            Ok(placed) => Some(placed.into_iter().map(EnvTarget::from).collect()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh the environment list; keeping the last one");
                None
            }
        }
    }

    /// Stores a whole batch with the inventory, and records heartbeats:
    /// everything or nothing.
    pub async fn send(&mut self, batch: &Batch) -> Result<u64, SinkError> {
        let stats = self
            .ingestor
            .ingest(&self.inventory, batch, Utc::now())
            .await
            .map_err(refusal)?;
        Ok(stats.inserted)
    }
}

/// A batch the store refused for its content is not worth retrying; only
/// an unavailable database is.
fn refusal(e: StoreError) -> SinkError {
    SinkError {
        transient: e.class() == ErrorClass::Temporary,
        message: e.to_string(),
    }
}
