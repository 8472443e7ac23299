use std::time::Duration;

use serde::Deserialize;

/// `[aggregator]` of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregatorConfig {
    /// Seconds between runs.
    #[serde(
        rename = "interval",
        alias = "interval_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub interval_secs: u64,
    /// A bucket is materialised this long after it closes; later samples
    /// invalidate it and it is recomputed.
    #[serde(
        rename = "lateness",
        alias = "lateness_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub lateness_secs: u64,
    /// Hourly buckets computed per (table, run), for new data and again for
    /// invalidated buckets: bounds the work of one run.
    pub max_hourly_buckets_per_run: i64,
    /// Daily buckets computed per (table, run), likewise.
    pub max_daily_buckets_per_run: i64,
    /// A host without a heartbeat for this long becomes offline/unhealthy.
    #[serde(
        rename = "offline_after",
        alias = "offline_after_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub offline_after_secs: u64,
    /// Defaults of the retention keys in `system_configs`, which win when set.
    pub raw_days: i64,
    /// Days `*_1h` rows are kept unless `retention.hourly_days` says otherwise.
    pub hourly_days: i64,
    /// Days `*_1d` rows are kept unless `retention.daily_days` says otherwise.
    pub daily_days: i64,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            interval_secs: 60,
            lateness_secs: 60,
            max_hourly_buckets_per_run: 48,
            max_daily_buckets_per_run: 2,
            offline_after_secs: 60,
            raw_days: 7,
            hourly_days: 90,
            daily_days: 365,
        }
    }
}

impl AggregatorConfig {
    /// The interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    /// Every problem, as `key: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        let mut check = |ok: bool, key: &str, what: &str, got: i64| {
            if !ok {
                e.push(format!("aggregator.{key}: {what}, got {got}"));
            }
        };
        check(
            (1..=86_400).contains(&self.interval_secs),
            "interval_secs",
            "must be between 1 and 86400",
            self.interval_secs as i64,
        );
        check(
            self.lateness_secs <= 86_400,
            "lateness_secs",
            "must be at most 86400",
            self.lateness_secs as i64,
        );
        check(
            self.max_hourly_buckets_per_run >= 1,
            "max_hourly_buckets_per_run",
            "must be at least 1",
            self.max_hourly_buckets_per_run,
        );
        check(
            self.max_daily_buckets_per_run >= 1,
            "max_daily_buckets_per_run",
            "must be at least 1",
            self.max_daily_buckets_per_run,
        );
        check(
            self.offline_after_secs >= 1,
            "offline_after_secs",
            "must be at least 1",
            self.offline_after_secs as i64,
        );
        check(
            self.raw_days >= 1,
            "raw_days",
            "must be at least 1",
            self.raw_days,
        );
        check(
            self.hourly_days >= 1,
            "hourly_days",
            "must be at least 1",
            self.hourly_days,
        );
        check(
            self.daily_days >= 1,
            "daily_days",
            "must be at least 1",
            self.daily_days,
        );
        e
    }
}
