//! Range and consistency checks of an ingest payload. Each problem is one
//! line naming the field by its JSON path and what is wrong with it; at most
//! [`MAX_PROBLEMS`] are listed.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use gpuwatch_store::IngestPayload;

use crate::ingest::window;
use crate::ApiConfig;

/// Problems listed per rejected payload.
pub const MAX_PROBLEMS: usize = 50;

struct Checker {
    problems: Vec<String>,
    total: usize,
}

impl Checker {
    fn fail(&mut self, path: &str, what: String) {
        self.total += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(format!("{path}: {what}"));
        }
    }

    fn float(&mut self, path: &str, name: &str, v: Option<f64>, lo: f64, hi: f64) {
        match v {
            Some(x) if !x.is_finite() => self.fail(
                &format!("{path}.{name}"),
                format!("{x} is not a finite number"),
            ),
            Some(x) if x < lo || x > hi => self.fail(
                &format!("{path}.{name}"),
                format!("{x} is outside [{lo}, {hi}]"),
            ),
            _ => {}
        }
    }

    fn non_negative(&mut self, path: &str, name: &str, v: Option<i64>) {
        if let Some(x) = v.filter(|x| *x < 0) {
            self.fail(&format!("{path}.{name}"), format!("{x} is negative"));
        }
    }

    fn time(
        &mut self,
        path: &str,
        t: DateTime<Utc>,
        (oldest, newest): (DateTime<Utc>, DateTime<Utc>),
    ) {
        if t > newest {
            self.fail(
                &format!("{path}.collected_at"),
                format!("{t} is in the future (limit {newest}); check the agent's clock"),
            );
        } else if t < oldest {
            self.fail(
                &format!("{path}.collected_at"),
                format!("{t} is older than the {oldest} limit (api.max_age_days)"),
            );
        }
    }

    fn host(&mut self, path: &str, got: &str, want: &str) {
        if got != want {
            self.fail(
                &format!("{path}.host_id"),
                format!("{got:?} is not the payload's host {want:?}"),
            );
        }
    }
}

/// Every problem of `p`, empty when it may be stored.
pub fn check_payload(p: &IngestPayload, cfg: &ApiConfig, now: DateTime<Utc>) -> Vec<String> {
    let mut c = Checker {
        problems: Vec::new(),
        total: 0,
    };
    let host = p.host.id.as_str();
    if host.is_empty() || host.len() > 64 {
        c.fail("host.id", "must be 1 to 64 characters".into());
    }
    let n = p.batch.len();
    if n > cfg.max_samples {
        c.fail(
            "batch",
            format!(
                "{n} samples exceed the limit of {} (api.max_samples); send smaller batches",
                cfg.max_samples
            ),
        );
    }
    let mut uuids = HashSet::new();
    for (i, g) in p.gpus.iter().enumerate() {
        let path = format!("gpus[{i}]");
        c.host(&path, &g.host_id, host);
        if g.uuid.is_empty() || !uuids.insert(g.uuid.as_str()) {
            c.fail(
                &format!("{path}.uuid"),
                format!("{:?} is empty or repeated", g.uuid),
            );
        }
        if !(0..1024).contains(&g.gpu_index) {
            c.fail(
                &format!("{path}.gpu_index"),
                format!("{} is outside [0, 1023]", g.gpu_index),
            );
        }
        c.non_negative(&path, "memory_total", Some(g.memory_total));
    }
    let win = window(cfg, now);
    for (i, r) in p.batch.gpu.iter().enumerate() {
        let path = format!("batch.gpu[{i}]");
        if !uuids.contains(r.uuid.as_str()) {
            c.fail(
                &format!("{path}.uuid"),
                format!("{:?} is not among the payload's gpus", r.uuid),
            );
        }
        let s = &r.sample;
        let path = format!("{path}.sample");
        c.host(&path, &s.host_id, host);
        c.time(&path, s.collected_at, win);
        for (name, v) in [
            ("utilization_percent", s.utilization_percent),
            ("memory_usage_percent", s.memory_usage_percent),
            ("fan_speed_percent", s.fan_speed_percent),
            ("memory_copy_util_percent", s.memory_copy_util_percent),
        ] {
            c.float(&path, name, v, 0.0, 100.0);
        }
        c.float(&path, "temperature", s.temperature, -50.0, 150.0);
        c.float(
            &path,
            "memory_temperature",
            s.memory_temperature,
            -50.0,
            150.0,
        );
        c.float(&path, "power_draw", s.power_draw, 0.0, 5000.0);
        for (name, v) in [
            ("memory_used", s.memory_used),
            ("memory_free", s.memory_free),
            ("energy_consumed_mj", s.energy_consumed_mj),
            ("pcie_tx_bytes_per_sec", s.pcie_tx_bytes_per_sec),
            ("pcie_rx_bytes_per_sec", s.pcie_rx_bytes_per_sec),
            ("ecc_sbe_volatile", s.ecc_sbe_volatile),
            ("ecc_dbe_volatile", s.ecc_dbe_volatile),
            ("throttle_reasons", s.throttle_reasons),
            ("sm_clock", s.sm_clock.map(i64::from)),
            ("memory_clock", s.memory_clock.map(i64::from)),
            ("process_count", s.process_count.map(i64::from)),
            ("xid_last", s.xid_last.map(i64::from)),
        ] {
            c.non_negative(&path, name, v);
        }
    }
    for (i, s) in p.batch.host.iter().enumerate() {
        let path = format!("batch.host[{i}]");
        c.host(&path, &s.host_id, host);
        c.time(&path, s.collected_at, win);
        for (name, v) in [
            ("cpu_usage_percent", s.cpu_usage_percent),
            ("memory_usage_percent", s.memory_usage_percent),
            ("disk_usage_percent", s.disk_usage_percent),
            ("gpu_avg_utilization", s.gpu_avg_utilization),
        ] {
            c.float(&path, name, v, 0.0, 100.0);
        }
        for (name, v) in [
            ("cpu_load_1m", s.cpu_load_1m),
            ("cpu_load_5m", s.cpu_load_5m),
            ("cpu_load_15m", s.cpu_load_15m),
        ] {
            c.float(&path, name, v, 0.0, 1.0e6);
        }
        c.float(
            &path,
            "gpu_avg_temperature",
            s.gpu_avg_temperature,
            -50.0,
            150.0,
        );
        c.float(&path, "gpu_avg_power", s.gpu_avg_power, 0.0, 5000.0);
        for (name, v) in [
            ("memory_used", s.memory_used),
            ("memory_available", s.memory_available),
            ("disk_used", s.disk_used),
            ("disk_available", s.disk_available),
            ("disk_io_read_bytes", s.disk_io_read_bytes),
            ("disk_io_write_bytes", s.disk_io_write_bytes),
            ("network_rx_bytes", s.network_rx_bytes),
            ("network_tx_bytes", s.network_tx_bytes),
            ("network_rx_packets", s.network_rx_packets),
            ("network_tx_packets", s.network_tx_packets),
            ("gpu_avg_memory_used", s.gpu_avg_memory_used),
        ] {
            c.non_negative(&path, name, v);
        }
    }
    for (i, s) in p.batch.env.iter().enumerate() {
        let path = format!("batch.env[{i}]");
        if s.env_id.is_empty() || s.env_id.len() > 64 {
            c.fail(
                &format!("{path}.env_id"),
                "must be 1 to 64 characters".into(),
            );
        }
        if let Some(h) = &s.host_id {
            c.host(&path, h, host);
        }
        c.time(&path, s.collected_at, win);
        // CPU % is relative to the allocation and may exceed 100 when bursting.
        c.float(
            &path,
            "cpu_usage_percent",
            s.cpu_usage_percent,
            0.0,
            100_000.0,
        );
        c.float(
            &path,
            "memory_usage_percent",
            s.memory_usage_percent,
            0.0,
            100.0,
        );
        c.float(&path, "gpu_usage_percent", s.gpu_usage_percent, 0.0, 100.0);
        for (name, v) in [
            ("memory_used", s.memory_used),
            ("gpu_memory_used", s.gpu_memory_used),
            ("network_rx_bytes", s.network_rx_bytes),
            ("network_tx_bytes", s.network_tx_bytes),
        ] {
            c.non_negative(&path, name, v);
        }
    }
    if c.total > c.problems.len() {
        let more = c.total - c.problems.len();
        c.problems.push(format!("... and {more} more"));
    }
    c.problems
}
