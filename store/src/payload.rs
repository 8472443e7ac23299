//! What an agent sends: one collection of one host, as JSON (gzip on the
//! wire) to `POST /api/v1/ingest`, and as files in the agent's spool.

use serde::{Deserialize, Serialize};

use crate::inventory::{GpuInfo, HostInfo};
use crate::{EnvSample, GpuSample, HostSample};

/// The payload version this build writes and accepts.
pub const PAYLOAD_VERSION: u32 = 1;

/// A GPU sample keyed by UUID: `gpus.id` belongs to the database, so the
/// writer (or the ingest endpoint) maps it; `sample.gpu_id` is ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuReading {
    /// NVML UUID.
    pub uuid: String,
    /// The sample.
    pub sample: GpuSample,
}

/// Everything one collection produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// `gpu_metrics` rows.
    pub gpu: Vec<GpuReading>,
    /// `host_metrics` rows.
    pub host: Vec<HostSample>,
    /// `environment_metrics` rows.
    pub env: Vec<EnvSample>,
}

impl Batch {
    /// Total rows.
    pub fn len(&self) -> usize {
        self.gpu.len() + self.host.len() + self.env.len()
    }

    /// True when nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hosts that reported in this batch (for heartbeats), sorted, unique.
    pub fn host_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.host.iter().map(|h| h.host_id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// The body of `POST /api/v1/ingest`: a host's inventory (written only when
/// it changed) and one batch of its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestPayload {
    /// Must be [`PAYLOAD_VERSION`].
    pub version: u32,
    /// The reporting host.
    pub host: HostInfo,
    /// Its GPUs.
    pub gpus: Vec<GpuInfo>,
    /// The samples; every one must belong to `host`.
    pub batch: Batch,
}
