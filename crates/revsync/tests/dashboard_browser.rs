//! The dashboard in a real headless Chromium (`/usr/bin/chromium`, Debian package `chromium`).
//!
//! - `rendered_dom_…` runs Chromium's own `--dump-dom` (virtual time lets the page's polling
//!   script run): the page loads behind the token, shows the seeded events with their
//!   Salesforce records, a dead letter with its message, search results from `?q=`, and
//!   hostile customer names as text.
//! - `replay_button_…` drives the page with `playwright-core` (`tests/browser/dashboard.mjs`):
//!   searches through the form and clicks the Replay button, then checks the store.
//!
//! Nothing is installed from here. Without Chromium (or, for the second test, without node and
//! `npm ci --prefix crates/revsync/tests/browser`) a test prints `SKIPPED: …` and passes,
//! unless `REVSYNC_REQUIRE_BROWSER=1`, which turns every skip into a failure.

#[path = "support/dashboard.rs"]
mod dashboard_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use dashboard_support::*;
use revsync::store::DeadLetterStatus;
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
const REQUIRE_ENV: &str = "REVSYNC_REQUIRE_BROWSER";
const TOKEN: &str = "browser-test-token";
const INSTANCE: &str = "https://acme.my.salesforce.com";
/// An upper bound for one browser run, so a hung browser fails the test instead of hanging it.
const BROWSER_LIMIT: Duration = Duration::from_secs(180);

fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// Prints why a test is skipped, or fails it when browsers are required.
fn skip(reason: &str) {
    assert!(
        !required(),
        "{REQUIRE_ENV}=1 but the browser test cannot run: {reason}"
    );
    eprintln!("SKIPPED: {reason}");
}

fn chromium() -> Option<&'static Path> {
    let path = Path::new(CHROMIUM);
    if path.exists() {
        Some(path)
    } else {
        skip("chromium not installed (apt-get install -y chromium)");
        None
    }
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

async fn run(mut command: tokio::process::Command, what: &str) -> String {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(BROWSER_LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {BROWSER_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// The DOM of `url` after the page's scripts ran for a few seconds of virtual time.
async fn dump_dom(chromium: &Path, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(chromium);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
    ]);
    command
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url);
    run(command, "chromium --dump-dom").await
}

/// The part of `dom` from the element with `id` to the end of its table.
fn table<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let end = dom[start..].find("</table>").expect("table closes") + start;
    &dom[start..end]
}

fn row(id: i64) -> String {
    format!("data-event-id=\"{id}\"")
}

/// `<`, `>` and `&` as an HTML serializer writes them in text.
fn as_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_dom_shows_events_dead_letters_search_and_escapes_names() {
    let Some(chromium) = chromium() else { return };
    let s = serve(Some(TOKEN), Some(INSTANCE)).await;
    let seeded = &s.seeded;
    // Open the page as an operator would: the token once, with a search in the URL.
    let dom = dump_dom(
        chromium,
        &format!("{}/dashboard?q={SUBSCRIPTION}&token={TOKEN}", s.url),
    )
    .await;

    assert!(dom.contains("<title>revsync dashboard</title>"), "{dom}");
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the polling script never completed a refresh: {dom}"
    );

    // Recent events: every seeded event, with what it did in Salesforce.
    let events = table(&dom, "events");
    for id in [
        seeded.order_event,
        seeded.licence_event,
        seeded.sale_event,
        seeded.wild_event,
        seeded.decoy_event,
    ] {
        assert!(events.contains(&row(id)), "event {id} missing: {events}");
    }
    assert!(events.contains(ORDER) && events.contains(LICENCE));
    assert!(events.contains(&format!("href=\"{INSTANCE}/{ACCOUNT_ID}\"")));
    assert!(events.contains(">created<"), "{events}");

    // The dead letter with Salesforce's message, as text, and its Replay button.
    let dead = table(&dom, "dead-letters");
    assert!(dead.contains(&format!("data-dead-letter-id=\"{}\"", seeded.dead_letter)));
    assert!(dead.contains(&as_text(DEAD_MESSAGE)), "{dead}");
    assert!(dead.contains(DEAD_CODE));
    assert!(dead.contains(&format!("data-replay=\"{}\"", seeded.dead_letter)));

    // Search from the URL found the order by its subscription reference, and only it.
    let found = table(&dom, "search-results");
    assert!(found.contains(&row(seeded.order_event)), "{found}");
    assert!(!found.contains(&row(seeded.licence_event)), "{found}");

    // Hostile names are text: escaped in the serialized DOM, never elements.
    assert!(events.contains(&as_text(HOSTILE_NAME)), "{events}");
    assert!(dead.contains(&as_text(HOSTILE_COMPANY)), "{dead}");
    assert!(!dom.contains("<img"), "an <img> element was created: {dom}");
    assert!(
        !dom.contains("<script>alert"),
        "a script element was created"
    );

    // Budget and throughput.
    assert!(dom.contains("5000 / 100000"), "budget missing");
    assert!(dom.contains("data-flow=\"ipn\"") && dom.contains("data-flow=\"lcn\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_dom_without_the_token_shows_no_data() {
    let Some(chromium) = chromium() else { return };
    let s = serve(Some(TOKEN), None).await;
    let dom = dump_dom(chromium, &format!("{}/dashboard?token=wrong", s.url)).await;
    assert!(dom.contains("authentication required"), "{dom}");
    assert!(!dom.contains(ORDER));
}

fn playwright_ready() -> bool {
    let installed = browser_dir()
        .join("node_modules/playwright-core/package.json")
        .exists();
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        skip("node not installed (apt-get install -y nodejs npm)");
        return false;
    }
    if !installed {
        skip("playwright-core not installed (npm ci --prefix crates/revsync/tests/browser)");
        return false;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_button_and_search_in_a_real_browser() {
    let Some(chromium) = chromium() else { return };
    if !playwright_ready() {
        return;
    }
    let s = serve(Some(TOKEN), Some(INSTANCE)).await;
    let seeded = &s.seeded;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(
        &input,
        serde_json::json!({
            "chromium": chromium,
            "base": s.url,
            "token": TOKEN,
            "orderEvent": seeded.order_event,
            "deadLetter": seeded.dead_letter,
            "subscription": SUBSCRIPTION,
            "email": EMAIL.to_uppercase(),
        })
        .to_string(),
    )
    .unwrap();
    let mut command = tokio::process::Command::new("node");
    command
        .current_dir(browser_dir())
        .arg("dashboard.mjs")
        .arg(&input);
    let stdout = run(command, "node dashboard.mjs").await;
    let seen: Value = serde_json::from_str(stdout.trim()).expect("the driver prints JSON");
    assert!(seen["error"].is_null(), "driver failed: {}", seen["error"]);

    // Signed in by ?token=, which is gone from the address bar.
    assert_eq!(seen["status"], 200);
    assert_eq!(seen["finalUrl"], format!("{}/dashboard", s.url));
    // Only the dashboard's own origin was contacted.
    for url in seen["requests"].as_array().unwrap() {
        assert!(url.as_str().unwrap().starts_with(&s.url), "{url}");
    }
    assert_eq!(seen["consoleErrors"], serde_json::json!([]));

    let ids: Vec<i64> = serde_json::from_value(seen["eventIds"].clone()).unwrap();
    assert_eq!(ids.len(), 5);
    assert!(ids.contains(&seeded.order_event) && ids.contains(&seeded.sale_event));

    // The hostile name is shown as text and ran nothing.
    assert_eq!(seen["orderCustomer"], HOSTILE_NAME);
    assert_eq!(seen["dialogs"], serde_json::json!([]));
    assert_eq!(seen["images"], 0);
    assert_eq!(seen["scripts"], 1, "only the page's own script");
    assert!(seen["deadLetterFields"]
        .as_str()
        .unwrap()
        .contains(HOSTILE_COMPANY));

    let records = seen["orderRecords"].as_array().unwrap();
    let account = records
        .iter()
        .find(|r| r["text"].as_str().unwrap().contains("Account"))
        .unwrap();
    assert_eq!(account["href"], format!("{INSTANCE}/{ACCOUNT_ID}"));
    assert!(account["text"].as_str().unwrap().contains("created"));
    let opportunity = records
        .iter()
        .find(|r| r["text"].as_str().unwrap().contains("Opportunity"))
        .unwrap();
    assert_eq!(opportunity["outcome"], "failed");
    assert!(opportunity["href"].is_null());

    assert_eq!(seen["deadLetterMessage"], DEAD_MESSAGE);
    let budget = seen["budget"].as_str().unwrap();
    assert!(
        budget.contains("5000 / 100000") && budget.contains("5.0 %"),
        "{budget}"
    );
    assert_eq!(seen["flows"], serde_json::json!(["ipn", "lcn"]));
    assert_eq!(seen["overview"]["events"], "5");
    assert_eq!(seen["overview"]["dead-letters-open"], "1");

    // Search through the form: subscription reference, then e-mail in another case.
    assert_eq!(
        seen["searchSubscription"],
        serde_json::json!([seeded.order_event])
    );
    assert!(seen["searchUrl"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/dashboard?q={SUBSCRIPTION}")));
    assert_eq!(
        seen["searchEmail"],
        serde_json::json!([seeded.licence_event, seeded.order_event])
    );
    assert_eq!(seen["searchNothing"], serde_json::json!([]));
    assert!(seen["searchNothingSummary"]
        .as_str()
        .unwrap()
        .contains("Nothing found"));

    // The Replay button put the dead letter back into the outbox.
    assert!(
        seen["replayNotice"]
            .as_str()
            .unwrap()
            .contains(&format!("Dead letter {} replayed", seeded.dead_letter)),
        "{}",
        seen["replayNotice"]
    );
    assert_eq!(seen["deadLettersAfterReplay"], 0);
    let letters = s.store.dead_letters(None, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].status, DeadLetterStatus::Replayed);
    assert_eq!(s.store.outbox_stats().await.unwrap().pending, 1);
}
