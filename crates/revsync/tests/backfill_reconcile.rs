//! Backfill and reconcile against the emulators: the 2Checkout REST 6.0 emulator (built from
//! the generated history) and the Salesforce emulator behind a running revsync.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use reqwest::Method;
use serde_json::{json, Value};
use sf_emulator::EmulatorConfig;
use tco_emulator::rest::{self, RestAuth, RestData, RestEmulator};
use tco_emulator::{Delivery, Generator, GeneratorConfig, ScenarioKind};
use twocheckout::signature::SecretKey;

use revsync::backfill::{Backfill, BackfillOptions, BackfillReport, RestClient, RetryPolicy};
use revsync::flows::Flows;
use revsync::reconcile::{DriftKind, ReconcileOptions, Reconciler, Sides};

const CODE: &str = "REVSYNC01";

fn history(seed: u64) -> Vec<Delivery> {
    let mut g = Generator::new(GeneratorConfig::new(seed));
    let mut out = Vec::new();
    for kind in [
        ScenarioKind::NewOrder,
        ScenarioKind::Refund,
        ScenarioKind::Reversal,
        ScenarioKind::Chargeback,
        ScenarioKind::Renewal,
        ScenarioKind::TrialSignup,
    ] {
        out.extend(g.scenario(kind));
    }
    out.extend(g.generate(12));
    out
}

fn since() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
}

async fn rest_emulator(deliveries: &[Delivery]) -> RestEmulator {
    let data = RestData::from_deliveries(deliveries, CODE);
    rest::spawn(
        data,
        RestAuth::new(CODE, SecretKey::from("rest-key".to_owned())),
    )
    .await
    .unwrap()
}

fn client(emu: &RestEmulator) -> RestClient {
    RestClient::new(
        &emu.url(),
        CODE,
        SecretKey::from("rest-key".to_owned()),
        Duration::from_secs(10),
    )
    .unwrap()
    .with_retry(RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
    })
}

/// The flows the test apps run with (`spawn_e2e` gets the default configuration).
fn flows() -> Arc<Flows> {
    Arc::new(Flows::new(&Default::default()).unwrap())
}

async fn backfill(e: &support::E2e, emu: &RestEmulator, page_size: usize) -> BackfillReport {
    let job = Backfill::new(e.t.store.clone(), flows(), client(emu));
    let mut seen = Vec::new();
    let report = job
        .run(
            &BackfillOptions {
                since: since(),
                until: None,
                page_size,
            },
            &mut |p| seen.push(p),
        )
        .await
        .unwrap();
    // Progress is reported per page and ends at the total.
    let last = seen.last().copied().unwrap_or_default();
    assert_eq!((last.done, last.total), (report.orders, report.orders));
    report
}

fn reconciler(e: &support::E2e, emu: &RestEmulator) -> Reconciler {
    Reconciler::new(
        e.t.store.clone(),
        flows(),
        client(emu),
        e.t.app.salesforce.clone().unwrap(),
    )
}

fn options() -> ReconcileOptions {
    ReconcileOptions {
        since: since(),
        until: None,
        page_size: 7,
        soql_batch: 4,
    }
}

/// Salesforce's records without ids and timestamps, keyed by external id.
fn state(e: &support::E2e) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (sobject, key) in [
        ("Account", "TwoCheckout_Customer_Ref__c"),
        ("Contact", "TwoCheckout_Customer_Ref__c"),
        ("Opportunity", "TwoCheckout_Order_Ref__c"),
    ] {
        for mut r in e.emu.records(sobject) {
            let k = format!("{sobject}:{}", r[key].as_str().unwrap_or("?"));
            if let Some(m) = r.as_object_mut() {
                m.retain(|f, _| {
                    !matches!(
                        f.as_str(),
                        "Id" | "CreatedDate"
                            | "LastModifiedDate"
                            | "SystemModstamp"
                            | "AccountId"
                            | "LastModifiedById"
                            | "CreatedById"
                            | "OwnerId"
                    )
                });
            }
            assert!(out.insert(k.clone(), r).is_none(), "duplicate {k}");
        }
    }
    out
}

fn opportunity(e: &support::E2e, refno: &str) -> Value {
    e.emu
        .records("Opportunity")
        .into_iter()
        .find(|o| o["TwoCheckout_Order_Ref__c"] == refno)
        .unwrap_or_else(|| panic!("no Opportunity {refno}"))
}

async fn sf(e: &support::E2e, method: Method, path: &str, body: Option<Value>) {
    let client = e.t.app.salesforce.clone().unwrap();
    let path = format!("/services/data/{}/{path}", client.api_version());
    client
        .request_json(method, &path, body.as_ref())
        .await
        .unwrap();
}

#[tokio::test]
async fn backfill_fills_salesforce_and_running_it_again_changes_nothing() {
    let e = support::spawn_e2e(EmulatorConfig::default(), Default::default()).await;
    let deliveries = history(21);
    let emu = rest_emulator(&deliveries).await;
    // A transient 429 on the first page: the client backs off and goes on.
    emu.state().fail_next(2, 429);

    let first = backfill(&e, &emu, 5).await;
    assert!(first.pages > 1, "{first:?}");
    assert_eq!(first.changed, first.orders);
    assert!(first.intents > 0);
    assert!(first.invalid.is_empty());
    e.settled().await;
    let after_first = state(&e);
    let calls = e.emu.calls().api_calls;
    let opportunities = after_first
        .keys()
        .filter(|k| k.starts_with("Opportunity:"))
        .count();
    assert!(opportunities >= 6, "{after_first:#?}");
    // Every completed order of the history is in Salesforce with its net amount.
    let refunded = deliveries
        .iter()
        .find(|d| d.form.get("ORDERSTATUS") == Some("REFUND"))
        .unwrap();
    assert_eq!(
        opportunity(&e, &refunded.reference)["StageName"],
        "Closed Won"
    );

    let second = backfill(&e, &emu, 5).await;
    assert_eq!(
        (second.orders, second.changed, second.intents),
        (first.orders, 0, 0)
    );
    e.settled().await;
    assert_eq!(state(&e), after_first);
    assert_eq!(e.emu.calls().api_calls, calls, "no Salesforce call");

    // 2Checkout, the ledger and Salesforce agree.
    let report = reconciler(&e, &emu).run(&options(), false).await.unwrap();
    let lines: Vec<String> = report.drift.iter().map(|d| d.line()).collect();
    assert!(significant(&report.drift).is_empty(), "{lines:#?}");
    assert_eq!(report.twocheckout_orders, first.orders);
    let order_opportunities = after_first
        .keys()
        .filter(|k| k.starts_with("Opportunity:") && k.matches(':').count() == 1)
        .count();
    assert_eq!(report.salesforce_compared, order_opportunities);
}

#[tokio::test]
async fn backfill_after_live_traffic_agrees_with_it() {
    let e = support::spawn_e2e(EmulatorConfig::default(), Default::default()).await;
    let deliveries = history(33);
    e.send(&deliveries).await;
    e.settled().await;
    let live = state(&e);
    let calls = e.emu.calls().api_calls;
    let emu = rest_emulator(&deliveries).await;
    let report = backfill(&e, &emu, 50).await;
    assert_eq!(report.intents, 0, "{report:?}");
    e.settled().await;
    assert_eq!(state(&e), live);
    assert_eq!(e.emu.calls().api_calls, calls);
    let drift = reconciler(&e, &emu).run(&options(), false).await.unwrap();
    let lines: Vec<String> = drift.drift.iter().map(|d| d.line()).collect();
    assert!(significant(&drift.drift).is_empty(), "{lines:#?}");
}

/// Drift other than Salesforce's rounding of a three-decimal currency (BHD) into a currency
/// field of scale 2: reconcile reports that too (the admin should widen the field), but it
/// is not a sync error and no repair can change it.
fn significant(drift: &[revsync::reconcile::Drift]) -> Vec<&revsync::reconcile::Drift> {
    drift
        .iter()
        .filter(|d| {
            let rounding = d.sides == Sides::LedgerSalesforce
                && d.kind == DriftKind::Differs
                && d.difference
                    .as_deref()
                    .and_then(|x| x.parse::<rust_decimal::Decimal>().ok())
                    .is_some_and(|x| x.abs() < rust_decimal::Decimal::new(5, 3));
            !rounding
        })
        .collect()
}

#[tokio::test]
async fn reconcile_finds_and_repairs_a_gap_and_reports_differing_amounts() {
    let e = support::spawn_e2e(EmulatorConfig::default(), Default::default()).await;
    let deliveries = history(45);
    e.send(&deliveries).await;
    e.settled().await;
    let emu = rest_emulator(&deliveries).await;
    let before = state(&e);
    let refs: Vec<String> = before
        .keys()
        .filter_map(|k| k.strip_prefix("Opportunity:").map(str::to_owned))
        .filter(|r| !r.contains(':')) // order Opportunities, not subscription renewals
        .collect();
    assert!(refs.len() >= 3);
    let (gone, changed, upstream) = (&refs[0], &refs[1], &refs[2]);

    // A gap: an Opportunity deleted in Salesforce. A drift: another's amount edited by hand.
    let id = opportunity(&e, gone)["Id"].as_str().unwrap().to_owned();
    sf(
        &e,
        Method::DELETE,
        &format!("sobjects/Opportunity/{id}"),
        None,
    )
    .await;
    let opp = opportunity(&e, changed);
    let id = opp["Id"].as_str().unwrap().to_owned();
    sf(
        &e,
        Method::PATCH,
        &format!("sobjects/Opportunity/{id}"),
        Some(json!({"Amount": 1.01})),
    )
    .await;
    // And 2Checkout disagreeing with the ledger by one cent.
    let mut expected_gross = None;
    emu.state().with_data(|d| {
        d.update_order(upstream, |o| {
            let g: rust_decimal::Decimal = o["GrossPrice"].to_string().parse().unwrap();
            expected_gross = Some(g);
            o["GrossPrice"] = rest::decimal_json(g + rust_decimal::Decimal::new(1, 2));
        })
    });
    assert!(expected_gross.is_some());

    let report = reconciler(&e, &emu).run(&options(), false).await.unwrap();
    let lines: Vec<String> = report.drift.iter().map(|d| d.line()).collect();
    let find = |sides: Sides, kind: DriftKind, refno: &str| {
        report
            .drift
            .iter()
            .filter(|d| d.sides == sides && d.kind == kind && d.refno == refno)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        find(Sides::LedgerSalesforce, DriftKind::Missing, gone).len(),
        1,
        "{lines:#?}"
    );
    let amount = find(Sides::LedgerSalesforce, DriftKind::Differs, changed);
    assert!(
        amount
            .iter()
            .any(|d| d.field.as_deref() == Some("Amount") && d.actual == Some(json!(1.01))),
        "{lines:#?}"
    );
    let amount = amount
        .iter()
        .find(|d| d.field.as_deref() == Some("Amount"))
        .unwrap();
    let expected: rust_decimal::Decimal = amount
        .expected
        .as_ref()
        .unwrap()
        .to_string()
        .parse()
        .unwrap();
    assert_eq!(
        amount.difference.as_deref(),
        Some(
            (rust_decimal::Decimal::new(101, 2) - expected)
                .normalize()
                .to_string()
                .as_str()
        )
    );
    let upstream_drift = find(Sides::TwoCheckoutLedger, DriftKind::Differs, upstream);
    assert_eq!(upstream_drift.len(), 1, "{lines:#?}");
    assert_eq!(upstream_drift[0].field.as_deref(), Some("total"));
    assert_eq!(upstream_drift[0].difference.as_deref(), Some("-0.01"));
    assert_eq!(significant(&report.drift).len(), 3, "{lines:#?}");

    // Repair: the gap and the edited amount are written again; nothing is deleted.
    let repaired = reconciler(&e, &emu).run(&options(), true).await.unwrap();
    let summary = repaired.repair.clone().unwrap();
    // The gap, the edited amount, and any order with a rounding-only difference.
    let to_fix: std::collections::BTreeSet<&str> = repaired
        .drift
        .iter()
        .filter(|d| d.sides == Sides::LedgerSalesforce && d.kind != DriftKind::Extra)
        .map(|d| d.refno.as_str())
        .collect();
    assert!(to_fix.contains(gone.as_str()) && to_fix.contains(changed.as_str()));
    assert_eq!(summary.salesforce_orders, to_fix.len());
    assert_eq!(summary.ledger_orders_applied, 0);
    e.settled().await;
    let after = state(&e);
    assert_eq!(after.len(), before.len());
    let differing: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| format!("{k}: {:?} → {:?}", before.get(k), after.get(k)))
        .collect();
    assert!(
        differing.is_empty(),
        "Salesforce is back to what the ledger says: {differing:#?}"
    );
    let again = reconciler(&e, &emu).run(&options(), false).await.unwrap();
    let lines: Vec<String> = again.drift.iter().map(|d| d.line()).collect();
    // Only the upstream difference remains: it is 2Checkout's to explain, not Salesforce's.
    let left = significant(&again.drift);
    assert_eq!(left.len(), 1, "{lines:#?}");
    assert_eq!(left[0].sides, Sides::TwoCheckoutLedger);
}

#[tokio::test]
async fn wrong_credentials_are_one_clear_error() {
    let deliveries = history(5);
    let emu = rest_emulator(&deliveries).await;
    let bad = RestClient::new(
        &emu.url(),
        CODE,
        SecretKey::from("not-the-key".to_owned()),
        Duration::from_secs(5),
    )
    .unwrap();
    let err = bad
        .search_orders(&revsync::backfill::OrderSearch {
            start: since(),
            end: None,
            status: None,
            page: 1,
            limit: 10,
        })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        revsync::backfill::RestError::Unauthorized { .. }
    ));
    assert!(err.to_string().contains("twocheckout.secret_key"), "{err}");
    // A persistent 503 gives up after the retries and says so.
    emu.state().fail_next(10, 503);
    let err = client(&emu)
        .order(&deliveries[0].reference)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
}
