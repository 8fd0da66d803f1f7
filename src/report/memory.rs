//! The memory timeline a job records (`memory.parquet`, written by
//! [`crate::job::memory`]), as the report reads it.

/// One sample of the memory timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySample {
    /// Milliseconds since the sampler started.
    pub t_ms: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// The phase the program was in.
    pub phase: String,
    /// Bars processed so far.
    pub bars_done: u64,
    /// Cache hits so far.
    pub cache_hits: u64,
    /// Cache misses so far.
    pub cache_misses: u64,
}

/// The samples a [`crate::job::memory::MemorySampler`] recorded, in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryTimeline {
    /// The samples.
    pub samples: Vec<MemorySample>,
}

impl MemoryTimeline {
    /// The sample with the largest RSS (the first one on ties).
    pub fn peak(&self) -> Option<&MemorySample> {
        self.samples
            .iter()
            .fold(None, |best: Option<&MemorySample>, s| match best {
                Some(b) if b.rss_bytes >= s.rss_bytes => Some(b),
                _ => Some(s),
            })
    }
}
