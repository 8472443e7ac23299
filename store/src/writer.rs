//! The batch writer: binary COPY over several pooled connections.
//!
//! The common case (nothing in the batch is stored yet) goes straight into
//! the table by COPY, as fast as the server ingests. A chunk that hits the
//! primary key (a re-sent batch, an overlap after a crash) is rolled back
//! and goes through a session-local staging table with
//! `INSERT ... ON CONFLICT DO NOTHING`, so each sample is stored once and no
//! error reaches the caller. Only the chunk with the duplicate pays for that.
//!
//! Rows landing behind a tier watermark are queued for recomputation by the
//! tables' statement trigger, inside each chunk's own transaction: the
//! writer has no separate step that could fail after the rows committed.

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures_util::{pin_mut, stream::FuturesUnordered, StreamExt};
use tokio_postgres::{
    binary_copy::BinaryCopyInWriter, error::SqlState, Client, CopyInSink, Transaction,
};

use crate::{Pool, Result, Sample, StoreError, WriterConfig};

/// What one [`BatchWriter::write`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Rows handed in.
    pub rows: u64,
    /// Rows newly stored.
    pub inserted: u64,
    /// Rows that were already stored and were skipped.
    pub duplicates: u64,
    /// Chunks that took the de-duplicating path.
    pub dedup_chunks: u64,
}

impl std::ops::AddAssign for WriteStats {
    fn add_assign(&mut self, o: Self) {
        self.rows += o.rows;
        self.inserted += o.inserted;
        self.duplicates += o.duplicates;
        self.dedup_chunks += o.dedup_chunks;
    }
}

/// Streams sample rows into the metric tables. Share one per process.
pub struct BatchWriter {
    pool: Pool,
    cfg: WriterConfig,
    /// Days whose partition is known to exist, per table (plain PostgreSQL only).
    ensured: Mutex<HashSet<(&'static str, i64)>>,
}

impl BatchWriter {
    /// A writer over `pool`.
    pub fn new(pool: Pool, cfg: WriterConfig) -> Self {
        BatchWriter {
            pool,
            cfg,
            ensured: Mutex::new(HashSet::new()),
        }
    }

    /// Stores `rows`; idempotent: rows already stored are skipped, not errors.
    /// On error, some chunks may be stored; writing the batch again is safe.
    pub async fn write<S: Sample>(&self, rows: &[S]) -> Result<WriteStats> {
        if rows.is_empty() {
            return Ok(WriteStats::default());
        }
        let started = std::time::Instant::now();
        let result = self.write_all(rows).await;
        record_metrics::<S>(started, &result);
        result
    }

    /// Creates what `rows` need before they can be written in a
    /// transaction (the daily partitions on plain PostgreSQL), in statements
    /// of their own on `client`: run it before opening the transaction, so
    /// a rollback cannot undo a partition this writer believes exists.
    pub async fn prepare<S: Sample>(&self, client: &Client, rows: &[S]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.ensure_partitions::<S>(client, &days_of(rows)).await
    }

    /// Stores `rows` inside the caller's transaction, so they commit or roll
    /// back with everything else it holds; [`BatchWriter::prepare`] first.
    /// One connection, chunk after chunk, each in a savepoint: a chunk that
    /// hits stored rows is rolled back to it and de-duplicated, as
    /// [`BatchWriter::write`] does. Late samples invalidate their tier
    /// buckets in the same transaction (the raw tables' triggers).
    pub async fn write_in<S: Sample>(
        &self,
        tx: &mut Transaction<'_>,
        rows: &[S],
    ) -> Result<WriteStats> {
        if rows.is_empty() {
            return Ok(WriteStats::default());
        }
        let started = std::time::Instant::now();
        let result = self.write_in_tx(tx, rows).await;
        record_metrics::<S>(started, &result);
        result
    }

    async fn write_in_tx<S: Sample>(
        &self,
        tx: &mut Transaction<'_>,
        rows: &[S],
    ) -> Result<WriteStats> {
        let mut total = WriteStats::default();
        // Late samples invalidate their tier buckets through the raw tables'
        // statement triggers, in this same transaction (DESIGN, "Exact tiers").
        for chunk in rows.chunks(self.cfg.chunk_rows.max(1)) {
            total += copy_chunk_in(tx, chunk).await?;
        }
        Ok(total)
    }

    async fn write_all<S: Sample>(&self, rows: &[S]) -> Result<WriteStats> {
        {
            let client = self.pool.get().await?;
            self.ensure_partitions::<S>(&client, &days_of(rows)).await?;
        }
        let mut chunks = rows.chunks(self.cfg.chunk_rows.max(1));
        let mut in_flight = FuturesUnordered::new();
        let mut total = WriteStats::default();
        let mut failure = None;
        loop {
            // After a failure no new chunk starts; the running ones finish.
            while failure.is_none() && in_flight.len() < self.cfg.connections.max(1) {
                match chunks.next() {
                    Some(c) => in_flight.push(self.write_chunk(c)),
                    None => break,
                }
            }
            match in_flight.next().await {
                Some(Ok(s)) => total += s,
                Some(Err(e)) => {
                    failure.get_or_insert(e);
                }
                None => break,
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(total)
    }

    async fn write_chunk<S: Sample>(&self, rows: &[S]) -> Result<WriteStats> {
        let copy_err = |source| StoreError::copy(S::TABLE, source);
        let mut client = self.pool.get().await?;
        let sink = client
            .copy_in(&copy_sql::<S>(S::TABLE))
            .await
            .map_err(copy_err)?;
        match copy_rows(sink, rows).await {
            Ok(n) => Ok(WriteStats {
                rows: rows.len() as u64,
                inserted: n,
                ..Default::default()
            }),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                let tx = Client::transaction(&mut client).await.map_err(copy_err)?;
                let inserted = dedup_chunk(tx, rows).await.map_err(copy_err)?;
                tracing::debug!(
                    table = S::TABLE,
                    rows = rows.len(),
                    inserted,
                    "chunk held duplicates"
                );
                Ok(WriteStats {
                    rows: rows.len() as u64,
                    inserted,
                    duplicates: rows.len() as u64 - inserted,
                    dedup_chunks: 1,
                })
            }
            Err(e) => Err(copy_err(e)),
        }
    }

    /// Creates the daily partitions a batch needs on plain PostgreSQL, so an
    /// insert never fails for want of one. A no-op on hypertables (the SQL
    /// function checks), and cached per day so it costs nothing after the first.
    async fn ensure_partitions<S: Sample>(
        &self,
        client: &Client,
        days: &HashSet<i64>,
    ) -> Result<()> {
        let missing: Vec<i64> = {
            let known = self.ensured.lock().unwrap_or_else(|p| p.into_inner());
            days.iter()
                .copied()
                .filter(|d| !known.contains(&(S::TABLE, *d)))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        for d in missing {
            let date = DateTime::<Utc>::from_timestamp(d * 86_400, 0)
                .map(|t| t.date_naive())
                .ok_or_else(|| {
                    StoreError::Unsupported(format!("sample day {d} is out of range"))
                })?;
            client
                .execute(
                    "SELECT gpuwatch_ensure_partitions($1, $2, $2)",
                    &[&S::TABLE, &date],
                )
                .await
                .map_err(|e| {
                    StoreError::query(format!("creating the {date} partition of {}", S::TABLE), e)
                })?;
            self.ensured
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((S::TABLE, d));
        }
        Ok(())
    }
}

/// The UTC days of a batch (its partitions).
fn days_of<S: Sample>(rows: &[S]) -> HashSet<i64> {
    rows.iter()
        .map(|r| r.collected_at().timestamp().div_euclid(86_400))
        .collect()
}

/// One chunk into `S::TABLE` inside `tx`, in a savepoint: a chunk that
/// meets stored rows is rolled back to it and de-duplicated.
async fn copy_chunk_in<S: Sample>(tx: &mut Transaction<'_>, rows: &[S]) -> Result<WriteStats> {
    let copy_err = |source| StoreError::copy(S::TABLE, source);
    let sp = tx.transaction().await.map_err(copy_err)?;
    let sink = sp
        .copy_in(&copy_sql::<S>(S::TABLE))
        .await
        .map_err(copy_err)?;
    match copy_rows(sink, rows).await {
        Ok(n) => {
            sp.commit().await.map_err(copy_err)?;
            Ok(WriteStats {
                rows: rows.len() as u64,
                inserted: n,
                ..Default::default()
            })
        }
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            sp.rollback().await.map_err(copy_err)?;
            let sp = tx.transaction().await.map_err(copy_err)?;
            let inserted = dedup_chunk(sp, rows).await.map_err(copy_err)?;
            Ok(WriteStats {
                rows: rows.len() as u64,
                inserted,
                duplicates: rows.len() as u64 - inserted,
                dedup_chunks: 1,
            })
        }
        Err(e) => Err(copy_err(e)),
    }
}

fn record_metrics<S: Sample>(started: std::time::Instant, result: &Result<WriteStats>) {
    let table = [S::TABLE];
    crate::metrics::LATENCY
        .with_label_values(&table)
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(s) => {
            crate::metrics::WRITTEN
                .with_label_values(&table)
                .inc_by(s.inserted);
            crate::metrics::DUPLICATES
                .with_label_values(&table)
                .inc_by(s.duplicates);
        }
        Err(_) => crate::metrics::FAILED.with_label_values(&table).inc(),
    }
}

/// Advisory lock key guarding a raw table's tier watermarks: the aggregator
/// takes it exclusively; the raw tables' invalidation trigger
/// (`migrations/0029_tiers.sql`, which names each table's key) takes it shared.
pub fn tier_lock_key(table: &str) -> i64 {
    // Tagged so it cannot meet another gpuwatch key.
    (crate::fnv1a(table.as_bytes()) >> 8) as i64 | 0x7400_0000_0000_0000
}

fn copy_sql<S: Sample>(table: &str) -> String {
    format!(
        "COPY {table} ({}) FROM STDIN (FORMAT binary)",
        S::COLUMNS.join(", ")
    )
}

async fn copy_rows<S: Sample>(
    sink: CopyInSink<bytes::Bytes>,
    rows: &[S],
) -> Result<u64, tokio_postgres::Error> {
    let writer = BinaryCopyInWriter::new(sink, S::TYPES);
    pin_mut!(writer);
    for r in rows {
        writer.as_mut().write(&r.values()).await?;
    }
    writer.finish().await
}

/// Stages the chunk in a temp table and inserts what is not stored yet, in
/// `tx` (a transaction, or a savepoint of the caller's), which it commits.
async fn dedup_chunk<S: Sample>(
    tx: Transaction<'_>,
    rows: &[S],
) -> Result<u64, tokio_postgres::Error> {
    let stage = format!("gpuwatch_stage_{}", S::TABLE);
    let cols = S::COLUMNS.join(", ");
    tx.batch_execute(&format!(
        "SET LOCAL client_min_messages = warning;
         CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        S::TABLE
    ))
    .await?;
    let sink = tx.copy_in(&copy_sql::<S>(&stage)).await?;
    copy_rows(sink, rows).await?;
    let n = tx
        .execute(
            &format!(
                "INSERT INTO {} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING",
                S::TABLE
            ),
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}
