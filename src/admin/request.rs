//! One admin request, read whole, with typed access to its path, query and
//! JSON body, and the reply a handler returns.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use super::ApiError;
use crate::store::sqlite::audit::MAX_PAGE_LIMIT;
use crate::store::sqlite::PageRequest;

/// Largest accepted request body, in bytes.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A request whose body has been read.
#[derive(Debug)]
pub(crate) struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
}

impl Call {
    pub(crate) async fn read(request: Request<Incoming>) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let body = Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    ApiError::PayloadTooLarge(MAX_BODY_BYTES)
                } else {
                    ApiError::bad_request("body", "the request body could not be read")
                }
            })?
            .to_bytes();
        let query = parts.uri.query().map(parse_query).unwrap_or_default();
        Ok(Self {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query,
            headers: parts.headers,
            body,
        })
    }

    pub(crate) fn method(&self) -> &Method {
        &self.method
    }

    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The path's segments; an empty path and a trailing `/` add none.
    pub(crate) fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    /// The query parameter `name`, if sent. Sent twice, it is rejected.
    pub(crate) fn query(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.query.iter().filter(|(n, _)| n == name);
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(ApiError::bad_request(name, "must appear at most once"));
        }
        Ok(first)
    }

    pub(crate) fn query_uuid(&self, name: &str) -> Result<Option<Uuid>, ApiError> {
        self.query(name)?.map(|v| parse_id(name, v)).transpose()
    }

    pub(crate) fn query_i64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.query(name)?
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::bad_request(name, format!("invalid integer {v:?}")))
            })
            .transpose()
    }

    /// The `limit` and `cursor` of a list request.
    pub(crate) fn page(&self) -> Result<PageRequest, ApiError> {
        let mut page = PageRequest::default();
        if let Some(limit) = self.query("limit")? {
            page.limit = limit
                .parse()
                .ok()
                .filter(|l| (1..=MAX_PAGE_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "limit",
                        format!("must be an integer from 1 to {MAX_PAGE_LIMIT}"),
                    )
                })?;
        }
        if let Some(cursor) = self.query("cursor")? {
            page.offset = cursor.parse().map_err(|_| {
                ApiError::bad_request(
                    "cursor",
                    "invalid cursor: pass the `next` value of the previous page",
                )
            })?;
        }
        Ok(page)
    }

    /// Parses the JSON body; an empty body reads as `{}`. An error names
    /// the field at fault.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.body
        };
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            let field = if path == "." || path.is_empty() {
                "body".to_string()
            } else {
                path
            };
            ApiError::bad_request(field, format!("invalid JSON body: {}", error.inner()))
        })
    }
}

/// Parses a path or query id.
pub(crate) fn parse_id(field: &str, text: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(text)
        .map_err(|_| ApiError::bad_request(field, format!("invalid id {text:?}: expected a UUID")))
}

/// A successful reply: a status and a JSON body, or no body.
#[derive(Debug)]
pub(crate) struct Reply {
    status: StatusCode,
    body: Option<Bytes>,
}

impl Reply {
    pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Self, ApiError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| ApiError::Internal(format!("cannot serialize a reply: {e}")))?;
        Ok(Self {
            status,
            body: Some(body.into()),
        })
    }

    pub(crate) fn ok<T: Serialize>(value: &T) -> Result<Self, ApiError> {
        Self::json(StatusCode::OK, value)
    }

    pub(crate) fn created<T: Serialize>(value: &T) -> Result<Self, ApiError> {
        Self::json(StatusCode::CREATED, value)
    }

    pub(crate) fn no_content() -> Result<Self, ApiError> {
        Ok(Self {
            status: StatusCode::NO_CONTENT,
            body: None,
        })
    }

    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let has_body = self.body.is_some();
        let mut response = Response::new(Full::new(self.body.unwrap_or_default()));
        *response.status_mut() = self.status;
        if has_body {
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        // Replies may hold a new key's secret: no cache may keep them.
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// Splits a query string into decoded name and value pairs.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` as a space (the
/// `application/x-www-form-urlencoded` rules); invalid escapes stay as
/// they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let high = (bytes[i + 1] as char).to_digit(16);
                let low = (bytes[i + 2] as char).to_digit(16);
                match (high, low) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        let pairs = parse_query("actor=user%3Aabc&email=a+b%40c&bad=%zz&end=%4");
        assert_eq!(pairs[0], ("actor".into(), "user:abc".into()));
        assert_eq!(pairs[1], ("email".into(), "a b@c".into()));
        assert_eq!(pairs[2], ("bad".into(), "%zz".into()));
        assert_eq!(pairs[3], ("end".into(), "%4".into()));
    }
}
