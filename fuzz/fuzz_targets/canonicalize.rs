//! Checks that every path `canonicalize` accepts has a canonical form that is a
//! fixed point and contains no `.` or `..` segment, even after percent-decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::routing::canonical::canonicalize;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(canonical) = canonicalize(path) else {
        return;
    };

    let again = canonicalize(&canonical);
    assert_eq!(
        again.as_deref(),
        Ok(&*canonical),
        "canonical form of {path:?} is not a fixed point"
    );
    assert!(
        !has_dot_segment(canonical.as_bytes()),
        "canonical form {canonical:?} of {path:?} contains a dot segment"
    );
    assert!(
        !has_dot_segment(&percent_decode(&canonical)),
        "canonical form {canonical:?} of {path:?} contains a dot segment after percent-decoding"
    );
});

fn has_dot_segment(path: &[u8]) -> bool {
    path.split(|&byte| byte == b'/')
        .any(|segment| segment == b"." || segment == b"..")
}

/// Decodes every well-formed percent-encoding, as an upstream that decodes the path would.
fn percent_decode(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let high = bytes.get(index + 1).and_then(|&byte| hex_digit_value(byte));
            let low = bytes.get(index + 2).and_then(|&byte| hex_digit_value(byte));
            if let (Some(high), Some(low)) = (high, low) {
                decoded.push(high << 4 | low);
                index += 3;
                continue;
            }
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    decoded
}

fn hex_digit_value(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).map(|digit| digit as u8)
}
