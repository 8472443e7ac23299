//! Retention and partition upkeep.
//!
//! Raw rows older than `retention.raw_days` go: whole chunks by
//! `drop_chunks` on TimescaleDB, whole daily partitions by `DROP TABLE` on
//! plain PostgreSQL, and the few rows of the boundary chunk/partition by a
//! DELETE, so "older than 7 days" holds to the second, but never past what
//! every tier has materialised (its watermark and its queued
//! recomputations): such rows wait for the aggregator. Tier rows go by bucket.
//! On plain PostgreSQL the partitions of yesterday through a week ahead are
//! created, so an insert never waits for one.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use gpuwatch_store::Pool;

use crate::error::q;
use crate::spec::{Tier, SOURCES};
use crate::{AggregatorConfig, AggregatorError};

/// How long each tier is kept, after `system_configs` overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Days of raw samples.
    pub raw_days: i64,
    /// Days of hourly aggregates.
    pub hourly_days: i64,
    /// Days of daily aggregates.
    pub daily_days: i64,
}

impl Retention {
    /// Where raw rows start at `now`.
    pub fn raw_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::days(self.raw_days)
    }
}

/// Reads `retention.*` from `system_configs`, falling back to the config;
/// a value that is not a positive integer is reported and ignored.
pub async fn load(pool: &Pool, cfg: &AggregatorConfig) -> Result<Retention, AggregatorError> {
    let client = pool.get().await?;
    let rows = client
        .query("SELECT config_key, config_value FROM system_configs WHERE config_key LIKE 'retention.%'", &[])
        .await
        .map_err(q("reading retention settings from system_configs"))?;
    let mut r = Retention {
        raw_days: cfg.raw_days,
        hourly_days: cfg.hourly_days,
        daily_days: cfg.daily_days,
    };
    for row in rows {
        let (key, value): (String, String) = (row.get(0), row.get(1));
        let slot = match key.as_str() {
            "retention.raw_days" => &mut r.raw_days,
            "retention.hourly_days" => &mut r.hourly_days,
            "retention.daily_days" => &mut r.daily_days,
            _ => continue,
        };
        match value.trim().parse::<i64>() {
            Ok(v) if v >= 1 => *slot = v,
            _ => {
                tracing::error!(key = %key, value = %value, "ignoring a retention setting that is not a positive number of days; fix it in system_configs")
            }
        }
    }
    Ok(r)
}

/// What one retention pass removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// Chunks or partitions dropped.
    pub dropped_parts: usize,
    /// Raw rows deleted from boundary chunks/partitions.
    pub raw_rows_deleted: u64,
    /// Tier rows deleted.
    pub tier_rows_deleted: u64,
    /// Partitions created ahead (plain PostgreSQL).
    pub partitions_created: i32,
}

/// Applies retention as of `now`.
pub async fn apply(
    pool: &Pool,
    r: &Retention,
    now: DateTime<Utc>,
) -> Result<RetentionReport, AggregatorError> {
    let client = pool.get().await?;
    let mut rep = RetentionReport::default();
    let cutoff = r.raw_cutoff(now);
    let today = now.date_naive();
    for s in &SOURCES {
        let held = held_cutoff(&client, s.table, cutoff).await?;
        let partitioned: bool = client
            .query_one(
                "SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass($1)",
                &[&s.table],
            )
            .await
            .map_err(q(format!("inspecting {}", s.table)))?
            .get(0);
        if partitioned {
            let created: i32 = client
                .query_one(
                    "SELECT gpuwatch_ensure_partitions($1, $2, $3)",
                    &[
                        &s.table,
                        &(today - Duration::days(1)),
                        &(today + Duration::days(7)),
                    ],
                )
                .await
                .map_err(q(format!("creating partitions ahead for {}", s.table)))?
                .get(0);
            rep.partitions_created += created;
        }
        if let Some(cutoff) = held {
            drop_raw(&client, s.table, partitioned, cutoff, &mut rep).await?;
        }
        for (tier, days) in [(Tier::Hourly, r.hourly_days), (Tier::Daily, r.daily_days)] {
            for table in [s.tier_table(tier), s.fleet_table(tier)] {
                rep.tier_rows_deleted += client
                    .execute(
                        &format!("DELETE FROM {table} WHERE bucket < $1"),
                        &[&(now - Duration::days(days))],
                    )
                    .await
                    .map_err(q(format!("deleting expired rows of {table}")))?;
            }
        }
    }
    Ok(rep)
}

/// Drops raw rows of `table` older than `cutoff`: whole partitions or
/// chunks, then the rest of the boundary one row by row.
async fn drop_raw(
    client: &tokio_postgres::Client,
    table: &str,
    partitioned: bool,
    cutoff: DateTime<Utc>,
    rep: &mut RetentionReport,
) -> Result<(), AggregatorError> {
    if partitioned {
        rep.dropped_parts += drop_partitions(client, table, cutoff).await?;
    } else {
        rep.dropped_parts += client
            .query(
                "SELECT drop_chunks($1::text::regclass, older_than => $2::timestamptz)",
                &[&table, &cutoff],
            )
            .await
            .map_err(q(format!("drop_chunks on {table}")))?
            .len();
    }
    rep.raw_rows_deleted += client
        .execute(
            &format!("DELETE FROM {table} WHERE collected_at < $1"),
            &[&cutoff],
        )
        .await
        .map_err(q(format!("deleting expired rows of {table}")))?;
    Ok(())
}

/// Where raw rows of `table` may be dropped up to: the retention cutoff,
/// held back to the oldest watermark of its tiers, so no raw row goes
/// before every tier has materialised it; `None` (drop nothing) while a
/// tier has never been materialised. (Queued recomputations need no hold:
/// only buckets wholly inside raw retention are recomputed, see `materialize`.)
async fn held_cutoff(
    client: &tokio_postgres::Client,
    table: &str,
    cutoff: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, AggregatorError> {
    let row = client
        .query_one(
            "SELECT bool_or(watermark IS NULL), min(watermark) FROM gpuwatch_tier_state WHERE source = $1",
            &[&table],
        )
        .await
        .map_err(q(format!("reading how far the tiers of {table} are materialised")))?;
    let (never, oldest): (Option<bool>, Option<DateTime<Utc>>) = (row.get(0), row.get(1));
    let held = match (never, oldest) {
        (Some(true), _) => None,
        (_, Some(wm)) => Some(wm.min(cutoff)),
        (_, None) => Some(cutoff),
    };
    if held != Some(cutoff) {
        // Said only where rows are kept: a new database, whose tiers have not
        // run yet, has none past retention.
        let kept: bool = client
            .query_one(
                &format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE collected_at < $1)"),
                &[&cutoff],
            )
            .await
            .map_err(q(format!("looking for rows of {table} past retention")))?
            .get(0);
        if kept {
            tracing::warn!(table, %cutoff, held = ?held, "raw rows past retention are kept until the tiers have materialised them");
        }
    }
    Ok(held)
}

/// Drops the daily partitions `<table>_pYYYYMMDD` that end at or before `cutoff`.
async fn drop_partitions(
    client: &tokio_postgres::Client,
    table: &str,
    cutoff: DateTime<Utc>,
) -> Result<usize, AggregatorError> {
    let parts = client
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1)",
            &[&table],
        )
        .await
        .map_err(q(format!("listing partitions of {table}")))?;
    let mut dropped = 0;
    for row in parts {
        let name: String = row.get(0);
        let Some(day) = partition_day(table, &name) else {
            continue;
        };
        let end = day
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc());
        if end.is_some_and(|end| end <= cutoff) {
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS \"{name}\""))
                .await
                .map_err(q(format!("dropping partition {name}")))?;
            tracing::info!(partition = %name, "dropped expired partition");
            dropped += 1;
        }
    }
    Ok(dropped)
}

fn partition_day(table: &str, name: &str) -> Option<NaiveDate> {
    let suffix = name.strip_prefix(table)?.strip_prefix("_p")?;
    NaiveDate::parse_from_str(suffix, "%Y%m%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_parse_only_for_their_table() {
        assert_eq!(
            partition_day("gpu_metrics", "gpu_metrics_p20261124"),
            NaiveDate::from_ymd_opt(2026, 11, 24)
        );
        assert_eq!(partition_day("gpu_metrics", "gpu_metrics_1h"), None);
        assert_eq!(partition_day("host_metrics", "gpu_metrics_p20261124"), None);
    }
}
