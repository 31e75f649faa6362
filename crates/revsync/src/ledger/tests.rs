use super::*;
use proptest::prelude::*;
use std::str::FromStr;
use twocheckout::form::FormBody;
use twocheckout::notification::Kind;

fn c(code: &str) -> Currency {
    Currency::from_code(code).unwrap()
}
fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn ctx() -> LedgerContext {
    LedgerContext {
        base_currency: c("USD"),
        fx: FxTable::default()
            .with_rate(c("EUR"), d("1.10"))
            .with_rate(c("JPY"), d("0.0067"))
            .with_rate(c("BHD"), d("2.6596")),
    }
}

/// An IPN form body with the common fields; `extra` overrides / adds fields.
fn ipn(
    refno: &str,
    status: &str,
    total: &str,
    currency: &str,
    extra: &[(&str, &str)],
) -> Notification {
    let mut f = FormBody::new();
    let mut scalars: Vec<(&str, String)> = vec![
        ("REFNO", refno.into()),
        ("ORDERSTATUS", status.into()),
        ("IPN_DATE", "20240301120000".into()),
        ("SALEDATE", "2024-03-01 10:00:00".into()),
        ("FIRSTNAME", "Ada".into()),
        ("LASTNAME", "Lovelace".into()),
        ("COMPANY", "Analytical Engines Ltd".into()),
        ("CUSTOMEREMAIL", "Ada@Example.com".into()),
        ("COUNTRY_CODE", "gb".into()),
        ("AVANGATE_CUSTOMER_REFERENCE", "77001".into()),
        ("CURRENCY", currency.into()),
        ("IPN_TOTALGENERAL", total.into()),
    ];
    for (k, v) in extra {
        match scalars.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = (*v).into(),
            None => scalars.push((k, (*v).into())),
        }
    }
    for (k, v) in &scalars {
        if !v.is_empty() || *k == "COMPANY" {
            f.push_scalar(k, v);
        }
    }
    Notification::parse(Kind::Ipn, &f).unwrap()
}

fn run(stream: &[(i64, Notification)]) -> LedgerState {
    let mut state = LedgerState::default();
    for (id, n) in stream {
        let u = apply(&state, n, *id, &ctx());
        state = state.after(&u);
    }
    state
}

#[test]
fn complete_order_creates_customer_and_order() {
    let n = ipn(
        "1001",
        "COMPLETE",
        "119.00",
        "USD",
        &[
            ("COMPLETE_DATE", "2024-03-01 10:05:00"),
            ("PAYMETHOD", "Visa/MasterCard"),
        ],
    );
    let u = apply(&LedgerState::default(), &n, 1, &ctx());
    let o = u.order.as_ref().unwrap();
    assert_eq!(o.status.as_deref(), Some("COMPLETE"));
    assert_eq!(o.total, Some(d("119.00")));
    assert_eq!(o.net, Some(d("119.00")));
    assert_eq!(o.refunded, Decimal::ZERO);
    assert_eq!(o.customer_key.as_deref(), Some("77001"));
    assert_eq!(o.close_date(), NaiveDate::from_ymd_opt(2024, 3, 1));
    let fx = o.fx.as_ref().unwrap();
    assert_eq!((fx.source, fx.rate), (FxSource::SameCurrency, Decimal::ONE));
    let cust = u.customer.as_ref().unwrap();
    assert_eq!(cust.key, "77001");
    assert_eq!(cust.country_code.as_deref(), Some("GB"));
    assert_eq!(cust.normalized_email().as_deref(), Some("ada@example.com"));
    assert_eq!(cust.order_count(), 1);
    assert_eq!(
        u.changes,
        vec![
            LedgerChange::CustomerSeen {
                key: "77001".into()
            },
            LedgerChange::PurchaseHistoryChanged {
                key: "77001".into()
            },
            LedgerChange::OrderPlaced {
                refno: "1001".into(),
                status: Some("COMPLETE".into())
            },
            LedgerChange::OrderCompleted {
                refno: "1001".into()
            },
        ]
    );
}

#[test]
fn same_event_twice_changes_nothing() {
    let n = ipn("1001", "COMPLETE", "10.00", "USD", &[]);
    let first = apply(&LedgerState::default(), &n, 7, &ctx());
    let state = LedgerState::default().after(&first);
    let again = apply(&state, &n, 7, &ctx());
    assert!(again.is_empty(), "{again:?}");

    let refund = ipn(
        "1001",
        "REFUND",
        "-4.00",
        "USD",
        &[("IPN_DATE", "20240302120000")],
    );
    let r1 = apply(&state, &refund, 8, &ctx());
    let state = state.after(&r1);
    assert_eq!(state.order.as_ref().unwrap().refunded, d("-4.00"));
    let r2 = apply(&state, &refund, 8, &ctx());
    assert!(r2.is_empty(), "a refund is never counted twice: {r2:?}");
}

#[test]
fn late_authorization_never_undoes_complete() {
    let auth = ipn(
        "1001",
        "PAYMENT_AUTHORIZED",
        "10.00",
        "USD",
        &[("IPN_DATE", "20240301100000"), ("PAYMETHOD", "Old label")],
    );
    let complete = ipn(
        "1001",
        "COMPLETE",
        "10.00",
        "USD",
        &[("IPN_DATE", "20240301110000"), ("PAYMETHOD", "Visa")],
    );
    let s = run(&[(2, complete), (3, auth)]);
    let o = s.order.unwrap();
    assert_eq!(o.status.as_deref(), Some("COMPLETE"));
    assert_eq!(o.payment_method.unwrap().label.as_deref(), Some("Visa"));
    assert_eq!(o.status_history.len(), 2);
}

#[test]
fn refund_before_complete_converges() {
    let complete = ipn(
        "1001",
        "COMPLETE",
        "50.00",
        "USD",
        &[("IPN_DATE", "20240301110000")],
    );
    let refund = ipn(
        "1001",
        "REFUND",
        "-20.00",
        "USD",
        &[("IPN_DATE", "20240305110000")],
    );
    let in_order = run(&[(1, complete.clone()), (2, refund.clone())]);
    let reversed = run(&[(2, refund.clone()), (1, complete.clone())]);
    assert_eq!(in_order, reversed);
    let o = in_order.order.unwrap();
    assert_eq!(o.status.as_deref(), Some("REFUND"));
    assert_eq!(o.total, Some(d("50.00")));
    assert_eq!(o.refunded, d("-20.00"));
    assert_eq!(o.net, Some(d("30.00")));

    // The refund alone: completed only once the order data arrives.
    let only_refund = apply(&LedgerState::default(), &refund, 2, &ctx());
    assert!(!only_refund.order.as_ref().unwrap().is_completed());
    let u = apply(
        &LedgerState::default().after(&only_refund),
        &complete,
        1,
        &ctx(),
    );
    assert!(u.changes.contains(&LedgerChange::OrderCompleted {
        refno: "1001".into()
    }));
}

#[test]
fn reversal_nets_to_zero_and_chargeback_opens() {
    let complete = ipn("1001", "COMPLETE", "30.00", "USD", &[]);
    let reversal = ipn(
        "1001",
        "REVERSED",
        "-30.00",
        "USD",
        &[("IPN_DATE", "20240302000000")],
    );
    let cb = ipn(
        "1001",
        "COMPLETE",
        "30.00",
        "USD",
        &[
            ("IPN_DATE", "20240303000000"),
            ("CHARGEBACK_RESOLUTION", "OPEN"),
            ("CHARGEBACK_REASON_CODE", "FRAUD"),
        ],
    );
    let s = run(&[(1, complete), (2, reversal)]);
    let o = s.order.clone().unwrap();
    assert_eq!(o.status.as_deref(), Some("REVERSED"));
    assert_eq!(o.net, Some(d("0.00")));
    let u = apply(&s, &cb, 3, &ctx());
    assert!(u.changes.contains(&LedgerChange::Chargeback {
        refno: "1001".into(),
        resolution: "OPEN".into(),
        reason_code: Some("FRAUD".into()),
        opened: true
    }));
    // A chargeback never moves the status back.
    assert_eq!(u.order.unwrap().status.as_deref(), Some("REVERSED"));
}

#[test]
fn test_orders_are_flagged_and_not_purchases() {
    let n = ipn("1001", "COMPLETE", "10.00", "USD", &[("TEST_ORDER", "1")]);
    let u = apply(&LedgerState::default(), &n, 1, &ctx());
    assert!(u.test);
    assert!(u.order.as_ref().unwrap().test);
    assert_eq!(u.customer.as_ref().unwrap().order_count(), 0);
}

#[test]
fn fx_sources_in_priority_order() {
    // Configured table.
    let eur = ipn("2001", "COMPLETE", "100.00", "EUR", &[]);
    let o = apply(&LedgerState::default(), &eur, 1, &ctx())
        .order
        .unwrap();
    let fx = o.fx.unwrap();
    assert_eq!(fx.source, FxSource::ConfiguredTable);
    assert_eq!(fx.total, Some(d("110.00")));

    // 2Checkout's own rate when the payout currency is the base currency.
    let eur2 = ipn(
        "2002",
        "COMPLETE",
        "100.00",
        "EUR",
        &[
            ("FX_RATE", "1.056"),
            ("FX_MARKUP", "4"),
            ("PAYOUT_CURRENCY", "USD"),
        ],
    );
    let fx = apply(&LedgerState::default(), &eur2, 1, &ctx())
        .order
        .unwrap()
        .fx
        .unwrap();
    assert_eq!(fx.source, FxSource::TwoCheckout);
    assert_eq!(fx.rate, d("1.1"));
    assert_eq!(fx.total, Some(d("110.00")));

    // Payout in another currency and no table rate: missing, said so, nothing invented.
    let gbp = ipn(
        "2003",
        "COMPLETE",
        "100.00",
        "GBP",
        &[("FX_RATE", "1.2"), ("PAYOUT_CURRENCY", "EUR")],
    );
    let u = apply(&LedgerState::default(), &gbp, 1, &ctx());
    assert!(u.order.as_ref().unwrap().fx.is_none());
    assert!(u.changes.contains(&LedgerChange::FxRateMissing {
        refno: "2003".into(),
        currency: c("GBP"),
        base_currency: c("USD")
    }));
}

#[test]
fn minor_units_per_currency() {
    let jpy = ipn("3001", "COMPLETE", "1500.00", "JPY", &[]);
    let o = apply(&LedgerState::default(), &jpy, 1, &ctx())
        .order
        .unwrap();
    assert_eq!(o.total.unwrap().to_string(), "1500");
    let bhd = ipn("3002", "COMPLETE", "12.3456", "BHD", &[]);
    let o = apply(&LedgerState::default(), &bhd, 1, &ctx())
        .order
        .unwrap();
    assert_eq!(o.total.unwrap().to_string(), "12.346");
}

#[test]
fn customer_fields_take_the_newest_value() {
    let old = ipn(
        "1",
        "COMPLETE",
        "1.00",
        "USD",
        &[("IPN_DATE", "20240101000000"), ("PHONE", "111")],
    );
    let new = ipn(
        "2",
        "COMPLETE",
        "1.00",
        "USD",
        &[("IPN_DATE", "20240201000000"), ("PHONE", "222")],
    );
    let no_phone = ipn(
        "3",
        "COMPLETE",
        "1.00",
        "USD",
        &[("IPN_DATE", "20240301000000")],
    );
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
        let all = [(1, old.clone()), (2, new.clone()), (3, no_phone.clone())];
        let stream: Vec<_> = order.iter().map(|i| all[*i].clone()).collect();
        let mut state = LedgerState::default();
        for (id, n) in &stream {
            // Each notification is a different order: load only the customer.
            let s = LedgerState {
                customer: state.customer.clone(),
                order: None,
                subscription: None,
            };
            let u = apply(&s, n, *id, &ctx());
            state = s.after(&u);
        }
        let cust = state.customer.unwrap();
        assert_eq!(cust.phone.as_deref(), Some("222"), "order {order:?}");
        assert_eq!(cust.order_count(), 3);
        assert_eq!(
            cust.last_seen,
            NaiveDateTime::parse_from_str("2024-03-01 00:00:00", "%Y-%m-%d %H:%M:%S").ok()
        );
    }
}

#[test]
fn touched_keys() {
    let n = ipn("1001", "COMPLETE", "1.00", "USD", &[]);
    assert_eq!(
        touched(&n),
        Touched {
            customer: Some("77001".into()),
            order: Some("1001".into()),
            subscription: None
        }
    );
    let n = ipn(
        "1001",
        "COMPLETE",
        "1.00",
        "USD",
        &[("AVANGATE_CUSTOMER_REFERENCE", "")],
    );
    assert_eq!(touched(&n).customer.as_deref(), Some("ada@example.com"));
}

#[test]
fn records_round_trip_through_json() {
    let s = run(&[
        (1, ipn("1001", "COMPLETE", "10.00", "EUR", &[])),
        (
            2,
            ipn(
                "1001",
                "REFUND",
                "-1.00",
                "EUR",
                &[("IPN_DATE", "20240302000000")],
            ),
        ),
    ]);
    let json = serde_json::to_string(&s).unwrap();
    let back: LedgerState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

// ---------------------------------------------------------------------------------
// Property tests

#[derive(Debug, Clone)]
enum Ev {
    Pending,
    Authorized,
    Complete,
    Refund(i64),
    Reversal,
    Chargeback(&'static str),
}

fn events() -> impl Strategy<Value = Vec<Ev>> {
    let refund = (1i64..5_000).prop_map(Ev::Refund);
    let cb = prop::sample::select(vec!["OPEN", "WON", "LOST"]).prop_map(Ev::Chargeback);
    (
        prop::bool::ANY,
        prop::bool::ANY,
        prop::collection::vec(
            prop::strategy::Union::new(vec![refund.boxed(), cb.boxed()]),
            0..4,
        ),
        prop::bool::ANY,
    )
        .prop_map(|(pending, auth, extra, reversal)| {
            let mut v = Vec::new();
            if pending {
                v.push(Ev::Pending);
            }
            if auth {
                v.push(Ev::Authorized);
            }
            v.push(Ev::Complete);
            v.extend(extra);
            if reversal {
                v.push(Ev::Reversal);
            }
            v
        })
}

fn to_notification(ev: &Ev, i: usize, total_units: i64, currency: Currency) -> Notification {
    let scale = currency.minor_units();
    let total = Decimal::new(total_units, 2).round_dp(scale).to_string();
    let date = format!("202403{:02}120000", i + 1);
    let phone = format!("+1 555 {i:04}");
    let common = |status: &str, amount: String, extra: &[(&str, &str)]| {
        let mut e: Vec<(&str, &str)> = vec![("IPN_DATE", &date), ("PHONE", &phone)];
        e.extend_from_slice(extra);
        ipn("9001", status, &amount, currency.code(), &e)
    };
    match ev {
        Ev::Pending => common("PENDING", total.clone(), &[("PAYMETHOD", "Wire")]),
        Ev::Authorized => common(
            "PAYMENT_AUTHORIZED",
            total.clone(),
            &[("PAYMETHOD", "Card A")],
        ),
        Ev::Complete => common(
            "COMPLETE",
            total.clone(),
            &[
                ("PAYMETHOD", "Card B"),
                ("COMPLETE_DATE", "2024-03-09 10:00:00"),
            ],
        ),
        Ev::Refund(units) => {
            let amount = Decimal::new(-units, 2).round_dp(scale).to_string();
            common("REFUND", amount, &[])
        }
        Ev::Reversal => common("REVERSED", format!("-{total}"), &[]),
        Ev::Chargeback(res) => common(
            "COMPLETE",
            total.clone(),
            &[
                ("CHARGEBACK_RESOLUTION", res),
                ("CHARGEBACK_REASON_CODE", "FRAUD"),
            ],
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// DESIGN §3: out-of-order (and repeated) delivery converges to the in-order result.
    #[test]
    fn shuffled_streams_converge(
        evs in events(),
        total_units in 100i64..1_000_000,
        cur in prop::sample::select(vec!["USD", "JPY", "BHD", "EUR", "GBP"]),
        seed in any::<u64>(),
        dup in any::<bool>(),
    ) {
        let currency = c(cur);
        let stream: Vec<(i64, Notification)> = evs
            .iter()
            .enumerate()
            .map(|(i, e)| (i as i64 + 1, to_notification(e, i, total_units, currency)))
            .collect();
        let expected = run(&stream);

        // Deterministic shuffle from the seed (Fisher-Yates with an LCG).
        let mut shuffled = stream.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = (x >> 33) as usize % (i + 1);
            shuffled.swap(i, j);
        }
        if dup {
            let again = shuffled.clone();
            shuffled.extend(again);
        }
        let got = run(&shuffled);
        prop_assert_eq!(&got, &expected);

        // Money invariants of the final record.
        let o = got.order.unwrap();
        let total = o.total.unwrap();
        prop_assert_eq!(total.scale(), currency.minor_units());
        prop_assert!(o.refunded <= Decimal::ZERO, "refunds are negative");
        prop_assert_eq!(o.net, Some(total + o.refunded));
        let expected_refunded: Decimal = evs.iter().map(|e| match e {
            Ev::Refund(u) => -Decimal::new(*u, 2).round_dp(currency.minor_units()),
            Ev::Reversal => -total,
            _ => Decimal::ZERO,
        }).sum();
        prop_assert_eq!(o.refunded, expected_refunded);
        if let Some(fx) = &o.fx {
            prop_assert_eq!(fx.net, fx.total.map(|t| t + fx.refunded));
            prop_assert_eq!(fx.total.unwrap().scale(), 2);
        } else {
            prop_assert_eq!(cur, "GBP", "only GBP has no rate in the test context");
        }
        let status = OrderStatus::from_wire(o.status.as_deref().unwrap());
        let best = evs.iter().map(|e| match e {
            Ev::Pending => 10,
            Ev::Authorized => 30,
            Ev::Complete | Ev::Chargeback(_) => 50,
            Ev::Refund(_) | Ev::Reversal => 60,
        }).max().unwrap();
        prop_assert_eq!(status.rank(), best);
        // Customer: newest phone wins whatever the order.
        let last = format!("+1 555 {:04}", evs.len() - 1);
        prop_assert_eq!(got.customer.unwrap().phone, Some(last));
    }

    #[test]
    fn conversion_keeps_net_equal_total_plus_refunds(
        total_units in 1i64..100_000_000,
        refunds in prop::collection::vec(1i64..1_000_000, 0..5),
        rate_units in 1i64..1_000_000,
    ) {
        let ctx = LedgerContext {
            base_currency: c("USD"),
            fx: FxTable::default().with_rate(c("EUR"), Decimal::new(rate_units, 4)),
        };
        let mut state = LedgerState::default();
        let n = ipn("5", "COMPLETE", &Decimal::new(total_units, 2).to_string(), "EUR", &[]);
        state = state.after(&apply(&state, &n, 1, &ctx));
        for (i, r) in refunds.iter().enumerate() {
            let n = ipn("5", "REFUND", &Decimal::new(-r, 2).to_string(), "EUR", &[]);
            state = state.after(&apply(&state, &n, i as i64 + 2, &ctx));
        }
        let o = state.order.unwrap();
        let fx = o.fx.unwrap();
        prop_assert_eq!(o.net.unwrap(), o.total.unwrap() + o.refunded);
        prop_assert_eq!(fx.net.unwrap(), fx.total.unwrap() + fx.refunded);
        prop_assert!(fx.refunded <= Decimal::ZERO);
        prop_assert_eq!(fx.net.unwrap().scale(), 2);
    }
}
