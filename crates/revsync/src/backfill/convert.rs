//! REST 6.0 order objects (reference §4.3) → the typed notifications the ledger already
//! understands. Pure.
//!
//! A REST order is a snapshot: it has the current status and the order's own data but no
//! event history. It becomes the IPNs that would have produced that state:
//! - `REFUND` → a `COMPLETE` IPN with the order data, then a `REFUND` IPN **without an
//!   amount** (the order object carries no refunded amount — reference §4.3 lists none — so
//!   refund amounts come only from refund IPNs; a refund entry without an amount is recorded
//!   but not counted in the refunded total);
//! - `REVERSED` → `PAYMENT_AUTHORIZED` with the data, then `REVERSED` without an amount;
//! - any other status → one IPN with that status and the data.
//!
//! Each synthetic IPN has a stable, **negative** event id derived from the `RefNo` and its
//! role, so applying the same order twice changes nothing (the ledger is idempotent per event
//! id) and live notifications (positive ids) win every tie. Its notification time is the
//! order date, which is never later than a live notification of the same order: backfill
//! fills what the ledger lacks and never overrides what live IPNs said at the same status.

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use serde_json::Value;
use sha2::{Digest, Sha256};
use twocheckout::money::{parse_decimal, Currency, Money};
use twocheckout::notification::{
    Customer, FraudStatus, FxInfo, Ipn, License, LicenseType, LineItem, Notification, OrderRef,
    OrderStatus, PaymentMethod,
};

const DATE_TIME: &str = "%Y-%m-%d %H:%M:%S";

/// A REST order that cannot be used; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("order {refno}: {field}: {problem}")]
pub struct ConvertError {
    pub refno: String,
    pub field: String,
    pub problem: String,
}

/// The parts of a REST order revsync uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestOrder {
    pub refno: String,
    pub status: OrderStatus,
    pub currency: Option<Currency>,
    /// `GrossPrice`, rounded to the currency's minor unit.
    pub gross: Option<Decimal>,
    /// `VAT`, rounded.
    pub vat: Option<Decimal>,
    pub order_date: Option<NaiveDateTime>,
    pub finish_date: Option<NaiveDateTime>,
    pub test: bool,
    /// The data as an IPN would carry it (status = the data IPN's status).
    pub ipn: Ipn,
}

fn s(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => parse_decimal(&n.to_string()),
        Value::String(t) => parse_decimal(t.trim()),
        _ => None,
    }
}

fn date(v: &Value) -> Option<NaiveDateTime> {
    let t = s(v)?;
    NaiveDateTime::parse_from_str(&t, DATE_TIME)
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(&t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

fn boolean(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64() == Some(1),
        Value::String(t) => matches!(t.as_str(), "1" | "true" | "TRUE" | "YES"),
        _ => false,
    }
}

impl RestOrder {
    /// Reads an order object. Unknown fields are ignored; an amount without a currency, a
    /// missing `RefNo` or an unreadable amount is an error.
    pub fn from_json(v: &Value) -> Result<RestOrder, ConvertError> {
        let refno = s(&v["RefNo"]).ok_or_else(|| ConvertError {
            refno: "?".into(),
            field: "RefNo".into(),
            problem: "missing".into(),
        })?;
        let err = |field: &str, problem: String| ConvertError {
            refno: refno.clone(),
            field: field.to_owned(),
            problem,
        };
        let currency = match s(&v["Currency"]) {
            None => None,
            Some(c) => Some(Currency::from_code(&c).map_err(|e| err("Currency", e.to_string()))?),
        };
        let money = |field: &str, x: &Value| -> Result<Option<Money>, ConvertError> {
            if x.is_null() {
                return Ok(None);
            }
            let d = decimal(x).ok_or_else(|| err(field, format!("{x} is not a decimal")))?;
            let c = currency.ok_or_else(|| err(field, "amount without Currency".into()))?;
            Ok(Some(Money::new(d, c)))
        };
        let status = s(&v["Status"])
            .map(|t| OrderStatus::from_wire(&t))
            .ok_or_else(|| err("Status", "missing".into()))?;
        let b = &v["BillingDetails"];
        let cd = &v["CustomerDetails"];
        let customer = Customer {
            first_name: s(&b["FirstName"]).or_else(|| s(&cd["FirstName"])),
            last_name: s(&b["LastName"]).or_else(|| s(&cd["LastName"])),
            company: s(&b["Company"]).or_else(|| s(&cd["Company"])),
            email: s(&b["Email"]).or_else(|| s(&cd["Email"])),
            phone: s(&b["Phone"]),
            address1: s(&b["Address1"]),
            address2: s(&b["Address2"]),
            city: s(&b["City"]),
            state: s(&b["State"]),
            zip: s(&b["Zip"]),
            country: None,
            country_code: s(&b["CountryCode"]),
            language: s(&v["Language"]),
            avangate_reference: s(&cd["AvangateCustomerReference"]),
            external_reference: s(&cd["ExternalCustomerReference"]),
        };
        let pm = &v["PaymentDetails"];
        let payment = PaymentMethod {
            label: None,
            code: s(&pm["Type"]),
            card_type: s(&pm["PaymentMethod"]["CardType"]),
            card_last_digits: s(&pm["PaymentMethod"]["LastDigits"]),
            card_expiration: None,
            gateway_response: None,
        };
        let payout_currency = s(&v["PayoutCurrency"]).and_then(|c| Currency::from_code(&c).ok());
        let gross = money("GrossPrice", &v["GrossPrice"])?;
        let vat = money("VAT", &v["VAT"])?;
        let mut items = Vec::new();
        for (i, it) in v["Items"].as_array().into_iter().flatten().enumerate() {
            let price = &it["Price"];
            let f = |name: &str| format!("Items[{i}].Price.{name}");
            let sub = &it["ProductDetails"]["Subscriptions"][0];
            let license = s(&sub["SubscriptionReference"]).map(|reference| License {
                reference: Some(reference),
                license_type: Some(if boolean(&sub["Trial"]) || boolean(&it["Trial"]) {
                    LicenseType::Trial
                } else {
                    LicenseType::Regular
                }),
                product: None,
                start: date(&sub["SubscriptionStartDate"]),
                expiration: date(&sub["ExpirationDate"]),
                lifetime: boolean(&sub["Lifetime"]),
            });
            items.push(LineItem {
                product_id: s(&it["ProductId"]).or_else(|| s(&it["ProductDetails"]["ProductId"])),
                name: s(&it["ProductDetails"]["Name"]),
                code: s(&it["Code"]),
                external_reference: s(&it["ExternalReference"]),
                sku: s(&it["SKU"]),
                quantity: it["Quantity"].as_i64(),
                unit_price: money(&f("UnitNetPrice"), &price["UnitNetPrice"])?,
                vat: money(&f("VAT"), &price["VAT"])?,
                vat_rate: decimal(&price["VATPercent"]),
                discount: money(&f("Discount"), &price["Discount"])?,
                total: money(&f("GrossPrice"), &price["GrossPrice"])?,
                license,
            });
        }
        let order_date = date(&v["OrderDate"]);
        let finish_date = date(&v["FinishDate"]);
        let test = boolean(&v["TestOrder"]);
        let fraud_status = match s(&v["ApproveStatus"]).as_deref() {
            Some("OK") => Some(FraudStatus::Approved),
            Some("FRAUD") => Some(FraudStatus::Denied),
            Some("WAITING") => Some(FraudStatus::Pending),
            _ => None,
        };
        let original_external_references = v["ExtraInformation"]["OriginalRefNoExt"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(s)
            .collect();
        let ipn = Ipn {
            reference: OrderRef::new(&refno).ok_or_else(|| err("RefNo", "empty".into()))?,
            external_reference: s(&v["ExternalReference"]),
            original_external_references,
            order_number: s(&v["OrderNo"]),
            status: status.clone(),
            message_type: None,
            message_id: None,
            // The order date: never later than a live notification (see the module doc).
            ipn_date: order_date,
            sale_date: order_date,
            payment_date: finish_date,
            complete_date: finish_date,
            timezone_offset: None,
            test_order: test,
            fraud_status,
            customer,
            payment,
            currency,
            total: gross,
            shipping: None,
            shipping_tax: None,
            commission: None,
            fx: FxInfo {
                rate: decimal(&v["FxRate"]),
                markup: decimal(&v["FxMarkup"]),
                payout_currency,
                payable: None,
            },
            items,
            refund_type: None,
            chargeback: None,
        };
        Ok(RestOrder {
            refno,
            status,
            currency,
            gross: gross.map(|m| m.round().amount),
            vat: vat.map(|m| m.round().amount),
            order_date,
            finish_date,
            test,
            ipn,
        })
    }

    /// The ledger records this order touches.
    pub fn touched(&self) -> crate::ledger::Touched {
        crate::ledger::touched(&Notification::Ipn(self.ipn.clone()))
    }

    /// The synthetic notifications that produce this order's state, in order, each with its
    /// stable negative event id.
    pub fn notifications(&self) -> Vec<(i64, Notification)> {
        let data_status = match self.status {
            OrderStatus::Refund => Some(OrderStatus::Complete),
            OrderStatus::Reversed => Some(OrderStatus::PaymentAuthorized),
            _ => None,
        };
        match data_status {
            None => vec![(
                synthetic_event_id(&self.refno, "data"),
                Notification::Ipn(self.ipn.clone()),
            )],
            Some(data) => {
                let mut with_data = self.ipn.clone();
                with_data.status = data;
                let mut fin = self.ipn.clone();
                fin.status = self.status.clone();
                fin.total = None;
                fin.items.clear();
                fin.fx = FxInfo::default();
                vec![
                    (
                        synthetic_event_id(&self.refno, "data"),
                        Notification::Ipn(with_data),
                    ),
                    (
                        synthetic_event_id(&self.refno, self.status.as_str()),
                        Notification::Ipn(fin),
                    ),
                ]
            }
        }
    }
}

/// A stable negative event id for `(refno, role)`: never an event-log id (those are
/// positive), the same on every run.
pub fn synthetic_event_id(refno: &str, role: &str) -> i64 {
    let digest = Sha256::digest(format!("backfill\0{refno}\0{role}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    let n = u64::from_be_bytes(bytes) & 0x3fff_ffff_ffff_ffff;
    -(n as i64) - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn order(status: &str) -> Value {
        json!({
            "RefNo": "230000123", "OrderNo": 1042, "Status": status, "ApproveStatus": "OK",
            "Language": "en", "OrderDate": "2025-01-06 09:00:00", "FinishDate": "2025-01-06 09:01:35",
            "Currency": "JPY", "GrossPrice": 11000, "VAT": 1000, "TestOrder": false,
            "BillingDetails": {"FirstName": "Aiko", "LastName": "Sato", "Email": "aiko@example.jp", "CountryCode": "jp"},
            "CustomerDetails": {"AvangateCustomerReference": "9001"},
            "PaymentDetails": {"Type": "CCVISAMC", "PaymentMethod": {"LastDigits": "1111", "CardType": "visa"}},
            "Items": [{
                "ProductDetails": {"Name": "Pro", "Subscriptions": [{"SubscriptionReference": "SUB1", "Trial": false,
                    "SubscriptionStartDate": "2025-01-06 09:00:00", "ExpirationDate": "2026-01-06 09:00:00"}]},
                "Price": {"UnitNetPrice": 10000, "VAT": 1000, "VATPercent": 10, "GrossPrice": 11000, "Discount": 0},
                "Quantity": 1, "SKU": "SKU-PRO", "Code": "PRO"
            }]
        })
    }

    #[test]
    fn a_complete_order_is_one_complete_ipn() {
        let o = RestOrder::from_json(&order("COMPLETE")).unwrap();
        assert_eq!(o.gross, Some(Decimal::new(11000, 0)));
        let n = o.notifications();
        assert_eq!(n.len(), 1);
        let Notification::Ipn(ipn) = &n[0].1 else {
            panic!()
        };
        assert_eq!(ipn.status, OrderStatus::Complete);
        assert_eq!(ipn.customer.key().as_deref(), Some("9001"));
        assert_eq!(ipn.license_references(), vec!["SUB1"]);
        assert!(n[0].0 < 0);
    }

    #[test]
    fn a_refunded_order_is_complete_then_a_refund_without_amount() {
        let o = RestOrder::from_json(&order("REFUND")).unwrap();
        let n = o.notifications();
        let statuses: Vec<_> = n
            .iter()
            .map(|(_, n)| match n {
                Notification::Ipn(i) => (i.status.clone(), i.total.is_some()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            statuses,
            vec![(OrderStatus::Complete, true), (OrderStatus::Refund, false)]
        );
        assert_ne!(n[0].0, n[1].0);
    }

    #[test]
    fn bad_orders_name_the_field() {
        let mut v = order("COMPLETE");
        v["GrossPrice"] = json!("12,5");
        assert_eq!(RestOrder::from_json(&v).unwrap_err().field, "GrossPrice");
        let mut v = order("COMPLETE");
        v["Currency"] = Value::Null;
        assert_eq!(RestOrder::from_json(&v).unwrap_err().field, "GrossPrice");
        let mut v = order("COMPLETE");
        v["RefNo"] = Value::Null;
        assert_eq!(RestOrder::from_json(&v).unwrap_err().field, "RefNo");
    }

    proptest! {
        #[test]
        fn synthetic_ids_are_negative_and_stable(refno in "[0-9A-Z]{1,12}", role in "[a-z]{1,8}") {
            let a = synthetic_event_id(&refno, &role);
            prop_assert!(a < 0);
            prop_assert_eq!(a, synthetic_event_id(&refno, &role));
        }

        #[test]
        fn json_amounts_survive_exactly(cents in 0i64..100_000_000_000) {
            let d = Decimal::new(cents, 2);
            let mut v = order("COMPLETE");
            v["Currency"] = json!("USD");
            v["GrossPrice"] = tco_emulator::rest::decimal_json(d);
            let o = RestOrder::from_json(&v).unwrap();
            prop_assert_eq!(o.gross, Some(d));
        }
    }
}
