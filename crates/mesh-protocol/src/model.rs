//! Domain types shared by the store and the HTTP layer (API.md 5.1, 8.1, 8.2).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A mailbox as configured in `mailboxes.jsonl` (API.md 8.1). Unknown fields are refused:
/// a misspelt `pasword` would otherwise give a mailbox with an empty password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mailbox {
    pub mailbox_id: String,
    pub mailbox_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_entity: Option<String>,
    #[serde(default)]
    pub ods_code: String,
    #[serde(default)]
    pub org_code: String,
    #[serde(default)]
    pub org_name: String,
    /// HMAC input only; never logged or echoed (see the `Debug` use in logs: we log ids only).
    #[serde(default)]
    pub password: String,
    #[serde(default = "yes")]
    pub active: bool,
    /// Client-certificate subject CNs allowed to act for this mailbox under mutual TLS.
    /// Empty: any certificate the configured CA trusts (API.md 2.8 leaves binding to
    /// configuration). Not in the sandbox's format; an OpenSpine extension.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_cns: Vec<String>,
}

/// Written by hand so that the password can never reach a log through `{:?}`.
impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("mailbox_id", &self.mailbox_id)
            .field("mailbox_name", &self.mailbox_name)
            .field("ods_code", &self.ods_code)
            .field("password", &"<redacted>")
            .field("active", &self.active)
            .field("certificate_cns", &self.certificate_cns)
            .finish_non_exhaustive()
    }
}

fn yes() -> bool {
    true
}

impl Mailbox {
    /// The party details copied into a message at send time, so later mailbox changes do
    /// not rewrite history (API.md 5.1).
    pub fn party(&self) -> Party {
        Party {
            mailbox_id: self.mailbox_id.clone(),
            mailbox_name: self.mailbox_name.clone(),
            ods_code: self.ods_code.clone(),
            org_code: self.org_code.clone(),
            org_name: self.org_name.clone(),
            billing_entity: self.billing_entity.clone(),
        }
    }
}

/// A workflow and who may send and receive it (API.md 8.2). Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    pub workflow_id: String,
    #[serde(default)]
    pub senders: Vec<String>,
    #[serde(default)]
    pub receivers: Vec<String>,
}

/// Sender or recipient details as stored with a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub mailbox_id: String,
    pub mailbox_name: String,
    pub ods_code: String,
    pub org_code: String,
    pub org_name: String,
    pub billing_entity: Option<String>,
}

impl Party {
    /// The pseudo-sender of system reports (API.md 3.16).
    pub fn central_system() -> Self {
        Party {
            mailbox_id: String::new(),
            mailbox_name: "Central System Mailbox".into(),
            ods_code: "X26".into(),
            org_code: "X26".into(),
            org_name: "NHS England".into(),
            billing_entity: Some("England".into()),
        }
    }
}

/// Message status (API.md 5.2). v1 renders Title case, v2 lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Uploading,
    Accepted,
    Acknowledged,
    Undeliverable,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Uploading => "uploading",
            Status::Accepted => "accepted",
            Status::Acknowledged => "acknowledged",
            Status::Undeliverable => "undeliverable",
            Status::Error => "error",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Status::Uploading => "Uploading",
            Status::Accepted => "Accepted",
            Status::Acknowledged => "Acknowledged",
            Status::Undeliverable => "Undeliverable",
            Status::Error => "Error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "uploading" => Status::Uploading,
            "accepted" => Status::Accepted,
            "acknowledged" => Status::Acknowledged,
            "undeliverable" => Status::Undeliverable,
            "error" => Status::Error,
            _ => return None,
        })
    }

    /// Failure statuses. SBX counts only `error`; API.md 11 #15 recommends counting
    /// `undeliverable` too, so that tracking never calls an undelivered message a success.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Error | Status::Undeliverable)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageType {
    Data,
    Report,
}

impl MessageType {
    /// Header form (`Mex-MessageType`).
    pub fn upper(self) -> &'static str {
        match self {
            MessageType::Data => "DATA",
            MessageType::Report => "REPORT",
        }
    }
    /// Tracking form (`Data` / `Report`).
    pub fn title(self) -> &'static str {
        match self {
            MessageType::Data => "Data",
            MessageType::Report => "Report",
        }
    }
}

/// One entry of a message's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub status: Status,
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub linked_message_id: Option<String>,
}

impl Event {
    pub fn new(status: Status, timestamp: DateTime<Utc>) -> Self {
        Event {
            status,
            timestamp,
            code: None,
            event: None,
            description: None,
            linked_message_id: None,
        }
    }
}

/// Sender-supplied metadata (API.md 4.1), stored as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub subject: String,
    pub content_type: String,
    /// `""` or `gzip`: the transport encoding the chunks are stored in.
    pub content_encoding: String,
    pub file_name: String,
    pub local_id: String,
    pub partner_id: String,
    pub checksum: String,
    pub encrypted: bool,
    pub compressed: bool,
}

/// A message record (API.md 5.1), without its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub message_id: String,
    pub sender: Party,
    pub recipient: Party,
    pub workflow_id: String,
    pub message_type: MessageType,
    pub total_chunks: u32,
    /// Sum of stored chunk sizes; 0 until the message is complete.
    pub file_size: u64,
    pub metadata: Metadata,
    /// Newest first; the first event is the current status.
    pub events: Vec<Event>,
    pub created: DateTime<Utc>,
    /// When it leaves the inbox uncollected: set when it becomes available (API.md 5.8).
    pub expires: DateTime<Utc>,
    /// When the recipient first downloaded its last chunk. Not a status (MESH has none
    /// for it), but a state change the event log reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloaded: Option<DateTime<Utc>>,
}

impl Message {
    pub fn status(&self) -> Status {
        self.events
            .first()
            .map(|e| e.status)
            .unwrap_or(Status::Accepted)
    }

    /// The most recent failure event, which drives the status headers and tracking fields
    /// (API.md 4.6, 7.1).
    pub fn failure_event(&self) -> Option<&Event> {
        self.events.iter().find(|e| e.status.is_failure())
    }

    /// When the recipient acknowledged the message, if it did.
    pub fn acknowledged_at(&self) -> Option<DateTime<Utc>> {
        self.events
            .iter()
            .find(|e| e.status == Status::Acknowledged)
            .map(|e| e.timestamp)
    }

    /// `Mex-StatusTimestamp`: the latest accepted-or-failure event (API.md 4.5).
    pub fn status_time(&self) -> DateTime<Utc> {
        self.events
            .iter()
            .find(|e| e.status == Status::Accepted || e.status.is_failure())
            .map(|e| e.timestamp)
            .unwrap_or(self.created)
    }

    /// `Last-Modified`: the time of the latest event.
    pub fn last_modified(&self) -> DateTime<Utc> {
        self.events
            .first()
            .map(|e| e.timestamp)
            .unwrap_or(self.created)
    }

    /// True when the message counts as delivered successfully (v1 `statusSuccess`).
    pub fn is_success(&self) -> bool {
        self.message_type == MessageType::Data && self.failure_event().is_none()
    }

    /// The file name clients see: the sender's, or `<id>.dat`.
    pub fn file_name(&self) -> String {
        if self.metadata.file_name.is_empty() {
            format!("{}.dat", self.message_id)
        } else {
            self.metadata.file_name.clone()
        }
    }

    /// The last chunk arrived: the message is `accepted` and its inbox period starts now
    /// (API.md 5.8 counts expiry from when it became available, not from the first chunk).
    pub fn become_available(&mut self, now: DateTime<Utc>) {
        let period = self.expires - self.created;
        self.expires = now.checked_add_signed(period).unwrap_or(self.expires);
        self.events.insert(0, Event::new(Status::Accepted, now));
    }

    pub fn is_gzip(&self) -> bool {
        self.metadata.content_encoding == "gzip"
    }
}
