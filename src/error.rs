//! Every reason the gateway answers a request itself, and the one place
//! that turns them into HTTP responses.
//!
//! Bodies are JSON `{"error": "<code>", "detail": "<sentence>"}`. Codes are
//! stable; clients match on them. No variant carries a secret.

use http::{header, HeaderName, HeaderValue, Response, StatusCode};

use crate::limits::RateScope;
use crate::proxy::framing::FramingError;
use crate::routing::canonical::PathError;
use crate::store::UsageCounter;

/// Reason the gateway rejects a request without forwarding it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the request path is not acceptable: {0}")]
    InvalidPath(PathError),
    #[error("the request is malformed: {0}")]
    BadRequest(&'static str),
    #[error("the request's framing is ambiguous: {0}")]
    AmbiguousFraming(FramingError),
    #[error("the Host header must appear once and match the authority of the request target")]
    AmbiguousHost,
    #[error("the request carries more than one credential; send exactly one API key")]
    MultipleCredentials,
    #[error("the X-Tenant-Id header must be one workspace id (a UUID)")]
    InvalidWorkspaceId,
    #[error("an API key is required: send it in the x-api-key header")]
    MissingCredential,
    #[error("the API key is invalid")]
    InvalidKey,
    #[error(
        "legacy ls__ API keys are no longer accepted; \
         use a personal access token (lsv2_pt_) or a service key (lsv2_sk_)"
    )]
    LegacyKeyRetired,
    #[error("the API key has expired")]
    KeyExpired,
    #[error("the API key has been revoked")]
    KeyRevoked,
    #[error("the API key is disabled")]
    KeyDisabled,
    #[error(
        "this key can reach several workspaces; \
         choose one with the X-Tenant-Id header"
    )]
    WorkspaceRequired,
    #[error("the key cannot reach the workspace named in X-Tenant-Id")]
    WorkspaceForbidden,
    #[error("the key cannot reach any workspace")]
    NoWorkspaceAccess,
    #[error("the key's role lacks the permission {permission}")]
    Forbidden { permission: Box<str> },
    #[error("no route matches this method and path")]
    NoRoute,
    #[error("the request body is larger than this route allows")]
    PayloadTooLarge,
    #[error(
        "the rate limit for {scope} ({limit} requests per {period_secs} s) is exhausted; \
         retry in {retry_after_secs} s"
    )]
    RateLimited {
        scope: RateScope,
        limit: u32,
        period_secs: u64,
        retry_after_secs: u64,
    },
    #[error(
        "too many invalid API keys from this client address; \
         retry in {retry_after_secs} s"
    )]
    AuthThrottled { retry_after_secs: u64 },
    #[error(
        "the workspace has reached its monthly limit of {value} on {limit}; \
         the count starts again in {retry_after_secs} s"
    )]
    UsageLimitExceeded {
        limit: UsageCounter,
        value: u64,
        /// Unix seconds.
        resets_at: i64,
        retry_after_secs: u64,
    },
    #[error("the upstream service is unavailable")]
    UpstreamUnavailable,
    #[error("the upstream service did not answer in time")]
    UpstreamTimeout,
    #[error("the key store is unavailable; try again shortly")]
    StoreUnavailable,
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::InvalidPath(_)
            | Rejection::BadRequest(_)
            | Rejection::AmbiguousFraming(_)
            | Rejection::AmbiguousHost
            | Rejection::MultipleCredentials
            | Rejection::InvalidWorkspaceId => StatusCode::BAD_REQUEST,
            Rejection::MissingCredential
            | Rejection::InvalidKey
            | Rejection::LegacyKeyRetired
            | Rejection::KeyExpired
            | Rejection::KeyRevoked
            | Rejection::KeyDisabled => StatusCode::UNAUTHORIZED,
            Rejection::WorkspaceRequired
            | Rejection::WorkspaceForbidden
            | Rejection::NoWorkspaceAccess
            | Rejection::Forbidden { .. } => StatusCode::FORBIDDEN,
            Rejection::NoRoute => StatusCode::NOT_FOUND,
            Rejection::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::RateLimited { .. }
            | Rejection::AuthThrottled { .. }
            | Rejection::UsageLimitExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Rejection::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Rejection::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Rejection::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Returns the stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::InvalidPath(_) => "invalid_path",
            Rejection::BadRequest(_) => "bad_request",
            Rejection::AmbiguousFraming(_) => "ambiguous_framing",
            Rejection::AmbiguousHost => "ambiguous_host",
            Rejection::MultipleCredentials => "multiple_credentials",
            Rejection::InvalidWorkspaceId => "invalid_tenant_id",
            Rejection::MissingCredential => "missing_api_key",
            Rejection::InvalidKey => "invalid_api_key",
            Rejection::LegacyKeyRetired => "legacy_api_key_retired",
            Rejection::KeyExpired => "api_key_expired",
            Rejection::KeyRevoked => "api_key_revoked",
            Rejection::KeyDisabled => "api_key_disabled",
            Rejection::WorkspaceRequired => "org_scoped_key_requires_workspace",
            Rejection::WorkspaceForbidden => "workspace_forbidden",
            Rejection::NoWorkspaceAccess => "no_workspace_access",
            Rejection::Forbidden { .. } => "forbidden",
            Rejection::NoRoute => "no_route",
            Rejection::PayloadTooLarge => "payload_too_large",
            Rejection::RateLimited { .. } | Rejection::AuthThrottled { .. } => "rate_limited",
            Rejection::UsageLimitExceeded { .. } => "usage_limit_exceeded",
            Rejection::UpstreamUnavailable => "upstream_unavailable",
            Rejection::UpstreamTimeout => "upstream_timeout",
            Rejection::StoreUnavailable => "store_unavailable",
        }
    }

    /// Reports whether the connection must close after this response.
    /// After an ambiguously framed request, the gateway cannot tell where
    /// the next request on the connection starts.
    pub fn closes_connection(&self) -> bool {
        matches!(self, Rejection::AmbiguousFraming(_))
    }

    /// Returns true for a rejected credential or a denied permission.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) || matches!(
            self,
            Rejection::MultipleCredentials | Rejection::InvalidWorkspaceId
        )
    }

    /// Returns true if the upstream, not the client, caused the rejection.
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            Rejection::UpstreamUnavailable | Rejection::UpstreamTimeout
        )
    }

    /// The JSON body. A usage-limit rejection also names the limit, its
    /// value and when the count starts again (RFC 3339, UTC).
    pub fn body(&self) -> String {
        let mut body = serde_json::json!({ "error": self.code(), "detail": self.to_string() });
        if let Rejection::UsageLimitExceeded {
            limit,
            value,
            resets_at,
            ..
        } = self
        {
            body["limit"] = limit.as_str().into();
            body["limit_value"] = (*value).into();
            body["resets_at"] = rfc3339(*resets_at).into();
        }
        body.to_string()
    }

    /// Seconds the client should wait before retrying, for `Retry-After`.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Rejection::RateLimited {
                retry_after_secs, ..
            }
            | Rejection::AuthThrottled { retry_after_secs }
            | Rejection::UsageLimitExceeded {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// Builds the answer for a gRPC client: a trailers-only response with
    /// HTTP status 200, `grpc-status` mapped from the HTTP status, and the
    /// error code and detail in `grpc-message` (gRPC over HTTP/2 spec,
    /// "Responses").
    pub fn into_grpc_response<B: From<String>>(self) -> Response<B> {
        let grpc_status: u16 = match self.status().as_u16() {
            400 | 431 => 3,  // INVALID_ARGUMENT
            401 => 16,       // UNAUTHENTICATED
            403 => 7,        // PERMISSION_DENIED
            404 => 12,       // UNIMPLEMENTED
            413 | 429 => 8,  // RESOURCE_EXHAUSTED
            504 => 4,        // DEADLINE_EXCEEDED
            502 | 503 => 14, // UNAVAILABLE
            _ => 13,         // INTERNAL
        };
        let message = format!("{}: {}", self.code(), self);
        // grpc-message is percent-encoded; the detail sentences are ASCII,
        // so only '%' itself and characters outside printable ASCII need it.
        let encoded: String = message
            .bytes()
            .map(|b| {
                if (0x20..0x7f).contains(&b) && b != b'%' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let mut response = Response::new(B::from(String::new()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from(grpc_status));
        if let Ok(value) = HeaderValue::from_str(&encoded) {
            headers.insert("grpc-message", value);
        }
        response
    }

    /// Builds the response, with `B` made from the JSON body.
    pub fn into_response<B: From<String>>(self) -> Response<B> {
        let mut response = Response::new(B::from(self.body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.closes_connection() {
            // hyper closes an HTTP/1 connection after a response with this header.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status() == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis\""),
            );
        }
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Rejection::RateLimited {
            limit,
            retry_after_secs,
            ..
        } = self
        {
            headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(limit));
            headers.insert(RATELIMIT_REMAINING.clone(), HeaderValue::from(0u32));
            headers.insert(RATELIMIT_RESET.clone(), HeaderValue::from(retry_after_secs));
        }
        response
    }
}

/// Requests the exhausted limit allows per period.
static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// Requests left in the period: 0 on a rejection.
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// Seconds until the limit admits a request again.
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn rfc3339(unix_secs: i64) -> String {
    let format = &time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|at| at.format(format).ok())
        .unwrap_or_default()
}
