//! A real PostgreSQL HA cluster for the failover tests: pg_auto_failover
//! (Debian's `postgresql-15-auto-failover`, installed by scripts/test.sh)
//! with a monitor and three nodes on free ports in a temp dir, run as the
//! `postgres` user. The monitor's health checks and timeouts are turned down
//! so a dead primary is replaced in seconds. Each node's `pg_autoctl` (its
//! keeper and its postmaster) runs in a process group of its own, so killing
//! a node kills it whole: a keeper left alive would restart the postmaster.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, pg_bin, psql, sh, wait_for};

/// The monitor's GUCs: check every second, give up on a node after 2 s,
/// and wait 2 s for a dead primary to demote before promoting a standby
/// (the defaults add up to about 30 s).
const MONITOR_TUNING: &str = "
    ALTER SYSTEM SET pgautofailover.health_check_period = 1000;
    ALTER SYSTEM SET pgautofailover.health_check_timeout = 1000;
    ALTER SYSTEM SET pgautofailover.health_check_max_retries = 1;
    ALTER SYSTEM SET pgautofailover.health_check_retry_delay = 500;
    ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = 2000;
    ALTER SYSTEM SET pgautofailover.primary_demote_timeout = 2000;
    ALTER SYSTEM SET pgautofailover.startup_grace_period = 2000;
    SELECT pg_reload_conf();";

/// One `pg_autoctl` process tree: its group id is the child's pid.
struct Keeper(Child);

impl Keeper {
    fn kill(&mut self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.0.id())])
            .status();
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.kill("-TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill("-KILL");
        let _ = self.0.wait();
    }
}

/// A database node of the cluster.
pub struct Node {
    /// `n1`, `n2`, `n3`.
    pub name: String,
    /// Its PostgreSQL port on 127.0.0.1.
    pub port: u16,
    keeper: Option<Keeper>,
}

impl Node {
    /// A URL of this node alone.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

/// The monitor and three nodes.
pub struct HaCluster {
    dir: tempfile::TempDir,
    monitor_port: u16,
    pub nodes: Vec<Node>,
    _monitor: Keeper,
}

/// The database the cluster serves.
pub const DB: &str = "gpuwatch";

impl HaCluster {
    /// Creates the monitor and three nodes; returns once one is primary and
    /// two are streaming secondaries.
    pub fn start() -> HaCluster {
        let dir = tempfile::tempdir().expect("temp dir for the cluster");
        sh(Command::new("chown").args(["postgres:postgres", dir.path().to_str().unwrap()]));
        let monitor_port = free_port();
        let mon_data = dir.path().join("monitor");
        let mut create = autoctl(dir.path().into());
        create
            .args(["create", "monitor", "--pgdata"])
            .arg(&mon_data);
        create.args(["--pgport", &monitor_port.to_string()]);
        create.args(["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"]);
        sh(&mut create);
        let mut run = autoctl(dir.path().into());
        run.args(["run", "--pgdata"]).arg(&mon_data);
        let monitor = spawn(run, dir.path().join("monitor.log"));
        let mut cluster = HaCluster {
            monitor_port,
            nodes: Vec::new(),
            _monitor: monitor,
            dir,
        };
        wait_for("the monitor", Duration::from_secs(30), || {
            !psql(&cluster.monitor_url(), "SELECT 1").is_empty()
        });
        let tuned = psql(&cluster.monitor_admin_url(), MONITOR_TUNING);
        assert_eq!(tuned, "t", "tuning the monitor");
        for i in 1..=3 {
            let node = Node {
                name: format!("n{i}"),
                port: free_port(),
                keeper: None,
            };
            cluster.nodes.push(node);
            cluster.create_node(i - 1);
            if i == 1 {
                cluster.wait_states("the first node to be primary", &["single"]);
            }
        }
        cluster.wait_states(
            "one primary and two secondaries",
            &["primary", "secondary", "secondary"],
        );
        cluster
    }

    fn monitor_url(&self) -> String {
        format!(
            "postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover",
            self.monitor_port
        )
    }

    /// The monitor as its superuser: ALTER SYSTEM needs one.
    fn monitor_admin_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/pg_auto_failover",
            self.monitor_port
        )
    }

    fn create_node(&mut self, i: usize) {
        let (name, port) = (self.nodes[i].name.clone(), self.nodes[i].port);
        let mut cmd = autoctl(self.dir.path().into());
        cmd.args(["create", "postgres", "--pgdata"])
            .arg(self.dir.path().join(&name));
        cmd.args(["--pgport", &port.to_string(), "--name", &name]);
        cmd.args(["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"]);
        cmd.args(["--dbname", DB, "--monitor", &self.monitor_url(), "--run"]);
        let log = self.dir.path().join(format!("{name}.log"));
        self.nodes[i].keeper = Some(spawn(cmd, log));
    }

    /// `pg_autoctl run` of a node created before (after [`HaCluster::kill`]):
    /// the old primary rejoins as a standby (pg_rewind, else a base backup).
    pub fn restart(&mut self, i: usize) {
        let name = self.nodes[i].name.clone();
        let mut cmd = autoctl(self.dir.path().into());
        cmd.args(["run", "--pgdata"])
            .arg(self.dir.path().join(&name));
        let log = self.dir.path().join(format!("{name}.rejoin.log"));
        self.nodes[i].keeper = Some(spawn(cmd, log));
    }

    /// SIGKILL of node `i` whole: its postmaster and its keeper.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut k) = self.nodes[i].keeper.take() {
            k.kill("-KILL");
            let _ = k.0.wait();
        }
    }

    /// (name, reported state, assigned state) of each node, by node id.
    pub fn states(&self) -> Vec<(String, String, String)> {
        psql(
            &self.monitor_url(),
            "SELECT nodename, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeid",
        )
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|').map(str::to_string);
            Some((f.next()?, f.next()?, f.next()?))
        })
        .collect()
    }

    /// Waits until the reported states, sorted, are `want` (sorted), each
    /// also assigned. A spread checkpoint would hold a standby's base
    /// backup for minutes, so the primary is told to checkpoint meanwhile.
    pub fn wait_states(&self, what: &str, want: &[&str]) {
        let mut want: Vec<&str> = want.to_vec();
        want.sort();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let states = self.states();
            let mut got: Vec<&str> = states
                .iter()
                .filter(|(_, r, g)| r == g)
                .map(|(_, r, _)| r.as_str())
                .collect();
            got.sort();
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {states:?}\n{}",
                self.logs()
            );
            if let Some(p) = self.primary() {
                psql(&self.nodes[p].url("postgres"), "CHECKPOINT");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The index of the node that accepts writes now, asked of the nodes.
    pub fn primary(&self) -> Option<usize> {
        self.nodes.iter().position(|n| {
            n.keeper.is_some() && psql(&n.url("postgres"), "SELECT pg_is_in_recovery()") == "f"
        })
    }

    /// Every node, read-write first: what `database.url` lists.
    pub fn url(&self, attrs: &str) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!(
            "postgres://postgres@{}/{DB}?target_session_attrs={attrs}&connect_timeout=2",
            hosts.join(",")
        )
    }

    /// The tail of every log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out.push_str(&format!("--- {}\n", p.display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        // Nodes before the monitor, so no node fails over on the way down.
        for n in &mut self.nodes {
            n.keeper.take();
        }
    }
}

/// The server binaries pg_auto_failover's extension is built for (the
/// package is per major version; the newest server may lack it).
fn autofailover_bin() -> PathBuf {
    let newest = pg_bin();
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("lib/pgautofailover.so").exists() && p.join("bin/initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|v| v.join("bin")).unwrap_or_else(|| {
        panic!(
            "no pgautofailover.so beside the servers in /usr/lib/postgresql (newest: {}); install postgresql-<major>-auto-failover (scripts/test.sh does)",
            newest.display()
        )
    })
}

/// `pg_autoctl` as `postgres`, its configuration and state under `dir`.
fn autoctl(dir: PathBuf) -> Command {
    let bin = autofailover_bin();
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", "env"]);
    cmd.arg(format!("PATH={}:/usr/bin:/bin", bin.display()));
    cmd.arg(format!("PG_CONFIG={}", bin.join("pg_config").display()));
    cmd.arg(format!("XDG_CONFIG_HOME={}", dir.join("config").display()));
    cmd.arg(format!("XDG_DATA_HOME={}", dir.join("data").display()));
    cmd.arg("pg_autoctl");
    cmd
}

/// Starts `cmd` in a process group of its own, its output in `log`.
fn spawn(mut cmd: Command, log: PathBuf) -> Keeper {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(&log).expect("cluster log file");
    let err = out.try_clone().expect("cluster log file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    cmd.process_group(0);
    Keeper(cmd.spawn().expect(
        "pg_autoctl (Debian package postgresql-15-auto-failover, installed by scripts/test.sh)",
    ))
}
