//! The direct sink: the store's batch writer, straight into the database.

use std::collections::HashMap;

use chrono::Utc;
use gpuwatch_store::{inventory, BatchWriter, Pool, WriterConfig};
use gpuwatch_store::{Batch, GpuSample};

use super::SinkError;
use crate::sources::cgroup::EnvTarget;
use crate::Inventory;

/// Writes batches with binary COPY into the metric tables.
pub struct CopySink {
    pool: Pool,
    writer: BatchWriter,
    /// UUID → `gpus.id`, from the last registration.
    ids: HashMap<String, i64>,
}

impl CopySink {
    /// A sink over `pool`.
    pub fn new(pool: Pool, cfg: WriterConfig) -> Self {
        CopySink {
            writer: BatchWriter::new(pool.clone(), cfg),
            pool,
            ids: HashMap::new(),
        }
    }

    /// The database it writes to.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Upserts hosts and GPUs and learns their ids.
    pub async fn register(&mut self, inv: &Inventory) -> Result<(), SinkError> {
        let now = Utc::now();
        for (host, gpus) in inv {
            inventory::upsert_host(&self.pool, host, now).await?;
            for g in gpus {
                let id = inventory::upsert_gpu(&self.pool, g).await?;
                self.ids.insert(g.uuid.clone(), id);
            }
        }
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

    /// Stores a whole batch and records heartbeats.
    pub async fn send(&mut self, batch: &Batch) -> Result<u64, SinkError> {
        let mut gpu: Vec<GpuSample> = Vec::with_capacity(batch.gpu.len());
        for r in &batch.gpu {
            let Some(&id) = self.ids.get(&r.uuid) else {
                return Err(SinkError {
                    transient: false,
                    message: format!(
                        "GPU {} of host {} is not registered",
                        r.uuid, r.sample.host_id
                    ),
                });
            };
            gpu.push(GpuSample {
                gpu_id: id,
                ..r.sample.clone()
            });
        }
        let mut inserted = self.writer.write(&gpu).await?.inserted;
        inserted += self.writer.write(&batch.host).await?.inserted;
        inserted += self.writer.write(&batch.env).await?.inserted;
        let latest = batch.host.iter().map(|h| h.collected_at).max();
        if let Some(at) = latest {
            inventory::heartbeat(&self.pool, &batch.host_ids(), at).await?;
        }
        Ok(inserted)
    }
}
