//! Alerts against a real store and an in-test webhook receiver: each alert fires once when its
//! condition starts (not once per event) and sends one "resolved" message when it clears.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use revsync::alerts::{AlertKind, Alerter, AlertsConfig};
use revsync::intent::{Priority, RecordIntent, RecordKey};
use revsync::store::{Micros, NewDelivery, NewQuarantine, Settlement, Store};

type Inbox = Arc<Mutex<Vec<Value>>>;

async fn webhook() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let keep = inbox.clone();
    let app = Router::new().route(
        "/hook/secret",
        post(move |Json(body): Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook/secret", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, inbox)
}

const MIN: i64 = 60_000_000;

fn at(min: i64) -> Micros {
    Micros(Micros::now().0 + min * MIN)
}

fn intent(n: usize) -> RecordIntent {
    RecordIntent {
        sobject: "Opportunity".into(),
        key: RecordKey::external("TwoCheckout_Order_Ref__c", &format!("R{n}")),
        fields: BTreeMap::from([("Name".to_owned(), json!(format!("order {n}")))]),
        partition: format!("c{n}"),
        priority: Priority::Payment,
    }
}

async fn dead_letters(store: &dyn Store, count: usize, now: Micros) {
    let intents: Vec<RecordIntent> = (0..count).map(intent).collect();
    store.enqueue(&intents, now).await.unwrap();
    let leased = store
        .lease_outbox("test", now, Micros(now.0 + MIN), 100, Priority::Backfill)
        .await
        .unwrap();
    let settle: Vec<Settlement> = leased
        .iter()
        .map(|i| Settlement::Dead {
            id: i.id,
            code: "FIELD_CUSTOM_VALIDATION_EXCEPTION".into(),
            message: "refused".into(),
        })
        .collect();
    store.settle_outbox(&settle, now).await.unwrap();
}

async fn delivery(store: &dyn Store, n: usize, now: Micros) {
    store
        .append_deliveries(&[NewDelivery {
            kind: "ipn".into(),
            received_at: now,
            content_type: "application/x-www-form-urlencoded".into(),
            remote_addr: None,
            signature_algorithm: "sha256".into(),
            body: format!("REFNO={n}").into_bytes(),
            fingerprint: format!("fp-{n}"),
            reference: format!("{n}"),
            customer_key: None,
        }])
        .await
        .unwrap();
}

async fn quarantine(store: &dyn Store, now: Micros) {
    store
        .quarantine(&NewQuarantine {
            received_at: now,
            path_kind: "ipn".into(),
            content_type: "application/x-www-form-urlencoded".into(),
            remote_addr: None,
            reason: "signature mismatch".into(),
            body: b"REFNO=1".to_vec(),
            truncated: false,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn each_alert_fires_once_and_clears() {
    let s = support::store::sqlite().await;
    let store: Arc<dyn Store> = Arc::new(s.store.clone());
    let (url, inbox) = webhook().await;
    let cfg = AlertsConfig {
        webhook_url: Some(url),
        budget_percent: 80.0,
        salesforce_down_minutes: 5,
        silence_minutes: 30,
        quarantine_growth: 2,
        ..AlertsConfig::default()
    };
    let mut alerter = Alerter::new(&cfg, store.clone()).unwrap();
    let mut fired: Vec<(i64, AlertKind, bool)> = Vec::new();
    let mut tick = |m: i64, changes: Vec<revsync::alerts::AlertChange>| {
        for c in changes {
            fired.push((m, c.kind, c.firing));
        }
    };

    delivery(store.as_ref(), 0, at(0)).await;
    store
        .record_api_calls(1, Some((1_000, 100_000)), at(0))
        .await
        .unwrap();
    tick(0, alerter.tick(at(0)).await.unwrap());

    // A burst of dead letters: one message, however many.
    dead_letters(store.as_ref(), 7, at(1)).await;
    delivery(store.as_ref(), 1, at(1)).await;
    tick(1, alerter.tick(at(1)).await.unwrap());
    dead_letters(store.as_ref(), 5, at(2)).await;
    tick(2, alerter.tick(at(2)).await.unwrap());

    // Budget over the threshold, twice: one message.
    store
        .record_api_calls(1, Some((85_000, 100_000)), at(3))
        .await
        .unwrap();
    tick(3, alerter.tick(at(3)).await.unwrap());
    store
        .record_api_calls(1, Some((90_000, 100_000)), at(4))
        .await
        .unwrap();
    tick(4, alerter.tick(at(4)).await.unwrap());

    // Quarantine: one new entry is below the threshold, the second fires, the third is
    // part of the same condition.
    quarantine(store.as_ref(), at(5)).await;
    tick(5, alerter.tick(at(5)).await.unwrap());
    quarantine(store.as_ref(), at(6)).await;
    quarantine(store.as_ref(), at(6)).await;
    tick(6, alerter.tick(at(6)).await.unwrap());

    // Salesforce stops answering while work waits (the outbox holds a pending intent).
    store.enqueue(&[intent(99)], at(7)).await.unwrap();
    tick(7, alerter.tick(at(7)).await.unwrap());
    tick(13, alerter.tick(at(13)).await.unwrap());
    tick(14, alerter.tick(at(14)).await.unwrap());

    // No IPN since minute 1: silence fires at 31 (30 minutes), once.
    tick(31, alerter.tick(at(31)).await.unwrap());
    tick(40, alerter.tick(at(40)).await.unwrap());

    // Everything clears: dead letters replayed, usage down, quarantine dealt with,
    // Salesforce answers, an IPN arrives.
    for d in store.dead_letters(None, 100).await.unwrap() {
        store.replay_dead_letter(d.id, at(41)).await.unwrap();
    }
    let leased = store
        .lease_outbox("test", at(41), at(42), 100, Priority::Backfill)
        .await
        .unwrap();
    let written: Vec<Settlement> = leased
        .iter()
        .map(|i| Settlement::Written {
            id: i.id,
            sf_id: None,
            created: Some(true),
        })
        .collect();
    store.settle_outbox(&written, at(41)).await.unwrap();
    store
        .record_api_calls(1, Some((20_000, 100_000)), at(41))
        .await
        .unwrap();
    for (i, q) in store
        .list_quarantine(None, 100)
        .await
        .unwrap()
        .iter()
        .enumerate()
    {
        let admitted = NewDelivery {
            kind: "ipn".into(),
            received_at: at(41),
            content_type: q.content_type.clone(),
            remote_addr: None,
            signature_algorithm: "sha256".into(),
            body: q.body.clone(),
            fingerprint: format!("admitted-{i}"),
            reference: "1".into(),
            customer_key: None,
        };
        store.admit_quarantined(q.id, &admitted).await.unwrap();
    }
    delivery(store.as_ref(), 2, at(41)).await;
    tick(41, alerter.tick(at(41)).await.unwrap());
    tick(42, alerter.tick(at(42)).await.unwrap());

    use AlertKind::*;
    assert_eq!(
        fired,
        vec![
            (1, DeadLetters, true),
            (3, Budget, true),
            (6, QuarantineGrowing, true),
            (13, SalesforceUnreachable, true),
            (31, Silence, true),
            (41, DeadLetters, false),
            (41, Budget, false),
            (41, SalesforceUnreachable, false),
            (41, Silence, false),
            (41, QuarantineGrowing, false),
        ]
    );
    let texts: Vec<String> = inbox
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts.len(), fired.len(), "one webhook post per change");
    assert!(texts[0].contains("7 dead letter"), "{}", texts[0]);
    assert!(texts[1].contains("85.0%"), "{}", texts[1]);
    assert!(texts[5].contains("resolved"), "{}", texts[5]);
}

#[tokio::test]
async fn a_failing_webhook_keeps_the_message_for_the_next_round() {
    let s = support::store::sqlite().await;
    let store: Arc<dyn Store> = Arc::new(s.store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens: posts fail
    let cfg = AlertsConfig {
        webhook_url: Some(format!("http://{addr}/hook/secret-token")),
        ..AlertsConfig::default()
    };
    let mut alerter = Alerter::new(&cfg, store.clone()).unwrap();
    dead_letters(store.as_ref(), 2, at(0)).await;
    let err = alerter.tick(at(0)).await.unwrap_err();
    assert!(!err.to_string().contains("secret-token"), "{err}");
    assert!(Alerter::new(&AlertsConfig::default(), store).is_none());
}
