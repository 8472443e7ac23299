//! Which cgroup hierarchy a host has, and where its controllers are mounted.
//!
//! [`detect`] reads `<proc_path>/self/mountinfo`, so a controller mounted
//! anywhere is found (`/sys/fs/cgroup/cpu,cpuacct`, `/cgroup/memory`, …):
//! - mounts at or below `collector.cgroup.root` are used first;
//! - where there are none, the files below `root` decide (a hierarchy
//!   bind-mounted into the agent's container need not be in its mountinfo);
//! - then mounts anywhere else.
//!
//! Of what is found: a cgroup2 hierarchy that has the memory or cpu
//! controller (or no v1 memory controller beside it) is [`Layout::V2`];
//! otherwise a v1 memory controller makes it [`Layout::V1`], or
//! [`Layout::Hybrid`] when a cgroup2 hierarchy without those controllers
//! sits beside it (systemd's "hybrid" mode, e.g. `/sys/fs/cgroup/unified`).
//! Hybrid reads its figures from the v1 controllers, as v1 does.

use std::path::{Path, PathBuf};

use super::config::{CgroupConfig, CgroupVersion};
use super::files::read;

/// Where an environment's figures are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// The unified hierarchy, mounted here.
    V2 {
        /// Its mount point.
        root: PathBuf,
    },
    /// v1 controllers only.
    V1(V1Mounts),
    /// v1 controllers beside a cgroup2 hierarchy that does not hold them.
    Hybrid {
        /// The v1 controllers, which the figures come from.
        v1: V1Mounts,
        /// The cgroup2 mount point (not read for figures).
        unified: PathBuf,
    },
}

/// Mount points of the v1 controllers the source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mounts {
    /// The `memory` controller: memory figures, processes, and whether an
    /// environment's cgroup exists.
    pub memory: PathBuf,
    /// The `cpuacct` controller (often mounted together with `cpu`); without
    /// it there is no CPU figure.
    pub cpuacct: Option<PathBuf>,
}

impl Layout {
    /// "v1", "v2" or "hybrid", for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Layout::V2 { .. } => "v2",
            Layout::V1(_) => "v1",
            Layout::Hybrid { .. } => "hybrid",
        }
    }

    /// The v1 controllers, where the figures come from them.
    pub fn v1(&self) -> Option<&V1Mounts> {
        match self {
            Layout::V2 { .. } => None,
            Layout::V1(v1) | Layout::Hybrid { v1, .. } => Some(v1),
        }
    }
}

/// A cgroup filesystem as /proc/self/mountinfo lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    /// cgroup2, or v1 with these controllers (super options).
    v2: bool,
    options: Vec<String>,
}

impl Mount {
    fn has(&self, controller: &str) -> bool {
        self.options.iter().any(|o| o == controller)
    }
}

/// The layout `cfg` asks for, found on this host, or `None` when nothing
/// fits (no cgroup filesystem, or not the version `cfg.version` forces).
pub fn detect(cfg: &CgroupConfig) -> Option<Layout> {
    let mounts = read(&cfg.proc_path.join("self/mountinfo"))
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default();
    let (below, elsewhere): (Vec<Mount>, Vec<Mount>) = mounts
        .into_iter()
        .partition(|m| m.point.starts_with(&cfg.root));
    decide(Candidates::of_mounts(&below), cfg.version)
        .or_else(|| decide(Candidates::of_files(&cfg.root), cfg.version))
        .or_else(|| decide(Candidates::of_mounts(&elsewhere), cfg.version))
}

/// What one way of looking found.
#[derive(Debug, Default)]
struct Candidates {
    /// A cgroup2 mount point and whether it holds the memory or cpu controller.
    v2: Option<(PathBuf, bool)>,
    memory: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
}

impl Candidates {
    fn of_mounts(mounts: &[Mount]) -> Self {
        let v1 = |c: &str| {
            mounts
                .iter()
                .find(|m| !m.v2 && m.has(c))
                .map(|m| m.point.clone())
        };
        Candidates {
            v2: mounts
                .iter()
                .find(|m| m.v2)
                .map(|m| (m.point.clone(), holds_controllers(&m.point))),
            memory: v1("memory"),
            cpuacct: v1("cpuacct"),
        }
    }

    /// The usual places below `root`, by the files each controller has.
    fn of_files(root: &Path) -> Self {
        let with = |dirs: &[&str], file: &str| {
            dirs.iter()
                .map(|d| root.join(d))
                .find(|d| d.join(file).is_file())
        };
        Candidates {
            v2: with(&["", "unified"], "cgroup.controllers").map(|p| {
                let holds = holds_controllers(&p);
                (p, holds)
            }),
            memory: with(&["memory"], "memory.usage_in_bytes"),
            cpuacct: with(&["cpuacct", "cpu,cpuacct", "cpuacct,cpu"], "cpuacct.usage"),
        }
    }
}

/// Whether the cgroup2 hierarchy at `point` has the memory or cpu controller.
fn holds_controllers(point: &Path) -> bool {
    read(&point.join("cgroup.controllers"))
        .is_some_and(|t| t.split_whitespace().any(|c| c == "memory" || c == "cpu"))
}

fn decide(c: Candidates, version: CgroupVersion) -> Option<Layout> {
    let v1 = c.memory.map(|memory| V1Mounts {
        memory,
        cpuacct: c.cpuacct,
    });
    let v1_layout = |v1: V1Mounts, unified: Option<PathBuf>| match unified {
        Some(unified) => Layout::Hybrid { v1, unified },
        None => Layout::V1(v1),
    };
    match (version, c.v2, v1) {
        (CgroupVersion::V2, Some((root, _)), _) => Some(Layout::V2 { root }),
        (CgroupVersion::V2, None, _) => None,
        (CgroupVersion::V1, v2, Some(v1)) => Some(v1_layout(v1, v2.map(|(p, _)| p))),
        (CgroupVersion::V1, _, None) => None,
        (CgroupVersion::Auto, Some((root, true)), _)
        | (CgroupVersion::Auto, Some((root, _)), None) => Some(Layout::V2 { root }),
        (CgroupVersion::Auto, v2, Some(v1)) => Some(v1_layout(v1, v2.map(|(p, _)| p))),
        (CgroupVersion::Auto, None, None) => None,
    }
}

/// The cgroup filesystems of a mountinfo text (proc(5)): `ID PARENT MAJ:MIN
/// ROOT POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER_OPTIONS`.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let point = head.split(' ').nth(4)?;
            let mut tail = tail.split(' ');
            let v2 = match tail.next()? {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            let options = tail
                .nth(1)
                .unwrap_or("")
                .split(',')
                .map(String::from)
                .collect();
            Some(Mount {
                point: PathBuf::from(unescape(point)),
                v2,
                options,
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for `\`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(o)) => {
                // Three octal digits are at most 0o777; a byte is what the kernel wrote.
                out.push(o.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')) as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ubuntu 20.04's hybrid layout, with a space in one mount point.
    const HYBRID: &str = "\
24 31 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
25 24 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
33 25 0:31 / /sys/fs/cgroup/my\\040memory rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,memory
";

    #[test]
    fn mountinfo_lists_cgroup_mounts_with_their_controllers() {
        let m = parse_mountinfo(HYBRID);
        assert_eq!(m.len(), 4, "{m:#?}");
        assert!(m[0].v2);
        assert_eq!(m[0].point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert!(m[2].has("cpu") && m[2].has("cpuacct") && !m[2].has("memory"));
        assert_eq!(m[3].point, PathBuf::from("/sys/fs/cgroup/my memory"));
        assert!(m[3].has("memory"));
        assert!(!m[1].has("systemd"), "name=systemd is not a controller");
    }

    #[test]
    fn forced_versions_need_their_hierarchy() {
        let v1 = V1Mounts {
            memory: "/sys/fs/cgroup/memory".into(),
            cpuacct: Some("/sys/fs/cgroup/cpu,cpuacct".into()),
        };
        let found = |holds: bool| Candidates {
            v2: Some(("/sys/fs/cgroup/unified".into(), holds)),
            memory: Some(v1.memory.clone()),
            cpuacct: v1.cpuacct.clone(),
        };
        let hybrid = Layout::Hybrid {
            v1: v1.clone(),
            unified: "/sys/fs/cgroup/unified".into(),
        };
        let v2 = Some(Layout::V2 {
            root: "/sys/fs/cgroup/unified".into(),
        });
        assert_eq!(
            decide(found(false), CgroupVersion::Auto),
            Some(hybrid.clone())
        );
        assert_eq!(decide(found(false), CgroupVersion::V1), Some(hybrid));
        assert_eq!(decide(found(false), CgroupVersion::V2), v2);
        assert_eq!(
            decide(found(true), CgroupVersion::Auto),
            v2,
            "v2 holds the controllers"
        );
        let v1_only = Candidates {
            v2: None,
            ..found(false)
        };
        assert_eq!(decide(v1_only, CgroupVersion::V2), None);
        let v2_only = Candidates {
            v2: Some(("/sys/fs/cgroup".into(), false)),
            ..Candidates::default()
        };
        assert_eq!(decide(v2_only, CgroupVersion::V1), None);
        assert_eq!(decide(Candidates::default(), CgroupVersion::Auto), None);
    }

    #[test]
    fn unescape_keeps_what_is_not_an_escape() {
        assert_eq!(unescape(r"a\040b\134c\x\0"), r"a b\c\x\0");
    }
}
