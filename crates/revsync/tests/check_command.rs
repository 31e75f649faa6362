//! `revsync check` (the real binary) against the Salesforce emulator: ready with the default
//! org (the metadata of `salesforce/`), not ready with a stock org, naming every missing field.

use std::process::Command;

use sf_emulator::{EmulatorConfig, OrgDefinition};

/// Runs `revsync check` with a config pointing at `emu`; returns (exit code, stdout).
fn check(emu_url: &str, emu: &EmulatorConfig, extra: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revsync.toml");
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = {store}\n\n[twocheckout]\nsecret_key = {{ value = \"k\" }}\n\n\
             [salesforce]\ninstance_url = {url}\nauth = \"client_credentials\"\n\
             client_id = {id}\nclient_secret = {{ value = {secret} }}\n{extra}",
            store = q(&format!("sqlite://{}", dir.path().join("r.db").display())),
            url = q(emu_url),
            id = q(&emu.client_id),
            secret = q(&emu.client_secret),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_revsync"))
        .arg("--config")
        .arg(&path)
        .arg("check")
        .env_remove("REVSYNC_CONFIG")
        .output()
        .expect("revsync check runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_org_is_ready() {
    let cfg = EmulatorConfig::default();
    let emu = sf_emulator::spawn(cfg.clone()).await.unwrap();
    let url = emu.url();
    let (code, out) = tokio::task::spawn_blocking(move || check(&url, &cfg, ""))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.contains("logged in"), "{out}");
    assert!(
        out.contains("Opportunity.TwoCheckout_Order_Ref__c: External ID, Unique, writable"),
        "{out}"
    );
    assert!(out.contains("single-currency, as configured"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stock_org_is_not_ready_and_every_missing_field_is_named() {
    let cfg = EmulatorConfig {
        org: OrgDefinition::standard_only(),
        ..EmulatorConfig::default()
    };
    let emu = sf_emulator::spawn(cfg.clone()).await.unwrap();
    let url = emu.url();
    let (code, out) = tokio::task::spawn_blocking(move || check(&url, &cfg, ""))
        .await
        .unwrap();
    assert_eq!(code, 1, "{out}");
    for field in OrgDefinition::default().file.fields {
        // Every DESIGN §8 field is named, on its object, as missing.
        let named = out
            .lines()
            .any(|l| l.contains("FAIL") && l.contains(&field.object) && l.contains(&field.name));
        assert!(
            named,
            "{}.{} not reported:\n{out}",
            field.object, field.name
        );
    }
    assert!(
        out.contains("sf project deploy start"),
        "says how to fix: {out}"
    );
    assert!(out.contains("not ready"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_currency_org_with_a_single_currency_config_is_not_ready() {
    let cfg = EmulatorConfig {
        multi_currency: true,
        ..EmulatorConfig::default()
    };
    let emu = sf_emulator::spawn(cfg.clone()).await.unwrap();
    let url = emu.url();
    let c = cfg.clone();
    let (code, out) = tokio::task::spawn_blocking(move || check(&url, &c, ""))
        .await
        .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  currency: the org is multi-currency"),
        "{out}"
    );
    let url = emu.url();
    let (code, out) = tokio::task::spawn_blocking(move || {
        check(&url, &cfg, "\n[flows]\nmulti_currency = true\n")
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_config_without_salesforce_or_with_a_broken_mapping_says_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revsync.toml");
    std::fs::write(
        &path,
        "[twocheckout]\nsecret_key = { value = \"k\" }\n\n[flows.mapping.Account]\nName = \"{{ customer.no_such_variable }}\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_revsync"))
        .arg("--config")
        .arg(&path)
        .arg("check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  field mappings compile"), "{stdout}");
    assert!(stdout.contains("no_such_variable"), "{stdout}");
    assert!(
        stdout.contains("FAIL  Salesforce credentials are configured"),
        "{stdout}"
    );
}
