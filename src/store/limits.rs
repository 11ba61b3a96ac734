//! Records of the limits kept per workspace: monthly usage limits, usage
//! counters and rate-limit overrides.

use std::time::Duration;

use uuid::Uuid;

/// One of the two monthly usage counters of a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageCounter {
    /// Every trace.
    AllTraces,
    /// Traces stored with extended (400-day) retention.
    ExtendedTraces,
}

impl UsageCounter {
    pub const ALL: [UsageCounter; 2] = [UsageCounter::AllTraces, UsageCounter::ExtendedTraces];

    /// Returns the name used in the store and in error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageCounter::AllTraces => "all_traces",
            UsageCounter::ExtendedTraces => "extended_traces",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "all_traces" => Some(UsageCounter::AllTraces),
            "extended_traces" => Some(UsageCounter::ExtendedTraces),
            _ => None,
        }
    }
}

impl std::fmt::Display for UsageCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A usage counter's value, or an amount to add to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub workspace_id: Uuid,
    /// Calendar month (UTC) as `YYYY-MM`.
    pub month: String,
    pub counter: UsageCounter,
    pub value: u64,
}

/// A workspace's monthly usage limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageLimitRecord {
    pub workspace_id: Uuid,
    pub counter: UsageCounter,
    pub value: u64,
}

/// Rate limits that replace the configured defaults for one workspace.
/// They apply on routes that keep the `[limits.rate]` defaults, while a
/// route with its own `rate_limit` keeps that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateOverrideRecord {
    pub workspace_id: Uuid,
    /// Requests per `period` for each key of the workspace; `None` keeps
    /// the default, `Some(0)` means no limit.
    pub per_key: Option<u32>,
    /// Requests per `period` for the whole workspace; `None` keeps the
    /// default, `Some(0)` means no limit.
    pub per_workspace: Option<u32>,
    pub period: Duration,
}

/// Every limit stored per workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredLimits {
    pub usage: Vec<UsageLimitRecord>,
    pub rate: Vec<RateOverrideRecord>,
}

/// A workspace's usage in one month, with its limits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct WorkspaceUsage {
    pub workspace_id: Uuid,
    /// Calendar month (UTC) as `YYYY-MM`.
    pub month: String,
    pub all_traces: u64,
    pub extended_traces: u64,
    /// `None`: no limit.
    pub all_traces_limit: Option<u64>,
    /// `None`: no limit.
    pub extended_traces_limit: Option<u64>,
}
