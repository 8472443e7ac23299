//! The collector's loop: sample every tick, deliver, spool what could not be
//! delivered, and replay the spool in order when the sink is back.

use std::io::Write;

use chrono::{SubsecRound, Utc};
use gpuwatch_store::Batch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::fleet::Fleet;
use crate::serve::AgentMetrics;
use crate::sinks::Sink;
use crate::spool::Spool;
use crate::{CollectorConfig, CollectorError};

/// Ticks between inventory checks (registration happens only on change).
const INVENTORY_EVERY: u64 = 30;

/// How one `run` behaves beyond the config file.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Collect and deliver once, then return.
    pub once: bool,
    /// Print each collection as JSON on stdout instead of delivering it.
    pub print: bool,
}

/// Collects until `shutdown` fires (or once).
pub async fn run(
    cfg: CollectorConfig,
    sink: Sink,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    run_with(Fleet::new(&cfg), None, cfg, sink, opts, shutdown).await
}

/// [`run`] over a fleet of the caller's, handing each cycle to `metrics`
/// when the agent serves its own `/metrics` ([`crate::serve::listen`]).
pub async fn run_with(
    mut fleet: Fleet,
    mut metrics: Option<AgentMetrics>,
    cfg: CollectorConfig,
    mut sink: Sink,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    crate::control_plane::start(&cfg, &sink, &mut fleet, shutdown.clone());
    let mut spool = Spool::open(&cfg.spool.dir, cfg.spool.max_bytes)?;
    if !spool.is_empty() {
        tracing::info!(
            batches = spool.len(),
            "spooled batches from an earlier run will be replayed"
        );
    }
    let mut registered = false;
    let mut last_inventory = None;
    let mut ticks: u64 = 0;
    let mut ticker = tokio::time::interval(cfg.interval());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tracing::info!(interval_secs = cfg.interval_secs, source = ?cfg.source, sink = ?cfg.sink, "collector started");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let cycle = std::time::Instant::now();
        let at = Utc::now().trunc_subsecs(0);
        // NVML reads block (PCIe throughput waits ~20 ms per read); keep them
        // off the async workers.
        let batch = match fleet {
            Fleet::Host(_) => tokio::task::block_in_place(|| fleet.collect(at)),
            Fleet::Sim(_) => fleet.collect(at),
        };
        tracing::debug!(collected_at = %at.to_rfc3339(), rows = batch.len(), "collected");
        if let Some(m) = metrics.as_mut() {
            m.publish(&mut fleet, &batch);
        }
        if opts.print {
            print(&fleet.inventory()?, &batch);
            if opts.once {
                return Ok(());
            }
            continue;
        }
        ticks += 1;
        if registered && ticks.is_multiple_of(INVENTORY_EVERY) {
            // Re-register only when something changed (a GPU swapped, labels edited).
            if let Ok(inv) = fleet.inventory() {
                if last_inventory.as_ref() != Some(&inv) {
                    registered = false;
                }
            }
        }
        if !registered {
            match fleet.inventory() {
                Ok(inv) => match sink.register(&inv).await {
                    Ok(()) => {
                        registered = true;
                        last_inventory = Some(inv);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot register the inventory yet; spooling and retrying next tick")
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the inventory; retrying next tick")
                }
            }
        }
        if let Some(host) = fleet.host_id().map(str::to_string) {
            if let Some(envs) = sink.environments(&host).await {
                fleet.set_environments(envs);
            }
        }
        let delivered = deliver(&mut sink, &mut spool, batch, registered).await?;
        if let Some(m) = &metrics {
            m.delivered(&delivered, cycle.elapsed());
        }
        if opts.once {
            return match delivered {
                Ok(()) => Ok(()),
                Err(e) => Err(CollectorError::Undelivered {
                    spooled: spool.len(),
                    reason: e.message,
                }),
            };
        }
    }
    if registered && !spool.is_empty() {
        tracing::info!(
            batches = spool.len(),
            "replaying the spool once more before exit"
        );
        let _ = drain(&mut sink, &mut spool).await?;
    }
    if !spool.is_empty() {
        tracing::warn!(batches = spool.len(), dir = %cfg.spool.dir.display(), "exiting with spooled batches; the next start replays them");
    }
    Ok(())
}

fn print(inventory: &crate::Inventory, batch: &Batch) {
    let doc = serde_json::json!({ "inventory": inventory.iter().map(|(h, g)| serde_json::json!({"host": h, "gpus": g})).collect::<Vec<_>>(), "batch": batch });
    let mut out = std::io::stdout().lock();
    // stdout closed (e.g. `| head`) is not worth failing the agent for.
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    );
}

/// Sends the new batch (after anything already spooled, to keep order);
/// what cannot be sent goes to the spool. Returns the last delivery failure.
async fn deliver(
    sink: &mut Sink,
    spool: &mut Spool,
    batch: Batch,
    registered: bool,
) -> Result<Result<(), crate::sinks::SinkError>, CollectorError> {
    if registered && spool.is_empty() {
        let started = std::time::Instant::now();
        match sink.send(&batch).await {
            Ok(inserted) => {
                tracing::info!(
                    rows = batch.len(),
                    inserted,
                    latency_ms = started.elapsed().as_millis() as u64,
                    "batch delivered"
                );
                return Ok(Ok(()));
            }
            Err(e) if e.transient => {
                tracing::error!(error = %e, "batch not delivered; spooled for replay");
                spool.push(&batch)?;
                return Ok(Err(e));
            }
            Err(e) => {
                tracing::error!(error = %e, "batch refused by the receiver; kept in the spool's rejected/ for inspection");
                spool.push(&batch)?;
                if let Some((seq, _)) = spool.oldest()? {
                    spool.reject(seq)?;
                }
                return Ok(Err(e));
            }
        }
    }
    spool.push(&batch)?;
    if !registered {
        return Ok(Err(crate::sinks::SinkError {
            transient: true,
            message: "inventory not registered".into(),
        }));
    }
    drain(sink, spool).await
}

/// Replays the spool oldest first until it is empty or the sink fails.
async fn drain(
    sink: &mut Sink,
    spool: &mut Spool,
) -> Result<Result<(), crate::sinks::SinkError>, CollectorError> {
    let mut replayed = 0;
    while let Some((seq, b)) = spool.oldest()? {
        match sink.send(&b).await {
            Ok(_) => {
                spool.remove(seq)?;
                replayed += 1;
            }
            Err(e) if e.transient => {
                if replayed > 0 {
                    tracing::info!(replayed, left = spool.len(), "spool partly replayed");
                }
                return Ok(Err(e));
            }
            Err(e) => {
                tracing::error!(error = %e, spool.seq = seq, "spooled batch refused by the receiver; moved to rejected/");
                spool.reject(seq)?;
            }
        }
    }
    if replayed > 0 {
        tracing::info!(replayed, "spool replayed; the sink is back");
    }
    Ok(Ok(()))
}
