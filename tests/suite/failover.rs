//! The database fails over under load. A pg_auto_failover cluster (one
//! primary, two streaming standbys; `ha_cluster`) serves 20 simulated hosts
//! pushing through `gpuwatch serve`, a running alerter with a flapping rule
//! and webhook receiver, and a running billing meter. The primary is killed
//! (SIGKILL of its postmaster and keeper), the monitor promotes a standby
//! while the aggregator runs too;
//! then the old primary rejoins as a standby and the new primary is killed
//! too. Afterwards: every sample the collector took is stored exactly once,
//! every notification arrived exactly once, no interval is billed twice or
//! skipped. Then replay is paused on a standby: the lag on `/metrics`
//! rises and the shipped lag rule fires. Throughout, reads go to the
//! standbys (`database.read_url`, `prefer-standby`): `/api/v1/hosts` and
//! `/metrics` answer every poll, across both failovers, and `/ready` shows
//! that a standby served them.
//!
//! Also here: a pooled connection to a server that turned read-only is
//! evicted on first use (the store's pool), on a plain PostgreSQL.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::alerting::{Receiver, SECRET};
use crate::common::{free_port, gpuwatch_run, psql, wait_for, Proc};
use crate::ha_cluster::{HaCluster, DB};
use gpuwatch_store::testing::{Kind, TestDb};
use tokio::runtime::Runtime;

const HOSTS: i64 = 20;
const GPUS_PER_HOST: i64 = 2;

/// Row count of host_metrics on node `url` (-1 when it does not answer).
fn stored(url: &str) -> i64 {
    psql(url, "SELECT count(*) FROM host_metrics")
        .parse()
        .unwrap_or(-1)
}

/// Kills the primary and measures (kill → promotion, promotion → first
/// stored write), polling the nodes themselves. Returns the new primary.
fn fail_over(cluster: &mut HaCluster, old: usize) -> (usize, Duration, Duration) {
    let before = stored(&cluster.nodes[old].url(DB));
    let killed = Instant::now();
    cluster.kill(old);
    let (new, promoted) = loop {
        if let Some(p) = cluster.primary() {
            break (p, killed.elapsed());
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "no standby promoted within 60 s: {:?}\n{}",
            cluster.states(),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let url = cluster.nodes[new].url(DB);
    let at_promotion = stored(&url).max(before);
    let written = loop {
        if stored(&url) > at_promotion {
            break killed.elapsed() - promoted;
        }
        assert!(
            killed.elapsed() - promoted < Duration::from_secs(60),
            "no write stored within 60 s of the promotion"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    (new, promoted, written)
}

/// `/metrics` of serve, as text.
fn scrape(port: u16) -> String {
    std::process::Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The largest value of `family` on `/metrics` (None when absent).
fn gauge(text: &str, family: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(f64::max)
}

/// Webhook, a flapping rule, the lag rule turned to notify at once, and a
/// running environment with a price: what the alerter and meter work on.
fn fixtures(receiver: &str) -> String {
    // The hot GPU runs at 87 ± 2 °C: a rule at 88 °C fires and resolves all
    // through the run.
    format!(
        "INSERT INTO webhooks (name, url, secret, max_attempts, timeout_ms) VALUES ('oncall', '{receiver}', '{SECRET}', 1000, 2000);
         INSERT INTO alert_rules (name, metric, reduction, window_seconds, comparison, threshold, for_seconds,
             severity, channels, group_by, repeat_interval_seconds)
         VALUES ('GpuFlapping', 'gpu.temperature', 'last', 10, '>=', 88, 0, 'warning',
             '[{{\"type\": \"webhook\", \"webhook_id\": 1}}]', '[\"alertname\", \"host\", \"gpu\"]', 86400);
         UPDATE alert_rules SET for_seconds = 0, threshold = 2,
             channels = '[{{\"type\": \"webhook\", \"webhook_id\": 1}}]'
           WHERE name = 'DatabaseReplicationLag';
         INSERT INTO customers (id, username, email, password_hash) VALUES (1, 'c1', 'c1@example.com', 'x');
         INSERT INTO billing_prices (resource_type, gpu_model, unit_price, currency, valid_from)
           VALUES ('cpu', '', 0.05, 'CNY', '2020-01-01');
         INSERT INTO environment_status_history (env_id, customer_id, status, cpu, memory, gpu, valid_from)
           VALUES ('env-ha', 1, 'running', 2, 0, 0, date_trunc('minute', now()) - interval '5 minutes');
         SELECT 'ok';"
    )
}

/// Every role's configuration: short cycles, 20 hosts pushing every second.
fn role_env(url: &str, readers: &str, port: u16, spool: &Path) -> Vec<(&'static str, String)> {
    [
        ("DATABASE_URL", url.to_string()),
        ("DATABASE_READ_URL", readers.to_string()),
        ("GPUWATCH_API__LISTEN", format!("127.0.0.1:{port}")),
        ("GPUWATCH_DATABASE__CONNECT_TIMEOUT_SECS", "2".into()),
        ("GPUWATCH_LOG__FORMAT", "json".into()),
        (
            "GPUWATCH_LOG__LEVEL",
            "gpuwatch_collector=debug,info".into(),
        ),
        ("GPUWATCH_EXPORTER__REFRESH_SECS", "1".into()),
        ("GPUWATCH_ALERTER__INTERVAL_SECS", "0.5".into()),
        ("GPUWATCH_ALERTER__GROUP_WAIT_SECS", "0".into()),
        ("GPUWATCH_ALERTER__GROUP_INTERVAL_SECS", "0.5".into()),
        ("GPUWATCH_ALERTER__POLL_INTERVAL_SECS", "0.2".into()),
        ("GPUWATCH_ALERTER__WEBHOOK__BACKOFF_BASE_SECS", "0.2".into()),
        ("GPUWATCH_ALERTER__WEBHOOK__BACKOFF_MAX_SECS", "2".into()),
        ("GPUWATCH_AGGREGATOR__INTERVAL_SECS", "1".into()),
        ("GPUWATCH_BILLING__SCHEDULE", "*/2 * * * * *".into()),
        ("GPUWATCH_BILLING__PERIOD", "1m".into()),
        ("GPUWATCH_BILLING__ALLOWED_LATENESS", "0s".into()),
        ("GPUWATCH_COLLECTOR__SINK", "http".into()),
        (
            "GPUWATCH_COLLECTOR__HTTP__URL",
            format!("http://127.0.0.1:{port}"),
        ),
        ("GPUWATCH_COLLECTOR__HTTP__TIMEOUT_SECS", "5".into()),
        ("GPUWATCH_COLLECTOR__INTERVAL_SECS", "1".into()),
        ("GPUWATCH_COLLECTOR__SIM__HOSTS", HOSTS.to_string()),
        (
            "GPUWATCH_COLLECTOR__SIM__GPUS_PER_HOST",
            GPUS_PER_HOST.to_string(),
        ),
        (
            "GPUWATCH_COLLECTOR__SIM__SILENT_HOST_AFTER_SECS",
            "0".into(),
        ),
        (
            "GPUWATCH_COLLECTOR__SPOOL__DIR",
            spool.display().to_string(),
        ),
    ]
    .into()
}

/// What one poll of the read side saw: `/api/v1/hosts`' status, whether
/// `/metrics` carried GPUs, and the role `/ready` says the readers reached
/// (empty while `/ready` itself is 503, as it is while the primary is down).
#[derive(Debug, Clone)]
struct ReadPoll {
    at: Duration,
    hosts: String,
    metrics: bool,
    readers: String,
}

/// Polls the read side of serve every 250 ms until `stop`.
fn poll_reads(
    port: u16,
    token: String,
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<()>, Arc<Mutex<Vec<ReadPoll>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    let started = Instant::now();
    let handle = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let hosts = std::process::Command::new("curl")
                .args(["-s", "-w", " %{http_code}", "-m", "5"])
                .arg("-H")
                .arg(format!("Authorization: Bearer {token}"))
                .arg(format!("http://127.0.0.1:{port}/api/v1/hosts?limit=5"))
                .output()
                .map(|o| {
                    let out = String::from_utf8_lossy(&o.stdout).into_owned();
                    match out.rsplit_once(' ') {
                        Some((_, "200")) => "200".to_string(),
                        _ => out,
                    }
                })
                .unwrap_or_default();
            let metrics = scrape(port).contains("DCGM_FI_DEV_GPU_TEMP{");
            let readers = ready(port)["readers"]["role"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            out.lock().unwrap().push(ReadPoll {
                at: started.elapsed(),
                hosts,
                metrics,
                readers,
            });
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    (handle, seen)
}

/// `/ready` of serve as JSON (Null when it does not answer).
fn ready(port: u16) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/ready")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    serde_json::from_str(&out).unwrap_or_default()
}

fn spooled(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json.gz"))
                .count()
        })
        .unwrap_or(0)
}

/// Lost samples 0: every collection the collector logged is stored, for
/// every host and GPU. Doubled samples 0: no key is stored twice.
fn assert_every_sample_stored_once(url: &str, log: &[String], spool: &Path) {
    let mut collected: Vec<String> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "collected")
        .map(|v| v["fields"]["collected_at"].as_str().unwrap().to_string())
        .collect();
    collected.sort();
    let stored_times: Vec<String> = psql(
        url,
        "SELECT to_char(collected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"') FROM host_metrics GROUP BY collected_at ORDER BY 1",
    )
    .lines()
    .map(str::to_string)
    .collect();
    assert!(
        collected.len() >= 20,
        "only {} collections logged",
        collected.len()
    );
    assert_eq!(
        stored_times, collected,
        "stored collection times differ from what the collector took"
    );
    let incomplete = psql(
        url,
        &format!(
            "SELECT count(*) FILTER (WHERE h <> {HOSTS} OR g <> {}) FROM (
                 SELECT h.collected_at, count(DISTINCT h.host_id) h,
                        (SELECT count(*) FROM gpu_metrics g WHERE g.collected_at = h.collected_at) g
                 FROM host_metrics h GROUP BY 1) x",
            HOSTS * GPUS_PER_HOST
        ),
    );
    assert_eq!(incomplete, "0", "some collection is incomplete");
    // The primary keys make this structural; checked anyway.
    let doubled = psql(
        url,
        "SELECT (SELECT count(*) - count(DISTINCT (host_id, collected_at)) FROM host_metrics)
              + (SELECT count(*) - count(DISTINCT (gpu_id, collected_at)) FROM gpu_metrics)",
    );
    assert_eq!(doubled, "0", "doubled samples");
    assert_eq!(spooled(spool), 0, "the spool drained");
    assert_eq!(
        std::fs::read_dir(spool.join("rejected"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "nothing may be rejected"
    );
}

/// Every outbox row arrived at the receiver, none twice.
fn assert_every_notification_once(url: &str, rx: &Receiver) {
    let ids: Vec<String> = psql(url, "SELECT id::text FROM alert_outbox ORDER BY 1")
        .lines()
        .map(str::to_string)
        .collect();
    let delivered: BTreeMap<String, usize> = rx
        .delivered()
        .into_iter()
        .map(|(id, bodies)| (id, bodies.len()))
        .collect();
    assert!(
        ids.len() >= 4,
        "the flapping rule notified only {} times",
        ids.len()
    );
    assert_eq!(
        delivered.keys().cloned().collect::<Vec<_>>(),
        ids,
        "every notification arrived"
    );
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "notifications sent twice: {twice:?}");
    println!("notifications: {} delivered, 0 twice", ids.len());
}

/// The minutes since the environment started are billed once each, with
/// no gap, across both failovers.
fn assert_every_minute_billed_once(url: &str) {
    let check = psql(
        url,
        "SELECT count(*), count(DISTINCT start_time),
                count(*) FILTER (WHERE end_time <> start_time + interval '1 minute'),
                (max(end_time) - min(start_time)) = count(*) * interval '1 minute',
                max(end_time) >= date_trunc('minute', now()) - interval '1 minute'
         FROM billing_records WHERE env_id = 'env-ha' AND resource_type = 'cpu' AND NOT is_correction",
    );
    let f: Vec<&str> = check.split('|').collect();
    assert_eq!(f.len(), 5, "{check}");
    // The five minutes before the run, and every minute closed during it:
    // the meter went on billing after both failovers, up to the last one.
    assert!(f[0].parse::<i64>().unwrap() >= 5, "minutes billed: {check}");
    assert_eq!(f[4], "t", "the meter stopped billing in the run: {check}");
    assert_eq!(f[0], f[1], "an interval billed twice: {check}");
    assert_eq!((f[2], f[3]), ("0", "t"), "a gap or a bad interval: {check}");
}

/// Kills the primary `old` and prints the two times against the goal
/// (writes within 10 s of the promotion). The goal is a figure to report,
/// not a limit: on a shared machine a timing says as much about the
/// neighbours as about gpuwatch. `fail_over` fails the test where writes
/// do not resume at all (60 s).
fn fail_over_and_report(cluster: &mut HaCluster, old: usize, round: &str) -> usize {
    let (new, promoted, written) = fail_over(cluster, old);
    let goal = if written < Duration::from_secs(10) {
        "within the 10 s goal"
    } else {
        "OVER the 10 s goal"
    };
    println!(
        "failover {round}: promotion {:.1} s after the kill, first write {:.1} s after the promotion ({goal})",
        promoted.as_secs_f64(),
        written.as_secs_f64()
    );
    new
}

/// Replay paused on a standby while writes continue: the lag rises on
/// /metrics and the shipped lag rule fires.
fn pause_replay_and_see_the_lag(
    cluster: &HaCluster,
    primary: usize,
    port: u16,
    rt: &Runtime,
    rx: &Receiver,
) {
    let standby = (0..3).find(|&i| i != primary).unwrap();
    let standby_url = cluster.nodes[standby].url(DB);
    assert_eq!(
        psql(
            &standby_url,
            "SELECT pg_wal_replay_pause(); SELECT 'paused'"
        ),
        "paused"
    );
    wait_for(
        "the lag on /metrics to pass 3 s",
        Duration::from_secs(30),
        || gauge(&scrape(port), "gpuwatch_db_replication_lag_seconds").unwrap_or(0.0) > 3.0,
    );
    let metrics = scrape(port);
    assert!(
        gauge(&metrics, "gpuwatch_db_replication_lag_bytes").unwrap_or(0.0) > 0.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("gpuwatch_db_up{role=\"primary\"} 1"),
        "{metrics}"
    );
    rt.block_on(rx.wait_for("the lag rule to fire", 30, |b| {
        b.iter().any(|n| {
            n["commonLabels"]["alertname"] == "DatabaseReplicationLag" && n["status"] == "firing"
        })
    }));
    psql(&standby_url, "SELECT pg_wal_replay_resume()");
}

/// Every poll of `/api/v1/hosts` and `/metrics` answered, through both
/// failovers, and `/ready` named a standby as the readers' server.
fn assert_reads_answered_from_standbys(polls: &[ReadPoll]) {
    let failed: Vec<&ReadPoll> = polls
        .iter()
        .filter(|p| p.hosts != "200" || !p.metrics)
        .collect();
    let standby = polls.iter().filter(|p| p.readers == "standby").count();
    let primary = polls.iter().filter(|p| p.readers == "primary").count();
    println!(
        "reads during the failovers: {} polls over {:.0} s, {} failed, readers on a standby in {standby}, on a primary in {primary}, /ready 503 in {}",
        polls.len(),
        polls.last().map_or(0.0, |p| p.at.as_secs_f64()),
        failed.len(),
        polls.iter().filter(|p| p.readers.is_empty()).count()
    );
    assert!(polls.len() > 20, "too few polls: {polls:?}");
    assert!(
        failed.is_empty(),
        "reads failed during the failover: {failed:?}"
    );
    // prefer-standby: while the HA manager restarts the standbys to follow
    // a new primary, reads fall back to the primary for a moment.
    assert!(
        standby > 2 * primary,
        "the readers stayed on a primary: {polls:?}"
    );
}

#[test]
fn the_primary_dies_twice_under_load_and_nothing_is_lost_or_doubled() {
    let rt = Runtime::new().unwrap();
    let rx = rt.block_on(Receiver::start());
    let mut cluster = HaCluster::start();
    let (port, spool) = (free_port(), tempfile::tempdir().unwrap());
    let url = cluster.url("read-write");
    // The roles' configuration asks for the token the database issues.
    let db = [("DATABASE_URL", url.clone())];
    gpuwatch_run(&["migrate"], &db);
    let token = gpuwatch_run(
        &[
            "token",
            "create",
            "--role",
            "agent",
            "--any-host",
            "--name",
            "sim-fleet",
        ],
        &db,
    )
    .lines()
    .find_map(|l| l.strip_prefix("token ").map(str::to_string))
    .expect("token create prints the token");
    let viewer = gpuwatch_run(
        &["token", "create", "--role", "viewer", "--name", "reads"],
        &db,
    )
    .lines()
    .find_map(|l| l.strip_prefix("token ").map(str::to_string))
    .expect("token create prints the token");
    let mut env = role_env(&url, &cluster.url("prefer-standby"), port, spool.path());
    env.push(("GPUWATCH_COLLECTOR__HTTP__TOKEN", token));
    let p1 = cluster.primary().expect("the cluster has a primary");
    let first = cluster.nodes[p1].url(DB);
    assert_eq!(psql(&first, &fixtures(&rx.url)), "ok", "test fixtures");
    let roles: Vec<Proc> = ["serve", "alerter", "billing", "aggregator"]
        .iter()
        .map(|r| Proc::spawn(&[r], &env))
        .collect();
    wait_for("serve to be ready", Duration::from_secs(30), || {
        ready(port)["status"] == "ready"
    });
    assert_eq!(
        ready(port)["database"]["role"],
        "primary",
        "/ready names the role"
    );
    let collector = Proc::spawn(&["collector"], &env);
    wait_for("the first batches", Duration::from_secs(60), || {
        stored(&first) >= 3 * HOSTS
    });
    wait_for(
        "/metrics to carry the fleet",
        Duration::from_secs(30),
        || scrape(port).contains("DCGM_FI_DEV_GPU_TEMP{"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (poller, polls) = poll_reads(port, viewer, stop.clone());
    std::thread::sleep(Duration::from_secs(3));

    let p2 = fail_over_and_report(&mut cluster, p1, "1");
    // The dead node's replication slot on the new primary has no standby.
    wait_for(
        "gpuwatch_db_standbys_missing to count the dead node",
        Duration::from_secs(20),
        || gauge(&scrape(port), "gpuwatch_db_standbys_missing").unwrap_or(0.0) >= 1.0,
    );
    std::thread::sleep(Duration::from_secs(3));
    // The old primary rejoins as a standby, then the new primary dies.
    cluster.restart(p1);
    cluster.wait_states(
        "the old primary back as a standby",
        &["primary", "secondary", "secondary"],
    );
    std::thread::sleep(Duration::from_secs(3));
    let p3 = fail_over_and_report(&mut cluster, p2, "2 (old primary back as a standby)");
    cluster.restart(p2);
    cluster.wait_states(
        "all three nodes back",
        &["primary", "secondary", "secondary"],
    );
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    assert_reads_answered_from_standbys(&polls.lock().unwrap());
    pause_replay_and_see_the_lag(&cluster, p3, port, &rt, &rx);

    let primary = cluster.nodes[p3].url(DB);
    wait_for("the spool to drain", Duration::from_secs(120), || {
        spooled(spool.path()) == 0
    });
    std::thread::sleep(Duration::from_secs(2));
    let log = collector.terminate();
    wait_for(
        "every notification delivered",
        Duration::from_secs(60),
        || {
            psql(
                &primary,
                "SELECT count(*) FROM alert_outbox WHERE status <> 'delivered'",
            ) == "0"
        },
    );
    // Each role rode out both failovers: still running, and it stops cleanly.
    for role in roles {
        role.terminate();
    }
    // The alerter ran until it was stopped, so it may have queued a
    // notification after the wait above (a rule resolving once samples
    // stopped). Queued is durable: an alerter started again sends it.
    let undelivered = "SELECT count(*) FROM alert_outbox WHERE status <> 'delivered'";
    if psql(&primary, undelivered) != "0" {
        let alerter = Proc::spawn(&["alerter"], &env);
        wait_for(
            "the notifications queued at the stop delivered by an alerter started again",
            Duration::from_secs(60),
            || psql(&primary, undelivered) == "0",
        );
        alerter.terminate();
    }
    assert_every_sample_stored_once(&primary, &log, spool.path());
    assert_every_notification_once(&primary, &rx);
    assert_every_minute_billed_once(&primary);
}

/// A pool of one connection; the connection refuses writes from now on,
/// as a demoted primary's would.
async fn read_only_pool(url: String) -> (gpuwatch_store::Pool, i32) {
    let mut cfg = gpuwatch_store::StoreConfig {
        url,
        ..Default::default()
    };
    cfg.pool_size = 1;
    let pool = gpuwatch_store::connect(&cfg).await.expect("pool");
    let c = pool.get().await.unwrap();
    c.batch_execute("SET default_transaction_read_only = on")
        .await
        .unwrap();
    let pid = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    (pool, pid)
}

#[tokio::test]
async fn a_read_only_refusal_is_temporary_and_evicts_the_connection() {
    let db = TestDb::new(Kind::Postgres).await;
    let (pool, pid) = read_only_pool(db.url.clone()).await;
    let c = pool.get().await.unwrap();
    let e = c
        .execute("CREATE TABLE probe (i int)", &[])
        .await
        .unwrap_err();
    let e = gpuwatch_store::StoreError::query("creating probe", e);
    assert!(
        matches!(e, gpuwatch_store::StoreError::ReadOnly { .. }),
        "{e:?}"
    );
    assert!(
        e.is_temporary(),
        "a read-only server is a reason to reconnect, not bad input"
    );
    drop(c);
    let c = pool.get().await.unwrap();
    let again: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(
        again, pid,
        "the connection that saw 25006 was handed out again"
    );
    c.execute("CREATE TABLE probe (i int)", &[])
        .await
        .expect("a fresh connection writes");
}

#[tokio::test]
async fn a_read_write_pool_drops_a_connection_to_a_read_only_server_at_checkout() {
    let db = TestDb::new(Kind::Postgres).await;
    let url = format!("{}?target_session_attrs=read-write", db.url);
    let (pool, pid) = read_only_pool(url).await;
    let c = pool.get().await.unwrap();
    let again: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(
        again, pid,
        "a connection to a read-only server was handed out"
    );
    c.execute("CREATE TABLE probe (i int)", &[])
        .await
        .expect("a fresh connection writes");
}
