//! The sample catalogue: every column of `gpu_metrics`, `host_metrics` and
//! `environment_metrics`, declared once.
//!
//! Each table is one [`samples!`](crate::samples) invocation ([`gpu`],
//! [`host`], [`env`]). An entry names the field (the column and the JSON
//! field of the ingest wire format), its Rust type (which fixes the SQL
//! type), and a [`Spec`]: unit, the range the ingest check enforces, the
//! tier aggregation kept and the Prometheus family it is exported as.
//!
//! Everything else is derived from it: the row structs and their COPY
//! column lists and types ([`crate::Sample`]), the ingest range checks
//! (`api`), the tier spec and tier DDL (`aggregator`), and the `/metrics`
//! families (`exporter`). A new metric is one entry here, one migration,
//! and its source.

mod env;
mod gpu;
mod host;

use chrono::{DateTime, Utc};
use tokio_postgres::types::Type;

pub use env::EnvSample;
pub use gpu::GpuSample;
pub use host::HostSample;

/// SQL type of a column, fixed by the field's Rust type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// `integer` (Rust `i32`).
    Int4,
    /// `bigint` (Rust `i64`).
    Int8,
    /// `double precision` (Rust `f64`).
    Float8,
    /// `VARCHAR(64)` (Rust `String`): series ids.
    Varchar,
    /// `timestamptz` (Rust `DateTime<Utc>`).
    Timestamptz,
}

impl SqlType {
    /// The type binary COPY sends.
    pub const fn pg(self) -> Type {
        match self {
            SqlType::Int4 => Type::INT4,
            SqlType::Int8 => Type::INT8,
            SqlType::Float8 => Type::FLOAT8,
            SqlType::Varchar => Type::VARCHAR,
            SqlType::Timestamptz => Type::TIMESTAMPTZ,
        }
    }

    /// The name `information_schema.columns.data_type` reports.
    pub const fn information_schema(self) -> &'static str {
        match self {
            SqlType::Int4 => "integer",
            SqlType::Int8 => "bigint",
            SqlType::Float8 => "double precision",
            SqlType::Varchar => "character varying",
            SqlType::Timestamptz => "timestamp with time zone",
        }
    }
}

/// A Rust type a sample field may have, and how the ingest check reads it.
pub trait SqlValue {
    /// The column's SQL type.
    const SQL: SqlType;
    /// Whether the column may be NULL (the field is an `Option`).
    const NULLABLE: bool = false;
    /// The value as a number, for range checks; `None` for NULL and text.
    fn number(&self) -> Option<Number>;
}

/// A numeric field value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integer column.
    Int(i64),
    /// A floating-point column.
    Float(f64),
}

impl SqlValue for i32 {
    const SQL: SqlType = SqlType::Int4;
    fn number(&self) -> Option<Number> {
        Some(Number::Int(i64::from(*self)))
    }
}
impl SqlValue for i64 {
    const SQL: SqlType = SqlType::Int8;
    fn number(&self) -> Option<Number> {
        Some(Number::Int(*self))
    }
}
impl SqlValue for f64 {
    const SQL: SqlType = SqlType::Float8;
    fn number(&self) -> Option<Number> {
        Some(Number::Float(*self))
    }
}
impl SqlValue for String {
    const SQL: SqlType = SqlType::Varchar;
    fn number(&self) -> Option<Number> {
        None
    }
}
impl SqlValue for DateTime<Utc> {
    const SQL: SqlType = SqlType::Timestamptz;
    fn number(&self) -> Option<Number> {
        None
    }
}
impl<T: SqlValue> SqlValue for Option<T> {
    const SQL: SqlType = T::SQL;
    const NULLABLE: bool = true;
    fn number(&self) -> Option<Number> {
        self.as_ref().and_then(T::number)
    }
}

/// What a column is to the tables around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The series key (`gpu_id`, `host_id`, `env_id`).
    Key,
    /// Carried into tier rows as its last value in the bucket (`host_id` of a GPU).
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
    /// A label carried into the tiers.
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

/// One column of a raw metric table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    /// Column name, also the JSON field name.
    pub name: &'static str,
    /// SQL type.
    pub sql: SqlType,
    /// NULL allowed (an `Option` field); keys and times are NOT NULL.
    pub nullable: bool,
    /// The rest.
    pub spec: Spec,
}

/// The three raw tables: (table, columns).
pub fn tables() -> [(&'static str, &'static [Column]); 3] {
    use crate::Sample;
    [
        (GpuSample::TABLE, GpuSample::CATALOGUE),
        (HostSample::TABLE, HostSample::CATALOGUE),
        (EnvSample::TABLE, EnvSample::CATALOGUE),
    ]
}

/// Declares a raw metric table: the row struct with its serde derives
/// (field names are the JSON wire format), and its [`crate::Sample`] impl
/// with `COLUMNS`, `TYPES`, `CATALOGUE` and `values()`, from one list.
#[macro_export]
macro_rules! samples {
    (
        $(#[$meta:meta])*
        pub struct $name:ident in $table:literal {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty => $spec:expr ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )+
        }

        impl $crate::Sample for $name {
            const TABLE: &'static str = $table;
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];
            const TYPES: &'static [tokio_postgres::types::Type] =
                &[$(<$ty as $crate::catalogue::SqlValue>::SQL.pg()),+];
            const CATALOGUE: &'static [$crate::catalogue::Column] = &[$(
                $crate::catalogue::Column {
                    name: stringify!($field),
                    sql: <$ty as $crate::catalogue::SqlValue>::SQL,
                    nullable: <$ty as $crate::catalogue::SqlValue>::NULLABLE,
                    spec: $spec,
                }
            ),+];
            fn collected_at(&self) -> chrono::DateTime<chrono::Utc> {
                self.collected_at
            }
            fn values(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
                vec![$(&self.$field),+]
            }
            fn numbers(&self) -> Vec<Option<$crate::catalogue::Number>> {
                vec![$($crate::catalogue::SqlValue::number(&self.$field)),+]
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sample;

    fn consistent<S: Sample + Default>() {
        let s = S::default();
        assert_eq!(S::COLUMNS.len(), S::TYPES.len(), "{}", S::TABLE);
        assert_eq!(S::COLUMNS.len(), s.values().len(), "{}", S::TABLE);
        assert_eq!(S::COLUMNS.len(), s.numbers().len(), "{}", S::TABLE);
        assert_eq!(S::COLUMNS.len(), S::CATALOGUE.len(), "{}", S::TABLE);
        let roles = |r: Role| S::CATALOGUE.iter().filter(|c| c.spec.role == r).count();
        assert_eq!(roles(Role::Key), 1, "{} needs one key", S::TABLE);
        assert_eq!(roles(Role::Time), 1, "{} needs one time", S::TABLE);
        for c in S::CATALOGUE {
            if c.spec.role == Role::Metric {
                assert_ne!(
                    c.spec.range,
                    Range::Unchecked,
                    "{}.{} is unchecked",
                    S::TABLE,
                    c.name
                );
                assert!(
                    !c.spec.unit.is_empty(),
                    "{}.{} has no unit",
                    S::TABLE,
                    c.name
                );
            }
        }
        let mut ranks: Vec<u16> = S::CATALOGUE
            .iter()
            .filter_map(|c| c.spec.export.map(|f| f.rank))
            .collect();
        let n = ranks.len();
        ranks.sort_unstable();
        ranks.dedup();
        assert_eq!(ranks.len(), n, "{}: two families share a rank", S::TABLE);
    }

    #[test]
    fn each_table_declares_one_key_one_time_and_checked_metrics() {
        consistent::<GpuSample>();
        consistent::<HostSample>();
        consistent::<EnvSample>();
    }

    #[test]
    fn ranges_say_what_is_wrong() {
        let pct = Range::Within(0.0, 100.0);
        assert_eq!(pct.problem(Number::Float(50.0)), None);
        assert_eq!(
            pct.problem(Number::Float(-3.0)).as_deref(),
            Some("-3 is outside [0, 100]")
        );
        assert_eq!(
            pct.problem(Number::Float(f64::NAN)).as_deref(),
            Some("NaN is not a finite number")
        );
        assert_eq!(
            Range::NonNegative.problem(Number::Int(-1)).as_deref(),
            Some("-1 is negative")
        );
        assert_eq!(Range::Unchecked.problem(Number::Int(-1)), None);
    }
}
