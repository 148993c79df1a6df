//! The coordination store on SQLite: a database file of its own (`coordination.db` in the
//! data directory), in WAL mode.
//!
//! Two connections, two durability levels. Claims and records (a used `jti`, an issued
//! access or refresh token) are acknowledged to a client, so they are written with
//! `synchronous=FULL`: on disk when the call returns. Counts and leases are written with
//! `synchronous=NORMAL`: a process crash keeps them, a power cut may lose the last few,
//! which at worst lets a client make a few more requests in that window.

use crate::{check_key, Coordination, Result, SWEEP_MARGIN_SECS, SWEEP_SECS};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

pub struct SqliteCoordination {
    /// `synchronous=FULL`: claims and records.
    durable: SqlitePool,
    /// `synchronous=NORMAL`: counts and leases.
    relaxed: SqlitePool,
    last_sweep: AtomicI64,
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
        Ok(SqliteCoordination {
            durable,
            relaxed,
            last_sweep: AtomicI64::new(0),
        })
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
        // A claim that ended (and was not swept yet) may be taken again.
        let done = sqlx::query(
            "INSERT INTO coord_once (scope, key, until) VALUES (?, ?, ?)
             ON CONFLICT (scope, key) DO UPDATE SET until = excluded.until
             WHERE coord_once.until < ?",
        )
        .bind(scope)
        .bind(key)
        .bind(until.timestamp())
        .bind(now.timestamp())
        .execute(&self.durable)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, scope: &str, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM coord_once WHERE scope = ? AND key = ?")
            .bind(scope)
            .bind(key)
            .execute(&self.durable)
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
