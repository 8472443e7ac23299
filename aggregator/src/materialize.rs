//! Incremental materialisation of the tiers.
//!
//! Per (table, tier), in one transaction under the table's tier lock (the
//! batch writer takes it shared to record late batches, so a late sample is
//! either seen by this run or invalidates the bucket after it):
//! 1. invalidated ranges (late or re-sent batches behind the watermark) are
//!    merged and their whole buckets recomputed, oldest first, at most
//!    `max buckets` of them; what is left stays queued for the next run;
//! 2. closed buckets past the watermark are computed, at most `max buckets`,
//!    skipping empty stretches in one step, and the watermark advances.
//!
//! A run with nothing new costs two indexed lookups per (table, tier).

use chrono::{DateTime, Duration, Utc};
use gpuwatch_store::{tier_lock_key, Pool};
use tokio_postgres::Transaction;

use crate::error::q;
use crate::spec::{Tier, TierSource, SOURCES};
use crate::{AggregatorConfig, AggregatorError};

/// What materialisation did for one (table, tier).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierProgress {
    /// `<table>_<tier>`
    pub table: String,
    /// Buckets computed past the old watermark.
    pub new_buckets: i64,
    /// Buckets recomputed because late data invalidated them.
    pub recomputed_buckets: i64,
    /// Tier rows written.
    pub rows_written: u64,
    /// True when nothing is left for a later run.
    pub caught_up: bool,
}

/// Start of the bucket holding `t`.
pub fn floor(t: DateTime<Utc>, tier: Tier) -> DateTime<Utc> {
    let w = tier.seconds();
    let s = t.timestamp().div_euclid(w) * w;
    DateTime::from_timestamp(s, 0).unwrap_or(t)
}

/// Start of the first bucket that begins at or after `t`.
pub fn ceil(t: DateTime<Utc>, tier: Tier) -> DateTime<Utc> {
    let f = floor(t, tier);
    if f == t {
        f
    } else {
        f + Duration::seconds(tier.seconds())
    }
}

/// Materialises every (table, tier) once. `raw_cutoff` is where raw rows
/// start (retention): a bucket partly before it cannot be recomputed.
pub async fn materialize_all(
    pool: &Pool,
    cfg: &AggregatorConfig,
    now: DateTime<Utc>,
    raw_cutoff: DateTime<Utc>,
) -> Result<Vec<TierProgress>, AggregatorError> {
    let mut out = Vec::new();
    for source in &SOURCES {
        for tier in Tier::ALL {
            let budget = match tier {
                Tier::Hourly => cfg.max_hourly_buckets_per_run,
                Tier::Daily => cfg.max_daily_buckets_per_run,
            };
            let closed_end = floor(now - Duration::seconds(cfg.lateness_secs as i64), tier);
            let mut client = pool.get().await?;
            let tx = client
                .transaction()
                .await
                .map_err(q("starting materialisation"))?;
            let p = one(&tx, source, tier, budget, closed_end, raw_cutoff).await?;
            tx.commit()
                .await
                .map_err(q(format!("committing {}", source.tier_table(tier))))?;
            if p.new_buckets + p.recomputed_buckets > 0 {
                tracing::info!(
                    table = %p.table, new_buckets = p.new_buckets, recomputed = p.recomputed_buckets,
                    rows = p.rows_written, caught_up = p.caught_up, "tier materialised"
                );
            }
            out.push(p);
        }
    }
    Ok(out)
}

async fn one(
    tx: &Transaction<'_>,
    s: &TierSource,
    tier: Tier,
    budget: i64,
    closed_end: DateTime<Utc>,
    raw_cutoff: DateTime<Utc>,
) -> Result<TierProgress, AggregatorError> {
    let table = s.tier_table(tier);
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&tier_lock_key(s.table)],
    )
    .await
    .map_err(q(format!("locking {} for materialisation", s.table)))?;
    let wm: Option<DateTime<Utc>> = tx
        .query_one(
            "SELECT watermark FROM gpuwatch_tier_state WHERE source = $1 AND tier = $2 FOR UPDATE",
            &[&s.table, &tier.name()],
        )
        .await
        .map_err(q(format!("reading the watermark of {table}")))?
        .get(0);
    let mut p = TierProgress {
        table,
        ..Default::default()
    };
    let inval_done = match wm {
        Some(wm) => recompute_invalidated(tx, s, tier, budget, wm, raw_cutoff, &mut p).await?,
        None => true,
    };
    let new_done = advance(tx, s, tier, budget, wm, closed_end, &mut p).await?;
    p.caught_up = inval_done && new_done;
    Ok(p)
}

/// Recomputes `[a, b)`, whole buckets, and their fleet rollup.
async fn recompute(
    tx: &Transaction<'_>,
    s: &TierSource,
    tier: Tier,
    a: DateTime<Utc>,
    b: DateTime<Utc>,
) -> Result<u64, AggregatorError> {
    let (delete, insert) = s.materialize_sql(tier);
    let what = || format!("materialising {} for [{a}, {b})", s.tier_table(tier));
    tx.execute(&delete, &[&a, &b]).await.map_err(q(what()))?;
    let rows = tx.execute(&insert, &[&a, &b]).await.map_err(q(what()))?;
    // The fleet rollup of the same buckets, from the rows just written.
    let (delete, insert) = s.fleet_sql(tier);
    tx.execute(&delete, &[&a, &b]).await.map_err(q(what()))?;
    tx.execute(&insert, &[&a, &b]).await.map_err(q(what()))?;
    Ok(rows)
}

async fn recompute_invalidated(
    tx: &Transaction<'_>,
    s: &TierSource,
    tier: Tier,
    budget: i64,
    wm: DateTime<Utc>,
    raw_cutoff: DateTime<Utc>,
    p: &mut TierProgress,
) -> Result<bool, AggregatorError> {
    let w = Duration::seconds(tier.seconds());
    let rows = tx
        .query(
            "SELECT id, lo, hi FROM gpuwatch_tier_invalidations WHERE source = $1 AND tier = $2 ORDER BY lo, id LIMIT 1000",
            &[&s.table, &tier.name()],
        )
        .await
        .map_err(q(format!("reading invalidations of {}", p.table)))?;
    if rows.is_empty() {
        return Ok(true);
    }
    // Clamp each range to whole buckets that raw still fully holds and that
    // are behind the watermark (later ones are computed as new buckets).
    let low = ceil(raw_cutoff, tier);
    let ranges: Vec<(i64, DateTime<Utc>, DateTime<Utc>)> = rows
        .iter()
        .map(|r| {
            let (lo, hi): (DateTime<Utc>, DateTime<Utc>) = (r.get(1), r.get(2));
            (
                r.get(0),
                floor(lo, tier).max(low),
                (floor(hi, tier) + w).min(wm),
            )
        })
        .collect();
    let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    let mut sorted: Vec<_> = ranges
        .iter()
        .filter(|(_, a, b)| a < b)
        .map(|(_, a, b)| (*a, *b))
        .collect();
    sorted.sort();
    for (a, b) in sorted {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    // Everything of the merged ranges below `done` is recomputed.
    let mut left = budget;
    let mut done = DateTime::<Utc>::MAX_UTC;
    for (a, b) in merged {
        let n = (b - a).num_seconds() / tier.seconds();
        let take = n.min(left);
        if take > 0 {
            p.rows_written += recompute(tx, s, tier, a, a + w * take as i32).await?;
            p.recomputed_buckets += take;
            left -= take;
        }
        if take < n {
            done = a + w * take as i32;
            break;
        }
    }
    for (id, a, b) in &ranges {
        if a >= b || *b <= done {
            tx.execute(
                "DELETE FROM gpuwatch_tier_invalidations WHERE id = $1",
                &[id],
            )
            .await
        } else if *a < done {
            tx.execute(
                "UPDATE gpuwatch_tier_invalidations SET lo = $2 WHERE id = $1",
                &[id, &done],
            )
            .await
        } else {
            continue;
        }
        .map_err(q("updating an invalidation"))?;
    }
    Ok(done == DateTime::<Utc>::MAX_UTC && rows.len() < 1000)
}

async fn advance(
    tx: &Transaction<'_>,
    s: &TierSource,
    tier: Tier,
    budget: i64,
    wm: Option<DateTime<Utc>>,
    closed_end: DateTime<Utc>,
    p: &mut TierProgress,
) -> Result<bool, AggregatorError> {
    // Skip empty stretches: start at the first raw row at or after the watermark.
    let first: Option<DateTime<Utc>> = match wm {
        Some(wm) => {
            tx.query_one(
                &format!(
                    "SELECT min(collected_at) FROM {} WHERE collected_at >= $1",
                    s.table
                ),
                &[&wm],
            )
            .await
        }
        None => {
            tx.query_one(&format!("SELECT min(collected_at) FROM {}", s.table), &[])
                .await
        }
    }
    .map_err(q(format!("finding new rows of {}", s.table)))?
    .get(0);
    let start = match (first, wm) {
        (Some(f), _) => floor(f, tier),
        (None, Some(_)) => closed_end,
        (None, None) => return Ok(true),
    };
    let start = wm.map_or(start, |wm| start.max(wm));
    let end = closed_end.min(start + Duration::seconds(tier.seconds() * budget));
    if start < end {
        p.rows_written += recompute(tx, s, tier, start, end).await?;
        p.new_buckets += (end - start).num_seconds() / tier.seconds();
    }
    let new_wm = end.max(wm.unwrap_or(end));
    if first.is_some() || wm.is_some() {
        tx.execute(
            "UPDATE gpuwatch_tier_state SET watermark = $3, updated_at = now()
             WHERE source = $1 AND tier = $2 AND watermark IS DISTINCT FROM $3",
            &[&s.table, &tier.name(), &new_wm],
        )
        .await
        .map_err(q(format!("advancing the watermark of {}", p.table)))?;
    }
    Ok(end >= closed_end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn floor_and_ceil_align_on_utc_buckets() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 13, 45, 10).unwrap();
        assert_eq!(
            floor(t, Tier::Hourly),
            Utc.with_ymd_and_hms(2026, 11, 24, 13, 0, 0).unwrap()
        );
        assert_eq!(
            ceil(t, Tier::Hourly),
            Utc.with_ymd_and_hms(2026, 11, 24, 14, 0, 0).unwrap()
        );
        assert_eq!(
            floor(t, Tier::Daily),
            Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap()
        );
        let midnight = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        assert_eq!(ceil(midnight, Tier::Daily), midnight);
        let before_epoch = Utc.with_ymd_and_hms(1969, 12, 31, 23, 30, 0).unwrap();
        assert_eq!(
            floor(before_epoch, Tier::Hourly),
            Utc.with_ymd_and_hms(1969, 12, 31, 23, 0, 0).unwrap()
        );
    }
}
