//! What the REST API calls: alert rules, silences and webhooks CRUD with
//! pagination and filters, alert listings, notification dead letters and
//! their replay. Inputs are `deny_unknown_fields` serde structs; outputs
//! serialise to JSON; a webhook's secret is write-only and never output.
//!
//! One file per resource: rules, silences, webhooks and alerts
//! (alerts, notifications and replay); everything is re-exported here.

mod alerts;
mod rules;
mod silences;
mod webhooks;

pub use alerts::*;
pub use rules::*;
pub use silences::*;
pub use webhooks::*;

use serde::Serialize;
use tokio_postgres::types::ToSql;

use crate::error::{q, AlerterError, Result};

pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// A page of results.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
pub(crate) struct Filter {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Filter {
    pub(crate) fn add(&mut self, clause: &str, p: impl ToSql + Sync + Send + 'static) {
        self.params.push(Box::new(p));
        self.clauses
            .push(clause.replace('?', &format!("${}", self.params.len())));
    }
    pub(crate) fn fixed(&mut self, clause: &str) {
        self.clauses.push(clause.to_string());
    }
    pub(crate) fn sql(&self) -> String {
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

pub(crate) fn page_bounds(
    limit: Option<i64>,
    offset: Option<i64>,
    errors: &mut Vec<String>,
) -> (i64, i64) {
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

pub(crate) fn sort_clause(
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

pub(crate) fn invalid(errors: Vec<String>) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AlerterError::Invalid(errors))
    }
}

/// The parts of a paged SELECT: columns, `FROM … WHERE …`, ORDER BY.
pub(crate) struct Sql<'a>(pub &'a str, pub &'a str, pub &'a str);

pub(crate) async fn page<T>(
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
