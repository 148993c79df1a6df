//! The embedded metadata store: SQLite through sqlx, in WAL mode with `synchronous=FULL`
//! so that a commit is on disk when it returns.
//!
//! Writes go to one connection owned by the group-commit writer (`group.rs`): SQLite has
//! one writer at a time anyway, and batching concurrent writes into one transaction turns
//! N fsyncs into one. Reads use their own pool and, thanks to WAL, never wait for the
//! writer and only ever see committed data.

use crate::meta::{
    AckOutcome, ChunkRecord, ExpiryOutcome, ExpirySweep, InboxEntry, LogEntry, MetaStore,
    PurgeOutcome, PurgeSweep, PutChunkOutcome, Side,
};
use crate::rows::{chunk_columns, chunk_from_row, decode, encode};
use crate::sqlite_lifecycle::log;
use crate::{Result, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mesh_protocol::filter::Kind;
use mesh_protocol::{Change, Event, Message, Status, WorkflowFilter};
use spine_store::writer::Writer;
use spine_store::{Coordination, SqliteCoordination};
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

pub struct SqliteMetaStore {
    pub(crate) writer: Writer<Reply>,
    pub(crate) reader: SqlitePool,
    /// The last inbox position handed out. Only the writer task assigns positions, so a
    /// counter seeded from the database at start replaces a `MAX()` query per write; a
    /// rolled-back write leaves a gap, which ordering does not mind.
    pub(crate) seq: Arc<AtomicI64>,
    coord: Arc<SqliteCoordination>,
}

/// Token replay records, leases and rate windows live in the coordination store
/// (`spine-store`), a database file of its own beside the main one, shared with the other
/// services of the process: see [`spine_store::SqliteCoordination`] for its durability
/// and batching. Message writes keep their own `synchronous=FULL` commits and never queue
/// behind token writes.
pub(crate) const COORDINATION_FILE: &str = "coordination.db";

impl SqliteMetaStore {
    /// Opens (creating if needed) the database file and runs the embedded migrations.
    pub async fn open(path: &Path, readers: u32) -> Result<Self> {
        let (mut conn, reader) =
            spine_store::embedded::open(path, readers, &sqlx::migrate!("./migrations/sqlite"))
                .await?;
        let last: i64 = sqlx::query("SELECT COALESCE(MAX(inbox_seq), 0) AS seq FROM messages")
            .fetch_one(&mut conn)
            .await?
            .try_get("seq")?;
        let writer = Writer::start(conn);
        let coord_path = path.with_file_name(COORDINATION_FILE);
        let coord = SqliteCoordination::open(&coord_path)
            .await
            .map_err(|e| StoreError::Commit(format!("{}: {e}", coord_path.display())))?;
        Ok(SqliteMetaStore {
            writer,
            reader,
            seq: Arc::new(AtomicI64::new(last)),
            coord: Arc::new(coord),
        })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.coord.close().await;
    }
}

pub(crate) fn next_seq(seq: &AtomicI64) -> i64 {
    seq.fetch_add(1, Ordering::Relaxed) + 1
}

pub(crate) async fn load_for_update(
    tx: &mut SqliteConnection,
    id: &str,
) -> Result<Option<Message>> {
    let row = sqlx::query("SELECT record FROM messages WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    row.as_ref().map(decode).transpose()
}

pub(crate) async fn save(
    tx: &mut SqliteConnection,
    message: &Message,
    seq: Option<i64>,
) -> Result<()> {
    let mut q = QueryBuilder::<Sqlite>::new("UPDATE messages SET status = ");
    q.push_bind(message.status().as_str())
        .push(", record = ")
        .push_bind(encode(message)?)
        .push(", expires_at = ")
        .push_bind(message.expires.timestamp())
        .push(", changed_at = ")
        .push_bind(message.last_modified().timestamp());
    if let Some(seq) = seq {
        q.push(", inbox_seq = ").push_bind(seq);
    }
    q.push(" WHERE id = ").push_bind(&message.message_id);
    q.build().execute(&mut *tx).await?;
    Ok(())
}

pub(crate) async fn w_create_message(
    tx: &mut SqliteConnection,
    counter: &AtomicI64,
    message: &Message,
    first: &ChunkRecord,
    change: Change,
) -> Result<()> {
    let seq = if message.status() == Status::Accepted {
        Some(next_seq(counter))
    } else {
        None
    };
    sqlx::query(
        "INSERT INTO messages (id, sender_id, recipient_id, workflow_id, local_id, status, \
         total_chunks, inbox_seq, created, record, expires_at, changed_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&message.message_id)
    .bind(&message.sender.mailbox_id)
    .bind(&message.recipient.mailbox_id)
    .bind(&message.workflow_id)
    .bind(&message.metadata.local_id)
    .bind(message.status().as_str())
    .bind(message.total_chunks as i64)
    .bind(seq)
    .bind(message.created.to_rfc3339())
    .bind(encode(message)?)
    .bind(message.expires.timestamp())
    .bind(message.last_modified().timestamp())
    .execute(&mut *tx)
    .await?;
    log(tx, change, message, message.last_modified()).await?;
    if message.total_chunks > 0 {
        let (key, data) = chunk_columns(first);
        sqlx::query(
            "INSERT INTO chunks (message_id, chunk_no, size, blob_key, data) \
             VALUES (?, 1, ?, ?, ?)",
        )
        .bind(&message.message_id)
        .bind(first.size as i64)
        .bind(key)
        .bind(data)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn w_put_chunk(
    tx: &mut SqliteConnection,
    counter: &AtomicI64,
    message_id: &str,
    number: u32,
    chunk: &ChunkRecord,
    now: DateTime<Utc>,
) -> Result<PutChunkOutcome> {
    let Some(mut message) = load_for_update(tx, message_id).await? else {
        return Ok(PutChunkOutcome::NoSuchMessage);
    };
    if message.status() != Status::Uploading {
        return Ok(PutChunkOutcome::NotUploading);
    }
    let old = sqlx::query("SELECT blob_key FROM chunks WHERE message_id = ? AND chunk_no = ?")
        .bind(message_id)
        .bind(number as i64)
        .fetch_optional(&mut *tx)
        .await?;
    let replaced: Option<String> = match old {
        Some(row) => row.try_get("blob_key")?,
        None => None,
    };
    let (key, data) = chunk_columns(chunk);
    sqlx::query(
        "INSERT OR REPLACE INTO chunks (message_id, chunk_no, size, blob_key, data) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(message_id)
    .bind(number as i64)
    .bind(chunk.size as i64)
    .bind(key)
    .bind(data)
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM chunks WHERE message_id = ?",
    )
    .bind(message_id)
    .fetch_one(&mut *tx)
    .await?;
    let stored: i64 = row.try_get("n")?;
    let completed = stored >= message.total_chunks as i64;
    if completed {
        let bytes: i64 = row.try_get("bytes")?;
        message.file_size = bytes as u64;
        message.become_available(now);
        let seq = next_seq(counter);
        save(tx, &message, Some(seq)).await?;
        log(tx, Change::Accepted, &message, now).await?;
    }
    Ok(PutChunkOutcome::Stored {
        completed,
        replaced: replaced.filter(|k| Some(k.as_str()) != key),
    })
}

async fn w_acknowledge(
    tx: &mut SqliteConnection,
    message_id: &str,
    recipient: &str,
    now: DateTime<Utc>,
) -> Result<AckOutcome> {
    let Some(mut message) = load_for_update(tx, message_id).await? else {
        return Ok(AckOutcome::NoSuchMessage);
    };
    if message.recipient.mailbox_id != recipient {
        return Ok(AckOutcome::NotRecipient);
    }
    if message.status() != Status::Accepted {
        return Ok(AckOutcome::Unchanged);
    }
    message
        .events
        .insert(0, Event::new(Status::Acknowledged, now));
    save(tx, &message, None).await?;
    log(tx, Change::Acknowledged, &message, now).await?;
    Ok(AckOutcome::Acknowledged)
}

async fn w_add_event(
    tx: &mut SqliteConnection,
    counter: &AtomicI64,
    message_id: &str,
    event: &Event,
) -> Result<bool> {
    let Some(mut message) = load_for_update(tx, message_id).await? else {
        return Ok(false);
    };
    message.events.insert(0, event.clone());
    let seq = if event.status == Status::Accepted {
        Some(next_seq(counter))
    } else {
        None
    };
    save(tx, &message, seq).await?;
    log(tx, Change::StatusSet, &message, event.timestamp).await?;
    Ok(true)
}

async fn w_reset_all(tx: &mut SqliteConnection, now: DateTime<Utc>) -> Result<Vec<String>> {
    sqlx::query(
        "INSERT INTO message_log (at, change, message_id, sender_id, recipient_id, workflow_id, \
         status) SELECT ?, 'purged', id, sender_id, recipient_id, workflow_id, status \
         FROM messages ORDER BY id",
    )
    .bind(now.timestamp_micros())
    .execute(&mut *tx)
    .await?;
    let rows = sqlx::query("SELECT blob_key FROM chunks WHERE blob_key IS NOT NULL")
        .fetch_all(&mut *tx)
        .await?;
    let keys = rows
        .iter()
        .map(|r| r.try_get::<String, _>("blob_key"))
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query("DELETE FROM chunks").execute(&mut *tx).await?;
    sqlx::query("DELETE FROM messages")
        .execute(&mut *tx)
        .await?;
    Ok(keys)
}

async fn w_reset_mailbox(tx: &mut SqliteConnection, mailbox: &str) -> Result<()> {
    sqlx::query("UPDATE messages SET in_inbox = 0 WHERE recipient_id = ?")
        .bind(mailbox)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE messages SET in_outbox = 0 WHERE sender_id = ?")
        .bind(mailbox)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// What a MESH write job returns through the group-commit writer.
#[derive(Debug)]
pub enum Reply {
    Done,
    Flag(bool),
    Put(crate::meta::PutChunkOutcome),
    Ack(crate::meta::AckOutcome),
    Keys(Vec<String>),
    Count(u64),
    Expired(crate::meta::ExpiryOutcome),
    Purged(crate::meta::PurgeOutcome),
    Action(crate::operator::ActionOutcome),
}

/// A MESH write for the group-commit writer.
pub(crate) type Job = spine_store::writer::Job<Reply>;

/// Wraps a write as a group-commit job. The closure owns its inputs: it runs later, on the
/// writer task.
pub(crate) fn job<F>(f: F) -> Job
where
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> futures::future::BoxFuture<'c, Result<Reply>>
        + Send
        + 'static,
{
    Box::new(f)
}

pub(crate) fn unexpected(reply: Reply) -> StoreError {
    StoreError::Corrupt(format!("writer answered {reply:?}"))
}

#[async_trait]
impl MetaStore for SqliteMetaStore {
    async fn create_message(&self, message: &Message, first: &ChunkRecord) -> Result<()> {
        let (message, first, counter) = (message.clone(), first.clone(), self.seq.clone());
        let j = job(move |tx| {
            Box::pin(async move {
                let change = match message.status() {
                    Status::Uploading => Change::Uploading,
                    _ => Change::Accepted,
                };
                w_create_message(tx, &counter, &message, &first, change).await?;
                Ok(Reply::Done)
            })
        });
        match self.writer.write(j).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn put_chunk(
        &self,
        message_id: &str,
        number: u32,
        chunk: &ChunkRecord,
        now: DateTime<Utc>,
    ) -> Result<PutChunkOutcome> {
        let (id, chunk, counter) = (message_id.to_string(), chunk.clone(), self.seq.clone());
        let j = job(move |tx| {
            Box::pin(async move {
                Ok(Reply::Put(
                    w_put_chunk(tx, &counter, &id, number, &chunk, now).await?,
                ))
            })
        });
        match self.writer.write(j).await? {
            Reply::Put(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    async fn acknowledge(
        &self,
        message_id: &str,
        recipient: &str,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome> {
        let (id, recipient) = (message_id.to_string(), recipient.to_string());
        let j = job(move |tx| {
            Box::pin(async move { Ok(Reply::Ack(w_acknowledge(tx, &id, &recipient, now).await?)) })
        });
        match self.writer.write(j).await? {
            Reply::Ack(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    async fn add_event(&self, message_id: &str, event: &Event) -> Result<bool> {
        let (id, event, counter) = (message_id.to_string(), event.clone(), self.seq.clone());
        let j = job(move |tx| {
            Box::pin(async move { Ok(Reply::Flag(w_add_event(tx, &counter, &id, &event).await?)) })
        });
        match self.writer.write(j).await? {
            Reply::Flag(found) => Ok(found),
            other => Err(unexpected(other)),
        }
    }

    async fn reset_all(&self) -> Result<Vec<String>> {
        let now = Utc::now();
        let j =
            job(move |tx| Box::pin(async move { Ok(Reply::Keys(w_reset_all(tx, now).await?)) }));
        match self.writer.write(j).await? {
            Reply::Keys(keys) => Ok(keys),
            other => Err(unexpected(other)),
        }
    }

    async fn reset_mailbox(&self, mailbox: &str) -> Result<()> {
        let mailbox = mailbox.to_string();
        let j = job(move |tx| {
            Box::pin(async move {
                w_reset_mailbox(tx, &mailbox).await?;
                Ok(Reply::Done)
            })
        });
        match self.writer.write(j).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn message(&self, message_id: &str) -> Result<Option<Message>> {
        let row = sqlx::query("SELECT record FROM messages WHERE id = ?")
            .bind(message_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn stored_bytes(&self, message_id: &str) -> Result<u64> {
        let row =
            sqlx::query("SELECT COALESCE(SUM(size), 0) AS bytes FROM chunks WHERE message_id = ?")
                .bind(message_id)
                .fetch_one(&self.reader)
                .await?;
        let bytes: i64 = row.try_get("bytes")?;
        Ok(bytes as u64)
    }

    async fn chunk(&self, message_id: &str, number: u32) -> Result<Option<ChunkRecord>> {
        let row = sqlx::query(
            "SELECT size, blob_key, data FROM chunks WHERE message_id = ? AND chunk_no = ?",
        )
        .bind(message_id)
        .bind(number as i64)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref()
            .map(chunk_from_row)
            .transpose()
            .map(Option::flatten)
    }

    async fn message_with_chunk(
        &self,
        message_id: &str,
        number: u32,
    ) -> Result<Option<(Message, Option<ChunkRecord>)>> {
        let row = sqlx::query(
            "SELECT m.record, c.size, c.blob_key, c.data FROM messages m \
             LEFT JOIN chunks c ON c.message_id = m.id AND c.chunk_no = ? WHERE m.id = ?",
        )
        .bind(number as i64)
        .bind(message_id)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((decode(&row)?, chunk_from_row(&row)?)))
    }

    async fn inbox(
        &self,
        mailbox: &str,
        after: Option<i64>,
        filter: Option<&WorkflowFilter>,
        limit: u32,
    ) -> Result<Vec<InboxEntry>> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT id, inbox_seq FROM messages WHERE status = 'accepted' AND in_inbox = 1 \
             AND recipient_id = ",
        );
        q.push_bind(mailbox);
        if let Some(after) = after {
            q.push(" AND inbox_seq > ").push_bind(after);
        }
        if let Some(f) = filter {
            let (negate, kind, needle) = f.parts();
            q.push(if negate { " AND NOT (" } else { " AND (" });
            match kind {
                Kind::Equals => q.push("workflow_id = ").push_bind(needle.to_string()),
                // substr/instr are byte-exact and case-sensitive, unlike LIKE.
                Kind::StartsWith => q
                    .push("substr(workflow_id, 1, length(")
                    .push_bind(needle.to_string())
                    .push(")) = ")
                    .push_bind(needle.to_string()),
                Kind::Contains => q
                    .push("instr(workflow_id, ")
                    .push_bind(needle.to_string())
                    .push(") > 0"),
            };
            q.push(")");
        }
        q.push(" ORDER BY inbox_seq LIMIT ").push_bind(limit as i64);
        let rows = q.build().fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| {
                Ok(InboxEntry {
                    seq: r.try_get("inbox_seq")?,
                    message_id: r.try_get("id")?,
                })
            })
            .collect()
    }

    async fn inbox_position(&self, mailbox: &str, message_id: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT inbox_seq FROM messages WHERE id = ? AND recipient_id = ? \
             AND inbox_seq IS NOT NULL",
        )
        .bind(message_id)
        .bind(mailbox)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| r.try_get("inbox_seq")).transpose()?)
    }

    async fn inbox_count(&self, mailbox: &str) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM messages WHERE status = 'accepted' AND in_inbox = 1 \
             AND recipient_id = ?",
        )
        .bind(mailbox)
        .fetch_one(&self.reader)
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n as u64)
    }

    async fn by_local_id(&self, sender: &str, local_id: &str) -> Result<Vec<Message>> {
        let rows = sqlx::query(
            "SELECT record FROM messages WHERE sender_id = ? AND local_id = ? AND local_id <> '' \
             AND in_outbox = 1 LIMIT 2",
        )
        .bind(sender)
        .bind(local_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(decode).collect()
    }

    async fn in_outbox(&self, sender: &str, message_id: &str) -> Result<bool> {
        let row =
            sqlx::query("SELECT 1 FROM messages WHERE id = ? AND sender_id = ? AND in_outbox = 1")
                .bind(message_id)
                .bind(sender)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.is_some())
    }

    async fn blob_referenced(&self, key: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM chunks WHERE blob_key = ? LIMIT 1")
            .bind(key)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.is_some())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    fn coordination(&self) -> Arc<dyn Coordination> {
        self.coord.clone()
    }

    async fn mark_downloaded(&self, message_id: &str, now: DateTime<Utc>) -> Result<bool> {
        self.do_mark_downloaded(message_id, now).await
    }

    async fn act_on_message(
        &self,
        message_id: &str,
        action: &crate::operator::OperatorAction,
        now: DateTime<Utc>,
    ) -> Result<crate::operator::ActionOutcome> {
        self.do_act_on_message(message_id, action, now).await
    }

    async fn search_messages(&self, query: &crate::operator::MessageQuery) -> Result<Vec<Message>> {
        self.do_search(query).await
    }

    async fn message_log(&self, message_id: &str) -> Result<Vec<LogEntry>> {
        self.do_message_log(message_id).await
    }

    async fn inbox_depths(&self, limit: u32) -> Result<Vec<crate::operator::InboxDepth>> {
        self.do_inbox_depths(limit).await
    }

    async fn stats(&self) -> Result<crate::operator::StoreStats> {
        self.do_stats().await
    }

    async fn expire_due(&self, sweep: &ExpirySweep) -> Result<ExpiryOutcome> {
        self.do_expire_due(sweep).await
    }

    async fn purge_due(&self, sweep: &PurgeSweep) -> Result<PurgeOutcome> {
        self.do_purge_due(sweep).await
    }

    async fn lifecycle_backlog(
        &self,
        expiry: Option<&ExpirySweep>,
        purge: &PurgeSweep,
    ) -> Result<u64> {
        self.do_lifecycle_backlog(expiry, purge).await
    }

    async fn log_after(&self, after: i64, limit: u32) -> Result<Vec<LogEntry>> {
        self.do_log_after(after, limit).await
    }

    async fn trim_log(&self, before: DateTime<Utc>) -> Result<u64> {
        self.do_trim_log(before).await
    }

    async fn rich(
        &self,
        side: Side,
        mailbox: &str,
        since: DateTime<Utc>,
        before_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        self.do_rich(side, mailbox, since, before_id, limit).await
    }
}
