//! Quantities and prices as finance reads them: one rounding rule for
//! quantities (6 decimals, half away from zero), report rows that add up to
//! their invoice line exactly, unit prices written alike in JSON, CSV and
//! text, and a line across a price change showing its price segments.

use super::common::*;
use chrono::{DateTime, Duration, Utc};
use gpuwatch_billing::format::ReportFormat;
use gpuwatch_billing::invoice::{render, InvoiceOptions};
use gpuwatch_billing::{
    cut_invoices, get_invoice, meter_until_caught_up, to_csv, usage_report, UsageQuery,
};
use gpuwatch_store::both_backends;
use gpuwatch_store::testing::TestDb;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// One environment's changes: (seconds into October, cores, memory bytes, running).
type EnvHistory = Vec<(i64, i32, i64, bool)>;

fn histories() -> impl Strategy<Value = Vec<(i64, EnvHistory)>> {
    let month = 31 * 86_400i64;
    let change = (0..month, 1..64i32, 1..(64 * GIB), any::<bool>());
    prop::collection::vec((1..=3i64, prop::collection::vec(change, 1..6)), 2..9)
}

/// Core-seconds of one environment in October, straight from its history.
fn core_seconds(h: &EnvHistory) -> i64 {
    let mut h = h.clone();
    h.sort_by_key(|c| c.0); // stable: of two changes in one second the later counts
    let month = 31 * 86_400i64;
    h.iter()
        .enumerate()
        .map(|(i, &(at, cpu, _, running))| {
            let next = h.get(i + 1).map_or(month, |n| n.0);
            if running {
                i64::from(cpu) * (next - at)
            } else {
                0
            }
        })
        .sum()
}

/// x / 3600 to 6 decimals, half away from zero, in integers (x >= 0).
fn round6(x: i64) -> Decimal {
    let micro = (i128::from(x) * 1_000_000 * 2 + 3600) / 7200;
    Decimal::from_i128_with_scale(micro, 6)
}

async fn check_case(
    kind: gpuwatch_store::testing::Kind,
    envs: Vec<(i64, EnvHistory)>,
) -> Result<(), String> {
    let db = TestDb::new(kind).await;
    let (pool, c) = setup(&db).await;
    // The cpu price changes on the 15th: cpu lines of running environments span two prices.
    price(
        &c,
        "cpu",
        "",
        "0.05",
        "CNY",
        "2026-01-01T00:00:00Z",
        Some("2026-10-15T00:00:00Z"),
    )
    .await;
    price(&c, "cpu", "", "0.0625", "CNY", "2026-10-15T00:00:00Z", None).await;
    price(
        &c,
        "memory",
        "",
        "0.01",
        "CNY",
        "2026-01-01T00:00:00Z",
        None,
    )
    .await;
    let oct: DateTime<Utc> = t("2026-10-01T00:00:00Z");
    let mut want: BTreeMap<i64, i64> = BTreeMap::new();
    for (i, (customer, h)) in envs.iter().enumerate() {
        let mut sorted = h.clone();
        sorted.sort_by_key(|c| c.0);
        for &(at, cpu, memory, running) in &sorted {
            let ch = Change {
                env: format!("env-{i}"),
                customer: *customer,
                workspace: Some(10 * customer + 1 + (i as i64 % 2)),
                status: if running { "running" } else { "stopped" },
                cpu,
                memory,
                gpu: 0,
                model: None,
                at: oct + Duration::seconds(at),
            };
            record(&c, &ch).await;
        }
        *want.entry(*customer).or_default() += core_seconds(h);
    }
    let m = meter_until_caught_up(&pool, &hourly(), t("2026-11-01T06:00:00Z"))
        .await
        .unwrap();
    if !m.errors.is_empty() {
        return Err(format!("meter errors: {:?}", m.errors));
    }
    let opts = InvoiceOptions {
        grace: Duration::hours(6),
        auto_issue: true,
        due_days: 30,
    };
    let cut = cut_invoices(&pool, &opts, t("2026-11-01T07:00:00Z"))
        .await
        .unwrap();
    let q = UsageQuery {
        month: Some("2026-10".into()),
        group_by: Some("environment".into()),
        ..Default::default()
    };
    let rows = usage_report(&pool, &q.validate().unwrap()).await.unwrap();
    for id in cut.invoices {
        let inv = get_invoice(&pool, id).await.unwrap();
        for l in &inv.lines {
            let summed: Decimal = rows
                .iter()
                .filter(|r| {
                    r.invoice_id == Some(id)
                        && r.resource_type == l.resource_type
                        && r.charge_class == l.charge_class
                })
                .map(|r| r.quantity)
                .sum();
            if summed != l.quantity {
                return Err(format!(
                    "{} {}: line {} but rows sum to {summed}",
                    inv.invoice_number, l.resource_type, l.quantity
                ));
            }
            if !l.price_segments.is_empty() {
                let seg: Decimal = l.price_segments.iter().map(|s| s.quantity).sum();
                if seg != l.quantity {
                    return Err(format!(
                        "{} {}: segments sum to {seg}, line {}",
                        inv.invoice_number, l.resource_type, l.quantity
                    ));
                }
            }
            if l.resource_type == "cpu" {
                let expected = round6(want[&inv.customer_id]);
                if l.quantity != expected {
                    return Err(format!(
                        "{}: cpu line {} but the history says {expected}",
                        inv.invoice_number, l.quantity
                    ));
                }
            }
        }
    }
    Ok(())
}

both_backends! {
    async fn report_quantities_add_up_to_their_line_exactly(db) {
        // Each case gets a database of its own, of the backend under test.
        let kind = db.kind;
        drop(db);
        let mut runner = TestRunner::new(PropConfig { cases: 6, failure_persistence: None, ..PropConfig::default() });
        let handle = tokio::runtime::Handle::current();
        runner
            .run(&histories(), |envs| {
                let r = tokio::task::block_in_place(|| handle.block_on(check_case(kind, envs)));
                prop_assert!(r.is_ok(), "{}", r.unwrap_err());
                Ok(())
            })
            .unwrap();
    }
}

both_backends! {
    async fn unit_prices_read_alike_in_every_format_and_a_price_change_shows_its_segments(db) {
        let (pool, c) = setup(&db).await;
        price(&c, "cpu", "", "0.05", "CNY", "2026-01-01T00:00:00Z", Some("2026-10-31T12:00:00Z")).await;
        price(&c, "cpu", "", "0.0625", "CNY", "2026-10-31T12:00:00Z", None).await;
        price(&c, "memory", "", "0.01", "CNY", "2026-01-01T00:00:00Z", None).await;
        record(&c, &running("env-1", 1, 3, 0, None, "2026-10-31T10:00:00Z")).await;
        meter_until_caught_up(&pool, &hourly(), t("2026-11-01T06:10:00Z")).await.unwrap();
        let opts = InvoiceOptions { grace: Duration::hours(6), auto_issue: true, due_days: 30 };
        let id = cut_invoices(&pool, &opts, t("2026-11-01T07:00:00Z")).await.unwrap().invoices[0];
        let inv = get_invoice(&pool, id).await.unwrap();
        let cpu = inv.lines.iter().find(|l| l.resource_type == "cpu").unwrap();
        assert_eq!(cpu.quantity, d("42.000000"), "3 cores x 14 h");
        assert_eq!(cpu.unit_price, None);
        let segs: Vec<(String, Decimal)> = cpu.price_segments.iter().map(|s| (s.unit_price.normalize().to_string(), s.quantity)).collect();
        assert_eq!(segs, [("0.05".to_string(), d("6.000000")), ("0.0625".to_string(), d("36.000000"))]);

        let json = serde_json::to_value(&inv).unwrap();
        let line = json["lines"].as_array().unwrap().iter().find(|l| l["resource_type"] == "cpu").unwrap();
        assert_eq!(line["price_segments"][0]["unit_price"], "0.05", "{line}");
        assert_eq!(line["price_segments"][1]["unit_price"], "0.0625", "{line}");
        let mem = json["lines"].as_array().unwrap().iter().find(|l| l["resource_type"] == "memory").unwrap();
        assert_eq!(mem["unit_price"], "0.01", "{mem}");
        assert!(mem.get("price_segments").is_none(), "one price, no segments: {mem}");

        let want = "0.05 x 6.000000 (2026-10-31 10:00..2026-10-31 12:00); 0.0625 x 36.000000 (2026-10-31 12:00..2026-11-01 00:00)";
        let csv = render(std::slice::from_ref(&inv), ReportFormat::Csv);
        assert!(csv.contains(&format!(",42.000000,core-hour,{want},")), "{csv}");
        assert!(csv.contains(",GiB-hour,0.01,"), "{csv}");
        let text = render(std::slice::from_ref(&inv), ReportFormat::Text);
        assert!(text.contains(&format!("at {want}\n")), "{text}");
        assert!(text.contains("at 0.01\n"), "{text}");

        let q = UsageQuery { month: Some("2026-10".into()), ..Default::default() };
        let rows = usage_report(&pool, &q.validate().unwrap()).await.unwrap();
        let mem_row = rows.iter().find(|r| r.resource_type == "memory").unwrap();
        assert_eq!(serde_json::to_value(mem_row).unwrap()["unit_price"], "0.01");
        assert!(to_csv(&rows).contains(",GiB-hour,0.01,"), "{}", to_csv(&rows));
    }
}
