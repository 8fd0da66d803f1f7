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
    /// One line of counts for kind `k`, as `cache stats` prints it:
    /// `run: hits 3 (l1 1, l2 2) misses 1 corrupt 0 expired 0 stored 1 hit-rate 75.0%`.
    pub fn line(&self, k: Kind) -> String {
        format!(
            "{}: hits {} (l1 {}, l2 {}) misses {} corrupt {} expired {} stored {} hit-rate {}",
            k.name(),
            self.hits_l1 + self.hits_l2,
            self.hits_l1,
            self.hits_l2,
            self.misses,
            self.corrupt,
            self.expired,
            self.inserts,
            self.hit_rate()
                .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0))
        )
    }

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
pub type PerKind = [KindStats; Kind::COUNT];

/// Lock-free counters of one process.
#[derive(Debug, Default)]
pub struct Counters([[AtomicU64; N]; Kind::COUNT]);

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
    if b.len() != Kind::COUNT * N * 8 {
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
    pub usage: [Usage; Kind::COUNT],
    /// Bytes on disk, measured (sled's own overhead and the files of run
    /// entries included).
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
    pub l1: [Usage; Kind::COUNT],
    /// L1 entries and bytes per kind at the end of the last run.
    pub last_run_l1: [Usage; Kind::COUNT],
    /// The on-disk tier, when open.
    pub l2: Option<L2Stats>,
}

/// Serialises L1 usage for the store.
pub fn encode_usage(u: &[Usage; Kind::COUNT]) -> Vec<u8> {
    u.iter()
        .flat_map(|x| [x.entries, x.bytes])
        .flat_map(u64::to_le_bytes)
        .collect()
}

/// Reads [`encode_usage`]; malformed reads as zeros.
pub fn decode_usage(b: &[u8]) -> [Usage; Kind::COUNT] {
    if b.len() != Kind::COUNT * 16 {
        return Default::default();
    }
    let w = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_le_bytes(a)
    };
    std::array::from_fn(|k| Usage {
        entries: w(2 * k),
        bytes: w(2 * k + 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_the_store_layout() {
        let c = Counters::default();
        c.bump(Kind::Run, Counter::HitL2);
        c.bump(Kind::Run, Counter::Miss);
        c.bump(Kind::Signals, Counter::Insert);
        let p = c.snapshot();
        assert_eq!(p[Kind::Run.index()].hits_l2, 1);
        assert_eq!(p[Kind::Run.index()].misses, 1);
        assert_eq!(decode(&encode(&p)), p);
        // The two-kind layout of store format 1 reads as zeros, not shifted.
        assert_eq!(decode(&encode(&p)[..2 * N * 8]), PerKind::default());
        let u: [Usage; Kind::COUNT] = std::array::from_fn(|k| Usage {
            entries: k as u64 + 1,
            bytes: 100 * (k as u64 + 1),
        });
        assert_eq!(decode_usage(&encode_usage(&u)), u);
        assert_eq!(decode_usage(&[0; 32]), <[Usage; Kind::COUNT]>::default());
    }
}
