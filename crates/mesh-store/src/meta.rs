//! The metadata store trait: everything about messages except their payload bytes.

use crate::Result;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use mesh_protocol::{Change, Event, ExpiryReason, Message, Status, WorkflowFilter};

/// Where a chunk's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkLocation {
    /// Small payloads live in the metadata store itself: one fsync instead of two.
    Inline(Bytes),
    /// Key in the [`crate::BlobStore`].
    Blob(String),
}

/// A stored chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    pub size: u64,
    pub location: ChunkLocation,
}

/// One inbox entry: the message id and its position, which paging resumes after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub seq: i64,
    pub message_id: String,
}

/// What happened to an uploaded chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutChunkOutcome {
    /// Stored. `completed` when this made every chunk present, so the message moved to
    /// `accepted`; `replaced` is the blob key of an earlier upload of the same chunk, which
    /// the caller deletes now that nothing refers to it.
    Stored {
        completed: bool,
        replaced: Option<String>,
    },
    /// The message no longer takes chunks (complete, or gone): 423 for the client.
    NotUploading,
    NoSuchMessage,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    NoSuchMessage,
    /// The caller is not the message's recipient.
    NotRecipient,
    /// `accepted` → `acknowledged`.
    Acknowledged,
    /// Any other status: left alone (acknowledging is idempotent).
    Unchanged,
}

/// One entry of the event log: a state change of a message, written in the same
/// transaction as the change. `seq` increases by one per entry across the whole store,
/// with no gaps, and entries become readable in `seq` order, so a reader that resumes
/// "after N" neither misses nor repeats one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub change: Change,
    pub message_id: String,
    pub sender: String,
    pub recipient: String,
    pub workflow_id: String,
    /// The message's status after the change.
    pub status: Status,
}

/// One batch of the expiry sweep (API.md 5.7, 5.8).
#[derive(Debug, Clone)]
pub struct ExpirySweep {
    pub now: DateTime<Utc>,
    /// The text for messages that simply were not collected in time.
    pub not_collected: ExpiryReason,
    /// Recipients whose mailbox is deactivated: their accepted messages expire now, with
    /// the "mailbox is deactivated" text, whatever their expiry time.
    pub inactive: Vec<String>,
    /// How long a new report stays in its inbox.
    pub report_period: chrono::TimeDelta,
    /// Most messages in this batch (one transaction).
    pub limit: u32,
    /// Added to each report's index in the batch when its id is made: batches of one
    /// sweep share `now`, and ids begin with it, so each batch needs its own range.
    pub id_offset: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryOutcome {
    pub expired: u64,
    pub reports: u64,
}

/// One batch of the purge: records past retention and abandoned uploads.
#[derive(Debug, Clone)]
pub struct PurgeSweep {
    /// Final messages (acknowledged, undeliverable, error) whose last change is at or
    /// before this go. `None`: keep them forever.
    pub retention_cutoff: Option<DateTime<Utc>>,
    /// Uploads still `uploading` since at or before this go. `None`: keep them.
    pub upload_cutoff: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
    pub limit: u32,
}

/// What a purge batch deleted. `blob_keys` are payloads no record refers to any more,
/// for the caller to delete once the transaction has committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeOutcome {
    pub purged: u64,
    pub abandoned: u64,
    pub bytes: u64,
    pub blob_keys: Vec<String>,
}

/// Which list a rich view reads (API.md 3.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Inbox,
    Outbox,
}

/// Message metadata. Implementations make every method atomic and durable on return:
/// a crash after `Ok` keeps the change, a crash before it leaves no trace of it.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Creates a message with its first chunk. When the message has one chunk its status is
    /// `accepted` and it enters the recipient's inbox in the same transaction.
    async fn create_message(&self, message: &Message, first: &ChunkRecord) -> Result<()>;

    /// Stores chunk `number` of an `uploading` message, completing it when all chunks
    /// `1..=total` are present (API.md 11 #8).
    async fn put_chunk(
        &self,
        message_id: &str,
        number: u32,
        chunk: &ChunkRecord,
        now: DateTime<Utc>,
    ) -> Result<PutChunkOutcome>;

    async fn message(&self, message_id: &str) -> Result<Option<Message>>;

    /// Bytes stored so far for a message, to hold a chunked upload to the message limit.
    async fn stored_bytes(&self, message_id: &str) -> Result<u64>;

    async fn chunk(&self, message_id: &str, number: u32) -> Result<Option<ChunkRecord>>;

    /// A message and one of its chunks in one query: a download needs both.
    async fn message_with_chunk(
        &self,
        message_id: &str,
        number: u32,
    ) -> Result<Option<(Message, Option<ChunkRecord>)>>;

    /// Accepted messages in `mailbox`'s inbox, oldest first, after position `after`,
    /// filtered before the limit is applied (API.md 3.2).
    async fn inbox(
        &self,
        mailbox: &str,
        after: Option<i64>,
        filter: Option<&WorkflowFilter>,
        limit: u32,
    ) -> Result<Vec<InboxEntry>>;

    /// Inbox position of a message, for resuming v1 paging from a message id.
    async fn inbox_position(&self, mailbox: &str, message_id: &str) -> Result<Option<i64>>;

    async fn inbox_count(&self, mailbox: &str) -> Result<u64>;

    /// Moves an `accepted` message to `acknowledged` when `recipient` is its recipient; any
    /// other status is left alone. Checking the recipient inside the write saves a read.
    async fn acknowledge(
        &self,
        message_id: &str,
        recipient: &str,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome>;

    /// Messages sent by `sender` (and still in its outbox) with this local id.
    async fn by_local_id(&self, sender: &str, local_id: &str) -> Result<Vec<Message>>;

    /// True when the message is still in its sender's outbox (sandbox reset removes it).
    async fn in_outbox(&self, sender: &str, message_id: &str) -> Result<bool>;

    /// Pushes a status event; it becomes the current status. `accepted` puts the message
    /// (back) at the end of the recipient's inbox. Returns false for an unknown id.
    async fn add_event(&self, message_id: &str, event: &Event) -> Result<bool>;

    /// Deletes every message; returns the blob keys that are no longer referenced.
    async fn reset_all(&self) -> Result<Vec<String>>;

    /// Empties a mailbox's inbox and outbox lists; messages stay addressable by id.
    async fn reset_mailbox(&self, mailbox: &str) -> Result<()>;

    /// True when some chunk record points at this blob key (garbage collection).
    async fn blob_referenced(&self, key: &str) -> Result<bool>;

    /// Succeeds when the store answers queries (readiness).
    async fn ping(&self) -> Result<()>;

    /// Records one use of an authentication token `(mailbox, nonce, count)` and returns
    /// false when it was already recorded. The record lives here, not in a server node, so
    /// that a token replayed against another node sharing this store is refused too. It is
    /// kept until `expires_at`, which the caller sets to the last moment its clock check
    /// would still accept the token: after that the clock check refuses it anyway. Records
    /// that expired before `now` (the caller's clock, the one its clock check uses) are
    /// swept from time to time.
    ///
    /// A claim in the coordination store ([`MetaStore::coordination`]), scope
    /// `mesh-token`: the one interface every service's use-once keys go through.
    async fn use_token(
        &self,
        mailbox: &str,
        nonce: &str,
        count: u64,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.coordination()
            .use_once(
                TOKEN_SCOPE,
                &token_key(mailbox, nonce, count),
                expires_at,
                now,
            )
            .await
    }

    /// Forgets a use, so that a client retrying a request the server failed (5xx, 425,
    /// 429) with the identical token is not refused as a replay.
    async fn release_token(&self, mailbox: &str, nonce: &str, count: u64) -> Result<()> {
        self.coordination()
            .release(TOKEN_SCOPE, &token_key(mailbox, nonce, count))
            .await
    }

    /// Takes or renews the lease `name` for `holder` until `ttl` from now, and returns
    /// whether `holder` holds it. A job that one node at a time should run (garbage
    /// collection) takes a lease first, so the lease lives where every node sees it and
    /// passes to another node when its holder dies.
    async fn try_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool> {
        self.coordination().try_lease(name, holder, ttl).await
    }

    /// The coordination store this metadata store's nodes share (`spine-store`): token
    /// replay, leases and rate windows here, and the other services' keys beside them.
    fn coordination(&self) -> std::sync::Arc<dyn spine_store::Coordination>;

    /// Records that the recipient downloaded the message's last chunk, the first time only.
    /// Returns false when it was already recorded (or the message is gone).
    async fn mark_downloaded(&self, message_id: &str, now: DateTime<Utc>) -> Result<bool>;

    /// Expires one batch of overdue messages, each with its NDR, in one transaction.
    /// Messages another node is expiring at the same moment are skipped, never done twice.
    async fn expire_due(&self, sweep: &ExpirySweep) -> Result<ExpiryOutcome>;

    /// An operator's action on one message (expire with its report, remove, redeliver),
    /// in one transaction with its log entries. Exactly one of several nodes acting on the
    /// same message at once acts; the others find it changed.
    async fn act_on_message(
        &self,
        message_id: &str,
        action: &crate::operator::OperatorAction,
        now: DateTime<Utc>,
    ) -> Result<crate::operator::ActionOutcome>;

    /// Messages matching `query`, newest first (the operator's search).
    async fn search_messages(&self, query: &crate::operator::MessageQuery) -> Result<Vec<Message>>;

    /// Every event-log entry of one message, oldest first (its history).
    async fn message_log(&self, message_id: &str) -> Result<Vec<LogEntry>>;

    /// The `limit` deepest inboxes: waiting (accepted, unacknowledged) messages and when
    /// the oldest of them was sent.
    async fn inbox_depths(&self, limit: u32) -> Result<Vec<crate::operator::InboxDepth>>;

    /// Messages by status and bytes stored, for the metrics.
    async fn stats(&self) -> Result<crate::operator::StoreStats>;

    /// Deletes one batch of records past retention and of abandoned uploads, in one
    /// transaction.
    async fn purge_due(&self, sweep: &PurgeSweep) -> Result<PurgeOutcome>;

    /// Work the sweep has not done yet: overdue accepted messages (when `expiry` is given),
    /// and records past retention or upload timeout.
    async fn lifecycle_backlog(
        &self,
        expiry: Option<&ExpirySweep>,
        purge: &PurgeSweep,
    ) -> Result<u64>;

    /// Event-log entries with `seq > after`, oldest first, at most `limit`.
    async fn log_after(&self, after: i64, limit: u32) -> Result<Vec<LogEntry>>;

    /// Deletes the event log's oldest entries, up to the last one written before `before`
    /// (a prefix of the sequence, so the log never gets a hole); returns how many.
    async fn trim_log(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Messages in a mailbox's inbox (delivered at some point, any status) or outbox,
    /// created after `since`, newest first, continuing below `before_id`.
    async fn rich(
        &self,
        side: Side,
        mailbox: &str,
        since: DateTime<Utc>,
        before_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>>;

    /// Counts one request by `mailbox` in the fixed window that starts at `window_start`
    /// (Unix seconds) and returns the count so far, for a rate limit that holds across all
    /// the nodes sharing this store. Windows older than a minute are swept.
    async fn count_request(&self, mailbox: &str, window_start: i64) -> Result<u64> {
        self.coordination()
            .count(
                RATE_SCOPE,
                mailbox,
                window_start,
                std::time::Duration::from_secs(60),
            )
            .await
    }
}

/// Coordination scopes of MESH.
const TOKEN_SCOPE: &str = "mesh-token";
const RATE_SCOPE: &str = "mesh-rate";

/// `(mailbox, nonce, count)` as one key, length-prefixed so no triple can pose as another.
fn token_key(mailbox: &str, nonce: &str, count: u64) -> String {
    format!("{}:{mailbox}{}:{nonce}{count}", mailbox.len(), nonce.len())
}
