//! The gpuwatch collector: sources → batches → sinks, on every GPU host.
//!
//! - [`sources`] read samples: today the deterministic simulated fleet
//!   ([`sources::sim::SimFleet`]), used where no GPU is present; NVML,
//!   procfs and cgroup sources arrive with their issue.
//! - [`sinks`] deliver a [`Batch`]: [`sinks::copy::CopySink`] writes straight
//!   into the database through the store's batch writer,
//!   [`sinks::http::HttpSink`] posts it to `gpuwatch serve`.
//! - [`spool::Spool`] keeps batches the sink could not take on disk, bounded,
//!   and gives them back oldest first when the sink returns.
//! - [`serve`] answers `/metrics` on the host itself (`collector.listen`):
//!   GPUs as dcgm-exporter names them, the host as node_exporter does.
//! - [`run()`] registers the inventory (`hosts`, `gpus`), then samples every
//!   interval and delivers, spooling and replaying as the sink comes and goes.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
pub mod control_plane;
mod delivery;
mod error;
mod fleet;
mod run;
pub mod serve;
pub mod sinks;
pub mod sources;
pub mod spool;

pub use config::{CollectorConfig, HttpConfig, SimConfig, SinkKind, SourceKind, SpoolConfig};
pub use error::CollectorError;
pub use fleet::{Fleet, Inventory};
pub use gpuwatch_store::{Batch, GpuReading};
pub use run::{run, run_with, RunOptions};
pub use spool::register_metrics;
