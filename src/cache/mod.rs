//! Persistent result cache (issue 7): blake3 content keys, an in-memory L1
//! and an on-disk sled L2, LRU+LFU hybrid eviction, TTL.
//!
//! - [`key`]: what a key covers (format version, kind, canonical
//!   parameters, input content hashes; never file names or times).
//! - [`codec`]: compact values with a checksum verified on every read.
//! - [`store`]: the [`store::KvStore`] trait, sled and in-memory backends,
//!   and the "never fail a run" open logic.
//! - [`l1`], [`evict`]: the memory tier and the eviction score.
//! - [`engine_cache`]: the cached engine entry points.
//! - [`run_files`]: file entries ([`Kind::Run`], [`Kind::Report`]): a
//!   run's finished result files or its report's charts, stored beside the
//!   database under `<dir>/runs/`.
//! - [`fast`]: memos and sled-free restores, so a warm rerun opens
//!   neither this store nor the data store.
//!
//! A [`Cache`] never fails: a store that cannot be opened, is locked by
//! another process, is corrupt or runs out of disk degrades to less caching
//! with one warning line ([`Cache::warnings`]); results are bit-identical in
//! every case. Open one `Cache` per process and share it by reference
//! (it is `Send + Sync`).

pub mod codec;
pub mod engine_cache;
mod error;
pub mod evict;
pub mod fast;
pub mod key;
pub mod l1;
pub mod run_files;
pub mod stats;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use engine_cache::{
    cached_signals, lookup_signals, lookup_signals_once, store_signals, store_signals_once,
};
pub use error::CacheError;
pub use fast::{FastCache, Memo};
pub use key::{report_key, run_key, Key, Kind, RunKeyHasher};
pub use run_files::EntryFile;
pub use stats::{CacheStats, KindStats, L2Stats, Usage};

use codec::Header;
use l1::{L1Value, L1};
use stats::{Counter, Counters};
use store::{KvStore, Tree};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How to open the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Cache directory; the sled database lives in `dir/db`, the files of
    /// run entries in `dir/runs`.
    pub dir: PathBuf,
    /// L1 budget in bytes (decoded results in memory).
    pub mem_bytes: u64,
    /// L2 budget in bytes, measured on disk.
    pub disk_bytes: u64,
    /// Entries older than this (since written) are never returned.
    pub ttl: Duration,
    /// `false` for `--no-cache`: nothing is looked up or stored.
    pub enabled: bool,
}

impl CacheConfig {
    /// The defaults of the issue (256 MiB memory, 2 GiB disk, 30 days) for
    /// `dir`.
    pub fn new(dir: PathBuf) -> CacheConfig {
        CacheConfig {
            dir,
            mem_bytes: 256 << 20,
            disk_bytes: 2 << 30,
            ttl: Duration::from_secs(30 * 24 * 3600),
            enabled: true,
        }
    }
}

/// Meta record of an L2 entry: kind, created, last use, decayed use count,
/// value size.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Meta {
    kind: Kind,
    created_ms: u64,
    last_ms: u64,
    crf: f64,
    size: u64,
}

impl Meta {
    fn encode(&self) -> [u8; 33] {
        let mut b = [0u8; 33];
        b[0] = self.kind.tag();
        b[1..9].copy_from_slice(&self.created_ms.to_le_bytes());
        b[9..17].copy_from_slice(&self.last_ms.to_le_bytes());
        b[17..25].copy_from_slice(&self.crf.to_bits().to_le_bytes());
        b[25..33].copy_from_slice(&self.size.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Meta> {
        if b.len() != 33 {
            return None;
        }
        let w = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Some(Meta {
            kind: Kind::from_tag(b[0])?,
            created_ms: w(1),
            last_ms: w(9),
            crf: f64::from_bits(w(17)),
            size: w(25),
        })
    }
}

/// What `cache gc` / `cache verify` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Entries examined.
    pub checked: u64,
    /// Expired entries removed.
    pub expired: u64,
    /// Entries evicted to meet the size cap.
    pub evicted: u64,
    /// Corrupt entries removed (keys, shortened).
    pub corrupt: Vec<String>,
    /// Run directories without a manifest (a crash between their rename
    /// and the manifest's insert, or a lost database), stale temporary
    /// directories and damaged databases moved aside (`broken-<ms>`) more
    /// than [`store::BROKEN_KEEP`] ago, removed.
    pub orphans: u64,
    /// Disk bytes before and after.
    pub disk_before: u64,
    /// Disk bytes after.
    pub disk_after: u64,
}

/// The two-tier result cache. `Send + Sync`; share it by reference.
pub struct Cache {
    enabled: bool,
    l1: L1,
    l2: Option<Arc<dyn KvStore>>,
    l2_live: AtomicBool,
    l2_path: PathBuf,
    /// The cache directory (memos and the hit journal live here).
    dir: PathBuf,
    /// Where run entries keep their files (`<dir>/runs`).
    runs_dir: PathBuf,
    ttl_ms: u64,
    disk_cap: u64,
    counters: Counters,
    /// L2 entries used this run and how often, for meta updates at flush.
    touched: Mutex<HashMap<Key, u32>>,
    warnings: Mutex<Vec<String>>,
    /// How many of `warnings` [`Cache::take_warnings`] returned.
    warnings_shown: Mutex<usize>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("enabled", &self.enabled)
            .field("l2", &self.l2.is_some())
            .field("l2_path", &self.l2_path)
            .finish()
    }
}

/// How long a run waits for another process's lock before going L1-only
/// (`ATC_CACHE_LOCK_WAIT_MS` overrides the default 1000 ms).
fn lock_wait() -> Duration {
    let ms = std::env::var("ATC_CACHE_LOCK_WAIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    Duration::from_millis(ms)
}

impl Cache {
    /// Opens the cache described by `cfg`. Never fails: problems with the
    /// on-disk tier leave an L1-only cache and a warning.
    pub fn open(cfg: &CacheConfig) -> Cache {
        if !cfg.enabled {
            return Cache::disabled();
        }
        let opened = store::open_sled(&cfg.dir, lock_wait());
        let l2 = opened.store.map(|s| s as Arc<dyn KvStore>);
        let mut c = Cache::with_store(l2, cfg);
        c.l2_path = store::db_path(&cfg.dir);
        c.warnings = Mutex::new(opened.warnings);
        c.fold_uses();
        c
    }

    /// Applies the hits that sled-free restores ([`fast`]) journaled
    /// since the store was last open: totals, last-run statistics and
    /// eviction scores. The journal is deleted once applied and flushed, so
    /// a crash in between counts a few hits twice, never loses the store.
    fn fold_uses(&self) {
        let Some(s) = self.live_l2().cloned() else {
            return;
        };
        let taken = fast::take_uses(&self.dir);
        if taken.is_empty() {
            return;
        }
        let r = (|| -> Result<(), CacheError> {
            let mut total = stats::decode(&s.get(Tree::Info, b"total")?.unwrap_or_default());
            let mut last: Option<(u64, stats::PerKind)> = None;
            for line in taken.iter().flat_map(|t| &t.1) {
                let mut per = stats::PerKind::default();
                for (kind, key) in &line.hits {
                    per[kind.index()].hits_l2 += 1;
                    if let Some(mut m) =
                        s.get(Tree::Meta, &key.0)?.as_deref().and_then(Meta::decode)
                    {
                        m.crf = evict::touch(m.crf, m.last_ms, line.at_ms);
                        m.last_ms = m.last_ms.max(line.at_ms);
                        s.insert(Tree::Meta, &key.0, &m.encode())?;
                    }
                }
                total = std::array::from_fn(|i| total[i].plus(per[i]));
                if last.is_none_or(|(t, _)| line.at_ms >= t) {
                    last = Some((line.at_ms, per));
                }
            }
            s.insert(Tree::Info, b"total", &stats::encode(&total))?;
            if let Some((_, per)) = last {
                s.insert(Tree::Info, b"last_run", &stats::encode(&per))?;
                s.insert(
                    Tree::Info,
                    b"last_run_l1",
                    &stats::encode_usage(&Default::default()),
                )?;
            }
            s.flush()
        })();
        match r {
            Ok(()) => {
                for (path, _) in taken {
                    let _ = std::fs::remove_file(path);
                }
            }
            Err(e) => self.l2_failed(&e),
        }
    }

    /// Records that invocation key `key` produced the run entry `memo.run`
    /// (see [`fast`]), so the next identical command restores it without
    /// opening the store. Only the process holding the store writes memos;
    /// a failure only costs that speed.
    pub fn put_memo(&self, key: &Key, memo: &Memo) {
        if self.enabled && self.live_l2().is_some() {
            let _ = fast::write_memo(&self.dir, key, memo);
        }
    }

    /// A cache over any [`KvStore`] (tests, another backend).
    pub fn with_store(l2: Option<Arc<dyn KvStore>>, cfg: &CacheConfig) -> Cache {
        Cache {
            enabled: cfg.enabled,
            l1: L1::new(cfg.mem_bytes),
            l2_live: AtomicBool::new(l2.is_some()),
            l2,
            l2_path: cfg.dir.clone(),
            dir: cfg.dir.clone(),
            runs_dir: cfg.dir.join(run_files::RUNS_DIR),
            ttl_ms: cfg.ttl.as_millis().min(u128::from(u64::MAX)) as u64,
            disk_cap: cfg.disk_bytes,
            counters: Counters::default(),
            touched: Mutex::new(HashMap::new()),
            warnings: Mutex::new(Vec::new()),
            warnings_shown: Mutex::new(0),
        }
    }

    /// A cache that stores and returns nothing (`--no-cache`).
    pub fn disabled() -> Cache {
        let mut cfg = CacheConfig::new(PathBuf::new());
        cfg.enabled = false;
        cfg.mem_bytes = 0;
        Cache::with_store(None, &cfg)
    }

    /// Whether lookups happen at all.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether the on-disk tier is in use.
    pub fn has_l2(&self) -> bool {
        self.l2.is_some() && self.l2_live.load(Ordering::Relaxed)
    }

    /// Warnings so far, one line each, for the CLI to print once.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn warn_once(&self, line: String) {
        let mut w = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        if !w.contains(&line) {
            w.push(line);
        }
    }

    fn live_l2(&self) -> Option<&Arc<dyn KvStore>> {
        let s = self
            .l2
            .as_ref()
            .filter(|_| self.l2_live.load(Ordering::Relaxed))?;
        if let Some(message) = store::background_panic() {
            self.l2_failed(&CacheError::Damaged {
                path: self.l2_path.clone(),
                message: format!("a sled thread panicked: {message}"),
            });
            return None;
        }
        Some(s)
    }

    /// A call into the store failed: stop using L2 for this run. A full
    /// disk or an I/O error leaves the database as it is; a damaged one
    /// (sled panicked or reported corruption) is moved aside, so the next
    /// command starts with an empty cache. One warning either way; results
    /// are unaffected.
    fn l2_failed(&self, e: &CacheError) {
        if !self.l2_live.swap(false, Ordering::Relaxed) {
            return;
        }
        let damaged = matches!(e, CacheError::Damaged { .. })
            || matches!(e, CacheError::Io { message } if message.contains("corrupt"));
        if damaged {
            let moved = self.l2.as_ref().and_then(|s| s.quarantine());
            self.warn_once(match moved {
                Some(to) => format!(
                    "warning: cache: {e}; moved it to {} (kept for inspection); this run continues without the on-disk cache and the next starts with an empty one",
                    to.display()
                ),
                None => format!(
                    "warning: cache: {e}; continuing without the on-disk cache for this run"
                ),
            });
        } else {
            self.warn_once(format!(
                "warning: cache: {e}; continuing without the on-disk cache for this run"
            ));
        }
    }

    /// Warnings not yet returned by this method, one line each: the CLI
    /// prints them after opening the cache and again at the end, so a
    /// failure during the run (a full disk) is reported too.
    pub fn take_warnings(&self) -> Vec<String> {
        let w = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        let mut shown = self
            .warnings_shown
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let new = w[(*shown).min(w.len())..].to_vec();
        *shown = w.len();
        new
    }

    pub(crate) fn bump(&self, kind: Kind, c: Counter) {
        self.counters.bump(kind, c);
    }

    /// L1 lookup; counts a hit.
    pub(crate) fn l1_get(&self, key: &Key, kind: Kind) -> Option<L1Value> {
        let v = self.l1.get(key, now_ms(), self.ttl_ms)?;
        if v.kind() != kind {
            return None;
        }
        self.bump(kind, Counter::HitL1);
        Some(v)
    }

    /// L2 lookup: returns a verified, unexpired value of `kind` with its
    /// header and body offset; drops (and counts) a corrupt or expired one.
    pub(crate) fn l2_get(&self, key: &Key, kind: Kind) -> Option<(Header, Vec<u8>)> {
        let s = self.live_l2()?;
        let bytes = match s.get(Tree::Values, &key.0) {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                self.l2_failed(&e);
                return None;
            }
        };
        match codec::open(key, &bytes) {
            Ok((h, _)) if h.kind != kind => {
                // Removed as what it is, so a run entry takes its files along.
                self.bump(kind, Counter::Corrupt);
                self.remove_l2(key, h.kind);
                None
            }
            Ok((h, _)) if now_ms().saturating_sub(h.created_ms) > self.ttl_ms => {
                self.bump(kind, Counter::Expired);
                self.remove_l2(key, kind);
                None
            }
            Ok((h, _)) => Some((h, bytes)),
            Err(_) => {
                self.drop_corrupt(key, kind);
                None
            }
        }
    }

    /// Counts and removes a value that failed its checks.
    pub(crate) fn drop_corrupt(&self, key: &Key, kind: Kind) {
        self.bump(kind, Counter::Corrupt);
        self.remove_l2(key, kind);
    }

    /// Removes an entry; a [`Kind::Run`] entry's files go after its
    /// manifest, so no manifest ever points at a half-deleted directory.
    fn remove_l2(&self, key: &Key, kind: Kind) {
        if let Some(s) = self.live_l2() {
            let _ = s.remove(Tree::Values, &key.0);
            let _ = s.remove(Tree::Meta, &key.0);
            if kind.has_files() {
                self.remove_run_dir(key);
            }
        }
    }

    /// Records an L2 hit for the eviction statistics (written at flush).
    pub(crate) fn note_l2_use(&self, key: &Key) {
        *self
            .touched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(*key)
            .or_insert(0) += 1;
    }

    /// Puts a decoded value in L1.
    pub(crate) fn l1_put(&self, key: Key, value: L1Value, created_ms: u64) {
        self.l1
            .insert(key, value, created_ms, now_ms(), self.ttl_ms);
    }

    /// Writes an encoded value (and its meta record) to L2.
    pub(crate) fn l2_put(&self, key: &Key, kind: Kind, created_ms: u64, encoded: &[u8]) {
        let Some(s) = self.live_l2() else { return };
        match put_entry(&**s, key, kind, created_ms, encoded, encoded.len() as u64) {
            Ok(()) => self.bump(kind, Counter::Insert),
            Err(e) => self.l2_failed(&e),
        }
    }

    /// Entries and bytes per kind in L1.
    fn l1_usage(&self) -> [Usage; Kind::COUNT] {
        let l1 = self.l1.usage();
        std::array::from_fn(|i| Usage {
            entries: l1[i].0,
            bytes: l1[i].1,
        })
    }

    /// This process's counts, the persisted last-run and total counts, and
    /// what each tier holds.
    pub fn stats(&self) -> CacheStats {
        let mut out = CacheStats {
            enabled: self.enabled,
            this_run: self.counters.snapshot(),
            l1: self.l1_usage(),
            ..Default::default()
        };
        // Never into a store that failed (it may be damaged).
        if let Some(s) = self.live_l2() {
            let info = |k: &[u8]| s.get(Tree::Info, k).ok().flatten().unwrap_or_default();
            out.last_run = stats::decode(&info(b"last_run"));
            out.total = stats::decode(&info(b"total"));
            out.last_run_l1 = stats::decode_usage(&info(b"last_run_l1"));
            let mut l2 = L2Stats {
                path: self.l2_path.clone(),
                disk_bytes: self.disk_usage(&**s),
                ..Default::default()
            };
            let _ = s.scan(Tree::Meta, &mut |_, v| {
                if let Some(m) = Meta::decode(v) {
                    let u = &mut l2.usage[m.kind.index()];
                    u.entries += 1;
                    u.bytes += m.size;
                    l2.oldest_ms = Some(l2.oldest_ms.map_or(m.created_ms, |o| o.min(m.created_ms)));
                }
            });
            out.l2 = Some(l2);
        }
        out
    }

    /// Persists the counters and use statistics, evicts L2 down to its size
    /// cap, and flushes the store. Call once at the end of a run; errors
    /// become a warning.
    pub fn flush(&self) {
        let Some(s) = self.live_l2().cloned() else {
            return;
        };
        let now = now_ms();
        let touched: Vec<(Key, u32)> = self
            .touched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        let run = self.counters.snapshot();
        let l1 = self.l1_usage();
        let r = (|| -> Result<(), CacheError> {
            for (key, uses) in touched {
                if let Some(mut m) = s.get(Tree::Meta, &key.0)?.as_deref().and_then(Meta::decode) {
                    m.crf = evict::score(m.crf, m.last_ms, now) + f64::from(uses);
                    m.last_ms = now;
                    s.insert(Tree::Meta, &key.0, &m.encode())?;
                }
            }
            let total = s
                .get(Tree::Info, b"total")?
                .map(|b| stats::decode(&b))
                .unwrap_or_default();
            let total: stats::PerKind = std::array::from_fn(|i| total[i].plus(run[i]));
            s.insert(Tree::Info, b"total", &stats::encode(&total))?;
            s.insert(Tree::Info, b"last_run", &stats::encode(&run))?;
            s.insert(Tree::Info, b"last_run_l1", &stats::encode_usage(&l1))?;
            self.evict_l2(&*s, now, None)?;
            s.flush()
        })();
        if let Err(e) = r {
            self.l2_failed(&e);
        }
    }

    /// Removes expired entries and evicts the lowest-scoring ones until the
    /// measured disk usage fits the cap. Returns (expired, evicted).
    fn evict_l2(
        &self,
        s: &dyn KvStore,
        now: u64,
        report: Option<&mut Maintenance>,
    ) -> Result<(u64, u64), CacheError> {
        let mut cands = Vec::new();
        let mut live = 0u64;
        let mut runs = std::collections::HashSet::new();
        s.scan(Tree::Meta, &mut |k, v| {
            if let (Some(key), Some(m)) = (Key::from_slice(k), Meta::decode(v)) {
                live += m.size;
                if m.kind.has_files() {
                    runs.insert(key);
                }
                cands.push((
                    evict::Candidate {
                        key,
                        bytes: m.size,
                        score: evict::score(m.crf, m.last_ms, now),
                        expired: now.saturating_sub(m.created_ms) > self.ttl_ms,
                    },
                    m.kind,
                ));
            }
        })?;
        if let Some(r) = report {
            r.checked = cands.len() as u64;
        }
        let disk = self.disk_usage(s);
        // The store's overhead (sled keeps ~2x the live bytes) scales the
        // live-byte target so that the *measured* usage lands under the cap
        // with 20% headroom.
        let target = if disk <= self.disk_cap {
            live
        } else {
            ((live as f64) * (self.disk_cap as f64 * 0.8) / disk as f64) as u64
        };
        let expired: std::collections::HashSet<Key> = cands
            .iter()
            .filter(|c| c.0.expired)
            .map(|c| c.0.key)
            .collect();
        let victims = evict::victims(cands.into_iter().map(|c| c.0).collect(), live, target);
        let n_exp = victims.iter().filter(|k| expired.contains(k)).count() as u64;
        for k in &victims {
            s.remove(Tree::Values, &k.0)?;
            s.remove(Tree::Meta, &k.0)?;
            if runs.contains(k) {
                self.remove_run_dir(k);
            }
        }
        Ok((n_exp, victims.len() as u64 - n_exp))
    }

    /// `cache gc`: removes expired entries, values without a meta record
    /// get one, run entries whose directory is gone are dropped, run
    /// directories without a manifest and stale temporary ones are deleted,
    /// and evicts down to the size cap.
    pub fn gc(&self) -> Result<Maintenance, CacheError> {
        let mut rep = Maintenance::default();
        let Some(s) = self.live_l2().cloned() else {
            return Ok(rep);
        };
        rep.disk_before = self.disk_usage(&*s);
        let mut missing = Vec::new();
        let mut keys = std::collections::HashSet::new();
        let mut runs = Vec::new();
        s.scan(Tree::Values, &mut |k, v| {
            if let Some(key) = Key::from_slice(k) {
                keys.insert(key);
                if let Some((kind, created)) = codec::peek(v) {
                    let size = if kind.has_files() {
                        runs.push(key);
                        run_files::entry_size(&key, v)
                    } else {
                        v.len() as u64
                    };
                    missing.push((key, kind, created, size));
                }
            }
        })?;
        for key in runs {
            if !self.run_dir(&key).is_dir() {
                s.remove(Tree::Values, &key.0)?;
                s.remove(Tree::Meta, &key.0)?;
                keys.remove(&key);
                missing.retain(|m| m.0 != key);
                rep.corrupt.push(key.to_string());
            }
        }
        let mut orphans = Vec::new();
        s.scan(Tree::Meta, &mut |k, _| {
            if let Some(key) = Key::from_slice(k) {
                if !keys.contains(&key) {
                    orphans.push(key);
                }
            }
        })?;
        for k in orphans {
            s.remove(Tree::Meta, &k.0)?;
        }
        for (key, kind, created, size) in missing {
            if s.get(Tree::Meta, &key.0)?.is_none() {
                let m = Meta {
                    kind,
                    created_ms: created,
                    last_ms: created,
                    crf: 1.0,
                    size,
                };
                s.insert(Tree::Meta, &key.0, &m.encode())?;
            }
        }
        // Before eviction, so the measured usage it works from is real.
        rep.orphans = self.sweep_runs_dir(&*s)?
            + fast::sweep_memos(&self.dir)
            + store::sweep_broken(&self.dir, now_ms());
        let (e, v) = self.evict_l2(&*s, now_ms(), Some(&mut rep))?;
        rep.expired = e;
        rep.evicted = v;
        s.flush()?;
        rep.disk_after = self.disk_usage(&*s);
        Ok(rep)
    }

    /// `cache verify`: checks every value's checksum and body, re-hashes
    /// the files of every run entry, removes the bad ones and reports them.
    pub fn verify(&self) -> Result<Maintenance, CacheError> {
        let mut rep = Maintenance::default();
        let Some(s) = self.live_l2().cloned() else {
            return Ok(rep);
        };
        rep.disk_before = self.disk_usage(&*s);
        let mut bad = Vec::new();
        let mut runs = Vec::new();
        s.scan(Tree::Values, &mut |k, v| {
            rep.checked += 1;
            let ok = Key::from_slice(k).is_some_and(|key| match codec::open(&key, v) {
                Ok((h, body)) => match h.kind {
                    Kind::Signals => codec::decode_signals(&h, body).is_ok(),
                    // The files are hashed after the scan, outside the
                    // store's iterator.
                    Kind::Run | Kind::Report => codec::decode_run(&h, body)
                        .map(|files| runs.push((key, files)))
                        .is_ok(),
                },
                Err(_) => false,
            });
            if !ok {
                bad.push(k.to_vec());
            }
        })?;
        for (key, files) in runs {
            if !self.run_files_intact(&key, &files) {
                bad.push(key.0.to_vec());
            }
        }
        for k in bad {
            s.remove(Tree::Values, &k)?;
            s.remove(Tree::Meta, &k)?;
            // Whatever kind it claimed: a damaged manifest's files are
            // unreachable too.
            if let Some(key) = Key::from_slice(&k) {
                self.remove_run_dir(&key);
            }
            rep.corrupt.push(
                Key::from_slice(&k)
                    .map_or_else(|| format!("{} bytes key", k.len()), |key| key.to_string()),
            );
        }
        s.flush()?;
        rep.disk_after = self.disk_usage(&*s);
        Ok(rep)
    }

    /// Test hook: flips one byte in the middle of up to `n` stored values
    /// (as a torn write or bit rot would). Returns how many were damaged.
    #[doc(hidden)]
    pub fn corrupt_values_for_test(&self, n: usize) -> usize {
        let Some(s) = self.live_l2() else { return 0 };
        let mut vals = Vec::new();
        let _ = s.scan(Tree::Values, &mut |k, v| {
            if vals.len() < n {
                vals.push((k.to_vec(), v.to_vec()));
            }
        });
        let mut done = 0;
        for (k, mut v) in vals {
            let mid = v.len() / 2;
            v[mid] ^= 0x5a;
            if s.insert(Tree::Values, &k, &v).is_ok() {
                done += 1;
            }
        }
        let _ = s.flush();
        done
    }
}

/// Writes a value and its meta record; `size` is what eviction counts for
/// it (a run entry counts its files too).
fn put_entry(
    s: &dyn KvStore,
    key: &Key,
    kind: Kind,
    created_ms: u64,
    encoded: &[u8],
    size: u64,
) -> Result<(), CacheError> {
    let meta = Meta {
        kind,
        created_ms,
        last_ms: created_ms,
        crf: 1.0,
        size,
    };
    s.insert(Tree::Values, &key.0, encoded)?;
    s.insert(Tree::Meta, &key.0, &meta.encode())
}

/// The cache directory tag (<https://bford.info/cachedir/>): backup tools
/// skip a directory holding it, and it marks the directory as atc-bt's
/// cache for [`clear`].
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
const TAG_TEXT: &str = "Signature: 8a477f597d28d172789f06886806bc55\n# This directory is the result cache of atc-bt (https://github.com/atc-bt).\n# It can be deleted at any time (`atc-bt cache clear`).\n";

/// The entries of `dir` that keep atc-bt from keeping its cache there
/// (sorted): none when `dir` is absent, empty, tagged as atc-bt's cache
/// (its `CACHEDIR.TAG` names atc-bt), or holds nothing but the cache's own
/// entries (`db`, `runs`, `memo`, `uses.log*`, `broken-*`, the tag). A
/// cache is never put beside a user's files: its tag would make backup
/// tools skip them.
pub fn foreign_in_cache(dir: &std::path::Path) -> Vec<String> {
    let tag = std::fs::read_to_string(dir.join(CACHEDIR_TAG)).unwrap_or_default();
    if tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55") && tag.contains("atc-bt") {
        return Vec::new();
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return if std::fs::symlink_metadata(dir).is_ok_and(|m| !m.is_dir()) {
            vec![dir.display().to_string()]
        } else {
            Vec::new()
        };
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !(n == "db"
                || n == run_files::RUNS_DIR
                || n == fast::MEMO_DIR
                || n == CACHEDIR_TAG
                || n.starts_with(fast::USES_LOG)
                || n.starts_with("broken-"))
        })
        .collect();
    v.sort();
    v
}

/// Writes the cache directory tag into `dir` if it is missing (best
/// effort).
pub(crate) fn tag_dir(dir: &std::path::Path) {
    let tag = dir.join(CACHEDIR_TAG);
    if !tag.exists() {
        let _ = std::fs::write(tag, TAG_TEXT);
    }
}

/// Why [`clear`] refused.
#[derive(Debug, thiserror::Error)]
pub enum ClearError {
    /// The directory is not an atc-bt cache.
    #[error("{}: not an atc-bt cache directory (no {CACHEDIR_TAG} and no database); nothing removed\n  hint: pass the --data of the run, or --cache-dir with the directory `atc-bt cache stats` names", .0.display())]
    NotACache(std::path::PathBuf),
    /// Another process uses the cache.
    #[error("the cache database {} is in use by another atc-bt process; nothing removed\n  hint: run `atc-bt cache clear` again when it has finished", .0.display())]
    Locked(std::path::PathBuf),
    /// A file-system error.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// `cache clear`: removes the database (and moved-aside copies), the files
/// of run entries, the memos and the hit journal of the cache in `dir`,
/// without opening the database (so a damaged one is cleared too); anything
/// else in `dir` is left alone. Refuses a directory that is not an atc-bt
/// cache, and one whose database another process holds. Returns the bytes
/// freed (0 when there is no cache).
pub fn clear(dir: &std::path::Path) -> Result<u64, ClearError> {
    if !dir.exists() {
        return Ok(0);
    }
    let db = store::db_path(dir);
    let is_cache =
        dir.join(CACHEDIR_TAG).is_file() || db.join("conf").is_file() || db.join("db").is_file();
    if !is_cache {
        return Err(ClearError::NotACache(dir.to_path_buf()));
    }
    // sled holds an exclusive flock on `db/db` while open (fs2, i.e.
    // flock(2), the same lock std takes): holding it keeps another
    // process from opening the database while it is removed.
    let lock = std::fs::File::open(db.join("db")).ok();
    if let Some(f) = &lock {
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(ClearError::Locked(db)),
            Err(std::fs::TryLockError::Error(_)) => {}
        }
    }
    let before = store::dir_bytes(dir);
    let io = |path: std::path::PathBuf| move |source| ClearError::Io { path, source };
    for entry in std::fs::read_dir(dir).map_err(io(dir.to_path_buf()))? {
        let entry = entry.map_err(io(dir.to_path_buf()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name == "db"
            || name == run_files::RUNS_DIR
            || name == fast::MEMO_DIR
            || name.starts_with("broken-")
        {
            // Whatever shape the entry has: a directory is removed with
            // its tree, anything else (a file, a symbolic link, never
            // followed) by itself.
            let r = match entry.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
            r.map_err(io(path.clone()))?;
        } else if name.starts_with(fast::USES_LOG) {
            std::fs::remove_file(&path).map_err(io(path.clone()))?;
        }
    }
    drop(lock);
    Ok(before.saturating_sub(store::dir_bytes(dir)))
}
