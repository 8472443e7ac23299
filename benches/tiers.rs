//! Tier benchmark: a fleet-average GPU-utilisation series through
//! `gpuwatch_series` (hourly tier plus the raw tail) against the same series
//! aggregated straight from raw rows, and how fast the aggregator
//! materialises the tiers.
//!
//! `cargo bench --bench tiers [-- --gpus N --days D --backend timescaledb|postgres --keep]`
//! (defaults: 200 GPUs, 30 days, TimescaleDB on `TIMESCALE_URL`; postgres
//! uses `DATABASE_URL`). One sample per GPU and minute is written with the
//! [`BatchWriter`], the aggregator runs until caught up, then both queries
//! run over the same fixed 30-day range with a 1-hour step: once to warm,
//! then the median of several runs counts. Both must agree on every bucket
//! but the partial first and last ones. `--keep` leaves the database in
//! place (its URL is printed) for `EXPLAIN` afterwards.

mod common;
use common::{arg, mix, rate, round};

use std::f64::consts::TAU;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use gpuwatch_aggregator::{run_once, AggregatorConfig, RunReport};
use gpuwatch_store::testing::{Kind, TestDb};
use gpuwatch_store::{connect, migrate, BatchWriter, GpuSample, Pool, WriterConfig};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

const GPUS_PER_HOST: usize = 8;
const MINUTES_PER_DAY: usize = 1_440;
const RANGE_DAYS: i64 = 30;
const SERIES: &str = "SELECT bucket, value FROM gpuwatch_series('gpu_metrics', NULL,
    'utilization_percent', $1, $2, interval '1 hour')";
const RAW: &str = "SELECT date_bin('1 hour', collected_at, '2000-01-01 00:00:00+00') AS bucket,
    (sum(utilization_percent::numeric) / nullif(count(utilization_percent), 0))::float8
    FROM gpu_metrics WHERE collected_at BETWEEN $1 AND $2 GROUP BY 1 ORDER BY 1";
const RAW_FLOAT: &str =
    "SELECT date_bin('1 hour', collected_at, '2000-01-01 00:00:00+00') AS bucket,
    avg(utilization_percent) FROM gpu_metrics WHERE collected_at BETWEEN $1 AND $2
    GROUP BY 1 ORDER BY 1";

fn backend() -> Kind {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--backend");
    match i.map(|i| args.get(i + 1).map(String::as_str)) {
        None | Some(Some("timescaledb")) => Kind::TimescaleDb,
        Some(Some("postgres")) => Kind::Postgres,
        _ => panic!("--backend needs timescaledb or postgres"),
    }
}

/// Counters carried from one slice of samples to the next, per GPU.
struct Counters {
    energy_mj: Vec<i64>,
    ecc_sbe: Vec<i64>,
}

/// Every column the generator below does not model, from the catalogue.
static GPU_BASE: std::sync::LazyLock<GpuSample> = std::sync::LazyLock::new(common::plausible);

/// GPU `gpu` (0-based) at `at`: a daily load pattern, idle stretches between
/// jobs, noise, and values that follow from the load.
fn sample(gpu: usize, at: DateTime<Utc>, c: &mut Counters) -> GpuSample {
    let minute = (at.timestamp() / 60) as u64;
    let r = |salt: u64| {
        let key = ((gpu as u64) << 40) ^ minute ^ (salt << 56);
        (mix(key) >> 11) as f64 / (1u64 << 53) as f64
    };
    // Idle for a 3-hour stretch now and then (no job scheduled).
    let idle = mix(((gpu as u64) << 40) ^ (minute / 180)) % 100 < 12;
    let load = 0.3 + 0.7 * (gpu as f64 * 0.618_034).fract();
    let hour = (minute % MINUTES_PER_DAY as u64) as f64 / 60.0;
    let daily = 0.7 + 0.3 * (TAU * (hour - 9.0) / 24.0).sin();
    let util = if idle {
        round(r(1) * 2.0, 1)
    } else {
        round(
            (load * daily * 100.0 + (r(1) - 0.5) * 16.0).clamp(0.0, 100.0),
            1,
        )
    };
    let total: i64 = 80 << 30;
    let used = ((0.02 + (!idle as u8 as f64) * (load * 0.8 + r(2) * 0.1)) * total as f64) as i64;
    let temp = round(28.0 + util * 0.55 + r(3) * 4.0, 1);
    let power = round(62.0 + util * 6.0 + r(4) * 25.0, 2);
    c.energy_mj[gpu] += (power * 60_000.0) as i64;
    c.ecc_sbe[gpu] += (r(5) < 0.000_2) as i64;
    GpuSample {
        gpu_id: gpu as i64 + 1,
        host_id: format!("bench-host-{:03}", gpu / GPUS_PER_HOST + 1),
        collected_at: at,
        // A failed NVML read now and then: count(utilization) < count(*).
        utilization_percent: (r(6) >= 0.000_2).then_some(util),
        memory_used: Some(used),
        memory_usage_percent: Some(round(used as f64 * 100.0 / total as f64, 2)),
        temperature: Some(temp),
        power_draw: Some(power),
        fan_speed_percent: Some(round(30.0 + util * 0.6 + r(7) * 3.0, 1)),
        sm_clock: Some(if idle { 345 } else { 1_410 + util as i32 * 5 }),
        memory_clock: Some(if idle { 1_593 } else { 2_619 }),
        process_count: Some(if idle { 0 } else { 1 + (r(8) * 3.0) as i32 }),
        memory_copy_util_percent: Some(round(util * 0.4 * r(9), 1)),
        memory_free: Some(total - used),
        memory_temperature: Some(round(36.0 + util * 0.45 + r(10) * 2.0, 1)),
        energy_consumed_mj: Some(c.energy_mj[gpu]),
        pcie_tx_bytes_per_sec: Some((r(11) * 2.4e10 * util / 100.0) as i64),
        pcie_rx_bytes_per_sec: Some((r(12) * 2.4e10 * util / 100.0) as i64),
        ecc_sbe_volatile: Some(c.ecc_sbe[gpu]),
        ecc_dbe_volatile: Some(0),
        xid_last: (r(13) < 0.000_3).then_some([13, 31, 43, 79, 94][gpu % 5]),
        // NVML clocks-event bits: 0x1 idle, 0x4 software power cap, 0x20 software thermal.
        throttle_reasons: Some(
            (util < 5.0) as i64 | (4 * (util > 95.0) as i64) | (32 * (temp > 84.0) as i64),
        ),
        ..GPU_BASE.clone()
    }
}

/// Writes `days` days of one sample a minute for `gpus` GPUs, ending at the
/// last full minute, one day at a time (time-major, like collector batches).
/// Returns the rows written and the time spent writing (generation excluded).
async fn ingest(pool: &Pool, gpus: usize, days: usize) -> (u64, Duration) {
    let cfg = WriterConfig {
        connections: 2,
        chunk_rows: 10_000,
    };
    let writer = BatchWriter::new(pool.clone(), cfg);
    let minutes = days * MINUTES_PER_DAY;
    let now = Utc::now().duration_trunc(TimeDelta::minutes(1));
    let end = now.expect("now is representable") - TimeDelta::minutes(1);
    let start = end - TimeDelta::minutes(minutes as i64 - 1);
    let mut c = Counters {
        energy_mj: (0..gpus).map(|g| g as i64 * 1_000_000_000).collect(),
        ecc_sbe: vec![0; gpus],
    };
    let (mut rows, mut took) = (0, Duration::ZERO);
    for day in 0..days {
        let slice: Vec<GpuSample> = (day * MINUTES_PER_DAY..(day + 1) * MINUTES_PER_DAY)
            .flat_map(|m| (0..gpus).map(move |g| (m, g)))
            .map(|(m, g)| sample(g, start + TimeDelta::minutes(m as i64), &mut c))
            .collect();
        let t = Instant::now();
        let stats = writer.write(&slice).await.expect("batch write");
        took += t.elapsed();
        assert_eq!(stats.inserted, slice.len() as u64, "{stats:?}");
        rows += stats.inserted;
    }
    (rows, took)
}

fn buckets(r: &RunReport) -> i64 {
    r.tiers
        .iter()
        .map(|t| t.new_buckets + t.recomputed_buckets)
        .sum()
}

/// Runs the aggregator until caught up: (runs, buckets, tier rows, time),
/// then once more with nothing new: (its buckets, its time).
async fn materialize(pool: &Pool) -> ((usize, i64, u64, Duration), (i64, Duration)) {
    let cfg = AggregatorConfig {
        max_hourly_buckets_per_run: 24 * 31,
        max_daily_buckets_per_run: 31,
        ..AggregatorConfig::default()
    };
    let once = || async {
        let r = run_once(pool, &cfg, Utc::now()).await;
        let r = r.expect("aggregator run");
        r.expect("no other aggregator holds the lock")
    };
    let (mut runs, mut n, mut rows) = (0, 0, 0);
    let t = Instant::now();
    loop {
        let r = once().await;
        runs += 1;
        n += buckets(&r);
        rows += r.tiers.iter().map(|t| t.rows_written).sum::<u64>();
        if r.caught_up() {
            break;
        }
    }
    let catch_up = (runs, n, rows, t.elapsed());
    let t = Instant::now();
    let idle = once().await;
    (catch_up, (buckets(&idle), t.elapsed()))
}

async fn count(c: &Client, table: &str) -> i64 {
    let q = format!("SELECT count(*) FROM {table}");
    let row = c.query_one(&q, &[]).await;
    row.unwrap_or_else(|e| panic!("{q}: {e}")).get(0)
}

type Series = Vec<(DateTime<Utc>, Option<f64>)>;

/// Runs `q` over [from, to] once to warm, then `runs` times: the last
/// result and the median latency.
async fn timed(
    c: &Client,
    q: &str,
    range: &[&(dyn ToSql + Sync)],
    runs: usize,
) -> (Series, Duration) {
    let mut times = Vec::with_capacity(runs);
    let mut rows = Vec::new();
    for i in 0..=runs {
        let t = Instant::now();
        rows = c
            .query(q, range)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        if i > 0 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    let series = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    (series, times[times.len() / 2])
}

/// Panics unless both series have the same buckets and equal values on all
/// but the first and last (partial) ones; returns how many matched.
fn compare(a: &Series, b: &Series) -> usize {
    assert_eq!(
        a.len(),
        b.len(),
        "the series and raw return different bucket counts"
    );
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.0, y.0, "bucket {i} differs");
        let inner = i > 0 && i + 1 < a.len();
        assert!(
            !inner || x.1 == y.1,
            "bucket {} differs: series {:?}, raw {:?}",
            x.0,
            x.1,
            y.1
        );
    }
    a.len().saturating_sub(2)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Times both queries over the same fixed 30 days, checks that they agree
/// and prints latencies and the goals.
async fn queries(c: &Client) {
    let to = Utc::now();
    let from = to - TimeDelta::days(RANGE_DAYS);
    let range: [&(dyn ToSql + Sync); 2] = [&from, &to];
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    println!(
        "range:                {} .. {}, 1-hour step",
        at(from),
        at(to)
    );
    let (a, ta) = timed(c, SERIES, &range, 7).await;
    let (b, tb) = timed(c, RAW, &range, 3).await;
    let (f, tf) = timed(c, RAW_FLOAT, &range, 3).await;
    let matched = compare(&a, &b);
    assert_eq!(
        f.len(),
        b.len(),
        "the float raw query returns other buckets"
    );
    let (na, nb) = (a.len(), b.len());
    println!("buckets:              series {na}, raw {nb}; {matched} inner buckets equal");
    let ratio = tb.as_secs_f64() / ta.as_secs_f64();
    println!("series function:      {} (median of 7)", ms(ta));
    println!("raw, numeric sum:     {} (median of 3)", ms(tb));
    println!("raw, float avg():     {} (median of 3)", ms(tf));
    println!("ratio raw/series:     {ratio:.1}x");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let fast = verdict(ta < Duration::from_millis(50));
    println!(
        "goal:                 series < 50 ms {fast}, >= 50x raw {}",
        verdict(ratio >= 50.0)
    );
}

/// Fills `tier` of gpu_metrics for `gpus` GPUs over `span` before `$1`
/// (utilisation only; other counts 0), as the aggregator would.
fn fill_sql(tier: gpuwatch_aggregator::spec::Tier, span: &str) -> String {
    use gpuwatch_aggregator::spec::{Tier, SOURCES};
    let (step, n, part) = match tier {
        Tier::Hourly => ("1 hour", 60, "hour"),
        Tier::Daily => ("1 day", 1_440, "doy"),
    };
    let (names, exprs): (Vec<String>, Vec<String>) = SOURCES[0]
        .typed_columns(tier)
        .into_iter()
        .filter_map(|c| {
            let e = match c.name.as_str() {
                "gpu_id" => "g".to_string(),
                "host_id" => format!("'bench-host-' || (g - 1) / {GPUS_PER_HOST} + 1"),
                "bucket" => "b".to_string(),
                "sample_count" | "utilization_percent_count" => n.to_string(),
                "utilization_percent_sum" => format!("{n} * u"),
                "utilization_percent_avg" => "u::float8".to_string(),
                "utilization_percent_min" => "(u / 2)::float8".to_string(),
                "utilization_percent_max" => "least(100, u * 1.5)::float8".to_string(),
                _ if c.not_null => "0".to_string(),
                _ => return None,
            };
            Some((c.name, e))
        })
        .unzip();
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM generate_series(1, $2::int) g,
             generate_series($1::timestamptz - interval '{span}', $1::timestamptz - interval '{step}', interval '{step}') b,
             LATERAL (SELECT ((g * 37 + extract({part} FROM b)::int * 11) % 90 + 5)::numeric AS u) v",
        SOURCES[0].tier_table(tier),
        names.join(", "),
        exprs.join(", ")
    )
}

async fn year(c: &Client, gpus: usize) {
    let end = Utc::now()
        .duration_trunc(TimeDelta::days(1))
        .expect("today");
    let t = Instant::now();
    let n = gpus as i32;
    use gpuwatch_aggregator::spec::Tier;
    for (tier, span) in [(Tier::Daily, "365 days"), (Tier::Hourly, "7 days")] {
        let q = fill_sql(tier, span);
        c.execute(&q, &[&end, &n])
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    for s in &gpuwatch_aggregator::spec::SOURCES[..1] {
        for tier in gpuwatch_aggregator::spec::Tier::ALL {
            let (delete, insert) = s.fleet_sql(tier);
            let (a, b) = (end - TimeDelta::days(400), end);
            c.execute(&delete, &[&a, &b]).await.expect("fleet delete");
            c.execute(&insert, &[&a, &b]).await.expect("fleet rollup");
        }
    }
    c.execute(
        "UPDATE gpuwatch_tier_state SET watermark = $1 WHERE source = 'gpu_metrics'",
        &[&end],
    )
    .await
    .expect("watermarks");
    c.batch_execute(
        "VACUUM ANALYZE gpu_metrics_1d, gpu_metrics_1h, gpu_metrics_fleet_1d, gpu_metrics_fleet_1h",
    )
    .await
    .expect("vacuum analyze");
    let (d, h) = (
        count(c, "gpu_metrics_1d").await,
        count(c, "gpu_metrics_1h").await,
    );
    println!(
        "filled:               {gpus} GPUs: gpu_metrics_1d {d}, gpu_metrics_1h {h} rows in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let to = Utc::now();
    let from = to - TimeDelta::days(365);
    for agg in ["avg", "min", "max"] {
        let q = format!("SELECT bucket, value FROM gpuwatch_series('gpu_metrics', NULL, 'utilization_percent', $1, $2, interval '1 day', '{agg}')");
        let (rows, took) = timed(c, &q, &[&from, &to], 7).await;
        assert!(rows.len() >= 364, "{agg}: {} buckets", rows.len());
        let fast = if took < Duration::from_millis(50) {
            "met"
        } else {
            "MISSED"
        };
        println!(
            "1-year fleet {agg:>3}:     {} (median of 7, {} buckets); goal < 50 ms {fast}",
            ms(took),
            rows.len()
        );
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--year") {
        let db = TestDb::new(backend()).await;
        migrate(&db.store_config())
            .await
            .expect("migrate the bench database");
        year(&db.client().await, arg("--gpus", 2_000)).await;
        return;
    }
    let (gpus, days, kind) = (arg("--gpus", 200), arg("--days", 30), backend());
    let db = TestDb::new(kind).await;
    let cfg = db.store_config();
    let report = migrate(&cfg).await.expect("migrate the bench database");
    let server = format!("PostgreSQL {}, {}", report.server_version, report.backend);
    println!("server:               {server}");
    let c = db.client().await;
    let raw_days = days.max(30) + 10;
    let keep = format!("UPDATE system_configs SET config_value = '{raw_days}' WHERE config_key = 'retention.raw_days'");
    c.batch_execute(&keep)
        .await
        .expect("set retention.raw_days");
    println!("retention.raw_days:   {raw_days} (so retention keeps all {days} days of raw)");
    let pool = connect(&cfg).await.expect("connect the pool");

    let (rows, took) = ingest(&pool, gpus, days).await;
    println!("data:                 {gpus} GPUs x {days} days, one sample a minute");
    let how = "2 connections, 10000 rows/chunk";
    println!("ingest (BatchWriter): {} ({how})", rate(rows, took));
    let ((runs, n, tier_rows, took), (idle_n, idle)) = materialize(&pool).await;
    println!("materialise:          {runs} run(s), {n} buckets, {tier_rows} tier rows");
    let what = "gpu_metrics' 1h and 1d tiers, each read from raw";
    println!("  raw rows processed: {} ({what})", rate(rows, took));
    println!("  idle run:           {} ({idle_n} buckets)", ms(idle));

    let t = Instant::now();
    let vacuum = "VACUUM ANALYZE gpu_metrics, gpu_metrics_1h, gpu_metrics_1d";
    c.batch_execute(vacuum).await.expect("vacuum analyze");
    println!("vacuum analyze:       {:.1} s", t.elapsed().as_secs_f64());
    let raw = count(&c, "gpu_metrics").await;
    let (h, d) = (
        count(&c, "gpu_metrics_1h").await,
        count(&c, "gpu_metrics_1d").await,
    );
    println!("rows:                 gpu_metrics {raw}, gpu_metrics_1h {h}, gpu_metrics_1d {d}");
    queries(&c).await;
    if std::env::args().any(|a| a == "--keep") {
        println!("kept:                 {} (drop it when done)", db.url);
        std::mem::forget(db);
    }
}
