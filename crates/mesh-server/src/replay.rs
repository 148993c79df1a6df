//! Single-use tokens (API.md 2.3): a token's `(mailbox, nonce, nonce_count)` is accepted once.
//!
//! Clients either send a fresh nonce every time or, like the official client, reuse one
//! nonce with an incrementing count. State is kept per `(mailbox, nonce)`: the highest
//! count seen and a 128-bit window of the counts below it (the IPsec anti-replay scheme),
//! so a long-lived client costs one entry, not one per request. An entry is dropped once
//! it has not been used for longer than the clock window: any token older than that is
//! refused by the clock check anyway.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW_BITS: u64 = 128;

#[derive(Debug)]
struct NonceState {
    max: u64,
    /// Bit i set = count `max - i` was used.
    seen: u128,
    last_used: Instant,
}

#[derive(Debug)]
pub struct ReplayGuard {
    entries: Mutex<HashMap<(String, String), NonceState>>,
    keep_for: Duration,
    last_prune: Mutex<Instant>,
}

impl ReplayGuard {
    pub fn new(keep_for: Duration) -> Self {
        ReplayGuard {
            entries: Mutex::new(HashMap::new()),
            keep_for,
            last_prune: Mutex::new(Instant::now()),
        }
    }

    /// Records a use; false when this exact `(mailbox, nonce, count)` was used before, or
    /// is too far behind the newest count of its nonce to tell.
    pub fn first_use(&self, mailbox: &str, nonce: &str, count: u64) -> bool {
        let now = Instant::now();
        self.maybe_prune(now);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let key = (mailbox.to_string(), nonce.to_string());
        let Some(state) = entries.get_mut(&key) else {
            entries.insert(
                key,
                NonceState {
                    max: count,
                    seen: 1,
                    last_used: now,
                },
            );
            return true;
        };
        state.last_used = now;
        if count > state.max {
            let shift = count - state.max;
            state.seen = if shift >= WINDOW_BITS {
                0
            } else {
                state.seen << shift
            } | 1;
            state.max = count;
            return true;
        }
        let behind = state.max - count;
        if behind >= WINDOW_BITS {
            return false;
        }
        let bit = 1u128 << behind;
        if state.seen & bit != 0 {
            return false;
        }
        state.seen |= bit;
        true
    }

    /// Releases a use recorded by [`Self::first_use`]. Called when the server answered the
    /// request with a retryable failure (5xx, 429): the official client retries those
    /// with the very same token, and that retry must not be taken for a replay.
    pub fn forget(&self, mailbox: &str, nonce: &str, count: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = entries.get_mut(&(mailbox.to_string(), nonce.to_string())) {
            if count <= state.max && state.max - count < WINDOW_BITS {
                state.seen &= !(1u128 << (state.max - count));
            }
        }
    }

    fn maybe_prune(&self, now: Instant) {
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
            if now.duration_since(*last) < Duration::from_secs(60) {
                return;
            }
            *last = now;
        }
        let keep_for = self.keep_for;
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| now.duration_since(s.last_used) <= keep_for);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_count_of_a_nonce_works_once_in_any_order() {
        let g = ReplayGuard::new(Duration::from_secs(60));
        assert!(g.first_use("A", "n", 0));
        assert!(!g.first_use("A", "n", 0));
        assert!(g.first_use("A", "n", 2));
        assert!(g.first_use("A", "n", 1));
        assert!(!g.first_use("A", "n", 1));
        assert!(!g.first_use("A", "n", 2));
        // Another mailbox or nonce is a different token.
        assert!(g.first_use("B", "n", 0));
        assert!(g.first_use("A", "m", 0));
        // Far ahead, then far behind: refused because it cannot be told apart.
        assert!(g.first_use("A", "n", 1000));
        assert!(!g.first_use("A", "n", 3));
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn a_forgotten_use_can_be_retried_once() {
        let g = ReplayGuard::new(Duration::from_secs(60));
        assert!(g.first_use("A", "n", 5));
        g.forget("A", "n", 5);
        assert!(g.first_use("A", "n", 5));
        assert!(!g.first_use("A", "n", 5));
    }
}
