//! The ledger: revsync's own model of 2Checkout facts (customers, orders, refunds,
//! chargebacks, money in the original and the base currency).
//!
//! Everything here is pure: [`apply`] takes the records the caller loaded (the keys come from
//! [`touched`]) and one parsed notification, and returns the records that changed plus a list
//! of [`LedgerChange`]s naming what happened. The caller stores the records (as JSON, keyed by
//! kind and key, with optimistic versions) and hands the update to the flows.
//!
//! # Convergence rules
//!
//! Notifications can arrive late, twice, or in any order (a refund before its `COMPLETE`).
//! The final records depend only on the *set* of notifications applied, never on their order,
//! because every part of a record is merged with a commutative, idempotent rule:
//!
//! - **Data fields** (names, address, totals, lines, payment method, dates, FX fields) take the
//!   value of the best notification that carried the field, where "best" is the highest
//!   [`Stamp`]: for orders `(status rank, notification time, event id)` so that a late
//!   `PAYMENT_AUTHORIZED` never overwrites what `COMPLETE` said; for customers
//!   `(notification time, event id)` so that the newest data wins. Each field remembers the
//!   stamp it came from (`sources`), so absent fields never erase present ones.
//! - **Status** only moves forward: the current status is the highest-ranked status seen
//!   ([`OrderStatus::rank`]); `REFUND`, `REVERSED` and `CANCELED` (rank 60) apply even when
//!   they arrive before `COMPLETE`. The history keeps one entry per status, earliest stamp.
//! - **Refunds and reversals** are entries keyed by the event id that carried them, so the
//!   same delivery is never counted twice; refund IPNs never change the order's total.
//!   (Resends of one refund with *new* event ids are the event log's job: it deduplicates
//!   deliveries by semantic fingerprint before they reach the ledger.)
//! - **Derived fields** (current status, refunded, net, base-currency amounts) are recomputed
//!   from the merged facts after every apply.
//!
//! Applying the same notification with the same event id twice changes nothing.
//!
//! # Money
//!
//! Amounts are exact [`Decimal`]s rounded to the currency's ISO 4217 minor unit (half away
//! from zero). Refunds are **negative**: `refunded` is the sum of the (negative) refund and
//! reversal amounts and `net = total + refunded`, so a fully refunded order nets to zero.
//! Base-currency amounts use one rate per order (see [`fx`]): 2Checkout's own FX fields when
//! `PAYOUT_CURRENCY` is the base currency, else the configured table; with no rate the
//! converted amounts are `None` and [`LedgerChange::FxRateMissing`] says so. A rate, once taken
//! from the table, is kept for the order (a later table edit does not rewrite history); a
//! 2Checkout rate always replaces a table rate.
//!
//! What this module must not know: storage, Salesforce, the flows' mapping.

pub mod fx;
pub mod subscription;

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use twocheckout::money::{Currency, Money};
use twocheckout::notification::{
    Customer, InsMessageType, Ipn, LicenseType, Notification, OrderStatus,
};

pub use fx::{FxSource, FxTable};
pub use subscription::{Lifecycle, SubscriptionRecord};

// ---------------------------------------------------------------------------------
// Stamps and field merging

/// Precedence of one notification's data: higher wins. Ordered by `rank` (order status rank
/// for order data, 0 for customer data), then the notification's own time, then event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Status rank of the notification (orders) or 0 (customers).
    pub rank: u8,
    /// The notification's time (`IPN_DATE`, `DATE_UPDATED`, …) when it has one.
    pub at: Option<NaiveDateTime>,
    /// The event-log id of the delivery.
    pub event_id: i64,
}

/// Per-field provenance: field name → stamp of the notification the value came from.
pub type Sources = BTreeMap<String, Stamp>;

struct Merger<'a> {
    sources: &'a mut Sources,
    stamp: Stamp,
    changed: Vec<String>,
}

impl Merger<'_> {
    /// Takes `new` when present and better than the stamp the field already has.
    fn field<T: PartialEq>(&mut self, name: &str, slot: &mut Option<T>, new: Option<T>) {
        let Some(new) = new else { return };
        if self.sources.get(name).is_some_and(|s| *s >= self.stamp) {
            return;
        }
        self.sources.insert(name.to_owned(), self.stamp);
        if slot.as_ref() != Some(&new) {
            *slot = Some(new);
            self.changed.push(name.to_owned());
        }
    }
}

fn min_opt<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    a.max(b)
}

fn clean(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------
// Records

/// One 2Checkout customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    /// `AVANGATE_CUSTOMER_REFERENCE`, else the trimmed lower-cased e-mail (Salesforce
    /// external id of the Account and Contact).
    pub key: String,
    /// `AVANGATE_CUSTOMER_REFERENCE`.
    pub avangate_reference: Option<String>,
    /// `EXTERNAL_CUSTOMER_REFERENCE` (the merchant's id).
    pub external_reference: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Company.
    pub company: Option<String>,
    /// E-mail, trimmed, case as received.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Address line 1.
    pub address1: Option<String>,
    /// Address line 2.
    pub address2: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State / region.
    pub state: Option<String>,
    /// Postal code.
    pub zip: Option<String>,
    /// Country name as sent.
    pub country: Option<String>,
    /// ISO 3166 alpha-2, upper-case.
    pub country_code: Option<String>,
    /// Shopper language.
    pub language: Option<String>,
    /// Earliest notification time that mentioned this customer.
    pub first_seen: Option<NaiveDateTime>,
    /// Latest notification time that mentioned this customer.
    pub last_seen: Option<NaiveDateTime>,
    /// Completed (non-test) orders: `REFNO` → the order's close date.
    #[serde(default)]
    pub purchases: BTreeMap<String, Option<NaiveDate>>,
    /// Provenance of every data field.
    #[serde(default)]
    pub sources: Sources,
}

impl CustomerRecord {
    /// An empty record for `key`.
    pub fn new(key: &str) -> CustomerRecord {
        CustomerRecord {
            key: key.to_owned(),
            avangate_reference: None,
            external_reference: None,
            first_name: None,
            last_name: None,
            company: None,
            email: None,
            phone: None,
            address1: None,
            address2: None,
            city: None,
            state: None,
            zip: None,
            country: None,
            country_code: None,
            language: None,
            first_seen: None,
            last_seen: None,
            purchases: BTreeMap::new(),
            sources: Sources::new(),
        }
    }

    /// The e-mail trimmed and lower-cased.
    pub fn normalized_email(&self) -> Option<String> {
        self.email
            .as_deref()
            .map(|e| e.trim().to_lowercase())
            .filter(|e| !e.is_empty())
    }

    /// "First Last" when any part is present.
    pub fn full_name(&self) -> Option<String> {
        let parts: Vec<&str> = [&self.first_name, &self.last_name]
            .into_iter()
            .filter_map(|p| p.as_deref())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// Number of completed orders.
    pub fn order_count(&self) -> usize {
        self.purchases.len()
    }

    /// Earliest close date of a completed order.
    pub fn first_purchase_date(&self) -> Option<NaiveDate> {
        self.purchases.values().flatten().min().copied()
    }

    /// Latest close date of a completed order.
    pub fn last_purchase_date(&self) -> Option<NaiveDate> {
        self.purchases.values().flatten().max().copied()
    }

    fn merge(&mut self, c: &Customer, stamp: Stamp) -> Vec<String> {
        let mut m = Merger {
            sources: &mut self.sources,
            stamp,
            changed: Vec::new(),
        };
        m.field(
            "avangate_reference",
            &mut self.avangate_reference,
            clean(&c.avangate_reference),
        );
        m.field(
            "external_reference",
            &mut self.external_reference,
            clean(&c.external_reference),
        );
        m.field("first_name", &mut self.first_name, clean(&c.first_name));
        m.field("last_name", &mut self.last_name, clean(&c.last_name));
        m.field("company", &mut self.company, clean(&c.company));
        m.field("email", &mut self.email, clean(&c.email));
        m.field("phone", &mut self.phone, clean(&c.phone));
        m.field("address1", &mut self.address1, clean(&c.address1));
        m.field("address2", &mut self.address2, clean(&c.address2));
        m.field("city", &mut self.city, clean(&c.city));
        m.field("state", &mut self.state, clean(&c.state));
        m.field("zip", &mut self.zip, clean(&c.zip));
        m.field("country", &mut self.country, clean(&c.country));
        m.field(
            "country_code",
            &mut self.country_code,
            clean(&c.country_code).map(|c| c.to_ascii_uppercase()),
        );
        m.field("language", &mut self.language, clean(&c.language));
        let changed = m.changed;
        self.first_seen = min_opt(self.first_seen, stamp.at);
        self.last_seen = max_opt(self.last_seen, stamp.at);
        changed
    }
}

/// One entry of an order's status history (one per status, earliest notification).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    /// Canonical `ORDERSTATUS` spelling.
    pub status: String,
    /// The notification time.
    pub at: Option<NaiveDateTime>,
    /// The event-log id of the delivery.
    pub event_id: i64,
}

/// A refund or reversal amount applied to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundKind {
    /// `ORDERSTATUS=REFUND` (or a non-empty `REFUND_TYPE`).
    Refund,
    /// `ORDERSTATUS=REVERSED`.
    Reversal,
}

/// One refund or reversal, keyed in [`OrderRecord::refunds`] by the event id that carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundEntry {
    /// Refund or reversal.
    pub kind: RefundKind,
    /// The amount, **negative**, rounded to the order currency's minor unit; `None` when the
    /// notification carried no amount (it is then not counted in `refunded`).
    pub amount: Option<Decimal>,
    /// Currency of the amount.
    pub currency: Option<Currency>,
    /// `REFUND_TYPE` as sent (values UNCONFIRMED).
    pub refund_type: Option<String>,
    /// The notification time.
    pub at: Option<NaiveDateTime>,
}

/// Payment-method data of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethodRecord {
    /// `PAYMETHOD`, e.g. `Visa/MasterCard`.
    pub label: Option<String>,
    /// `PAYMETHOD_CODE`, e.g. `CCVISAMC`.
    pub code: Option<String>,
    /// `CARD_TYPE`.
    pub card_type: Option<String>,
    /// `CARD_LAST_DIGITS`.
    pub card_last_digits: Option<String>,
}

/// One product line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// `IPN_PID[]`.
    pub product_id: Option<String>,
    /// `IPN_PNAME[]`.
    pub name: Option<String>,
    /// `IPN_PCODE[]`.
    pub code: Option<String>,
    /// `IPN_SKU[]`.
    pub sku: Option<String>,
    /// `IPN_QTY[]`.
    pub quantity: Option<i64>,
    /// `IPN_PRICE[]`, rounded.
    pub unit_price: Option<Decimal>,
    /// `IPN_VAT[]`, rounded.
    pub vat: Option<Decimal>,
    /// `IPN_VAT_RATE[]` percent.
    pub vat_rate: Option<Decimal>,
    /// `IPN_DISCOUNT[]`, rounded.
    pub discount: Option<Decimal>,
    /// `IPN_TOTAL[]`, rounded.
    pub total: Option<Decimal>,
    /// `IPN_LICENSE_REF[]`.
    pub subscription_ref: Option<String>,
    /// `IPN_LICENSE_TYPE[]` (`REGULAR` / `TRIAL`).
    pub license_type: Option<String>,
}

/// 2Checkout's own FX fields of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoCheckoutFx {
    /// `FX_RATE`, order currency → payout currency.
    pub rate: Option<Decimal>,
    /// `FX_MARKUP` percent.
    pub markup: Option<Decimal>,
    /// `PAYOUT_CURRENCY`.
    pub payout_currency: Option<Currency>,
    /// `PAYABLE_AMOUNT` in the payout currency.
    pub payable: Option<Decimal>,
}

/// The order's amounts in the base currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FxConversion {
    /// The base currency.
    pub base_currency: Currency,
    /// Order currency → base currency.
    pub rate: Decimal,
    /// Where the rate came from.
    pub source: FxSource,
    /// `total × rate`, rounded in the base currency.
    pub total: Option<Decimal>,
    /// `tax × rate`, rounded.
    pub tax: Option<Decimal>,
    /// `refunded × rate`, rounded (negative or zero).
    pub refunded: Decimal,
    /// `total + refunded` in the base currency (exact to the minor unit).
    pub net: Option<Decimal>,
}

/// Chargeback state of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargebackRecord {
    /// Latest `CHARGEBACK_RESOLUTION` (value list UNCONFIRMED).
    pub resolution: String,
    /// Latest `CHARGEBACK_REASON_CODE`.
    pub reason_code: Option<String>,
    /// Time of the first chargeback notification.
    pub opened_at: Option<NaiveDateTime>,
    /// Event id of the first chargeback notification.
    pub opened_event_id: i64,
    /// Stamp of the notification the current resolution came from.
    pub stamp: Stamp,
}

/// A failed charge recorded on an order (legacy INS `RECURRING_INSTALLMENT_FAILED`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailure {
    /// `invoice_id`.
    pub invoice_id: Option<String>,
    /// Failed amount when the message carries one.
    pub amount: Option<Money>,
    /// The notification time.
    pub at: Option<NaiveDateTime>,
}

/// One 2Checkout order (`REFNO`; legacy INS `sale_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// `REFNO`.
    pub refno: String,
    /// `REFNOEXT`.
    pub external_reference: Option<String>,
    /// `ORDERNO`.
    pub order_number: Option<String>,
    /// Key of the customer ([`CustomerRecord::key`]).
    pub customer_key: Option<String>,
    /// Current status (canonical spelling), the highest-ranked one seen.
    pub status: Option<String>,
    /// One entry per status seen, ordered by rank then time.
    pub status_history: Vec<StatusEntry>,
    /// `CURRENCY`.
    pub currency: Option<Currency>,
    /// `IPN_TOTALGENERAL` of the best non-refund notification, rounded.
    pub total: Option<Decimal>,
    /// Sum of `IPN_VAT[]` and `IPN_SHIPPING_TAX`, rounded.
    pub tax: Option<Decimal>,
    /// Refunds and reversals by event id (the ids already applied).
    pub refunds: BTreeMap<i64, RefundEntry>,
    /// Sum of the known refund and reversal amounts: **negative** or zero.
    pub refunded: Decimal,
    /// `total + refunded` (None while the total is unknown).
    pub net: Option<Decimal>,
    /// Product lines.
    pub lines: Option<Vec<OrderLine>>,
    /// Payment method.
    pub payment_method: Option<PaymentMethodRecord>,
    /// `SALEDATE`.
    pub sale_date: Option<NaiveDateTime>,
    /// `PAYMENTDATE`.
    pub payment_date: Option<NaiveDateTime>,
    /// `COMPLETE_DATE`.
    pub complete_date: Option<NaiveDateTime>,
    /// `TIMEZONE_OFFSET` of the dates above.
    pub timezone_offset: Option<String>,
    /// Renewal order (non-empty `ORIGINAL_REFNOEXT[]`).
    pub renewal: Option<bool>,
    /// `ORIGINAL_REFNOEXT[]`.
    pub original_external_references: Option<Vec<String>>,
    /// Subscription references of the lines.
    pub subscription_refs: Option<Vec<String>>,
    /// Any line has licence type `TRIAL`.
    pub trial: Option<bool>,
    /// `FRAUD_STATUS`.
    pub fraud_status: Option<String>,
    /// `TEST_ORDER=1` on any notification of the order.
    pub test: bool,
    /// Chargeback activity.
    pub chargeback: Option<ChargebackRecord>,
    /// 2Checkout's FX fields.
    pub fx_two_checkout: Option<TwoCheckoutFx>,
    /// Base-currency amounts; `None` when no rate is known (or no currency yet).
    pub fx: Option<FxConversion>,
    /// Failed charges by event id.
    #[serde(default)]
    pub payment_failures: BTreeMap<i64, PaymentFailure>,
    /// Provenance of every data field.
    #[serde(default)]
    pub sources: Sources,
}

impl OrderRecord {
    /// An empty record for `refno`.
    pub fn new(refno: &str) -> OrderRecord {
        OrderRecord {
            refno: refno.to_owned(),
            external_reference: None,
            order_number: None,
            customer_key: None,
            status: None,
            status_history: Vec::new(),
            currency: None,
            total: None,
            tax: None,
            refunds: BTreeMap::new(),
            refunded: Decimal::ZERO,
            net: None,
            lines: None,
            payment_method: None,
            sale_date: None,
            payment_date: None,
            complete_date: None,
            timezone_offset: None,
            renewal: None,
            original_external_references: None,
            subscription_refs: None,
            trial: None,
            fraud_status: None,
            test: false,
            chargeback: None,
            fx_two_checkout: None,
            fx: None,
            payment_failures: BTreeMap::new(),
            sources: Sources::new(),
        }
    }

    /// The current status, typed.
    pub fn order_status(&self) -> Option<OrderStatus> {
        self.status.as_deref().map(OrderStatus::from_wire)
    }

    /// True when the status history contains `status`.
    pub fn has_seen(&self, status: &OrderStatus) -> bool {
        self.status_history
            .iter()
            .any(|e| OrderStatus::from_wire(&e.status) == *status)
    }

    /// True once the order was paid and fulfilled: `COMPLETE` was seen, or `REFUND` (only
    /// possible after `COMPLETE`, reference §1.3) — and the order's own data (its total) is
    /// known, i.e. the non-refund notification has arrived.
    pub fn is_completed(&self) -> bool {
        (self.has_seen(&OrderStatus::Complete) || self.has_seen(&OrderStatus::Refund))
            && self.total.is_some()
    }

    /// True when `PAYMENT_AUTHORIZED` (or a later status) was seen and the total is known.
    pub fn is_authorized(&self) -> bool {
        self.total.is_some()
            && self.status_history.iter().any(|e| {
                let s = OrderStatus::from_wire(&e.status);
                s.rank() >= OrderStatus::PaymentAuthorized.rank()
                    && !matches!(s, OrderStatus::Canceled | OrderStatus::Reversed)
            })
    }

    /// The order's close date: `COMPLETE_DATE`, else `PAYMENTDATE`, else `SALEDATE` (in
    /// 2Checkout's time zone, `TIMEZONE_OFFSET`).
    pub fn close_date(&self) -> Option<NaiveDate> {
        self.complete_date
            .or(self.payment_date)
            .or(self.sale_date)
            .map(|d| d.date())
    }

    /// Total as [`Money`].
    pub fn total_money(&self) -> Option<Money> {
        Some(Money::new(self.total?, self.currency?))
    }

    fn status_changes(&mut self, status: &OrderStatus, stamp: Stamp) {
        if matches!(status, OrderStatus::Unknown(_)) {
            return;
        }
        let name = status.as_str().to_owned();
        match self.status_history.iter_mut().find(|e| e.status == name) {
            Some(e) => {
                if (stamp.at, stamp.event_id) < (e.at, e.event_id) {
                    e.at = stamp.at;
                    e.event_id = stamp.event_id;
                }
            }
            None => self.status_history.push(StatusEntry {
                status: name,
                at: stamp.at,
                event_id: stamp.event_id,
            }),
        }
        self.status_history.sort_by(|a, b| {
            let ra = OrderStatus::from_wire(&a.status).rank();
            let rb = OrderStatus::from_wire(&b.status).rank();
            (ra, a.at, a.event_id, &a.status).cmp(&(rb, b.at, b.event_id, &b.status))
        });
        // Forward only: the highest rank wins; among equal ranks the latest notification.
        self.status = self.status_history.last().map(|e| e.status.clone());
    }

    fn merge_ipn_data(&mut self, ipn: &Ipn, stamp: Stamp) -> Vec<String> {
        let currency = ipn.currency;
        let r = |m: Option<Money>| m.map(|m| m.round().amount);
        let lines: Vec<OrderLine> = ipn
            .items
            .iter()
            .map(|i| OrderLine {
                product_id: i.product_id.clone(),
                name: i.name.clone(),
                code: i.code.clone(),
                sku: i.sku.clone(),
                quantity: i.quantity,
                unit_price: r(i.unit_price),
                vat: r(i.vat),
                vat_rate: i.vat_rate.map(|v| v.normalize()),
                discount: r(i.discount),
                total: r(i.total),
                subscription_ref: i.license.as_ref().and_then(|l| l.reference.clone()),
                license_type: i
                    .license
                    .as_ref()
                    .and_then(|l| l.license_type.as_ref())
                    .map(|t| t.as_str().to_owned()),
            })
            .collect();
        let trial = ipn.items.iter().any(|i| {
            i.license
                .as_ref()
                .is_some_and(|l| l.license_type == Some(LicenseType::Trial))
        });
        let subs: Vec<String> = ipn
            .license_references()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let pm = &ipn.payment;
        let payment = PaymentMethodRecord {
            label: clean(&pm.label),
            code: clean(&pm.code),
            card_type: clean(&pm.card_type),
            card_last_digits: clean(&pm.card_last_digits),
        };
        let any_pm = payment.label.is_some() || payment.code.is_some();
        let fx = TwoCheckoutFx {
            rate: ipn.fx.rate,
            markup: ipn.fx.markup,
            payout_currency: ipn.fx.payout_currency,
            payable: ipn.fx.payable.map(|m| m.round().amount),
        };
        let any_fx = fx.rate.is_some() || fx.payout_currency.is_some();

        let mut m = Merger {
            sources: &mut self.sources,
            stamp,
            changed: Vec::new(),
        };
        m.field(
            "external_reference",
            &mut self.external_reference,
            clean(&ipn.external_reference),
        );
        m.field(
            "order_number",
            &mut self.order_number,
            clean(&ipn.order_number).filter(|n| n != "0"),
        );
        m.field("currency", &mut self.currency, currency);
        m.field("total", &mut self.total, r(ipn.total));
        m.field("tax", &mut self.tax, r(ipn.tax_total()));
        m.field(
            "lines",
            &mut self.lines,
            (!lines.is_empty()).then_some(lines),
        );
        m.field(
            "payment_method",
            &mut self.payment_method,
            any_pm.then_some(payment),
        );
        m.field("sale_date", &mut self.sale_date, ipn.sale_date);
        m.field("payment_date", &mut self.payment_date, ipn.payment_date);
        m.field("complete_date", &mut self.complete_date, ipn.complete_date);
        m.field(
            "timezone_offset",
            &mut self.timezone_offset,
            clean(&ipn.timezone_offset),
        );
        m.field("renewal", &mut self.renewal, Some(ipn.is_renewal()));
        m.field(
            "original_external_references",
            &mut self.original_external_references,
            (!ipn.original_external_references.is_empty())
                .then(|| ipn.original_external_references.clone()),
        );
        m.field(
            "subscription_refs",
            &mut self.subscription_refs,
            (!subs.is_empty()).then_some(subs),
        );
        m.field("trial", &mut self.trial, Some(trial));
        m.field(
            "fraud_status",
            &mut self.fraud_status,
            ipn.fraud_status.as_ref().map(|f| f.as_str().to_owned()),
        );
        m.field(
            "fx_two_checkout",
            &mut self.fx_two_checkout,
            any_fx.then_some(fx),
        );
        m.changed
    }

    /// Recomputes the derived fields (refunded, net, base-currency amounts).
    fn derive(&mut self, ctx: &LedgerContext) {
        self.refunded = self
            .refunds
            .values()
            .filter(|e| e.currency.is_none() || e.currency == self.currency)
            .filter_map(|e| e.amount)
            .sum();
        if let Some(c) = self.currency {
            self.refunded = fx::round(self.refunded, c);
        }
        self.net = self.total.map(|t| t + self.refunded);
        self.fx = self.conversion(ctx);
    }

    fn conversion(&self, ctx: &LedgerContext) -> Option<FxConversion> {
        let currency = self.currency?;
        let base = ctx.base_currency;
        let (rate, source) = if currency == base {
            (Decimal::ONE, FxSource::SameCurrency)
        } else if let Some(rate) = self
            .fx_two_checkout
            .as_ref()
            .filter(|f| f.payout_currency == Some(base))
            .and_then(|f| fx::two_checkout_rate(f.rate?, f.markup))
        {
            (rate, FxSource::TwoCheckout)
        } else if let Some(prev) = self
            .fx
            .as_ref()
            .filter(|f| f.source == FxSource::ConfiguredTable && f.base_currency == base)
        {
            (prev.rate, FxSource::ConfiguredTable)
        } else {
            (ctx.fx.rate(currency)?, FxSource::ConfiguredTable)
        };
        let conv = |a: Decimal| fx::convert(a, rate, base);
        let total = self.total.and_then(conv);
        let refunded = conv(self.refunded)?;
        Some(FxConversion {
            base_currency: base,
            rate,
            source,
            total,
            tax: self.tax.and_then(conv),
            refunded,
            net: total.map(|t| t + refunded),
        })
    }

    /// True when the order has a currency other than the base currency, and no rate.
    pub fn fx_missing(&self, base: Currency) -> bool {
        self.fx.is_none() && self.currency.is_some_and(|c| c != base)
    }
}

// ---------------------------------------------------------------------------------
// Inputs and outputs

/// The keys of the records a notification touches; the caller loads them before [`apply`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Touched {
    /// Customer key ([`Customer::key`]).
    pub customer: Option<String>,
    /// Order reference (`REFNO`, INS `sale_id`).
    pub order: Option<String>,
    /// Subscription reference (first `IPN_LICENSE_REF[]`, LCN `LICENSE_CODE`).
    pub subscription: Option<String>,
}

/// The records the caller loaded for a notification (`None` = not stored yet).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LedgerState {
    /// The customer named by [`Touched::customer`].
    pub customer: Option<CustomerRecord>,
    /// The order named by [`Touched::order`].
    pub order: Option<OrderRecord>,
    /// The subscription named by [`Touched::subscription`].
    #[serde(default)]
    pub subscription: Option<SubscriptionRecord>,
}

/// Configuration the ledger needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerContext {
    /// Currency rollups and converted amounts are kept in.
    pub base_currency: Currency,
    /// Configured rates to the base currency.
    pub fx: FxTable,
}

/// What happened to the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum LedgerChange {
    /// A customer seen for the first time.
    CustomerSeen {
        /// Customer key.
        key: String,
    },
    /// Customer data changed (field names of [`CustomerRecord`]).
    CustomerChanged {
        /// Customer key.
        key: String,
        /// Changed fields.
        fields: Vec<String>,
    },
    /// A customer's purchase history changed (order count / purchase dates).
    PurchaseHistoryChanged {
        /// Customer key.
        key: String,
    },
    /// An order seen for the first time.
    OrderPlaced {
        /// `REFNO`.
        refno: String,
        /// Status of the first notification.
        status: Option<String>,
    },
    /// The current status moved forward.
    OrderStatusChanged {
        /// `REFNO`.
        refno: String,
        /// Previous status.
        from: Option<String>,
        /// New status.
        to: String,
    },
    /// The order became completed (see [`OrderRecord::is_completed`]).
    OrderCompleted {
        /// `REFNO`.
        refno: String,
    },
    /// Order data (amounts, lines, dates, payment method…) changed without a status change.
    OrderUpdated {
        /// `REFNO`.
        refno: String,
        /// Changed fields of [`OrderRecord`].
        fields: Vec<String>,
    },
    /// A refund was applied.
    OrderRefunded {
        /// `REFNO`.
        refno: String,
        /// The refund, negative; `None` when the notification carried no amount.
        amount: Option<Money>,
        /// Sum of all refunds and reversals so far (negative or zero).
        refunded: Decimal,
    },
    /// A reversal was applied.
    OrderReversed {
        /// `REFNO`.
        refno: String,
        /// The reversed amount, negative.
        amount: Option<Money>,
    },
    /// The order was cancelled.
    OrderCanceled {
        /// `REFNO`.
        refno: String,
    },
    /// Chargeback activity: opened, or its resolution / reason changed.
    Chargeback {
        /// `REFNO`.
        refno: String,
        /// `CHARGEBACK_RESOLUTION`.
        resolution: String,
        /// `CHARGEBACK_REASON_CODE`.
        reason_code: Option<String>,
        /// True for the first chargeback notification of the order.
        opened: bool,
    },
    /// A charge failed (legacy INS `RECURRING_INSTALLMENT_FAILED`).
    PaymentFailed {
        /// The order / sale reference.
        reference: String,
        /// `invoice_id`.
        invoice_id: Option<String>,
    },
    /// A subscription's derived state changed; `items` are the keys of
    /// [`SubscriptionRecord::lifecycle`] entries that are new or changed.
    SubscriptionChanged {
        /// Subscription reference.
        reference: String,
        /// New or changed lifecycle keys.
        items: Vec<String>,
        /// The subset of `items` that are new.
        #[serde(default)]
        created: Vec<String>,
    },
    /// The order's amounts cannot be converted: no rate for its currency.
    FxRateMissing {
        /// `REFNO`.
        refno: String,
        /// Order currency.
        currency: Currency,
        /// Base currency.
        base_currency: Currency,
    },
}

/// The result of [`apply`]: only the records that changed, and what happened.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LedgerUpdate {
    /// The new customer record, when it changed.
    pub customer: Option<CustomerRecord>,
    /// The new order record, when it changed.
    pub order: Option<OrderRecord>,
    /// The new subscription record, when it changed.
    #[serde(default)]
    pub subscription: Option<SubscriptionRecord>,
    /// What happened, in a fixed order (customer, then order).
    pub changes: Vec<LedgerChange>,
    /// The notification was a test (`TEST_ORDER=1`, LCN `TEST=1`, sandbox INS sale).
    pub test: bool,
}

impl LedgerUpdate {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.customer.is_none()
            && self.order.is_none()
            && self.subscription.is_none()
            && self.changes.is_empty()
    }
}

impl LedgerState {
    /// The state after `update`: changed records replace the loaded ones.
    pub fn after(&self, update: &LedgerUpdate) -> LedgerState {
        LedgerState {
            customer: update.customer.clone().or_else(|| self.customer.clone()),
            order: update.order.clone().or_else(|| self.order.clone()),
            subscription: update
                .subscription
                .clone()
                .or_else(|| self.subscription.clone()),
        }
    }
}

// ---------------------------------------------------------------------------------
// touched / apply

/// The keys of the records `n` concerns.
pub fn touched(n: &Notification) -> Touched {
    match n {
        Notification::Ipn(ipn) => Touched {
            customer: n.customer_key(),
            order: Some(ipn.reference.to_string()),
            subscription: ipn.license_references().first().map(|s| (*s).to_owned()),
        },
        Notification::Lcn(lcn) => Touched {
            customer: n.customer_key(),
            order: None,
            subscription: Some(lcn.license_code.to_string()),
        },
        Notification::Ins(ins) => Touched {
            customer: n.customer_key(),
            order: Some(n.reference().to_owned()),
            // Legacy recurring sales: the sale is the subscription (see `subscription`).
            subscription: subscription::ins_is_recurring(&ins.message_type)
                .then(|| n.reference().to_owned()),
        },
    }
}

/// The notification's own time: IPN `IPN_DATE` (else complete / payment / sale date), LCN
/// `DATE_UPDATED`, INS `sale_date_placed`.
pub fn notification_time(n: &Notification) -> Option<NaiveDateTime> {
    match n {
        Notification::Ipn(i) => i
            .ipn_date
            .or(i.complete_date)
            .or(i.payment_date)
            .or(i.sale_date),
        Notification::Lcn(l) => l.date_updated,
        Notification::Ins(i) => i.sale_date_placed,
    }
}

/// Applies one notification (event-log id `event_id`) to the loaded records.
///
/// `state.customer` / `state.order` must be the records named by [`touched`] (or `None`);
/// a loaded record with another key is ignored and a fresh one is started.
pub fn apply(
    state: &LedgerState,
    n: &Notification,
    event_id: i64,
    ctx: &LedgerContext,
) -> LedgerUpdate {
    let keys = touched(n);
    let at = notification_time(n);
    let mut changes = Vec::new();

    // Order first (the customer's purchase history depends on it). Legacy INS messages
    // other than a failed installment do not touch the order (not modelled yet).
    let order_ref = keys.order.as_deref().filter(|_| match n {
        Notification::Ipn(_) => true,
        Notification::Ins(ins) => ins.message_type == InsMessageType::RecurringInstallmentFailed,
        Notification::Lcn(_) => false,
    });
    let mut new_order = None;
    if let Some(refno) = order_ref {
        let before = state.order.as_ref().filter(|o| o.refno == refno);
        let mut order = before.cloned().unwrap_or_else(|| OrderRecord::new(refno));
        let data_changed = match n {
            Notification::Ipn(ipn) => apply_ipn(&mut order, ipn, event_id, at, &keys),
            Notification::Ins(ins) => {
                if order.customer_key.is_none() {
                    order.customer_key = keys.customer.clone();
                }
                order
                    .payment_failures
                    .entry(event_id)
                    .or_insert_with(|| PaymentFailure {
                        invoice_id: ins.invoice_id.clone(),
                        amount: ins.invoice_cust_amount.or(ins.invoice_list_amount),
                        at,
                    });
                Vec::new()
            }
            Notification::Lcn(_) => Vec::new(),
        };
        order.test |= n.is_test();
        order.derive(ctx);
        if before != Some(&order) {
            order_changes(before, &order, data_changed, event_id, ctx, &mut changes);
            new_order = Some(order);
        }
    }
    let order_after = new_order.as_ref().or(state.order.as_ref());

    // Customer.
    let mut new_customer = None;
    if let Some(key) = keys.customer.as_deref() {
        let before = state.customer.as_ref().filter(|c| c.key == key);
        let mut customer = before.cloned().unwrap_or_else(|| CustomerRecord::new(key));
        let stamp = Stamp {
            rank: 0,
            at,
            event_id,
        };
        let fields = customer.merge(n.customer(), stamp);
        let mut history_changed = false;
        if let Some(order) = order_after.filter(|o| o.customer_key.as_deref() == Some(key)) {
            let old = customer.purchases.get(&order.refno).cloned();
            let new = (order.is_completed() && !order.test).then(|| order.close_date());
            if old != new {
                history_changed = true;
                match new {
                    Some(d) => customer.purchases.insert(order.refno.clone(), d),
                    None => customer.purchases.remove(&order.refno),
                };
            }
        }
        let mut customer_changes = Vec::new();
        if before.is_none() {
            customer_changes.push(LedgerChange::CustomerSeen {
                key: key.to_owned(),
            });
        } else if !fields.is_empty() {
            customer_changes.push(LedgerChange::CustomerChanged {
                key: key.to_owned(),
                fields,
            });
        }
        if history_changed {
            customer_changes.push(LedgerChange::PurchaseHistoryChanged {
                key: key.to_owned(),
            });
        }
        if before != Some(&customer) {
            new_customer = Some(customer);
        }
        changes.splice(0..0, customer_changes);
    }

    // Subscription.
    let mut new_subscription = None;
    if let Some(reference) = keys.subscription.as_deref() {
        let before = state
            .subscription
            .as_ref()
            .filter(|s| s.reference == reference);
        let mut sub = before
            .cloned()
            .unwrap_or_else(|| SubscriptionRecord::new(reference));
        subscription::apply(&mut sub, n, event_id, at);
        if before != Some(&sub) {
            let items: Vec<String> = sub
                .lifecycle
                .iter()
                .filter(|(k, v)| before.and_then(|b| b.lifecycle.get(*k)) != Some(*v))
                .map(|(k, _)| k.clone())
                .collect();
            let created = items
                .iter()
                .filter(|k| before.is_none_or(|b| !b.lifecycle.contains_key(*k)))
                .cloned()
                .collect();
            changes.push(LedgerChange::SubscriptionChanged {
                reference: reference.to_owned(),
                items,
                created,
            });
            new_subscription = Some(sub);
        }
    }

    if let Notification::Ins(ins) = n {
        if ins.message_type == InsMessageType::RecurringInstallmentFailed
            && new_order
                .as_ref()
                .is_some_and(|o| o.payment_failures.contains_key(&event_id))
        {
            changes.push(LedgerChange::PaymentFailed {
                reference: n.reference().to_owned(),
                invoice_id: ins.invoice_id.clone(),
            });
        }
    }

    tracing::debug!(
        event_id,
        reference = n.reference(),
        changes = changes.len(),
        "ledger applied"
    );
    LedgerUpdate {
        customer: new_customer,
        order: new_order,
        subscription: new_subscription,
        changes,
        test: n.is_test(),
    }
}

/// Merges an IPN into an order; returns the changed data fields.
fn apply_ipn(
    order: &mut OrderRecord,
    ipn: &Ipn,
    event_id: i64,
    at: Option<NaiveDateTime>,
    keys: &Touched,
) -> Vec<String> {
    let rank = ipn.status.rank();
    let stamp = Stamp { rank, at, event_id };
    order.status_changes(&ipn.status, stamp);

    let mut changed = Vec::new();
    {
        let mut m = Merger {
            sources: &mut order.sources,
            stamp,
            changed: Vec::new(),
        };
        m.field(
            "customer_key",
            &mut order.customer_key,
            keys.customer.clone(),
        );
        changed.append(&mut m.changed);
    }

    let refund_kind = if ipn.status == OrderStatus::Reversed {
        Some(RefundKind::Reversal)
    } else if ipn.is_refund() {
        Some(RefundKind::Refund)
    } else {
        None
    };
    match refund_kind {
        Some(kind) => {
            // A refund IPN carries the cancelled amount (negative, reference §1.2); it never
            // replaces the order's own total. Fall back on the sum of the line totals.
            let amount = ipn.total.or_else(|| {
                let totals: Vec<Money> = ipn.items.iter().filter_map(|i| i.total).collect();
                let first = *totals.first()?;
                totals[1..]
                    .iter()
                    .try_fold(first, |acc, m| acc.checked_add(m).ok())
            });
            order
                .refunds
                .entry(event_id)
                .or_insert_with(|| RefundEntry {
                    kind,
                    amount: amount.map(|m| -m.round().amount.abs()),
                    currency: amount.map(|m| m.currency).or(ipn.currency),
                    refund_type: clean(&ipn.refund_type),
                    at,
                });
            // The currency is order data every notification agrees on; take it if missing.
            if order.currency.is_none() {
                let mut m = Merger {
                    sources: &mut order.sources,
                    stamp: Stamp {
                        rank: 0,
                        at,
                        event_id,
                    },
                    changed: Vec::new(),
                };
                m.field("currency", &mut order.currency, ipn.currency);
                changed.append(&mut m.changed);
            }
        }
        None => changed.extend(order.merge_ipn_data(ipn, stamp)),
    }

    if let Some(cb) = &ipn.chargeback {
        let newer = order.chargeback.as_ref().is_none_or(|c| stamp > c.stamp);
        let (opened_at, opened_event_id) = match &order.chargeback {
            Some(c) if (c.opened_at, c.opened_event_id) <= (at, event_id) => {
                (c.opened_at, c.opened_event_id)
            }
            _ => (at, event_id),
        };
        let mut next = order.chargeback.clone();
        if newer {
            next = Some(ChargebackRecord {
                resolution: cb.resolution.clone(),
                reason_code: cb.reason_code.clone(),
                opened_at,
                opened_event_id,
                stamp,
            });
        } else if let Some(c) = next.as_mut() {
            c.opened_at = opened_at;
            c.opened_event_id = opened_event_id;
        }
        order.chargeback = next;
    }
    changed
}

fn order_changes(
    before: Option<&OrderRecord>,
    after: &OrderRecord,
    data_changed: Vec<String>,
    event_id: i64,
    ctx: &LedgerContext,
    out: &mut Vec<LedgerChange>,
) {
    let refno = after.refno.clone();
    match before {
        None => out.push(LedgerChange::OrderPlaced {
            refno: refno.clone(),
            status: after.status.clone(),
        }),
        Some(b) if b.status != after.status => {
            if let Some(to) = &after.status {
                out.push(LedgerChange::OrderStatusChanged {
                    refno: refno.clone(),
                    from: b.status.clone(),
                    to: to.clone(),
                });
            }
        }
        Some(_) => {}
    }
    let was_completed = before.is_some_and(OrderRecord::is_completed);
    if after.is_completed() && !was_completed {
        out.push(LedgerChange::OrderCompleted {
            refno: refno.clone(),
        });
    } else if before.is_some() && !data_changed.is_empty() {
        out.push(LedgerChange::OrderUpdated {
            refno: refno.clone(),
            fields: data_changed,
        });
    }
    let was_canceled = before.is_some_and(|b| b.has_seen(&OrderStatus::Canceled));
    if after.has_seen(&OrderStatus::Canceled) && !was_canceled {
        out.push(LedgerChange::OrderCanceled {
            refno: refno.clone(),
        });
    }
    let new_refund = after
        .refunds
        .get(&event_id)
        .filter(|_| before.is_none_or(|b| !b.refunds.contains_key(&event_id)));
    if let Some(e) = new_refund {
        let amount = e.amount.zip(e.currency).map(|(a, c)| Money::new(a, c));
        out.push(match e.kind {
            RefundKind::Refund => LedgerChange::OrderRefunded {
                refno: refno.clone(),
                amount,
                refunded: after.refunded,
            },
            RefundKind::Reversal => LedgerChange::OrderReversed {
                refno: refno.clone(),
                amount,
            },
        });
    }
    let cb_before = before.and_then(|b| b.chargeback.as_ref());
    if let Some(cb) = &after.chargeback {
        let differs = cb_before
            .is_none_or(|b| b.resolution != cb.resolution || b.reason_code != cb.reason_code);
        if differs {
            out.push(LedgerChange::Chargeback {
                refno: refno.clone(),
                resolution: cb.resolution.clone(),
                reason_code: cb.reason_code.clone(),
                opened: cb_before.is_none(),
            });
        }
    }
    if let Some(currency) = after.currency {
        if after.fx_missing(ctx.base_currency) && after.total.is_some() {
            tracing::warn!(refno = %refno, currency = %currency, base = %ctx.base_currency, "no FX rate for order currency");
            out.push(LedgerChange::FxRateMissing {
                refno,
                currency,
                base_currency: ctx.base_currency,
            });
        }
    }
}

#[cfg(test)]
mod tests;
