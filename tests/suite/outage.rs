//! Outages on the HTTP path: 50 simulated hosts push through `gpuwatch
//! serve` while the database is stopped for 30 s, and (separately) while
//! `serve` itself is down for 30 s. Afterwards every sample the collector
//! took is stored exactly once. Each test runs its own PostgreSQL server,
//! because stopping a shared one would break the tests beside it.

use crate::common::{free_port, gpuwatch_run as run, psql as query, wait_for, OwnPostgres, Proc};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const HOSTS: i64 = 50;
const GPUS_PER_HOST: i64 = 2;
const OUTAGE: Duration = Duration::from_secs(30);

fn spooled(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json.gz"))
                .count()
        })
        .unwrap_or(0)
}

enum Down {
    Database,
    Serve,
}

fn outage(down: Down) {
    let pg = OwnPostgres::start_new();
    let url = pg.url();
    let spool = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = [
        ("DATABASE_URL", url.clone()),
        ("GPUWATCH_API__LISTEN", format!("127.0.0.1:{port}")),
    ];
    run(&["migrate"], &base);
    let token = run(
        &[
            "token",
            "create",
            "--role",
            "agent",
            "--any-host",
            "--name",
            "sim-fleet",
        ],
        &base,
    )
    .lines()
    .find_map(|l| l.strip_prefix("token ").map(str::to_string))
    .expect("token create prints the token");
    let serve_env: Vec<(&str, String)> = base.to_vec();
    let mut serve = Some(Proc::spawn(&["serve"], &serve_env));
    let health = format!("http://127.0.0.1:{port}/health");
    let up = || {
        Command::new("curl")
            .args(["-sf", &health])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    wait_for("serve to answer /health", Duration::from_secs(30), up);
    let mut env = base.to_vec();
    env.extend([
        ("GPUWATCH_COLLECTOR__SINK", "http".to_string()),
        (
            "GPUWATCH_COLLECTOR__HTTP__URL",
            format!("http://127.0.0.1:{port}"),
        ),
        ("GPUWATCH_COLLECTOR__HTTP__TOKEN", token),
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
            spool.path().display().to_string(),
        ),
        // Retry soon after the outage ends rather than after the default 60 s cap.
        ("GPUWATCH_COLLECTOR__SPOOL__RETRY_MAX", "2s".into()),
        (
            "GPUWATCH_LOG__LEVEL",
            "gpuwatch_collector=debug,info".into(),
        ),
        ("GPUWATCH_LOG__FORMAT", "json".into()),
    ]);
    let collector = Proc::spawn(&["collector"], &env);
    let times = || {
        query(
            &url,
            "SELECT count(DISTINCT collected_at) FROM host_metrics",
        )
        .parse::<i64>()
        .unwrap_or(0)
    };
    wait_for("the first batches", Duration::from_secs(60), || {
        times() >= 3
    });

    match down {
        Down::Database => pg.stop(),
        Down::Serve => drop(serve.take().map(Proc::terminate)),
    }
    let outage_started = Instant::now();
    wait_for(
        "batches to pile up in the spool",
        Duration::from_secs(20),
        || spooled(spool.path()) >= 3,
    );
    std::thread::sleep(OUTAGE.saturating_sub(outage_started.elapsed()));
    match down {
        Down::Database => pg.start(),
        Down::Serve => serve = Some(Proc::spawn(&["serve"], &serve_env)),
    }
    // Every batch passes through the spool on its way out, so one file (the
    // batch in flight) is no backlog; the exit's last pass sends it.
    wait_for("the spool to drain", Duration::from_secs(120), || {
        spooled(spool.path()) <= 1
    });
    std::thread::sleep(Duration::from_secs(2));
    let log = collector.terminate();
    drop(serve);

    // What the collector took, from its own log, against what is stored.
    let mut collected: Vec<String> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "collected")
        .map(|v| v["fields"]["collected_at"].as_str().unwrap().to_string())
        .collect();
    collected.sort();
    assert!(
        collected.len() >= 30,
        "only {} collections logged",
        collected.len()
    );
    let stored: Vec<String> = query(
        &url,
        "SELECT to_char(collected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"') FROM host_metrics GROUP BY collected_at ORDER BY 1",
    )
    .lines()
    .map(str::to_string)
    .collect();
    assert_eq!(
        stored, collected,
        "stored collection times differ from what the collector took"
    );
    let per_time = query(
        &url,
        "SELECT count(*) FILTER (WHERE h <> 50 OR g <> 100) FROM (
             SELECT h.collected_at, count(DISTINCT h.host_id) h,
                    (SELECT count(*) FROM gpu_metrics g WHERE g.collected_at = h.collected_at) g
             FROM host_metrics h GROUP BY 1) x",
    );
    assert_eq!(per_time, "0", "some collection is incomplete");
    let dupes = query(
        &url,
        "SELECT count(*) - count(DISTINCT (host_id, collected_at)) FROM host_metrics",
    );
    assert_eq!(dupes, "0");
    assert_eq!(spooled(spool.path()), 0);
    assert_eq!(
        std::fs::read_dir(spool.path().join("rejected"))
            .unwrap()
            .count(),
        0,
        "nothing may be rejected"
    );
}

#[test]
fn a_database_outage_loses_nothing() {
    outage(Down::Database);
}

#[test]
fn a_serve_outage_loses_nothing() {
    outage(Down::Serve);
}
