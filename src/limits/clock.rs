//! The time source of the limits, replaceable so that tests can move time
//! forward (across a rate-limit period or a month boundary) without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A time source with two readings: wall-clock time, which decides the
/// calendar month of usage counters, and monotonic time, which drives the
/// rate limiters and is unaffected by wall-clock steps.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Time since the Unix epoch (UTC).
    fn unix_time(&self) -> Duration;

    /// Time since an arbitrary fixed start. It never decreases.
    fn monotonic(&self) -> Duration;
}

/// The system clock.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn unix_time(&self) -> Duration {
        // A clock set before 1970 reads as the epoch.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }

    fn monotonic(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    /// Unix time at creation, in nanoseconds.
    start_unix_nanos: u64,
    /// Time advanced since creation, in nanoseconds.
    elapsed_nanos: AtomicU64,
}

impl ManualClock {
    /// Starts the clock at `unix_time` since the epoch.
    pub fn starting_at(unix_time: Duration) -> Self {
        Self {
            start_unix_nanos: duration_nanos(unix_time),
            elapsed_nanos: AtomicU64::new(0),
        }
    }

    /// Moves both readings forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.elapsed_nanos
            .fetch_add(duration_nanos(by), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn unix_time(&self) -> Duration {
        Duration::from_nanos(self.start_unix_nanos + self.elapsed_nanos.load(Ordering::SeqCst))
    }

    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.elapsed_nanos.load(Ordering::SeqCst))
    }
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
