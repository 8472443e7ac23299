use std::time::Duration;

use serde::Deserialize;

/// `[collector]` of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Seconds between collections.
    pub interval_secs: u64,
    /// Where samples come from.
    pub source: SourceKind,
    /// Batches kept in memory while the sink is down; the oldest is dropped beyond.
    pub max_pending_batches: usize,
    /// The simulated fleet.
    pub sim: SimConfig,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            interval_secs: 10,
            source: SourceKind::Sim,
            max_pending_batches: 360,
            sim: SimConfig::default(),
        }
    }
}

/// Which source the collector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The deterministic simulated fleet.
    Sim,
}

/// `[collector.sim]`: the simulated fleet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Number of hosts.
    pub hosts: u32,
    /// GPUs per host.
    pub gpus_per_host: u32,
    /// Seed: the same seed and times give the same samples.
    pub seed: u64,
    /// Whether GPU 0 of host 0 runs hot (above the 80/85 °C thresholds).
    pub hot_gpu: bool,
    /// Seconds after start when the last host goes silent; 0 keeps it alive.
    pub silent_host_after_secs: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            hosts: 4,
            gpus_per_host: 8,
            seed: 42,
            hot_gpu: true,
            silent_host_after_secs: 600,
        }
    }
}

impl CollectorConfig {
    /// The interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    /// Every problem, as `key: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !(1..=3600).contains(&self.interval_secs) {
            e.push(format!(
                "collector.interval_secs: must be between 1 and 3600, got {}",
                self.interval_secs
            ));
        }
        if self.max_pending_batches == 0 {
            e.push("collector.max_pending_batches: must be at least 1".into());
        }
        if !(1..=10_000).contains(&self.sim.hosts) {
            e.push(format!(
                "collector.sim.hosts: must be between 1 and 10000, got {}",
                self.sim.hosts
            ));
        }
        if !(1..=64).contains(&self.sim.gpus_per_host) {
            e.push(format!(
                "collector.sim.gpus_per_host: must be between 1 and 64, got {}",
                self.sim.gpus_per_host
            ));
        }
        e
    }
}
