//! Limits on requests: rate limits (governor GCRA buckets per API key,
//! workspace, route rule and client address), a throttle on client
//! addresses that send invalid keys, and monthly usage limits per
//! workspace.
//!
//! The gateway calls [`Limits::check_auth_throttle`] before a key lookup,
//! [`Limits::note_auth_result`] after it, and [`Limits::admit`] once the
//! caller is known. All three work in memory. The store keeps usage
//! limits, usage counters and per-workspace rate overrides; a background
//! task ([`Limits::maintain`]) rereads the limits and writes the counters.
//!
//! A crash loses the usage counted since the last write, at most one
//! `limits.usage.flush_interval` (10 s by default) of it: after a restart
//! the affected workspaces can go over their limits by that much.

pub mod clock;
pub mod config;
mod rate;
mod throttle;
pub mod usage;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use uuid::Uuid;

use crate::authn::Access;
use crate::error::Rejection;
use crate::identity::{RetentionTier, WorkspaceGrant};
use crate::routing::Rule;
use crate::store::{Store, StoredLimits, UsageCounter, WorkspaceUsage};

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{LimitsConfig, RateQuota, RouteLimits};
use rate::{BucketKey, RateBuckets, Subject};
use throttle::AuthThrottle;
use usage::{Month, UsageLimits, UsageMeter};

/// The subject whose requests a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateScope {
    /// Requests with one API key.
    Key = 0,
    /// Requests in one workspace, with any of its keys.
    Workspace = 1,
    /// Requests on one route rule, from all callers.
    Route = 2,
    /// Requests from one client IP address.
    Client = 3,
}

impl RateScope {
    pub const COUNT: usize = 4;
    pub const ALL: [RateScope; RateScope::COUNT] = [
        RateScope::Route,
        RateScope::Client,
        RateScope::Workspace,
        RateScope::Key,
    ];

    /// Returns the scope's name, as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RateScope::Key => "key",
            RateScope::Workspace => "workspace",
            RateScope::Route => "route",
            RateScope::Client => "client",
        }
    }

    /// Returns the subject in words, for error details.
    fn subject(self) -> &'static str {
        match self {
            RateScope::Key => "this API key",
            RateScope::Workspace => "this workspace",
            RateScope::Route => "this route",
            RateScope::Client => "this client address",
        }
    }
}

impl std::fmt::Display for RateScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.subject())
    }
}

/// Counts of limit decisions, for metrics. Every value only grows.
#[derive(Debug, Default)]
pub struct LimitCounters {
    rate_limited: [AtomicU64; RateScope::COUNT],
    auth_failures: AtomicU64,
    addresses_blocked: AtomicU64,
    throttled_requests: AtomicU64,
    usage_limit_exceeded: [AtomicU64; 2],
    usage_write_failures: AtomicU64,
}

impl LimitCounters {
    /// Requests rejected by a rate limit of `scope`.
    pub fn rate_limited(&self, scope: RateScope) -> u64 {
        self.rate_limited[scope as usize].load(Ordering::Relaxed)
    }

    /// Invalid API keys counted by the failed-authentication throttle.
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.load(Ordering::Relaxed)
    }

    /// Times a client address was blocked for sending invalid keys.
    pub fn addresses_blocked(&self) -> u64 {
        self.addresses_blocked.load(Ordering::Relaxed)
    }

    /// Requests rejected because their client address was blocked.
    pub fn throttled_requests(&self) -> u64 {
        self.throttled_requests.load(Ordering::Relaxed)
    }

    /// Requests rejected by a monthly usage limit on `counter`.
    pub fn usage_limit_exceeded(&self, counter: UsageCounter) -> u64 {
        self.usage_limit_exceeded[counter as usize].load(Ordering::Relaxed)
    }

    /// Failed writes of usage counters to the store.
    pub fn usage_write_failures(&self) -> u64 {
        self.usage_write_failures.load(Ordering::Relaxed)
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The authenticated caller of a request, as the limits see it.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub key_id: Uuid,
    pub grant: &'a WorkspaceGrant,
}

impl<'a> From<&'a Access> for Caller<'a> {
    fn from(access: &'a Access) -> Self {
        Self {
            key_id: access.identity.key_id,
            grant: access.grant(),
        }
    }
}

/// A workspace's stored rate overrides, per scope: `None` keeps the
/// configured default, `Some(None)` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct WorkspaceRates {
    per_key: Option<Option<RateQuota>>,
    per_workspace: Option<Option<RateQuota>>,
}

/// The limits' state: buckets, throttle, usage counters and the limits
/// read from the store.
pub struct Limits {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    rate: RateBuckets,
    throttle: AuthThrottle,
    usage: UsageMeter,
    usage_limits: DashMap<Uuid, UsageLimits>,
    rate_overrides: DashMap<Uuid, WorkspaceRates>,
    /// Set while `rate_overrides` has entries, so that requests skip the
    /// map lookup when no workspace has an override.
    has_rate_overrides: AtomicBool,
    /// Set once the current month's counters were read from the store.
    usage_loaded: AtomicBool,
    counters: LimitCounters,
    /// Serializes writes of usage counters.
    flush_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("rate_buckets", &self.rate.len())
            .field("throttled_addresses", &self.throttle.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// Creates empty limits. `config` sets the capacities, which take
    /// effect only here; its other settings are passed to each call so
    /// that a reloaded configuration applies at once.
    pub fn new(config: &LimitsConfig, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            rate: RateBuckets::new(config.max_buckets, clock.clone()),
            throttle: AuthThrottle::new(config.max_addresses, clock.clone()),
            usage: UsageMeter::default(),
            usage_limits: DashMap::new(),
            rate_overrides: DashMap::new(),
            has_rate_overrides: AtomicBool::new(false),
            usage_loaded: AtomicBool::new(false),
            counters: LimitCounters::default(),
            flush_lock: tokio::sync::Mutex::new(()),
            store,
            clock,
        }
    }

    pub fn counters(&self) -> &LimitCounters {
        &self.counters
    }

    /// Approximate number of rate-limit buckets in memory.
    pub fn rate_buckets(&self) -> u64 {
        self.rate.len()
    }

    /// Approximate number of client addresses the throttle tracks.
    pub fn throttled_addresses(&self) -> u64 {
        self.throttle.len()
    }

    /// Applies pending cache evictions, so that [`Limits::rate_buckets`] is
    /// exact.
    pub fn run_pending_tasks(&self) {
        self.rate.run_pending_tasks();
    }

    /// Rejects a request that needs a key from a client address blocked
    /// for sending invalid keys.
    pub fn check_auth_throttle(
        &self,
        config: &LimitsConfig,
        client: IpAddr,
    ) -> Result<(), Rejection> {
        if config.failed_auth.is_none() {
            return Ok(());
        }
        match self.throttle.blocked_for(client) {
            None => Ok(()),
            Some(rest) => {
                bump(&self.counters.throttled_requests);
                Err(Rejection::AuthThrottled {
                    retry_after_secs: whole_seconds(rest),
                })
            }
        }
    }

    /// Counts an invalid key from `client` and passes `result` on.
    pub fn note_auth_result(
        &self,
        config: &LimitsConfig,
        client: IpAddr,
        result: Result<Access, Rejection>,
    ) -> Result<Access, Rejection> {
        // Only unknown or malformed keys count: guessing produces those,
        // while an expired or revoked key is a real key in a client's
        // configuration.
        if let (Err(Rejection::InvalidKey), Some(settings)) = (&result, &config.failed_auth) {
            bump(&self.counters.auth_failures);
            if self.throttle.record_failure(settings, client) {
                bump(&self.counters.addresses_blocked);
                tracing::info!(
                    client.addr = %client,
                    block_for = ?settings.block_for,
                    "client address blocked after repeated invalid API keys"
                );
            }
        }
        result
    }

    /// Applies the rate limits and the usage limit of `rule` to a request.
    /// Rate limits come first, so a rate-limited request costs no usage.
    pub fn admit(
        &self,
        config: &LimitsConfig,
        rule: &Rule,
        caller: Option<Caller<'_>>,
        client: IpAddr,
    ) -> Result<(), Rejection> {
        let route = &rule.limits;
        let grant = caller.map(|c| c.grant);
        let stored = match grant {
            Some(grant) if self.has_rate_overrides.load(Ordering::Relaxed) => self
                .rate_overrides
                .get(&grant.workspace_id)
                .map(|rates| *rates),
            _ => None,
        };
        for scope in RateScope::ALL {
            let (quota, group) = match route.rate[scope as usize] {
                Some(quota) => (quota, route.group),
                None => {
                    let stored = stored.and_then(|rates| match scope {
                        RateScope::Key => rates.per_key,
                        RateScope::Workspace => rates.per_workspace,
                        _ => None,
                    });
                    (stored.unwrap_or(config.rate.get(scope)), 0)
                }
            };
            let Some(quota) = quota else {
                continue;
            };
            let subject = match scope {
                RateScope::Key => match caller {
                    Some(caller) => Subject::Key(caller.key_id),
                    None => continue,
                },
                RateScope::Workspace => match grant {
                    Some(grant) => Subject::Workspace(grant.workspace_id),
                    None => continue,
                },
                RateScope::Route => Subject::Route,
                RateScope::Client => Subject::Client(client),
            };
            // A route's total always counts per rule, never across rules.
            let group = if scope == RateScope::Route {
                route.group
            } else {
                group
            };
            if let Err(denied) = self.rate.check(BucketKey { group, subject }, quota) {
                bump(&self.counters.rate_limited[scope as usize]);
                return Err(Rejection::RateLimited {
                    scope,
                    limit: denied.quota.requests.get(),
                    period_secs: denied.quota.period.as_secs(),
                    retry_after_secs: whole_seconds(denied.retry_after),
                });
            }
        }

        if let (Some(charge), Some(grant)) = (route.usage, grant) {
            let now = self.clock.unix_time();
            let month = Month::containing(now);
            let limits = self
                .usage_limits
                .get(&grant.workspace_id)
                .map(|l| *l)
                .unwrap_or_default();
            let extended = grant.retention == RetentionTier::Extended;
            let charged = self.usage.charge(
                grant.workspace_id,
                month,
                u64::from(charge.cost),
                extended,
                limits,
            );
            if let Err(over) = charged {
                bump(&self.counters.usage_limit_exceeded[over.counter as usize]);
                let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
                return Err(Rejection::UsageLimitExceeded {
                    limit: over.counter,
                    value: over.limit,
                    resets_at: over.resets_at,
                    retry_after_secs: u64::try_from(over.resets_at - now_secs).unwrap_or(0).max(1),
                });
            }
        }
        Ok(())
    }

    /// Reads the limits and this month's usage counters from the store.
    /// Called once before serving. A failure is logged, and
    /// [`Limits::maintain`] retries the usage counters.
    pub async fn load(&self) {
        self.refresh().await;
        self.load_usage().await;
    }

    async fn load_usage(&self) {
        let month = Month::containing(self.clock.unix_time());
        match self.store.load_usage(month.label()).await {
            Ok(records) => {
                self.usage.add_stored(month, &records);
                self.usage_loaded.store(true, Ordering::Release);
                let count = records.len();
                tracing::info!(month = %month.label(), counters = count, "usage counters loaded");
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    "failed to read usage counters, so counting starts from zero until a retry succeeds"
                );
            }
        }
    }

    /// Rereads the usage limits and rate overrides stored per workspace.
    /// The admin API calls this after changing them, so that they apply at
    /// once instead of at the next periodic read.
    pub async fn refresh(&self) {
        match self.store.load_limits().await {
            Ok(stored) => self.apply_stored(&stored),
            Err(error) => {
                tracing::warn!(%error, "failed to read stored limits; keeping the previous ones")
            }
        }
    }

    fn apply_stored(&self, stored: &StoredLimits) {
        let mut usage: std::collections::HashMap<Uuid, UsageLimits> = Default::default();
        for record in &stored.usage {
            let limits = usage.entry(record.workspace_id).or_default();
            match record.counter {
                UsageCounter::AllTraces => limits.all = Some(record.value),
                UsageCounter::ExtendedTraces => limits.extended = Some(record.value),
            }
        }
        self.usage_limits.retain(|id, _| usage.contains_key(id));
        for (id, limits) in usage {
            self.usage_limits.insert(id, limits);
        }

        let rates: std::collections::HashMap<Uuid, WorkspaceRates> = stored
            .rate
            .iter()
            .map(|record| {
                let quota = |requests: Option<u32>| {
                    requests.map(|requests| RateQuota::new(requests, record.period))
                };
                let rates = WorkspaceRates {
                    per_key: quota(record.per_key),
                    per_workspace: quota(record.per_workspace),
                };
                (record.workspace_id, rates)
            })
            .collect();
        self.rate_overrides.retain(|id, _| rates.contains_key(id));
        self.has_rate_overrides
            .store(!rates.is_empty(), Ordering::Relaxed);
        for (id, rates) in rates {
            self.rate_overrides.insert(id, rates);
        }
    }

    /// Writes the usage counted since the last write to the store. On
    /// failure the increments stay pending for the next call.
    pub async fn flush_usage(&self) {
        let _serialized = self.flush_lock.lock().await;
        let increments = self.usage.take_increments();
        if !increments.is_empty() {
            let records = increments.iter().map(|(_, r)| r.clone()).collect();
            if let Err(error) = self.store.add_usage(records).await {
                bump(&self.counters.usage_write_failures);
                tracing::error!(
                    %error,
                    counters = increments.len(),
                    "failed to write usage counters, retrying at the next flush"
                );
                self.usage.restore(&increments);
                return;
            }
        }
        let month = Month::containing(self.clock.unix_time());
        self.usage.drop_stored_before(month);
    }

    /// Writes usage counters every `flush_interval` and rereads stored
    /// limits every `refresh_interval`, until `stop` completes. The caller
    /// then calls [`Limits::flush_usage`] once more.
    pub async fn maintain(
        &self,
        config: &LimitsConfig,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut flush = tokio::time::interval(config.usage_flush_interval);
        let mut refresh = tokio::time::interval(config.refresh_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Both intervals tick at once on the first poll, and `load` just ran.
        flush.tick().await;
        refresh.tick().await;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = flush.tick() => self.flush_usage().await,
                _ = refresh.tick() => {
                    self.refresh().await;
                    if !self.usage_loaded.load(Ordering::Acquire) {
                        self.load_usage().await;
                    }
                }
                () = &mut stop => return,
            }
        }
    }

    /// Returns a workspace's usage in the current month as counted in
    /// memory, with its limits. This is the live count; the store lags it by up to one
    /// flush interval.
    pub fn current_usage(&self, workspace: Uuid) -> WorkspaceUsage {
        let month = Month::containing(self.clock.unix_time());
        let limits = self
            .usage_limits
            .get(&workspace)
            .map(|l| *l)
            .unwrap_or_default();
        WorkspaceUsage {
            workspace_id: workspace,
            month: month.label(),
            all_traces: self.usage.value(workspace, month, UsageCounter::AllTraces),
            extended_traces: self
                .usage
                .value(workspace, month, UsageCounter::ExtendedTraces),
            all_traces_limit: limits.all,
            extended_traces_limit: limits.extended,
        }
    }
}

/// Rounds up to whole seconds, at least 1, because `Retry-After` takes
/// whole seconds.
fn whole_seconds(duration: Duration) -> u64 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    secs.max(1)
}
