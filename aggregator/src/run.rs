//! The schedule: retention, materialisation and liveness every interval,
//! by one replica at a time.

use chrono::{DateTime, Duration, Utc};
use gpuwatch_store::Pool;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::error::q;
use crate::liveness::{self, LivenessReport};
use crate::materialize::{materialize_all, TierProgress};
use crate::retention::{self, RetentionReport};
use crate::{AggregatorConfig, AggregatorError};

/// Session advisory lock key ("gpuwatch aggregator"): one replica works.
const AGGREGATOR_LOCK: i64 = 0x6770_7761_6767_7201;

/// What one run did; `None` when another replica held the lock.
#[derive(Debug, Default, Clone)]
pub struct RunReport {
    /// Retention pass.
    pub retention: RetentionReport,
    /// Per (table, tier).
    pub tiers: Vec<TierProgress>,
    /// Liveness pass.
    pub liveness: LivenessReport,
}

impl RunReport {
    /// True when no tier has work left for a later run.
    pub fn caught_up(&self) -> bool {
        self.tiers.iter().all(|t| t.caught_up)
    }
}

/// One run as of `now`, if no other replica is running one.
pub async fn run_once(
    pool: &Pool,
    cfg: &AggregatorConfig,
    now: DateTime<Utc>,
) -> Result<Option<RunReport>, AggregatorError> {
    let lock = pool.get().await?;
    let got: bool = lock
        .query_one("SELECT pg_try_advisory_lock($1)", &[&AGGREGATOR_LOCK])
        .await
        .map_err(q("taking the aggregator lock"))?
        .get(0);
    if !got {
        tracing::debug!("another aggregator replica is running; skipping this run");
        return Ok(None);
    }
    let result = work(pool, cfg, now).await;
    // The connection goes back to the pool: the session lock must not go with it.
    lock.query_one("SELECT pg_advisory_unlock($1)", &[&AGGREGATOR_LOCK])
        .await
        .map_err(q("releasing the aggregator lock"))?;
    result.map(Some)
}

async fn work(
    pool: &Pool,
    cfg: &AggregatorConfig,
    now: DateTime<Utc>,
) -> Result<RunReport, AggregatorError> {
    // Materialise first, then drop only raw rows every tier has taken in:
    // an aggregator that was down longer than raw retention catches up
    // from raw rows that are still there.
    let r = retention::load(pool, cfg).await?;
    let tiers = materialize_all(pool, cfg, now, r.raw_cutoff(now)).await?;
    let retention = retention::apply(pool, &r, now).await?;
    let liveness =
        liveness::check(pool, Duration::seconds(cfg.offline_after_secs as i64), now).await?;
    Ok(RunReport {
        retention,
        tiers,
        liveness,
    })
}

/// Runs every `interval` until `shutdown`; with `once`, a single run
/// (repeated until caught up when `catch_up` is set).
pub async fn run(
    cfg: AggregatorConfig,
    pool: Pool,
    once: bool,
    catch_up: bool,
    shutdown: CancellationToken,
) -> Result<(), AggregatorError> {
    let mut ticker = tokio::time::interval(cfg.interval());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tracing::info!(interval_secs = cfg.interval_secs, "aggregator started");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
        }
        loop {
            let started = std::time::Instant::now();
            let report = match run_once(&pool, &cfg, Utc::now()).await {
                Ok(r) => r,
                Err(e) if !once => {
                    tracing::error!(error = %e, "aggregator run failed; retrying next interval");
                    break;
                }
                Err(e) => return Err(e),
            };
            let caught_up = report.as_ref().is_none_or(RunReport::caught_up);
            if let Some(r) = &report {
                tracing::info!(
                    duration_ms = started.elapsed().as_millis() as u64,
                    buckets = r
                        .tiers
                        .iter()
                        .map(|t| t.new_buckets + t.recomputed_buckets)
                        .sum::<i64>(),
                    dropped_parts = r.retention.dropped_parts,
                    caught_up,
                    "aggregator run done"
                );
            }
            if !catch_up || caught_up || shutdown.is_cancelled() {
                break;
            }
        }
        if once {
            return Ok(());
        }
    }
}
