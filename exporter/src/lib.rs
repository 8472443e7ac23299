//! gpuwatch exporter: what `gpuwatch serve` answers on `/metrics`.
//!
//! - The latest sample of every GPU under dcgm-exporter's metric names and
//!   labels ([`families::GPU`]), of every host under node_exporter's names
//!   ([`families::HOST`]) and of every environment ([`families::ENV`]).
//! - gpuwatch's own metrics: whatever the roles in this process registered in
//!   the `prometheus` crate's default registry (ingest, batch writer, spool,
//!   alerter), plus the aggregator's tier lag read from the database, since
//!   the aggregator may run elsewhere, and the database's role and
//!   replication lag (`gpuwatch_db_*`, replication.rs).
//!
//! A scrape never queries the database: [`Exporter::run`] refreshes an
//! in-memory snapshot every `refresh_secs`, rendered once to exposition text,
//! and a scrape hands out that text as it is. A series whose latest sample is
//! older than `staleness_secs` is left out, so a silent host drops out of
//! Prometheus instead of showing a frozen value; if the database cannot be
//! read, the snapshot itself goes stale and is dropped after the same window.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod families;
mod render;
mod replication;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use gpuwatch_store::{Pool, StoreError};
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntGaugeVec, Opts, TextEncoder};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub use render::escape_label;

/// `[exporter]` of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExporterConfig {
    /// How often the snapshot is re-read from the database, seconds.
    pub refresh_secs: u64,
    /// A series whose latest sample is older than this is not exported, seconds.
    pub staleness_secs: u64,
}

impl Default for ExporterConfig {
    fn default() -> Self {
        ExporterConfig {
            refresh_secs: 5,
            staleness_secs: 90,
        }
    }
}

impl ExporterConfig {
    /// Every problem, as `key: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.refresh_secs == 0 {
            e.push("exporter.refresh_secs: must be at least 1".into());
        }
        if self.staleness_secs < self.refresh_secs {
            e.push(format!(
                "exporter.staleness_secs: must be at least exporter.refresh_secs ({}), got {}",
                self.refresh_secs, self.staleness_secs
            ));
        }
        e
    }
}

static REFRESH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    let h = Histogram::with_opts(
        HistogramOpts::new(
            "gpuwatch_exporter_refresh_duration_seconds",
            "Time to read and render the /metrics snapshot.",
        )
        .buckets(vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]),
    )
    .expect("valid histogram");
    register(h)
});

static REFRESH_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "gpuwatch_exporter_refresh_errors_total",
            "Snapshot refreshes that failed (database unreachable or a query failed).",
        )
        .expect("valid counter"),
    )
});

static SERIES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "gpuwatch_exporter_series",
                "Series in the current /metrics snapshot, by source.",
            ),
            &["source"],
        )
        .expect("valid gauge"),
    )
});

static SNAPSHOT_AGE: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    register(
        prometheus::Gauge::new(
            "gpuwatch_exporter_snapshot_age_seconds",
            "Seconds since the /metrics snapshot was read from the database.",
        )
        .expect("valid gauge"),
    )
});

/// Registers a collector in the default registry, once per process.
fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    if let Err(e) = prometheus::register(Box::new(c.clone())) {
        tracing::warn!(error = %e, "self-metric not registered");
    }
    c
}

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
}

/// Serves `/metrics` from a snapshot refreshed in the background.
pub struct Exporter {
    cfg: ExporterConfig,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// gpu id → (last XID, its sample time): DCGM's sticky "last XID".
    xids: Mutex<XidState>,
    /// Set by the first scrape that accepts gzip: from then on each
    /// refresh also compresses the snapshot, off the request path.
    gzip_wanted: AtomicBool,
}

#[derive(Default)]
struct XidState {
    last: HashMap<i64, (i32, DateTime<Utc>)>,
    /// The database time of the previous scan.
    scanned_to: Option<DateTime<Utc>>,
}

impl Exporter {
    /// An exporter with no snapshot yet (a scrape then has only self-metrics).
    pub fn new(cfg: ExporterConfig) -> Arc<Self> {
        LazyLock::force(&REFRESH_SECONDS);
        LazyLock::force(&REFRESH_ERRORS);
        LazyLock::force(&SERIES);
        LazyLock::force(&SNAPSHOT_AGE);
        Arc::new(Exporter {
            cfg,
            snapshot: RwLock::new(None),
            xids: Mutex::default(),
            gzip_wanted: AtomicBool::new(false),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ExporterConfig {
        &self.cfg
    }

    /// Reads the latest samples and replaces the snapshot.
    pub async fn refresh(&self, pool: &Pool) -> Result<Arc<Snapshot>, StoreError> {
        let started = Instant::now();
        let result = self.read(pool, started).await;
        REFRESH_SECONDS.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(snap) => {
                let snap = Arc::new(snap);
                SERIES.with_label_values(&["gpu"]).set(snap.gpus as i64);
                SERIES.with_label_values(&["host"]).set(snap.hosts as i64);
                SERIES
                    .with_label_values(&["environment"])
                    .set(snap.environments as i64);
                *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(snap.clone());
                Ok(snap)
            }
            Err(e) => {
                REFRESH_ERRORS.inc();
                Err(e)
            }
        }
    }

    async fn read(&self, pool: &Pool, started: Instant) -> Result<Snapshot, StoreError> {
        let client = pool.get().await?;
        let stale = self.cfg.staleness_secs as f64;
        let q = |what: &'static str| move |e| StoreError::query(what, e);
        let now: DateTime<Utc> = client
            .query_one("SELECT now()", &[])
            .await
            .map_err(q("reading the database clock"))?
            .get(0);
        let gpus = client
            .query(&render::gpu_sql(), &[&stale])
            .await
            .map_err(q("reading the latest GPU samples for /metrics"))?;
        let hosts = client
            .query(&render::host_sql(), &[&stale])
            .await
            .map_err(q("reading the latest host samples for /metrics"))?;
        let envs = client
            .query(&render::env_sql(), &[&stale])
            .await
            .map_err(q("reading the latest environment samples for /metrics"))?;
        let lag = client
            .query(
                "SELECT source, tier, extract(epoch FROM now() - watermark)::float8
                   FROM gpuwatch_tier_state WHERE watermark IS NOT NULL ORDER BY 1, 2",
                &[],
            )
            .await
            .map_err(q("reading the tier watermarks for /metrics"))?;
        let since = {
            let x = self.xids.lock().unwrap_or_else(|p| p.into_inner());
            x.scanned_to
                .unwrap_or(now - chrono::Duration::seconds(self.cfg.staleness_secs as i64))
        };
        // Samples may land a little after their collection time, so each scan
        // overlaps the previous one by the staleness window.
        let since = since - chrono::Duration::seconds(self.cfg.staleness_secs as i64);
        let xid_rows = client
            .query(
                "SELECT DISTINCT ON (gpu_id) gpu_id, xid_last, collected_at FROM gpu_metrics
                  WHERE collected_at > $1 AND xid_last IS NOT NULL
                  ORDER BY gpu_id, collected_at DESC",
                &[&since],
            )
            .await
            .map_err(q("reading recent XID errors for /metrics"))?;
        let query = started.elapsed();
        let xids = {
            let mut x = self.xids.lock().unwrap_or_else(|p| p.into_inner());
            for r in &xid_rows {
                let (id, xid, at): (i64, i32, DateTime<Utc>) = (r.get(0), r.get(1), r.get(2));
                let e = x.last.entry(id).or_insert((xid, at));
                if at >= e.1 {
                    *e = (xid, at);
                }
            }
            x.scanned_to = Some(now);
            x.last
                .iter()
                .map(|(k, v)| (*k, v.0))
                .collect::<HashMap<_, _>>()
        };
        let render_start = Instant::now();
        let body = Bytes::from(render::render(&gpus, &hosts, &envs, &lag, &xids));
        let render = render_start.elapsed();
        let gzip = if self.gzip_wanted.load(Ordering::Relaxed) {
            let text = body.clone();
            tokio::task::spawn_blocking(move || gzip(&text))
                .await
                .ok()
                .map(Bytes::from)
        } else {
            None
        };
        Ok(Snapshot {
            body,
            gzip,
            taken: started,
            gpus: gpus.len(),
            hosts: hosts.len(),
            environments: envs.len(),
            query,
            render,
        })
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

    /// A scrape's body, in chunks: the fleet snapshot as it is (no copy),
    /// then this process's self-metrics.
    pub fn scrape(&self) -> Vec<Bytes> {
        self.scrape_encoded(false).0
    }

    /// Like [`Exporter::scrape`]; when `accept_gzip` and the snapshot has
    /// been compressed, the chunks are gzip members (a valid multi-member
    /// gzip stream, as Go's reader in Prometheus accepts) and the second
    /// value is true.
    pub fn scrape_encoded(&self, accept_gzip: bool) -> (Vec<Bytes>, bool) {
        if accept_gzip {
            self.gzip_wanted.store(true, Ordering::Relaxed);
        }
        let snap = self.snapshot();
        let mut own = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&prometheus::gather(), &mut own) {
            tracing::warn!(error = %e, "cannot encode gpuwatch's own metrics");
        }
        match snap {
            Some(s) if accept_gzip && s.gzip.is_some() => {
                let fleet = s.gzip.clone().expect("checked");
                (vec![fleet, Bytes::from(gzip(&own))], true)
            }
            Some(s) => (vec![s.body.clone(), Bytes::from(own)], false),
            None if accept_gzip => (vec![Bytes::from(gzip(&own))], true),
            None => (vec![Bytes::from(own)], false),
        }
    }

    /// Refreshes every `refresh_secs` until `shutdown`; a failed refresh is
    /// logged once per outage and retried at the next tick.
    pub async fn run(self: Arc<Self>, pool: Pool, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.cfg.refresh_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            replication::refresh(&pool).await;
            match self.refresh(&pool).await {
                Ok(s) => {
                    if failing {
                        tracing::info!("/metrics snapshot refreshed again");
                        failing = false;
                    }
                    tracing::debug!(
                        gpus = s.gpus,
                        hosts = s.hosts,
                        bytes = s.body.len(),
                        query_ms = s.query.as_millis() as u64,
                        render_ms = s.render.as_millis() as u64,
                        "/metrics snapshot refreshed"
                    );
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(error = %e, staleness_secs = self.cfg.staleness_secs,
                            "cannot refresh the /metrics snapshot; the last one is served until it is stale");
                        failing = true;
                    }
                }
            }
        }
    }
}

/// One gzip member, at the fastest level: the snapshot is re-made every few
/// seconds, so speed matters more than the last few percent of size.
fn gzip(text: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 5),
        flate2::Compression::fast(),
    );
    gz.write_all(text).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
