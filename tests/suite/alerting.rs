//! Shared by the alerter's end-to-end tests: a real HTTP receiver that
//! checks Standard Webhooks signatures itself, a real SMTP server
//! (Debian's python3-aiosmtpd), and fleet setup.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use chrono::Utc;
use gpuwatch_store::testing::TestDb;
use gpuwatch_store::{migrate, BatchWriter, GpuSample, Pool, WriterConfig};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Ok,
    Fail500,
    /// Sleeps past any client timeout.
    Hang,
    /// 429 with `Retry-After: 30`.
    TooMany,
}

/// One request the receiver saw.
#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    pub body: Value,
    pub signature_ok: bool,
    pub answered: u16,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Received>>>,
    pub mode: Arc<Mutex<Mode>>,
    /// Each answer waits this long (a slow receiver).
    pub delay_ms: Arc<Mutex<u64>>,
    /// Requests that arrived, answered or not (a sender killed mid-request
    /// leaves one arrived but never answered).
    pub arrivals: Arc<Mutex<usize>>,
}

/// Verifies a Standard Webhooks signature independently of the alerter's code.
pub fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (id, ts, sigs) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let Ok(ts_n) = ts.parse::<i64>() else {
        return false;
    };
    if (Utc::now().timestamp() - ts_n).abs() > 300 {
        return false;
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    sigs.split(' ').any(|s| s == format!("v1,{want}"))
}

async fn hook(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, HeaderMap) {
    *r.arrivals.lock().unwrap() += 1;
    let delay = *r.delay_ms.lock().unwrap();
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mode = *r.mode.lock().unwrap();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let answered = match mode {
        Mode::Ok => 200,
        Mode::Fail500 => 500,
        Mode::Hang => 0,
        Mode::TooMany => 429,
    };
    r.seen.lock().unwrap().push(Received {
        id,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        signature_ok: verify(&headers, &body),
        answered,
    });
    if mode == Mode::Hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let status = StatusCode::from_u16(if answered == 0 { 500 } else { answered }).unwrap();
    let mut h = HeaderMap::new();
    if mode == Mode::TooMany {
        h.insert("retry-after", "30".parse().unwrap());
    }
    (status, h)
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
            seen: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Ok)),
            delay_ms: Arc::default(),
            arrivals: Arc::default(),
        };
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    pub fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    /// Requests arrived and not answered yet.
    pub fn in_flight(&self) -> usize {
        *self.arrivals.lock().unwrap() - self.seen.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests answered 200, by webhook-id.
    pub fn delivered(&self) -> BTreeMap<String, Vec<Value>> {
        let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for r in self.seen().into_iter().filter(|r| r.answered == 200) {
            m.entry(r.id).or_default().push(r.body);
        }
        m
    }

    /// Waits until `pred` holds for the delivered bodies.
    pub async fn wait_for(
        &self,
        what: &str,
        secs: u64,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let bodies: Vec<Value> = self
                .seen()
                .into_iter()
                .filter(|r| r.answered == 200)
                .map(|r| r.body)
                .collect();
            if pred(&bodies) {
                return bodies;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; received: {bodies:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A real SMTP server: python3-aiosmtpd on a free loopback port, writing each
/// message to a file in `dir`.
pub struct Smtp {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: std::process::Child,
}

const SMTP_SCRIPT: &str = r#"
import sys, time, os, uuid
from aiosmtpd.controller import Controller
class H:
    async def handle_DATA(self, server, session, envelope):
        p = os.path.join(sys.argv[2], uuid.uuid4().hex + '.eml')
        with open(p + '.tmp', 'wb') as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(p + '.tmp', p)
        return '250 OK'
c = Controller(H(), hostname='127.0.0.1', port=int(sys.argv[1]))
c.start()
print('ready', flush=True)
while True:
    time.sleep(3600)
"#;

impl Smtp {
    pub fn start() -> Smtp {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::common::free_port();
        let python = if std::path::Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let mut child = std::process::Command::new(python)
            .args([
                "-c",
                SMTP_SCRIPT,
                &port.to_string(),
                dir.path().to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 for the SMTP server (scripts/test.sh installs python3-aiosmtpd)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "aiosmtpd did not start; is python3-aiosmtpd installed? (scripts/test.sh installs it)"
        );
        Smtp { port, dir, child }
    }

    pub fn messages(&self) -> Vec<String> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        v.sort();
        v.iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    pub async fn wait_for(
        &self,
        what: &str,
        secs: u64,
        pred: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let m = self.messages();
            if pred(&m) {
                return m;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; got {} messages",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Migrates, connects, disables the shipped default rules (tests bring
/// their own) and registers host h1 with GPUs 0..gpus.
pub async fn setup(db: &TestDb, gpus: i32) -> (Pool, BatchWriter) {
    let cfg = db.store_config();
    migrate(&cfg).await.expect("migrate");
    let pool = gpuwatch_store::connect(&cfg).await.expect("pool");
    let c = pool.get().await.unwrap();
    c.batch_execute(
        "UPDATE alert_rules SET enabled = false;
         INSERT INTO hosts (id, name, ip_address, os_type, total_cpu, total_memory, last_heartbeat, labels)
         VALUES ('h1', 'gpu-node-1', '10.0.0.1', 'linux', 64, 1, now(), '{\"rack\": \"r1\"}');",
    )
    .await
    .unwrap();
    for i in 0..gpus {
        c.execute(
            "INSERT INTO gpus (id, host_id, gpu_index, uuid, name) VALUES ($1, 'h1', $2, $3, 'NVIDIA H100')",
            &[&(i as i64 + 1), &i, &format!("GPU-{i}")],
        )
        .await
        .unwrap();
    }
    let w = BatchWriter::new(
        pool.clone(),
        WriterConfig {
            connections: 1,
            chunk_rows: 1000,
        },
    );
    (pool, w)
}

/// Writes one sample per GPU now: `temps[i]` for GPU i+1.
pub async fn temps(w: &BatchWriter, temps: &[f64]) {
    let now = Utc::now();
    let rows: Vec<GpuSample> = temps
        .iter()
        .enumerate()
        .map(|(i, t)| GpuSample {
            gpu_id: i as i64 + 1,
            host_id: "h1".into(),
            collected_at: now,
            temperature: Some(*t),
            ..Default::default()
        })
        .collect();
    w.write(&rows).await.expect("write samples");
}

/// Inserts a webhook pointing at `url`; returns its id.
pub async fn webhook(pool: &Pool, url: &str, max_attempts: i32, timeout_ms: i32) -> i64 {
    pool.get()
        .await
        .unwrap()
        .query_one(
            "INSERT INTO webhooks (name, url, secret, max_attempts, timeout_ms) VALUES ('oncall', $1, $2, $3, $4) RETURNING id",
            &[&url, &SECRET, &max_attempts, &timeout_ms],
        )
        .await
        .unwrap()
        .get(0)
}

/// Inserts a temperature rule.
pub async fn hot_rule(
    pool: &Pool,
    name: &str,
    threshold: f64,
    for_s: i32,
    channels: Value,
    group_by: Value,
) -> i64 {
    pool.get()
        .await
        .unwrap()
        .query_one(
            "INSERT INTO alert_rules (name, metric, reduction, window_seconds, comparison, threshold, for_seconds,
                 severity, annotations, channels, group_by, repeat_interval_seconds)
             VALUES ($1, 'gpu.temperature', 'last', 10, '>=', $2, $3, 'critical',
                 '{\"summary\": \"GPU {{ $labels.gpu }} on {{ $labels.host }} at {{ $value }} C\"}', $4, $5, 86400)
             RETURNING id",
            &[&name, &threshold, &for_s, &channels, &group_by],
        )
        .await
        .unwrap()
        .get(0)
}

/// An alerter config for tests: fast cycles, no group wait, quick retries.
pub fn fast_config() -> gpuwatch_alerter::AlerterConfig {
    gpuwatch_alerter::AlerterConfig {
        interval_secs: 0.3,
        group_wait_secs: 0.0,
        group_interval_secs: 0.5,
        poll_interval_secs: 0.2,
        webhook: gpuwatch_alerter::WebhookConfig {
            backoff_base_secs: 0.2,
            backoff_max_secs: 2.0,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Checks the Alertmanager v4 webhook shape, field by field.
pub fn assert_v4(b: &Value) {
    let o = b.as_object().expect("body is an object");
    for (k, kind) in [
        ("version", "string"),
        ("groupKey", "string"),
        ("truncatedAlerts", "number"),
        ("status", "string"),
        ("receiver", "string"),
        ("groupLabels", "object"),
        ("commonLabels", "object"),
        ("commonAnnotations", "object"),
        ("externalURL", "string"),
        ("alerts", "array"),
    ] {
        let v = o.get(k).unwrap_or_else(|| panic!("v4 body lacks {k}: {b}"));
        let ok = match kind {
            "string" => v.is_string(),
            "number" => v.is_number(),
            "object" => v.is_object(),
            _ => v.is_array(),
        };
        assert!(ok, "{k} is not a {kind}: {b}");
    }
    assert_eq!(o["version"], "4");
    assert!(matches!(o["status"].as_str(), Some("firing" | "resolved")));
    for a in o["alerts"].as_array().unwrap() {
        for k in [
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        ] {
            assert!(a.get(k).is_some(), "alert lacks {k}: {a}");
        }
        for k in ["startsAt", "endsAt"] {
            chrono::DateTime::parse_from_rfc3339(a[k].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{k} is not RFC 3339: {e}"));
        }
        assert!(a["labels"]["alertname"].is_string());
    }
}
