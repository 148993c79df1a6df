//! The data directory belongs to one process.

use crate::{Result, StoreError};
use std::path::Path;

/// An exclusive lock on a data directory (`<dir>/openspine.lock`, `flock`).
///
/// The embedded stores assume they are the only process on their directory: MESH's
/// start-up sweep deletes payload files that no committed record names (another
/// process's upload in flight looks exactly like that), and its inbox positions come from
/// an in-memory counter. A second process on the same directory would lose accepted
/// messages and interleave positions, so it must not start at all. The lock goes with the process,
/// however it ends (the kernel releases it), so a crash never leaves it stale.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    /// Takes the lock or fails at once, naming the directory.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("openspine.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Config(format!(
                "the data directory {} is in use by another openspine process (it holds {}); \
                 two processes on one data directory would lose messages: stop the other one, \
                 or give this one its own --data-dir",
                dir.display(),
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Io(e)),
        }
    }
}
