//! What an operator does to one message, and what an operator (or a monitoring system)
//! asks of the store as a whole: search, a message's history, inbox depths, counts by
//! status, stored bytes. Both backends; every change is logged in the same transaction
//! as the change itself, like every other state change.

use crate::meta::{ChunkLocation, ChunkRecord, ExpiryOutcome, LogEntry};
use crate::rows::{decode, id_floor, report_id};
use crate::sqlite::Reply;
use crate::sqlite::{job, load_for_update, next_seq, save, unexpected, w_create_message};
use crate::Result;
use crate::{pg_lifecycle, postgres, sqlite_lifecycle, PgMetaStore, SqliteMetaStore};
use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use mesh_protocol::lifecycle::{expire, later, ExpiryReason};
use mesh_protocol::{Change, Event, Message, MessageType, Status};
use sqlx::{Postgres, QueryBuilder, Row, Sqlite};

/// An operator's action on one message.
#[derive(Debug, Clone)]
pub enum OperatorAction {
    /// Expire a message waiting in an inbox now, with its non-delivery report, as the
    /// sweep would at its expiry time.
    Expire {
        reason: ExpiryReason,
        report_period: TimeDelta,
    },
    /// Delete the record, its chunks and (after the commit, by the caller) its payloads:
    /// for a poisoned message nobody can use.
    Remove,
    /// Put a message that left the inbox (acknowledged, expired, failed) back into its
    /// recipient's inbox, at the end, with a fresh inbox period.
    Redeliver { inbox_period: TimeDelta },
}

/// What an [`OperatorAction`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    NotFound,
    /// The action does not apply to a message in this status (nothing changed).
    NotApplicable(Status),
    Expired(ExpiryOutcome),
    /// Removed; `blob_keys` are for the caller to delete once committed.
    Removed {
        bytes: u64,
        blob_keys: Vec<String>,
    },
    Redelivered,
}

/// A search over all messages, newest first. Every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    /// Sender or recipient.
    pub mailbox: Option<String>,
    pub workflow_id: Option<String>,
    pub status: Option<Status>,
    pub local_id: Option<String>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// Only ids lower than this (the last id of the previous page).
    pub before_id: Option<String>,
    pub limit: u32,
}

/// One recipient's waiting messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxDepth {
    pub mailbox: String,
    pub waiting: u64,
    /// When the oldest waiting message was sent.
    pub oldest: Option<DateTime<Utc>>,
}

/// Store-wide figures for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub by_status: Vec<(String, u64)>,
    pub stored_bytes: u64,
    /// When the oldest message still waiting in any inbox was sent.
    pub oldest_waiting: Option<DateTime<Utc>>,
}

/// A message id's creation time (ids begin `yyyyMMddHHmmssffffff`, API.md 5.1).
pub(crate) fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let prefix = id.get(..20)?;
    NaiveDateTime::parse_from_str(prefix, "%Y%m%d%H%M%S%6f")
        .ok()
        .map(|t| t.and_utc())
}

/// The deepest inboxes, one row per recipient; the `LIMIT` placeholder is appended per
/// backend.
const DEPTHS_SQL: &str = "SELECT recipient_id, COUNT(*), MIN(id) FROM messages \
     WHERE status = 'accepted' GROUP BY recipient_id ORDER BY COUNT(*) DESC, recipient_id LIMIT";
const BY_STATUS_SQL: &str = "SELECT status, COUNT(*) FROM messages GROUP BY status";
const OLDEST_SQL: &str = "SELECT MIN(id) FROM messages WHERE status = 'accepted'";

fn depths(rows: Vec<(String, i64, Option<String>)>) -> Vec<InboxDepth> {
    rows.into_iter()
        .map(|(mailbox, n, oldest)| InboxDepth {
            mailbox,
            waiting: n.max(0) as u64,
            oldest: oldest.as_deref().and_then(id_time),
        })
        .collect()
}

fn stats(by_status: Vec<(String, i64)>, bytes: i64, oldest: Option<String>) -> StoreStats {
    StoreStats {
        by_status: by_status
            .into_iter()
            .map(|(status, n)| (status, n.max(0) as u64))
            .collect(),
        stored_bytes: bytes.max(0) as u64,
        oldest_waiting: oldest.as_deref().and_then(id_time),
    }
}

/// The search as SQL pieces, each followed by the value to bind after it (if any), the
/// same for both backends; the caller binds the limit last.
fn search_sql(q: &MessageQuery) -> Vec<(&'static str, Option<String>)> {
    let mut sql = vec![("SELECT record FROM messages WHERE 1 = 1", None)];
    if let Some(mb) = &q.mailbox {
        sql.push((" AND (sender_id = ", Some(mb.clone())));
        sql.push((" OR recipient_id = ", Some(mb.clone())));
        sql.push((")", None));
    }
    let filters = [
        (" AND workflow_id = ", q.workflow_id.clone()),
        (" AND status = ", q.status.map(|s| s.as_str().to_string())),
        (" AND local_id = ", q.local_id.clone()),
        (" AND id >= ", q.since.map(id_floor)),
        (" AND id < ", q.until.map(id_floor)),
        (" AND id < ", q.before_id.clone()),
    ];
    sql.extend(filters.into_iter().filter(|(_, v)| v.is_some()));
    sql.push((" ORDER BY id DESC LIMIT ", None));
    sql
}

fn empty_chunk() -> ChunkRecord {
    ChunkRecord {
        size: 0,
        location: ChunkLocation::Inline(Bytes::new()),
    }
}

/// Whether `action` applies to a message in `status`.
fn applies(action: &OperatorAction, m: &Message) -> bool {
    match action {
        OperatorAction::Expire { .. } => m.status() == Status::Accepted,
        OperatorAction::Remove => true,
        OperatorAction::Redeliver { .. } => {
            m.message_type == MessageType::Data
                && matches!(
                    m.status(),
                    Status::Acknowledged | Status::Undeliverable | Status::Error
                )
        }
    }
}

fn redeliver(m: &mut Message, now: DateTime<Utc>, inbox_period: TimeDelta) {
    // The failure that took it out of the inbox no longer describes it: downloads and
    // tracking would otherwise still say ERROR. The event log keeps that history.
    m.events.retain(|e| !e.status.is_failure());
    m.events.insert(0, Event::new(Status::Accepted, now));
    m.expires = later(now, inbox_period);
    m.downloaded = None;
}

impl SqliteMetaStore {
    pub(crate) async fn do_act_on_message(
        &self,
        id: &str,
        action: &OperatorAction,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome> {
        let (id, action, counter) = (id.to_string(), action.clone(), self.seq.clone());
        let j = job(move |tx| {
            Box::pin(async move {
                let Some(mut m) = load_for_update(tx, &id).await? else {
                    return Ok(Reply::Action(ActionOutcome::NotFound));
                };
                if !applies(&action, &m) {
                    return Ok(Reply::Action(ActionOutcome::NotApplicable(m.status())));
                }
                let outcome = match &action {
                    OperatorAction::Expire {
                        reason,
                        report_period,
                    } => {
                        let report = expire(
                            &mut m,
                            now,
                            reason,
                            report_id(now, 0),
                            later(now, *report_period),
                        );
                        save(tx, &m, None).await?;
                        sqlite_lifecycle::log(tx, Change::Expired, &m, now).await?;
                        let mut out = ExpiryOutcome {
                            expired: 1,
                            reports: 0,
                        };
                        if let Some(report) = report {
                            w_create_message(
                                tx,
                                &counter,
                                &report,
                                &empty_chunk(),
                                Change::ReportGenerated,
                            )
                            .await?;
                            out.reports = 1;
                        }
                        ActionOutcome::Expired(out)
                    }
                    OperatorAction::Remove => {
                        let (bytes, blob_keys) = sqlite_lifecycle::delete_message(tx, &id).await?;
                        sqlite_lifecycle::log(tx, Change::Removed, &m, now).await?;
                        ActionOutcome::Removed { bytes, blob_keys }
                    }
                    OperatorAction::Redeliver { inbox_period } => {
                        redeliver(&mut m, now, *inbox_period);
                        save(tx, &m, Some(next_seq(&counter))).await?;
                        sqlite_lifecycle::log(tx, Change::Redelivered, &m, now).await?;
                        ActionOutcome::Redelivered
                    }
                };
                Ok(Reply::Action(outcome))
            })
        });
        match self.writer.write(j).await? {
            Reply::Action(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn do_search(&self, q: &MessageQuery) -> Result<Vec<Message>> {
        let mut b = QueryBuilder::<Sqlite>::new("");
        for (sql, value) in search_sql(q) {
            b.push(sql);
            if let Some(value) = value {
                b.push_bind(value);
            }
        }
        b.push_bind(i64::from(q.limit.max(1)));
        let rows = b.build().fetch_all(&self.reader).await?;
        rows.iter().map(decode).collect()
    }

    pub(crate) async fn do_message_log(&self, id: &str) -> Result<Vec<LogEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, change, message_id, sender_id, recipient_id, workflow_id, status \
             FROM message_log WHERE message_id = ? ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(sqlite_lifecycle::entry).collect()
    }

    pub(crate) async fn do_inbox_depths(&self, limit: u32) -> Result<Vec<InboxDepth>> {
        let rows = sqlx::query_as(&format!("{DEPTHS_SQL} ?"))
            .bind(i64::from(limit.max(1)))
            .fetch_all(&self.reader)
            .await?;
        Ok(depths(rows))
    }

    pub(crate) async fn do_stats(&self) -> Result<StoreStats> {
        let by_status = sqlx::query_as(BY_STATUS_SQL)
            .fetch_all(&self.reader)
            .await?;
        let (bytes,) = sqlx::query_as("SELECT COALESCE(SUM(size), 0) FROM chunks")
            .fetch_one(&self.reader)
            .await?;
        let (oldest,) = sqlx::query_as(OLDEST_SQL).fetch_one(&self.reader).await?;
        Ok(stats(by_status, bytes, oldest))
    }
}

impl PgMetaStore {
    pub(crate) async fn do_act_on_message(
        &self,
        id: &str,
        action: &OperatorAction,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome> {
        let mut tx = self.pool.begin().await?;
        let Some(mut m) = postgres::load_for_update(&mut tx, id).await? else {
            return Ok(ActionOutcome::NotFound);
        };
        if !applies(action, &m) {
            return Ok(ActionOutcome::NotApplicable(m.status()));
        }
        let outcome = match action {
            OperatorAction::Expire {
                reason,
                report_period,
            } => {
                let report = expire(
                    &mut m,
                    now,
                    reason,
                    report_id(now, 0),
                    later(now, *report_period),
                );
                postgres::save(&mut tx, &m, None).await?;
                let mut log = vec![pg_lifecycle::pending(Change::Expired, &m, now)];
                let mut out = ExpiryOutcome {
                    expired: 1,
                    reports: 0,
                };
                if let Some(report) = report {
                    postgres::insert_message(&mut tx, &report, &empty_chunk()).await?;
                    log.push(pg_lifecycle::pending(Change::ReportGenerated, &report, now));
                    out.reports = 1;
                }
                pg_lifecycle::append_log(&mut tx, &log).await?;
                ActionOutcome::Expired(out)
            }
            OperatorAction::Remove => {
                let chunks = sqlx::query("SELECT size, blob_key FROM chunks WHERE message_id = $1")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                let (mut bytes, mut blob_keys) = (0u64, Vec::new());
                for c in chunks {
                    bytes += c.try_get::<i64, _>("size")?.max(0) as u64;
                    if let Some(key) = c.try_get::<Option<String>, _>("blob_key")? {
                        blob_keys.push(key);
                    }
                }
                sqlx::query("DELETE FROM chunks WHERE message_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM messages WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                pg_lifecycle::append_log(
                    &mut tx,
                    &[pg_lifecycle::pending(Change::Removed, &m, now)],
                )
                .await?;
                ActionOutcome::Removed { bytes, blob_keys }
            }
            OperatorAction::Redeliver { inbox_period } => {
                redeliver(&mut m, now, *inbox_period);
                let seq = postgres::next_seq(&mut tx, &m.recipient.mailbox_id).await?;
                postgres::save(&mut tx, &m, Some(seq)).await?;
                pg_lifecycle::append_log(
                    &mut tx,
                    &[pg_lifecycle::pending(Change::Redelivered, &m, now)],
                )
                .await?;
                ActionOutcome::Redelivered
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    pub(crate) async fn do_search(&self, q: &MessageQuery) -> Result<Vec<Message>> {
        let mut b = QueryBuilder::<Postgres>::new("");
        for (sql, value) in search_sql(q) {
            b.push(sql);
            if let Some(value) = value {
                b.push_bind(value);
            }
        }
        b.push_bind(i64::from(q.limit.max(1)));
        let rows = b.build().fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    pub(crate) async fn do_message_log(&self, id: &str) -> Result<Vec<LogEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, change, message_id, sender_id, recipient_id, workflow_id, status \
             FROM message_log WHERE message_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pg_lifecycle::entry).collect()
    }

    pub(crate) async fn do_inbox_depths(&self, limit: u32) -> Result<Vec<InboxDepth>> {
        let rows = sqlx::query_as(&format!("{DEPTHS_SQL} $1"))
            .bind(i64::from(limit.max(1)))
            .fetch_all(&self.pool)
            .await?;
        Ok(depths(rows))
    }

    pub(crate) async fn do_stats(&self) -> Result<StoreStats> {
        let by_status = sqlx::query_as(BY_STATUS_SQL).fetch_all(&self.pool).await?;
        let (bytes,) = sqlx::query_as("SELECT COALESCE(SUM(size), 0)::BIGINT FROM chunks")
            .fetch_one(&self.pool)
            .await?;
        let (oldest,) = sqlx::query_as(OLDEST_SQL).fetch_one(&self.pool).await?;
        Ok(stats(by_status, bytes, oldest))
    }
}
