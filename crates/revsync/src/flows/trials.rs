//! The trials flow (DESIGN §1): every trial sign-up (`IPN_LICENSE_TYPE[]=TRIAL`, LCN
//! `LICENSE_TYPE=TRIAL`) is a Lead upserted by `TwoCheckout_Trial_Ref__c` = the subscription
//! reference, with `LeadSource` "2Checkout trial", the trial product and the sign-up date.
//!
//! - **Company**: the buyer's company, else the e-mail's domain when it is not a free-mail
//!   domain, else `"[not provided]"` (Salesforce requires one).
//! - **Owner**: the first matching rule of `[[flows.trials.assignment]]` (product code or name,
//!   country or configured region, seat count as the only company-size signal 2Checkout
//!   sends), else `default_owner`, else none (the integration user owns it). Salesforce's own
//!   assignment rules need the `Sforce-Auto-Assign` request header, which the sink does not
//!   send per record — NOT DONE.
//! - **Campaign**: with `campaign_id`, a CampaignMember upserted by
//!   `campaign_member_key_field` (a custom external-id field on CampaignMember, default
//!   `TwoCheckout_Trial_Ref__c`, which must be deployed): CampaignMember has no external id of
//!   its own and every revsync write is an upsert. It is written once, when the trial is
//!   first seen (its reference fields are create-only).
//! - **Conversion**: when the trial turns paid, the Lead gets `converted_status` (default the
//!   stock "Closed - Converted"). Lead conversion proper (`convertLead`) is a SOAP / Apex call,
//!   not available through plain REST, so the Lead is *marked*, not converted. The paid order
//!   then creates the Account and Contact (subscriptions flow), and while a subscription is an
//!   unconverted trial the orders and customers flows write nothing for it, so the person
//!   exists once as a Lead, then once as a Contact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::intent::{RecordIntent, RecordKey};
use crate::ledger::subscription::{Lifecycle, SubscriptionRecord};
use crate::ledger::CustomerRecord;

use super::subscriptions::{fields, opt_text, text, Target};
use super::FlowsConfig;

fn yes() -> bool {
    true
}

/// One owner-assignment rule: every condition that is set must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AssignmentRule {
    /// Product codes or names (case-insensitive).
    pub products: Vec<String>,
    /// ISO 3166 alpha-2 country codes.
    pub countries: Vec<String>,
    /// Region names of `[flows.trials.regions]`.
    pub regions: Vec<String>,
    /// Minimum seats (trial quantity).
    pub min_seats: Option<i64>,
    /// Maximum seats.
    pub max_seats: Option<i64>,
    /// Lead owner (user or queue id).
    pub owner: String,
}

/// `[flows.trials]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrialsFlowConfig {
    /// Switch the flow on or off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `LeadSource`.
    pub lead_source: String,
    /// `Status` of a new trial Lead.
    pub lead_status: String,
    /// `Status` once the trial turned paid.
    pub converted_status: String,
    /// Campaign to add trial Leads to.
    pub campaign_id: Option<String>,
    /// CampaignMember `Status`.
    pub campaign_member_status: String,
    /// External-id field on CampaignMember.
    pub campaign_member_key_field: String,
    /// Regions: name → ISO country codes.
    pub regions: BTreeMap<String, Vec<String>>,
    /// Owner rules, first match wins.
    pub assignment: Vec<AssignmentRule>,
    /// Owner when no rule matches.
    pub default_owner: Option<String>,
}

impl Default for TrialsFlowConfig {
    fn default() -> Self {
        TrialsFlowConfig {
            enabled: true,
            lead_source: "2Checkout trial".into(),
            lead_status: "Open - Not Contacted".into(),
            converted_status: "Closed - Converted".into(),
            campaign_id: None,
            campaign_member_status: "Sent".into(),
            campaign_member_key_field: "TwoCheckout_Trial_Ref__c".into(),
            regions: BTreeMap::new(),
            assignment: Vec::new(),
            default_owner: None,
        }
    }
}

impl TrialsFlowConfig {
    /// The owner for a trial of `product` (code, name) in `country` with `seats`.
    pub fn owner_for(
        &self,
        product: (Option<&str>, Option<&str>),
        country: Option<&str>,
        seats: Option<i64>,
    ) -> Option<&str> {
        let country = country.map(str::to_ascii_uppercase);
        let matches = |r: &AssignmentRule| {
            let product_ok = r.products.is_empty()
                || r.products.iter().any(|p| {
                    [product.0, product.1]
                        .into_iter()
                        .flatten()
                        .any(|x| x.eq_ignore_ascii_case(p))
                });
            let in_country = |list: &[String]| {
                country
                    .as_deref()
                    .is_some_and(|c| list.iter().any(|x| x.eq_ignore_ascii_case(c)))
            };
            let country_ok = r.countries.is_empty() || in_country(&r.countries);
            let region_ok = r.regions.is_empty()
                || r.regions
                    .iter()
                    .any(|name| self.regions.get(name).is_some_and(|l| in_country(l)));
            let seats = seats.unwrap_or(1);
            let size_ok =
                r.min_seats.is_none_or(|m| seats >= m) && r.max_seats.is_none_or(|m| seats <= m);
            product_ok && country_ok && region_ok && size_ok
        };
        self.assignment
            .iter()
            .find(|r| matches(r))
            .map(|r| r.owner.as_str())
            .or(self.default_owner.as_deref())
    }
}

/// `Company` of a trial Lead.
pub fn lead_company(customer: Option<&CustomerRecord>) -> String {
    customer
        .and_then(|c| c.company.clone())
        .or_else(|| {
            customer
                .and_then(|c| c.email.as_deref())
                .and_then(crate::matching::company_domain)
        })
        .unwrap_or_else(|| "[not provided]".to_owned())
}

/// The Lead (and CampaignMember) of a `Trial` lifecycle item.
pub(crate) fn plan_item(
    cfg: &FlowsConfig,
    sub: &SubscriptionRecord,
    customer: Option<&CustomerRecord>,
    item: &Lifecycle,
    new: bool,
) -> Vec<RecordIntent> {
    let tc = &cfg.trials;
    let Lifecycle::Trial {
        started_at,
        product,
        product_code,
        quantity,
        converted_at,
        converted_refno,
    } = item
    else {
        return Vec::new();
    };
    if !tc.enabled {
        return Vec::new();
    }
    let t = Target::new(cfg, sub, customer);
    let c = customer;
    let get = |f: fn(&CustomerRecord) -> Option<&String>| c.and_then(f).map(String::as_str);
    let last_name = c
        .and_then(|c| c.last_name.clone().or(c.first_name.clone()))
        .or_else(|| {
            c.and_then(CustomerRecord::normalized_email)
                .and_then(|e| e.split('@').next().map(str::to_owned))
        })
        .unwrap_or_else(|| "Unknown".into());
    let first_name = c.and_then(|c| c.last_name.as_ref().and(c.first_name.clone()));
    let street = c.and_then(|c| match (&c.address1, &c.address2) {
        (Some(a), Some(b)) => Some(format!("{a}\n{b}")),
        (a, b) => a.clone().or(b.clone()),
    });
    let product_text = product
        .clone()
        .or(product_code.clone())
        .unwrap_or_else(|| "unknown product".into());
    let signed_up = started_at.map(|d| d.date().format("%Y-%m-%d").to_string());
    let mut description = format!(
        "2Checkout trial of {product_text}{}, subscription {}, signed up {}.",
        quantity
            .filter(|q| *q > 1)
            .map(|q| format!(" ({q} seats)"))
            .unwrap_or_default(),
        sub.reference,
        signed_up.as_deref().unwrap_or("on an unknown date"),
    );
    if let Some(at) = converted_at {
        description.push_str(&format!(
            "\nConverted to paid on {}{}.",
            at.date(),
            converted_refno
                .as_deref()
                .map(|r| format!(" (order {r})"))
                .unwrap_or_default()
        ));
    }
    let owner = tc.owner_for(
        (product_code.as_deref(), product.as_deref()),
        get(|c| c.country_code.as_ref()),
        *quantity,
    );
    let status = if converted_at.is_some() {
        &tc.converted_status
    } else {
        &tc.lead_status
    };
    let lead: BTreeMap<String, Value> = fields(vec![
        ("FirstName", first_name.map(Value::String)),
        ("LastName", text(last_name)),
        ("Email", opt_text(get(|c| c.email.as_ref()))),
        ("Phone", opt_text(get(|c| c.phone.as_ref()))),
        ("Company", text(lead_company(c))),
        ("Street", street.map(Value::String)),
        ("City", opt_text(get(|c| c.city.as_ref()))),
        ("State", opt_text(get(|c| c.state.as_ref()))),
        ("PostalCode", opt_text(get(|c| c.zip.as_ref()))),
        (
            "Country",
            opt_text(get(|c| c.country.as_ref()).or(get(|c| c.country_code.as_ref()))),
        ),
        ("LeadSource", text(&tc.lead_source)),
        ("Status", text(status)),
        ("Description", text(description)),
        ("OwnerId", opt_text(owner)),
    ]);
    let mut out = vec![t.intent(
        "Lead",
        RecordKey::external(&cfg.external_ids.trial, &sub.reference),
        lead,
    )];
    // CampaignId and LeadId are create-only: the member is written once, with the new Lead.
    if let (Some(campaign), true) = (&tc.campaign_id, new) {
        let mut lead_ref = serde_json::Map::new();
        lead_ref.insert(cfg.external_ids.trial.clone(), json!(sub.reference));
        out.push(t.intent(
            "CampaignMember",
            RecordKey::external(&tc.campaign_member_key_field, &sub.reference),
            fields(vec![
                ("CampaignId", text(campaign)),
                ("Lead", Some(Value::Object(lead_ref))),
                ("Status", text(&tc.campaign_member_status)),
            ]),
        ));
    }
    out
}
