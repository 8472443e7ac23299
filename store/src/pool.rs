use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Metrics, RecyclingMethod};
use tokio_postgres::{
    config::{Host, TargetSessionAttrs},
    Client, Config,
};

use crate::tls::{self, MakeRustls};
use crate::{error::db_message, Result, StoreConfig, StoreError};

/// The connection pool every role shares. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: deadpool_postgres::Pool,
    pg: Config,
    /// `prefer-standby`: where no standby answers, any server will do.
    fallback: Option<deadpool_postgres::Pool>,
    /// The pool of `database.read_url`, when one is configured.
    readers: Option<Arc<Pool>>,
    /// This is such a pool of readers.
    is_readers: bool,
}

/// How often, and how far apart, the readers' pool retries a connection a
/// failover refused (see [`Pool::get`]).
const READER_RETRIES: u32 = 6;
const READER_RETRY_DELAY: Duration = Duration::from_millis(500);

impl Pool {
    /// Takes a connection, mapping failures to errors that say what to fix.
    ///
    /// The readers' pool tries a few times: in a failover the HA manager
    /// restarts the surviving standbys to follow the new primary, so for
    /// about a second no server may take a connection, and a read should
    /// wait that out rather than fail.
    pub async fn get(&self) -> Result<deadpool_postgres::Object> {
        let mut attempt = 0;
        loop {
            match self.get_once().await {
                Err(e) if self.is_readers && e.is_temporary() && attempt < READER_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(READER_RETRY_DELAY).await;
                }
                other => return other,
            }
        }
    }

    async fn get_once(&self) -> Result<deadpool_postgres::Object> {
        match self.inner.get().await {
            Ok(c) => Ok(c),
            Err(e) => match &self.fallback {
                Some(any) => any.get().await.map_err(|e| self.pool_error(e)),
                None => Err(self.pool_error(e)),
            },
        }
    }

    fn pool_error(&self, e: deadpool_postgres::PoolError) -> StoreError {
        use deadpool_postgres::PoolError;
        match e {
            PoolError::Backend(pe) => connect_error(&self.pg, pe),
            PoolError::Timeout(_) => StoreError::Pool(format!(
                "timed out waiting for a connection to {}; the server is slow or database.pool_size is too small",
                redact(&self.pg)
            )),
            other => StoreError::Pool(other.to_string()),
        }
    }

    /// `host:port/dbname`, for log lines.
    pub fn target(&self) -> String {
        redact(&self.pg)
    }

    /// The pool reads that may lag the primary go to: `database.read_url`'s
    /// (standbys) where one is configured, else this one. A read that must
    /// see a write of the same caller stays on `self` (see DESIGN, "Readers").
    pub fn readers(&self) -> &Pool {
        self.readers.as_deref().unwrap_or(self)
    }

    /// Whether this is the readers' pool of `database.read_url`.
    pub fn is_readers(&self) -> bool {
        self.is_readers
    }

    /// Whether reads go to a pool of their own (`database.read_url`).
    pub fn has_readers(&self) -> bool {
        self.readers.is_some()
    }
}

/// libpq's `target_session_attrs` values that tokio-postgres lacks, mapped
/// onto the ones it has: `standby` is `read-only` (a hot standby is
/// read-only), `primary` is `read-write`, and `prefer-standby` is
/// `read-only` with any server as the fallback (returned `true`).
pub(crate) fn session_attrs(url: &str) -> (String, bool) {
    let key = "target_session_attrs=";
    let mut prefer = false;
    let mut out = url.to_string();
    for (from, to) in [
        ("prefer-standby", "read-only"),
        ("standby", "read-only"),
        ("primary", "read-write"),
    ] {
        let (f, t) = (format!("{key}{from}"), format!("{key}{to}"));
        if out.contains(&f) {
            prefer |= from == "prefer-standby";
            out = out.replace(&f, &t);
        }
    }
    (out, prefer)
}

/// Parses `database.url`, applying the configured connect timeout where the
/// URL sets none, and builds the TLS connector its libpq TLS keys ask for.
fn pg_config(cfg: &StoreConfig) -> Result<(Config, MakeRustls)> {
    let (url, db_tls) = tls::split(&session_attrs(&cfg.url).0).map_err(StoreError::BadUrl)?;
    let mut pg: Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| StoreError::BadUrl(e.to_string()))?;
    pg.ssl_mode(db_tls.ssl_mode());
    // libpq ignores sslmode on Unix-domain sockets, where servers refuse TLS.
    #[cfg(unix)]
    if !pg.get_hosts().is_empty() && pg.get_hosts().iter().all(|h| matches!(h, Host::Unix(_))) {
        pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
    }
    let connector = db_tls.connector().map_err(StoreError::BadUrl)?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(cfg.connect_timeout_secs));
    }
    if pg.get_application_name().is_none() {
        pg.application_name("gpuwatch");
    }
    Ok((pg, connector))
}

/// `host:port/dbname` of a config, never its password.
pub fn redact(pg: &Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", pg.get_dbname().unwrap_or("postgres"))
}

/// Turns a failed connection attempt into an error that says what to fix.
fn connect_error(pg: &Config, e: tokio_postgres::Error) -> StoreError {
    let target = redact(pg);
    if let Some(db) = e.as_db_error() {
        match db.code().code() {
            // invalid_password, invalid_authorization_specification
            "28P01" | "28000" => {
                return StoreError::AuthFailed {
                    target,
                    user: pg.get_user().unwrap_or("").to_string(),
                    reason: db.message().to_string(),
                }
            }
            "3D000" => {
                return StoreError::NoSuchDatabase {
                    dbname: pg.get_dbname().unwrap_or("").to_string(),
                    target,
                }
            }
            _ => {}
        }
    }
    if let Some(reason) = tls::explain(&target, &e) {
        return StoreError::Tls(reason);
    }
    let reason = db_message(&e);
    if reason.contains("password missing") {
        return StoreError::AuthFailed {
            target,
            user: pg.get_user().unwrap_or("").to_string(),
            reason: "the server asks for a password and database.url has none".into(),
        };
    }
    StoreError::Unreachable {
        target,
        reason: reason
            .trim_start_matches("error connecting to server: ")
            .to_string(),
    }
}

/// Opens a single connection (for migrations and one-off work), spawning its
/// connection task.
pub async fn connect_one(cfg: &StoreConfig) -> Result<Client> {
    let (pg, tls) = pg_config(cfg)?;
    let (client, conn) = pg.connect(tls).await.map_err(|e| connect_error(&pg, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}

/// tokio-postgres checks `target_session_attrs=read-write` only at connect, so
/// after a failover a pooled connection to the demoted primary would fail
/// every write with SQLSTATE 25006. Where the URL asks for a writable
/// server, each checkout re-checks it the way libpq does (in recovery, or
/// `transaction_read_only`, which an HA manager sets on a node while it
/// fences or promotes it) and such a connection is evicted (one round trip
/// per checkout; the batch writer checks out per chunk, so it is noise there).
///
/// A pool that asks for a standby (`read-only`, and so `standby` and
/// `prefer-standby`) checks the converse: a standby promoted in a failover
/// is left, so reads move on to the remaining standbys instead of loading
/// the new primary.
fn recycling(pg: &Config) -> RecyclingMethod {
    match pg.get_target_session_attrs() {
        TargetSessionAttrs::ReadWrite => RecyclingMethod::Custom(
            "DO $$ BEGIN IF pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on' THEN RAISE EXCEPTION 'server is read-only now'; END IF; END $$".into(),
        ),
        TargetSessionAttrs::ReadOnly => RecyclingMethod::Custom(
            "DO $$ BEGIN IF NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' THEN RAISE EXCEPTION 'server is writable now'; END IF; END $$".into(),
        ),
        _ => RecyclingMethod::Fast,
    }
}

/// When a read-only refusal (SQLSTATE 25006) was last seen, in nanoseconds
/// since [`epoch`]; 0 for never. Process-wide because a tokio-postgres error
/// does not say which connection it came from.
static READ_ONLY_SEEN: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Records that a server refused a write as read-only (called where such an
/// error is classed, [`crate::StoreError::query`]).
pub(crate) fn note_read_only() {
    // +1 keeps a refusal in the epoch's first nanosecond distinct from never.
    let at = epoch().elapsed().as_nanos() as u64 + 1;
    READ_ONLY_SEEN.fetch_max(at, Ordering::Relaxed);
}

/// Whether a connection last checked out at `last_checkout` may be the one
/// that saw the last read-only refusal: it was taken before the refusal.
/// Such a connection talks to a server that changed role, whatever the URL
/// asks for, so it is dropped at its next checkout rather than reused.
fn suspect(last_checkout: Instant) -> bool {
    let seen = READ_ONLY_SEEN.load(Ordering::Relaxed);
    seen != 0 && (last_checkout.saturating_duration_since(epoch()).as_nanos() as u64) < seen
}

/// Builds the pool and proves the database answers, so a bad URL or a down
/// server is reported at start instead of at the first write.
pub async fn connect(cfg: &StoreConfig) -> Result<Pool> {
    let pool = connect_lazy(cfg)?;
    drop(pool.get().await?);
    Ok(pool)
}

/// Builds the pool without touching the server: for agents, which must keep
/// collecting (and spooling) while the database is down. The readers'
/// pool of `database.read_url` is lazy too: a standby that is down must
/// not stop a writer from starting.
pub fn connect_lazy(cfg: &StoreConfig) -> Result<Pool> {
    let mut pool = one_pool(cfg)?;
    if let Some(url) = cfg.read_url.as_deref().filter(|u| !u.trim().is_empty()) {
        let readers = StoreConfig {
            url: url.to_string(),
            read_url: None,
            ..cfg.clone()
        };
        let mut readers = one_pool(&readers)?;
        readers.is_readers = true;
        pool.readers = Some(Arc::new(readers));
    }
    Ok(pool)
}

fn one_pool(cfg: &StoreConfig) -> Result<Pool> {
    let (pg, tls) = pg_config(cfg)?;
    let fallback = if session_attrs(&cfg.url).1 {
        let mut any = pg.clone();
        any.target_session_attrs(TargetSessionAttrs::Any);
        Some(build(cfg, any, tls.clone())?)
    } else {
        None
    };
    let inner = build(cfg, pg.clone(), tls)?;
    Ok(Pool {
        inner,
        pg,
        fallback,
        readers: None,
        is_readers: false,
    })
}

fn build(cfg: &StoreConfig, pg: Config, tls: MakeRustls) -> Result<deadpool_postgres::Pool> {
    let target = redact(&pg);
    let mgr = Manager::from_config(
        pg.clone(),
        tls,
        ManagerConfig {
            recycling_method: recycling(&pg),
        },
    );
    deadpool_postgres::Pool::builder(mgr)
        .max_size(cfg.pool_size)
        .wait_timeout(Some(Duration::from_secs(cfg.connect_timeout_secs * 6)))
        .create_timeout(Some(Duration::from_secs(cfg.connect_timeout_secs)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .pre_recycle(Hook::sync_fn(|_, m: &Metrics| {
            if suspect(m.recycled.unwrap_or(m.created)) {
                return Err(HookError::message(
                    "the server refused a write as read-only since this connection was taken",
                ));
            }
            Ok(())
        }))
        .build()
        .map_err(|e| StoreError::Pool(format!("{target}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_urls_that_ask_for_a_role_pay_for_the_role_check() {
        let rw: Config = "postgres://u@a,b/db?target_session_attrs=read-write"
            .parse()
            .unwrap();
        assert!(
            matches!(recycling(&rw), RecyclingMethod::Custom(q) if q.contains("read-only now"))
        );
        let ro: Config = "postgres://u@a,b/db?target_session_attrs=read-only"
            .parse()
            .unwrap();
        assert!(matches!(recycling(&ro), RecyclingMethod::Custom(q) if q.contains("writable now")));
        let any: Config = "postgres://u@a/db".parse().unwrap();
        assert!(matches!(recycling(&any), RecyclingMethod::Fast));
    }

    #[test]
    fn a_read_only_refusal_makes_earlier_connections_suspect() {
        let before = Instant::now();
        note_read_only();
        assert!(suspect(before), "taken before the refusal");
        std::thread::sleep(Duration::from_millis(2));
        assert!(!suspect(Instant::now()), "taken after it");
    }

    #[test]
    fn libpq_session_attrs_map_onto_what_tokio_postgres_knows() {
        let (url, prefer) =
            session_attrs("postgres://u@a:1,b:2/db?target_session_attrs=prefer-standby");
        assert_eq!(
            url,
            "postgres://u@a:1,b:2/db?target_session_attrs=read-only"
        );
        assert!(prefer);
        let (url, prefer) = session_attrs("host=a,b dbname=db target_session_attrs=standby");
        assert_eq!(url, "host=a,b dbname=db target_session_attrs=read-only");
        assert!(!prefer);
        let (url, _) = session_attrs("postgres://u@a/db?target_session_attrs=primary");
        assert!(url.parse::<Config>().is_ok(), "{url}");
        assert_eq!(
            url.parse::<Config>().unwrap().get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
    }

    #[test]
    fn redact_never_shows_the_password() {
        let pg: Config = "postgres://u:hunter2@db.example:6543/telemetry"
            .parse()
            .unwrap();
        assert_eq!(redact(&pg), "db.example:6543/telemetry");
    }
}
