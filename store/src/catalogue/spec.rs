//! What the catalogue says about a column: role, unit, ingest range,
//! tier aggregation and exported family, built with `const fn`s.

use super::Number;

/// What a column is to the tables around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The series key (`gpu_id`, `host_id`, `env_id`).
    Key,
    /// The host of a GPU's or an environment's sample: part of every tier
    /// row's key (the distribution column, see `crate::citus`), so a series
    /// that moved hosts inside a bucket has one tier row per host there.
    Carry,
    /// `collected_at`, the partition key.
    Time,
    /// A measurement.
    Metric,
}

/// The values the ingest check accepts; NULL is always accepted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// Not checked (keys and times have checks of their own).
    Unchecked,
    /// `>= 0`.
    NonNegative,
    /// Finite and within `[lo, hi]`.
    Within(f64, f64),
}

impl Range {
    /// What is wrong with `v`, if anything, as the ingest error says it.
    pub fn problem(self, v: Number) -> Option<String> {
        match (self, v) {
            (Range::Unchecked, _) => None,
            (_, Number::Float(x)) if !x.is_finite() => Some(format!("{x} is not a finite number")),
            (Range::NonNegative, Number::Int(x)) => (x < 0).then(|| format!("{x} is negative")),
            (Range::NonNegative, Number::Float(x)) => (x < 0.0).then(|| format!("{x} is negative")),
            (Range::Within(lo, hi), Number::Int(x)) => {
                ((x as f64) < lo || (x as f64) > hi).then(|| format!("{x} is outside [{lo}, {hi}]"))
            }
            (Range::Within(lo, hi), Number::Float(x)) => {
                (x < lo || x > hi).then(|| format!("{x} is outside [{lo}, {hi}]"))
            }
        }
    }
}

/// The aggregation the hourly and daily tiers keep of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiering {
    /// Not kept in the tiers.
    None,
    /// count, sum, avg, min, max; and p95 when `p95`.
    Gauge {
        /// Also keep the 95th percentile.
        p95: bool,
    },
    /// First and last non-NULL value, so rates survive.
    Counter,
    /// `bit_or` over the bucket.
    Bitmask,
    /// Count of non-NULL values (events such as an XID).
    Events,
}

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `gauge`.
    Gauge,
    /// `counter`.
    Counter,
}

impl Kind {
    /// The `# TYPE` word.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// How the exported value is computed from the latest sample `m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// The column as stored.
    Column,
    /// The column in whole units of `divisor` (integer division, as DCGM
    /// reports whole MiB).
    Divided(i64),
    /// Any SQL over the latest sample `m` (e.g. a sum of two columns).
    Sql(&'static str),
}

/// A Prometheus family a column is exported as on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Position among the table's families on `/metrics` (dcgm-exporter's
    /// default-counters.csv order for GPUs). Gaps leave room for new ones.
    pub rank: u16,
    /// Metric name.
    pub name: &'static str,
    /// Metric type.
    pub kind: Kind,
    /// `# HELP` text.
    pub help: &'static str,
    /// The value.
    pub value: Value,
}

impl Family {
    /// A gauge of the column as stored.
    pub const fn gauge(rank: u16, name: &'static str, help: &'static str) -> Family {
        Family {
            rank,
            name,
            kind: Kind::Gauge,
            help,
            value: Value::Column,
        }
    }

    /// A counter of the column as stored.
    pub const fn counter(rank: u16, name: &'static str, help: &'static str) -> Family {
        Family {
            kind: Kind::Counter,
            ..Family::gauge(rank, name, help)
        }
    }

    /// The same family over another value.
    pub const fn of(self, value: Value) -> Family {
        Family { value, ..self }
    }
}

/// Everything the catalogue says about one column besides its name and type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    /// Role of the column.
    pub role: Role,
    /// Unit, as documentation ("%", "bytes", "°C", …).
    pub unit: &'static str,
    /// Ingest check.
    pub range: Range,
    /// Tier aggregation.
    pub tier: Tiering,
    /// `/metrics` family, if exported.
    pub export: Option<Family>,
}

const fn metric(unit: &'static str, range: Range, tier: Tiering) -> Spec {
    Spec {
        role: Role::Metric,
        unit,
        range,
        tier,
        export: None,
    }
}

impl Spec {
    /// The series key.
    pub const KEY: Spec = Spec {
        role: Role::Key,
        unit: "",
        range: Range::Unchecked,
        tier: Tiering::None,
        export: None,
    };
    /// The host a series' sample was taken on, a tier key (see [`Role::Carry`]).
    pub const CARRY: Spec = Spec {
        role: Role::Carry,
        ..Spec::KEY
    };
    /// The sample time.
    pub const TIME: Spec = Spec {
        role: Role::Time,
        ..Spec::KEY
    };

    /// A gauge: count/sum/avg/min/max in the tiers.
    pub const fn gauge(unit: &'static str, range: Range) -> Spec {
        metric(unit, range, Tiering::Gauge { p95: false })
    }

    /// A counter: first/last in the tiers.
    pub const fn counter(unit: &'static str, range: Range) -> Spec {
        metric(unit, range, Tiering::Counter)
    }

    /// A bitmask: bit_or in the tiers.
    pub const fn bitmask(range: Range) -> Spec {
        metric("bitmask", range, Tiering::Bitmask)
    }

    /// An event column: its count in the tiers.
    pub const fn events(range: Range) -> Spec {
        metric("event", range, Tiering::Events)
    }

    /// Keeps the gauge's p95 too.
    pub const fn p95(self) -> Spec {
        Spec {
            tier: Tiering::Gauge { p95: true },
            ..self
        }
    }

    /// Exports the column as `family`.
    pub const fn export(self, family: Family) -> Spec {
        Spec {
            export: Some(family),
            ..self
        }
    }
}
