//! Alerter benchmark: latency from a sample's commit to the webhook's arrival
//! at a real HTTP receiver (p50/p99), with 1,000 rules over 1,000 GPUs at a
//! 1 s evaluation interval, and the evaluation time per cycle.
//!
//! Fleet: 125 hosts × 8 GPUs. Rules: 1,000 temperature rules, 8 per host
//! (thresholds 86..=93 °C, `last` over 10 s, `for` 0, group_wait 0), so one
//! cycle evaluates 8,000 (rule, series) pairs. A writer commits a sample for
//! every GPU each second (all cool); each trial commits one hot sample
//! (95 °C) for a random GPU and times every firing notification about that
//! GPU (8 rules → 8 notifications) from just before the commit to arrival.
//!
//! `cargo bench --bench alerts [-- --trials N --backend timescaledb|postgres]`
//! (default 40 trials, about a minute).

#[allow(dead_code)] // the shared helpers hold more than this bench needs
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use gpuwatch_alerter::{evaluate_once, run, AlerterConfig};
use gpuwatch_store::testing::{Kind, TestDb};
use gpuwatch_store::{connect, migrate, BatchWriter, GpuSample, WriterConfig};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const HOSTS: usize = 125;
const GPUS_PER_HOST: usize = 8;
const RULES_PER_HOST: usize = 8;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn backend() -> Kind {
    let args: Vec<String> = std::env::args().collect();
    match args
        .iter()
        .position(|a| a == "--backend")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
    {
        Some("postgres") => Kind::Postgres,
        _ => Kind::TimescaleDb,
    }
}

type Arrivals = Arc<Mutex<Vec<(Instant, Value)>>>;

async fn hook(State(a): State<Arrivals>, body: axum::body::Bytes) -> &'static str {
    let t = Instant::now();
    if let Ok(v) = serde_json::from_slice(&body) {
        a.lock().unwrap().push((t, v));
    }
    "ok"
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let trials = arg("--trials", 40);
    let kind = backend();
    let db = TestDb::new(kind).await;
    let cfg = db.store_config();
    migrate(&cfg).await.expect("migrate");
    let pool = connect(&cfg).await.expect("connect");
    let c = pool.get().await.unwrap();

    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    c.batch_execute("UPDATE alert_rules SET enabled = false")
        .await
        .unwrap();
    let hook_id: i64 = c
        .query_one("INSERT INTO webhooks (name, url, secret) VALUES ('bench', $1, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') RETURNING id", &[&url])
        .await
        .unwrap()
        .get(0);
    for h in 0..HOSTS {
        c.execute(
            "INSERT INTO hosts (id, name, ip_address, os_type, total_cpu, total_memory, last_heartbeat) VALUES ($1, $1, '10.0.0.1', 'linux', 64, 1, now())",
            &[&format!("h{h}")],
        )
        .await
        .unwrap();
        for g in 0..GPUS_PER_HOST {
            let id = (h * GPUS_PER_HOST + g + 1) as i64;
            c.execute(
                "INSERT INTO gpus (id, host_id, gpu_index, uuid, name) VALUES ($1, $2, $3, $4, 'NVIDIA H100')",
                &[&id, &format!("h{h}"), &(g as i32), &format!("GPU-{id}")],
            )
            .await
            .unwrap();
        }
        for r in 0..RULES_PER_HOST {
            c.execute(
                "INSERT INTO alert_rules (name, metric, reduction, window_seconds, comparison, threshold, for_seconds,
                     severity, annotations, channels, group_by, scope)
                 VALUES ($1, 'gpu.temperature', 'last', 10, '>=', $2, 0, 'critical',
                     '{\"summary\": \"GPU {{ $labels.gpu }} on {{ $labels.host }} at {{ $value }}\"}', $3,
                     '[\"alertname\", \"gpu_id\"]', $4)",
                &[&format!("hot-h{h}-{r}"), &(86.0 + r as f64), &json!([{"type": "webhook", "webhook_id": hook_id}]),
                  &json!([{"name": "host", "value": format!("h{h}")}])],
            )
            .await
            .unwrap();
        }
    }
    let gpus = HOSTS * GPUS_PER_HOST;
    let writer = Arc::new(BatchWriter::new(
        pool.clone(),
        WriterConfig {
            connections: 2,
            chunk_rows: 5000,
        },
    ));
    let hot: Arc<Mutex<Option<i64>>> = Arc::default();
    let cool = |ids: &mut dyn Iterator<Item = i64>| -> Vec<GpuSample> {
        let now = Utc::now();
        ids.map(|id| GpuSample {
            gpu_id: id,
            host_id: format!("h{}", (id as usize - 1) / GPUS_PER_HOST),
            collected_at: now,
            temperature: Some(55.0 + (common::mix(id as u64) % 20) as f64),
            ..Default::default()
        })
        .collect()
    };
    writer.write(&cool(&mut (1..=gpus as i64))).await.unwrap();

    // Evaluation time per cycle, alone (nothing firing: the steady state).
    let acfg = AlerterConfig {
        interval_secs: 1.0,
        group_wait_secs: 0.0,
        group_interval_secs: 0.0,
        workers: 8,
        poll_interval_secs: 0.5,
        ..AlerterConfig::default()
    };
    let mut cycles = Vec::new();
    for _ in 0..20 {
        writer.write(&cool(&mut (1..=gpus as i64))).await.unwrap();
        let t = Instant::now();
        let r = evaluate_once(&pool, &acfg).await.unwrap();
        cycles.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(r.series, gpus * RULES_PER_HOST);
    }

    // The background writer: every GPU each second, the hot one excepted.
    let stop = CancellationToken::new();
    {
        let (w, hot, stop) = (writer.clone(), hot.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let skip = *hot.lock().unwrap();
                let rows = cool(&mut (1..=gpus as i64).filter(|id| Some(*id) != skip));
                w.write(&rows).await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    let task = tokio::spawn(run(acfg.clone(), pool.clone(), false, stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut latencies = Vec::new();
    let mut worst_per_trial = Vec::new();
    for t in 0..trials {
        let id = (common::mix(t as u64 + 7) % gpus as u64) as i64 + 1;
        *hot.lock().unwrap() = Some(id);
        arrivals.lock().unwrap().clear();
        let t0 = Instant::now();
        let now = Utc::now();
        writer
            .write(&[GpuSample {
                gpu_id: id,
                host_id: format!("h{}", (id as usize - 1) / GPUS_PER_HOST),
                collected_at: now,
                temperature: Some(95.0),
                ..Default::default()
            }])
            .await
            .unwrap();
        // Wait for all 8 rules' firing notifications about this GPU.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got: HashMap<String, f64> = HashMap::new();
        // gpu_id is internal and never sent; the UUID names the GPU.
        let id_label = format!("GPU-{id}");
        while got.len() < RULES_PER_HOST && Instant::now() < deadline {
            for (at, b) in arrivals.lock().unwrap().iter() {
                for a in b["alerts"].as_array().into_iter().flatten() {
                    if a["status"] == "firing" && a["labels"]["gpu_uuid"] == id_label.as_str() {
                        let name = a["labels"]["alertname"].as_str().unwrap_or("").to_string();
                        got.entry(name)
                            .or_insert_with(|| at.duration_since(t0).as_secs_f64() * 1000.0);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            got.len(),
            RULES_PER_HOST,
            "trial {t}: only {} of {RULES_PER_HOST} notifications arrived",
            got.len()
        );
        worst_per_trial.push(got.values().cloned().fold(0.0, f64::max));
        latencies.extend(got.into_values());
        // Cool it down again and let the resolved notices pass before the next trial.
        *hot.lock().unwrap() = None;
        writer.write(&cool(&mut std::iter::once(id))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    stop.cancel();
    task.await.unwrap().unwrap();

    println!("alerter benchmark on {kind:?}: {HOSTS} hosts × {GPUS_PER_HOST} GPUs = {gpus} GPUs, {} rules, {} (rule, series) pairs per cycle, interval 1 s",
        HOSTS * RULES_PER_HOST, gpus * RULES_PER_HOST);
    println!(
        "evaluation time per cycle (20 cycles): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(&mut cycles.clone(), 0.5),
        pct(&mut cycles.clone(), 0.99),
        pct(&mut cycles, 1.0)
    );
    println!("commit → webhook arrival ({} notifications, {trials} trials): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(), pct(&mut latencies.clone(), 0.5), pct(&mut latencies.clone(), 0.99), pct(&mut latencies, 1.0));
    println!("per trial, the last of its 8 notifications: p50 {:.0} ms, p99 {:.0} ms (goal: p99 < 2000 ms)",
        pct(&mut worst_per_trial.clone(), 0.5), pct(&mut worst_per_trial, 0.99));
}
