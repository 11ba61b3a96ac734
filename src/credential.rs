//! API keys: their shapes, parsing, hashing and generation.
//!
//! New keys look like `lsv2_pt_<32 hex>_<10 hex>`: 128 random bits, then a
//! 40-bit checksum (the first five bytes of SHA-256 over everything before
//! the last `_`). The checksum lets the gateway reject a mistyped key
//! without a store lookup. Legacy `ls__` keys carry no checksum. Only the
//! SHA-256 of a whole key is ever stored.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of legacy workspace keys.
pub const LEGACY_PREFIX: &str = "ls__";
/// Prefix of personal access tokens.
pub const PERSONAL_PREFIX: &str = "lsv2_pt_";
/// Prefix of service keys.
pub const SERVICE_PREFIX: &str = "lsv2_sk_";

const RANDOM_HEX_LEN: usize = 32;
const CHECKSUM_HEX_LEN: usize = 10;
/// Length of a v2 key: prefix, random part, `_`, checksum.
const V2_KEY_LEN: usize = 8 + RANDOM_HEX_LEN + 1 + CHECKSUM_HEX_LEN;
/// Characters of a key kept for display, such as `lsv2_pt_1a2b`.
const DISPLAY_PREFIX_LEN: usize = 12;

/// The kind of a key, from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// `ls__`: scoped to one workspace.
    Legacy,
    /// `lsv2_pt_`: acts as a user.
    Personal,
    /// `lsv2_sk_`: acts as a service account.
    Service,
}

impl KeyKind {
    /// Returns the name used in the store, headers and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Legacy => "legacy",
            KeyKind::Personal => "pat",
            KeyKind::Service => "service",
        }
    }

    /// Inverse of [`KeyKind::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "legacy" => Some(KeyKind::Legacy),
            "pat" => Some(KeyKind::Personal),
            "service" => Some(KeyKind::Service),
            _ => None,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            KeyKind::Legacy => LEGACY_PREFIX,
            KeyKind::Personal => PERSONAL_PREFIX,
            KeyKind::Service => SERVICE_PREFIX,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SHA-256 of a whole key: the only form in which keys are stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Hashes a key's text.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Lower-case hex, as accepted by key import.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not a secret, but eight digits are enough to tell keys apart.
        write!(f, "KeyHash({}…)", &hex::encode(&self.0[..4]))
    }
}

/// Shape error that rejects a credential before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("the API key has an unknown prefix")]
    UnknownPrefix,
    #[error("the API key is malformed")]
    Malformed,
    #[error("the API key's checksum does not match; check that it was copied whole")]
    BadChecksum,
}

/// A well-formed key, parsed from a request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey {
    pub kind: KeyKind,
    pub hash: KeyHash,
}

impl fmt::Debug for ParsedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("kind", &self.kind)
            .field("hash", &self.hash)
            .finish()
    }
}

/// Recognizes a key by its prefix, checks its shape and checksum, and
/// hashes it. Never touches the store.
pub fn parse_key(text: &str) -> Result<ParsedKey, KeyFormatError> {
    let kind = if text.starts_with(PERSONAL_PREFIX) {
        KeyKind::Personal
    } else if text.starts_with(SERVICE_PREFIX) {
        KeyKind::Service
    } else if text.starts_with(LEGACY_PREFIX) {
        KeyKind::Legacy
    } else {
        return Err(KeyFormatError::UnknownPrefix);
    };

    match kind {
        KeyKind::Legacy => {
            let body = &text[LEGACY_PREFIX.len()..];
            // Legacy keys were 32 hex digits; imported ones may differ, so
            // accept any plausible alphanumeric body.
            if !(16..=128).contains(&body.len()) || !body.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(KeyFormatError::Malformed);
            }
        }
        KeyKind::Personal | KeyKind::Service => {
            let bytes = text.as_bytes();
            let separator = V2_KEY_LEN - CHECKSUM_HEX_LEN - 1;
            if bytes.len() != V2_KEY_LEN
                || bytes[separator] != b'_'
                || !is_lower_hex(&bytes[8..separator])
                || !is_lower_hex(&bytes[separator + 1..])
            {
                return Err(KeyFormatError::Malformed);
            }
            if checksum(&text[..separator]) != text[separator + 1..] {
                return Err(KeyFormatError::BadChecksum);
            }
        }
    }
    Ok(ParsedKey {
        kind,
        hash: KeyHash::of(text),
    })
}

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn checksum(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    hex::encode(&digest[..CHECKSUM_HEX_LEN / 2])
}

/// A key's full text. It is shown once at creation; `Debug` and `Display`
/// print only the display prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// Generates a new key of `kind` from the operating system's random
    /// source. Legacy keys are generated only for tests and imports.
    pub fn generate(kind: KeyKind) -> Self {
        let mut random = [0u8; RANDOM_HEX_LEN / 2];
        rand::rngs::OsRng.fill_bytes(&mut random);
        Self::from_random(kind, random)
    }

    /// Builds the key of `kind` whose random part is `random` in hex.
    fn from_random(kind: KeyKind, random: [u8; RANDOM_HEX_LEN / 2]) -> Self {
        let body = format!("{}{}", kind.prefix(), hex::encode(random));
        let text = match kind {
            KeyKind::Legacy => body,
            KeyKind::Personal | KeyKind::Service => {
                let sum = checksum(&body);
                format!("{body}_{sum}")
            }
        };
        Self(text)
    }

    /// Wraps an existing key's text.
    pub fn from_text(text: String) -> Self {
        Self(text)
    }

    /// The whole key. Call only to hand it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }

    /// The first characters, safe to store and show.
    pub fn display_prefix(&self) -> String {
        display_prefix(&self.0)
    }
}

/// The first characters of a key, safe to store and show.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_LEN).collect()
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}…)", self.display_prefix())
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", self.display_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_with_their_kind() {
        for kind in [KeyKind::Personal, KeyKind::Service, KeyKind::Legacy] {
            let key = SecretKey::generate(kind);
            let parsed = parse_key(key.expose()).expect("generated key parses");
            assert_eq!(parsed.kind, kind);
            assert_eq!(parsed.hash, key.hash());
        }
    }

    #[test]
    fn generated_v2_key_has_the_expected_shape() {
        let key = SecretKey::generate(KeyKind::Personal);
        let text = key.expose();
        assert_eq!(text.len(), V2_KEY_LEN);
        assert!(text.starts_with("lsv2_pt_"));
        assert_eq!(&text[40..41], "_");
    }

    #[test]
    fn mistyped_key_fails_its_checksum() {
        let key = SecretKey::generate(KeyKind::Service);
        let mut text = key.expose().to_string();
        // Change one digit of the random part.
        let replacement = if &text[10..11] == "0" { "1" } else { "0" };
        text.replace_range(10..11, replacement);
        assert_eq!(parse_key(&text), Err(KeyFormatError::BadChecksum));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let valid = SecretKey::generate(KeyKind::Personal).expose().to_string();
        let cases = [
            "",
            "lsv2_pt_",
            "lsv2_pt_abc",
            &valid[..valid.len() - 1],
            &format!("{valid}0"),
            &valid.to_uppercase().replacen("LSV2_PT_", "lsv2_pt_", 1),
            "ls__short",
            "ls__has-a-dash-in-the-body-0000",
        ];
        for case in cases {
            assert!(parse_key(case).is_err(), "accepted {case:?}");
        }
        assert_eq!(parse_key("sk-abcdef"), Err(KeyFormatError::UnknownPrefix));
    }

    #[test]
    fn secret_debug_shows_only_prefix() {
        let key = SecretKey::generate(KeyKind::Personal);
        let printed = format!("{key:?} {key}");
        assert!(!printed.contains(&key.expose()[12..]));
        assert!(printed.contains(&key.display_prefix()));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn any_kind() -> impl Strategy<Value = KeyKind> {
            prop_oneof![
                Just(KeyKind::Personal),
                Just(KeyKind::Service),
                Just(KeyKind::Legacy),
            ]
        }

        fn v2_kind() -> impl Strategy<Value = KeyKind> {
            prop_oneof![Just(KeyKind::Personal), Just(KeyKind::Service)]
        }

        /// Generates keys from proptest's random bytes, so that failures
        /// shrink and replay.
        fn key_of(kind: impl Strategy<Value = KeyKind>) -> impl Strategy<Value = SecretKey> {
            (kind, any::<[u8; RANDOM_HEX_LEN / 2]>())
                .prop_map(|(kind, random)| SecretKey::from_random(kind, random))
        }

        /// Generates arbitrary text, text behind each known prefix (including
        /// multi-byte characters where the parser slices), and near-valid v2
        /// keys.
        fn any_text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "(lsv2_pt_|lsv2_sk_|ls__)\\PC{0,60}",
                "(lsv2_pt_|lsv2_sk_)[0-9a-fA-F_]{30,45}",
                "ls__[0-9A-Za-z]{10,140}",
            ]
        }

        /// Generates a replacement character: mostly lower-case hex, which
        /// keeps a v2 key's shape, else any character, which may break it.
        fn replacement_char() -> impl Strategy<Value = char> {
            prop_oneof![
                3 => prop::sample::select("0123456789abcdef".chars().collect::<Vec<_>>()),
                1 => prop::char::range('!', '~'),
                1 => any::<char>(),
            ]
        }

        /// Returns the part of a key after its prefix and before any checksum.
        fn random_part(key: &SecretKey, kind: KeyKind) -> &str {
            let start = kind.prefix().len();
            &key.expose()[start..start + RANDOM_HEX_LEN]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            #[test]
            fn parse_never_panics(text in any_text()) {
                let _ = parse_key(&text);
            }

            #[test]
            fn generated_key_parses_to_its_kind_and_hash(
                (kind, key) in any_kind().prop_flat_map(|kind| (Just(kind), key_of(Just(kind))))
            ) {
                let parsed = parse_key(key.expose());
                prop_assert_eq!(parsed, Ok(ParsedKey { kind, hash: key.hash() }));
            }

            /// Changing one character of a v2 key gets it rejected. A change in
            /// the prefix gives `UnknownPrefix`, a change of the separator or to
            /// a character that is not lower-case hex gives `Malformed`, and any
            /// other change gives `BadChecksum`.
            #[test]
            fn changed_v2_key_is_rejected(
                key in key_of(v2_kind()),
                index in 0..V2_KEY_LEN,
                replacement in replacement_char(),
            ) {
                let original = key.expose();
                let replaced = original.as_bytes()[index] as char;
                prop_assume!(replacement != replaced);
                let mut changed = original.to_string();
                changed.replace_range(index..index + 1, replacement.encode_utf8(&mut [0; 4]));

                let result = parse_key(&changed);
                if let Ok(parsed) = result {
                    prop_assert_ne!(
                        parsed.hash,
                        key.hash(),
                        "{} parses to the original hash",
                        changed
                    );
                }
                let separator = V2_KEY_LEN - CHECKSUM_HEX_LEN - 1;
                let keeps_shape =
                    replacement.is_ascii_digit() || ('a'..='f').contains(&replacement);
                let expected = if index < PERSONAL_PREFIX.len() {
                    KeyFormatError::UnknownPrefix
                } else if index == separator || !keeps_shape {
                    KeyFormatError::Malformed
                } else {
                    // A changed random digit passes the 40-bit checksum with
                    // probability 2^-40, so this may fail about once in 10^12 cases.
                    KeyFormatError::BadChecksum
                };
                prop_assert_eq!(result, Err(expected), "{} was changed to {}", original, changed);
            }

            #[test]
            fn debug_output_hides_the_random_part(key in key_of(any_kind())) {
                let kind = parse_key(key.expose()).expect("generated key parses").kind;
                let random = random_part(&key, kind);
                let printed = [
                    format!("{:?}", parse_key(key.expose())),
                    format!("{key:?}"),
                    format!("{key}"),
                ];
                for text in printed {
                    prop_assert!(!text.contains(random), "{} contains the random part", text);
                    prop_assert!(!text.contains(key.expose()), "{} contains the whole key", text);
                }
            }
        }
    }
}
