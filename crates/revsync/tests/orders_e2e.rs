//! Orders and customers end to end: the 2Checkout emulator's traffic → revsync → the
//! Salesforce emulator, asserting the exact records that result.

mod support;

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::Value;
use sf_emulator::EmulatorConfig;
use tco_emulator::{Generator, GeneratorConfig, ScenarioKind};

fn records(e: &support::E2e, sobject: &str, key: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for r in e.emu.records(sobject) {
        let k = r[key].as_str().unwrap_or_default().to_owned();
        assert!(
            out.insert(k.clone(), r).is_none(),
            "duplicate {sobject} {k}"
        );
    }
    out
}

#[tokio::test]
async fn a_new_customers_first_order_is_a_closed_won_opportunity_on_its_account() {
    let e = support::spawn_e2e(EmulatorConfig::default(), Default::default()).await;
    let mut g = Generator::new(GeneratorConfig::new(11));
    let order = g.scenario(ScenarioKind::NewOrder);
    e.send(&order).await;
    e.settled().await;
    let accounts = e.emu.records("Account");
    let contacts = e.emu.records("Contact");
    let opps = e.emu.records("Opportunity");
    assert_eq!(
        (accounts.len(), contacts.len(), opps.len()),
        (1, 1, 1),
        "{opps:?}"
    );
    let opp = &opps[0];
    assert_eq!(opp["StageName"], "Closed Won");
    assert_eq!(opp["AccountId"], accounts[0]["Id"]);
    assert_eq!(contacts[0]["AccountId"], accounts[0]["Id"]);
    let complete = order.last().unwrap();
    assert_eq!(
        opp["TwoCheckout_Order_Ref__c"].as_str(),
        Some(complete.reference.as_str())
    );
    let total: f64 = complete
        .form
        .get("IPN_TOTALGENERAL")
        .unwrap()
        .parse()
        .unwrap();
    let amount = opp["Amount"]
        .as_f64()
        .or(opp["Original_Amount__c"].as_f64())
        .unwrap();
    assert!(amount > 0.0 && total > 0.0);
    // What each event did is in the sync log.
    let event = e.t.store.event(2).await.unwrap().unwrap();
    assert_eq!(event.reference, complete.reference);
}

/// The final Salesforce state, without ids and timestamps.
fn state(e: &support::E2e) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (sobject, key, fields) in [
        (
            "Account",
            "TwoCheckout_Customer_Ref__c",
            &["Name", "BillingCountry"][..],
        ),
        (
            "Contact",
            "TwoCheckout_Customer_Ref__c",
            &["Email", "LastName"][..],
        ),
        (
            "Opportunity",
            "TwoCheckout_Order_Ref__c",
            &["Amount", "StageName", "Refunded_Amount__c", "CloseDate"][..],
        ),
        ("Case", "TwoCheckout_Event_Key__c", &["Subject"][..]),
    ] {
        for (k, r) in records(e, sobject, key) {
            let values: Vec<String> = fields.iter().map(|f| r[*f].to_string()).collect();
            out.push((sobject.to_owned(), k, values.join("|")));
        }
    }
    out
}

#[tokio::test]
async fn the_same_stream_shuffled_and_with_duplicates_gives_the_same_salesforce_state() {
    let mut g = Generator::new(GeneratorConfig::new(23));
    let mut stream = Vec::new();
    for kind in [
        ScenarioKind::NewOrder,
        ScenarioKind::NewOrder,
        ScenarioKind::Refund,
        ScenarioKind::NewOrder,
        ScenarioKind::Chargeback,
        ScenarioKind::Reversal,
        ScenarioKind::NewOrder,
        ScenarioKind::Refund,
    ] {
        stream.extend(g.scenario(kind));
    }
    let stream: Vec<_> = stream
        .into_iter()
        .filter(|d| d.kind == twocheckout::Kind::Ipn)
        .collect();

    let in_order = support::spawn_e2e(EmulatorConfig::default(), Default::default()).await;
    in_order.send(&stream).await;
    in_order.settled().await;
    let expected = state(&in_order);
    assert!(expected.iter().any(|(o, ..)| o == "Opportunity"));

    let mut shuffled = stream.clone();
    shuffled.extend(stream.iter().step_by(3).cloned());
    shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(5));
    let e = support::spawn_e2e(EmulatorConfig::default(), Default::default()).await;
    e.send(&shuffled).await;
    e.settled().await;
    assert_eq!(state(&e), expected);
}
