//! The sender against a tiny in-test receiver that answers correct, wrong, missing or
//! failing responses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use tco_emulator::{
    AttemptResult, Delivery, Endpoints, Generator, GeneratorConfig, LcnEvent, Outcome,
    RetrySchedule, RunSummary, ScenarioKind, Sender, SenderConfig,
};
use twocheckout::{
    ipn_receipt, lcn_receipt, verify, verify_ins, Algorithm, FormBody, Kind, Notification,
    SecretKey,
};

const KEY: &str = "emulator-test-key";
const WORD: &str = "tango";

#[derive(Clone, Copy, Debug)]
enum Mode {
    Correct,
    Wrong,
    Missing,
    /// First request 500, second 200 without receipt, then correct.
    FailTwice,
}

struct Receiver {
    mode: Mode,
    hits: AtomicUsize,
    received: Mutex<Vec<(Kind, FormBody)>>,
}

async fn handle(
    State(st): State<Arc<Receiver>>,
    Path(kind): Path<String>,
    body: Bytes,
) -> (StatusCode, String) {
    let kind: Kind = match kind.parse() {
        Ok(k) => k,
        Err(e) => return (StatusCode::NOT_FOUND, e.to_string()),
    };
    let form = match FormBody::parse(&body) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
    };
    let key = SecretKey::from(KEY);
    let algorithm = match kind {
        Kind::Ins => match verify_ins(&form, &SecretKey::from(WORD)) {
            Ok(()) => Algorithm::Md5,
            Err(e) => return (StatusCode::UNAUTHORIZED, e.to_string()),
        },
        _ => match verify(&form, std::slice::from_ref(&key), Algorithm::Sha256) {
            Ok(v) => v.algorithm,
            Err(e) => return (StatusCode::UNAUTHORIZED, e.to_string()),
        },
    };
    st.received.lock().unwrap().push((kind, form.clone()));
    let n = st.hits.fetch_add(1, Ordering::SeqCst);
    let now = chrono::Utc::now().naive_utc();
    let receipt = |k: &SecretKey| match kind {
        Kind::Ipn => ipn_receipt(&form, algorithm, k, now).unwrap(),
        Kind::Lcn => lcn_receipt(&form, algorithm, k, now).unwrap(),
        Kind::Ins => "OK".to_owned(),
    };
    match (st.mode, n) {
        (Mode::Correct, _) | (Mode::FailTwice, 2..) => (StatusCode::OK, receipt(&key)),
        (Mode::Wrong, _) => (StatusCode::OK, receipt(&SecretKey::from("another key"))),
        (Mode::Missing, _) | (Mode::FailTwice, 1) => (StatusCode::OK, "OK".to_owned()),
        (Mode::FailTwice, _) => (StatusCode::INTERNAL_SERVER_ERROR, "db down".to_owned()),
    }
}

async fn receiver(mode: Mode) -> (String, Arc<Receiver>) {
    let st = Arc::new(Receiver {
        mode,
        hits: AtomicUsize::new(0),
        received: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/{kind}", post(handle))
        .with_state(st.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), st)
}

fn sender(base: &str, schedule: RetrySchedule) -> Sender {
    let endpoints = Endpoints {
        ipn: format!("{base}/ipn"),
        lcn: format!("{base}/lcn"),
        ins: format!("{base}/ins"),
    };
    let mut cfg = SenderConfig::new(endpoints, SecretKey::from(KEY));
    cfg.secret_word = SecretKey::from(WORD);
    cfg.schedule = schedule;
    // 48 h of schedule in about 17 ms.
    cfg.time_compression = 1.0e7;
    cfg.request_timeout = Duration::from_secs(10);
    Sender::new(cfg).unwrap()
}

fn one_ipn() -> Delivery {
    let mut g = Generator::new(GeneratorConfig::new(3));
    g.scenario(ScenarioKind::NewOrder).remove(1)
}

#[tokio::test]
async fn every_kind_accepted_first_time() {
    let (base, st) = receiver(Mode::Correct).await;
    let mut g = Generator::new(GeneratorConfig::new(11));
    let mut deliveries = Vec::new();
    for kind in [
        ScenarioKind::NewOrder,
        ScenarioKind::Refund,
        ScenarioKind::Lcn(LcnEvent::PastDue),
        ScenarioKind::InsInstallment { failed: true },
    ] {
        deliveries.extend(g.scenario(kind));
    }
    let n = deliveries.len();
    let reports = sender(&base, RetrySchedule::twocheckout())
        .run(deliveries, Some(1000.0))
        .await;
    assert_eq!(reports.len(), n);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Delivered, "{r:?}");
        assert_eq!(r.attempts.len(), 1, "{r:?}");
        match r.kind.as_str() {
            "ins" => {
                assert!(!r.receipt_valid);
                assert_eq!(r.attempts[0].result, AttemptResult::AcceptedWithoutReceipt);
            }
            _ => {
                assert!(r.receipt_valid);
                assert_eq!(
                    r.attempts[0].result,
                    AttemptResult::Accepted {
                        algorithm: "sha3-256".into()
                    }
                );
            }
        }
    }
    let received = st.received.lock().unwrap();
    assert_eq!(received.len(), n);
    let kinds: Vec<Kind> = received.iter().map(|(k, _)| *k).collect();
    assert!(kinds.contains(&Kind::Ipn) && kinds.contains(&Kind::Lcn) && kinds.contains(&Kind::Ins));
    let summary = RunSummary::of(&reports);
    assert_eq!(
        (
            summary.delivered,
            summary.gave_up,
            summary.attempts,
            summary.retried
        ),
        (n, 0, n, 0)
    );
}

#[tokio::test]
async fn resends_with_new_message_id_and_ipn_date_until_receipt() {
    let (base, st) = receiver(Mode::FailTwice).await;
    let d = one_ipn();
    let report = sender(&base, RetrySchedule::twocheckout())
        .deliver(&d)
        .await;
    assert_eq!(report.outcome, Outcome::Delivered);
    assert!(report.receipt_valid);
    let results: Vec<&AttemptResult> = report.attempts.iter().map(|a| &a.result).collect();
    assert_eq!(results[0], &AttemptResult::HttpStatus { status: 500 });
    assert!(
        matches!(results[1], AttemptResult::BadReceipt { reason } if reason.contains("no read receipt"))
    );
    assert!(matches!(results[2], AttemptResult::Accepted { .. }));
    assert_eq!(results.len(), 3);

    let received = st.received.lock().unwrap();
    assert_eq!(received.len(), 3);
    let ids: Vec<&str> = received
        .iter()
        .map(|(_, f)| f.get("MESSAGE_ID").unwrap())
        .collect();
    let dates: Vec<&str> = received
        .iter()
        .map(|(_, f)| f.get("IPN_DATE").unwrap())
        .collect();
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    assert!(dates[0] < dates[1] && dates[1] < dates[2], "{dates:?}");
    // IPN_DATE follows the uncompressed schedule: +2.5 min, +5 min.
    let parse = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").unwrap();
    assert_eq!(
        parse(dates[1]) - parse(dates[0]),
        chrono::Duration::seconds(150)
    );
    assert_eq!(
        parse(dates[2]) - parse(dates[0]),
        chrono::Duration::seconds(300)
    );
    assert_eq!(report.attempts[2].message_id.as_deref(), Some(ids[2]));
    // Every resend is the same event.
    let fps: Vec<String> = received
        .iter()
        .map(|(k, f)| Notification::parse(*k, f).unwrap().fingerprint())
        .collect();
    assert!(fps.iter().all(|fp| *fp == fps[0]));
}

#[tokio::test]
async fn wrong_receipt_is_retried_and_given_up() {
    let (base, st) = receiver(Mode::Wrong).await;
    let report = sender(&base, RetrySchedule::twocheckout().truncated(4))
        .deliver(&one_ipn())
        .await;
    assert_eq!(report.outcome, Outcome::GaveUp);
    assert!(!report.receipt_valid);
    assert_eq!(report.attempts.len(), 4);
    for a in &report.attempts {
        assert!(
            matches!(&a.result, AttemptResult::BadReceipt { reason } if reason.contains("does not match")),
            "{a:?}"
        );
    }
    assert_eq!(st.hits.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn missing_receipt_stops_after_the_full_schedule() {
    let (base, st) = receiver(Mode::Missing).await;
    let mut g = Generator::new(GeneratorConfig::new(5));
    let lcn = g
        .scenario(ScenarioKind::Lcn(LcnEvent::Expiration))
        .pop()
        .unwrap();
    assert_eq!(lcn.kind, Kind::Lcn);
    let report = sender(&base, RetrySchedule::twocheckout())
        .deliver(&lcn)
        .await;
    assert_eq!(report.outcome, Outcome::GaveUp);
    assert_eq!(report.attempts.len(), RetrySchedule::twocheckout().len());
    assert_eq!(st.hits.load(Ordering::SeqCst), 53);
}

#[tokio::test]
async fn connection_errors_are_retried_and_bounded() {
    // Bind then drop a listener to get a closed local port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let report = sender(
        &format!("http://127.0.0.1:{port}"),
        RetrySchedule::twocheckout().truncated(3),
    )
    .deliver(&one_ipn())
    .await;
    assert_eq!(report.outcome, Outcome::GaveUp);
    assert_eq!(report.attempts.len(), 3);
    assert!(report
        .attempts
        .iter()
        .all(|a| matches!(a.result, AttemptResult::Transport { .. })));
}

#[tokio::test]
async fn rejected_signature_is_not_acknowledged() {
    let (base, _st) = receiver(Mode::Correct).await;
    let endpoints = Endpoints::single(&format!("{base}/ipn"));
    let mut cfg = SenderConfig::new(endpoints, SecretKey::from("not the receiver's key"));
    cfg.schedule = RetrySchedule::twocheckout().truncated(2);
    cfg.time_compression = 1.0e7;
    let report = Sender::new(cfg).unwrap().deliver(&one_ipn()).await;
    assert_eq!(report.outcome, Outcome::GaveUp);
    assert!(report
        .attempts
        .iter()
        .all(|a| a.result == AttemptResult::HttpStatus { status: 401 }));
}
