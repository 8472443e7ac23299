//! Self-metrics in the default prometheus registry (gathered by `/metrics`).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntCounterVec};

use crate::meter::MeterReport;

static RECORDS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "gpuwatch_billing_records_written_total",
        "billing_records rows written by the meter, by charge class",
        &["class"]
    )
    .ok()
});
static SKIPPED: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "gpuwatch_billing_periods_skipped_total",
        "environment periods the meter skipped for bad input (see billing_meter_errors)"
    )
    .ok()
});
static RUN_SECONDS: LazyLock<Option<Histogram>> = LazyLock::new(|| {
    prometheus::register_histogram!(
        "gpuwatch_billing_meter_run_seconds",
        "duration of one meter transaction",
        vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 120.0]
    )
    .ok()
});
static INVOICES: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "gpuwatch_billing_invoices_cut_total",
        "invoices cut by the invoice run"
    )
    .ok()
});

pub(crate) fn meter_run(r: &MeterReport, took: Duration) {
    if let Some(c) = RECORDS.as_ref() {
        c.with_label_values(&["usage"]).inc_by(r.records);
        c.with_label_values(&["correction"]).inc_by(r.corrections);
    }
    if let Some(c) = SKIPPED.as_ref() {
        c.inc_by(r.errors.len() as u64);
    }
    if let Some(h) = RUN_SECONDS.as_ref() {
        h.observe(took.as_secs_f64());
    }
}

pub(crate) fn invoices_cut(n: usize) {
    if let Some(c) = INVOICES.as_ref() {
        c.inc_by(n as u64);
    }
}
