//! What `/metrics` exports: one table per source, in the names, types,
//! units and help texts of dcgm-exporter's default counters and of
//! node_exporter, so their Grafana dashboards and recording rules read
//! gpuwatch unchanged.
//!
//! Each family is one SQL expression over the latest raw sample (`m.`) of a
//! series, cast to `double precision` so the snapshot holds one numeric
//! column per family.

/// One metric family.
pub struct Family {
    /// Metric name.
    pub name: &'static str,
    /// `gauge` or `counter`.
    pub kind: &'static str,
    /// `# HELP` text.
    pub help: &'static str,
    /// SQL over the latest sample `m`, as double precision.
    pub expr: &'static str,
}

const fn f(
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    expr: &'static str,
) -> Family {
    Family {
        name,
        kind,
        help,
        expr,
    }
}

/// dcgm-exporter's default counters that NVML gives us. Framebuffer figures
/// are whole MiB as DCGM reports them; PCIe is the rate NVML samples.
pub const GPU: &[Family] = &[
    f("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", "m.sm_clock"),
    f("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", "m.memory_clock"),
    f("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C).", "m.memory_temperature"),
    f("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", "m.temperature"),
    f("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "m.power_draw"),
    f(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
        "m.energy_consumed_mj",
    ),
    f("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "m.utilization_percent"),
    f(
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "gauge",
        "Memory utilization (in %).",
        "m.memory_copy_util_percent",
    ),
    f("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", "m.memory_free / 1048576"),
    f("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", "m.memory_used / 1048576"),
    f("DCGM_FI_DEV_FAN_SPEED", "gauge", "Fan speed (in %).", "m.fan_speed_percent"),
    f(
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "counter",
        "Total number of single-bit volatile ECC errors.",
        "m.ecc_sbe_volatile",
    ),
    f(
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "counter",
        "Total number of double-bit volatile ECC errors.",
        "m.ecc_dbe_volatile",
    ),
    f(
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        "gauge",
        "The rate of data transmitted over the PCIe bus, including both protocol headers and data payloads, in bytes per second.",
        "m.pcie_tx_bytes_per_sec",
    ),
    f(
        "DCGM_FI_PROF_PCIE_RX_BYTES",
        "gauge",
        "The rate of data received over the PCIe bus, including both protocol headers and data payloads, in bytes per second.",
        "m.pcie_rx_bytes_per_sec",
    ),
    f(
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "gauge",
        "Current clock throttle reasons (bitmask of DCGM_CLOCKS_THROTTLE_REASON_*).",
        "m.throttle_reasons",
    ),
    f("DCGM_FI_DEV_MEMORY_USAGE_PERCENT", "gauge", "Framebuffer memory used (in %), gpuwatch's addition.", "m.memory_usage_percent"),
    f("DCGM_FI_DEV_PROCESS_COUNT", "gauge", "Compute processes on the GPU, gpuwatch's addition.", "m.process_count"),
];

/// XID is special: DCGM reports the last XID seen, sticky, while a sample
/// holds only the XID of its own interval (NULL if none). The exporter
/// remembers the last one per GPU across refreshes.
pub const XID: Family = f(
    "DCGM_FI_DEV_XID_ERRORS",
    "gauge",
    "Value of the last XID error encountered.",
    "",
);

/// node_exporter's names for what the host source measures the same way.
/// Totals are the sums node_exporter's per-device series add up to.
pub const HOST: &[Family] = &[
    f("node_load1", "gauge", "1m load average.", "m.cpu_load_1m"),
    f("node_load5", "gauge", "5m load average.", "m.cpu_load_5m"),
    f(
        "node_load15",
        "gauge",
        "15m load average.",
        "m.cpu_load_15m",
    ),
    f(
        "node_memory_MemAvailable_bytes",
        "gauge",
        "Memory information field MemAvailable_bytes.",
        "m.memory_available",
    ),
    f(
        "node_memory_MemTotal_bytes",
        "gauge",
        "Memory information field MemTotal_bytes.",
        "m.memory_used + m.memory_available",
    ),
    f(
        "node_filesystem_avail_bytes",
        "gauge",
        "Filesystem space available to non-root users in bytes.",
        "m.disk_available",
    ),
    f(
        "node_disk_read_bytes_total",
        "counter",
        "The total number of bytes read successfully, all whole disks.",
        "m.disk_io_read_bytes",
    ),
    f(
        "node_disk_written_bytes_total",
        "counter",
        "The total number of bytes written successfully, all whole disks.",
        "m.disk_io_write_bytes",
    ),
    f(
        "node_network_receive_bytes_total",
        "counter",
        "Network device statistic receive_bytes, all interfaces but lo.",
        "m.network_rx_bytes",
    ),
    f(
        "node_network_transmit_bytes_total",
        "counter",
        "Network device statistic transmit_bytes, all interfaces but lo.",
        "m.network_tx_bytes",
    ),
    f(
        "node_network_receive_packets_total",
        "counter",
        "Network device statistic receive_packets, all interfaces but lo.",
        "m.network_rx_packets",
    ),
    f(
        "node_network_transmit_packets_total",
        "counter",
        "Network device statistic transmit_packets, all interfaces but lo.",
        "m.network_tx_packets",
    ),
    f(
        "gpuwatch_host_cpu_usage_percent",
        "gauge",
        "Host CPU busy time over the last interval (in %).",
        "m.cpu_usage_percent",
    ),
    f(
        "gpuwatch_host_memory_usage_percent",
        "gauge",
        "Host memory used, MemTotal - MemAvailable (in %).",
        "m.memory_usage_percent",
    ),
    f(
        "gpuwatch_host_disk_usage_percent",
        "gauge",
        "Root filesystem used (in %).",
        "m.disk_usage_percent",
    ),
];

/// Environments (containers), labelled with their customer.
pub const ENV: &[Family] = &[
    f(
        "gpuwatch_environment_cpu_usage_percent",
        "gauge",
        "Environment CPU usage (in % of one core).",
        "m.cpu_usage_percent",
    ),
    f(
        "gpuwatch_environment_memory_used_bytes",
        "gauge",
        "Environment memory used in bytes.",
        "m.memory_used",
    ),
    f(
        "gpuwatch_environment_memory_usage_percent",
        "gauge",
        "Environment memory used (in % of its limit).",
        "m.memory_usage_percent",
    ),
    f(
        "gpuwatch_environment_gpu_usage_percent",
        "gauge",
        "Average utilisation of the environment's GPUs (in %).",
        "m.gpu_usage_percent",
    ),
    f(
        "gpuwatch_environment_gpu_memory_used_bytes",
        "gauge",
        "GPU memory used by the environment's processes in bytes.",
        "m.gpu_memory_used",
    ),
    f(
        "gpuwatch_environment_network_receive_bytes_total",
        "counter",
        "Bytes received by the environment since it started.",
        "m.network_rx_bytes",
    ),
    f(
        "gpuwatch_environment_network_transmit_bytes_total",
        "counter",
        "Bytes sent by the environment since it started.",
        "m.network_tx_bytes",
    ),
];

/// `expr1::float8, expr2::float8, …` for a SELECT list.
pub fn select_list(families: &[Family]) -> String {
    families
        .iter()
        .map(|f| format!("({})::float8", f.expr))
        .collect::<Vec<_>>()
        .join(", ")
}
