//! `host_metrics`: one sample of one host. Byte and packet fields are
//! counters since boot, as node_exporter reports them, and are exported
//! under node_exporter's names.

use chrono::{DateTime, Utc};

use super::Range::{NonNegative, Within};
use super::Value::Sql;
use super::{Family, Spec};

const PERCENT: super::Range = Within(0.0, 100.0);
const LOAD: super::Range = Within(0.0, 1.0e6);

crate::samples! {
    /// One sample of one host (`host_metrics`).
    pub struct HostSample in "host_metrics" {
        /// `hosts.id`.
        host_id: String => Spec::KEY,
        /// Sample time, UTC.
        collected_at: DateTime<Utc> => Spec::TIME,
        /// CPU busy time over the last interval.
        cpu_usage_percent: Option<f64> => Spec::gauge("%", PERCENT).p95()
            .export(Family::gauge(130, "gpuwatch_host_cpu_usage_percent", "Host CPU busy time over the last interval (in %).")),
        /// 1-minute load average.
        cpu_load_1m: Option<f64> => Spec::gauge("load", LOAD)
            .export(Family::gauge(10, "node_load1", "1m load average.")),
        /// 5-minute load average.
        cpu_load_5m: Option<f64> => Spec::gauge("load", LOAD)
            .export(Family::gauge(20, "node_load5", "5m load average.")),
        /// 15-minute load average.
        cpu_load_15m: Option<f64> => Spec::gauge("load", LOAD)
            .export(Family::gauge(30, "node_load15", "15m load average.")),
        /// MemTotal - MemAvailable.
        memory_used: Option<i64> => Spec::gauge("bytes", NonNegative)
            .export(Family::gauge(50, "node_memory_MemTotal_bytes", "Memory information field MemTotal_bytes.")
                .of(Sql("m.memory_used + m.memory_available"))),
        /// MemAvailable.
        memory_available: Option<i64> => Spec::gauge("bytes", NonNegative)
            .export(Family::gauge(40, "node_memory_MemAvailable_bytes", "Memory information field MemAvailable_bytes.")),
        /// Memory used of MemTotal.
        memory_usage_percent: Option<f64> => Spec::gauge("%", PERCENT)
            .export(Family::gauge(140, "gpuwatch_host_memory_usage_percent", "Host memory used, MemTotal - MemAvailable (in %).")),
        /// Root filesystem used.
        disk_used: Option<i64> => Spec::gauge("bytes", NonNegative),
        /// Root filesystem available to non-root users.
        disk_available: Option<i64> => Spec::gauge("bytes", NonNegative)
            .export(Family::gauge(60, "node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.")),
        /// Root filesystem used of its size.
        disk_usage_percent: Option<f64> => Spec::gauge("%", PERCENT)
            .export(Family::gauge(150, "gpuwatch_host_disk_usage_percent", "Root filesystem used (in %).")),
        /// Bytes read, all whole disks, since boot.
        disk_io_read_bytes: Option<i64> => Spec::counter("bytes", NonNegative)
            .export(Family::counter(70, "node_disk_read_bytes_total", "The total number of bytes read successfully, all whole disks.")),
        /// Bytes written, all whole disks, since boot.
        disk_io_write_bytes: Option<i64> => Spec::counter("bytes", NonNegative)
            .export(Family::counter(80, "node_disk_written_bytes_total", "The total number of bytes written successfully, all whole disks.")),
        /// Bytes received, all interfaces but lo, since boot.
        network_rx_bytes: Option<i64> => Spec::counter("bytes", NonNegative)
            .export(Family::counter(90, "node_network_receive_bytes_total", "Network device statistic receive_bytes, all interfaces but lo.")),
        /// Bytes sent, all interfaces but lo, since boot.
        network_tx_bytes: Option<i64> => Spec::counter("bytes", NonNegative)
            .export(Family::counter(100, "node_network_transmit_bytes_total", "Network device statistic transmit_bytes, all interfaces but lo.")),
        /// Packets received since boot.
        network_rx_packets: Option<i64> => Spec::counter("packets", NonNegative)
            .export(Family::counter(110, "node_network_receive_packets_total", "Network device statistic receive_packets, all interfaces but lo.")),
        /// Packets sent since boot.
        network_tx_packets: Option<i64> => Spec::counter("packets", NonNegative)
            .export(Family::counter(120, "node_network_transmit_packets_total", "Network device statistic transmit_packets, all interfaces but lo.")),
        /// Average utilisation of the host's GPUs.
        gpu_avg_utilization: Option<f64> => Spec::gauge("%", PERCENT),
        /// Average framebuffer used of the host's GPUs.
        gpu_avg_memory_used: Option<i64> => Spec::gauge("bytes", NonNegative),
        /// Average core temperature of the host's GPUs.
        gpu_avg_temperature: Option<f64> => Spec::gauge("°C", Within(-50.0, 150.0)),
        /// Average power draw of the host's GPUs.
        gpu_avg_power: Option<f64> => Spec::gauge("W", Within(0.0, 5000.0)),
    }
}
