//! gpuwatch exporter: the Prometheus /metrics endpoint with dcgm-exporter and node_exporter names.
//!
//! Empty on purpose: this role arrives with its own issue, and until then
//! the crate holds nothing rather than a pretend implementation.
#![forbid(unsafe_code)]
