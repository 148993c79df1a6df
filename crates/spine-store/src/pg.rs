//! The coordination store on PostgreSQL: every node on one database sees the same
//! claims, records, counts and leases. Each method is one statement, so atomic without
//! an explicit transaction; `ON CONFLICT` makes concurrent claims of one key from two
//! nodes end with exactly one winner.
//!
//! Its tables (`coord_*`) are created at connect with `IF NOT EXISTS`: they belong to no
//! service's migrations, so a database that several services share needs no ordering
//! between them.

use crate::{check_key, Coordination, Result, SWEEP_MARGIN_SECS, SWEEP_SECS};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use sqlx::Row;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

pub struct PgCoordination {
    pool: PgPool,
    last_sweep: AtomicI64,
}

impl PgCoordination {
    /// Uses `pool` (shared with the service's own store), creating the tables if needed.
    pub async fn new(pool: PgPool) -> Result<Self> {
        // Two nodes starting at once may both try to create the tables; the advisory lock
        // makes the second wait instead of failing on a duplicate type.
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(7270817)")
            .execute(&mut *tx)
            .await?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS coord_once (
                scope TEXT NOT NULL, key TEXT NOT NULL, until BIGINT NOT NULL,
                PRIMARY KEY (scope, key))",
            "CREATE INDEX IF NOT EXISTS coord_once_until ON coord_once (until)",
            "CREATE TABLE IF NOT EXISTS coord_records (
                scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, until BIGINT NOT NULL,
                PRIMARY KEY (scope, key))",
            "CREATE INDEX IF NOT EXISTS coord_records_until ON coord_records (until)",
            "CREATE TABLE IF NOT EXISTS coord_windows (
                scope TEXT NOT NULL, key TEXT NOT NULL, window_start BIGINT NOT NULL,
                hits BIGINT NOT NULL, until BIGINT NOT NULL,
                PRIMARY KEY (scope, key, window_start))",
            "CREATE TABLE IF NOT EXISTS coord_leases (
                name TEXT PRIMARY KEY, holder TEXT NOT NULL, until BIGINT NOT NULL)",
        ] {
            sqlx::query(ddl).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(PgCoordination {
            pool,
            last_sweep: AtomicI64::new(0),
        })
    }

    /// Connects its own pool to `url`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Self::new(pool).await
    }

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
            sqlx::query(&format!("DELETE FROM {table} WHERE until < $1"))
                .bind(before)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Coordination for PgCoordination {
    async fn use_once(
        &self,
        scope: &str,
        key: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        check_key(scope, key)?;
        self.sweep_if_due(now.timestamp()).await?;
        let done = sqlx::query(
            "INSERT INTO coord_once (scope, key, until) VALUES ($1, $2, $3)
             ON CONFLICT (scope, key) DO UPDATE SET until = EXCLUDED.until
             WHERE coord_once.until < $4",
        )
        .bind(scope)
        .bind(key)
        .bind(until.timestamp())
        .bind(now.timestamp())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, scope: &str, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM coord_once WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn put(&self, scope: &str, key: &str, value: &str, until: DateTime<Utc>) -> Result<()> {
        check_key(scope, key)?;
        if value.len() > crate::MAX_VALUE_LEN || value.contains('\0') {
            return Err(crate::StoreError::Invalid("record value too large".into()));
        }
        sqlx::query(
            "INSERT INTO coord_records (scope, key, value, until) VALUES ($1, $2, $3, $4)
             ON CONFLICT (scope, key) DO UPDATE SET value = EXCLUDED.value, until = EXCLUDED.until",
        )
        .bind(scope)
        .bind(key)
        .bind(value)
        .bind(until.timestamp())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get(&self, scope: &str, key: &str, now: DateTime<Utc>) -> Result<Option<String>> {
        if check_key(scope, key).is_err() {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT value FROM coord_records WHERE scope = $1 AND key = $2 AND until >= $3",
        )
        .bind(scope)
        .bind(key)
        .bind(now.timestamp())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    async fn take(&self, scope: &str, key: &str, now: DateTime<Utc>) -> Result<Option<String>> {
        if check_key(scope, key).is_err() {
            return Ok(None);
        }
        let row = sqlx::query(
            "DELETE FROM coord_records WHERE scope = $1 AND key = $2 RETURNING value, until",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
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
            "INSERT INTO coord_windows (scope, key, window_start, hits, until) VALUES ($1, $2, $3, 1, $4)
             ON CONFLICT (scope, key, window_start) DO UPDATE SET hits = coord_windows.hits + 1
             RETURNING hits",
        )
        .bind(scope)
        .bind(key)
        .bind(window_start)
        .bind(window_start.saturating_add(window.as_secs() as i64))
        .fetch_one(&self.pool)
        .await?;
        let hits: i64 = row.try_get("hits")?;
        Ok(hits.max(0) as u64)
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        // The database's clock, not the node's: nodes' clocks differ, the database has one.
        let done = sqlx::query(
            "INSERT INTO coord_leases (name, holder, until)
             VALUES ($1, $2, extract(epoch from now())::bigint + $3)
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
             WHERE coord_leases.until < extract(epoch from now())::bigint
                OR coord_leases.holder = EXCLUDED.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(ttl.as_secs().min(i64::MAX as u64) as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
