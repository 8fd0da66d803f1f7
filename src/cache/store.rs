//! L2: the [`KvStore`] trait, its sled backend and an in-memory backend for
//! tests.
//!
//! The trait is deliberately small (get / insert / remove / scan / flush /
//! size on disk) so that another embedded store (redb) could replace sled
//! without touching the callers.
//!
//! sled 0.34 is beta software; the cache is disposable, so [`open_sled`]
//! treats any open error, corruption or format mismatch as "move the
//! database aside and start cold", and a lock held by another process as
//! "use L1 only".
//!
//! **A panic inside sled is caught at this boundary.** A damaged file can
//! make sled panic rather than return an error (one flipped block in
//! `db/blobs/` gives `tried to serialize Uninitialized` at open). Every
//! call into sled, its opening and its closing run under
//! [`std::panic::catch_unwind`] ([`guard`]); a panic becomes
//! [`CacheError::Damaged`], which the cache treats like corruption: the
//! database is moved aside (kept for inspection as `broken-<ms>`) and the
//! command continues without it, or with a fresh one at open. The panic
//! message is not printed (one warning line says what happened); panics in
//! sled's own background threads are silenced the same way and reported
//! by [`background_panic`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::error::CacheError;
use super::key::STORE_FORMAT;

/// The three trees of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    /// Encoded results, keyed by content key.
    Values,
    /// Per-entry use statistics for eviction (small records).
    Meta,
    /// Store-wide records: format version, counters.
    Info,
}

impl Tree {
    const ALL: [Tree; 3] = [Tree::Values, Tree::Meta, Tree::Info];

    fn name(self) -> &'static str {
        match self {
            Tree::Values => "values",
            Tree::Meta => "meta",
            Tree::Info => "info",
        }
    }
}

/// An embedded ordered key-value store with named trees.
pub trait KvStore: Send + Sync {
    /// The value under `key`.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, CacheError>;
    /// Stores `value` under `key`.
    fn insert(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), CacheError>;
    /// Removes `key` (absent is fine).
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), CacheError>;
    /// Calls `f` on every entry of `tree`, in key order.
    fn scan(&self, tree: Tree, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), CacheError>;
    /// Makes every write durable.
    fn flush(&self) -> Result<(), CacheError>;
    /// Bytes the store occupies on disk, measured (not counted).
    fn disk_bytes(&self) -> u64;
    /// Moves a damaged store out of the way (kept for inspection) so the
    /// next process starts with an empty one; returns where it went.
    fn quarantine(&self) -> Option<PathBuf> {
        None
    }
}

type MemTrees = HashMap<Tree, BTreeMap<Vec<u8>, Vec<u8>>>;

/// An in-memory [`KvStore`] for tests; it can be told to fail writes, like
/// a full disk.
#[derive(Debug, Default)]
pub struct MemStore {
    trees: Mutex<MemTrees>,
    /// When set, every write fails.
    pub fail_writes: AtomicBool,
}

impl MemStore {
    fn with<T>(&self, f: impl FnOnce(&mut MemTrees) -> T) -> T {
        let mut g = self.trees.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    fn check_write(&self) -> Result<(), CacheError> {
        if self.fail_writes.load(Ordering::Relaxed) {
            return Err(CacheError::Io {
                message: "No space left on device (simulated)".into(),
            });
        }
        Ok(())
    }
}

impl KvStore for MemStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.with(|t| t.get(&tree).and_then(|m| m.get(key).cloned())))
    }
    fn insert(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), CacheError> {
        self.check_write()?;
        self.with(|t| {
            t.entry(tree)
                .or_default()
                .insert(key.to_vec(), value.to_vec())
        });
        Ok(())
    }
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), CacheError> {
        self.with(|t| t.entry(tree).or_default().remove(key));
        Ok(())
    }
    fn scan(&self, tree: Tree, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), CacheError> {
        let entries: Vec<_> = self.with(|t| {
            t.get(&tree)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()
        });
        for (k, v) in entries {
            f(&k, &v);
        }
        Ok(())
    }
    fn flush(&self) -> Result<(), CacheError> {
        self.check_write()
    }
    fn disk_bytes(&self) -> u64 {
        self.with(|t| {
            t.values()
                .flat_map(|m| m.iter())
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum()
        })
    }
}

/// The message of a panic in one of sled's background threads, if one
/// happened in this process (the database is then not to be trusted).
pub fn background_panic() -> Option<String> {
    crate::boundary::background_panic()
}

/// Runs `f`, a call into sled, turning a panic into
/// [`CacheError::Damaged`] naming `path` (see [`crate::boundary`]).
pub fn guard<T>(path: &Path, f: impl FnOnce() -> Result<T, CacheError>) -> Result<T, CacheError> {
    crate::boundary::catch(f).unwrap_or_else(|message| {
        Err(CacheError::Damaged {
            path: path.to_path_buf(),
            message: format!("sled panicked: {message}"),
        })
    })
}

/// An open sled database and its trees.
struct SledInner {
    db: sled::Db,
    trees: [sled::Tree; 3],
}

/// The sled backend. Every call goes through [`guard`].
pub struct SledStore {
    inner: Option<SledInner>,
    dir: PathBuf,
    /// Set once any call returned an I/O error or panicked: closing the
    /// database may then block forever (see [`Drop`]).
    failed: AtomicBool,
}

/// How long closing a healthy database may take before the process stops
/// waiting for it (see [`Drop`] for [`SledStore`]).
const CLOSE_WAIT: Duration = Duration::from_secs(10);

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").field("dir", &self.dir).finish()
    }
}

/// sled's message, without the empty `backtrace ()` its corruption errors
/// carry.
fn sled_text(e: &sled::Error) -> String {
    let mut s = e.to_string();
    if let Some(i) = s.find(" backtrace ") {
        s.truncate(i);
    }
    s
}

fn io(e: sled::Error) -> CacheError {
    CacheError::Io {
        message: sled_text(&e),
    }
}

impl SledStore {
    fn inner(&self) -> Result<&SledInner, CacheError> {
        self.inner.as_ref().ok_or_else(|| CacheError::Io {
            message: "the cache database is closed".into(),
        })
    }

    fn call<T>(
        &self,
        tree: Tree,
        f: impl FnOnce(&sled::Tree) -> sled::Result<T>,
    ) -> Result<T, CacheError> {
        let inner = self.inner()?;
        self.noting_failure(guard(&self.dir, || {
            f(&inner.trees[tree as usize]).map_err(io)
        }))
    }

    fn noting_failure<T>(&self, r: Result<T, CacheError>) -> Result<T, CacheError> {
        if r.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        r
    }
}

/// Closing a sled database flushes it, and after an I/O error (a full
/// disk) that flush can wait forever on sled's write buffers: a cold run
/// on a full disk sometimes never exited. So a database that has failed is
/// never closed (its memory and lock go with the process, which is about to
/// exit: every command commits its results before the cache closes; sled's
/// log is crash-safe, and the cache is disposable); a healthy one is closed
/// on a helper thread, waited for at most [`CLOSE_WAIT`]. A panic while
/// closing is caught there.
impl Drop for SledStore {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if self.failed.load(Ordering::Relaxed) || background_panic().is_some() {
            std::mem::forget(inner);
            return;
        }
        let (done, wait) = std::sync::mpsc::channel();
        let dir = self.dir.clone();
        let closing = std::thread::Builder::new()
            .name("atc-bt cache close".into())
            .spawn(move || {
                let _ = guard(&dir, || {
                    drop(inner);
                    Ok(())
                });
                let _ = done.send(());
            });
        if closing.is_ok() {
            let _ = wait.recv_timeout(CLOSE_WAIT);
        }
    }
}

impl KvStore for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, CacheError> {
        self.call(tree, |t| t.get(key).map(|v| v.map(|v| v.to_vec())))
    }
    fn insert(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), CacheError> {
        self.call(tree, |t| t.insert(key, value).map(|_| ()))
    }
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), CacheError> {
        self.call(tree, |t| t.remove(key).map(|_| ()))
    }
    fn scan(&self, tree: Tree, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), CacheError> {
        self.call(tree, |t| {
            for item in t.iter() {
                let (k, v) = item?;
                f(&k, &v);
            }
            Ok(())
        })
    }
    fn flush(&self) -> Result<(), CacheError> {
        let inner = self.inner()?;
        self.noting_failure(guard(&self.dir, || {
            inner.db.flush().map(|_| ()).map_err(io)
        }))
    }
    fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.dir)
    }
    fn quarantine(&self) -> Option<PathBuf> {
        let cache_dir = self.dir.parent()?;
        move_aside(cache_dir, &self.dir).ok()
    }
}

/// Bytes a directory tree occupies on disk (allocated blocks where the
/// platform reports them, else file lengths).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in rd.flatten() {
        let Ok(md) = entry.metadata() else { continue };
        if md.is_dir() {
            total += dir_bytes(&entry.path());
        } else {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                total += (md.blocks() * 512).max(md.len().min(4096));
            }
            #[cfg(not(unix))]
            {
                total += md.len();
            }
        }
    }
    total
}

/// sled's page cache: small, since L1 already holds decoded results.
pub const SLED_CACHE_BYTES: u64 = 8 << 20;

/// One `Db` handle per database per process: a second `open_sled` of the
/// same directory in one process shares the first handle instead of
/// failing on sled's lock.
fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<SledStore>>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Weak<SledStore>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Whether an I/O error says something about the disk or the process
/// (full, over quota, read-only, not permitted, failing, out of handles or
/// memory) rather than about the database's bytes: such an error never
/// makes the database damaged, so it is never moved aside for it (the
/// command runs without it, and the entries are there again once the disk
/// has room).
pub fn is_environmental(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull
            | K::QuotaExceeded
            | K::ReadOnlyFilesystem
            | K::PermissionDenied
            | K::OutOfMemory
    ) || matches!(
        e.raw_os_error(),
        // EPERM, EIO, ENOMEM, EACCES, ENFILE, EMFILE, ENOSPC, EROFS, EDQUOT
        Some(1 | 5 | 12 | 13 | 23 | 24 | 28 | 30 | 122)
    )
}

/// What a sled error at open means: (damaged, the error). A lock held by
/// another process or an environmental I/O error ([`is_environmental`])
/// is not damage.
fn open_error(db_dir: &Path, e: sled::Error) -> (bool, CacheError) {
    match e {
        e if is_lock_error(&e) => (
            false,
            CacheError::Locked {
                path: db_dir.to_path_buf(),
            },
        ),
        sled::Error::Io(source) if is_environmental(&source) => (
            false,
            CacheError::Unwritable {
                path: db_dir.to_path_buf(),
                source,
            },
        ),
        e => (
            true,
            CacheError::Open {
                path: db_dir.to_path_buf(),
                message: sled_text(&e),
            },
        ),
    }
}

fn try_open(db_dir: &Path) -> Result<SledStore, (bool, CacheError)> {
    let cfg = sled::Config::new()
        .path(db_dir)
        .mode(sled::Mode::LowSpace)
        .cache_capacity(SLED_CACHE_BYTES)
        .flush_every_ms(Some(500));
    let opened = guard(db_dir, || Ok(cfg.open()));
    let opened = match opened {
        Ok(r) => r,
        Err(e) => return Err((true, e)),
    };
    let db = opened.map_err(|e| open_error(db_dir, e))?;
    let open_err = |e: sled::Error| open_error(db_dir, e);
    let trees = guard(db_dir, || {
        Ok((|| {
            let mut trees = Vec::with_capacity(3);
            for t in Tree::ALL {
                trees.push(db.open_tree(t.name())?);
            }
            Ok::<_, sled::Error>(trees)
        })())
    });
    let trees = match trees {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(open_err(e)),
        Err(e) => return Err((true, e)),
    };
    let Ok([values, meta, info]) = <[sled::Tree; 3]>::try_from(trees) else {
        return Err(open_err(sled::Error::Unsupported(
            "the database did not open its three trees".into(),
        )));
    };
    let store = SledStore {
        inner: Some(SledInner {
            db,
            trees: [values, meta, info],
        }),
        dir: db_dir.to_path_buf(),
        failed: AtomicBool::new(false),
    };
    match store.get(Tree::Info, b"format") {
        Ok(Some(f)) if f == STORE_FORMAT.as_bytes() => Ok(store),
        Ok(None)
            if store
                .call(Tree::Values, |t| Ok(t.is_empty()))
                .unwrap_or(false) =>
        {
            store
                .insert(Tree::Info, b"format", STORE_FORMAT.as_bytes())
                .map_err(|e| (false, e))?;
            Ok(store)
        }
        Ok(found) => Err((
            true,
            CacheError::Version {
                path: db_dir.to_path_buf(),
                found: String::from_utf8_lossy(found.as_deref().unwrap_or(b"none")).into_owned(),
                expected: STORE_FORMAT,
            },
        )),
        Err(e) => Err((true, e)),
    }
}

/// How [`open_sled`] went.
#[derive(Debug)]
pub struct Opened {
    /// The store, if any.
    pub store: Option<Arc<SledStore>>,
    /// Warnings to show (one line each).
    pub warnings: Vec<String>,
}

/// Where the database lives inside the cache directory.
pub fn db_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("db")
}

/// Opens (or creates) the sled database under `cache_dir`, never failing:
///
/// - a directory holding files atc-bt did not write
///   ([`super::foreign_in_cache`]): not used, nothing written there;
/// - held by another process: retries for `lock_wait`, then gives up
///   (the caller runs with L1 only);
/// - unwritable directory, or an environmental I/O error at open (a full
///   disk, a quota, a read-only file system: [`is_environmental`]): gives
///   up, leaving the database as it is (the caller runs without it);
/// - any other open error, corruption or format mismatch: moves the
///   database aside to `cache_dir/broken-<ms>` (removing older ones and
///   the run entries' files, which only it referenced) and opens a fresh
///   one.
pub fn open_sled(cache_dir: &Path, lock_wait: Duration) -> Opened {
    let db_dir = db_path(cache_dir);
    let key = std::fs::canonicalize(cache_dir).unwrap_or_else(|_| cache_dir.to_path_buf());
    let reg = registry();
    let mut g = reg.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = g.get(&key).and_then(Weak::upgrade) {
        return Opened {
            store: Some(s),
            warnings: Vec::new(),
        };
    }
    let mut warnings = Vec::new();
    let foreign = super::foreign_in_cache(cache_dir);
    if !foreign.is_empty() {
        let e = CacheError::Foreign {
            path: cache_dir.to_path_buf(),
            entries: foreign,
        };
        warnings.push(format!(
            "warning: cache: {e}; running without the on-disk cache"
        ));
        return Opened {
            store: None,
            warnings,
        };
    }
    if let Err(source) = std::fs::create_dir_all(cache_dir) {
        let e = CacheError::Unwritable {
            path: cache_dir.to_path_buf(),
            source,
        };
        warnings.push(format!("warning: {e}; running without the on-disk cache"));
        return Opened {
            store: None,
            warnings,
        };
    }
    super::tag_dir(cache_dir);
    let deadline = Instant::now() + lock_wait;
    let mut moved = false;
    loop {
        match try_open(&db_dir) {
            Ok(s) => {
                let s = Arc::new(s);
                g.insert(key, Arc::downgrade(&s));
                return Opened {
                    store: Some(s),
                    warnings,
                };
            }
            Err((_, CacheError::Locked { .. })) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((true, e)) if !moved => {
                moved = true;
                match move_aside(cache_dir, &db_dir) {
                    Ok(to) => warnings.push(format!(
                        "warning: {e}; moved it to {} and starting with an empty cache",
                        to.display()
                    )),
                    Err(_) => {
                        warnings.push(format!(
                            "warning: {e}; it could not be moved aside, running without the on-disk cache"
                        ));
                        return Opened {
                            store: None,
                            warnings,
                        };
                    }
                }
            }
            Err((_, e @ CacheError::Locked { .. })) => {
                warnings.push(format!(
                    "warning: cache: {e} (L1 only: results are still exact, nothing is stored on disk)"
                ));
                return Opened {
                    store: None,
                    warnings,
                };
            }
            Err((_, e)) => {
                warnings.push(format!("warning: {e}; running without the on-disk cache"));
                return Opened {
                    store: None,
                    warnings,
                };
            }
        }
    }
}

/// How long `cache gc` keeps a damaged database moved aside
/// (`broken-<ms>`) for inspection: a week.
pub const BROKEN_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Removes the damaged databases moved aside in `cache_dir` (`broken-<ms>`)
/// more than [`BROKEN_KEEP`] ago (by the time in their name); returns how
/// many.
pub fn sweep_broken(cache_dir: &Path, now_ms: u64) -> u64 {
    let Ok(rd) = std::fs::read_dir(cache_dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(ms) = name
            .to_str()
            .and_then(|n| n.strip_prefix("broken-"))
            .and_then(|t| t.parse::<u64>().ok())
        else {
            continue;
        };
        if now_ms.saturating_sub(ms) > BROKEN_KEEP.as_millis() as u64
            && std::fs::remove_dir_all(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

fn move_aside(cache_dir: &Path, db_dir: &Path) -> std::io::Result<PathBuf> {
    if let Ok(rd) = std::fs::read_dir(cache_dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("broken-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let to = cache_dir.join(format!("broken-{}", super::now_ms()));
    std::fs::rename(db_dir, &to)?;
    // The manifests that owned the run entries' files went with the old
    // database: nothing could ever read those files again.
    let _ = std::fs::remove_dir_all(cache_dir.join(super::run_files::RUNS_DIR));
    // Memos name run entries of the old database.
    let _ = std::fs::remove_dir_all(cache_dir.join(super::fast::MEMO_DIR));
    Ok(to)
}

#[cfg(test)]
mod tests {
    /// Fault (attack on main): `cache gc` never removed the `broken-*`
    /// directories that damaged databases were moved to.
    #[test]
    fn cache_gc_removes_broken_databases_older_than_a_week() {
        let t = tempfile::tempdir().unwrap();
        let now = 1_000_000_000_000u64;
        let week = super::BROKEN_KEEP.as_millis() as u64;
        for ms in [now - week - 1, now - week + 60_000] {
            std::fs::create_dir_all(t.path().join(format!("broken-{ms}/x"))).unwrap();
        }
        std::fs::create_dir(t.path().join("broken-notes")).unwrap();
        assert_eq!(super::sweep_broken(t.path(), now), 1);
        assert!(!t.path().join(format!("broken-{}", now - week - 1)).exists());
        assert!(t
            .path()
            .join(format!("broken-{}", now - week + 60_000))
            .exists());
        assert!(t.path().join("broken-notes").exists());
    }

    #[test]
    fn a_full_disk_is_not_damage() {
        let full = std::io::Error::from_raw_os_error(28);
        assert!(super::is_environmental(&full));
        let (damaged, e) = super::open_error(std::path::Path::new("/c/db"), sled::Error::Io(full));
        assert!(!damaged && e.to_string().contains("No space left"), "{e}");
        let (damaged, _) = super::open_error(
            std::path::Path::new("/c/db"),
            sled::Error::Corruption { at: None, bt: () },
        );
        assert!(damaged);
    }

    /// Fault (issue 16 tester): cache warnings ended in sled's empty
    /// "backtrace ()".
    #[test]
    fn sled_messages_carry_no_empty_backtrace() {
        let e = sled::Error::Corruption { at: None, bt: () };
        assert_eq!(
            super::sled_text(&e),
            "Read corrupted data at file offset None"
        );
    }
}
