//! TLS on every hop, against the real things: a PostgreSQL of the test's
//! own with `ssl=on`, `gpuwatch serve` over HTTPS (and mTLS), and agents
//! (`gpuwatch collector --once`) pushing to it. The test makes its own CA and
//! certificates with rcgen; nothing is mocked.

use crate::common::{self, free_port, ChildGuard, OwnPostgres};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gpuwatch_store::testing::{Kind, TestDb};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};

/// A CA of the test's own.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate and its key, as PEM, and the certificate's DER.
struct Leaf {
    cert: String,
    key: String,
    der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses), with `serial`.
    fn leaf(&self, names: &[&str], serial: u64, purpose: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

fn gpuwatch(args: &[&str], env: &[(&str, String)]) -> Output {
    common::gpuwatch_command(args)
        .env("GPUWATCH_LOG__LEVEL", "error")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap()
}

fn ok(args: &[&str], env: &[(&str, String)]) -> String {
    let out = gpuwatch(args, env);
    assert!(
        out.status.success(),
        "gpuwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn one_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got:\n{err}");
    lines[0].to_string()
}

fn token(env: &[(&str, String)], role: &str, host: Option<&str>) -> String {
    let mut args = vec!["token", "create", "--role", role, "--name", role];
    if let Some(h) = host {
        args.extend(["--host", h]);
    }
    ok(&args, env)
        .lines()
        .find_map(|l| l.strip_prefix("token ").map(str::to_string))
        .expect("token create prints the token")
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-qAt", url, "-c", sql])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn curl(args: &[&str]) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf"])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `gpuwatch serve` on a free port with `env`; its base URL once `/health`
/// answers over HTTPS with `ca`.
fn serve(env: &[(&str, String)], ca: &str, client: &[&str]) -> (ChildGuard, String) {
    let port = free_port();
    let child = common::gpuwatch_command(&["serve"])
        .env("GPUWATCH_API__LISTEN", format!("127.0.0.1:{port}"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = ChildGuard(child);
    let base = format!("https://127.0.0.1:{port}");
    let health = format!("{base}/health");
    let mut args = vec!["--cacert", ca];
    args.extend_from_slice(client);
    args.push(&health);
    wait_for(
        "serve to answer /health over HTTPS",
        Duration::from_secs(30),
        || curl(&args).is_some(),
    );
    (guard, base)
}

fn spooled(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json.gz"))
                .count()
        })
        .unwrap_or(0)
}

fn rejected(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("rejected")).map_or(0, |d| d.count())
}

/// One `collector --once` of one simulated host pushing to `base`.
fn agent(base: &str, token: &str, spool: &Path, extra: &[(&str, String)]) -> Output {
    let mut env = vec![
        ("GPUWATCH_COLLECTOR__SOURCE", "sim".to_string()),
        ("GPUWATCH_COLLECTOR__SIM__HOSTS", "1".into()),
        ("GPUWATCH_COLLECTOR__SIM__GPUS_PER_HOST", "2".into()),
        ("GPUWATCH_COLLECTOR__SINK", "http".into()),
        ("GPUWATCH_COLLECTOR__HTTP__URL", base.to_string()),
        ("GPUWATCH_COLLECTOR__HTTP__TOKEN", token.to_string()),
        ("GPUWATCH_COLLECTOR__HTTP__TIMEOUT_SECS", "5".into()),
        (
            "GPUWATCH_COLLECTOR__SPOOL__DIR",
            spool.display().to_string(),
        ),
    ];
    env.extend(extra.iter().cloned());
    gpuwatch(&["collector", "--once"], &env)
}

const HOST: &str = "sim-host-000";

#[test]
fn database_tls_follows_libpqs_sslmodes() {
    let ca = Ca::new("gpuwatch test database CA");
    let server = ca.leaf(&["db.test"], 1, ExtendedKeyUsagePurpose::ServerAuth);
    let pg = OwnPostgres::init();
    pg.install("server.crt", server.cert.as_bytes());
    pg.install("server.key", server.key.as_bytes());
    let clients = Ca::new("gpuwatch test database clients CA");
    pg.install("clients.crt", clients.pem().as_bytes());
    pg.configure(
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'clients.crt'\nlog_connections = on",
    );
    // Database certdb takes a client certificate (CN = the user) instead of
    // trust; the first matching pg_hba line wins.
    let hba = pg.data().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!(
            "hostssl certdb all 127.0.0.1/32 cert\nhost certdb all 127.0.0.1/32 reject\n{rules}"
        ),
    )
    .unwrap();
    pg.start();
    let files = tempfile::tempdir().unwrap();
    let ca_file = write(files.path(), "ca.pem", &ca.pem());
    let other_ca = write(files.path(), "other.pem", &Ca::new("someone else").pem());
    let port = pg.port();
    let url = |host: &str, query: &str| {
        let query = query.trim_start_matches('&');
        format!("postgres://postgres@{host}:{port}/postgres?{query}")
    };

    // The certificate names db.test; the URL says 127.0.0.1.
    let out = gpuwatch(
        &["migrate"],
        &[(
            "DATABASE_URL",
            url(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={ca_file}"),
            ),
        )],
    );
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert_eq!(
        one_line(&out),
        "gpuwatch: database TLS: certificate for db.test does not name host 127.0.0.1: check the URL's host or use sslmode=verify-ca"
    );
    // A chain that does not lead to the given CA.
    let out = gpuwatch(
        &["migrate"],
        &[(
            "DATABASE_URL",
            url(
                "127.0.0.1",
                &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
            ),
        )],
    );
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(
        one_line(&out).contains("is not signed by a CA in sslrootcert"),
        "{out:?}"
    );

    // The right CA and name (hostaddr: db.test is not in DNS): every role works.
    let full = url(
        "db.test",
        &format!("hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca_file}&application_name=gw-verify-full"),
    );
    let env = [("DATABASE_URL", full.clone())];
    ok(&["migrate"], &env);
    let admin = token(&env, "admin", None);
    let spool = tempfile::tempdir().unwrap();
    let mut direct = env.to_vec();
    direct.extend([
        ("GPUWATCH_COLLECTOR__SOURCE", "sim".to_string()),
        ("GPUWATCH_COLLECTOR__SIM__HOSTS", "2".into()),
        (
            "GPUWATCH_COLLECTOR__SPOOL__DIR",
            spool.path().display().to_string(),
        ),
    ]);
    ok(&["collector", "--once"], &direct);
    ok(&["aggregator", "--once"], &env);
    ok(&["alerter", "--once"], &env);
    ok(&["billing", "--once"], &env);
    let api_port = free_port();
    let child = common::gpuwatch_command(&["serve"])
        .env("DATABASE_URL", &full)
        .env("GPUWATCH_API__LISTEN", format!("127.0.0.1:{api_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _serve = ChildGuard(child);
    let hosts_url = format!("http://127.0.0.1:{api_port}/api/v1/hosts");
    let auth = format!("Authorization: Bearer {admin}");
    let mut hosts = None;
    wait_for("serve to list the hosts", Duration::from_secs(30), || {
        hosts = curl(&["-H", &auth, &hosts_url]);
        hosts.is_some()
    });
    let hosts: serde_json::Value = serde_json::from_str(&hosts.unwrap()).unwrap();
    assert!(hosts.to_string().contains("sim-host-001"), "{hosts}");

    // verify-ca skips the name; require and prefer encrypt without a CA;
    // disable stays plain against ssl=on.
    for (mode, query) in [
        (
            "verify-ca",
            format!("sslmode=verify-ca&sslrootcert={ca_file}"),
        ),
        ("require", "sslmode=require".to_string()),
        ("prefer", String::new()),
        ("disable", "sslmode=disable".to_string()),
    ] {
        let u = url("127.0.0.1", &format!("{query}&application_name=gw-{mode}"));
        ok(&["migrate"], &[("DATABASE_URL", u)]);
    }
    let log = pg.log();
    let authorized = |app: &str| -> Vec<String> {
        let name = format!("application_name={app}");
        log.lines()
            .filter(|l| l.contains("connection authorized"))
            .filter(|l| l.split_whitespace().any(|w| w == name))
            .map(str::to_string)
            .collect()
    };
    for mode in ["verify-full", "verify-ca", "require", "prefer"] {
        let lines = authorized(&format!("gw-{mode}"));
        assert!(
            !lines.is_empty(),
            "no connection with sslmode {mode} in the log:\n{log}"
        );
        assert!(
            lines.iter().all(|l| l.contains("SSL enabled")),
            "sslmode {mode} connected without TLS: {lines:?}"
        );
    }
    // A client certificate (sslcert, sslkey) where the server asks for one.
    psql(&pg.url(), "CREATE DATABASE certdb");
    let me = clients.leaf(&["postgres"], 3, ExtendedKeyUsagePurpose::ClientAuth);
    let (cert, key) = (
        write(files.path(), "me.pem", &me.cert),
        write(files.path(), "me.key", &me.key),
    );
    let certdb = |query: &str| {
        format!("postgres://postgres@db.test:{port}/certdb?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca_file}{query}")
    };
    let out = gpuwatch(&["migrate"], &[("DATABASE_URL", certdb(""))]);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(
        one_line(&out).contains("requires a valid client certificate"),
        "{out:?}"
    );
    ok(
        &["migrate"],
        &[(
            "DATABASE_URL",
            certdb(&format!("&sslcert={cert}&sslkey={key}")),
        )],
    );

    let plain = authorized("gw-disable");
    assert!(
        !plain.is_empty(),
        "no sslmode=disable connection in the log:\n{log}"
    );
    assert!(
        plain.iter().all(|l| !l.contains("SSL enabled")),
        "sslmode=disable used TLS: {plain:?}"
    );
}

/// serve over HTTPS with a certificate from `ca`; `client_ca` turns on mTLS.
struct Https {
    dir: tempfile::TempDir,
    ca: String,
    env: Vec<(&'static str, String)>,
}

impl Https {
    fn new(db: &TestDb, ca: &Ca, client_ca: Option<&Ca>) -> Https {
        let dir = tempfile::tempdir().unwrap();
        let leaf = ca.leaf(
            &["127.0.0.1", "localhost"],
            1,
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let mut env = vec![
            ("DATABASE_URL", db.url.clone()),
            (
                "GPUWATCH_API__TLS__CERT",
                write(dir.path(), "serve.pem", &leaf.cert),
            ),
            (
                "GPUWATCH_API__TLS__KEY",
                write(dir.path(), "serve.key", &leaf.key),
            ),
        ];
        if let Some(c) = client_ca {
            env.push((
                "GPUWATCH_API__TLS__CLIENT_CA",
                write(dir.path(), "agents-ca.pem", &c.pem()),
            ));
        }
        let ca = write(dir.path(), "ca.pem", &ca.pem());
        ok(&["migrate"], &env[..1]);
        Https { dir, ca, env }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca_env(&self) -> (&'static str, String) {
        ("GPUWATCH_COLLECTOR__HTTP__CA", self.ca.clone())
    }
}

fn stored(db: &TestDb) -> i64 {
    psql(
        &db.url,
        &format!("SELECT count(*) FROM host_metrics WHERE host_id = '{HOST}'"),
    )
    .parse()
    .unwrap_or(-1)
}

#[tokio::test]
async fn agents_push_over_https_and_refuse_an_untrusted_server() {
    let db = TestDb::new(Kind::Postgres).await;
    let ca = Ca::new("gpuwatch test serve CA");
    let https = Https::new(&db, &ca, None);
    let agent_token = token(&https.env[..1], "agent", Some(HOST));
    let (_serve, base) = serve(&https.env, &https.ca, &[]);

    let spool = tempfile::tempdir().unwrap();
    let out = agent(&base, &agent_token, spool.path(), &[https.ca_env()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stored(&db), 1);
    assert_eq!(spooled(spool.path()), 0);

    // Without the CA the system roots do not know this server: a TLS error
    // that says what to set, and the batch waits in the spool.
    let spool = tempfile::tempdir().unwrap();
    let out = agent(&base, &agent_token, spool.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("invalid peer certificate") && err.contains("set collector.http.ca"),
        "{err}"
    );
    assert_eq!(spooled(spool.path()), 1, "{err}");
    assert_eq!(
        rejected(spool.path()),
        0,
        "a TLS failure is not a rejection"
    );
    assert_eq!(stored(&db), 1);
}

#[tokio::test]
async fn serve_can_require_client_certificates() {
    let db = TestDb::new(Kind::Postgres).await;
    let ca = Ca::new("gpuwatch test serve CA");
    let agents = Ca::new("gpuwatch test agents CA");
    let https = Https::new(&db, &ca, Some(&agents));
    let agent_token = token(&https.env[..1], "agent", Some(HOST));
    let mine = agents.leaf(&[HOST], 7, ExtendedKeyUsagePurpose::ClientAuth);
    let cert = write(https.dir.path(), "agent.pem", &mine.cert);
    let key = write(https.dir.path(), "agent.key", &mine.key);
    let (_serve, base) = serve(&https.env, &https.ca, &["--cert", &cert, "--key", &key]);

    // No client certificate: no connection.
    let spool = tempfile::tempdir().unwrap();
    let out = agent(&base, &agent_token, spool.path(), &[https.ca_env()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("collector.http.client_cert"), "{err}");
    assert_eq!(spooled(spool.path()), 1, "{err}");

    // A certificate from another CA: refused too.
    let stranger =
        Ca::new("not the agents CA").leaf(&[HOST], 8, ExtendedKeyUsagePurpose::ClientAuth);
    let spool = tempfile::tempdir().unwrap();
    let out = agent(
        &base,
        &agent_token,
        spool.path(),
        &[
            https.ca_env(),
            (
                "GPUWATCH_COLLECTOR__HTTP__CLIENT_CERT",
                write(https.dir.path(), "stranger.pem", &stranger.cert),
            ),
            (
                "GPUWATCH_COLLECTOR__HTTP__CLIENT_KEY",
                write(https.dir.path(), "stranger.key", &stranger.key),
            ),
        ],
    );
    assert!(!out.status.success());
    assert_eq!(
        spooled(spool.path()),
        1,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stored(&db), 0);

    // Signed by the agents' CA: stored.
    let spool = tempfile::tempdir().unwrap();
    let out = agent(
        &base,
        &agent_token,
        spool.path(),
        &[
            https.ca_env(),
            ("GPUWATCH_COLLECTOR__HTTP__CLIENT_CERT", cert.clone()),
            ("GPUWATCH_COLLECTOR__HTTP__CLIENT_KEY", key.clone()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stored(&db), 1);
}

/// The leaf certificate serve presents to a new connection (DER), checked
/// against `ca`.
fn presented(base: &str, ca: &Ca) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).ok()?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").ok()?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let mut tcp = std::net::TcpStream::connect(base.trim_start_matches("https://")).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    rustls::Stream::new(&mut conn, &mut tcp).flush().ok()?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).ok()?;
    }
    Some(conn.peer_certificates()?.first()?.as_ref().to_vec())
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let db = TestDb::new(Kind::Postgres).await;
    let ca = Ca::new("gpuwatch test serve CA");
    let https = Https::new(&db, &ca, None);
    let (mut serve, base) = serve(&https.env, &https.ca, &[]);
    let first = presented(&base, &ca).expect("a TLS session with serve");

    let renewed = ca.leaf(
        &["127.0.0.1", "localhost"],
        2,
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    assert_ne!(first, renewed.der);
    // Written in place, one file after the other, as a certificate manager
    // might: a half-renewed pair must not be served.
    std::fs::write(https.path("serve.pem"), &renewed.cert).unwrap();
    std::fs::write(https.path("serve.key"), &renewed.key).unwrap();
    wait_for("the renewed certificate", Duration::from_secs(20), || {
        presented(&base, &ca).as_ref() == Some(&renewed.der)
    });
    assert!(
        serve.0.try_wait().unwrap().is_none(),
        "serve restarted or died"
    );
    assert!(curl(&["--cacert", &https.ca, &format!("{base}/health")]).is_some());
}

#[test]
fn unreadable_tls_files_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = write(dir.path(), "junk.pem", "not PEM\n");
    let out = gpuwatch(
        &["serve"],
        &[
            ("GPUWATCH_API__TLS__CERT", "/nonexistent/serve.pem".into()),
            ("GPUWATCH_API__TLS__KEY", junk.clone()),
        ],
    );
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("api.tls.cert: /nonexistent/serve.pem"),
        "{err}"
    );
    assert!(
        err.contains(&format!("api.tls.key: {junk}: no PEM private key")),
        "{err}"
    );

    let out = gpuwatch(
        &["collector", "--once"],
        &[
            ("GPUWATCH_COLLECTOR__SINK", "http".into()),
            (
                "GPUWATCH_COLLECTOR__HTTP__URL",
                "https://127.0.0.1:1".into(),
            ),
            ("GPUWATCH_COLLECTOR__HTTP__TOKEN", "gwt_x".into()),
            ("GPUWATCH_COLLECTOR__HTTP__CA", junk.clone()),
            (
                "GPUWATCH_COLLECTOR__HTTP__CLIENT_CERT",
                "/nonexistent/agent.pem".into(),
            ),
        ],
    );
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("collector.http.ca: {junk}: no PEM certificate")),
        "{err}"
    );
    assert!(
        err.contains("collector.http.client_cert, collector.http.client_key: give both or neither"),
        "{err}"
    );

    let out = gpuwatch(
        &["migrate"],
        &[(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"
                .into(),
        )],
    );
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        one_line(&out).contains("database.url: sslrootcert=/nonexistent/ca.pem:"),
        "{out:?}"
    );
}
