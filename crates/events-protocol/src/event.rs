//! What a publisher may send to `POST /events` (API.md §3): a CloudEvent
//! (`application/cloudevents+json`) or the deprecated v1 form (`application/json`). Both
//! become one [`Event`]; a v1 body is also kept as published, because its JSON delivery
//! is the body itself (§5.2).
//!
//! The messages for `type` and `time` are the NHS's; the others follow their pattern
//! (**OpenSpine**), as do the size limits, which the NHS does not publish.

use crate::error::ValidationErrors;
use serde_json::{Map, Value};
use spine_events::Event;

/// Largest event body: events are thin (a kind of change and a pointer).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Longest `id`, `subject`, `versionid`.
pub const MAX_ATTRIBUTE: usize = 256;
/// Longest `source` and `dataref`.
pub const MAX_URI: usize = 2048;
/// Most `filtering` attributes, and most items in one array value.
pub const MAX_FILTERS: usize = 64;
pub const MAX_FILTER_ITEMS: usize = 100;

/// The `system` of a v1 event's source identifier, and the prefix of the CloudEvent
/// source that it becomes.
pub const ASID_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhsSpineASID";

pub const TYPE_MESSAGE: &str = "Please provide a valid event type";
pub const TIME_MESSAGE: &str = "Please provide a valid time";

/// An event the service will store.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub event: Event,
    /// The v1 body as published, for JSON deliveries of v1 types.
    pub legacy: Option<Value>,
}

/// Parses a body of `POST /events` by its media type (`cloudevents` = it was
/// `application/cloudevents+json`).
pub fn parse(body: &[u8], cloudevents: bool) -> Result<Accepted, ValidationErrors> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ValidationErrors::one("body", "Please provide a valid JSON body"))?;
    if cloudevents {
        cloudevent(&value).map(|event| Accepted {
            event,
            legacy: None,
        })
    } else {
        legacy(&value)
    }
}

/// The CloudEvent rules (§3.1). Attributes not in the table are accepted and dropped.
pub fn cloudevent(value: &Value) -> Result<Event, ValidationErrors> {
    let Some(obj) = value.as_object() else {
        return Err(ValidationErrors::one(
            "body",
            "Please provide a valid event",
        ));
    };
    let mut errors = ValidationErrors::default();
    let specversion = required_text(obj, "specversion", 16, &mut errors);
    let id = required_text(obj, "id", MAX_ATTRIBUTE, &mut errors);
    let source = required_text(obj, "source", MAX_URI, &mut errors);
    if source.as_deref().is_some_and(|s| !is_uri_reference(s)) {
        errors.add("source", "Please provide a valid source");
    }
    let event_type = match obj.get("type").and_then(Value::as_str) {
        Some(t) if is_event_type(t) => Some(t.to_string()),
        _ => {
            errors.add("type", TYPE_MESSAGE);
            None
        }
    };
    let time = match obj.get("time").and_then(Value::as_str) {
        Some(t) if is_time(t) => Some(t.to_string()),
        _ => {
            errors.add("time", TIME_MESSAGE);
            None
        }
    };
    let subject = optional_text(obj, "subject", MAX_ATTRIBUTE, &mut errors);
    let dataref = optional_text(obj, "dataref", MAX_URI, &mut errors);
    if dataref.as_deref().is_some_and(|d| !is_absolute_uri(d)) {
        errors.add("dataref", "Please provide a valid dataref");
    }
    let versionid = optional_text(obj, "versionid", MAX_ATTRIBUTE, &mut errors);
    let filtering = match obj.get("filtering") {
        None => Map::new(),
        Some(f) => match check_filtering(f) {
            Some(map) => map,
            None => {
                errors.add("filtering", "Please provide valid filtering attributes");
                Map::new()
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(specversion), Some(id), Some(source), Some(event_type), Some(time)) =
        (specversion, id, source, event_type, time)
    else {
        return Err(ValidationErrors::one(
            "body",
            "Please provide a valid event",
        ));
    };
    Ok(Event {
        specversion,
        id,
        source,
        event_type,
        time,
        subject,
        dataref,
        versionid,
        filtering,
    })
}

/// The same rules for an event a service publishes in-process (MESH, PDS): what the
/// HTTP path would refuse, the platform does not publish either.
pub fn check(event: &Event) -> Result<(), ValidationErrors> {
    let value = serde_json::to_value(event)
        .map_err(|_| ValidationErrors::one("body", "Please provide a valid event"))?;
    cloudevent(&value).map(|_| ())
}

/// The v1 rules (§3.2).
pub fn legacy(value: &Value) -> Result<Accepted, ValidationErrors> {
    let Some(obj) = value.as_object() else {
        return Err(ValidationErrors::one(
            "body",
            "Please provide a valid event",
        ));
    };
    let mut errors = ValidationErrors::default();
    let id = required_text(obj, "id", MAX_ATTRIBUTE, &mut errors);
    let event_type = match obj.get("type").and_then(Value::as_str) {
        Some(t) if is_event_type(t) && t.ends_with("-1") => Some(t.to_string()),
        _ => {
            errors.add("type", TYPE_MESSAGE);
            None
        }
    };
    let time = match obj.get("time").and_then(Value::as_str) {
        Some(t) if is_time(t) => Some(t.to_string()),
        _ => {
            errors.add("time", TIME_MESSAGE);
            None
        }
    };
    let nhs_number = match obj.get("subject").and_then(Value::as_object) {
        None => {
            errors.add("subject", "Please provide a valid subject");
            None
        }
        Some(subject) => {
            let nhs = subject.get("nhsNumber").and_then(Value::as_str);
            if !nhs.is_some_and(|n| n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit())) {
                errors.add("subject.nhsNumber", "Please provide a valid NHS number");
            }
            match subject.get("familyName").and_then(Value::as_str) {
                Some(f)
                    if !f.trim().is_empty()
                        && f.len() <= MAX_ATTRIBUTE
                        && f == f.to_uppercase() => {}
                _ => errors.add(
                    "subject.familyName",
                    "Please provide a valid family name in upper case",
                ),
            }
            if !subject
                .get("dob")
                .and_then(Value::as_str)
                .is_some_and(is_partial_date)
            {
                errors.add("subject.dob", "Please provide a valid date of birth");
            }
            nhs.map(str::to_string)
        }
    };
    let asid = match obj.get("source").and_then(Value::as_object) {
        None => {
            errors.add("source", "Please provide a valid source");
            None
        }
        Some(source) => {
            if !source
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.trim().is_empty() && n.len() <= MAX_ATTRIBUTE)
            {
                errors.add("source.name", "Please provide a valid source name");
            }
            let identifier = source.get("identifier").and_then(Value::as_object);
            if identifier
                .and_then(|i| i.get("system"))
                .and_then(Value::as_str)
                != Some(ASID_SYSTEM)
            {
                errors.add(
                    "source.identifier.system",
                    "Please provide a valid source identifier system",
                );
            }
            let value = identifier
                .and_then(|i| i.get("value"))
                .and_then(Value::as_str)
                .filter(|v| {
                    !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric())
                });
            if value.is_none() {
                errors.add(
                    "source.identifier.value",
                    "Please provide a valid source identifier value",
                );
            }
            value.map(str::to_string)
        }
    };
    let data = match obj.get("data") {
        None => None,
        Some(Value::Object(d)) => Some(d),
        Some(_) => {
            errors.add("data", "Please provide valid data");
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(id), Some(event_type), Some(time), Some(asid)) = (id, event_type, time, asid) else {
        return Err(ValidationErrors::one(
            "body",
            "Please provide a valid event",
        ));
    };
    let text = |key: &str| {
        data.and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut event = Event::new(id, format!("{ASID_SYSTEM}/{asid}"), event_type, time);
    event.subject = nhs_number;
    event.dataref = text("fullUrl");
    event.versionid = text("versionId");
    Ok(Accepted {
        event,
        legacy: Some(value.clone()),
    })
}

fn required_text(
    obj: &Map<String, Value>,
    key: &str,
    max: usize,
    errors: &mut ValidationErrors,
) -> Option<String> {
    match obj.get(key).and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() && s.len() <= max && !s.chars().any(char::is_control) => {
            Some(s.to_string())
        }
        _ => {
            errors.add(key, format!("Please provide a valid {key}"));
            None
        }
    }
}

fn optional_text(
    obj: &Map<String, Value>,
    key: &str,
    max: usize,
    errors: &mut ValidationErrors,
) -> Option<String> {
    obj.get(key)?;
    required_text(obj, key, max, errors)
}

/// `<name>-<major version>`: lower-case words joined by `-`, ending in a number.
pub fn is_event_type(t: &str) -> bool {
    if t.len() > 128 {
        return false;
    }
    let Some((name, version)) = t.rsplit_once('-') else {
        return false;
    };
    !name.is_empty()
        && !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_digit())
        && name.split('-').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// RFC 3339 date-time, seconds or fractions.
pub fn is_time(t: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(t).is_ok()
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, a real date.
fn is_partial_date(d: &str) -> bool {
    let full = match d.len() {
        4 => format!("{d}-01-01"),
        7 => format!("{d}-01"),
        10 => d.to_string(),
        _ => return false,
    };
    d.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        && chrono::NaiveDate::parse_from_str(&full, "%Y-%m-%d").is_ok()
}

/// A URI-reference as CloudEvents' `source` allows: no spaces or control characters.
fn is_uri_reference(s: &str) -> bool {
    !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// An absolute URI: a scheme, then something.
fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    is_uri_reference(s)
        && !rest.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

/// `filtering`: an object of strings, numbers, booleans, or arrays of strings and
/// integers (§3.1), within the limits.
fn check_filtering(value: &Value) -> Option<Map<String, Value>> {
    let map = value.as_object()?;
    if map.len() > MAX_FILTERS {
        return None;
    }
    for (k, v) in map {
        let key_ok = !k.is_empty()
            && k.len() <= 64
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let value_ok = match v {
            Value::String(s) => s.len() <= MAX_ATTRIBUTE,
            Value::Number(_) | Value::Bool(_) => true,
            Value::Array(items) => {
                items.len() <= MAX_FILTER_ITEMS
                    && items.iter().all(|i| match i {
                        Value::String(s) => s.len() <= MAX_ATTRIBUTE,
                        Value::Number(n) => n.is_i64() || n.is_u64(),
                        _ => false,
                    })
            }
            _ => false,
        };
        if !key_ok || !value_ok {
            return None;
        }
    }
    Some(map.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn signal() -> Value {
        json!({
            "specversion": "1.0",
            "id": "236a1d4a-5d69-4fa9-9c7f-e72bf505aa5b",
            "source": "uk.nhs.multicast-notification-service",
            "type": "mns-test-signal-1",
            "time": "2026-04-05T17:31:00.000Z",
            "subject": "9912003888",
            "dataref": "https://example.nhs.uk/multicast-notification-service/FHIRR4Response",
            "filtering": {"generalpractitioner": "Y12345", "subjectage": 42, "tags": ["a", 1]}
        })
    }

    fn errors_of(v: Value) -> Vec<(String, String)> {
        cloudevent(&v).unwrap_err().0.into_iter().collect()
    }

    #[test]
    fn a_good_cloudevent_is_accepted_and_extras_are_dropped() {
        let mut v = signal();
        v["extra"] = json!("dropped");
        let e = cloudevent(&v).unwrap();
        assert_eq!(e.event_type, "mns-test-signal-1");
        assert_eq!(e.subject.as_deref(), Some("9912003888"));
        assert_eq!(e.filtering["subjectage"], 42);
        assert!(!serde_json::to_value(&e)
            .unwrap()
            .as_object()
            .unwrap()
            .contains_key("extra"));
        check(&e).unwrap();
    }

    #[test]
    fn each_bad_attribute_is_named_with_its_message() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("time", json!("202-04-05T17:31:00.000Z"), TIME_MESSAGE),
            ("time", json!("1"), TIME_MESSAGE),
            ("time", json!(1), TIME_MESSAGE),
            ("type", json!("Not A Type"), TYPE_MESSAGE),
            ("type", json!("pds-change-of-gp"), TYPE_MESSAGE),
            ("type", json!(""), TYPE_MESSAGE),
            ("id", json!(""), "Please provide a valid id"),
            ("id", json!(7), "Please provide a valid id"),
            (
                "specversion",
                json!(null),
                "Please provide a valid specversion",
            ),
            (
                "source",
                json!("has space"),
                "Please provide a valid source",
            ),
            ("subject", json!(""), "Please provide a valid subject"),
            (
                "dataref",
                json!("not a uri"),
                "Please provide a valid dataref",
            ),
            ("versionid", json!(16), "Please provide a valid versionid"),
            (
                "filtering",
                json!({"a": {"nested": 1}}),
                "Please provide valid filtering attributes",
            ),
            (
                "filtering",
                json!({"a": [1.5]}),
                "Please provide valid filtering attributes",
            ),
            (
                "filtering",
                json!({"bad key": "x"}),
                "Please provide valid filtering attributes",
            ),
            (
                "filtering",
                json!("x"),
                "Please provide valid filtering attributes",
            ),
        ];
        for (field, value, message) in cases {
            let mut v = signal();
            v[field] = value.clone();
            assert_eq!(
                errors_of(v),
                vec![(field.to_string(), message.to_string())],
                "{field} = {value}"
            );
        }
        let mut v = signal();
        v.as_object_mut().unwrap().remove("type");
        v.as_object_mut().unwrap().remove("time");
        assert_eq!(errors_of(v).len(), 2, "every bad field is named at once");
        assert_eq!(
            errors_of(json!([1])),
            vec![("body".into(), "Please provide a valid event".into())]
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_named() {
        let e = parse(b"{not json", true).unwrap_err();
        assert_eq!(e.0["body"], "Please provide a valid JSON body");
    }

    fn v1() -> Value {
        json!({
            "id": "0f8f1f4c-3f1d-4d59-9f0a-4c4c1f5e8a11",
            "type": "pds-change-of-gp-1",
            "time": "2026-01-25T10:00:00Z",
            "subject": {"nhsNumber": "9912003888", "familyName": "DAWKINS", "dob": "1980-04"},
            "source": {"name": "PDS", "identifier": {"system": ASID_SYSTEM, "value": "477121000324"}},
            "data": {"versionId": "W/\"3\"", "fullUrl": "https://example.nhs.uk/personal-demographics/FHIR/R4/Patient/9912003888",
                     "registrationEncounterCode": "3"}
        })
    }

    #[test]
    fn a_v1_event_becomes_an_event_and_keeps_its_body() {
        let a = legacy(&v1()).unwrap();
        assert_eq!(a.event.source, format!("{ASID_SYSTEM}/477121000324"));
        assert_eq!(a.event.subject.as_deref(), Some("9912003888"));
        assert_eq!(a.event.versionid.as_deref(), Some("W/\"3\""));
        assert!(a
            .event
            .dataref
            .as_deref()
            .unwrap()
            .ends_with("/Patient/9912003888"));
        assert_eq!(a.legacy, Some(v1()));
        for dob in ["1980", "1980-04", "1980-04-30"] {
            let mut v = v1();
            v["subject"]["dob"] = json!(dob);
            assert!(legacy(&v).is_ok(), "{dob}");
        }
    }

    #[test]
    fn each_bad_v1_field_is_named() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("/type", json!("pds-change-of-gp-2"), "type"),
            ("/subject/nhsNumber", json!("99120038"), "subject.nhsNumber"),
            (
                "/subject/familyName",
                json!("Dawkins"),
                "subject.familyName",
            ),
            ("/subject/dob", json!("1980-02-30"), "subject.dob"),
            ("/subject/dob", json!("80"), "subject.dob"),
            ("/source/name", json!(""), "source.name"),
            (
                "/source/identifier/system",
                json!("https://example.org"),
                "source.identifier.system",
            ),
            (
                "/source/identifier/value",
                json!(""),
                "source.identifier.value",
            ),
            ("/data", json!("x"), "data"),
            ("/subject", json!("9912003888"), "subject"),
        ];
        for (pointer, value, field) in cases {
            let mut v = v1();
            *v.pointer_mut(pointer).unwrap() = value.clone();
            let e = legacy(&v).unwrap_err();
            assert_eq!(
                e.0.keys().collect::<Vec<_>>(),
                vec![field],
                "{pointer} = {value}"
            );
        }
    }

    #[test]
    fn event_types_are_name_dash_version() {
        for good in [
            "pds-change-of-gp-2",
            "mns-test-signal-1",
            "nhshco-hc-complete-1",
            "a-1",
        ] {
            assert!(is_event_type(good), "{good}");
        }
        for bad in [
            "pds-change-of-gp",
            "-1",
            "PDS-1",
            "pds--1",
            "pds-1a",
            "pds change-1",
            "1",
        ] {
            assert!(!is_event_type(bad), "{bad}");
        }
    }
}
