//! Ingest through real HTTP: receipts only after commit, resends processed once, every bad
//! request refused with a clear 4xx, no receipt, and kept in quarantine.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use revsync::processor::{EventHandler, HandleError, Processor};
use revsync::store::{
    Appended, Backend, Delivery, Effects, Event, EventLog, LogCounts, Micros, NewDelivery,
    NewQuarantine, QuarantineEntry, QuarantineStatus, SqlStore, Store, StoreError,
};
use support::{signed_ipn, spawn_app, spawn_app_with, test_config, SECRET_WORD};
use twocheckout::form::FormBody;
use twocheckout::notification::{Kind, Notification};
use twocheckout::receipt::check_receipt;
use twocheckout::signature::{self, Algorithm, SecretKey};

fn has_receipt(body: &str) -> bool {
    body.contains("<sig") || body.contains("<EPAYMENT>")
}

#[tokio::test]
async fn ipn_is_answered_with_a_valid_receipt_once_committed() {
    let t = spawn_app().await;
    let form = signed_ipn("211153389", "254498854202", "20261130100140");
    let (status, body) = t.post("ipn", form.to_urlencoded()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        check_receipt(Kind::Ipn, &body, &form, &t.key).unwrap(),
        Algorithm::Sha3_256,
        "the receipt uses the strongest algorithm verified"
    );
    let counts = t.store.counts().await.unwrap();
    assert_eq!((counts.events, counts.deliveries), (1, 1));
    let event = t.store.event(1).await.unwrap().unwrap();
    assert_eq!(event.reference, "211153389");
    assert_eq!(event.kind, "ipn");
    let kept = &t.store.deliveries_of(1).await.unwrap()[0];
    assert_eq!(
        kept.body,
        form.to_urlencoded().into_bytes(),
        "raw body kept byte for byte"
    );
    assert_eq!(kept.signature_algorithm, "sha3-256");
}

/// Counts how often each event reaches the handler.
#[derive(Default)]
struct Counting(AtomicUsize);

#[async_trait]
impl EventHandler for Counting {
    async fn handle(&self, _: &Event, n: &Notification) -> Result<Effects, HandleError> {
        assert_eq!(n.reference(), "300000001");
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Effects::default())
    }
}

#[tokio::test]
async fn five_resends_are_six_deliveries_six_receipts_and_one_processed_event() {
    let t = spawn_app().await;
    for attempt in 0..6 {
        // 2Checkout regenerates MESSAGE_ID and IPN_DATE (and so the signature) on a resend.
        let form = signed_ipn(
            "300000001",
            &format!("9000{attempt}"),
            &format!("2026113010{attempt:02}00"),
        );
        let (status, body) = t.post("ipn", form.to_urlencoded()).await;
        assert_eq!(status, 200, "{body}");
        check_receipt(Kind::Ipn, &body, &form, &t.key).expect("valid receipt for every resend");
    }
    let counts = t.store.counts().await.unwrap();
    assert_eq!((counts.events, counts.deliveries), (1, 6));

    // The app's processor takes the event once: one lease, one commit.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.store.counts().await.unwrap().processed < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "event never processed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let event = t.store.event(1).await.unwrap().unwrap();
    assert_eq!((event.delivery_count, event.attempts), (6, 1));
    let orders = t.store.ledger_records_of_kind("order").await.unwrap();
    assert_eq!(orders.len(), 1, "one order in the ledger");

    // A processor handed the same store finds nothing left to do.
    let handler = Arc::new(Counting::default());
    let processor = Processor {
        store: t.store.clone(),
        handler: handler.clone(),
        owner: "test".into(),
        lease: Duration::from_secs(30),
        batch: 10,
        idle: Duration::from_millis(10),
    };
    assert_eq!(processor.run_once().await.unwrap(), 0);
    assert_eq!(handler.0.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn lcn_and_ins_are_accepted_with_their_own_proofs() {
    let t = spawn_app().await;
    let mut lcn = FormBody::new();
    for (k, v) in [
        ("LICENSE_CODE", "XRILXB9ZI3"),
        ("EXPIRATION_DATE", "2027-11-30 10:01:40"),
        ("DATE_UPDATED", "2026-11-30 10:05:00"),
        ("STATUS", "ACTIVE"),
        ("EMAIL", "alvaro@acme.example"),
        ("AVANGATE_CUSTOMER_REFERENCE", "77001"),
        ("LICENSE_TYPE", "REGULAR"),
        ("CHANGED_BY", "SYSTEM"),
    ] {
        lcn.push_scalar(k, v);
    }
    signature::sign(&mut lcn, &t.key, &[Algorithm::Sha256]);
    let (status, body) = t.post("lcn", lcn.to_urlencoded()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        check_receipt(Kind::Lcn, &body, &lcn, &t.key).unwrap(),
        Algorithm::Sha256
    );

    let mut ins = FormBody::new();
    for (k, v) in [
        ("message_type", "RECURRING_INSTALLMENT_FAILED"),
        ("message_id", "5001"),
        ("vendor_id", "1303908"),
        ("sale_id", "9093717691800"),
        ("invoice_id", "9093717691809"),
        ("list_currency", "USD"),
        ("item_count", "1"),
        ("item_list_amount_1", "49.00"),
        ("customer_email", "alvaro@acme.example"),
    ] {
        ins.push_scalar(k, v);
    }
    twocheckout::ins::sign_ins(&mut ins, &SecretKey::new(SECRET_WORD.as_bytes().to_vec()));
    let (status, body) = t.post("ins", ins.to_urlencoded()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.store.counts().await.unwrap().events, 2);
}

/// Posts, then checks: the status, a one-line reason, no receipt, nothing in the event log,
/// and the raw request kept in quarantine with that reason.
async fn assert_refused(
    t: &support::TestApp,
    kind: &str,
    content_type: &str,
    body: Vec<u8>,
    expected_status: u16,
    reason_contains: &str,
) {
    let before = t.store.counts().await.unwrap();
    let (status, text) = t.post_as(kind, content_type, body.clone()).await;
    assert_eq!(status, expected_status, "{text}");
    assert!(
        !has_receipt(&text),
        "no receipt for a refused request: {text}"
    );
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "one-line reason: {text}"
    );
    assert!(
        text.contains(reason_contains),
        "{text:?} lacks {reason_contains:?}"
    );
    let after = t.store.counts().await.unwrap();
    assert_eq!(
        (after.events, after.deliveries),
        (before.events, before.deliveries)
    );
    assert_eq!(after.quarantined_held, before.quarantined_held + 1);
    let entry = &t
        .store
        .list_quarantine(Some(QuarantineStatus::Held), 1)
        .await
        .unwrap()[0];
    assert_eq!(entry.reason, text.trim_end());
    let limit = 16 * 1024;
    assert_eq!(entry.body, body[..body.len().min(limit)]);
    assert_eq!(entry.truncated, body.len() > limit);
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn forged_unsigned_malformed_oversized_and_mistyped_requests_are_refused() {
    let t = spawn_app().await;
    let good = signed_ipn("211153389", "1", "20261130100140").to_urlencoded();

    // A changed amount: the signature no longer matches.
    let forged = good.replace("IPN_TOTALGENERAL=119.00", "IPN_TOTALGENERAL=1.00");
    assert_refused(&t, "ipn", FORM, forged.into(), 401, "does not match").await;
    // Signed with another key.
    let mut other = support::ipn_form("211153389", "1", "20261130100140");
    signature::sign(
        &mut other,
        &SecretKey::new(b"wrong".to_vec()),
        &[Algorithm::Sha3_256],
    );
    assert_refused(
        &t,
        "ipn",
        FORM,
        other.to_urlencoded().into(),
        401,
        "does not match",
    )
    .await;
    // No signature at all.
    let unsigned = support::ipn_form("211153389", "1", "20261130100140").to_urlencoded();
    assert_refused(&t, "ipn", FORM, unsigned.into(), 401, "no signature").await;
    // Unknown kind.
    assert_refused(
        &t,
        "orders",
        FORM,
        good.clone().into(),
        404,
        "unknown notification kind",
    )
    .await;
    // Malformed form encoding and bytes that are not UTF-8.
    assert_refused(
        &t,
        "ipn",
        FORM,
        b"REFNO=%zz&HASH=1".to_vec(),
        400,
        "malformed",
    )
    .await;
    assert_refused(
        &t,
        "ipn",
        FORM,
        b"REFNO=\xff\xfe".to_vec(),
        400,
        "malformed",
    )
    .await;
    // Oversized: refused, and the first part kept.
    let mut big = good.clone().into_bytes();
    big.extend(std::iter::repeat_n(b'A', 20 * 1024));
    assert_refused(&t, "ipn", FORM, big, 413, "larger than").await;
    // Wrong content type.
    assert_refused(
        &t,
        "ipn",
        "application/json",
        good.clone().into(),
        415,
        "content type",
    )
    .await;
    // Signed, but a field the event needs is missing.
    let mut no_refno = support::ipn_form("211153389", "1", "20261130100140");
    no_refno.remove("REFNO");
    signature::sign(&mut no_refno, &t.key, &[Algorithm::Sha256]);
    assert_refused(
        &t,
        "ipn",
        FORM,
        no_refno.to_urlencoded().into(),
        422,
        "REFNO",
    )
    .await;
    // INS with a wrong md5_hash.
    let ins =
        "message_type=ORDER_CREATED&message_id=1&vendor_id=1&sale_id=2&invoice_id=3&md5_hash=00";
    assert_refused(&t, "ins", FORM, ins.into(), 401, "").await;

    // And the good one still goes through afterwards.
    let (status, _) = t.post("ipn", good).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_signature_below_the_minimum_is_refused() {
    let s = support::store::sqlite().await;
    let mut config = test_config(&s.url);
    config.twocheckout.minimum_algorithm = "sha256".into();
    let store: Arc<dyn Store> = Arc::new(s.store.clone());
    let t = spawn_app_with(config, store.clone(), store, Some(s)).await;
    let mut md5_only = support::ipn_form("1", "1", "20261130100140");
    signature::sign(&mut md5_only, &t.key, &[Algorithm::Md5]);
    assert_refused(
        &t,
        "ipn",
        FORM,
        md5_only.to_urlencoded().into(),
        401,
        "below the configured minimum",
    )
    .await;
}

#[tokio::test]
async fn a_quarantined_delivery_is_admitted_once_the_key_is_fixed() {
    // The operator configured the wrong key: 2Checkout's deliveries are refused and kept.
    let s = support::store::sqlite().await;
    let mut wrong = test_config(&s.url);
    wrong.twocheckout.secret_key = Some(revsync::config::SecretRef::Value("old-wrong-key".into()));
    let store: Arc<dyn Store> = Arc::new(s.store.clone());
    let t = spawn_app_with(wrong, store.clone(), store.clone(), Some(s)).await;
    let form = signed_ipn("500", "1", "20261130100140");
    let (status, _) = t.post("ipn", form.to_urlencoded()).await;
    assert_eq!(status, 401);
    let id = store
        .list_quarantine(Some(QuarantineStatus::Held), 1)
        .await
        .unwrap()[0]
        .id;

    // Still wrong: admit refuses and changes nothing.
    let wrong_keys = test_config("sqlite://unused");
    let mut wrong_keys = wrong_keys;
    wrong_keys.twocheckout.secret_key =
        Some(revsync::config::SecretRef::Value("old-wrong-key".into()));
    let err =
        revsync::ingest::admit_quarantined(&*store, &wrong_keys.notification_keys().unwrap(), id)
            .await
            .unwrap_err();
    assert!(err.to_string().contains("still refused"), "{err}");
    assert_eq!(store.counts().await.unwrap().events, 0);

    // Fixed: admitted into the log, once.
    let fixed = test_config("sqlite://unused").notification_keys().unwrap();
    let appended = revsync::ingest::admit_quarantined(&*store, &fixed, id)
        .await
        .unwrap();
    assert!(appended.new_event);
    assert!(revsync::ingest::admit_quarantined(&*store, &fixed, id)
        .await
        .is_err());
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.events, counts.quarantined_held), (1, 0));
}

/// A store whose appends fail (or stall) on demand; everything else is the real store.
struct FaultyStore {
    inner: SqlStore,
    fail_appends: AtomicBool,
    append_delay: Duration,
}

#[async_trait]
impl EventLog for FaultyStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn append_deliveries(&self, batch: &[NewDelivery]) -> Result<Vec<Appended>, StoreError> {
        tokio::time::sleep(self.append_delay).await;
        if self.fail_appends.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut));
        }
        self.inner.append_deliveries(batch).await
    }
    async fn quarantine(&self, e: &NewQuarantine) -> Result<i64, StoreError> {
        self.inner.quarantine(e).await
    }
    async fn quarantined(&self, id: i64) -> Result<Option<QuarantineEntry>, StoreError> {
        self.inner.quarantined(id).await
    }
    async fn list_quarantine(
        &self,
        s: Option<QuarantineStatus>,
        l: i64,
    ) -> Result<Vec<QuarantineEntry>, StoreError> {
        self.inner.list_quarantine(s, l).await
    }
    async fn admit_quarantined(&self, id: i64, d: &NewDelivery) -> Result<Appended, StoreError> {
        self.inner.admit_quarantined(id, d).await
    }
    async fn event(&self, id: i64) -> Result<Option<Event>, StoreError> {
        self.inner.event(id).await
    }
    async fn deliveries_of(&self, id: i64) -> Result<Vec<Delivery>, StoreError> {
        self.inner.deliveries_of(id).await
    }
    async fn first_deliveries(&self, ids: &[i64]) -> Result<Vec<Delivery>, StoreError> {
        self.inner.first_deliveries(ids).await
    }
    async fn counts(&self) -> Result<LogCounts, StoreError> {
        self.inner.counts().await
    }
    async fn lease_pending(
        &self,
        o: &str,
        n: Micros,
        u: Micros,
        l: i64,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.lease_pending(o, n, u, l).await
    }
    async fn fail_event(&self, id: i64, o: &str, e: &str, p: bool) -> Result<bool, StoreError> {
        self.inner.fail_event(id, o, e, p).await
    }
}

async fn faulty_app(delay: Duration) -> (support::TestApp, Arc<FaultyStore>) {
    let s = support::store::sqlite().await;
    let config = test_config(&s.url);
    let faulty = Arc::new(FaultyStore {
        inner: s.store.clone(),
        fail_appends: AtomicBool::new(false),
        append_delay: delay,
    });
    let store: Arc<dyn Store> = Arc::new(s.store.clone());
    let t = spawn_app_with(config, store, faulty.clone(), Some(s)).await;
    (t, faulty)
}

#[tokio::test]
async fn no_receipt_is_sent_for_a_delivery_that_was_not_committed() {
    let (t, faulty) = faulty_app(Duration::ZERO).await;
    faulty.fail_appends.store(true, Ordering::SeqCst);
    let form = signed_ipn("700", "1", "20261130100140");
    let (status, body) = t.post("ipn", form.to_urlencoded()).await;
    assert_eq!(status, 503, "{body}");
    assert!(!has_receipt(&body), "{body}");
    assert!(body.contains("retry"), "{body}");
    assert_eq!(t.store.counts().await.unwrap().deliveries, 0);

    // The store recovers; 2Checkout's resend is accepted and acknowledged.
    faulty.fail_appends.store(false, Ordering::SeqCst);
    let resend = signed_ipn("700", "2", "20261130100640");
    let (status, body) = t.post("ipn", resend.to_urlencoded()).await;
    assert_eq!(status, 200);
    check_receipt(Kind::Ipn, &body, &resend, &t.key).unwrap();
    assert_eq!(t.store.counts().await.unwrap().events, 1);
}

#[tokio::test]
async fn shutdown_lets_in_flight_deliveries_commit_and_answer() {
    let (t, _faulty) = faulty_app(Duration::from_millis(300)).await;
    let form = signed_ipn("800", "1", "20261130100140");
    let body = form.to_urlencoded();
    let http = t.http.clone();
    let url = format!("{}/2checkout/ipn", t.url);
    let in_flight = tokio::spawn(async move {
        let r = http
            .post(url)
            .header("content-type", FORM)
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.app.stop();
    let (status, text) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{text}");
    check_receipt(Kind::Ipn, &text, &form, &t.key).unwrap();
    let store = t.store.clone();
    t.app.wait().await.unwrap();
    assert_eq!(store.counts().await.unwrap().deliveries, 1);
}

#[tokio::test]
async fn probes_health_readiness_and_metrics() {
    let t = spawn_app().await;
    let get = |path: &'static str| {
        let http = t.http.clone();
        let url = format!("{}{path}", t.url);
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(
        get("/2checkout/lcn").await.0,
        200,
        "2Checkout probes the LCN URL with GET"
    );
    assert_eq!(get("/2checkout/nope").await.0, 404);
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
    let form = signed_ipn("900", "1", "20261130100140");
    assert_eq!(t.post("ipn", form.to_urlencoded()).await.0, 200);
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("revsync_deliveries_received_total"),
        "{metrics}"
    );
    assert!(metrics.contains("revsync_receipt_seconds"), "{metrics}");
    assert!(metrics.contains("revsync_events_pending"), "{metrics}");
}

/// 2Checkout's side, emulated: realistic signed IPN, LCN and INS traffic, receipts checked
/// exactly as 2Checkout checks them.
fn sender_for(t: &support::TestApp) -> tco_emulator::Sender {
    let endpoints = tco_emulator::sender::Endpoints {
        ipn: format!("{}/2checkout/ipn", t.url),
        lcn: format!("{}/2checkout/lcn", t.url),
        ins: format!("{}/2checkout/ins", t.url),
    };
    let mut cfg = tco_emulator::sender::SenderConfig::new(endpoints, t.key.clone());
    cfg.secret_word = SecretKey::new(SECRET_WORD.as_bytes().to_vec());
    cfg.schedule = tco_emulator::RetrySchedule::twocheckout().truncated(3);
    cfg.time_compression = 3600.0 * 24.0;
    tco_emulator::Sender::new(cfg).unwrap()
}

#[tokio::test]
async fn generated_traffic_is_acknowledged_first_time_and_kept() {
    let t = spawn_app().await;
    let mut generator = tco_emulator::Generator::new(tco_emulator::GeneratorConfig::new(7));
    let deliveries = generator.generate(80);
    let kinds: std::collections::BTreeSet<_> = deliveries.iter().map(|d| d.kind).collect();
    assert_eq!(kinds.len(), 3, "the mix covers IPN, LCN and INS");
    let reports = sender_for(&t).run(deliveries.clone(), None).await;
    let summary = tco_emulator::sender::RunSummary::of(&reports);
    assert_eq!(summary.delivered, deliveries.len(), "{summary:?}");
    assert_eq!(summary.retried, 0, "{summary:?}");
    assert!(reports
        .iter()
        .filter(|r| r.kind != "ins")
        .all(|r| r.receipt_valid));
    let counts = t.store.counts().await.unwrap();
    assert_eq!(counts.deliveries as usize, deliveries.len());
    assert_eq!(counts.quarantined_held, 0);

    // Resending the first IPN five times, as 2Checkout does (new MESSAGE_ID and IPN_DATE,
    // re-signed), adds deliveries, never events; every resend gets a valid receipt.
    let sender = sender_for(&t);
    let first = deliveries.iter().find(|d| d.kind == Kind::Ipn).unwrap();
    let mut message_ids = std::collections::BTreeSet::new();
    for attempt in 1..=5 {
        let form = sender.prepare(first, attempt);
        message_ids.insert(form.get("MESSAGE_ID").unwrap().to_owned());
        let (status, body) = t.post("ipn", form.to_urlencoded()).await;
        assert_eq!(status, 200, "{body}");
        check_receipt(Kind::Ipn, &body, &form, &t.key).unwrap();
    }
    assert_eq!(message_ids.len(), 5);
    let after = t.store.counts().await.unwrap();
    assert_eq!(after.events, counts.events);
    assert_eq!(after.deliveries, counts.deliveries + 5);
}
