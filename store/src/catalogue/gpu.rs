//! `gpu_metrics`: one sample of one GPU, in the units of NVML after the
//! collector's conversion (W, bytes, bytes/s). Exported under
//! dcgm-exporter's default-counter names, units and help texts.

use chrono::{DateTime, Utc};

use super::Range::{NonNegative, Within};
use super::Value::Divided;
use super::{Family, Spec};

const PERCENT: super::Range = Within(0.0, 100.0);
const CELSIUS: super::Range = Within(-50.0, 150.0);
/// DCGM reports framebuffer figures in whole MiB.
const MIB: super::Value = Divided(1_048_576);

crate::samples! {
    /// One sample of one GPU (`gpu_metrics`). `None` stores NULL: the GPU
    /// or driver could not read that field.
    pub struct GpuSample in "gpu_metrics" {
        /// `gpus.id`.
        gpu_id: i64 => Spec::KEY,
        /// The host the GPU is in.
        host_id: String => Spec::CARRY,
        /// Sample time, UTC.
        collected_at: DateTime<Utc> => Spec::TIME,
        /// Percent of time a kernel ran.
        utilization_percent: Option<f64> => Spec::gauge("%", PERCENT).p95()
            .export(Family::gauge(70, "DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).")),
        /// Framebuffer used.
        memory_used: Option<i64> => Spec::gauge("bytes", NonNegative)
            .export(Family::gauge(100, "DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).").of(MIB)),
        /// Framebuffer used of total.
        memory_usage_percent: Option<f64> => Spec::gauge("%", PERCENT)
            .export(Family::gauge(170, "DCGM_FI_DEV_MEMORY_USAGE_PERCENT", "Framebuffer memory used (in %), gpuwatch's addition.")),
        /// Core temperature.
        temperature: Option<f64> => Spec::gauge("°C", CELSIUS)
            .export(Family::gauge(40, "DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).")),
        /// Power draw.
        power_draw: Option<f64> => Spec::gauge("W", Within(0.0, 5000.0))
            .export(Family::gauge(50, "DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).")),
        /// Fan 0 speed, of its maximum.
        fan_speed_percent: Option<f64> => Spec::gauge("%", PERCENT)
            .export(Family::gauge(110, "DCGM_FI_DEV_FAN_SPEED", "Fan speed (in %).")),
        /// SM clock.
        sm_clock: Option<i32> => Spec::gauge("MHz", NonNegative)
            .export(Family::gauge(10, "DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).")),
        /// Memory clock.
        memory_clock: Option<i32> => Spec::gauge("MHz", NonNegative)
            .export(Family::gauge(20, "DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).")),
        /// Running compute processes.
        process_count: Option<i32> => Spec::gauge("processes", NonNegative)
            .export(Family::gauge(180, "DCGM_FI_DEV_PROCESS_COUNT", "Compute processes on the GPU, gpuwatch's addition.")),
        /// Memory-controller busy time (NVML's "memory utilisation").
        memory_copy_util_percent: Option<f64> => Spec::gauge("%", PERCENT)
            .export(Family::gauge(80, "DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).")),
        /// Framebuffer free.
        memory_free: Option<i64> => Spec::gauge("bytes", NonNegative)
            .export(Family::gauge(90, "DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).").of(MIB)),
        /// Memory (HBM) temperature.
        memory_temperature: Option<f64> => Spec::gauge("°C", CELSIUS)
            .export(Family::gauge(30, "DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).")),
        /// Energy since the driver loaded (counter).
        energy_consumed_mj: Option<i64> => Spec::counter("mJ", NonNegative)
            .export(Family::counter(60, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ).")),
        /// PCIe transmit throughput, as NVML samples it.
        pcie_tx_bytes_per_sec: Option<i64> => Spec::gauge("bytes/s", NonNegative)
            .export(Family::gauge(140, "DCGM_FI_PROF_PCIE_TX_BYTES", "The rate of data transmitted over the PCIe bus, including both protocol headers and data payloads, in bytes per second.")),
        /// PCIe receive throughput.
        pcie_rx_bytes_per_sec: Option<i64> => Spec::gauge("bytes/s", NonNegative)
            .export(Family::gauge(150, "DCGM_FI_PROF_PCIE_RX_BYTES", "The rate of data received over the PCIe bus, including both protocol headers and data payloads, in bytes per second.")),
        /// Corrected ECC errors since the driver loaded (counter).
        ecc_sbe_volatile: Option<i64> => Spec::counter("errors", NonNegative)
            .export(Family::counter(120, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Total number of single-bit volatile ECC errors.")),
        /// Uncorrected ECC errors since the driver loaded (counter).
        ecc_dbe_volatile: Option<i64> => Spec::counter("errors", NonNegative)
            .export(Family::counter(130, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors.")),
        /// Last XID seen in the interval, NULL if none. Not a family here:
        /// the exporter serves DCGM's sticky last XID from its own memory.
        xid_last: Option<i32> => Spec::events(NonNegative),
        /// NVML clocks-event (throttle) bitmask.
        throttle_reasons: Option<i64> => Spec::bitmask(NonNegative)
            .export(Family::gauge(160, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "Current clock throttle reasons (bitmask of DCGM_CLOCKS_THROTTLE_REASON_*).")),
        /// Percent of time the video encoder (NVENC) was busy.
        encoder_util_percent: Option<f64> => Spec::gauge("%", PERCENT)
            .export(Family::gauge(82, "DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %).")),
        /// Percent of time the video decoder (NVDEC) was busy.
        decoder_util_percent: Option<f64> => Spec::gauge("%", PERCENT)
            .export(Family::gauge(84, "DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %).")),
    }
}
