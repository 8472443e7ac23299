//! Silences: create, replace, read, delete, list by state. A silence
//! written for Alertmanager (`startsAt`, `endsAt`, `createdBy`, matchers
//! with `isRegex`/`isEqual`) is accepted as it is.

use chrono::{DateTime, Utc};
use gpuwatch_store::listing::{self, Filter, Source};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::Json;

use super::{invalid, skip_unreadable, Page};
use crate::error::{q, AlerterError, Result};
use crate::rule::Matcher;
use crate::store::json;

/// A silence as the API accepts it: gpuwatch's snake_case fields or
/// Alertmanager's camelCase ones.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceInput {
    /// Alerts matching all of these are silenced: a list of matchers, or
    /// Alertmanager's text (`{alertname="X", gpu=~"0|1"}`).
    #[serde(deserialize_with = "gpuwatch_store::matcher::deserialize_list")]
    #[schemars(with = "Vec<Matcher>")]
    pub matchers: Vec<Matcher>,
    /// Default now.
    #[serde(default, alias = "startsAt")]
    pub starts_at: Option<DateTime<Utc>>,
    /// Must be after starts_at.
    #[serde(alias = "endsAt")]
    pub ends_at: DateTime<Utc>,
    /// A name for the author (Alertmanager's `createdBy`), kept beside the
    /// caller's token, which is what `created_by` records.
    #[serde(default, alias = "createdBy")]
    pub created_by: Option<String>,
    /// Why.
    #[serde(default)]
    pub comment: String,
    /// Alertmanager's silence id: empty or absent (gpuwatch numbers its
    /// silences; replace one with PUT /api/v1/silences/{id}).
    #[serde(default)]
    pub id: Option<String>,
}

/// A stored silence.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
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

fn silence_from_row(r: &tokio_postgres::Row) -> std::result::Result<Silence, String> {
    let id: i64 = r.get(0);
    Ok(Silence {
        id,
        matchers: json(r, 1)
            .map_err(|e| format!("silence {id}: {e}; replace it with PUT /api/v1/silences/{id}"))?,
        starts_at: r.get(2),
        ends_at: r.get(3),
        created_by: r.get(4),
        comment: r.get(5),
        state: r.get(6),
    })
}

fn readable(r: &tokio_postgres::Row) -> Result<Silence> {
    silence_from_row(r).map_err(AlerterError::Unreadable)
}

fn check_silence(s: &SilenceInput) -> Result<DateTime<Utc>> {
    let mut e = Vec::new();
    if s.matchers.is_empty() {
        e.push(
            "matchers: at least one matcher is needed (a silence of everything is refused)".into(),
        );
    }
    if s.id.as_deref().is_some_and(|id| !id.is_empty()) {
        e.push("id: gpuwatch numbers silences itself; leave id out, or replace a silence with PUT /api/v1/silences/{id}".into());
    }
    let starts = s.starts_at.unwrap_or_else(Utc::now);
    if s.ends_at <= starts {
        e.push("ends_at: must be after starts_at".into());
    }
    if s.created_by
        .as_deref()
        .is_some_and(|n| n.chars().count() > 64)
    {
        e.push("created_by: at most 64 characters".into());
    }
    invalid(e)?;
    Ok(starts)
}

/// What `created_by` records: the caller (who cannot be forged), and the
/// name the body gave, if any (which can).
fn recorded_author(author: &str, s: &SilenceInput) -> String {
    match s.created_by.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() && name != author => format!("{author} ({name})"),
        _ => author.to_string(),
    }
}

/// Creates a silence; `author` is the caller (e.g. `api-token:7`).
pub async fn create_silence(
    pool: &gpuwatch_store::Pool,
    s: SilenceInput,
    author: &str,
) -> Result<Silence> {
    let starts = check_silence(&s)?;
    let by = recorded_author(author, &s);
    let c = pool.get().await?;
    let row = c
        .query_one(
            &format!("INSERT INTO silences (matchers, starts_at, ends_at, created_by, comment) VALUES ($1, $2, $3, $4, $5) RETURNING {SILENCE_COLUMNS}"),
            &[&Json(&s.matchers), &starts, &s.ends_at, &by, &s.comment],
        )
        .await
        .map_err(q("creating a silence"))?;
    readable(&row)
}

/// Replaces a silence; `author` (the caller) becomes its author.
pub async fn update_silence(
    pool: &gpuwatch_store::Pool,
    id: i64,
    s: SilenceInput,
    author: &str,
) -> Result<Silence> {
    let starts = check_silence(&s)?;
    let by = recorded_author(author, &s);
    let c = pool.get().await?;
    c.query_opt(
        &format!("UPDATE silences SET matchers = $1, starts_at = $2, ends_at = $3, created_by = $4, comment = $5 WHERE id = $6 AND deleted_at IS NULL RETURNING {SILENCE_COLUMNS}"),
        &[&Json(&s.matchers), &starts, &s.ends_at, &by, &s.comment, &id],
    )
    .await
    .map_err(q("updating a silence"))?
    .map(|r| readable(&r))
    .ok_or_else(|| AlerterError::NotFound(format!("silence {id}")))?
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
    .map(|r| readable(&r))
    .ok_or_else(|| AlerterError::NotFound(format!("silence {id}")))?
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
    let bounds = listing::bounds(query.limit, query.offset, &mut e);
    let mut f = Filter::default();
    f.raw("deleted_at IS NULL");
    match query.state.as_deref() {
        None | Some("all") => {}
        Some("active") => f.raw("starts_at <= now() AND ends_at > now()"),
        Some("pending") => f.raw("starts_at > now()"),
        Some("expired") => f.raw("ends_at <= now()"),
        Some(s) => e.push(format!(
            "state: must be active, pending, expired or all, got {s:?}"
        )),
    }
    invalid(e)?;
    let source = Source {
        what: "silences",
        from: "silences",
        columns: SILENCE_COLUMNS,
    };
    let order = "ORDER BY ends_at DESC, id";
    let page = listing::fetch(pool, &source, &f, order, bounds, silence_from_row).await?;
    Ok(skip_unreadable(page, "silence"))
}
