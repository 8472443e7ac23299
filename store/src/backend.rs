use serde::Deserialize;
use tokio_postgres::Client;

use crate::{Result, StoreError};

/// Oldest server we support: declarative partitioning with the features we
/// use and `DROP DATABASE ... WITH (FORCE)` in tests.
const MIN_SERVER_VERSION_NUM: i32 = 140_000;

/// Which backend `migrate` should set up on a database that has none yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendPreference {
    /// TimescaleDB when the server offers it, plain PostgreSQL otherwise.
    #[default]
    Auto,
    /// TimescaleDB, or fail.
    Timescaledb,
    /// Plain PostgreSQL partitions even where TimescaleDB is available.
    Postgres,
}

/// The storage backend in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Hypertables with 1-day chunks; retention by `drop_chunks`.
    TimescaleDb {
        /// extension version, e.g. "2.19.3"
        version: String,
        /// `timescaledb.license`: "apache" or "timescale"
        license: String,
    },
    /// Daily range partitions created ahead; retention by dropping them.
    Postgres,
}

impl Backend {
    /// Short name recorded in `system_configs` and shown in logs.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::TimescaleDb { .. } => "timescaledb",
            Backend::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::TimescaleDb { version, license } => {
                write!(f, "TimescaleDB {version} ({license} license)")
            }
            Backend::Postgres => f.write_str("plain PostgreSQL (daily partitions)"),
        }
    }
}

/// What the server is and what it offers.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `server_version`, e.g. "15.20"
    pub server_version: String,
    /// Whether the timescaledb extension can be created on this server.
    pub timescaledb_available: bool,
    /// The backend in use in this database, if the extension is installed.
    pub backend: Backend,
}

/// Reads the server version and whether TimescaleDB is installed or installable.
pub async fn detect(client: &Client) -> Result<ServerInfo> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'),
                    current_setting('server_version_num')::int,
                    EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
                    (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')",
            &[],
        )
        .await
        .map_err(|e| StoreError::query("detecting the server version", e))?;
    let server_version: String = row.get(0);
    let num: i32 = row.get(1);
    if num < MIN_SERVER_VERSION_NUM {
        return Err(StoreError::Unsupported(format!(
            "PostgreSQL {server_version} is too old; gpuwatch needs PostgreSQL 14 or newer"
        )));
    }
    let ts_version: Option<String> = row.get(3);
    let backend = match ts_version {
        Some(version) => Backend::TimescaleDb {
            version,
            license: timescale_license(client).await?,
        },
        None => Backend::Postgres,
    };
    Ok(ServerInfo {
        server_version,
        timescaledb_available: row.get(2),
        backend,
    })
}

async fn timescale_license(client: &Client) -> Result<String> {
    let row = client
        .query_one("SELECT current_setting('timescaledb.license', true)", &[])
        .await
        .map_err(|e| StoreError::query("reading timescaledb.license", e))?;
    Ok(row
        .get::<_, Option<String>>(0)
        .unwrap_or_else(|| "unknown".into()))
}
