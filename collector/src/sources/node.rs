//! This host as node_exporter sees it: per CPU, per filesystem, per network
//! and disk device, for the agent's own `/metrics`.
//!
//! [`ProcfsSource`](super::procfs::ProcfsSource) sums devices into one
//! `host_metrics` row; [`NodeSource::read`] keeps them apart, with
//! node_exporter's (1.5 upstream) definitions and default exclusions, so the
//! Node Exporter Full dashboard reads the agent as it reads node_exporter:
//! - CPU: each `cpuN` line of /proc/stat, ticks ÷ `sysconf(_SC_CLK_TCK)`,
//!   modes user nice system idle iowait irq softirq steal; `btime`;
//! - memory: the /proc/meminfo fields in [`MEMINFO_FIELDS`], kB × 1024;
//! - filesystems: the mounts of `<proc>/1/mountinfo` (the host's mount
//!   namespace; `<proc>/self/mountinfo` where pid 1's is unreadable), less
//!   the mount points of `--collector.filesystem.mount-points-exclude`
//!   `^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`
//!   and the types of `--collector.filesystem.fs-types-exclude`
//!   `^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$`,
//!   sized by statfs (blocks × f_bsize, as node_exporter does); a mount
//!   statfs cannot read is left out;
//! - network: every device of /proc/net/dev (upstream excludes none);
//! - disks: whole disks of /proc/diskstats
//!   ([`is_whole_disk`](super::procfs::is_whole_disk)), sectors × 512;
//! - load averages, and /proc/pressure's `some` totals where it exists.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::kernel_files::{KernelFiles, HOST_FILES};
use super::procfs::{bad, is_whole_disk, num, parse_loadavg, read_parse};
use super::SourceError;

/// The /proc/meminfo fields served, as node_memory_<field>_bytes.
pub const MEMINFO_FIELDS: [&str; 8] = [
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SReclaimable",
    "SwapTotal",
    "SwapFree",
];

/// node_exporter's CPU modes, in /proc/stat's column order.
pub const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// A CPU's number and its seconds in each of [`CPU_MODES`].
pub type CpuSeconds = (u32, [f64; 8]);

/// One reading of this host, per device.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeReading {
    /// Each CPU.
    pub cpus: Vec<CpuSeconds>,
    /// Boot time, Unix seconds (`btime`).
    pub boot_time: Option<f64>,
    /// (field of [`MEMINFO_FIELDS`], bytes), for the fields this kernel has.
    pub memory: Vec<(&'static str, u64)>,
    /// Mounted filesystems, node_exporter's exclusions applied.
    pub filesystems: Vec<Filesystem>,
    /// Network devices.
    pub net: Vec<NetDevice>,
    /// Whole disks: (device, bytes read, bytes written).
    pub disks: Vec<(String, u64, u64)>,
    /// 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    /// ("cpu" | "io" | "memory", seconds some task waited), where
    /// /proc/pressure exists.
    pub pressure: Vec<(&'static str, f64)>,
}

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq)]
pub struct Filesystem {
    /// Mount source, e.g. "/dev/vda1".
    pub device: String,
    /// Where it is mounted.
    pub mountpoint: String,
    /// Filesystem type.
    pub fstype: String,
    /// blocks × f_bsize.
    pub size: u64,
    /// free blocks × f_bsize (root's reserve included).
    pub free: u64,
    /// blocks available to unprivileged users × f_bsize.
    pub avail: u64,
}

/// One network device's counters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetDevice {
    /// Interface name.
    pub device: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
}

/// Reads [`NodeReading`]s below a procfs mount.
#[derive(Debug, Clone)]
pub struct NodeSource {
    proc_path: PathBuf,
    clk_tck: f64,
    /// The files of every reading, kept open (shared by clones).
    files: Arc<KernelFiles>,
    /// The mount table as last read, for the readings it did not change in.
    mounts: Arc<Mutex<Option<Vec<Mount>>>>,
}

impl NodeSource {
    /// A source over the procfs at `proc_path`.
    pub fn new(proc_path: &Path) -> Self {
        // The kernel reports /proc/stat in USER_HZ, which is 100 on every
        // Linux architecture; sysconf tells it where it could differ.
        let clk_tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|&t| t > 0)
            .unwrap_or(100);
        NodeSource {
            proc_path: proc_path.to_path_buf(),
            clk_tck: clk_tck as f64,
            files: Arc::new(KernelFiles::new(HOST_FILES)),
            mounts: Arc::default(),
        }
    }

    /// One reading. Missing /proc/pressure is no error (kernels before
    /// 4.20, or PSI off); an unreadable mount is left out.
    pub fn read(&self) -> Result<NodeReading, SourceError> {
        let p = &self.proc_path;
        let (cpus, boot_time) = read_parse(&self.files, p, "stat", |path, t| {
            parse_cpus(path, t, self.clk_tck)
        })?;
        let mounts = self.mounts()?;
        Ok(NodeReading {
            cpus,
            boot_time,
            memory: read_parse(&self.files, p, "meminfo", parse_meminfo_fields)?,
            filesystems: filesystems(mounts),
            net: read_parse(&self.files, p, "net/dev", parse_net_devices)?,
            disks: read_parse(&self.files, p, "diskstats", parse_disks)?,
            load: read_parse(&self.files, p, "loadavg", parse_loadavg)?,
            pressure: ["cpu", "io", "memory"]
                .into_iter()
                .filter_map(|r| {
                    let path = p.join("pressure").join(r);
                    let text = self.files.read_short_records(&path).ok()?;
                    Some((r, parse_pressure_some(&text)?))
                })
                .collect(),
        })
    }
}

impl NodeSource {
    /// The host's mounts: pid 1's table (the host's, where the agent runs in
    /// a container with the host's pid namespace), else the agent's own.
    /// Parsed again only when the kernel says the table changed.
    fn mounts(&self) -> Result<Vec<Mount>, SourceError> {
        let mut last = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
        let mut failed = None;
        for name in ["1/mountinfo", "self/mountinfo"] {
            let path = self.proc_path.join(name);
            let shown = path.display().to_string();
            match self.files.read_if_changed(&path) {
                Ok(None) if last.is_some() => return Ok(last.clone().unwrap_or_default()),
                Ok(None) => {}
                Ok(Some(text)) => {
                    let m = parse_mountinfo(&shown, &text)?;
                    *last = Some(m.clone());
                    return Ok(m);
                }
                Err(source) => {
                    failed = Some(SourceError::Read {
                        path: shown,
                        source,
                    });
                    continue;
                }
            }
            // Kept, unchanged, but its last text did not parse: read it again.
            let text = self.files.read(&path).map_err(|source| SourceError::Read {
                path: shown.clone(),
                source,
            })?;
            let m = parse_mountinfo(&shown, &text)?;
            *last = Some(m.clone());
            return Ok(m);
        }
        Err(failed.expect("both tables were tried"))
    }
}

/// Each `cpuN` line of /proc/stat in seconds per mode, and `btime`.
fn parse_cpus(
    path: &str,
    text: &str,
    clk_tck: f64,
) -> Result<(Vec<CpuSeconds>, Option<f64>), SourceError> {
    let mut cpus = Vec::new();
    let mut boot = None;
    for line in text.lines() {
        if let Some(b) = line.strip_prefix("btime ") {
            boot = Some(num::<f64>(path, b.trim())?);
            continue;
        }
        // `cpuN`, not the aggregate `cpu ` line.
        let Some(rest) = line
            .strip_prefix("cpu")
            .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let Some(Ok(n)) = f.next().map(str::parse::<u32>) else {
            continue;
        };
        let mut secs = [0.0; 8];
        for (i, s) in secs.iter_mut().enumerate() {
            match f.next() {
                Some(v) => *s = num::<u64>(path, v)? as f64 / clk_tck,
                // Old kernels lack the last columns.
                None if i >= 4 => break,
                None => return Err(bad(path, format!("cpu{n} has fewer than 4 fields"))),
            }
        }
        cpus.push((n, secs));
    }
    if cpus.is_empty() {
        return Err(bad(path, "no cpuN lines"));
    }
    Ok((cpus, boot))
}

/// The [`MEMINFO_FIELDS`] present, in bytes.
fn parse_meminfo_fields(path: &str, text: &str) -> Result<Vec<(&'static str, u64)>, SourceError> {
    let mut out = Vec::with_capacity(MEMINFO_FIELDS.len());
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(field) = MEMINFO_FIELDS.iter().find(|f| **f == key) else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let v: u64 = num(path, parts.next().unwrap_or(""))?;
        let bytes = match parts.next() {
            Some("kB") => v * 1024,
            None => v,
            Some(unit) => return Err(bad(path, format!("{key}: unknown unit {unit:?}"))),
        };
        out.push((*field, bytes));
    }
    if !out.iter().any(|(f, _)| *f == "MemTotal") {
        return Err(bad(path, "no MemTotal"));
    }
    Ok(out)
}

/// A mount of mountinfo: (source, mount point, type).
type Mount = (String, String, String);

/// mountinfo's lines: `id parent maj:min root mountpoint opts [tags] - type source superopts`.
fn parse_mountinfo(path: &str, text: &str) -> Result<Vec<Mount>, SourceError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (head, tail) = line
            .split_once(" - ")
            .ok_or_else(|| bad(path, format!("no \" - \" in {line:?}")))?;
        let mountpoint = head
            .split(' ')
            .nth(4)
            .ok_or_else(|| bad(path, format!("short line {line:?}")))?;
        let mut t = tail.split(' ');
        let (Some(fstype), Some(source)) = (t.next(), t.next()) else {
            return Err(bad(path, format!("short line {line:?}")));
        };
        out.push((unescape(source), unescape(mountpoint), unescape(fstype)));
    }
    Ok(out)
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(o)) => {
                out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
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

/// Whether node_exporter's default mount-point exclusion
/// `^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`
/// leaves `m` out.
pub fn mount_point_excluded(m: &str) -> bool {
    let Some(rest) = m.strip_prefix('/') else {
        return false;
    };
    let whole = |dir: &str| {
        rest.strip_prefix(dir)
            .is_some_and(|r| r.is_empty() || r.starts_with('/'))
    };
    // `dir/.+($|/)`: anything below dir, at least one character.
    let below = |dir: &str| rest.strip_prefix(dir).is_some_and(|r| !r.is_empty());
    whole("dev")
        || whole("proc")
        || whole("sys")
        || below("run/credentials/")
        || below("var/lib/docker/")
        || below("var/lib/containers/storage/")
}

/// Whether node_exporter's default fs-type exclusion leaves `t` out.
pub fn fs_type_excluded(t: &str) -> bool {
    matches!(
        t,
        "autofs"
            | "binfmt_misc"
            | "bpf"
            | "cgroup"
            | "cgroup2"
            | "configfs"
            | "debugfs"
            | "devpts"
            | "devtmpfs"
            | "fusectl"
            | "hugetlbfs"
            | "iso9660"
            | "mqueue"
            | "nsfs"
            | "overlay"
            | "proc"
            | "procfs"
            | "pstore"
            | "rpc_pipefs"
            | "securityfs"
            | "selinuxfs"
            | "squashfs"
            | "sysfs"
            | "tracefs"
    )
}

/// The mounts node_exporter would report, sized; each label set once
/// (systemd may mount one filesystem at one place twice).
fn filesystems(mounts: Vec<Mount>) -> Vec<Filesystem> {
    let mut out: Vec<Filesystem> = Vec::new();
    for (device, mountpoint, fstype) in mounts {
        if mount_point_excluded(&mountpoint) || fs_type_excluded(&fstype) {
            continue;
        }
        if out
            .iter()
            .any(|f| f.device == device && f.mountpoint == mountpoint && f.fstype == fstype)
        {
            continue;
        }
        let Ok(st) = nix::sys::statfs::statfs(mountpoint.as_str()) else {
            continue;
        };
        let bsize = st.block_size() as u64;
        out.push(Filesystem {
            size: st.blocks() * bsize,
            free: st.blocks_free() * bsize,
            avail: st.blocks_available() * bsize,
            device,
            mountpoint,
            fstype,
        });
    }
    out
}

/// Every device of /proc/net/dev.
fn parse_net_devices(path: &str, text: &str) -> Result<Vec<NetDevice>, SourceError> {
    let mut out = Vec::new();
    for line in text.lines().skip(2).filter(|l| !l.trim().is_empty()) {
        let (name, rest) = line
            .split_once(':')
            .ok_or_else(|| bad(path, format!("no interface name in {line:?}")))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 16 {
            return Err(bad(path, format!("short line {line:?}")));
        }
        out.push(NetDevice {
            device: name.trim().to_string(),
            rx_bytes: num(path, f[0])?,
            rx_packets: num(path, f[1])?,
            tx_bytes: num(path, f[8])?,
            tx_packets: num(path, f[9])?,
        });
    }
    Ok(out)
}

/// Whole disks of /proc/diskstats: (device, bytes read, bytes written).
fn parse_disks(path: &str, text: &str) -> Result<Vec<(String, u64, u64)>, SourceError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            return Err(bad(path, format!("short line {line:?}")));
        }
        if is_whole_disk(f[2]) {
            let read: u64 = num(path, f[5])?;
            let written: u64 = num(path, f[9])?;
            out.push((f[2].to_string(), read * 512, written * 512));
        }
    }
    Ok(out)
}

/// The `some … total=<µs>` of a /proc/pressure file, in seconds.
fn parse_pressure_some(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let total = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?;
    Some(total.parse::<u64>().ok()? as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  242078 0 70706 1543348 6192 0 3706 2714 500 0
cpu0 132766 5 33757 770938 1869 1 1183 1378 0 0
cpu1 109312 0 36949 772410 4323 0 2523 1336 0 0
intr 1 2 3
btime 1764583200
";

    #[test]
    fn cpus_in_seconds_per_mode_and_boot_time() {
        let (cpus, boot) = parse_cpus("stat", STAT, 100.0).unwrap();
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].0, 0);
        assert_eq!(
            cpus[0].1,
            [1327.66, 0.05, 337.57, 7709.38, 18.69, 0.01, 11.83, 13.78]
        );
        assert_eq!(cpus[1].0, 1);
        assert_eq!(boot, Some(1_764_583_200.0));
        assert!(parse_cpus("stat", "cpu  1 2 3 4\n", 100.0).is_err());
    }

    #[test]
    fn meminfo_fields_in_bytes() {
        let m = parse_meminfo_fields(
            "m",
            "MemTotal:  100 kB\nMemFree: 10 kB\nActive: 5 kB\nSwapTotal: 0 kB\n",
        )
        .unwrap();
        assert_eq!(
            m,
            [("MemTotal", 102_400), ("MemFree", 10_240), ("SwapTotal", 0)]
        );
        assert!(parse_meminfo_fields("m", "MemFree: 1 kB\n").is_err());
    }

    #[test]
    fn mountinfo_with_escapes() {
        let text = "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                    30 22 0:5 / /mnt/my\\040disk rw - vfat /dev/sdb1 rw\n";
        let m = parse_mountinfo("mi", text).unwrap();
        assert_eq!(m[0], ("/dev/vda1".into(), "/".into(), "ext4".into()));
        assert_eq!(m[1].1, "/mnt/my disk");
        assert!(parse_mountinfo("mi", "1 2 3\n").is_err());
    }

    #[test]
    fn node_exporters_default_exclusions() {
        for m in [
            "/dev",
            "/dev/shm",
            "/proc",
            "/sys/fs/cgroup",
            "/run/credentials/x.service",
            "/var/lib/docker/overlay2/abc/merged",
            "/var/lib/containers/storage/overlay",
        ] {
            assert!(mount_point_excluded(m), "{m}");
        }
        for m in [
            "/",
            "/run",
            "/run/credentials",
            "/var/lib/docker",
            "/devices",
            "/boot/efi",
            "/sysroot",
        ] {
            assert!(!mount_point_excluded(m), "{m}");
        }
        assert!(
            fs_type_excluded("cgroup2")
                && fs_type_excluded("overlay")
                && fs_type_excluded("tracefs")
        );
        assert!(
            !fs_type_excluded("ext4") && !fs_type_excluded("tmpfs") && !fs_type_excluded("cgroup3")
        );
    }

    #[test]
    fn net_devices_disks_and_pressure() {
        let net = "h\nh\n    lo: 10 2 0 0 0 0 0 0 10 2 0 0 0 0 0 0\n  eth0: 476 15 0 0 0 0 0 0 897 9 0 0 0 0 0 0\n";
        let d = parse_net_devices("n", net).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[1],
            NetDevice {
                device: "eth0".into(),
                rx_bytes: 476,
                rx_packets: 15,
                tx_bytes: 897,
                tx_packets: 9
            }
        );
        let disks = " 254 0 vda 3 0 100 0 5 0 200 0 0 0 0\n 254 1 vda1 1 0 10 0 1 0 20 0 0 0 0\n";
        assert_eq!(
            parse_disks("d", disks).unwrap(),
            [("vda".to_string(), 51_200, 102_400)]
        );
        let psi = "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n";
        assert_eq!(parse_pressure_some(psi), Some(2.5));
    }

    #[test]
    fn reads_this_host() {
        let r = NodeSource::new(Path::new("/proc")).read().unwrap();
        assert!(!r.cpus.is_empty() && r.boot_time.is_some());
        assert!(r
            .filesystems
            .iter()
            .any(|f| f.mountpoint == "/" && f.size > 0));
        assert!(r.net.iter().any(|n| n.device == "lo"));
    }
}
