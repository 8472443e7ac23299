//! `POST /api/v1/ingest` against a real server and database: good batches
//! are stored once, and every kind of bad input gets a 4xx with a message
//! that says what is wrong, with nothing half-written.

use crate::common;

use std::io::Write;

use chrono::{Duration, DurationRound, Utc};
use gpuwatch_api::ApiConfig;
use gpuwatch_store::inventory::{GpuInfo, HostInfo};
use gpuwatch_store::testing::TestDb;
use gpuwatch_store::{
    both_backends, Batch, GpuReading, GpuSample, HostSample, IngestPayload, Pool,
};
use serde_json::Value;

pub(crate) struct Server {
    pub(crate) url: String,
    pub(crate) pool: Pool,
}

pub(crate) async fn start(db: &TestDb, cfg: ApiConfig) -> Server {
    let (url, pool) = common::serve_in_process(db, cfg).await;
    Server { url, pool }
}

pub(crate) fn payload(host: &str, n: usize) -> IngestPayload {
    let at = Utc::now().duration_trunc(Duration::seconds(1)).unwrap() - Duration::minutes(5);
    let info = HostInfo {
        id: host.into(),
        name: host.into(),
        hostname: format!("{host}.example"),
        ip_address: "10.0.0.7".into(),
        os_type: "linux".into(),
        os_version: "Debian 12".into(),
        arch: "x86_64".into(),
        total_cpu: 32,
        total_memory: 1 << 37,
        total_disk: 1 << 41,
        total_gpu: 2,
        labels: serde_json::json!({"zone": "a"}),
    };
    let gpus: Vec<GpuInfo> = (0..2)
        .map(|i| GpuInfo {
            host_id: host.into(),
            gpu_index: i,
            uuid: format!("GPU-{host}-{i}"),
            name: "NVIDIA L40S".into(),
            brand: "NVIDIA".into(),
            architecture: "Ada Lovelace".into(),
            memory_total: 48 << 30,
            compute_capability: "8.9".into(),
            power_limit: Some(350),
            temperature_limit: Some(85),
            pci_bus_id: Some(format!("00000000:{:02X}:00.0", 0x17 + i)),
            driver_version: Some("550.54.15".into()),
            serial: None,
            vbios_version: None,
        })
        .collect();
    let mut batch = Batch::default();
    for k in 0..n {
        let t = at + Duration::seconds(10 * k as i64);
        for g in &gpus {
            batch.gpu.push(GpuReading {
                uuid: g.uuid.clone(),
                sample: GpuSample {
                    host_id: host.into(),
                    collected_at: t,
                    utilization_percent: Some(50.0),
                    temperature: Some(60.0),
                    ..Default::default()
                },
            });
        }
        batch.host.push(HostSample {
            host_id: host.into(),
            collected_at: t,
            cpu_usage_percent: Some(12.5),
            ..Default::default()
        });
    }
    IngestPayload {
        version: 1,
        host: info,
        gpus,
        batch,
    }
}

pub(crate) async fn token(pool: &Pool, role: &str, host: Option<&str>) -> String {
    gpuwatch_api::auth::create(pool, "test", role, host)
        .await
        .unwrap()
        .1
}

pub(crate) async fn post(
    s: &Server,
    token: Option<&str>,
    body: Vec<u8>,
    encoding: Option<&str>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/ingest", s.url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) fn json(p: &IngestPayload) -> Vec<u8> {
    serde_json::to_vec(p).unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

pub(crate) fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn stored(db: &TestDb) -> (i64, i64) {
    let r = db
        .client()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM gpu_metrics), (SELECT count(*) FROM host_metrics)",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

both_backends! {
    async fn a_good_batch_is_stored_once_even_when_resent(db) {
        let s = start(&db, ApiConfig::default()).await;
        let t = token(&s.pool, "agent", Some("gpu-host-1")).await;
        let p = payload("gpu-host-1", 3);
        let (code, body) = post(&s, Some(&t), gzip(&json(&p)), Some("gzip")).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!((body["rows"].as_u64(), body["inserted"].as_u64()), (Some(9), Some(9)));
        let (code, body) = post(&s, Some(&t), json(&p), None).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["duplicates"].as_u64(), Some(9));
        assert_eq!(stored(&db).await, (6, 3));
        let c = db.client().await;
        let n: i64 = c.query_one("SELECT count(*) FROM gpus WHERE host_id = 'gpu-host-1'", &[]).await.unwrap().get(0);
        assert_eq!(n, 2, "the inventory was registered");
    }
}

both_backends! {
    async fn tokens_are_checked(db) {
        let s = start(&db, ApiConfig::default()).await;
        let body = json(&payload("gpu-host-1", 1));
        let (code, v) = post(&s, None, body.clone(), None).await;
        assert_eq!(code, 401);
        assert!(message(&v).contains("missing bearer token"), "{v}");
        let (code, v) = post(&s, Some("gwt_not-a-real-token"), body.clone(), None).await;
        assert_eq!(code, 401);
        assert!(message(&v).contains("unknown or revoked token"), "{v}");
        let other = token(&s.pool, "agent", Some("gpu-host-2")).await;
        let (code, v) = post(&s, Some(&other), body.clone(), None).await;
        assert_eq!(code, 403);
        assert!(message(&v).contains("reports for host \"gpu-host-2\""), "{v}");
        let viewer = token(&s.pool, "viewer", None).await;
        let (code, _) = post(&s, Some(&viewer), body.clone(), None).await;
        assert_eq!(code, 403);
        let (id, revoked) = gpuwatch_api::auth::create(&s.pool, "gone", "agent", None).await.unwrap();
        gpuwatch_api::auth::revoke(&s.pool, id).await.unwrap();
        let (code, _) = post(&s, Some(&revoked), body, None).await;
        assert_eq!(code, 401);
        assert_eq!(stored(&db).await, (0, 0));
    }
}

both_backends! {
    async fn malformed_and_oversize_bodies_are_refused_with_a_reason(db) {
        let cfg = ApiConfig { max_body_bytes: 4096, max_decompressed_bytes: 64 * 1024, ..ApiConfig::default() };
        let s = start(&db, cfg).await;
        let t = token(&s.pool, "agent", None).await;
        let cases: Vec<(Vec<u8>, Option<&str>, u16, &str)> = vec![
            (b"{not json".to_vec(), None, 400, "not a valid ingest payload"),
            (br#"{"version":1,"host":{},"gpus":[],"batch":{"gpu":[],"host":[],"env":[]},"extra":1}"#.to_vec(), None, 400, "not a valid ingest payload"),
            (json(&IngestPayload { version: 7, ..payload("h", 1) }), None, 400, "payload version 7 is not supported"),
            (json(&payload("h", 1)).replace_nan(), None, 400, "not a valid ingest payload"),
            (vec![b' '; 10_000], None, 413, "request body exceeds 4096 bytes"),
            (gzip(&vec![b' '; 200_000]), Some("gzip"), 413, "decompressed body exceeds 65536 bytes"),
            (b"garbage".to_vec(), Some("gzip"), 400, "not valid gzip"),
            (json(&payload("h", 1)), Some("br"), 415, "content-encoding \"br\" is not supported"),
        ];
        for (body, enc, want, text) in cases {
            let (code, v) = post(&s, Some(&t), body, enc).await;
            assert_eq!(code, want, "{v}");
            assert!(message(&v).contains(text), "wanted {text:?} in {v}");
        }
        assert_eq!(stored(&db).await, (0, 0));
    }
}

both_backends! {
    async fn one_bad_sample_rejects_the_batch_and_names_every_problem(db) {
        let s = start(&db, ApiConfig::default()).await;
        let t = token(&s.pool, "agent", None).await;
        let mut p = payload("gpu-host-9", 4);
        p.batch.gpu[1].sample.temperature = Some(400.0);
        p.batch.gpu[2].sample.utilization_percent = Some(-3.0);
        p.batch.gpu[3].sample.energy_consumed_mj = Some(-1);
        p.batch.host[1].collected_at = Utc::now() + Duration::days(2);
        p.batch.host[2].host_id = "someone-else".into();
        p.batch.gpu[5].uuid = "GPU-unknown".into();
        let (code, v) = post(&s, Some(&t), json(&p), None).await;
        assert_eq!(code, 422, "{v}");
        assert!(message(&v).contains("6 problem(s) in the payload; nothing was stored"), "{v}");
        let details: Vec<String> = v["error"]["details"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect();
        for want in [
            "batch.gpu[1].sample.temperature: 400 is outside [-50, 150]",
            "batch.gpu[2].sample.utilization_percent: -3 is outside [0, 100]",
            "batch.gpu[3].sample.energy_consumed_mj: -1 is negative",
            "batch.host[1].collected_at:",
            "batch.host[2].host_id: \"someone-else\" is not the payload's host \"gpu-host-9\"",
            "batch.gpu[5].uuid: \"GPU-unknown\" is not among the payload's gpus",
        ] {
            assert!(details.iter().any(|d| d.starts_with(want)), "missing {want:?} in {details:#?}");
        }
        assert!(details.iter().any(|d| d.contains("is in the future")), "{details:#?}");
        assert_eq!(stored(&db).await, (0, 0), "nothing may be half-written");
    }
}

/// JSON has no NaN; an agent that prints one sends invalid JSON.
trait ReplaceNan {
    fn replace_nan(self) -> Vec<u8>;
}

impl ReplaceNan for Vec<u8> {
    fn replace_nan(self) -> Vec<u8> {
        String::from_utf8(self)
            .unwrap()
            .replacen("\"temperature\":60.0", "\"temperature\":NaN", 1)
            .into_bytes()
    }
}

/// `method` `path` with a JSON body and a bearer token: (status, body).
async fn call(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", s.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `p` moved `secs` later, so it is new data rather than a re-send.
fn later(mut p: IngestPayload, secs: i64) -> IngestPayload {
    for r in &mut p.batch.gpu {
        r.sample.collected_at += Duration::seconds(secs);
    }
    for h in &mut p.batch.host {
        h.collected_at += Duration::seconds(secs);
    }
    p
}

async fn host_row(db: &TestDb, id: &str) -> (String, Value) {
    let r = db
        .client()
        .await
        .query_one("SELECT status, labels FROM hosts WHERE id = $1", &[&id])
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

both_backends! {
    async fn maintenance_and_operator_labels_survive_the_agents_reports(db) {
        let s = start(&db, ApiConfig::default()).await;
        let agent = token(&s.pool, "agent", Some("churn-host")).await;
        let operator = token(&s.pool, "operator", None).await;
        let viewer = token(&s.pool, "viewer", None).await;
        let p = payload("churn-host", 1);
        assert_eq!(post(&s, Some(&agent), json(&p), None).await.0, 200);

        let patch = serde_json::json!({"status": "maintenance", "labels": {"rack": "r7"}});
        let (code, _) = call(&s, reqwest::Method::PATCH, "/api/v1/hosts/churn-host", &viewer, patch.clone()).await;
        assert_eq!(code, 403, "a viewer may not change a host");
        let (code, v) = call(&s, reqwest::Method::PATCH, "/api/v1/hosts/churn-host", &operator, patch).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["status"], "maintenance");

        // New samples, then a changed inventory (a full re-registration).
        assert_eq!(post(&s, Some(&agent), json(&later(p.clone(), 10)), None).await.0, 200);
        let mut relabelled = later(p.clone(), 20);
        relabelled.host.labels = serde_json::json!({"zone": "b"});
        assert_eq!(post(&s, Some(&agent), json(&relabelled), None).await.0, 200);
        let now = Utc::now();
        let report = gpuwatch_aggregator::liveness::check(&s.pool, Duration::seconds(1), now + Duration::hours(1)).await.unwrap();
        assert!(report.went_offline.is_empty(), "liveness leaves maintenance alone: {report:?}");
        let (status, labels) = host_row(&db, "churn-host").await;
        assert_eq!(status, "maintenance", "reports and liveness keep the operator's maintenance");
        assert_eq!(labels, serde_json::json!({"zone": "b", "rack": "r7"}));

        let back = serde_json::json!({"status": "online", "labels": {}});
        let (code, v) = call(&s, reqwest::Method::PATCH, "/api/v1/hosts/churn-host", &operator, back).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(host_row(&db, "churn-host").await, ("online".to_string(), serde_json::json!({"zone": "b"})));

        for (path, body, want) in [
            ("/api/v1/hosts/churn-host", serde_json::json!({"status": "offline"}), 422),
            ("/api/v1/hosts/churn-host", serde_json::json!({"labels": {"k": 1}}), 422),
            ("/api/v1/hosts/churn-host", serde_json::json!({"labels": {"k": "a\u{0}"}}), 422),
            ("/api/v1/hosts/no-such-host", serde_json::json!({"status": "online"}), 404),
        ] {
            let before = host_row(&db, "churn-host").await;
            let (code, v) = call(&s, reqwest::Method::PATCH, path, &operator, body).await;
            assert_eq!(code, want, "{path}: {v}");
            assert_eq!(host_row(&db, "churn-host").await, before);
        }
    }
}

both_backends! {
    async fn a_swapped_gpu_registers_anew_and_the_old_one_keeps_its_history(db) {
        let s = start(&db, ApiConfig::default()).await;
        let t = token(&s.pool, "agent", Some("swap-host")).await;
        let p = payload("swap-host", 2);
        assert_eq!(post(&s, Some(&t), json(&p), None).await.0, 200);

        let mut swapped = later(p.clone(), 60);
        swapped.gpus[1].uuid = "GPU-swap-host-1-new".into();
        for r in swapped.batch.gpu.iter_mut().filter(|r| r.uuid == "GPU-swap-host-1") {
            r.uuid = "GPU-swap-host-1-new".into();
        }
        let (code, v) = post(&s, Some(&t), json(&swapped), None).await;
        assert_eq!(code, 200, "{v}");
        let c = db.client().await;
        let rows = c
            .query(
                "SELECT g.uuid, g.gpu_index, g.removed_at IS NOT NULL, g.last_seen_at,
                        (SELECT count(*) FROM gpu_metrics m WHERE m.gpu_id = g.id)
                   FROM gpus g WHERE g.host_id = 'swap-host' ORDER BY g.id",
                &[],
            )
            .await
            .unwrap();
        let got: Vec<(String, i32, bool, i64)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(4))).collect();
        assert_eq!(
            got,
            [
                ("GPU-swap-host-0".to_string(), 0, false, 4),
                ("GPU-swap-host-1".to_string(), 1, true, 2),
                ("GPU-swap-host-1-new".to_string(), 1, false, 2),
            ]
        );
        let last: Option<chrono::DateTime<Utc>> = rows[2].get(3);
        assert_eq!(last, swapped.batch.gpu.iter().map(|r| r.sample.collected_at).max(), "last_seen_at is the latest sample");

        // A GPU missing from the inventory is marked removed; its samples stay.
        let mut missing = later(swapped.clone(), 60);
        missing.gpus.truncate(1);
        missing.batch.gpu.retain(|r| r.uuid == "GPU-swap-host-0");
        assert_eq!(post(&s, Some(&t), json(&missing), None).await.0, 200);
        let n: i64 = c
            .query_one("SELECT count(*) FROM gpus WHERE host_id = 'swap-host' AND removed_at IS NULL", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        assert_eq!(stored(&db).await.0, 4 + 2 + 2 + 2);
    }
}

both_backends! {
    async fn only_an_admin_moves_a_gpu_and_then_only_its_new_host_may_report_it(db) {
        let s = start(&db, ApiConfig::default()).await;
        let ta = token(&s.pool, "agent", Some("move-a")).await;
        let tb = token(&s.pool, "agent", Some("move-b")).await;
        let admin = token(&s.pool, "admin", None).await;
        let operator = token(&s.pool, "operator", None).await;
        let (pa, pb) = (payload("move-a", 1), payload("move-b", 1));
        assert_eq!(post(&s, Some(&ta), json(&pa), None).await.0, 200);
        assert_eq!(post(&s, Some(&tb), json(&pb), None).await.0, 200);
        let id: i64 = db.client().await
            .query_one("SELECT id FROM gpus WHERE uuid = 'GPU-move-a-1'", &[])
            .await
            .unwrap()
            .get(0);
        let path = format!("/api/v1/gpus/{id}/move");
        let to_b = |index: i32| serde_json::json!({"host_id": "move-b", "gpu_index": index});
        assert_eq!(call(&s, reqwest::Method::POST, &path, &operator, to_b(2)).await.0, 403);
        let (code, v) = call(&s, reqwest::Method::POST, &path, &admin, to_b(0)).await;
        assert_eq!(code, 409, "index 0 of move-b is taken: {v}");
        let (code, v) = call(&s, reqwest::Method::POST, &path, &admin, serde_json::json!({"host_id": "nowhere", "gpu_index": 2})).await;
        assert_eq!(code, 422, "{v}");
        let (code, v) = call(&s, reqwest::Method::POST, &path, &admin, to_b(2)).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["host_id"], "move-b");

        // The old host still lists the card: refused, naming the new holder.
        let (code, v) = post(&s, Some(&ta), json(&later(pa.clone(), 10)), None).await;
        assert_eq!(code, 409, "{v}");
        assert!(message(&v).contains("move-b"), "{v}");
        let mut pa2 = later(pa, 20);
        pa2.gpus.truncate(1);
        pa2.batch.gpu.retain(|r| r.uuid == "GPU-move-a-0");
        assert_eq!(post(&s, Some(&ta), json(&pa2), None).await.0, 200);
        // The new host lists it at its index there.
        let mut pb2 = later(pb, 20);
        let mut moved = pa2.gpus[0].clone();
        moved.host_id = "move-b".into();
        moved.uuid = "GPU-move-a-1".into();
        moved.gpu_index = 2;
        pb2.gpus.push(moved);
        let (code, v) = post(&s, Some(&tb), json(&pb2), None).await;
        assert_eq!(code, 200, "{v}");
    }
}

both_backends! {
    async fn a_gpu_silent_while_its_host_reports_fires_the_shipped_rule(db) {
        let s = start(&db, ApiConfig::default()).await;
        let t = token(&s.pool, "agent", Some("quiet-host")).await;
        let p = payload("quiet-host", 1);
        assert_eq!(post(&s, Some(&t), json(&p), None).await.0, 200);
        // Three minutes on, the host and GPU 0 report; GPU 1 stays in the inventory, silent.
        let mut quiet = later(p, 180);
        quiet.batch.gpu.retain(|r| r.uuid == "GPU-quiet-host-0");
        assert_eq!(post(&s, Some(&t), json(&quiet), None).await.0, 200);
        let c = db.client().await;
        c.batch_execute(
            "UPDATE alert_rules SET enabled = (name = 'GpuSilent');
             UPDATE alert_rules SET for_seconds = 0 WHERE name = 'GpuSilent'",
        )
        .await
        .unwrap();
        gpuwatch_alerter::evaluate_once(&s.pool, &gpuwatch_alerter::AlerterConfig::default()).await.unwrap();
        let rows = c
            .query(
                "SELECT a.labels->>'gpu', a.labels->>'host', a.state FROM alert_records a
                   JOIN alert_rules r ON r.id = a.rule_id WHERE r.name = 'GpuSilent'",
                &[],
            )
            .await
            .unwrap();
        let got: Vec<(Option<String>, Option<String>, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        assert_eq!(got, [(Some("1".to_string()), Some("quiet-host".to_string()), "firing".to_string())]);
    }
}
