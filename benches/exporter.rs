//! Exporter and API benchmark: `/metrics` for a 10,000-GPU fleet and
//! concurrent scrapes plus API reads on loopback.
//!
//! `cargo bench --bench exporter` runs on a fresh database on plain
//! PostgreSQL (`DATABASE_URL`) and, when its server answers, on TimescaleDB
//! (`TIMESCALE_URL`). For each:
//!
//! 1. Inventory: `GPUWATCH_BENCH_GPUS` GPUs (default 10,000), 8 per host,
//!    40 % of them allocated to customers' environments; six samples per GPU,
//!    host and environment at 10 s spacing ending now, through the
//!    [`BatchWriter`]; then `ANALYZE`, as autovacuum would have done.
//! 2. Snapshot: [`Exporter::refresh`] several times: query and render time,
//!    body size and series count.
//! 3. Scrape: [`Exporter::scrape`] in process, and `GET /metrics` through
//!    the real axum server on 127.0.0.1 with the whole body read: p50/p99
//!    against the goal of one scrape under 50 ms (printed, never
//!    asserted).
//! 4. Load: `wrk` (Debian package `wrk`, `scripts/bench-deps.sh`) against
//!    `/metrics`, `GET /api/v1/hosts?limit=50` and `GET /api/v1/gpus?host_id=…`
//!    (a random host per request) with a viewer token, then `/metrics` and
//!    the hosts list at once (two wrk processes). The exporter's refresh
//!    loop runs meanwhile, as in `gpuwatch serve`. Without wrk this part is
//!    skipped.
//!
//! Environment: `GPUWATCH_BENCH_GPUS` (fleet size), `GPUWATCH_BENCH_WRK_SECS`
//! (default 8 per wrk run), `GPUWATCH_BENCH_WRK` (wrk's `-t -c`, default
//! `-t2 -c8`), `GPUWATCH_BENCH_BACKENDS` (`postgres,timescaledb`),
//! `GPUWATCH_BENCH_KEEP=1` (leave the databases in place for `EXPLAIN`; their
//! URLs are printed).

mod common;
use common::{mix, round};

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpuwatch_api::{router, ApiConfig, AppState};
use gpuwatch_exporter::{Exporter, ExporterConfig, Snapshot};
use gpuwatch_store::testing::{admin_url, Kind, TestDb};
use gpuwatch_store::{
    connect, migrate, BatchWriter, EnvSample, GpuSample, HostSample, Pool, WriterConfig,
};
use tokio_util::sync::CancellationToken;

const GPUS_PER_HOST: usize = 8;
const SAMPLES: usize = 6;
const STEP_SECS: i64 = 10;
const REFRESHES: usize = 10;
const SCRAPES: usize = 100;
/// The goal for one scrape of the full fleet.
const GOAL: Duration = Duration::from_millis(50);

fn env_num(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("{name} must be a positive number, got {v:?}")),
    }
}

fn host_id(n: usize) -> String {
    format!("bench-host-{n:05}")
}

/// Hosts, GPUs (8 per host), customers and environments: hosts n with
/// n % 5 in 1..=3 run one 4-GPU environment on GPUs 0–3, and hosts with
/// n % 5 == 1 a second one on GPUs 4–7 (40 % of GPUs allocated).
async fn inventory(pool: &Pool, hosts: usize) {
    let c = pool.get().await.expect("a pooled connection");
    let n = hosts as i32;
    let customers = (hosts / 10).max(1) as i32;
    let steps: [(&str, &str, &[&(dyn tokio_postgres::types::ToSql + Sync)]); 5] = [
        (
            "hosts",
            "INSERT INTO hosts (id, name, hostname, ip_address, os_type, os_version, arch,
                    total_cpu, total_memory, total_disk, total_gpu, labels, status,
                    health_status, last_heartbeat)
             SELECT format('bench-host-%s', lpad(i::text, 5, '0')),
                    format('gpu%s', lpad(i::text, 5, '0')),
                    format('gpu%s.dc%s.example.net', lpad(i::text, 5, '0'), i % 4),
                    format('10.%s.%s.%s', i / 65536 % 256, i / 256 % 256, i % 256),
                    'linux', 'Debian 12', 'x86_64', 128, 1099511627776, 8796093022208, 8,
                    jsonb_build_object('zone', 'z' || i % 4, 'rack', 'r' || i / 40),
                    'online', 'healthy', now()
               FROM generate_series(1, $1::int) i",
            &[&n],
        ),
        (
            "gpus",
            "INSERT INTO gpus (host_id, gpu_index, uuid, name, brand, architecture,
                    memory_total, compute_capability, power_limit, temperature_limit,
                    pci_bus_id, driver_version, last_seen_at)
             SELECT h.id, g, 'GPU-' || md5(h.id || '/' || g)::uuid, 'NVIDIA H100 80GB HBM3',
                    'NVIDIA', 'Hopper', 85899345920, '9.0', 700, 87,
                    format('00000000:%s:00.0', upper(to_hex(24 + g * 16))), '550.54.15', now()
               FROM hosts h, generate_series(0, 7) g",
            &[],
        ),
        (
            "customers",
            "INSERT INTO customers (username, email, password_hash, company, account_type)
             SELECT format('cust%s', lpad(i::text, 4, '0')), format('cust%s@example.com', i),
                    'not-a-real-hash', format('Company %s', i), 'enterprise'
               FROM generate_series(1, $1::int) i",
            &[&customers],
        ),
        (
            "environments",
            "INSERT INTO environments (id, customer_id, host_id, name, image, status, cpu,
                    memory, gpu, gpu_model, started_at)
             SELECT format('env-%s-%s', lpad(i::text, 5, '0'), s),
                    (SELECT min(id) FROM customers) + i % $2::int,
                    format('bench-host-%s', lpad(i::text, 5, '0')),
                    format('train-%s-%s', i, s), 'pytorch:2.4-cuda12', 'running', 32,
                    274877906944, 4, 'NVIDIA H100 80GB HBM3', now() - interval '1 day'
               FROM generate_series(1, $1::int) i, generate_series(0, 1) s
              WHERE i % 5 IN (1, 2, 3) AND (s = 0 OR i % 5 = 1)",
            &[&n, &customers],
        ),
        (
            "GPU allocations",
            "UPDATE gpus g SET allocated_to = e.id, allocated_at = e.started_at,
                    status = 'allocated'
               FROM environments e
              WHERE e.host_id = g.host_id AND g.gpu_index / 4 = right(e.id, 1)::int",
            &[],
        ),
    ];
    for (what, sql, params) in steps {
        c.execute(sql, params)
            .await
            .unwrap_or_else(|e| panic!("inserting the bench {what}: {e}"));
    }
}

fn unit(key: u64, salt: u64) -> f64 {
    (mix(key ^ (salt << 56)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Every column the generator below does not model, from the catalogue.
static GPU_BASE: std::sync::LazyLock<GpuSample> = std::sync::LazyLock::new(common::plausible);

/// A plausible sample of GPU `id` (gpus.id) at step `k` of [`SAMPLES`].
fn gpu_sample(id: i64, host: &str, k: usize, at: DateTime<Utc>) -> GpuSample {
    let key = ((id as u64) << 8) | k as u64;
    let r = |salt| unit(key, salt);
    let load = unit(id as u64, 99);
    let util = round((load * 90.0 + r(1) * 10.0).min(100.0), 1);
    let total: i64 = 80 << 30;
    let used = ((0.02 + load * 0.8 + r(2) * 0.1) * total as f64) as i64;
    let temp = round(30.0 + util * 0.5 + r(3) * 4.0, 1);
    let power = round(70.0 + util * 6.0 + r(4) * 20.0, 2);
    GpuSample {
        gpu_id: id,
        host_id: host.to_string(),
        collected_at: at,
        utilization_percent: Some(util),
        memory_used: Some(used),
        memory_usage_percent: Some(round(used as f64 * 100.0 / total as f64, 2)),
        temperature: Some(temp),
        power_draw: Some(power),
        fan_speed_percent: Some(round(30.0 + util * 0.6, 1)),
        sm_clock: Some(1_410 + util as i32 * 5),
        memory_clock: Some(2_619),
        process_count: Some(1 + (r(5) * 3.0) as i32),
        memory_copy_util_percent: Some(round(util * 0.4 * r(6), 1)),
        memory_free: Some(total - used),
        memory_temperature: Some(round(36.0 + util * 0.45, 1)),
        energy_consumed_mj: Some(id * 1_000_000_000 + k as i64 * (power * 10_000.0) as i64),
        pcie_tx_bytes_per_sec: Some((r(7) * 2.4e10 * util / 100.0) as i64),
        pcie_rx_bytes_per_sec: Some((r(8) * 2.4e10 * util / 100.0) as i64),
        ecc_sbe_volatile: Some((unit(id as u64, 98) < 0.01) as i64),
        ecc_dbe_volatile: Some(0),
        // About 1 GPU in 200 reported an XID in the window.
        xid_last: (unit(id as u64, 97) < 0.005 && k == 2).then_some(79),
        throttle_reasons: Some(4 * (util > 95.0) as i64),
        ..GPU_BASE.clone()
    }
}

fn host_sample(n: usize, k: usize, at: DateTime<Utc>) -> HostSample {
    let key = ((n as u64) << 8) | k as u64;
    let r = |salt| unit(key, salt);
    let total: i64 = 1 << 40;
    let used = ((0.2 + r(1) * 0.5) * total as f64) as i64;
    let base = n as i64 * 1_000_000_000_000 + k as i64 * 10_000_000;
    HostSample {
        host_id: host_id(n),
        collected_at: at,
        cpu_usage_percent: Some(round(r(2) * 100.0, 1)),
        cpu_load_1m: Some(round(r(3) * 64.0, 2)),
        cpu_load_5m: Some(round(r(4) * 64.0, 2)),
        cpu_load_15m: Some(round(r(5) * 64.0, 2)),
        memory_used: Some(used),
        memory_available: Some(total - used),
        memory_usage_percent: Some(round(used as f64 * 100.0 / total as f64, 2)),
        disk_used: Some(3 << 40),
        disk_available: Some(5 << 40),
        disk_usage_percent: Some(37.5),
        disk_io_read_bytes: Some(base),
        disk_io_write_bytes: Some(base / 2),
        network_rx_bytes: Some(base * 3),
        network_tx_bytes: Some(base * 2),
        network_rx_packets: Some(base / 1000),
        network_tx_packets: Some(base / 1500),
        gpu_avg_utilization: Some(round(r(6) * 100.0, 1)),
        gpu_avg_memory_used: Some(40 << 30),
        gpu_avg_temperature: Some(round(50.0 + r(7) * 20.0, 1)),
        gpu_avg_power: Some(round(300.0 + r(8) * 300.0, 1)),
    }
}

/// Six samples per GPU, host and environment at 10 s spacing ending now.
/// Returns (rows, time spent writing).
async fn samples(pool: &Pool) -> (u64, Duration) {
    let c = pool.get().await.expect("a pooled connection");
    let gpus: Vec<(i64, String)> = c
        .query("SELECT id, host_id FROM gpus ORDER BY id", &[])
        .await
        .expect("reading the bench GPUs")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let hosts: Vec<usize> = c
        .query("SELECT id FROM hosts ORDER BY id", &[])
        .await
        .expect("reading the bench hosts")
        .iter()
        .map(|r| {
            let id: &str = r.get(0);
            id["bench-host-".len()..].parse().expect("a bench host id")
        })
        .collect();
    let envs: Vec<(String, String)> = c
        .query("SELECT id, host_id FROM environments ORDER BY id", &[])
        .await
        .expect("reading the bench environments")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    drop(c);
    let now = Utc::now().duration_trunc(TimeDelta::seconds(1));
    let end = now.expect("now is representable");
    let at = |k: usize| end - TimeDelta::seconds(STEP_SECS * (SAMPLES - 1 - k) as i64);
    let g: Vec<GpuSample> = (0..SAMPLES)
        .flat_map(|k| gpus.iter().map(move |(id, h)| (k, id, h)))
        .map(|(k, id, h)| gpu_sample(*id, h, k, at(k)))
        .collect();
    let h: Vec<HostSample> = (0..SAMPLES)
        .flat_map(|k| hosts.iter().map(move |n| host_sample(*n, k, at(k))))
        .collect();
    let e: Vec<EnvSample> = (0..SAMPLES)
        .flat_map(|k| envs.iter().map(move |e| (k, e)))
        .map(|(k, (id, host))| EnvSample {
            env_id: id.clone(),
            host_id: host.clone(),
            collected_at: at(k),
            cpu_usage_percent: Some(round(unit(k as u64, 1) * 100.0, 1)),
            memory_used: Some(100 << 30),
            memory_usage_percent: Some(39.06),
            gpu_usage_percent: Some(round(unit(k as u64, 2) * 100.0, 1)),
            gpu_memory_used: Some(200 << 30),
            network_rx_bytes: Some(1 << 30),
            network_tx_bytes: Some(1 << 29),
        })
        .collect();
    let writer = BatchWriter::new(
        pool.clone(),
        WriterConfig {
            connections: 2,
            chunk_rows: 20_000,
        },
    );
    let t = Instant::now();
    let mut rows = writer
        .write(&g)
        .await
        .expect("writing GPU samples")
        .inserted;
    rows += writer
        .write(&h)
        .await
        .expect("writing host samples")
        .inserted;
    rows += writer
        .write(&e)
        .await
        .expect("writing env samples")
        .inserted;
    let expected = (g.len() + h.len() + e.len()) as u64;
    assert_eq!(
        rows, expected,
        "every sample is new, so every one is stored"
    );
    (rows, t.elapsed())
}

/// The value at quantile `q` of sorted `v`.
fn pct(v: &[Duration], q: f64) -> Duration {
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mb(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Series (sample lines) in exposition text.
fn series(body: &[u8]) -> usize {
    body.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .count()
}

struct SnapshotFigures {
    query_p50: Duration,
    render_p50: Duration,
    bytes: usize,
    series: usize,
}

async fn snapshot(exporter: &Exporter, pool: &Pool, gpus: usize) -> SnapshotFigures {
    let (mut query, mut render, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut last: Option<Arc<Snapshot>> = None;
    for _ in 0..REFRESHES {
        let t = Instant::now();
        let s = exporter
            .refresh(pool)
            .await
            .expect("refreshing the snapshot");
        total.push(t.elapsed());
        query.push(s.query);
        render.push(s.render);
        last = Some(s);
    }
    let s = last.expect("at least one refresh");
    assert_eq!(
        s.gpus, gpus,
        "every GPU has a sample within the staleness window, so every one is in the snapshot"
    );
    for v in [&mut query, &mut render, &mut total] {
        v.sort();
    }
    let n = series(&s.body);
    println!(
        "snapshot:             {} GPUs, {} hosts, {} environments",
        s.gpus, s.hosts, s.environments
    );
    let first = "(the first refresh is in these: it reads cold pages)";
    println!("  refreshes:          {REFRESHES} {first}");
    let line = |name: &str, v: &[Duration]| {
        println!(
            "  {name:<19} p50 {}, max {}",
            ms(pct(v, 0.5)),
            ms(*v.last().expect("refreshes"))
        );
    };
    line("query:", &query);
    line("render:", &render);
    line("refresh total:", &total);
    println!(
        "  body:               {} bytes ({}), {n} series, {:.0} bytes/GPU",
        s.body.len(),
        mb(s.body.len()),
        s.body.len() as f64 / gpus as f64
    );
    // Not what the exporter does today: what a snapshot compressed once per
    // refresh would hand to Prometheus, which asks for gzip.
    let t = Instant::now();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&s.body).expect("gzip into memory");
    let gzip_bytes = gz.finish().expect("gzip into memory").len();
    let gzip_time = t.elapsed();
    println!(
        "  gzip -1 of the body: {gzip_bytes} bytes ({}, {:.1}x smaller) in {} (what a compressing refresh adds)",
        mb(gzip_bytes),
        s.body.len() as f64 / gzip_bytes as f64,
        ms(gzip_time)
    );
    SnapshotFigures {
        query_p50: pct(&query, 0.5),
        render_p50: pct(&render, 0.5),
        bytes: s.body.len(),
        series: n,
    }
}

struct ScrapeFigures {
    p50: Duration,
    p99: Duration,
    bytes: usize,
}

async fn scrape(exporter: &Exporter, http: &reqwest::Client, base: &str) -> ScrapeFigures {
    let mut inproc = Vec::with_capacity(SCRAPES);
    for _ in 0..SCRAPES {
        let t = Instant::now();
        let chunks = exporter.scrape();
        std::hint::black_box(chunks.iter().map(|c| c.len()).sum::<usize>());
        inproc.push(t.elapsed());
    }
    inproc.sort();
    println!(
        "Exporter::scrape():   p50 {:.3} ms, max {:.3} ms (snapshot handed out, self-metrics encoded)",
        pct(&inproc, 0.5).as_secs_f64() * 1e3,
        inproc.last().expect("scrapes").as_secs_f64() * 1e3
    );
    let url = format!("{base}/metrics");
    // Reads the body as it streams in and keeps only its head, as a
    // scraper parses on the fly: buffering 52 MB in the client would time
    // the client's reallocations, not the server.
    let get = || async {
        let t = Instant::now();
        let mut resp = http.get(&url).send().await.expect("GET /metrics");
        assert_eq!(resp.status(), 200, "GET /metrics answers 200");
        let (mut head, mut len) = (Vec::with_capacity(64), 0);
        while let Some(chunk) = resp.chunk().await.expect("reading the /metrics body") {
            let room = 64usize.saturating_sub(head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..room]);
            len += chunk.len();
        }
        (t.elapsed(), head, len)
    };
    for _ in 0..3 {
        get().await;
    }
    let mut times = Vec::with_capacity(SCRAPES);
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        let (d, head, len) = get().await;
        times.push(d);
        bytes = len;
        assert!(
            head.starts_with(b"# HELP DCGM_FI_DEV_SM_CLOCK"),
            "the scrape carries the snapshot"
        );
    }
    times.sort();
    let (p50, p99) = (pct(&times, 0.5), pct(&times, 0.99));
    println!(
        "HTTP GET /metrics:    p50 {}, p99 {}, max {} ({SCRAPES} sequential, reqwest, {bytes} bytes each, {:.2} GB/s at p50)",
        ms(p50),
        ms(p99),
        ms(*times.last().expect("scrapes")),
        bytes as f64 / p50.as_secs_f64() / 1e9
    );
    let verdict = |d: Duration| if d < GOAL { "goal met" } else { "goal missed" };
    println!(
        "goal:                 one scrape < {} ms: p50 {} {}, p99 {} {}",
        GOAL.as_millis(),
        ms(p50),
        verdict(p50),
        ms(p99),
        verdict(p99)
    );
    ScrapeFigures { p50, p99, bytes }
}

/// The scrape Prometheus makes: `Accept-Encoding: gzip`. The first such
/// scrape makes the exporter compress each later snapshot once, off the
/// request path; then every gzip scrape hands out those bytes.
async fn scrape_gzip(
    exporter: &Exporter,
    pool: &gpuwatch_store::Pool,
    http: &reqwest::Client,
    base: &str,
) -> (Duration, Duration, usize, Duration) {
    let url = format!("{base}/metrics");
    let get = || async {
        let t = Instant::now();
        let resp = http
            .get(&url)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .expect("GET /metrics");
        let gz = resp
            .headers()
            .get("content-encoding")
            .is_some_and(|v| v == "gzip");
        let body = resp.bytes().await.expect("reading the /metrics body");
        (t.elapsed(), gz, body.len())
    };
    get().await;
    let t = Instant::now();
    let snap = exporter.refresh(pool).await.expect("refresh");
    let refresh = t.elapsed();
    assert!(
        snap.gzip.is_some(),
        "the refresh after a gzip scrape compresses"
    );
    let mut times = Vec::with_capacity(SCRAPES);
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        let (d, gz, len) = get().await;
        assert!(gz, "a gzip scrape answers gzip");
        times.push(d);
        bytes = len;
    }
    times.sort();
    let (p50, p99) = (pct(&times, 0.5), pct(&times, 0.99));
    println!(
        "HTTP GET /metrics, gzip: p50 {}, p99 {} ({bytes} bytes each; the refresh that compressed took {})",
        ms(p50),
        ms(p99),
        ms(refresh)
    );
    (p50, p99, bytes, refresh)
}

/// What one wrk run reported.
#[derive(Clone, Default)]
struct Wrk {
    requests: u64,
    rps: f64,
    p50: Option<Duration>,
    p99: Option<Duration>,
    /// Non-2xx/3xx responses and socket errors: anything but 0 means the
    /// figures are not of the route under test.
    bad: u64,
}

impl Wrk {
    fn show(&self) -> String {
        let p50 = self.p50.map_or("?".into(), ms);
        let p99 = self.p99.map_or("?".into(), ms);
        let bad = if self.bad > 0 {
            format!(", {} FAILED", self.bad)
        } else {
            String::new()
        };
        format!("{:>8.1} req/s, p50 {p50:>9}, p99 {p99:>9}{bad}", self.rps)
    }
}

/// wrk's "1.23ms" / "456.78us" / "1.02s" / "2.00m".
fn wrk_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, u) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    let secs = match u {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

fn parse_wrk(out: &str) -> Wrk {
    let mut w = Wrk::default();
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v, ..] => w.p50 = wrk_duration(v),
            ["99%", v, ..] => w.p99 = wrk_duration(v),
            ["Requests/sec:", v, ..] => w.rps = v.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => w.requests = n.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => w.bad += n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                w.bad += rest
                    .iter()
                    .filter_map(|x| x.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    w
}

struct Load<'a> {
    base: &'a str,
    token: &'a str,
    secs: usize,
    opts: &'a [String],
}

impl Load<'_> {
    /// One wrk run against `path` (or a Lua script choosing paths).
    async fn run(&self, path: &str, script: Option<&std::path::Path>) -> Wrk {
        let mut cmd = tokio::process::Command::new("wrk");
        cmd.args(self.opts)
            .arg(format!("-d{}s", self.secs))
            .arg("--latency")
            .arg("--timeout")
            .arg("10s")
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", self.token));
        if let Some(s) = script {
            cmd.arg("-s").arg(s);
        }
        cmd.arg(format!("{}{path}", self.base))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = cmd.output().await.expect("running wrk");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "wrk {path} failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        let w = parse_wrk(&text);
        assert!(w.rps > 0.0, "cannot read wrk's output for {path}: {text}");
        w
    }
}

fn wrk_present() -> bool {
    std::process::Command::new("wrk")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[derive(Default)]
struct LoadFigures {
    /// One connection, one request at a time: a scrape's latency with
    /// wrk's lean client instead of reqwest's.
    single: Wrk,
    metrics: Wrk,
    hosts: Wrk,
    gpus: Wrk,
    mixed_metrics: Wrk,
    mixed_hosts: Wrk,
}

async fn load(base: &str, token: &str, hosts: usize) -> LoadFigures {
    let secs = env_num("GPUWATCH_BENCH_WRK_SECS", 8);
    let opts: Vec<String> = std::env::var("GPUWATCH_BENCH_WRK")
        .unwrap_or_else(|_| "-t2 -c8".into())
        .split_whitespace()
        .map(String::from)
        .collect();
    let l = Load {
        base,
        token,
        secs,
        opts: &opts,
    };
    let script = tempfile::Builder::new()
        .suffix(".lua")
        .tempfile()
        .expect("a temporary file for wrk's script");
    let lua = format!(
        "math.randomseed(7)\nrequest = function()\n  return wrk.format(nil, string.format(\"/api/v1/gpus?host_id=bench-host-%05d\", math.random(1, {hosts})))\nend\n"
    );
    std::fs::write(script.path(), lua).expect("writing wrk's script");
    let o = opts.join(" ");
    println!("load (wrk {o} -d{secs}s, loopback, exporter refreshing every 5 s):");
    let hosts_path = "/api/v1/hosts?limit=50";
    let one = ["-t1".to_string(), "-c1".to_string()];
    let single = Load { opts: &one, ..l };
    let f = LoadFigures {
        single: single.run("/metrics", None).await,
        metrics: l.run("/metrics", None).await,
        hosts: l.run(hosts_path, None).await,
        gpus: l.run("/api/v1/gpus", Some(script.path())).await,
        ..LoadFigures::default()
    };
    let (mixed_metrics, mixed_hosts) =
        tokio::join!(l.run("/metrics", None), l.run(hosts_path, None));
    let f = LoadFigures {
        mixed_metrics,
        mixed_hosts,
        ..f
    };
    println!("  /metrics, -t1 -c1            {}", f.single.show());
    println!("  /metrics                     {}", f.metrics.show());
    println!("  /api/v1/hosts?limit=50       {}", f.hosts.show());
    println!("  /api/v1/gpus?host_id=random  {}", f.gpus.show());
    println!("  both at once: /metrics       {}", f.mixed_metrics.show());
    println!("                /api/v1/hosts  {}", f.mixed_hosts.show());
    let scraped = f.metrics.requests as f64 / secs as f64;
    println!("  (/metrics alone moved {:.0} scrapes/s)", scraped);
    f
}

struct Figures {
    backend: String,
    gpus: usize,
    setup: String,
    snap: SnapshotFigures,
    scrape: ScrapeFigures,
    /// gzip scrape p50, p99, bytes, and the refresh that compressed.
    gzip: (Duration, Duration, usize, Duration),
    load: Option<LoadFigures>,
}

async fn bench(kind: Kind, gpus: usize, wrk: bool) -> Figures {
    let db = TestDb::new(kind).await;
    let mut cfg = db.store_config();
    // `gpuwatch serve`'s default pool, not the tests' smaller one.
    cfg.pool_size = gpuwatch_store::StoreConfig::default().pool_size;
    let report = migrate(&cfg).await.expect("migrating the bench database");
    let backend = format!("PostgreSQL {}, {}", report.server_version, report.backend);
    println!("\n=== {backend} ({}) ===", db.name());
    let pool = connect(&cfg).await.expect("connecting the pool");
    let hosts = gpus / GPUS_PER_HOST;
    let t = Instant::now();
    inventory(&pool, hosts).await;
    let took = t.elapsed();
    let (rows, write) = samples(&pool).await;
    let t = Instant::now();
    let c = db.client().await;
    c.batch_execute("ANALYZE").await.expect("ANALYZE");
    let setup = format!(
        "inventory {:.1} s, {rows} samples written in {:.1} s, ANALYZE {:.1} s",
        took.as_secs_f64(),
        write.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    println!("fleet:                {hosts} hosts x {GPUS_PER_HOST} = {gpus} GPUs, 40 % allocated to environments");
    println!("setup:                {setup}");

    // A staleness window longer than the bench, so the fleet does not drop
    // out of /metrics while it runs (samples end when setup ends).
    let exporter = Exporter::new(ExporterConfig {
        refresh_secs: 5,
        staleness_secs: 900,
    });
    let snap = snapshot(&exporter, &pool, gpus).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    let state = AppState::new(
        pool.clone(),
        WriterConfig::default(),
        ApiConfig::default(),
        exporter.clone(),
    );
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router(state))
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        })
    };
    let http = reqwest::Client::new();
    let scrape = scrape(&exporter, &http, &base).await;
    let gzip = scrape_gzip(&exporter, &pool, &http, &base).await;

    let load = if wrk {
        let (_, token) = gpuwatch_api::auth::create(&pool, "bench", "viewer", None)
            .await
            .expect("creating a viewer token");
        let probe = http
            .get(format!("{base}/api/v1/hosts?limit=50"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET /api/v1/hosts");
        assert_eq!(probe.status(), 200, "the viewer token reads hosts");
        let refresher = tokio::spawn(exporter.clone().run(pool.clone(), stop.clone()));
        let f = load(&base, &token, hosts).await;
        stop.cancel();
        refresher.await.expect("the refresh loop ends");
        Some(f)
    } else {
        None
    };
    stop.cancel();
    server
        .await
        .expect("the server task ends")
        .expect("the server ran");
    if std::env::var("GPUWATCH_BENCH_KEEP").is_ok_and(|v| v == "1") {
        println!("kept:                 {} (drop it when done)", db.url);
        std::mem::forget(db);
    }
    Figures {
        backend,
        gpus,
        setup,
        snap,
        scrape,
        gzip,
        load,
    }
}

/// Whether TimescaleDB's server answers and has the extension.
async fn timescale_answers() -> Result<(), String> {
    let url = admin_url(Kind::TimescaleDb);
    // The URL may carry a password: show only host, port and database.
    let shown = url
        .parse::<tokio_postgres::Config>()
        .map_or_else(|_| "TIMESCALE_URL".into(), |c| gpuwatch_store::redact(&c));
    let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
    let (client, conn) = tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .map_err(|_| format!("{shown} did not answer in 3 s"))?
        .map_err(|e| format!("{shown}: {e}"))?;
    tokio::spawn(conn);
    let has: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    has.then_some(())
        .ok_or_else(|| "the server has no timescaledb extension".into())
}

fn summary(all: &[Figures]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n=== summary ===");
    for f in all {
        let _ = writeln!(s, "{} — {} GPUs", f.backend, f.gpus);
        let _ = writeln!(s, "  setup                        {}", f.setup);
        let _ = writeln!(
            s,
            "  refresh query / render p50   {} / {}",
            ms(f.snap.query_p50),
            ms(f.snap.render_p50)
        );
        let _ = writeln!(
            s,
            "  body                         {} ({} bytes over HTTP), {} series",
            mb(f.snap.bytes),
            f.scrape.bytes,
            f.snap.series
        );
        let _ = writeln!(
            s,
            "  gzip scrape p50 / p99        {} / {} ({}; a compressing refresh {})",
            ms(f.gzip.0),
            ms(f.gzip.1),
            mb(f.gzip.2),
            ms(f.gzip.3)
        );
        let goal = if f.scrape.p50 < GOAL {
            "goal met"
        } else {
            "goal missed"
        };
        let _ = writeln!(
            s,
            "  HTTP scrape p50 / p99        {} / {}  ({goal} on p50: < {} ms)",
            ms(f.scrape.p50),
            ms(f.scrape.p99),
            GOAL.as_millis()
        );
        match &f.load {
            None => {
                let _ = writeln!(
                    s,
                    "  wrk                          skipped (wrk not installed)"
                );
            }
            Some(l) => {
                for (name, w) in [
                    ("wrk /metrics -t1 -c1", &l.single),
                    ("wrk /metrics", &l.metrics),
                    ("wrk /api/v1/hosts?limit=50", &l.hosts),
                    ("wrk /api/v1/gpus?host_id=", &l.gpus),
                    ("wrk both: /metrics", &l.mixed_metrics),
                    ("wrk both: /api/v1/hosts", &l.mixed_hosts),
                ] {
                    let _ = writeln!(s, "  {name:<28} {}", w.show());
                }
            }
        }
    }
    s
}

#[tokio::main]
async fn main() {
    let gpus = env_num("GPUWATCH_BENCH_GPUS", 10_000);
    let gpus = (gpus / GPUS_PER_HOST).max(1) * GPUS_PER_HOST;
    let backends =
        std::env::var("GPUWATCH_BENCH_BACKENDS").unwrap_or_else(|_| "postgres,timescaledb".into());
    let wrk = wrk_present();
    if !wrk {
        println!("wrk is not installed (bash scripts/bench-deps.sh): the load part is skipped");
    }
    let mut all = Vec::new();
    for name in backends.split(',').map(str::trim) {
        let kind = match name {
            "postgres" => Kind::Postgres,
            "timescaledb" => match timescale_answers().await {
                Ok(()) => Kind::TimescaleDb,
                Err(e) => {
                    println!("\nTimescaleDB skipped: {e} (bash scripts/timescaledb.sh starts it)");
                    continue;
                }
            },
            other => panic!("GPUWATCH_BENCH_BACKENDS: unknown backend {other:?}; use postgres and/or timescaledb"),
        };
        all.push(bench(kind, gpus, wrk).await);
    }
    print!("{}", summary(&all));
}
