//! The hosts one collector reports for: the simulated fleet, or this machine
//! (/proc and statfs, NVML, cgroup v2).

use chrono::{DateTime, Utc};
use gpuwatch_store::inventory::{GpuInfo, HostInfo};
use gpuwatch_store::{Batch, GpuReading, HostSample};

use crate::sources::cgroup::{gpu_utilisation, CgroupSource, EnvTarget};
use crate::sources::hostinfo::host_info;
use crate::sources::nvml::{GpuProcess, GpuSource};
use crate::sources::procfs::{ProcfsConfig, ProcfsSource};
use crate::sources::sim::SimFleet;
use crate::sources::SourceError;
use crate::{CollectorConfig, SourceKind};

/// The inventory of the hosts a collector reports for: each host with its GPUs.
pub type Inventory = Vec<(HostInfo, Vec<GpuInfo>)>;

/// What a collector samples.
pub enum Fleet {
    /// N simulated hosts.
    Sim(SimFleet),
    /// This machine.
    Host(Box<HostAgent>),
}

/// The sources of one real host, with the state they keep between ticks
/// (CPU counters for rates, XID events, missing-cgroup warnings).
pub struct HostAgent {
    id: Option<String>,
    labels: serde_json::Value,
    procfs_cfg: ProcfsConfig,
    procfs: ProcfsSource,
    gpu: GpuSource,
    cgroup: CgroupSource,
    envs: Vec<EnvTarget>,
    host: Option<HostInfo>,
    /// The GPU processes of the last collection (the agent's /metrics
    /// labels a GPU with the pod of its process).
    procs: Vec<GpuProcess>,
}

impl Fleet {
    /// The fleet the config asks for.
    pub fn new(cfg: &CollectorConfig) -> Fleet {
        match cfg.source {
            SourceKind::Sim => Fleet::Sim(SimFleet::new(cfg.sim.clone(), Utc::now())),
            SourceKind::Host => Fleet::host_with(cfg, GpuSource::open()),
        }
    }

    /// This machine with a GPU source of the caller's (benchmarks and tests
    /// drive the host path through a `GpuBackend` of their own).
    pub fn host_with(cfg: &CollectorConfig, gpu: GpuSource) -> Fleet {
        Fleet::Host(Box::new(HostAgent {
            id: cfg.host_id.clone(),
            labels: serde_json::to_value(&cfg.labels).unwrap_or_default(),
            procfs_cfg: cfg.host.clone(),
            procfs: ProcfsSource::new(cfg.host.clone()),
            gpu,
            cgroup: CgroupSource::new(cfg.cgroup.clone()),
            envs: Vec::new(),
            host: None,
            procs: Vec::new(),
        }))
    }

    /// Hosts and GPUs, for registration.
    pub fn inventory(&mut self) -> Result<Inventory, SourceError> {
        match self {
            Fleet::Sim(f) => {
                let gpus = f.gpus();
                Ok(f.hosts()
                    .into_iter()
                    .map(|h| {
                        let mine = gpus.iter().filter(|g| g.host_id == h.id).cloned().collect();
                        (h, mine)
                    })
                    .collect())
            }
            Fleet::Host(a) => a.inventory(),
        }
    }

    /// The host id environments are looked up for (the real host only).
    pub fn host_id(&self) -> Option<&str> {
        match self {
            Fleet::Host(a) => a.host.as_ref().map(|h| h.id.as_str()),
            Fleet::Sim(_) => None,
        }
    }

    /// The GPU compute processes of the last collection (none for the
    /// simulated fleet).
    pub fn gpu_processes(&self) -> &[GpuProcess] {
        match self {
            Fleet::Host(a) => &a.procs,
            Fleet::Sim(_) => &[],
        }
    }

    /// Replaces the environments the cgroup source samples.
    pub fn set_environments(&mut self, envs: Vec<EnvTarget>) {
        if let Fleet::Host(a) = self {
            a.envs = envs;
        }
    }

    /// One collection at `at`.
    pub fn collect(&mut self, at: DateTime<Utc>) -> Batch {
        match self {
            Fleet::Sim(f) => {
                let (gpu, host) = f.sample(at);
                let env = f.env_samples(at, &gpu);
                Batch { gpu, host, env }
            }
            Fleet::Host(a) => a.collect(at),
        }
    }
}

impl HostAgent {
    fn inventory(&mut self) -> Result<Inventory, SourceError> {
        let probe_id = self.host.as_ref().map(|h| h.id.clone());
        let gpus_for = probe_id.clone().unwrap_or_default();
        let mut gpus = self.gpu.inventory(&gpus_for);
        let host = host_info(
            self.id.as_deref(),
            None,
            self.labels.clone(),
            gpus.len() as i32,
            &self.procfs_cfg,
        )?;
        if probe_id.as_deref() != Some(host.id.as_str()) {
            gpus = self.gpu.inventory(&host.id);
        }
        self.host = Some(host.clone());
        Ok(vec![(host, gpus)])
    }

    fn collect(&mut self, at: DateTime<Utc>) -> Batch {
        let Some(id) = self.host.as_ref().map(|h| h.id.clone()) else {
            // Not registered yet: the id comes from the inventory.
            if let Err(e) = self.inventory() {
                tracing::error!(error = %e, "cannot read this host's inventory");
                return Batch::default();
            }
            return self.collect(at);
        };
        let (gpu, procs) = self.gpu.sample(&id, at);
        let mut host = Vec::new();
        match self.procfs.sample(&id, at) {
            Ok(mut h) => {
                fill_gpu_averages(&mut h, &gpu);
                host.push(h);
            }
            Err(e) => {
                tracing::error!(error = %e, "host sample failed; GPU and environment samples still go out")
            }
        }
        let env = self
            .cgroup
            .sample(&self.envs, &procs, &gpu_utilisation(&gpu), &id, at);
        self.procs = procs;
        Batch { gpu, host, env }
    }
}

/// The gpu_avg_* columns of `host_metrics`: plain averages over the GPUs
/// that reported each field.
fn fill_gpu_averages(h: &mut HostSample, gpus: &[GpuReading]) {
    fn avg(vals: impl Iterator<Item = f64>) -> Option<f64> {
        let (n, sum) = vals.fold((0u32, 0.0), |(n, s), v| (n + 1, s + v));
        (n > 0).then(|| sum / f64::from(n))
    }
    h.gpu_avg_utilization = avg(gpus.iter().filter_map(|g| g.sample.utilization_percent));
    h.gpu_avg_temperature = avg(gpus.iter().filter_map(|g| g.sample.temperature));
    h.gpu_avg_power = avg(gpus.iter().filter_map(|g| g.sample.power_draw));
    h.gpu_avg_memory_used = avg(gpus
        .iter()
        .filter_map(|g| g.sample.memory_used)
        .map(|m| m as f64))
    .map(|m| m.round() as i64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpuwatch_store::GpuSample;

    #[test]
    fn gpu_averages_skip_gpus_without_the_field() {
        let g = |u: Option<f64>, m: Option<i64>| GpuReading {
            uuid: "x".into(),
            sample: GpuSample {
                utilization_percent: u,
                memory_used: m,
                ..Default::default()
            },
        };
        let mut h = HostSample::default();
        fill_gpu_averages(
            &mut h,
            &[
                g(Some(10.0), Some(100)),
                g(None, Some(201)),
                g(Some(30.0), None),
            ],
        );
        assert_eq!(h.gpu_avg_utilization, Some(20.0));
        assert_eq!(h.gpu_avg_memory_used, Some(151));
        assert_eq!(h.gpu_avg_power, None);
        fill_gpu_averages(&mut h, &[]);
        assert_eq!(h.gpu_avg_utilization, None);
    }
}
