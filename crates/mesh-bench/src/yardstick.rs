//! The machine's own limits, measured in the same run as the benchmark, so a throughput
//! figure can be read against what the disk can do at all.

use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Serialize)]
pub struct Yardstick {
    /// Sequential write, 1 MiB writes, `fdatasync` after every 20 MiB (what the server does
    /// per chunk of a large message).
    pub seq_write_mib_s: f64,
    pub seq_write_mib: u64,
    /// 1 KiB appends, each followed by `fdatasync`: the ceiling for unbatched durable commits.
    pub append_fsync_per_s: f64,
    pub cores: usize,
}

pub fn measure(dir: &Path, mib: u64, fsync_seconds: f64) -> std::io::Result<Yardstick> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("yardstick.bin");
    let block = vec![0x5Au8; 1024 * 1024];
    let mut f = std::fs::File::create(&path)?;
    let t = Instant::now();
    for i in 1..=mib {
        f.write_all(&block)?;
        if i % 20 == 0 {
            f.sync_data()?;
        }
    }
    f.sync_data()?;
    let seq = mib as f64 / t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;

    let mut f = std::fs::File::create(&path)?;
    let small = [0x33u8; 1024];
    let t = Instant::now();
    let limit = Duration::from_secs_f64(fsync_seconds);
    let mut n = 0u64;
    while t.elapsed() < limit {
        f.write_all(&small)?;
        f.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(Yardstick {
        seq_write_mib_s: seq,
        seq_write_mib: mib,
        append_fsync_per_s: rate,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    })
}
