//! Protocol upgrades such as WebSocket: the gateway authenticates and
//! authorizes the upgrade request like any other, forwards it with its
//! `Upgrade` header, and pipes both connections together once the upstream
//! answers 101.
//!
//! If the upstream answers anything else, hyper keeps parsing the client
//! connection as HTTP, so bytes sent after the upgrade request are judged
//! as requests of their own.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The protocol a request asks to upgrade to: its `Upgrade` value, if
/// `Connection` lists `upgrade` (RFC 9110 section 7.8). HTTP/1.1 only.
pub fn requested(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != Version::HTTP_11 {
        return None;
    }
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let mut values = headers.get_all(header::UPGRADE).iter();
    match (connection_upgrade, values.next(), values.next()) {
        (true, Some(protocol), None) => Some(protocol.clone()),
        _ => None,
    }
}

/// Puts back the headers that ask the upstream to upgrade, after the
/// hop-by-hop headers were removed.
pub fn restore_request_headers(headers: &mut HeaderMap, protocol: &HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol.clone());
}

/// After a 101 from the upstream: restores the response's upgrade headers
/// and pipes the two upgraded connections until either side closes.
pub fn splice<B>(client: OnUpgrade, upstream: &mut Response<B>, protocol: HeaderValue) {
    debug_assert_eq!(upstream.status(), StatusCode::SWITCHING_PROTOCOLS);
    let upstream_upgrade = hyper::upgrade::on(&mut *upstream);
    let headers = upstream.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream_upgrade) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((sent, received)) => {
                tracing::debug!(sent, received, "upgraded connection closed");
            }
            Err(error) => tracing::debug!(%error, "upgraded connection ended with an error"),
        }
    });
}
