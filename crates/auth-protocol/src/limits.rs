//! Rate limits as the platform configures them (API.md 9): JSON `ratelimiting` per API
//! name, a quota (requests per interval) and a spike arrest (a rate), and the 429 texts.
//!
//! How the platform's shared rate-limit flow combines app and product values, and how its
//! spike arrest buckets, are not public (API.md 11). OpenSpine's decision: both count in
//! fixed windows aligned to the epoch (quota: its interval; spike arrest: one second for
//! `ps`, one minute for `pm`), in the coordination store so that every node counts the
//! same; an app's own value wins over the deployment default.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// `{"<api>": {"quota": {...}, "spikeArrest": {...}}}`.
pub type RateLimits = HashMap<String, ApiLimits>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spike_arrest: Option<SpikeArrest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub limit: u64,
    /// A number, sent as a string by the platform (`"1"`); both are accepted.
    #[serde(deserialize_with = "number_or_string")]
    pub interval: u64,
    pub timeunit: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpikeArrest {
    /// `<n>ps` or `<n>pm`.
    pub ratelimit: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Text(String),
    }
    match N::deserialize(d)? {
        N::Num(n) => Ok(n),
        N::Text(t) => t.trim().parse().map_err(serde::de::Error::custom),
    }
}

impl Quota {
    /// The window's length in seconds; `None` for an unknown time unit.
    pub fn window_secs(&self) -> Option<u64> {
        let unit = match self.timeunit.trim_end_matches('s') {
            "second" => 1,
            "minute" => 60,
            "hour" => 3600,
            "day" => 86_400,
            "week" => 604_800,
            "month" => 2_592_000,
            _ => return None,
        };
        Some(self.interval.max(1).saturating_mul(unit))
    }

    /// The app-quota 429 text (PDS), with this quota's figures.
    pub fn exceeded_text(&self, app_name: &str) -> String {
        format!(
            "Your application, {app_name}, has exceeded its quota of {} requests every {} {}(s) and is being rate limited. Please see: https://digital.nhs.uk/developer/guides-and-documentation/reference-guide#rate-limits for more details.",
            self.limit, self.interval, self.timeunit
        )
    }
}

impl SpikeArrest {
    /// (requests, window seconds): `1000ps` → (1000, 1), `300000pm` → (300000, 60).
    pub fn rate(&self) -> Option<(u64, u64)> {
        let r = self.ratelimit.trim();
        let (n, window) = if let Some(n) = r.strip_suffix("ps") {
            (n, 1)
        } else if let Some(n) = r.strip_suffix("pm") {
            (n, 60)
        } else {
            return None;
        };
        n.trim().parse().ok().map(|n| (n, window))
    }
}

/// The app spike-arrest 429 text.
pub fn spike_text(app_name: &str) -> String {
    format!("Your application, {app_name}, has created a spike in traffic and is being rate limited. Please reduce the frequency of your requests. Please see: https://digital.nhs.uk/developer/guides-and-documentation/reference-guide#rate-limits for more details.")
}

/// The API-wide 429 text (all apps together over the API's limit).
pub const API_BUSY_TEXT: &str = "This API is currently receiving a high volume of requests and is being rate limited. Please see: https://digital.nhs.uk/developer/guides-and-documentation/reference-guide#rate-limits for more details.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_json_parses_with_string_intervals_and_rates() {
        let limits: RateLimits = serde_json::from_str(
            r#"{"pds": {"quota": {"limit": 60000, "interval": "1", "timeunit": "minute", "enabled": true},
                        "spikeArrest": {"ratelimit": "1000ps", "enabled": true}}}"#,
        )
        .unwrap();
        let pds = &limits["pds"];
        assert_eq!(pds.quota.as_ref().unwrap().window_secs(), Some(60));
        assert_eq!(pds.spike_arrest.as_ref().unwrap().rate(), Some((1000, 1)));
        let pm = SpikeArrest {
            ratelimit: "300000pm".into(),
            enabled: true,
        };
        assert_eq!(pm.rate(), Some((300_000, 60)));
        assert!(pds
            .quota
            .as_ref()
            .unwrap()
            .exceeded_text("My App")
            .starts_with(
            "Your application, My App, has exceeded its quota of 60000 requests every 1 minute(s)"
        ));
    }
}
