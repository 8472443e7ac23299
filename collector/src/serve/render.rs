//! The agent's exposition text: GPUs through the exporter's own GPU
//! renderer (so names, order, labels and conversions are those of
//! `gpuwatch serve`), then the host under node_exporter's names.

use std::collections::HashMap;

use gpuwatch_exporter::{gpu_families, header, label_set, sample_line, sample_value, GpuLabels};
use gpuwatch_store::catalogue::Number;
use gpuwatch_store::inventory::GpuInfo;
use gpuwatch_store::{GpuReading, Sample};

use crate::sources::cgroup::pod::PodLabels;
use crate::sources::node::{NodeReading, CPU_MODES};

/// What labels one GPU besides its samples.
pub(crate) struct GpuMeta<'a> {
    pub(crate) info: Option<&'a GpuInfo>,
    pub(crate) hostname: &'a str,
    pub(crate) pod: Option<&'a PodLabels>,
}

/// The GPU families of `readings`, labelled from `meta` (same order), with
/// `xid` the sticky last XID per UUID.
pub(crate) fn gpus(
    out: &mut String,
    readings: &[GpuReading],
    meta: &[GpuMeta<'_>],
    xid: &HashMap<String, i32>,
) {
    let labels: Vec<String> = readings
        .iter()
        .zip(meta)
        .map(|(r, m)| gpu_label_set(r, m))
        .collect();
    let numbers: Vec<Vec<Option<Number>>> = readings.iter().map(|r| r.sample.numbers()).collect();
    gpu_families(
        out,
        &labels,
        |g, f| sample_value(&gpuwatch_exporter::families::GPU[f], &numbers[g]),
        |g| xid.get(&readings[g].uuid).copied().unwrap_or(0),
    );
}

fn gpu_label_set(r: &GpuReading, m: &GpuMeta<'_>) -> String {
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if let Some(p) = m.pod {
        // dcgm-exporter's pod-attribution label names.
        extra.push(("container", &p.container));
        if let Some(ns) = &p.namespace {
            extra.push(("namespace", ns));
        }
        extra.push(("pod", &p.pod));
    }
    // pci_bus_id and the driver version are not in the inventory yet: the
    // central exporter serves them empty too, until `gpus` holds them.
    GpuLabels {
        index: m.info.map_or(0, |i| i.gpu_index),
        uuid: &r.uuid,
        pci_bus_id: "",
        model_name: m.info.map_or("", |i| i.name.as_str()),
        hostname: m.hostname,
        driver_version: "",
        extra: &extra,
    }
    .render()
}

/// One node_exporter family: name, type, help.
type Fam = (&'static str, &'static str, &'static str);

/// A family and the field of `T` it reports.
type Field<T> = (Fam, fn(&T) -> u64);

fn family(out: &mut String, f: Fam, lines: impl IntoIterator<Item = (String, f64)>) {
    let mut lines = lines.into_iter().peekable();
    if lines.peek().is_none() {
        return;
    }
    header(out, f.0, f.2, f.1);
    for (labels, v) in lines {
        sample_line(out, f.0, &labels, v);
    }
}

fn one(out: &mut String, f: Fam, v: f64) {
    family(out, f, [(String::new(), v)]);
}

/// The host under node_exporter's names, labels and help texts; `now` is
/// `node_time_seconds`.
pub(crate) fn node(out: &mut String, n: &NodeReading, now: f64) {
    one(
        out,
        (
            "node_boot_time_seconds",
            "gauge",
            "Node boot time, in unixtime.",
        ),
        n.boot_time.unwrap_or(0.0),
    );
    family(
        out,
        (
            "node_cpu_seconds_total",
            "counter",
            "Seconds the CPUs spent in each mode.",
        ),
        n.cpus.iter().flat_map(|(cpu, secs)| {
            let cpu = cpu.to_string();
            CPU_MODES
                .iter()
                .zip(secs)
                .map(move |(mode, s)| (label_set(&[("cpu", &cpu), ("mode", mode)]), *s))
        }),
    );
    let cpu_load = [
        ("node_load1", "gauge", "1m load average."),
        ("node_load5", "gauge", "5m load average."),
        ("node_load15", "gauge", "15m load average."),
    ];
    for (f, v) in cpu_load.into_iter().zip(n.load) {
        one(out, f, v);
    }
    for (field, bytes) in &n.memory {
        let name = format!("node_memory_{field}_bytes");
        let help = format!("Memory information field {field}_bytes.");
        header(out, &name, &help, "gauge");
        sample_line(out, &name, "", *bytes as f64);
    }
    filesystems(out, n);
    network(out, n);
    disks(out, n);
    let psi = [
        (
            "cpu",
            (
                "node_pressure_cpu_waiting_seconds_total",
                "counter",
                "Total time in seconds that processes have waited for CPU time",
            ),
        ),
        (
            "io",
            (
                "node_pressure_io_waiting_seconds_total",
                "counter",
                "Total time in seconds that processes have waited due to IO congestion",
            ),
        ),
        (
            "memory",
            (
                "node_pressure_memory_waiting_seconds_total",
                "counter",
                "Total time in seconds that processes have waited for memory",
            ),
        ),
    ];
    for (resource, f) in psi {
        if let Some((_, v)) = n.pressure.iter().find(|(r, _)| *r == resource) {
            one(out, f, *v);
        }
    }
    one(
        out,
        (
            "node_time_seconds",
            "gauge",
            "System time in seconds since epoch (1970).",
        ),
        now,
    );
}

fn filesystems(out: &mut String, n: &NodeReading) {
    // node_exporter's label order: device, fstype, mountpoint.
    let labels: Vec<String> = n
        .filesystems
        .iter()
        .map(|f| {
            label_set(&[
                ("device", &f.device),
                ("fstype", &f.fstype),
                ("mountpoint", &f.mountpoint),
            ])
        })
        .collect();
    let fams: [Field<crate::sources::node::Filesystem>; 3] = [
        (
            (
                "node_filesystem_avail_bytes",
                "gauge",
                "Filesystem space available to non-root users in bytes.",
            ),
            |f| f.avail,
        ),
        (
            (
                "node_filesystem_free_bytes",
                "gauge",
                "Filesystem free space in bytes.",
            ),
            |f| f.free,
        ),
        (
            (
                "node_filesystem_size_bytes",
                "gauge",
                "Filesystem size in bytes.",
            ),
            |f| f.size,
        ),
    ];
    for (fam, get) in fams {
        family(
            out,
            fam,
            n.filesystems
                .iter()
                .zip(&labels)
                .map(|(f, l)| (l.clone(), get(f) as f64)),
        );
    }
}

fn network(out: &mut String, n: &NodeReading) {
    let labels: Vec<String> = n
        .net
        .iter()
        .map(|d| label_set(&[("device", &d.device)]))
        .collect();
    let fams: [Field<crate::sources::node::NetDevice>; 4] = [
        (
            (
                "node_network_receive_bytes_total",
                "counter",
                "Network device statistic receive_bytes.",
            ),
            |d| d.rx_bytes,
        ),
        (
            (
                "node_network_receive_packets_total",
                "counter",
                "Network device statistic receive_packets.",
            ),
            |d| d.rx_packets,
        ),
        (
            (
                "node_network_transmit_bytes_total",
                "counter",
                "Network device statistic transmit_bytes.",
            ),
            |d| d.tx_bytes,
        ),
        (
            (
                "node_network_transmit_packets_total",
                "counter",
                "Network device statistic transmit_packets.",
            ),
            |d| d.tx_packets,
        ),
    ];
    for (fam, get) in fams {
        family(
            out,
            fam,
            n.net
                .iter()
                .zip(&labels)
                .map(|(d, l)| (l.clone(), get(d) as f64)),
        );
    }
}

fn disks(out: &mut String, n: &NodeReading) {
    let labels: Vec<String> = n
        .disks
        .iter()
        .map(|d| label_set(&[("device", &d.0)]))
        .collect();
    family(
        out,
        (
            "node_disk_read_bytes_total",
            "counter",
            "The total number of bytes read successfully.",
        ),
        n.disks
            .iter()
            .zip(&labels)
            .map(|(d, l)| (l.clone(), d.1 as f64)),
    );
    family(
        out,
        (
            "node_disk_written_bytes_total",
            "counter",
            "The total number of bytes written successfully.",
        ),
        n.disks
            .iter()
            .zip(&labels)
            .map(|(d, l)| (l.clone(), d.2 as f64)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::node::{Filesystem, NetDevice};

    #[test]
    fn node_text_has_node_exporters_names_and_labels() {
        let n = NodeReading {
            cpus: vec![(0, [1.5, 0.0, 2.0, 10.0, 0.5, 0.0, 0.25, 0.0])],
            boot_time: Some(1_700_000_000.0),
            memory: vec![("MemTotal", 1024), ("SwapFree", 0)],
            filesystems: vec![Filesystem {
                device: "/dev/vda1".into(),
                mountpoint: "/".into(),
                fstype: "ext4".into(),
                size: 100,
                free: 40,
                avail: 30,
            }],
            net: vec![NetDevice {
                device: "eth0".into(),
                rx_bytes: 7,
                ..Default::default()
            }],
            disks: vec![("vda".into(), 512, 1024)],
            load: [0.5, 0.25, 0.125],
            pressure: vec![("io", 2.5)],
        };
        let mut out = String::new();
        node(&mut out, &n, 1_700_000_100.5);
        for line in [
            "# TYPE node_cpu_seconds_total counter",
            "node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 1.5",
            "node_cpu_seconds_total{cpu=\"0\",mode=\"softirq\"} 0.25",
            "node_boot_time_seconds 1700000000",
            "node_load15 0.125",
            "node_memory_MemTotal_bytes 1024",
            "node_memory_SwapFree_bytes 0",
            "node_filesystem_avail_bytes{device=\"/dev/vda1\",fstype=\"ext4\",mountpoint=\"/\"} 30",
            "node_filesystem_size_bytes{device=\"/dev/vda1\",fstype=\"ext4\",mountpoint=\"/\"} 100",
            "node_network_receive_bytes_total{device=\"eth0\"} 7",
            "node_disk_written_bytes_total{device=\"vda\"} 1024",
            "node_pressure_io_waiting_seconds_total 2.5",
            "node_time_seconds 1700000100.5",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        assert!(!out.contains("node_pressure_cpu"), "{out}");
        // Each family's header once.
        assert_eq!(out.matches("# TYPE node_cpu_seconds_total").count(), 1);
    }
}
