//! `revsync bench calls`: Salesforce API calls per order event, revsync against a naive
//! per-event integration, both counted by the Salesforce emulator in the same run.

use std::time::{Duration, Instant};

use revsync::app::App;
use revsync::config::{Config, SecretRef};
use salesforce::soql;
use serde_json::{json, Value};
use tco_emulator::sender::{Endpoints, SenderConfig};
use tco_emulator::{Generator, GeneratorConfig, ScenarioKind, Sender};
use tokio_util::sync::CancellationToken;
use twocheckout::form::FormBody;
use twocheckout::signature::SecretKey;

const SECRET: &str = "bench-secret-key";

/// `events` completed-order IPNs, one per customer.
fn completed_orders(events: usize, seed: u64) -> Vec<tco_emulator::Delivery> {
    let mut g = Generator::new(GeneratorConfig {
        customer_pool_size: events * 2,
        ..GeneratorConfig::new(seed)
    });
    let mut out = Vec::with_capacity(events);
    while out.len() < events {
        if let Some(complete) = g.scenario(ScenarioKind::NewOrder).pop() {
            out.push(complete);
        }
    }
    out
}

struct Run {
    events: usize,
    api_calls: u64,
    elapsed: Duration,
}

async fn revsync_run(
    deliveries: &[tco_emulator::Delivery],
    linger_ms: u64,
    pace: Option<Duration>,
) -> anyhow::Result<Run> {
    let emu_config = sf_emulator::EmulatorConfig::default();
    let emu = sf_emulator::spawn(emu_config.clone()).await?;
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.store.url = format!("sqlite://{}", dir.path().join("bench.db").display());
    config.twocheckout.secret_key = Some(SecretRef::Value(SECRET.into()));
    config.salesforce.instance_url = Some(emu.url());
    config.salesforce.client_id = Some(emu_config.client_id.clone());
    config.salesforce.client_secret = Some(SecretRef::Value(emu_config.client_secret.clone()));
    config.sink.linger_ms = linger_ms;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let shutdown = CancellationToken::new();
    let app = App::start(&config, listener, shutdown.clone()).await?;
    let mut sender_config = SenderConfig::new(
        Endpoints::single(&format!("{}/2checkout/ipn", app.url())),
        SecretKey::new(SECRET.as_bytes().to_vec()),
    );
    sender_config.max_in_flight = 32;
    let sender = Sender::new(sender_config)?;
    let started = Instant::now();
    match pace {
        None => {
            let reports = sender.run(deliveries.to_vec(), None).await;
            anyhow::ensure!(
                reports.iter().all(|r| r.receipt_valid),
                "a delivery was not acknowledged"
            );
        }
        Some(gap) => {
            for d in deliveries {
                anyhow::ensure!(sender.deliver(d).await.receipt_valid, "not acknowledged");
                tokio::time::sleep(gap).await;
            }
        }
    }
    // Wait until everything is in Salesforce.
    loop {
        let log = app.store.counts().await?;
        let outbox = app.store.outbox_stats().await?;
        if log.pending == 0 && outbox.pending == 0 && outbox.in_flight == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "did not settle"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let opportunities = emu.records("Opportunity").len();
    if opportunities != deliveries.len() {
        let dead: Vec<String> = app
            .store
            .dead_letters(None, 10)
            .await?
            .into_iter()
            .map(|d| {
                format!(
                    "{} {}: {} {}",
                    d.intent.sobject,
                    d.intent.key.value(),
                    d.error_code,
                    d.message
                )
            })
            .collect();
        let review = app.store.identities_by_source("review").await?.len();
        let log = app.store.counts().await?;
        anyhow::bail!(
            "expected {} Opportunities, found {opportunities}; {log:?}; held for review: {review}; dead letters: {dead:?}",
            deliveries.len()
        );
    }
    let api_calls = emu.calls().api_calls;
    shutdown.cancel();
    app.wait().await?;
    Ok(Run {
        events: deliveries.len(),
        api_calls,
        elapsed,
    })
}

/// What a typical hand-built integration does per event: for each of Account, Contact and
/// Opportunity, look the record up by a key, then create it or update it.
async fn naive_run(deliveries: &[tco_emulator::Delivery]) -> anyhow::Result<Run> {
    let emu_config = sf_emulator::EmulatorConfig::default();
    let emu = sf_emulator::spawn(emu_config.clone()).await?;
    let client = salesforce::Client::builder(salesforce::Credentials::ClientCredentials(
        salesforce::auth::ClientCredentials::new(
            emu_config.client_id.clone(),
            emu_config.client_secret.clone(),
            emu.url(),
        ),
    ))
    .build()?;
    let started = Instant::now();
    for d in deliveries {
        let f: &FormBody = &d.form;
        let email = f
            .get("CUSTOMEREMAIL")
            .unwrap_or("unknown@example.com")
            .to_lowercase();
        let last = f
            .get("LASTNAME")
            .filter(|s| !s.is_empty())
            .unwrap_or("Customer");
        let company = f.get("COMPANY").filter(|s| !s.is_empty()).unwrap_or(last);
        let refno = f.get("REFNO").unwrap_or_default();
        let amount: f64 = f
            .get("IPN_TOTALGENERAL")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0.0);
        let account = naive_upsert(
            &client,
            "Account",
            "TwoCheckout_Customer_Ref__c",
            &email,
            json!({"Name": company}),
        )
        .await?;
        naive_upsert(
            &client,
            "Contact",
            "TwoCheckout_Customer_Ref__c",
            &email,
            json!({"LastName": last, "Email": email, "AccountId": account}),
        )
        .await?;
        naive_upsert(
            &client,
            "Opportunity",
            "TwoCheckout_Order_Ref__c",
            refno,
            json!({"Name": format!("Order {refno}"), "StageName": "Closed Won",
                   "CloseDate": "2026-11-30", "Amount": amount, "AccountId": account}),
        )
        .await?;
    }
    Ok(Run {
        events: deliveries.len(),
        api_calls: emu.calls().api_calls,
        elapsed: started.elapsed(),
    })
}

async fn naive_upsert(
    client: &salesforce::Client,
    sobject: &str,
    key_field: &str,
    key: &str,
    mut body: Value,
) -> anyhow::Result<String> {
    let found: salesforce::query::QueryPage<Value> = client
        .query(&format!(
            "SELECT Id FROM {sobject} WHERE {key_field} = {} LIMIT 1",
            soql::quote(key)
        ))
        .await?;
    if let Some(id) = found.records.first().and_then(|r| r["Id"].as_str()) {
        client.update(sobject, id, &body).await?;
        Ok(id.to_owned())
    } else {
        body[key_field] = Value::String(key.to_owned());
        Ok(client.create(sobject, &body).await?.id)
    }
}

pub async fn run(events: usize, trickle: usize) -> anyhow::Result<()> {
    println!("API-call benchmark: {events} completed orders (Account + Contact + Opportunity each), Salesforce emulator");
    let burst = completed_orders(events, 7);
    let naive = naive_run(&burst).await?;
    let revsync = revsync_run(&burst, 1_000, None).await?;
    let linger = Duration::from_millis(200);
    let trickle_events = completed_orders(trickle, 8);
    // One event every 1.5 linger windows: at most one call per window is the target.
    let slow = revsync_run(
        &trickle_events,
        linger.as_millis() as u64,
        Some(linger * 3 / 2),
    )
    .await?;
    let per_1000 = |r: &Run| r.api_calls as f64 * 1000.0 / r.events as f64;
    println!();
    println!(
        "{:<52} {:>8} {:>10} {:>12}",
        "run", "events", "API calls", "per 1,000"
    );
    println!(
        "{:<52} {:>8} {:>10} {:>12.1}",
        "naive per-event integration (look up, then write)",
        naive.events,
        naive.api_calls,
        per_1000(&naive)
    );
    println!(
        "{:<52} {:>8} {:>10} {:>12.1}",
        "revsync, burst (linger 1 s)",
        revsync.events,
        revsync.api_calls,
        per_1000(&revsync)
    );
    let windows = (slow.elapsed.as_secs_f64() / linger.as_secs_f64()).ceil();
    println!(
        "{:<52} {:>8} {:>10} {:>12.1}",
        format!("revsync, trickle (1 event / 300 ms, linger 200 ms)"),
        slow.events,
        slow.api_calls,
        per_1000(&slow)
    );
    println!();
    println!(
        "burst: {:.1}x fewer calls than naive (target: <= 15 per 1,000); trickle: {:.2} calls per linger window over {windows:.0} windows (target: <= 1)",
        per_1000(&naive) / per_1000(&revsync).max(0.001),
        slow.api_calls as f64 / windows
    );
    println!(
        "(burst wall time {:.1} s; naive {:.1} s)",
        revsync.elapsed.as_secs_f64(),
        naive.elapsed.as_secs_f64()
    );
    Ok(())
}
