//! DLWorkspace jobs through the alerter, end to end: jobs written into a
//! real MariaDB by the generator, mirrored by the sync, evaluated by the
//! shipped rules of migration 0031 and delivered to a real HTTP receiver
//! and a real SMTP server.

use chrono::{TimeDelta, Utc};
use gpuwatch_alerter::{eval::cycle, run, AlerterConfig};
use gpuwatch_dlworkspace::{sync_once, JobStatus, TableVersion};
use gpuwatch_store::{both_backends, testing::TestDb, Pool};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::alerting::{fast_config, webhook, Receiver, Smtp};
use crate::dlworkspace::{run_to_the_end, setup, t0};

/// Only the shipped rule `name` stays enabled; returns its id.
async fn only_rule(pool: &Pool, name: &str) -> i64 {
    let c = pool.get().await.unwrap();
    c.execute("UPDATE alert_rules SET enabled = (name = $1)", &[&name])
        .await
        .unwrap();
    c.query_one(
        "SELECT id FROM alert_rules WHERE name = $1 AND created_by = 'migration'",
        &[&name],
    )
    .await
    .unwrap()
    .get(0)
}

fn config_with(smtp: Option<&Smtp>) -> AlerterConfig {
    let mut cfg = fast_config();
    if let Some(smtp) = smtp {
        cfg.smtp.host = "127.0.0.1".into();
        cfg.smtp.port = smtp.port;
        cfg.smtp.tls = "none".into();
        cfg.smtp.from = "gpuwatch@example.com".into();
        cfg.smtp.default_to = vec!["oncall@example.com".into()];
    }
    cfg
}

/// A notice of a group notified less than group_interval ago waits for the
/// next cycle: one after that interval.
async fn later(cfg: &AlerterConfig, pool: &Pool) {
    tokio::time::sleep(std::time::Duration::from_secs_f64(
        cfg.group_interval_secs + 0.2,
    ))
    .await;
    once(cfg, pool).await;
}

async fn once(cfg: &AlerterConfig, pool: &Pool) {
    run(cfg.clone(), pool.clone(), true, CancellationToken::new())
        .await
        .expect("alerter --once");
}

/// Every alert of the delivered bodies, with the body's status.
fn alerts(bodies: &[Value]) -> Vec<&Value> {
    bodies
        .iter()
        .flat_map(|b| b["alerts"].as_array().into_iter().flatten())
        .collect()
}

async fn states(db: &TestDb, rule: i64) -> Vec<String> {
    db.client()
        .await
        .query(
            "SELECT state FROM alert_records WHERE rule_id = $1 ORDER BY id",
            &[&rule],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

both_backends! {
    async fn a_failed_job_fires_a_webhook_with_its_error_and_a_killed_one_an_email(db) {
        let mut s = setup(&db, TableVersion::Upstream, None, "-alerts").await;
        let rule = only_rule(&s.pool, "JobFailed").await;
        let rx = Receiver::start().await;
        let smtp = Smtp::start();
        webhook(&s.pool, &rx.url, 5, 2000).await;
        let cfg = config_with(Some(&smtp));
        // The jobs end about an hour and a half before the alerter first
        // runs, as if it had been down: each is still notified, once.
        s.generator.submit(40, t0()).await.expect("submit");
        run_to_the_end(&mut s, t0()).await;
        sync_once(&s.pool, &s.cluster).await.expect("sync");
        let ended = |st: JobStatus| {
            s.generator.log().iter().filter(|t| t.status == st).map(|t| t.job_id.clone()).collect::<Vec<_>>()
        };
        let (failed, killed, errored) = (ended(JobStatus::Failed), ended(JobStatus::Killed), ended(JobStatus::Error));
        assert!(!failed.is_empty() && !killed.is_empty(), "the generator made failed and killed jobs");
        once(&cfg, &s.pool).await;

        let bodies = rx.wait_for("the job notifications", 30, |b| !b.is_empty()).await;
        let firing: Vec<&Value> = alerts(&bodies).into_iter().filter(|a| a["status"] == "firing").collect();
        let mut jobs: Vec<String> = firing.iter().map(|a| a["labels"]["job"].as_str().unwrap().to_string()).collect();
        jobs.sort();
        let mut want: Vec<String> = failed.iter().chain(&killed).chain(&errored).cloned().collect();
        want.sort();
        assert_eq!(jobs, want, "one alert per job that ended badly, none for the others");
        let a = firing.iter().find(|a| a["labels"]["job"] == failed[0].as_str()).unwrap();
        assert_eq!(a["labels"]["status"], "failed");
        assert_eq!(a["labels"]["cluster"], s.cluster.id.as_str());
        for label in ["owner", "job_name", "vc", "training_type", "gpu_type"] {
            assert!(a["labels"][label].is_string(), "label {label} missing: {a}");
        }
        assert_eq!(a["annotations"]["error_msg"], "Job failed: pod exited with code 1 (CUDA error: out of memory)");
        assert_eq!(a["annotations"]["status_detail"], "job is failed");
        assert!(a["annotations"]["summary"].as_str().unwrap().contains(" is failed on cluster "), "{a}");
        assert!(a["annotations"].get("template_error").is_none(), "{a}");

        // The killed job's e-mail carries its errorMsg.
        let mails = smtp.wait_for("the killed job's e-mail", 30, |m| m.iter().any(|x| x.contains("status=killed"))).await;
        let mail = mails.iter().find(|x| x.contains("status=killed")).unwrap();
        assert!(mail.contains("To: oncall@example.com"), "{mail}");
        assert!(mail.contains("Killed by user request"), "{mail}");
        assert!(mail.contains(&killed[0]), "{mail}");

        // Notified once: later cycles send nothing new for the same entries.
        let sent = rx.delivered().len();
        once(&cfg, &s.pool).await;
        once(&cfg, &s.pool).await;
        assert_eq!(rx.delivered().len(), sent, "a job's failure is notified once");

        // The entries age out: resolved after the window, and nothing
        // fires again, however old the jobs get.
        for hours in [25, 49, 24 * 10] {
            cycle(&s.pool, &cfg, Utc::now() + TimeDelta::hours(hours)).await.expect("cycle");
        }
        let st = states(&db, rule).await;
        assert_eq!(st.len(), want.len());
        assert!(st.iter().all(|x| x == "resolved"), "{st:?}");
        s.generator.drop_database().await.expect("drop");
    }
}

both_backends! {
    async fn an_old_failed_job_never_fires(db) {
        let mut s = setup(&db, TableVersion::Upstream, None, "-old").await;
        let rule = only_rule(&s.pool, "JobFailed").await;
        let start = Utc::now() - TimeDelta::days(3);
        s.generator.submit(40, start).await.expect("submit");
        run_to_the_end(&mut s, start).await;
        sync_once(&s.pool, &s.cluster).await.expect("sync");
        assert!(s.generator.log().iter().any(|t| t.status == JobStatus::Failed));
        let r = cycle(&s.pool, &fast_config(), Utc::now()).await.expect("cycle");
        assert!(r.ran);
        assert!(states(&db, rule).await.is_empty(), "a failure three days old fired");
        s.generator.drop_database().await.expect("drop");
    }
}

both_backends! {
    async fn a_job_stuck_in_the_queue_fires_and_resolves_once_it_runs(db) {
        let mut s = setup(&db, TableVersion::Upstream, None, "-stuck").await;
        let rule = only_rule(&s.pool, "JobStuckQueued").await;
        let rx = Receiver::start().await;
        webhook(&s.pool, &rx.url, 5, 2000).await;
        let cfg = config_with(None);
        // Submitted and queued an hour ago (the rule's threshold is 30 min).
        let now = Utc::now();
        s.generator.submit(5, now - TimeDelta::minutes(70)).await.expect("submit");
        s.generator.step(now - TimeDelta::minutes(60)).await.expect("queued");
        sync_once(&s.pool, &s.cluster).await.expect("sync");
        once(&cfg, &s.pool).await;
        let bodies = rx.wait_for("the stuck-job alerts", 30, |b| !b.is_empty()).await;
        let firing = alerts(&bodies);
        assert_eq!(firing.len(), 5, "{bodies:#?}");
        let a = firing[0];
        assert_eq!(a["labels"]["alertname"], "JobStuckQueued");
        let summary = a["annotations"]["summary"].as_str().unwrap();
        assert!(summary.contains("(now queued)"), "{summary}");
        let waited: f64 = summary.split("has waited ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!((3_500.0..3_700.0).contains(&waited), "{summary}");

        // Scheduling is still waiting, counted from the queue; running ends it.
        s.generator.step(now - TimeDelta::minutes(1)).await.expect("scheduling");
        sync_once(&s.pool, &s.cluster).await.expect("sync");
        once(&cfg, &s.pool).await;
        let open = s.generator.open_jobs();
        s.generator.step(now).await.expect("running");
        sync_once(&s.pool, &s.cluster).await.expect("sync");
        once(&cfg, &s.pool).await;
        let st = states(&db, rule).await;
        assert_eq!(st.len(), 5, "{st:?}");
        // A job planned straight from queued to killing stopped waiting too.
        assert!(st.iter().all(|x| x == "resolved"), "{st:?} ({open} open)");
        later(&cfg, &s.pool).await;
        rx.wait_for("the resolved notices", 30, |b| b.iter().any(|x| x["status"] == "resolved")).await;
        s.generator.drop_database().await.expect("drop");
    }
}

both_backends! {
    async fn a_stale_clusterstatus_fires_and_a_fresh_one_resolves_it(db) {
        let mut s = setup(&db, TableVersion::Seed, None, "-stale").await;
        let rule = only_rule(&s.pool, "DlworkspaceClusterStatusStale").await;
        let rx = Receiver::start().await;
        webhook(&s.pool, &rx.url, 5, 2000).await;
        let cfg = config_with(None);
        s.generator.cluster_status(Utc::now() - TimeDelta::minutes(10)).await.expect("clusterstatus");
        sync_once(&s.pool, &s.cluster).await.expect("sync");
        once(&cfg, &s.pool).await;
        let bodies = rx.wait_for("the stale-status alert", 30, |b| !b.is_empty()).await;
        let a = alerts(&bodies)[0];
        assert_eq!(a["labels"]["alertname"], "DlworkspaceClusterStatusStale");
        assert_eq!(a["labels"]["cluster"], s.cluster.id.as_str());
        assert!(a["annotations"]["summary"].as_str().unwrap().contains(" s old (last at "), "{a}");

        s.generator.cluster_status(Utc::now()).await.expect("clusterstatus");
        sync_once(&s.pool, &s.cluster).await.expect("sync");
        once(&cfg, &s.pool).await;
        assert_eq!(states(&db, rule).await, ["resolved"]);
        later(&cfg, &s.pool).await;
        rx.wait_for("the resolved notice", 30, |b| b.iter().any(|x| x["status"] == "resolved")).await;
        s.generator.drop_database().await.expect("drop");
    }
}
