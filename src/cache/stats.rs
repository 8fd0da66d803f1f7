//! Hit/miss counters per kind: this process's, the last finished run's and
//! the all-time totals persisted in the store.

use std::sync::atomic::{AtomicU64, Ordering};

use super::key::Kind;

/// The events counted per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Found in memory.
    HitL1 = 0,
    /// Found on disk (checksum verified).
    HitL2 = 1,
    /// Not found (or dropped): computed.
    Miss = 2,
    /// A stored value failed its checksum or decoding; dropped and recomputed.
    Corrupt = 3,
    /// A stored value was past its TTL; dropped and recomputed.
    Expired = 4,
    /// A computed result was stored.
    Insert = 5,
}

const N: usize = 6;

/// Counts for one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Hits in memory.
    pub hits_l1: u64,
    /// Hits on disk.
    pub hits_l2: u64,
    /// Misses (computed).
    pub misses: u64,
    /// Corrupt values dropped (also counted as misses).
    pub corrupt: u64,
    /// Expired values dropped (also counted as misses).
    pub expired: u64,
    /// Results stored.
    pub inserts: u64,
}

impl KindStats {
    /// Hits over lookups, in [0, 1]; `None` with no lookups.
    pub fn hit_rate(&self) -> Option<f64> {
        let hits = self.hits_l1 + self.hits_l2;
        let all = hits + self.misses;
        (all > 0).then(|| hits as f64 / all as f64)
    }

    fn to_array(self) -> [u64; N] {
        [
            self.hits_l1,
            self.hits_l2,
            self.misses,
            self.corrupt,
            self.expired,
            self.inserts,
        ]
    }

    fn from_array(a: [u64; N]) -> Self {
        KindStats {
            hits_l1: a[0],
            hits_l2: a[1],
            misses: a[2],
            corrupt: a[3],
            expired: a[4],
            inserts: a[5],
        }
    }

    /// Sum of two counts.
    pub fn plus(self, o: KindStats) -> KindStats {
        let (a, b) = (self.to_array(), o.to_array());
        KindStats::from_array(std::array::from_fn(|i| a[i].saturating_add(b[i])))
    }
}

/// Counts for every kind, indexed by [`Kind::index`].
pub type PerKind = [KindStats; 2];

/// Lock-free counters of one process.
#[derive(Debug, Default)]
pub struct Counters([[AtomicU64; N]; 2]);

impl Counters {
    /// Adds one event.
    pub fn bump(&self, kind: Kind, c: Counter) {
        self.0[kind.index()][c as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> PerKind {
        std::array::from_fn(|k| {
            KindStats::from_array(std::array::from_fn(|i| {
                self.0[k][i].load(Ordering::Relaxed)
            }))
        })
    }
}

/// Serialises counts for the store (fixed layout, little endian).
pub fn encode(p: &PerKind) -> Vec<u8> {
    p.iter()
        .flat_map(|k| k.to_array())
        .flat_map(u64::to_le_bytes)
        .collect()
}

/// Reads counts written by [`encode`]; anything malformed reads as zeros
/// (counters are informative, never worth failing for).
pub fn decode(b: &[u8]) -> PerKind {
    if b.len() != 2 * N * 8 {
        return PerKind::default();
    }
    std::array::from_fn(|k| {
        KindStats::from_array(std::array::from_fn(|i| {
            let o = (k * N + i) * 8;
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(w)
        }))
    })
}

/// Entries and bytes of one kind in one tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Number of entries.
    pub entries: u64,
    /// Bytes (decoded size in L1, encoded size in L2).
    pub bytes: u64,
}

/// What the on-disk tier holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct L2Stats {
    /// The database directory.
    pub path: std::path::PathBuf,
    /// Entries and value bytes per kind.
    pub usage: [Usage; 2],
    /// Bytes on disk, measured (sled's own overhead included).
    pub disk_bytes: u64,
    /// Creation time of the oldest entry (ms since the Unix epoch).
    pub oldest_ms: Option<u64>,
}

/// Everything `cache stats` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheStats {
    /// Whether the cache is enabled at all.
    pub enabled: bool,
    /// This process's counts.
    pub this_run: PerKind,
    /// The last run that called [`super::Cache::flush`] (persisted).
    pub last_run: PerKind,
    /// All runs together, this one included once flushed (persisted).
    pub total: PerKind,
    /// L1 entries and bytes per kind in this process.
    pub l1: [Usage; 2],
    /// L1 entries and bytes per kind at the end of the last run.
    pub last_run_l1: [Usage; 2],
    /// The on-disk tier, when open.
    pub l2: Option<L2Stats>,
}

/// Serialises L1 usage for the store.
pub fn encode_usage(u: &[Usage; 2]) -> Vec<u8> {
    u.iter()
        .flat_map(|x| [x.entries, x.bytes])
        .flat_map(u64::to_le_bytes)
        .collect()
}

/// Reads [`encode_usage`]; malformed reads as zeros.
pub fn decode_usage(b: &[u8]) -> [Usage; 2] {
    if b.len() != 32 {
        return Default::default();
    }
    let w = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_le_bytes(a)
    };
    [
        Usage {
            entries: w(0),
            bytes: w(1),
        },
        Usage {
            entries: w(2),
            bytes: w(3),
        },
    ]
}
