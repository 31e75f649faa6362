//! Salesforce record ids: 15-character case-sensitive ids, the 18-character case-safe form
//! with its 3-character checksum suffix, and key prefixes.
//!
//! Layout of a generated 15-character id: `KKK` key prefix, `PP` pod/instance, `0` reserved,
//! then a 9-character base-62 sequence (`0-9A-Za-z`, which sorts in ASCII order, so ids of one
//! object sort in creation order).

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// Pod/instance part used for every id the emulator generates.
pub const POD: &str = "5e";

/// Computes the 3-character case-safe suffix of a 15-character id.
///
/// For each 5-character chunk, bit `i` is set when character `i` is an upper-case ASCII
/// letter; the 5-bit value indexes `A..Z0..5`.
pub fn suffix(id15: &str) -> String {
    let bytes = id15.as_bytes();
    let mut out = String::with_capacity(3);
    for chunk in 0..3 {
        let mut v = 0usize;
        for i in 0..5 {
            if let Some(b) = bytes.get(chunk * 5 + i) {
                if b.is_ascii_uppercase() {
                    v |= 1 << i;
                }
            }
        }
        out.push(SUFFIX_ALPHABET[v] as char);
    }
    out
}

/// Extends a 15-character id to its 18-character case-safe form.
pub fn to_18(id15: &str) -> String {
    let mut s = String::with_capacity(18);
    s.push_str(id15);
    s.push_str(&suffix(id15));
    s
}

/// Builds an 18-character id from a key prefix and a sequence number.
pub fn make_id(prefix: &str, seq: u64) -> String {
    let mut digits = [b'0'; 9];
    let mut n = seq;
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    let mut id15 = String::with_capacity(15);
    id15.push_str(prefix);
    id15.push_str(POD);
    id15.push('0');
    id15.push_str(std::str::from_utf8(&digits).unwrap_or("000000000"));
    to_18(&id15)
}

/// Normalises a 15- or 18-character id to the 18-character form. Returns `None` when the
/// text is not shaped like an id (wrong length, non alphanumeric characters, or an
/// 18-character id whose suffix does not match its first 15 characters).
pub fn normalize(text: &str) -> Option<String> {
    if !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match text.len() {
        15 => Some(to_18(text)),
        18 => {
            let (head, tail) = text.split_at(15);
            // The suffix is case-insensitive in practice (clients upper-case it); compare so.
            if suffix(head).eq_ignore_ascii_case(tail) {
                Some(to_18(head))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The 3-character key prefix of an id (empty for short text).
pub fn prefix_of(id: &str) -> &str {
    id.get(0..3).unwrap_or("")
}

/// Parses the 9-character sequence back from a generated id (for restoring counters).
pub fn sequence_of(id: &str) -> Option<u64> {
    let digits = id.get(6..15)?;
    let mut n: u64 = 0;
    for b in digits.bytes() {
        let v = BASE62.iter().position(|c| *c == b)? as u64;
        n = n.checked_mul(62)?.checked_add(v)?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn suffixes_of_real_ids() {
        // Ids taken from recorded responses in the reference.
        assert_eq!(to_18("0015500001QdQWa"), "0015500001QdQWaAAN");
        assert_eq!(to_18("0035500001H9ka4"), "0035500001H9ka4AAB");
        assert_eq!(to_18("0035500001H9kZu"), "0035500001H9kZuAAJ");
        assert_eq!(to_18("0035500001H9kaA"), "0035500001H9kaAAAR");
        assert_eq!(to_18("00T5000001OY7XB"), "00T5000001OY7XBEA1");
        assert_eq!(to_18("01t50000001L5cT"), "01t50000001L5cTAAS");
        assert_eq!(to_18("0038M0000016Wv8"), "0038M0000016Wv8QAE");
    }

    #[test]
    fn normalize_accepts_15_and_18() {
        assert_eq!(
            normalize("0015500001QdQWa").as_deref(),
            Some("0015500001QdQWaAAN")
        );
        assert_eq!(
            normalize("0015500001QdQWaAAN").as_deref(),
            Some("0015500001QdQWaAAN")
        );
        assert_eq!(
            normalize("0015500001QdQWaaan").as_deref(),
            Some("0015500001QdQWaAAN")
        );
        assert_eq!(normalize("0015500001QdQWaXXX"), None);
        assert_eq!(normalize("abc"), None);
        assert_eq!(normalize("00155-0001QdQWa"), None);
    }

    proptest! {
        #[test]
        fn generated_ids_round_trip(seq in 0u64..62u64.pow(9)) {
            let id = make_id("003", seq);
            prop_assert_eq!(id.len(), 18);
            prop_assert_eq!(prefix_of(&id), "003");
            prop_assert_eq!(normalize(&id), Some(id.clone()));
            prop_assert_eq!(normalize(&id[..15]), Some(id.clone()));
            prop_assert_eq!(sequence_of(&id), Some(seq));
        }

        #[test]
        fn generated_ids_sort_in_sequence_order(a in 0u64..1_000_000_000, b in 0u64..1_000_000_000) {
            let (ia, ib) = (make_id("001", a), make_id("001", b));
            prop_assert_eq!(a.cmp(&b), ia.cmp(&ib));
        }
    }
}
