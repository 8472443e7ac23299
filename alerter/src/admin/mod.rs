//! What the REST API calls: alert rules, silences and webhooks CRUD with
//! pagination and filters, alert listings, notification dead letters and
//! their replay. Inputs are `deny_unknown_fields` serde structs; outputs
//! serialise to JSON; a webhook's secret is write-only and never output.
//!
//! One file per resource: rules, silences, inhibition rules, webhooks and alerts
//! (alerts, notifications and replay); everything is re-exported here.
//! Paging is the store's [`gpuwatch_store::listing`], as everywhere.

mod alerts;
mod inhibitions;
mod rules;
mod silences;
mod webhooks;

pub use alerts::*;
pub use inhibitions::*;
pub use rules::*;
pub use silences::*;
pub use webhooks::*;

pub use gpuwatch_store::listing::Page;

use crate::error::{AlerterError, Result};

pub(crate) fn invalid(errors: Vec<String>) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AlerterError::Invalid(errors))
    }
}

/// Leaves rows that do not parse out of a page, logging each: a list still
/// answers, and nothing is shown with made-up defaults.
pub(crate) fn skip_unreadable<T>(
    page: Page<std::result::Result<T, String>>,
    what: &'static str,
) -> Page<T> {
    let items = page
        .items
        .into_iter()
        .filter_map(|r| {
            r.map_err(|e| tracing::error!(error = %e, "a stored {what} does not parse; left out of the list"))
                .ok()
        })
        .collect();
    Page {
        items,
        total: page.total,
        limit: page.limit,
        offset: page.offset,
    }
}
