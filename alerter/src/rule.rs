//! The rule model shared by the evaluator and the admin functions: metrics
//! a rule may watch, label matchers, channels, and a rule's validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::template;
use gpuwatch_store::{EnvSample, GpuSample, HostSample, Sample};

/// The columns of a raw metric table a rule may watch: every column the
/// batch writer stores, except the series keys, the time, and `xid_last`
/// (watched as `gpu.xid_errors`). Taken from the store's row types so a new
/// column is watchable as soon as it is stored.
fn watchable(columns: &'static [&'static str]) -> impl Iterator<Item = &'static str> {
    columns.iter().copied().filter(|c| {
        !matches!(
            *c,
            "gpu_id" | "host_id" | "env_id" | "collected_at" | "xid_last"
        )
    })
}

const GPU_COLUMNS: &[&str] = GpuSample::COLUMNS;
const HOST_COLUMNS: &[&str] = HostSample::COLUMNS;
const ENV_COLUMNS: &[&str] = EnvSample::COLUMNS;

/// Where a metric's series come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A column of `gpu_metrics`.
    Gpu(&'static str),
    /// A column of `host_metrics`.
    Host(&'static str),
    /// A column of `environment_metrics`.
    Env(&'static str),
    /// Seconds since `hosts.last_heartbeat`.
    HeartbeatAge,
    /// Samples with an XID in the window, per GPU.
    XidErrors,
    /// `gpuwatch_quota_usage.used_pct` (when the billing view exists).
    QuotaUsedPct,
    /// A column of the replication views of migration 0025.
    Replication(&'static str),
}

/// The database's replication, watched through the views of migration 0025:
/// (metric name, column).
const REPLICATION: &[(&str, &str)] = &[
    ("db.replication_lag_seconds", "lag_seconds"),
    ("db.replication_lag_bytes", "lag_bytes"),
    ("db.standbys_missing", "missing"),
];

/// Resolves a metric name to its source; `None` if unknown.
pub fn source(metric: &str) -> Option<Source> {
    let find = |cols: &'static [&'static str], c: &str| watchable(cols).find(|x| *x == c);
    match metric {
        "host.heartbeat_age" => Some(Source::HeartbeatAge),
        "gpu.xid_errors" => Some(Source::XidErrors),
        "quota.used_pct" => Some(Source::QuotaUsedPct),
        _ if metric.starts_with("db.") => REPLICATION
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, col)| Source::Replication(col)),
        _ => {
            let (family, col) = metric.split_once('.')?;
            match family {
                "gpu" => find(GPU_COLUMNS, col).map(Source::Gpu),
                "host" => find(HOST_COLUMNS, col).map(Source::Host),
                "environment" => find(ENV_COLUMNS, col).map(Source::Env),
                _ => None,
            }
        }
    }
}

/// Every metric name a rule may use.
pub fn metric_names() -> Vec<String> {
    let mut v: Vec<String> = watchable(GPU_COLUMNS).map(|c| format!("gpu.{c}")).collect();
    v.extend(watchable(HOST_COLUMNS).map(|c| format!("host.{c}")));
    v.extend(watchable(ENV_COLUMNS).map(|c| format!("environment.{c}")));
    v.extend(["host.heartbeat_age", "gpu.xid_errors", "quota.used_pct"].map(String::from));
    v.extend(REPLICATION.iter().map(|(m, _)| m.to_string()));
    v
}

/// One label matcher: `name op value`, op `=` (default) or `!=`. A missing
/// label reads as "", as in Alertmanager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// "=" or "!=".
    #[serde(default = "eq")]
    pub op: String,
    /// Value compared with.
    pub value: String,
}

fn eq() -> String {
    "=".into()
}

impl Matcher {
    /// Whether a label set satisfies this matcher.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        (v == self.value) == (self.op == "=")
    }

    /// Problems with this matcher, naming `field`.
    pub fn check(&self, field: &str, errors: &mut Vec<String>) {
        if self.name.is_empty() {
            errors.push(format!("{field}.name: must not be empty"));
        }
        if self.op != "=" && self.op != "!=" {
            errors.push(format!(
                "{field}.op: must be \"=\" or \"!=\", got {:?}",
                self.op
            ));
        }
    }
}

/// Whether every matcher holds.
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Where a rule's notifications go.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Channel {
    /// A row of `webhooks`.
    Webhook {
        /// `webhooks.id`
        webhook_id: i64,
    },
    /// E-mail to these addresses.
    Email {
        /// Recipients.
        to: Vec<String>,
    },
}

/// A rule as stored (what the evaluator runs and the API returns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rule {
    /// `alert_rules.id`
    pub id: i64,
    /// Unique among live rules; the `alertname` label.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// e.g. "gpu.temperature"; see [`metric_names`].
    pub metric: String,
    /// Label matchers selecting the series.
    pub scope: Vec<Matcher>,
    /// avg, min, max or last over the window.
    pub reduction: String,
    /// Window of samples reduced, seconds.
    pub window_seconds: i32,
    /// >, >=, <, <=, == or !=.
    pub comparison: String,
    /// Compared with the reduced value.
    pub threshold: f64,
    /// The condition must hold this long before firing.
    pub for_seconds: i32,
    /// A firing alert stays firing this long after the condition clears.
    pub keep_firing_for_seconds: i32,
    /// info, warning or critical.
    pub severity: String,
    /// Extra labels on every alert of the rule.
    pub labels: BTreeMap<String, String>,
    /// Annotation templates.
    pub annotations: BTreeMap<String, String>,
    /// How often a still-firing group is re-notified.
    pub repeat_interval_seconds: i32,
    /// Receivers; empty: every enabled webhook whose filters match, plus smtp.default_to.
    pub channels: Vec<Channel>,
    /// Labels grouping alerts into one notification.
    pub group_by: Vec<String>,
    /// Disabled rules are not evaluated.
    pub enabled: bool,
}

impl Rule {
    /// Whether `value` satisfies the comparison.
    pub fn holds(&self, value: f64) -> bool {
        let t = self.threshold;
        match self.comparison.as_str() {
            ">" => value > t,
            ">=" => value >= t,
            "<" => value < t,
            "<=" => value <= t,
            "==" => value == t,
            "!=" => value != t,
            _ => false,
        }
    }

    /// Every problem with the rule's fields, each naming the field. Also
    /// parses every annotation template and renders it against sample labels.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.name.trim().is_empty() || self.name.len() > 128 {
            e.push("name: must be 1 to 128 characters".into());
        }
        if source(&self.metric).is_none() {
            e.push(format!(
                "metric: unknown metric {:?}; one of gpu.<column>, host.<column>, environment.<column>, host.heartbeat_age, gpu.xid_errors, quota.used_pct (e.g. gpu.temperature)",
                self.metric
            ));
        }
        for (i, m) in self.scope.iter().enumerate() {
            m.check(&format!("scope[{i}]"), &mut e);
        }
        if !matches!(self.reduction.as_str(), "avg" | "min" | "max" | "last") {
            e.push(format!(
                "reduction: must be avg, min, max or last, got {:?}",
                self.reduction
            ));
        }
        if !matches!(
            self.comparison.as_str(),
            ">" | ">=" | "<" | "<=" | "==" | "!="
        ) {
            e.push(format!(
                "comparison: must be one of > >= < <= == !=, got {:?}",
                self.comparison
            ));
        }
        if !self.threshold.is_finite() {
            e.push("threshold: must be a finite number".into());
        }
        if !(1..=7 * 86_400).contains(&self.window_seconds) {
            e.push(format!(
                "window_seconds: must be between 1 and 604800, got {}",
                self.window_seconds
            ));
        }
        for (field, v) in [
            ("for_seconds", self.for_seconds),
            ("keep_firing_for_seconds", self.keep_firing_for_seconds),
        ] {
            if !(0..=30 * 86_400).contains(&v) {
                e.push(format!("{field}: must be between 0 and 2592000, got {v}"));
            }
        }
        if !(1..=30 * 86_400).contains(&self.repeat_interval_seconds) {
            e.push(format!(
                "repeat_interval_seconds: must be between 1 and 2592000, got {}",
                self.repeat_interval_seconds
            ));
        }
        if !matches!(self.severity.as_str(), "info" | "warning" | "critical") {
            e.push(format!(
                "severity: must be info, warning or critical, got {:?}",
                self.severity
            ));
        }
        for k in self.labels.keys() {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                e.push(format!("labels: name {k:?} must be letters, digits and _"));
            }
        }
        for (i, c) in self.channels.iter().enumerate() {
            if let Channel::Email { to } = c {
                if to.is_empty() || to.iter().any(|a| !a.contains('@')) {
                    e.push(format!(
                        "channels[{i}].to: must list e-mail addresses, got {to:?}"
                    ));
                }
            }
        }
        for (k, t) in &self.annotations {
            if let Err(err) = template::validate(t) {
                e.push(format!("annotations.{k}: template does not parse: {err}"));
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rule() -> Rule {
        Rule {
            id: 1,
            name: "Hot".into(),
            description: None,
            metric: "gpu.temperature".into(),
            scope: vec![],
            reduction: "avg".into(),
            window_seconds: 60,
            comparison: ">=".into(),
            threshold: 85.0,
            for_seconds: 0,
            keep_firing_for_seconds: 0,
            severity: "critical".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            repeat_interval_seconds: 3600,
            channels: vec![],
            group_by: vec!["alertname".into()],
            enabled: true,
        }
    }

    #[test]
    fn metrics_resolve_to_whitelisted_columns_only() {
        assert_eq!(source("gpu.temperature"), Some(Source::Gpu("temperature")));
        assert_eq!(source("host.heartbeat_age"), Some(Source::HeartbeatAge));
        assert_eq!(source("gpu.temperature; DROP TABLE x"), None);
        assert!(metric_names().iter().all(|m| source(m).is_some()));
        // Keys and the time are not metrics; the XID is watched as xid_errors.
        for not in [
            "gpu.gpu_id",
            "gpu.host_id",
            "gpu.collected_at",
            "gpu.xid_last",
            "environment.env_id",
        ] {
            assert_eq!(source(not), None, "{not}");
        }
        let count = |p: &str| metric_names().iter().filter(|m| m.starts_with(p)).count();
        assert_eq!(
            (count("gpu."), count("host."), count("environment.")),
            (19, 21, 7)
        );
    }

    #[test]
    fn validation_names_every_bad_field() {
        let mut r = rule();
        r.metric = "gpu.nope".into();
        r.comparison = "=>".into();
        r.annotations
            .insert("summary".into(), "{{ $labels.host".into());
        let e = r.validate();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e
            .iter()
            .any(|m| m.starts_with("annotations.summary: template")));
    }

    #[test]
    fn matchers_treat_missing_labels_as_empty() {
        let l: BTreeMap<String, String> = [("host".to_string(), "h1".to_string())].into();
        let m = |op: &str, v: &str| Matcher {
            name: "gpu".into(),
            op: op.into(),
            value: v.into(),
        };
        assert!(m("=", "").matches(&l));
        assert!(m("!=", "0").matches(&l));
        assert!(!m("=", "0").matches(&l));
    }
}
