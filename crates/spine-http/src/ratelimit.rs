//! A token bucket per key (a MESH mailbox, a front-door app), in memory, for a node that
//! serves alone: one client in a retry storm gets 429 while every other is served at full
//! speed. Nodes that share a store count in the store instead (`spine-store`'s windows),
//! so a limit holds across all of them.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

/// `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

pub struct KeyedRates {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl KeyedRates {
    pub fn new(limit: RateLimit) -> Self {
        let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limit.burst).unwrap_or(per_second);
        KeyedRates {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` when `key` may make a request now, else the whole seconds to wait.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        // Keys are only made for authenticated callers, but a table that only grows is
        // trimmed anyway.
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&key.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
        }
    }
}
