//! The coordination store on SQLite: a database file of its own (`coordination.db` in the
//! data directory), in WAL mode.
//!
//! Two connections, two durability levels. Records (an issued access or refresh token) are
//! acknowledged to a client as something it holds, so they are written with
//! `synchronous=FULL`: on disk when the call returns. Claims, counts and leases are
//! written with `synchronous=NORMAL`: a process crash keeps them (the WAL is in the OS), a
//! power cut may lose the last few. For a claim that means a token or `jti` used in the
//! last moments before a power cut could be replayed once within its short life; for a
//! count, a few more requests in that window.
//!
//! Claims are as frequent as requests (every MESH request records its token), so
//! concurrent claims are written in batches: one multi-row insert, one commit, for every
//! claim that arrived while the previous batch was being written.

use crate::{check_key, Coordination, Result, StoreError, SWEEP_MARGIN_SECS, SWEEP_SECS};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub struct SqliteCoordination {
    /// `synchronous=FULL`: records.
    durable: SqlitePool,
    /// `synchronous=NORMAL`: claims, counts and leases.
    relaxed: SqlitePool,
    last_sweep: AtomicI64,
    claims: mpsc::Sender<Claim>,
}

/// One claim waiting for the next batch.
struct Claim {
    scope: String,
    key: String,
    until: i64,
    now: i64,
    reply: oneshot::Sender<Result<bool>>,
}

/// Most claims in one insert (three parameters each, far below SQLite's limit).
const CLAIM_BATCH: usize = 256;

/// Writes batches of claims until every sender is gone.
async fn write_claim_batches(pool: SqlitePool, mut rx: mpsc::Receiver<Claim>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < CLAIM_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        match insert_claims(&pool, &batch).await {
            Ok(mut fresh) => {
                for c in batch {
                    // A key twice in one batch is claimed once: the first use wins.
                    let won = fresh.remove(&(c.scope, c.key));
                    let _ = c.reply.send(Ok(won));
                }
            }
            Err(e) => {
                let why = e.to_string();
                for c in batch {
                    let _ = c.reply.send(Err(StoreError::Unavailable(format!(
                        "recording a claim: {why}"
                    ))));
                }
            }
        }
    }
}

/// Inserts the batch; returns the claims that were won. A claim that ended before the
/// earliest `now` of the batch may be taken again (the earliest, so that no caller sees a
/// claim end sooner than by its own clock).
async fn insert_claims(pool: &SqlitePool, batch: &[Claim]) -> Result<HashSet<(String, String)>> {
    let now = batch.iter().map(|c| c.now).min().unwrap_or(0);
    let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO coord_once (scope, key, until) ");
    q.push_values(batch, |mut row, c| {
        row.push_bind(&c.scope).push_bind(&c.key).push_bind(c.until);
    });
    q.push(
        " ON CONFLICT (scope, key) DO UPDATE SET until = excluded.until WHERE coord_once.until < ",
    );
    q.push_bind(now);
    q.push(" RETURNING scope, key");
    let rows = q.build().fetch_all(pool).await?;
    rows.iter()
        .map(|r| Ok((r.try_get("scope")?, r.try_get("key")?)))
        .collect()
}

async fn pool(path: &Path, sync: SqliteSynchronous) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .busy_timeout(Duration::from_secs(10));
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await?)
}

impl SqliteCoordination {
    /// Opens (creating if needed) the coordination database at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        let durable = pool(path, SqliteSynchronous::Full).await?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS coord_once (
                scope TEXT NOT NULL, key TEXT NOT NULL, until INTEGER NOT NULL,
                PRIMARY KEY (scope, key)) WITHOUT ROWID",
            "CREATE INDEX IF NOT EXISTS coord_once_until ON coord_once (until)",
            "CREATE TABLE IF NOT EXISTS coord_records (
                scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, until INTEGER NOT NULL,
                PRIMARY KEY (scope, key)) WITHOUT ROWID",
            "CREATE INDEX IF NOT EXISTS coord_records_until ON coord_records (until)",
            "CREATE TABLE IF NOT EXISTS coord_windows (
                scope TEXT NOT NULL, key TEXT NOT NULL, window_start INTEGER NOT NULL,
                hits INTEGER NOT NULL, until INTEGER NOT NULL,
                PRIMARY KEY (scope, key, window_start)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS coord_leases (
                name TEXT PRIMARY KEY NOT NULL, holder TEXT NOT NULL, until INTEGER NOT NULL)",
        ] {
            sqlx::query(ddl).execute(&durable).await?;
        }
        let relaxed = pool(path, SqliteSynchronous::Normal).await?;
        let (claims, rx) = mpsc::channel(4096);
        tokio::spawn(write_claim_batches(relaxed.clone(), rx));
        Ok(SqliteCoordination {
            durable,
            relaxed,
            last_sweep: AtomicI64::new(0),
            claims,
        })
    }

    /// Closes both connections (tests that reopen the file).
    pub async fn close(&self) {
        self.durable.close().await;
        self.relaxed.close().await;
    }

    /// Deletes rows that ended long enough ago, at most once a minute.
    async fn sweep_if_due(&self, now: i64) -> Result<()> {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if !(now - last >= SWEEP_SECS || now < last)
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        let before = now - SWEEP_MARGIN_SECS;
        for table in ["coord_once", "coord_records", "coord_windows"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE until < ?"))
                .bind(before)
                .execute(&self.relaxed)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Coordination for SqliteCoordination {
    async fn use_once(
        &self,
        scope: &str,
        key: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        check_key(scope, key)?;
        self.sweep_if_due(now.timestamp()).await?;
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the claim writer has stopped".into());
        self.claims
            .send(Claim {
                scope: scope.to_string(),
                key: key.to_string(),
                until: until.timestamp(),
                now: now.timestamp(),
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn release(&self, scope: &str, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM coord_once WHERE scope = ? AND key = ?")
            .bind(scope)
            .bind(key)
            .execute(&self.relaxed)
            .await?;
        Ok(())
    }

    async fn put(&self, scope: &str, key: &str, value: &str, until: DateTime<Utc>) -> Result<()> {
        check_key(scope, key)?;
        if value.len() > crate::MAX_VALUE_LEN || value.contains('\0') {
            return Err(crate::StoreError::Invalid("record value too large".into()));
        }
        sqlx::query(
            "INSERT INTO coord_records (scope, key, value, until) VALUES (?, ?, ?, ?)
             ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, until = excluded.until",
        )
        .bind(scope)
        .bind(key)
        .bind(value)
        .bind(until.timestamp())
        .execute(&self.durable)
        .await?;
        Ok(())
    }

    async fn get(&self, scope: &str, key: &str, now: DateTime<Utc>) -> Result<Option<String>> {
        if check_key(scope, key).is_err() {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT value FROM coord_records WHERE scope = ? AND key = ? AND until >= ?",
        )
        .bind(scope)
        .bind(key)
        .bind(now.timestamp())
        .fetch_optional(&self.relaxed)
        .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    async fn take(&self, scope: &str, key: &str, now: DateTime<Utc>) -> Result<Option<String>> {
        if check_key(scope, key).is_err() {
            return Ok(None);
        }
        let row = sqlx::query(
            "DELETE FROM coord_records WHERE scope = ? AND key = ? RETURNING value, until",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.durable)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let until: i64 = row.try_get("until")?;
        if until < now.timestamp() {
            return Ok(None);
        }
        Ok(Some(row.try_get("value")?))
    }

    async fn count(
        &self,
        scope: &str,
        key: &str,
        window_start: i64,
        window: Duration,
    ) -> Result<u64> {
        check_key(scope, key)?;
        self.sweep_if_due(Utc::now().timestamp()).await?;
        let row = sqlx::query(
            "INSERT INTO coord_windows (scope, key, window_start, hits, until) VALUES (?, ?, ?, 1, ?)
             ON CONFLICT (scope, key, window_start) DO UPDATE SET hits = hits + 1
             RETURNING hits",
        )
        .bind(scope)
        .bind(key)
        .bind(window_start)
        .bind(window_start.saturating_add(window.as_secs() as i64))
        .fetch_one(&self.relaxed)
        .await?;
        let hits: i64 = row.try_get("hits")?;
        Ok(hits.max(0) as u64)
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = Utc::now().timestamp();
        let done = sqlx::query(
            "INSERT INTO coord_leases (name, holder, until) VALUES (?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE coord_leases.until < ? OR coord_leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now.saturating_add(ttl.as_secs() as i64))
        .bind(now)
        .execute(&self.relaxed)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.relaxed).await?;
        Ok(())
    }
}
