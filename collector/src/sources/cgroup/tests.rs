//! The environment source over a cgroup tree and a /proc tree in a temp dir.

use std::fs;
use std::path::PathBuf;

use chrono::{Duration, TimeZone};
use tempfile::TempDir;

use super::*;

const GIB: u64 = 1 << 30;

/// A fake host: `<tmp>/cgroup` and `<tmp>/proc`.
struct Host {
    dir: TempDir,
}

impl Host {
    fn new() -> Self {
        Host {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn cfg(&self) -> CgroupConfig {
        CgroupConfig {
            root: self.dir.path().join("cgroup"),
            proc_path: self.dir.path().join("proc"),
            ..CgroupConfig::default()
        }
    }
    fn write(&self, rel: &str, text: &str) {
        let p = self.dir.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    /// A container cgroup with its CPU counter, memory and processes.
    fn container(&self, id: &str, usage_usec: u64, current: u64, max: &str, procs: &str) {
        let cg = format!("cgroup/system.slice/docker-{id}.scope");
        self.cpu(id, usage_usec);
        self.write(&format!("{cg}/memory.current"), &format!("{current}\n"));
        self.write(&format!("{cg}/memory.max"), &format!("{max}\n"));
        self.write(&format!("{cg}/cgroup.procs"), procs);
    }
    fn cpu(&self, id: &str, usage_usec: u64) {
        self.write(
            &format!("cgroup/system.slice/docker-{id}.scope/cpu.stat"),
            &format!("usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 2\n"),
        );
    }
    /// `proc/self/mountinfo` listing `(mount point below the temp dir,
    /// fstype, super options)`.
    fn mountinfo(&self, mounts: &[(&str, &str, &str)]) {
        let text: String = mounts
            .iter()
            .enumerate()
            .map(|(i, (point, fstype, opts))| {
                let point = self.dir.path().join(point).display().to_string();
                format!(
                    "{} 25 0:{i} / {} rw,nosuid,nodev,noexec,relatime shared:{i} - {fstype} {fstype} {opts}\n",
                    30 + i,
                    point.replace(' ', "\\040")
                )
            })
            .collect();
        self.write("proc/self/mountinfo", &text);
    }
    /// A v1 container: `cpuacct.usage` below `cpu`, memory files and
    /// `procs_file` below `memory` (mount points relative to the temp dir).
    #[allow(clippy::too_many_arguments)]
    fn v1_container(
        &self,
        memory: &str,
        cpu: &str,
        cg: &str,
        usage_ns: u64,
        usage_bytes: u64,
        limit: u64,
        procs_file: &str,
        procs: &str,
    ) {
        self.write(
            &format!("{cpu}/{cg}/cpuacct.usage"),
            &format!("{usage_ns}\n"),
        );
        let mem = format!("{memory}/{cg}");
        self.write(
            &format!("{mem}/memory.usage_in_bytes"),
            &format!("{usage_bytes}\n"),
        );
        self.write(
            &format!("{mem}/memory.limit_in_bytes"),
            &format!("{limit}\n"),
        );
        self.write(&format!("{mem}/{procs_file}"), procs);
    }
    /// A process in `cgroup` of the v1 controllers (and in the v2 root).
    fn process_v1(&self, pid: u32, cgroup: &str) {
        self.write(
            &format!("proc/{pid}/cgroup"),
            &format!("4:memory:{cgroup}\n2:cpu,cpuacct:{cgroup}\n1:name=systemd:{cgroup}\n0::/\n"),
        );
        self.write(&format!("proc/{pid}/net/dev"), NET_DEV);
    }
    /// A process in `cgroup` whose network namespace has `net_dev`.
    fn process(&self, pid: u32, cgroup: &str, net_dev: &str) {
        self.write(&format!("proc/{pid}/cgroup"), &format!("0::{cgroup}\n"));
        self.write(&format!("proc/{pid}/net/dev"), net_dev);
    }
}

const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  999999     10    0    0    0     0          0         0   999999      10    0    0    0     0       0          0
  eth0:    1000     10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0
  eth1:      10      1    0    0    0     0          0         0       20       2    0    0    0     0       0          0
";

fn env(id: &str, container: &str, cores: f64, memory: u64) -> EnvTarget {
    EnvTarget {
        env_id: id.into(),
        container_id: Some(container.into()),
        cgroup_path: None,
        cpu_cores: cores,
        memory_bytes: memory as i64,
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

fn sample(src: &mut CgroupSource, envs: &[EnvTarget], at: DateTime<Utc>) -> Vec<EnvSample> {
    src.sample(envs, &[], &HashMap::new(), "host-1", at)
}

#[test]
fn cpu_memory_and_network_of_a_container() {
    let h = Host::new();
    h.container("aaa", 1_000_000, GIB, &(4 * GIB).to_string(), "100\n101\n");
    h.process(100, "/system.slice/docker-aaa.scope", NET_DEV);
    let envs = [env("env-a", "aaa", 2.0, 8 * GIB)];
    let mut src = CgroupSource::new(h.cfg());

    let first = sample(&mut src, &envs, t0());
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].cpu_usage_percent, None,
        "no CPU figure on the first call"
    );
    assert_eq!(first[0].memory_used, Some(GIB as i64));
    assert_eq!(
        first[0].memory_usage_percent,
        Some(25.0),
        "of memory.max, below the allocation"
    );
    assert_eq!(
        (first[0].network_rx_bytes, first[0].network_tx_bytes),
        (Some(1010), Some(2020))
    );
    assert_eq!(first[0].host_id, "host-1");
    assert_eq!(
        (first[0].gpu_usage_percent, first[0].gpu_memory_used),
        (None, None)
    );

    // 10 s of CPU time in 10 s on 2 allocated cores.
    h.cpu("aaa", 11_000_000);
    let second = sample(&mut src, &envs, t0() + Duration::seconds(10));
    assert_eq!(second[0].cpu_usage_percent, Some(50.0));
    assert_eq!(second[0].collected_at, t0() + Duration::seconds(10));

    // A counter that goes back (restart) gives no figure, then resumes.
    h.cpu("aaa", 500_000);
    let third = sample(&mut src, &envs, t0() + Duration::seconds(20));
    assert_eq!(third[0].cpu_usage_percent, None);
    h.cpu("aaa", 5_500_000);
    let fourth = sample(&mut src, &envs, t0() + Duration::seconds(30));
    assert_eq!(fourth[0].cpu_usage_percent, Some(25.0));
}

#[test]
fn unlimited_memory_max_uses_the_allocation_and_processes_may_sit_in_a_child() {
    let h = Host::new();
    h.container("bbb", 0, GIB, "max", "");
    h.write(
        "cgroup/system.slice/docker-bbb.scope/init/cgroup.procs",
        "300\n",
    );
    h.process(300, "/system.slice/docker-bbb.scope/init", NET_DEV);
    let mut src = CgroupSource::new(h.cfg());
    let s = sample(&mut src, &[env("env-b", "bbb", 1.0, 4 * GIB)], t0());
    assert_eq!(s[0].memory_usage_percent, Some(25.0));
    assert_eq!(s[0].network_rx_bytes, Some(1010));
}

#[test]
fn gpu_processes_are_attributed_to_the_env_of_their_cgroup() {
    let h = Host::new();
    h.container("aaa", 0, GIB, "max", "100\n");
    h.container("bbb", 0, GIB, "max", "");
    h.container("ccc", 0, GIB, "max", "400\n");
    h.process(100, "/system.slice/docker-aaa.scope", NET_DEV);
    // env-b's processes sit in child cgroups: an ancestor match.
    h.process(300, "/system.slice/docker-bbb.scope/worker", NET_DEV);
    h.process(301, "/system.slice/docker-bbb.scope", NET_DEV);
    h.process(999, "/user.slice/user-1000.slice", NET_DEV);
    let gp = |uuid: &str, pid, gib| GpuProcess {
        uuid: uuid.into(),
        pid,
        used_memory: gib * GIB,
    };
    let procs = [
        gp("GPU-0", 100, 3),
        gp("GPU-0", 300, 1),
        gp("GPU-1", 301, 2),
        gp("GPU-1", 999, 2), // not an environment's process
    ];
    let util = HashMap::from([("GPU-0".to_string(), 80.0), ("GPU-1".to_string(), 50.0)]);
    let envs = [
        env("env-a", "aaa", 1.0, 0),
        env("env-b", "bbb", 1.0, 0),
        env("env-c", "ccc", 1.0, 0),
    ];
    let mut src = CgroupSource::new(h.cfg());
    let s = src.sample(&envs, &procs, &util, "host-1", t0());
    let by_id: HashMap<_, _> = s.iter().map(|e| (e.env_id.as_str(), e)).collect();
    // env-a: 3 of GPU-0's 4 GiB → 80 × 0.75.
    assert_eq!(by_id["env-a"].gpu_usage_percent, Some(60.0));
    assert_eq!(by_id["env-a"].gpu_memory_used, Some(3 * GIB as i64));
    // env-b: GPU-0 80 × 0.25 = 20, GPU-1 50 × 0.5 = 25 → average 22.5.
    assert_eq!(by_id["env-b"].gpu_usage_percent, Some(22.5));
    assert_eq!(by_id["env-b"].gpu_memory_used, Some(3 * GIB as i64));
    assert_eq!(by_id["env-c"].gpu_usage_percent, None, "no GPU process");
    assert_eq!(by_id["env-c"].gpu_memory_used, None);
    // No memory allocation and no memory.max: no percentage.
    assert_eq!(by_id["env-c"].memory_usage_percent, None);
}

#[test]
fn processes_without_memory_figures_share_a_gpu_by_count() {
    let h = Host::new();
    h.process(1, "/a", NET_DEV);
    h.process(2, "/b", NET_DEV);
    let procs: Vec<GpuProcess> = [1, 2, 2]
        .iter()
        .map(|&pid| GpuProcess {
            uuid: "GPU-0".into(),
            pid,
            used_memory: 0,
        })
        .collect();
    let util = HashMap::from([("GPU-0".to_string(), 90.0)]);
    let got = attribute(
        &Layout::V2 { root: h.cfg().root },
        &h.cfg().proc_path,
        &mut HashMap::new(),
        &[("a", "a"), ("b", "/b/")],
        &procs,
        &util,
    );
    assert_eq!(got["a"].percent, Some(30.0));
    assert_eq!(got["b"].percent, Some(60.0));
}

#[test]
fn a_missing_cgroup_is_skipped_until_it_appears() {
    let h = Host::new();
    h.container("aaa", 0, GIB, "max", "");
    let envs = [
        env("env-a", "aaa", 1.0, GIB),
        env("env-gone", "zzz", 1.0, GIB),
        EnvTarget {
            container_id: None,
            ..env("env-no-id", "", 1.0, GIB)
        },
    ];
    let mut src = CgroupSource::new(h.cfg());
    let s = sample(&mut src, &envs, t0());
    assert_eq!(
        s.iter().map(|e| e.env_id.as_str()).collect::<Vec<_>>(),
        ["env-a"]
    );
    assert!(src.missing.contains("env-gone") && src.missing.contains("env-no-id"));
    sample(&mut src, &envs, t0());
    h.container("zzz", 0, GIB, "max", "");
    assert_eq!(sample(&mut src, &envs, t0()).len(), 2);
    assert!(!src.missing.contains("env-gone"));
}

#[test]
fn an_explicit_path_wins_over_the_pattern_and_env_id_fills_it() {
    let src = CgroupSource::new(CgroupConfig {
        path_pattern: "gpuwatch.slice/{env_id}-{container_id}.scope".into(),
        ..CgroupConfig::default()
    });
    let e = env("env-1", "c0ffee", 1.0, 0);
    assert_eq!(
        src.cgroup_of(&e).as_deref(),
        Some("gpuwatch.slice/env-1-c0ffee.scope")
    );
    let explicit = EnvTarget {
        cgroup_path: Some("/kubepods.slice/pod-x/".into()),
        ..e.clone()
    };
    assert_eq!(
        src.cgroup_of(&explicit).as_deref(),
        Some("kubepods.slice/pod-x")
    );
    let sneaky = env("env-2", "../../etc", 1.0, 0);
    assert_eq!(src.cgroup_of(&sneaky), None);
}

#[test]
fn config_validation_reports_every_problem() {
    assert!(CgroupConfig::default().validate().is_empty());
    let bad = CgroupConfig {
        root: "sys/fs/cgroup".into(),
        proc_path: "proc".into(),
        path_pattern: "../system.slice/{pod}.scope".into(),
        ..CgroupConfig::default()
    };
    let errs = bad.validate();
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(errs.iter().all(|e| e.starts_with("collector.cgroup.")));
    assert!(
        errs[2].contains("{container_id} or {env_id}"),
        "{}",
        errs[2]
    );
    let unknown = serde_json::from_str::<CgroupConfig>(r#"{"root": "/x", "roots": "/y"}"#);
    assert!(unknown.is_err());
    let partial: CgroupConfig = serde_json::from_str(r#"{"root": "/x"}"#).unwrap();
    assert_eq!(partial.proc_path, PathBuf::from("/proc"));
}

#[test]
fn net_dev_sums_every_interface_but_loopback() {
    assert_eq!(net_dev_totals(NET_DEV), (1010, 2020));
    assert_eq!(
        net_dev_totals(&NET_DEV[..NET_DEV.find("  eth0").unwrap()]),
        (0, 0)
    );
}

/// What the kernel writes in memory.limit_in_bytes for "no limit".
const V1_NO_LIMIT: u64 = 9_223_372_036_854_771_712;

fn by_id(s: &[EnvSample]) -> HashMap<&str, &EnvSample> {
    s.iter().map(|e| (e.env_id.as_str(), e)).collect()
}

/// CentOS 7 with Docker's cgroupfs driver: v1 controllers only, mounted
/// away from `root` (so only mountinfo finds them), `cpu,cpuacct` combined.
#[test]
fn v1_controllers_found_through_mountinfo() {
    let h = Host::new();
    h.mountinfo(&[
        ("v1/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
        ("v1/mem", "cgroup", "rw,memory"),
        ("v1/systemd", "cgroup", "rw,xattr,name=systemd"),
    ]);
    let (mem, cpu) = ("v1/mem", "v1/cpu,cpuacct");
    h.v1_container(
        mem,
        cpu,
        "docker/aaa",
        2_000_000_000,
        GIB,
        4 * GIB,
        "cgroup.procs",
        "100\n",
    );
    h.v1_container(
        mem,
        cpu,
        "docker/bbb",
        0,
        2 * GIB,
        V1_NO_LIMIT,
        "cgroup.procs",
        "200\n",
    );
    h.process_v1(100, "/docker/aaa");
    h.process_v1(200, "/docker/bbb");
    // v1 lines: the memory controller's names the container; the others do not.
    h.write(
        "proc/300/cgroup",
        "12:pids:/user.slice\n4:memory:/docker/bbb/worker\n2:cpu,cpuacct:/user.slice\n1:name=systemd:/user.slice\n0::/user.slice\n",
    );
    let cfg = CgroupConfig {
        path_pattern: "docker/{container_id}".into(),
        ..h.cfg()
    };
    let mut src = CgroupSource::new(cfg);
    let envs = [
        env("env-a", "aaa", 2.0, 8 * GIB),
        env("env-b", "bbb", 1.0, 8 * GIB),
    ];
    let gp = |pid, gib| GpuProcess {
        uuid: "GPU-0".into(),
        pid,
        used_memory: gib * GIB,
    };
    let procs = [gp(100, 1), gp(300, 3)];
    let util = HashMap::from([("GPU-0".to_string(), 80.0)]);
    let first = src.sample(&envs, &procs, &util, "host-1", t0());
    let s = by_id(&first);
    assert_eq!(s.len(), 2, "{first:#?}");
    assert_eq!(
        s["env-a"].memory_used,
        Some(GIB as i64),
        "memory.usage_in_bytes"
    );
    assert_eq!(
        s["env-a"].memory_usage_percent,
        Some(25.0),
        "of memory.limit_in_bytes"
    );
    assert_eq!(
        s["env-b"].memory_usage_percent,
        Some(25.0),
        "a huge limit is no limit: of the allocation"
    );
    assert_eq!(s["env-a"].network_rx_bytes, Some(1010));
    assert_eq!(s["env-a"].gpu_memory_used, Some(GIB as i64));
    assert_eq!(
        s["env-b"].gpu_memory_used,
        Some(3 * GIB as i64),
        "by its memory cgroup"
    );
    assert_eq!(s["env-b"].gpu_usage_percent, Some(60.0));

    // 5 s of CPU (ns) in 10 s on 2 cores.
    h.write(&format!("{cpu}/docker/aaa/cpuacct.usage"), "7000000000\n");
    let second = src.sample(&envs, &procs, &util, "host-1", t0() + Duration::seconds(10));
    assert_eq!(by_id(&second)["env-a"].cpu_usage_percent, Some(25.0));
}

/// Ubuntu 20.04: v1 controllers (cpu and cpuacct apart, as on some
/// kernels) beside a v2 hierarchy at `unified/` that holds none of them.
/// The figures come from v1, even where `unified/` has files of its own.
#[test]
fn hybrid_reads_the_v1_controllers() {
    let h = Host::new();
    h.mountinfo(&[
        ("cgroup/unified", "cgroup2", "rw,nsdelegate"),
        ("cgroup/cpu", "cgroup", "rw,cpu"),
        ("cgroup/cpuacct", "cgroup", "rw,cpuacct"),
        ("cgroup/memory", "cgroup", "rw,memory"),
    ]);
    h.write("cgroup/unified/cgroup.controllers", "hugetlb\n");
    let cg = "system.slice/docker-ccc.scope";
    // An old kernel: `tasks`, no cgroup.procs.
    h.v1_container(
        "cgroup/memory",
        "cgroup/cpuacct",
        cg,
        0,
        GIB,
        2 * GIB,
        "tasks",
        "400\n401\n",
    );
    h.write(
        &format!("cgroup/unified/{cg}/cpu.stat"),
        "usage_usec 99999999\n",
    );
    h.write(&format!("cgroup/unified/{cg}/memory.current"), "12345\n");
    h.process_v1(400, &format!("/{cg}"));
    // In the env's v2 cgroup but another memory cgroup: not the env's.
    h.write(
        "proc/500/cgroup",
        &format!("4:memory:/user.slice\n0::/{cg}\n"),
    );
    let mut src = CgroupSource::new(h.cfg());
    let root = h.cfg().root;
    assert_eq!(
        src.layout(),
        &Layout::Hybrid {
            v1: layout::V1Mounts {
                memory: root.join("memory"),
                cpuacct: Some(root.join("cpuacct")),
            },
            unified: root.join("unified"),
        }
    );
    let envs = [env("env-c", "ccc", 4.0, 8 * GIB)];
    let procs = [
        GpuProcess {
            uuid: "GPU-0".into(),
            pid: 400,
            used_memory: GIB,
        },
        GpuProcess {
            uuid: "GPU-0".into(),
            pid: 500,
            used_memory: GIB,
        },
    ];
    let s = src.sample(&envs, &procs, &HashMap::new(), "host-1", t0());
    assert_eq!(s[0].memory_used, Some(GIB as i64));
    assert_eq!(s[0].memory_usage_percent, Some(50.0));
    assert_eq!(s[0].network_rx_bytes, Some(1010), "first pid from tasks");
    assert_eq!(s[0].gpu_memory_used, Some(GIB as i64));
    h.write(
        &format!("cgroup/cpuacct/{cg}/cpuacct.usage"),
        "10000000000\n",
    );
    let s = src.sample(
        &envs,
        &procs,
        &HashMap::new(),
        "host-1",
        t0() + Duration::seconds(5),
    );
    assert_eq!(s[0].cpu_usage_percent, Some(50.0), "10 s in 5 s on 4 cores");
}

/// A v2 host whose mountinfo also lists a v1 memory controller elsewhere:
/// the hierarchy below `root` wins, and it holds the controllers.
#[test]
fn v2_below_the_root_wins_over_mounts_elsewhere() {
    let h = Host::new();
    h.mountinfo(&[
        ("elsewhere/memory", "cgroup", "rw,memory"),
        ("cgroup", "cgroup2", "rw,nsdelegate,memory_recursiveprot"),
    ]);
    h.write("cgroup/cgroup.controllers", "cpuset cpu io memory pids\n");
    h.write("elsewhere/memory/memory.usage_in_bytes", "1\n");
    h.container("aaa", 0, GIB, "max", "");
    let mut src = CgroupSource::new(h.cfg());
    assert_eq!(src.layout(), &Layout::V2 { root: h.cfg().root });
    let s = sample(&mut src, &[env("env-a", "aaa", 1.0, 2 * GIB)], t0());
    assert_eq!(s[0].memory_usage_percent, Some(50.0));
    // Asked for v1, the same host reads the v1 controller it has.
    let v1 = CgroupSource::new(CgroupConfig {
        version: CgroupVersion::V1,
        ..h.cfg()
    });
    assert_eq!(v1.layout().name(), "v1");
}

/// Without a readable mountinfo the files below `root` decide, and a
/// source that found nothing looks again while its cgroups are missing.
#[test]
fn files_decide_without_mountinfo_and_a_late_hierarchy_is_found() {
    let h = Host::new();
    let envs = [env("env-a", "aaa", 1.0, 4 * GIB)];
    let mut src = CgroupSource::new(h.cfg());
    assert!(sample(&mut src, &envs, t0()).is_empty());
    let cg = "system.slice/docker-aaa.scope";
    // What a mounted controller has at its top.
    h.write("cgroup/memory/memory.usage_in_bytes", "0\n");
    h.write("cgroup/cpu,cpuacct/cpuacct.usage", "0\n");
    h.v1_container(
        "cgroup/memory",
        "cgroup/cpu,cpuacct",
        cg,
        0,
        GIB,
        V1_NO_LIMIT,
        "cgroup.procs",
        "",
    );
    let counts: Vec<usize> = (1..REFRESH_CYCLES)
        .map(|_| sample(&mut src, &envs, t0()).len())
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 1, "{counts:?}");
    assert_eq!(counts.last(), Some(&1), "found on the refresh cycle");
    assert_eq!(
        sample(&mut src, &envs, t0())[0].memory_usage_percent,
        Some(25.0)
    );
    let root = h.cfg().root;
    assert_eq!(
        src.layout(),
        &Layout::V1(layout::V1Mounts {
            memory: root.join("memory"),
            cpuacct: Some(root.join("cpu,cpuacct")),
        })
    );
}

#[test]
fn version_is_a_closed_set() {
    let v: CgroupConfig = serde_json::from_str(r#"{"version": "v1"}"#).unwrap();
    assert_eq!(v.version, CgroupVersion::V1);
    assert_eq!(CgroupConfig::default().version, CgroupVersion::Auto);
    let err = serde_json::from_str::<CgroupConfig>(r#"{"version": "v3"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`auto`, `v1`, `v2`"), "{err}");
}
