//! The exporter's self-metrics, registered on the registry each
//! [`Exporter`](crate::Exporter) is given (see [`gpuwatch_store::metrics`]
//! for the pattern).

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGaugeVec, Opts, Registry};

// The options below are constants of this file: `new` fails only on an
// invalid name or label, which a test run would show at once.

pub(crate) static REFRESH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "gpuwatch_exporter_refresh_duration_seconds",
            "Time to read and render the /metrics snapshot.",
        )
        .buckets(vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]),
    )
    .expect("valid histogram")
});

pub(crate) static REFRESH_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "gpuwatch_exporter_refresh_errors_total",
        "Snapshot refreshes that failed (database unreachable or a query failed).",
    )
    .expect("valid counter")
});

pub(crate) static SERIES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "gpuwatch_exporter_series",
            "Series in the current /metrics snapshot, by source.",
        ),
        &["source"],
    )
    .expect("valid gauge")
});

pub(crate) static SNAPSHOT_AGE: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    prometheus::Gauge::new(
        "gpuwatch_exporter_snapshot_age_seconds",
        "Seconds since the /metrics snapshot was read from the database.",
    )
    .expect("valid gauge")
});

/// Puts the exporter's metrics on `registry`.
pub(crate) fn register_metrics(registry: &Registry) -> Result<(), prometheus::Error> {
    gpuwatch_store::metrics::register_on(
        registry,
        vec![
            Box::new(REFRESH_SECONDS.clone()),
            Box::new(REFRESH_ERRORS.clone()),
            Box::new(SERIES.clone()),
            Box::new(SNAPSHOT_AGE.clone()),
        ],
    )
}
