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

/// A completed order IPN from the given customer, signed.
fn order_from(
    refno: &str,
    customer_ref: &str,
    email: &str,
    company: &str,
    first: &str,
) -> twocheckout::FormBody {
    let mut f = support::ipn_form(refno, refno, "20261130100140");
    f.push_scalar("AVANGATE_CUSTOMER_REFERENCE", customer_ref);
    f.push_scalar("CUSTOMEREMAIL", email);
    f.push_scalar("COMPANY", company);
    f.push_scalar("FIRSTNAME", first);
    twocheckout::signature::sign(
        &mut f,
        &twocheckout::SecretKey::new(support::SECRET.as_bytes().to_vec()),
        &[twocheckout::Algorithm::Sha256],
    );
    f
}

async fn post_order(e: &support::E2e, form: twocheckout::FormBody) {
    let (status, body) = e.t.post("ipn", form.to_urlencoded()).await;
    assert_eq!(status, 200, "{body}");
    e.settled().await;
}

#[tokio::test]
async fn an_existing_customer_under_another_case_and_legal_suffix_is_linked_not_duplicated() {
    let e = support::spawn_e2e(EmulatorConfig::default(), Default::default()).await;
    let account = e.emu.insert(
        "Account",
        serde_json::json!({"Name": "ACME Inc.", "Website": "https://www.acme.example"}),
    );
    let contact = e.emu.insert(
        "Contact",
        serde_json::json!({"LastName": "Coutinho", "Email": "Alvaro@ACME.example", "AccountId": account}),
    );
    post_order(
        &e,
        order_from(
            "600001",
            "77001",
            "alvaro@acme.example",
            "Acme Ltda.",
            "Álvaro",
        ),
    )
    .await;
    let accounts = e.emu.records("Account");
    let contacts = e.emu.records("Contact");
    assert_eq!(
        (accounts.len(), contacts.len()),
        (1, 1),
        "{accounts:?} {contacts:?}"
    );
    assert_eq!(
        accounts[0]["TwoCheckout_Customer_Ref__c"], "77001",
        "our external id stamped"
    );
    assert_eq!(contacts[0]["Id"].as_str(), Some(contact.as_str()));
    assert_eq!(contacts[0]["TwoCheckout_Customer_Ref__c"], "77001");
    let opp = &e.emu.records("Opportunity")[0];
    assert_eq!(opp["AccountId"].as_str(), Some(account.as_str()));

    // A colleague at the same company (company domain + fuzzy name) joins that Account.
    post_order(
        &e,
        order_from(
            "600002",
            "77002",
            "maria@acme.example",
            "Acme Limited",
            "Maria",
        ),
    )
    .await;
    assert_eq!(e.emu.records("Account").len(), 1);
    let contacts = e.emu.records("Contact");
    assert_eq!(contacts.len(), 2);
    assert!(contacts
        .iter()
        .all(|c| c["AccountId"].as_str() == Some(account.as_str())));
    // Her second order changes nothing in who she is.
    post_order(
        &e,
        order_from(
            "600003",
            "77002",
            "maria@acme.example",
            "Acme Limited",
            "Maria",
        ),
    )
    .await;
    assert_eq!(
        (
            e.emu.records("Account").len(),
            e.emu.records("Contact").len()
        ),
        (1, 2)
    );
    assert_eq!(e.emu.records("Opportunity").len(), 3);
}

#[tokio::test]
async fn a_failed_matching_query_holds_the_new_customer_instead_of_creating_a_duplicate() {
    let e = support::spawn_e2e(EmulatorConfig::default(), Default::default()).await;
    let account = e
        .emu
        .insert("Account", serde_json::json!({"Name": "Globex"}));
    let contact = e.emu.insert(
        "Contact",
        serde_json::json!({"LastName": "Okafor", "Email": "ngozi@globex.example", "AccountId": account}),
    );
    // The matching query fails twice; the writes around it would go through.
    e.emu.faults().fail_queries(2);
    post_order(
        &e,
        order_from("600101", "78001", "ngozi@globex.example", "Globex", "Ngozi"),
    )
    .await;
    let contacts = e.emu.records("Contact");
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(contacts[0]["Id"].as_str(), Some(contact.as_str()));
    assert_eq!(contacts[0]["TwoCheckout_Customer_Ref__c"], "78001");
    assert_eq!(e.emu.records("Account").len(), 1);
    // Both failures were met (a 503 is not counted against the allocation), then one query
    // answered.
    assert_eq!(e.emu.faults().snapshot().failing_queries, 0);
    assert_eq!(e.emu.calls().per_resource["query"], 1);
}

#[tokio::test]
async fn two_customers_of_one_company_share_one_account_and_free_mail_never_matches_by_domain() {
    let e = support::spawn_e2e(EmulatorConfig::default(), Default::default()).await;
    post_order(
        &e,
        order_from(
            "610001",
            "88001",
            "ana@globex.example",
            "Globex GmbH",
            "Ana",
        ),
    )
    .await;
    post_order(
        &e,
        order_from("610002", "88002", "ben@globex.example", "GLOBEX", "Ben"),
    )
    .await;
    let accounts = e.emu.records("Account");
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    let contacts = e.emu.records("Contact");
    assert_eq!(contacts.len(), 2);
    assert!(contacts.iter().all(|c| c["AccountId"] == accounts[0]["Id"]));
    // The second buyer's Opportunity is on the shared Account too.
    assert!(e
        .emu
        .records("Opportunity")
        .iter()
        .all(|o| o["AccountId"] == accounts[0]["Id"]));

    // Two free-mail customers naming the same company are not merged by domain.
    post_order(
        &e,
        order_from("610003", "88003", "carl@gmail.com", "Initech", "Carl"),
    )
    .await;
    post_order(
        &e,
        order_from("610004", "88004", "dora@gmail.com", "Initech", "Dora"),
    )
    .await;
    assert_eq!(e.emu.records("Account").len(), 3);
    assert_eq!(e.emu.records("Contact").len(), 4);
}

#[tokio::test]
async fn a_grey_zone_match_is_held_for_review_until_an_operator_links_it() {
    let e = support::spawn_e2e_with(EmulatorConfig::default(), |c| {
        c.sink.matching.auto_link = 0.999;
        c.sink.matching.review = 0.5;
    })
    .await;
    let account = e
        .emu
        .insert("Account", serde_json::json!({"Name": "Umbrella Software"}));
    e.emu.insert(
        "Contact",
        serde_json::json!({"LastName": "Other", "Email": "other@umbrella.example", "AccountId": account}),
    );
    let (status, _) =
        e.t.post(
            "ipn",
            order_from(
                "630001",
                "99001",
                "zoe@umbrella.example",
                "Umbrella Soft",
                "Zoe",
            )
            .to_urlencoded(),
        )
        .await;
    assert_eq!(status, 200);
    // Held: nothing written for this customer, the case is in the review queue.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let review = e.t.store.identities_by_source("review").await.unwrap();
        if !review.is_empty() {
            assert_eq!(review[0].customer_key, "99001");
            assert_eq!(review[0].account_id.as_deref(), Some(account.as_str()));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never held for review"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(e.emu.records("Opportunity").len(), 0);
    assert_eq!(e.emu.records("Account").len(), 1);

    // The operator links it: the held writes go out, onto the existing Account.
    let now = revsync::store::Micros::now();
    e.t.store
        .save_identities(
            &[revsync::store::Identity {
                customer_key: "99001".into(),
                account_id: Some(account.clone()),
                contact_id: None,
                source: "matched".into(),
            }],
            now,
        )
        .await
        .unwrap();
    assert!(e.t.store.release_partition("99001", now).await.unwrap() > 0);
    e.settled().await;
    assert_eq!(e.emu.records("Account").len(), 1);
    let opps = e.emu.records("Opportunity");
    assert_eq!(opps.len(), 1);
    assert_eq!(opps[0]["AccountId"].as_str(), Some(account.as_str()));
    assert_eq!(
        e.emu.records("Account")[0]["TwoCheckout_Customer_Ref__c"],
        "99001"
    );
}
