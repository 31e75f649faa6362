//! The dunning flow (DESIGN §1): one Task (or Case) per failed charge cycle, keyed
//! `TwoCheckout_Event_Key__c = "dunning:<subscription>:<cycle>"`, so every further failed
//! attempt of the same cycle updates the same record (the retry count goes up) and never opens
//! a second one. A later successful payment of the cycle closes it with a comment.
//!
//! Sources (reference §1.5, §3): LCN `LICENCE_PASTDUE` / status `PAST DUE` (cycle = the
//! expiry that was not paid), legacy INS `RECURRING_INSTALLMENT_FAILED` (cycle = installment).
//! 2Checkout documents no retry counter (UNCONFIRMED), so the count is revsync's: the number of
//! distinct failure notifications of the cycle. Recovery: a paid renewal order whose period
//! starts at or after the cycle, or an INS success for the installment.
//!
//! Fields (stock Task / Case fields plus §8's event key): Subject with the retry count,
//! Description with failed amount, currency, payment method and attempts, Status, Priority,
//! `OwnerId` = `owner` (a collections user, or for Cases a queue id) when configured, else the
//! integration user (see the subscriptions flow on account owners). `retry_count_field` /
//! `amount_field` name optional custom fields that get the numbers as numbers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::intent::RecordIntent;
use crate::ledger::subscription::{Lifecycle, SubscriptionRecord};

use super::mapping::decimal_to_json;
use super::subscriptions::{date, fields, money_text, opt_text, text, Target};
use super::FlowsConfig;

fn yes() -> bool {
    true
}

/// Which record a failed cycle becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DunningRecord {
    /// A Task on the Account.
    #[default]
    Task,
    /// A Case on the Account and Contact.
    Case,
}

/// `[flows.dunning]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DunningFlowConfig {
    /// Switch the flow on or off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Task or Case.
    pub record: DunningRecord,
    /// Owner id: a collections user (Task or Case) or queue (Case only).
    pub owner: Option<String>,
    /// Priority of an open dunning record.
    pub priority: String,
    /// Status of a recovered Task.
    pub task_closed_status: String,
    /// Status of a recovered Case.
    pub case_closed_status: String,
    /// Optional custom field that gets the retry count (number).
    pub retry_count_field: Option<String>,
    /// Optional custom field that gets the failed amount (number).
    pub amount_field: Option<String>,
}

impl Default for DunningFlowConfig {
    fn default() -> Self {
        DunningFlowConfig {
            enabled: true,
            record: DunningRecord::Task,
            owner: None,
            priority: "High".into(),
            task_closed_status: "Completed".into(),
            case_closed_status: "Closed".into(),
            retry_count_field: None,
            amount_field: None,
        }
    }
}

/// The Task / Case of one `Dunning` lifecycle item.
pub(crate) fn plan_item(
    cfg: &FlowsConfig,
    sub: &SubscriptionRecord,
    t: &Target<'_>,
    key: &str,
    item: &Lifecycle,
) -> Vec<RecordIntent> {
    let dc = &cfg.dunning;
    let Lifecycle::Dunning {
        cycle,
        attempts,
        amount,
        currency,
        payment_method,
        first_failed_at,
        last_failed_at,
        recovered_at,
        recovered_by,
    } = item
    else {
        return Vec::new();
    };
    if !dc.enabled {
        return Vec::new();
    }
    debug_assert!(key.starts_with("dunning:"));
    let case = dc.record == DunningRecord::Case;
    let failed = money_text(*amount, *currency);
    let mut description = format!(
        "Payment failed for subscription {} (cycle {cycle}).\nFailed amount: {failed}\nPayment method: {}\nFailed attempts: {attempts}",
        sub.reference,
        payment_method.as_deref().unwrap_or("unknown"),
    );
    if let (Some(first), Some(last)) = (first_failed_at, last_failed_at) {
        description.push_str(&format!("\nFirst failure: {first}\nLatest failure: {last}"));
    }
    let status = match (recovered_at, case) {
        (Some(at), _) => {
            description.push_str(&format!(
                "\nRecovered on {}{}: the payment went through; closed by revsync.",
                at.date(),
                recovered_by
                    .as_deref()
                    .map(|b| format!(" by {b}"))
                    .unwrap_or_default()
            ));
            if case {
                &dc.case_closed_status
            } else {
                &dc.task_closed_status
            }
        }
        (None, true) => "New",
        (None, false) => "Not Started",
    };
    let mut f: BTreeMap<String, Value> = fields(vec![
        (
            "Subject",
            text(format!(
                "Payment failed: subscription {} ({attempts} attempt{})",
                sub.reference,
                if *attempts == 1 { "" } else { "s" }
            )),
        ),
        ("Description", text(description)),
        ("Status", text(status)),
        ("Priority", text(&dc.priority)),
        ("OwnerId", opt_text(dc.owner.as_deref())),
    ]);
    if !case {
        if let Some(d) = date(last_failed_at.map(|d| d.date())) {
            f.insert("ActivityDate".into(), d);
        }
    }
    if let Some(field) = &dc.retry_count_field {
        f.insert(field.clone(), json!(attempts));
    }
    if let (Some(field), Some(a)) = (&dc.amount_field, amount) {
        f.insert(field.clone(), decimal_to_json(*a));
    }
    vec![t.activity(case, &format!("dunning:{}:{cycle}", sub.reference), f)]
}
