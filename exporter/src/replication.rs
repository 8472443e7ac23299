//! The database's replication on `/metrics`: which role the server reached
//! has, and how far each standby lags. Refreshed with the snapshot, read by
//! [`gpuwatch_store::replication::status`].

use std::sync::LazyLock;

use gpuwatch_store::replication::{self, Role};
use gpuwatch_store::Pool;
use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};

static UP: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "gpuwatch_db_up",
            "1 when the database answered at the last refresh, by the role of the server reached (primary or standby).",
        ),
        &["role"],
    )
    .expect("valid gauge")
});

static LAG_SECONDS: LazyLock<GaugeVec> = LazyLock::new(|| {
    GaugeVec::new(
        Opts::new(
            "gpuwatch_db_replication_lag_seconds",
            "Seconds a standby's replay is behind the primary (pg_stat_replication.replay_lag; on a standby, the age of its last replayed transaction while WAL waits).",
        ),
        &["standby"],
    )
    .expect("valid gauge")
});

static LAG_BYTES: LazyLock<GaugeVec> = LazyLock::new(|| {
    GaugeVec::new(
        Opts::new(
            "gpuwatch_db_replication_lag_bytes",
            "WAL bytes a standby has not replayed yet.",
        ),
        &["standby"],
    )
    .expect("valid gauge")
});

static MISSING: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    prometheus::IntGauge::new(
        "gpuwatch_db_standbys_missing",
        "Physical replication slots no standby streams from: expected standbys that are missing.",
    )
    .expect("valid gauge")
});

/// Puts the replication gauges on `registry`.
pub(crate) fn register_metrics(registry: &Registry) -> Result<(), prometheus::Error> {
    gpuwatch_store::metrics::register_on(
        registry,
        vec![
            Box::new(UP.clone()),
            Box::new(LAG_SECONDS.clone()),
            Box::new(LAG_BYTES.clone()),
            Box::new(MISSING.clone()),
        ],
    )
}

/// Reads the replication state and sets the gauges; a failed read sets
/// `gpuwatch_db_up` to 0 for both roles and drops the lag series, so a
/// stale lag is never shown as current.
pub(crate) async fn refresh(pool: &Pool) {
    let status = replication::status(pool).await;
    LAG_SECONDS.reset();
    LAG_BYTES.reset();
    let reached = match status {
        Ok(s) => {
            for l in &s.standbys {
                if let Some(v) = l.lag_seconds {
                    LAG_SECONDS.with_label_values(&[&l.standby]).set(v);
                }
                if let Some(v) = l.lag_bytes {
                    LAG_BYTES.with_label_values(&[&l.standby]).set(v);
                }
            }
            MISSING.set(s.missing_standbys);
            Some(s.role)
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the replication state");
            None
        }
    };
    for role in Role::ALL {
        UP.with_label_values(&[role.as_str()])
            .set(i64::from(reached == Some(role)));
    }
}
