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
mod spec;
mod sql;

pub use env::EnvSample;
pub use gpu::GpuSample;
pub use host::HostSample;
pub use spec::{Family, Kind, Range, Role, Spec, Tiering, Value};
pub use sql::{Number, SqlType, SqlValue};

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
