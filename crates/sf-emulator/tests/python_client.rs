//! A widely used Salesforce client nobody here wrote — Python `simple-salesforce` — run
//! unchanged against the emulator (HTTPS with a generated certificate the client is told to trust).
//!
//! Without python3 or the library the test prints `SKIPPED: ...` and passes, unless
//! `REVSYNC_REQUIRE_PY_CLIENT=1` is set (CI installs the library and sets it), in which case
//! a missing interpreter or library fails the test.

use serde_json::Value;
use sf_emulator::{EmulatorConfig, TlsConfig};
use std::path::PathBuf;

fn required() -> bool {
    std::env::var("REVSYNC_REQUIRE_PY_CLIENT").is_ok_and(|v| v == "1")
}

fn skip_or_fail(reason: &str) {
    if required() {
        panic!("REVSYNC_REQUIRE_PY_CLIENT=1 but {reason}");
    }
    println!("SKIPPED: {reason} (pip install simple-salesforce to run this test)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_salesforce_runs_unchanged() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = tokio::process::Command::new(&python)
        .args(["-c", "import simple_salesforce, requests"])
        .output()
        .await;
    match probe {
        Err(e) => return skip_or_fail(&format!("{python} cannot be run: {e}")),
        Ok(o) if !o.status.success() => {
            return skip_or_fail(&format!(
                "simple-salesforce is not importable: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ))
        }
        Ok(_) => {}
    }
    let cfg = EmulatorConfig {
        query_page_size: 200,
        ..EmulatorConfig::default()
    };
    // A generated certificate the client trusts through REQUESTS_CA_BUNDLE (verification on).
    let (cert, key) = sf_emulator::tls::generate(&[]).expect("certificate");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("emulator-ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let tls = TlsConfig {
        cert_pem: Some(cert),
        key_pem: Some(key),
        hostnames: Vec::new(),
    };
    let emu = sf_emulator::spawn_tls(cfg.clone(), tls)
        .await
        .expect("emulator starts");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/simple_salesforce_client.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .env("REQUESTS_CA_BUNDLE", &ca)
        .args([
            emu.url().as_str(),
            cfg.username.as_str(),
            cfg.password.as_str(),
            cfg.client_id.as_str(),
            cfg.client_secret.as_str(),
        ])
        .output()
        .await
        .expect("script runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client script failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let summary: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("summary line");
    assert_eq!(summary["ok"], Value::Bool(true));
    // What the library did is visible in the emulator.
    assert_eq!(emu.records("Account").len(), 453);
    assert_eq!(emu.records("Contact").len(), 26);
    let calls = emu.calls();
    assert!(
        calls.per_resource["query"] >= 3,
        "query_all followed nextRecordsUrl: {calls:?}"
    );
    assert_eq!(calls.per_resource["composite/sobjects"], 3);
    assert_eq!(calls.per_resource["composite"], 1);
    assert!(calls.per_resource["jobs/ingest"] >= 5);
    assert!(calls.token_requests >= 3);
}
