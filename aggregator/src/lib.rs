//! gpuwatch's aggregator: the hourly and daily tiers, retention, partition
//! upkeep and host liveness, for TimescaleDB (Apache edition) and plain
//! PostgreSQL alike.
//!
//! - [`spec`] says what each tier table holds and builds the SQL that
//!   computes a bucket from raw rows.
//! - [`materialize`] advances a watermark per (table, tier) over closed
//!   buckets and recomputes buckets that late batches invalidated, with
//!   bounded work per run.
//! - [`retention`] drops raw chunks/partitions and old tier rows, and
//!   creates plain-PostgreSQL partitions ahead of time.
//! - [`liveness`] marks silent hosts offline and returning ones online.
//! - [`run()`] does all of it on a schedule; one replica works at a time
//!   (advisory lock). Every step takes `now` as a parameter, so tests inject the clock.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
pub mod liveness;
pub mod materialize;
pub mod retention;
mod run;
pub mod spec;

pub use config::AggregatorConfig;
pub use error::AggregatorError;
pub use run::{run, run_once, RunReport};
