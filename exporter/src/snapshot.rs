//! The [`Exporter`]: the last [`Snapshot`] of the fleet's series, rendered
//! once, and the registry of this process's self-metrics.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use prometheus::Registry;

use crate::metrics::{self, SERIES, SNAPSHOT_AGE};
use crate::ExporterConfig;

/// One rendered snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Exposition text of the fleet's series.
    pub body: Bytes,
    /// When it was read (the exporter's clock).
    pub taken: Instant,
    /// GPUs, hosts and environments in it.
    pub gpus: usize,
    /// Hosts in it.
    pub hosts: usize,
    /// Environments in it.
    pub environments: usize,
    /// Time spent in the database.
    pub query: Duration,
    /// Time spent rendering text.
    pub render: Duration,
    /// `body` gzip'd, once some scraper asked for gzip (Prometheus does).
    pub gzip: Option<Bytes>,
    /// For text published by the caller ([`Exporter::publish`]): `body`
    /// gzip'd by the first scrape that asks for it, then kept, so a cycle
    /// nobody scrapes is never compressed. `None` on `gpuwatch serve`,
    /// whose large snapshot is compressed by the refresh, off the request path.
    pub(crate) lazy_gzip: Option<std::sync::OnceLock<Bytes>>,
}

/// Serves `/metrics` from a snapshot refreshed in the background.
pub struct Exporter {
    pub(crate) cfg: ExporterConfig,
    pub(crate) snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// gpu id → (last XID, its sample time): DCGM's sticky "last XID".
    pub(crate) xids: Mutex<XidState>,
    /// Set by the first scrape that accepts gzip: from then on each
    /// refresh also compresses the snapshot, off the request path.
    pub(crate) gzip_wanted: AtomicBool,
    /// Where this process's self-metrics are registered; a scrape gathers it.
    pub(crate) registry: Registry,
}

#[derive(Default)]
pub(crate) struct XidState {
    pub(crate) last: HashMap<i64, (i32, DateTime<Utc>)>,
    /// The database time of the previous scan.
    pub(crate) scanned_to: Option<DateTime<Utc>>,
}

impl Exporter {
    /// An exporter with no snapshot yet (a scrape then has only
    /// self-metrics), with a registry of its own: only the exporter's
    /// metrics are on it. `gpuwatch serve` uses [`Exporter::with_registry`].
    pub fn new(cfg: ExporterConfig) -> Arc<Self> {
        Self::with_registry(cfg, Registry::new())
    }

    /// An exporter whose scrapes gather `registry`, on which the roles of
    /// this process registered their metrics; the exporter adds its own.
    pub fn with_registry(cfg: ExporterConfig, registry: Registry) -> Arc<Self> {
        let registered = metrics::register_metrics(&registry)
            .and_then(|()| crate::replication::register_metrics(&registry))
            .and_then(|()| crate::jobs::register_metrics(&registry));
        if let Err(e) = registered {
            tracing::warn!(error = %e, "the exporter's self-metrics are not registered");
        }
        Arc::new(Exporter {
            cfg,
            snapshot: RwLock::new(None),
            xids: Mutex::default(),
            gzip_wanted: AtomicBool::new(false),
            registry,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ExporterConfig {
        &self.cfg
    }

    /// The registry a scrape gathers.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The current snapshot, unless it is older than the staleness window.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        let snap = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let age = snap.taken.elapsed();
        SNAPSHOT_AGE.set(age.as_secs_f64());
        (age <= Duration::from_secs(self.cfg.staleness_secs)).then_some(snap)
    }

    /// Makes `snap` the snapshot scrapes hand out.
    pub(crate) fn store(&self, snap: Snapshot) -> Arc<Snapshot> {
        let snap = Arc::new(snap);
        SERIES.with_label_values(&["gpu"]).set(snap.gpus as i64);
        SERIES.with_label_values(&["host"]).set(snap.hosts as i64);
        SERIES
            .with_label_values(&["environment"])
            .set(snap.environments as i64);
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(snap.clone());
        snap
    }

    /// Replaces the snapshot with exposition text rendered by the caller:
    /// the agent renders its own readings once per cycle, without a
    /// database, and scrapes then behave as on `gpuwatch serve` (gzip'd for
    /// scrapers that ask, dropped when older than the staleness window),
    /// except that the text is compressed at most once, by the first scrape
    /// that asks for gzip: a host's text is small, and an agent cycles more
    /// often than it is scraped.
    pub fn publish(
        &self,
        body: String,
        gpus: usize,
        hosts: usize,
        render: Duration,
    ) -> Arc<Snapshot> {
        self.store(Snapshot {
            body: Bytes::from(body),
            gzip: None,
            lazy_gzip: Some(std::sync::OnceLock::new()),
            taken: Instant::now(),
            gpus,
            hosts,
            environments: 0,
            query: Duration::ZERO,
            render,
        })
    }
}
