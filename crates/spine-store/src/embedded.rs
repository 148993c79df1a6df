//! Opening a service's embedded SQLite database the one way the platform does: WAL, so
//! readers never wait for the writer; `synchronous=FULL`, so a commit is on disk before
//! anyone is told it happened; the service's migrations; then one write connection (for a
//! [`crate::writer::Writer`]) and a pool of read-only ones.

use crate::Result;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::ConnectOptions;
use std::path::Path;
use std::time::Duration;

/// Opens (creating if needed) `path`, runs `migrator`, and returns the write connection
/// and `readers` read-only connections.
pub async fn open(
    path: &Path,
    readers: u32,
    migrator: &Migrator,
) -> Result<(SqliteConnection, SqlitePool)> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let mut conn = options.connect().await?;
    migrator.run(&mut conn).await?;
    let reader = SqlitePoolOptions::new()
        .max_connections(readers.max(1))
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.read_only(true))
        .await?;
    Ok((conn, reader))
}
