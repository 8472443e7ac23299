//! DLWorkspace sync benchmark: rows per second of the initial sync of a
//! cluster with many jobs, and of the cycles after it that each find a
//! number of changed jobs.
//!
//! `cargo bench --bench dlworkspace [-- --jobs N --changes C --cycles K --open O --seed-table --upstream-table --timescaledb]`
//! (defaults: 100,000 jobs of which 5,000 still open, 1,000 changes per
//! cycle, 5 cycles, both table versions, plain PostgreSQL on
//! `DATABASE_URL`, MariaDB on `MYSQL_URL` or root@127.0.0.1:3306). The
//! jobs are a cluster's past (settled before the first sync) plus open
//! ones; each cycle moves `C` open jobs one status on (new jobs are
//! submitted to keep enough open) and syncs. On the seed table version a
//! cycle also re-reads every open job, which the figures include. Last,
//! the alerter's job series are read once as of the generator's clock
//! (`job.status` over a day, `job.queued_seconds` over an hour, the
//! clusterstatus age): what each alerter cycle costs with that many jobs.

use std::time::Instant;

use chrono::{TimeDelta, Utc};
use gpuwatch_dlworkspace::{
    generator::Generator, sync_once, ClusterConfig, OwnerRule, TableVersion,
};
use gpuwatch_store::testing::{Kind, TestDb};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn main() {
    let jobs = arg("--jobs", 100_000);
    let changes = arg("--changes", 1_000);
    let cycles = arg("--cycles", 5);
    let open = arg("--open", 5_000).min(jobs);
    let kind = if flag("--timescaledb") {
        Kind::TimescaleDb
    } else {
        Kind::Postgres
    };
    let versions: Vec<TableVersion> = match (flag("--seed-table"), flag("--upstream-table")) {
        (true, false) => vec![TableVersion::Seed],
        (false, true) => vec![TableVersion::Upstream],
        _ => vec![TableVersion::Seed, TableVersion::Upstream],
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    for v in versions {
        rt.block_on(bench(v, kind, jobs, open, changes, cycles));
    }
}

async fn bench(
    version: TableVersion,
    kind: Kind,
    jobs: usize,
    open: usize,
    changes: usize,
    cycles: usize,
) {
    let server =
        std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let db = TestDb::new(kind).await;
    let cfg = db.store_config();
    gpuwatch_store::migrate(&cfg).await.expect("migrate");
    let pool = gpuwatch_store::connect(&cfg).await.expect("connect");
    let id = format!("bench-{}-{}", std::process::id(), version.name());
    let mut g = Generator::create(&server, &id, version, 42)
        .await
        .expect("MariaDB (MYSQL_URL) not usable");
    let opts = mysql_async::Opts::from_url(&server).expect("MYSQL_URL");
    let cluster = ClusterConfig {
        id: id.clone(),
        url: g.url_for("root", opts.ip_or_hostname(), opts.tcp_port()),
        poll_interval: "30s".into(),
        owner_rule: OwnerRule::Username,
        billing: gpuwatch_dlworkspace::JobBilling::Report,
    };
    // The past is spread over a second per job, as a cluster's history is
    // over time; the cycles come after it.
    let start = Utc::now() - TimeDelta::days(30);
    let t = Instant::now();
    g.submit(jobs, start).await.expect("submit");
    g.settle(open, start + TimeDelta::seconds(60))
        .await
        .expect("settle");
    let mut at = start + TimeDelta::seconds(120 + jobs as i64);
    eprintln!(
        "{}: wrote {jobs} jobs ({} open) into MariaDB in {:.1} s",
        version.name(),
        g.open_jobs(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let r = sync_once(&pool, &cluster).await.expect("initial sync");
    let s = t.elapsed().as_secs_f64();
    println!(
        "dlworkspace {} table, {}: initial sync of {} rows in {:.2} s = {:.0} rows/s ({} transitions)",
        version.name(),
        kind_name(kind),
        r.rows_read,
        s,
        r.rows_read as f64 / s,
        r.transitions
    );

    let (mut rows, mut changed, mut secs) = (0u64, 0u64, 0f64);
    for _ in 0..cycles {
        at += TimeDelta::seconds(30);
        if g.open_jobs() < changes {
            g.submit(changes, at).await.expect("submit");
        }
        g.step_some(changes, at).await.expect("step");
        let t = Instant::now();
        let r = sync_once(&pool, &cluster).await.expect("sync");
        secs += t.elapsed().as_secs_f64();
        rows += r.rows_read;
        changed += r.jobs_changed;
    }
    println!(
        "dlworkspace {} table, {}: {cycles} cycles of {changes} changes: {changed} jobs changed, \
         {rows} rows read, {:.3} s per cycle = {:.0} changed rows/s",
        version.name(),
        kind_name(kind),
        secs / cycles as f64,
        changed as f64 / secs
    );
    alert_series(&pool, at, version, kind).await;
    g.drop_database().await.expect("drop");
}

/// Times the alerter's DLWorkspace series as of `now`.
async fn alert_series(
    pool: &gpuwatch_store::Pool,
    now: chrono::DateTime<Utc>,
    version: TableVersion,
    kind: Kind,
) {
    use gpuwatch_alerter::dlworkspace::{cluster_status_age, job_queued, job_status};
    let c = pool.get().await.expect("connection");
    let c: &tokio_postgres::Client = &c;
    let t = Instant::now();
    let failed = job_status(c, now, 86_400).await.expect("job.status");
    let t_failed = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let queued = job_queued(c, now, 3_600).await.expect("job.queued_seconds");
    let t_queued = t.elapsed().as_secs_f64();
    let t = Instant::now();
    cluster_status_age(c, now)
        .await
        .expect("cluster status age");
    let t_age = t.elapsed().as_secs_f64();
    println!(
        "dlworkspace {} table, {}: alert series: job.status {} series in {:.3} s, \
         job.queued_seconds {} series in {:.3} s, cluster status age in {:.3} s",
        version.name(),
        kind_name(kind),
        failed.len(),
        t_failed,
        queued.len(),
        t_queued,
        t_age
    );
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Postgres => "PostgreSQL",
        Kind::TimescaleDb => "TimescaleDB",
    }
}
