//! The gpuwatch collector: sources → batches → sinks, on every GPU host.
//!
//! - [`sources`] read samples: today the deterministic simulated fleet
//!   ([`sources::sim::SimFleet`]), used where no GPU is present; NVML,
//!   procfs and cgroup sources arrive with their issue.
//! - [`sinks`] deliver a [`Batch`]: [`sinks::copy::CopySink`] writes straight
//!   into the database through the store's batch writer.
//! - [`run()`] registers the inventory (`hosts`, `gpus`), then samples every
//!   interval, writes, records heartbeats, and keeps batches that could not
//!   be written in memory (bounded) to retry on the next tick.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod batch;
mod config;
mod error;
mod run;
pub mod sinks;
pub mod sources;

pub use batch::{Batch, GpuReading};
pub use config::{CollectorConfig, SimConfig, SourceKind};
pub use error::CollectorError;
pub use run::{run, RunOptions};
