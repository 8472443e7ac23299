//! `/api/v1` against a real server and database: every route checks its
//! roles (401 without a token, 403 for a role it does not allow), lists
//! page, sort and filter, bad input gets a 4xx whose message says what is
//! wrong, and the OpenAPI document lists exactly what is served.

use gpuwatch_api::ApiConfig;
use gpuwatch_store::testing::TestDb;
use gpuwatch_store::{both_backends, Pool};
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::ApiClient as Server;

async fn start(db: &TestDb) -> Server {
    Server::start(db, ApiConfig::default()).await
}

/// Five hosts (h1..h5) with two GPUs each and one sample per GPU and host
/// a minute ago; h1 and h2 are labelled rack=r1, h4 is offline.
async fn seed(pool: &Pool) {
    let c = pool.get().await.unwrap();
    c.batch_execute(
        "INSERT INTO hosts (id, name, hostname, ip_address, os_type, total_cpu, total_memory, total_gpu, status, labels)
         SELECT 'h' || i, 'node-' || (6 - i), 'h' || i || '.example', '10.0.0.' || i, 'linux', 32, 1 << 30, 2,
                CASE WHEN i = 4 THEN 'offline' ELSE 'online' END,
                CASE WHEN i <= 2 THEN '{\"rack\": \"r1\"}'::jsonb ELSE '{\"rack\": \"r2\"}'::jsonb END
           FROM generate_series(1, 5) i;
         INSERT INTO gpus (host_id, gpu_index, uuid, name, memory_total)
         SELECT 'h' || i, j, 'GPU-' || i || '-' || j, CASE WHEN j = 0 THEN 'NVIDIA H100' ELSE 'NVIDIA T4' END, 80 << 30
           FROM generate_series(1, 5) i, generate_series(0, 1) j;
         INSERT INTO gpu_metrics (gpu_id, host_id, utilization_percent, temperature, collected_at)
         SELECT id, host_id, 10 * gpu_index + 5, 40 + gpu_index, now() - interval '1 minute' FROM gpus;
         INSERT INTO host_metrics (host_id, cpu_usage_percent, collected_at)
         SELECT id, 25, now() - interval '1 minute' FROM hosts;",
    )
    .await
    .expect("seed");
}

both_backends! {
    async fn every_route_checks_the_callers_role(db) {
        let s = start(&db).await;
        seed(&s.pool).await;
        let viewer = s.token("viewer").await;
        let agent = s.token("agent").await;
        let finance = s.token("finance").await;

        let (st, body) = s.get("/api/v1/hosts", None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        assert!(body["error"]["message"].as_str().unwrap().contains("Bearer"), "{body}");

        let (st, _) = s.get("/api/v1/hosts", Some("gwt_0000")).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);

        for path in ["/api/v1/hosts", "/api/v1/hosts/h1", "/api/v1/gpus", "/api/v1/series?source=gpu&metric=temperature&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z"] {
            let (st, body) = s.get(path, Some(&viewer)).await;
            assert_eq!(st, StatusCode::OK, "viewer on {path}: {body}");
            for denied in [&agent, &finance] {
                let (st, body) = s.get(path, Some(denied)).await;
                assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {body}");
                let msg = body["error"]["message"].as_str().unwrap();
                assert!(msg.contains("needs one of: admin, operator, viewer"), "{msg}");
            }
        }

        // A revoked token stops working within the token cache's period
        // (api.token_cache); the bound here is slack for a loaded machine.
        let (id, t) = gpuwatch_api::auth::create(&s.pool, "gone", "viewer", None).await.unwrap();
        assert_eq!(s.get("/api/v1/hosts", Some(&t)).await.0, StatusCode::OK);
        gpuwatch_api::auth::revoke(&s.pool, id).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while s.get("/api/v1/hosts", Some(&t)).await.0 != StatusCode::UNAUTHORIZED {
            assert!(std::time::Instant::now() < deadline, "a revoked token still works");
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
}

both_backends! {
    async fn hosts_page_sort_and_filter(db) {
        let s = start(&db).await;
        seed(&s.pool).await;
        let t = s.token("viewer").await;

        let (st, body) = s.get("/api/v1/hosts?limit=2&offset=1&sort=-id", Some(&t)).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(body["total"], 5);
        assert_eq!(body["limit"], 2);
        let ids: Vec<&str> = body["items"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["h4", "h3"]);

        // name is node-(6-i): sorting by name reverses the ids.
        let (_, body) = s.get("/api/v1/hosts?sort=name", Some(&t)).await;
        let ids: Vec<&str> = body["items"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["h5", "h4", "h3", "h2", "h1"]);

        let (_, body) = s.get("/api/v1/hosts?label=rack%3Dr1", Some(&t)).await;
        assert_eq!(body["total"], 2, "{body}");
        let (_, body) = s.get("/api/v1/hosts?status=offline", Some(&t)).await;
        assert_eq!(body["total"], 1);
        assert_eq!(body["items"][0]["id"], "h4");
        let (_, body) = s.get("/api/v1/hosts?q=h3.exa", Some(&t)).await;
        assert_eq!(body["total"], 1);
        assert_eq!(body["items"][0]["latest"]["cpu_usage_percent"], 25.0, "{body}");

        let (st, body) = s.get("/api/v1/hosts/h2", Some(&t)).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(body["gpus"].as_array().unwrap().len(), 2);
        assert_eq!(body["gpus"][1]["latest"]["utilization_percent"], 15.0, "{body}");
        let (st, body) = s.get("/api/v1/hosts/nope", Some(&t)).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert!(body["error"]["message"].as_str().unwrap().contains("nope"));
    }
}

both_backends! {
    async fn gpus_filter_and_get(db) {
        let s = start(&db).await;
        seed(&s.pool).await;
        let t = s.token("operator").await;

        let (_, body) = s.get("/api/v1/gpus?model=NVIDIA%20T4&sort=host_id", Some(&t)).await;
        assert_eq!(body["total"], 5, "{body}");
        assert!(body["items"].as_array().unwrap().iter().all(|g| g["model"] == "NVIDIA T4"));
        let (_, body) = s.get("/api/v1/gpus?host_id=h3", Some(&t)).await;
        assert_eq!(body["total"], 2);
        let id = body["items"][0]["id"].as_i64().unwrap();

        let (st, body) = s.get(&format!("/api/v1/gpus/{id}"), Some(&t)).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(body["host_id"], "h3");
        assert_eq!(body["latest"]["temperature"], 40.0, "{body}");
        assert_eq!(s.get("/api/v1/gpus/999999", Some(&t)).await.0, StatusCode::NOT_FOUND);
        let (st, body) = s.get("/api/v1/gpus/abc", Some(&t)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(body["error"]["message"].as_str().unwrap().contains("number"), "{body}");
    }
}

both_backends! {
    async fn bad_queries_say_what_is_wrong(db) {
        let s = start(&db).await;
        let t = s.token("admin").await;
        let cases = [
            ("/api/v1/hosts?colour=red", "colour"),
            ("/api/v1/hosts?limit=0", "limit must be between 1 and 1000"),
            ("/api/v1/hosts?limit=ten", "limit"),
            ("/api/v1/hosts?offset=-3", "offset"),
            ("/api/v1/hosts?sort=password", "sort by one of"),
            ("/api/v1/hosts?status=sleeping", "status must be one of online, offline, maintenance"),
            ("/api/v1/hosts?label=rack", "key=value"),
            ("/api/v1/gpus?status=busy", "status must be one of"),
            ("/api/v1/series?source=gpu&metric=temperature", "from"),
            ("/api/v1/series?source=disk&metric=x&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", "source must be gpu, host or environment"),
            ("/api/v1/series?source=gpu&metric=colour&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", "colour"),
            ("/api/v1/series?source=gpu&metric=temperature&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "must be after"),
            ("/api/v1/series?source=gpu&metric=temperature&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&step=fast", "step"),
            ("/api/v1/series?source=gpu&metric=temperature&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&step=1s", "widen step"),
        ];
        for (path, needle) in cases {
            let (st, body) = s.get(path, Some(&t)).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{path}: {body}");
            let msg = body["error"]["message"].as_str().unwrap_or_default();
            assert!(msg.contains(needle), "{path}: {msg:?} lacks {needle:?}");
        }
        let (st, body) = s.get("/api/v1/nothing", Some(&t)).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert!(body["error"]["message"].is_string());
        let resp = s.http.delete(format!("{}/api/v1/hosts", s.url)).bearer_auth(&t).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(resp.json::<Value>().await.unwrap()["error"]["message"].is_string());
    }
}

both_backends! {
    async fn series_reads_the_stored_samples(db) {
        let s = start(&db).await;
        seed(&s.pool).await;
        let t = s.token("viewer").await;
        let c = s.pool.get().await.unwrap();
        let ids: Vec<i64> = c.query("SELECT id FROM gpus WHERE host_id = 'h1' ORDER BY gpu_index", &[]).await.unwrap()
            .iter().map(|r| r.get(0)).collect();
        let now = chrono::Utc::now();
        let from = (now - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let to = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let path = format!("/api/v1/series?source=gpu&metric=utilization_percent&ids={},{}&from={from}&to={to}&step=1h", ids[0], ids[1]);
        let (st, body) = s.get(&path, Some(&t)).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let values: Vec<f64> = body["points"].as_array().unwrap().iter().filter_map(|p| p["v"].as_f64()).collect();
        // GPU 0 at 5 %, GPU 1 at 15 %: one bucket averaging both.
        assert_eq!(values, [10.0], "{body}");
    }
}

both_backends! {
    async fn ready_checks_the_schema(db) {
        let s = start(&db).await;
        let resp = s.http.get(format!("{}/ready", s.url)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(s.http.get(format!("{}/health", s.url)).send().await.unwrap().status(), StatusCode::OK);
        let c = s.pool.get().await.unwrap();
        c.execute("DELETE FROM gpuwatch_schema_migrations WHERE version = (SELECT max(version) FROM gpuwatch_schema_migrations)", &[]).await.unwrap();
        let resp = s.http.get(format!("{}/ready", s.url)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("gpuwatch migrate"), "{body}");
        let last = gpuwatch_store::migrations().last().unwrap().name;
        assert!(body["error"]["details"][0].as_str().unwrap().contains(last), "{body}");
    }
}

both_backends! {
    async fn openapi_lists_every_route_with_its_roles(db) {
        let s = start(&db).await;
        let resp = s.http.get(format!("{}/api/v1/openapi.json", s.url)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let doc: Value = resp.json().await.unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [("/api/v1/ingest", "post"), ("/api/v1/hosts", "get"), ("/api/v1/hosts/{id}", "get"),
                               ("/api/v1/gpus", "get"), ("/api/v1/gpus/{id}", "get"), ("/api/v1/series", "get"),
                               ("/api/v1/alert-rules", "post"), ("/api/v1/alert-rules/{id}", "delete"), ("/api/v1/silences", "get"),
                               ("/api/v1/webhooks/{id}", "put"), ("/api/v1/alerts/history", "get"), ("/api/v1/notifications/{id}/replay", "post")] {
            let op = &paths[path][method];
            assert!(op["x-roles"].as_array().is_some_and(|r| !r.is_empty()), "{path} {method}: {op}");
        }
        // Query parameters come from the query types; references resolve.
        let params = paths["/api/v1/hosts"]["get"]["parameters"].as_array().unwrap();
        assert!(params.iter().any(|p| p["name"] == "label" && p["in"] == "query"));
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {name}");
        }
        // Every route the router serves is in the document: an unknown
        // path answers 404, a documented one never does.
        for path in paths.keys() {
            let concrete = path.replace("{id}", "1");
            let st = s.http.get(format!("{}{concrete}", s.url)).send().await.unwrap().status();
            assert_ne!(st, StatusCode::NOT_FOUND, "{path} is documented but not served");
        }
    }
}

fn rule(name: &str) -> Value {
    serde_json::json!({
        "name": name, "metric": "gpu.temperature", "comparison": ">=", "threshold": 80.0,
        "for_seconds": 60, "severity": "warning",
        "annotations": {"summary": "{{ $labels.host }} GPU {{ $labels.gpu }} at {{ $value }} °C"}
    })
}

both_backends! {
    async fn alert_rules_crud_with_roles_and_validation(db) {
        use reqwest::Method;
        let s = start(&db).await;
        let viewer = s.token("viewer").await;
        let operator = s.token("operator").await;

        let (st, body) = s.send(Method::POST, "/api/v1/alert-rules", &viewer, Some(rule("hot"))).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
        let (st, created) = s.send(Method::POST, "/api/v1/alert-rules", &operator, Some(rule("hot"))).await;
        assert_eq!(st, StatusCode::CREATED, "{created}");
        let id = created["id"].as_i64().unwrap();
        assert_eq!(created["threshold"], 80.0);

        // Duplicate name, bad template, unknown field, wrong type: each says what is wrong.
        let (st, body) = s.send(Method::POST, "/api/v1/alert-rules", &operator, Some(rule("hot"))).await;
        assert_eq!(st, StatusCode::CONFLICT, "{body}");
        let mut bad = rule("bad-template");
        bad["annotations"]["summary"] = "{{ $labels.host ".into();
        let (st, body) = s.send(Method::POST, "/api/v1/alert-rules", &operator, Some(bad)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("annotations.summary"), "{body}");
        let mut extra = rule("extra");
        extra["colour"] = "red".into();
        let (st, body) = s.send(Method::POST, "/api/v1/alert-rules", &operator, Some(extra)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("colour"), "{body}");
        let mut wrong = rule("wrong");
        wrong["threshold"] = "hot".into();
        let (st, body) = s.send(Method::POST, "/api/v1/alert-rules", &operator, Some(wrong)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("threshold"), "{body}");
        let mut huge = rule("huge");
        huge["description"] = "x".repeat(2 << 20).into();
        let (st, body) = s.send(Method::POST, "/api/v1/alert-rules", &operator, Some(huge)).await;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
        let resp = s.http.post(format!("{}/api/v1/alert-rules", s.url)).bearer_auth(&operator)
            .body("{").header("content-type", "application/json").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

        // Listing with filters and paging; the migration's default rules are there too.
        let (st, page) = s.send(Method::GET, "/api/v1/alert-rules?name=hot&limit=10", &viewer, None).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 1, "{page}");
        let (_, all) = s.send(Method::GET, "/api/v1/alert-rules?limit=1&sort=-id", &viewer, None).await;
        assert_eq!(all["items"][0]["id"], id);
        assert!(all["total"].as_i64().unwrap() > 1, "default rules are listed: {all}");

        let mut changed = rule("hot");
        changed["threshold"] = 85.0.into();
        let (st, body) = s.send(Method::PUT, &format!("/api/v1/alert-rules/{id}"), &operator, Some(changed)).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let (_, got) = s.send(Method::GET, &format!("/api/v1/alert-rules/{id}"), &viewer, None).await;
        assert_eq!(got["threshold"], 85.0);
        let (st, _) = s.send(Method::DELETE, &format!("/api/v1/alert-rules/{id}"), &viewer, None).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let (st, _) = s.send(Method::DELETE, &format!("/api/v1/alert-rules/{id}"), &operator, None).await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        let (st, _) = s.send(Method::GET, &format!("/api/v1/alert-rules/{id}"), &viewer, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
}

both_backends! {
    async fn webhook_secrets_are_write_only(db) {
        use reqwest::Method;
        let s = start(&db).await;
        let admin = s.token("admin").await;
        let secret = "whsec_do-not-echo-me-0123456789";
        let (st, w) = s.send(Method::POST, "/api/v1/webhooks", &admin, Some(serde_json::json!({
            "name": "oncall", "url": "http://127.0.0.1:9/hook", "secret": secret
        }))).await;
        assert_eq!(st, StatusCode::CREATED, "{w}");
        assert_eq!(w["has_secret"], true);
        let id = w["id"].as_i64().unwrap();
        for path in ["/api/v1/webhooks".to_string(), format!("/api/v1/webhooks/{id}")] {
            let (st, body) = s.send(Method::GET, &path, &admin, None).await;
            assert_eq!(st, StatusCode::OK);
            assert!(!body.to_string().contains(secret), "{path} leaks the secret: {body}");
        }
        // An update without a secret keeps it; the stored value is the one given.
        let (st, body) = s.send(Method::PUT, &format!("/api/v1/webhooks/{id}"), &admin, Some(serde_json::json!({
            "name": "oncall", "url": "http://127.0.0.1:9/hook2"
        }))).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(body["has_secret"], true);
        let stored: String = s.pool.get().await.unwrap()
            .query_one("SELECT secret FROM webhooks WHERE id = $1", &[&id]).await.unwrap().get(0);
        assert_eq!(stored, secret);
        let (st, body) = s.send(Method::POST, "/api/v1/webhooks", &admin, Some(serde_json::json!({
            "name": "bad", "url": "not a url"
        }))).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("url"), "{body}");
    }
}

both_backends! {
    async fn silences_alerts_and_notifications_are_listed(db) {
        use reqwest::Method;
        let s = start(&db).await;
        let operator = s.token("operator").await;
        let viewer = s.token("viewer").await;
        let ends = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
        let (st, sil) = s.send(Method::POST, "/api/v1/silences", &operator, Some(serde_json::json!({
            "matchers": [{"name": "host", "value": "h1"}], "ends_at": ends,
            "created_by": "alice", "comment": "maintenance"
        }))).await;
        assert_eq!(st, StatusCode::CREATED, "{sil}");
        let (st, page) = s.send(Method::GET, "/api/v1/silences?state=active", &viewer, None).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 1);
        let (st, body) = s.send(Method::POST, "/api/v1/silences", &operator, Some(serde_json::json!({
            "matchers": [], "ends_at": "2020-01-01T00:00:00Z", "created_by": "alice"
        }))).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let id = sil["id"].as_i64().unwrap();
        assert_eq!(s.send(Method::DELETE, &format!("/api/v1/silences/{id}"), &operator, None).await.0, StatusCode::NO_CONTENT);

        for path in ["/api/v1/alerts", "/api/v1/alerts/history?severity=critical", "/api/v1/notifications?status=dead"] {
            let (st, body) = s.send(Method::GET, path, &viewer, None).await;
            assert_eq!(st, StatusCode::OK, "{path}: {body}");
            assert_eq!(body["total"], 0, "{path}: {body}");
        }
        let (st, body) = s.send(Method::GET, "/api/v1/alerts?state=sleeping", &viewer, None).await;
        assert!(st == StatusCode::UNPROCESSABLE_ENTITY || st == StatusCode::BAD_REQUEST, "{body}");
        let (st, _) = s.send(Method::POST, "/api/v1/notifications/00000000-0000-0000-0000-000000000000/replay", &operator, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
}

both_backends! {
    async fn one_matcher_language_for_silences_rules_webhooks_and_label_filters(db) {
        use reqwest::Method;
        let s = start(&db).await;
        seed(&s.pool).await;
        let op = s.token("operator").await;
        let msg = |b: &Value| b["error"]["message"].as_str().unwrap_or_default().to_string();

        // A silence exactly as Alertmanager's API takes it.
        let am = serde_json::json!({
            "matchers": [
                {"name": "alertname", "value": "GpuHot", "isRegex": false},
                {"name": "host", "value": "h1|h2", "isRegex": true},
                {"name": "gpu", "value": "3", "isRegex": false, "isEqual": false}
            ],
            "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2036-01-01T00:00:00Z",
            "createdBy": "alice", "comment": "maintenance"
        });
        let (st, body) = s.send(Method::POST, "/api/v1/silences", &op, Some(am)).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let ops: Vec<&str> = body["matchers"].as_array().unwrap().iter().map(|m| m["op"].as_str().unwrap()).collect();
        assert_eq!(ops, ["=", "=~", "!="], "{body}");
        // Alertmanager's text form, and today's form, are accepted too.
        for matchers in [serde_json::json!("{alertname=\"GpuHot\", severity=~\"warning|critical\"}"),
                         serde_json::json!([{"name": "gpu", "value": "1"}])] {
            let (st, body) = s.send(Method::POST, "/api/v1/silences", &op, Some(serde_json::json!({
                "matchers": matchers, "ends_at": "2036-01-01T00:00:00Z", "created_by": "bob"
            }))).await;
            assert_eq!(st, StatusCode::CREATED, "{body}");
        }
        // A regex that does not compile is refused, naming the field.
        let (st, body) = s.send(Method::POST, "/api/v1/silences", &op, Some(serde_json::json!({
            "matchers": [{"name": "host", "op": "=~", "value": "h(1"}], "ends_at": "2036-01-01T00:00:00Z", "created_by": "bob"
        }))).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(msg(&body).contains("matchers") && msg(&body).contains("does not compile"), "{body}");

        // A rule's scope in the same language; a bad regex names scope.
        let mut r = rule("scoped");
        r["scope"] = "{host=~\"h[12]\", gpu!=\"1\"}".into();
        let (st, body) = s.send(Method::POST, "/api/v1/alert-rules", &op, Some(r)).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        assert_eq!(body["scope"][0], serde_json::json!({"name": "host", "op": "=~", "value": "h[12]"}));
        let mut r = rule("badly-scoped");
        r["scope"] = serde_json::json!([{"name": "host", "op": "!~", "value": "["}]);
        let (st, body) = s.send(Method::POST, "/api/v1/alert-rules", &op, Some(r)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(msg(&body).contains("scope"), "{body}");

        // Webhook filters: matchers too; the older object form is kept as given.
        let hook = |filters: Value| serde_json::json!({"name": "pager", "url": "https://pager.example/hook", "filters": filters});
        let (st, body) = s.send(Method::POST, "/api/v1/webhooks", &op, Some(hook("{severity=~\"warning|critical\"}".into()))).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        assert_eq!(body["filters"], serde_json::json!([{"name": "severity", "op": "=~", "value": "warning|critical"}]));
        let (st, body) = s.send(Method::POST, "/api/v1/webhooks", &op, Some(hook(serde_json::json!({"severity": ["critical"]})))).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        assert_eq!(body["filters"], serde_json::json!({"severity": ["critical"]}));
        let (st, body) = s.send(Method::POST, "/api/v1/webhooks", &op, Some(hook(serde_json::json!([{"name": "severity", "op": "=~", "value": "*"}])))).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(msg(&body).contains("filters[0]"), "{body}");

        // Host label filters: every operator, paged correctly.
        for (q, total, first) in [("rack%3Dr1", 2, "h1"), ("rack!%3Dr1", 3, "h3"), ("rack%3D~%22r%5B12%5D%22", 5, "h1"),
                                  ("rack!~r2,rack%3D~r.*", 2, "h1"), ("zone%3D", 5, "h1"), ("zone!%3D", 0, "")] {
            let (st, body) = s.get(&format!("/api/v1/hosts?label={q}&limit=1&sort=id"), Some(&op)).await;
            assert_eq!(st, StatusCode::OK, "{q}: {body}");
            assert_eq!(body["total"], total, "{q}: {body}");
            assert_eq!(body["items"][0]["id"].as_str().unwrap_or(""), first, "{q}: {body}");
        }
        let (st, body) = s.get("/api/v1/hosts?label=rack%3D~(", Some(&op)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert!(msg(&body).contains("does not compile"), "{body}");
    }
}

/// schemathesis (from PyPI; `scripts/test.sh` installs it) drives every
/// operation of `/api/v1/openapi.json` against a real `gpuwatch serve` with
/// an admin token, NUL bytes included, and checks that nothing answers 5xx
/// and every answer matches the document. Skipped, saying so, where it is
/// not installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let installed = std::process::Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("schemathesis is not installed (pip install schemathesis); skipped");
        return;
    }
    let db = gpuwatch_store::testing::TestDb::new(gpuwatch_store::testing::Kind::Postgres).await;
    let url = db.store_config().url;
    crate::common::gpuwatch_run(&["migrate"], &[("DATABASE_URL", url.clone())]);
    let serve = crate::common::ServeProc::start(&url, &[("GPUWATCH_LOG__LEVEL", "warn".into())]);
    let admin = crate::common::create_token(&url, &["--role", "admin", "--name", "fuzz"]);
    let examples = std::env::var("GPUWATCH_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "15".into());
    let report = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("schemathesis")
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", serve.url))
        .args(["--header", &format!("Authorization: Bearer {admin}")])
        .args(["--checks", "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"])
        .args(["--max-examples", &examples, "--seed", "13", "--workers", "1"])
        .args(["--generation-allow-x00", "true", "--request-timeout", "30"])
        .args(["--report", "junit", "--report-dir"])
        .arg(report.path())
        .env("NO_COLOR", "1")
        // Its cache goes where it runs: not into the source tree.
        .current_dir(report.path())
        .output()
        .expect("run schemathesis");
    let text = String::from_utf8_lossy(&out.stdout);
    let tail: String = text
        .lines()
        .rev()
        .take(120)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("{tail}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{tail}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
