//! The memory sampler: a background thread that records resident memory
//! (VmRSS from `/proc/self/status`) at a fixed interval, together with what
//! the program is doing (its phase, bars done, cache hits and misses), and
//! `memory.parquet`, the file the report plots. It lives beside the jobs
//! it watches; the report only reads the file ([`crate::report::memory`]).
//!
//! The sampler reads a few atomics and a mutex-guarded phase name, so
//! [`MemorySampler::phase`], [`MemorySampler::add_bars`] and
//! [`MemorySampler::set_cache`] are cheap enough to call from hot loops.
//! Outside Linux there is no `/proc`: the timeline then has no samples, and
//! the report says so instead of drawing an empty chart.
//!
//! Schema of `memory.parquet` (one row per sample, in time order):
//!
//! | column       | type   | meaning                                        |
//! |--------------|--------|------------------------------------------------|
//! | t_ms         | f64    | milliseconds since the sampler started         |
//! | rss_bytes    | u64    | resident set size (VmRSS)                      |
//! | phase        | utf8   | `load`, `ingest`, `compute`, `write`, …        |
//! | bars_done    | u64    | bars processed so far ([`MemorySampler::add_bars`]) |
//! | cache_hits   | u64    | cache hits so far                              |
//! | cache_misses | u64    | cache misses so far                            |

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};

use crate::report::{MemorySample, MemoryTimeline, ReportError};

struct Shared {
    stop: AtomicBool,
    bars: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    phase: Mutex<String>,
    samples: Mutex<Vec<MemorySample>>,
    start: Instant,
}

impl Shared {
    fn sample(&self) {
        let Some(rss) = current_rss_bytes() else {
            return;
        };
        let phase = self.phase.lock().map(|p| p.clone()).unwrap_or_default();
        // The clock is read under the lock so samples stay in time order
        // when the caller's thread and the sampler's thread race.
        if let Ok(mut v) = self.samples.lock() {
            v.push(MemorySample {
                t_ms: self.start.elapsed().as_secs_f64() * 1e3,
                rss_bytes: rss,
                phase,
                bars_done: self.bars.load(Ordering::Relaxed),
                cache_hits: self.hits.load(Ordering::Relaxed),
                cache_misses: self.misses.load(Ordering::Relaxed),
            });
        }
    }
}

/// Samples resident memory on a background thread every `interval` until
/// [`MemorySampler::finish`]. A sample is also taken at every phase change
/// and at the end, so short phases still appear on the timeline.
pub struct MemorySampler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl MemorySampler {
    /// Starts sampling every `interval` (at least 1 ms) in phase `start`.
    pub fn start(interval: Duration) -> MemorySampler {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            bars: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            phase: Mutex::new("start".to_string()),
            samples: Mutex::new(Vec::new()),
            start: Instant::now(),
        });
        shared.sample();
        let interval = interval.max(Duration::from_millis(1));
        let s = Arc::clone(&shared);
        // A sampler that cannot start a thread still records phase changes.
        let thread = std::thread::Builder::new()
            .name("atc-bt-memory".into())
            .spawn(move || {
                while !s.stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(interval);
                    if s.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    s.sample();
                }
            })
            .ok();
        MemorySampler { shared, thread }
    }

    /// Enters phase `name` (`load`, `ingest`, `compute`, `write`, …).
    pub fn phase(&self, name: &str) {
        if let Ok(mut p) = self.shared.phase.lock() {
            *p = name.to_string();
        }
        self.shared.sample();
    }

    /// Adds `n` to the bars done.
    pub fn add_bars(&self, n: u64) {
        self.shared.bars.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the cache hit and miss counters (totals, not increments).
    pub fn set_cache(&self, hits: u64, misses: u64) {
        self.shared.hits.store(hits, Ordering::Relaxed);
        self.shared.misses.store(misses, Ordering::Relaxed);
    }

    /// Stops the thread, takes a last sample and returns the timeline.
    pub fn finish(mut self) -> MemoryTimeline {
        self.stop_thread();
        self.shared.sample();
        let samples = self
            .shared
            .samples
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        MemoryTimeline { samples }
    }

    fn stop_thread(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for MemorySampler {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Resident set size of this process from `/proc/self/status` (Linux);
/// `None` elsewhere or when the file cannot be read.
pub fn current_rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kb(&text, "VmRSS:").map(|kb| kb * 1024)
}

/// Peak resident set size (VmHWM) of this process, in bytes, where known.
pub fn peak_rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kb(&text, "VmHWM:").map(|kb| kb * 1024)
}

fn parse_status_kb(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Writes `t` to `path` as `memory.parquet` (schema in the module docs).
pub fn write_memory_parquet(path: &Path, t: &MemoryTimeline) -> Result<(), ReportError> {
    let s = &t.samples;
    let schema = Schema::new(vec![
        Field::new("t_ms", DataType::Float64, false),
        Field::new("rss_bytes", DataType::UInt64, false),
        Field::new("phase", DataType::Utf8, false),
        Field::new("bars_done", DataType::UInt64, false),
        Field::new("cache_hits", DataType::UInt64, false),
        Field::new("cache_misses", DataType::UInt64, false),
    ]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Float64Array::from_iter_values(s.iter().map(|x| x.t_ms))),
        Arc::new(UInt64Array::from_iter_values(s.iter().map(|x| x.rss_bytes))),
        Arc::new(StringArray::from_iter_values(
            s.iter().map(|x| x.phase.as_str()),
        )),
        Arc::new(UInt64Array::from_iter_values(s.iter().map(|x| x.bars_done))),
        Arc::new(UInt64Array::from_iter_values(
            s.iter().map(|x| x.cache_hits),
        )),
        Arc::new(UInt64Array::from_iter_values(
            s.iter().map(|x| x.cache_misses),
        )),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), cols).map_err(|e| ReportError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // Snappy: a timeline is small, and zstd's per-column contexts cost
    // more than a cached run's whole restore.
    crate::report::load::write_parquet_with(path, &batch, parquet::basic::Compression::SNAPPY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status_lines() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status_kb(text, "VmRSS:"), Some(1024));
        assert_eq!(parse_status_kb(text, "VmHWM:"), Some(2048));
        assert_eq!(parse_status_kb(text, "VmSwap:"), None);
    }

    #[test]
    fn sampler_records_phases_in_order() {
        let s = MemorySampler::start(Duration::from_millis(1));
        s.phase("load");
        s.add_bars(10);
        s.phase("compute");
        s.set_cache(3, 4);
        let t = s.finish();
        if cfg!(target_os = "linux") {
            let phases: Vec<&str> = t.samples.iter().map(|x| x.phase.as_str()).collect();
            assert!(phases.contains(&"load") && phases.contains(&"compute"));
            let last = t.samples.last().expect("a last sample");
            assert_eq!(
                (last.bars_done, last.cache_hits, last.cache_misses),
                (10, 3, 4)
            );
            assert!(t.samples.windows(2).all(|w| w[0].t_ms <= w[1].t_ms));
            assert!(t.peak().is_some());
        }
    }
}
