//! The snapshot's SQL and its rendering to the text exposition format.

use std::collections::HashMap;
use std::fmt::Write;

use tokio_postgres::Row;

use crate::families::{select_list, Family, ENV, GPU, HOST, XID};

/// Leading label columns of the GPU query, before the families.
const GPU_LABELS: usize = 9;
/// Leading label columns of the host query.
const HOST_LABELS: usize = 2;
/// Leading label columns of the environment query.
const ENV_LABELS: usize = 3;

/// The latest sample of each GPU within the staleness window (`$1`
/// seconds). One index probe per GPU on the (gpu_id, collected_at) key
/// instead of a sort of the window. The upper bound (ingest accepts 5
/// minutes of clock skew) lets plain PostgreSQL prune the empty daily
/// partitions created ahead, which it would otherwise probe for every GPU.
pub fn gpu_sql() -> String {
    format!(
        "SELECT g.id, g.gpu_index, coalesce(g.uuid, ''), coalesce(g.name, ''),
                coalesce(g.pci_bus_id, ''), coalesce(g.driver_version, ''),
                coalesce(nullif(h.hostname, ''), h.name), e.id, c.username, {}
           FROM gpus g
           JOIN hosts h ON h.id = g.host_id
           LEFT JOIN environments e ON e.id = g.allocated_to AND e.deleted_at IS NULL
           LEFT JOIN customers c ON c.id = e.customer_id
           CROSS JOIN LATERAL (
                SELECT * FROM gpu_metrics s
                 WHERE s.gpu_id = g.id AND s.collected_at > now() - make_interval(secs => $1)
                   AND s.collected_at <= now() + interval '10 minutes'
                 ORDER BY s.collected_at DESC LIMIT 1) m
          ORDER BY 7, g.gpu_index",
        select_list(&GPU)
    )
}

/// The latest sample of each host within the staleness window.
pub fn host_sql() -> String {
    format!(
        "SELECT h.id, coalesce(nullif(h.hostname, ''), h.name), {}
           FROM hosts h
           CROSS JOIN LATERAL (
                SELECT * FROM host_metrics s
                 WHERE s.host_id = h.id AND s.collected_at > now() - make_interval(secs => $1)
                   AND s.collected_at <= now() + interval '10 minutes'
                 ORDER BY s.collected_at DESC LIMIT 1) m
          ORDER BY 2, 1",
        select_list(&HOST)
    )
}

/// The latest sample of each live environment within the staleness window.
pub fn env_sql() -> String {
    format!(
        "SELECT e.id, coalesce(c.username, ''), coalesce(nullif(h.hostname, ''), h.name, e.host_id), {}
           FROM environments e
           LEFT JOIN customers c ON c.id = e.customer_id
           LEFT JOIN hosts h ON h.id = e.host_id
           CROSS JOIN LATERAL (
                SELECT * FROM environment_metrics s
                 WHERE s.env_id = e.id AND s.collected_at > now() - make_interval(secs => $1)
                   AND s.collected_at <= now() + interval '10 minutes'
                 ORDER BY s.collected_at DESC LIMIT 1) m
          WHERE e.deleted_at IS NULL
          ORDER BY 1",
        select_list(&ENV)
    )
}

/// A label value as the exposition format wants it.
pub fn escape_label(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    let mut s = String::with_capacity(v.len() + 4);
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.into()
}

fn label(out: &mut String, first: &mut bool, name: &str, value: &str) {
    if !*first {
        out.push(',');
    }
    *first = false;
    out.push_str(name);
    out.push_str("=\"");
    out.push_str(&escape_label(value));
    out.push('"');
}

/// dcgm-exporter's label set, plus the environment and customer a GPU is
/// allocated to.
fn gpu_labels(r: &Row) -> String {
    let mut s = String::with_capacity(200);
    let mut first = true;
    s.push('{');
    let index: i32 = r.get(1);
    label(&mut s, &mut first, "gpu", &index.to_string());
    label(&mut s, &mut first, "UUID", r.get(2));
    label(&mut s, &mut first, "pci_bus_id", r.get(4));
    label(&mut s, &mut first, "device", &format!("nvidia{index}"));
    label(&mut s, &mut first, "modelName", r.get(3));
    label(&mut s, &mut first, "Hostname", r.get(6));
    label(&mut s, &mut first, "DCGM_FI_DRIVER_VERSION", r.get(5));
    if let Some(env) = r.get::<_, Option<&str>>(7) {
        label(&mut s, &mut first, "environment", env);
        label(
            &mut s,
            &mut first,
            "customer",
            r.get::<_, Option<&str>>(8).unwrap_or(""),
        );
    }
    s.push('}');
    s
}

fn host_labels(r: &Row) -> String {
    let mut s = String::from("{");
    let mut first = true;
    label(&mut s, &mut first, "Hostname", r.get(1));
    label(&mut s, &mut first, "host_id", r.get(0));
    s.push('}');
    s
}

fn env_labels(r: &Row) -> String {
    let mut s = String::from("{");
    let mut first = true;
    label(&mut s, &mut first, "environment", r.get(0));
    label(&mut s, &mut first, "customer", r.get(1));
    label(&mut s, &mut first, "Hostname", r.get(2));
    s.push('}');
    s
}

fn header(out: &mut String, f: &Family) {
    let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
    let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
}

fn value(out: &mut String, v: f64) {
    // Integers (clocks, bytes, counters) print without a fraction, as
    // the exporters we stand in for print them.
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Writes each family's lines for `rows`, skipping NULLs (a field the
/// GPU does not support is absent, as in dcgm-exporter).
fn families(out: &mut String, families: &[Family], rows: &[Row], labels: &[String], skip: usize) {
    for (i, f) in families.iter().enumerate() {
        let col = skip + i;
        let mut wrote_header = false;
        for (r, l) in rows.iter().zip(labels) {
            let Some(v) = r.get::<_, Option<f64>>(col) else {
                continue;
            };
            if !wrote_header {
                header(out, f);
                wrote_header = true;
            }
            out.push_str(f.name);
            out.push_str(l);
            out.push(' ');
            value(out, v);
            out.push('\n');
        }
    }
}

/// The fleet's exposition text.
pub fn render(
    gpus: &[Row],
    hosts: &[Row],
    envs: &[Row],
    lag: &[Row],
    xids: &HashMap<i64, i32>,
) -> String {
    let gl: Vec<String> = gpus.iter().map(gpu_labels).collect();
    let hl: Vec<String> = hosts.iter().map(host_labels).collect();
    let el: Vec<String> = envs.iter().map(env_labels).collect();
    let per_line = gl.first().map_or(64, |l| l.len() + 48);
    let mut out =
        String::with_capacity(per_line * (gpus.len() * (GPU.len() + 1) + hosts.len() * HOST.len()));
    families(&mut out, &GPU, gpus, &gl, GPU_LABELS);
    if !gpus.is_empty() {
        header(&mut out, &XID);
        for (r, l) in gpus.iter().zip(&gl) {
            let id: i64 = r.get(0);
            out.push_str(XID.name);
            out.push_str(l);
            out.push(' ');
            value(&mut out, f64::from(xids.get(&id).copied().unwrap_or(0)));
            out.push('\n');
        }
    }
    families(&mut out, &HOST, hosts, &hl, HOST_LABELS);
    families(&mut out, &ENV, envs, &el, ENV_LABELS);
    if !lag.is_empty() {
        out.push_str("# HELP gpuwatch_aggregator_tier_lag_seconds How far each tier's watermark is behind now.\n");
        out.push_str("# TYPE gpuwatch_aggregator_tier_lag_seconds gauge\n");
        for r in lag {
            let mut l = String::from("{");
            let mut first = true;
            label(&mut l, &mut first, "source", r.get(0));
            label(&mut l, &mut first, "tier", r.get(1));
            l.push('}');
            out.push_str("gpuwatch_aggregator_tier_lag_seconds");
            out.push_str(&l);
            out.push(' ');
            value(&mut out, r.get::<_, f64>(2));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_label;

    #[test]
    fn escapes_what_the_format_requires() {
        assert_eq!(escape_label("plain"), "plain");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
