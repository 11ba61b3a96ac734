//! Checks that `parse_key` never panics, and that every key it accepts starts
//! with a known prefix and, for `lsv2_` keys, has the v2 length of 51.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::credential::{
    parse_key, KeyHash, KeyKind, LEGACY_PREFIX, PERSONAL_PREFIX, SERVICE_PREFIX,
};

/// Length of a v2 key: 8-byte prefix, 32 hex digits, `_`, 10 hex digits.
const V2_KEY_LEN: usize = 51;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = parse_key(text) else {
        return;
    };

    let expected_prefix = match parsed.kind {
        KeyKind::Legacy => LEGACY_PREFIX,
        KeyKind::Personal => PERSONAL_PREFIX,
        KeyKind::Service => SERVICE_PREFIX,
    };
    assert!(
        text.starts_with(expected_prefix),
        "{text:?} parsed as {:?} without the prefix {expected_prefix:?}",
        parsed.kind
    );
    if text.starts_with("lsv2_") {
        assert_eq!(
            text.len(),
            V2_KEY_LEN,
            "v2 key {text:?} was accepted with the wrong length"
        );
    }
    assert!(
        parsed.hash == KeyHash::of(text),
        "parsed hash of {text:?} is not the SHA-256 of the text"
    );
});
