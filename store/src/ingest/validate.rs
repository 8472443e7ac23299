//! Checks of an inventory and a batch before anything is written. Each
//! problem is one line naming the field by its JSON path and what is wrong
//! with it; at most [`MAX_PROBLEMS`] are listed. Text lengths and closed
//! sets are the schema's (`hosts`, `gpus`, `environment_metrics`), so the
//! database never refuses what passed here; value ranges come from the
//! sample catalogue, so every stored column is checked.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::inventory::{GpuInfo, HostInfo};
use crate::{Batch, Sample};

/// Problems listed per rejected batch.
pub const MAX_PROBLEMS: usize = 50;

/// `hosts.os_type`'s closed set.
const OS_TYPES: [&str; 2] = ["linux", "windows"];

/// What a batch may hold, beyond what the schema says.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Most samples in one batch.
    pub max_samples: usize,
    /// How old a sample may be.
    pub max_age: Duration,
    /// How far in the future a sample may be (clock skew).
    pub max_future: Duration,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_samples: 100_000,
            max_age: Duration::days(30),
            max_future: Duration::seconds(300),
        }
    }
}

pub(crate) struct Checker {
    pub(crate) problems: Vec<String>,
    total: usize,
}

impl Checker {
    pub(crate) fn new() -> Self {
        Checker {
            problems: Vec::new(),
            total: 0,
        }
    }

    pub(crate) fn fail(&mut self, path: &str, what: String) {
        self.total += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(format!("{path}: {what}"));
        }
    }

    /// Text for a `VARCHAR(max)` column (`min` 1 where it may not be empty);
    /// PostgreSQL text cannot hold NUL.
    fn text(&mut self, path: &str, v: &str, min: usize, max: usize) {
        let n = v.chars().count();
        if v.contains('\0') {
            self.fail(path, "contains a NUL character".into());
        } else if n < min || n > max {
            self.fail(path, format!("must be {min} to {max} characters, got {n}"));
        }
    }

    fn opt_text(&mut self, path: &str, v: &Option<String>, max: usize) {
        if let Some(v) = v {
            self.text(path, v, 0, max);
        }
    }

    fn non_negative(&mut self, path: &str, v: i64) {
        if v < 0 {
            self.fail(path, format!("{v} is negative"));
        }
    }

    /// Labels are an object of strings, without NUL (which JSONB refuses).
    fn labels(&mut self, path: &str, v: &serde_json::Value) {
        let Some(map) = v.as_object() else {
            self.fail(path, format!("must be an object of strings, got {v}"));
            return;
        };
        for (k, val) in map {
            match val.as_str() {
                Some(s) if !s.contains('\0') && !k.contains('\0') => {}
                Some(_) => self.fail(path, format!("label {k:?} contains a NUL character")),
                None => self.fail(path, format!("label {k:?} must be a string, got {val}")),
            }
        }
    }

    /// Every column of `s` against its catalogue range.
    pub(crate) fn ranges<S: Sample>(&mut self, path: &str, s: &S) {
        for (col, v) in S::CATALOGUE.iter().zip(s.numbers()) {
            if let Some(what) = v.and_then(|v| col.spec.range.problem(v)) {
                self.fail(&format!("{path}.{}", col.name), what);
            }
        }
    }

    fn time(
        &mut self,
        path: &str,
        t: DateTime<Utc>,
        (oldest, newest): (DateTime<Utc>, DateTime<Utc>),
    ) {
        if t > newest {
            self.fail(
                &format!("{path}.collected_at"),
                format!("{t} is in the future (limit {newest}); check the agent's clock"),
            );
        } else if t < oldest {
            self.fail(
                &format!("{path}.collected_at"),
                format!("{t} is older than the {oldest} limit (api.max_age_days)"),
            );
        }
    }

    fn host(&mut self, path: &str, got: &str, hosts: &Hosts) {
        if !hosts.by_id.contains_key(got) {
            let what = match hosts.only {
                Some(want) => format!("{got:?} is not the payload's host {want:?}"),
                None => format!("{got:?} is not a host of this batch's inventory"),
            };
            self.fail(&format!("{path}.host_id"), what);
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.total > self.problems.len() {
            let more = self.total - self.problems.len();
            self.problems.push(format!("... and {more} more"));
        }
        self.problems
    }
}

/// The hosts of an inventory, with their GPUs' UUIDs.
struct Hosts<'a> {
    by_id: HashMap<&'a str, HashSet<&'a str>>,
    /// The one host of a single-host inventory (an agent's payload).
    only: Option<&'a str>,
}

/// Where a host's fields are in the JSON: `host`, `gpus[i]` for one host
/// (the payload of `POST /api/v1/ingest`), `inventory[k].…` for several.
fn prefix(k: usize, several: bool) -> String {
    if several {
        format!("inventory[{k}].")
    } else {
        String::new()
    }
}

/// Every problem of `inventory` and `batch`, empty when they may be stored.
pub fn check(
    inventory: &[(HostInfo, Vec<GpuInfo>)],
    batch: &Batch,
    limits: &IngestLimits,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut c = Checker::new();
    let several = inventory.len() > 1;
    let mut hosts = Hosts {
        by_id: HashMap::new(),
        only: (!several)
            .then(|| inventory.first().map(|(h, _)| h.id.as_str()))
            .flatten(),
    };
    let mut uuids = HashSet::new();
    for (k, (h, gpus)) in inventory.iter().enumerate() {
        let p = prefix(k, several);
        check_host(&mut c, &p, h);
        if hosts.by_id.contains_key(h.id.as_str()) {
            c.fail(&format!("{p}host.id"), format!("{:?} is repeated", h.id));
        }
        let mine = hosts.by_id.entry(h.id.as_str()).or_default();
        let mut indexes = HashSet::new();
        for (i, g) in gpus.iter().enumerate() {
            let path = format!("{p}gpus[{i}]");
            if g.host_id != h.id {
                c.fail(
                    &format!("{path}.host_id"),
                    format!("{:?} is not its host {:?}", g.host_id, h.id),
                );
            }
            check_gpu(&mut c, &path, g);
            if !uuids.insert(g.uuid.as_str()) {
                c.fail(&format!("{path}.uuid"), format!("{:?} is repeated", g.uuid));
            }
            if !indexes.insert(g.gpu_index) {
                c.fail(
                    &format!("{path}.gpu_index"),
                    format!(
                        "{} is repeated: two GPUs of one host cannot share an index",
                        g.gpu_index
                    ),
                );
            }
            mine.insert(g.uuid.as_str());
        }
    }
    let n = batch.len();
    if n > limits.max_samples {
        c.fail(
            "batch",
            format!(
                "{n} samples exceed the limit of {} (api.max_samples); send smaller batches",
                limits.max_samples
            ),
        );
    }
    check_samples(
        &mut c,
        batch,
        &hosts,
        (now - limits.max_age, now + limits.max_future),
    );
    c.finish()
}

fn check_host(c: &mut Checker, p: &str, h: &HostInfo) {
    c.text(&format!("{p}host.id"), &h.id, 1, 64);
    c.text(&format!("{p}host.name"), &h.name, 1, 128);
    c.text(&format!("{p}host.hostname"), &h.hostname, 0, 256);
    c.text(&format!("{p}host.ip_address"), &h.ip_address, 1, 64);
    if !OS_TYPES.contains(&h.os_type.as_str()) {
        c.fail(
            &format!("{p}host.os_type"),
            format!("{:?} is not one of {}", h.os_type, OS_TYPES.join(", ")),
        );
    }
    c.text(&format!("{p}host.os_version"), &h.os_version, 0, 64);
    c.text(&format!("{p}host.arch"), &h.arch, 1, 20);
    c.non_negative(&format!("{p}host.total_cpu"), h.total_cpu.into());
    c.non_negative(&format!("{p}host.total_memory"), h.total_memory);
    c.non_negative(&format!("{p}host.total_disk"), h.total_disk);
    c.non_negative(&format!("{p}host.total_gpu"), h.total_gpu.into());
    c.labels(&format!("{p}host.labels"), &h.labels);
}

fn check_gpu(c: &mut Checker, path: &str, g: &GpuInfo) {
    c.text(&format!("{path}.uuid"), &g.uuid, 1, 128);
    if !(0..1024).contains(&g.gpu_index) {
        c.fail(
            &format!("{path}.gpu_index"),
            format!("{} is outside [0, 1023]", g.gpu_index),
        );
    }
    c.text(&format!("{path}.name"), &g.name, 0, 128);
    c.text(&format!("{path}.brand"), &g.brand, 0, 64);
    c.text(&format!("{path}.architecture"), &g.architecture, 0, 64);
    c.text(
        &format!("{path}.compute_capability"),
        &g.compute_capability,
        0,
        32,
    );
    c.non_negative(&format!("{path}.memory_total"), g.memory_total);
    if let Some(w) = g.power_limit {
        c.non_negative(&format!("{path}.power_limit"), w.into());
    }
    c.opt_text(&format!("{path}.pci_bus_id"), &g.pci_bus_id, 32);
    c.opt_text(&format!("{path}.driver_version"), &g.driver_version, 64);
    c.opt_text(&format!("{path}.serial"), &g.serial, 64);
    c.opt_text(&format!("{path}.vbios_version"), &g.vbios_version, 64);
}

/// The common case, cheaply: in the window and every value in range. Only
/// a sample that is not gets its problems spelt out, with their paths.
fn fine<S: Sample>(
    s: &S,
    t: DateTime<Utc>,
    (oldest, newest): (DateTime<Utc>, DateTime<Utc>),
) -> bool {
    t >= oldest
        && t <= newest
        && S::CATALOGUE
            .iter()
            .zip(s.numbers())
            .all(|(col, v)| v.is_none_or(|v| col.spec.range.problem(v).is_none()))
}

fn check_samples(
    c: &mut Checker,
    batch: &Batch,
    hosts: &Hosts,
    win: (DateTime<Utc>, DateTime<Utc>),
) {
    for (i, r) in batch.gpu.iter().enumerate() {
        let path = format!("batch.gpu[{i}]");
        let s = &r.sample;
        let known = hosts
            .by_id
            .get(s.host_id.as_str())
            .is_some_and(|g| g.contains(r.uuid.as_str()));
        if known && fine(s, s.collected_at, win) {
            continue;
        }
        if !known {
            let whose = if hosts.only.is_some() {
                "the payload's gpus".to_string()
            } else {
                format!("the gpus of host {:?}", s.host_id)
            };
            c.fail(
                &format!("{path}.uuid"),
                format!("{:?} is not among {whose}", r.uuid),
            );
        }
        let path = format!("{path}.sample");
        c.host(&path, &s.host_id, hosts);
        c.time(&path, s.collected_at, win);
        c.ranges(&path, s);
    }
    for (i, s) in batch.host.iter().enumerate() {
        if hosts.by_id.contains_key(s.host_id.as_str()) && fine(s, s.collected_at, win) {
            continue;
        }
        let path = format!("batch.host[{i}]");
        c.host(&path, &s.host_id, hosts);
        c.time(&path, s.collected_at, win);
        c.ranges(&path, s);
    }
    for (i, s) in batch.env.iter().enumerate() {
        let path = format!("batch.env[{i}]");
        c.text(&format!("{path}.env_id"), &s.env_id, 1, 64);
        match (s.host_id.as_str(), hosts.only) {
            ("", None) => c.fail(
                &format!("{path}.host_id"),
                "is required when a batch holds several hosts".into(),
            ),
            ("", Some(_)) => {}
            (h, _) => c.host(&path, h, hosts),
        }
        c.time(&path, s.collected_at, win);
        c.ranges(&path, s);
    }
}

#[cfg(test)]
mod tests {
    use crate::catalogue::{Range, Role, SqlType};
    use crate::{EnvSample, GpuSample, HostSample, Sample};
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use super::Checker;

    fn problems<S: Sample>(s: &S) -> Vec<String> {
        let mut c = Checker::new();
        c.ranges("s", s);
        c.problems
    }

    #[test]
    fn encoder_and_decoder_utilisation_are_percentages() {
        let s = GpuSample {
            encoder_util_percent: Some(101.0),
            decoder_util_percent: Some(-1.0),
            ..GpuSample::default()
        };
        assert_eq!(
            problems(&s),
            [
                "s.encoder_util_percent: 101 is outside [0, 100]",
                "s.decoder_util_percent: -1 is outside [0, 100]",
            ]
        );
        let ok = GpuSample {
            encoder_util_percent: Some(100.0),
            decoder_util_percent: Some(0.0),
            ..GpuSample::default()
        };
        assert!(problems(&ok).is_empty());
    }

    /// Each metric column of `S`, set out of its range alone, is reported
    /// under its own name: no catalogued column goes unvalidated.
    fn every_metric_is_checked<S: Sample + Default + Serialize + DeserializeOwned>() {
        let base = serde_json::to_value(S::default()).unwrap();
        for col in S::CATALOGUE.iter().filter(|c| c.spec.role == Role::Metric) {
            let bad = match col.spec.range {
                Range::Within(_, hi) => hi + 1.0,
                Range::NonNegative => -1.0,
                Range::Unchecked => panic!("{}.{} is unchecked", S::TABLE, col.name),
            };
            let mut v = base.clone();
            v[col.name] = match col.sql {
                SqlType::Float8 => serde_json::json!(bad),
                _ => serde_json::json!(bad as i64),
            };
            let s: S = serde_json::from_value(v).unwrap();
            let got = problems(&s);
            assert_eq!(got.len(), 1, "{}.{}: {got:?}", S::TABLE, col.name);
            assert!(got[0].starts_with(&format!("s.{}: ", col.name)), "{got:?}");
        }
    }

    #[test]
    fn every_catalogued_metric_is_range_checked() {
        every_metric_is_checked::<GpuSample>();
        every_metric_is_checked::<HostSample>();
        every_metric_is_checked::<EnvSample>();
    }

    #[test]
    fn text_is_measured_in_characters_and_refuses_nul() {
        let mut c = Checker::new();
        c.text("a", &"é".repeat(32), 0, 32);
        c.text("b", &"é".repeat(33), 0, 32);
        c.text("c", "x\0", 0, 32);
        c.text("d", "", 1, 32);
        assert_eq!(
            c.problems,
            [
                "b: must be 0 to 32 characters, got 33",
                "c: contains a NUL character",
                "d: must be 1 to 32 characters, got 0",
            ]
        );
    }
}
