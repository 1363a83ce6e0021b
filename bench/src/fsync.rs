//! The physical floor of a durable relay: how long `fdatasync` of a small write takes on
//! the same file system, measured while the load runs.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::Latencies;

/// A thread appending 1 KiB and calling `fdatasync` every `every`, until stopped.
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u32>>,
}

impl Probe {
    /// Starts probing in `dir`.
    pub fn start(dir: &Path, every: Duration) -> std::io::Result<Probe> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("fsync-probe");
        let mut file = std::fs::File::create(&path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let block = [0x5au8; 1024];
            let mut out = Vec::new();
            let mut written = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let next = Instant::now() + every;
                if file.write_all(&block).is_err() {
                    break;
                }
                let t = Instant::now();
                if file.sync_data().is_err() {
                    break;
                }
                out.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                written += 1;
                // Keep the file small: start over every 4 MiB.
                if written.is_multiple_of(4096)
                    && (file.set_len(0).is_err() || file.seek(SeekFrom::Start(0)).is_err())
                {
                    break;
                }
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let _ = std::fs::remove_file(&path);
            out
        });
        Ok(Probe { stop, thread })
    }

    /// Stops and returns the fdatasync times.
    pub fn finish(self) -> Latencies {
        self.stop.store(true, Ordering::Relaxed);
        Latencies::new(self.thread.join().unwrap_or_default())
    }
}
