//! The rollups flow (DESIGN §1, §6): per Account, from revsync's own ledger — lifetime value,
//! average order value, last purchase date, order count and MRR, in the base currency.
//!
//! - **Orders counted**: completed (`COMPLETE`, or refunded after it), not test (unless
//!   `sync_test_orders`), not trial sign-ups.
//! - **Lifetime value**: the sum of the orders' net amounts in the base currency
//!   ([`crate::ledger::FxConversion::net`], already rounded per order, refunds negative), so it
//!   matches the Opportunities to the minor unit. An order without a rate to the base currency
//!   is counted in `order_count` but not in the values; [`AccountRollup::unconverted_orders`]
//!   says how many.
//! - **Average order value**: lifetime value / converted orders, rounded half away from zero to
//!   the base currency's minor unit.
//! - **MRR**: the sum over live subscriptions (active or past due, auto-renewing, not trials,
//!   not lifetime) of the recurring amount × rate / months per cycle, rounded once at the end.
//!   The rate is the base-currency rate of the order the amount came from, else the
//!   configured table; subscriptions without a cycle length or rate are left out.
//!
//! Rollups are written as `Priority::Rollup` intents, one Account field set per intent, so the
//! sink sends them as sObject Collections (or a Bulk 2.0 job above its threshold). Only Accounts
//! whose values changed since the last written values are enqueued (the job keeps those values
//! as ledger records of kind `rollup`). The Account must exist (created by the customers /
//! orders flows): a rollup never creates one.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::intent::{Priority, RecordIntent, RecordKey};
use crate::ledger::subscription::SubscriptionRecord;
use crate::ledger::{fx, OrderRecord};

use super::mapping::decimal_to_json;
use super::FlowsConfig;

fn yes() -> bool {
    true
}

/// `[flows.rollups]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollupsFlowConfig {
    /// Switch the flow on or off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Cron expression with seconds (`sec min hour day month weekday`), UTC.
    pub schedule: String,
    /// Account field of the lifetime value.
    pub lifetime_value_field: String,
    /// Account field of the average order value.
    pub average_order_value_field: String,
    /// Account field of the MRR.
    pub mrr_field: String,
    /// Account field of the last purchase date.
    pub last_purchase_date_field: String,
    /// Account field of the order count.
    pub order_count_field: String,
}

impl Default for RollupsFlowConfig {
    fn default() -> Self {
        RollupsFlowConfig {
            enabled: true,
            schedule: "0 0 3 * * *".into(),
            lifetime_value_field: "Lifetime_Value__c".into(),
            average_order_value_field: "Average_Order_Value__c".into(),
            mrr_field: "MRR__c".into(),
            last_purchase_date_field: "Last_Purchase_Date__c".into(),
            order_count_field: "Order_Count__c".into(),
        }
    }
}

/// The rollup values of one Account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRollup {
    /// Customer key (the Account's external id).
    pub customer_key: String,
    /// Sum of net amounts, base currency.
    pub lifetime_value: Decimal,
    /// Lifetime value / converted orders (None without one).
    pub average_order_value: Option<Decimal>,
    /// Latest close date.
    pub last_purchase_date: Option<NaiveDate>,
    /// Completed orders.
    pub order_count: u64,
    /// Monthly recurring revenue, base currency.
    pub mrr: Decimal,
    /// Orders without a rate to the base currency (not in the values).
    pub unconverted_orders: u64,
}

/// Computes every Account's rollup from the ledger (pure).
pub fn compute(
    cfg: &FlowsConfig,
    orders: &[OrderRecord],
    subscriptions: &[SubscriptionRecord],
) -> BTreeMap<String, AccountRollup> {
    let base = cfg.base_currency;
    let empty = |key: &str| AccountRollup {
        customer_key: key.to_owned(),
        lifetime_value: Decimal::ZERO,
        average_order_value: None,
        last_purchase_date: None,
        order_count: 0,
        mrr: Decimal::ZERO,
        unconverted_orders: 0,
    };
    let mut out: BTreeMap<String, AccountRollup> = BTreeMap::new();
    let mut converted: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_refno: BTreeMap<&str, &OrderRecord> = BTreeMap::new();
    for o in orders {
        by_refno.insert(&o.refno, o);
        let Some(key) = o.customer_key.as_deref() else {
            continue;
        };
        if !o.is_completed() || (o.test && !cfg.sync_test_orders) || o.trial == Some(true) {
            continue;
        }
        let r = out.entry(key.to_owned()).or_insert_with(|| empty(key));
        r.order_count += 1;
        r.last_purchase_date = r.last_purchase_date.max(o.close_date());
        match o
            .fx
            .as_ref()
            .filter(|f| f.base_currency == base)
            .and_then(|f| f.net)
        {
            Some(net) => {
                r.lifetime_value += net;
                *converted.entry(key.to_owned()).or_default() += 1;
            }
            None => r.unconverted_orders += 1,
        }
    }
    let mut mrr: BTreeMap<String, Decimal> = BTreeMap::new();
    for s in subscriptions {
        let Some(key) = s.customer_key.as_deref() else {
            continue;
        };
        if !s.is_live() || (s.test && !cfg.sync_test_orders) {
            continue;
        }
        let order_rate = s
            .rate_order
            .as_deref()
            .and_then(|r| by_refno.get(r))
            .filter(|o| o.currency == s.currency)
            .and_then(|o| o.fx.as_ref())
            .filter(|f| f.base_currency == base)
            .map(|f| f.rate);
        if let Some(m) = s.monthly_base_amount(base, order_rate, &cfg.fx) {
            *mrr.entry(key.to_owned()).or_default() += m;
        }
    }
    for (key, m) in mrr {
        out.entry(key.clone()).or_insert_with(|| empty(&key)).mrr = fx::round(m, base);
    }
    for (key, r) in &mut out {
        r.lifetime_value = fx::round(r.lifetime_value, base);
        r.average_order_value = converted
            .get(key)
            .filter(|n| **n > 0)
            .map(|n| fx::round(r.lifetime_value / Decimal::from(*n), base));
    }
    out
}

/// The Account intent that writes `r`.
pub fn intent(cfg: &FlowsConfig, r: &AccountRollup) -> RecordIntent {
    let rc = &cfg.rollups;
    let mut fields = BTreeMap::new();
    fields.insert(
        rc.lifetime_value_field.clone(),
        decimal_to_json(r.lifetime_value),
    );
    if let Some(a) = r.average_order_value {
        fields.insert(rc.average_order_value_field.clone(), decimal_to_json(a));
    }
    fields.insert(rc.mrr_field.clone(), decimal_to_json(r.mrr));
    if let Some(d) = r.last_purchase_date {
        fields.insert(
            rc.last_purchase_date_field.clone(),
            json!(d.format("%Y-%m-%d").to_string()),
        );
    }
    fields.insert(rc.order_count_field.clone(), json!(r.order_count));
    RecordIntent {
        sobject: "Account".into(),
        key: RecordKey::external(&cfg.external_ids.customer, &r.customer_key),
        fields,
        partition: r.customer_key.clone(),
        priority: Priority::Rollup,
    }
}
