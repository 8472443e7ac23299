use serde::Deserialize;

use crate::BackendPreference;

/// `[database]` of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// libpq-style URL or key=value string. `DATABASE_URL` overrides it.
    pub url: String,
    /// Where reads that may lag go (the exporter's snapshot, the API's
    /// inventory, series and job reads, usage reports): usually the
    /// standbys, as a multi-host URL with `target_session_attrs=prefer-standby`
    /// (or `standby`/`read-only`). Unset: everything reads from `url`.
    /// `DATABASE_READ_URL` overrides it.
    pub read_url: Option<String>,
    /// Largest number of pooled connections.
    pub pool_size: usize,
    /// Seconds to wait for a connection before giving up.
    #[serde(
        rename = "connect_timeout",
        alias = "connect_timeout_secs",
        deserialize_with = "crate::config::duration::seconds"
    )]
    pub connect_timeout_secs: u64,
    /// Which storage backend `migrate` sets up on a new database.
    pub backend: BackendPreference,
    /// Batch writer settings.
    pub writer: WriterConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "postgres://postgres@127.0.0.1:5432/gpuwatch".into(),
            read_url: None,
            pool_size: 8,
            connect_timeout_secs: 5,
            backend: BackendPreference::Auto,
            writer: WriterConfig::default(),
        }
    }
}

/// `[database.writer]`: how batches are streamed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterConfig {
    /// COPY streams run in parallel for one batch.
    pub connections: usize,
    /// Rows per COPY stream; a duplicate makes only its chunk take the slow path.
    pub chunk_rows: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            connections: 4,
            chunk_rows: 50_000,
        }
    }
}

impl StoreConfig {
    /// Every problem with these settings, as `key: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let urls = std::iter::once(("database.url", &self.url))
            .chain(self.read_url.iter().map(|u| ("database.read_url", u)));
        for (key, url) in urls {
            match crate::tls::split(&crate::pool::session_attrs(url).0) {
                Err(e) => errors.push(format!("{key}: {e}")),
                Ok((url, tls)) => {
                    if let Err(e) = url.parse::<tokio_postgres::Config>() {
                        errors.push(format!("{key}: not a PostgreSQL connection string ({e})"));
                    }
                    if let Err(e) = tls.connector() {
                        errors.push(format!("{key}: {e}"));
                    }
                }
            }
        }
        if self.pool_size == 0 {
            errors.push("database.pool_size: must be at least 1".into());
        }
        if self.connect_timeout_secs == 0 {
            errors.push("database.connect_timeout_secs: must be at least 1".into());
        }
        if self.writer.connections == 0 || self.writer.connections > self.pool_size {
            errors.push(format!(
                "database.writer.connections: must be between 1 and database.pool_size ({}), got {}",
                self.pool_size, self.writer.connections
            ));
        }
        if !(100..=1_000_000).contains(&self.writer.chunk_rows) {
            errors.push(format!(
                "database.writer.chunk_rows: must be between 100 and 1000000, got {}",
                self.writer.chunk_rows
            ));
        }
        errors
    }
}

/// Durations in the config file. One style: humantime strings
/// (`interval = "10s"`, `"5m"`, `"1h 30m"`). The older spelling, a number
/// of seconds under a `_secs` key (`interval_secs = 10`), is still read;
/// giving both is an error naming both.
///
/// A duration field keeps its value in seconds in Rust and is declared as
///
/// ```ignore
/// #[serde(rename = "interval", alias = "interval_secs", deserialize_with = "seconds")]
/// pub interval_secs: u64,
/// ```
///
/// so the field name says the unit and every caller keeps its arithmetic.
pub mod duration {
    use std::fmt;
    use std::marker::PhantomData;
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};

    /// What the old `_secs` spelling of a key is: `interval` → `interval_secs`.
    pub const LEGACY_SUFFIX: &str = "_secs";

    /// A type a duration setting is kept in: whole seconds (`u64`, `i64`)
    /// or fractional seconds (`f64`).
    pub trait Seconds: Sized {
        /// From a humantime duration; `Err` says why it does not fit.
        fn from_duration(d: Duration) -> Result<Self, String>;
        /// From a number of seconds as written under the old key.
        fn from_number(n: f64) -> Result<Self, String>;
    }

    impl Seconds for u64 {
        fn from_duration(d: Duration) -> Result<Self, String> {
            if d.subsec_nanos() != 0 {
                return Err(format!(
                    "must be whole seconds, got {:?}",
                    humantime::format_duration(d).to_string()
                ));
            }
            Ok(d.as_secs())
        }
        fn from_number(n: f64) -> Result<Self, String> {
            if n < 0.0 || n.fract() != 0.0 || n > u64::MAX as f64 {
                return Err(format!("must be whole seconds, got {n}"));
            }
            Ok(n as u64)
        }
    }

    impl Seconds for i64 {
        fn from_duration(d: Duration) -> Result<Self, String> {
            u64::from_duration(d)
                .and_then(|s| i64::try_from(s).map_err(|_| "is too long".to_string()))
        }
        fn from_number(n: f64) -> Result<Self, String> {
            if n.fract() != 0.0 || n.abs() > i64::MAX as f64 {
                return Err(format!("must be whole seconds, got {n}"));
            }
            Ok(n as i64)
        }
    }

    impl Seconds for f64 {
        fn from_duration(d: Duration) -> Result<Self, String> {
            Ok(d.as_secs_f64())
        }
        fn from_number(n: f64) -> Result<Self, String> {
            Ok(n)
        }
    }

    /// `deserialize_with` of a duration setting: a humantime string, or a
    /// number of seconds (the old `_secs` key).
    pub fn seconds<'de, D: Deserializer<'de>, T: Seconds>(d: D) -> Result<T, D::Error> {
        d.deserialize_any(SecondsVisitor(PhantomData))
    }

    struct SecondsVisitor<T>(PhantomData<T>);

    impl<T: Seconds> Visitor<'_> for SecondsVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration like \"10s\", \"5m\" or \"1h 30m\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            let d = humantime::parse_duration(v).map_err(|e| {
                E::custom(format!(
                    "not a duration ({e}): {v:?}; write e.g. \"10s\", \"5m\" or \"1h 30m\""
                ))
            })?;
            T::from_duration(d).map_err(E::custom)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            T::from_number(v as f64).map_err(E::custom)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            T::from_number(v as f64).map_err(E::custom)
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            T::from_number(v).map_err(E::custom)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use serde::Deserialize;

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct S {
            #[serde(
                rename = "interval",
                alias = "interval_secs",
                deserialize_with = "seconds"
            )]
            interval_secs: u64,
            #[serde(
                rename = "wait",
                alias = "wait_secs",
                deserialize_with = "seconds",
                default
            )]
            wait_secs: f64,
        }

        fn parse(s: &str) -> Result<S, String> {
            serde_json::from_str(s).map_err(|e| e.to_string())
        }

        #[test]
        fn both_spellings_read_and_say_the_same() {
            assert_eq!(
                parse(r#"{"interval": "1h 30m"}"#).unwrap().interval_secs,
                5400
            );
            assert_eq!(
                parse(r#"{"interval_secs": 5400}"#).unwrap().interval_secs,
                5400
            );
            let s = parse(r#"{"interval": "1m", "wait": "250ms"}"#).unwrap();
            assert_eq!(s.wait_secs, 0.25);
            assert_eq!(
                parse(r#"{"interval": 1, "wait_secs": 1.5}"#)
                    .unwrap()
                    .wait_secs,
                1.5
            );
        }

        #[test]
        fn bad_durations_say_how_to_write_one() {
            let e = parse(r#"{"interval": "ten"}"#).unwrap_err();
            assert!(e.contains("not a duration") && e.contains("\"10s\""), "{e}");
            let e = parse(r#"{"interval": "1500ms"}"#).unwrap_err();
            assert!(e.contains("must be whole seconds, got \"1s 500ms\""), "{e}");
            let e = parse(r#"{"interval_secs": -1}"#).unwrap_err();
            assert!(e.contains("must be whole seconds"), "{e}");
        }

        #[test]
        fn both_spellings_at_once_are_refused() {
            let e = parse(r#"{"interval": "1s", "interval_secs": 1}"#).unwrap_err();
            assert!(e.contains("duplicate field `interval`"), "{e}");
        }
    }
}
