//! `revsync harness`: the fault-injection harness (DESIGN §10, reliability).
//!
//! It runs revsync the way an operator does — `revsync serve` as a child process of this
//! binary, with a generated configuration — against an in-process Salesforce emulator, and
//! sends it realistic 2Checkout traffic (signed, receipt-checked, resent on failure). While
//! the load runs it, round after round:
//! - `kill -9`s the child mid-load and starts a new one on the same store and port;
//! - expires every Salesforce session, puts Salesforce in an outage, locks the rows the next
//!   orders will write (`UNABLE_TO_LOCK_ROW`), and uses up the org's daily API allocation
//!   for a moment;
//! - with `--postgres`, terminates every store connection of the child
//!   (`pg_terminate_backend`, restricted to this run's `application_name` so that nothing
//!   else using the database is touched).
//!
//! Then it lets the last child drain and checks the invariants against three sources: what
//! the generator sent and got a valid receipt for, the event log and ledger (through the
//! store's read API), and the records in the emulated org:
//! - every acknowledged notification is an event in the log, processed (lost = 0);
//! - no two records share an external id, no two Contacts share an e-mail (duplicates = 0);
//! - every completed order has its Opportunity (renewals and trials excepted: they are
//!   booked per subscription cycle and as Leads, under other keys), and every Opportunity
//!   keyed by an order reference carries the ledger's net amount to the minor unit;
//! - nothing is left in the outbox and nothing was dead-lettered.
//!
//! It prints the counts and exits 1 on any violation. Everything is bounded: the load has a
//! fixed size, every wait has a deadline, the child is killed when the harness ends, and it
//! listens on loopback only.
//!
//! The children run with short leases and retry timings (`[processor] lease_secs = 5`,
//! `[sink] lease_secs = 5`, backoff capped at 1 s) so that a bounded run sees every
//! takeover; the drain deadline allows for them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rust_decimal::Decimal;
use serde_json::Value;
use tco_emulator::sender::{Endpoints, Outcome, SenderConfig};
use tco_emulator::{Delivery, Generator, GeneratorConfig, RetrySchedule, Sender};
use tokio::process::{Child, Command};
use twocheckout::notification::Notification;
use twocheckout::signature::SecretKey;

use revsync::ledger::OrderRecord;
use revsync::store::{EventLog, EventStatus, OpenOptions};

#[derive(Args)]
pub struct HarnessArgs {
    /// Kill rounds: the child is `kill -9`ed this many times under load (and every
    /// Salesforce fault is injected in every round).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Notifications sent in total.
    #[arg(long, default_value_t = 2_000)]
    events: usize,
    /// Notifications per second offered by the 2Checkout emulator.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Run against this PostgreSQL database (a fresh schema is created in it) and terminate
    /// the store connections during the load; default: a SQLite file in a temporary directory.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Seed of the generated traffic.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Faults to inject, comma-separated (default: all): kill (kill -9 of revsync),
    /// sessions (expired Salesforce sessions), outage (Salesforce answers 503), locks
    /// (UNABLE_TO_LOCK_ROW on the next orders), limit (the org's daily API allocation used
    /// up), pg (store connections terminated; with --postgres).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kill,sessions,outage,locks,limit,pg"
    )]
    faults: Vec<Fault>,
    /// Longest wait for the last instance to process and write everything it acknowledged.
    #[arg(long, default_value_t = 60)]
    drain_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Fault {
    Kill,
    Sessions,
    Outage,
    Locks,
    Limit,
    Pg,
}

pub(crate) const SECRET: &str = "harness-secret-key";
const SECRET_WORD: &str = "harness-secret-word";
/// The children's event lease (`[processor] lease_secs`): an event leased by a killed child
/// is retaken after this long. Short, so a bounded run sees the takeover.
const PROCESSOR_LEASE: Duration = Duration::from_secs(5);

pub async fn run(args: HarnessArgs) -> anyhow::Result<ExitCode> {
    if args.events == 0 || !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--events and --rate must be positive");
    }
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let started = Instant::now();

    // Salesforce, emulated, in this process: the harness injects its faults directly.
    let emu_config = sf_emulator::EmulatorConfig {
        daily_api_limit: 1_000_000,
        ..sf_emulator::EmulatorConfig::default()
    };
    let emu = sf_emulator::spawn(emu_config.clone())
        .await
        .context("cannot start the Salesforce emulator")?;
    let faults = emu.faults();

    // The store the children share.
    let store_target = match &args.postgres {
        Some(base) => StoreTarget::postgres(base).await?,
        None => StoreTarget::Sqlite(format!(
            "sqlite://{}",
            dir.path().join("revsync.db").display()
        )),
    };

    // One port for every child, so 2Checkout's endpoint never changes.
    let addr = free_port().await?;
    let config_path = dir.path().join("revsync.toml");
    std::fs::write(
        &config_path,
        child_config(addr, store_target.url(), &emu.url(), &emu_config),
    )
    .context("cannot write the child's configuration")?;
    let log_path = dir.path().join("revsync.log");
    // Resolved once: a rebuild while the harness runs would otherwise leave a dangling path.
    let exe = std::env::current_exe().context("cannot find the revsync executable")?;
    let mut child = Instance::start(&exe, &config_path, &log_path, addr).await?;

    println!("revsync harness");
    println!(
        "  revsync (child)   http://{addr}   log {}",
        log_path.display()
    );
    println!("  salesforce        {}", emu.url());
    println!("  store             {}", store_target.describe());
    println!(
        "  load              {} notifications at {:.0}/s, {} kill rounds",
        args.events, args.rate, args.rounds
    );

    // The traffic, generated up front so the checker knows exactly what was offered.
    let mut generator = Generator::new(GeneratorConfig::new(args.seed));
    let mut scenarios: Vec<Vec<Delivery>> = Vec::new();
    let mut total = 0;
    while total < args.events {
        let kind = generator.random_kind();
        let s = generator.scenario(kind);
        total += s.len();
        scenarios.push(s);
    }
    let sender = Sender::new(sender_config(addr))?;
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(send_all(
        sender.clone(),
        scenarios.clone(),
        args.rate,
        progress.clone(),
    ));

    // Faults, spread over the load: round r acts once (r+1)/(rounds+1) of it went out.
    let mut kills = 0;
    let mut pg_terminations = 0u64;
    for round in 0..args.rounds {
        let target = total * (round + 1) / (args.rounds + 1);
        wait_progress(&progress, target, &load).await;
        let on = |f: Fault| args.faults.contains(&f);
        let mut done = Vec::new();
        // Salesforce faults first, so that the child is busy retrying when it dies.
        if on(Fault::Sessions) {
            faults.expire_sessions();
            done.push("sessions expired".to_owned());
        }
        if on(Fault::Outage) {
            faults.outage(Duration::from_millis(1_500));
            done.push("1.5 s outage".to_owned());
        }
        if on(Fault::Locks) {
            let refs = upcoming_references(&scenarios, target, 8);
            for reference in &refs {
                faults.lock_record(reference, 3);
            }
            done.push(format!("{} rows locked", refs.len()));
        }
        if on(Fault::Limit) {
            faults.set_api_usage(emu_config.daily_api_limit);
            done.push("daily limit hit".to_owned());
        }
        if let (
            true,
            StoreTarget::Postgres {
                admin, app_name, ..
            },
        ) = (on(Fault::Pg), &store_target)
        {
            let n = terminate_backends(admin, app_name).await?;
            pg_terminations += n;
            done.push(format!("{n} store connections terminated"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if on(Fault::Kill) {
            child.kill9().await?;
            kills += 1;
            child = Instance::start(&exe, &config_path, &log_path, addr).await?;
            done.push("kill -9 and restart".to_owned());
        } else {
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        if on(Fault::Limit) {
            faults.set_api_usage(0);
        }
        println!(
            "  round {} at {} of {} sent: {}",
            round + 1,
            progress.load(Ordering::Relaxed),
            total,
            done.join(", ")
        );
    }
    let reports = load.await.context("the load task failed")?;
    faults.clear();
    faults.set_api_usage(0);
    println!(
        "  load done in {:.1} s; draining",
        started.elapsed().as_secs_f64()
    );

    // The last instance finishes what was acknowledged.
    let store = revsync::store::open(store_target.url(), &OpenOptions::default())
        .await
        .context("cannot open the store to check it")?;
    let deadline = Duration::from_secs(args.drain_timeout_secs).max(PROCESSOR_LEASE * 3);
    let drained = drain(&store, deadline).await?;
    let verdict = check(&store, &emu, &sender, &scenarios, &reports).await?;
    child.kill9().await?;
    emu.shutdown().await;
    if let StoreTarget::Postgres { admin, schema, .. } = &store_target {
        drop_schema(admin, schema).await;
    }

    println!(
        "\nharness results after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("  kill -9 rounds              {kills:>8}");
    if store_target.is_postgres() {
        println!("  store connections killed    {pg_terminations:>8}");
    }
    verdict.print();
    if !drained {
        println!("  VIOLATION: not drained within {} s", deadline.as_secs());
    }
    if !drained {
        use revsync::store::Engine;
        if let Ok(budget) = store.api_budget(revsync::store::Micros::now()).await {
            println!("  API budget as the store sees it: {budget:?}");
        }
    }
    Ok(if verdict.violations.is_empty() && drained {
        println!("OK: nothing acknowledged was lost, nothing duplicated, amounts exact");
        ExitCode::SUCCESS
    } else {
        println!(
            "FAILED: {} violation(s)",
            verdict.violations.len() + usize::from(!drained)
        );
        print_log_tail(&log_path);
        let kept = dir.keep();
        println!("  kept for inspection: {}", kept.display());
        ExitCode::from(1)
    })
}

/// The distinct lines of the children's log, most frequent first (the log holds warnings
/// and errors only).
pub(crate) fn print_log_tail(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // Drop the timestamp so that repeats group together.
        let line = line.split_once(' ').map(|(_, rest)| rest).unwrap_or(line);
        let line: String = line.chars().take(240).collect();
        *counts.entry(line).or_default() += 1;
    }
    let mut lines: Vec<_> = counts.into_iter().collect();
    lines.sort_by_key(|l| std::cmp::Reverse(l.1));
    println!("  child log (distinct lines, most frequent first):");
    for (line, n) in lines.into_iter().take(15) {
        println!("    {n:>5} × {line}");
    }
}

/// Where the children keep their state.
enum StoreTarget {
    Sqlite(String),
    Postgres {
        /// The store URL the children use (fresh schema, tagged application name).
        url: String,
        /// The URL given on the command line (for administration).
        admin: String,
        schema: String,
        app_name: String,
    },
}

impl StoreTarget {
    async fn postgres(base: &str) -> anyhow::Result<StoreTarget> {
        use sqlx::Connection;
        let tag = random_tag();
        let schema = format!("harness_{tag}");
        let app_name = format!("revsync-harness-{tag}");
        let mut conn = sqlx::PgConnection::connect(base)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {base}"))?;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .context("cannot create the harness schema")?;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url =
            format!("{base}{sep}application_name={app_name}&options=-c%20search_path%3D{schema}");
        Ok(StoreTarget::Postgres {
            url,
            admin: base.to_owned(),
            schema,
            app_name,
        })
    }

    fn url(&self) -> &str {
        match self {
            StoreTarget::Sqlite(url) => url,
            StoreTarget::Postgres { url, .. } => url,
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(self, StoreTarget::Postgres { .. })
    }

    fn describe(&self) -> String {
        match self {
            StoreTarget::Sqlite(url) => url.clone(),
            StoreTarget::Postgres { schema, .. } => format!("PostgreSQL, schema {schema}"),
        }
    }
}

fn random_tag() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..12)
        .map(|_| char::from(b'a' + rng.gen_range(0..26)))
        .collect()
}

/// Terminates every connection of this run's children; returns how many.
async fn terminate_backends(admin: &str, app_name: &str) -> anyhow::Result<u64> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    let rows = sqlx::query(
        "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
           AND application_name = $1",
    )
    .bind(app_name)
    .fetch_all(&mut conn)
    .await
    .context("pg_terminate_backend failed")?;
    Ok(rows
        .iter()
        .filter(|r| r.try_get::<bool, _>("killed").unwrap_or(false))
        .count() as u64)
}

async fn drop_schema(admin: &str, schema: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await;
    }
}

pub(crate) async fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?)
}

/// The configuration an operator would write for this setup, with short retry timings so
/// that a bounded run sees the recoveries.
pub(crate) fn child_config(
    addr: SocketAddr,
    store_url: &str,
    emulator_url: &str,
    emu: &sf_emulator::EmulatorConfig,
) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    format!(
        r#"# Generated by `revsync harness`.
[server]
listen = {listen}
request_timeout_secs = 10

[store]
url = {store}

[twocheckout]
secret_key = {{ value = {secret} }}
ins_secret_word = {{ value = {word} }}
minimum_algorithm = "sha256"

[salesforce]
instance_url = {instance}
auth = "client_credentials"
client_id = {client_id}
client_secret = {{ value = {client_secret} }}
request_timeout_secs = 5

[processor]
lease_secs = {processor_lease}

[sink]
linger_ms = 100
lease_secs = 5
backoff_base_ms = 20
backoff_cap_secs = 1
"#,
        listen = q(&addr.to_string()),
        store = q(store_url),
        secret = q(SECRET),
        word = q(SECRET_WORD),
        instance = q(emulator_url),
        client_id = q(&emu.client_id),
        client_secret = q(&emu.client_secret),
        processor_lease = PROCESSOR_LEASE.as_secs(),
    )
}

fn sender_config(addr: SocketAddr) -> SenderConfig {
    let base = format!("http://{addr}/2checkout");
    let mut cfg = SenderConfig::new(
        Endpoints {
            ipn: format!("{base}/ipn"),
            lcn: format!("{base}/lcn"),
            ins: format!("{base}/ins"),
        },
        SecretKey::new(SECRET.as_bytes().to_vec()),
    );
    cfg.secret_word = SecretKey::new(SECRET_WORD.as_bytes().to_vec());
    // Resends close together (2Checkout's own schedule is minutes to hours apart): about
    // 25 s of trying, enough to outlive a restart; what still fails is "not acknowledged".
    cfg.schedule = RetrySchedule::from_offsets(
        [
            0, 300, 800, 1_500, 2_500, 4_000, 6_000, 9_000, 13_000, 18_000, 25_000,
        ]
        .into_iter()
        .map(Duration::from_millis)
        .collect(),
    );
    cfg.time_compression = 1.0;
    cfg.request_timeout = Duration::from_secs(15);
    cfg.max_in_flight = 16;
    cfg
}

/// Sends every scenario (its notifications in order; scenarios overlap), starting one
/// notification's worth every `1/rate` seconds. Returns one report per notification, in
/// the order of `scenarios` flattened.
async fn send_all(
    sender: Sender,
    scenarios: Vec<Vec<Delivery>>,
    rate: f64,
    progress: Arc<AtomicUsize>,
) -> Vec<tco_emulator::DeliveryReport> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = Vec::with_capacity(scenarios.len());
    for scenario in scenarios {
        for _ in 0..scenario.len() {
            tick.tick().await;
        }
        let (sender, progress) = (sender.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(scenario.len());
            for d in &scenario {
                progress.fetch_add(1, Ordering::Relaxed);
                out.push(sender.deliver(d).await);
            }
            out
        }));
    }
    let mut reports = Vec::new();
    for t in tasks {
        // A panicked task would lose its reports: the checker then counts them as sent and
        // not acknowledged, which hides nothing.
        if let Ok(r) = t.await {
            reports.extend(r);
        }
    }
    reports
}

async fn wait_progress(
    progress: &AtomicUsize,
    target: usize,
    load: &tokio::task::JoinHandle<Vec<tco_emulator::DeliveryReport>>,
) {
    while progress.load(Ordering::Relaxed) < target && !load.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// External-id values of the orders about to be sent (`REFNO` keys the Opportunity).
fn upcoming_references(scenarios: &[Vec<Delivery>], from: usize, n: usize) -> Vec<String> {
    let mut seen = BTreeSet::new();
    scenarios
        .iter()
        .flatten()
        .skip(from)
        .filter(|d| d.kind == twocheckout::Kind::Ipn)
        .map(|d| d.reference.clone())
        .filter(|r| seen.insert(r.clone()))
        .take(n)
        .collect()
}

/// A running child (`revsync serve`).
pub(crate) struct Instance {
    child: Child,
}

impl Instance {
    pub(crate) async fn start(
        exe: &Path,
        config: &Path,
        log: &PathBuf,
        addr: SocketAddr,
    ) -> anyhow::Result<Instance> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .context("cannot open the child's log")?;
        let child = Command::new(exe)
            .arg("--config")
            .arg(config)
            .arg("serve")
            // REVSYNC_CHILD_LOG sets the child's log filter when investigating a run (e.g.
            // `sqlx::query=debug` for every statement with its time).
            .env(
                "RUST_LOG",
                std::env::var("REVSYNC_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("cannot start `revsync serve`")?;
        let mut instance = Instance { child };
        instance.wait_ready(addr).await?;
        Ok(instance)
    }

    async fn wait_ready(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("http://{addr}/healthz");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("`revsync serve` exited at start with {status}; see its log");
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("`revsync serve` did not answer {url} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs in the child.
    pub(crate) async fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.start_kill().context("kill -9 failed")?;
        self.child.wait().await?;
        Ok(())
    }
}

/// Waits until no event is pending and the outbox is empty; false at the deadline.
async fn drain(store: &revsync::store::SqlStore, deadline: Duration) -> anyhow::Result<bool> {
    use revsync::store::Engine;
    let until = Instant::now() + deadline;
    loop {
        // The store may be briefly unavailable (a terminated connection): try again.
        if let (Ok(log), Ok(outbox)) = (store.counts().await, store.outbox_stats().await) {
            if log.pending == 0 && outbox.pending == 0 && outbox.in_flight == 0 {
                return Ok(true);
            }
        }
        if Instant::now() > until {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the checker found.
#[derive(Default)]
struct Verdict {
    sent: usize,
    acknowledged: usize,
    acknowledged_events: usize,
    events: i64,
    processed: i64,
    lost: usize,
    unprocessed: usize,
    records: BTreeMap<String, usize>,
    duplicates: BTreeMap<String, usize>,
    opportunities_checked: usize,
    amount_mismatches: usize,
    missing_opportunities: usize,
    dead_letters: i64,
    violations: Vec<String>,
}

impl Verdict {
    fn print(&self) {
        let dup: usize = self.duplicates.values().sum();
        println!("  events sent                 {:>8}", self.sent);
        println!("  acknowledged (receipt ok)   {:>8}", self.acknowledged);
        println!(
            "    distinct events           {:>8}",
            self.acknowledged_events
        );
        println!("  events in the log           {:>8}", self.events);
        println!("  events processed            {:>8}", self.processed);
        println!("  Salesforce records");
        for (sobject, n) in &self.records {
            println!("    {sobject:<24}  {n:>8}");
        }
        println!(
            "  amounts checked             {:>8}  (Opportunity.Amount = ledger net)",
            self.opportunities_checked
        );
        println!(
            "  amount mismatches           {:>8}",
            self.amount_mismatches
        );
        println!(
            "  completed orders missing    {:>8}",
            self.missing_opportunities
        );
        println!("  dead letters                {:>8}", self.dead_letters);
        println!("  duplicates                  {dup:>8}");
        println!("  lost                        {:>8}", self.lost);
        println!("  acknowledged, unprocessed   {:>8}", self.unprocessed);
        for v in self.violations.iter().take(20) {
            println!("  VIOLATION: {v}");
        }
        if self.violations.len() > 20 {
            println!("  … and {} more", self.violations.len() - 20);
        }
    }
}

/// Compares the generator's acknowledged deliveries, the store and the emulated org.
async fn check(
    store: &revsync::store::SqlStore,
    emu: &sf_emulator::Emulator,
    sender: &Sender,
    scenarios: &[Vec<Delivery>],
    reports: &[tco_emulator::DeliveryReport],
) -> anyhow::Result<Verdict> {
    use revsync::store::{Engine, Queries};
    let mut v = Verdict {
        sent: reports.len(),
        ..Verdict::default()
    };

    // 1. Every acknowledged notification is a processed event.
    let mut events: BTreeMap<String, EventStatus> = BTreeMap::new();
    let mut before = None;
    loop {
        let page = store.recent_events(before, 500).await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        for e in page {
            events.insert(e.fingerprint, e.status);
        }
    }
    v.events = events.len() as i64;
    v.processed = events
        .values()
        .filter(|s| **s == EventStatus::Processed)
        .count() as i64;
    let mut acked = BTreeMap::new();
    for (d, r) in scenarios.iter().flatten().zip(reports) {
        if r.outcome != Outcome::Delivered {
            continue;
        }
        v.acknowledged += 1;
        let form = sender.prepare(d, 0);
        let fingerprint = Notification::parse(d.kind, &form)
            .with_context(|| format!("generated {} {} does not parse", d.kind, d.reference))?
            .fingerprint();
        acked.insert(fingerprint, (d.kind, d.reference.clone()));
    }
    v.acknowledged_events = acked.len();
    for (fingerprint, (kind, reference)) in &acked {
        match events.get(fingerprint) {
            None => {
                v.lost += 1;
                v.violations.push(format!(
                    "acknowledged {kind} {reference} is not in the event log"
                ));
            }
            Some(EventStatus::Processed) => {}
            Some(other) => {
                v.unprocessed += 1;
                v.violations.push(format!(
                    "acknowledged {kind} {reference} is {}",
                    other.as_str()
                ));
            }
        }
    }

    // 2. No duplicate record in the org.
    for sobject in ["Account", "Contact", "Opportunity", "Case", "Task", "Lead"] {
        v.records
            .insert(sobject.to_owned(), emu.records(sobject).len());
    }
    for (sobject, field) in [
        ("Account", "TwoCheckout_Customer_Ref__c"),
        ("Contact", "TwoCheckout_Customer_Ref__c"),
        ("Contact", "Email"),
        ("Opportunity", "TwoCheckout_Order_Ref__c"),
        ("Case", "TwoCheckout_Event_Key__c"),
        ("Task", "TwoCheckout_Event_Key__c"),
        ("Lead", "TwoCheckout_Trial_Ref__c"),
    ] {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for r in emu.records(sobject) {
            if let Some(value) = r[field].as_str().filter(|s| !s.is_empty()) {
                *seen.entry(value.to_lowercase()).or_default() += 1;
            }
        }
        let extra: usize = seen.values().map(|n| n - 1).sum();
        if extra > 0 {
            v.violations
                .push(format!("{extra} duplicate {sobject} record(s) by {field}"));
        }
        v.duplicates.insert(format!("{sobject}.{field}"), extra);
    }

    // 3. Amounts to the minor unit, and no completed order without its Opportunity.
    let opportunities: BTreeMap<String, Value> = emu
        .records("Opportunity")
        .into_iter()
        .filter_map(|r| {
            let key = r["TwoCheckout_Order_Ref__c"].as_str()?.to_owned();
            Some((key, r))
        })
        .collect();
    for record in store
        .ledger_records_of_kind(revsync::pipeline::ORDER)
        .await?
    {
        let order: OrderRecord = serde_json::from_str(&record.body)
            .with_context(|| format!("ledger order {} does not parse", record.key))?;
        let Some(opp) = opportunities.get(&order.refno) else {
            // Renewals are booked per subscription cycle and trials as Leads (the
            // subscriptions and trials flows), under other keys.
            let by_refno = order.renewal != Some(true) && order.trial != Some(true);
            if order.is_completed() && !order.test && by_refno {
                v.missing_opportunities += 1;
                v.violations.push(format!(
                    "completed order {} has no Opportunity",
                    order.refno
                ));
            }
            continue;
        };
        v.opportunities_checked += 1;
        // Single-currency org: Amount is the net in the base currency, Original_Amount__c
        // the net in the order currency.
        let expected = [
            ("Amount", order.fx.as_ref().and_then(|f| f.net)),
            ("Original_Amount__c", order.net),
        ];
        for (field, want) in expected {
            let got = decimal_of(&opp[field]);
            if got != want {
                v.amount_mismatches += 1;
                v.violations.push(format!(
                    "Opportunity {} {field} = {} but the ledger says {}",
                    order.refno,
                    opp[field],
                    want.map(|d| d.to_string()).unwrap_or_else(|| "none".into())
                ));
            }
        }
    }

    // 4. Nothing stuck or given up.
    let outbox = store.outbox_stats().await?;
    v.dead_letters = outbox.dead_letters_open;
    if outbox.dead_letters_open > 0 {
        let open = Some(revsync::store::DeadLetterStatus::Open);
        for dl in store.dead_letters(open, 10).await.unwrap_or_default() {
            v.violations.push(format!(
                "dead letter {} {:?}: {} {}",
                dl.intent.sobject, dl.intent.key, dl.error_code, dl.message
            ));
        }
    }
    if outbox.pending + outbox.in_flight > 0 {
        v.violations.push(format!(
            "{} record write(s) still queued",
            outbox.pending + outbox.in_flight
        ));
    }
    Ok(v)
}

/// A JSON number (or null) as an exact decimal.
fn decimal_of(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => Decimal::from_str(&n.to_string())
            .or_else(|_| Decimal::from_scientific(&n.to_string()))
            .ok(),
        Value::String(s) => Decimal::from_str(s).ok(),
        _ => None,
    }
}
