//! Subscriptions in the ledger: one [`SubscriptionRecord`] per 2Checkout subscription
//! reference (`IPN_LICENSE_REF[]` = LCN `LICENSE_CODE` = REST `SubscriptionReference`; on the
//! legacy INS platform the recurring sale's `sale_id`, ASSUMED to be the closest equivalent).
//!
//! # Facts, then derivation
//!
//! A subscription is told about by three sources that arrive in any order: the IPNs of the
//! orders that carry its licence (the first purchase, renewals with `ORIGINAL_REFNOEXT[]`, a
//! trial's sign-up and its conversion), LCNs (snapshots of its state: `STATUS`, `DISABLED`,
//! `EXPIRATION_DATE`, `LICENSE_TYPE`, the dispatch reason, product, quantity and next renewal
//! price) and legacy INS recurring messages. The record keeps these **facts** in sets keyed by
//! what identifies them (order `REFNO`, the delivery's event id), so applying a notification
//! twice changes nothing and the set never depends on arrival order.
//!
//! Everything else — status, plan, amounts, expiry, auto-renew flag, renewal count, and the
//! [`Lifecycle`] items the flows act on — is **derived** by folding the facts in the time order
//! of the notifications themselves (`IPN_DATE`, `DATE_UPDATED`, `sale_date_placed`), ties broken
//! by content, never by event id (event ids follow arrival order). So the derived record after
//! any permutation of the same notifications is identical: out-of-order delivery (an LCN
//! before its IPN, a cancellation before the renewal that preceded it) converges.
//!
//! # Cycle keys
//!
//! A billing cycle is identified by the date its period starts (`YYYY-MM-DD`), a fact every
//! notification of that period carries: the renewal order's `IPN_LICENSE_START[]`, the
//! `EXPIRATION_DATE` of an LCN sent during the previous period (a past-due LCN, a cancellation).
//! A counter ("the 3rd renewal") would depend on which notifications have arrived so far; the
//! date does not. Legacy INS cycles are the installment number (`I<n>`, from
//! `item_rec_install_billed_1`: a failure reports the installments billed so far, so the failing
//! one is `n + 1`; a success reports the installment it billed). A renewal order without a
//! licence start falls back on its `REFNO` (`R<refno>`).
//!
//! ASSUMED (the reference marks these UNCONFIRMED): LCN fields `DISPATCH_REASON`,
//! `PRODUCT_CODE`, `PRODUCT_NAME`, `QUANTITY`, `RECURRING_ENABLED`, `NEXT_RENEWAL_PRICE` (net of
//! tax, per cycle); that a plan change (upgrade / downgrade) is an LCN whose product or quantity
//! differs from the plan before it; that the recurring amount of an order is the licence line's
//! `IPN_PRICE[] × IPN_QTY[] − IPN_DISCOUNT[]` (net of tax).

use std::collections::BTreeMap;

use chrono::{Datelike, Months, NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use twocheckout::money::Currency;
use twocheckout::notification::{
    DispatchReason, InsMessageType, Ipn, LicenseType, Notification, OrderStatus, SubscriptionStatus,
};

use super::{clean, fx};

// ---------------------------------------------------------------------------------
// Facts

/// What one order (`REFNO`) said about the subscription: the data of its best notification
/// (highest status rank, then time), for the licence line of this subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionOrder {
    /// `REFNO`.
    pub refno: String,
    /// Status rank of the notification the data came from.
    pub rank: u8,
    /// Its `IPN_DATE` (else complete / payment / sale date).
    pub at: Option<NaiveDateTime>,
    /// Event id of that notification (dedup only; never used for ordering).
    pub event_id: i64,
    /// `COMPLETE` (or `REFUND`) seen: the period was paid.
    pub completed: bool,
    /// `REVERSED` or `CANCELED` seen: the payment does not count.
    pub voided: bool,
    /// Renewal order (non-empty `ORIGINAL_REFNOEXT[]`).
    pub renewal: bool,
    /// The licence line is a `TRIAL`.
    pub trial: bool,
    /// Customer key of the order.
    pub customer_key: Option<String>,
    /// `IPN_PID[]` / `IPN_LICENSE_PROD[]`.
    pub product_id: Option<String>,
    /// `IPN_PCODE[]`.
    pub product_code: Option<String>,
    /// `IPN_PNAME[]`.
    pub product_name: Option<String>,
    /// `IPN_QTY[]`.
    pub quantity: Option<i64>,
    /// Net amount of the licence line (price × quantity − discount), rounded.
    pub amount: Option<Decimal>,
    /// `CURRENCY`.
    pub currency: Option<Currency>,
    /// `IPN_LICENSE_START[]`.
    pub start: Option<NaiveDateTime>,
    /// `IPN_LICENSE_EXP[]`.
    pub expiration: Option<NaiveDateTime>,
    /// `IPN_LICENSE_LIFETIME[]`.
    pub lifetime: bool,
    /// `PAYMETHOD`, else `PAYMETHOD_CODE`.
    pub payment_method: Option<String>,
    /// Close date: complete, else payment, else sale date.
    pub close_date: Option<NaiveDate>,
}

/// One LCN: the subscription's state as 2Checkout saw it at `DATE_UPDATED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LcnSnapshot {
    /// `DATE_UPDATED`.
    pub at: Option<NaiveDateTime>,
    /// `STATUS`, canonical spelling.
    pub status: Option<String>,
    /// Dispatch reason, canonical spelling.
    pub dispatch_reason: Option<String>,
    /// `EXPIRATION_DATE`.
    pub expiration: Option<NaiveDateTime>,
    /// `DISABLED`.
    pub disabled: Option<bool>,
    /// `RECURRING_ENABLED` (ASSUMED).
    pub recurring_enabled: Option<bool>,
    /// `LICENSE_TYPE`.
    pub license_type: Option<String>,
    /// `CHANGED_BY`.
    pub changed_by: Option<String>,
    /// `PRODUCT_CODE` (ASSUMED).
    pub product_code: Option<String>,
    /// `PRODUCT_NAME` (ASSUMED).
    pub product_name: Option<String>,
    /// `QUANTITY` (ASSUMED).
    pub quantity: Option<i64>,
    /// `NEXT_RENEWAL_PRICE`, rounded (ASSUMED).
    pub next_price: Option<Decimal>,
    /// `NEXT_RENEWAL_CURRENCY`.
    pub currency: Option<Currency>,
    /// Customer key of the notification.
    pub customer_key: Option<String>,
}

/// What a legacy INS recurring message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallmentOutcome {
    /// `RECURRING_INSTALLMENT_SUCCESS`.
    Success,
    /// `RECURRING_INSTALLMENT_FAILED`.
    Failed,
    /// `RECURRING_STOPPED`.
    Stopped,
    /// `RECURRING_RESTARTED`.
    Restarted,
    /// `RECURRING_COMPLETE`.
    Complete,
}

/// One legacy INS recurring message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallmentFact {
    /// The message's time (`sale_date_placed` is the sale's, so the `timestamp` is parsed when
    /// possible, else `sale_date_placed`).
    pub at: Option<NaiveDateTime>,
    /// What happened.
    pub outcome: InstallmentOutcome,
    /// The installment concerned (see the module doc).
    pub installment: Option<u32>,
    /// `invoice_id`.
    pub invoice_id: Option<String>,
    /// Invoice amount in the customer currency, else the list currency, rounded.
    pub amount: Option<Decimal>,
    /// Its currency.
    pub currency: Option<Currency>,
    /// `payment_type`.
    pub payment_type: Option<String>,
    /// Months per cycle from `item_recurrence_1` (`1 Month`, `1 Year`).
    pub cycle_months: Option<u32>,
    /// `item_name_1`.
    pub product_name: Option<String>,
    /// `item_id_1`.
    pub product_code: Option<String>,
    /// Customer key of the notification.
    pub customer_key: Option<String>,
}

// ---------------------------------------------------------------------------------
// Derived lifecycle

/// Direction of a plan change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanDirection {
    /// More value per cycle (or more seats when amounts are unknown).
    Upgrade,
    /// Less value per cycle.
    Downgrade,
}

/// Something that happened to a subscription, derived from its facts; the flows turn each into
/// Salesforce records keyed by the item's key in [`SubscriptionRecord::lifecycle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum Lifecycle {
    /// A paid renewal-type order (`ORIGINAL_REFNOEXT[]`): a renewal, or a trial's conversion.
    /// Key `paid:<cycle>`.
    Paid {
        /// Cycle key (period start date).
        cycle: String,
        /// 1 for the first renewal-type payment, in cycle order.
        number: u32,
        /// The order.
        refno: String,
        /// Net amount of the licence line.
        amount: Option<Decimal>,
        /// Currency.
        currency: Option<Currency>,
        /// Close date.
        close_date: Option<NaiveDate>,
        /// Payment method.
        payment_method: Option<String>,
        /// The first paid order after a trial (not a renewal).
        conversion: bool,
        /// Product name (else code) of the order.
        product: Option<String>,
    },
    /// Product or quantity changed with a different value. Key `plan:<YYYYMMDDHHMMSS>`.
    PlanChanged {
        /// When (the LCN's `DATE_UPDATED`).
        at: Option<NaiveDateTime>,
        /// Up or down.
        direction: PlanDirection,
        /// Product before.
        from_product: Option<String>,
        /// Product after.
        to_product: Option<String>,
        /// Quantity before.
        from_quantity: Option<i64>,
        /// Quantity after.
        to_quantity: Option<i64>,
        /// Amount per cycle before.
        from_amount: Option<Decimal>,
        /// Amount per cycle after.
        to_amount: Option<Decimal>,
        /// Currency of the amounts.
        currency: Option<Currency>,
    },
    /// Auto-renewal switched off or the subscription disabled. Key `cancel:<cycle>` where the
    /// cycle is the renewal that will not happen (the expiration date at the time).
    Canceled {
        /// Cycle key of the lost renewal.
        cycle: String,
        /// When.
        at: Option<NaiveDateTime>,
        /// `disabled`, `auto_renewal_off`, `cancellation_scheduled`, `recurring_stopped`.
        reason: String,
        /// `CHANGED_BY`.
        changed_by: Option<String>,
        /// Auto-renewal was switched back on later in the same cycle.
        reverted_at: Option<NaiveDateTime>,
        /// Product (name, else code) at the time.
        product: Option<String>,
        /// Value per cycle at the time (the renewal that is lost).
        amount: Option<Decimal>,
        /// Its currency.
        currency: Option<Currency>,
    },
    /// A failed charge cycle. Key `dunning:<cycle>`.
    Dunning {
        /// Cycle key.
        cycle: String,
        /// Failed attempts counted by revsync (distinct notifications).
        attempts: u32,
        /// Failed amount.
        amount: Option<Decimal>,
        /// Its currency.
        currency: Option<Currency>,
        /// Payment method.
        payment_method: Option<String>,
        /// First failure.
        first_failed_at: Option<NaiveDateTime>,
        /// Latest failure.
        last_failed_at: Option<NaiveDateTime>,
        /// When a later payment recovered the cycle.
        recovered_at: Option<NaiveDateTime>,
        /// What recovered it (`order <REFNO>`, `installment <n>`).
        recovered_by: Option<String>,
    },
    /// The subscription started as a trial. Key `trial`.
    Trial {
        /// First trial notification.
        started_at: Option<NaiveDateTime>,
        /// Trial product name.
        product: Option<String>,
        /// Trial product code.
        product_code: Option<String>,
        /// Seats.
        quantity: Option<i64>,
        /// First paid order after the trial.
        converted_at: Option<NaiveDateTime>,
        /// That order.
        converted_refno: Option<String>,
    },
    /// The subscription expired. Key `expired:<cycle>`.
    Expired {
        /// Cycle key (the expiration date).
        cycle: String,
        /// When.
        at: Option<NaiveDateTime>,
    },
}

/// One 2Checkout subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    /// Subscription reference.
    pub reference: String,
    /// Orders that carried the licence, by `REFNO`.
    #[serde(default)]
    pub orders: BTreeMap<String, SubscriptionOrder>,
    /// LCNs by event id.
    #[serde(default)]
    pub lcn: BTreeMap<i64, LcnSnapshot>,
    /// Legacy INS recurring messages by event id.
    #[serde(default)]
    pub installments: BTreeMap<i64, InstallmentFact>,
    /// Any notification was a test.
    #[serde(default)]
    pub test: bool,

    // Derived ------------------------------------------------------------------------
    /// Customer key (earliest order's, else earliest LCN's / INS's).
    pub customer_key: Option<String>,
    /// `ACTIVE`, `PAST DUE`, `DISABLED`, `EXPIRED`, `PENDING ACTIVATION`, `CANCELED`.
    pub status: Option<String>,
    /// Product id.
    pub product_id: Option<String>,
    /// Product code.
    pub product_code: Option<String>,
    /// Product name.
    pub product_name: Option<String>,
    /// Seats.
    pub quantity: Option<i64>,
    /// Currently an unconverted trial.
    pub trial: bool,
    /// Start of the current period.
    pub start: Option<NaiveDateTime>,
    /// End of the current period (`9999-12-31` for lifetime).
    pub expiration: Option<NaiveDateTime>,
    /// Lifetime licence.
    pub lifetime: bool,
    /// Months per billing cycle.
    pub billing_cycle_months: Option<u32>,
    /// Amount per cycle, net of tax.
    pub recurring_amount: Option<Decimal>,
    /// Its currency.
    pub currency: Option<Currency>,
    /// The paid order whose currency the recurring amount is in (its FX rate converts the
    /// amount to the base currency; see [`SubscriptionRecord::monthly_base_amount`]).
    pub rate_order: Option<String>,
    /// Paid renewals (trial conversions excluded).
    pub renewal_count: u32,
    /// Auto-renewal on (None: never said).
    pub auto_renew: Option<bool>,
    /// Payment method of the latest paid order.
    pub payment_method: Option<String>,
    /// Cycle keys of failed cycles not recovered yet.
    pub past_due_cycles: Vec<String>,
    /// What happened, by key (see [`Lifecycle`]).
    #[serde(default)]
    pub lifecycle: BTreeMap<String, Lifecycle>,
}

/// Cycle key of a date.
pub fn cycle_key(d: NaiveDateTime) -> String {
    d.date().format("%Y-%m-%d").to_string()
}

fn months_between(start: NaiveDateTime, end: NaiveDateTime) -> Option<u32> {
    if end <= start || end.year() >= 9999 {
        return None;
    }
    (1..=36u32).find(|m| {
        start
            .checked_add_months(Months::new(*m))
            .is_some_and(|t| (t - end).num_days().abs() <= 3)
    })
}

/// Months in a legacy `item_recurrence` text (`1 Month`, `2 Week` is not monthly → None).
fn recurrence_months(s: &str) -> Option<u32> {
    let mut parts = s.split_whitespace();
    let n: u32 = parts.next()?.parse().ok()?;
    let unit = parts.next()?.to_ascii_lowercase();
    if unit.starts_with("month") {
        Some(n)
    } else if unit.starts_with("year") {
        n.checked_mul(12)
    } else {
        None
    }
}

/// One fact in time order.
enum Fact<'a> {
    Order(&'a SubscriptionOrder),
    Lcn(&'a LcnSnapshot),
    Ins(&'a InstallmentFact),
}

impl SubscriptionRecord {
    /// An empty record.
    pub fn new(reference: &str) -> SubscriptionRecord {
        SubscriptionRecord {
            reference: reference.to_owned(),
            orders: BTreeMap::new(),
            lcn: BTreeMap::new(),
            installments: BTreeMap::new(),
            test: false,
            customer_key: None,
            status: None,
            product_id: None,
            product_code: None,
            product_name: None,
            quantity: None,
            trial: false,
            start: None,
            expiration: None,
            lifetime: false,
            billing_cycle_months: None,
            recurring_amount: None,
            currency: None,
            rate_order: None,
            renewal_count: 0,
            auto_renew: None,
            payment_method: None,
            past_due_cycles: Vec::new(),
            lifecycle: BTreeMap::new(),
        }
    }

    /// Active and renewing: not cancelled, disabled, expired or an unconverted trial.
    pub fn is_live(&self) -> bool {
        matches!(self.status.as_deref(), Some("ACTIVE") | Some("PAST DUE"))
            && self.auto_renew != Some(false)
            && !self.trial
            && !self.lifetime
    }

    /// Recurring amount per month in the base currency (exact, not rounded), when the cycle
    /// length, the amount and a rate are known. `order_rate` is the base-currency rate of the
    /// order named by [`SubscriptionRecord::rate_order`] (the caller looks it up); `table` is
    /// consulted when there is none.
    pub fn monthly_base_amount(
        &self,
        base: Currency,
        order_rate: Option<Decimal>,
        table: &fx::FxTable,
    ) -> Option<Decimal> {
        let amount = self.recurring_amount?;
        let currency = self.currency?;
        let months = self.billing_cycle_months.filter(|m| *m > 0)?;
        let rate = if currency == base {
            Decimal::ONE
        } else {
            order_rate.or_else(|| table.rate(currency))?
        };
        Some(amount * rate / Decimal::from(months))
    }

    fn timeline(&self) -> Vec<(Option<NaiveDateTime>, u8, String, Fact<'_>)> {
        let mut t: Vec<(Option<NaiveDateTime>, u8, String, Fact<'_>)> = Vec::new();
        for o in self.orders.values() {
            t.push((o.at, 0, o.refno.clone(), Fact::Order(o)));
        }
        for l in self.lcn.values() {
            let k = serde_json::to_string(l).unwrap_or_default();
            t.push((l.at, 1, k, Fact::Lcn(l)));
        }
        for i in self.installments.values() {
            let k = serde_json::to_string(i).unwrap_or_default();
            t.push((i.at, 2, k, Fact::Ins(i)));
        }
        t.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
        t
    }

    /// Recomputes every derived field from the facts (deterministic, order-free).
    pub fn derive(&mut self) {
        let reference = self.reference.clone();
        let mut d = SubscriptionRecord::new(&reference);
        d.orders = std::mem::take(&mut self.orders);
        d.lcn = std::mem::take(&mut self.lcn);
        d.installments = std::mem::take(&mut self.installments);
        d.test = self.test;

        // Customer key: earliest order's, else earliest LCN / INS.
        d.customer_key = d
            .orders
            .values()
            .filter(|o| o.customer_key.is_some())
            .min_by(|a, b| (a.at, &a.refno).cmp(&(b.at, &b.refno)))
            .and_then(|o| o.customer_key.clone())
            .or_else(|| {
                d.lcn
                    .values()
                    .filter(|l| l.customer_key.is_some())
                    .min_by(|a, b| (a.at, &a.customer_key).cmp(&(b.at, &b.customer_key)))
                    .and_then(|l| l.customer_key.clone())
            })
            .or_else(|| {
                d.installments
                    .values()
                    .filter(|i| i.customer_key.is_some())
                    .min_by(|a, b| (a.at, &a.customer_key).cmp(&(b.at, &b.customer_key)))
                    .and_then(|i| i.customer_key.clone())
            });

        let paid = |o: &SubscriptionOrder| o.completed && !o.voided;
        let trial_started = d.orders.values().any(|o| o.trial)
            || d.lcn
                .values()
                .any(|l| l.license_type.as_deref() == Some("TRIAL"));

        // Renewal-type payments in cycle order.
        let mut renewals: Vec<&SubscriptionOrder> = d
            .orders
            .values()
            .filter(|o| paid(o) && o.renewal && !o.trial)
            .collect();
        renewals.sort_by(|a, b| (a.start, a.at, &a.refno).cmp(&(b.start, b.at, &b.refno)));
        let first_regular_paid = d
            .orders
            .values()
            .filter(|o| paid(o) && !o.trial)
            .min_by(|a, b| (a.start, a.at, &a.refno).cmp(&(b.start, b.at, &b.refno)))
            .map(|o| o.refno.clone());
        let mut lifecycle = BTreeMap::new();
        let mut renewal_count = 0;
        for (i, o) in renewals.iter().enumerate() {
            let conversion = trial_started && first_regular_paid.as_deref() == Some(&o.refno);
            if !conversion {
                renewal_count += 1;
            }
            let cycle = o
                .start
                .map(cycle_key)
                .unwrap_or_else(|| format!("R{}", o.refno));
            lifecycle.insert(
                format!("paid:{cycle}"),
                Lifecycle::Paid {
                    cycle,
                    number: i as u32 + 1,
                    refno: o.refno.clone(),
                    amount: o.amount,
                    currency: o.currency,
                    close_date: o.close_date,
                    payment_method: o.payment_method.clone(),
                    conversion,
                    product: o.product_name.clone().or(o.product_code.clone()),
                },
            );
        }
        d.renewal_count = renewal_count;

        if trial_started {
            let trial_orders = d.orders.values().filter(|o| o.trial);
            let trial_lcns = d
                .lcn
                .values()
                .filter(|l| l.license_type.as_deref() == Some("TRIAL"));
            let started_at = trial_orders
                .clone()
                .filter_map(|o| o.at)
                .chain(trial_lcns.clone().filter_map(|l| l.at))
                .min();
            let first_trial_order = trial_orders
                .clone()
                .min_by(|a, b| (a.at, &a.refno).cmp(&(b.at, &b.refno)));
            let first_trial_lcn = trial_lcns.clone().min_by(|a, b| a.at.cmp(&b.at));
            let converted = first_regular_paid
                .as_ref()
                .and_then(|r| d.orders.get(r))
                .map(|o| (o.at, o.refno.clone()));
            lifecycle.insert(
                "trial".to_owned(),
                Lifecycle::Trial {
                    started_at,
                    product: first_trial_order
                        .and_then(|o| o.product_name.clone())
                        .or_else(|| first_trial_lcn.and_then(|l| l.product_name.clone())),
                    product_code: first_trial_order
                        .and_then(|o| o.product_code.clone())
                        .or_else(|| first_trial_lcn.and_then(|l| l.product_code.clone())),
                    quantity: first_trial_order
                        .and_then(|o| o.quantity)
                        .or_else(|| first_trial_lcn.and_then(|l| l.quantity)),
                    converted_at: converted.as_ref().and_then(|c| c.0),
                    converted_refno: converted.map(|c| c.1),
                },
            );
            d.trial = first_regular_paid.is_none();
        }

        // The fold over time.
        let mut status: Option<String> = None;
        let mut auto_renew: Option<bool> = None;
        let mut plan: (
            Option<String>,
            Option<i64>,
            Option<Decimal>,
            Option<Currency>,
        ) = (None, None, None, None);
        let mut plan_known = false;
        let mut dunning: BTreeMap<String, Lifecycle> = BTreeMap::new();
        let mut canceled: BTreeMap<String, Lifecycle> = BTreeMap::new();
        let mut expired: BTreeMap<String, Lifecycle> = BTreeMap::new();
        for (at, _, _, fact) in self_timeline(&d) {
            let was_status = status.clone();
            let was_auto = auto_renew;
            let mut cancel_reason: Option<&'static str> = None;
            let mut changed_by = None;
            match fact {
                FactOwned::Order(o) => {
                    if !paid(&o) {
                        continue;
                    }
                    status = Some("ACTIVE".into());
                    if o.product_code.is_some() || o.product_name.is_some() {
                        d.product_code = o.product_code.clone().or(d.product_code.take());
                        d.product_name = o.product_name.clone().or(d.product_name.take());
                        d.product_id = o.product_id.clone().or(d.product_id.take());
                    }
                    if o.quantity.is_some() {
                        d.quantity = o.quantity;
                    }
                    if !o.trial && o.amount.is_some() {
                        d.recurring_amount = o.amount;
                        d.currency = o.currency;
                        d.rate_order = Some(o.refno.clone());
                    }
                    if let Some(s) = o.start {
                        d.start = Some(s);
                    }
                    if let Some(e) = o.expiration {
                        d.expiration = Some(e);
                    }
                    d.lifetime = o.lifetime || d.expiration.is_some_and(|e| e.year() >= 9999);
                    if !o.trial {
                        if let Some(m) = o
                            .start
                            .zip(o.expiration)
                            .and_then(|(s, e)| months_between(s, e))
                        {
                            d.billing_cycle_months = Some(m);
                        }
                        if o.payment_method.is_some() {
                            d.payment_method = o.payment_method.clone();
                        }
                    }
                    // A payment recovers the failed cycles it pays for.
                    for item in dunning.values_mut() {
                        if let Lifecycle::Dunning {
                            cycle,
                            recovered_at,
                            recovered_by,
                            ..
                        } = item
                        {
                            let pays = match o.start {
                                Some(s) => !cycle.starts_with('I') && cycle_key(s) >= *cycle,
                                None => true,
                            };
                            if recovered_at.is_none() && pays && !o.trial {
                                *recovered_at = at;
                                *recovered_by = Some(format!("order {}", o.refno));
                            }
                        }
                    }
                    plan = (
                        d.product_code.clone(),
                        d.quantity,
                        d.recurring_amount,
                        d.currency,
                    );
                    plan_known = true;
                }
                FactOwned::Lcn(l) => {
                    let st = l.status.as_deref().map(SubscriptionStatus::from_wire);
                    let reason = l.dispatch_reason.as_deref().map(DispatchReason::from_wire);
                    if let Some(s) = &st {
                        status = Some(
                            match s {
                                SubscriptionStatus::Canceled => "CANCELED",
                                other => other.as_str(),
                            }
                            .to_owned(),
                        );
                    }
                    if reason == Some(DispatchReason::PastDue) {
                        status = Some("PAST DUE".into());
                    }
                    if reason == Some(DispatchReason::Expiration) && st.is_none() {
                        status = Some("EXPIRED".into());
                    }
                    if l.disabled == Some(true)
                        && !matches!(status.as_deref(), Some("EXPIRED") | Some("CANCELED"))
                    {
                        status = Some("DISABLED".into());
                    }
                    if let Some(r) = l.recurring_enabled {
                        auto_renew = Some(r);
                    }
                    match reason {
                        Some(DispatchReason::ScheduledForCancelation) => {
                            auto_renew = Some(false);
                            cancel_reason = Some("cancellation_scheduled");
                        }
                        Some(DispatchReason::RevertCancelation) => auto_renew = Some(true),
                        _ => {}
                    }
                    if l.disabled == Some(true) && status.as_deref() == Some("DISABLED") {
                        auto_renew = Some(false);
                        cancel_reason = Some("disabled");
                    }
                    changed_by = l.changed_by.clone();
                    if let Some(e) = l.expiration {
                        d.expiration = Some(e);
                        d.lifetime = e.year() >= 9999;
                    }
                    // Plan change: product or seats differ from the plan before, with a value.
                    let new_code = l.product_code.clone().or(plan.0.clone());
                    let new_qty = l.quantity.or(plan.1);
                    let (new_amount, new_cur) = match (l.next_price, l.currency) {
                        (Some(p), c) => (Some(p), c.or(plan.3)),
                        (None, _) => (plan.2, plan.3),
                    };
                    let differs = new_code != plan.0 || new_qty != plan.1;
                    if plan_known && differs {
                        let direction = match (plan.2, new_amount) {
                            (Some(a), Some(b)) if plan.3 == new_cur && a != b => Some(if b > a {
                                PlanDirection::Upgrade
                            } else {
                                PlanDirection::Downgrade
                            }),
                            _ => match (plan.1, new_qty) {
                                (Some(a), Some(b)) if a != b => Some(if b > a {
                                    PlanDirection::Upgrade
                                } else {
                                    PlanDirection::Downgrade
                                }),
                                _ => None,
                            },
                        };
                        if let Some(direction) = direction {
                            let key = format!(
                                "plan:{}",
                                at.map(|t| t.format("%Y%m%d%H%M%S").to_string())
                                    .unwrap_or_else(|| "unknown".into())
                            );
                            lifecycle.insert(
                                key,
                                Lifecycle::PlanChanged {
                                    at,
                                    direction,
                                    from_product: d.product_name.clone().or(plan.0.clone()),
                                    to_product: l
                                        .product_name
                                        .clone()
                                        .or(l.product_code.clone())
                                        .or(d.product_name.clone()),
                                    from_quantity: plan.1,
                                    to_quantity: new_qty,
                                    from_amount: plan.2,
                                    to_amount: new_amount,
                                    currency: new_cur,
                                },
                            );
                        }
                    }
                    if l.product_code.is_some() {
                        d.product_code = l.product_code.clone();
                    }
                    if l.product_name.is_some() {
                        d.product_name = l.product_name.clone();
                    }
                    if l.quantity.is_some() {
                        d.quantity = l.quantity;
                    }
                    if l.next_price.is_some() {
                        if l.currency.is_some() && l.currency != d.currency {
                            d.rate_order = None;
                        }
                        d.recurring_amount = l.next_price;
                        d.currency = l.currency.or(d.currency);
                    }
                    plan = (
                        d.product_code.clone(),
                        d.quantity,
                        d.recurring_amount,
                        d.currency,
                    );
                    plan_known = true;
                    if status.as_deref() == Some("PAST DUE") {
                        if let Some(e) = l.expiration {
                            let amount = d.recurring_amount;
                            let currency = d.currency;
                            let pm = d.payment_method.clone();
                            fail(&mut dunning, cycle_key(e), at, amount, currency, pm);
                        }
                    }
                }
                FactOwned::Ins(i) => {
                    if let Some(m) = i.cycle_months {
                        d.billing_cycle_months = Some(m);
                    }
                    if i.product_name.is_some() {
                        d.product_name = i.product_name.clone();
                        d.product_code = i.product_code.clone().or(d.product_code.take());
                    }
                    match i.outcome {
                        InstallmentOutcome::Success => {
                            status = Some("ACTIVE".into());
                            if i.amount.is_some() {
                                d.recurring_amount = i.amount;
                                d.currency = i.currency;
                                d.rate_order = None;
                            }
                            if i.payment_type.is_some() {
                                d.payment_method = i.payment_type.clone();
                            }
                            for item in dunning.values_mut() {
                                if let Lifecycle::Dunning {
                                    cycle,
                                    recovered_at,
                                    recovered_by,
                                    ..
                                } = item
                                {
                                    let n =
                                        cycle.strip_prefix('I').and_then(|n| n.parse::<u32>().ok());
                                    if recovered_at.is_none()
                                        && n.zip(i.installment).is_some_and(|(n, got)| got >= n)
                                    {
                                        *recovered_at = at;
                                        *recovered_by =
                                            i.installment.map(|n| format!("installment {n}"));
                                    }
                                }
                            }
                        }
                        InstallmentOutcome::Failed => {
                            status = Some("PAST DUE".into());
                            let cycle =
                                i.installment.map(|n| format!("I{n}")).unwrap_or_else(|| {
                                    format!("I{}", i.invoice_id.clone().unwrap_or_default())
                                });
                            let pm = i.payment_type.clone().or(d.payment_method.clone());
                            fail(&mut dunning, cycle, at, i.amount, i.currency, pm);
                        }
                        InstallmentOutcome::Stopped => {
                            auto_renew = Some(false);
                            cancel_reason = Some("recurring_stopped");
                        }
                        InstallmentOutcome::Restarted => {
                            auto_renew = Some(true);
                            status = Some("ACTIVE".into());
                        }
                        InstallmentOutcome::Complete => status = Some("EXPIRED".into()),
                    }
                }
            }
            // Cancellation: auto-renew went off, or the subscription got disabled.
            let turned_off = auto_renew == Some(false) && was_auto != Some(false);
            let disabled_now = matches!(status.as_deref(), Some("DISABLED") | Some("CANCELED"))
                && !matches!(was_status.as_deref(), Some("DISABLED") | Some("CANCELED"));
            if turned_off || disabled_now {
                let cycle = d
                    .expiration
                    .map(cycle_key)
                    .unwrap_or_else(|| "open".to_owned());
                let reason = cancel_reason.unwrap_or(if disabled_now {
                    "disabled"
                } else {
                    "auto_renewal_off"
                });
                canceled
                    .entry(format!("cancel:{cycle}"))
                    .or_insert(Lifecycle::Canceled {
                        cycle,
                        at,
                        reason: reason.to_owned(),
                        changed_by,
                        reverted_at: None,
                        product: d.product_name.clone().or(d.product_code.clone()),
                        amount: d.recurring_amount,
                        currency: d.currency,
                    });
            } else if auto_renew == Some(true) && was_auto == Some(false) {
                for item in canceled.values_mut() {
                    if let Lifecycle::Canceled {
                        cycle, reverted_at, ..
                    } = item
                    {
                        let current = d.expiration.map(cycle_key);
                        if reverted_at.is_none() && current.as_deref() == Some(cycle.as_str()) {
                            *reverted_at = at;
                        }
                    }
                }
            }
            if status.as_deref() == Some("EXPIRED") && was_status.as_deref() != Some("EXPIRED") {
                let cycle = d
                    .expiration
                    .map(cycle_key)
                    .unwrap_or_else(|| "open".to_owned());
                expired
                    .entry(format!("expired:{cycle}"))
                    .or_insert(Lifecycle::Expired { cycle, at });
            }
        }
        d.status = status;
        d.auto_renew = auto_renew;
        d.past_due_cycles = dunning
            .values()
            .filter_map(|l| match l {
                Lifecycle::Dunning {
                    cycle,
                    recovered_at: None,
                    ..
                } => Some(cycle.clone()),
                _ => None,
            })
            .collect();
        for (k, v) in dunning {
            lifecycle.insert(format!("dunning:{}", dunning_cycle(&v).unwrap_or(&k)), v);
        }
        lifecycle.extend(canceled);
        lifecycle.extend(expired);
        d.lifecycle = lifecycle;
        *self = d;
    }
}

fn dunning_cycle(l: &Lifecycle) -> Option<&String> {
    match l {
        Lifecycle::Dunning { cycle, .. } => Some(cycle),
        _ => None,
    }
}

fn fail(
    dunning: &mut BTreeMap<String, Lifecycle>,
    cycle: String,
    at: Option<NaiveDateTime>,
    amount: Option<Decimal>,
    currency: Option<Currency>,
    payment_method: Option<String>,
) {
    let entry = dunning.entry(cycle.clone()).or_insert(Lifecycle::Dunning {
        cycle,
        attempts: 0,
        amount,
        currency,
        payment_method: payment_method.clone(),
        first_failed_at: at,
        last_failed_at: at,
        recovered_at: None,
        recovered_by: None,
    });
    if let Lifecycle::Dunning {
        attempts,
        amount: a,
        currency: c,
        payment_method: pm,
        last_failed_at,
        recovered_at,
        ..
    } = entry
    {
        // A failure after a recovery of the same cycle is not possible on 2Checkout's side;
        // count it anyway (the cycle is open again).
        if recovered_at.is_some() {
            *recovered_at = None;
        }
        *attempts += 1;
        *last_failed_at = at.max(*last_failed_at);
        if amount.is_some() {
            *a = amount;
            *c = currency;
        }
        if payment_method.is_some() {
            *pm = payment_method;
        }
    }
}

/// The timeline as owned facts (so the fold can mutate the record it reads from).
enum FactOwned {
    Order(SubscriptionOrder),
    Lcn(LcnSnapshot),
    Ins(InstallmentFact),
}

fn self_timeline(r: &SubscriptionRecord) -> Vec<(Option<NaiveDateTime>, u8, String, FactOwned)> {
    r.timeline()
        .into_iter()
        .map(|(at, k, s, f)| {
            let owned = match f {
                Fact::Order(o) => FactOwned::Order(o.clone()),
                Fact::Lcn(l) => FactOwned::Lcn(l.clone()),
                Fact::Ins(i) => FactOwned::Ins(i.clone()),
            };
            (at, k, s, owned)
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Applying notifications

/// True when the INS message concerns a recurring sale (it touches a subscription).
pub fn ins_is_recurring(t: &InsMessageType) -> bool {
    matches!(
        t,
        InsMessageType::RecurringInstallmentSuccess
            | InsMessageType::RecurringInstallmentFailed
            | InsMessageType::RecurringStopped
            | InsMessageType::RecurringRestarted
            | InsMessageType::RecurringComplete
    )
}

fn ipn_fact(
    ipn: &Ipn,
    reference: &str,
    event_id: i64,
    at: Option<NaiveDateTime>,
    customer_key: Option<String>,
) -> Option<SubscriptionOrder> {
    let item = ipn.items.iter().find(|i| {
        i.license
            .as_ref()
            .is_some_and(|l| l.reference.as_deref() == Some(reference))
    })?;
    let lic = item.license.as_ref()?;
    let currency = ipn.currency;
    let amount = item.unit_price.map(|p| {
        let qty = Decimal::from(item.quantity.unwrap_or(1));
        let gross = p.amount * qty - item.discount.map_or(Decimal::ZERO, |d| d.amount);
        match currency {
            Some(c) => fx::round(gross, c),
            None => gross,
        }
    });
    Some(SubscriptionOrder {
        refno: ipn.reference.to_string(),
        rank: ipn.status.rank(),
        at,
        event_id,
        completed: matches!(ipn.status, OrderStatus::Complete | OrderStatus::Refund),
        voided: matches!(ipn.status, OrderStatus::Reversed | OrderStatus::Canceled),
        renewal: ipn.is_renewal(),
        trial: lic.license_type == Some(LicenseType::Trial),
        customer_key,
        product_id: lic.product.clone().or(item.product_id.clone()),
        product_code: item.code.clone(),
        product_name: item.name.clone(),
        quantity: item.quantity,
        amount,
        currency,
        start: lic.start,
        expiration: lic.expiration,
        lifetime: lic.lifetime,
        payment_method: clean(&ipn.payment.label).or(clean(&ipn.payment.code)),
        close_date: ipn
            .complete_date
            .or(ipn.payment_date)
            .or(ipn.sale_date)
            .map(|d| d.date()),
    })
}

/// Merges one notification into `record` (already keyed by `reference`) and re-derives it.
pub fn apply(
    record: &mut SubscriptionRecord,
    n: &Notification,
    event_id: i64,
    at: Option<NaiveDateTime>,
) {
    let customer_key = n.customer_key();
    match n {
        Notification::Ipn(ipn) => {
            let Some(new) = ipn_fact(ipn, &record.reference, event_id, at, customer_key) else {
                return;
            };
            match record.orders.get_mut(&new.refno) {
                None => {
                    record.orders.insert(new.refno.clone(), new);
                }
                Some(old) => {
                    let completed = old.completed || new.completed;
                    let voided = old.voided || new.voided;
                    // Refund / reversal notifications carry negative amounts: they never
                    // replace the order's own data.
                    let better = new.rank < OrderStatus::Refund.rank()
                        && (new.rank, new.at, new.event_id) > (old.rank, old.at, old.event_id);
                    if better {
                        *old = new;
                    }
                    old.completed = completed;
                    old.voided = voided;
                }
            }
        }
        Notification::Lcn(l) => {
            record.lcn.entry(event_id).or_insert_with(|| LcnSnapshot {
                at,
                status: l.status.as_ref().map(|s| s.as_str().to_owned()),
                dispatch_reason: l.dispatch_reason.as_ref().map(|s| s.as_str().to_owned()),
                expiration: l.expiration,
                disabled: l.disabled,
                recurring_enabled: l.recurring_enabled,
                license_type: l.license_type.as_ref().map(|t| t.as_str().to_owned()),
                changed_by: l.changed_by.as_ref().map(|c| c.as_str().to_owned()),
                product_code: clean(&l.product_code),
                product_name: clean(&l.product_name),
                quantity: l.quantity,
                next_price: l.next_renewal_price.map(|m| m.round().amount),
                currency: l.next_renewal_price.map(|m| m.currency),
                customer_key,
            });
        }
        Notification::Ins(ins) => {
            let outcome = match ins.message_type {
                InsMessageType::RecurringInstallmentSuccess => InstallmentOutcome::Success,
                InsMessageType::RecurringInstallmentFailed => InstallmentOutcome::Failed,
                InsMessageType::RecurringStopped => InstallmentOutcome::Stopped,
                InsMessageType::RecurringRestarted => InstallmentOutcome::Restarted,
                InsMessageType::RecurringComplete => InstallmentOutcome::Complete,
                _ => return,
            };
            let item = ins.items.first();
            let billed = item.and_then(|i| i.rec_install_billed);
            let installment = match outcome {
                InstallmentOutcome::Failed => billed.map(|b| b + 1),
                _ => billed,
            };
            let amount = ins.invoice_cust_amount.or(ins.invoice_list_amount);
            let time = ins
                .timestamp
                .as_deref()
                .and_then(|t| t.get(..19))
                .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").ok())
                .or(at);
            record
                .installments
                .entry(event_id)
                .or_insert_with(|| InstallmentFact {
                    at: time,
                    outcome,
                    installment,
                    invoice_id: ins.invoice_id.clone(),
                    amount: amount.map(|m| m.round().amount),
                    currency: amount.map(|m| m.currency),
                    payment_type: clean(&ins.payment_type),
                    cycle_months: item
                        .and_then(|i| i.recurrence.as_deref())
                        .and_then(recurrence_months),
                    product_name: item.and_then(|i| i.name.clone()),
                    product_code: item.and_then(|i| i.id.clone()),
                    customer_key,
                });
        }
    }
    record.test |= n.is_test();
    record.derive();
}

#[cfg(test)]
#[path = "subscription_tests.rs"]
pub(crate) mod tests;
