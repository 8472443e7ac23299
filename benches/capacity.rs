//! Capacity benchmark: what one database node holds and serves, measured on
//! both backends in one run, for the fleet-size arithmetic in DESIGN.
//!
//! `cargo bench --bench capacity [-- --hosts H --hours N --cycles C --backend postgres|timescaledb]`
//! (defaults: 32 hosts of 8 GPUs, 6 hours at a 10 s interval, 60 agent
//! cycles; both backends: plain PostgreSQL on `DATABASE_URL`, TimescaleDB on
//! `TIMESCALE_URL`). Per backend:
//!
//! 1. **Ingest.** The GPU rows of N hours once by `COPY … FROM STDIN (FORMAT
//!    csv)` into a twin of gpu_metrics (the reference), then by the
//!    [`BatchWriter`] into gpu_metrics; host and environment rows by the
//!    writer too. Then C cycles of agent-sized batches (one host, one 10 s
//!    cycle: 8 GPU rows and a host row) through the [`Ingestor`] from 4
//!    tasks, as `serve` runs them. CPU is this process's (`getrusage`) and
//!    the server backends' of the bench database (`/proc/<pid>/stat` of the
//!    pids in `pg_stat_activity`; the server's background processes,
//!    WAL writer and checkpointer, are not counted).
//! 2. **Aggregation.** The aggregator until caught up over the N hours
//!    (1h and 1d tiers of all three tables and the fleet rollups), time and
//!    CPU on both sides.
//! 3. **Bytes.** After `VACUUM ANALYZE`, the size of each raw and tier table
//!    with its indexes (`hypertable_size` of a hypertable, else the sum of
//!    `pg_total_relation_size` over `pg_partition_tree`) over its row count.
//! 4. **Fleet size** of one node of a stated size, from the above.

mod common;
use common::{arg, grouped, inventory, mix, plausible, rate, round, write_csv};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpuwatch_aggregator::{run_once, AggregatorConfig};
use gpuwatch_store::testing::{Kind, TestDb};
use gpuwatch_store::{
    connect, migrate, Batch, BatchWriter, EnvSample, GpuReading, GpuSample, HostSample,
    IngestLimits, Ingestor, Pool, Sample, WriterConfig,
};
use tokio_postgres::Client;

const GPUS_PER_HOST: usize = 8;
const ENVS_PER_HOST: usize = 2;
const STEP_SECS: i64 = 10;
const AGENT_TASKS: usize = 4;
/// The node the fleet size is stated for.
const NODE_CORES: f64 = 16.0;
const NODE_DISK_BYTES: f64 = 2e12;
/// Steady state may use this share of the node's cores and disk; the rest is
/// for reads, vacuum, WAL and a catch-up after an outage.
const HEADROOM: f64 = 0.5;
/// Retention of raw, hourly and daily rows in days (the defaults).
const KEEP_DAYS: [f64; 3] = [7.0, 90.0, 365.0];

static GPU_BASE: std::sync::LazyLock<GpuSample> = std::sync::LazyLock::new(plausible);
static HOST_BASE: std::sync::LazyLock<HostSample> = std::sync::LazyLock::new(plausible);
static ENV_BASE: std::sync::LazyLock<EnvSample> = std::sync::LazyLock::new(plausible);

fn noise(key: u64, salt: u64) -> f64 {
    (mix(key ^ (salt << 56)) >> 11) as f64 / (1u64 << 53) as f64
}

/// GPU `gpu` (0-based, `gpus.id` gpu + 1) at step `step`.
fn gpu_sample(gpu: usize, step: i64, at: DateTime<Utc>) -> GpuSample {
    let r = |salt| noise(((gpu as u64) << 32) | step as u64, salt);
    let load = (gpu % 5) as f64 / 4.0;
    let util = round((load * 88.0 + r(1) * 12.0).min(100.0), 1);
    let total: i64 = 80 << 30;
    let used = ((load * 0.8 + r(2) * 0.15) * total as f64) as i64;
    GpuSample {
        gpu_id: gpu as i64 + 1,
        host_id: format!("bench-host-{:03}", gpu / GPUS_PER_HOST + 1),
        collected_at: at,
        utilization_percent: Some(util),
        memory_used: Some(used),
        memory_usage_percent: Some(round(used as f64 * 100.0 / total as f64, 2)),
        temperature: Some(round(31.0 + util * 0.5 + r(3) * 3.0, 1)),
        power_draw: Some(round(68.0 + util * 6.1 + r(4) * 25.0, 2)),
        sm_clock: Some(1_410 + (r(6) * 570.0) as i32),
        memory_free: Some(total - used),
        energy_consumed_mj: Some(gpu as i64 * 1_000_000_000 + step * 3_900_000),
        pcie_tx_bytes_per_sec: Some((r(10) * 2.4e10 * load) as i64),
        ecc_sbe_volatile: Some(gpu as i64 % 3 * step / 700),
        xid_last: None,
        throttle_reasons: Some(4 * (util > 95.0) as i64 + (util < 5.0) as i64),
        ..GPU_BASE.clone()
    }
}

fn host_sample(host: usize, step: i64, at: DateTime<Utc>) -> HostSample {
    let r = |salt| noise(((host as u64) << 40) | step as u64, salt);
    HostSample {
        host_id: format!("bench-host-{:03}", host + 1),
        collected_at: at,
        cpu_usage_percent: Some(round(20.0 + r(1) * 60.0, 1)),
        memory_used: Some((r(2) * 1e12) as i64),
        network_rx_bytes: Some(host as i64 * 1_000_000 + step * 12_500_000),
        network_tx_bytes: Some(host as i64 * 1_000_000 + step * 9_000_000),
        ..HOST_BASE.clone()
    }
}

fn env_sample(host: usize, e: usize, step: i64, at: DateTime<Utc>) -> EnvSample {
    let r = |salt| {
        noise(
            ((host as u64) << 40) | ((e as u64) << 36) | step as u64,
            salt,
        )
    };
    EnvSample {
        env_id: format!("bench-env-{:03}-{e}", host + 1),
        host_id: format!("bench-host-{:03}", host + 1),
        collected_at: at,
        cpu_usage_percent: Some(round(r(1) * 100.0, 1)),
        gpu_usage_percent: Some(round(r(2) * 100.0, 1)),
        network_rx_bytes: Some(step * 1_000_000),
        ..ENV_BASE.clone()
    }
}

/// Every 10 s step in `[start, start + steps)`, time-major like collector batches.
fn rows<S>(
    units: usize,
    start: DateTime<Utc>,
    steps: std::ops::Range<i64>,
    f: impl Fn(usize, i64, DateTime<Utc>) -> S,
) -> Vec<S> {
    steps
        .flat_map(|s| (0..units).map(move |u| (s, u)))
        .map(|(s, u)| f(u, s, start + TimeDelta::seconds(s * STEP_SECS)))
        .collect()
}

async fn sql(c: &Client, q: &str) {
    c.batch_execute(q)
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
}

async fn one_i64(c: &Client, q: &str) -> i64 {
    let row = c.query_one(q, &[]).await;
    row.unwrap_or_else(|e| panic!("{q}: {e}")).get(0)
}

/// Lets the previous phase's dirty buffers reach disk before the next starts.
async fn settle(c: &Client) {
    sql(c, "CHECKPOINT").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// User plus system CPU seconds of this process.
fn own_cpu() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage of this process");
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(u.user_time()) + secs(u.system_time())
}

/// User plus system CPU seconds of process `pid`, from `/proc/<pid>/stat`
/// (fields 14 and 15, in clock ticks of 1/100 s, Linux's USER_HZ).
fn proc_cpu(pid: i32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<f64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

/// CPU seconds so far: this process, and each server backend of the bench database.
struct CpuMark {
    own: f64,
    backends: HashMap<i32, f64>,
}

async fn backends(c: &Client) -> HashMap<i32, f64> {
    let q = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()";
    let rows = c.query(q, &[]).await.expect("pg_stat_activity");
    rows.iter()
        .map(|r| r.get::<_, i32>(0))
        .map(|p| (p, proc_cpu(p)))
        .collect()
}

async fn mark(c: &Client) -> CpuMark {
    CpuMark {
        own: own_cpu(),
        backends: backends(c).await,
    }
}

/// What one phase cost: wall time, client and server CPU seconds.
#[derive(Clone, Copy)]
struct Cost {
    wall: Duration,
    client: f64,
    server: f64,
}

impl Cost {
    fn cores(&self) -> f64 {
        self.client + self.server
    }

    /// `rows/s per core (client x, server y)`.
    fn per_core(&self, n: u64) -> String {
        format!(
            "{} rows/s per core (CPU: client {:.1} s, server {:.1} s)",
            grouped(n as f64 / self.cores()),
            self.client,
            self.server
        )
    }
}

async fn since(c: &Client, start: CpuMark, t: Instant) -> Cost {
    let wall = t.elapsed();
    let own = own_cpu();
    let now = backends(c).await;
    let server = now
        .iter()
        .map(|(pid, cpu)| cpu - start.backends.get(pid).copied().unwrap_or(0.0))
        .sum();
    Cost {
        wall,
        client: own - start.own,
        server,
    }
}

/// `(rows, bytes with indexes, average row width)` of a raw or tier table.
async fn size(c: &Client, timescale: bool, table: &str) -> (i64, i64, f64) {
    let hyper = timescale
        && one_i64(
            c,
            &format!("SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = '{table}'"),
        )
        .await
            > 0;
    let bytes = if hyper {
        format!("SELECT hypertable_size('{table}')::bigint")
    } else {
        // A plain table is no partition tree: its own size.
        format!("SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('{table}')), pg_total_relation_size('{table}'))::bigint")
    };
    let rows = one_i64(c, &format!("SELECT count(*) FROM {table}")).await;
    let width = format!("SELECT coalesce(avg(pg_column_size(t.*)), 0)::float8 FROM {table} t");
    let width: f64 = c.query_one(&width, &[]).await.expect("row width").get(0);
    (rows, one_i64(c, &bytes).await, width)
}

/// Everything one backend's run measured, for the fleet arithmetic.
struct Figures {
    /// Bytes per row of (raw, 1h, 1d) for (gpu, host, env).
    bytes: [[f64; 3]; 3],
    /// Server CPU seconds per row through the Ingestor, agent-sized batches.
    server_per_row: f64,
    /// Client (serve) CPU seconds per row, the same.
    client_per_row: f64,
    /// Server CPU seconds per GPU and hour of data, aggregation.
    agg_server_per_gpu_hour: f64,
    /// Client (aggregator) CPU seconds per GPU and hour of data.
    agg_client_per_gpu_hour: f64,
}

struct Setup {
    kind: Kind,
    hosts: usize,
    hours: i64,
    cycles: i64,
}

/// The reference: a twin of gpu_metrics without the tier trigger, the
/// rows in by the server's own CSV COPY on one connection.
async fn reference(c: &Client, kind: Kind, csv: &std::path::Path, n: u64) -> Cost {
    sql(c, "SET client_min_messages = warning").await;
    sql(
        c,
        "CREATE TABLE gpu_metrics_ref (LIKE gpu_metrics INCLUDING ALL)",
    )
    .await;
    if kind == Kind::TimescaleDb {
        sql(c, "SELECT create_hypertable('gpu_metrics_ref', 'collected_at', chunk_time_interval => interval '1 day', create_default_indexes => false)").await;
    }
    let data = std::fs::read(csv).expect("read the CSV file");
    settle(c).await;
    let cols = GpuSample::COLUMNS.join(", ");
    let q = format!("COPY gpu_metrics_ref ({cols}) FROM STDIN WITH (FORMAT csv)");
    let (m, t) = (mark(c).await, Instant::now());
    {
        use futures_util::SinkExt;
        let sink = c.copy_in::<_, bytes::Bytes>(&q).await.expect("COPY");
        let mut sink = std::pin::pin!(sink);
        for part in data.chunks(1 << 20) {
            let part = bytes::Bytes::copy_from_slice(part);
            sink.send(part).await.expect("COPY data");
        }
        let stored = sink.finish().await.expect("COPY done");
        assert_eq!(stored, n, "the reference stored every row");
    }
    since(c, m, t).await
}

async fn measure(s: &Setup) -> Figures {
    let db = TestDb::new(s.kind).await;
    let mut cfg = db.store_config();
    let report = migrate(&cfg).await.expect("migrate the bench database");
    println!(
        "\n== PostgreSQL {}, {} ==",
        report.server_version, report.backend
    );
    cfg.pool_size = cfg.pool_size.max(AGENT_TASKS + 2);
    let pool = connect(&cfg).await.expect("connect the pool");
    let c = db.client().await;
    let timescale = s.kind == Kind::TimescaleDb;
    let gpus = s.hosts * GPUS_PER_HOST;
    // Yesterday from midnight: the daily tier's bucket is closed, so it is materialised.
    let today = Utc::now()
        .duration_trunc(TimeDelta::days(1))
        .expect("today");
    let start = today - TimeDelta::days(1);
    let steps = s.hours * 3_600 / STEP_SECS;
    println!(
        "data:                 {} hosts x {GPUS_PER_HOST} GPUs, {ENVS_PER_HOST} environments a host, {} h at {STEP_SECS} s",
        s.hosts, s.hours
    );

    // Registration through the real path, outside any timing; GPU i gets id i + 1.
    let inv = inventory(s.hosts, GPUS_PER_HOST);
    let limits = IngestLimits {
        max_samples: usize::MAX,
        ..IngestLimits::default()
    };
    let one = WriterConfig {
        connections: 1,
        chunk_rows: 50_000,
    };
    let ingestor = Arc::new(Ingestor::new(pool.clone(), one, limits));
    ingestor
        .ingest(&inv, &Batch::default(), Utc::now())
        .await
        .expect("register the bench inventory");

    // 1. Bulk: the reference COPY, then the writer, of the same GPU rows.
    let gpu_rows = rows(gpus, start, 0..steps, gpu_sample);
    let n = gpu_rows.len() as u64;
    let csv = std::env::temp_dir().join(format!("gpuwatch-capacity-{}.csv", std::process::id()));
    write_csv(&gpu_rows, &csv).expect("write the CSV file");
    let r = reference(&c, s.kind, &csv, n).await;
    let _ = std::fs::remove_file(&csv);
    println!(
        "COPY csv (reference): {}; {}",
        rate(n, r.wall),
        r.per_core(n)
    );
    let writer = BatchWriter::new(
        pool.clone(),
        WriterConfig {
            connections: 2,
            chunk_rows: 50_000,
        },
    );
    settle(&c).await;
    let (m, t) = (mark(&c).await, Instant::now());
    let stats = writer.write(&gpu_rows).await.expect("write gpu rows");
    let w = since(&c, m, t).await;
    assert_eq!(stats.inserted, n, "{stats:?}");
    println!(
        "BatchWriter, 2 conn:  {}; {}",
        rate(n, w.wall),
        w.per_core(n)
    );
    println!(
        "  writer/reference:   {:.2}x the rows/s, {:.2}x the CPU per row",
        r.wall.as_secs_f64() / w.wall.as_secs_f64(),
        w.cores() / r.cores()
    );
    drop(gpu_rows);
    let host_rows = rows(s.hosts, start, 0..steps, host_sample);
    let env_rows = rows(s.hosts * ENVS_PER_HOST, start, 0..steps, |u, st, at| {
        env_sample(u / ENVS_PER_HOST, u % ENVS_PER_HOST, st, at)
    });
    writer.write(&host_rows).await.expect("write host rows");
    writer
        .write(&env_rows)
        .await
        .expect("write environment rows");

    // The agent path: one host's cycle per batch, through the Ingestor, 4 at a time.
    let agent = agent_batches(s.hosts, start, steps..steps + s.cycles);
    let agent_rows: u64 = agent.iter().map(|(_, b)| b.len() as u64).sum();
    settle(&c).await;
    let (m, t) = (mark(&c).await, Instant::now());
    ingest_all(&ingestor, &inv, agent).await;
    let a = since(&c, m, t).await;
    let batches = s.hosts as i64 * s.cycles;
    println!(
        "Ingestor, agent size: {} ({batches} batches of {} rows, {AGENT_TASKS} tasks); {}",
        rate(agent_rows, a.wall),
        GPUS_PER_HOST + 1,
        a.per_core(agent_rows)
    );

    // 2. The aggregator over the N hours.
    settle(&c).await;
    let (m, t) = (mark(&c).await, Instant::now());
    let runs = aggregate(&pool).await;
    let g = since(&c, m, t).await;
    let gpu_hours = (gpus as i64 * s.hours) as f64;
    println!(
        "aggregator:           {runs} run(s), {:.1} s wall, CPU aggregator {:.1} s + server {:.1} s for {} h of {gpus} GPUs, {} hosts, {} environments",
        g.wall.as_secs_f64(),
        g.client,
        g.server,
        s.hours,
        s.hosts,
        s.hosts * ENVS_PER_HOST
    );
    println!(
        "  per hour of data:   {:.2} s wall, {:.2} CPU s ({:.2} ms CPU per GPU-hour, all three tables' tiers included)",
        g.wall.as_secs_f64() / s.hours as f64,
        g.cores() / s.hours as f64,
        g.cores() * 1e3 / gpu_hours
    );

    // 3. Bytes.
    sql(&c, "VACUUM ANALYZE").await;
    println!("table                     rows       bytes (with indexes)  bytes/row  row width");
    let mut bytes = [[0.0; 3]; 3];
    for (i, t) in ["gpu_metrics", "host_metrics", "environment_metrics"]
        .iter()
        .enumerate()
    {
        for (j, suffix) in ["", "_1h", "_1d"].iter().enumerate() {
            let name = format!("{t}{suffix}");
            let (rows, total, width) = size(&c, timescale, &name).await;
            bytes[i][j] = total as f64 / rows.max(1) as f64;
            println!(
                "{name:<24} {rows:>8}  {total:>20}  {:>9.0}  {width:>9.0}",
                bytes[i][j]
            );
        }
    }
    Figures {
        bytes,
        server_per_row: a.server / agent_rows as f64,
        client_per_row: a.client / agent_rows as f64,
        agg_server_per_gpu_hour: g.server / gpu_hours,
        agg_client_per_gpu_hour: g.client / gpu_hours,
    }
}

fn agent_batches(
    hosts: usize,
    start: DateTime<Utc>,
    steps: std::ops::Range<i64>,
) -> Vec<(usize, Batch)> {
    steps
        .flat_map(|st| (0..hosts).map(move |h| (st, h)))
        .map(|(st, h)| {
            let at = start + TimeDelta::seconds(st * STEP_SECS);
            let gpu = (0..GPUS_PER_HOST)
                .map(|g| h * GPUS_PER_HOST + g)
                .map(|g| GpuReading {
                    uuid: format!("GPU-bench-{g}"),
                    sample: gpu_sample(g, st, at),
                })
                .collect();
            let host = vec![host_sample(h, st, at)];
            let batch = Batch {
                gpu,
                host,
                env: Vec::new(),
            };
            (h, batch)
        })
        .collect()
}

type Inventory = Vec<(
    gpuwatch_store::inventory::HostInfo,
    Vec<gpuwatch_store::inventory::GpuInfo>,
)>;

/// The batches through the Ingestor from [`AGENT_TASKS`] tasks, each with
/// the inventory of its batch's host, as an agent sends it.
async fn ingest_all(ingestor: &Arc<Ingestor>, inv: &Inventory, batches: Vec<(usize, Batch)>) {
    let inv = Arc::new(inv.clone());
    let mut lanes: Vec<Vec<(usize, Batch)>> = (0..AGENT_TASKS).map(|_| Vec::new()).collect();
    for (i, b) in batches.into_iter().enumerate() {
        lanes[i % AGENT_TASKS].push(b);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for lane in lanes {
        let (ingestor, inv) = (ingestor.clone(), inv.clone());
        tasks.spawn(async move {
            for (h, batch) in lane {
                let stats = ingestor.ingest(&inv[h..h + 1], &batch, Utc::now()).await;
                let stats = stats.expect("ingest an agent batch");
                assert_eq!(stats.inserted, batch.len() as u64, "{stats:?}");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("an ingest task");
    }
}

/// Runs the aggregator until caught up; returns how many runs it took.
async fn aggregate(pool: &Pool) -> usize {
    let cfg = AggregatorConfig {
        max_hourly_buckets_per_run: 24 * 31,
        max_daily_buckets_per_run: 31,
        ..AggregatorConfig::default()
    };
    let mut runs = 0;
    loop {
        let r = run_once(pool, &cfg, Utc::now()).await;
        let r = r.expect("aggregator run");
        runs += 1;
        if r.expect("no other aggregator holds the lock").caught_up() {
            return runs;
        }
    }
}

/// The fleet one node serves, from one backend's figures.
fn fleet(f: &Figures) {
    // Rows per GPU per 10 s: its own, an eighth of its host's, a quarter environment.
    let per_gpu = [
        1.0,
        1.0 / GPUS_PER_HOST as f64,
        ENVS_PER_HOST as f64 / GPUS_PER_HOST as f64,
    ];
    let rows_per_gpu_s: f64 = per_gpu.iter().sum::<f64>() / STEP_SECS as f64;
    let cpu = rows_per_gpu_s * f.server_per_row + f.agg_server_per_gpu_hour / 3_600.0;
    let by_cpu = HEADROOM * NODE_CORES / cpu;
    // Rows kept per GPU: raw 8,640 a day, hourly 24, daily 1, times retention.
    let kept_per_day = [86_400.0 / STEP_SECS as f64, 24.0, 1.0];
    let disk: f64 = (0..3)
        .map(|table| {
            (0..3)
                .map(|tier| {
                    per_gpu[table] * kept_per_day[tier] * KEEP_DAYS[tier] * f.bytes[table][tier]
                })
                .sum::<f64>()
        })
        .sum();
    let by_disk = HEADROOM * NODE_DISK_BYTES / disk;
    println!("fleet arithmetic ({NODE_CORES} cores, {} TB, headroom: steady state at most {:.0}% of cores and disk):",
        NODE_DISK_BYTES / 1e12, HEADROOM * 100.0);
    println!(
        "  rows/s per GPU:     {rows_per_gpu_s:.4} (1 GPU row + 1/{GPUS_PER_HOST} host row + {ENVS_PER_HOST}/{GPUS_PER_HOST} environment rows every {STEP_SECS} s)"
    );
    println!(
        "  server CPU per GPU: {:.3} ms/s = {rows_per_gpu_s:.4} rows/s x {:.1} us/row ingest + {:.3} ms/GPU-hour aggregation / 3600",
        cpu * 1e3,
        f.server_per_row * 1e6,
        f.agg_server_per_gpu_hour * 1e3
    );
    println!(
        "  by CPU:             {} GPUs ({:.0}% x {NODE_CORES} cores / server CPU per GPU)",
        grouped(by_cpu),
        HEADROOM * 100.0
    );
    println!(
        "  disk per GPU:       {:.1} MB (raw {} d, 1h {} d, 1d {} d, bytes/row as measured)",
        disk / 1e6,
        KEEP_DAYS[0],
        KEEP_DAYS[1],
        KEEP_DAYS[2]
    );
    println!(
        "  by disk:            {} GPUs ({:.0}% x {} TB / disk per GPU)",
        grouped(by_disk),
        HEADROOM * 100.0,
        NODE_DISK_BYTES / 1e12
    );
    println!(
        "  one node serves:    {} GPUs at {STEP_SECS} s (the smaller); serve/aggregator CPU off the node: {:.1} us/row ingest, {:.3} ms/GPU-hour aggregation",
        grouped(by_cpu.min(by_disk)),
        f.client_per_row * 1e6,
        f.agg_client_per_gpu_hour * 1e3
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let only = args.iter().position(|a| a == "--backend").map(|i| {
        match args.get(i + 1).map(String::as_str) {
            Some("postgres") => Kind::Postgres,
            Some("timescaledb") => Kind::TimescaleDb,
            _ => panic!("--backend needs postgres or timescaledb"),
        }
    });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine:              {cores} cores available to this process");
    for kind in [Kind::Postgres, Kind::TimescaleDb] {
        if only.is_some_and(|k| k != kind) {
            continue;
        }
        let s = Setup {
            kind,
            hosts: arg("--hosts", 32),
            hours: arg("--hours", 6) as i64,
            cycles: arg("--cycles", 60) as i64,
        };
        let f = measure(&s).await;
        fleet(&f);
    }
}
