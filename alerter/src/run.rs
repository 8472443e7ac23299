use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::delivery::Deliverer;
use crate::error::Result;
use crate::eval::{cycle, CycleReport};
use crate::telemetry::{EVAL_DURATION, OUTBOX_QUEUED, TRANSITIONS};
use crate::AlerterConfig;

/// One evaluation cycle now, with its metrics.
pub async fn evaluate_once(
    pool: &gpuwatch_store::Pool,
    cfg: &AlerterConfig,
) -> Result<CycleReport> {
    let t = Instant::now();
    let r = cycle(pool, cfg, Utc::now()).await;
    EVAL_DURATION.observe(t.elapsed().as_secs_f64());
    match &r {
        Ok(rep) if rep.ran => {
            TRANSITIONS.with_label_values(&["ran"]).inc();
            OUTBOX_QUEUED.set(rep.notifications as i64);
        }
        Ok(_) => TRANSITIONS.with_label_values(&["skipped"]).inc(),
        Err(_) => TRANSITIONS.with_label_values(&["failed"]).inc(),
    }
    r
}

/// Runs the alerter: evaluation every `interval_secs` and `workers`
/// delivery workers, until `shutdown`. With `once`: one cycle, then deliver
/// everything due, then return.
pub async fn run(
    cfg: AlerterConfig,
    pool: gpuwatch_store::Pool,
    once: bool,
    shutdown: CancellationToken,
) -> Result<()> {
    let deliverer = Arc::new(Deliverer::new(pool.clone(), cfg.clone())?);
    if once {
        let r = evaluate_once(&pool, &cfg).await?;
        let sent = deliverer.drain().await?;
        tracing::info!(
            rules = r.rules,
            series = r.series,
            transitions = r.transitions,
            queued = r.notifications,
            delivered = sent,
            "alerter: one cycle done"
        );
        return Ok(());
    }
    let wake = Arc::new(Notify::new());
    let workers: Vec<_> = (0..cfg.workers)
        .map(|_| tokio::spawn(deliverer.clone().work(wake.clone(), shutdown.clone())))
        .collect();
    tracing::info!(
        interval_secs = cfg.interval_secs,
        workers = cfg.workers,
        "alerter running"
    );
    let mut tick = tokio::time::interval(cfg.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        match evaluate_once(&pool, &cfg).await {
            Ok(r) if r.notifications > 0 => wake.notify_waiters(),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "alert evaluation failed; retrying next interval")
            }
        }
    }
    for w in workers {
        let _ = w.await;
    }
    Ok(())
}
