//! The configuration file: a TOML document read in two steps.
//!
//! [`file`] contains the serde structs that mirror the file (unknown fields are
//! rejected), and [`Config::from_toml`] validates them into the runtime
//! configuration. Every error names the field at fault and, where the file
//! says where it was, the line.

mod file;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use time::Date;

use crate::routing::{RouteTable, RuleSpec};

pub use file::FileConfig;

/// Default listen address of the gateway.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default store: an SQLite file in the working directory.
pub const DEFAULT_STORE_URL: &str = "sqlite://portcullis.db";
/// Default maximum number of resolved keys kept in the cache.
pub const DEFAULT_CACHE_CAPACITY: u64 = 100_000;
/// Default lifetime of a cached key. This bounds how long a revocation made
/// by another gateway process takes to reach this one.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
/// Default lifetime of a cached "no such key" result, kept short so that a
/// newly created key works quickly.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Date after which legacy `ls__` keys are rejected, as announced for the
/// reference service.
pub const DEFAULT_LEGACY_SUNSET: Date = time::macros::date!(2024 - 08 - 15);
/// Default upstream connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time to wait for an upstream's response head.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Default maximum size of a request head (request line and headers).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default time a client has to send a complete request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default listen address of the admin API.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";
/// Default address of the metrics and health listener.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9090";
/// Default maximum number of open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default time in-flight requests get to finish on shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A configuration error, naming the field at fault.
#[derive(Debug)]
pub struct ConfigError {
    path: Option<PathBuf>,
    line: Option<usize>,
    field: String,
    message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}: ", path.display())?;
        }
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: None,
            line: None,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Attaches the line of `span` in `text`.
    pub(crate) fn at(mut self, text: &str, span: std::ops::Range<usize>) -> Self {
        self.line = Some(line_of(text, span.start));
        self
    }

    fn in_file(mut self, path: &Path) -> Self {
        self.path = Some(path.to_path_buf());
        self
    }

    /// Returns the dotted name of the field at fault, such as
    /// `routes[2].upstream`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Returns the line of the file at fault, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: StoreConfig,
    pub cache: CacheConfig,
    pub legacy_sunset: Date,
    pub headers: Arc<IdentityHeaders>,
    pub limits: ServerLimits,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Arc<RouteTable>,
    /// Rate limits, the failed-authentication throttle and usage settings.
    pub request_limits: Arc<crate::limits::LimitsConfig>,
    pub admin: AdminConfig,
    /// Reload when the file changes.
    pub watch_config: bool,
    /// TLS on the listener, if configured.
    pub tls: Option<ServerTls>,
    pub metrics_listen: SocketAddr,
    pub log_format: LogFormat,
    pub cors: Arc<CorsConfig>,
}

/// PEM files of the listener's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Origins, headers and cache lifetime allowed in preflight responses.
#[derive(Debug, Clone, Default)]
pub struct CorsConfig {
    /// `None`: any origin.
    pub allowed_origins: Option<Vec<String>>,
    pub allowed_headers: String,
    pub max_age_secs: u64,
}

impl CorsConfig {
    fn new(section: &file::CorsSection) -> Result<Self, String> {
        let any = section.allowed_origins.iter().any(|o| o == "*");
        for header in &section.allowed_headers {
            HeaderName::try_from(header.as_str())
                .map_err(|_| format!("invalid header name {header:?} in allowed_headers"))?;
        }
        Ok(Self {
            allowed_origins: (!any).then(|| section.allowed_origins.clone()),
            allowed_headers: section.allowed_headers.join(", "),
            max_age_secs: section.max_age.as_secs(),
        })
    }

    /// Returns true if `origin` may call CORS routes.
    pub fn allows(&self, origin: &str) -> bool {
        match &self.allowed_origins {
            None => true,
            Some(list) => list.iter().any(|o| o == origin),
        }
    }
}

/// The admin API.
#[derive(Debug, Clone, Copy)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Lets workspace Admins invite users into the organization.
    pub workspace_admins_can_invite: bool,
}

/// Location of the identity store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
    /// Create an organization, workspace and admin user on first start.
    pub bootstrap: bool,
}

/// Key cache sizes and lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    pub capacity: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
}

/// Guards on what a client may send.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

/// One named upstream service.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub target: UpstreamTarget,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub protocol: UpstreamProtocol,
    /// Trust roots and client certificate for `https://` upstreams.
    pub tls: crate::tls::UpstreamTls,
}

/// The HTTP version spoken to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// Cleartext HTTP/2 with prior knowledge.
    Http2,
}

/// Kind of an upstream and its address.
#[derive(Debug, Clone)]
pub enum UpstreamTarget {
    /// An HTTP service: scheme and authority, plus a path prefix that is
    /// put before every forwarded path (empty for none).
    Http {
        scheme: http::uri::Scheme,
        authority: http::uri::Authority,
        base_path: String,
    },
    /// The built-in echo service, run in process: it returns what the
    /// upstream would have received.
    Echo,
}

/// Names of the headers the gateway injects upstream.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user_id: HeaderName,
    pub service_account_id: HeaderName,
    pub org_id: HeaderName,
    pub workspace_id: HeaderName,
    pub tenant_id: HeaderName,
    pub role: HeaderName,
    pub permissions: HeaderName,
    pub key_id: HeaderName,
    pub key_kind: HeaderName,
    /// Every name above and the retention-tier header, lowercased with `_`
    /// turned into `-`, for removing client-sent copies.
    normalized: Vec<String>,
}

impl IdentityHeaders {
    fn new(names: [HeaderName; 9]) -> Self {
        let normalized = names
            .iter()
            .map(|name| name.as_str().replace('_', "-"))
            .chain([crate::proxy::headers::RETENTION_TIER.as_str().to_string()])
            .collect();
        let [user_id, service_account_id, org_id, workspace_id, tenant_id, role, permissions, key_id, key_kind] =
            names;
        Self {
            user_id,
            service_account_id,
            org_id,
            workspace_id,
            tenant_id,
            role,
            permissions,
            key_id,
            key_kind,
            normalized,
        }
    }

    /// Returns true if a client-sent header named `name` is a copy of an
    /// identity header: the same name in any letter case, with `_` for `-`.
    pub fn is_identity_header(&self, name: &HeaderName) -> bool {
        // Header names arrive lowercased from hyper, so only `_` needs mapping.
        let name = name.as_str();
        if name.contains('_') {
            let mapped = name.replace('_', "-");
            self.normalized.contains(&mapped)
        } else {
            self.normalized.iter().any(|n| n == name)
        }
    }
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        file::HeadersSection::default()
            .validate()
            .expect("default identity header names are valid")
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("", format!("cannot read the file: {e}")).in_file(path)
        })?;
        Self::from_toml(&text).map_err(|e| e.in_file(path))
    }

    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let mut err = ConfigError::new("", e.message().trim_end().to_string());
            if let Some(span) = e.span() {
                err = err.at(text, span);
            }
            err
        })?;
        file.validate(text)
    }

    /// Returns the index in `upstreams` of the upstream named `name`.
    pub fn upstream_index(&self, name: &str) -> Option<usize> {
        self.upstreams.iter().position(|u| u.name == name)
    }
}

pub(crate) fn build_routes(
    text: &str,
    specs: Vec<RuleSpec>,
    upstream_names: &HashMap<String, usize>,
) -> Result<RouteTable, ConfigError> {
    RouteTable::build(specs, upstream_names).map_err(|e| {
        let span = e.span.clone();
        let mut err = ConfigError::new(e.field, e.message);
        if let Some(span) = span {
            err = err.at(text, span);
        }
        err
    })
}

#[cfg(test)]
mod tests;
