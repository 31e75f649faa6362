//! Snapshot tests of the default mappings: IPN form bodies in, Salesforce record intents out
//! (form body → `Notification::parse` → `ledger::apply` → `Flows::plan`).
//!
//! Snapshots live in `src/flows/snapshots/`. After a deliberate change, regenerate with
//! `INSTA_UPDATE=always cargo test -p revsync --test flows_snapshots` and review every diff.

use std::str::FromStr;

use revsync::flows::{Flows, FlowsConfig};
use revsync::ledger::{self, FxTable, LedgerState};
use rust_decimal::Decimal;
use serde_json::json;
use twocheckout::form::FormBody;
use twocheckout::money::Currency;
use twocheckout::notification::{Kind, Notification};

fn c(code: &str) -> Currency {
    Currency::from_code(code).unwrap()
}

fn config(multi_currency: bool) -> FlowsConfig {
    FlowsConfig {
        multi_currency,
        base_currency: c("USD"),
        fx: FxTable::default()
            .with_rate(c("JPY"), Decimal::from_str("0.0067").unwrap())
            .with_rate(c("BHD"), Decimal::from_str("2.6596").unwrap())
            .with_rate(c("EUR"), Decimal::from_str("1.0850").unwrap()),
        ..FlowsConfig::default()
    }
}

/// A realistic IPN body: fields in 2Checkout's order, arrays with `[]`, overrides applied.
fn ipn_body(fields: &[(&str, &str)], arrays: &[(&str, &[&str])]) -> Notification {
    let base: &[(&str, &str)] = &[
        ("SALEDATE", "2024-05-14 09:12:44"),
        ("PAYMENTDATE", "2024-05-14 09:13:02"),
        ("COMPLETE_DATE", "2024-05-14 09:15:40"),
        ("REFNO", "75013411"),
        ("REFNOEXT", ""),
        ("ORDERNO", "1045"),
        ("ORDERSTATUS", "COMPLETE"),
        ("PAYMETHOD", "Visa/MasterCard"),
        ("PAYMETHOD_CODE", "CCVISAMC"),
        ("FIRSTNAME", "Grace"),
        ("LASTNAME", "Hopper"),
        ("COMPANY", "Compiler Works Inc."),
        ("ADDRESS1", "12 Harbor Road"),
        ("ADDRESS2", ""),
        ("CITY", "Arlington"),
        ("STATE", "VA"),
        ("ZIPCODE", "22201"),
        ("COUNTRY", "United States of America"),
        ("COUNTRY_CODE", "us"),
        ("PHONE", "+1 703 555 0100"),
        ("CUSTOMEREMAIL", "Grace.Hopper@compilerworks.example"),
        ("AVANGATE_CUSTOMER_REFERENCE", "880042"),
        ("EXTERNAL_CUSTOMER_REFERENCE", ""),
        ("CURRENCY", "USD"),
        ("IPN_TOTALGENERAL", "119.00"),
        ("IPN_SHIPPING", "0.00"),
        ("FRAUD_STATUS", "APPROVED"),
        ("CHARGEBACK_RESOLUTION", "NONE"),
        ("CHARGEBACK_REASON_CODE", ""),
        ("REFUND_TYPE", ""),
        ("TEST_ORDER", "0"),
        ("IPN_DATE", "20240514091600"),
    ];
    let default_arrays: &[(&str, &[&str])] = &[
        ("IPN_PID", &["4512"]),
        ("IPN_PNAME", &["Team Plan"]),
        ("IPN_PCODE", &["TEAM-1Y"]),
        ("IPN_QTY", &["1"]),
        ("IPN_PRICE", &["100.00"]),
        ("IPN_VAT", &["19.00"]),
        ("IPN_VAT_RATE", &["19.00"]),
        ("IPN_TOTAL", &["119.00"]),
        ("IPN_LICENSE_REF", &["KX81MZ7Q2R"]),
        ("IPN_LICENSE_TYPE", &["REGULAR"]),
    ];
    let mut form = FormBody::new();
    for (k, v) in base {
        let v = fields.iter().find(|(n, _)| n == k).map_or(*v, |(_, v)| *v);
        form.push_scalar(k, v);
    }
    for (k, v) in fields {
        if !base.iter().any(|(n, _)| n == k) {
            form.push_scalar(k, v);
        }
    }
    for (k, v) in default_arrays {
        let v = arrays.iter().find(|(n, _)| n == k).map_or(*v, |(_, v)| *v);
        form.push_array(k, v);
    }
    for (k, v) in arrays {
        if !default_arrays.iter().any(|(n, _)| n == k) {
            form.push_array(k, v);
        }
    }
    form.push_scalar("HASH", "0");
    // Through the wire encoding and back, as ingest sees it.
    let wire = form.to_urlencoded();
    let parsed = FormBody::parse(wire.as_bytes()).unwrap();
    Notification::parse(Kind::Ipn, &parsed).unwrap()
}

/// Applies the notifications in order (event ids 1, 2, …) and returns the ledger changes and
/// intents of the last one.
fn run(flows: &Flows, stream: &[Notification]) -> serde_json::Value {
    let ctx = flows.config().ledger_context();
    let mut state = LedgerState::default();
    let mut last = json!(null);
    for (i, n) in stream.iter().enumerate() {
        let keys = ledger::touched(n);
        let loaded = LedgerState {
            customer: state
                .customer
                .clone()
                .filter(|c| Some(&c.key) == keys.customer.as_ref()),
            order: state
                .order
                .clone()
                .filter(|o| Some(&o.refno) == keys.order.as_ref()),
            subscription: state
                .subscription
                .clone()
                .filter(|s| Some(&s.reference) == keys.subscription.as_ref()),
        };
        let update = ledger::apply(&loaded, n, i as i64 + 1, &ctx);
        let after = loaded.after(&update);
        let intents = flows.plan(&update, &after);
        last = json!({ "changes": update.changes, "intents": intents.intents });
        state = after;
    }
    last
}

fn snapshot(name: &str, value: &serde_json::Value) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../src/flows/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_json_snapshot!(name, value));
}

fn both_modes(name: &str, stream: &[Notification]) {
    for (mode, multi) in [("single", false), ("multi", true)] {
        let flows = Flows::new(&config(multi)).unwrap();
        snapshot(&format!("{name}_{mode}"), &run(&flows, stream));
    }
}

fn refund(refno_total: &str, date: &str) -> Notification {
    ipn_body(
        &[
            ("ORDERSTATUS", "REFUND"),
            ("IPN_TOTALGENERAL", refno_total),
            ("REFUND_TYPE", "PARTIAL"),
            ("IPN_DATE", date),
        ],
        &[("IPN_TOTAL", &[refno_total])],
    )
}

#[test]
fn new_order_usd() {
    both_modes("new_order_usd", &[ipn_body(&[], &[])]);
}

#[test]
fn new_order_jpy() {
    let n = ipn_body(
        &[
            ("CURRENCY", "JPY"),
            ("IPN_TOTALGENERAL", "16500.00"),
            ("REFNO", "75013412"),
        ],
        &[
            ("IPN_PRICE", &["15000.00"]),
            ("IPN_VAT", &["1500.00"]),
            ("IPN_VAT_RATE", &["10.00"]),
            ("IPN_TOTAL", &["16500.00"]),
        ],
    );
    both_modes("new_order_jpy", &[n]);
}

#[test]
fn new_order_bhd_with_tax() {
    let n = ipn_body(
        &[
            ("CURRENCY", "BHD"),
            ("IPN_TOTALGENERAL", "41.580"),
            ("IPN_SHIPPING_TAX", "0.125"),
            ("REFNO", "75013413"),
        ],
        &[
            ("IPN_PRICE", &["37.500"]),
            ("IPN_VAT", &["3.955"]),
            ("IPN_VAT_RATE", &["10.00"]),
            ("IPN_TOTAL", &["41.455"]),
        ],
    );
    both_modes("new_order_bhd_tax", &[n]);
}

#[test]
fn eur_order_with_two_checkout_fx() {
    let n = ipn_body(
        &[
            ("CURRENCY", "EUR"),
            ("IPN_TOTALGENERAL", "119.00"),
            ("FX_RATE", "1.0416"),
            ("FX_MARKUP", "4"),
            ("PAYOUT_CURRENCY", "USD"),
            ("PAYABLE_AMOUNT", "118.99"),
        ],
        &[],
    );
    let flows = Flows::new(&config(false)).unwrap();
    snapshot("eur_order_two_checkout_fx_single", &run(&flows, &[n]));
}

#[test]
fn gbp_order_without_rate() {
    let n = ipn_body(&[("CURRENCY", "GBP"), ("IPN_TOTALGENERAL", "99.00")], &[]);
    let flows = Flows::new(&config(false)).unwrap();
    snapshot("gbp_order_missing_rate_single", &run(&flows, &[n]));
}

#[test]
fn full_refund() {
    let stream = [
        ipn_body(&[], &[]),
        ipn_body(
            &[
                ("ORDERSTATUS", "REFUND"),
                ("IPN_TOTALGENERAL", "-119.00"),
                ("REFUND_TYPE", "TOTAL"),
                ("IPN_DATE", "20240520101010"),
            ],
            &[("IPN_TOTAL", &["-119.00"])],
        ),
    ];
    both_modes("refund_full", &stream);
}

#[test]
fn partial_refunds() {
    let stream = [
        ipn_body(&[], &[]),
        refund("-19.00", "20240520101010"),
        refund("-10.50", "20240521101010"),
    ];
    both_modes("refund_partial", &stream);
}

#[test]
fn refund_before_complete_gives_the_same_opportunity() {
    let flows = Flows::new(&config(false)).unwrap();
    let complete = ipn_body(&[], &[]);
    let r = refund("-19.00", "20240520101010");
    let in_order = run(&flows, &[complete.clone(), r.clone()]);
    let late = run(&flows, &[r, complete]);
    let opp = |v: &serde_json::Value| {
        v["intents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["sobject"] == "Opportunity")
            .cloned()
            .unwrap()
    };
    assert_eq!(opp(&in_order), opp(&late));
    snapshot("refund_before_complete_single", &late);
}

#[test]
fn reversal() {
    let stream = [
        ipn_body(
            &[
                ("ORDERSTATUS", "PAYMENT_AUTHORIZED"),
                ("COMPLETE_DATE", "0000-00-00 00:00:00"),
            ],
            &[],
        ),
        ipn_body(&[], &[]),
        ipn_body(
            &[
                ("ORDERSTATUS", "REVERSED"),
                ("IPN_TOTALGENERAL", "-119.00"),
                ("IPN_DATE", "20240515080000"),
            ],
            &[("IPN_TOTAL", &["-119.00"])],
        ),
    ];
    both_modes("reversal", &stream);
}

#[test]
fn chargeback() {
    let stream = [
        ipn_body(&[], &[]),
        ipn_body(
            &[
                ("CHARGEBACK_RESOLUTION", "OPEN"),
                ("CHARGEBACK_REASON_CODE", "MERCHANDISE_NOT_RECEIVED"),
                ("IPN_DATE", "20240601120000"),
            ],
            &[],
        ),
    ];
    both_modes("chargeback", &stream);
}

#[test]
fn customer_without_company() {
    let n = ipn_body(
        &[
            ("COMPANY", ""),
            ("REFNO", "75013414"),
            ("AVANGATE_CUSTOMER_REFERENCE", ""),
            ("CUSTOMEREMAIL", " Solo.Buyer@gmail.example "),
            ("FIRSTNAME", "Sam"),
            ("LASTNAME", ""),
        ],
        &[],
    );
    let flows = Flows::new(&config(false)).unwrap();
    snapshot("customer_without_company_single", &run(&flows, &[n]));
}

#[test]
fn customer_with_non_ascii_name() {
    let n = ipn_body(
        &[
            ("REFNO", "75013415"),
            ("FIRSTNAME", "José"),
            ("LASTNAME", "Müller-Øvergård"),
            ("COMPANY", "Société Générale d'Électronique S.A."),
            ("ADDRESS1", "R. Álvaro Coutinho 14"),
            ("CITY", "São Paulo"),
            ("COUNTRY", "Brazil"),
            ("COUNTRY_CODE", "br"),
            ("CUSTOMEREMAIL", "jose@societe.example"),
            ("AVANGATE_CUSTOMER_REFERENCE", "880043"),
            ("CURRENCY", "EUR"),
        ],
        &[],
    );
    let flows = Flows::new(&config(true)).unwrap();
    snapshot("customer_non_ascii_multi", &run(&flows, &[n]));
}

#[test]
fn renewal_order() {
    let n = ipn_body(
        &[("REFNO", "75013499")],
        &[("ORIGINAL_REFNOEXT", &["first-order-1"])],
    );
    let flows = Flows::new(&config(false)).unwrap();
    snapshot("renewal_single", &run(&flows, &[n]));
}

#[test]
fn pending_order_only_syncs_the_customer() {
    let n = ipn_body(
        &[
            ("ORDERSTATUS", "PENDING"),
            ("COMPLETE_DATE", "0000-00-00 00:00:00"),
        ],
        &[],
    );
    let flows = Flows::new(&config(false)).unwrap();
    let out = run(&flows, &[n]);
    let objects: Vec<&str> = out["intents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sobject"].as_str().unwrap())
        .collect();
    assert_eq!(objects, ["Account", "Contact"]);
}

#[test]
fn test_orders_are_skipped_unless_configured() {
    let n = ipn_body(&[("TEST_ORDER", "1")], &[]);
    let flows = Flows::new(&config(false)).unwrap();
    assert_eq!(run(&flows, std::slice::from_ref(&n))["intents"], json!([]));
    let cfg = FlowsConfig {
        sync_test_orders: true,
        ..config(false)
    };
    let flows = Flows::new(&cfg).unwrap();
    assert_eq!(run(&flows, &[n])["intents"].as_array().unwrap().len(), 3);
}

#[test]
fn resend_produces_no_intents() {
    let n = ipn_body(&[], &[]);
    let flows = Flows::new(&config(false)).unwrap();
    let ctx = flows.config().ledger_context();
    let first = ledger::apply(&LedgerState::default(), &n, 1, &ctx);
    let state = LedgerState::default().after(&first);
    let again = ledger::apply(&state, &n, 1, &ctx);
    assert!(flows.plan(&again, &state.after(&again)).intents.is_empty());
}

#[test]
fn disabled_flows_produce_nothing() {
    let mut cfg = config(false);
    cfg.orders.enabled = false;
    cfg.customers.enabled = false;
    let flows = Flows::new(&cfg).unwrap();
    assert_eq!(run(&flows, &[ipn_body(&[], &[])])["intents"], json!([]));
}
