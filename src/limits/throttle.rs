//! The failed-authentication throttle: a client address that sends too many
//! invalid API keys gets 429 for a while, before any key lookup, which
//! blunts key guessing and spares the store.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::RateLimiter;
use moka::sync::Cache;
use moka::Expiry;

use super::clock::Clock;
use super::config::{FailedAuthConfig, RateQuota};
use super::rate::{DirectLimiter, GovernorClock};

struct Address {
    /// Failures allowed: `max_failures` at once, refilled over `period`.
    failures: DirectLimiter,
    /// How long an entry may stay idle: as long as a block or a failure
    /// count can matter.
    idle: Duration,
    /// Monotonic nanoseconds until which the address is blocked; 0 if it
    /// never was.
    blocked_until: AtomicU64,
    block_for: Duration,
}

struct IdleExpiry;

impl Expiry<IpAddr, Arc<Address>> for IdleExpiry {
    fn expire_after_create(
        &self,
        _key: &IpAddr,
        address: &Arc<Address>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(address.idle)
    }

    fn expire_after_read(
        &self,
        _key: &IpAddr,
        address: &Arc<Address>,
        _read_at: Instant,
        _remaining: Option<Duration>,
        _last_modified_at: Instant,
    ) -> Option<Duration> {
        Some(address.idle)
    }
}

/// Invalid-key counts and blocks per client address.
pub(crate) struct AuthThrottle {
    addresses: Cache<IpAddr, Arc<Address>>,
    clock: Arc<dyn Clock>,
}

impl AuthThrottle {
    pub(crate) fn new(max_addresses: u64, clock: Arc<dyn Clock>) -> Self {
        let addresses = Cache::builder()
            .max_capacity(max_addresses)
            .expire_after(IdleExpiry)
            .build();
        Self { addresses, clock }
    }

    /// Returns the rest of the block if `client` is blocked.
    pub(crate) fn blocked_for(&self, client: IpAddr) -> Option<Duration> {
        let address = self.addresses.get(&client)?;
        let until = address.blocked_until.load(Ordering::Acquire);
        let now = nanos(self.clock.monotonic());
        (now < until).then(|| Duration::from_nanos(until - now))
    }

    /// Counts an invalid key from `client`, and blocks the address when it
    /// runs out of allowed failures. Returns true if this failure blocked it.
    pub(crate) fn record_failure(&self, settings: &FailedAuthConfig, client: IpAddr) -> bool {
        let address = self.addresses.get_with(client, || {
            let quota = RateQuota {
                requests: settings.max_failures,
                period: settings.period,
            };
            Arc::new(Address {
                failures: RateLimiter::direct_with_clock(
                    quota.to_governor(),
                    GovernorClock(self.clock.clone()),
                ),
                idle: settings.period.max(settings.block_for),
                blocked_until: AtomicU64::new(0),
                block_for: settings.block_for,
            })
        });
        if address.failures.check().is_ok() {
            return false;
        }
        let now = self.clock.monotonic();
        let until = nanos(now + address.block_for);
        let previous = address.blocked_until.fetch_max(until, Ordering::AcqRel);
        previous <= nanos(now)
    }

    /// Approximate number of addresses tracked.
    pub(crate) fn len(&self) -> u64 {
        self.addresses.entry_count()
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
