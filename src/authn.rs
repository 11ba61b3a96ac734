//! Authentication: from a request's credential to a resolved identity,
//! through the key cache and the store. The gateway and the admin API share
//! one [`Authenticator`], so both decide access the same way.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use uuid::Uuid;

use crate::authz;
use crate::cache::{Cached, KeyCache};
use crate::config::Config;
use crate::credential::{self, KeyHash};
use crate::error::Rejection;
use crate::identity::{Identity, WorkspaceGrant};
use crate::metrics::Metrics;
use crate::proxy::headers::{is_credential_alias, API_KEY};
use crate::store::{unix_now, Store};

/// A key's last use is written at most this often, in seconds.
const KEY_USE_INTERVAL_SECS: i64 = 60;

/// A caller that passed authentication and authorization.
#[derive(Debug, Clone)]
pub struct Access {
    pub identity: Arc<Identity>,
    /// Index of the chosen workspace in `identity.workspaces`.
    grant: usize,
}

impl Access {
    /// The workspace the request acts in, with the role held there.
    pub fn grant(&self) -> &WorkspaceGrant {
        &self.identity.workspaces[self.grant]
    }
}

/// Resolves credentials to identities and checks permissions.
pub struct Authenticator {
    store: Arc<dyn Store>,
    cache: KeyCache,
    tenant_header: HeaderName,
    /// Unix seconds from which legacy keys are rejected.
    legacy_sunset: AtomicI64,
    metrics: Arc<Metrics>,
    /// Key uses not yet written to the store: key id to Unix seconds.
    pending_key_uses: DashMap<Uuid, i64>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(config: &Config, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            cache: KeyCache::new(&config.cache),
            tenant_header: config.headers.tenant_id.clone(),
            legacy_sunset: AtomicI64::new(sunset_of(config)),
            pending_key_uses: DashMap::new(),
            metrics,
        }
    }

    /// Applies a reloaded configuration's legacy sunset date.
    pub fn set_legacy_sunset(&self, config: &Config) {
        self.legacy_sunset
            .store(sunset_of(config), Ordering::Relaxed);
    }

    /// Unix seconds from which legacy keys are rejected.
    fn legacy_sunset(&self) -> i64 {
        self.legacy_sunset.load(Ordering::Relaxed)
    }

    pub fn cache(&self) -> &KeyCache {
        &self.cache
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Authenticates the request's credential and authorizes `permission`
    /// in the workspace it selects.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        permission: &str,
    ) -> Result<Access, Rejection> {
        let identity = self.resolve(headers).await?;
        let tenant = single_value(headers, &self.tenant_header)?;
        let now = unix_now();
        let grant = authz::authorize(&identity, tenant, permission, now, self.legacy_sunset())?;
        self.note_use(&identity, now);
        Ok(Access { identity, grant })
    }

    /// Authenticates the request's credential and authorizes `permission`
    /// in `workspace`, which the caller names in the request path. A client
    /// `X-Tenant-Id` header that names another workspace is rejected.
    pub async fn authenticate_workspace(
        &self,
        headers: &HeaderMap,
        workspace: Uuid,
        permission: &str,
    ) -> Result<Access, Rejection> {
        let identity = self.resolve(headers).await?;
        let tenant = single_value(headers, &self.tenant_header)?;
        if let Some(value) = tenant {
            let named = value
                .to_str()
                .ok()
                .and_then(|s| Uuid::try_parse(s.trim()).ok());
            if named != Some(workspace) {
                return Err(Rejection::InvalidWorkspaceId);
            }
        }
        let now = unix_now();
        let header =
            HeaderValue::from_str(&workspace.to_string()).expect("a UUID is a valid header value");
        let grant = authz::authorize(
            &identity,
            Some(&header),
            permission,
            now,
            self.legacy_sunset(),
        )?;
        self.note_use(&identity, now);
        Ok(Access { identity, grant })
    }

    /// Authenticates the request's credential and authorizes `permission`
    /// against the owner's organization role, without choosing a workspace.
    pub async fn authenticate_organization(
        &self,
        headers: &HeaderMap,
        permission: &str,
    ) -> Result<Arc<Identity>, Rejection> {
        let identity = self.resolve(headers).await?;
        let now = unix_now();
        authz::authorize_organization(&identity, permission, now, self.legacy_sunset())?;
        self.note_use(&identity, now);
        Ok(identity)
    }

    /// Authenticates the request's credential and checks the key's state,
    /// but no permission: for callers that must find out who asks before
    /// they know which permission applies.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Arc<Identity>, Rejection> {
        let identity = self.resolve(headers).await?;
        let now = unix_now();
        authz::check_key_state(&identity, now, self.legacy_sunset())?;
        self.note_use(&identity, now);
        Ok(identity)
    }

    /// Parses the credential and looks up its identity, checking nothing
    /// about its state.
    async fn resolve(&self, headers: &HeaderMap) -> Result<Arc<Identity>, Rejection> {
        let text = credential_text(headers)?;
        let parsed = credential::parse_key(text).map_err(|_| Rejection::InvalidKey)?;
        match self.lookup(parsed.hash).await? {
            Cached::Known(identity) if identity.kind == parsed.kind => Ok(identity),
            _ => Err(Rejection::InvalidKey),
        }
    }

    fn note_use(&self, identity: &Identity, now: i64) {
        if identity.should_note_use(now, KEY_USE_INTERVAL_SECS) {
            self.pending_key_uses.insert(identity.key_id, now);
        }
    }

    async fn lookup(&self, hash: KeyHash) -> Result<Cached, Rejection> {
        if let Some(cached) = self.cache.get(&hash) {
            self.metrics.key_cache_hits.inc();
            return Ok(cached);
        }
        self.metrics.key_cache_misses.inc();
        let started = Instant::now();
        let resolved = self.store.resolve_key(hash).await;
        self.metrics.record_store_query(started.elapsed());
        let cached = match resolved {
            Ok(Some((key, principal))) => {
                Cached::Known(Arc::new(authz::resolve_identity(&key, &principal)))
            }
            Ok(None) => Cached::Unknown,
            Err(error) => {
                self.metrics.store_errors.inc();
                tracing::error!(%error, "key lookup failed");
                return Err(Rejection::StoreUnavailable);
            }
        };
        self.cache.insert(hash, cached.clone());
        Ok(cached)
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
}

/// Reads the one credential of a request: `x-api-key` or
/// `Authorization: Bearer`. Two different credentials, a list in one
/// header, or a credential next to an `_` spelling of `x-api-key` are
/// rejected rather than choosing one.
fn credential_text(headers: &HeaderMap) -> Result<&str, Rejection> {
    let api_key = single_value(headers, &API_KEY)?
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
    if key.contains(',') || headers.keys().any(is_credential_alias) {
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
        return Err(if name == API_KEY || name == header::AUTHORIZATION {
            Rejection::MultipleCredentials
        } else {
            Rejection::BadRequest("a header that must appear once appears several times")
        });
    }
    Ok(first)
}

fn sunset_of(config: &Config) -> i64 {
    config
        .legacy_sunset
        .midnight()
        .assume_utc()
        .unix_timestamp()
}
