//! The meter against real databases: history from the environments trigger,
//! idempotent and concurrent runs, the constraint that refuses double
//! billing, append-only records, and bad input skipping whole periods.

use super::common::*;
use gpuwatch_billing::grid::Grid;
use gpuwatch_billing::{meter_once, meter_until_caught_up, BillingError, MeterOptions};
use gpuwatch_store::both_backends;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};

both_backends! {
    async fn the_environments_trigger_records_changes_to_the_second(db) {
        let (_pool, c) = setup(&db).await;
        c.batch_execute(
            "INSERT INTO environments (id, customer_id, workspace_id, host_id, name, image, status, cpu, memory, gpu, gpu_model)
             VALUES ('env-a', 1, 11, 'h1', 'a', 'img', 'creating', 4, 8589934592, 1, 'H100');
             UPDATE environments SET labels = '{\"x\": \"1\"}' WHERE id = 'env-a';
             BEGIN; SET LOCAL gpuwatch.changed_at = '2026-10-01T10:00:00.750Z';
             UPDATE environments SET status = 'running' WHERE id = 'env-a'; COMMIT;
             UPDATE environments SET gpu = 2 WHERE id = 'env-a';",
        )
        .await
        .unwrap();
        let rows = c
            .query("SELECT status, gpu, valid_from, valid_from = date_trunc('second', valid_from) FROM environment_status_history WHERE env_id = 'env-a' ORDER BY id", &[])
            .await
            .unwrap();
        // The label change is not a billing change: three rows, not four.
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].get::<_, String>(0), "running");
        assert_eq!(rows[1].get::<_, chrono::DateTime<chrono::Utc>>(2), t("2026-10-01T10:00:00Z"));
        assert_eq!(rows[2].get::<_, i32>(1), 2);
        assert!(rows.iter().all(|r| r.get::<_, bool>(3)), "valid_from is whole seconds");
        // A hard delete ends billing too.
        c.batch_execute("DELETE FROM environments WHERE id = 'env-a'").await.unwrap();
        let last: String = c
            .query_one("SELECT status FROM environment_status_history WHERE env_id = 'env-a' ORDER BY id DESC LIMIT 1", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(last, "deleted");
    }
}

async fn two_envs(c: &tokio_postgres::Client) {
    standard_prices(c).await;
    record(
        c,
        &running("env-1", 1, 4, 1, Some("H100"), "2026-10-01T00:00:00Z"),
    )
    .await;
    record(c, &running("env-2", 2, 2, 0, None, "2026-10-01T00:30:00Z")).await;
}

both_backends! {
    async fn running_twice_bills_nothing_twice(db) {
        let (pool, c) = setup(&db).await;
        two_envs(&c).await;
        let now = t("2026-10-02T00:05:00Z");
        let first = meter_until_caught_up(&pool, &hourly(), now).await.unwrap();
        assert_eq!(first.to, Some(t("2026-10-02T00:00:00Z")));
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        // env-1: cpu, memory, gpu x 24 h; env-2: cpu, memory x 23.5 h (24 periods).
        assert_eq!(first.records, 24 * 3 + 24 * 2);
        let second = meter_until_caught_up(&pool, &hourly(), now).await.unwrap();
        assert_eq!(second.records, 0);
        assert_eq!(count(&c, "SELECT count(*) FROM billing_records").await, 120);
        let amount: rust_decimal::Decimal = c
            .query_one("SELECT sum(amount) FROM billing_records WHERE env_id = 'env-2' AND resource_type = 'cpu'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(amount, d("2.35")); // 2 cores x 23.5 h x 0.05
    }
}

both_backends! {
    async fn two_meters_at_once_bill_each_interval_once(db) {
        let (pool, c) = setup(&db).await;
        two_envs(&c).await;
        let pool2 = gpuwatch_store::connect(&db.store_config()).await.unwrap();
        let now = t("2026-10-03T00:05:00Z");
        let opts = MeterOptions { max_periods: 6, ..hourly() };
        let (a, b) = tokio::join!(
            meter_until_caught_up(&pool, &opts, now),
            meter_until_caught_up(&pool2, &opts, now)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.records + b.records, 48 * 5, "each interval billed exactly once between them");
        assert_eq!(count(&c, "SELECT count(*) FROM billing_records").await, 48 * 5);
        let overlaps = count(&c,
            "SELECT count(*) FROM billing_records x JOIN billing_records y
               ON x.env_id = y.env_id AND x.resource_type = y.resource_type AND x.id < y.id
              AND tstzrange(x.start_time, x.end_time) && tstzrange(y.start_time, y.end_time)").await;
        assert_eq!(overlaps, 0);
    }
}

both_backends! {
    async fn a_shifted_grid_cannot_bill_an_interval_twice(db) {
        let (pool, c) = setup(&db).await;
        two_envs(&c).await;
        meter_until_caught_up(&pool, &hourly(), t("2026-10-02T00:05:00Z")).await.unwrap();
        let before = count(&c, "SELECT count(*) FROM billing_records").await;
        // A meter whose state was lost, on a grid shifted by 30 minutes.
        c.batch_execute("UPDATE billing_meter_state SET watermark = '2026-10-01T11:30:00Z'").await.unwrap();
        let shifted = MeterOptions {
            grid: Grid { period: chrono::Duration::hours(1), offset: chrono::Duration::minutes(30) },
            ..hourly()
        };
        let err = meter_once(&pool, &shifted, t("2026-10-02T00:05:00Z")).await.unwrap_err();
        match &err {
            BillingError::Conflict(m) => assert!(m.contains("ex_billing_records_no_overlap"), "{m}"),
            other => panic!("expected the exclusion constraint to refuse, got {other:?}"),
        }
        assert_eq!(count(&c, "SELECT count(*) FROM billing_records").await, before, "nothing partial was written");
        // The constraint, not the meter, refuses: a hand-written duplicate fails too.
        let dup = c
            .execute(
                "INSERT INTO billing_records (customer_id, env_id, resource_type, quantity, usage_seconds, unit_price, currency, start_time, end_time)
                 VALUES (1, 'env-1', 'cpu', 4, 60, 0.05, 'CNY', '2026-10-01T05:10:00Z', '2026-10-01T05:11:00Z')",
                &[],
            )
            .await
            .unwrap_err();
        assert_eq!(dup.code(), Some(&tokio_postgres::error::SqlState::EXCLUSION_VIOLATION), "{dup}");
    }
}

both_backends! {
    async fn records_are_append_only(db) {
        let (pool, c) = setup(&db).await;
        two_envs(&c).await;
        meter_until_caught_up(&pool, &hourly(), t("2026-10-01T03:05:00Z")).await.unwrap();
        for sql in [
            "UPDATE billing_records SET quantity = quantity + 1 WHERE id = (SELECT min(id) FROM billing_records)",
            "UPDATE billing_records SET unit_price = 0 WHERE id = (SELECT min(id) FROM billing_records)",
            "DELETE FROM billing_records WHERE id = (SELECT min(id) FROM billing_records)",
        ] {
            let e = c.execute(sql, &[]).await.unwrap_err();
            assert!(e.as_db_error().unwrap().message().contains("append-only"), "{sql}: {e}");
        }
    }
}

both_backends! {
    async fn bad_input_skips_that_period_whole_and_the_others_go_on(db) {
        let (pool, c) = setup(&db).await;
        standard_prices(&c).await;
        price(&c, "gpu", "L4", "2.5", "XYZ", "2026-01-01T00:00:00Z", None).await;
        record(&c, &running("env-good", 1, 2, 1, Some("H100"), "2026-10-01T00:00:00Z")).await;
        record(&c, &running("env-neg", 1, -2, 0, None, "2026-10-01T00:00:00Z")).await;
        // env-neg is fixed from 01:00 on: only its first period is bad.
        record(&c, &running("env-neg", 1, 2, 0, None, "2026-10-01T01:00:00Z")).await;
        record(&c, &running("env-a100", 2, 2, 1, Some("A100"), "2026-10-01T00:00:00Z")).await;
        record(&c, &running("env-l4", 3, 2, 1, Some("L4"), "2026-10-01T00:00:00Z")).await;
        let r = meter_until_caught_up(&pool, &hourly(), t("2026-10-01T02:05:00Z")).await.unwrap();
        let has = |needle: &[&str]| r.errors.iter().any(|e| needle.iter().all(|n| e.contains(n)));
        assert!(has(&["environment env-neg", "resource cpu", "period 2026-10-01T00:00:00+00:00..2026-10-01T01:00:00+00:00", "negative quantity -2"]), "{:?}", r.errors);
        assert!(has(&["environment env-a100", "resource gpu", "period 2026-10-01T00:00:00+00:00", "no price in force for model \"A100\""]), "{:?}", r.errors);
        assert!(has(&["environment env-l4", "resource gpu", "period 2026-10-01T01:00:00+00:00", "unknown currency \"XYZ\""]), "{:?}", r.errors);
        assert_eq!(r.errors.len(), 5, "env-neg once, env-a100 and env-l4 twice: {:?}", r.errors);
        // Nothing partial: no cpu or memory row either for a skipped period.
        assert_eq!(count(&c, "SELECT count(*) FROM billing_records WHERE env_id IN ('env-a100', 'env-l4')").await, 0);
        assert_eq!(count(&c, "SELECT count(*) FROM billing_records WHERE env_id = 'env-neg'").await, 2, "01:00-02:00 cpu and memory");
        assert_eq!(count(&c, "SELECT count(*) FROM billing_records WHERE env_id = 'env-good'").await, 6);
        assert_eq!(count(&c, "SELECT count(*) FROM billing_meter_errors WHERE resolved_at IS NULL").await, 5);

        // The price is added: the next run bills the skipped A100 periods once.
        price(&c, "gpu", "A100", "12", "CNY", "2026-01-01T00:00:00Z", None).await;
        let r2 = meter_until_caught_up(&pool, &hourly(), t("2026-10-01T02:05:00Z")).await.unwrap();
        assert_eq!(r2.retried, 2);
        assert_eq!(count(&c, "SELECT count(*) FROM billing_records WHERE env_id = 'env-a100'").await, 6);
        assert_eq!(count(&c, "SELECT count(*) FROM billing_meter_errors WHERE resolved_at IS NULL").await, 3);
    }
}

both_backends! {
    async fn the_one_rounding_rule_is_half_away_from_zero_and_exact(db) {
        let (_pool, c) = setup(&db).await;
        let round = |n: &'static str, dd: &'static str| {
            let c = &c;
            async move {
                c.query_one("SELECT gpuwatch_round_money($1::text::numeric, $2::text::numeric)::text", &[&n, &dd])
                    .await
                    .unwrap()
                    .get::<_, String>(0)
            }
        };
        for (n, dd, want) in [
            ("0.005", "1", "0.01"),
            ("-0.005", "1", "-0.01"),
            ("0.015", "1", "0.02"),   // banker's rounding would give 0.02 too
            ("0.025", "1", "0.03"),   // banker's would give 0.02
            ("0.00499999999999999999999999", "1", "0.00"),
            ("18", "3600", "0.01"),   // 0.005 exactly: a tie, away from zero
            ("17.999999999", "3600", "0.00"),
            ("-18", "3600", "-0.01"),
            ("1", "3", "0.33"),
            ("2", "3", "0.67"),
            ("123456789012345678901234.5", "1", "123456789012345678901234.50"),
        ] {
            assert_eq!(round(n, dd).await, want, "{n} / {dd}");
        }
        // Against integer arithmetic for many numerators over 3600.
        let mut runner = TestRunner::new(PropConfig { cases: 200, failure_persistence: None, ..PropConfig::default() });
        let handle = tokio::runtime::Handle::current();
        runner
            .run(&(-10_000_000i64..10_000_000), |n| {
                let (q, r) = ((n * 100) / 3600, (n * 100) % 3600);
                let cents = if 2 * r.abs() >= 3600 { q + n.signum() } else { q };
                let want = format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100);
                let got: String = tokio::task::block_in_place(|| {
                    handle.block_on(c.query_one("SELECT gpuwatch_round_money($1::bigint::numeric, 3600)::text", &[&n]))
                })
                .unwrap()
                .get(0);
                prop_assert_eq!(got, want, "{} / 3600", n);
                Ok(())
            })
            .unwrap();
    }
}
