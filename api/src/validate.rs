//! Ingest validation lives in the store ([`gpuwatch_store::ingest::check`]),
//! where the direct sink's path runs it too; re-exported here for the API's
//! callers.

pub use gpuwatch_store::ingest::{check, IngestLimits, MAX_PROBLEMS};
