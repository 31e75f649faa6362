//! Subscriptions, dunning and trials end to end: signed 2Checkout notifications → revsync →
//! the Salesforce emulator, asserting the exact resulting records.

mod support;

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::Value;
use sf_emulator::EmulatorConfig;
use tco_emulator::{Delivery, ScenarioKind};
use twocheckout::{FormBody, Kind};

fn at(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

fn delivery(kind: Kind, reference: &str, time: &str, form: FormBody) -> Delivery {
    Delivery {
        kind,
        scenario: ScenarioKind::NewOrder,
        scenario_index: 0,
        reference: reference.to_owned(),
        event_time: at(time),
        message_id: (kind == Kind::Ipn).then_some(254_000_000_000),
        form,
    }
}

struct Order<'a> {
    refno: &'a str,
    time: &'a str,
    start: &'a str,
    exp: &'a str,
    renewal: bool,
    trial: bool,
    price: &'a str,
    qty: &'a str,
}

/// A COMPLETE IPN for subscription `SUB1` (customer 77001, Germany, EUR).
fn ipn(o: Order<'_>) -> Delivery {
    ipn_for("SUB1", "77001", "ada@initech.example", "DE", o)
}

fn ipn_for(sub: &str, customer: &str, email: &str, country: &str, o: Order<'_>) -> Delivery {
    let mut f = FormBody::new();
    f.push_scalar("SALEDATE", o.time);
    f.push_scalar("PAYMENTDATE", o.time);
    f.push_scalar("COMPLETE_DATE", o.time);
    f.push_scalar("REFNO", o.refno);
    f.push_scalar("REFNOEXT", &format!("WEB-{}", o.refno));
    f.push_array("ORIGINAL_REFNOEXT", &[if o.renewal { "WEB-1" } else { "" }]);
    f.push_scalar("ORDERSTATUS", "COMPLETE");
    f.push_scalar("PAYMETHOD", "Visa/MasterCard");
    f.push_scalar("PAYMETHOD_CODE", "CCVISAMC");
    f.push_scalar("FIRSTNAME", "Ada");
    f.push_scalar("LASTNAME", "Lovelace");
    f.push_scalar("COMPANY", "");
    f.push_scalar("COUNTRY_CODE", country);
    f.push_scalar("CUSTOMEREMAIL", email);
    f.push_scalar("AVANGATE_CUSTOMER_REFERENCE", customer);
    f.push_array("IPN_PID", &["4001"]);
    f.push_array("IPN_PNAME", &["Pro plan"]);
    f.push_array("IPN_PCODE", &["PRO"]);
    f.push_array("IPN_QTY", &[o.qty]);
    f.push_array("IPN_PRICE", &[o.price]);
    f.push_array("IPN_TOTAL", &[o.price]);
    f.push_array("IPN_LICENSE_PROD", &["4001"]);
    f.push_array(
        "IPN_LICENSE_TYPE",
        &[if o.trial { "TRIAL" } else { "REGULAR" }],
    );
    f.push_array("IPN_LICENSE_REF", &[sub]);
    f.push_array("IPN_LICENSE_START", &[o.start]);
    f.push_array("IPN_LICENSE_EXP", &[o.exp]);
    f.push_scalar("CURRENCY", "EUR");
    f.push_scalar("IPN_TOTALGENERAL", o.price);
    f.push_scalar("MESSAGE_TYPE", "COMPLETE");
    f.push_scalar("FRAUD_STATUS", "APPROVED");
    f.push_scalar("CHARGEBACK_RESOLUTION", "NONE");
    delivery(Kind::Ipn, o.refno, o.time, f)
}

fn lcn(time: &str, fields: &[(&str, &str)]) -> Delivery {
    let mut f = FormBody::new();
    f.push_scalar("LICENSE_CODE", "SUB1");
    f.push_scalar("FIRST_NAME", "Ada");
    f.push_scalar("LAST_NAME", "Lovelace");
    f.push_scalar("EMAIL", "ada@initech.example");
    f.push_scalar("DATE_UPDATED", time);
    f.push_scalar("AVANGATE_CUSTOMER_REFERENCE", "77001");
    for (k, v) in fields {
        f.push_scalar(k, v);
    }
    delivery(Kind::Lcn, "SUB1", time, f)
}

fn ins(kind: &str, billed: &str, time: &str, message_id: &str) -> Delivery {
    let mut f = FormBody::new();
    f.push_scalar("message_type", kind);
    f.push_scalar("message_id", message_id);
    f.push_scalar("timestamp", &format!("{time} EST"));
    f.push_scalar("md5_hash", "");
    f.push_scalar("vendor_id", "250111206");
    f.push_scalar("sale_id", "4774300100");
    f.push_scalar("invoice_id", &format!("47743001{message_id}"));
    f.push_scalar("recurring", "1");
    f.push_scalar("payment_type", "credit card");
    f.push_scalar("list_currency", "USD");
    f.push_scalar("cust_currency", "USD");
    f.push_scalar("invoice_cust_amount", "29.00");
    f.push_scalar("customer_first_name", "Bob");
    f.push_scalar("customer_last_name", "Slydell");
    f.push_scalar("customer_email", "bob@initech.example");
    f.push_scalar("item_count", "1");
    f.push_scalar("item_name_1", "Pro plan");
    f.push_scalar("item_id_1", "PRO");
    f.push_scalar("item_recurrence_1", "1 Month");
    f.push_scalar("item_rec_install_billed_1", billed);
    delivery(Kind::Ins, "4774300100", time, f)
}

fn first(time: &str) -> Delivery {
    let _ = time;
    ipn(Order {
        refno: "1001",
        time: "2024-01-10 10:00:00",
        start: "2024-01-10 10:00:00",
        exp: "2025-01-10 10:00:00",
        renewal: false,
        trial: false,
        price: "100.00",
        qty: "1",
    })
}

fn renewal() -> Delivery {
    ipn(Order {
        refno: "1002",
        time: "2025-01-10 11:00:00",
        start: "2025-01-10 10:00:00",
        exp: "2026-01-10 10:00:00",
        renewal: true,
        trial: false,
        price: "100.00",
        qty: "1",
    })
}

fn flows() -> revsync::flows::FlowsConfig {
    let mut f = revsync::flows::FlowsConfig::default();
    f.fx = f.fx.clone().with_rate(
        twocheckout::Currency::from_code("EUR").unwrap(),
        "1.10".parse().unwrap(),
    );
    f.subscriptions.task_value_threshold = "50".parse().unwrap();
    f
}

fn by(e: &support::E2e, sobject: &str, key: &str, value: &str) -> Value {
    let found: Vec<Value> = e
        .emu
        .records(sobject)
        .into_iter()
        .filter(|r| r[key] == value)
        .collect();
    assert_eq!(found.len(), 1, "{sobject} {key}={value}: {found:?}");
    found[0].clone()
}

fn keys(e: &support::E2e, sobject: &str, key: &str) -> Vec<String> {
    let mut v: Vec<String> = e
        .emu
        .records(sobject)
        .iter()
        .map(|r| r[key].as_str().unwrap_or_default().to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_renewal_payment_is_a_closed_won_renewal_opportunity_on_the_subscription() {
    let e = support::spawn_e2e(EmulatorConfig::default(), flows()).await;
    e.send(&[first(""), renewal()]).await;
    e.settled().await;
    assert_eq!(
        keys(&e, "Opportunity", "TwoCheckout_Order_Ref__c"),
        ["1001", "SUB1:2025-01-10"]
    );
    let r = by(
        &e,
        "Opportunity",
        "TwoCheckout_Order_Ref__c",
        "SUB1:2025-01-10",
    );
    assert_eq!(r["StageName"], "Closed Won");
    assert_eq!(r["Type"], "Renewal");
    assert_eq!(r["Name"], "Pro plan renewal #1 (2025-01-10)");
    assert_eq!(r["TwoCheckout_Subscription_Ref__c"], "SUB1");
    assert_eq!(r["Amount"], 110.0);
    assert_eq!(r["Original_Amount__c"], 100.0);
    assert_eq!(r["CloseDate"], "2025-01-10");
    let account = by(&e, "Account", "TwoCheckout_Customer_Ref__c", "77001");
    assert_eq!(r["AccountId"], account["Id"]);
    assert_eq!(e.emu.records("Account").len(), 1);
}

#[tokio::test]
async fn renewal_due_opens_the_renewal_opportunity_that_the_payment_then_wins() {
    let e = support::spawn_e2e(EmulatorConfig::default(), flows()).await;
    e.send(&[first("")]).await;
    e.settled().await;
    let today = NaiveDate::from_ymd_opt(2024, 12, 20).unwrap();
    let report = revsync::scheduler::run_renewal_due(e.t.store.as_ref(), &flows(), today)
        .await
        .unwrap();
    assert_eq!(report.raised, 1);
    // Raised once per cycle.
    let again = revsync::scheduler::run_renewal_due(e.t.store.as_ref(), &flows(), today)
        .await
        .unwrap();
    assert_eq!(again.raised, 0);
    e.settled().await;
    let due = by(
        &e,
        "Opportunity",
        "TwoCheckout_Order_Ref__c",
        "SUB1:2025-01-10",
    );
    assert_eq!(due["StageName"], "Prospecting");
    assert_eq!(due["IsClosed"], false);
    assert_eq!(due["CloseDate"], "2025-01-10");
    assert_eq!(due["Amount"], 110.0);
    let task = by(
        &e,
        "Task",
        "TwoCheckout_Event_Key__c",
        "renewal_due:SUB1:2025-01-10",
    );
    assert_eq!(task["Subject"], "Renewal due: subscription SUB1");
    assert_eq!(
        task["WhatId"],
        by(&e, "Account", "TwoCheckout_Customer_Ref__c", "77001")["Id"]
    );

    e.send(&[renewal()]).await;
    e.settled().await;
    let won = by(
        &e,
        "Opportunity",
        "TwoCheckout_Order_Ref__c",
        "SUB1:2025-01-10",
    );
    assert_eq!(won["Id"], due["Id"]);
    assert_eq!(won["StageName"], "Closed Won");
    assert_eq!(e.emu.records("Opportunity").len(), 2);
}

fn change(time: &str, qty: &str, price: &str) -> Delivery {
    lcn(
        time,
        &[
            ("STATUS", "ACTIVE"),
            ("DISPATCH_REASON", "LICENCE_CHANGE"),
            ("EXPIRATION_DATE", "2025-01-10 10:00:00"),
            ("CHANGED_BY", "CUSTOMER"),
            ("PRODUCT_CODE", "PRO"),
            ("PRODUCT_NAME", "Pro plan"),
            ("QUANTITY", qty),
            ("RECURRING_ENABLED", "1"),
            ("NEXT_RENEWAL_PRICE", price),
            ("NEXT_RENEWAL_CURRENCY", "EUR"),
        ],
    )
}

#[tokio::test]
async fn an_upgrade_is_an_upsell_for_the_difference_and_a_task_for_sales() {
    let mut cfg = flows();
    cfg.subscriptions.sales_owner = None;
    let e = support::spawn_e2e(EmulatorConfig::default(), cfg).await;
    e.send(&[first(""), change("2024-03-01 09:00:00", "3", "300.00")])
        .await;
    e.settled().await;
    let upsell = by(
        &e,
        "Opportunity",
        "TwoCheckout_Order_Ref__c",
        "SUB1:upsell:20240301090000",
    );
    assert_eq!(upsell["StageName"], "Closed Won");
    assert_eq!(upsell["Type"], "Upsell");
    assert_eq!(upsell["Original_Amount__c"], 200.0);
    assert_eq!(upsell["Amount"], 220.0);
    assert_eq!(upsell["CloseDate"], "2024-03-01");
    let task = by(
        &e,
        "Task",
        "TwoCheckout_Event_Key__c",
        "upgrade:SUB1:20240301090000",
    );
    assert_eq!(task["Subject"], "Upgrade: subscription SUB1");
    assert_eq!(task["Status"], "Not Started");
    assert_eq!(e.emu.records("Task").len(), 1);
}

#[tokio::test]
async fn a_downgrade_is_a_task_for_customer_success_only() {
    let e = support::spawn_e2e(EmulatorConfig::default(), flows()).await;
    let bought = ipn(Order {
        refno: "1001",
        time: "2024-01-10 10:00:00",
        start: "2024-01-10 10:00:00",
        exp: "2025-01-10 10:00:00",
        renewal: false,
        trial: false,
        price: "100.00",
        qty: "3",
    });
    e.send(&[bought, change("2024-03-01 09:00:00", "1", "100.00")])
        .await;
    e.settled().await;
    let task = by(
        &e,
        "Task",
        "TwoCheckout_Event_Key__c",
        "downgrade:SUB1:20240301090000",
    );
    assert_eq!(task["Subject"], "Downgrade: subscription SUB1");
    assert_eq!(
        task["Priority"], "High",
        "300 EUR per cycle is above the threshold"
    );
    assert!(task["Description"]
        .as_str()
        .unwrap()
        .contains("3 × Pro plan → 1 × Pro plan"));
    assert_eq!(
        keys(&e, "Opportunity", "TwoCheckout_Order_Ref__c"),
        ["1001"]
    );
}

fn cancel() -> Delivery {
    lcn(
        "2025-06-01 09:00:00",
        &[
            ("STATUS", "DISABLED"),
            ("DISPATCH_REASON", "LICENCE_CHANGE"),
            ("EXPIRATION_DATE", "2026-01-10 10:00:00"),
            ("DISABLED", "1"),
            ("RECURRING_ENABLED", "0"),
            ("CHANGED_BY", "CUSTOMER"),
        ],
    )
}

/// `(object, key, fields)` of every record, without ids and timestamps.
fn state(e: &support::E2e) -> Vec<String> {
    let mut out = Vec::new();
    for (sobject, key, fields) in [
        ("Account", "TwoCheckout_Customer_Ref__c", &["Name"][..]),
        ("Contact", "TwoCheckout_Customer_Ref__c", &["Email"][..]),
        (
            "Opportunity",
            "TwoCheckout_Order_Ref__c",
            &["Name", "StageName", "Amount", "CloseDate", "Type"][..],
        ),
        (
            "Task",
            "TwoCheckout_Event_Key__c",
            &["Subject", "Status", "Priority", "Description"][..],
        ),
    ] {
        for r in e.emu.records(sobject) {
            let values: Vec<String> = fields.iter().map(|f| r[*f].to_string()).collect();
            out.push(format!("{sobject} {} {}", r[key], values.join("|")));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_cancellation_is_a_high_priority_task_and_the_renewal_closed_lost() {
    let e = support::spawn_e2e(EmulatorConfig::default(), flows()).await;
    e.send(&[first(""), renewal(), cancel()]).await;
    e.settled().await;
    let task = by(
        &e,
        "Task",
        "TwoCheckout_Event_Key__c",
        "cancellation:SUB1:2026-01-10",
    );
    assert_eq!(task["Priority"], "High");
    assert_eq!(task["Status"], "Not Started");
    assert_eq!(task["Subject"], "Cancellation: subscription SUB1");
    let lost = by(
        &e,
        "Opportunity",
        "TwoCheckout_Order_Ref__c",
        "SUB1:2026-01-10",
    );
    assert_eq!(lost["StageName"], "Closed Lost");
    assert_eq!(lost["IsWon"], false);
    assert_eq!(lost["CloseDate"], "2025-06-01");
    assert_eq!(
        keys(&e, "Opportunity", "TwoCheckout_Order_Ref__c"),
        ["1001", "SUB1:2025-01-10", "SUB1:2026-01-10"]
    );
}

#[tokio::test]
async fn out_of_order_delivery_converges_to_the_in_order_result() {
    let in_order = vec![
        first(""),
        lcn(
            "2025-01-10 10:05:00",
            &[
                ("STATUS", "PAST DUE"),
                ("DISPATCH_REASON", "LICENCE_PASTDUE"),
                ("EXPIRATION_DATE", "2025-01-10 10:00:00"),
            ],
        ),
        renewal(),
        change("2025-03-01 09:00:00", "3", "300.00"),
        cancel(),
    ];
    let a = support::spawn_e2e(EmulatorConfig::default(), flows()).await;
    a.send(&in_order).await;
    a.settled().await;
    let expected = state(&a);
    assert_eq!(expected.len(), 2 + 4 + 3, "{expected:#?}");

    // LCNs before the IPNs, the cancellation before the renewal that preceded it.
    let shuffled = vec![
        in_order[4].clone(),
        in_order[3].clone(),
        in_order[1].clone(),
        in_order[2].clone(),
        in_order[0].clone(),
    ];
    let b = support::spawn_e2e(EmulatorConfig::default(), flows()).await;
    for d in &shuffled {
        b.send(std::slice::from_ref(d)).await;
        b.settled().await;
    }
    assert_eq!(state(&b), expected);
}

#[tokio::test]
async fn three_failed_attempts_then_recovery_is_one_task_with_retry_count_3_closed() {
    let mut emu = EmulatorConfig::default();
    emu.org.file.fields.push(
        serde_json::from_value(serde_json::json!({
            "object": "Task", "name": "Retry_Count__c", "type": "double",
            "precision": 18, "scale": 0
        }))
        .unwrap(),
    );
    let mut cfg = flows();
    cfg.dunning.retry_count_field = Some("Retry_Count__c".into());
    let e = support::spawn_e2e(emu, cfg).await;
    for (i, d) in [
        ins(
            "RECURRING_INSTALLMENT_FAILED",
            "4",
            "2025-02-01 10:00:00",
            "11",
        ),
        ins(
            "RECURRING_INSTALLMENT_FAILED",
            "4",
            "2025-02-02 10:00:00",
            "12",
        ),
        ins(
            "RECURRING_INSTALLMENT_FAILED",
            "4",
            "2025-02-03 10:00:00",
            "13",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        e.send(&[d]).await;
        e.settled().await;
        let tasks = e.emu.records("Task");
        assert_eq!(tasks.len(), 1, "never a second Task");
        assert_eq!(tasks[0]["Retry_Count__c"], (i + 1) as f64);
        assert_eq!(tasks[0]["Status"], "Not Started");
    }
    e.send(&[ins(
        "RECURRING_INSTALLMENT_SUCCESS",
        "5",
        "2025-02-04 10:00:00",
        "14",
    )])
    .await;
    e.settled().await;
    let tasks = e.emu.records("Task");
    assert_eq!(tasks.len(), 1);
    let t = &tasks[0];
    assert_eq!(t["TwoCheckout_Event_Key__c"], "dunning:4774300100:I5");
    assert_eq!(t["Retry_Count__c"], 3.0);
    assert_eq!(t["Status"], "Completed");
    assert_eq!(t["IsClosed"], true);
    assert_eq!(
        t["Subject"],
        "Payment failed: subscription 4774300100 (3 attempts)"
    );
    let description = t["Description"].as_str().unwrap();
    assert!(
        description.contains("Failed amount: 29.00 USD"),
        "{description}"
    );
    assert!(description.contains("Payment method: credit card"));
    assert!(description.contains("Recovered on 2025-02-04 by installment 5"));
}

fn trial_signup(country: &str, sub: &str) -> Delivery {
    ipn_for(
        sub,
        "88001",
        "jo@initech.example",
        country,
        Order {
            refno: "3001",
            time: "2025-01-06 09:00:00",
            start: "2025-01-06 09:00:00",
            exp: "2025-01-20 09:00:00",
            renewal: false,
            trial: true,
            price: "1.00",
            qty: "1",
        },
    )
}

#[tokio::test]
async fn a_trial_is_a_lead_until_it_converts_then_an_account_and_contact_once() {
    let e = support::spawn_e2e(EmulatorConfig::default(), flows()).await;
    e.send(&[trial_signup("FR", "TRIAL1")]).await;
    e.settled().await;
    let lead = by(&e, "Lead", "TwoCheckout_Trial_Ref__c", "TRIAL1");
    assert_eq!(lead["LeadSource"], "2Checkout trial");
    assert_eq!(lead["Company"], "initech.example");
    assert_eq!(lead["Status"], "Open - Not Contacted");
    assert_eq!(lead["LastName"], "Lovelace");
    assert!(lead["Description"]
        .as_str()
        .unwrap()
        .contains("2Checkout trial of Pro plan, subscription TRIAL1, signed up 2025-01-06."));
    assert!(e.emu.records("Contact").is_empty());
    assert!(e.emu.records("Opportunity").is_empty());

    let paid = ipn_for(
        "TRIAL1",
        "88001",
        "jo@initech.example",
        "FR",
        Order {
            refno: "3002",
            time: "2025-01-18 09:00:00",
            start: "2025-01-18 09:00:00",
            exp: "2025-02-18 09:00:00",
            renewal: true,
            trial: false,
            price: "29.00",
            qty: "1",
        },
    );
    e.send(&[paid]).await;
    e.settled().await;
    let lead = by(&e, "Lead", "TwoCheckout_Trial_Ref__c", "TRIAL1");
    assert_eq!(lead["Status"], "Closed - Converted");
    assert_eq!(e.emu.records("Lead").len(), 1);
    assert_eq!(e.emu.records("Contact").len(), 1);
    assert_eq!(e.emu.records("Account").len(), 1);
    let opp = by(
        &e,
        "Opportunity",
        "TwoCheckout_Order_Ref__c",
        "TRIAL1:2025-01-18",
    );
    assert_eq!(opp["Type"], "New Business");
    assert_eq!(opp["StageName"], "Closed Won");
    assert_eq!(e.emu.records("Opportunity").len(), 1);
}

/// revsync (fresh SQLite store) writing to an emulator that is already running.
async fn spawn_on(emu: sf_emulator::Emulator, flows: revsync::flows::FlowsConfig) -> support::E2e {
    use std::sync::Arc;
    let s = support::store::sqlite().await;
    let mut config = support::test_config(&s.url);
    let defaults = EmulatorConfig::default();
    config.salesforce.instance_url = Some(emu.url());
    config.salesforce.client_id = Some(defaults.client_id.clone());
    config.salesforce.client_secret = Some(revsync::config::SecretRef::Value(
        defaults.client_secret.clone(),
    ));
    config.sink.linger_ms = 50;
    config.sink.backoff_base_ms = 10;
    config.sink.backoff_cap_secs = 1;
    config.flows = flows;
    let store: Arc<dyn revsync::store::Store> = Arc::new(s.store.clone());
    let t = support::spawn_app_with(config, store.clone(), store, Some(s)).await;
    support::E2e { t, emu }
}

#[tokio::test]
async fn a_trial_is_assigned_by_region_rule() {
    let emu = sf_emulator::spawn(EmulatorConfig::default()).await.unwrap();
    let emea_rep = emu.insert(
        "User",
        serde_json::json!({
            "LastName": "Emea", "Username": "emea@revsync.example",
            "Email": "emea@revsync.example", "Alias": "emea"
        }),
    );
    let mut cfg = flows();
    cfg.trials
        .regions
        .insert("EMEA".into(), vec!["DE".into(), "FR".into()]);
    cfg.trials.assignment = vec![
        revsync::flows::trials::AssignmentRule {
            countries: vec!["US".into()],
            owner: emu.integration_user_id(),
            ..Default::default()
        },
        revsync::flows::trials::AssignmentRule {
            regions: vec!["EMEA".into()],
            owner: emea_rep.clone(),
            ..Default::default()
        },
    ];
    let e = spawn_on(emu, cfg).await;
    e.send(&[trial_signup("FR", "TRIAL2")]).await;
    e.settled().await;
    let lead = by(&e, "Lead", "TwoCheckout_Trial_Ref__c", "TRIAL2");
    assert_eq!(lead["OwnerId"], emea_rep);
    assert_eq!(lead["Country"], "FR");
}
