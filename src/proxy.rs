//! The request pipeline: framing, canonical path, route, credential,
//! identity, permission, then forwarding with the identity injected.

pub mod echo;
pub mod framing;
pub mod headers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use dashmap::DashMap;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use uuid::Uuid;

use crate::authz;
use crate::cache::{Cached, KeyCache};
use crate::config::{Config, UpstreamConfig, UpstreamTarget};
use crate::credential::{self, KeyHash};
use crate::error::Rejection;
use crate::identity::Identity;
use crate::routing::canonical::canonicalize;
use crate::routing::{Requirement, Rule};
use crate::store::{unix_now, Store};

/// Errors a response body can carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the gateway sends.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// A key's last use is written at most this often, in seconds.
const KEY_USE_INTERVAL_SECS: i64 = 60;

/// A caller that passed authentication and authorization.
struct Access {
    identity: Arc<Identity>,
    grant: usize,
}

/// One upstream with its connection pool.
struct Upstream {
    config: UpstreamConfig,
    client: Client<HttpConnector, Incoming>,
}

/// The gateway's shared state: configuration, store, cache, upstreams.
pub struct Gateway {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    cache: KeyCache,
    upstreams: Vec<Upstream>,
    legacy_sunset: i64,
    /// Key uses not yet written to the store: key id to Unix seconds.
    pending_key_uses: DashMap<Uuid, i64>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.config.listen)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>) -> Self {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(u.connect_timeout));
                connector.set_nodelay(true);
                let client = Client::builder(TokioExecutor::new()).build(connector);
                Upstream {
                    config: u.clone(),
                    client,
                }
            })
            .collect();
        let legacy_sunset = config
            .legacy_sunset
            .midnight()
            .assume_utc()
            .unix_timestamp();
        Self {
            cache: KeyCache::new(&config.cache),
            config,
            store,
            upstreams,
            legacy_sunset,
            pending_key_uses: DashMap::new(),
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn cache(&self) -> &KeyCache {
        &self.cache
    }

    /// Writes pending key uses to the store.
    pub async fn flush_key_uses(&self) {
        let uses: Vec<(Uuid, i64)> = self
            .pending_key_uses
            .iter()
            .map(|e| (*e.key(), *e.value()))
            .collect();
        if uses.is_empty() {
            return;
        }
        for (id, _) in &uses {
            self.pending_key_uses.remove(id);
        }
        if let Err(error) = self.store.record_key_use(uses).await {
            tracing::warn!(%error, "failed to record key use");
        }
    }

    /// Handles one request; never fails, because every failure becomes a
    /// response.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        let method = request.method().clone();
        let mut route_id: Option<Arc<str>> = None;
        let result = self.process(request, client, &mut route_id).await;
        let response = result.unwrap_or_else(|rejection| {
            tracing::debug!(
                target: "portcullis::rejection",
                code = rejection.code(),
                client.addr = %client,
                "request rejected"
            );
            rejection.into_response::<String>().map(full_body)
        });
        tracing::info!(
            target: "portcullis::access",
            %method,
            route = route_id.as_deref().unwrap_or("-"),
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            client.addr = %client,
        );
        response
    }

    async fn process(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        route_id: &mut Option<Arc<str>>,
    ) -> Result<Response<ResponseBody>, Rejection> {
        let (mut parts, body) = request.into_parts();
        framing::check(&mut parts)?;
        let path = canonicalize(parts.uri.path()).map_err(Rejection::InvalidPath)?;
        let rule = self
            .config
            .routes
            .find(&parts.method, &path)
            .ok_or(Rejection::NoRoute)?;
        *route_id = Some(rule.id.clone());

        let access = match &rule.requirement {
            Requirement::Public => None,
            Requirement::Permission(permission) => {
                Some(self.authenticate(&parts.headers, permission).await?)
            }
        };

        let upstream = &self.upstreams[rule.upstream];
        let uri = upstream_uri(&upstream.config.target, rule, &path, parts.uri.query())?;
        self.rewrite_headers(&mut parts, rule, access.as_ref(), client);
        parts.uri = uri;

        match &upstream.config.target {
            UpstreamTarget::Echo => Ok(echo::describe(&parts).map(full_body)),
            UpstreamTarget::Http { .. } => {
                parts.version = http::Version::HTTP_11;
                self.forward(upstream, Request::from_parts(parts, body))
                    .await
            }
        }
    }

    async fn authenticate(
        &self,
        headers: &HeaderMap,
        permission: &str,
    ) -> Result<Access, Rejection> {
        let text = credential_text(headers)?;
        let parsed = credential::parse_key(text).map_err(|_| Rejection::InvalidKey)?;
        let identity = match self.lookup(parsed.hash).await? {
            Cached::Known(identity) if identity.kind == parsed.kind => identity,
            _ => return Err(Rejection::InvalidKey),
        };

        let tenant = single_value(headers, &self.config.headers.tenant_id)?;
        let now = unix_now();
        let grant = authz::authorize(&identity, tenant, permission, now, self.legacy_sunset)?;

        if identity.should_note_use(now, KEY_USE_INTERVAL_SECS) {
            self.pending_key_uses.insert(identity.key_id, now);
        }
        Ok(Access { identity, grant })
    }

    async fn lookup(&self, hash: KeyHash) -> Result<Cached, Rejection> {
        if let Some(cached) = self.cache.get(&hash) {
            return Ok(cached);
        }
        let cached = match self.store.resolve_key(hash).await {
            Ok(Some((key, principal))) => {
                Cached::Known(Arc::new(authz::resolve_identity(&key, &principal)))
            }
            Ok(None) => Cached::Unknown,
            Err(error) => {
                tracing::error!(%error, "key lookup failed");
                return Err(Rejection::StoreUnavailable);
            }
        };
        self.cache.insert(hash, cached.clone());
        Ok(cached)
    }

    fn rewrite_headers(
        &self,
        parts: &mut Parts,
        rule: &Rule,
        access: Option<&Access>,
        client: SocketAddr,
    ) {
        let names = &self.config.headers;
        let host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let headers = &mut parts.headers;
        headers::remove_hop_by_hop(headers);
        headers::remove_client_identity(headers, names, rule.forward_credential);
        headers.remove(header::HOST);
        headers::append_forwarded(headers, client.ip(), "http", host);
        if let Some(access) = access {
            let grant = &access.identity.workspaces[access.grant];
            headers::inject_identity(headers, names, &access.identity, grant);
        }
    }

    async fn forward(
        &self,
        upstream: &Upstream,
        request: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Rejection> {
        let name = &upstream.config.name;
        let sent =
            tokio::time::timeout(upstream.config.timeout, upstream.client.request(request)).await;
        let mut response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                tracing::warn!(upstream = %name, error = %error_chain(&error), "upstream request failed");
                return Err(Rejection::UpstreamUnavailable);
            }
            Err(_) => {
                tracing::warn!(upstream = %name, timeout = ?upstream.config.timeout, "upstream timed out");
                return Err(Rejection::UpstreamTimeout);
            }
        };
        headers::remove_hop_by_hop(response.headers_mut());
        Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
    }
}

/// Reads the one credential of a request: `x-api-key` or
/// `Authorization: Bearer`. Two different credentials, a list in one
/// header, or a credential next to an `_` spelling of `x-api-key` are
/// rejected rather than choosing one.
fn credential_text(headers: &HeaderMap) -> Result<&str, Rejection> {
    let api_key = single_value(headers, &headers::API_KEY)?
        .map(|v| header_text(v))
        .transpose()?;
    let bearer = single_value(headers, &header::AUTHORIZATION)?
        .map(|v| {
            let text = header_text(v)?;
            let (scheme, token) = text.split_once(' ').ok_or(Rejection::InvalidKey)?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(Rejection::InvalidKey);
            }
            Ok(token.trim())
        })
        .transpose();
    let key = match (api_key, bearer) {
        (Some(key), Ok(None)) => key,
        (None, Ok(Some(token))) => token,
        (Some(key), Ok(Some(token))) if key == token => key,
        (Some(_), _) => return Err(Rejection::MultipleCredentials),
        (None, Err(rejection)) => return Err(rejection),
        (None, Ok(None)) => return Err(Rejection::MissingCredential),
    };
    if key.contains(',') || headers.keys().any(headers::is_credential_alias) {
        return Err(Rejection::MultipleCredentials);
    }
    Ok(key)
}

fn header_text(value: &HeaderValue) -> Result<&str, Rejection> {
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| Rejection::InvalidKey)
}

/// The value of a header that must appear at most once.
fn single_value<'a>(
    headers: &'a HeaderMap,
    name: &http::HeaderName,
) -> Result<Option<&'a HeaderValue>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(
            if name == headers::API_KEY || name == header::AUTHORIZATION {
                Rejection::MultipleCredentials
            } else {
                Rejection::BadRequest("a header that must appear once appears several times")
            },
        );
    }
    Ok(first)
}

fn upstream_uri(
    target: &UpstreamTarget,
    rule: &Rule,
    canonical_path: &str,
    query: Option<&str>,
) -> Result<Uri, Rejection> {
    let path = rule.upstream_path(canonical_path);
    let mut path_and_query =
        String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1) + 16);
    let mut builder = Uri::builder();
    if let UpstreamTarget::Http {
        scheme,
        authority,
        base_path,
    } = target
    {
        builder = builder.scheme(scheme.clone()).authority(authority.clone());
        path_and_query.push_str(base_path);
    }
    path_and_query.push_str(path);
    if let Some(query) = query {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    builder
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| Rejection::BadRequest("the request target cannot be forwarded"))
}

fn full_body(text: String) -> ResponseBody {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
