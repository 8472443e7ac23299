//! Environment (container) metrics from cgroup v2 and /proc.
//!
//! Each [`EnvTarget`] maps to a cgroup: its explicit `cgroup_path`, or
//! [`CgroupConfig::path_pattern`] with `{container_id}` / `{env_id}` filled
//! in. [`CgroupSource::sample`] reads from that cgroup:
//! - CPU %: `usage_usec` of cpu.stat between two calls ÷ (elapsed × the
//!   env's allocated cores) × 100; the first call has no figure;
//! - memory: memory.current, as % of min(memory.max, allocation);
//! - network: /proc/<pid>/net/dev of its first process (the container's
//!   network namespace), loopback excluded; counters since the namespace was
//!   made. A container on the host network reports the host's counters;
//! - GPU: see [`attribute`]. An env whose cgroup is missing is skipped with
//!   one warning until it appears.

mod attribute;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use gpuwatch_store::EnvSample;
use serde::Deserialize;

pub use attribute::{attribute, gpu_utilisation, GpuUse};

use crate::sources::nvml::GpuProcess;

/// `[collector.cgroup]`: where the environment source reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupConfig {
    /// Where the cgroup v2 hierarchy is mounted (default "/sys/fs/cgroup").
    pub root: PathBuf,
    /// Where procfs is mounted (default "/proc").
    pub proc_path: PathBuf,
    /// An environment's cgroup below `root`, with `{container_id}` and
    /// `{env_id}` filled in (default "system.slice/docker-{container_id}.scope",
    /// Docker with the systemd cgroup driver).
    pub path_pattern: String,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig {
            root: PathBuf::from("/sys/fs/cgroup"),
            proc_path: PathBuf::from("/proc"),
            path_pattern: "system.slice/docker-{container_id}.scope".into(),
        }
    }
}

const PLACEHOLDERS: [&str; 2] = ["{container_id}", "{env_id}"];

impl CgroupConfig {
    /// Every problem, as `collector.cgroup.<key>: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        for (key, path) in [("root", &self.root), ("proc_path", &self.proc_path)] {
            if !path.is_absolute() {
                e.push(format!(
                    "collector.cgroup.{key}: must be an absolute path, got {path:?}"
                ));
            }
        }
        let p = &self.path_pattern;
        if !PLACEHOLDERS.iter().any(|ph| p.contains(ph)) {
            e.push(format!(
                "collector.cgroup.path_pattern: must contain {{container_id}} or {{env_id}}, got {p:?}"
            ));
        }
        let rest = PLACEHOLDERS
            .iter()
            .fold(p.clone(), |s, ph| s.replace(ph, ""));
        if rest.contains('{') || rest.contains('}') {
            e.push(format!(
                "collector.cgroup.path_pattern: only {{container_id}} and {{env_id}} may appear in braces, got {p:?}"
            ));
        }
        if p.split('/').any(|c| c == "..") {
            e.push(format!(
                "collector.cgroup.path_pattern: must stay below collector.cgroup.root (no \"..\"), got {p:?}"
            ));
        }
        e
    }
}

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

/// The environment source: keeps the last CPU counter per environment.
#[derive(Debug)]
pub struct CgroupSource {
    cfg: CgroupConfig,
    /// Last `usage_usec` of each environment and when it was read.
    cpu: HashMap<String, (u64, DateTime<Utc>)>,
    /// Environments whose cgroup was missing, warned about once.
    missing: HashSet<String>,
    /// What rarely changes, per environment (its cgroup, memory.max, a pid
    /// in its network namespace) and per GPU process (its cgroup): re-read
    /// every [`REFRESH_CYCLES`] samples or as soon as a read fails, so a
    /// steady cycle opens three files per environment instead of seven.
    slow: HashMap<String, Slow>,
    pid_cgroups: HashMap<u32, Option<String>>,
    cycle: u64,
}

/// Samples between re-reads of the slowly changing facts.
const REFRESH_CYCLES: u64 = 30;

#[derive(Debug, Clone)]
struct Slow {
    path: String,
    memory_max: Option<u64>,
    pid: Option<u32>,
}

impl CgroupSource {
    /// A source reading below `cfg.root` and `cfg.proc_path`.
    pub fn new(cfg: CgroupConfig) -> Self {
        CgroupSource {
            cfg,
            cpu: HashMap::new(),
            missing: HashSet::new(),
            slow: HashMap::new(),
            pid_cgroups: HashMap::new(),
            cycle: 0,
        }
    }

    /// The cgroup of `env` relative to the root ("a/b", no leading slash), or
    /// `None` when it has neither a path nor what the pattern needs.
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
            &self.cfg.proc_path,
            &mut self.pid_cgroups,
            &paths,
            gpu_procs,
            gpu_util,
        );
        let mut out = Vec::with_capacity(found.len());
        for (env, slow) in &found {
            let dir = self.cfg.root.join(&slow.path);
            let (memory_used, memory_usage_percent) =
                memory(&dir, slow.memory_max, env.memory_bytes);
            let (network_rx_bytes, network_tx_bytes) = match slow.pid {
                Some(pid) => network(&self.cfg.proc_path, pid),
                None => (None, None),
            };
            if memory_used.is_none() || (slow.pid.is_some() && network_rx_bytes.is_none()) {
                // The cgroup or its process went away: look again next time.
                self.slow.remove(&env.env_id);
            }
            let g = gpu.get(&env.env_id);
            out.push(EnvSample {
                env_id: env.env_id.clone(),
                host_id: Some(host_id.to_string()),
                collected_at: at,
                cpu_usage_percent: self.cpu_percent(env, &dir, at),
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
        let dir = self.cfg.root.join(&path);
        let s = Slow {
            memory_max: read(&dir.join("memory.max")).and_then(|s| s.trim().parse::<u64>().ok()),
            pid: first_pid(&dir),
            path,
        };
        self.slow.insert(env.env_id.clone(), s.clone());
        Some(s)
    }

    /// The env's cgroup if it exists; warns once per env while it does not.
    fn locate(&mut self, env: &EnvTarget) -> Option<String> {
        let path = self.cgroup_of(env);
        let exists = path.as_ref().filter(|p| self.cfg.root.join(p).is_dir());
        if let Some(p) = exists {
            if self.missing.remove(&env.env_id) {
                tracing::info!(env.id = %env.env_id, cgroup = %p, "environment cgroup found");
            }
            return Some(p.clone());
        }
        if self.missing.insert(env.env_id.clone()) {
            let root = self.cfg.root.display();
            match &path {
                Some(p) => {
                    tracing::warn!(env.id = %env.env_id, cgroup = %format!("{root}/{p}"), "environment cgroup not found; skipped until it appears (check collector.cgroup.path_pattern)")
                }
                None => {
                    tracing::warn!(env.id = %env.env_id, "environment has no container id and no cgroup path; skipped")
                }
            }
        }
        None
    }

    /// CPU % since the previous call, of the env's allocated cores.
    fn cpu_percent(&mut self, env: &EnvTarget, dir: &Path, at: DateTime<Utc>) -> Option<f64> {
        let usage = read(&dir.join("cpu.stat")).and_then(|s| cpu_usage_usec(&s))?;
        let (before, then) = self.cpu.insert(env.env_id.clone(), (usage, at))?;
        let elapsed_us = (at - then).num_microseconds()? as f64;
        // A counter that went back means the container restarted: no figure this time.
        if elapsed_us <= 0.0 || usage < before || env.cpu_cores <= 0.0 {
            return None;
        }
        Some((usage - before) as f64 / (elapsed_us * env.cpu_cores) * 100.0)
    }
}

/// A file's text, or `None` (logged at debug: a controller may simply be off).
pub(crate) fn read(path: &Path) -> Option<String> {
    match read_small(path) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "cannot read");
            None
        }
    }
}

/// Reads a small kernel file with open + read + close only:
/// `fs::read_to_string` also stats the file for a size hint, which for
/// cgroup and /proc files is 0 anyway, and costs a syscall per file.
fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk)? {
            0 => break,
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// `usage_usec` from cpu.stat.
fn cpu_usage_usec(cpu_stat: &str) -> Option<u64> {
    cpu_stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// (memory.current, its % of min(memory.max, allocation)); `max` is
/// memory.max as read (None for "max": no limit).
fn memory(dir: &Path, max: Option<u64>, allocation: i64) -> (Option<i64>, Option<f64>) {
    let Some(current) =
        read(&dir.join("memory.current")).and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return (None, None);
    };
    // "max" means no limit: only the allocation bounds it then.
    let alloc = u64::try_from(allocation).ok().filter(|&a| a > 0);
    let limit = max.into_iter().chain(alloc).min().filter(|&l| l > 0);
    (
        Some(i64::try_from(current).unwrap_or(i64::MAX)),
        limit.map(|l| current as f64 * 100.0 / l as f64),
    )
}

/// The first process of the cgroup, or of its first populated descendant
/// (cgroup v2 keeps processes in leaves, e.g. under a systemd scope).
fn first_pid(dir: &Path) -> Option<u32> {
    let mut queue = vec![dir.to_path_buf()];
    // Bounded: a deep tree costs at most this many directory reads per env.
    for _ in 0..64 {
        let d = queue.pop()?;
        if let Some(pid) = read(&d.join("cgroup.procs"))
            .and_then(|s| s.lines().find_map(|l| l.trim().parse().ok()))
        {
            return Some(pid);
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut children: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        children.sort_unstable_by(|a, b| b.cmp(a));
        queue.extend(children);
    }
    None
}

/// (rx, tx) bytes of `pid`'s network namespace, loopback excluded.
fn network(proc_path: &Path, pid: u32) -> (Option<i64>, Option<i64>) {
    match read(&proc_path.join(pid.to_string()).join("net/dev")) {
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
