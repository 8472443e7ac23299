//! Host liveness from heartbeats: a host silent for `offline_after_secs`
//! becomes offline/unhealthy; one whose heartbeats return becomes
//! online/healthy again. Hosts in maintenance are left alone.

use chrono::{DateTime, Duration, Utc};
use gpuwatch_store::Pool;

use crate::error::q;
use crate::AggregatorError;

/// Hosts whose state changed in one pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LivenessReport {
    /// Host ids that went offline.
    pub went_offline: Vec<String>,
    /// Host ids that came back.
    pub came_back: Vec<String>,
}

/// Updates `hosts.status` / `health_status` as of `now`.
pub async fn check(
    pool: &Pool,
    offline_after: Duration,
    now: DateTime<Utc>,
) -> Result<LivenessReport, AggregatorError> {
    let client = pool.get().await?;
    let since = now - offline_after;
    let ids = |rows: Vec<tokio_postgres::Row>| {
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    let went_offline = ids(client
        .query(
            "UPDATE hosts SET status = 'offline', health_status = 'unhealthy'
             WHERE status = 'online' AND (last_heartbeat IS NULL OR last_heartbeat < $1) RETURNING id",
            &[&since],
        )
        .await
        .map_err(q("marking silent hosts offline"))?);
    let came_back = ids(client
        .query(
            "UPDATE hosts SET status = 'online', health_status = 'healthy'
             WHERE status IN ('online', 'offline') AND health_status = 'unhealthy' AND last_heartbeat >= $1 RETURNING id",
            &[&since],
        )
        .await
        .map_err(q("marking returning hosts online"))?);
    for h in &went_offline {
        tracing::warn!(host.id = %h, silent_for_secs = offline_after.num_seconds(), "host went silent: offline");
    }
    for h in &came_back {
        tracing::info!(host.id = %h, "host reports again: online");
    }
    Ok(LivenessReport {
        went_offline,
        came_back,
    })
}
