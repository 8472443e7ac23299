//! Delivery, a task of its own: the collection loop only appends each batch
//! to the spool and wakes this task, so a slow or absent receiver never
//! delays sampling. The task registers the inventory when it changes,
//! sends the spool oldest first, sets aside what the receiver refuses for
//! good (with its answer), and retries transient failures after a capped
//! exponential backoff with jitter, so a fleet does not retry in lockstep
//! after an outage of the central service.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use gpuwatch_store::Batch;

use crate::sinks::{Sink, SinkError};

/// Most spooled batches sent in one request when a backlog is replayed.
const MERGE_BATCHES: usize = 16;
use crate::sources::cgroup::EnvTarget;
use crate::spool::Spool;
use crate::{CollectorError, Inventory};

/// Waits between retries: doubling from `first`, never above `cap`, each
/// drawn uniformly from its upper half (jitter).
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(first: Duration, cap: Duration) -> Self {
        Backoff {
            first,
            cap: cap.max(first),
            failures: 0,
        }
    }

    /// The ceiling of the next wait: first × 2^failures, capped.
    pub(crate) fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.failures.min(20);
        self.first.saturating_mul(factor).min(self.cap)
    }

    /// The wait after one more failure; `unit` in [0, 1) picks the jitter.
    pub(crate) fn next(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A number in [0, 1) that differs between agents and calls.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What one pass over the spool did.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// Batches the sink took.
    pub sent: u64,
    /// Receiver's reasons for the batches set aside.
    pub refused: Vec<String>,
    /// Why the pass stopped early, when the same batch may succeed later.
    pub transient: Option<SinkError>,
}

/// The sending side of the agent, owned by its task.
pub(crate) struct Delivery {
    pub sink: Sink,
    pub spool: Arc<Mutex<Spool>>,
    /// The latest inventory the collection loop read.
    pub inventory: watch::Receiver<Option<Inventory>>,
    /// What the sink has registered.
    pub registered: Option<Inventory>,
    /// The host whose environments to ask for (source "host").
    pub host: Option<String>,
    /// Environments for the collection loop.
    pub environments: watch::Sender<Option<Vec<EnvTarget>>>,
    pub backoff: Backoff,
}

pub(crate) fn lock(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    // A panic while holding it leaves the spool's index as consistent as
    // its files: every change renames or removes a file first.
    spool.lock().unwrap_or_else(|e| e.into_inner())
}

impl Delivery {
    /// Sends the spool oldest first until it is empty or a transient failure.
    pub async fn pass(&mut self) -> Result<Pass, CollectorError> {
        let mut pass = Pass::default();
        let latest = self.inventory.borrow_and_update().clone();
        if let Some(inv) = latest {
            if self.registered.as_ref() != Some(&inv) {
                if let Err(e) = self.sink.register(&inv).await {
                    pass.transient = Some(e);
                    return Ok(pass);
                }
                self.registered = Some(inv);
            }
        }
        if self.registered.is_none() {
            pass.transient = Some(SinkError {
                transient: true,
                message: "inventory not registered yet".into(),
            });
            return Ok(pass);
        }
        loop {
            // A backlog goes out several batches per request: after an
            // outage the agent catches up at the server's pace, not one
            // cycle's batch per round trip.
            let group = lock(&self.spool).oldest_n(MERGE_BATCHES)?;
            if group.is_empty() {
                break;
            }
            if group.len() > 1 {
                let mut merged = Batch::default();
                for (_, b) in &group {
                    merged.gpu.extend(b.gpu.iter().cloned());
                    merged.host.extend(b.host.iter().cloned());
                    merged.env.extend(b.env.iter().cloned());
                }
                match self.sink.send(&merged).await {
                    Ok(inserted) => {
                        let mut spool = lock(&self.spool);
                        for (seq, _) in &group {
                            spool.remove(*seq)?;
                        }
                        drop(spool);
                        for _ in &group {
                            crate::serve::delivered(&Ok(()));
                        }
                        tracing::info!(
                            batches = group.len(),
                            rows = merged.len(),
                            inserted,
                            "spooled batches delivered"
                        );
                        pass.sent += group.len() as u64;
                        continue;
                    }
                    Err(e) if e.transient => {
                        crate::serve::delivered(&Err(e.clone()));
                        pass.transient = Some(e);
                        break;
                    }
                    // One of them is refused: find which, one at a time.
                    Err(_) => {}
                }
            }
            for (seq, batch) in group {
                if !self.send_one(seq, &batch, &mut pass).await? {
                    return Ok(pass);
                }
            }
        }
        if pass.sent > 1 {
            tracing::info!(replayed = pass.sent, "spool replayed; the sink is back");
        }
        Ok(pass)
    }

    /// Sends one batch; false when a transient failure ends the pass.
    async fn send_one(
        &mut self,
        seq: u64,
        batch: &Batch,
        pass: &mut Pass,
    ) -> Result<bool, CollectorError> {
        let started = std::time::Instant::now();
        match self.sink.send(batch).await {
            Ok(inserted) => {
                lock(&self.spool).remove(seq)?;
                crate::serve::delivered(&Ok(()));
                tracing::info!(
                    rows = batch.len(),
                    inserted,
                    latency_ms = started.elapsed().as_millis() as u64,
                    "batch delivered"
                );
                pass.sent += 1;
                Ok(true)
            }
            Err(e) if e.transient => {
                crate::serve::delivered(&Err(e.clone()));
                pass.transient = Some(e);
                Ok(false)
            }
            Err(e) => {
                tracing::error!(error = %e, spool.seq = seq, "batch refused by the receiver; set aside in the spool's rejected/ with the reason");
                lock(&self.spool).reject(seq, &e.message)?;
                crate::serve::delivered(&Err(e.clone()));
                pass.refused.push(e.message);
                Ok(true)
            }
        }
    }

    async fn refresh_environments(&mut self) {
        if let Some(host) = &self.host {
            if let Some(envs) = self.sink.environments(host).await {
                self.environments.send_replace(Some(envs));
            }
        }
    }

    /// Runs until `shutdown`: a pass whenever the collection loop wakes it,
    /// or when the backoff after a transient failure is over. At shutdown
    /// one last pass, so what can be delivered is not left spooled.
    pub async fn run(
        mut self,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> Result<(), CollectorError> {
        // The first pass waits for the first batch: before it there is no
        // inventory to register.
        let mut wait = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified(), if wait.is_none() => {}
                _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
            }
            self.refresh_environments().await;
            let pass = self.pass().await?;
            wait = match pass.transient {
                None => {
                    self.backoff.reset();
                    None
                }
                Some(e) => {
                    let wait = self.backoff.next(jitter());
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, spooled = lock(&self.spool).len(), "batch not delivered; kept in the spool, retrying");
                    Some(wait)
                }
            };
        }
        if !lock(&self.spool).is_empty() {
            tracing::info!("replaying the spool once more before exit");
            let _ = self.pass().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn waits_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let ceilings: Vec<u64> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                b.next(0.999);
                c.as_secs()
            })
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn every_wait_lies_in_the_upper_half_of_its_ceiling_and_never_overflows() {
        // A property over many failure counts and jitter draws.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for cap in [1u64, 3, 60, 3600] {
            let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(cap));
            for _ in 0..200 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let unit = (seed >> 11) as f64 / (1u64 << 53) as f64;
                let ceiling = b.ceiling();
                let wait = b.next(unit);
                assert!(ceiling <= Duration::from_secs(cap).max(Duration::from_millis(250)));
                assert!(
                    wait <= ceiling && wait >= ceiling / 2,
                    "{wait:?} of {ceiling:?}"
                );
            }
        }
    }
}
