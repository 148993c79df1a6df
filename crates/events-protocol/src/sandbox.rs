//! The NHS MNS sandbox's behaviour (API.md §8), which `--sandbox` reproduces: stateless,
//! open, answering from two fixed subscriptions, so that tests written against the NHS
//! sandbox pass unchanged.

use serde_json::{json, Value};

/// The id every valid create answers with, and that is then never found.
pub const CREATED_ID: &str = "236a1d4a-5d69-4fa9-9c7f-e72bf505aa5b";
/// S1: in the list; GET, PUT and DELETE on it always succeed.
pub const S1_ID: &str = "e9050741-ae87-4720-beb1-2abd9248e227";
/// S2: S1 with the FHIR payload; readable, not listed.
pub const S2_ID: &str = "c5a332ca-12ab-4ccf-9eb7-c933713accb3";
/// A PUT on this id conflicts with [`CONFLICT_EXISTING_ID`].
pub const CONFLICT_PUT_ID: &str = "f8f44c83-a697-4607-8604-a1a45acedd8c";
pub const CONFLICT_EXISTING_ID: &str = "5553998c-b802-4071-9a54-8e99ea729614";

/// The subscription with id `id`, if the sandbox has one.
pub fn subscription(id: &str) -> Option<Value> {
    let payload = match id {
        S1_ID => "application/json",
        S2_ID => "application/fhir+json",
        _ => return None,
    };
    Some(json!({
        "id": id,
        "resourceType": "Subscription",
        "status": "active",
        "end": "2024-04-05T17:00:00.000Z",
        "reason": "",
        "criteria": "eventType=pds-change-of-gp-1",
        "channel": {
            "type": "message",
            "endpoint": "arn:aws:sqs:eu-west-2:12345:example-queue-123",
            "payload": payload
        }
    }))
}

/// The list: S1 only.
pub fn list() -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "self", "url": "/subscriptions"}],
        "entry": [subscription(S1_ID)]
    })
}

/// `/_ping`, `/_status` and `/health`.
pub fn status(version: &Value) -> Value {
    json!({
        "status": "pass",
        "ping": "pong",
        "service": "multicast-notification-service",
        "version": version
    })
}

/// The sandbox's only check of an event: that `time` parses as a JavaScript `Date` would.
/// Close enough for the bodies clients send: RFC 3339, `YYYY`, `YYYY-MM`, `YYYY-MM-DD`,
/// or a bare number of up to six digits (a year to `Date`).
pub fn time_parses(time: Option<&Value>) -> bool {
    let Some(t) = time.and_then(Value::as_str) else {
        return false;
    };
    if crate::event::is_time(t) {
        return true;
    }
    let date_only = match t.len() {
        4 => Some(format!("{t}-01-01")),
        7 => Some(format!("{t}-01")),
        10 => Some(t.to_string()),
        _ => None,
    };
    if date_only.is_some_and(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").is_ok()) {
        return true;
    }
    !t.is_empty() && t.len() <= 6 && t.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixtures_are_the_sandboxs() {
        assert_eq!(
            subscription(S1_ID).unwrap()["channel"]["payload"],
            "application/json"
        );
        assert_eq!(
            subscription(S2_ID).unwrap()["channel"]["payload"],
            "application/fhir+json"
        );
        assert_eq!(subscription(CREATED_ID), None);
        assert_eq!(list()["entry"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn the_sandbox_time_check_is_as_loose_as_the_sandboxs() {
        for good in [
            "2022-04-05T17:31:00Z",
            "2022-04-05T17:31:00.000Z",
            "1",
            "2022",
            "2022-04-05",
        ] {
            assert!(time_parses(Some(&json!(good))), "{good}");
        }
        for bad in ["202-04-05T17:31:00.000Z", "", "tomorrow", "2022-13-01"] {
            assert!(!time_parses(Some(&json!(bad))), "{bad}");
        }
        assert!(!time_parses(None));
        assert!(!time_parses(Some(&json!(5))));
    }
}
