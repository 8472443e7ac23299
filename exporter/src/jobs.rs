//! DLWorkspace's training jobs on `/metrics`: how many jobs each cluster has
//! in each status, and how old each cluster's latest `clusterstatus` is.
//! Refreshed with the snapshot, from what the DLWorkspace sync keeps in
//! `training_jobs` and `dlworkspace_clusters`.

use std::sync::LazyLock;

use gpuwatch_store::jobs::JobStatus;
use gpuwatch_store::{Pool, StoreError};
use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};

static JOBS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "gpuwatch_jobs",
            "DLWorkspace training jobs by cluster and current status (every status of a known cluster is present, 0 when none).",
        ),
        &["cluster", "status"],
    )
    .expect("valid gauge")
});

static STATUS_AGE: LazyLock<GaugeVec> = LazyLock::new(|| {
    GaugeVec::new(
        Opts::new(
            "gpuwatch_dlworkspace_cluster_status_age_seconds",
            "Seconds since the time of the cluster's latest clusterstatus row; absent until one was read.",
        ),
        &["cluster"],
    )
    .expect("valid gauge")
});

static UNMAPPED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "gpuwatch_dlworkspace_unmapped_owners",
            "Job owners (userName) of the cluster that map to no customer.",
        ),
        &["cluster"],
    )
    .expect("valid gauge")
});

static LAST_SYNC: LazyLock<GaugeVec> = LazyLock::new(|| {
    GaugeVec::new(
        Opts::new(
            "gpuwatch_dlworkspace_last_sync_timestamp_seconds",
            "Unix time of the cluster's last completed sync.",
        ),
        &["cluster"],
    )
    .expect("valid gauge")
});

/// Puts the job gauges on `registry`.
pub(crate) fn register_metrics(registry: &Registry) -> Result<(), prometheus::Error> {
    gpuwatch_store::metrics::register_on(
        registry,
        vec![
            Box::new(JOBS.clone()),
            Box::new(STATUS_AGE.clone()),
            Box::new(UNMAPPED.clone()),
            Box::new(LAST_SYNC.clone()),
        ],
    )
}

/// Reads the counts and sets the gauges. On a failed read the series are
/// dropped rather than left at stale values.
pub(crate) async fn refresh(pool: &Pool) {
    if let Err(e) = read(pool).await {
        tracing::debug!(error = %e, "cannot read the DLWorkspace job counts");
        reset();
    }
}

fn reset() {
    JOBS.reset();
    STATUS_AGE.reset();
    UNMAPPED.reset();
    LAST_SYNC.reset();
}

async fn read(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let what = "reading DLWorkspace job counts for /metrics";
    let counts = client
        .query(
            "SELECT cluster_id, job_status, count(*) FROM training_jobs
             WHERE cluster_id <> '' GROUP BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| StoreError::query(what, e))?;
    let clusters = client
        .query(
            "SELECT c.cluster_id, a.age_seconds, c.unmapped_owners,
                    EXTRACT(EPOCH FROM c.last_sync_at)::double precision
             FROM dlworkspace_clusters c
             JOIN dlworkspace_cluster_status_age a USING (cluster_id)",
            &[],
        )
        .await
        .map_err(|e| StoreError::query(what, e))?;
    // Reset only once both reads succeeded, so a scrape never sees a half-set family.
    reset();
    let mut known: Vec<String> = clusters.iter().map(|r| r.get(0)).collect();
    known.extend(counts.iter().map(|r| r.get::<_, String>(0)));
    known.sort();
    known.dedup();
    for cluster in &known {
        for s in JobStatus::ALL {
            JOBS.with_label_values(&[cluster, s.as_str()]).set(0);
        }
    }
    for r in &counts {
        let (cluster, status, n): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
        JOBS.with_label_values(&[&cluster, &status]).set(n);
    }
    for r in &clusters {
        let cluster: String = r.get(0);
        if let Some(age) = r.get::<_, Option<f64>>(1) {
            STATUS_AGE.with_label_values(&[&cluster]).set(age.max(0.0));
        }
        UNMAPPED
            .with_label_values(&[&cluster])
            .set(i64::from(r.get::<_, i32>(2)));
        if let Some(t) = r.get::<_, Option<f64>>(3) {
            LAST_SYNC.with_label_values(&[&cluster]).set(t);
        }
    }
    Ok(())
}
