//! Self-metrics, one pattern for every crate: each crate keeps its metric
//! handles in one module and offers `register_metrics(&Registry)`, which
//! puts them on the registry it is given. The binary makes one
//! [`prometheus::Registry`] per process, hands it to every role it starts,
//! and `gpuwatch serve` gathers that registry for `/metrics`. Nothing uses
//! the `prometheus` crate's default registry.
//!
//! This module holds the batch writer's metrics (ingest through the API,
//! and the collector's direct sink), and [`register_on`], the one way a
//! crate registers.

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Registers `collectors` on `registry`. A collector that is already there
/// is fine: two roles of one process (`gpuwatch all`) share a crate, and
/// both register it.
pub fn register_on(
    registry: &Registry,
    collectors: Vec<Box<dyn Collector>>,
) -> Result<(), prometheus::Error> {
    for c in collectors {
        match registry.register(c) {
            Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Puts the batch writer's metrics on `registry`.
pub fn register_metrics(registry: &Registry) -> Result<(), prometheus::Error> {
    register_on(
        registry,
        vec![
            Box::new(WRITTEN.clone()),
            Box::new(DUPLICATES.clone()),
            Box::new(FAILED.clone()),
            Box::new(LATENCY.clone()),
        ],
    )
}

// The options are constants of this file: `new` fails only on an invalid
// name or label, which a test run would show at once.
fn counter(name: &str, help: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &["table"]).expect("valid counter")
}

/// Samples newly stored, by table.
pub(crate) static WRITTEN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "gpuwatch_samples_ingested_total",
        "Samples newly stored by the batch writer, by table.",
    )
});

/// Samples skipped because they were already stored (a re-sent batch).
pub(crate) static DUPLICATES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "gpuwatch_samples_duplicate_total",
        "Samples skipped as already stored (re-sent batches), by table.",
    )
});

/// Batches that failed to write.
pub(crate) static FAILED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "gpuwatch_batch_write_errors_total",
        "Batches the writer could not store (the caller keeps and retries them), by table.",
    )
});

/// Time to store one batch.
pub(crate) static LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    HistogramVec::new(
        HistogramOpts::new(
            "gpuwatch_batch_write_duration_seconds",
            "Time to store one batch with binary COPY, by table.",
        )
        .buckets(vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
        ]),
        &["table"],
    )
    .expect("valid histogram")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registering_twice_on_one_registry_is_fine_and_nothing_goes_global() {
        let r = Registry::new();
        register_metrics(&r).unwrap();
        register_metrics(&r).unwrap();
        WRITTEN.with_label_values(&["gpu_metrics"]).inc();
        let names: Vec<String> = r.gather().iter().map(|m| m.name().to_string()).collect();
        assert!(
            names.contains(&"gpuwatch_samples_ingested_total".to_string()),
            "{names:?}"
        );
        assert!(prometheus::gather()
            .iter()
            .all(|m| m.name() != "gpuwatch_samples_ingested_total"));
    }
}
