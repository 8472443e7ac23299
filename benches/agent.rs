//! Agent cost per collection cycle: CPU time and memory of the host source
//! path with 8 GPUs (through the `GpuBackend` trait), this machine's /proc,
//! and 50 environments. Where this process may make cgroups (root, a
//! writable v1 `memory` + `cpuacct` pair below /sys/fs/cgroup) the 50 are
//! real cgroups, each holding a real sleeping process in a network
//! namespace of its own, as on a GPU host;
//! elsewhere they are a cgroup v2 tree of plain files in a temp directory,
//! which costs more per read (a plain file is checked for being replaced
//! before each read; a kernel file needs not be). Also the cost of encoding
//! one cycle as the HTTP sink does (JSON + gzip).
//!
//! Then the same agent serving its own `/metrics` (`collector.listen`):
//! cycles paced at one per `--pace-ms` (default 100) for `--served-secs`
//! (default 20), each
//! rendered for scrapes (gzip'd by the first scrape of a cycle), with
//! `/metrics` scraped every 5 s over HTTP, as is a real node_exporter started
//! beside it; CPU per cycle and RSS against the goals and against
//! node_exporter's RSS in the same run.
//!
//! `cargo bench --bench agent [-- --cycles N --served-secs S --pace-ms P --files]`
//! (`--files`: the plain-file tree even where real cgroups can be made). Goal (issue):
//! under 1 ms of CPU per cycle and under 30 MB RSS.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use gpuwatch_collector::serve::{listen, AgentMetrics};
use gpuwatch_collector::sources::cgroup::{CgroupConfig, EnvTarget};
use gpuwatch_collector::sources::nvml::{GpuBackend, GpuSource, RawGpu, RawProcess, XidEvent};
use gpuwatch_collector::sources::SourceError;
use gpuwatch_collector::{CollectorConfig, Fleet, SourceKind};
use nix::sys::resource::{getrusage, UsageWho};

const GPUS: u32 = 8;
const ENVS: u32 = 50;

/// 8 GPUs with every field NVML can give, each running the processes of
/// the environments placed on it.
struct EightGpus {
    tick: u64,
    /// The environments' processes, one each.
    pids: Vec<u32>,
}

impl GpuBackend for EightGpus {
    fn device_count(&mut self) -> Result<u32, SourceError> {
        Ok(GPUS)
    }

    fn read(&mut self, index: u32) -> Result<RawGpu, SourceError> {
        self.tick += 1;
        let t = (self.tick % 100) as u32;
        Ok(RawGpu {
            index,
            uuid: format!("GPU-bench-{index:02}"),
            name: "NVIDIA H100 80GB HBM3".into(),
            brand: Some("NVIDIA".into()),
            architecture: Some("Hopper".into()),
            memory_total: 80 << 30,
            memory_used: (20 + u64::from(t % 50)) << 30,
            memory_free: (60 - u64::from(t % 50)) << 30,
            compute_capability: Some((9, 0)),
            utilization_gpu: Some(t),
            utilization_memory: Some(t / 2),
            temperature: Some(40 + t / 3),
            memory_temperature: Some(45 + t / 3),
            temperature_slowdown: Some(87),
            power_usage_mw: Some(100_000 + t * 5_000),
            power_limit_mw: Some(700_000),
            fan_speed: None,
            sm_clock_mhz: Some(1_980),
            memory_clock_mhz: Some(2_619),
            energy_mj: Some(self.tick * 1_000),
            pcie_tx_kb_per_sec: Some(1_000 * t),
            pcie_rx_kb_per_sec: Some(3_000 * t),
            ecc_corrected_volatile: Some(0),
            ecc_uncorrected_volatile: Some(0),
            throttle_reasons: Some(0),
            processes: Some(
                (0..ENVS)
                    .filter(|e| e % GPUS == index)
                    .map(|e| RawProcess {
                        pid: self.pids[e as usize],
                        used_memory: Some(1 << 30),
                    })
                    .collect(),
            ),
            ..Default::default()
        })
    }

    fn drain_xids(&mut self) -> Vec<XidEvent> {
        Vec::new()
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
    std::fs::write(p, text).expect("write fixture");
}

/// 50 real cgroups below the v1 `memory` and `cpuacct` mounts, a sleeping
/// process in each; removed on drop. `None` (saying why) where they cannot
/// be made.
struct RealCgroups {
    base: Vec<std::path::PathBuf>,
    dirs: Vec<std::path::PathBuf>,
    children: Vec<std::process::Child>,
}

impl RealCgroups {
    fn make() -> Result<(RealCgroups, Vec<EnvTarget>, Vec<u32>), String> {
        let name = format!("gpuwatch-bench-{}", std::process::id());
        let mounts = ["memory", "cpuacct"].map(|c| Path::new("/sys/fs/cgroup").join(c));
        let mut g = RealCgroups {
            base: Vec::new(),
            dirs: Vec::new(),
            children: Vec::new(),
        };
        for m in &mounts {
            if !m.join("cgroup.procs").exists() {
                return Err(format!("no cgroup v1 hierarchy at {}", m.display()));
            }
            let b = m.join(&name);
            std::fs::create_dir(&b).map_err(|e| format!("cannot create {}: {e}", b.display()))?;
            g.base.push(b);
        }
        let (mut envs, mut pids) = (Vec::new(), Vec::new());
        for e in 0..ENVS {
            let rel = format!("{name}/env-{e:04}");
            // Each in a network namespace of its own, as a container's.
            let child = std::process::Command::new("unshare")
                .args(["--net", "sleep", "3600"])
                .spawn()
                .map_err(|e| format!("cannot start unshare --net sleep: {e}"))?;
            let pid = child.id();
            g.children.push(child);
            for m in &mounts {
                let d = m.join(&rel);
                std::fs::create_dir(&d)
                    .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
                g.dirs.push(d.clone());
                std::fs::write(d.join("cgroup.procs"), pid.to_string())
                    .map_err(|e| format!("cannot move {pid} into {}: {e}", d.display()))?;
            }
            envs.push(EnvTarget {
                env_id: format!("env-{e:04}"),
                container_id: None,
                cgroup_path: Some(rel),
                cpu_cores: 4.0,
                memory_bytes: 32 << 30,
            });
            pids.push(pid);
        }
        Ok((g, envs, pids))
    }
}

impl Drop for RealCgroups {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in self.dirs.iter().rev().chain(self.base.iter()) {
            // The kernel may take a moment to let go of an exited task.
            let _ = (0..100).any(|_| {
                std::fs::remove_dir(d).is_ok() || {
                    std::thread::sleep(Duration::from_millis(20));
                    !d.exists()
                }
            });
        }
    }
}

/// 50 container cgroups and the /proc entries of one process in each.
fn cgroup_tree(root: &Path) -> Vec<EnvTarget> {
    (0..ENVS)
        .map(|e| {
            let cg = format!("cgroup/system.slice/docker-c{e:04}.scope");
            let pid = 10_000 + e;
            write(root, &format!("{cg}/cpu.stat"), &format!("usage_usec {}\nuser_usec 1\nsystem_usec 1\n", e * 1_000_000));
            write(root, &format!("{cg}/memory.current"), "8589934592\n");
            write(root, &format!("{cg}/memory.max"), "max\n");
            write(root, &format!("{cg}/cgroup.procs"), &format!("{pid}\n"));
            write(root, &format!("proc/{pid}/cgroup"), &format!("0::/system.slice/docker-c{e:04}.scope\n"));
            write(
                root,
                &format!("proc/{pid}/net/dev"),
                "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 123456 789 0 0 0 0 0 0 654321 987 0 0 0 0 0 0\n",
            );
            EnvTarget {
                env_id: format!("env-{e:04}"),
                container_id: Some(format!("c{e:04}")),
                cgroup_path: None,
                cpu_cores: 4.0,
                memory_bytes: 32 << 30,
            }
        })
        .collect()
}

fn cpu_time() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1_000);
    tv(u.user_time()) + tv(u.system_time())
}

/// (VmRSS, VmHWM) in MiB.
fn rss() -> (f64, f64) {
    rss_of("self")
}

/// (VmRSS, VmHWM) in MiB of /proc/`pid`.
fn rss_of(pid: &str) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cycles: u32 = args
        .iter()
        .position(|a| a == "--cycles")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut cfg = CollectorConfig {
        source: SourceKind::Host,
        host_id: Some("bench-host".into()),
        ..Default::default()
    };
    let real = if args.iter().any(|a| a == "--files") {
        Err("--files asked for".to_string())
    } else {
        RealCgroups::make()
    };
    let (_real, envs, pids, kind) = match real {
        Ok((g, envs, pids)) => (
            Some(g),
            envs,
            pids,
            "real cgroup v1 hierarchy, a sleeping process in a network namespace in each",
        ),
        Err(why) => {
            eprintln!("agent bench: environments in plain files: {why}");
            cfg.cgroup = CgroupConfig {
                root: tmp.path().join("cgroup"),
                proc_path: tmp.path().join("proc"),
                ..CgroupConfig::default()
            };
            let pids = (0..ENVS).map(|e| 10_000 + e).collect();
            (
                None,
                cgroup_tree(tmp.path()),
                pids,
                "cgroup v2 tree of plain files",
            )
        }
    };
    let mut fleet = Fleet::host_with(
        &cfg,
        GpuSource::with_backend(Box::new(EightGpus { tick: 0, pids })),
    );
    let inventory = fleet.inventory().expect("inventory");
    fleet.set_environments(envs);
    // Warm up: the first cycle has no previous CPU counters.
    let first = fleet.collect(Utc::now());
    let (gpu, host, env) = (first.gpu.len(), first.host.len(), first.env.len());
    assert_eq!(
        (gpu, host, env),
        (GPUS as usize, 1, ENVS as usize),
        "every source must report"
    );
    assert!(
        first.env.iter().all(|e| e.gpu_usage_percent.is_some()),
        "GPU use attributed to every environment"
    );

    let (cpu0, wall0) = (cpu_time(), Instant::now());
    let mut rows = 0;
    for _ in 0..cycles {
        rows += fleet.collect(Utc::now()).len();
    }
    let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());

    let batch = fleet.collect(Utc::now());
    let (cpu1, enc) = (cpu_time(), cycles.min(500));
    let mut bytes = 0;
    for _ in 0..enc {
        let payload = serde_json::to_vec(&(&inventory, &batch)).expect("json");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&payload).expect("gzip");
        bytes = gz.finish().expect("gzip").len();
    }
    let enc_cpu = cpu_time() - cpu1;
    let (rss_now, rss_peak) = rss();

    println!("agent cycle:     {GPUS} GPUs (trait), /proc of this host, {ENVS} environments ({kind}), {} rows per cycle", rows / cycles as usize);
    println!(
        "cycles:          {cycles} in {:.2} s wall",
        wall.as_secs_f64()
    );
    println!(
        "CPU per cycle:   {:.3} ms (user+sys; goal < 1 ms)",
        cpu.as_secs_f64() * 1_000.0 / f64::from(cycles)
    );
    println!(
        "encode per cycle:{:.3} ms CPU for JSON + gzip ({bytes} bytes on the wire)",
        enc_cpu.as_secs_f64() * 1_000.0 / f64::from(enc)
    );
    println!("RSS:             {rss_now:.1} MiB now, {rss_peak:.1} MiB peak (goal < 30 MB; node_exporter ~15-20 MB)");

    let served_secs: u64 = args
        .iter()
        .position(|a| a == "--served-secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let pace_ms: u64 = args
        .iter()
        .position(|a| a == "--pace-ms")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    served(
        &cfg,
        &mut fleet,
        served_secs,
        Duration::from_millis(pace_ms),
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// GET /metrics over HTTP/1.0 asking for gzip: bytes of the answer.
fn scrape(port: u16) -> usize {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ =
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n\r\n");
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut buf);
    buf.len()
}

/// The served run: see the file's docs.
fn served(cfg: &CollectorConfig, fleet: &mut Fleet, secs: u64, pace: Duration) {
    const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
    let (agent_port, node_port) = (free_port(), free_port());
    let mut cfg = cfg.clone();
    cfg.listen = Some(format!("127.0.0.1:{agent_port}"));
    // The server's runtime: one worker, as the agent's own would idle.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let stop = tokio_util::sync::CancellationToken::new();
    let mut metrics: AgentMetrics = rt
        .block_on(listen(&cfg, prometheus::Registry::new(), stop.clone()))
        .expect("listen")
        .expect("collector.listen is set");
    let mut node = std::process::Command::new(NODE_EXPORTER)
        .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok();
    let node_cpu0 = node.as_ref().and_then(|c| proc_cpu(c.id()));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut n, mut agent_bytes, mut node_bytes) = (0, 0, 0);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(5));
                agent_bytes = scrape(agent_port);
                node_bytes = scrape(node_port);
                n += 1;
            }
            (n, agent_bytes, node_bytes)
        })
    };
    // Where a served cycle's CPU goes, back to back: this host read per
    // device, a cycle rendered (gzip off until a scraper asks), then with gzip.
    let reps = 500;
    let reader = gpuwatch_collector::sources::node::NodeSource::new(&cfg.host.proc_path);
    let ms_each = |cpu: Duration| cpu.as_secs_f64() * 1_000.0 / f64::from(reps);
    let c = cpu_time();
    for _ in 0..reps {
        std::hint::black_box(reader.read().expect("node reading"));
    }
    let node_ms = ms_each(cpu_time() - c);
    let batch = fleet.collect(Utc::now());
    let c = cpu_time();
    for _ in 0..reps {
        metrics.publish(fleet, &batch);
    }
    let plain_ms = ms_each(cpu_time() - c);
    let c = cpu_time();
    for _ in 0..reps {
        metrics.publish(fleet, &batch);
        std::hint::black_box(metrics.exporter().scrape_encoded(true));
    }
    let gzip_ms = ms_each(cpu_time() - c) - plain_ms;
    println!();
    println!("publish:         {plain_ms:.3} ms CPU per cycle ({node_ms:.3} ms of it reading /proc per device); the first gzip scrape of a cycle adds {gzip_ms:.3} ms");

    // The same paced loop without serving, for a baseline: a cycle every
    // 100 ms starts with cold caches, unlike the back-to-back loop above.
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    let mut base_cycles = 0u32;
    while wall0.elapsed() < Duration::from_secs(secs / 2) {
        std::hint::black_box(fleet.collect(Utc::now()));
        base_cycles += 1;
        std::thread::sleep(pace);
    }
    let base_ms = (cpu_time() - cpu0).as_secs_f64() * 1_000.0 / f64::from(base_cycles.max(1));
    println!("paced, unserved: {base_ms:.3} ms CPU per cycle ({base_cycles} cycles, a cycle every {} ms)", pace.as_millis());

    let first = fleet.collect(Utc::now());
    metrics.publish(fleet, &first);
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    let mut cycles = 0u32;
    while wall0.elapsed() < Duration::from_secs(secs) {
        let batch = fleet.collect(Utc::now());
        metrics.publish(fleet, &batch);
        cycles += 1;
        std::thread::sleep(pace);
    }
    let cpu = cpu_time() - cpu0;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (scrapes, agent_bytes, node_bytes) = scraper.join().expect("scraper");
    let node_cpu = node
        .as_ref()
        .and_then(|c| Some(proc_cpu(c.id())? - node_cpu0?));
    // What one scrape costs the agent, apart from HTTP: the text as it is.
    let cpu1 = cpu_time();
    for _ in 0..1_000 {
        std::hint::black_box(metrics.exporter().scrape_encoded(true));
    }
    let per_scrape = (cpu_time() - cpu1).as_secs_f64() * 1_000.0 / 1_000.0;
    let (rss_now, rss_peak) = rss();
    let node_rss = node.as_ref().map(|c| rss_of(&c.id().to_string()));
    if let Some(c) = node.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    stop.cancel();
    let per_cycle = cpu.as_secs_f64() * 1_000.0 / f64::from(cycles);
    println!("served /metrics: {cycles} cycles in {secs} s, /metrics (gzip) scraped every 5 s: {scrapes} scrapes, {agent_bytes} bytes each (node_exporter: {node_bytes})");
    println!(
        "CPU per cycle:   {per_cycle:.3} ms (collect + render, scrapes included; goal < 1 ms)"
    );
    println!("CPU per scrape:  {per_scrape:.4} ms once compressed; at a 10 s interval and 5 s scrapes a cycle costs {:.3} ms with its gzip and two scrapes", per_cycle + gzip_ms + 2.0 * per_scrape);
    println!("RSS:             {rss_now:.1} MiB now, {rss_peak:.1} MiB peak (goal < 30 MB)");
    match node_rss {
        Some((now, peak)) => println!(
            "node_exporter:   {now:.1} MiB RSS, {peak:.1} MiB peak, same run, scraped as often"
        ),
        None => println!("node_exporter:   not run ({NODE_EXPORTER} missing)"),
    }
    if let Some(cpu) = node_cpu.filter(|_| scrapes > 0) {
        // node_exporter reads the host when scraped; the agent reads it, its
        // GPUs and its environments every cycle whether scraped or not.
        let per = cpu.as_secs_f64() * 1_000.0 / f64::from(scrapes);
        println!(
            "node_exporter:   {per:.2} ms CPU per scrape (host only, {scrapes} scrapes, 10 ms ticks); the agent's cycle with a scrape costs {:.3} ms, {:.2}x",
            per_cycle + gzip_ms + per_scrape,
            (per_cycle + gzip_ms + per_scrape) / per
        );
    }
}

/// User + system CPU of process `pid` so far (/proc/<pid>/stat, in ticks of
/// 10 ms), threads that exited included.
fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses: utime is the
    // 12th of them, stime the 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}
