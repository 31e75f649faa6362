//! Read receipts: the signed tag a receiver must put in its response body so that
//! 2Checkout stops resending an IPN or LCN (reference §2.2, §3.1).
//!
//! - MD5: `<EPAYMENT>DATE|HASH</EPAYMENT>`
//! - SHA: `<sig algo="sha256" date="DATE">HASH</sig>` / `algo="sha3-256"`
//!
//! `DATE` is the receiver's current time as `YmdHis`. `HASH` is the HMAC, with the
//! algorithm that was verified, of the length-prefixed values
//! - IPN: `IPN_PID[0]`, `IPN_PNAME[0]`, `IPN_DATE`, `DATE`
//! - LCN: `LICENSE_CODE`, `EXPIRATION_DATE`, `DATE`.
//!
//! ASSUMED (UNCONFIRMED in the reference): when `IPN_PID[]`, `IPN_PNAME[]` or
//! `EXPIRATION_DATE` is absent it contributes an empty value (`0`), as PHP's
//! `strlen(null)` does in the reference implementations. `IPN_DATE` and `LICENSE_CODE`
//! are required. Legacy INS has no documented receipt; a plain 200 is enough.

use chrono::NaiveDateTime;

use crate::form::FormBody;
use crate::notification::Kind;
use crate::signature::{hex_eq, hmac_hex, push_len_prefixed, Algorithm, SecretKey};

/// `YmdHis`, the receipt and `IPN_DATE` timestamp format.
pub const RECEIPT_DATE_FORMAT: &str = "%Y%m%d%H%M%S";

/// Why a receipt cannot be built or is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// A field the receipt hash needs is absent from the notification.
    #[error("field {field} needed for the read receipt is missing")]
    MissingField {
        /// The missing field.
        field: &'static str,
    },
    /// The kind has no read receipt (legacy INS only needs HTTP 200).
    #[error("{0} notifications have no read receipt")]
    UnsupportedKind(Kind),
    /// The response body contains no `<EPAYMENT>` or `<sig>` tag.
    #[error("response body contains no read receipt tag")]
    NoReceipt,
    /// A tag was found but its structure is wrong (missing attribute, no `|`, …).
    #[error("malformed read receipt: {0}")]
    Malformed(String),
    /// The `algo` attribute is not `sha256` or `sha3-256`.
    #[error("read receipt names unknown algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// The receipt date is not 14 digits `YmdHis`.
    #[error("read receipt date {0:?} is not YmdHis")]
    BadDate(String),
    /// The receipt hash does not match the notification under the key.
    #[error("read receipt {algorithm} hash does not match")]
    Mismatch {
        /// The algorithm named by the receipt.
        algorithm: Algorithm,
    },
}

fn receipt_message(kind: Kind, form: &FormBody, date: &str) -> Result<Vec<u8>, ReceiptError> {
    let mut msg = Vec::new();
    match kind {
        Kind::Ipn => {
            let ipn_date = form
                .first("IPN_DATE")
                .ok_or(ReceiptError::MissingField { field: "IPN_DATE" })?;
            push_len_prefixed(&mut msg, form.first("IPN_PID").unwrap_or(""));
            push_len_prefixed(&mut msg, form.first("IPN_PNAME").unwrap_or(""));
            push_len_prefixed(&mut msg, ipn_date);
        }
        Kind::Lcn => {
            let code = form
                .first("LICENSE_CODE")
                .ok_or(ReceiptError::MissingField {
                    field: "LICENSE_CODE",
                })?;
            push_len_prefixed(&mut msg, code);
            push_len_prefixed(&mut msg, form.first("EXPIRATION_DATE").unwrap_or(""));
        }
        Kind::Ins => return Err(ReceiptError::UnsupportedKind(Kind::Ins)),
    }
    push_len_prefixed(&mut msg, date);
    Ok(msg)
}

/// Format a receipt tag for an already computed hash.
pub fn format_receipt(algorithm: Algorithm, date: &str, hash: &str) -> String {
    match algorithm {
        Algorithm::Md5 => format!("<EPAYMENT>{date}|{hash}</EPAYMENT>"),
        _ => format!("<sig algo=\"{algorithm}\" date=\"{date}\">{hash}</sig>"),
    }
}

fn build(
    kind: Kind,
    form: &FormBody,
    algorithm: Algorithm,
    key: &SecretKey,
    now: NaiveDateTime,
) -> Result<String, ReceiptError> {
    let date = now.format(RECEIPT_DATE_FORMAT).to_string();
    let msg = receipt_message(kind, form, &date)?;
    Ok(format_receipt(
        algorithm,
        &date,
        &hmac_hex(algorithm, key, &msg),
    ))
}

/// The IPN read receipt for `algorithm` (use the algorithm that was verified) at `now`
/// (UTC recommended).
pub fn ipn_receipt(
    form: &FormBody,
    algorithm: Algorithm,
    key: &SecretKey,
    now: NaiveDateTime,
) -> Result<String, ReceiptError> {
    build(Kind::Ipn, form, algorithm, key, now)
}

/// The LCN read receipt for `algorithm` at `now`.
pub fn lcn_receipt(
    form: &FormBody,
    algorithm: Algorithm,
    key: &SecretKey,
    now: NaiveDateTime,
) -> Result<String, ReceiptError> {
    build(Kind::Lcn, form, algorithm, key, now)
}

/// A receipt tag found in a response body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FoundReceipt {
    algorithm: Algorithm,
    date: String,
    hash: String,
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = tag;
    loop {
        let at = rest.find(name)?;
        let before_ok = at == 0 || rest.as_bytes()[at - 1].is_ascii_whitespace();
        let after = rest[at + name.len()..].trim_start();
        if before_ok {
            if let Some(after_eq) = after.strip_prefix('=') {
                let after_eq = after_eq.trim_start();
                let quote = after_eq.chars().next()?;
                if quote == '"' || quote == '\'' {
                    let inner = &after_eq[1..];
                    let end = inner.find(quote)?;
                    return Some(&inner[..end]);
                }
                return None;
            }
        }
        rest = &rest[at + name.len()..];
    }
}

fn find_receipts(body: &str) -> Vec<Result<FoundReceipt, ReceiptError>> {
    let mut found = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("<EPAYMENT>") {
        let after = &rest[start + "<EPAYMENT>".len()..];
        let Some(end) = after.find("</EPAYMENT>") else {
            found.push(Err(ReceiptError::Malformed(
                "<EPAYMENT> without </EPAYMENT>".into(),
            )));
            break;
        };
        let inner = &after[..end];
        found.push(match inner.split_once('|') {
            Some((date, hash)) => Ok(FoundReceipt {
                algorithm: Algorithm::Md5,
                date: date.trim().to_owned(),
                hash: hash.trim().to_owned(),
            }),
            None => Err(ReceiptError::Malformed(
                "<EPAYMENT> content has no '|'".into(),
            )),
        });
        rest = &after[end..];
    }
    let mut rest = body;
    while let Some(start) = rest.find("<sig") {
        let after = &rest[start + 4..];
        // `<sig` must be a whole tag name (`<sig ` or `<sig>`), not e.g. `<signature`.
        if !after.starts_with(|c: char| c.is_ascii_whitespace() || c == '>') {
            rest = after;
            continue;
        }
        let Some(gt) = after.find('>') else {
            found.push(Err(ReceiptError::Malformed("unterminated <sig tag".into())));
            break;
        };
        let attrs = &after[..gt];
        let content = &after[gt + 1..];
        let Some(end) = content.find("</sig>") else {
            found.push(Err(ReceiptError::Malformed("<sig> without </sig>".into())));
            break;
        };
        let hash = content[..end].trim().to_owned();
        found.push(match (attr(attrs, "algo"), attr(attrs, "date")) {
            (Some(algo), Some(date)) => match algo {
                "sha256" => Ok(Algorithm::Sha256),
                "sha3-256" => Ok(Algorithm::Sha3_256),
                other => Err(ReceiptError::UnknownAlgorithm(other.to_owned())),
            }
            .map(|algorithm| FoundReceipt {
                algorithm,
                date: date.to_owned(),
                hash,
            }),
            (None, _) => Err(ReceiptError::Malformed(
                "<sig> has no algo attribute".into(),
            )),
            (_, None) => Err(ReceiptError::Malformed(
                "<sig> has no date attribute".into(),
            )),
        });
        rest = &content[end..];
    }
    found
}

fn valid_date(date: &str) -> bool {
    date.len() == 14
        && date.bytes().all(|b| b.is_ascii_digit())
        && NaiveDateTime::parse_from_str(date, RECEIPT_DATE_FORMAT).is_ok()
}

/// Check a receiver's response body the way 2Checkout does: find a receipt tag anywhere
/// in the body, recompute the hash with the tag's own date and algorithm, compare.
///
/// Returns the algorithm of the first valid tag. When several tags are present any
/// valid one is accepted; when none is valid, the error of the first tag is returned.
/// ASSUMED: the date must be a real `YmdHis` timestamp, but it is not compared to the
/// clock (whether 2Checkout checks either is UNCONFIRMED), and the receipt algorithm
/// need not equal the strongest signature sent.
pub fn check_receipt(
    kind: Kind,
    response_body: &str,
    form: &FormBody,
    key: &SecretKey,
) -> Result<Algorithm, ReceiptError> {
    if kind == Kind::Ins {
        return Err(ReceiptError::UnsupportedKind(Kind::Ins));
    }
    let mut first_error = None;
    for found in find_receipts(response_body) {
        let result = found.and_then(|r| {
            if !valid_date(&r.date) {
                return Err(ReceiptError::BadDate(r.date));
            }
            let msg = receipt_message(kind, form, &r.date)?;
            if hex_eq(&r.hash, &hmac_hex(r.algorithm, key, &msg)) {
                Ok(r.algorithm)
            } else {
                Err(ReceiptError::Mismatch {
                    algorithm: r.algorithm,
                })
            }
        });
        match result {
            Ok(a) => return Ok(a),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(ReceiptError::NoReceipt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, RECEIPT_DATE_FORMAT).unwrap()
    }

    fn doc_ipn() -> FormBody {
        let mut f = FormBody::new();
        f.push_scalar("REFNO", "1");
        f.push_array("IPN_PID", &["1", "7"]);
        f.push_array("IPN_PNAME", &["Software program", "Other"]);
        f.push_scalar("IPN_DATE", "20050303123434");
        f
    }

    fn doc_lcn() -> FormBody {
        let mut f = FormBody::new();
        f.push_scalar("LICENSE_CODE", "3C343D0FAF");
        f.push_scalar("EXPIRATION_DATE", "2005-03-03");
        f
    }

    #[test]
    fn v1_ipn_receipt_md5() {
        let r = ipn_receipt(
            &doc_ipn(),
            Algorithm::Md5,
            &"test".into(),
            at("20050303123434"),
        );
        assert_eq!(
            r.unwrap(),
            "<EPAYMENT>20050303123434|3d7a5eb5557b70a80e5141c4fee0ed0d</EPAYMENT>"
        );
    }

    #[test]
    fn v2_ipn_receipt_all_algorithms() {
        let key: SecretKey = "AABBCCDDEEFF".into();
        let now = at("20050303123434");
        assert_eq!(
            ipn_receipt(&doc_ipn(), Algorithm::Md5, &key, now).unwrap(),
            "<EPAYMENT>20050303123434|7bf97ed39681027d0c45aa45e3ea98f0</EPAYMENT>"
        );
        assert_eq!(
            ipn_receipt(&doc_ipn(), Algorithm::Sha256, &key, now).unwrap(),
            "<sig algo=\"sha256\" date=\"20050303123434\">ea6f44c39b3d204b59500998fcb9221c92744d9721a94b45fc6d5cda99980176</sig>"
        );
        assert_eq!(
            ipn_receipt(&doc_ipn(), Algorithm::Sha3_256, &key, now).unwrap(),
            "<sig algo=\"sha3-256\" date=\"20050303123434\">85180497aaaa4844a278b52b1ce257d2820dbf5857470a5f678fef2266d0d4a8</sig>"
        );
    }

    #[test]
    fn v3_lcn_receipt_all_algorithms() {
        let key: SecretKey = "AABBCCDDEEFF".into();
        let now = at("20081117145935");
        assert_eq!(
            lcn_receipt(&doc_lcn(), Algorithm::Md5, &key, now).unwrap(),
            "<EPAYMENT>20081117145935|cb34fe2991668eb82364edf62f845a34</EPAYMENT>"
        );
        assert!(lcn_receipt(&doc_lcn(), Algorithm::Sha256, &key, now)
            .unwrap()
            .contains(">cdd64ce75e6cf013a60291229c83063a5d903eae3bfa216e99aae8af65a055e8</sig>"));
        assert!(lcn_receipt(&doc_lcn(), Algorithm::Sha3_256, &key, now)
            .unwrap()
            .contains(">7fc19d21103ea56f1b413315fb3feb5fbdd137758623a73c7ed12d9bb84f21db</sig>"));
    }

    #[test]
    fn check_accepts_own_receipts_anywhere_in_body() {
        let key: SecretKey = "k".into();
        let now = at("20240229235959");
        for algo in Algorithm::ALL {
            let r = ipn_receipt(&doc_ipn(), algo, &key, now).unwrap();
            let body = format!("<html><body>OK {r} thanks</body></html>");
            assert_eq!(check_receipt(Kind::Ipn, &body, &doc_ipn(), &key), Ok(algo));
            let r = lcn_receipt(&doc_lcn(), algo, &key, now).unwrap();
            assert_eq!(check_receipt(Kind::Lcn, &r, &doc_lcn(), &key), Ok(algo));
        }
    }

    #[test]
    fn check_accepts_single_quotes_and_attribute_order() {
        let key: SecretKey = "AABBCCDDEEFF".into();
        let body = "<sig date='20050303123434'  algo='sha256'>EA6F44C39B3D204B59500998FCB9221C92744D9721A94B45FC6D5CDA99980176</sig>";
        assert_eq!(
            check_receipt(Kind::Ipn, body, &doc_ipn(), &key),
            Ok(Algorithm::Sha256)
        );
    }

    #[test]
    fn check_rejects_wrong_receipts() {
        let key: SecretKey = "AABBCCDDEEFF".into();
        let form = doc_ipn();
        assert_eq!(
            check_receipt(Kind::Ipn, "OK", &form, &key),
            Err(ReceiptError::NoReceipt)
        );
        assert_eq!(
            check_receipt(
                Kind::Ipn,
                "<EPAYMENT>20050303123434|00</EPAYMENT>",
                &form,
                &key
            ),
            Err(ReceiptError::Mismatch {
                algorithm: Algorithm::Md5
            })
        );
        // A receipt for another key.
        let other = ipn_receipt(&form, Algorithm::Md5, &"zz".into(), at("20050303123434")).unwrap();
        assert!(matches!(
            check_receipt(Kind::Ipn, &other, &form, &key),
            Err(ReceiptError::Mismatch { .. })
        ));
        // Python SDK's algo spelling.
        assert_eq!(
            check_receipt(
                Kind::Ipn,
                "<sig algo=\"sha3_256\" date=\"20050303123434\">x</sig>",
                &form,
                &key
            ),
            Err(ReceiptError::UnknownAlgorithm("sha3_256".into()))
        );
        // Ruby SDK's date format.
        assert_eq!(
            check_receipt(
                Kind::Ipn,
                "<EPAYMENT>2005-03-03 12:34:34|x</EPAYMENT>",
                &form,
                &key
            ),
            Err(ReceiptError::BadDate("2005-03-03 12:34:34".into()))
        );
        assert_eq!(
            check_receipt(
                Kind::Ipn,
                "<EPAYMENT>20051303123434|x</EPAYMENT>",
                &form,
                &key
            ),
            Err(ReceiptError::BadDate("20051303123434".into()))
        );
        assert!(matches!(
            check_receipt(
                Kind::Ipn,
                "<EPAYMENT>20050303123434</EPAYMENT>",
                &form,
                &key
            ),
            Err(ReceiptError::Malformed(_))
        ));
        assert!(matches!(
            check_receipt(Kind::Ipn, "<EPAYMENT>20050303123434|x", &form, &key),
            Err(ReceiptError::Malformed(_))
        ));
        assert!(matches!(
            check_receipt(
                Kind::Ipn,
                "<sig date=\"20050303123434\">x</sig>",
                &form,
                &key
            ),
            Err(ReceiptError::Malformed(_))
        ));
        assert!(matches!(
            check_receipt(Kind::Ipn, "<sig algo=\"sha256\">x</sig>", &form, &key),
            Err(ReceiptError::Malformed(_))
        ));
        assert!(matches!(
            check_receipt(
                Kind::Ipn,
                "<sig algo=\"sha256\" date=\"20050303123434\">x",
                &form,
                &key
            ),
            Err(ReceiptError::Malformed(_))
        ));
        assert!(matches!(
            check_receipt(Kind::Ipn, "<sig algo=\"sha256\"", &form, &key),
            Err(ReceiptError::Malformed(_))
        ));
        assert_eq!(
            check_receipt(Kind::Ipn, "<signature>x</signature>", &form, &key),
            Err(ReceiptError::NoReceipt)
        );
    }

    #[test]
    fn any_valid_tag_wins() {
        let key: SecretKey = "AABBCCDDEEFF".into();
        let good = ipn_receipt(&doc_ipn(), Algorithm::Md5, &key, at("20050303123434")).unwrap();
        let body = format!("<EPAYMENT>20050303123434|bad</EPAYMENT>{good}");
        assert_eq!(
            check_receipt(Kind::Ipn, &body, &doc_ipn(), &key),
            Ok(Algorithm::Md5)
        );
    }

    #[test]
    fn missing_fields_and_ins() {
        let key: SecretKey = "k".into();
        let now = at("20050303123434");
        let mut f = doc_ipn();
        f.remove("IPN_DATE");
        assert_eq!(
            ipn_receipt(&f, Algorithm::Md5, &key, now),
            Err(ReceiptError::MissingField { field: "IPN_DATE" })
        );
        assert_eq!(
            lcn_receipt(&FormBody::new(), Algorithm::Md5, &key, now),
            Err(ReceiptError::MissingField {
                field: "LICENSE_CODE"
            })
        );
        assert_eq!(
            check_receipt(Kind::Ins, "", &f, &key),
            Err(ReceiptError::UnsupportedKind(Kind::Ins))
        );
        // Absent product fields count as empty values.
        let mut bare = FormBody::new();
        bare.push_scalar("IPN_DATE", "20050303123434");
        let r = ipn_receipt(&bare, Algorithm::Md5, &key, now).unwrap();
        let expected = hmac_hex(Algorithm::Md5, &key, b"0014200503031234341420050303123434");
        assert_eq!(r, format!("<EPAYMENT>20050303123434|{expected}</EPAYMENT>"));
    }
}
