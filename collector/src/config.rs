use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::sources::cgroup::CgroupConfig;
use crate::sources::procfs::ProcfsConfig;

/// `[collector]` of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Seconds between collections.
    #[serde(
        rename = "interval",
        alias = "interval_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub interval_secs: u64,
    /// Where samples come from.
    pub source: SourceKind,
    /// Where batches go.
    pub sink: SinkKind,
    /// This host's id in `hosts` (source "host"); default: the hostname.
    pub host_id: Option<String>,
    /// Labels stored with this host (`hosts.labels`), e.g. region, zone.
    pub labels: BTreeMap<String, String>,
    /// The HTTP sink.
    pub http: HttpConfig,
    /// The on-disk spool for batches the sink could not take.
    pub spool: SpoolConfig,
    /// The simulated fleet.
    pub sim: SimConfig,
    /// The host source (source "host").
    pub host: ProcfsConfig,
    /// The environment source (source "host").
    pub cgroup: CgroupConfig,
    /// Where the agent answers `/metrics` and `/health` itself, e.g.
    /// "0.0.0.0:9400" (dcgm-exporter's port); absent: not served. Also
    /// `gpuwatch collector --web.listen-address`.
    pub listen: Option<String>,
    /// The path of the agent's metrics (default "/metrics"; also
    /// `--web.telemetry-path`).
    pub telemetry_path: String,
    /// Readings older than this are not served on the agent's `/metrics`,
    /// seconds (default 90, as `exporter.staleness`).
    #[serde(
        rename = "staleness",
        alias = "staleness_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub staleness_secs: u64,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            interval_secs: 10,
            source: SourceKind::Sim,
            sink: SinkKind::Direct,
            host_id: None,
            labels: BTreeMap::new(),
            http: HttpConfig::default(),
            spool: SpoolConfig::default(),
            sim: SimConfig::default(),
            host: ProcfsConfig::default(),
            cgroup: CgroupConfig::default(),
            listen: None,
            telemetry_path: "/metrics".into(),
            staleness_secs: 90,
        }
    }
}

/// Which source the collector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The deterministic simulated fleet.
    Sim,
    /// This machine: /proc and statfs, NVML for GPUs, cgroup v2 for environments.
    Host,
}

/// Which sink the collector writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// Binary COPY straight into `database.url`.
    Direct,
    /// `POST /api/v1/ingest` on `gpuwatch serve` (collector.http).
    Http,
}

/// `[collector.http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Base URL of `gpuwatch serve`.
    pub url: String,
    /// This agent's bearer token (`gpuwatch token create --role agent`).
    pub token: String,
    /// Seconds before a request is given up (and the batch spooled).
    #[serde(
        rename = "timeout",
        alias = "timeout_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub timeout_secs: u64,
    /// PEM CA bundle that signed serve's certificate; without it an https
    /// URL is checked against the system's roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for a serve that requires one (mTLS).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            url: "http://127.0.0.1:9400".into(),
            token: String::new(),
            timeout_secs: 10,
            ca: None,
            client_cert: None,
            client_key: None,
        }
    }
}

impl HttpConfig {
    /// Every problem, as `key: what is wrong` lines (only checked when the sink is http).
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            e.push(format!(
                "collector.http.url: must start with http:// or https://, got {:?}",
                self.url
            ));
        }
        if self.token.is_empty() {
            e.push("collector.http.token: required for the http sink (create one with `gpuwatch token create --role agent`)".into());
        }
        if !(1..=300).contains(&self.timeout_secs) {
            e.push(format!(
                "collector.http.timeout_secs: must be between 1 and 300, got {}",
                self.timeout_secs
            ));
        }
        e.extend(self.tls_files().validate());
        e
    }

    /// The TLS files of this sink, checked and applied by the HTTP client.
    pub(crate) fn tls_files(&self) -> crate::sinks::tls::TlsFiles<'_> {
        crate::sinks::tls::TlsFiles {
            url: &self.url,
            ca: self.ca.as_ref(),
            client_cert: self.client_cert.as_ref(),
            client_key: self.client_key.as_ref(),
        }
    }
}

/// `[collector.spool]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory of the spool (created if missing).
    pub dir: PathBuf,
    /// Size cap in bytes; beyond it the oldest batches are dropped (the
    /// newest data is what an operator looks at first after an outage).
    pub max_bytes: u64,
    /// Most refused batches kept in `rejected/` (oldest pruned first).
    pub rejected_keep: usize,
    /// Refused batches older than this are pruned from `rejected/`.
    #[serde(
        rename = "rejected_max_age",
        alias = "rejected_max_age_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub rejected_max_age_secs: u64,
    /// Longest wait between retries of a delivery that failed for a
    /// transient reason (the wait doubles from 1 s up to this).
    #[serde(
        rename = "retry_max",
        alias = "retry_max_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub retry_max_secs: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from("/var/lib/gpuwatch/spool"),
            max_bytes: 256 << 20,
            rejected_keep: 100,
            rejected_max_age_secs: 7 * 86_400,
            retry_max_secs: 60,
        }
    }
}

/// `[collector.sim]`: the simulated fleet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Number of hosts.
    pub hosts: u32,
    /// GPUs per host.
    pub gpus_per_host: u32,
    /// Seed: the same seed and times give the same samples.
    pub seed: u64,
    /// Whether GPU 0 of host 0 runs hot (above the 80/85 °C thresholds).
    pub hot_gpu: bool,
    /// Seconds after start when the last host goes silent; 0 keeps it alive.
    #[serde(
        rename = "silent_host_after",
        alias = "silent_host_after_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub silent_host_after_secs: u64,
    /// Simulate a control plane too, where the collector writes to the
    /// database directly (`sink = "direct"`, as under `gpuwatch all`):
    /// customers, workspaces and default prices, and environments on the
    /// first hosts that start, resize and stop through the UTC day, with
    /// their samples. The meter bills them, so the quick start shows money.
    pub environments: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            hosts: 4,
            gpus_per_host: 8,
            seed: 42,
            hot_gpu: true,
            silent_host_after_secs: 600,
            environments: true,
        }
    }
}

impl CollectorConfig {
    /// Problems of `listen`, `telemetry_path` and `staleness` (the last
    /// only matters, and is only checked, when `listen` is set).
    fn validate_listen(&self) -> Vec<String> {
        let mut e = Vec::new();
        if let Some(l) = &self.listen {
            if l.parse::<std::net::SocketAddr>().is_err() {
                e.push(format!(
                    "collector.listen: must be an address and port such as \"0.0.0.0:9400\", got {l:?}"
                ));
            }
        }
        let p = &self.telemetry_path;
        if !p.starts_with('/') || p == "/health" || p.contains(['{', '}', '*', ':']) {
            e.push(format!(
                "collector.telemetry_path: must be a path such as \"/metrics\", other than /health, got {p:?}"
            ));
        }
        if self.listen.is_some() && self.staleness_secs < self.interval_secs {
            e.push(format!(
                "collector.staleness_secs: must be at least collector.interval_secs ({}), got {}",
                self.interval_secs, self.staleness_secs
            ));
        }
        e
    }

    /// The interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    /// Every problem, as `key: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !(1..=3600).contains(&self.interval_secs) {
            e.push(format!(
                "collector.interval_secs: must be between 1 and 3600, got {}",
                self.interval_secs
            ));
        }
        if !(1..=3600).contains(&self.spool.retry_max_secs) {
            e.push(format!(
                "collector.spool.retry_max: must be between 1s and 1h, got {}s",
                self.spool.retry_max_secs
            ));
        }
        if self.spool.max_bytes < 1 << 20 {
            e.push(format!(
                "collector.spool.max_bytes: must be at least 1048576 (1 MiB), got {}",
                self.spool.max_bytes
            ));
        }
        if self.spool.dir.as_os_str().is_empty() {
            e.push("collector.spool.dir: must not be empty".into());
        }
        if self
            .host_id
            .as_deref()
            .is_some_and(|h| h.is_empty() || h.len() > 64)
        {
            e.push("collector.host_id: must be 1 to 64 characters".into());
        }
        if self.source == SourceKind::Host {
            e.extend(self.host.validate());
            e.extend(self.cgroup.validate());
        }
        if self.sink == SinkKind::Http {
            e.extend(self.http.validate());
        }
        e.extend(self.validate_listen());
        if !(1..=10_000).contains(&self.sim.hosts) {
            e.push(format!(
                "collector.sim.hosts: must be between 1 and 10000, got {}",
                self.sim.hosts
            ));
        }
        if !(1..=64).contains(&self.sim.gpus_per_host) {
            e.push(format!(
                "collector.sim.gpus_per_host: must be between 1 and 64, got {}",
                self.sim.gpus_per_host
            ));
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_path_and_staleness_are_checked() {
        assert!(CollectorConfig::default().validate().is_empty());
        let bad = CollectorConfig {
            listen: Some("9400".into()),
            telemetry_path: "metrics".into(),
            interval_secs: 120,
            ..CollectorConfig::default()
        };
        let e = bad.validate();
        assert_eq!(e.len(), 3, "{e:#?}");
        assert!(e[0].starts_with("collector.listen:"), "{e:#?}");
        assert!(e[1].starts_with("collector.telemetry_path:"), "{e:#?}");
        assert!(e[2].starts_with("collector.staleness_secs:"), "{e:#?}");
        // Staleness only matters when the agent serves.
        let quiet = CollectorConfig {
            interval_secs: 120,
            ..CollectorConfig::default()
        };
        assert!(quiet.validate().is_empty());
    }
}
