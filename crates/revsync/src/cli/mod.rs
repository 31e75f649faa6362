//! Command-line interface. Binary-only: parses arguments, loads the config, calls the library,
//! prints results. `anyhow` is used here and nowhere in the library.

mod backfill;
mod bench;
mod check;
mod demo;
mod harness;
mod ops;
mod quarantine;
mod reconcile;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use revsync::app::App;
use revsync::config::{Config, EXAMPLE};
use revsync::telemetry::{self, LogFormat};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "revsync",
    version,
    about = "Syncs 2Checkout payment events into Salesforce, exactly once.",
    after_help = "Examples:\n  revsync init                      write a commented revsync.toml\n  revsync serve                     receive 2Checkout notifications\n  revsync verify --kind ipn --secret-file key.txt body.txt\n  revsync quarantine list           refused deliveries kept for review"
)]
struct Cli {
    /// Configuration file (TOML). Environment overrides: REVSYNC__SECTION__KEY.
    #[arg(
        long,
        short,
        global = true,
        env = "REVSYNC_CONFIG",
        default_value = "revsync.toml"
    )]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything embedded: SQLite, the Salesforce emulator, simulated 2Checkout traffic and
    /// the dashboard. Ends with a summary (Ctrl-C, or --for SECONDS).
    #[command(after_help = "Examples:\n  revsync demo\n  revsync demo --for 60 --rate 20")]
    Demo(demo::DemoArgs),
    /// Write a commented example configuration.
    #[command(after_help = "Example:\n  revsync init --config /etc/revsync/revsync.toml")]
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Receive 2Checkout notifications until SIGTERM or Ctrl-C.
    #[command(
        after_help = "Example:\n  TWOCHECKOUT_SECRET_KEY=… revsync serve --config revsync.toml"
    )]
    Serve,
    /// Check a captured notification body against a key and print the computed signatures.
    /// Exit 0 when the strongest signature present is valid, 1 when not, 2 on unusable input.
    #[command(
        after_help = "Example:\n  revsync verify --kind ipn --secret-file key.txt captured-ipn.txt\n  pbpaste | revsync verify --kind lcn --secret-file key.txt -"
    )]
    Verify(verify::VerifyArgs),
    /// Refused deliveries: list, show, re-verify and admit.
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
    /// Is this configuration ready for this org? Checks the config, logs in to Salesforce,
    /// describes every object the flows write and verifies every mapped field exists and is
    /// writable, external ids are External ID + Unique, and multi-currency matches. Exit 0
    /// when ready, 1 with a list of what to fix.
    #[command(after_help = "Example:\n  revsync check --config /etc/revsync/revsync.toml")]
    Check,
    /// Event-log totals.
    Status,
    /// Pull 2Checkout order history (REST API 6.0) into the ledger and queue the Salesforce
    /// writes at backfill priority (payments go first). Safe to run again: nothing changes.
    #[command(
        after_help = "Examples:\n  revsync backfill --since 2024-01-01\n  revsync backfill --since 2024-01-01 --until 2024-06-30 --json"
    )]
    Backfill(backfill::BackfillArgs),
    /// Compare 2Checkout, the ledger and Salesforce: missing, extra and differing records and
    /// amounts. Exit 1 when they disagree (and --repair was not given).
    #[command(
        after_help = "Examples:\n  revsync reconcile --since 2024-01-01\n  revsync reconcile --since 2024-01-01 --json > drift.json\n  revsync reconcile --since 2024-01-01 --repair"
    )]
    Reconcile(reconcile::ReconcileArgs),
    /// Recompute Account revenue rollups from the ledger now and queue what changed.
    Rollup,
    /// Dead letters: list, and replay after fixing the cause.
    #[command(subcommand)]
    Replay(ops::ReplayCommand),
    /// Customers held for an operator's matching decision: list, link, create.
    #[command(subcommand)]
    Review(ops::ReviewCommand),
    /// Benchmarks (print figures beside a baseline measured in the same run).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Fault injection: runs `revsync serve` as a child under 2Checkout load, kill -9s it and
    /// injects Salesforce (and PostgreSQL) faults, then checks nothing acknowledged was lost,
    /// nothing duplicated and amounts are exact. Exit 1 on any violation.
    #[command(
        after_help = "Examples:\n  revsync harness\n  revsync harness --rounds 2 --events 300\n  revsync harness --postgres postgres://postgres@127.0.0.1:5432/test"
    )]
    Harness(harness::HarnessArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Bench(_) | Command::Demo(_) | Command::Harness(_) => "warn",
        _ => "info",
    };
    telemetry::init_logging(cli.log_format, default_filter);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // One clear line, then the cause chain.
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Init { force } => init(&cli.config, force),
        Command::Serve => serve(&cli.config).await,
        Command::Verify(args) => Ok(verify::run(args)),
        Command::Quarantine(cmd) => quarantine::run(&load(&cli.config)?, cmd).await,
        Command::Check => check::run(&cli.config).await,
        Command::Status => status(&load(&cli.config)?).await,
        Command::Backfill(args) => backfill::run(&load(&cli.config)?, args).await,
        Command::Reconcile(args) => reconcile::run(&load(&cli.config)?, args).await,
        Command::Bench(cmd) => bench::run(cmd).await,
        Command::Rollup => ops::rollup(&load(&cli.config)?).await,
        Command::Replay(cmd) => ops::replay(&load(&cli.config)?, cmd).await,
        Command::Review(cmd) => ops::review(&load(&cli.config)?, cmd).await,
        Command::Harness(args) => harness::run(args).await,
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(Config::load(path, false)?)
}

fn init(path: &std::path::Path, force: bool) -> anyhow::Result<ExitCode> {
    if path.exists() && !force {
        anyhow::bail!(
            "{} already exists (use --force to overwrite)",
            path.display()
        );
    }
    std::fs::write(path, EXAMPLE).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

async fn serve(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path, true)?;
    let shutdown = CancellationToken::new();
    let listener = App::bind(&config).await?;
    let app = App::start(&config, listener, shutdown.clone()).await?;
    let grace = std::time::Duration::from_secs(config.server.shutdown_grace_secs);
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    app.stop();
    match tokio::time::timeout(grace, app.wait()).await {
        Ok(result) => result.context("server failed")?,
        Err(_) => anyhow::bail!("in-flight requests did not finish within {grace:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn status(config: &Config) -> anyhow::Result<ExitCode> {
    use revsync::store::EventLog;
    let store =
        revsync::store::open(&config.store.url, &revsync::app::open_options(config)).await?;
    let c = store.counts().await?;
    println!("events      {:>10}", c.events);
    println!("  pending   {:>10}", c.pending);
    println!("  processed {:>10}", c.processed);
    println!("  failed    {:>10}", c.failed);
    println!("deliveries  {:>10}", c.deliveries);
    println!("quarantined {:>10}  (held)", c.quarantined_held);
    Ok(ExitCode::SUCCESS)
}
