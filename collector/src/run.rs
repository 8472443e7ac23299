//! The collector's loop: register, then sample → write → heartbeat every tick.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, SubsecRound, Utc};
use gpuwatch_store::{inventory, Pool, WriterConfig};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::{
    sinks::copy::CopySink, sources::sim::SimFleet, Batch, CollectorConfig, CollectorError,
    SourceKind,
};

/// How one `run` behaves beyond the config file.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Collect and write once, then return (scripts and tests).
    pub once: bool,
}

/// Registers the inventory and collects until `shutdown` fires.
pub async fn run(
    cfg: CollectorConfig,
    pool: Pool,
    writer: WriterConfig,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    let SourceKind::Sim = cfg.source;
    let fleet = SimFleet::new(cfg.sim.clone(), Utc::now());
    let ids = register(&pool, &fleet).await?;
    tracing::info!(
        hosts = cfg.sim.hosts,
        gpus = ids.len(),
        interval_secs = cfg.interval_secs,
        database = %pool.target(),
        "collector started with the simulated fleet"
    );
    let sink = CopySink::new(pool.clone(), writer);
    let mut pending: VecDeque<(DateTime<Utc>, Batch)> = VecDeque::new();
    let mut ticker = tokio::time::interval(cfg.interval());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = Utc::now().trunc_subsecs(0);
        pending.push_back((now, collect(&fleet, &ids, now)));
        while pending.len() > cfg.max_pending_batches {
            if let Some((at, b)) = pending.pop_front() {
                tracing::error!(collected_at = %at, rows = b.len(), "dropped the oldest unsent batch: the database has been unreachable too long");
            }
        }
        let flushed = flush(&sink, &pool, &mut pending).await;
        if opts.once {
            return flushed.map_err(CollectorError::from);
        }
    }
    if !pending.is_empty() {
        tracing::info!(
            batches = pending.len(),
            "flushing unsent batches before exit"
        );
        if flush(&sink, &pool, &mut pending).await.is_err() {
            tracing::error!(
                batches = pending.len(),
                "exiting with unsent batches: the database is unreachable"
            );
        }
    }
    Ok(())
}

/// Upserts hosts and GPUs; returns UUID → `gpus.id`.
async fn register(pool: &Pool, fleet: &SimFleet) -> Result<HashMap<String, i64>, CollectorError> {
    let now = Utc::now();
    for h in fleet.hosts() {
        inventory::upsert_host(pool, &h, now).await?;
    }
    let mut ids = HashMap::new();
    for g in fleet.gpus() {
        let id = inventory::upsert_gpu(pool, &g).await?;
        ids.insert(g.uuid, id);
    }
    Ok(ids)
}

fn collect(fleet: &SimFleet, ids: &HashMap<String, i64>, now: DateTime<Utc>) -> Batch {
    let (readings, host) = fleet.sample(now);
    let gpu = readings
        .into_iter()
        .filter_map(|mut r| {
            let id = ids.get(&r.uuid).copied();
            if id.is_none() {
                tracing::warn!(gpu.uuid = %r.uuid, "sample of an unregistered GPU skipped");
            }
            r.sample.gpu_id = id?;
            Some(r.sample)
        })
        .collect();
    Batch {
        gpu,
        host,
        env: Vec::new(),
    }
}

/// Sends pending batches oldest first; stops at the first failure and keeps
/// the rest for the next tick, returning that failure.
async fn flush(
    sink: &CopySink,
    pool: &Pool,
    pending: &mut VecDeque<(DateTime<Utc>, Batch)>,
) -> Result<(), gpuwatch_store::StoreError> {
    while let Some((at, batch)) = pending.front() {
        let started = std::time::Instant::now();
        match sink.send(batch).await {
            Ok(stats) => {
                tracing::info!(
                    collected_at = %at,
                    rows = stats.rows,
                    inserted = stats.inserted,
                    duplicates = stats.duplicates,
                    latency_ms = started.elapsed().as_millis() as u64,
                    "batch written"
                );
                if let Err(e) = inventory::heartbeat(pool, &batch.host_ids(), *at).await {
                    tracing::warn!(error = %e, "heartbeat update failed; the next batch retries it");
                }
                pending.pop_front();
            }
            Err(e) => {
                tracing::error!(error = %e, pending = pending.len(), "batch not written; keeping it to retry on the next tick");
                return Err(e);
            }
        }
    }
    Ok(())
}
