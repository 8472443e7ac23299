//! The rows of `alert_records` as a cycle holds them: what evaluation loads
//! ([`Open`]) and writes ([`Write`]), and what the notification policy
//! mutes, groups and sends ([`Alert`]). Shared by `eval`, `store`, `mute`
//! and `notify`, which therefore need not import one another.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::rule::{AlertState, Severity};
use crate::series::Labels;

/// An open (pending, firing, nodata) record as loaded.
pub(crate) struct Open {
    pub(crate) id: i64,
    pub(crate) state: AlertState,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) fired_at: Option<DateTime<Utc>>,
    pub(crate) keep_firing_since: Option<DateTime<Utc>>,
}

/// A row to insert or update, passed to SQL as one JSON array.
#[derive(Debug, Serialize)]
pub(crate) struct Write {
    pub(crate) id: Option<i64>,
    pub(crate) rule_id: i64,
    pub(crate) fingerprint: String,
    pub(crate) state: AlertState,
    /// None for an orphan's resolve, which keeps the stored severity.
    pub(crate) severity: Option<Severity>,
    pub(crate) value: Option<f64>,
    pub(crate) labels: Labels,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) fired_at: Option<DateTime<Utc>>,
    pub(crate) resolved_at: Option<DateTime<Utc>>,
    pub(crate) keep_firing_since: Option<DateTime<Utc>>,
    pub(crate) group_key: String,
}

/// An alert that is, or must be told it no longer is, firing.
pub(crate) struct Alert {
    pub(crate) id: i64,
    pub(crate) rule_id: i64,
    pub(crate) fingerprint: String,
    pub(crate) state: AlertState,
    pub(crate) labels: Labels,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) resolved_at: Option<DateTime<Utc>>,
    pub(crate) group_key: String,
    pub(crate) notified_status: Option<String>,
    pub(crate) muted_by: Option<String>,
    /// Someone acknowledged it: while it fires, `repeat_interval` does not
    /// bring it back (its resolve and other changes still go out).
    pub(crate) acknowledged: bool,
}

impl Alert {
    pub(crate) fn firing(&self) -> bool {
        self.state != AlertState::Resolved
    }
}
