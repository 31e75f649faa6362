//! Money end to end: JPY, USD and BHD orders with tax, in a multi-currency and in a
//! single-currency org; refunds and chargebacks; and a property test that the net
//! Opportunity amounts in Salesforce add up to the ledger to the minor unit.

mod support;

use proptest::prelude::*;
use rust_decimal::Decimal;
use sf_emulator::EmulatorConfig;
use std::str::FromStr;
use twocheckout::FormBody;

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn json_dec(v: &serde_json::Value) -> Decimal {
    match v {
        serde_json::Value::Number(n) => Decimal::from_str(&n.to_string())
            .or_else(|_| Decimal::from_scientific(&n.to_string()))
            .unwrap(),
        serde_json::Value::String(s) => dec(s),
        other => panic!("not a number: {other}"),
    }
}

/// A signed IPN for one order line with tax, paid out in USD at `fx_rate`.
fn order(
    refno: &str,
    status: &str,
    currency: &str,
    price: &str,
    vat: &str,
    total: &str,
    fx_rate: &str,
) -> FormBody {
    let mut f = support::ipn_form(refno, refno, "20261130100140");
    f.push_scalar("ORDERSTATUS", status);
    f.push_scalar("MESSAGE_TYPE", status);
    f.push_scalar("AVANGATE_CUSTOMER_REFERENCE", &format!("c-{refno}"));
    f.push_scalar("CUSTOMEREMAIL", &format!("buyer-{refno}@example.com"));
    for (name, value) in [("IPN_PRICE", price), ("IPN_VAT", vat), ("IPN_TOTAL", total)] {
        f.remove(name);
        f.push_array(name, &[value]);
    }
    f.push_scalar("CURRENCY", currency);
    f.push_scalar("IPN_TOTALGENERAL", total);
    f.push_scalar("FX_RATE", fx_rate);
    f.push_scalar("FX_MARKUP", "0");
    f.push_scalar("PAYOUT_CURRENCY", "USD");
    f
}

fn signed(mut f: FormBody) -> FormBody {
    twocheckout::signature::sign(
        &mut f,
        &twocheckout::SecretKey::new(support::SECRET.as_bytes().to_vec()),
        &[twocheckout::Algorithm::Sha3_256],
    );
    f
}

async fn post(e: &support::E2e, f: FormBody) {
    let (status, body) = e.t.post("ipn", signed(f).to_urlencoded()).await;
    assert_eq!(status, 200, "{body}");
}

const CASES: [(&str, &str, &str, &str, &str, &str); 3] = [
    // (refno, currency, unit price, tax, total, rate to USD)
    ("810001", "JPY", "10000", "1000", "11000", "0.0067"),
    ("810002", "USD", "100.00", "19.00", "119.00", "1"),
    ("810003", "BHD", "37.800", "3.780", "41.580", "2.6525"),
];

async fn run_cases(multi_currency: bool) -> support::E2e {
    let emu = EmulatorConfig {
        multi_currency,
        active_currencies: vec!["JPY".into(), "BHD".into()],
        ..EmulatorConfig::default()
    };
    let flows = revsync::flows::FlowsConfig {
        multi_currency,
        ..Default::default()
    };
    let e = support::spawn_e2e(emu, flows).await;
    for (refno, cur, price, vat, total, rate) in CASES {
        post(&e, order(refno, "COMPLETE", cur, price, vat, total, rate)).await;
    }
    e.settled().await;
    e
}

fn opportunity(e: &support::E2e, refno: &str) -> serde_json::Value {
    e.emu
        .records("Opportunity")
        .into_iter()
        .find(|o| o["TwoCheckout_Order_Ref__c"] == refno)
        .unwrap_or_else(|| panic!("no Opportunity {refno}"))
}

#[tokio::test]
async fn a_multi_currency_org_keeps_each_orders_currency_and_minor_units() {
    let e = run_cases(true).await;
    for (refno, cur, _, vat, total, _) in CASES {
        let o = opportunity(&e, refno);
        assert_eq!(o["CurrencyIsoCode"], cur, "{o}");
        assert_eq!(json_dec(&o["Amount"]), dec(total), "{refno} {o}");
        assert_eq!(json_dec(&o["Tax_Amount__c"]), dec(vat), "{refno} {o}");
        assert_eq!(o["StageName"], "Closed Won");
    }
}

#[tokio::test]
async fn a_single_currency_org_gets_the_converted_amount_and_keeps_the_original() {
    let e = run_cases(false).await;
    for (refno, cur, _, _, total, rate) in CASES {
        let o = opportunity(&e, refno);
        assert!(o.get("CurrencyIsoCode").is_none(), "{o}");
        let converted = (dec(total) * dec(rate))
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        assert_eq!(json_dec(&o["Amount"]), converted, "{refno} {o}");
        assert_eq!(o["Original_Currency__c"], cur, "{o}");
        assert_eq!(
            json_dec(&o["Original_Amount__c"]),
            dec(total),
            "{refno} {o}"
        );
    }
}

#[tokio::test]
async fn a_refund_reduces_the_same_opportunity_and_a_chargeback_opens_a_case() {
    let e = support::spawn_e2e(EmulatorConfig::default(), Default::default()).await;
    post(
        &e,
        order(
            "820001", "COMPLETE", "USD", "100.00", "19.00", "119.00", "1",
        ),
    )
    .await;
    let mut refund = order("820001", "REFUND", "USD", "-50.00", "0", "-50.00", "1");
    refund.push_scalar("REFUND_TYPE", "PARTIAL");
    post(&e, refund).await;
    e.settled().await;
    let opps = e.emu.records("Opportunity");
    assert_eq!(opps.len(), 1, "the refund updates the order's Opportunity");
    assert_eq!(json_dec(&opps[0]["Amount"]), dec("69.00"));
    assert_eq!(json_dec(&opps[0]["Refunded_Amount__c"]), dec("-50.00"));

    let mut chargeback = order("820002", "COMPLETE", "USD", "100.00", "0", "100.00", "1");
    post(&e, chargeback.clone()).await;
    chargeback.push_scalar("CHARGEBACK_RESOLUTION", "OPEN");
    chargeback.push_scalar("CHARGEBACK_REASON_CODE", "FRAUD");
    chargeback.push_scalar("MESSAGE_ID", "820002-cb");
    post(&e, chargeback).await;
    e.settled().await;
    let cases = e.emu.records("Case");
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0]["TwoCheckout_Event_Key__c"], "chargeback:820002");
    assert_eq!(e.emu.records("Opportunity").len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, .. ProptestConfig::default() })]

    /// For random streams of orders and refunds, the net Opportunity amounts in Salesforce
    /// add up to the ledger's to the minor unit.
    #[test]
    fn net_amounts_in_salesforce_equal_the_ledger(
        orders in proptest::collection::vec((1u32..100_000, proptest::option::of(1u32..100)), 1..12)
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let e = support::spawn_e2e(EmulatorConfig::default(), Default::default()).await;
            let mut expected = Decimal::ZERO;
            for (i, (cents, refund_pct)) in orders.iter().enumerate() {
                let refno = format!("83{i:04}");
                let total = Decimal::new(i64::from(*cents), 2);
                post(&e, order(&refno, "COMPLETE", "USD", &total.to_string(), "0", &total.to_string(), "1")).await;
                expected += total;
                if let Some(pct) = refund_pct {
                    let refund = (total * Decimal::from(*pct) / Decimal::from(100)).round_dp(2);
                    if refund > Decimal::ZERO {
                        let mut r = order(&refno, "REFUND", "USD", &(-refund).to_string(), "0", &(-refund).to_string(), "1");
                        r.push_scalar("REFUND_TYPE", "PARTIAL");
                        post(&e, r).await;
                        expected -= refund;
                    }
                }
            }
            e.settled().await;
            let in_salesforce: Decimal = e.emu.records("Opportunity").iter().map(|o| json_dec(&o["Amount"])).sum();
            let ledger: Decimal = e.t.store.ledger_records_of_kind("order").await.unwrap().iter().map(|r| {
                let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                json_dec(&v["net"])
            }).sum();
            assert_eq!(in_salesforce, expected);
            assert_eq!(ledger, expected);
        });
    }
}
