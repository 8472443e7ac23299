//! A receiver down for two minutes (500s, then requests that hang past the
//! timeout), then up: every notification arrives exactly once and every
//! attempt is in webhook_logs. Runs on the wall clock (about 2.5 minutes).

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
