//! Generated traffic: deterministic, well-formed, realistic.

use rust_decimal::Decimal;
use tco_emulator::{
    Endpoints, Generator, GeneratorConfig, LcnEvent, ScenarioKind, Sender, SenderConfig,
};
use twocheckout::{
    verify, verify_ins, Algorithm, FormBody, Kind, LicenseType, Notification, OrderStatus,
    SecretKey, SubscriptionStatus,
};

fn all_kinds() -> Vec<ScenarioKind> {
    let mut v = vec![
        ScenarioKind::NewOrder,
        ScenarioKind::Refund,
        ScenarioKind::Reversal,
        ScenarioKind::Chargeback,
        ScenarioKind::Renewal,
        ScenarioKind::TrialSignup,
        ScenarioKind::InsInstallment { failed: true },
        ScenarioKind::InsInstallment { failed: false },
    ];
    for e in [
        LcnEvent::Renewal,
        LcnEvent::Expiration,
        LcnEvent::PastDue,
        LcnEvent::Cancellation,
        LcnEvent::Upgrade,
        LcnEvent::Downgrade,
    ] {
        v.push(ScenarioKind::Lcn(e));
    }
    v
}

fn ipn(n: Notification) -> twocheckout::Ipn {
    match n {
        Notification::Ipn(i) => i,
        other => panic!("expected IPN, got {other:?}"),
    }
}

fn parse(d: &tco_emulator::Delivery) -> Notification {
    Notification::parse(d.kind, &d.form)
        .unwrap_or_else(|e| panic!("{:?} {}: {e}", d.scenario, d.reference))
}

#[test]
fn same_seed_same_traffic_other_seed_other_traffic() {
    let a = Generator::new(GeneratorConfig::new(42)).generate(40);
    let b = Generator::new(GeneratorConfig::new(42)).generate(40);
    let c = Generator::new(GeneratorConfig::new(43)).generate(40);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.len() >= 40);
}

#[test]
fn every_scenario_parses_and_amounts_add_up() {
    let mut g = Generator::new(GeneratorConfig::new(9));
    for kind in all_kinds() {
        let ds = g.scenario(kind);
        assert!(!ds.is_empty(), "{kind:?}");
        for d in &ds {
            let n = parse(d);
            assert_eq!(n.reference(), d.reference);
            if let Notification::Ipn(i) = n {
                let cur = i.currency.unwrap();
                let sum: Decimal = i.items.iter().map(|l| l.total.unwrap().amount).sum();
                assert_eq!(sum, i.total.unwrap().amount, "{kind:?}");
                assert!(i
                    .items
                    .iter()
                    .all(|l| l.total.unwrap().round() == l.total.unwrap()));
                assert_eq!(i.fx.payout_currency.unwrap().code(), "USD");
                assert!(i.customer.email.is_some() && i.customer.country_code.is_some());
                assert!(i.total.unwrap().currency == cur);
            }
        }
    }
}

#[test]
fn scenario_shapes() {
    let mut g = Generator::new(GeneratorConfig::new(21));

    let order: Vec<_> = g
        .scenario(ScenarioKind::NewOrder)
        .iter()
        .map(|d| ipn(parse(d)))
        .collect();
    assert_eq!(order.len(), 2);
    assert_eq!(order[0].status, OrderStatus::PaymentAuthorized);
    assert_eq!(order[1].status, OrderStatus::Complete);
    assert_eq!(order[0].reference, order[1].reference);
    assert!(order[1].items.iter().any(|l| l.license.is_some()));

    let refund = ipn(parse(g.scenario(ScenarioKind::Refund).last().unwrap()));
    assert_eq!(refund.status, OrderStatus::Refund);
    assert!(refund.total.unwrap().is_negative() && refund.is_refund());

    let reversal = ipn(parse(g.scenario(ScenarioKind::Reversal).last().unwrap()));
    assert_eq!(reversal.status, OrderStatus::Reversed);
    assert!(reversal.total.unwrap().is_negative());

    let cb = ipn(parse(g.scenario(ScenarioKind::Chargeback).last().unwrap()));
    assert!(cb.chargeback.as_ref().unwrap().reason_code.is_some());

    let renewal = g.scenario(ScenarioKind::Renewal);
    let renewal_ipn = ipn(parse(
        renewal.iter().rfind(|d| d.kind == Kind::Ipn).unwrap(),
    ));
    assert!(renewal_ipn.is_renewal());
    let lcn = renewal.last().unwrap();
    assert_eq!(lcn.kind, Kind::Lcn);
    assert_eq!(lcn.reference, renewal_ipn.license_references()[0]);

    let trial = g.scenario(ScenarioKind::TrialSignup);
    assert!(ipn(parse(&trial[1])).is_trial());
    let Notification::Lcn(l) = parse(&trial[2]) else {
        panic!()
    };
    assert_eq!(l.license_type, Some(LicenseType::Trial));

    let past_due = g.scenario(ScenarioKind::Lcn(LcnEvent::PastDue));
    let Notification::Lcn(l) = parse(past_due.last().unwrap()) else {
        panic!()
    };
    assert_eq!(l.status, Some(SubscriptionStatus::PastDue));

    let ins = g.scenario(ScenarioKind::InsInstallment { failed: true });
    let Notification::Ins(i) = parse(&ins[0]) else {
        panic!()
    };
    assert_eq!(
        i.message_type,
        twocheckout::InsMessageType::RecurringInstallmentFailed
    );
    assert_eq!(i.items.len(), 1);
    assert_eq!(
        ins[0].form.get("key_count").unwrap(),
        ins[0].form.len().to_string()
    );
}

#[test]
fn traffic_has_non_ascii_and_mixed_domains() {
    let ds = Generator::new(GeneratorConfig::new(4)).generate(60);
    let bodies: Vec<String> = ds.iter().map(|d| d.form.to_urlencoded()).collect();
    assert!(ds.iter().any(|d| d.form.entries().iter().any(|e| e
        .value
        .values()
        .iter()
        .any(|v| !v.is_ascii()))));
    assert!(bodies.iter().any(|b| b.contains("gmail.com")
        || b.contains("outlook.com")
        || b.contains("gmx.de")
        || b.contains("yahoo")));
    let kinds: std::collections::HashSet<Kind> = ds.iter().map(|d| d.kind).collect();
    assert_eq!(kinds.len(), 3, "mix should contain IPN, LCN and INS");
}

#[test]
fn prepared_bodies_are_signed_in_place() {
    let mut g = Generator::new(GeneratorConfig::new(8));
    let ds = g.scenario(ScenarioKind::NewOrder);
    let key = SecretKey::from("k");
    let mut cfg = SenderConfig::new(Endpoints::single("http://127.0.0.1:9/"), key.clone());
    cfg.secret_word = SecretKey::from("w");
    let sender = Sender::new(cfg).unwrap();
    let f: FormBody = sender.prepare(&ds[0], 0);
    let names: Vec<&str> = f.entries().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names[0], "GIFT_ORDER");
    assert_eq!(
        &names[names.len() - 3..],
        ["HASH", "SIGNATURE_SHA2_256", "SIGNATURE_SHA3_256"]
    );
    assert_eq!(
        verify(&f, &[key], Algorithm::Sha3_256).unwrap().algorithm,
        Algorithm::Sha3_256
    );
    // MESSAGE_ID and IPN_DATE keep their documented position (replaced in place).
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("MESSAGE_ID") < pos("IPN_LICENSE_REF") && pos("IPN_DATE") > pos("FRAUD_STATUS"));
    assert_ne!(
        f.get("MESSAGE_ID"),
        sender.prepare(&ds[0], 1).get("MESSAGE_ID")
    );

    let ins = g.scenario(ScenarioKind::InsInstallment { failed: false });
    let signed = sender.prepare(&ins[0], 0);
    assert!(verify_ins(&signed, &SecretKey::from("w")).is_ok());
    assert_eq!(signed.entries()[3].name, "md5_hash");
}
