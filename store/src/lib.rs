//! gpuwatch's storage layer: everything that talks to PostgreSQL or TimescaleDB.
//!
//! - [`connect`] builds a connection [`Pool`] and turns connection failures
//!   (unreachable server, wrong password, missing database) into errors that
//!   say how to fix them.
//! - [`migrate()`] applies the SQL files of `migrations/` in order, choosing
//!   the [`Backend`] (TimescaleDB hypertables or plain PostgreSQL daily
//!   partitions) the first time and recording it.
//! - [`catalogue`] declares every column of the three raw metric tables
//!   once (type, unit, range, tier aggregation, exported family);
//!   [`GpuSample`], [`HostSample`] and [`EnvSample`] are generated from it,
//!   and [`BatchWriter`] streams them with binary COPY over several
//!   connections, idempotently.
//! - [`replication`] says whether the server is a primary or a standby and
//!   how far each standby lags.
//! - [`Ingestor`] is the one ingest path (direct sink and HTTP): validate,
//!   register, write and heartbeat in one transaction.
//! - [`inventory`] holds the shared queries for `hosts` and `gpus`.
//! - [`citus`] declares where each table would live in a Citus cluster.
//! - [`IngestPayload`] / [`Batch`] are what agents send and spool.
//!
//! Data enters as row structs and leaves as rows in the database; no other
//! crate writes SQL against the metric tables directly.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
pub mod catalogue;
pub mod citus;
mod config;
mod error;
pub mod ingest;
pub mod inventory;
pub mod jobs;
pub mod listing;
pub mod logging;
pub mod matcher;
pub mod metrics;
mod migrate;
mod payload;
pub mod placement;
mod pool;
pub mod replication;
mod rows;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
mod writer;

pub use backend::{detect, Backend, BackendPreference, ServerInfo};
pub use catalogue::{EnvSample, GpuSample, HostSample};
pub use config::{duration, StoreConfig, WriterConfig};
pub use error::{ErrorClass, StoreError};
pub use ingest::{IngestLimits, Ingestor};
#[cfg(feature = "testing")]
pub use migrate::migrate_as_of;
pub use migrate::{
    functions as migration_functions, migrate, migrations, pending as pending_migrations,
    MigrateReport, Migration, Repeatable,
};
pub use payload::{Batch, GpuReading, IngestPayload, PAYLOAD_VERSION};
pub use pool::{connect, connect_lazy, connect_one, redact, Pool};
pub use rows::Sample;
pub use writer::{tier_lock_key, BatchWriter, WriteStats};

/// Result type of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// FNV-1a: a stable, dependency-free hash for checksums and lock keys.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
