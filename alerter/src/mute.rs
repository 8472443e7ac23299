//! Silences and inhibition: which alerts are muted this cycle, and by what.
//! A muted alert stays in `alert_records` with `muted_by` set ("silence:N"
//! or "inhibit:N") and is left out of its group's notifications.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_postgres::GenericClient;

use crate::error::{q, Result};
use crate::record::Alert;
use crate::rule::{all_match, AlertState};
use crate::store::{self, Inhibit, Silence};

/// Sets each alert's `muted_by` from the active silences and inhibition rules,
/// writing only the changes.
pub(crate) async fn mute<C: GenericClient>(
    c: &C,
    alerts: &mut [Alert],
    now: DateTime<Utc>,
) -> Result<()> {
    let silences = store::active_silences(c, now).await?;
    let inhibits = store::inhibit_rules(c).await?;
    let muted: Vec<Option<String>> = alerts
        .iter()
        .map(|a| muted_by(a, alerts, &silences, &inhibits))
        .collect();
    let mut changes = Vec::new();
    for (a, m) in alerts.iter_mut().zip(muted) {
        if a.muted_by != m {
            changes.push(json!({"id": a.id, "muted_by": m}));
            a.muted_by = m;
        }
    }
    if !changes.is_empty() {
        c.execute(
            "UPDATE alert_records r SET muted_by = x.muted_by
             FROM jsonb_to_recordset($1) AS x(id bigint, muted_by text) WHERE r.id = x.id",
            &[&Value::Array(changes)],
        )
        .await
        .map_err(q("recording silenced and inhibited alerts"))?;
    }
    Ok(())
}

fn muted_by(
    a: &Alert,
    all: &[Alert],
    silences: &[Silence],
    inhibits: &[Inhibit],
) -> Option<String> {
    if let Some(s) = silences.iter().find(|s| all_match(&s.matchers, &a.labels)) {
        return Some(format!("silence:{}", s.id));
    }
    for rule in inhibits {
        if !all_match(&rule.target, &a.labels) {
            continue;
        }
        let source = all.iter().any(|s| {
            s.state == AlertState::Firing
                && s.id != a.id
                && all_match(&rule.source, &s.labels)
                && rule
                    .equal
                    .iter()
                    .all(|k| s.labels.get(k) == a.labels.get(k))
        });
        if source {
            return Some(format!("inhibit:{}", rule.id));
        }
    }
    None
}
