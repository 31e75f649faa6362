//! `tco-emulator send`: generate realistic 2Checkout notifications and deliver them
//! like 2Checkout (signed, receipt-checked, retried on the compressed schedule).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tco_emulator::{
    Endpoints, Generator, GeneratorConfig, RetrySchedule, RunSummary, Sender, SenderConfig,
};
use twocheckout::{Algorithm, SecretKey};

#[derive(Parser)]
#[command(
    name = "tco-emulator",
    version,
    about = "2Checkout notification traffic emulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate N scenarios and deliver their IPN/LCN/INS notifications.
    Send(SendArgs),
}

#[derive(Parser)]
struct SendArgs {
    /// IPN URL (also used for LCN and INS unless overridden).
    #[arg(long)]
    url: String,
    /// LCN URL.
    #[arg(long)]
    lcn_url: Option<String>,
    /// INS URL.
    #[arg(long)]
    ins_url: Option<String>,
    /// Account Secret Key used to sign IPN/LCN and check receipts.
    #[arg(long, env = "TCO_SECRET_KEY", hide_env_values = true)]
    secret: String,
    /// Legacy INS Secret Word (defaults to the secret key).
    #[arg(long, env = "TCO_SECRET_WORD", hide_env_values = true)]
    secret_word: Option<String>,
    /// Number of scenarios (each yields 1-5 notifications).
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// RNG seed: the same seed sends the same traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First attempts per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Divide retry waits by this factor (3600: one hour of schedule per second).
    #[arg(long, default_value_t = 3600.0)]
    compression: f64,
    /// Stop retrying after this many attempts (default: 2Checkout's full 48 h schedule).
    #[arg(long)]
    max_attempts: Option<usize>,
    /// Signatures to add, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "md5,sha256,sha3-256")]
    algorithms: Vec<Algorithm>,
    /// Mark traffic as test orders (TEST_ORDER=1, TEST=1).
    #[arg(long)]
    test_orders: bool,
    /// Write every delivery report as JSON lines to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Send(args) = Cli::parse().command;

    let mut gen_cfg = GeneratorConfig::new(args.seed);
    gen_cfg.test_orders = args.test_orders;
    let deliveries = Generator::new(gen_cfg).generate(args.count);

    let mut endpoints = Endpoints::single(&args.url);
    if let Some(u) = args.lcn_url {
        endpoints.lcn = u;
    }
    if let Some(u) = args.ins_url {
        endpoints.ins = u;
    }
    let key = SecretKey::from(args.secret);
    let mut cfg = SenderConfig::new(endpoints, key.clone());
    cfg.secret_word = args.secret_word.map(SecretKey::from).unwrap_or(key);
    cfg.algorithms = args.algorithms;
    cfg.time_compression = args.compression;
    cfg.request_timeout = Duration::from_secs(args.timeout);
    if let Some(n) = args.max_attempts {
        cfg.schedule = RetrySchedule::twocheckout().truncated(n);
    }
    let sender = Sender::new(cfg)?;
    tracing::info!(
        scenarios = args.count,
        deliveries = deliveries.len(),
        seed = args.seed,
        "sending"
    );
    let reports = sender.run(deliveries, args.rate).await;

    if let Some(path) = &args.report {
        let mut out = String::new();
        for r in &reports {
            out.push_str(&serde_json::to_string(r)?);
            out.push('\n');
        }
        std::fs::write(path, out).with_context(|| format!("writing report {}", path.display()))?;
    }
    let summary = RunSummary::of(&reports);
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if summary.gave_up > 0 {
        eprintln!(
            "{} of {} notifications were never acknowledged",
            summary.gave_up, summary.deliveries
        );
        std::process::exit(1);
    }
    Ok(())
}
