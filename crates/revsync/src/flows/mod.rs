//! Flows: pure functions from a ledger update to Salesforce record intents (DESIGN §1, §3, §8).
//!
//! [`Flows::plan`] looks at what changed ([`LedgerUpdate`]) and at the records after the
//! change ([`LedgerState`]) and returns the desired state of every Salesforce record concerned,
//! each addressed by an external id revsync owns, parents first. No I/O, no clock: the same
//! input always gives the same intents, so replaying an event is harmless.
//!
//! Flows implemented here:
//! - **orders**: a completed order (`COMPLETE`, or `PAYMENT_AUTHORIZED` when
//!   `orders.on_payment_authorized`) upserts the Account and Contact (by customer key) and the
//!   Opportunity (by `REFNO`, stage closed-won). Refunds and reversals update the same
//!   Opportunity (same key: never a new one). A chargeback upserts a Case keyed by the event
//!   key `chargeback:<REFNO>`, linked to the Account and Contact.
//! - **customers**: any event that changes a customer (first seen, data changed, purchase
//!   history changed) upserts the Account and Contact with the mapped fields.
//!
//! Which Salesforce fields are written is configuration: `[flows.mapping.<Object>]` tables
//! of `Field = "template"` are merged over the defaults ([`default_mappings`]); an empty
//! template removes a default field. Key fields and parent references are not templated:
//! they are what makes every write a replayable upsert.
//!
//! The Opportunity amount is the **net** amount (total + refunds, refunds negative), in the
//! order currency with `CurrencyIsoCode` in a multi-currency org, in the base currency with
//! `Original_Currency__c` / `Original_Amount__c` in a single-currency org.
//! `Refunded_Amount__c` is negative or zero; the gross total is `Amount − Refunded_Amount__c`.
//!
//! What this module must not know: storage, HTTP, Salesforce ids or API calls.

pub mod context;
pub mod dunning;
pub mod mapping;
pub mod rollups;
pub mod subscriptions;
pub mod trials;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use twocheckout::money::Currency;

use crate::intent::{IntentSet, Priority, RecordIntent, RecordKey};
use crate::ledger::{
    CustomerRecord, FxTable, LedgerChange, LedgerContext, LedgerState, LedgerUpdate, OrderRecord,
};

pub use context::{ContextSettings, DecimalValue, VARIABLES};
pub use mapping::{decimal_to_json, MappingError, ObjectMapping, Templates};

fn yes() -> bool {
    true
}

/// External-id field names (DESIGN §8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalIds {
    /// Account and Contact: the customer key.
    pub customer: String,
    /// Opportunity: the order reference.
    pub order: String,
    /// Task and Case: the event key.
    pub event: String,
    /// Lead: the trial reference.
    pub trial: String,
}

impl Default for ExternalIds {
    fn default() -> Self {
        ExternalIds {
            customer: "TwoCheckout_Customer_Ref__c".into(),
            order: "TwoCheckout_Order_Ref__c".into(),
            event: "TwoCheckout_Event_Key__c".into(),
            trial: "TwoCheckout_Trial_Ref__c".into(),
        }
    }
}

/// `[flows.orders]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersFlowConfig {
    /// Switch the flow on or off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Opportunity stage of a paid order.
    pub closed_won_stage: String,
    /// Also book the Opportunity on `PAYMENT_AUTHORIZED` (not only `COMPLETE`).
    pub on_payment_authorized: bool,
    /// Open a Case on a chargeback.
    #[serde(default = "yes")]
    pub chargeback_case: bool,
}

impl Default for OrdersFlowConfig {
    fn default() -> Self {
        OrdersFlowConfig {
            enabled: true,
            closed_won_stage: "Closed Won".into(),
            on_payment_authorized: false,
            chargeback_case: true,
        }
    }
}

/// `[flows.customers]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CustomersFlowConfig {
    /// Switch the flow on or off.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for CustomersFlowConfig {
    fn default() -> Self {
        CustomersFlowConfig { enabled: true }
    }
}

/// `[flows.mapping.<Object>]`: overrides merged over [`default_mappings`]; an empty template
/// removes a default field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingOverrides {
    /// Account fields.
    #[serde(rename = "Account")]
    pub account: BTreeMap<String, String>,
    /// Contact fields.
    #[serde(rename = "Contact")]
    pub contact: BTreeMap<String, String>,
    /// Opportunity fields.
    #[serde(rename = "Opportunity")]
    pub opportunity: BTreeMap<String, String>,
    /// Case fields (chargebacks).
    #[serde(rename = "Case")]
    pub case: BTreeMap<String, String>,
}

/// `[flows]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// The org has multi-currency enabled (`CurrencyIsoCode` exists).
    pub multi_currency: bool,
    /// Currency of converted amounts and rollups.
    pub base_currency: Currency,
    /// Configured rates to the base currency (used when 2Checkout's own are not usable).
    pub fx: FxTable,
    /// Also sync test orders (`TEST_ORDER=1`); off by default.
    pub sync_test_orders: bool,
    /// External-id field names.
    pub external_ids: ExternalIds,
    /// Orders flow.
    pub orders: OrdersFlowConfig,
    /// Customers flow.
    pub customers: CustomersFlowConfig,
    /// Field mapping overrides.
    pub mapping: MappingOverrides,
    /// Subscriptions flow.
    pub subscriptions: subscriptions::SubscriptionsFlowConfig,
    /// Dunning flow.
    pub dunning: dunning::DunningFlowConfig,
    /// Trials flow.
    pub trials: trials::TrialsFlowConfig,
    /// Rollups flow.
    pub rollups: rollups::RollupsFlowConfig,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig {
            multi_currency: false,
            base_currency: Currency::from_code("USD").expect("USD is in the ISO 4217 table"),
            fx: FxTable::default(),
            sync_test_orders: false,
            external_ids: ExternalIds::default(),
            orders: OrdersFlowConfig::default(),
            customers: CustomersFlowConfig::default(),
            mapping: MappingOverrides::default(),
            subscriptions: Default::default(),
            dunning: Default::default(),
            trials: Default::default(),
            rollups: Default::default(),
        }
    }
}

impl FlowsConfig {
    /// The ledger's view of this configuration.
    pub fn ledger_context(&self) -> LedgerContext {
        LedgerContext {
            base_currency: self.base_currency,
            fx: self.fx.clone(),
        }
    }
}

fn m(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The default field mappings for a stock org plus the custom fields of DESIGN §8:
/// `(Account, Contact, Opportunity, Case)`.
pub fn default_mappings() -> MappingOverrides {
    MappingOverrides {
        account: m(&[
            ("Name", "{{ customer.account_name }}"),
            ("Phone", "{{ customer.phone }}"),
            ("BillingStreet", "{{ customer.street }}"),
            ("BillingCity", "{{ customer.city }}"),
            ("BillingState", "{{ customer.state }}"),
            ("BillingPostalCode", "{{ customer.zip }}"),
            ("BillingCountry", "{{ customer.country or customer.country_code }}"),
            ("Last_Purchase_Date__c", "{{ customer.last_purchase_date }}"),
            ("Order_Count__c", "{{ customer.order_count }}"),
        ]),
        contact: m(&[
            ("FirstName", "{{ customer.contact_first_name }}"),
            ("LastName", "{{ customer.contact_last_name }}"),
            ("Email", "{{ customer.email }}"),
            ("Phone", "{{ customer.phone }}"),
            ("MailingStreet", "{{ customer.street }}"),
            ("MailingCity", "{{ customer.city }}"),
            ("MailingState", "{{ customer.state }}"),
            ("MailingPostalCode", "{{ customer.zip }}"),
            ("MailingCountry", "{{ customer.country or customer.country_code }}"),
        ]),
        opportunity: m(&[
            ("Name", "2Checkout order {{ order.refno }}"),
            ("StageName", "{{ opportunity.stage }}"),
            ("CloseDate", "{{ order.close_date }}"),
            ("Amount", "{{ opportunity.amount }}"),
            ("CurrencyIsoCode", "{{ opportunity.currency_iso_code }}"),
            ("Original_Currency__c", "{{ opportunity.original_currency }}"),
            ("Original_Amount__c", "{{ opportunity.original_amount }}"),
            ("Tax_Amount__c", "{{ opportunity.tax }}"),
            ("Refunded_Amount__c", "{{ opportunity.refunded }}"),
            ("Payment_Method__c", "{{ order.payment_method }}"),
            ("TwoCheckout_Subscription_Ref__c", "{{ order.subscription_ref }}"),
            ("Type", "{{ order.type }}"),
        ]),
        case: m(&[
            ("Subject", "Chargeback on 2Checkout order {{ order.refno }}"),
            (
                "Description",
                "2Checkout reported a chargeback on order {{ order.refno }}.\n\
                 Resolution: {{ chargeback.resolution }}\n\
                 Reason: {{ chargeback.reason_code or \"not given\" }}\n\
                 {% if order.total %}Order total: {{ order.total }} {{ order.currency }}\n{% endif %}\
                 Customer: {{ customer.account_name }}{% if customer.email %} <{{ customer.email }}>{% endif %}",
            ),
            ("Priority", "High"),
        ]),
    }
}

fn merged(
    defaults: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = defaults.clone();
    for (k, v) in overrides {
        if v.trim().is_empty() {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Sample records with every field set, for checking templates at start-up.
fn full_samples() -> (CustomerRecord, OrderRecord) {
    use crate::ledger::{
        ChargebackRecord, FxConversion, FxSource, OrderLine, PaymentMethodRecord, Stamp,
    };
    use rust_decimal::Decimal;
    let dt = chrono::NaiveDate::from_ymd_opt(2024, 1, 2).and_then(|d| d.and_hms_opt(3, 4, 5));
    let t = |s: &str| Some(s.to_owned());
    let usd = Currency::from_code("USD").expect("USD");
    let eur = Currency::from_code("EUR").expect("EUR");
    let mut c = CustomerRecord::new("77001");
    c.avangate_reference = t("77001");
    c.external_reference = t("ext-1");
    c.first_name = t("Ada");
    c.last_name = t("Lovelace");
    c.company = t("Analytical Engines Ltd");
    c.email = t("ada@example.com");
    c.phone = t("+44 20 0000 0000");
    c.address1 = t("1 Engine Street");
    c.address2 = t("Floor 2");
    c.city = t("London");
    c.state = t("Greater London");
    c.zip = t("N1 1AA");
    c.country = t("United Kingdom");
    c.country_code = t("GB");
    c.language = t("en");
    c.first_seen = dt;
    c.last_seen = dt;
    c.purchases.insert("1001".into(), dt.map(|d| d.date()));
    let mut o = OrderRecord::new("1001");
    o.external_reference = t("ext-order");
    o.order_number = t("42");
    o.customer_key = t("77001");
    o.status = t("COMPLETE");
    o.currency = Some(eur);
    o.total = Some(Decimal::new(11900, 2));
    o.tax = Some(Decimal::new(1900, 2));
    o.refunded = Decimal::new(-1000, 2);
    o.net = Some(Decimal::new(10900, 2));
    o.lines = Some(vec![OrderLine {
        product_id: t("1"),
        name: t("Product"),
        code: t("P1"),
        sku: t("SKU1"),
        quantity: Some(1),
        unit_price: Some(Decimal::new(10000, 2)),
        vat: Some(Decimal::new(1900, 2)),
        vat_rate: Some(Decimal::new(19, 0)),
        discount: Some(Decimal::ZERO),
        total: Some(Decimal::new(11900, 2)),
        subscription_ref: t("SUB1"),
        license_type: t("REGULAR"),
    }]);
    o.payment_method = Some(PaymentMethodRecord {
        label: t("Visa/MasterCard"),
        code: t("CCVISAMC"),
        card_type: t("visa"),
        card_last_digits: t("1111"),
    });
    o.sale_date = dt;
    o.payment_date = dt;
    o.complete_date = dt;
    o.renewal = Some(false);
    o.subscription_refs = Some(vec!["SUB1".into()]);
    o.trial = Some(false);
    o.fraud_status = t("APPROVED");
    o.chargeback = Some(ChargebackRecord {
        resolution: "OPEN".into(),
        reason_code: t("FRAUD"),
        opened_at: dt,
        opened_event_id: 1,
        stamp: Stamp {
            rank: 50,
            at: dt,
            event_id: 1,
        },
    });
    o.fx = Some(FxConversion {
        base_currency: usd,
        rate: Decimal::new(11, 1),
        source: FxSource::ConfiguredTable,
        total: Some(Decimal::new(13090, 2)),
        tax: Some(Decimal::new(2090, 2)),
        refunded: Decimal::new(-1100, 2),
        net: Some(Decimal::new(11990, 2)),
    });
    (c, o)
}

/// The compiled flows.
#[derive(Debug)]
pub struct Flows {
    config: FlowsConfig,
    templates: Templates,
    account: ObjectMapping,
    contact: ObjectMapping,
    opportunity: ObjectMapping,
    case: ObjectMapping,
}

impl Flows {
    /// Compiles every template of the effective mapping and checks it against the documented
    /// variables and against full and empty sample data (strict undefined behaviour).
    pub fn new(config: &FlowsConfig) -> Result<Flows, MappingError> {
        if config.orders.closed_won_stage.trim().is_empty() {
            return Err(MappingError::Config {
                key: "orders.closed_won_stage".into(),
                message: "must not be empty".into(),
            });
        }
        for (key, v) in [
            ("external_ids.customer", &config.external_ids.customer),
            ("external_ids.order", &config.external_ids.order),
            ("external_ids.event", &config.external_ids.event),
            ("external_ids.trial", &config.external_ids.trial),
        ] {
            let ok = v.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(MappingError::Config {
                    key: key.into(),
                    message: format!("{v:?} is not a Salesforce field name"),
                });
            }
        }
        let settings = ContextSettings {
            multi_currency: config.multi_currency,
            base_currency: config.base_currency,
            closed_won_stage: &config.orders.closed_won_stage,
        };
        let (fc, fo) = full_samples();
        let samples = [
            ("full", context::build(Some(&fc), Some(&fo), &settings)),
            ("empty", context::build(None, None, &settings)),
        ];
        let defaults = default_mappings();
        let o = &config.mapping;
        let mut templates = Templates::new();
        let account =
            templates.compile("Account", &merged(&defaults.account, &o.account), &samples)?;
        let contact =
            templates.compile("Contact", &merged(&defaults.contact, &o.contact), &samples)?;
        let opportunity = templates.compile(
            "Opportunity",
            &merged(&defaults.opportunity, &o.opportunity),
            &samples,
        )?;
        let case = templates.compile("Case", &merged(&defaults.case, &o.case), &samples)?;
        Ok(Flows {
            config: config.clone(),
            templates,
            account,
            contact,
            opportunity,
            case,
        })
    }

    /// The configuration the flows were built from.
    pub fn config(&self) -> &FlowsConfig {
        &self.config
    }

    fn settings(&self) -> ContextSettings<'_> {
        ContextSettings {
            multi_currency: self.config.multi_currency,
            base_currency: self.config.base_currency,
            closed_won_stage: &self.config.orders.closed_won_stage,
        }
    }

    fn order_qualifies(&self, o: &OrderRecord) -> bool {
        o.is_completed() || (self.config.orders.on_payment_authorized && o.is_authorized())
    }

    /// The intents for one ledger update (pure). `after` is the state after the update
    /// ([`LedgerState::after`]). Intents are listed parents first: Account, Contact,
    /// Opportunity, Case.
    pub fn plan(&self, update: &LedgerUpdate, after: &LedgerState) -> IntentSet {
        let cfg = &self.config;
        let order = after.order.as_ref();
        let sub = after.subscription.as_ref();
        let test = update.test || order.is_some_and(|o| o.test) || sub.is_some_and(|s| s.test);
        if test && !cfg.sync_test_orders {
            return IntentSet::default();
        }
        let customer = after.customer.as_ref().filter(|c| {
            order
                .and_then(|o| o.customer_key.as_deref())
                .is_none_or(|k| k == c.key)
        });

        let order_changed = update.order.is_some()
            && update.changes.iter().any(|c| {
                matches!(
                    c,
                    LedgerChange::OrderCompleted { .. }
                        | LedgerChange::OrderUpdated { .. }
                        | LedgerChange::OrderStatusChanged { .. }
                        | LedgerChange::OrderRefunded { .. }
                        | LedgerChange::OrderReversed { .. }
                        | LedgerChange::OrderPlaced { .. }
                )
            });
        let chargeback_changed = update
            .changes
            .iter()
            .any(|c| matches!(c, LedgerChange::Chargeback { .. }));
        let customer_changed = update.customer.is_some()
            && update.changes.iter().any(|c| {
                matches!(
                    c,
                    LedgerChange::CustomerSeen { .. }
                        | LedgerChange::CustomerChanged { .. }
                        | LedgerChange::PurchaseHistoryChanged { .. }
                )
            });

        // Subscriptions, dunning and trials (see `subscriptions`): renewal orders are booked
        // by cycle, and nothing but the Lead is written for an unconverted trial.
        let trial_context = cfg.trials.enabled
            && (order.is_some_and(|o| o.trial == Some(true)) || sub.is_some_and(|s| s.trial));
        let lifecycle = match (sub, &update.subscription) {
            (Some(s), Some(_)) => update
                .changes
                .iter()
                .find_map(|c| match c {
                    LedgerChange::SubscriptionChanged { items, created, .. } => {
                        Some(subscriptions::plan(cfg, s, customer, order, items, created))
                    }
                    _ => None,
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let lifecycle_needs_customer = lifecycle
            .iter()
            .any(|i| !matches!(i.sobject.as_str(), "Lead" | "CampaignMember"));
        let renewal_by_cycle =
            cfg.subscriptions.enabled && order.is_some_and(|o| o.renewal == Some(true));

        let orders_on = cfg.orders.enabled && !trial_context;
        let opportunity_due = order_changed && order.is_some_and(|o| self.order_qualifies(o));
        let want_opportunity = orders_on && !renewal_by_cycle && opportunity_due;
        // A paid renewal order: the order mapping under the renewal-cycle key.
        let renewal_opportunity = match (order, sub) {
            (Some(o), Some(s)) if renewal_by_cycle && opportunity_due && !trial_context => {
                subscriptions::paid_overrides(cfg, s, &o.refno)
            }
            _ => None,
        };
        let want_case = orders_on
            && cfg.orders.chargeback_case
            && chargeback_changed
            && order.is_some_and(|o| o.chargeback.is_some());
        let want_customer = want_opportunity
            || want_case
            || (cfg.customers.enabled && customer_changed && !trial_context)
            || lifecycle_needs_customer
            || renewal_opportunity.is_some();
        if !(want_opportunity || want_case || want_customer) && lifecycle.is_empty() {
            return IntentSet::default();
        }

        let ctx = context::build(customer, order, &self.settings());
        let ids = &cfg.external_ids;
        let customer_key = customer.map(|c| c.key.clone());
        let partition = customer_key
            .clone()
            .or_else(|| order.map(|o| o.refno.clone()))
            .unwrap_or_default();
        let account_ref = customer_key.as_ref().map(|k| {
            let mut m = serde_json::Map::new();
            m.insert(ids.customer.clone(), serde_json::Value::String(k.clone()));
            serde_json::Value::Object(m)
        });
        let mut intents = Vec::new();
        let mut push =
            |sobject: &str, key: RecordKey, fields: BTreeMap<String, serde_json::Value>| {
                intents.push(RecordIntent {
                    sobject: sobject.to_owned(),
                    key,
                    fields,
                    partition: partition.clone(),
                    priority: Priority::Payment,
                });
            };

        if let (true, Some(key)) = (want_customer, &customer_key) {
            push(
                "Account",
                RecordKey::external(&ids.customer, key),
                self.templates.render(&self.account, &ctx),
            );
            let mut contact = self.templates.render(&self.contact, &ctx);
            if let Some(r) = &account_ref {
                contact.insert("Account".into(), r.clone());
            }
            push("Contact", RecordKey::external(&ids.customer, key), contact);
        }
        if let (true, Some(o)) = (want_opportunity, order) {
            let mut opp = self.templates.render(&self.opportunity, &ctx);
            if let Some(r) = &account_ref {
                opp.insert("Account".into(), r.clone());
            }
            push(
                "Opportunity",
                RecordKey::external(&ids.order, &o.refno),
                opp,
            );
        }
        if let (true, Some(o)) = (want_case, order) {
            let mut case = self.templates.render(&self.case, &ctx);
            if let Some(r) = &account_ref {
                case.insert("Account".into(), r.clone());
                case.insert("Contact".into(), r.clone());
            }
            push(
                "Case",
                RecordKey::external(&ids.event, &format!("chargeback:{}", o.refno)),
                case,
            );
        }
        if let Some((key, overrides)) = renewal_opportunity {
            let mut opp = self.templates.render(&self.opportunity, &ctx);
            opp.extend(overrides);
            if let Some(r) = &account_ref {
                opp.insert("Account".into(), r.clone());
            }
            push("Opportunity", RecordKey::external(&ids.order, &key), opp);
        }
        intents.extend(lifecycle);
        IntentSet { intents }
    }
}

#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod tests;
