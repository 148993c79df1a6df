//! The `NHSMESH` token (API.md 2.1–2.3) against arbitrary headers, keys and clocks.
//!
//! Properties: parsing never panics; an accepted token names the path's mailbox, has five
//! colon-free fields and a decimal count, and re-renders to a header that parses back to
//! itself; a token signed from arbitrary fields parses back and verifies, and only with
//! the right key and password; a token's time renders back to its timestamp; the window
//! check never panics, whatever the window.
#![no_main]

use chrono::{DateTime, TimeDelta, Utc};
use libfuzzer_sys::fuzz_target;
use mesh_protocol::{AuthToken, TokenError};

/// The input, one field a line so seeds stay readable: header (a lone NUL byte: no
/// header), path mailbox, shared key, password, nonce, nonce count, timestamp, "now" in
/// Unix seconds, window in milliseconds. Missing lines are empty. A number is read as
/// decimal when it is one, else as up to 8 raw little-endian bytes, so the fuzzer reaches
/// the extremes by flipping bytes.
struct Input {
    header: Option<String>,
    path_mailbox: String,
    key: String,
    password: String,
    nonce: String,
    count: u64,
    timestamp: String,
    now_secs: i64,
    window_ms: i64,
}

impl Input {
    fn read(data: &[u8]) -> Self {
        let mut lines = data.split(|&b| b == b'\n');
        let mut field = || lines.next().unwrap_or_default();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let header = Some(field()).filter(|h| h != b"\0").map(text);
        let (path_mailbox, key, password, nonce) =
            (text(field()), text(field()), text(field()), text(field()));
        let count = number(field()) as u64;
        let timestamp = text(field());
        let (now_secs, window_ms) = (number(field()), number(field()));
        Input {
            header,
            path_mailbox,
            key,
            password,
            nonce,
            count,
            timestamp,
            now_secs,
            window_ms,
        }
    }
}

fn number(field: &[u8]) -> i64 {
    let decimal = std::str::from_utf8(field).ok().and_then(|s| s.parse().ok());
    decimal.unwrap_or_else(|| {
        let mut bytes = [0u8; 8];
        for (b, f) in bytes.iter_mut().zip(field) {
            *b = *f;
        }
        i64::from_le_bytes(bytes)
    })
}

fuzz_target!(|data: &[u8]| {
    let input = Input::read(data);
    let header = input.header.as_deref();
    let now = DateTime::from_timestamp(input.now_secs, 0).unwrap_or_default();
    let window = TimeDelta::try_milliseconds(input.window_ms).unwrap_or(TimeDelta::MAX);

    match AuthToken::parse(header, &input.path_mailbox) {
        Ok(token) => {
            check_accepted(&token, &input.path_mailbox);
            // Whatever was accepted can be checked without panicking.
            let _ = token.verify(&input.key, &input.password);
            check_time(&token, now, window);
        }
        Err(TokenError::Missing) => {
            assert!(header.is_none_or(|h| h.trim().is_empty()));
        }
        Err(TokenError::MailboxMismatch | TokenError::Malformed) => {
            assert!(header.is_some_and(|h| !h.trim().is_empty()));
        }
    }

    // Sign, render, parse, verify: a client's token is accepted whenever its fields can be
    // written in the header at all (no ':' anywhere, no ' ' in the mailbox id).
    let signed = AuthToken::sign(
        &input.key,
        &input.path_mailbox,
        &input.password,
        &input.nonce,
        input.count,
        &input.timestamp,
    );
    let writable = !input.path_mailbox.contains([':', ' '])
        && !input.nonce.contains(':')
        && !input.timestamp.contains(':');
    let parsed = AuthToken::parse(Some(&signed.header_value()), &input.path_mailbox);
    if writable {
        let parsed = parsed.expect("a signed token parses back");
        assert_eq!(parsed, signed);
        assert!(parsed.verify(&input.key, &input.password));
        let mut upper = parsed.clone();
        upper.hmac = upper.hmac.to_ascii_uppercase();
        assert!(upper.verify(&input.key, &input.password));
        let wrong_password = format!("{}x", input.password);
        assert!(!parsed.verify(&input.key, &wrong_password));
        let wrong_key = format!("{}x", input.key);
        assert!(!parsed.verify(&wrong_key, &input.password));
        check_time(&parsed, now, window);
    } else {
        assert!(parsed.is_err(), "{signed:?}");
    }
});

fn check_accepted(token: &AuthToken, path_mailbox: &str) {
    assert_eq!(token.mailbox_id, path_mailbox);
    assert!(!token.mailbox_id.contains(' '));
    for field in [
        &token.mailbox_id,
        &token.nonce,
        &token.nonce_count,
        &token.timestamp,
        &token.hmac,
    ] {
        assert!(!field.contains(':'), "{token:?}");
    }
    assert!(!token.nonce_count.is_empty());
    assert!(token.nonce_count.bytes().all(|b| b.is_ascii_digit()));
    // The rendered header is what a client would send; it parses to the same token.
    let again = AuthToken::parse(Some(&token.header_value()), path_mailbox);
    assert_eq!(again.as_ref(), Ok(token));
}

fn check_time(token: &AuthToken, now: DateTime<Utc>, window: TimeDelta) {
    let inside = token.within_window(now, window);
    match token.time() {
        None => assert!(!inside),
        Some(t) => {
            assert_eq!(AuthToken::timestamp_for(t), token.timestamp);
            assert!(token.within_window(t, TimeDelta::zero()));
            if window >= TimeDelta::zero() {
                // Widening the window never turns a token away.
                let wider = window
                    .checked_add(&TimeDelta::hours(1))
                    .unwrap_or(TimeDelta::MAX);
                assert!(!inside || token.within_window(now, wider));
            }
        }
    }
}
