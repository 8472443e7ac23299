//! The host source against the real thing: node_exporter, started on a free
//! port, read at (nearly) the same moments as our `ProcfsSource`, figure by
//! figure. Gauges are compared within stated tolerances; counters must lie
//! between two node_exporter reads taken before and after ours.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use gpuwatch_collector::sources::hostinfo::host_info;
use gpuwatch_collector::sources::procfs::{is_whole_disk, ProcfsConfig, ProcfsSource};

use crate::common::{free_port, ChildGuard};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// Kills node_exporter when the test ends, passed or panicked.
pub(crate) struct Exporter {
    _child: ChildGuard,
    pub(crate) port: u16,
}

/// The collectors compared here: a lighter scrape keeps node's read and
/// ours close in time.
const COLLECTORS: [&str; 7] = [
    "--collector.disable-defaults",
    "--collector.cpu",
    "--collector.meminfo",
    "--collector.loadavg",
    "--collector.filesystem",
    "--collector.netdev",
    "--collector.diskstats",
];

/// node_exporter on a free port with `args` (collectors and their flags),
/// once it answers.
pub(crate) fn start_node_exporter(args: &[&str]) -> Exporter {
    assert!(
        Path::new(NODE_EXPORTER).exists(),
        "{NODE_EXPORTER} is missing: scripts/test.sh installs it (Debian package prometheus-node-exporter)"
    );
    let port = free_port();
    let child = Command::new(NODE_EXPORTER)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let exporter = Exporter {
        _child: ChildGuard(child),
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while get_metrics(port).is_err() {
        assert!(
            Instant::now() < deadline,
            "node_exporter did not answer on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    exporter
}

/// One sample line of the Prometheus text format.
#[derive(Debug)]
struct Metric {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// GET /metrics over plain HTTP/1.0 (the server closes after the body).
fn get_metrics(port: u16) -> std::io::Result<Vec<Metric>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("bad answer: {head}")));
    }
    Ok(body.lines().filter_map(parse_line).collect())
}

/// `name{k="v",...} value [timestamp]`; comments and blank lines give None.
fn parse_line(line: &str) -> Option<Metric> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(i) => {
            let end = line.rfind('}')?;
            (
                &line[..i],
                parse_labels(&line[i + 1..end]),
                &line[end + 1..],
            )
        }
        None => {
            let (n, r) = line.split_once(' ')?;
            (n, BTreeMap::new(), r)
        }
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Metric {
        name: name.into(),
        labels,
        value,
    })
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    out
}

/// Sum of `name` over the series whose labels pass `keep`.
fn sum(m: &[Metric], name: &str, keep: impl Fn(&BTreeMap<String, String>) -> bool) -> f64 {
    m.iter()
        .filter(|x| x.name == name && keep(&x.labels))
        .map(|x| x.value)
        .sum()
}

fn one(m: &[Metric], name: &str) -> f64 {
    sum(m, name, |_| true)
}

fn label<'a>(l: &'a BTreeMap<String, String>, k: &str) -> &'a str {
    l.get(k).map_or("", String::as_str)
}

/// Node's busy share between two scrapes, node_exporter's modes.
fn node_cpu_busy(a: &[Metric], b: &[Metric]) -> f64 {
    let secs = |m: &[Metric], idle: bool| {
        sum(m, "node_cpu_seconds_total", |l| {
            !idle || matches!(label(l, "mode"), "idle" | "iowait")
        })
    };
    let total = secs(b, false) - secs(a, false);
    100.0 * (1.0 - (secs(b, true) - secs(a, true)) / total)
}

/// `first <= ours <= second`, printed.
fn bracketed(what: &str, first: f64, ours: i64, second: f64) {
    println!("{what}: node {first} <= ours {ours} <= node {second}");
    assert!(
        first <= ours as f64 && ours as f64 <= second,
        "{what} out of bracket"
    );
}

#[test]
fn host_sample_agrees_with_node_exporter() {
    let exporter = start_node_exporter(&COLLECTORS);
    let cfg = ProcfsConfig::default();
    let mut src = ProcfsSource::new(cfg.clone());
    let scrape = || get_metrics(exporter.port).unwrap();

    // Node's CPU window (a→b) and ours (s1→s2) are both 1 s, a scrape apart.
    let a = scrape();
    src.sample("h", Utc::now()).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let b = scrape();
    let s = src.sample("h", Utc::now()).unwrap();
    let c = scrape();
    let info = host_info(None, None, serde_json::json!({}), 0, &cfg).unwrap();

    // CPU busy %: within 15 percentage points; the windows are offset by a
    // scrape and the machine runs other work.
    let (ours, node) = (s.cpu_usage_percent.unwrap(), node_cpu_busy(&a, &b));
    println!("cpu busy %: ours {ours:.2}, node {node:.2}");
    assert!(
        (ours - node).abs() <= 15.0,
        "cpu busy: ours {ours}, node {node}"
    );

    // Memory used (MemTotal − MemAvailable): within 2% of MemTotal, since
    // other processes allocate between the reads.
    let total = one(&b, "node_memory_MemTotal_bytes");
    let node = total - one(&b, "node_memory_MemAvailable_bytes");
    let ours = s.memory_used.unwrap() as f64;
    println!("memory used: ours {ours}, node {node} (total {total})");
    assert!((ours - node).abs() <= 0.02 * total, "memory used");

    // load1: ±0.5 absolute or 25%: the kernel updates it every 5 s, so the
    // two reads can straddle an update.
    let (ours, node) = (s.cpu_load_1m.unwrap(), one(&b, "node_load1"));
    println!("load1: ours {ours}, node {node}");
    assert!((ours - node).abs() <= 0.5f64.max(0.25 * node), "load1");

    // Filesystem "/": size and avail within 1% (writes by others between reads).
    let root = |l: &BTreeMap<String, String>| label(l, "mountpoint") == "/";
    let size = sum(&b, "node_filesystem_size_bytes", root);
    let avail = sum(&b, "node_filesystem_avail_bytes", root);
    let used = size - sum(&b, "node_filesystem_free_bytes", root);
    assert!(size > 0.0, "node_exporter reports no filesystem on /");
    println!("fs / size: ours {}, node {size}", info.total_disk);
    println!(
        "fs / avail: ours {}, node {avail}",
        s.disk_available.unwrap()
    );
    println!("fs / used: ours {}, node {used}", s.disk_used.unwrap());
    assert!(
        (info.total_disk as f64 - size).abs() <= 0.01 * size,
        "fs size"
    );
    assert!(
        (s.disk_available.unwrap() as f64 - avail).abs() <= 0.01 * size,
        "fs avail"
    );
    assert!(
        (s.disk_used.unwrap() as f64 - used).abs() <= 0.01 * size,
        "fs used"
    );

    // Counters: node's read before ours <= ours <= node's read after ours.
    let not_lo = |l: &BTreeMap<String, String>| label(l, "device") != "lo";
    for (what, name, ours) in [
        (
            "network rx bytes",
            "node_network_receive_bytes_total",
            s.network_rx_bytes,
        ),
        (
            "network tx bytes",
            "node_network_transmit_bytes_total",
            s.network_tx_bytes,
        ),
    ] {
        bracketed(
            what,
            sum(&b, name, not_lo),
            ours.unwrap(),
            sum(&c, name, not_lo),
        );
    }
    let whole = |l: &BTreeMap<String, String>| is_whole_disk(label(l, "device"));
    let name = "node_disk_read_bytes_total";
    bracketed(
        "disk read bytes",
        sum(&b, name, whole),
        s.disk_io_read_bytes.unwrap(),
        sum(&c, name, whole),
    );
    let name = "node_disk_written_bytes_total";
    bracketed(
        "disk written bytes",
        sum(&b, name, whole),
        s.disk_io_write_bytes.unwrap(),
        sum(&c, name, whole),
    );
}
