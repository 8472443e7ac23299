//! The one config file, environment overrides, and validation that reports
//! every problem at once, each on one line naming the key.

use std::collections::BTreeMap;
use std::path::Path;

use gpuwatch_aggregator::AggregatorConfig;
use gpuwatch_alerter::AlerterConfig;
use gpuwatch_api::ApiConfig;
use gpuwatch_billing::BillingConfig;
use gpuwatch_collector::CollectorConfig;
use gpuwatch_dlworkspace::DlworkspaceConfig;
use gpuwatch_exporter::ExporterConfig;
use gpuwatch_store::StoreConfig;
use serde::Deserialize;

/// Prefix of environment overrides: `GPUWATCH_DATABASE__POOL_SIZE=4` sets
/// `database.pool_size` (`__` separates levels; one `_` stays in a key).
/// Only variables whose first level names a section of [`Config`] count:
/// other `GPUWATCH_*` variables belong to the scripts and the Grafana
/// provisioning (`GPUWATCH_CACHE`, `GPUWATCH_PG_HOST`) and are left alone.
const ENV_PREFIX: &str = "GPUWATCH_";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[database]`
    pub database: StoreConfig,
    /// `[collector]`
    pub collector: CollectorConfig,
    /// `[aggregator]`
    pub aggregator: AggregatorConfig,
    /// `[api]`
    pub api: ApiConfig,
    /// `[billing]`
    pub billing: BillingConfig,
    /// `[exporter]`
    pub exporter: ExporterConfig,
    /// `[alerter]`
    pub alerter: AlerterConfig,
    /// `[dlworkspace]`: DLWorkspace clusters whose jobs are mirrored.
    pub dlworkspace: DlworkspaceConfig,
    /// `[log]`
    pub log: LogConfig,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "gpuwatch_store=debug,info"; RUST_LOG wins.
    pub level: String,
    /// "text" or "json".
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

impl Config {
    /// Reads `path` (if any), applies overrides from `env`, validates.
    /// `env` is passed in so tests never touch the process environment.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Vec<String>> {
        let mut table = match path {
            Some(p) => read_file(p)?,
            None => toml::Table::new(),
        };
        let origins = apply_env(&mut table, env)?;
        let written = table.clone();
        let cfg: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                let message = one_line(&e.inner().to_string());
                if let Some(both) = given_twice(&key, &message) {
                    return vec![both];
                }
                let origin = origins
                    .get(&key)
                    .map(|v| format!(" (from {v})"))
                    .unwrap_or_default();
                vec![format!("{key}{origin}: {message}")]
            })?;
        let errors: Vec<String> = cfg
            .validate()
            .into_iter()
            .map(|e| as_written(e, &written))
            .collect();
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    fn validate(&self) -> Vec<String> {
        let mut e = self.database.validate();
        e.extend(self.collector.validate());
        e.extend(self.aggregator.validate());
        e.extend(self.api.validate());
        e.extend(self.billing.validate());
        e.extend(self.dlworkspace.validate());
        e.extend(self.exporter.validate());
        e.extend(self.alerter.validate());
        if !matches!(self.log.format.as_str(), "text" | "json") {
            e.push(format!(
                "log.format: must be \"text\" or \"json\", got {:?}",
                self.log.format
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            e.push(format!(
                "log.level: not a valid filter: {:?}",
                self.log.level
            ));
        }
        e
    }
}

/// A duration written both ways (`interval = "10s"` and `interval_secs = 10`)
/// reaches serde as one field given twice; say which two keys collide.
fn given_twice(section: &str, message: &str) -> Option<String> {
    let field = message
        .strip_prefix("duplicate field `")?
        .split('`')
        .next()?;
    let legacy = gpuwatch_store::duration::LEGACY_SUFFIX;
    Some(format!(
        "{section}.{field} and {section}.{field}{legacy}: the same setting, given twice; keep {section}.{field} (a duration like \"10s\" or \"1h 30m\")"
    ))
}

/// Validation names a duration by its field, which holds seconds
/// (`collector.interval_secs: ...`). Where the file or the environment wrote
/// the duration spelling (`interval = "0s"`), name that key instead.
fn as_written(message: String, written: &toml::Table) -> String {
    let legacy = gpuwatch_store::duration::LEGACY_SUFFIX;
    let Some((key, rest)) = message.split_once(':') else {
        return message;
    };
    let Some(new_key) = key.strip_suffix(legacy) else {
        return message;
    };
    let given = |k: &str| {
        let mut parts: Vec<&str> = k.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        parts
            .into_iter()
            .try_fold(written, |t, part| t.get(part)?.as_table())
            .is_some_and(|t| t.contains_key(last))
    };
    if !given(key) && given(new_key) {
        format!("{new_key} (in seconds):{rest}")
    } else {
        message
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn read_file(p: &Path) -> Result<toml::Table, Vec<String>> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| vec![format!("config file {}: cannot read it: {e}", p.display())])?;
    text.parse::<toml::Table>().map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(" at line {}", text[..s.start].matches('\n').count() + 1))
            .unwrap_or_default();
        vec![format!("config file {}{at}: {}", p.display(), e.message())]
    })
}

/// Applies `DATABASE_URL` and `GPUWATCH_*` overrides; returns key → variable
/// so errors can say where a bad value came from.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut origins = BTreeMap::new();
    let mut errors = Vec::new();
    let mut vars: Vec<(String, String)> = env.into_iter().collect();
    vars.sort();
    for (var, raw) in vars {
        let path: Vec<String> = if var == "DATABASE_URL" {
            vec!["database".into(), "url".into()]
        } else if var == "DATABASE_READ_URL" {
            vec!["database".into(), "read_url".into()]
        } else if var == "GPUWATCH_LISTEN" {
            // dcgm-exporter's style of variable for the one setting most
            // deployments change; it wins over GPUWATCH_API__LISTEN.
            vec!["api".into(), "listen".into()]
        } else if let Some(rest) = var.strip_prefix(ENV_PREFIX) {
            let Some((section, _)) = rest.split_once("__") else {
                continue; // GPUWATCH_CONFIG, GPUWATCH_CACHE, GPUWATCH_PG_*: not settings
            };
            if !sections().contains(&section.to_ascii_lowercase().as_str()) {
                continue;
            }
            rest.split("__").map(|s| s.to_ascii_lowercase()).collect()
        } else {
            continue;
        };
        if path.iter().any(String::is_empty) {
            errors.push(format!("{var}: not a config key (use GPUWATCH_SECTION__KEY, e.g. GPUWATCH_DATABASE__POOL_SIZE)"));
            continue;
        }
        origins.insert(path.join("."), var.clone());
        if let Err(e) = set(table, &path, parse_scalar(&raw)) {
            errors.push(format!("{var}: {e}"));
        }
    }
    if errors.is_empty() {
        Ok(origins)
    } else {
        Err(errors)
    }
}

/// The sections of [`Config`], as serde knows them, so the list of sections
/// that environment overrides may name is the struct itself and cannot drift.
fn sections() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    use serde::Deserializer;

    /// A deserializer that only records the field names serde asks for.
    struct Fields(&'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names recorded")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }
    impl<'de> Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    static SECTIONS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    SECTIONS.get_or_init(|| {
        let mut f = Fields(&[]);
        let _ = Config::deserialize(&mut f);
        f.0
    })
}

/// An override is a TOML scalar if it parses as one (`4`, `true`, `1.5`), else a string.
fn parse_scalar(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)),
            ) => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| format!("{p} is not a section"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_str(toml: &str, vars: &[(&str, &str)]) -> Result<Config, Vec<String>> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("gpuwatch-cfg-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("gpuwatch.toml");
        std::fs::write(&p, toml).unwrap();
        Config::load(Some(&p), env(vars))
    }

    #[test]
    fn the_example_config_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("gpuwatch.example.toml");
        Config::load(Some(&p), vec![]).expect("gpuwatch.example.toml must load");
    }

    #[test]
    fn env_overrides_win_and_are_typed() {
        let cfg = load_str(
            "[database]\npool_size = 3\n",
            &[
                ("DATABASE_URL", "postgres://x@h/db"),
                ("GPUWATCH_DATABASE__POOL_SIZE", "9"),
                ("GPUWATCH_COLLECTOR__SIM__HOSTS", "2"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.database.url, "postgres://x@h/db");
        assert_eq!(cfg.database.pool_size, 9);
        assert_eq!(cfg.collector.sim.hosts, 2);
    }

    #[test]
    fn gpuwatch_listen_sets_the_api_address() {
        let cfg = load_str("", &[("GPUWATCH_LISTEN", "0.0.0.0:9500")]).unwrap();
        assert_eq!(cfg.api.listen, "0.0.0.0:9500");
        let both = load_str(
            "",
            &[
                ("GPUWATCH_API__LISTEN", "127.0.0.1:1"),
                ("GPUWATCH_LISTEN", "127.0.0.1:2"),
            ],
        )
        .unwrap();
        assert_eq!(both.api.listen, "127.0.0.1:2");
    }

    #[test]
    fn gpuwatch_variables_outside_the_config_sections_are_not_settings() {
        let cfg = load_str(
            "",
            &[
                ("GPUWATCH_CACHE", "/tmp/x"),
                ("GPUWATCH_PG_HOST", "db:5432"),
                ("GPUWATCH_PG_PASSWORD", "s3cret"),
                ("GPUWATCH_NOT_A__SECTION", "1"),
                ("GPUWATCH_LOG__LEVEL", "debug"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.log.level, "debug");
        // A known section still rejects a key it does not have.
        let errs = load_str("", &[("GPUWATCH_DATABASE__CACHE", "/tmp/x")]).unwrap_err();
        assert!(
            errs[0].starts_with("database.cache (from GPUWATCH_DATABASE__CACHE): unknown field"),
            "{errs:?}"
        );
    }

    #[test]
    fn the_sections_are_those_of_the_config_struct() {
        assert_eq!(
            sections(),
            [
                "database",
                "collector",
                "aggregator",
                "api",
                "billing",
                "exporter",
                "alerter",
                "dlworkspace",
                "log"
            ]
        );
    }

    #[test]
    fn a_wrong_type_names_the_key_and_the_variable() {
        let errs = load_str("", &[("GPUWATCH_DATABASE__POOL_SIZE", "many")]).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "database.pool_size (from GPUWATCH_DATABASE__POOL_SIZE): invalid type"
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn an_unknown_key_is_rejected_by_name() {
        let errs = load_str("[database]\npol_size = 3\n", &[]).unwrap_err();
        assert!(
            errs[0].starts_with("database.pol_size: unknown field `pol_size`"),
            "{errs:?}"
        );
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let errs = load_str(
            "[collector]\ninterval_secs = 0\n[collector.sim]\nhosts = 0\n[log]\nformat = \"xml\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs
            .iter()
            .any(|e| e.starts_with("collector.interval_secs:")));
        assert!(errs.iter().any(|e| e.starts_with("collector.sim.hosts:")));
        assert!(errs.iter().any(|e| e.starts_with("log.format:")));
    }

    #[test]
    fn durations_are_humantime_and_the_old_secs_keys_still_read() {
        let cfg = load_str(
            "[collector]\ninterval = \"1m\"\n[alerter]\ninterval = \"500ms\"\ngroup_wait_secs = 2.5\n[aggregator]\nlateness = \"1h 30m\"\n[exporter]\nrefresh_secs = 7\n",
            &[("GPUWATCH_DATABASE__CONNECT_TIMEOUT", "3s")],
        )
        .unwrap();
        assert_eq!(cfg.collector.interval_secs, 60);
        assert_eq!(cfg.alerter.interval_secs, 0.5);
        assert_eq!(cfg.alerter.group_wait_secs, 2.5);
        assert_eq!(cfg.aggregator.lateness_secs, 5400);
        assert_eq!(cfg.exporter.refresh_secs, 7);
        assert_eq!(cfg.database.connect_timeout_secs, 3);
    }

    #[test]
    fn a_duration_given_in_both_spellings_names_both() {
        let errs =
            load_str("[collector]\ninterval = \"10s\"\ninterval_secs = 10\n", &[]).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("collector.interval") && errs[0].contains("collector.interval_secs"),
            "{errs:?}"
        );
        let errs = load_str("[collector]\ninterval = \"0s\"\n", &[]).unwrap_err();
        assert_eq!(
            errs,
            ["collector.interval (in seconds): must be between 1 and 3600, got 0"]
        );
        let errs = load_str("[collector]\ninterval_secs = 0\n", &[]).unwrap_err();
        assert_eq!(
            errs,
            ["collector.interval_secs: must be between 1 and 3600, got 0"]
        );
        let errs = load_str("[collector.http]\ntimeout = \"ten\"\n", &[]).unwrap_err();
        assert!(
            errs[0].starts_with("collector.http.timeout: not a duration"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_syntax_error_names_the_file_and_line() {
        let errs = load_str("[database]\nurl = \n", &[]).unwrap_err();
        assert!(errs[0].contains("gpuwatch.toml at line 2"), "{errs:?}");
    }
}
