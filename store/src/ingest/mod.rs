//! The one ingest path, used by the direct sink and `POST /api/v1/ingest`
//! alike: validate, register the inventory, resolve GPUs, write the
//! samples, record the heartbeat, all in one transaction or none of it.
//!
//! [`Ingestor::ingest`] refuses a batch that breaks a rule of the schema
//! ([`StoreError::Rejected`], every problem named by its JSON path), a GPU
//! UUID that another host holds, or an environment sample for an
//! environment that is not placed on the reporting host
//! ([`StoreError::Conflict`], [`StoreError::Rejected`]), before anything is
//! written; a failure after that rolls the whole transaction back. An
//! unchanged inventory is not written again: its ids are cached after the
//! commit and checked against `gpus` in each transaction, so an admin's
//! move or a removal is seen at once.

mod validate;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, Transaction};

use crate::inventory::{self, GpuInfo, HostInfo};
use crate::{
    Batch, BatchWriter, EnvSample, GpuSample, Pool, Result, StoreError, WriteStats, WriterConfig,
};

pub use validate::{check, IngestLimits, MAX_PROBLEMS};

/// host id → (inventory fingerprint, UUID → `gpus.id`) of its last commit.
type Known = HashMap<String, (u64, HashMap<String, i64>)>;

/// Stores inventories and batches. Share one per process.
pub struct Ingestor {
    pool: Pool,
    writer: BatchWriter,
    limits: IngestLimits,
    known: Mutex<Known>,
}

impl Ingestor {
    /// An ingestor over `pool`.
    pub fn new(pool: Pool, writer: WriterConfig, limits: IngestLimits) -> Self {
        Ingestor {
            writer: BatchWriter::new(pool.clone(), writer),
            pool,
            limits,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `batch` of the hosts in `inventory` (each with its GPUs, as
    /// they are now) as of `now`: everything or nothing. Idempotent: samples
    /// already stored are counted as duplicates.
    pub async fn ingest(
        &self,
        inventory: &[(HostInfo, Vec<GpuInfo>)],
        batch: &Batch,
        now: DateTime<Utc>,
    ) -> Result<WriteStats> {
        let problems = check(inventory, batch, &self.limits, now);
        if !problems.is_empty() {
            return Err(StoreError::Rejected { problems });
        }
        let mut gpu: Vec<GpuSample> = batch.gpu.iter().map(|r| r.sample.clone()).collect();
        let env = with_hosts(inventory, &batch.env);
        let mut client = self.pool.get().await?;
        self.writer.prepare(&client, &gpu).await?;
        self.writer.prepare(&client, &batch.host).await?;
        self.writer.prepare(&client, &env).await?;
        let what = |e| StoreError::query("the ingest transaction", e);
        let mut tx = Client::transaction(&mut client).await.map_err(what)?;
        check_environments(&tx, &env).await?;
        let (ids, fresh) = self.register(&tx, inventory, batch, now).await?;
        for (s, r) in gpu.iter_mut().zip(&batch.gpu) {
            // Validation proved every reading's UUID is in the inventory.
            s.gpu_id = ids[r.uuid.as_str()];
        }
        let mut stats = self.writer.write_in(&mut tx, &gpu).await?;
        stats += self.writer.write_in(&mut tx, &batch.host).await?;
        stats += self.writer.write_in(&mut tx, &env).await?;
        record_liveness(&tx, &gpu, batch).await?;
        tx.commit().await.map_err(what)?;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.extend(fresh);
        Ok(stats)
    }

    /// Registers each host whose inventory is not the one cached, and
    /// returns UUID → `gpus.id` of all, with what to cache after the commit.
    async fn register(
        &self,
        tx: &Transaction<'_>,
        inventory: &[(HostInfo, Vec<GpuInfo>)],
        batch: &Batch,
        now: DateTime<Utc>,
    ) -> Result<(HashMap<String, i64>, Known)> {
        let mut ids = HashMap::new();
        let mut fresh = Known::new();
        for (host, gpus) in inventory {
            let fp = fingerprint(host, gpus);
            let cached = {
                let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
                known
                    .get(&host.id)
                    .filter(|(f, _)| *f == fp)
                    .map(|(_, m)| m.clone())
            };
            if let Some(m) = cached {
                let held: Vec<i64> = m.values().copied().collect();
                if inventory::still_registered(tx, &host.id, &held).await? {
                    ids.extend(m);
                    continue;
                }
            }
            // The heartbeat is the host's latest sample, as every later batch
            // records it, so GPU silence compares like with like.
            let beat = batch
                .host
                .iter()
                .filter(|s| s.host_id == host.id)
                .map(|s| s.collected_at)
                .max()
                .unwrap_or(now);
            inventory::upsert_host_in(tx, host, beat).await?;
            let m = inventory::register_gpus(tx, &host.id, gpus).await?;
            tracing::info!(host.id = %host.id, gpus = m.len(), "inventory registered");
            ids.extend(m.clone());
            fresh.insert(host.id.clone(), (fp, m));
        }
        Ok((ids, fresh))
    }
}

fn fingerprint(host: &HostInfo, gpus: &[GpuInfo]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&(host, gpus))
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

/// The environment samples with the batch's one host filled in where an
/// agent left it out (validation allows that only for a one-host batch):
/// `host_id` is the distribution column, stored NOT NULL (migration 0032).
fn with_hosts(inventory: &[(HostInfo, Vec<GpuInfo>)], env: &[EnvSample]) -> Vec<EnvSample> {
    let only = (inventory.len() == 1).then(|| inventory[0].0.id.as_str());
    env.iter()
        .map(|s| match (s.host_id.is_empty(), only) {
            (true, Some(host)) => EnvSample {
                host_id: host.to_string(),
                ..s.clone()
            },
            _ => s.clone(),
        })
        .collect()
}

/// Every environment sample must name an environment placed on its host
/// (filled in by [`with_hosts`] where the agent left it out).
async fn check_environments(tx: &Transaction<'_>, env: &[EnvSample]) -> Result<()> {
    if env.is_empty() {
        return Ok(());
    }
    let wanted: Vec<&str> = env
        .iter()
        .map(|s| s.env_id.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let rows = tx
        .query(
            "SELECT id, host_id FROM environments WHERE id = ANY($1) AND deleted_at IS NULL",
            &[&wanted],
        )
        .await
        .map_err(|e| StoreError::query("looking up the batch's environments", e))?;
    let placed: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut problems = Vec::new();
    for (i, s) in env.iter().enumerate() {
        let host = s.host_id.as_str();
        let what = match placed.get(&s.env_id) {
            None => format!("environment {:?} does not exist (or was deleted)", s.env_id),
            Some(h) if h != host => format!(
                "environment {:?} is placed on another host, not on {host:?}",
                s.env_id
            ),
            Some(_) => continue,
        };
        if problems.len() < MAX_PROBLEMS {
            problems.push(format!("batch.env[{i}].env_id: {what}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Rejected { problems })
    }
}

/// Each host's latest host sample (its heartbeat) and each GPU's latest
/// sample (`gpus.last_seen_at`). Hosts before GPUs, as registration locks
/// them, so two batches of one host cannot deadlock.
async fn record_liveness(tx: &Transaction<'_>, gpu: &[GpuSample], batch: &Batch) -> Result<()> {
    let mut beats: HashMap<&str, DateTime<Utc>> = HashMap::new();
    for s in &batch.host {
        let t = beats.entry(s.host_id.as_str()).or_insert(s.collected_at);
        *t = (*t).max(s.collected_at);
    }
    let mut beats: Vec<(&str, DateTime<Utc>)> = beats.into_iter().collect();
    beats.sort();
    for (host, at) in beats {
        inventory::heartbeat_in(tx, &[host.to_string()], at).await?;
    }
    let mut latest: HashMap<i64, DateTime<Utc>> = HashMap::new();
    for s in gpu {
        let t = latest.entry(s.gpu_id).or_insert(s.collected_at);
        *t = (*t).max(s.collected_at);
    }
    let mut latest: Vec<(i64, DateTime<Utc>)> = latest.into_iter().collect();
    latest.sort();
    let (ids, at): (Vec<i64>, Vec<DateTime<Utc>>) = latest.into_iter().unzip();
    inventory::seen(tx, &ids, &at).await
}
