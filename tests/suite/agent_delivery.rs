//! The agent's delivery against a real `gpuwatch serve`: collection goes on
//! while serve is down, the spool replays in order when it is back, a batch
//! the server refuses is set aside with the server's reason while later
//! batches are stored, and an HTTP agent learns its host's environments
//! from serve's agent endpoint.

use std::path::Path;
use std::time::Duration;

use gpuwatch_collector::spool::Spool;
use gpuwatch_store::testing::{Kind, TestDb};
use gpuwatch_store::{Batch, HostSample};

use crate::common::{create_token, free_port, gpuwatch_run, psql, wait_for, Proc, ServeProc};

const HOST: &str = "sim-host-000";

fn spooled(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json.gz"))
                .count()
        })
        .unwrap_or(0)
}

fn curl(url: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_set_aside_with_its_reason_while_collection_and_replay_go_on() {
    let db = TestDb::new(Kind::Postgres).await;
    let url = db.store_config().url;
    gpuwatch_run(&["migrate"], &[("DATABASE_URL", url.clone())]);
    let token = create_token(&url, &["--role", "agent", "--host", HOST, "--name", HOST]);
    let spool = tempfile::tempdir().unwrap();
    // A batch left by an earlier run that the server will refuse: a CPU
    // figure no host can have. It is the oldest, so it is sent first.
    {
        let mut s = Spool::open(spool.path(), 1 << 30).unwrap();
        s.push(&Batch {
            host: vec![HostSample {
                host_id: HOST.into(),
                collected_at: chrono::Utc::now() - chrono::Duration::seconds(30),
                cpu_usage_percent: Some(1000.0),
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
    }
    let (port, agent_port) = (free_port(), free_port());
    let agent = Proc::spawn(
        &["collector"],
        &[
            ("DATABASE_URL", url.clone()),
            ("GPUWATCH_COLLECTOR__SOURCE", "sim".into()),
            ("GPUWATCH_COLLECTOR__SINK", "http".into()),
            (
                "GPUWATCH_COLLECTOR__HTTP__URL",
                format!("http://127.0.0.1:{port}"),
            ),
            ("GPUWATCH_COLLECTOR__HTTP__TOKEN", token),
            ("GPUWATCH_COLLECTOR__HTTP__TIMEOUT_SECS", "5".into()),
            ("GPUWATCH_COLLECTOR__INTERVAL", "1s".into()),
            ("GPUWATCH_COLLECTOR__SIM__HOSTS", "1".into()),
            ("GPUWATCH_COLLECTOR__SIM__GPUS_PER_HOST", "1".into()),
            (
                "GPUWATCH_COLLECTOR__SPOOL__DIR",
                spool.path().display().to_string(),
            ),
            ("GPUWATCH_COLLECTOR__SPOOL__RETRY_MAX", "2s".into()),
            (
                "GPUWATCH_COLLECTOR__LISTEN",
                format!("127.0.0.1:{agent_port}"),
            ),
        ],
    );
    // serve is not there: the agent keeps collecting into its spool.
    wait_for(
        "batches to pile up while serve is down",
        Duration::from_secs(60),
        || spooled(spool.path()) >= 5,
    );
    let m = curl(&format!("http://127.0.0.1:{agent_port}/metrics"));
    assert!(
        metric(&m, "gpuwatch_collector_spool_batches").is_some_and(|n| n >= 5.0),
        "{m}"
    );
    assert!(
        metric(&m, "gpuwatch_collector_spool_bytes").is_some_and(|n| n > 0.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "gpuwatch_collector_spool_dropped_total"),
        Some(0.0),
        "{m}"
    );

    let serve = ServeProc::start_on(port, &url, &[]);
    let rows = || {
        psql(
            &url,
            &format!("SELECT count(*) FROM host_metrics WHERE host_id = '{HOST}'"),
        )
        .parse::<usize>()
        .unwrap_or(0)
    };
    wait_for(
        "the spool to drain into serve",
        Duration::from_secs(120),
        || spooled(spool.path()) <= 1 && rows() >= 6,
    );
    let log = agent.terminate();
    drop(serve);
    assert_eq!(spooled(spool.path()), 0, "exit left batches spooled");

    // The refused batch is aside with the server's words, nothing of it stored.
    let rejected = spool.path().join("rejected");
    let reason = std::fs::read_to_string(rejected.join(format!("{:020}.reason", 0)))
        .expect("the reason beside the refused batch");
    assert!(
        reason.contains("422") && reason.contains("cpu_usage_percent"),
        "{reason}"
    );
    assert!(rejected.join(format!("{:020}.json.gz", 0)).exists());
    assert_eq!(
        psql(&url, &format!("SELECT count(*) FROM host_metrics WHERE host_id = '{HOST}' AND cpu_usage_percent > 100")),
        "0"
    );
    // Every batch delivered is stored once: one host sample per batch.
    // (A backlog goes out several batches per request, logged with their number.)
    let delivered: usize = log
        .iter()
        .map(|l| {
            if l.contains("batch delivered") {
                1
            } else if l.contains("spooled batches delivered") {
                l.split("batches=")
                    .nth(1)
                    .and_then(|r| r.split(' ').next()?.parse().ok())
                    .unwrap_or(0)
            } else {
                0
            }
        })
        .sum();
    assert_eq!(
        rows(),
        delivered,
        "stored rows and delivered batches differ"
    );
    assert!(
        log.iter().any(|l| l.contains("retrying")),
        "transient failures were retried"
    );
    assert!(!log.iter().any(|l| l.contains("spool full")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_agent_gets_the_environments_of_its_own_host_only() {
    let db = TestDb::new(Kind::Postgres).await;
    let url = db.store_config().url;
    gpuwatch_run(&["migrate"], &[("DATABASE_URL", url.clone())]);
    psql(
        &url,
        "INSERT INTO customers (id, username, email, password_hash) VALUES (1, 'c1', 'c1@example.com', 'x');
         INSERT INTO hosts (id, name, ip_address, os_type, total_cpu, total_memory)
           VALUES ('a', 'a', '10.0.0.1', 'linux', 8, 1), ('b', 'b', '10.0.0.2', 'linux', 8, 1);
         INSERT INTO environments (id, customer_id, host_id, name, image, status, cpu, memory, cgroup_path)
           VALUES ('env-a1', 1, 'a', 'a1', 'img', 'running', 4, 1024, 'gw/env-a1'),
                  ('env-a2', 1, 'a', 'a2', 'img', 'stopped', 4, 1024, NULL),
                  ('env-b1', 1, 'b', 'b1', 'img', 'running', 2, 2048, NULL);",
    );
    let serve = ServeProc::start(&url, &[]);
    let bound = create_token(&url, &["--role", "agent", "--host", "a", "--name", "a"]);
    let gateway = create_token(&url, &["--role", "agent", "--any-host", "--name", "gw"]);
    let viewer = create_token(&url, &["--role", "viewer", "--name", "v"]);
    let http = reqwest::Client::new();
    let get = |token: &str, query: &str| {
        let req = http
            .get(format!("{}/api/v1/agent/environments{query}", serve.url))
            .bearer_auth(token);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let (st, body) = get(&bound, "").await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!([{"id": "env-a1", "container_id": null, "cgroup_path": "gw/env-a1", "cpu": 4, "memory": 1024}])
    );
    assert_eq!(get(&bound, "?host=a").await.0, 200);
    let (st, body) = get(&bound, "?host=b").await;
    assert_eq!(st, 403, "a bound token reads another host: {body}");
    assert_eq!(get(&gateway, "?host=b").await.1[0]["id"], "env-b1");
    let (st, body) = get(&gateway, "").await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("host:"),
        "{body}"
    );
    assert_eq!(get(&gateway, "?host=a%00").await.0, 422);
    assert_eq!(get(&viewer, "").await.0, 403, "agent-only");

    // The HTTP sink uses the same endpoint.
    let cfg = gpuwatch_collector::HttpConfig {
        url: serve.url.clone(),
        token: bound.clone(),
        ..Default::default()
    };
    let sink = gpuwatch_collector::sinks::http::HttpSink::new(&cfg).unwrap();
    let envs = sink.environments("a").await.expect("the list");
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].env_id, "env-a1");
    assert_eq!(envs[0].cgroup_path.as_deref(), Some("gw/env-a1"));
    assert_eq!(envs[0].cpu_cores, 4.0);
    assert!(
        sink.environments("b").await.is_none(),
        "refused, and the agent keeps its list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_id_with_a_newline_cannot_forge_a_log_line() {
    let db = TestDb::new(Kind::Postgres).await;
    let url = db.store_config().url;
    gpuwatch_run(&["migrate"], &[("DATABASE_URL", url.clone())]);
    let serve = ServeProc::start(&url, &[]);
    let gateway = create_token(&url, &["--role", "agent", "--any-host", "--name", "gw"]);
    let forged = "gpu01\n2026-01-01T00:00:00.000000Z ERROR gpuwatch: forged record";
    let payload = serde_json::json!({
        "version": gpuwatch_store::PAYLOAD_VERSION,
        "host": {"id": forged, "name": "gpu01", "hostname": "gpu01", "ip_address": "10.0.0.1",
            "os_type": "linux", "os_version": "12", "arch": "x86_64", "total_cpu": 8,
            "total_memory": 1_i64 << 30, "total_disk": 1_i64 << 30, "total_gpu": 0, "labels": {}},
        "gpus": [],
        "batch": {"gpu": [], "env": [], "host": [{
            "host_id": forged,
            "collected_at": chrono::Utc::now().to_rfc3339(),
            "cpu_usage_percent": 5.0,
        }]},
    });
    let http = reqwest::Client::new();
    let status = http
        .post(format!("{}/api/v1/ingest", serve.url))
        .bearer_auth(&gateway)
        .json(&payload)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    // The same id through the agent endpoint's query: refused before any log.
    let refused = http
        .get(format!("{}/api/v1/agent/environments", serve.url))
        .query(&[("host", forged)])
        .bearer_auth(&gateway)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    eprintln!("ingest of a host id with a newline answered {status}");
    let mut log = Vec::new();
    if status == 200 {
        // Stored: the id is in the log, on the one line of its record.
        wait_for(
            "serve to log the inventory",
            Duration::from_secs(30),
            || {
                log = serve.proc.log();
                log.iter().any(|l| l.contains("inventory registered"))
            },
        );
        let line = log
            .iter()
            .find(|l| l.contains("inventory registered"))
            .unwrap();
        assert!(
            line.contains(r"gpu01\n2026-01-01"),
            "the id is logged escaped: {line}"
        );
    } else {
        assert!(
            (400..500).contains(&status),
            "refused as the caller's fault: {status}"
        );
        log = serve.proc.log();
    }
    assert!(
        !log.iter().any(|l| l.starts_with("2026-01-01")),
        "a forged line:\n{}",
        log.join("\n")
    );
}
