//! `environment_metrics`: one sample of one environment (container),
//! exported labelled with its customer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use super::Range::{NonNegative, Within};
use super::{Family, Spec};

crate::samples! {
    /// One sample of one environment (`environment_metrics`).
    pub struct EnvSample in "environment_metrics" {
        /// `environments.id`.
        env_id: String => Spec::KEY,
        /// The host the environment runs on (the distribution column, so
        /// stored NOT NULL). An agent may leave it out of a one-host batch
        /// (empty here): the ingest path fills in the batch's host.
        #[serde(default, deserialize_with = "null_as_empty", skip_serializing_if = "String::is_empty")]
        host_id: String => Spec::CARRY,
        /// Sample time, UTC.
        collected_at: DateTime<Utc> => Spec::TIME,
        /// CPU usage in % of one core: relative to the allocation, so it may
        /// exceed 100 when bursting.
        cpu_usage_percent: Option<f64> => Spec::gauge("% of one core", Within(0.0, 100_000.0))
            .export(Family::gauge(10, "gpuwatch_environment_cpu_usage_percent", "Environment CPU usage (in % of one core).")),
        /// Memory used.
        memory_used: Option<i64> => Spec::gauge("bytes", NonNegative)
            .export(Family::gauge(20, "gpuwatch_environment_memory_used_bytes", "Environment memory used in bytes.")),
        /// Memory used of its limit.
        memory_usage_percent: Option<f64> => Spec::gauge("%", Within(0.0, 100.0))
            .export(Family::gauge(30, "gpuwatch_environment_memory_usage_percent", "Environment memory used (in % of its limit).")),
        /// Average utilisation of the environment's GPUs.
        gpu_usage_percent: Option<f64> => Spec::gauge("%", Within(0.0, 100.0))
            .export(Family::gauge(40, "gpuwatch_environment_gpu_usage_percent", "Average utilisation of the environment's GPUs (in %).")),
        /// GPU memory held by the environment's processes.
        gpu_memory_used: Option<i64> => Spec::gauge("bytes", NonNegative)
            .export(Family::gauge(50, "gpuwatch_environment_gpu_memory_used_bytes", "GPU memory used by the environment's processes in bytes.")),
        /// Bytes received since the environment started.
        network_rx_bytes: Option<i64> => Spec::counter("bytes", NonNegative)
            .export(Family::counter(60, "gpuwatch_environment_network_receive_bytes_total", "Bytes received by the environment since it started.")),
        /// Bytes sent since the environment started.
        network_tx_bytes: Option<i64> => Spec::counter("bytes", NonNegative)
            .export(Family::counter(70, "gpuwatch_environment_network_transmit_bytes_total", "Bytes sent by the environment since it started.")),
    }
}

/// A missing or `null` host (agents before migration 0032 sent `null`) as "".
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::EnvSample;

    #[test]
    fn a_missing_or_null_host_reads_as_empty_and_stays_out_of_the_json() {
        for host in ["", r#","host_id":null"#] {
            let json = format!(r#"{{"env_id":"e","collected_at":"2026-01-01T00:00:00Z"{host}}}"#);
            let s: EnvSample = serde_json::from_str(&json).unwrap();
            assert_eq!(s.host_id, "");
            assert!(!serde_json::to_string(&s).unwrap().contains("host_id"));
        }
        let s: EnvSample = serde_json::from_str(
            r#"{"env_id":"e","host_id":"h","collected_at":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(s.host_id, "h");
    }
}
