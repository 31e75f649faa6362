//! 2Checkout REST API 6.0 emulator: order and subscription search and retrieval
//! (reference §4), built from the same generated history the traffic generator sends, so
//! that a backfill and the live notifications agree.
//!
//! Routes (trailing `/` required, like the real API):
//! - `GET /rest/6.0/orders/` — search: `StartDate`, `EndDate` (`Y-m-d`, on the order date;
//!   `StartDate` overrides `Newer`), `Newer`, `Status`, `ApproveStatus`, `ExternalRefNo`,
//!   `IncludeTestOrders` (`YES`/`NO`/`ONLY`), `Page`, `Limit`;
//! - `GET /rest/6.0/orders/{RefNo}/`;
//! - `GET /rest/6.0/subscriptions/` — search: `SubscriptionReference`, `CustomerEmail`
//!   (+`ExactMatchEmail`), `AvangateCustomerReference`, `ExternalCustomerReference`,
//!   `SubscriptionEnabled`, `RecurringEnabled`, `PurchasedAfter`/`Before`,
//!   `ExpireAfter`/`Before`, `Page`, `Limit`;
//! - `GET /rest/6.0/subscriptions/{SubscriptionReference}/`.
//!
//! Search answers `{"Items": [...], "Pagination": {"Page", "Limit", "Count"}}`. Every request
//! must carry a valid `X-Avangate-Authentication` header; otherwise 401
//! `{"error_code": "AUTHENTICATION_ERROR", "message": …}`.
//!
//! ASSUMED (the reference does not say): `Page` is 1-based, `Limit` defaults to 10 and is
//! capped at 200, `Count` is the number of matching items (all pages), items are in order
//! date order (oldest first), the default of `IncludeTestOrders` is `YES`, the clock skew
//! accepted is 10 minutes, 404 answers `{"error_code": "NOT_FOUND"}`, 400 answers
//! `{"error_code": "INVALID_PARAMETER"}`. The order object carries no refunded amount (the
//! reference lists none): a refunded order keeps its original prices and has `Status`
//! `REFUND`. `CustomerDetails` is `{AvangateCustomerReference, ExternalCustomerReference,
//! FirstName, LastName, Company, Email}`; items carry `Code` (the product code); subscriptions
//! carry `Status`, `AvangateCustomerReference` and `ReferenceOrder` (the `RefNo` of the
//! order that bought or last renewed them).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use twocheckout::notification::{Ipn, Lcn, LicenseType, Notification, OrderStatus};
use twocheckout::rest_auth::{verify_authentication_header, AUTH_HEADER};
use twocheckout::{Money, SecretKey};

use crate::generator::Delivery;

const DATE_TIME: &str = "%Y-%m-%d %H:%M:%S";
const DATE: &str = "%Y-%m-%d";
/// Default page size (ASSUMED).
pub const DEFAULT_LIMIT: usize = 10;
/// Largest page size (ASSUMED).
pub const MAX_LIMIT: usize = 200;

/// The orders and subscriptions the emulator serves, as REST 6.0 JSON objects.
#[derive(Debug, Clone, Default)]
pub struct RestData {
    orders: BTreeMap<String, Value>,
    subscriptions: BTreeMap<String, Value>,
}

/// What the emulator accumulates for one order from its IPNs.
struct OrderAcc {
    /// The non-refund IPN with the highest status rank (latest among equals): the order's
    /// own data.
    data: Option<Ipn>,
    /// Any IPN (used when only refunds were seen).
    any: Ipn,
    status: OrderStatus,
    test: bool,
    seq: usize,
}

fn money_json(m: Option<Money>) -> Value {
    m.map_or(Value::Null, |m| decimal_json(m.round().amount))
}

/// A decimal as a JSON number (what the real API sends); exact for amounts below 10¹³.
pub fn decimal_json(d: Decimal) -> Value {
    let text = d.normalize().to_string();
    text.parse::<serde_json::Number>()
        .map(Value::Number)
        .unwrap_or(Value::String(text))
}

fn opt_str(s: &Option<String>) -> Value {
    s.as_deref()
        .map_or(Value::Null, |s| Value::String(s.to_owned()))
}

fn date_time(t: Option<NaiveDateTime>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(t.format(DATE_TIME).to_string())
    })
}

fn sum(items: impl Iterator<Item = Option<Money>>) -> Option<Money> {
    let mut total: Option<Money> = None;
    for m in items.flatten() {
        total = Some(match total {
            None => m,
            Some(t) => t.checked_add(&m).unwrap_or(t),
        });
    }
    total
}

impl RestData {
    /// Builds the REST view of a generated history: every IPN updates its order (the status
    /// only moves forward, the order data comes from the best non-refund notification), every
    /// licensed order line creates or renews a subscription, every LCN updates one.
    pub fn from_deliveries(deliveries: &[Delivery], merchant_code: &str) -> RestData {
        let mut accs: BTreeMap<String, OrderAcc> = BTreeMap::new();
        let mut subs: BTreeMap<String, Value> = BTreeMap::new();
        for (seq, d) in deliveries.iter().enumerate() {
            let Ok(n) = Notification::parse(d.kind, &d.form) else {
                continue;
            };
            match n {
                Notification::Ipn(ipn) => {
                    let refund = ipn.is_refund() || ipn.status == OrderStatus::Reversed;
                    let acc = accs
                        .entry(ipn.reference.to_string())
                        .or_insert_with(|| OrderAcc {
                            data: None,
                            any: ipn.clone(),
                            status: ipn.status.clone(),
                            test: false,
                            seq,
                        });
                    acc.test |= ipn.test_order;
                    if ipn.status.rank() >= acc.status.rank() {
                        acc.status = ipn.status.clone();
                    }
                    if !refund
                        && acc
                            .data
                            .as_ref()
                            .is_none_or(|b| ipn.status.rank() >= b.status.rank())
                    {
                        if ipn.status == OrderStatus::Complete
                            || ipn.status == OrderStatus::PaymentAuthorized
                        {
                            subscriptions_of(&ipn, &mut subs);
                        }
                        acc.data = Some(ipn);
                    }
                }
                Notification::Lcn(lcn) => apply_lcn(&lcn, &mut subs),
                Notification::Ins(_) => {}
            }
        }
        let orders = accs
            .into_iter()
            .map(|(refno, acc)| (refno, order_json(&acc, merchant_code)))
            .collect();
        RestData {
            orders,
            subscriptions: subs,
        }
    }

    /// Every order, by `RefNo`.
    pub fn orders(&self) -> impl Iterator<Item = &Value> {
        self.orders.values()
    }

    /// One order.
    pub fn order(&self, refno: &str) -> Option<&Value> {
        self.orders.get(refno)
    }

    /// Changes one order in place (tests: make 2Checkout disagree with what was sent).
    /// Returns false when there is no such order.
    pub fn update_order(&mut self, refno: &str, f: impl FnOnce(&mut Value)) -> bool {
        match self.orders.get_mut(refno) {
            Some(o) => {
                f(o);
                true
            }
            None => false,
        }
    }

    /// Adds or replaces an order object (its `RefNo` is the key).
    pub fn insert_order(&mut self, order: Value) {
        if let Some(refno) = order.get("RefNo").and_then(Value::as_str) {
            self.orders.insert(refno.to_owned(), order);
        }
    }

    /// Removes an order.
    pub fn remove_order(&mut self, refno: &str) -> Option<Value> {
        self.orders.remove(refno)
    }

    /// Every subscription, by reference.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Value> {
        self.subscriptions.values()
    }

    /// One subscription.
    pub fn subscription(&self, reference: &str) -> Option<&Value> {
        self.subscriptions.get(reference)
    }
}

fn approve_status(ipn: &Ipn) -> &'static str {
    use twocheckout::FraudStatus;
    match &ipn.fraud_status {
        Some(FraudStatus::Approved) => "OK",
        Some(FraudStatus::Denied) => "FRAUD",
        _ => "WAITING",
    }
}

fn order_json(acc: &OrderAcc, merchant_code: &str) -> Value {
    let ipn = acc.data.as_ref().unwrap_or(&acc.any);
    let c = &ipn.customer;
    let currency = ipn.currency.map(|c| c.code());
    let net = sum(ipn.items.iter().map(|i| {
        let q = Decimal::from(i.quantity.unwrap_or(1));
        i.unit_price.map(|p| Money::new(p.amount * q, p.currency))
    }));
    let vat = ipn.tax_total();
    let billing = json!({
        "FirstName": opt_str(&c.first_name),
        "LastName": opt_str(&c.last_name),
        "Company": opt_str(&c.company),
        "Email": opt_str(&c.email),
        "Phone": opt_str(&c.phone),
        "Address1": opt_str(&c.address1),
        "Address2": opt_str(&c.address2),
        "City": opt_str(&c.city),
        "Zip": opt_str(&c.zip),
        "CountryCode": c.country_code.as_deref().map(str::to_ascii_lowercase),
        "State": opt_str(&c.state),
        "FiscalCode": Value::Null,
        "TaxOffice": Value::Null,
    });
    let items: Vec<Value> = ipn
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let q = item.quantity.unwrap_or(1);
            let line_net = item
                .unit_price
                .map(|p| Money::new(p.amount * Decimal::from(q), p.currency));
            let subscriptions: Vec<Value> = item
                .license
                .iter()
                .filter(|l| l.reference.is_some())
                .map(|l| {
                    json!({
                        "SubscriptionReference": opt_str(&l.reference),
                        "PurchaseDate": date_time(ipn.sale_date),
                        "SubscriptionStartDate": date_time(l.start),
                        "ExpirationDate": date_time(l.expiration),
                        "Lifetime": l.lifetime,
                        "Trial": l.license_type == Some(LicenseType::Trial),
                        "Enabled": true,
                        "RecurringEnabled": true,
                    })
                })
                .collect();
            json!({
                "ProductDetails": {
                    "Name": opt_str(&item.name),
                    "ShortDescription": Value::Null,
                    "Tangible": false,
                    "IsDynamic": false,
                    "ExtraInfo": Value::Null,
                    "RenewalStatus": !subscriptions.is_empty(),
                    "Subscriptions": subscriptions,
                    "DeliveryInformation": {"Delivery": "NO_DELIVERY", "Codes": []},
                },
                "PriceOptions": [],
                "Price": {
                    "UnitNetPrice": money_json(item.unit_price),
                    "UnitGrossPrice": money_json(item.unit_price.map(|p| {
                        let unit_vat = item.vat.map_or(Decimal::ZERO, |v| v.amount / Decimal::from(q.max(1)));
                        Money::new(p.amount + unit_vat, p.currency)
                    })),
                    "UnitVAT": money_json(item.vat.map(|v| Money::new(v.amount / Decimal::from(q.max(1)), v.currency))),
                    "UnitDiscount": money_json(item.discount),
                    "VATPercent": item.vat_rate.map_or(Value::Null, decimal_json),
                    "Currency": currency,
                    "NetPrice": money_json(line_net),
                    "GrossPrice": money_json(item.total),
                    "NetDiscountedPrice": money_json(line_net),
                    "GrossDiscountedPrice": money_json(item.total),
                    "Discount": money_json(item.discount),
                    "VAT": money_json(item.vat),
                    "AffiliateCommission": 0,
                },
                "LineItemReference": format!("{}-{}", ipn.reference, i + 1),
                "PurchaseType": "PRODUCT",
                "ExternalReference": opt_str(&item.external_reference),
                "Quantity": q,
                "SKU": opt_str(&item.sku),
                "Code": opt_str(&item.code),
                "CrossSell": Value::Null,
                "Trial": item.license.as_ref().and_then(|l| l.license_type.as_ref()) == Some(&LicenseType::Trial),
                "AdditionalFields": Value::Null,
                "Promotion": Value::Null,
                "SubscriptionStartDate": date_time(item.license.as_ref().and_then(|l| l.start)),
            })
        })
        .collect();
    json!({
        "RefNo": ipn.reference.as_str(),
        "OrderNo": ipn.order_number.as_deref().and_then(|n| n.parse::<u64>().ok()),
        "ExternalReference": opt_str(&ipn.external_reference),
        "ShopperRefNo": Value::Null,
        "Status": acc.status.as_str(),
        "ApproveStatus": approve_status(ipn),
        "VendorApproveStatus": "OK",
        "MerchantCode": merchant_code,
        "Language": c.language.clone().unwrap_or_else(|| "en".to_owned()),
        "OrderDate": date_time(ipn.sale_date),
        "FinishDate": date_time(ipn.complete_date),
        "Source": Value::Null,
        "HasShipping": false,
        "BillingDetails": billing.clone(),
        "DeliveryDetails": billing,
        "PaymentDetails": {
            "Type": opt_str(&ipn.payment.code),
            "Currency": currency,
            "CustomerIP": Value::Null,
            "PaymentMethod": {
                "FirstDigits": Value::Null,
                "LastDigits": opt_str(&ipn.payment.card_last_digits),
                "CardType": opt_str(&ipn.payment.card_type),
                "RecurringEnabled": !ipn.license_references().is_empty(),
            },
        },
        "CustomerDetails": {
            "AvangateCustomerReference": opt_str(&c.avangate_reference),
            "ExternalCustomerReference": opt_str(&c.external_reference),
            "FirstName": opt_str(&c.first_name),
            "LastName": opt_str(&c.last_name),
            "Company": opt_str(&c.company),
            "Email": opt_str(&c.email),
        },
        "Origin": "Web",
        "AvangateCommission": money_json(ipn.commission),
        "OrderFlow": "REGULAR",
        "ExtraInformation": {"OriginalRefNoExt": ipn.original_external_references},
        "LocalTime": Value::Null,
        "TestOrder": acc.test,
        "FxRate": ipn.fx.rate.map_or(Value::Null, decimal_json),
        "FxMarkup": ipn.fx.markup.map_or(Value::Null, decimal_json),
        "PayoutCurrency": ipn.fx.payout_currency.map(|c| c.code()),
        "Errors": Value::Null,
        "Promotions": [],
        "AdditionalFields": Value::Null,
        "Currency": currency,
        "NetPrice": money_json(net),
        "GrossPrice": money_json(ipn.total),
        "NetDiscountedPrice": money_json(net),
        "GrossDiscountedPrice": money_json(ipn.total),
        "Discount": money_json(ipn.currency.map(Money::zero)),
        "VAT": money_json(vat),
        "AffiliateCommission": 0,
        "CustomParameters": Value::Null,
        "Items": items,
        "_seq": acc.seq,
    })
}

fn end_user(c: &twocheckout::Customer) -> Value {
    json!({
        "FirstName": opt_str(&c.first_name),
        "LastName": opt_str(&c.last_name),
        "Company": opt_str(&c.company),
        "Email": opt_str(&c.email),
        "Phone": opt_str(&c.phone),
        "Fax": Value::Null,
        "Address1": opt_str(&c.address1),
        "Address2": opt_str(&c.address2),
        "City": opt_str(&c.city),
        "State": opt_str(&c.state),
        "Zip": opt_str(&c.zip),
        "CountryCode": c.country_code.as_deref().map(str::to_ascii_lowercase),
        "Language": c.language.clone().unwrap_or_else(|| "en".to_owned()),
    })
}

fn day(t: Option<NaiveDateTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.format(DATE).to_string()))
}

fn subscriptions_of(ipn: &Ipn, subs: &mut BTreeMap<String, Value>) {
    for item in &ipn.items {
        let Some(lic) = &item.license else { continue };
        let Some(reference) = &lic.reference else {
            continue;
        };
        let value = item.total;
        let entry = subs.entry(reference.clone()).or_insert_with(|| {
            json!({
                "SubscriptionReference": reference,
                "StartDate": day(lic.start),
                "ActivationDate": day(ipn.sale_date),
                "PurchaseDate": day(ipn.sale_date),
            })
        });
        let o = entry.as_object_mut().expect("subscriptions are objects");
        let later = |o: &Map<String, Value>| {
            o.get("ExpirationDate")
                .and_then(Value::as_str)
                .is_none_or(|e| day(lic.expiration).as_str().is_some_and(|n| n >= e))
        };
        if !later(o) {
            continue;
        }
        let c = &ipn.customer;
        for (k, v) in [
            ("ExpirationDate", day(lic.expiration)),
            ("Lifetime", Value::Bool(lic.lifetime)),
            ("RecurringEnabled", Value::Bool(true)),
            ("SubscriptionEnabled", Value::Bool(true)),
            ("Status", Value::from("ACTIVE")),
            (
                "Trial",
                Value::Bool(lic.license_type == Some(LicenseType::Trial)),
            ),
            ("EndUser", end_user(c)),
            ("ExternalSubscriptionReference", Value::Null),
            ("ExternalCustomerReference", opt_str(&c.external_reference)),
            ("AvangateCustomerReference", opt_str(&c.avangate_reference)),
            ("NextRenewalPrice", money_json(value)),
            (
                "NextRenewalPriceCurrency",
                value.map_or(Value::Null, |m| Value::from(m.currency.code())),
            ),
            ("PartnerCode", Value::Null),
            (
                "Product",
                json!({
                    "ProductCode": opt_str(&item.code),
                    "ProductId": opt_str(&item.product_id),
                    "ProductName": opt_str(&item.name),
                    "ProductQuantity": item.quantity.unwrap_or(1),
                    "ProductVersion": Value::Null,
                    "PriceOptionCodes": [],
                }),
            ),
            ("SubscriptionValue", money_json(value)),
            (
                "SubscriptionValueCurrency",
                value.map_or(Value::Null, |m| Value::from(m.currency.code())),
            ),
            ("CustomPriceBillingCyclesLeft", Value::Null),
            ("DeliveryInfo", json!({"Codes": [], "Description": null})),
            ("Test", Value::Bool(ipn.test_order)),
            ("ReferenceOrder", Value::from(ipn.reference.as_str())),
            (
                "LastModified",
                date_time(ipn.complete_date.or(ipn.sale_date)),
            ),
        ] {
            o.insert(k.to_owned(), v);
        }
    }
}

fn apply_lcn(lcn: &Lcn, subs: &mut BTreeMap<String, Value>) {
    let Some(entry) = subs.get_mut(lcn.license_code.as_str()) else {
        return;
    };
    let o = entry.as_object_mut().expect("subscriptions are objects");
    if let Some(e) = lcn.expiration {
        o.insert("ExpirationDate".into(), day(Some(e)));
    }
    if let Some(s) = &lcn.status {
        let status = s.as_str().replace(' ', "");
        o.insert("Status".into(), Value::from(status));
    }
    if let Some(d) = lcn.disabled {
        o.insert("SubscriptionEnabled".into(), Value::Bool(!d));
    }
    if let Some(r) = lcn.recurring_enabled {
        o.insert("RecurringEnabled".into(), Value::Bool(r));
    }
    if let Some(t) = &lcn.license_type {
        o.insert("Trial".into(), Value::Bool(*t == LicenseType::Trial));
    }
    if let Some(p) = lcn.next_renewal_price {
        o.insert("NextRenewalPrice".into(), money_json(Some(p)));
        o.insert(
            "NextRenewalPriceCurrency".into(),
            Value::from(p.currency.code()),
        );
        o.insert("SubscriptionValue".into(), money_json(Some(p)));
        o.insert(
            "SubscriptionValueCurrency".into(),
            Value::from(p.currency.code()),
        );
    }
    if let Some(product) = o.get_mut("Product").and_then(Value::as_object_mut) {
        if let Some(code) = &lcn.product_code {
            product.insert("ProductCode".into(), Value::from(code.as_str()));
        }
        if let Some(name) = &lcn.product_name {
            product.insert("ProductName".into(), Value::from(name.as_str()));
        }
        if let Some(q) = lcn.quantity {
            product.insert("ProductQuantity".into(), Value::from(q));
        }
    }
    if lcn.date_updated.is_some() {
        o.insert("LastModified".into(), date_time(lcn.date_updated));
    }
}

// ---------------------------------------------------------------------------------
// Server

/// Credentials the emulator checks.
#[derive(Clone)]
pub struct RestAuth {
    /// The merchant code clients must send.
    pub merchant_code: String,
    /// The account's secret key.
    pub secret_key: SecretKey,
    /// Largest accepted difference between the header's date and the clock (ASSUMED 10 min).
    pub max_skew: chrono::Duration,
}

impl RestAuth {
    /// Credentials with the default skew.
    pub fn new(merchant_code: &str, secret_key: SecretKey) -> RestAuth {
        RestAuth {
            merchant_code: merchant_code.to_owned(),
            secret_key,
            max_skew: chrono::Duration::minutes(10),
        }
    }
}

impl std::fmt::Debug for RestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestAuth")
            .field("merchant_code", &self.merchant_code)
            .finish_non_exhaustive()
    }
}

/// Shared state of a running emulator: the data (editable while it runs), credentials,
/// counters and injected faults.
#[derive(Clone)]
pub struct RestState {
    data: Arc<RwLock<RestData>>,
    auth: RestAuth,
    requests: Arc<AtomicU64>,
    fail_next: Arc<AtomicU32>,
    fail_status: Arc<AtomicU32>,
}

impl RestState {
    /// State over `data`, checking `auth`.
    pub fn new(data: RestData, auth: RestAuth) -> RestState {
        RestState {
            data: Arc::new(RwLock::new(data)),
            auth,
            requests: Arc::new(AtomicU64::new(0)),
            fail_next: Arc::new(AtomicU32::new(0)),
            fail_status: Arc::new(AtomicU32::new(429)),
        }
    }

    /// Changes the data while the emulator runs.
    pub fn with_data<T>(&self, f: impl FnOnce(&mut RestData) -> T) -> T {
        let mut guard = self.data.write().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Requests answered so far (authenticated or not).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The next `n` requests answer `status` (429 or a 5xx) with a JSON error, to exercise
    /// clients' backoff.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.fail_status.store(u32::from(status), Ordering::Relaxed);
        self.fail_next.store(n, Ordering::Relaxed);
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error_code": code, "message": message.into()})),
    )
        .into_response()
}

/// Checks the header and the injected faults; `Some(response)` ends the request.
fn gate(state: &RestState, headers: &HeaderMap) -> Option<Response> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let pending = state.fail_next.load(Ordering::Relaxed);
    if pending > 0
        && state
            .fail_next
            .compare_exchange(pending, pending - 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let status = StatusCode::from_u16(state.fail_status.load(Ordering::Relaxed) as u16)
            .unwrap_or(StatusCode::TOO_MANY_REQUESTS);
        return Some(error(status, "TOO_MANY_REQUESTS", "injected fault"));
    }
    let Some(header) = headers.get(AUTH_HEADER).and_then(|v| v.to_str().ok()) else {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_ERROR",
            format!("missing {AUTH_HEADER} header"),
        ));
    };
    match verify_authentication_header(
        header,
        &state.auth.merchant_code,
        &state.auth.secret_key,
        Utc::now().naive_utc(),
        state.auth.max_skew,
    ) {
        Ok(()) => None,
        Err(e) => Some(error(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_ERROR",
            e.to_string(),
        )),
    }
}

/// A query parameter that cannot be used: 400 `INVALID_PARAMETER`.
struct BadParam(String);

impl BadParam {
    fn new(message: impl Into<String>) -> BadParam {
        BadParam(message.into())
    }
}

impl IntoResponse for BadParam {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER", self.0)
    }
}

fn param<'a>(q: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

fn parse_day(q: &BTreeMap<String, String>, name: &str) -> Result<Option<NaiveDate>, BadParam> {
    match param(q, name) {
        None => Ok(None),
        Some(v) => NaiveDate::parse_from_str(v.get(..10).unwrap_or(v), DATE)
            .map(Some)
            .map_err(|_| BadParam::new(format!("{name} must be a date (Y-m-d), got {v:?}"))),
    }
}

fn parse_bool(q: &BTreeMap<String, String>, name: &str) -> Result<Option<bool>, BadParam> {
    match param(q, name) {
        None => Ok(None),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Some(true)),
            "false" | "0" | "no" => Ok(Some(false)),
            _ => Err(BadParam::new(format!(
                "{name} must be true or false, got {v:?}"
            ))),
        },
    }
}

fn paging(q: &BTreeMap<String, String>) -> Result<(usize, usize), BadParam> {
    let num = |name: &str, default: usize| -> Result<usize, BadParam> {
        match param(q, name) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                BadParam::new(format!("{name} must be a positive whole number, got {v:?}"))
            }),
        }
    };
    Ok((num("Page", 1)?, num("Limit", DEFAULT_LIMIT)?.min(MAX_LIMIT)))
}

fn page(items: Vec<Value>, page: usize, limit: usize) -> Response {
    let count = items.len();
    let items: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .collect();
    Json(json!({
        "Items": items,
        "Pagination": {"Page": page, "Limit": limit, "Count": count},
    }))
    .into_response()
}

fn public(order: &Value) -> Value {
    let mut o = order.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("_seq");
    }
    o
}

fn order_day(o: &Value) -> Option<NaiveDate> {
    o.get("OrderDate")
        .and_then(Value::as_str)
        .and_then(|s| NaiveDateTime::parse_from_str(s, DATE_TIME).ok())
        .map(|t| t.date())
}

async fn search_orders(
    State(state): State<RestState>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = gate(&state, &headers) {
        return r;
    }
    let filter = || -> Result<Response, BadParam> {
        let start = parse_day(&q, "StartDate")?;
        let end = parse_day(&q, "EndDate")?;
        let newer = match start {
            Some(s) => Some(s),
            None => match param(&q, "Newer") {
                Some(_) => parse_day(&q, "Newer")?,
                // Default: the last 7 days (reference §4.2).
                None => Some(Utc::now().date_naive() - chrono::Duration::days(7)),
            },
        };
        let status = param(&q, "Status").map(OrderStatus::from_wire);
        let approve = param(&q, "ApproveStatus");
        let ext = param(&q, "ExternalRefNo");
        let tests = param(&q, "IncludeTestOrders")
            .unwrap_or("YES")
            .to_ascii_uppercase();
        if !matches!(tests.as_str(), "YES" | "NO" | "ONLY") {
            return Err(BadParam::new("IncludeTestOrders must be YES, NO or ONLY"));
        }
        let (p, limit) = paging(&q)?;
        let guard = state.data.read().unwrap_or_else(|e| e.into_inner());
        let mut found: Vec<&Value> = guard
            .orders
            .values()
            .filter(|o| {
                let d = order_day(o);
                let test = o["TestOrder"].as_bool().unwrap_or(false);
                newer.is_none_or(|n| d.is_some_and(|d| d >= n))
                    && end.is_none_or(|e| d.is_some_and(|d| d <= e))
                    && status
                        .as_ref()
                        .is_none_or(|s| o["Status"].as_str() == Some(s.as_str()))
                    && approve.is_none_or(|a| o["ApproveStatus"].as_str() == Some(a))
                    && ext.is_none_or(|x| o["ExternalReference"].as_str() == Some(x))
                    && match tests.as_str() {
                        "NO" => !test,
                        "ONLY" => test,
                        _ => true,
                    }
            })
            .collect();
        found.sort_by(|a, b| {
            (
                a["OrderDate"].as_str(),
                a["_seq"].as_u64(),
                a["RefNo"].as_str(),
            )
                .cmp(&(
                    b["OrderDate"].as_str(),
                    b["_seq"].as_u64(),
                    b["RefNo"].as_str(),
                ))
        });
        Ok(page(found.into_iter().map(public).collect(), p, limit))
    };
    filter().unwrap_or_else(IntoResponse::into_response)
}

async fn get_order(
    State(state): State<RestState>,
    headers: HeaderMap,
    Path(refno): Path<String>,
) -> Response {
    if let Some(r) = gate(&state, &headers) {
        return r;
    }
    let guard = state.data.read().unwrap_or_else(|e| e.into_inner());
    match guard.orders.get(&refno) {
        Some(o) => Json(public(o)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("order {refno} not found"),
        ),
    }
}

async fn search_subscriptions(
    State(state): State<RestState>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = gate(&state, &headers) {
        return r;
    }
    let filter = || -> Result<Response, BadParam> {
        let reference = param(&q, "SubscriptionReference");
        let email = param(&q, "CustomerEmail").map(str::to_lowercase);
        let exact = parse_bool(&q, "ExactMatchEmail")?.unwrap_or(false);
        let avangate = param(&q, "AvangateCustomerReference");
        let external = param(&q, "ExternalCustomerReference");
        let enabled = parse_bool(&q, "SubscriptionEnabled")?;
        let recurring = parse_bool(&q, "RecurringEnabled")?;
        let purchased_after = parse_day(&q, "PurchasedAfter")?;
        let purchased_before = parse_day(&q, "PurchasedBefore")?;
        let expire_after = parse_day(&q, "ExpireAfter")?;
        let expire_before = parse_day(&q, "ExpireBefore")?;
        let (p, limit) = paging(&q)?;
        let day_of = |s: &Value, f: &str| {
            s[f].as_str()
                .and_then(|d| NaiveDate::parse_from_str(d, DATE).ok())
        };
        let guard = state.data.read().unwrap_or_else(|e| e.into_inner());
        let found: Vec<Value> = guard
            .subscriptions
            .values()
            .filter(|s| {
                let mail = s["EndUser"]["Email"].as_str().unwrap_or("").to_lowercase();
                let purchased = day_of(s, "PurchaseDate");
                let expires = day_of(s, "ExpirationDate");
                reference.is_none_or(|r| s["SubscriptionReference"].as_str() == Some(r))
                    && email.as_deref().is_none_or(
                        |e| {
                            if exact {
                                mail == e
                            } else {
                                mail.contains(e)
                            }
                        },
                    )
                    && avangate.is_none_or(|a| s["AvangateCustomerReference"].as_str() == Some(a))
                    && external.is_none_or(|x| s["ExternalCustomerReference"].as_str() == Some(x))
                    && enabled.is_none_or(|e| s["SubscriptionEnabled"].as_bool() == Some(e))
                    && recurring.is_none_or(|r| s["RecurringEnabled"].as_bool() == Some(r))
                    && purchased_after.is_none_or(|a| purchased.is_some_and(|d| d >= a))
                    && purchased_before.is_none_or(|b| purchased.is_some_and(|d| d <= b))
                    && expire_after.is_none_or(|a| expires.is_some_and(|d| d >= a))
                    && expire_before.is_none_or(|b| expires.is_some_and(|d| d <= b))
            })
            .cloned()
            .collect();
        Ok(page(found, p, limit))
    };
    filter().unwrap_or_else(IntoResponse::into_response)
}

async fn get_subscription(
    State(state): State<RestState>,
    headers: HeaderMap,
    Path(reference): Path<String>,
) -> Response {
    if let Some(r) = gate(&state, &headers) {
        return r;
    }
    let guard = state.data.read().unwrap_or_else(|e| e.into_inner());
    match guard.subscriptions.get(&reference) {
        Some(s) => Json(s.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("subscription {reference} not found"),
        ),
    }
}

async fn not_found(State(state): State<RestState>) -> Response {
    state.requests.fetch_add(1, Ordering::Relaxed);
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such resource (REST 6.0 paths end with '/')",
    )
}

/// The REST 6.0 routes over `state`.
pub fn router(state: RestState) -> Router {
    Router::new()
        .route("/rest/6.0/orders/", get(search_orders))
        .route("/rest/6.0/orders/{refno}/", get(get_order))
        .route("/rest/6.0/subscriptions/", get(search_subscriptions))
        .route(
            "/rest/6.0/subscriptions/{reference}/",
            get(get_subscription),
        )
        .fallback(not_found)
        .with_state(state)
}

/// Serves the REST API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: RestState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A REST emulator running on a local port.
pub struct RestEmulator {
    addr: SocketAddr,
    state: RestState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RestEmulator {
    /// Base URL of the API, e.g. `http://127.0.0.1:PORT/rest/6.0/`.
    pub fn url(&self) -> String {
        format!("http://{}/rest/6.0/", self.addr)
    }

    /// Bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state: edit the data, count requests, inject faults.
    pub fn state(&self) -> &RestState {
        &self.state
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RestEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts the emulator on `127.0.0.1:0`.
pub async fn spawn(data: RestData, auth: RestAuth) -> std::io::Result<RestEmulator> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = RestState::new(data, auth);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    Ok(RestEmulator {
        addr,
        state,
        stop: Some(tx),
        task: Some(task),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{Generator, GeneratorConfig, ScenarioKind};
    use twocheckout::{authentication_header, Algorithm};

    const CODE: &str = "REVSYNC01";

    fn key() -> SecretKey {
        SecretKey::from("rest-secret".to_owned())
    }

    fn history() -> Vec<Delivery> {
        let mut g = Generator::new(GeneratorConfig::new(7));
        let mut out = Vec::new();
        out.extend(g.scenario(ScenarioKind::NewOrder));
        out.extend(g.scenario(ScenarioKind::Refund));
        out.extend(g.scenario(ScenarioKind::Reversal));
        out.extend(g.scenario(ScenarioKind::Renewal));
        out.extend(g.generate(30));
        out
    }

    async fn get(url: &str, auth: Option<String>) -> (u16, Value) {
        let mut req = reqwest::Client::new().get(url);
        if let Some(a) = auth {
            req = req.header(AUTH_HEADER, a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    fn header(code: &str, alg: Algorithm) -> Option<String> {
        Some(authentication_header(
            code,
            &key(),
            alg,
            Utc::now().naive_utc(),
        ))
    }

    #[test]
    fn orders_follow_their_notifications() {
        let deliveries = history();
        let data = RestData::from_deliveries(&deliveries, CODE);
        let refs: Vec<&str> = deliveries
            .iter()
            .filter(|d| d.kind == twocheckout::Kind::Ipn)
            .map(|d| d.reference.as_str())
            .collect();
        for r in &refs {
            assert!(data.order(r).is_some(), "order {r} served");
        }
        // The new order: COMPLETE, amounts equal to the IPN's.
        let first = &deliveries[1];
        let o = data.order(&first.reference).unwrap();
        assert_eq!(o["Status"], "COMPLETE");
        assert_eq!(o["ApproveStatus"], "OK");
        assert_eq!(
            o["GrossPrice"].to_string(),
            first
                .form
                .get("IPN_TOTALGENERAL")
                .unwrap()
                .parse::<Decimal>()
                .unwrap()
                .normalize()
                .to_string()
        );
        assert_eq!(o["Currency"], first.form.get("CURRENCY").unwrap());
        // The refunded order keeps its positive prices and ends REFUND.
        let refund = deliveries
            .iter()
            .find(|d| d.form.get("ORDERSTATUS") == Some("REFUND"))
            .unwrap();
        let o = data.order(&refund.reference).unwrap();
        assert_eq!(o["Status"], "REFUND");
        assert!(o["GrossPrice"].as_f64().unwrap() > 0.0);
        let reversed = deliveries
            .iter()
            .find(|d| d.form.get("ORDERSTATUS") == Some("REVERSED"))
            .unwrap();
        assert_eq!(
            data.order(&reversed.reference).unwrap()["Status"],
            "REVERSED"
        );
        // Every licensed line is a subscription.
        let licensed: Vec<&str> = deliveries
            .iter()
            .filter_map(|d| d.form.field("IPN_LICENSE_REF"))
            .flat_map(|f| f.values().iter().map(String::as_str))
            .filter(|s| !s.is_empty())
            .collect();
        assert!(!licensed.is_empty());
        for l in licensed {
            assert!(data.subscription(l).is_some(), "subscription {l}");
        }
    }

    #[tokio::test]
    async fn search_pages_and_filters_with_authentication() {
        let deliveries = history();
        let data = RestData::from_deliveries(&deliveries, CODE);
        let total = data.orders().count();
        let emu = spawn(data, RestAuth::new(CODE, key())).await.unwrap();
        let base = emu.url();
        let mut seen = Vec::new();
        for page in 1.. {
            let (status, body) = get(
                &format!("{base}orders/?StartDate=2025-01-01&Limit=7&Page={page}"),
                header(CODE, Algorithm::Sha256),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["Pagination"]["Count"], total);
            assert_eq!(body["Pagination"]["Limit"], 7);
            let items = body["Items"].as_array().unwrap();
            if items.is_empty() {
                break;
            }
            assert!(items.len() <= 7);
            seen.extend(
                items
                    .iter()
                    .map(|o| o["RefNo"].as_str().unwrap().to_owned()),
            );
            assert!(items.iter().all(|o| o.get("_seq").is_none()));
        }
        assert_eq!(seen.len(), total);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), total, "no order on two pages");

        // Status filter and date window.
        let (_, body) = get(
            &format!("{base}orders/?StartDate=2025-01-01&Status=REFUND&Limit=200"),
            header(CODE, Algorithm::Sha3_256),
        )
        .await;
        let items = body["Items"].as_array().unwrap();
        assert!(!items.is_empty());
        assert!(items.iter().all(|o| o["Status"] == "REFUND"));
        let (_, body) = get(
            &format!("{base}orders/?StartDate=2030-01-01"),
            header(CODE, Algorithm::Sha256),
        )
        .await;
        assert_eq!(body["Pagination"]["Count"], 0);

        // One order, one subscription.
        let refno = &deliveries[0].reference;
        let (status, body) = get(
            &format!("{base}orders/{refno}/"),
            header(CODE, Algorithm::Md5),
        )
        .await;
        assert_eq!(
            (status, body["RefNo"].as_str()),
            (200, Some(refno.as_str()))
        );
        let (status, body) =
            get(&format!("{base}orders/1/"), header(CODE, Algorithm::Sha256)).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (404, Some("NOT_FOUND"))
        );
        let (status, body) = get(
            &format!("{base}subscriptions/?Limit=3&Page=1"),
            header(CODE, Algorithm::Sha256),
        )
        .await;
        assert_eq!(status, 200);
        let sub = body["Items"][0]["SubscriptionReference"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, body) = get(
            &format!("{base}subscriptions/{sub}/"),
            header(CODE, Algorithm::Sha256),
        )
        .await;
        assert_eq!(
            (status, body["SubscriptionReference"].as_str()),
            (200, Some(sub.as_str()))
        );
        let (_, body) = get(
            &format!("{base}subscriptions/?SubscriptionReference={sub}"),
            header(CODE, Algorithm::Sha256),
        )
        .await;
        assert_eq!(body["Pagination"]["Count"], 1);

        // Authentication.
        for bad in [
            None,
            header("OTHER", Algorithm::Sha256),
            Some(authentication_header(
                CODE,
                &SecretKey::from("wrong".to_owned()),
                Algorithm::Sha256,
                Utc::now().naive_utc(),
            )),
            Some(authentication_header(
                CODE,
                &key(),
                Algorithm::Sha256,
                Utc::now().naive_utc() - chrono::Duration::hours(1),
            )),
        ] {
            let (status, body) = get(&format!("{base}orders/?StartDate=2025-01-01"), bad).await;
            assert_eq!(status, 401);
            assert_eq!(body["error_code"], "AUTHENTICATION_ERROR");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        // Paths need the trailing slash; bad parameters are 400.
        let (status, _) = get(&format!("{base}orders"), header(CODE, Algorithm::Sha256)).await;
        assert_eq!(status, 404);
        let (status, body) = get(
            &format!("{base}orders/?StartDate=yesterday"),
            header(CODE, Algorithm::Sha256),
        )
        .await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (400, Some("INVALID_PARAMETER"))
        );
        // Injected faults.
        emu.state().fail_next(1, 503);
        let (status, _) = get(
            &format!("{base}orders/{refno}/"),
            header(CODE, Algorithm::Sha256),
        )
        .await;
        assert_eq!(status, 503);
        let (status, _) = get(
            &format!("{base}orders/{refno}/"),
            header(CODE, Algorithm::Sha256),
        )
        .await;
        assert_eq!(status, 200);
        emu.shutdown().await;
    }
}
