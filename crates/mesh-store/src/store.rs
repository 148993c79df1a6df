//! [`Store`]: metadata and payloads together, and the ordering rule between them.

use crate::blob::{BlobStore, ByteStream, LocalBlobStore};
use crate::error::{Result, StoreError};
use crate::meta::{ChunkLocation, ChunkRecord, MetaStore};
use crate::sqlite::SqliteMetaStore;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::path::Path;
use std::sync::Arc;

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
}

impl Store {
    pub fn new(meta: Arc<dyn MetaStore>, blobs: Arc<dyn BlobStore>, config: &StoreConfig) -> Self {
        Store {
            meta,
            blobs,
            inline_max: config.inline_max,
        }
    }

    /// The embedded default: `<dir>/mesh.db` (SQLite) and `<dir>/chunks/` (files).
    pub async fn open_embedded(dir: &Path, config: &StoreConfig) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let meta = SqliteMetaStore::open(&dir.join("mesh.db"), config.readers).await?;
        let blobs = LocalBlobStore::open(&dir.join("chunks"))?;
        Ok(Self::new(Arc::new(meta), Arc::new(blobs), config))
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

    /// Deletes payloads that no chunk record refers to: the leftovers of a crash between
    /// writing a payload and committing its metadata, or of a failed delete. Safe only when
    /// no upload is in flight, so the server runs it at start, before it listens.
    pub async fn collect_garbage(&self) -> Result<usize> {
        let mut removed = 0;
        for key in self.blobs.list().await? {
            if !self.meta.blob_referenced(&key).await? {
                self.blobs.delete(&key).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Deletes every message and its payload (sandbox reset).
    pub async fn reset_all(&self) -> Result<()> {
        for key in self.meta.reset_all().await? {
            self.discard_key(&key).await;
        }
        Ok(())
    }
}
