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
