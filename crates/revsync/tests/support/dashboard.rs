//! A seeded store and a served dashboard, shared by `dashboard_api.rs` and
//! `dashboard_browser.rs`. Everything is seeded through the store's own API, as the ingest,
//! processor and sink stages would write it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use revsync::dashboard::{self, DashboardState};
use revsync::intent::{Priority, RecordIntent, RecordKey};
use revsync::store::{Effects, Micros, NewDelivery, RecordWrite, Settlement, Store};
use secrecy::SecretString;
use serde_json::json;

use crate::support::store::TestStore;

/// A customer name that would run script if it were ever parsed as HTML.
pub const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>";
/// A company name with more markup: the Account's name and the dead Opportunity's
/// description.
pub const HOSTILE_COMPANY: &str = "</td><script>alert(2)</script>";

pub const CUSTOMER: &str = "77001";
pub const EMAIL: &str = "Alvaro@Acme.example";
pub const ORDER: &str = "ORD-1001";
pub const SUBSCRIPTION: &str = "SUB-XRIL-77";
pub const LICENCE: &str = "LIC-XRIL-9";
pub const SALE: &str = "SALE-5501";
/// References that only differ in what `%` and `_` would match as LIKE wildcards.
pub const WILD: &str = "100%_OFF";
pub const WILD_DECOY: &str = "1000XOFF";

pub const ACCOUNT_ID: &str = "001000000000001AAA";
pub const OPPORTUNITY_ID: &str = "006000000000001AAA";
pub const DEAD_MESSAGE: &str = "Amount must be positive: <b>-5.00</b>";
pub const DEAD_CODE: &str = "FIELD_CUSTOM_VALIDATION_EXCEPTION";

const CUST_FIELD: &str = "TwoCheckout_Customer_Ref__c";
const ORDER_FIELD: &str = "TwoCheckout_Order_Ref__c";

/// What [`seed`] wrote.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// ORD-1001: IPN, delivered twice, processed; its Account was written, its
    /// Opportunity is a dead letter.
    pub order_event: i64,
    /// LIC-XRIL-9: LCN of the same customer, processed; its Asset was written.
    pub licence_event: i64,
    /// SALE-5501: INS, still pending.
    pub sale_event: i64,
    pub wild_event: i64,
    pub decoy_event: i64,
    pub dead_letter: i64,
    /// Number of outbox rows written.
    pub written: i64,
}

fn delivery(
    kind: &str,
    fingerprint: &str,
    reference: &str,
    customer: Option<&str>,
    at: Micros,
) -> NewDelivery {
    NewDelivery {
        kind: kind.into(),
        received_at: at,
        content_type: "application/x-www-form-urlencoded".into(),
        remote_addr: Some("198.51.100.7".into()),
        signature_algorithm: "sha3-256".into(),
        body: format!("REFNO={reference}&SECRET_BODY_MARKER=1").into_bytes(),
        fingerprint: fingerprint.into(),
        reference: reference.into(),
        customer_key: customer.map(str::to_owned),
    }
}

fn intent(sobject: &str, field: &str, value: &str, fields: serde_json::Value) -> RecordIntent {
    RecordIntent {
        sobject: sobject.into(),
        key: RecordKey::external(field, value),
        fields: serde_json::from_value(fields).unwrap(),
        partition: CUSTOMER.into(),
        priority: Priority::Payment,
    }
}

/// Seeds events, deliveries, ledger records, outbox settlements and API usage.
pub async fn seed(store: &dyn Store) -> Seeded {
    let now = Micros::now();
    // Received two seconds before processing, so every processed event has a latency of
    // at least 2000 ms.
    let received = Micros(now.0 - 2_000_000);
    let appended = store
        .append_deliveries(&[
            delivery("ipn", "fp-order", ORDER, Some(CUSTOMER), received),
            delivery("ipn", "fp-order", ORDER, Some(CUSTOMER), received),
            delivery("lcn", "fp-licence", LICENCE, Some(CUSTOMER), received),
            delivery("ipn", "fp-wild", WILD, Some("wild@example.com"), received),
            delivery(
                "ipn",
                "fp-decoy",
                WILD_DECOY,
                Some("decoy@example.com"),
                received,
            ),
            delivery("ins", "fp-sale", SALE, Some("sale@example.com"), received),
        ])
        .await
        .expect("append");
    let (order_event, licence_event, wild_event, decoy_event, sale_event) = (
        appended[0].event_id,
        appended[2].event_id,
        appended[3].event_id,
        appended[4].event_id,
        appended[5].event_id,
    );

    let owner = "dashboard-test";
    let leased = store
        .lease_pending(owner, now, Micros(now.0 + 60_000_000), 10)
        .await
        .expect("lease");
    assert_eq!(leased.len(), 5);

    let customer_body = json!({
        "key": CUSTOMER,
        "avangate_reference": CUSTOMER,
        "first_name": HOSTILE_NAME,
        "last_name": null,
        "company": HOSTILE_COMPANY,
        "email": EMAIL,
    })
    .to_string();
    let order_effects = Effects {
        records: vec![
            RecordWrite {
                kind: "customer".into(),
                key: CUSTOMER.into(),
                customer_key: Some(CUSTOMER.into()),
                body: customer_body,
                expected_version: None,
            },
            RecordWrite {
                kind: "order".into(),
                key: ORDER.into(),
                customer_key: Some(CUSTOMER.into()),
                body: json!({"refno": ORDER, "customer_key": CUSTOMER,
                    "subscription_refs": [SUBSCRIPTION], "status": "COMPLETE"})
                .to_string(),
                expected_version: None,
            },
        ],
        intents: vec![
            intent(
                "Account",
                CUST_FIELD,
                CUSTOMER,
                json!({"Name": HOSTILE_COMPANY}),
            ),
            intent(
                "Opportunity",
                ORDER_FIELD,
                ORDER,
                json!({"Name": ORDER, "Amount": -5.0, "Description": HOSTILE_COMPANY,
                "Account": {CUST_FIELD: CUSTOMER}}),
            ),
        ],
    };
    assert!(store
        .commit_event(order_event, owner, &order_effects, now)
        .await
        .unwrap());
    let licence_effects = Effects {
        records: vec![],
        intents: vec![intent(
            "Asset",
            "TwoCheckout_Licence_Ref__c",
            LICENCE,
            json!({"Name": LICENCE}),
        )],
    };
    assert!(store
        .commit_event(licence_event, owner, &licence_effects, now)
        .await
        .unwrap());
    for id in [wild_event, decoy_event] {
        assert!(store
            .commit_event(id, owner, &Effects::default(), now)
            .await
            .unwrap());
    }
    // The INS stays pending: its lease simply runs out.

    let items = store
        .lease_outbox(
            owner,
            now,
            Micros(now.0 + 60_000_000),
            10,
            Priority::Backfill,
        )
        .await
        .expect("lease outbox");
    assert_eq!(items.len(), 3, "{items:?}");
    let mut settlements = Vec::new();
    let mut written = 0;
    for item in &items {
        settlements.push(match item.intent.sobject.as_str() {
            "Account" => {
                written += 1;
                Settlement::Written {
                    id: item.id,
                    sf_id: Some(ACCOUNT_ID.into()),
                    created: Some(true),
                }
            }
            "Asset" => {
                written += 1;
                Settlement::Written {
                    id: item.id,
                    sf_id: Some("02i000000000001AAA".into()),
                    created: Some(false),
                }
            }
            _ => Settlement::Dead {
                id: item.id,
                code: DEAD_CODE.into(),
                message: DEAD_MESSAGE.into(),
            },
        });
    }
    store
        .settle_outbox(&settlements, now)
        .await
        .expect("settle");
    let dead = store.dead_letters(None, 10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);

    store
        .record_api_calls(12, Some((5_000, 100_000)), now)
        .await
        .expect("budget");

    Seeded {
        order_event,
        licence_event,
        sale_event,
        wild_event,
        decoy_event,
        dead_letter: dead[0].id,
        written,
    }
}

/// A dashboard served on 127.0.0.1:0.
pub struct Served {
    pub url: String,
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub seeded: Seeded,
    _store: TestStore,
    _server: tokio::task::JoinHandle<()>,
}

/// Seeds a fresh SQLite store and serves the dashboard over it.
pub async fn serve(token: Option<&str>, instance_url: Option<&str>) -> Served {
    serve_on(crate::support::store::sqlite().await, token, instance_url).await
}

/// Seeds `test_store` (fresh) and serves the dashboard over it.
pub async fn serve_on(
    test_store: TestStore,
    token: Option<&str>,
    instance_url: Option<&str>,
) -> Served {
    let store: Arc<dyn Store> = Arc::new(test_store.store.clone());
    let seeded = seed(store.as_ref()).await;
    let state = DashboardState::new(
        store.clone(),
        token.map(|t| SecretString::from(t.to_owned())),
        instance_url.map(str::to_owned),
    )
    .expect("dashboard state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, dashboard::router(state))
            .await
            .unwrap();
    });
    Served {
        url: format!("http://{addr}"),
        addr,
        store,
        seeded,
        _store: test_store,
        _server: server,
    }
}
