//! Rows of the three raw metric tables. Field names are the column names;
//! `None` stores NULL (the source could not read that field).
// Fields are the columns, documented once in migrations/0007_monitoring.sql.
#![allow(missing_docs)]

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::{ToSql, Type};

/// A row type the [`crate::BatchWriter`] can COPY.
pub trait Sample: Send + Sync + 'static {
    /// Target table.
    const TABLE: &'static str;
    /// Columns, in the order [`Sample::values`] yields them.
    const COLUMNS: &'static [&'static str];
    /// Postgres types of [`Sample::COLUMNS`], for binary COPY.
    const TYPES: &'static [Type];
    /// The sample's time (partition key).
    fn collected_at(&self) -> DateTime<Utc>;
    /// Column values in [`Sample::COLUMNS`] order.
    fn values(&self) -> Vec<&(dyn ToSql + Sync)>;
}

/// One sample of one GPU (`gpu_metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GpuSample {
    pub gpu_id: i64,
    pub host_id: String,
    pub collected_at: DateTime<Utc>,
    pub utilization_percent: Option<f64>,
    pub memory_used: Option<i64>,
    pub memory_usage_percent: Option<f64>,
    pub temperature: Option<f64>,
    pub power_draw: Option<f64>,
    pub fan_speed_percent: Option<f64>,
    pub sm_clock: Option<i32>,
    pub memory_clock: Option<i32>,
    pub process_count: Option<i32>,
    pub memory_copy_util_percent: Option<f64>,
    pub memory_free: Option<i64>,
    pub memory_temperature: Option<f64>,
    pub energy_consumed_mj: Option<i64>,
    pub pcie_tx_bytes_per_sec: Option<i64>,
    pub pcie_rx_bytes_per_sec: Option<i64>,
    pub ecc_sbe_volatile: Option<i64>,
    pub ecc_dbe_volatile: Option<i64>,
    pub xid_last: Option<i32>,
    pub throttle_reasons: Option<i64>,
}

impl Sample for GpuSample {
    const TABLE: &'static str = "gpu_metrics";
    const COLUMNS: &'static [&'static str] = &[
        "gpu_id",
        "host_id",
        "collected_at",
        "utilization_percent",
        "memory_used",
        "memory_usage_percent",
        "temperature",
        "power_draw",
        "fan_speed_percent",
        "sm_clock",
        "memory_clock",
        "process_count",
        "memory_copy_util_percent",
        "memory_free",
        "memory_temperature",
        "energy_consumed_mj",
        "pcie_tx_bytes_per_sec",
        "pcie_rx_bytes_per_sec",
        "ecc_sbe_volatile",
        "ecc_dbe_volatile",
        "xid_last",
        "throttle_reasons",
    ];
    const TYPES: &'static [Type] = &[
        Type::INT8,
        Type::VARCHAR,
        Type::TIMESTAMPTZ,
        Type::FLOAT8,
        Type::INT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::INT4,
        Type::INT4,
        Type::INT4,
        Type::FLOAT8,
        Type::INT8,
        Type::FLOAT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT4,
        Type::INT8,
    ];
    fn collected_at(&self) -> DateTime<Utc> {
        self.collected_at
    }
    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.gpu_id,
            &self.host_id,
            &self.collected_at,
            &self.utilization_percent,
            &self.memory_used,
            &self.memory_usage_percent,
            &self.temperature,
            &self.power_draw,
            &self.fan_speed_percent,
            &self.sm_clock,
            &self.memory_clock,
            &self.process_count,
            &self.memory_copy_util_percent,
            &self.memory_free,
            &self.memory_temperature,
            &self.energy_consumed_mj,
            &self.pcie_tx_bytes_per_sec,
            &self.pcie_rx_bytes_per_sec,
            &self.ecc_sbe_volatile,
            &self.ecc_dbe_volatile,
            &self.xid_last,
            &self.throttle_reasons,
        ]
    }
}

/// One sample of one host (`host_metrics`). Byte and packet fields are
/// counters since boot, as node_exporter reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HostSample {
    pub host_id: String,
    pub collected_at: DateTime<Utc>,
    pub cpu_usage_percent: Option<f64>,
    pub cpu_load_1m: Option<f64>,
    pub cpu_load_5m: Option<f64>,
    pub cpu_load_15m: Option<f64>,
    pub memory_used: Option<i64>,
    pub memory_available: Option<i64>,
    pub memory_usage_percent: Option<f64>,
    pub disk_used: Option<i64>,
    pub disk_available: Option<i64>,
    pub disk_usage_percent: Option<f64>,
    pub disk_io_read_bytes: Option<i64>,
    pub disk_io_write_bytes: Option<i64>,
    pub network_rx_bytes: Option<i64>,
    pub network_tx_bytes: Option<i64>,
    pub network_rx_packets: Option<i64>,
    pub network_tx_packets: Option<i64>,
    pub gpu_avg_utilization: Option<f64>,
    pub gpu_avg_memory_used: Option<i64>,
    pub gpu_avg_temperature: Option<f64>,
    pub gpu_avg_power: Option<f64>,
}

impl Sample for HostSample {
    const TABLE: &'static str = "host_metrics";
    const COLUMNS: &'static [&'static str] = &[
        "host_id",
        "collected_at",
        "cpu_usage_percent",
        "cpu_load_1m",
        "cpu_load_5m",
        "cpu_load_15m",
        "memory_used",
        "memory_available",
        "memory_usage_percent",
        "disk_used",
        "disk_available",
        "disk_usage_percent",
        "disk_io_read_bytes",
        "disk_io_write_bytes",
        "network_rx_bytes",
        "network_tx_bytes",
        "network_rx_packets",
        "network_tx_packets",
        "gpu_avg_utilization",
        "gpu_avg_memory_used",
        "gpu_avg_temperature",
        "gpu_avg_power",
    ];
    const TYPES: &'static [Type] = &[
        Type::VARCHAR,
        Type::TIMESTAMPTZ,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::INT8,
        Type::INT8,
        Type::FLOAT8,
        Type::INT8,
        Type::INT8,
        Type::FLOAT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::FLOAT8,
        Type::INT8,
        Type::FLOAT8,
        Type::FLOAT8,
    ];
    fn collected_at(&self) -> DateTime<Utc> {
        self.collected_at
    }
    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.host_id,
            &self.collected_at,
            &self.cpu_usage_percent,
            &self.cpu_load_1m,
            &self.cpu_load_5m,
            &self.cpu_load_15m,
            &self.memory_used,
            &self.memory_available,
            &self.memory_usage_percent,
            &self.disk_used,
            &self.disk_available,
            &self.disk_usage_percent,
            &self.disk_io_read_bytes,
            &self.disk_io_write_bytes,
            &self.network_rx_bytes,
            &self.network_tx_bytes,
            &self.network_rx_packets,
            &self.network_tx_packets,
            &self.gpu_avg_utilization,
            &self.gpu_avg_memory_used,
            &self.gpu_avg_temperature,
            &self.gpu_avg_power,
        ]
    }
}

/// One sample of one environment (`environment_metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EnvSample {
    pub env_id: String,
    pub host_id: Option<String>,
    pub collected_at: DateTime<Utc>,
    pub cpu_usage_percent: Option<f64>,
    pub memory_used: Option<i64>,
    pub memory_usage_percent: Option<f64>,
    pub gpu_usage_percent: Option<f64>,
    pub gpu_memory_used: Option<i64>,
    pub network_rx_bytes: Option<i64>,
    pub network_tx_bytes: Option<i64>,
}

impl Sample for EnvSample {
    const TABLE: &'static str = "environment_metrics";
    const COLUMNS: &'static [&'static str] = &[
        "env_id",
        "host_id",
        "collected_at",
        "cpu_usage_percent",
        "memory_used",
        "memory_usage_percent",
        "gpu_usage_percent",
        "gpu_memory_used",
        "network_rx_bytes",
        "network_tx_bytes",
    ];
    const TYPES: &'static [Type] = &[
        Type::VARCHAR,
        Type::VARCHAR,
        Type::TIMESTAMPTZ,
        Type::FLOAT8,
        Type::INT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
    ];
    fn collected_at(&self) -> DateTime<Utc> {
        self.collected_at
    }
    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.env_id,
            &self.host_id,
            &self.collected_at,
            &self.cpu_usage_percent,
            &self.memory_used,
            &self.memory_usage_percent,
            &self.gpu_usage_percent,
            &self.gpu_memory_used,
            &self.network_rx_bytes,
            &self.network_tx_bytes,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_width<S: Sample + Default>() {
        let s = S::default();
        assert_eq!(S::COLUMNS.len(), S::TYPES.len(), "{}", S::TABLE);
        assert_eq!(S::COLUMNS.len(), s.values().len(), "{}", S::TABLE);
    }

    #[test]
    fn columns_types_and_values_line_up() {
        same_width::<GpuSample>();
        same_width::<HostSample>();
        same_width::<EnvSample>();
    }
}
