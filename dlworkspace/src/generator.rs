//! A realistic DLWorkspace, for tests, benches and the quick start: it
//! creates a cluster database `DLWorkspaceCluster-<id>` with either table
//! version and writes jobs as DLWorkspace's job manager does, status by
//! status (`unapproved → queued → scheduling → running → finished | failed
//! | error`, with `pausing → paused` and `killing → killed`, and retries
//! that send a running job back to `queued`), with plausible `jobParams`,
//! endpoints naming the node, `errorMsg` on failed, error and killed jobs,
//! and `clusterstatus` rows. It keeps its own log of every transition it
//! made, to reconcile against.
//!
//! Each call writes in one MySQL transaction: a call that fails made no
//! transition (none is logged) and the same transitions are attempted by
//! the next call, as a job manager that lost its database would.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use mysql_async::{prelude::Queryable, Opts, OptsBuilder, Pool, TxOpts, Value};
use serde_json::json;

use crate::{JobStatus, TableVersion};

/// One status a job entered, as the generator wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// `jobId`.
    pub job_id: String,
    /// `userName`.
    pub user_name: String,
    /// The status entered.
    pub status: JobStatus,
    /// When (whole seconds; `lastUpdated` on upstream tables).
    pub at: DateTime<Utc>,
    /// GPUs the job asked for (`resourcegpu`).
    pub gpus: i64,
    /// Their type (`gpuType`).
    pub gpu_type: &'static str,
}

struct Job {
    job_id: String,
    user: String,
    gpus: i64,
    gpu_type: &'static str,
    /// The statuses it will go through, first one included.
    plan: Vec<JobStatus>,
    /// Index in `plan` of the status it is in.
    at: usize,
    retries: i64,
    log: String,
}

impl Job {
    fn open(&self) -> bool {
        self.at + 1 < self.plan.len()
    }
}

/// A DLWorkspace cluster database being written to.
pub struct Generator {
    pool: Pool,
    server: Opts,
    database: String,
    version: TableVersion,
    rng: u64,
    jobs: Vec<Job>,
    log: Vec<Transition>,
    status_rows: u64,
    stamp_changes: bool,
}

const USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];
const JOB_NAMES: [&str; 5] = [
    "pytorch-bert",
    "tensorflow-training",
    "pytorch-resnet50",
    "horovod-gpt2",
    "jupyter-notebook",
];
const GPU_TYPES: [&str; 3] = ["A100", "V100", "H100"];
const VCS: [&str; 3] = ["platform", "research", "prod"];
const TRAINING_TYPES: [&str; 2] = ["RegularJob", "PSDistJob"];

fn ddl(version: TableVersion) -> [&'static str; 4] {
    let jobs = match version {
        TableVersion::Seed => {
            "CREATE TABLE jobs (
            `id` INT NOT NULL AUTO_INCREMENT, `jobId` varchar(50) NOT NULL,
            `familyToken` varchar(50) NOT NULL, `isParent` INT NOT NULL,
            `jobName` varchar(1024) NOT NULL, `userName` varchar(255) NOT NULL,
            `jobStatus` varchar(255) NOT NULL DEFAULT 'unapproved', `jobStatusDetail` LONGTEXT NULL,
            `jobType` varchar(255) NOT NULL, `jobDescriptionPath` TEXT NULL,
            `jobDescription` LONGTEXT NULL, `jobTime` DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL,
            `endpoints` LONGTEXT NULL, `errorMsg` LONGTEXT NULL, `jobParams` LONGTEXT NOT NULL,
            `jobMeta` LONGTEXT NULL, `jobLog` LONGTEXT NULL, `retries` int NULL DEFAULT 0,
            PRIMARY KEY (`id`), INDEX (`userName`), INDEX (`jobTime`), INDEX (`jobId`),
            INDEX (`jobStatus`))"
        }
        TableVersion::Upstream => {
            "CREATE TABLE jobs (
            `id` INT NOT NULL AUTO_INCREMENT, `jobId` varchar(50) NOT NULL,
            `familyToken` varchar(50) NOT NULL, `isParent` INT NOT NULL,
            `jobName` varchar(1024) NOT NULL, `userName` varchar(255) NOT NULL,
            `vcName` varchar(255) NOT NULL,
            `jobStatus` varchar(255) NOT NULL DEFAULT 'unapproved', `jobStatusDetail` LONGTEXT NULL,
            `jobType` varchar(255) NOT NULL, `jobDescriptionPath` TEXT NULL,
            `jobDescription` LONGTEXT NULL, `jobTime` DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL,
            `endpoints` LONGTEXT NULL, `errorMsg` LONGTEXT NULL, `jobParams` LONGTEXT NOT NULL,
            `jobMeta` LONGTEXT NULL, `jobLog` LONGTEXT NULL, `retries` int NULL DEFAULT 0,
            `lastUpdated` DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL,
            PRIMARY KEY (`id`), UNIQUE (`jobId`), INDEX (`userName`), INDEX (`jobTime`),
            INDEX (`jobId`), INDEX (`jobStatus`))"
        }
    };
    [
        jobs,
        "CREATE TABLE clusterstatus (`id` INT NOT NULL AUTO_INCREMENT, `status` LONGTEXT NOT NULL,
         `time` DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL, PRIMARY KEY (`id`))",
        "CREATE TABLE commands (`id` INT NOT NULL AUTO_INCREMENT, `jobId` varchar(50) NOT NULL,
         `status` varchar(255) NOT NULL DEFAULT 'pending',
         `time` DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL, `command` TEXT NOT NULL,
         `output` TEXT NULL, PRIMARY KEY (`id`))",
        "CREATE TABLE users (`id` INT NOT NULL AUTO_INCREMENT, `username` varchar(255) NOT NULL,
         `userId` varchar(255) NOT NULL, `time` DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL,
         PRIMARY KEY (`id`))",
    ]
}

/// One UPDATE of a job row, as DLWorkspace's job manager writes it.
struct Update {
    to: JobStatus,
    retries: i64,
    error: Option<&'static str>,
    endpoints: Option<String>,
    log: String,
}

impl Update {
    fn sql(&self, version: TableVersion) -> &'static str {
        match version {
            TableVersion::Seed => {
                "UPDATE jobs SET jobStatus = ?, jobStatusDetail = ?, retries = ?, \
                 errorMsg = COALESCE(?, errorMsg), endpoints = COALESCE(?, endpoints), \
                 jobLog = CONCAT(COALESCE(jobLog, ''), ?) WHERE jobId = ?"
            }
            TableVersion::Upstream => {
                "UPDATE jobs SET jobStatus = ?, jobStatusDetail = ?, retries = ?, \
                 errorMsg = COALESCE(?, errorMsg), endpoints = COALESCE(?, endpoints), \
                 jobLog = CONCAT(COALESCE(jobLog, ''), ?), lastUpdated = ? WHERE jobId = ?"
            }
        }
    }

    fn params(self, job_id: &str, at: DateTime<Utc>, version: TableVersion) -> Vec<Value> {
        let detail = json!([{ "message": format!("job is {}", self.to) }]).to_string();
        let mut p: Vec<Value> = vec![
            self.to.as_str().into(),
            detail.into(),
            self.retries.into(),
            self.error.into(),
            self.endpoints.into(),
            self.log.into(),
        ];
        if version == TableVersion::Upstream {
            p.push(at.naive_utc().into());
        }
        p.push(job_id.into());
        p
    }
}

fn error_msg(to: JobStatus) -> Option<&'static str> {
    match to {
        JobStatus::Failed => Some("Job failed: pod exited with code 1 (CUDA error: out of memory)"),
        JobStatus::Error => Some("Error: failed to create pod: node not ready"),
        JobStatus::Killed => Some("Killed by user request"),
        _ => None,
    }
}

/// DLWorkspace's endpoints of a running job; `nodeName` says where it runs.
fn endpoints(job_id: &str, i: usize) -> String {
    json!({ format!("{job_id}-ssh"): {
        "id": format!("{job_id}-ssh"), "jobId": job_id, "name": "ssh",
        "podName": format!("{job_id}-master"), "status": "running",
        "nodeName": format!("node-{}", i % 16), "port": 30_000 + i % 2_000,
    }})
    .to_string()
}

fn second(t: DateTime<Utc>) -> DateTime<Utc> {
    // Whole seconds, as DATETIME keeps them; cannot overflow for real times.
    t.duration_trunc(TimeDelta::seconds(1)).unwrap_or(t)
}

impl Generator {
    /// Creates the database `DLWorkspaceCluster-<cluster_id>` (dropping one
    /// of that name first) on the server of `server_url` (a user that may
    /// create databases, e.g. `mysql://root@127.0.0.1:3306`), with `version`'s
    /// tables. `seed` makes the jobs reproducible.
    pub async fn create(
        server_url: &str,
        cluster_id: &str,
        version: TableVersion,
        seed: u64,
    ) -> mysql_async::Result<Generator> {
        let server = Opts::from_url(server_url)?;
        let database = format!("DLWorkspaceCluster-{cluster_id}");
        let mut admin = mysql_async::Conn::new(server.clone()).await?;
        admin
            .query_drop(format!("DROP DATABASE IF EXISTS `{database}`"))
            .await?;
        admin
            .query_drop(format!(
                "CREATE DATABASE `{database}` DEFAULT CHARACTER SET 'utf8mb4'"
            ))
            .await?;
        admin.disconnect().await?;
        let opts: Opts = OptsBuilder::from_opts(server.clone())
            .db_name(Some(database.clone()))
            .into();
        let pool = Pool::new(opts);
        let mut conn = pool.get_conn().await?;
        for sql in ddl(version) {
            conn.query_drop(sql).await?;
        }
        drop(conn);
        Ok(Generator {
            pool,
            server,
            database,
            version,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            jobs: Vec::new(),
            log: Vec::new(),
            status_rows: 0,
            stamp_changes: true,
        })
    }

    /// Whether a status change also sets `lastUpdated` (upstream tables
    /// only; the default). Upstream DLWorkspace's own updates do not, and
    /// `false` writes as they do.
    pub fn stamp_last_updated(&mut self, on: bool) {
        self.stamp_changes = on;
    }

    /// The version whose UPDATE statements are written: an upstream table
    /// whose writer leaves lastUpdated alone is updated like a seed one.
    fn update_version(&self) -> TableVersion {
        if self.stamp_changes {
            self.version
        } else {
            TableVersion::Seed
        }
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The table version written.
    pub fn version(&self) -> TableVersion {
        self.version
    }

    /// A URL of the cluster database for `user[:password]` on `host:port`.
    pub fn url_for(&self, user: &str, host: &str, port: u16) -> String {
        format!("mysql://{user}@{host}:{port}/{}", self.database)
    }

    /// Every transition made so far, in order.
    pub fn log(&self) -> &[Transition] {
        &self.log
    }

    /// Jobs that have not reached the end of their lifecycle.
    pub fn open_jobs(&self) -> usize {
        self.jobs.iter().filter(|j| j.open()).count()
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: reproducible and good enough to vary job lifecycles.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    fn plan(&mut self) -> Vec<JobStatus> {
        use JobStatus::*;
        let mut p = vec![Unapproved, Queued];
        match self.next() % 20 {
            0 => p.extend([Killing, Killed]),
            1 | 2 => p.extend([Scheduling, Running, Failed]),
            3 => p.extend([Scheduling, Running, Error]),
            4 | 5 => p.extend([Scheduling, Running, Killing, Killed]),
            6 | 7 => p.extend([
                Scheduling, Running, Pausing, Paused, Queued, Scheduling, Running, Finished,
            ]),
            8 => p.extend([Scheduling, Running, Queued, Scheduling, Running, Finished]),
            _ => p.extend([Scheduling, Running, Finished]),
        }
        p
    }

    /// Submits `n` jobs at `at` (status `unapproved`).
    pub async fn submit(&mut self, n: usize, at: DateTime<Utc>) -> mysql_async::Result<()> {
        let at = second(at);
        let mut fresh = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.jobs.len() + fresh.len();
            let job_id = format!("{:08x}-{:04x}-job-{k}", self.next() as u32, k % 65_536);
            let user = self.pick(&USERS).to_string();
            let gpus = [0, 1, 1, 2, 4, 8][(self.next() % 6) as usize];
            let plan = self.plan();
            fresh.push(Job {
                job_id,
                user,
                gpus,
                gpu_type: "",
                plan,
                at: 0,
                retries: 0,
                log: String::new(),
            });
        }
        let mut rows = Vec::with_capacity(n);
        for (k, j) in fresh.iter_mut().enumerate() {
            let job_name = self.pick(&JOB_NAMES);
            j.gpu_type = self.pick(&GPU_TYPES);
            let params = json!({
                "jobId": j.job_id, "jobName": job_name, "userName": j.user,
                "resourcegpu": j.gpus, "gpuType": j.gpu_type,
                "jobtrainingtype": self.pick(&TRAINING_TYPES), "vcName": self.pick(&VCS),
                "image": "dlws/pytorch:1.13-cuda11.7", "cmd": "python train.py --epochs 10",
                "familyToken": j.job_id, "isParent": 1, "jobType": "training",
            });
            rows.push((k, params));
        }
        let mut tx = self.pool.start_transaction(TxOpts::default()).await?;
        for chunk in rows.chunks(500) {
            let cols = self.insert_columns();
            let one = format!("({})", vec!["?"; cols.len()].join(","));
            let sql = format!(
                "INSERT INTO jobs ({}) VALUES {}",
                cols.join(","),
                vec![one.as_str(); chunk.len()].join(",")
            );
            let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * cols.len());
            for (k, p) in chunk {
                let j = &fresh[*k];
                params.extend([
                    j.job_id.clone().into(),
                    j.job_id.clone().into(),
                    1.into(),
                    p["jobName"].as_str().unwrap_or_default().into(),
                    j.user.clone().into(),
                    "unapproved".into(),
                    "training".into(),
                    at.naive_utc().into(),
                    p.to_string().into(),
                    json!({"submitter": j.user}).to_string().into(),
                    0.into(),
                ]);
                if self.version == TableVersion::Upstream {
                    params.push(p["vcName"].as_str().unwrap_or_default().into());
                    params.push(at.naive_utc().into());
                }
            }
            tx.exec_drop(sql, params).await?;
        }
        tx.commit().await?;
        for j in &fresh {
            self.log.push(Transition {
                job_id: j.job_id.clone(),
                user_name: j.user.clone(),
                status: JobStatus::Unapproved,
                at,
                gpus: j.gpus,
                gpu_type: j.gpu_type,
            });
        }
        self.jobs.extend(fresh);
        Ok(())
    }

    fn insert_columns(&self) -> Vec<&'static str> {
        let mut c = vec![
            "jobId",
            "familyToken",
            "isParent",
            "jobName",
            "userName",
            "jobStatus",
            "jobType",
            "jobTime",
            "jobParams",
            "jobMeta",
            "retries",
        ];
        if self.version == TableVersion::Upstream {
            c.extend(["vcName", "lastUpdated"]);
        }
        c
    }

    /// Moves every open job one status on, at `at`. Returns how many moved.
    pub async fn step(&mut self, at: DateTime<Utc>) -> mysql_async::Result<usize> {
        let all: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| self.jobs[i].open())
            .collect();
        self.advance(&all, at).await
    }

    /// Moves up to `n` open jobs, picked at random, one status on, at `at`.
    pub async fn step_some(&mut self, n: usize, at: DateTime<Utc>) -> mysql_async::Result<usize> {
        let mut open: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| self.jobs[i].open())
            .collect();
        let m = n.min(open.len());
        // A partial Fisher-Yates shuffle: m distinct open jobs.
        for k in 0..m {
            let r = k + (self.next() % (open.len() - k) as u64) as usize;
            open.swap(k, r);
        }
        let mut picked = open[..m].to_vec();
        picked.sort_unstable();
        self.advance(&picked, at).await
    }

    async fn advance(&mut self, which: &[usize], at: DateTime<Utc>) -> mysql_async::Result<usize> {
        let at = second(at);
        let uv = self.update_version();
        let mut tx = self.pool.start_transaction(TxOpts::default()).await?;
        let mut next = Vec::with_capacity(which.len());
        for &i in which {
            let j = &self.jobs[i];
            let (from, to) = (j.plan[j.at], j.plan[j.at + 1]);
            let retries =
                j.retries + i64::from(from == JobStatus::Running && to == JobStatus::Queued);
            let line = format!("{} {to}\n", at.format("%Y-%m-%dT%H:%M:%SZ"));
            let update = Update {
                to,
                retries,
                error: error_msg(to),
                endpoints: (to == JobStatus::Running).then(|| endpoints(&j.job_id, i)),
                log: line.clone(),
            };
            tx.exec_drop(update.sql(uv), update.params(&j.job_id, at, uv))
                .await?;
            next.push((i, retries, line));
        }
        tx.commit().await?;
        for (i, retries, line) in next {
            let j = &mut self.jobs[i];
            j.at += 1;
            j.retries = retries;
            j.log.push_str(&line);
            self.log.push(Transition {
                job_id: j.job_id.clone(),
                user_name: j.user.clone(),
                status: j.plan[j.at],
                at,
                gpus: j.gpus,
                gpu_type: j.gpu_type,
            });
        }
        Ok(which.len())
    }

    /// Moves every open job but the newest `keep_open` straight to the end
    /// of its lifecycle, the k-th of them at `from` + k seconds: a cluster's
    /// past, written before any sync watches (a sync would see only the
    /// final status). Every transition is still logged, at its job's time.
    pub async fn settle(
        &mut self,
        keep_open: usize,
        from: DateTime<Utc>,
    ) -> mysql_async::Result<()> {
        let from = second(from);
        let open: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| self.jobs[i].open())
            .collect();
        let settle = &open[..open.len().saturating_sub(keep_open)];
        let uv = self.update_version();
        for chunk in settle.chunks(5_000) {
            let mut tx = self.pool.start_transaction(TxOpts::default()).await?;
            for &i in chunk {
                let at = from + TimeDelta::seconds(i as i64);
                let j = &self.jobs[i];
                let last = *j.plan.last().unwrap_or(&JobStatus::Unapproved);
                let retries = j
                    .plan
                    .windows(2)
                    .filter(|w| w[0] == JobStatus::Running && w[1] == JobStatus::Queued)
                    .count() as i64;
                let lines: String = j.plan[j.at + 1..]
                    .iter()
                    .map(|s| format!("{} {s}\n", at.format("%Y-%m-%dT%H:%M:%SZ")))
                    .collect();
                let ran = j.plan.contains(&JobStatus::Running);
                let update = Update {
                    to: last,
                    retries,
                    error: error_msg(last),
                    endpoints: ran.then(|| endpoints(&j.job_id, i)),
                    log: lines,
                };
                tx.exec_drop(update.sql(uv), update.params(&j.job_id, at, uv))
                    .await?;
            }
            tx.commit().await?;
            for &i in chunk {
                let at = from + TimeDelta::seconds(i as i64);
                let j = &mut self.jobs[i];
                while j.open() {
                    j.at += 1;
                    let st = j.plan[j.at];
                    j.retries += i64::from(
                        st == JobStatus::Queued && j.plan[j.at - 1] == JobStatus::Running,
                    );
                    self.log.push(Transition {
                        job_id: j.job_id.clone(),
                        user_name: j.user.clone(),
                        status: st,
                        at,
                        gpus: j.gpus,
                        gpu_type: j.gpu_type,
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes a `clusterstatus` row at `at`, as DLWorkspace's cluster
    /// manager does every cycle.
    pub async fn cluster_status(&mut self, at: DateTime<Utc>) -> mysql_async::Result<()> {
        self.status_rows += 1;
        let running: i64 = self
            .jobs
            .iter()
            .filter(|j| j.plan[j.at] == JobStatus::Running)
            .map(|j| j.gpus)
            .sum();
        let status = json!({
            "gpu_capacity": {"A100": 64, "V100": 32, "H100": 32},
            "gpu_used": running, "node_status": [{"name": "node-0", "ready": true}],
            "user_status": USERS, "seq": self.status_rows,
        });
        // Upstream DLWorkspace stores the status as base64 of its JSON.
        let status = match self.version {
            TableVersion::Seed => status.to_string(),
            TableVersion::Upstream => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(status.to_string())
            }
        };
        let mut conn = self.pool.get_conn().await?;
        conn.exec_drop(
            "INSERT INTO clusterstatus (status, time) VALUES (?, ?)",
            (status, second(at).naive_utc()),
        )
        .await
    }

    /// A connection to the cluster database, for writing rows the
    /// lifecycle would not (bad rows, manual fixes).
    pub async fn conn(&self) -> mysql_async::Result<mysql_async::Conn> {
        self.pool.get_conn().await
    }

    /// Drops the database.
    pub async fn drop_database(self) -> mysql_async::Result<()> {
        self.pool.disconnect().await?;
        let mut admin = mysql_async::Conn::new(self.server).await?;
        admin
            .query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.database))
            .await?;
        admin.disconnect().await
    }
}
