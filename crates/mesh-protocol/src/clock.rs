//! One notion of "now" for everything that compares against time: token clock checks,
//! message timestamps, expiry, retention and the lifecycle sweep.
//!
//! Production reads the system clock. Tests use [`ManualClock`] to move days in
//! milliseconds, and the sandbox uses [`ShiftedClock`] so that an application developer can
//! move a local MESH five days on (`POST /admin/clock`) and watch a message expire. Nothing
//! here does I/O beyond reading the system time.

use chrono::{DateTime, TimeDelta, Utc};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// Moves the clock forward by `by`. Returns false for a clock that cannot be moved
    /// (the system clock), so a caller can refuse instead of silently doing nothing.
    fn advance(&self, _by: TimeDelta) -> bool {
        false
    }

    /// Puts a movable clock back to the real time (a sandbox reset).
    fn reset(&self) {}
}

/// The system clock: what a real server uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock plus an offset that only grows until reset. Time keeps running, so
/// everything that times out still does; moving it on is how a sandbox user makes days
/// pass.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_micros: AtomicI64,
}

impl ShiftedClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn offset(&self) -> TimeDelta {
        TimeDelta::microseconds(self.offset_micros.load(Ordering::Relaxed))
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
            .checked_add_signed(self.offset())
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    fn advance(&self, by: TimeDelta) -> bool {
        let micros = by.num_microseconds().unwrap_or(i64::MAX).max(0);
        let _ = self
            .offset_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some(o.saturating_add(micros))
            });
        true
    }

    fn reset(&self) {
        self.offset_micros.store(0, Ordering::Relaxed);
    }
}

/// A clock that stands still until told to move: deterministic tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn advance(&self, by: TimeDelta) -> bool {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = now
            .checked_add_signed(by)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Utc::now();
        let c = ManualClock::new(start);
        assert_eq!(c.now(), start);
        assert!(c.advance(TimeDelta::days(5)));
        assert_eq!(c.now(), start + TimeDelta::days(5));
    }

    #[test]
    fn shifted_clock_runs_ahead_by_its_offset_until_reset() {
        let c = ShiftedClock::new();
        assert!(c.advance(TimeDelta::days(5)));
        let ahead = c.now() - Utc::now();
        assert!(
            ahead > TimeDelta::days(5) - TimeDelta::seconds(5),
            "{ahead}"
        );
        c.reset();
        assert!((c.now() - Utc::now()).abs() < TimeDelta::seconds(5));
    }

    #[test]
    fn system_clock_cannot_be_moved() {
        assert!(!SystemClock.advance(TimeDelta::days(1)));
    }
}
