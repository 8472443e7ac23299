//! Alert listings and acknowledgement, the outbox's notifications (with the
//! alerts each one carries) and dead-letter replay.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use gpuwatch_store::listing::{self, Filter, Source};

use super::{invalid, skip_unreadable, Page};
use crate::error::{q, AlerterError, Result};
use crate::rule::{AlertState, Severity};

/// Filters and paging of [`list_active_alerts`] and [`alert_history`].
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// pending, firing, nodata or resolved.
    pub state: Option<String>,
    /// info, warning or critical.
    pub severity: Option<String>,
    /// Alerts of this rule.
    pub rule_id: Option<i64>,
    /// The `host` label.
    pub host: Option<String>,
    /// Started at or after.
    pub since: Option<DateTime<Utc>>,
    /// Started before.
    pub until: Option<DateTime<Utc>>,
    /// 1..=1000, default 50.
    pub limit: Option<i64>,
    /// Default 0.
    pub offset: Option<i64>,
}

/// An alert instance.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AlertRecord {
    /// `alert_records.id`
    pub id: i64,
    /// Rule.
    pub rule_id: i64,
    /// Rule's name (also the alertname label).
    pub rule_name: String,
    /// Label hash.
    pub fingerprint: String,
    /// pending, firing, nodata, resolved.
    pub state: AlertState,
    /// Severity.
    pub severity: Severity,
    /// Last value.
    pub value: Option<f64>,
    /// Labels.
    pub labels: serde_json::Value,
    /// Rendered annotations.
    pub annotations: serde_json::Value,
    /// Condition first held.
    pub started_at: DateTime<Utc>,
    /// Fired.
    pub fired_at: Option<DateTime<Utc>>,
    /// Resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// "silence:N" or "inhibit:N" while muted.
    pub muted_by: Option<String>,
    /// What receivers were last told.
    pub notified_status: Option<String>,
    /// The token name that acknowledged it; while it fires acknowledged,
    /// `repeat_interval` does not re-notify it.
    pub acknowledged_by: Option<String>,
    /// When it was acknowledged.
    pub acknowledged_at: Option<DateTime<Utc>>,
}

const ALERT_COLUMNS: &str =
    "a.id, a.rule_id, r.name, a.fingerprint, a.state, a.severity, a.value, a.labels, \
     a.annotations, a.started_at, a.fired_at, a.resolved_at, a.muted_by, a.notified_status, \
     a.acknowledged_by, a.acknowledged_at";

fn alert_from_row(r: &tokio_postgres::Row) -> std::result::Result<AlertRecord, String> {
    let id: i64 = r.get(0);
    let text = |i: usize| r.get::<_, String>(i);
    let state = AlertState::parse(&text(4))
        .ok_or_else(|| format!("alert record {id}: state {:?} is unknown", text(4)))?;
    let severity = Severity::parse(&text(5))
        .ok_or_else(|| format!("alert record {id}: severity {:?} is unknown", text(5)))?;
    Ok(AlertRecord {
        id,
        rule_id: r.get(1),
        rule_name: r.get(2),
        fingerprint: r.get(3),
        state,
        severity,
        value: r.get(6),
        labels: r.get(7),
        annotations: r.get(8),
        started_at: r.get(9),
        fired_at: r.get(10),
        resolved_at: r.get(11),
        muted_by: r.get(12),
        notified_status: r.get(13),
        acknowledged_by: r.get(14),
        acknowledged_at: r.get(15),
    })
}

async fn alerts(
    pool: &gpuwatch_store::Pool,
    query: AlertQuery,
    active_only: bool,
) -> Result<Page<AlertRecord>> {
    let mut e = Vec::new();
    let bounds = listing::bounds(query.limit, query.offset, &mut e);
    let mut f = Filter::default();
    if active_only {
        f.raw("a.state IN ('pending', 'firing', 'nodata')");
    }
    if let Some(s) = query.state {
        if AlertState::parse(&s).is_none() {
            e.push(format!(
                "state: must be pending, firing, nodata or resolved, got {s:?}"
            ));
        }
        f.add("a.state = $?", s);
    }
    if let Some(s) = &query.severity {
        if Severity::parse(s).is_none() {
            e.push(format!(
                "severity: must be info, warning or critical, got {s:?}"
            ));
        }
    }
    f.opt("a.severity = $?", query.severity);
    f.opt("a.rule_id = $?", query.rule_id);
    f.opt(
        "a.labels @> jsonb_build_object('host', $?::text)",
        query.host,
    );
    f.opt("a.started_at >= $?", query.since);
    f.opt("a.started_at < $?", query.until);
    invalid(e)?;
    let source = Source {
        what: "alerts",
        from: "alert_records a JOIN alert_rules r ON r.id = a.rule_id",
        columns: ALERT_COLUMNS,
    };
    let order = "ORDER BY a.started_at DESC, a.id";
    let page = listing::fetch(pool, &source, &f, order, bounds, alert_from_row).await?;
    Ok(skip_unreadable(page, "alert record"))
}

/// Open alerts (pending, firing, no data), newest first.
pub async fn list_active_alerts(
    pool: &gpuwatch_store::Pool,
    query: AlertQuery,
) -> Result<Page<AlertRecord>> {
    alerts(pool, query, true).await
}

/// Every alert, resolved ones included, newest first.
pub async fn alert_history(
    pool: &gpuwatch_store::Pool,
    query: AlertQuery,
) -> Result<Page<AlertRecord>> {
    alerts(pool, query, false).await
}

/// Acknowledges an open alert as `by` (the token's name); acknowledging
/// again keeps the first acknowledgement. A resolved alert is a conflict.
pub async fn acknowledge_alert(
    pool: &gpuwatch_store::Pool,
    id: i64,
    by: &str,
) -> Result<AlertRecord> {
    set_acknowledged(pool, id, Some(by)).await
}

/// Takes an acknowledgement back: `repeat_interval` re-notifies the alert
/// again while it fires. A resolved alert is a conflict.
pub async fn unacknowledge_alert(pool: &gpuwatch_store::Pool, id: i64) -> Result<AlertRecord> {
    set_acknowledged(pool, id, None).await
}

async fn set_acknowledged(
    pool: &gpuwatch_store::Pool,
    id: i64,
    by: Option<&str>,
) -> Result<AlertRecord> {
    let c = pool.get().await?;
    let state: Option<String> = c
        .query_opt("SELECT state FROM alert_records WHERE id = $1", &[&id])
        .await
        .map_err(q("reading an alert"))?
        .map(|r| r.get(0));
    match state.as_deref() {
        None => return Err(AlerterError::NotFound(format!("alert {id}"))),
        Some("resolved") => {
            return Err(AlerterError::Conflict(format!(
                "alert {id} is resolved; only open alerts are acknowledged"
            )))
        }
        Some(_) => {}
    }
    // The state is checked again in the update: a resolve in between wins.
    let n = c
        .execute(
            "UPDATE alert_records SET
                 acknowledged_by = CASE WHEN $2::text IS NULL THEN NULL ELSE coalesce(acknowledged_by, $2) END,
                 acknowledged_at = CASE WHEN $2::text IS NULL THEN NULL ELSE coalesce(acknowledged_at, now()) END
             WHERE id = $1 AND state <> 'resolved'",
            &[&id, &by],
        )
        .await
        .map_err(q("acknowledging an alert"))?;
    if n == 0 {
        return Err(AlerterError::Conflict(format!(
            "alert {id} resolved meanwhile; only open alerts are acknowledged"
        )));
    }
    let row = c
        .query_one(
            &format!("SELECT {ALERT_COLUMNS} FROM alert_records a JOIN alert_rules r ON r.id = a.rule_id WHERE a.id = $1"),
            &[&id],
        )
        .await
        .map_err(q("reading an alert"))?;
    alert_from_row(&row).map_err(AlerterError::Unreadable)
}

/// An alert a notification carries, as it is now.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NotifiedAlert {
    /// `alert_records.id`
    pub id: i64,
    /// The rule's name.
    pub rule_name: String,
    /// Its state now: pending, firing, nodata or resolved.
    pub state: String,
    /// Its labels (`host`, `gpu_id` … link to the host and GPU).
    pub labels: serde_json::Value,
}

/// An outbox row.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Notification {
    /// Idempotency id (webhook-id header).
    pub id: String,
    /// webhook or email.
    pub channel: String,
    /// Target webhook.
    pub webhook_id: Option<i64>,
    /// pending, delivered or dead.
    pub status: String,
    /// Attempts since created or replayed.
    pub attempts: i32,
    /// Last failure.
    pub last_error: Option<String>,
    /// Queued.
    pub created_at: DateTime<Utc>,
    /// Delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The alerts it carries (empty for rows queued before migration 0033).
    pub alerts: Vec<NotifiedAlert>,
}

/// Filters and paging of [`list_notifications`].
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    /// pending, delivered or dead.
    pub status: Option<String>,
    /// 1..=1000, default 50.
    pub limit: Option<i64>,
    /// Default 0.
    pub offset: Option<i64>,
}

/// Notifications, newest first (status "dead" lists the dead letters).
pub async fn list_notifications(
    pool: &gpuwatch_store::Pool,
    query: NotificationQuery,
) -> Result<Page<Notification>> {
    let mut e = Vec::new();
    let bounds = listing::bounds(query.limit, query.offset, &mut e);
    let mut f = Filter::default();
    if let Some(s) = query.status {
        if !matches!(s.as_str(), "pending" | "delivered" | "dead") {
            e.push(format!(
                "status: must be pending, delivered or dead, got {s:?}"
            ));
        }
        f.add("o.status = $?", s);
    }
    invalid(e)?;
    let source = Source {
        what: "notifications",
        from: "alert_outbox o",
        columns: NOTIFICATION_COLUMNS,
    };
    let page = listing::fetch(
        pool,
        &source,
        &f,
        "ORDER BY o.created_at DESC, o.id",
        bounds,
        |r| {
            let id: String = r.get(0);
            let alerts = crate::store::json::<Vec<NotifiedAlert>>(r, 8)
                .map_err(|e| format!("notification {id}: {e}"))?;
            Ok(Notification {
                id,
                channel: r.get(1),
                webhook_id: r.get(2),
                status: r.get(3),
                attempts: r.get(4),
                last_error: r.get(5),
                created_at: r.get(6),
                delivered_at: r.get(7),
                alerts,
            })
        },
    )
    .await?;
    Ok(skip_unreadable(page, "notification"))
}

/// The outbox's columns, and the alerts of `alert_ids` as they are now.
const NOTIFICATION_COLUMNS: &str =
    "o.id::text, o.channel, o.webhook_id, o.status, o.attempts, o.last_error, o.created_at, \
     o.delivered_at, \
     (SELECT coalesce(jsonb_agg(jsonb_build_object('id', a.id, 'rule_name', r.name, \
         'state', a.state, 'labels', a.labels) ORDER BY a.id), '[]'::jsonb) \
      FROM alert_records a JOIN alert_rules r ON r.id = a.rule_id WHERE a.id = ANY(o.alert_ids))";

/// Puts a dead-lettered notification back in the queue with a fresh attempt
/// budget and the same id (receivers still deduplicate on it).
pub async fn replay_notification(pool: &gpuwatch_store::Pool, id: &str) -> Result<()> {
    if id.len() != 36 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(AlerterError::Invalid(vec![format!(
            "id: not a notification id (UUID): {id:?}"
        )]));
    }
    let c = pool.get().await?;
    let status: Option<String> = c
        .query_opt(
            "SELECT status FROM alert_outbox WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .map_err(q("reading a notification"))?
        .map(|r| r.get(0));
    match status.as_deref() {
        None => Err(AlerterError::NotFound(format!("notification {id}"))),
        Some("dead") => {
            c.execute(
                "UPDATE alert_outbox SET status = 'pending', attempts = 0, retry_since = NULL, next_attempt_at = now(), last_error = NULL
                 WHERE id = $1::text::uuid AND status = 'dead'",
                &[&id],
            )
            .await
            .map_err(q("replaying a notification"))?;
            Ok(())
        }
        Some(s) => Err(AlerterError::Conflict(format!(
            "notification {id} is {s}, not dead; only dead letters are replayed"
        ))),
    }
}
