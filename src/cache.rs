//! The key cache: resolved identities by key hash, and brief "no such key"
//! answers.
//!
//! Entries hold identity and key state only, never a decision. A known key
//! lives for `ttl`, an unknown one for `negative_ttl`; both bound how long a
//! change made by another process takes to show here. Changes made through
//! this process invalidate entries at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use crate::config::CacheConfig;
use crate::credential::KeyHash;
use crate::identity::Identity;

/// A cached lookup result.
#[derive(Debug, Clone)]
pub enum Cached {
    Known(Arc<Identity>),
    Unknown,
}

struct PerEntryExpiry {
    ttl: Duration,
    negative_ttl: Duration,
}

impl Expiry<KeyHash, Cached> for PerEntryExpiry {
    fn expire_after_create(
        &self,
        _key: &KeyHash,
        value: &Cached,
        _now: Instant,
    ) -> Option<Duration> {
        Some(match value {
            Cached::Known(_) => self.ttl,
            Cached::Unknown => self.negative_ttl,
        })
    }

    fn expire_after_update(
        &self,
        key: &KeyHash,
        value: &Cached,
        now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, now)
    }
}

/// The cache of resolved keys.
#[derive(Clone)]
pub struct KeyCache {
    entries: Cache<KeyHash, Cached>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl KeyCache {
    pub fn new(config: &CacheConfig) -> Self {
        let entries = Cache::builder()
            .max_capacity(config.capacity)
            .expire_after(PerEntryExpiry {
                ttl: config.ttl,
                negative_ttl: config.negative_ttl,
            })
            .build();
        Self { entries }
    }

    pub fn get(&self, hash: &KeyHash) -> Option<Cached> {
        self.entries.get(hash)
    }

    pub fn insert(&self, hash: KeyHash, value: Cached) {
        self.entries.insert(hash, value);
    }

    /// Drops one key, after a change to it.
    pub fn invalidate(&self, hash: &KeyHash) {
        self.entries.invalidate(hash);
    }

    /// Drops every entry, after a change that may touch many keys (a role
    /// or membership change).
    pub fn invalidate_all(&self) {
        self.entries.invalidate_all();
    }

    /// Number of entries, after applying pending evictions and inserts.
    /// Not for the request path: it does the cache's housekeeping.
    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}
