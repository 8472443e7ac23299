//! Invoices: the lifecycle and its rules, immutability once issued, a late
//! change landing as a correction on the next invoice, reports as CSV/JSON,
//! and the quota view with its default alert rule.

use super::common::*;
use chrono::Duration;
use gpuwatch_billing::invoice::InvoiceOptions;
use gpuwatch_billing::{
    cut_invoices, get_invoice, meter_until_caught_up, to_csv, transition, usage_report,
    BillingError, Transition, UsageQuery,
};
use gpuwatch_store::both_backends;

fn drafts() -> InvoiceOptions {
    InvoiceOptions {
        grace: Duration::hours(6),
        auto_issue: false,
        due_days: 30,
    }
}

async fn october(c: &tokio_postgres::Client, pool: &gpuwatch_store::Pool) {
    standard_prices(c).await;
    record(
        c,
        &running("env-1", 1, 4, 1, Some("H100"), "2026-10-31T20:00:00Z"),
    )
    .await;
    record(c, &running("env-2", 2, 2, 0, None, "2026-10-31T22:00:00Z")).await;
    let r = meter_until_caught_up(pool, &hourly(), t("2026-11-01T06:10:00Z"))
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

both_backends! {
    async fn an_invoice_goes_draft_issued_paid_and_never_changes_once_issued(db) {
        let (pool, c) = setup(&db).await;
        october(&c, &pool).await;
        // Before the grace period is over, nothing is cut.
        assert!(cut_invoices(&pool, &drafts(), t("2026-11-01T05:00:00Z")).await.unwrap().invoices.is_empty());
        let cut = cut_invoices(&pool, &drafts(), t("2026-11-01T07:00:00Z")).await.unwrap();
        assert_eq!(cut.invoices.len(), 2);
        assert!(cut_invoices(&pool, &drafts(), t("2026-11-01T08:00:00Z")).await.unwrap().invoices.is_empty(), "a second run cuts nothing");
        let id = cut.invoices[0];
        let inv = get_invoice(&pool, id).await.unwrap();
        assert_eq!((inv.customer_id, inv.status.as_str(), inv.invoice_number.as_str()), (1, "draft", "INV-202610-1-CNY"));
        // 4 h x (4 cores x 0.05 + 8 GiB x 0.01 + 1 H100 x 20) = 81.12
        assert_eq!(inv.total, d("81.12"));
        assert_eq!(inv.total_display, "¥81.12");
        let amounts: Vec<_> = inv.lines.iter().map(|l| (l.resource_type.as_str(), l.gpu_model.as_deref(), l.amount)).collect();
        assert_eq!(amounts, vec![("cpu", None, d("0.80")), ("gpu", Some("H100"), d("80.00")), ("memory", None, d("0.32"))]);

        let now = t("2026-11-02T00:00:00Z");
        let conflict = |r: Result<_, BillingError>| match r {
            Err(BillingError::Conflict(m)) => m,
            other => panic!("expected a conflict, got {other:?}"),
        };
        assert!(conflict(transition(&pool, id, Transition::Pay, now, 30).await).contains("only an issued invoice can be paid"));
        let issued = transition(&pool, id, Transition::Issue, now, 30).await.unwrap();
        assert_eq!((issued.status.as_str(), issued.due_at), ("issued", Some(now + Duration::days(30))));
        assert!(conflict(transition(&pool, id, Transition::Issue, now, 30).await).contains("is issued"));
        for sql in [
            "UPDATE invoices SET total = total + 1, subtotal = subtotal + 1 WHERE id = $1",
            "UPDATE invoices SET lines = '[]', subtotal = 0, total = 0 WHERE id = $1",
            "DELETE FROM invoices WHERE id = $1",
            "UPDATE invoices SET status = 'draft' WHERE id = $1",
        ] {
            let e = c.execute(sql, &[&id]).await.unwrap_err();
            assert!(e.as_db_error().is_some(), "{sql}: {e}");
        }
        let e = c.execute("UPDATE billing_records SET invoice_id = NULL WHERE invoice_id = $1", &[&id]).await.unwrap_err();
        assert!(e.to_string().contains("cannot move") || e.as_db_error().unwrap().message().contains("cannot move"), "{e}");
        let paid = transition(&pool, id, Transition::Pay, now, 30).await.unwrap();
        assert_eq!(paid.status, "paid");
        assert_eq!(paid.total, inv.total);
        assert_eq!(paid.lines, inv.lines);
        assert!(conflict(transition(&pool, id, Transition::Void, now, 30).await).contains("is paid"));
        assert!(matches!(transition(&pool, 999_999, Transition::Pay, now, 30).await, Err(BillingError::NotFound(_))));

        // Voiding a draft releases its records to the next invoice.
        let other = cut.invoices[1];
        transition(&pool, other, Transition::Void, now, 30).await.unwrap();
        assert_eq!(count(&c, "SELECT count(*) FROM billing_records WHERE customer_id = 2 AND invoice_id IS NULL AND start_time < '2026-11-01'").await, 4);
    }
}

both_backends! {
    async fn a_late_change_after_issue_becomes_a_correction_on_the_next_invoice(db) {
        let (pool, c) = setup(&db).await;
        october(&c, &pool).await;
        let issue = InvoiceOptions { auto_issue: true, ..drafts() };
        let oct = cut_invoices(&pool, &issue, t("2026-11-01T07:00:00Z")).await.unwrap().invoices;
        let before = get_invoice(&pool, oct[0]).await.unwrap();
        // env-1 really stopped at 22:30 on October 31st; we hear of it now.
        let mut stop = running("env-1", 1, 4, 1, Some("H100"), "2026-10-31T22:30:00Z");
        stop.status = "stopped";
        record(&c, &stop).await;
        let r = meter_until_caught_up(&pool, &hourly(), t("2026-12-01T06:10:00Z")).await.unwrap();
        assert!(r.corrections > 0);
        let after = get_invoice(&pool, oct[0]).await.unwrap();
        assert_eq!((after.total, after.lines.clone(), after.status.clone()), (before.total, before.lines.clone(), before.status.clone()), "issued invoice changed");
        let nov = cut_invoices(&pool, &issue, t("2026-12-01T07:00:00Z")).await.unwrap().invoices;
        let mut found = None;
        for &i in &nov {
            let inv = get_invoice(&pool, i).await.unwrap();
            if inv.customer_id == 1 {
                found = Some(inv);
            }
        }
        let inv = found.expect("customer 1 has a November invoice");
        // Billed 20:00-06:00 at 20.28 an hour (0.2 + 0.08 + 20); 22:30-06:00
        // is taken back as a correction (-152.10), against November's
        // usage 00:00-06:00 (121.68) on the same invoice.
        let correction: rust_decimal::Decimal = inv.lines.iter().filter(|l| l.charge_class == "correction").map(|l| l.amount).sum();
        assert_eq!(correction, d("-152.10"));
        assert_eq!(inv.total, d("-30.42"));
    }
}

both_backends! {
    async fn reports_render_csv_and_json_with_money_as_strings(db) {
        let (pool, c) = setup(&db).await;
        october(&c, &pool).await;
        let q = UsageQuery { month: Some("2026-10".into()), group_by: Some("environment".into()), ..Default::default() };
        let rows = usage_report(&pool, &q.validate().unwrap()).await.unwrap();
        assert_eq!(rows.len(), 5, "env-1: cpu, gpu, memory; env-2: cpu, memory");
        let json = serde_json::to_value(&rows).unwrap();
        assert!(json[0]["amount"].is_string(), "{json}");
        assert_eq!(json[0]["amount_display"].as_str().unwrap().chars().next(), Some('¥'));
        let csv = to_csv(&rows);
        assert_eq!(csv.lines().count(), 6);
        assert!(csv.starts_with("period_start,period_end,customer_id,workspace_id,env_id,resource_type"));
        // 2 cores x 2 h at 0.05, not invoiced yet.
        assert!(csv.contains(",2,21,env-2,cpu,,4.000000,core-hour,0.05,0.20,CNY,,usage,\n"), "{csv}");
        let bad = UsageQuery { month: Some("2026-13".into()), ..Default::default() };
        assert!(matches!(bad.validate(), Err(BillingError::Invalid(v)) if v[0].starts_with("month:")));
    }
}

both_backends! {
    async fn the_quota_view_feeds_the_default_alert_rule(db) {
        let (_pool, c) = setup(&db).await;
        c.batch_execute(
            "INSERT INTO resource_quotas (customer_id, max_cpu, max_gpu, max_environments) VALUES (1, 10, 4, NULL);
             INSERT INTO environments (id, customer_id, host_id, name, image, status, cpu, memory, gpu, gpu_model) VALUES
               ('q1', 1, 'h1', 'q1', 'img', 'running', 4, 1073741824, 2, 'H100'),
               ('q2', 1, 'h1', 'q2', 'img', 'running', 4, 1073741824, 2, 'H100'),
               ('q3', 1, 'h1', 'q3', 'img', 'stopped', 8, 1073741824, 4, 'H100');",
        )
        .await
        .unwrap();
        let rows = c
            .query("SELECT resource_type, used, quota_limit, used_pct FROM gpuwatch_quota_usage WHERE customer_id = 1 ORDER BY 1", &[])
            .await
            .unwrap();
        let got: Vec<(String, rust_decimal::Decimal)> = rows.iter().map(|r| (r.get(0), r.get(3))).collect();
        assert_eq!(got, vec![("cpu".to_string(), d("80")), ("gpu".to_string(), d("100"))], "memory and environments have no quota");
        let rule = c
            .query_one("SELECT comparison, threshold, enabled FROM alert_rules WHERE metric = 'quota.used_pct' AND deleted_at IS NULL", &[])
            .await
            .unwrap();
        assert_eq!((rule.get::<_, String>(0), rule.get::<_, f64>(1), rule.get::<_, bool>(2)), (">=".into(), 90.0, true));
    }
}
