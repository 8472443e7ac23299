//! `[exporter]` of the config file.

use serde::Deserialize;

/// `[exporter]` of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExporterConfig {
    /// How often the snapshot is re-read from the database, seconds.
    #[serde(
        rename = "refresh",
        alias = "refresh_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub refresh_secs: u64,
    /// A series whose latest sample is older than this is not exported, seconds.
    #[serde(
        rename = "staleness",
        alias = "staleness_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub staleness_secs: u64,
}

impl Default for ExporterConfig {
    fn default() -> Self {
        ExporterConfig {
            refresh_secs: 5,
            staleness_secs: 90,
        }
    }
}

impl ExporterConfig {
    /// Every problem, as `key: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.refresh_secs == 0 {
            e.push("exporter.refresh_secs: must be at least 1".into());
        }
        if self.staleness_secs < self.refresh_secs {
            e.push(format!(
                "exporter.staleness_secs: must be at least exporter.refresh_secs ({}), got {}",
                self.refresh_secs, self.staleness_secs
            ));
        }
        e
    }
}
