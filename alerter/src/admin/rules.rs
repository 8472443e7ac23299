//! Alert rules: create, replace, read, soft-delete, list.

use std::collections::BTreeMap;

use gpuwatch_store::listing::{self, Filter, Param, Source};
use serde::Deserialize;
use tokio_postgres::types::{Json, ToSql};

use super::{invalid, skip_unreadable, Page};
use crate::error::{q, AlerterError, Result};
use crate::rule::{parse_field, Channel, Comparison, Matcher, Reduction, Rule, Severity};
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
    /// Label matchers: a list, or Alertmanager's text (`{gpu=~"0|1"}`).
    #[serde(
        default,
        deserialize_with = "gpuwatch_store::matcher::deserialize_list"
    )]
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
    /// Parses the closed sets once and checks every field; all problems are
    /// reported together, each naming its field.
    fn into_rule(self, id: i64) -> (Rule, Vec<String>) {
        let mut e = Vec::new();
        let reduction = parse_field(
            Reduction::parse,
            &self.reduction,
            Reduction::Avg,
            || {
                format!(
                    "reduction: must be avg, min, max or last, got {:?}",
                    self.reduction
                )
            },
            &mut e,
        );
        let comparison = parse_field(
            Comparison::parse,
            &self.comparison,
            Comparison::Gt,
            || {
                format!(
                    "comparison: must be one of > >= < <= == !=, got {:?}",
                    self.comparison
                )
            },
            &mut e,
        );
        let severity = parse_field(
            Severity::parse,
            &self.severity,
            Severity::Warning,
            || {
                format!(
                    "severity: must be info, warning or critical, got {:?}",
                    self.severity
                )
            },
            &mut e,
        );
        let rule = Rule {
            id,
            name: self.name,
            description: self.description,
            metric: self.metric,
            scope: self.scope,
            reduction,
            window_seconds: self.window_seconds,
            comparison,
            threshold: self.threshold,
            for_seconds: self.for_seconds,
            keep_firing_for_seconds: self.keep_firing_for_seconds,
            severity,
            labels: self.labels,
            annotations: self.annotations,
            repeat_interval_seconds: self.repeat_interval_seconds,
            channels: self.channels,
            group_by: self.group_by,
            enabled: self.enabled,
        };
        e.extend(rule.validate());
        (rule, e)
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
async fn check_rule(c: &tokio_postgres::Client, input: RuleInput, id: i64) -> Result<Rule> {
    let (rule, mut e) = input.into_rule(id);
    let r = &rule;
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
            let details = BTreeMap::new();
            if let Err(err) =
                template::render(t, &sample, &details, Some(r.threshold), r.severity.as_str())
            {
                if !err.starts_with("the alert has no label")
                    && !err.starts_with("the alert has no detail")
                {
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
    invalid(e)?;
    Ok(rule)
}

fn rule_params(r: &Rule) -> Vec<Param> {
    vec![
        Box::new(r.name.clone()),
        Box::new(r.description.clone()),
        Box::new(r.metric.clone()),
        Box::new(Json(r.scope.clone())),
        Box::new(r.reduction.as_str()),
        Box::new(r.window_seconds),
        Box::new(r.comparison.as_str()),
        Box::new(r.threshold),
        Box::new(r.for_seconds),
        Box::new(r.keep_firing_for_seconds),
        Box::new(r.severity.as_str()),
        Box::new(Json(r.labels.clone())),
        Box::new(Json(r.annotations.clone())),
        Box::new(r.repeat_interval_seconds),
        Box::new(Json(r.channels.clone())),
        Box::new(Json(r.group_by.clone())),
        Box::new(r.enabled),
    ]
}

/// Creates a rule after validating all of it.
pub async fn create_rule(
    pool: &gpuwatch_store::Pool,
    input: RuleInput,
    created_by: Option<&str>,
) -> Result<Rule> {
    let c = pool.get().await?;
    let rule = check_rule(&c, input, 0).await?;
    let mut p = rule_params(&rule);
    p.push(Box::new(created_by.map(str::to_string)));
    let row = c
        .query_one(
            &format!(
                "INSERT INTO alert_rules (name, description, metric, scope, reduction, window_seconds, comparison,
                     threshold, for_seconds, keep_firing_for_seconds, severity, labels, annotations,
                     repeat_interval_seconds, channels, group_by, enabled, created_by)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18) RETURNING {RULE_COLUMNS}"
            ),
            &refs(&p),
        )
        .await
        .map_err(q("creating an alert rule"))?;
    readable(&row)
}

/// Replaces a live rule.
pub async fn update_rule(pool: &gpuwatch_store::Pool, id: i64, input: RuleInput) -> Result<Rule> {
    let c = pool.get().await?;
    let rule = check_rule(&c, input, id).await?;
    let mut p = rule_params(&rule);
    p.push(Box::new(id));
    let row = c
        .query_opt(
            &format!(
                "UPDATE alert_rules SET name=$1, description=$2, metric=$3, scope=$4, reduction=$5,
                     window_seconds=$6, comparison=$7, threshold=$8, for_seconds=$9, keep_firing_for_seconds=$10,
                     severity=$11, labels=$12, annotations=$13, repeat_interval_seconds=$14, channels=$15,
                     group_by=$16, enabled=$17
                 WHERE id = $18 AND deleted_at IS NULL RETURNING {RULE_COLUMNS}"
            ),
            &refs(&p),
        )
        .await
        .map_err(q("updating an alert rule"))?;
    row.map(|r| readable(&r))
        .ok_or_else(|| AlerterError::NotFound(format!("alert rule {id}")))?
}

fn refs(p: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    p.iter()
        .map(|x| x.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// A rule row read back; one edited by hand past the API into a shape that
/// does not parse is an error that names it, never a rule with defaults.
fn readable(r: &tokio_postgres::Row) -> Result<Rule> {
    rule_from_row(r).map_err(AlerterError::Unreadable)
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
    .map(|r| readable(&r))
    .ok_or_else(|| AlerterError::NotFound(format!("alert rule {id}")))?
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

/// Live rules, filtered, sorted and paged. A row that does not parse is
/// logged and left out of the page (it still counts in `total`).
pub async fn list_rules(pool: &gpuwatch_store::Pool, query: RuleQuery) -> Result<Page<Rule>> {
    let mut e = Vec::new();
    let bounds = listing::bounds(query.limit, query.offset, &mut e);
    let order = listing::order_by(
        query.sort.as_deref(),
        &[
            ("id", "id"),
            ("name", "name"),
            ("severity", "severity"),
            ("metric", "metric"),
            ("created_at", "created_at"),
            ("updated_at", "updated_at"),
        ],
        "name",
        "id",
        &mut e,
    );
    if let Some(s) = &query.severity {
        if Severity::parse(s).is_none() {
            e.push(format!(
                "severity: must be info, warning or critical, got {s:?}"
            ));
        }
    }
    invalid(e)?;
    let mut f = Filter::default();
    f.raw("deleted_at IS NULL");
    f.opt("enabled = $?", query.enabled);
    f.opt("severity = $?", query.severity);
    f.opt("metric = $?", query.metric);
    if let Some(v) = query.name {
        let pattern = format!(
            "%{}%",
            v.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        f.add("name ILIKE $?", pattern);
    }
    let source = Source {
        what: "alert rules",
        from: "alert_rules",
        columns: RULE_COLUMNS,
    };
    let page = listing::fetch(pool, &source, &f, &order, bounds, rule_from_row).await?;
    Ok(skip_unreadable(page, "alert rule"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_every_bad_field() {
        let input: RuleInput = serde_json::from_value(serde_json::json!({
            "name": "Hot", "metric": "gpu.nope", "comparison": "=>", "threshold": 85,
            "annotations": {"summary": "{{ $labels.host"}
        }))
        .unwrap();
        let (_, e) = input.into_rule(1);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e
            .iter()
            .any(|m| m.starts_with("annotations.summary: template")));
    }
}
