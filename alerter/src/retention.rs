//! Retention of the alerting tables: old attempt logs (which carry every
//! request body), delivered outbox rows and resolved alert records are
//! deleted in bounded batches, so the tables stop growing without the
//! deletes holding long locks. Pending and dead-lettered notifications and
//! open alerts are never deleted: they still need someone.

use serde::Deserialize;

use crate::error::{q, Result};

/// `[alerter.retention]`, in days.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// `webhook_logs` rows older than this are deleted.
    pub webhook_logs_days: u32,
    /// Delivered `alert_outbox` rows older than this are deleted.
    pub delivered_outbox_days: u32,
    /// `alert_records` resolved longer ago than this are deleted.
    pub resolved_alerts_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            webhook_logs_days: 30,
            delivered_outbox_days: 30,
            resolved_alerts_days: 90,
        }
    }
}

impl RetentionConfig {
    /// Every problem, as `key: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        [
            ("webhook_logs_days", self.webhook_logs_days),
            ("delivered_outbox_days", self.delivered_outbox_days),
            ("resolved_alerts_days", self.resolved_alerts_days),
        ]
        .into_iter()
        .filter(|(_, d)| !(1..=3650).contains(d))
        .map(|(k, d)| format!("alerter.retention.{k}: must be between 1 and 3650 days, got {d}"))
        .collect()
    }
}

/// Rows deleted by one [`prune`], per table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// `webhook_logs` rows.
    pub webhook_logs: u64,
    /// Delivered `alert_outbox` rows.
    pub outbox: u64,
    /// Resolved `alert_records` rows.
    pub alert_records: u64,
}

/// Rows per DELETE: small enough that each statement is short.
const BATCH: i64 = 5_000;

/// Deletes what is past its retention.
pub async fn prune(pool: &gpuwatch_store::Pool, cfg: &RetentionConfig) -> Result<Pruned> {
    let c = pool.get().await?;
    let mut pruned = Pruned::default();
    for (table, filter, days, out) in [
        (
            "webhook_logs",
            "created_at < now() - make_interval(days => $1)",
            cfg.webhook_logs_days,
            &mut pruned.webhook_logs,
        ),
        (
            "alert_outbox",
            "status = 'delivered' AND delivered_at < now() - make_interval(days => $1)",
            cfg.delivered_outbox_days,
            &mut pruned.outbox,
        ),
        (
            "alert_records",
            "state = 'resolved' AND resolved_at < now() - make_interval(days => $1)",
            cfg.resolved_alerts_days,
            &mut pruned.alert_records,
        ),
    ] {
        let sql = format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {filter} LIMIT $2))"
        );
        let days = days as i32;
        loop {
            let n = c
                .execute(&sql, &[&days, &BATCH])
                .await
                .map_err(q("deleting old alerting rows"))?;
            *out += n;
            if n < BATCH as u64 {
                break;
            }
        }
    }
    Ok(pruned)
}
