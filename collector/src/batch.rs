use gpuwatch_store::{EnvSample, GpuSample, HostSample};

/// A GPU sample as a source reads it: keyed by UUID, because `gpus.id` is
/// only known once the inventory is registered.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuReading {
    /// NVML UUID.
    pub uuid: String,
    /// The sample; `gpu_id` is filled in by the run loop.
    pub sample: GpuSample,
}

/// Everything one collection produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// `gpu_metrics` rows.
    pub gpu: Vec<GpuSample>,
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
