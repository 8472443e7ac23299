//! The alerter end to end against real servers: samples in the database, a
//! real HTTP receiver checking signatures itself, a real SMTP server. A hot
//! GPU fires after `for`, cools down and resolves; silences and inhibition
//! mute exactly what they match; a restart neither re-fires nor forgets.

use std::time::Duration;

use crate::alerting::*;
use gpuwatch_alerter::{evaluate_once, run};
use gpuwatch_store::both_backends;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn alerts(b: &Value) -> &Vec<Value> {
    b["alerts"].as_array().unwrap()
}

both_backends! {
    async fn hot_gpu_fires_after_for_then_resolves_by_webhook_and_email(db) {
        let (pool, w) = setup(&db, 2).await;
        let rx = Receiver::start().await;
        let smtp = Smtp::start();
        let hook = webhook(&pool, &rx.url, 5, 2000).await;
        let rule = hot_rule(&pool, "GpuHot", 85.0, 2,
            json!([{"type": "webhook", "webhook_id": hook}, {"type": "email", "to": ["oncall@example.com"]}]),
            json!(["alertname", "host"])).await;
        let mut cfg = fast_config();
        cfg.smtp.host = "127.0.0.1".into();
        cfg.smtp.port = smtp.port;
        cfg.smtp.tls = "none".into();
        cfg.smtp.from = "gpuwatch@example.com".into();
        cfg.external_url = "https://gpuwatch.example".into();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(cfg, pool.clone(), false, stop.clone()));

        // GPU 0 is hot, GPU 1 is not; samples keep coming.
        let feed_stop = CancellationToken::new();
        let hot = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let feeder = {
            let (w, s, hot) = (std::sync::Arc::new(w), feed_stop.clone(), hot.clone());
            tokio::spawn(async move {
                while !s.is_cancelled() {
                    let t0 = if hot.load(std::sync::atomic::Ordering::SeqCst) { 90.0 } else { 40.0 };
                    temps(&w, &[t0, 50.0]).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };

        let bodies = rx.wait_for("the firing notification", 30, |b| !b.is_empty()).await;
        let b = &bodies[0];
        assert_v4(b);
        assert_eq!(b["status"], "firing");
        assert_eq!(b["receiver"], "oncall");
        assert_eq!(b["externalURL"], "https://gpuwatch.example");
        assert_eq!(b["groupLabels"], json!({"alertname": "GpuHot", "host": "h1"}));
        assert_eq!(alerts(b).len(), 1, "only the hot GPU alerts: {b}");
        let a = &alerts(b)[0];
        assert_eq!(a["labels"]["gpu"], "0");
        assert_eq!(a["labels"]["gpu_uuid"], "GPU-0");
        assert_eq!(a["labels"]["rack"], "r1", "host labels are alert labels");
        assert!(a["labels"].get("gpu_id").is_none() && a["labels"].get("scope").is_none(), "internal labels stay internal: {a}");
        assert!(b["commonLabels"].get("scope").is_none(), "{b}");
        assert_eq!(a["annotations"]["summary"], "GPU 0 on h1 at 90 C");
        assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
        assert!(rx.seen().iter().all(|r| r.signature_ok), "every request carries a valid signature");
        // `for` held: fired no sooner than 2 s after the alert started.
        let c = pool.get().await.unwrap();
        let row = c.query_one(
            "SELECT extract(epoch FROM fired_at - started_at)::float8, state FROM alert_records WHERE rule_id = $1",
            &[&rule]).await.unwrap();
        assert!(row.get::<_, f64>(0) >= 2.0, "fired {}s after start, before `for`", row.get::<_, f64>(0));
        assert_eq!(row.get::<_, String>(1), "firing");

        let mails = smtp.wait_for("the firing e-mail", 30, |m| !m.is_empty()).await;
        assert!(mails[0].contains("Subject: [FIRING:1] critical GpuHot: host=h1 gpu=0 gpu_uuid=GPU-0"), "{}", mails[0]);
        assert!(mails[0].contains("multipart/alternative") && mails[0].contains("text/html"));
        assert!(mails[0].contains("To: oncall@example.com"));

        // Cool down: the resolved notice follows, by both channels.
        hot.store(false, std::sync::atomic::Ordering::SeqCst);
        let bodies = rx.wait_for("the resolved notification", 30, |b| b.iter().any(|x| x["status"] == "resolved")).await;
        let r = bodies.iter().find(|x| x["status"] == "resolved").unwrap();
        assert_v4(r);
        assert_eq!(alerts(r)[0]["status"], "resolved");
        assert_ne!(alerts(r)[0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(alerts(r)[0]["fingerprint"], a["fingerprint"]);
        smtp.wait_for("the resolved e-mail", 30, |m| m.iter().any(|x| x.contains("Subject: [RESOLVED]"))).await;

        feed_stop.cancel();
        feeder.await.unwrap();
        stop.cancel();
        task.await.unwrap().unwrap();
        // Exactly one firing and one resolved notice per channel; every attempt logged.
        assert_eq!(rx.delivered().len(), 2, "{:#?}", rx.delivered());
        let logged: i64 = c.query_one("SELECT count(*) FROM webhook_logs WHERE succeeded", &[]).await.unwrap().get(0);
        assert_eq!(logged, 4, "2 webhooks + 2 e-mails logged as delivered");
        let state: String = c.query_one("SELECT state FROM alert_records WHERE rule_id = $1", &[&rule]).await.unwrap().get(0);
        assert_eq!(state, "resolved");
    }
}

both_backends! {
    async fn restart_neither_refires_nor_forgets_and_no_data_is_not_resolve(db) {
        let (pool, w) = setup(&db, 1).await;
        let rx = Receiver::start().await;
        let hook = webhook(&pool, &rx.url, 5, 2000).await;
        hot_rule(&pool, "GpuHot", 85.0, 0, json!([{"type": "webhook", "webhook_id": hook}]), json!(["alertname"])).await;
        // The GPU runs a customer's environment: the customer gets in-app notifications.
        pool.get().await.unwrap().batch_execute(
            "INSERT INTO customers (id, username, email, password_hash) VALUES (7, 'acme', 'ops@acme.example', 'x');
             INSERT INTO environments (id, customer_id, host_id, name, image, cpu, memory, status)
             VALUES ('env-1', 7, 'h1', 'train', 'pytorch', 8, 1, 'running');
             UPDATE gpus SET allocated_to = 'env-1';",
        ).await.unwrap();
        let cfg = fast_config();
        let once = || async { run(cfg.clone(), pool.clone(), true, CancellationToken::new()).await.unwrap() };
        temps(&w, &[95.0]).await;
        once().await;
        assert_eq!(rx.delivered().len(), 1);
        let b = rx.delivered().into_values().next().unwrap();
        assert_eq!(b[0]["alerts"][0]["labels"]["customer"], "7");
        assert_eq!(b[0]["alerts"][0]["labels"]["environment"], "env-1");
        // "Restarts": fresh runs read the persisted state and stay quiet.
        temps(&w, &[96.0]).await;
        once().await;
        once().await;
        assert_eq!(rx.delivered().len(), 1, "a restart must not re-fire");
        // Samples stop: no data, not a resolve.
        let c = pool.get().await.unwrap();
        c.execute("DELETE FROM gpu_metrics", &[]).await.unwrap();
        once().await;
        let state: String = c.query_one("SELECT state FROM alert_records", &[]).await.unwrap().get(0);
        assert_eq!(state, "nodata");
        assert_eq!(rx.delivered().len(), 1, "no data sends no resolved notice");
        // Data back and cool: resolved, told once (after group_interval).
        temps(&w, &[30.0]).await;
        once().await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        once().await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        once().await;
        let d = rx.delivered();
        assert_eq!(d.len(), 2);
        assert_eq!(d.values().filter(|b| b[0]["status"] == "resolved").count(), 1);
        let inapp: Vec<(i64, String, String)> = c.query("SELECT customer_id, level, title FROM notifications ORDER BY id", &[])
            .await.unwrap().iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        assert_eq!(inapp, [(7, "error".into(), "GpuHot is firing".into()), (7, "error".into(), "GpuHot resolved".into())]);
    }
}

both_backends! {
    async fn silences_and_inhibition_mute_what_they_match_and_nothing_else(db) {
        let (pool, w) = setup(&db, 3).await;
        let rx = Receiver::start().await;
        let hook = webhook(&pool, &rx.url, 5, 2000).await;
        // One group per GPU, so what is muted shows per GPU.
        hot_rule(&pool, "GpuHot", 85.0, 0, json!([{"type": "webhook", "webhook_id": hook}]), json!(["alertname", "host", "gpu"])).await;
        let c = pool.get().await.unwrap();
        // Silence GPU 1 only; an expired silence on GPU 2 must not count.
        c.batch_execute(
            "INSERT INTO silences (matchers, starts_at, ends_at, created_by, comment) VALUES
               ('[{\"name\": \"gpu\", \"value\": \"1\"}]', now() - interval '1 minute', now() + interval '1 hour', 'alice', 'maintenance'),
               ('[{\"name\": \"gpu\", \"value\": \"2\"}]', now() - interval '2 hours', now() - interval '1 hour', 'bob', 'over');",
        ).await.unwrap();
        let cfg = fast_config();
        let once = || async { run(cfg.clone(), pool.clone(), true, CancellationToken::new()).await.unwrap() };
        temps(&w, &[90.0, 90.0, 90.0]).await;
        once().await;
        let gpus = |rx: &Receiver| {
            let mut g: Vec<String> = rx.delivered().values()
                .flat_map(|b| b[0]["alerts"].as_array().unwrap().iter().map(|a| a["labels"]["gpu"].as_str().unwrap().to_string()).collect::<Vec<_>>())
                .collect();
            g.sort();
            g
        };
        assert_eq!(gpus(&rx), ["0", "2"], "the silenced GPU 1 is muted, the others are not");
        let muted: String = c.query_one("SELECT muted_by FROM alert_records WHERE labels->>'gpu' = '1'", &[]).await.unwrap().get(0);
        assert!(muted.starts_with("silence:"));

        // A silent host (the shipped inhibition rule) inhibits its GPUs' alerts, not other hosts'.
        c.batch_execute(
            "UPDATE alert_rules SET enabled = true, channels = '[]' WHERE name = 'HostSilent';
             UPDATE hosts SET last_heartbeat = now() - interval '10 minutes' WHERE id = 'h1';
             INSERT INTO hosts (id, name, ip_address, os_type, total_cpu, total_memory, last_heartbeat)
             VALUES ('h2', 'gpu-node-2', '10.0.0.2', 'linux', 8, 1, now());
             INSERT INTO gpus (id, host_id, gpu_index, uuid) VALUES (9, 'h2', 0, 'GPU-h2-0');",
        ).await.unwrap();
        let before = rx.delivered();
        let now = chrono::Utc::now();
        w.write(&[gpuwatch_store::GpuSample { gpu_id: 9, host_id: "h2".into(), collected_at: now, temperature: Some(91.0), ..Default::default() }]).await.unwrap();
        temps(&w, &[92.0, 92.0, 92.0]).await;
        once().await;
        let new: Vec<Value> = rx.delivered().into_iter().filter(|(id, _)| !before.contains_key(id)).map(|(_, mut v)| v.remove(0)).collect();
        let names: Vec<String> = new.iter().flat_map(|b| b["alerts"].as_array().unwrap().iter()
            .map(|a| format!("{}@{}", a["labels"]["alertname"].as_str().unwrap(), a["labels"]["host"].as_str().unwrap())).collect::<Vec<_>>()).collect();
        assert!(names.contains(&"HostSilent@h1".to_string()), "{names:?}");
        assert!(names.contains(&"GpuHot@h2".to_string()), "h2's GPU is not inhibited: {names:?}");
        assert_eq!(new.len(), 2, "only HostSilent(h1) and GpuHot(h2) are new: {names:?}");
        let inhibited: i64 = c.query_one("SELECT count(*) FROM alert_records WHERE muted_by LIKE 'inhibit:%' AND labels->>'host' = 'h1'", &[]).await.unwrap().get(0);
        assert_eq!(inhibited, 2, "h1's unsilenced GPU alerts are inhibited (GPU 1 stays silenced)");
        let h2: Option<String> = c.query_one("SELECT muted_by FROM alert_records WHERE labels->>'host' = 'h2'", &[]).await.unwrap().get(0);
        assert_eq!(h2, None);
    }
}

both_backends! {
    async fn a_template_that_fails_at_send_time_falls_back_instead_of_dropping(db) {
        let (pool, w) = setup(&db, 1).await;
        let rx = Receiver::start().await;
        let hook = webhook(&pool, &rx.url, 5, 2000).await;
        let id = hot_rule(&pool, "GpuHot", 85.0, 0, json!([{"type": "webhook", "webhook_id": hook}]), json!(["alertname"])).await;
        let c = pool.get().await.unwrap();
        c.execute("UPDATE alert_rules SET annotations = '{\"summary\": \"{{ $labels.nosuchlabel }} hot\"}' WHERE id = $1", &[&id]).await.unwrap();
        temps(&w, &[99.0]).await;
        run(fast_config(), pool.clone(), true, CancellationToken::new()).await.unwrap();
        let d = rx.delivered();
        let a = &d.values().next().expect("the notification is not dropped")[0]["alerts"][0];
        assert!(a["annotations"]["summary"].as_str().unwrap().contains("GpuHot (critical) value 99"), "{a}");
        assert!(a["annotations"]["template_error"].as_str().unwrap().contains("nosuchlabel"));
    }
}

both_backends! {
    async fn evaluation_cycles_are_timed_in_the_registry_given(db) {
        let (pool, _w) = setup(&db, 1).await;
        let registry = prometheus::Registry::new();
        gpuwatch_alerter::register_metrics(&registry).unwrap();
        evaluate_once(&pool, &fast_config()).await.unwrap();
        let names: Vec<String> = registry.gather().iter().map(|m| m.name().to_string()).collect();
        assert!(names.contains(&"gpuwatch_alerter_evaluation_duration_seconds".to_string()), "{names:?}");
    }
}

both_backends! {
    async fn grouping_waits_batches_and_repeats_on_an_injected_clock(db) {
        use gpuwatch_alerter::delivery::Deliverer;
        use gpuwatch_alerter::eval::cycle;
        let (pool, w) = setup(&db, 3).await;
        let rx = Receiver::start().await;
        let hook = webhook(&pool, &rx.url, 5, 2000).await;
        let id = hot_rule(&pool, "GpuHot", 85.0, 0, json!([{"type": "webhook", "webhook_id": hook}]), json!(["alertname", "host"])).await;
        // A long window, so samples written now stay visible to the clock moved ahead.
        pool.get().await.unwrap()
            .execute("UPDATE alert_rules SET window_seconds = 3600, repeat_interval_seconds = 300 WHERE id = $1", &[&id])
            .await.unwrap();
        let cfg = gpuwatch_alerter::AlerterConfig { group_wait_secs: 10.0, group_interval_secs: 60.0, ..fast_config() };
        let d = Deliverer::new(pool.clone(), cfg.clone()).unwrap();
        let t0 = chrono::Utc::now();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let step = |s: i64| {
            let (pool, cfg, d) = (pool.clone(), cfg.clone(), &d);
            async move {
                cycle(&pool, &cfg, at(s)).await.unwrap();
                d.drain().await.unwrap();
            }
        };
        let sizes = |rx: &Receiver| -> Vec<usize> {
            rx.seen().iter().map(|r| r.body["alerts"].as_array().unwrap().len()).collect()
        };
        temps(&w, &[90.0, 90.0, 40.0]).await;
        step(0).await;
        step(5).await;
        assert_eq!(sizes(&rx), Vec::<usize>::new(), "group_wait holds the first notification");
        step(10).await;
        assert_eq!(sizes(&rx), [2], "both GPUs firing together arrive in one notification");
        temps(&w, &[90.0, 90.0, 90.0]).await;
        step(20).await;
        step(60).await;
        assert_eq!(sizes(&rx), [2], "a new alert waits for group_interval");
        step(70).await;
        assert_eq!(sizes(&rx), [2, 3], "then the group is sent again, whole");
        step(200).await;
        assert_eq!(sizes(&rx), [2, 3], "nothing changed, repeat_interval not reached");
        step(370).await;
        assert_eq!(sizes(&rx), [2, 3, 3], "repeat_interval re-sends the firing group");
        temps(&w, &[40.0, 90.0, 90.0]).await;
        step(430).await;
        let last = rx.seen().last().unwrap().body.clone();
        let statuses: Vec<&str> = last["alerts"].as_array().unwrap().iter().map(|a| a["status"].as_str().unwrap()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == "resolved").count(), 1, "{statuses:?}");
        assert_eq!(last["status"], "firing", "a group with firing alerts is firing");
    }
}

both_backends! {
    async fn an_acknowledged_alert_is_not_repeated_but_its_resolve_is_sent(db) {
        use gpuwatch_alerter::admin;
        use gpuwatch_alerter::delivery::Deliverer;
        use gpuwatch_alerter::eval::cycle;
        use gpuwatch_alerter::AlerterError;
        let (pool, w) = setup(&db, 1).await;
        let rx = Receiver::start().await;
        let hook = webhook(&pool, &rx.url, 5, 2000).await;
        let rule = hot_rule(&pool, "GpuHot", 85.0, 0, json!([{"type": "webhook", "webhook_id": hook}]), json!(["alertname", "host"])).await;
        pool.get().await.unwrap()
            .execute("UPDATE alert_rules SET window_seconds = 3600, repeat_interval_seconds = 300 WHERE id = $1", &[&rule])
            .await.unwrap();
        let cfg = gpuwatch_alerter::AlerterConfig { group_interval_secs: 60.0, ..fast_config() };
        let d = Deliverer::new(pool.clone(), cfg.clone()).unwrap();
        let t0 = chrono::Utc::now();
        let step = |s: i64| {
            let (pool, cfg, d) = (pool.clone(), cfg.clone(), &d);
            async move {
                cycle(&pool, &cfg, t0 + chrono::Duration::seconds(s)).await.unwrap();
                d.drain().await.unwrap();
            }
        };
        let statuses = |rx: &Receiver| -> Vec<String> {
            rx.seen().iter().map(|r| r.body["status"].as_str().unwrap().to_string()).collect()
        };
        temps(&w, &[90.0]).await;
        step(0).await;
        assert_eq!(statuses(&rx), ["firing"]);
        step(310).await;
        assert_eq!(statuses(&rx), ["firing", "firing"], "unacknowledged, repeat_interval re-sends");

        let open = admin::list_active_alerts(&pool, Default::default()).await.unwrap();
        let id = open.items[0].id;
        assert_eq!(open.items[0].acknowledged_by, None);
        let a = admin::acknowledge_alert(&pool, id, "alice").await.unwrap();
        assert_eq!(a.acknowledged_by.as_deref(), Some("alice"));
        let at = a.acknowledged_at.expect("acknowledged_at set");
        let again = admin::acknowledge_alert(&pool, id, "bob").await.unwrap();
        assert_eq!((again.acknowledged_by.as_deref(), again.acknowledged_at), (Some("alice"), Some(at)), "the first acknowledgement stands");
        assert!(matches!(admin::acknowledge_alert(&pool, id + 1000, "alice").await, Err(AlerterError::NotFound(_))));

        step(620).await;
        step(950).await;
        assert_eq!(statuses(&rx), ["firing", "firing"], "acknowledged: no repeat while it fires");

        let un = admin::unacknowledge_alert(&pool, id).await.unwrap();
        assert_eq!((un.acknowledged_by, un.acknowledged_at), (None, None));
        step(1010).await;
        assert_eq!(statuses(&rx), ["firing", "firing", "firing"], "taken back: the repeats return");

        admin::acknowledge_alert(&pool, id, "alice").await.unwrap();
        temps(&w, &[40.0]).await;
        step(1080).await;
        assert_eq!(statuses(&rx), ["firing", "firing", "firing", "resolved"], "the resolve of an acknowledged alert is sent");
        assert!(matches!(admin::acknowledge_alert(&pool, id, "alice").await, Err(AlerterError::Conflict(_))));
        assert!(matches!(admin::unacknowledge_alert(&pool, id).await, Err(AlerterError::Conflict(_))));
        let history = admin::alert_history(&pool, Default::default()).await.unwrap();
        assert_eq!(history.items[0].acknowledged_by.as_deref(), Some("alice"), "history keeps who acknowledged");

        // Each notification names the alert it carries.
        let n = admin::list_notifications(&pool, Default::default()).await.unwrap();
        assert_eq!(n.items.len(), 4);
        for x in &n.items {
            let ids: Vec<i64> = x.alerts.iter().map(|a| a.id).collect();
            assert_eq!(ids, [id], "{x:?}");
            assert_eq!(x.alerts[0].rule_name, "GpuHot");
            assert_eq!(x.alerts[0].labels["gpu_id"], "1");
        }
    }
}

both_backends! {
    async fn the_critical_temperature_alert_stands_for_the_warning(db) {
        // The shipped rules and inhibition: a GPU at 90 °C fires both
        // temperature rules, and only the critical one is notified; a GPU
        // at 82 °C fires the warning, which nothing inhibits.
        let (pool, w) = setup(&db, 2).await;
        let c = pool.get().await.unwrap();
        c.batch_execute(
            "UPDATE alert_rules SET enabled = true, for_seconds = 0
              WHERE name IN ('GpuTemperatureHigh', 'GpuTemperatureCritical')",
        ).await.unwrap();
        temps(&w, &[90.0, 82.0]).await;
        evaluate_once(&pool, &fast_config()).await.unwrap();
        let rows = c.query(
            "SELECT r.name, a.labels->>'gpu', a.state, a.muted_by FROM alert_records a JOIN alert_rules r ON r.id = a.rule_id
              ORDER BY 2, 1", &[]).await.unwrap();
        let got: Vec<(String, String, String, Option<String>)> = rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get::<_, Option<String>>(3).map(|m| m.split(':').next().unwrap().to_string())))
            .collect();
        let s = |x: &str| x.to_string();
        assert_eq!(got, vec![
            (s("GpuTemperatureCritical"), s("0"), s("firing"), None),
            (s("GpuTemperatureHigh"), s("0"), s("firing"), Some(s("inhibit"))),
            (s("GpuTemperatureHigh"), s("1"), s("firing"), None),
        ]);
    }
}

both_backends! {
    async fn malformed_silence_inhibition_and_scope_rows_are_skipped_not_matching_everything(db) {
        // Rows edited by hand past the API: matchers that do not parse. Each
        // must be skipped (and logged), never read as "no matchers", which
        // matches every alert.
        let (pool, w) = setup(&db, 2).await;
        let rx = Receiver::start().await;
        let hook = webhook(&pool, &rx.url, 5, 2000).await;
        hot_rule(&pool, "GpuHot", 85.0, 0, json!([{"type": "webhook", "webhook_id": hook}]), json!(["alertname", "host", "gpu"])).await;
        let bad = hot_rule(&pool, "BadScope", 0.0, 0, json!([{"type": "webhook", "webhook_id": hook}]), json!(["alertname"])).await;
        let c = pool.get().await.unwrap();
        c.execute("UPDATE alert_rules SET scope = '[{\"nme\": \"gpu\", \"value\": \"0\"}]' WHERE id = $1", &[&bad]).await.unwrap();
        c.batch_execute(
            "INSERT INTO silences (matchers, starts_at, ends_at, created_by, comment) VALUES
               ('[{\"label\": \"gpu\", \"value\": \"0\"}]', now() - interval '1 minute', now() + interval '1 hour', 'mallory', 'typo'),
               ('[{\"name\": \"gpu\", \"op\": \"=~\", \"value\": \"(\"}]', now() - interval '1 minute', now() + interval '1 hour', 'mallory', 'bad regex');
             INSERT INTO inhibit_rules (name, source_matchers, target_matchers, equal)
             VALUES ('broken', '[{\"nam\": \"x\"}]', '[{\"nam\": \"x\"}]', '[]');",
        ).await.unwrap();
        temps(&w, &[90.0, 91.0]).await;
        run(fast_config(), pool.clone(), true, CancellationToken::new()).await.unwrap();

        let mut gpus: Vec<String> = rx.delivered().values()
            .flat_map(|b| alerts(&b[0]).iter().map(|a| format!("{}/{}", a["labels"]["alertname"].as_str().unwrap(), a["labels"]["gpu"].as_str().unwrap())).collect::<Vec<_>>())
            .collect();
        gpus.sort();
        assert_eq!(gpus, ["GpuHot/0", "GpuHot/1"], "both hot GPUs notify; the bad rule is not evaluated");
        let muted: i64 = c.query_one("SELECT count(*) FROM alert_records WHERE muted_by IS NOT NULL", &[]).await.unwrap().get(0);
        assert_eq!(muted, 0, "a silence or inhibition that does not parse mutes nothing");
        let of_bad: i64 = c.query_one("SELECT count(*) FROM alert_records WHERE rule_id = $1", &[&bad]).await.unwrap().get(0);
        assert_eq!(of_bad, 0, "a rule whose scope does not parse is not evaluated");
    }
}

both_backends! {
    async fn webhook_filters_are_matchers_and_one_that_does_not_parse_receives_nothing(db) {
        let (pool, w) = setup(&db, 1).await;
        let c = pool.get().await.unwrap();
        let mut hooks = Vec::new();
        for filters in [
            r#"[{"name": "severity", "op": "=~", "value": "crit.*"}]"#,
            r#"[{"name": "host", "op": "!=", "value": "h1"}]"#,
            r#"[{"name": "host", "op": "=~", "value": "("}]"#,
            r#"{"severity": ["warning", "critical"]}"#,
        ] {
            let rx = Receiver::start().await;
            let id = webhook(&pool, &rx.url, 5, 2000).await;
            c.execute("UPDATE webhooks SET filters = $1::text::jsonb WHERE id = $2", &[&filters, &id]).await.unwrap();
            hooks.push(rx);
        }
        // No channels: every enabled webhook whose filters match the group.
        hot_rule(&pool, "GpuHot", 85.0, 0, json!([]), json!(["alertname", "host"])).await;
        temps(&w, &[95.0]).await;
        run(fast_config(), pool.clone(), true, CancellationToken::new()).await.unwrap();
        let got: Vec<usize> = hooks.iter().map(|rx| rx.delivered().len()).collect();
        assert_eq!(got, [1, 0, 0, 1], "regex and legacy filters match; != h1 does not; the broken one gets nothing");
    }
}

both_backends! {
    async fn increase_rules_fire_on_counter_growth_not_on_its_level(db) {
        use gpuwatch_store::GpuSample;
        let (pool, w) = setup(&db, 2).await;
        let c = pool.get().await.unwrap();
        c.batch_execute(
            "INSERT INTO alert_rules (name, metric, reduction, window_seconds, comparison, threshold, for_seconds, severity)
             VALUES ('EccDbeGrowing', 'gpu.ecc_dbe_volatile', 'increase', 300, '>', 0, 0, 'critical'),
                    ('XidSeen', 'gpu.xid_errors', 'increase', 300, '>', 0, 0, 'critical')",
        ).await.unwrap();
        // GPU 1's counter stands at a high level without moving; GPU 2's
        // counter restarts (driver reload) and then grows by one; GPU 2 reports an XID.
        let now = chrono::Utc::now();
        let sample = |gpu: i64, ago: i64, ecc: i64, xid: Option<i32>| GpuSample {
            gpu_id: gpu, host_id: "h1".into(), collected_at: now - chrono::Duration::seconds(ago),
            ecc_dbe_volatile: Some(ecc), xid_last: xid, ..Default::default()
        };
        w.write(&[sample(1, 120, 40, None), sample(1, 60, 40, None), sample(1, 0, 40, None),
                  sample(2, 120, 9, None), sample(2, 60, 0, Some(79)), sample(2, 0, 1, None)]).await.unwrap();
        gpuwatch_alerter::evaluate_once(&pool, &fast_config()).await.unwrap();
        let firing: Vec<(String, String, f64)> = c.query(
            "SELECT r.name, a.labels->>'gpu', a.value FROM alert_records a JOIN alert_rules r ON r.id = a.rule_id
             WHERE a.state = 'firing' ORDER BY 1, 2", &[]).await.unwrap()
            .iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        assert_eq!(firing, [("EccDbeGrowing".into(), "1".into(), 1.0), ("XidSeen".into(), "1".into(), 1.0)],
            "only GPU index 1 (id 2) grew; a high but steady counter does not fire");
        // increase of a gauge is refused, naming the field.
        let bad = gpuwatch_alerter::admin::create_rule(&pool, serde_json::from_value(serde_json::json!({
            "name": "TempIncrease", "metric": "gpu.temperature", "reduction": "increase", "comparison": ">", "threshold": 1})).unwrap(), None).await;
        match bad {
            Err(gpuwatch_alerter::AlerterError::Invalid(m)) => assert!(m.iter().any(|e| e.starts_with("reduction:")), "{m:?}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}
