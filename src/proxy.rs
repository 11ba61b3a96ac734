//! The request pipeline: framing, canonical path, route, credential,
//! identity, permission, then forwarding with the identity injected.

mod body;
mod cors;
pub mod echo;
pub mod framing;
pub mod headers;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::authn::{Access, Authenticator};
use crate::config::{Config, UpstreamConfig, UpstreamProtocol, UpstreamTarget};
use crate::error::Rejection;
use crate::limits::{Caller, Clock, Limits, SystemClock};
use crate::metrics::{Metrics, Outcome};
use crate::routing::canonical::canonicalize;
use crate::routing::CorsMode;
use crate::routing::{Requirement, Rule};
use crate::store::Store;
use body::{BodyFailure, BodyStatus, CappedBody};

/// Errors a response body can carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the gateway sends.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// One upstream with its connection pool.
struct Upstream {
    config: UpstreamConfig,
    client: Client<HttpsConnector<HttpConnector>, CappedBody>,
}

impl Upstream {
    fn new(config: &UpstreamConfig) -> Result<Self, crate::tls::TlsError> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let is_https = matches!(
            &config.target,
            UpstreamTarget::Http { scheme, .. } if *scheme == http::uri::Scheme::HTTPS
        );
        // Loading the system roots reads many files, so plain HTTP upstreams
        // skip it.
        let tls = if is_https {
            crate::tls::client_config(&config.tls)?
        } else {
            crate::tls::plain_client_config()?
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let https = match config.protocol {
            UpstreamProtocol::Http1 => builder.enable_http1().wrap_connector(connector),
            UpstreamProtocol::Http2 => builder.enable_http2().wrap_connector(connector),
        };
        let mut client = Client::builder(TokioExecutor::new());
        if config.protocol == UpstreamProtocol::Http2 {
            client.http2_only(true);
        }
        Ok(Self {
            config: config.clone(),
            client: client.build(https),
        })
    }
}

/// The routes and upstream pools built from one configuration. Swapped as a
/// whole on reload, while requests in flight keep the one they started with.
struct Runtime {
    config: Arc<Config>,
    upstreams: Vec<Upstream>,
}

/// Facts about a request gathered for its access-log line and metrics.
#[derive(Default)]
struct RequestRecord {
    route: Option<Arc<str>>,
    key_id: Option<uuid::Uuid>,
    workspace_id: Option<uuid::Uuid>,
    upstream_time: Duration,
    outcome: Option<Outcome>,
}

/// The gateway's shared state: the current configuration with its upstream
/// pools, the authenticator and the metrics.
pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    auth: Arc<Authenticator>,
    metrics: Arc<Metrics>,
    limits: Arc<Limits>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.config().listen)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds the gateway; fails if an upstream's TLS files are unusable.
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>) -> Result<Self, crate::tls::TlsError> {
        Self::with_metrics(config, store, Arc::new(Metrics::new()))
    }

    /// Builds the gateway with the given metrics registry.
    pub fn with_metrics(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, crate::tls::TlsError> {
        let clock = Arc::new(SystemClock::new());
        let limits = Arc::new(Limits::new(&config.request_limits, store.clone(), clock));
        let auth = Arc::new(Authenticator::new(&config, store, metrics.clone()));
        Ok(Self {
            runtime: ArcSwap::from_pointee(Runtime::new(config)?),
            auth,
            metrics,
            limits,
        })
    }

    /// Replaces the clock of the rate and usage limits, so that tests can
    /// move time forward. Call it before serving: it starts the limits
    /// afresh.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        let config = self.config();
        let store = self.auth.store().clone();
        self.limits = Arc::new(Limits::new(&config.request_limits, store, clock));
        self
    }

    /// Rate limits, the failed-authentication throttle and usage counters.
    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    /// Returns the configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.runtime.load().config.clone()
    }

    /// Returns the authenticator, which the admin API shares.
    pub fn auth(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Puts a new configuration in force. Requests already running finish
    /// on the old one. Settings that only apply at start (listen addresses,
    /// store, cache sizes, header limits) keep their running values, with a
    /// warning.
    pub fn reload(&self, config: Config) -> Result<(), crate::tls::TlsError> {
        let old = self.config();
        for (name, changed) in [
            ("server.listen", old.listen != config.listen),
            (
                "metrics.listen",
                old.metrics_listen != config.metrics_listen,
            ),
            ("store.url", old.store.url != config.store.url),
            (
                "cache",
                format!("{:?}", old.cache) != format!("{:?}", config.cache),
            ),
            (
                "headers.tenant_id",
                old.headers.tenant_id != config.headers.tenant_id,
            ),
            (
                "server.max_header_bytes",
                old.limits.max_header_bytes != config.limits.max_header_bytes,
            ),
        ] {
            if changed {
                tracing::warn!(setting = name, "this setting changes only on restart");
            }
        }
        let runtime = Runtime::new(Arc::new(config))?;
        self.auth.set_legacy_sunset(&runtime.config);
        self.runtime.store(Arc::new(runtime));
        Ok(())
    }

    /// Handles one request; never fails, because every failure becomes a
    /// response.
    pub async fn handle(
        self: Arc<Self>,
        mut request: Request<Incoming>,
        client: SocketAddr,
        scheme: &'static str,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        let method = request.method().clone();
        // A rejected request's body is never read, so the connection cannot
        // be reused: the next request would start somewhere in that body.
        let unread_body = request.version() < http::Version::HTTP_2
            && !hyper::body::Body::is_end_stream(request.body());
        let is_grpc = request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let request_id = request_id(request.headers());
        request
            .headers_mut()
            .insert(headers::REQUEST_ID.clone(), request_id.clone());

        let mut record = RequestRecord::default();
        let result = self.process(request, client, scheme, &mut record).await;
        let mut response = result.unwrap_or_else(|rejection| {
            tracing::debug!(
                target: "portcullis::rejection",
                code = rejection.code(),
                client.addr = %client,
                "request rejected"
            );
            if rejection.is_auth_failure() {
                self.metrics.record_auth_failure(rejection.code());
            }
            match &rejection {
                Rejection::RateLimited { .. } => self.metrics.record_limited("rate"),
                Rejection::AuthThrottled { .. } => self.metrics.record_limited("auth_throttle"),
                Rejection::UsageLimitExceeded { .. } => self.metrics.record_limited("usage"),
                _ => {}
            }
            record
                .outcome
                .get_or_insert(if rejection.is_upstream_failure() {
                    Outcome::UpstreamError
                } else {
                    Outcome::Rejected
                });
            let mut response = if is_grpc {
                rejection.into_grpc_response::<String>().map(full_body)
            } else {
                rejection.into_response::<String>().map(full_body)
            };
            if unread_body {
                // Said explicitly so that clients do not reuse the
                // connection that hyper closes after this response.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        });
        response
            .headers_mut()
            .insert(headers::REQUEST_ID.clone(), request_id.clone());

        let elapsed = started.elapsed();
        let route = record.route.as_deref().unwrap_or("none");
        self.metrics.record_request(
            route,
            &method,
            response.status(),
            record.outcome.unwrap_or(Outcome::Forwarded),
            elapsed,
            record.upstream_time,
        );
        tracing::info!(
            target: "portcullis::access",
            request_id = request_id.to_str().unwrap_or("-"),
            %method,
            route,
            status = response.status().as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            upstream_ms = record.upstream_time.as_secs_f64() * 1000.0,
            key_id = %OptionDisplay(record.key_id),
            workspace_id = %OptionDisplay(record.workspace_id),
            client.addr = %client,
        );
        response
    }

    async fn process(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        scheme: &'static str,
        record: &mut RequestRecord,
    ) -> Result<Response<ResponseBody>, Rejection> {
        let runtime = self.runtime.load_full();
        let config = &runtime.config;
        let (mut parts, body) = request.into_parts();
        framing::check(&mut parts)?;
        let path = canonicalize(parts.uri.path()).map_err(Rejection::InvalidPath)?;

        let preflight = cors::preflight_method(&parts.method, &parts.headers);
        let rule = match &preflight {
            Some(requested) => config.routes.find_preflight(requested, &path),
            None => config.routes.find(&parts.method, &path),
        }
        .ok_or(Rejection::NoRoute)?;
        record.route = Some(rule.id.clone());

        if preflight.is_some() && rule.cors == Some(CorsMode::Answer) {
            record.outcome = Some(Outcome::Rejected);
            return Ok(cors::answer(rule, &config.cors, &parts.headers).map(full_body));
        }

        let access = match (&rule.requirement, &preflight) {
            (Requirement::Public, _) | (_, Some(_)) => None,
            (Requirement::Permission(permission), None) => {
                let limits = &config.request_limits;
                self.limits.check_auth_throttle(limits, client.ip())?;
                let result = self.auth.authenticate(&parts.headers, permission).await;
                let access = self.limits.note_auth_result(limits, client.ip(), result)?;
                record.key_id = Some(access.identity.key_id);
                record.workspace_id = Some(access.grant().workspace_id);
                Some(access)
            }
        };
        let caller = access.as_ref().map(Caller::from);
        self.limits
            .admit(&config.request_limits, rule, caller, client.ip())?;

        let declared_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let (Some(limit), Some(length)) = (rule.max_body_bytes, declared_length) {
            if length > limit {
                return Err(Rejection::PayloadTooLarge);
            }
        }

        let upstream = &runtime.upstreams[rule.upstream];
        let uri = upstream_uri(&upstream.config.target, rule, &path, parts.uri.query())?;
        let origin = parts.headers.get(header::ORIGIN).cloned();
        let upgrade = upgrade::requested(parts.version, &parts.headers).and_then(|protocol| {
            let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>()?;
            Some((on_upgrade, protocol))
        });
        let http2_upstream = upstream.config.protocol == UpstreamProtocol::Http2;
        rewrite_headers(
            config,
            &mut parts,
            rule,
            access.as_ref(),
            client,
            scheme,
            http2_upstream,
        );
        if let Some((_, protocol)) = &upgrade {
            upgrade::restore_request_headers(&mut parts.headers, protocol);
        }
        parts.uri = uri;

        let mut response = match &upstream.config.target {
            UpstreamTarget::Echo => echo::describe(&parts).map(full_body),
            UpstreamTarget::Http { .. } => {
                parts.version = match upstream.config.protocol {
                    UpstreamProtocol::Http1 => http::Version::HTTP_11,
                    UpstreamProtocol::Http2 => http::Version::HTTP_2,
                };
                let (body, body_status) = CappedBody::new(body, rule.max_body_bytes);
                let result = self
                    .forward(
                        upstream,
                        Request::from_parts(parts, body),
                        record,
                        upgrade,
                        &body_status,
                    )
                    .await;
                match body_status.failure() {
                    Some(BodyFailure::TooLarge) => return Err(Rejection::PayloadTooLarge),
                    Some(BodyFailure::ClientError) => {
                        return Err(Rejection::BadRequest(
                            "the request body is malformed or ended early",
                        ))
                    }
                    None => result?,
                }
            }
        };
        if rule.cors == Some(CorsMode::Answer) {
            cors::allow_origin(origin.as_ref(), &config.cors, response.headers_mut());
        }
        Ok(response)
    }

    async fn forward(
        &self,
        upstream: &Upstream,
        request: Request<CappedBody>,
        record: &mut RequestRecord,
        upgrade: Option<(hyper::upgrade::OnUpgrade, HeaderValue)>,
        body_status: &BodyStatus,
    ) -> Result<Response<ResponseBody>, Rejection> {
        let name = &upstream.config.name;
        let started = Instant::now();
        let sent =
            tokio::time::timeout(upstream.config.timeout, upstream.client.request(request)).await;
        record.upstream_time = started.elapsed();
        let mut response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(_)) if body_status.failure().is_some() => {
                // The client's body failed, not the upstream, so the caller
                // turns the body's failure into 400 or 413.
                return Err(Rejection::UpstreamUnavailable);
            }
            Ok(Err(error)) => {
                self.metrics.record_upstream_error(name, "unavailable");
                tracing::warn!(upstream = %name, error = %error_chain(&error), "upstream request failed");
                return Err(Rejection::UpstreamUnavailable);
            }
            Err(_) => {
                self.metrics.record_upstream_error(name, "timeout");
                tracing::warn!(upstream = %name, timeout = ?upstream.config.timeout, "upstream timed out");
                return Err(Rejection::UpstreamTimeout);
            }
        };
        self.metrics.record_upstream(name, record.upstream_time);
        record.outcome = Some(Outcome::Forwarded);
        headers::remove_hop_by_hop(response.headers_mut());
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            let Some((client, protocol)) = upgrade else {
                tracing::warn!(upstream = %name, "upstream switched protocols without being asked");
                return Err(Rejection::UpstreamUnavailable);
            };
            upgrade::splice(client, &mut response, protocol);
        }
        Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
    }
}

impl Runtime {
    fn new(config: Arc<Config>) -> Result<Self, crate::tls::TlsError> {
        let upstreams = config
            .upstreams
            .iter()
            .map(Upstream::new)
            .collect::<Result<_, _>>()?;
        Ok(Self { config, upstreams })
    }
}

fn rewrite_headers(
    config: &Config,
    parts: &mut Parts,
    rule: &Rule,
    access: Option<&Access>,
    client: SocketAddr,
    scheme: &'static str,
    http2_upstream: bool,
) {
    let names = &config.headers;
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let wants_trailers = http2_upstream && headers::accepts_trailers(&parts.headers);
    let headers = &mut parts.headers;
    // Room for the identity and forwarding headers, so that the map grows
    // once instead of while they are inserted (about 1 µs measured).
    headers.reserve(16);
    headers::remove_hop_by_hop(headers);
    headers::remove_client_identity(headers, names, rule.forward_credential);
    headers.remove(header::HOST);
    if wants_trailers {
        // `TE: trailers` is the one TE value HTTP/2 allows, and gRPC needs
        // it end to end (RFC 9113 section 8.2.2). HTTP/1.1 upstreams get no
        // TE, since it is hop-by-hop there.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    headers::append_forwarded(headers, client.ip(), scheme, host);
    if let Some(access) = access {
        headers::inject_identity(headers, names, &access.identity, access.grant());
    }
}

/// Returns the client's `X-Request-Id` if it is a plausible id, or a new
/// UUID.
fn request_id(headers: &http::HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(&headers::REQUEST_ID).iter();
    if let (Some(value), None) = (values.next(), values.next()) {
        let bytes = value.as_bytes();
        let plausible = (1..=128).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b));
        if plausible {
            return value.clone();
        }
    }
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .expect("a UUID is a valid header value")
}

/// Displays `-` for `None`.
struct OptionDisplay<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OptionDisplay<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(f),
            None => f.write_str("-"),
        }
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
