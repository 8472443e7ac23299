//! The GPU source: every NVIDIA GPU of this host, read through NVML.
//!
//! - [`GpuBackend`] yields [`RawGpu`] readings in NVML's own units (mW, KB/s,
//!   mJ) and the XID events seen since the last call. [`NvmlBackend`] is the
//!   real one (nvml-wrapper over libnvidia-ml); tests use a double, so the
//!   mapping is checked on machines without a GPU.
//! - [`to_reading`] and [`to_info`] are the pure mapping to `gpu_metrics`
//!   rows and `gpus` inventory: mW → W, KB/s → bytes/s, used/total → %.
//!   A field the GPU does not support stays `None` and is stored as NULL.
//! - [`GpuSource`] is what the agent holds. Where NVML cannot be opened it
//!   is off after one warning, so a host without a driver still reports its
//!   host and environment metrics; a GPU that fails a read is skipped (one
//!   warning) while the others report.
//! - [`GpuProcess`] lists the compute processes of every GPU, which the
//!   cgroup source attributes to environments.

mod backend;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use gpuwatch_store::inventory::GpuInfo;
use gpuwatch_store::GpuSample;

pub use backend::NvmlBackend;

use crate::sources::SourceError;
use crate::GpuReading;

/// One compute process on a GPU, as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawProcess {
    /// Process id in the host's pid namespace.
    pub pid: u32,
    /// GPU memory the process holds, bytes; `None` where NVML cannot tell.
    pub used_memory: Option<u64>,
}

/// One GPU's readings in NVML's units. `Option` fields are `None` where the
/// GPU or driver does not support them (NVML `NotSupported`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawGpu {
    /// NVML index.
    pub index: u32,
    /// NVML UUID, "GPU-…".
    pub uuid: String,
    /// Model name.
    pub name: String,
    /// NVML brand, e.g. "NVIDIA", "Tesla".
    pub brand: Option<String>,
    /// Architecture, e.g. "Hopper".
    pub architecture: Option<String>,
    /// Framebuffer total, bytes.
    pub memory_total: u64,
    /// Framebuffer used, bytes.
    pub memory_used: u64,
    /// Framebuffer free, bytes.
    pub memory_free: u64,
    /// CUDA compute capability (major, minor).
    pub compute_capability: Option<(i32, i32)>,
    /// Percent of time a kernel ran, %.
    pub utilization_gpu: Option<u32>,
    /// Percent of time device memory was read or written, %.
    pub utilization_memory: Option<u32>,
    /// Percent of time the video encoder was busy, %.
    pub utilization_encoder: Option<u32>,
    /// Percent of time the video decoder was busy, %.
    pub utilization_decoder: Option<u32>,
    /// Core temperature, °C.
    pub temperature: Option<u32>,
    /// Memory (HBM) temperature, °C.
    pub memory_temperature: Option<u32>,
    /// Slowdown temperature threshold, °C.
    pub temperature_slowdown: Option<u32>,
    /// Power draw, mW.
    pub power_usage_mw: Option<u32>,
    /// Enforced power limit, mW.
    pub power_limit_mw: Option<u32>,
    /// Fan 0 speed, % of maximum.
    pub fan_speed: Option<u32>,
    /// SM clock, MHz.
    pub sm_clock_mhz: Option<u32>,
    /// Memory clock, MHz.
    pub memory_clock_mhz: Option<u32>,
    /// Energy since the driver loaded, mJ.
    pub energy_mj: Option<u64>,
    /// PCIe transmit throughput, KB/s (1 KB = 1024 bytes).
    pub pcie_tx_kb_per_sec: Option<u32>,
    /// PCIe receive throughput, KB/s.
    pub pcie_rx_kb_per_sec: Option<u32>,
    /// Corrected (single-bit) ECC errors since the driver loaded.
    pub ecc_corrected_volatile: Option<u64>,
    /// Uncorrected (double-bit) ECC errors since the driver loaded.
    pub ecc_uncorrected_volatile: Option<u64>,
    /// Current clocks-event (throttle) reasons, NVML bitmask.
    pub throttle_reasons: Option<u64>,
    /// Running compute processes.
    pub processes: Option<Vec<RawProcess>>,
    /// PCI bus id, e.g. "00000000:17:00.0".
    pub pci_bus_id: Option<String>,
    /// The driver's version (the same for every GPU of a host).
    pub driver_version: Option<String>,
    /// Board serial number.
    pub serial: Option<String>,
    /// VBIOS version.
    pub vbios_version: Option<String>,
}

/// A critical XID error NVML reported for one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XidEvent {
    /// The GPU.
    pub uuid: String,
    /// The XID (999 where NVML does not know it).
    pub xid: u64,
    /// When the agent received it.
    pub at: DateTime<Utc>,
}

/// Where GPU readings come from: NVML, or a double in tests.
pub trait GpuBackend: Send {
    /// How many GPUs there are now.
    fn device_count(&mut self) -> Result<u32, SourceError>;
    /// Reads GPU `index` (0..device_count).
    fn read(&mut self, index: u32) -> Result<RawGpu, SourceError>;
    /// XID events received since the last call, oldest first. Must not block
    /// the agent for more than a few milliseconds.
    fn drain_xids(&mut self) -> Vec<XidEvent>;
}

/// A compute process on a GPU, for the cgroup source's attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuProcess {
    /// The GPU's UUID.
    pub uuid: String,
    /// Process id in the host's pid namespace.
    pub pid: u32,
    /// GPU memory the process holds, bytes (0 where NVML cannot tell).
    pub used_memory: u64,
}

/// Clamps a counter into the i64 of its column; NVML counters are u64 but
/// never come near 2^63 in practice.
fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn i32_of(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Maps one GPU's readings to a `gpu_metrics` row (units of
/// migrations/0007_monitoring.sql). `xid` is the last XID seen in the interval.
pub fn to_reading(raw: &RawGpu, host_id: &str, at: DateTime<Utc>, xid: Option<i32>) -> GpuReading {
    let memory_usage_percent =
        (raw.memory_total > 0).then(|| raw.memory_used as f64 * 100.0 / raw.memory_total as f64);
    GpuReading {
        uuid: raw.uuid.clone(),
        sample: GpuSample {
            // The sink resolves the UUID to gpus.id, as for the simulated fleet.
            gpu_id: 0,
            host_id: host_id.to_string(),
            collected_at: at,
            utilization_percent: raw.utilization_gpu.map(f64::from),
            memory_used: Some(i64_of(raw.memory_used)),
            memory_usage_percent,
            temperature: raw.temperature.map(f64::from),
            power_draw: raw.power_usage_mw.map(|mw| f64::from(mw) / 1000.0),
            fan_speed_percent: raw.fan_speed.map(f64::from),
            sm_clock: raw.sm_clock_mhz.map(i32_of),
            memory_clock: raw.memory_clock_mhz.map(i32_of),
            process_count: raw
                .processes
                .as_ref()
                .map(|p| i32::try_from(p.len()).unwrap_or(i32::MAX)),
            // NVML's "memory utilisation" is memory-controller busy time,
            // which is what DCGM_FI_DEV_MEM_COPY_UTIL reports.
            memory_copy_util_percent: raw.utilization_memory.map(f64::from),
            memory_free: Some(i64_of(raw.memory_free)),
            memory_temperature: raw.memory_temperature.map(f64::from),
            energy_consumed_mj: raw.energy_mj.map(i64_of),
            pcie_tx_bytes_per_sec: raw.pcie_tx_kb_per_sec.map(|kb| i64::from(kb) * 1024),
            pcie_rx_bytes_per_sec: raw.pcie_rx_kb_per_sec.map(|kb| i64::from(kb) * 1024),
            ecc_sbe_volatile: raw.ecc_corrected_volatile.map(i64_of),
            ecc_dbe_volatile: raw.ecc_uncorrected_volatile.map(i64_of),
            xid_last: xid,
            // A bitmask: the bits are kept as they are (NVML uses the low ones).
            throttle_reasons: raw.throttle_reasons.map(|b| b as i64),
            encoder_util_percent: raw.utilization_encoder.map(f64::from),
            decoder_util_percent: raw.utilization_decoder.map(f64::from),
        },
    }
}

/// Maps one GPU's readings to its `gpus` inventory row. Unknown
/// architecture or compute capability is stored as "unknown".
pub fn to_info(raw: &RawGpu, host_id: &str) -> GpuInfo {
    GpuInfo {
        host_id: host_id.to_string(),
        gpu_index: i32_of(raw.index),
        uuid: raw.uuid.clone(),
        name: raw.name.clone(),
        brand: raw.brand.clone().unwrap_or_else(|| "NVIDIA".into()),
        architecture: raw.architecture.clone().unwrap_or_else(|| "unknown".into()),
        memory_total: i64_of(raw.memory_total),
        compute_capability: raw
            .compute_capability
            .map(|(major, minor)| format!("{major}.{minor}"))
            .unwrap_or_else(|| "unknown".into()),
        power_limit: raw
            .power_limit_mw
            .map(|mw| (f64::from(mw) / 1000.0).round() as i32),
        temperature_limit: raw.temperature_slowdown.map(i32_of),
        pci_bus_id: raw.pci_bus_id.clone(),
        driver_version: raw.driver_version.clone(),
        serial: raw.serial.clone(),
        vbios_version: raw.vbios_version.clone(),
    }
}

/// The GPU source the agent holds: on with a backend, or off.
pub struct GpuSource {
    backend: Option<Box<dyn GpuBackend>>,
    /// GPUs whose last read failed, so each failure is logged once, not every tick.
    failing: HashSet<u32>,
    count_failing: bool,
}

impl GpuSource {
    /// Opens NVML; where that fails, logs one warning and returns a source
    /// that is off (no GPUs), so the agent keeps running.
    pub fn open() -> Self {
        match NvmlBackend::open() {
            Ok(b) => {
                tracing::info!("GPU source on (NVML)");
                Self::with_backend(Box::new(b))
            }
            Err(e) => {
                tracing::warn!(error = %e, "GPU source off: no GPU metrics from this host; the agent keeps running");
                Self::off()
            }
        }
    }

    /// A source over `backend` (tests pass a double).
    pub fn with_backend(backend: Box<dyn GpuBackend>) -> Self {
        GpuSource {
            backend: Some(backend),
            failing: HashSet::new(),
            count_failing: false,
        }
    }

    /// A source that reports no GPUs.
    pub fn off() -> Self {
        GpuSource {
            backend: None,
            failing: HashSet::new(),
            count_failing: false,
        }
    }

    /// Whether a backend is open.
    pub fn is_on(&self) -> bool {
        self.backend.is_some()
    }

    /// The GPUs as the inventory sees them (empty when off).
    pub fn inventory(&mut self, host_id: &str) -> Vec<GpuInfo> {
        self.read_all()
            .iter()
            .map(|raw| to_info(raw, host_id))
            .collect()
    }

    /// One sample of every readable GPU at `at`, and their compute processes.
    /// Each GPU's `xid_last` is the last XID it reported since the previous call.
    pub fn sample(
        &mut self,
        host_id: &str,
        at: DateTime<Utc>,
    ) -> (Vec<GpuReading>, Vec<GpuProcess>) {
        let Some(backend) = self.backend.as_mut() else {
            return (Vec::new(), Vec::new());
        };
        let mut last_xid: HashMap<String, i32> = HashMap::new();
        for ev in backend.drain_xids() {
            // Later events overwrite earlier ones: the column keeps the last.
            last_xid.insert(ev.uuid, i32::try_from(ev.xid).unwrap_or(i32::MAX));
        }
        let raws = self.read_all();
        let readings = raws
            .iter()
            .map(|raw| to_reading(raw, host_id, at, last_xid.get(&raw.uuid).copied()))
            .collect();
        let processes = raws
            .iter()
            .flat_map(|raw| {
                raw.processes.iter().flatten().map(|p| GpuProcess {
                    uuid: raw.uuid.clone(),
                    pid: p.pid,
                    used_memory: p.used_memory.unwrap_or(0),
                })
            })
            .collect();
        (readings, processes)
    }

    /// Reads every GPU, skipping (and logging once) those that fail.
    fn read_all(&mut self) -> Vec<RawGpu> {
        let Some(backend) = self.backend.as_mut() else {
            return Vec::new();
        };
        let count = match backend.device_count() {
            Ok(n) => {
                self.count_failing = false;
                n
            }
            Err(e) => {
                if !std::mem::replace(&mut self.count_failing, true) {
                    tracing::warn!(error = %e, "cannot count GPUs; no GPU samples until NVML answers again");
                }
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for index in 0..count {
            match backend.read(index) {
                Ok(raw) => {
                    if self.failing.remove(&index) {
                        tracing::info!(gpu.index = index, gpu.uuid = %raw.uuid, "GPU readable again");
                    }
                    out.push(raw);
                }
                Err(e) => {
                    if self.failing.insert(index) {
                        tracing::warn!(gpu.index = index, error = %e, "cannot read this GPU; it is skipped until it answers, the others still report");
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
