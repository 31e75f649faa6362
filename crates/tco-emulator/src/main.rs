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
    /// Serve the REST API 6.0 (orders, subscriptions) over the history the same seed and
    /// count generate, until Ctrl-C.
    #[command(
        after_help = "Example:\n  TCO_SECRET_KEY=… tco-emulator rest --listen 127.0.0.1:8090 --count 500 --seed 1"
    )]
    Rest(RestArgs),
}

#[derive(Parser)]
struct RestArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: std::net::SocketAddr,
    /// Merchant code clients must authenticate with.
    #[arg(long, default_value = "REVSYNC01")]
    merchant_code: String,
    /// Account Secret Key (REST authentication).
    #[arg(long, env = "TCO_SECRET_KEY", hide_env_values = true)]
    secret: String,
    /// Number of scenarios of history.
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// RNG seed: the same seed and count give the same history as `send`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Mark the history as test orders.
    #[arg(long)]
    test_orders: bool,
}

async fn rest(args: RestArgs) -> anyhow::Result<()> {
    let mut gen_cfg = GeneratorConfig::new(args.seed);
    gen_cfg.test_orders = args.test_orders;
    gen_cfg.merchant_code = args.merchant_code.clone();
    let deliveries = Generator::new(gen_cfg).generate(args.count);
    let data = tco_emulator::RestData::from_deliveries(&deliveries, &args.merchant_code);
    let auth = tco_emulator::RestAuth::new(&args.merchant_code, SecretKey::from(args.secret));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(
        url = %format!("http://{}/rest/6.0/", args.listen),
        orders = data.orders().count(),
        subscriptions = data.subscriptions().count(),
        "REST 6.0 emulator listening"
    );
    tco_emulator::rest::serve(listener, tco_emulator::RestState::new(data, auth), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("REST emulator failed")
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
    let args = match Cli::parse().command {
        Command::Send(args) => args,
        Command::Rest(args) => return rest(args).await,
    };

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
