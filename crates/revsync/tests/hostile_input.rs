//! Hostile input, end to end through real HTTP and the Salesforce emulator: replayed,
//! truncated and wrongly encoded notifications; SOQL injection, HTML and CSV payloads in the
//! customer's own fields. Each is either refused (4xx, one-line reason, no receipt, nothing in
//! the event log, kept in quarantine) or carried as inert data (the exact string reaches
//! Salesforce and nothing else is touched).
//!
//! Forged signatures, unknown kinds, oversized bodies and wrong content types are covered in
//! `ingest_http.rs`; this suite adds the rest of DESIGN §10's hostile list.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use revsync::store::{QuarantineStatus, Store};
use serde_json::{json, Value};
use support::{ipn_form, signed_ipn, spawn_app, spawn_e2e, SECRET};
use twocheckout::form::FormBody;
use twocheckout::notification::Kind;
use twocheckout::receipt::check_receipt;
use twocheckout::signature::{self, Algorithm, SecretKey};

const FORM: &str = "application/x-www-form-urlencoded";

fn key() -> SecretKey {
    SecretKey::new(SECRET.as_bytes().to_vec())
}

fn sign(mut f: FormBody) -> FormBody {
    signature::sign(&mut f, &key(), &[Algorithm::Sha256, Algorithm::Sha3_256]);
    f
}

/// A completed-order IPN whose customer fields are replaced by `fields`.
fn order_with(refno: &str, customer_ref: &str, fields: &[(&str, &str)]) -> FormBody {
    let mut f = ipn_form(refno, &format!("{refno}1"), "20261130100140");
    f.push_scalar("AVANGATE_CUSTOMER_REFERENCE", customer_ref);
    for (name, value) in fields {
        f.push_scalar(name, value);
    }
    sign(f)
}

/// Posts and asserts a refusal: 4xx, one line, no receipt, no event, one more quarantined.
async fn assert_refused(t: &support::TestApp, body: Vec<u8>, what: &str) -> String {
    let before = t.store.counts().await.unwrap();
    let (status, text) = t.post_as("ipn", FORM, body).await;
    assert!(
        (400..500).contains(&status),
        "{what}: status {status}: {text}"
    );
    assert!(
        !text.contains("<EPAYMENT>") && !text.contains("<sig"),
        "{what}: no receipt for a refused request: {text}"
    );
    assert_eq!(text.trim_end().lines().count(), 1, "{what}: {text:?}");
    let after = t.store.counts().await.unwrap();
    assert_eq!(
        (after.events, after.deliveries),
        (before.events, before.deliveries),
        "{what}: nothing reaches the event log"
    );
    assert_eq!(
        after.quarantined_held,
        before.quarantined_held + 1,
        "{what}: kept in quarantine"
    );
    text
}

// ---------------------------------------------------------------------------------------
// Replay

#[tokio::test]
async fn a_replayed_delivery_is_acknowledged_again_but_is_no_second_event_and_no_second_write() {
    let e = spawn_e2e(Default::default(), Default::default()).await;
    let mut authorized = ipn_form("500100200", "254000000001", "20261130100100");
    authorized.push_scalar("ORDERSTATUS", "PAYMENT_AUTHORIZED");
    let authorized = sign(authorized);
    let complete = signed_ipn("500100200", "254000000002", "20261130100140");
    for f in [&authorized, &complete] {
        let (status, body) = e.t.post("ipn", f.to_urlencoded()).await;
        assert_eq!(status, 200, "{body}");
    }
    e.settled().await;
    let opportunity_before = e.emu.records("Opportunity");
    assert_eq!(opportunity_before.len(), 1);
    let calls_before = e.emu.calls().api_calls;
    let log_before = e.t.store.counts().await.unwrap();

    // An attacker (or a confused proxy) replays both captured deliveries byte for byte, the
    // old one last: a valid receipt (2Checkout would resend otherwise) and nothing else.
    for f in [&complete, &authorized] {
        let (status, body) = e.t.post("ipn", f.to_urlencoded()).await;
        assert_eq!(status, 200, "{body}");
        check_receipt(Kind::Ipn, &body, f, &e.t.key).expect("valid receipt for a replay");
    }
    // And a resend with a new MESSAGE_ID / IPN_DATE (re-signed) is the same event too.
    let resent = signed_ipn("500100200", "254000000003", "20261130110140");
    let (status, _) = e.t.post("ipn", resent.to_urlencoded()).await;
    assert_eq!(status, 200);
    e.settled().await;

    let log_after = e.t.store.counts().await.unwrap();
    assert_eq!(
        log_after.deliveries,
        log_before.deliveries + 3,
        "kept for audit"
    );
    assert_eq!(log_after.events, log_before.events, "no new event");
    assert_eq!(log_after.processed, log_before.processed);
    assert_eq!(
        e.emu.calls().api_calls,
        calls_before,
        "no Salesforce call for a replay"
    );
    assert_eq!(e.emu.records("Opportunity"), opportunity_before);
}

// ---------------------------------------------------------------------------------------
// Truncation and encodings

#[tokio::test]
async fn every_truncation_of_a_signed_notification_is_refused() {
    let t = spawn_app().await;
    let body = signed_ipn("500100300", "1", "20261130100140")
        .to_urlencoded()
        .into_bytes();
    // Every cut inside the signature fields, and a spread of cuts before them.
    let signatures_start = body
        .windows(5)
        .position(|w| w == b"HASH=")
        .expect("a signature field");
    let mut cuts: Vec<usize> = (1..signatures_start).step_by(37).collect();
    cuts.extend(signatures_start..body.len());
    let mut reasons = BTreeMap::<String, usize>::new();
    let mut complete_prefixes = 0;
    for cut in cuts {
        if authentic_prefix(&body[..cut]) {
            // Cut right after a whole signature (plus an empty pair or an empty stronger
            // signature field, both of which count as absent): the content is unchanged and
            // carries a valid signature. Accepting it is right; it is the same event.
            let (status, text) = t.post_as("ipn", FORM, body[..cut].to_vec()).await;
            assert_eq!(status, 200, "cut at {cut}: {text}");
            complete_prefixes += 1;
            continue;
        }
        let text = assert_refused(&t, body[..cut].to_vec(), &format!("cut at {cut}")).await;
        *reasons.entry(text.trim_end().to_owned()).or_default() += 1;
    }
    // After HASH and after SHA-256: `…hex`, `…hex&`, `…hex&NEXT`, `…hex&NEXT=`.
    assert_eq!(complete_prefixes, 8);
    // The reasons say what is wrong, not a generic failure.
    for reason in reasons.keys() {
        assert!(
            reason.contains("signature")
                || reason.contains("malformed")
                || reason.contains("invalid"),
            "{reason}"
        );
    }
    // The untruncated body is fine, and every accepted prefix was the same one event.
    let (status, _) = t.post("ipn", body).await;
    assert_eq!(status, 200);
    assert_eq!(t.store.counts().await.unwrap().events, 1);
}

/// True when `prefix` is the signed body cut right after a complete signature field, maybe
/// followed by `&` and an empty signature field (which the verifier treats as absent).
fn authentic_prefix(prefix: &[u8]) -> bool {
    let mut core = prefix;
    for name in ["HASH", "SIGNATURE_SHA2_256", "SIGNATURE_SHA3_256"] {
        for tail in [format!("&{name}"), format!("&{name}=")] {
            if let Some(rest) = core.strip_suffix(tail.as_bytes()) {
                core = rest;
            }
        }
    }
    let core = core.strip_suffix(b"&").unwrap_or(core);
    core.ends_with_hex_signature()
}

trait EndsWithSignature {
    fn ends_with_hex_signature(&self) -> bool;
}

impl EndsWithSignature for [u8] {
    /// True when the bytes end with `NAME=<hex>` for a signature field of its full length.
    fn ends_with_hex_signature(&self) -> bool {
        [
            ("HASH=", 32),
            ("SIGNATURE_SHA2_256=", 64),
            ("SIGNATURE_SHA3_256=", 64),
        ]
        .iter()
        .any(|(name, len)| {
            self.len() >= name.len() + len
                && self[self.len() - len - name.len()..].starts_with(name.as_bytes())
                && self[self.len() - len..].iter().all(u8::is_ascii_hexdigit)
        })
    }
}

#[tokio::test]
async fn latin1_utf16_and_nul_bodies_are_refused_as_malformed() {
    let t = spawn_app().await;
    let good = signed_ipn("500100400", "1", "20261130100140").to_urlencoded();

    // Latin-1 "José" raw and percent-encoded: not UTF-8.
    let raw_latin1 = good.replace("FIRSTNAME=%C3%81lvaro", "FIRSTNAME=Jos\u{0}");
    let mut raw = raw_latin1.into_bytes();
    let at = raw.iter().position(|b| *b == 0).expect("marker");
    raw[at] = 0xE9;
    let text = assert_refused(&t, raw, "raw latin-1").await;
    assert!(text.contains("malformed"), "{text}");
    let pct = good.replace("FIRSTNAME=%C3%81lvaro", "FIRSTNAME=Jos%E9");
    assert_ne!(pct, good, "the test body has the expected first name");
    let text = assert_refused(&t, pct.into_bytes(), "percent-encoded latin-1").await;
    assert!(text.contains("malformed"), "{text}");

    // The whole body in UTF-16 (with and without a byte-order mark).
    for bom in [true, false] {
        let mut utf16: Vec<u8> = if bom { vec![0xFF, 0xFE] } else { vec![] };
        utf16.extend(good.encode_utf16().flat_map(u16::to_le_bytes));
        assert_refused(&t, utf16, "UTF-16").await;
    }

    // NUL bytes, raw and percent-encoded, in an otherwise signed body.
    let raw_nul = good.replacen("FIRSTNAME=", "FIRSTNAME=\0", 1).into_bytes();
    assert_refused(&t, raw_nul, "raw NUL").await;
    assert_eq!(t.store.counts().await.unwrap().events, 0);
}

#[tokio::test]
async fn a_correctly_signed_nul_or_control_character_never_reaches_salesforce_raw() {
    // 2Checkout signs what it sends; a NUL inside a customer's name is signed data. It must
    // either be refused at the gate or reach Salesforce without the control character
    // breaking anything: no dead letter, no stuck write.
    let e = spawn_e2e(Default::default(), Default::default()).await;
    let f = order_with(
        "500100500",
        "880001",
        &[
            ("FIRSTNAME", "Nul\0Byte"),
            ("LASTNAME", "Bell\u{7}Tab\tEnd"),
        ],
    );
    let (status, text) = e.t.post("ipn", f.to_urlencoded()).await;
    if status == 200 {
        e.settled().await;
        let outbox = e.t.store.outbox_stats().await.unwrap();
        assert_eq!(outbox.dead_letters_open, 0, "written, not dead-lettered");
        let contacts = e.emu.records("Contact");
        assert_eq!(contacts.len(), 1, "{contacts:?}");
    } else {
        assert!((400..500).contains(&status), "{status} {text}");
        assert_eq!(e.t.store.counts().await.unwrap().events, 0);
        assert!(e.emu.records("Contact").is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// Injection payloads in the customer's own fields

/// Every seeded record, by id, with every field: to prove nothing else was touched.
fn snapshot(emu: &sf_emulator::Emulator) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for sobject in ["Account", "Contact", "Opportunity", "Lead"] {
        for r in emu.records(sobject) {
            out.insert(r["Id"].as_str().unwrap_or_default().to_owned(), r);
        }
    }
    out
}

#[tokio::test]
async fn soql_injection_in_names_and_emails_reaches_salesforce_as_data_and_touches_nothing_else() {
    let e = spawn_e2e(Default::default(), Default::default()).await;
    // Records a successful injection would match (by name, by e-mail, by domain).
    let victim_account = e.emu.insert(
        "Account",
        json!({"Name": "Victim Corp", "Website": "evil.example"}),
    );
    e.emu.insert(
        "Contact",
        json!({"LastName": "Victim", "Email": "victim@evil.example", "AccountId": victim_account}),
    );
    e.emu.insert(
        "Contact",
        json!({"LastName": "Other", "Email": "x@example.com"}),
    );
    let before = snapshot(&e.emu);

    let cases: &[(&str, &str, &str, &str, &str)] = &[
        // (refno, customer ref, first name, last name / company, email)
        (
            "500100601",
            "880601",
            "' OR Name LIKE '%",
            "O'Brien\\' OR Email != '",
            "o'brien@evil.example",
        ),
        (
            "500100602",
            "880602",
            "\\' OR Id != null OR Name = '\\",
            "x%' OR LastName LIKE '%_",
            "quote'percent%@evil.example",
        ),
        (
            "500100603",
            "880603",
            "Robert'); DELETE FROM Contact; --",
            "\" OR \"\"=\"",
            "dq\"x@evil.example",
        ),
    ];
    for (refno, customer, first, last, email) in cases {
        let f = order_with(
            refno,
            customer,
            &[
                ("FIRSTNAME", first),
                ("LASTNAME", last),
                ("COMPANY", last),
                ("CUSTOMEREMAIL", email),
            ],
        );
        let (status, body) = e.t.post("ipn", f.to_urlencoded()).await;
        assert_eq!(status, 200, "{refno}: {body}");
    }
    e.settled().await;

    let after = snapshot(&e.emu);
    for (id, record) in &before {
        assert_eq!(after.get(id), Some(record), "seeded record {id} untouched");
    }
    let outbox = e.t.store.outbox_stats().await.unwrap();
    let contacts = e.emu.records("Contact");
    for (refno, customer, first, last, email) in cases {
        // Either written exactly, or (an e-mail Salesforce itself refuses) dead-lettered with
        // Salesforce's message — never rewritten, never matched to somebody else.
        let mine: Vec<&Value> = contacts
            .iter()
            .filter(|c| c["TwoCheckout_Customer_Ref__c"] == *customer)
            .collect();
        match mine.as_slice() {
            [c] => {
                assert_eq!(c["FirstName"], *first, "{refno}");
                assert_eq!(c["LastName"], *last, "{refno}");
                assert_eq!(
                    c["Email"].as_str().map(str::to_lowercase),
                    Some(email.to_lowercase()),
                    "{refno}"
                );
            }
            [] => assert!(
                outbox.dead_letters_open > 0,
                "{refno}: neither written nor dead-lettered"
            ),
            more => panic!("{refno}: {} contacts", more.len()),
        }
        let opp: Vec<Value> = e
            .emu
            .records("Opportunity")
            .into_iter()
            .filter(|o| o["TwoCheckout_Order_Ref__c"] == *refno)
            .collect();
        assert!(opp.len() <= 1, "{refno}: {opp:?}");
    }
    assert!(
        contacts
            .iter()
            .filter(|c| c["TwoCheckout_Customer_Ref__c"].is_string())
            .count()
            == cases.len(),
        "every payload was written as data: {contacts:?}"
    );
}

#[tokio::test]
async fn html_in_names_is_stored_verbatim_as_data() {
    let e = spawn_e2e(Default::default(), Default::default()).await;
    let first = "<script>alert('x')</script>";
    let company = "<img src=x onerror=alert(1)> & Co \"Ltd\"";
    let f = order_with(
        "500100701",
        "880701",
        &[("FIRSTNAME", first), ("COMPANY", company)],
    );
    let (status, body) = e.t.post("ipn", f.to_urlencoded()).await;
    assert_eq!(status, 200, "{body}");
    e.settled().await;
    let contacts = e.emu.records("Contact");
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(contacts[0]["FirstName"], first, "not escaped, not stripped");
    let accounts = e.emu.records("Account");
    assert!(
        accounts.iter().any(|a| a["Name"].as_str() == Some(company)),
        "{accounts:?}"
    );
    // The ledger keeps it verbatim too (the dashboard escapes on display).
    let found = e.t.store.search_events(first, 10).await.unwrap();
    assert_eq!(found.len(), 1, "searchable by the exact string");
}

// ---------------------------------------------------------------------------------------
// CSV payloads through Bulk API 2.0

const CSV_PAYLOADS: &[&str] = &[
    "=HYPERLINK(\"http://evil.example\",\"click\")",
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "line one\nline two",
    "carriage\r\nreturn",
    "comma, \"quoted\", and more",
    "trailing backslash \\",
    "\"",
];

#[test]
fn bulk_csv_keeps_every_payload_in_its_cell_and_refuses_injected_column_names() {
    let records: Vec<Value> = CSV_PAYLOADS
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"Ext__c": format!("k{i}"), "Name": p}))
        .collect();
    let csv = salesforce::bulk::records_to_csv(&["Ext__c", "Name"], &records).unwrap();
    // Read back by an independent CSV reader (Bulk's result parser): the same rows and
    // cells, no extra row or column.
    let rows = salesforce::bulk::parse_unprocessed_records(&csv).unwrap();
    assert_eq!(rows.len(), CSV_PAYLOADS.len());
    for (i, (row, payload)) in rows.iter().zip(CSV_PAYLOADS).enumerate() {
        assert_eq!(row.len(), 2, "row {i}: {row:?}");
        assert_eq!(row["Ext__c"], format!("k{i}"));
        assert_eq!(row["Name"], *payload, "row {i} verbatim");
    }
    // A formula payload never starts a cell unquoted-and-split: every payload with a
    // delimiter, quote or line break is quoted.
    let text = String::from_utf8(csv).unwrap();
    assert!(text.contains("\"line one\nline two\""), "{text}");

    for bad in ["Name,Email", "Name\n", "Name\"", "=Name", ""] {
        let err = salesforce::bulk::records_to_csv(&[bad], &records).unwrap_err();
        assert!(
            err.to_string().contains("column") || err.to_string().contains("CSV"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn bulk_upsert_of_csv_payloads_lands_each_exact_string_in_its_own_record() {
    let emu = sf_emulator::spawn(sf_emulator::EmulatorConfig::default())
        .await
        .unwrap();
    let d = sf_emulator::EmulatorConfig::default();
    let client = salesforce::Client::builder(salesforce::Credentials::ClientCredentials(
        salesforce::auth::ClientCredentials::new(d.client_id, d.client_secret, emu.url()),
    ))
    .build()
    .unwrap();
    let untouched = emu.insert(
        "Account",
        json!({"Name": "Bystander", "TwoCheckout_Customer_Ref__c": "bystander"}),
    );
    let records: Vec<Value> = CSV_PAYLOADS
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"TwoCheckout_Customer_Ref__c": format!("csv-{i}"), "Name": p}))
        .collect();
    let csv = salesforce::bulk::records_to_csv(&["TwoCheckout_Customer_Ref__c", "Name"], &records)
        .unwrap();
    let outcome = client
        .bulk_ingest(
            &salesforce::bulk::IngestJobRequest::upsert("Account", "TwoCheckout_Customer_Ref__c"),
            csv,
            &salesforce::bulk::PollPolicy {
                initial_delay: std::time::Duration::from_millis(10),
                max_delay: std::time::Duration::from_millis(100),
                multiplier: 2,
                max_total: Some(std::time::Duration::from_secs(20)),
            },
        )
        .await
        .unwrap();
    assert_eq!(outcome.successful.len(), CSV_PAYLOADS.len(), "{outcome:?}");
    assert!(outcome.failed.is_empty() && outcome.unprocessed.is_empty());
    let accounts = emu.records("Account");
    assert_eq!(
        accounts.len(),
        CSV_PAYLOADS.len() + 1,
        "no row injected, none lost"
    );
    for (i, payload) in CSV_PAYLOADS.iter().enumerate() {
        let a = accounts
            .iter()
            .find(|a| a["TwoCheckout_Customer_Ref__c"] == format!("csv-{i}"))
            .unwrap_or_else(|| panic!("record csv-{i}"));
        assert_eq!(a["Name"], *payload, "csv-{i} kept verbatim");
    }
    let bystander = accounts
        .iter()
        .find(|a| a["Id"] == untouched.as_str())
        .unwrap();
    assert_eq!(bystander["Name"], "Bystander");
}

#[test]
fn a_literal_na_string_is_never_silently_turned_into_null_by_bulk() {
    // `#N/A` is Bulk API's null marker. A customer whose name (or any text) is literally
    // "#N/A" must not be nulled by the CSV path: the CSV builder either refuses the value with
    // a clear error (the caller then writes it through REST) or it is told apart from null.
    let records = vec![
        json!({"Ext__c": "k", "Name": "#N/A"}),
        json!({"Ext__c": "n", "Name": null}),
    ];
    match salesforce::bulk::records_to_csv(&["Ext__c", "Name"], &records) {
        Err(e) => assert!(e.to_string().contains("#N/A"), "clear error: {e}"),
        Ok(csv) => {
            let rows = salesforce::bulk::parse_unprocessed_records(&csv).unwrap();
            assert_ne!(
                rows[0]["Name"], rows[1]["Name"],
                "the string \"#N/A\" and null are written identically: the string would be \
                 stored as null"
            );
        }
    }
}

#[tokio::test]
async fn csv_payloads_in_customer_names_survive_revsyncs_own_bulk_path() {
    // revsync switches to Bulk API 2.0 for large single-object streams; with a threshold of
    // 2 every stream of this test goes that way.
    revsync::telemetry::init_logging(revsync::telemetry::LogFormat::Text, "warn");
    let emu_config = sf_emulator::EmulatorConfig::default();
    let emu = sf_emulator::spawn(emu_config.clone()).await.unwrap();
    let s = support::store::sqlite().await;
    let mut config = support::test_config(&s.url);
    config.salesforce.instance_url = Some(emu.url());
    config.salesforce.client_id = Some(emu_config.client_id.clone());
    config.salesforce.client_secret = Some(revsync::config::SecretRef::Value(
        emu_config.client_secret.clone(),
    ));
    config.sink.linger_ms = 200;
    config.sink.backoff_base_ms = 10;
    config.sink.backoff_cap_secs = 1;
    config.sink.bulk_threshold = 2;
    let store: Arc<dyn Store> = Arc::new(s.store.clone());
    let t = support::spawn_app_with(config, store.clone(), store, Some(s)).await;
    let e = support::E2e { t, emu };

    let payloads = [
        "=HYPERLINK(\"http://evil.example\")",
        "+1-1",
        "@SUM(A1)",
        "comma, \"quote\"",
    ];
    for (i, p) in payloads.iter().enumerate() {
        let f = order_with(
            &format!("50010080{i}"),
            &format!("88080{i}"),
            &[
                ("COMPANY", p),
                ("LASTNAME", p),
                ("CUSTOMEREMAIL", &format!("csv{i}@example.org")),
            ],
        );
        let (status, body) = e.t.post("ipn", f.to_urlencoded()).await;
        assert_eq!(status, 200, "{body}");
    }
    e.settled().await;
    assert_eq!(e.t.store.outbox_stats().await.unwrap().dead_letters_open, 0);
    let contacts = e.emu.records("Contact");
    assert_eq!(contacts.len(), payloads.len(), "{contacts:?}");
    for (i, p) in payloads.iter().enumerate() {
        let c = contacts
            .iter()
            .find(|c| c["TwoCheckout_Customer_Ref__c"] == format!("88080{i}"))
            .unwrap_or_else(|| panic!("contact {i}: {contacts:?}"));
        assert_eq!(c["LastName"], *p);
    }
    assert_eq!(e.emu.records("Opportunity").len(), payloads.len());
}

// ---------------------------------------------------------------------------------------
// Refusals leave no side effect downstream either

#[tokio::test]
async fn refused_requests_cause_no_salesforce_call_and_stay_in_quarantine() {
    let e = spawn_e2e(Default::default(), Default::default()).await;
    let good = signed_ipn("500100900", "1", "20261130100140").to_urlencoded();
    let forged = good.replace("IPN_TOTALGENERAL=119.00", "IPN_TOTALGENERAL=0.01");
    let truncated = good[..good.len() - 10].to_owned();
    for body in [forged, truncated] {
        let (status, _) = e.t.post("ipn", body).await;
        assert_eq!(status, 401);
    }
    e.settled().await;
    assert_eq!(e.emu.calls().api_calls, 0, "nothing was sent to Salesforce");
    let held =
        e.t.store
            .list_quarantine(Some(QuarantineStatus::Held), 10)
            .await
            .unwrap();
    assert_eq!(held.len(), 2);
    assert!(held.iter().all(|q| q.event_id.is_none()));
}
