//! `revsync bench calls`: Salesforce API calls per order event and end-to-end latency (IPN
//! sent → Opportunity created), revsync against a naive per-event integration, both measured
//! against the Salesforce emulator in the same run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;

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
    /// Counted calls per Salesforce resource, as `resource n, resource n`.
    breakdown: String,
    elapsed: Duration,
    /// Milliseconds from each IPN's arrival to its Opportunity's `CreatedDate`.
    latency: Histogram<u64>,
}

/// How the IPNs arrive: all at once, or one every `gap`.
#[derive(Clone, Copy)]
enum Traffic {
    Burst,
    Paced(Duration),
}

/// When each order's IPN arrived, by order reference.
type Arrivals = HashMap<String, DateTime<Utc>>;

/// End-to-end latency of every order in `arrivals`, read from the Opportunities' `CreatedDate`
/// (millisecond precision, set by the emulator on insert).
fn latency(emu: &sf_emulator::Emulator, arrivals: &Arrivals) -> anyhow::Result<Histogram<u64>> {
    let mut h = Histogram::<u64>::new(3)?;
    for record in emu.records("Opportunity") {
        let Some(arrived) = record["TwoCheckout_Order_Ref__c"]
            .as_str()
            .and_then(|r| arrivals.get(r))
        else {
            continue;
        };
        let created = record["CreatedDate"]
            .as_str()
            .and_then(|c| DateTime::parse_from_str(c, "%Y-%m-%dT%H:%M:%S%.3f%z").ok())
            .ok_or_else(|| anyhow::anyhow!("Opportunity without a readable CreatedDate"))?;
        let ms = (created.with_timezone(&Utc) - *arrived).num_milliseconds();
        h.record(ms.max(0) as u64)?;
    }
    anyhow::ensure!(
        h.len() as usize == arrivals.len(),
        "latency found for {} of {} orders",
        h.len(),
        arrivals.len()
    );
    Ok(h)
}

/// Counted calls per resource since `before`, as `resource n, resource n`.
fn breakdown(calls: &sf_emulator::CallStats, before: &sf_emulator::CallStats) -> String {
    calls
        .per_resource
        .iter()
        .map(|(resource, n)| {
            (
                resource,
                n - before.per_resource.get(resource).unwrap_or(&0),
            )
        })
        .filter(|(_, n)| *n > 0)
        .map(|(resource, n)| format!("{resource} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `events` completed orders from customers who already bought once, after the orders that
/// made them known (the warm-up): five customers, many orders each.
fn returning_orders(
    events: usize,
    seed: u64,
) -> (Vec<tco_emulator::Delivery>, Vec<tco_emulator::Delivery>) {
    let mut g = Generator::new(GeneratorConfig {
        customer_pool_size: 5,
        ..GeneratorConfig::new(seed)
    });
    let email = |d: &tco_emulator::Delivery| d.form.get("CUSTOMEREMAIL").map(str::to_lowercase);
    let mut warmup: Vec<tco_emulator::Delivery> = Vec::new();
    let mut returning = Vec::with_capacity(events);
    while returning.len() < events {
        let Some(order) = g.scenario(ScenarioKind::NewOrder).pop() else {
            continue;
        };
        if warmup.iter().any(|w| email(w) == email(&order)) {
            returning.push(order);
        } else {
            warmup.push(order);
        }
    }
    (warmup, returning)
}

/// Waits until every event is processed and every intent written.
async fn settle(app: &App) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let log = app.store.counts().await?;
        let outbox = app.store.outbox_stats().await?;
        if log.pending == 0 && outbox.pending == 0 && outbox.in_flight == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "did not settle"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `warmup` and waits until it is in Salesforce (not measured), then `deliveries`.
async fn revsync_run(
    warmup: &[tco_emulator::Delivery],
    deliveries: &[tco_emulator::Delivery],
    linger_ms: u64,
    traffic: Traffic,
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
    if !warmup.is_empty() {
        let reports = sender.run(warmup.to_vec(), None).await;
        anyhow::ensure!(
            reports.iter().all(|r| r.receipt_valid),
            "a warm-up delivery was not acknowledged"
        );
        settle(&app).await?;
    }
    let before = emu.calls();
    let started = Instant::now();
    let mut arrivals = Arrivals::new();
    match traffic {
        Traffic::Burst => {
            let now = Utc::now();
            arrivals.extend(deliveries.iter().map(|d| (d.reference.clone(), now)));
            let reports = sender.run(deliveries.to_vec(), None).await;
            anyhow::ensure!(
                reports.iter().all(|r| r.receipt_valid),
                "a delivery was not acknowledged"
            );
        }
        Traffic::Paced(gap) => {
            let mut sends = Vec::with_capacity(deliveries.len());
            let mut tick = tokio::time::interval(gap);
            for d in deliveries {
                tick.tick().await;
                arrivals.insert(d.reference.clone(), Utc::now());
                let (sender, d) = (sender.clone(), d.clone());
                sends.push(tokio::spawn(async move { sender.deliver(&d).await }));
            }
            for send in sends {
                anyhow::ensure!(send.await?.receipt_valid, "not acknowledged");
            }
        }
    }
    settle(&app).await?;
    let elapsed = started.elapsed();
    let opportunities = emu.count("Opportunity");
    if opportunities != warmup.len() + deliveries.len() {
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
            warmup.len() + deliveries.len()
        );
    }
    let calls = emu.calls();
    let latency = latency(&emu, &arrivals)?;
    shutdown.cancel();
    app.wait().await?;
    Ok(Run {
        events: deliveries.len(),
        api_calls: calls.api_calls - before.api_calls,
        breakdown: breakdown(&calls, &before),
        elapsed,
        latency,
    })
}

/// What a typical hand-built integration does per event as it arrives: for each of Account,
/// Contact and Opportunity, look the record up by a key, then create it or update it. Its
/// latency counts from the IPN's arrival, so work queued behind earlier events counts too.
async fn naive_run(deliveries: &[tco_emulator::Delivery], traffic: Traffic) -> anyhow::Result<Run> {
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
    let started_utc = Utc::now();
    let mut arrivals = Arrivals::new();
    for (i, d) in deliveries.iter().enumerate() {
        let arrival = match traffic {
            Traffic::Burst => Duration::ZERO,
            Traffic::Paced(gap) => gap * i as u32,
        };
        tokio::time::sleep_until((started + arrival).into()).await;
        arrivals.insert(
            d.reference.clone(),
            started_utc + chrono::Duration::from_std(arrival)?,
        );
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
    let elapsed = started.elapsed();
    let calls = emu.calls();
    Ok(Run {
        events: deliveries.len(),
        api_calls: calls.api_calls,
        breakdown: breakdown(&calls, &Default::default()),
        elapsed,
        latency: latency(&emu, &arrivals)?,
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

pub async fn run(events: usize, steady: usize, rate: f64, trickle: usize) -> anyhow::Result<()> {
    anyhow::ensure!(rate > 0.0, "--rate must be positive");
    println!("API calls and end-to-end latency: completed orders (Account + Contact + Opportunity each), Salesforce emulator");
    let linger = Duration::from_secs(1);
    let burst = completed_orders(events, 7);
    let steady_orders = completed_orders(steady, 9);
    let gap = Duration::from_secs_f64(1.0 / rate);
    let trickle_orders = completed_orders(trickle, 8);
    let (warmup, returning) = returning_orders(trickle, 10);
    let trickle_linger = Duration::from_millis(200);
    // One event every 1.5 linger windows: at most one call per window is the target.
    let trickle_gap = Traffic::Paced(trickle_linger * 3 / 2);
    let trickle_ms = trickle_linger.as_millis() as u64;
    let runs = [
        (
            "naive, burst".to_owned(),
            naive_run(&burst, Traffic::Burst).await?,
            None,
        ),
        (
            "revsync, burst (linger 1 s)".to_owned(),
            revsync_run(&[], &burst, linger.as_millis() as u64, Traffic::Burst).await?,
            None,
        ),
        (
            format!("naive, steady {rate}/s"),
            naive_run(&steady_orders, Traffic::Paced(gap)).await?,
            None,
        ),
        (
            format!("revsync, steady {rate}/s (linger 1 s)"),
            revsync_run(
                &[],
                &steady_orders,
                linger.as_millis() as u64,
                Traffic::Paced(gap),
            )
            .await?,
            Some(linger),
        ),
        (
            "revsync, trickle, new customers (1 / 300 ms)".to_owned(),
            revsync_run(&[], &trickle_orders, trickle_ms, trickle_gap).await?,
            Some(trickle_linger),
        ),
        (
            "revsync, trickle, returning customers".to_owned(),
            revsync_run(&warmup, &returning, trickle_ms, trickle_gap).await?,
            Some(trickle_linger),
        ),
    ];
    let per_1000 = |r: &Run| r.api_calls as f64 * 1000.0 / r.events as f64;
    let ms = |r: &Run, q: f64| r.latency.value_at_quantile(q);
    println!();
    println!(
        "{:<46} {:>7} {:>9} {:>10} {:>9} {:>9} {:>12}",
        "run", "events", "API calls", "per 1,000", "e2e p50", "e2e p99", "p99 target"
    );
    for (name, run, linger) in &runs {
        println!(
            "{:<46} {:>7} {:>9} {:>10.1} {:>6} ms {:>6} ms {:>12}",
            name,
            run.events,
            run.api_calls,
            per_1000(run),
            ms(run, 0.5),
            ms(run, 0.99),
            linger.map_or(String::new(), |l| format!(
                "<= {} ms",
                (l + Duration::from_secs(2)).as_millis()
            )),
        );
    }
    let [(_, naive, _), (_, revsync, _), _, _, (_, new, _), (_, known, _)] = &runs;
    let per_window = |r: &Run| {
        let windows = (r.elapsed.as_secs_f64() / trickle_linger.as_secs_f64()).ceil();
        format!(
            "{:.2} over {windows:.0} windows",
            r.api_calls as f64 / windows
        )
    };
    println!();
    println!(
        "burst: {:.1}x fewer calls than naive (target: <= 15 per 1,000)",
        per_1000(naive) / per_1000(revsync).max(0.001),
    );
    println!(
        "trickle (linger 200 ms), calls per linger window (target: <= 1): returning customers {}; new customers {} (each new customer also costs its matching query)",
        per_window(known),
        per_window(new)
    );
    for (name, run, _) in &runs {
        println!("{name}: calls by resource: {}", run.breakdown);
    }
    println!(
        "(burst wall time {:.1} s; naive {:.1} s)",
        revsync.elapsed.as_secs_f64(),
        naive.elapsed.as_secs_f64()
    );
    Ok(())
}
