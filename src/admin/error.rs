//! Why the admin API rejects a request, and the one place that turns it
//! into a response: `{"error": code, "detail": sentence}`, plus `"field"`
//! when one input field is at fault.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::error::Rejection;
use crate::store::sqlite::DirectoryError;

/// An admin request that failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Authentication or authorization failed, exactly as the gateway
    /// would reject the same key.
    #[error(transparent)]
    Auth(#[from] Rejection),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error("{field}: {detail}")]
    BadRequest { field: String, detail: String },
    #[error("no admin endpoint has this path")]
    NoRoute,
    #[error("the endpoint does not allow this method")]
    MethodNotAllowed,
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Internal(String),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code, such as `forbidden`, `conflict` or
    /// `plan_limit_reached`.
    pub error: String,
    /// A sentence for people.
    pub detail: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub(crate) fn bad_request(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Auth(rejection) => rejection.status(),
            ApiError::Directory(error) => match error {
                DirectoryError::NotFound { .. } => StatusCode::NOT_FOUND,
                DirectoryError::Invalid { .. } | DirectoryError::UnknownPermission { .. } => {
                    StatusCode::BAD_REQUEST
                }
                DirectoryError::Conflict { .. } => StatusCode::CONFLICT,
                DirectoryError::PlanLimit(_)
                | DirectoryError::PlanFeature(_)
                | DirectoryError::Forbidden { .. } => StatusCode::FORBIDDEN,
                DirectoryError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Returns the stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Auth(rejection) => rejection.code(),
            ApiError::Directory(error) => match error {
                DirectoryError::NotFound { .. } => "not_found",
                DirectoryError::Invalid { .. } => "invalid_request",
                DirectoryError::UnknownPermission { .. } => "unknown_permission",
                DirectoryError::Conflict { .. } => "conflict",
                DirectoryError::PlanLimit(_) => "plan_limit_reached",
                DirectoryError::PlanFeature(_) => "plan_feature_unavailable",
                DirectoryError::Forbidden { code, .. } => code,
                DirectoryError::Store(_) => "store_unavailable",
            },
            ApiError::BadRequest { .. } => "invalid_request",
            ApiError::NoRoute => "no_route",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::Directory(
                DirectoryError::Invalid { field, .. }
                | DirectoryError::UnknownPermission { field, .. }
                | DirectoryError::Conflict { field, .. },
            ) => Some(field),
            ApiError::BadRequest { field, .. } => Some(field),
            _ => None,
        }
    }

    fn detail(&self) -> String {
        match self {
            // Never show store internals to a client.
            ApiError::Directory(DirectoryError::Store(_)) => {
                "the store is unavailable; try again shortly".to_string()
            }
            ApiError::Internal(_) => "the admin API failed; see the server log".to_string(),
            ApiError::Directory(DirectoryError::Invalid { detail, .. })
            | ApiError::Directory(DirectoryError::Conflict { detail, .. })
            | ApiError::BadRequest { detail, .. } => detail.clone(),
            other => other.to_string(),
        }
    }

    /// Logs the failure by who caused it: client mistakes at debug, server
    /// failures at error.
    pub(crate) fn log(&self, method: &Method, path: &str) {
        match self {
            ApiError::Directory(DirectoryError::Store(_)) | ApiError::Internal(_) => {
                tracing::error!(method = %method, path = %path, error = %self, "admin request failed");
            }
            _ => tracing::debug!(
                target: "portcullis::admin::rejection",
                method = %method,
                path = %path,
                code = self.code(),
                "admin request rejected"
            ),
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = ErrorBody {
            error: self.code().to_string(),
            detail: self.detail(),
            field: self.field().map(str::to_string),
        };
        let text = serde_json::to_string(&body).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status() == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis\""),
            );
        }
        response
    }
}
