//! The subscriptions flow (DESIGN §1): a subscription's lifecycle as Salesforce work for
//! sales and customer success. Pure: ledger records in, record intents out.
//!
//! | Lifecycle item ([`Lifecycle`]) | Salesforce |
//! |---|---|
//! | `Paid` (renewal, trial conversion) | Opportunity keyed `TwoCheckout_Order_Ref__c = "<subscription>:<cycle>"`, stage closed-won, `Type` "Renewal" (a trial conversion: the orders flow's new-business type), linked by `TwoCheckout_Subscription_Ref__c` |
//! | renewal due (scheduler, [`renewal_due`]) | the same Opportunity key, open at `renewal_due_stage`, close date = expiry; above `task_value_threshold` a Task for the account owner |
//! | `PlanChanged` up | upsell Opportunity `"<subscription>:upsell:<time>"` for the difference (closed-won) and a Task for sales |
//! | `PlanChanged` down | a Task for customer success |
//! | `Canceled` | a High-priority Task for customer success and the renewal Opportunity of the lost cycle closed lost |
//! | `Expired` | recorded in the ledger only |
//!
//! **Renewal Opportunity key.** DESIGN §3: "subscription reference + renewal cycle". The cycle
//! is the renewal period's start date (`YYYY-MM-DD`, see [`crate::ledger::subscription`]), so
//! the open Opportunity created when the renewal is due, the closed-won one when it is paid and
//! the closed-lost one when it is cancelled are one record. Renewal orders are therefore *not*
//! booked by the orders flow under their `REFNO` while this flow is on (no double revenue).
//!
//! **Tasks** are keyed `TwoCheckout_Event_Key__c = "<flow>:<subscription>:<cycle>"`. Owners:
//! `cs_owner` / `sales_owner` when configured (user ids); otherwise no `OwnerId` is sent and
//! Salesforce makes the integration user the owner. Assigning to the *Account's* owner needs a
//! Salesforce read (the Account's `OwnerId`) that a pure flow cannot do — NOT DONE: configure
//! an owner id or an org-side rule on `TwoCheckout_Event_Key__c` Tasks.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use twocheckout::money::Currency;

use crate::intent::{Priority, RecordIntent, RecordKey};
use crate::ledger::subscription::{Lifecycle, PlanDirection, SubscriptionRecord};
use crate::ledger::{fx, CustomerRecord, OrderRecord};

use super::mapping::decimal_to_json;
use super::FlowsConfig;

fn yes() -> bool {
    true
}

/// `[flows.subscriptions]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriptionsFlowConfig {
    /// Switch the flow on or off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Opportunity `Type` of a renewal.
    pub renewal_type: String,
    /// Opportunity `Type` of an upsell.
    pub upsell_type: String,
    /// Stage of an upsell Opportunity (the upgrade already happened).
    pub upsell_stage: String,
    /// Stage of a renewal Opportunity that will not happen.
    pub closed_lost_stage: String,
    /// A renewal is "due" this many days before expiry.
    pub renewal_due_days: u32,
    /// Stage of an open renewal Opportunity.
    pub renewal_due_stage: String,
    /// Cron expression (with seconds) of the renewal-due job.
    pub renewal_due_schedule: String,
    /// Renewal value (per cycle, base currency) from which the account owner gets a Task, and
    /// from which downgrade Tasks are High priority.
    pub task_value_threshold: Decimal,
    /// Owner (user id) of customer-success Tasks (downgrade, cancellation).
    pub cs_owner: Option<String>,
    /// Owner (user id) of sales Tasks (upgrade, renewal due).
    pub sales_owner: Option<String>,
}

impl Default for SubscriptionsFlowConfig {
    fn default() -> Self {
        SubscriptionsFlowConfig {
            enabled: true,
            renewal_type: "Renewal".into(),
            upsell_type: "Upsell".into(),
            upsell_stage: "Closed Won".into(),
            closed_lost_stage: "Closed Lost".into(),
            renewal_due_days: 30,
            renewal_due_stage: "Prospecting".into(),
            renewal_due_schedule: "0 0 * * * *".into(),
            task_value_threshold: Decimal::new(1000, 0),
            cs_owner: None,
            sales_owner: None,
        }
    }
}

// ---------------------------------------------------------------------------------
// Shared helpers of the lifecycle flows

/// What every lifecycle intent needs: ids, partition, Account reference.
pub(crate) struct Target<'a> {
    pub cfg: &'a FlowsConfig,
    pub customer_key: Option<String>,
    pub partition: String,
}

impl Target<'_> {
    pub fn new<'a>(
        cfg: &'a FlowsConfig,
        sub: &SubscriptionRecord,
        customer: Option<&CustomerRecord>,
    ) -> Target<'a> {
        let customer_key = sub
            .customer_key
            .clone()
            .or_else(|| customer.map(|c| c.key.clone()));
        let partition = customer_key
            .clone()
            .unwrap_or_else(|| sub.reference.clone());
        Target {
            cfg,
            customer_key,
            partition,
        }
    }

    fn ext_ref(&self, sobject: Option<&str>) -> Option<Value> {
        let key = self.customer_key.as_ref()?;
        let mut m = serde_json::Map::new();
        if let Some(t) = sobject {
            m.insert("attributes".into(), json!({ "type": t }));
        }
        m.insert(self.cfg.external_ids.customer.clone(), json!(key));
        Some(Value::Object(m))
    }

    /// `"Account": {ext: key}`.
    pub fn account(&self) -> Option<Value> {
        self.ext_ref(None)
    }

    pub fn intent(
        &self,
        sobject: &str,
        key: RecordKey,
        fields: BTreeMap<String, Value>,
    ) -> RecordIntent {
        RecordIntent {
            sobject: sobject.to_owned(),
            key,
            fields,
            partition: self.partition.clone(),
            priority: Priority::Payment,
        }
    }

    /// A Task (or Case when `case`) keyed by event key, on the Account (and Contact).
    pub fn activity(
        &self,
        case: bool,
        event_key: &str,
        mut fields: BTreeMap<String, Value>,
    ) -> RecordIntent {
        if case {
            if let Some(a) = self.account() {
                fields.insert("Account".into(), a.clone());
                fields.insert("Contact".into(), a);
            }
        } else {
            if let Some(a) = self.ext_ref(Some("Account")) {
                fields.insert("What".into(), a);
            }
            if let Some(c) = self.ext_ref(Some("Contact")) {
                fields.insert("Who".into(), c);
            }
        }
        self.intent(
            if case { "Case" } else { "Task" },
            RecordKey::external(&self.cfg.external_ids.event, event_key),
            fields,
        )
    }
}

/// Builds a field map, leaving out `None`s.
pub(crate) fn fields(entries: Vec<(&str, Option<Value>)>) -> BTreeMap<String, Value> {
    entries
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect()
}

pub(crate) fn text(s: impl Into<String>) -> Option<Value> {
    Some(Value::String(s.into()))
}

pub(crate) fn opt_text(s: Option<&str>) -> Option<Value> {
    s.filter(|s| !s.trim().is_empty()).map(|s| json!(s))
}

pub(crate) fn date(d: Option<NaiveDate>) -> Option<Value> {
    d.map(|d| json!(d.format("%Y-%m-%d").to_string()))
}

/// `amount currency` for descriptions (`129.00 EUR`).
pub(crate) fn money_text(amount: Option<Decimal>, currency: Option<Currency>) -> String {
    match (amount, currency) {
        (Some(a), Some(c)) => format!("{} {}", fx::round(a, c), c.code()),
        (Some(a), None) => a.to_string(),
        _ => "unknown".into(),
    }
}

/// Amount fields of an Opportunity: `(Amount, CurrencyIsoCode, Original_Currency__c,
/// Original_Amount__c)` as the orders flow writes them (DESIGN §6).
pub(crate) fn amount_fields(
    cfg: &FlowsConfig,
    amount: Option<Decimal>,
    currency: Option<Currency>,
    rate: Option<Decimal>,
) -> Vec<(&'static str, Option<Value>)> {
    let (Some(a), Some(c)) = (amount, currency) else {
        return Vec::new();
    };
    let a = fx::round(a, c);
    if cfg.multi_currency {
        vec![
            ("Amount", Some(decimal_to_json(a))),
            ("CurrencyIsoCode", text(c.code())),
        ]
    } else {
        let base = cfg.base_currency;
        let rate = if c == base {
            Some(Decimal::ONE)
        } else {
            rate.or_else(|| cfg.fx.rate(c))
        };
        vec![
            (
                "Amount",
                rate.and_then(|r| fx::convert(a, r, base))
                    .map(decimal_to_json),
            ),
            ("Original_Currency__c", text(c.code())),
            ("Original_Amount__c", Some(decimal_to_json(a))),
        ]
    }
}

/// Value of `amount` in the base currency (for thresholds), when a rate is known.
pub(crate) fn base_value(
    cfg: &FlowsConfig,
    amount: Option<Decimal>,
    currency: Option<Currency>,
    rate: Option<Decimal>,
) -> Option<Decimal> {
    let (a, c) = (amount?, currency?);
    if c == cfg.base_currency {
        return Some(a);
    }
    fx::convert(a, rate.or_else(|| cfg.fx.rate(c))?, cfg.base_currency)
}

fn product(sub: &SubscriptionRecord) -> String {
    sub.product_name
        .clone()
        .or(sub.product_code.clone())
        .unwrap_or_else(|| "subscription".into())
}

/// The rate of the order named by `rate_order` when it is the loaded order.
pub(crate) fn order_rate(sub: &SubscriptionRecord, order: Option<&OrderRecord>) -> Option<Decimal> {
    order
        .filter(|o| Some(&o.refno) == sub.rate_order.as_ref())
        .and_then(|o| o.fx.as_ref())
        .map(|f| f.rate)
}

fn renewal_key(sub: &SubscriptionRecord, cycle: &str) -> String {
    format!("{}:{}", sub.reference, cycle)
}

fn cycle_date(cycle: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(cycle, "%Y-%m-%d").ok()
}

// ---------------------------------------------------------------------------------
// Planning

/// The intents of the subscriptions, dunning and trials flows for the lifecycle items `items`
/// (keys of `sub.lifecycle` that are new or changed), each flow when switched on.
pub fn plan(
    cfg: &FlowsConfig,
    sub: &SubscriptionRecord,
    customer: Option<&CustomerRecord>,
    order: Option<&OrderRecord>,
    items: &[String],
    created: &[String],
) -> Vec<RecordIntent> {
    let sc = &cfg.subscriptions;
    let t = Target::new(cfg, sub, customer);
    let rate = order_rate(sub, order);
    let mut out = Vec::new();
    for key in items {
        let Some(item) = sub.lifecycle.get(key) else {
            continue;
        };
        let subscription_item = matches!(
            item,
            Lifecycle::Paid { .. } | Lifecycle::PlanChanged { .. } | Lifecycle::Canceled { .. }
        );
        if subscription_item && !sc.enabled {
            continue;
        }
        match item {
            Lifecycle::Paid {
                cycle,
                refno,
                close_date,
                ..
            } => {
                // With the renewal order loaded, `Flows::plan` writes this Opportunity with
                // the order mapping's amounts (as the orders flow would); otherwise (e.g. an
                // earlier renewal arrived late and renumbered this one) only the names.
                if order.is_some_and(|o| &o.refno == refno) {
                    continue;
                }
                let Some((key, mut f)) = paid_overrides(cfg, sub, refno) else {
                    continue;
                };
                f.insert("StageName".into(), json!(cfg.orders.closed_won_stage));
                if let Some(d) = date(*close_date) {
                    f.insert("CloseDate".into(), d);
                }
                if let Some(a) = t.account() {
                    f.insert("Account".into(), a);
                }
                debug_assert_eq!(key, renewal_key(sub, cycle));
                out.push(t.intent(
                    "Opportunity",
                    RecordKey::external(&cfg.external_ids.order, &key),
                    f,
                ));
            }
            Lifecycle::PlanChanged {
                at,
                direction,
                from_product,
                to_product,
                from_quantity,
                to_quantity,
                from_amount,
                to_amount,
                currency,
            } => {
                let stamp = key.trim_start_matches("plan:");
                let change = format!(
                    "{} × {} → {} × {}",
                    from_quantity.unwrap_or(1),
                    from_product.as_deref().unwrap_or("?"),
                    to_quantity.unwrap_or(1),
                    to_product.as_deref().unwrap_or("?"),
                );
                let values = format!(
                    "Per cycle: {} → {}",
                    money_text(*from_amount, *currency),
                    money_text(*to_amount, *currency)
                );
                let day = at.map(|a| a.date());
                match direction {
                    PlanDirection::Upgrade => {
                        let diff = from_amount
                            .zip(*to_amount)
                            .map(|(a, b)| b - a)
                            .filter(|d| *d > Decimal::ZERO);
                        let mut f = vec![
                            (
                                "Name",
                                text(format!(
                                    "{} upgrade ({stamp})",
                                    to_product.as_deref().unwrap_or("subscription")
                                )),
                            ),
                            ("StageName", text(&sc.upsell_stage)),
                            ("CloseDate", date(day)),
                            ("Type", text(&sc.upsell_type)),
                            ("TwoCheckout_Subscription_Ref__c", text(&sub.reference)),
                            ("Account", t.account()),
                        ];
                        f.extend(amount_fields(cfg, diff, *currency, rate));
                        out.push(t.intent(
                            "Opportunity",
                            RecordKey::external(
                                &cfg.external_ids.order,
                                &format!("{}:upsell:{stamp}", sub.reference),
                            ),
                            fields(f),
                        ));
                        out.push(t.activity(
                            false,
                            &format!("upgrade:{}:{stamp}", sub.reference),
                            fields(vec![
                                (
                                    "Subject",
                                    text(format!("Upgrade: subscription {}", sub.reference)),
                                ),
                                (
                                    "Description",
                                    text(format!(
                                        "The customer upgraded subscription {}.\n{change}\n{values}",
                                        sub.reference
                                    )),
                                ),
                                ("Status", text("Not Started")),
                                ("Priority", text("Normal")),
                                ("ActivityDate", date(day)),
                                ("OwnerId", opt_text(sc.sales_owner.as_deref())),
                            ]),
                        ));
                    }
                    PlanDirection::Downgrade => {
                        let value = base_value(cfg, *from_amount, *currency, rate);
                        let high = value.is_some_and(|v| v >= sc.task_value_threshold);
                        out.push(t.activity(
                            false,
                            &format!("downgrade:{}:{stamp}", sub.reference),
                            fields(vec![
                                (
                                    "Subject",
                                    text(format!("Downgrade: subscription {}", sub.reference)),
                                ),
                                (
                                    "Description",
                                    text(format!(
                                        "The customer downgraded subscription {}.\n{change}\n{values}",
                                        sub.reference
                                    )),
                                ),
                                ("Status", text("Not Started")),
                                ("Priority", text(if high { "High" } else { "Normal" })),
                                ("ActivityDate", date(day)),
                                ("OwnerId", opt_text(sc.cs_owner.as_deref())),
                            ]),
                        ));
                    }
                }
            }
            Lifecycle::Canceled {
                cycle,
                at,
                reason,
                changed_by,
                reverted_at,
                product: cancelled_product,
                amount,
                currency,
            } => {
                // Everything written comes from the item (its values at the time), so a late
                // earlier notification that changes them re-plans the same records.
                let product_name = cancelled_product
                    .clone()
                    .unwrap_or_else(|| "subscription".into());
                let reason_text = match reason.as_str() {
                    "disabled" => "the subscription was disabled",
                    "cancellation_scheduled" => "a cancellation was scheduled",
                    "recurring_stopped" => "recurring billing was stopped",
                    _ => "auto-renewal was switched off",
                };
                let by = changed_by
                    .as_deref()
                    .map(|b| format!(" (changed by {})", b.to_lowercase()))
                    .unwrap_or_default();
                let mut description = format!(
                    "Subscription {} ({product_name}) will not renew: {reason_text}{by}.\nRenewal due: {cycle}\nValue per cycle: {}",
                    sub.reference,
                    money_text(*amount, *currency),
                );
                if let Some(r) = reverted_at {
                    description.push_str(&format!(
                        "\nReverted on {}: auto-renewal is on again.",
                        r.date()
                    ));
                }
                out.push(t.activity(
                    false,
                    &format!("cancellation:{}:{cycle}", sub.reference),
                    fields(vec![
                        (
                            "Subject",
                            text(format!("Cancellation: subscription {}", sub.reference)),
                        ),
                        ("Description", text(description)),
                        (
                            "Status",
                            text(if reverted_at.is_some() {
                                "Completed"
                            } else {
                                "Not Started"
                            }),
                        ),
                        ("Priority", text("High")),
                        ("ActivityDate", date(at.map(|a| a.date()))),
                        ("OwnerId", opt_text(sc.cs_owner.as_deref())),
                    ]),
                ));
                let paid = sub.lifecycle.contains_key(&format!("paid:{cycle}"));
                if !paid && reverted_at.is_none() && cycle_date(cycle).is_some() {
                    let mut f = vec![
                        ("Name", text(format!("{product_name} renewal ({cycle})"))),
                        ("CloseDate", date(cycle_date(cycle))),
                        ("Type", text(&sc.renewal_type)),
                        ("TwoCheckout_Subscription_Ref__c", text(&sub.reference)),
                        ("Account", t.account()),
                        ("StageName", text(&sc.closed_lost_stage)),
                    ];
                    f.extend(amount_fields(cfg, *amount, *currency, rate));
                    let mut f = fields(f);
                    if let Some(d) = at {
                        f.insert(
                            "CloseDate".into(),
                            json!(d.date().format("%Y-%m-%d").to_string()),
                        );
                    }
                    out.push(t.intent(
                        "Opportunity",
                        RecordKey::external(&cfg.external_ids.order, &renewal_key(sub, cycle)),
                        f,
                    ));
                }
            }
            Lifecycle::Dunning { .. } => {
                out.extend(super::dunning::plan_item(cfg, sub, &t, key, item));
            }
            Lifecycle::Trial { .. } => {
                let new = created.iter().any(|k| k == key);
                out.extend(super::trials::plan_item(cfg, sub, customer, item, new));
            }
            Lifecycle::Expired { .. } => {}
        }
    }
    out
}

/// The renewal Opportunity key (`"<subscription>:<cycle>"`) of the paid order `refno`, and the
/// fields the subscriptions flow sets on it over the order mapping: `Name`, `Type`,
/// `TwoCheckout_Subscription_Ref__c`.
pub fn paid_overrides(
    cfg: &FlowsConfig,
    sub: &SubscriptionRecord,
    refno: &str,
) -> Option<(String, BTreeMap<String, Value>)> {
    sub.lifecycle.values().find_map(|item| match item {
        Lifecycle::Paid {
            cycle,
            number,
            refno: r,
            conversion,
            product,
            ..
        } if r == refno => {
            let product = product.as_deref().unwrap_or("subscription");
            let name = if *conversion {
                format!("{product} (converted from trial)")
            } else {
                format!("{product} renewal #{number} ({cycle})")
            };
            let kind = if *conversion {
                "New Business"
            } else {
                cfg.subscriptions.renewal_type.as_str()
            };
            Some((
                renewal_key(sub, cycle),
                fields(vec![
                    ("Name", text(name)),
                    ("Type", text(kind)),
                    ("TwoCheckout_Subscription_Ref__c", text(&sub.reference)),
                ]),
            ))
        }
        _ => None,
    })
}

/// Fields of the (not yet paid) renewal Opportunity of `cycle`: name, type, close date (the
/// expiry), expected amount, subscription link, Account.
fn renewal_opportunity_fields(
    cfg: &FlowsConfig,
    sub: &SubscriptionRecord,
    cycle: &str,
    rate: Option<Decimal>,
    t: &Target<'_>,
) -> BTreeMap<String, Value> {
    let mut f = vec![
        ("Name", text(format!("{} renewal ({cycle})", product(sub)))),
        ("CloseDate", date(cycle_date(cycle))),
        ("Type", text(&cfg.subscriptions.renewal_type)),
        ("TwoCheckout_Subscription_Ref__c", text(&sub.reference)),
        ("Account", t.account()),
    ];
    f.extend(amount_fields(cfg, sub.recurring_amount, sub.currency, rate));
    fields(f)
}

/// A renewal that is due: the open renewal Opportunity and, above the value threshold, a
/// Task for the account owner.
#[derive(Debug, Clone, PartialEq)]
pub struct RenewalDue {
    /// `"<subscription>:<cycle>"`: the Opportunity's key and the marker that it was raised.
    pub key: String,
    /// The intents.
    pub intents: Vec<RecordIntent>,
}

/// The renewal-due work for `sub` on `today` (pure; the scheduler job calls it for every
/// subscription and skips keys it already raised). `order_rate` is the rate of
/// [`SubscriptionRecord::rate_order`]. None when the subscription is not live, not renewing
/// within `renewal_due_days`, a test, or already paid for the coming cycle.
pub fn renewal_due(
    cfg: &FlowsConfig,
    sub: &SubscriptionRecord,
    order_rate: Option<Decimal>,
    today: NaiveDate,
) -> Option<RenewalDue> {
    let sc = &cfg.subscriptions;
    if !sc.enabled || !sub.is_live() || (sub.test && !cfg.sync_test_orders) {
        return None;
    }
    let expiry = sub.expiration?.date();
    let days = (expiry - today).num_days();
    if days < 0 || days > i64::from(sc.renewal_due_days) {
        return None;
    }
    let cycle = crate::ledger::subscription::cycle_key(sub.expiration?);
    if sub.lifecycle.contains_key(&format!("paid:{cycle}"))
        || sub.lifecycle.contains_key(&format!("cancel:{cycle}"))
    {
        return None;
    }
    let t = Target::new(cfg, sub, None);
    let mut opp = renewal_opportunity_fields(cfg, sub, &cycle, order_rate, &t);
    opp.insert("StageName".into(), json!(sc.renewal_due_stage));
    let key = renewal_key(sub, &cycle);
    let mut intents = vec![t.intent(
        "Opportunity",
        RecordKey::external(&cfg.external_ids.order, &key),
        opp,
    )];
    let value = base_value(cfg, sub.recurring_amount, sub.currency, order_rate);
    if value.is_some_and(|v| v >= sc.task_value_threshold) {
        intents.push(t.activity(
            false,
            &format!("renewal_due:{}:{cycle}", sub.reference),
            fields(vec![
                (
                    "Subject",
                    text(format!("Renewal due: subscription {}", sub.reference)),
                ),
                (
                    "Description",
                    text(format!(
                        "Subscription {} ({}) renews on {cycle}.\nValue per cycle: {}",
                        sub.reference,
                        product(sub),
                        money_text(sub.recurring_amount, sub.currency)
                    )),
                ),
                ("Status", text("Not Started")),
                ("Priority", text("Normal")),
                ("ActivityDate", date(Some(expiry))),
                ("OwnerId", opt_text(sc.sales_owner.as_deref())),
            ]),
        ));
    }
    for i in &mut intents {
        i.priority = Priority::Rollup;
    }
    Some(RenewalDue { key, intents })
}
