//! Shared fixtures of the billing tests: a migrated database with customers,
//! workspaces, a host, and helpers to write history and prices as a control
//! plane would.
#![allow(dead_code)]

use chrono::{DateTime, Duration, Utc};
use gpuwatch_billing::grid::Grid;
use gpuwatch_billing::MeterOptions;
use gpuwatch_store::testing::TestDb;
use gpuwatch_store::Pool;
use rust_decimal::Decimal;
use std::str::FromStr;

pub const GIB: i64 = 1 << 30;
pub const MIB: i64 = 1 << 20;

pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// Migrates, adds customers 1..=3 (two workspaces each: 10c+1, 10c+2 by
/// position) and host h1. Returns the pool and a client.
pub async fn setup(db: &TestDb) -> (Pool, tokio_postgres::Client) {
    let cfg = db.store_config();
    gpuwatch_store::migrate(&cfg).await.expect("migrate");
    let pool = gpuwatch_store::connect(&cfg).await.expect("connect");
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO customers (id, username, email, password_hash)
             SELECT i, 'c' || i, 'c' || i || '@example.com', 'x' FROM generate_series(1, 3) i;
         INSERT INTO workspaces (id, owner_id, name)
             SELECT 10 * c + w, c, 'ws' || w FROM generate_series(1, 3) c, generate_series(1, 2) w;
         INSERT INTO hosts (id, name, ip_address, os_type, total_cpu, total_memory)
             VALUES ('h1', 'h1', '10.0.0.1', 'linux', 64, 549755813888);",
    )
    .await
    .unwrap();
    (pool, c)
}

/// Hourly grid, 5 minutes lateness, up to 40 days per transaction.
pub fn hourly() -> MeterOptions {
    MeterOptions {
        grid: Grid::hourly(),
        lateness: Duration::minutes(5),
        max_periods: 24 * 40,
        default_currency: None,
    }
}

pub async fn price(
    c: &tokio_postgres::Client,
    resource: &str,
    model: &str,
    unit_price: &str,
    currency: &str,
    from: &str,
    to: Option<&str>,
) {
    c.execute(
        "INSERT INTO billing_prices (resource_type, gpu_model, unit_price, currency, valid_from, valid_to)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&resource, &model, &d(unit_price), &currency, &t(from), &to.map(t)],
    )
    .await
    .unwrap();
}

/// One status-history row, as a control plane reporting a change writes it.
#[derive(Debug, Clone)]
pub struct Change {
    pub env: String,
    pub customer: i64,
    pub workspace: Option<i64>,
    pub status: &'static str,
    pub cpu: i32,
    pub memory: i64,
    pub gpu: i32,
    pub model: Option<String>,
    pub at: DateTime<Utc>,
}

pub async fn record(c: &tokio_postgres::Client, ch: &Change) {
    c.execute(
        "INSERT INTO environment_status_history
             (env_id, customer_id, workspace_id, status, cpu, memory, gpu, gpu_model, valid_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &ch.env,
            &ch.customer,
            &ch.workspace,
            &ch.status,
            &ch.cpu,
            &ch.memory,
            &ch.gpu,
            &ch.model,
            &ch.at,
        ],
    )
    .await
    .unwrap();
}

pub fn running(
    env: &str,
    customer: i64,
    cpu: i32,
    gpu: i32,
    model: Option<&str>,
    at: &str,
) -> Change {
    Change {
        env: env.into(),
        customer,
        workspace: Some(10 * customer + 1),
        status: "running",
        cpu,
        memory: 8 * GIB,
        gpu,
        model: model.map(String::from),
        at: t(at),
    }
}

/// The standard price list: cpu 0.05/core-hour, memory 0.01/GiB-hour,
/// H100 20/GPU-hour, T4 3.5/GPU-hour, all CNY from 2026-01-01.
pub async fn standard_prices(c: &tokio_postgres::Client) {
    price(c, "cpu", "", "0.05", "CNY", "2026-01-01T00:00:00Z", None).await;
    price(c, "memory", "", "0.01", "CNY", "2026-01-01T00:00:00Z", None).await;
    price(c, "gpu", "H100", "20", "CNY", "2026-01-01T00:00:00Z", None).await;
    price(c, "gpu", "T4", "3.5", "CNY", "2026-01-01T00:00:00Z", None).await;
}

pub async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}
