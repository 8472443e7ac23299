//! What each tier table holds, and the SQL that computes it from raw rows.
//! `migrations/0014_tiers.sql` declares the same columns; a test checks
//! that the database and this spec agree.

/// One raw metric table and how its tiers aggregate it.
#[derive(Debug)]
pub struct TierSource {
    /// Raw table, e.g. "gpu_metrics".
    pub table: &'static str,
    /// Series key column.
    pub key: &'static str,
    /// Columns carried as their last value in the bucket (e.g. host_id of a GPU).
    pub carry: &'static [&'static str],
    /// Gauges: count, sum, avg, min, max.
    pub gauges: &'static [&'static str],
    /// Gauges that also get a p95.
    pub p95: &'static [&'static str],
    /// Counters: first and last value.
    pub counters: &'static [&'static str],
    /// Bitmasks: bit_or.
    pub bitor: &'static [&'static str],
    /// Event columns: count of non-NULL values.
    pub events: &'static [&'static str],
}

/// A tier: a bucket width and a name suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Hourly buckets, `<table>_1h`.
    Hourly,
    /// Daily (UTC) buckets, `<table>_1d`.
    Daily,
}

impl Tier {
    /// Both tiers.
    pub const ALL: [Tier; 2] = [Tier::Hourly, Tier::Daily];

    /// "1h" / "1d", as in table names and `gpuwatch_tier_state`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Hourly => "1h",
            Tier::Daily => "1d",
        }
    }

    /// Bucket width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Tier::Hourly => 3_600,
            Tier::Daily => 86_400,
        }
    }
}

/// The three raw tables.
pub const SOURCES: [TierSource; 3] = [
    TierSource {
        table: "gpu_metrics",
        key: "gpu_id",
        carry: &["host_id"],
        gauges: &[
            "utilization_percent",
            "memory_used",
            "memory_usage_percent",
            "temperature",
            "power_draw",
            "fan_speed_percent",
            "sm_clock",
            "memory_clock",
            "process_count",
            "memory_copy_util_percent",
            "memory_free",
            "memory_temperature",
            "pcie_tx_bytes_per_sec",
            "pcie_rx_bytes_per_sec",
        ],
        p95: &["utilization_percent"],
        counters: &["energy_consumed_mj", "ecc_sbe_volatile", "ecc_dbe_volatile"],
        bitor: &["throttle_reasons"],
        events: &["xid_last"],
    },
    TierSource {
        table: "host_metrics",
        key: "host_id",
        carry: &[],
        gauges: &[
            "cpu_usage_percent",
            "cpu_load_1m",
            "cpu_load_5m",
            "cpu_load_15m",
            "memory_used",
            "memory_available",
            "memory_usage_percent",
            "disk_used",
            "disk_available",
            "disk_usage_percent",
            "gpu_avg_utilization",
            "gpu_avg_memory_used",
            "gpu_avg_temperature",
            "gpu_avg_power",
        ],
        p95: &["cpu_usage_percent"],
        counters: &[
            "disk_io_read_bytes",
            "disk_io_write_bytes",
            "network_rx_bytes",
            "network_tx_bytes",
            "network_rx_packets",
            "network_tx_packets",
        ],
        bitor: &[],
        events: &[],
    },
    TierSource {
        table: "environment_metrics",
        key: "env_id",
        carry: &["host_id"],
        gauges: &[
            "cpu_usage_percent",
            "memory_used",
            "memory_usage_percent",
            "gpu_usage_percent",
            "gpu_memory_used",
        ],
        p95: &[],
        counters: &["network_rx_bytes", "network_tx_bytes"],
        bitor: &[],
        events: &[],
    },
];

/// Buckets are aligned on this origin (UTC midnight), on both backends.
pub const ORIGIN: &str = "2000-01-01 00:00:00+00";

impl TierSource {
    /// `<table>_<tier>`.
    pub fn tier_table(&self, tier: Tier) -> String {
        format!("{}_{}", self.table, tier.name())
    }

    /// (column, SQL expression over raw rows) pairs of a tier row, in order.
    pub fn columns(&self, tier: Tier) -> Vec<(String, String)> {
        let mut c = vec![
            (self.key.to_string(), self.key.to_string()),
            (
                "bucket".into(),
                format!(
                    "date_bin('{} seconds', collected_at, '{ORIGIN}')",
                    tier.seconds()
                ),
            ),
        ];
        for k in self.carry {
            c.push((
                k.to_string(),
                format!("(array_agg({k} ORDER BY collected_at DESC))[1]"),
            ));
        }
        c.push(("sample_count".into(), "count(*)".into()));
        for m in self.gauges {
            c.push((format!("{m}_count"), format!("count({m})")));
            c.push((format!("{m}_sum"), format!("sum({m}::numeric)")));
            c.push((
                format!("{m}_avg"),
                format!("(sum({m}::numeric) / nullif(count({m}), 0))::float8"),
            ));
            c.push((format!("{m}_min"), format!("min({m})")));
            c.push((format!("{m}_max"), format!("max({m})")));
            if self.p95.contains(m) {
                c.push((
                    format!("{m}_p95"),
                    format!("percentile_cont(0.95) WITHIN GROUP (ORDER BY {m})"),
                ));
            }
        }
        for m in self.counters {
            c.push((
                format!("{m}_first"),
                format!("(array_agg({m} ORDER BY collected_at) FILTER (WHERE {m} IS NOT NULL))[1]"),
            ));
            c.push((
                format!("{m}_last"),
                format!(
                    "(array_agg({m} ORDER BY collected_at DESC) FILTER (WHERE {m} IS NOT NULL))[1]"
                ),
            ));
        }
        for m in self.bitor {
            c.push((format!("{m}_bitor"), format!("bit_or({m})")));
        }
        for m in self.events {
            c.push((format!("{m}_count"), format!("count({m})")));
        }
        c
    }

    /// The aggregation of raw rows in `[$1, $2)` into tier rows, as a SELECT
    /// (used to materialise, and by tests to recompute from raw).
    pub fn select_sql(&self, tier: Tier) -> String {
        let exprs: Vec<String> = self
            .columns(tier)
            .into_iter()
            .map(|(n, e)| format!("{e} AS {n}"))
            .collect();
        format!(
            "SELECT {} FROM {} WHERE collected_at >= $1 AND collected_at < $2 GROUP BY 1, 2",
            exprs.join(", "),
            self.table
        )
    }

    /// `<table>_fleet_<tier>`: per bucket, summed over every series.
    pub fn fleet_table(&self, tier: Tier) -> String {
        format!("{}_fleet_{}", self.table, tier.name())
    }

    /// Columns of a fleet row, each with its expression over tier rows
    /// (`over_tier`) and over raw rows (`!over_tier`, for tests).
    pub fn fleet_columns(&self, tier: Tier, over_tier: bool) -> Vec<(String, String)> {
        let mut c = vec![
            (
                "bucket".to_string(),
                if over_tier {
                    "bucket".into()
                } else {
                    format!(
                        "date_bin('{} seconds', collected_at, '{ORIGIN}')",
                        tier.seconds()
                    )
                },
            ),
            (
                "sample_count".into(),
                if over_tier {
                    "sum(sample_count)::bigint".into()
                } else {
                    "count(*)".into()
                },
            ),
        ];
        for m in self.gauges {
            let (count, sum, min, max) = if over_tier {
                (
                    format!("sum({m}_count)::bigint"),
                    format!("sum({m}_sum)"),
                    format!("min({m}_min)"),
                    format!("max({m}_max)"),
                )
            } else {
                (
                    format!("count({m})"),
                    format!("sum({m}::numeric)"),
                    format!("min({m})"),
                    format!("max({m})"),
                )
            };
            c.push((format!("{m}_count"), count));
            c.push((format!("{m}_sum"), sum));
            c.push((format!("{m}_min"), min));
            c.push((format!("{m}_max"), max));
        }
        c
    }

    /// Replaces the fleet rows of buckets in `[$1, $2)` from the tier rows.
    pub fn fleet_sql(&self, tier: Tier) -> (String, String) {
        let cols = self.fleet_columns(tier, true);
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        let exprs: Vec<&str> = cols.iter().map(|(_, e)| e.as_str()).collect();
        let f = self.fleet_table(tier);
        (
            format!("DELETE FROM {f} WHERE bucket >= $1 AND bucket < $2"),
            format!(
                "INSERT INTO {f} ({}) SELECT {} FROM {} WHERE bucket >= $1 AND bucket < $2 GROUP BY bucket",
                names.join(", "),
                exprs.join(", "),
                self.tier_table(tier)
            ),
        )
    }

    /// The fleet aggregation straight from raw rows in `[$1, $2)` (tests).
    pub fn fleet_raw_sql(&self, tier: Tier) -> String {
        let exprs: Vec<String> = self
            .fleet_columns(tier, false)
            .into_iter()
            .map(|(n, e)| format!("{e} AS {n}"))
            .collect();
        format!(
            "SELECT {} FROM {} WHERE collected_at >= $1 AND collected_at < $2 GROUP BY 1",
            exprs.join(", "),
            self.table
        )
    }

    /// Replaces the tier rows of buckets in `[$1, $2)` with fresh ones from raw.
    pub fn materialize_sql(&self, tier: Tier) -> (String, String) {
        let names: Vec<String> = self.columns(tier).into_iter().map(|(n, _)| n).collect();
        let t = self.tier_table(tier);
        (
            format!("DELETE FROM {t} WHERE bucket >= $1 AND bucket < $2"),
            format!(
                "INSERT INTO {t} ({}) {}",
                names.join(", "),
                self.select_sql(tier)
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_p95_counter_and_event_names_a_distinct_column() {
        for s in &SOURCES {
            for t in Tier::ALL {
                let mut names: Vec<String> = s.columns(t).into_iter().map(|(n, _)| n).collect();
                let n = names.len();
                names.sort();
                names.dedup();
                assert_eq!(names.len(), n, "{} has a duplicate column", s.tier_table(t));
            }
            assert!(s.p95.iter().all(|m| s.gauges.contains(m)));
        }
    }
}
