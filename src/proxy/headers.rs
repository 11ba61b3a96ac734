//! Header rewriting between client and upstream.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::IdentityHeaders;
use crate::identity::{Identity, Principal, WorkspaceGrant};

/// The credential headers the gateway reads.
pub static API_KEY: HeaderName = HeaderName::from_static("x-api-key");

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// The request id, taken from the client or generated, sent upstream and
/// returned in the response.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The workspace's retention tier, sent upstream.
pub static RETENTION_TIER: HeaderName = HeaderName::from_static("x-auth-retention-tier");

/// Returns true if the client's `TE` header lists `trailers`.
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

/// Removes hop-by-hop headers (RFC 9110 section 7.6.1): the fixed list,
/// and every header that `Connection` names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
}

/// Reports whether `name` is `x-api-key` spelled with `_` for `-`, such as
/// `x_api_key`. Servers that map `_` to `-` (CGI-style environments) read it
/// as the credential, so the gateway never passes one on.
pub fn is_credential_alias(name: &HeaderName) -> bool {
    let name = name.as_str().as_bytes();
    name.contains(&b'_')
        && name.len() == API_KEY.as_str().len()
        && name
            .iter()
            .zip(API_KEY.as_str().bytes())
            .all(|(&a, b)| a == b || (a == b'_' && b == b'-'))
}

/// Removes every client-sent copy of the identity headers and every
/// `_` spelling of `x-api-key`, and the credential unless the route
/// forwards it.
pub fn remove_client_identity(
    headers: &mut HeaderMap,
    names: &IdentityHeaders,
    keep_credential: bool,
) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| names.is_identity_header(name) || is_credential_alias(name))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
    if !keep_credential {
        headers.remove(&API_KEY);
        headers.remove(header::AUTHORIZATION);
    }
}

/// Sets the `X-Forwarded-*` headers for this hop.
pub fn append_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    // The client address is appended to any chain a proxy in front built.
    // Scheme and host are what this gateway saw: a client-sent value would
    // be the first entry that frameworks read, so it is replaced. The other
    // client-address headers are removed rather than left unchecked.
    append_list(headers, &X_FORWARDED_FOR, &client.to_string());
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    headers.remove(&X_FORWARDED_HOST);
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    headers.remove(&FORWARDED);
    headers.remove(&X_REAL_IP);
}

fn append_list(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    let existing: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let joined = if existing.is_empty() {
        value.to_string()
    } else {
        format!("{}, {value}", existing.join(", "))
    };
    if let Ok(joined) = HeaderValue::from_str(&joined) {
        headers.insert(name.clone(), joined);
    }
}

/// Inserts the identity the gateway resolved.
pub fn inject_identity(
    headers: &mut HeaderMap,
    names: &IdentityHeaders,
    identity: &Identity,
    grant: &WorkspaceGrant,
) {
    match identity.principal {
        Principal::User(_) => {
            if let Some(id) = &identity.principal_header {
                headers.insert(names.user_id.clone(), id.clone());
            }
        }
        Principal::ServiceAccount(_) => {
            if let Some(id) = &identity.principal_header {
                headers.insert(names.service_account_id.clone(), id.clone());
            }
        }
        Principal::Workspace => {}
    }
    headers.insert(names.org_id.clone(), identity.org_id_header.clone());
    headers.insert(names.workspace_id.clone(), grant.workspace_header.clone());
    headers.insert(names.tenant_id.clone(), grant.workspace_header.clone());
    headers.insert(names.role.clone(), grant.role.name_header().clone());
    headers.insert(
        names.permissions.clone(),
        grant.role.permissions_header().clone(),
    );
    headers.insert(names.key_id.clone(), identity.key_id_header.clone());
    headers.insert(
        names.key_kind.clone(),
        HeaderValue::from_static(identity.kind.as_str()),
    );
    headers.insert(
        RETENTION_TIER.clone(),
        HeaderValue::from_static(grant.retention.as_str()),
    );
}
