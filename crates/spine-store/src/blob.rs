//! The payload store trait and its local-filesystem implementation on `object_store`.

use crate::error::{Result, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    ClientOptions, GetResultPayload, ObjectStore, PutPayload, RetryConfig, WriteMultipart,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
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
    /// Every stored key with the time it was written (for garbage collection of blobs
    /// whose metadata never committed: only ones older than any upload in flight).
    async fn list(&self) -> Result<Vec<(String, DateTime<Utc>)>>;
    /// Succeeds when the store answers (readiness).
    async fn ping(&self) -> Result<()>;
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
    async fn put(&self, key: &str, prefix: Bytes, rest: ByteStream) -> Result<u64> {
        let location = ObjectPath::parse(key).map_err(object_store::Error::from)?;
        let total = put_object(self.store.as_ref(), &location, prefix, rest, PART_SIZE).await?;
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

    async fn list(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        list_objects(self.store.as_ref()).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        delete_object(self.store.as_ref(), key).await
    }

    async fn ping(&self) -> Result<()> {
        tokio::fs::metadata(&self.root).await?;
        Ok(())
    }
}

/// Writes `prefix` then `rest` to `location`: a payload that fits in one part with a
/// single `put`, a larger one as a multipart upload of `part_size` parts with at most two
/// in flight, so one upload holds a bounded amount of memory whatever its size. An error
/// from the body aborts the upload, leaving nothing behind.
async fn put_object(
    store: &dyn ObjectStore,
    location: &ObjectPath,
    prefix: Bytes,
    mut rest: ByteStream,
    part_size: usize,
) -> Result<u64> {
    let mut head = vec![prefix];
    let mut total: u64 = head.iter().map(|b| b.len() as u64).sum();
    while total <= part_size as u64 {
        match rest.next().await {
            Some(Ok(bytes)) => {
                total += bytes.len() as u64;
                head.push(bytes);
            }
            Some(Err(e)) => return Err(e),
            None => {
                store
                    .put(location, head.into_iter().collect::<PutPayload>())
                    .await?;
                return Ok(total);
            }
        }
    }
    let upload = store.put_multipart(location).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
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
    Ok(total)
}

async fn list_objects(store: &dyn ObjectStore) -> Result<Vec<(String, DateTime<Utc>)>> {
    let mut keys = Vec::new();
    let mut listing = store.list(None);
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        keys.push((meta.location.to_string(), meta.last_modified));
    }
    Ok(keys)
}

async fn delete_object(store: &dyn ObjectStore, key: &str) -> Result<()> {
    let location = ObjectPath::parse(key).map_err(object_store::Error::from)?;
    match store.delete(&location).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Where and how to reach an S3-compatible object store. Credentials are not here: they
/// come from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, or the other
/// sources `object_store` reads), so they never appear in a process listing or a log.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint of a self-hosted store (Garage, Ceph, MinIO…); unset for AWS S3.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Address buckets as `https://host/bucket` (what self-hosted stores expect) rather
    /// than `https://bucket.host`.
    pub path_style: bool,
}

/// S3 parts must be at least 5 MiB (all but the last).
const S3_PART_SIZE: usize = 8 * 1024 * 1024;

/// Chunks as objects in an S3-compatible store, under a key prefix. A successful S3 PUT
/// (or multipart completion) is durable, so `put` returns only after it.
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    describe: String,
}

impl S3BlobStore {
    /// Opens `s3://bucket[/prefix]`. Nothing is contacted until the first request.
    pub fn open(url: &str, options: &S3Options) -> Result<Self> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            StoreError::Config(format!("blob URL must start with s3:// or file://: {url}"))
        })?;
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p.trim_matches('/')),
            None => (rest, ""),
        };
        if bucket.is_empty() {
            return Err(StoreError::Config(format!(
                "blob URL names no bucket: {url}"
            )));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(!options.path_style)
            // Fail a request in seconds while the store is away rather than hold the
            // client: MESH clients retry a 5xx themselves.
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            );
        if let Some(endpoint) = &options.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &options.region {
            builder = builder.with_region(region);
        }
        let s3: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            s3
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        Ok(S3BlobStore {
            store,
            describe: format!("s3://{bucket}/{prefix}"),
        })
    }
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3BlobStore({})", self.describe)
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, prefix: Bytes, rest: ByteStream) -> Result<u64> {
        let location = ObjectPath::parse(key).map_err(object_store::Error::from)?;
        put_object(self.store.as_ref(), &location, prefix, rest, S3_PART_SIZE).await
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        let location = ObjectPath::parse(key).map_err(object_store::Error::from)?;
        let result = self.store.get(&location).await?;
        Ok(result
            .into_stream()
            .map(|r| r.map_err(StoreError::from))
            .boxed())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        delete_object(self.store.as_ref(), key).await
    }

    async fn list(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        list_objects(self.store.as_ref()).await
    }

    async fn ping(&self) -> Result<()> {
        // A HEAD of a key that is never written: "not found" proves the store answers.
        match self.store.head(&ObjectPath::from("readiness-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
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
