//! What the REST API calls: alert rules, silences and webhooks CRUD with
//! pagination and filters, alert listings, notification dead letters and
//! their replay. Inputs are `deny_unknown_fields` serde structs; outputs
//! serialise to JSON; a webhook's secret is write-only and never output.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;

use crate::error::{q, AlerterError, Result};
use crate::rule::{Channel, Matcher, Rule};
use crate::store::{rule_from_row, RULE_COLUMNS};
use crate::template;

type Param = Box<dyn ToSql + Sync + Send>;

/// A page of results.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// This page.
    pub items: Vec<T>,
    /// Matching rows in all.
    pub total: i64,
    /// Page size asked for.
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
}

/// WHERE clauses and their parameters, numbered as they are added.
#[derive(Default)]
struct Filter {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Filter {
    fn add(&mut self, clause: &str, p: impl ToSql + Sync + Send + 'static) {
        self.params.push(Box::new(p));
        self.clauses
            .push(clause.replace('?', &format!("${}", self.params.len())));
    }
    fn fixed(&mut self, clause: &str) {
        self.clauses.push(clause.to_string());
    }
    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "TRUE".into()
        } else {
            self.clauses.join(" AND ")
        }
    }
    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

fn page_bounds(limit: Option<i64>, offset: Option<i64>, errors: &mut Vec<String>) -> (i64, i64) {
    let limit = limit.unwrap_or(50);
    let offset = offset.unwrap_or(0);
    if !(1..=1000).contains(&limit) {
        errors.push(format!("limit: must be between 1 and 1000, got {limit}"));
    }
    if offset < 0 {
        errors.push(format!("offset: must not be negative, got {offset}"));
    }
    (limit, offset)
}

fn sort_clause(
    sort: Option<&str>,
    allowed: &[&str],
    default: &str,
    errors: &mut Vec<String>,
) -> String {
    let s = sort.unwrap_or(default);
    let (col, dir) = match s.strip_prefix('-') {
        Some(c) => (c, "DESC"),
        None => (s, "ASC"),
    };
    if !allowed.contains(&col) {
        errors.push(format!(
            "sort: must be one of {} (prefix - for descending), got {s:?}",
            allowed.join(", ")
        ));
        return "id ASC".into();
    }
    format!("{col} {dir}, id ASC")
}

fn invalid(errors: Vec<String>) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AlerterError::Invalid(errors))
    }
}

/// The parts of a paged SELECT: columns, `FROM … WHERE …`, ORDER BY.
struct Sql<'a>(&'a str, &'a str, &'a str);

async fn page<T>(
    pool: &gpuwatch_store::Pool,
    Sql(select, from_where, order): Sql<'_>,
    f: &Filter,
    (limit, offset): (i64, i64),
    map: impl Fn(&tokio_postgres::Row) -> T,
    what: &'static str,
) -> Result<Page<T>> {
    let c = pool.get().await?;
    let n = f.params.len();
    let total: i64 = c
        .query_one(&format!("SELECT count(*) FROM {from_where}"), &f.refs())
        .await
        .map_err(q(what))?
        .get(0);
    let mut refs = f.refs();
    refs.push(&limit);
    refs.push(&offset);
    let rows = c
        .query(
            &format!(
                "SELECT {select} FROM {from_where} ORDER BY {order} LIMIT ${} OFFSET ${}",
                n + 1,
                n + 2
            ),
            &refs,
        )
        .await
        .map_err(q(what))?;
    Ok(Page {
        items: rows.iter().map(map).collect(),
        total,
        limit,
        offset,
    })
}

// ---------------------------------------------------------------- rules

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
fn d_true() -> bool {
    true
}

/// A rule as the API accepts it (create and full update).
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
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

// ---------------------------------------------------------------- silences

/// A silence as the API accepts it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceInput {
    /// Alerts matching all of these are silenced.
    pub matchers: Vec<Matcher>,
    /// Default now.
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    /// Must be after starts_at.
    pub ends_at: DateTime<Utc>,
    /// Who silenced.
    pub created_by: String,
    /// Why.
    #[serde(default)]
    pub comment: String,
}

/// A stored silence.
#[derive(Debug, Clone, Serialize)]
pub struct Silence {
    /// `silences.id`
    pub id: i64,
    /// Matchers.
    pub matchers: Vec<Matcher>,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Author.
    pub created_by: String,
    /// Comment.
    pub comment: String,
    /// pending, active or expired (at read time).
    pub state: String,
}

/// Filters and paging of [`list_silences`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceQuery {
    /// pending, active, expired; default all.
    pub state: Option<String>,
    /// 1..=1000, default 50.
    pub limit: Option<i64>,
    /// Default 0.
    pub offset: Option<i64>,
}

const SILENCE_COLUMNS: &str = "id, matchers, starts_at, ends_at, created_by, comment, \
     CASE WHEN now() < starts_at THEN 'pending' WHEN now() < ends_at THEN 'active' ELSE 'expired' END";

fn silence_from_row(r: &tokio_postgres::Row) -> Silence {
    Silence {
        id: r.get(0),
        matchers: serde_json::from_value(r.get(1)).unwrap_or_default(),
        starts_at: r.get(2),
        ends_at: r.get(3),
        created_by: r.get(4),
        comment: r.get(5),
        state: r.get(6),
    }
}

fn check_silence(s: &SilenceInput) -> Result<DateTime<Utc>> {
    let mut e = Vec::new();
    if s.matchers.is_empty() {
        e.push(
            "matchers: at least one matcher is needed (a silence of everything is refused)".into(),
        );
    }
    for (i, m) in s.matchers.iter().enumerate() {
        m.check(&format!("matchers[{i}]"), &mut e);
    }
    let starts = s.starts_at.unwrap_or_else(Utc::now);
    if s.ends_at <= starts {
        e.push("ends_at: must be after starts_at".into());
    }
    if s.created_by.trim().is_empty() {
        e.push("created_by: must name the author".into());
    }
    invalid(e)?;
    Ok(starts)
}

/// Creates a silence.
pub async fn create_silence(pool: &gpuwatch_store::Pool, s: SilenceInput) -> Result<Silence> {
    let starts = check_silence(&s)?;
    let c = pool.get().await?;
    let row = c
        .query_one(
            &format!("INSERT INTO silences (matchers, starts_at, ends_at, created_by, comment) VALUES ($1, $2, $3, $4, $5) RETURNING {SILENCE_COLUMNS}"),
            &[&serde_json::to_value(&s.matchers).unwrap_or_default(), &starts, &s.ends_at, &s.created_by, &s.comment],
        )
        .await
        .map_err(q("creating a silence"))?;
    Ok(silence_from_row(&row))
}

/// Replaces a silence.
pub async fn update_silence(
    pool: &gpuwatch_store::Pool,
    id: i64,
    s: SilenceInput,
) -> Result<Silence> {
    let starts = check_silence(&s)?;
    let c = pool.get().await?;
    c.query_opt(
        &format!("UPDATE silences SET matchers = $1, starts_at = $2, ends_at = $3, created_by = $4, comment = $5 WHERE id = $6 AND deleted_at IS NULL RETURNING {SILENCE_COLUMNS}"),
        &[&serde_json::to_value(&s.matchers).unwrap_or_default(), &starts, &s.ends_at, &s.created_by, &s.comment, &id],
    )
    .await
    .map_err(q("updating a silence"))?
    .map(|r| silence_from_row(&r))
    .ok_or_else(|| AlerterError::NotFound(format!("silence {id}")))
}

/// One silence.
pub async fn get_silence(pool: &gpuwatch_store::Pool, id: i64) -> Result<Silence> {
    let c = pool.get().await?;
    c.query_opt(
        &format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE id = $1 AND deleted_at IS NULL"),
        &[&id],
    )
    .await
    .map_err(q("reading a silence"))?
    .map(|r| silence_from_row(&r))
    .ok_or_else(|| AlerterError::NotFound(format!("silence {id}")))
}

/// Deletes a silence (muted alerts are notified at their group's next flush).
pub async fn delete_silence(pool: &gpuwatch_store::Pool, id: i64) -> Result<()> {
    let c = pool.get().await?;
    let n = c
        .execute(
            "UPDATE silences SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL",
            &[&id],
        )
        .await
        .map_err(q("deleting a silence"))?;
    if n == 0 {
        return Err(AlerterError::NotFound(format!("silence {id}")));
    }
    Ok(())
}

/// Silences by state, newest end first.
pub async fn list_silences(
    pool: &gpuwatch_store::Pool,
    query: SilenceQuery,
) -> Result<Page<Silence>> {
    let mut e = Vec::new();
    let bounds = page_bounds(query.limit, query.offset, &mut e);
    let mut f = Filter::default();
    f.fixed("deleted_at IS NULL");
    match query.state.as_deref() {
        None | Some("all") => {}
        Some("active") => f.fixed("starts_at <= now() AND ends_at > now()"),
        Some("pending") => f.fixed("starts_at > now()"),
        Some("expired") => f.fixed("ends_at <= now()"),
        Some(s) => e.push(format!(
            "state: must be active, pending, expired or all, got {s:?}"
        )),
    }
    invalid(e)?;
    let from = format!("silences WHERE {}", f.sql());
    page(
        pool,
        Sql(SILENCE_COLUMNS, &from, "ends_at DESC, id"),
        &f,
        bounds,
        silence_from_row,
        "listing silences",
    )
    .await
}

// ---------------------------------------------------------------- webhooks

/// A webhook as the API accepts it. `secret` is write-only: on update,
/// absent keeps the stored one and "" removes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// Display name (the v4 body's receiver).
    pub name: String,
    /// http(s) endpoint.
    pub url: String,
    /// Standard Webhooks secret (`whsec_<base64>`) or any string.
    #[serde(default)]
    pub secret: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// For rules without channels: label → value or [values] the group must have.
    #[serde(default)]
    pub filters: serde_json::Map<String, serde_json::Value>,
    /// Default true.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Default 10000.
    #[serde(default)]
    pub timeout_ms: Option<i32>,
    /// Default 8.
    #[serde(default)]
    pub max_attempts: Option<i32>,
}

/// A webhook as output: never the secret, only whether one is set.
#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    /// `webhooks.id`
    pub id: i64,
    /// Name.
    pub name: String,
    /// Endpoint.
    pub url: String,
    /// Whether requests are signed.
    pub has_secret: bool,
    /// Extra headers.
    pub headers: serde_json::Value,
    /// Filters.
    pub filters: serde_json::Value,
    /// Enabled.
    pub enabled: bool,
    /// Request timeout.
    pub timeout_ms: i32,
    /// Attempts before the dead letter.
    pub max_attempts: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

const WEBHOOK_COLUMNS: &str = "id, name, url, secret IS NOT NULL AND secret <> '', headers, filters, enabled, timeout_ms, max_attempts, created_at, updated_at";

fn webhook_from_row(r: &tokio_postgres::Row) -> Webhook {
    Webhook {
        id: r.get(0),
        name: r.get(1),
        url: r.get(2),
        has_secret: r.get(3),
        headers: r.get(4),
        filters: r.get(5),
        enabled: r.get(6),
        timeout_ms: r.get(7),
        max_attempts: r.get(8),
        created_at: r.get(9),
        updated_at: r.get(10),
    }
}

fn check_webhook(w: &WebhookInput) -> Result<()> {
    let mut e = Vec::new();
    if w.name.trim().is_empty() || w.name.len() > 128 {
        e.push("name: must be 1 to 128 characters".into());
    }
    match reqwest::Url::parse(&w.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => e.push(format!(
            "url: must be an http:// or https:// URL, got {:?}",
            w.url
        )),
    }
    if let Some(s) = &w.secret {
        if s.len() > 256 {
            e.push("secret: at most 256 characters".into());
        }
    }
    if let Some(t) = w.timeout_ms {
        if !(1..=600_000).contains(&t) {
            e.push(format!("timeout_ms: must be between 1 and 600000, got {t}"));
        }
    }
    if let Some(m) = w.max_attempts {
        if !(1..=1000).contains(&m) {
            e.push(format!("max_attempts: must be between 1 and 1000, got {m}"));
        }
    }
    for (k, v) in &w.filters {
        let ok = v.is_string()
            || v.as_array()
                .is_some_and(|a| a.iter().all(|x| x.is_string()));
        if !ok {
            e.push(format!(
                "filters.{k}: must be a string or a list of strings"
            ));
        }
    }
    for k in w.headers.keys() {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            e.push(format!("headers: {k:?} is not a valid header name"));
        }
    }
    invalid(e)
}

/// Creates a webhook; `defaults` gives timeout and attempts when not set.
pub async fn create_webhook(
    pool: &gpuwatch_store::Pool,
    w: WebhookInput,
    defaults: &crate::WebhookConfig,
    created_by: Option<&str>,
) -> Result<Webhook> {
    check_webhook(&w)?;
    let c = pool.get().await?;
    let timeout = w
        .timeout_ms
        .unwrap_or((defaults.timeout_secs * 1000.0) as i32);
    let attempts = w.max_attempts.unwrap_or(defaults.max_attempts);
    let row = c
        .query_one(
            &format!(
                "INSERT INTO webhooks (name, url, secret, headers, filters, enabled, timeout_ms, max_attempts, created_by)
                 VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $7, $8, $9) RETURNING {WEBHOOK_COLUMNS}"
            ),
            &[&w.name, &w.url, &w.secret, &serde_json::to_value(&w.headers).unwrap_or_default(),
              &serde_json::Value::Object(w.filters), &w.enabled, &timeout, &attempts, &created_by],
        )
        .await
        .map_err(q("creating a webhook"))?;
    Ok(webhook_from_row(&row))
}

/// Replaces a webhook; an absent secret keeps the stored one.
pub async fn update_webhook(
    pool: &gpuwatch_store::Pool,
    id: i64,
    w: WebhookInput,
) -> Result<Webhook> {
    check_webhook(&w)?;
    let c = pool.get().await?;
    c.query_opt(
        &format!(
            "UPDATE webhooks SET name = $1, url = $2,
                 secret = CASE WHEN $3::text IS NULL THEN secret ELSE NULLIF($3::text, '') END,
                 headers = $4, filters = $5, enabled = $6,
                 timeout_ms = COALESCE($7, timeout_ms), max_attempts = COALESCE($8, max_attempts)
             WHERE id = $9 AND deleted_at IS NULL RETURNING {WEBHOOK_COLUMNS}"
        ),
        &[
            &w.name,
            &w.url,
            &w.secret,
            &serde_json::to_value(&w.headers).unwrap_or_default(),
            &serde_json::Value::Object(w.filters),
            &w.enabled,
            &w.timeout_ms,
            &w.max_attempts,
            &id,
        ],
    )
    .await
    .map_err(q("updating a webhook"))?
    .map(|r| webhook_from_row(&r))
    .ok_or_else(|| AlerterError::NotFound(format!("webhook {id}")))
}

/// One webhook (without its secret).
pub async fn get_webhook(pool: &gpuwatch_store::Pool, id: i64) -> Result<Webhook> {
    let c = pool.get().await?;
    c.query_opt(
        &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND deleted_at IS NULL"),
        &[&id],
    )
    .await
    .map_err(q("reading a webhook"))?
    .map(|r| webhook_from_row(&r))
    .ok_or_else(|| AlerterError::NotFound(format!("webhook {id}")))
}

/// Soft-deletes a webhook; its queued notifications dead-letter.
pub async fn delete_webhook(pool: &gpuwatch_store::Pool, id: i64) -> Result<()> {
    let c = pool.get().await?;
    let n = c
        .execute("UPDATE webhooks SET deleted_at = now(), enabled = false WHERE id = $1 AND deleted_at IS NULL", &[&id])
        .await
        .map_err(q("deleting a webhook"))?;
    if n == 0 {
        return Err(AlerterError::NotFound(format!("webhook {id}")));
    }
    Ok(())
}

/// Paging of [`list_webhooks`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookQuery {
    /// Only enabled or disabled ones.
    pub enabled: Option<bool>,
    /// 1..=1000, default 50.
    pub limit: Option<i64>,
    /// Default 0.
    pub offset: Option<i64>,
}

/// Live webhooks by name.
pub async fn list_webhooks(
    pool: &gpuwatch_store::Pool,
    query: WebhookQuery,
) -> Result<Page<Webhook>> {
    let mut e = Vec::new();
    let bounds = page_bounds(query.limit, query.offset, &mut e);
    invalid(e)?;
    let mut f = Filter::default();
    f.fixed("deleted_at IS NULL");
    if let Some(v) = query.enabled {
        f.add("enabled = ?", v);
    }
    let from = format!("webhooks WHERE {}", f.sql());
    page(
        pool,
        Sql(WEBHOOK_COLUMNS, &from, "name, id"),
        &f,
        bounds,
        webhook_from_row,
        "listing webhooks",
    )
    .await
}

// ---------------------------------------------------------------- alerts

/// Filters and paging of [`list_active_alerts`] and [`alert_history`].
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Serialize)]
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
    pub state: String,
    /// Severity.
    pub severity: String,
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
}

const ALERT_COLUMNS: &str =
    "a.id, a.rule_id, r.name, a.fingerprint, a.state, a.severity, a.value, a.labels, \
     a.annotations, a.started_at, a.fired_at, a.resolved_at, a.muted_by, a.notified_status";

fn alert_from_row(r: &tokio_postgres::Row) -> AlertRecord {
    AlertRecord {
        id: r.get(0),
        rule_id: r.get(1),
        rule_name: r.get(2),
        fingerprint: r.get(3),
        state: r.get(4),
        severity: r.get(5),
        value: r.get(6),
        labels: r.get(7),
        annotations: r.get(8),
        started_at: r.get(9),
        fired_at: r.get(10),
        resolved_at: r.get(11),
        muted_by: r.get(12),
        notified_status: r.get(13),
    }
}

async fn alerts(
    pool: &gpuwatch_store::Pool,
    query: AlertQuery,
    active_only: bool,
) -> Result<Page<AlertRecord>> {
    let mut e = Vec::new();
    let bounds = page_bounds(query.limit, query.offset, &mut e);
    let mut f = Filter::default();
    if active_only {
        f.fixed("a.state IN ('pending', 'firing', 'nodata')");
    }
    if let Some(s) = query.state {
        if !matches!(s.as_str(), "pending" | "firing" | "nodata" | "resolved") {
            e.push(format!(
                "state: must be pending, firing, nodata or resolved, got {s:?}"
            ));
        }
        f.add("a.state = ?", s);
    }
    if let Some(s) = query.severity {
        f.add("a.severity = ?", s);
    }
    if let Some(v) = query.rule_id {
        f.add("a.rule_id = ?", v);
    }
    if let Some(h) = query.host {
        f.add("a.labels @> jsonb_build_object('host', ?::text)", h);
    }
    if let Some(t) = query.since {
        f.add("a.started_at >= ?", t);
    }
    if let Some(t) = query.until {
        f.add("a.started_at < ?", t);
    }
    invalid(e)?;
    let from = format!(
        "alert_records a JOIN alert_rules r ON r.id = a.rule_id WHERE {}",
        f.sql()
    );
    page(
        pool,
        Sql(ALERT_COLUMNS, &from, "a.started_at DESC, a.id"),
        &f,
        bounds,
        alert_from_row,
        "listing alerts",
    )
    .await
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

// ---------------------------------------------------------------- notifications

/// An outbox row.
#[derive(Debug, Clone, Serialize)]
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
}

/// Filters and paging of [`list_notifications`].
#[derive(Debug, Clone, Default, Deserialize)]
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
    let bounds = page_bounds(query.limit, query.offset, &mut e);
    let mut f = Filter::default();
    if let Some(s) = query.status {
        if !matches!(s.as_str(), "pending" | "delivered" | "dead") {
            e.push(format!(
                "status: must be pending, delivered or dead, got {s:?}"
            ));
        }
        f.add("status = ?", s);
    }
    invalid(e)?;
    let from = format!("alert_outbox WHERE {}", f.sql());
    page(
        pool,
        Sql(
            "id::text, channel, webhook_id, status, attempts, last_error, created_at, delivered_at",
            &from,
            "created_at DESC, id",
        ),
        &f,
        bounds,
        |r| Notification {
            id: r.get(0),
            channel: r.get(1),
            webhook_id: r.get(2),
            status: r.get(3),
            attempts: r.get(4),
            last_error: r.get(5),
            created_at: r.get(6),
            delivered_at: r.get(7),
        },
        "listing notifications",
    )
    .await
}

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
                "UPDATE alert_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL
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
