//! `gpuwatch`: one binary, a subcommand per role. It parses the command line
//! and the config, sets up logging and shutdown, and calls the role crates;
//! nothing else lives here.
#![forbid(unsafe_code)]

mod config;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gpuwatch_aggregator::AggregatorError;
use gpuwatch_alerter::AlerterError;
use gpuwatch_collector::sinks::{copy::CopySink, http::HttpSink, Sink};
use gpuwatch_collector::{CollectorError, RunOptions, SinkKind};
use gpuwatch_store::StoreError;
use tokio_util::sync::CancellationToken;

use config::Config;

/// sysexits: bad configuration (EX_CONFIG would be 78; linkerd and we use EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// sysexits EX_UNAVAILABLE: the database cannot be reached or refuses us.
const EXIT_UNAVAILABLE: u8 = 69;
/// How long tasks get to flush after SIGTERM/SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// gpuwatch: telemetry, alerting and metering for a GPU cloud.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Config file (TOML); see gpuwatch.example.toml. Environment overrides:
    /// DATABASE_URL, GPUWATCH_SECTION__KEY (e.g. GPUWATCH_COLLECTOR__INTERVAL_SECS).
    #[arg(long, short, global = true, env = "GPUWATCH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    /// Run the alerter: evaluate alert rules every alerter.interval_secs and
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
    /// Finance reports: usage (split so it sums to the invoices) and invoices.
    Report {
        #[command(subcommand)]
        report: ReportKind,
    },
    /// Migrate, then run every role in one process (small installs, quick start).
    All,
}

#[derive(Subcommand, Debug)]
enum ReportKind {
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
enum TokenAction {
    /// Create a token and print it (only its hash is kept).
    Create {
        /// Role: admin, operator, finance, viewer or agent.
        #[arg(long)]
        role: String,
        /// A name to recognise it by.
        #[arg(long, default_value = "token")]
        name: String,
        /// For agent tokens: the only host it may report for.
        #[arg(long)]
        host: Option<String>,
    },
    /// Revoke a token by its id.
    Revoke {
        /// The id `token create` printed.
        id: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref(), std::env::vars()) {
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
    Billing(#[from] gpuwatch_billing::BillingError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

fn exit_code(f: &Failure) -> u8 {
    let e = match f {
        Failure::Store(s)
        | Failure::Collector(CollectorError::Store(s))
        | Failure::Aggregator(AggregatorError::Store(s))
        | Failure::Alerter(AlerterError::Store(s)) => s,
        Failure::Alerter(AlerterError::Invalid(_)) => return EXIT_CONFIG,
        Failure::Billing(gpuwatch_billing::BillingError::Store(s)) => s,
        Failure::Billing(gpuwatch_billing::BillingError::Invalid(_)) => return EXIT_CONFIG,
        _ => return 1,
    };
    match e {
        StoreError::Unreachable { .. }
        | StoreError::AuthFailed { .. }
        | StoreError::NoSuchDatabase { .. }
        | StoreError::ReadOnly { .. } => EXIT_UNAVAILABLE,
        StoreError::BadUrl(_) => EXIT_CONFIG,
        _ => 1,
    }
}

fn init_tracing(log: &config::LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(command: Command, cfg: Config) -> Result<(), Failure> {
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    match command {
        Command::Migrate => migrate(&cfg).await,
        Command::Collector { once, print } => {
            collector(cfg, RunOptions { once, print }, shutdown).await
        }
        Command::Serve => serve(cfg, shutdown).await,
        Command::Token { action } => token(cfg, action).await,
        Command::Aggregator { once, catch_up } => aggregator(cfg, once, catch_up, shutdown).await,
        Command::Alerter { once } => alerter(cfg, once, shutdown).await,
        Command::Billing { once } => billing(cfg, once, shutdown).await,
        Command::Report { report } => billing_report(cfg, report).await,
        Command::All => {
            migrate(&cfg).await?;
            // The first role to fail ends the process with its error.
            tokio::try_join!(
                collector(cfg.clone(), RunOptions::default(), shutdown.clone()),
                aggregator(cfg.clone(), false, false, shutdown.clone()),
                alerter(cfg.clone(), false, shutdown.clone()),
                billing(cfg.clone(), false, shutdown.clone()),
                serve(cfg, shutdown.clone())
            )
            .map(|_| ())
        }
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
    shutdown: CancellationToken,
) -> Result<(), Failure> {
    let sink = match cfg.collector.sink {
        // Lazy: an agent keeps collecting into its spool while the database is down.
        SinkKind::Direct => Sink::Copy(Box::new(CopySink::new(
            gpuwatch_store::connect_lazy(&cfg.database)?,
            cfg.database.writer.clone(),
        ))),
        SinkKind::Http => Sink::Http(
            HttpSink::new(&cfg.collector.http).map_err(|e| Failure::Other(e.to_string()))?,
        ),
    };
    let task = gpuwatch_collector::run(cfg.collector, sink, opts, shutdown.clone());
    tokio::pin!(task);
    let result = tokio::select! {
        r = &mut task => r,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::error!(grace_secs = SHUTDOWN_GRACE.as_secs(), "collector did not stop within the grace period");
            Ok(())
        }
    };
    Ok(result?)
}

async fn serve(cfg: Config, shutdown: CancellationToken) -> Result<(), Failure> {
    let pool = gpuwatch_store::connect(&cfg.database).await?;
    let exporter = gpuwatch_exporter::Exporter::new(cfg.exporter.clone());
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
    let pool = gpuwatch_store::connect(&cfg.database).await?;
    match action {
        TokenAction::Create { role, name, host } => {
            if !gpuwatch_api::auth::ROLES.contains(&role.as_str()) {
                return Err(Failure::Usage(format!(
                    "--role {role:?} is not one of {}",
                    gpuwatch_api::auth::ROLES.join(", ")
                )));
            }
            if host.is_some() && role != "agent" {
                return Err(Failure::Usage("--host only applies to --role agent".into()));
            }
            let (id, token) =
                gpuwatch_api::auth::create(&pool, &name, &role, host.as_deref()).await?;
            println!("id {id}\ntoken {token}");
            eprintln!("gpuwatch: keep the token now; only its hash is stored");
        }
        TokenAction::Revoke { id } => {
            if !gpuwatch_api::auth::revoke(&pool, id).await? {
                return Err(Failure::Usage(format!("no live token with id {id}")));
            }
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

async fn alerter(cfg: Config, once: bool, shutdown: CancellationToken) -> Result<(), Failure> {
    let pool = gpuwatch_store::connect(&cfg.database).await?;
    Ok(gpuwatch_alerter::run(cfg.alerter, pool, once, shutdown).await?)
}

async fn billing(cfg: Config, once: bool, shutdown: CancellationToken) -> Result<(), Failure> {
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
    let (meter, cut) = gpuwatch_billing::run_once(&pool, &settings, chrono::Utc::now()).await?;
    println!(
        "metered through {}: {} records, {} corrections, {} retried periods; {} invoices cut",
        meter.to.map_or("nothing".into(), |t| t.to_rfc3339()),
        meter.records,
        meter.corrections,
        meter.retried,
        cut.invoices.len()
    );
    if let Some(w) = cut.waiting_for_meter {
        eprintln!("gpuwatch: invoices wait: {w}");
    }
    for e in &meter.errors {
        eprintln!("gpuwatch: billing: {e}");
    }
    if meter.errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::Other(format!(
            "{} environment periods were not billed (bad input above; fix it and run again)",
            meter.errors.len()
        )))
    }
}

async fn billing_report(cfg: Config, report: ReportKind) -> Result<(), Failure> {
    let pool = gpuwatch_store::connect(&cfg.database).await?;
    match report {
        ReportKind::Usage {
            month,
            from,
            to,
            group_by,
            customer,
            format,
        } => {
            let time = |field: &str, v: Option<String>| -> Result<_, Failure> {
                v.map(|s| {
                    s.parse::<chrono::DateTime<chrono::Utc>>().map_err(|e| {
                        Failure::Usage(format!("--{field}: not an RFC 3339 time ({e}): {s:?}"))
                    })
                })
                .transpose()
            };
            let q = gpuwatch_billing::UsageQuery {
                from: time("from", from)?,
                to: time("to", to)?,
                month,
                group_by,
                customer_id: customer,
                format: Some(format),
            };
            let spec = q.validate()?;
            let rows = gpuwatch_billing::usage_report(&pool, &spec).await?;
            if spec.format == "csv" {
                print!("{}", gpuwatch_billing::to_csv(&rows));
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows)
                        .map_err(|e| Failure::Other(e.to_string()))?
                );
            }
        }
        ReportKind::Invoices {
            month,
            customer,
            status,
            format,
        } => {
            if !["text", "csv", "json"].contains(&format.as_str()) {
                return Err(Failure::Usage(format!(
                    "--format: must be text, csv or json, got {format:?}"
                )));
            }
            let mut all = Vec::new();
            loop {
                let q = gpuwatch_billing::InvoiceQuery {
                    customer_id: customer,
                    status: status.clone(),
                    month: month.clone(),
                    limit: Some(1000),
                    offset: Some(all.len() as i64),
                };
                let p = gpuwatch_billing::list_invoices(&pool, &q).await?;
                let got = p.items.len();
                all.extend(p.items);
                if got == 0 || all.len() as i64 >= p.total {
                    break;
                }
            }
            print!("{}", gpuwatch_billing::invoice::render(&all, &format));
        }
    }
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
