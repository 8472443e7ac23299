//! The alerter's library functions for the REST API, against real servers:
//! validation with field-named messages, conflicts, pagination and filters,
//! a write-only webhook secret, alert listings, and dead-letter replay.

use crate::alerting::*;
use gpuwatch_alerter::admin::*;
use gpuwatch_alerter::{run, AlerterError, WebhookConfig};
use gpuwatch_store::both_backends;
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn rule_input(v: serde_json::Value) -> RuleInput {
    serde_json::from_value(v).unwrap()
}

fn invalid(r: Result<impl std::fmt::Debug, AlerterError>) -> Vec<String> {
    match r {
        Err(AlerterError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

both_backends! {
    async fn rules_are_validated_listed_filtered_and_paged(db) {
        let (pool, _w) = setup(&db, 1).await;
        let r = create_rule(&pool, rule_input(json!({
            "name": "GpuHotA", "metric": "gpu.temperature", "comparison": ">", "threshold": 80,
            "severity": "critical", "annotations": {"summary": "{{ $labels.host }} {{ $value }}"}
        })), Some("alice")).await.unwrap();
        assert_eq!(get_rule(&pool, r.id).await.unwrap().name, "GpuHotA");
        // Duplicate name: 409.
        let dup = create_rule(&pool, rule_input(json!({"name": "GpuHotA", "metric": "gpu.temperature", "comparison": ">", "threshold": 1})), None).await;
        assert!(matches!(dup, Err(AlerterError::Conflict(_))), "{dup:?}");
        // A bad template and every other bad field, all reported at once.
        let m = invalid(create_rule(&pool, rule_input(json!({
            "name": "Bad", "metric": "gpu.nope", "comparison": "=>", "threshold": 1, "window_seconds": 0,
            "annotations": {"summary": "{{ $labels.host"}, "channels": [{"type": "webhook", "webhook_id": 999}]
        })), None).await);
        for field in ["metric:", "comparison:", "window_seconds:", "annotations.summary:", "channels[0].webhook_id:"] {
            assert!(m.iter().any(|x| x.starts_with(field)), "no message for {field}: {m:?}");
        }
        // Unknown input fields are refused by serde.
        assert!(serde_json::from_value::<RuleInput>(json!({"name": "x", "metric": "gpu.temperature", "comparison": ">", "threshold": 1, "bogus": 1})).is_err());

        for (n, sev) in [("GpuHotB", "warning"), ("HostDisk", "warning"), ("GpuHotC", "info")] {
            create_rule(&pool, rule_input(json!({"name": n, "metric": "gpu.temperature", "comparison": ">", "threshold": 1, "severity": sev})), None).await.unwrap();
        }
        // The shipped default rules are there too (disabled by setup): six
        // from alerting (0018), billing's quota rule (0019), the two
        // replication rules (0025), GpuSilent (0026) and the three
        // DLWorkspace rules (0031).
        let all = list_rules(&pool, RuleQuery::default()).await.unwrap();
        assert_eq!(all.total, 4 + 6 + 1 + 2 + 1 + 3);
        let hot = list_rules(&pool, RuleQuery { name: Some("gpuhot".into()), enabled: Some(true), sort: Some("-name".into()), ..Default::default() }).await.unwrap();
        assert_eq!(hot.items.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["GpuHotC", "GpuHotB", "GpuHotA"]);
        let page2 = list_rules(&pool, RuleQuery { name: Some("GpuHot".into()), enabled: Some(true), sort: Some("name".into()), limit: Some(2), offset: Some(2), ..Default::default() }).await.unwrap();
        assert_eq!((page2.total, page2.items.len(), page2.items[0].name.as_str()), (3, 1, "GpuHotC"));
        let warn = list_rules(&pool, RuleQuery { severity: Some("warning".into()), metric: Some("gpu.temperature".into()), enabled: Some(true), ..Default::default() }).await.unwrap();
        assert_eq!(warn.total, 2);
        assert!(invalid(list_rules(&pool, RuleQuery { sort: Some("password".into()), limit: Some(0), ..Default::default() }).await).len() == 2);

        let mut upd = rule_input(json!({"name": "GpuHotA", "metric": "gpu.power_draw", "comparison": ">", "threshold": 300}));
        upd.enabled = false;
        assert_eq!(update_rule(&pool, r.id, upd).await.unwrap().metric, "gpu.power_draw");
        delete_rule(&pool, r.id).await.unwrap();
        assert!(matches!(get_rule(&pool, r.id).await, Err(AlerterError::NotFound(_))));
        assert!(matches!(delete_rule(&pool, r.id).await, Err(AlerterError::NotFound(_))));
    }
}

both_backends! {
    async fn silences_list_by_state_and_webhook_secrets_are_write_only(db) {
        let (pool, _w) = setup(&db, 1).await;
        let now = chrono::Utc::now();
        let s: SilenceInput = serde_json::from_value(json!({
            "matchers": [{"name": "host", "value": "h1"}], "ends_at": now + chrono::Duration::hours(1),
            "created_by": "alice", "comment": "reboot"})).unwrap();
        let active = create_silence(&pool, s, "api-token:1").await.unwrap();
        assert_eq!(active.state, "active");
        assert_eq!(active.created_by, "api-token:1 (alice)", "the caller, with the name the body gave");
        let old: SilenceInput = serde_json::from_value(json!({
            "matchers": [{"name": "host", "value": "h2"}], "starts_at": now - chrono::Duration::hours(2),
            "ends_at": now - chrono::Duration::hours(1), "created_by": "bob"})).unwrap();
        create_silence(&pool, old, "api-token:1").await.unwrap();
        let list = |state: &str| {
            let pool = pool.clone();
            let state = state.to_string();
            async move { list_silences(&pool, SilenceQuery { state: Some(state), ..Default::default() }).await.unwrap() }
        };
        assert_eq!(list("active").await.items.iter().map(|s| s.id).collect::<Vec<_>>(), [active.id]);
        assert_eq!(list("expired").await.total, 1);
        assert_eq!(list("all").await.total, 2);
        let bad: SilenceInput = serde_json::from_value(json!({"matchers": [], "ends_at": now - chrono::Duration::hours(1), "created_by": ""})).unwrap();
        assert_eq!(invalid(create_silence(&pool, bad, "api-token:1").await).len(), 2);
        delete_silence(&pool, active.id).await.unwrap();
        assert_eq!(list("active").await.total, 0);

        let w: WebhookInput = serde_json::from_value(json!({"name": "pager", "url": "https://pager.example/hook", "secret": "s3cret-value"})).unwrap();
        let created = create_webhook(&pool, w, &WebhookConfig::default(), Some("alice")).await.unwrap();
        let out = serde_json::to_string(&created).unwrap();
        assert!(!out.contains("s3cret-value") && !out.contains("\"secret\""), "{out}");
        assert!(created.has_secret);
        // An update without a secret keeps it; the listing never shows it.
        let w2: WebhookInput = serde_json::from_value(json!({"name": "pager2", "url": "https://pager.example/v2"})).unwrap();
        update_webhook(&pool, created.id, w2).await.unwrap();
        let c = pool.get().await.unwrap();
        let secret: String = c.query_one("SELECT secret FROM webhooks WHERE id = $1", &[&created.id]).await.unwrap().get(0);
        assert_eq!(secret, "s3cret-value");
        let listed = serde_json::to_string(&list_webhooks(&pool, WebhookQuery::default()).await.unwrap()).unwrap();
        assert!(!listed.contains("s3cret-value"));
        let bad: WebhookInput = serde_json::from_value(json!({"name": "", "url": "ftp://x", "max_attempts": 0})).unwrap();
        assert_eq!(invalid(create_webhook(&pool, bad, &WebhookConfig::default(), None).await).len(), 3);
    }
}

both_backends! {
    async fn a_dead_letter_is_listed_and_replayed_and_alerts_are_listed(db) {
        let (pool, w) = setup(&db, 1).await;
        let rx = Receiver::start().await;
        let hook = webhook(&pool, &rx.url, 3, 2000).await;
        hot_rule(&pool, "GpuHot", 85.0, 0, json!([{"type": "webhook", "webhook_id": hook}]), json!(["alertname"])).await;
        // The receiver refuses with a final 4xx: dead after one attempt.
        let c = pool.get().await.unwrap();
        c.execute("UPDATE webhooks SET url = $1 WHERE id = $2", &[&rx.url.replace("/hook", "/nope"), &hook]).await.unwrap();
        temps(&w, &[91.0]).await;
        run(fast_config(), pool.clone(), true, CancellationToken::new()).await.unwrap();
        let dead = list_notifications(&pool, NotificationQuery { status: Some("dead".into()), ..Default::default() }).await.unwrap();
        assert_eq!(dead.total, 1);
        let id = dead.items[0].id.clone();
        assert_eq!(dead.items[0].attempts, 1, "a 404 is final, no retries");
        assert!(matches!(replay_notification(&pool, "00000000-0000-0000-0000-000000000000").await, Err(AlerterError::NotFound(_))));

        c.execute("UPDATE webhooks SET url = $1 WHERE id = $2", &[&rx.url, &hook]).await.unwrap();
        replay_notification(&pool, &id).await.unwrap();
        assert!(matches!(replay_notification(&pool, &id).await, Err(AlerterError::Conflict(_))), "only dead letters replay");
        run(fast_config(), pool.clone(), true, CancellationToken::new()).await.unwrap();
        assert_eq!(rx.delivered().keys().cloned().collect::<Vec<_>>(), std::slice::from_ref(&id), "delivered under the same id");
        let logs: Vec<(i32, Option<i32>, bool)> = c.query("SELECT attempt, status_code, succeeded FROM webhook_logs WHERE notification_id = $1::text::uuid ORDER BY attempt", &[&id])
            .await.unwrap().iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        assert_eq!(logs, [(1, Some(404), false), (2, Some(200), true)]);

        let active = list_active_alerts(&pool, AlertQuery { host: Some("h1".into()), ..Default::default() }).await.unwrap();
        assert_eq!(active.total, 1);
        assert_eq!(active.items[0].state, "firing");
        assert_eq!(active.items[0].rule_name, "GpuHot");
        assert_eq!(list_active_alerts(&pool, AlertQuery { host: Some("h9".into()), ..Default::default() }).await.unwrap().total, 0);
        let hist = alert_history(&pool, AlertQuery { state: Some("resolved".into()), ..Default::default() }).await.unwrap();
        assert_eq!(hist.total, 0);
        assert_eq!(invalid(alert_history(&pool, AlertQuery { state: Some("odd".into()), ..Default::default() }).await).len(), 1);
    }
}

both_backends! {
    async fn a_429_is_retried_after_its_retry_after(db) {
        use gpuwatch_alerter::delivery::{Deliverer, Outcome};
        let (pool, w) = setup(&db, 1).await;
        let rx = Receiver::start().await;
        rx.set(Mode::TooMany);
        let hook = webhook(&pool, &rx.url, 5, 2000).await;
        hot_rule(&pool, "GpuHot", 85.0, 0, json!([{"type": "webhook", "webhook_id": hook}]), json!(["alertname"])).await;
        temps(&w, &[91.0]).await;
        let mut cfg = fast_config();
        cfg.webhook.backoff_max_secs = 60.0; // Retry-After is honoured up to this cap
        gpuwatch_alerter::evaluate_once(&pool, &cfg).await.unwrap();
        let d = Deliverer::new(pool.clone(), cfg).unwrap();
        assert_eq!(d.deliver_one().await.unwrap(), Outcome::Retry, "429 is retried");
        let c = pool.get().await.unwrap();
        // The receiver asked for 30 s; our own backoff would have been under 0.2 s.
        let wait: f64 = c
            .query_one("SELECT extract(epoch FROM next_attempt_at - updated_at)::float8 FROM alert_outbox", &[])
            .await.unwrap().get(0);
        assert!((29.0..=31.0).contains(&wait), "next attempt in {wait} s, not after Retry-After");
        assert_eq!(d.deliver_one().await.unwrap(), Outcome::Idle, "nothing is due before then");
        let (status, attempts): (String, i32) = c.query_one("SELECT status, attempts FROM alert_outbox", &[])
            .await.map(|r| (r.get(0), r.get(1))).unwrap();
        assert_eq!((status.as_str(), attempts), ("pending", 1));
    }
}

both_backends! {
    async fn a_stored_row_that_does_not_parse_is_named_not_shown_with_defaults(db) {
        let (pool, _w) = setup(&db, 1).await;
        let c = pool.get().await.unwrap();
        let bad: i64 = c.query_one(
            "INSERT INTO silences (matchers, starts_at, ends_at, created_by) VALUES
               ('[{\"label\": \"gpu\"}]', now() - interval '1 minute', now() + interval '1 hour', 'mallory') RETURNING id",
            &[],
        ).await.unwrap().get(0);
        let good: SilenceInput = serde_json::from_value(json!({
            "matchers": "{host=~\"h1|h2\"}", "ends_at": chrono::Utc::now() + chrono::Duration::hours(1), "created_by": "alice"})).unwrap();
        let good = create_silence(&pool, good, "api-token:1").await.unwrap();
        match get_silence(&pool, bad).await {
            Err(AlerterError::Unreadable(m)) => assert!(m.contains(&format!("silence {bad}")) && m.contains("matchers"), "{m}"),
            other => panic!("expected Unreadable, got {other:?}"),
        }
        let page = list_silences(&pool, SilenceQuery::default()).await.unwrap();
        assert_eq!(page.items.iter().map(|s| s.id).collect::<Vec<_>>(), [good.id], "the bad row is left out, not shown empty");

        let rule: i64 = c.query_one("SELECT id FROM alert_rules ORDER BY id LIMIT 1", &[]).await.unwrap().get(0);
        c.execute("UPDATE alert_rules SET scope = '[{\"name\": \"gpu\", \"op\": \"~\", \"value\": \"0\"}]' WHERE id = $1", &[&rule]).await.unwrap();
        assert!(matches!(get_rule(&pool, rule).await, Err(AlerterError::Unreadable(m)) if m.contains(&format!("alert rule {rule}"))));
        let rules = list_rules(&pool, RuleQuery { limit: Some(1000), ..Default::default() }).await.unwrap();
        assert!(rules.items.iter().all(|r| r.id != rule));
        assert_eq!(rules.items.len() as i64, rules.total - 1);
    }
}

both_backends! {
    async fn webhook_headers_are_validated_and_write_only(db) {
        let (pool, _w) = setup(&db, 1).await;
        let bad: WebhookInput = serde_json::from_value(json!({"name": "pager", "url": "https://pager.example/hook",
            "headers": {"X-Auth": "token\r\nX-Forged: 1", "X-Nul": "a\u{0}b", "bad name": "v"}})).unwrap();
        let e = invalid(create_webhook(&pool, bad, &WebhookConfig::default(), None).await);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("headers.X-Auth")) && e.iter().any(|m| m.starts_with("headers.X-Nul")), "{e:?}");
        let c = pool.get().await.unwrap();
        let n: i64 = c.query_one("SELECT count(*) FROM webhooks", &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "nothing stored");

        let w: WebhookInput = serde_json::from_value(json!({"name": "pager", "url": "https://pager.example/hook",
            "headers": {"Authorization": "Bearer s3cret-token", "X-Team": "gpu"}})).unwrap();
        let created = create_webhook(&pool, w, &WebhookConfig::default(), None).await.unwrap();
        assert_eq!(created.header_names, ["Authorization", "X-Team"]);
        let shown = serde_json::to_string(&get_webhook(&pool, created.id).await.unwrap()).unwrap()
            + &serde_json::to_string(&list_webhooks(&pool, WebhookQuery::default()).await.unwrap()).unwrap();
        assert!(!shown.contains("s3cret-token") && !shown.contains("\"gpu\""), "{shown}");
        // An update without headers keeps them; {} removes them.
        let keep: WebhookInput = serde_json::from_value(json!({"name": "pager", "url": "https://pager.example/v2"})).unwrap();
        assert_eq!(update_webhook(&pool, created.id, keep).await.unwrap().header_names, ["Authorization", "X-Team"]);
        let stored: serde_json::Value = c.query_one("SELECT headers FROM webhooks WHERE id = $1", &[&created.id]).await.unwrap().get(0);
        assert_eq!(stored["Authorization"], "Bearer s3cret-token");
        let clear: WebhookInput = serde_json::from_value(json!({"name": "pager", "url": "https://pager.example/v2", "headers": {}})).unwrap();
        assert!(update_webhook(&pool, created.id, clear).await.unwrap().header_names.is_empty());
    }
}

both_backends! {
    async fn retention_deletes_only_what_is_done_with_and_old(db) {
        use gpuwatch_alerter::retention::{prune, Pruned, RetentionConfig};
        let (pool, _w) = setup(&db, 1).await;
        let c = pool.get().await.unwrap();
        let rule: i64 = c.query_one("SELECT id FROM alert_rules ORDER BY id LIMIT 1", &[]).await.unwrap().get(0);
        c.batch_execute(&format!(
            "INSERT INTO alert_outbox (channel, webhook_id, group_key, payload, status, delivered_at, created_at) VALUES
               ('webhook', 1, 'g', '{{}}', 'delivered', now() - interval '31 days', now() - interval '31 days'),
               ('webhook', 1, 'g', '{{}}', 'delivered', now() - interval '29 days', now() - interval '29 days'),
               ('webhook', 1, 'g', '{{}}', 'dead', NULL, now() - interval '400 days'),
               ('webhook', 1, 'g', '{{}}', 'pending', NULL, now() - interval '400 days');
             INSERT INTO webhook_logs (notification_id, attempt, succeeded, created_at) VALUES
               (gen_random_uuid(), 1, true, now() - interval '31 days'),
               (gen_random_uuid(), 1, NULL, now() - interval '31 days'),
               (gen_random_uuid(), 1, false, now() - interval '1 day');
             INSERT INTO alert_records (rule_id, fingerprint, severity, state, started_at, fired_at, resolved_at) VALUES
               ({rule}, 'a', 'warning', 'resolved', now() - interval '100 days', now() - interval '100 days', now() - interval '91 days'),
               ({rule}, 'b', 'warning', 'resolved', now() - interval '100 days', now() - interval '100 days', now() - interval '89 days'),
               ({rule}, 'c', 'warning', 'firing', now() - interval '400 days', now() - interval '400 days', NULL);"
        )).await.unwrap();
        let p = prune(&pool, &RetentionConfig::default()).await.unwrap();
        assert_eq!(p, Pruned { webhook_logs: 2, outbox: 1, alert_records: 1 });
        let left: Vec<String> = c.query("SELECT status FROM alert_outbox ORDER BY status", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(left, ["dead", "delivered", "pending"], "dead letters and pending rows stay, however old");
        let open: Vec<String> = c.query("SELECT fingerprint FROM alert_records ORDER BY 1", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(open, ["b", "c"]);
        assert_eq!(prune(&pool, &RetentionConfig::default()).await.unwrap(), Pruned::default(), "nothing left to prune");
        let bad = RetentionConfig { webhook_logs_days: 0, ..Default::default() };
        assert!(bad.validate()[0].starts_with("alerter.retention.webhook_logs_days"));
    }
}

both_backends! {
    async fn a_silence_is_authored_by_the_callers_token_not_the_body(db) {
        let s = crate::common::ApiClient::start(&db, gpuwatch_api::ApiConfig::default()).await;
        let operator = s.token("operator").await;
        let token_id: i64 = s.pool.get().await.unwrap()
            .query_one("SELECT max(id) FROM api_tokens", &[]).await.unwrap().get(0);
        let ends = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
        let (st, sil) = s.send(reqwest::Method::POST, "/api/v1/silences", &operator, Some(json!({
            "matchers": [{"name": "host", "value": "h1"}], "ends_at": ends, "createdBy": "the-ceo"}))).await;
        assert_eq!(st, reqwest::StatusCode::CREATED, "{sil}");
        assert_eq!(sil["created_by"], format!("api-token:{token_id} (the-ceo)"));
        // Without a name the token alone is the author.
        let (st, sil) = s.send(reqwest::Method::POST, "/api/v1/silences", &operator, Some(json!({
            "matchers": [{"name": "host", "value": "h2"}], "ends_at": ends}))).await;
        assert_eq!(st, reqwest::StatusCode::CREATED, "{sil}");
        assert_eq!(sil["created_by"], format!("api-token:{token_id}"));
    }
}

both_backends! {
    async fn inhibition_rules_are_managed_through_the_api(db) {
        use reqwest::{Method, StatusCode};
        let s = crate::common::ApiClient::start(&db, gpuwatch_api::ApiConfig::default()).await;
        let (operator, viewer) = (s.token("operator").await, s.token("viewer").await);
        let (st, page) = s.send(Method::GET, "/api/v1/inhibit-rules", &viewer, None).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        let shipped = page["total"].as_i64().unwrap();
        assert_eq!(shipped, 2, "the two shipped rules are listed: {page}");

        let body = json!({"name": "critical mutes warning", "source_matchers": "{severity=\"critical\"}",
                          "target_matchers": [{"name": "severity", "value": "warning"}], "equal": ["host", "gpu"]});
        let (st, made) = s.send(Method::POST, "/api/v1/inhibit-rules", &operator, Some(body.clone())).await;
        assert_eq!(st, StatusCode::CREATED, "{made}");
        assert_eq!(made["source_matchers"][0], json!({"name": "severity", "op": "=", "value": "critical"}));
        let id = made["id"].as_i64().unwrap();
        assert_eq!(s.send(Method::POST, "/api/v1/inhibit-rules", &viewer, Some(body.clone())).await.0, StatusCode::FORBIDDEN);
        assert_eq!(s.send(Method::POST, "/api/v1/inhibit-rules", &operator, Some(body)).await.0, StatusCode::CONFLICT, "names are unique");

        let (st, bad) = s.send(Method::PUT, &format!("/api/v1/inhibit-rules/{id}"), &operator, Some(json!({
            "name": "x", "source_matchers": [], "target_matchers": "{gpu=~\"(\"}", "equal": ["no-dash"]}))).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(bad["error"]["message"].as_str().unwrap().contains("target_matchers") || bad["error"]["message"].as_str().unwrap().contains("source_matchers"), "{bad}");
        let (st, got) = s.send(Method::GET, &format!("/api/v1/inhibit-rules/{id}"), &viewer, None).await;
        assert_eq!((st, got["name"].clone()), (StatusCode::OK, json!("critical mutes warning")), "a refused update changes nothing");

        let (st, upd) = s.send(Method::PUT, &format!("/api/v1/inhibit-rules/{id}"), &operator, Some(json!({
            "name": "critical mutes warning", "source_matchers": "{severity=\"critical\"}",
            "target_matchers": "{severity=~\"warning|info\"}", "enabled": false}))).await;
        assert_eq!(st, StatusCode::OK, "{upd}");
        assert_eq!(upd["enabled"], false);
        assert_eq!(upd["equal"], json!([]));
        assert_eq!(s.send(Method::DELETE, &format!("/api/v1/inhibit-rules/{id}"), &operator, None).await.0, StatusCode::NO_CONTENT);
        assert_eq!(s.send(Method::GET, &format!("/api/v1/inhibit-rules/{id}"), &viewer, None).await.0, StatusCode::NOT_FOUND);
    }
}
