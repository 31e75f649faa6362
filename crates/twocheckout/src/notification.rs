//! Typed notifications: what an IPN, LCN or INS form body means, once parsed
//! ("parse, don't validate"). Field names and values follow reference §1-§3.
//!
//! Leniency rules:
//! - unknown fields are ignored here (they are still part of the signature);
//! - unknown enum values are kept verbatim in an `Unknown(String)` variant;
//! - empty values count as absent;
//! - fields documented as arrays may also arrive as a scalar (one element);
//! - amounts are exact decimals (never floats) and always carry a currency: an amount
//!   whose currency field is missing is an error.

use std::fmt;
use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::form::{FieldValue, FormBody};
use crate::money::{canonical_decimal, parse_decimal, Currency, Money};
use crate::signature::push_len_prefixed;

/// `Y-m-d H:i:s`, the format of IPN/LCN dates.
pub const DATE_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// `YmdHis`, the format of `IPN_DATE`.
pub const IPN_DATE_FORMAT: &str = "%Y%m%d%H%M%S";
/// Upper bound for legacy INS `item_count`.
pub const MAX_INS_ITEMS: usize = 1000;

// ---------------------------------------------------------------------------------
// Kind

/// The three notification families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Instant Payment Notification (orders).
    Ipn,
    /// License Change Notification (subscriptions).
    Lcn,
    /// Legacy Instant Notification Service.
    Ins,
}

impl Kind {
    /// `ipn`, `lcn` or `ins`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ipn => "ipn",
            Kind::Lcn => "lcn",
            Kind::Ins => "ins",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notification kind other than `ipn`, `lcn`, `ins`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown notification kind {0:?}: expected ipn, lcn or ins")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;
    /// Case-insensitive `ipn`, `lcn`, `ins`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Kind::Ipn, Kind::Lcn, Kind::Ins]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

// ---------------------------------------------------------------------------------
// Errors

/// A field whose value cannot be understood. Each variant names the field; the
/// delivery is well-signed but unusable: keep it (quarantine) and report the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A required field is absent.
    #[error("field {field}: missing")]
    Missing {
        /// Field name.
        field: String,
    },
    /// A required field is present but empty.
    #[error("field {field}: empty")]
    Empty {
        /// Field name.
        field: String,
    },
    /// A single-valued field arrived as an array (`NAME[]=…`).
    #[error("field {field}: expected a single value, got an array")]
    NotScalar {
        /// Field name.
        field: String,
    },
    /// Not a plain decimal number.
    #[error("field {field}: {value:?} is not a decimal number")]
    InvalidDecimal {
        /// Field name.
        field: String,
        /// The value received.
        value: String,
    },
    /// Not a whole number (or out of range).
    #[error("field {field}: {value:?} is not a whole number in range")]
    InvalidInteger {
        /// Field name.
        field: String,
        /// The value received.
        value: String,
    },
    /// Not a date in the documented format.
    #[error("field {field}: {value:?} is not a date ({expected})")]
    InvalidDate {
        /// Field name.
        field: String,
        /// The value received.
        value: String,
        /// The accepted format(s).
        expected: &'static str,
    },
    /// Not an active ISO 4217 currency code.
    #[error("field {field}: {value:?} is not an ISO 4217 currency code")]
    InvalidCurrency {
        /// Field name.
        field: String,
        /// The value received.
        value: String,
    },
    /// Not a recognised boolean (`0`/`1`, `YES`/`NO`, `true`/`false`).
    #[error("field {field}: {value:?} is not a flag (0/1, YES/NO)")]
    InvalidFlag {
        /// Field name.
        field: String,
        /// The value received.
        value: String,
    },
    /// An amount is present but its currency field is missing.
    #[error("field {field}: amount present but {currency_field} is missing")]
    AmountWithoutCurrency {
        /// The amount field.
        field: String,
        /// The currency field it needs.
        currency_field: &'static str,
    },
    /// A per-line-item array has a different number of elements than the others.
    #[error("field {field}: {found} elements, expected {expected} (one per line item)")]
    ArrayLength {
        /// Field name.
        field: String,
        /// Number of line items.
        expected: usize,
        /// Number of elements received.
        found: usize,
    },
}

// ---------------------------------------------------------------------------------
// Field reader

struct Reader<'a> {
    form: &'a FormBody,
}

fn flag_value(v: &str) -> Option<bool> {
    match v.trim().to_ascii_uppercase().as_str() {
        "1" | "YES" | "TRUE" | "Y" => Some(true),
        "0" | "NO" | "FALSE" | "N" => Some(false),
        _ => None,
    }
}

fn parse_date_time(value: &str) -> Option<Option<NaiveDateTime>> {
    let v = value.trim();
    if v.is_empty() || v.starts_with("0000-00-00") {
        return Some(None);
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(v, DATE_TIME_FORMAT) {
        return Some(Some(dt));
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .map(|d| Some(d.and_time(chrono::NaiveTime::MIN)))
}

impl<'a> Reader<'a> {
    /// A scalar field; `None` when absent or empty. Arrays are an error.
    fn opt(&self, name: &str) -> Result<Option<&'a str>, FieldError> {
        match self.form.field(name) {
            None => Ok(None),
            Some(FieldValue::Array(_)) => Err(FieldError::NotScalar {
                field: name.to_owned(),
            }),
            Some(FieldValue::Scalar(v)) if v.is_empty() => Ok(None),
            Some(FieldValue::Scalar(v)) => Ok(Some(v)),
        }
    }

    fn string(&self, name: &str) -> Result<Option<String>, FieldError> {
        Ok(self.opt(name)?.map(str::to_owned))
    }

    fn required(&self, name: &str) -> Result<&'a str, FieldError> {
        match self.form.field(name) {
            None => Err(FieldError::Missing {
                field: name.to_owned(),
            }),
            Some(FieldValue::Scalar(v)) if v.trim().is_empty() => Err(FieldError::Empty {
                field: name.to_owned(),
            }),
            _ => Ok(self.opt(name)?.unwrap_or_default()),
        }
    }

    /// Elements of a (possibly scalar) list field.
    fn list(&self, name: &str) -> &'a [String] {
        self.form.field(name).map(FieldValue::values).unwrap_or(&[])
    }

    fn decimal_value(name: &str, v: &str) -> Result<Option<Decimal>, FieldError> {
        if v.is_empty() {
            return Ok(None);
        }
        parse_decimal(v)
            .map(Some)
            .ok_or_else(|| FieldError::InvalidDecimal {
                field: name.to_owned(),
                value: v.to_owned(),
            })
    }

    fn decimal(&self, name: &str) -> Result<Option<Decimal>, FieldError> {
        Self::decimal_value(name, self.opt(name)?.unwrap_or(""))
    }

    fn money_value(
        name: &str,
        v: &str,
        currency: Option<Currency>,
        currency_field: &'static str,
    ) -> Result<Option<Money>, FieldError> {
        let Some(amount) = Self::decimal_value(name, v)? else {
            return Ok(None);
        };
        let currency = currency.ok_or_else(|| FieldError::AmountWithoutCurrency {
            field: name.to_owned(),
            currency_field,
        })?;
        Ok(Some(Money::new(amount, currency)))
    }

    fn money(
        &self,
        name: &str,
        currency: Option<Currency>,
        currency_field: &'static str,
    ) -> Result<Option<Money>, FieldError> {
        Self::money_value(
            name,
            self.opt(name)?.unwrap_or(""),
            currency,
            currency_field,
        )
    }

    fn currency(&self, name: &str) -> Result<Option<Currency>, FieldError> {
        self.opt(name)?
            .map(|v| {
                Currency::from_code(v).map_err(|_| FieldError::InvalidCurrency {
                    field: name.to_owned(),
                    value: v.to_owned(),
                })
            })
            .transpose()
    }

    fn integer_value<T: FromStr>(name: &str, v: &str) -> Result<Option<T>, FieldError> {
        if v.is_empty() {
            return Ok(None);
        }
        v.trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| FieldError::InvalidInteger {
                field: name.to_owned(),
                value: v.to_owned(),
            })
    }

    fn integer<T: FromStr>(&self, name: &str) -> Result<Option<T>, FieldError> {
        Self::integer_value(name, self.opt(name)?.unwrap_or(""))
    }

    fn flag_of(name: &str, v: &str) -> Result<Option<bool>, FieldError> {
        if v.is_empty() {
            return Ok(None);
        }
        flag_value(v)
            .map(Some)
            .ok_or_else(|| FieldError::InvalidFlag {
                field: name.to_owned(),
                value: v.to_owned(),
            })
    }

    fn flag(&self, name: &str) -> Result<Option<bool>, FieldError> {
        Self::flag_of(name, self.opt(name)?.unwrap_or(""))
    }

    fn date_time_value(name: &str, v: &str) -> Result<Option<NaiveDateTime>, FieldError> {
        parse_date_time(v).ok_or_else(|| FieldError::InvalidDate {
            field: name.to_owned(),
            value: v.to_owned(),
            expected: "Y-m-d H:i:s or Y-m-d",
        })
    }

    fn date_time(&self, name: &str) -> Result<Option<NaiveDateTime>, FieldError> {
        Self::date_time_value(name, self.opt(name)?.unwrap_or(""))
    }

    fn ipn_date(&self, name: &str) -> Result<Option<NaiveDateTime>, FieldError> {
        let Some(v) = self.opt(name)? else {
            return Ok(None);
        };
        if v.len() != 14 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldError::InvalidDate {
                field: name.to_owned(),
                value: v.to_owned(),
                expected: "YmdHis",
            });
        }
        NaiveDateTime::parse_from_str(v, IPN_DATE_FORMAT)
            .map(Some)
            .map_err(|_| FieldError::InvalidDate {
                field: name.to_owned(),
                value: v.to_owned(),
                expected: "YmdHis",
            })
    }

    fn date(&self, name: &str) -> Result<Option<NaiveDate>, FieldError> {
        let Some(v) = self.opt(name)? else {
            return Ok(None);
        };
        if v.starts_with("0000-00-00") {
            return Ok(None);
        }
        NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
            .map(Some)
            .map_err(|_| FieldError::InvalidDate {
                field: name.to_owned(),
                value: v.to_owned(),
                expected: "Y-m-d",
            })
    }
}

fn non_empty(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_owned())
}

// ---------------------------------------------------------------------------------
// Lenient wire enums

fn normalize_token(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| match c {
            ' ' | '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $canon:literal $(| $alias:literal)* ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this version does not know, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// Read a wire value: case-insensitive, spaces, `-` and `_` equivalent;
            /// anything else becomes `Unknown`.
            pub fn from_wire(s: &str) -> $name {
                let norm = normalize_token(s);
                $(
                    if norm == normalize_token($canon) $(|| norm == normalize_token($alias))* {
                        return $name::$variant;
                    }
                )*
                $name::Unknown(s.trim().to_owned())
            }

            /// The canonical wire spelling (the raw value for `Unknown`).
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $canon, )*
                    $name::Unknown(s) => s,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// IPN `ORDERSTATUS` (reference §1.3).
    OrderStatus {
        /// Placed, waiting for authorization or offline payment.
        Pending => "PENDING",
        /// Purchase-order flow: approved, not paid yet.
        PurchasePending => "PURCHASE_PENDING",
        /// Waiting for 2Checkout processing / anti-fraud review.
        PendingApproval => "PENDING_APPROVAL",
        /// Bank authorized the payment.
        PaymentAuthorized => "PAYMENT_AUTHORIZED",
        /// Offline payment received.
        PaymentReceived => "PAYMENT_RECEIVED",
        /// Waiting for delivery confirmation.
        PendingOrderApproval => "PENDING_ORDER_APPROVAL",
        /// Amount blocked, collection not finished.
        AuthReceived => "AUTHRECEIVED",
        /// Finished and fulfilled.
        Complete => "COMPLETE",
        /// Refunded (full or partial).
        Refund => "REFUND",
        /// Authorization reversed before capture.
        Reversed => "REVERSED",
        /// Cancelled by the merchant or 2Checkout.
        Canceled => "CANCELED" | "CANCELLED",
        /// Fraud suspect (meaning UNCONFIRMED).
        Suspect => "SUSPECT",
        /// Invalid data (meaning UNCONFIRMED).
        Invalid => "INVALID",
        /// Discontinued test-order status.
        Processing => "PROCESSING",
        /// Discontinued test-order status.
        Test => "TEST",
    }
}

impl OrderStatus {
    /// Position in the forward-only order life cycle. An order's status should only be
    /// replaced by one of strictly higher rank; equal ranks are alternatives at the same
    /// stage (e.g. `REFUND`/`REVERSED`/`CANCELED` are all final).
    ///
    /// | rank | statuses |
    /// |---|---|
    /// | 0 | `Unknown` (never moves an order) |
    /// | 5 | `PROCESSING`, `TEST` (discontinued) |
    /// | 10 | `PENDING`, `PURCHASE_PENDING` |
    /// | 20 | `PENDING_APPROVAL`, `SUSPECT`, `INVALID` |
    /// | 30 | `PAYMENT_AUTHORIZED`, `AUTHRECEIVED`, `PAYMENT_RECEIVED` |
    /// | 40 | `PENDING_ORDER_APPROVAL` |
    /// | 50 | `COMPLETE` |
    /// | 60 | `REFUND`, `REVERSED`, `CANCELED` |
    pub fn rank(&self) -> u8 {
        match self {
            OrderStatus::Unknown(_) => 0,
            OrderStatus::Processing | OrderStatus::Test => 5,
            OrderStatus::Pending | OrderStatus::PurchasePending => 10,
            OrderStatus::PendingApproval | OrderStatus::Suspect | OrderStatus::Invalid => 20,
            OrderStatus::PaymentAuthorized
            | OrderStatus::AuthReceived
            | OrderStatus::PaymentReceived => 30,
            OrderStatus::PendingOrderApproval => 40,
            OrderStatus::Complete => 50,
            OrderStatus::Refund | OrderStatus::Reversed | OrderStatus::Canceled => 60,
        }
    }

    /// `REFUND`, `REVERSED` or `CANCELED`.
    pub fn is_final(&self) -> bool {
        self.rank() == 60
    }
}

wire_enum! {
    /// IPN `FRAUD_STATUS` (reference §1.4; full list UNCONFIRMED).
    FraudStatus {
        /// Go ahead.
        Approved => "APPROVED",
        /// Do not fulfil.
        Denied => "DENIED",
        /// Not decided yet.
        Pending => "PENDING",
        /// Manual review.
        UnderReview => "UNDER REVIEW",
    }
}

wire_enum! {
    /// `IPN_LICENSE_TYPE[]` / LCN `LICENSE_TYPE`.
    LicenseType {
        /// Paid subscription.
        Regular => "REGULAR",
        /// Free trial.
        Trial => "TRIAL",
    }
}

wire_enum! {
    /// LCN `STATUS` (spellings UNCONFIRMED; parsed leniently).
    SubscriptionStatus {
        /// Active.
        Active => "ACTIVE",
        /// Disabled (cancelled).
        Disabled => "DISABLED",
        /// Expired.
        Expired => "EXPIRED",
        /// Expired, in grace period, renewal payment failed.
        PastDue => "PAST DUE" | "PASTDUE",
        /// Start date not reached.
        PendingActivation => "PENDING ACTIVATION" | "PENDINGACTIVATION",
        /// ASSUMED: not documented, accepted in case it is sent.
        Canceled => "CANCELED" | "CANCELLED",
    }
}

wire_enum! {
    /// LCN dispatch reason (reference §3.1). The field name is UNCONFIRMED; it is read
    /// from `DISPATCH_REASON` (ASSUMED).
    DispatchReason {
        /// Expiration date, recurring flag, end-user details, cancel/reactivate, ….
        LicenceChange => "LICENCE_CHANGE",
        /// Grace-period change.
        LicenceGpChange => "LICENCE_GP_CHANGE",
        /// Pending activation.
        PendingActivation => "LICENCE_PENDING_ACTIVATION",
        /// Expired.
        Expiration => "LICENCE_EXPIRATION",
        /// Past due (renewal failed, in grace period).
        PastDue => "LICENCE_PASTDUE",
        /// Churn-prevention offer accepted.
        CpcAccepted => "LICENCE_CPC_ACCEPTED",
        /// Cancellation scheduled.
        ScheduledForCancelation => "SCHEDULED_FOR_CANCELATION_ON_DEMAND",
        /// Scheduled cancellation reverted.
        RevertCancelation => "REVERT_CANCELATION_ON_DEMAND",
    }
}

wire_enum! {
    /// LCN `CHANGED_BY`.
    ChangedBy {
        /// The shopper.
        Customer => "CUSTOMER",
        /// The merchant.
        Vendor => "VENDOR",
        /// 2Checkout.
        System => "SYSTEM",
    }
}

wire_enum! {
    /// Legacy INS `message_type` (reference §3.3).
    InsMessageType {
        /// New sale.
        OrderCreated => "ORDER_CREATED",
        /// Fraud review finished.
        FraudStatusChanged => "FRAUD_STATUS_CHANGED",
        /// Shipping status changed.
        ShipStatusChanged => "SHIP_STATUS_CHANGED",
        /// Invoice status changed.
        InvoiceStatusChanged => "INVOICE_STATUS_CHANGED",
        /// Refund (one per item or partial refund).
        RefundIssued => "REFUND_ISSUED",
        /// Recurring charge succeeded.
        RecurringInstallmentSuccess => "RECURRING_INSTALLMENT_SUCCESS",
        /// Recurring charge failed (declined card).
        RecurringInstallmentFailed => "RECURRING_INSTALLMENT_FAILED",
        /// Recurring billing stopped.
        RecurringStopped => "RECURRING_STOPPED",
        /// Recurring billing finished.
        RecurringComplete => "RECURRING_COMPLETE",
        /// Recurring billing restarted.
        RecurringRestarted => "RECURRING_RESTARTED",
    }
}

wire_enum! {
    /// Legacy INS `fraud_status`.
    InsFraudStatus {
        /// Passed.
        Pass => "pass",
        /// Failed.
        Fail => "fail",
        /// Under review.
        Wait => "wait",
    }
}

// ---------------------------------------------------------------------------------
// Shared value types

/// A non-empty reference (order `REFNO`, `LICENSE_CODE`, `sale_id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderRef(String);

impl OrderRef {
    /// `None` for an empty or blank value.
    pub fn new(s: &str) -> Option<OrderRef> {
        let t = s.trim();
        (!t.is_empty()).then(|| OrderRef(t.to_owned()))
    }

    /// The reference text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn reference(r: &Reader<'_>, name: &str) -> Result<OrderRef, FieldError> {
    OrderRef::new(r.required(name)?).ok_or_else(|| FieldError::Empty {
        field: name.to_owned(),
    })
}

/// Customer / billing data. Empty fields are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Customer {
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Company.
    pub company: Option<String>,
    /// E-mail as received.
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
    /// Country name (IPN `COUNTRY`) or code as sent.
    pub country: Option<String>,
    /// ISO 3166 alpha-2 country code, upper-cased (IPN sends it lower-case).
    pub country_code: Option<String>,
    /// Shopper language.
    pub language: Option<String>,
    /// `AVANGATE_CUSTOMER_REFERENCE` (2Checkout's customer id).
    pub avangate_reference: Option<String>,
    /// `EXTERNAL_CUSTOMER_REFERENCE` (the merchant's customer id).
    pub external_reference: Option<String>,
}

impl Customer {
    /// The e-mail trimmed and lower-cased.
    pub fn normalized_email(&self) -> Option<String> {
        self.email
            .as_deref()
            .map(|e| e.trim().to_lowercase())
            .filter(|e| !e.is_empty())
    }

    /// `AVANGATE_CUSTOMER_REFERENCE`, else the normalised e-mail.
    pub fn key(&self) -> Option<String> {
        self.avangate_reference
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .or_else(|| self.normalized_email())
    }

    /// "First Last", when any part is present.
    pub fn full_name(&self) -> Option<String> {
        let parts: Vec<&str> = [&self.first_name, &self.last_name]
            .into_iter()
            .filter_map(|p| p.as_deref())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

/// Field names of one customer layout.
struct CustomerFields {
    first_name: &'static str,
    last_name: &'static str,
    company: &'static str,
    email: &'static str,
    phone: &'static str,
    address1: &'static str,
    address2: &'static str,
    city: &'static str,
    state: &'static str,
    zip: &'static str,
    country: &'static str,
    country_code: &'static str,
    language: &'static str,
}

const IPN_CUSTOMER: CustomerFields = CustomerFields {
    first_name: "FIRSTNAME",
    last_name: "LASTNAME",
    company: "COMPANY",
    email: "CUSTOMEREMAIL",
    phone: "PHONE",
    address1: "ADDRESS1",
    address2: "ADDRESS2",
    city: "CITY",
    state: "STATE",
    zip: "ZIPCODE",
    country: "COUNTRY",
    country_code: "COUNTRY_CODE",
    language: "LANGUAGE",
};

const LCN_CUSTOMER: CustomerFields = CustomerFields {
    first_name: "FIRST_NAME",
    last_name: "LAST_NAME",
    company: "COMPANY",
    email: "EMAIL",
    phone: "PHONE",
    address1: "ADDRESS",
    address2: "ADDRESS2",
    city: "CITY",
    state: "STATE",
    zip: "ZIP",
    country: "COUNTRY",
    country_code: "COUNTRY_CODE",
    language: "LANGUAGE",
};

const INS_CUSTOMER: CustomerFields = CustomerFields {
    first_name: "customer_first_name",
    last_name: "customer_last_name",
    company: "customer_company",
    email: "customer_email",
    phone: "customer_phone",
    address1: "bill_street_address",
    address2: "bill_street_address2",
    city: "bill_city",
    state: "bill_state",
    zip: "bill_postal_code",
    country: "bill_country",
    country_code: "customer_country_code",
    language: "customer_language",
};

fn customer(
    r: &Reader<'_>,
    f: &CustomerFields,
    refs: Option<(&str, &str)>,
) -> Result<Customer, FieldError> {
    let (avangate_reference, external_reference) = match refs {
        Some((a, e)) => (r.string(a)?, r.string(e)?),
        None => (None, None),
    };
    Ok(Customer {
        first_name: r.string(f.first_name)?,
        last_name: r.string(f.last_name)?,
        company: r.string(f.company)?,
        email: r.string(f.email)?,
        phone: r.string(f.phone)?,
        address1: r.string(f.address1)?,
        address2: r.string(f.address2)?,
        city: r.string(f.city)?,
        state: r.string(f.state)?,
        zip: r.string(f.zip)?,
        country: r.string(f.country)?,
        country_code: r
            .string(f.country_code)?
            .map(|c| c.trim().to_ascii_uppercase()),
        language: r.string(f.language)?,
        avangate_reference,
        external_reference,
    })
}

// ---------------------------------------------------------------------------------
// IPN

/// Payment method fields of an IPN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentMethod {
    /// `PAYMETHOD`, human label (e.g. `Visa/MasterCard`).
    pub label: Option<String>,
    /// `PAYMETHOD_CODE` (e.g. `CCVISAMC`).
    pub code: Option<String>,
    /// `CARD_TYPE`.
    pub card_type: Option<String>,
    /// `CARD_LAST_DIGITS`.
    pub card_last_digits: Option<String>,
    /// `CARD_EXPIRATION_DATE` (`MM/YY`).
    pub card_expiration: Option<String>,
    /// `GATEWAY_RESPONSE`.
    pub gateway_response: Option<String>,
}

/// Currency conversion and payout fields of an IPN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FxInfo {
    /// `FX_RATE`, order currency → payout currency.
    pub rate: Option<Decimal>,
    /// `FX_MARKUP` percent.
    pub markup: Option<Decimal>,
    /// `PAYOUT_CURRENCY`.
    pub payout_currency: Option<Currency>,
    /// `PAYABLE_AMOUNT` in the payout currency (may be negative).
    pub payable: Option<Money>,
}

/// Chargeback activity on an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chargeback {
    /// `CHARGEBACK_RESOLUTION` (anything but empty / `NONE`; value list UNCONFIRMED).
    pub resolution: String,
    /// `CHARGEBACK_REASON_CODE`.
    pub reason_code: Option<String>,
}

/// Subscription data of one line item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct License {
    /// `IPN_LICENSE_REF[]`, the subscription reference (empty while pending).
    pub reference: Option<String>,
    /// `IPN_LICENSE_TYPE[]`.
    pub license_type: Option<LicenseType>,
    /// `IPN_LICENSE_PROD[]`.
    pub product: Option<String>,
    /// `IPN_LICENSE_START[]`.
    pub start: Option<NaiveDateTime>,
    /// `IPN_LICENSE_EXP[]` (`9999-12-31 23:59:59` for lifetime).
    pub expiration: Option<NaiveDateTime>,
    /// `IPN_LICENSE_LIFETIME[]` = `YES`.
    pub lifetime: bool,
}

/// One product line of an IPN (index `i` of every `IPN_*[]` array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItem {
    /// `IPN_PID[]`.
    pub product_id: Option<String>,
    /// `IPN_PNAME[]`.
    pub name: Option<String>,
    /// `IPN_PCODE[]`, the merchant's product code.
    pub code: Option<String>,
    /// `IPN_EXTERNAL_REFERENCE[]`.
    pub external_reference: Option<String>,
    /// `IPN_SKU[]`.
    pub sku: Option<String>,
    /// `IPN_QTY[]` (may be negative on refunds, ASSUMED).
    pub quantity: Option<i64>,
    /// `IPN_PRICE[]`, unit price.
    pub unit_price: Option<Money>,
    /// `IPN_VAT[]`.
    pub vat: Option<Money>,
    /// `IPN_VAT_RATE[]` percent.
    pub vat_rate: Option<Decimal>,
    /// `IPN_DISCOUNT[]`.
    pub discount: Option<Money>,
    /// `IPN_TOTAL[]`, line total.
    pub total: Option<Money>,
    /// Licence data, when any `IPN_LICENSE_*[]` element of this line is non-empty.
    pub license: Option<License>,
}

/// An Instant Payment Notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipn {
    /// `REFNO`.
    pub reference: OrderRef,
    /// `REFNOEXT`.
    pub external_reference: Option<String>,
    /// Non-empty `ORIGINAL_REFNOEXT[]` elements (renewals only).
    pub original_external_references: Vec<String>,
    /// `ORDERNO`.
    pub order_number: Option<String>,
    /// `ORDERSTATUS`.
    pub status: OrderStatus,
    /// `MESSAGE_TYPE`.
    pub message_type: Option<String>,
    /// `MESSAGE_ID` (changes between resends).
    pub message_id: Option<String>,
    /// `IPN_DATE` (changes between resends).
    pub ipn_date: Option<NaiveDateTime>,
    /// `SALEDATE`.
    pub sale_date: Option<NaiveDateTime>,
    /// `PAYMENTDATE`.
    pub payment_date: Option<NaiveDateTime>,
    /// `COMPLETE_DATE`.
    pub complete_date: Option<NaiveDateTime>,
    /// `TIMEZONE_OFFSET` of the dates above (e.g. `GMT+03:00`), as sent.
    pub timezone_offset: Option<String>,
    /// `TEST_ORDER=1`.
    pub test_order: bool,
    /// `FRAUD_STATUS`.
    pub fraud_status: Option<FraudStatus>,
    /// Billing customer.
    pub customer: Customer,
    /// Payment method.
    pub payment: PaymentMethod,
    /// `CURRENCY`.
    pub currency: Option<Currency>,
    /// `IPN_TOTALGENERAL` (negative on refund/reversal).
    pub total: Option<Money>,
    /// `IPN_SHIPPING`.
    pub shipping: Option<Money>,
    /// `IPN_SHIPPING_TAX`.
    pub shipping_tax: Option<Money>,
    /// `IPN_COMMISSION`.
    pub commission: Option<Money>,
    /// FX and payout.
    pub fx: FxInfo,
    /// Product lines.
    pub items: Vec<LineItem>,
    /// `REFUND_TYPE` (values UNCONFIRMED).
    pub refund_type: Option<String>,
    /// Present when `CHARGEBACK_RESOLUTION` is non-empty and not `NONE`.
    pub chargeback: Option<Chargeback>,
}

impl Ipn {
    /// Renewal order: non-empty `ORIGINAL_REFNOEXT[]`.
    pub fn is_renewal(&self) -> bool {
        !self.original_external_references.is_empty()
    }

    /// Any line item with licence type `TRIAL`.
    pub fn is_trial(&self) -> bool {
        self.items.iter().any(|i| {
            i.license
                .as_ref()
                .is_some_and(|l| l.license_type == Some(LicenseType::Trial))
        })
    }

    /// `ORDERSTATUS=REFUND` or a non-empty `REFUND_TYPE`.
    pub fn is_refund(&self) -> bool {
        self.status == OrderStatus::Refund || self.refund_type.is_some()
    }

    /// Sum of `IPN_VAT[]` (plus `IPN_SHIPPING_TAX`), when any is present.
    pub fn tax_total(&self) -> Option<Money> {
        let mut parts = self
            .items
            .iter()
            .filter_map(|i| i.vat)
            .chain(self.shipping_tax);
        let first = parts.next()?;
        // Every amount was built with `self.currency`, so the sum cannot mismatch.
        parts.try_fold(first, |acc, m| acc.checked_add(&m).ok())
    }

    /// The subscription references of the order's line items.
    pub fn license_references(&self) -> Vec<&str> {
        self.items
            .iter()
            .filter_map(|i| i.license.as_ref()?.reference.as_deref())
            .collect()
    }

    fn parse(form: &FormBody) -> Result<Ipn, FieldError> {
        let r = Reader { form };
        let currency = r.currency("CURRENCY")?;
        let payout_currency = r.currency("PAYOUT_CURRENCY")?;
        let chargeback = match r.opt("CHARGEBACK_RESOLUTION")? {
            Some(v) if !v.trim().eq_ignore_ascii_case("NONE") => Some(Chargeback {
                resolution: v.trim().to_owned(),
                reason_code: r.string("CHARGEBACK_REASON_CODE")?,
            }),
            _ => None,
        };
        Ok(Ipn {
            reference: reference(&r, "REFNO")?,
            external_reference: r.string("REFNOEXT")?,
            original_external_references: r
                .list("ORIGINAL_REFNOEXT")
                .iter()
                .filter_map(|v| non_empty(v.trim()))
                .collect(),
            order_number: r.string("ORDERNO")?,
            status: OrderStatus::from_wire(r.required("ORDERSTATUS")?),
            message_type: r.string("MESSAGE_TYPE")?,
            message_id: r.string("MESSAGE_ID")?,
            ipn_date: r.ipn_date("IPN_DATE")?,
            sale_date: r.date_time("SALEDATE")?,
            payment_date: r.date_time("PAYMENTDATE")?,
            complete_date: r.date_time("COMPLETE_DATE")?,
            timezone_offset: r.string("TIMEZONE_OFFSET")?,
            test_order: r.flag("TEST_ORDER")?.unwrap_or(false),
            fraud_status: r.opt("FRAUD_STATUS")?.map(FraudStatus::from_wire),
            customer: customer(
                &r,
                &IPN_CUSTOMER,
                Some(("AVANGATE_CUSTOMER_REFERENCE", "EXTERNAL_CUSTOMER_REFERENCE")),
            )?,
            payment: PaymentMethod {
                label: r.string("PAYMETHOD")?,
                code: r.string("PAYMETHOD_CODE")?,
                card_type: r.string("CARD_TYPE")?,
                card_last_digits: r.string("CARD_LAST_DIGITS")?,
                card_expiration: r.string("CARD_EXPIRATION_DATE")?,
                gateway_response: r.string("GATEWAY_RESPONSE")?,
            },
            currency,
            total: r.money("IPN_TOTALGENERAL", currency, "CURRENCY")?,
            shipping: r.money("IPN_SHIPPING", currency, "CURRENCY")?,
            shipping_tax: r.money("IPN_SHIPPING_TAX", currency, "CURRENCY")?,
            commission: r.money("IPN_COMMISSION", currency, "CURRENCY")?,
            fx: FxInfo {
                rate: r.decimal("FX_RATE")?,
                markup: r.decimal("FX_MARKUP")?,
                payout_currency,
                payable: r.money("PAYABLE_AMOUNT", payout_currency, "PAYOUT_CURRENCY")?,
            },
            items: line_items(&r, currency)?,
            refund_type: r.string("REFUND_TYPE")?,
            chargeback,
        })
    }
}

/// Per-line-item arrays that are read; all present ones must have the same length.
const ITEM_ARRAYS: [&str; 17] = [
    "IPN_PID",
    "IPN_PNAME",
    "IPN_PCODE",
    "IPN_EXTERNAL_REFERENCE",
    "IPN_SKU",
    "IPN_QTY",
    "IPN_PRICE",
    "IPN_VAT",
    "IPN_VAT_RATE",
    "IPN_DISCOUNT",
    "IPN_TOTAL",
    "IPN_LICENSE_REF",
    "IPN_LICENSE_TYPE",
    "IPN_LICENSE_PROD",
    "IPN_LICENSE_START",
    "IPN_LICENSE_EXP",
    "IPN_LICENSE_LIFETIME",
];

fn line_items(r: &Reader<'_>, currency: Option<Currency>) -> Result<Vec<LineItem>, FieldError> {
    let expected = if r.form.field("IPN_PID").is_some() {
        r.list("IPN_PID").len()
    } else {
        ITEM_ARRAYS
            .iter()
            .map(|a| r.list(a).len())
            .max()
            .unwrap_or(0)
    };
    for name in ITEM_ARRAYS {
        let found = r.list(name).len();
        if r.form.field(name).is_some() && found != expected {
            return Err(FieldError::ArrayLength {
                field: format!("{name}[]"),
                expected,
                found,
            });
        }
    }
    let at = |name: &str, i: usize| -> &str { r.list(name).get(i).map_or("", String::as_str) };
    let field = |name: &str| format!("{name}[]");
    let money =
        |name: &str, i: usize| Reader::money_value(&field(name), at(name, i), currency, "CURRENCY");
    let mut items = Vec::with_capacity(expected);
    for i in 0..expected {
        let lic = |name: &str| at(name, i);
        let has_license = [
            "IPN_LICENSE_REF",
            "IPN_LICENSE_TYPE",
            "IPN_LICENSE_PROD",
            "IPN_LICENSE_START",
            "IPN_LICENSE_EXP",
        ]
        .iter()
        .any(|n| !lic(n).is_empty());
        let license = if has_license {
            Some(License {
                reference: non_empty(lic("IPN_LICENSE_REF")),
                license_type: non_empty(lic("IPN_LICENSE_TYPE"))
                    .map(|t| LicenseType::from_wire(&t)),
                product: non_empty(lic("IPN_LICENSE_PROD")),
                start: Reader::date_time_value(
                    &field("IPN_LICENSE_START"),
                    lic("IPN_LICENSE_START"),
                )?,
                expiration: Reader::date_time_value(
                    &field("IPN_LICENSE_EXP"),
                    lic("IPN_LICENSE_EXP"),
                )?,
                lifetime: Reader::flag_of(
                    &field("IPN_LICENSE_LIFETIME"),
                    lic("IPN_LICENSE_LIFETIME"),
                )?
                .unwrap_or(false),
            })
        } else {
            None
        };
        items.push(LineItem {
            product_id: non_empty(at("IPN_PID", i)),
            name: non_empty(at("IPN_PNAME", i)),
            code: non_empty(at("IPN_PCODE", i)),
            external_reference: non_empty(at("IPN_EXTERNAL_REFERENCE", i)),
            sku: non_empty(at("IPN_SKU", i)),
            quantity: Reader::integer_value(&field("IPN_QTY"), at("IPN_QTY", i))?,
            unit_price: money("IPN_PRICE", i)?,
            vat: money("IPN_VAT", i)?,
            vat_rate: Reader::decimal_value(&field("IPN_VAT_RATE"), at("IPN_VAT_RATE", i))?,
            discount: money("IPN_DISCOUNT", i)?,
            total: money("IPN_TOTAL", i)?,
            license,
        });
    }
    Ok(items)
}

// ---------------------------------------------------------------------------------
// LCN

/// A License Change Notification. Fields marked ASSUMED are not in the readable part
/// of the LCN parameter table (reference §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lcn {
    /// `LICENSE_CODE`, the subscription reference.
    pub license_code: OrderRef,
    /// `STATUS`.
    pub status: Option<SubscriptionStatus>,
    /// `DISPATCH_REASON` (ASSUMED field name; values from reference §3.1).
    pub dispatch_reason: Option<DispatchReason>,
    /// `EXPIRATION_DATE` (`Y-m-d H:i:s` or `Y-m-d`).
    pub expiration: Option<NaiveDateTime>,
    /// `DATE_UPDATED`.
    pub date_updated: Option<NaiveDateTime>,
    /// `DISABLED` (0/1).
    pub disabled: Option<bool>,
    /// `LICENSE_TYPE`.
    pub license_type: Option<LicenseType>,
    /// `CHANGED_BY`.
    pub changed_by: Option<ChangedBy>,
    /// `TEST=1` (absent means real).
    pub test: bool,
    /// End user.
    pub customer: Customer,
    /// `PRODUCT_CODE` (ASSUMED).
    pub product_code: Option<String>,
    /// `PRODUCT_NAME` (ASSUMED).
    pub product_name: Option<String>,
    /// `QUANTITY` (ASSUMED).
    pub quantity: Option<i64>,
    /// `RECURRING_ENABLED` (ASSUMED).
    pub recurring_enabled: Option<bool>,
    /// `NEXT_RENEWAL_PRICE` in `NEXT_RENEWAL_CURRENCY` (both ASSUMED, after the REST
    /// subscription fields `NextRenewalPrice` / `NextRenewalPriceCurrency`).
    pub next_renewal_price: Option<Money>,
}

impl Lcn {
    /// `EXPIRATION_DATE` in year 9999.
    pub fn is_lifetime(&self) -> bool {
        use chrono::Datelike;
        self.expiration.is_some_and(|e| e.year() == 9999)
    }

    fn parse(form: &FormBody) -> Result<Lcn, FieldError> {
        let r = Reader { form };
        let renewal_currency = r.currency("NEXT_RENEWAL_CURRENCY")?;
        Ok(Lcn {
            license_code: reference(&r, "LICENSE_CODE")?,
            status: r.opt("STATUS")?.map(SubscriptionStatus::from_wire),
            dispatch_reason: r.opt("DISPATCH_REASON")?.map(DispatchReason::from_wire),
            expiration: r.date_time("EXPIRATION_DATE")?,
            date_updated: r.date_time("DATE_UPDATED")?,
            disabled: r.flag("DISABLED")?,
            license_type: r.opt("LICENSE_TYPE")?.map(LicenseType::from_wire),
            changed_by: r.opt("CHANGED_BY")?.map(ChangedBy::from_wire),
            test: r.flag("TEST")?.unwrap_or(false),
            customer: customer(
                &r,
                &LCN_CUSTOMER,
                Some(("AVANGATE_CUSTOMER_REFERENCE", "EXTERNAL_CUSTOMER_REFERENCE")),
            )?,
            product_code: r.string("PRODUCT_CODE")?,
            product_name: r.string("PRODUCT_NAME")?,
            quantity: r.integer("QUANTITY")?,
            recurring_enabled: r.flag("RECURRING_ENABLED")?,
            next_renewal_price: r.money(
                "NEXT_RENEWAL_PRICE",
                renewal_currency,
                "NEXT_RENEWAL_CURRENCY",
            )?,
        })
    }
}

// ---------------------------------------------------------------------------------
// INS

/// One `item_*_N` group of a legacy INS message (`N` from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsItem {
    /// The `N` of `item_*_N`.
    pub index: usize,
    /// `item_name_N`.
    pub name: Option<String>,
    /// `item_id_N`, the merchant's product id.
    pub id: Option<String>,
    /// `item_type_N`: `bill` or `refund`.
    pub item_type: Option<String>,
    /// `item_list_amount_N` in `list_currency`.
    pub list_amount: Option<Money>,
    /// `item_usd_amount_N` in USD.
    pub usd_amount: Option<Money>,
    /// `item_cust_amount_N` in `cust_currency`.
    pub cust_amount: Option<Money>,
    /// `item_recurrence_N` (e.g. `1 Month`).
    pub recurrence: Option<String>,
    /// `item_rec_status_N`.
    pub rec_status: Option<String>,
    /// `item_rec_install_billed_N`, the installment count.
    pub rec_install_billed: Option<u32>,
    /// `item_rec_date_next_N`.
    pub rec_date_next: Option<NaiveDate>,
    /// `item_rec_list_amount_N` in `list_currency`.
    pub rec_list_amount: Option<Money>,
}

/// A legacy INS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ins {
    /// `message_type`.
    pub message_type: InsMessageType,
    /// `message_description`.
    pub message_description: Option<String>,
    /// `message_id` (increments per message, a dedup key).
    pub message_id: Option<String>,
    /// `timestamp` as sent (`YYYY-MM-DD HH:MM:SS ZZZ`, US Eastern).
    pub timestamp: Option<String>,
    /// `vendor_id`.
    pub vendor_id: Option<String>,
    /// `sale_id`.
    pub sale_id: Option<String>,
    /// `order_ref` (current-platform INS).
    pub order_ref: Option<String>,
    /// `order_no` (current-platform INS).
    pub order_no: Option<String>,
    /// `invoice_id` (one per installment).
    pub invoice_id: Option<String>,
    /// `vendor_order_id`.
    pub vendor_order_id: Option<String>,
    /// `sale_date_placed`.
    pub sale_date_placed: Option<NaiveDateTime>,
    /// `recurring=1`.
    pub recurring: bool,
    /// `payment_type`.
    pub payment_type: Option<String>,
    /// `fraud_status`.
    pub fraud_status: Option<InsFraudStatus>,
    /// `invoice_status`.
    pub invoice_status: Option<String>,
    /// `list_currency`.
    pub list_currency: Option<Currency>,
    /// `cust_currency`.
    pub cust_currency: Option<Currency>,
    /// `invoice_list_amount` in `list_currency`.
    pub invoice_list_amount: Option<Money>,
    /// `invoice_usd_amount` in USD.
    pub invoice_usd_amount: Option<Money>,
    /// `invoice_cust_amount` in `cust_currency`.
    pub invoice_cust_amount: Option<Money>,
    /// Customer / billing.
    pub customer: Customer,
    /// Items `1..=item_count`.
    pub items: Vec<InsItem>,
    reference: OrderRef,
}

impl Ins {
    fn parse(form: &FormBody) -> Result<Ins, FieldError> {
        let r = Reader { form };
        let sale_id = r.string("sale_id")?;
        let order_ref = r.string("order_ref")?;
        let reference = match (&sale_id, &order_ref) {
            (Some(s), _) => OrderRef::new(s),
            (None, Some(o)) => OrderRef::new(o),
            (None, None) => None,
        }
        .ok_or_else(|| FieldError::Missing {
            field: "sale_id".to_owned(),
        })?;
        let list_currency = r.currency("list_currency")?;
        let cust_currency = r.currency("cust_currency")?;
        let usd = Currency::from_code("USD").ok();
        let count = match r.integer::<usize>("item_count")? {
            Some(n) if n > MAX_INS_ITEMS => {
                return Err(FieldError::InvalidInteger {
                    field: "item_count".into(),
                    value: n.to_string(),
                })
            }
            Some(n) => n,
            None => (1..=MAX_INS_ITEMS)
                .take_while(|n| {
                    form.field(&format!("item_name_{n}")).is_some()
                        || form.field(&format!("item_id_{n}")).is_some()
                })
                .count(),
        };
        let mut items = Vec::with_capacity(count);
        for n in 1..=count {
            let f = |base: &str| format!("{base}_{n}");
            items.push(InsItem {
                index: n,
                name: r.string(&f("item_name"))?,
                id: r.string(&f("item_id"))?,
                item_type: r.string(&f("item_type"))?,
                list_amount: r.money(&f("item_list_amount"), list_currency, "list_currency")?,
                usd_amount: r.money(&f("item_usd_amount"), usd, "USD")?,
                cust_amount: r.money(&f("item_cust_amount"), cust_currency, "cust_currency")?,
                recurrence: r.string(&f("item_recurrence"))?,
                rec_status: r.string(&f("item_rec_status"))?,
                rec_install_billed: r.integer(&f("item_rec_install_billed"))?,
                rec_date_next: r.date(&f("item_rec_date_next"))?,
                rec_list_amount: r.money(
                    &f("item_rec_list_amount"),
                    list_currency,
                    "list_currency",
                )?,
            });
        }
        Ok(Ins {
            message_type: InsMessageType::from_wire(r.required("message_type")?),
            message_description: r.string("message_description")?,
            message_id: r.string("message_id")?,
            timestamp: r.string("timestamp")?,
            vendor_id: r.string("vendor_id")?,
            sale_id,
            order_ref,
            order_no: r.string("order_no")?,
            invoice_id: r.string("invoice_id")?,
            vendor_order_id: r.string("vendor_order_id")?,
            sale_date_placed: r.date_time("sale_date_placed")?,
            recurring: r.flag("recurring")?.unwrap_or(false),
            payment_type: r.string("payment_type")?,
            fraud_status: r.opt("fraud_status")?.map(InsFraudStatus::from_wire),
            invoice_status: r.string("invoice_status")?,
            list_currency,
            cust_currency,
            invoice_list_amount: r.money("invoice_list_amount", list_currency, "list_currency")?,
            invoice_usd_amount: r.money("invoice_usd_amount", usd, "USD")?,
            invoice_cust_amount: r.money("invoice_cust_amount", cust_currency, "cust_currency")?,
            customer: customer(&r, &INS_CUSTOMER, None)?,
            items,
            reference,
        })
    }
}

// ---------------------------------------------------------------------------------
// Notification

/// A parsed notification of any kind.
// One value per delivery, moved rarely: boxing the IPN would only cost an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Order event.
    Ipn(Ipn),
    /// Subscription event.
    Lcn(Lcn),
    /// Legacy INS event.
    Ins(Ins),
}

fn opt_str<T: AsRef<str>>(v: &Option<T>) -> &str {
    v.as_ref().map_or("", AsRef::as_ref)
}

fn money_str(m: &Option<Money>) -> String {
    m.map(|m| canonical_decimal(m.amount)).unwrap_or_default()
}

fn date_str(d: &Option<NaiveDateTime>) -> String {
    d.map(|d| d.format(DATE_TIME_FORMAT).to_string())
        .unwrap_or_default()
}

impl Notification {
    /// Parse the typed view of a (verified) form body.
    pub fn parse(kind: Kind, form: &FormBody) -> Result<Notification, FieldError> {
        Ok(match kind {
            Kind::Ipn => Notification::Ipn(Ipn::parse(form)?),
            Kind::Lcn => Notification::Lcn(Lcn::parse(form)?),
            Kind::Ins => Notification::Ins(Ins::parse(form)?),
        })
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Notification::Ipn(_) => Kind::Ipn,
            Notification::Lcn(_) => Kind::Lcn,
            Notification::Ins(_) => Kind::Ins,
        }
    }

    /// `REFNO` (IPN), `LICENSE_CODE` (LCN), `sale_id` or else `order_ref` (INS).
    pub fn reference(&self) -> &str {
        match self {
            Notification::Ipn(n) => n.reference.as_str(),
            Notification::Lcn(n) => n.license_code.as_str(),
            Notification::Ins(n) => n.reference.as_str(),
        }
    }

    /// `AVANGATE_CUSTOMER_REFERENCE`, else the e-mail trimmed and lower-cased.
    pub fn customer_key(&self) -> Option<String> {
        self.customer().key()
    }

    /// The customer data of the notification.
    pub fn customer(&self) -> &Customer {
        match self {
            Notification::Ipn(n) => &n.customer,
            Notification::Lcn(n) => &n.customer,
            Notification::Ins(n) => &n.customer,
        }
    }

    /// `TEST_ORDER` (IPN) / `TEST` (LCN); legacy INS test sales are recognised by a
    /// `sale_id` starting with `90` (sandbox).
    pub fn is_test(&self) -> bool {
        match self {
            Notification::Ipn(n) => n.test_order,
            Notification::Lcn(n) => n.test,
            Notification::Ins(n) => n.sale_id.as_deref().is_some_and(|s| s.starts_with("90")),
        }
    }

    /// The semantic fields, in a fixed order, as canonical text.
    pub fn semantic_fields(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| out.push((k.to_owned(), v));
        match self {
            Notification::Ipn(n) => {
                put("REFNO", n.reference.to_string());
                put("ORDERSTATUS", n.status.as_str().to_owned());
                put(
                    "MESSAGE_TYPE",
                    opt_str(&n.message_type).trim().to_ascii_uppercase(),
                );
                put(
                    "FRAUD_STATUS",
                    n.fraud_status
                        .as_ref()
                        .map_or("", |f| f.as_str())
                        .to_owned(),
                );
                put(
                    "CHARGEBACK_RESOLUTION",
                    n.chargeback
                        .as_ref()
                        .map_or(String::new(), |c| c.resolution.to_ascii_uppercase()),
                );
                put(
                    "REFUND_TYPE",
                    opt_str(&n.refund_type).trim().to_ascii_uppercase(),
                );
                put("CURRENCY", n.currency.map_or("", Currency::code).to_owned());
                put("IPN_TOTALGENERAL", money_str(&n.total));
                for (i, item) in n.items.iter().enumerate() {
                    put(&format!("IPN_TOTAL[{i}]"), money_str(&item.total));
                }
            }
            Notification::Lcn(n) => {
                put("LICENSE_CODE", n.license_code.to_string());
                put(
                    "STATUS",
                    n.status.as_ref().map_or("", |s| s.as_str()).to_owned(),
                );
                put("EXPIRATION_DATE", date_str(&n.expiration));
                put("DATE_UPDATED", date_str(&n.date_updated));
                put(
                    "DISABLED",
                    n.disabled
                        .map_or("", |d| if d { "1" } else { "0" })
                        .to_owned(),
                );
                put(
                    "LICENSE_TYPE",
                    n.license_type
                        .as_ref()
                        .map_or("", |t| t.as_str())
                        .to_owned(),
                );
                put(
                    "CHANGED_BY",
                    n.changed_by.as_ref().map_or("", |c| c.as_str()).to_owned(),
                );
            }
            Notification::Ins(n) => {
                put("message_type", n.message_type.as_str().to_owned());
                put("reference", n.reference.to_string());
                put("sale_id", opt_str(&n.sale_id).to_owned());
                put("invoice_id", opt_str(&n.invoice_id).to_owned());
                put("message_id", opt_str(&n.message_id).to_owned());
                for item in &n.items {
                    let i = item.index;
                    put(
                        &format!("item_list_amount_{i}"),
                        money_str(&item.list_amount),
                    );
                    put(&format!("item_usd_amount_{i}"), money_str(&item.usd_amount));
                    put(
                        &format!("item_cust_amount_{i}"),
                        money_str(&item.cust_amount),
                    );
                }
            }
        }
        out
    }

    /// Semantic fingerprint: lower-case hex SHA-256 of a canonical encoding of the
    /// fields that define *what happened*, so that a resend of the same event (new
    /// `MESSAGE_ID`, new `IPN_DATE`, new signature) has the same fingerprint, while a
    /// different status or amount does not.
    ///
    /// Encoding: the ASCII tag `revsync-fingerprint-v1`, the kind (`ipn`/`lcn`/`ins`),
    /// then for every semantic field in the fixed order below its name and its canonical
    /// value, each as UTF-8 byte length in decimal followed by the bytes (the signature
    /// scheme's encoding, so no separator can be forged by a value).
    ///
    /// - IPN: `REFNO`, `ORDERSTATUS`, `MESSAGE_TYPE`, `FRAUD_STATUS`,
    ///   `CHARGEBACK_RESOLUTION` (empty when absent or `NONE`), `REFUND_TYPE`,
    ///   `CURRENCY`, `IPN_TOTALGENERAL`, and `IPN_TOTAL[i]` for every line item.
    /// - LCN: `LICENSE_CODE`, `STATUS`, `EXPIRATION_DATE`, `DATE_UPDATED`, `DISABLED`,
    ///   `LICENSE_TYPE`, `CHANGED_BY`.
    /// - INS: `message_type`, the reference (`sale_id` or `order_ref`), `sale_id`,
    ///   `invoice_id`, `message_id` (legacy INS increments it per message, so it is
    ///   semantic there), and per item `item_list_amount_N`, `item_usd_amount_N`,
    ///   `item_cust_amount_N`.
    ///
    /// Canonical values: amounts without trailing zeros (`10.0` = `10.00` = `10`,
    /// `-0` = `0`), dates as `Y-m-d H:i:s` (`0000-00-00 00:00:00` = absent), enum values
    /// in their canonical spelling (`PAST DUE` = `PASTDUE`), upper-case currency codes,
    /// absent = empty.
    ///
    /// Never included: `MESSAGE_ID`/`IPN_DATE` (IPN), the signature fields, customer
    /// data, and every other field.
    ///
    /// Known limitation: two *different* events with identical semantic fields collide.
    /// The known case is two identical partial refunds of the same order (same
    /// `REFNO`, `REFUND`, same amounts): the second is treated as a resend of the first.
    /// 2Checkout publishes no per-refund identifier in the IPN that would separate them.
    pub fn fingerprint(&self) -> String {
        let mut msg = Vec::new();
        push_len_prefixed(&mut msg, "revsync-fingerprint-v1");
        push_len_prefixed(&mut msg, self.kind().as_str());
        for (k, v) in self.semantic_fields() {
            push_len_prefixed(&mut msg, &k);
            push_len_prefixed(&mut msg, &v);
        }
        hex::encode(Sha256::digest(&msg))
    }
}
