//! Canonical form of a request path.
//!
//! The gateway matches its route rules against the canonical path and forwards
//! that same value upstream. Gateway bypasses such as `/api/v1/info/../admin`,
//! `/api/v1/info/%2e%2e/admin`, `/api/v1/admin%2Fusers` and `//api/v1/admin`
//! work because the gateway and the upstream read one path in two ways. Giving
//! the upstream exactly the bytes that were matched removes that gap. Paths whose
//! meaning depends on the upstream's parser (encoded slashes, backslashes, path
//! parameters such as `..;/admin`, NUL and control characters) are rejected.
//!
//! The normalization follows RFC 3986: percent-encoding normalization (section
//! 6.2.2.2, decode the unreserved characters of section 2.3), uppercase hex digits
//! in the remaining percent-encodings (section 6.2.2.1), and removal of dot
//! segments (section 5.2.4). In addition, a run of slashes becomes one slash.

use std::borrow::Cow;

/// Reason a request path was rejected by [`canonicalize`].
///
/// When a path has several problems, the error names the leftmost one. The only
/// exception is [`PathError::NotOriginForm`], which is checked first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty or does not start with `/`.
    #[error("request path does not start with '/'")]
    NotOriginForm,
    /// The path contains `#`, which starts a fragment that clients must not send.
    #[error("request path contains '#', which starts a fragment that must not be sent")]
    Fragment,
    /// The path contains `%2F`, which some upstreams decode to `/` and others do not.
    #[error("request path contains an encoded slash (%2F)")]
    EncodedSlash,
    /// The path contains `%5C`, which some upstreams decode to a separator.
    #[error("request path contains an encoded backslash (%5C)")]
    EncodedBackslash,
    /// The path contains a raw `\`, which some upstreams treat as a separator.
    #[error("request path contains a backslash")]
    Backslash,
    /// The path contains a NUL byte, raw or as `%00`.
    #[error("request path contains a NUL byte (raw or as %00)")]
    Nul,
    /// The path contains a control character other than NUL (0x01 to 0x1F or
    /// 0x7F), raw or percent-encoded.
    #[error("request path contains a control character (raw or percent-encoded)")]
    ControlCharacter,
    /// The path contains `;` or `%3B`, which starts a path parameter on some
    /// upstreams (`/admin;x=1`, `..;/admin`).
    #[error("request path contains a path parameter (';' or %3B)")]
    PathParameter,
    /// The path contains a `%` that is not followed by two hex digits.
    #[error("request path contains '%' that is not followed by two hex digits")]
    BadPercentEncoding,
    /// The path contains a raw non-ASCII character instead of its percent-encoding.
    #[error("request path contains a non-ASCII character that is not percent-encoded")]
    NonAscii,
}

/// Validates the path of an origin-form request target and returns its canonical form.
///
/// `path` must not contain the query string, because the caller splits it off
/// first and this function treats `?` as an ordinary character. The canonical form:
///
/// - decodes percent-encoded unreserved characters (`%61dmin` becomes `admin`,
///   `%2e` becomes `.`) and uppercases the hex digits of every other
///   percent-encoding (`%c3%a9` becomes `%C3%A9`, `%25` stays `%25`);
/// - merges each run of slashes into one (`//api` becomes `/api`);
/// - removes `.` and `..` segments, including encoded ones such as `.%2E`, as
///   RFC 3986 section 5.2.4 does. A `..` at the root stays at the root (`/../a`
///   becomes `/a`), and a trailing `.` or `..` segment leaves a trailing slash
///   (`/a/b/..` becomes `/a/`);
/// - keeps a trailing slash and never changes the case of a character.
///
/// Returns [`Cow::Borrowed`] without allocating when `path` is already canonical.
///
/// # Errors
///
/// Returns a [`PathError`] when `path` does not start with `/`, or contains `#`,
/// `;`, `%3B`, `\`, `%2F`, `%5C`, a malformed percent-encoding, a NUL or control
/// character (raw or percent-encoded), or a raw non-ASCII character.
pub fn canonicalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let Some(after_root) = path.strip_prefix('/') else {
        return Err(PathError::NotOriginForm);
    };

    // The output is allocated at the first segment that changes. Until then the
    // canonical path is the input up to `segment_start`.
    let mut canonical: Option<String> = None;
    // Offset in `path` of the slash that opens the current segment.
    let mut segment_start = 0;
    let mut segments = after_root.split('/').peekable();

    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        let kind = classify_segment(segment)?;

        // An empty last segment is the trailing slash of `/a/`, which is kept.
        // Every other empty segment comes from `//`.
        let is_unchanged = match kind {
            SegmentKind::Canonical => true,
            SegmentKind::Empty => is_last,
            SegmentKind::Dot | SegmentKind::DotDot | SegmentKind::NeedsNormalizing => false,
        };
        if canonical.is_none() && !is_unchanged {
            let mut output = String::with_capacity(path.len());
            output.push_str(&path[..segment_start]);
            canonical = Some(output);
        }
        if let Some(output) = canonical.as_mut() {
            push_segment(output, segment, kind, is_last)?;
        }

        segment_start += segment.len() + 1;
    }

    Ok(match canonical {
        Some(output) => Cow::Owned(output),
        None => Cow::Borrowed(path),
    })
}

/// Category of one path segment, after percent-encoding normalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SegmentKind {
    /// No characters, as between the slashes of `//` or after a trailing slash.
    Empty,
    /// `.`, raw or as `%2E`.
    Dot,
    /// `..`, with each dot raw or as `%2E`.
    DotDot,
    /// Any other segment that is already canonical.
    Canonical,
    /// Any other segment with a percent-encoding that must be decoded or uppercased.
    NeedsNormalizing,
}

/// Validates the characters of one segment and returns its [`SegmentKind`].
fn classify_segment(segment: &str) -> Result<SegmentKind, PathError> {
    let bytes = segment.as_bytes();
    let mut needs_normalizing = false;
    let mut dot_count = 0;
    let mut is_only_dots = true;
    let mut index = 0;

    while index < bytes.len() {
        let byte = bytes[index];
        let character = if byte == b'%' {
            let value = decode_percent_encoding(bytes, index)?;
            check_encoded_byte(value)?;
            let hex_digits = &bytes[index + 1..index + 3];
            if is_unreserved(value) || hex_digits.iter().any(u8::is_ascii_lowercase) {
                needs_normalizing = true;
            }
            index += 3;
            value
        } else {
            check_raw_byte(byte)?;
            index += 1;
            byte
        };

        if character == b'.' {
            dot_count += 1;
        } else {
            is_only_dots = false;
        }
    }

    Ok(match (is_only_dots, dot_count) {
        (true, 0) => SegmentKind::Empty,
        (true, 1) => SegmentKind::Dot,
        (true, 2) => SegmentKind::DotDot,
        _ if needs_normalizing => SegmentKind::NeedsNormalizing,
        _ => SegmentKind::Canonical,
    })
}

/// Applies one segment to the canonical path being built in `output`.
///
/// `output` is either empty or a sequence of `/segment` without a trailing
/// slash. A trailing slash is only pushed after the last segment.
fn push_segment(
    output: &mut String,
    segment: &str,
    kind: SegmentKind,
    is_last: bool,
) -> Result<(), PathError> {
    match kind {
        SegmentKind::Canonical => {
            output.push('/');
            output.push_str(segment);
        }
        SegmentKind::NeedsNormalizing => {
            output.push('/');
            push_normalized_segment(output, segment)?;
        }
        // Empty segments are dropped, so a run of slashes becomes one slash. The
        // merged path is both matched against the route rules and forwarded,
        // so the upstream receives the same path that the rules matched.
        SegmentKind::Empty | SegmentKind::Dot => {}
        SegmentKind::DotDot => {
            // Removes the previous segment, if any, so `..` at the root stays
            // at the root.
            let parent_end = output.rfind('/').unwrap_or(0);
            output.truncate(parent_end);
        }
    }

    let is_removed = matches!(
        kind,
        SegmentKind::Empty | SegmentKind::Dot | SegmentKind::DotDot
    );
    if is_last && is_removed {
        output.push('/');
    }
    Ok(())
}

/// Pushes `segment` with percent-encoded unreserved characters decoded and the
/// hex digits of every other percent-encoding uppercased.
fn push_normalized_segment(output: &mut String, segment: &str) -> Result<(), PathError> {
    const UPPERCASE_HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

    let mut rest = segment;
    while let Some(percent) = rest.find('%') {
        output.push_str(&rest[..percent]);
        let value = decode_percent_encoding(rest.as_bytes(), percent)?;
        if is_unreserved(value) {
            output.push(char::from(value));
        } else {
            output.push('%');
            output.push(char::from(UPPERCASE_HEX_DIGITS[usize::from(value >> 4)]));
            output.push(char::from(UPPERCASE_HEX_DIGITS[usize::from(value & 0x0f)]));
        }
        // The two hex digits are ASCII, so `percent + 3` is a character boundary.
        rest = &rest[percent + 3..];
    }
    output.push_str(rest);
    Ok(())
}

/// Decodes the percent-encoding that starts with the `%` at `bytes[percent]`.
fn decode_percent_encoding(bytes: &[u8], percent: usize) -> Result<u8, PathError> {
    let high = bytes.get(percent + 1).copied().and_then(hex_digit_value);
    let low = bytes.get(percent + 2).copied().and_then(hex_digit_value);
    match (high, low) {
        (Some(high), Some(low)) => Ok(high << 4 | low),
        _ => Err(PathError::BadPercentEncoding),
    }
}

fn hex_digit_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Reports whether `byte` is an unreserved character (RFC 3986 section 2.3).
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Rejects a byte that appears in the path as is.
fn check_raw_byte(byte: u8) -> Result<(), PathError> {
    match byte {
        0x00 => Err(PathError::Nul),
        0x01..=0x1f | 0x7f => Err(PathError::ControlCharacter),
        0x80..=0xff => Err(PathError::NonAscii),
        b'#' => Err(PathError::Fragment),
        b';' => Err(PathError::PathParameter),
        b'\\' => Err(PathError::Backslash),
        // NOTE: other characters that RFC 3986 does not allow in a path (space,
        // '"', '<', '>', '`', '{', '}', '|', '^', '[', ']') are accepted and
        // forwarded unchanged.
        _ => Ok(()),
    }
}

/// Rejects a byte that appears in the path percent-encoded.
fn check_encoded_byte(value: u8) -> Result<(), PathError> {
    match value {
        0x00 => Err(PathError::Nul),
        0x01..=0x1f | 0x7f => Err(PathError::ControlCharacter),
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        b';' => Err(PathError::PathParameter),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Asserts that each `(input, expected)` pair canonicalizes to `expected`.
    fn assert_canonical(cases: &[(&str, &str)]) {
        for &(input, expected) in cases {
            assert_eq!(
                canonicalize(input).as_deref(),
                Ok(expected),
                "canonicalize({input:?})"
            );
        }
    }

    /// Asserts that each input is rejected with `expected`.
    fn assert_rejected(inputs: &[&str], expected: PathError) {
        for &input in inputs {
            assert_eq!(
                canonicalize(input),
                Err(expected),
                "canonicalize({input:?})"
            );
        }
    }

    /// Decodes every well-formed percent-encoding, as an upstream that decodes the path would.
    fn percent_decode(path: &str) -> Vec<u8> {
        let bytes = path.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut index = 0;
        while index < bytes.len() {
            if bytes[index] == b'%' {
                if let Ok(value) = decode_percent_encoding(bytes, index) {
                    decoded.push(value);
                    index += 3;
                    continue;
                }
            }
            decoded.push(bytes[index]);
            index += 1;
        }
        decoded
    }

    fn has_dot_segment(path: &[u8]) -> bool {
        path.split(|&byte| byte == b'/')
            .any(|segment| segment == b"." || segment == b"..")
    }

    /// Computes the canonical form the long way, for comparison: normalizes the
    /// percent-encodings of the whole path, merges slashes, then runs the
    /// remove_dot_segments algorithm of RFC 3986 section 5.2.4 step by step.
    /// Expects a path that `canonicalize` accepts.
    fn reference_canonical(path: &str) -> String {
        let mut normalized = String::new();
        push_normalized_segment(&mut normalized, path).expect("valid percent-encodings");

        let mut merged = normalized;
        while merged.contains("//") {
            merged = merged.replace("//", "/");
        }

        let mut input = merged.as_str();
        let mut output = String::new();
        while !input.is_empty() {
            if let Some(rest) = input.strip_prefix("../") {
                input = rest;
            } else if let Some(rest) = input.strip_prefix("./") {
                input = rest;
            } else if input.starts_with("/./") {
                input = &input[2..];
            } else if input == "/." {
                input = "/";
            } else if input.starts_with("/../") || input == "/.." {
                input = if input == "/.." { "/" } else { &input[3..] };
                let parent_end = output.rfind('/').unwrap_or(0);
                output.truncate(parent_end);
            } else if input == "." || input == ".." {
                input = "";
            } else {
                let segment_end = input[1..].find('/').map_or(input.len(), |end| end + 1);
                output.push_str(&input[..segment_end]);
                input = &input[segment_end..];
            }
        }
        output
    }

    #[test]
    fn canonical_path_is_borrowed() {
        for input in [
            "/",
            "/api/v1/users",
            "/a/",
            "/Admin/Users",
            "/a/%20b",
            "/a/%C3%A9",
            "/a/%25",
            "/a..b/...",
            "/.well-known/x",
            "/a.",
            "/search?q",
        ] {
            let canonical = canonicalize(input);
            assert!(
                matches!(canonical, Ok(Cow::Borrowed(_))),
                "canonicalize({input:?}) = {canonical:?}, expected borrowed"
            );
            assert_eq!(canonical.as_deref(), Ok(input));
        }
    }

    #[test]
    fn rewritten_path_is_owned() {
        for input in ["//a", "/a/./b", "/a/../b", "/%61", "/%c3", "/a/.", "/a/.."] {
            let canonical = canonicalize(input);
            assert!(
                matches!(canonical, Ok(Cow::Owned(_))),
                "canonicalize({input:?}) = {canonical:?}, expected owned"
            );
        }
    }

    #[test]
    fn relative_path_is_rejected() {
        assert_rejected(
            &[
                "",
                "a",
                "api/v1",
                "*",
                "http://example.com/a",
                ".",
                "../a",
                "%2F",
                "\\a",
            ],
            PathError::NotOriginForm,
        );
    }

    #[test]
    fn fragment_is_rejected() {
        assert_rejected(&["/#", "/a#b", "/a/#", "/#/../a"], PathError::Fragment);
    }

    #[test]
    fn encoded_fragment_is_kept() {
        assert_canonical(&[("/a%23b", "/a%23b"), ("/%3f", "/%3F")]);
    }

    #[test]
    fn raw_semicolon_is_rejected() {
        assert_rejected(
            &[
                "/admin;x=1",
                "/..;/admin",
                "/api/v1/info/..;/admin",
                "/;",
                "/a;/b",
            ],
            PathError::PathParameter,
        );
    }

    #[test]
    fn encoded_semicolon_is_rejected() {
        assert_rejected(
            &["/a%3bx=1", "/a%3Bb", "/..%3B/admin"],
            PathError::PathParameter,
        );
    }

    #[test]
    fn raw_backslash_is_rejected() {
        assert_rejected(
            &["/a\\b", "/\\", "/..\\admin", "/a/\\"],
            PathError::Backslash,
        );
    }

    #[test]
    fn encoded_slash_is_rejected() {
        assert_rejected(
            &[
                "/api/v1/admin%2Fusers",
                "/api/v1/admin%2fusers",
                "/api/v1/admin%2F",
                "/%2F",
                "/a/%2f%2e%2e",
            ],
            PathError::EncodedSlash,
        );
    }

    #[test]
    fn encoded_backslash_is_rejected() {
        assert_rejected(
            &["/a%5Cb", "/a%5cb", "/..%5c/admin", "/a%5C"],
            PathError::EncodedBackslash,
        );
    }

    #[test]
    fn nul_is_rejected() {
        assert_rejected(
            &["/a\0b", "/\0", "/a%00b", "/admin%00.json"],
            PathError::Nul,
        );
    }

    #[test]
    fn control_characters_are_rejected() {
        assert_rejected(
            &[
                "/a\tb", "/a\nb", "/a\rb", "/\x01", "/a\x1f", "/a\x7f", "/a%09", "/a%0a", "/a%0D",
                "/a%01", "/a%1F", "/a%1f", "/a%7F", "/a%7f",
            ],
            PathError::ControlCharacter,
        );
    }

    #[test]
    fn non_ascii_is_rejected() {
        assert_rejected(
            &["/caf\u{e9}", "/\u{1f600}", "/a/\u{80}", "/\u{feff}a"],
            PathError::NonAscii,
        );
    }

    #[test]
    fn bad_percent_encoding_is_rejected() {
        assert_rejected(
            &[
                "/%", "/a%", "/a%2", "/%2/", "/%zz", "/%g0", "/%0g", "/%%41", "/%+1", "/%-1",
                "/% 1", "/a%2/b",
            ],
            PathError::BadPercentEncoding,
        );
    }

    #[test]
    fn leftmost_error_is_reported() {
        assert_eq!(canonicalize("/a;b#c"), Err(PathError::PathParameter));
        assert_eq!(canonicalize("/a#b;c"), Err(PathError::Fragment));
        assert_eq!(canonicalize("/a%2Fb\\c"), Err(PathError::EncodedSlash));
        assert_eq!(
            canonicalize("/a/../%zz"),
            Err(PathError::BadPercentEncoding)
        );
        assert_eq!(canonicalize("a;#"), Err(PathError::NotOriginForm));
    }

    #[test]
    fn error_after_rewrite_is_reported() {
        assert_eq!(canonicalize("//a/%2F"), Err(PathError::EncodedSlash));
        assert_eq!(canonicalize("/%61/;"), Err(PathError::PathParameter));
    }

    #[test]
    fn encoded_unreserved_characters_are_decoded() {
        assert_canonical(&[
            ("/%61dmin", "/admin"),
            ("/%41", "/A"),
            ("/%7e", "/~"),
            ("/%7E", "/~"),
            ("/%2D%5f%30%39", "/-_09"),
            ("/a%2eb", "/a.b"),
            ("/%5A%7a", "/Zz"),
            ("/api/%76%31/%61%64%6d%69%6e", "/api/v1/admin"),
        ]);
    }

    #[test]
    fn other_percent_encodings_are_uppercased() {
        assert_canonical(&[
            ("/%20", "/%20"),
            ("/a%20b", "/a%20b"),
            ("/%2a", "/%2A"),
            ("/%c3%a9", "/%C3%A9"),
            ("/%C3%a9", "/%C3%A9"),
            ("/%ff", "/%FF"),
            ("/%3a%40", "/%3A%40"),
            ("/%25", "/%25"),
        ]);
    }

    #[test]
    fn encoded_percent_is_not_decoded_again() {
        assert_canonical(&[
            ("/%25", "/%25"),
            ("/%252e%252e/admin", "/%252e%252e/admin"),
            ("/%252F", "/%252F"),
            ("/%2561", "/%2561"),
        ]);
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_canonical(&[
            ("/api/v1/info/../admin", "/api/v1/admin"),
            ("/a/./b", "/a/b"),
            ("/./", "/"),
            ("/.", "/"),
            ("/a/b/../c", "/a/c"),
            ("/a/b/c/../../d", "/a/d"),
            ("/a/./b/../c/./d", "/a/c/d"),
            ("/a/../b/../c", "/c"),
        ]);
    }

    #[test]
    fn encoded_dot_segments_are_resolved() {
        assert_canonical(&[
            ("/api/v1/info/%2e%2e/admin", "/api/v1/admin"),
            ("/api/v1/info/%2E%2E/admin", "/api/v1/admin"),
            ("/api/v1/info/.%2E/admin", "/api/v1/admin"),
            ("/api/v1/info/.%2e/admin", "/api/v1/admin"),
            ("/api/v1/info/%2e./admin", "/api/v1/admin"),
            ("/api/v1/info/%2E./admin", "/api/v1/admin"),
            ("/a/%2e/b", "/a/b"),
            ("/a/%2E/b", "/a/b"),
            ("/a/b/%2e%2e", "/a/"),
            ("/a/b/%2e", "/a/b/"),
        ]);
    }

    #[test]
    fn trailing_dot_segment_leaves_trailing_slash() {
        assert_canonical(&[
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("/a/./", "/a/"),
            ("/a/b/../", "/a/"),
            ("/..", "/"),
        ]);
    }

    #[test]
    fn dot_dot_beyond_root_stays_at_root() {
        assert_canonical(&[
            ("/../a", "/a"),
            ("/../../a", "/a"),
            ("/a/../../b", "/b"),
            ("/../..", "/"),
            ("/%2e%2e/%2E%2E/etc/passwd", "/etc/passwd"),
            ("/a/b/../../../../c/", "/c/"),
        ]);
    }

    #[test]
    fn dots_inside_segments_are_kept() {
        assert_canonical(&[
            ("/a..b", "/a..b"),
            ("/...", "/..."),
            ("/.a", "/.a"),
            ("/a.", "/a."),
            ("/..a/b", "/..a/b"),
            ("/.well-known/x", "/.well-known/x"),
            ("/%2e%2e%2e", "/..."),
            ("/%2ea", "/.a"),
        ]);
    }

    #[test]
    fn repeated_slashes_are_merged() {
        assert_canonical(&[
            ("//api/v1/admin", "/api/v1/admin"),
            ("/a//b", "/a/b"),
            ("/a///b////c", "/a/b/c"),
            ("//", "/"),
            ("////", "/"),
            ("/a//", "/a/"),
            ("/a/b//..", "/a/"),
            ("//..//a", "/a"),
            ("/a//./b", "/a/b"),
        ]);
    }

    #[test]
    fn trailing_slash_is_preserved() {
        assert_canonical(&[
            ("/a/", "/a/"),
            ("/a/b/", "/a/b/"),
            ("/%61/", "/a/"),
            ("/a/../b/", "/b/"),
        ]);
    }

    #[test]
    fn case_is_preserved() {
        assert_canonical(&[
            ("/Admin", "/Admin"),
            ("/ADMIN/Users", "/ADMIN/Users"),
            ("/Api/%2e%2e/ADMIN", "/ADMIN"),
            ("/%41dmin/%61DMIN", "/Admin/aDMIN"),
        ]);
    }

    #[test]
    fn query_separator_is_an_ordinary_character() {
        assert_canonical(&[("/a?b", "/a?b"), ("/a?/../b", "/b")]);
    }

    #[test]
    fn error_messages_name_the_problem() {
        assert_eq!(
            PathError::EncodedSlash.to_string(),
            "request path contains an encoded slash (%2F)"
        );
        assert_eq!(
            PathError::BadPercentEncoding.to_string(),
            "request path contains '%' that is not followed by two hex digits"
        );
    }

    #[test]
    fn reference_canonical_matches_examples() {
        // Checks the reference implementation on hand-computed cases.
        for (input, expected) in [
            ("/a/b/c/./../../g", "/a/g"),
            ("/../a", "/a"),
            ("/a/b/..", "/a/"),
            ("/a//b/%2E%2e", "/a/"),
            ("/", "/"),
        ] {
            assert_eq!(
                reference_canonical(input),
                expected,
                "reference_canonical({input:?})"
            );
        }
    }

    /// Paths built only from tokens that `canonicalize` accepts.
    fn valid_path() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("/"),
            Just("//"),
            Just("."),
            Just(".."),
            Just("%2e"),
            Just("%2E"),
            Just("%41"),
            Just("%61"),
            Just("%7e"),
            Just("%2d"),
            Just("%25"),
            Just("%20"),
            Just("%c3"),
            Just("%C3"),
            Just("%3f"),
            Just("a"),
            Just("B"),
            Just("-"),
            Just("_"),
            Just("~"),
            Just("0"),
            Just("?"),
        ];
        prop::collection::vec(token, 0..24).prop_map(|tokens| format!("/{}", tokens.concat()))
    }

    /// Path-like strings that mix accepted tokens with rejected and malformed ones.
    fn hostile_path() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("/"),
            Just("."),
            Just("%"),
            Just("2"),
            Just("e"),
            Just("E"),
            Just("f"),
            Just("F"),
            Just("5"),
            Just("c"),
            Just("3"),
            Just("b"),
            Just("0"),
            Just("2e"),
            Just("2E"),
            Just("%2e"),
            Just("%2F"),
            Just("%5c"),
            Just("%3B"),
            Just("%00"),
            Just(";"),
            Just("#"),
            Just("\\"),
            Just("a"),
            Just("Z"),
            Just("\u{e9}"),
            Just("\t"),
        ];
        let prefix = prop_oneof![Just(""), Just("/"), Just("/"), Just("/")];
        (prefix, prop::collection::vec(token, 0..24))
            .prop_map(|(prefix, tokens)| format!("{prefix}{}", tokens.concat()))
    }

    /// Path-like strings and fully arbitrary strings.
    fn any_path() -> impl Strategy<Value = String> {
        prop_oneof![
            valid_path(),
            hostile_path(),
            any::<String>(),
            any::<String>().prop_map(|rest| format!("/{rest}")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn valid_path_matches_reference(path in valid_path()) {
            let canonical = canonicalize(&path);
            let expected = reference_canonical(&path);
            prop_assert_eq!(canonical.as_deref(), Ok(expected.as_str()));
        }

        #[test]
        fn canonicalize_is_idempotent(path in any_path()) {
            if let Ok(canonical) = canonicalize(&path) {
                let again = canonicalize(&canonical);
                prop_assert_eq!(again.as_deref(), Ok(&*canonical));
                prop_assert!(matches!(again, Ok(Cow::Borrowed(_))));
            }
        }

        #[test]
        fn output_has_canonical_shape(path in any_path()) {
            if let Ok(canonical) = canonicalize(&path) {
                prop_assert!(canonical.starts_with('/'), "{:?} -> {:?}", path, canonical);
                prop_assert!(!canonical.contains("//"), "{:?} -> {:?}", path, canonical);
                prop_assert!(!has_dot_segment(canonical.as_bytes()), "{:?} -> {:?}", path, canonical);
                prop_assert!(
                    !has_dot_segment(&percent_decode(&canonical)),
                    "{:?} -> {:?}",
                    path,
                    canonical
                );
            }
        }

        #[test]
        fn output_has_no_rejected_sequence(path in any_path()) {
            if let Ok(canonical) = canonicalize(&path) {
                let uppercase = canonical.to_ascii_uppercase();
                for rejected in ["#", ";", "\\", "%2F", "%5C", "%3B", "%00"] {
                    prop_assert!(!uppercase.contains(rejected), "{:?} -> {:?}", path, canonical);
                }
                prop_assert!(
                    canonical.bytes().all(|byte| (0x20..0x7f).contains(&byte)),
                    "{:?} -> {:?}",
                    path,
                    canonical
                );
            }
        }

        #[test]
        fn borrowed_exactly_when_unchanged(path in any_path()) {
            if let Ok(canonical) = canonicalize(&path) {
                let is_borrowed = matches!(canonical, Cow::Borrowed(_));
                prop_assert_eq!(is_borrowed, canonical == path.as_str());
            }
        }

        #[test]
        fn never_panics(path in any_path()) {
            let _ = canonicalize(&path);
        }
    }
}
