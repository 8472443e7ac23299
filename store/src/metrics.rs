//! The batch writer's self-metrics, in the `prometheus` crate's default
//! registry: `gpuwatch serve` exposes them on `/metrics` for the writes
//! done in its process (ingest, and the collector's direct sink under
//! `gpuwatch all`).

use std::sync::LazyLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

fn counter(name: &str, help: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &["table"]).expect("valid counter");
    let _ = prometheus::register(Box::new(c.clone()));
    c
}

/// Samples newly stored, by table.
pub static WRITTEN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "gpuwatch_samples_ingested_total",
        "Samples newly stored by the batch writer, by table.",
    )
});

/// Samples skipped because they were already stored (a re-sent batch).
pub static DUPLICATES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "gpuwatch_samples_duplicate_total",
        "Samples skipped as already stored (re-sent batches), by table.",
    )
});

/// Batches that failed to write.
pub static FAILED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "gpuwatch_batch_write_errors_total",
        "Batches the writer could not store (the caller keeps and retries them), by table.",
    )
});

/// Time to store one batch.
pub static LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    let h = HistogramVec::new(
        HistogramOpts::new(
            "gpuwatch_batch_write_duration_seconds",
            "Time to store one batch with binary COPY, by table.",
        )
        .buckets(vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
        ]),
        &["table"],
    )
    .expect("valid histogram");
    let _ = prometheus::register(Box::new(h.clone()));
    h
});
