//! Where samples come from, one file per source.

pub mod cgroup;
pub mod hostinfo;
mod kernel_files;
pub mod node;
pub mod nvml;
pub mod procfs;
pub mod sim;

use thiserror::Error;

/// What reading a source can fail with.
#[derive(Debug, Error)]
pub enum SourceError {
    /// A file of /proc, /sys or a cgroup could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// the file
        path: String,
        /// the OS error
        #[source]
        source: std::io::Error,
    },
    /// A file had an unexpected format.
    #[error("cannot parse {path}: {what}")]
    Parse {
        /// the file
        path: String,
        /// what was wrong
        what: String,
    },
    /// NVML failed (library missing, GPU lost, ...).
    #[error("nvml: {0}")]
    Nvml(String),
}
