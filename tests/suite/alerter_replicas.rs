//! The `gpuwatch alerter` binary as real processes: killed with SIGKILL in
//! the middle of delivering and restarted, nothing is lost and no
//! notification is sent under two ids; two replicas side by side send each
//! notification once.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::alerting::*;
use gpuwatch_store::testing::TestDb;
use gpuwatch_store::{both_backends, BatchWriter, Pool};
use serde_json::{json, Value};

const GPUS: usize = 12;

fn alerter(db: &TestDb) -> Child {
    common::gpuwatch_command(&["alerter"])
        .env("DATABASE_URL", &db.url)
        .env("GPUWATCH_ALERTER__INTERVAL_SECS", "0.3")
        .env("GPUWATCH_ALERTER__GROUP_WAIT_SECS", "0")
        .env("GPUWATCH_ALERTER__GROUP_INTERVAL_SECS", "0.3")
        .env("GPUWATCH_ALERTER__POLL_INTERVAL_SECS", "0.1")
        .env("GPUWATCH_ALERTER__WEBHOOK__BACKOFF_BASE_SECS", "0.2")
        .env("GPUWATCH_ALERTER__WEBHOOK__BACKOFF_MAX_SECS", "1")
        .env("GPUWATCH_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gpuwatch alerter")
}

fn kill9(c: &mut Child) {
    // std's Child::kill is SIGKILL on Unix: no shutdown handler runs.
    c.kill().unwrap();
    c.wait().unwrap();
}

/// GPU i is hot in the seconds where (s / 2 + i) is even: many firing and
/// resolved notices over a few seconds.
async fn feed(w: &BatchWriter, s: u64) {
    let t: Vec<f64> = (0..GPUS)
        .map(|i| {
            if (s / 2 + i as u64) % 2 == 0 {
                90.0
            } else {
                40.0
            }
        })
        .collect();
    temps(w, &t).await;
}

async fn prepare(db: &TestDb, delay_ms: u64) -> (Pool, BatchWriter, Receiver) {
    let (pool, w) = setup(db, GPUS as i32).await;
    let rx = Receiver::start().await;
    *rx.delay_ms.lock().unwrap() = delay_ms;
    let hook = webhook(&pool, &rx.url, 1000, 5000).await;
    hot_rule(
        &pool,
        "GpuHot",
        85.0,
        0,
        json!([{"type": "webhook", "webhook_id": hook}]),
        json!(["alertname", "gpu"]),
    )
    .await;
    (pool, w, rx)
}

/// Waits for the outbox to drain; returns its ids.
async fn drained(pool: &Pool, w: &BatchWriter, secs: u64) -> Vec<String> {
    let c = pool.get().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let pending: i64 = c
            .query_one(
                "SELECT count(*) FROM alert_outbox WHERE status <> 'delivered'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} notifications undelivered"
        );
        // Keep the last state steady so nothing new is queued meanwhile.
        feed(w, 1_000_000).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.query("SELECT id::text FROM alert_outbox", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A notification's content without its id: who, which alerts, which transitions.
fn content(b: &Value) -> String {
    let alerts: BTreeSet<String> = b["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}/{}", a["fingerprint"], a["status"], a["startsAt"]))
        .collect();
    format!("{}|{}|{alerts:?}", b["groupKey"], b["status"])
}

both_backends! {
    async fn killed_mid_delivery_and_restarted_loses_nothing_and_sends_nothing_twice(db) {
        // A slow receiver, so kills land while requests are in flight.
        let (pool, w, rx) = prepare(&db, 300).await;
        let mut child = alerter(&db);
        let start = Instant::now();
        let mut kills = 0;
        let mut last_kill = Instant::now();
        let mut last_feed = Instant::now() - Duration::from_secs(1);
        while start.elapsed() < Duration::from_secs(14) {
            if last_feed.elapsed() >= Duration::from_millis(100) {
                feed(&w, start.elapsed().as_secs()).await;
                last_feed = Instant::now();
            }
            // Kill while the receiver holds a request of ours, at most every 1.5 s.
            if last_kill.elapsed() >= Duration::from_millis(1500) && rx.in_flight() > 0 {
                kill9(&mut child);
                kills += 1;
                last_kill = Instant::now();
                child = alerter(&db);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ids = drained(&pool, &w, 60).await;
        kill9(&mut child);

        assert!(ids.len() >= 20, "enough notifications to matter: {}", ids.len());
        assert!(kills >= 3, "only {kills} kills landed mid-delivery");
        let delivered = rx.delivered();
        let got: BTreeSet<&String> = delivered.keys().collect();
        let want: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(got, want, "no notification lost, none unknown");
        // By idempotency id each notification arrived once; the receiver may see
        // an id again only when a kill fell between its 200 and our commit.
        let repeats: usize = delivered.values().map(|v| v.len() - 1).sum();
        assert!(repeats <= kills, "{repeats} re-sends for {kills} kills");
        assert!(delivered.values().all(|v| v.iter().all(|b| b == &v[0])), "a re-send carries the same body");
        // And no notification was sent twice under two ids.
        let mut by_content: BTreeMap<String, usize> = BTreeMap::new();
        for v in delivered.values() {
            *by_content.entry(content(&v[0])).or_default() += 1;
        }
        assert!(by_content.values().all(|n| *n == 1), "duplicate notifications: {by_content:#?}");
        eprintln!("{} notifications, {kills} kills, {repeats} same-id re-sends", ids.len());
    }
}

both_backends! {
    async fn two_replicas_send_each_notification_once(db) {
        let (pool, w, rx) = prepare(&db, 20).await;
        let mut a = alerter(&db);
        let mut b = alerter(&db);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(8) {
            feed(&w, start.elapsed().as_secs()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ids = drained(&pool, &w, 60).await;
        kill9(&mut a);
        kill9(&mut b);
        assert!(ids.len() >= 10, "{}", ids.len());
        let delivered = rx.delivered();
        assert_eq!(delivered.len(), ids.len(), "every notification arrived");
        assert!(delivered.values().all(|v| v.len() == 1), "each exactly once");
        assert_eq!(rx.seen().len(), ids.len(), "and was sent exactly once");
        let mut by_content: BTreeMap<String, usize> = BTreeMap::new();
        for v in delivered.values() {
            *by_content.entry(content(&v[0])).or_default() += 1;
        }
        assert!(by_content.values().all(|n| *n == 1), "duplicate notifications: {by_content:#?}");
    }
}

both_backends! {
    async fn an_attempt_in_flight_at_a_kill_is_logged(db) {
        let (pool, w) = setup(&db, 1).await;
        let rx = Receiver::start().await;
        rx.set(Mode::Hang);
        let hook = webhook(&pool, &rx.url, 1000, 30_000).await;
        hot_rule(&pool, "GpuHot", 85.0, 0, json!([{"type": "webhook", "webhook_id": hook}]), json!(["alertname"])).await;
        let mut child = alerter(&db);
        let deadline = Instant::now() + Duration::from_secs(60);
        // A hanging request is recorded as seen before the receiver sleeps.
        while rx.seen().is_empty() {
            temps(&w, &[91.0]).await;
            assert!(Instant::now() < deadline, "the alerter never sent");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        kill9(&mut child);
        let sent_id = {
            let seen = rx.seen();
            assert_eq!(seen.len(), 1);
            seen[0].id.clone()
        };
        let c = pool.get().await.unwrap();
        let rows = c
            .query("SELECT notification_id::text, attempt, outcome, succeeded FROM webhook_logs", &[])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "the attempt in flight at the kill is on record");
        assert_eq!(rows[0].get::<_, String>(0), sent_id);
        assert_eq!(rows[0].get::<_, i32>(1), 1);
        assert_eq!(rows[0].get::<_, String>(2), "unknown");
        assert_eq!(rows[0].get::<_, Option<bool>>(3), None);
    }
}
