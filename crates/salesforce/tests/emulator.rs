//! Integration tests against the in-process Salesforce emulator (crates/sf-emulator).

use salesforce::bulk::records_to_csv;
use salesforce::{
    ClientConfig, ClientCredentials, Credentials, ErrorClass, Graph, GraphNode, IngestJobRequest,
    JwtBearer, PollPolicy, PrivateKey, RefreshToken, SalesforceError,
};
use serde_json::{json, Value};
use sf_emulator::{Emulator, EmulatorConfig};
use std::time::Duration;

const KEY: &[u8] = include_bytes!("fixtures/test_rsa_key.pem");
const PUB: &str = include_str!("fixtures/test_rsa_pub.pem");
const EXT: &str = "TwoCheckout_Customer_Ref__c";

async fn emulator(page_size: usize) -> Emulator {
    let cfg = EmulatorConfig {
        jwt_public_key_pem: Some(PUB.to_owned()),
        query_page_size: page_size,
        ..EmulatorConfig::default()
    };
    sf_emulator::spawn(cfg).await.expect("emulator starts")
}

fn client_credentials(emu: &Emulator) -> Credentials {
    let d = EmulatorConfig::default();
    Credentials::ClientCredentials(ClientCredentials::new(
        d.client_id,
        d.client_secret,
        emu.url(),
    ))
}

fn client(emu: &Emulator) -> salesforce::Client {
    salesforce::Client::builder(client_credentials(emu))
        .max_in_flight(16)
        .build()
        .unwrap()
}

fn by_ext<'a>(records: &'a [Value], value: &str) -> Option<&'a Value> {
    records.iter().find(|r| r[EXT] == value)
}

#[tokio::test]
async fn client_credentials_login_and_upsert_created_then_updated() {
    let emu = emulator(2000).await;
    let c = client(&emu);
    let instance = c.authenticate().await.unwrap();
    assert_eq!(instance, emu.url());

    let first = c
        .upsert("Account", EXT, "C/1 #ü", &json!({"Name": "Acme Ltd"}))
        .await
        .unwrap();
    assert!(first.created);
    let second = c
        .upsert("Account", EXT, "C/1 #ü", &json!({"Name": "Acme Limited"}))
        .await
        .unwrap();
    assert!(!second.created);
    assert_eq!(first.id, second.id);

    let records = emu.records("Account");
    let acct = by_ext(&records, "C/1 #ü").expect("stored under the decoded ext id");
    assert_eq!(acct["Name"], "Acme Limited");
    // Every response carries Sforce-Limit-Info.
    let usage = c.api_usage().expect("usage header seen");
    assert_eq!(usage.max, EmulatorConfig::default().daily_api_limit);
    assert!(usage.used >= 2);

    // Read back by external id and by record id.
    let got: Value = c
        .get_by_external_id("Account", EXT, "C/1 #ü", &["Id", "Name"])
        .await
        .unwrap();
    assert_eq!(got["Name"], "Acme Limited");
    let got: Value = c.get("Account", &first.id, &["Name"]).await.unwrap();
    assert_eq!(got["Name"], "Acme Limited");
}

#[tokio::test]
async fn jwt_bearer_login() {
    let emu = emulator(2000).await;
    let d = EmulatorConfig::default();
    let creds = Credentials::JwtBearer(
        JwtBearer::new(
            d.client_id.clone(),
            d.username.clone(),
            PrivateKey::from_pem(KEY).unwrap(),
            emu.url(),
        )
        .audience(salesforce::auth::LOGIN_URL),
    );
    let c = salesforce::Client::builder(creds).build().unwrap();
    c.authenticate().await.unwrap();
    let r = c
        .upsert("Account", EXT, "JWT-1", &json!({"Name": "Via JWT"}))
        .await
        .unwrap();
    assert!(r.created);

    // Wrong user → typed OAuth error.
    let creds = Credentials::JwtBearer(JwtBearer::new(
        d.client_id,
        "someone.else@example.com",
        PrivateKey::from_pem(KEY).unwrap(),
        emu.url(),
    ));
    let err = salesforce::Client::builder(creds)
        .build()
        .unwrap()
        .authenticate()
        .await
        .unwrap_err();
    match &err {
        SalesforceError::Auth { error, .. } => assert_eq!(error, "invalid_grant"),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn refresh_token_login() {
    let emu = emulator(2000).await;
    let d = EmulatorConfig::default();
    let creds = Credentials::RefreshToken(RefreshToken {
        client_id: d.client_id,
        client_secret: Some(d.client_secret.into()),
        refresh_token: emu.issue_refresh_token().into(),
        login_url: emu.url(),
    });
    let c = salesforce::Client::builder(creds).build().unwrap();
    c.authenticate().await.unwrap();
    c.limits().await.unwrap();
}

#[tokio::test]
async fn query_follows_pagination() {
    let emu = emulator(200).await;
    for i in 0..450 {
        emu.insert(
            "Contact",
            json!({"LastName": format!("O'Brien {i:03}"), EXT: format!("Q{i:03}")}),
        );
    }
    let c = client(&emu);
    let soql = format!(
        "SELECT Id, LastName FROM Contact WHERE LastName LIKE {} ORDER BY LastName",
        salesforce::soql::quote_like("O'Brien", salesforce::soql::LikePattern::StartsWith)
    );
    let before = emu.calls().per_resource.get("query").copied().unwrap_or(0);
    let rows: Vec<Value> = c.query_all(&soql).await.unwrap();
    assert_eq!(rows.len(), 450);
    assert_eq!(rows[0]["LastName"], "O'Brien 000");
    assert_eq!(rows[449]["LastName"], "O'Brien 449");
    let after = emu.calls().per_resource.get("query").copied().unwrap_or(0);
    assert_eq!(after - before, 3, "one call per page of 200");

    // Page-at-a-time form.
    let mut pager = c.query_pages::<Value>(&soql);
    let mut sizes = Vec::new();
    while let Some(page) = pager.next_page().await {
        let page = page.unwrap();
        assert_eq!(page.total_size, 450);
        sizes.push(page.records.len());
    }
    assert_eq!(sizes, vec![200, 200, 50]);

    // Escaped literal with quotes and backslashes matches exactly.
    emu.insert("Contact", json!({"LastName": r#"Quote ' and \ and ""#}));
    let soql = format!(
        "SELECT Id FROM Contact WHERE LastName = {}",
        salesforce::soql::quote(r#"Quote ' and \ and ""#)
    );
    let rows: Vec<Value> = c.query_all(&soql).await.unwrap();
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn composite_graph_with_two_events() {
    let emu = emulator(2000).await;
    let c = client(&emu);
    let v = c.api_version().to_owned();
    let event = |n: &str| -> Graph {
        Graph::new(format!("evt-{n}"))
            .upsert(
                &v,
                "acct",
                "Account",
                EXT,
                n,
                json!({"Name": format!("Customer {n}")}),
            )
            .unwrap()
            .upsert(
                &v,
                "con",
                "Contact",
                EXT,
                n,
                json!({"LastName": "Doe", "Email": format!("{n}@example.com"),
                       "AccountId": GraphNode::reference("acct", "id")}),
            )
            .unwrap()
    };
    c.authenticate().await.unwrap();
    let before = emu.calls().api_calls;
    let results = c
        .composite_graph(&[event("G1"), event("G2")])
        .await
        .unwrap();
    assert_eq!(
        emu.calls().api_calls - before,
        1,
        "one API call for two events"
    );
    assert_eq!(results.len(), 2);
    for g in &results {
        assert!(g.is_successful, "{g:?}");
        assert_eq!(g.response("acct").unwrap().created(), Some(true));
    }
    let accounts = emu.records("Account");
    let contacts = emu.records("Contact");
    for n in ["G1", "G2"] {
        let a = by_ext(&accounts, n).unwrap();
        let con = by_ext(&contacts, n).unwrap();
        assert_eq!(con["AccountId"], a["Id"]);
    }

    // A graph with a failing node rolls back as a whole, the other one commits.
    let bad = Graph::new("evt-bad")
        .upsert(
            &v,
            "acct",
            "Account",
            EXT,
            "G3",
            json!({"Name": "Customer G3"}),
        )
        .unwrap()
        .upsert(
            &v,
            "con",
            "Contact",
            EXT,
            "G3",
            json!({"Email": "g3@example.com"}),
        )
        .unwrap();
    let results = c.composite_graph(&[bad, event("G4")]).await.unwrap();
    let bad = results.iter().find(|g| g.graph_id == "evt-bad").unwrap();
    assert!(!bad.is_successful);
    let roots = bad.root_errors();
    assert_eq!(roots[0].0, "con");
    assert_eq!(roots[0].1.code, "REQUIRED_FIELD_MISSING");
    assert_eq!(bad.class(), Some(ErrorClass::Permanent));
    assert!(
        by_ext(&emu.records("Account"), "G3").is_none(),
        "rolled back"
    );
    assert!(results
        .iter()
        .any(|g| g.graph_id == "evt-G4" && g.is_successful));
}

#[tokio::test]
async fn collections_upsert_with_one_item_failing() {
    let emu = emulator(2000).await;
    let c = client(&emu);
    let records = vec![
        json!({"LastName": "Able", EXT: "K1"}),
        json!({EXT: "K2", "Email": "k2@example.com"}),
        json!({"LastName": "Charlie", EXT: "K3"}),
    ];
    let items = c
        .collections_upsert("Contact", EXT, &records, false)
        .await
        .unwrap();
    assert_eq!(items.len(), 3);
    assert!(items[0].success && items[0].created == Some(true));
    assert!(!items[1].success);
    assert_eq!(items[1].errors[0].code, "REQUIRED_FIELD_MISSING");
    assert_eq!(items[1].class(), Some(ErrorClass::Permanent));
    assert!(items[2].success);
    let stored = emu.records("Contact");
    assert!(by_ext(&stored, "K1").is_some() && by_ext(&stored, "K2").is_none());

    // Same batch again: the good ones are updates now.
    let items = c
        .collections_upsert("Contact", EXT, &records, false)
        .await
        .unwrap();
    assert_eq!(items[0].created, Some(false));

    // Too many records is refused client-side.
    let many: Vec<Value> = (0..201).map(|i| json!({EXT: format!("M{i}")})).collect();
    assert!(matches!(
        c.collections_upsert("Contact", EXT, &many, false).await,
        Err(SalesforceError::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn expired_session_mid_run_is_one_shared_reauth() {
    let emu = emulator(2000).await;
    let c = client(&emu);
    c.upsert("Account", EXT, "S0", &json!({"Name": "Before"}))
        .await
        .unwrap();
    let tokens_before = emu.calls().token_requests;
    emu.faults().expire_sessions();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.upsert(
                "Account",
                EXT,
                &format!("S{}", i + 1),
                &json!({"Name": "After"}),
            )
            .await
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap().created);
    }
    assert_eq!(emu.calls().token_requests - tokens_before, 1);
    assert_eq!(c.reauthentications(), 1);
    assert_eq!(emu.records("Account").len(), 11);
}

#[tokio::test]
async fn outage_503_then_recovery() {
    let emu = emulator(2000).await;
    let c = client(&emu);
    c.authenticate().await.unwrap();
    emu.faults().set_outage(true);
    let err = c
        .upsert("Account", EXT, "O1", &json!({"Name": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(err.class(), ErrorClass::Transient);
    emu.faults().set_outage(false);
    let ok = c
        .upsert("Account", EXT, "O1", &json!({"Name": "x"}))
        .await
        .unwrap();
    assert!(ok.created);
}

#[tokio::test]
async fn row_lock_is_transient_and_clears() {
    let emu = emulator(2000).await;
    let c = client(&emu);
    c.upsert("Account", EXT, "L1", &json!({"Name": "x"}))
        .await
        .unwrap();
    emu.faults().lock_record("L1", 1);
    let err = c
        .upsert("Account", EXT, "L1", &json!({"Name": "y"}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UNABLE_TO_LOCK_ROW"));
    assert_eq!(err.class(), ErrorClass::Transient);
    c.upsert("Account", EXT, "L1", &json!({"Name": "y"}))
        .await
        .unwrap();
}

#[tokio::test]
async fn timed_out_upsert_is_unknown_and_safe_to_replay() {
    let emu = emulator(2000).await;
    let c = salesforce::Client::builder(client_credentials(&emu))
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    c.authenticate().await.unwrap();
    emu.faults()
        .commit_then_timeout(1, Duration::from_secs(5), false);
    let err = c
        .upsert("Account", EXT, "T1", &json!({"Name": "x"}))
        .await
        .unwrap_err();
    assert!(err.outcome_unknown(), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    // It did commit; the replay is an update, not a duplicate.
    let again = c
        .upsert("Account", EXT, "T1", &json!({"Name": "x"}))
        .await
        .unwrap();
    assert!(!again.created);
    let n = emu
        .records("Account")
        .iter()
        .filter(|r| r[EXT] == "T1")
        .count();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn describe_limits_and_crud() {
    let emu = emulator(2000).await;
    let c = client(&emu);
    let d = c.describe("Account").await.unwrap();
    let f = d.field(EXT).expect("custom ext id field");
    assert!(f.external_id && f.unique && f.createable && f.updateable);
    assert!(d.field("Name").unwrap().required_on_create());
    let limits = c.limits().await.unwrap();
    assert_eq!(
        limits.get("DailyApiRequests").unwrap().max,
        EmulatorConfig::default().daily_api_limit as i64
    );
    let created = c
        .create("Account", &json!({"Name": "Plain create"}))
        .await
        .unwrap();
    c.update("Account", &created.id, &json!({"Name": "Renamed"}))
        .await
        .unwrap();
    let got: Value = c.get("Account", &created.id, &["Name"]).await.unwrap();
    assert_eq!(got["Name"], "Renamed");
    c.delete("Account", &created.id).await.unwrap();
    let err = c
        .get::<Value>("Account", &created.id, &[])
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.class(), ErrorClass::Permanent);
    // Missing required field on a single upsert.
    let err = c
        .upsert("Contact", EXT, "R1", &json!({"Email": "r1@example.com"}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("REQUIRED_FIELD_MISSING"));
}

#[tokio::test]
async fn bulk_ingest_round_trip() {
    let emu = emulator(2000).await;
    let c = client(&emu);
    let records = vec![
        json!({EXT: "B1", "LastName": "Comma, Inc.", "Email": "b1@example.com"}),
        json!({EXT: "B2", "LastName": "=SUM(A1)", "Email": null}),
        json!({EXT: "B3", "Email": "b3@example.com"}),
        json!({EXT: "B4", "LastName": "Multi\nline \"quoted\""}),
    ];
    let csv = records_to_csv(&[EXT, "LastName", "Email"], &records).unwrap();
    let policy = PollPolicy {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        multiplier: 2,
        max_total: Some(Duration::from_secs(60)),
    };
    let out = c
        .bulk_ingest(&IngestJobRequest::upsert("Contact", EXT), csv, &policy)
        .await
        .unwrap();
    assert_eq!(out.job.state, salesforce::JobState::JobComplete);
    assert_eq!(out.successful.len(), 3, "{out:?}");
    assert!(out.successful.iter().all(|r| r.created));
    assert_eq!(out.failed.len(), 1);
    assert_eq!(out.failed[0].fields[EXT], "B3");
    assert_eq!(out.failed[0].error.code, "REQUIRED_FIELD_MISSING");
    assert!(out.unprocessed.is_empty());
    let stored = emu.records("Contact");
    assert_eq!(by_ext(&stored, "B2").unwrap()["LastName"], "=SUM(A1)");
    assert_eq!(
        by_ext(&stored, "B4").unwrap()["LastName"],
        "Multi\nline \"quoted\""
    );
    assert_eq!(by_ext(&stored, "B1").unwrap()["LastName"], "Comma, Inc.");
}

#[tokio::test]
async fn api_version_is_configurable() {
    let emu = emulator(2000).await;
    let c = salesforce::Client::builder(client_credentials(&emu))
        .config(ClientConfig {
            api_version: "v60.0".into(),
            ..Default::default()
        })
        .build()
        .unwrap();
    let r = c
        .upsert("Account", EXT, "V60", &json!({"Name": "x"}))
        .await
        .unwrap();
    assert!(r.created);
    assert!(salesforce::Client::builder(client_credentials(&emu))
        .api_version("v45.0")
        .build()
        .is_err());
}

#[tokio::test]
async fn duplicate_rule_reports_matches_and_header_allows_save() {
    let emu = emulator(2000).await;
    let existing = emu.insert(
        "Contact",
        json!({"LastName": "Existing", "Email": "dup@example.com"}),
    );
    let c = client(&emu);
    let err = c
        .upsert(
            "Contact",
            EXT,
            "D1",
            &json!({"LastName": "New", "Email": "dup@example.com"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("DUPLICATES_DETECTED"));
    assert_eq!(err.class(), ErrorClass::Permanent);
    let dups = err.duplicates().expect("duplicateResult parsed");
    assert_eq!(dups.matched_ids, vec![existing]);
    assert_eq!(dups.allow_save, Some(true));

    let allow = salesforce::Client::builder(client_credentials(&emu))
        .config(ClientConfig {
            duplicate_rule_header: Some(
                "allowSave=true; includeRecordDetails=false; runAsCurrentUser=false".into(),
            ),
            ..Default::default()
        })
        .build()
        .unwrap();
    let r = allow
        .upsert(
            "Contact",
            EXT,
            "D1",
            &json!({"LastName": "New", "Email": "dup@example.com"}),
        )
        .await
        .unwrap();
    assert!(r.created);
}

#[tokio::test]
async fn daily_limit_is_limit_exceeded_daily() {
    let emu = emulator(2000).await;
    let c = client(&emu);
    c.authenticate().await.unwrap();
    emu.faults()
        .set_api_usage(EmulatorConfig::default().daily_api_limit);
    let err = c
        .upsert("Account", EXT, "X1", &json!({"Name": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("REQUEST_LIMIT_EXCEEDED"));
    assert_eq!(err.class(), ErrorClass::LimitExceeded);
    assert_eq!(err.limit_kind(), Some(salesforce::LimitKind::Daily));
}

#[tokio::test]
async fn composite_all_or_none_reports_root_cause_and_collateral() {
    let emu = emulator(2000).await;
    let c = client(&emu);
    let v = c.api_version().to_owned();
    let req = salesforce::CompositeRequest {
        all_or_none: true,
        collate_subrequests: false,
        composite_request: vec![
            GraphNode::upsert(&v, "acct", "Account", EXT, "CP1", json!({"Name": "Comp"})).unwrap(),
            GraphNode::upsert(
                &v,
                "con",
                "Contact",
                EXT,
                "CP1",
                json!({"Email": "cp1@example.com", "AccountId": GraphNode::reference("acct", "id")}),
            )
            .unwrap(),
        ],
    };
    let resp = c.composite(&req).await.unwrap();
    assert!(!resp.is_successful());
    let acct = &resp.composite_response[0];
    assert!(acct.errors().iter().all(|e| e.collateral), "{acct:?}");
    let roots = resp.root_errors();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0].0, "con");
    assert_eq!(roots[0].1.code, "REQUIRED_FIELD_MISSING");
    assert!(
        by_ext(&emu.records("Account"), "CP1").is_none(),
        "rolled back"
    );

    let ok = salesforce::CompositeRequest {
        all_or_none: true,
        collate_subrequests: false,
        composite_request: vec![GraphNode::upsert(
            &v,
            "acct",
            "Account",
            EXT,
            "CP2",
            json!({"Name": "Comp 2"}),
        )
        .unwrap()],
    };
    let resp = c.composite(&ok).await.unwrap();
    assert!(resp.is_successful());
    assert_eq!(resp.composite_response[0].created(), Some(true));
}

#[tokio::test]
async fn collections_create_and_update() {
    let emu = emulator(2000).await;
    let c = client(&emu);
    let created = c
        .collections_create(
            Some("Account"),
            &[json!({"Name": "One"}), json!({"Name": "Two"})],
            false,
        )
        .await
        .unwrap();
    assert!(created.iter().all(|i| i.success));
    let ids: Vec<String> = created.iter().map(|i| i.id.clone().unwrap()).collect();
    let updates: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "Name": format!("Renamed {id}")}))
        .collect();
    let updated = c
        .collections_update(Some("Account"), &updates, true)
        .await
        .unwrap();
    assert!(updated.iter().all(|i| i.success), "{updated:?}");
    let stored = emu.records("Account");
    for id in &ids {
        let rec = stored.iter().find(|r| &r["Id"] == id).unwrap();
        assert_eq!(rec["Name"], format!("Renamed {id}"));
    }
}

#[tokio::test]
async fn query_pages_as_a_stream() {
    use futures::StreamExt;
    let emu = emulator(200).await;
    for i in 0..250 {
        emu.insert("Account", json!({"Name": format!("Stream {i}")}));
    }
    let c = client(&emu);
    let pages: Vec<_> = c
        .query_pages::<Value>("SELECT Id FROM Account")
        .into_stream()
        .collect()
        .await;
    let sizes: Vec<usize> = pages
        .into_iter()
        .map(|p| p.unwrap().records.len())
        .collect();
    assert_eq!(sizes, vec![200, 50]);
}
