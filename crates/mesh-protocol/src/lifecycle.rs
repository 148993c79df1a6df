//! The message lifecycle as pure rules (API.md 5.2, 5.7, 5.8): what expiry does to a
//! message, what the non-delivery report (NDR) it produces looks like, which statuses are
//! final, and the names of the state changes the store records in its event log.
//!
//! The stores call these functions inside their transactions and only save the outcome,
//! so SQLite and PostgreSQL cannot disagree about what an expiry means.
//!
//! Decision (API.md 5.8 leaves it open): an expired message moves to `undeliverable`
//! (the status the sandbox's own fixture of an uncollected message has), with an event
//! carrying code `14`, event `SEND` and the NDR's description, so the sender's tracking
//! and HEAD show why. The NDR itself carries that failure as an `error` event, which is
//! what drives its `Mex-Status*` and `Mex-LinkedMsgID` headers (API.md 4.6).

use crate::model::{Event, Message, MessageType, Metadata, Party, Status};
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;

/// Status code of a non-delivery report (API.md 6.3, 5.7).
pub const NDR_CODE: &str = "14";
/// Status event of a non-delivery report (old DOC example, and the sandbox's own NDR).
pub const NDR_EVENT: &str = "SEND";
/// The sandbox's fixed inbox period, used in its admin-made NDR text (API.md 8.5).
pub const SANDBOX_EXPIRY_DAYS: u64 = 5;

/// Why a message left the inbox uncollected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiryReason {
    /// Not downloaded and acknowledged within the inbox period of `days` days.
    NotCollected { days: u64 },
    /// Its recipient's mailbox was deactivated.
    MailboxDeactivated,
    /// Its payload could not be found when the recipient downloaded it (deleted or lost
    /// outside the server). An OpenSpine text: MESH publishes none.
    PayloadLost,
    /// Expired by hand through the admin API. An OpenSpine text.
    ByOperator,
}

impl ExpiryReason {
    /// The NDR's `Mex-StatusDescription`, word for word as MESH writes it.
    pub fn description(&self) -> String {
        match self {
            ExpiryReason::NotCollected { days } => {
                format!("Message not collected by recipient after {days} days")
            }
            ExpiryReason::MailboxDeactivated => {
                "Message was not collected as the mailbox is deactivated".to_string()
            }
            ExpiryReason::PayloadLost => {
                "Message could not be delivered: its content was lost by the server".to_string()
            }
            ExpiryReason::ByOperator => {
                "Message was withdrawn from the recipient's inbox by the service operator"
                    .to_string()
            }
        }
    }
}

/// The inbox period in whole days for the NDR text, rounded up: a period shorter than a
/// day (tests, demos) reads "after 1 days" rather than the untrue "after 0 days".
pub fn period_days(period: Duration) -> u64 {
    period.as_secs().div_ceil(86_400).max(1)
}

/// `t + d`, or the end of time when that overflows: a period configured absurdly long, or
/// a sandbox clock moved far ahead, must not panic a handler or the sweep.
pub fn later(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, or the start of time when that overflows.
pub fn earlier(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// True for statuses a message never leaves by itself: retention counts from them.
pub fn is_final(status: Status) -> bool {
    matches!(
        status,
        Status::Acknowledged | Status::Undeliverable | Status::Error
    )
}

/// True when `message` is due to expire at `now`: accepted and past its expiry time.
pub fn is_overdue(message: &Message, now: DateTime<Utc>) -> bool {
    message.status() == Status::Accepted && message.expires <= now
}

/// Expires `original` at `now` and returns the NDR for its sender, if one is due.
///
/// The original gets an `undeliverable` event (code 14, event SEND, the reason's text).
/// A report is never reported on (an NDR about an NDR would only loop), and a message
/// whose sender is the central system has nobody to tell: both expire without one.
/// `report_id` is the new report's id; `report_expires` its own expiry time.
pub fn expire(
    original: &mut Message,
    now: DateTime<Utc>,
    reason: &ExpiryReason,
    report_id: String,
    report_expires: DateTime<Utc>,
) -> Option<Message> {
    let description = reason.description();
    original.events.insert(
        0,
        Event {
            status: Status::Undeliverable,
            timestamp: now,
            code: Some(NDR_CODE.into()),
            event: Some(NDR_EVENT.into()),
            description: Some(description.clone()),
            linked_message_id: None,
        },
    );
    if original.message_type == MessageType::Report || original.sender.mailbox_id.is_empty() {
        return None;
    }
    let failure = Event {
        status: Status::Error,
        // Just before the report's own `accepted`, so `accepted` is its current status.
        timestamp: now - TimeDelta::microseconds(1),
        code: Some(NDR_CODE.into()),
        event: Some(NDR_EVENT.into()),
        description: Some(description),
        linked_message_id: Some(original.message_id.clone()),
    };
    Some(Message {
        message_id: report_id,
        sender: Party::central_system(),
        recipient: original.sender.clone(),
        workflow_id: original.workflow_id.clone(),
        message_type: MessageType::Report,
        total_chunks: 0,
        file_size: 0,
        metadata: Metadata {
            subject: original.metadata.subject.clone(),
            local_id: original.metadata.local_id.clone(),
            ..Default::default()
        },
        events: vec![Event::new(Status::Accepted, now), failure],
        created: now,
        expires: report_expires,
        downloaded: None,
    })
}

/// A state change, as named in the store's event log. The names are stable: a
/// publisher downstream (the event service) matches on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// The first chunk of a chunked message arrived; the rest are awaited.
    Uploading,
    /// Complete and in the recipient's inbox (a single-chunk send, the last chunk of a
    /// chunked one, or a report).
    Accepted,
    /// The recipient downloaded the last chunk for the first time.
    Downloaded,
    Acknowledged,
    /// Left the inbox uncollected (status `undeliverable`).
    Expired,
    /// A non-delivery report was created (the entry's message is the report).
    ReportGenerated,
    /// Deleted for good (retention, an abandoned upload, or a sandbox reset).
    Purged,
    /// A status set by the sandbox's admin call.
    StatusSet,
    /// Put back into its recipient's inbox by an operator (admin API).
    Redelivered,
    /// Deleted for good by an operator (admin API), unlike `Purged` by retention.
    Removed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Uploading => "uploading",
            Change::Accepted => "accepted",
            Change::Downloaded => "downloaded",
            Change::Acknowledged => "acknowledged",
            Change::Expired => "expired",
            Change::ReportGenerated => "report_generated",
            Change::Purged => "purged",
            Change::StatusSet => "status_set",
            Change::Redelivered => "redelivered",
            Change::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "uploading" => Change::Uploading,
            "accepted" => Change::Accepted,
            "downloaded" => Change::Downloaded,
            "acknowledged" => Change::Acknowledged,
            "expired" => Change::Expired,
            "report_generated" => Change::ReportGenerated,
            "purged" => Change::Purged,
            "status_set" => Change::StatusSet,
            "redelivered" => Change::Redelivered,
            "removed" => Change::Removed,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(now: DateTime<Utc>) -> Message {
        Message {
            message_id: "20261204090000000000_ABCDEF".into(),
            sender: Party {
                mailbox_id: "X26ABC1".into(),
                ..Default::default()
            },
            recipient: Party {
                mailbox_id: "X26ABC2".into(),
                ..Default::default()
            },
            workflow_id: "WF".into(),
            message_type: MessageType::Data,
            total_chunks: 1,
            file_size: 5,
            metadata: Metadata {
                subject: "subj".into(),
                local_id: "loc".into(),
                file_name: "f.dat".into(),
                ..Default::default()
            },
            events: vec![Event::new(Status::Accepted, now)],
            created: now,
            expires: now + TimeDelta::days(5),
            downloaded: None,
        }
    }

    #[test]
    fn expiry_makes_the_original_undeliverable_and_reports_to_its_sender() {
        let t0 = Utc::now();
        let mut m = data(t0);
        let later = t0 + TimeDelta::days(5);
        assert!(is_overdue(&m, later));
        let reason = ExpiryReason::NotCollected { days: 5 };
        let ndr = expire(&mut m, later, &reason, "R".into(), later).expect("an NDR");
        assert_eq!(m.status(), Status::Undeliverable);
        assert!(!is_overdue(&m, later));
        let why = m.failure_event().expect("failure event");
        assert_eq!(why.code.as_deref(), Some("14"));
        assert_eq!(
            why.description.as_deref(),
            Some("Message not collected by recipient after 5 days")
        );
        assert_eq!(ndr.recipient.mailbox_id, "X26ABC1");
        assert_eq!(ndr.sender.mailbox_id, "");
        assert_eq!(ndr.message_type, MessageType::Report);
        assert_eq!(ndr.status(), Status::Accepted);
        assert_eq!(ndr.workflow_id, "WF");
        assert_eq!(ndr.metadata.subject, "subj");
        assert_eq!(ndr.metadata.local_id, "loc");
        let e = ndr.failure_event().expect("error event");
        assert_eq!(e.status, Status::Error);
        assert_eq!(e.event.as_deref(), Some("SEND"));
        assert_eq!(
            e.linked_message_id.as_deref(),
            Some("20261204090000000000_ABCDEF")
        );
    }

    #[test]
    fn a_report_expires_without_a_report_of_its_own() {
        let t0 = Utc::now();
        let mut m = data(t0);
        m.message_type = MessageType::Report;
        let r = ExpiryReason::MailboxDeactivated;
        assert!(expire(&mut m, t0, &r, "R".into(), t0).is_none());
        assert_eq!(m.status(), Status::Undeliverable);
        assert_eq!(
            r.description(),
            "Message was not collected as the mailbox is deactivated"
        );
    }

    #[test]
    fn period_days_rounds_up_and_never_says_zero() {
        assert_eq!(period_days(Duration::from_secs(432_000)), 5);
        assert_eq!(period_days(Duration::from_secs(2)), 1);
        assert_eq!(period_days(Duration::from_secs(86_401)), 2);
    }

    #[test]
    fn change_names_round_trip() {
        for c in [
            Change::Uploading,
            Change::Accepted,
            Change::Downloaded,
            Change::Acknowledged,
            Change::Expired,
            Change::ReportGenerated,
            Change::Purged,
            Change::StatusSet,
            Change::Redelivered,
            Change::Removed,
        ] {
            assert_eq!(Change::parse(c.as_str()), Some(c));
        }
    }
}
