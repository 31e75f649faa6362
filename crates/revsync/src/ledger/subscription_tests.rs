use super::*;
use crate::ledger::{self as l, FxTable, LedgerContext, LedgerState};
use proptest::prelude::*;
use std::str::FromStr;
use twocheckout::form::FormBody;
use twocheckout::notification::Kind;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn ctx() -> LedgerContext {
    LedgerContext {
        base_currency: Currency::from_code("USD").unwrap(),
        fx: FxTable::default().with_rate(Currency::from_code("EUR").unwrap(), d("1.10")),
    }
}

pub(crate) struct Sub<'a> {
    pub refno: &'a str,
    pub status: &'a str,
    pub ipn_date: &'a str,
    pub start: &'a str,
    pub exp: &'a str,
    pub renewal: bool,
    pub trial: bool,
    pub price: &'a str,
    pub qty: &'a str,
}

/// An IPN for subscription `SUB1` of customer 77001 in EUR.
pub(crate) fn ipn(s: Sub<'_>) -> Notification {
    let mut f = FormBody::new();
    f.push_scalar("REFNO", s.refno);
    f.push_scalar("ORDERSTATUS", s.status);
    f.push_scalar("IPN_DATE", s.ipn_date);
    f.push_scalar("SALEDATE", &format!("{} 00:00:00", &s.start[..10]));
    f.push_scalar("FIRSTNAME", "Ada");
    f.push_scalar("LASTNAME", "Lovelace");
    f.push_scalar("CUSTOMEREMAIL", "ada@example.com");
    f.push_scalar("AVANGATE_CUSTOMER_REFERENCE", "77001");
    f.push_scalar("PAYMETHOD", "Visa/MasterCard");
    f.push_array("ORIGINAL_REFNOEXT", &[if s.renewal { "WEB-1" } else { "" }]);
    f.push_array("IPN_PID", &["4001"]);
    f.push_array("IPN_PNAME", &["Pro plan"]);
    f.push_array("IPN_PCODE", &["PRO"]);
    f.push_array("IPN_QTY", &[s.qty]);
    f.push_array("IPN_PRICE", &[s.price]);
    f.push_array("IPN_TOTAL", &[s.price]);
    f.push_array("IPN_LICENSE_REF", &["SUB1"]);
    f.push_array(
        "IPN_LICENSE_TYPE",
        &[if s.trial { "TRIAL" } else { "REGULAR" }],
    );
    f.push_array("IPN_LICENSE_START", &[s.start]);
    f.push_array("IPN_LICENSE_EXP", &[s.exp]);
    f.push_scalar("CURRENCY", "EUR");
    f.push_scalar("IPN_TOTALGENERAL", s.price);
    Notification::parse(Kind::Ipn, &f).unwrap()
}

/// An LCN for `SUB1`: `(field, value)` pairs over a minimal body.
pub(crate) fn lcn(date: &str, fields: &[(&str, &str)]) -> Notification {
    let mut f = FormBody::new();
    f.push_scalar("LICENSE_CODE", "SUB1");
    f.push_scalar("DATE_UPDATED", date);
    f.push_scalar("AVANGATE_CUSTOMER_REFERENCE", "77001");
    f.push_scalar("EMAIL", "ada@example.com");
    for (k, v) in fields {
        f.push_scalar(k, v);
    }
    Notification::parse(Kind::Lcn, &f).unwrap()
}

fn ins(kind: &str, billed: &str, at: &str) -> Notification {
    let mut f = FormBody::new();
    f.push_scalar("message_type", kind);
    f.push_scalar("timestamp", &format!("{at} EST"));
    f.push_scalar("sale_id", "4774300100");
    f.push_scalar("invoice_id", "4774300105");
    f.push_scalar("payment_type", "credit card");
    f.push_scalar("list_currency", "USD");
    f.push_scalar("cust_currency", "USD");
    f.push_scalar("invoice_cust_amount", "29.00");
    f.push_scalar("customer_email", "bob@example.com");
    f.push_scalar("item_count", "1");
    f.push_scalar("item_name_1", "Pro plan");
    f.push_scalar("item_id_1", "PRO");
    f.push_scalar("item_recurrence_1", "1 Month");
    f.push_scalar("item_rec_install_billed_1", billed);
    Notification::parse(Kind::Ins, &f).unwrap()
}

fn run(stream: &[(i64, Notification)]) -> LedgerState {
    let mut state = LedgerState::default();
    for (id, n) in stream {
        let keys = l::touched(n);
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
        let u = l::apply(&loaded, n, *id, &ctx());
        state = loaded.after(&u);
        if state.subscription.is_none() {
            state.subscription = loaded.subscription;
        }
    }
    state
}

/// The lifecycle of one yearly subscription: bought, renewed, past due twice, recovered,
/// upgraded, then cancelled.
pub(crate) fn lifecycle_stream() -> Vec<Notification> {
    vec![
        ipn(Sub {
            refno: "1001",
            status: "COMPLETE",
            ipn_date: "20240110100000",
            start: "2024-01-10 10:00:00",
            exp: "2025-01-10 10:00:00",
            renewal: false,
            trial: false,
            price: "100.00",
            qty: "1",
        }),
        lcn(
            "2025-01-10 10:05:00",
            &[
                ("STATUS", "PAST DUE"),
                ("DISPATCH_REASON", "LICENCE_PASTDUE"),
                ("EXPIRATION_DATE", "2025-01-10 10:00:00"),
            ],
        ),
        lcn(
            "2025-01-11 10:05:00",
            &[
                ("STATUS", "PAST DUE"),
                ("DISPATCH_REASON", "LICENCE_PASTDUE"),
                ("EXPIRATION_DATE", "2025-01-10 10:00:00"),
            ],
        ),
        ipn(Sub {
            refno: "1002",
            status: "COMPLETE",
            ipn_date: "20250112100000",
            start: "2025-01-10 10:00:00",
            exp: "2026-01-10 10:00:00",
            renewal: true,
            trial: false,
            price: "100.00",
            qty: "1",
        }),
        lcn(
            "2025-03-01 09:00:00",
            &[
                ("STATUS", "ACTIVE"),
                ("DISPATCH_REASON", "LICENCE_CHANGE"),
                ("EXPIRATION_DATE", "2026-01-10 10:00:00"),
                ("PRODUCT_CODE", "PRO"),
                ("QUANTITY", "3"),
                ("NEXT_RENEWAL_PRICE", "300.00"),
                ("NEXT_RENEWAL_CURRENCY", "EUR"),
                ("RECURRING_ENABLED", "1"),
            ],
        ),
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
        ),
    ]
}

#[test]
fn in_order_lifecycle() {
    let stream: Vec<(i64, Notification)> = lifecycle_stream()
        .into_iter()
        .enumerate()
        .map(|(i, n)| (i as i64 + 1, n))
        .collect();
    let s = run(&stream).subscription.unwrap();
    assert_eq!(s.customer_key.as_deref(), Some("77001"));
    assert_eq!(s.status.as_deref(), Some("DISABLED"));
    assert_eq!(s.auto_renew, Some(false));
    assert_eq!(s.renewal_count, 1);
    assert_eq!(s.quantity, Some(3));
    assert_eq!(s.recurring_amount, Some(d("300.00")));
    assert_eq!(s.billing_cycle_months, Some(12));
    assert_eq!(s.rate_order.as_deref(), Some("1002"));
    let keys: Vec<&str> = s.lifecycle.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "cancel:2026-01-10",
            "dunning:2025-01-10",
            "paid:2025-01-10",
            "plan:20250301090000"
        ]
    );
    match &s.lifecycle["dunning:2025-01-10"] {
        Lifecycle::Dunning {
            attempts,
            recovered_by,
            amount,
            ..
        } => {
            assert_eq!(*attempts, 2);
            assert_eq!(recovered_by.as_deref(), Some("order 1002"));
            assert_eq!(*amount, Some(d("100.00")));
        }
        other => panic!("{other:?}"),
    }
    match &s.lifecycle["plan:20250301090000"] {
        Lifecycle::PlanChanged {
            direction,
            from_amount,
            to_amount,
            ..
        } => {
            assert_eq!(*direction, PlanDirection::Upgrade);
            assert_eq!(
                (*from_amount, *to_amount),
                (Some(d("100.00")), Some(d("300.00")))
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(s.past_due_cycles.is_empty());
}

#[test]
fn applying_twice_changes_nothing_and_reports_changed_items() {
    let n = &lifecycle_stream()[0];
    let u1 = l::apply(&LedgerState::default(), n, 1, &ctx());
    assert!(u1.changes.iter().any(|c| matches!(c,
        l::LedgerChange::SubscriptionChanged { reference, items, .. } if reference == "SUB1" && items.is_empty())));
    let state = LedgerState::default().after(&u1);
    let u2 = l::apply(&state, n, 1, &ctx());
    assert!(u2.subscription.is_none());
}

#[test]
fn trial_then_conversion() {
    let trial = ipn(Sub {
        refno: "2001",
        status: "COMPLETE",
        ipn_date: "20250106090000",
        start: "2025-01-06 09:00:00",
        exp: "2025-01-20 09:00:00",
        renewal: false,
        trial: true,
        price: "1.00",
        qty: "1",
    });
    let s = run(&[(1, trial.clone())]).subscription.unwrap();
    assert!(s.trial);
    assert!(!s.is_live());
    let paid = ipn(Sub {
        refno: "2002",
        status: "COMPLETE",
        ipn_date: "20250115090000",
        start: "2025-01-15 09:00:00",
        exp: "2025-02-15 09:00:00",
        renewal: true,
        trial: false,
        price: "29.00",
        qty: "1",
    });
    let s = run(&[(2, paid), (1, trial)]).subscription.unwrap();
    assert!(!s.trial);
    assert_eq!(s.renewal_count, 0, "a conversion is not a renewal");
    assert_eq!(s.billing_cycle_months, Some(1));
    match &s.lifecycle["trial"] {
        Lifecycle::Trial {
            converted_refno, ..
        } => assert_eq!(converted_refno.as_deref(), Some("2002")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &s.lifecycle["paid:2025-01-15"],
        Lifecycle::Paid {
            conversion: true,
            number: 1,
            ..
        }
    ));
}

#[test]
fn legacy_installments_fail_three_times_then_recover() {
    let stream = vec![
        (
            1,
            ins("RECURRING_INSTALLMENT_FAILED", "4", "2025-02-01 10:00:00"),
        ),
        (
            2,
            ins("RECURRING_INSTALLMENT_FAILED", "4", "2025-02-02 10:00:00"),
        ),
        (
            3,
            ins("RECURRING_INSTALLMENT_FAILED", "4", "2025-02-03 10:00:00"),
        ),
        (
            4,
            ins("RECURRING_INSTALLMENT_SUCCESS", "5", "2025-02-04 10:00:00"),
        ),
    ];
    let s = run(&stream).subscription.unwrap();
    assert_eq!(s.reference, "4774300100");
    assert_eq!(s.status.as_deref(), Some("ACTIVE"));
    assert_eq!(s.billing_cycle_months, Some(1));
    match &s.lifecycle["dunning:I5"] {
        Lifecycle::Dunning {
            attempts,
            recovered_by,
            payment_method,
            ..
        } => {
            assert_eq!(*attempts, 3);
            assert_eq!(recovered_by.as_deref(), Some("installment 5"));
            assert_eq!(payment_method.as_deref(), Some("credit card"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.lifecycle.len(), 1);
}

#[test]
fn monthly_amount_in_base_currency() {
    let mut s = SubscriptionRecord::new("X");
    s.recurring_amount = Some(d("120.00"));
    s.currency = Some(Currency::from_code("EUR").unwrap());
    s.billing_cycle_months = Some(12);
    let usd = Currency::from_code("USD").unwrap();
    assert_eq!(
        s.monthly_base_amount(usd, None, &ctx().fx),
        Some(d("11.00"))
    );
    assert_eq!(
        s.monthly_base_amount(usd, Some(d("1.2")), &ctx().fx),
        Some(d("12.00"))
    );
}

/// The derived part of a record (facts are keyed by arrival-order event ids).
fn derived(s: &SubscriptionRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap();
    let m = v.as_object_mut().unwrap();
    for k in ["orders", "lcn", "installments"] {
        m.remove(k);
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any permutation, with duplicates, ids in arrival order: the same derived record.
    #[test]
    fn shuffled_streams_converge(
        order in Just((0..6usize).collect::<Vec<_>>()).prop_shuffle(),
        dups in proptest::collection::vec(0..6usize, 0..4),
    ) {
        let base = lifecycle_stream();
        let in_order: Vec<(i64, Notification)> =
            base.iter().cloned().enumerate().map(|(i, n)| (i as i64 + 1, n)).collect();
        let expected = run(&in_order).subscription.unwrap();

        // Same ids as in order: the whole record is identical.
        let same_ids: Vec<(i64, Notification)> =
            order.iter().chain(dups.iter()).map(|i| (*i as i64 + 1, base[*i].clone())).collect();
        prop_assert_eq!(run(&same_ids).subscription.unwrap(), expected.clone());

        // Ids in arrival order (as the event log assigns them) and resends deduplicated by the
        // log before they reach the ledger: the derived record is identical.
        let mut arrival: Vec<usize> = order.clone();
        arrival.extend(dups.iter().copied());
        let mut seen = std::collections::BTreeSet::new();
        let stream: Vec<(i64, Notification)> = arrival
            .iter()
            .filter(|i| seen.insert(**i))
            .enumerate()
            .map(|(pos, i)| (pos as i64 + 100, base[*i].clone()))
            .collect();
        prop_assert_eq!(derived(&run(&stream).subscription.unwrap()), derived(&expected));
    }
}
