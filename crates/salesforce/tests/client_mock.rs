//! Client mechanics against a tiny scripted HTTP server (independent of the emulator):
//! single-flight re-auth, 401 replay, `Sforce-Limit-Info`, transport failures, headers.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use salesforce::{
    ClientCredentials, Credentials, ErrorClass, Password, SalesforceError, TransportKind,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Mock {
    base: Mutex<String>,
    token_calls: AtomicU64,
    /// The token currently accepted.
    valid_token: Mutex<String>,
    /// Fail the next N data calls with 503.
    fail_503: AtomicU64,
    calls: AtomicU64,
    last_headers: Mutex<Option<HeaderMap>>,
    last_body: Mutex<Option<Value>>,
    last_form: Mutex<Option<String>>,
    /// Reject every token (revoked app / deactivated user).
    reject_all: std::sync::atomic::AtomicBool,
}

type S = Arc<Mock>;

async fn token(State(m): State<S>, headers: HeaderMap, body: String) -> Response {
    *m.last_form.lock().unwrap() = Some(body.clone());
    *m.last_headers.lock().unwrap() = Some(headers);
    if body.contains("password=wrong") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error":"invalid_grant","error_description":"authentication failure - Invalid Password"})),
        )
            .into_response();
    }
    // Let concurrent refreshers pile up on the client side.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let n = m.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
    let tok = format!("00Dx!token{n}");
    *m.valid_token.lock().unwrap() = tok.clone();
    Json(json!({
        "id":"https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P",
        "issued_at":"1278448832702",
        "instance_url": m.base.lock().unwrap().clone(),
        "signature":"0CmxinZir53Yex7nE0TD+zMpvIWYGb/bdJh6XfOH6EQ=",
        "access_token": tok,
        "token_type":"Bearer"
    }))
    .into_response()
}

fn authorized(m: &Mock, headers: &HeaderMap) -> bool {
    if m.reject_all.load(Ordering::SeqCst) {
        return false;
    }
    let expected = format!("Bearer {}", m.valid_token.lock().unwrap());
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

fn expired() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!([{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}])),
    )
        .into_response()
}

async fn upsert(
    State(m): State<S>,
    Path((obj, field, value)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    m.calls.fetch_add(1, Ordering::SeqCst);
    if !authorized(&m, &headers) {
        return expired();
    }
    if m.fail_503
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "<html><body>Service Unavailable</body></html>",
        )
            .into_response();
    }
    *m.last_headers.lock().unwrap() = Some(headers);
    *m.last_body.lock().unwrap() = Some(json!({"obj":obj,"field":field,"value":value,"body":body}));
    let n = m.calls.load(Ordering::SeqCst);
    (
        StatusCode::CREATED,
        [("Sforce-Limit-Info", format!("api-usage={n}/15000"))],
        Json(json!({"id":"001000000000001AAA","success":true,"errors":[],"created":true})),
    )
        .into_response()
}

async fn slow() -> Response {
    tokio::time::sleep(Duration::from_secs(30)).await;
    StatusCode::NO_CONTENT.into_response()
}

async fn query(State(m): State<S>, headers: HeaderMap) -> Response {
    if !authorized(&m, &headers) {
        return expired();
    }
    *m.last_headers.lock().unwrap() = Some(headers);
    Json(json!({"totalSize":0,"done":true,"records":[]})).into_response()
}

async fn start() -> (S, String) {
    let m: S = Arc::new(Mock::default());
    let app = Router::new()
        .route("/services/oauth2/token", post(token))
        .route(
            "/services/data/v62.0/sobjects/{obj}/{field}/{value}",
            patch(upsert),
        )
        .route(
            "/services/data/v62.0/sobjects/Account/001000000000001AAA",
            patch(slow),
        )
        .route("/services/data/v62.0/query", get(query))
        .with_state(m.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *m.base.lock().unwrap() = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (m, base)
}

fn password_creds(base: &str, password: &str) -> Credentials {
    Credentials::Password(Password {
        client_id: "cid".into(),
        client_secret: "csecret".into(),
        username: "u@example.com".into(),
        password: password.into(),
        login_url: base.into(),
    })
}

#[tokio::test]
async fn ten_concurrent_callers_share_one_reauthentication() {
    let (m, base) = start().await;
    let client = salesforce::Client::builder(password_creds(&base, "pw"))
        .max_in_flight(10)
        .build()
        .unwrap();
    client.authenticate().await.unwrap();
    assert_eq!(m.token_calls.load(Ordering::SeqCst), 1);
    // Expire the session server-side.
    *m.valid_token.lock().unwrap() = "revoked".into();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            c.upsert("Account", "Ext__c", &format!("C{i}"), &json!({"Name": "x"}))
                .await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert!(r.created);
    }
    assert_eq!(
        m.token_calls.load(Ordering::SeqCst),
        2,
        "exactly one re-auth"
    );
    assert_eq!(client.reauthentications(), 1);
}

#[tokio::test]
async fn second_401_after_fresh_token_is_returned_not_looped() {
    let (m, base) = start().await;
    let client = salesforce::Client::builder(password_creds(&base, "pw"))
        .build()
        .unwrap();
    client.authenticate().await.unwrap();
    // Every token is rejected: the replay after the re-auth fails too.
    m.reject_all.store(true, Ordering::SeqCst);
    let err = client
        .upsert("Account", "Ext__c", "C1", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::SessionExpired);
    assert_eq!(
        m.token_calls.load(Ordering::SeqCst),
        2,
        "one re-auth, no loop"
    );
}

#[tokio::test]
async fn limit_info_is_tracked_and_published() {
    let (_m, base) = start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let client = salesforce::Client::builder(password_creds(&base, "pw"))
        .on_api_usage(move |u| seen2.lock().unwrap().push(u))
        .build()
        .unwrap();
    let mut rx = client.subscribe_api_usage();
    assert_eq!(client.api_usage(), None);
    client
        .upsert("Account", "Ext__c", "C1", &json!({}))
        .await
        .unwrap();
    let usage = client.api_usage().unwrap();
    assert_eq!(usage.max, 15000);
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), Some(usage));
    assert_eq!(seen.lock().unwrap().as_slice(), &[usage]);
}

#[tokio::test]
async fn external_id_is_one_encoded_path_segment() {
    let (m, base) = start().await;
    let client = salesforce::Client::builder(password_creds(&base, "pw"))
        .build()
        .unwrap();
    let hostile = "a/b #c%d?e=f Zoë.json";
    client
        .upsert("Contact", "Ext__c", hostile, &json!({"LastName":"O'Brien"}))
        .await
        .unwrap();
    let last = m.last_body.lock().unwrap().clone().unwrap();
    assert_eq!(last["obj"], "Contact");
    assert_eq!(last["field"], "Ext__c");
    assert_eq!(last["value"], hostile);
    assert_eq!(last["body"]["LastName"], "O'Brien");
    let headers = m.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["accept"], "application/json");
}

#[tokio::test]
async fn service_unavailable_html_is_transient_then_recovers() {
    let (m, base) = start().await;
    let client = salesforce::Client::builder(password_creds(&base, "pw"))
        .build()
        .unwrap();
    m.fail_503.store(1, Ordering::SeqCst);
    let err = client
        .upsert("Account", "Ext__c", "C1", &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SalesforceError::Http { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(!err.outcome_unknown());
    let ok = client
        .upsert("Account", "Ext__c", "C1", &json!({}))
        .await
        .unwrap();
    assert_eq!(ok.id, "001000000000001AAA");
}

#[tokio::test]
async fn timed_out_write_has_unknown_outcome() {
    let (_m, base) = start().await;
    let client = salesforce::Client::builder(password_creds(&base, "pw"))
        .request_timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let err = client
        .update("Account", "001000000000001AAA", &json!({"Name":"x"}))
        .await
        .unwrap_err();
    match &err {
        SalesforceError::Transport {
            kind,
            outcome_unknown,
            ..
        } => {
            assert_eq!(*kind, TransportKind::Timeout);
            assert!(outcome_unknown);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn connection_refused_is_transient_and_not_unknown() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = salesforce::Client::builder(password_creds(&base, "pw"))
        .build()
        .unwrap();
    let err = client.authenticate().await.unwrap_err();
    assert!(
        matches!(
            err,
            SalesforceError::Transport {
                kind: TransportKind::Connect,
                outcome_unknown: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn oauth_failure_is_typed() {
    let (_m, base) = start().await;
    let client = salesforce::Client::builder(password_creds(&base, "wrong"))
        .build()
        .unwrap();
    let err = client.authenticate().await.unwrap_err();
    match &err {
        SalesforceError::Auth {
            status,
            error,
            description,
        } => {
            assert_eq!(*status, 400);
            assert_eq!(error, "invalid_grant");
            assert_eq!(description, "authentication failure - Invalid Password");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn client_credentials_use_basic_auth_by_default() {
    let (m, base) = start().await;
    let creds = Credentials::ClientCredentials(ClientCredentials::new("cid", "s3cret", &base));
    let client = salesforce::Client::builder(creds).build().unwrap();
    client.authenticate().await.unwrap();
    let headers = m.last_headers.lock().unwrap().clone().unwrap();
    // base64("cid:s3cret")
    assert_eq!(headers["authorization"], "Basic Y2lkOnMzY3JldA==");
    let form = m.last_form.lock().unwrap().clone().unwrap();
    assert_eq!(form, "grant_type=client_credentials");
}

#[tokio::test]
async fn query_sends_batch_size_and_escaped_soql() {
    let (m, base) = start().await;
    let client = salesforce::Client::builder(password_creds(&base, "pw"))
        .config(salesforce::ClientConfig {
            query_batch_size: Some(500),
            ..Default::default()
        })
        .build()
        .unwrap();
    let soql = format!(
        "SELECT Id FROM Contact WHERE Email IN {}",
        salesforce::soql::in_list(&["o'neil@x.io", "a&b@x.io"]).unwrap()
    );
    let rows: Vec<Value> = client.query_all(&soql).await.unwrap();
    assert!(rows.is_empty());
    let headers = m.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(headers["sforce-query-options"], "batchSize=500");
}
