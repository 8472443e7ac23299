//! Tiers see every write to raw rows, whichever client made it: the batch
//! writer, plain `INSERT` and `COPY` from another connection, `UPDATE` and
//! `DELETE`, late and re-sent batches, and a failure injected where the
//! writer used to record its invalidation in a second transaction. After a
//! final aggregator run every hourly, daily and fleet row equals the
//! aggregation of the raw rows that still exist. With the invalidation
//! triggers disabled the same property fails (checked too).

use chrono::{DateTime, Duration, Utc};
use futures_util::SinkExt;
use gpuwatch_aggregator::spec::{Tier, SOURCES};
use gpuwatch_aggregator::{run_once, AggregatorConfig};
use gpuwatch_store::testing::TestDb;
use gpuwatch_store::{both_backends, tier_lock_key, GpuSample, Pool};
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};

use crate::aggregator::{day_start, env, gpu, host, setup, tiers_differ_from_raw, Spec};

/// Minutes of the generated window (3 days).
const SPAN_MIN: u32 = 3 * 24 * 60;

/// One step of a generated history.
#[derive(Debug, Clone)]
enum Step {
    /// The batch writer stores samples of all three tables.
    Writer(Vec<Spec>),
    /// The same batch again (a re-send after a lost acknowledgement).
    Resend,
    /// Another client: `INSERT ... ON CONFLICT DO NOTHING` of GPU and host rows.
    SqlInsert(Vec<Spec>),
    /// Another client: text `COPY` of GPU rows, 17 s off the writer's grid.
    SqlCopy(Vec<Spec>),
    /// An `UPDATE` of one GPU's rows in a time range (values, or moved in time).
    Update {
        gpu: u8,
        from: u32,
        len: u32,
        shift: bool,
    },
    /// A `DELETE` of one host's rows in every table (an erase).
    Delete { host: u8, from: u32, len: u32 },
    /// The writer's batch with the invalidation insert failing once.
    FailedWriter(Vec<Spec>),
    /// An aggregator run with the clock at this minute.
    Run(u32),
}

fn specs() -> impl Strategy<Value = Vec<Spec>> {
    prop::collection::vec((0u8..4, 0u32..SPAN_MIN, any::<u16>()), 1..40)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => specs().prop_map(Step::Writer),
        1 => Just(Step::Resend),
        2 => specs().prop_map(Step::SqlInsert),
        2 => specs().prop_map(Step::SqlCopy),
        2 => (0u8..4, 0u32..SPAN_MIN, 1u32..600, any::<bool>())
            .prop_map(|(gpu, from, len, shift)| Step::Update { gpu, from, len, shift }),
        1 => (0u8..2, 0u32..SPAN_MIN, 1u32..1_500)
            .prop_map(|(host, from, len)| Step::Delete { host, from, len }),
        1 => specs().prop_map(Step::FailedWriter),
        3 => (0u32..SPAN_MIN).prop_map(Step::Run),
    ]
}

/// A one-shot failure of the next insert into gpuwatch_tier_invalidations:
/// a sequence (not rolled back with the failed transaction) counts down.
const FAILPOINT: &str = "
    CREATE SEQUENCE tiers_test_fail MINVALUE 0 START 100;
    CREATE FUNCTION tiers_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF nextval('tiers_test_fail') = 1 THEN
            RAISE EXCEPTION 'injected failure recording an invalidation';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER tiers_test_fail BEFORE INSERT ON gpuwatch_tier_invalidations
        FOR EACH ROW EXECUTE FUNCTION tiers_test_fail();";

const RESET: &str = "
    TRUNCATE gpu_metrics, host_metrics, environment_metrics, gpu_metrics_1h, gpu_metrics_1d,
             host_metrics_1h, host_metrics_1d, environment_metrics_1h, environment_metrics_1d,
             gpu_metrics_fleet_1h, gpu_metrics_fleet_1d, host_metrics_fleet_1h, host_metrics_fleet_1d,
             environment_metrics_fleet_1h, environment_metrics_fleet_1d, gpuwatch_tier_invalidations;
    UPDATE gpuwatch_tier_state SET watermark = NULL;";

/// GPU rows of another collector, with the columns it knows.
fn sql_insert(specs: &[Spec], base: DateTime<Utc>) -> String {
    let gpus: Vec<String> = specs
        .iter()
        .map(|s| {
            let g = gpu(s, base);
            format!(
                "({}, '{}', '{}', {}, {}, {})",
                g.gpu_id,
                g.host_id,
                g.collected_at.to_rfc3339(),
                g.temperature.unwrap_or_default(),
                g.power_draw.unwrap_or_default(),
                g.energy_consumed_mj.unwrap_or_default(),
            )
        })
        .collect();
    let hosts: Vec<String> = specs
        .iter()
        .map(|s| {
            let h = host(s, base);
            format!(
                "('{}', '{}', {})",
                h.host_id,
                h.collected_at.to_rfc3339(),
                h.cpu_usage_percent.unwrap_or_default()
            )
        })
        .collect();
    format!(
        "INSERT INTO gpu_metrics (gpu_id, host_id, collected_at, temperature, power_draw, energy_consumed_mj)
         VALUES {} ON CONFLICT DO NOTHING;
         INSERT INTO host_metrics (host_id, collected_at, cpu_usage_percent) VALUES {} ON CONFLICT DO NOTHING;",
        gpus.join(", "),
        hosts.join(", ")
    )
}

async fn sql_copy(c: &tokio_postgres::Client, specs: &[Spec], base: DateTime<Utc>) {
    let mut seen = std::collections::HashSet::new();
    let mut text = String::new();
    for s in specs.iter().filter(|s| seen.insert((s.0, s.1))) {
        let g: GpuSample = gpu(s, base);
        let at = g.collected_at + Duration::seconds(17);
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            g.gpu_id,
            g.host_id,
            at.to_rfc3339(),
            g.utilization_percent
                .map_or("\\N".to_string(), |v| v.to_string()),
            g.temperature.unwrap_or_default()
        ));
    }
    let sink = c
        .copy_in::<_, std::io::Cursor<Vec<u8>>>("COPY gpu_metrics (gpu_id, host_id, collected_at, utilization_percent, temperature) FROM STDIN")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    sink.send(std::io::Cursor::new(text.into_bytes()))
        .await
        .unwrap();
    // The same rows copied twice fail on the primary key, as a real second
    // COPY would: the statement is rolled back and nothing changes.
    if let Err(e) = sink.finish().await {
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
            "{e}"
        );
    }
}

/// Runs one history; returns the first tier row that differs from raw.
async fn history(
    db: &TestDb,
    pool: &Pool,
    w: &gpuwatch_store::BatchWriter,
    steps: &[Step],
) -> Option<String> {
    let base = day_start(Utc::now()) - Duration::days(3);
    let cfg = AggregatorConfig {
        max_hourly_buckets_per_run: 7,
        max_daily_buckets_per_run: 1,
        lateness_secs: 0,
        ..Default::default()
    };
    let c = db.client().await;
    c.batch_execute(RESET).await.unwrap();
    // Another client's INSERT or COPY on plain PostgreSQL needs the day's
    // partition as much as the writer does (a no-op on hypertables).
    for table in ["gpu_metrics", "host_metrics", "environment_metrics"] {
        c.execute(
            "SELECT gpuwatch_ensure_partitions($1, ($2::timestamptz - interval '1 day')::date, ($2::timestamptz + interval '5 days')::date)",
            &[&table, &base],
        )
        .await
        .unwrap();
    }
    let mut last: Option<Vec<Spec>> = None;
    let at = |m: u32| base + Duration::minutes(m as i64);
    let write = |specs: Vec<Spec>| async move {
        let gpus: Vec<_> = specs.iter().map(|s| gpu(s, base)).collect();
        let hosts: Vec<_> = specs.iter().map(|s| host(s, base)).collect();
        let envs: Vec<_> = specs.iter().map(|s| env(s, base)).collect();
        w.write(&gpus)
            .await
            .and(w.write(&hosts).await)
            .and(w.write(&envs).await)
    };
    for step in steps {
        match step {
            Step::Writer(specs) => {
                write(specs.clone()).await.unwrap();
                last = Some(specs.clone());
            }
            Step::Resend => {
                if let Some(specs) = &last {
                    write(specs.clone()).await.unwrap();
                }
            }
            Step::FailedWriter(specs) => {
                c.execute("SELECT setval('tiers_test_fail', 0)", &[])
                    .await
                    .unwrap();
                let failed = write(specs.clone()).await.is_err();
                c.execute("SELECT setval('tiers_test_fail', 100)", &[])
                    .await
                    .unwrap();
                if failed {
                    // The sender spooled the batch and sends it again.
                    write(specs.clone()).await.unwrap();
                }
                last = Some(specs.clone());
            }
            Step::SqlInsert(specs) => c.batch_execute(&sql_insert(specs, base)).await.unwrap(),
            Step::SqlCopy(specs) => sql_copy(&c, specs, base).await,
            Step::Update {
                gpu,
                from,
                len,
                shift,
            } => {
                let (a, b) = (at(*from), at(from + len));
                let set = if *shift {
                    "collected_at = collected_at + interval '41 minutes 3 seconds'"
                } else {
                    "temperature = temperature + 1, power_draw = NULL"
                };
                let r = c
                    .execute(
                        &format!("UPDATE gpu_metrics SET {set} WHERE gpu_id = $1 AND collected_at >= $2 AND collected_at < $3"),
                        &[&(*gpu as i64 + 1), &a, &b],
                    )
                    .await;
                // A moved row may land on another's key, or (TimescaleDB) in
                // another chunk, which an UPDATE cannot do: the statement fails whole.
                if let Err(e) = r {
                    use tokio_postgres::error::SqlState;
                    assert!(
                        matches!(e.code(), Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::CHECK_VIOLATION),
                        "{e}"
                    );
                }
            }
            Step::Delete { host, from, len } => {
                let (a, b) = (at(*from), at(from + len));
                let h = format!("h{host}");
                for table in ["gpu_metrics", "host_metrics", "environment_metrics"] {
                    c.execute(
                        &format!("DELETE FROM {table} WHERE host_id = $1 AND collected_at >= $2 AND collected_at < $3"),
                        &[&h, &a, &b],
                    )
                    .await
                    .unwrap();
                }
            }
            Step::Run(m) => {
                run_once(pool, &cfg, at(*m)).await.unwrap();
            }
        }
    }
    let end = base + Duration::days(4);
    for _ in 0..400 {
        if run_once(pool, &cfg, end)
            .await
            .unwrap()
            .expect("sole replica")
            .caught_up()
        {
            break;
        }
    }
    tiers_differ_from_raw(db).await
}

both_backends! {
    async fn every_write_by_any_client_reaches_the_tiers(db) {
        let (pool, w) = setup(&db).await;
        db.client().await.batch_execute(FAILPOINT).await.unwrap();
        let case = prop::collection::vec(step(), 4..24);
        let mut runner = TestRunner::new(PropConfig { cases: 8, ..PropConfig::default() });
        let handle = tokio::runtime::Handle::current();
        runner
            .run(&case, |steps| {
                let diff = tokio::task::block_in_place(|| handle.block_on(history(&db, &pool, &w, &steps)));
                prop_assert!(diff.is_none(), "{}", diff.unwrap_or_default());
                Ok(())
            })
            .unwrap();
    }
}

/// A history that every mechanism must get right: materialised buckets,
/// then each kind of foreign write behind the watermark.
fn behind_the_watermark() -> Vec<Step> {
    let specs: Vec<Spec> = (0..4u8)
        .flat_map(|g| (0..40u32).map(move |i| (g, i * 90, i as u16 * 7)))
        .collect();
    vec![
        Step::Writer(specs.clone()),
        Step::Run(SPAN_MIN),
        Step::SqlInsert(vec![(1, 95, 11), (2, 185, 12)]),
        Step::Run(SPAN_MIN),
        Step::SqlCopy(vec![(0, 30, 13)]),
        Step::Update {
            gpu: 3,
            from: 0,
            len: 600,
            shift: false,
        },
        Step::Delete {
            host: 1,
            from: 700,
            len: 900,
        },
        Step::Run(SPAN_MIN),
        Step::FailedWriter(vec![(0, 10, 99), (2, 1_000, 98)]),
    ]
}

both_backends! {
    async fn without_the_invalidation_triggers_the_property_fails(db) {
        let (pool, w) = setup(&db).await;
        let c = db.client().await;
        c.batch_execute(FAILPOINT).await.unwrap();
        assert_eq!(history(&db, &pool, &w, &behind_the_watermark()).await, None);
        // Switched off (TimescaleDB cannot disable a hypertable's triggers: drop them).
        for table in ["gpu_metrics", "host_metrics", "environment_metrics"] {
            for op in ["insert", "update", "delete"] {
                c.batch_execute(&format!("DROP TRIGGER gpuwatch_tier_invalidate_{op} ON {table}")).await.unwrap();
            }
        }
        let diff = history(&db, &pool, &w, &behind_the_watermark()).await;
        assert!(diff.is_some(), "the property must notice writes that were never invalidated");
    }
}

both_backends! {
    async fn the_triggers_take_the_aggregators_lock_of_their_table(db) {
        setup(&db).await;
        let c = db.client().await;
        let rows = c
            .query(
                "SELECT c.relname::text, encode(t.tgargs, 'escape') FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                 WHERE t.tgname LIKE 'gpuwatch_tier_invalidate_%' ORDER BY 1, t.tgname",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 9, "insert, update and delete triggers on three tables");
        for r in rows {
            let (table, args): (String, String) = (r.get(0), r.get(1));
            assert_eq!(args, format!("{table}\\000{}\\000", tier_lock_key(&table)), "{table}");
        }
    }
}

/// Prometheus' increase() over samples, per bucket of `step_secs` from
/// `from`, with the seconds it accrued in: each step between consecutive
/// samples counts in the later sample's bucket, a drop as a restart from 0.
fn raw_increase(
    samples: &[(DateTime<Utc>, i64)],
    from: DateTime<Utc>,
    step_secs: i64,
) -> Vec<(DateTime<Utc>, f64, f64)> {
    let mut out: Vec<(DateTime<Utc>, f64, f64)> = Vec::new();
    for pair in samples.windows(2) {
        let ((t0, a), (t, b)) = (pair[0], pair[1]);
        if t < from {
            continue;
        }
        let dv = if b >= a { b - a } else { b };
        let dt = (t - t0).num_seconds() as f64;
        let bucket =
            from + Duration::seconds((t - from).num_seconds().div_euclid(step_secs) * step_secs);
        match out.last_mut() {
            Some((b0, v, s)) if *b0 == bucket => {
                *v += dv as f64;
                *s += dt;
            }
            _ => out.push((bucket, dv as f64, dt)),
        }
    }
    out
}

both_backends! {
    async fn counter_increase_survives_a_restart_mid_hour_and_a_reboot_at_an_hours_edge(db) {
        let (pool, w) = setup(&db).await;
        let base = day_start(Utc::now()) - Duration::days(3);
        // A sample a minute for three days; the agent restarts at 10:30 on
        // day two (counters start again near 0), the host reboots so that
        // the first sample of 14:00 on day three is already after the reset.
        let restart = base + Duration::days(1) + Duration::hours(10) + Duration::minutes(30);
        let reboot = base + Duration::days(2) + Duration::hours(14);
        let mut counter = 5_000_000i64;
        let mut rx: Vec<(DateTime<Utc>, i64)> = Vec::new();
        for m in 0..(3 * 24 * 60) {
            let t = base + Duration::minutes(m);
            counter = if t == restart { 1_234 } else if t == reboot { 77 } else { counter + 1_000 + (m * 37) % 500 };
            rx.push((t, counter));
        }
        let hosts: Vec<gpuwatch_store::HostSample> = rx
            .iter()
            .map(|(t, v)| gpuwatch_store::HostSample { host_id: "h0".into(), collected_at: *t, network_rx_bytes: Some(*v), ..Default::default() })
            .collect();
        let gpus: Vec<GpuSample> = rx
            .iter()
            .map(|(t, v)| GpuSample { gpu_id: 1, host_id: "h0".into(), collected_at: *t, energy_consumed_mj: Some(*v * 3), ..Default::default() })
            .collect();
        w.write(&hosts).await.unwrap();
        w.write(&gpus).await.unwrap();
        let cfg = AggregatorConfig { max_hourly_buckets_per_run: 1_000, max_daily_buckets_per_run: 10, lateness_secs: 0, ..Default::default() };
        let end = base + Duration::days(3);
        while !run_once(&pool, &cfg, end).await.unwrap().unwrap().caught_up() {}
        let c = db.client().await;
        // From the second day: every bucket has the sample before it.
        let (from, to) = (base + Duration::days(1), end - Duration::seconds(1));
        for (source, id, counter, scale) in [("host_metrics", "h0", "network_rx_bytes", 1), ("gpu_metrics", "1", "energy_consumed_mj", 3)] {
            let samples: Vec<(DateTime<Utc>, i64)> = rx.iter().map(|(t, v)| (*t, v * scale)).collect();
            // Raw (1 minute, 10 minutes), hourly (1 hour, 6 hours) and daily (1 day) rows.
            for (step, secs) in [("1 minute", 60), ("10 minutes", 600), ("1 hour", 3_600), ("6 hours", 21_600), ("1 day", 86_400)] {
                let expect = raw_increase(&samples, from, secs);
                for agg in ["increase", "rate"] {
                    let got: Vec<(DateTime<Utc>, f64)> = c
                        .query(
                            "SELECT bucket, value FROM gpuwatch_counter_series($1, ARRAY[$2], $3, $4, $5, $6::text::interval, $7)",
                            &[&source, &id, &counter, &from, &to, &step, &agg],
                        )
                        .await
                        .unwrap()
                        .iter()
                        .map(|r| (r.get(0), r.get(1)))
                        .collect();
                    let want: Vec<(DateTime<Utc>, f64)> = expect
                        .iter()
                        .map(|(b, v, dt)| (*b, if agg == "rate" { v / dt } else { *v }))
                        .collect();
                    assert_eq!(got.len(), want.len(), "{source} {agg} step {step}: bucket count");
                    for (g, e) in got.iter().zip(&want) {
                        assert_eq!(g.0, e.0, "{source} {agg} step {step}");
                        assert!((g.1 - e.1).abs() <= 1e-9 * e.1.abs().max(1.0), "{source} {agg} step {step} bucket {}: got {}, raw {}", g.0, g.1, e.1);
                        assert!(g.1 >= 0.0, "a reset never makes a negative increase");
                    }
                }
            }
        }
        // The hourly rows themselves hold the corrected increase.
        let inc: i64 = c
            .query_one("SELECT network_rx_bytes_increase FROM host_metrics_1h WHERE host_id = 'h0' AND bucket = $1", &[&(restart - Duration::minutes(30))])
            .await
            .unwrap()
            .get(0);
        let hour = restart - Duration::minutes(30);
        let in_hour: Vec<(DateTime<Utc>, i64)> = rx.iter().filter(|(t, _)| *t >= hour && *t < hour + Duration::hours(1)).copied().collect();
        let want: f64 = raw_increase(&in_hour, hour, 86_400).iter().map(|(_, v, _)| v).sum();
        assert_eq!(inc as f64, want, "the increase inside the hour of the restart");
    }
}

both_backends! {
    async fn an_aggregator_down_for_ten_days_catches_up_with_complete_tiers(db) {
        let (pool, w) = setup(&db).await;
        let now = day_start(Utc::now()) + Duration::hours(5);
        let t0 = now - Duration::days(10);
        let specs: Vec<Spec> = (0..4u8).flat_map(|g| (0..10 * 24 * 6u32).map(move |i| (g, i * 10, (i * 13 + g as u32) as u16))).collect();
        let cfg = AggregatorConfig::default();
        // Up for the first hour, then down while agents keep writing.
        let first: Vec<Spec> = specs.iter().filter(|s| s.1 < 60).copied().collect();
        w.write(&first.iter().map(|s| gpu(s, t0)).collect::<Vec<_>>()).await.unwrap();
        run_once(&pool, &cfg, t0 + Duration::hours(1) + Duration::minutes(5)).await.unwrap();
        w.write(&specs.iter().map(|s| gpu(s, t0)).collect::<Vec<_>>()).await.unwrap();
        w.write(&specs.iter().map(|s| host(s, t0)).collect::<Vec<_>>()).await.unwrap();
        let c = db.client().await;
        let closed = |t: Tier| gpuwatch_aggregator::materialize::floor(now - Duration::seconds(cfg.lateness_secs as i64), t);
        let snapshot = |sql: String, t: Tier| {
            let c = &c;
            async move {
                let (a, b) = (DateTime::<Utc>::UNIX_EPOCH, closed(t));
                crate::aggregator::json_rows(c, &format!("SELECT to_jsonb(x) - 'materialized_at' FROM ({sql}) x ORDER BY 1"), &[&a, &b]).await
            }
        };
        let mut expect = Vec::new();
        for s in &SOURCES[..2] {
            for t in Tier::ALL {
                expect.push((s.tier_table(t), t, snapshot(s.select_sql(t), t).await));
            }
        }
        // Started again ten days later: it catches up over bounded runs.
        let mut runs = 0;
        while !run_once(&pool, &cfg, now).await.unwrap().unwrap().caught_up() {
            runs += 1;
            assert!(runs < 50, "never caught up");
        }
        for (table, t, want) in &expect {
            assert!(!want.is_empty());
            let got = snapshot(format!("SELECT * FROM {table} WHERE bucket >= $1 AND bucket < $2"), *t).await;
            assert_eq!(got.len(), want.len(), "{table}: every bucket of the ten days is materialised");
            assert!(got == *want, "{table}: a bucket differs from the raw rows it was computed from");
        }
        // And only then is raw retention applied.
        let old: i64 = c
            .query_one("SELECT (SELECT count(*) FROM gpu_metrics WHERE collected_at < $1) + (SELECT count(*) FROM host_metrics WHERE collected_at < $1)", &[&(now - Duration::days(7))])
            .await
            .unwrap()
            .get(0);
        assert_eq!(old, 0, "raw rows older than retention go once the tiers hold them");
    }
}

both_backends! {
    async fn a_gpu_moved_to_another_host_mid_hour_reads_from_tiers_as_from_raw(db) {
        let (pool, w) = setup(&db).await;
        let base = day_start(Utc::now()) - Duration::days(3);
        // GPU 1, a sample a minute for three days: on h0 until 10:20 of day
        // two, then on h1, where its driver is reloaded five minutes later
        // (the energy counter starts again): the hour and the day of the
        // move have a tier row per host.
        let moved = base + Duration::days(1) + Duration::hours(10) + Duration::minutes(20);
        let mut energy = 1_000_000i64;
        let mut samples: Vec<(DateTime<Utc>, i64)> = Vec::new();
        let gpus: Vec<GpuSample> = (0..3 * 24 * 60)
            .map(|m| {
                let t = base + Duration::minutes(m);
                energy = if t == moved + Duration::minutes(5) { 500 } else { energy + 4_000 + (m * 13) % 700 };
                samples.push((t, energy));
                let host = if t < moved { "h0" } else { "h1" };
                GpuSample { gpu_id: 1, host_id: host.into(), collected_at: t, utilization_percent: Some(((m * 7) % 101) as f64), energy_consumed_mj: Some(energy), ..Default::default() }
            })
            .collect();
        w.write(&gpus).await.unwrap();
        let cfg = AggregatorConfig { max_hourly_buckets_per_run: 1_000, max_daily_buckets_per_run: 10, lateness_secs: 0, ..Default::default() };
        let end = base + Duration::days(3);
        while !run_once(&pool, &cfg, end).await.unwrap().unwrap().caught_up() {}
        let c = db.client().await;
        let hour = moved - Duration::minutes(20);
        for (table, bucket) in [("gpu_metrics_1h", hour), ("gpu_metrics_1d", base + Duration::days(1))] {
            let q = format!("SELECT count(*) FROM {table} WHERE gpu_id = 1 AND bucket = $1");
            let n: i64 = c.query_one(&q, &[&bucket]).await.unwrap().get(0);
            assert_eq!(n, 2, "{table}: a row per host in the bucket of the move");
        }
        let (from, to) = (base + Duration::days(1), end - Duration::seconds(1));
        for (step, secs) in [("1 hour", 3_600), ("1 day", 86_400)] {
            for (agg, raw) in [
                ("avg", "(sum(utilization_percent::numeric) / count(utilization_percent))::float8"),
                ("min", "min(utilization_percent)"),
                ("max", "max(utilization_percent)"),
                ("sum", "sum(utilization_percent::numeric)::float8"),
                ("count", "count(utilization_percent)::float8"),
            ] {
                let got: Vec<(DateTime<Utc>, f64)> = c
                    .query(
                        "SELECT bucket, value FROM gpuwatch_series('gpu_metrics', ARRAY['1'], 'utilization_percent', $1, $2, $3::text::interval, $4)",
                        &[&from, &to, &step, &agg],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                let q = format!(
                    "SELECT date_bin($3::text::interval, collected_at, '2000-01-01 00:00:00+00'), {raw} FROM gpu_metrics
                      WHERE gpu_id = 1 AND collected_at BETWEEN $1 AND $2 GROUP BY 1 ORDER BY 1"
                );
                let want: Vec<(DateTime<Utc>, f64)> = c
                    .query(&q, &[&from, &to, &step])
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                assert_eq!(got, want, "{agg} at a {step} step");
            }
            let expect = raw_increase(&samples, from, secs);
            for agg in ["increase", "rate"] {
                let got: Vec<(DateTime<Utc>, f64)> = c
                    .query(
                        "SELECT bucket, value FROM gpuwatch_counter_series('gpu_metrics', ARRAY['1'], 'energy_consumed_mj', $1, $2, $3::text::interval, $4)",
                        &[&from, &to, &step, &agg],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                assert_eq!(got.len(), expect.len(), "{agg} at a {step} step: bucket count");
                for (g, (b, v, dt)) in got.iter().zip(&expect) {
                    let e = if agg == "rate" { v / dt } else { *v };
                    assert_eq!(g.0, *b, "{agg} at a {step} step");
                    assert!((g.1 - e).abs() <= 1e-9 * e.abs().max(1.0), "{agg} at a {step} step, bucket {b}: got {}, raw {e}", g.1);
                }
            }
        }
    }
}
