//! L1: decoded results in memory, bounded by bytes, evicted by the
//! [`super::evict`] score.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::evict::{self, Candidate};
use super::key::{Key, Kind};

/// A decoded cached result, shared without copying.
#[derive(Debug, Clone)]
pub enum L1Value {
    /// An average signal and a direction.
    Signals(Arc<(Vec<f64>, Vec<i8>)>),
}

impl L1Value {
    /// The kind of result.
    pub fn kind(&self) -> Kind {
        match self {
            L1Value::Signals(_) => Kind::Signals,
        }
    }

    /// Heap bytes it holds (what the L1 budget counts).
    pub fn bytes(&self) -> u64 {
        let b = match self {
            L1Value::Signals(s) => s.0.len() * 8 + s.1.len(),
        };
        (b + 128) as u64
    }
}

#[derive(Debug)]
struct Entry {
    value: L1Value,
    bytes: u64,
    created_ms: u64,
    last_ms: u64,
    crf: f64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    used: u64,
}

/// The in-memory tier.
#[derive(Debug)]
pub struct L1 {
    inner: Mutex<Inner>,
    cap: u64,
}

impl L1 {
    /// An empty tier holding at most `cap` bytes.
    pub fn new(cap: u64) -> L1 {
        L1 {
            inner: Mutex::new(Inner::default()),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent
        // in a way that matters for a cache; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value under `key`, if present and not older than `ttl_ms`.
    pub fn get(&self, key: &Key, now_ms: u64, ttl_ms: u64) -> Option<L1Value> {
        let mut g = self.lock();
        let expired = match g.map.get_mut(key) {
            None => return None,
            Some(e) if now_ms.saturating_sub(e.created_ms) <= ttl_ms => {
                e.crf = evict::touch(e.crf, e.last_ms, now_ms);
                e.last_ms = now_ms;
                return Some(e.value.clone());
            }
            Some(_) => true,
        };
        if expired {
            if let Some(e) = g.map.remove(key) {
                g.used -= e.bytes;
            }
        }
        None
    }

    /// Stores `value`; evicts down to 90% of the budget when over it (in one
    /// batch, so eviction is amortised). A value larger than the whole
    /// budget is not kept.
    pub fn insert(&self, key: Key, value: L1Value, created_ms: u64, now_ms: u64, ttl_ms: u64) {
        let bytes = value.bytes();
        if bytes > self.cap {
            return;
        }
        let mut g = self.lock();
        if let Some(old) = g.map.insert(
            key,
            Entry {
                value,
                bytes,
                created_ms,
                last_ms: now_ms,
                crf: 1.0,
            },
        ) {
            g.used -= old.bytes;
        }
        g.used += bytes;
        if g.used > self.cap {
            let cands = g
                .map
                .iter()
                .filter(|(k, _)| **k != key)
                .map(|(k, e)| Candidate {
                    key: *k,
                    bytes: e.bytes,
                    score: evict::score(e.crf, e.last_ms, now_ms),
                    expired: now_ms.saturating_sub(e.created_ms) > ttl_ms,
                })
                .collect();
            let used = g.used;
            for k in evict::victims(cands, used, self.cap / 10 * 9) {
                if let Some(e) = g.map.remove(&k) {
                    g.used -= e.bytes;
                }
            }
        }
    }

    /// Entries and bytes per kind.
    pub fn usage(&self) -> [(u64, u64); Kind::COUNT] {
        let g = self.lock();
        let mut out = [(0, 0); Kind::COUNT];
        for e in g.map.values() {
            let slot = &mut out[e.value.kind().index()];
            slot.0 += 1;
            slot.1 += e.bytes;
        }
        out
    }

    /// Whether `key` is held (for tests).
    pub fn contains(&self, key: &Key) -> bool {
        self.lock().map.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(n: usize) -> L1Value {
        L1Value::Signals(Arc::new((vec![0.0; n], vec![0; n])))
    }

    #[test]
    fn tiny_cap_keeps_frequently_used_entries() {
        let one = sig(100).bytes();
        let l1 = L1::new(one * 10);
        let hot: Vec<Key> = (0..3).map(|i| Key([i; 32])).collect();
        for k in &hot {
            l1.insert(*k, sig(100), 0, 0, u64::MAX);
        }
        for t in 1..5 {
            for k in &hot {
                assert!(l1.get(k, t, u64::MAX).is_some());
            }
        }
        // A "sweep" of 50 one-off entries.
        for i in 0..50u8 {
            l1.insert(Key([100 + i; 32]), sig(100), 10, 10, u64::MAX);
        }
        for k in &hot {
            assert!(l1.contains(k), "hot entry evicted");
        }
        let used: u64 = l1.usage().iter().map(|u| u.1).sum();
        assert!(used <= one * 10);
    }

    #[test]
    fn expired_entries_are_never_returned() {
        let l1 = L1::new(1 << 20);
        l1.insert(Key([1; 32]), sig(10), 100, 100, 50);
        assert!(l1.get(&Key([1; 32]), 150, 50).is_some());
        assert!(l1.get(&Key([1; 32]), 151, 50).is_none());
        assert!(!l1.contains(&Key([1; 32])));
    }
}
