//! The `alertmanager` channel against the real thing: two replicas of
//! Debian's prometheus-alertmanager, each routing to a real webhook
//! receiver. Both get the alert with its labels, their receiver is told,
//! a silence made in one replica mutes it there, and it resolves in both
//! when the condition clears.

use std::time::{Duration, Instant};

use crate::alerting::*;
use crate::common::{free_port, ChildGuard};
use gpuwatch_alerter::run;
use gpuwatch_store::both_backends;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

struct Replica {
    url: String,
    _dir: tempfile::TempDir,
    _child: ChildGuard,
}

async fn replica(receiver: &str) -> Replica {
    assert!(
        std::path::Path::new(ALERTMANAGER).exists(),
        "{ALERTMANAGER} missing: apt-get install prometheus-alertmanager (scripts/test.sh installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = format!(
        "route:\n  receiver: hook\n  group_by: ['alertname']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: hook\n    webhook_configs:\n      - url: {receiver}\n        send_resolved: true\n"
    );
    std::fs::write(dir.path().join("am.yml"), config).unwrap();
    let child = std::process::Command::new(ALERTMANAGER)
        .arg(format!(
            "--config.file={}",
            dir.path().join("am.yml").display()
        ))
        .arg(format!("--storage.path={}", dir.path().display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--web.external-url={url}"))
        // Two independent replicas, as Prometheus sees an HA pair: each is sent every alert.
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus-alertmanager");
    let guard = ChildGuard(child);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{url}/-/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "Alertmanager on {url} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Replica {
        url,
        _dir: dir,
        _child: guard,
    }
}

/// GpuHot alerts as the replica lists them (active, silenced; not resolved).
async fn listed(am: &Replica) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{}/api/v2/alerts", am.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["alertname"] == "GpuHot")
        .cloned()
        .collect()
}

async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Bodies the replica at `url` sent the receiver with this status.
fn told(rx: &Receiver, url: &str, status: &str) -> usize {
    rx.seen()
        .iter()
        .filter(|r| r.body["externalURL"] == url && r.body["status"] == status)
        .count()
}

both_backends! {
    async fn alerts_reach_both_replicas_are_silenced_there_and_resolve(db) {
        let (pool, w) = setup(&db, 1).await;
        let rx = Receiver::start().await;
        let (a, b) = (replica(&rx.url).await, replica(&rx.url).await);
        hot_rule(&pool, "GpuHot", 85.0, 0, json!([{"type": "alertmanager", "urls": [a.url, b.url]}]), json!(["alertname"])).await;
        let mut cfg = fast_config();
        cfg.alertmanager_resend_secs = 1.0;
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(cfg, pool.clone(), false, stop.clone()));

        for am in [&a, &b] {
            let alert = until("the alert in Alertmanager", async || {
                temps(&w, &[91.0]).await;
                listed(am).await.pop()
            }).await;
            assert_eq!(alert["labels"]["host"], "h1");
            assert_eq!(alert["labels"]["gpu"], "0");
            assert_eq!(alert["labels"]["severity"], "critical");
            assert!(alert["labels"].get("gpu_id").is_none() && alert["labels"].get("scope").is_none(), "{alert}");
            assert!(alert["annotations"]["summary"].as_str().unwrap().contains("on h1"), "{alert}");
            assert_eq!(alert["status"]["state"], "active");
            until("the replica's receiver told", async || (told(&rx, &am.url, "firing") > 0).then_some(())).await;
        }

        // A silence made in replica a mutes the alert there, not in b.
        let now = chrono::Utc::now();
        let silence: Value = reqwest::Client::new().post(format!("{}/api/v2/silences", a.url))
            .json(&json!({"matchers": [{"name": "alertname", "value": "GpuHot", "isRegex": false, "isEqual": true}],
                          "startsAt": now, "endsAt": now + chrono::Duration::hours(1), "createdBy": "oncall", "comment": "maintenance"}))
            .send().await.unwrap().json().await.unwrap();
        let silence_id = silence["silenceID"].as_str().unwrap().to_string();
        let muted = until("the alert silenced in replica a", async || {
            temps(&w, &[91.0]).await;
            listed(&a).await.pop().filter(|x| x["status"]["state"] == "suppressed")
        }).await;
        assert_eq!(muted["status"]["silencedBy"], json!([silence_id]));
        assert_eq!(listed(&b).await[0]["status"]["state"], "active");

        // Still firing: gpuwatch keeps re-sending, so Alertmanager never times it out.
        until("firing alerts re-sent", async || {
            temps(&w, &[91.0]).await;
            let c = pool.get().await.unwrap();
            let n: i64 = c.query_one("SELECT count(*) FROM alert_outbox WHERE channel = 'alertmanager' AND status = 'delivered' AND target_url = $1", &[&b.url]).await.unwrap().get(0);
            (n >= 3).then_some(())
        }).await;

        // The condition clears: resolved in both, and b's receiver is told.
        for am in [&a, &b] {
            until("the alert resolved", async || {
                temps(&w, &[40.0]).await;
                listed(am).await.is_empty().then_some(())
            }).await;
        }
        until("b's receiver told of the resolve", async || (told(&rx, &b.url, "resolved") > 0).then_some(())).await;
        stop.cancel();
        task.await.unwrap().unwrap();

        // Each replica heard of the resolve once, with its endsAt.
        let c = pool.get().await.unwrap();
        for am in [&a, &b] {
            let rows = c.query(
                "SELECT payload FROM alert_outbox WHERE target_url = $1 AND (payload->0->>'endsAt')::timestamptz <= created_at",
                &[&am.url]).await.unwrap();
            assert_eq!(rows.len(), 1, "one resolved post to {}", am.url);
            let p: Value = rows[0].get(0);
            assert_eq!(p.as_array().unwrap().len(), 1);
            assert!(p[0]["generatorURL"].as_str().unwrap().starts_with("http"), "{p}");
        }
    }
}
