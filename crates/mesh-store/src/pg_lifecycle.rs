//! The shared store's half of the message lifecycle: the event log, the expiry and purge
//! sweeps, the download marker and the rich views.
//!
//! Many nodes sweep one database at once. Each batch is one transaction that locks the rows
//! it takes with `FOR UPDATE SKIP LOCKED`: a row another node is working on is skipped,
//! not waited for and never done twice, and a node killed mid-batch rolls back whole.
//! Reports are inserted in the order of their recipients, so the per-inbox advisory locks
//! two sweeping nodes take can never wait on each other in a cycle.

use crate::meta::{
    ChunkLocation, ChunkRecord, ExpiryOutcome, ExpirySweep, LogEntry, PurgeOutcome, PurgeSweep,
    Side,
};
use crate::postgres::{insert_message, load_for_update, save, PgMetaStore};
use crate::rows::{change_from, decode, id_floor, report_id, status_from};
use crate::Result;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use mesh_protocol::lifecycle::{expire, later, ExpiryReason};
use mesh_protocol::{Change, Message};
use sqlx::postgres::PgConnection;
use sqlx::{Postgres, QueryBuilder, Row};

/// A log entry waiting for its sequence number.
pub(crate) struct Pending {
    change: Change,
    at: DateTime<Utc>,
    message_id: String,
    sender: String,
    recipient: String,
    workflow_id: String,
    status: String,
}

pub(crate) fn pending(change: Change, m: &Message, at: DateTime<Utc>) -> Pending {
    Pending {
        change,
        at,
        message_id: m.message_id.clone(),
        sender: m.sender.mailbox_id.clone(),
        recipient: m.recipient.mailbox_id.clone(),
        workflow_id: m.workflow_id.clone(),
        status: m.status().as_str().to_string(),
    }
}

/// Appends entries to the event log. Call it as the transaction's last statement: it
/// takes the counter's row lock, which is held until COMMIT, so numbers are handed out in
/// commit order with no gaps, and the lock is held for as short a time as possible.
pub(crate) async fn append_log(tx: &mut PgConnection, entries: &[Pending]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let n = entries.len() as i64;
    let last: i64 =
        sqlx::query("UPDATE message_log_counter SET last = last + $1 WHERE id = 1 RETURNING last")
            .bind(n)
            .fetch_one(&mut *tx)
            .await?
            .try_get("last")?;
    let first = last - n + 1;
    let mut q = QueryBuilder::<Postgres>::new(
        "INSERT INTO message_log (seq, at, change, message_id, sender_id, recipient_id, \
         workflow_id, status) ",
    );
    q.push_values(entries.iter().enumerate(), |mut row, (i, e)| {
        row.push_bind(first + i as i64)
            .push_bind(e.at)
            .push_bind(e.change.as_str())
            .push_bind(&e.message_id)
            .push_bind(&e.sender)
            .push_bind(&e.recipient)
            .push_bind(&e.workflow_id)
            .push_bind(&e.status);
    });
    q.build().execute(&mut *tx).await?;
    Ok(())
}

/// `purged` entries for deleted message rows (`id`, `sender_id`, `recipient_id`,
/// `workflow_id`, `status`), in id order.
pub(crate) async fn log_deleted(
    tx: &mut PgConnection,
    rows: &[sqlx::postgres::PgRow],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut log = rows
        .iter()
        .map(|row| purged_entry(row, now))
        .collect::<Result<Vec<_>>>()?;
    log.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    append_log(tx, &log).await
}

fn purged_entry(row: &sqlx::postgres::PgRow, now: DateTime<Utc>) -> Result<Pending> {
    Ok(Pending {
        change: Change::Purged,
        at: now,
        message_id: row.try_get("id")?,
        sender: row.try_get("sender_id")?,
        recipient: row.try_get("recipient_id")?,
        workflow_id: row.try_get("workflow_id")?,
        status: row.try_get("status")?,
    })
}

fn empty_chunk() -> ChunkRecord {
    ChunkRecord {
        size: 0,
        location: ChunkLocation::Inline(Bytes::new()),
    }
}

pub(crate) fn entry(row: &sqlx::postgres::PgRow) -> Result<LogEntry> {
    Ok(LogEntry {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        change: change_from(row.try_get("change")?)?,
        message_id: row.try_get("message_id")?,
        sender: row.try_get("sender_id")?,
        recipient: row.try_get("recipient_id")?,
        workflow_id: row.try_get("workflow_id")?,
        status: status_from(row.try_get("status")?)?,
    })
}

impl PgMetaStore {
    pub(crate) async fn do_mark_downloaded(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let Some(mut message) = load_for_update(&mut tx, id).await? else {
            return Ok(false);
        };
        if message.downloaded.is_some() {
            return Ok(false);
        }
        message.downloaded = Some(now);
        save(&mut tx, &message, None).await?;
        append_log(&mut tx, &[pending(Change::Downloaded, &message, now)]).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn do_expire_due(&self, sweep: &ExpirySweep) -> Result<ExpiryOutcome> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT record FROM messages WHERE status = 'accepted' \
             AND (expires_at <= $1 OR recipient_id = ANY($2)) \
             ORDER BY expires_at LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .bind(sweep.now)
        .bind(&sweep.inactive)
        .bind(sweep.limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut originals = rows.iter().map(decode).collect::<Result<Vec<Message>>>()?;
        // Reports go into their recipients' inboxes in recipient order (see the module
        // comment: no lock cycles between nodes).
        originals.sort_by(|a, b| a.sender.mailbox_id.cmp(&b.sender.mailbox_id));
        let mut outcome = ExpiryOutcome::default();
        let mut log = Vec::with_capacity(originals.len() * 2);
        for (i, original) in originals.iter_mut().enumerate() {
            let reason = if sweep.inactive.contains(&original.recipient.mailbox_id) {
                ExpiryReason::MailboxDeactivated
            } else {
                sweep.not_collected.clone()
            };
            let report = expire(
                original,
                sweep.now,
                &reason,
                report_id(sweep.now, sweep.id_offset + i as u64),
                later(sweep.now, sweep.report_period),
            );
            save(&mut tx, original, None).await?;
            log.push(pending(Change::Expired, original, sweep.now));
            outcome.expired += 1;
            if let Some(report) = report {
                insert_message(&mut tx, &report, &empty_chunk()).await?;
                log.push(pending(Change::ReportGenerated, &report, sweep.now));
                outcome.reports += 1;
            }
        }
        append_log(&mut tx, &log).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    pub(crate) async fn do_purge_due(&self, sweep: &PurgeSweep) -> Result<PurgeOutcome> {
        let mut tx = self.pool.begin().await?;
        let mut victims: Vec<(sqlx::postgres::PgRow, bool)> = Vec::new();
        if let Some(cutoff) = sweep.retention_cutoff {
            let rows = sqlx::query(
                "SELECT id, sender_id, recipient_id, workflow_id, status FROM messages \
                 WHERE status IN ('acknowledged', 'undeliverable', 'error') \
                 AND changed_at <= $1 ORDER BY changed_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            )
            .bind(cutoff)
            .bind(sweep.limit as i64)
            .fetch_all(&mut *tx)
            .await?;
            victims.extend(rows.into_iter().map(|r| (r, false)));
        }
        let room = (sweep.limit as usize).saturating_sub(victims.len());
        if let (Some(cutoff), true) = (sweep.upload_cutoff, room > 0) {
            let rows = sqlx::query(
                "SELECT id, sender_id, recipient_id, workflow_id, status FROM messages \
                 WHERE status = 'uploading' AND changed_at <= $1 \
                 ORDER BY changed_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            )
            .bind(cutoff)
            .bind(room as i64)
            .fetch_all(&mut *tx)
            .await?;
            victims.extend(rows.into_iter().map(|r| (r, true)));
        }
        let mut out = PurgeOutcome::default();
        if victims.is_empty() {
            return Ok(out);
        }
        let mut ids = Vec::with_capacity(victims.len());
        let mut log = Vec::with_capacity(victims.len());
        for (row, abandoned) in &victims {
            let entry = purged_entry(row, sweep.now)?;
            ids.push(entry.message_id.clone());
            log.push(entry);
            if *abandoned {
                out.abandoned += 1;
            } else {
                out.purged += 1;
            }
        }
        let chunks =
            sqlx::query("DELETE FROM chunks WHERE message_id = ANY($1) RETURNING size, blob_key")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
        for c in chunks {
            let size: i64 = c.try_get("size")?;
            out.bytes += size.max(0) as u64;
            if let Some(key) = c.try_get::<Option<String>, _>("blob_key")? {
                out.blob_keys.push(key);
            }
        }
        sqlx::query("DELETE FROM messages WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        append_log(&mut tx, &log).await?;
        tx.commit().await?;
        Ok(out)
    }

    pub(crate) async fn do_lifecycle_backlog(
        &self,
        expiry: Option<&ExpirySweep>,
        purge: &PurgeSweep,
    ) -> Result<u64> {
        // A NULL time matches nothing (`x <= NULL` is NULL), nor does an empty list: so
        // with expiry off only the purge terms count.
        let (due, inactive) = match expiry {
            Some(e) => (Some(e.now), e.inactive.clone()),
            None => (None, Vec::new()),
        };
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM messages WHERE \
             (status = 'accepted' AND (expires_at <= $1 OR recipient_id = ANY($2))) \
             OR (status IN ('acknowledged', 'undeliverable', 'error') AND changed_at <= $3) \
             OR (status = 'uploading' AND changed_at <= $4)",
        )
        .bind(due)
        .bind(&inactive)
        .bind(purge.retention_cutoff)
        .bind(purge.upload_cutoff)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(n.max(0) as u64)
    }

    pub(crate) async fn do_log_after(&self, after: i64, limit: u32) -> Result<Vec<LogEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, change, message_id, sender_id, recipient_id, workflow_id, status \
             FROM message_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry).collect()
    }

    pub(crate) async fn do_trim_log(&self, before: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM message_log WHERE seq <= \
             (SELECT COALESCE(MAX(seq), 0) FROM message_log WHERE at < $1)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn do_rich(
        &self,
        side: Side,
        mailbox: &str,
        since: DateTime<Utc>,
        before_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT record FROM messages WHERE ");
        match side {
            Side::Inbox => q
                .push("recipient_id = ")
                .push_bind(mailbox.to_string())
                .push(" AND in_inbox AND inbox_seq IS NOT NULL"),
            Side::Outbox => q
                .push("sender_id = ")
                .push_bind(mailbox.to_string())
                .push(" AND in_outbox"),
        };
        q.push(" AND id > ").push_bind(id_floor(since));
        if let Some(before) = before_id {
            q.push(" AND id < ").push_bind(before.to_string());
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }
}
