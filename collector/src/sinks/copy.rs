//! The direct sink: the store's batch writer, straight into the database.

use gpuwatch_store::{BatchWriter, Pool, StoreError, WriteStats, WriterConfig};

use crate::Batch;

/// Writes batches with binary COPY into the metric tables.
pub struct CopySink {
    writer: BatchWriter,
}

impl CopySink {
    /// A sink over `pool`.
    pub fn new(pool: Pool, cfg: WriterConfig) -> Self {
        CopySink {
            writer: BatchWriter::new(pool, cfg),
        }
    }

    /// Stores a whole batch; safe to repeat after a failure (rows already
    /// stored are skipped).
    pub async fn send(&self, batch: &Batch) -> Result<WriteStats, StoreError> {
        let mut stats = self.writer.write(&batch.gpu).await?;
        stats += self.writer.write(&batch.host).await?;
        stats += self.writer.write(&batch.env).await?;
        Ok(stats)
    }
}
