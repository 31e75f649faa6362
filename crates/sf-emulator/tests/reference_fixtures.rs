//! Every real response listed in reference §6.3 (items 1–11), reproduced against the
//! emulator: same status, same JSON shape, same error codes and messages.

mod common;

use common::*;
use serde_json::{json, Value};
use sf_emulator::EmulatorConfig;

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// §6.3 item 1 — collections upsert by Email, mixed insert/update (CumulusCI cassette).
#[tokio::test]
async fn item01_collections_upsert_mixed_insert_update() {
    let (emu, c) = start().await;
    for (n, e) in [("A", "a@x.com"), ("B", "b@x.com"), ("C", "c@x.com")] {
        emu.insert("Contact", json!({"LastName": n, "Email": e}));
    }
    let recs: Vec<Value> = ["a@x.com", "b@x.com", "c@x.com", "d@x.com"]
        .iter()
        .map(|e| json!({"attributes": {"type": "Contact"}, "LastName": "Z", "Email": e}))
        .collect();
    let r = c
        .patch(
            "composite/sobjects/Contact/Email",
            json!({"allOrNone": false, "records": recs}),
        )
        .await;
    assert_eq!(r.status, 200);
    let items = r.body.as_array().unwrap();
    assert_eq!(items.len(), 4);
    let created: Vec<bool> = items
        .iter()
        .map(|i| i["created"].as_bool().unwrap())
        .collect();
    assert_eq!(created, vec![false, false, false, true]);
    for i in items {
        assert_eq!(keys(i), vec!["created", "errors", "id", "success"]);
        assert_id(&i["id"], "003");
        assert_eq!(i["success"], json!(true));
        assert_eq!(i["errors"], json!([]));
    }
    assert_eq!(
        c.get("composite").await.status,
        405,
        "GET on /composite is not allowed"
    );
}

/// §6.3 item 2 — collections upsert with the `Id` key and a null Id inserts.
#[tokio::test]
async fn item02_collections_upsert_with_id_key_inserts() {
    let (emu, c) = start().await;
    let r = c
        .patch(
            "composite/sobjects/Account/Id",
            json!({"allOrNone":false,"records":[{"Name":"Sitwell-Bluth","AccountNumber":"420","Id":null,"attributes":{"type":"Account"}}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    let items = r.body.as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(keys(&items[0]), vec!["created", "errors", "id", "success"]);
    assert_eq!(
        (items[0]["success"].clone(), items[0]["created"].clone()),
        (json!(true), json!(true))
    );
    assert_id(&items[0]["id"], "001");
    let recs = emu.records("Account");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["AccountNumber"], json!("420"));
}

/// §6.3 item 3 — composite with allOrNone: the real error plus PROCESSING_HALTED (Camel).
#[tokio::test]
async fn item03_composite_all_or_none_partial_failure() {
    let (emu, c) = start().await;
    let body = json!({"allOrNone": true, "compositeRequest": [
        {"method": "POST", "url": format!("/services/data/{V}/sobjects/Task"), "referenceId": "NewPayment1",
         "body": {"Subject": "ok"}},
        {"method": "POST", "url": format!("/services/data/{V}/sobjects/Task"), "referenceId": "NewPayment2",
         "body": {"Subject": "bad", "What": {"attributes": {"type": "Opportunity"}, "TwoCheckout_Order_Ref__c": "0116"}}}
    ]});
    let r = c.post("composite", body).await;
    assert_eq!(r.status, 200);
    let cr = r.body["compositeResponse"].as_array().unwrap();
    assert_eq!(
        cr[0],
        json!({"body":[{"errorCode":"PROCESSING_HALTED","message":"The transaction was rolled back since another operation in the same transaction failed."}],"httpHeaders":{},"httpStatusCode":400,"referenceId":"NewPayment1"})
    );
    assert_eq!(
        cr[1],
        json!({"body":[{"message":"Foreign key external ID: 0116 not found for field TwoCheckout_Order_Ref__c in entity Opportunity","errorCode":"INVALID_FIELD","fields":[]}],"httpHeaders":{},"httpStatusCode":400,"referenceId":"NewPayment2"})
    );
    assert!(
        emu.records("Task").is_empty(),
        "the first subrequest was rolled back"
    );
}

/// §6.3 item 4 — composite subrequest 404 NOT_FOUND and 400 INVALID_TYPE (CumulusCI).
#[tokio::test]
async fn item04_composite_subrequest_404_and_invalid_type() {
    let (_emu, c) = start().await;
    let missing = sf_emulator::ids::make_id("001", 999_999);
    let body = json!({"compositeRequest": [
        {"method": "GET", "url": format!("/services/data/{V}/sobjects/Account/{missing}"), "referenceId": "CCI__RefId__0__"},
        {"method": "GET", "url": format!("/services/data/{V}/query?q=SELECT+COUNT()+FROM+XYZZY"), "referenceId": "CCI__RefId__1__"}
    ]});
    let r = c.post("composite", body).await;
    assert_eq!(r.status, 200);
    let cr = r.body["compositeResponse"].as_array().unwrap();
    assert_eq!(
        cr[0],
        json!({"body":[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}],"httpHeaders":{},"httpStatusCode":404,"referenceId":"CCI__RefId__0__"})
    );
    assert_eq!(cr[1]["httpStatusCode"], json!(400));
    assert_eq!(cr[1]["body"][0]["errorCode"], json!("INVALID_TYPE"));
    let msg = cr[1]["body"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("sObject type 'XYZZY' is not supported."),
        "{msg}"
    );
}

/// §6.3 item 5 — single create → 201 `{"id","success":true,"errors":[]}`.
#[tokio::test]
async fn item05_single_create() {
    let (_emu, c) = start().await;
    let r = c.post("sobjects/Account/", json!({"Name": "Acme"})).await;
    assert_eq!(r.status, 201);
    assert_eq!(keys(&r.body), vec!["errors", "id", "success"]);
    assert_id(&r.body["id"], "001");
    assert_eq!(
        (r.body["success"].clone(), r.body["errors"].clone()),
        (json!(true), json!([]))
    );
    let t = c
        .post(
            "sobjects/Task",
            json!({"Priority": "Normal", "Status": "Not Started"}),
        )
        .await;
    assert_eq!(
        t.status, 201,
        "a Task with only Priority and Status is accepted (palominolabs)"
    );
    assert_id(&t.body["id"], "00T");
}

/// §6.3 item 6 — error bodies: REQUIRED_FIELD_MISSING, INVALID_SESSION_ID, NOT_FOUND,
/// DUPLICATES_DETECTED, REQUEST_LIMIT_EXCEEDED.
#[tokio::test]
async fn item06_error_bodies() {
    let (emu, c) = start().await;
    let r = c.post("sobjects/Contact", json!({"FirstName": "No"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        json!([{"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING","fields":["LastName"]}])
    );

    let r = c.delete("sobjects/Lead/00Q7zzz000Kj4Jn").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body,
        json!([{"message":"Provided external ID field does not exist or is not accessible: 00Q7zzz000Kj4Jn","errorCode":"NOT_FOUND"}])
    );

    let first = c
        .post(
            "sobjects/Contact",
            json!({"LastName": "Doe", "Email": "dup@x.com"}),
        )
        .await;
    let r = c
        .post(
            "sobjects/Contact",
            json!({"LastName": "Doe", "Email": "dup@x.com"}),
        )
        .await;
    assert_eq!(r.status, 400);
    let e = &r.body[0];
    assert_eq!(e["errorCode"], json!("DUPLICATES_DETECTED"));
    assert_eq!(
        e["message"],
        json!(
            "You're creating a duplicate record. We recommend you use an existing record instead."
        )
    );
    let dr = &e["duplicateResult"];
    assert_eq!(dr["allowSave"], json!(true));
    assert_eq!(
        dr["duplicateRule"],
        json!("Standard_Contact_Duplicate_Rule")
    );
    assert_eq!(dr["duplicateRuleEntityType"], json!("Contact"));
    let mr = &dr["matchResults"][0];
    assert_eq!(mr["rule"], json!("Standard_Contact_Match_Rule_v1_1"));
    assert_eq!(mr["matchEngine"], json!("FuzzyMatchEngine"));
    assert_eq!(mr["size"], json!(1));
    assert_eq!(mr["matchRecords"][0]["matchConfidence"], json!(100.0));
    assert_eq!(mr["matchRecords"][0]["record"]["Id"], first.body["id"]);
    assert_eq!(
        mr["matchRecords"][0]["record"]["attributes"]["type"],
        json!("Contact")
    );
    let allowed = c
        .send(
            reqwest::Method::POST,
            "sobjects/Contact",
            Some(json!({"LastName": "Doe", "Email": "dup@x.com"})),
            &[(
                "Sforce-Duplicate-Rule-Header",
                "allowSave=true; includeRecordDetails=false; runAsCurrentUser=false",
            )],
        )
        .await;
    assert_eq!(allowed.status, 201);

    emu.faults().set_api_usage(100_000);
    let r = c.get("limits").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        json!([{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}])
    );
    emu.faults().set_api_usage(0);

    emu.faults().expire_sessions();
    let r = c.get("limits").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body,
        json!([{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}])
    );
}

/// §6.3 item 7 — query: single page, empty result, paginated pair, invalid locator.
#[tokio::test]
async fn item07_query_pages() {
    let cfg = EmulatorConfig {
        query_page_size: 200,
        ..EmulatorConfig::default()
    };
    let (emu, c) = start_with(cfg).await;
    let pid = emu.insert("Product2", json!({"Name": "GenWatt Diesel 200kW"}));
    let r = c.query("SELECT Id, Name, Description FROM Product2").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"totalSize":1,"done":true,"records":[{"attributes":{"type":"Product2","url":format!("/services/data/{V}/sobjects/Product2/{pid}")},"Id":pid,"Name":"GenWatt Diesel 200kW","Description":null}]})
    );
    let r = c.query("SELECT Id FROM Account").await;
    assert_eq!(r.body, json!({"totalSize":0,"done":true,"records":[]}));

    for i in 0..450 {
        emu.insert("Account", json!({"Name": format!("A{i:03}")}));
    }
    let r = c.query("SELECT Name FROM Account ORDER BY Name").await;
    assert_eq!(
        (r.body["totalSize"].clone(), r.body["done"].clone()),
        (json!(450), json!(false))
    );
    assert_eq!(r.body["records"].as_array().unwrap().len(), 200);
    let next = r.body["nextRecordsUrl"].as_str().unwrap().to_string();
    assert!(
        next.starts_with(&format!("/services/data/{V}/query/01g")) && next.ends_with("-200"),
        "{next}"
    );
    let mut names: Vec<String> = r.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["Name"].as_str().unwrap().to_string())
        .collect();
    let mut url = Some(next);
    let mut pages = 1;
    while let Some(u) = url {
        let p = c.get(&u).await;
        assert_eq!(p.status, 200);
        assert_eq!(p.body["totalSize"], json!(450));
        names.extend(
            p.body["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["Name"].as_str().unwrap().to_string()),
        );
        url = p.body["nextRecordsUrl"].as_str().map(str::to_string);
        assert_eq!(p.body["done"], json!(url.is_none()));
        pages += 1;
        assert!(pages <= 3);
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..450).map(|i| format!("A{i:03}")).collect();
    assert_eq!(names, expected);
    let r = c
        .get(&format!("/services/data/{V}/query/01gD0000002HU6KIAW-2000"))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        json!([{"message":"invalid query locator","errorCode":"INVALID_QUERY_LOCATOR"}])
    );
    // Each page is one call.
    assert_eq!(emu.calls().per_resource["query"], 6);
}

/// §6.3 item 8 — upsert matching several records → 300 with the record URLs (restforce).
#[tokio::test]
async fn item08_upsert_multiple_choices() {
    let (emu, c) = start().await;
    let a = emu.insert("Contact", json!({"LastName": "A", "Email": "same@x.com"}));
    let b = emu.insert("Contact", json!({"LastName": "B", "Email": "same@x.com"}));
    let r = c
        .patch(
            "sobjects/Contact/Email/same@x.com",
            json!({"LastName": "C"}),
        )
        .await;
    assert_eq!(r.status, 300);
    assert_eq!(
        r.body,
        json!([
            format!("/services/data/{V}/sobjects/Contact/{a}"),
            format!("/services/data/{V}/sobjects/Contact/{b}")
        ])
    );
    let r = c
        .patch("sobjects/Contact/Namez/x", json!({"LastName": "C"}))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body,
        json!([{"message":"Provided external ID field does not exist or is not accessible: Namez","errorCode":"NOT_FOUND"}])
    );
}

/// §6.3 item 9 — `/limits` (Camel `limits.json` shape) and `Sforce-Limit-Info`.
#[tokio::test]
async fn item09_limits() {
    let cfg = EmulatorConfig {
        daily_api_limit: 15_000,
        ..EmulatorConfig::default()
    };
    let (emu, c) = start_with(cfg).await;
    c.get("sobjects").await;
    let r = c.get("limits").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["DailyApiRequests"],
        json!({"Max": 15000, "Remaining": 14998})
    );
    for k in [
        "DailyBulkApiRequests",
        "DataStorageMB",
        "StreamingApiConcurrentClients",
    ] {
        assert!(
            r.body[k]["Max"].is_u64() && r.body[k]["Remaining"].is_u64(),
            "{k}"
        );
    }
    assert_eq!(r.headers["sforce-limit-info"], "api-usage=2/15000");
    // The versions list and token calls are not counted.
    c.get("/services/data").await;
    assert_eq!(emu.calls().api_calls, 2);
}

/// §6.3 item 10 — Bulk 2.0 job info and result CSV headers.
#[tokio::test]
async fn item10_bulk_job_info_and_results() {
    let (emu, c) = start().await;
    let job = c
        .post("jobs/ingest", json!({"object":"Contact","operation":"upsert","externalIdFieldName":"TwoCheckout_Customer_Ref__c","contentType":"CSV","lineEnding":"LF","columnDelimiter":"COMMA"}))
        .await;
    assert_eq!(job.status, 200);
    let id = job.body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("750"));
    assert_eq!(job.body["state"], json!("Open"));
    assert_eq!(
        job.body["contentUrl"],
        json!(format!("services/data/{V}/jobs/ingest/{id}/batches"))
    );
    let csv = "TwoCheckout_Customer_Ref__c,LastName,Email\nC1,One,one@x.com\nC2,,two@x.com\nC3,Three,bad-email\n";
    let up = c
        .http
        .put(c.url(&format!("jobs/ingest/{id}/batches")))
        .bearer_auth(&c.token)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 201);
    let closed = c
        .patch(
            &format!("jobs/ingest/{id}"),
            json!({"state": "UploadComplete"}),
        )
        .await;
    assert_eq!(closed.body["state"], json!("UploadComplete"));
    let mut info = Value::Null;
    for _ in 0..500 {
        info = c.get(&format!("jobs/ingest/{id}")).await.body;
        if info["state"] == json!("JobComplete") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(info["state"], json!("JobComplete"));
    for k in [
        "id",
        "operation",
        "object",
        "createdById",
        "createdDate",
        "systemModstamp",
        "state",
        "concurrencyMode",
        "contentType",
        "apiVersion",
        "jobType",
        "lineEnding",
        "columnDelimiter",
        "numberRecordsProcessed",
        "numberRecordsFailed",
        "retries",
        "totalProcessingTime",
        "apiActiveProcessingTime",
        "apexProcessingTime",
    ] {
        assert!(info.get(k).is_some(), "job info lacks {k}");
    }
    assert_eq!(
        (
            info["numberRecordsProcessed"].clone(),
            info["numberRecordsFailed"].clone()
        ),
        (json!(3), json!(2))
    );
    assert_eq!(info["jobType"], json!("V2Ingest"));
    let ok = c
        .get(&format!("jobs/ingest/{id}/successfulResults/"))
        .await
        .text;
    let mut lines = ok.lines();
    assert_eq!(
        lines.next(),
        Some(r#""sf__Id","sf__Created","TwoCheckout_Customer_Ref__c","LastName","Email""#)
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("\"003") && row.ends_with(r#","true","C1","One","one@x.com""#),
        "{row}"
    );
    let failed = c
        .get(&format!("jobs/ingest/{id}/failedResults/"))
        .await
        .text;
    let mut lines = failed.lines();
    assert_eq!(
        lines.next(),
        Some(r#""sf__Id","sf__Error","TwoCheckout_Customer_Ref__c","LastName","Email""#)
    );
    assert_eq!(
        lines.next(),
        Some(
            r#""","REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName--","C2","","two@x.com""#
        )
    );
    assert_eq!(
        lines.next(),
        Some(
            r#""","INVALID_EMAIL_ADDRESS:Email: invalid email address: bad-email:Email--","C3","Three","bad-email""#
        )
    );
    let unprocessed = c
        .get(&format!("jobs/ingest/{id}/unprocessedrecords/"))
        .await
        .text;
    assert_eq!(
        unprocessed.trim(),
        r#""TwoCheckout_Customer_Ref__c","LastName","Email""#
    );
    assert_eq!(emu.records("Contact").len(), 1);
    assert_eq!(c.delete(&format!("jobs/ingest/{id}")).await.status, 204);
}

/// §6.3 item 11 — token success and failures (restforce fixtures).
#[tokio::test]
async fn item11_token_success_and_failure() {
    let emu = sf_emulator::spawn(EmulatorConfig::default()).await.unwrap();
    let cfg = EmulatorConfig::default();
    let http = reqwest::Client::new();
    let r = http
        .post(emu.token_url())
        .form(&[
            ("grant_type", "password"),
            ("client_id", &cfg.client_id),
            ("client_secret", &cfg.client_secret),
            ("username", &cfg.username),
            ("password", &cfg.password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["instance_url"], json!(emu.url()));
    let id = v["id"].as_str().unwrap();
    assert!(id.contains("/id/00D") && id.contains("/005"), "{id}");
    let issued: u128 = v["issued_at"].as_str().unwrap().parse().unwrap();
    assert!(
        issued > 1_600_000_000_000,
        "issued_at is epoch milliseconds"
    );
    assert!(v["signature"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["access_token"].as_str().unwrap().starts_with("00D"));
    assert!(v.get("expires_in").is_none());

    let bad = http
        .post(emu.token_url())
        .form(&[
            ("grant_type", "password"),
            ("client_id", &cfg.client_id),
            ("client_secret", &cfg.client_secret),
            ("username", &cfg.username),
            ("password", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap(),
        json!({"error":"invalid_grant","error_description":"authentication failure"})
    );

    let bad = http
        .post(emu.token_url())
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &cfg.client_id),
            ("refresh_token", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad.json::<Value>().await.unwrap(),
        json!({"error":"invalid_grant","error_description":"expired access/refresh token"})
    );

    let bad = http
        .post(emu.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "unknown"),
            ("client_secret", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad.json::<Value>().await.unwrap(),
        json!({"error":"invalid_client_id","error_description":"client identifier invalid"})
    );

    let rt = emu.issue_refresh_token();
    let ok = http
        .post(emu.token_url())
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &cfg.client_id),
            ("client_secret", &cfg.client_secret),
            ("refresh_token", &rt),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = ok.json().await.unwrap();
    for k in [
        "access_token",
        "instance_url",
        "id",
        "issued_at",
        "signature",
    ] {
        assert!(v.get(k).is_some(), "refresh response lacks {k}");
    }
    assert_eq!(emu.calls().api_calls, 0, "token calls are not counted");
}
