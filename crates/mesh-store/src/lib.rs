//! MESH storage: message metadata in a [`MetaStore`], payload chunks in a [`BlobStore`].
//!
//! The two are separate traits because they scale separately: metadata is small and
//! transactional (SQLite embedded, PostgreSQL shared by many nodes), payloads are large and
//! streamed (local files embedded, S3-compatible object storage shared). [`Store`] joins them and holds the
//! one rule that makes a crash harmless: a chunk's bytes are durable in the blob store
//! *before* the metadata transaction that makes them reachable commits.

mod blob;
mod disk;
mod error;
mod group;
mod meta;
mod operator;
mod pg_lifecycle;
mod postgres;
mod rows;
mod sqlite;
mod sqlite_lifecycle;
mod store;

pub use blob::{BlobStore, ByteStream, LocalBlobStore, S3BlobStore, S3Options};
pub use disk::{is_disk_full, DiskGuard, DiskState};
pub use error::{Result, StoreError};
pub use meta::{
    AckOutcome, ChunkLocation, ChunkRecord, ExpiryOutcome, ExpirySweep, InboxEntry, LogEntry,
    MetaStore, PurgeOutcome, PurgeSweep, PutChunkOutcome, Side,
};
pub use operator::{ActionOutcome, InboxDepth, MessageQuery, OperatorAction, StoreStats};
pub use postgres::{PgMetaStore, PgOptions};
pub use sqlite::SqliteMetaStore;
pub use store::{redact_url, BackendSpec, ChunkAccepted, Store, StoreConfig};
