//! MESH storage: message metadata in a [`MetaStore`], payload chunks in a [`BlobStore`].
//!
//! The two are separate traits because they scale separately: metadata is small and
//! transactional (SQLite embedded, PostgreSQL shared by many nodes), payloads are large and
//! streamed (local files embedded, S3-compatible object storage shared). [`Store`] joins them and holds the
//! one rule that makes a crash harmless: a chunk's bytes are durable in the blob store
//! *before* the metadata transaction that makes them reachable commits.

mod meta;
mod operator;
mod pg_lifecycle;
mod postgres;
mod rows;
mod sqlite;
mod sqlite_lifecycle;
mod store;

// The blob stores, the disk reserve and the storage error are the platform's
// (`spine-store`); MESH names them as its own so that its users need one crate.
pub use meta::{
    AckOutcome, ChunkLocation, ChunkRecord, ExpiryOutcome, ExpirySweep, InboxEntry, LogEntry,
    MetaStore, PurgeOutcome, PurgeSweep, PutChunkOutcome, Side,
};
pub use operator::{ActionOutcome, InboxDepth, MessageQuery, OperatorAction, StoreStats};
pub use postgres::{PgMetaStore, PgOptions};
pub use spine_store::{
    is_disk_full, BlobStore, ByteStream, DiskGuard, DiskState, LocalBlobStore, Result, S3BlobStore,
    S3Options, StoreError,
};
pub use sqlite::SqliteMetaStore;
pub use store::{redact_url, BackendSpec, ChunkAccepted, Store, StoreConfig};
