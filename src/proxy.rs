//! The request pipeline: framing, canonical path, route, credential,
//! identity, permission, then forwarding with the identity injected.

pub mod echo;
pub mod framing;
pub mod headers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::authn::{Access, Authenticator};
use crate::config::{Config, UpstreamConfig, UpstreamTarget};
use crate::error::Rejection;
use crate::routing::canonical::canonicalize;
use crate::routing::{Requirement, Rule};
use crate::store::Store;

/// Errors a response body can carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the gateway sends.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// One upstream with its connection pool.
struct Upstream {
    config: UpstreamConfig,
    client: Client<HttpConnector, Incoming>,
}

/// The gateway's shared state: configuration, store, cache, upstreams.
pub struct Gateway {
    config: Arc<Config>,
    auth: Arc<Authenticator>,
    upstreams: Vec<Upstream>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.config.listen)
            .field("auth", &self.auth)
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
        let auth = Arc::new(Authenticator::new(&config, store));
        Self {
            config,
            auth,
            upstreams,
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The authenticator, shared with the admin API.
    pub fn auth(&self) -> &Arc<Authenticator> {
        &self.auth
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
                Some(self.auth.authenticate(&parts.headers, permission).await?)
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
            let grant = access.grant();
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
