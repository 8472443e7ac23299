//! What Grafana does with `dashboards/`: load the JSON and the provisioning
//! files, compute `$__interval` for a range, resolve template variables by
//! running their queries in order, and expand a panel's SQL the way the
//! PostgreSQL data source does (template variables first, then macros).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// Grafana's own references: template built-ins and macros.
pub const BUILTINS: &[&str] = &[
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
    "__rate_interval",
    "__from",
    "__to",
    "__dashboard",
    "__user",
    "__org",
    "__all",
    "__timeFilter",
    "__timeFrom",
    "__timeTo",
    "__timeGroup",
    "__timeGroupAlias",
    "__unixEpochFilter",
    "__unixEpochFrom",
    "__unixEpochTo",
    "timeFilter",
];

/// The repository's `dashboards/` directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

/// One dashboard file.
pub struct Dashboard {
    /// File name, for messages.
    pub file: String,
    /// The parsed JSON.
    pub json: Value,
}

/// Every `*.json` under `dashboards/` (not recursing into provisioning/).
pub fn load_all() -> Vec<Dashboard> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir()).expect("dashboards/ exists");
    for e in entries {
        let path = e.expect("readable directory entry").path();
        if path.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&path).expect("readable dashboard");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            out.push(Dashboard { file, json });
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// Data sources of the provisioning file: uid → (type, jsonData).
pub fn datasources() -> HashMap<String, (String, Value)> {
    let path = dir().join("provisioning/datasources/gpuwatch.yaml");
    let text = std::fs::read_to_string(&path).expect("datasource provisioning file");
    let y: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");
    let y: Value = serde_json::to_value(y).expect("YAML as JSON");
    assert_eq!(
        y["apiVersion"],
        1,
        "{}: apiVersion must be 1",
        path.display()
    );
    let list = y["datasources"].as_array().expect("datasources: a list");
    list.iter()
        .map(|d| {
            let uid = d["uid"]
                .as_str()
                .expect("every data source has a fixed uid");
            let ty = d["type"].as_str().expect("every data source has a type");
            (uid.to_string(), (ty.to_string(), d["jsonData"].clone()))
        })
        .collect()
}

/// Every panel, rows and panels nested in (collapsed) rows included.
pub fn panels(d: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

/// `$name`, `${name}`, `${name:fmt}` and `[[name]]` references in `s`.
pub fn references(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let ident = |i: usize| {
        let end = (i..b.len())
            .find(|&j| !(b[j].is_ascii_alphanumeric() || b[j] == b'_'))
            .unwrap_or(b.len());
        (end, s[i..end].to_string())
    };
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() && b[i + 1] == b'{' {
            let (end, name) = ident(i + 2);
            out.push(name);
            i = end;
        } else if b[i] == b'$'
            && i + 1 < b.len()
            && (b[i + 1].is_ascii_alphabetic() || b[i + 1] == b'_')
        {
            let (end, name) = ident(i + 1);
            out.push(name);
            i = end;
        } else if b[i] == b'[' && i + 1 < b.len() && b[i + 1] == b'[' {
            let (end, name) = ident(i + 2);
            if !name.is_empty() {
                out.push(name);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// The query text of a template variable (string or Prometheus' object form).
pub fn variable_query(v: &Value) -> String {
    match &v["query"] {
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("query").and_then(Value::as_str).unwrap_or("").into(),
        _ => String::new(),
    }
}

/// A time range and the interval Grafana derives for it.
#[derive(Debug, Clone)]
pub struct Range {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (inclusive).
    pub to: DateTime<Utc>,
    /// `$__interval_ms`.
    pub interval_ms: i64,
}

impl Range {
    /// The last `span`, as a panel `max_points` wide with at least `min_ms` per point.
    pub fn last(span: chrono::Duration, now: DateTime<Utc>, max_points: i64, min_ms: i64) -> Self {
        let ms = span.num_milliseconds();
        let interval_ms = round_interval(ms / max_points).max(min_ms);
        Range {
            from: now - span,
            to: now,
            interval_ms,
        }
    }

    /// `$__interval` as Grafana writes it ("10s", "30m", "6h", "1d").
    pub fn interval(&self) -> String {
        interval_string(self.interval_ms)
    }
}

/// Grafana's rangeutil.roundInterval: a "nice" interval near `ms`.
pub fn round_interval(ms: i64) -> i64 {
    const STEPS: &[(i64, i64)] = &[
        (15, 10),
        (35, 20),
        (75, 50),
        (150, 100),
        (350, 200),
        (750, 500),
        (1_500, 1_000),
        (3_500, 2_000),
        (7_500, 5_000),
        (12_500, 10_000),
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (210_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
        (5_400_000, 3_600_000),
        (9_000_000, 7_200_000),
        (16_200_000, 10_800_000),
        (32_400_000, 21_600_000),
        (86_400_000, 43_200_000),
        (604_800_000, 86_400_000),
        (1_814_400_000, 604_800_000),
        (3_628_800_000, 2_592_000_000),
    ];
    STEPS
        .iter()
        .find(|(below, _)| ms < *below)
        .map_or(31_536_000_000, |(_, v)| *v)
}

/// Grafana's secondsToHms: the largest whole unit.
pub fn interval_string(ms: i64) -> String {
    let s = ms / 1000;
    for (unit, secs) in [
        ("y", 31_536_000),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ] {
        if s >= secs && s % secs == 0 {
            return format!("{}{unit}", s / secs);
        }
    }
    if s >= 1 {
        return format!("{s}s");
    }
    format!("{ms}ms")
}

/// Parses "10s", "1m", "2h", "1d" (a panel's or data source's min interval).
pub fn parse_interval(s: &str) -> Option<i64> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let n: i64 = s[..split].parse().ok()?;
    let unit = match &s[split..] {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return None,
    };
    Some(n * unit)
}

/// A resolved variable: its values, and whether Grafana quotes them
/// (multi-value or include-all variables are quoted as SQL literals).
#[derive(Debug, Clone)]
pub struct VarValue {
    /// Selected values.
    pub values: Vec<String>,
    /// Multi-value or include-all.
    pub quoted: bool,
}

/// Resolved variables by name.
pub type Vars = BTreeMap<String, VarValue>;

fn quote_literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// The SQL data source's interpolateVariable.
fn interpolate(v: &VarValue) -> String {
    if v.values.len() == 1 && !v.quoted {
        return v.values[0].replace('\'', "''");
    }
    v.values
        .iter()
        .map(|s| quote_literal(s))
        .collect::<Vec<_>>()
        .join(",")
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Expands `sql` as Grafana's PostgreSQL data source does for `range`:
/// template variables and `$__interval(_ms)` (front end), then the macros
/// (back end). Errors name anything left unexpanded.
pub fn expand(sql: &str, range: &Range, vars: &Vars) -> Result<String, String> {
    let mut s = sql
        .replace("${__interval_ms}", &range.interval_ms.to_string())
        .replace("$__interval_ms", &range.interval_ms.to_string())
        .replace("${__interval}", &range.interval())
        .replace("$__interval", &range.interval());
    // Longest names first, so $hostname is not taken for $host + "name".
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        let value = interpolate(&vars[name]);
        s = s
            .replace(&format!("${{{name}}}"), &value)
            .replace(&format!("[[{name}]]"), &value);
        s = replace_ident(&s, &format!("${name}"), &value);
    }
    let from = ts(range.from);
    let to = ts(range.to);
    s = expand_macro(&s, "__timeFilter", |args| {
        let [col] = args else {
            return Err(format!("$__timeFilter takes one column, got {args:?}"));
        };
        Ok(format!("{col} BETWEEN '{from}' AND '{to}'"))
    })?;
    s = expand_macro(&s, "__timeFrom", |_| Ok(format!("'{from}'")))?;
    s = expand_macro(&s, "__timeTo", |_| Ok(format!("'{to}'")))?;
    s = expand_macro(&s, "__unixEpochFilter", |args| {
        let [col] = args else {
            return Err(format!("$__unixEpochFilter takes one column, got {args:?}"));
        };
        Ok(format!(
            "{col} >= {} AND {col} <= {}",
            range.from.timestamp(),
            range.to.timestamp()
        ))
    })?;
    let left = references(&s);
    if !left.is_empty() {
        return Err(format!("unexpanded references {left:?} in: {s}"));
    }
    Ok(s)
}

/// Replaces `pat` where it is not followed by an identifier character.
fn replace_ident(s: &str, pat: &str, with: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(pat) {
        let after = rest[i + pat.len()..].chars().next();
        out.push_str(&rest[..i]);
        if after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push_str(pat);
        } else {
            out.push_str(with);
        }
        rest = &rest[i + pat.len()..];
    }
    out.push_str(rest);
    out
}

/// Replaces `$name(args)` with `f(args)` (Grafana's `\$__(\w+)\(([^)]*)\)`).
fn expand_macro(
    s: &str,
    name: &str,
    f: impl Fn(&[String]) -> Result<String, String>,
) -> Result<String, String> {
    let pat = format!("${name}(");
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(&pat) {
        out.push_str(&rest[..i]);
        let after = &rest[i + pat.len()..];
        let close = after
            .find(')')
            .ok_or_else(|| format!("${name}( without ')'"))?;
        let args: Vec<String> = after[..close]
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        out.push_str(&f(&args)?);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves the dashboard's variables in list order, as Grafana does on load:
/// a query variable runs its (expanded) query and takes the first value, or
/// every value when it is multi/include-all ("All" without a custom
/// allValue); a custom variable takes its options likewise.
pub async fn resolve_vars(
    c: &tokio_postgres::Client,
    d: &Value,
    range: &Range,
) -> Result<Vars, String> {
    let mut vars = Vars::new();
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let all = v["includeAll"].as_bool().unwrap_or(false);
        let quoted = all || v["multi"].as_bool().unwrap_or(false);
        let values: Vec<String> = match v["type"].as_str() {
            Some("query") => {
                let sql = expand(&variable_query(v), range, &vars)
                    .map_err(|e| format!("variable {name}: {e}"))?;
                let rows = c
                    .query(&sql, &[])
                    .await
                    .map_err(|e| format!("variable {name}: {sql}: {e}"))?;
                let col = rows
                    .first()
                    .and_then(|r| r.columns().iter().position(|c| c.name() == "__value"))
                    .unwrap_or(0);
                rows.iter().map(|r| r.get::<_, String>(col)).collect()
            }
            Some("custom") => variable_query(v)
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
            other => return Err(format!("variable {name}: type {other:?} not handled")),
        };
        if values.is_empty() {
            return Err(format!("variable {name} has no values"));
        }
        let values = if all { values } else { values[..1].to_vec() };
        vars.insert(name, VarValue { values, quoted });
    }
    Ok(vars)
}

/// The interval floor of a panel: its own `interval`, else the data source's timeInterval.
pub fn min_interval_ms(panel: &Value, ds: &HashMap<String, (String, Value)>) -> i64 {
    let own = panel["interval"].as_str().and_then(parse_interval);
    let uid = panel["datasource"]["uid"].as_str().unwrap_or_default();
    let of_ds = ds
        .get(uid)
        .and_then(|(_, j)| j["timeInterval"].as_str())
        .and_then(parse_interval);
    own.or(of_ds).unwrap_or(1)
}
