//! Lists: pagination, sorting and filters, the same on every collection.
//!
//! A list answers `{"items": [...], "total", "limit", "offset"}`; `limit`
//! defaults to 50 (at most 1000), `sort` names a column, `-column` for
//! descending. A sort key or filter that is not allowed is a 400 that lists
//! the allowed ones. The paging itself is the store's
//! [`gpuwatch_store::listing`], shared with the alerter and billing; this
//! module only turns its problems into 400s.

use axum::http::StatusCode;
use gpuwatch_store::listing;
use gpuwatch_store::matcher::{parse_matchers, MatchOp};

pub use gpuwatch_store::listing::{Filter, Page, Source, DEFAULT_LIMIT, MAX_LIMIT};

use crate::ApiError;

fn bad_request(problems: Vec<String>) -> Result<(), ApiError> {
    if problems.is_empty() {
        return Ok(());
    }
    let mut e = ApiError::new(StatusCode::BAD_REQUEST, problems.join("; "));
    e.details = problems;
    Err(e)
}

/// Checked `limit` and `offset`.
pub fn window(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let mut p = Vec::new();
    let w = listing::bounds(limit, offset, &mut p);
    bad_request(p)?;
    Ok(w)
}

/// `ORDER BY` for `sort` (`col` or `-col`), from the allowed `(key, sql)`
/// pairs; a unique tiebreaker keeps pages stable.
pub fn order_by(
    sort: Option<&str>,
    allowed: &[(&str, &str)],
    default: &str,
    tiebreak: &str,
) -> Result<String, ApiError> {
    let mut p = Vec::new();
    let o = listing::order_by(sort, allowed, default, tiebreak, &mut p);
    bad_request(p)?;
    Ok(o)
}

/// One page of `source` under `filter`, with the total count.
pub async fn fetch<T>(
    pool: &gpuwatch_store::Pool,
    source: &Source<'_>,
    filter: &Filter,
    order: &str,
    win: (i64, i64),
    map: fn(&tokio_postgres::Row) -> T,
) -> Result<Page<T>, ApiError> {
    Ok(listing::fetch(pool, source, filter, order, win, map).await?)
}

/// Adds the `label=` filter on the JSONB label column `column`: matchers in
/// the language of rules and silences (`rack=r1,zone!=b,gpu=~"0|1"`, braces
/// optional). `=` with a value uses `@>` (the GIN index); the other
/// operators compare `column->>name`, a missing label reading as "".
pub fn labels(f: &mut Filter, column: &str, spec: Option<&str>) -> Result<(), ApiError> {
    let Some(spec) = spec else { return Ok(()) };
    let matchers = parse_matchers(spec).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("label filter {spec:?}: {e} (several: k1=v1,k2=v2)"),
        )
    })?;
    for m in matchers {
        let (name, value) = (m.name().to_string(), m.value().to_string());
        let text = format!("COALESCE({column}->>$1?, '')");
        match m.op() {
            MatchOp::Eq if !value.is_empty() => f.add(
                &format!("{column} @> $?"),
                serde_json::json!({ name: value }),
            ),
            MatchOp::Eq => f.add_many(&format!("{text} = ''"), vec![Box::new(name)]),
            MatchOp::NotEq => f.add_many(
                &format!("{text} <> $2?"),
                vec![Box::new(name), Box::new(value)],
            ),
            op => f.add_many(
                &format!("{text} {} $2?", if op == MatchOp::Re { "~" } else { "!~" }),
                vec![Box::new(name), Box::new(format!("^(?:{value})$"))],
            ),
        }
    }
    Ok(())
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
        let mut f = Filter::default();
        labels(&mut f, "h.labels", Some("rack=r1,zone=a")).unwrap();
        assert_eq!(f.clause(), "WHERE h.labels @> $1 AND h.labels @> $2");
        let mut f = Filter::default();
        labels(
            &mut f,
            "h.labels",
            Some(r#"{zone!="b", gpu=~"0|1", os!~win.*, spare=""}"#),
        )
        .unwrap();
        assert_eq!(
            f.clause(),
            "WHERE COALESCE(h.labels->>$1, '') <> $2 AND COALESCE(h.labels->>$3, '') ~ $4 \
             AND COALESCE(h.labels->>$5, '') !~ $6 AND COALESCE(h.labels->>$7, '') = ''"
        );
        let e = labels(&mut Filter::default(), "h.labels", Some("rack")).unwrap_err();
        assert!(e.message.contains("key=value"), "{}", e.message);
        assert!(labels(&mut Filter::default(), "h.labels", Some("rack=~(")).is_err());
    }
}
