//! Ingest benchmark: the [`BatchWriter`] and the [`Ingestor`] (the one
//! ingest path: validation, inventory, one transaction) against `psql
//! \copy` (CSV) of the same rows into an identical hypertable, all measured
//! in the same run.
//!
//! `cargo bench --bench ingest [-- --rows N --connections C --chunk-rows R --sweep]`
//! needs the TimescaleDB server of `scripts/timescaledb.sh` (`TIMESCALE_URL`)
//! and `psql` on PATH. Every phase starts after a CHECKPOINT and a pause,
//! psql before the writer; both run twice on freshly truncated tables and the
//! best round counts for each. Autovacuum is off on both tables so that one
//! phase's rows are not vacuumed on the next phase's time. Then the same rows
//! are written again (all duplicates: the de-duplicating path). Last, the
//! comparison is repeated with gpu_metrics' invalidation trigger dropped,
//! the cost of seeing every write, measured in the same run.

mod common;
use common::{arg, mix, round, write_csv};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpuwatch_store::inventory::{GpuInfo, HostInfo};
use gpuwatch_store::testing::{Kind, TestDb};
use gpuwatch_store::{
    connect, migrate, Batch, BatchWriter, GpuReading, GpuSample, IngestLimits, Ingestor, Pool,
    Sample, WriterConfig,
};
use tokio_postgres::Client;

const GPUS: usize = 400;
const GPUS_PER_HOST: usize = 8;
const STEP_SECS: i64 = 10;
/// `--sweep`: (connections, rows per chunk) tried besides the main setting.
const SWEEP: [(usize, usize); 4] = [(1, 50_000), (4, 50_000), (2, 10_000), (2, 200_000)];

/// Every column the generator below does not model, from the catalogue.
static GPU_BASE: std::sync::LazyLock<GpuSample> = std::sync::LazyLock::new(common::plausible);

/// One plausible sample of GPU `gpu` (0-based) at time step `step`.
fn sample(gpu: usize, step: usize, at: DateTime<Utc>) -> GpuSample {
    let key = ((gpu as u64) << 32) | step as u64;
    let r = |salt: u64| (mix(key ^ (salt << 56)) >> 11) as f64 / (1u64 << 53) as f64;
    let load = (gpu % 5) as f64 / 4.0;
    let util = round((load * 88.0 + r(1) * 12.0).min(100.0), 1);
    let total: i64 = 80 << 30;
    let used = ((load * 0.8 + r(2) * 0.15) * total as f64) as i64;
    let host = gpu / GPUS_PER_HOST;
    GpuSample {
        gpu_id: gpu as i64 + 1,
        host_id: format!("bench-host-{:03}", host + 1),
        collected_at: at,
        utilization_percent: Some(util),
        memory_used: Some(used),
        memory_usage_percent: Some(round(used as f64 * 100.0 / total as f64, 2)),
        temperature: Some(round(31.0 + util * 0.5 + r(3) * 3.0, 1)),
        power_draw: Some(round(68.0 + util * 6.1 + r(4) * 25.0, 2)),
        // Half the hosts are air-cooled PCIe cards; SXM boards report no fan.
        fan_speed_percent: (host % 2 == 0).then(|| round(30.0 + util * 0.6 + r(5), 1)),
        sm_clock: Some(1_410 + (r(6) * 570.0) as i32),
        memory_clock: Some(2_619),
        process_count: Some((load * 4.0 + r(7) * 2.0) as i32),
        memory_copy_util_percent: Some(round(util * 0.4 * r(8), 1)),
        memory_free: Some(total - used),
        memory_temperature: Some(round(38.0 + util * 0.45 + r(9) * 2.0, 1)),
        energy_consumed_mj: Some(gpu as i64 * 1_000_000_000 + step as i64 * 3_900_000),
        pcie_tx_bytes_per_sec: Some((r(10) * 2.4e10 * load) as i64),
        pcie_rx_bytes_per_sec: Some((r(11) * 2.4e10 * load) as i64),
        ecc_sbe_volatile: Some((gpu % 3 * step / 700) as i64),
        ecc_dbe_volatile: Some(0),
        xid_last: (r(12) < 0.0005).then_some([13, 31, 43, 79][gpu % 4]),
        // NVML clocks-event bits: 0x1 idle, 0x4 software power cap.
        throttle_reasons: Some(4 * (util > 95.0) as i64 + (util < 5.0) as i64),
        ..GPU_BASE.clone()
    }
}

/// `n` samples of 400 GPUs every 10 s, time-major like collector batches,
/// the newest at the last 10 s boundary.
fn generate(n: usize) -> Vec<GpuSample> {
    let steps = n.div_ceil(GPUS) as i64;
    let end = Utc::now()
        .duration_trunc(TimeDelta::seconds(STEP_SECS))
        .expect("now is representable");
    let start = end - TimeDelta::seconds((steps - 1) * STEP_SECS);
    (0..n)
        .map(|i| {
            let (step, gpu) = (i / GPUS, i % GPUS);
            let at = start + TimeDelta::seconds(step as i64 * STEP_SECS);
            sample(gpu, step, at)
        })
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

const REFERENCE: &str = "SET client_min_messages = warning;
    CREATE TABLE gpu_metrics_psql (LIKE gpu_metrics INCLUDING ALL);
    SELECT create_hypertable('gpu_metrics_psql', 'collected_at',
        chunk_time_interval => interval '1 day', create_default_indexes => false);
    ALTER TABLE gpu_metrics SET (autovacuum_enabled = false);
    ALTER TABLE gpu_metrics_psql SET (autovacuum_enabled = false)";

/// The reference table, a twin of gpu_metrics; prints both index counts.
async fn create_reference(c: &Client) {
    sql(c, REFERENCE).await;
    let q = |t| format!("SELECT count(*) FROM pg_index WHERE indrelid = '{t}'::regclass");
    let ours = one_i64(c, &q("gpu_metrics")).await;
    let theirs = one_i64(c, &q("gpu_metrics_psql")).await;
    println!("indexes:              gpu_metrics {ours}, gpu_metrics_psql {theirs}");
    assert_eq!(ours, theirs, "the reference table lacks indexes");
}

/// Lets the previous phase's dirty buffers reach disk before the next starts.
async fn settle(c: &Client) {
    sql(c, "CHECKPOINT").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Order-independent fingerprint of a table's contents.
async fn fingerprint(c: &Client, table: &str) -> i64 {
    let q = format!("SELECT sum(hashtext(t::text)::bigint)::bigint FROM {table} t");
    one_i64(c, &q).await
}

/// What every timed phase needs.
struct Bench {
    c: Client,
    url: String,
    csv: PathBuf,
    pool: Pool,
    rows: Vec<GpuSample>,
    inventory: Vec<(HostInfo, Vec<GpuInfo>)>,
    /// The rows keyed by UUID, as an agent sends them.
    batch: Batch,
}

impl Bench {
    async fn expect_count(&self, table: &str) {
        let got = one_i64(&self.c, &format!("SELECT count(*) FROM {table}")).await;
        let n = self.rows.len() as i64;
        assert_eq!(got, n, "{table} holds {got} rows, expected {n}");
    }

    /// `psql \copy` of the CSV into gpu_metrics_psql, timed around the process.
    async fn psql(&self) -> Duration {
        settle(&self.c).await;
        let file = self.csv.to_str().filter(|p| !p.contains('\''));
        let file = file.expect("a temp path psql can quote");
        let cols = GpuSample::COLUMNS.join(", ");
        let cmd = format!("\\copy gpu_metrics_psql ({cols}) FROM '{file}' WITH (FORMAT csv)");
        let t = Instant::now();
        let out = tokio::process::Command::new("psql")
            .args(["-X", "-q", "-d", &self.url, "-c", &cmd])
            .arg("--set=ON_ERROR_STOP=1")
            .output()
            .await
            .expect("psql must be on PATH");
        let took = t.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "psql \\copy failed: {err}");
        self.expect_count("gpu_metrics_psql").await;
        took
    }

    /// The batch writer into gpu_metrics; `fresh`: no row is stored yet
    /// (otherwise all are: the de-duplicating path).
    async fn writer(&self, connections: usize, chunk_rows: usize, fresh: bool) -> Duration {
        settle(&self.c).await;
        let cfg = WriterConfig {
            connections,
            chunk_rows,
        };
        let writer = BatchWriter::new(self.pool.clone(), cfg);
        let t = Instant::now();
        let stats = writer.write(&self.rows).await.expect("batch write");
        let took = t.elapsed();
        let n = self.rows.len() as u64;
        let expected = if fresh { (n, 0) } else { (0, n) };
        assert_eq!((stats.inserted, stats.duplicates), expected, "{stats:?}");
        self.expect_count("gpu_metrics").await;
        took
    }
}

impl Bench {
    /// The rows through [`Ingestor::ingest`]: validation, the (cached)
    /// inventory, then one transaction on one connection.
    async fn ingestor(&self, chunk_rows: usize) -> Duration {
        settle(&self.c).await;
        let cfg = WriterConfig {
            connections: 1,
            chunk_rows,
        };
        let limits = IngestLimits {
            max_samples: usize::MAX,
            ..IngestLimits::default()
        };
        let ingestor = Ingestor::new(self.pool.clone(), cfg, limits);
        // Registration is once per inventory change, not per batch: outside the timing.
        ingestor
            .ingest(&self.inventory, &Batch::default(), Utc::now())
            .await
            .expect("register the bench inventory");
        let t = Instant::now();
        let stats = ingestor
            .ingest(&self.inventory, &self.batch, Utc::now())
            .await
            .expect("ingest");
        let took = t.elapsed();
        assert_eq!(stats.inserted, self.rows.len() as u64, "{stats:?}");
        self.expect_count("gpu_metrics").await;
        took
    }
}

/// Best of two rounds of psql then writer, on fresh tables each time.
async fn compare(b: &Bench, connections: usize, chunk_rows: usize) -> (Duration, Duration) {
    let n = b.rows.len();
    let (mut psql_best, mut writer_best) = (Duration::MAX, Duration::MAX);
    for round in 1..=2 {
        if round > 1 {
            sql(&b.c, "TRUNCATE gpu_metrics; TRUNCATE gpu_metrics_psql").await;
        }
        let p = b.psql().await;
        let w = b.writer(connections, chunk_rows, true).await;
        println!(
            "round {round}:              psql {}; writer {}",
            rate(n, p),
            rate(n, w)
        );
        if round == 1 {
            let ours = fingerprint(&b.c, "gpu_metrics").await;
            let theirs = fingerprint(&b.c, "gpu_metrics_psql").await;
            assert_eq!(ours, theirs, "both tables must hold the same rows");
        }
        psql_best = psql_best.min(p);
        writer_best = writer_best.min(w);
    }
    (psql_best, writer_best)
}

#[tokio::main]
async fn main() {
    let (rows, connections, chunk_rows) = (
        arg("--rows", 2_000_000),
        arg("--connections", 2),
        arg("--chunk-rows", 50_000),
    );
    let db = TestDb::new(Kind::TimescaleDb).await;
    let mut cfg = db.store_config();
    let report = migrate(&cfg).await.expect("migrate the bench database");
    let server = format!("PostgreSQL {}, {}", report.server_version, report.backend);
    println!("server:               {server}");
    cfg.pool_size = cfg.pool_size.max(connections).max(4);
    let pool = connect(&cfg).await.expect("connect the writer pool");
    let c = db.client().await;
    create_reference(&c).await;
    let rows = generate(rows);
    let csv = std::env::temp_dir().join(format!("gpuwatch-ingest-{}.csv", std::process::id()));
    write_csv(&rows, &csv).expect("write the CSV file");
    let (url, n) = (db.url.clone(), rows.len());
    let batch = Batch {
        gpu: rows
            .iter()
            .map(|s| GpuReading {
                uuid: format!("GPU-bench-{}", s.gpu_id - 1),
                sample: s.clone(),
            })
            .collect(),
        ..Batch::default()
    };
    let b = Bench {
        c,
        url,
        csv,
        pool,
        rows,
        inventory: common::inventory(GPUS / GPUS_PER_HOST, GPUS_PER_HOST),
        batch,
    };

    let (p, w) = compare(&b, connections, chunk_rows).await;
    let settings = format!("{connections} connections, {chunk_rows} rows/chunk");
    let ratio = p.as_secs_f64() / w.as_secs_f64();
    println!("psql \\copy (CSV):     {}", rate(n, p));
    println!("BatchWriter (binary): {} ({settings})", rate(n, w));
    println!("ratio:                {ratio:.2}x psql");
    let d = b.writer(connections, chunk_rows, false).await;
    println!("dedup path (resend):  {}", rate(n, d));

    // The one ingest path, against psql again in the same conditions.
    let (mut p_best, mut i_best) = (Duration::MAX, Duration::MAX);
    for round in 1..=2 {
        sql(&b.c, "TRUNCATE gpu_metrics; TRUNCATE gpu_metrics_psql").await;
        let p = b.psql().await;
        let i = b.ingestor(chunk_rows).await;
        println!(
            "round {round}:              psql {}; ingestor {}",
            rate(n, p),
            rate(n, i)
        );
        if round == 1 {
            let ours = fingerprint(&b.c, "gpu_metrics").await;
            let theirs = fingerprint(&b.c, "gpu_metrics_psql").await;
            assert_eq!(
                ours, theirs,
                "the ingestor must store the same rows (gpus.id i + 1)"
            );
        }
        p_best = p_best.min(p);
        i_best = i_best.min(i);
    }
    let ratio = p_best.as_secs_f64() / i_best.as_secs_f64();
    println!("psql \\copy (CSV):     {}", rate(n, p_best));
    println!(
        "Ingestor (1 tx):      {} (1 connection, {chunk_rows} rows/chunk)",
        rate(n, i_best)
    );
    println!("ratio:                {ratio:.2}x psql");
    // The same comparison without the tables' invalidation triggers
    // (migration 0029): what the writer cost before, measured in this run.
    sql(&b.c, "DROP TRIGGER gpuwatch_tier_invalidate_insert ON gpu_metrics; TRUNCATE gpu_metrics; TRUNCATE gpu_metrics_psql").await;
    let (p0, w0) = compare(&b, connections, chunk_rows).await;
    println!(
        "without triggers:     psql {}; writer {}; ratio {:.2}x psql",
        rate(n, p0),
        rate(n, w0),
        p0.as_secs_f64() / w0.as_secs_f64()
    );

    if std::env::args().any(|a| a == "--sweep") {
        for (connections, chunk_rows) in SWEEP {
            sql(&b.c, "TRUNCATE gpu_metrics").await;
            let w = b.writer(connections, chunk_rows, true).await;
            println!("sweep {connections} conn x {chunk_rows:>6}: {}", rate(n, w));
        }
    }
    let _ = std::fs::remove_file(&b.csv);
}

fn rate(n: usize, d: Duration) -> String {
    common::rate(n as u64, d)
}
