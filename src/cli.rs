//! The command line: one subcommand per role, and the finance and token
//! commands. `main.rs` dispatches on [`Command`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// gpuwatch: telemetry, alerting and metering for a GPU cloud.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Config file (TOML); see gpuwatch.example.toml. Environment overrides:
    /// DATABASE_URL, GPUWATCH_SECTION__KEY (e.g. GPUWATCH_COLLECTOR__INTERVAL=30s).
    #[arg(long, short, global = true, env = "GPUWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// `env` with the settings given as flags added as their
    /// `GPUWATCH_SECTION__KEY` overrides, replacing those variables, so a
    /// flag wins and is checked (and reported) like any setting.
    pub fn with_flags(
        &self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Vec<(String, String)> {
        let flags: Vec<(String, String)> = match &self.command {
            Command::Collector {
                web_listen_address,
                web_telemetry_path,
                ..
            } => [
                ("GPUWATCH_COLLECTOR__LISTEN", web_listen_address),
                ("GPUWATCH_COLLECTOR__TELEMETRY_PATH", web_telemetry_path),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
            .collect(),
            _ => Vec::new(),
        };
        let mut out: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| !flags.iter().any(|(f, _)| f == k))
            .collect();
        out.extend(flags);
        out
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or upgrade the database schema. Picks TimescaleDB hypertables
    /// or plain PostgreSQL partitions on first run; a second run changes nothing.
    Migrate,
    /// Run the collector agent: sample GPUs and hosts every interval and
    /// deliver them (database or `gpuwatch serve`), spooling to disk while
    /// the sink is down (the simulated fleet where no GPU is present).
    Collector {
        /// Collect and deliver once, then exit.
        #[arg(long)]
        once: bool,
        /// Print each collection as JSON on stdout instead of delivering it.
        #[arg(long)]
        print: bool,
        /// Also answer /metrics and /health on this address, e.g.
        /// 0.0.0.0:9400 (collector.listen; node_exporter's flag name).
        #[arg(long = "web.listen-address", value_name = "ADDR")]
        web_listen_address: Option<String>,
        /// Path of the agent's metrics (collector.telemetry_path) [default: /metrics].
        #[arg(long = "web.telemetry-path", value_name = "PATH")]
        web_telemetry_path: Option<String>,
    },
    /// Run the aggregator: hourly and daily tiers, retention, partitions
    /// ahead, host liveness. Replicas may run side by side; one works at a time.
    Aggregator {
        /// One run, then exit.
        #[arg(long)]
        once: bool,
        /// With --once: repeat runs until every tier has caught up.
        #[arg(long, requires = "once")]
        catch_up: bool,
    },
    /// Run the alerter: evaluate alert rules every alerter.interval and
    /// deliver notifications (webhooks, e-mail). Replicas may run side by side.
    Alerter {
        /// One evaluation, deliver what is due, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Serve the HTTP API (/api/v1, /metrics, /health, /ready) on api.listen.
    Serve,
    /// Create or revoke API bearer tokens (stored hashed; shown once).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Run the billing meter (closed periods of environment status history
    /// into billing_records) and the monthly invoice run on their schedules.
    Billing {
        /// Meter until caught up and cut the invoices that are due, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Mirror the jobs of the DLWorkspace clusters in `[[dlworkspace.clusters]]`
    /// (their MySQL `jobs` and `clusterstatus`) into training_jobs.
    Dlworkspace {
        /// Sync every cluster once, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Finance reports: usage (split so it sums to the invoices) and invoices.
    Report {
        #[command(subcommand)]
        report: ReportKind,
    },
    /// Migrate, then run every role in one process (small installs, quick start).
    All,
}

#[derive(Subcommand, Debug)]
pub enum ReportKind {
    /// Usage of a month (or --from/--to), as CSV or JSON on stdout.
    Usage {
        /// Month, YYYY-MM (UTC).
        #[arg(long, conflicts_with_all = ["from", "to"])]
        month: Option<String>,
        /// Range start, RFC 3339 (with --to).
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// Range end, exclusive.
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Comma-separated: customer, workspace, environment, resource, gpu_model.
        #[arg(long)]
        group_by: Option<String>,
        /// Only this customer.
        #[arg(long)]
        customer: Option<i64>,
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: String,
    },
    /// Invoices, newest month first.
    Invoices {
        /// Month, YYYY-MM.
        #[arg(long)]
        month: Option<String>,
        /// Only this customer.
        #[arg(long)]
        customer: Option<i64>,
        /// draft, issued, paid or void.
        #[arg(long)]
        status: Option<String>,
        /// text (with currency symbols), csv or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenAction {
    /// Create a token and print it (only its hash is kept).
    Create {
        /// Role: admin, operator, finance, viewer or agent.
        #[arg(long)]
        role: String,
        /// A name to recognise it by.
        #[arg(long, default_value = "token")]
        name: String,
        /// For agent tokens: the only host it may report for (required
        /// unless --any-host).
        #[arg(long)]
        host: Option<String>,
        /// For agent tokens: report for any host (a gateway, the simulated
        /// fleet). Listed as such by `token list`.
        #[arg(long)]
        any_host: bool,
        /// Stop working after this long, e.g. 30d or 12h (default: never).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens: prefix, role, host, created, last used, expiry (never
    /// the token itself).
    List,
    /// Revoke a token by its id.
    Revoke {
        /// The id `token create` printed.
        id: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_flags_override_the_environment_and_are_checked_as_settings() {
        let cli = Cli::parse_from([
            "gpuwatch",
            "collector",
            "--web.listen-address",
            "127.0.0.1:19400",
            "--web.telemetry-path=/m",
        ]);
        let env = cli.with_flags([
            (
                "GPUWATCH_COLLECTOR__LISTEN".to_string(),
                "0.0.0.0:1".to_string(),
            ),
            ("HOME".to_string(), "/root".to_string()),
        ]);
        let cfg = crate::config::Config::load(None, env).expect("valid");
        assert_eq!(cfg.collector.listen.as_deref(), Some("127.0.0.1:19400"));
        assert_eq!(cfg.collector.telemetry_path, "/m");
        let bad = Cli::parse_from(["gpuwatch", "collector", "--web.listen-address", "nowhere"]);
        let errs = crate::config::Config::load(None, bad.with_flags([])).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("collector.listen:") && e.contains("nowhere")),
            "{errs:?}"
        );
        // Other commands take nothing from these flags.
        let serve = Cli::parse_from(["gpuwatch", "serve"]);
        assert_eq!(serve.with_flags([]), Vec::<(String, String)>::new());
    }
}
