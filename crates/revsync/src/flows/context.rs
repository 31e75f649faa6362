//! The template context: every variable a field mapping can use, built from ledger records.
//!
//! Every documented variable is always present (as `none` when the ledger has no value), so
//! templates render with strict undefined behaviour and a misspelt name is an error at start-up,
//! never a silently empty field.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use minijinja::value::{Object, ObjectRepr};
use minijinja::Value;
use rust_decimal::Decimal;
use twocheckout::money::Currency;

use crate::ledger::{CustomerRecord, OrderRecord};

/// An exact decimal inside a template. It renders as its decimal text (money with exactly its
/// currency's minor units, e.g. `12.50`, `1500`, `4.125`) and, when a field's whole template is
/// this value, it is written to Salesforce as a JSON number (see [`super::mapping::decimal_to_json`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalValue(pub Decimal);

impl Object for DecimalValue {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }

    fn is_true(self: &Arc<Self>) -> bool {
        !self.0.is_zero()
    }
}

/// The documented variables: `(path, description)`. Paths are dotted; `order.lines` is a list
/// whose items have the attributes listed under `order.lines[]`.
pub const VARIABLES: &[(&str, &str)] = &[
    ("customer.key", "customer key: AVANGATE_CUSTOMER_REFERENCE, else the normalised e-mail"),
    ("customer.avangate_reference", "AVANGATE_CUSTOMER_REFERENCE"),
    ("customer.external_reference", "EXTERNAL_CUSTOMER_REFERENCE"),
    ("customer.first_name", "first name"),
    ("customer.contact_first_name", "first name when there is a last name (else it became the Contact's LastName)"),
    ("customer.last_name", "last name"),
    ("customer.full_name", "\"First Last\" (none when both are missing)"),
    ("customer.company", "company"),
    ("customer.email", "e-mail as received (trimmed)"),
    ("customer.email_normalized", "e-mail trimmed and lower-cased"),
    ("customer.phone", "phone"),
    ("customer.address1", "address line 1"),
    ("customer.address2", "address line 2"),
    ("customer.street", "address lines 1 and 2 joined by a newline"),
    ("customer.city", "city"),
    ("customer.state", "state / region"),
    ("customer.zip", "postal code"),
    ("customer.country", "country name as sent"),
    ("customer.country_code", "ISO 3166 alpha-2 country code, upper-case"),
    ("customer.language", "shopper language"),
    ("customer.account_name", "company, else \"First Last\", else the e-mail, else the key"),
    ("customer.contact_last_name", "last name, else first name, else the e-mail's local part, else \"Unknown\""),
    ("customer.order_count", "number of completed non-test orders (integer)"),
    ("customer.first_purchase_date", "YYYY-MM-DD of the first completed order"),
    ("customer.last_purchase_date", "YYYY-MM-DD of the latest completed order"),
    ("customer.first_seen", "first notification time, YYYY-MM-DD HH:MM:SS (2Checkout time zone)"),
    ("customer.last_seen", "latest notification time"),
    ("order.refno", "REFNO"),
    ("order.external_reference", "REFNOEXT"),
    ("order.order_number", "ORDERNO"),
    ("order.status", "current ORDERSTATUS (forward-only)"),
    ("order.currency", "order currency (ISO 4217)"),
    ("order.total", "IPN_TOTALGENERAL in the order currency (decimal)"),
    ("order.tax", "VAT + shipping tax in the order currency (decimal)"),
    ("order.refunded", "sum of refunds and reversals in the order currency, negative or 0 (decimal)"),
    ("order.net", "total + refunded in the order currency (decimal)"),
    ("order.payment_method", "PAYMETHOD label, else PAYMETHOD_CODE"),
    ("order.payment_method_code", "PAYMETHOD_CODE"),
    ("order.card_type", "CARD_TYPE"),
    ("order.card_last_digits", "CARD_LAST_DIGITS"),
    ("order.sale_date", "SALEDATE, YYYY-MM-DD HH:MM:SS"),
    ("order.payment_date", "PAYMENTDATE"),
    ("order.complete_date", "COMPLETE_DATE"),
    ("order.close_date", "YYYY-MM-DD: complete date, else payment date, else sale date"),
    ("order.renewal", "renewal order (boolean)"),
    ("order.type", "\"Renewal\" or \"New Business\""),
    ("order.trial", "any line is a TRIAL licence (boolean)"),
    ("order.subscription_ref", "the subscription references of the lines, comma-separated"),
    ("order.subscription_refs", "the subscription references (list of strings)"),
    ("order.product_names", "product names of the lines, comma-separated"),
    ("order.fraud_status", "FRAUD_STATUS"),
    ("order.test", "TEST_ORDER (boolean)"),
    ("order.lines", "product lines (list)"),
    ("order.lines[].product_id", "IPN_PID[]"),
    ("order.lines[].name", "IPN_PNAME[]"),
    ("order.lines[].code", "IPN_PCODE[]"),
    ("order.lines[].sku", "IPN_SKU[]"),
    ("order.lines[].quantity", "IPN_QTY[] (integer)"),
    ("order.lines[].unit_price", "IPN_PRICE[] (decimal)"),
    ("order.lines[].vat", "IPN_VAT[] (decimal)"),
    ("order.lines[].total", "IPN_TOTAL[] (decimal)"),
    ("order.lines[].subscription_ref", "IPN_LICENSE_REF[]"),
    ("order.lines[].license_type", "IPN_LICENSE_TYPE[]"),
    ("order.base_currency", "the configured base currency"),
    ("order.base_total", "total in the base currency (decimal; none without a rate)"),
    ("order.base_tax", "tax in the base currency"),
    ("order.base_refunded", "refunded in the base currency (negative or 0)"),
    ("order.base_net", "net in the base currency"),
    ("order.fx_rate", "order currency → base currency rate (decimal)"),
    ("order.fx_source", "same_currency, two_checkout or configured_table"),
    ("opportunity.stage", "the configured closed-won stage name"),
    ("opportunity.amount", "net amount in the record currency: the order currency in a multi-currency org, the base currency otherwise (decimal)"),
    ("opportunity.gross_amount", "total before refunds in the record currency"),
    ("opportunity.tax", "tax in the record currency"),
    ("opportunity.refunded", "refunded in the record currency (negative or 0)"),
    ("opportunity.currency_iso_code", "order currency in a multi-currency org; none otherwise"),
    ("opportunity.original_currency", "order currency in a single-currency org; none otherwise"),
    ("opportunity.original_amount", "net amount in the order currency in a single-currency org; none otherwise"),
    ("chargeback.key", "\"chargeback:<refno>\" (the Case's event key)"),
    ("chargeback.resolution", "CHARGEBACK_RESOLUTION"),
    ("chargeback.reason_code", "CHARGEBACK_REASON_CODE"),
    ("chargeback.opened_at", "time of the first chargeback notification"),
];

/// Settings the context depends on.
#[derive(Debug, Clone, Copy)]
pub struct ContextSettings<'a> {
    /// Multi-currency org.
    pub multi_currency: bool,
    /// Base currency.
    pub base_currency: Currency,
    /// Closed-won stage name.
    pub closed_won_stage: &'a str,
}

fn s(v: &Option<String>) -> Value {
    v.as_deref().map_or(Value::from(()), Value::from)
}
fn text(v: Option<String>) -> Value {
    v.map_or(Value::from(()), Value::from)
}
fn num(v: Option<Decimal>) -> Value {
    v.map_or(Value::from(()), |d| Value::from_object(DecimalValue(d)))
}
fn date(v: Option<NaiveDate>) -> Value {
    text(v.map(|d| d.format("%Y-%m-%d").to_string()))
}
fn datetime(v: Option<NaiveDateTime>) -> Value {
    text(v.map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string()))
}
fn boolean(v: Option<bool>) -> Value {
    v.map_or(Value::from(()), Value::from)
}
fn map(entries: Vec<(&'static str, Value)>) -> Value {
    Value::from_iter(entries)
}

/// `customer.*`.
pub fn customer_value(c: Option<&CustomerRecord>) -> Value {
    let empty;
    let c = match c {
        Some(c) => c,
        None => {
            empty = CustomerRecord::new("");
            &empty
        }
    };
    let key = (!c.key.is_empty()).then(|| c.key.clone());
    let street = match (&c.address1, &c.address2) {
        (Some(a), Some(b)) => Some(format!("{a}\n{b}")),
        (a, b) => a.clone().or(b.clone()),
    };
    let email_local = c
        .normalized_email()
        .and_then(|e| e.split('@').next().map(str::to_owned))
        .filter(|l| !l.is_empty());
    let account_name = c
        .company
        .clone()
        .or_else(|| c.full_name())
        .or_else(|| c.email.clone())
        .or_else(|| key.clone());
    let contact_last_name = c
        .last_name
        .clone()
        .or_else(|| c.first_name.clone())
        .or(email_local)
        .unwrap_or_else(|| "Unknown".to_owned());
    map(vec![
        ("key", text(key)),
        ("avangate_reference", s(&c.avangate_reference)),
        ("external_reference", s(&c.external_reference)),
        ("first_name", s(&c.first_name)),
        (
            "contact_first_name",
            text(c.last_name.as_ref().and(c.first_name.clone())),
        ),
        ("last_name", s(&c.last_name)),
        ("full_name", text(c.full_name())),
        ("company", s(&c.company)),
        ("email", s(&c.email)),
        ("email_normalized", text(c.normalized_email())),
        ("phone", s(&c.phone)),
        ("address1", s(&c.address1)),
        ("address2", s(&c.address2)),
        ("street", text(street)),
        ("city", s(&c.city)),
        ("state", s(&c.state)),
        ("zip", s(&c.zip)),
        ("country", s(&c.country)),
        ("country_code", s(&c.country_code)),
        ("language", s(&c.language)),
        ("account_name", text(account_name)),
        ("contact_last_name", Value::from(contact_last_name)),
        ("order_count", Value::from(c.order_count() as u64)),
        ("first_purchase_date", date(c.first_purchase_date())),
        ("last_purchase_date", date(c.last_purchase_date())),
        ("first_seen", datetime(c.first_seen)),
        ("last_seen", datetime(c.last_seen)),
    ])
}

fn join(v: impl Iterator<Item = String>) -> Option<String> {
    let parts: Vec<String> = v.collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// `order.*`, `opportunity.*` and `chargeback.*`.
pub fn order_values(
    o: Option<&OrderRecord>,
    st: &ContextSettings<'_>,
) -> [(&'static str, Value); 3] {
    let empty;
    let o = match o {
        Some(o) => o,
        None => {
            empty = OrderRecord::new("");
            &empty
        }
    };
    let refno = (!o.refno.is_empty()).then(|| o.refno.clone());
    let fx =
        o.fx.as_ref()
            .filter(|f| f.base_currency == st.base_currency);
    let pm = o.payment_method.as_ref();
    let lines: Vec<Value> = o
        .lines
        .iter()
        .flatten()
        .map(|l| {
            map(vec![
                ("product_id", s(&l.product_id)),
                ("name", s(&l.name)),
                ("code", s(&l.code)),
                ("sku", s(&l.sku)),
                ("quantity", l.quantity.map_or(Value::from(()), Value::from)),
                ("unit_price", num(l.unit_price)),
                ("vat", num(l.vat)),
                ("total", num(l.total)),
                ("subscription_ref", s(&l.subscription_ref)),
                ("license_type", s(&l.license_type)),
            ])
        })
        .collect();
    let subs = o.subscription_refs.clone().unwrap_or_default();
    let renewal = o.renewal.unwrap_or(false);
    let has_order = refno.is_some();
    let order = map(vec![
        ("refno", text(refno.clone())),
        ("external_reference", s(&o.external_reference)),
        ("order_number", s(&o.order_number)),
        ("status", s(&o.status)),
        ("currency", text(o.currency.map(|c| c.code().to_owned()))),
        ("total", num(o.total)),
        ("tax", num(o.tax)),
        ("refunded", num(has_order.then_some(o.refunded))),
        ("net", num(o.net)),
        (
            "payment_method",
            text(pm.and_then(|p| p.label.clone().or(p.code.clone()))),
        ),
        ("payment_method_code", text(pm.and_then(|p| p.code.clone()))),
        ("card_type", text(pm.and_then(|p| p.card_type.clone()))),
        (
            "card_last_digits",
            text(pm.and_then(|p| p.card_last_digits.clone())),
        ),
        ("sale_date", datetime(o.sale_date)),
        ("payment_date", datetime(o.payment_date)),
        ("complete_date", datetime(o.complete_date)),
        ("close_date", date(o.close_date())),
        ("renewal", boolean(has_order.then_some(renewal))),
        (
            "type",
            text(has_order.then(|| if renewal { "Renewal" } else { "New Business" }.to_owned())),
        ),
        ("trial", boolean(o.trial)),
        ("subscription_ref", text(join(subs.iter().cloned()))),
        (
            "subscription_refs",
            if subs.is_empty() {
                Value::from(())
            } else {
                Value::from(subs.clone())
            },
        ),
        (
            "product_names",
            text(join(
                o.lines.iter().flatten().filter_map(|l| l.name.clone()),
            )),
        ),
        ("fraud_status", s(&o.fraud_status)),
        ("test", boolean(has_order.then_some(o.test))),
        ("lines", Value::from(lines)),
        ("base_currency", Value::from(st.base_currency.code())),
        ("base_total", num(fx.and_then(|f| f.total))),
        ("base_tax", num(fx.and_then(|f| f.tax))),
        ("base_refunded", num(fx.map(|f| f.refunded))),
        ("base_net", num(fx.and_then(|f| f.net))),
        ("fx_rate", num(fx.map(|f| f.rate))),
        ("fx_source", text(fx.map(|f| f.source.as_str().to_owned()))),
    ]);

    let opportunity = if st.multi_currency {
        map(vec![
            ("stage", Value::from(st.closed_won_stage)),
            ("amount", num(o.net)),
            ("gross_amount", num(o.total)),
            ("tax", num(o.tax)),
            ("refunded", num(has_order.then_some(o.refunded))),
            (
                "currency_iso_code",
                text(o.currency.map(|c| c.code().to_owned())),
            ),
            ("original_currency", Value::from(())),
            ("original_amount", Value::from(())),
        ])
    } else {
        map(vec![
            ("stage", Value::from(st.closed_won_stage)),
            ("amount", num(fx.and_then(|f| f.net))),
            ("gross_amount", num(fx.and_then(|f| f.total))),
            ("tax", num(fx.and_then(|f| f.tax))),
            ("refunded", num(fx.map(|f| f.refunded))),
            ("currency_iso_code", Value::from(())),
            (
                "original_currency",
                text(o.currency.map(|c| c.code().to_owned())),
            ),
            ("original_amount", num(o.net)),
        ])
    };

    let cb = o.chargeback.as_ref();
    let chargeback = map(vec![
        (
            "key",
            text(refno.as_ref().map(|r| format!("chargeback:{r}"))),
        ),
        ("resolution", text(cb.map(|c| c.resolution.clone()))),
        ("reason_code", text(cb.and_then(|c| c.reason_code.clone()))),
        ("opened_at", datetime(cb.and_then(|c| c.opened_at))),
    ]);
    [
        ("order", order),
        ("opportunity", opportunity),
        ("chargeback", chargeback),
    ]
}

/// The full context for one customer and one order.
pub fn build(
    customer: Option<&CustomerRecord>,
    order: Option<&OrderRecord>,
    st: &ContextSettings<'_>,
) -> Value {
    let mut entries: BTreeMap<&'static str, Value> = BTreeMap::new();
    entries.insert("customer", customer_value(customer));
    for (k, v) in order_values(order, st) {
        entries.insert(k, v);
    }
    Value::from_iter(entries)
}
