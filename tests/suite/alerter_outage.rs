//! A receiver down for two minutes (500s, then requests that hang past the
//! timeout), then up: every notification arrives exactly once and every
//! attempt is in webhook_logs. Runs on the wall clock (about 2.5 minutes).
//! Retries are spaced from the end of each failed attempt, honour
//! Retry-After, outlast an outage inside the retry window, and a dead
//! letter is sent again while its group still fires.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::alerting::*;
use gpuwatch_alerter::run;
use gpuwatch_store::both_backends;
use serde_json::json;
use tokio_util::sync::CancellationToken;

both_backends! {
    async fn receiver_down_two_minutes_then_every_notification_arrives_once(db) {
        let (pool, w) = setup(&db, 4).await;
        let rx = Receiver::start().await;
        rx.set(Mode::Fail500);
        let hook = webhook(&pool, &rx.url, 1000, 1000).await;
        hot_rule(&pool, "GpuHot", 85.0, 0, json!([{"type": "webhook", "webhook_id": hook}]), json!(["alertname", "gpu"])).await;
        let mut cfg = fast_config();
        cfg.webhook.backoff_base_secs = 0.5;
        cfg.webhook.backoff_max_secs = 5.0;
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(cfg, pool.clone(), false, stop.clone()));

        // GPUs heat up and cool down through the outage, so firing and
        // resolved notices queue up while the receiver fails and hangs.
        let start = Instant::now();
        let phase = |s: u64| -> [f64; 4] {
            [
                if s < 40 { 90.0 } else { 40.0 },
                if (20..90).contains(&s) { 90.0 } else { 40.0 },
                if s >= 70 { 90.0 } else { 40.0 },
                40.0,
            ]
        };
        loop {
            let s = start.elapsed().as_secs();
            if s >= 120 {
                break;
            }
            rx.set(if s < 60 { Mode::Fail500 } else { Mode::Hang });
            temps(&w, &phase(s)).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        rx.set(Mode::Ok);
        let c = pool.get().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            temps(&w, &phase(120)).await;
            let pending: i64 = c.query_one("SELECT count(*) FROM alert_outbox WHERE status <> 'delivered'", &[]).await.unwrap().get(0);
            if pending == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{pending} notifications still undelivered a minute after the receiver came back");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        stop.cancel();
        task.await.unwrap().unwrap();

        let ids: Vec<String> = c.query("SELECT id::text FROM alert_outbox ORDER BY created_at", &[]).await.unwrap()
            .iter().map(|r| r.get(0)).collect();
        // GPU0 fired and resolved, GPU1 fired and resolved, GPU2 fired: five notices.
        assert_eq!(ids.len(), 5, "outbox: {ids:?}");
        let delivered = rx.delivered();
        assert_eq!(delivered.keys().cloned().collect::<Vec<_>>(), { let mut v = ids.clone(); v.sort(); v }, "every notification arrived");
        assert!(delivered.values().all(|v| v.len() == 1), "each exactly once: {delivered:#?}");
        let mut statuses: Vec<String> = delivered.values().map(|v| v[0]["status"].as_str().unwrap().to_string()).collect();
        statuses.sort();
        assert_eq!(statuses, ["firing", "firing", "firing", "resolved", "resolved"]);

        // Every request the receiver saw is one logged attempt, numbered 1..n per notification.
        let mut seen: BTreeMap<String, i64> = BTreeMap::new();
        for r in rx.seen() {
            *seen.entry(r.id).or_default() += 1;
        }
        for id in &ids {
            let rows = c.query(
                "SELECT attempt, status_code, error, succeeded FROM webhook_logs WHERE notification_id = $1::text::uuid ORDER BY attempt",
                &[id]).await.unwrap();
            let attempts: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
            assert_eq!(attempts, (1..=rows.len() as i32).collect::<Vec<_>>(), "attempts of {id} are numbered in order");
            assert_eq!(rows.len() as i64, seen[id], "attempts logged for {id} = requests the receiver saw");
            assert_eq!(rows.iter().filter(|r| r.get::<_, bool>(3)).count(), 1);
            assert!(rows.last().unwrap().get::<_, bool>(3), "the last attempt is the success");
        }
        let failed_500: i64 = c.query_one("SELECT count(*) FROM webhook_logs WHERE status_code = 500", &[]).await.unwrap().get(0);
        let timeouts: i64 = c.query_one("SELECT count(*) FROM webhook_logs WHERE error LIKE 'timed out%'", &[]).await.unwrap().get(0);
        assert!(failed_500 > 0 && timeouts > 0, "both failure kinds were logged: {failed_500} 500s, {timeouts} timeouts");
        assert!(rx.seen().iter().all(|r| r.signature_ok));
    }
}

/// A receiver that plays a script: a slow 429 asking for 3 s, then one
/// request held past the client's timeout, then 503s until `fail_until`
/// after the first 503, then 200s. Counts what it answered.
#[derive(Clone)]
struct Scripted {
    arrivals: std::sync::Arc<std::sync::Mutex<Vec<u16>>>,
    first_503: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
    fail_for: Duration,
}

async fn scripted(
    axum::extract::State(s): axum::extract::State<Scripted>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let n = s.arrivals.lock().unwrap().len();
    let code = match n {
        0 => 429,
        1 => 0,
        _ => {
            let first = *s.first_503.lock().unwrap().get_or_insert_with(Instant::now);
            if first.elapsed() < s.fail_for {
                503
            } else {
                200
            }
        }
    };
    s.arrivals.lock().unwrap().push(code);
    match code {
        429 => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "3")],
            )
                .into_response()
        }
        0 => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            axum::http::StatusCode::OK.into_response()
        }
        c => axum::http::StatusCode::from_u16(c).unwrap().into_response(),
    }
}

both_backends! {
    async fn retries_are_timed_from_each_response_and_an_outage_is_not_dead_lettered(db) {
        let (pool, w) = setup(&db, 1).await;
        let rx = Scripted { arrivals: Default::default(), first_503: Default::default(), fail_for: Duration::from_secs(12) };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hook", axum::routing::post(scripted)).with_state(rx.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        // The shipped default ceiling: only the retry window may end the retries.
        let hook = webhook(&pool, &url, 1000, 2000).await;
        hot_rule(&pool, "GpuHot", 85.0, 0, json!([{"type": "webhook", "webhook_id": hook}]), json!(["alertname"])).await;
        let mut cfg = fast_config();
        cfg.webhook.backoff_base_secs = 1.0;
        cfg.webhook.backoff_max_secs = 4.0;
        // The 12 s of 503s stand for an hour-long outage inside a longer window.
        cfg.webhook.retry_duration_secs = 60.0;
        temps(&w, &[91.0]).await;
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(cfg, pool.clone(), false, stop.clone()));
        let c = pool.get().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            temps(&w, &[91.0]).await;
            let open: i64 = c.query_one("SELECT count(*) FROM alert_outbox WHERE status <> 'delivered'", &[]).await.unwrap().get(0);
            let any: i64 = c.query_one("SELECT count(*) FROM alert_outbox", &[]).await.unwrap().get(0);
            if any > 0 && open == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the notification was not delivered after the outage");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        stop.cancel();
        task.await.unwrap().unwrap();

        let outbox = c.query("SELECT id::text, status FROM alert_outbox", &[]).await.unwrap();
        assert_eq!(outbox.len(), 1, "one notification");
        let id: String = outbox[0].get(0);
        assert_eq!(outbox[0].get::<_, String>(1), "delivered", "nothing dead-lettered");
        let answered = rx.arrivals.lock().unwrap().clone();
        assert_eq!(answered.iter().filter(|c| **c == 200).count(), 1, "exactly one delivery accepted: {answered:?}");
        assert_eq!(&answered[..2], &[429, 0]);
        assert!(answered[2..answered.len() - 1].iter().all(|c| *c == 503) && answered.len() > 4, "{answered:?}");

        // Spacing from the recorded attempts: each gap runs from the END of
        // one attempt (its start plus its latency) to the start of the next.
        let rows = c.query(
            "SELECT attempt, status_code, outcome, latency_ms,
                    extract(epoch FROM lead(created_at) OVER (ORDER BY attempt) - created_at)::float8 * 1000 - latency_ms
             FROM webhook_logs WHERE notification_id = $1::text::uuid ORDER BY attempt", &[&id]).await.unwrap();
        assert_eq!(rows.len(), answered.len(), "every attempt logged");
        let outcomes: Vec<String> = rows.iter().map(|r| r.get(2)).collect();
        assert!(outcomes[..rows.len() - 1].iter().all(|o| o == "failed") && outcomes.last().unwrap() == "succeeded", "{outcomes:?}");
        let latency0: i32 = rows[0].get(3);
        assert!(latency0 >= 1500, "the 429 was slow: {latency0} ms");
        let gaps: Vec<f64> = rows[..rows.len() - 1].iter().map(|r| r.get(4)).collect();
        assert!(gaps[0] >= 3000.0 - 1.0, "Retry-After: 3 is counted from the response: {gaps:?}");
        // Equal jitter: attempt n waits at least half of min(base * 2^(n-1), max).
        for (i, gap) in gaps.iter().enumerate().skip(1) {
            let floor = (1000.0 * 2f64.powi(i as i32)).min(4000.0) / 2.0;
            assert!(*gap >= floor - 1.0, "attempt {} waited {gap} ms after its response, less than {floor}: {gaps:?}", i + 2);
        }
    }
}

both_backends! {
    async fn a_dead_letter_is_renotified_at_the_next_group_interval_while_it_fires(db) {
        let (pool, w) = setup(&db, 1).await;
        let rx = Receiver::start().await;
        rx.set(Mode::Fail500);
        let hook = webhook(&pool, &rx.url, 1000, 1000).await;
        hot_rule(&pool, "GpuHot", 85.0, 0, json!([{"type": "webhook", "webhook_id": hook}]), json!(["alertname"])).await;
        let mut cfg = fast_config();
        cfg.webhook.retry_duration_secs = 1.0;
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(cfg, pool.clone(), false, stop.clone()));
        let c = pool.get().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let dead: String = loop {
            temps(&w, &[91.0]).await;
            if let Some(r) = c.query_opt("SELECT id::text FROM alert_outbox WHERE status = 'dead'", &[]).await.unwrap() {
                break r.get(0);
            }
            assert!(Instant::now() < deadline, "never dead-lettered with a 1 s retry window");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        rx.set(Mode::Ok);
        // The rule's repeat_interval is a day: only the dead letter can bring a re-send.
        let bodies = loop {
            temps(&w, &[91.0]).await;
            let delivered = rx.delivered();
            if let Some((_, b)) = delivered.iter().find(|(id, _)| **id != dead) {
                break b.clone();
            }
            assert!(Instant::now() < deadline, "a dead-lettered group still firing was not notified again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        stop.cancel();
        task.await.unwrap().unwrap();
        assert_eq!(bodies[0]["status"], "firing");
        assert_eq!(bodies[0]["alerts"][0]["labels"]["alertname"], "GpuHot");
        let mark: Option<chrono::DateTime<chrono::Utc>> = c.query_one("SELECT dead_lettered_at FROM alert_groups", &[]).await.unwrap().get(0);
        assert!(mark.is_none(), "the re-send clears the mark, so it is sent once, not every flush");
    }
}
