//! [`NvmlBackend`]: the [`GpuBackend`] over nvml-wrapper (libnvidia-ml).
//!
//! NVML is loaded once per process and kept for its life; XID errors are
//! watched through one NVML event set per GPU, polled without waiting.

use std::sync::OnceLock;

use chrono::Utc;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    Brand, Clock, EccCounter, MemoryError, PcieUtilCounter, TemperatureSensor, TemperatureThreshold,
};
use nvml_wrapper::enums::device::{DeviceArchitecture, SampleValue, UsedGpuMemory};
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::NVML_FI_DEV_MEMORY_TEMP;
use nvml_wrapper::{Device, EventSet, Nvml};

use super::{GpuBackend, RawGpu, RawProcess, XidEvent};
use crate::sources::SourceError;

/// NVML, initialised once and never shut down: device handles and event
/// sets borrow it for the agent's whole life, and a static gives them that
/// lifetime without a self-referential struct (the crate forbids unsafe).
static NVML: OnceLock<Nvml> = OnceLock::new();

/// At most this many XID events per GPU and tick, so an XID storm cannot
/// hold the agent; the rest are read on the next tick.
const MAX_XIDS_PER_TICK: usize = 64;

/// The GPU backend over the NVIDIA driver's NVML library.
pub struct NvmlBackend {
    nvml: &'static Nvml,
    /// One event set per GPU, so a GPU without XID events costs only itself.
    xid_sets: Vec<(String, EventSet<'static>)>,
}

impl NvmlBackend {
    /// Loads libnvidia-ml, initialises NVML and registers for critical XID
    /// errors on every GPU that supports them.
    pub fn open() -> Result<Self, SourceError> {
        let nvml = nvml()?;
        let count = nvml
            .device_count()
            .map_err(|e| SourceError::Nvml(format!("cannot count GPUs: {e}")))?;
        let xid_sets = (0..count).filter_map(|i| xid_set(nvml, i)).collect();
        Ok(NvmlBackend { nvml, xid_sets })
    }
}

fn nvml() -> Result<&'static Nvml, SourceError> {
    if let Some(n) = NVML.get() {
        return Ok(n);
    }
    let n = Nvml::init().map_err(open_error)?;
    // If another thread won the race its handle is as good; NVML counts inits.
    Ok(NVML.get_or_init(|| n))
}

/// Says what a failed `nvmlInit` means for the operator.
fn open_error(e: NvmlError) -> SourceError {
    SourceError::Nvml(match e {
        NvmlError::LibloadingError(_)
        | NvmlError::LibraryNotFound
        | NvmlError::FailedToLoadSymbol(_) => format!(
            "cannot load the NVML library libnvidia-ml.so.1 ({e}): this host has no NVIDIA driver; install it to collect GPU metrics"
        ),
        NvmlError::DriverNotLoaded => {
            "the NVML library is installed but the NVIDIA driver is not loaded (modprobe nvidia)"
                .into()
        }
        NvmlError::NoPermission => {
            "no permission to talk to the NVIDIA driver: run the agent as a user that can open /dev/nvidia*"
                .into()
        }
        other => format!("cannot initialise the NVML library: {other}"),
    })
}

/// An event set watching `index` for critical XIDs, or `None` (logged).
fn xid_set(nvml: &'static Nvml, index: u32) -> Option<(String, EventSet<'static>)> {
    let register = || -> Result<Option<(String, EventSet<'static>)>, NvmlError> {
        let dev = nvml.device_by_index(index)?;
        let uuid = dev.uuid()?;
        if !dev
            .supported_event_types()?
            .contains(EventTypes::CRITICAL_XID_ERROR)
        {
            return Ok(None);
        }
        let set = dev
            .register_events(EventTypes::CRITICAL_XID_ERROR, nvml.create_event_set()?)
            .map_err(|e| e.error)?;
        Ok(Some((uuid, set)))
    };
    match register() {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            tracing::info!(
                gpu.index = index,
                "this GPU reports no XID events; its xid_last stays NULL"
            );
            None
        }
        Err(e) => {
            tracing::warn!(gpu.index = index, error = %e, "cannot watch XID events on this GPU; its xid_last stays NULL");
            None
        }
    }
}

impl GpuBackend for NvmlBackend {
    fn device_count(&mut self) -> Result<u32, SourceError> {
        self.nvml
            .device_count()
            .map_err(|e| SourceError::Nvml(format!("cannot count GPUs: {e}")))
    }

    fn read(&mut self, index: u32) -> Result<RawGpu, SourceError> {
        read_device(self.nvml, index).map_err(|e| SourceError::Nvml(format!("GPU {index}: {e}")))
    }

    fn drain_xids(&mut self) -> Vec<XidEvent> {
        let mut out = Vec::new();
        for (uuid, set) in &self.xid_sets {
            for _ in 0..MAX_XIDS_PER_TICK {
                // A 0 ms wait only collects what is already queued.
                match set.wait(0) {
                    Ok(ev) => {
                        if let Some(x) = ev.event_data {
                            let xid = match x {
                                XidError::Value(v) => v,
                                XidError::Unknown => 999,
                            };
                            out.push(XidEvent {
                                uuid: uuid.clone(),
                                xid,
                                at: Utc::now(),
                            });
                        }
                    }
                    Err(NvmlError::Timeout) => break,
                    Err(e) => {
                        // A lost GPU also fails its read, which is logged there.
                        tracing::debug!(gpu.uuid = %uuid, error = %e, "XID event wait failed");
                        break;
                    }
                }
            }
        }
        out
    }
}

/// Turns "this GPU or driver cannot tell" into `None`; other errors (GPU
/// lost, driver failure) fail the whole read.
fn opt<T>(r: Result<T, NvmlError>) -> Result<Option<T>, NvmlError> {
    match r {
        Ok(v) => Ok(Some(v)),
        // NotSupported: the GPU lacks the feature. FunctionNotFound and
        // FailedToLoadSymbol: the driver predates the call. UnexpectedVariant:
        // a value newer than this wrapper. NoPermission / NoData: nothing to read.
        Err(
            NvmlError::NotSupported
            | NvmlError::FunctionNotFound
            | NvmlError::FailedToLoadSymbol(_)
            | NvmlError::UnexpectedVariant(_)
            | NvmlError::NoPermission
            | NvmlError::NoData,
        ) => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_device(nvml: &Nvml, index: u32) -> Result<RawGpu, NvmlError> {
    let d = nvml.device_by_index(index)?;
    let mem = d.memory_info()?;
    let util = opt(d.utilization_rates())?;
    Ok(RawGpu {
        index,
        uuid: d.uuid()?,
        name: d.name()?,
        brand: opt(d.brand())?.map(brand_name),
        architecture: opt(d.architecture())?.map(architecture_name),
        memory_total: mem.total,
        memory_used: mem.used,
        memory_free: mem.free,
        compute_capability: opt(d.cuda_compute_capability())?.map(|c| (c.major, c.minor)),
        utilization_gpu: util.as_ref().map(|u| u.gpu),
        utilization_memory: util.as_ref().map(|u| u.memory),
        utilization_encoder: opt(d.encoder_utilization())?.map(|u| u.utilization),
        utilization_decoder: opt(d.decoder_utilization())?.map(|u| u.utilization),
        temperature: opt(d.temperature(TemperatureSensor::Gpu))?,
        memory_temperature: memory_temperature(&d)?,
        temperature_slowdown: opt(d.temperature_threshold(TemperatureThreshold::Slowdown))?,
        power_usage_mw: opt(d.power_usage())?,
        power_limit_mw: opt(d.enforced_power_limit())?,
        fan_speed: opt(d.fan_speed(0))?,
        sm_clock_mhz: opt(d.clock_info(Clock::SM))?,
        memory_clock_mhz: opt(d.clock_info(Clock::Memory))?,
        energy_mj: opt(d.total_energy_consumption())?,
        pcie_tx_kb_per_sec: opt(d.pcie_throughput(PcieUtilCounter::Send))?,
        pcie_rx_kb_per_sec: opt(d.pcie_throughput(PcieUtilCounter::Receive))?,
        ecc_corrected_volatile: opt(
            d.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)
        )?,
        ecc_uncorrected_volatile: opt(
            d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
        )?,
        throttle_reasons: opt(d.current_throttle_reasons())?.map(|r| r.bits()),
        processes: opt(d.running_compute_processes())?.map(|ps| {
            ps.into_iter()
                .map(|p| RawProcess {
                    pid: p.pid,
                    used_memory: match p.used_gpu_memory {
                        UsedGpuMemory::Used(b) => Some(b),
                        UsedGpuMemory::Unavailable => None,
                    },
                })
                .collect()
        }),
        pci_bus_id: opt(d.pci_info())?.map(|p| p.bus_id),
        driver_version: opt(nvml.sys_driver_version())?,
        serial: opt(d.serial())?,
        vbios_version: opt(d.vbios_version())?,
    })
}

/// HBM temperature through NVML field values; GPUs without a memory sensor
/// answer NotSupported or 0, both meaning "no reading".
fn memory_temperature(d: &Device) -> Result<Option<u32>, NvmlError> {
    let Some(values) = opt(d.field_values_for(&[FieldId(NVML_FI_DEV_MEMORY_TEMP)]))? else {
        return Ok(None);
    };
    let value = values
        .into_iter()
        .next()
        .and_then(|s| s.ok())
        .and_then(|s| s.value.ok());
    let t = match value {
        Some(SampleValue::U32(t)) => Some(t),
        Some(SampleValue::U64(t)) => u32::try_from(t).ok(),
        Some(SampleValue::I64(t)) => u32::try_from(t).ok(),
        Some(SampleValue::F64(t)) => Some(t.round() as u32),
        None => None,
    };
    Ok(t.filter(|&t| t > 0))
}

fn brand_name(b: Brand) -> String {
    match b {
        Brand::Nvidia => "NVIDIA".into(),
        Brand::NvidiaRTX => "NVIDIA RTX".into(),
        other => format!("{other:?}"),
    }
}

/// Architecture names as the rest of gpuwatch spells them.
fn architecture_name(a: DeviceArchitecture) -> String {
    match a {
        DeviceArchitecture::Ada => "Ada Lovelace".into(),
        other => other.to_string(),
    }
}
