//! Storage that every OpenSpine service shares.
//!
//! * [`StoreError`]: one storage error, so that every service maps store failures alike.
//! * Blob stores ([`BlobStore`]: local files fsynced before `put` returns, or an
//!   S3-compatible store), for payloads too large for a database row.
//! * The embedded database: [`embedded::open`] with the platform's settings, and its
//!   group-commit [`writer`]: one task owns the SQLite write
//!   connection and commits every waiting write in one transaction and one fsync.
//! * The [`DirLock`]: one process per data directory.
//! * The [`DiskGuard`]: a reserve of disk space that keeps an embedded store answering
//!   reads when its disk fills.
//! * The coordination store, the small primitives that let several nodes on one store act
//!   as one:
//!   - use a key once until a time (MESH token replay, a client assertion's `jti`, a
//!     refresh token);
//!   - keep a record until a time (an opaque access token that any node must accept);
//!   - count in a time window (a quota that holds across nodes);
//!   - take a lease (a job that one node at a time runs).
//!
//! Coordination is one trait, [`Coordination`], with one implementation per backend: [`SqliteCoordination`]
//! (the embedded default, a database file of its own) and [`PgCoordination`] (every node
//! on one PostgreSQL). One test suite runs against both (`tests/coordination.rs`).

mod blob;
mod dirlock;
mod disk;
pub mod embedded;
mod error;
mod pg;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
pub mod writer;

pub use blob::{BlobStore, ByteStream, LocalBlobStore, S3BlobStore, S3Options};
pub use dirlock::DirLock;
pub use disk::{is_disk_full, DiskGuard, DiskState};
pub use error::{Result, StoreError};
pub use pg::PgCoordination;
pub use sqlite::SqliteCoordination;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Longest scope or key accepted: keys come from clients (a `jti`, a token), and a store
/// must not be made to keep megabytes per request.
pub const MAX_KEY_LEN: usize = 512;

/// Largest record value.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// The coordination primitives. Every method is one atomic step in the store: two nodes
/// calling [`Coordination::use_once`] with the same key at the same moment get one `true`
/// and one `false`, never two `true`.
///
/// `scope` separates the users of one store (`mesh-token`, `frontdoor-jti`, …), so that
/// one service's keys can never collide with another's.
#[async_trait]
pub trait Coordination: Send + Sync + 'static {
    /// Claims `key` until `until`. `false` when it is already claimed and its claim has not
    /// ended at `now`. Claims are swept some time after `until`, never before.
    async fn use_once(
        &self,
        scope: &str,
        key: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Gives a claim back (the request that made it was answered with a retryable error).
    async fn release(&self, scope: &str, key: &str) -> Result<()>;

    /// Keeps `value` under `key` until `until`, replacing any earlier value.
    async fn put(&self, scope: &str, key: &str, value: &str, until: DateTime<Utc>) -> Result<()>;

    /// The value under `key`, unless it ended before `now`.
    async fn get(&self, scope: &str, key: &str, now: DateTime<Utc>) -> Result<Option<String>>;

    /// Removes `key` and returns its value, unless it ended before `now`. Of several
    /// callers, on any nodes, at most one gets the value (a refresh token works once).
    async fn take(&self, scope: &str, key: &str, now: DateTime<Utc>) -> Result<Option<String>>;

    /// Counts one hit for `key` in the window that starts at `window_start` (Unix seconds)
    /// and lasts `window`, and returns the hits in that window so far, this one included.
    async fn count(
        &self,
        scope: &str,
        key: &str,
        window_start: i64,
        window: Duration,
    ) -> Result<u64>;

    /// Takes or renews the lease `name` for `holder` for `ttl`. `false` while another
    /// holder's lease is running.
    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;

    /// The store answers.
    async fn ping(&self) -> Result<()>;
}

/// Keys come from clients: too long, or holding a NUL (which PostgreSQL text cannot
/// store), they are refused the same way on both backends.
pub(crate) fn check_key(scope: &str, key: &str) -> Result<()> {
    if scope.len() + key.len() > MAX_KEY_LEN {
        return Err(StoreError::Invalid(format!(
            "coordination key longer than {MAX_KEY_LEN} bytes"
        )));
    }
    if scope.contains('\0') || key.contains('\0') {
        return Err(StoreError::Invalid("coordination key holds a NUL".into()));
    }
    Ok(())
}

/// Expired rows are swept at most this often (seconds), by whichever call comes first.
pub(crate) const SWEEP_SECS: i64 = 60;

/// Rows are swept only this long after they ended: nodes' clocks differ a little, and a
/// check made just before the end must still find its row.
pub(crate) const SWEEP_MARGIN_SECS: i64 = 300;
