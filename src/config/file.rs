//! The serde mirror of the configuration file, and its validation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;
use toml::Spanned;

use super::{
    build_routes, CacheConfig, Config, ConfigError, IdentityHeaders, ServerLimits, StoreConfig,
    UpstreamConfig, UpstreamTarget,
};
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
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: Spanned::new(0..0, super::DEFAULT_LISTEN.to_string()),
            max_header_bytes: default_max_header_bytes(),
            header_read_timeout: default_header_read_timeout(),
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
}

impl FileConfig {
    pub(super) fn validate(self, text: &str) -> Result<Config, ConfigError> {
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
            let target = parse_upstream_url(section.url.get_ref()).map_err(|message| {
                ConfigError::new(field("url"), message).at(text, section.url.span())
            })?;
            upstreams.push(UpstreamConfig {
                name,
                target,
                connect_timeout: section.connect_timeout,
                timeout: section.timeout,
            });
        }

        let specs = self
            .routes
            .into_iter()
            .map(|r| RuleSpec {
                id: r.id,
                path: r.path,
                methods: r.methods,
                permission: r.permission,
                upstream: r.upstream,
                strip_prefix: r.strip_prefix,
                forward_credential: r.forward_credential,
            })
            .collect();
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
            },
            upstreams,
            routes: Arc::new(routes),
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
    if scheme != http::uri::Scheme::HTTP {
        // NOTE: HTTPS upstreams need a TLS client connector, which is not
        // wired in yet.
        return Err(format!(
            "unsupported scheme in {url:?}: only http:// is supported"
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
