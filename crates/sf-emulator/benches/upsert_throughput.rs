//! Records/s upserted through `/composite/sobjects` (200 per call) over real HTTP with a few
//! concurrent clients, beside a baseline of single-record upserts measured in the same run.
//! Prints figures; asserts nothing. Run: `cargo bench -p sf-emulator --bench upsert_throughput`.

use serde_json::{json, Value};
use sf_emulator::EmulatorConfig;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

const CLIENTS: usize = 4;
const SINGLE_RECORDS: usize = 2_000;
const COLLECTION_CALLS: usize = 150;
const PER_CALL: usize = 200;
const V: &str = "v62.0";

async fn token(http: &reqwest::Client, url: &str) -> String {
    let cfg = EmulatorConfig::default();
    let v: Value = http
        .post(format!("{url}/services/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &cfg.client_id),
            ("client_secret", &cfg.client_secret),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

async fn single(url: &str, tok: &str, prefix: &str) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (url, tok, next, prefix) = (
            url.to_string(),
            tok.to_string(),
            next.clone(),
            prefix.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= SINGLE_RECORDS {
                    break;
                }
                let r = http
                    .patch(format!("{url}/services/data/{V}/sobjects/Account/TwoCheckout_Customer_Ref__c/{prefix}-{i}"))
                    .bearer_auth(&tok)
                    .json(&json!({"Name": format!("Single {i}"), "AnnualRevenue": i}))
                    .send()
                    .await
                    .expect("upsert");
                assert!(r.status().is_success(), "single upsert failed: {}", r.status());
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    SINGLE_RECORDS as f64 / start.elapsed().as_secs_f64()
}

async fn collections(url: &str, tok: &str, prefix: &str) -> (f64, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (url, tok, next, prefix) = (
            url.to_string(),
            tok.to_string(),
            next.clone(),
            prefix.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let call = next.fetch_add(1, Ordering::Relaxed);
                if call >= COLLECTION_CALLS {
                    break;
                }
                let recs: Vec<Value> = (0..PER_CALL)
                    .map(|j| {
                        let i = call * PER_CALL + j;
                        json!({"attributes": {"type": "Account"}, "TwoCheckout_Customer_Ref__c": format!("{prefix}-{i}"), "Name": format!("Batch {i}"), "AnnualRevenue": i})
                    })
                    .collect();
                let r = http
                    .patch(format!("{url}/services/data/{V}/composite/sobjects/Account/TwoCheckout_Customer_Ref__c"))
                    .bearer_auth(&tok)
                    .json(&json!({"allOrNone": false, "records": recs}))
                    .send()
                    .await
                    .expect("collections upsert");
                let items: Value = r.json().await.expect("collections json");
                assert!(items.as_array().is_some_and(|a| a.iter().all(|x| x["success"] == json!(true))));
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let secs = start.elapsed().as_secs_f64();
    (
        (COLLECTION_CALLS * PER_CALL) as f64 / secs,
        COLLECTION_CALLS as f64 / secs,
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cfg = EmulatorConfig {
            daily_api_limit: 10_000_000,
            ..EmulatorConfig::default()
        };
        let emu = sf_emulator::spawn(cfg).await.expect("emulator");
        let url = emu.url();
        let tok = token(&reqwest::Client::new(), &url).await;
        println!("sf-emulator upsert throughput ({CLIENTS} concurrent clients, real HTTP on loopback, 2 runtime threads)");
        let s_ins = single(&url, &tok, "S").await;
        let s_upd = single(&url, &tok, "S").await;
        println!("  baseline single-record upsert (PATCH sobjects/Account/Ext/value): insert {s_ins:>9.0} records/s, update {s_upd:>9.0} records/s ({SINGLE_RECORDS} records each)");
        let (c_ins, calls_ins) = collections(&url, &tok, "B").await;
        let (c_upd, calls_upd) = collections(&url, &tok, "B").await;
        println!(
            "  /composite/sobjects upsert, {PER_CALL}/call:                insert {c_ins:>9.0} records/s ({calls_ins:.0} calls/s), update {c_upd:>9.0} records/s ({calls_upd:.0} calls/s) ({} records each)",
            COLLECTION_CALLS * PER_CALL
        );
        println!("  speed-up over single-record upserts: insert x{:.1}, update x{:.1}", c_ins / s_ins, c_upd / s_upd);
        let calls = emu.calls();
        println!("  API calls counted: {} (sobjects {}, composite/sobjects {})", calls.api_calls, calls.per_resource.get("sobjects").copied().unwrap_or(0), calls.per_resource.get("composite/sobjects").copied().unwrap_or(0));
        println!("  Accounts stored: {}", emu.records("Account").len());
        emu.shutdown().await;
    });
}
