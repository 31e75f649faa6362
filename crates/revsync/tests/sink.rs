//! The sink against the Salesforce emulator: fewest calls, every failure class survived,
//! and the final Salesforce state exactly the expected one — no duplicate, nothing missing.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use revsync::intent::{Priority, RecordIntent, RecordKey};
use revsync::sink::{Sink, SinkConfig};
use revsync::store::{DeadLetterStatus, Effects, Micros, NewDelivery, Store};
use serde_json::{json, Value};
use sf_emulator::{Emulator, EmulatorConfig};

const CUST: &str = "TwoCheckout_Customer_Ref__c";
const ORDER: &str = "TwoCheckout_Order_Ref__c";

struct Harness {
    emu: Emulator,
    store: Arc<dyn Store>,
    client: salesforce::Client,
    _store: support::store::TestStore,
}

async fn harness_with(config: EmulatorConfig, timeout: Duration) -> Harness {
    let emu = sf_emulator::spawn(config).await.unwrap();
    let d = EmulatorConfig::default();
    let client = salesforce::Client::builder(salesforce::Credentials::ClientCredentials(
        salesforce::auth::ClientCredentials::new(d.client_id, d.client_secret, emu.url()),
    ))
    .request_timeout(timeout)
    .build()
    .unwrap();
    let s = support::store::sqlite().await;
    Harness {
        emu,
        store: Arc::new(s.store.clone()),
        client,
        _store: s,
    }
}

async fn harness() -> Harness {
    harness_with(EmulatorConfig::default(), Duration::from_secs(30)).await
}

impl Harness {
    fn sink(&self) -> Sink {
        let config = SinkConfig {
            backoff_base_ms: 1,
            backoff_cap_secs: 0,
            ..SinkConfig::default()
        };
        Sink::new(
            self.store.clone(),
            self.client.clone(),
            config,
            "sink-test".into(),
        )
    }

    async fn drain(&self) -> revsync::sink::RoundReport {
        self.sink().drain(Duration::from_secs(20)).await.unwrap()
    }

    fn by_ext(&self, sobject: &str, field: &str) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for r in self.emu.records(sobject) {
            let key = r[field].as_str().unwrap_or_default().to_owned();
            assert!(
                out.insert(key.clone(), r).is_none(),
                "duplicate {sobject} for {field} = {key}"
            );
        }
        out
    }

    /// Commits the intents of one order event (as the processor does) and returns its id.
    async fn order_event(&self, customer: &str, order: &str, amount: f64) -> i64 {
        let appended = self
            .store
            .append_deliveries(&[NewDelivery {
                kind: "ipn".into(),
                received_at: Micros::now(),
                content_type: "application/x-www-form-urlencoded".into(),
                remote_addr: None,
                signature_algorithm: "sha256".into(),
                body: format!("REFNO={order}").into_bytes(),
                fingerprint: format!("fp-{order}"),
                reference: order.into(),
                customer_key: Some(customer.into()),
            }])
            .await
            .unwrap();
        let now = Micros::now();
        let leased = self
            .store
            .lease_pending("proc", now, Micros(now.0 + 60_000_000), 1)
            .await
            .unwrap();
        assert_eq!(leased[0].id, appended[0].event_id);
        let effects = Effects {
            records: vec![],
            intents: order_intents(customer, order, amount),
        };
        assert!(self
            .store
            .commit_event(leased[0].id, "proc", &effects, now)
            .await
            .unwrap());
        leased[0].id
    }
}

fn intent(sobject: &str, key: RecordKey, customer: &str, fields: Value) -> RecordIntent {
    RecordIntent {
        sobject: sobject.into(),
        key,
        fields: serde_json::from_value(fields).unwrap(),
        partition: customer.into(),
        priority: Priority::Payment,
    }
}

fn order_intents(customer: &str, order: &str, amount: f64) -> Vec<RecordIntent> {
    vec![
        intent(
            "Account",
            RecordKey::external(CUST, customer),
            customer,
            json!({"Name": format!("Company {customer}")}),
        ),
        intent(
            "Contact",
            RecordKey::external(CUST, customer),
            customer,
            json!({
                "LastName": format!("Buyer {customer}"),
                "Email": format!("{customer}@example.com"),
                "Account": {CUST: customer},
            }),
        ),
        intent(
            "Opportunity",
            RecordKey::external(ORDER, order),
            customer,
            json!({
                "Name": format!("2Checkout order {order}"),
                "StageName": "Closed Won",
                "CloseDate": "2026-11-30",
                "Amount": amount,
                "Account": {CUST: customer},
            }),
        ),
    ]
}

async fn enqueue_orders(h: &Harness, customers: usize) {
    let intents: Vec<_> = (0..customers)
        .flat_map(|c| order_intents(&format!("c{c}"), &format!("{}", 1000 + c), 10.0))
        .collect();
    h.store.enqueue(&intents, Micros::now()).await.unwrap();
}

fn assert_orders_exactly(h: &Harness, customers: usize) {
    let accounts = h.by_ext("Account", CUST);
    let contacts = h.by_ext("Contact", CUST);
    let opportunities = h.by_ext("Opportunity", ORDER);
    assert_eq!(accounts.len(), customers);
    assert_eq!(contacts.len(), customers);
    assert_eq!(opportunities.len(), customers);
    for c in 0..customers {
        let account = &accounts[&format!("c{c}")];
        let contact = &contacts[&format!("c{c}")];
        let opp = &opportunities[&format!("{}", 1000 + c)];
        assert_eq!(contact["AccountId"], account["Id"]);
        assert_eq!(opp["AccountId"], account["Id"]);
    }
}

#[tokio::test]
async fn a_burst_of_orders_costs_one_call_per_150_customers() {
    let h = harness().await;
    enqueue_orders(&h, 300).await;
    let report = h.drain().await;
    assert_eq!(report.written, 900);
    // Two customers per graph, 75 graphs per request.
    assert_eq!(report.api_calls, 2, "{report:?}");
    assert_eq!(h.emu.calls().per_resource.get("composite/graph"), Some(&2));
    assert_orders_exactly(&h, 300);
    let stats = h.store.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.in_flight, stats.written), (0, 0, 900));
}

#[tokio::test]
async fn the_sync_log_says_what_each_event_touched_and_later_events_update() {
    let h = harness().await;
    let first = h.order_event("77001", "5001", 119.0).await;
    let second = h.order_event("77001", "5002", 20.0).await;
    h.drain().await;
    let log = h.store.sync_log(first).await.unwrap();
    let touched: Vec<_> = log
        .iter()
        .map(|e| (e.sobject.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        touched,
        [
            ("Account", "written"),
            ("Contact", "written"),
            ("Opportunity", "written")
        ]
    );
    assert!(log.iter().all(|e| e.sf_id.is_some()));
    // The second event of the same customer was merged into the pending Account and
    // Contact intents: one record each, both events logged against them.
    let log2 = h.store.sync_log(second).await.unwrap();
    assert_eq!(log2.len(), 3);
    assert_eq!(h.emu.records("Account").len(), 1);
    assert_eq!(h.emu.records("Contact").len(), 1);
    assert_eq!(h.emu.records("Opportunity").len(), 2);
    let identity = &h.store.identities(&["77001".into()]).await.unwrap()[0];
    assert_eq!(
        identity.account_id.as_deref(),
        h.emu.records("Account")[0]["Id"].as_str()
    );
    assert_eq!(
        identity.contact_id.as_deref(),
        h.emu.records("Contact")[0]["Id"].as_str()
    );
}

#[tokio::test]
async fn an_expired_session_mid_run_reauthenticates_once_and_loses_nothing() {
    let h = harness().await;
    enqueue_orders(&h, 80).await;
    h.sink().run_once().await.unwrap();
    h.emu.faults().expire_sessions();
    enqueue_orders(&h, 160).await;
    h.drain().await;
    assert_eq!(h.client.reauthentications(), 1);
    assert_orders_exactly(&h, 160);
}

#[tokio::test]
async fn row_locks_on_some_items_of_a_collection_are_retried_alone() {
    let h = harness().await;
    let rollups: Vec<_> = (0..250)
        .map(|c| RecordIntent {
            priority: Priority::Rollup,
            ..intent(
                "Account",
                RecordKey::external(CUST, &format!("r{c}")),
                &format!("r{c}"),
                json!({"Name": format!("Rollup {c}"), "Order_Count__c": c}),
            )
        })
        .collect();
    h.store.enqueue(&rollups, Micros::now()).await.unwrap();
    h.emu.faults().lock_record("r3", 2);
    h.emu.faults().lock_record("r240", 1);
    let report = h.drain().await;
    assert_eq!(report.written, 250);
    assert_eq!(
        report.retried, 3,
        "only the locked items are retried: {report:?}"
    );
    // Two collection calls for 250, then the retries of the two locked records.
    assert!(h.emu.calls().per_resource["composite/sobjects"] <= 5);
    let accounts = h.by_ext("Account", CUST);
    assert_eq!(accounts.len(), 250);
    assert_eq!(accounts["r3"]["Order_Count__c"].as_f64(), Some(3.0));
}

#[tokio::test]
async fn an_outage_then_recovery_writes_everything_once() {
    let h = harness().await;
    enqueue_orders(&h, 20).await;
    h.emu.faults().set_outage(true);
    let report = h.sink().run_once().await.unwrap();
    assert_eq!((report.written, report.retried), (0, 60));
    assert!(h.emu.records("Account").is_empty());
    h.emu.faults().set_outage(false);
    h.drain().await;
    assert_orders_exactly(&h, 20);
}

#[tokio::test]
async fn the_daily_limit_pauses_the_sink_and_it_resumes_by_itself() {
    let h = harness().await;
    enqueue_orders(&h, 10).await;
    h.emu.faults().set_api_limit(1_000);
    h.emu.faults().set_api_usage(1_000);
    let report = h.sink().run_once().await.unwrap();
    assert_eq!(report.written, 0);
    assert!(h.emu.records("Account").is_empty());
    // The governor now knows the org is at its limit (from Sforce-Limit-Info) and pauses.
    let report = h.sink().run_once().await.unwrap();
    assert!(report.paused.is_some(), "{report:?}");
    // The day rolls over (other integrations' usage leaves the window).
    h.emu.faults().set_api_limit(100_000);
    h.emu.faults().set_api_usage(0);
    h.store
        .record_api_calls(0, Some((0, 100_000)), Micros::now())
        .await
        .unwrap();
    h.drain().await;
    assert_orders_exactly(&h, 10);
}

#[tokio::test]
async fn revsync_keeps_to_its_share_of_the_allocation() {
    let h = harness().await;
    // 10 % of 30 calls = 3 calls for revsync.
    h.emu.faults().set_api_limit(30);
    h.store
        .record_api_calls(0, Some((0, 30)), Micros::now())
        .await
        .unwrap();
    for batch in 0..8 {
        let intents: Vec<_> = (0..80)
            .flat_map(|c| order_intents(&format!("b{batch}c{c}"), &format!("{batch}-{c}"), 1.0))
            .collect();
        h.store.enqueue(&intents, Micros::now()).await.unwrap();
    }
    let report = h.sink().drain(Duration::from_secs(30)).await.unwrap();
    assert!(report.paused.is_some(), "{report:?}");
    assert!(h.emu.calls().api_calls <= 3, "{:?}", h.emu.calls());
    let stats = h.store.outbox_stats().await.unwrap();
    assert!(stats.pending > 0, "the rest waits, nothing is dropped");
    assert_eq!(stats.dead_letters_open, 0);
}

#[tokio::test]
async fn a_validation_error_is_dead_lettered_with_salesforces_message() {
    let h = harness().await;
    let event = h.order_event("c1", "9001", 5.0).await;
    // An Opportunity without its required StageName.
    let mut bad = order_intents("c2", "9002", 5.0);
    bad[2].fields.remove("StageName");
    h.store.enqueue(&bad, Micros::now()).await.unwrap();
    let report = h.drain().await;
    assert_eq!(report.dead, 1, "{report:?}");
    let dead = h
        .store
        .dead_letters(Some(DeadLetterStatus::Open), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error_code, "REQUIRED_FIELD_MISSING");
    assert!(dead[0].message.contains("StageName"), "{}", dead[0].message);
    assert_eq!(dead[0].intent.key, RecordKey::external(ORDER, "9002"));
    // Its graph-mates were retried and written; the other event is whole.
    assert_eq!(h.by_ext("Account", CUST).len(), 2);
    assert_eq!(h.by_ext("Contact", CUST).len(), 2);
    assert_eq!(h.by_ext("Opportunity", ORDER).len(), 1);
    assert!(h
        .store
        .sync_log(event)
        .await
        .unwrap()
        .iter()
        .all(|e| e.outcome == "written"));
    // Replay re-enqueues it (here it fails again, since nobody fixed it).
    h.store
        .replay_dead_letter(dead[0].id, Micros::now())
        .await
        .unwrap();
    assert!(h
        .store
        .replay_dead_letter(dead[0].id, Micros::now())
        .await
        .is_err());
    h.drain().await;
    assert_eq!(
        h.store
            .dead_letters(Some(DeadLetterStatus::Open), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_failure_in_a_shared_graph_rolls_back_only_until_the_mate_is_retried() {
    let h = harness().await;
    // 200 customers: more graphs than one request carries, so customers share graphs.
    let mut intents: Vec<_> = (0..200)
        .flat_map(|c| order_intents(&format!("c{c}"), &format!("{}", 1000 + c), 10.0))
        .collect();
    // Customer c7's Opportunity lacks its required StageName.
    intents[7 * 3 + 2].fields.remove("StageName");
    h.store.enqueue(&intents, Micros::now()).await.unwrap();
    let report = h.drain().await;
    assert_eq!(report.dead, 1, "{report:?}");
    let dead = h
        .store
        .dead_letters(Some(DeadLetterStatus::Open), 10)
        .await
        .unwrap();
    assert_eq!(dead[0].intent.key, RecordKey::external(ORDER, "1007"));
    // Everyone else, c7's graph-mate included, is written exactly once.
    assert_eq!(h.by_ext("Account", CUST).len(), 200);
    assert_eq!(h.by_ext("Contact", CUST).len(), 200);
    let opportunities = h.by_ext("Opportunity", ORDER);
    assert_eq!(opportunities.len(), 199);
    assert!(!opportunities.contains_key("1007"));
    let stats = h.store.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.in_flight), (0, 0));
}

#[tokio::test]
async fn a_timed_out_request_whose_write_committed_is_replayed_without_duplicates() {
    let h = harness_with(EmulatorConfig::default(), Duration::from_millis(500)).await;
    enqueue_orders(&h, 5).await;
    h.emu
        .faults()
        .commit_then_timeout(1, Duration::from_secs(2), false);
    let first = h.sink().run_once().await.unwrap();
    assert_eq!(first.retried, 15, "the outcome is unknown: retry {first:?}");
    assert_eq!(h.emu.records("Account").len(), 5, "the write did commit");
    h.drain().await;
    assert_orders_exactly(&h, 5);
}

#[tokio::test]
async fn a_duplicate_rule_match_is_linked_not_duplicated() {
    let h = harness().await;
    // The Contact exists in Salesforce already, without our external id.
    let existing = h.emu.insert(
        "Contact",
        json!({"LastName": "Buyer c0", "Email": "c0@example.com"}),
    );
    enqueue_orders(&h, 1).await;
    let report = h.drain().await;
    assert_eq!(report.dead, 0, "{report:?}");
    let contacts = h.emu.records("Contact");
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(contacts[0]["Id"], json!(existing));
    assert_eq!(contacts[0][CUST], json!("c0"));
    let identity = &h.store.identities(&["c0".into()]).await.unwrap()[0];
    assert_eq!(identity.contact_id.as_deref(), Some(existing.as_str()));
}
