//! Where the next page starts: the opaque tokens of v2's inbox (`continue_from`, API.md
//! 3.2) and of the rich inbox and outbox views (API.md 3.15), and the chunk number of a
//! path (API.md 3.5). The server only hands them through.

use crate::MeshError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// The inbox token: the page continues after position `seq` of `mailbox`'s inbox.
pub fn encode_inbox_token(mailbox: &str, seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(json!({"mailbox": mailbox, "after": seq}).to_string())
}

/// The position an inbox token continues after; `None` for a token that is not one, or
/// one made for another mailbox (a token cannot be used to read someone else's inbox).
pub fn decode_inbox_token(mailbox: &str, token: &str) -> Option<i64> {
    let raw = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    (v.get("mailbox")?.as_str()? == mailbox).then_some(())?;
    v.get("after")?.as_i64()
}

/// The rich views' cursor: the page continues before message `id`.
pub fn encode_rich_cursor(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({ "before": id }).to_string())
}

/// The message id a rich cursor continues before, when it is a plausible one.
pub fn decode_rich_cursor(token: &str) -> Option<String> {
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim().trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    let id = v.get("before")?.as_str()?;
    crate::ids::plausible(id).then(|| id.to_string())
}

/// A `{chunk_number}` path value: an integer ≥ 1, else the framework's 400 (API.md 3.5).
pub fn chunk_number(value: &str) -> Result<u32, MeshError> {
    value
        .trim()
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            MeshError::validation(
                "greater_than_equal",
                &["path", "chunk_number"],
                "Input should be an integer greater than or equal to 1",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inbox_token_reads_back_for_its_own_mailbox_only() {
        let t = encode_inbox_token("X26ABC1", 42);
        assert_eq!(decode_inbox_token("X26ABC1", &t), Some(42));
        assert_eq!(decode_inbox_token("X26ABC2", &t), None);
        assert_eq!(decode_inbox_token("X26ABC1", "not base64!"), None);
    }

    #[test]
    fn a_rich_cursor_names_a_plausible_message_only() {
        let id = "20261204140224327535_ED4D16";
        assert_eq!(
            decode_rich_cursor(&encode_rich_cursor(id)).as_deref(),
            Some(id)
        );
        assert_eq!(decode_rich_cursor(&encode_rich_cursor("../x")), None);
    }

    #[test]
    fn chunk_numbers_start_at_one() {
        assert_eq!(chunk_number(" 3 "), Ok(3));
        assert!(chunk_number("0").is_err());
        assert!(chunk_number("-1").is_err());
        assert!(chunk_number("x").is_err());
    }
}
