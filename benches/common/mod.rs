//! Helpers the benches share (a subfolder, so cargo does not take it for a bench).

/// splitmix64: deterministic noise from a sample's coordinates.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `x` rounded to `places` decimals, as an agent would report it.
pub fn round(x: f64, places: i32) -> f64 {
    let p = 10f64.powi(places);
    (x * p).round() / p
}

/// A row of `S` with every column set from the store's catalogue: metrics
/// to a value inside their ingest range, so a bench's generator that sets
/// the columns it models with `..plausible()` stays complete when a metric
/// is added.
#[allow(dead_code)] // not every bench generates rows
pub fn plausible<S>() -> S
where
    S: gpuwatch_store::Sample + serde::de::DeserializeOwned,
{
    use gpuwatch_store::catalogue::{Range, Role, SqlType};
    use serde_json::{json, Value};
    let row: serde_json::Map<String, Value> = S::CATALOGUE
        .iter()
        .map(|c| {
            let (lo, hi) = match c.spec.range {
                Range::Within(lo, hi) => (lo, hi),
                Range::NonNegative | Range::Unchecked => (0.0, 100.0),
            };
            let x = lo + (hi - lo) * 0.3;
            let v = match (c.spec.role, c.sql) {
                (Role::Time, _) => json!("2026-01-01T00:00:00Z"),
                (_, SqlType::Varchar) => json!("bench"),
                (_, SqlType::Int4 | SqlType::Int8) => json!(x.round() as i64),
                (_, SqlType::Float8) => json!(x),
                (_, SqlType::Timestamptz) => json!("2026-01-01T00:00:00Z"),
            };
            (c.name.to_string(), v)
        })
        .collect();
    serde_json::from_value(Value::Object(row)).expect("the catalogue describes the row")
}
