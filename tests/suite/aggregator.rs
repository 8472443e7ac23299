//! The aggregator against real servers: tiers equal the same aggregation
//! over raw rows whatever order, lateness and duplication the samples
//! arrive with; bounded catch-up; retention with an injected clock; the
//! tier-aware series function; host liveness.

use chrono::{DateTime, Duration, DurationRound, Utc};
use gpuwatch_aggregator::spec::{Tier, SOURCES};
use gpuwatch_aggregator::{run_once, AggregatorConfig};
use gpuwatch_store::testing::TestDb;
use gpuwatch_store::{
    both_backends, migrate, BatchWriter, EnvSample, GpuSample, HostSample, Pool, WriterConfig,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};

pub(crate) async fn setup(db: &TestDb) -> (Pool, BatchWriter) {
    let cfg = db.store_config();
    migrate(&cfg).await.expect("migrate");
    let pool = gpuwatch_store::connect(&cfg).await.expect("pool");
    let w = BatchWriter::new(
        pool.clone(),
        WriterConfig {
            connections: 2,
            chunk_rows: 500,
        },
    );
    (pool, w)
}

pub(crate) fn day_start(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::days(1)).unwrap()
}

/// One generated sample: series, minutes after the base, and a value seed.
pub(crate) type Spec = (u8, u32, u16);

pub(crate) fn gpu(s: &Spec, base: DateTime<Utc>) -> GpuSample {
    let (series, minute, v) = *s;
    let v = v as f64;
    GpuSample {
        gpu_id: series as i64 + 1,
        host_id: format!("h{}", series / 2),
        collected_at: base + Duration::minutes(minute as i64),
        utilization_percent: (v as u16 % 11 != 0).then_some((v * 0.37) % 100.0),
        memory_used: Some(v as i64 * 1_048_576),
        temperature: Some(30.0 + (v % 60.0) / 3.0),
        power_draw: Some(100.0 + v / 7.0),
        sm_clock: Some(1_000 + v as i32 % 900),
        energy_consumed_mj: Some(minute as i64 * 60_000 + v as i64),
        throttle_reasons: Some(1 << (v as u16 % 6)),
        xid_last: (v as u16 % 13 == 0).then_some(79),
        encoder_util_percent: (v as u16 % 7 != 0).then_some((v * 0.11) % 100.0),
        decoder_util_percent: Some((v * 0.23) % 100.0),
        ..Default::default()
    }
}

pub(crate) fn host(s: &Spec, base: DateTime<Utc>) -> HostSample {
    let (series, minute, v) = *s;
    HostSample {
        host_id: format!("h{series}"),
        collected_at: base + Duration::minutes(minute as i64),
        cpu_usage_percent: Some(v as f64 / 655.35),
        cpu_load_1m: Some(v as f64 / 1000.0),
        memory_used: Some(v as i64 * 4096),
        network_rx_bytes: Some(minute as i64 * 1_000_000 + v as i64),
        ..Default::default()
    }
}

pub(crate) fn env(s: &Spec, base: DateTime<Utc>) -> EnvSample {
    let (series, minute, v) = *s;
    EnvSample {
        env_id: format!("env-{series}"),
        host_id: format!("h{}", series % 2),
        collected_at: base + Duration::minutes(minute as i64),
        cpu_usage_percent: Some(v as f64 / 700.0),
        gpu_usage_percent: (v % 5 != 0).then_some(v as f64 / 655.35),
        network_tx_bytes: Some(minute as i64 * 10 + v as i64),
        ..Default::default()
    }
}

/// Rows of `sql` as JSON objects, in order.
pub(crate) async fn json_rows(
    c: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<serde_json::Value> {
    c.query(sql, params)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The first difference between two row sets, if any.
fn rows_differ(
    what: &str,
    stored: &[serde_json::Value],
    fresh: &[serde_json::Value],
) -> Option<String> {
    if stored.len() != fresh.len() {
        return Some(format!(
            "{what}: {} stored buckets, {} from raw",
            stored.len(),
            fresh.len()
        ));
    }
    for (a, b) in stored.iter().zip(fresh) {
        let diff: Vec<String> = a
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, v)| {
                format!(
                    "{k}: stored {v}, raw {}",
                    b.get(k.as_str()).unwrap_or(&serde_json::Value::Null)
                )
            })
            .collect();
        if !diff.is_empty() {
            return Some(format!(
                "{what} bucket {}: differs from the raw aggregation: {diff:?}",
                a["bucket"]
            ));
        }
    }
    None
}

/// The first tier or fleet row that differs from the aggregation of raw
/// rows computed afresh, if any.
pub(crate) async fn tiers_differ_from_raw(db: &TestDb) -> Option<String> {
    let c = db.client().await;
    let (epoch, far) = (
        DateTime::<Utc>::UNIX_EPOCH,
        DateTime::<Utc>::UNIX_EPOCH + Duration::days(365 * 200),
    );
    for s in &SOURCES {
        for t in Tier::ALL {
            let (table, fleet) = (s.tier_table(t), s.fleet_table(t));
            let stored = json_rows(
                &c,
                &format!("SELECT to_jsonb(x) - 'materialized_at' FROM {table} x ORDER BY 1"),
                &[],
            )
            .await;
            let fresh = json_rows(
                &c,
                &format!("SELECT to_jsonb(x) FROM ({}) x ORDER BY 1", s.select_sql(t)),
                &[&epoch, &far],
            )
            .await;
            if let Some(d) = rows_differ(&table, &stored, &fresh) {
                return Some(d);
            }
            let stored = json_rows(
                &c,
                &format!("SELECT to_jsonb(x) FROM {fleet} x ORDER BY 1"),
                &[],
            )
            .await;
            let fresh = json_rows(
                &c,
                &format!(
                    "SELECT to_jsonb(x) FROM ({}) x ORDER BY 1",
                    s.fleet_raw_sql(t)
                ),
                &[&epoch, &far],
            )
            .await;
            if let Some(d) = rows_differ(&fleet, &stored, &fresh) {
                return Some(d);
            }
        }
    }
    None
}

/// Every tier and fleet row equals the aggregation of raw rows computed afresh.
pub(crate) async fn assert_tiers_match_raw(db: &TestDb) {
    if let Some(d) = tiers_differ_from_raw(db).await {
        panic!("{d}");
    }
}

both_backends! {
    async fn tiers_equal_raw_aggregation_under_late_reordered_and_resent_batches(db) {
        let (pool, w) = setup(&db).await;
        let base = day_start(Utc::now()) - Duration::days(3);
        let cfg = AggregatorConfig { max_hourly_buckets_per_run: 7, max_daily_buckets_per_run: 1, lateness_secs: 0, ..Default::default() };
        // Batches of samples over 3 days, a run of the aggregator (clock
        // advancing) after some of them, and some batches sent again.
        let batch = prop::collection::vec((0u8..4, 0u32..(3 * 24 * 60), any::<u16>()), 1..60);
        let case = prop::collection::vec((batch, any::<bool>(), 0u32..(3 * 24 * 60), any::<bool>()), 1..14);
        let mut runner = TestRunner::new(PropConfig { cases: 6, ..PropConfig::default() });
        let handle = tokio::runtime::Handle::current();
        runner
            .run(&case, |steps| {
                tokio::task::block_in_place(|| handle.block_on(async {
                    let c = db.client().await;
                    c.batch_execute(
                        "TRUNCATE gpu_metrics, host_metrics, environment_metrics, gpu_metrics_1h, gpu_metrics_1d,
                                  host_metrics_1h, host_metrics_1d, environment_metrics_1h, environment_metrics_1d,
                                  gpu_metrics_fleet_1h, gpu_metrics_fleet_1d, host_metrics_fleet_1h, host_metrics_fleet_1d,
                                  environment_metrics_fleet_1h, environment_metrics_fleet_1d, gpuwatch_tier_invalidations;
                         UPDATE gpuwatch_tier_state SET watermark = NULL;",
                    ).await.unwrap();
                    let mut sent: Vec<Vec<Spec>> = Vec::new();
                    for (specs, run_after, clock_min, resend) in &steps {
                        let specs = if *resend && !sent.is_empty() { sent[sent.len() / 2].clone() } else { specs.clone() };
                        w.write(&specs.iter().map(|s| gpu(s, base)).collect::<Vec<_>>()).await.unwrap();
                        w.write(&specs.iter().map(|s| host(s, base)).collect::<Vec<_>>()).await.unwrap();
                        w.write(&specs.iter().map(|s| env(s, base)).collect::<Vec<_>>()).await.unwrap();
                        sent.push(specs);
                        if *run_after {
                            run_once(&pool, &cfg, base + Duration::minutes(*clock_min as i64)).await.unwrap();
                        }
                    }
                    let end = base + Duration::days(4);
                    for _ in 0..200 {
                        if run_once(&pool, &cfg, end).await.unwrap().expect("sole replica").caught_up() {
                            break;
                        }
                    }
                    assert_tiers_match_raw(&db).await;
                }));
                Ok(())
            })
            .unwrap();
    }
}

both_backends! {
    async fn the_tier_tables_have_exactly_the_columns_of_the_spec(db) {
        setup(&db).await;
        let c = db.client().await;
        for s in &SOURCES {
            for t in Tier::ALL {
                let table = s.tier_table(t);
                let mut cols: Vec<String> = c
                    .query("SELECT column_name::text FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position", &[&table])
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                assert_eq!(cols.pop().as_deref(), Some("materialized_at"));
                let spec: Vec<String> = s.columns(t).into_iter().map(|(n, _)| n).collect();
                assert_eq!(cols, spec, "{table}");
                let fleet = s.fleet_table(t);
                let cols: Vec<String> = c
                    .query("SELECT column_name::text FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position", &[&fleet])
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let spec: Vec<String> = s.fleet_columns(t, true).into_iter().map(|(n, _)| n).collect();
                assert_eq!(cols, spec, "{fleet}");
            }
        }
    }
}

both_backends! {
    async fn tier_and_fleet_tables_match_the_catalogue_in_names_types_and_nullability(db) {
        setup(&db).await;
        let c = db.client().await;
        let columns = |table: String| {
            let c = &c;
            async move {
                c.query(
                    "SELECT column_name::text, data_type::text, is_nullable = 'NO' FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                    &[&table],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, bool>(2)))
                .collect::<Vec<_>>()
            }
        };
        let spec = |cols: Vec<gpuwatch_aggregator::spec::TierColumn>| {
            cols.into_iter().map(|c| (c.name, c.data_type.to_string(), c.not_null)).collect::<Vec<_>>()
        };
        for s in &SOURCES {
            for t in Tier::ALL {
                let mut want = spec(s.typed_columns(t));
                want.push(("materialized_at".into(), "timestamp with time zone".into(), true));
                assert_eq!(columns(s.tier_table(t)).await, want, "{}", s.tier_table(t));
                let want = spec(s.typed_fleet_columns(t, true));
                assert_eq!(columns(s.fleet_table(t)).await, want, "{}", s.fleet_table(t));
            }
        }
        // The DDL regenerated from the catalogue, in a scratch schema, has
        // the columns the migrations made.
        c.batch_execute("CREATE SCHEMA regenerated").await.unwrap();
        for s in &SOURCES {
            for t in Tier::ALL {
                for (table, ddl) in [(s.tier_table(t), s.create_sql(t)), (s.fleet_table(t), s.create_fleet_sql(t))] {
                    c.batch_execute(&format!("SET search_path TO regenerated; {ddl}; RESET search_path")).await.unwrap();
                    let regenerated = c
                        .query(
                            "SELECT column_name::text, data_type::text, is_nullable FROM information_schema.columns
                              WHERE table_schema = $2 AND table_name = $1 ORDER BY ordinal_position",
                            &[&table, &"regenerated"],
                        )
                        .await
                        .unwrap()
                        .iter()
                        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, String>(2) == "NO"))
                        .collect::<Vec<_>>();
                    assert_eq!(regenerated, columns(table.clone()).await, "{table}: regenerated DDL differs");
                }
            }
        }
    }
}

both_backends! {
    async fn a_backlog_is_caught_up_over_bounded_runs(db) {
        let (pool, w) = setup(&db).await;
        let base = day_start(Utc::now()) - Duration::days(2);
        let rows: Vec<GpuSample> = (0..48 * 6).map(|i| gpu(&(0, i * 10, i as u16), base)).collect();
        w.write(&rows).await.unwrap();
        let cfg = AggregatorConfig { max_hourly_buckets_per_run: 10, max_daily_buckets_per_run: 1, ..Default::default() };
        let now = base + Duration::days(2) + Duration::hours(1);
        let first = run_once(&pool, &cfg, now).await.unwrap().unwrap();
        let gpu_1h = first.tiers.iter().find(|t| t.table == "gpu_metrics_1h").unwrap();
        assert_eq!(gpu_1h.new_buckets, 10, "one run does at most the configured work");
        assert!(!first.caught_up());
        let mut runs = 1;
        loop {
            runs += 1;
            if run_once(&pool, &cfg, now).await.unwrap().unwrap().caught_up() {
                break;
            }
            assert!(runs < 20, "never caught up");
        }
        assert_eq!(runs, 5, "48 hourly buckets at 10 per run");
        // A run with nothing new does nothing.
        let idle = run_once(&pool, &cfg, now).await.unwrap().unwrap();
        assert!(idle.tiers.iter().all(|t| t.new_buckets + t.recomputed_buckets == 0));
        assert_tiers_match_raw(&db).await;
    }
}

both_backends! {
    async fn retention_removes_exactly_what_is_too_old(db) {
        let (pool, w) = setup(&db).await;
        let now = Utc::now().duration_trunc(Duration::seconds(1)).unwrap() + Duration::days(3);
        let at = |age: Duration| now - age;
        let rows: Vec<GpuSample> = [Duration::days(8), Duration::days(7) + Duration::seconds(1), Duration::days(7) - Duration::seconds(1), Duration::days(6)]
            .iter()
            .enumerate()
            .map(|(i, age)| GpuSample { gpu_id: i as i64 + 1, host_id: "h".into(), collected_at: at(*age), temperature: Some(50.0), ..Default::default() })
            .collect();
        w.write(&rows).await.unwrap();
        let c = db.client().await;
        for (table, ages) in [("gpu_metrics_1h", [91, 89]), ("gpu_metrics_1d", [366, 364])] {
            for (i, days) in ages.iter().enumerate() {
                c.execute(
                    &format!("INSERT INTO {table} (gpu_id, host_id, bucket, sample_count, utilization_percent_count, memory_used_count, memory_usage_percent_count, temperature_count, power_draw_count, fan_speed_percent_count, sm_clock_count, memory_clock_count, process_count_count, memory_copy_util_percent_count, memory_free_count, memory_temperature_count, pcie_tx_bytes_per_sec_count, pcie_rx_bytes_per_sec_count, xid_last_count) VALUES ($1, 'h', $2, 1, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0)"),
                    &[&(100 + i as i64), &(now - Duration::days(*days))],
                ).await.unwrap();
            }
        }
        let cfg = AggregatorConfig::default();
        let report = run_once(&pool, &cfg, now).await.unwrap().unwrap();
        let ids = |q: &'static str| {
            let c = &c;
            async move { c.query(q, &[]).await.unwrap().iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>() }
        };
        assert_eq!(ids("SELECT gpu_id FROM gpu_metrics ORDER BY 1").await, vec![3, 4], "raw older than 7 days must go, newer stay");
        assert_eq!(ids("SELECT gpu_id FROM gpu_metrics_1h WHERE gpu_id >= 100 ORDER BY 1").await, vec![101]);
        assert_eq!(ids("SELECT gpu_id FROM gpu_metrics_1d WHERE gpu_id >= 100 ORDER BY 1").await, vec![101]);
        assert!(report.retention.raw_rows_deleted + report.retention.dropped_parts as u64 >= 1);
        // system_configs overrides the default.
        c.execute("UPDATE system_configs SET config_value = '2' WHERE config_key = 'retention.raw_days'", &[]).await.unwrap();
        run_once(&pool, &cfg, now).await.unwrap().unwrap();
        assert!(ids("SELECT gpu_id FROM gpu_metrics").await.is_empty());
        // Inserts keep working across day boundaries: partitions exist ahead of the clock.
        let ahead: Vec<GpuSample> = (0..5)
            .map(|d| GpuSample { gpu_id: 1, host_id: "h".into(), collected_at: now + Duration::days(d) , ..Default::default() })
            .collect();
        w.write(&ahead).await.expect("inserts across day boundaries");
        assert_eq!(ids("SELECT count(*) FROM gpu_metrics").await, vec![5]);
        if db.kind == gpuwatch_store::testing::Kind::Postgres {
            let last = (now + Duration::days(7)).format("gpu_metrics_p%Y%m%d").to_string();
            let exists: bool = c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&last]).await.unwrap().get(0);
            assert!(exists, "partition {last} was not created ahead");
        }
    }
}

both_backends! {
    async fn series_reads_tiers_plus_raw_tail_and_equals_raw(db) {
        let (pool, w) = setup(&db).await;
        let base = day_start(Utc::now()) - Duration::days(3);
        // 4 GPUs, a sample every 5 minutes for 3 days, one exactly on a later watermark.
        let rows: Vec<GpuSample> = (0..4u8)
            .flat_map(|g| (0..3 * 24 * 12u32).map(move |i| (g, i * 5, (i * 7 + g as u32) as u16)))
            .map(|s| gpu(&s, base))
            .collect();
        w.write(&rows).await.unwrap();
        // Materialise only up to base + 2 days: the last day is the raw tail.
        let cfg = AggregatorConfig { max_hourly_buckets_per_run: 1_000, max_daily_buckets_per_run: 10, lateness_secs: 0, ..Default::default() };
        run_once(&pool, &cfg, base + Duration::days(2)).await.unwrap();
        let c = db.client().await;
        let (from, to) = (base, base + Duration::days(3));
        for (step, ids) in [("1 hour", Some(vec!["1".to_string(), "3".to_string()])), ("1 day", None), ("6 hours", None), ("10 minutes", Some(vec!["2".to_string()]))] {
            let series: Vec<(DateTime<Utc>, Option<f64>)> = c
                .query("SELECT bucket, value FROM gpuwatch_series('gpu_metrics', $1, 'temperature', $2, $3, $4::text::interval)", &[&ids, &from, &to, &step])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let raw: Vec<(DateTime<Utc>, Option<f64>)> = c
                .query(
                    "SELECT date_bin($4::text::interval, collected_at, '2000-01-01 00:00:00+00'),
                            (sum(temperature::numeric) / nullif(count(temperature), 0))::float8
                     FROM gpu_metrics WHERE ($1::text[] IS NULL OR gpu_id = ANY ($1::text[]::bigint[]))
                       AND collected_at BETWEEN $2 AND $3 GROUP BY 1 ORDER BY 1",
                    &[&ids, &from, &to, &step],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            assert_eq!(series, raw, "step {step}, ids {ids:?}");
        }
        // A sample exactly at `to` (inclusive) counts once, at the tier/raw seam too.
        let edge: f64 = c
            .query_one("SELECT value FROM gpuwatch_series('gpu_metrics', ARRAY['1'], 'temperature', $1, $1, '1 hour')", &[&(base + Duration::days(2))])
            .await
            .unwrap()
            .get(0);
        let expect: f64 = c
            .query_one("SELECT temperature FROM gpu_metrics WHERE gpu_id = 1 AND collected_at = $1", &[&(base + Duration::days(2))])
            .await
            .unwrap()
            .get(0);
        assert_eq!(edge, expect);
        let bad = c.query("SELECT * FROM gpuwatch_series('gpu_metrics', NULL, 'nope', now(), now(), '1 hour')", &[]).await.unwrap_err();
        assert!(bad.as_db_error().unwrap().message().contains("has no gauge metric nope"), "{bad}");
    }
}

both_backends! {
    async fn silent_hosts_go_offline_and_come_back(db) {
        let (pool, _) = setup(&db).await;
        let c = db.client().await;
        let now = Utc::now();
        c.execute(
            "INSERT INTO hosts (id, name, ip_address, os_type, total_cpu, total_memory, status, health_status, last_heartbeat)
             VALUES ('quiet', 'q', '10.0.0.1', 'linux', 8, 1, 'online', 'healthy', $1),
                    ('busy', 'b', '10.0.0.2', 'linux', 8, 1, 'online', 'healthy', $2),
                    ('fixing', 'f', '10.0.0.3', 'linux', 8, 1, 'maintenance', 'healthy', $1)",
            &[&(now - Duration::minutes(5)), &now],
        ).await.unwrap();
        let cfg = AggregatorConfig { offline_after_secs: 60, ..Default::default() };
        let r = run_once(&pool, &cfg, now).await.unwrap().unwrap();
        assert_eq!(r.liveness.went_offline, vec!["quiet".to_string()]);
        let state = |id: &'static str| {
            let c = &c;
            async move {
                let r = c.query_one("SELECT status, health_status FROM hosts WHERE id = $1", &[&id]).await.unwrap();
                (r.get::<_, String>(0), r.get::<_, String>(1))
            }
        };
        assert_eq!(state("quiet").await, ("offline".into(), "unhealthy".into()));
        assert_eq!(state("busy").await, ("online".into(), "healthy".into()));
        assert_eq!(state("fixing").await, ("maintenance".into(), "healthy".into()));
        gpuwatch_store::inventory::heartbeat(&pool, &["quiet".to_string()], now).await.unwrap();
        let r = run_once(&pool, &cfg, now).await.unwrap().unwrap();
        assert_eq!(r.liveness.came_back, vec!["quiet".to_string()]);
        assert_eq!(state("quiet").await, ("online".into(), "healthy".into()));
    }
}

both_backends! {
    async fn only_one_replica_works_at_a_time(db) {
        let (pool, _) = setup(&db).await;
        let holder = db.client().await;
        holder.query_one("SELECT pg_advisory_lock(7453588643528536577)", &[]).await.unwrap();
        let r = run_once(&pool, &AggregatorConfig::default(), Utc::now()).await.unwrap();
        assert!(r.is_none(), "a second replica must skip while one works");
        holder.query_one("SELECT pg_advisory_unlock(7453588643528536577)", &[]).await.unwrap();
        assert!(run_once(&pool, &AggregatorConfig::default(), Utc::now()).await.unwrap().is_some());
    }
}
