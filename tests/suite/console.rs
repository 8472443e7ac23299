//! The web console in a real browser: Debian's chromium driven by
//! playwright-core (tests/console/e2e.mjs) against a real `gpuwatch serve`
//! on a throw-away database, with the real alerter evaluating a hot GPU and
//! a real webhook receiver. Each browser step screenshots the pages it
//! visits at 1280x800 and 390x844 into target/console-screenshots/ and runs
//! axe-core; a critical violation fails the step.
//!
//! The browser tests use plain PostgreSQL only: the console reads the API,
//! whose backend differences the api and alerter tests already cover.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use gpuwatch_api::ApiConfig;
use gpuwatch_store::testing::{Kind, TestDb};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::alerting::{fast_config, hot_rule, setup, temps, webhook, Receiver};
use crate::common::{free_port, gpuwatch_run, wait_for, ApiClient, Proc};

const CHROMIUM: &str = "/usr/bin/chromium";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shots() -> PathBuf {
    root().join("target/console-screenshots")
}

/// A `gpuwatch serve` process on `db`, answering /health.
struct Serve {
    url: String,
    _proc: Proc,
}

fn serve(db: &TestDb) -> Serve {
    let port = free_port();
    let proc = Proc::spawn(
        &["serve"],
        &[
            ("DATABASE_URL", db.url.clone()),
            ("GPUWATCH_API__LISTEN", format!("127.0.0.1:{port}")),
        ],
    );
    let url = format!("http://127.0.0.1:{port}");
    let health = format!("{url}/health");
    wait_for("serve to answer /health", Duration::from_secs(60), || {
        Command::new("curl")
            .args(["-sf", &health])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    Serve { url, _proc: proc }
}

/// Runs one step of tests/console/e2e.mjs; its RESULT, failing the test
/// with the step's problems.
async fn browser(step: &str, base: &str, token: &str) -> Value {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)"
    );
    let (step, base, token) = (step.to_string(), base.to_string(), token.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(root().join("tests/console/e2e.mjs"))
            .arg(&step)
            .env("BASE_URL", &base)
            .env("TOKEN", &token)
            .env("CHROMIUM", CHROMIUM)
            .env("SHOTS", shots())
            .env("DOWNLOADS", root().join("target/console-downloads"))
            .output()
            .expect("node runs (scripts/console.sh installs it)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "the browser step printed no result: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let r: Value = serde_json::from_str(line).unwrap();
    assert!(
        out.status.success() && r["problems"].as_array().is_some_and(|p| p.is_empty()),
        "browser step failed: {:#}",
        r
    );
    r["result"].clone()
}

async fn token(pool: &gpuwatch_store::Pool, role: &str) -> String {
    gpuwatch_api::auth::create(pool, role, role, None)
        .await
        .expect("token")
        .1
}

/// Notifications the receiver accepted, repeats included.
fn delivered(rx: &Receiver) -> usize {
    rx.seen().iter().filter(|r| r.answered == 200).count()
}

async fn muted_by(pool: &gpuwatch_store::Pool) -> Option<String> {
    pool.get()
        .await
        .unwrap()
        .query_one(
            "SELECT muted_by FROM alert_records WHERE state = 'firing' AND labels->>'gpu_id' = '1'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn outbox_pending(pool: &gpuwatch_store::Pool) -> i64 {
    pool.get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM alert_outbox WHERE status = 'pending'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_silences_the_hot_gpu_then_expires_the_silence() {
    let db = TestDb::new(Kind::Postgres).await;
    let (pool, w) = setup(&db, 2).await;
    let rx = Receiver::start().await;
    let hook = webhook(&pool, &rx.url, 5, 2000).await;
    let rule = hot_rule(
        &pool,
        "GpuHot",
        85.0,
        0,
        json!([{"type": "webhook", "webhook_id": hook}]),
        json!(["alertname", "host"]),
    )
    .await;
    // Repeats every second: a silence that did not mute would show at once.
    pool.get()
        .await
        .unwrap()
        .execute(
            "UPDATE alert_rules SET repeat_interval_seconds = 1 WHERE id = $1",
            &[&rule],
        )
        .await
        .unwrap();
    let w = std::sync::Arc::new(w);
    let feed = CancellationToken::new();
    let feeder = {
        let (w, s) = (w.clone(), feed.clone());
        tokio::spawn(async move {
            while !s.is_cancelled() {
                temps(&w, &[90.0, 50.0]).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let stop = CancellationToken::new();
    let alerter = tokio::spawn(gpuwatch_alerter::run(
        fast_config(),
        pool.clone(),
        false,
        stop.clone(),
    ));
    rx.wait_for("a repeated firing notification", 30, |b| b.len() >= 2)
        .await;

    // An hour of host samples for the host page's charts.
    pool.get().await.unwrap().batch_execute(
        "INSERT INTO host_metrics (host_id, cpu_usage_percent, memory_usage_percent, disk_usage_percent, gpu_avg_utilization, collected_at)
         SELECT 'h1', 40 + 20 * sin(i / 9.0), 55 + i % 7, 62, 70 + 25 * cos(i / 11.0), now() - i * interval '1 minute'
         FROM generate_series(1, 60) AS i",
    ).await.unwrap();
    // And an hour of GPU 1 history that swings within each chart bucket,
    // older than the rule's window (the live 90 °C stays the latest).
    pool.get().await.unwrap().batch_execute(
        "INSERT INTO gpu_metrics (gpu_id, host_id, utilization_percent, memory_usage_percent, temperature, collected_at)
         SELECT 1, 'h1', 55 + 25 * sin(i / 40.0) + 8 * sin(i * 1.3), 40 + 5 * cos(i / 50.0) + 3 * sin(i * 2.1), 72 + 6 * sin(i / 40.0) + 2 * sin(i * 1.7), now() - interval '1 minute' - i * interval '10 seconds'
         FROM generate_series(1, 330) AS i",
    ).await.unwrap();
    let s = serve(&db);
    let operator = token(&pool, "operator").await;
    let r = browser("operator-silence", &s.url, &operator).await;
    let id = r["silence_id"].as_i64().expect("the silence's id");
    let c = pool.get().await.unwrap();
    let comment: String = c
        .query_one("SELECT comment FROM silences WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(comment, "fan replaced tomorrow");

    // Muted: once the alerter has seen the silence and the outbox is empty,
    // the receiver gets nothing more while the GPU stays hot.
    for _ in 0..120 {
        if muted_by(&pool).await.is_some() && outbox_pending(&pool).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(muted_by(&pool).await, Some(format!("silence:{id}")));
    let before = delivered(&rx);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        delivered(&rx),
        before,
        "a silenced alert was notified: {:#?}",
        rx.delivered()
    );

    let r = browser("operator-expire", &s.url, &operator).await;
    assert_eq!(r["temperature"]["level"], "danger", "{r}");
    assert_eq!(
        r["temperature"]["color"], "#F56C6C",
        "seed 004's danger red"
    );
    assert_eq!(r["temperature"]["value"], 90.0);
    // DELETE /api/v1/silences/{id} is how a silence is expired.
    let gone: bool = c
        .query_one(
            "SELECT deleted_at IS NOT NULL FROM silences WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(gone, "silence {id} was not expired");
    // Expired: the repeats come back.
    rx.wait_for("a notification after the silence expired", 30, |b| {
        b.len() > before
    })
    .await;

    // Acknowledged in the console: who is the token's name, and the
    // repeats stop while it fires.
    let r = browser("operator-acknowledge", &s.url, &operator).await;
    let (alert_id, by): (i64, Option<String>) = c
        .query_one(
            "SELECT id, acknowledged_by FROM alert_records WHERE state = 'firing' AND labels->>'gpu_id' = '1'",
            &[],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!(by.as_deref(), Some("operator"), "{r}");
    assert_eq!(
        r["linked_alert"], alert_id,
        "the notification links its alert: {r}"
    );
    assert!(r["gpu_links"].as_i64().unwrap() >= 1, "{r}");
    assert_eq!(r["bands"]["temperature"], 1, "{r}");
    assert_eq!(r["bands"]["usage"], 2, "utilisation and memory banded: {r}");
    assert_eq!(
        r["bands"]["day"], 1,
        "the 24h range (hourly buckets) banded too: {r}"
    );
    assert!(
        r["bands"]["day_spread"].as_f64().unwrap() > 1.0,
        "hourly-sized buckets swing too: {r}"
    );
    assert!(
        r["bands"]["temperature_spread"].as_f64().unwrap() > 1.0,
        "{r}"
    );
    for _ in 0..120 {
        if outbox_pending(&pool).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked = delivered(&rx);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        delivered(&rx),
        acked,
        "an acknowledged alert was repeated: {:#?}",
        rx.delivered()
    );

    feed.cancel();
    feeder.await.unwrap();
    stop.cancel();
    alerter.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_is_offered_no_silence_control() {
    let db = TestDb::new(Kind::Postgres).await;
    let (pool, w) = setup(&db, 1).await;
    hot_rule(&pool, "GpuHot", 85.0, 0, json!([]), json!(["alertname"])).await;
    temps(&w, &[95.0]).await;
    gpuwatch_alerter::run(fast_config(), pool.clone(), true, CancellationToken::new())
        .await
        .unwrap();
    let s = serve(&db);
    let viewer = token(&pool, "viewer").await;
    let r = browser("viewer", &s.url, &viewer).await;
    assert_eq!(r["silence_buttons"], 0, "{r}");
    assert_eq!(r["acknowledge_buttons"], 0, "{r}");
    assert_eq!(r["new_silence_buttons"], 0, "{r}");
    assert!(!r["nav"].as_str().unwrap().contains("Finance"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finance_downloads_the_invoice_csv_the_cli_prints() {
    let db = TestDb::new(Kind::Postgres).await;
    let (pool, _) = setup(&db, 0).await;
    let s = serve(&db);
    let finance = token(&pool, "finance").await;
    seed_invoices(&s.url, &pool, &finance).await;
    let r = browser("finance", &s.url, &finance).await;
    assert_eq!(r["name"], "invoices.csv");
    let got = std::fs::read_to_string(r["csv"].as_str().unwrap()).unwrap();
    let cli = gpuwatch_run(
        &["report", "invoices", "--format", "csv"],
        &[("DATABASE_URL", db.url.clone())],
    );
    assert!(
        cli.lines().count() > 2,
        "the CLI lists invoice lines: {cli}"
    );
    assert_eq!(got, cli, "the console's CSV is the CLI's");
    assert_eq!(
        r["nav"].as_str().unwrap().trim(),
        "Finance",
        "finance sees only its page"
    );
    // The price added in the form, its start typed in Asia/Shanghai.
    let row = pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT gpu_model, unit_price::text, currency, valid_from, valid_to FROM billing_prices WHERE id = $1",
            &[&r["price_id"].as_i64().expect("the new price's id")],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "A100");
    assert_eq!(row.get::<_, String>(1).trim_end_matches('0'), "12.5");
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("CNY"));
    assert_eq!(
        row.get::<_, chrono::DateTime<chrono::Utc>>(3).to_rfc3339(),
        "2027-01-01T00:00:00+00:00"
    );
    assert_eq!(row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(4), None);
    assert!(
        r["overlap"].as_str().unwrap().contains("overlap"),
        "the 409 says why: {r}"
    );
}

/// A dead letter in the console: under Dead letters with the alert it
/// carried (linked to it, its GPU and host), and Replay queues it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_names_its_alert_and_is_replayed() {
    let db = TestDb::new(Kind::Postgres).await;
    let (pool, w) = setup(&db, 1).await;
    let rx = Receiver::start().await;
    // The receiver answers a final 404 there: dead after one attempt.
    let hook = webhook(&pool, &rx.url.replace("/hook", "/nope"), 3, 2000).await;
    hot_rule(
        &pool,
        "GpuHot",
        85.0,
        0,
        json!([{"type": "webhook", "webhook_id": hook}]),
        json!(["alertname"]),
    )
    .await;
    temps(&w, &[91.0]).await;
    gpuwatch_alerter::run(fast_config(), pool.clone(), true, CancellationToken::new())
        .await
        .unwrap();
    let c = pool.get().await.unwrap();
    let (dead, alert): (String, i64) = c
        .query_one(
            "SELECT o.id::text, a.id FROM alert_outbox o, alert_records a WHERE o.status = 'dead' AND a.state = 'firing'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    let s = serve(&db);
    let operator = token(&pool, "operator").await;
    let r = browser("dead-letter", &s.url, &operator).await;
    assert_eq!(r["linked_alert"], alert, "{r}");
    let status: String = c
        .query_one(
            "SELECT status FROM alert_outbox WHERE id = $1::text::uuid",
            &[&dead],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "pending", "replayed from the console");
}

/// `POST`/`DELETE /api/v1/alerts/{id}/acknowledge`: operators and admins
/// only, by the token's name, 404 for an unknown alert, 409 once resolved;
/// the listing shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_answers_by_role_and_state() {
    let db = TestDb::new(Kind::Postgres).await;
    let s = ApiClient::start(&db, ApiConfig::default()).await;
    let rule = hot_rule(&s.pool, "GpuHot", 85.0, 0, json!([]), json!(["alertname"])).await;
    let ids: Vec<i64> = s
        .pool
        .get()
        .await
        .unwrap()
        .query(
            "INSERT INTO alert_records (rule_id, fingerprint, state, severity, labels, started_at, fired_at, resolved_at)
             VALUES ($1, 'a', 'firing', 'critical', '{\"alertname\": \"GpuHot\"}', now(), now(), NULL),
                    ($1, 'b', 'resolved', 'critical', '{\"alertname\": \"GpuHot\"}', now(), now(), now())
             RETURNING id",
            &[&rule],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (firing, resolved) = (ids[0], ids[1]);
    let path = |id: i64| format!("/api/v1/alerts/{id}/acknowledge");
    let operator = s.token("operator").await;
    let viewer = s.token("viewer").await;
    let finance = s.token("finance").await;
    for t in [&viewer, &finance] {
        let (st, _) = s.send(Method::POST, &path(firing), t, None).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let (st, _) = s.send(Method::DELETE, &path(firing), t, None).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    let (st, a) = s.send(Method::POST, &path(firing), &operator, None).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(a["acknowledged_by"], "operator");
    assert!(a["acknowledged_at"].is_string(), "{a}");
    let (_, list) = s.get("/api/v1/alerts", Some(&operator)).await;
    assert_eq!(list["items"][0]["acknowledged_by"], "operator", "{list}");
    let (st, body) = s.send(Method::POST, &path(resolved), &operator, None).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resolved"),
        "{body}"
    );
    let (st, _) = s
        .send(Method::DELETE, &path(resolved), &operator, None)
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, body) = s
        .send(Method::POST, &path(firing + 100), &operator, None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    let (st, _) = s
        .send(
            Method::POST,
            "/api/v1/alerts/x/acknowledge",
            &operator,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, a) = s.send(Method::DELETE, &path(firing), &operator, None).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert!(
        a["acknowledged_by"].is_null() && a["acknowledged_at"].is_null(),
        "{a}"
    );
    let (_, doc) = s.get("/api/v1/openapi.json", None).await;
    let op = &doc["paths"]["/api/v1/alerts/{id}/acknowledge"];
    assert!(
        op["post"]["responses"]["409"].is_object() && op["delete"]["responses"]["404"].is_object(),
        "{op}"
    );
}

/// Two customers' October usage, priced, metered and cut as drafts.
async fn seed_invoices(url: &str, pool: &gpuwatch_store::Pool, finance: &str) {
    let http = reqwest::Client::new();
    for (resource, model, price) in [
        ("cpu", None, "0.05"),
        ("memory", None, "0.01"),
        ("gpu", Some("H100"), "20"),
    ] {
        let resp = http
            .post(format!("{url}/api/v1/prices"))
            .bearer_auth(finance)
            .json(
                &json!({"resource_type": resource, "gpu_model": model, "unit_price": price,
                "currency": "CNY", "valid_from": "2026-01-01T00:00:00Z"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    pool.get().await.unwrap().batch_execute(
        "INSERT INTO customers (id, username, email, password_hash) VALUES (1, 'c1', 'c1@example.com', 'x'), (2, 'c2', 'c2@example.com', 'x');
         INSERT INTO workspaces (id, owner_id, name) VALUES (11, 1, 'ws1'), (21, 2, 'ws1');
         INSERT INTO environment_status_history (env_id, customer_id, workspace_id, status, cpu, memory, gpu, gpu_model, valid_from) VALUES
           ('env-1', 1, 11, 'running', 4, 8589934592, 1, 'H100', '2026-10-31T20:00:00Z'),
           ('env-3', 2, 21, 'running', 2, 8589934592, 0, NULL, '2026-10-31T22:00:00Z');",
    ).await.unwrap();
    let t = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let meter = gpuwatch_billing::MeterOptions {
        grid: gpuwatch_billing::grid::Grid::hourly(),
        lateness: chrono::Duration::minutes(5),
        max_periods: 24 * 40,
        default_currency: None,
    };
    let r = gpuwatch_billing::meter_until_caught_up(pool, &meter, t("2026-11-01T06:10:00Z"))
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let opts = gpuwatch_billing::invoice::InvoiceOptions {
        grace: chrono::Duration::hours(6),
        auto_issue: false,
        due_days: 30,
    };
    let cut = gpuwatch_billing::cut_invoices(pool, &opts, t("2026-11-01T07:00:00Z"))
        .await
        .unwrap();
    assert_eq!(cut.invoices.len(), 2);
}

/// Needs `PATCH /api/v1/hosts/{id}` (the fleet's maintenance route).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_puts_a_host_into_maintenance_and_back() {
    let db = TestDb::new(Kind::Postgres).await;
    let (pool, _) = setup(&db, 1).await;
    let s = serve(&db);
    let operator = token(&pool, "operator").await;
    browser("maintenance", &s.url, &operator).await;
    let status: String = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT status FROM hosts WHERE id = 'h1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "online");
}

/// Figures for the README, not limits: the first paint and the time until
/// 1,000 firing alerts are on screen (printed; run with --nocapture).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_page_shows_1000_firing_alerts() {
    let db = TestDb::new(Kind::Postgres).await;
    let (pool, _) = setup(&db, 0).await;
    let rule = hot_rule(
        &pool,
        "GpuHot",
        85.0,
        0,
        json!([]),
        json!(["alertname", "host"]),
    )
    .await;
    pool.get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO alert_records (rule_id, fingerprint, state, severity, value, labels, started_at, fired_at)
             SELECT $1, md5(i::text), 'firing', 'critical', 86 + i % 10,
                    jsonb_build_object('alertname', 'GpuHot', 'host', 'h' || (i % 50), 'gpu', (i % 8)::text, 'gpu_id', i::text),
                    now() - interval '1 hour', now() - interval '50 minutes'
             FROM generate_series(1, 1000) AS i",
            &[&rule],
        )
        .await
        .unwrap();
    let s = serve(&db);
    let operator = token(&pool, "operator").await;
    let r = browser("alerts-paint", &s.url, &operator).await;
    assert!(
        r["count"]
            .as_str()
            .unwrap()
            .starts_with("1000 alerts in 50 groups"),
        "{r}"
    );
    println!(
        "alerts page with 1000 firing alerts: first contentful paint {} ms, all shown after {} ms",
        r["first_contentful_paint_ms"], r["alerts_shown_ms"]
    );
}

/// The console's HTTP side: the SPA at `/` and its client routes, content
/// types and cache headers; the API, probes and `/metrics` unchanged;
/// whoami and the invoice export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_is_served_beside_an_unchanged_api() {
    let db = TestDb::new(Kind::Postgres).await;
    let s = ApiClient::start(&db, ApiConfig::default()).await;
    let http = &s.http;
    let get = |path: &str| http.get(format!("{}{path}", s.url)).send();

    let index = get("/").await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(index.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(index.headers()["cache-control"], "no-cache");
    let html = index.text().await.unwrap();
    let asset = html
        .split('"')
        .find(|p| p.starts_with("/assets/") && p.ends_with(".js"))
        .unwrap_or_else(|| panic!("index.html names its script: {html}"))
        .to_string();
    for route in ["/alerts", "/hosts/h1", "/gpus/1", "/finance"] {
        let r = get(route).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{route}");
        assert_eq!(r.text().await.unwrap(), html, "{route} is the app");
    }
    let js = http
        .get(format!("{}{asset}", s.url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(js.headers()["content-encoding"], "gzip");
    assert_eq!(
        js.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let missing = get("/assets/nope.js").await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The API's answers are unchanged: JSON errors, never the app.
    let (st, body) = s.get("/api/v1/nope", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("openapi.json"));
    let (st, body) = s.get("/api/v1/hosts", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    let post = http.post(format!("{}/alerts", s.url)).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::NOT_FOUND);
    assert_eq!(get("/health").await.unwrap().status(), StatusCode::OK);
    let metrics = get("/metrics").await.unwrap();
    assert!(metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));

    for role in ["admin", "operator", "finance", "viewer", "agent"] {
        let t = s.token(role).await;
        let (st, who) = s.get("/api/v1/whoami", Some(&t)).await;
        assert_eq!(st, StatusCode::OK, "{who}");
        assert_eq!(who["role"], role);
    }
    let (_, doc) = s.get("/api/v1/openapi.json", None).await;
    assert!(doc["paths"]["/api/v1/whoami"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/reports/invoices"]["get"].is_object());

    let finance = s.token("finance").await;
    let (st, csv) = s
        .call(Method::GET, "/api/v1/reports/invoices", &finance, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(csv.starts_with("invoice_number,"), "{csv}");
    let (st, body) = s
        .send(
            Method::GET,
            "/api/v1/reports/invoices?format=xml",
            &finance,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("format"));
    let (st, _) = s
        .send(
            Method::GET,
            "/api/v1/reports/invoices?month=2026-13",
            &finance,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let viewer = s.token("viewer").await;
    let (st, _) = s
        .send(Method::GET, "/api/v1/reports/invoices", &viewer, None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    println!(
        "embedded console assets: {} bytes",
        gpuwatch_api::console::embedded_bytes()
    );
}
