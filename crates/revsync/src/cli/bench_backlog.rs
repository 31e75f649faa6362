//! `revsync bench backlog`: resident memory while a large backlog waits for Salesforce, beside
//! the same process with nothing queued, and the drain rate once Salesforce is back.
//!
//! revsync runs as a child process (`revsync serve`, SQLite, the operator's configuration) so
//! the memory measured is its own; the Salesforce emulator and the traffic live in this
//! process. The backlog is written straight into the event log through the same
//! verification and append path ingest uses (`bench ingest` measures HTTP ingest); the child
//! takes it into its ledger and outbox while Salesforce answers 503.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use revsync::config::NotificationKeys;
use revsync::ingest::verify_delivery;
use revsync::store::{Engine, EventLog, Micros, OpenOptions, SqlStore};
use tco_emulator::sender::{Endpoints, SenderConfig};
use tco_emulator::{Generator, GeneratorConfig, ScenarioKind, Sender};
use twocheckout::signature::{Algorithm, SecretKey};

use crate::cli::harness::{child_config, free_port, print_log_tail, Instance, SECRET};

const CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// Deliveries appended per store transaction while queueing.
const APPEND_BATCH: usize = 2_000;
const MB: f64 = 1024.0 * 1024.0;

/// Resident set size and its high-water mark of a process, in bytes (Linux `/proc`).
fn memory_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Samples a process's RSS every 50 ms; keeps the highest value seen since the last `take`.
struct Sampler {
    pid: u32,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let peak = Arc::new(AtomicU64::new(0));
        let seen = peak.clone();
        let task = tokio::spawn(async move {
            while let Some((rss, _)) = memory_of(pid) {
                seen.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Sampler { pid, peak, task }
    }

    fn now(&self) -> u64 {
        memory_of(self.pid).map_or(0, |(rss, _)| rss)
    }

    /// The peak since the last call, and a fresh start.
    fn take(&self) -> u64 {
        self.peak.swap(self.now(), Ordering::Relaxed)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Appends `events` completed-order IPNs to the log as ingest would, printing the child's
/// memory at every tenth.
async fn queue(
    store: &SqlStore,
    events: usize,
    sampler: &Sampler,
    started: Instant,
) -> anyhow::Result<()> {
    let keys = NotificationKeys {
        secret_keys: vec![SecretKey::new(SECRET.as_bytes().to_vec())],
        ins_secret_word: None,
        minimum_algorithm: Algorithm::Sha256,
    };
    // The sender only signs here; nothing is sent.
    let signer = Sender::new(SenderConfig::new(
        Endpoints::single("http://127.0.0.1:9/unused"),
        SecretKey::new(SECRET.as_bytes().to_vec()),
    ))?;
    // Returning customers: four orders each on average.
    let mut generator = Generator::new(GeneratorConfig {
        customer_pool_size: (events / 4).max(1),
        ..GeneratorConfig::new(11)
    });
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    let mut queued = 0;
    let tenth = (events / 10).max(1);
    while queued < events {
        let Some(delivery) = generator.scenario(ScenarioKind::NewOrder).pop() else {
            continue;
        };
        let body = signer.prepare(&delivery, 0).to_urlencoded().into_bytes();
        let verified = verify_delivery(&keys, "ipn", Some(CONTENT_TYPE), &body)
            .map_err(|e| anyhow::anyhow!("a generated IPN was refused: {e}"))?;
        batch.push(verified.to_new_delivery(&body, CONTENT_TYPE, None, Micros::now()));
        queued += 1;
        if batch.len() == APPEND_BATCH || queued == events {
            store.append_deliveries(&batch).await?;
            batch.clear();
        }
        if queued % tenth == 0 {
            println!(
                "  {:>10} queued  {:>6.1} s   RSS {:>6.1} MB",
                queued,
                started.elapsed().as_secs_f64(),
                sampler.now() as f64 / MB
            );
        }
    }
    Ok(())
}

pub async fn run(events: usize, drain_secs: u64) -> anyhow::Result<()> {
    let emu_config = sf_emulator::EmulatorConfig::default();
    let emu = sf_emulator::spawn(emu_config.clone()).await?;
    let faults = emu.faults();
    faults.set_outage(true);

    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("backlog.db").display());
    let store = revsync::store::open(&url, &OpenOptions::default()).await?;
    let addr = free_port().await?;
    let config_path = dir.path().join("revsync.toml");
    std::fs::write(
        &config_path,
        child_config(addr, &url, &emu.url(), &emu_config),
    )
    .context("cannot write the child's configuration")?;
    let log_path = dir.path().join("revsync.log");
    let exe = std::env::current_exe().context("cannot find the revsync executable")?;
    let mut child = Instance::start(&exe, &config_path, &log_path, addr).await?;
    let pid = child.pid().context("the child has no pid")?;
    let sampler = Sampler::start(pid);

    println!("Backlog benchmark: {events} completed-order IPNs queued while Salesforce is down");
    println!(
        "  revsync serve (child pid {pid}, SQLite, log {})",
        log_path.display()
    );

    // Baseline: the same process, running, with nothing queued.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = sampler.take();

    let started = Instant::now();
    queue(&store, events, &sampler, started).await?;
    let queued_in = started.elapsed();
    // Wait until the child has taken every event into its ledger and outbox.
    let mut last_report = Instant::now();
    loop {
        let log = store.counts().await?;
        if log.pending == 0 {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            println!(
                "  {:>10} still to process  {:>6.1} s   RSS {:>6.1} MB",
                log.pending,
                started.elapsed().as_secs_f64(),
                sampler.now() as f64 / MB
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let processed_in = started.elapsed();
    let outbox = store.outbox_stats().await?;
    let backlog_peak = sampler.take();

    // Salesforce is back: how fast does the backlog drain?
    faults.set_outage(false);
    let calls_before = emu.calls().api_calls;
    let drain_started = Instant::now();
    let deadline = Duration::from_secs(drain_secs);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let outbox = store.outbox_stats().await?;
        if outbox.pending == 0 && outbox.in_flight == 0 {
            break;
        }
        if drain_started.elapsed() >= deadline {
            break;
        }
    }
    let drained_in = drain_started.elapsed().as_secs_f64();
    let drain_peak = sampler.take();
    let opportunities = emu.count("Opportunity");
    let records: usize = ["Account", "Contact", "Opportunity"]
        .iter()
        .map(|o| emu.count(o))
        .sum();
    let calls = emu.calls().api_calls - calls_before;
    let left = store.outbox_stats().await?;
    child.kill9().await?;

    let mb = |b: u64| b as f64 / MB;
    println!();
    println!("{:<58} {:>10} {:>8}", "phase", "peak RSS", "ratio");
    println!(
        "{:<58} {:>7.1} MB {:>8}",
        "idle, nothing queued (baseline)",
        mb(idle),
        "1.00"
    );
    println!(
        "{:<58} {:>7.1} MB {:>8.2}",
        format!("{events} events queued and taken into the outbox"),
        mb(backlog_peak),
        backlog_peak as f64 / idle.max(1) as f64
    );
    println!(
        "{:<58} {:>7.1} MB {:>8.2}",
        "draining into Salesforce",
        mb(drain_peak),
        drain_peak as f64 / idle.max(1) as f64
    );
    println!();
    println!(
        "queued in {:.1} s ({:.0} events/s appended); processed into {} pending intents by {:.1} s ({:.0} events/s)",
        queued_in.as_secs_f64(),
        events as f64 / queued_in.as_secs_f64(),
        outbox.pending,
        processed_in.as_secs_f64(),
        events as f64 / processed_in.as_secs_f64()
    );
    println!(
        "drain: {opportunities} orders ({records} records) in Salesforce after {drained_in:.1} s = {:.0} orders/s, {:.0} records/s, {calls} API calls ({:.1} per 1,000 orders); {} intents still pending{}",
        opportunities as f64 / drained_in,
        records as f64 / drained_in,
        calls as f64 * 1000.0 / opportunities.max(1) as f64,
        left.pending + left.in_flight,
        if left.pending + left.in_flight > 0 { format!(" (stopped at --drain-secs {drain_secs})") } else { String::new() }
    );
    println!("target: <= 150 MB RSS with 1,000,000 events queued");
    print_log_tail(&log_path);
    Ok(())
}
