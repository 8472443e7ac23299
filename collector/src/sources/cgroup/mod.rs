//! Environment (container) metrics from cgroup v1 or v2 and /proc.
//!
//! At start the source finds the host's cgroup [`Layout`] (v2, v1, or
//! hybrid: see [`layout`]), and looks again while an environment's cgroup is
//! missing or none was found. Each [`EnvTarget`] maps to a cgroup: its
//! explicit `cgroup_path`, or [`CgroupConfig::path_pattern`] with
//! `{container_id}` / `{env_id}` filled in, below the hierarchy (below each
//! controller's mount on v1). [`CgroupSource::sample`] reads from that
//! cgroup (the files of each version are listed in [`files`]):
//! - CPU %: CPU time used between two calls ÷ (elapsed × the env's
//!   allocated cores) × 100; the first call has no figure;
//! - memory: memory.current (v1: memory.usage_in_bytes, page cache included
//!   on both, so the figures compare), as % of min(limit, allocation);
//! - network: /proc/<pid>/net/dev of its first process (the container's
//!   network namespace), loopback excluded; counters since the namespace was
//!   made. A container on the host network reports the host's counters;
//! - GPU: see [`attribute`]. An env whose cgroup is missing is skipped with
//!   one warning until it appears.

mod attribute;
mod config;
mod files;
pub mod layout;
pub mod pod;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use gpuwatch_store::EnvSample;

pub use attribute::{attribute, gpu_utilisation, GpuUse};
pub use config::{CgroupConfig, CgroupVersion};
pub use layout::Layout;

use crate::sources::kernel_files::{KernelFiles, ENV_FILES};
use crate::sources::nvml::GpuProcess;
use files::{first_pid, logged};

/// An environment to sample and its allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvTarget {
    /// `environments.id`.
    pub env_id: String,
    /// The container's id, for `{container_id}` in the pattern.
    pub container_id: Option<String>,
    /// Its cgroup below the root; wins over the pattern.
    pub cgroup_path: Option<String>,
    /// Allocated CPU cores (CPU % is of these).
    pub cpu_cores: f64,
    /// Allocated memory, bytes (memory % is of this or memory.max, the lower).
    pub memory_bytes: i64,
}

impl From<gpuwatch_store::placement::PlacedEnvironment> for EnvTarget {
    fn from(p: gpuwatch_store::placement::PlacedEnvironment) -> Self {
        EnvTarget {
            env_id: p.id,
            container_id: p.container_id,
            cgroup_path: p.cgroup_path,
            cpu_cores: f64::from(p.cpu),
            memory_bytes: p.memory,
        }
    }
}

/// The environment source: keeps the host's layout and the last CPU
/// counter per environment.
#[derive(Debug)]
pub struct CgroupSource {
    cfg: CgroupConfig,
    /// Where figures are read; a guess (see [`guess`]) while `found` is false.
    layout: Layout,
    found: bool,
    /// Last CPU time (ns) of each environment and when it was read.
    cpu: HashMap<String, (u64, DateTime<Utc>)>,
    /// Environments whose cgroup was missing, warned about once.
    missing: HashSet<String>,
    /// What rarely changes, per environment (its cgroup, memory limit, a pid
    /// in its network namespace) and per GPU process (its cgroup): re-read
    /// every [`REFRESH_CYCLES`] samples or as soon as a read fails, so a
    /// steady cycle reads three files per environment instead of seven (and
    /// opens one of them: see `files`).
    slow: HashMap<String, Slow>,
    pid_cgroups: HashMap<u32, Option<String>>,
    /// The CPU, memory and net/dev files of each environment, kept open;
    /// closed with the slow facts, so those of environments gone are not kept.
    files: KernelFiles,
    cycle: u64,
}

/// Samples between re-reads of the slowly changing facts (and, while a
/// cgroup is missing, of the layout).
const REFRESH_CYCLES: u64 = 30;

#[derive(Debug, Clone)]
struct Slow {
    path: String,
    memory_limit: Option<u64>,
    pid: Option<u32>,
}

impl CgroupSource {
    /// A source reading below `cfg.root` and `cfg.proc_path`, in the layout
    /// found there now.
    pub fn new(cfg: CgroupConfig) -> Self {
        let mut src = CgroupSource {
            layout: guess(&cfg),
            found: false,
            cfg,
            cpu: HashMap::new(),
            missing: HashSet::new(),
            slow: HashMap::new(),
            pid_cgroups: HashMap::new(),
            files: KernelFiles::new(ENV_FILES),
            cycle: 0,
        };
        src.detect();
        src
    }

    /// The layout figures are read in (while none was found, a guess: the
    /// usual places below `root` for the configured version).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Finds the layout again; logs when it changes.
    fn detect(&mut self) {
        let Some(found) = layout::detect(&self.cfg) else {
            if std::mem::replace(&mut self.found, false) || self.cycle == 0 {
                tracing::warn!(
                    root = %self.cfg.root.display(),
                    mountinfo = %self.cfg.proc_path.join("self/mountinfo").display(),
                    version = ?self.cfg.version,
                    layout = self.layout.name(),
                    "no cgroup hierarchy found; reading the usual places below the root and looking again while environments are missing (check collector.cgroup.root and collector.cgroup.version)"
                );
            }
            return;
        };
        if !self.found || found != self.layout {
            tracing::info!(layout = found.name(), detail = ?found, "cgroup layout found");
            self.slow.clear();
            self.pid_cgroups.clear();
            self.files.clear();
            self.cpu.clear();
        }
        self.layout = found;
        self.found = true;
    }

    /// The cgroup of `env` relative to the hierarchy ("a/b", no leading
    /// slash), or `None` when it has neither a path nor what the pattern needs.
    pub fn cgroup_of(&self, env: &EnvTarget) -> Option<String> {
        if let Some(p) = &env.cgroup_path {
            return Some(p.trim_matches('/').to_string());
        }
        let mut path = self.cfg.path_pattern.clone();
        for (ph, value) in [
            ("{env_id}", Some(&env.env_id)),
            ("{container_id}", env.container_id.as_ref()),
        ] {
            if path.contains(ph) {
                // An id with a slash would point outside the pattern's place.
                let v = value.filter(|v| !v.is_empty() && !v.contains('/'))?;
                path = path.replace(ph, v);
            }
        }
        Some(path.trim_matches('/').to_string())
    }

    /// One sample of every environment whose cgroup exists. `gpu_procs` and
    /// `gpu_util` (UUID → utilisation %) come from the GPU source.
    pub fn sample(
        &mut self,
        envs: &[EnvTarget],
        gpu_procs: &[GpuProcess],
        gpu_util: &HashMap<String, f64>,
        host_id: &str,
        at: DateTime<Utc>,
    ) -> Vec<EnvSample> {
        self.cycle += 1;
        if self.cycle.is_multiple_of(REFRESH_CYCLES) {
            self.slow.clear();
            self.pid_cgroups.clear();
            self.files.clear();
            if !self.found || !self.missing.is_empty() {
                self.detect();
            }
        }
        let found: Vec<(&EnvTarget, Slow)> = envs
            .iter()
            .filter_map(|e| self.slow_facts(e).map(|s| (e, s)))
            .collect();
        let paths: Vec<(&str, &str)> = found
            .iter()
            .map(|(e, s)| (e.env_id.as_str(), s.path.as_str()))
            .collect();
        let gpu = attribute(
            &self.layout,
            &self.cfg.proc_path,
            &mut self.pid_cgroups,
            &paths,
            gpu_procs,
            gpu_util,
        );
        let mut out = Vec::with_capacity(found.len());
        for (env, slow) in &found {
            let (memory_used, memory_usage_percent) = memory(
                self.layout.memory_current(&self.files, &slow.path),
                slow.memory_limit,
                env.memory_bytes,
            );
            // A v2 cgroup without the memory controller (a hybrid host's
            // unified tree) has no memory figure but is still there.
            let gone = memory_used.is_none() && !self.layout.dir(&slow.path).is_dir();
            let net_dev = slow.pid.map(|pid| net_dev_path(&self.cfg.proc_path, pid));
            let (network_rx_bytes, network_tx_bytes) = match &net_dev {
                Some(path) if !gone => network(&self.files, path),
                _ => (None, None),
            };
            if gone || (slow.pid.is_some() && network_rx_bytes.is_none()) {
                // The cgroup or its process went away: look again next time,
                // and let go of the namespace the kept net/dev holds.
                if let Some(path) = &net_dev {
                    self.files.forget(path);
                }
                self.slow.remove(&env.env_id);
            }
            let g = gpu.get(&env.env_id);
            out.push(EnvSample {
                env_id: env.env_id.clone(),
                host_id: host_id.to_string(),
                collected_at: at,
                cpu_usage_percent: self.cpu_percent(env, &slow.path, at),
                memory_used,
                memory_usage_percent,
                gpu_usage_percent: g.and_then(|g| g.percent),
                gpu_memory_used: g.map(|g| i64::try_from(g.memory).unwrap_or(i64::MAX)),
                network_rx_bytes,
                network_tx_bytes,
            });
        }
        // Forget counters of environments that are gone, so the map stays bounded.
        let live: HashSet<&str> = found.iter().map(|(e, _)| e.env_id.as_str()).collect();
        self.cpu.retain(|id, _| live.contains(id.as_str()));
        out
    }

    /// The env's cached cgroup facts, read afresh when not cached.
    fn slow_facts(&mut self, env: &EnvTarget) -> Option<Slow> {
        if let Some(s) = self.slow.get(&env.env_id) {
            return Some(s.clone());
        }
        let path = self.locate(env)?;
        let s = Slow {
            memory_limit: self.layout.memory_limit(&path),
            pid: first_pid(&self.layout.dir(&path)),
            path,
        };
        self.slow.insert(env.env_id.clone(), s.clone());
        Some(s)
    }

    /// The env's cgroup if it exists; warns once per env while it does not.
    fn locate(&mut self, env: &EnvTarget) -> Option<String> {
        let path = self.cgroup_of(env);
        let exists = path.as_ref().filter(|p| self.layout.dir(p).is_dir());
        if let Some(p) = exists {
            if self.missing.remove(&env.env_id) {
                tracing::info!(env.id = %env.env_id, cgroup = %p, "environment cgroup found");
            }
            return Some(p.clone());
        }
        if self.missing.insert(env.env_id.clone()) {
            match &path {
                Some(p) => {
                    tracing::warn!(env.id = %env.env_id, cgroup = %self.layout.dir(p).display(), layout = self.layout.name(), "environment cgroup not found; skipped until it appears (check collector.cgroup.path_pattern)")
                }
                None => {
                    tracing::warn!(env.id = %env.env_id, "environment has no container id and no cgroup path; skipped")
                }
            }
        }
        None
    }

    /// CPU % since the previous call, of the env's allocated cores.
    fn cpu_percent(&mut self, env: &EnvTarget, path: &str, at: DateTime<Utc>) -> Option<f64> {
        let usage = self.layout.cpu_usage_ns(&self.files, path)?;
        let (before, then) = self.cpu.insert(env.env_id.clone(), (usage, at))?;
        let elapsed_ns = (at - then).num_nanoseconds()? as f64;
        // A counter that went back means the container restarted: no figure this time.
        if elapsed_ns <= 0.0 || usage < before || env.cpu_cores <= 0.0 {
            return None;
        }
        Some((usage - before) as f64 / (elapsed_ns * env.cpu_cores) * 100.0)
    }
}

/// Where to read while no layout was found: v2 at the root, as before
/// detection existed, or v1's usual mounts where v1 is asked for.
fn guess(cfg: &CgroupConfig) -> Layout {
    match cfg.version {
        CgroupVersion::V1 => Layout::V1(layout::V1Mounts {
            memory: cfg.root.join("memory"),
            cpuacct: Some(cfg.root.join("cpuacct")),
        }),
        CgroupVersion::Auto | CgroupVersion::V2 => Layout::V2 {
            root: cfg.root.clone(),
        },
    }
}

/// (memory in use, its % of min(limit, allocation)); `limit` is `None`
/// where the cgroup has none.
fn memory(current: Option<u64>, limit: Option<u64>, allocation: i64) -> (Option<i64>, Option<f64>) {
    let Some(current) = current else {
        return (None, None);
    };
    // Without a limit only the allocation bounds it.
    let alloc = u64::try_from(allocation).ok().filter(|&a| a > 0);
    let limit = limit.into_iter().chain(alloc).min().filter(|&l| l > 0);
    (
        Some(i64::try_from(current).unwrap_or(i64::MAX)),
        limit.map(|l| current as f64 * 100.0 / l as f64),
    )
}

fn net_dev_path(proc_path: &Path, pid: u32) -> PathBuf {
    proc_path.join(pid.to_string()).join("net/dev")
}

/// (rx, tx) bytes of the network namespace whose /proc/<pid>/net/dev is
/// `path`, loopback excluded. The file is kept open between cycles: it
/// holds the namespace while open, so it is let go of as soon as the
/// environment's cgroup is gone, and with the slow facts in any case.
fn network(files: &KernelFiles, path: &Path) -> (Option<i64>, Option<i64>) {
    match logged(path, files.read_short_records(path)) {
        Some(text) => {
            let (rx, tx) = net_dev_totals(&text);
            (
                Some(i64::try_from(rx).unwrap_or(i64::MAX)),
                Some(i64::try_from(tx).unwrap_or(i64::MAX)),
            )
        }
        None => (None, None),
    }
}

/// Sums receive and transmit bytes of /proc/<pid>/net/dev, `lo` excluded.
fn net_dev_totals(text: &str) -> (u64, u64) {
    // Two header lines, then "iface: rx_bytes … (8 rx fields) tx_bytes …".
    text.lines()
        .skip(2)
        .filter_map(|line| line.split_once(':'))
        .filter(|(iface, _)| iface.trim() != "lo")
        .filter_map(|(_, rest)| {
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            (f.len() >= 9).then(|| (f[0], f[8]))
        })
        .fold((0, 0), |(rx, tx), (r, t)| (rx + r, tx + t))
}

#[cfg(test)]
mod tests;
