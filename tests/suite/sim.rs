//! The simulated fleet's control plane against a real database: it writes
//! customers, prices and environments whose history follows the fleet's
//! daily plan exactly, once, however often it runs, and the meter bills
//! that history, so the quick start has money to show.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpuwatch_billing::grid::Grid;
use gpuwatch_billing::{meter_until_caught_up, MeterOptions};
use gpuwatch_collector::control_plane::{apply, Applied};
use gpuwatch_collector::sources::sim::{EnvState, SimFleet};
use gpuwatch_collector::SimConfig;
use gpuwatch_store::inventory::{upsert_gpu, upsert_host};
use gpuwatch_store::{both_backends, migrate};
use rust_decimal::Decimal;

fn fleet() -> SimFleet {
    let cfg = SimConfig {
        hosts: 4,
        gpus_per_host: 4,
        ..SimConfig::default()
    };
    SimFleet::new(cfg, Utc::now())
}

/// Yesterday, 13:30 UTC: a fixed point with a morning to bill.
fn afternoon() -> DateTime<Utc> {
    (Utc::now() - TimeDelta::days(1))
        .duration_trunc(TimeDelta::days(1))
        .unwrap()
        + TimeDelta::minutes(13 * 60 + 30)
}

/// Each environment's states from midnight to `now` as the plan gives them:
/// the state at midnight, then every change.
fn planned(sim: &SimFleet, now: DateTime<Utc>) -> BTreeMap<String, Vec<(DateTime<Utc>, EnvState)>> {
    let midnight = now.duration_trunc(TimeDelta::days(1)).unwrap();
    let mut out: BTreeMap<String, Vec<(DateTime<Utc>, EnvState)>> = BTreeMap::new();
    for e in sim.environments() {
        out.entry(e.id.clone())
            .or_default()
            .push((midnight, sim.env_state(&e, midnight)));
    }
    for (at, e, s) in sim.env_events(midnight, now) {
        let v = out.get_mut(&e.id).unwrap();
        if v.last().unwrap().1 != s {
            v.push((at, s));
        }
    }
    out
}

both_backends! {
    async fn the_simulated_control_plane_writes_its_plan_once_and_the_meter_bills_it(db) {
        let cfg = db.store_config();
        migrate(&cfg).await.expect("migrate");
        let pool = gpuwatch_store::connect(&cfg).await.expect("pool");
        let sim = fleet();
        for h in sim.hosts() {
            upsert_host(&pool, &h, Utc::now()).await.expect("host");
        }
        for g in sim.gpus() {
            upsert_gpu(&pool, &g).await.expect("gpu");
        }
        let now = afternoon();
        let first = apply(&pool, &sim, now).await.expect("apply");
        assert_eq!(first.created, sim.environments().len() as u64);
        assert!(first.changes > 0, "{first:?}");
        // Applied again, at the same time or a minute on without a change
        // due: nothing more is written.
        let again = apply(&pool, &sim, now).await.expect("apply again");
        assert_eq!(again, Applied::default());

        let c = db.client().await;
        let rows = c.query(
            "SELECT env_id, valid_from, status, cpu, memory, gpu FROM environment_status_history ORDER BY env_id, valid_from, id",
            &[],
        ).await.unwrap();
        let mut got: BTreeMap<String, Vec<(DateTime<Utc>, EnvState)>> = BTreeMap::new();
        for r in &rows {
            let status: String = r.get(2);
            got.entry(r.get(0)).or_default().push((r.get(1), EnvState {
                status: if status == "running" { "running" } else { "stopped" },
                cpu: r.get(3),
                memory: r.get(4),
                gpu: r.get(5),
            }));
        }
        let want = planned(&sim, now);
        assert_eq!(got, want, "the history is the plan's, change for change");

        // The meter bills the closed hours: GPU-hours per environment equal
        // the plan's running time × GPUs over 00:00–13:00.
        let opts = MeterOptions {
            grid: Grid::hourly(),
            lateness: TimeDelta::minutes(5),
            max_periods: 48,
            default_currency: None,
        };
        meter_until_caught_up(&pool, &opts, now).await.expect("meter");
        let end = now.duration_trunc(TimeDelta::hours(1)).unwrap();
        let billed: BTreeMap<String, Decimal> = c.query(
            "SELECT env_id, sum(quantity * usage_seconds) / 3600 FROM billing_records WHERE resource_type = 'gpu' GROUP BY 1",
            &[],
        ).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
        let mut expected = BTreeMap::new();
        for (env, states) in &want {
            let mut secs = 0i64;
            for (i, (from, s)) in states.iter().enumerate() {
                let to = states.get(i + 1).map_or(end, |n| n.0).min(end);
                if s.status == "running" && to > *from {
                    secs += (to - *from).num_seconds() * s.gpu as i64;
                }
            }
            if secs > 0 {
                expected.insert(env.clone(), (Decimal::from(secs) / Decimal::from(3600)).round_dp(6));
            }
        }
        let billed: BTreeMap<String, Decimal> = billed.into_iter().map(|(k, v)| (k, v.round_dp(6))).collect();
        assert!(!expected.is_empty());
        assert_eq!(billed, expected, "GPU-hours billed per environment");
        let money: Decimal = c.query_one("SELECT coalesce(sum(amount), 0) FROM billing_records", &[]).await.unwrap().get(0);
        assert!(money > Decimal::ZERO, "the simulated day has money to bill");
    }
}

/// The quick start's path: `gpuwatch all` on the simulated fleet fills
/// `environment_metrics`, and the meter bills today at once, so
/// `gpuwatch report usage` for today has money whose rows sum to the records.
#[tokio::test(flavor = "multi_thread")]
async fn gpuwatch_all_on_the_simulated_fleet_bills_today() {
    use gpuwatch_store::testing::{Kind, TestDb};
    let db = TestDb::new(Kind::Postgres).await;
    let spool = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", db.url.clone()),
        (
            "GPUWATCH_API__LISTEN",
            format!("127.0.0.1:{}", crate::common::free_port()),
        ),
        ("GPUWATCH_COLLECTOR__INTERVAL", "2s".to_string()),
        ("GPUWATCH_COLLECTOR__SIM__HOSTS", "2".to_string()),
        ("GPUWATCH_COLLECTOR__SIM__GPUS_PER_HOST", "2".to_string()),
        (
            "GPUWATCH_COLLECTOR__SPOOL__DIR",
            spool.path().display().to_string(),
        ),
        // Minute periods, so a test at any time of day has closed ones to bill.
        ("GPUWATCH_BILLING__PERIOD", "1m".to_string()),
        ("GPUWATCH_BILLING__ALLOWED_LATENESS", "0s".to_string()),
        ("GPUWATCH_BILLING__SCHEDULE", "*/3 * * * * *".to_string()),
    ];
    let all = crate::common::Proc::spawn(&["all"], &env);
    let c = db.client().await;
    let mut seen = (0i64, 0i64);
    for _ in 0..120 {
        let count = |sql: &'static str| {
            let c = &c;
            async move {
                c.query_one(sql, &[])
                    .await
                    .map(|r| r.get::<_, i64>(0))
                    .unwrap_or(0)
            }
        };
        seen = (
            count("SELECT count(*) FROM environment_metrics").await,
            count(
                "SELECT count(*) FROM billing_records WHERE start_time >= date_trunc('day', now())",
            )
            .await,
        );
        if seen.0 > 0 && seen.1 > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        seen.0 > 0 && seen.1 > 0,
        "environment samples and today's records: {seen:?}\n{}",
        all.log().join("\n")
    );
    drop(all);

    let today = Utc::now().format("%Y-%m-%d").to_string();
    let tomorrow = (Utc::now() + TimeDelta::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let out = crate::common::gpuwatch_run(
        &[
            "report",
            "usage",
            "--from",
            &today,
            "--to",
            &tomorrow,
            "--format",
            "json",
            "--group-by",
            "customer,environment,resource",
        ],
        &[("DATABASE_URL", db.url.clone())],
    );
    let rows: serde_json::Value = serde_json::from_str(&out).expect("the usage report is JSON");
    let rows = rows.as_array().expect("an array of rows");
    assert!(!rows.is_empty(), "today's usage report is empty");
    let reported: Decimal = rows
        .iter()
        .map(|r| {
            r["amount"]
                .as_str()
                .expect("money is a decimal string")
                .parse::<Decimal>()
                .unwrap()
        })
        .sum();
    // Rows are rounded to the cent by the money rule and split by largest
    // remainder, so they sum to the records rounded once per line.
    let records: Decimal = c
        .query_one(
            "SELECT coalesce(sum(l), 0) FROM (
                 SELECT gpuwatch_round_money(sum(amount), 1) AS l FROM billing_records
                 WHERE start_time >= $1::text::date AND start_time < $2::text::date
                 GROUP BY customer_id, resource_type, gpu_model, unit_price, currency) x",
            &[&today, &tomorrow],
        )
        .await
        .unwrap()
        .get(0);
    assert!(reported > Decimal::ZERO, "{rows:?}");
    assert_eq!(reported, records, "report rows against the records");
}
