//! What an opaque access token stands for, as kept in the coordination store so that any
//! node can answer for it (API.md 1: tokens are random strings that APIs look up), and
//! the lifetimes the platform reports.

use serde::{Deserialize, Serialize};

/// The platform's access-token lifetime: 600 s, reported as `"599"` (API.md 4.4).
pub const ACCESS_TOKEN_SECS: i64 = 600;
/// A CIS2 refresh token's lifetime: 12 h, reported as `"43199"` (API.md 5). NHS login's
/// is not published (unverified); OpenSpine uses the same.
pub const REFRESH_TOKEN_SECS: i64 = 43_200;

/// How a token was obtained, which decides the gateway headers a service receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenKind {
    /// Client credentials with a signed JWT.
    Application,
    /// Token exchange of a CIS2 (staff smartcard) ID token.
    Cis2,
    /// Token exchange of an NHS login (citizen) ID token.
    NhsLogin,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Application => "application",
            TokenKind::Cis2 => "cis2",
            TokenKind::NhsLogin => "nhs-login",
        }
    }
}

/// An access token's meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub client_id: String,
    pub kind: TokenKind,
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub expires_at: i64,
    /// The ID token's subject and issuer (user tokens), for `NHSD-Identity-UUID` /
    /// `NHSD-Identity-IdP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<serde_json::Value>,
    /// CIS2 `authentication_assurance_level`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assurance_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_assurance_level: Option<String>,
    /// NHS login `identity_proofing_level` (`P9`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proofing_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<String>,
}

/// What a refresh token stands for: the user token it renews and how often it was renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub token: TokenRecord,
    pub refresh_count: u32,
    /// Unix seconds: the end of the refresh period (the first token's issue + 12 h).
    pub refresh_until: i64,
}

/// An access token's lifetime in seconds for an optional `_access_token_expiry_ms`
/// field: it only ever shortens the default (API.md 4.4). A value that is not a positive
/// number is ignored.
pub fn access_lifetime(expiry_ms: Option<&str>) -> i64 {
    let asked = expiry_ms
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|ms| *ms > 0)
        .map(|ms| ms / 1000);
    asked.map_or(ACCESS_TOKEN_SECS, |s| s.clamp(1, ACCESS_TOKEN_SECS))
}

/// The `expires_in` the platform reports for a lifetime: one second less, as a string
/// (`"599"` for 600 s).
pub fn expires_in(lifetime_secs: i64) -> String {
    (lifetime_secs - 1).max(0).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_field_only_shortens_the_lifetime() {
        assert_eq!(access_lifetime(None), 600);
        assert_eq!(expires_in(access_lifetime(None)), "599");
        assert_eq!(access_lifetime(Some("100000")), 100);
        assert_eq!(access_lifetime(Some("500000")), 500);
        assert_eq!(access_lifetime(Some("700000")), 600);
        assert_eq!(access_lifetime(Some("1000000")), 600);
        assert_eq!(access_lifetime(Some("-5")), 600);
        assert_eq!(access_lifetime(Some("soon")), 600);
        assert_eq!(access_lifetime(Some("10")), 1);
    }
}
