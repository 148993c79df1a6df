//! Message ids in the real service's format (API.md 5.1, 11 #12):
//! `yyyyMMddHHmmssffffff_XXXXXX`. Randomness is passed in so this stays pure.

use chrono::{DateTime, Utc};

/// Builds an id from the creation time and three random bytes.
pub fn message_id(now: DateTime<Utc>, random: [u8; 3]) -> String {
    format!("{}_{}", now.format("%Y%m%d%H%M%S%6f"), hex_upper(&random))
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// True when a path value can be a message id: ids are matched upper-cased, and anything
/// longer or with other characters cannot exist, so it is refused before any lookup.
pub fn plausible(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_look_like_the_real_service() {
        let t = Utc.with_ymd_and_hms(2020, 5, 29, 15, 53, 57).unwrap()
            + chrono::TimeDelta::microseconds(895317);
        assert_eq!(
            message_id(t, [0x35, 0x73, 0xf8]),
            "20200529155357895317_3573F8"
        );
        assert!(plausible("20200529155357895317_3573F8"));
        assert!(!plausible("../etc/passwd"));
    }
}
