//! The `gpuwatch` binary as an operator runs it: bad configuration, a
//! database that is down, a wrong password, a refused CREATE EXTENSION, and
//! data flowing with the simulated fleet. Each failure must be one clear
//! line on stderr and a non-zero exit.

use crate::common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gpuwatch_store::both_backends;
use gpuwatch_store::testing::{admin_url, with_dbname, Kind, TestDb};

static SPOOLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The binary with a clean environment: only what the test passes counts.
fn gpuwatch(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = common::gpuwatch_command(args);
    // Log lines would mix with the error line; operators see them, tests need not.
    cmd.env("GPUWATCH_LOG__LEVEL", "error");
    // Each run its own spool and a free port, so parallel tests never meet.
    let spool = std::env::temp_dir().join(format!(
        "gpuwatch-test-spool-{}-{}",
        std::process::id(),
        SPOOLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    cmd.env("GPUWATCH_COLLECTOR__SPOOL__DIR", spool);
    cmd.env("GPUWATCH_API__LISTEN", "127.0.0.1:0");
    cmd.envs(env.iter().copied());
    cmd
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    gpuwatch(args, env).output().expect("run gpuwatch")
}

/// The single non-empty stderr line; fails if there are more.
fn one_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got:\n{err}");
    lines[0].to_string()
}

#[test]
fn a_bad_config_value_names_the_key_and_exits_64() {
    let dir = std::env::temp_dir().join(format!("gpuwatch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[database]\npool_size = \"lots\"\n").unwrap();
    let out = run(&["--config", file.to_str().unwrap(), "migrate"], &[]);
    assert_eq!(out.status.code(), Some(64));
    let line = one_line(&out);
    assert!(
        line.contains("database.pool_size") && line.contains("invalid type"),
        "{line}"
    );

    let out = run(
        &["collector"],
        &[("GPUWATCH_COLLECTOR__INTERVAL_SECS", "0")],
    );
    assert_eq!(out.status.code(), Some(64));
    let line = one_line(&out);
    assert!(
        line.contains("collector.interval_secs: must be between 1 and 3600, got 0"),
        "{line}"
    );
}

#[test]
fn an_unreachable_database_is_one_line_and_exit_69() {
    // Port 1 on loopback: nothing listens there.
    let out = run(
        &["migrate"],
        &[(
            "DATABASE_URL",
            "postgres://postgres:s3cret@127.0.0.1:1/gpuwatch",
        )],
    );
    assert_eq!(out.status.code(), Some(69));
    let line = one_line(&out);
    assert!(
        line.contains("cannot reach the database at 127.0.0.1:1/gpuwatch"),
        "{line}"
    );
    assert!(line.to_lowercase().contains("connection refused"), "{line}");
    assert!(!line.contains("s3cret"), "the password leaked: {line}");
}

#[tokio::test]
async fn a_wrong_password_is_named_and_the_password_never_printed() {
    // The TimescaleDB server asks every role but postgres for a password
    // (scripts/timescaledb.sh writes that pg_hba.conf).
    let admin = admin_url(Kind::TimescaleDb);
    let (c, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("TimescaleDB server");
    tokio::spawn(conn);
    let role = format!("gw_pw_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'right-one'"
    ))
    .await
    .unwrap();
    let url = admin.replacen("postgres@", &format!("{role}:wrong-one@"), 1);
    assert_ne!(
        url, admin,
        "TIMESCALE_URL must have the form postgres://postgres@host:port/db"
    );
    let out = run(&["migrate"], &[("DATABASE_URL", &url)]);
    c.batch_execute(&format!("DROP ROLE {role}")).await.unwrap();
    assert_eq!(out.status.code(), Some(69));
    let line = one_line(&out);
    assert!(
        line.contains(&format!("rejected user \"{role}\"")),
        "{line}"
    );
    assert!(line.contains("password authentication failed"), "{line}");
    assert!(!line.contains("wrong-one"), "the password leaked: {line}");
}

#[tokio::test]
async fn a_refused_create_extension_names_the_extension_and_the_fix() {
    let db = TestDb::new(Kind::Postgres).await;
    let role = format!("gw_noext_{}", std::process::id());
    let c = db.client().await;
    // A role that may create tables but not extensions: the usual app role.
    c.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT CREATE ON SCHEMA public TO {role};"
    ))
    .await
    .unwrap();
    let url = with_dbname(&admin_url(Kind::Postgres), db.name()).replacen(
        "postgres@",
        &format!("{role}@"),
        1,
    );
    let out = run(&["migrate"], &[("DATABASE_URL", &url)]);
    c.batch_execute(&format!(
        "REVOKE ALL ON SCHEMA public FROM {role}; DROP OWNED BY {role}"
    ))
    .await
    .unwrap();
    drop(c);
    drop(db);
    let _ = drop_role(&role).await;
    assert_eq!(out.status.code(), Some(1));
    let line = one_line(&out);
    assert!(line.contains("cannot create extension uuid-ossp"), "{line}");
    assert!(line.contains("permission denied"), "{line}");
    assert!(
        line.contains("CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\""),
        "{line}"
    );
}

async fn drop_role(role: &str) -> Result<(), tokio_postgres::Error> {
    let (c, conn) =
        tokio_postgres::connect(&admin_url(Kind::Postgres), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    c.batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await
}

async fn counts(db: &TestDb) -> (i64, i64, i64, i64) {
    let c = db.client().await;
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM hosts WHERE status = 'online' AND last_heartbeat IS NOT NULL),
                    (SELECT count(*) FROM gpus),
                    (SELECT count(*) FROM gpu_metrics),
                    (SELECT count(*) FROM host_metrics)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

both_backends! {
    async fn collector_once_registers_the_fleet_and_writes_its_samples(db) {
        let env = [
            ("DATABASE_URL", db.url.as_str()),
            ("GPUWATCH_COLLECTOR__SIM__HOSTS", "3"),
            ("GPUWATCH_COLLECTOR__SIM__GPUS_PER_HOST", "2"),
        ];
        let out = run(&["migrate"], &env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = run(&["collector", "--once"], &env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(counts(&db).await, (3, 6, 6, 3));
        let out = run(&["aggregator", "--once", "--catch-up"], &env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let wm: i64 = db
            .client()
            .await
            .query_one("SELECT count(watermark) FROM gpuwatch_tier_state WHERE source = 'gpu_metrics'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(wm, 2, "the aggregator set both gpu_metrics watermarks");
    }
}

both_backends! {
    async fn all_migrates_collects_and_stops_cleanly_on_sigterm(db) {
        let child = gpuwatch(&["all"], &[
            ("DATABASE_URL", db.url.as_str()),
            ("GPUWATCH_COLLECTOR__INTERVAL_SECS", "1"),
            ("GPUWATCH_COLLECTOR__SIM__HOSTS", "2"),
            ("GPUWATCH_COLLECTOR__SIM__GPUS_PER_HOST", "4"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        // Rows visibly arrive: wait for at least two collections.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let c = db.client().await;
            let n: i64 = match c.query_one("SELECT count(*) FROM gpu_metrics", &[]).await {
                Ok(r) => r.get(0),
                Err(_) => 0, // not migrated yet
            };
            if n >= 16 {
                break;
            }
            assert!(Instant::now() < deadline, "no samples arrived within 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn collector_once_print_shows_one_cycle_as_json_without_a_database() {
    let out = run(
        &["collector", "--once", "--print"],
        &[
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
            ("GPUWATCH_COLLECTOR__SIM__HOSTS", "1"),
            ("GPUWATCH_COLLECTOR__SIM__GPUS_PER_HOST", "2"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(
        doc["inventory"][0]["gpus"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(doc["batch"]["gpu"].as_array().map(Vec::len), Some(2));
    assert_eq!(doc["batch"]["host"][0]["host_id"], "sim-host-000");
    assert!(doc["batch"]["gpu"][0]["sample"]["temperature"].is_number());
}

both_backends! {
    async fn the_host_source_registers_this_machine_and_writes_its_sample(db) {
        let env = [
            ("DATABASE_URL", db.url.as_str()),
            ("GPUWATCH_COLLECTOR__SOURCE", "host"),
            ("GPUWATCH_COLLECTOR__HOST_ID", "this-machine"),
        ];
        assert!(run(&["migrate"], &env).status.success());
        let out = run(&["collector", "--once"], &env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let c = db.client().await;
        let row = c
            .query_one(
                "SELECT h.total_cpu, h.total_memory, m.memory_used, m.disk_used, m.cpu_load_1m
                 FROM hosts h JOIN host_metrics m ON m.host_id = h.id WHERE h.id = 'this-machine'",
                &[],
            )
            .await
            .expect("the host and one sample of it");
        assert!(row.get::<_, i32>(0) >= 1);
        assert!(row.get::<_, i64>(1) > 0);
        assert!(row.get::<_, Option<i64>>(2).is_some_and(|m| m > 0));
        assert!(row.get::<_, Option<i64>>(3).is_some_and(|d| d > 0));
        assert!(row.get::<_, Option<f64>>(4).is_some());
    }
}

#[tokio::test]
async fn gpuwatch_variables_of_the_scripts_and_grafana_do_not_stop_migrate() {
    let db = TestDb::new(Kind::Postgres).await;
    let out = run(
        &["migrate"],
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("GPUWATCH_CACHE", "/tmp/x"),
            ("GPUWATCH_PG_HOST", "127.0.0.1:5432"),
            ("GPUWATCH_PG_DATABASE", "gpuwatch"),
            ("GPUWATCH_PG_USER", "grafana"),
            ("GPUWATCH_PG_PASSWORD", "s3cret"),
            ("GPUWATCH_PG_SSLMODE", "disable"),
        ],
    );
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let out = run(
        &["collector", "--once", "--print"],
        &[
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
            ("GPUWATCH_COLLECTOR__SIM__HOSTS", "1"),
            ("GPUWATCH_LOG__LEVEL", "debug"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.trim().is_empty(), "expected log lines on stderr");
    assert!(
        !err.contains('\u{1b}'),
        "escape codes in piped logs:\n{err:?}"
    );
}

both_backends! {
    async fn all_serves_every_roles_self_metrics_from_one_registry(db) {
        let port = common::free_port();
        let listen = format!("127.0.0.1:{port}");
        let child = gpuwatch(&["all"], &[
            ("DATABASE_URL", db.url.as_str()),
            ("GPUWATCH_API__LISTEN", listen.as_str()),
            ("GPUWATCH_COLLECTOR__INTERVAL", "1s"),
            ("GPUWATCH_ALERTER__INTERVAL", "500ms"),
            ("GPUWATCH_EXPORTER__REFRESH", "1s"),
            ("GPUWATCH_COLLECTOR__SIM__HOSTS", "1"),
            ("GPUWATCH_COLLECTOR__SIM__GPUS_PER_HOST", "2"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let wanted = [
            "gpuwatch_samples_ingested_total{table=\"gpu_metrics\"}",
            "gpuwatch_collector_spool_batches",
            "gpuwatch_alerter_evaluation_duration_seconds_count",
            "gpuwatch_billing_meter_run_seconds",
            "gpuwatch_exporter_refresh_duration_seconds",
        ];
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::get(format!("http://{listen}/metrics")).await {
                last = r.text().await.unwrap_or_default();
                if wanted.iter().all(|w| last.contains(w)) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        for w in wanted {
            assert!(last.contains(w), "{w} missing from /metrics:\n{last}");
        }
        assert!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
}
