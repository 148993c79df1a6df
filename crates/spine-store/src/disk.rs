//! Keeping the embedded store usable when its disk fills up.
//!
//! Every authenticated request records its token before it acts, and acknowledgements
//! and first downloads write too; on a full disk all of those failed, so one large
//! upload from anyone (or a log file gone wild on the same disk) stopped every recipient
//! from reading their messages. Dropping the token record on a full disk would open a
//! window for replays, so instead the store keeps a **reserve**: a file of zeros in the
//! data directory (`reserve.bin`, [`DiskGuard::RESERVE_FILE`]) whose space it gives back
//! to itself the moment the disk runs low.
//!
//! * While free space (not counting the reserve) is at least the reserve's size, all is
//!   normal.
//! * When it falls below, or a write fails for lack of space, the disk is **low**: the
//!   reserve file is deleted, so the small writes that reads and acknowledgements need
//!   (token records, status changes) have room; sends are refused at once with the MESH
//!   503 before their bodies are read (they would fill the disk again); readiness and a
//!   metric say so.
//! * When free space is back above twice the reserve, the reserve file is written again
//!   and sends are accepted: no restart.
//!
//! Replay protection is never weakened: every token is still recorded durably before its
//! request acts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

const RESERVE_TMP: &str = ".reserve.bin.tmp";

pub struct DiskGuard {
    dir: PathBuf,
    reserve: u64,
    low: AtomicBool,
    free: AtomicU64,
    /// Serialises checks: two of them must not write or delete the reserve at once.
    checking: Mutex<()>,
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskState {
    /// Bytes free for the store, not counting the reserve file.
    pub free: u64,
    pub low: bool,
    /// Size of the reserve file now on disk.
    pub reserve_on_disk: u64,
}

impl DiskGuard {
    pub const RESERVE_FILE: &'static str = "reserve.bin";

    /// A guard for `dir` keeping `reserve` bytes back (0: no reserve, only the free-space
    /// watch). Writes the reserve file when there is room for it.
    pub fn open(dir: &Path, reserve: u64) -> std::io::Result<Self> {
        let guard = DiskGuard {
            dir: dir.to_path_buf(),
            reserve,
            low: AtomicBool::new(false),
            free: AtomicU64::new(u64::MAX),
            checking: Mutex::new(()),
        };
        let state = guard.check()?;
        if state.low {
            tracing::error!(
                free = state.free,
                reserve = reserve,
                "disk low at start: sends refused until space is freed"
            );
        }
        Ok(guard)
    }

    fn reserve_path(&self) -> PathBuf {
        self.dir.join(Self::RESERVE_FILE)
    }

    fn reserve_on_disk(&self) -> u64 {
        std::fs::metadata(self.reserve_path())
            .map(|m| m.len())
            .unwrap_or(0)
    }

    fn available(&self) -> std::io::Result<u64> {
        let st = rustix::fs::statvfs(&self.dir).map_err(std::io::Error::from)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Looks at the disk and acts: gives the reserve back when free space falls below
    /// its size, writes it again when there is room for it twice over. The disk counts as
    /// low from the moment the reserve is given back until it is on disk again, so sends
    /// cannot eat the space the reserve freed. Call it every second or so, and after a
    /// write failed for lack of space.
    pub fn check(&self) -> std::io::Result<DiskState> {
        let _one = self.checking.lock().unwrap_or_else(|p| p.into_inner());
        let mut available = self.available()?;
        let low = if self.reserve == 0 {
            // No reserve: only the watch, with a megabyte as the floor.
            available < (1 << 20)
        } else if self.reserve_on_disk() > 0 {
            // Any reserve file on disk (even one written for a smaller reserve) is given
            // back when space runs short.
            if available < self.reserve {
                match std::fs::remove_file(self.reserve_path()) {
                    Ok(()) => tracing::error!(
                        free = available,
                        reserve = self.reserve,
                        "disk low: reserve freed for reads and acknowledgements; sends refused"
                    ),
                    Err(e) => tracing::error!(error = %e, "could not free the disk reserve"),
                }
                available = self.available()?;
                true
            } else if self.reserve_on_disk() < self.reserve {
                // A smaller reserve than configured: grow it when there is room twice over.
                self.replace_reserve(available)
            } else {
                false
            }
        } else if available > self.reserve.saturating_mul(2) {
            let was_low = self.low.load(Ordering::Relaxed);
            match self.write_reserve() {
                Ok(()) => {
                    if was_low {
                        tracing::info!(
                            free = available,
                            "disk space back: reserve restored, sends accepted"
                        );
                    }
                    available = self.available()?;
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not write the disk reserve");
                    let _ = std::fs::remove_file(self.reserve_path());
                    let _ = std::fs::remove_file(self.dir.join(RESERVE_TMP));
                    true
                }
            }
        } else {
            true
        };
        self.low.store(low, Ordering::Relaxed);
        self.free.store(available, Ordering::Relaxed);
        Ok(DiskState {
            free: available,
            low,
            reserve_on_disk: self.reserve_on_disk(),
        })
    }

    /// Writes a reserve of the configured size over a smaller one, when there is room;
    /// returns whether the disk is still low.
    fn replace_reserve(&self, available: u64) -> bool {
        if available <= self.reserve.saturating_mul(2) {
            return false;
        }
        if let Err(e) = self.write_reserve() {
            tracing::warn!(error = %e, "could not grow the disk reserve");
        }
        false
    }

    fn write_reserve(&self) -> std::io::Result<()> {
        let path = self.reserve_path();
        let tmp = self.dir.join(RESERVE_TMP);
        let mut f = std::fs::File::create(&tmp)?;
        // Not zeros: a file system that compresses (ZFS, btrfs) would store zeros in
        // almost no space, and deleting the file would free almost nothing.
        let mut block = vec![0u8; 1 << 20];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
        for word in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let mut left = self.reserve;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// A write failed for lack of space: the disk is low whatever free space says (it
    /// may have run out of inodes, or of blocks the root user keeps back). Frees the
    /// reserve now rather than at the next check, so that the retry has room. Blocking
    /// file-system calls: run it off the async threads.
    pub fn on_full(&self) {
        let _one = self.checking.lock().unwrap_or_else(|p| p.into_inner());
        self.low.store(true, Ordering::Relaxed);
        if self.reserve_on_disk() > 0 {
            match std::fs::remove_file(self.reserve_path()) {
                Ok(()) => tracing::error!(
                    "a write failed for lack of space: reserve freed for reads and \
                     acknowledgements; sends refused"
                ),
                Err(e) => tracing::error!(error = %e, "could not free the disk reserve"),
            }
        }
    }

    /// True while the disk is low: sends are refused.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// Free bytes at the last check.
    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }
}

/// True when an error says the disk is full (SQLite's SQLITE_FULL, or ENOSPC).
pub fn is_disk_full(e: &crate::StoreError) -> bool {
    use crate::StoreError as E;
    let text_says = |s: &str| {
        let s = s.to_ascii_lowercase();
        s.contains("disk is full") || s.contains("no space left")
    };
    match e {
        E::Io(io) => io.kind() == std::io::ErrorKind::StorageFull || text_says(&io.to_string()),
        E::Database(db) => text_says(&db.to_string()),
        E::Blob(b) => text_says(&b.to_string()),
        E::Commit(s) | E::Unavailable(s) => text_says(s),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_written_given_back_on_a_failed_write_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let guard = DiskGuard::open(dir.path(), 1 << 20).unwrap();
        let reserve = dir.path().join(DiskGuard::RESERVE_FILE);
        assert!(!guard.is_low());
        let bytes = std::fs::read(&reserve).unwrap();
        assert_eq!(bytes.len(), 1 << 20);
        assert!(
            bytes.iter().any(|b| *b != 0),
            "filler a compressing file system cannot shrink"
        );

        // A write failed for lack of space: low at once, the reserve given back.
        guard.on_full();
        assert!(guard.is_low());
        assert!(!reserve.exists());
        // The next look finds room twice over: the reserve is back and so are sends.
        let state = guard.check().unwrap();
        assert!(!state.low);
        assert_eq!(state.reserve_on_disk, 1 << 20);
    }

    #[test]
    fn a_reserve_larger_than_the_free_space_means_low_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let guard = DiskGuard::open(dir.path(), u64::MAX / 4).unwrap();
        assert!(guard.is_low());
        assert!(!dir.path().join(DiskGuard::RESERVE_FILE).exists());
        assert!(guard.free_bytes() > 0);
    }

    #[test]
    fn disk_full_errors_are_recognised() {
        let io = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(is_disk_full(&crate::StoreError::Io(io)));
        assert!(is_disk_full(&crate::StoreError::Commit(
            "error returned from database: (code: 13) database or disk is full".into()
        )));
        assert!(!is_disk_full(&crate::StoreError::Commit("timeout".into())));
    }
}
