//! The collector's loop: sample every tick and append the batch to the
//! spool; a delivery task of its own ([`crate::delivery`]) sends the spool
//! in order, so collection never waits on the receiver.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use gpuwatch_store::Batch;
use tokio::sync::{watch, Notify};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::delivery::{lock, Backoff, Delivery};
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
///
/// Collection and delivery are separate tasks joined by the spool: each
/// cycle's batch is appended to the spool (durably) and the delivery task
/// is woken ([`crate::delivery`]). A receiver that is slow, down or
/// refusing never delays the next sample.
pub async fn run_with(
    mut fleet: Fleet,
    mut metrics: Option<AgentMetrics>,
    cfg: CollectorConfig,
    sink: Sink,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    crate::control_plane::start(&cfg, &sink, &mut fleet, shutdown.clone());
    let spool = Spool::open(&cfg.spool.dir, cfg.spool.max_bytes)?.with_rejected_limits(
        cfg.spool.rejected_keep,
        Duration::from_secs(cfg.spool.rejected_max_age_secs),
    );
    if !spool.is_empty() {
        tracing::info!(
            batches = spool.len(),
            "spooled batches from an earlier run will be replayed"
        );
    }
    let spool = Arc::new(Mutex::new(spool));
    let (inventory_tx, inventory_rx) = watch::channel(None);
    let (envs_tx, mut envs_rx) = watch::channel(None);
    let delivery = Delivery {
        sink,
        spool: spool.clone(),
        inventory: inventory_rx,
        registered: None,
        host: fleet.host_id().map(str::to_string),
        environments: envs_tx,
        backoff: Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(cfg.spool.retry_max_secs),
        ),
    };
    let wake = Arc::new(Notify::new());
    let (mut local, task) = if opts.once || opts.print {
        (Some(delivery), None)
    } else {
        let task = tokio::spawn(delivery.run(wake.clone(), shutdown.clone()));
        (None, Some(task))
    };
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
        if envs_rx.has_changed().unwrap_or(false) {
            if let Some(envs) = envs_rx.borrow_and_update().clone() {
                fleet.set_environments(envs);
            }
        }
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
        // Re-read the inventory now and then; the delivery task registers it
        // only when it changed (a GPU swapped, labels edited).
        if ticks.is_multiple_of(INVENTORY_EVERY) || inventory_tx.borrow().is_none() {
            match fleet.inventory() {
                Ok(inv) => {
                    inventory_tx.send_if_modified(|cur| {
                        let changed = cur.as_ref() != Some(&inv);
                        if changed {
                            *cur = Some(inv);
                        }
                        changed
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the inventory; retrying next tick")
                }
            }
        }
        ticks += 1;
        lock(&spool).push(&batch)?;
        if let Some(m) = &metrics {
            m.cycle(cycle.elapsed());
        }
        match local.as_mut() {
            Some(d) => return once(d, &spool).await,
            None => wake.notify_one(),
        }
    }
    if let Some(task) = task {
        match task.await {
            Ok(r) => r?,
            Err(e) => tracing::error!(error = %e, "the delivery task ended abnormally"),
        }
    }
    let left = lock(&spool).len();
    if left > 0 {
        tracing::warn!(batches = left, dir = %cfg.spool.dir.display(), "exiting with spooled batches; the next start replays them");
    }
    Ok(())
}

/// `--once`: one pass over the spool, and what kept anything back.
async fn once(d: &mut Delivery, spool: &Mutex<Spool>) -> Result<(), CollectorError> {
    let mut pass = d.pass().await?;
    let reason = match (pass.transient, pass.refused.pop()) {
        (None, None) => return Ok(()),
        (Some(e), _) => e.message,
        (None, Some(reason)) => reason,
    };
    Err(CollectorError::Undelivered {
        spooled: lock(spool).len(),
        reason,
    })
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
