//! Snapshot and unit tests of the subscriptions, dunning, trials and rollups flows.

use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::json;
use twocheckout::form::FormBody;
use twocheckout::notification::{Kind, Notification};
use twocheckout::Currency;

use super::trials::AssignmentRule;
use super::*;
use crate::ledger::subscription::tests::{ipn, lcn, lifecycle_stream, Sub};
use crate::ledger::{self, LedgerState};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn config() -> FlowsConfig {
    let mut c = FlowsConfig::default();
    c.fx =
        c.fx.clone()
            .with_rate(Currency::from_code("EUR").unwrap(), d("1.10"));
    c.subscriptions.cs_owner = Some("005CS0000000001AAA".into());
    c.subscriptions.task_value_threshold = d("200");
    c
}

/// Applies the stream in order; returns every step's intents.
fn run(flows: &Flows, stream: &[Notification]) -> Vec<serde_json::Value> {
    let ctx = flows.config().ledger_context();
    let mut state = LedgerState::default();
    let mut out = Vec::new();
    for (i, n) in stream.iter().enumerate() {
        let keys = ledger::touched(n);
        let loaded = LedgerState {
            customer: state
                .customer
                .clone()
                .filter(|c| Some(&c.key) == keys.customer.as_ref()),
            order: None,
            subscription: state
                .subscription
                .clone()
                .filter(|s| Some(&s.reference) == keys.subscription.as_ref()),
        };
        let update = ledger::apply(&loaded, n, i as i64 + 1, &ctx);
        let after = loaded.after(&update);
        let intents = flows.plan(&update, &after).intents;
        out.push(json!({ "step": i + 1, "intents": intents }));
        state = LedgerState {
            customer: after.customer.or(state.customer),
            order: None,
            subscription: after.subscription.or(state.subscription),
        };
    }
    out
}

fn activity_keys(steps: &[serde_json::Value]) -> Vec<String> {
    steps
        .iter()
        .flat_map(|s| s["intents"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["sobject"] == "Task" || i["sobject"] == "Case")
        .map(|i| i["key"]["value"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn subscription_lifecycle_intents() {
    let flows = Flows::new(&config()).unwrap();
    let steps = run(&flows, &lifecycle_stream());
    insta::assert_json_snapshot!("subscription_lifecycle", steps);
    // Two failed attempts of one cycle: the same Task twice, never a second one.
    let keys = activity_keys(&steps);
    assert_eq!(
        keys,
        [
            "dunning:SUB1:2025-01-10",
            "dunning:SUB1:2025-01-10",
            "dunning:SUB1:2025-01-10",
            "upgrade:SUB1:20250301090000",
            "cancellation:SUB1:2026-01-10",
        ]
    );
}

#[test]
fn dunning_as_case_with_collections_queue_and_custom_fields() {
    let mut c = config();
    c.dunning.record = dunning::DunningRecord::Case;
    c.dunning.owner = Some("00G000000000001AAA".into());
    c.dunning.retry_count_field = Some("Retry_Count__c".into());
    let flows = Flows::new(&c).unwrap();
    let steps = run(&flows, &lifecycle_stream()[..4]);
    insta::assert_json_snapshot!("dunning_case", steps[2]);
    let closed = steps[3]["intents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["sobject"] == "Case")
        .unwrap()
        .clone();
    assert_eq!(closed["fields"]["Status"], "Closed");
    assert_eq!(closed["fields"]["Retry_Count__c"], 2);
}

fn trial_stream() -> Vec<Notification> {
    vec![
        ipn(Sub {
            refno: "3001",
            status: "COMPLETE",
            ipn_date: "20250106090000",
            start: "2025-01-06 09:00:00",
            exp: "2025-01-20 09:00:00",
            renewal: false,
            trial: true,
            price: "1.00",
            qty: "5",
        }),
        ipn(Sub {
            refno: "3002",
            status: "COMPLETE",
            ipn_date: "20250118090000",
            start: "2025-01-18 09:00:00",
            exp: "2025-02-18 09:00:00",
            renewal: true,
            trial: false,
            price: "29.00",
            qty: "5",
        }),
    ]
}

#[test]
fn trial_lead_then_conversion() {
    let mut c = config();
    c.trials.campaign_id = Some("701000000000001AAA".into());
    c.trials
        .regions
        .insert("EMEA".into(), vec!["GB".into(), "DE".into()]);
    c.trials.assignment = vec![
        AssignmentRule {
            countries: vec!["US".into()],
            owner: "005US".into(),
            ..Default::default()
        },
        AssignmentRule {
            regions: vec!["EMEA".into()],
            min_seats: Some(5),
            owner: "005EMEA".into(),
            ..Default::default()
        },
    ];
    let flows = Flows::new(&c).unwrap();
    let steps = run(&flows, &trial_stream());
    insta::assert_json_snapshot!("trial_lead_then_conversion", steps);
    // Step 1: only the Lead and its CampaignMember (no Account, Contact or Opportunity).
    let objects: Vec<&str> = steps[0]["intents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sobject"].as_str().unwrap())
        .collect();
    assert_eq!(objects, ["Lead", "CampaignMember"]);
}

#[test]
fn assignment_rules_first_match() {
    let mut t = trials::TrialsFlowConfig::default();
    t.regions.insert("EMEA".into(), vec!["DE".into()]);
    t.assignment = vec![
        AssignmentRule {
            products: vec!["ENT".into()],
            owner: "ent".into(),
            ..Default::default()
        },
        AssignmentRule {
            regions: vec!["EMEA".into()],
            owner: "emea".into(),
            ..Default::default()
        },
        AssignmentRule {
            max_seats: Some(2),
            owner: "small".into(),
            ..Default::default()
        },
    ];
    t.default_owner = Some("default".into());
    assert_eq!(
        t.owner_for((Some("ent"), None), Some("de"), None),
        Some("ent")
    );
    assert_eq!(
        t.owner_for((Some("PRO"), None), Some("de"), None),
        Some("emea")
    );
    assert_eq!(
        t.owner_for((Some("PRO"), None), Some("US"), Some(1)),
        Some("small")
    );
    assert_eq!(
        t.owner_for((Some("PRO"), None), Some("US"), Some(9)),
        Some("default")
    );
}

#[test]
fn lead_company_falls_back_on_domain_then_placeholder() {
    let mut c = ledger::CustomerRecord::new("k");
    c.email = Some("jo@initech.example".into());
    assert_eq!(trials::lead_company(Some(&c)), "initech.example");
    c.email = Some("jo@gmail.com".into());
    assert_eq!(trials::lead_company(Some(&c)), "[not provided]");
    c.company = Some("Initech".into());
    assert_eq!(trials::lead_company(Some(&c)), "Initech");
}

#[test]
fn renewal_due_opens_the_cycle_opportunity_and_a_task_above_threshold() {
    let cfg = config();
    let flows = Flows::new(&cfg).unwrap();
    let ctx = cfg.ledger_context();
    let mut state = LedgerState::default();
    for (i, n) in lifecycle_stream()[..4].iter().enumerate() {
        let u = ledger::apply(&state, n, i as i64 + 1, &ctx);
        state = state.after(&u);
    }
    let sub = state.subscription.unwrap();
    let today = NaiveDate::from_ymd_opt(2025, 12, 20).unwrap();
    let due = subscriptions::renewal_due(flows.config(), &sub, None, today).unwrap();
    assert_eq!(due.key, "SUB1:2026-01-10");
    insta::assert_json_snapshot!("renewal_due", due.intents);
    // Too early, or a test subscription: nothing.
    let early = NaiveDate::from_ymd_opt(2025, 11, 1).unwrap();
    assert!(subscriptions::renewal_due(flows.config(), &sub, None, early).is_none());
}

#[test]
fn rollups_from_the_ledger() {
    let cfg = config();
    let ctx = cfg.ledger_context();
    let mut state = LedgerState::default();
    let mut orders = Vec::new();
    for (i, n) in lifecycle_stream()[..4].iter().enumerate() {
        let u = ledger::apply(&state, n, i as i64 + 1, &ctx);
        if let Some(o) = &u.order {
            orders.push(o.clone());
        }
        state = state.after(&u);
    }
    let subs = vec![state.subscription.unwrap()];
    let r = rollups::compute(&cfg, &orders, &subs);
    let a = &r["77001"];
    // Two orders of 100.00 EUR at 1.10; MRR 100.00 EUR / 12 × 1.10 = 9.1666… → 9.17.
    assert_eq!(a.order_count, 2);
    assert_eq!(a.lifetime_value, d("220.00"));
    assert_eq!(a.average_order_value, Some(d("110.00")));
    assert_eq!(a.mrr, d("9.17"));
    assert_eq!(a.last_purchase_date, NaiveDate::from_ymd_opt(2025, 1, 10));
    insta::assert_json_snapshot!("rollup_intent", rollups::intent(&cfg, a));
}

#[test]
fn flows_config_sections_deny_unknown_fields() {
    let err = toml::from_str::<FlowsConfig>("[dunning]\nrecrod = \"case\"\n").unwrap_err();
    assert!(err.to_string().contains("recrod"), "{err}");
    let ok: FlowsConfig = toml::from_str(
        "[dunning]\nrecord = \"case\"\n[trials]\ncampaign_id = \"701\"\n[[trials.assignment]]\nregions = [\"EMEA\"]\nowner = \"005\"\n[trials.regions]\nEMEA = [\"DE\"]\n[rollups]\nschedule = \"0 */5 * * * *\"\n",
    )
    .unwrap();
    assert_eq!(ok.dunning.record, dunning::DunningRecord::Case);
    assert_eq!(ok.trials.assignment[0].owner, "005");
}

/// An INS recurring message body (legacy platform).
pub(crate) fn ins_form(kind: &str, billed: &str, at: &str) -> FormBody {
    let mut f = FormBody::new();
    f.push_scalar("message_type", kind);
    f.push_scalar("timestamp", &format!("{at} EST"));
    f.push_scalar("sale_id", "4774300100");
    f.push_scalar("invoice_id", "4774300105");
    f.push_scalar("payment_type", "credit card");
    f.push_scalar("cust_currency", "USD");
    f.push_scalar("invoice_cust_amount", "29.00");
    f.push_scalar("customer_email", "bob@initech.example");
    f.push_scalar("item_count", "1");
    f.push_scalar("item_name_1", "Pro plan");
    f.push_scalar("item_recurrence_1", "1 Month");
    f.push_scalar("item_rec_install_billed_1", billed);
    f
}

#[test]
fn three_failed_installments_then_success_is_one_task_closed() {
    let flows = Flows::new(&config()).unwrap();
    let stream: Vec<Notification> = [
        ("RECURRING_INSTALLMENT_FAILED", "4", "2025-02-01 10:00:00"),
        ("RECURRING_INSTALLMENT_FAILED", "4", "2025-02-02 10:00:00"),
        ("RECURRING_INSTALLMENT_FAILED", "4", "2025-02-03 10:00:00"),
        ("RECURRING_INSTALLMENT_SUCCESS", "5", "2025-02-04 10:00:00"),
    ]
    .iter()
    .map(|(k, b, at)| Notification::parse(Kind::Ins, &ins_form(k, b, at)).unwrap())
    .collect();
    let steps = run(&flows, &stream);
    let keys = activity_keys(&steps);
    assert_eq!(keys, ["dunning:4774300100:I5"; 4]);
    let last = steps[3]["intents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["sobject"] == "Task")
        .unwrap()
        .clone();
    insta::assert_json_snapshot!("dunning_recovered_task", last);
}

#[test]
fn a_reactivated_subscription_lcn_only_stream_is_planned_without_orders() {
    let flows = Flows::new(&config()).unwrap();
    let stream = vec![
        lcn(
            "2025-06-01 09:00:00",
            &[
                ("STATUS", "ACTIVE"),
                ("EXPIRATION_DATE", "2026-01-10 10:00:00"),
                ("RECURRING_ENABLED", "1"),
            ],
        ),
        lcn(
            "2025-06-02 09:00:00",
            &[
                ("STATUS", "ACTIVE"),
                ("DISPATCH_REASON", "SCHEDULED_FOR_CANCELATION_ON_DEMAND"),
                ("EXPIRATION_DATE", "2026-01-10 10:00:00"),
            ],
        ),
        lcn(
            "2025-06-03 09:00:00",
            &[
                ("STATUS", "ACTIVE"),
                ("DISPATCH_REASON", "REVERT_CANCELATION_ON_DEMAND"),
                ("EXPIRATION_DATE", "2026-01-10 10:00:00"),
            ],
        ),
    ];
    let steps = run(&flows, &stream);
    let task = |step: usize| {
        steps[step]["intents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["sobject"] == "Task")
            .cloned()
    };
    assert_eq!(task(1).unwrap()["fields"]["Status"], "Not Started");
    assert_eq!(task(2).unwrap()["fields"]["Status"], "Completed");
}
