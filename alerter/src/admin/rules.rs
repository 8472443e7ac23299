//! Alert rules: create, replace, read, soft-delete, list.

use std::collections::BTreeMap;

use serde::Deserialize;
use tokio_postgres::types::ToSql;

use super::{invalid, page, page_bounds, Filter, Page, Sql};
use super::{sort_clause, Param};
use crate::error::{q, AlerterError, Result};
use crate::rule::{Channel, Matcher, Rule};
use crate::store::{rule_from_row, RULE_COLUMNS};
use crate::template;

fn d_reduction() -> String {
    "avg".into()
}
fn d_window() -> i32 {
    60
}
fn d_severity() -> String {
    "warning".into()
}
fn d_repeat() -> i32 {
    14_400
}
fn d_group_by() -> Vec<String> {
    vec!["alertname".into()]
}
pub(super) fn d_true() -> bool {
    true
}

/// A rule as the API accepts it (create and full update).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    /// Unique among live rules.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// See [`crate::rule::metric_names`].
    pub metric: String,
    /// Label matchers.
    #[serde(default)]
    pub scope: Vec<Matcher>,
    /// avg (default), min, max, last.
    #[serde(default = "d_reduction")]
    pub reduction: String,
    /// Default 60.
    #[serde(default = "d_window")]
    pub window_seconds: i32,
    /// > >= < <= == !=
    pub comparison: String,
    /// Threshold.
    pub threshold: f64,
    /// Default 0.
    #[serde(default)]
    pub for_seconds: i32,
    /// Default 0.
    #[serde(default)]
    pub keep_firing_for_seconds: i32,
    /// Default warning.
    #[serde(default = "d_severity")]
    pub severity: String,
    /// Extra alert labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotation templates.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Default 14400.
    #[serde(default = "d_repeat")]
    pub repeat_interval_seconds: i32,
    /// Receivers; empty: all enabled webhooks (by filters) plus smtp.default_to.
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// Default ["alertname"].
    #[serde(default = "d_group_by")]
    pub group_by: Vec<String>,
    /// Default true.
    #[serde(default = "d_true")]
    pub enabled: bool,
}

impl RuleInput {
    fn into_rule(self, id: i64) -> Rule {
        Rule {
            id,
            name: self.name,
            description: self.description,
            metric: self.metric,
            scope: self.scope,
            reduction: self.reduction,
            window_seconds: self.window_seconds,
            comparison: self.comparison,
            threshold: self.threshold,
            for_seconds: self.for_seconds,
            keep_firing_for_seconds: self.keep_firing_for_seconds,
            severity: self.severity,
            labels: self.labels,
            annotations: self.annotations,
            repeat_interval_seconds: self.repeat_interval_seconds,
            channels: self.channels,
            group_by: self.group_by,
            enabled: self.enabled,
        }
    }
}

/// Filters, sorting and paging of [`list_rules`].
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleQuery {
    /// Only enabled (true) or disabled (false) rules.
    pub enabled: Option<bool>,
    /// info, warning or critical.
    pub severity: Option<String>,
    /// Exact metric name.
    pub metric: Option<String>,
    /// Case-insensitive substring of the name.
    pub name: Option<String>,
    /// id, name, severity, metric, created_at or updated_at; prefix - for descending. Default name.
    pub sort: Option<String>,
    /// 1..=1000, default 50.
    pub limit: Option<i64>,
    /// Default 0.
    pub offset: Option<i64>,
}

/// Checks a rule completely: fields, templates (parsed and rendered against
/// sample labels) and that named webhooks exist.
async fn check_rule(c: &tokio_postgres::Client, r: &Rule) -> Result<()> {
    let mut e = r.validate();
    if e.is_empty() {
        let mut sample: BTreeMap<String, String> = [
            "host",
            "host_name",
            "gpu",
            "gpu_id",
            "gpu_uuid",
            "model",
            "environment",
            "customer",
            "customer_id",
            "resource_type",
        ]
        .iter()
        .map(|k| (k.to_string(), format!("<{k}>")))
        .collect();
        sample.extend(r.labels.clone());
        sample.insert("alertname".into(), r.name.clone());
        for (k, t) in &r.annotations {
            // Labels outside the sample (e.g. a host's own labels) are fine at save time.
            if let Err(err) = template::render(t, &sample, Some(r.threshold), &r.severity) {
                if !err.starts_with("the alert has no label") {
                    e.push(format!("annotations.{k}: template does not render: {err}"));
                }
            }
        }
    }
    for (i, ch) in r.channels.iter().enumerate() {
        if let Channel::Webhook { webhook_id } = ch {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM webhooks WHERE id = $1 AND deleted_at IS NULL",
                    &[webhook_id],
                )
                .await
                .map_err(q("checking a rule's webhooks"))?
                .get(0);
            if n == 0 {
                e.push(format!("channels[{i}].webhook_id: no webhook {webhook_id}"));
            }
        }
    }
    invalid(e)
}

fn rule_params(r: &Rule) -> Vec<Param> {
    let j = |v: serde_json::Value| -> Param { Box::new(v) };
    vec![
        Box::new(r.name.clone()),
        Box::new(r.description.clone()),
        Box::new(r.metric.clone()),
        j(serde_json::to_value(&r.scope).unwrap_or_default()),
        Box::new(r.reduction.clone()),
        Box::new(r.window_seconds),
        Box::new(r.comparison.clone()),
        Box::new(r.threshold),
        Box::new(r.for_seconds),
        Box::new(r.keep_firing_for_seconds),
        Box::new(r.severity.clone()),
        j(serde_json::to_value(&r.labels).unwrap_or_default()),
        j(serde_json::to_value(&r.annotations).unwrap_or_default()),
        Box::new(r.repeat_interval_seconds),
        j(serde_json::to_value(&r.channels).unwrap_or_default()),
        j(serde_json::to_value(&r.group_by).unwrap_or_default()),
        Box::new(r.enabled),
    ]
}

/// Creates a rule after validating all of it.
pub async fn create_rule(
    pool: &gpuwatch_store::Pool,
    input: RuleInput,
    created_by: Option<&str>,
) -> Result<Rule> {
    let rule = input.into_rule(0);
    let c = pool.get().await?;
    check_rule(&c, &rule).await?;
    let mut p = rule_params(&rule);
    p.push(Box::new(created_by.map(str::to_string)));
    let refs: Vec<&(dyn ToSql + Sync)> = p
        .iter()
        .map(|x| x.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let row = c
        .query_one(
            &format!(
                "INSERT INTO alert_rules (name, description, metric, scope, reduction, window_seconds, comparison,
                     threshold, for_seconds, keep_firing_for_seconds, severity, labels, annotations,
                     repeat_interval_seconds, channels, group_by, enabled, created_by)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18) RETURNING {RULE_COLUMNS}"
            ),
            &refs,
        )
        .await
        .map_err(q("creating an alert rule"))?;
    Ok(rule_from_row(&row))
}

/// Replaces a live rule.
pub async fn update_rule(pool: &gpuwatch_store::Pool, id: i64, input: RuleInput) -> Result<Rule> {
    let rule = input.into_rule(id);
    let c = pool.get().await?;
    check_rule(&c, &rule).await?;
    let mut p = rule_params(&rule);
    p.push(Box::new(id));
    let refs: Vec<&(dyn ToSql + Sync)> = p
        .iter()
        .map(|x| x.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let row = c
        .query_opt(
            &format!(
                "UPDATE alert_rules SET name=$1, description=$2, metric=$3, scope=$4, reduction=$5,
                     window_seconds=$6, comparison=$7, threshold=$8, for_seconds=$9, keep_firing_for_seconds=$10,
                     severity=$11, labels=$12, annotations=$13, repeat_interval_seconds=$14, channels=$15,
                     group_by=$16, enabled=$17
                 WHERE id = $18 AND deleted_at IS NULL RETURNING {RULE_COLUMNS}"
            ),
            &refs,
        )
        .await
        .map_err(q("updating an alert rule"))?;
    row.map(|r| rule_from_row(&r))
        .ok_or_else(|| AlerterError::NotFound(format!("alert rule {id}")))
}

/// One live rule.
pub async fn get_rule(pool: &gpuwatch_store::Pool, id: i64) -> Result<Rule> {
    let c = pool.get().await?;
    c.query_opt(
        &format!("SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = $1 AND deleted_at IS NULL"),
        &[&id],
    )
    .await
    .map_err(q("reading an alert rule"))?
    .map(|r| rule_from_row(&r))
    .ok_or_else(|| AlerterError::NotFound(format!("alert rule {id}")))
}

/// Soft-deletes a rule; its open alerts resolve at the next evaluation.
pub async fn delete_rule(pool: &gpuwatch_store::Pool, id: i64) -> Result<()> {
    let c = pool.get().await?;
    let n = c
        .execute("UPDATE alert_rules SET deleted_at = now(), enabled = false WHERE id = $1 AND deleted_at IS NULL", &[&id])
        .await
        .map_err(q("deleting an alert rule"))?;
    if n == 0 {
        return Err(AlerterError::NotFound(format!("alert rule {id}")));
    }
    Ok(())
}

/// Live rules, filtered, sorted and paged.
pub async fn list_rules(pool: &gpuwatch_store::Pool, query: RuleQuery) -> Result<Page<Rule>> {
    let mut e = Vec::new();
    let bounds = page_bounds(query.limit, query.offset, &mut e);
    let order = sort_clause(
        query.sort.as_deref(),
        &[
            "id",
            "name",
            "severity",
            "metric",
            "created_at",
            "updated_at",
        ],
        "name",
        &mut e,
    );
    if let Some(s) = &query.severity {
        if !matches!(s.as_str(), "info" | "warning" | "critical") {
            e.push(format!(
                "severity: must be info, warning or critical, got {s:?}"
            ));
        }
    }
    invalid(e)?;
    let mut f = Filter::default();
    f.fixed("deleted_at IS NULL");
    if let Some(v) = query.enabled {
        f.add("enabled = ?", v);
    }
    if let Some(v) = query.severity {
        f.add("severity = ?", v);
    }
    if let Some(v) = query.metric {
        f.add("metric = ?", v);
    }
    if let Some(v) = query.name {
        let pattern = format!(
            "%{}%",
            v.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        f.add("name ILIKE ?", pattern);
    }
    let from = format!("alert_rules WHERE {}", f.sql());
    page(
        pool,
        Sql(RULE_COLUMNS, &from, &order),
        &f,
        bounds,
        rule_from_row,
        "listing alert rules",
    )
    .await
}
