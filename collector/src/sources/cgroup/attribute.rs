//! GPU attribution: which environment uses how much of which GPU.
//!
//! The rule:
//! - a GPU process belongs to the environment whose cgroup is the process's
//!   cgroup or its nearest ancestor, in the hierarchy the environments are
//!   found in: the `0::/path` line of /proc/<pid>/cgroup on v2, the
//!   `N:memory:/path` one on v1 and hybrid hosts; processes of no
//!   environment count only in the GPU's totals;
//! - `gpu_memory_used` is the GPU memory of the env's processes, summed over
//!   all GPUs;
//! - `gpu_usage_percent`: NVML reports utilisation per GPU, not per process,
//!   so for each GPU the env has a process on, that GPU's utilisation is
//!   multiplied by the env's share of the memory held by all processes on
//!   the GPU (by process count where no process reports memory); these are
//!   averaged over the env's GPUs, so an env alone on two GPUs at 80 % and
//!   40 % uses 60 %. GPUs without a utilisation reading are left out;
//! - both are `None` for an env with no GPU process.
//!
//! PIDs are in the pid namespace of `proc_path`, which must be the host's,
//! as NVML's are.

use std::collections::HashMap;
use std::path::Path;

use super::layout::Layout;
use crate::sources::nvml::GpuProcess;
use crate::GpuReading;

/// One environment's use of the GPUs.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuUse {
    /// GPU memory its processes hold, bytes.
    pub memory: u64,
    /// Its utilisation share, % (see the module docs).
    pub percent: Option<f64>,
}

/// UUID → utilisation % of the GPUs that reported one, for [`attribute`].
pub fn gpu_utilisation(readings: &[GpuReading]) -> HashMap<String, f64> {
    readings
        .iter()
        .filter_map(|r| Some((r.uuid.clone(), r.sample.utilization_percent?)))
        .collect()
}

/// Memory and process count.
#[derive(Default, Clone, Copy)]
struct Held {
    memory: u64,
    count: u32,
}

impl Held {
    fn add(&mut self, p: &GpuProcess) {
        self.memory += p.used_memory;
        self.count += 1;
    }
}

/// Attributes `procs` to `envs` ((env id, cgroup path below the
/// hierarchy of `layout`)), keyed by env id; envs without a GPU process are
/// absent. `pid_cgroups` caches each pid's cgroup across calls (the caller
/// clears it now and then).
pub fn attribute(
    layout: &Layout,
    proc_path: &Path,
    pid_cgroups: &mut HashMap<u32, Option<String>>,
    envs: &[(&str, &str)],
    procs: &[GpuProcess],
    util: &HashMap<String, f64>,
) -> HashMap<String, GpuUse> {
    // A process on several GPUs is looked up once.
    let mut owner: HashMap<u32, Option<&str>> = HashMap::new();
    let mut per_gpu: HashMap<&str, Held> = HashMap::new();
    let mut per_env: HashMap<&str, HashMap<&str, Held>> = HashMap::new();
    for p in procs {
        per_gpu.entry(&p.uuid).or_default().add(p);
        let env = *owner.entry(p.pid).or_insert_with(|| {
            let cg = pid_cgroups
                .entry(p.pid)
                .or_insert_with(|| pid_cgroup(layout, proc_path, p.pid));
            cg.as_deref().and_then(|cg| owning_env(envs, cg))
        });
        if let Some(env) = env {
            per_env
                .entry(env)
                .or_default()
                .entry(&p.uuid)
                .or_default()
                .add(p);
        }
    }
    per_env
        .into_iter()
        .map(|(env, gpus)| {
            let memory = gpus.values().map(|h| h.memory).sum();
            let parts: Vec<f64> = gpus
                .iter()
                .filter_map(|(uuid, mine)| {
                    let u = util.get(*uuid)?;
                    let all = per_gpu.get(uuid)?;
                    let share = if all.memory > 0 {
                        mine.memory as f64 / all.memory as f64
                    } else {
                        f64::from(mine.count) / f64::from(all.count.max(1))
                    };
                    Some(u * share)
                })
                .collect();
            let percent =
                (!parts.is_empty()).then(|| parts.iter().sum::<f64>() / parts.len() as f64);
            (env.to_string(), GpuUse { memory, percent })
        })
        .collect()
}

/// The cgroup path of `pid` ("/a/b") in `layout`'s hierarchy, or `None` if
/// it has exited.
fn pid_cgroup(layout: &Layout, proc_path: &Path, pid: u32) -> Option<String> {
    let text = super::files::read(&proc_path.join(pid.to_string()).join("cgroup"))?;
    layout.pid_cgroup(&text).map(str::to_string)
}

/// The env whose cgroup is `cgroup` or its nearest ancestor.
fn owning_env<'a>(envs: &[(&'a str, &str)], cgroup: &str) -> Option<&'a str> {
    let cg = cgroup.trim_matches('/');
    envs.iter()
        .filter(|(_, path)| {
            let p = path.trim_matches('/');
            p.is_empty() || cg == p || cg.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|(_, path)| path.trim_matches('/').len())
        .map(|(id, _)| *id)
}
