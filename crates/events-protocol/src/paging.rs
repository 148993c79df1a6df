//! The list's page token (`continue_from`, API.md §4.3): opaque to clients, here the
//! creation position and id of the last subscription of the page.
//!
//! **OpenSpine**: pages of [`PAGE_SIZE`] (the NHS does not say).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub const PAGE_SIZE: usize = 100;

/// Where a page ends: the last subscription's creation sequence.
pub fn token(after_seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("s1:{after_seq}"))
}

/// The position a token names; `None` for anything this service did not hand out (E3).
pub fn parse(token: &str) -> Option<i64> {
    if token.len() > 64 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let n: i64 = text.strip_prefix("s1:")?.parse().ok()?;
    (n >= 0).then_some(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_round_trip_and_others_are_refused() {
        assert_eq!(super::parse(&super::token(42)), Some(42));
        for bad in ["", "42", "czE6LTE", "!!", "czE6eA"] {
            assert_eq!(super::parse(bad), None, "{bad}");
        }
    }
}
