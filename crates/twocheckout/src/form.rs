//! `application/x-www-form-urlencoded` parsing that keeps field order and reproduces
//! PHP `$_POST` array grouping.
//!
//! 2Checkout signs the values of a notification in the order they were received
//! (reference §2.1). Every reference implementation iterates PHP's `$_POST`, which
//! groups repeated `NAME[]` keys into one array at the position of the first
//! occurrence. [`FormBody::parse`] does the same, so the signature message built from a
//! [`FormBody`] equals the one 2Checkout computed whenever arrays are contiguous on the
//! wire (as in every published payload) and equals PHP's reading otherwise.
//!
//! Deliberate differences from PHP, all of which make malformed input an error instead
//! of a silent guess:
//! - a bad percent escape (`%` not followed by two hex digits) is rejected
//!   (PHP keeps it literally);
//! - a scalar name that occurs twice is rejected (PHP keeps the last value);
//! - a name used both as `NAME` and `NAME[]` is rejected (PHP keeps the last shape);
//! - names are not rewritten (PHP turns `.` and spaces in names into `_`) and
//!   bracketed names other than a trailing `[]` (e.g. `A[0]`, `A[b]`) are kept as
//!   literal scalar names instead of being turned into keyed arrays.
//!
//! Empty pairs (`a=1&&b=2`, a trailing `&`) are skipped like PHP does. A pair without
//! `=` is a field with an empty value.

use std::collections::HashMap;
use std::fmt::Write as _;

/// Maximum number of `name=value` pairs accepted by [`FormBody::parse`].
///
/// A real IPN has well under a thousand pairs (PHP's default `max_input_vars` is 1000);
/// the limit only bounds the work an abusive request can cause.
pub const MAX_PAIRS: usize = 10_000;

/// The value of one form field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldValue {
    /// `NAME=value`.
    Scalar(String),
    /// `NAME[]=a&NAME[]=b`, in wire order.
    Array(Vec<String>),
}

impl FieldValue {
    /// All values of the field in order: one for a scalar, every element for an array.
    pub fn values(&self) -> &[String] {
        match self {
            FieldValue::Scalar(v) => std::slice::from_ref(v),
            FieldValue::Array(vs) => vs,
        }
    }
}

/// One field of a form body. `name` never carries the `[]` suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FormEntry {
    /// Field name without the `[]` array suffix.
    pub name: String,
    /// Scalar or array value.
    pub value: FieldValue,
}

/// Why a request body is not an acceptable form body. Every variant means the request
/// is malformed: answer 400 and do not acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The body has no fields at all.
    #[error("form body is empty")]
    Empty,
    /// A `%` that is not followed by two hexadecimal digits.
    #[error("bad percent escape at byte {offset} of pair {pair}")]
    BadPercentEscape {
        /// 1-based index of the `name=value` pair.
        pair: usize,
        /// Byte offset of the `%` inside the pair.
        offset: usize,
    },
    /// A name or value that is not valid UTF-8 once percent-decoded.
    #[error("pair {pair} is not valid UTF-8 after percent-decoding")]
    NotUtf8 {
        /// 1-based index of the `name=value` pair.
        pair: usize,
    },
    /// A pair such as `=value` or `[]=value` whose name is empty.
    #[error("pair {pair} has no field name")]
    NameMissing {
        /// 1-based index of the `name=value` pair.
        pair: usize,
    },
    /// The same name appears both as `NAME` and as `NAME[]`.
    #[error("field {name:?} is used both as a scalar and as an array")]
    ScalarArrayConflict {
        /// The field name without `[]`.
        name: String,
    },
    /// A scalar name occurs more than once.
    #[error("scalar field {name:?} occurs more than once")]
    DuplicateScalar {
        /// The repeated field name.
        name: String,
    },
    /// More than [`MAX_PAIRS`] pairs.
    #[error("form body has more than {limit} fields")]
    TooManyFields {
        /// The limit that was exceeded.
        limit: usize,
    },
}

/// An ordered, PHP-grouped form body.
///
/// Invariant: every name occurs in at most one entry.
#[derive(Debug, Clone, Default)]
pub struct FormBody {
    entries: Vec<FormEntry>,
    index: HashMap<String, usize>,
}

impl PartialEq for FormBody {
    fn eq(&self, other: &Self) -> bool {
        // `index` is a function of `entries`.
        self.entries == other.entries
    }
}

impl Eq for FormBody {}

impl FormBody {
    /// An empty body, for building notifications.
    pub fn new() -> FormBody {
        FormBody::default()
    }

    /// Parse a raw `application/x-www-form-urlencoded` body (see the module docs for the
    /// exact rules).
    pub fn parse(body: &[u8]) -> Result<FormBody, FormError> {
        let mut form = FormBody::new();
        let mut pairs = 0usize;
        for raw in body.split(|b| *b == b'&') {
            if raw.is_empty() {
                continue;
            }
            pairs += 1;
            if pairs > MAX_PAIRS {
                return Err(FormError::TooManyFields { limit: MAX_PAIRS });
            }
            let (raw_name, raw_value) = match raw.iter().position(|b| *b == b'=') {
                Some(eq) => (&raw[..eq], &raw[eq + 1..]),
                None => (raw, &raw[raw.len()..]),
            };
            let name = decode(raw_name, pairs, 0)?;
            let value = decode(raw_value, pairs, raw_name.len() + 1)?;
            let (name, is_array) = match name.strip_suffix("[]") {
                Some(base) => (base.to_owned(), true),
                None => (name, false),
            };
            if name.is_empty() {
                return Err(FormError::NameMissing { pair: pairs });
            }
            match form.index.get(&name).copied() {
                None => {
                    let value = if is_array {
                        FieldValue::Array(vec![value])
                    } else {
                        FieldValue::Scalar(value)
                    };
                    form.insert_new(name, value);
                }
                Some(i) => match (&mut form.entries[i].value, is_array) {
                    (FieldValue::Array(values), true) => values.push(value),
                    (FieldValue::Scalar(_), false) => {
                        return Err(FormError::DuplicateScalar { name })
                    }
                    _ => return Err(FormError::ScalarArrayConflict { name }),
                },
            }
        }
        if form.entries.is_empty() {
            return Err(FormError::Empty);
        }
        Ok(form)
    }

    fn insert_new(&mut self, name: String, value: FieldValue) {
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push(FormEntry { name, value });
    }

    /// Set a scalar field. An existing field of that name (scalar or array) is replaced
    /// in place, keeping its position; otherwise the field is appended.
    ///
    /// A name ending in `[]` is treated as an array name: the value is pushed as one
    /// element, exactly as `NAME[]=value` on the wire would be.
    pub fn push_scalar(&mut self, name: &str, value: &str) {
        if let Some(base) = name.strip_suffix("[]") {
            self.push_array(base, &[value]);
            return;
        }
        match self.index.get(name).copied() {
            Some(i) => self.entries[i].value = FieldValue::Scalar(value.to_owned()),
            None => self.insert_new(name.to_owned(), FieldValue::Scalar(value.to_owned())),
        }
    }

    /// Append elements to an array field (the name may be given with or without `[]`).
    /// An existing array is extended; an existing scalar is replaced in place by an
    /// array; otherwise the array is appended. Pushing no values onto a field that does
    /// not exist does nothing, because an array without elements has no wire form.
    pub fn push_array(&mut self, name: &str, values: &[&str]) {
        let name = name.strip_suffix("[]").unwrap_or(name);
        let new = values.iter().map(|v| (*v).to_owned());
        match self.index.get(name).copied() {
            Some(i) => match &mut self.entries[i].value {
                FieldValue::Array(existing) => existing.extend(new),
                scalar @ FieldValue::Scalar(_) => *scalar = FieldValue::Array(new.collect()),
            },
            None if values.is_empty() => {}
            None => self.insert_new(name.to_owned(), FieldValue::Array(new.collect())),
        }
    }

    /// Remove a field (name without `[]`), returning its value. Later fields move up.
    pub fn remove(&mut self, name: &str) -> Option<FieldValue> {
        let i = self.index.remove(name)?;
        let entry = self.entries.remove(i);
        for pos in self.index.values_mut() {
            if *pos > i {
                *pos -= 1;
            }
        }
        Some(entry.value)
    }

    /// The fields in order.
    pub fn entries(&self) -> &[FormEntry] {
        &self.entries
    }

    /// Number of fields (an array counts once).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the body has no fields (only possible for a built body).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The field of that name (without `[]`), whatever its shape.
    pub fn field(&self, name: &str) -> Option<&FieldValue> {
        self.index.get(name).map(|i| &self.entries[*i].value)
    }

    /// The value of a scalar field; `None` when absent or when the field is an array.
    pub fn get(&self, name: &str) -> Option<&str> {
        match self.field(name)? {
            FieldValue::Scalar(v) => Some(v),
            FieldValue::Array(_) => None,
        }
    }

    /// The elements of an array field (name without `[]`); `None` when absent or scalar.
    pub fn get_array(&self, name: &str) -> Option<&[String]> {
        match self.field(name)? {
            FieldValue::Scalar(_) => None,
            FieldValue::Array(vs) => Some(vs),
        }
    }

    /// A scalar value, or the first element of an array (PHP's `$_POST['X'][0]`).
    pub fn first(&self, name: &str) -> Option<&str> {
        self.field(name)?.values().first().map(String::as_str)
    }

    /// Re-encode in order; arrays become repeated `NAME[]=value` pairs. Spaces are
    /// encoded as `+`. `parse(to_urlencoded(x)) == x` for every body whose names are
    /// non-empty and whose arrays are non-empty.
    pub fn to_urlencoded(&self) -> String {
        let mut out = String::new();
        for entry in &self.entries {
            for value in entry.value.values() {
                if !out.is_empty() {
                    out.push('&');
                }
                encode_into(&mut out, &entry.name);
                if matches!(entry.value, FieldValue::Array(_)) {
                    out.push_str("%5B%5D");
                }
                out.push('=');
                encode_into(&mut out, value);
            }
        }
        out
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode one name or value (`+` is a space). `base` is the offset of `raw`
/// inside its pair, for error messages.
fn decode(raw: &[u8], pair: usize, base: usize) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = raw.get(i + 1).copied().and_then(hex_val);
                let lo = raw.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => {
                        return Err(FormError::BadPercentEscape {
                            pair,
                            offset: base + i,
                        })
                    }
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8 { pair })
}

fn encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_arrays_at_first_occurrence_like_php() {
        let f = FormBody::parse(b"A[]=1&B=x&A[]=2&C=").unwrap();
        let names: Vec<_> = f.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert_eq!(f.get_array("A").unwrap(), ["1", "2"]);
        assert_eq!(f.get("B"), Some("x"));
        assert_eq!(f.get("C"), Some(""));
        assert_eq!(f.first("A"), Some("1"));
        assert_eq!(f.first("B"), Some("x"));
        assert_eq!(f.get("A"), None);
        assert_eq!(f.get_array("B"), None);
    }

    #[test]
    fn decodes_percent_plus_and_encoded_brackets() {
        let f = FormBody::parse(
            b"IPN_PNAME%5B%5D=Software+program&ADDRESS1=R.+%C3%81lvaro+Coutinho+14&X=a%2Bb%26c%3D",
        )
        .unwrap();
        assert_eq!(f.get_array("IPN_PNAME").unwrap(), ["Software program"]);
        assert_eq!(f.get("ADDRESS1"), Some("R. Álvaro Coutinho 14"));
        assert_eq!(f.get("X"), Some("a+b&c="));
    }

    #[test]
    fn skips_empty_pairs_and_accepts_pair_without_equals() {
        let f = FormBody::parse(b"&A=1&&FLAG&").unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f.get("FLAG"), Some(""));
    }

    #[test]
    fn keeps_values_raw() {
        let f = FormBody::parse(b"A=+%20x%20+&B=a%5Cb&C=%26amp%3B").unwrap();
        assert_eq!(f.get("A"), Some("  x  "));
        assert_eq!(f.get("B"), Some("a\\b"));
        assert_eq!(f.get("C"), Some("&amp;"));
    }

    #[test]
    fn error_empty() {
        assert_eq!(FormBody::parse(b""), Err(FormError::Empty));
        assert_eq!(FormBody::parse(b"&&"), Err(FormError::Empty));
    }

    #[test]
    fn error_bad_percent_escape() {
        assert_eq!(
            FormBody::parse(b"A=1&B=10%"),
            Err(FormError::BadPercentEscape { pair: 2, offset: 4 })
        );
        assert_eq!(
            FormBody::parse(b"A%G1=1"),
            Err(FormError::BadPercentEscape { pair: 1, offset: 1 })
        );
        assert!(matches!(
            FormBody::parse(b"A=%4"),
            Err(FormError::BadPercentEscape { .. })
        ));
    }

    #[test]
    fn error_not_utf8() {
        assert_eq!(
            FormBody::parse(b"A=1&B=%C3%28"),
            Err(FormError::NotUtf8 { pair: 2 })
        );
        assert_eq!(
            FormBody::parse(b"A=\xff"),
            Err(FormError::NotUtf8 { pair: 1 })
        );
    }

    #[test]
    fn error_name_missing() {
        assert_eq!(
            FormBody::parse(b"A=1&=2"),
            Err(FormError::NameMissing { pair: 2 })
        );
        assert_eq!(
            FormBody::parse(b"[]=2"),
            Err(FormError::NameMissing { pair: 1 })
        );
    }

    #[test]
    fn error_scalar_array_conflict() {
        assert_eq!(
            FormBody::parse(b"A=1&A[]=2"),
            Err(FormError::ScalarArrayConflict { name: "A".into() })
        );
        assert_eq!(
            FormBody::parse(b"A[]=1&A=2"),
            Err(FormError::ScalarArrayConflict { name: "A".into() })
        );
    }

    #[test]
    fn error_duplicate_scalar() {
        assert_eq!(
            FormBody::parse(b"A=1&B=2&A=3"),
            Err(FormError::DuplicateScalar { name: "A".into() })
        );
    }

    #[test]
    fn error_too_many_fields() {
        let ok = vec!["X[]=1"; MAX_PAIRS].join("&");
        assert_eq!(
            FormBody::parse(ok.as_bytes())
                .unwrap()
                .get_array("X")
                .unwrap()
                .len(),
            MAX_PAIRS
        );
        let too_many = vec!["X[]=1"; MAX_PAIRS + 1].join("&");
        assert_eq!(
            FormBody::parse(too_many.as_bytes()),
            Err(FormError::TooManyFields { limit: MAX_PAIRS })
        );
    }

    #[test]
    fn builder_replaces_in_place_and_extends_arrays() {
        let mut f = FormBody::new();
        f.push_scalar("A", "1");
        f.push_array("L", &["x"]);
        f.push_scalar("B", "2");
        f.push_array("L[]", &["y"]);
        f.push_scalar("L[]", "z");
        f.push_scalar("A", "one");
        f.push_array("EMPTY", &[]);
        assert_eq!(f.to_urlencoded(), "A=one&L%5B%5D=x&L%5B%5D=y&L%5B%5D=z&B=2");
        f.push_array("B", &["b"]);
        assert_eq!(f.get_array("B").unwrap(), ["b"]);
        assert_eq!(f.remove("A"), Some(FieldValue::Scalar("one".into())));
        assert_eq!(f.entries()[0].name, "L");
        assert_eq!(f.get_array("B").unwrap(), ["b"]);
        assert_eq!(f.remove("nope"), None);
        f.push_scalar("L", "s");
        assert_eq!(f.get("L"), Some("s"));
    }

    #[test]
    fn encodes_reserved_and_non_ascii() {
        let mut f = FormBody::new();
        f.push_scalar("N", "Álvaro & Co=1+2 %");
        let enc = f.to_urlencoded();
        assert_eq!(enc, "N=%C3%81lvaro+%26+Co%3D1%2B2+%25");
        assert_eq!(FormBody::parse(enc.as_bytes()).unwrap(), f);
    }
}
