//! Reading the database into a new [`Snapshot`], and the loop that does it
//! every `exporter.refresh`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use gpuwatch_store::{Pool, StoreError};
use tokio_util::sync::CancellationToken;

use crate::metrics::{REFRESH_ERRORS, REFRESH_SECONDS};
use crate::render;
use crate::scrape::gzip;
use crate::{Exporter, Snapshot};

impl Exporter {
    /// Reads the latest samples and replaces the snapshot.
    pub async fn refresh(&self, pool: &Pool) -> Result<Arc<Snapshot>, StoreError> {
        let started = Instant::now();
        let result = self.read(pool, started).await;
        REFRESH_SECONDS.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(snap) => Ok(self.store(snap)),
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
            lazy_gzip: None,
            taken: started,
            gpus: gpus.len(),
            hosts: hosts.len(),
            environments: envs.len(),
            query,
            render,
        })
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
            crate::replication::refresh(&pool).await;
            crate::jobs::refresh(&pool).await;
            match self.refresh(pool.readers()).await {
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
