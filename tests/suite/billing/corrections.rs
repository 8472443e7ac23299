//! Corrections of months already invoiced, as finance sees them: they go on
//! the customer's next regular invoice, or on a credit note when there is
//! none; the issued invoice and the invoiced month's report never change.

use super::common::*;
use chrono::Duration;
use gpuwatch_billing::invoice::InvoiceOptions;
use gpuwatch_billing::{
    cut_invoices, get_invoice, list_invoices, meter_until_caught_up, to_csv, usage_report, Invoice,
    InvoiceQuery, UsageQuery,
};
use gpuwatch_store::both_backends;
use gpuwatch_store::testing::TestDb;
use gpuwatch_store::Pool;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use rust_decimal::Decimal;

fn issue() -> InvoiceOptions {
    InvoiceOptions {
        grace: Duration::hours(6),
        auto_issue: true,
        due_days: 30,
    }
}

async fn documents(pool: &Pool, customer: i64) -> Vec<Invoice> {
    let q = InvoiceQuery {
        customer_id: Some(customer),
        limit: Some(1000),
        ..Default::default()
    };
    let mut v = list_invoices(pool, &q).await.unwrap().items;
    v.sort_by_key(|i| i.id);
    v
}

/// The month's report as finance keeps it: JSON and CSV, by environment.
async fn report(pool: &Pool, month: &str) -> (String, String) {
    let q = UsageQuery {
        month: Some(month.into()),
        group_by: Some("environment".into()),
        ..Default::default()
    };
    let rows = usage_report(pool, &q.validate().unwrap()).await.unwrap();
    (serde_json::to_string(&rows).unwrap(), to_csv(&rows))
}

async fn stop(c: &tokio_postgres::Client, env: &str, customer: i64, cpu: i32, at: &str) {
    let mut ch = running(env, customer, cpu, 0, None, at);
    ch.status = "stopped";
    record(c, &ch).await;
}

both_backends! {
    async fn a_late_change_to_august_goes_on_the_next_regular_invoice_or_a_credit_note(db) {
        let (pool, c) = setup(&db).await;
        standard_prices(&c).await;
        // Customer 1 uses August only; customer 2 runs from August 20th on.
        record(&c, &running("env-a", 1, 2, 0, None, "2026-08-10T00:00:00Z")).await;
        stop(&c, "env-a", 1, 2, "2026-08-12T00:00:00Z").await;
        record(&c, &running("env-b", 2, 1, 0, None, "2026-08-20T00:00:00Z")).await;
        meter_until_caught_up(&pool, &hourly(), t("2026-09-01T06:10:00Z")).await.unwrap();
        let aug = cut_invoices(&pool, &issue(), t("2026-09-01T07:00:00Z")).await.unwrap().invoices;
        assert_eq!(aug.len(), 2);
        let aug_invoice = serde_json::to_string(&get_invoice(&pool, aug[0]).await.unwrap()).unwrap();
        let aug_report = report(&pool, "2026-08").await;

        // Learnt in September: env-a really stopped at noon on the 11th
        // (12 h less: 2 cores x 0.05 + 8 GiB x 0.01 an hour = 2.16 back),
        // and env-b had 3 cores from the 25th (7 days x 2 cores x 0.05 = 16.80
        // more for August, 0.60 for the six hours of September already metered).
        stop(&c, "env-a", 1, 2, "2026-08-11T12:00:00Z").await;
        record(&c, &running("env-b", 2, 3, 0, None, "2026-08-25T00:00:00Z")).await;
        meter_until_caught_up(&pool, &hourly(), t("2026-11-01T06:10:00Z")).await.unwrap();
        assert_eq!(report(&pool, "2026-08").await, aug_report, "August was invoiced: its report never changes");

        // One run cuts September and October.
        cut_invoices(&pool, &issue(), t("2026-11-01T07:00:00Z")).await.unwrap();
        assert_eq!(serde_json::to_string(&get_invoice(&pool, aug[0]).await.unwrap()).unwrap(), aug_invoice, "issued invoice changed");
        assert_eq!(report(&pool, "2026-08").await, aug_report, "August's report changed");

        let docs1 = documents(&pool, 1).await;
        assert_eq!(docs1.len(), 2, "August's invoice and one credit note: {docs1:#?}");
        let cn = &docs1[1];
        assert_eq!(cn.document_type, "credit_note");
        assert!(cn.invoice_number.starts_with("CN-202610-"), "{}", cn.invoice_number);
        assert_eq!(cn.total, d("-2.16"));
        assert_eq!((cn.status.as_str(), cn.due_at), ("issued", None), "a credit note is never due");
        assert_eq!(cn.period_start, t("2026-10-01T00:00:00Z"));

        let docs2 = documents(&pool, 2).await;
        assert_eq!(docs2.iter().map(|i| i.document_type.as_str()).collect::<Vec<_>>(), ["invoice"; 3]);
        let sep = docs2.iter().find(|i| i.period_start == t("2026-09-01T00:00:00Z")).unwrap();
        let corr: Decimal = sep.lines.iter().filter(|l| l.charge_class == "correction").map(|l| l.amount).sum();
        assert_eq!(corr, d("17.40"), "the next regular invoice carries the correction: {sep:#?}");
        let oct = docs2.iter().find(|i| i.period_start == t("2026-10-01T00:00:00Z")).unwrap();
        assert!(oct.lines.iter().all(|l| l.charge_class == "usage"), "{oct:#?}");
        assert!(oct.due_at.is_some());

        // The months that carry corrections show them, marked with August.
        let q = UsageQuery { month: Some("2026-09".into()), customer_id: Some(2), ..Default::default() };
        let sep_rows = usage_report(&pool, &q.validate().unwrap()).await.unwrap();
        let marked: Decimal = sep_rows.iter().filter(|r| r.corrects_period.as_deref() == Some("2026-08")).map(|r| r.amount).sum();
        assert_eq!(marked, d("16.80"), "{sep_rows:#?}");
        let q = UsageQuery { month: Some("2026-10".into()), customer_id: Some(1), ..Default::default() };
        let oct_rows = usage_report(&pool, &q.validate().unwrap()).await.unwrap();
        assert!(!oct_rows.is_empty() && oct_rows.iter().all(|r| r.corrects_period.as_deref() == Some("2026-08") && r.invoice_id == Some(cn.id)), "{oct_rows:#?}");
        assert_eq!(oct_rows.iter().map(|r| r.amount).sum::<Decimal>(), d("-2.16"));
    }
}

/// Cents of x / 3600 cents, half away from zero (x >= 0).
fn round_cents(x: i64) -> i64 {
    (2 * x + 3600) / 7200
}

/// Customers with August usage only: (cores, start hour, stop second, seconds taken back).
fn cases() -> impl Strategy<Value = Vec<(i32, i64, i64, i64)>> {
    prop::collection::vec(
        (
            1..16i32,
            0..(14 * 24i64),
            (15 * 86_400)..(30 * 86_400i64),
            1..86_400i64,
        ),
        1..4,
    )
}

async fn credit_note_case(
    kind: gpuwatch_store::testing::Kind,
    cases: Vec<(i32, i64, i64, i64)>,
) -> Result<(), String> {
    let db = TestDb::new(kind).await;
    let (pool, c) = setup(&db).await;
    standard_prices(&c).await;
    let aug = t("2026-08-01T00:00:00Z");
    for (i, &(cpu, hour, stop_at, _)) in cases.iter().enumerate() {
        let customer = i as i64 + 1;
        let mut ch = running(
            &format!("env-{customer}"),
            customer,
            cpu,
            0,
            None,
            "2026-08-01T00:00:00Z",
        );
        ch.at = aug + Duration::hours(hour);
        record(&c, &ch).await;
        ch.status = "stopped";
        ch.at = aug + Duration::seconds(stop_at);
        record(&c, &ch).await;
    }
    meter_until_caught_up(&pool, &hourly(), t("2026-09-01T06:10:00Z"))
        .await
        .unwrap();
    let first = cut_invoices(&pool, &issue(), t("2026-09-01T07:00:00Z"))
        .await
        .unwrap()
        .invoices;
    let mut before = Vec::new();
    for id in &first {
        before.push(serde_json::to_string(&get_invoice(&pool, *id).await.unwrap()).unwrap());
    }
    for (i, &(cpu, _, stop_at, back)) in cases.iter().enumerate() {
        let customer = i as i64 + 1;
        let mut ch = running(
            &format!("env-{customer}"),
            customer,
            cpu,
            0,
            None,
            "2026-08-01T00:00:00Z",
        );
        ch.status = "stopped";
        ch.at = aug + Duration::seconds(stop_at - back);
        record(&c, &ch).await;
    }
    meter_until_caught_up(&pool, &hourly(), t("2026-10-01T06:10:00Z"))
        .await
        .unwrap();
    cut_invoices(&pool, &issue(), t("2026-10-01T07:00:00Z"))
        .await
        .unwrap();
    for (id, b) in first.iter().zip(&before) {
        if &serde_json::to_string(&get_invoice(&pool, *id).await.unwrap()).unwrap() != b {
            return Err(format!("invoice {id} changed"));
        }
    }
    let mut numbers = Vec::new();
    for (i, &(cpu, _, _, back)) in cases.iter().enumerate() {
        let customer = i as i64 + 1;
        let docs = documents(&pool, customer).await;
        let notes: Vec<&Invoice> = docs
            .iter()
            .filter(|d| d.document_type == "credit_note")
            .collect();
        // cpu: cores x 0.05 an hour = 5 cents; memory: 8 GiB x 0.01 = 8 cents.
        let cents = round_cents(i64::from(cpu) * 5 * back) + round_cents(8 * back);
        let want = -Decimal::new(cents, 2);
        match notes.as_slice() {
            [] if cents == 0 => {}
            [n] if n.total == want && n.due_at.is_none() && n.invoice_number.starts_with("CN-") && docs.len() == 2 => {
                numbers.push(n.invoice_number.clone())
            }
            other => return Err(format!("customer {customer}: want one credit note of {want}, got {other:#?} among {docs:#?}")),
        }
    }
    let issued = numbers.len();
    numbers.sort();
    numbers.dedup();
    if numbers.len() != issued {
        return Err(format!("credit note numbers repeat: {numbers:?}"));
    }
    Ok(())
}

both_backends! {
    async fn credit_notes_give_back_exactly_what_the_late_change_takes_off(db) {
        // Each case gets a database of its own, of the backend under test.
        let kind = db.kind;
        drop(db);
        let mut runner = TestRunner::new(PropConfig { cases: 5, failure_persistence: None, ..PropConfig::default() });
        let handle = tokio::runtime::Handle::current();
        runner
            .run(&cases(), |cases| {
                let r = tokio::task::block_in_place(|| handle.block_on(credit_note_case(kind, cases)));
                prop_assert!(r.is_ok(), "{}", r.unwrap_err());
                Ok(())
            })
            .unwrap();
    }
}
