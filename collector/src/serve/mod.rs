//! The agent's own `/metrics` and `/health` (`collector.listen`), so a GPU
//! host needs neither dcgm-exporter nor node_exporter.
//!
//! Each cycle the run loop hands its batch to [`AgentMetrics::publish`],
//! which renders it once, without the database: GPUs under dcgm-exporter's
//! names and labels through the exporter's own GPU renderer (plus `pod`,
//! `namespace` and `container` where a GPU's process runs in a Kubernetes
//! pod: [`crate::sources::cgroup::pod`]), and this host under
//! node_exporter's ([`crate::sources::node`]). The text goes into a
//! [`gpuwatch_exporter::Exporter`], so a scrape behaves as on `gpuwatch
//! serve`: the rendered text as it is (gzip'd by the first scrape of a
//! cycle that asks for gzip, so a cycle nobody scrapes is not compressed),
//! followed by the self-metrics of the registry the
//! agent was given (spool depth, batches sent and refused, cycle time, last
//! delivery), and nothing but those once the last cycle is older than
//! `collector.staleness`.

mod http;
mod metrics;
mod render;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gpuwatch_exporter::{Exporter, ExporterConfig};
use gpuwatch_store::inventory::GpuInfo;
use gpuwatch_store::Batch;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::sinks::SinkError;
use crate::sources::cgroup::pod::{pod_labels, pod_of_cgroup, PodLabels};
use crate::sources::node::NodeSource;
use crate::{CollectorConfig, CollectorError, Fleet};

pub use http::router;

/// Counts one delivery's outcome (the delivery task calls it per batch).
pub(crate) fn delivered(outcome: &Result<(), SinkError>) {
    match outcome {
        Ok(()) => {
            metrics::BATCHES_SENT.inc();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            metrics::LAST_DELIVERY.set(now);
        }
        Err(e) if !e.transient => metrics::BATCHES_REFUSED.inc(),
        Err(_) => {}
    }
}

/// Publishes between inventory reads and pod look-ups (a GPU swapped or
/// a pod restarted shows within this many cycles; a new UUID at once).
const REFRESH_EVERY: u64 = 30;

/// Binds `collector.listen` and serves `/metrics` (at
/// `collector.telemetry_path`) and `/health` until `shutdown`; `None` when
/// no address is configured. The agent's metrics join `registry`.
pub async fn listen(
    cfg: &CollectorConfig,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<Option<AgentMetrics>, CollectorError> {
    let Some(addr) = cfg.listen.as_deref() else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| CollectorError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let metrics = AgentMetrics::new(cfg, registry);
    let app = router(metrics.exporter(), &cfg.telemetry_path);
    tracing::info!(addr = %listener.local_addr().map_or(addr.to_string(), |a| a.to_string()),
        path = %cfg.telemetry_path, "agent serves its own /metrics");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the agent's /metrics server stopped");
        }
    });
    Ok(Some(metrics))
}

/// What the run loop feeds each cycle; owns the rendering state.
pub struct AgentMetrics {
    exporter: Arc<Exporter>,
    proc_path: PathBuf,
    pod_metadata: Vec<String>,
    node: NodeSource,
    gpus: HashMap<String, GpuInfo>,
    hostnames: HashMap<String, String>,
    /// pid → its pod, `None` for a process of no pod.
    pods: HashMap<u32, Option<PodLabels>>,
    /// UUID → last XID seen: DCGM's XID field is sticky.
    xids: HashMap<String, i32>,
    cycles: u64,
}

impl AgentMetrics {
    /// Rendering state for `cfg`, scrapes gathering `registry` after the
    /// rendered text (the agent's metrics are put on it).
    pub fn new(cfg: &CollectorConfig, registry: Registry) -> AgentMetrics {
        if let Err(e) = metrics::register_metrics(&registry) {
            tracing::warn!(error = %e, "the agent's self-metrics are not registered");
        }
        let exporter = Exporter::with_registry(
            ExporterConfig {
                refresh_secs: cfg.interval_secs,
                staleness_secs: cfg.staleness_secs,
            },
            registry,
        );
        AgentMetrics {
            exporter,
            proc_path: cfg.cgroup.proc_path.clone(),
            pod_metadata: cfg.cgroup.pod_metadata.clone(),
            node: NodeSource::new(&cfg.host.proc_path),
            gpus: HashMap::new(),
            hostnames: HashMap::new(),
            pods: HashMap::new(),
            xids: HashMap::new(),
            cycles: 0,
        }
    }

    /// What scrapes read (the HTTP side holds it too).
    pub fn exporter(&self) -> Arc<Exporter> {
        self.exporter.clone()
    }

    /// Renders this cycle's readings for scrapes: the batch's GPUs, and
    /// this host from /proc when the fleet is this machine.
    pub fn publish(&mut self, fleet: &mut Fleet, batch: &Batch) {
        let started = Instant::now();
        self.cycles += 1;
        let unknown = batch.gpu.iter().any(|g| !self.gpus.contains_key(&g.uuid));
        if unknown || self.cycles.is_multiple_of(REFRESH_EVERY) || self.hostnames.is_empty() {
            self.refresh_inventory(fleet);
        }
        if self.cycles.is_multiple_of(REFRESH_EVERY) {
            self.pods.clear();
        }
        let pod_of_gpu = self.pods_of_gpus(fleet);
        for g in &batch.gpu {
            if let Some(x) = g.sample.xid_last {
                self.xids.insert(g.uuid.clone(), x);
            }
        }
        let meta: Vec<render::GpuMeta<'_>> = batch
            .gpu
            .iter()
            .map(|g| render::GpuMeta {
                info: self.gpus.get(&g.uuid),
                hostname: self
                    .hostnames
                    .get(&g.sample.host_id)
                    .map_or(g.sample.host_id.as_str(), String::as_str),
                pod: pod_of_gpu
                    .get(g.uuid.as_str())
                    .and_then(|pid| self.pods.get(pid)?.as_ref()),
            })
            .collect();
        let mut out = String::with_capacity(64 << 10);
        render::gpus(&mut out, &batch.gpu, &meta, &self.xids);
        let mut hosts = 0;
        if matches!(fleet, Fleet::Host(_)) {
            match self.node.read() {
                Ok(n) => {
                    hosts = 1;
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    render::node(&mut out, &n, now);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "host figures left out of this cycle's /metrics")
                }
            }
        }
        let gpus = batch.gpu.len();
        self.exporter.publish(out, gpus, hosts, started.elapsed());
    }

    /// Records how long a collection cycle took (delivery runs apart).
    pub fn cycle(&self, cycle: Duration) {
        metrics::CYCLE_SECONDS.observe(cycle.as_secs_f64());
    }

    fn refresh_inventory(&mut self, fleet: &mut Fleet) {
        match fleet.inventory() {
            Ok(inv) => {
                self.gpus.clear();
                self.hostnames.clear();
                for (host, gpus) in inv {
                    let name = if host.hostname.is_empty() {
                        host.name.clone()
                    } else {
                        host.hostname.clone()
                    };
                    self.hostnames.insert(host.id, name);
                    self.gpus
                        .extend(gpus.into_iter().map(|g| (g.uuid.clone(), g)));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the inventory; GPU labels on /metrics may be incomplete")
            }
        }
    }

    /// UUID → the pid whose pod labels the GPU: its lowest-pid process in a
    /// pod (one series per GPU, as dcgm-exporter without GPU sharing).
    fn pods_of_gpus(&mut self, fleet: &Fleet) -> HashMap<String, u32> {
        let mut procs: Vec<_> = fleet.gpu_processes().iter().collect();
        procs.sort_by_key(|p| p.pid);
        let mut out = HashMap::new();
        for p in procs {
            if out.contains_key(&p.uuid) {
                continue;
            }
            let (proc_path, patterns) = (&self.proc_path, &self.pod_metadata);
            let pod = self
                .pods
                .entry(p.pid)
                .or_insert_with(|| pod_of_pid(proc_path, patterns, p.pid));
            if pod.is_some() {
                out.insert(p.uuid.clone(), p.pid);
            }
        }
        out
    }
}

/// The pod of `pid` from any hierarchy line of /proc/<pid>/cgroup (the
/// kubelet's path is the same in each).
fn pod_of_pid(proc_path: &std::path::Path, patterns: &[String], pid: u32) -> Option<PodLabels> {
    let text = std::fs::read_to_string(proc_path.join(pid.to_string()).join("cgroup")).ok()?;
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .find_map(pod_of_cgroup)
        .map(|p| pod_labels(&p, patterns))
}
