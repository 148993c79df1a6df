//! The `NHSMESH` authorisation token (API.md 2.1–2.3): parsing, signing, verification.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A parsed `Authorization: NHSMESH mailbox:nonce:count:timestamp:hmac` value.
///
/// Fields stay strings: SBX accepts any nonce and (when the window check is off) any
/// timestamp, and the HMAC is computed over exactly the bytes the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthToken {
    pub mailbox_id: String,
    pub nonce: String,
    pub nonce_count: String,
    pub timestamp: String,
    pub hmac: String,
}

/// Why a token was refused before the password was even looked at. The order of checks is
/// the sandbox's (API.md 2.3), because clients see the resulting messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("Error reading from Authorization header")]
    Missing,
    #[error("Mailbox id does not match token")]
    MailboxMismatch,
    #[error("Error reading from Authorization header")]
    Malformed,
}

impl AuthToken {
    /// Parses a header value for a request to `path_mailbox` (already upper-cased).
    pub fn parse(header: Option<&str>, path_mailbox: &str) -> Result<Self, TokenError> {
        let value = header.map(str::trim).unwrap_or_default();
        if value.is_empty() {
            return Err(TokenError::Missing);
        }
        // A value with no scheme is accepted too (SBX); the scheme check is case-insensitive.
        let rest = match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("NHSMESH") => value.get(8..).unwrap_or(""),
            _ => value,
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let part = |i: usize| parts.get(i).copied().unwrap_or("").to_string();
        let token = AuthToken {
            mailbox_id: part(0),
            nonce: part(1),
            nonce_count: part(2),
            timestamp: part(3),
            hmac: part(4),
        };
        // The mailbox check comes before the structural checks, as in SBX.
        if token.mailbox_id != path_mailbox {
            return Err(TokenError::MailboxMismatch);
        }
        let count_ok =
            !token.nonce_count.is_empty() && token.nonce_count.bytes().all(|b| b.is_ascii_digit());
        if parts.len() != 5 || !count_ok || token.mailbox_id.contains(' ') {
            return Err(TokenError::Malformed);
        }
        Ok(token)
    }

    /// Builds a fresh token for `mailbox_id` as a client would (API.md 2.2).
    pub fn sign(
        shared_key: &str,
        mailbox_id: &str,
        password: &str,
        nonce: &str,
        nonce_count: u64,
        timestamp: &str,
    ) -> Self {
        let count = nonce_count.to_string();
        let hmac = hex::encode(compute(
            shared_key, mailbox_id, nonce, &count, password, timestamp,
        ));
        AuthToken {
            mailbox_id: mailbox_id.to_string(),
            nonce: nonce.to_string(),
            nonce_count: count,
            timestamp: timestamp.to_string(),
            hmac,
        }
    }

    /// The header value, `NHSMESH …`.
    pub fn header_value(&self) -> String {
        format!(
            "NHSMESH {}:{}:{}:{}:{}",
            self.mailbox_id, self.nonce, self.nonce_count, self.timestamp, self.hmac
        )
    }

    /// True when the token's HMAC matches the shared key and the mailbox password. The
    /// comparison is constant-time (`Mac::verify_slice`), so a caller cannot learn a valid
    /// HMAC byte by byte from response times.
    pub fn verify(&self, shared_key: &str, password: &str) -> bool {
        let Ok(claimed) = hex::decode(self.hmac.to_ascii_lowercase()) else {
            return false;
        };
        let mut mac = keyed(shared_key);
        feed(
            &mut mac,
            &self.mailbox_id,
            &self.nonce,
            &self.nonce_count,
            password,
            &self.timestamp,
        );
        mac.verify_slice(&claimed).is_ok()
    }

    /// The token's time, when it is in the `yyyyMMddHHmm` UTC form clients must use.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        if self.timestamp.len() != 12 || !self.timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        NaiveDateTime::parse_from_str(&format!("{}00", self.timestamp), "%Y%m%d%H%M%S")
            .ok()
            .map(|t| t.and_utc())
    }

    /// True when the token's timestamp is within `window` of `now` either side (API.md 2.3:
    /// the real service allows two hours). A malformed timestamp is never within it.
    pub fn within_window(&self, now: DateTime<Utc>, window: TimeDelta) -> bool {
        let allowed = allowance(window);
        self.time().is_some_and(|t| (now - t).abs() <= allowed)
    }

    /// The last moment [`AuthToken::within_window`] accepts this token: its time plus the
    /// window plus its minute. A replay record must live at least this long, or a token
    /// replayed in its last minute would be accepted again. `None` for a malformed time.
    pub fn accepted_until(&self, window: TimeDelta) -> Option<DateTime<Utc>> {
        self.time().map(|t| {
            t.checked_add_signed(allowance(window))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        })
    }

    /// Format a time as a token timestamp.
    pub fn timestamp_for(now: DateTime<Utc>) -> String {
        now.format("%Y%m%d%H%M").to_string()
    }
}

/// The window widened by the token's own minute (its timestamp has minute precision).
/// The window comes from configuration and may be as large as `TimeDelta` allows, so
/// the sum saturates rather than overflows (found by fuzzing).
fn allowance(window: TimeDelta) -> TimeDelta {
    window
        .checked_add(&TimeDelta::minutes(1))
        .unwrap_or(TimeDelta::MAX)
}

fn keyed(shared_key: &str) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    #[allow(clippy::expect_used)]
    HmacSha256::new_from_slice(shared_key.as_bytes()).expect("HMAC takes any key length")
}

fn feed(mac: &mut HmacSha256, mailbox: &str, nonce: &str, count: &str, pw: &str, ts: &str) {
    for (i, field) in [mailbox, nonce, count, pw, ts].iter().enumerate() {
        if i > 0 {
            mac.update(b":");
        }
        mac.update(field.as_bytes());
    }
}

fn compute(key: &str, mailbox: &str, nonce: &str, count: &str, pw: &str, ts: &str) -> Vec<u8> {
    let mut mac = keyed(key);
    feed(&mut mac, mailbox, nonce, count, pw, ts);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const VECTORS: [(&str, &str, &str, u64, &str, &str, &str); 3] = [
        (
            "TestKey",
            "X26ABC1",
            "3f1c1e4e-4a4c-4f53-9c1e-2c5b6f0a9d11",
            0,
            "password",
            "202401011200",
            "725c74867590c5507403a43be5356ea22d2a73c4ec99f1063bfd2ef285cac254",
        ),
        (
            "TestKey",
            "X26ABC2",
            "3f1c1e4e-4a4c-4f53-9c1e-2c5b6f0a9d11",
            1,
            "password",
            "202401011200",
            "bfaec715c90c69e4fddc1d3b70b36b75920f2d60cd59bb86761854eef9ef7db1",
        ),
        (
            "BackBone",
            "ALICE",
            "a1b2c3",
            7,
            "password",
            "202312312359",
            "53e3a637921403dcd84cef9777442d76632563a59ffc273760adbba602418992",
        ),
    ];

    #[test]
    fn signing_matches_the_api_reference_vectors() {
        for (key, mb, nonce, count, pw, ts, want) in VECTORS {
            let t = AuthToken::sign(key, mb, pw, nonce, count, ts);
            assert_eq!(t.hmac, want);
            assert!(t.verify(key, pw));
            assert!(!t.verify(key, "wrong"));
            assert!(!t.verify("OtherKey", pw));
        }
    }

    #[test]
    fn header_round_trips_and_upper_case_hmac_is_accepted() {
        let (key, mb, nonce, count, pw, ts, _) = VECTORS[0];
        let t = AuthToken::sign(key, mb, pw, nonce, count, ts);
        let header = t.header_value();
        let parsed = AuthToken::parse(Some(&header), "X26ABC1").unwrap();
        assert_eq!(parsed, t);
        let upper = header.replace(&t.hmac, &t.hmac.to_uppercase());
        assert!(AuthToken::parse(Some(&upper), "X26ABC1")
            .unwrap()
            .verify(key, pw));
    }

    #[test]
    fn refusals_follow_the_sandbox_order() {
        assert_eq!(AuthToken::parse(None, "A"), Err(TokenError::Missing));
        assert_eq!(AuthToken::parse(Some("  "), "A"), Err(TokenError::Missing));
        assert_eq!(
            AuthToken::parse(Some("Bearer xyz"), "A"),
            Err(TokenError::MailboxMismatch)
        );
        assert_eq!(
            AuthToken::parse(Some("NHSMESH x26abc1:n:0:202401011200:00"), "X26ABC1"),
            Err(TokenError::MailboxMismatch)
        );
        assert_eq!(
            AuthToken::parse(Some("NHSMESH A:n:x:202401011200:00"), "A"),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            AuthToken::parse(Some("NHSMESH A:n:0:202401011200"), "A"),
            Err(TokenError::Malformed)
        );
        // No scheme at all is accepted, as in SBX.
        assert!(AuthToken::parse(Some("A:n:0:202401011200:00"), "A").is_ok());
    }

    #[test]
    fn timestamps_outside_two_hours_are_out_of_window() {
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap();
        let w = TimeDelta::hours(2);
        let at = |ts: &str| AuthToken::sign("k", "A", "p", "n", 0, ts).within_window(now, w);
        assert!(at("202401011200"));
        assert!(at("202401011000"));
        assert!(at("202401011400"));
        assert!(!at("202401010930"));
        assert!(!at("202401011430"));
        assert!(!at("2024010112"));
        assert!(!at("20240101120a"));
        assert!(!at("202413011200"));
    }

    /// Regression (fuzz/artifacts/auth_token, `scripts/fuzz.sh`): a window within a minute
    /// of `TimeDelta::MAX` (a `--clock-skew-secs` of about 9.2e15) panicked with
    /// "`TimeDelta + TimeDelta` overflowed" on every authenticated request.
    #[test]
    fn the_largest_window_admits_every_well_formed_token_without_panicking() {
        let now = DateTime::from_timestamp(-62_135_596_800, 0).unwrap();
        let window = TimeDelta::try_milliseconds(i64::MAX).unwrap();
        let t = AuthToken::sign("k", "A", "p", "n", u64::MAX, "299912312359");
        assert!(t.within_window(now, window));
        assert!(t.within_window(now, TimeDelta::MAX));
        assert!(!t.within_window(now, TimeDelta::MIN));
        let malformed = AuthToken::sign("k", "A", "p", "n", 0, "2999123123");
        assert!(!malformed.within_window(now, TimeDelta::MAX));
    }
}
