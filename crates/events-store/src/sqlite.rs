//! The embedded engine: `events.db`, its writes through the platform's group-commit
//! writer (one transaction and one fsync for every write waiting), reads on a read-only
//! pool.

use crate::{
    decode_event, decode_request, encode_event, encode_request, kind_of, matching, millis,
    status_of, time, Backlog, CandidateCache, DeadLetter, EventStore, Pending, Result, StoreError,
    StoredEvent, StoredSubscription, SubscriptionWrite,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use events_protocol::criteria::type_keys;
use events_protocol::subscription::Request;
use events_protocol::{Accepted, Status, Subscription};
use futures::future::BoxFuture;
use spine_events::Published;
use spine_store::writer::{Job, Writer};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The database file, in the data directory.
pub const FILE: &str = "events.db";

#[derive(Debug)]
enum Reply {
    Published(Published),
    Write(SubscriptionWrite),
    Flag(bool),
    Count(u64),
    Done,
}

pub struct SqliteEventStore {
    writer: Writer<Reply>,
    reader: SqlitePool,
    /// The last event seq handed out; only the writer assigns them.
    seq: Arc<AtomicI64>,
    candidates: Arc<CandidateCache>,
}

fn job<F>(f: F) -> Job<Reply>
where
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<Reply>> + Send + 'static,
{
    Box::new(f)
}

fn unexpected(reply: Reply) -> StoreError {
    StoreError::Corrupt(format!("writer answered {reply:?}"))
}

impl SqliteEventStore {
    /// Opens `events.db` in `dir`, creating it and its schema if needed.
    pub async fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (mut conn, reader) =
            spine_store::embedded::open(&dir.join(FILE), 4, &sqlx::migrate!("./migrations/sqlite"))
                .await?;
        let last: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM events")
            .fetch_one(&mut conn)
            .await?
            .try_get("seq")?;
        Ok(SqliteEventStore {
            writer: Writer::start(conn),
            reader,
            seq: Arc::new(AtomicI64::new(last)),
            candidates: Arc::default(),
        })
    }

    async fn write_subscription(&self, j: Job<Reply>) -> Result<SubscriptionWrite> {
        match self.writer.write(j).await? {
            Reply::Write(w) => Ok(w),
            other => Err(unexpected(other)),
        }
    }
}

/// Another subscription of `owner` (not `except`) with these criteria and endpoint.
async fn duplicate_of(
    tx: &mut SqliteConnection,
    owner: &str,
    criteria: &str,
    endpoint: &str,
    except: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM subscriptions WHERE owner = ? AND criteria = ? AND endpoint = ? AND id <> ?",
    )
    .bind(owner)
    .bind(criteria)
    .bind(endpoint)
    .bind(except)
    .fetch_optional(&mut *tx)
    .await?)
}

fn subscription_row(row: &SqliteRow) -> Result<StoredSubscription> {
    let request = decode_request(row.try_get("request")?)?;
    Ok(StoredSubscription {
        seq: row.try_get("seq")?,
        owner: row.try_get("owner")?,
        subscription: Subscription {
            id: row.try_get("id")?,
            status: status_of(row.try_get("status")?)?,
            request,
        },
        retry_at: time(row.try_get("retry_at")?),
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
    })
}

fn event_row(row: &SqliteRow) -> Result<StoredEvent> {
    let (event, legacy) = decode_event(row.try_get("event")?, row.try_get("legacy")?)?;
    Ok(StoredEvent {
        seq: row.try_get("seq")?,
        event,
        legacy,
        publisher: row.try_get("publisher")?,
        received_at: time(row.try_get("received_at")?),
    })
}

const SUBSCRIPTION_COLUMNS: &str =
    "seq, id, owner, request, status, retry_at, created_at, updated_at";

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn publish(
        &self,
        accepted: &Accepted,
        publisher: &str,
        now: DateTime<Utc>,
    ) -> Result<Published> {
        let event = accepted.event.clone();
        let body = encode_event(&event)?;
        let legacy = accepted.legacy.as_ref().map(|l| l.to_string());
        let publisher = publisher.to_string();
        let counter = self.seq.clone();
        let cache = self.candidates.clone();
        let reply = self
            .writer
            .write(job(move |tx| {
                Box::pin(async move {
                    let seen: Option<i64> =
                        sqlx::query_scalar("SELECT seq FROM events WHERE source = ? AND id = ?")
                            .bind(&event.source)
                            .bind(&event.id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if seen.is_some() {
                        return Ok(Reply::Published(Published::Duplicate));
                    }
                    // Only the writer changes subscriptions, so what it reads here holds
                    // until it commits.
                    let version: i64 =
                        sqlx::query_scalar("SELECT v FROM subscriptions_version WHERE id = 1")
                            .fetch_one(&mut *tx)
                            .await?;
                    let candidates = match cache.get(version, &event.event_type) {
                        Some(c) => c,
                        None => {
                            let mut q = QueryBuilder::<Sqlite>::new(
                                "SELECT id, criteria FROM subscriptions WHERE event_type IN (",
                            );
                            let mut keys = q.separated(", ");
                            for key in type_keys(&event.event_type) {
                                keys.push_bind(key);
                            }
                            q.push(")");
                            let rows = q.build_query_as().fetch_all(&mut *tx).await?;
                            cache.put(version, &event.event_type, rows)
                        }
                    };
                    let targets = matching(&event, &candidates);
                    let seq = counter.fetch_add(1, Ordering::Relaxed) + 1;
                    sqlx::query(
                        "INSERT INTO events (seq, source, id, type, event, legacy, publisher, received_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(seq)
                    .bind(&event.source)
                    .bind(&event.id)
                    .bind(&event.event_type)
                    .bind(&body)
                    .bind(&legacy)
                    .bind(&publisher)
                    .bind(millis(now))
                    .execute(&mut *tx)
                    .await?;
                    for chunk in targets.chunks(200) {
                        let mut q = QueryBuilder::<Sqlite>::new(
                            "INSERT INTO deliveries (subscription_id, event_seq) ",
                        );
                        q.push_values(chunk, |mut b, id| {
                            b.push_bind(id).push_bind(seq);
                        });
                        q.build().execute(&mut *tx).await?;
                    }
                    Ok(Reply::Published(Published::Accepted { seq }))
                })
            }))
            .await?;
        match reply {
            Reply::Published(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    async fn create_subscription(
        &self,
        owner: &str,
        id: &str,
        request: &Request,
        now: DateTime<Utc>,
    ) -> Result<SubscriptionWrite> {
        let (owner, id) = (owner.to_string(), id.to_string());
        let encoded = encode_request(request)?;
        let criteria = request.criteria.to_string();
        let endpoint = request.endpoint.to_string();
        let event_type = request.criteria.event_type.clone();
        self.write_subscription(job(move |tx| {
            Box::pin(async move {
                if let Some(existing) = duplicate_of(tx, &owner, &criteria, &endpoint, &id).await? {
                    return Ok(Reply::Write(SubscriptionWrite::Duplicate(existing)));
                }
                sqlx::query(
                    "INSERT INTO subscriptions (id, owner, event_type, criteria, endpoint, request, status, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&id)
                .bind(&owner)
                .bind(&event_type)
                .bind(&criteria)
                .bind(&endpoint)
                .bind(&encoded)
                .bind(Status::Active.as_str())
                .bind(millis(now))
                .bind(millis(now))
                .execute(&mut *tx)
                .await?;
                Ok(Reply::Write(SubscriptionWrite::Done))
            })
        }))
        .await
    }

    async fn subscription(&self, id: &str) -> Result<Option<StoredSubscription>> {
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(subscription_row).transpose()
    }

    async fn subscriptions(
        &self,
        owner: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredSubscription>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE owner = ? AND seq > ? ORDER BY seq LIMIT ?"
        ))
        .bind(owner)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(subscription_row).collect()
    }

    async fn replace_subscription(
        &self,
        owner: &str,
        id: &str,
        request: &Request,
        now: DateTime<Utc>,
    ) -> Result<SubscriptionWrite> {
        let (owner, id) = (owner.to_string(), id.to_string());
        let encoded = encode_request(request)?;
        let criteria = request.criteria.to_string();
        let endpoint = request.endpoint.to_string();
        let event_type = request.criteria.event_type.clone();
        self.write_subscription(job(move |tx| {
            Box::pin(async move {
                let mine: Option<String> =
                    sqlx::query_scalar("SELECT owner FROM subscriptions WHERE id = ?")
                        .bind(&id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if mine.as_deref() != Some(owner.as_str()) {
                    return Ok(Reply::Write(SubscriptionWrite::NotFound));
                }
                if let Some(existing) = duplicate_of(tx, &owner, &criteria, &endpoint, &id).await? {
                    return Ok(Reply::Write(SubscriptionWrite::Duplicate(existing)));
                }
                sqlx::query(
                    "UPDATE subscriptions SET event_type = ?, criteria = ?, endpoint = ?, request = ?, \
                     status = ?, retry_at = 0, updated_at = ? WHERE id = ?",
                )
                .bind(&event_type)
                .bind(&criteria)
                .bind(&endpoint)
                .bind(&encoded)
                .bind(Status::Active.as_str())
                .bind(millis(now))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                Ok(Reply::Write(SubscriptionWrite::Done))
            })
        }))
        .await
    }

    async fn delete_subscription(&self, owner: &str, id: &str) -> Result<bool> {
        let (owner, id) = (owner.to_string(), id.to_string());
        let reply = self
            .writer
            .write(job(move |tx| {
                Box::pin(async move {
                    let gone = sqlx::query("DELETE FROM subscriptions WHERE id = ? AND owner = ?")
                        .bind(&id)
                        .bind(&owner)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        > 0;
                    if gone {
                        for table in ["deliveries", "dead_letters"] {
                            sqlx::query(&format!("DELETE FROM {table} WHERE subscription_id = ?"))
                                .bind(&id)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    Ok(Reply::Flag(gone))
                })
            }))
            .await?;
        match reply {
            Reply::Flag(gone) => Ok(gone),
            other => Err(unexpected(other)),
        }
    }

    async fn due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT s.id FROM subscriptions s WHERE s.retry_at <= ? \
             AND EXISTS (SELECT 1 FROM deliveries d WHERE d.subscription_id = s.id) \
             ORDER BY s.retry_at LIMIT ?",
        )
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    async fn head(&self, subscription_id: &str, limit: u32) -> Result<Vec<Pending>> {
        let rows = sqlx::query(
            "SELECT e.seq, e.event, e.legacy, e.publisher, e.received_at, \
                    d.attempts, d.first_failed_at, d.last_error \
             FROM deliveries d JOIN events e ON e.seq = d.event_seq \
             WHERE d.subscription_id = ? ORDER BY d.event_seq LIMIT ?",
        )
        .bind(subscription_id)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Pending {
                    event: event_row(row)?,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
                    first_failed_at: row.try_get::<Option<i64>, _>("first_failed_at")?.map(time),
                    last_error: row.try_get("last_error")?,
                })
            })
            .collect()
    }

    async fn delivered(&self, subscription_id: &str, event_seq: i64) -> Result<()> {
        let id = subscription_id.to_string();
        self.writer
            .write(job(move |tx| {
                Box::pin(async move {
                    sqlx::query(
                        "DELETE FROM deliveries WHERE subscription_id = ? AND event_seq = ?",
                    )
                    .bind(&id)
                    .bind(event_seq)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE subscriptions SET status = 'active', retry_at = 0 \
                         WHERE id = ? AND (status <> 'active' OR retry_at <> 0)",
                    )
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                    Ok(Reply::Done)
                })
            }))
            .await
            .map(|_| ())
    }

    async fn failed(
        &self,
        subscription_id: &str,
        event_seq: i64,
        error: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (id, error) = (subscription_id.to_string(), error.to_string());
        self.writer
            .write(job(move |tx| {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE deliveries SET attempts = attempts + 1, \
                         first_failed_at = COALESCE(first_failed_at, ?), last_error = ? \
                         WHERE subscription_id = ? AND event_seq = ?",
                    )
                    .bind(millis(now))
                    .bind(&error)
                    .bind(&id)
                    .bind(event_seq)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE subscriptions SET retry_at = ? WHERE id = ?")
                        .bind(millis(retry_at))
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    Ok(Reply::Done)
                })
            }))
            .await
            .map(|_| ())
    }

    async fn dead_letter(
        &self,
        subscription_id: &str,
        event_seq: i64,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (id, error) = (subscription_id.to_string(), error.to_string());
        self.writer
            .write(job(move |tx| {
                Box::pin(async move {
                    let attempts: Option<i64> = sqlx::query_scalar(
                        "DELETE FROM deliveries WHERE subscription_id = ? AND event_seq = ? RETURNING attempts",
                    )
                    .bind(&id)
                    .bind(event_seq)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(attempts) = attempts else {
                        return Ok(Reply::Done);
                    };
                    sqlx::query(
                        "INSERT OR REPLACE INTO dead_letters (subscription_id, event_seq, attempts, last_error, failed_at) \
                         VALUES (?, ?, ?, ?, ?)",
                    )
                    .bind(&id)
                    .bind(event_seq)
                    .bind(attempts + 1)
                    .bind(&error)
                    .bind(millis(now))
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE subscriptions SET status = 'error', retry_at = 0 WHERE id = ?")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    Ok(Reply::Done)
                })
            }))
            .await
            .map(|_| ())
    }

    async fn dead_letters(
        &self,
        subscription_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT subscription_id, event_seq, attempts, last_error, failed_at FROM dead_letters \
             WHERE ?1 IS NULL OR subscription_id = ?1 ORDER BY event_seq, subscription_id LIMIT ?2",
        )
        .bind(subscription_id)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetter {
                    subscription_id: row.try_get("subscription_id")?,
                    event_seq: row.try_get("event_seq")?,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
                    last_error: row.try_get("last_error")?,
                    failed_at: time(row.try_get("failed_at")?),
                })
            })
            .collect()
    }

    async fn replay_dead_letters(&self, subscription_id: &str) -> Result<u64> {
        let id = subscription_id.to_string();
        let reply = self
            .writer
            .write(job(move |tx| {
                Box::pin(async move {
                    let n = sqlx::query(
                        "INSERT OR IGNORE INTO deliveries (subscription_id, event_seq) \
                         SELECT subscription_id, event_seq FROM dead_letters WHERE subscription_id = ?",
                    )
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    sqlx::query("DELETE FROM dead_letters WHERE subscription_id = ?")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE subscriptions SET retry_at = 0 WHERE id = ?")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    Ok(Reply::Count(n))
                })
            }))
            .await?;
        match reply {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    async fn events_after(
        &self,
        after: i64,
        event_type: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT seq, event, legacy, publisher, received_at FROM events \
             WHERE seq > ? AND (? IS NULL OR type = ?) ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(event_type)
        .bind(event_type)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(event_row).collect()
    }

    async fn backlog(&self) -> Result<Backlog> {
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT s.endpoint, COUNT(*), MIN(e.received_at) FROM deliveries d \
             JOIN subscriptions s ON s.id = d.subscription_id \
             JOIN events e ON e.seq = d.event_seq GROUP BY s.endpoint",
        )
        .fetch_all(&self.reader)
        .await?;
        let dead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters")
            .fetch_one(&self.reader)
            .await?;
        Ok(crate::fold_backlog(
            rows.into_iter()
                .map(|(endpoint, n, oldest)| (kind_of(&endpoint), n, oldest)),
            dead,
        ))
    }

    async fn purge(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        let reply = self
            .writer
            .write(job(move |tx| {
                Box::pin(async move {
                    let gone = sqlx::query(
                        "DELETE FROM events WHERE seq IN (SELECT e.seq FROM events e \
                         WHERE e.received_at < ? \
                         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq) \
                         AND NOT EXISTS (SELECT 1 FROM dead_letters x WHERE x.event_seq = e.seq) \
                         ORDER BY e.seq LIMIT ?)",
                    )
                    .bind(millis(before))
                    .bind(i64::from(limit))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    Ok(Reply::Count(gone))
                })
            }))
            .await?;
        match reply {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
}
