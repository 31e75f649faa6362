//! Signature verification on hostile input: `verify` never panics on any body, and a body
//! signed with a key is accepted, while any one-byte mutation of it is rejected unless the
//! mutation left the signed content (the signature message) unchanged — forging an HMAC is
//! not something a fuzzer can do, so an accepted mutation with different content is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twocheckout::form::FormBody;
use twocheckout::signature::{sign, signature_message, verify, Algorithm, SecretKey};

fuzz_target!(|data: &[u8]| {
    // Layout: [key length][key][mutation position: 2 bytes][mutation byte][body].
    let Some((&key_len, rest)) = data.split_first() else {
        return;
    };
    let key_len = usize::from(key_len % 33);
    if rest.len() < key_len + 3 {
        return;
    }
    let (key, rest) = rest.split_at(key_len);
    let position = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
    let replacement = rest[2];
    let body = &rest[3..];
    let key = SecretKey::new(key.to_vec());
    let keys = [key.clone()];

    // Arbitrary input: never a panic, whatever the minimum.
    if let Ok(form) = FormBody::parse(body) {
        for minimum in Algorithm::ALL {
            let _ = verify(&form, &keys, minimum);
        }
        let _ = verify(&form, &[], Algorithm::Md5);
    }
    if key.is_empty() {
        return;
    }

    // Signed input: accepted as is.
    let Ok(mut form) = FormBody::parse(body) else {
        return;
    };
    sign(&mut form, &key, &Algorithm::ALL);
    let signed = form.to_urlencoded().into_bytes();
    let signed_form = FormBody::parse(&signed).expect("a signed body parses");
    let verified = verify(&signed_form, &keys, Algorithm::Md5).expect("own signature verifies");
    assert_eq!(verified.algorithm, Algorithm::Sha3_256, "strongest present is used");

    // One byte changed: rejected, unless the signed content is the same.
    let mut mutated = signed.clone();
    let at = position % mutated.len();
    if mutated[at] == replacement {
        return;
    }
    mutated[at] = replacement;
    let Ok(mutated_form) = FormBody::parse(&mutated) else {
        return;
    };
    if verify(&mutated_form, &keys, Algorithm::Md5).is_ok() {
        assert_eq!(
            signature_message(&mutated_form),
            signature_message(&signed_form),
            "a mutated body with different content verified: {:?}",
            String::from_utf8_lossy(&mutated)
        );
    }
});
