use std::time::Duration;

use serde::Deserialize;

/// `[alerter]` of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlerterConfig {
    /// Seconds between rule evaluations.
    #[serde(
        rename = "interval",
        alias = "interval_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub interval_secs: f64,
    /// A new group waits this long before its first notification, so alerts
    /// firing together arrive together.
    #[serde(
        rename = "group_wait",
        alias = "group_wait_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub group_wait_secs: f64,
    /// A group that already notified waits this long before telling about changes.
    #[serde(
        rename = "group_interval",
        alias = "group_interval_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub group_interval_secs: f64,
    /// Ceiling of a group's repeat interval (rules may ask for less).
    #[serde(
        rename = "repeat_interval",
        alias = "repeat_interval_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub repeat_interval_secs: f64,
    /// Whether receivers are told when alerts resolve.
    pub send_resolved: bool,
    /// Base of the links in notifications (generatorURL, externalURL).
    pub external_url: String,
    /// Firing alerts are re-sent to Alertmanager channels at most this often.
    #[serde(
        rename = "alertmanager_resend",
        alias = "alertmanager_resend_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub alertmanager_resend_secs: f64,
    /// Parallel delivery workers per replica.
    pub workers: usize,
    /// How often idle workers look for due notifications (other replicas'
    /// and retries); this replica's own new ones wake them at once.
    #[serde(
        rename = "poll_interval",
        alias = "poll_interval_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub poll_interval_secs: f64,
    /// Webhook delivery defaults.
    pub webhook: WebhookConfig,
    /// E-mail delivery.
    pub smtp: SmtpConfig,
    /// How long the alerting tables keep what is done with.
    pub retention: crate::retention::RetentionConfig,
}

/// `[alerter.webhook]`: retry policy (per-webhook timeout and max_attempts
/// live in the `webhooks` table; these are the defaults for new webhooks).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Default request timeout of new webhooks.
    #[serde(
        rename = "timeout",
        alias = "timeout_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub timeout_secs: f64,
    /// Default ceiling on attempts of new webhooks; the retry window
    /// (`retry_duration`) is what normally ends the retries.
    pub max_attempts: i32,
    /// How long a failing notification is retried before the dead letter,
    /// counted from its first failed attempt (every channel).
    #[serde(
        rename = "retry_duration",
        alias = "retry_duration_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub retry_duration_secs: f64,
    /// First retry delay; doubles per attempt, with jitter.
    #[serde(
        rename = "backoff_base",
        alias = "backoff_base_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub backoff_base_secs: f64,
    /// Longest retry delay (also caps Retry-After).
    #[serde(
        rename = "backoff_max",
        alias = "backoff_max_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub backoff_max_secs: f64,
}

/// `[alerter.smtp]`: e-mail through an SMTP relay.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Relay host; empty disables e-mail.
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// "none", "starttls" or "tls" (implicit TLS).
    pub tls: String,
    /// SMTP AUTH user; empty: no auth.
    pub username: String,
    /// SMTP AUTH password (never logged).
    pub password: String,
    /// From address.
    pub from: String,
    /// Recipients of rules whose channels list is empty.
    pub default_to: Vec<String>,
    /// Per-message timeout.
    #[serde(
        rename = "timeout",
        alias = "timeout_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub timeout_secs: f64,
    /// Attempts before the dead letter.
    pub max_attempts: i32,
}

impl std::fmt::Debug for SmtpConfig {
    // Hand-written so the password never reaches a log line or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("from", &self.from)
            .field("default_to", &self.default_to)
            .finish()
    }
}

impl Default for AlerterConfig {
    fn default() -> Self {
        AlerterConfig {
            interval_secs: 15.0,
            group_wait_secs: 10.0,
            group_interval_secs: 300.0,
            repeat_interval_secs: 14_400.0,
            send_resolved: true,
            external_url: "http://127.0.0.1:9400".into(),
            // Prometheus' default resend delay.
            alertmanager_resend_secs: 60.0,
            workers: 4,
            poll_interval_secs: 1.0,
            webhook: WebhookConfig::default(),
            smtp: SmtpConfig::default(),
            retention: Default::default(),
        }
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout_secs: 10.0,
            max_attempts: 1000,
            // An hour covers an ordinary receiver outage or deploy.
            retry_duration_secs: 3600.0,
            backoff_base_secs: 1.0,
            backoff_max_secs: 300.0,
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: String::new(),
            port: 587,
            tls: "starttls".into(),
            username: String::new(),
            password: String::new(),
            from: "gpuwatch@localhost".into(),
            default_to: Vec::new(),
            timeout_secs: 30.0,
            max_attempts: 1000,
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

impl AlerterConfig {
    /// Evaluation interval.
    pub fn interval(&self) -> Duration {
        secs(self.interval_secs)
    }
    /// group_wait.
    pub fn group_wait(&self) -> Duration {
        secs(self.group_wait_secs)
    }
    /// group_interval.
    pub fn group_interval(&self) -> Duration {
        secs(self.group_interval_secs)
    }
    /// repeat_interval ceiling.
    pub fn repeat_interval(&self) -> Duration {
        secs(self.repeat_interval_secs)
    }
    /// How long a failing notification is retried.
    pub fn retry_duration(&self) -> Duration {
        secs(self.webhook.retry_duration_secs)
    }
    /// Worker poll interval.
    pub fn poll_interval(&self) -> Duration {
        secs(self.poll_interval_secs)
    }

    /// Every problem, as `key: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        let mut range = |key: &str, v: f64, lo: f64, hi: f64| {
            if !(lo..=hi).contains(&v) {
                e.push(format!(
                    "alerter.{key}: must be between {lo} and {hi} seconds, got {v}"
                ));
            }
        };
        range("interval_secs", self.interval_secs, 0.1, 86_400.0);
        range("group_wait_secs", self.group_wait_secs, 0.0, 86_400.0);
        range(
            "group_interval_secs",
            self.group_interval_secs,
            0.0,
            86_400.0,
        );
        range(
            "repeat_interval_secs",
            self.repeat_interval_secs,
            1.0,
            30.0 * 86_400.0,
        );
        range(
            "alertmanager_resend_secs",
            self.alertmanager_resend_secs,
            0.0,
            86_400.0,
        );
        range("poll_interval_secs", self.poll_interval_secs, 0.05, 3_600.0);
        range(
            "webhook.timeout_secs",
            self.webhook.timeout_secs,
            0.1,
            600.0,
        );
        range(
            "webhook.backoff_base_secs",
            self.webhook.backoff_base_secs,
            0.01,
            3_600.0,
        );
        range(
            "webhook.backoff_max_secs",
            self.webhook.backoff_max_secs,
            0.01,
            86_400.0,
        );
        range(
            "webhook.retry_duration_secs",
            self.webhook.retry_duration_secs,
            0.0,
            30.0 * 86_400.0,
        );
        range("smtp.timeout_secs", self.smtp.timeout_secs, 0.1, 600.0);
        if self.webhook.backoff_max_secs < self.webhook.backoff_base_secs {
            e.push("alerter.webhook.backoff_max_secs: must be at least backoff_base_secs".into());
        }
        if !(1..=1000).contains(&self.workers) {
            e.push(format!(
                "alerter.workers: must be between 1 and 1000, got {}",
                self.workers
            ));
        }
        for (key, v) in [
            ("webhook.max_attempts", self.webhook.max_attempts),
            ("smtp.max_attempts", self.smtp.max_attempts),
        ] {
            if !(1..=1000).contains(&v) {
                e.push(format!(
                    "alerter.{key}: must be between 1 and 1000, got {v}"
                ));
            }
        }
        if !(self.external_url.starts_with("http://") || self.external_url.starts_with("https://"))
        {
            e.push(format!(
                "alerter.external_url: must start with http:// or https://, got {:?}",
                self.external_url
            ));
        }
        if !matches!(self.smtp.tls.as_str(), "none" | "starttls" | "tls") {
            e.push(format!(
                "alerter.smtp.tls: must be \"none\", \"starttls\" or \"tls\", got {:?}",
                self.smtp.tls
            ));
        }
        if !self.smtp.host.is_empty() && !self.smtp.from.contains('@') {
            e.push(format!(
                "alerter.smtp.from: not an e-mail address: {:?}",
                self.smtp.from
            ));
        }
        if self.smtp.username.is_empty() != self.smtp.password.is_empty() {
            e.push("alerter.smtp.username/password: set both or neither".into());
        }
        e.extend(self.retention.validate());
        for to in &self.smtp.default_to {
            if !to.contains('@') {
                e.push(format!(
                    "alerter.smtp.default_to: not an e-mail address: {to:?}"
                ));
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_the_password_never_prints() {
        let mut c = AlerterConfig::default();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        c.smtp.username = "u".into();
        c.smtp.password = "hunter2".into();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn every_problem_is_reported() {
        let c = AlerterConfig {
            interval_secs: 0.0,
            workers: 0,
            external_url: "ftp://x".into(),
            smtp: SmtpConfig {
                tls: "ssl".into(),
                ..SmtpConfig::default()
            },
            ..AlerterConfig::default()
        };
        let e = c.validate();
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("alerter.smtp.tls")));
    }
}
