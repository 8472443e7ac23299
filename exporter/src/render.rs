//! The snapshot's SQL and its rendering to the text exposition format.

use std::collections::HashMap;
use std::fmt::Write;

use tokio_postgres::Row;

use gpuwatch_store::catalogue::{Number, Value};

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
          WHERE g.removed_at IS NULL
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

/// `{k="v",...}` of `pairs`, escaped, in the order given.
pub fn label_set(pairs: &[(&str, &str)]) -> String {
    let mut s = String::with_capacity(
        16 + pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>(),
    );
    let mut first = true;
    s.push('{');
    for (k, v) in pairs {
        label(&mut s, &mut first, k, v);
    }
    s.push('}');
    s
}

/// What dcgm-exporter labels a GPU with, plus labels of the caller's
/// (the environment and customer it is allocated to on `gpuwatch serve`;
/// its pod, namespace and container on the agent).
#[derive(Debug, Clone, Copy)]
pub struct GpuLabels<'a> {
    /// NVML index.
    pub index: i32,
    /// `UUID`.
    pub uuid: &'a str,
    /// `pci_bus_id`.
    pub pci_bus_id: &'a str,
    /// `modelName`.
    pub model_name: &'a str,
    /// `Hostname`.
    pub hostname: &'a str,
    /// `DCGM_FI_DRIVER_VERSION`.
    pub driver_version: &'a str,
    /// Appended after dcgm-exporter's own labels.
    pub extra: &'a [(&'a str, &'a str)],
}

impl GpuLabels<'_> {
    /// The label set, `{gpu="0",UUID="…",…}`.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(200);
        let mut first = true;
        s.push('{');
        label(&mut s, &mut first, "gpu", &self.index.to_string());
        label(&mut s, &mut first, "UUID", self.uuid);
        label(&mut s, &mut first, "pci_bus_id", self.pci_bus_id);
        label(
            &mut s,
            &mut first,
            "device",
            &format!("nvidia{}", self.index),
        );
        label(&mut s, &mut first, "modelName", self.model_name);
        label(&mut s, &mut first, "Hostname", self.hostname);
        label(
            &mut s,
            &mut first,
            "DCGM_FI_DRIVER_VERSION",
            self.driver_version,
        );
        for (k, v) in self.extra {
            label(&mut s, &mut first, k, v);
        }
        s.push('}');
        s
    }
}

/// dcgm-exporter's label set, plus the environment and customer a GPU is
/// allocated to.
fn gpu_labels(r: &Row) -> String {
    let env: Option<&str> = r.get(7);
    let customer = r.get::<_, Option<&str>>(8).unwrap_or("");
    let extra: &[(&str, &str)] = match env {
        Some(env) => &[("environment", env), ("customer", customer)],
        None => &[],
    };
    GpuLabels {
        index: r.get(1),
        uuid: r.get(2),
        pci_bus_id: r.get(4),
        model_name: r.get(3),
        hostname: r.get(6),
        driver_version: r.get(5),
        extra,
    }
    .render()
}

fn host_labels(r: &Row) -> String {
    label_set(&[("Hostname", r.get(1)), ("host_id", r.get(0))])
}

fn env_labels(r: &Row) -> String {
    label_set(&[
        ("environment", r.get(0)),
        ("customer", r.get(1)),
        ("Hostname", r.get(2)),
    ])
}

/// `# HELP` and `# TYPE` of a family.
pub fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line: `name{labels} value`.
pub fn sample_line(out: &mut String, name: &str, labels: &str, v: f64) {
    out.push_str(name);
    out.push_str(labels);
    out.push(' ');
    value(out, v);
    out.push('\n');
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

/// Writes each family's lines for the series labelled `labels`, skipping
/// missing values (a field the GPU does not support is absent, as in
/// dcgm-exporter). `value(series, family)` is the family's value of a series.
fn families(
    out: &mut String,
    families: &[Family],
    labels: &[String],
    value: impl Fn(usize, usize) -> Option<f64>,
) {
    for (i, f) in families.iter().enumerate() {
        let mut wrote_header = false;
        for (r, l) in labels.iter().enumerate() {
            let Some(v) = value(r, i) else {
                continue;
            };
            if !wrote_header {
                header(out, f.name, f.help, f.kind);
                wrote_header = true;
            }
            sample_line(out, f.name, l, v);
        }
    }
}

/// The GPU families, then DCGM's sticky last XID, for the GPUs labelled
/// `labels`: one path for `gpuwatch serve` (rows of the database) and the
/// agent (samples in memory). `value(gpu, family)` is the value of
/// [`GPU`]`[family]`; `xid(gpu)` the last XID seen (0 for none).
pub fn gpu_families(
    out: &mut String,
    labels: &[String],
    value: impl Fn(usize, usize) -> Option<f64>,
    xid: impl Fn(usize) -> i32,
) {
    families(out, &GPU, labels, value);
    if !labels.is_empty() {
        header(out, XID.name, XID.help, XID.kind);
        for (g, l) in labels.iter().enumerate() {
            sample_line(out, XID.name, l, f64::from(xid(g)));
        }
    }
}

/// The value of family `f` in a sample held in memory, whose catalogue
/// numbers are `numbers` ([`gpuwatch_store::Sample::numbers`]), converted as
/// the family's SQL converts it; `None` where the field is NULL or the
/// family is not computed from one column (see the test that keeps GPU
/// families computable).
pub fn sample_value(f: &Family, numbers: &[Option<Number>]) -> Option<f64> {
    let (column, how) = f.sample?;
    let n = (*numbers.get(column)?)?;
    match (how, n) {
        (Value::Column, Number::Int(x)) => Some(x as f64),
        (Value::Column, Number::Float(x)) => Some(x),
        // SQL's integer division truncates, as Rust's does.
        (Value::Divided(d), Number::Int(x)) => Some((x / d) as f64),
        (Value::Divided(d), Number::Float(x)) => Some(x / d as f64),
        (Value::Sql(_), _) => None,
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
    let column =
        |rows: &[Row], skip: usize, r: usize, i: usize| rows[r].get::<_, Option<f64>>(skip + i);
    gpu_families(
        &mut out,
        &gl,
        |r, i| column(gpus, GPU_LABELS, r, i),
        |r| xids.get(&gpus[r].get::<_, i64>(0)).copied().unwrap_or(0),
    );
    families(&mut out, &HOST, &hl, |r, i| {
        column(hosts, HOST_LABELS, r, i)
    });
    families(&mut out, &ENV, &el, |r, i| column(envs, ENV_LABELS, r, i));
    if !lag.is_empty() {
        out.push_str("# HELP gpuwatch_aggregator_tier_lag_seconds How far each tier's watermark is behind now.\n");
        out.push_str("# TYPE gpuwatch_aggregator_tier_lag_seconds gauge\n");
        for r in lag {
            let l = label_set(&[("source", r.get(0)), ("tier", r.get(1))]);
            sample_line(
                &mut out,
                "gpuwatch_aggregator_tier_lag_seconds",
                &l,
                r.get::<_, f64>(2),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpuwatch_store::{GpuSample, Sample};

    /// The agent renders GPUs from samples in memory: a GPU family whose
    /// value only SQL can compute would silently vanish from its /metrics.
    #[test]
    fn every_gpu_family_is_computable_from_a_sample() {
        for f in GPU.iter() {
            let (column, how) = f
                .sample
                .unwrap_or_else(|| panic!("{} has no column", f.name));
            assert!(!matches!(how, Value::Sql(_)), "{} needs SQL", f.name);
            assert_eq!(
                GpuSample::CATALOGUE[column].spec.export.map(|e| e.name),
                Some(f.name)
            );
        }
    }

    #[test]
    fn sample_values_convert_as_the_sql_does() {
        let s = GpuSample {
            memory_used: Some(3 * 1_048_576 + 5),
            temperature: Some(71.5),
            sm_clock: Some(1980),
            ..Default::default()
        };
        let n = s.numbers();
        let of = |name: &str| sample_value(GPU.iter().find(|f| f.name == name).unwrap(), &n);
        assert_eq!(of("DCGM_FI_DEV_FB_USED"), Some(3.0));
        assert_eq!(of("DCGM_FI_DEV_GPU_TEMP"), Some(71.5));
        assert_eq!(of("DCGM_FI_DEV_SM_CLOCK"), Some(1980.0));
        assert_eq!(of("DCGM_FI_DEV_POWER_USAGE"), None);
    }

    #[test]
    fn gpu_labels_are_dcgm_exporters_then_the_callers() {
        let l = GpuLabels {
            index: 1,
            uuid: "GPU-1",
            pci_bus_id: "00000000:3B:00.0",
            model_name: "NVIDIA H100",
            hostname: "h\"1",
            driver_version: "550.54",
            extra: &[("pod", "p")],
        };
        assert_eq!(
            l.render(),
            "{gpu=\"1\",UUID=\"GPU-1\",pci_bus_id=\"00000000:3B:00.0\",device=\"nvidia1\",modelName=\"NVIDIA H100\",Hostname=\"h\\\"1\",DCGM_FI_DRIVER_VERSION=\"550.54\",pod=\"p\"}"
        );
    }

    #[test]
    fn escapes_what_the_format_requires() {
        assert_eq!(escape_label("plain"), "plain");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
