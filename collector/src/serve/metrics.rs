//! The agent's own metrics, beside the spool's (see
//! [`crate::register_metrics`]): what an operator watches to know the agent
//! keeps up and delivers.

use std::sync::LazyLock;

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, Registry};

// The options below are constants of this file: `new` fails only on an
// invalid name, which a test run would show at once.

pub(crate) static CYCLE_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "gpuwatch_agent_cycle_duration_seconds",
            "Wall time of one collection cycle: sampling, spooling and rendering /metrics (delivery runs apart).",
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]),
    )
    .expect("valid histogram")
});

pub(crate) static BATCHES_SENT: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "gpuwatch_agent_batches_sent_total",
        "Batches the sink took (spooled ones replayed included).",
    )
    .expect("valid counter")
});

pub(crate) static BATCHES_REFUSED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "gpuwatch_agent_batches_refused_total",
        "Batches the receiver refused for good (set aside in the spool's rejected/ with its reason).",
    )
    .expect("valid counter")
});

pub(crate) static LAST_DELIVERY: LazyLock<Gauge> = LazyLock::new(|| {
    Gauge::new(
        "gpuwatch_agent_last_delivery_timestamp_seconds",
        "Unix time of the last batch the sink took; 0 before the first.",
    )
    .expect("valid gauge")
});

/// Puts the agent's metrics on `registry`.
pub(crate) fn register_metrics(registry: &Registry) -> Result<(), prometheus::Error> {
    gpuwatch_store::metrics::register_on(
        registry,
        vec![
            Box::new(CYCLE_SECONDS.clone()),
            Box::new(BATCHES_SENT.clone()),
            Box::new(BATCHES_REFUSED.clone()),
            Box::new(LAST_DELIVERY.clone()),
        ],
    )
}
