//! gpuwatch's alerter: rules over the stored samples, persistent alert
//! state, grouping/silences/inhibition, and delivery of each notification
//! once, by webhook (Alertmanager's v4 body, Standard Webhooks signature)
//! and e-mail.
//!
//! - [`rule`]: the rule model (metrics, closed sets such as severities and
//!   reductions, the store's matchers, channels, webhook filters,
//!   validation); [`template`] renders annotation templates.
//! - [`series`] reads the latest raw samples per rule window, reduced in SQL;
//!   [`dlworkspace`] the series of DLWorkspace jobs and clusters.
//! - [`eval`] runs a cycle: pending → firing → resolved (and no data) in
//!   `alert_records`, then the notification policy (`mute`: silences and
//!   inhibition; `notify`: grouping) writes outbox rows, all in one
//!   transaction under an advisory lock. The rows they share are in
//!   `record`; `store` loads rules, records, silences and inhibition rules
//!   and reads JSON columns into types: a row that does not parse is logged
//!   with its id and skipped, never read as "matches everything".
//! - [`delivery`] workers claim outbox rows with `FOR UPDATE SKIP LOCKED` and
//!   send them through [`channels`], retrying with [`backoff`] and logging
//!   every attempt in `webhook_logs`.
//! - [`retention`] deletes old attempt logs, delivered notifications and
//!   resolved alerts.
//! - [`admin`] is what the REST API calls: rules, silences, webhooks, alerts, replay.
//! - [`run()`] ties evaluation and workers together until shutdown.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod backoff;
pub mod channels;
mod config;
pub mod delivery;
pub mod dlworkspace;
mod error;
pub mod eval;
mod mute;
mod notify;
mod record;
pub mod retention;
pub mod rule;
mod run;
pub mod series;
mod store;
mod telemetry;
pub mod template;

pub use config::{AlerterConfig, SmtpConfig, WebhookConfig};
pub use error::{AlerterError, Result};
pub use run::{evaluate_once, run};
pub use telemetry::register_metrics;
