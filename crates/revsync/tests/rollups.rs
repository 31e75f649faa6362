//! Rollups and the scheduler: Account rollups over a generated ledger of thousands of
//! customers in several currencies, checked against an independent recomputation to the minor
//! unit; a second run with no change writes nothing; job leases on every store backend.

mod support;

use std::collections::BTreeMap;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use revsync::flows::FlowsConfig;
use revsync::ledger::{self, LedgerState};
use revsync::store::{Micros, RecordWrite, Store};
use rust_decimal::{Decimal, RoundingStrategy};
use sf_emulator::EmulatorConfig;
use twocheckout::notification::Notification;
use twocheckout::{Currency, FormBody, Kind};

const CURRENCIES: [(&str, &str); 5] = [
    ("USD", "1"),
    ("EUR", "1.0873"),
    ("JPY", "0.006712"),
    ("GBP", "1.2645"),
    ("BHD", "2.6596"),
];

fn flows() -> FlowsConfig {
    let mut f = FlowsConfig::default();
    for (code, rate) in CURRENCIES.iter().skip(1) {
        f.fx = f.fx.clone().with_rate(
            Currency::from_code(code).unwrap(),
            Decimal::from_str(rate).unwrap(),
        );
    }
    f
}

/// What the test generated for one customer, in the test's own terms.
#[derive(Default)]
struct Expected {
    /// (amount in minor units, currency index, refund in minor units, day)
    orders: Vec<(i64, usize, i64, u32)>,
    /// (monthly price in minor units, currency index, months)
    subscription: Option<(i64, usize, u32)>,
}

fn amount(minor: i64, currency: usize) -> String {
    let c = Currency::from_code(CURRENCIES[currency].0).unwrap();
    Decimal::new(minor, c.minor_units()).to_string()
}

#[allow(clippy::too_many_arguments)]
fn ipn(
    refno: &str,
    customer: &str,
    status: &str,
    total: &str,
    currency: usize,
    day: u32,
    license: Option<(&str, u32)>,
) -> Notification {
    let mut f = FormBody::new();
    let date = format!("2025-03-{day:02} 10:00:00");
    f.push_scalar("REFNO", refno);
    f.push_scalar("ORDERSTATUS", status);
    f.push_scalar(
        "IPN_DATE",
        &format!("202503{day:02}10000{}", u8::from(status == "REFUND")),
    );
    f.push_scalar("SALEDATE", &date);
    f.push_scalar("COMPLETE_DATE", &date);
    f.push_scalar("CUSTOMEREMAIL", &format!("{customer}@example.com"));
    f.push_scalar("AVANGATE_CUSTOMER_REFERENCE", customer);
    f.push_scalar("CURRENCY", CURRENCIES[currency].0);
    f.push_scalar("IPN_TOTALGENERAL", total);
    if let Some((sub, months)) = license {
        let end = chrono::NaiveDate::from_ymd_opt(2025, 3, day)
            .unwrap()
            .checked_add_months(chrono::Months::new(months))
            .unwrap();
        f.push_array("IPN_PNAME", &["Plan"]);
        f.push_array("IPN_QTY", &["1"]);
        f.push_array("IPN_PRICE", &[total]);
        f.push_array("IPN_LICENSE_REF", &[sub]);
        f.push_array("IPN_LICENSE_TYPE", &["REGULAR"]);
        f.push_array("IPN_LICENSE_START", &[&date]);
        f.push_array("IPN_LICENSE_EXP", &[&format!("{end} 10:00:00")]);
    }
    Notification::parse(Kind::Ipn, &f).unwrap()
}

/// Generates `n` customers' orders, refunds and subscriptions through the ledger; returns the
/// ledger records to store and what the test expects per customer.
fn generate(n: usize, cfg: &FlowsConfig) -> (Vec<RecordWrite>, BTreeMap<String, Expected>) {
    let ctx = cfg.ledger_context();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut records = Vec::new();
    let mut expected = BTreeMap::new();
    let mut refno = 500_000_000u64;
    let mut event = 0i64;
    let write = |kind: &str, key: &str, customer: &str, body: String| RecordWrite {
        kind: kind.into(),
        key: key.into(),
        customer_key: Some(customer.into()),
        body,
        expected_version: None,
    };
    for i in 0..n {
        let customer = format!("C{i:05}");
        let mut exp = Expected::default();
        let mut customer_state = LedgerState::default();
        for k in 0..rng.gen_range(1..=3) {
            refno += 1;
            let currency = rng.gen_range(0..CURRENCIES.len());
            let minor = rng.gen_range(100..5_000_000i64);
            let day = rng.gen_range(1..=28);
            let total = amount(minor, currency);
            let months = [1u32, 12][rng.gen_range(0..2)];
            let sub = format!("S{i:05}");
            let license = (k == 0 && rng.gen_bool(0.5)).then_some((sub.as_str(), months));
            let mut state = LedgerState {
                customer: customer_state.customer.clone(),
                ..LedgerState::default()
            };
            event += 1;
            let r = refno.to_string();
            let u = ledger::apply(
                &state,
                &ipn(&r, &customer, "COMPLETE", &total, currency, day, license),
                event,
                &ctx,
            );
            state = state.after(&u);
            let mut refund_minor = 0;
            if rng.gen_bool(0.2) {
                refund_minor = -rng.gen_range(1..=minor);
                event += 1;
                let u = ledger::apply(
                    &state,
                    &ipn(
                        &r,
                        &customer,
                        "REFUND",
                        &amount(refund_minor, currency),
                        currency,
                        day,
                        None,
                    ),
                    event,
                    &ctx,
                );
                state = state.after(&u);
            }
            let order = state.order.clone().unwrap();
            records.push(write(
                "order",
                &r,
                &customer,
                serde_json::to_string(&order).unwrap(),
            ));
            if let Some(s) = &state.subscription {
                records.push(write(
                    "subscription",
                    &s.reference,
                    &customer,
                    serde_json::to_string(s).unwrap(),
                ));
                exp.subscription = Some((minor, currency, months));
            }
            exp.orders.push((minor, currency, refund_minor, day));
            customer_state.customer = state.customer;
        }
        expected.insert(customer, exp);
    }
    (records, expected)
}

fn round2(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// The test's own arithmetic: every amount converted with the table rate and rounded to the
/// cent, refunds separately (as booked on each Opportunity), MRR rounded once.
fn recompute(e: &Expected) -> (Decimal, Option<Decimal>, Decimal, usize, u32) {
    let rate = |c: usize| Decimal::from_str(CURRENCIES[c].1).unwrap();
    let value = |minor: i64, c: usize| {
        let cur = Currency::from_code(CURRENCIES[c].0).unwrap();
        Decimal::new(minor, cur.minor_units())
    };
    let mut ltv = Decimal::ZERO;
    for (minor, c, refund, _) in &e.orders {
        ltv += round2(value(*minor, *c) * rate(*c)) + round2(value(*refund, *c) * rate(*c));
    }
    let aov = round2(ltv / Decimal::from(e.orders.len()));
    let mrr = e
        .subscription
        .map(|(minor, c, months)| round2(value(minor, c) * rate(c) / Decimal::from(months)))
        .unwrap_or_default();
    let last = e.orders.iter().map(|o| o.3).max().unwrap();
    (ltv, Some(aov), mrr, e.orders.len(), last)
}

fn dec(v: &serde_json::Value) -> Decimal {
    Decimal::from_str(&v.to_string()).unwrap_or_else(|_| panic!("not a number: {v}"))
}

#[tokio::test]
async fn rollups_match_an_independent_recomputation_and_a_second_run_writes_nothing() {
    let cfg = flows();
    let e = support::spawn_e2e(EmulatorConfig::default(), cfg.clone()).await;
    let (records, expected) = generate(2_500, &cfg);
    for chunk in records.chunks(1_000) {
        e.t.store
            .commit_job_effects(chunk, &[], Micros::now())
            .await
            .unwrap();
    }
    for key in expected.keys() {
        e.emu.insert(
            "Account",
            serde_json::json!({ "Name": key, "TwoCheckout_Customer_Ref__c": key }),
        );
    }
    let report = revsync::scheduler::run_rollups(e.t.store.as_ref(), &cfg)
        .await
        .unwrap();
    assert_eq!(report.accounts, 2_500);
    assert_eq!(report.enqueued, 2_500);
    assert_eq!(report.unconverted_orders, 0);
    e.settled().await;

    let accounts: BTreeMap<String, serde_json::Value> = e
        .emu
        .records("Account")
        .into_iter()
        .map(|a| {
            (
                a["TwoCheckout_Customer_Ref__c"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                a,
            )
        })
        .collect();
    for (key, exp) in &expected {
        let a = &accounts[key];
        let (ltv, aov, mrr, count, last) = recompute(exp);
        assert_eq!(dec(&a["Lifetime_Value__c"]), ltv, "{key} lifetime value");
        assert_eq!(Some(dec(&a["Average_Order_Value__c"])), aov, "{key} AOV");
        assert_eq!(dec(&a["MRR__c"]), mrr, "{key} MRR");
        assert_eq!(a["Order_Count__c"], count as f64, "{key} order count");
        assert_eq!(
            a["Last_Purchase_Date__c"],
            format!("2025-03-{last:02}"),
            "{key}"
        );
    }

    let before = e.emu.calls();
    let again = revsync::scheduler::run_rollups(e.t.store.as_ref(), &cfg)
        .await
        .unwrap();
    assert_eq!(again.enqueued, 0);
    e.settled().await;
    assert_eq!(e.emu.calls().api_calls, before.api_calls, "no write calls");
}

async fn leases_run_one_owner_at_a_time(store: &dyn Store) {
    let t = |s: i64| Micros(1_700_000_000_000_000 + s * 1_000_000);
    assert!(store
        .try_lease_job("rollups", "a", t(0), t(60))
        .await
        .unwrap());
    assert!(!store
        .try_lease_job("rollups", "b", t(1), t(61))
        .await
        .unwrap());
    // The holder may extend its own lease; other jobs are independent.
    assert!(store
        .try_lease_job("rollups", "a", t(2), t(62))
        .await
        .unwrap());
    assert!(store
        .try_lease_job("renewal_due", "b", t(2), t(62))
        .await
        .unwrap());
    assert!(store.finish_job("rollups", "a", t(10)).await.unwrap());
    let s = store.job_state("rollups").await.unwrap().unwrap();
    assert_eq!(
        (s.owner, s.last_run, s.last_owner.as_deref()),
        (None, Some(t(10)), Some("a"))
    );
    assert!(store
        .try_lease_job("rollups", "b", t(11), t(71))
        .await
        .unwrap());
    // b dies; once its lease expired, a takes over and b's late finish is refused.
    assert!(!store
        .try_lease_job("rollups", "a", t(70), t(130))
        .await
        .unwrap());
    assert!(store
        .try_lease_job("rollups", "a", t(72), t(132))
        .await
        .unwrap());
    assert!(!store.finish_job("rollups", "b", t(73)).await.unwrap());
    assert!(store.finish_job("rollups", "a", t(74)).await.unwrap());
    assert!(store.job_state("nothing").await.unwrap().is_none());
}

/// Two processes race for the same job many times: exactly one wins each round.
async fn racing_processes_never_both_win(store: std::sync::Arc<dyn Store>) {
    for round in 0..20i64 {
        let now = Micros(1_800_000_000_000_000 + round * 100_000_000);
        let until = Micros(now.0 + 50_000_000);
        let job = format!("race-{round}");
        let (a, b) = tokio::join!(
            store.try_lease_job(&job, "a", now, until),
            store.try_lease_job(&job, "b", now, until)
        );
        assert!(a.unwrap() ^ b.unwrap(), "round {round}");
    }
}

#[tokio::test]
async fn job_leases_on_sqlite() {
    let s = support::store::sqlite().await;
    leases_run_one_owner_at_a_time(&s.store).await;
    racing_processes_never_both_win(std::sync::Arc::new(s.store.clone())).await;
}

#[tokio::test]
async fn job_leases_on_postgres() {
    let Some(s) = support::store::postgres("job_leases_on_postgres").await else {
        return;
    };
    leases_run_one_owner_at_a_time(&s.store).await;
    racing_processes_never_both_win(std::sync::Arc::new(s.store.clone())).await;
}

#[tokio::test]
async fn a_rollup_job_runs_in_one_of_two_schedulers() {
    let s = support::store::sqlite().await;
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(s.store.clone());
    let cfg = flows();
    let a = revsync::scheduler::Scheduler::new(store.clone(), &cfg, "a").unwrap();
    let b = revsync::scheduler::Scheduler::new(store.clone(), &cfg, "b").unwrap();
    // a holds the lease (as if running); b skips the occurrence.
    let now = Micros::now();
    assert!(store
        .try_lease_job("rollups", "a", now, Micros(now.0 + 60_000_000))
        .await
        .unwrap());
    assert!(!b.run_once("rollups").await.unwrap());
    assert!(a.run_once("rollups").await.unwrap());
    assert!(b.run_once("rollups").await.unwrap());
    let state = store.job_state("rollups").await.unwrap().unwrap();
    assert_eq!(state.last_owner.as_deref(), Some("b"));
}
