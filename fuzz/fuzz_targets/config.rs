//! Checks that `Config::from_toml` returns an error instead of panicking on
//! any text, including valid TOML with out-of-range or malformed values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = Config::from_toml(text) {
        // Formatting the error runs the line lookup on the error's span.
        let _ = error.to_string();
    }
});
