//! Webhooks: CRUD with a write-only secret and write-only header values
//! (headers often carry a receiver's credentials).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use gpuwatch_store::listing::{self, Filter, Source};
use tokio_postgres::types::Json;

use super::rules::d_true;
use super::{invalid, Page};
use crate::error::{q, AlerterError, Result};
use crate::rule::WebhookFilters;

/// A webhook as the API accepts it. `secret` and `headers` are write-only:
/// on update, absent keeps the stored ones, "" removes the secret and `{}`
/// the headers.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// Display name (the v4 body's receiver).
    pub name: String,
    /// http(s) endpoint.
    pub url: String,
    /// Standard Webhooks secret (`whsec_<base64>`) or any string.
    #[serde(default)]
    pub secret: Option<String>,
    /// Extra request headers (values never shown again).
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// For rules without channels: matchers on the group's labels, as a
    /// list or Alertmanager's text (`{severity=~"warning|critical"}`), or
    /// an object of label → value or [values] the group must have.
    #[serde(default = "no_filters")]
    pub filters: serde_json::Value,
    /// Default true.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Default 10000.
    #[serde(default)]
    pub timeout_ms: Option<i32>,
    /// Ceiling on attempts; default alerter.webhook.max_attempts (the retry
    /// window normally ends retries first).
    #[serde(default)]
    pub max_attempts: Option<i32>,
}

/// A webhook as output: never the secret or header values, only whether a
/// secret is set and which headers are.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Webhook {
    /// `webhooks.id`
    pub id: i64,
    /// Name.
    pub name: String,
    /// Endpoint.
    pub url: String,
    /// Whether requests are signed.
    pub has_secret: bool,
    /// Names of the extra headers.
    pub header_names: Vec<String>,
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

const WEBHOOK_COLUMNS: &str = "id, name, url, secret IS NOT NULL AND secret <> '',
    ARRAY(SELECT jsonb_object_keys(headers) ORDER BY 1), filters, enabled, timeout_ms, max_attempts, created_at, updated_at";

fn webhook_from_row(r: &tokio_postgres::Row) -> Webhook {
    Webhook {
        id: r.get(0),
        name: r.get(1),
        url: r.get(2),
        has_secret: r.get(3),
        header_names: r.get(4),
        filters: r.get(5),
        enabled: r.get(6),
        timeout_ms: r.get(7),
        max_attempts: r.get(8),
        created_at: r.get(9),
        updated_at: r.get(10),
    }
}

fn no_filters() -> serde_json::Value {
    serde_json::json!({})
}

/// Checks every field; returns the filters' JSON as it is stored.
fn check_webhook(w: &WebhookInput) -> Result<serde_json::Value> {
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
    let filters = match WebhookFilters::from_json(&w.filters) {
        Ok(f) => f.stored(w.filters.clone()),
        Err(problems) => {
            e.extend(problems);
            serde_json::Value::Null
        }
    };
    for (k, v) in w.headers.iter().flatten() {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            e.push(format!("headers: {k:?} is not a valid header name"));
        }
        // CR/LF would split the request (header injection), NUL is refused
        // by every server; neither can be sent, so neither is stored.
        if v.contains(['\r', '\n', '\0']) || reqwest::header::HeaderValue::from_str(v).is_err() {
            e.push(format!(
                "headers.{k}: the value must be visible ASCII or tabs, with no CR, LF or NUL"
            ));
        }
    }
    invalid(e)?;
    Ok(filters)
}

/// Creates a webhook; `defaults` gives timeout and attempts when not set.
pub async fn create_webhook(
    pool: &gpuwatch_store::Pool,
    w: WebhookInput,
    defaults: &crate::WebhookConfig,
    created_by: Option<&str>,
) -> Result<Webhook> {
    let filters = check_webhook(&w)?;
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
            &[&w.name, &w.url, &w.secret, &Json(w.headers.clone().unwrap_or_default()),
              &filters, &w.enabled, &timeout, &attempts, &created_by],
        )
        .await
        .map_err(q("creating a webhook"))?;
    Ok(webhook_from_row(&row))
}

/// Replaces a webhook; an absent secret or headers keeps the stored ones.
pub async fn update_webhook(
    pool: &gpuwatch_store::Pool,
    id: i64,
    w: WebhookInput,
) -> Result<Webhook> {
    let filters = check_webhook(&w)?;
    let c = pool.get().await?;
    c.query_opt(
        &format!(
            "UPDATE webhooks SET name = $1, url = $2,
                 secret = CASE WHEN $3::text IS NULL THEN secret ELSE NULLIF($3::text, '') END,
                 headers = COALESCE($4, headers), filters = $5, enabled = $6,
                 timeout_ms = COALESCE($7, timeout_ms), max_attempts = COALESCE($8, max_attempts)
             WHERE id = $9 AND deleted_at IS NULL RETURNING {WEBHOOK_COLUMNS}"
        ),
        &[
            &w.name,
            &w.url,
            &w.secret,
            &w.headers.as_ref().map(Json),
            &filters,
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
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
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
    let bounds = listing::bounds(query.limit, query.offset, &mut e);
    invalid(e)?;
    let mut f = Filter::default();
    f.raw("deleted_at IS NULL");
    f.opt("enabled = $?", query.enabled);
    let source = Source {
        what: "webhooks",
        from: "webhooks",
        columns: WEBHOOK_COLUMNS,
    };
    listing::fetch(
        pool,
        &source,
        &f,
        "ORDER BY name, id",
        bounds,
        webhook_from_row,
    )
    .await
    .map_err(Into::into)
}
