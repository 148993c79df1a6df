//! The shared metadata store: PostgreSQL through sqlx, for many stateless server nodes.
//!
//! Everything a node would otherwise keep to itself lives here: message state, inbox
//! positions, used tokens, leases and rate-limit windows. Each write is one transaction;
//! concurrent writers of one message serialise on its row lock (`SELECT … FOR UPDATE`),
//! and writers that hand out inbox positions serialise per recipient on an advisory lock,
//! so positions in one inbox are given in commit order.
//!
//! Outages: the pool waits at most `acquire_timeout` for a connection and every statement
//! at most `statement_timeout`, so a request fails fast with an error (a MESH 5xx that
//! clients retry) instead of hanging while the database is away, and the pool reconnects
//! by itself when it is back.

use crate::meta::{
    AckOutcome, ChunkRecord, ExpiryOutcome, ExpirySweep, InboxEntry, LogEntry, MetaStore,
    PurgeOutcome, PurgeSweep, PutChunkOutcome, Side,
};
use crate::pg_lifecycle::{append_log, pending};
use crate::rows::{chunk_columns, chunk_from_row, decode, encode};
use crate::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mesh_protocol::filter::Kind;
use mesh_protocol::{Change, Event, Message, Status, WorkflowFilter};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Postgres, QueryBuilder, Row};
use std::str::FromStr;
use std::time::Duration;

/// How the node talks to PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections this node holds at most.
    pub max_connections: u32,
    /// How long a request waits for a free (or new) connection before it fails.
    pub acquire_timeout: Duration,
    /// Longest a single statement may run.
    pub statement_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

pub struct PgMetaStore {
    pub(crate) pool: PgPool,
    /// Token replay records, leases and rate windows: the coordination store on the same
    /// database (its own `coord_*` tables).
    coord: std::sync::Arc<spine_store::PgCoordination>,
}

impl PgMetaStore {
    /// Connects and brings the schema up to date. sqlx holds a PostgreSQL advisory lock
    /// while it migrates, so nodes starting together apply each migration once; a node
    /// of an older release accepts a schema newer than it knows (expand/contract).
    pub async fn connect(url: &str, options: &PgOptions) -> Result<Self> {
        let connect = PgConnectOptions::from_str(url)?
            .application_name("openspine")
            .options([(
                "statement_timeout",
                format!("{}ms", options.statement_timeout.as_millis()),
            )])
            .log_statements(tracing::log::LevelFilter::Trace);
        {
            let mut conn = PgConnection::connect_with(&connect).await?;
            let mut migrator = sqlx::migrate!("./migrations/postgres");
            migrator.set_ignore_missing(true);
            migrator.run(&mut conn).await?;
            conn.close().await?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(Some(Duration::from_secs(300)))
            .test_before_acquire(true)
            .connect_with(connect)
            .await?;
        let coord = spine_store::PgCoordination::new(pool.clone())
            .await
            .map_err(|e| crate::StoreError::Commit(format!("coordination tables: {e}")))?;
        Ok(PgMetaStore {
            pool,
            coord: std::sync::Arc::new(coord),
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The next position in `recipient`'s inbox. The advisory lock is held until the
/// transaction ends, so another transaction for the same inbox draws its position only
/// after this one committed: positions become visible in increasing order, which is what
/// lets a poller resume "after N" without missing a message.
pub(crate) async fn next_seq(tx: &mut PgConnection, recipient: &str) -> Result<i64> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(recipient)
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query("SELECT nextval('inbox_seq') AS seq")
        .fetch_one(&mut *tx)
        .await?;
    Ok(row.try_get("seq")?)
}

pub(crate) async fn load_for_update(tx: &mut PgConnection, id: &str) -> Result<Option<Message>> {
    let row = sqlx::query("SELECT record FROM messages WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    row.as_ref().map(decode).transpose()
}

pub(crate) async fn save(tx: &mut PgConnection, message: &Message, seq: Option<i64>) -> Result<()> {
    let mut q = QueryBuilder::<Postgres>::new("UPDATE messages SET status = ");
    q.push_bind(message.status().as_str())
        .push(", record = ")
        .push_bind(encode(message)?)
        .push(", expires_at = ")
        .push_bind(message.expires)
        .push(", changed_at = ")
        .push_bind(message.last_modified());
    if let Some(seq) = seq {
        q.push(", inbox_seq = ").push_bind(seq);
    }
    q.push(" WHERE id = ").push_bind(&message.message_id);
    q.build().execute(&mut *tx).await?;
    Ok(())
}

/// Inserts a message row (and its first chunk) in the caller's transaction, drawing an
/// inbox position when it is already accepted.
pub(crate) async fn insert_message(
    tx: &mut PgConnection,
    message: &Message,
    first: &ChunkRecord,
) -> Result<()> {
    let seq = if message.status() == Status::Accepted {
        Some(next_seq(&mut *tx, &message.recipient.mailbox_id).await?)
    } else {
        None
    };
    sqlx::query(
        "INSERT INTO messages (id, sender_id, recipient_id, workflow_id, local_id, status, \
             total_chunks, inbox_seq, created, record, expires_at, changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&message.message_id)
    .bind(&message.sender.mailbox_id)
    .bind(&message.recipient.mailbox_id)
    .bind(&message.workflow_id)
    .bind(&message.metadata.local_id)
    .bind(message.status().as_str())
    .bind(message.total_chunks as i32)
    .bind(seq)
    .bind(message.created)
    .bind(encode(message)?)
    .bind(message.expires)
    .bind(message.last_modified())
    .execute(&mut *tx)
    .await?;
    if message.total_chunks > 0 {
        let (key, data) = chunk_columns(first);
        sqlx::query(
            "INSERT INTO chunks (message_id, chunk_no, size, blob_key, data) \
                 VALUES ($1, 1, $2, $3, $4)",
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

#[async_trait]
impl MetaStore for PgMetaStore {
    async fn create_message(&self, message: &Message, first: &ChunkRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_message(&mut tx, message, first).await?;
        let change = match message.status() {
            Status::Uploading => Change::Uploading,
            _ => Change::Accepted,
        };
        append_log(
            &mut tx,
            &[pending(change, message, message.last_modified())],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_chunk(
        &self,
        message_id: &str,
        number: u32,
        chunk: &ChunkRecord,
        now: DateTime<Utc>,
    ) -> Result<PutChunkOutcome> {
        let mut tx = self.pool.begin().await?;
        let Some(mut message) = load_for_update(&mut tx, message_id).await? else {
            return Ok(PutChunkOutcome::NoSuchMessage);
        };
        if message.status() != Status::Uploading {
            return Ok(PutChunkOutcome::NotUploading);
        }
        let (key, data) = chunk_columns(chunk);
        // The old row's key, read in the same statement that replaces it.
        let old = sqlx::query(
            "WITH old AS (SELECT blob_key FROM chunks WHERE message_id = $1 AND chunk_no = $2) \
             , put AS (INSERT INTO chunks (message_id, chunk_no, size, blob_key, data) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_id, chunk_no) DO UPDATE \
                 SET size = EXCLUDED.size, blob_key = EXCLUDED.blob_key, data = EXCLUDED.data) \
             SELECT blob_key FROM old",
        )
        .bind(message_id)
        .bind(number as i32)
        .bind(chunk.size as i64)
        .bind(key)
        .bind(data)
        .fetch_optional(&mut *tx)
        .await?;
        let replaced: Option<String> = match old {
            Some(row) => row.try_get("blob_key")?,
            None => None,
        };
        // The CTE's insert is not visible to the statement that made it: count afterwards.
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0)::BIGINT AS bytes FROM chunks \
             WHERE message_id = $1",
        )
        .bind(message_id)
        .fetch_one(&mut *tx)
        .await?;
        let stored: i64 = row.try_get("n")?;
        let completed = stored >= message.total_chunks as i64;
        if completed {
            let bytes: i64 = row.try_get("bytes")?;
            message.file_size = bytes.max(0) as u64;
            message.become_available(now);
            let seq = next_seq(&mut tx, &message.recipient.mailbox_id).await?;
            save(&mut tx, &message, Some(seq)).await?;
            append_log(&mut tx, &[pending(Change::Accepted, &message, now)]).await?;
        }
        tx.commit().await?;
        Ok(PutChunkOutcome::Stored {
            completed,
            replaced: replaced.filter(|k| Some(k.as_str()) != key),
        })
    }

    async fn message(&self, message_id: &str) -> Result<Option<Message>> {
        let row = sqlx::query("SELECT record FROM messages WHERE id = $1")
            .bind(message_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn stored_bytes(&self, message_id: &str) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(size), 0)::BIGINT AS bytes FROM chunks WHERE message_id = $1",
        )
        .bind(message_id)
        .fetch_one(&self.pool)
        .await?;
        let bytes: i64 = row.try_get("bytes")?;
        Ok(bytes.max(0) as u64)
    }

    async fn chunk(&self, message_id: &str, number: u32) -> Result<Option<ChunkRecord>> {
        let row = sqlx::query(
            "SELECT size, blob_key, data FROM chunks WHERE message_id = $1 AND chunk_no = $2",
        )
        .bind(message_id)
        .bind(number as i32)
        .fetch_optional(&self.pool)
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
             LEFT JOIN chunks c ON c.message_id = m.id AND c.chunk_no = $1 WHERE m.id = $2",
        )
        .bind(number as i32)
        .bind(message_id)
        .fetch_optional(&self.pool)
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
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT id, inbox_seq FROM messages WHERE status = 'accepted' AND in_inbox \
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
                // starts_with/strpos are exact and case-sensitive, unlike LIKE.
                Kind::StartsWith => q
                    .push("starts_with(workflow_id, ")
                    .push_bind(needle.to_string())
                    .push(")"),
                Kind::Contains => q
                    .push("strpos(workflow_id, ")
                    .push_bind(needle.to_string())
                    .push(") > 0"),
            };
            q.push(")");
        }
        q.push(" ORDER BY inbox_seq LIMIT ").push_bind(limit as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
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
            "SELECT inbox_seq FROM messages WHERE id = $1 AND recipient_id = $2 \
             AND inbox_seq IS NOT NULL",
        )
        .bind(message_id)
        .bind(mailbox)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("inbox_seq")).transpose()?)
    }

    async fn inbox_count(&self, mailbox: &str) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM messages WHERE status = 'accepted' AND in_inbox \
             AND recipient_id = $1",
        )
        .bind(mailbox)
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n.max(0) as u64)
    }

    async fn acknowledge(
        &self,
        message_id: &str,
        recipient: &str,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome> {
        let mut tx = self.pool.begin().await?;
        let Some(mut message) = load_for_update(&mut tx, message_id).await? else {
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
        save(&mut tx, &message, None).await?;
        append_log(&mut tx, &[pending(Change::Acknowledged, &message, now)]).await?;
        tx.commit().await?;
        Ok(AckOutcome::Acknowledged)
    }

    async fn by_local_id(&self, sender: &str, local_id: &str) -> Result<Vec<Message>> {
        let rows = sqlx::query(
            "SELECT record FROM messages WHERE sender_id = $1 AND local_id = $2 \
             AND local_id <> '' AND in_outbox LIMIT 2",
        )
        .bind(sender)
        .bind(local_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    async fn in_outbox(&self, sender: &str, message_id: &str) -> Result<bool> {
        let row =
            sqlx::query("SELECT 1 FROM messages WHERE id = $1 AND sender_id = $2 AND in_outbox")
                .bind(message_id)
                .bind(sender)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    async fn add_event(&self, message_id: &str, event: &Event) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let Some(mut message) = load_for_update(&mut tx, message_id).await? else {
            return Ok(false);
        };
        message.events.insert(0, event.clone());
        let seq = if event.status == Status::Accepted {
            Some(next_seq(&mut tx, &message.recipient.mailbox_id).await?)
        } else {
            None
        };
        save(&mut tx, &message, seq).await?;
        append_log(
            &mut tx,
            &[pending(Change::StatusSet, &message, event.timestamp)],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn reset_all(&self) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        // Every other write touches a message row before its chunks; the reset takes both
        // tables in that order and whole, so it waits for a sweep batch in flight instead
        // of deadlocking with it, and no report that batch makes can outlive the reset.
        sqlx::query("LOCK TABLE messages IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        sqlx::query("LOCK TABLE chunks IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query("DELETE FROM chunks WHERE blob_key IS NOT NULL RETURNING blob_key")
            .fetch_all(&mut *tx)
            .await?;
        let keys = rows
            .iter()
            .map(|r| r.try_get::<String, _>("blob_key"))
            .collect::<Result<Vec<_>, _>>()?;
        sqlx::query("DELETE FROM chunks").execute(&mut *tx).await?;
        let gone = sqlx::query(
            "DELETE FROM messages RETURNING id, sender_id, recipient_id, workflow_id, status",
        )
        .fetch_all(&mut *tx)
        .await?;
        // The log's counter is locked last, as in every other write: taking it before the
        // message rows would deadlock with a write that holds a row and waits for it.
        crate::pg_lifecycle::log_deleted(&mut tx, &gone, Utc::now()).await?;
        tx.commit().await?;
        Ok(keys)
    }

    async fn reset_mailbox(&self, mailbox: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE messages SET in_inbox = FALSE WHERE recipient_id = $1")
            .bind(mailbox)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE messages SET in_outbox = FALSE WHERE sender_id = $1")
            .bind(mailbox)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn blob_referenced(&self, key: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM chunks WHERE blob_key = $1 LIMIT 1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn coordination(&self) -> std::sync::Arc<dyn spine_store::Coordination> {
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
