//! Billing benchmark: a month of hourly billing records for many
//! environments — how long the meter takes to bill it and how long the
//! invoice run takes to cut the month's invoices.
//!
//! `cargo bench --bench billing [-- --envs N --days D --backend postgres|timescaledb --keep]`
//! (defaults: 10,000 environments, 1 day, plain PostgreSQL on
//! `DATABASE_URL`; `BILLING_BENCH_DAYS=31` or `--days 31` runs the issue's full
//! month, which takes minutes here). Every environment runs from the start
//! (CPU, memory, and a GPU for a third of them, of two models); one in ten
//! is resized and one in ten stopped halfway, so the meter splits periods.
//! The meter runs one transaction per day of periods, as in production.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use gpuwatch_billing::grid::Grid;
use gpuwatch_billing::invoice::InvoiceOptions;
use gpuwatch_billing::{cut_invoices, meter_until_caught_up, MeterOptions};
use gpuwatch_store::testing::{Kind, TestDb};

fn arg(name: &str, env: &str, default: i64) -> i64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .or_else(|| std::env::var(env).ok().and_then(|v| v.parse().ok()))
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn main() {
    let envs = arg("--envs", "BILLING_BENCH_ENVS", 10_000);
    let days = arg("--days", "BILLING_BENCH_DAYS", 1).min(31);
    let args: Vec<String> = std::env::args().collect();
    let kind = if args.iter().any(|a| a == "timescaledb") {
        Kind::TimescaleDb
    } else {
        Kind::Postgres
    };
    let keep = args.iter().any(|a| a == "--keep");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(bench(envs, days, kind, keep));
}

async fn bench(envs: i64, days: i64, kind: Kind, keep: bool) {
    let db = TestDb::new(kind).await;
    let cfg = db.store_config();
    gpuwatch_store::migrate(&cfg).await.expect("migrate");
    let pool = gpuwatch_store::connect(&cfg).await.expect("connect");
    let c = db.client().await;
    let start: DateTime<Utc> = "2026-10-01T00:00:00Z".parse().unwrap();
    let end = start + Duration::days(days);
    let half = start + Duration::seconds((end - start).num_seconds() / 2 + 1234);
    c.execute(
        "INSERT INTO customers (id, username, email, password_hash)
         SELECT i, 'c' || i, 'c' || i || '@example.com', 'x' FROM generate_series(1, 100) i",
        &[],
    )
    .await
    .unwrap();
    c.batch_execute(
        "INSERT INTO billing_prices (resource_type, gpu_model, unit_price, currency, valid_from) VALUES
           ('cpu', '', 0.05, 'CNY', '2026-01-01'), ('memory', '', 0.0123, 'CNY', '2026-01-01'),
           ('gpu', 'H100', 21.5, 'CNY', '2026-01-01'), ('gpu', 'T4', 3.25, 'CNY', '2026-01-01')",
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO environment_status_history (env_id, customer_id, workspace_id, status, cpu, memory, gpu, gpu_model, valid_from)
         SELECT 'env-' || i, 1 + i % 100, NULL::bigint, 'running', 1 + i % 16, (1 + i % 64)::bigint << 30,
                CASE WHEN i % 3 = 0 THEN 1 + i % 4 ELSE 0 END,
                CASE WHEN i % 2 = 0 THEN 'H100' ELSE 'T4' END, $1::timestamptz
         FROM generate_series(1, $3::int) i
         UNION ALL
         SELECT 'env-' || i, 1 + i % 100, NULL::bigint, CASE WHEN i % 20 < 2 THEN 'stopped' ELSE 'running' END,
                2 + i % 16, (1 + i % 64)::bigint << 30, CASE WHEN i % 3 = 0 THEN 1 + i % 4 ELSE 0 END,
                CASE WHEN i % 2 = 0 THEN 'H100' ELSE 'T4' END, $2::timestamptz
         FROM generate_series(1, $3::int) i WHERE i % 10 < 2",
        &[&start, &half, &(envs as i32)],
    )
    .await
    .unwrap();
    let opts = MeterOptions {
        grid: Grid::hourly(),
        lateness: Duration::minutes(5),
        max_periods: 24,
        default_currency: None,
    };

    let t0 = Instant::now();
    let m = meter_until_caught_up(&pool, &opts, end + Duration::minutes(6))
        .await
        .expect("meter");
    let meter_time = t0.elapsed();
    assert!(m.errors.is_empty(), "{:?}", m.errors);

    // Invoices are cut once the month has closed: pretend the remaining days
    // of October were idle (nothing metered there), and cut.
    let month_end: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap();
    c.execute(
        "UPDATE billing_meter_state SET watermark = greatest(watermark, $1)",
        &[&month_end],
    )
    .await
    .unwrap();
    let t1 = Instant::now();
    let inv = cut_invoices(
        &pool,
        &InvoiceOptions {
            grace: Duration::hours(6),
            auto_issue: true,
            due_days: 30,
        },
        month_end + Duration::hours(7),
    )
    .await
    .expect("invoices");
    let invoice_time = t1.elapsed();
    let total: rust_decimal::Decimal = c
        .query_one("SELECT sum(total) FROM invoices", &[])
        .await
        .unwrap()
        .get(0);

    let per_sec = m.records as f64 / meter_time.as_secs_f64();
    println!("billing bench ({kind:?}): {envs} environments x {days} days of hourly periods");
    println!(
        "  meter:    {} records in {:.2} s ({:.0} records/s)",
        m.records,
        meter_time.as_secs_f64(),
        per_sec
    );
    println!(
        "  invoices: {} invoices (total {total}) in {:.2} s",
        inv.invoices.len(),
        invoice_time.as_secs_f64()
    );
    if days < 31 {
        let month_records = m.records as f64 * 31.0 / days as f64;
        println!(
            "  a 31-day month at this rate: ~{:.0} records, meter ~{:.0} s, invoices ~{:.0} s (goal: meter < 10 s); run with --days 31 to measure it",
            month_records,
            month_records / per_sec,
            invoice_time.as_secs_f64() * 31.0 / days as f64
        );
    }
    if keep {
        println!("  kept: {}", db.url);
        std::mem::forget(db);
    }
}
