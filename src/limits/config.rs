//! The `[limits]` section and the limit fields of route rules, in the two
//! steps every part of the configuration takes: serde structs that mirror
//! the file, then validation into runtime settings.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::RateScope;
use crate::config::ConfigError;

/// Default rate-limit period.
pub const DEFAULT_RATE_PERIOD: Duration = Duration::from_secs(60);
/// Default requests per period per API key, on routes without a limit of
/// their own. It follows the reference service's per-key limit for routes
/// other than run ingestion, feedback creation and project deletion.
pub const DEFAULT_PER_KEY: u32 = 2000;
/// Default maximum number of rate-limit buckets kept in memory.
pub const DEFAULT_MAX_BUCKETS: u64 = 100_000;
/// Default number of invalid keys one client address may send per
/// [`DEFAULT_FAILED_AUTH_PERIOD`] before it is blocked.
pub const DEFAULT_MAX_FAILURES: u32 = 30;
/// Default period over which invalid keys are counted.
pub const DEFAULT_FAILED_AUTH_PERIOD: Duration = Duration::from_secs(60);
/// Default time a blocked client address gets 429 before any key lookup.
pub const DEFAULT_BLOCK_FOR: Duration = Duration::from_secs(60);
/// Default maximum number of client addresses tracked by the throttle.
pub const DEFAULT_MAX_ADDRESSES: u64 = 100_000;
/// Default interval between writes of usage counters to the store.
pub const DEFAULT_USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// Default interval between reads of the limits stored per workspace.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The largest accepted rate-limit period.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// `[limits]`: rate limits, the failed-authentication throttle and the
/// monthly usage limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Rate limits for route rules that set none of their own.
    #[serde(default)]
    pub rate: RateSection,
    /// Throttle on client addresses that send invalid API keys.
    #[serde(default)]
    pub failed_auth: FailedAuthSection,
    /// Monthly usage counters.
    #[serde(default)]
    pub usage: UsageSection,
}

/// `[limits.rate]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSection {
    /// Requests per `period` for each API key; 0 for no limit.
    #[serde(default = "default_per_key")]
    pub per_key: Spanned<u32>,
    /// Requests per `period` for each workspace, shared by all its keys;
    /// 0 for no limit.
    #[serde(default = "no_limit")]
    pub per_workspace: Spanned<u32>,
    /// Requests per `period` for each route rule, shared by all callers;
    /// 0 for no limit.
    #[serde(default = "no_limit")]
    pub per_route: Spanned<u32>,
    /// Requests per `period` for each client IP address; 0 for no limit.
    #[serde(default = "no_limit")]
    pub per_client: Spanned<u32>,
    /// The period the counts above refer to, from 1s to 24h.
    #[serde(default = "default_rate_period", with = "humantime_serde")]
    pub period: Duration,
    /// Maximum number of rate-limit buckets (one per key, workspace, route
    /// or address and limit) kept in memory.
    #[serde(default = "default_max_buckets")]
    pub max_buckets: Spanned<u64>,
}

impl Default for RateSection {
    fn default() -> Self {
        Self {
            per_key: default_per_key(),
            per_workspace: no_limit(),
            per_route: no_limit(),
            per_client: no_limit(),
            period: DEFAULT_RATE_PERIOD,
            max_buckets: default_max_buckets(),
        }
    }
}

fn default_per_key() -> Spanned<u32> {
    Spanned::new(0..0, DEFAULT_PER_KEY)
}

fn no_limit() -> Spanned<u32> {
    Spanned::new(0..0, 0)
}

fn default_rate_period() -> Duration {
    DEFAULT_RATE_PERIOD
}

fn default_max_buckets() -> Spanned<u64> {
    Spanned::new(0..0, DEFAULT_MAX_BUCKETS)
}

/// `[limits.failed_auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedAuthSection {
    /// Invalid API keys one client address may send per `period` before it
    /// is blocked; 0 turns the throttle off.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// The period over which invalid keys are counted.
    #[serde(default = "default_failed_auth_period", with = "humantime_serde")]
    pub period: Duration,
    /// How long a blocked address gets 429 on routes that need a key,
    /// before any key lookup.
    #[serde(default = "default_block_for", with = "humantime_serde")]
    pub block_for: Duration,
    /// Maximum number of client addresses tracked.
    #[serde(default = "default_max_addresses")]
    pub max_addresses: Spanned<u64>,
}

impl Default for FailedAuthSection {
    fn default() -> Self {
        Self {
            max_failures: default_max_failures(),
            period: DEFAULT_FAILED_AUTH_PERIOD,
            block_for: DEFAULT_BLOCK_FOR,
            max_addresses: default_max_addresses(),
        }
    }
}

fn default_max_failures() -> u32 {
    DEFAULT_MAX_FAILURES
}

fn default_failed_auth_period() -> Duration {
    DEFAULT_FAILED_AUTH_PERIOD
}

fn default_block_for() -> Duration {
    DEFAULT_BLOCK_FOR
}

fn default_max_addresses() -> Spanned<u64> {
    Spanned::new(0..0, DEFAULT_MAX_ADDRESSES)
}

/// `[limits.usage]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageSection {
    /// Interval between writes of the usage counters to the store. A crash
    /// loses at most the usage counted in the last interval.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Interval between reads of the usage limits and rate-limit overrides
    /// stored per workspace.
    #[serde(default = "default_refresh_interval", with = "humantime_serde")]
    pub refresh_interval: Duration,
}

impl Default for UsageSection {
    fn default() -> Self {
        Self {
            flush_interval: DEFAULT_USAGE_FLUSH_INTERVAL,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
        }
    }
}

fn default_flush_interval() -> Duration {
    DEFAULT_USAGE_FLUSH_INTERVAL
}

fn default_refresh_interval() -> Duration {
    DEFAULT_REFRESH_INTERVAL
}

/// `rate_limit = { ... }` on a route rule: the limits that replace the
/// `[limits.rate]` defaults for requests matching the rule. A field left
/// out keeps the default, counted together with every other route that
/// keeps it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRateSection {
    /// Requests per `period` for each API key on this route; 0 for no limit.
    pub per_key: Option<Spanned<u32>>,
    /// Requests per `period` for each workspace on this route; 0 for no
    /// limit.
    pub per_workspace: Option<Spanned<u32>>,
    /// Requests per `period` on this route from all callers together; 0
    /// for no limit.
    pub per_route: Option<Spanned<u32>>,
    /// Requests per `period` for each client IP address on this route; 0
    /// for no limit.
    pub per_client: Option<Spanned<u32>>,
    /// The period of the counts above; `[limits.rate] period` if absent.
    #[serde(default, with = "humantime_serde")]
    pub period: Option<Duration>,
}

/// A number of requests allowed per period, all of which may arrive at
/// once after an idle period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateQuota {
    pub requests: NonZeroU32,
    pub period: Duration,
}

impl RateQuota {
    /// Returns the quota, or `None` for 0 requests (no limit).
    pub fn new(requests: u32, period: Duration) -> Option<Self> {
        NonZeroU32::new(requests).map(|requests| Self { requests, period })
    }

    /// Returns the equivalent governor quota: a burst of `requests`,
    /// refilled one request every `period / requests`.
    pub(crate) fn to_governor(self) -> governor::Quota {
        let interval = self.period / self.requests.get();
        governor::Quota::with_period(interval.max(Duration::from_nanos(1)))
            .expect("the interval is at least 1 ns")
            .allow_burst(self.requests)
    }
}

/// One quota per [`RateScope`], `None` for no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateQuotas(pub [Option<RateQuota>; RateScope::COUNT]);

impl RateQuotas {
    pub fn get(&self, scope: RateScope) -> Option<RateQuota> {
        self.0[scope as usize]
    }
}

/// The validated `[limits]` section.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Defaults for routes without their own limits.
    pub rate: RateQuotas,
    /// The default period, which route overrides and stored workspace
    /// overrides without their own period use.
    pub rate_period: Duration,
    pub max_buckets: u64,
    /// `None` when the throttle is off.
    pub failed_auth: Option<FailedAuthConfig>,
    pub max_addresses: u64,
    pub usage_flush_interval: Duration,
    pub refresh_interval: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsSection::default()
            .validate("")
            .expect("default limits are valid")
    }
}

/// The validated `[limits.failed_auth]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedAuthConfig {
    pub max_failures: NonZeroU32,
    pub period: Duration,
    pub block_for: Duration,
}

/// The cost of a request on a metered route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageCharge {
    /// Traces counted per request.
    pub cost: u32,
}

/// The validated limit fields of one route rule.
#[derive(Debug, Clone, Default)]
pub struct RouteLimits {
    /// Identifies the rule's own buckets: its position in the file plus 1.
    /// Buckets of the `[limits.rate]` defaults use 0.
    pub group: u32,
    /// Per scope: `None` keeps the default, `Some(None)` turns the limit
    /// off on this route.
    pub rate: [Option<Option<RateQuota>>; RateScope::COUNT],
    /// Set when requests on this route count as traces.
    pub usage: Option<UsageCharge>,
}

impl LimitsSection {
    /// Validates the section; `text` is the file, for line numbers.
    pub(crate) fn validate(self, text: &str) -> Result<LimitsConfig, ConfigError> {
        let rate = &self.rate;
        check_period("limits.rate.period", rate.period)?;
        let mut quotas = RateQuotas::default();
        for (scope, field) in [
            (RateScope::Key, &rate.per_key),
            (RateScope::Workspace, &rate.per_workspace),
            (RateScope::Route, &rate.per_route),
            (RateScope::Client, &rate.per_client),
        ] {
            quotas.0[scope as usize] = RateQuota::new(*field.get_ref(), rate.period);
        }
        if *rate.max_buckets.get_ref() == 0 {
            return Err(
                ConfigError::new("limits.rate.max_buckets", "must be at least 1")
                    .at(text, rate.max_buckets.span()),
            );
        }

        let auth = &self.failed_auth;
        let failed_auth = match NonZeroU32::new(auth.max_failures) {
            None => None,
            Some(max_failures) => {
                check_period("limits.failed_auth.period", auth.period)?;
                check_period("limits.failed_auth.block_for", auth.block_for)?;
                Some(FailedAuthConfig {
                    max_failures,
                    period: auth.period,
                    block_for: auth.block_for,
                })
            }
        };
        if *auth.max_addresses.get_ref() == 0 {
            return Err(
                ConfigError::new("limits.failed_auth.max_addresses", "must be at least 1")
                    .at(text, auth.max_addresses.span()),
            );
        }

        for (field, interval) in [
            ("limits.usage.flush_interval", self.usage.flush_interval),
            ("limits.usage.refresh_interval", self.usage.refresh_interval),
        ] {
            if interval < Duration::from_secs(1) {
                return Err(ConfigError::new(field, "must be at least 1s"));
            }
        }

        Ok(LimitsConfig {
            rate: quotas,
            rate_period: rate.period,
            max_buckets: *rate.max_buckets.get_ref(),
            failed_auth,
            max_addresses: *auth.max_addresses.get_ref(),
            usage_flush_interval: self.usage.flush_interval,
            refresh_interval: self.usage.refresh_interval,
        })
    }
}

/// The limit fields of a `[[routes]]` entry, as read from the file.
#[derive(Debug)]
pub struct RouteLimitFields {
    pub rate_limit: Option<RouteRateSection>,
    pub usage: Option<Spanned<String>>,
    pub usage_cost: Option<Spanned<u32>>,
}

impl RouteLimitFields {
    /// Validates the fields of route `index`. `public` is true for routes
    /// that need no key, which cannot be metered because they have no
    /// workspace.
    pub(crate) fn validate(
        self,
        index: usize,
        public: bool,
        defaults: &LimitsConfig,
        text: &str,
    ) -> Result<RouteLimits, ConfigError> {
        let field = |name: &str| format!("routes[{index}].{name}");
        let mut limits = RouteLimits {
            group: u32::try_from(index + 1).unwrap_or(u32::MAX),
            ..RouteLimits::default()
        };

        if let Some(rate) = self.rate_limit {
            let period = rate.period.unwrap_or(defaults.rate_period);
            check_period(&field("rate_limit.period"), period)?;
            for (scope, value) in [
                (RateScope::Key, rate.per_key),
                (RateScope::Workspace, rate.per_workspace),
                (RateScope::Route, rate.per_route),
                (RateScope::Client, rate.per_client),
            ] {
                if let Some(value) = value {
                    limits.rate[scope as usize] = Some(RateQuota::new(*value.get_ref(), period));
                }
            }
        }

        match (self.usage, self.usage_cost) {
            (None, None) => {}
            (None, Some(cost)) => {
                return Err(ConfigError::new(
                    field("usage_cost"),
                    "is set but usage is not: add usage = \"traces\"",
                )
                .at(text, cost.span()));
            }
            (Some(kind), cost) => {
                if kind.get_ref() != "traces" {
                    return Err(ConfigError::new(
                        field("usage"),
                        format!(
                            "unknown usage kind {:?}: expected \"traces\"",
                            kind.get_ref()
                        ),
                    )
                    .at(text, kind.span()));
                }
                if public {
                    return Err(ConfigError::new(
                        field("usage"),
                        "requires a permission: public routes have no workspace to count against",
                    )
                    .at(text, kind.span()));
                }
                let cost = match cost {
                    None => 1,
                    Some(cost) if *cost.get_ref() == 0 => {
                        return Err(ConfigError::new(field("usage_cost"), "must be at least 1")
                            .at(text, cost.span()));
                    }
                    Some(cost) => *cost.get_ref(),
                };
                limits.usage = Some(UsageCharge { cost });
            }
        }
        Ok(limits)
    }
}

fn check_period(field: &str, period: Duration) -> Result<(), ConfigError> {
    if period < Duration::from_secs(1) || period > MAX_PERIOD {
        return Err(ConfigError::new(field, "must be between 1s and 24h"));
    }
    Ok(())
}
