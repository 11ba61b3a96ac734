//! CORS preflight requests (`OPTIONS` with `Access-Control-Request-Method`),
//! for routes that ask the gateway to answer them.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::config::CorsConfig;
use crate::routing::Rule;

/// The method a preflight asks about, if `method` and `headers` make one.
pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS || !headers.contains_key(header::ORIGIN) {
        return None;
    }
    let requested = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(requested.as_bytes()).ok()
}

/// Answers a preflight for `rule`: 204 with the allowed methods and headers
/// if the origin is allowed, 403 without CORS headers otherwise (the
/// browser then blocks the request).
pub fn answer(rule: &Rule, config: &CorsConfig, headers: &HeaderMap) -> Response<String> {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut response = Response::new(String::new());
    if !config.allows(origin) {
        *response.status_mut() = StatusCode::FORBIDDEN;
        return response;
    }
    *response.status_mut() = StatusCode::NO_CONTENT;
    let methods: Vec<&str> = rule.methods.iter().map(Method::as_str).collect();
    let out = response.headers_mut();
    if let Ok(origin) = HeaderValue::from_str(origin) {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    if let Ok(methods) = HeaderValue::from_str(&methods.join(", ")) {
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    }
    if let Ok(allowed) = HeaderValue::from_str(&config.allowed_headers) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed);
    }
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(config.max_age_secs),
    );
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// Adds `Access-Control-Allow-Origin` to an actual response of a route
/// whose preflights the gateway answers, when the origin is allowed.
pub fn allow_origin(
    request_origin: Option<&HeaderValue>,
    config: &CorsConfig,
    response: &mut HeaderMap,
) {
    let Some(origin) = request_origin else {
        return;
    };
    if origin.to_str().is_ok_and(|o| config.allows(o)) {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        response.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}
