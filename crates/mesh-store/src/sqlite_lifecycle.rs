//! The embedded store's half of the message lifecycle: the event log, the expiry and purge
//! sweeps, the download marker and the rich views. Writes run as group-commit jobs on the
//! one writer connection, so a sweep batch is one savepoint: it commits whole or not at
//! all, and a kill in the middle leaves every message untouched or fully expired.

use crate::meta::{
    ChunkLocation, ChunkRecord, ExpiryOutcome, ExpirySweep, LogEntry, PurgeOutcome, PurgeSweep,
    Side,
};
use crate::rows::{change_from, decode, id_floor, report_id, status_from};
use crate::sqlite::Reply;
use crate::sqlite::{job, load_for_update, save, unexpected, w_create_message, SqliteMetaStore};
use crate::Result;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use mesh_protocol::lifecycle::{expire, later, ExpiryReason};
use mesh_protocol::{Change, Message};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use std::sync::atomic::AtomicI64;

/// Appends one entry to the event log, inside the caller's transaction.
pub(crate) async fn log(
    tx: &mut SqliteConnection,
    change: Change,
    m: &Message,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO message_log (at, change, message_id, sender_id, recipient_id, workflow_id, \
         status) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(at.timestamp_micros())
    .bind(change.as_str())
    .bind(&m.message_id)
    .bind(&m.sender.mailbox_id)
    .bind(&m.recipient.mailbox_id)
    .bind(&m.workflow_id)
    .bind(m.status().as_str())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn w_mark_downloaded(
    tx: &mut SqliteConnection,
    message_id: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let Some(mut message) = load_for_update(tx, message_id).await? else {
        return Ok(false);
    };
    if message.downloaded.is_some() {
        return Ok(false);
    }
    message.downloaded = Some(now);
    save(tx, &message, None).await?;
    log(tx, Change::Downloaded, &message, now).await?;
    Ok(true)
}

fn empty_chunk() -> ChunkRecord {
    ChunkRecord {
        size: 0,
        location: ChunkLocation::Inline(Bytes::new()),
    }
}

async fn w_expire_due(
    tx: &mut SqliteConnection,
    counter: &AtomicI64,
    sweep: &ExpirySweep,
) -> Result<ExpiryOutcome> {
    // Whole seconds: `<` rather than `<=`, so a message is never expired before its time
    // (at most a second after it).
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT record FROM messages WHERE status = 'accepted' AND (expires_at < ",
    );
    q.push_bind(sweep.now.timestamp());
    if !sweep.inactive.is_empty() {
        q.push(" OR recipient_id IN (");
        let mut ids = q.separated(", ");
        for id in &sweep.inactive {
            ids.push_bind(id);
        }
        q.push(")");
    }
    q.push(") ORDER BY expires_at LIMIT ")
        .push_bind(sweep.limit as i64);
    let rows = q.build().fetch_all(&mut *tx).await?;
    let mut outcome = ExpiryOutcome::default();
    for (i, row) in rows.iter().enumerate() {
        let mut original = decode(row)?;
        let reason = if sweep.inactive.contains(&original.recipient.mailbox_id) {
            ExpiryReason::MailboxDeactivated
        } else {
            sweep.not_collected.clone()
        };
        let report = expire(
            &mut original,
            sweep.now,
            &reason,
            report_id(sweep.now, sweep.id_offset + i as u64),
            later(sweep.now, sweep.report_period),
        );
        save(tx, &original, None).await?;
        log(tx, Change::Expired, &original, sweep.now).await?;
        outcome.expired += 1;
        if let Some(report) = report {
            w_create_message(
                tx,
                counter,
                &report,
                &empty_chunk(),
                Change::ReportGenerated,
            )
            .await?;
            outcome.reports += 1;
        }
    }
    Ok(outcome)
}

/// Deletes a message's row and its chunk rows, inside the caller's transaction; returns
/// the bytes they held and the payload keys for the caller to delete after the commit.
pub(crate) async fn delete_message(
    tx: &mut SqliteConnection,
    id: &str,
) -> Result<(u64, Vec<String>)> {
    let chunks = sqlx::query("SELECT size, blob_key FROM chunks WHERE message_id = ?")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    let (mut bytes, mut keys) = (0u64, Vec::new());
    for c in chunks {
        bytes += c.try_get::<i64, _>("size")?.max(0) as u64;
        if let Some(key) = c.try_get::<Option<String>, _>("blob_key")? {
            keys.push(key);
        }
    }
    sqlx::query("DELETE FROM chunks WHERE message_id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM messages WHERE id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok((bytes, keys))
}

async fn w_purge_due(tx: &mut SqliteConnection, sweep: &PurgeSweep) -> Result<PurgeOutcome> {
    let mut out = PurgeOutcome::default();
    let mut victims: Vec<(String, bool)> = Vec::new();
    if let Some(cutoff) = sweep.retention_cutoff {
        let rows = sqlx::query(
            "SELECT id FROM messages WHERE status IN ('acknowledged', 'undeliverable', 'error') \
             AND changed_at <= ? ORDER BY changed_at LIMIT ?",
        )
        .bind(cutoff.timestamp())
        .bind(sweep.limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            victims.push((r.try_get("id")?, false));
        }
    }
    let room = (sweep.limit as usize).saturating_sub(victims.len());
    if let (Some(cutoff), true) = (sweep.upload_cutoff, room > 0) {
        let rows = sqlx::query(
            "SELECT id FROM messages WHERE status = 'uploading' AND changed_at <= ? \
             ORDER BY changed_at LIMIT ?",
        )
        .bind(cutoff.timestamp())
        .bind(room as i64)
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            victims.push((r.try_get("id")?, true));
        }
    }
    for (id, abandoned) in victims {
        let Some(message) = load_for_update(tx, &id).await? else {
            continue;
        };
        let (bytes, keys) = delete_message(tx, &id).await?;
        out.bytes += bytes;
        out.blob_keys.extend(keys);
        log(tx, Change::Purged, &message, sweep.now).await?;
        if abandoned {
            out.abandoned += 1;
        } else {
            out.purged += 1;
        }
    }
    Ok(out)
}

pub(crate) fn entry(row: &sqlx::sqlite::SqliteRow) -> Result<LogEntry> {
    let at: i64 = row.try_get("at")?;
    Ok(LogEntry {
        seq: row.try_get("seq")?,
        at: Utc
            .timestamp_micros(at)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
        change: change_from(row.try_get("change")?)?,
        message_id: row.try_get("message_id")?,
        sender: row.try_get("sender_id")?,
        recipient: row.try_get("recipient_id")?,
        workflow_id: row.try_get("workflow_id")?,
        status: status_from(row.try_get("status")?)?,
    })
}

impl SqliteMetaStore {
    pub(crate) async fn do_mark_downloaded(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let id = id.to_string();
        let j = job(move |tx| {
            Box::pin(async move { Ok(Reply::Flag(w_mark_downloaded(tx, &id, now).await?)) })
        });
        match self.writer.write(j).await? {
            Reply::Flag(done) => Ok(done),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn do_expire_due(&self, sweep: &ExpirySweep) -> Result<ExpiryOutcome> {
        let (sweep, counter) = (sweep.clone(), self.seq.clone());
        let j = job(move |tx| {
            Box::pin(async move { Ok(Reply::Expired(w_expire_due(tx, &counter, &sweep).await?)) })
        });
        match self.writer.write(j).await? {
            Reply::Expired(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn do_purge_due(&self, sweep: &PurgeSweep) -> Result<PurgeOutcome> {
        let sweep = sweep.clone();
        let j = job(move |tx| {
            Box::pin(async move { Ok(Reply::Purged(w_purge_due(tx, &sweep).await?)) })
        });
        match self.writer.write(j).await? {
            Reply::Purged(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn do_lifecycle_backlog(
        &self,
        expiry: Option<&ExpirySweep>,
        purge: &PurgeSweep,
    ) -> Result<u64> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) AS n FROM messages WHERE 0");
        if let Some(expiry) = expiry {
            q.push(" OR (status = 'accepted' AND (expires_at < ")
                .push_bind(expiry.now.timestamp());
            if !expiry.inactive.is_empty() {
                q.push(" OR recipient_id IN (");
                let mut ids = q.separated(", ");
                for id in &expiry.inactive {
                    ids.push_bind(id);
                }
                q.push(")");
            }
            q.push("))");
        }
        if let Some(cutoff) = purge.retention_cutoff {
            q.push(" OR (status IN ('acknowledged', 'undeliverable', 'error') AND changed_at <= ")
                .push_bind(cutoff.timestamp())
                .push(")");
        }
        if let Some(cutoff) = purge.upload_cutoff {
            q.push(" OR (status = 'uploading' AND changed_at <= ")
                .push_bind(cutoff.timestamp())
                .push(")");
        }
        let n: i64 = q.build().fetch_one(&self.reader).await?.try_get("n")?;
        Ok(n.max(0) as u64)
    }

    pub(crate) async fn do_log_after(&self, after: i64, limit: u32) -> Result<Vec<LogEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, change, message_id, sender_id, recipient_id, workflow_id, status \
             FROM message_log WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(entry).collect()
    }

    pub(crate) async fn do_trim_log(&self, before: DateTime<Utc>) -> Result<u64> {
        let cutoff = before.timestamp_micros();
        let j = job(move |tx| {
            Box::pin(async move {
                let done = sqlx::query(
                    "DELETE FROM message_log WHERE seq <= \
                     (SELECT COALESCE(MAX(seq), 0) FROM message_log WHERE at < ?)",
                )
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
                Ok(Reply::Count(done.rows_affected()))
            })
        });
        match self.writer.write(j).await? {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn do_rich(
        &self,
        side: Side,
        mailbox: &str,
        since: DateTime<Utc>,
        before_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT record FROM messages WHERE ");
        match side {
            Side::Inbox => q
                .push("recipient_id = ")
                .push_bind(mailbox.to_string())
                .push(" AND in_inbox = 1 AND inbox_seq IS NOT NULL"),
            Side::Outbox => q
                .push("sender_id = ")
                .push_bind(mailbox.to_string())
                .push(" AND in_outbox = 1"),
        };
        q.push(" AND id > ").push_bind(id_floor(since));
        if let Some(before) = before_id {
            q.push(" AND id < ").push_bind(before.to_string());
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit as i64);
        let rows = q.build().fetch_all(&self.reader).await?;
        rows.iter().map(decode).collect()
    }
}
