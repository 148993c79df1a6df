//! FHIR R4 `Subscription` resources as MNS takes and returns them (API.md §4.1).
//!
//! **OpenSpine**: a bad `status`, `reason`, `criteria`, `channel.*` or `end` is an E1 that
//! names the field (the NHS sandbox checks only `resourceType`); `end` is echoed and,
//! as on MNS, not acted on, so a past `end` is accepted; other fields (`meta`, `text`,
//! `hydration`, …) are accepted and dropped; `channel.header` items (`Name: value`) are
//! sent as HTTP headers on webhook deliveries.

use crate::criteria::Criteria;
use crate::endpoint::Endpoint;
use crate::error::ValidationErrors;
use serde_json::{json, Map, Value};

pub const RESOURCE_TYPE_MESSAGE: &str =
    "Please provide the correct resource type for this endpoint";

/// Most `channel.header` items, and the longest one.
pub const MAX_HEADERS: usize = 10;
pub const MAX_HEADER: usize = 1024;

/// Largest subscription body.
pub const MAX_SUBSCRIPTION_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Requested,
    /// Delivering.
    Active,
    /// Deliveries are failing; events still queue and are retried. A later success makes
    /// it `active` again.
    Error,
    Off,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Active => "active",
            Status::Error => "error",
            Status::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "requested" => Status::Requested,
            "active" => Status::Active,
            "error" => Status::Error,
            "off" => Status::Off,
            _ => return None,
        })
    }
}

/// The two delivery forms (§5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// `application/json`: the event itself (§5.2).
    Json,
    /// `application/fhir+json`: a FHIR `Bundle` notification (§5.1).
    Fhir,
}

impl Payload {
    pub fn as_str(self) -> &'static str {
        match self {
            Payload::Json => "application/json",
            Payload::Fhir => "application/fhir+json",
        }
    }

    pub fn parse(s: &str) -> Option<Payload> {
        match s {
            "application/json" => Some(Payload::Json),
            "application/fhir+json" => Some(Payload::Fhir),
            _ => None,
        }
    }
}

/// A subscription as a client asked for it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub reason: String,
    pub end: Option<String>,
    pub criteria: Criteria,
    pub endpoint: Endpoint,
    pub payload: Payload,
    pub headers: Vec<String>,
}

/// The message for a MESH-events subscription that does not deliver to the mailbox it is about.
pub const MESH_EVENTS_MESSAGE: &str =
    "Please deliver MESH events to a mesh:// endpoint whose mailbox the criteria names as sender or recipient";

/// **OpenSpine**: a subscription to MESH's own events ([`crate::MESH_FAMILY`]) must deliver
/// to a `mesh://` endpoint and name that mailbox as `sender` or `recipient`: a mailbox
/// learns only of its own traffic, as MESH's tracking API allows. Checked on create and
/// replace, not on stored subscriptions.
pub fn check_mesh_events(request: &Request) -> Result<(), ValidationErrors> {
    let criteria = &request.criteria;
    // A family covering MESH's types is `mesh-*` or narrower: it starts with `mesh-` too.
    if !criteria.event_type.starts_with(crate::MESH_FAMILY) {
        return Ok(());
    }
    let named = |mailbox: &str| {
        ["sender", "recipient"].iter().any(|name| {
            criteria
                .clause(name)
                .is_some_and(|v| v.eq_ignore_ascii_case(mailbox))
        })
    };
    match &request.endpoint {
        Endpoint::Mesh { mailbox, .. } if named(mailbox) => Ok(()),
        _ => Err(ValidationErrors::one("criteria", MESH_EVENTS_MESSAGE)),
    }
}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub status: Status,
    pub request: Request,
}

impl Subscription {
    /// The resource as GET returns it.
    pub fn resource(&self) -> Value {
        let r = &self.request;
        let mut channel = json!({
            "type": "message",
            "endpoint": r.endpoint.to_string(),
            "payload": r.payload.as_str(),
        });
        if !r.headers.is_empty() {
            channel["header"] = json!(r.headers);
        }
        let mut v = json!({
            "resourceType": "Subscription",
            "id": self.id,
            "status": self.status.as_str(),
        });
        let obj = v.as_object_mut().expect("an object");
        if let Some(end) = &r.end {
            obj.insert("end".into(), json!(end));
        }
        obj.insert("reason".into(), json!(r.reason));
        obj.insert("criteria".into(), json!(r.criteria.to_string()));
        obj.insert("channel".into(), channel);
        v
    }
}

/// Checks a create or replace body. `path_id`: the `{id}` of a PUT, which an `id` in the
/// body must equal.
pub fn parse_request(value: &Value, path_id: Option<&str>) -> Result<Request, ValidationErrors> {
    let Some(obj) = value.as_object() else {
        return Err(ValidationErrors::one("resourceType", RESOURCE_TYPE_MESSAGE));
    };
    if obj.get("resourceType").and_then(Value::as_str) != Some("Subscription") {
        return Err(ValidationErrors::one("resourceType", RESOURCE_TYPE_MESSAGE));
    }
    let mut errors = ValidationErrors::default();
    if let (Some(id), Some(body_id)) = (path_id, obj.get("id")) {
        if body_id.as_str() != Some(id) {
            errors.add("id", "The id in the body must match the id in the path");
        }
    }
    if obj.get("status").and_then(Value::as_str) != Some("requested") {
        errors.add("status", "Please provide a valid status");
    }
    let reason = match obj.get("reason").and_then(Value::as_str) {
        Some(r) if r.len() <= 1024 => Some(r.to_string()),
        _ => {
            errors.add("reason", "Please provide a valid reason");
            None
        }
    };
    let end = match obj.get("end") {
        None => None,
        Some(v) => match v.as_str() {
            Some(t) if crate::event::is_time(t) => Some(t.to_string()),
            _ => {
                errors.add("end", "Please provide a valid end");
                None
            }
        },
    };
    let criteria = obj
        .get("criteria")
        .and_then(Value::as_str)
        .and_then(Criteria::parse);
    if criteria.is_none() {
        errors.add("criteria", "Please provide a valid criteria");
    }
    let empty = Map::new();
    let channel = obj.get("channel").and_then(Value::as_object);
    if channel.is_none() {
        errors.add("channel", "Please provide a valid channel");
    }
    let channel = channel.unwrap_or(&empty);
    if channel.is_empty() {
        // Named once above.
    } else if channel.get("type").and_then(Value::as_str) != Some("message") {
        errors.add("channel.type", "Please provide a valid channel type");
    }
    let endpoint = channel
        .get("endpoint")
        .and_then(Value::as_str)
        .and_then(Endpoint::parse);
    if endpoint.is_none() && !channel.is_empty() {
        errors.add("channel.endpoint", "Please provide a valid endpoint");
    }
    let payload = channel
        .get("payload")
        .and_then(Value::as_str)
        .and_then(Payload::parse);
    if payload.is_none() && !channel.is_empty() {
        errors.add("channel.payload", "Please provide a valid payload");
    }
    let headers = match channel.get("header") {
        None => Some(Vec::new()),
        Some(Value::Array(items)) if items.len() <= MAX_HEADERS => items
            .iter()
            .map(|h| h.as_str().filter(|h| is_header(h)).map(str::to_string))
            .collect(),
        Some(_) => None,
    };
    if headers.is_none() {
        errors.add("channel.header", "Please provide valid channel headers");
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    match (reason, criteria, endpoint, payload, headers) {
        (Some(reason), Some(criteria), Some(endpoint), Some(payload), Some(headers)) => {
            Ok(Request {
                reason,
                end,
                criteria,
                endpoint,
                payload,
                headers,
            })
        }
        _ => Err(ValidationErrors::one(
            "channel",
            "Please provide a valid channel",
        )),
    }
}

/// `Name: value`, a header a webhook may be sent with. Hop-by-hop and framing headers,
/// and the ones the service sets itself, are not allowed.
fn is_header(h: &str) -> bool {
    let Some((name, value)) = h.split_once(':') else {
        return false;
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let reserved = [
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "x-openspine-signature",
        "x-openspine-subscription",
    ];
    h.len() <= MAX_HEADER
        && name_ok
        && !reserved.contains(&name.to_ascii_lowercase().as_str())
        && !value.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Value {
        json!({
            "resourceType": "Subscription",
            "status": "requested",
            "end": "2024-01-25T12:00:00Z",
            "reason": "",
            "criteria": "eventType=pds-change-of-gp-2",
            "channel": {"type": "message", "endpoint": "mesh://X26ABC1?workflow_id=MNS_EVENT", "payload": "application/fhir+json"}
        })
    }

    #[test]
    fn a_good_request_round_trips_to_the_resource() {
        let r = parse_request(&request(), None).unwrap();
        let s = Subscription {
            id: "e9050741-ae87-4720-beb1-2abd9248e227".into(),
            status: Status::Active,
            request: r,
        };
        let mut want = request();
        want["id"] = json!(s.id);
        want["status"] = json!("active");
        assert_eq!(s.resource(), want);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            (
                "/resourceType",
                json!("Bundle"),
                "resourceType",
                RESOURCE_TYPE_MESSAGE,
            ),
            (
                "/status",
                json!("active"),
                "status",
                "Please provide a valid status",
            ),
            (
                "/reason",
                json!(null),
                "reason",
                "Please provide a valid reason",
            ),
            (
                "/end",
                json!("tomorrow"),
                "end",
                "Please provide a valid end",
            ),
            (
                "/criteria",
                json!("pds-change-of-gp-2"),
                "criteria",
                "Please provide a valid criteria",
            ),
            (
                "/channel",
                json!("x"),
                "channel",
                "Please provide a valid channel",
            ),
            (
                "/channel/type",
                json!("rest-hook"),
                "channel.type",
                "Please provide a valid channel type",
            ),
            (
                "/channel/endpoint",
                json!("mesh://X26ABC1"),
                "channel.endpoint",
                "Please provide a valid endpoint",
            ),
            (
                "/channel/payload",
                json!("text/plain"),
                "channel.payload",
                "Please provide a valid payload",
            ),
        ];
        for (pointer, value, field, message) in cases {
            let mut v = request();
            *v.pointer_mut(pointer).unwrap() = value.clone();
            let e = parse_request(&v, None).unwrap_err();
            assert_eq!(
                e.0.into_iter().collect::<Vec<_>>(),
                vec![(field.to_string(), message.to_string())],
                "{pointer} = {value}"
            );
        }
        let mut v = request();
        v["channel"]["header"] = json!(["Content-Length: 1"]);
        assert!(parse_request(&v, None)
            .unwrap_err()
            .0
            .contains_key("channel.header"));
        v["channel"]["header"] = json!(["Authorization: Bearer abc"]);
        assert_eq!(
            parse_request(&v, None).unwrap().headers,
            vec!["Authorization: Bearer abc"]
        );
    }

    #[test]
    fn a_put_body_naming_another_id_is_refused() {
        let mut v = request();
        v["id"] = json!("c5a332ca-12ab-4ccf-9eb7-c933713accb3");
        assert!(parse_request(&v, Some("c5a332ca-12ab-4ccf-9eb7-c933713accb3")).is_ok());
        let e = parse_request(&v, Some("e9050741-ae87-4720-beb1-2abd9248e227")).unwrap_err();
        assert!(e.0.contains_key("id"));
        assert!(parse_request(&v, None).is_ok(), "create ignores an id");
    }

    #[test]
    fn mesh_events_go_only_to_the_mailbox_they_are_about() {
        let check = |criteria: &str, endpoint: &str| {
            let mut r = request();
            r["criteria"] = json!(criteria);
            r["channel"]["endpoint"] = json!(endpoint);
            check_mesh_events(&parse_request(&r, None).unwrap())
        };
        let own = "mesh://X26ABC1?workflow_id=RECEIPTS";
        for good in [
            "eventType=mesh-message-acknowledged-1 AND sender=X26ABC1",
            "eventType=mesh-message-* AND sender=x26abc1",
            "eventType=mesh-* AND recipient=X26ABC1 AND workflowid=WF",
        ] {
            assert_eq!(check(good, own), Ok(()), "{good}");
        }
        for (criteria, endpoint) in [
            ("eventType=mesh-message-accepted-1", own),
            ("eventType=mesh-message-* AND sender=X26ABC2", own),
            ("eventType=mesh-* AND workflowid=X26ABC1", own),
            (
                "eventType=mesh-message-* AND sender=X26ABC1",
                "nats:mns.receipts",
            ),
        ] {
            assert_eq!(
                check(criteria, endpoint),
                Err(ValidationErrors::one("criteria", MESH_EVENTS_MESSAGE)),
                "{criteria} {endpoint}"
            );
        }
        // Other types are anyone's to route anywhere.
        assert_eq!(check("eventType=pds-*", "nats:mns.pds"), Ok(()));
    }
}
