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
    /// Seconds a present GPU's latest sample lags its online host's heartbeat.
    GpuSilence,
    /// `gpuwatch_quota_usage.used_pct` (when the billing view exists).
    QuotaUsedPct,
    /// A column of the replication views of migration 0025.
    Replication(&'static str),
    /// 1 for a DLWorkspace job that entered failed, killed or error within
    /// the rule's window and is still in it; 0 for one whose entry is older
    /// (up to twice the window) or that left it since.
    JobStatus,
    /// Seconds a DLWorkspace job has waited in queued or scheduling; 0 for
    /// one that stopped waiting within the rule's window.
    JobQueued,
    /// Seconds since a DLWorkspace cluster's latest `clusterstatus` row.
    ClusterStatusAge,
}

/// DLWorkspace's jobs and clusters, read from what the sync mirrors
/// (`training_jobs`, its status history, `dlworkspace_clusters`).
const DLWORKSPACE: &[(&str, Source)] = &[
    ("job.status", Source::JobStatus),
    ("job.queued_seconds", Source::JobQueued),
    (
        "dlworkspace.cluster_status_age_seconds",
        Source::ClusterStatusAge,
    ),
];

/// Metrics that are neither a column nor a family of them.
const SINGLE: &[(&str, Source)] = &[
    ("host.heartbeat_age", Source::HeartbeatAge),
    ("gpu.xid_errors", Source::XidErrors),
    ("gpu.silent_seconds", Source::GpuSilence),
    ("quota.used_pct", Source::QuotaUsedPct),
];

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
    if let Some((_, s)) = SINGLE.iter().chain(DLWORKSPACE).find(|(m, _)| *m == metric) {
        return Some(*s);
    }
    match metric {
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
    v.extend(SINGLE.iter().map(|(m, _)| m.to_string()));
    v.extend(REPLICATION.iter().map(|(m, _)| m.to_string()));
    v.extend(DLWORKSPACE.iter().map(|(m, _)| m.to_string()));
    v
}

/// The metrics named in an unknown-metric error: the column families as
/// patterns, every other name in full.
fn metric_hint() -> String {
    let mut v: Vec<&str> = vec!["gpu.<column>", "host.<column>", "environment.<column>"];
    v.extend(SINGLE.iter().map(|(m, _)| *m));
    v.extend(REPLICATION.iter().map(|(m, _)| *m));
    v.extend(DLWORKSPACE.iter().map(|(m, _)| *m));
    v.join(", ")
}

pub use gpuwatch_store::matcher::{all_match, MatchOp, Matcher};

/// Declares a closed set of names: an enum that serialises as its names,
/// parses from them once at the edge, and lists them for error messages.
macro_rules! closed_set {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $v),+
        }

        impl $name {
            /// Every member, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// The name as stored and sent.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s),+
                }
            }

            /// The member named `s`, if any.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|x| x.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

closed_set! {
    /// How a rule's window of samples is reduced to one value.
    Reduction {
        /// Mean.
        Avg = "avg",
        /// Smallest.
        Min = "min",
        /// Largest.
        Max = "max",
        /// Newest non-null sample.
        Last = "last",
        /// A counter's growth over the window (a drop is a reset to zero).
        Increase = "increase",
        /// `increase` per second of the window.
        Rate = "rate",
    }
}

impl Reduction {
    /// Whether it reads a counter's growth rather than its level.
    pub fn over_counter(self) -> bool {
        matches!(self, Reduction::Increase | Reduction::Rate)
    }
}

impl Source {
    /// Whether the series only grows (until a reset): what increase and
    /// rate apply to. Read from the store's catalogue, so a new counter
    /// column qualifies as soon as it is declared.
    pub fn is_counter(self) -> bool {
        let counter_in = |table: &str, col: &str| {
            gpuwatch_store::catalogue::tables()
                .iter()
                .filter(|(t, _)| *t == table)
                .flat_map(|(_, cols)| cols.iter())
                .any(|c| {
                    c.name == col
                        && matches!(c.spec.tier, gpuwatch_store::catalogue::Tiering::Counter)
                })
        };
        match self {
            Source::XidErrors => true,
            Source::Gpu(c) => counter_in("gpu_metrics", c),
            Source::Host(c) => counter_in("host_metrics", c),
            Source::Env(c) => counter_in("environment_metrics", c),
            _ => false,
        }
    }
}

closed_set! {
    /// How the reduced value is compared with the threshold.
    Comparison {
        /// `>`
        Gt = ">",
        /// `>=`
        Ge = ">=",
        /// `<`
        Lt = "<",
        /// `<=`
        Le = "<=",
        /// `==`
        Eq = "==",
        /// `!=`
        Ne = "!=",
    }
}

closed_set! {
    /// How urgent a rule's alerts are.
    Severity {
        /// For the record.
        Info = "info",
        /// Look soon.
        Warning = "warning",
        /// Act now.
        Critical = "critical",
    }
}

closed_set! {
    /// The state of an alert in `alert_records`.
    AlertState {
        /// The condition holds, not yet for `for`.
        Pending = "pending",
        /// Firing.
        Firing = "firing",
        /// The series returned nothing.
        Nodata = "nodata",
        /// Over.
        Resolved = "resolved",
    }
}

/// The filters of a webhook that receives the groups of rules without
/// channels: matchers on the group's common labels. Stored as given: a list
/// of matchers (or Alertmanager's text), or the older object of
/// label → value or [values], read as `label="value"` / `label=~"v1|v2"`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookFilters(pub Vec<Matcher>);

impl WebhookFilters {
    /// Reads filters as JSON gives them; every problem names its filter.
    pub fn from_json(v: &serde_json::Value) -> std::result::Result<Self, Vec<String>> {
        use serde_json::Value;
        let mut e = Vec::new();
        let mut out = Vec::new();
        match v {
            Value::Object(m) => {
                for (k, allowed) in m {
                    let built = match allowed {
                        Value::String(s) => Matcher::eq(k.as_str(), s.as_str()),
                        Value::Array(a) if a.iter().all(Value::is_string) => {
                            let alts: Vec<String> = a
                                .iter()
                                .filter_map(Value::as_str)
                                .map(gpuwatch_store::matcher::escape)
                                .collect();
                            if alts.is_empty() {
                                // No value is allowed: the filter never matches.
                                Matcher::new(k.as_str(), MatchOp::NotRe, ".*")
                            } else {
                                Matcher::new(k.as_str(), MatchOp::Re, alts.join("|"))
                            }
                        }
                        _ => {
                            e.push(format!("filters.{k}: must be a string or a list of strings"));
                            continue;
                        }
                    };
                    match built {
                        Ok(m) => out.push(m),
                        Err(err) => e.push(format!("filters.{k}: {err}")),
                    }
                }
            }
            Value::String(text) => match gpuwatch_store::matcher::parse_matchers(text) {
                Ok(m) => out = m,
                Err(err) => e.push(format!("filters: {err}")),
            },
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match serde_json::from_value::<Matcher>(item.clone()) {
                        Ok(m) => out.push(m),
                        Err(err) => e.push(format!("filters[{i}]: {err}")),
                    }
                }
            }
            _ => e.push(
                "filters: must be a list of matchers, matcher text, or an object of label -> value(s)"
                    .into(),
            ),
        }
        if e.is_empty() {
            Ok(WebhookFilters(out))
        } else {
            Err(e)
        }
    }

    /// The JSON stored for filters given as `v`: an object is kept as it is
    /// (older clients read it back unchanged), anything else is stored as
    /// the list of matchers it parsed to.
    pub fn stored(&self, v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(_) => v,
            _ => serde_json::to_value(&self.0).unwrap_or_else(|_| serde_json::json!([])),
        }
    }

    /// Whether the group's labels (a label missing reads as "") pass.
    pub fn pass(&self, label: impl Fn(&str) -> Option<String>) -> bool {
        self.0
            .iter()
            .all(|m| m.matches_value(label(m.name()).as_deref()))
    }
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
    /// Alertmanager replicas: every one gets every alert (`/api/v2/alerts`).
    Alertmanager {
        /// Base URLs, e.g. `http://alertmanager:9093`.
        urls: Vec<String>,
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
    #[serde(deserialize_with = "gpuwatch_store::matcher::deserialize_list")]
    pub scope: Vec<Matcher>,
    /// avg, min, max or last over the window.
    pub reduction: Reduction,
    /// Window of samples reduced, seconds.
    pub window_seconds: i32,
    /// >, >=, <, <=, == or !=.
    pub comparison: Comparison,
    /// Compared with the reduced value.
    pub threshold: f64,
    /// The condition must hold this long before firing.
    pub for_seconds: i32,
    /// A firing alert stays firing this long after the condition clears.
    pub keep_firing_for_seconds: i32,
    /// info, warning or critical.
    pub severity: Severity,
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
        match self.comparison {
            Comparison::Gt => value > t,
            Comparison::Ge => value >= t,
            Comparison::Lt => value < t,
            Comparison::Le => value <= t,
            Comparison::Eq => value == t,
            Comparison::Ne => value != t,
        }
    }

    /// Every problem with the fields that parsing did not already settle,
    /// each naming the field. Also parses every annotation template.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.name.trim().is_empty() || self.name.len() > 128 {
            e.push("name: must be 1 to 128 characters".into());
        }
        if let Some(src) = source(&self.metric) {
            if self.reduction.over_counter() && !src.is_counter() {
                e.push(format!(
                    "reduction: {} applies to counters (e.g. gpu.ecc_dbe_volatile, gpu.xid_errors); {} is a gauge, use avg, min, max or last",
                    self.reduction.as_str(),
                    self.metric
                ));
            }
        } else {
            e.push(format!(
                "metric: unknown metric {:?}; one of {} (e.g. gpu.temperature)",
                self.metric,
                metric_hint()
            ));
        }
        for (i, m) in self.scope.iter().enumerate() {
            if m.name().is_empty() {
                e.push(format!("scope[{i}].name: must not be empty"));
            }
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
        for k in self.labels.keys() {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                e.push(format!("labels: name {k:?} must be letters, digits and _"));
            }
        }
        for (i, c) in self.channels.iter().enumerate() {
            match c {
                Channel::Email { to } if to.is_empty() || to.iter().any(|a| !a.contains('@')) => {
                    e.push(format!(
                        "channels[{i}].to: must list e-mail addresses, got {to:?}"
                    ));
                }
                Channel::Alertmanager { urls }
                    if urls.is_empty()
                        || urls.iter().any(|u| {
                            !(u.starts_with("http://") || u.starts_with("https://"))
                                || reqwest::Url::parse(u).is_err()
                        }) =>
                {
                    e.push(format!(
                        "channels[{i}].urls: must list Alertmanager http(s) base URLs, got {urls:?}"
                    ));
                }
                _ => {}
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

/// Parses a closed-set field given as text, pushing `problem` (which names
/// the field) when it is not a member.
pub(crate) fn parse_field<T: Copy>(
    parse: fn(&str) -> Option<T>,
    text: &str,
    fallback: T,
    problem: impl FnOnce() -> String,
    errors: &mut Vec<String>,
) -> T {
    parse(text).unwrap_or_else(|| {
        errors.push(problem());
        fallback
    })
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
            reduction: Reduction::Avg,
            window_seconds: 60,
            comparison: Comparison::Ge,
            threshold: 85.0,
            for_seconds: 0,
            keep_firing_for_seconds: 0,
            severity: Severity::Critical,
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
        assert_eq!(source("job.status"), Some(Source::JobStatus));
        assert_eq!(source("job.queued_seconds"), Some(Source::JobQueued));
        assert_eq!(
            source("dlworkspace.cluster_status_age_seconds"),
            Some(Source::ClusterStatusAge)
        );
        assert_eq!(source("job.error_message"), None);
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
        // gpu: 19 columns, xid_errors, silent_seconds.
        assert_eq!(
            (count("gpu."), count("host."), count("environment.")),
            (22, 21, 7)
        );
        // Every name a rule may use is in the error that lists them.
        let mut r = rule();
        r.metric = "job.statuses".into();
        let e = r.validate().join("\n");
        for m in metric_names().iter().filter(|m| {
            !m.contains('.')
                || m.starts_with("job.")
                || m.starts_with("dlworkspace.")
                || m.starts_with("db.")
        }) {
            assert!(e.contains(m.as_str()), "{m} missing in {e}");
        }
    }

    #[test]
    fn closed_sets_parse_their_names_only() {
        assert_eq!(Reduction::parse("last"), Some(Reduction::Last));
        assert_eq!(Comparison::parse("=>"), None);
        assert_eq!(
            Severity::parse("critical").map(Severity::as_str),
            Some("critical")
        );
        assert_eq!(
            serde_json::to_value(AlertState::Nodata).unwrap(),
            serde_json::json!("nodata")
        );
        let mut r = rule();
        r.comparison = Comparison::Lt;
        assert!(r.holds(84.0) && !r.holds(85.0));
    }
}
