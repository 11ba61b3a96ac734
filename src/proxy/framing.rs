//! Checks on how a request is framed and addressed, made before routing.
//!
//! Request smuggling works when two HTTP parsers on one path disagree on
//! where a message ends or whom it is for. hyper resolves some ambiguous
//! heads by itself instead of rejecting them: with both `Content-Length`
//! and `Transfer-Encoding` it drops `Content-Length`, it folds a repeated
//! equal `Content-Length` into one, and the `http` crate drops a `#fragment`
//! from the request target. The service never receives those inputs, so
//! the `tracker` submodule reads the raw bytes of every HTTP/1 request head
//! on the connection, and `check` rejects the request when its head was
//! ambiguous. Anything hyper rejects itself (a signed, listed or
//! conflicting `Content-Length`, a transfer coding list that does not end
//! in `chunked`, `Transfer-Encoding` on HTTP/1.0, obsolete line folding)
//! never reaches `check`.

mod tracker;

use http::header::{self, HeaderMap};
use http::request::Parts;
use http::Version;

use crate::error::Rejection;
use crate::routing::canonical::PathError;

pub(crate) use tracker::{HeadLog, InspectedStream, RawHead};

/// Reason a request's framing is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// RFC 9112 section 6.3 lets a server reject such a message, because it
    /// is the classic smuggling vector.
    #[error("the request has both Content-Length and Transfer-Encoding; send only one")]
    LengthAndTransferEncoding,
    /// Repeated, even with equal values: another parser may read a
    /// different one.
    #[error("Content-Length appears more than once")]
    RepeatedContentLength,
    /// Only `chunked`, once, has one reading on every parser.
    #[error("Transfer-Encoding must be exactly \"chunked\", sent once")]
    UnsupportedTransferEncoding,
    /// The request does not match the head that the gateway read from the
    /// connection, so the gateway cannot tell how it was framed.
    #[error("the request head could not be checked against the bytes received")]
    Unverified,
}

/// Rejects a request whose head was ambiguous on the wire, whose target
/// carries a fragment, or whose `Host` disagrees with its target.
///
/// Takes the [`RawHead`] that the server attached to an HTTP/1 request.
/// An HTTP/1 request without one is rejected, so that a listener that does
/// not read raw heads fails closed.
pub(crate) fn check(parts: &mut Parts) -> Result<(), Rejection> {
    if parts.version < Version::HTTP_2 {
        let head = parts
            .extensions
            .remove::<RawHead>()
            .ok_or(Rejection::AmbiguousFraming(FramingError::Unverified))?;
        check_raw_head(parts, &head)?;
    }
    check_host(parts)
}

fn check_raw_head(parts: &Parts, head: &RawHead) -> Result<(), Rejection> {
    if !head.matches(&parts.method, &parts.uri) {
        return Err(Rejection::AmbiguousFraming(FramingError::Unverified));
    }
    if let Some(error) = head.framing_error() {
        return Err(Rejection::AmbiguousFraming(error));
    }
    if head.has_fragment() {
        return Err(Rejection::InvalidPath(PathError::Fragment));
    }
    Ok(())
}

/// Requires at most one `Host`, equal (ignoring ASCII case) to the
/// authority of an absolute-form target or of HTTP/2's `:authority`.
/// RFC 9112 section 3.2 makes a repeated `Host` a 400, and RFC 9113 section
/// 8.3.1 lets a server reject a `Host` that differs from `:authority`. A
/// differing one lets the gateway and the upstream address different hosts.
fn check_host(parts: &Parts) -> Result<(), Rejection> {
    let host = single_host(&parts.headers)?;
    match (host, parts.uri.authority()) {
        (Some(host), Some(authority))
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
        {
            Err(Rejection::AmbiguousHost)
        }
        _ => Ok(()),
    }
}

fn single_host(headers: &HeaderMap) -> Result<Option<&header::HeaderValue>, Rejection> {
    let mut values = headers.get_all(header::HOST).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Rejection::AmbiguousHost);
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(version: Version, target: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::get(target).version(version);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn http1_request_without_raw_head_is_rejected() {
        let mut parts = parts(Version::HTTP_11, "/a", &[("host", "gw")]);
        assert_eq!(
            check(&mut parts),
            Err(Rejection::AmbiguousFraming(FramingError::Unverified))
        );
    }

    #[test]
    fn http2_authority_must_equal_host() {
        let mut same = parts(Version::HTTP_2, "http://gw:80/a", &[("host", "GW:80")]);
        assert_eq!(check(&mut same), Ok(()));
        let mut none = parts(Version::HTTP_2, "http://gw/a", &[]);
        assert_eq!(check(&mut none), Ok(()));
        let mut other = parts(Version::HTTP_2, "http://gw/a", &[("host", "evil")]);
        assert_eq!(check(&mut other), Err(Rejection::AmbiguousHost));
    }

    #[test]
    fn repeated_host_is_rejected() {
        let mut parts = parts(Version::HTTP_2, "/a", &[("host", "gw"), ("host", "gw")]);
        assert_eq!(check(&mut parts), Err(Rejection::AmbiguousHost));
    }
}
