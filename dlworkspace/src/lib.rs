//! gpuwatch's DLWorkspace source: mirrors the MySQL database of each
//! DLWorkspace cluster (`DLWorkspaceCluster-<id>`: `jobs`, `clusterstatus`)
//! into PostgreSQL, so on-call sees failed, killed and error jobs and
//! billing sees who ran what on how many GPUs.
//!
//! - [`DlworkspaceConfig`] / [`ClusterConfig`]: `[[dlworkspace.clusters]]`.
//! - [`sync_once`] runs one cycle of one cluster; [`run`] repeats it per
//!   cluster at its poll interval until shutdown.
//! - Data enters by SELECT only: new jobs by `id`; changed jobs by
//!   re-reading the jobs not yet final, and on upstream's table version
//!   also by `lastUpdated` (which catches changes to jobs already final,
//!   and dates changes exactly where the writer maintains it).
//! - Data leaves into `training_jobs` (one row per job),
//!   `training_job_status_history` (every status change once),
//!   `dlworkspace_clusters` (latest clusterstatus, unmapped owners), with
//!   the cursor in `dlworkspace_cursors` and rows that did not map in
//!   `dlworkspace_retry` (read again every cycle).
//! - [`generator`] writes realistic DLWorkspace jobs into MySQL, for tests,
//!   benches and the quick start.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
mod error;
pub mod generator;
pub mod mapping;
pub mod source;
pub mod store;
mod sync;

pub use config::{ClusterConfig, DlworkspaceConfig, JobBilling, OwnerRule};
pub use error::DlwsError;
pub use gpuwatch_store::jobs::JobStatus;
pub use source::TableVersion;
pub use sync::{run, sync_once, SyncReport};
