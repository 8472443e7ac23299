//! A simulated fleet with history: the collector's `SimFleet` sampled at
//! past timestamps (coarse long ago, fine within raw retention), written
//! with the store's `BatchWriter`, registered as hosts/GPUs, tiers built by
//! the aggregator's `run_once` with catch-up, then raw retention applied.
//! Environments (one per host, on half its GPUs) report usage derived from
//! those GPUs; customers, alerts, webhook deliveries, billing records and
//! invoices are inserted so every dashboard panel has rows to show.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, DurationRound, TimeZone, Utc};
use gpuwatch_aggregator::{run_once, AggregatorConfig};
use gpuwatch_collector::sources::sim::SimFleet;
use gpuwatch_collector::SimConfig;
use gpuwatch_store::inventory::{heartbeat, upsert_gpu, upsert_host};
use gpuwatch_store::{
    migrate, BatchWriter, EnvSample, GpuSample, HostSample, Pool, StoreConfig, WriterConfig,
};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Simulated hosts.
    pub hosts: u32,
    /// GPUs per host.
    pub gpus_per_host: u32,
    /// Days of history in all.
    pub days: i64,
    /// Raw retention (days); the last `raw_days` are sampled every `fine_secs`.
    pub raw_days: i64,
    /// Sampling interval within raw retention (divides 1800).
    pub fine_secs: i64,
    /// Sampling interval before it (divides 1800).
    pub coarse_secs: i64,
}

/// What was generated: the row counts, and the ids panels select.
#[derive(Debug, Default)]
pub struct Generated {
    /// Raw rows written (all three tables, before retention).
    pub raw_rows: u64,
    /// Aggregator runs until caught up.
    pub aggregator_runs: usize,
    /// Host that went silent (offline).
    pub silent_host: String,
}

const WRITE_ROWS: usize = 60_000;
const ENV_GPUS: u32 = 2;

/// Buffers rows and writes them in large batches.
struct Sink {
    writer: BatchWriter,
    gpus: Vec<GpuSample>,
    hosts: Vec<HostSample>,
    envs: Vec<EnvSample>,
    rows: u64,
}

impl Sink {
    async fn flush(&mut self, force: bool) {
        if !force && self.gpus.len() + self.hosts.len() + self.envs.len() < WRITE_ROWS {
            return;
        }
        let w = &self.writer;
        self.rows += w
            .write(&self.gpus)
            .await
            .expect("write gpu_metrics")
            .inserted;
        self.rows += w
            .write(&self.hosts)
            .await
            .expect("write host_metrics")
            .inserted;
        self.rows += w
            .write(&self.envs)
            .await
            .expect("write environment_metrics")
            .inserted;
        self.gpus.clear();
        self.hosts.clear();
        self.envs.clear();
    }
}

async fn set_raw_days(pool: &Pool, days: i64) {
    let c = pool.get().await.expect("connection");
    c.execute(
        "UPDATE system_configs SET config_value = $1 WHERE config_key = 'retention.raw_days'",
        &[&days.to_string()],
    )
    .await
    .expect("set retention.raw_days");
}

/// Migrates the database of `cfg`, fills it per `spec` as of `now`, and
/// returns the pool and what was made.
pub async fn generate(cfg: &StoreConfig, spec: &Spec, now: DateTime<Utc>) -> (Pool, Generated) {
    migrate(cfg).await.expect("migrate");
    let pool = gpuwatch_store::connect(cfg).await.expect("pool");
    // Keep every raw row until the tiers are built; retention comes last.
    set_raw_days(&pool, spec.days + 2).await;

    let last = now
        .duration_trunc(Duration::seconds(spec.fine_secs))
        .expect("representable");
    // Whole UTC days of coarse, then of fine sampling: a tier bucket holds
    // evenly spaced samples, as a collector with a fixed interval writes.
    let day = Duration::days(1);
    let start = (now - Duration::days(spec.days))
        .duration_trunc(day)
        .expect("representable");
    let fine_from = (now - Duration::days(spec.raw_days))
        .duration_trunc(day)
        .expect("representable");
    // The last host stops reporting two hours before now.
    let silent_at = now - Duration::hours(2);
    let sim = SimFleet::new(
        SimConfig {
            hosts: spec.hosts,
            gpus_per_host: spec.gpus_per_host,
            seed: 8,
            hot_gpu: true,
            silent_host_after_secs: (silent_at - start).num_seconds() as u64,
            environments: false,
        },
        start,
    );
    let gen = Generated {
        silent_host: SimFleet::host_id(spec.hosts - 1),
        ..Default::default()
    };

    // Inventory.
    for h in sim.hosts() {
        upsert_host(&pool, &h, start).await.expect("register host");
    }
    let mut ids: HashMap<String, i64> = HashMap::new();
    let mut models: HashMap<String, String> = HashMap::new();
    for g in sim.gpus() {
        ids.insert(
            g.uuid.clone(),
            upsert_gpu(&pool, &g).await.expect("register GPU"),
        );
        models.insert(g.host_id.clone(), g.name.clone());
    }
    let envs = environments(&pool, spec, &models, start).await;

    let mut sink = Sink {
        writer: BatchWriter::new(
            pool.clone(),
            WriterConfig {
                connections: 2,
                chunk_rows: 20_000,
            },
        ),
        gpus: Vec::new(),
        hosts: Vec::new(),
        envs: Vec::new(),
        rows: 0,
    };
    let mut t = start;
    let mut last_seen: HashMap<String, DateTime<Utc>> = HashMap::new();
    while t <= last {
        let (gpus, hosts) = sim.sample(t);
        let mut now_gpus: Vec<GpuSample> = Vec::with_capacity(gpus.len());
        for (i, r) in gpus.into_iter().enumerate() {
            let mut s = r.sample;
            s.gpu_id = ids[&r.uuid];
            // An XID on every host's first GPU every 30 minutes, so the
            // XID table has rows in any range (the sim's own are rare).
            if i % spec.gpus_per_host as usize == 0 && t.timestamp() % 1800 == 0 {
                s.xid_last = Some(79);
            }
            now_gpus.push(s);
        }
        for (e, host) in &envs {
            if let Some(h) = hosts.iter().find(|h| &h.host_id == host) {
                let mine: Vec<&GpuSample> = now_gpus
                    .iter()
                    .filter(|g| &g.host_id == host)
                    .take(ENV_GPUS as usize)
                    .collect();
                sink.envs.push(env_sample(e, h, &mine, t));
            }
        }
        sink.gpus.extend(now_gpus);
        for h in &hosts {
            last_seen.insert(h.host_id.clone(), t);
        }
        sink.hosts.extend(hosts);
        sink.flush(false).await;
        t += Duration::seconds(if t < fine_from {
            spec.coarse_secs
        } else {
            spec.fine_secs
        });
    }
    sink.flush(true).await;
    for (h, at) in &last_seen {
        heartbeat(&pool, std::slice::from_ref(h), *at)
            .await
            .expect("heartbeat");
    }

    let cfg = AggregatorConfig {
        max_hourly_buckets_per_run: 24 * 40,
        max_daily_buckets_per_run: 40,
        offline_after_secs: 600,
        ..AggregatorConfig::default()
    };
    let mut runs = 0;
    loop {
        runs += 1;
        let r = run_once(&pool, &cfg, now)
            .await
            .expect("aggregator run")
            .expect("sole replica");
        if r.caught_up() {
            break;
        }
        assert!(runs < 100, "the aggregator does not catch up");
    }
    set_raw_days(&pool, spec.raw_days).await;
    run_once(&pool, &cfg, now)
        .await
        .expect("aggregator run")
        .expect("sole replica");
    fixtures(&pool, &envs, now).await;
    (
        pool,
        Generated {
            raw_rows: sink.rows,
            aggregator_runs: runs,
            ..gen
        },
    )
}

/// Three customers, one environment per host (GPUs 0..ENV_GPUS of it).
async fn environments(
    pool: &Pool,
    spec: &Spec,
    models: &HashMap<String, String>,
    start: DateTime<Utc>,
) -> Vec<(String, String)> {
    let c = pool.get().await.expect("connection");
    for (name, kind) in [
        ("acme-ai", "enterprise"),
        ("lab-kyoto", "enterprise"),
        ("jdoe", "individual"),
    ] {
        c.execute(
            "INSERT INTO customers (username, email, password_hash, account_type, company)
             VALUES ($1::text, $1::text || '@example.com', 'x', $2, $1::text)",
            &[&name, &kind],
        )
        .await
        .expect("insert customer");
    }
    let mut out = Vec::new();
    for h in 0..spec.hosts {
        let host = SimFleet::host_id(h);
        let env = format!("env-{h:03}");
        let customer = ["acme-ai", "lab-kyoto", "jdoe"][h as usize % 3];
        c.execute(
            "INSERT INTO environments (id, customer_id, host_id, name, image, status, cpu, memory, gpu, gpu_model, started_at)
             SELECT $1::text, id, $2, 'training ' || $1::text, 'ubuntu22-pytorch:2.3', 'running', 16, 137438953472, $3, $4, $5
             FROM customers WHERE username = $6",
            &[&env, &host, &(ENV_GPUS.min(spec.gpus_per_host) as i32), &models[&host], &start, &customer],
        )
        .await
        .expect("insert environment");
        out.push((env, host));
    }
    out
}

/// An environment's sample: its GPUs' mean utilisation, a share of the host's CPU.
fn env_sample(env: &str, h: &HostSample, gpus: &[&GpuSample], t: DateTime<Utc>) -> EnvSample {
    let n = gpus.len().max(1) as f64;
    let util = gpus
        .iter()
        .filter_map(|g| g.utilization_percent)
        .sum::<f64>()
        / n;
    let since = (t.timestamp() - 1_767_225_600).max(0);
    EnvSample {
        env_id: env.to_string(),
        host_id: h.host_id.clone(),
        collected_at: t,
        cpu_usage_percent: h.cpu_usage_percent.map(|c| (c * 0.8).min(100.0)),
        memory_used: Some(64 << 30),
        memory_usage_percent: Some(46.5 + util / 10.0),
        gpu_usage_percent: Some((util * 100.0).round() / 100.0),
        gpu_memory_used: Some(gpus.iter().filter_map(|g| g.memory_used).sum()),
        network_rx_bytes: Some(since * 20_000_000),
        network_tx_bytes: Some(since * 5_000_000),
    }
}

/// Alert rules and records, webhooks and their delivery log, billing
/// records and invoices, all relative to `now`.
async fn fixtures(pool: &Pool, envs: &[(String, String)], now: DateTime<Utc>) {
    let c = pool.get().await.expect("connection");
    let sql = include_str!("fixtures.sql");
    c.execute(
        "SELECT set_config('gpuwatch.now', $1, false)",
        &[&now.to_rfc3339()],
    )
    .await
    .expect("set now");
    c.batch_execute(sql).await.expect("fixtures.sql");
    let hour = now
        .duration_trunc(Duration::hours(1))
        .expect("representable");
    let month = Utc
        .with_ymd_and_hms(hour.year(), hour.month(), 1, 0, 0, 0)
        .unwrap();
    // Hourly records for the last 3 days, daily ones for 60 days before.
    let mut rows = Vec::new();
    for (e, _) in envs {
        let mut end = hour;
        while end > hour - Duration::days(63) {
            let w = if end > hour - Duration::days(3) {
                Duration::hours(1)
            } else {
                Duration::days(1)
            };
            rows.push((e.clone(), end - w, end));
            end -= w;
        }
    }
    let insert = c
        .prepare(
            // amount is generated (quantity x usage_seconds x unit_price / 3600, migration 0019).
            "INSERT INTO billing_records (customer_id, env_id, resource_type, gpu_model, quantity, usage_seconds,
                                          unit_price, currency, start_time, end_time)
             SELECT e.customer_id, e.id, r.resource, CASE WHEN r.resource = 'gpu' THEN e.gpu_model END, r.qty,
                    extract(epoch FROM $3::timestamptz - $2::timestamptz), r.price,
                    CASE WHEN cu.username = 'lab-kyoto' THEN 'JPY' ELSE 'CNY' END, $2, $3
             FROM environments e JOIN customers cu ON cu.id = e.customer_id
             CROSS JOIN LATERAL (VALUES ('gpu', e.gpu::numeric, 12.5::numeric), ('cpu', e.cpu::numeric, 0.05),
                                ('memory', (e.memory / 1073741824)::numeric, 0.01)) AS r(resource, qty, price)
             WHERE e.id = $1",
        )
        .await
        .expect("prepare billing insert");
    for (e, a, b) in &rows {
        c.execute(&insert, &[e, a, b])
            .await
            .expect("insert billing record");
    }
    // One issued invoice per customer and currency for each of the last two whole months.
    for back in 1..=2 {
        let ps = month_back(month, back);
        let pe = month_back(month, back - 1);
        c.execute(
            // The subtotal must equal the sum of the lines (migration 0019): one line.
            "INSERT INTO invoices (invoice_number, customer_id, period_start, period_end, currency, lines, subtotal, tax, total, status, issued_at, due_at)
             SELECT 'INV-' || to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYYMM') || '-' || b.customer_id || '-' || b.currency,
                    b.customer_id, $1, $2, b.currency,
                    jsonb_build_array(jsonb_build_object('charge_class', 'usage', 'amount', round(sum(b.amount), 2)::text)),
                    round(sum(b.amount), 2), 0, round(sum(b.amount), 2),
                    'issued', $2::timestamptz + interval '3 days', $2::timestamptz + interval '33 days'
             FROM billing_records b WHERE b.start_time >= $1 AND b.start_time < $2
             GROUP BY b.customer_id, b.currency",
            &[&ps, &pe],
        )
        .await
        .expect("insert invoices");
    }
}

fn month_back(m: DateTime<Utc>, n: u32) -> DateTime<Utc> {
    let total = m.year() * 12 + m.month0() as i32 - n as i32;
    Utc.with_ymd_and_hms(total / 12, (total % 12) as u32 + 1, 1, 0, 0, 0)
        .unwrap()
}
