//! 2Checkout (Verifone, formerly Avangate) protocol code for revsync.
//!
//! This crate owns the wire protocol of 2Checkout's notifications and REST
//! authentication, and nothing else:
//! - [`form`]: `application/x-www-form-urlencoded` parsing that keeps field order and
//!   PHP `$_POST` array grouping (the signature depends on both);
//! - [`signature`]: `HASH` / `SIGNATURE_SHA2_256` / `SIGNATURE_SHA3_256` verification
//!   and signing (HMAC over length-prefixed values), with key rotation and a minimum
//!   algorithm;
//! - [`receipt`]: the signed read receipts (`<EPAYMENT>` / `<sig>`) for IPN and LCN,
//!   and the check 2Checkout applies to them;
//! - [`ins`]: legacy INS `md5_hash`;
//! - [`rest_auth`]: the REST 6.0 `X-Avangate-Authentication` header;
//! - [`notification`]: typed IPN / LCN / INS values, lenient about unknown fields and
//!   enum values, strict about amounts and dates, plus the semantic fingerprint;
//! - [`money`]: exact decimal [`money::Money`] with ISO 4217 [`money::Currency`].
//!
//! It must not know about any store, HTTP server or client, Salesforce, or the revsync
//! engine: callers pass raw bytes, keys and the current time in, and get values out.
//! Facts come from `shared/reference/2checkout.md`; items that reference marks
//! UNCONFIRMED are marked ASSUMED in the doc comments here.

pub mod form;
pub mod ins;
pub mod money;
pub mod notification;
pub mod receipt;
pub mod rest_auth;
pub mod signature;

pub use form::{FieldValue, FormBody, FormEntry, FormError};
pub use ins::{ins_md5_hash, passback_key, sign_ins, verify_ins};
pub use money::{Currency, Money, MoneyError};
pub use notification::{
    ChangedBy, Chargeback, Customer, DispatchReason, FieldError, FraudStatus, FxInfo, Ins,
    InsFraudStatus, InsItem, InsMessageType, Ipn, Kind, Lcn, License, LicenseType, LineItem,
    Notification, OrderRef, OrderStatus, PaymentMethod, SubscriptionStatus, UnknownKind,
};
pub use receipt::{check_receipt, ipn_receipt, lcn_receipt, ReceiptError};
pub use rest_auth::{authentication_header, verify_authentication_header, RestAuthError};
pub use signature::{
    check_all, hmac_hex, sign, signature_message, verify, Algorithm, SecretKey, SignatureCheck,
    SignatureError, UnknownAlgorithm, Verified,
};
