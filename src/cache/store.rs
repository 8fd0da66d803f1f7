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

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
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

thread_local! {
    /// Set while this thread runs inside sled, so the panic hook stays quiet.
    static IN_SLED: Cell<bool> = const { Cell::new(false) };
}

/// The first panic seen in one of sled's background threads, if any.
static BACKGROUND_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Installs (once) a panic hook that stays silent for panics inside sled
/// (on a thread in [`guard`], or on one of sled's own threads, which are
/// named `log flusher` and `sled-io-*`) and defers to the previous hook
/// for every other panic.
fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_SLED.with(Cell::get) {
                return;
            }
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            if name == "log flusher" || name.starts_with("sled-io") {
                let mut g = BACKGROUND_PANIC.lock().unwrap_or_else(|e| e.into_inner());
                if g.is_none() {
                    *g = Some(panic_text(info.payload()));
                }
                return;
            }
            previous(info);
        }));
    });
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// The message of a panic in one of sled's background threads, if one
/// happened in this process (the database is then not to be trusted).
pub fn background_panic() -> Option<String> {
    BACKGROUND_PANIC
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Runs `f`, a call into sled, turning a panic into
/// [`CacheError::Damaged`] naming `path`.
pub fn guard<T>(path: &Path, f: impl FnOnce() -> Result<T, CacheError>) -> Result<T, CacheError> {
    install_quiet_hook();
    let was = IN_SLED.with(|c| c.replace(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    IN_SLED.with(|c| c.set(was));
    r.unwrap_or_else(|payload| {
        Err(CacheError::Damaged {
            path: path.to_path_buf(),
            message: format!("sled panicked: {}", panic_text(&*payload)),
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
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").field("dir", &self.dir).finish()
    }
}

fn io(e: sled::Error) -> CacheError {
    CacheError::Io {
        message: e.to_string(),
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
        guard(&self.dir, || f(&inner.trees[tree as usize]).map_err(io))
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Closing flushes; a damaged database may panic there too.
        if let Some(inner) = self.inner.take() {
            let _ = guard(&self.dir, || {
                drop(inner);
                Ok(())
            });
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
        guard(&self.dir, || inner.db.flush().map(|_| ()).map_err(io))
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
    let db = match opened {
        Ok(db) => db,
        Err(e) if is_lock_error(&e) => {
            return Err((
                false,
                CacheError::Locked {
                    path: db_dir.to_path_buf(),
                },
            ))
        }
        Err(sled::Error::Io(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err((
                false,
                CacheError::Unwritable {
                    path: db_dir.to_path_buf(),
                    source: e,
                },
            ))
        }
        Err(e) => {
            return Err((
                true,
                CacheError::Open {
                    path: db_dir.to_path_buf(),
                    message: e.to_string(),
                },
            ))
        }
    };
    let open_err = |e: sled::Error| {
        (
            true,
            CacheError::Open {
                path: db_dir.to_path_buf(),
                message: e.to_string(),
            },
        )
    };
    let trees = guard(db_dir, || {
        let mut trees = Vec::with_capacity(3);
        for t in Tree::ALL {
            trees.push(db.open_tree(t.name()).map_err(io)?);
        }
        Ok(trees)
    });
    let trees = match trees {
        Ok(t) => t,
        Err(CacheError::Io { message }) => {
            return Err(open_err(sled::Error::Unsupported(message)));
        }
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
/// - held by another process: retries for `lock_wait`, then gives up
///   (the caller runs with L1 only);
/// - unwritable directory: gives up;
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
