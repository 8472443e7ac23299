//! Reads the series a cycle's rules watch: the latest raw samples of each
//! metric within each rule's window, reduced per series in SQL, labelled
//! from the inventory (hosts, GPUs, environments). Rules sharing a table and
//! a window share one query, so a thousand rules cost a handful of scans.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::error::{q, Result};
use crate::rule::{Reduction, Rule, Source};

/// Labels of one series.
pub type Labels = BTreeMap<String, String>;

/// Labels the alerter matches on (inhibition by `scope`, identity by
/// `gpu_id`) but that mean nothing to a receiver: never sent out.
pub const INTERNAL_LABELS: [&str; 2] = ["gpu_id", "scope"];

/// `labels` without the internal ones, as receivers see them.
pub fn public(labels: &Labels) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| !INTERNAL_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One series' reduced value, with what its annotations may show beyond
/// its labels (`{{ $details.<name> }}`): text that must not identify the
/// alert, such as a job's errorMsg.
#[derive(Debug, Clone)]
pub struct Point {
    /// The series' labels (its identity, what scopes match).
    pub labels: Arc<Labels>,
    /// The reduced value.
    pub value: f64,
    /// Template context only; never a label, never matched.
    pub details: Option<Arc<Labels>>,
}

impl Point {
    /// A point without details.
    pub fn new(labels: Arc<Labels>, value: f64) -> Point {
        Point {
            labels,
            value,
            details: None,
        }
    }
}

/// The reduced value of every series of one (metric, reduction, window).
pub type Values = Vec<Point>;

/// (metric, reduction, window seconds): what a rule reads.
pub type Want = (Source, Reduction, i32);

/// Labels of the inventory, loaded once per cycle.
#[derive(Default)]
pub struct Inventory {
    hosts: HashMap<String, Labels>,
    gpus: HashMap<i64, Labels>,
    envs: HashMap<String, Labels>,
}

impl Inventory {
    /// Loads hosts, GPUs and environments with their labels.
    pub async fn load<C: GenericClient>(c: &C) -> Result<Inventory> {
        let mut inv = Inventory::default();
        for r in c
            .query("SELECT id, name, labels FROM hosts", &[])
            .await
            .map_err(q("loading hosts for alert labels"))?
        {
            let id: String = r.get(0);
            let mut l = json_labels(r.get(2));
            l.insert("host_name".into(), r.get(1));
            l.insert("host".into(), id.clone());
            inv.hosts.insert(id, l);
        }
        for r in c
            .query(
                "SELECT id, customer_id, host_id, labels FROM environments WHERE deleted_at IS NULL",
                &[],
            )
            .await
            .map_err(q("loading environments for alert labels"))?
        {
            let id: String = r.get(0);
            let host: String = r.get(2);
            let mut l = inv.host_labels(&host);
            l.extend(json_labels(r.get(3)));
            l.insert("environment".into(), id.clone());
            l.insert("customer".into(), r.get::<_, i64>(1).to_string());
            inv.envs.insert(id, l);
        }
        for r in c
            .query(
                "SELECT id, host_id, gpu_index, uuid, name, labels, allocated_to FROM gpus",
                &[],
            )
            .await
            .map_err(q("loading GPUs for alert labels"))?
        {
            let id: i64 = r.get(0);
            let host: String = r.get(1);
            let mut l = inv.host_labels(&host);
            l.extend(json_labels(r.get(5)));
            l.insert("gpu".into(), r.get::<_, i32>(2).to_string());
            l.insert("gpu_id".into(), id.to_string());
            if let Some(u) = r.get::<_, Option<String>>(3) {
                l.insert("gpu_uuid".into(), u);
            }
            if let Some(m) = r.get::<_, Option<String>>(4) {
                l.insert("model".into(), m);
            }
            if let Some(env) = r.get::<_, Option<String>>(6) {
                if let Some(c) = inv.envs.get(&env).and_then(|e| e.get("customer")) {
                    l.insert("customer".into(), c.clone());
                }
                l.insert("environment".into(), env);
            }
            inv.gpus.insert(id, l);
        }
        Ok(inv)
    }

    fn host_labels(&self, host: &str) -> Labels {
        self.hosts
            .get(host)
            .cloned()
            .unwrap_or_else(|| [("host".to_string(), host.to_string())].into())
    }

    fn gpu(&self, gpu_id: i64, host: &str) -> Labels {
        let mut l = self.gpus.get(&gpu_id).cloned().unwrap_or_else(|| {
            let mut l = self.host_labels(host);
            l.insert("gpu_id".into(), gpu_id.to_string());
            l
        });
        l.insert("scope".into(), "gpu".into());
        l
    }

    fn host(&self, host: &str) -> Labels {
        let mut l = self.host_labels(host);
        l.insert("scope".into(), "host".into());
        l
    }

    fn env(&self, env: &str, host: Option<&str>) -> Labels {
        let mut l = self.envs.get(env).cloned().unwrap_or_else(|| {
            let mut l = host.map(|h| self.host_labels(h)).unwrap_or_default();
            l.insert("environment".into(), env.to_string());
            l
        });
        l.insert("scope".into(), "environment".into());
        l
    }
}

fn json_labels(v: serde_json::Value) -> Labels {
    match v {
        serde_json::Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect(),
        _ => Labels::new(),
    }
}

/// What every enabled rule wants, deduplicated.
pub fn wants(rules: &[Rule]) -> BTreeSet<Want> {
    rules
        .iter()
        .filter_map(|r| {
            let s = crate::rule::source(&r.metric)?;
            Some((s, r.reduction, r.window_seconds))
        })
        .collect()
}

fn agg(col: &str, reduction: Reduction, window: i32) -> String {
    // First and last samples of the window; a last below the first means
    // the counter restarted (driver reload), so its growth is the last.
    let growth = || {
        let first = format!(
            "(array_agg({col}::float8 ORDER BY collected_at) FILTER (WHERE {col} IS NOT NULL))[1]"
        );
        let last = format!("(array_agg({col}::float8 ORDER BY collected_at DESC) FILTER (WHERE {col} IS NOT NULL))[1]");
        format!("(CASE WHEN {last} >= {first} THEN {last} - {first} ELSE {last} END)")
    };
    match reduction {
        Reduction::Increase => growth(),
        Reduction::Rate => format!("({} / {}.0)", growth(), window.max(1)),
        Reduction::Min => format!("min({col})::float8"),
        Reduction::Max => format!("max({col})::float8"),
        Reduction::Last => format!(
            "(array_agg({col}::float8 ORDER BY collected_at DESC) FILTER (WHERE {col} IS NOT NULL))[1]"
        ),
        Reduction::Avg => format!("avg({col})::float8"),
    }
}

/// Loads the reduced values of every wanted series at `now`.
pub async fn load<C: GenericClient>(
    c: &C,
    inv: &Inventory,
    wanted: &BTreeSet<Want>,
    now: DateTime<Utc>,
) -> Result<HashMap<Want, Values>> {
    let mut out: HashMap<Want, Values> = HashMap::new();
    // One query per (table, window) for every column and reduction wanted there.
    let mut by_table: BTreeMap<(&'static str, i32), Vec<&Want>> = BTreeMap::new();
    for w in wanted {
        let table = match w.0 {
            Source::Gpu(_) | Source::XidErrors => "gpu_metrics",
            Source::Host(_) => "host_metrics",
            Source::Env(_) => "environment_metrics",
            Source::HeartbeatAge => {
                out.insert(*w, heartbeat(c, inv, now).await?);
                continue;
            }
            Source::QuotaUsedPct => {
                out.insert(*w, quota(c).await?);
                continue;
            }
            Source::GpuSilence => {
                out.insert(*w, gpu_silence(c, inv).await?);
                continue;
            }
            Source::Replication(col) => {
                out.insert(*w, replication(c, col).await?);
                continue;
            }
            Source::JobStatus => {
                out.insert(*w, crate::dlworkspace::job_status(c, now, w.2).await?);
                continue;
            }
            Source::JobQueued => {
                out.insert(*w, crate::dlworkspace::job_queued(c, now, w.2).await?);
                continue;
            }
            Source::ClusterStatusAge => {
                out.insert(*w, crate::dlworkspace::cluster_status_age(c, now).await?);
                continue;
            }
        };
        by_table.entry((table, w.2)).or_default().push(w);
    }
    for ((table, window), ws) in by_table {
        let exprs: Vec<String> = ws
            .iter()
            .map(|w| match w.0 {
                Source::Gpu(col) | Source::Host(col) | Source::Env(col) => agg(col, w.1, w.2),
                // Each sample carrying an XID is one event: the count is the increase.
                _ if w.1 == Reduction::Rate => format!(
                    "((count(*) FILTER (WHERE xid_last IS NOT NULL))::float8 / {}.0)",
                    w.2.max(1)
                ),
                _ => "(count(*) FILTER (WHERE xid_last IS NOT NULL))::float8".into(),
            })
            .collect();
        let key = match table {
            "gpu_metrics" => "gpu_id::text, host_id",
            "host_metrics" => "host_id, host_id",
            _ => "env_id, max(host_id)",
        };
        let group = match table {
            "gpu_metrics" => "gpu_id, host_id",
            "host_metrics" => "host_id",
            _ => "env_id",
        };
        // Columns come from the whitelists in rule.rs, never from input.
        let sql = format!(
            "SELECT {key}, {} FROM {table} WHERE collected_at > $1 GROUP BY {group}",
            exprs.join(", ")
        );
        let since = now - chrono::Duration::seconds(window as i64);
        let rows = c
            .query(&sql, &[&since])
            .await
            .map_err(q("reading the latest samples for alert rules"))?;
        for r in rows {
            let id: String = r.get(0);
            let host: Option<String> = r.get(1);
            let labels = Arc::new(match table {
                "gpu_metrics" => inv.gpu(
                    id.parse().unwrap_or_default(),
                    host.as_deref().unwrap_or(""),
                ),
                "host_metrics" => inv.host(&id),
                _ => inv.env(&id, host.as_deref()),
            });
            for (i, w) in ws.iter().enumerate() {
                if let Some(v) = r.get::<_, Option<f64>>(i + 2) {
                    out.entry(**w)
                        .or_default()
                        .push(Point::new(labels.clone(), v));
                }
            }
        }
    }
    Ok(out)
}

async fn heartbeat<C: GenericClient>(c: &C, inv: &Inventory, now: DateTime<Utc>) -> Result<Values> {
    let rows = c
        .query(
            "SELECT id, extract(epoch FROM ($1 - last_heartbeat))::float8 FROM hosts
             WHERE last_heartbeat IS NOT NULL AND status <> 'maintenance'",
            &[&now],
        )
        .await
        .map_err(q("reading host heartbeats"))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            Point::new(
                Arc::new(inv.host(&r.get::<_, String>(0))),
                r.get::<_, f64>(1).max(0.0),
            )
        })
        .collect())
}

/// `gpu.silent_seconds`: how far each present GPU's latest sample lags its
/// host's heartbeat, for online hosts only (a silent host is HostSilent's,
/// one in maintenance nobody's). A GPU never seen counts from registration.
async fn gpu_silence<C: GenericClient>(c: &C, inv: &Inventory) -> Result<Values> {
    let rows = c
        .query(
            "SELECT g.id, g.host_id,
                    greatest(0, extract(epoch FROM (h.last_heartbeat - coalesce(g.last_seen_at, g.created_at))))::float8
               FROM gpus g JOIN hosts h ON h.id = g.host_id
              WHERE g.removed_at IS NULL AND h.status = 'online' AND h.last_heartbeat IS NOT NULL",
            &[],
        )
        .await
        .map_err(q("reading when GPUs were last seen"))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let labels = inv.gpu(r.get(0), &r.get::<_, String>(1));
            Point::new(Arc::new(labels), r.get::<_, f64>(2))
        })
        .collect())
}

/// `quota.used_pct` from the billing view, only once that view exists.
async fn quota<C: GenericClient>(c: &C) -> Result<Values> {
    let exists: bool = c
        .query_one(
            "SELECT to_regclass('gpuwatch_quota_usage') IS NOT NULL",
            &[],
        )
        .await
        .map_err(q("checking for gpuwatch_quota_usage"))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = c
        .query(
            "SELECT customer_id::text, resource_type, used_pct::float8 FROM gpuwatch_quota_usage WHERE used_pct IS NOT NULL",
            &[],
        )
        .await
        .map_err(q("reading gpuwatch_quota_usage"))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let l: Labels = [
                ("scope".to_string(), "quota".to_string()),
                ("customer_id".to_string(), r.get::<_, String>(0)),
                ("resource_type".to_string(), r.get::<_, String>(1)),
            ]
            .into();
            Point::new(Arc::new(l), r.get::<_, f64>(2))
        })
        .collect())
}

/// The replication views' `col` (a name from rule.rs's whitelist, never
/// input): per standby for the lag, one series for the missing standbys.
async fn replication<C: GenericClient>(c: &C, col: &'static str) -> Result<Values> {
    let sql = if col == "missing" {
        "SELECT NULL::text, missing::float8 FROM gpuwatch_replication_missing".to_string()
    } else {
        format!("SELECT standby, {col} FROM gpuwatch_replication WHERE {col} IS NOT NULL")
    };
    let rows = c
        .query(&sql, &[])
        .await
        .map_err(q("reading the replication views"))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut l: Labels = [("scope".to_string(), "database".to_string())].into();
            if let Some(standby) = r.get::<_, Option<String>>(0) {
                l.insert("standby".into(), standby);
            }
            Point::new(Arc::new(l), r.get::<_, f64>(1))
        })
        .collect())
}
