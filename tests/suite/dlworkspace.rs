//! The DLWorkspace source against a real MariaDB (127.0.0.1:3306, root, no
//! password; `MYSQL_URL` overrides) and both PostgreSQL backends. Each test
//! makes its own `DLWorkspaceCluster-<n>` database with the generator, in
//! seed 002's table version and in upstream's, and drops it after.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use gpuwatch_dlworkspace::{
    generator::Generator, sync_once, ClusterConfig, JobBilling, JobStatus, OwnerRule, TableVersion,
};
use gpuwatch_store::{both_backends, migrate, testing::TestDb, Pool};
use mysql_async::prelude::Queryable;
use tokio::net::{TcpListener, TcpStream};

const VERSIONS: [TableVersion; 2] = [TableVersion::Seed, TableVersion::Upstream];

fn mysql_server() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

fn mysql_host_port() -> (String, u16) {
    let opts = mysql_async::Opts::from_url(&mysql_server()).expect("MYSQL_URL");
    (opts.ip_or_hostname().to_string(), opts.tcp_port())
}

pub(crate) fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp() - 7_200, 0).unwrap()
}

pub(crate) struct Setup {
    pub(crate) pool: Pool,
    pub(crate) generator: Generator,
    pub(crate) cluster: ClusterConfig,
    _drop: DropMysqlDb,
}

/// Drops the test's MySQL database even when the test panics (as TestDb
/// does for PostgreSQL), from a thread of its own: Drop cannot await.
struct DropMysqlDb(String);

impl Drop for DropMysqlDb {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(opts) = mysql_async::Opts::from_url(&mysql_server()) {
                        if let Ok(mut c) = mysql_async::Conn::new(opts).await {
                            let _ = c
                                .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                                .await;
                            let _ = c.disconnect().await;
                        }
                    }
                });
            }
        })
        .join();
    }
}

pub(crate) async fn setup(
    db: &TestDb,
    version: TableVersion,
    via_port: Option<u16>,
    tag: &str,
) -> Setup {
    let cfg = db.store_config();
    migrate(&cfg).await.expect("migrate");
    let pool = gpuwatch_store::connect(&cfg).await.expect("pool");
    let id = format!(
        "{}-{}{tag}",
        db.name().trim_start_matches("gw_test_"),
        version.name()
    );
    let (host, port) = mysql_host_port();
    let server = match via_port {
        // Without prefer_socket=false the driver moves to MariaDB's Unix
        // socket after connecting, past the proxy.
        Some(p) => format!("mysql://root@127.0.0.1:{p}?prefer_socket=false"),
        None => mysql_server(),
    };
    let generator = Generator::create(&server, &id, version, 17)
        .await
        .unwrap_or_else(|e| {
            panic!("MariaDB at {server} not usable ({e}); run scripts/test.sh, which starts it")
        });
    let (host, port) = match via_port {
        Some(p) => ("127.0.0.1".to_string(), p),
        None => (host, port),
    };
    let mut url = generator.url_for("root", &host, port);
    if via_port.is_some() {
        url.push_str("?prefer_socket=false");
    }
    let cluster = ClusterConfig {
        url,
        id,
        poll_interval: "1s".into(),
        owner_rule: OwnerRule::Username,
        billing: JobBilling::Report,
    };
    Setup {
        pool,
        _drop: DropMysqlDb(generator.database().to_string()),
        generator,
        cluster,
    }
}

/// Statuses per job, in order, as the generator made them.
fn made(g: &Generator) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in g.log() {
        m.entry(t.job_id.clone())
            .or_default()
            .push(t.status.to_string());
    }
    m
}

/// Statuses per job, in order, as the history recorded them.
async fn recorded(db: &TestDb, cluster: &str) -> BTreeMap<String, Vec<String>> {
    let rows = db
        .client()
        .await
        .query(
            "SELECT job_id, status FROM training_job_status_history WHERE cluster_id = $1 ORDER BY id",
            &[&cluster],
        )
        .await
        .unwrap();
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        m.entry(r.get(0)).or_default().push(r.get(1));
    }
    m
}

async fn fingerprint(db: &TestDb, cluster: &str) -> (String, String) {
    let c = db.client().await;
    let one = |sql: &'static str| {
        let c = &c;
        async move {
            c.query_one(sql, &[&cluster])
                .await
                .unwrap()
                .get::<_, Option<String>>(0)
                .unwrap_or_default()
        }
    };
    (
        one("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM training_jobs t WHERE cluster_id = $1").await,
        one("SELECT md5(string_agg(h::text, '|' ORDER BY id)) FROM training_job_status_history h WHERE cluster_id = $1").await,
    )
}

pub(crate) async fn run_to_the_end(s: &mut Setup, start: DateTime<Utc>) {
    let mut at = start;
    for _ in 0..40 {
        sync_once(&s.pool, &s.cluster).await.expect("sync");
        if s.generator.open_jobs() == 0 {
            return;
        }
        at += TimeDelta::seconds(30);
        s.generator.step(at).await.expect("step");
    }
    panic!("jobs did not finish in 40 steps");
}

both_backends! {
    async fn a_full_lifecycle_arrives_once_and_a_resync_changes_nothing(db) {
        // Upstream's table, written as upstream DLWorkspace does it too:
        // status changes that leave lastUpdated alone.
        for (version, stamped) in [
            (TableVersion::Seed, false),
            (TableVersion::Upstream, true),
            (TableVersion::Upstream, false),
        ] {
            let mut s = setup(&db, version, None, if stamped { "" } else { "-unstamped" }).await;
            s.generator.stamp_last_updated(stamped);
            s.generator.submit(40, t0()).await.expect("submit");
            run_to_the_end(&mut s, t0()).await;
            sync_once(&s.pool, &s.cluster).await.expect("last sync");
            let cluster = s.cluster.id.clone();
            assert_eq!(recorded(&db, &cluster).await, made(&s.generator), "{version:?}");
            let before = fingerprint(&db, &cluster).await;
            let again = sync_once(&s.pool, &s.cluster).await.expect("resync");
            assert_eq!((again.jobs_changed, again.transitions, again.bad_rows), (0, 0, 0), "{version:?}");
            assert_eq!(fingerprint(&db, &cluster).await, before, "{version:?}: a resync changed rows");

            let c = db.client().await;
            let n: i64 = c
                .query_one("SELECT count(*) FROM training_jobs WHERE cluster_id = $1", &[&cluster])
                .await.unwrap().get(0);
            assert_eq!(n, 40);
            // What on-call and billing need: failures carry errorMsg, jobs
            // that ran carry their GPUs, type, node and times.
            let bad: i64 = c
                .query_one(
                    "SELECT count(*) FROM training_jobs WHERE cluster_id = $1
                     AND job_status IN ('failed', 'killed', 'error') AND error_message IS NULL",
                    &[&cluster],
                ).await.unwrap().get(0);
            assert_eq!(bad, 0, "{version:?}: a failed job without errorMsg");
            let ran = c
                .query_one(
                    "SELECT count(*), count(host_id), count(gpu_type), count(vc_name),
                            count(job_training_type), count(started_at), count(finished_at),
                            count(*) FILTER (WHERE job_params IS NOT NULL AND job_log LIKE '%finished%')
                     FROM training_jobs WHERE cluster_id = $1 AND job_status = 'finished'",
                    &[&cluster],
                ).await.unwrap();
            let n: i64 = ran.get(0);
            assert!(n > 0);
            for i in 1..8 {
                assert_eq!(ran.get::<_, i64>(i), n, "{version:?}: column {i} of finished jobs");
            }
            let gpus: i64 = c
                .query_one(
                    "SELECT count(*) FROM training_jobs t WHERE cluster_id = $1
                     AND gpu_count <> (job_params->>'resourcegpu')::int",
                    &[&cluster],
                ).await.unwrap().get(0);
            assert_eq!(gpus, 0);
            if !stamped {
                // No moved lastUpdated to go by: changes are dated when seen,
                // never back to the job's submission.
                let stale: i64 = c.query_one(
                    "SELECT count(*) FROM training_job_status_history WHERE cluster_id = $1
                     AND status <> 'unapproved' AND valid_from < now() - interval '10 minutes'",
                    &[&cluster]).await.unwrap().get(0);
                assert_eq!(stale, 0, "{version:?} unstamped: a change dated back");
            }
            if stamped {
                // valid_from is the source's lastUpdated: the generator's own times.
                let mut log: Vec<(String, String, i64)> = s.generator.log().iter()
                    .map(|t| (t.job_id.clone(), t.status.to_string(), t.at.timestamp())).collect();
                let rows = c.query(
                    "SELECT job_id, status, extract(epoch FROM valid_from)::bigint
                     FROM training_job_status_history WHERE cluster_id = $1 AND status <> 'unapproved'",
                    &[&cluster]).await.unwrap();
                let mut got: Vec<(String, String, i64)> =
                    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
                log.retain(|t| t.1 != "unapproved");
                log.sort();
                got.sort();
                assert_eq!(got, log);
            }
            s.generator.drop_database().await.expect("drop");
        }
    }
}

both_backends! {
    async fn bad_rows_are_logged_kept_and_retried_while_the_rest_syncs(db) {
        for version in VERSIONS {
            let mut s = setup(&db, version, None, "").await;
            s.generator.submit(5, t0()).await.expect("submit");
            let mut conn = s.generator.conn().await.unwrap();
            let vc = if version == TableVersion::Upstream { ", vcName" } else { "" };
            let vcv = if version == TableVersion::Upstream { ", 'vc'" } else { "" };
            for (job, status, params) in [
                ("bad-status", "exploded", "{\"resourcegpu\": 1}"),
                ("bad-params", "queued", "resourcegpu=2 not json"),
            ] {
                conn.query_drop(format!(
                    "INSERT INTO jobs (jobId, familyToken, isParent, jobName, userName, jobStatus, jobType, jobParams{vc})
                     VALUES ('{job}', '{job}', 1, 'pytorch-bert', 'alice', '{status}', 'training', '{params}'{vcv})"
                )).await.unwrap();
            }
            let r = sync_once(&s.pool, &s.cluster).await.expect("sync goes on past bad rows");
            assert_eq!(r.bad_rows, 1, "{version:?}");
            let c = db.client().await;
            let cluster = s.cluster.id.clone();
            let row = c.query_one(
                "SELECT job_params IS NULL, job_params_text, gpu_count FROM training_jobs
                 WHERE cluster_id = $1 AND job_id = 'bad-params'", &[&cluster]).await.unwrap();
            assert!(row.get::<_, bool>(0));
            assert_eq!(row.get::<_, String>(1), "resourcegpu=2 not json");
            assert_eq!(row.get::<_, i32>(2), 0);
            let n: i64 = c.query_one("SELECT count(*) FROM training_jobs WHERE cluster_id = $1", &[&cluster])
                .await.unwrap().get(0);
            assert_eq!(n, 6, "{version:?}: the good rows synced");
            let reason: String = c.query_one(
                "SELECT reason FROM dlworkspace_retry WHERE cluster_id = $1 AND job_id = 'bad-status'",
                &[&cluster]).await.unwrap().get(0);
            assert!(reason.contains("exploded"), "{reason}");
            // Still bad: still kept, counted again, and nothing else breaks.
            let r = sync_once(&s.pool, &s.cluster).await.expect("sync");
            let reasons: Vec<String> = c.query("SELECT reason FROM dlworkspace_retry", &[]).await.unwrap()
                .iter().map(|r| r.get(0)).collect();
            assert_eq!(r.bad_rows, 1, "{version:?}: {reasons:?}");
            // Fixed at the source (without touching lastUpdated): it arrives.
            conn.query_drop("UPDATE jobs SET jobStatus = 'queued' WHERE jobId = 'bad-status'").await.unwrap();
            let r = sync_once(&s.pool, &s.cluster).await.expect("sync");
            assert_eq!(r.bad_rows, 0);
            let st: String = c.query_one(
                "SELECT job_status FROM training_jobs WHERE cluster_id = $1 AND job_id = 'bad-status'",
                &[&cluster]).await.unwrap().get(0);
            assert_eq!(st, "queued");
            let left: i64 = c.query_one("SELECT count(*) FROM dlworkspace_retry WHERE cluster_id = $1", &[&cluster])
                .await.unwrap().get(0);
            assert_eq!(left, 0);
            drop(conn);
            s.generator.drop_database().await.expect("drop");
        }
    }
}

both_backends! {
    async fn owners_map_by_username_or_table_and_unmapped_ones_are_reported(db) {
        let mut s = setup(&db, TableVersion::Upstream, None, "").await;
        let c = db.client().await;
        let alice: i64 = c.query_one(
            "INSERT INTO customers (username, email, password_hash) VALUES ('alice', 'a@example.com', 'x') RETURNING id",
            &[]).await.unwrap().get(0);
        s.generator.submit(60, t0()).await.expect("submit");
        let r = sync_once(&s.pool, &s.cluster).await.expect("sync");
        assert!(!r.unmapped_owners.contains(&"alice".to_string()));
        assert!(r.unmapped_owners.contains(&"bob".to_string()), "{:?}", r.unmapped_owners);
        let cluster = s.cluster.id.clone();
        let wrong: i64 = c.query_one(
            "SELECT count(*) FROM training_jobs WHERE cluster_id = $1
             AND (user_name = 'alice') IS DISTINCT FROM (customer_id IS NOT NULL)", &[&cluster])
            .await.unwrap().get(0);
        assert_eq!(wrong, 0);
        let jobs: i64 = c.query_one(
            "SELECT count(*) FROM training_jobs WHERE cluster_id = $1", &[&cluster]).await.unwrap().get(0);
        assert_eq!(jobs, 60, "unmapped owners' jobs are kept");
        let listed: i64 = c.query_one(
            "SELECT count(*) FROM dlworkspace_unmapped_owners WHERE cluster_id = $1", &[&cluster])
            .await.unwrap().get(0);
        assert_eq!(listed as usize, r.unmapped_owners.len());
        let kept: i32 = c.query_one(
            "SELECT unmapped_owners FROM dlworkspace_clusters WHERE cluster_id = $1", &[&cluster])
            .await.unwrap().get(0);
        assert_eq!(kept as usize, r.unmapped_owners.len());

        // The explicit table: bob's jobs and history gain a customer, alice's
        // keep theirs, nobody else's is guessed.
        s.cluster.owner_rule = OwnerRule::Table;
        c.execute("INSERT INTO dlworkspace_owner_map (cluster_id, user_name, customer_id) VALUES ($1, 'bob', $2)",
            &[&cluster, &alice]).await.unwrap();
        let r = sync_once(&s.pool, &s.cluster).await.expect("sync");
        assert!(!r.unmapped_owners.contains(&"bob".to_string()));
        let unmapped_bob: i64 = c.query_one(
            "SELECT (SELECT count(*) FROM training_jobs WHERE cluster_id = $1 AND user_name = 'bob' AND customer_id IS NULL)
                  + (SELECT count(*) FROM training_job_status_history WHERE cluster_id = $1 AND user_name = 'bob' AND customer_id IS NULL)",
            &[&cluster]).await.unwrap().get(0);
        assert_eq!(unmapped_bob, 0);
        s.generator.drop_database().await.expect("drop");
    }
}

both_backends! {
    async fn the_latest_clusterstatus_and_its_age_are_kept(db) {
        for version in VERSIONS {
            let mut s = setup(&db, version, None, "").await;
            let old = Utc::now() - TimeDelta::seconds(600);
            s.generator.cluster_status(old - TimeDelta::seconds(60)).await.unwrap();
            s.generator.cluster_status(old).await.unwrap();
            let r = sync_once(&s.pool, &s.cluster).await.expect("sync");
            assert!(r.cluster_status);
            let row = db.client().await.query_one(
                "SELECT c.status->>'seq', a.age_seconds FROM dlworkspace_clusters c
                 JOIN dlworkspace_cluster_status_age a USING (cluster_id) WHERE cluster_id = $1",
                &[&s.cluster.id]).await.unwrap();
            assert_eq!(row.get::<_, String>(0), "2");
            let age: f64 = row.get(1);
            assert!((599.0..700.0).contains(&age), "age {age}");
            s.generator.drop_database().await.expect("drop");
        }
    }
}

/// A TCP proxy in front of MariaDB that can go down: it cuts every open
/// connection and refuses new ones, as a MySQL outage does to everyone
/// (the generator, standing in for DLWorkspace, and the sync alike).
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let (d, g) = (down.clone(), generation.clone());
        let (host, upstream_port) = mysql_host_port();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    continue;
                }
                let born = g.load(Ordering::SeqCst);
                let (g, host) = (g.clone(), host.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect((host.as_str(), upstream_port)).await
                    else {
                        return;
                    };
                    let cut = async {
                        while g.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut => {}
                    }
                });
            }
        });
        Proxy {
            port,
            down,
            generation,
        }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }
}

both_backends! {
    async fn after_a_mysql_outage_every_transition_is_recorded_once(db) {
        // The 30 s outage of the one MySQL server, while the
        // generator (DLWorkspace's job manager) keeps trying to write and
        // the sync to read, both table versions at once, every 500 ms.
        const OUTAGE: Duration = Duration::from_secs(30);
        let proxy = Proxy::start().await;
        let mut setups = Vec::new();
        for version in VERSIONS {
            let mut s = setup(&db, version, Some(proxy.port), "").await;
            s.generator.submit(30, t0()).await.expect("submit");
            sync_once(&s.pool, &s.cluster).await.expect("first sync");
            setups.push(s);
        }
        let (mut at, mut failed_syncs, mut failed_steps) = (t0(), [0; 2], [0; 2]);
        let mut outage: Option<std::time::Instant> = None;
        let mut felt = Duration::ZERO;
        for round in 0..400 {
            if setups.iter().all(|s| s.generator.open_jobs() == 0) && outage.is_none() {
                break;
            }
            at += TimeDelta::seconds(20);
            for (i, s) in setups.iter_mut().enumerate() {
                if s.generator.step(at).await.is_err() {
                    failed_steps[i] += 1;
                }
            }
            if round == 3 {
                // Down right after the generator wrote, before the sync read.
                proxy.set_down(true);
                outage = Some(std::time::Instant::now());
            }
            if let Some(t) = outage.filter(|t| t.elapsed() >= OUTAGE) {
                proxy.set_down(false);
                felt = t.elapsed();
                outage = None;
            }
            for (i, s) in setups.iter().enumerate() {
                if sync_once(&s.pool, &s.cluster).await.is_err() {
                    failed_syncs[i] += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(felt >= OUTAGE, "the outage lasted {felt:?}");
        for (i, s) in setups.into_iter().enumerate() {
            let version = s.generator.version();
            // 30 s at one attempt per 500 ms and more: each was refused.
            assert!(failed_syncs[i] >= 40 && failed_steps[i] >= 40,
                "{version:?}: the outage was felt: {} {}", failed_syncs[i], failed_steps[i]);
            assert_eq!(s.generator.open_jobs(), 0, "{version:?}");
            sync_once(&s.pool, &s.cluster).await.expect("sync after the outage");
            assert_eq!(recorded(&db, &s.cluster.id).await, made(&s.generator), "{version:?}");
            let statuses: Vec<JobStatus> = s.generator.log().iter().map(|t| t.status).collect();
            assert!(statuses.iter().any(|s| s.is_final()));
            s.generator.drop_database().await.expect("drop");
        }
    }
}

both_backends! {
    async fn a_row_postgresql_refuses_is_kept_for_retry_and_the_page_still_lands(db) {
        // Schemas drift: this cluster's jobType grew past the 255
        // characters training_jobs keeps.
        let mut s = setup(&db, TableVersion::Seed, None, "").await;
        s.generator.submit(20, t0()).await.expect("submit");
        let mut conn = s.generator.conn().await.unwrap();
        conn.query_drop("ALTER TABLE jobs MODIFY jobType TEXT NOT NULL").await.unwrap();
        conn.query_drop(format!(
            "INSERT INTO jobs (jobId, familyToken, isParent, jobName, userName, jobStatus, jobType, jobParams)
             VALUES ('too-long', 'f', 1, 'x', 'alice', 'queued', '{}', '{{}}')",
            "t".repeat(300)
        )).await.unwrap();
        let r = sync_once(&s.pool, &s.cluster).await.expect("sync");
        assert_eq!(r.bad_rows, 1);
        let c = db.client().await;
        let cluster = s.cluster.id.clone();
        let n: i64 = c.query_one("SELECT count(*) FROM training_jobs WHERE cluster_id = $1", &[&cluster])
            .await.unwrap().get(0);
        assert_eq!(n, 20);
        let reason: String = c.query_one(
            "SELECT reason FROM dlworkspace_retry WHERE cluster_id = $1 AND job_id = 'too-long'", &[&cluster])
            .await.unwrap().get(0);
        assert!(reason.contains("training_jobs refused it"), "{reason}");
        assert_eq!(recorded(&db, &cluster).await, made(&s.generator));
        drop(conn);
        s.generator.drop_database().await.expect("drop");
    }
}

both_backends! {
    async fn two_syncs_of_one_cluster_at_once_record_each_transition_once(db) {
        // Replicas of the sync: the per-cluster lock orders their writes.
        for version in VERSIONS {
            let mut s = setup(&db, version, None, "").await;
            s.generator.submit(200, t0()).await.expect("submit");
            let mut at = t0();
            while s.generator.open_jobs() > 0 {
                let (a, b) = tokio::join!(
                    sync_once(&s.pool, &s.cluster),
                    sync_once(&s.pool, &s.cluster)
                );
                a.expect("first replica");
                b.expect("second replica");
                at += TimeDelta::seconds(30);
                s.generator.step(at).await.expect("step");
            }
            sync_once(&s.pool, &s.cluster).await.expect("last sync");
            assert_eq!(recorded(&db, &s.cluster.id).await, made(&s.generator), "{version:?}");
            let billing: String = db.client().await.query_one(
                "SELECT billing FROM dlworkspace_clusters WHERE cluster_id = $1", &[&s.cluster.id])
                .await.unwrap().get(0);
            assert_eq!(billing, "report");
            s.generator.drop_database().await.expect("drop");
        }
    }
}

/// Each job's current status, as the generator last set it.
fn current(g: &Generator) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for t in g.log() {
        m.insert(t.job_id.clone(), t.status.to_string());
    }
    m
}

both_backends! {
    async fn jobs_are_listed_filtered_and_counted_on_metrics(db) {
        let mut s = setup(&db, TableVersion::Upstream, None, "").await;
        s.generator.submit(40, t0()).await.expect("submit");
        s.generator.cluster_status(Utc::now() - TimeDelta::seconds(90)).await.expect("clusterstatus");
        // Part of the way, so jobs sit in several statuses at once.
        let mut at = t0();
        for _ in 0..4 {
            sync_once(&s.pool, &s.cluster).await.expect("sync");
            at += TimeDelta::seconds(30);
            s.generator.step(at).await.expect("step");
        }
        sync_once(&s.pool, &s.cluster).await.expect("sync");
        let cluster = s.cluster.id.clone();
        let want = current(&s.generator);
        let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
        for st in want.values() {
            *by_status.entry(st.clone()).or_default() += 1;
        }
        assert!(by_status.len() >= 3, "want a mix of statuses: {by_status:?}");

        let api = crate::common::ApiClient::start(&db, gpuwatch_api::ApiConfig::default()).await;
        let viewer = api.token("viewer").await;
        let (st, all) = api.get(&format!("/api/v1/jobs?cluster={cluster}&limit=1000"), Some(&viewer)).await;
        assert_eq!(st, reqwest::StatusCode::OK, "{all}");
        assert_eq!(all["total"], 40, "{all}");
        let got: BTreeMap<String, String> = all["items"].as_array().unwrap().iter()
            .map(|j| (j["job_id"].as_str().unwrap().to_string(), j["status"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(got, want);
        for (status, n) in &by_status {
            let (_, page) = api.get(&format!("/api/v1/jobs?cluster={cluster}&status={status}"), Some(&viewer)).await;
            assert_eq!(page["total"], *n, "status={status}: {page}");
        }
        let ended: i64 = ["failed", "killed", "error"].iter().map(|s| by_status.get(*s).copied().unwrap_or(0)).sum();
        let (_, page) = api.get(&format!("/api/v1/jobs?cluster={cluster}&status=failed,killed,error"), Some(&viewer)).await;
        assert_eq!(page["total"], ended, "{page}");
        let owner = s.generator.log()[0].user_name.clone();
        let owned = s.generator.log().iter().filter(|t| t.user_name == owner)
            .map(|t| &t.job_id).collect::<std::collections::BTreeSet<_>>().len();
        let (_, page) = api.get(&format!("/api/v1/jobs?cluster={cluster}&owner={owner}"), Some(&viewer)).await;
        assert_eq!(page["total"], owned as i64, "owner={owner}: {page}");

        // Pages of 7 by job id cover every job once.
        let mut paged = Vec::new();
        for offset in (0..40).step_by(7) {
            let (_, page) = api.get(&format!("/api/v1/jobs?cluster={cluster}&sort=job_id&limit=7&offset={offset}"), Some(&viewer)).await;
            paged.extend(page["items"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap().to_string()));
        }
        let mut sorted = paged.clone();
        sorted.sort();
        assert_eq!(paged, sorted);
        assert_eq!(paged, want.keys().cloned().collect::<Vec<_>>());

        // One job with its history, exactly as the generator moved it.
        let job = want.keys().next().unwrap();
        let (st, detail) = api.get(&format!("/api/v1/jobs/{cluster}/{job}"), Some(&viewer)).await;
        assert_eq!(st, reqwest::StatusCode::OK, "{detail}");
        let history: Vec<String> = detail["history"].as_array().unwrap().iter()
            .map(|h| h["status"].as_str().unwrap().to_string()).collect();
        assert_eq!(history, made(&s.generator)[job]);
        assert_eq!(detail["owner"], s.generator.log().iter().find(|t| &t.job_id == job).unwrap().user_name.as_str());

        // Bad input says what is wrong; other roles are refused.
        for (path, needle) in [
            ("/api/v1/jobs?status=done", "unapproved, queued"),
            ("/api/v1/jobs?state=running", "state"),
            ("/api/v1/jobs?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
            ("/api/v1/jobs?sort=password", "job_time"),
            ("/api/v1/jobs?since=yesterday", "since"),
        ] {
            let (st, body) = api.get(path, Some(&viewer)).await;
            assert_eq!(st, reqwest::StatusCode::BAD_REQUEST, "{path}: {body}");
            assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{path}: {body}");
        }
        let (st, body) = api.get(&format!("/api/v1/jobs/{cluster}/no-such-job"), Some(&viewer)).await;
        assert_eq!(st, reqwest::StatusCode::NOT_FOUND, "{body}");
        let agent = api.token("agent").await;
        assert_eq!(api.get("/api/v1/jobs", Some(&agent)).await.0, reqwest::StatusCode::FORBIDDEN);
        assert_eq!(api.get("/api/v1/jobs", None).await.0, reqwest::StatusCode::UNAUTHORIZED);

        // /metrics of a real `gpuwatch serve`: one gpuwatch_jobs series per
        // status of the cluster, equal to the counts, and the status age.
        let port = crate::common::free_port();
        let _serve = crate::common::Proc::spawn(&["serve"], &[
            ("DATABASE_URL", db.url.clone()),
            ("GPUWATCH_LISTEN", format!("127.0.0.1:{port}")),
            ("GPUWATCH_EXPORTER__REFRESH_SECS", "1".into()),
        ]);
        let prefix = format!("gpuwatch_jobs{{cluster=\"{cluster}\",status=");
        let mut metrics = String::new();
        for _ in 0..120 {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
                metrics = r.text().await.unwrap_or_default();
                if metrics.contains(&prefix) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let series: BTreeMap<String, i64> = metrics.lines().filter_map(|l| l.strip_prefix(&prefix))
            .map(|rest| {
                let (status, value) = rest.split_once("} ").expect("a sample line");
                (status.trim_matches('"').to_string(), value.parse().expect("a count"))
            })
            .collect();
        assert_eq!(series.len(), JobStatus::ALL.len(), "every status once: {series:?}");
        for status in JobStatus::ALL {
            let want = by_status.get(status.as_str()).copied().unwrap_or(0);
            assert_eq!(series[status.as_str()], want, "{status}: {series:?}");
        }
        assert!(metrics.contains(&format!("gpuwatch_dlworkspace_cluster_status_age_seconds{{cluster=\"{cluster}\"}}")),
            "cluster status age missing");
        s.generator.drop_database().await.expect("drop");
    }
}
