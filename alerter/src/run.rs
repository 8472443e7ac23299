use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::delivery::Deliverer;
use crate::error::Result;
use crate::eval::{cycle, CycleReport};
use crate::telemetry::{refresh_outbox_depth, EVAL_DURATION, OUTBOX_QUEUED, PRUNED, TRANSITIONS};
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
    let mut last_prune: Option<Instant> = None;
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
        if let Err(e) = refresh_outbox_depth(&pool).await {
            tracing::warn!(error = %e, "cannot count the outbox; the depth gauge is stale");
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            prune(&pool, &cfg).await;
        }
    }
    for w in workers {
        let _ = w.await;
    }
    Ok(())
}

/// Retention runs at start and then hourly: its cut-offs are days.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

async fn prune(pool: &gpuwatch_store::Pool, cfg: &AlerterConfig) {
    match crate::retention::prune(pool, &cfg.retention).await {
        Ok(p) => {
            for (table, n) in [
                ("webhook_logs", p.webhook_logs),
                ("alert_outbox", p.outbox),
                ("alert_records", p.alert_records),
            ] {
                PRUNED.with_label_values(&[table]).inc_by(n);
            }
            tracing::debug!(?p, "alerting tables pruned");
        }
        Err(e) => tracing::warn!(error = %e, "alerting retention failed; retrying in an hour"),
    }
}
