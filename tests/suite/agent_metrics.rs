//! The agent's own `/metrics` (`collector.listen`) against what it stands
//! in for on a GPU host:
//! - node_exporter: a real Prometheus scrapes `gpuwatch collector` (this
//!   machine, `--print`, no database) and a real node_exporter side by
//!   side, and the PromQL of Node Exporter Full's "Quick CPU / Mem / Disk"
//!   and "Basic CPU / Mem / Net / Disk" rows agrees between the two jobs;
//! - dcgm-exporter as `gpuwatch serve` renders it: the same GPU samples give
//!   the same DCGM lines from the agent and from the central exporter, and
//!   the DCGM dashboard works when Prometheus scrapes the agent directly;
//! - pod attribution: a GPU whose process sits in a real cgroup with the
//!   kubelet's layout carries `pod`, `namespace` and `container`.
//!
//! The expressions are Node Exporter Full's (grafana.com 1860, as published
//! in rfmoz/grafana-dashboards `prometheus/node-exporter-full.json`), with
//! `instance="$node",job="$job"` replaced by the job and `$__rate_interval`
//! by [`RATE`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use gpuwatch_collector::serve::{listen, AgentMetrics};
use gpuwatch_collector::sinks::copy::CopySink;
use gpuwatch_collector::sinks::Sink;
use gpuwatch_collector::sources::cgroup::CgroupConfig;
use gpuwatch_collector::sources::nvml::{GpuBackend, GpuSource, RawGpu, RawProcess, XidEvent};
use gpuwatch_collector::sources::SourceError;
use gpuwatch_collector::{CollectorConfig, Fleet, RunOptions, SinkKind, SourceKind};
use gpuwatch_store::testing::{Kind, TestDb};
use gpuwatch_store::WriterConfig;
use tokio_util::sync::CancellationToken;

use crate::cgroup_real::{mounts, skip, Guard};
use crate::common::{free_port, gpuwatch_command, ChildGuard, Prometheus};
use crate::dashboards::{check_prometheus_dashboard, prom_get, wait_for_gpus};
use crate::host_vs_node_exporter::start_node_exporter;

/// The rate window standing in for Grafana's `$__rate_interval` (Prometheus
/// scrapes every second here).
const RATE: &str = "20s";

/// Two GPUs with every field the DCGM dashboard reads; GPU `i` runs the
/// processes `procs[i]` (pid, bytes).
struct Gpus {
    procs: Vec<Vec<(u32, u64)>>,
    tick: u32,
}

impl GpuBackend for Gpus {
    fn device_count(&mut self) -> Result<u32, SourceError> {
        Ok(self.procs.len() as u32)
    }
    fn read(&mut self, index: u32) -> Result<RawGpu, SourceError> {
        self.tick += 1;
        let procs = &self.procs[index as usize];
        Ok(RawGpu {
            index,
            uuid: format!("GPU-agent-metrics-{index}"),
            name: "NVIDIA H100 80GB HBM3".into(),
            memory_total: 80 << 30,
            memory_used: (10 << 30) + 12_345 + u64::from(index),
            memory_free: (70 << 30) - 12_345,
            utilization_gpu: Some(40 + index * 10),
            utilization_memory: Some(20),
            temperature: Some(60 + index),
            memory_temperature: Some(70),
            power_usage_mw: Some(250_500 + self.tick),
            sm_clock_mhz: Some(1_980),
            memory_clock_mhz: Some(2_619),
            energy_mj: Some(1_000_000 + u64::from(self.tick)),
            pcie_tx_kb_per_sec: Some(100),
            pcie_rx_kb_per_sec: Some(300),
            ecc_corrected_volatile: Some(0),
            ecc_uncorrected_volatile: Some(0),
            throttle_reasons: Some(4),
            utilization_encoder: Some(3),
            utilization_decoder: Some(5),
            processes: Some(
                procs
                    .iter()
                    .map(|&(pid, bytes)| RawProcess {
                        pid,
                        used_memory: Some(bytes),
                    })
                    .collect(),
            ),
            ..RawGpu::default()
        })
    }
    fn drain_xids(&mut self) -> Vec<XidEvent> {
        Vec::new()
    }
}

fn agent_config(port: u16, spool: &std::path::Path) -> CollectorConfig {
    let mut cfg = CollectorConfig {
        source: SourceKind::Host,
        host_id: Some("agent-metrics-host".into()),
        interval_secs: 1,
        listen: Some(format!("127.0.0.1:{port}")),
        ..CollectorConfig::default()
    };
    cfg.spool.dir = spool.to_path_buf();
    cfg
}

/// GET `path` on the agent: status and body.
async fn get(port: u16, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .expect("the agent answers");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// The lines of `text` whose metric name starts with `prefix`, without
/// comments.
fn lines_of<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.starts_with(prefix)
                || l.starts_with(&format!("# HELP {prefix}"))
                || l.starts_with(&format!("# TYPE {prefix}"))
        })
        .collect()
}

#[tokio::test]
async fn gpu_families_are_the_central_exporters_line_for_line() {
    let db = TestDb::new(Kind::Postgres).await;
    gpuwatch_store::migrate(&db.store_config())
        .await
        .expect("migrate");
    let pool = gpuwatch_store::connect(&db.store_config())
        .await
        .expect("pool");
    let spool = tempfile::tempdir().unwrap();
    let cfg = agent_config(free_port(), spool.path());
    let gpus = Gpus {
        procs: vec![vec![], vec![]],
        tick: 0,
    };
    let mut fleet = Fleet::host_with(&cfg, GpuSource::with_backend(Box::new(gpus)));
    let mut sink = Sink::Copy(Box::new(CopySink::new(
        pool.clone(),
        WriterConfig::default(),
    )));
    sink.register(&fleet.inventory().unwrap())
        .await
        .expect("register");
    let mut agent = AgentMetrics::new(&cfg, prometheus::Registry::new());
    // Stamped as the run loop stamps a cycle.
    let batch = fleet.collect(chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 0));
    agent.publish(&mut fleet, &batch);
    sink.send(&batch).await.expect("stored");

    let central = gpuwatch_exporter::Exporter::new(Default::default());
    central.refresh(&pool).await.expect("central snapshot");
    let theirs = String::from_utf8(central.scrape().concat()).unwrap();
    let ours = String::from_utf8(agent.exporter().scrape().concat()).unwrap();
    let (theirs, ours) = (lines_of(&theirs, "DCGM_"), lines_of(&ours, "DCGM_"));
    assert!(ours.len() > 2 * 20, "{ours:#?}");
    assert_eq!(
        ours, theirs,
        "the agent's DCGM lines differ from gpuwatch serve's"
    );
}

// The run loop reads the host off the async workers (block_in_place).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dcgm_dashboard_works_on_the_agent_scraped_directly() {
    let spool = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cfg = agent_config(port, spool.path());
    // Nothing listens there: batches spool, /metrics is served regardless.
    cfg.sink = SinkKind::Http;
    cfg.http.url = format!("http://127.0.0.1:{}", free_port());
    cfg.http.token = "unused".into();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let registry = prometheus::Registry::new();
    gpuwatch_collector::register_metrics(&registry).unwrap();
    let metrics = listen(&cfg, registry, shutdown.clone())
        .await
        .expect("listen");
    let fleet = Fleet::host_with(
        &cfg,
        GpuSource::with_backend(Box::new(Gpus {
            procs: vec![vec![], vec![]],
            tick: 0,
        })),
    );
    let sink = Sink::from_config(&cfg, &Default::default()).unwrap();
    let run = tokio::spawn(gpuwatch_collector::run_with(
        fleet,
        metrics,
        cfg,
        sink,
        RunOptions::default(),
        shutdown.clone(),
    ));
    let (status, health) = get(port, "/health").await;
    assert_eq!((status, health.as_str()), (200, r#"{"status":"ok"}"#));
    let prometheus = Prometheus::start(&[("agent", format!("127.0.0.1:{port}"))]);
    wait_for_gpus(&prometheus.url, 2, "the agent").await;
    let vars = check_prometheus_dashboard(&prometheus.url).await;
    assert_eq!(vars["Hostname"].values.len(), 1, "{vars:?}");
    assert_eq!(vars["gpu"].values.len(), 2, "{vars:?}");
    // The agent's own metrics ride along.
    let (_, text) = get(port, "/metrics").await;
    for name in [
        "gpuwatch_collector_spool_batches",
        "gpuwatch_agent_cycle_duration_seconds_count",
        "gpuwatch_agent_batches_sent_total",
        "gpuwatch_agent_batches_refused_total",
        "gpuwatch_agent_last_delivery_timestamp_seconds",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "no {name} in\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("gpuwatch_collector_spool_batches ") && !l.ends_with(" 0")),
        "the unreachable sink should have spooled batches"
    );
    shutdown.cancel();
    run.await.unwrap().expect("the agent stops cleanly");
}

/// One Prometheus query: each series' labels (job and instance left out)
/// and value.
async fn query(prom: &str, expr: &str) -> BTreeMap<BTreeMap<String, String>, f64> {
    let r = prom_get(&format!("{prom}/api/v1/query"), &[("query", expr)])
        .await
        .unwrap_or_else(|| panic!("Prometheus rejects {expr}"));
    let mut out = BTreeMap::new();
    for s in r["data"]["result"].as_array().cloned().unwrap_or_default() {
        let mut labels: BTreeMap<String, String> = s["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        labels.remove("job");
        labels.remove("instance");
        let v: f64 = s["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        out.insert(labels, v);
    }
    out
}

/// `expr` for both jobs; the same series must come back from each.
async fn both(prom: &str, expr: &str) -> Vec<(BTreeMap<String, String>, f64, f64)> {
    let of = |job: &str| expr.replace("$job", job).replace("$__rate_interval", RATE);
    let (node, agent) = (
        query(prom, &of("node")).await,
        query(prom, &of("agent")).await,
    );
    let keys =
        |m: &BTreeMap<BTreeMap<String, String>, f64>| m.keys().cloned().collect::<BTreeSet<_>>();
    assert!(
        !node.is_empty(),
        "node_exporter has no series for {}",
        of("node")
    );
    assert_eq!(keys(&agent), keys(&node), "series differ for {expr}");
    node.into_iter()
        .map(|(k, n)| {
            let a = agent[&k];
            (k, n, a)
        })
        .collect()
}

/// Asserts |agent − node| ≤ `tol` for every series of `expr`, printing each.
async fn agrees(prom: &str, what: &str, expr: &str, tol: impl Fn(f64) -> f64) {
    for (labels, node, agent) in both(prom, expr).await {
        let t = tol(node);
        println!("{what} {labels:?}: node {node}, agent {agent} (tolerance {t})");
        let same = (node.is_nan() && agent.is_nan()) || (agent - node).abs() <= t;
        assert!(
            same,
            "{what} {labels:?}: node {node}, agent {agent}, tolerance {t}\n{expr}"
        );
    }
}

#[tokio::test]
async fn node_exporter_full_quick_and_basic_rows_agree_with_node_exporter() {
    // node_exporter with upstream's default exclusions (Debian's build
    // changes some), which the agent follows.
    let node = start_node_exporter(&[
        "--collector.disable-defaults",
        "--collector.cpu",
        "--collector.stat",
        "--collector.time",
        "--collector.meminfo",
        "--collector.loadavg",
        "--collector.filesystem",
        "--collector.netdev",
        "--collector.diskstats",
        "--collector.pressure",
        "--collector.filesystem.mount-points-exclude=^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
        "--collector.netdev.device-exclude=^$",
        "--collector.diskstats.device-exclude=^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\\d+n\\d+p)\\d+$",
    ]);
    let spool = tempfile::tempdir().unwrap();
    let port = free_port();
    let _agent = ChildGuard(
        gpuwatch_command(&[
            "collector",
            "--print",
            "--web.listen-address",
            &format!("127.0.0.1:{port}"),
        ])
        .env("GPUWATCH_COLLECTOR__SOURCE", "host")
        .env("GPUWATCH_COLLECTOR__INTERVAL", "1s")
        .env("GPUWATCH_COLLECTOR__SPOOL__DIR", spool.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gpuwatch collector"),
    );
    let prometheus = Prometheus::start(&[
        ("agent", format!("127.0.0.1:{port}")),
        ("node", format!("127.0.0.1:{}", node.port)),
    ]);
    let prom = prometheus.url.as_str();
    let started = std::time::Instant::now();
    loop {
        let up = prom_get(&format!("{prom}/api/v1/query"), &[("query", "sum(up)")]).await;
        if up
            .and_then(|r| {
                r["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(String::from)
            })
            .as_deref()
            == Some("2")
        {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "Prometheus does not scrape both the agent and node_exporter"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Enough samples for the rate window, and a little more.
    tokio::time::sleep(Duration::from_secs(24)).await;

    let cores = both(
        prom,
        r#"count(count(node_cpu_seconds_total{job="$job"}) by (cpu))"#,
    )
    .await[0]
        .1;
    // Quick CPU / Mem / Disk.
    // CPU busy: the agent reads /proc up to a cycle (1 s) before the
    // scrape, so its 20 s window is offset by up to 1 s on a busy machine.
    let points = |p: f64| move |_: f64| p;
    agrees(prom, "CPU busy %", r#"100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle",job="$job"}[$__rate_interval])))"#, points(10.0)).await;
    // Sys load: the kernel updates load1 every 5 s, so two reads may straddle an update.
    agrees(prom, "Sys load %", r#"scalar(node_load1{job="$job"}) * 100 / count(count(node_cpu_seconds_total{job="$job"}) by (cpu))"#,
        move |node| (0.5 * 100.0 / cores).max(0.25 * node)).await;
    agrees(prom, "RAM used %", r#"clamp_min((1 - (node_memory_MemAvailable_bytes{job="$job"} / node_memory_MemTotal_bytes{job="$job"})) * 100, 0)"#, points(2.0)).await;
    agrees(prom, "SWAP used %", r#"(node_memory_SwapTotal_bytes{job="$job"} > bool 0) * ((node_memory_SwapTotal_bytes{job="$job"} - node_memory_SwapFree_bytes{job="$job"}) / (node_memory_SwapTotal_bytes{job="$job"})) * 100"#, points(1.0)).await;
    agrees(prom, "Root FS used %", r#"((node_filesystem_size_bytes{job="$job", mountpoint="/", fstype!="rootfs"} - node_filesystem_avail_bytes{job="$job", mountpoint="/", fstype!="rootfs"}) / node_filesystem_size_bytes{job="$job", mountpoint="/", fstype!="rootfs"}) * 100"#, points(1.0)).await;
    agrees(
        prom,
        "CPU cores",
        r#"count(count(node_cpu_seconds_total{job="$job"}) by (cpu))"#,
        points(0.0),
    )
    .await;
    agrees(
        prom,
        "RAM total",
        r#"node_memory_MemTotal_bytes{job="$job"}"#,
        points(0.0),
    )
    .await;
    agrees(
        prom,
        "SWAP total",
        r#"node_memory_SwapTotal_bytes{job="$job"}"#,
        points(0.0),
    )
    .await;
    agrees(
        prom,
        "RootFS total",
        r#"node_filesystem_size_bytes{job="$job",mountpoint="/",fstype!="rootfs"}"#,
        points(0.0),
    )
    .await;
    // Uptime: node_time_seconds is the agent's cycle time, up to a cycle old.
    agrees(
        prom,
        "Uptime s",
        r#"node_time_seconds{job="$job"} - node_boot_time_seconds{job="$job"}"#,
        points(3.0),
    )
    .await;

    // Basic CPU / Mem / Net / Disk. CPU basic: shares of one CPU, ±0.1.
    for (what, expr) in [
        (
            "CPU basic system",
            r#"avg(rate(node_cpu_seconds_total{job="$job", mode="system"}[$__rate_interval]))"#,
        ),
        (
            "CPU basic user",
            r#"avg(rate(node_cpu_seconds_total{job="$job", mode="user"}[$__rate_interval]))"#,
        ),
        (
            "CPU basic iowait",
            r#"avg(rate(node_cpu_seconds_total{job="$job", mode="iowait"}[$__rate_interval]))"#,
        ),
        (
            "CPU basic IRQs",
            r#"avg(sum without(mode) (rate(node_cpu_seconds_total{job="$job", mode=~".*irq"}[$__rate_interval])))"#,
        ),
        (
            "CPU basic other",
            r#"avg(sum without (mode) (rate(node_cpu_seconds_total{job="$job",  mode!='idle',mode!='user',mode!='system',mode!='iowait',mode!='irq',mode!='softirq'}[$__rate_interval])))"#,
        ),
        (
            "CPU basic idle",
            r#"avg(rate(node_cpu_seconds_total{job="$job", mode="idle"}[$__rate_interval]))"#,
        ),
    ] {
        agrees(prom, what, expr, points(0.1)).await;
    }
    // Memory basic: within 2 % of RAM total (other processes allocate
    // between the two reads).
    let total = both(prom, r#"node_memory_MemTotal_bytes{job="$job"}"#).await[0].1;
    let of_total = move |_: f64| 0.02 * total;
    agrees(
        prom,
        "Memory total",
        r#"node_memory_MemTotal_bytes{job="$job"}"#,
        points(0.0),
    )
    .await;
    agrees(prom, "Memory used", r#"node_memory_MemTotal_bytes{job="$job"} - node_memory_MemFree_bytes{job="$job"} - (node_memory_Cached_bytes{job="$job"} + node_memory_Buffers_bytes{job="$job"} + node_memory_SReclaimable_bytes{job="$job"})"#, of_total).await;
    agrees(prom, "Memory cache + buffer", r#"node_memory_Cached_bytes{job="$job"} + node_memory_Buffers_bytes{job="$job"} + node_memory_SReclaimable_bytes{job="$job"}"#, of_total).await;
    agrees(
        prom,
        "Memory free",
        r#"node_memory_MemFree_bytes{job="$job"}"#,
        of_total,
    )
    .await;
    agrees(
        prom,
        "Memory swap used",
        r#"(node_memory_SwapTotal_bytes{job="$job"} - node_memory_SwapFree_bytes{job="$job"})"#,
        of_total,
    )
    .await;
    // Network traffic by device, bits/s: the same devices; rates within
    // 25 % or 1 Mbit/s (the scrapes themselves are loopback traffic, and
    // the windows are offset by up to a cycle).
    let traffic = |node: f64| (0.25 * node).max(1e6);
    agrees(
        prom,
        "Rx",
        r#"rate(node_network_receive_bytes_total{job="$job"}[$__rate_interval])*8"#,
        traffic,
    )
    .await;
    agrees(
        prom,
        "Tx",
        r#"rate(node_network_transmit_bytes_total{job="$job"}[$__rate_interval])*8"#,
        traffic,
    )
    .await;
    // Disk space used by mountpoint: the same filesystems, ±1 point.
    agrees(prom, "Disk space used %", r#"((node_filesystem_size_bytes{job="$job", device!~'rootfs'} - node_filesystem_avail_bytes{job="$job", device!~'rootfs'}) / node_filesystem_size_bytes{job="$job", device!~'rootfs'}) * 100"#, points(1.0)).await;
    // The Quick row's pressure panel, where the kernel has PSI.
    if std::path::Path::new("/proc/pressure/cpu").exists() {
        for r in ["cpu", "io", "memory"] {
            let expr = format!(
                "rate(node_pressure_{r}_waiting_seconds_total{{job=\"$job\"}}[$__rate_interval])"
            );
            agrees(prom, &format!("Pressure {r}"), &expr, points(0.1)).await;
        }
    }
    // Disk I/O counters: the same whole disks.
    both(prom, r#"node_disk_read_bytes_total{job="$job"}"#).await;
    both(prom, r#"node_disk_written_bytes_total{job="$job"}"#).await;
}

const POD_UID: &str = "5c1e0b7a-3f2d-4e8a-9b6c-0d1e2f3a4b5c";

/// Makes `dir` unless it exists; only what it made is removed on drop.
fn ensure(guard: &mut Guard, dir: PathBuf) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    guard.mkdir(dir)
}

#[tokio::test]
async fn a_gpu_process_in_a_kubelet_pod_cgroup_labels_the_gpu_with_its_pod() {
    let (_, Some(memory), _) = mounts() else {
        return skip(
            "no cgroup v1 memory controller mounted (the kubelet's cgroupfs layout lives there)",
        );
    };
    let container = format!("c0ffee{}", std::process::id());
    let mut guard = Guard {
        dirs: Vec::new(),
        child: None,
    };
    let kube = memory.join("kubepods");
    let pod_dir = kube.join("burstable").join(format!("pod{POD_UID}"));
    for d in [
        kube.clone(),
        kube.join("burstable"),
        pod_dir.clone(),
        pod_dir.join(&container),
    ] {
        if let Err(e) = ensure(&mut guard, d) {
            return skip(&e);
        }
    }
    // start_child joins every directory the guard made, the container's last.
    let pid = guard.start_child();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroup.contains(&format!("/kubepods/burstable/pod{POD_UID}/{container}")),
        "{cgroup}"
    );

    // The container runtime's metadata for the container, as containerd writes it.
    let runtime = tempfile::tempdir().unwrap();
    std::fs::create_dir(runtime.path().join(&container)).unwrap();
    std::fs::write(
        runtime.path().join(&container).join("config.json"),
        serde_json::json!({"annotations": {
            "io.kubernetes.cri.sandbox-name": "trainer-0",
            "io.kubernetes.cri.sandbox-namespace": "ml-team",
            "io.kubernetes.cri.container-name": "pytorch",
        }})
        .to_string(),
    )
    .unwrap();
    let spool = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cfg = agent_config(port, spool.path());
    cfg.cgroup = CgroupConfig {
        pod_metadata: vec![format!("{}/{{id}}/config.json", runtime.path().display())],
        ..CgroupConfig::default()
    };
    // GPU 0 runs the pod's process; GPU 1 this test's own, in no pod.
    let me = std::process::id();
    let backend = Gpus {
        procs: vec![vec![(pid, 1 << 30)], vec![(me, 1 << 20)]],
        tick: 0,
    };
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let mut metrics = listen(&cfg, prometheus::Registry::new(), shutdown.clone())
        .await
        .expect("listen")
        .expect("collector.listen is set");
    let mut fleet = Fleet::host_with(&cfg, GpuSource::with_backend(Box::new(backend)));
    let batch = fleet.collect(chrono::Utc::now());
    metrics.publish(&mut fleet, &batch);
    let (status, text) = get(port, "/metrics").await;
    assert_eq!(status, 200);
    let util: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("DCGM_FI_DEV_GPU_UTIL{"))
        .collect();
    assert_eq!(util.len(), 2, "{text}");
    let in_pod = util
        .iter()
        .find(|l| l.contains("UUID=\"GPU-agent-metrics-0\""))
        .unwrap();
    assert!(
        in_pod.ends_with(r#",container="pytorch",namespace="ml-team",pod="trainer-0"} 40"#),
        "{in_pod}"
    );
    let outside = util
        .iter()
        .find(|l| l.contains("UUID=\"GPU-agent-metrics-1\""))
        .unwrap();
    assert!(
        !outside.contains("pod=") && !outside.contains("container="),
        "{outside}"
    );

    // Without the runtime's metadata: the pod by its UID, the container by its id.
    let mut bare = cfg.clone();
    bare.cgroup.pod_metadata = vec![format!("{}/none/{{id}}.json", runtime.path().display())];
    bare.listen = None;
    let mut agent = AgentMetrics::new(&bare, prometheus::Registry::new());
    agent.publish(&mut fleet, &batch);
    let text = String::from_utf8(agent.exporter().scrape().concat()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("DCGM_FI_DEV_GPU_UTIL{") && l.contains("GPU-agent-metrics-0"))
        .unwrap();
    assert!(
        line.ends_with(&format!(r#",container="{container}",pod="{POD_UID}"}} 40"#)),
        "{line}"
    );
}

#[test]
fn a_cycle_older_than_the_staleness_window_is_not_served() {
    let spool = tempfile::tempdir().unwrap();
    let cfg = CollectorConfig {
        interval_secs: 1,
        staleness_secs: 1,
        spool: gpuwatch_collector::SpoolConfig {
            dir: spool.path().to_path_buf(),
            ..Default::default()
        },
        ..CollectorConfig::default()
    };
    // The simulated fleet: GPUs of several hosts, no host of this machine.
    let mut fleet = Fleet::new(&cfg);
    let mut agent = AgentMetrics::new(&cfg, prometheus::Registry::new());
    let batch = fleet.collect(chrono::Utc::now());
    agent.publish(&mut fleet, &batch);
    let exporter = agent.exporter();
    let served = |gzip: bool| {
        let (chunks, gzipped) = exporter.scrape_encoded(gzip);
        let mut text = String::new();
        for c in chunks {
            match gzipped {
                true => {
                    let mut d = flate2::read::MultiGzDecoder::new(&c[..]);
                    std::io::Read::read_to_string(&mut d, &mut text).unwrap();
                }
                false => text.push_str(std::str::from_utf8(&c).unwrap()),
            }
        }
        (text, gzipped)
    };
    let (fresh, _) = served(false);
    let hosts: BTreeSet<&str> = fresh
        .lines()
        .filter(|l| l.starts_with("DCGM_FI_DEV_GPU_TEMP{"))
        .filter_map(|l| l.split("Hostname=\"").nth(1)?.split('"').next())
        .collect();
    assert!(hosts.len() > 1, "every simulated host's GPUs: {hosts:?}");
    assert!(
        !fresh.contains("node_cpu_seconds_total"),
        "no host of this machine for a simulated fleet"
    );
    // The agent's text is compressed by the first scrape that asks.
    let (text, gzipped) = served(true);
    assert!(
        gzipped && text.contains("DCGM_FI_DEV_GPU_TEMP{"),
        "{gzipped}"
    );
    std::thread::sleep(Duration::from_millis(1_200));
    for gzip in [false, true] {
        let (stale, _) = served(gzip);
        assert!(
            !stale.contains("DCGM_"),
            "a stale cycle is still served:\n{stale}"
        );
        assert!(
            stale.contains("gpuwatch_agent_batches_sent_total"),
            "self-metrics stay"
        );
    }
}
