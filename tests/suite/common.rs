//! Shared by the tests that run the `gpuwatch` binary.

use std::path::PathBuf;
use std::process::Command;

/// The binary with `args` and a clean environment: the caller's
/// DATABASE_URL, GPUWATCH_* and RUST_LOG are removed, so only what the
/// test passes counts.
#[allow(dead_code)] // not every test file that shares this module runs the binary
pub fn gpuwatch_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpuwatch"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k == "DATABASE_URL" || k.starts_with("GPUWATCH_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// `gpuwatch serve`'s router on 127.0.0.1:0 over `db`, migrated first:
/// the base URL and a pool on the same database.
#[allow(dead_code)] // not every test file that shares this module serves
pub async fn serve_in_process(
    db: &gpuwatch_store::testing::TestDb,
    cfg: gpuwatch_api::ApiConfig,
) -> (String, gpuwatch_store::Pool) {
    let store = db.store_config();
    gpuwatch_store::migrate(&store).await.expect("migrate");
    let pool = gpuwatch_store::connect(&store).await.expect("pool");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = gpuwatch_api::router(gpuwatch_api::AppState::new(
        pool.clone(),
        gpuwatch_store::WriterConfig::default(),
        cfg,
        gpuwatch_exporter::Exporter::new(Default::default()),
    ));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, pool)
}

/// A client of an in-process `gpuwatch serve` ([`serve_in_process`]).
#[allow(dead_code)]
pub struct ApiClient {
    pub url: String,
    pub pool: gpuwatch_store::Pool,
    pub http: reqwest::Client,
}

#[allow(dead_code)]
impl ApiClient {
    pub async fn start(
        db: &gpuwatch_store::testing::TestDb,
        cfg: gpuwatch_api::ApiConfig,
    ) -> ApiClient {
        let (url, pool) = serve_in_process(db, cfg).await;
        ApiClient {
            url,
            pool,
            http: reqwest::Client::new(),
        }
    }

    /// A new token of `role` (named after it).
    pub async fn token(&self, role: &str) -> String {
        gpuwatch_api::auth::create(&self.pool, role, role, None)
            .await
            .expect("token")
            .1
    }

    /// Status and body text.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, String) {
        self.request(method, path, Some(token), body).await
    }

    /// Status and body as JSON (Null if it is not JSON).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let (st, text) = self.request(method, path, Some(token), body).await;
        (st, serde_json::from_str(&text).unwrap_or_default())
    }

    /// GET, with or without a token; the body as JSON.
    pub async fn get(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let (st, text) = self.request(reqwest::Method::GET, path, token, None).await;
        (st, serde_json::from_str(&text).unwrap_or_default())
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, String) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        (resp.status(), resp.text().await.unwrap_or_default())
    }
}

/// A free TCP port on 127.0.0.1 (bound, read and released: the caller binds
/// it next, so a rare race with another process is possible, never a clash
/// inside the suite, which takes ports only from here).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Kills the child when the test ends, however it ends.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Prometheus (Debian's `prometheus`) on a free port, scraping each
/// `(job, host:port)` every second. Its data lives in a temp dir.
pub struct Prometheus {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(targets: &[(&str, String)]) -> Prometheus {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir for Prometheus");
        let mut yaml = String::from("global:\n  scrape_interval: 1s\nscrape_configs:\n");
        for (job, target) in targets {
            yaml.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, yaml).expect("write prometheus.yml");
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus, installed by scripts/test.sh)");
        Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            _child: ChildGuard(child),
            _dir: dir,
        }
    }
}

/// Runs `cmd`, failing the test with its stderr if it fails.
pub fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL server of a test's own (the machine's PostgreSQL
/// binaries), for tests that stop it or configure it (TLS).
pub struct OwnPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPostgres {
    /// initdb'd and started.
    pub fn start_new() -> OwnPostgres {
        let pg = OwnPostgres::init();
        pg.start();
        pg
    }

    /// initdb'd, not started: [`OwnPostgres::install`] and
    /// [`OwnPostgres::configure`] come before [`OwnPostgres::start`].
    pub fn init() -> OwnPostgres {
        let bin = pg_bin();
        let dir = tempfile::tempdir().unwrap();
        sh(Command::new("chown").args(["postgres:postgres", dir.path().to_str().unwrap()]));
        let data = dir.path().join("data");
        sh(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data));
        OwnPostgres {
            bin,
            dir,
            port: free_port(),
        }
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes `name` into the data directory, readable by the server only
    /// (PostgreSQL refuses a key file others can read).
    pub fn install(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.data().join(name);
        std::fs::write(&path, contents).unwrap();
        sh(Command::new("chown").arg("postgres:postgres").arg(&path));
        sh(Command::new("chmod").arg("600").arg(&path));
        path
    }

    /// Appends settings to postgresql.conf (read at the next start).
    pub fn configure(&self, lines: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .unwrap();
        writeln!(f, "{lines}").unwrap();
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn ctl(&self, args: &[&str]) {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.dir.path().display()
        );
        sh(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "60"])
            .args(args));
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts it (waits until it accepts connections).
    pub fn start(&self) {
        self.ctl(&["start"]);
    }

    /// Stops it (fast: open sessions are cut).
    pub fn stop(&self) {
        self.ctl(&["stop", "-m", "fast"]);
    }

    /// URL of its `postgres` database, plain.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stop()));
    }
}

/// The newest PostgreSQL server binaries under /usr/lib/postgresql.
#[allow(dead_code)]
pub fn pg_bin() -> std::path::PathBuf {
    let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql (scripts/test.sh installs them)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no initdb under /usr/lib/postgresql/*/bin")
}

/// `sql` through psql (statements one by one, as a script), its output
/// unaligned and trimmed; "" when the server cannot be reached.
#[allow(dead_code)]
pub fn psql(url: &str, sql: &str) -> String {
    use std::io::Write;
    let child = std::process::Command::new("psql")
        .args(["-X", "-qAt", "-v", "ON_ERROR_STOP=1", url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return String::new();
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(sql.as_bytes());
    }
    match child.wait_with_output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Err(_) => String::new(),
    }
}

/// Polls `ok` every 250 ms until it holds, failing after `limit`.
#[allow(dead_code)]
pub fn wait_for(what: &str, limit: std::time::Duration, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// `gpuwatch args` with `env`, to completion; its stdout.
#[allow(dead_code)]
pub fn gpuwatch_run(args: &[&str], env: &[(&str, String)]) -> String {
    let out = gpuwatch_command(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gpuwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running gpuwatch process, killed on drop, its stderr kept line by line.
#[allow(dead_code)]
pub struct Proc {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[allow(dead_code)]
impl Proc {
    pub fn spawn(args: &[&str], env: &[(&str, String)]) -> Proc {
        use std::io::BufRead;
        let mut cmd = gpuwatch_command(args);
        cmd.stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let mut child = cmd.spawn().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (sink, stderr) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        Proc { child, log }
    }

    /// The stderr lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, then the exit must be clean; the whole stderr.
    pub fn terminate(mut self) -> Vec<String> {
        sh(std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
        let status = self.child.wait().unwrap();
        let log = self.log();
        assert!(status.success(), "exit {status}: {}", log.join("\n"));
        log
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A `gpuwatch serve` process on a free port over `database_url`, waited
/// for until `/health` answers; `extra` adds settings (`GPUWATCH_…`).
#[allow(dead_code)]
pub struct ServeProc {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// Its port.
    pub port: u16,
    /// The process; dropping it kills serve.
    pub proc: Proc,
}

#[allow(dead_code)]
impl ServeProc {
    pub fn start(database_url: &str, extra: &[(&str, String)]) -> ServeProc {
        ServeProc::start_on(free_port(), database_url, extra)
    }

    /// On a given port (a restart keeps the agents' URL).
    pub fn start_on(port: u16, database_url: &str, extra: &[(&str, String)]) -> ServeProc {
        let mut env = vec![
            ("DATABASE_URL", database_url.to_string()),
            ("GPUWATCH_API__LISTEN", format!("127.0.0.1:{port}")),
        ];
        env.extend(extra.iter().cloned());
        let proc = Proc::spawn(&["serve"], &env);
        let url = format!("http://127.0.0.1:{port}");
        let health = format!("{url}/health");
        wait_for(
            "serve to answer /health",
            std::time::Duration::from_secs(60),
            || {
                Command::new("curl")
                    .args(["-sf", "-o", "/dev/null", &health])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            },
        );
        ServeProc { url, port, proc }
    }
}

/// The token `gpuwatch token create ARGS` printed.
#[allow(dead_code)]
pub fn create_token(database_url: &str, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    gpuwatch_run(&all, &[("DATABASE_URL", database_url.to_string())])
        .lines()
        .find_map(|l| l.strip_prefix("token ").map(str::to_string))
        .expect("token create prints the token")
}
