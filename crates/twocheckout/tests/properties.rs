//! Property tests: form round trip, sign/verify, tamper detection, byte lengths.

use proptest::prelude::*;
use twocheckout::{
    sign, signature_message, verify, Algorithm, FieldValue, FormBody, SecretKey, SignatureError,
};

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,12}",                      // printable ASCII incl. & = + % space
        "[a-zA-Z0-9 ÁáéÖøß€中文\\\\]{0,8}", // non-ASCII, backslashes
        Just(String::new()),
        Just("0".to_owned()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    "[A-Z][A-Z0-9_]{0,10}"
}

/// A body with unique names, arrays non-empty.
fn body() -> impl Strategy<Value = FormBody> {
    prop::collection::vec(
        (
            name(),
            prop::bool::ANY,
            prop::collection::vec(value(), 1..4),
        ),
        1..12,
    )
    .prop_map(|fields| {
        let mut f = FormBody::new();
        let mut seen = std::collections::HashSet::new();
        for (n, is_array, values) in fields {
            if !seen.insert(n.clone()) || n == "HASH" || n.starts_with("SIGNATURE_") {
                continue;
            }
            if is_array {
                let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                f.push_array(&n, &refs);
            } else {
                f.push_scalar(&n, &values[0]);
            }
        }
        f
    })
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec())
}

/// Every value of the body, in order, with the location to change it.
fn value_slots(f: &FormBody) -> Vec<(String, Option<usize>, String)> {
    let mut out = Vec::new();
    for e in f.entries() {
        match &e.value {
            FieldValue::Scalar(v) => out.push((e.name.clone(), None, v.clone())),
            FieldValue::Array(vs) => {
                for (i, v) in vs.iter().enumerate() {
                    out.push((e.name.clone(), Some(i), v.clone()));
                }
            }
        }
    }
    out
}

fn set_slot(f: &FormBody, name: &str, idx: Option<usize>, new: &str) -> FormBody {
    let mut out = FormBody::new();
    for e in f.entries() {
        match (&e.value, idx) {
            (FieldValue::Scalar(v), _) => {
                out.push_scalar(&e.name, if e.name == name { new } else { v })
            }
            (FieldValue::Array(vs), _) => {
                let vals: Vec<&str> = vs
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        if e.name == name && Some(i) == idx {
                            new
                        } else {
                            v.as_str()
                        }
                    })
                    .collect();
                out.push_array(&e.name, &vals);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn urlencoded_round_trip(f in body()) {
        prop_assume!(!f.is_empty());
        let enc = f.to_urlencoded();
        prop_assert_eq!(FormBody::parse(enc.as_bytes()).unwrap(), f);
    }

    #[test]
    fn sign_then_verify(f in body(), algo in algorithm(), key in "[ -~]{1,40}") {
        let key = SecretKey::from(key.as_str());
        let mut signed = f.clone();
        sign(&mut signed, &key, &[algo]);
        // Signed body survives the wire.
        let wire = FormBody::parse(signed.to_urlencoded().as_bytes()).unwrap();
        prop_assert_eq!(
            verify(&wire, std::slice::from_ref(&key), Algorithm::Md5).map(|v| v.algorithm),
            Ok(algo)
        );
        // Signing did not change the signed message.
        prop_assert_eq!(signature_message(&wire), signature_message(&f));
    }

    #[test]
    fn any_changed_byte_fails(f in body(), algo in algorithm(), pick in any::<prop::sample::Index>(), byte in any::<u8>(), pos in any::<prop::sample::Index>()) {
        let slots = value_slots(&f);
        prop_assume!(!slots.is_empty());
        let (name, idx, old) = &slots[pick.index(slots.len())];
        // Change, insert or delete one byte while staying valid UTF-8.
        let mut bytes = old.clone().into_bytes();
        let new = if bytes.is_empty() {
            "x".to_owned()
        } else {
            let p = pos.index(bytes.len());
            bytes[p] = byte;
            match String::from_utf8(bytes) {
                Ok(s) if s != *old => s,
                _ => format!("{old}!"),
            }
        };
        let key = SecretKey::from("k");
        let mut signed = f.clone();
        sign(&mut signed, &key, &[algo]);
        let sig = signed.get(algo.field_name()).unwrap().to_owned();
        let mut tampered = set_slot(&f, name, *idx, &new);
        tampered.push_scalar(algo.field_name(), &sig);
        prop_assert_eq!(
            verify(&tampered, &[key], Algorithm::Md5),
            Err(SignatureError::Mismatch { algorithm: algo })
        );
    }

    #[test]
    fn reordering_two_different_values_fails(f in body(), algo in algorithm(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let slots = value_slots(&f);
        prop_assume!(slots.len() >= 2);
        let (i, j) = (a.index(slots.len()), b.index(slots.len()));
        prop_assume!(i != j && slots[i].2 != slots[j].2);
        // Swap the two values (= the two fields exchanged positions on the wire).
        let swapped = set_slot(&set_slot(&f, &slots[i].0, slots[i].1, &slots[j].2), &slots[j].0, slots[j].1, &slots[i].2);
        let key = SecretKey::from("k");
        let mut signed = f.clone();
        sign(&mut signed, &key, &[algo]);
        let mut tampered = swapped;
        tampered.push_scalar(algo.field_name(), signed.get(algo.field_name()).unwrap());
        prop_assert!(verify(&tampered, &[key], Algorithm::Md5).is_err());
    }

    #[test]
    fn message_length_prefix_is_bytes(v in "[ÁéÖ€中a-z ]{0,10}") {
        let mut f = FormBody::new();
        f.push_scalar("A", &v);
        let expected = format!("{}{}", v.len(), v);
        prop_assert_eq!(signature_message(&f), expected.into_bytes());
    }
}

#[test]
fn non_ascii_value_hashed_by_byte_length() {
    let mut f = FormBody::new();
    f.push_scalar("ADDRESS1", "R. Álvaro Coutinho 14");
    assert_eq!(signature_message(&f), "22R. Álvaro Coutinho 14".as_bytes());
    let key = SecretKey::from("k");
    sign(&mut f, &key, &[Algorithm::Sha256]);
    let wire = FormBody::parse(f.to_urlencoded().as_bytes()).unwrap();
    assert!(verify(&wire, &[key], Algorithm::Sha256).is_ok());
}
