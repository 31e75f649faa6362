//! REST API 6.0 `X-Avangate-Authentication` header (reference §4.1).
//!
//! `code="{MERCHANT_CODE}" date="{Y-m-d H:i:s UTC}" hash="{hex}" algo="{sha256|sha3-256}"`
//! with `hash = HMAC(secret_key, len(code) code len(date) date)`.
//! MD5 is written in the REST 4.0 style, without an `algo` attribute; a header without
//! `algo` is read as MD5. Single quotes and missing spaces between attributes are
//! accepted when reading (older SDKs send them).

use chrono::{Duration, NaiveDateTime};

use crate::signature::{hex_eq, hmac_hex, length_prefixed, Algorithm, SecretKey};

/// The header name.
pub const AUTH_HEADER: &str = "X-Avangate-Authentication";
/// `Y-m-d H:i:s`.
pub const REST_DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Why an `X-Avangate-Authentication` header is rejected (answer 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestAuthError {
    /// A required attribute (`code`, `date`, `hash`) is absent.
    #[error("authentication header has no {0} attribute")]
    MissingAttribute(&'static str),
    /// The header does not have the `name="value"` shape.
    #[error("malformed authentication header: {0}")]
    Malformed(String),
    /// `algo` is not `sha256` or `sha3-256` (or `md5`).
    #[error("authentication header names unknown algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// `code` is not the expected merchant code.
    #[error("authentication header is for merchant {0:?}")]
    WrongMerchant(String),
    /// `date` is not `Y-m-d H:i:s`.
    #[error("authentication date {0:?} is not Y-m-d H:i:s")]
    BadDate(String),
    /// `date` is further from our clock than allowed: check NTP on the caller.
    #[error("authentication date is {skew_seconds}s away from the server clock")]
    ClockSkew {
        /// Signed difference `date - now` in seconds.
        skew_seconds: i64,
    },
    /// The hash does not match under the key.
    #[error("authentication {0} hash does not match")]
    Mismatch(Algorithm),
}

fn auth_message(merchant_code: &str, date: &str) -> Vec<u8> {
    length_prefixed([merchant_code, date])
}

/// Build the header value (without the header name).
pub fn authentication_header(
    merchant_code: &str,
    key: &SecretKey,
    algorithm: Algorithm,
    now: NaiveDateTime,
) -> String {
    let date = now.format(REST_DATE_FORMAT).to_string();
    let hash = hmac_hex(algorithm, key, &auth_message(merchant_code, &date));
    match algorithm {
        Algorithm::Md5 => format!("code=\"{merchant_code}\" date=\"{date}\" hash=\"{hash}\""),
        _ => {
            format!("code=\"{merchant_code}\" date=\"{date}\" hash=\"{hash}\" algo=\"{algorithm}\"")
        }
    }
}

/// Parse `name="value"` / `name='value'` pairs.
fn parse_attrs(header: &str) -> Result<Vec<(&str, &str)>, RestAuthError> {
    let mut out = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| {
            RestAuthError::Malformed(format!("expected name=\"value\" at {rest:?}"))
        })?;
        let name = rest[..eq].trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(RestAuthError::Malformed(format!(
                "bad attribute name {name:?}"
            )));
        }
        let after = rest[eq + 1..].trim_start();
        let quote = after
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or_else(|| RestAuthError::Malformed(format!("value of {name} is not quoted")))?;
        let inner = &after[1..];
        let end = inner
            .find(quote)
            .ok_or_else(|| RestAuthError::Malformed(format!("unterminated value of {name}")))?;
        out.push((name, &inner[..end]));
        rest = inner[end + 1..].trim_start();
    }
    Ok(out)
}

/// Verify a header value: merchant code, date within `max_skew` of `now`, hash.
pub fn verify_authentication_header(
    header: &str,
    merchant_code: &str,
    key: &SecretKey,
    now: NaiveDateTime,
    max_skew: Duration,
) -> Result<(), RestAuthError> {
    let attrs = parse_attrs(header)?;
    let get = |n: &'static str| {
        attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| *v)
    };
    let code = get("code").ok_or(RestAuthError::MissingAttribute("code"))?;
    let date = get("date").ok_or(RestAuthError::MissingAttribute("date"))?;
    let hash = get("hash").ok_or(RestAuthError::MissingAttribute("hash"))?;
    let algorithm = match get("algo") {
        None => Algorithm::Md5,
        Some(a) => a
            .parse::<Algorithm>()
            .map_err(|_| RestAuthError::UnknownAlgorithm(a.to_owned()))?,
    };
    if code != merchant_code {
        return Err(RestAuthError::WrongMerchant(code.to_owned()));
    }
    let at = NaiveDateTime::parse_from_str(date, REST_DATE_FORMAT)
        .map_err(|_| RestAuthError::BadDate(date.to_owned()))?;
    let skew = at - now;
    if skew > max_skew || -skew > max_skew {
        return Err(RestAuthError::ClockSkew {
            skew_seconds: skew.num_seconds(),
        });
    }
    if hex_eq(hash, &hmac_hex(algorithm, key, &auth_message(code, date))) {
        Ok(())
    } else {
        Err(RestAuthError::Mismatch(algorithm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_time() -> NaiveDateTime {
        NaiveDateTime::parse_from_str("2020-06-18 08:05:46", REST_DATE_FORMAT).unwrap()
    }

    #[test]
    fn doc_example_message() {
        assert_eq!(
            auth_message("YOURCODE123", "2020-06-18 08:05:46"),
            b"11YOURCODE123192020-06-18 08:05:46"
        );
    }

    #[test]
    fn v8_headers() {
        let key: SecretKey = "SECRET_KEY".into();
        assert_eq!(
            authentication_header("YOURCODE123", &key, Algorithm::Sha256, doc_time()),
            "code=\"YOURCODE123\" date=\"2020-06-18 08:05:46\" hash=\"483fc633a309cadc65b89519f55cc55e0d0611a6e1dfa62ac4d48fc3703a6a42\" algo=\"sha256\""
        );
        assert!(authentication_header("YOURCODE123", &key, Algorithm::Sha3_256, doc_time())
            .contains("hash=\"89cff582a336094aa0a917003e383016c173b0bcb38d812375b2b10ea6ce99ed\" algo=\"sha3-256\""));
        assert_eq!(
            authentication_header("YOURCODE123", &key, Algorithm::Md5, doc_time()),
            "code=\"YOURCODE123\" date=\"2020-06-18 08:05:46\" hash=\"63b79d9c070c985abc6c69efca7d9bb2\""
        );
    }

    #[test]
    fn round_trip_and_quirks() {
        let key: SecretKey = "SECRET_KEY".into();
        let skew = Duration::minutes(5);
        for a in Algorithm::ALL {
            let h = authentication_header("YOURCODE123", &key, a, doc_time());
            assert_eq!(
                verify_authentication_header(&h, "YOURCODE123", &key, doc_time(), skew),
                Ok(())
            );
        }
        let node_style = "code='YOURCODE123' date='2020-06-18 08:05:46' hash='483fc633a309cadc65b89519f55cc55e0d0611a6e1dfa62ac4d48fc3703a6a42'algo='sha256'";
        assert_eq!(
            verify_authentication_header(node_style, "YOURCODE123", &key, doc_time(), skew),
            Ok(())
        );
    }

    #[test]
    fn errors() {
        let key: SecretKey = "SECRET_KEY".into();
        let skew = Duration::minutes(5);
        let now = doc_time();
        let v = |h: &str| verify_authentication_header(h, "YOURCODE123", &key, now, skew);
        let good = authentication_header("YOURCODE123", &key, Algorithm::Sha256, now);
        assert_eq!(
            v(&good.replace("hash=\"4", "hash=\"5")),
            Err(RestAuthError::Mismatch(Algorithm::Sha256))
        );
        assert_eq!(
            v("date=\"x\" hash=\"y\""),
            Err(RestAuthError::MissingAttribute("code"))
        );
        assert_eq!(
            v("code=\"YOURCODE123\" hash=\"y\""),
            Err(RestAuthError::MissingAttribute("date"))
        );
        assert_eq!(
            v("code=\"YOURCODE123\" date=\"x\""),
            Err(RestAuthError::MissingAttribute("hash"))
        );
        assert!(matches!(
            v("code=YOURCODE123"),
            Err(RestAuthError::Malformed(_))
        ));
        assert!(matches!(v("code"), Err(RestAuthError::Malformed(_))));
        assert!(matches!(v("code=\"abc"), Err(RestAuthError::Malformed(_))));
        assert!(matches!(v("c-d=\"abc\""), Err(RestAuthError::Malformed(_))));
        assert_eq!(
            v(&good.replace("sha256", "sha1")),
            Err(RestAuthError::UnknownAlgorithm("sha1".into()))
        );
        let other = authentication_header("OTHER", &key, Algorithm::Sha256, now);
        assert_eq!(v(&other), Err(RestAuthError::WrongMerchant("OTHER".into())));
        assert_eq!(
            v("code=\"YOURCODE123\" date=\"20200618080546\" hash=\"y\" algo=\"sha256\""),
            Err(RestAuthError::BadDate("20200618080546".into()))
        );
        let late = authentication_header(
            "YOURCODE123",
            &key,
            Algorithm::Sha256,
            now + Duration::minutes(6),
        );
        assert_eq!(
            v(&late),
            Err(RestAuthError::ClockSkew { skew_seconds: 360 })
        );
        let early = authentication_header(
            "YOURCODE123",
            &key,
            Algorithm::Sha256,
            now - Duration::minutes(6),
        );
        assert_eq!(
            v(&early),
            Err(RestAuthError::ClockSkew { skew_seconds: -360 })
        );
        let edge = authentication_header(
            "YOURCODE123",
            &key,
            Algorithm::Sha256,
            now - Duration::minutes(5),
        );
        assert_eq!(v(&edge), Ok(()));
    }
}
