//! Host metrics from /proc and statfs, with node_exporter's definitions so
//! that a dashboard built on either reads the same figures.
//!
//! [`ProcfsSource::sample`] reads /proc/stat (CPU busy share between two
//! calls), /proc/loadavg, /proc/meminfo, /proc/diskstats (whole disks only),
//! /proc/net/dev (every interface but the excluded ones) and statfs of the
//! configured mountpoints, and returns one [`HostSample`] with every column
//! but `gpu_avg_*`, which the run loop fills from the GPU source. Each file
//! is parsed by a small pure function, unit-tested on captured text.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use gpuwatch_store::HostSample;
use serde::Deserialize;

use super::kernel_files::{KernelFiles, HOST_FILES};
use super::SourceError;

/// `[collector.host]`: where and what the host source reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcfsConfig {
    /// Where procfs is mounted (default "/proc"; a container that bind-mounts
    /// the host's /proc elsewhere points here).
    pub proc_path: PathBuf,
    /// Filesystems whose size and free space are summed into `disk_*`
    /// (default ["/"]).
    pub mountpoints: Vec<PathBuf>,
    /// Interfaces left out of the network counters (default ["lo"]). Unlike
    /// node_exporter, which exports every netdev device, we leave loopback
    /// out by default: its traffic never leaves the host.
    pub exclude_interfaces: Vec<String>,
}

impl Default for ProcfsConfig {
    fn default() -> Self {
        ProcfsConfig {
            proc_path: PathBuf::from("/proc"),
            mountpoints: vec![PathBuf::from("/")],
            exclude_interfaces: vec!["lo".into()],
        }
    }
}

impl ProcfsConfig {
    /// Every problem, as `collector.host.<key>: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !self.proc_path.is_absolute() {
            e.push(format!(
                "collector.host.proc_path: must be an absolute path, got {:?}",
                self.proc_path
            ));
        }
        if self.mountpoints.is_empty() {
            e.push(
                "collector.host.mountpoints: must name at least one mountpoint, e.g. [\"/\"]"
                    .into(),
            );
        }
        for m in self.mountpoints.iter().filter(|m| !m.is_absolute()) {
            e.push(format!(
                "collector.host.mountpoints: {m:?} must be an absolute path"
            ));
        }
        if self.exclude_interfaces.iter().any(|i| i.is_empty()) {
            e.push("collector.host.exclude_interfaces: names must not be empty".into());
        }
        e
    }
}

/// Reads host samples; keeps the last CPU times to turn counters into a share.
#[derive(Debug)]
pub struct ProcfsSource {
    cfg: ProcfsConfig,
    last_cpu: Option<CpuTimes>,
    /// stat, loadavg, meminfo, diskstats and net/dev, read every cycle.
    files: KernelFiles,
}

/// Aggregate CPU ticks of /proc/stat's `cpu` line.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct CpuTimes {
    /// idle + iowait
    idle: u64,
    /// user+nice+system+idle+iowait+irq+softirq+steal: node_exporter's modes;
    /// guest time is already inside user/nice, so adding it would count it twice.
    total: u64,
}

/// MemTotal and MemAvailable, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Meminfo {
    pub(crate) total: u64,
    pub(crate) available: u64,
}

/// Network counters summed over the counted interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct NetTotals {
    rx_bytes: u64,
    rx_packets: u64,
    tx_bytes: u64,
    tx_packets: u64,
}

/// Blocks of the configured filesystems, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct DiskSpace {
    /// f_blocks × f_frsize (df's and node_exporter's size)
    pub(crate) size: u64,
    /// (f_blocks − f_bfree) × f_frsize
    pub(crate) used: u64,
    /// f_bavail × f_frsize: what an unprivileged user can still write
    pub(crate) avail: u64,
}

impl ProcfsSource {
    /// A source reading what `cfg` names.
    pub fn new(cfg: ProcfsConfig) -> Self {
        ProcfsSource {
            cfg,
            last_cpu: None,
            files: KernelFiles::new(HOST_FILES),
        }
    }

    /// One sample of this host at `at`; `gpu_avg_*` are left `None`.
    ///
    /// `cpu_usage_percent` is the busy share since the previous call (since
    /// boot on the first), `None` when no tick passed in between.
    pub fn sample(&mut self, host_id: &str, at: DateTime<Utc>) -> Result<HostSample, SourceError> {
        let cpu = read_parse(&self.files, &self.cfg.proc_path, "stat", parse_stat)?;
        let load = read_parse(&self.files, &self.cfg.proc_path, "loadavg", parse_loadavg)?;
        let mem = read_parse(&self.files, &self.cfg.proc_path, "meminfo", parse_meminfo)?;
        let (read, written) = read_parse(
            &self.files,
            &self.cfg.proc_path,
            "diskstats",
            parse_diskstats,
        )?;
        let net = read_parse(&self.files, &self.cfg.proc_path, "net/dev", |p, t| {
            parse_net_dev(p, t, &self.cfg.exclude_interfaces)
        })?;
        let disk = disk_space(&self.cfg.mountpoints)?;
        let usage = cpu_usage(self.last_cpu.unwrap_or_default(), cpu);
        self.last_cpu = Some(cpu);
        let used = mem.total.saturating_sub(mem.available);
        Ok(HostSample {
            host_id: host_id.to_owned(),
            collected_at: at,
            cpu_usage_percent: usage,
            cpu_load_1m: Some(load[0]),
            cpu_load_5m: Some(load[1]),
            cpu_load_15m: Some(load[2]),
            memory_used: Some(to_i64(used)),
            memory_available: Some(to_i64(mem.available)),
            memory_usage_percent: percent(used, mem.total),
            disk_used: Some(to_i64(disk.used)),
            disk_available: Some(to_i64(disk.avail)),
            // df's Use%: used / (used + avail); blocks reserved for root count as neither.
            disk_usage_percent: percent(disk.used, disk.used + disk.avail),
            disk_io_read_bytes: Some(to_i64(read)),
            disk_io_write_bytes: Some(to_i64(written)),
            network_rx_bytes: Some(to_i64(net.rx_bytes)),
            network_tx_bytes: Some(to_i64(net.tx_bytes)),
            network_rx_packets: Some(to_i64(net.rx_packets)),
            network_tx_packets: Some(to_i64(net.tx_packets)),
            gpu_avg_utilization: None,
            gpu_avg_memory_used: None,
            gpu_avg_temperature: None,
            gpu_avg_power: None,
        })
    }
}

/// Reads `<proc>/<name>` (a file of one record, or of records under a KiB
/// each) and parses it, errors naming the full path.
pub(crate) fn read_parse<T>(
    files: &KernelFiles,
    proc: &Path,
    name: &str,
    parse: impl FnOnce(&str, &str) -> Result<T, SourceError>,
) -> Result<T, SourceError> {
    let path = proc.join(name);
    let shown = path.display().to_string();
    let text = files
        .read_short_records(&path)
        .map_err(|source| SourceError::Read {
            path: shown.clone(),
            source,
        })?;
    parse(&shown, &text)
}

pub(crate) fn bad(path: &str, what: impl Into<String>) -> SourceError {
    SourceError::Parse {
        path: path.to_owned(),
        what: what.into(),
    }
}

pub(crate) fn num<T: std::str::FromStr>(path: &str, field: &str) -> Result<T, SourceError> {
    field
        .parse()
        .map_err(|_| bad(path, format!("{field:?} is not a number")))
}

// Counters beyond i64::MAX would take centuries; saturate rather than fail.
fn to_i64(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| 100.0 * part as f64 / whole as f64)
}

/// Busy share between two readings: 100 × (1 − Δ(idle+iowait) / Δtotal).
fn cpu_usage(prev: CpuTimes, now: CpuTimes) -> Option<f64> {
    let total = now.total.checked_sub(prev.total).filter(|&t| t > 0)?;
    let idle = now.idle.saturating_sub(prev.idle).min(total);
    Some(100.0 * (1.0 - idle as f64 / total as f64))
}

/// The aggregate `cpu` line of /proc/stat.
fn parse_stat(path: &str, text: &str) -> Result<CpuTimes, SourceError> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| bad(path, "no aggregate \"cpu\" line"))?;
    let ticks = line
        .split_whitespace()
        .skip(1)
        .take(8) // user nice system idle iowait irq softirq steal; not guest, guest_nice
        .map(|f| num::<u64>(path, f))
        .collect::<Result<Vec<_>, _>>()?;
    if ticks.len() < 4 {
        return Err(bad(path, "the cpu line has fewer than 4 fields"));
    }
    Ok(CpuTimes {
        idle: ticks[3] + ticks.get(4).copied().unwrap_or(0),
        total: ticks.iter().sum(),
    })
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn parse_loadavg(path: &str, text: &str) -> Result<[f64; 3], SourceError> {
    let f: Vec<&str> = text.split_whitespace().take(3).collect();
    if f.len() < 3 {
        return Err(bad(path, "fewer than 3 load averages"));
    }
    Ok([num(path, f[0])?, num(path, f[1])?, num(path, f[2])?])
}

/// MemTotal and MemAvailable (kernel ≥ 3.14), converted from kB to bytes.
pub(crate) fn parse_meminfo(path: &str, text: &str) -> Result<Meminfo, SourceError> {
    let field = |key: &str| -> Result<u64, SourceError> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .ok_or_else(|| bad(path, format!("no {key}")))?;
        let mut parts = line.split_whitespace();
        let value: u64 = num(path, parts.next().unwrap_or(""))?;
        match parts.next() {
            Some("kB") => Ok(value * 1024),
            None => Ok(value),
            Some(unit) => Err(bad(path, format!("{key}: unknown unit {unit:?}"))),
        }
    };
    Ok(Meminfo {
        total: field("MemTotal")?,
        available: field("MemAvailable")?,
    })
}

/// Bytes read and written, summed over whole disks (sectors are 512 bytes
/// in /proc/diskstats whatever the device's sector size).
fn parse_diskstats(path: &str, text: &str) -> Result<(u64, u64), SourceError> {
    let (mut read, mut written) = (0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            return Err(bad(path, format!("short line {line:?}")));
        }
        if is_whole_disk(f[2]) {
            read += num::<u64>(path, f[5])? * 512;
            written += num::<u64>(path, f[9])? * 512;
        }
    }
    Ok((read, written))
}

/// Whether a block device counts towards disk I/O: node_exporter's default
/// `--collector.diskstats.device-exclude`,
/// `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`, negated, so
/// partitions and RAM, loop and floppy devices are left out and a read is
/// counted once, on its disk.
pub fn is_whole_disk(name: &str) -> bool {
    // Every alternative ends in a non-digit, so the trailing \d+ is exactly
    // the run of trailing digits.
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if stem.len() == name.len() {
        return true;
    }
    let one_letter_disk = ["hd", "sd", "vd", "xvd"].iter().any(|p| {
        stem.strip_prefix(p)
            .is_some_and(|r| r.len() == 1 && r.as_bytes()[0].is_ascii_lowercase())
    });
    let excluded = matches!(stem, "ram" | "zram" | "loop" | "fd")
        || one_letter_disk
        || is_nvme_partition_stem(stem);
    !excluded
}

/// `nvme\d+n\d+p`
fn is_nvme_partition_stem(stem: &str) -> bool {
    let digits_then = |s: &str, c: char| -> Option<usize> {
        let n = s.len() - s.trim_start_matches(|d: char| d.is_ascii_digit()).len();
        (n > 0 && s[n..].starts_with(c)).then_some(n + 1)
    };
    let Some(rest) = stem.strip_prefix("nvme") else {
        return false;
    };
    let Some(i) = digits_then(rest, 'n') else {
        return false;
    };
    digits_then(&rest[i..], 'p').is_some_and(|j| j == rest.len() - i)
}

/// Bytes and packets received and sent, summed over every interface but the excluded.
fn parse_net_dev(path: &str, text: &str, exclude: &[String]) -> Result<NetTotals, SourceError> {
    let mut t = NetTotals::default();
    for line in text.lines().skip(2).filter(|l| !l.trim().is_empty()) {
        let (name, rest) = line
            .split_once(':')
            .ok_or_else(|| bad(path, format!("no interface name in {line:?}")))?;
        if exclude.iter().any(|x| x == name.trim()) {
            continue;
        }
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 16 {
            return Err(bad(path, format!("short line {line:?}")));
        }
        t.rx_bytes += num::<u64>(path, f[0])?;
        t.rx_packets += num::<u64>(path, f[1])?;
        t.tx_bytes += num::<u64>(path, f[8])?;
        t.tx_packets += num::<u64>(path, f[9])?;
    }
    Ok(t)
}

/// Size, used and available bytes summed over `mountpoints`.
pub(crate) fn disk_space(mountpoints: &[PathBuf]) -> Result<DiskSpace, SourceError> {
    let mut d = DiskSpace::default();
    for m in mountpoints {
        let st = nix::sys::statvfs::statvfs(m.as_path()).map_err(|e| SourceError::Read {
            path: m.display().to_string(),
            source: e.into(),
        })?;
        let frag = st.fragment_size() as u64;
        d.size += st.blocks() as u64 * frag;
        d.used += (st.blocks() as u64).saturating_sub(st.blocks_free() as u64) * frag;
        d.avail += st.blocks_available() as u64 * frag;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a 2-CPU Debian 12 VM (kernel 6.1), trimmed.
    const STAT: &str = "cpu  242078 0 70706 1543348 6192 0 3706 2714 500 0
cpu0 132766 0 33757 770938 1869 0 1183 1378 0 0
intr 1 2 3
ctxt 99
";
    const STAT_LATER: &str = "cpu  242178 0 70706 1543598 6242 0 3706 2714 500 0\n";
    const LOADAVG: &str = "1.60 1.03 0.81 2/159 12127\n";
    const MEMINFO: &str = "MemTotal:       24684096 kB
MemFree:        19947188 kB
MemAvailable:   23056352 kB
Buffers:            3916 kB
HugePages_Total:       0
";
    const DISKSTATS: &str = "   7       0 loop0 9 0 18 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 398087 24850 19673666 766717 576588 79963 88512584 359961 0 109472 1150482 90426 28 32716024 13479 160683 10323
 254       1 vda1 100 0 1000 7 10 0 2000 3 0 4 10 0 0 0 0 0 0
 253       0 zram0 5 0 40 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 259       0 nvme0n1 10 0 100 0 20 0 200 0 0 0 0 0 0 0 0
 259       1 nvme0n1p1 10 0 100 0 20 0 200 0 0 0 0 0 0 0 0
 252       0 dm-0 1 0 8 0 2 0 16 0 0 0 0 0 0 0 0
";
    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 10974880285 2208690    0    0    0     0          0         0 10974880285 2208690    0    0    0     0       0          0
  ifb0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 476425198   15230    0    0    0     0          0         0   897224    9976    0    0    0     0       0          0
";

    fn is_parse_error_of(r: Result<impl std::fmt::Debug, SourceError>, file: &str) -> bool {
        matches!(r, Err(SourceError::Parse { ref path, .. }) if path.ends_with(file))
    }

    #[test]
    fn stat_counts_node_exporter_modes_and_not_guest() {
        let t = parse_stat("stat", STAT).unwrap();
        assert_eq!(t.idle, 1_543_348 + 6_192);
        assert_eq!(
            t.total,
            242_078 + 70_706 + 1_543_348 + 6_192 + 3_706 + 2_714
        );
        let later = parse_stat("stat", STAT_LATER).unwrap();
        // 400 ticks passed, 300 of them idle or iowait.
        assert_eq!(cpu_usage(t, later), Some(25.0));
        assert_eq!(cpu_usage(later, later), None);
        let since_boot = cpu_usage(CpuTimes::default(), t).unwrap();
        assert!((since_boot - 17.08).abs() < 0.01, "{since_boot}");
    }

    #[test]
    fn loadavg_and_meminfo() {
        assert_eq!(parse_loadavg("l", LOADAVG).unwrap(), [1.60, 1.03, 0.81]);
        let m = parse_meminfo("m", MEMINFO).unwrap();
        assert_eq!(
            (m.total, m.available),
            (24_684_096 * 1024, 23_056_352 * 1024)
        );
    }

    #[test]
    fn diskstats_sums_whole_disks_in_512_byte_sectors() {
        // vda + nvme0n1 + dm-0; not loop0, zram0 or the partitions.
        let (r, w) = parse_diskstats("d", DISKSTATS).unwrap();
        assert_eq!(r, (19_673_666 + 100 + 8) * 512);
        assert_eq!(w, (88_512_584 + 200 + 16) * 512);
    }

    #[test]
    fn whole_disks_follow_node_exporters_default_exclude() {
        for d in [
            "sda", "vda", "xvdb", "nvme0n1", "dm-0", "md0", "sdaa1", "mmcblk0",
        ] {
            assert!(is_whole_disk(d), "{d} should count");
        }
        for d in [
            "sda1",
            "vdb12",
            "xvda1",
            "hdc3",
            "nvme0n1p1",
            "nvme12n3p45",
            "loop7",
            "ram0",
            "zram1",
            "fd0",
        ] {
            assert!(!is_whole_disk(d), "{d} should not count");
        }
    }

    #[test]
    fn net_dev_sums_all_but_excluded_interfaces() {
        let t = parse_net_dev("n", NET_DEV, &["lo".into()]).unwrap();
        assert_eq!(
            (t.rx_bytes, t.rx_packets, t.tx_bytes, t.tx_packets),
            (476_425_198, 15_230, 897_224, 9_976)
        );
        let all = parse_net_dev("n", NET_DEV, &[]).unwrap();
        assert_eq!(all.rx_packets, 15_230 + 2_208_690);
    }

    #[test]
    fn malformed_files_are_parse_errors_naming_the_file() {
        assert!(is_parse_error_of(
            parse_stat("/proc/stat", "intr 1 2\n"),
            "stat"
        ));
        assert!(is_parse_error_of(
            parse_stat("/proc/stat", "cpu  1 x 3 4\n"),
            "stat"
        ));
        assert!(is_parse_error_of(
            parse_loadavg("/proc/loadavg", "0.1 0.2\n"),
            "loadavg"
        ));
        assert!(is_parse_error_of(
            parse_meminfo("/proc/meminfo", "MemTotal: 1 kB\n"),
            "meminfo"
        ));
        assert!(is_parse_error_of(
            parse_meminfo("/proc/meminfo", "MemTotal: 1 MB\nMemAvailable: 1 kB\n"),
            "meminfo"
        ));
        assert!(is_parse_error_of(
            parse_diskstats("/proc/diskstats", "8 0 sda 1 2\n"),
            "diskstats"
        ));
        assert!(is_parse_error_of(
            parse_net_dev("/proc/net/dev", "h\nh\neth0 1 2 3\n", &[]),
            "net/dev"
        ));
    }

    fn fake_proc(meminfo: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("net")).unwrap();
        for (name, text) in [
            ("stat", STAT),
            ("loadavg", LOADAVG),
            ("meminfo", meminfo),
            ("diskstats", DISKSTATS),
            ("net/dev", NET_DEV),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn sample_fills_every_column_but_gpu_averages() {
        let proc = fake_proc(MEMINFO);
        let cfg = ProcfsConfig {
            proc_path: proc.path().into(),
            ..Default::default()
        };
        let mut src = ProcfsSource::new(cfg);
        let s = src.sample("h1", Utc::now()).unwrap();
        assert_eq!(s.host_id, "h1");
        assert_eq!(s.memory_used, Some((24_684_096 - 23_056_352) * 1024));
        assert!((s.memory_usage_percent.unwrap() - 6.594).abs() < 0.001);
        assert_eq!(s.cpu_load_15m, Some(0.81));
        assert_eq!(s.network_tx_packets, Some(9_976));
        assert!(s.disk_available.unwrap() > 0 && s.disk_usage_percent.unwrap() <= 100.0);
        assert!(s.cpu_usage_percent.is_some() && s.gpu_avg_power.is_none());
        // No tick between two reads of the same file: no CPU figure.
        assert_eq!(
            src.sample("h1", Utc::now()).unwrap().cpu_usage_percent,
            None
        );
    }

    #[test]
    fn sample_errors_name_the_full_path() {
        let proc = fake_proc("MemTotal: 1 kB\n");
        let cfg = ProcfsConfig {
            proc_path: proc.path().into(),
            ..Default::default()
        };
        let e = ProcfsSource::new(cfg).sample("h", Utc::now()).unwrap_err();
        assert!(
            e.to_string()
                .contains(&proc.path().join("meminfo").display().to_string()),
            "{e}"
        );
        let cfg = ProcfsConfig {
            mountpoints: vec!["/no/such/mount".into()],
            proc_path: proc.path().into(),
            ..Default::default()
        };
        std::fs::write(proc.path().join("meminfo"), MEMINFO).unwrap();
        let e = ProcfsSource::new(cfg).sample("h", Utc::now()).unwrap_err();
        assert!(e.to_string().contains("/no/such/mount"), "{e}");
    }

    #[test]
    fn config_defaults_validation_and_unknown_keys() {
        assert!(ProcfsConfig::default().validate().is_empty());
        let bad = ProcfsConfig {
            proc_path: "proc".into(),
            mountpoints: vec![],
            exclude_interfaces: vec![String::new()],
        };
        let e = bad.validate();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e.iter().all(|l| l.starts_with("collector.host.")), "{e:?}");
        assert!(serde_json::from_str::<ProcfsConfig>(r#"{"mountpoint": "/"}"#).is_err());
        let c: ProcfsConfig = serde_json::from_str(r#"{"mountpoints": ["/", "/data"]}"#).unwrap();
        assert_eq!(
            (c.mountpoints.len(), c.proc_path),
            (2, PathBuf::from("/proc"))
        );
    }
}
