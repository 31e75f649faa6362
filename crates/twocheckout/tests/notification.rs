//! Typed notification parsing, fingerprints and every `FieldError` variant.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use twocheckout::{
    ChangedBy, DispatchReason, FieldError, FormBody, FraudStatus, InsFraudStatus, InsMessageType,
    Kind, LicenseType, Notification, OrderStatus, SubscriptionStatus,
};

fn ipn_body() -> FormBody {
    let mut f = FormBody::new();
    for (k, v) in [
        ("GIFT_ORDER", "0"),
        ("SALEDATE", "2023-06-12 19:46:51"),
        ("PAYMENTDATE", "2023-06-12 19:48:03"),
        ("REFNO", "211153389"),
        ("REFNOEXT", "ext-77"),
        ("ORDERNO", "1342"),
        ("ORDERSTATUS", "COMPLETE"),
        ("PAYMETHOD", "Visa/MasterCard"),
        ("PAYMETHOD_CODE", "CCVISAMC"),
        ("FIRSTNAME", "Álvaro"),
        ("LASTNAME", "Coutinho"),
        ("COMPANY", ""),
        ("ADDRESS1", "R. Álvaro Coutinho 14"),
        ("CITY", "Lisboa"),
        ("COUNTRY", "Portugal"),
        ("COUNTRY_CODE", "pt"),
        ("CUSTOMEREMAIL", "  Alvaro@Example.COM "),
        ("COMPLETE_DATE", "0000-00-00 00:00:00"),
        ("TIMEZONE_OFFSET", "GMT+03:00"),
        ("CURRENCY", "EUR"),
    ] {
        f.push_scalar(k, v);
    }
    f.push_array("IPN_PID", &["40898000", "40898001"]);
    f.push_array("IPN_PNAME", &["Pro plan", "Add-on"]);
    f.push_array("IPN_PCODE", &["PRO", "ADDON"]);
    f.push_array("IPN_QTY", &["1", "2"]);
    f.push_array("IPN_PRICE", &["100.00", "5.0"]);
    f.push_array("IPN_VAT", &["23.00", "2.30"]);
    f.push_array("IPN_VAT_RATE", &["23.0000", "23.0000"]);
    f.push_array("IPN_TOTAL", &["123.00", "12.30"]);
    f.push_array("IPN_LICENSE_PROD", &["40898000", ""]);
    f.push_array("IPN_LICENSE_TYPE", &["REGULAR", ""]);
    f.push_array("IPN_LICENSE_REF", &["XRILXB9ZI3", ""]);
    f.push_array("IPN_LICENSE_EXP", &["2024-06-12 19:48:03", ""]);
    f.push_array("IPN_LICENSE_START", &["2023-06-12 19:48:03", ""]);
    f.push_array("IPN_LICENSE_LIFETIME", &["NO", ""]);
    f.push_array("ORIGINAL_REFNOEXT", &[""]);
    for (k, v) in [
        ("IPN_TOTALGENERAL", "135.30"),
        ("IPN_SHIPPING", "0.00"),
        ("IPN_COMMISSION", "6.7650"),
        ("FX_RATE", "1.0800"),
        ("FX_MARKUP", "4"),
        ("PAYABLE_AMOUNT", "139.00"),
        ("PAYOUT_CURRENCY", "USD"),
        ("IPN_DATE", "20230612194811"),
        ("FRAUD_STATUS", "APPROVED"),
        ("CHARGEBACK_RESOLUTION", "NONE"),
        ("REFUND_TYPE", ""),
        ("MESSAGE_ID", "254498854202"),
        ("MESSAGE_TYPE", "COMPLETE"),
        ("AVANGATE_CUSTOMER_REFERENCE", ""),
        ("EXTERNAL_CUSTOMER_REFERENCE", "cust-9"),
        ("TEST_ORDER", "0"),
        ("SOME_NEW_FIELD", "whatever"),
    ] {
        f.push_scalar(k, v);
    }
    f
}

fn ipn(f: &FormBody) -> twocheckout::Ipn {
    match Notification::parse(Kind::Ipn, f).unwrap() {
        Notification::Ipn(i) => i,
        other => panic!("not an IPN: {other:?}"),
    }
}

fn err(kind: Kind, f: &FormBody) -> FieldError {
    Notification::parse(kind, f).unwrap_err()
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

#[test]
fn ipn_parses_every_group() {
    let n = ipn(&ipn_body());
    assert_eq!(n.reference.as_str(), "211153389");
    assert_eq!(n.status, OrderStatus::Complete);
    assert_eq!(n.fraud_status, Some(FraudStatus::Approved));
    assert_eq!(n.chargeback, None);
    assert!(!n.is_renewal() && !n.is_trial() && !n.is_refund() && !n.test_order);
    assert_eq!(n.complete_date, None);
    assert_eq!(
        n.ipn_date,
        NaiveDate::from_ymd_opt(2023, 6, 12)
            .unwrap()
            .and_hms_opt(19, 48, 11)
    );
    assert_eq!(n.customer.first_name.as_deref(), Some("Álvaro"));
    assert_eq!(n.customer.company, None);
    assert_eq!(n.customer.country_code.as_deref(), Some("PT"));
    assert_eq!(n.customer.external_reference.as_deref(), Some("cust-9"));
    assert_eq!(n.payment.code.as_deref(), Some("CCVISAMC"));
    assert_eq!(n.total.unwrap().to_string(), "135.30 EUR");
    assert_eq!(n.commission.unwrap().amount, dec("6.7650"));
    assert_eq!(n.fx.payable.unwrap().to_string(), "139.00 USD");
    assert_eq!(n.fx.rate, Some(dec("1.08")));
    assert_eq!(n.items.len(), 2);
    let first = &n.items[0];
    assert_eq!(first.quantity, Some(1));
    assert_eq!(first.unit_price.unwrap().amount, dec("100"));
    let lic = first.license.as_ref().unwrap();
    assert_eq!(lic.reference.as_deref(), Some("XRILXB9ZI3"));
    assert_eq!(lic.license_type, Some(LicenseType::Regular));
    assert!(!lic.lifetime);
    assert!(n.items[1].license.is_none());
    assert_eq!(n.tax_total().unwrap().to_string(), "25.30 EUR");
    assert_eq!(n.license_references(), ["XRILXB9ZI3"]);
    let note = Notification::parse(Kind::Ipn, &ipn_body()).unwrap();
    assert_eq!(note.kind(), Kind::Ipn);
    assert_eq!(note.reference(), "211153389");
    assert_eq!(note.customer_key().as_deref(), Some("alvaro@example.com"));
    assert!(!note.is_test());
}

#[test]
fn ipn_renewal_trial_refund_chargeback() {
    let mut f = ipn_body();
    f.remove("ORIGINAL_REFNOEXT");
    f.push_array("ORIGINAL_REFNOEXT", &["ext-1"]);
    f.push_array("IPN_LICENSE_TYPE", &[]);
    f.remove("IPN_LICENSE_TYPE");
    f.push_array("IPN_LICENSE_TYPE", &["TRIAL", ""]);
    f.push_scalar("ORDERSTATUS", "REFUND");
    f.push_scalar("REFUND_TYPE", "PARTIAL");
    f.push_scalar("IPN_TOTALGENERAL", "-12.30");
    f.push_scalar("CHARGEBACK_RESOLUTION", "OPEN");
    f.push_scalar("CHARGEBACK_REASON_CODE", "FRAUD");
    f.push_scalar("AVANGATE_CUSTOMER_REFERENCE", "987654");
    f.push_scalar("TEST_ORDER", "1");
    let n = ipn(&f);
    assert!(n.is_renewal() && n.is_trial() && n.is_refund() && n.test_order);
    assert_eq!(n.original_external_references, ["ext-1"]);
    assert!(n.total.unwrap().is_negative());
    let cb = n.chargeback.as_ref().unwrap();
    assert_eq!(
        (cb.resolution.as_str(), cb.reason_code.as_deref()),
        ("OPEN", Some("FRAUD"))
    );
    let note = Notification::Ipn(n);
    assert_eq!(note.customer_key().as_deref(), Some("987654"));
    assert!(note.is_test());
}

#[test]
fn unknown_values_are_kept() {
    let mut f = ipn_body();
    f.push_scalar("ORDERSTATUS", "BRAND_NEW_STATUS");
    f.push_scalar("FRAUD_STATUS", "under review");
    let n = ipn(&f);
    assert_eq!(n.status, OrderStatus::Unknown("BRAND_NEW_STATUS".into()));
    assert_eq!(n.status.rank(), 0);
    assert_eq!(n.fraud_status, Some(FraudStatus::UnderReview));
}

#[test]
fn status_ranks_only_move_forward() {
    use OrderStatus::*;
    let path = [
        Pending,
        PendingApproval,
        PaymentAuthorized,
        PendingOrderApproval,
        Complete,
        Refund,
    ];
    for w in path.windows(2) {
        assert!(w[0].rank() < w[1].rank(), "{} !< {}", w[0], w[1]);
    }
    assert_eq!(Refund.rank(), Reversed.rank());
    assert_eq!(Canceled.rank(), Refund.rank());
    assert!(Canceled.is_final() && !Complete.is_final());
    assert_eq!(OrderStatus::from_wire("cancelled"), Canceled);
    assert_eq!(OrderStatus::from_wire(" complete "), Complete);
    assert_eq!(
        OrderStatus::from_wire("AUTHRECEIVED").as_str(),
        "AUTHRECEIVED"
    );
    assert_eq!(PaymentAuthorized.rank(), AuthReceived.rank());
}

#[test]
fn fingerprint_ignores_resend_fields_and_amount_formatting() {
    let base = Notification::parse(Kind::Ipn, &ipn_body())
        .unwrap()
        .fingerprint();
    assert_eq!(base.len(), 64);
    let mut resent = ipn_body();
    resent.push_scalar("MESSAGE_ID", "254510700124");
    resent.push_scalar("IPN_DATE", "20230619190629");
    resent.push_scalar("HASH", "abc");
    resent.push_scalar("CHARGEBACK_RESOLUTION", "");
    resent.push_scalar("IPN_TOTALGENERAL", "135.3");
    resent.remove("IPN_TOTAL");
    resent.push_array("IPN_TOTAL", &["123", "12.300"]);
    resent.push_scalar("CUSTOMEREMAIL", "other@example.com");
    assert_eq!(
        Notification::parse(Kind::Ipn, &resent)
            .unwrap()
            .fingerprint(),
        base
    );
    for (field, value) in [
        ("ORDERSTATUS", "REFUND"),
        ("REFNO", "211153390"),
        ("MESSAGE_TYPE", "PENDING"),
        ("FRAUD_STATUS", "DENIED"),
        ("CHARGEBACK_RESOLUTION", "OPEN"),
        ("REFUND_TYPE", "FULL"),
        ("CURRENCY", "USD"),
        ("IPN_TOTALGENERAL", "135.31"),
    ] {
        let mut f = ipn_body();
        f.push_scalar(field, value);
        assert_ne!(
            Notification::parse(Kind::Ipn, &f).unwrap().fingerprint(),
            base,
            "{field}"
        );
    }
    let mut line = ipn_body();
    line.remove("IPN_TOTAL");
    line.push_array("IPN_TOTAL", &["123.00", "12.31"]);
    assert_ne!(
        Notification::parse(Kind::Ipn, &line).unwrap().fingerprint(),
        base
    );
}

fn lcn_body() -> FormBody {
    let mut f = FormBody::new();
    for (k, v) in [
        ("LICENSE_CODE", "XRILXB9ZI3"),
        ("FIRST_NAME", "Zoë"),
        ("LAST_NAME", "Smith"),
        ("EMAIL", "ZOE@example.org"),
        ("EXPIRATION_DATE", "2024-06-12 19:48:03"),
        ("DATE_UPDATED", "2023-06-12 19:50:00"),
        ("STATUS", "PAST DUE"),
        ("DISPATCH_REASON", "LICENCE_PASTDUE"),
        ("DISABLED", "0"),
        ("LICENSE_TYPE", "REGULAR"),
        ("CHANGED_BY", "SYSTEM"),
        ("PRODUCT_CODE", "PRO"),
        ("QUANTITY", "3"),
        ("RECURRING_ENABLED", "1"),
        ("NEXT_RENEWAL_PRICE", "99.00"),
        ("NEXT_RENEWAL_CURRENCY", "usd"),
        ("TEST", "1"),
    ] {
        f.push_scalar(k, v);
    }
    f
}

#[test]
fn lcn_parses_and_fingerprints() {
    let note = Notification::parse(Kind::Lcn, &lcn_body()).unwrap();
    let Notification::Lcn(n) = &note else {
        panic!()
    };
    assert_eq!(n.status, Some(SubscriptionStatus::PastDue));
    assert_eq!(n.dispatch_reason, Some(DispatchReason::PastDue));
    assert_eq!(n.changed_by, Some(ChangedBy::System));
    assert_eq!(n.disabled, Some(false));
    assert_eq!(n.quantity, Some(3));
    assert_eq!(n.recurring_enabled, Some(true));
    assert_eq!(n.next_renewal_price.unwrap().to_string(), "99.00 USD");
    assert!(n.test && !n.is_lifetime());
    assert_eq!(note.reference(), "XRILXB9ZI3");
    assert_eq!(note.customer_key().as_deref(), Some("zoe@example.org"));
    assert!(note.is_test());
    let mut spelled = lcn_body();
    spelled.push_scalar("STATUS", "PASTDUE");
    spelled.push_scalar("FIRST_NAME", "Other");
    assert_eq!(
        Notification::parse(Kind::Lcn, &spelled)
            .unwrap()
            .fingerprint(),
        note.fingerprint()
    );
    for (field, value) in [
        ("STATUS", "ACTIVE"),
        ("EXPIRATION_DATE", "2025-06-12 19:48:03"),
        ("DATE_UPDATED", "2023-06-12 19:50:01"),
        ("DISABLED", "1"),
        ("LICENSE_TYPE", "TRIAL"),
        ("CHANGED_BY", "VENDOR"),
        ("LICENSE_CODE", "OTHER"),
    ] {
        let mut f = lcn_body();
        f.push_scalar(field, value);
        assert_ne!(
            Notification::parse(Kind::Lcn, &f).unwrap().fingerprint(),
            note.fingerprint(),
            "{field}"
        );
    }
    let mut lifetime = lcn_body();
    lifetime.push_scalar("EXPIRATION_DATE", "9999-12-31 23:59:59");
    let Notification::Lcn(l) = Notification::parse(Kind::Lcn, &lifetime).unwrap() else {
        panic!()
    };
    assert!(l.is_lifetime());
    let mut date_only = lcn_body();
    date_only.push_scalar("EXPIRATION_DATE", "2005-03-03");
    let Notification::Lcn(l) = Notification::parse(Kind::Lcn, &date_only).unwrap() else {
        panic!()
    };
    assert_eq!(
        l.expiration,
        NaiveDate::from_ymd_opt(2005, 3, 3)
            .unwrap()
            .and_hms_opt(0, 0, 0)
    );
}

fn ins_body() -> FormBody {
    let mut f = FormBody::new();
    for (k, v) in [
        ("message_type", "RECURRING_INSTALLMENT_FAILED"),
        ("message_description", "Recurring installment failed"),
        ("timestamp", "2024-01-02 10:00:00 EST"),
        ("message_id", "4127"),
        ("key_count", "40"),
        ("vendor_id", "1817037"),
        ("sale_id", "4774380224"),
        ("sale_date_placed", "2023-01-02 09:00:00"),
        ("vendor_order_id", "ord-5"),
        ("invoice_id", "4774380233"),
        ("recurring", "1"),
        ("payment_type", "credit card"),
        ("list_currency", "USD"),
        ("cust_currency", "JPY"),
        ("fraud_status", "pass"),
        ("invoice_list_amount", "10.00"),
        ("invoice_usd_amount", "10.00"),
        ("invoice_cust_amount", "1500"),
        ("customer_first_name", "Jürgen"),
        ("customer_email", "J@Example.de"),
        ("item_count", "2"),
        ("item_name_1", "Monthly"),
        ("item_id_1", "m1"),
        ("item_list_amount_1", "7.50"),
        ("item_usd_amount_1", "7.50"),
        ("item_cust_amount_1", "1125"),
        ("item_type_1", "bill"),
        ("item_rec_status_1", "live"),
        ("item_rec_install_billed_1", "3"),
        ("item_rec_date_next_1", "2024-02-02"),
        ("item_name_2", "Addon"),
        ("item_list_amount_2", "2.5"),
        ("md5_hash", "ignored-here"),
    ] {
        f.push_scalar(k, v);
    }
    f
}

#[test]
fn ins_parses_items_and_fingerprints() {
    let note = Notification::parse(Kind::Ins, &ins_body()).unwrap();
    let Notification::Ins(n) = &note else {
        panic!()
    };
    assert_eq!(n.message_type, InsMessageType::RecurringInstallmentFailed);
    assert_eq!(n.fraud_status, Some(InsFraudStatus::Pass));
    assert!(n.recurring);
    assert_eq!(n.invoice_cust_amount.unwrap().to_string(), "1500 JPY");
    assert_eq!(n.items.len(), 2);
    assert_eq!(n.items[0].rec_install_billed, Some(3));
    assert_eq!(
        n.items[0].rec_date_next,
        NaiveDate::from_ymd_opt(2024, 2, 2)
    );
    assert_eq!(n.items[0].usd_amount.unwrap().currency.code(), "USD");
    assert_eq!(n.items[1].list_amount.unwrap().amount, dec("2.5"));
    assert_eq!(note.reference(), "4774380224");
    assert_eq!(note.customer_key().as_deref(), Some("j@example.de"));
    assert!(!note.is_test());
    let fp = note.fingerprint();
    let mut same = ins_body();
    same.push_scalar("item_list_amount_2", "2.50");
    same.push_scalar("timestamp", "2024-01-03 10:00:00 EST");
    assert_eq!(
        Notification::parse(Kind::Ins, &same).unwrap().fingerprint(),
        fp
    );
    for (field, value) in [
        ("message_id", "4128"),
        ("invoice_id", "4774380234"),
        ("message_type", "RECURRING_INSTALLMENT_SUCCESS"),
        ("item_cust_amount_1", "1126"),
    ] {
        let mut f = ins_body();
        f.push_scalar(field, value);
        assert_ne!(
            Notification::parse(Kind::Ins, &f).unwrap().fingerprint(),
            fp,
            "{field}"
        );
    }
    // Without item_count, items are found by scanning.
    let mut scan = ins_body();
    scan.remove("item_count");
    let Notification::Ins(s) = Notification::parse(Kind::Ins, &scan).unwrap() else {
        panic!()
    };
    assert_eq!(s.items.len(), 2);
    // order_ref when there is no sale_id; sandbox sale ids are test sales.
    let mut current = ins_body();
    current.remove("sale_id");
    current.push_scalar("order_ref", "REF77");
    assert_eq!(
        Notification::parse(Kind::Ins, &current)
            .unwrap()
            .reference(),
        "REF77"
    );
    let mut sandbox = ins_body();
    sandbox.push_scalar("sale_id", "9093712345");
    assert!(Notification::parse(Kind::Ins, &sandbox).unwrap().is_test());
    let mut unknown = ins_body();
    unknown.push_scalar("message_type", "CATALOGUE_PRODUCT_CREATED");
    let Notification::Ins(u) = Notification::parse(Kind::Ins, &unknown).unwrap() else {
        panic!()
    };
    assert_eq!(
        u.message_type,
        InsMessageType::Unknown("CATALOGUE_PRODUCT_CREATED".into())
    );
}

#[test]
fn kind_from_str() {
    assert_eq!("ipn".parse::<Kind>(), Ok(Kind::Ipn));
    assert_eq!("LCN".parse::<Kind>(), Ok(Kind::Lcn));
    assert_eq!("ins".parse::<Kind>().unwrap().as_str(), "ins");
    let e = "irn".parse::<Kind>().unwrap_err();
    assert!(e.to_string().contains("\"irn\""), "{e}");
}

fn with(mut f: FormBody, k: &str, v: &str) -> FormBody {
    f.push_scalar(k, v);
    f
}

#[test]
fn field_error_missing_and_empty() {
    let mut f = ipn_body();
    f.remove("REFNO");
    assert_eq!(
        err(Kind::Ipn, &f),
        FieldError::Missing {
            field: "REFNO".into()
        }
    );
    assert_eq!(
        err(Kind::Ipn, &with(ipn_body(), "ORDERSTATUS", "")),
        FieldError::Empty {
            field: "ORDERSTATUS".into()
        }
    );
    assert_eq!(
        err(Kind::Lcn, &with(lcn_body(), "LICENSE_CODE", "  ")),
        FieldError::Empty {
            field: "LICENSE_CODE".into()
        }
    );
    let mut ins = ins_body();
    ins.remove("sale_id");
    assert_eq!(
        err(Kind::Ins, &ins),
        FieldError::Missing {
            field: "sale_id".into()
        }
    );
}

#[test]
fn field_error_not_scalar() {
    let mut f = ipn_body();
    f.remove("REFNO");
    f.push_array("REFNO", &["1"]);
    assert_eq!(
        err(Kind::Ipn, &f),
        FieldError::NotScalar {
            field: "REFNO".into()
        }
    );
}

#[test]
fn field_error_invalid_decimal() {
    assert_eq!(
        err(Kind::Ipn, &with(ipn_body(), "IPN_TOTALGENERAL", "1,000.00")),
        FieldError::InvalidDecimal {
            field: "IPN_TOTALGENERAL".into(),
            value: "1,000.00".into()
        }
    );
    let mut f = ipn_body();
    f.remove("IPN_PRICE");
    f.push_array("IPN_PRICE", &["100.00", "5.0e1"]);
    assert_eq!(
        err(Kind::Ipn, &f),
        FieldError::InvalidDecimal {
            field: "IPN_PRICE[]".into(),
            value: "5.0e1".into()
        }
    );
    assert!(matches!(
        err(Kind::Ipn, &with(ipn_body(), "FX_RATE", "abc")),
        FieldError::InvalidDecimal { .. }
    ));
}

#[test]
fn field_error_invalid_integer() {
    let mut f = ipn_body();
    f.remove("IPN_QTY");
    f.push_array("IPN_QTY", &["1", "two"]);
    assert_eq!(
        err(Kind::Ipn, &f),
        FieldError::InvalidInteger {
            field: "IPN_QTY[]".into(),
            value: "two".into()
        }
    );
    assert_eq!(
        err(Kind::Ins, &with(ins_body(), "item_count", "100000")),
        FieldError::InvalidInteger {
            field: "item_count".into(),
            value: "100000".into()
        }
    );
    assert!(matches!(
        err(
            Kind::Ins,
            &with(ins_body(), "item_rec_install_billed_1", "-1")
        ),
        FieldError::InvalidInteger { .. }
    ));
}

#[test]
fn field_error_invalid_date() {
    assert_eq!(
        err(
            Kind::Ipn,
            &with(ipn_body(), "IPN_DATE", "2023-06-12 19:48:11")
        ),
        FieldError::InvalidDate {
            field: "IPN_DATE".into(),
            value: "2023-06-12 19:48:11".into(),
            expected: "YmdHis"
        }
    );
    assert!(matches!(
        err(Kind::Ipn, &with(ipn_body(), "IPN_DATE", "20231312194811")),
        FieldError::InvalidDate { .. }
    ));
    assert!(matches!(
        err(Kind::Ipn, &with(ipn_body(), "SALEDATE", "12/06/2023")),
        FieldError::InvalidDate { .. }
    ));
    assert!(matches!(
        err(
            Kind::Lcn,
            &with(lcn_body(), "EXPIRATION_DATE", "2024-02-30 00:00:00")
        ),
        FieldError::InvalidDate { .. }
    ));
    assert!(matches!(
        err(
            Kind::Ins,
            &with(ins_body(), "item_rec_date_next_1", "02/02/2024")
        ),
        FieldError::InvalidDate { .. }
    ));
}

#[test]
fn field_error_invalid_currency() {
    assert_eq!(
        err(Kind::Ipn, &with(ipn_body(), "CURRENCY", "EURO")),
        FieldError::InvalidCurrency {
            field: "CURRENCY".into(),
            value: "EURO".into()
        }
    );
    assert!(matches!(
        err(Kind::Ins, &with(ins_body(), "cust_currency", "XXX")),
        FieldError::InvalidCurrency { .. }
    ));
}

#[test]
fn field_error_invalid_flag() {
    assert_eq!(
        err(Kind::Ipn, &with(ipn_body(), "TEST_ORDER", "maybe")),
        FieldError::InvalidFlag {
            field: "TEST_ORDER".into(),
            value: "maybe".into()
        }
    );
    assert!(matches!(
        err(Kind::Lcn, &with(lcn_body(), "DISABLED", "2")),
        FieldError::InvalidFlag { .. }
    ));
}

#[test]
fn field_error_amount_without_currency() {
    let mut f = ipn_body();
    f.remove("CURRENCY");
    assert_eq!(
        err(Kind::Ipn, &f),
        FieldError::AmountWithoutCurrency {
            field: "IPN_TOTALGENERAL".into(),
            currency_field: "CURRENCY"
        }
    );
    let mut f = ipn_body();
    f.remove("PAYOUT_CURRENCY");
    assert_eq!(
        err(Kind::Ipn, &f),
        FieldError::AmountWithoutCurrency {
            field: "PAYABLE_AMOUNT".into(),
            currency_field: "PAYOUT_CURRENCY"
        }
    );
}

#[test]
fn field_error_array_length() {
    let mut f = ipn_body();
    f.remove("IPN_TOTAL");
    f.push_array("IPN_TOTAL", &["123.00"]);
    assert_eq!(
        err(Kind::Ipn, &f),
        FieldError::ArrayLength {
            field: "IPN_TOTAL[]".into(),
            expected: 2,
            found: 1
        }
    );
}

#[test]
fn field_errors_have_one_clear_line() {
    let e = FieldError::ArrayLength {
        field: "IPN_TOTAL[]".into(),
        expected: 2,
        found: 1,
    };
    assert_eq!(
        e.to_string(),
        "field IPN_TOTAL[]: 1 elements, expected 2 (one per line item)"
    );
    let e = FieldError::AmountWithoutCurrency {
        field: "X".into(),
        currency_field: "CURRENCY",
    };
    assert_eq!(
        e.to_string(),
        "field X: amount present but CURRENCY is missing"
    );
}
