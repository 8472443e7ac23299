//! The billing role's self-metrics. Registered on the registry the binary
//! gives [`register_metrics`] (see [`gpuwatch_store::metrics`] for the
//! pattern), never on the `prometheus` crate's default registry.
//!
//! This module takes plain counts and depends on nothing else in the crate,
//! so the meter and the invoice run can call it without an import cycle.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

/// Puts the billing metrics on `registry`.
pub fn register_metrics(registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
    gpuwatch_store::metrics::register_on(
        registry,
        vec![
            Box::new(RECORDS.clone()),
            Box::new(SKIPPED.clone()),
            Box::new(RUN_SECONDS.clone()),
            Box::new(INVOICES.clone()),
        ],
    )
}

// The options below are constants of this file: `new` fails only on an
// invalid name or label, which a test run would show at once.

static RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "gpuwatch_billing_records_written_total",
            "billing_records rows written by the meter, by charge class",
        ),
        &["class"],
    )
    .expect("valid counter")
});
static SKIPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "gpuwatch_billing_periods_skipped_total",
        "environment periods the meter skipped for bad input (see billing_meter_errors)",
    )
    .expect("valid counter")
});
static RUN_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "gpuwatch_billing_meter_run_seconds",
            "duration of one meter transaction",
        )
        .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 120.0]),
    )
    .expect("valid histogram")
});
static INVOICES: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "gpuwatch_billing_invoices_cut_total",
        "invoices cut by the invoice run",
    )
    .expect("valid counter")
});

/// Counts one meter transaction: records and corrections written,
/// environment periods skipped, and how long it took.
pub(crate) fn meter_run(records: u64, corrections: u64, skipped: usize, took: Duration) {
    RECORDS.with_label_values(&["usage"]).inc_by(records);
    RECORDS
        .with_label_values(&["correction"])
        .inc_by(corrections);
    SKIPPED.inc_by(skipped as u64);
    RUN_SECONDS.observe(took.as_secs_f64());
}

/// Counts invoices cut.
pub(crate) fn invoices_cut(n: usize) {
    INVOICES.inc_by(n as u64);
}
