//! An environment's figures, read from the files of its cgroup in each
//! [`Layout`]. `rel` is the env's cgroup below the hierarchy ("a/b"); on v1
//! it is the same below each controller's mount.
//!
//! | figure | v2 | v1 and hybrid |
//! | --- | --- | --- |
//! | CPU time | `cpu.stat` `usage_usec` | `cpuacct.usage` (ns) of the cpuacct controller |
//! | memory | `memory.current` | `memory.usage_in_bytes` (page cache included, as `memory.current` counts it) |
//! | limit | `memory.max` ("max": none) | `memory.limit_in_bytes` (above 2^62: none) |
//! | processes | `cgroup.procs` | `cgroup.procs`, or `tasks` on kernels without it, of the memory controller |
//! | a pid's cgroup | the `0::` line of /proc/<pid>/cgroup | its `N:…memory…:` line |

use std::path::{Path, PathBuf};

use super::layout::Layout;
use crate::sources::kernel_files::{self, KernelFiles};

/// memory.limit_in_bytes at or above this is "no limit": the kernel writes
/// its page-counter maximum (2^63 − a page), which no machine has.
const V1_UNLIMITED: u64 = 1 << 62;

impl Layout {
    /// The directory that exists exactly while the env's cgroup does.
    pub(crate) fn dir(&self, rel: &str) -> PathBuf {
        match self {
            Layout::V2 { root } => root.join(rel),
            Layout::V1(v1) | Layout::Hybrid { v1, .. } => v1.memory.join(rel),
        }
    }

    /// CPU time the cgroup used, ns.
    pub(crate) fn cpu_usage_ns(&self, files: &KernelFiles, rel: &str) -> Option<u64> {
        match self {
            Layout::V1(v1) | Layout::Hybrid { v1, .. } => {
                read_kept_u64(files, &v1.cpuacct.as_ref()?.join(rel).join("cpuacct.usage"))
            }
            Layout::V2 { root } => read_kept(files, &root.join(rel).join("cpu.stat"))
                .and_then(|s| cpu_usage_usec(&s))
                .map(|us| us.saturating_mul(1_000)),
        }
    }

    /// Memory the cgroup uses, bytes.
    pub(crate) fn memory_current(&self, files: &KernelFiles, rel: &str) -> Option<u64> {
        let file = if self.v1().is_some() {
            "memory.usage_in_bytes"
        } else {
            "memory.current"
        };
        read_kept_u64(files, &self.dir(rel).join(file))
    }

    /// The cgroup's memory limit, bytes; `None` without one.
    pub(crate) fn memory_limit(&self, rel: &str) -> Option<u64> {
        match self.v1() {
            Some(_) => {
                read_u64(&self.dir(rel).join("memory.limit_in_bytes")).filter(|&l| l < V1_UNLIMITED)
            }
            // "max" does not parse: no limit.
            None => read_u64(&self.dir(rel).join("memory.max")),
        }
    }

    /// The cgroup path ("/a/b") in a /proc/<pid>/cgroup text of the
    /// hierarchy the env cgroups are found in.
    pub(crate) fn pid_cgroup<'a>(&self, text: &'a str) -> Option<&'a str> {
        let v1 = self.v1().is_some();
        text.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let mine = if v1 {
                controllers.split(',').any(|c| c == "memory")
            } else {
                id == "0" && controllers.is_empty()
            };
            mine.then(|| path.trim())
        })
    }
}

/// A file's text, or `None` (logged at debug: a controller may simply be off).
pub(crate) fn read(path: &Path) -> Option<String> {
    logged(path, kernel_files::read_once(path))
}

/// The text of a read, or `None` with the failure logged at debug.
pub(crate) fn logged(path: &Path, read: std::io::Result<String>) -> Option<String> {
    match read {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "cannot read");
            None
        }
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    read(path).and_then(|s| s.trim().parse().ok())
}

/// [`read`] of a one-value file read every cycle, through the kept descriptors.
fn read_kept(files: &KernelFiles, path: &Path) -> Option<String> {
    logged(path, files.read_value(path))
}

fn read_kept_u64(files: &KernelFiles, path: &Path) -> Option<u64> {
    read_kept(files, path).and_then(|s| s.trim().parse().ok())
}

/// `usage_usec` from cpu.stat.
pub(crate) fn cpu_usage_usec(cpu_stat: &str) -> Option<u64> {
    cpu_stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// The first process of the cgroup `dir`, or of its first populated
/// descendant (cgroup v2 keeps processes in leaves, e.g. under a systemd
/// scope). v1 kernels before 3.x have only `tasks` (thread ids, whose
/// /proc entries serve as well).
pub(crate) fn first_pid(dir: &Path) -> Option<u32> {
    let mut queue = vec![dir.to_path_buf()];
    // Bounded: a deep tree costs at most this many directory reads per env.
    for _ in 0..64 {
        let d = queue.pop()?;
        let listed = read(&d.join("cgroup.procs")).or_else(|| read(&d.join("tasks")));
        if let Some(pid) = listed.and_then(|s| s.lines().find_map(|l| l.trim().parse().ok())) {
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
