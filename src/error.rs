//! Every reason the gateway answers a request itself, and the one place
//! that turns them into HTTP responses.
//!
//! Bodies are JSON `{"error": "<code>", "detail": "<sentence>"}`. Codes are
//! stable; clients match on them. No variant carries a secret.

use http::{header, HeaderValue, Response, StatusCode};

use crate::proxy::framing::FramingError;
use crate::routing::canonical::PathError;

/// A request the gateway answers itself.
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
            Rejection::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Rejection::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Rejection::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable error code.
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

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::json!({ "error": self.code(), "detail": self.to_string() }).to_string()
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
        response
    }
}
