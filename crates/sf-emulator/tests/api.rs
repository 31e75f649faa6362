//! REST, composite graph, collections, OAuth flows, faults, admin API, persistence, TLS.

mod common;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sf_emulator::{EmulatorConfig, Latency, TlsConfig};
use std::time::Duration;

#[tokio::test]
async fn upsert_statuses_by_version_and_relationship_by_external_id() {
    let (emu, c) = start().await;
    let r = c
        .patch(
            "sobjects/Account/TwoCheckout_Customer_Ref__c/C-1",
            json!({"Name": "Acme"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["created"], json!(true));
    let acct = r.body["id"].clone();
    let r = c
        .patch(
            "sobjects/Account/TwoCheckout_Customer_Ref__c/C-1",
            json!({"Name": "Acme 2"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["created"].clone(), r.body["id"].clone()),
        (200, json!(false), acct.clone())
    );
    let old = c
        .patch(
            "/services/data/v45.0/sobjects/Account/TwoCheckout_Customer_Ref__c/C-1",
            json!({"Name": "Acme 3"}),
        )
        .await;
    assert_eq!((old.status, old.text.as_str()), (204, ""));
    let old_new = c
        .patch(
            "/services/data/v45.0/sobjects/Account/TwoCheckout_Customer_Ref__c/C-2",
            json!({"Name": "B"}),
        )
        .await;
    assert_eq!(old_new.status, 201);
    assert!(
        old_new.body.get("created").is_none(),
        "no created flag before v46"
    );
    // Ext ids with reserved characters travel percent-encoded.
    let r = c
        .patch(
            "sobjects/Account/TwoCheckout_Customer_Ref__c/A%2FB%23C",
            json!({"Name": "Slash"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(emu
        .records("Account")
        .iter()
        .any(|a| a["TwoCheckout_Customer_Ref__c"] == json!("A/B#C")));

    let r = c
        .patch(
            "sobjects/Opportunity/TwoCheckout_Order_Ref__c/O-1",
            json!({"Name": "Order 1", "StageName": "Closed Won", "CloseDate": "2024-05-01", "Amount": 99.5, "Account": {"TwoCheckout_Customer_Ref__c": "C-1"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let opp = c
        .get(&format!(
            "sobjects/Opportunity/{}",
            r.body["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(opp.body["AccountId"], acct);
    assert_eq!(
        (opp.body["IsClosed"].clone(), opp.body["IsWon"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(opp.body["attributes"]["type"], json!("Opportunity"));
    assert_eq!(opp.body["OwnerId"], json!(emu.integration_user_id()));
    let q = c.query("SELECT Name, Account.Name, Account.TwoCheckout_Customer_Ref__c FROM Opportunity WHERE IsWon = true").await;
    assert_eq!(q.body["records"][0]["Account"]["Name"], json!("Acme 3"));
    let upd = c
        .patch(
            &format!("sobjects/Opportunity/{}", r.body["id"].as_str().unwrap()),
            json!({"StageName": "Closed Lost"}),
        )
        .await;
    assert_eq!(upd.status, 204);
    let del = c
        .delete("sobjects/Account/TwoCheckout_Customer_Ref__c/C-2")
        .await;
    assert_eq!(del.status, 204);
    let gone = c
        .get("sobjects/Account/TwoCheckout_Customer_Ref__c/C-2")
        .await;
    assert_eq!(gone.status, 404);
    let all = c
        .get(&format!(
            "queryAll?q={}",
            url_encode("SELECT Id, IsDeleted FROM Account WHERE IsDeleted = true")
        ))
        .await;
    assert_eq!(all.body["totalSize"], json!(1));
}

#[tokio::test]
async fn validation_errors_over_rest() {
    let (_emu, c) = start().await;
    let long = "x".repeat(256);
    let cases = [
        (json!({"Name": long}), "STRING_TOO_LONG"),
        (json!({"Name": "A", "Foo__c": 1}), "INVALID_FIELD"),
        (
            json!({"Name": "A", "NumberOfEmployees": "many"}),
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
        ),
        (
            json!({"Name": "A", "CreatedDate": "2020-01-01T00:00:00Z"}),
            "INVALID_FIELD_FOR_INSERT_UPDATE",
        ),
        (
            json!({"Name": "A", "CurrencyIsoCode": "EUR"}),
            "INVALID_FIELD",
        ),
        (
            json!({"Name": "A", "ParentId": "not-an-id"}),
            "MALFORMED_ID",
        ),
    ];
    for (body, code) in cases {
        let r = c.post("sobjects/Account", body.clone()).await;
        assert_eq!(
            (r.status, r.body[0]["errorCode"].as_str()),
            (400, Some(code)),
            "{body}: {}",
            r.text
        );
    }
    let r = c
        .post(
            "sobjects/Contact",
            json!({"LastName": "X", "Email": "nope"}),
        )
        .await;
    assert_eq!(
        r.body,
        json!([{"message":"Email: invalid email address: nope","errorCode":"INVALID_EMAIL_ADDRESS","fields":["Email"]}])
    );
    let r = c.post("sobjects/Opportunity", json!({"Name": "O"})).await;
    assert_eq!(
        r.body[0]["message"],
        json!("Required fields are missing: [StageName, CloseDate]")
    );
    let r = c
        .post(
            "sobjects/Account",
            json!({"Name": "A", "TwoCheckout_Customer_Ref__c": "U1"}),
        )
        .await;
    let r2 = c
        .post(
            "sobjects/Account",
            json!({"Name": "B", "TwoCheckout_Customer_Ref__c": "u1"}),
        )
        .await;
    assert_eq!(r2.body[0]["errorCode"], json!("DUPLICATE_VALUE"));
    assert_eq!(
        r2.body[0]["message"],
        json!(format!("duplicate value found: TwoCheckout_Customer_Ref__c duplicates value on record with id: {}", r.body["id"].as_str().unwrap()))
    );
    let bad_json = c
        .http
        .post(c.url("sobjects/Account"))
        .bearer_auth(&c.token)
        .header("content-type", "application/json")
        .body("{\"Name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
    let v: Value = bad_json.json().await.unwrap();
    assert_eq!(v[0]["errorCode"], json!("JSON_PARSER_ERROR"));
    let q = c.query("SELECT Id FROM Account WHERE").await;
    assert_eq!(q.body[0]["errorCode"], json!("MALFORMED_QUERY"));
    assert_eq!(c.get("sobjects/Nope__c").await.status, 404);
}

#[tokio::test]
async fn describe_and_global_describe() {
    let (_emu, c) = start().await;
    let g = c.get("sobjects").await;
    let names: Vec<&str> = g.body["sobjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    for n in [
        "Account",
        "Contact",
        "Lead",
        "Opportunity",
        "OpportunityLineItem",
        "Product2",
        "Pricebook2",
        "PricebookEntry",
        "Task",
        "Case",
        "Campaign",
        "CampaignMember",
        "User",
    ] {
        assert!(names.contains(&n), "{n} missing");
    }
    assert!(
        !names.contains(&"CurrencyType"),
        "CurrencyType only in multi-currency orgs"
    );
    let d = c.get("sobjects/Contact/describe").await;
    assert_eq!(d.body["keyPrefix"], json!("003"));
    let f = |name: &str| {
        d.body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == json!(name))
            .cloned()
            .unwrap()
    };
    let email = f("Email");
    assert_eq!(
        (
            email["type"].clone(),
            email["idLookup"].clone(),
            email["nillable"].clone()
        ),
        (json!("email"), json!(true), json!(true))
    );
    let ext = f("TwoCheckout_Customer_Ref__c");
    assert_eq!(
        (
            ext["externalId"].clone(),
            ext["unique"].clone(),
            ext["length"].clone(),
            ext["custom"].clone()
        ),
        (json!(true), json!(true), json!(255), json!(true))
    );
    let last = f("LastName");
    assert_eq!(
        (
            last["nillable"].clone(),
            last["createable"].clone(),
            last["defaultedOnCreate"].clone()
        ),
        (json!(false), json!(true), json!(false))
    );
    let src = f("LeadSource");
    assert!(src["picklistValues"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["value"] == json!("Web")));
    let acct = f("AccountId");
    assert_eq!(
        (
            acct["referenceTo"].clone(),
            acct["relationshipName"].clone()
        ),
        (json!(["Account"]), json!("Account"))
    );
    for k in [
        "name",
        "type",
        "length",
        "nillable",
        "createable",
        "updateable",
        "externalId",
        "unique",
        "idLookup",
        "picklistValues",
    ] {
        assert!(email.get(k).is_some(), "describe field lacks {k}");
    }
}

#[tokio::test]
async fn multi_currency_org() {
    let cfg = EmulatorConfig {
        multi_currency: true,
        active_currencies: vec!["EUR".into(), "JPY".into()],
        ..EmulatorConfig::default()
    };
    let (_emu, c) = start_with(cfg).await;
    let r = c.post("sobjects/Opportunity", json!({"Name": "O", "StageName": "Closed Won", "CloseDate": "2024-01-01", "CurrencyIsoCode": "EUR"})).await;
    assert_eq!(r.status, 201);
    let r = c.post("sobjects/Opportunity", json!({"Name": "O", "StageName": "Closed Won", "CloseDate": "2024-01-01", "CurrencyIsoCode": "GBP"})).await;
    assert_eq!(
        r.body[0]["errorCode"],
        json!("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    );
    let q = c
        .query(
            "SELECT IsoCode, IsCorporate FROM CurrencyType WHERE IsActive = true ORDER BY IsoCode",
        )
        .await;
    let codes: Vec<&str> = q.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["IsoCode"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["EUR", "JPY", "USD"]);
    let d = c.get("sobjects/Opportunity/describe").await;
    assert!(d.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == json!("CurrencyIsoCode")));
}

#[tokio::test]
async fn composite_graph_rolls_back_failed_graphs_only() {
    let (emu, c) = start().await;
    let graph = |gid: &str, email: &str| {
        json!({"graphId": gid, "compositeRequest": [
            {"method": "PATCH", "url": format!("/services/data/{V}/sobjects/Account/TwoCheckout_Customer_Ref__c/{gid}"), "referenceId": "acct", "body": {"Name": gid}},
            {"method": "PATCH", "url": format!("/services/data/{V}/sobjects/Contact/TwoCheckout_Customer_Ref__c/{gid}"), "referenceId": "con", "body": {"LastName": "L", "Email": email, "AccountId": "@{acct.id}"}},
            {"method": "POST", "url": format!("/services/data/{V}/sobjects/Task"), "referenceId": "task", "body": {"Subject": "Paid", "WhoId": "@{con.id}", "WhatId": "@{acct.id}"}}
        ]})
    };
    let r = c.post("composite/graph", json!({"graphs": [graph("g1", "ok@x.com"), graph("g2", "not-an-email"), graph("g3", "ok3@x.com")]})).await;
    assert_eq!(r.status, 200);
    let gs = r.body["graphs"].as_array().unwrap();
    let ok: Vec<bool> = gs
        .iter()
        .map(|g| g["isSuccessful"].as_bool().unwrap())
        .collect();
    assert_eq!(ok, vec![true, false, true]);
    let g2 = gs[1]["graphResponse"]["compositeResponse"]
        .as_array()
        .unwrap();
    assert_eq!(g2[0]["body"][0]["errorCode"], json!("PROCESSING_HALTED"));
    assert_eq!(
        g2[1]["body"][0]["errorCode"],
        json!("INVALID_EMAIL_ADDRESS")
    );
    assert_eq!(g2[2]["body"][0]["errorCode"], json!("PROCESSING_HALTED"));
    let accts: Vec<String> = emu
        .records("Account")
        .iter()
        .map(|a| a["Name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(accts, vec!["g1", "g3"]);
    assert_eq!(emu.records("Task").len(), 2);
    assert_eq!(emu.calls().per_resource["composite/graph"], 1);

    let too_many: Vec<Value> = (0..76)
        .map(|i| json!({"graphId": format!("x{i}"), "compositeRequest": []}))
        .collect();
    let r = c.post("composite/graph", json!({"graphs": too_many})).await;
    assert_eq!(r.status, 400);
    let nodes: Vec<Value> = (0..501)
        .map(|i| json!({"method": "POST", "url": format!("/services/data/{V}/sobjects/Task"), "referenceId": format!("t{i}"), "body": {}}))
        .collect();
    let r = c
        .post(
            "composite/graph",
            json!({"graphs": [{"graphId": "big", "compositeRequest": nodes}]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(emu.records("Task").len() == 2);
}

#[tokio::test]
async fn composite_references_and_limits() {
    let (emu, c) = start().await;
    emu.insert("Contact", json!({"LastName": "Q", "Email": "q@x.com"}));
    let body = json!({"allOrNone": false, "compositeRequest": [
        {"method": "GET", "url": format!("/services/data/{V}/query?q=SELECT+Id+FROM+Contact"), "referenceId": "q"},
        {"method": "PATCH", "url": format!("/services/data/{V}/sobjects/Contact/@{{q.records[0].Id}}"), "referenceId": "upd", "body": {"Title": "CEO"}},
        {"method": "POST", "url": format!("/services/data/{V}/sobjects/Account"), "referenceId": "bad", "body": {}},
        {"method": "POST", "url": format!("/services/data/{V}/sobjects/Task"), "referenceId": "dep", "body": {"WhatId": "@{bad.id}"}}
    ]});
    let r = c.post("composite", body).await;
    let cr = r.body["compositeResponse"].as_array().unwrap();
    let codes: Vec<u64> = cr
        .iter()
        .map(|x| x["httpStatusCode"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, vec![200, 204, 400, 400]);
    assert_eq!(cr[3]["body"][0]["errorCode"], json!("PROCESSING_HALTED"));
    assert_eq!(emu.records("Contact")[0]["Title"], json!("CEO"));
    let subs: Vec<Value> = (0..26).map(|i| json!({"method": "GET", "url": format!("/services/data/{V}/limits"), "referenceId": format!("r{i}")})).collect();
    let r = c.post("composite", json!({"compositeRequest": subs})).await;
    assert_eq!(r.status, 400);
    // Created records report a Location header.
    let r = c.post("composite", json!({"compositeRequest": [{"method": "POST", "url": format!("/services/data/{V}/sobjects/Account"), "referenceId": "a", "body": {"Name": "L"}}]})).await;
    let loc = r.body["compositeResponse"][0]["httpHeaders"]["Location"]
        .as_str()
        .unwrap();
    assert!(loc.starts_with(&format!("/services/data/{V}/sobjects/Account/001")));
}

#[tokio::test]
async fn collections_all_or_none_and_item_errors() {
    let (emu, c) = start().await;
    let recs = json!([
        {"attributes": {"type": "Account"}, "Name": "Good"},
        {"attributes": {"type": "Account"}},
        {"Name": "No type"}
    ]);
    let r = c
        .post(
            "composite/sobjects",
            json!({"allOrNone": false, "records": recs}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body[0]["success"], json!(true));
    assert_eq!(
        r.body[1],
        json!({"success": false, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Name]", "fields": ["Name"]}]})
    );
    assert_eq!(r.body[2]["success"], json!(false));
    assert_eq!(emu.records("Account").len(), 1);
    let r = c
        .post(
            "composite/sobjects",
            json!({"allOrNone": true, "records": recs}),
        )
        .await;
    assert_eq!(
        r.body[0]["errors"][0]["statusCode"],
        json!("ALL_OR_NONE_OPERATION_ROLLED_BACK")
    );
    assert_eq!(
        r.body[1]["errors"][0]["statusCode"],
        json!("REQUIRED_FIELD_MISSING")
    );
    assert_eq!(emu.records("Account").len(), 1);
    let id = emu.records("Account")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .patch(
            "composite/sobjects",
            json!({"records": [{"attributes": {"type": "Account"}, "id": id, "Name": "Renamed"}]}),
        )
        .await;
    assert_eq!(r.body[0], json!({"id": id, "success": true, "errors": []}));
    let g = c
        .get(&format!(
            "composite/sobjects/Account?ids={id}&fields=Id,Name"
        ))
        .await;
    assert_eq!(g.body[0]["Name"], json!("Renamed"));
    let too_many: Vec<Value> = (0..201)
        .map(|i| json!({"attributes": {"type": "Account"}, "Name": format!("n{i}")}))
        .collect();
    let r = c
        .post("composite/sobjects", json!({"records": too_many}))
        .await;
    assert_eq!(
        (r.status, r.body[0]["errorCode"].clone()),
        (400, json!("EXCEEDED_ID_LIMIT"))
    );
    let d = c
        .delete(&format!("composite/sobjects?ids={id}&allOrNone=true"))
        .await;
    assert_eq!(d.body[0], json!({"id": id, "success": true, "errors": []}));
    assert!(emu.records("Account").is_empty());
    // Duplicate rule inside collections uses the short item form.
    emu.insert("Contact", json!({"LastName": "A", "Email": "d@x.com"}));
    let r = c.post("composite/sobjects", json!({"records": [{"attributes": {"type": "Contact"}, "LastName": "B", "Email": "d@x.com"}]})).await;
    assert_eq!(
        r.body[0]["errors"][0],
        json!({"statusCode": "DUPLICATES_DETECTED", "message": "Use one of these records?", "fields": []})
    );
}

fn jwt(claims: Value) -> String {
    let key = EncodingKey::from_rsa_pem(include_bytes!("fixtures/jwt_test_key.pem")).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
}

#[tokio::test]
async fn oauth_jwt_bearer_and_client_credentials() {
    let cfg = EmulatorConfig {
        jwt_public_key_pem: Some(include_str!("fixtures/jwt_test_key.pub.pem").to_string()),
        ..EmulatorConfig::default()
    };
    let emu = sf_emulator::spawn(cfg.clone()).await.unwrap();
    let http = reqwest::Client::new();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 180;
    let call = |assertion: String| {
        let http = http.clone();
        let url = emu.token_url();
        async move {
            let r = http
                .post(url)
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let good = json!({"iss": cfg.client_id, "sub": cfg.username, "aud": "https://login.salesforce.com", "exp": exp});
    let (s, v) = call(jwt(good.clone())).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["instance_url"], json!(emu.url()));
    assert_eq!(v["token_type"], json!("Bearer"));
    assert!(
        v.get("refresh_token").is_none(),
        "JWT flow issues no refresh token"
    );
    let (_, v2) = call(jwt(json!({"iss": cfg.client_id, "sub": cfg.username, "aud": emu.url(), "exp": exp.to_string()}))).await;
    assert!(
        v2.get("access_token").is_some(),
        "aud = instance URL and string exp accepted: {v2}"
    );
    let mut bad = good.clone();
    bad["aud"] = json!("https://evil.example");
    assert_eq!(
        call(jwt(bad)).await.1,
        json!({"error":"invalid_grant","error_description":"audience is invalid"})
    );
    let mut bad = good.clone();
    bad["iss"] = json!("other");
    assert_eq!(call(jwt(bad)).await.1["error"], json!("invalid_client_id"));
    let mut bad = good.clone();
    bad["sub"] = json!("someone@else");
    assert_eq!(
        call(jwt(bad)).await.1,
        json!({"error":"invalid_grant","error_description":"user hasn't approved this consumer"})
    );
    let mut bad = good.clone();
    bad["exp"] = json!(1_000);
    assert_eq!(call(jwt(bad)).await.1["error"], json!("invalid_grant"));
    let forged = {
        let t = jwt(good.clone());
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[2] = "AAAA";
        parts.join(".")
    };
    assert_eq!(call(forged).await.0, 400);

    let r = http
        .post(emu.token_url())
        .basic_auth(&cfg.client_id, Some(&cfg.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let token = v["access_token"].as_str().unwrap();
    let ok = http
        .get(format!("{}/services/data/{V}/limits", emu.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let r = http
        .post(emu.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &cfg.client_id),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        json!("invalid_client")
    );
    let r = http
        .get(format!("{}/services/data/{V}/limits", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no bearer token");
}

#[tokio::test]
async fn faults_locks_errors_outage_and_commit_then_timeout() {
    let (emu, c) = start().await;
    let f = emu.faults();
    f.lock_record("C-L", 2);
    for _ in 0..2 {
        let r = c
            .patch(
                "sobjects/Account/TwoCheckout_Customer_Ref__c/C-L",
                json!({"Name": "L"}),
            )
            .await;
        assert_eq!(
            (r.status, r.body[0]["errorCode"].clone()),
            (400, json!("UNABLE_TO_LOCK_ROW"))
        );
    }
    let r = c
        .patch(
            "sobjects/Account/TwoCheckout_Customer_Ref__c/C-L",
            json!({"Name": "L"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let id = r.body["id"].as_str().unwrap().to_string();
    f.lock_record(&id[..15], 1);
    let recs = json!({"records": [{"attributes": {"type": "Account"}, "TwoCheckout_Customer_Ref__c": "C-L", "Name": "M"}, {"attributes": {"type": "Account"}, "TwoCheckout_Customer_Ref__c": "C-M", "Name": "M"}]});
    let r = c
        .patch(
            "composite/sobjects/Account/TwoCheckout_Customer_Ref__c",
            recs,
        )
        .await;
    assert_eq!(
        r.body[0]["errors"][0]["statusCode"],
        json!("UNABLE_TO_LOCK_ROW")
    );
    assert_eq!(r.body[1]["success"], json!(true));

    f.set_error_rate(1.0);
    let r = c.get("limits").await;
    assert_eq!(
        (r.status, r.body.clone()),
        (
            503,
            json!([{"message":"Server Unavailable","errorCode":"SERVER_UNAVAILABLE"}])
        )
    );
    f.set_error_rate(0.0);
    f.set_outage(true);
    assert_eq!(c.get("limits").await.status, 503);
    let tok = reqwest::Client::new()
        .post(emu.token_url())
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(tok.status(), 503, "outage covers the token endpoint too");
    f.set_outage(false);
    f.set_latency(Latency::Fixed { ms: 1 });
    assert_eq!(c.get("limits").await.status, 200);
    f.set_latency(Latency::None);

    // The write is applied although the client gives up waiting for the answer.
    f.commit_then_timeout(1, Duration::from_millis(2000), false);
    let timed_out = c
        .http
        .patch(c.url("sobjects/Account/TwoCheckout_Customer_Ref__c/C-T"))
        .bearer_auth(&c.token)
        .json(&json!({"Name": "Timed out"}))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(timed_out.is_err());
    assert!(emu
        .records("Account")
        .iter()
        .any(|a| a["TwoCheckout_Customer_Ref__c"] == json!("C-T")));
    // Replaying the upsert is safe: it updates the committed record.
    let replay = c
        .patch(
            "sobjects/Account/TwoCheckout_Customer_Ref__c/C-T",
            json!({"Name": "Timed out"}),
        )
        .await;
    assert_eq!(
        (replay.status, replay.body["created"].clone()),
        (200, json!(false))
    );
    f.commit_then_timeout(1, Duration::from_millis(1), true);
    let dropped = c
        .http
        .patch(c.url("sobjects/Account/TwoCheckout_Customer_Ref__c/C-D"))
        .bearer_auth(&c.token)
        .json(&json!({"Name": "Dropped"}))
        .send()
        .await;
    let failed = match dropped {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(failed, "connection dropped after commit");
    assert!(emu
        .records("Account")
        .iter()
        .any(|a| a["TwoCheckout_Customer_Ref__c"] == json!("C-D")));
}

#[tokio::test]
async fn admin_api_inspects_and_injects() {
    let (emu, c) = start().await;
    let http = reqwest::Client::new();
    let admin = |p: &str| format!("{}/__admin/{p}", emu.url());
    let r: Value = http
        .post(admin("records/Account"))
        .json(&json!({"Name": "Seeded"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["id"].as_str().unwrap().starts_with("001"));
    let recs: Value = http
        .get(admin("records/Account"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recs[0]["Name"], json!("Seeded"));
    http.post(admin("faults"))
        .json(&json!({"api_usage": 99_999, "lock": {"key": "K", "attempts": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.get("limits").await.headers["sforce-limit-info"],
        "api-usage=100000/100000"
    );
    assert_eq!(c.get("limits").await.status, 403);
    http.post(admin("faults"))
        .json(&json!({"expire_sessions": true, "api_usage": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(c.get("limits").await.status, 401);
    let calls: Value = http
        .get(admin("calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls["per_resource"]["limits"], json!(1));
    assert!(calls["rejected_over_limit"].as_u64().unwrap() >= 1);
    http.post(admin("reset")).send().await.unwrap();
    assert!(emu.records("Account").is_empty());
    assert_eq!(emu.calls().api_calls, 0);
}

#[tokio::test]
async fn state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let cfg = EmulatorConfig {
        state_file: Some(path.clone()),
        persist_debounce: Duration::from_millis(10),
        ..EmulatorConfig::default()
    };
    let (emu, c) = start_with(cfg.clone()).await;
    let r = c
        .patch(
            "sobjects/Account/TwoCheckout_Customer_Ref__c/P-1",
            json!({"Name": "Persisted"}),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    c.delete(&format!("sobjects/Account/{id}")).await;
    let r = c
        .patch(
            "sobjects/Account/TwoCheckout_Customer_Ref__c/P-2",
            json!({"Name": "Kept"}),
        )
        .await;
    let kept = r.body["id"].as_str().unwrap().to_string();
    emu.shutdown().await;
    assert!(path.exists());
    let (emu2, c2) = start_with(cfg).await;
    let recs = emu2.records("Account");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["Id"], json!(kept));
    let r = c2
        .patch(
            "sobjects/Account/TwoCheckout_Customer_Ref__c/P-2",
            json!({"Name": "Again"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["id"].clone()),
        (200, json!(kept)),
        "ext-id index rebuilt"
    );
    let r = c2.post("sobjects/Account", json!({"Name": "New"})).await;
    assert!(
        r.body["id"].as_str().unwrap() > kept.as_str(),
        "id counter continues after the snapshot"
    );
}

#[tokio::test]
async fn https_with_generated_certificate() {
    let emu = sf_emulator::spawn_tls(EmulatorConfig::default(), TlsConfig::default())
        .await
        .unwrap();
    assert!(emu.url().starts_with("https://"));
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let cfg = EmulatorConfig::default();
    let r = http
        .post(emu.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &cfg.client_id),
            ("client_secret", &cfg.client_secret),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["instance_url"], json!(emu.url()));
    let versions: Value = http
        .get(format!("{}/services/data/", emu.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(versions
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["version"] == json!("62.0") && x["label"] == json!("Winter '25")));
}

#[tokio::test]
async fn a_uri_over_16k_is_refused_and_failing_queries_spare_writes() {
    let (emu, c) = start().await;
    // Salesforce refuses a URI plus headers above 16,384 bytes.
    let emails: Vec<String> = (0..800)
        .map(|i| format!("'someone{i}@example.com'"))
        .collect();
    let long = format!(
        "SELECT Id FROM Contact WHERE Email IN ({})",
        emails.join(",")
    );
    let r = c.query(&long).await;
    assert_eq!(r.status, 414, "{}", r.body);
    assert_eq!(r.body[0]["errorCode"], "URI_TOO_LONG");
    let short = format!(
        "SELECT Id FROM Contact WHERE Email IN ({})",
        emails[..100].join(",")
    );
    assert_eq!(c.query(&short).await.status, 200);

    // The next two queries fail; a write in between goes through.
    emu.faults().fail_queries(2);
    assert_eq!(c.query("SELECT Id FROM Account").await.status, 503);
    let created = c
        .post("sobjects/Account", json!({"Name": "Written anyway"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(c.query("SELECT Id FROM Account").await.status, 503);
    let r = c.query("SELECT Id FROM Account").await;
    assert_eq!((r.status, r.body["totalSize"].clone()), (200, json!(1)));
}
