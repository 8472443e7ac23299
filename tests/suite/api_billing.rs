//! The finance routes against a real server and database: only finance and
//! admin may read money; the usage report (JSON and CSV) sums exactly to
//! the month's invoices; invoice transitions follow draft → issued → paid
//! and refuse the rest with 409; bad input is a 400 that names the field.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use gpuwatch_api::ApiConfig;
use gpuwatch_billing::grid::Grid;
use gpuwatch_billing::invoice::InvoiceOptions;
use gpuwatch_billing::MeterOptions;
use gpuwatch_store::both_backends;
use gpuwatch_store::testing::TestDb;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::common::ApiClient as Server;

async fn start(db: &TestDb) -> Server {
    Server::start(db, ApiConfig::default()).await
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(
        v.as_str()
            .unwrap_or_else(|| panic!("money is a string: {v}")),
    )
    .unwrap()
}

/// Two customers' environments running into the end of October 2026,
/// priced through the API, metered and cut as drafts.
async fn october(s: &Server, finance: &str) -> Vec<i64> {
    for (resource, model, price) in [
        ("cpu", None, "0.05"),
        ("memory", None, "0.01"),
        ("gpu", Some("H100"), "20"),
        ("gpu", Some("T4"), "3.5"),
    ] {
        let (st, body) = s
            .send(
                Method::POST,
                "/api/v1/prices",
                finance,
                Some(json!({
                    "resource_type": resource, "gpu_model": model, "unit_price": price,
                    "currency": "CNY", "valid_from": "2026-01-01T00:00:00Z"
                })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        assert_eq!(
            dec(&body["unit_price"]),
            Decimal::from_str(price).unwrap(),
            "prices come back as exact decimal strings"
        );
    }
    let c = s.pool.get().await.unwrap();
    c.batch_execute(
        "INSERT INTO customers (id, username, email, password_hash) VALUES (1, 'c1', 'c1@example.com', 'x'), (2, 'c2', 'c2@example.com', 'x');
         INSERT INTO workspaces (id, owner_id, name) VALUES (11, 1, 'ws1'), (12, 1, 'ws2'), (21, 2, 'ws1');
         INSERT INTO environment_status_history (env_id, customer_id, workspace_id, status, cpu, memory, gpu, gpu_model, valid_from) VALUES
           ('env-1', 1, 11, 'running', 4, 8589934592, 1, 'H100', '2026-10-31T20:00:00Z'),
           ('env-2', 1, 12, 'running', 3, 8589934592, 1, 'T4', '2026-10-31T21:17:13Z'),
           ('env-3', 2, 21, 'running', 2, 8589934592, 0, NULL, '2026-10-31T22:00:00Z');",
    ).await.unwrap();
    let meter = MeterOptions {
        grid: Grid::hourly(),
        lateness: Duration::minutes(5),
        max_periods: 24 * 40,
        default_currency: None,
    };
    let r = gpuwatch_billing::meter_until_caught_up(&s.pool, &meter, t("2026-11-01T06:10:00Z"))
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let opts = InvoiceOptions {
        grace: Duration::hours(6),
        auto_issue: false,
        due_days: 30,
    };
    gpuwatch_billing::cut_invoices(&s.pool, &opts, t("2026-11-01T07:00:00Z"))
        .await
        .unwrap()
        .invoices
}

both_backends! {
    async fn finance_reads_reports_that_sum_to_the_invoices(db) {
        let s = start(&db).await;
        let finance = s.token("finance").await;
        let ids = october(&s, &finance).await;
        assert_eq!(ids.len(), 2);

        for role in ["viewer", "operator", "agent"] {
            let t = s.token(role).await;
            for path in ["/api/v1/reports/usage?month=2026-10", "/api/v1/invoices", "/api/v1/prices"] {
                let (st, body) = s.call(Method::GET, path, &t, None).await;
                assert_eq!(st, StatusCode::FORBIDDEN, "{role} on {path}: {body}");
            }
        }

        let (st, page) = s.send(Method::GET, "/api/v1/invoices?month=2026-10", &finance, None).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 2);
        let invoiced: Decimal = page["items"].as_array().unwrap().iter().map(|i| dec(&i["total"])).sum();

        for group_by in ["customer", "workspace", "environment", "resource", "gpu_model", "workspace,environment"] {
            let (st, body) = s.send(Method::GET, &format!("/api/v1/reports/usage?month=2026-10&group_by={group_by}"), &finance, None).await;
            assert_eq!(st, StatusCode::OK, "{group_by}: {body}");
            let reported: Decimal = body["rows"].as_array().unwrap().iter().map(|r| dec(&r["amount"])).sum();
            assert_eq!(reported, invoiced, "group_by={group_by}: the report sums exactly to the invoices");
        }

        let (st, csv) = s.call(Method::GET, "/api/v1/reports/usage?month=2026-10&group_by=environment&format=csv", &finance, None).await;
        assert_eq!(st, StatusCode::OK);
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = header.iter().position(|h| *h == "amount").expect("an amount column");
        let from_csv: Decimal = lines.map(|l| Decimal::from_str(l.split(',').nth(col).unwrap()).unwrap()).sum();
        assert_eq!(from_csv, invoiced, "CSV sums the same");

        let (st, inv) = s.send(Method::GET, &format!("/api/v1/invoices/{}", ids[0]), &finance, None).await;
        assert_eq!(st, StatusCode::OK, "{inv}");
        let lines_sum: Decimal = inv["lines"].as_array().unwrap().iter().map(|l| dec(&l["amount"])).sum();
        assert_eq!(lines_sum, dec(&inv["subtotal"]));
    }
}

both_backends! {
    async fn invoice_transitions_and_bad_input(db) {
        let s = start(&db).await;
        let finance = s.token("finance").await;
        let ids = october(&s, &finance).await;
        let id = ids[0];
        let path = |a: &str| format!("/api/v1/invoices/{id}/{a}");

        let (st, body) = s.send(Method::POST, &path("pay"), &finance, None).await;
        assert_eq!(st, StatusCode::CONFLICT, "a draft cannot be paid: {body}");
        let (st, body) = s.send(Method::POST, &path("issue"), &finance, None).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "issued");
        let (st, _) = s.send(Method::POST, &path("issue"), &finance, None).await;
        assert_eq!(st, StatusCode::CONFLICT);
        let (st, body) = s.send(Method::POST, &path("pay"), &finance, None).await;
        assert_eq!((st, body["status"].as_str()), (StatusCode::OK, Some("paid")));
        let (st, _) = s.send(Method::POST, &path("void"), &finance, None).await;
        assert_eq!(st, StatusCode::CONFLICT, "a paid invoice cannot be voided");
        let (st, _) = s.send(Method::POST, "/api/v1/invoices/999999/issue", &finance, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND);

        let bad = [
            ("/api/v1/invoices?status=overdue", "status"),
            ("/api/v1/invoices?month=2026-13", "month"),
            ("/api/v1/invoices?limit=0", "limit"),
            ("/api/v1/reports/usage", "month"),
            ("/api/v1/reports/usage?month=2026-10&group_by=planet", "group_by"),
            ("/api/v1/reports/usage?month=2026-10&format=xml", "format"),
            ("/api/v1/reports/usage?month=2026-10&colour=red", "colour"),
        ];
        for (p, needle) in bad {
            let (st, body) = s.send(Method::GET, p, &finance, None).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{p}: {body}");
            assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{p}: {body}");
        }
        let (st, body) = s.send(Method::POST, "/api/v1/prices", &finance, Some(json!({
            "resource_type": "cpu", "unit_price": "0.06", "currency": "XXQ", "valid_from": "2026-12-01T00:00:00Z"
        }))).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("currency"), "{body}");
        let (st, body) = s.send(Method::POST, "/api/v1/prices", &finance, Some(json!({
            "resource_type": "cpu", "unit_price": 0.06, "currency": "CNY", "valid_from": "2026-12-01T00:00:00Z", "discount": 1
        }))).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("discount"), "{body}");
    }
}
