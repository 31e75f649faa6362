//! `revsync bench`: figures, never assertions. Every figure is printed beside a baseline
//! measured in the same run, because the machine it runs on is shared and noisy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use hdrhistogram::Histogram;
use revsync::app::App;
use revsync::config::{Config, SecretRef, SqliteSync};
use tokio_util::sync::CancellationToken;
use twocheckout::signature::SecretKey;

#[path = "bench_backlog.rs"]
mod backlog;
#[path = "bench_calls.rs"]
mod calls;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Durable ingest: IPN/s and receipt latency with fsync on commit, beside a
    /// no-durability baseline (SQLite `synchronous = OFF`), then receipt latency at half the
    /// durable rate.
    #[command(
        after_help = "Example:\n  cargo run --release -- bench ingest --requests 20000 --concurrency 64"
    )]
    Ingest {
        /// IPNs sent per measurement.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Concurrent connections sending.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Also measure against this PostgreSQL database (a scratch schema is not created:
        /// give an empty database).
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Salesforce API calls per 1,000 order events (Account + Contact + Opportunity each)
    /// and end-to-end latency (IPN sent → Opportunity created in Salesforce), at a burst, at a
    /// steady rate and at a trickle, beside a naive per-event integration (look up, then
    /// create or update, per record, as each IPN arrives), all against the Salesforce
    /// emulator.
    #[command(after_help = "Example:\n  cargo run --release -- bench calls --events 1000")]
    Calls {
        /// Completed-order IPNs in the burst (distinct customers).
        #[arg(long, default_value_t = 1_000)]
        events: usize,
        /// IPNs in the steady run.
        #[arg(long, default_value_t = 300)]
        steady: usize,
        /// IPNs per second in the steady run.
        #[arg(long, default_value_t = 30.0)]
        rate: f64,
        /// Events sent one at a time in the trickle run.
        #[arg(long, default_value_t = 20)]
        trickle: usize,
    },
    /// Resident memory of `revsync serve` with a backlog queued while Salesforce is down,
    /// beside the same process idle, then the drain rate once Salesforce is back.
    #[command(
        after_help = "Example:\n  cargo run --release -- bench backlog --events 1000000 --drain-secs 60"
    )]
    Backlog {
        /// Completed-order IPNs queued.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Longest the drain is watched.
        #[arg(long, default_value_t = 60)]
        drain_secs: u64,
    },
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        BenchCommand::Calls {
            events,
            steady,
            rate,
            trickle,
        } => calls::run(events, steady, rate, trickle).await?,
        BenchCommand::Backlog { events, drain_secs } => backlog::run(events, drain_secs).await?,
        BenchCommand::Ingest {
            requests,
            concurrency,
            postgres,
        } => ingest(requests, concurrency, postgres).await?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

const BENCH_SECRET: &str = "bench-secret-key";

/// Result of one measurement.
struct Run {
    per_second: f64,
    latency: Histogram<u64>,
    failures: usize,
}

impl Run {
    fn p(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

async fn ingest(
    requests: usize,
    concurrency: usize,
    postgres: Option<String>,
) -> anyhow::Result<()> {
    let key = SecretKey::new(BENCH_SECRET.as_bytes().to_vec());
    println!("ingest benchmark: {requests} signed IPNs per run, {concurrency} connections, client and server on this machine ({} cores)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let bodies = Arc::new(ipn_bodies(requests * 2, &key));

    let dir = tempfile::tempdir()?;
    let baseline = {
        let url = format!("sqlite://{}", dir.path().join("baseline.db").display());
        let app = start(&url, SqliteSync::Off).await?;
        let run = closed_loop(&app, &bodies[..requests], concurrency).await;
        app.stop();
        app.wait().await?;
        run
    };
    let durable_url = format!("sqlite://{}", dir.path().join("durable.db").display());
    let durable_app = start(&durable_url, SqliteSync::Full).await?;
    let durable = closed_loop(&durable_app, &bodies[..requests], concurrency).await;
    let half_rate = durable.per_second / 2.0;
    let half = open_loop(
        &durable_app,
        &bodies[requests..],
        half_rate,
        Duration::from_secs(5),
    )
    .await;
    durable_app.stop();
    durable_app.wait().await?;

    println!();
    println!(
        "{:<44} {:>10} {:>9} {:>9} {:>8}",
        "run", "IPN/s", "p50 ms", "p99 ms", "failed"
    );
    let row = |name: &str, r: &Run| {
        println!(
            "{:<44} {:>10.0} {:>9.2} {:>9.2} {:>8}",
            name,
            r.per_second,
            r.p(0.5),
            r.p(0.99),
            r.failures
        )
    };
    row("baseline: SQLite, no fsync (synchronous=OFF)", &baseline);
    row("durable: SQLite WAL, fsync on commit", &durable);
    row(
        &format!("durable at half load ({half_rate:.0}/s offered)"),
        &half,
    );
    if let Some(url) = postgres {
        let app = start(&url, SqliteSync::Full).await?;
        let pg = closed_loop(&app, &bodies[..requests], concurrency).await;
        app.stop();
        app.wait().await?;
        row("durable: PostgreSQL", &pg);
    }
    println!();
    println!(
        "durable / baseline throughput: {:.2}   (target: >= 5,000 IPN/s durable; receipt p99 <= 50 ms at half load)",
        durable.per_second / baseline.per_second
    );
    Ok(())
}

/// Realistic signed order IPNs from the 2Checkout emulator, signed once up front so that
/// signing is not measured.
fn ipn_bodies(count: usize, key: &SecretKey) -> Vec<String> {
    use tco_emulator::{Generator, GeneratorConfig, ScenarioKind};
    let mut generator = Generator::new(GeneratorConfig::new(42));
    let signer = tco_emulator::Sender::new(tco_emulator::sender::SenderConfig::new(
        tco_emulator::sender::Endpoints::single("http://unused"),
        key.clone(),
    ))
    .expect("signer");
    let mut bodies = Vec::with_capacity(count);
    while bodies.len() < count {
        for delivery in generator.scenario(ScenarioKind::NewOrder) {
            bodies.push(signer.prepare(&delivery, 0).to_urlencoded());
        }
    }
    bodies.truncate(count);
    bodies
}

async fn start(url: &str, sync: SqliteSync) -> anyhow::Result<App> {
    let mut config = Config::default();
    config.store.url = url.to_owned();
    config.store.sqlite_synchronous = sync;
    // Ingest alone: the events stay in the log (processing is measured by `bench calls`).
    config.processor.enabled = false;
    config.twocheckout.secret_key = Some(SecretRef::Value(BENCH_SECRET.into()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(App::start(&config, listener, CancellationToken::new()).await?)
}

fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("http client")
}

/// Sends one IPN; returns whether a receipt came back.
async fn send(http: &reqwest::Client, url: &str, body: &str) -> bool {
    match http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => r.text().await.is_ok_and(|t| t.contains("<sig")),
        _ => false,
    }
}

/// `concurrency` senders, each sending its next IPN as soon as the previous is answered.
async fn closed_loop(app: &App, bodies: &[String], concurrency: usize) -> Run {
    let http = client(concurrency);
    let url = format!("{}/2checkout/ipn", app.url());
    let bodies = Arc::new(bodies.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, url, bodies, next) = (http.clone(), url.clone(), bodies.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let mut failures = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                if !send(&http, &url, body).await {
                    failures += 1;
                }
                let _ = hist.record(t.elapsed().as_micros() as u64);
            }
            (hist, failures)
        }));
    }
    collect(workers, bodies.len(), started).await
}

/// Offers IPNs at a fixed rate for `duration`, whatever the answers' pace (open loop), so
/// that latency includes queueing.
async fn open_loop(app: &App, bodies: &[String], rate: f64, duration: Duration) -> Run {
    let http = client(256);
    let url = format!("{}/2checkout/ipn", app.url());
    let count = ((rate * duration.as_secs_f64()) as usize)
        .min(bodies.len())
        .max(1);
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for (i, body) in bodies.iter().take(count).enumerate() {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let t = Instant::now();
            let ok = send(&http, &url, &body).await;
            let _ = hist.record(t.elapsed().as_micros() as u64);
            (hist, usize::from(!ok))
        }));
    }
    collect(tasks, count, started).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<(Histogram<u64>, usize)>>,
    sent: usize,
    started: Instant,
) -> Run {
    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    let mut failures = 0;
    for t in tasks {
        if let Ok((h, f)) = t.await {
            let _ = latency.add(h);
            failures += f;
        }
    }
    Run {
        per_second: sent as f64 / started.elapsed().as_secs_f64(),
        latency,
        failures,
    }
}
