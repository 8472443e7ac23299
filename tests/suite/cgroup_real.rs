//! The environment source against real cgroups of this machine.
//!
//! Each test makes its own cgroups (v1: below the `memory` and `cpuacct`
//! mounts; v2: below the cgroup2 mount), starts a real process in them that
//! touches 64 MiB and burns CPU, and runs the agent as on a GPU host with
//! the direct sink: it learns the environment (placed on its host, with
//! that cgroup path) from a throw-away database, collects twice about a
//! second apart and stores both batches. The stored rows are checked
//! against the cgroup's own files read just before and after each
//! collection. GPU processes come through the `GpuBackend` trait and must
//! land on the environment whose cgroup holds their pid. Cgroups and
//! processes are removed even when a check fails.
//!
//! Where cgroups cannot be made here (not root, no such mount, read-only)
//! a test says so on stderr and stops; with `GPUWATCH_REQUIRE_REAL_CGROUPS=1`
//! that is a failure instead.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use gpuwatch_collector::sinks::copy::CopySink;
use gpuwatch_collector::sinks::Sink;
use gpuwatch_collector::sources::cgroup::{
    CgroupConfig, CgroupSource, CgroupVersion, EnvTarget, Layout,
};
use gpuwatch_collector::sources::nvml::{GpuBackend, GpuSource, RawGpu, RawProcess, XidEvent};
use gpuwatch_collector::sources::SourceError;
use gpuwatch_collector::{CollectorConfig, Fleet, SourceKind};
use gpuwatch_store::testing::{Kind, TestDb};
use gpuwatch_store::{EnvSample, WriterConfig};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const GPU_UTIL: u32 = 50;

/// One GPU running the given (pid, bytes) processes.
pub(crate) struct OneGpu {
    pub(crate) procs: Vec<(u32, u64)>,
}

impl GpuBackend for OneGpu {
    fn device_count(&mut self) -> Result<u32, SourceError> {
        Ok(1)
    }
    fn read(&mut self, index: u32) -> Result<RawGpu, SourceError> {
        Ok(RawGpu {
            index,
            uuid: "GPU-cgroup-real-0".into(),
            name: "NVIDIA H100 80GB HBM3".into(),
            memory_total: 80 * GIB,
            memory_used: self.procs.iter().map(|p| p.1).sum(),
            utilization_gpu: Some(GPU_UTIL),
            processes: Some(
                self.procs
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

/// The cgroups and the process of one test; removed on drop, in reverse.
pub(crate) struct Guard {
    pub(crate) dirs: Vec<PathBuf>,
    pub(crate) child: Option<Child>,
}

impl Guard {
    /// Makes `dir`, or says why this host cannot (the caller skips).
    pub(crate) fn mkdir(&mut self, dir: PathBuf) -> Result<(), String> {
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        self.dirs.push(dir);
        Ok(())
    }

    /// Starts a process that waits, joins every cgroup of the guard, then
    /// touches 64 MiB (so the memory is charged to its new cgroup) and
    /// burns CPU until it is killed. It first holds 128 MiB more for a
    /// moment, so a peak figure read instead of the current one shows.
    pub(crate) fn start_child(&mut self) -> u32 {
        let script = "import sys\nsys.stdin.readline()\npeak = b'\\x02' * (128 << 20)\ndel peak\nb = b'\\x01' * (64 << 20)\nprint('ready', flush=True)\nwhile True: pass\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 must be on PATH to run the cgroup test's workload");
        let pid = child.id();
        let stdout: ChildStdout = child.stdout.take().expect("piped stdout");
        let mut stdin = child.stdin.take().expect("piped stdin");
        self.child = Some(child);
        for dir in &self.dirs {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())
                .unwrap_or_else(|e| panic!("cannot move pid {pid} into {}: {e}", dir.display()));
        }
        writeln!(stdin, "go").expect("tell the workload to start");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("workload's ready line");
        assert_eq!(line.trim(), "ready", "the workload did not start");
        pid
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for dir in self.dirs.iter().rev() {
            // The kernel may take a moment to let go of an exited task.
            let gone = (0..100).any(|_| {
                std::fs::remove_dir(dir).is_ok() || {
                    std::thread::sleep(Duration::from_millis(20));
                    !dir.exists()
                }
            });
            if !gone {
                eprintln!("cgroup_real: could not remove {}", dir.display());
            }
        }
    }
}

/// Prints why the test cannot run here; fails where it is required to run.
pub(crate) fn skip(why: &str) {
    let msg = format!("cgroup_real: SKIPPED, real cgroups are not writable here: {why}");
    if std::env::var_os("GPUWATCH_REQUIRE_REAL_CGROUPS").is_some_and(|v| v == "1") {
        panic!("{msg} (GPUWATCH_REQUIRE_REAL_CGROUPS=1)");
    }
    eprintln!("{msg}");
}

/// Mount points of this machine's cgroup filesystems: (cgroup2, v1
/// memory, v1 cpuacct), from /proc/self/mountinfo.
pub(crate) fn mounts() -> (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let (mut v2, mut memory, mut cpuacct) = (None, None, None);
    for line in text.lines() {
        let Some((head, tail)) = line.split_once(" - ") else {
            continue;
        };
        let point = head.split(' ').nth(4).map(PathBuf::from);
        let tail: Vec<&str> = tail.split(' ').collect();
        let opts: Vec<&str> = tail.get(2).unwrap_or(&"").split(',').collect();
        match tail.first() {
            Some(&"cgroup2") => v2 = v2.or(point),
            Some(&"cgroup") if opts.contains(&"memory") => memory = memory.or(point),
            Some(&"cgroup") if opts.contains(&"cpuacct") => cpuacct = cpuacct.or(point),
            _ => {}
        }
    }
    (v2, memory, cpuacct)
}

fn unique(kind: &str) -> String {
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("gpuwatch-test-{kind}-{}-{nanos}", std::process::id())
}

fn read_u64(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let value = match text.lines().find_map(|l| l.strip_prefix("usage_usec ")) {
        Some(usec) => usec.trim().parse::<u64>().map(|us| us * 1_000),
        None => text.trim().parse::<u64>(),
    };
    value.unwrap_or_else(|e| panic!("{}: {e}: {text:?}", path.display()))
}

const HOST: &str = "cgroup-real-host";

/// The agent of this machine with `cgroup` config, one GPU running
/// `procs`, and the direct sink into `db`, where one running environment
/// with `cgroup_path` is placed on its host.
struct Agent {
    fleet: Fleet,
    sink: Sink,
    env: EnvTarget,
    db: TestDb,
}

async fn agent(cgroup: CgroupConfig, cgroup_path: &str, procs: Vec<(u32, u64)>) -> Agent {
    let db = TestDb::new(Kind::Postgres).await;
    gpuwatch_store::migrate(&db.store_config())
        .await
        .expect("migrate");
    let pool = gpuwatch_store::connect(&db.store_config())
        .await
        .expect("pool");
    let mut sink = Sink::Copy(Box::new(CopySink::new(
        pool.clone(),
        WriterConfig::default(),
    )));
    let cfg = CollectorConfig {
        source: SourceKind::Host,
        host_id: Some(HOST.into()),
        cgroup,
        ..CollectorConfig::default()
    };
    let mut fleet = Fleet::host_with(&cfg, GpuSource::with_backend(Box::new(OneGpu { procs })));
    let inventory = fleet.inventory().expect("this machine's inventory");
    sink.register(&inventory).await.expect("register");
    // The sink writes the inventory with its first batch; the environment
    // placed below needs its host now, as a control plane's would.
    for (host, _) in &inventory {
        gpuwatch_store::inventory::upsert_host(&pool, host, chrono::Utc::now())
            .await
            .expect("register the host");
    }
    db.client()
        .await
        .execute(
            "WITH c AS (INSERT INTO customers (username, email, password_hash)
                        VALUES ('acme', 'ops@acme.example', 'x') RETURNING id)
             INSERT INTO environments (id, customer_id, host_id, name, image, status, cpu, memory, cgroup_path)
             SELECT 'env-real', id, $1, 'train', 'pytorch:2', 'running', 1, $2, $3 FROM c",
            &[&HOST, &(GIB as i64), &cgroup_path],
        )
        .await
        .expect("place the environment");
    let envs = sink
        .environments(HOST)
        .await
        .expect("this host's environments");
    assert_eq!(envs.len(), 1, "{envs:#?}");
    let env = envs[0].clone();
    assert_eq!(env.cgroup_path.as_deref(), Some(cgroup_path));
    fleet.set_environments(envs);
    Agent {
        fleet,
        sink,
        env,
        db,
    }
}

/// The stored row of one collection, with the cgroup's CPU counter (ns)
/// and memory (bytes) read just before and after it.
struct Reading {
    at: DateTime<Utc>,
    env: EnvSample,
    cpu: (u64, u64),
    memory: Option<(u64, u64)>,
}

async fn collect(a: &mut Agent, cpu_file: &Path, mem_file: Option<&Path>) -> Reading {
    let (cpu0, mem0) = (read_u64(cpu_file), mem_file.map(read_u64));
    // Microseconds, as timestamptz keeps them, so the stored row is found by it.
    let at = Utc::now()
        .duration_trunc(chrono::Duration::microseconds(1))
        .expect("truncate");
    let batch = a.fleet.collect(at);
    let (cpu1, mem1) = (read_u64(cpu_file), mem_file.map(read_u64));
    let sent: Vec<&EnvSample> = batch
        .env
        .iter()
        .filter(|e| e.env_id == a.env.env_id)
        .collect();
    assert_eq!(
        sent.len(),
        1,
        "one sample of {}: {:#?}",
        a.env.env_id,
        batch.env
    );
    a.sink.send(&batch).await.expect("store the batch");
    let row =
        a.db.client()
            .await
            .query_one(
                "SELECT env_id, host_id, collected_at, cpu_usage_percent, memory_used,
                    memory_usage_percent, gpu_usage_percent, gpu_memory_used,
                    network_rx_bytes, network_tx_bytes
               FROM environment_metrics WHERE env_id = $1 AND collected_at = $2",
                &[&a.env.env_id, &at],
            )
            .await
            .expect("the stored sample");
    let stored = EnvSample {
        env_id: row.get(0),
        host_id: row.get(1),
        collected_at: row.get(2),
        cpu_usage_percent: row.get(3),
        memory_used: row.get(4),
        memory_usage_percent: row.get(5),
        gpu_usage_percent: row.get(6),
        gpu_memory_used: row.get(7),
        network_rx_bytes: row.get(8),
        network_tx_bytes: row.get(9),
    };
    assert_eq!(&stored, sent[0], "stored as collected");
    Reading {
        at,
        env: stored,
        cpu: (cpu0, cpu1),
        memory: mem0.zip(mem1),
    }
}

/// The figures of two collections against the cgroup's own files.
fn check(first: &Reading, second: &Reading, env: &EnvTarget, gpu_share: f64, gpu_bytes: u64) {
    assert_eq!(
        first.env.cpu_usage_percent, None,
        "no CPU figure on the first call"
    );
    let pct = second
        .env
        .cpu_usage_percent
        .expect("a CPU figure on the second call");
    let elapsed_ns = (second.at - first.at).num_nanoseconds().expect("elapsed") as f64;
    // The source read its counter between the test's two reads, each time.
    let used = pct / 100.0 * elapsed_ns * env.cpu_cores;
    let (lo, hi) = (second.cpu.0 - first.cpu.1, second.cpu.1 - first.cpu.0);
    assert!(
        (lo as f64 - 1e3..=hi as f64 + 1e3).contains(&used),
        "CPU {pct:.2} % is {used:.0} ns in {elapsed_ns:.0} ns; the counter moved {lo}..={hi} ns"
    );
    // Loose: on a loaded machine the workload may get little of a core.
    assert!(pct > 1.0, "the workload burns CPU, got {pct:.2} %");
    for r in [first, second] {
        if let Some((m0, m1)) = r.memory {
            let used = r.env.memory_used.expect("memory used") as u64;
            let (lo, hi) = (m0.min(m1) - MIB, m0.max(m1) + MIB);
            assert!(
                (lo..=hi).contains(&used),
                "memory {used} outside {lo}..={hi}"
            );
            assert!(
                (64 * MIB..128 * MIB).contains(&used),
                "the workload holds 64 MiB and some, got {used}"
            );
            let pct = r.env.memory_usage_percent.expect("memory %");
            let want = used as f64 * 100.0 / env.memory_bytes as f64;
            assert!(
                (pct - want).abs() < 1e-9,
                "memory % {pct} of the allocation, want {want}"
            );
        } else {
            assert_eq!(r.env.memory_used, None, "the cgroup has no memory figure");
        }
        assert_eq!(r.env.host_id, HOST);
        assert_eq!(
            r.env.gpu_memory_used,
            Some(gpu_bytes as i64),
            "GPU process attributed"
        );
        let gpu = r.env.gpu_usage_percent.expect("GPU share");
        assert!(
            (gpu - f64::from(GPU_UTIL) * gpu_share).abs() < 1e-9,
            "GPU {gpu} %"
        );
        assert!(
            r.env.network_rx_bytes.is_some(),
            "its process's network counters"
        );
    }
}

#[tokio::test]
async fn v1_controllers_of_real_cgroups() {
    let (v2, Some(memory), Some(cpuacct)) = mounts() else {
        return skip("no cgroup v1 memory and cpuacct controllers are mounted");
    };
    let name = unique("v1");
    let mut guard = Guard {
        dirs: Vec::new(),
        child: None,
    };
    for dir in [memory.join(&name), cpuacct.join(&name)] {
        if let Err(why) = guard.mkdir(dir) {
            return skip(&why);
        }
    }
    let pid = guard.start_child();
    // The test's own process holds GPU memory too, outside the environment.
    let procs = vec![(pid, GIB), (std::process::id(), 3 * GIB)];
    let mut a = agent(CgroupConfig::default(), &name, procs).await;
    let cpu_file = cpuacct.join(&name).join("cpuacct.usage");
    let mem_file = memory.join(&name).join("memory.usage_in_bytes");

    let first = collect(&mut a, &cpu_file, Some(&mem_file)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = collect(&mut a, &cpu_file, Some(&mem_file)).await;
    check(&first, &second, &a.env, 0.25, GIB);

    // Auto-detection on this machine, against its mountinfo.
    let source = CgroupSource::new(CgroupConfig::default());
    let layout = source.layout();
    assert_eq!(
        layout.name(),
        if v2.is_some() { "hybrid" } else { "v1" },
        "{layout:?}"
    );
    let v1 = layout.v1().expect("v1 controllers");
    assert_eq!((&v1.memory, v1.cpuacct.as_ref()), (&memory, Some(&cpuacct)));
}

#[tokio::test]
async fn v2_hierarchy_of_real_cgroups() {
    let (Some(unified), _, _) = mounts() else {
        return skip("no cgroup2 hierarchy is mounted");
    };
    let name = unique("v2");
    let mut guard = Guard {
        dirs: Vec::new(),
        child: None,
    };
    if let Err(why) = guard.mkdir(unified.join(&name)) {
        return skip(&why);
    }
    let pid = guard.start_child();
    let procs = vec![(pid, 2 * GIB), (std::process::id(), 2 * GIB)];
    let cfg = CgroupConfig {
        root: unified.clone(),
        version: CgroupVersion::V2,
        ..CgroupConfig::default()
    };
    let mut a = agent(cfg.clone(), &name, procs).await;
    let dir = unified.join(&name);
    // On a hybrid host the memory controller is bound to v1: then this
    // cgroup has no memory.current, and the source must report none.
    let mem_file = dir.join("memory.current");
    let mem_file = mem_file.exists().then_some(mem_file.as_path());
    let cpu_file = dir.join("cpu.stat");

    let first = collect(&mut a, &cpu_file, mem_file).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = collect(&mut a, &cpu_file, mem_file).await;
    check(&first, &second, &a.env, 0.5, 2 * GIB);

    let source = CgroupSource::new(cfg);
    assert_eq!(source.layout(), &Layout::V2 { root: unified });
}
