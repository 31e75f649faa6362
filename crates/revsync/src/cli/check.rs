//! `revsync check`: is this configuration ready to run against this org?
//!
//! A checklist, each line `ok` or `FAIL` with what to fix:
//! 1. the configuration loads and is complete (Secret Key, Salesforce credentials, field
//!    mappings that compile);
//! 2. the integration user can log in;
//! 3. every object the flows write exists and is createable and updateable (describe);
//! 4. every mapped field exists and is createable and updateable;
//! 5. every external-id field revsync upserts by is External ID and Unique;
//! 6. the org's multi-currency setting matches `flows.multi_currency`.
//!
//! Exit 0 when every line is `ok`, 1 otherwise (2 when the check itself cannot run).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use revsync::config::Config;
use revsync::flows::{default_mappings, Flows};

/// One line of the checklist.
struct Item {
    ok: bool,
    what: String,
    fix: Option<String>,
}

#[derive(Default)]
struct Checklist {
    items: Vec<Item>,
}

impl Checklist {
    fn ok(&mut self, what: impl Into<String>) {
        self.items.push(Item {
            ok: true,
            what: what.into(),
            fix: None,
        });
    }

    fn fail(&mut self, what: impl Into<String>, fix: impl Into<String>) {
        self.items.push(Item {
            ok: false,
            what: what.into(),
            fix: Some(fix.into()),
        });
    }

    fn print(&self) {
        for item in &self.items {
            let mark = if item.ok { "ok  " } else { "FAIL" };
            println!("  {mark}  {}", item.what);
            if let Some(fix) = &item.fix {
                println!("        → {fix}");
            }
        }
        let failed = self.items.iter().filter(|i| !i.ok).count();
        if failed == 0 {
            println!("ready: {} checks passed", self.items.len());
        } else {
            println!(
                "not ready: {failed} of {} checks failed (fix the lines marked FAIL and run `revsync check` again)",
                self.items.len()
            );
        }
    }

    fn passed(&self) -> bool {
        self.items.iter().all(|i| i.ok)
    }
}

/// The fields revsync writes, per sObject, and the external id it upserts each object by.
struct Expected {
    fields: BTreeMap<&'static str, BTreeSet<String>>,
    external_ids: BTreeMap<&'static str, String>,
}

fn expected(config: &Config) -> Expected {
    let merge = |defaults: &BTreeMap<String, String>, overrides: &BTreeMap<String, String>| {
        let mut out: BTreeSet<String> = defaults.keys().cloned().collect();
        for (field, template) in overrides {
            if template.trim().is_empty() {
                out.remove(field);
            } else {
                out.insert(field.clone());
            }
        }
        // The currency code is checked against the org's multi-currency setting instead.
        out.remove("CurrencyIsoCode");
        out
    };
    let d = default_mappings();
    let o = &config.flows.mapping;
    let ids = &config.flows.external_ids;
    let mut fields = BTreeMap::new();
    fields.insert("Account", merge(&d.account, &o.account));
    fields.insert("Contact", merge(&d.contact, &o.contact));
    fields.insert("Opportunity", merge(&d.opportunity, &o.opportunity));
    fields.insert("Case", merge(&d.case, &o.case));
    // The Account rollups.
    let r = &config.flows.rollups;
    if r.enabled {
        if let Some(account) = fields.get_mut("Account") {
            account.extend(
                [
                    &r.lifetime_value_field,
                    &r.average_order_value_field,
                    &r.mrr_field,
                    &r.last_purchase_date_field,
                    &r.order_count_field,
                ]
                .into_iter()
                .cloned(),
            );
        }
    }
    // Parent references written by the flows (by the parent's external id).
    for (object, parents) in [
        ("Contact", &["AccountId"][..]),
        ("Opportunity", &["AccountId"][..]),
        ("Case", &["AccountId", "ContactId"][..]),
    ] {
        if let Some(set) = fields.get_mut(object) {
            set.extend(parents.iter().map(|p| (*p).to_owned()));
        }
    }
    // Task (subscription changes) and Lead (trials) are written by key; their other fields
    // are standard ones every org has.
    fields.insert("Task", BTreeSet::new());
    fields.insert("Lead", BTreeSet::new());
    let mut external_ids = BTreeMap::new();
    external_ids.insert("Account", ids.customer.clone());
    external_ids.insert("Contact", ids.customer.clone());
    external_ids.insert("Opportunity", ids.order.clone());
    external_ids.insert("Case", ids.event.clone());
    external_ids.insert("Task", ids.event.clone());
    external_ids.insert("Lead", ids.trial.clone());
    Expected {
        fields,
        external_ids,
    }
}

pub async fn run(path: &Path) -> anyhow::Result<ExitCode> {
    println!("revsync check — {}", path.display());
    let mut list = Checklist::default();

    // 1. Configuration.
    let config = match Config::load(path, true) {
        Ok(c) => {
            list.ok(format!("configuration {} loads", path.display()));
            c
        }
        Err(e) => {
            list.fail("configuration loads", e.to_string());
            list.print();
            return Ok(ExitCode::from(1));
        }
    };
    match config.notification_keys() {
        Ok(_) => list.ok("2Checkout Secret Key is set"),
        Err(e) => list.fail("2Checkout Secret Key is set", e.to_string()),
    }
    match Flows::new(&config.flows) {
        Ok(_) => list.ok("field mappings compile"),
        Err(e) => list.fail("field mappings compile", e.to_string()),
    }
    let credentials = match config.salesforce_credentials() {
        Ok(Some(c)) => {
            list.ok("Salesforce credentials are configured");
            c
        }
        Ok(None) => {
            list.fail(
                "Salesforce credentials are configured",
                "set [salesforce] instance_url, auth and its credentials (see `revsync init`)",
            );
            list.print();
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            list.fail("Salesforce credentials are configured", e.to_string());
            list.print();
            return Ok(ExitCode::from(1));
        }
    };

    // 2. Login.
    let client = salesforce::Client::builder(credentials)
        .api_version(config.salesforce.api_version.clone())
        .request_timeout(Duration::from_secs(config.salesforce.request_timeout_secs))
        .build()?;
    match client.authenticate().await {
        Ok(instance) => list.ok(format!("logged in to {instance}")),
        Err(e) => {
            list.fail(
                "log in as the integration user",
                format!("{e} (check the connected app, the user and its permission set)"),
            );
            list.print();
            return Ok(ExitCode::from(1));
        }
    }

    // 3–5. Objects and fields.
    let want = expected(&config);
    let mut multi_currency_seen = None;
    for (object, fields) in &want.fields {
        let describe = match client.describe(object).await {
            Ok(d) => d,
            Err(e) => {
                list.fail(
                    format!("{object}: describe"),
                    format!("{e} (the integration user needs read access to {object})"),
                );
                continue;
            }
        };
        if describe.createable && describe.updateable {
            list.ok(format!("{object}: createable and updateable"));
        } else {
            list.fail(
                format!("{object}: createable and updateable"),
                format!(
                    "grant Create and Edit on {object} in the revsync Integration permission set"
                ),
            );
        }
        if *object == "Opportunity" {
            multi_currency_seen = Some(describe.is_multi_currency());
        }
        let mut missing = Vec::new();
        let mut read_only = Vec::new();
        for field in fields {
            match describe.field(field) {
                None => missing.push(field.as_str()),
                Some(f) if !(f.createable && f.updateable) => read_only.push(field.as_str()),
                Some(_) => {}
            }
        }
        if missing.is_empty() && read_only.is_empty() {
            list.ok(format!("{object}: {} mapped fields writable", fields.len()));
        }
        if !missing.is_empty() {
            list.fail(
                format!("{object}: fields missing: {}", missing.join(", ")),
                "deploy salesforce/ (sf project deploy start --source-dir salesforce/force-app) or fix [flows.mapping]",
            );
        }
        if !read_only.is_empty() {
            list.fail(
                format!("{object}: fields not writable: {}", read_only.join(", ")),
                "grant Edit on these fields in the revsync Integration permission set (formula and system fields cannot be mapped)",
            );
        }
        if let Some(ext) = want.external_ids.get(object) {
            match describe.field(ext) {
                None => list.fail(
                    format!("{object}.{ext}: external id missing"),
                    "deploy salesforce/ or set [flows.external_ids] to the field your org uses",
                ),
                Some(f) if !(f.external_id && f.unique) => list.fail(
                    format!(
                        "{object}.{ext}: is{} External ID and is{} Unique",
                        if f.external_id { "" } else { " not" },
                        if f.unique { "" } else { " not" }
                    ),
                    "make it External ID and Unique: revsync upserts by it, and only a unique key prevents duplicates",
                ),
                Some(f) if !(f.createable && f.updateable) => list.fail(
                    format!("{object}.{ext}: external id not writable"),
                    "grant Edit on it in the revsync Integration permission set",
                ),
                Some(_) => list.ok(format!("{object}.{ext}: External ID, Unique, writable")),
            }
        }
    }

    // 6. Currency.
    match (multi_currency_seen, config.flows.multi_currency) {
        (None, _) => {}
        (Some(org), cfg) if org == cfg => list.ok(format!(
            "currency: the org is {}, as configured",
            if org { "multi-currency" } else { "single-currency" }
        )),
        (Some(true), _) => list.fail(
            "currency: the org is multi-currency but flows.multi_currency = false",
            "set [flows] multi_currency = true, or amounts are written in the base currency without CurrencyIsoCode",
        ),
        (Some(false), _) => list.fail(
            "currency: flows.multi_currency = true but the org has no CurrencyIsoCode",
            "set [flows] multi_currency = false (or enable multi-currency in the org)",
        ),
    }

    list.print();
    Ok(if list.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
