//! `FormBody::parse` on arbitrary bytes: never panics, and whatever it accepts survives a
//! round trip through `to_urlencoded` unchanged (same fields, same order, same values), so the
//! signature message of a re-encoded body is the one of the original.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twocheckout::form::FormBody;
use twocheckout::signature::signature_message;

fuzz_target!(|data: &[u8]| {
    let Ok(form) = FormBody::parse(data) else {
        return;
    };
    assert!(!form.is_empty(), "an accepted form has fields");
    let encoded = form.to_urlencoded();
    let again = FormBody::parse(encoded.as_bytes())
        .unwrap_or_else(|e| panic!("re-encoded form does not parse: {e}: {encoded:?}"));
    assert_eq!(form.entries(), again.entries(), "round trip of {encoded:?}");
    assert_eq!(signature_message(&form), signature_message(&again));
    // Encoding is canonical: a second round trip is byte-identical.
    assert_eq!(again.to_urlencoded(), encoded);
});
