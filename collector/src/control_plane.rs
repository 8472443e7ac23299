//! The simulated fleet's control plane: what a GPU cloud's own control plane
//! writes and gpuwatch reads. Customers, a workspace each, default prices
//! (only where no price is set), and the environments of
//! [`SimFleet::environments`], whose rows follow the fleet's daily plan, so
//! the trigger on `environments` writes the status history the meter bills.
//!
//! Each change is written with the time the plan gives it
//! (`gpuwatch.changed_at`), and how far the plan has been applied is kept
//! in `system_configs`, so a restart neither repeats nor skips a change. A
//! new database starts from midnight UTC of the day, so the day already has
//! usage to bill.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpuwatch_store::{Pool, StoreError};
use tokio_util::sync::CancellationToken;

use crate::sinks::Sink;
use crate::sources::sim::{SimFleet, SIM_CUSTOMERS};
use crate::{CollectorConfig, Fleet};

const APPLIED_UNTIL: &str = "sim.control_plane.applied_until";
/// Prices per unit-hour where none is set: a core, a GiB, a GPU per model.
const PRICES: [(&str, &str, &str); 6] = [
    ("cpu", "", "0.05"),
    ("memory", "", "0.01"),
    ("gpu", "NVIDIA H100 80GB HBM3", "2.50"),
    ("gpu", "NVIDIA A100-SXM4-40GB", "1.60"),
    ("gpu", "NVIDIA L40S", "1.10"),
    ("gpu", "Tesla V100-SXM2-32GB", "0.80"),
];
/// A plan this far behind (a database left for days) resumes from here.
const MAX_CATCH_UP: TimeDelta = TimeDelta::days(2);

/// What one application of the plan did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Environments created.
    pub created: u64,
    /// Changes applied.
    pub changes: u64,
}

/// Starts the simulated control plane where the collector samples the
/// simulated fleet into the database directly and
/// `collector.sim.environments` is on: the fleet sends environment samples
/// once the control plane has written the environments.
pub fn start(cfg: &CollectorConfig, sink: &Sink, fleet: &mut Fleet, shutdown: CancellationToken) {
    let (Fleet::Sim(sim), Some(pool)) = (fleet, sink.pool()) else {
        return;
    };
    if !cfg.sim.environments {
        return;
    }
    let ready = Arc::new(AtomicBool::new(false));
    sim.with_environments(ready.clone());
    let (sim, pool, every) = (
        sim.clone(),
        pool.clone(),
        Duration::from_secs(cfg.interval_secs.clamp(1, 30)),
    );
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            // The hosts must be registered before their environments: until the
            // collector has done so, the foreign key refuses and this retries.
            match apply(&pool, &sim, Utc::now()).await {
                Ok(a) => {
                    if a.created > 0 || a.changes > 0 {
                        tracing::info!(
                            created = a.created,
                            changes = a.changes,
                            "simulated control plane applied its plan"
                        );
                    }
                    ready.store(true, Ordering::Release);
                    failing = false;
                }
                Err(e) if !failing => {
                    tracing::info!(error = %e, "simulated control plane waits for the database and the hosts");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
}

/// Applies the plan up to `now` in one transaction: the catalogue on first
/// use, then every change since the last application.
pub async fn apply(pool: &Pool, sim: &SimFleet, now: DateTime<Utc>) -> Result<Applied, StoreError> {
    let mut client = pool.get().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| StoreError::query("starting the simulated control plane's transaction", e))?;
    let q = |what: &'static str| {
        move |e| StoreError::query(format!("simulated control plane: {what}"), e)
    };
    // One writer at a time (several collectors may share a database).
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&APPLIED_UNTIL],
    )
    .await
    .map_err(q("taking its lock"))?;
    let mut applied = Applied::default();
    let mut customers = Vec::new();
    for name in SIM_CUSTOMERS {
        let id: i64 = tx
            .query_one(
                "WITH c AS (INSERT INTO customers (username, email, password_hash, company, account_type)
                            VALUES ($1::text, $1::text || '@example.com', '!', $1::text, 'enterprise')
                            ON CONFLICT (username) DO NOTHING RETURNING id)
                 SELECT id FROM c UNION ALL SELECT id FROM customers WHERE username = $1::text LIMIT 1",
                &[&name],
            )
            .await
            .map_err(q("creating a customer"))?
            .get(0);
        let ws: i64 = tx
            .query_one(
                "WITH w AS (INSERT INTO workspaces (owner_id, name, type)
                            SELECT $1, 'training', 'team'
                            WHERE NOT EXISTS (SELECT 1 FROM workspaces WHERE owner_id = $1 AND name = 'training')
                            RETURNING id)
                 SELECT id FROM w UNION ALL SELECT id FROM workspaces WHERE owner_id = $1 AND name = 'training' LIMIT 1",
                &[&id],
            )
            .await
            .map_err(q("creating a workspace"))?
            .get(0);
        customers.push((id, ws));
    }
    let priced: i64 = tx
        .query_one("SELECT count(*) FROM billing_prices", &[])
        .await
        .map_err(q("reading prices"))?
        .get(0);
    if priced == 0 {
        for (resource, model, price) in PRICES {
            tx.execute(
                "INSERT INTO billing_prices (resource_type, gpu_model, unit_price, currency, valid_from)
                 VALUES ($1, $2, $3::text::numeric, 'CNY', '2026-01-01T00:00:00Z')",
                &[&resource, &model, &price],
            )
            .await
            .map_err(q("setting default prices"))?;
        }
    }
    let stored: Option<String> = tx
        .query_opt(
            "SELECT config_value FROM system_configs WHERE config_key = $1",
            &[&APPLIED_UNTIL],
        )
        .await
        .map_err(q("reading how far the plan is applied"))?
        .map(|r| r.get(0));
    let midnight = now.duration_trunc(TimeDelta::days(1)).unwrap_or(now);
    let from = stored
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(midnight)
        .max(now - MAX_CATCH_UP);
    for e in sim.environments() {
        let (customer, workspace) = customers[e.customer];
        let s = sim.env_state(&e, from);
        changed_at(&tx, from).await?;
        applied.created += tx
            .execute(
                "INSERT INTO environments (id, customer_id, workspace_id, host_id, name, image, status,
                                           cpu, memory, gpu, gpu_model, started_at, labels)
                 VALUES ($1::text, $2, $3, $4, $1::text, 'pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime', $5,
                         $6, $7, $8, $9, $10, '{\"simulated\": \"true\"}')
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &e.id,
                    &customer,
                    &workspace,
                    &SimFleet::host_id(e.host),
                    &s.status,
                    &s.cpu,
                    &s.memory,
                    &s.gpu,
                    &e.gpu_model,
                    &from,
                ],
            )
            .await
            .map_err(q("creating an environment"))?;
    }
    for (at, e, s) in sim.env_events(from, now) {
        changed_at(&tx, at).await?;
        applied.changes += tx
            .execute(
                "UPDATE environments SET status = $2, cpu = $3, memory = $4, gpu = $5,
                        started_at = CASE WHEN $2 = 'running' AND status <> 'running' THEN $6 ELSE started_at END,
                        stopped_at = CASE WHEN $2 = 'stopped' AND status <> 'stopped' THEN $6 ELSE stopped_at END
                 WHERE id = $1 AND (status, cpu, memory, gpu) IS DISTINCT FROM ($2, $3, $4, $5)",
                &[&e.id, &s.status, &s.cpu, &s.memory, &s.gpu, &at],
            )
            .await
            .map_err(q("applying a change"))?;
    }
    tx.execute(
        "INSERT INTO system_configs (config_key, config_value, config_type, description)
         VALUES ($1, $2, 'string', 'How far the simulated control plane has applied its plan.')
         ON CONFLICT (config_key) DO UPDATE SET config_value = EXCLUDED.config_value, updated_at = now()",
        &[&APPLIED_UNTIL, &now.to_rfc3339()],
    )
    .await
    .map_err(q("recording how far the plan is applied"))?;
    tx.commit().await.map_err(q("committing"))?;
    Ok(applied)
}

/// The time the history trigger records for the next change.
async fn changed_at(
    tx: &tokio_postgres::Transaction<'_>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "SELECT set_config('gpuwatch.changed_at', $1, true)",
        &[&at.to_rfc3339()],
    )
    .await
    .map_err(|e| StoreError::query("simulated control plane: dating a change", e))?;
    Ok(())
}
