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

/// The number after `name` on the command line, or `default`; other
/// arguments (cargo passes `--bench`) are ignored.
#[allow(dead_code)] // not every bench takes numbers
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    let Some(i) = args.iter().position(|a| a == name) else {
        return default;
    };
    let value = args.get(i + 1).and_then(|v| v.parse().ok());
    value
        .filter(|&n| n > 0)
        .unwrap_or_else(|| panic!("{name} needs a positive number"))
}

/// `n rows in T s = R rows/s`, the rate grouped by thousands.
#[allow(dead_code)] // not every bench reports rates
pub fn rate(n: u64, d: std::time::Duration) -> String {
    format!(
        "{n} rows in {:.1} s = {} rows/s",
        d.as_secs_f64(),
        grouped(n as f64 / d.as_secs_f64())
    )
}

/// `x` rounded and grouped by thousands: 1234567.8 → "1,234,568".
#[allow(dead_code)] // not every bench reports rates
pub fn grouped(x: f64) -> String {
    let digits = (x.round() as u64).to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A bench fleet's inventory: `hosts` hosts named `bench-host-001`… of
/// `per_host` GPUs each, GPU `i` with UUID `GPU-bench-{i}` (registered in
/// that order, so it gets `gpus.id` i + 1 in a fresh database).
#[allow(dead_code)] // not every bench registers hosts
pub fn inventory(
    hosts: usize,
    per_host: usize,
) -> Vec<(
    gpuwatch_store::inventory::HostInfo,
    Vec<gpuwatch_store::inventory::GpuInfo>,
)> {
    use gpuwatch_store::inventory::{GpuInfo, HostInfo};
    (0..hosts)
        .map(|h| {
            let id = format!("bench-host-{:03}", h + 1);
            let host = HostInfo {
                id: id.clone(),
                name: id.clone(),
                hostname: format!("{id}.bench"),
                ip_address: format!("10.0.{h}.1"),
                os_type: "linux".into(),
                os_version: "Debian 12".into(),
                arch: "x86_64".into(),
                total_cpu: 128,
                total_memory: 1 << 40,
                total_disk: 1 << 42,
                total_gpu: per_host as i32,
                labels: serde_json::json!({"bench": "true"}),
            };
            let gpus = (0..per_host)
                .map(|g| GpuInfo {
                    host_id: id.clone(),
                    gpu_index: g as i32,
                    uuid: format!("GPU-bench-{}", h * per_host + g),
                    name: "NVIDIA H100 80GB HBM3".into(),
                    brand: "NVIDIA".into(),
                    architecture: "Hopper".into(),
                    memory_total: 80 << 30,
                    compute_capability: "9.0".into(),
                    power_limit: Some(700),
                    temperature_limit: Some(87),
                    pci_bus_id: None,
                    driver_version: None,
                    serial: None,
                    vbios_version: None,
                })
                .collect();
            (host, gpus)
        })
        .collect()
}

/// The rows as CSV in `S::COLUMNS` order; NULL is an empty field, psql
/// CSV's default null.
#[allow(dead_code)] // not every bench copies CSV
pub fn write_csv<S: gpuwatch_store::Sample + serde::Serialize>(
    rows: &[S],
    path: &std::path::Path,
) -> std::io::Result<()> {
    use std::io::Write;
    let file = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    for r in rows {
        let v = serde_json::to_value(r)?;
        for (i, col) in S::COLUMNS.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            match &v[*col] {
                serde_json::Value::Null => write!(w, "{sep}")?,
                serde_json::Value::String(s) => write!(w, "{sep}{s}")?,
                other => write!(w, "{sep}{other}")?,
            }
        }
        writeln!(w)?;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}
