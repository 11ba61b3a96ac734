//! The serde mirror of the configuration file, and its validation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;
use toml::Spanned;

use super::{
    build_routes, CacheConfig, Config, ConfigError, CorsConfig, IdentityHeaders, LogFormat,
    ServerLimits, ServerTls, StoreConfig, UpstreamConfig, UpstreamProtocol, UpstreamTarget,
};
use crate::limits::config::{LimitsSection, RouteLimitFields, RouteRateSection};
use crate::routing::RuleSpec;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The client-facing listener.
    #[serde(default)]
    pub server: ServerSection,
    /// The identity store.
    #[serde(default)]
    pub store: StoreSection,
    /// The resolved-key cache.
    #[serde(default)]
    pub cache: CacheSection,
    /// Rules about credentials.
    #[serde(default)]
    pub credentials: CredentialsSection,
    /// Names of the identity headers sent upstream.
    #[serde(default)]
    pub headers: HeadersSection,
    /// Named upstream services.
    #[serde(default)]
    pub upstreams: Vec<UpstreamSection>,
    /// Route rules. A request that matches none is rejected.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// The admin API listener.
    #[serde(default)]
    pub admin: AdminSection,
    /// The metrics and health listener.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// Log output.
    #[serde(default)]
    pub log: LogSection,
    /// CORS preflight responses, for routes with `cors = "answer"`.
    #[serde(default)]
    pub cors: CorsSection,
    /// Rate limits, the failed-authentication throttle and usage counters.
    #[serde(default)]
    pub limits: LimitsSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address of the listener that serves `/metrics`, `/healthz` and
    /// `/readyz`.
    pub listen: Spanned<String>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            listen: Spanned::new(0..0, super::DEFAULT_METRICS_LISTEN.to_string()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` (default) or `json`.
    pub format: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSection {
    /// Origins allowed to call routes with `cors = "answer"`, such as
    /// `https://app.example.com`; `*` allows any origin.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Request headers a preflight may ask for.
    #[serde(default = "default_cors_headers")]
    pub allowed_headers: Vec<String>,
    /// How long a browser may cache a preflight answer.
    #[serde(default = "default_cors_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for CorsSection {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_headers: default_cors_headers(),
            max_age: default_cors_max_age(),
        }
    }
}

fn default_cors_headers() -> Vec<String> {
    [
        "content-type",
        "x-api-key",
        "authorization",
        "x-tenant-id",
        "x-request-id",
    ]
    .map(String::from)
    .to_vec()
}

fn default_cors_max_age() -> Duration {
    Duration::from_secs(600)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address and port to listen on.
    pub listen: Spanned<String>,
    /// Largest request head accepted, in bytes; larger heads get 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: Spanned<usize>,
    /// Time a client has to send a complete request head.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Maximum number of open client connections; further connections wait
    /// in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: Spanned<usize>,
    /// Largest request body in bytes for routes that set no limit of their
    /// own; absent means no limit.
    pub max_body_bytes: Option<u64>,
    /// Time in-flight requests get to finish after SIGTERM or Ctrl-C.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Reload the configuration when this file changes (SIGHUP always
    /// reloads).
    #[serde(default = "default_true")]
    pub watch_config: bool,
    /// Terminate TLS on the listener.
    pub tls: Option<ServerTlsSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsSection {
    /// PEM certificate chain; reloaded when the file changes.
    pub cert: Spanned<String>,
    /// PEM private key; reloaded when the file changes.
    pub key: Spanned<String>,
}

fn default_max_connections() -> Spanned<usize> {
    Spanned::new(0..0, super::DEFAULT_MAX_CONNECTIONS)
}

fn default_shutdown_timeout() -> Duration {
    super::DEFAULT_SHUTDOWN_TIMEOUT
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: Spanned::new(0..0, super::DEFAULT_LISTEN.to_string()),
            max_header_bytes: default_max_header_bytes(),
            header_read_timeout: default_header_read_timeout(),
            max_connections: default_max_connections(),
            max_body_bytes: None,
            shutdown_timeout: default_shutdown_timeout(),
            watch_config: true,
            tls: None,
        }
    }
}

fn default_max_header_bytes() -> Spanned<usize> {
    Spanned::new(0..0, super::DEFAULT_MAX_HEADER_BYTES)
}

fn default_header_read_timeout() -> Duration {
    super::DEFAULT_HEADER_READ_TIMEOUT
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite://PATH` (relative to the working directory) or
    /// `sqlite:///ABSOLUTE/PATH`.
    pub url: Spanned<String>,
    /// Create an organization, workspace and admin user when the store is
    /// empty, and print the admin's first key once.
    #[serde(default = "default_true")]
    pub bootstrap: bool,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            url: Spanned::new(0..0, super::DEFAULT_STORE_URL.to_string()),
            bootstrap: true,
        }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Maximum number of cached keys.
    #[serde(default = "default_capacity")]
    pub capacity: Spanned<u64>,
    /// Lifetime of a cached key: the longest a change made elsewhere takes
    /// to reach this process.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Lifetime of a cached "no such key" answer.
    #[serde(default = "default_negative_ttl", with = "humantime_serde")]
    pub negative_ttl: Duration,
}

impl Default for CacheSection {
    fn default() -> Self {
        Self {
            capacity: default_capacity(),
            ttl: default_ttl(),
            negative_ttl: default_negative_ttl(),
        }
    }
}

fn default_capacity() -> Spanned<u64> {
    Spanned::new(0..0, super::DEFAULT_CACHE_CAPACITY)
}

fn default_ttl() -> Duration {
    super::DEFAULT_CACHE_TTL
}

fn default_negative_ttl() -> Duration {
    super::DEFAULT_NEGATIVE_TTL
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSection {
    /// Legacy `ls__` keys are rejected from this date on (YYYY-MM-DD, UTC).
    pub legacy_sunset: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersSection {
    pub user_id: Spanned<String>,
    pub service_account_id: Spanned<String>,
    pub org_id: Spanned<String>,
    pub workspace_id: Spanned<String>,
    /// Also the header a client sends to choose a workspace.
    pub tenant_id: Spanned<String>,
    pub role: Spanned<String>,
    pub permissions: Spanned<String>,
    pub key_id: Spanned<String>,
    pub key_kind: Spanned<String>,
}

impl Default for HeadersSection {
    fn default() -> Self {
        let name = |s: &str| Spanned::new(0..0, s.to_string());
        Self {
            user_id: name("X-Auth-User-Id"),
            service_account_id: name("X-Auth-Service-Account-Id"),
            org_id: name("X-Auth-Org-Id"),
            workspace_id: name("X-Auth-Workspace-Id"),
            tenant_id: name("X-Tenant-Id"),
            role: name("X-Auth-Role"),
            permissions: name("X-Auth-Permissions"),
            key_id: name("X-Auth-Key-Id"),
            key_kind: name("X-Auth-Key-Kind"),
        }
    }
}

impl HeadersSection {
    pub(super) fn validate(&self) -> Result<IdentityHeaders, (String, Spanned<String>)> {
        let fields = [
            ("user_id", &self.user_id),
            ("service_account_id", &self.service_account_id),
            ("org_id", &self.org_id),
            ("workspace_id", &self.workspace_id),
            ("tenant_id", &self.tenant_id),
            ("role", &self.role),
            ("permissions", &self.permissions),
            ("key_id", &self.key_id),
            ("key_kind", &self.key_kind),
        ];
        let mut names = Vec::with_capacity(fields.len());
        for (field, value) in fields {
            match HeaderName::try_from(value.get_ref().as_str()) {
                Ok(name) => names.push(name),
                Err(_) => return Err((format!("headers.{field}"), value.clone())),
            }
        }
        let names: [HeaderName; 9] = names.try_into().expect("nine header fields");
        Ok(IdentityHeaders::new(names))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Name that route rules use.
    pub name: Spanned<String>,
    /// `http://host:port[/base/path]`, or `builtin:echo` for the in-process
    /// echo service.
    pub url: Spanned<String>,
    /// Time allowed to open a connection.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for the response head to arrive.
    #[serde(default = "default_upstream_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// `http1` (default) or `http2` (cleartext with prior knowledge, as
    /// gRPC services expect; over TLS, ALPN chooses).
    pub protocol: Option<Spanned<String>>,
    /// For `https://` upstreams: PEM CA certificates to trust instead of
    /// the system roots.
    pub ca: Option<Spanned<String>>,
    /// PEM certificate chain presented to an `https://` upstream.
    pub client_cert: Option<Spanned<String>>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<Spanned<String>>,
}

fn default_connect_timeout() -> Duration {
    super::DEFAULT_CONNECT_TIMEOUT
}

fn default_upstream_timeout() -> Duration {
    super::DEFAULT_UPSTREAM_TIMEOUT
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Stable name of the rule, used in logs and metrics.
    pub id: Spanned<String>,
    /// Path pattern: literal segments, `{name}` for one segment, and an
    /// optional trailing `**` for any number of segments.
    pub path: Spanned<String>,
    /// HTTP methods the rule applies to.
    pub methods: Spanned<Vec<String>>,
    /// Permission the caller's role must grant, or `public` for no key.
    pub permission: Spanned<String>,
    /// Name of the upstream that serves the route.
    pub upstream: Spanned<String>,
    /// Leading path removed before forwarding; it must be a prefix of the
    /// pattern's literal segments.
    pub strip_prefix: Option<Spanned<String>>,
    /// Forward the client's credential header upstream (off by default).
    #[serde(default)]
    pub forward_credential: bool,
    /// Largest request body in bytes; larger bodies get 413. Overrides
    /// `server.max_body_bytes`.
    pub max_body_bytes: Option<u64>,
    /// CORS preflight handling: `answer` (the gateway answers `OPTIONS`
    /// preflights without a key) or `pass` (preflights go upstream without
    /// a key). Absent: preflights get 404 like any unmatched request.
    pub cors: Option<Spanned<String>>,
    /// Rate limits for this route in place of the `[limits.rate]`
    /// defaults, such as `{ per_key = 5000, period = "1m" }`.
    pub rate_limit: Option<RouteRateSection>,
    /// `traces`: each request counts against the workspace's monthly
    /// trace limits.
    pub usage: Option<Spanned<String>>,
    /// Traces counted per request on a `usage` route; 1 if absent.
    pub usage_cost: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address and port of the admin API listener.
    pub listen: Spanned<String>,
    /// Let workspace Admins invite users into the organization, as
    /// Organization Users of their own workspace. Off by default: only
    /// Organization Admins invite.
    #[serde(default)]
    pub workspace_admins_can_invite: bool,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: Spanned::new(0..0, super::DEFAULT_ADMIN_LISTEN.to_string()),
            workspace_admins_can_invite: false,
        }
    }
}

impl FileConfig {
    pub(super) fn validate(self, text: &str) -> Result<Config, ConfigError> {
        let admin_listen: SocketAddr = self.admin.listen.get_ref().parse().map_err(|e| {
            ConfigError::new("admin.listen", format!("invalid socket address: {e}"))
                .at(text, self.admin.listen.span())
        })?;
        let listen: SocketAddr = self.server.listen.get_ref().parse().map_err(|e| {
            ConfigError::new("server.listen", format!("invalid socket address: {e}"))
                .at(text, self.server.listen.span())
        })?;
        let max_header_bytes = *self.server.max_header_bytes.get_ref();
        if !(8192..=1024 * 1024).contains(&max_header_bytes) {
            return Err(ConfigError::new(
                "server.max_header_bytes",
                "must be between 8192 and 1048576",
            )
            .at(text, self.server.max_header_bytes.span()));
        }

        let max_connections = *self.server.max_connections.get_ref();
        if max_connections == 0 {
            return Err(
                ConfigError::new("server.max_connections", "must be at least 1")
                    .at(text, self.server.max_connections.span()),
            );
        }
        let metrics_listen: SocketAddr = self.metrics.listen.get_ref().parse().map_err(|e| {
            ConfigError::new("metrics.listen", format!("invalid socket address: {e}"))
                .at(text, self.metrics.listen.span())
        })?;
        let log_format = match &self.log.format {
            None => LogFormat::Text,
            Some(value) => match value.get_ref().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(ConfigError::new(
                        "log.format",
                        format!("unknown log format {other:?}: expected \"text\" or \"json\""),
                    )
                    .at(text, value.span()))
                }
            },
        };
        let cors =
            CorsConfig::new(&self.cors).map_err(|message| ConfigError::new("cors", message))?;

        let store_url = self.store.url.get_ref();
        if crate::store::sqlite_path(store_url).is_none() {
            return Err(ConfigError::new(
                "store.url",
                format!("unsupported store URL {store_url:?}: expected sqlite://PATH"),
            )
            .at(text, self.store.url.span()));
        }

        if *self.cache.capacity.get_ref() == 0 {
            return Err(ConfigError::new("cache.capacity", "must be at least 1")
                .at(text, self.cache.capacity.span()));
        }

        let legacy_sunset = match &self.credentials.legacy_sunset {
            None => super::DEFAULT_LEGACY_SUNSET,
            Some(value) => {
                let format = time::macros::format_description!("[year]-[month]-[day]");
                time::Date::parse(value.get_ref(), &format).map_err(|_| {
                    ConfigError::new(
                        "credentials.legacy_sunset",
                        format!("invalid date {:?}: expected YYYY-MM-DD", value.get_ref()),
                    )
                    .at(text, value.span())
                })?
            }
        };

        let headers = self.headers.validate().map_err(|(field, value)| {
            ConfigError::new(field, format!("invalid header name {:?}", value.get_ref()))
                .at(text, value.span())
        })?;

        let mut upstreams = Vec::with_capacity(self.upstreams.len());
        let mut upstream_names = HashMap::new();
        for (i, section) in self.upstreams.into_iter().enumerate() {
            let field = |name: &str| format!("upstreams[{i}].{name}");
            let name = section.name.get_ref().clone();
            if name.is_empty() {
                return Err(ConfigError::new(field("name"), "must not be empty")
                    .at(text, section.name.span()));
            }
            if upstream_names.insert(name.clone(), i).is_some() {
                return Err(ConfigError::new(
                    field("name"),
                    format!("duplicate upstream name {name:?}"),
                )
                .at(text, section.name.span()));
            }
            let protocol = match &section.protocol {
                None => UpstreamProtocol::Http1,
                Some(value) => match value.get_ref().as_str() {
                    "http1" => UpstreamProtocol::Http1,
                    "http2" => UpstreamProtocol::Http2,
                    other => {
                        return Err(ConfigError::new(
                            field("protocol"),
                            format!("unknown protocol {other:?}: expected \"http1\" or \"http2\""),
                        )
                        .at(text, value.span()))
                    }
                },
            };
            let tls = crate::tls::UpstreamTls {
                ca: section.ca.as_ref().map(|p| p.get_ref().into()),
                client_cert: match (&section.client_cert, &section.client_key) {
                    (None, None) => None,
                    (Some(cert), Some(key)) => Some((cert.get_ref().into(), key.get_ref().into())),
                    (Some(cert), None) => {
                        return Err(ConfigError::new(
                            field("client_key"),
                            "client_cert needs client_key",
                        )
                        .at(text, cert.span()))
                    }
                    (None, Some(key)) => {
                        return Err(ConfigError::new(
                            field("client_cert"),
                            "client_key needs client_cert",
                        )
                        .at(text, key.span()))
                    }
                },
            };
            if tls.ca.is_some() || tls.client_cert.is_some() {
                crate::tls::client_config(&tls).map_err(|e| {
                    ConfigError::new(field("ca"), e.to_string()).at(text, section.url.span())
                })?;
            }
            let target = parse_upstream_url(section.url.get_ref()).map_err(|message| {
                ConfigError::new(field("url"), message).at(text, section.url.span())
            })?;
            upstreams.push(UpstreamConfig {
                name,
                target,
                connect_timeout: section.connect_timeout,
                timeout: section.timeout,
                protocol,
                tls,
            });
        }

        let request_limits = self.limits.validate(text)?;
        let specs = self
            .routes
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let public = r.permission.get_ref() == "public";
                let limits = RouteLimitFields {
                    rate_limit: r.rate_limit,
                    usage: r.usage,
                    usage_cost: r.usage_cost,
                }
                .validate(i, public, &request_limits, text)?;
                Ok(RuleSpec {
                    id: r.id,
                    path: r.path,
                    methods: r.methods,
                    permission: r.permission,
                    upstream: r.upstream,
                    strip_prefix: r.strip_prefix,
                    forward_credential: r.forward_credential,
                    max_body_bytes: r.max_body_bytes.or(self.server.max_body_bytes),
                    cors: r.cors,
                    limits,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let routes = build_routes(text, specs, &upstream_names)?;

        Ok(Config {
            listen,
            store: StoreConfig {
                url: store_url.clone(),
                bootstrap: self.store.bootstrap,
            },
            cache: CacheConfig {
                capacity: *self.cache.capacity.get_ref(),
                ttl: self.cache.ttl,
                negative_ttl: self.cache.negative_ttl,
            },
            legacy_sunset,
            headers: Arc::new(headers),
            limits: ServerLimits {
                max_header_bytes,
                header_read_timeout: self.server.header_read_timeout,
                max_connections,
                shutdown_timeout: self.server.shutdown_timeout,
            },
            watch_config: self.server.watch_config,
            tls: self.server.tls.map(|t| ServerTls {
                cert: t.cert.into_inner().into(),
                key: t.key.into_inner().into(),
            }),
            metrics_listen,
            log_format,
            cors: Arc::new(cors),
            upstreams,
            routes: Arc::new(routes),
            request_limits: Arc::new(request_limits),
            admin: super::AdminConfig {
                listen: admin_listen,
                workspace_admins_can_invite: self.admin.workspace_admins_can_invite,
            },
        })
    }
}

fn parse_upstream_url(url: &str) -> Result<UpstreamTarget, String> {
    if url == "builtin:echo" {
        return Ok(UpstreamTarget::Echo);
    }
    // Checked first so that no message below repeats a password.
    if url.contains('@') {
        return Err("URL must not contain user information".to_string());
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("URL {url:?} has no scheme: expected http://host:port"))?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(format!(
            "unsupported scheme in {url:?}: expected http:// or https://"
        ));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("URL {url:?} has no host"))?;
    if uri.query().is_some() {
        return Err(format!("URL {url:?} must not have a query string"));
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(UpstreamTarget::Http {
        scheme,
        authority,
        base_path,
    })
}
