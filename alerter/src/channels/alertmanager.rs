//! Alertmanager as a receiver: the alerts of rules with an `alertmanager`
//! channel are posted to every listed replica's `/api/v2/alerts`, as
//! Prometheus does. Firing alerts are re-sent at most every
//! `alerter.alertmanager_resend`, with an `endsAt` far enough ahead that
//! Alertmanager never resolves them by timeout while we keep sending; a
//! resolved alert is sent once with its `endsAt`. Alertmanager groups,
//! silences and routes them itself, so gpuwatch's grouping is not applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use tokio_postgres::GenericClient;

use super::webhook::WebhookTarget;
use crate::error::{q, Result};
use crate::rule::{Channel, Rule};
use crate::AlerterConfig;

/// The outbox's group_key of Alertmanager posts (they belong to no group).
pub(crate) const GROUP_KEY: &str = "alertmanager";

/// Where one post goes: the replica's alerts endpoint, unsigned.
pub(crate) fn target(base: &str, timeout: Duration) -> WebhookTarget {
    WebhookTarget {
        id: 0,
        url: format!("{}/api/v2/alerts", base.trim_end_matches('/')),
        secret: None,
        headers: serde_json::Map::new(),
        timeout,
    }
}

/// Queues this cycle's posts: one outbox row per Alertmanager URL with
/// every alert it is due to hear about. Returns the rows written.
pub(crate) async fn queue<C: GenericClient>(
    c: &C,
    cfg: &AlerterConfig,
    rules: &[Rule],
    now: DateTime<Utc>,
) -> Result<usize> {
    let urls: HashMap<i64, BTreeSet<String>> = rules
        .iter()
        .filter_map(|r| {
            let u: BTreeSet<String> = r
                .channels
                .iter()
                .flat_map(|ch| match ch {
                    Channel::Alertmanager { urls } => urls.clone(),
                    _ => Vec::new(),
                })
                .collect();
            (!u.is_empty()).then_some((r.id, u))
        })
        .collect();
    if urls.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = urls.keys().copied().collect();
    let resend = cfg.alertmanager_resend_secs;
    let rows = c
        .query(
            "SELECT id, rule_id, labels, annotations, started_at, resolved_at, state = 'resolved'
             FROM alert_records
             WHERE rule_id = ANY($1) AND (
                 (state IN ('firing', 'nodata') AND fired_at IS NOT NULL
                     AND (am_sent_at IS NULL OR am_sent_at <= $2::timestamptz - make_interval(secs => $3)))
                 OR (state = 'resolved' AND am_status = 'firing'))",
            &[&ids, &now, &resend],
        )
        .await
        .map_err(q("loading alerts for Alertmanager"))?;
    // Prometheus' rule: valid for four resend periods (or evaluations).
    let valid_for =
        chrono::Duration::milliseconds((4.0 * resend.max(cfg.interval_secs) * 1000.0) as i64);
    let base = cfg.external_url.trim_end_matches('/');
    let mut by_url: BTreeMap<&str, (Vec<Value>, Vec<i64>)> = BTreeMap::new();
    let (mut fired, mut resolved) = (Vec::new(), Vec::new());
    for r in &rows {
        let (id, rule_id): (i64, i64) = (r.get(0), r.get(1));
        let is_resolved: bool = r.get(6);
        let ends = if is_resolved {
            r.get::<_, Option<DateTime<Utc>>>(5).unwrap_or(now)
        } else {
            now + valid_for
        };
        let labels = match crate::store::json::<crate::series::Labels>(r, 2) {
            Ok(l) => crate::series::public(&l),
            // An alert without its labels would match every route and silence.
            Err(e) => {
                tracing::warn!(alert.id = id, error = %e, "alert record skipped for Alertmanager: its labels do not parse");
                continue;
            }
        };
        let alert = json!({
            "labels": labels,
            "annotations": r.get::<_, Value>(3),
            "startsAt": ts(r.get(4)),
            "endsAt": ts(ends),
            "generatorURL": format!("{base}/api/v1/alerts?rule_id={rule_id}"),
        });
        for u in &urls[&rule_id] {
            let (alerts, ids) = by_url.entry(u.as_str()).or_default();
            alerts.push(alert.clone());
            ids.push(id);
        }
        if is_resolved {
            &mut resolved
        } else {
            &mut fired
        }
        .push(id);
    }
    for (url, (alerts, ids)) in &by_url {
        c.execute(
            "INSERT INTO alert_outbox (channel, target_url, group_key, payload, alert_ids) VALUES ('alertmanager', $1, $2, $3, $4)",
            &[url, &GROUP_KEY, &Value::Array(alerts.clone()), ids],
        )
        .await
        .map_err(q("queueing an Alertmanager post"))?;
    }
    c.execute(
        "UPDATE alert_records SET am_sent_at = $3,
             am_status = CASE WHEN id = ANY($1) THEN 'firing' ELSE 'resolved' END
         WHERE id = ANY($1) OR id = ANY($2)",
        &[&fired, &resolved, &now],
    )
    .await
    .map_err(q("recording what Alertmanager was told"))?;
    Ok(by_url.len())
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
