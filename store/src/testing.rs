//! Throw-away databases for integration tests, on both backends.
//!
//! `DATABASE_URL` names the plain PostgreSQL server and `TIMESCALE_URL` the
//! TimescaleDB one (defaults: 127.0.0.1:5432 and :5433, user postgres, the
//! servers `scripts/test.sh` starts). Each [`TestDb`] is a fresh database,
//! dropped when the value is dropped. [`both_backends!`](crate::both_backends)
//! turns one async test body into a test per backend.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::NoTls;

use crate::{BackendPreference, StoreConfig};

/// Which server a [`TestDb`] lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plain PostgreSQL, daily partitions.
    Postgres,
    /// TimescaleDB, hypertables.
    TimescaleDb,
}

/// A fresh database, dropped with the value.
pub struct TestDb {
    /// The backend under test.
    pub kind: Kind,
    /// URL of the fresh database.
    pub url: String,
    admin_url: String,
    name: String,
}

/// URL of the maintenance database of a backend's server.
pub fn admin_url(kind: Kind) -> String {
    let (var, default) = match kind {
        Kind::Postgres => (
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        Kind::TimescaleDb => (
            "TIMESCALE_URL",
            "postgres://postgres@127.0.0.1:5433/postgres",
        ),
    };
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// Replaces the database name of a URL (`.../name` or `...?` forms).
pub fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |p| p + 3);
    let base = match base[scheme_end..].find('/') {
        Some(p) => &base[..scheme_end + p],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

async fn admin(url: &str, kind: Kind) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| {
        panic!("test database server for {kind:?} at {url} is not reachable ({e}); run scripts/test.sh, which starts both servers")
    });
    tokio::spawn(conn);
    client
}

impl TestDb {
    /// Creates a fresh database on the server of `kind`.
    pub async fn new(kind: Kind) -> TestDb {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let admin_url = admin_url(kind);
        let client = admin(&admin_url, kind).await;
        if kind == Kind::TimescaleDb {
            let has = client
                .query_one("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')", &[])
                .await
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false);
            assert!(has, "TIMESCALE_URL ({admin_url}) has no timescaledb extension; run scripts/timescaledb.sh");
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "gw_test_{}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        TestDb {
            kind,
            url: with_dbname(&admin_url, &name),
            admin_url,
            name,
        }
    }

    /// Store settings for this database, forcing the backend under test.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            url: self.url.clone(),
            pool_size: 6,
            backend: match self.kind {
                Kind::Postgres => BackendPreference::Postgres,
                Kind::TimescaleDb => BackendPreference::Timescaledb,
            },
            ..StoreConfig::default()
        }
    }

    /// A plain client on this database.
    pub async fn client(&self) -> tokio_postgres::Client {
        admin(&self.url, self.kind).await
    }

    /// The name of the fresh database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// URL of the server's maintenance database (for creating roles etc.).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside a runtime, which cannot block: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok((c, conn)) = tokio_postgres::connect(&url, NoTls).await {
                        tokio::spawn(conn);
                        let _ = c
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// Defines `mod $name { postgres, timescaledb }`: one test per backend, each
/// handed a fresh [`TestDb`].
#[macro_export]
macro_rules! both_backends {
    ($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn body($db: $crate::testing::TestDb) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                body($crate::testing::TestDb::new($crate::testing::Kind::Postgres).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn timescaledb() {
                body($crate::testing::TestDb::new($crate::testing::Kind::TimescaleDb).await).await
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn with_dbname_replaces_only_the_path() {
        assert_eq!(
            with_dbname("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(with_dbname("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(
            with_dbname("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
    }
}
