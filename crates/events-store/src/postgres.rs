//! The shared engine: the `ev_*` tables of the PostgreSQL that every node is given. Each
//! call is one transaction. Event numbers come from the one-row `ev_counter`, taken as
//! the last step before COMMIT, so they are gapless and visible in commit order: every
//! subscription's queue is in acceptance order even when nodes publish at once.

use crate::{
    decode_event, decode_request, encode_event, encode_request, kind_of, matching, millis,
    status_of, time, Backlog, CandidateCache, DeadLetter, EventStore, Pending, Result, StoredEvent,
    StoredSubscription, SubscriptionWrite,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use events_protocol::criteria::type_keys;
use events_protocol::subscription::Request;
use events_protocol::{Accepted, Status, Subscription};
use spine_events::Published;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, QueryBuilder, Row};
use std::time::Duration;

pub struct PgEventStore {
    pool: PgPool,
    candidates: CandidateCache,
}

async fn subscriptions_version(tx: &mut PgConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT v FROM ev_subscriptions_version WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?,
    )
}

const SUBSCRIPTION_COLUMNS: &str =
    "seq, id, owner, request, status, retry_at, created_at, updated_at";

impl PgEventStore {
    /// Connects a pool of `max_connections` to `url` and brings the `ev_*` tables up to
    /// date (sqlx holds an advisory lock while it migrates, so nodes starting together
    /// apply each migration once).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        {
            let mut conn = PgConnection::connect(url).await?;
            let mut migrator = sqlx::migrate!("./migrations/postgres");
            // The other services' migrations share the _sqlx_migrations table.
            migrator.set_ignore_missing(true);
            migrator.run(&mut conn).await?;
            conn.close().await?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(PgEventStore {
            pool,
            candidates: CandidateCache::default(),
        })
    }

    /// A handle on the pool, for tests that look at the tables.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn duplicate_of(
    tx: &mut PgConnection,
    owner: &str,
    criteria: &str,
    endpoint: &str,
    except: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM ev_subscriptions WHERE owner = $1 AND criteria = $2 AND endpoint = $3 AND id <> $4",
    )
    .bind(owner)
    .bind(criteria)
    .bind(endpoint)
    .bind(except)
    .fetch_optional(&mut *tx)
    .await?)
}

fn subscription_row(row: &PgRow) -> Result<StoredSubscription> {
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

fn event_row(row: &PgRow) -> Result<StoredEvent> {
    let (event, legacy) = decode_event(row.try_get("event")?, row.try_get("legacy")?)?;
    Ok(StoredEvent {
        seq: row.try_get("seq")?,
        event,
        legacy,
        publisher: row.try_get("publisher")?,
        received_at: time(row.try_get("received_at")?),
    })
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn publish(
        &self,
        accepted: &Accepted,
        publisher: &str,
        now: DateTime<Utc>,
    ) -> Result<Published> {
        let event = &accepted.event;
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO ev_events (source, id, type, event, legacy, publisher, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, id) DO NOTHING",
        )
        .bind(&event.source)
        .bind(&event.id)
        .bind(&event.event_type)
        .bind(encode_event(event)?)
        .bind(accepted.legacy.as_ref().map(|l| l.to_string()))
        .bind(publisher)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Committed by another publish of the same pair (ON CONFLICT waited for it).
            tx.rollback().await?;
            return Ok(Published::Duplicate);
        }
        let version = subscriptions_version(&mut tx).await?;
        let candidates = match self.candidates.get(version, &event.event_type) {
            Some(c) => c,
            None => {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT id, criteria FROM ev_subscriptions WHERE event_type = ANY($1)",
                )
                .bind(type_keys(&event.event_type))
                .fetch_all(&mut *tx)
                .await?;
                // Each statement sees what was committed when it began: keep the rows only
                // if no subscription changed between the two reads of the version.
                let after = subscriptions_version(&mut tx).await?;
                let version = if after == version { version } else { i64::MIN };
                self.candidates.put(version, &event.event_type, rows)
            }
        };
        let targets = matching(event, &candidates);
        // Last: the counter's row lock orders commits.
        let seq: i64 =
            sqlx::query_scalar("UPDATE ev_counter SET last = last + 1 WHERE id = 1 RETURNING last")
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query("UPDATE ev_events SET seq = $1 WHERE source = $2 AND id = $3")
            .bind(seq)
            .bind(&event.source)
            .bind(&event.id)
            .execute(&mut *tx)
            .await?;
        for chunk in targets.chunks(500) {
            let mut q = QueryBuilder::<Postgres>::new(
                "INSERT INTO ev_deliveries (subscription_id, event_seq) ",
            );
            q.push_values(chunk, |mut b, id| {
                b.push_bind(id).push_bind(seq);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Published::Accepted { seq })
    }

    async fn create_subscription(
        &self,
        owner: &str,
        id: &str,
        request: &Request,
        now: DateTime<Utc>,
    ) -> Result<SubscriptionWrite> {
        let criteria = request.criteria.to_string();
        let endpoint = request.endpoint.to_string();
        let mut tx = self.pool.begin().await?;
        // One writer of an owner's subscriptions at a time: the duplicate check holds.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('ev-owner:' || $1))")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        if let Some(existing) = duplicate_of(&mut tx, owner, &criteria, &endpoint, id).await? {
            return Ok(SubscriptionWrite::Duplicate(existing));
        }
        sqlx::query(
            "INSERT INTO ev_subscriptions (id, owner, event_type, criteria, endpoint, request, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(id)
        .bind(owner)
        .bind(&request.criteria.event_type)
        .bind(&criteria)
        .bind(&endpoint)
        .bind(encode_request(request)?)
        .bind(Status::Active.as_str())
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SubscriptionWrite::Done)
    }

    async fn subscription(&self, id: &str) -> Result<Option<StoredSubscription>> {
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM ev_subscriptions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
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
            "SELECT {SUBSCRIPTION_COLUMNS} FROM ev_subscriptions WHERE owner = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(owner)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
        let criteria = request.criteria.to_string();
        let endpoint = request.endpoint.to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('ev-owner:' || $1))")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        let mine: Option<String> =
            sqlx::query_scalar("SELECT owner FROM ev_subscriptions WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if mine.as_deref() != Some(owner) {
            return Ok(SubscriptionWrite::NotFound);
        }
        if let Some(existing) = duplicate_of(&mut tx, owner, &criteria, &endpoint, id).await? {
            return Ok(SubscriptionWrite::Duplicate(existing));
        }
        sqlx::query(
            "UPDATE ev_subscriptions SET event_type = $1, criteria = $2, endpoint = $3, request = $4, \
             status = $5, retry_at = 0, updated_at = $6 WHERE id = $7",
        )
        .bind(&request.criteria.event_type)
        .bind(&criteria)
        .bind(&endpoint)
        .bind(encode_request(request)?)
        .bind(Status::Active.as_str())
        .bind(millis(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SubscriptionWrite::Done)
    }

    async fn delete_subscription(&self, owner: &str, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM ev_subscriptions WHERE id = $1 AND owner = $2")
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if gone {
            for table in ["ev_deliveries", "ev_dead_letters"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE subscription_id = $1"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(gone)
    }

    async fn due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT s.id FROM ev_subscriptions s WHERE s.retry_at <= $1 \
             AND EXISTS (SELECT 1 FROM ev_deliveries d WHERE d.subscription_id = s.id) \
             ORDER BY s.retry_at LIMIT $2",
        )
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn head(&self, subscription_id: &str, limit: u32) -> Result<Vec<Pending>> {
        let rows = sqlx::query(
            "SELECT e.seq, e.event, e.legacy, e.publisher, e.received_at, \
                    d.attempts, d.first_failed_at, d.last_error \
             FROM ev_deliveries d JOIN ev_events e ON e.seq = d.event_seq \
             WHERE d.subscription_id = $1 ORDER BY d.event_seq LIMIT $2",
        )
        .bind(subscription_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Pending {
                    event: event_row(row)?,
                    attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
                    first_failed_at: row.try_get::<Option<i64>, _>("first_failed_at")?.map(time),
                    last_error: row.try_get("last_error")?,
                })
            })
            .collect()
    }

    async fn delivered(&self, subscription_id: &str, event_seq: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM ev_deliveries WHERE subscription_id = $1 AND event_seq = $2")
            .bind(subscription_id)
            .bind(event_seq)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE ev_subscriptions SET status = 'active', retry_at = 0 \
             WHERE id = $1 AND (status <> 'active' OR retry_at <> 0)",
        )
        .bind(subscription_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn failed(
        &self,
        subscription_id: &str,
        event_seq: i64,
        error: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE ev_deliveries SET attempts = attempts + 1, \
             first_failed_at = COALESCE(first_failed_at, $1), last_error = $2 \
             WHERE subscription_id = $3 AND event_seq = $4",
        )
        .bind(millis(now))
        .bind(error)
        .bind(subscription_id)
        .bind(event_seq)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE ev_subscriptions SET retry_at = $1 WHERE id = $2")
            .bind(millis(retry_at))
            .bind(subscription_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        subscription_id: &str,
        event_seq: i64,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let attempts: Option<i32> = sqlx::query_scalar(
            "DELETE FROM ev_deliveries WHERE subscription_id = $1 AND event_seq = $2 RETURNING attempts",
        )
        .bind(subscription_id)
        .bind(event_seq)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(attempts) = attempts {
            sqlx::query(
                "INSERT INTO ev_dead_letters (subscription_id, event_seq, attempts, last_error, failed_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subscription_id, event_seq) DO UPDATE \
                 SET attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, failed_at = EXCLUDED.failed_at",
            )
            .bind(subscription_id)
            .bind(event_seq)
            .bind(attempts + 1)
            .bind(error)
            .bind(millis(now))
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE ev_subscriptions SET status = 'error', retry_at = 0 WHERE id = $1")
                .bind(subscription_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn dead_letters(
        &self,
        subscription_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT subscription_id, event_seq, attempts, last_error, failed_at FROM ev_dead_letters \
             WHERE $1::text IS NULL OR subscription_id = $1 ORDER BY event_seq, subscription_id LIMIT $2",
        )
        .bind(subscription_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetter {
                    subscription_id: row.try_get("subscription_id")?,
                    event_seq: row.try_get("event_seq")?,
                    attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
                    last_error: row.try_get("last_error")?,
                    failed_at: time(row.try_get("failed_at")?),
                })
            })
            .collect()
    }

    async fn replay_dead_letters(&self, subscription_id: &str) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        // Moved, not copied: the delete names what was inserted, under the same snapshot.
        let n = sqlx::query(
            "WITH moved AS (DELETE FROM ev_dead_letters WHERE subscription_id = $1 \
                            RETURNING subscription_id, event_seq) \
             INSERT INTO ev_deliveries (subscription_id, event_seq) \
             SELECT subscription_id, event_seq FROM moved ON CONFLICT DO NOTHING",
        )
        .bind(subscription_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("UPDATE ev_subscriptions SET retry_at = 0 WHERE id = $1")
            .bind(subscription_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn events_after(
        &self,
        after: i64,
        event_type: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT seq, event, legacy, publisher, received_at FROM ev_events \
             WHERE seq > $1 AND ($2::text IS NULL OR type = $2) ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(event_type)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_row).collect()
    }

    async fn backlog(&self) -> Result<Backlog> {
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT s.endpoint, COUNT(*), MIN(e.received_at) FROM ev_deliveries d \
             JOIN ev_subscriptions s ON s.id = d.subscription_id \
             JOIN ev_events e ON e.seq = d.event_seq GROUP BY s.endpoint",
        )
        .fetch_all(&self.pool)
        .await?;
        let dead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ev_dead_letters")
            .fetch_one(&self.pool)
            .await?;
        Ok(crate::fold_backlog(
            rows.into_iter()
                .map(|(endpoint, n, oldest)| (kind_of(&endpoint), n, oldest)),
            dead,
        ))
    }

    async fn purge(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM ev_events WHERE seq IN (SELECT e.seq FROM ev_events e \
             WHERE e.received_at < $1 AND e.seq IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM ev_deliveries d WHERE d.event_seq = e.seq) \
             AND NOT EXISTS (SELECT 1 FROM ev_dead_letters x WHERE x.event_seq = e.seq) \
             ORDER BY e.seq LIMIT $2)",
        )
        .bind(millis(before))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
