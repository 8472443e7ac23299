//! The alerter's queries on its own tables, in one place, and the one way
//! their JSON columns are read: into types (`Json<T>`). A row that does not
//! parse is logged with its id and skipped (a rule is not evaluated, a
//! silence or inhibition mutes nothing, a webhook is not chosen by filters);
//! it never reads as an empty list, which would match everything.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use tokio_postgres::types::Json;
use tokio_postgres::{GenericClient, Row};

use crate::error::{q, Result};
use crate::record::{Alert, Open, Write};
use crate::rule::{AlertState, Comparison, Matcher, Reduction, Rule, Severity};
use crate::series::Labels;

/// Columns of `alert_rules` as [`rule_from_row`] reads them.
pub(crate) const RULE_COLUMNS: &str =
    "id, name, description, metric, scope, reduction, window_seconds, \
     comparison, threshold, for_seconds, keep_firing_for_seconds, severity, labels, annotations, \
     repeat_interval_seconds, channels, group_by, enabled";

/// Column `i` of `r`, a JSON value read into `T`; the error names the column.
pub(crate) fn json<T: DeserializeOwned>(r: &Row, i: usize) -> std::result::Result<T, String> {
    r.try_get::<_, Json<T>>(i).map(|j| j.0).map_err(|e| {
        let cause =
            std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
        format!("{} does not parse: {cause}", r.columns()[i].name())
    })
}

/// Column `i` of `r`, text that must name a member of a closed set.
fn closed<T>(r: &Row, i: usize, parse: fn(&str) -> Option<T>) -> std::result::Result<T, String> {
    let s: String = r.get(i);
    parse(&s).ok_or_else(|| {
        format!(
            "{} {s:?} is not one the alerter knows",
            r.columns()[i].name()
        )
    })
}

/// Maps a row selected with [`RULE_COLUMNS`]; the error names the rule, the
/// column and how to fix it.
pub(crate) fn rule_from_row(r: &Row) -> std::result::Result<Rule, String> {
    let id: i64 = r.get(0);
    let read = || -> std::result::Result<Rule, String> {
        Ok(Rule {
            id,
            name: r.get(1),
            description: r.get(2),
            metric: r.get(3),
            scope: json(r, 4)?,
            reduction: closed(r, 5, Reduction::parse)?,
            window_seconds: r.get(6),
            comparison: closed(r, 7, Comparison::parse)?,
            threshold: r.get(8),
            for_seconds: r.get(9),
            keep_firing_for_seconds: r.get(10),
            severity: closed(r, 11, Severity::parse)?,
            labels: json(r, 12)?,
            annotations: json(r, 13)?,
            repeat_interval_seconds: r.get(14),
            channels: json(r, 15)?,
            group_by: json(r, 16)?,
            enabled: r.get(17),
        })
    };
    read()
        .map_err(|e| format!("alert rule {id}: {e}; replace it with PUT /api/v1/alert-rules/{id}"))
}

/// Rules the evaluator runs; one that does not parse is logged and not evaluated.
pub(crate) async fn enabled_rules<C: GenericClient>(c: &C) -> Result<Vec<Rule>> {
    let sql = format!(
        "SELECT {RULE_COLUMNS} FROM alert_rules WHERE enabled AND deleted_at IS NULL ORDER BY id"
    );
    let rows = c.query(&sql, &[]).await.map_err(q("loading alert rules"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            rule_from_row(r)
                .map_err(|e| {
                    tracing::error!(rule.id = r.get::<_, i64>(0), error = %e, "alert rule skipped: it does not parse")
                })
                .ok()
        })
        .collect())
}

/// An active silence.
pub(crate) struct Silence {
    pub(crate) id: i64,
    pub(crate) matchers: Vec<Matcher>,
}

/// An enabled inhibition rule.
pub(crate) struct Inhibit {
    pub(crate) id: i64,
    pub(crate) source: Vec<Matcher>,
    pub(crate) target: Vec<Matcher>,
    pub(crate) equal: Vec<String>,
}

/// Silences active at `now`; one that does not parse, or has no matchers,
/// is logged and mutes nothing.
pub(crate) async fn active_silences<C: GenericClient>(
    c: &C,
    now: DateTime<Utc>,
) -> Result<Vec<Silence>> {
    let rows = c
        .query(
            "SELECT id, matchers FROM silences WHERE deleted_at IS NULL AND starts_at <= $1 AND ends_at > $1 ORDER BY id",
            &[&now],
        )
        .await
        .map_err(q("loading active silences"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let id: i64 = r.get(0);
            let matchers = json::<Vec<Matcher>>(r, 1).and_then(non_empty);
            skip("silence", id, matchers).map(|matchers| Silence { id, matchers })
        })
        .collect())
}

/// Enabled inhibition rules; one that does not parse is logged and inhibits nothing.
pub(crate) async fn inhibit_rules<C: GenericClient>(c: &C) -> Result<Vec<Inhibit>> {
    let rows = c
        .query(
            "SELECT id, source_matchers, target_matchers, equal FROM inhibit_rules WHERE enabled ORDER BY id",
            &[],
        )
        .await
        .map_err(q("loading inhibition rules"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let id: i64 = r.get(0);
            let read = || -> std::result::Result<Inhibit, String> {
                Ok(Inhibit {
                    id,
                    source: json::<Vec<Matcher>>(r, 1).and_then(non_empty)?,
                    target: json::<Vec<Matcher>>(r, 2).and_then(non_empty)?,
                    equal: json(r, 3)?,
                })
            };
            skip("inhibition rule", id, read())
        })
        .collect())
}

/// An empty matcher list would mute every alert: not something a row means.
fn non_empty(m: Vec<Matcher>) -> std::result::Result<Vec<Matcher>, String> {
    if m.is_empty() {
        Err("has no matchers (it would match every alert)".into())
    } else {
        Ok(m)
    }
}

/// Logs a row that does not parse, with its id, and drops it.
pub(crate) fn skip<T>(what: &str, id: i64, r: std::result::Result<T, String>) -> Option<T> {
    r.map_err(|e| {
        tracing::error!(row.id = id, error = %e, "{what} {id} skipped: it does not parse; fix or delete the row")
    })
    .ok()
}

/// Open (pending, firing, nodata) records by (rule, fingerprint).
pub(crate) async fn open_records<C: GenericClient>(c: &C) -> Result<HashMap<(i64, String), Open>> {
    let rows = c
        .query(
            "SELECT id, rule_id, fingerprint, state, started_at, fired_at, keep_firing_since
             FROM alert_records WHERE state IN ('pending', 'firing', 'nodata')",
            &[],
        )
        .await
        .map_err(q("loading open alerts"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let id: i64 = r.get(0);
            let state = closed(r, 3, AlertState::parse);
            let open = state.map(|state| Open {
                id,
                state,
                started_at: r.get(4),
                fired_at: r.get(5),
                keep_firing_since: r.get(6),
            });
            skip("alert record", id, open).map(|o| ((r.get(1), r.get(2)), o))
        })
        .collect())
}

/// Alerts the notification policy looks at: firing, no data after firing,
/// and resolved ones whose receivers were told they fire.
pub(crate) async fn notifiable_alerts<C: GenericClient>(c: &C) -> Result<Vec<Alert>> {
    let rows = c
        .query(
            "SELECT id, rule_id, fingerprint, state, labels, annotations, started_at, resolved_at,
                    group_key, notified_status, muted_by, acknowledged_at IS NOT NULL
             FROM alert_records
             WHERE (state IN ('firing', 'nodata') AND fired_at IS NOT NULL)
                OR (state = 'resolved' AND notified_status = 'firing')",
            &[],
        )
        .await
        .map_err(q("loading alerts to notify"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let id: i64 = r.get(0);
            let read = || -> std::result::Result<Alert, String> {
                Ok(Alert {
                    id,
                    rule_id: r.get(1),
                    fingerprint: r.get(2),
                    state: closed(r, 3, AlertState::parse)?,
                    labels: json::<Labels>(r, 4)?,
                    annotations: json::<BTreeMap<String, String>>(r, 5)?,
                    started_at: r.get(6),
                    resolved_at: r.get(7),
                    group_key: r.get::<_, Option<String>>(8).unwrap_or_default(),
                    notified_status: r.get(9),
                    muted_by: r.get(10),
                    acknowledged: r.get(11),
                })
            };
            skip("alert record", id, read())
        })
        .collect())
}

/// Applies a cycle's state changes: inserts, updates and deletions, each
/// one statement whatever the number of alerts.
pub(crate) async fn write_records<C: GenericClient>(
    c: &C,
    writes: &[Write],
    deletes: &[i64],
    now: DateTime<Utc>,
) -> Result<()> {
    let (new, old): (Vec<&Write>, Vec<&Write>) = writes.iter().partition(|w| w.id.is_none());
    if !new.is_empty() {
        c.execute(
            "INSERT INTO alert_records (rule_id, fingerprint, state, severity, value, labels, annotations,
                 started_at, fired_at, resolved_at, keep_firing_since, group_key, last_evaluated_at)
             SELECT rule_id, fingerprint, state, severity, value, labels, annotations,
                 started_at, fired_at, resolved_at, keep_firing_since, group_key, $2
             FROM jsonb_to_recordset($1) AS x(rule_id bigint, fingerprint text, state text,
                 severity text, value float8, labels jsonb, annotations jsonb, started_at timestamptz,
                 fired_at timestamptz, resolved_at timestamptz, keep_firing_since timestamptz,
                 group_key text)
             ON CONFLICT (rule_id, fingerprint) WHERE state IN ('pending', 'firing', 'nodata') DO NOTHING",
            &[&Json(&rows_of(&new)), &now],
        )
        .await
        .map_err(q("inserting new alerts"))?;
    }
    if !old.is_empty() {
        // An empty group_key marks a no-data write: labels, annotations and the
        // last value stay as they were.
        c.execute(
            "UPDATE alert_records r SET
                 state = x.state,
                 value = CASE WHEN x.state = 'nodata' OR x.group_key = '' THEN r.value ELSE x.value END,
                 labels = CASE WHEN x.group_key = '' THEN r.labels ELSE x.labels END,
                 annotations = CASE WHEN x.group_key = '' THEN r.annotations ELSE x.annotations END,
                 group_key = CASE WHEN x.group_key = '' THEN r.group_key ELSE x.group_key END,
                 fired_at = x.fired_at, resolved_at = x.resolved_at,
                 keep_firing_since = x.keep_firing_since, last_evaluated_at = $2
             FROM jsonb_to_recordset($1) AS x(id bigint, state text, value float8, labels jsonb,
                 annotations jsonb, fired_at timestamptz, resolved_at timestamptz,
                 keep_firing_since timestamptz, group_key text)
             WHERE r.id = x.id",
            &[&Json(&rows_of(&old)), &now],
        )
        .await
        .map_err(q("updating alert states"))?;
    }
    if !deletes.is_empty() {
        c.execute(
            "DELETE FROM alert_records WHERE id = ANY($1) AND state = 'pending'",
            &[&deletes],
        )
        .await
        .map_err(q("removing cleared pending alerts"))?;
    }
    Ok(())
}

fn rows_of<'a>(w: &[&'a Write]) -> Vec<&'a Write> {
    w.to_vec()
}
