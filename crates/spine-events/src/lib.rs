//! The platform's event interface, shared by the services that publish events (MESH, PDS)
//! and the one that routes them (the events service, MNS-compatible).
//!
//! A service never calls another service's code: MESH and PDS hand their events to a
//! [`Publisher`], which the events service implements; the events service hands MESH
//! messages to [`Mailboxes`], which MESH implements. The binary joins the two. The traits
//! return boxed `std` futures so that this crate needs no async runtime, and a service
//! can be tested against its own fake of the other side.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// A future that a trait object can return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One event as a publisher sends it: a CloudEvent 1.0 with the MNS attributes. Thin: the
/// kind of change, its subject and where to read it (`dataref`), never the record itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub specversion: String,
    /// Unique with `source`: a second publish of the same pair is not delivered again.
    pub id: String,
    pub source: String,
    /// `<name>-<major version>`, e.g. `pds-change-of-gp-2`, `mesh-message-acknowledged-1`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339.
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versionid: Option<String>,
    /// What subscriptions filter on (`criteria`): strings, numbers, booleans, or arrays of
    /// strings and integers.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub filtering: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    /// A CloudEvent 1.0 with the required attributes; the rest are set on the value.
    pub fn new(id: String, source: String, event_type: String, time: String) -> Self {
        Event {
            specversion: "1.0".into(),
            id,
            source,
            event_type,
            time,
            subject: None,
            dataref: None,
            versionid: None,
            filtering: serde_json::Map::new(),
        }
    }
}

/// What became of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Stored durably, with its place in the event sequence.
    Accepted { seq: i64 },
    /// The same `source` and `id` were published before: nothing new is delivered.
    Duplicate,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    /// The event breaks a rule of the events service (a field, a size); publishing it
    /// again will fail again.
    #[error("event refused: {0}")]
    Invalid(String),
    /// The events service could not store it now; the publisher keeps it and retries.
    #[error("events service unavailable: {0}")]
    Unavailable(String),
}

/// Where a service's events go. `publish` returns only once the event is durable (or a
/// duplicate of one that is), so a publisher may forget an event once it has an `Ok`.
pub trait Publisher: Send + Sync + 'static {
    fn publish(&self, event: Event) -> BoxFuture<'_, Result<Published, PublishError>>;
}

/// One MESH message for the events service to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// The sending mailbox (the events service's own).
    pub from: String,
    pub to: String,
    pub workflow_id: String,
    pub content_type: String,
    /// `Mex-LocalID`: the event's id, so a recipient can spot a second delivery.
    pub local_id: String,
    /// `Mex-Subject`.
    pub subject: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DeliveryError {
    /// MESH will never take this message (no such mailbox, not allowed on the workflow):
    /// retrying cannot help.
    #[error("refused: {0}")]
    Refused(String),
    /// MESH could not take it now; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// MESH as the events service sees it: a place to post a message that the recipient then
/// downloads as any other. Returns the new message's id once MESH has accepted it
/// durably.
pub trait Mailboxes: Send + Sync + 'static {
    fn post(&self, message: OutboundMessage) -> BoxFuture<'_, Result<String, DeliveryError>>;

    /// Whether `mailbox` exists and is active now: a subscription naming one that does
    /// not is refused when it is made, not when its first event fails.
    fn knows(&self, mailbox: &str) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_serialises_as_a_cloudevent_without_empty_attributes() {
        let mut e = Event::new(
            "a".into(),
            "uk.nhs.test".into(),
            "mns-test-signal-1".into(),
            "2026-01-01T00:00:00Z".into(),
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"specversion": "1.0", "id": "a", "source": "uk.nhs.test",
                               "type": "mns-test-signal-1", "time": "2026-01-01T00:00:00Z"})
        );
        e.filtering.insert("sender".into(), "X26ABC1".into());
        let back: Event = serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
