//! One evaluation cycle: rules × series → state transitions persisted in
//! `alert_records`, then the notification policy, all in one transaction
//! under an advisory lock (replicas take turns; a crash rolls the whole
//! cycle back, so state and outbox never disagree).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use crate::error::{q, Result};
use crate::record::{Open, Write};
use crate::rule::{all_match, AlertState, Rule};
use crate::series::{self, Inventory, Labels};
use crate::{mute, notify, store, template, AlerterConfig};

/// Advisory lock key of the evaluator ("gw-alert" in ASCII).
const EVAL_LOCK: i64 = 0x6777_2d61_6c65_7274;

/// What one cycle did.
#[derive(Debug, Default, Clone)]
pub struct CycleReport {
    /// False when another replica held the lock and this one skipped.
    pub ran: bool,
    /// Enabled rules evaluated.
    pub rules: usize,
    /// (rule, series) pairs evaluated.
    pub series: usize,
    /// State changes written.
    pub transitions: usize,
    /// Outbox rows written.
    pub notifications: usize,
}

/// Alertmanager-style fingerprint: a hash of the sorted label set.
pub fn fingerprint(labels: &Labels) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xfe]);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The group an alert is notified in: its rule's receivers and group_by values.
pub fn group_key(rule: &Rule, labels: &Labels) -> String {
    let channels = serde_json::to_string(&rule.channels).unwrap_or_default();
    let route = &fingerprint(&[("channels".to_string(), channels)].into())[..8];
    let g: Vec<String> = rule
        .group_by
        .iter()
        .map(|k| format!("{k}={:?}", labels.get(k).map_or("", String::as_str)))
        .collect();
    format!("{{{route}}}:{{{}}}", g.join(","))
}

/// Runs one cycle at `now`.
pub async fn cycle(
    pool: &gpuwatch_store::Pool,
    cfg: &AlerterConfig,
    now: DateTime<Utc>,
) -> Result<CycleReport> {
    let mut conn = pool.get().await?;
    let tx = conn
        .transaction()
        .await
        .map_err(q("starting an evaluation cycle"))?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&EVAL_LOCK])
        .await
        .map_err(q("taking the evaluator lock"))?
        .get(0);
    if !locked {
        return Ok(CycleReport::default());
    }
    let t: &tokio_postgres::Transaction = &tx;
    let rules = store::enabled_rules(t).await?;
    let mut report = evaluate(t, &rules, now).await?;
    let mut alerts = store::notifiable_alerts(t).await?;
    mute::mute(t, &mut alerts, now).await?;
    report.notifications = notify::flush(t, cfg, &rules, &alerts, now).await?
        + crate::channels::alertmanager::queue(t, cfg, &rules, now).await?;
    tx.commit()
        .await
        .map_err(q("committing an evaluation cycle"))?;
    report.ran = true;
    report.rules = rules.len();
    Ok(report)
}

async fn evaluate<C: GenericClient>(
    c: &C,
    rules: &[Rule],
    now: DateTime<Utc>,
) -> Result<CycleReport> {
    let inv = Inventory::load(c).await?;
    let values = series::load(c, &inv, &series::wants(rules), now).await?;
    let mut open = store::open_records(c).await?;
    let mut writes = Vec::new();
    let mut deletes = Vec::new();
    let mut report = CycleReport::default();
    let empty = Vec::new();
    let no_details = Labels::new();
    for rule in rules {
        let Some(src) = crate::rule::source(&rule.metric) else {
            continue;
        };
        let want = (src, rule.reduction, rule.window_seconds);
        for point in values.get(&want).unwrap_or(&empty) {
            if !all_match(&rule.scope, &point.labels) {
                continue;
            }
            report.series += 1;
            let mut labels = (*point.labels).clone();
            labels.extend(rule.labels.clone());
            labels.insert("alertname".into(), rule.name.clone());
            labels.insert("severity".into(), rule.severity.to_string());
            let fp = fingerprint(&labels);
            let prev = open.remove(&(rule.id, fp.clone()));
            let details = point.details.as_deref().unwrap_or(&no_details);
            if let Some(w) = step(
                rule,
                prev,
                labels,
                details,
                fp,
                Some(point.value),
                now,
                &mut deletes,
            ) {
                writes.push(w);
            }
        }
    }
    // Open alerts whose series returned nothing: no data, never a silent resolve;
    // those of rules that are gone or disabled resolve.
    let live: HashMap<i64, &Rule> = rules.iter().map(|r| (r.id, r)).collect();
    for ((rule_id, fp), o) in open {
        match live.get(&rule_id) {
            Some(_) if o.state == AlertState::Nodata => {}
            Some(rule) => writes.push(nodata(rule, o, fp)),
            None => resolve_orphan(o, now, &mut writes),
        }
    }
    report.transitions = writes.len() + deletes.len();
    store::write_records(c, &writes, &deletes, now).await?;
    Ok(report)
}

/// The state machine of one series with a value.
#[allow(clippy::too_many_arguments)]
fn step(
    rule: &Rule,
    prev: Option<Open>,
    labels: Labels,
    details: &Labels,
    fp: String,
    value: Option<f64>,
    now: DateTime<Utc>,
    deletes: &mut Vec<i64>,
) -> Option<Write> {
    let holds = value.is_some_and(|v| rule.holds(v));
    let for_ = chrono::Duration::seconds(rule.for_seconds as i64);
    let keep = chrono::Duration::seconds(rule.keep_firing_for_seconds as i64);
    let mut w = Write {
        id: None,
        rule_id: rule.id,
        fingerprint: fp,
        state: AlertState::Pending,
        severity: Some(rule.severity),
        value,
        annotations: template::render_all(
            &rule.annotations,
            &labels,
            details,
            value,
            rule.severity.as_str(),
        ),
        group_key: group_key(rule, &labels),
        labels,
        started_at: now,
        fired_at: None,
        resolved_at: None,
        keep_firing_since: None,
    };
    match (prev, holds) {
        (None, false) => return None,
        (None, true) => {
            if rule.for_seconds == 0 {
                w.state = AlertState::Firing;
                w.fired_at = Some(now);
            }
        }
        (Some(o), true) => {
            w.id = Some(o.id);
            w.started_at = o.started_at;
            w.fired_at = o.fired_at;
            if o.fired_at.is_some() || now - o.started_at >= for_ {
                w.state = AlertState::Firing;
                w.fired_at = o.fired_at.or(Some(now));
            }
        }
        (Some(o), false) => {
            w.id = Some(o.id);
            w.started_at = o.started_at;
            w.fired_at = o.fired_at;
            match o.fired_at {
                // Pending never fired and nobody was told: it simply goes away.
                None => {
                    deletes.push(o.id);
                    return None;
                }
                Some(_) => {
                    let since = o.keep_firing_since.unwrap_or(now);
                    if o.state == AlertState::Firing && now - since < keep {
                        w.state = AlertState::Firing;
                        w.keep_firing_since = Some(since);
                    } else {
                        w.state = AlertState::Resolved;
                        w.resolved_at = Some(now);
                    }
                }
            }
        }
    }
    Some(w)
}

/// No data keeps the stored labels, annotations and group: an empty
/// group_key means "unchanged" to store::write_records.
fn nodata(rule: &Rule, o: Open, fp: String) -> Write {
    Write {
        id: Some(o.id),
        rule_id: rule.id,
        fingerprint: fp,
        state: AlertState::Nodata,
        severity: Some(rule.severity),
        value: None,
        labels: Labels::new(), // kept as stored (see store::write_records)
        annotations: BTreeMap::new(),
        started_at: o.started_at,
        fired_at: o.fired_at,
        resolved_at: None,
        keep_firing_since: None,
        group_key: String::new(),
    }
}

/// An open alert of a rule deleted or disabled since: resolved (a resolved
/// notice follows only if it was notified as firing).
fn resolve_orphan(o: Open, now: DateTime<Utc>, writes: &mut Vec<Write>) {
    let w = Write {
        id: Some(o.id),
        rule_id: 0,
        fingerprint: String::new(),
        state: AlertState::Resolved,
        severity: None,
        value: None,
        labels: Labels::new(),
        annotations: BTreeMap::new(),
        started_at: o.started_at,
        fired_at: o.fired_at,
        resolved_at: Some(now),
        keep_firing_since: None,
        group_key: String::new(),
    };
    writes.push(w);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(for_s: i32, keep: i32) -> Rule {
        serde_json::from_value(serde_json::json!({
            "id": 1, "name": "Hot", "description": null, "metric": "gpu.temperature", "scope": [],
            "reduction": "avg", "window_seconds": 60, "comparison": ">=", "threshold": 85.0,
            "for_seconds": for_s, "keep_firing_for_seconds": keep, "severity": "critical",
            "labels": {}, "annotations": {"s": "{{ $value }}"}, "repeat_interval_seconds": 60,
            "channels": [], "group_by": ["alertname"], "enabled": true
        }))
        .unwrap()
    }

    fn open(w: &Write, id: i64) -> Open {
        Open {
            id,
            state: w.state,
            started_at: w.started_at,
            fired_at: w.fired_at,
            keep_firing_since: w.keep_firing_since,
        }
    }

    #[test]
    fn pending_fires_after_for_and_resolves_after_keep_firing_for() {
        let t0 = Utc::now();
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        let r = rule(30, 20);
        let mut d = Vec::new();
        let w = step(
            &r,
            None,
            Labels::new(),
            &Labels::new(),
            "f".into(),
            Some(90.0),
            t0,
            &mut d,
        )
        .unwrap();
        assert_eq!(w.state, AlertState::Pending);
        let w = step(
            &r,
            Some(open(&w, 1)),
            Labels::new(),
            &Labels::new(),
            "f".into(),
            Some(90.0),
            s(29),
            &mut d,
        )
        .unwrap();
        assert_eq!(w.state, AlertState::Pending);
        let w = step(
            &r,
            Some(open(&w, 1)),
            Labels::new(),
            &Labels::new(),
            "f".into(),
            Some(90.0),
            s(30),
            &mut d,
        )
        .unwrap();
        assert_eq!((w.state, w.fired_at), (AlertState::Firing, Some(s(30))));
        let w = step(
            &r,
            Some(open(&w, 1)),
            Labels::new(),
            &Labels::new(),
            "f".into(),
            Some(50.0),
            s(40),
            &mut d,
        )
        .unwrap();
        assert_eq!(
            (w.state, w.keep_firing_since),
            (AlertState::Firing, Some(s(40)))
        );
        let w = step(
            &r,
            Some(open(&w, 1)),
            Labels::new(),
            &Labels::new(),
            "f".into(),
            Some(50.0),
            s(60),
            &mut d,
        )
        .unwrap();
        assert_eq!(
            (w.state, w.resolved_at),
            (AlertState::Resolved, Some(s(60)))
        );
        assert!(d.is_empty());
    }

    #[test]
    fn a_pending_alert_that_clears_is_deleted_not_resolved() {
        let t0 = Utc::now();
        let r = rule(30, 0);
        let mut d = Vec::new();
        let w = step(
            &r,
            None,
            Labels::new(),
            &Labels::new(),
            "f".into(),
            Some(90.0),
            t0,
            &mut d,
        )
        .unwrap();
        assert!(step(
            &r,
            Some(open(&w, 7)),
            Labels::new(),
            &Labels::new(),
            "f".into(),
            Some(1.0),
            t0,
            &mut d
        )
        .is_none());
        assert_eq!(d, vec![7]);
    }

    #[test]
    fn fingerprints_depend_on_labels_only() {
        let a: Labels = [
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ]
        .into();
        let b: Labels = [
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "1".to_string()),
        ]
        .into();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&Labels::new()));
    }
}
