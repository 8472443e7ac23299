//! The Grafana dashboards of `dashboards/`: their structure (unique panel
//! ids, data sources that the provisioning file defines, variables defined
//! before use, seed 004's colours and thresholds, DCGM names on the
//! Prometheus dashboard), and every SQL panel query, expanded as Grafana
//! expands it for the last 1 hour, 7 days and 1 year, run against a
//! database filled with simulated fleet history on both backends: each
//! must return rows of the shape its panel type draws, under the read-only
//! role of `dashboards/grafana_role.sql`. The Prometheus dashboard's PromQL
//! runs on a real Prometheus scraping `gpuwatch serve` over such a fleet.

use crate::common::{self, free_port, ChildGuard, Prometheus};

use std::collections::{HashMap, HashSet};

use crate::dashboards_support::grafana::{self, Range, VarValue, Vars};
use crate::dashboards_support::history::{generate, Spec};
use chrono::{Duration, Utc};
use gpuwatch_store::both_backends;
use serde_json::{json, Value};
use tokio_postgres::types::Type;

const POSTGRES: &str = "grafana-postgresql-datasource";
const DCGM: &[&str] = &[
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_DEV_XID_ERRORS",
];
const DCGM_LABELS: &[&str] = &["gpu", "UUID", "device", "modelName", "Hostname"];
const PROMQL_WORDS: &[&str] = &[
    "avg",
    "sum",
    "max",
    "min",
    "by",
    "without",
    "rate",
    "irate",
    "increase",
    "count",
    "label_values",
    "topk",
    "bottomk",
];

/// Everything wrong with one dashboard's structure.
fn structure_problems(d: &Value, ds: &HashMap<String, (String, Value)>) -> Vec<String> {
    let mut p = Vec::new();
    let title = d["title"].as_str().unwrap_or("?");
    let check_ds = |what: &str, r: &Value, p: &mut Vec<String>| {
        if r.is_null() {
            return;
        }
        let uid = r["uid"].as_str().unwrap_or_default();
        let ty = r["type"].as_str().unwrap_or_default();
        if ty == "grafana" || ty == "datasource" {
            return; // Grafana's built-in annotations and mixed sources
        }
        match ds.get(uid) {
            None => p.push(format!("{title}: {what} uses data source uid {uid:?}, which the provisioning file does not define")),
            Some((t, _)) if t != ty => p.push(format!("{title}: {what} says type {ty:?} for {uid}, provisioned as {t:?}")),
            Some(_) => {}
        }
    };
    for key in ["uid", "title"] {
        if d[key].as_str().map_or(true, str::is_empty) {
            p.push(format!("{title}: no {key}"));
        }
    }
    if d["refresh"] != "30s" {
        p.push(format!(
            "{title}: refresh must be 30s (seed 004), is {}",
            d["refresh"]
        ));
    }
    let quick: Vec<&str> = d["timepicker"]["quick_ranges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| q["from"].as_str())
        .collect();
    if quick != ["now-1h", "now-6h", "now-24h", "now-7d", "now-30d"] {
        p.push(format!(
            "{title}: quick ranges must be 1h, 6h, 24h, 7d, 30d (seed 004), are {quick:?}"
        ));
    }

    // Variables: defined before use, data sources provisioned.
    let vars: Vec<&Value> = d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let names: Vec<String> = vars
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let known = |n: &str, upto: usize| {
        names[..upto].iter().any(|x| x == n) || grafana::BUILTINS.contains(&n)
    };
    for (i, v) in vars.iter().enumerate() {
        check_ds(&format!("variable {}", names[i]), &v["datasource"], &mut p);
        for r in grafana::references(&grafana::variable_query(v)) {
            if !known(&r, i) {
                p.push(format!(
                    "{title}: variable {} uses ${r} before it is defined",
                    names[i]
                ));
            }
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        check_ds("an annotation", &a["datasource"], &mut p);
    }

    // Panels: unique ids, provisioned data sources, defined variables.
    let mut ids = HashSet::new();
    for panel in grafana::panels(d) {
        let pt = panel["title"].as_str().unwrap_or("?");
        match panel["id"].as_i64() {
            None => p.push(format!("{title}: panel {pt:?} has no id")),
            Some(id) if !ids.insert(id) => {
                p.push(format!("{title}: panel id {id} ({pt:?}) is used twice"))
            }
            Some(_) => {}
        }
        if panel["type"] == "row" {
            continue;
        }
        check_ds(&format!("panel {pt:?}"), &panel["datasource"], &mut p);
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            p.push(format!("{title}: panel {pt:?} has no query"));
        }
        for t in &targets {
            check_ds(
                &format!("panel {pt:?} query {}", t["refId"]),
                &t["datasource"],
                &mut p,
            );
            let text = t["rawSql"]
                .as_str()
                .or(t["expr"].as_str())
                .unwrap_or_default();
            if text.is_empty() {
                p.push(format!(
                    "{title}: panel {pt:?} query {} is empty",
                    t["refId"]
                ));
            }
            for r in grafana::references(text) {
                if !known(&r, names.len()) {
                    p.push(format!(
                        "{title}: panel {pt:?} uses ${r}, which is not a variable"
                    ));
                }
            }
            if let Some(sql) = t["rawSql"].as_str() {
                let metric_table = ["gpu_metrics", "host_metrics", "environment_metrics"]
                    .iter()
                    .any(|m| sql.contains(m));
                let tiered =
                    sql.contains("gpuwatch_series(") || sql.contains("gpuwatch_counter_rate(");
                if panel["type"] == "timeseries" && metric_table && !tiered {
                    p.push(format!("{title}: time series {pt:?} reads a metric table without the tier-aware functions"));
                }
            }
            if let Some(expr) = t["expr"].as_str() {
                p.extend(
                    promql_problems(expr)
                        .into_iter()
                        .map(|e| format!("{title}: panel {pt:?}: {e}")),
                );
            }
        }
    }
    p
}

/// Metric names and label names of a PromQL expression outside the DCGM set.
fn promql_problems(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Drop quoted strings (label values, legend text) first.
    let mut plain = String::new();
    let mut in_str = false;
    for ch in expr.chars() {
        if ch == '"' {
            in_str = !in_str;
        } else if !in_str {
            plain.push(ch);
        }
    }
    let mut depth_brace = false;
    let mut word = String::new();
    for ch in plain.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            word.push(ch);
            continue;
        }
        if !word.is_empty() && !word.chars().all(|c| c.is_ascii_digit()) {
            if depth_brace {
                if !DCGM_LABELS.contains(&word.as_str()) {
                    out.push(format!(
                        "label {word} is not one of dcgm-exporter's {DCGM_LABELS:?}"
                    ));
                }
            } else if word.starts_with("DCGM_") {
                if !DCGM.contains(&word.as_str()) {
                    out.push(format!("metric {word} is not one gpuwatch exports"));
                }
            } else if !PROMQL_WORDS.contains(&word.as_str())
                && !DCGM_LABELS.contains(&word.as_str())
            {
                out.push(format!(
                    "{word} is neither a DCGM metric nor a known PromQL function"
                ));
            }
        }
        word.clear();
        match ch {
            '{' => depth_brace = true,
            '}' => depth_brace = false,
            _ => {}
        }
    }
    out
}

#[test]
fn dashboards_are_well_formed_and_reference_only_provisioned_sources() {
    let ds = grafana::datasources();
    let kinds: HashSet<&str> = ds.values().map(|(t, _)| t.as_str()).collect();
    assert!(
        kinds.contains("grafana-postgresql-datasource"),
        "a PostgreSQL data source is provisioned"
    );
    assert!(
        kinds.contains("prometheus"),
        "a Prometheus data source is provisioned"
    );
    let dashboards = grafana::load_all();
    let titles: Vec<&str> = dashboards
        .iter()
        .filter_map(|d| d.json["title"].as_str())
        .collect();
    for want in [
        "Fleet overview",
        "Host detail",
        "GPU detail",
        "Environment detail",
        "Alerts",
        "Billing",
        "Prometheus",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "no dashboard titled {want:?} in {titles:?}"
        );
    }
    let mut uids = HashSet::new();
    let mut problems = Vec::new();
    for d in &dashboards {
        assert!(
            uids.insert(d.json["uid"].to_string()),
            "{}: uid used twice",
            d.file
        );
        problems.extend(
            structure_problems(&d.json, &ds)
                .into_iter()
                .map(|e| format!("{}: {e}", d.file)),
        );
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );

    let text =
        std::fs::read_to_string(grafana::dir().join("provisioning/dashboards/gpuwatch.yaml"))
            .unwrap();
    let y: Value =
        serde_json::to_value(serde_yaml::from_str::<serde_yaml::Value>(&text).unwrap()).unwrap();
    let provider = &y["providers"][0];
    assert_eq!(
        provider["type"], "file",
        "the dashboard provider reads files"
    );
    assert!(
        provider["options"]["path"]
            .as_str()
            .is_some_and(|p| !p.is_empty()),
        "provider path"
    );
}

#[test]
fn the_structure_check_finds_what_it_looks_for() {
    let ds = grafana::datasources();
    let host = grafana::load_all()
        .into_iter()
        .find(|d| d.file == "gpu-detail.json")
        .unwrap()
        .json;
    assert!(structure_problems(&host, &ds).is_empty());
    let mut bad = host.clone();
    let id = bad["panels"][0]["id"].clone();
    bad["panels"][1]["id"] = id;
    assert!(structure_problems(&bad, &ds)
        .iter()
        .any(|e| e.contains("used twice")));
    let mut bad = host.clone();
    bad["panels"][0]["datasource"]["uid"] = json!("nope");
    assert!(structure_problems(&bad, &ds)
        .iter()
        .any(|e| e.contains("does not define")));
    let mut bad = host.clone();
    bad["templating"]["list"].as_array_mut().unwrap().reverse();
    assert!(structure_problems(&bad, &ds)
        .iter()
        .any(|e| e.contains("before it is defined")));
    let mut bad = host.clone();
    bad["panels"][0]["targets"][0]["rawSql"] = json!("SELECT 1 WHERE '$nosuch' = ''");
    assert!(structure_problems(&bad, &ds)
        .iter()
        .any(|e| e.contains("$nosuch")));
    assert!(promql_problems("avg(DCGM_FI_DEV_GPU_UTIL{Hostname=~\"$h\"})").is_empty());
    assert!(!promql_problems("DCGM_FI_DEV_NOPE{instance=\"x\"}").is_empty());
}

#[test]
fn seed_004_colours_gauges_and_thresholds_are_drawn() {
    let all = grafana::load_all();
    let find = |file: &str| &all.iter().find(|d| d.file == file).unwrap().json;
    let colours = |p: &Value| -> Vec<String> {
        p["fieldConfig"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| {
                o["properties"][0]["value"]["fixedColor"]
                    .as_str()
                    .map(String::from)
            })
            .collect()
    };
    let host = grafana::panels(find("host-detail.json"));
    assert!(
        host.iter()
            .any(|p| colours(p) == ["#409EFF", "#67C23A", "#E6A23C", "#F56C6C"]),
        "host chart in seed 004's colours"
    );
    let env = grafana::panels(find("environment-detail.json"));
    assert!(
        env.iter()
            .any(|p| colours(p) == ["#409EFF", "#67C23A", "#F56C6C"]),
        "environment chart in seed 004's colours"
    );
    let gauges: Vec<&Value> = grafana::panels(find("gpu-detail.json"))
        .into_iter()
        .filter(|p| p["type"] == "gauge")
        .collect();
    assert_eq!(
        gauges.len(),
        4,
        "utilisation, memory, temperature and power gauges"
    );
    let steps = |p: &Value| -> Vec<f64> {
        p["fieldConfig"]["defaults"]["thresholds"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["value"].as_f64())
            .collect()
    };
    assert!(gauges
        .iter()
        .any(|g| g["fieldConfig"]["defaults"]["unit"] == "celsius" && steps(g) == [80.0, 85.0]));
    assert!(gauges
        .iter()
        .any(|g| g["fieldConfig"]["defaults"]["unit"] == "watt"
            && g["fieldConfig"]["defaults"]["max"] == 350));
}

#[test]
fn macros_and_variables_expand_as_grafana_does() {
    let now = Utc::now();
    let r = Range::last(Duration::hours(1), now, 1000, 10_000);
    assert_eq!(r.interval(), "10s");
    assert_eq!(
        Range::last(Duration::days(7), now, 1000, 10_000).interval(),
        "10m"
    );
    assert_eq!(
        Range::last(Duration::days(30), now, 1000, 10_000).interval(),
        "30m"
    );
    assert_eq!(
        Range::last(Duration::days(365), now, 1000, 10_000).interval(),
        "6h"
    );
    let mut vars = Vars::new();
    vars.insert(
        "host".into(),
        VarValue {
            values: vec!["h'1".into()],
            quoted: false,
        },
    );
    vars.insert(
        "hosts".into(),
        VarValue {
            values: vec!["a".into(), "b'c".into()],
            quoted: true,
        },
    );
    let sql = "SELECT '$host', $hosts, [[host]] WHERE $__timeFilter(t) AND x > $__timeFrom() AND '$__interval'::interval > '${__interval_ms}ms'";
    let out = grafana::expand(sql, &r, &vars).unwrap();
    assert!(
        out.starts_with("SELECT 'h''1', 'a','b''c', h''1 WHERE t BETWEEN '"),
        "{out}"
    );
    assert!(out.contains("'10s'::interval > '10000ms'"), "{out}");
    assert!(grafana::expand("SELECT $__timeGroup(t, 1h)", &r, &vars).is_err());
    assert!(grafana::expand("SELECT '$nosuch'", &r, &vars).is_err());
}

fn numeric(t: &Type) -> bool {
    [
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
    ]
    .contains(t)
}
fn textual(t: &Type) -> bool {
    [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(t)
}

/// What is wrong with a result for a panel of type `kind`, if anything.
fn shape_problem(
    kind: &str,
    cols: &[(String, Type)],
    rows: &[Value],
    tiered: Option<i64>,
) -> Option<String> {
    let nums: Vec<&String> = cols
        .iter()
        .filter(|(_, t)| numeric(t))
        .map(|(n, _)| n)
        .collect();
    let texts: Vec<&String> = cols
        .iter()
        .filter(|(_, t)| textual(t))
        .map(|(n, _)| n)
        .collect();
    let some_number = rows
        .iter()
        .any(|r| nums.iter().any(|n| r[n.as_str()].is_number()));
    if rows.is_empty() {
        return Some("no rows, but the fleet has data for this range".into());
    }
    match kind {
        "timeseries" => {
            let time = cols.iter().find(|(n, _)| n == "time");
            if !matches!(time, Some((_, Type::TIMESTAMPTZ))) {
                return Some(format!("no timestamptz column named time: {cols:?}"));
            }
            let others = cols.len() - 1 - nums.len();
            if nums.is_empty() || others > 1 || (others == 1 && texts != ["metric"]) {
                return Some(format!(
                    "want time + numeric columns (or time/metric/value): {cols:?}"
                ));
            }
            if !some_number {
                return Some("every value is NULL".into());
            }
            let times: Vec<&str> = rows
                .iter()
                .map(|r| r["time"].as_str().unwrap_or_default())
                .collect();
            let parsed: Vec<chrono::DateTime<Utc>> = times
                .iter()
                .map(|t| t.parse().expect("timestamp"))
                .collect();
            if parsed.windows(2).any(|w| w[0] > w[1]) {
                return Some("rows are not in time order".into());
            }
            // Tier-served series: buckets are whole tier buckets.
            if let Some(secs) = tiered {
                if let Some(t) = parsed.iter().find(|t| t.timestamp() % secs != 0) {
                    return Some(format!(
                        "bucket {t} is not on a {secs}-second tier boundary"
                    ));
                }
            }
            None
        }
        "stat" | "gauge" => {
            if rows.len() != 1 || nums.len() != cols.len() || !some_number {
                return Some(format!(
                    "want one row of non-NULL numbers, got {} rows of {cols:?}: {rows:?}",
                    rows.len()
                ));
            }
            None
        }
        "piechart" | "bargauge" | "barchart" => {
            if texts.is_empty() || nums.is_empty() {
                return Some(format!(
                    "want a label column and a numeric column: {cols:?}"
                ));
            }
            let all = rows
                .iter()
                .all(|r| nums.iter().all(|n| r[n.as_str()].is_number()));
            (!all).then(|| format!("NULL values: {rows:?}"))
        }
        "table" => cols.is_empty().then(|| "no columns".into()),
        other => Some(format!(
            "panel type {other} is not checked here; add a rule"
        )),
    }
}

#[test]
fn the_shape_check_rejects_empty_and_misshapen_results() {
    let ts = |n: &str| (n.to_string(), Type::TIMESTAMPTZ);
    let num = |n: &str| (n.to_string(), Type::FLOAT8);
    let text = |n: &str| (n.to_string(), Type::TEXT);
    let row = |t: &str, v: Value| json!({"time": t, "value": v, "metric": "m"});
    let good = [
        row("2026-01-01T00:00:00Z", json!(1.0)),
        row("2026-01-01T01:00:00Z", json!(2.0)),
    ];
    assert_eq!(
        shape_problem("timeseries", &[ts("time"), num("value")], &good, Some(3600)),
        None
    );
    assert_eq!(
        shape_problem(
            "timeseries",
            &[ts("time"), text("metric"), num("value")],
            &good,
            None
        ),
        None
    );
    assert!(
        shape_problem("timeseries", &[ts("time"), num("value")], &[], None).is_some(),
        "no rows"
    );
    assert!(
        shape_problem(
            "timeseries",
            &[ts("time"), num("value")],
            &good,
            Some(86_400)
        )
        .is_some(),
        "hourly buckets for a daily tier"
    );
    assert!(shape_problem(
        "timeseries",
        &[ts("time"), text("host"), text("metric"), num("value")],
        &good,
        None
    )
    .is_some());
    assert!(
        shape_problem("timeseries", &[ts("stamp"), num("value")], &good, None).is_some(),
        "no time column"
    );
    let nulls = [row("2026-01-01T00:00:00Z", Value::Null)];
    assert!(
        shape_problem("timeseries", &[ts("time"), num("value")], &nulls, None).is_some(),
        "only NULLs"
    );
    let back = [good[1].clone(), good[0].clone()];
    assert!(
        shape_problem("timeseries", &[ts("time"), num("value")], &back, None).is_some(),
        "out of order"
    );
    assert!(
        shape_problem("stat", &[num("value")], &good, None).is_some(),
        "two rows for a stat"
    );
    assert!(
        shape_problem("gauge", &[num("value")], &nulls, None).is_some(),
        "NULL gauge"
    );
    assert!(
        shape_problem("stat", &[text("metric")], &good[..1], None).is_some(),
        "text stat"
    );
    assert!(
        shape_problem("piechart", &[num("value")], &good, None).is_some(),
        "no labels"
    );
    assert!(
        shape_problem("table", &[text("metric")], &[], None).is_some(),
        "empty table"
    );
    assert!(
        shape_problem("heatmap", &[text("metric")], &good, None).is_some(),
        "unchecked type"
    );
}

/// Runs one expanded query: its columns (name, type) and rows as JSON.
async fn run(
    c: &tokio_postgres::Client,
    sql: &str,
) -> Result<(Vec<(String, Type)>, Vec<Value>), String> {
    let stmt = c.prepare(sql).await.map_err(|e| format!("{e:?}"))?;
    let cols = stmt
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().clone()))
        .collect();
    let wrapped = format!("SELECT row_to_json(q)::text FROM ({sql}) q");
    let rows = c.query(&wrapped, &[]).await.map_err(|e| format!("{e:?}"))?;
    let rows = rows
        .iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
        .collect();
    Ok((cols, rows))
}

both_backends! {
    async fn every_panel_query_returns_rows_of_its_panels_shape(db) {
        let spec = Spec { hosts: 3, gpus_per_host: 2, days: 14, raw_days: 7, fine_secs: 300, coarse_secs: 1800 };
        let now = Utc::now();
        let (_pool, made) = generate(&db.store_config(), &spec, now).await;
        assert!(made.raw_rows > 10_000, "{made:?}");
        let c = db.client().await;
        let offline: String = c.query_one("SELECT id FROM hosts WHERE status = 'offline'", &[]).await
            .expect("the silent host went offline").get(0);
        assert_eq!(offline, made.silent_host);

        // Every panel runs as the read-only role of dashboards/grafana_role.sql
        // (roles are per server: this one is named after the test database).
        let role = format!("{}_grafana", db.name());
        let grants = std::fs::read_to_string(grafana::dir().join("grafana_role.sql")).unwrap();
        c.batch_execute(&grants.replace("gpuwatch_grafana", &role)).await.expect("grafana_role.sql");
        c.batch_execute(&format!("SET ROLE {role}")).await.unwrap();
        let secret = c.query("SELECT password_hash FROM customers", &[]).await;
        assert!(secret.is_err(), "the Grafana role must not read password hashes");

        let ds = grafana::datasources();
        let mut problems = Vec::new();
        let mut ran = 0;
        // (span, expected tier of the series functions in seconds: raw, hourly, daily)
        for (name, span, tier) in [("1h", Duration::hours(1), None), ("7d", Duration::days(7), Some(3_600)), ("1y", Duration::days(365), Some(86_400))] {
            for d in grafana::load_all() {
                let sql_panels: Vec<&Value> = grafana::panels(&d.json).into_iter()
                    .filter(|p| p["datasource"]["type"] == POSTGRES).collect();
                if sql_panels.is_empty() {
                    continue; // the Prometheus dashboard: structure only
                }
                let vars = match grafana::resolve_vars(&c, &d.json, &Range::last(span, now, 1000, 1)).await {
                    Ok(v) => v,
                    Err(e) => { problems.push(format!("{} ({name}): {e}", d.file)); continue; }
                };
                for panel in sql_panels {
                    let kind = panel["type"].as_str().unwrap_or_default();
                    let range = Range::last(span, now, panel["maxDataPoints"].as_i64().unwrap_or(1000), grafana::min_interval_ms(panel, &ds));
                    for t in panel["targets"].as_array().into_iter().flatten() {
                        let Some(raw) = t["rawSql"].as_str() else { continue };
                        let what = format!("{} · {:?} ({name})", d.file, panel["title"].as_str().unwrap_or("?"));
                        let sql = match grafana::expand(raw, &range, &vars) {
                            Ok(s) => s,
                            Err(e) => { problems.push(format!("{what}: {e}")); continue; }
                        };
                        ran += 1;
                        let tiered = tier.filter(|_| raw.contains("gpuwatch_series(") || raw.contains("gpuwatch_counter_rate("));
                        match run(&c, &sql).await {
                            Err(e) => problems.push(format!("{what}: {e}\n{sql}")),
                            Ok((cols, rows)) => {
                                if let Some(e) = shape_problem(kind, &cols, &rows, tiered) {
                                    problems.push(format!("{what}: {e}\n{sql}"));
                                }
                            }
                        }
                    }
                }
            }
        }
        // The counter rate against the simulator's closed-form counters
        // (120 MB/s received by every host), from raw, hourly and daily rows.
        for (span, step) in [(Duration::hours(1), "1 minute"), (Duration::days(7), "1 hour"), (Duration::days(365), "1 day")] {
            let rows = c.query(
                "SELECT value FROM gpuwatch_counter_rate('host_metrics', ARRAY['sim-host-000'], 'network_rx_bytes', $1, $2, $3::text::interval)",
                &[&(now - span), &now, &step],
            ).await.expect("gpuwatch_counter_rate");
            assert!(rows.len() > 3, "{step}: {} buckets", rows.len());
            for r in &rows {
                let v: f64 = r.get(0);
                assert!((v / 120e6 - 1.0).abs() < 0.01, "{step}: rate {v}, want 120e6 within 1 %");
            }
        }
        c.batch_execute(&format!("RESET ROLE; DROP OWNED BY {role}; DROP ROLE {role}")).await.unwrap();
        println!("{ran} panel queries over 1h, 7d and 1y returned rows of their panels' shape");
        assert!(ran > 3 * 50, "only {ran} queries ran");
        assert!(problems.is_empty(), "{} panel queries failed:\n{}", problems.len(), problems.join("\n\n"));
    }
}

/// Grafana's Prometheus data source: a regex-escaped value, or `(a|b)` for
/// multi-value and include-all variables.
fn prom_interpolate(v: &VarValue) -> String {
    let esc = |s: &str| {
        s.chars().fold(String::new(), |mut o, ch| {
            if "\\$^*{}[]'+?.()|".contains(ch) {
                o.push_str("\\\\");
            }
            o.push(ch);
            o
        })
    };
    let vals: Vec<String> = v.values.iter().map(|s| esc(s)).collect();
    if v.quoted {
        format!("({})", vals.join("|"))
    } else {
        vals[0].clone()
    }
}

fn prom_expand(expr: &str, vars: &Vars) -> String {
    let mut s = expr.to_string();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for n in names {
        s = s.replace(&format!("${n}"), &prom_interpolate(&vars[n]));
    }
    s
}

pub(crate) async fn prom_get(url: &str, query: &[(&str, &str)]) -> Option<Value> {
    let r = reqwest::Client::new()
        .get(url)
        .query(query)
        .send()
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    (v["status"] == "success").then_some(v)
}

both_backends! {
    async fn the_prometheus_dashboard_reads_gpuwatch_metrics_through_a_real_prometheus(db) {
        let spec = Spec { hosts: 3, gpus_per_host: 2, days: 2, raw_days: 2, fine_secs: 60, coarse_secs: 600 };
        generate(&db.store_config(), &spec, Utc::now()).await;
        let port = free_port();
        let _serve = ChildGuard(
            common::gpuwatch_command(&["serve"])
                .env("DATABASE_URL", &db.url)
                .env("GPUWATCH_LISTEN", format!("127.0.0.1:{port}"))
                .env("GPUWATCH_EXPORTER__REFRESH_SECS", "1")
                .env("GPUWATCH_EXPORTER__STALENESS_SECS", "600")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("gpuwatch serve"),
        );
        let prometheus = Prometheus::start(&[("gpuwatch", format!("127.0.0.1:{port}"))]);
        let prom = prometheus.url.clone();
        // Two live hosts of two GPUs (the third host went silent).
        wait_for_gpus(&prom, 4, "gpuwatch").await;
        let vars = check_prometheus_dashboard(&prom).await;
        assert_eq!(vars["Hostname"].values.len(), 2, "{vars:?}");
    }
}

/// Waits until Prometheus at `prom` holds `n` GPUs (DCGM_FI_DEV_GPU_TEMP
/// series) scraped from `from`.
pub(crate) async fn wait_for_gpus(prom: &str, n: usize, from: &str) {
    let started = std::time::Instant::now();
    let want = n.to_string();
    loop {
        let r = prom_get(
            &format!("{prom}/api/v1/query"),
            &[("query", "count(DCGM_FI_DEV_GPU_TEMP)")],
        )
        .await;
        if r.and_then(|r| {
            r["data"]["result"][0]["value"][1]
                .as_str()
                .map(String::from)
        })
        .as_deref()
            == Some(want.as_str())
        {
            return;
        }
        assert!(
            started.elapsed().as_secs() < 90,
            "Prometheus did not scrape {n} GPUs from {from}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// The Prometheus dashboard (`gpu-prometheus.json`) against Prometheus at
/// `prom`: its variables resolve as Grafana resolves them (every value,
/// include-all), and every panel expression returns series. Returns the
/// variables.
pub(crate) async fn check_prometheus_dashboard(prom: &str) -> Vars {
    let d = grafana::load_all()
        .into_iter()
        .find(|d| d.file == "gpu-prometheus.json")
        .unwrap()
        .json;
    // Variables as Grafana resolves label_values(metric{…}, label): every value (include-all).
    let mut vars = Vars::new();
    for v in d["templating"]["list"].as_array().unwrap() {
        let q = grafana::variable_query(v);
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .expect("label_values(…)");
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let selector = prom_expand(selector.trim(), &vars);
        let r = prom_get(
            &format!("{prom}/api/v1/label/{}/values", label.trim()),
            &[("match[]", &selector)],
        )
        .await
        .unwrap_or_else(|| panic!("label values for {q}"));
        let values: Vec<String> = r["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        assert!(
            !values.is_empty(),
            "variable {} ({selector}) has no values",
            v["name"]
        );
        let quoted = v["multi"] == true || v["includeAll"] == true;
        vars.insert(
            v["name"].as_str().unwrap().to_string(),
            VarValue { values, quoted },
        );
    }
    let mut checked = 0;
    for panel in grafana::panels(&d) {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = prom_expand(t["expr"].as_str().unwrap(), &vars);
            let r = prom_get(&format!("{prom}/api/v1/query"), &[("query", &expr)])
                .await
                .unwrap_or_else(|| panic!("{:?}: Prometheus rejects {expr}", panel["title"]));
            let result = r["data"]["result"].as_array().cloned().unwrap_or_default();
            assert!(
                !result.is_empty(),
                "{:?}: no series for {expr}",
                panel["title"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} expressions checked");
    vars
}

/// Money columns of the billing tables, as dashboards name them.
const MONEY: &[&str] = &["amount", "price", "total", "subtotal", "money"];

/// Every `round(` whose argument, up to its closing parenthesis, names a
/// money column: money is rounded once, by the invoice's rule.
fn money_rounding(sql: &str) -> Vec<String> {
    let lower = sql.to_ascii_lowercase();
    let mut found = Vec::new();
    for (at, _) in lower.match_indices("round(") {
        let mut depth = 0;
        let mut end = lower.len();
        for (i, ch) in lower[at + 5..].char_indices() {
            match ch {
                '(' => depth += 1,
                ')' if depth == 1 => {
                    end = at + 5 + i + 1;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let call = &lower[at..end];
        if MONEY.iter().any(|m| call.contains(m)) {
            found.push(sql[at..end].to_string());
        }
    }
    found
}

#[test]
fn dashboards_round_money_only_by_the_invoice_rule() {
    assert_eq!(
        money_rounding("SELECT round(sum(b.amount), 2)"),
        vec!["round(sum(b.amount), 2)"]
    );
    assert_eq!(
        money_rounding("SELECT ROUND(sum(b.amount) / 3, 2) AS x"),
        vec!["ROUND(sum(b.amount) / 3, 2)"]
    );
    assert!(money_rounding("SELECT gpuwatch_round_money(sum(b.amount), 1)").is_empty());
    assert!(money_rounding("SELECT round(avg(latency_ms))::bigint, amount").is_empty());
    let mut offenders = Vec::new();
    for d in grafana::load_all() {
        for p in grafana::panels(&d.json) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let Some(sql) = t["rawSql"].as_str() else {
                    continue;
                };
                for call in money_rounding(sql) {
                    offenders.push(format!(
                        "{} · {:?}: {call}",
                        d.file,
                        p["title"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
        // Variables' queries too.
        for v in d.json["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let q = v["query"]
                .as_str()
                .or_else(|| v["query"]["rawSql"].as_str())
                .unwrap_or_default();
            for call in money_rounding(q) {
                offenders.push(format!("{} · variable {:?}: {call}", d.file, v["name"]));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "money rounded by SQL's round(), not gpuwatch_round_money (the invoice's rule):\n{}",
        offenders.join("\n")
    );
}
