//! [`Store`]: metadata and payloads together, and the ordering rule between them.

use crate::meta::{
    ChunkLocation, ChunkRecord, MetaStore, PurgeOutcome, PurgeSweep, PutChunkOutcome,
};
use crate::postgres::{PgMetaStore, PgOptions};
use crate::sqlite::SqliteMetaStore;
use crate::{BlobStore, ByteStream, LocalBlobStore, S3BlobStore, S3Options};
use crate::{Result, StoreError};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use mesh_protocol::Message;
use spine_store::DirLock;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Which backends a node uses. Unset URLs mean the embedded default in the data
/// directory: SQLite for metadata, files for payloads.
#[derive(Clone, Default)]
pub struct BackendSpec {
    /// `postgres://…`: metadata in PostgreSQL, shared by every node pointing at it.
    pub database_url: Option<String>,
    /// `s3://bucket[/prefix]` or `file:///path` (a directory every node mounts).
    pub blob_url: Option<String>,
    pub s3: S3Options,
    pub pg: PgOptions,
}

impl std::fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendSpec")
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("blob_url", &self.blob_url)
            .field("s3", &self.s3)
            .field("pg", &self.pg)
            .finish()
    }
}

/// A URL with its password (if any) replaced, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                url.to_string()
            }
        }
        None => url.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Chunks up to this size are kept inline in the metadata store (one fsync, no file).
    pub inline_max: usize,
    /// Reader connections to the metadata store.
    pub readers: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            inline_max: 16 * 1024,
            readers: 8,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pub meta: Arc<dyn MetaStore>,
    pub blobs: Arc<dyn BlobStore>,
    inline_max: usize,
    shared: bool,
    /// The exclusive lock on an embedded data directory, held while any clone lives.
    _lock: Option<Arc<DirLock>>,
}

impl Store {
    pub fn new(meta: Arc<dyn MetaStore>, blobs: Arc<dyn BlobStore>, config: &StoreConfig) -> Self {
        Store {
            meta,
            blobs,
            inline_max: config.inline_max,
            shared: false,
            _lock: None,
        }
    }

    fn locked(mut self, lock: Option<DirLock>) -> Self {
        self._lock = lock.map(Arc::new);
        self
    }

    /// Marks the store as shared with other nodes: garbage collection then spares recent
    /// payloads, which may belong to another node's upload in flight.
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// True when other nodes may be writing to the same store.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Opens the backends `spec` names, defaulting to the embedded ones in `dir`.
    ///
    /// Whenever the data directory itself holds the metadata or the payloads, it is
    /// locked first ([`DirLock`]): a second process on it fails here.
    pub async fn open(dir: &Path, spec: &BackendSpec, config: &StoreConfig) -> Result<Self> {
        let uses_dir = spec.database_url.is_none() || spec.blob_url.is_none();
        let lock = if uses_dir {
            Some(DirLock::acquire(dir)?)
        } else {
            match &spec.database_url {
                Some(url) if url.starts_with("sqlite://") => {
                    let path = PathBuf::from(url.trim_start_matches("sqlite://"));
                    let parent = path.parent().unwrap_or(Path::new("."));
                    Some(DirLock::acquire(parent)?)
                }
                _ => None,
            }
        };
        let meta: Arc<dyn MetaStore> = match &spec.database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Arc::new(PgMetaStore::connect(url, &spec.pg).await?)
            }
            Some(url) if url.starts_with("sqlite://") => {
                let path = PathBuf::from(url.trim_start_matches("sqlite://"));
                Arc::new(SqliteMetaStore::open(&path, config.readers).await?)
            }
            Some(url) => {
                return Err(StoreError::Config(format!(
                    "database URL must start with postgres:// or sqlite://: {}",
                    redact_url(url)
                )))
            }
            None => {
                std::fs::create_dir_all(dir)?;
                Arc::new(SqliteMetaStore::open(&dir.join("mesh.db"), config.readers).await?)
            }
        };
        let blobs: Arc<dyn BlobStore> = match &spec.blob_url {
            Some(url) if url.starts_with("file://") => Arc::new(LocalBlobStore::open(Path::new(
                url.trim_start_matches("file://"),
            ))?),
            Some(url) => Arc::new(S3BlobStore::open(url, &spec.s3)?),
            None => {
                std::fs::create_dir_all(dir)?;
                Arc::new(LocalBlobStore::open(&dir.join("chunks"))?)
            }
        };
        let shared = spec.database_url.is_some() || spec.blob_url.is_some();
        Ok(Self::new(meta, blobs, config).shared(shared).locked(lock))
    }

    /// Both stores answer (readiness).
    pub async fn ping(&self) -> Result<()> {
        self.meta.ping().await?;
        self.blobs.ping().await
    }

    /// The embedded default: `<dir>/mesh.db` (SQLite) and `<dir>/chunks/` (files).
    pub async fn open_embedded(dir: &Path, config: &StoreConfig) -> Result<Self> {
        let lock = DirLock::acquire(dir)?;
        let meta = SqliteMetaStore::open(&dir.join("mesh.db"), config.readers).await?;
        let blobs = LocalBlobStore::open(&dir.join("chunks"))?;
        Ok(Self::new(Arc::new(meta), Arc::new(blobs), config).locked(Some(lock)))
    }

    /// Reads a chunk body to its durable home and returns the record to commit. Nothing
    /// refers to the bytes until the caller commits that record, so a crash or an error
    /// before then leaves at worst an unreferenced file, never a visible partial message.
    /// A body longer than `limit` bytes fails with [`StoreError::TooLarge`].
    pub async fn write_chunk(
        &self,
        message_id: &str,
        number: u32,
        mut body: ByteStream,
        limit: u64,
    ) -> Result<ChunkRecord> {
        let mut head = BytesMut::new();
        let mut spilled = None;
        while let Some(piece) = body.next().await {
            let piece = piece?;
            if (head.len() + piece.len()) as u64 > limit {
                return Err(StoreError::TooLarge { limit });
            }
            head.extend_from_slice(&piece);
            if head.len() > self.inline_max {
                spilled = Some(head.split().freeze());
                break;
            }
        }
        let Some(prefix) = spilled else {
            return Ok(ChunkRecord {
                size: head.len() as u64,
                location: ChunkLocation::Inline(head.freeze()),
            });
        };
        // One directory per hour of writes: a new file then costs an fsync of itself and
        // of a directory that already exists, and no directory grows without bound.
        let key = format!(
            "{}/{message_id}-{number}-{}",
            chrono::Utc::now().format("%Y%m%d%H"),
            uuid::Uuid::new_v4().simple()
        );
        let mut seen = prefix.len() as u64;
        let rest = body
            .map(move |piece| {
                let piece = piece?;
                seen += piece.len() as u64;
                if seen > limit {
                    Err(StoreError::TooLarge { limit })
                } else {
                    Ok(piece)
                }
            })
            .boxed();
        let size = self.blobs.put(&key, prefix, rest).await?;
        Ok(ChunkRecord {
            size,
            location: ChunkLocation::Blob(key),
        })
    }

    /// A new message and its first chunk, in the one order that is safe: the payload made
    /// durable first ([`Store::write_chunk`]), then the message committed with it. `build`
    /// makes the message from the stored chunk's size. `Ok(None)`: the body was empty, so
    /// no message was made and its bytes are gone.
    ///
    /// When the commit fails the payload is not deleted: a commit can fail in a way that
    /// hides whether it happened (the connection drops during COMMIT), and deleting bytes
    /// that committed metadata refers to would corrupt a message. Garbage collection
    /// removes them later if nothing refers to them.
    pub async fn accept_message(
        &self,
        message_id: &str,
        body: ByteStream,
        limit: u64,
        build: impl FnOnce(u64) -> Message,
    ) -> Result<Option<(Message, u64)>> {
        let chunk = self.write_chunk(message_id, 1, body, limit).await?;
        if chunk.size == 0 {
            self.discard(&chunk).await;
            return Ok(None);
        }
        let message = build(chunk.size);
        self.meta.create_message(&message, &chunk).await?;
        Ok(Some((message, chunk.size)))
    }

    /// One more chunk of a message being uploaded, payload first, then its record; a
    /// chunk sent twice replaces the first, whose bytes are removed after the commit.
    pub async fn accept_chunk(
        &self,
        message_id: &str,
        number: u32,
        body: ByteStream,
        limit: u64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<ChunkAccepted> {
        let chunk = self.write_chunk(message_id, number, body, limit).await?;
        // A failed commit leaves the bytes to garbage collection, as for a new message.
        match self.meta.put_chunk(message_id, number, &chunk, now).await? {
            PutChunkOutcome::Stored {
                completed,
                replaced,
            } => {
                if let Some(key) = replaced {
                    self.discard_key(&key).await;
                }
                Ok(ChunkAccepted::Stored {
                    completed,
                    size: chunk.size,
                })
            }
            PutChunkOutcome::NotUploading | PutChunkOutcome::NoSuchMessage => {
                // Completed or reset while this chunk was being read: nothing refers to it.
                self.discard(&chunk).await;
                Ok(ChunkAccepted::NotUploading)
            }
        }
    }

    /// The bytes of a stored chunk, streamed.
    pub async fn read_chunk(&self, chunk: &ChunkRecord) -> Result<ByteStream> {
        match &chunk.location {
            ChunkLocation::Inline(b) => {
                let b: Bytes = b.clone();
                Ok(futures::stream::once(async move { Ok(b) }).boxed())
            }
            ChunkLocation::Blob(key) => self.blobs.get(key).await,
        }
    }

    /// Removes the blob of a chunk whose metadata was never committed (or was replaced).
    /// Failures only leave garbage behind, so they are logged, not returned.
    pub async fn discard(&self, chunk: &ChunkRecord) {
        if let ChunkLocation::Blob(key) = &chunk.location {
            self.discard_key(key).await;
        }
    }

    pub async fn discard_key(&self, key: &str) {
        if let Err(e) = self.blobs.delete(key).await {
            tracing::warn!(key, error = %e, "could not delete an unreferenced blob");
        }
    }

    /// Deletes payloads that no chunk record refers to and that were written more than
    /// `min_age` ago: the leftovers of a crash (or a failed metadata commit) between
    /// writing a payload and committing its metadata, or of a failed delete. `min_age`
    /// must exceed the longest upload, so that a payload whose metadata is about to commit
    /// (on this node or another) is never taken; zero is safe only before a lone node
    /// listens.
    pub async fn collect_garbage(&self, min_age: Duration) -> Result<usize> {
        let cutoff = chrono::Utc::now()
            - chrono::TimeDelta::from_std(min_age).unwrap_or(chrono::TimeDelta::MAX);
        let mut removed = 0;
        for (key, written) in self.blobs.list().await? {
            if written <= cutoff && !self.meta.blob_referenced(&key).await? {
                self.blobs.delete(&key).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Deletes one batch of records past retention and of abandoned uploads, then their
    /// payloads. Payloads go only after the records are gone, so no record ever points at
    /// a deleted payload; a crash between the two leaves unreferenced payloads, which the
    /// garbage collector takes.
    pub async fn purge_due(&self, sweep: &PurgeSweep) -> Result<PurgeOutcome> {
        let out = self.meta.purge_due(sweep).await?;
        for key in &out.blob_keys {
            self.discard_key(key).await;
        }
        Ok(out)
    }

    /// An operator's action on one message; a removed message's payloads are deleted
    /// after its records are gone, as in a purge.
    pub async fn act_on_message(
        &self,
        message_id: &str,
        action: &crate::operator::OperatorAction,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::operator::ActionOutcome> {
        let outcome = self.meta.act_on_message(message_id, action, now).await?;
        if let crate::operator::ActionOutcome::Removed { blob_keys, .. } = &outcome {
            for key in blob_keys {
                self.discard_key(key).await;
            }
        }
        Ok(outcome)
    }

    /// Deletes every message and its payload (sandbox reset).
    pub async fn reset_all(&self) -> Result<()> {
        for key in self.meta.reset_all().await? {
            self.discard_key(&key).await;
        }
        Ok(())
    }
}

/// What became of a chunk given to [`Store::accept_chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkAccepted {
    /// Stored; `completed` when it was the message's last missing chunk.
    Stored { completed: bool, size: u64 },
    /// The message is no longer being uploaded (complete, or gone): refused.
    NotUploading,
}
