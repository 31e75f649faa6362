//! IPN / LCN signatures: `HASH` (HMAC-MD5), `SIGNATURE_SHA2_256` (HMAC-SHA256) and
//! `SIGNATURE_SHA3_256` (HMAC-SHA3-256) over the length-prefixed values of the body
//! (reference §2.1).
//!
//! LCN is assumed to use exactly the IPN scheme and field names (reference §3.1 marks
//! this UNCONFIRMED).

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

use crate::form::{FieldValue, FormBody};

/// A signature algorithm. Ordered by strength: `Md5 < Sha256 < Sha3_256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// HMAC-MD5, field `HASH`, receipt `<EPAYMENT>`.
    Md5,
    /// HMAC-SHA256, field `SIGNATURE_SHA2_256`, receipt `algo="sha256"`.
    Sha256,
    /// HMAC-SHA3-256, field `SIGNATURE_SHA3_256`, receipt `algo="sha3-256"`.
    Sha3_256,
}

/// The signature field names, in the order 2Checkout appends them.
pub const SIGNATURE_FIELDS: [&str; 3] = ["HASH", "SIGNATURE_SHA2_256", "SIGNATURE_SHA3_256"];

impl Algorithm {
    /// All algorithms, weakest first.
    pub const ALL: [Algorithm; 3] = [Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha3_256];

    /// The lower-case name used in configuration, receipts (`algo="…"`) and REST
    /// headers: `md5`, `sha256`, `sha3-256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "md5",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha3_256 => "sha3-256",
        }
    }

    /// The notification field that carries this signature.
    pub fn field_name(self) -> &'static str {
        match self {
            Algorithm::Md5 => SIGNATURE_FIELDS[0],
            Algorithm::Sha256 => SIGNATURE_FIELDS[1],
            Algorithm::Sha3_256 => SIGNATURE_FIELDS[2],
        }
    }

    /// Length of the lower-case hex digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 | Algorithm::Sha3_256 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An algorithm name that is not `md5`, `sha256` or `sha3-256`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature algorithm {0:?}: expected md5, sha256 or sha3-256")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Case-insensitive `md5`, `sha256`, `sha3-256`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

/// A 2Checkout secret (account Secret Key, or the legacy INS Secret Word).
/// Its `Debug` and `Display` never show the value.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    /// Wrap key bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> SecretKey {
        SecretKey(bytes.into())
    }

    /// The key bytes. Do not log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// True for a zero-length key (almost certainly a configuration mistake).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretKey {
    fn from(s: String) -> Self {
        SecretKey(s.into_bytes())
    }
}

impl From<&str> for SecretKey {
    fn from(s: &str) -> Self {
        SecretKey(s.as_bytes().to_vec())
    }
}

impl From<Vec<u8>> for SecretKey {
    fn from(b: Vec<u8>) -> Self {
        SecretKey(b)
    }
}

impl From<&[u8]> for SecretKey {
    fn from(b: &[u8]) -> Self {
        SecretKey(b.to_vec())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// Append `len(v)` (UTF-8 bytes, decimal) and `v` to `out`.
pub(crate) fn push_len_prefixed(out: &mut Vec<u8>, v: &str) {
    out.extend_from_slice(v.len().to_string().as_bytes());
    out.extend_from_slice(v.as_bytes());
}

/// Build a length-prefixed message from a list of values.
pub fn length_prefixed<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        push_len_prefixed(&mut out, v);
    }
    out
}

/// The message 2Checkout signs: for every value in order (array elements expanded in
/// order), its UTF-8 byte length in decimal followed by the value, skipping `HASH`,
/// `SIGNATURE_SHA2_256` and `SIGNATURE_SHA3_256`. Names never enter the message.
pub fn signature_message(form: &FormBody) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in form.entries() {
        if SIGNATURE_FIELDS.contains(&entry.name.as_str()) {
            continue;
        }
        for v in entry.value.values() {
            push_len_prefixed(&mut out, v);
        }
    }
    out
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(msg);
    hex::encode(m.finalize().into_bytes())
}

/// Lower-case hex HMAC of `msg` under `key`.
pub fn hmac_hex(algo: Algorithm, key: &SecretKey, msg: &[u8]) -> String {
    match algo {
        Algorithm::Md5 => mac::<Hmac<md5::Md5>>(key.expose(), msg),
        Algorithm::Sha256 => mac::<Hmac<sha2::Sha256>>(key.expose(), msg),
        Algorithm::Sha3_256 => mac::<Hmac<sha3::Sha3_256>>(key.expose(), msg),
    }
}

/// Constant-time comparison of two hex strings, ignoring ASCII case.
pub(crate) fn hex_eq(received: &str, computed: &str) -> bool {
    let received = received.to_ascii_lowercase();
    let computed = computed.to_ascii_lowercase();
    received.as_bytes().ct_eq(computed.as_bytes()).into()
}

/// One signature found in a body, recomputed under one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    /// Which signature field.
    pub algorithm: Algorithm,
    /// The value as received (not lower-cased).
    pub received: String,
    /// The value recomputed with the key (lower-case hex).
    pub computed: String,
    /// Whether they match (case-insensitively, compared in constant time).
    pub valid: bool,
}

/// Recompute every signature present in the body (weakest first). For the `verify`
/// CLI: shows what was received next to what the key produces.
pub fn check_all(form: &FormBody, key: &SecretKey) -> Vec<SignatureCheck> {
    let msg = signature_message(form);
    Algorithm::ALL
        .into_iter()
        .filter_map(|algorithm| {
            let received = form.first(algorithm.field_name())?.to_owned();
            let computed = hmac_hex(algorithm, key, &msg);
            let valid = hex_eq(&received, &computed);
            Some(SignatureCheck {
                algorithm,
                received,
                computed,
                valid,
            })
        })
        .collect()
}

/// A successful verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The (strongest present) algorithm that was verified.
    pub algorithm: Algorithm,
    /// Index into the `keys` slice of the key that matched (0 = current key).
    pub key_index: usize,
}

/// Why a notification's signature is not accepted. Answer without a read receipt; the
/// sender will retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No (non-empty) signature field: the notification is unsigned.
    #[error("no signature field (HASH, SIGNATURE_SHA2_256 or SIGNATURE_SHA3_256) present")]
    Missing,
    /// The strongest signature present does not match under any configured key:
    /// forged, corrupted, or signed with a key we do not have (check the Secret Key).
    #[error("{algorithm} signature does not match under any configured key")]
    Mismatch {
        /// The algorithm that was checked.
        algorithm: Algorithm,
    },
    /// The strongest signature present is weaker than the configured minimum: enable
    /// the stronger signature in the 2Checkout IPN settings or lower the minimum.
    #[error("strongest signature present is {strongest}, below the configured minimum {minimum}")]
    BelowMinimum {
        /// The strongest algorithm in the body.
        strongest: Algorithm,
        /// The configured minimum.
        minimum: Algorithm,
    },
    /// No keys were configured.
    #[error("no secret key configured")]
    NoKeys,
    /// A signature field arrived as an array (`HASH[]=…`).
    #[error("signature field {field} is an array")]
    MalformedField {
        /// The offending field name.
        field: &'static str,
    },
    /// A field the signature is computed from is absent (legacy INS: `sale_id`,
    /// `vendor_id`, `invoice_id`).
    #[error("field {field} needed for the signature is missing")]
    MissingInput {
        /// The missing field name.
        field: &'static str,
    },
}

/// Verify the strongest signature present (SHA3-256 > SHA-256 > MD5) against each key
/// in turn (key rotation: current key first). Weaker signatures are never used as a
/// fallback when the strongest one fails (no downgrade). Empty signature fields count
/// as absent.
pub fn verify(
    form: &FormBody,
    keys: &[SecretKey],
    minimum: Algorithm,
) -> Result<Verified, SignatureError> {
    let mut strongest: Option<(Algorithm, &str)> = None;
    for algorithm in Algorithm::ALL {
        match form.field(algorithm.field_name()) {
            None => {}
            Some(FieldValue::Array(_)) => {
                return Err(SignatureError::MalformedField {
                    field: algorithm.field_name(),
                })
            }
            Some(FieldValue::Scalar(v)) if v.is_empty() => {}
            Some(FieldValue::Scalar(v)) => strongest = Some((algorithm, v)),
        }
    }
    let (algorithm, received) = strongest.ok_or(SignatureError::Missing)?;
    if algorithm < minimum {
        return Err(SignatureError::BelowMinimum {
            strongest: algorithm,
            minimum,
        });
    }
    if keys.is_empty() {
        return Err(SignatureError::NoKeys);
    }
    let msg = signature_message(form);
    let mut matched = None;
    for (key_index, key) in keys.iter().enumerate() {
        // Check every key so the time taken does not reveal which one matched.
        if hex_eq(received, &hmac_hex(algorithm, key, &msg)) && matched.is_none() {
            matched = Some(key_index);
        }
    }
    matched
        .map(|key_index| Verified {
            algorithm,
            key_index,
        })
        .ok_or(SignatureError::Mismatch { algorithm })
}

/// Sign a body the way 2Checkout does: remove any old signature fields, then append one
/// field per requested algorithm at the end, in the order `HASH`,
/// `SIGNATURE_SHA2_256`, `SIGNATURE_SHA3_256`.
pub fn sign(form: &mut FormBody, key: &SecretKey, algorithms: &[Algorithm]) {
    for field in SIGNATURE_FIELDS {
        form.remove(field);
    }
    let msg = signature_message(form);
    let mut algorithms = algorithms.to_vec();
    algorithms.sort();
    algorithms.dedup();
    for algorithm in algorithms {
        let sig = hmac_hex(algorithm, key, &msg);
        form.push_scalar(algorithm.field_name(), &sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECEIPT_MSG: &[u8] = b"1116Software program14200503031234341420050303123434";

    #[test]
    fn v1_receipt_hmac_md5_key_test() {
        let key = SecretKey::from("test");
        assert_eq!(
            hmac_hex(Algorithm::Md5, &key, RECEIPT_MSG),
            "3d7a5eb5557b70a80e5141c4fee0ed0d"
        );
    }

    #[test]
    fn v2_receipt_all_algorithms() {
        let key = SecretKey::from("AABBCCDDEEFF");
        assert_eq!(
            hmac_hex(Algorithm::Md5, &key, RECEIPT_MSG),
            "7bf97ed39681027d0c45aa45e3ea98f0"
        );
        assert_eq!(
            hmac_hex(Algorithm::Sha256, &key, RECEIPT_MSG),
            "ea6f44c39b3d204b59500998fcb9221c92744d9721a94b45fc6d5cda99980176"
        );
        assert_eq!(
            hmac_hex(Algorithm::Sha3_256, &key, RECEIPT_MSG),
            "85180497aaaa4844a278b52b1ce257d2820dbf5857470a5f678fef2266d0d4a8"
        );
    }

    #[test]
    fn message_uses_byte_lengths_and_skips_signatures() {
        let form = FormBody::parse(
            "REFNO=211153389&COMPANY=&ZERO=0&ADDRESS1=R.+%C3%81lvaro+Coutinho+14&IPN_PID[]=1&IPN_PID[]=22&IPN_X[]=&HASH=ab&SIGNATURE_SHA2_256=cd&SIGNATURE_SHA3_256=ef"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(signature_message(&form)).unwrap(),
            "9211153389010".to_owned() + "22R. Álvaro Coutinho 14" + "11" + "222" + "0"
        );
    }

    #[test]
    fn algorithm_names_order_and_parse() {
        assert!(Algorithm::Md5 < Algorithm::Sha256 && Algorithm::Sha256 < Algorithm::Sha3_256);
        for a in Algorithm::ALL {
            assert_eq!(a.as_str().parse::<Algorithm>(), Ok(a));
            assert_eq!(a.to_string(), a.as_str());
            assert_eq!(hmac_hex(a, &SecretKey::from("k"), b"m").len(), a.hex_len());
        }
        assert_eq!("SHA3-256".parse::<Algorithm>(), Ok(Algorithm::Sha3_256));
        assert_eq!(
            "sha3_256".parse::<Algorithm>(),
            Err(UnknownAlgorithm("sha3_256".into()))
        );
        assert_eq!(Algorithm::Sha256.field_name(), "SIGNATURE_SHA2_256");
    }

    #[test]
    fn secret_key_never_printed() {
        let k = SecretKey::from("hunter2");
        assert_eq!(format!("{k:?}"), "SecretKey(***)");
        assert_eq!(format!("{k}"), "SecretKey(***)");
        assert!(!format!("{:?}", vec![k]).contains("hunter2"));
    }

    fn sample() -> FormBody {
        let mut f = FormBody::new();
        f.push_scalar("REFNO", "1234");
        f.push_scalar("ORDERSTATUS", "COMPLETE");
        f.push_array("IPN_PID", &["1", "2"]);
        f
    }

    #[test]
    fn sign_appends_in_order_and_replaces() {
        let key = SecretKey::from("k1");
        let mut f = sample();
        f.push_scalar("HASH", "stale");
        sign(
            &mut f,
            &key,
            &[Algorithm::Sha3_256, Algorithm::Md5, Algorithm::Md5],
        );
        let names: Vec<_> = f.entries().iter().map(|e| e.name.clone()).collect();
        assert_eq!(
            names,
            [
                "REFNO",
                "ORDERSTATUS",
                "IPN_PID",
                "HASH",
                "SIGNATURE_SHA3_256"
            ]
        );
        assert_eq!(
            verify(&f, std::slice::from_ref(&key), Algorithm::Md5),
            Ok(Verified {
                algorithm: Algorithm::Sha3_256,
                key_index: 0
            })
        );
        let checks = check_all(&f, &key);
        assert_eq!(checks.len(), 2);
        assert!(checks.iter().all(|c| c.valid));
    }

    #[test]
    fn verify_tries_rotated_keys() {
        let old = SecretKey::from("old");
        let new = SecretKey::from("new");
        let mut f = sample();
        sign(&mut f, &old, &[Algorithm::Sha256]);
        assert_eq!(
            verify(&f, &[new.clone(), old.clone()], Algorithm::Sha256),
            Ok(Verified {
                algorithm: Algorithm::Sha256,
                key_index: 1
            })
        );
        assert_eq!(
            verify(&f, &[new], Algorithm::Md5),
            Err(SignatureError::Mismatch {
                algorithm: Algorithm::Sha256
            })
        );
    }

    #[test]
    fn verify_accepts_upper_case_hex() {
        let key = SecretKey::from("k");
        let mut f = sample();
        sign(&mut f, &key, &[Algorithm::Md5]);
        let upper = f.get("HASH").unwrap().to_ascii_uppercase();
        f.push_scalar("HASH", &upper);
        assert!(verify(&f, &[key], Algorithm::Md5).is_ok());
    }

    #[test]
    fn verify_does_not_fall_back_to_weaker_signature() {
        let key = SecretKey::from("k");
        let mut f = sample();
        sign(&mut f, &key, &[Algorithm::Md5, Algorithm::Sha256]);
        f.push_scalar("SIGNATURE_SHA2_256", &"0".repeat(64));
        assert_eq!(
            verify(&f, &[key], Algorithm::Md5),
            Err(SignatureError::Mismatch {
                algorithm: Algorithm::Sha256
            })
        );
    }

    #[test]
    fn verify_errors() {
        let key = SecretKey::from("k");
        let f = sample();
        assert_eq!(
            verify(&f, std::slice::from_ref(&key), Algorithm::Md5),
            Err(SignatureError::Missing)
        );
        let mut empty_sig = sample();
        empty_sig.push_scalar("HASH", "");
        assert_eq!(
            verify(&empty_sig, std::slice::from_ref(&key), Algorithm::Md5),
            Err(SignatureError::Missing)
        );
        let mut md5 = sample();
        sign(&mut md5, &key, &[Algorithm::Md5]);
        assert_eq!(
            verify(&md5, std::slice::from_ref(&key), Algorithm::Sha256),
            Err(SignatureError::BelowMinimum {
                strongest: Algorithm::Md5,
                minimum: Algorithm::Sha256
            })
        );
        assert_eq!(
            verify(&md5, &[], Algorithm::Md5),
            Err(SignatureError::NoKeys)
        );
        let mut arr = sample();
        arr.push_array("SIGNATURE_SHA3_256", &["a"]);
        assert_eq!(
            verify(&arr, &[key], Algorithm::Md5),
            Err(SignatureError::MalformedField {
                field: "SIGNATURE_SHA3_256"
            })
        );
    }
}
