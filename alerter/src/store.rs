//! The alerter's queries on its own tables, in one place.

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};

use crate::error::{q, Result};
use crate::eval::Write;
use crate::rule::Rule;

/// Columns of `alert_rules` as [`rule_from_row`] reads them.
pub(crate) const RULE_COLUMNS: &str =
    "id, name, description, metric, scope, reduction, window_seconds, \
     comparison, threshold, for_seconds, keep_firing_for_seconds, severity, labels, annotations, \
     repeat_interval_seconds, channels, group_by, enabled";

fn json<T: serde::de::DeserializeOwned + Default>(v: serde_json::Value) -> T {
    // The CHECKs of 0011/0018 fix the JSON shapes; a row edited by hand into
    // another shape reads as empty rather than stopping every evaluation.
    serde_json::from_value(v).unwrap_or_default()
}

/// Maps a row selected with [`RULE_COLUMNS`].
pub(crate) fn rule_from_row(r: &Row) -> Rule {
    Rule {
        id: r.get(0),
        name: r.get(1),
        description: r.get(2),
        metric: r.get(3),
        scope: json(r.get(4)),
        reduction: r.get(5),
        window_seconds: r.get(6),
        comparison: r.get(7),
        threshold: r.get(8),
        for_seconds: r.get(9),
        keep_firing_for_seconds: r.get(10),
        severity: r.get(11),
        labels: json(r.get(12)),
        annotations: json(r.get(13)),
        repeat_interval_seconds: r.get(14),
        channels: json(r.get(15)),
        group_by: json(r.get(16)),
        enabled: r.get(17),
    }
}

/// Rules the evaluator runs.
pub(crate) async fn enabled_rules<C: GenericClient>(c: &C) -> Result<Vec<Rule>> {
    let sql = format!(
        "SELECT {RULE_COLUMNS} FROM alert_rules WHERE enabled AND deleted_at IS NULL ORDER BY id"
    );
    let rows = c.query(&sql, &[]).await.map_err(q("loading alert rules"))?;
    Ok(rows.iter().map(rule_from_row).collect())
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
        let rows = serde_json::to_value(&new).unwrap_or_default();
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
            &[&rows, &now],
        )
        .await
        .map_err(q("inserting new alerts"))?;
    }
    if !old.is_empty() {
        let rows = serde_json::to_value(&old).unwrap_or_default();
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
            &[&rows, &now],
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
