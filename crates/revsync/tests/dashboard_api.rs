//! The dashboard's JSON API and page over real HTTP, on a store seeded through the store API:
//! every endpoint, paging, search (references, e-mail, subscription, LIKE wildcards), replay
//! (200, then 409), 404s, authentication (bearer, cookie, `?token=` exchange), the
//! cross-origin and host guards, and that hostile customer data travels as data.

#[path = "support/dashboard.rs"]
mod dashboard_support;
mod support;

use dashboard_support::*;
use reqwest::StatusCode;
use revsync::store::{DeadLetterStatus, Micros};
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(url: &str) -> (StatusCode, Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "{url}: content-type {ct}"
    );
    (status, response.json().await.unwrap())
}

async fn post(url: &str) -> (StatusCode, Value) {
    let response = client().post(url).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

fn ids(events: &Value) -> Vec<i64> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn events_list_pages_and_shows_what_each_event_did() {
    let s = serve(None, Some("https://acme.my.salesforce.com")).await;
    let seeded = &s.seeded;

    let (status, body) = get(&format!("{}/api/v1/events", s.url)).await;
    assert_eq!(status, StatusCode::OK);
    let all = ids(&body["events"]);
    assert_eq!(
        all,
        vec![
            seeded.sale_event,
            seeded.decoy_event,
            seeded.wild_event,
            seeded.licence_event,
            seeded.order_event
        ]
    );
    assert!(body["next_before"].is_null());

    let order = &body["events"][4];
    assert_eq!(order["kind"], "ipn");
    assert_eq!(order["reference"], ORDER);
    assert_eq!(order["status"], "processed");
    assert_eq!(order["delivery_count"], 2);
    assert!(order["latency_ms"].as_i64().unwrap() >= 2000);
    // The hostile name arrives verbatim, as a JSON string: escaping is the page's job.
    assert_eq!(order["customer"]["name"], HOSTILE_NAME);
    assert_eq!(order["customer"]["email"], EMAIL);
    let records = order["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    let account = records.iter().find(|r| r["sobject"] == "Account").unwrap();
    assert_eq!(account["sf_id"], ACCOUNT_ID);
    assert_eq!(account["created"], true);
    assert_eq!(account["outcome"], "written");
    assert_eq!(account["key_field"], "TwoCheckout_Customer_Ref__c");
    assert_eq!(account["key"], CUSTOMER);
    assert_eq!(
        account["url"],
        format!("https://acme.my.salesforce.com/{ACCOUNT_ID}")
    );
    let opportunity = records
        .iter()
        .find(|r| r["sobject"] == "Opportunity")
        .unwrap();
    assert_eq!(opportunity["outcome"], "failed");
    assert!(opportunity["sf_id"].is_null() && opportunity["url"].is_null());
    assert!(opportunity["message"]
        .as_str()
        .unwrap()
        .contains(DEAD_MESSAGE));

    // Both events of the customer carry the name.
    assert_eq!(body["events"][3]["customer"]["name"], HOSTILE_NAME);
    let sale = &body["events"][0];
    assert_eq!(sale["status"], "pending");
    assert!(sale["processed_at"].is_null() && sale["latency_ms"].is_null());
    assert_eq!(sale["records"], serde_json::json!([]));

    // Paging backwards, two at a time, visits every event once.
    let mut seen = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let url = match before {
            Some(b) => format!("{}/api/v1/events?limit=2&before={b}", s.url),
            None => format!("{}/api/v1/events?limit=2", s.url),
        };
        let (status, page) = get(&url).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(ids(&page["events"]));
        match page["next_before"].as_i64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(seen, all);

    for bad in ["limit=0", "limit=201", "limit=x", "before=y"] {
        let (status, body) = get(&format!("{}/api/v1/events?{bad}", s.url)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body["error"].is_string());
    }
}

#[tokio::test]
async fn record_links_only_for_a_real_org() {
    let s = serve(None, Some("https://127.0.0.1:8443")).await;
    let (_, body) = get(&format!("{}/api/v1/events/{}", s.url, s.seeded.order_event)).await;
    let log = body["sync_log"].as_array().unwrap();
    assert!(!log.is_empty());
    assert!(log.iter().all(|r| r["url"].is_null()));
}

#[tokio::test]
async fn event_detail_has_delivery_metadata_but_no_bodies() {
    event_detail(&serve(None, None).await).await;
}

async fn event_detail(s: &Served) {
    let (status, body) = get(&format!("{}/api/v1/events/{}", s.url, s.seeded.order_event)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["event"]["reference"], ORDER);
    let deliveries = body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    for d in deliveries {
        assert_eq!(d["signature_algorithm"], "sha3-256");
        assert_eq!(d["remote_addr"], "198.51.100.7");
        let expected = format!("REFNO={ORDER}&SECRET_BODY_MARKER=1").len() as i64;
        assert_eq!(d["body_bytes"], expected);
        assert!(d.get("body").is_none());
    }
    assert!(!body.to_string().contains("SECRET_BODY_MARKER"));
    let log = body["sync_log"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert!(body["event"].get("records").is_none());

    for bad in ["999999", "abc", "0", "-1", "1.5"] {
        let (status, body) = get(&format!("{}/api/v1/events/{bad}", s.url)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert!(body["error"].as_str().unwrap().contains("no event"));
    }
    let (status, body) = get(&format!("{}/api/v1/no-such-thing", s.url)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());
}

async fn search_ids(base: &str, q: String) -> Vec<i64> {
    let url = format!(
        "{base}/api/v1/search?q={}",
        url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    );
    let (status, body) = get(&url).await;
    assert_eq!(status, StatusCode::OK, "{q}: {body}");
    ids(&body["events"])
}

#[tokio::test]
async fn search_finds_references_emails_and_subscriptions() {
    search(&serve(None, None).await).await;
}

async fn search(s: &Served) {
    let seeded = &s.seeded;
    let search = |q: &str| search_ids(&s.url, q.to_owned());
    // Order reference, whole or in part, any case.
    assert_eq!(search(ORDER).await, vec![seeded.order_event]);
    assert_eq!(search("ord-10").await, vec![seeded.order_event]);
    // Licence code (LCN reference).
    assert_eq!(search(LICENCE).await, vec![seeded.licence_event]);
    // Customer key: every event of the customer.
    assert_eq!(
        search(CUSTOMER).await,
        vec![seeded.licence_event, seeded.order_event]
    );
    // E-mail held only in the customer's ledger record, in another case.
    assert_eq!(
        search(&EMAIL.to_lowercase()).await,
        vec![seeded.licence_event, seeded.order_event]
    );
    // Subscription reference held in the order's ledger record: that order's events.
    assert_eq!(search(SUBSCRIPTION).await, vec![seeded.order_event]);
    // Customer key e-mail of an event with no ledger record, by substring.
    assert_eq!(search("decoy@").await, vec![seeded.decoy_event]);
    // `%` and `_` are literal: the decoy `1000XOFF` would match them as wildcards.
    assert_eq!(search("100%_").await, vec![seeded.wild_event]);
    assert_eq!(search("0_O").await, Vec::<i64>::new());
    // Object keys of ledger records are not values.
    assert_eq!(search("subscription_refs").await, Vec::<i64>::new());
    assert_eq!(search("first_name").await, Vec::<i64>::new());

    for bad in ["", "q=", "q=%20%20"] {
        let (status, body) = get(&format!("{}/api/v1/search?{bad}", s.url)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body["error"].as_str().unwrap().contains("q is required"));
    }
    let long = "x".repeat(201);
    let (status, _) = get(&format!("{}/api/v1/search?q={long}", s.url)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn dead_letters_replay_once_then_conflict() {
    replay(&serve(None, None).await).await;
}

async fn replay(s: &Served) {
    let id = s.seeded.dead_letter;

    let (status, body) = get(&format!("{}/api/v1/dead-letters", s.url)).await;
    assert_eq!(status, StatusCode::OK);
    let letters = body["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter["id"], id);
    assert_eq!(letter["sobject"], "Opportunity");
    assert_eq!(letter["key"], ORDER);
    assert_eq!(letter["error_code"], DEAD_CODE);
    assert_eq!(letter["message"], DEAD_MESSAGE);
    assert_eq!(letter["status"], "open");
    assert_eq!(
        letter["event_ids"],
        serde_json::json!([s.seeded.order_event])
    );
    assert_eq!(letter["fields"]["Amount"], -5.0);

    let before = s.store.outbox_stats().await.unwrap();
    let (status, body) = post(&format!("{}/api/v1/dead-letters/{id}/replay", s.url)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "replayed");
    let after = s.store.outbox_stats().await.unwrap();
    assert_eq!(after.pending, before.pending + 1);
    assert_eq!(after.dead_letters_open, 0);
    let stored = s.store.dead_letters(None, 10).await.unwrap();
    assert_eq!(stored[0].status, DeadLetterStatus::Replayed);

    let (status, body) = post(&format!("{}/api/v1/dead-letters/{id}/replay", s.url)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("already replayed"));

    for bad in ["424242", "nope"] {
        let (status, body) = post(&format!("{}/api/v1/dead-letters/{bad}/replay", s.url)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert!(body["error"].is_string());
    }

    let (_, open) = get(&format!("{}/api/v1/dead-letters", s.url)).await;
    assert_eq!(open["dead_letters"], serde_json::json!([]));
    let (_, replayed) = get(&format!("{}/api/v1/dead-letters?status=replayed", s.url)).await;
    assert_eq!(replayed["dead_letters"][0]["id"], id);
    let (_, all) = get(&format!("{}/api/v1/dead-letters?status=all", s.url)).await;
    assert_eq!(all["dead_letters"].as_array().unwrap().len(), 1);
    let (status, _) = get(&format!("{}/api/v1/dead-letters?status=maybe", s.url)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn budget_and_stats() {
    budget_stats(&serve(None, None).await).await;
}

async fn budget_stats(s: &Served) {
    let (status, b) = get(&format!("{}/api/v1/budget", s.url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b["revsync_calls_24h"], 12);
    assert_eq!(b["org_used"], 5000);
    assert_eq!(b["org_max"], 100000);
    assert_eq!(b["org_remaining"], 95000);
    assert_eq!(b["org_used_share"], 0.05);
    assert_eq!(b["revsync_share"], 12.0 / 5000.0);
    assert!(b["observed_at"].is_string());

    let (status, st) = get(&format!("{}/api/v1/stats", s.url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(st["events"]["events"], 5);
    assert_eq!(st["events"]["pending"], 1);
    assert_eq!(st["events"]["processed"], 4);
    assert_eq!(st["events"]["deliveries"], 6);
    assert_eq!(st["outbox"]["written"], s.seeded.written);
    assert_eq!(st["outbox"]["dead_letters_open"], 1);
    let t = &st["throughput"];
    assert_eq!(t["outbox_written_last_hour"], s.seeded.written);
    assert!(t["outbox_written_last_minute"].as_i64().unwrap() <= s.seeded.written);
    assert_eq!(t["dead_letters_last_hour"], 1);
    let flows = t["flows"].as_array().unwrap();
    let kinds: Vec<&str> = flows.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["ipn", "lcn"]); // the INS is still pending
    assert_eq!(flows[0]["processed_last_hour"], 3);
    assert_eq!(flows[1]["processed_last_hour"], 1);
    for f in flows {
        assert!(
            f["processed_last_minute"].as_i64().unwrap()
                <= f["processed_last_hour"].as_i64().unwrap()
        );
        assert!(f["latency_avg_ms"].as_f64().unwrap() >= 2000.0);
        assert!(f["latency_max_ms"].as_f64().unwrap() >= f["latency_avg_ms"].as_f64().unwrap());
    }

    // The store query directly: nothing counted outside the window.
    let far_future = Micros(Micros::now().0 + 2 * 3_600_000_000);
    let later = s.store.throughput(far_future).await.unwrap();
    assert!(later.flows.is_empty());
    assert_eq!(later.outbox_written_last_hour, 0);
}

#[tokio::test]
async fn token_is_required_everywhere_and_exchanged_for_a_cookie() {
    let token = "s3cret token;with=odd&chars";
    let s = serve(Some(token), None).await;
    let http = client();
    let events = format!("{}/api/v1/events", s.url);

    let r = http.get(&events).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("authentication required"));

    for wrong in ["s3cret", "s3cret token;with=odd&chars!", ""] {
        let r = http.get(&events).bearer_auth(wrong).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{wrong}");
    }
    let r = http.get(&events).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Every API route is guarded, unknown ones too.
    for path in [
        "/api/v1/budget",
        "/api/v1/stats",
        "/api/v1/dead-letters",
        "/api/v1/search?q=x",
        "/api/v1/events/1",
        "/api/v1/nothing",
        "/dashboard",
    ] {
        let r = http.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let r = http
        .post(format!(
            "{}/api/v1/dead-letters/{}/replay",
            s.url, s.seeded.dead_letter
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A wrong ?token= is refused and sets nothing.
    let r = http
        .get(format!("{}/dashboard?token=nope", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());

    // The right one sets the cookie and redirects to the same page without it.
    let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let r = http
        .get(format!("{}/dashboard?q=ORD-1001&token={encoded}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/dashboard?q=ORD-1001");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("revsync_token="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_owned();

    for path in ["/dashboard", "/api/v1/events", "/api/v1/stats"] {
        let r = http
            .get(format!("{}{path}", s.url))
            .header("cookie", format!("theme=dark; {pair}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }

    // With the cookie, a replay from another origin is refused; from the page's own, allowed.
    let replay = format!(
        "{}/api/v1/dead-letters/{}/replay",
        s.url, s.seeded.dead_letter
    );
    let r = http
        .post(&replay)
        .header("cookie", &pair)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(&replay)
        .header("cookie", &pair)
        .header("origin", "null")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(&replay)
        .header("cookie", &pair)
        .header("origin", s.url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_a_token_only_literal_hosts_are_served() {
    let s = serve(None, None).await;
    let http = client();
    for host in ["localhost", "127.0.0.1", "[::1]:8080", &s.addr.to_string()] {
        let r = http
            .get(format!("{}/api/v1/budget", s.url))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{host}");
    }
    for path in ["/api/v1/budget", "/dashboard"] {
        let r = http
            .get(format!("{}{path}", s.url))
            .header("host", "rebound.evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn the_page_is_self_contained_and_carries_no_data() {
    let s = serve(None, None).await;
    let r = client()
        .get(format!("{}/dashboard", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(csp.contains("img-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let html = r.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("id=\"dead-letters\"") && html.contains("id=\"events\""));
    // Data only ever arrives through the JSON API, as text.
    assert!(!html.contains(HOSTILE_NAME) && !html.contains(ORDER));
    assert!(!html.contains("innerHTML"));
    assert!(html.contains("textContent"));
}

/// The same checks on PostgreSQL (`REVSYNC_TEST_POSTGRES_URL`; `.ci/run` sets it): one SQL
/// text serves both backends.
#[tokio::test]
async fn the_api_on_postgres() {
    let Some(store) = support::store::postgres("the_api_on_postgres").await else {
        return;
    };
    let s = serve_on(store, None, None).await;
    event_detail(&s).await;
    search(&s).await;
    budget_stats(&s).await;
    replay(&s).await;
}
