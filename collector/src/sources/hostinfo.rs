//! What the inventory (`hosts`) knows about this machine, read from the
//! machine itself: hostname, first non-loopback IPv4 address, OS release,
//! architecture, CPU count, memory and the size of the configured
//! filesystems. [`host_info`] is called once at start (and whenever the
//! inventory is registered again); samples come from
//! [`super::procfs::ProcfsSource`].

use std::net::Ipv4Addr;

use gpuwatch_store::inventory::HostInfo;

use super::kernel_files::KernelFiles;
use super::procfs::{disk_space, parse_meminfo, read_parse, ProcfsConfig};
use super::SourceError;

/// Where os-release(5) lives, in the order the spec says to try.
const OS_RELEASE: &[&str] = &["/etc/os-release", "/usr/lib/os-release"];

/// This host as the inventory sees it.
///
/// `id` and `name` default to the hostname; `ip_address` is the first
/// non-loopback IPv4 address (127.0.0.1 when there is none); `total_disk`
/// sums the sizes of `procfs.mountpoints`, the filesystems whose use the
/// samples report; `total_gpu` is `gpu_count`, from the GPU source.
pub fn host_info(
    id: Option<&str>,
    name: Option<&str>,
    labels: serde_json::Value,
    gpu_count: i32,
    procfs: &ProcfsConfig,
) -> Result<HostInfo, SourceError> {
    let hostname = hostname()?;
    let mem = read_parse(
        &KernelFiles::new(0),
        &procfs.proc_path,
        "meminfo",
        parse_meminfo,
    )?;
    let disk = disk_space(&procfs.mountpoints)?;
    Ok(HostInfo {
        id: id.unwrap_or(&hostname).to_owned(),
        name: name.unwrap_or(&hostname).to_owned(),
        ip_address: first_ipv4().unwrap_or(Ipv4Addr::LOCALHOST).to_string(),
        os_type: "linux".into(),
        os_version: os_version(),
        arch: std::env::consts::ARCH.into(),
        total_cpu: cpu_count(procfs),
        total_memory: i64::try_from(mem.total).unwrap_or(i64::MAX),
        total_disk: i64::try_from(disk.size).unwrap_or(i64::MAX),
        total_gpu: gpu_count,
        labels,
        hostname,
    })
}

fn hostname() -> Result<String, SourceError> {
    let h = nix::unistd::gethostname().map_err(|e| SourceError::Read {
        path: "gethostname()".into(),
        source: e.into(),
    })?;
    Ok(h.to_string_lossy().into_owned())
}

/// The first IPv4 address on an interface that is not loopback. An error
/// from getifaddrs leaves the fallback rather than failing registration:
/// the address is informative, not an identity.
fn first_ipv4() -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|ifa| Some(ifa.address?.as_sockaddr_in()?.ip()))
        .find(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

/// PRETTY_NAME of os-release, or "Linux" (the spec's default) without one.
fn os_version() -> String {
    OS_RELEASE
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| parse_os_release(&t))
        .unwrap_or_else(|| "Linux".into())
}

/// PRETTY_NAME from os-release text, unquoted; `None` when absent or empty.
fn parse_os_release(text: &str) -> Option<String> {
    let raw = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("PRETTY_NAME="))
        .next_back()?; // a later assignment wins, as in the shell
    let v = unquote(raw.trim());
    (!v.is_empty()).then_some(v)
}

/// Shell-style quoting as os-release(5) allows: "…" with \-escapes, or '…'.
fn unquote(v: &str) -> String {
    if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return inner.to_owned();
    }
    let inner = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    out
}

/// Processors listed in /proc/cpuinfo: every CPU of the host, where
/// `available_parallelism` (the fallback) counts only those this process
/// may use under its affinity mask and cgroup quota.
fn cpu_count(procfs: &ProcfsConfig) -> i32 {
    let listed = read_parse(
        &KernelFiles::new(0),
        &procfs.proc_path,
        "cpuinfo",
        |_, t| Ok(t.lines().filter(|l| l.starts_with("processor")).count()),
    )
    .unwrap_or(0);
    let n = if listed > 0 {
        listed
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    };
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_pretty_name_unquoted() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n";
        assert_eq!(
            parse_os_release(debian).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        let ubuntu = "NAME=\"Ubuntu\"\nPRETTY_NAME='Ubuntu 24.04.1 LTS'\n";
        assert_eq!(
            parse_os_release(ubuntu).as_deref(),
            Some("Ubuntu 24.04.1 LTS")
        );
        assert_eq!(
            parse_os_release("PRETTY_NAME=Alpine\n").as_deref(),
            Some("Alpine")
        );
        assert_eq!(
            parse_os_release(r#"PRETTY_NAME="Say \"hi\" \\o/""#).as_deref(),
            Some(r#"Say "hi" \o/"#)
        );
    }

    #[test]
    fn os_release_without_pretty_name_is_none() {
        assert_eq!(parse_os_release("NAME=Linux\nID=linux\n"), None);
        assert_eq!(parse_os_release("PRETTY_NAME=\"\"\n"), None);
        assert_eq!(parse_os_release(""), None);
    }

    #[test]
    fn this_machine() {
        let labels = serde_json::json!({"zone": "a"});
        let h = host_info(None, Some("n"), labels.clone(), 2, &ProcfsConfig::default()).unwrap();
        assert_eq!(h.id, h.hostname);
        assert_eq!((h.name.as_str(), h.total_gpu, &h.labels), ("n", 2, &labels));
        assert!(
            h.total_cpu >= 1 && h.total_memory > 0 && h.total_disk > 0,
            "{h:?}"
        );
        assert!(h.ip_address.parse::<Ipv4Addr>().is_ok(), "{h:?}");
        assert_eq!(h.arch, std::env::consts::ARCH);
    }
}
