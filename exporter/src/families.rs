//! What `/metrics` exports, derived from the store's sample catalogue: each
//! column with a family there is one family here, in the names, types,
//! units and help texts of dcgm-exporter's default counters and of
//! node_exporter, so their Grafana dashboards and recording rules read
//! gpuwatch unchanged. Families are listed in the catalogue's rank order.
//!
//! Each family is one SQL expression over the latest raw sample (`m.`) of a
//! series, cast to `double precision` so the snapshot holds one numeric
//! column per family.

use std::sync::LazyLock;

use gpuwatch_store::catalogue::{self, Column, Value};
use gpuwatch_store::{EnvSample, GpuSample, HostSample, Sample};

/// One metric family.
#[derive(Debug, Clone)]
pub struct Family {
    /// Metric name.
    pub name: &'static str,
    /// `gauge` or `counter`.
    pub kind: &'static str,
    /// `# HELP` text.
    pub help: &'static str,
    /// SQL over the latest sample `m`, as double precision.
    pub expr: String,
    /// Where the value comes from in a sample held in memory (the agent's
    /// own `/metrics`): the column's position in the table's catalogue and
    /// the conversion. `None` for a family no single sample holds (XID).
    pub sample: Option<(usize, Value)>,
}

/// The exported families of a table's columns, in rank order.
fn of(columns: &'static [Column]) -> Vec<Family> {
    let mut v: Vec<(u16, Family)> = columns
        .iter()
        .enumerate()
        .filter_map(|(column, c)| {
            let f: catalogue::Family = c.spec.export?;
            let expr = match f.value {
                Value::Column => format!("m.{}", c.name),
                Value::Divided(d) => format!("m.{} / {d}", c.name),
                Value::Sql(sql) => sql.to_string(),
            };
            Some((
                f.rank,
                Family {
                    name: f.name,
                    kind: f.kind.name(),
                    help: f.help,
                    expr,
                    sample: Some((column, f.value)),
                },
            ))
        })
        .collect();
    v.sort_by_key(|(rank, _)| *rank);
    v.into_iter().map(|(_, f)| f).collect()
}

/// dcgm-exporter's default counters that NVML gives us. Framebuffer figures
/// are whole MiB as DCGM reports them; PCIe is the rate NVML samples.
pub static GPU: LazyLock<Vec<Family>> = LazyLock::new(|| of(GpuSample::CATALOGUE));

/// XID is special: DCGM reports the last XID seen, sticky, while a sample
/// holds only the XID of its own interval (NULL if none). The exporter
/// remembers the last one per GPU across refreshes.
pub static XID: LazyLock<Family> = LazyLock::new(|| Family {
    name: "DCGM_FI_DEV_XID_ERRORS",
    kind: "gauge",
    help: "Value of the last XID error encountered.",
    expr: String::new(),
    sample: None,
});

/// node_exporter's names for what the host source measures the same way.
/// Totals are the sums node_exporter's per-device series add up to.
pub static HOST: LazyLock<Vec<Family>> = LazyLock::new(|| of(HostSample::CATALOGUE));

/// Environments (containers), labelled with their customer.
pub static ENV: LazyLock<Vec<Family>> = LazyLock::new(|| of(EnvSample::CATALOGUE));

/// `expr1::float8, expr2::float8, …` for a SELECT list.
pub fn select_list(families: &[Family]) -> String {
    families
        .iter()
        .map(|f| format!("({})::float8", f.expr))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/metrics` as it was before the families came from the catalogue,
    /// plus the encoder and decoder utilisation in dcgm-exporter's place
    /// for them: names and order are what dashboards and recording rules read.
    #[test]
    fn families_keep_their_names_order_and_expressions() {
        let names = |f: &[Family]| f.iter().map(|f| f.name).collect::<Vec<_>>();
        assert_eq!(
            names(&GPU),
            [
                "DCGM_FI_DEV_SM_CLOCK",
                "DCGM_FI_DEV_MEM_CLOCK",
                "DCGM_FI_DEV_MEMORY_TEMP",
                "DCGM_FI_DEV_GPU_TEMP",
                "DCGM_FI_DEV_POWER_USAGE",
                "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                "DCGM_FI_DEV_GPU_UTIL",
                "DCGM_FI_DEV_MEM_COPY_UTIL",
                "DCGM_FI_DEV_ENC_UTIL",
                "DCGM_FI_DEV_DEC_UTIL",
                "DCGM_FI_DEV_FB_FREE",
                "DCGM_FI_DEV_FB_USED",
                "DCGM_FI_DEV_FAN_SPEED",
                "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
                "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
                "DCGM_FI_PROF_PCIE_TX_BYTES",
                "DCGM_FI_PROF_PCIE_RX_BYTES",
                "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
                "DCGM_FI_DEV_MEMORY_USAGE_PERCENT",
                "DCGM_FI_DEV_PROCESS_COUNT",
            ]
        );
        assert_eq!(
            names(&HOST),
            [
                "node_load1",
                "node_load5",
                "node_load15",
                "node_memory_MemAvailable_bytes",
                "node_memory_MemTotal_bytes",
                "node_filesystem_avail_bytes",
                "node_disk_read_bytes_total",
                "node_disk_written_bytes_total",
                "node_network_receive_bytes_total",
                "node_network_transmit_bytes_total",
                "node_network_receive_packets_total",
                "node_network_transmit_packets_total",
                "gpuwatch_host_cpu_usage_percent",
                "gpuwatch_host_memory_usage_percent",
                "gpuwatch_host_disk_usage_percent",
            ]
        );
        assert_eq!(
            names(&ENV),
            [
                "gpuwatch_environment_cpu_usage_percent",
                "gpuwatch_environment_memory_used_bytes",
                "gpuwatch_environment_memory_usage_percent",
                "gpuwatch_environment_gpu_usage_percent",
                "gpuwatch_environment_gpu_memory_used_bytes",
                "gpuwatch_environment_network_receive_bytes_total",
                "gpuwatch_environment_network_transmit_bytes_total",
            ]
        );
        let expr = |f: &[Family], n: &str| f.iter().find(|f| f.name == n).map(|f| f.expr.clone());
        assert_eq!(
            expr(&GPU, "DCGM_FI_DEV_FB_USED").as_deref(),
            Some("m.memory_used / 1048576")
        );
        assert_eq!(
            expr(&HOST, "node_memory_MemTotal_bytes").as_deref(),
            Some("m.memory_used + m.memory_available")
        );
        assert_eq!(
            expr(&GPU, "DCGM_FI_DEV_GPU_TEMP").as_deref(),
            Some("m.temperature")
        );
    }
}
