//! The alerter's self-metrics. Registered on the registry the binary gives
//! [`register_metrics`] (see [`gpuwatch_store::metrics`] for the pattern),
//! never on the `prometheus` crate's default registry.

use std::sync::LazyLock;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

/// Puts the alerter's metrics on `registry`.
pub fn register_metrics(registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
    gpuwatch_store::metrics::register_on(
        registry,
        vec![
            Box::new(EVAL_DURATION.clone()),
            Box::new(NOTIFICATIONS.clone()),
            Box::new(DELIVERY_DURATION.clone()),
            Box::new(TRANSITIONS.clone()),
            Box::new(OUTBOX_QUEUED.clone()),
            Box::new(OUTBOX_DEPTH.clone()),
            Box::new(PRUNED.clone()),
        ],
    )
}

// The options below are constants of this file: `new` fails only on an
// invalid name or label, which a test run would show at once.

pub(crate) static EVAL_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "gpuwatch_alerter_evaluation_duration_seconds",
            "Duration of one rule evaluation cycle, notification policy included.",
        )
        .buckets(vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]),
    )
    .expect("valid histogram")
});

pub(crate) static NOTIFICATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "gpuwatch_alerter_notifications_total",
            "Delivery attempts by channel and result (delivered, retry, dead).",
        ),
        &["channel", "result"],
    )
    .expect("valid counter")
});

pub(crate) static DELIVERY_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    HistogramVec::new(
        HistogramOpts::new(
            "gpuwatch_alerter_delivery_duration_seconds",
            "Duration of one delivery attempt by channel.",
        )
        .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        &["channel"],
    )
    .expect("valid histogram")
});

pub(crate) static TRANSITIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "gpuwatch_alerter_evaluations_total",
            "Evaluation cycles by outcome (ran, skipped: another replica held the lock, failed).",
        ),
        &["outcome"],
    )
    .expect("valid counter")
});

pub(crate) static OUTBOX_QUEUED: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "gpuwatch_alerter_notifications_queued",
        "Notifications written to the outbox by the last evaluation cycle.",
    )
    .expect("valid gauge")
});

pub(crate) static OUTBOX_DEPTH: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "gpuwatch_alerter_outbox_notifications",
            "Notifications in the outbox by state (pending, delivered, dead).",
        ),
        &["state"],
    )
    .expect("valid gauge")
});

pub(crate) static PRUNED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "gpuwatch_alerter_pruned_rows_total",
            "Rows of the alerting tables deleted by retention, by table.",
        ),
        &["table"],
    )
    .expect("valid counter")
});

/// Sets the outbox depth gauge from the table.
pub(crate) async fn refresh_outbox_depth(pool: &gpuwatch_store::Pool) -> crate::Result<()> {
    let c = pool.get().await?;
    let rows = c
        .query(
            "SELECT s, (SELECT count(*) FROM alert_outbox WHERE status = s)
             FROM unnest(ARRAY['pending', 'delivered', 'dead']) AS s",
            &[],
        )
        .await
        .map_err(crate::error::q("counting the outbox"))?;
    for r in rows {
        OUTBOX_DEPTH
            .with_label_values(&[r.get::<_, &str>(0)])
            .set(r.get(1));
    }
    Ok(())
}
