//! `gpuwatch`: one binary, a subcommand per role. It parses the command line
//! and the config, sets up logging and shutdown, and calls the role crates;
//! nothing else lives here.
#![forbid(unsafe_code)]

mod cli;
mod config;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gpuwatch_aggregator::AggregatorError;
use gpuwatch_alerter::AlerterError;
use gpuwatch_api::tokens::TokenError;
use gpuwatch_billing::{cli::ReportError, BillingError};
use gpuwatch_collector::sinks::Sink;
use gpuwatch_collector::{CollectorError, RunOptions, SinkKind};
use gpuwatch_store::StoreError;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command, ReportKind, TokenAction};
use config::Config;

/// sysexits EX_USAGE: a bad configuration or command-line argument (EX_CONFIG
/// would be 78; linkerd and we use EX_USAGE for both).
const EXIT_CONFIG: u8 = 64;
/// sysexits EX_UNAVAILABLE: the database cannot be reached or refuses us.
const EXIT_UNAVAILABLE: u8 = 69;
/// How long tasks get to flush after SIGTERM/SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    // A bad argument is a usage error like a bad config value (EX_USAGE),
    // not clap's own code 2, which the README's exit-code table does not know.
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    let cfg = match Config::load(cli.config.as_deref(), cli.with_flags(std::env::vars())) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("gpuwatch: bad configuration: {e}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_tracing(&cfg.log);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gpuwatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gpuwatch: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Any role's failure, for one line on stderr and an exit code.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Collector(#[from] CollectorError),
    #[error(transparent)]
    Aggregator(#[from] AggregatorError),
    #[error(transparent)]
    Alerter(#[from] AlerterError),
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

fn exit_code(f: &Failure) -> u8 {
    let e = match f {
        Failure::Store(s)
        | Failure::Token(TokenError::Store(s))
        | Failure::Collector(CollectorError::Store(s))
        | Failure::Aggregator(AggregatorError::Store(s))
        | Failure::Alerter(AlerterError::Store(s)) => s,
        Failure::Alerter(AlerterError::Invalid(_)) => return EXIT_CONFIG,
        Failure::Report(ReportError::Usage(_)) => return EXIT_CONFIG,
        Failure::Billing(b) | Failure::Report(ReportError::Billing(b)) => match b {
            BillingError::Store(s) => s,
            BillingError::Invalid(_) => return EXIT_CONFIG,
            _ => return 1,
        },
        _ => return 1,
    };
    match e {
        StoreError::Unreachable { .. }
        | StoreError::Tls(_)
        | StoreError::AuthFailed { .. }
        | StoreError::NoSuchDatabase { .. }
        | StoreError::ReadOnly { .. } => EXIT_UNAVAILABLE,
        StoreError::BadUrl(_) => EXIT_CONFIG,
        _ => 1,
    }
}

fn init_tracing(log: &config::LogConfig) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    // Colour only for a person at a terminal: a file or the journal would
    // keep the escape codes as text.
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(move || gpuwatch_store::logging::EscapedLines::new(std::io::stderr(), ansi));
    if log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(command: Command, cfg: Config) -> Result<(), Failure> {
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    // One registry per process: every role registers its metrics on it and
    // `serve` gathers it for /metrics.
    let registry = Registry::new();
    let r = &registry;
    match command {
        Command::Migrate => migrate(&cfg).await,
        Command::Collector { once, print, .. } => {
            let opts = RunOptions { once, print };
            graced(
                "collector",
                &shutdown,
                collector(cfg, opts, r, shutdown.clone()),
            )
            .await
        }
        Command::Serve => graced("serve", &shutdown, serve(cfg, r, shutdown.clone())).await,
        Command::Token { action } => token(cfg, action).await,
        Command::Aggregator { once, catch_up } => {
            let role = aggregator(cfg, once, catch_up, shutdown.clone());
            graced("aggregator", &shutdown, role).await
        }
        Command::Alerter { once } => {
            graced(
                "alerter",
                &shutdown,
                alerter(cfg, once, r, shutdown.clone()),
            )
            .await
        }
        Command::Billing { once } => {
            graced(
                "billing",
                &shutdown,
                billing(cfg, once, r, shutdown.clone()),
            )
            .await
        }
        Command::Dlworkspace { once } => {
            graced(
                "dlworkspace",
                &shutdown,
                dlworkspace(cfg, once, shutdown.clone()),
            )
            .await
        }
        Command::Report { report } => billing_report(cfg, report).await,
        Command::All => {
            migrate(&cfg).await?;
            let s = &shutdown;
            let opts = RunOptions::default();
            // The first role to fail ends the process with its error.
            tokio::try_join!(
                graced("collector", s, collector(cfg.clone(), opts, r, s.clone())),
                graced(
                    "aggregator",
                    s,
                    aggregator(cfg.clone(), false, false, s.clone())
                ),
                graced("alerter", s, alerter(cfg.clone(), false, r, s.clone())),
                graced("billing", s, billing(cfg.clone(), false, r, s.clone())),
                graced("dlworkspace", s, dlworkspace(cfg.clone(), false, s.clone())),
                graced("serve", s, serve(cfg, r, s.clone()))
            )
            .map(|_| ())
        }
    }
}

/// Runs `role` until it ends; once `shutdown` fires it has
/// [`SHUTDOWN_GRACE`] to flush and stop, and is then given up on.
async fn graced(
    role: &'static str,
    shutdown: &CancellationToken,
    task: impl std::future::Future<Output = Result<(), Failure>>,
) -> Result<(), Failure> {
    tokio::pin!(task);
    tokio::select! {
        r = &mut task => r,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::error!(role, grace_secs = SHUTDOWN_GRACE.as_secs(), "role did not stop within the grace period");
            Ok(())
        }
    }
}

/// A role's metrics that cannot be registered (two crates chose one name:
/// a bug) are logged; the role still runs.
fn registered(role: &str, result: Result<(), prometheus::Error>) {
    if let Err(e) = result {
        tracing::warn!(role, error = %e, "self-metrics not registered; /metrics lacks them");
    }
}

async fn migrate(cfg: &Config) -> Result<(), Failure> {
    let report = gpuwatch_store::migrate(&cfg.database).await?;
    tracing::info!(
        backend = %report.backend,
        server = %report.server_version,
        applied = report.applied.len(),
        already_applied = report.already_applied,
        "schema is current"
    );
    Ok(())
}

async fn collector(
    cfg: Config,
    opts: RunOptions,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<(), Failure> {
    registered("collector", gpuwatch_collector::register_metrics(registry));
    if cfg.collector.sink == SinkKind::Direct {
        registered(
            "collector",
            gpuwatch_store::metrics::register_metrics(registry),
        );
    }
    let sink = Sink::from_config(&cfg.collector, &cfg.database)?;
    let c = cfg.collector;
    let metrics = gpuwatch_collector::serve::listen(&c, registry.clone(), shutdown.clone()).await?;
    let fleet = gpuwatch_collector::Fleet::new(&c);
    Ok(gpuwatch_collector::run_with(fleet, metrics, c, sink, opts, shutdown).await?)
}

async fn serve(
    cfg: Config,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<(), Failure> {
    registered("serve", gpuwatch_store::metrics::register_metrics(registry));
    let pool = gpuwatch_store::connect(&cfg.database).await?;
    let exporter =
        gpuwatch_exporter::Exporter::with_registry(cfg.exporter.clone(), registry.clone());
    let refresh = tokio::spawn(exporter.clone().run(pool.clone(), shutdown.clone()));
    let state = gpuwatch_api::AppState::new(pool, cfg.database.writer.clone(), cfg.api, exporter)
        .with_webhook_defaults(cfg.alerter.webhook.clone())
        .with_invoice_due_days(cfg.billing.due_days);
    let served = gpuwatch_api::serve(state, shutdown.clone()).await;
    shutdown.cancel();
    let _ = refresh.await;
    served.map_err(|e| Failure::Other(e.to_string()))
}

async fn token(cfg: Config, action: TokenAction) -> Result<(), Failure> {
    use gpuwatch_api::tokens;
    let pool = gpuwatch_store::connect(&cfg.database).await?;
    match action {
        TokenAction::Create {
            role,
            name,
            host,
            any_host,
            expires,
        } => {
            let args = tokens::CreateArgs {
                name: &name,
                role: &role,
                host: host.as_deref(),
                any_host,
                expires: expires.as_deref(),
            };
            let (id, token) = tokens::create(&pool, &args).await?;
            println!("id {id}\ntoken {token}");
            eprintln!("gpuwatch: keep the token now; only its hash is stored");
        }
        TokenAction::List => print!("{}", tokens::render(&tokens::list(&pool).await?)),
        TokenAction::Revoke { id } => {
            tokens::revoke(&pool, id).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

async fn aggregator(
    cfg: Config,
    once: bool,
    catch_up: bool,
    shutdown: CancellationToken,
) -> Result<(), Failure> {
    let pool = gpuwatch_store::connect(&cfg.database).await?;
    Ok(gpuwatch_aggregator::run(cfg.aggregator, pool, once, catch_up, shutdown).await?)
}

async fn alerter(
    cfg: Config,
    once: bool,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<(), Failure> {
    registered("alerter", gpuwatch_alerter::register_metrics(registry));
    let pool = gpuwatch_store::connect(&cfg.database).await?;
    Ok(gpuwatch_alerter::run(cfg.alerter, pool, once, shutdown).await?)
}

async fn billing(
    cfg: Config,
    once: bool,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<(), Failure> {
    registered("billing", gpuwatch_billing::register_metrics(registry));
    // Validated when the config was loaded; this only converts.
    let settings = cfg
        .billing
        .settings()
        .map_err(|e| Failure::Usage(e.join("; ")))?;
    let pool = gpuwatch_store::connect(&cfg.database).await?;
    if !once {
        gpuwatch_billing::run(pool, settings, shutdown).await;
        return Ok(());
    }
    let done = gpuwatch_billing::cli::once(&pool, &settings, chrono::Utc::now()).await?;
    println!("{}", done.summary);
    for p in &done.problems {
        eprintln!("gpuwatch: {p}");
    }
    done.failure.map_or(Ok(()), |f| Err(Failure::Other(f)))
}

/// The DLWorkspace source; with no cluster configured it has nothing to do
/// (under `all` that is the usual case) and returns at once.
async fn dlworkspace(cfg: Config, once: bool, shutdown: CancellationToken) -> Result<(), Failure> {
    if cfg.dlworkspace.clusters.is_empty() {
        if once {
            return Err(Failure::Usage(
                "no [[dlworkspace.clusters]] configured: add one with id and url (see gpuwatch.example.toml)".into(),
            ));
        }
        return Ok(());
    }
    let pool = gpuwatch_store::connect(&cfg.database).await?;
    if !once {
        gpuwatch_dlworkspace::run(pool, cfg.dlworkspace, shutdown).await;
        return Ok(());
    }
    let mut failed = Vec::new();
    for cluster in &cfg.dlworkspace.clusters {
        match gpuwatch_dlworkspace::sync_once(&pool, cluster).await {
            Ok(r) => println!(
                "dlworkspace cluster {}: {} rows read, {} jobs changed, {} status changes, {} rows kept for retry, {} unmapped owners",
                cluster.id,
                r.rows_read,
                r.jobs_changed,
                r.transitions,
                r.bad_rows,
                r.unmapped_owners.len()
            ),
            Err(e) => failed.push(e.to_string()),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Other(failed.join("; ")))
    }
}

async fn billing_report(cfg: Config, report: ReportKind) -> Result<(), Failure> {
    use gpuwatch_billing::cli;
    let pool = gpuwatch_store::connect(&cfg.database).await?;
    let out = match report {
        ReportKind::Usage {
            month,
            from,
            to,
            group_by,
            customer,
            format,
        } => {
            let args = cli::UsageArgs {
                month,
                from,
                to,
                group_by,
                customer,
                format,
            };
            cli::usage(&pool, args).await?
        }
        ReportKind::Invoices {
            month,
            customer,
            status,
            format,
        } => {
            let args = cli::InvoiceArgs {
                month,
                customer,
                status,
                format,
            };
            cli::invoices(&pool, args).await?
        }
    };
    print!("{out}");
    Ok(())
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops gpuwatch gracefully");
                let _ = ctrl_c.await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    shutdown.cancel();
}
