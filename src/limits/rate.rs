//! Rate-limit buckets: one governor (GCRA) limiter per key, workspace,
//! route or client address and limit, in a bounded cache.
//!
//! The cache is a moka cache of direct limiters, not a governor keyed
//! limiter, for two reasons. A keyed limiter has one quota, but quotas here
//! differ per workspace (stored overrides) and per route. And moka bounds
//! the memory by construction: an entry expires once it has been idle for
//! its quota's period, when its bucket would be full again anyway, so
//! dropping it changes no decision. And the cache never contains more
//! than `max_buckets` entries. Under a flood of distinct keys moka's admission
//! policy keeps the frequently seen buckets and drops the one-off ones,
//! which start from a full bucket if they come back.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::RateLimiter;
use moka::sync::Cache;
use moka::Expiry;
use uuid::Uuid;

use super::clock::Clock;
use super::config::RateQuota;

/// The limits' clock as governor reads it.
#[derive(Debug, Clone)]
pub(crate) struct GovernorClock(pub(crate) Arc<dyn Clock>);

impl governor::clock::Clock for GovernorClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.0.monotonic())
    }
}

pub(crate) type DirectLimiter =
    RateLimiter<NotKeyed, InMemoryState, GovernorClock, NoOpMiddleware<Nanos>>;

/// Whom a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Subject {
    Key(Uuid),
    Workspace(Uuid),
    Route,
    Client(IpAddr),
}

/// A bucket's identity: its subject and the route group whose limit it
/// counts against (0 for the `[limits.rate]` defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct BucketKey {
    pub(crate) group: u32,
    pub(crate) subject: Subject,
}

struct Bucket {
    quota: RateQuota,
    limiter: DirectLimiter,
}

/// A request over a bucket's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Denied {
    pub(crate) quota: RateQuota,
    /// Time until the bucket admits a request again.
    pub(crate) retry_after: Duration,
}

/// Expires a bucket after its quota's period without requests.
struct IdleForPeriod;

impl Expiry<BucketKey, Arc<Bucket>> for IdleForPeriod {
    fn expire_after_create(
        &self,
        _key: &BucketKey,
        bucket: &Arc<Bucket>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(bucket.quota.period)
    }

    fn expire_after_read(
        &self,
        _key: &BucketKey,
        bucket: &Arc<Bucket>,
        _read_at: Instant,
        _remaining: Option<Duration>,
        _last_modified_at: Instant,
    ) -> Option<Duration> {
        Some(bucket.quota.period)
    }

    fn expire_after_update(
        &self,
        _key: &BucketKey,
        bucket: &Arc<Bucket>,
        _updated_at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(bucket.quota.period)
    }
}

/// All rate-limit buckets.
pub(crate) struct RateBuckets {
    buckets: Cache<BucketKey, Arc<Bucket>>,
    clock: GovernorClock,
}

impl RateBuckets {
    pub(crate) fn new(max_buckets: u64, clock: Arc<dyn Clock>) -> Self {
        let buckets = Cache::builder()
            .max_capacity(max_buckets)
            .expire_after(IdleForPeriod)
            .build();
        Self {
            buckets,
            clock: GovernorClock(clock),
        }
    }

    /// Takes one request from the bucket `key` under `quota`.
    pub(crate) fn check(&self, key: BucketKey, quota: RateQuota) -> Result<(), Denied> {
        let mut bucket = match self.buckets.get(&key) {
            Some(bucket) => bucket,
            None => self.buckets.get_with(key, || self.bucket(quota)),
        };
        if bucket.quota != quota {
            // The quota changed (a stored override or the configuration):
            // start a bucket under the new one.
            bucket = self.bucket(quota);
            self.buckets.insert(key, bucket.clone());
        }
        bucket.limiter.check().map_err(|not_until| {
            let now = governor::clock::Clock::now(&self.clock);
            Denied {
                quota,
                retry_after: not_until.wait_time_from(now),
            }
        })
    }

    fn bucket(&self, quota: RateQuota) -> Arc<Bucket> {
        Arc::new(Bucket {
            quota,
            limiter: RateLimiter::direct_with_clock(quota.to_governor(), self.clock.clone()),
        })
    }

    /// Approximate number of buckets held.
    pub(crate) fn len(&self) -> u64 {
        self.buckets.entry_count()
    }

    /// Applies pending evictions now, so that [`RateBuckets::len`] is exact.
    pub(crate) fn run_pending_tasks(&self) {
        self.buckets.run_pending_tasks();
    }
}
