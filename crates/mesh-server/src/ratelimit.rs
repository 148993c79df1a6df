//! Per-mailbox request rate limiting: a token bucket per authenticated mailbox, so one
//! client in a retry storm gets 429 with `Retry-After` while every other mailbox is
//! served at full speed. Only authenticated mailboxes get a bucket, so unauthenticated
//! traffic cannot grow the table.

use crate::config::RateLimit;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

pub struct MailboxRates {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl MailboxRates {
    pub fn new(limit: RateLimit) -> Self {
        let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limit.burst).unwrap_or(per_second);
        MailboxRates {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` when the mailbox may make a request now, else the whole seconds to wait.
    pub fn check(&self, mailbox: &str) -> Result<(), u64> {
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&mailbox.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
        }
    }
}
