//! `revsync demo`: everything embedded — a SQLite store, the Salesforce emulator, the
//! 2Checkout emulator sending a realistic, continuous mix of notifications — running the
//! real pipeline, until Ctrl-C or `--for SECONDS`; then a summary of what happened.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use revsync::app::App;
use revsync::config::{Config, SecretRef};
use tco_emulator::sender::{Endpoints, Outcome, SenderConfig};
use tco_emulator::{Generator, GeneratorConfig, RetrySchedule, Sender};
use tokio_util::sync::CancellationToken;
use twocheckout::signature::SecretKey;

#[derive(Args)]
pub struct DemoArgs {
    /// Stop by itself after this many seconds (default: run until Ctrl-C).
    #[arg(long = "for", value_name = "SECONDS")]
    for_secs: Option<u64>,
    /// Business scenarios per second sent by the 2Checkout emulator (each is 1–3
    /// notifications).
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Where revsync listens (dashboard, webhooks, metrics).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Seed of the generated traffic (same seed, same traffic).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Emulate a multi-currency org.
    #[arg(long)]
    multi_currency: bool,
}

const DEMO_SECRET: &str = "demo-secret-key";
const DEMO_WORD: &str = "demo-secret-word";

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let shutdown = CancellationToken::new();

    // The Salesforce org, emulated.
    let emu_config = sf_emulator::EmulatorConfig {
        multi_currency: args.multi_currency,
        active_currencies: ["EUR", "GBP", "JPY", "BHD", "BRL", "RON", "CAD", "AUD"]
            .map(String::from)
            .to_vec(),
        ..sf_emulator::EmulatorConfig::default()
    };
    let emu = sf_emulator::spawn(emu_config.clone())
        .await
        .context("cannot start the Salesforce emulator")?;

    // revsync, configured as an operator would, pointed at it.
    let mut config = Config::default();
    config.server.listen = args.listen;
    config.store.url = format!("sqlite://{}", dir.path().join("revsync.db").display());
    config.twocheckout.secret_key = Some(SecretRef::Value(DEMO_SECRET.into()));
    config.twocheckout.ins_secret_word = Some(SecretRef::Value(DEMO_WORD.into()));
    config.salesforce.instance_url = Some(emu.url());
    config.salesforce.client_id = Some(emu_config.client_id.clone());
    config.salesforce.client_secret = Some(SecretRef::Value(emu_config.client_secret.clone()));
    config.flows.multi_currency = args.multi_currency;
    let listener = App::bind(&config).await?;
    let app = App::start(&config, listener, shutdown.clone()).await?;
    println!("revsync demo");
    println!(
        "  revsync        {}   (webhooks /2checkout/ipn|lcn|ins, /metrics, /healthz)",
        app.url()
    );
    println!("  dashboard      {}/dashboard", app.url());
    println!(
        "  salesforce     {}   (emulated org; /__admin/records/Opportunity)",
        emu.url()
    );
    println!(
        "  traffic        {:.1} scenarios/s from the 2Checkout emulator{}",
        args.rate,
        args.for_secs
            .map(|s| format!(", for {s} s"))
            .unwrap_or_else(|| ", Ctrl-C to stop".into())
    );

    // 2Checkout, emulated: a continuous, realistic mix, signed and receipt-checked.
    let mut sender_config = SenderConfig::new(
        Endpoints {
            ipn: format!("{}/2checkout/ipn", app.url()),
            lcn: format!("{}/2checkout/lcn", app.url()),
            ins: format!("{}/2checkout/ins", app.url()),
        },
        SecretKey::new(DEMO_SECRET.as_bytes().to_vec()),
    );
    sender_config.secret_word = SecretKey::new(DEMO_WORD.as_bytes().to_vec());
    sender_config.schedule = RetrySchedule::twocheckout().truncated(5);
    sender_config.time_compression = 3600.0;
    let sender = Sender::new(sender_config)?;
    let sent = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (sent, acked, stop) = (sent.clone(), acked.clone(), shutdown.child_token());
        let mut generator = Generator::new(GeneratorConfig::new(args.seed));
        let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            let mut in_flight = tokio::task::JoinSet::new();
            while !stop.is_cancelled() {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let kind = generator.random_kind();
                let deliveries = generator.scenario(kind);
                let (sender, sent, acked) = (sender.clone(), sent.clone(), acked.clone());
                // One scenario's notifications go in order, scenarios overlap.
                in_flight.spawn(async move {
                    for d in deliveries {
                        sent.fetch_add(1, Ordering::Relaxed);
                        if sender.deliver(&d).await.outcome == Outcome::Delivered {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                while in_flight.try_join_next().is_some() {}
            }
            while in_flight.join_next().await.is_some() {}
        })
    };

    let started = Instant::now();
    match args.for_secs {
        Some(secs) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    println!("\nstopping traffic; letting revsync finish what it acknowledged …");
    traffic.abort();
    let _ = traffic.await;
    // Everything acknowledged must reach Salesforce: wait for the pipeline to settle.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = app.store.counts().await?;
        let outbox = app.store.outbox_stats().await?;
        if (log.pending == 0 && outbox.pending == 0 && outbox.in_flight == 0)
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let log = app.store.counts().await?;
    let outbox = app.store.outbox_stats().await?;
    let totals = app.store.write_totals().await?;
    let calls = emu.calls();
    let duplicates = duplicates_in(&emu);
    println!("\nsummary after {:.0} s", started.elapsed().as_secs_f64());
    println!(
        "  notifications sent          {:>8}",
        sent.load(Ordering::Relaxed)
    );
    println!(
        "  acknowledged (receipt ok)   {:>8}",
        acked.load(Ordering::Relaxed)
    );
    println!("  deliveries kept             {:>8}", log.deliveries);
    println!("  events (after dedup)        {:>8}", log.events);
    println!("  events processed            {:>8}", log.processed);
    println!("  events failed               {:>8}", log.failed);
    println!("  Salesforce records          created  updated");
    for (sobject, created, updated) in &totals {
        println!("    {sobject:<24} {created:>8} {updated:>8}");
    }
    println!("  Salesforce API calls        {:>8}", calls.api_calls);
    for (resource, n) in &calls.per_resource {
        println!("    {resource:<24} {n:>8}");
    }
    println!(
        "  dead letters                {:>8}",
        outbox.dead_letters_open
    );
    println!(
        "  still queued                {:>8}",
        outbox.pending + outbox.in_flight
    );
    println!(
        "  duplicates in Salesforce    {:>8}",
        duplicates.values().sum::<usize>()
    );
    for (what, n) in duplicates.iter().filter(|(_, n)| **n > 0) {
        println!("    {what}: {n}");
    }

    shutdown.cancel();
    app.wait().await?;
    emu.shutdown().await;
    Ok(if duplicates.values().all(|n| *n == 0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Records in the emulated org that share an external id, or Contacts sharing an email.
fn duplicates_in(emu: &sf_emulator::Emulator) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (sobject, field) in [
        ("Account", "TwoCheckout_Customer_Ref__c"),
        ("Contact", "TwoCheckout_Customer_Ref__c"),
        ("Contact", "Email"),
        ("Opportunity", "TwoCheckout_Order_Ref__c"),
        ("Case", "TwoCheckout_Event_Key__c"),
    ] {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for r in emu.records(sobject) {
            if let Some(v) = r[field].as_str().filter(|v| !v.is_empty()) {
                *seen.entry(v.to_lowercase()).or_default() += 1;
            }
        }
        let extra: usize = seen.values().map(|n| n - 1).sum();
        out.insert(format!("{sobject} by {field}"), extra);
    }
    out
}
