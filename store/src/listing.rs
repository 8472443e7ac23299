//! Paged lists, written once for every collection gpuwatch serves (the API's
//! hosts and GPUs, the alerter's rules, silences, webhooks, alerts and
//! notifications, billing's invoices).
//!
//! A list answers a [`Page`]: `{"items", "total", "limit", "offset"}`.
//! [`bounds`] checks `limit` (default [`DEFAULT_LIMIT`], at most
//! [`MAX_LIMIT`]) and `offset`; [`order_by`] turns `sort` (`col` or `-col`)
//! into `ORDER BY` from an allow-list; a [`Filter`] collects conditions with
//! `$?` placeholders and numbers them; [`fetch`] counts and reads one page.
//! Problems are collected, not returned one by one, so a caller can report
//! every wrong parameter at once, each message naming its parameter.

use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::{Pool, StoreError};

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 1000;

/// One page of a collection.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Page<T> {
    /// This page.
    pub items: Vec<T>,
    /// All matching items.
    pub total: i64,
    /// Page size asked for.
    pub limit: i64,
    /// Items skipped.
    pub offset: i64,
}

/// Checked `limit` and `offset` (defaults 50 and 0); a problem is pushed for
/// each bad one.
pub fn bounds(limit: Option<i64>, offset: Option<i64>, problems: &mut Vec<String>) -> (i64, i64) {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        problems.push(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        ));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        problems.push(format!("offset must not be negative, got {offset}"));
    }
    (limit, offset)
}

/// `ORDER BY` for `sort` (`key` or `-key`, default `default`), from the
/// allowed `(key, sql)` pairs; `tiebreak` (a unique column) keeps pages
/// stable. A key that is not allowed pushes a problem listing the allowed ones.
pub fn order_by(
    sort: Option<&str>,
    allowed: &[(&str, &str)],
    default: &str,
    tiebreak: &str,
    problems: &mut Vec<String>,
) -> String {
    let spec = sort.unwrap_or(default);
    let (key, dir) = match spec.strip_prefix('-') {
        Some(k) => (k, "DESC"),
        None => (spec, "ASC"),
    };
    match allowed.iter().find(|(k, _)| *k == key) {
        Some((_, sql)) => format!("ORDER BY {sql} {dir} NULLS LAST, {tiebreak} {dir}"),
        None => {
            problems.push(format!(
                "cannot sort by {key:?}; sort by one of {} (prefix - for descending)",
                allowed
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            format!("ORDER BY {tiebreak}")
        }
    }
}

/// A parameter of a [`Filter`].
pub type Param = Box<dyn ToSql + Sync + Send>;

/// A WHERE clause and its parameters, built one condition at a time.
#[derive(Default)]
pub struct Filter {
    conds: Vec<String>,
    params: Vec<Param>,
}

impl Filter {
    /// Adds `cond`, where every `$?` stands for the value's placeholder.
    pub fn add<T: ToSql + Sync + Send + 'static>(&mut self, cond: &str, value: T) {
        self.params.push(Box::new(value));
        self.conds
            .push(cond.replace("$?", &format!("${}", self.params.len())));
    }

    /// Adds `cond` when `value` is given.
    pub fn opt<T: ToSql + Sync + Send + 'static>(&mut self, cond: &str, value: Option<T>) {
        if let Some(v) = value {
            self.add(cond, v);
        }
    }

    /// Adds a condition without a parameter.
    pub fn raw(&mut self, cond: &str) {
        self.conds.push(cond.to_string());
    }

    /// Adds one condition with several parameters: `$1?`, `$2?`, … in
    /// `cond` stand for `values[0]`, `values[1]`, ….
    pub fn add_many(&mut self, cond: &str, values: Vec<Param>) {
        let mut c = cond.to_string();
        for (i, v) in values.into_iter().enumerate() {
            self.params.push(v);
            c = c.replace(&format!("${}?", i + 1), &format!("${}", self.params.len()));
        }
        self.conds.push(c);
    }

    /// `WHERE …` or nothing.
    pub fn clause(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conds.join(" AND "))
        }
    }

    /// The parameters, for tokio-postgres.
    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }

    /// The placeholder the next parameter will take.
    pub fn next(&self) -> usize {
        self.params.len() + 1
    }
}

/// What a list reads: `SELECT {columns} FROM {from}`.
pub struct Source<'a> {
    /// For error messages, e.g. "hosts".
    pub what: &'a str,
    /// Table with alias, joins allowed.
    pub from: &'a str,
    /// Select list, in the order the row mapper reads.
    pub columns: &'a str,
}

/// One page of `source` under `filter` in `order` (a whole `ORDER BY …`),
/// with the total count.
pub async fn fetch<T>(
    pool: &Pool,
    source: &Source<'_>,
    filter: &Filter,
    order: &str,
    (limit, offset): (i64, i64),
    map: impl Fn(&Row) -> T,
) -> Result<Page<T>, StoreError> {
    // A standby that the HA manager restarts in a failover closes the
    // connection under a read; the page is read again on a fresh one.
    let mut attempt = 0;
    loop {
        match fetch_once(pool, source, filter, order, (limit, offset), &map).await {
            Err(e) if pool.is_readers() && e.is_temporary() && attempt < 2 => attempt += 1,
            other => return other,
        }
    }
}

async fn fetch_once<T>(
    pool: &Pool,
    source: &Source<'_>,
    filter: &Filter,
    order: &str,
    (limit, offset): (i64, i64),
    map: &impl Fn(&Row) -> T,
) -> Result<Page<T>, StoreError> {
    let client = pool.get().await?;
    let mut params = filter.params();
    let total: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {} {}", source.from, filter.clause()),
            &params,
        )
        .await
        .map_err(|e| StoreError::query(format!("counting {}", source.what), e))?
        .get(0);
    let n = filter.next();
    params.push(&limit);
    params.push(&offset);
    let rows = client
        .query(
            &format!(
                "SELECT {} FROM {} {} {order} LIMIT ${n} OFFSET ${}",
                source.columns,
                source.from,
                filter.clause(),
                n + 1
            ),
            &params,
        )
        .await
        .map_err(|e| StoreError::query(format!("listing {}", source.what), e))?;
    Ok(Page {
        items: rows.iter().map(map).collect(),
        total,
        limit,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_are_whitelisted() {
        let allowed = [("name", "h.name"), ("status", "h.status")];
        let mut p = Vec::new();
        assert_eq!(
            order_by(Some("-name"), &allowed, "name", "h.id", &mut p),
            "ORDER BY h.name DESC NULLS LAST, h.id DESC"
        );
        assert!(p.is_empty());
        order_by(Some("password"), &allowed, "name", "h.id", &mut p);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("name, status"), "{p:?}");
    }

    #[test]
    fn filter_numbers_placeholders() {
        let mut f = Filter::default();
        f.add("a = $?", 1i32);
        f.raw("b IS NULL");
        f.add("c = $?", "x".to_string());
        f.add_many(
            "d->>$1? ~ $2?",
            vec![Box::new("k".to_string()), Box::new("v".to_string())],
        );
        assert_eq!(
            f.clause(),
            "WHERE a = $1 AND b IS NULL AND c = $2 AND d->>$3 ~ $4"
        );
        assert_eq!(f.params().len(), 4);
        assert_eq!(f.next(), 5);
    }

    #[test]
    fn bounds_default_and_refuse_out_of_range() {
        let mut p = Vec::new();
        assert_eq!(bounds(None, None, &mut p), (DEFAULT_LIMIT, 0));
        assert!(p.is_empty());
        bounds(Some(0), Some(-1), &mut p);
        bounds(Some(MAX_LIMIT + 1), None, &mut p);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("limit must be between 1 and 1000"));
        assert!(p[1].starts_with("offset"));
    }
}
