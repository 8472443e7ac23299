//! DLWorkspace jobs through the meter: two clusters in a real MariaDB, one
//! billed and one only reported, their jobs' GPU-hours in the usage report
//! against an independent sum over the generator's own log, and on the
//! invoice only for the billed cluster.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use gpuwatch_billing::{
    cut_invoices, get_invoice, grid::Grid, invoice::InvoiceOptions, meter_until_caught_up,
    usage_report, MeterOptions, UsageQuery,
};
use gpuwatch_dlworkspace::{generator::Transition, sync_once, JobBilling, JobStatus, TableVersion};
use gpuwatch_store::both_backends;
use rust_decimal::Decimal;

use crate::dlworkspace::{run_to_the_end, setup};

const USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

/// GPU-seconds per (owner, GPU type) of every running interval the
/// generator made: a running status lasts until the job's next transition.
fn gpu_seconds(log: &[Transition]) -> BTreeMap<(String, String), i64> {
    let mut by_job: BTreeMap<&str, Vec<&Transition>> = BTreeMap::new();
    for t in log {
        by_job.entry(&t.job_id).or_default().push(t);
    }
    let mut out = BTreeMap::new();
    for ts in by_job.values() {
        for w in ts.windows(2) {
            if w[0].status == JobStatus::Running {
                let secs = (w[1].at - w[0].at).num_seconds() * w[0].gpus;
                *out.entry((w[0].user_name.clone(), w[0].gpu_type.to_string()))
                    .or_default() += secs;
            }
        }
        assert_ne!(
            ts.last().unwrap().status,
            JobStatus::Running,
            "every job ended"
        );
    }
    out
}

/// x / 3600 to `dp` decimals, half away from zero: the invoices' rule.
fn per_hour(x: Decimal, dp: u32) -> Decimal {
    (x / Decimal::from(3600))
        .round_dp_with_strategy(dp, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
}

fn price_of(model: &str) -> Decimal {
    // A100 has a price of its own; V100 and H100 take job_gpu's default.
    if model == "A100" {
        Decimal::new(125, 1)
    } else {
        Decimal::from(10)
    }
}

both_backends! {
    async fn jobs_gpu_hours_reconcile_with_the_generator_and_only_billed_clusters_are_invoiced(db) {
        let now = Utc::now();
        let month = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).unwrap() - Duration::days(40);
        let start: DateTime<Utc> = month + Duration::hours(10);
        let mut billed = setup(&db, TableVersion::Upstream, None, "-bill").await;
        let mut reported = setup(&db, TableVersion::Upstream, None, "-report").await;
        billed.cluster.billing = JobBilling::Bill;
        reported.cluster.billing = JobBilling::Report;
        let c = db.client().await;
        for (i, u) in USERS.iter().enumerate() {
            c.execute(
                "INSERT INTO customers (id, username, email, password_hash) VALUES ($1, $2, $3, 'x')",
                &[&(i as i64 + 1), u, &format!("{u}@example.com")],
            ).await.unwrap();
        }
        c.batch_execute(&format!(
            "INSERT INTO billing_prices (resource_type, gpu_model, unit_price, currency, valid_from) VALUES
                ('job_gpu', 'A100', 12.5, 'CNY', '{m}'), ('job_gpu', '', 10, 'CNY', '{m}')",
            m = month.to_rfc3339()
        )).await.unwrap();
        for s in [&mut billed, &mut reported] {
            s.generator.submit(40, start).await.expect("submit");
            run_to_the_end(s, start).await;
            sync_once(&s.pool, &s.cluster).await.expect("last sync");
        }
        let pool = billed.pool.clone();
        let opts = MeterOptions {
            grid: Grid::hourly(),
            lateness: Duration::minutes(5),
            max_periods: 24 * 90,
            default_currency: None,
        };
        let first = meter_until_caught_up(&pool, &opts, now).await.expect("meter");
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        assert!(first.records > 0);
        // The meter and the sync run again: nothing is billed twice.
        for s in [&billed, &reported] {
            sync_once(&s.pool, &s.cluster).await.expect("resync");
        }
        let again = meter_until_caught_up(&pool, &opts, now + Duration::hours(2)).await.expect("meter again");
        assert_eq!((again.records, again.corrections), (0, 0));

        let report_month = start.format("%Y-%m").to_string();
        let spec = UsageQuery { month: Some(report_month.clone()), ..Default::default() }.validate().unwrap();
        let rows = usage_report(&pool, &spec).await.expect("report");
        let got = |class: &str| -> BTreeMap<(String, String), (Decimal, Decimal)> {
            rows.iter()
                .filter(|r| r.resource_type == "job_gpu" && r.charge_class == class)
                .map(|r| {
                    let owner = USERS[(r.customer_id - 1) as usize].to_string();
                    assert_eq!(r.unit, "GPU-hour");
                    ((owner, r.gpu_model.clone().unwrap_or_default()), (r.quantity, r.amount))
                })
                .collect()
        };
        for (s, class) in [(&billed, "usage"), (&reported, "report_only")] {
            let want: BTreeMap<(String, String), (Decimal, Decimal)> = gpu_seconds(s.generator.log())
                .into_iter()
                .filter(|(_, secs)| *secs > 0)
                .map(|(k, secs)| {
                    let x = Decimal::from(secs);
                    let amount = per_hour(x * price_of(&k.1), 2);
                    (k, (per_hour(x, 6), amount))
                })
                .collect();
            assert!(!want.is_empty());
            assert_eq!(got(class), want, "{class}: GPU-hours and money per owner and GPU type");
        }

        // Invoices for the month: the billed cluster's jobs, to the cent;
        // never a report-only record.
        let cut = cut_invoices(&pool, &InvoiceOptions { grace: Duration::hours(1), auto_issue: false, due_days: 30 }, now)
            .await.expect("invoices");
        assert!(!cut.invoices.is_empty());
        let mut invoiced: BTreeMap<(String, String), Decimal> = BTreeMap::new();
        for id in &cut.invoices {
            let inv = get_invoice(&pool, *id).await.unwrap();
            for l in inv.lines.iter().filter(|l| l.resource_type == "job_gpu") {
                assert_eq!(l.charge_class, "usage");
                invoiced.insert((USERS[(inv.customer_id - 1) as usize].to_string(), l.gpu_model.clone().unwrap_or_default()), l.amount);
            }
        }
        let want: BTreeMap<(String, String), Decimal> = got("usage").into_iter().map(|(k, (_, a))| (k, a)).collect();
        assert_eq!(invoiced, want);
        let stray: i64 = c.query_one(
            "SELECT count(*) FROM billing_records WHERE NOT billed AND invoice_id IS NOT NULL", &[])
            .await.unwrap().get(0);
        assert_eq!(stray, 0);
        // The database refuses to invoice a report-only record, whoever asks.
        let refused = c.execute(
            "UPDATE billing_records SET invoice_id = $1 WHERE NOT billed", &[&cut.invoices[0]]).await;
        let e = refused.unwrap_err();
        let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
        assert!(msg.contains("report-only"), "{e:?}");
        // The month's report still shows the reported cluster's jobs.
        let rows = usage_report(&pool, &spec).await.expect("report after the invoice run");
        assert!(rows.iter().any(|r| r.charge_class == "report_only"));

        // A cluster turned off is no longer metered.
        c.execute("UPDATE dlworkspace_clusters SET billing = 'off'", &[]).await.unwrap();
        let n: i64 = c.query_one("SELECT count(*) FROM billing_history WHERE subject = 'job'", &[])
            .await.unwrap().get(0);
        assert_eq!(n, 0);
        for s in [billed, reported] {
            s.generator.drop_database().await.expect("drop");
        }
    }
}

both_backends! {
    async fn jobs_synced_behind_the_meter_are_billed_once_by_correction(db) {
        // The meter has run past the jobs' times before the sync saw the
        // rest of their lives (a sync that was down, a cluster added late).
        let now = Utc::now();
        let start = now - Duration::days(3);
        let mut s = setup(&db, TableVersion::Upstream, None, "-late").await;
        s.cluster.billing = JobBilling::Bill;
        let c = db.client().await;
        for (i, u) in USERS.iter().enumerate() {
            c.execute(
                "INSERT INTO customers (id, username, email, password_hash) VALUES ($1, $2, $3, 'x')",
                &[&(i as i64 + 1), u, &format!("{u}@example.com")],
            ).await.unwrap();
        }
        c.execute(
            "INSERT INTO billing_prices (resource_type, gpu_model, unit_price, currency, valid_from)
             VALUES ('job_gpu', '', 10, 'CNY', $1)",
            &[&(start - Duration::days(1))],
        ).await.unwrap();
        let opts = MeterOptions {
            grid: Grid::hourly(),
            lateness: Duration::minutes(5),
            max_periods: 24 * 10,
            default_currency: None,
        };
        s.generator.submit(30, start).await.expect("submit");
        let mut at = start;
        for _ in 0..4 {
            sync_once(&s.pool, &s.cluster).await.expect("sync");
            at += Duration::seconds(30);
            s.generator.step(at).await.expect("step");
        }
        sync_once(&s.pool, &s.cluster).await.expect("sync");
        let first = meter_until_caught_up(&s.pool, &opts, now).await.expect("meter");
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        let metered_at: DateTime<Utc> = c.query_one("SELECT now()", &[]).await.unwrap().get(0);
        // New jobs and the rest of the old ones' lives, all dated behind
        // the watermark.
        s.generator.submit(10, at).await.expect("submit more");
        run_to_the_end(&mut s, at).await;
        sync_once(&s.pool, &s.cluster).await.expect("last sync");
        // Every job with history written after the meter ran is queued,
        // the new ones (row and history in one statement) included.
        let (queued, changed): (i64, i64) = {
            let r = c.query_one(
                "SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM billing_recompute_queue q
                                                       WHERE q.env_id = 'job:' || t.id)),
                        count(*)
                 FROM training_jobs t WHERE t.cluster_id = $1 AND EXISTS (
                     SELECT 1 FROM training_job_status_history h
                     WHERE h.cluster_id = t.cluster_id AND h.job_id = t.job_id AND h.recorded_at > $2)",
                &[&s.cluster.id, &metered_at]).await.unwrap();
            (r.get(0), r.get(1))
        };
        assert!(changed >= 10, "{changed}");
        assert_eq!(queued, changed, "late job history queues recomputations");
        let late = meter_until_caught_up(&s.pool, &opts, now + Duration::minutes(1)).await.expect("meter");
        assert!(late.errors.is_empty(), "{:?}", late.errors);
        assert!(late.corrections > 0);
        let again = meter_until_caught_up(&s.pool, &opts, now + Duration::minutes(2)).await.expect("meter again");
        assert_eq!((again.records, again.corrections), (0, 0));

        // What counts (usage and corrections together) is the generator's
        // GPU-seconds exactly, per owner.
        let mut want: BTreeMap<String, i64> = BTreeMap::new();
        for ((owner, _), secs) in gpu_seconds(s.generator.log()) {
            *want.entry(owner).or_default() += secs;
        }
        want.retain(|_, v| *v > 0);
        let rows = c.query(
            "SELECT customer_id, sum(quantity * usage_seconds) FROM billing_records
             WHERE resource_type = 'job_gpu' GROUP BY 1 HAVING sum(quantity * usage_seconds) <> 0 ORDER BY 1",
            &[]).await.unwrap();
        let got: BTreeMap<String, i64> = rows.iter()
            .map(|r| {
                let secs: Decimal = r.get(1);
                (USERS[(r.get::<_, i64>(0) - 1) as usize].to_string(), i64::try_from(secs).unwrap())
            })
            .collect();
        assert_eq!(got, want);
        s.generator.drop_database().await.expect("drop");
    }
}
