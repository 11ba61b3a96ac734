//! Monthly usage counters per workspace.
//!
//! Counting happens in memory, exactly: a request whose cost would take a
//! counter past its limit is rejected and not counted, so the first
//! request over the limit is the first one rejected. Counters reach the
//! store as increments, in batches and on shutdown, and are read back on
//! start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::store::{UsageCounter, UsageRecord};

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    year: i32,
    month: time::Month,
}

impl Month {
    /// Returns the month that contains `unix_time`.
    pub fn containing(unix_time: Duration) -> Self {
        let secs = i64::try_from(unix_time.as_secs()).unwrap_or(i64::MAX);
        let at = OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Self {
            year: at.year(),
            month: at.month(),
        }
    }

    /// Unix seconds at which the month starts.
    pub fn start(self) -> i64 {
        Date::from_calendar_date(self.year, self.month, 1)
            .map(|d| d.midnight().assume_utc().unix_timestamp())
            .unwrap_or(i64::MAX)
    }

    /// Returns the following month.
    pub fn next(self) -> Self {
        match self.month {
            time::Month::December => Self {
                year: self.year + 1,
                month: time::Month::January,
            },
            month => Self {
                year: self.year,
                month: month.next(),
            },
        }
    }

    /// `YYYY-MM`, as the store keys counters.
    pub fn label(self) -> String {
        format!("{:04}-{:02}", self.year, self.month as u8)
    }
}

/// A counter's value, and the part of it the store already holds.
#[derive(Debug, Default)]
struct Counter {
    value: AtomicU64,
    stored: AtomicU64,
}

impl Counter {
    /// Adds `cost` unless the result would exceed `limit`.
    fn reserve(&self, cost: u64, limit: Option<u64>) -> bool {
        self.value
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |value| {
                let next = value.checked_add(cost)?;
                limit.is_none_or(|l| next <= l).then_some(next)
            })
            .is_ok()
    }
}

#[derive(Debug, Default)]
struct MonthCounters {
    all: Counter,
    extended: Counter,
}

impl MonthCounters {
    fn counter(&self, which: UsageCounter) -> &Counter {
        match which {
            UsageCounter::AllTraces => &self.all,
            UsageCounter::ExtendedTraces => &self.extended,
        }
    }
}

/// A workspace's monthly limits; `None` for no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UsageLimits {
    pub(crate) all: Option<u64>,
    pub(crate) extended: Option<u64>,
}

/// A request over a monthly limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverLimit {
    pub(crate) counter: UsageCounter,
    pub(crate) limit: u64,
    /// Unix seconds at which the counter starts again from 0.
    pub(crate) resets_at: i64,
}

/// The counters of every workspace, for the current and recent months.
#[derive(Debug, Default)]
pub(crate) struct UsageMeter {
    counters: DashMap<(Uuid, Month), MonthCounters>,
}

impl UsageMeter {
    /// Counts `cost` traces for `workspace` in `month`, in the extended
    /// counter too when `extended` is set, unless that would exceed a limit.
    pub(crate) fn charge(
        &self,
        workspace: Uuid,
        month: Month,
        cost: u64,
        extended: bool,
        limits: UsageLimits,
    ) -> Result<(), OverLimit> {
        let over = |counter, limit: Option<u64>| OverLimit {
            counter,
            limit: limit.unwrap_or(u64::MAX),
            resets_at: month.next().start(),
        };
        let key = (workspace, month);
        let charge = |counters: &MonthCounters| {
            if !counters.all.reserve(cost, limits.all) {
                return Err(over(UsageCounter::AllTraces, limits.all));
            }
            if extended && !counters.extended.reserve(cost, limits.extended) {
                // NOTE: until this subtraction lands, a concurrent request
                // near the limit can see the all-traces counter `cost` too
                // high and be rejected.
                counters.all.value.fetch_sub(cost, Ordering::AcqRel);
                return Err(over(UsageCounter::ExtendedTraces, limits.extended));
            }
            Ok(())
        };
        match self.counters.get(&key) {
            Some(counters) => charge(&counters),
            None => charge(&self.counters.entry(key).or_default()),
        }
    }

    /// Returns the counter's value in memory.
    pub(crate) fn value(&self, workspace: Uuid, month: Month, which: UsageCounter) -> u64 {
        self.counters
            .get(&(workspace, month))
            .map_or(0, |c| c.counter(which).value.load(Ordering::Acquire))
    }

    /// Adds values read from the store, which the store already holds.
    pub(crate) fn add_stored(&self, month: Month, records: &[UsageRecord]) {
        for record in records {
            let counters = self
                .counters
                .entry((record.workspace_id, month))
                .or_default();
            let counter = counters.counter(record.counter);
            counter.value.fetch_add(record.value, Ordering::AcqRel);
            counter.stored.fetch_add(record.value, Ordering::AcqRel);
        }
    }

    /// Takes the increments the store does not hold yet and marks them
    /// stored. If writing them fails, [`UsageMeter::restore`] puts them
    /// back.
    pub(crate) fn take_increments(&self) -> Vec<(Month, UsageRecord)> {
        let mut increments = Vec::new();
        for entry in self.counters.iter() {
            let (workspace, month) = *entry.key();
            for which in UsageCounter::ALL {
                let counter = entry.value().counter(which);
                let value = counter.value.load(Ordering::Acquire);
                let stored = counter.stored.swap(value, Ordering::AcqRel);
                if value > stored {
                    increments.push((
                        month,
                        UsageRecord {
                            workspace_id: workspace,
                            month: month.label(),
                            counter: which,
                            value: value - stored,
                        },
                    ));
                }
            }
        }
        increments
    }

    /// Marks increments taken by [`UsageMeter::take_increments`] as not
    /// stored, after a failed write.
    pub(crate) fn restore(&self, increments: &[(Month, UsageRecord)]) {
        for (month, record) in increments {
            if let Some(counters) = self.counters.get(&(record.workspace_id, *month)) {
                let counter = counters.counter(record.counter);
                counter.stored.fetch_sub(record.value, Ordering::AcqRel);
            }
        }
    }

    /// Drops the counters of months before `current` that are fully
    /// written to the store.
    pub(crate) fn drop_stored_before(&self, current: Month) {
        self.counters.retain(|(_, month), counters| {
            *month >= current
                || UsageCounter::ALL.iter().any(|&which| {
                    let counter = counters.counter(which);
                    counter.value.load(Ordering::Acquire) != counter.stored.load(Ordering::Acquire)
                })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Duration {
        let at = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .expect("valid timestamp");
        Duration::from_secs(at.unix_timestamp() as u64)
    }

    #[test]
    fn month_bounds_follow_utc_calendar() {
        let december = Month::containing(at("2024-12-31T23:59:59Z"));
        assert_eq!(december.label(), "2024-12");
        assert_eq!(december.next().label(), "2025-01");
        assert_eq!(
            december.next().start(),
            at("2025-01-01T00:00:00Z").as_secs() as i64
        );
        let february = Month::containing(at("2024-02-29T12:00:00Z"));
        assert_eq!(
            february.next().start(),
            at("2024-03-01T00:00:00Z").as_secs() as i64
        );
    }

    #[test]
    fn charge_rejects_first_request_over_limit() {
        let meter = UsageMeter::default();
        let workspace = Uuid::new_v4();
        let month = Month::containing(at("2025-03-10T00:00:00Z"));
        let limits = UsageLimits {
            all: Some(5),
            extended: None,
        };
        for _ in 0..2 {
            assert!(meter.charge(workspace, month, 2, false, limits).is_ok());
        }
        let over = meter
            .charge(workspace, month, 2, false, limits)
            .expect_err("4 + 2 exceeds 5");
        assert_eq!(over.counter, UsageCounter::AllTraces);
        assert_eq!(over.limit, 5);
        assert!(meter.charge(workspace, month, 1, false, limits).is_ok());
        assert_eq!(meter.value(workspace, month, UsageCounter::AllTraces), 5);
    }

    #[test]
    fn extended_rejection_leaves_all_traces_unchanged() {
        let meter = UsageMeter::default();
        let workspace = Uuid::new_v4();
        let month = Month::containing(at("2025-03-10T00:00:00Z"));
        let limits = UsageLimits {
            all: None,
            extended: Some(1),
        };
        assert!(meter.charge(workspace, month, 1, true, limits).is_ok());
        let over = meter.charge(workspace, month, 1, true, limits).unwrap_err();
        assert_eq!(over.counter, UsageCounter::ExtendedTraces);
        assert_eq!(meter.value(workspace, month, UsageCounter::AllTraces), 1);
        assert!(meter.charge(workspace, month, 1, false, limits).is_ok());
    }

    #[test]
    fn increments_are_taken_once_and_restored_on_failure() {
        let meter = UsageMeter::default();
        let workspace = Uuid::new_v4();
        let month = Month::containing(at("2025-03-10T00:00:00Z"));
        meter.add_stored(
            month,
            &[UsageRecord {
                workspace_id: workspace,
                month: month.label(),
                counter: UsageCounter::AllTraces,
                value: 10,
            }],
        );
        meter
            .charge(workspace, month, 3, false, UsageLimits::default())
            .unwrap();
        let taken = meter.take_increments();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].1.value, 3);
        assert!(meter.take_increments().is_empty());
        meter.restore(&taken);
        assert_eq!(meter.take_increments()[0].1.value, 3);
    }
}
