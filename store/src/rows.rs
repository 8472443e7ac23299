//! The row types the [`crate::BatchWriter`] COPYs. The rows themselves are
//! declared in [`crate::catalogue`], column by column.

use chrono::{DateTime, Utc};
use tokio_postgres::types::{ToSql, Type};

use crate::catalogue::{Column, Number};

/// A row type the [`crate::BatchWriter`] can COPY.
pub trait Sample: Send + Sync + 'static {
    /// Target table.
    const TABLE: &'static str;
    /// Columns, in the order [`Sample::values`] yields them.
    const COLUMNS: &'static [&'static str];
    /// Postgres types of [`Sample::COLUMNS`], for binary COPY.
    const TYPES: &'static [Type];
    /// The catalogue entries of [`Sample::COLUMNS`], in the same order.
    const CATALOGUE: &'static [Column];
    /// The sample's time (partition key).
    fn collected_at(&self) -> DateTime<Utc>;
    /// Column values in [`Sample::COLUMNS`] order.
    fn values(&self) -> Vec<&(dyn ToSql + Sync)>;
    /// Numeric column values in [`Sample::COLUMNS`] order (`None` for NULL
    /// and text), for the ingest range checks.
    fn numbers(&self) -> Vec<Option<Number>>;
}
