//! gpuwatch exporter: what `gpuwatch serve` answers on `/metrics`.
//!
//! - The latest sample of every GPU under dcgm-exporter's metric names and
//!   labels ([`families::GPU`]), of every host under node_exporter's names
//!   ([`families::HOST`]) and of every environment ([`families::ENV`]).
//! - gpuwatch's own metrics: whatever the roles in this process registered on
//!   the [`prometheus::Registry`] the exporter was given
//!   ([`Exporter::with_registry`]: ingest, batch writer, spool, alerter,
//!   billing, and the exporter's own), plus the aggregator's tier lag read
//!   from the database, since the aggregator may run elsewhere.
//!
//! Files: [`config`] (`[exporter]`), `snapshot.rs` (the [`Exporter`] and its
//! [`Snapshot`]), `refresh.rs` (reading the database, the refresh loop),
//! `scrape.rs` (what a scrape answers), `metrics.rs` (self-metrics),
//! [`families`] (every exported name) and `render.rs` (exposition text).
//!
//! A scrape never queries the database: [`Exporter::run`] refreshes an
//! in-memory snapshot every `refresh_secs`, rendered once to exposition text,
//! and a scrape hands out that text as it is. A series whose latest sample is
//! older than `staleness_secs` is left out, so a silent host drops out of
//! Prometheus instead of showing a frozen value; if the database cannot be
//! read, the snapshot itself goes stale and is dropped after the same window.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod families;
mod jobs;
mod metrics;
mod refresh;
mod render;
mod replication;
mod scrape;
mod snapshot;

pub use config::ExporterConfig;
pub use render::{
    escape_label, gpu_families, header, label_set, sample_line, sample_value, GpuLabels,
};
pub use scrape::{accepts_gzip, CONTENT_TYPE};
pub use snapshot::{Exporter, Snapshot};
