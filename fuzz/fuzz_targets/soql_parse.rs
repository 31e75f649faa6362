//! The Salesforce emulator's SOQL parser on arbitrary text: never panics (every failure is a
//! `MALFORMED_QUERY`-style error), and parsing is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let first = sf_emulator::soql::parse(text);
    let second = sf_emulator::soql::parse(text);
    assert_eq!(first.is_ok(), second.is_ok(), "deterministic on {text:?}");
    if let (Ok(a), Ok(b)) = (&first, &second) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
});
