//! MESH and the events service, through the platform's event interface
//! (`spine-events`), never through each other's code:
//!
//! * [`MeshMailboxes`] lets the events service post a message into a mailbox, as a MESH
//!   client would (the same directory, workflow permissions and durability: the message
//!   is accepted only once its payload and record are durable).
//! * [`spawn_relay`] publishes MESH's own state changes from its transactional event log:
//!   one event per change, so a sender can subscribe to receipts for its messages.
//!
//! MESH's event types (version 1), each with `subject` = the message id and `filtering`
//! on `sender`, `recipient`, `workflowid` and `status`:
//!
//! | type | when |
//! |---|---|
//! | `mesh-message-accepted-1` | a message is complete and in its recipient's inbox |
//! | `mesh-message-downloaded-1` | the recipient downloaded its last chunk, the first time |
//! | `mesh-message-acknowledged-1` | the recipient acknowledged it |
//! | `mesh-message-expired-1` | it left the inbox uncollected (undeliverable) |
//! | `mesh-report-generated-1` | a non-delivery report was made (`subject`: the report) |

use crate::handlers::send::{check_workflow, data_message, new_message_id};
use crate::state::AppState;
use chrono::{SecondsFormat, TimeDelta, Utc};
use mesh_protocol::{Change, Metadata};
use mesh_store::LogEntry;
use spine_events::{
    BoxFuture, DeliveryError, Event, Mailboxes, OutboundMessage, PublishError, Published, Publisher,
};
use std::sync::Arc;
use std::time::Duration;

/// The `source` of MESH's events.
pub const SOURCE: &str = "openspine.mesh";

/// MESH as a place the events service posts messages to.
pub struct MeshMailboxes(pub AppState);

impl Mailboxes for MeshMailboxes {
    fn post(&self, m: OutboundMessage) -> BoxFuture<'_, Result<String, DeliveryError>> {
        Box::pin(async move {
            let state = &self.0;
            let directory = state.directory();
            let refused = |why: String| Err(DeliveryError::Refused(why));
            let Some(sender) = directory.mailbox(&m.from).filter(|s| s.active).cloned() else {
                return refused(format!("the sending mailbox {} is not configured", m.from));
            };
            let Some(recipient) = directory.mailbox(&m.to).filter(|r| r.active).cloned() else {
                return refused(format!("no active mailbox {}", m.to));
            };
            if check_workflow(state, &sender, &m.to, &m.workflow_id).is_err() {
                return refused(format!(
                    "{} may not send workflow {} to {}",
                    m.from, m.workflow_id, m.to
                ));
            }
            let message_id = new_message_id(state.now());
            let metadata = Metadata {
                subject: m.subject.unwrap_or_default(),
                content_type: m.content_type,
                content_encoding: String::new(),
                file_name: String::new(),
                local_id: m.local_id,
                partner_id: String::new(),
                checksum: String::new(),
                encrypted: false,
                compressed: false,
            };
            let body: mesh_store::ByteStream = Box::pin(futures::stream::once(async move {
                Ok(bytes::Bytes::from(m.body))
            }));
            let limit = state.config().max_chunk_size;
            let accepted = state
                .store()
                .accept_message(&message_id, body, limit, |size| {
                    data_message(
                        state,
                        &message_id,
                        (&sender, &recipient),
                        m.workflow_id,
                        1,
                        size,
                        metadata,
                    )
                })
                .await;
            match accepted {
                Ok(Some(_)) => {
                    ::metrics::counter!("mesh_messages_accepted_total").increment(1);
                    Ok(message_id)
                }
                Ok(None) => refused("an empty event body".into()),
                Err(e) => Err(DeliveryError::Unavailable(e.to_string())),
            }
        })
    }

    fn knows(&self, mailbox: &str) -> bool {
        self.0
            .directory()
            .mailbox(mailbox)
            .is_some_and(|m| m.active)
    }
}

/// The event a log entry publishes, if its change is one MESH publishes.
pub fn event_of(entry: &LogEntry) -> Option<Event> {
    let event_type = match entry.change {
        Change::Accepted => "mesh-message-accepted-1",
        Change::Downloaded => "mesh-message-downloaded-1",
        Change::Acknowledged => "mesh-message-acknowledged-1",
        Change::Expired => "mesh-message-expired-1",
        Change::ReportGenerated => "mesh-report-generated-1",
        _ => return None,
    };
    let mut event = Event::new(
        // Unique and the same on every retry: the log's position names the change.
        format!("{}-{}", entry.message_id, entry.seq),
        SOURCE.into(),
        event_type.into(),
        entry.at.to_rfc3339_opts(SecondsFormat::Millis, true),
    );
    event.subject = Some(entry.message_id.clone());
    for (key, value) in [
        ("sender", &entry.sender),
        ("recipient", &entry.recipient),
        ("workflowid", &entry.workflow_id),
    ] {
        event.filtering.insert(key.into(), value.clone().into());
    }
    event
        .filtering
        .insert("status".into(), entry.status.as_str().into());
    Some(event)
}

/// Where the relay has got to, in the coordination store (shared by every node).
const CURSOR_SCOPE: &str = "mesh-events";
const CURSOR_KEY: &str = "relay-cursor";
const LEASE: &str = "mesh-events-relay";

/// Publishes MESH's log to `publisher`, from where the last relay left off, on whichever
/// node holds the relay's lease. `skip_sender`: the events service's own mailbox, whose
/// messages are deliveries of events: publishing their changes would feed a subscription
/// its own deliveries, for ever.
pub fn spawn_relay(
    state: AppState,
    publisher: Arc<dyn Publisher>,
    skip_sender: Option<String>,
) -> tokio::task::JoinHandle<()> {
    let holder = format!("mesh-relay-{}", uuid::Uuid::new_v4().simple());
    tokio::spawn(async move {
        loop {
            let idle = match relay_once(&state, &*publisher, skip_sender.as_deref(), &holder).await
            {
                Ok(moved) => moved == 0,
                Err(e) => {
                    tracing::warn!(error = %e, "MESH event relay: will retry");
                    true
                }
            };
            if idle {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    })
}

/// One pass: returns how many log entries it moved past.
async fn relay_once(
    state: &AppState,
    publisher: &dyn Publisher,
    skip_sender: Option<&str>,
    holder: &str,
) -> relay::Result<usize> {
    let coord = state.store().meta.coordination();
    if !coord
        .try_lease(LEASE, holder, Duration::from_secs(15))
        .await?
    {
        return Ok(0);
    }
    let now = Utc::now();
    let cursor: i64 = coord
        .get(CURSOR_SCOPE, CURSOR_KEY, now)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let entries = state.store().meta.log_after(cursor, 200).await?;
    let mut last = cursor;
    for entry in &entries {
        let skip = skip_sender.is_some_and(|s| s == entry.sender);
        if let Some(event) = event_of(entry).filter(|_| !skip) {
            match publisher.publish(event).await {
                Ok(Published::Accepted { .. } | Published::Duplicate) => {}
                Err(PublishError::Invalid(why)) => {
                    tracing::error!(
                        seq = entry.seq,
                        why,
                        "MESH event relay: an event was refused; skipped"
                    );
                }
                Err(e @ PublishError::Unavailable(_)) => {
                    save_cursor(&*coord, last).await?;
                    return Err(relay::Error::Publish(e));
                }
            }
        }
        last = entry.seq;
    }
    if last != cursor {
        save_cursor(&*coord, last).await?;
    }
    Ok(entries.len())
}

async fn save_cursor(coord: &dyn spine_store::Coordination, seq: i64) -> relay::Result<()> {
    // Kept for ten years: the cursor must outlive any pause of the relay.
    let until = Utc::now() + TimeDelta::days(3650);
    coord
        .put(CURSOR_SCOPE, CURSOR_KEY, &seq.to_string(), until)
        .await?;
    Ok(())
}

/// The relay's errors: a store or a publish failure, both retried on the next pass.
mod relay {
    #[derive(Debug, thiserror::Error)]
    pub enum Error {
        #[error(transparent)]
        Store(#[from] mesh_store::StoreError),
        #[error(transparent)]
        Publish(spine_events::PublishError),
    }
    pub type Result<T> = std::result::Result<T, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_protocol::Status;

    #[test]
    fn log_entries_become_events_with_their_filters() {
        let entry = LogEntry {
            seq: 7,
            at: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
            change: Change::Acknowledged,
            message_id: "20261204100000000000_ABCDEF".into(),
            sender: "X26ABC1".into(),
            recipient: "X26ABC2".into(),
            workflow_id: "TEST_WORKFLOW".into(),
            status: Status::Acknowledged,
        };
        let e = event_of(&entry).unwrap();
        assert_eq!(e.event_type, "mesh-message-acknowledged-1");
        assert_eq!(e.id, "20261204100000000000_ABCDEF-7");
        assert_eq!(e.subject.as_deref(), Some("20261204100000000000_ABCDEF"));
        assert_eq!(e.filtering["sender"], "X26ABC1");
        assert_eq!(e.filtering["workflowid"], "TEST_WORKFLOW");
        events_check(&e);
        let uploading = LogEntry {
            change: Change::Uploading,
            ..entry
        };
        assert!(event_of(&uploading).is_none());
    }

    /// What the events service would refuse, MESH must not publish.
    fn events_check(e: &Event) {
        let v = serde_json::to_value(e).unwrap();
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["specversion"], "1.0");
    }
}
