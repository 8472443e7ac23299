//! The notification policy, run at the end of every evaluation cycle in the
//! same transaction: silences and inhibition mute alerts; the rest are
//! grouped (group_by labels and receivers) and flushed after group_wait,
//! then every group_interval while something changed, and again after
//! repeat_interval while anything unacknowledged fires (muting itself is
//! in `mute`). A flush writes one outbox row per receiver with the
//! Alertmanager v4 body and the ids of the alerts it carries, and in-app
//! `notifications` for alerts that carry a customer.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use tokio_postgres::types::Json;
use tokio_postgres::GenericClient;

use crate::error::{q, Result};
use crate::record::Alert;
use crate::rule::{Channel, Rule, Severity, WebhookFilters};
use crate::series::Labels;
use crate::store::{json, skip};
use crate::AlerterConfig;

/// A group's next flush, last notification, stored channels (or why they
/// do not parse) and whether one of its notifications was dead-lettered.
type GroupState = (
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    std::result::Result<Vec<Channel>, String>,
    bool,
);

/// What every group's flush of one cycle shares.
struct Flush<'a> {
    cfg: &'a AlerterConfig,
    webhooks: &'a [Webhook],
    rules: &'a HashMap<i64, &'a Rule>,
    now: DateTime<Utc>,
}

/// What a group's receivers were told: when last, and whether one of those
/// notifications was dead-lettered since.
#[derive(Default)]
struct Told {
    last: Option<DateTime<Utc>>,
    dead: bool,
}

/// Where one flush goes.
enum Target {
    Webhook { id: i64, name: String },
    Email { to: Vec<String> },
}

struct Webhook {
    id: i64,
    name: String,
    /// None: the stored filters do not parse, so no group is sent by them.
    filters: Option<WebhookFilters>,
}

/// Groups and flushes the alerts (already muted); returns the number of
/// outbox rows written.
pub(crate) async fn flush<C: GenericClient>(
    c: &C,
    cfg: &AlerterConfig,
    rules: &[Rule],
    alerts: &[Alert],
    now: DateTime<Utc>,
) -> Result<usize> {
    let rules: HashMap<i64, &Rule> = rules.iter().map(|r| (r.id, r)).collect();
    let mut groups: BTreeMap<String, Vec<&Alert>> = BTreeMap::new();
    let all_keys: Vec<String> = alerts.iter().map(|a| a.group_key.clone()).collect();
    for a in alerts.iter().filter(|a| a.muted_by.is_none()) {
        groups.entry(a.group_key.clone()).or_default().push(a);
    }
    c.execute(
        "DELETE FROM alert_groups WHERE NOT (group_key = ANY($1))",
        &[&all_keys],
    )
    .await
    .map_err(q("removing empty alert groups"))?;
    let state: HashMap<String, GroupState> = c
        .query(
            "SELECT group_key, next_flush_at, last_notified_at, channels, dead_lettered_at IS NOT NULL FROM alert_groups",
            &[],
        )
        .await
        .map_err(q("loading alert groups"))?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), json(r, 3), r.get(4))))
        .collect();
    let webhooks = load_webhooks(c).await?;
    let ctx = Flush {
        cfg,
        webhooks: &webhooks,
        rules: &rules,
        now,
    };
    let mut written = 0;
    for (key, members) in groups {
        let rule = members.iter().find_map(|a| rules.get(&a.rule_id).copied());
        let group_labels: Labels = rule
            .map(|r| {
                r.group_by
                    .iter()
                    .filter_map(|k| members[0].labels.get(k).map(|v| (k.clone(), v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let Some((next, last, stored_channels, dead)) = state.get(&key).cloned() else {
            let channels = rule.map(|r| r.channels.clone()).unwrap_or_default();
            let next = now + chrono::Duration::from_std(cfg.group_wait()).unwrap_or_default();
            c.execute(
                "INSERT INTO alert_groups (group_key, group_labels, channels, next_flush_at) VALUES ($1, $2, $3, $4)",
                &[&key, &Json(&group_labels), &Json(&channels), &next],
            )
            .await
            .map_err(q("creating an alert group"))?;
            if cfg.group_wait_secs > 0.0 {
                continue;
            }
            written += flush_group(
                c,
                &ctx,
                &key,
                &group_labels,
                &members,
                &channels,
                Told::default(),
            )
            .await?;
            continue;
        };
        if now < next {
            continue;
        }
        // Stored channels that do not parse would read as "every webhook":
        // the group waits instead, and the log says which one.
        let Some(channels) = skip_group(&key, stored_channels) else {
            continue;
        };
        written += flush_group(
            c,
            &ctx,
            &key,
            &group_labels,
            &members,
            &channels,
            Told { last, dead },
        )
        .await?;
    }
    Ok(written)
}

async fn flush_group<C: GenericClient>(
    c: &C,
    ctx: &Flush<'_>,
    key: &str,
    group_labels: &Labels,
    members: &[&Alert],
    channels: &[Channel],
    told: Told,
) -> Result<usize> {
    let last = told.last;
    let (cfg, webhooks, rules, now) = (ctx.cfg, ctx.webhooks, ctx.rules, ctx.now);
    let firing: Vec<&Alert> = members.iter().copied().filter(|a| a.firing()).collect();
    let resolved: Vec<&Alert> = members.iter().copied().filter(|a| !a.firing()).collect();
    let changed = firing
        .iter()
        .any(|a| a.notified_status.as_deref() != Some("firing"))
        || (cfg.send_resolved && !resolved.is_empty());
    let repeat = members
        .iter()
        .filter_map(|a| {
            rules
                .get(&a.rule_id)
                .map(|r| r.repeat_interval_seconds as f64)
        })
        .fold(cfg.repeat_interval_secs, f64::min);
    // A dead letter means the receivers may never have heard: tell them
    // again at this flush rather than after repeat_interval.
    let repeat_due =
        told.dead || last.is_none_or(|l| (now - l).num_milliseconds() as f64 >= repeat * 1000.0);
    // An acknowledged alert has someone on it: repeat_interval re-sends the
    // group only while one of its firing alerts is not acknowledged (a dead
    // letter is still re-sent: its receivers may never have heard).
    let repeat_wanted = told.dead || firing.iter().any(|a| !a.acknowledged);
    let send = changed || (repeat_due && repeat_wanted && !firing.is_empty());
    let mut written = 0;
    if send {
        let mut sent: Vec<&Alert> = firing.clone();
        if cfg.send_resolved {
            sent.extend(resolved.iter().copied());
        }
        let ids: Vec<i64> = sent.iter().map(|a| a.id).collect();
        for target in targets(cfg, channels, group_labels, &sent, webhooks) {
            let (channel, webhook_id, to, receiver) = match &target {
                Target::Webhook { id, name } => ("webhook", Some(*id), json!([]), name.clone()),
                Target::Email { to } => ("email", None, json!(to), "email".to_string()),
            };
            let body = payload(&receiver, key, group_labels, &sent, &cfg.external_url);
            c.execute(
                "INSERT INTO alert_outbox (channel, webhook_id, email_to, group_key, payload, alert_ids) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&channel, &webhook_id, &to, &key, &body, &ids],
            )
            .await
            .map_err(q("queueing a notification"))?;
            written += 1;
        }
        in_app(c, &sent).await?;
    }
    // Whatever was due is now told (or deliberately not told: send_resolved off).
    let fired: Vec<i64> = firing.iter().map(|a| a.id).collect();
    let done: Vec<i64> = resolved.iter().map(|a| a.id).collect();
    c.execute(
        "UPDATE alert_records SET notified_status = CASE WHEN id = ANY($1) THEN 'firing' ELSE 'resolved' END,
             last_notified_at = CASE WHEN $3 THEN $4 ELSE last_notified_at END
         WHERE id = ANY($1) OR id = ANY($2)",
        &[&fired, &done, &send, &now],
    )
    .await
    .map_err(q("recording what was notified"))?;
    let next = now + chrono::Duration::from_std(cfg.group_interval()).unwrap_or_default();
    if firing.is_empty() {
        c.execute("DELETE FROM alert_groups WHERE group_key = $1", &[&key])
            .await
            .map_err(q("closing an alert group"))?;
    } else {
        c.execute(
            "UPDATE alert_groups SET next_flush_at = $2,
                 last_notified_at = CASE WHEN $3 THEN $4 ELSE last_notified_at END,
                 dead_lettered_at = CASE WHEN $3 THEN NULL ELSE dead_lettered_at END
             WHERE group_key = $1",
            &[&key, &next, &send, &now],
        )
        .await
        .map_err(q("updating an alert group"))?;
    }
    Ok(written)
}

/// Receivers of a flush: the rule's channels, or (none given) every enabled
/// webhook whose filters match the group's common labels plus smtp.default_to.
fn targets(
    cfg: &AlerterConfig,
    channels: &[Channel],
    group_labels: &Labels,
    alerts: &[&Alert],
    webhooks: &[Webhook],
) -> Vec<Target> {
    let mut out = Vec::new();
    if channels.is_empty() {
        let common = common(alerts.iter().map(|a| &a.labels));
        for w in webhooks {
            let ok = w.filters.as_ref().is_some_and(|f| {
                f.pass(|k| common.get(k).or_else(|| group_labels.get(k)).cloned())
            });
            if ok {
                out.push(Target::Webhook {
                    id: w.id,
                    name: w.name.clone(),
                });
            }
        }
        if !cfg.smtp.default_to.is_empty() {
            out.push(Target::Email {
                to: cfg.smtp.default_to.clone(),
            });
        }
        return out;
    }
    for ch in channels {
        match ch {
            Channel::Webhook { webhook_id } => {
                match webhooks.iter().find(|w| w.id == *webhook_id) {
                    Some(w) => out.push(Target::Webhook {
                        id: w.id,
                        name: w.name.clone(),
                    }),
                    None => tracing::warn!(
                        webhook.id = webhook_id,
                        "a rule names a webhook that is missing or disabled; nothing sent to it"
                    ),
                }
            }
            Channel::Email { to } => out.push(Target::Email { to: to.clone() }),
            // Alertmanager does its own grouping: `channels::alertmanager` posts the alerts.
            Channel::Alertmanager { .. } => {}
        }
    }
    out
}

/// Labels (or annotations) every map shares with the same value.
fn common<'a>(
    mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut c = first.clone();
    for m in maps {
        c.retain(|k, v| m.get(k) == Some(v));
    }
    c
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Alertmanager's webhook body, version 4.
fn payload(
    receiver: &str,
    key: &str,
    group_labels: &Labels,
    alerts: &[&Alert],
    external_url: &str,
) -> Value {
    let base = external_url.trim_end_matches('/');
    let items: Vec<Value> = alerts
        .iter()
        .map(|a| {
            json!({
                "status": if a.firing() { "firing" } else { "resolved" },
                "labels": crate::series::public(&a.labels),
                "annotations": a.annotations,
                "startsAt": ts(a.started_at),
                "endsAt": a.resolved_at.filter(|_| !a.firing()).map_or_else(|| "0001-01-01T00:00:00Z".to_string(), ts),
                "generatorURL": format!("{base}/api/v1/alerts?rule_id={}", a.rule_id),
                "fingerprint": a.fingerprint,
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": key,
        "truncatedAlerts": 0,
        "status": if alerts.iter().any(|a| a.firing()) { "firing" } else { "resolved" },
        "receiver": receiver,
        "groupLabels": crate::series::public(group_labels),
        "commonLabels": crate::series::public(&common(alerts.iter().map(|a| &a.labels))),
        "commonAnnotations": common(alerts.iter().map(|a| &a.annotations)),
        "externalURL": base,
        "alerts": items,
    })
}

/// In-app messages for alerts about a customer's resources.
async fn in_app<C: GenericClient>(c: &C, alerts: &[&Alert]) -> Result<()> {
    for a in alerts.iter().filter(|a| {
        a.notified_status.as_deref() != Some(if a.firing() { "firing" } else { "resolved" })
    }) {
        let Some(customer) = a
            .labels
            .get("customer")
            .or_else(|| a.labels.get("customer_id"))
            .and_then(|s| s.parse::<i64>().ok())
        else {
            continue;
        };
        let severity = a.labels.get("severity").and_then(|s| Severity::parse(s));
        let level = match severity {
            Some(Severity::Critical) => "error",
            Some(Severity::Info) => "info",
            _ => "warning",
        };
        let name = a.labels.get("alertname").map_or("alert", String::as_str);
        let title = if a.firing() {
            format!("{name} is firing")
        } else {
            format!("{name} resolved")
        };
        let content = a.annotations.get("summary").cloned().unwrap_or_default();
        c.execute(
            "INSERT INTO notifications (customer_id, type, level, title, content, related_type, related_id)
             SELECT $1, 'alert', $2, $3, $4, 'alert_record', $5
             WHERE EXISTS (SELECT 1 FROM customers WHERE id = $1)",
            &[&customer, &level, &title, &content, &a.id.to_string()],
        )
        .await
        .map_err(q("writing an in-app notification"))?;
    }
    Ok(())
}

async fn load_webhooks<C: GenericClient>(c: &C) -> Result<Vec<Webhook>> {
    let rows = c
        .query(
            "SELECT id, name, filters FROM webhooks WHERE enabled AND deleted_at IS NULL ORDER BY id",
            &[],
        )
        .await
        .map_err(q("loading webhooks"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let filters = json::<Value>(r, 2).and_then(|v| {
                WebhookFilters::from_json(&v).map_err(|e| format!("filters: {}", e.join("; ")))
            });
            Webhook {
                id,
                name: r.get(1),
                // Still a target of rules that name it; never one chosen by filters.
                filters: skip("webhook", id, filters),
            }
        })
        .collect())
}

fn skip_group(
    key: &str,
    channels: std::result::Result<Vec<Channel>, String>,
) -> Option<Vec<Channel>> {
    channels
        .map_err(|e| {
            tracing::error!(group.key = key, error = %e, "alert group not flushed: its stored channels do not parse")
        })
        .ok()
}
