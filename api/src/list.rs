//! Lists: pagination, sorting and filters, the same on every collection.
//!
//! A list answers `{"items": [...], "total", "limit", "offset"}`; `limit`
//! defaults to 50 (at most 1000), `sort` names a column, `-column` for
//! descending. A sort key or filter that is not allowed is a 400 that lists
//! the allowed ones.

use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::Serialize;
use tokio_postgres::types::ToSql;

use crate::ApiError;

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 1000;

/// One page of a collection.
#[derive(Debug, Serialize, JsonSchema)]
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

/// Checked `limit` and `offset`.
pub fn window(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {MAX_LIMIT}, got {limit}"),
        ));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("offset must not be negative, got {offset}"),
        ));
    }
    Ok((limit, offset))
}

/// `ORDER BY` for `sort` (`col` or `-col`), from the allowed `(key, sql)`
/// pairs; a unique tiebreaker keeps pages stable.
pub fn order_by(
    sort: Option<&str>,
    allowed: &[(&str, &str)],
    default: &str,
    tiebreak: &str,
) -> Result<String, ApiError> {
    let spec = sort.unwrap_or(default);
    let (key, dir) = match spec.strip_prefix('-') {
        Some(k) => (k, "DESC"),
        None => (spec, "ASC"),
    };
    let Some((_, sql)) = allowed.iter().find(|(k, _)| *k == key) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "cannot sort by {key:?}; sort by one of {} (prefix - for descending)",
                allowed
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    Ok(format!("ORDER BY {sql} {dir} NULLS LAST, {tiebreak} {dir}"))
}

/// A WHERE clause and its parameters, built one condition at a time.
#[derive(Default)]
pub struct Filter {
    conds: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
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
pub struct Source {
    /// For error messages, e.g. "hosts".
    pub what: &'static str,
    /// Table with alias, joins allowed.
    pub from: &'static str,
    /// Select list, in the order the row mapper reads.
    pub columns: &'static str,
}

/// One page of `source` under `filter`, with the total count.
pub async fn fetch<T>(
    pool: &gpuwatch_store::Pool,
    source: &Source,
    filter: &Filter,
    order: &str,
    (limit, offset): (i64, i64),
    map: fn(&tokio_postgres::Row) -> T,
) -> Result<Page<T>, ApiError> {
    use gpuwatch_store::StoreError;
    let client = pool.get().await?;
    let params = filter.params();
    let total: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {} {}", source.from, filter.clause()),
            &params,
        )
        .await
        .map_err(|e| StoreError::query(format!("counting {}", source.what), e))?
        .get(0);
    let rows = client
        .query(
            &format!(
                "SELECT {} FROM {} {} {order} LIMIT {limit} OFFSET {offset}",
                source.columns,
                source.from,
                filter.clause()
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

/// `key=value` label filters as a JSON object for `labels @> $n`.
pub fn labels(spec: Option<&str>) -> Result<Option<serde_json::Value>, ApiError> {
    let Some(spec) = spec else { return Ok(None) };
    let mut m = serde_json::Map::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("label filter {part:?} must be key=value (several: k1=v1,k2=v2)"),
            ));
        };
        m.insert(
            k.trim().to_string(),
            serde_json::Value::String(v.trim().to_string()),
        );
    }
    Ok(Some(serde_json::Value::Object(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_are_whitelisted() {
        let allowed = [("name", "h.name"), ("status", "h.status")];
        assert_eq!(
            order_by(Some("-name"), &allowed, "name", "h.id").unwrap(),
            "ORDER BY h.name DESC NULLS LAST, h.id DESC"
        );
        let e = order_by(Some("password"), &allowed, "name", "h.id").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("name, status"), "{}", e.message);
    }

    #[test]
    fn filter_numbers_placeholders() {
        let mut f = Filter::default();
        f.add("a = $?", 1i32);
        f.raw("b IS NULL");
        f.add("c = $?", "x".to_string());
        assert_eq!(f.clause(), "WHERE a = $1 AND b IS NULL AND c = $2");
        assert_eq!(f.params().len(), 2);
        assert_eq!(f.next(), 3);
    }

    #[test]
    fn window_bounds() {
        assert_eq!(window(None, None).unwrap(), (DEFAULT_LIMIT, 0));
        assert!(window(Some(0), None).is_err());
        assert!(window(Some(MAX_LIMIT + 1), None).is_err());
        assert!(window(None, Some(-1)).is_err());
    }

    #[test]
    fn label_filters() {
        assert_eq!(
            labels(Some("rack=r1,zone=a")).unwrap().unwrap(),
            serde_json::json!({"rack": "r1", "zone": "a"})
        );
        assert!(labels(Some("rack")).is_err());
    }
}
