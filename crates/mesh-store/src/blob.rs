//! The payload store trait and its local-filesystem implementation on `object_store`.

use crate::error::{Result, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectStore, PutPayload, WriteMultipart};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use tokio_util::io::ReaderStream;

/// A stream of payload bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Payload bytes by key. `put` returns only once the bytes are durable, because the caller
/// is about to commit metadata that points at them.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Writes `prefix` followed by everything `rest` yields. Returns the byte count.
    async fn put(&self, key: &str, prefix: Bytes, rest: ByteStream) -> Result<u64>;
    async fn get(&self, key: &str) -> Result<ByteStream>;
    async fn delete(&self, key: &str) -> Result<()>;
    /// Every stored key (for garbage collection of blobs whose metadata never committed).
    async fn list(&self) -> Result<Vec<String>>;
}

/// Chunks as files under a directory, written through `object_store`'s local backend
/// (which writes to a staging file and renames it into place), then fsynced — the crate
/// does not fsync, and a 202 must survive power loss.
pub struct LocalBlobStore {
    store: Arc<LocalFileSystem>,
    root: PathBuf,
    /// Directories whose own entry is already durable: a new file in one of them needs
    /// only the file and that directory synced, not the whole path up to the root.
    durable_dirs: Arc<Mutex<HashSet<PathBuf>>>,
}

/// Size of the parts handed to the multipart writer: bounds the memory one upload holds.
const PART_SIZE: usize = 1024 * 1024;

/// Size of the reads a download streams a payload file in.
const READ_BLOCK: usize = 256 * 1024;

impl LocalBlobStore {
    /// Opens the store, removing staging files that a crash left half-written: they were
    /// never renamed into place, so nothing can refer to them.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        remove_staging_files(&root)?;
        Ok(LocalBlobStore {
            store: Arc::new(LocalFileSystem::new_with_prefix(&root)?),
            root,
            durable_dirs: Arc::default(),
        })
    }

    /// fsyncs a freshly written file and, unless already known durable, the directories
    /// above it up to the store root.
    async fn sync(&self, key: &str) -> Result<()> {
        let path = self.file_path(key)?;
        let root = self.root.clone();
        let known = self.durable_dirs.clone();
        tokio::task::spawn_blocking(move || sync_file_and_dirs(&path, &root, &known))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        Ok(())
    }

    fn file_path(&self, key: &str) -> Result<PathBuf> {
        Ok(self.store.path_to_filesystem(
            &ObjectPath::parse(key).map_err(|e| StoreError::Blob(object_store::Error::from(e)))?,
        )?)
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put(&self, key: &str, prefix: Bytes, mut rest: ByteStream) -> Result<u64> {
        let location = ObjectPath::parse(key).map_err(object_store::Error::from)?;
        // A payload that fits in one part is written with a single `put` (one staging file
        // write and rename); only larger ones pay for the multipart machinery.
        let mut head = vec![prefix];
        let mut total: u64 = head.iter().map(|b| b.len() as u64).sum();
        while total <= PART_SIZE as u64 {
            match rest.next().await {
                Some(Ok(bytes)) => {
                    total += bytes.len() as u64;
                    head.push(bytes);
                }
                Some(Err(e)) => return Err(e),
                None => {
                    self.store
                        .put(&location, head.into_iter().collect::<PutPayload>())
                        .await?;
                    self.sync(key).await?;
                    return Ok(total);
                }
            }
        }
        let upload = self.store.put_multipart(&location).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        for piece in head {
            writer.put(piece);
        }
        let failure = loop {
            match rest.next().await {
                Some(Ok(bytes)) => {
                    total += bytes.len() as u64;
                    if let Err(e) = writer.wait_for_capacity(2).await {
                        break Some(StoreError::from(e));
                    }
                    writer.put(bytes);
                }
                Some(Err(e)) => break Some(e),
                None => break None,
            }
        };
        if let Some(e) = failure {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.finish().await?;
        self.sync(key).await?;
        Ok(total)
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        let location = ObjectPath::parse(key).map_err(object_store::Error::from)?;
        let result = self.store.get(&location).await?;
        // object_store streams a local file in 8 KiB reads, each a blocking-pool hop; reading
        // it in large blocks ourselves is several times faster and still bounded in memory.
        if result.meta.size <= PART_SIZE as u64 {
            // A small payload is read whole in one blocking-pool hop.
            let bytes = result.bytes().await?;
            return Ok(futures::stream::once(async move { Ok(bytes) }).boxed());
        }
        match result.payload {
            GetResultPayload::File(file, _) => {
                let file = tokio::fs::File::from_std(file);
                Ok(ReaderStream::with_capacity(file, READ_BLOCK)
                    .map(|r| r.map_err(StoreError::from))
                    .boxed())
            }
            GetResultPayload::Stream(s) => Ok(s.map(|r| r.map_err(StoreError::from)).boxed()),
        }
    }

    async fn list(&self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut listing = self.store.list(None);
        while let Some(meta) = listing.next().await {
            keys.push(meta?.location.to_string());
        }
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let location = ObjectPath::parse(key).map_err(object_store::Error::from)?;
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn remove_staging_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            remove_staging_files(&path)?;
        } else if entry.file_name().to_string_lossy().contains('#') {
            tracing::info!(path = %path.display(), "removing an unfinished upload");
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// fsync the file, then its directory, then each directory above it up to the store root
/// that is not yet known durable, so the rename that published the file (and any
/// directory created for it) survives a power loss too.
fn sync_file_and_dirs(
    path: &Path,
    root: &Path,
    known: &Mutex<HashSet<PathBuf>>,
) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    let mut dir = path.parent();
    while let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
        let mut known = known.lock().unwrap_or_else(|p| p.into_inner());
        if d == root || known.contains(d) {
            break;
        }
        known.insert(d.to_path_buf());
        dir = d.parent();
    }
    Ok(())
}
