//! Range and consistency checks of an ingest payload. Each problem is one
//! line naming the field by its JSON path and what is wrong with it; at most
//! [`MAX_PROBLEMS`] are listed. Value ranges come from the store's sample
//! catalogue, so every stored column is checked.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use gpuwatch_store::{IngestPayload, Sample};

use crate::ApiConfig;

/// Problems listed per rejected payload.
pub const MAX_PROBLEMS: usize = 50;

struct Checker {
    problems: Vec<String>,
    total: usize,
}

impl Checker {
    fn fail(&mut self, path: &str, what: String) {
        self.total += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(format!("{path}: {what}"));
        }
    }

    /// Every column of `s` against its catalogue range.
    fn ranges<S: Sample>(&mut self, path: &str, s: &S) {
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

    fn host(&mut self, path: &str, got: &str, want: &str) {
        if got != want {
            self.fail(
                &format!("{path}.host_id"),
                format!("{got:?} is not the payload's host {want:?}"),
            );
        }
    }
}

/// Every problem of `p`, empty when it may be stored.
pub fn check_payload(p: &IngestPayload, cfg: &ApiConfig, now: DateTime<Utc>) -> Vec<String> {
    let mut c = Checker {
        problems: Vec::new(),
        total: 0,
    };
    let host = p.host.id.as_str();
    if host.is_empty() || host.len() > 64 {
        c.fail("host.id", "must be 1 to 64 characters".into());
    }
    let n = p.batch.len();
    if n > cfg.max_samples {
        c.fail(
            "batch",
            format!(
                "{n} samples exceed the limit of {} (api.max_samples); send smaller batches",
                cfg.max_samples
            ),
        );
    }
    let mut uuids = HashSet::new();
    for (i, g) in p.gpus.iter().enumerate() {
        let path = format!("gpus[{i}]");
        c.host(&path, &g.host_id, host);
        if g.uuid.is_empty() || !uuids.insert(g.uuid.as_str()) {
            c.fail(
                &format!("{path}.uuid"),
                format!("{:?} is empty or repeated", g.uuid),
            );
        }
        if !(0..1024).contains(&g.gpu_index) {
            c.fail(
                &format!("{path}.gpu_index"),
                format!("{} is outside [0, 1023]", g.gpu_index),
            );
        }
        if g.memory_total < 0 {
            c.fail(
                &format!("{path}.memory_total"),
                format!("{} is negative", g.memory_total),
            );
        }
    }
    let win = window(cfg, now);
    for (i, r) in p.batch.gpu.iter().enumerate() {
        let path = format!("batch.gpu[{i}]");
        if !uuids.contains(r.uuid.as_str()) {
            c.fail(
                &format!("{path}.uuid"),
                format!("{:?} is not among the payload's gpus", r.uuid),
            );
        }
        let s = &r.sample;
        let path = format!("{path}.sample");
        c.host(&path, &s.host_id, host);
        c.time(&path, s.collected_at, win);
        c.ranges(&path, s);
    }
    for (i, s) in p.batch.host.iter().enumerate() {
        let path = format!("batch.host[{i}]");
        c.host(&path, &s.host_id, host);
        c.time(&path, s.collected_at, win);
        c.ranges(&path, s);
    }
    for (i, s) in p.batch.env.iter().enumerate() {
        let path = format!("batch.env[{i}]");
        if s.env_id.is_empty() || s.env_id.len() > 64 {
            c.fail(
                &format!("{path}.env_id"),
                "must be 1 to 64 characters".into(),
            );
        }
        if let Some(h) = &s.host_id {
            c.host(&path, h, host);
        }
        c.time(&path, s.collected_at, win);
        c.ranges(&path, s);
    }
    if c.total > c.problems.len() {
        let more = c.total - c.problems.len();
        c.problems.push(format!("... and {more} more"));
    }
    c.problems
}

/// The oldest and newest acceptable sample times at `now`.
pub(crate) fn window(cfg: &ApiConfig, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        now - Duration::days(cfg.max_age_days),
        now + Duration::seconds(cfg.max_future_secs),
    )
}

#[cfg(test)]
mod tests {
    use gpuwatch_store::catalogue::{Range, Role};
    use gpuwatch_store::{EnvSample, GpuSample, HostSample, Sample};
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use super::Checker;

    fn problems<S: Sample>(s: &S) -> Vec<String> {
        let mut c = Checker {
            problems: Vec::new(),
            total: 0,
        };
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
                gpuwatch_store::catalogue::SqlType::Float8 => serde_json::json!(bad),
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
}
