//! What each tier table holds, and the SQL that computes it from raw rows,
//! derived from the store's sample catalogue (which metrics are gauges,
//! counters, bitmasks or events). `migrations/0014_tiers.sql`, 0017 and
//! later migrations declare the same columns; tests/aggregator.rs checks
//! names, types and nullability of every tier table against
//! [`TierSource::typed_columns`] and [`TierSource::typed_fleet_columns`] on
//! both backends.

use gpuwatch_store::catalogue::{Column, Role, Tiering};
use gpuwatch_store::{EnvSample, GpuSample, HostSample, Sample};

/// One raw metric table and how its tiers aggregate it: a view of the
/// table's entries in [`gpuwatch_store::catalogue`].
#[derive(Debug)]
pub struct TierSource {
    /// Raw table, e.g. "gpu_metrics".
    pub table: &'static str,
    /// The table's columns.
    pub catalogue: &'static [Column],
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

impl TierSource {
    /// The tiering of `S`'s table.
    pub const fn of<S: Sample>() -> TierSource {
        TierSource {
            table: S::TABLE,
            catalogue: S::CATALOGUE,
        }
    }

    fn with_role(&self, role: Role) -> impl Iterator<Item = &'static Column> {
        self.catalogue.iter().filter(move |c| c.spec.role == role)
    }

    /// Series key column.
    pub fn key(&self) -> &'static Column {
        // Proven by the catalogue's own test: every table declares one key.
        self.with_role(Role::Key)
            .next()
            .expect("every catalogue table declares a key")
    }

    /// The host column of a GPU's or environment's rows, a tier key besides
    /// [`TierSource::key`] and the bucket (none for hosts: their key is the host).
    pub fn carry(&self) -> impl Iterator<Item = &'static Column> {
        self.with_role(Role::Carry)
    }

    fn tiered(&self, want: fn(Tiering) -> bool) -> impl Iterator<Item = &'static Column> {
        self.catalogue.iter().filter(move |c| want(c.spec.tier))
    }

    /// Gauges: count, sum, avg, min, max (and p95 where the catalogue says).
    pub fn gauges(&self) -> impl Iterator<Item = &'static Column> {
        self.tiered(|t| matches!(t, Tiering::Gauge { .. }))
    }
}

/// The three raw tables.
pub const SOURCES: [TierSource; 3] = [
    TierSource::of::<GpuSample>(),
    TierSource::of::<HostSample>(),
    TierSource::of::<EnvSample>(),
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
        self.typed_columns(tier)
            .into_iter()
            .map(|c| (c.name, c.expr))
            .collect()
    }

    /// The columns of a tier row with their types: what the tier table
    /// must look like (a test compares it with the migrated database).
    /// Gauges first, then counters' first and last, bitmasks, events and
    /// counters' increases and last times, each group in catalogue order.
    pub fn typed_columns(&self, tier: Tier) -> Vec<TierColumn> {
        let key = self.key();
        let mut c = vec![
            TierColumn::new(key.name, key.name, key.sql.information_schema(), true),
            TierColumn::new(
                "bucket",
                format!(
                    "date_bin('{} seconds', collected_at, '{ORIGIN}')",
                    tier.seconds()
                ),
                TIMESTAMPTZ,
                true,
            ),
        ];
        // The host is part of the key (migration 0032): a GPU moved inside a
        // bucket has a row per host there, and the reads combine them.
        for k in self.carry() {
            c.push(TierColumn::new(
                k.name,
                k.name,
                k.sql.information_schema(),
                true,
            ));
        }
        c.push(TierColumn::new("sample_count", "count(*)", INTEGER, true));
        for col in self.gauges() {
            let (m, ty) = (col.name, col.sql.information_schema());
            c.push(TierColumn::new(
                format!("{m}_count"),
                format!("count({m})"),
                INTEGER,
                true,
            ));
            c.push(TierColumn::new(
                format!("{m}_sum"),
                format!("sum({m}::numeric)"),
                NUMERIC,
                false,
            ));
            c.push(TierColumn::new(
                format!("{m}_avg"),
                format!("(sum({m}::numeric) / nullif(count({m}), 0))::float8"),
                FLOAT8,
                false,
            ));
            c.push(TierColumn::new(
                format!("{m}_min"),
                format!("min({m})"),
                ty,
                false,
            ));
            c.push(TierColumn::new(
                format!("{m}_max"),
                format!("max({m})"),
                ty,
                false,
            ));
            if col.spec.tier == (Tiering::Gauge { p95: true }) {
                c.push(TierColumn::new(
                    format!("{m}_p95"),
                    format!("percentile_cont(0.95) WITHIN GROUP (ORDER BY {m})"),
                    FLOAT8,
                    false,
                ));
            }
        }
        for col in self.tiered(|t| t == Tiering::Counter) {
            let (m, ty) = (col.name, col.sql.information_schema());
            c.push(TierColumn::new(
                format!("{m}_first"),
                format!("(array_agg({m} ORDER BY collected_at) FILTER (WHERE {m} IS NOT NULL))[1]"),
                ty,
                false,
            ));
            c.push(TierColumn::new(
                format!("{m}_last"),
                format!(
                    "(array_agg({m} ORDER BY collected_at DESC) FILTER (WHERE {m} IS NOT NULL))[1]"
                ),
                ty,
                false,
            ));
        }
        for col in self.tiered(|t| t == Tiering::Bitmask) {
            let m = col.name;
            c.push(TierColumn::new(
                format!("{m}_bitor"),
                format!("bit_or({m})"),
                col.sql.information_schema(),
                false,
            ));
        }
        for col in self.tiered(|t| t == Tiering::Events) {
            let m = col.name;
            c.push(TierColumn::new(
                format!("{m}_count"),
                format!("count({m})"),
                INTEGER,
                true,
            ));
        }
        // Last (added by 0029, which appends them): the increase between
        // consecutive samples inside the bucket, a drop counted as a restart
        // from 0 (Prometheus' increase()). With first and last, the increase
        // over any run of buckets follows from the tiers alone: the step
        // from one bucket's last to the next one's first is counted the same way.
        // `_last_at` (the time of `_last`) makes a rate over tier rows the
        // increase over the exact time it accrued in, as over raw samples.
        for col in self.tiered(|t| t == Tiering::Counter) {
            let m = col.name;
            c.push(TierColumn::new(
                format!("{m}_increase"),
                format!("gpuwatch_counter_increase({m} ORDER BY collected_at)"),
                col.sql.information_schema(),
                false,
            ));
            c.push(TierColumn::new(
                format!("{m}_last_at"),
                format!("max(collected_at) FILTER (WHERE {m} IS NOT NULL)"),
                TIMESTAMPTZ,
                false,
            ));
        }
        c
    }

    /// `CREATE TABLE` of the tier table as the catalogue says it must be:
    /// what a migration that changes a tier table writes (tests/aggregator.rs
    /// creates it in a scratch schema and compares it with the migrated one).
    /// Counts default to 0 so a replica of an older build, which names only
    /// the columns it knows, can still insert during a rolling upgrade.
    pub fn create_sql(&self, tier: Tier) -> String {
        let t = self.tier_table(tier);
        let mut cols: Vec<String> = self
            .typed_columns(tier)
            .iter()
            .map(TierColumn::ddl)
            .collect();
        cols.push("materialized_at timestamptz NOT NULL DEFAULT now()".into());
        let keys: Vec<&str> = std::iter::once(self.key().name)
            .chain(["bucket"])
            .chain(self.carry().map(|c| c.name))
            .collect();
        cols.push(format!(
            "CONSTRAINT {t}_pkey PRIMARY KEY ({})",
            keys.join(", ")
        ));
        format!("CREATE TABLE {t} (\n    {}\n)", cols.join(",\n    "))
    }

    /// `CREATE TABLE` of the fleet table, as [`TierSource::create_sql`].
    pub fn create_fleet_sql(&self, tier: Tier) -> String {
        let cols: Vec<String> = self
            .typed_fleet_columns(tier, true)
            .iter()
            .map(|c| {
                let ddl = c.ddl();
                if c.name == "bucket" {
                    format!("{ddl} PRIMARY KEY")
                } else {
                    ddl
                }
            })
            .collect();
        format!(
            "CREATE TABLE {} (\n    {}\n)",
            self.fleet_table(tier),
            cols.join(",\n    ")
        )
    }

    /// The aggregation of raw rows in `[$1, $2)` into tier rows, as a SELECT
    /// (used to materialise, and by tests to recompute from raw).
    pub fn select_sql(&self, tier: Tier) -> String {
        let exprs: Vec<String> = self
            .columns(tier)
            .into_iter()
            .map(|(n, e)| format!("{e} AS {n}"))
            .collect();
        // Grouped by the key, the bucket and the host: the first columns.
        let keys: Vec<String> = (1..=2 + self.carry().count())
            .map(|i| i.to_string())
            .collect();
        format!(
            "SELECT {} FROM {} WHERE collected_at >= $1 AND collected_at < $2 GROUP BY {}",
            exprs.join(", "),
            self.table,
            keys.join(", ")
        )
    }

    /// `<table>_fleet_<tier>`: per bucket, summed over every series.
    pub fn fleet_table(&self, tier: Tier) -> String {
        format!("{}_fleet_{}", self.table, tier.name())
    }

    /// Columns of a fleet row, each with its expression over tier rows
    /// (`over_tier`) and over raw rows (`!over_tier`, for tests).
    pub fn fleet_columns(&self, tier: Tier, over_tier: bool) -> Vec<(String, String)> {
        self.typed_fleet_columns(tier, over_tier)
            .into_iter()
            .map(|c| (c.name, c.expr))
            .collect()
    }

    /// [`TierSource::fleet_columns`] with their types: what the fleet
    /// table must look like.
    pub fn typed_fleet_columns(&self, tier: Tier, over_tier: bool) -> Vec<TierColumn> {
        let raw_bucket = format!(
            "date_bin('{} seconds', collected_at, '{ORIGIN}')",
            tier.seconds()
        );
        let mut c = vec![
            TierColumn::new(
                "bucket",
                if over_tier {
                    "bucket".into()
                } else {
                    raw_bucket
                },
                TIMESTAMPTZ,
                true,
            ),
            TierColumn::new(
                "sample_count",
                if over_tier {
                    "sum(sample_count)::bigint"
                } else {
                    "count(*)"
                },
                BIGINT,
                true,
            ),
        ];
        for col in self.gauges() {
            let (m, ty) = (col.name, col.sql.information_schema());
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
            c.push(TierColumn::new(format!("{m}_count"), count, BIGINT, true));
            c.push(TierColumn::new(format!("{m}_sum"), sum, NUMERIC, false));
            c.push(TierColumn::new(format!("{m}_min"), min, ty, false));
            c.push(TierColumn::new(format!("{m}_max"), max, ty, false));
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

/// information_schema names of the tier tables' own types.
const INTEGER: &str = "integer";
const BIGINT: &str = "bigint";
const NUMERIC: &str = "numeric";
const FLOAT8: &str = "double precision";
const TIMESTAMPTZ: &str = "timestamp with time zone";

/// One column of a tier or fleet table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierColumn {
    /// Column name.
    pub name: String,
    /// SQL over raw rows (tier tables) or tier rows (fleet tables).
    pub expr: String,
    /// `information_schema.columns.data_type`.
    pub data_type: &'static str,
    /// Declared NOT NULL.
    pub not_null: bool,
}

impl TierColumn {
    /// The column's line in a `CREATE TABLE`.
    pub fn ddl(&self) -> String {
        let ty = match self.data_type {
            "character varying" => "VARCHAR(64)",
            "timestamp with time zone" => "timestamptz",
            other => other,
        };
        let count = self.name == "sample_count" || self.name.ends_with("_count");
        match (self.not_null, count) {
            (true, true) if self.name != "sample_count" => {
                format!("{} {ty} NOT NULL DEFAULT 0", self.name)
            }
            (true, _) => format!("{} {ty} NOT NULL", self.name),
            (false, _) => format!("{} {ty}", self.name),
        }
    }

    fn new(
        name: impl Into<String>,
        expr: impl Into<String>,
        data_type: &'static str,
        not_null: bool,
    ) -> TierColumn {
        TierColumn {
            name: name.into(),
            expr: expr.into(),
            data_type,
            not_null,
        }
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
        }
    }
}
