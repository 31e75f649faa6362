//! Legacy 2CO INS (Instant Notification Service) `md5_hash`, and the legacy
//! return/passback `key` (reference §3.3, vectors V6 and V7).
//!
//! `md5_hash = UPPER(hex(MD5(sale_id + vendor_id + invoice_id + secret_word)))` — plain
//! MD5 (not HMAC) over the concatenation without separators, keyed with the account's
//! **Secret Word** (not the Secret Key).
//!
//! The current-platform INS `hash` field ("SHA2/SHA3") is UNCONFIRMED and not handled.

use md5::{Digest, Md5};

use crate::form::FormBody;
use crate::signature::{hex_eq, Algorithm, SecretKey, SignatureError};

/// The INS signature field.
pub const INS_HASH_FIELD: &str = "md5_hash";

fn upper_md5(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    hex::encode_upper(h.finalize())
}

/// `UPPER(MD5(sale_id + vendor_id + invoice_id + secret_word))`.
pub fn ins_md5_hash(
    sale_id: &str,
    vendor_id: &str,
    invoice_id: &str,
    secret_word: &SecretKey,
) -> String {
    upper_md5(&[
        sale_id.as_bytes(),
        vendor_id.as_bytes(),
        invoice_id.as_bytes(),
        secret_word.expose(),
    ])
}

/// Legacy return/passback `key`: `UPPER(MD5(secret_word + sid + order_number + total))`.
pub fn passback_key(secret_word: &SecretKey, sid: &str, order_number: &str, total: &str) -> String {
    upper_md5(&[
        secret_word.expose(),
        sid.as_bytes(),
        order_number.as_bytes(),
        total.as_bytes(),
    ])
}

fn required<'a>(form: &'a FormBody, field: &'static str) -> Result<&'a str, SignatureError> {
    form.get(field)
        .ok_or(SignatureError::MissingInput { field })
}

/// Verify `md5_hash` of a legacy INS message (case-insensitive, constant time).
pub fn verify_ins(form: &FormBody, secret_word: &SecretKey) -> Result<(), SignatureError> {
    let received = match form.get(INS_HASH_FIELD) {
        Some(v) if !v.is_empty() => v,
        _ => return Err(SignatureError::Missing),
    };
    let computed = ins_md5_hash(
        required(form, "sale_id")?,
        required(form, "vendor_id")?,
        required(form, "invoice_id")?,
        secret_word,
    );
    if hex_eq(received, &computed) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch {
            algorithm: Algorithm::Md5,
        })
    }
}

/// Set `md5_hash` (replacing an old value in place, else appending it). Fields that
/// are absent count as empty strings.
pub fn sign_ins(form: &mut FormBody, secret_word: &SecretKey) {
    let hash = ins_md5_hash(
        form.get("sale_id").unwrap_or(""),
        form.get("vendor_id").unwrap_or(""),
        form.get("invoice_id").unwrap_or(""),
        secret_word,
    );
    form.push_scalar(INS_HASH_FIELD, &hash);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_ins_md5_hash() {
        assert_eq!(
            ins_md5_hash("4774380224", "1817037", "4774380233", &"tango".into()),
            "566C45D68B75357AD43F9010CFFE8CF5"
        );
    }

    #[test]
    fn v7_passback_key() {
        assert_eq!(
            passback_key(&"tango".into(), "1817037", "4774380224", "0.01"),
            "7AB926D469648F3305AE361D5BD2C3CB"
        );
    }

    fn msg() -> FormBody {
        let mut f = FormBody::new();
        f.push_scalar("message_type", "ORDER_CREATED");
        f.push_scalar("sale_id", "4774380224");
        f.push_scalar("vendor_id", "1817037");
        f.push_scalar("invoice_id", "4774380233");
        f
    }

    #[test]
    fn sign_then_verify_and_case_insensitive() {
        let w: SecretKey = "tango".into();
        let mut f = msg();
        sign_ins(&mut f, &w);
        assert_eq!(f.get("md5_hash"), Some("566C45D68B75357AD43F9010CFFE8CF5"));
        assert_eq!(verify_ins(&f, &w), Ok(()));
        f.push_scalar("md5_hash", "566c45d68b75357ad43f9010cffe8cf5");
        assert_eq!(verify_ins(&f, &w), Ok(()));
        assert_eq!(
            verify_ins(&f, &"other".into()),
            Err(SignatureError::Mismatch {
                algorithm: Algorithm::Md5
            })
        );
        f.push_scalar("invoice_id", "4774380234");
        assert!(verify_ins(&f, &w).is_err());
    }

    #[test]
    fn missing_hash_and_inputs() {
        let w: SecretKey = "tango".into();
        assert_eq!(verify_ins(&msg(), &w), Err(SignatureError::Missing));
        let mut f = msg();
        sign_ins(&mut f, &w);
        f.remove("vendor_id");
        assert_eq!(
            verify_ins(&f, &w),
            Err(SignatureError::MissingInput { field: "vendor_id" })
        );
    }
}
