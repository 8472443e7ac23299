//! Self-metrics in the prometheus default registry (served on /metrics by the exporter).

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter_vec, register_int_gauge,
    Histogram, HistogramVec, IntCounterVec, IntGauge,
};

// Registration fails only on a duplicate name, which would be a bug in this file.
pub(crate) static EVAL_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "gpuwatch_alerter_evaluation_duration_seconds",
        "Duration of one rule evaluation cycle, notification policy included.",
        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("metric registered once")
});

pub(crate) static NOTIFICATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "gpuwatch_alerter_notifications_total",
        "Delivery attempts by channel and result (delivered, retry, dead).",
        &["channel", "result"]
    )
    .expect("metric registered once")
});

pub(crate) static DELIVERY_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "gpuwatch_alerter_delivery_duration_seconds",
        "Duration of one delivery attempt by channel.",
        &["channel"],
        vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
    )
    .expect("metric registered once")
});

pub(crate) static TRANSITIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "gpuwatch_alerter_evaluations_total",
        "Evaluation cycles by outcome (ran, skipped: another replica held the lock, failed).",
        &["outcome"]
    )
    .expect("metric registered once")
});

pub(crate) static OUTBOX_QUEUED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "gpuwatch_alerter_notifications_queued",
        "Notifications written to the outbox by the last evaluation cycle."
    )
    .expect("metric registered once")
});
