//! Inhibition rules: create, replace, read, delete, list. Matchers use the
//! same language as silences and rule scopes (a list, or Alertmanager's
//! text `{alertname="HostSilent"}`); `equal` names the labels source and
//! target must share.

use chrono::{DateTime, Utc};
use gpuwatch_store::listing::{self, Filter, Source};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::Json;

use super::rules::d_true;
use super::{invalid, skip_unreadable, Page};
use crate::error::{q, AlerterError, Result};
use crate::rule::Matcher;
use crate::store::json;

/// An inhibition rule as the API accepts it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InhibitionInput {
    /// Unique name.
    pub name: String,
    /// While a firing alert matches all of these...
    #[serde(deserialize_with = "gpuwatch_store::matcher::deserialize_list")]
    #[schemars(with = "Vec<Matcher>")]
    pub source_matchers: Vec<Matcher>,
    /// ...alerts matching all of these are not notified...
    #[serde(deserialize_with = "gpuwatch_store::matcher::deserialize_list")]
    #[schemars(with = "Vec<Matcher>")]
    pub target_matchers: Vec<Matcher>,
    /// ...when they have the same values of these labels.
    #[serde(default)]
    pub equal: Vec<String>,
    /// Default true.
    #[serde(default = "d_true")]
    pub enabled: bool,
}

/// A stored inhibition rule.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Inhibition {
    /// `inhibit_rules.id`
    pub id: i64,
    /// Name.
    pub name: String,
    /// Source matchers.
    pub source_matchers: Vec<Matcher>,
    /// Target matchers.
    pub target_matchers: Vec<Matcher>,
    /// Labels that must be equal.
    pub equal: Vec<String>,
    /// Enabled.
    pub enabled: bool,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Paging of [`list_inhibitions`].
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InhibitionQuery {
    /// 1..=1000, default 50.
    pub limit: Option<i64>,
    /// Default 0.
    pub offset: Option<i64>,
}

const COLUMNS: &str = "id, name, source_matchers, target_matchers, equal, enabled, updated_at";

fn from_row(r: &tokio_postgres::Row) -> std::result::Result<Inhibition, String> {
    let id: i64 = r.get(0);
    let fix = |e: String| {
        format!("inhibition rule {id}: {e}; replace it with PUT /api/v1/inhibit-rules/{id}")
    };
    Ok(Inhibition {
        id,
        name: r.get(1),
        source_matchers: json(r, 2).map_err(fix)?,
        target_matchers: json(r, 3).map_err(fix)?,
        equal: json(r, 4).map_err(fix)?,
        enabled: r.get(5),
        updated_at: r.get(6),
    })
}

fn check(i: &InhibitionInput) -> Result<()> {
    let mut e = Vec::new();
    if i.name.trim().is_empty() || i.name.len() > 128 {
        e.push("name: must be 1 to 128 characters".into());
    }
    // Empty matchers would match every alert: one rule could mute everything.
    for (field, m) in [
        ("source_matchers", &i.source_matchers),
        ("target_matchers", &i.target_matchers),
    ] {
        if m.is_empty() {
            e.push(format!("{field}: at least one matcher is needed"));
        }
    }
    for (n, l) in i.equal.iter().enumerate() {
        if l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            e.push(format!("equal[{n}]: {l:?} is not a label name"));
        }
    }
    invalid(e)
}

/// Creates an inhibition rule.
pub async fn create_inhibition(
    pool: &gpuwatch_store::Pool,
    i: InhibitionInput,
) -> Result<Inhibition> {
    check(&i)?;
    let c = pool.get().await?;
    let row = c
        .query_one(
            &format!(
                "INSERT INTO inhibit_rules (name, source_matchers, target_matchers, equal, enabled)
                      VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
            ),
            &[
                &i.name,
                &Json(&i.source_matchers),
                &Json(&i.target_matchers),
                &Json(&i.equal),
                &i.enabled,
            ],
        )
        .await
        .map_err(q("writing an inhibition rule (names are unique)"))?;
    from_row(&row).map_err(AlerterError::Unreadable)
}

/// Replaces an inhibition rule.
pub async fn update_inhibition(
    pool: &gpuwatch_store::Pool,
    id: i64,
    i: InhibitionInput,
) -> Result<Inhibition> {
    check(&i)?;
    let c = pool.get().await?;
    c.query_opt(
        &format!("UPDATE inhibit_rules SET name = $1, source_matchers = $2, target_matchers = $3, equal = $4, enabled = $5
                  WHERE id = $6 RETURNING {COLUMNS}"),
        &[&i.name, &Json(&i.source_matchers), &Json(&i.target_matchers), &Json(&i.equal), &i.enabled, &id],
    )
    .await
    .map_err(q("writing an inhibition rule (names are unique)"))?
    .map(|r| from_row(&r).map_err(AlerterError::Unreadable))
    .ok_or_else(|| AlerterError::NotFound(format!("inhibition rule {id}")))?
}

/// One inhibition rule.
pub async fn get_inhibition(pool: &gpuwatch_store::Pool, id: i64) -> Result<Inhibition> {
    let c = pool.get().await?;
    c.query_opt(
        &format!("SELECT {COLUMNS} FROM inhibit_rules WHERE id = $1"),
        &[&id],
    )
    .await
    .map_err(q("reading an inhibition rule"))?
    .map(|r| from_row(&r).map_err(AlerterError::Unreadable))
    .ok_or_else(|| AlerterError::NotFound(format!("inhibition rule {id}")))?
}

/// Deletes an inhibition rule.
pub async fn delete_inhibition(pool: &gpuwatch_store::Pool, id: i64) -> Result<()> {
    let c = pool.get().await?;
    let n = c
        .execute("DELETE FROM inhibit_rules WHERE id = $1", &[&id])
        .await
        .map_err(q("deleting an inhibition rule"))?;
    if n == 0 {
        return Err(AlerterError::NotFound(format!("inhibition rule {id}")));
    }
    Ok(())
}

/// Inhibition rules by name.
pub async fn list_inhibitions(
    pool: &gpuwatch_store::Pool,
    query: InhibitionQuery,
) -> Result<Page<Inhibition>> {
    let mut e = Vec::new();
    let bounds = listing::bounds(query.limit, query.offset, &mut e);
    invalid(e)?;
    let source = Source {
        what: "inhibition rules",
        from: "inhibit_rules",
        columns: COLUMNS,
    };
    let page = listing::fetch(
        pool,
        &source,
        &Filter::default(),
        "ORDER BY name, id",
        bounds,
        from_row,
    )
    .await?;
    Ok(skip_unreadable(page, "inhibition rule"))
}
