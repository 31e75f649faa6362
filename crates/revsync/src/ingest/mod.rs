//! Ingest: from a raw HTTP delivery to a durable event-log entry and a signed read receipt.
//!
//! [`verify_delivery`] is the one gate every notification passes — the HTTP endpoints, the
//! `quarantine admit` command and the `verify` command all use it — so a rule added here holds
//! everywhere. The [`GroupCommitter`] then appends verified deliveries to the event log in
//! group-committed transactions; a receipt is built only from a committed [`Appended`].
//!
//! Ingest must not know Salesforce, the ledger or the flows: it stops at the event log.

mod committer;

pub use committer::{CommitError, GroupCommitter};

use axum::http::StatusCode;
use chrono::NaiveDateTime;
use twocheckout::form::{FormBody, FormError};
use twocheckout::notification::{FieldError, Kind, Notification};
use twocheckout::receipt::ReceiptError;
use twocheckout::signature::{Algorithm, SecretKey, SignatureError};

use crate::config::NotificationKeys;
use crate::store::{Appended, EventLog, Micros, NewDelivery, QuarantineStatus, StoreError};

/// The only content type 2Checkout posts notifications with.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Why a delivery was refused. Each maps to a 4xx status and a one-line reason; none of them
/// gets a receipt, so 2Checkout resends while an operator looks at the quarantine.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("unknown notification kind `{0}` (expected ipn, lcn or ins)")]
    UnknownKind(String),
    #[error("content type must be {FORM_CONTENT_TYPE}, got `{0}`")]
    WrongContentType(String),
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("malformed form body: {0}")]
    Malformed(#[from] FormError),
    #[error("signature rejected: {0}")]
    Signature(#[from] SignatureError),
    #[error("cannot verify {0}: no key configured for it")]
    NoKey(&'static str),
    #[error("notification fields invalid: {0}")]
    Fields(#[from] FieldError),
    #[error("no read receipt can be built for it: {0}")]
    Receipt(#[from] ReceiptError),
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::UnknownKind(_) => StatusCode::NOT_FOUND,
            Rejection::WrongContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Malformed(_) => StatusCode::BAD_REQUEST,
            Rejection::Signature(_) | Rejection::NoKey(_) => StatusCode::UNAUTHORIZED,
            Rejection::Fields(_) | Rejection::Receipt(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// A short label for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Rejection::UnknownKind(_) => "unknown_kind",
            Rejection::WrongContentType(_) => "content_type",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Malformed(_) => "malformed",
            Rejection::Signature(_) => "signature",
            Rejection::NoKey(_) => "no_key",
            Rejection::Fields(_) => "fields",
            Rejection::Receipt(_) => "receipt",
        }
    }
}

/// How a delivery proved it came from 2Checkout.
#[derive(Debug, Clone)]
pub enum Proof {
    /// IPN/LCN HMAC with the key at `key_index` of [`NotificationKeys::secret_keys`].
    Hmac {
        algorithm: Algorithm,
        key_index: usize,
    },
    /// Legacy INS `md5_hash` with the Secret Word.
    InsMd5,
}

impl Proof {
    pub fn label(&self) -> String {
        match self {
            Proof::Hmac { algorithm, .. } => algorithm.to_string(),
            Proof::InsMd5 => "ins-md5".to_owned(),
        }
    }
}

/// A delivery that passed every check: signed, well-formed, typed.
#[derive(Debug, Clone)]
pub struct VerifiedDelivery {
    pub form: FormBody,
    pub notification: Notification,
    pub proof: Proof,
}

impl VerifiedDelivery {
    pub fn kind(&self) -> Kind {
        self.notification.kind()
    }

    /// The event-log row for this delivery.
    pub fn to_new_delivery(
        &self,
        body: &[u8],
        content_type: &str,
        remote_addr: Option<String>,
        received_at: Micros,
    ) -> NewDelivery {
        NewDelivery {
            kind: self.kind().as_str().to_owned(),
            received_at,
            content_type: content_type.to_owned(),
            remote_addr,
            signature_algorithm: self.proof.label(),
            body: body.to_vec(),
            fingerprint: self.notification.fingerprint(),
            reference: self.notification.reference().to_owned(),
            customer_key: self.notification.customer_key(),
        }
    }

    /// The read receipt 2Checkout expects, signed with the algorithm and key that verified
    /// the delivery. INS has no documented receipt: a plain `OK` is answered.
    /// [`verify_delivery`] already built one, so this fails only if the keys changed since.
    pub fn receipt(
        &self,
        keys: &NotificationKeys,
        now: NaiveDateTime,
    ) -> Result<String, ReceiptError> {
        match &self.proof {
            Proof::Hmac {
                algorithm,
                key_index,
            } => {
                let key = &keys.secret_keys[*key_index];
                match self.kind() {
                    Kind::Ipn => {
                        twocheckout::receipt::ipn_receipt(&self.form, *algorithm, key, now)
                    }
                    Kind::Lcn => {
                        twocheckout::receipt::lcn_receipt(&self.form, *algorithm, key, now)
                    }
                    Kind::Ins => Ok("OK".to_owned()),
                }
            }
            Proof::InsMd5 => Ok("OK".to_owned()),
        }
    }
}

/// Checks the content type (the `;charset=…` parameter is allowed).
pub fn check_content_type(content_type: Option<&str>) -> Result<(), Rejection> {
    let ct = content_type.unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(FORM_CONTENT_TYPE) {
        Ok(())
    } else {
        Err(Rejection::WrongContentType(if ct.is_empty() {
            "none".to_owned()
        } else {
            ct.chars().take(80).collect()
        }))
    }
}

/// The gate: parse the body keeping field order, verify the strongest signature present
/// against the configured keys, and type the notification's fields.
pub fn verify_delivery(
    keys: &NotificationKeys,
    kind: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<VerifiedDelivery, Rejection> {
    let kind: Kind = kind
        .parse()
        .map_err(|_| Rejection::UnknownKind(kind.chars().take(40).collect()))?;
    check_content_type(content_type)?;
    let form = FormBody::parse(body)?;
    let proof = match kind {
        Kind::Ipn | Kind::Lcn => {
            let verified =
                twocheckout::signature::verify(&form, &keys.secret_keys, keys.minimum_algorithm)?;
            Proof::Hmac {
                algorithm: verified.algorithm,
                key_index: verified.key_index,
            }
        }
        Kind::Ins => {
            let word: &SecretKey = keys
                .ins_secret_word
                .as_ref()
                .ok_or(Rejection::NoKey("ins (set twocheckout.ins_secret_word)"))?;
            twocheckout::ins::verify_ins(&form, word)?;
            Proof::InsMd5
        }
    };
    let notification = Notification::parse(kind, &form)?;
    let verified = VerifiedDelivery {
        form,
        notification,
        proof,
    };
    // Never commit what cannot be acknowledged: 2Checkout would resend it for two days.
    verified.receipt(keys, chrono::Utc::now().naive_utc())?;
    Ok(verified)
}

/// Why a quarantined request could not be admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error("no quarantine entry {0}")]
    NotFound(i64),
    #[error("entry is {0}, not held")]
    NotHeld(&'static str),
    #[error("the body was larger than the limit and was not kept whole")]
    Truncated,
    #[error("still refused: {0}")]
    StillRefused(#[from] Rejection),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Re-verifies a quarantined request with the current keys and, if it now passes, appends it
/// to the event log (as a new delivery received now) and marks the entry admitted — in one
/// transaction, so an entry is admitted at most once.
pub async fn admit_quarantined(
    store: &dyn EventLog,
    keys: &NotificationKeys,
    id: i64,
) -> Result<Appended, AdmitError> {
    let entry = store
        .quarantined(id)
        .await?
        .ok_or(AdmitError::NotFound(id))?;
    if entry.status != QuarantineStatus::Held {
        return Err(AdmitError::NotHeld(entry.status.as_str()));
    }
    if entry.truncated {
        return Err(AdmitError::Truncated);
    }
    let verified = verify_delivery(
        keys,
        &entry.path_kind,
        Some(&entry.content_type),
        &entry.body,
    )?;
    let delivery = verified.to_new_delivery(
        &entry.body,
        &entry.content_type,
        entry.remote_addr.clone(),
        Micros::now(),
    );
    Ok(store.admit_quarantined(id, &delivery).await?)
}
