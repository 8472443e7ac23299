use serde::Deserialize;

use crate::BackendPreference;

/// `[database]` of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// libpq-style URL or key=value string. `DATABASE_URL` overrides it.
    pub url: String,
    /// Largest number of pooled connections.
    pub pool_size: usize,
    /// Seconds to wait for a connection before giving up.
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
        match crate::tls::split(&self.url) {
            Err(e) => errors.push(format!("database.url: {e}")),
            Ok((url, tls)) => {
                if let Err(e) = url.parse::<tokio_postgres::Config>() {
                    errors.push(format!(
                        "database.url: not a PostgreSQL connection string ({e})"
                    ));
                }
                if let Err(e) = tls.connector() {
                    errors.push(format!("database.url: {e}"));
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
