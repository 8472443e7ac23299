//! One sync cycle of one cluster, and the loop that repeats it.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use gpuwatch_store::{Pool, StoreError};
use mysql_async::{prelude::Queryable, Conn, Opts};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{ClusterConfig, DlworkspaceConfig},
    mapping::{map, MappedJob},
    source::{self, BadRow, Columns, SourceJob, TableVersion},
    store::{self, Cursor},
    DlwsError,
};

/// Rows read from MySQL per query and written per transaction.
const PAGE: usize = 5_000;
/// Ids per `IN (...)` re-read.
const REREAD_CHUNK: usize = 1_000;
/// Changed jobs are read from this long before the newest `lastUpdated`
/// seen: `lastUpdated` has whole seconds, and a transaction that commits
/// late can carry an older time than one already read. Re-reading is
/// idempotent, so the overlap costs only reads.
const LAST_UPDATED_OVERLAP: TimeDelta = TimeDelta::seconds(10);
/// How long a MySQL connect may take before the cycle gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The table version found.
    pub version: Option<TableVersion>,
    /// Rows read from MySQL (re-reads included).
    pub rows_read: u64,
    /// Jobs inserted or changed in `training_jobs`.
    pub jobs_changed: u64,
    /// Status history rows written.
    pub transitions: u64,
    /// Rows that did not map and are kept for the next cycle.
    pub bad_rows: u64,
    /// Owners (userName) with jobs but no customer.
    pub unmapped_owners: Vec<String>,
    /// Whether a clusterstatus row was read.
    pub cluster_status: bool,
}

/// Everything a cycle needs about its cluster.
struct Cycle<'a> {
    pool: &'a Pool,
    cluster: &'a ClusterConfig,
    cols: Columns,
    target: String,
    report: SyncReport,
    /// A row can be read twice in a cycle (a retry that also changed).
    bad_ids: std::collections::BTreeSet<i64>,
}

fn target(opts: &Opts) -> String {
    format!(
        "{}:{}/{}",
        opts.ip_or_hostname(),
        opts.tcp_port(),
        opts.db_name().unwrap_or("")
    )
}

impl Cycle<'_> {
    fn mysql(&self, what: &'static str) -> impl FnOnce(mysql_async::Error) -> DlwsError + '_ {
        move |source| DlwsError::Mysql {
            cluster: self.cluster.id.clone(),
            target: self.target.clone(),
            what,
            source,
        }
    }

    fn store(&self) -> impl Fn(StoreError) -> DlwsError + '_ {
        move |source| DlwsError::Store {
            cluster: self.cluster.id.clone(),
            source,
        }
    }

    fn pg(&self, what: &'static str) -> impl Fn(tokio_postgres::Error) -> DlwsError + '_ {
        move |e| (self.store())(StoreError::query(what, e))
    }

    /// Maps a page, writes it with the rows kept for retry and the cursor
    /// in one transaction. A page the database refuses is written row by
    /// row, so one bad row cannot hold back the others.
    async fn write(
        &mut self,
        rows: Vec<Result<SourceJob, BadRow>>,
        cursor: Option<&Cursor>,
    ) -> Result<(), DlwsError> {
        self.report.rows_read += rows.len() as u64;
        let observed = Utc::now();
        let mut bad = Vec::new();
        let mut by_job: HashMap<String, MappedJob> = HashMap::new();
        for r in rows {
            match r.and_then(|s| {
                let (id, job_id) = (s.id, s.job_id.clone());
                map(s, observed).map_err(|reason| BadRow {
                    id,
                    job_id: Some(job_id),
                    reason,
                })
            }) {
                // A jobId twice in a seed table (it is not unique there):
                // the newer row wins, as DLWorkspace's own lookups by jobId do.
                Ok(m) => match by_job.get(&m.job_id) {
                    Some(o) if o.source_id > m.source_id => {}
                    _ => {
                        by_job.insert(m.job_id.clone(), m);
                    }
                },
                Err(b) => bad.push(b),
            }
        }
        let mut good: Vec<MappedJob> = by_job.into_values().collect();
        good.sort_by_key(|m| m.source_id);
        let k = self.cluster;
        let mut client = self.pool.get().await.map_err(self.store())?;
        let done = {
            let tx = client
                .transaction()
                .await
                .map_err(self.pg("starting a sync transaction"))?;
            store::lock_cluster(&*tx, &k.id)
                .await
                .map_err(self.store())?;
            match store::upsert(&*tx, &k.id, k.owner_rule, &good).await {
                Ok(u) => {
                    self.finish(&tx, &good, &bad, cursor).await?;
                    tx.commit()
                        .await
                        .map_err(self.pg("committing a sync transaction"))?;
                    self.count(u);
                    true
                }
                Err(e) if e.as_db_error().is_some() => false,
                Err(e) => return Err(self.pg("writing training_jobs")(e)),
            }
        };
        if !done {
            bad.extend(self.row_by_row(&mut client, &good).await?);
            good.retain(|g| !bad.iter().any(|b| b.id == g.source_id));
            let tx = client
                .transaction()
                .await
                .map_err(self.pg("starting a sync transaction"))?;
            self.finish(&tx, &good, &bad, cursor).await?;
            tx.commit()
                .await
                .map_err(self.pg("committing a sync transaction"))?;
        }
        for b in &bad {
            tracing::warn!(
                cluster.id = %k.id,
                job.source_id = b.id,
                job.id = b.job_id.as_deref().unwrap_or(""),
                reason = %b.reason,
                "dlworkspace job row not synced; it is read again next cycle"
            );
        }
        self.bad_ids.extend(bad.iter().map(|b| b.id));
        self.report.bad_rows = self.bad_ids.len() as u64;
        Ok(())
    }

    /// Retries resolved and added, and the cursor, with the page's jobs.
    async fn finish(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        good: &[MappedJob],
        bad: &[BadRow],
        cursor: Option<&Cursor>,
    ) -> Result<(), DlwsError> {
        let k = self.cluster;
        let ids: Vec<i64> = good.iter().map(|g| g.source_id).collect();
        store::clear_retries(tx, &k.id, &ids)
            .await
            .map_err(self.store())?;
        store::record_bad(tx, &k.id, bad)
            .await
            .map_err(self.store())?;
        if let Some(c) = cursor {
            store::save_cursor(tx, &k.id, self.cols.version(), c)
                .await
                .map_err(self.store())?;
        }
        Ok(())
    }

    fn count(&mut self, u: store::Upserted) {
        self.report.jobs_changed += u.changed;
        self.report.transitions += u.transitions;
    }

    async fn row_by_row(
        &mut self,
        client: &mut deadpool_postgres::Object,
        good: &[MappedJob],
    ) -> Result<Vec<BadRow>, DlwsError> {
        let k = self.cluster;
        let mut bad = Vec::new();
        for g in good {
            let tx = client
                .transaction()
                .await
                .map_err(self.pg("starting a sync transaction"))?;
            store::lock_cluster(&*tx, &k.id)
                .await
                .map_err(self.store())?;
            match store::upsert(&*tx, &k.id, k.owner_rule, std::slice::from_ref(g)).await {
                Ok(u) => {
                    tx.commit()
                        .await
                        .map_err(self.pg("committing a sync transaction"))?;
                    self.count(u);
                }
                Err(e) if e.as_db_error().is_some() => bad.push(BadRow {
                    id: g.source_id,
                    job_id: Some(g.job_id.clone()),
                    reason: format!("training_jobs refused it: {}", db_text(&e)),
                }),
                Err(e) => return Err(self.pg("writing training_jobs")(e)),
            }
        }
        Ok(bad)
    }

    /// Re-reads rows by id: those kept for retry, and the jobs not yet
    /// final. On seed tables their changes have no timestamp to find them
    /// by; on upstream tables DLWorkspace itself sets `jobStatus` without
    /// touching `lastUpdated` (its UpdateJobTextField and SetJobError), so
    /// `lastUpdated` alone would lose status changes.
    async fn reread(&mut self, conn: &mut Conn) -> Result<(), DlwsError> {
        let k = self.cluster;
        let client = self.pool.get().await.map_err(self.store())?;
        let mut ids = store::retry_ids(&**client, &k.id)
            .await
            .map_err(self.store())?;
        ids.extend(
            store::open_source_ids(&**client, &k.id)
                .await
                .map_err(self.store())?,
        );
        drop(client);
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(REREAD_CHUNK) {
            let rows = source::jobs_by_id(conn, self.cols, chunk)
                .await
                .map_err(self.mysql("re-reading jobs by id"))?;
            self.write(rows, None).await?;
        }
        Ok(())
    }

    async fn new_jobs(&mut self, conn: &mut Conn, cur: &mut Cursor) -> Result<(), DlwsError> {
        loop {
            let rows = source::new_jobs(conn, self.cols, cur.last_id, PAGE)
                .await
                .map_err(self.mysql("reading new jobs"))?;
            let n = rows.len();
            let ids = rows.iter().map(|r| match r {
                Ok(s) => s.id,
                Err(b) => b.id,
            });
            cur.last_id = ids.max().unwrap_or(cur.last_id).max(cur.last_id);
            let newest = rows
                .iter()
                .filter_map(|r| r.as_ref().ok()?.last_updated)
                .max()
                .map(|t| t.and_utc());
            if let Some(t) = newest {
                cur.last_updated = Some(cur.last_updated.map_or(t, |c| c.max(t)));
            }
            self.write(rows, Some(cur)).await?;
            if n < PAGE {
                return Ok(());
            }
        }
    }

    async fn changed_jobs(
        &mut self,
        conn: &mut Conn,
        cur: &mut Cursor,
        seen_before: Option<DateTime<Utc>>,
    ) -> Result<(), DlwsError> {
        let Some(from) = seen_before else {
            return Ok(());
        };
        let mut key = ((from - LAST_UPDATED_OVERLAP).naive_utc(), 0i64);
        loop {
            let rows = source::changed_jobs(conn, self.cols, key.0, key.1, cur.last_id, PAGE)
                .await
                .map_err(self.mysql("reading changed jobs"))?;
            let n = rows.len();
            if let Some(last) = rows.iter().rev().find_map(|r| r.as_ref().ok()) {
                if let Some(t) = last.last_updated {
                    key = (t, last.id);
                    let t = t.and_utc();
                    cur.last_updated = Some(cur.last_updated.map_or(t, |c| c.max(t)));
                }
            }
            self.write(rows, Some(cur)).await?;
            if n < PAGE {
                return Ok(());
            }
        }
    }

    async fn cluster_status(&mut self, conn: &mut Conn) -> Result<(), DlwsError> {
        let k = self.cluster;
        match source::latest_cluster_status(conn)
            .await
            .map_err(self.mysql("reading clusterstatus"))?
        {
            None => {}
            Some(Err(b)) => tracing::warn!(
                cluster.id = %k.id, clusterstatus.id = b.id, reason = %b.reason,
                "dlworkspace clusterstatus row not read"
            ),
            Some(Ok(row)) => {
                let client = self.pool.get().await.map_err(self.store())?;
                store::cluster_status(&**client, &k.id, &row)
                    .await
                    .map_err(self.store())?;
                self.report.cluster_status = true;
            }
        }
        Ok(())
    }
}

fn db_text(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

async fn connect(cluster: &ClusterConfig) -> Result<(Conn, String), DlwsError> {
    let opts = Opts::from_url(&cluster.url).map_err(|e| DlwsError::BadUrl {
        cluster: cluster.id.clone(),
        reason: e.to_string(),
    })?;
    let target = target(&opts);
    let fail = |source| DlwsError::Mysql {
        cluster: cluster.id.clone(),
        target: target.clone(),
        what: "connecting",
        source,
    };
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts.clone())).await {
        Ok(c) => c.map_err(fail)?,
        Err(_) => {
            return Err(fail(mysql_async::Error::Io(mysql_async::IoError::Io(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            ))))
        }
    };
    // The sync only reads; a session that cannot write makes sure of it
    // even where the configured user could.
    conn.query_drop("SET SESSION TRANSACTION READ ONLY")
        .await
        .map_err(fail)?;
    Ok((conn, target))
}

/// Runs one sync cycle of `cluster` into the database of `pool`: new jobs,
/// changed jobs, retries, the latest clusterstatus, owners.
pub async fn sync_once(pool: &Pool, cluster: &ClusterConfig) -> Result<SyncReport, DlwsError> {
    let (mut conn, target) = connect(cluster).await?;
    let result = cycle(pool, cluster, &mut conn, target).await;
    // Closing politely is best-effort: the cycle's outcome is what counts.
    let _ = conn.disconnect().await;
    result
}

async fn cycle(
    pool: &Pool,
    cluster: &ClusterConfig,
    conn: &mut Conn,
    target: String,
) -> Result<SyncReport, DlwsError> {
    let cols = source::columns(conn)
        .await
        .map_err(|source| DlwsError::Mysql {
            cluster: cluster.id.clone(),
            target: target.clone(),
            what: "reading the columns of jobs",
            source,
        })?
        .ok_or_else(|| DlwsError::NoJobsTable {
            cluster: cluster.id.clone(),
            target: target.clone(),
        })?;
    let mut c = Cycle {
        pool,
        cluster,
        cols,
        target,
        report: SyncReport {
            version: Some(cols.version()),
            ..SyncReport::default()
        },
        bad_ids: Default::default(),
    };
    let mut cur = {
        let client = pool.get().await.map_err(c.store())?;
        store::cursor(&**client, &cluster.id)
            .await
            .map_err(c.store())?
    };
    let seen_before = cur.last_updated.filter(|_| cols.last_updated);
    c.reread(conn).await?;
    c.new_jobs(conn, &mut cur).await?;
    if cols.last_updated {
        c.changed_jobs(conn, &mut cur, seen_before).await?;
    }
    c.cluster_status(conn).await?;
    let client = pool.get().await.map_err(c.store())?;
    let unmapped = store::remap_owners(&**client, &cluster.id, cluster.owner_rule)
        .await
        .map_err(c.store())?;
    store::cycle_done(
        &**client,
        &cluster.id,
        cluster.billing,
        unmapped.len() as i32,
    )
    .await
    .map_err(c.store())?;
    if !unmapped.is_empty() {
        tracing::warn!(
            cluster.id = %cluster.id,
            owner_rule = cluster.owner_rule.name(),
            unmapped_owners = unmapped.len(),
            first = %unmapped.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            "dlworkspace jobs whose owner maps to no customer; they are kept with customer_id NULL"
        );
    }
    c.report.unmapped_owners = unmapped;
    Ok(c.report)
}

/// Syncs every configured cluster at its poll interval until `shutdown`.
/// A failed cycle is logged (and kept in the cluster's record) and the next
/// one runs at the next tick.
pub async fn run(pool: Pool, config: DlworkspaceConfig, shutdown: CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    for cluster in config.clusters {
        let (pool, shutdown) = (pool.clone(), shutdown.clone());
        tasks.spawn(async move { run_cluster(pool, cluster, shutdown).await });
    }
    while tasks.join_next().await.is_some() {}
}

async fn run_cluster(pool: Pool, cluster: ClusterConfig, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(cluster.poll());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cycle = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sync_once(&pool, &cluster) => r,
        };
        match cycle {
            Ok(r) => tracing::debug!(
                cluster.id = %cluster.id, rows = r.rows_read, changed = r.jobs_changed,
                transitions = r.transitions, bad_rows = r.bad_rows, "dlworkspace sync cycle"
            ),
            Err(e) => {
                tracing::warn!(cluster.id = %cluster.id, error = %e, "dlworkspace sync cycle failed; retrying at the next tick");
                if let Ok(client) = pool.get().await {
                    // Best-effort: the log line above already carries it.
                    let _ = store::cycle_failed(&**client, &cluster.id, &e.to_string()).await;
                }
            }
        }
    }
}
