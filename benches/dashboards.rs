//! Dashboard benchmark: every SQL panel query of `dashboards/`, expanded as
//! Grafana expands it for the last 30 days, against a simulated fleet with
//! 30+ days of history (raw rows for the raw retention, tiers for all of
//! it). Prints each query's median time against the 100 ms goal; never
//! asserts a timing.
//!
//! `cargo bench --bench dashboards`; environment:
//! `GPUWATCH_BENCH_GPUS` (200), `GPUWATCH_BENCH_DAYS` (31),
//! `GPUWATCH_BENCH_STEP_SECS` (60: the raw sampling interval of the last 7
//! days; a collector's default is 10, which takes ~6x longer to generate),
//! `GPUWATCH_BENCH_BACKEND` (timescaledb on `TIMESCALE_URL`, or postgres on
//! `DATABASE_URL`).

#[path = "../tests/suite/dashboards_support/mod.rs"]
mod dashboards_support;

use std::time::{Duration, Instant};

use chrono::Utc;
use dashboards_support::grafana::{self, Range};
use dashboards_support::history::{generate, Spec};
use gpuwatch_store::testing::{Kind, TestDb};

const RUNS: usize = 5;
const GOAL_MS: f64 = 100.0;

fn env(name: &str, default: i64) -> i64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("{name} must be a positive number, got {v:?}")),
    }
}

fn backend() -> Kind {
    match std::env::var("GPUWATCH_BENCH_BACKEND").as_deref() {
        Err(_) | Ok("timescaledb") => Kind::TimescaleDb,
        Ok("postgres") => Kind::Postgres,
        Ok(other) => panic!("GPUWATCH_BENCH_BACKEND must be timescaledb or postgres, got {other}"),
    }
}

#[tokio::main]
async fn main() {
    let gpus = env("GPUWATCH_BENCH_GPUS", 200);
    let days = env("GPUWATCH_BENCH_DAYS", 31);
    let step = env("GPUWATCH_BENCH_STEP_SECS", 60);
    assert!(
        1800 % step == 0,
        "GPUWATCH_BENCH_STEP_SECS must divide 1800"
    );
    let per_host = 8.min(gpus);
    let spec = Spec {
        hosts: (gpus / per_host) as u32,
        gpus_per_host: per_host as u32,
        days,
        raw_days: 7,
        fine_secs: step,
        coarse_secs: 600.max(step),
    };
    let db = TestDb::new(backend()).await;
    let now = Utc::now();
    let t = Instant::now();
    let (_pool, made) = generate(&db.store_config(), &spec, now).await;
    println!(
        "data:        {} hosts x {} GPUs, {days} days ({}s samples for the last 7 days, {}s before); \
         {} raw rows, {} aggregator runs; {:.0} s",
        spec.hosts,
        spec.gpus_per_host,
        spec.fine_secs,
        spec.coarse_secs,
        made.raw_rows,
        made.aggregator_runs,
        t.elapsed().as_secs_f64()
    );
    let c = db.client().await;
    c.batch_execute("VACUUM ANALYZE")
        .await
        .expect("vacuum analyze");
    for table in [
        "gpu_metrics",
        "gpu_metrics_1h",
        "gpu_metrics_1d",
        "host_metrics",
    ] {
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count")
            .get(0);
        println!("rows:        {table} {n}");
    }

    let ds = grafana::datasources();
    let span = chrono::Duration::days(30);
    let (mut times, mut missed) = (Vec::new(), 0);
    println!("range:       last 30 days; median of {RUNS} runs after one warm-up");
    for d in grafana::load_all() {
        let panels: Vec<_> = grafana::panels(&d.json)
            .into_iter()
            .filter(|p| p["datasource"]["type"] == "grafana-postgresql-datasource")
            .collect();
        if panels.is_empty() {
            continue;
        }
        let vars = grafana::resolve_vars(&c, &d.json, &Range::last(span, now, 1000, 1))
            .await
            .expect("variables resolve");
        for p in panels {
            let range = Range::last(span, now, 1000, grafana::min_interval_ms(p, &ds));
            for t in p["targets"].as_array().into_iter().flatten() {
                let Some(raw) = t["rawSql"].as_str() else {
                    continue;
                };
                let sql = grafana::expand(raw, &range, &vars).expect("expands");
                let mut runs = Vec::new();
                let mut rows = 0;
                for i in 0..=RUNS {
                    let t = Instant::now();
                    rows = c.query(&sql, &[]).await.expect("panel query").len();
                    if i > 0 {
                        runs.push(t.elapsed());
                    }
                }
                runs.sort();
                let median: Duration = runs[RUNS / 2];
                let ms = median.as_secs_f64() * 1e3;
                missed += (ms >= GOAL_MS) as usize;
                times.push(ms);
                let title = p["title"].as_str().unwrap_or("?");
                let mark = if ms < GOAL_MS { "" } else { "  MISSED" };
                println!(
                    "{ms:8.1} ms  {:>5} rows  {} · {title}{mark}",
                    rows,
                    d.file.trim_end_matches(".json")
                );
            }
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "summary:     {} queries, median {:.1} ms, max {:.1} ms; goal < {GOAL_MS} ms: {}",
        times.len(),
        times[times.len() / 2],
        times.last().copied().unwrap_or(0.0),
        if missed == 0 {
            "met by all".to_string()
        } else {
            format!("MISSED by {missed}")
        }
    );
}
