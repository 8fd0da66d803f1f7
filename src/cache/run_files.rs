//! File entries ([`Kind::Run`], [`Kind::Report`]): the finished result
//! files of a run, or the charts of its report, so that a warm rerun copies
//! them instead of recomputing and re-encoding them (writing ~40 MB of
//! Parquet dominates a warm run otherwise, and drawing PNGs a small one).
//!
//! Layout: the files of an entry live in `<cache dir>/runs/<64-hex key>/`;
//! the store holds a checksummed manifest (name, size, blake3 of each
//! file, see [`codec::encode_run`]) under the key, and a meta record whose
//! size is the files' bytes plus the manifest's, so eviction and the disk
//! budget see them. The same manifest bytes are also written into the
//! directory as [`MANIFEST_FILE`], for lookups that do not open the store
//! ([`super::fast`]).
//!
//! Crash safety: [`Cache::store_files`] copies into `runs/.tmp-<tag>` (its
//! writer's tag, see [`crate::files::owner`]), renames that to the final
//! name, and only then inserts the manifest. A crash leaves at worst a
//! temporary directory or a directory without a manifest in the store,
//! which no store lookup ever reads and `cache gc` deletes (a temporary
//! only once its writer is gone). A lookup trusts nothing on disk: [`Cache::restore_files`]
//! re-hashes every file while copying it out, and any mismatch drops the
//! entry.
//!
//! Only the process holding the database's lock has a live L2, so only it
//! ever writes under `runs/`; an L1-only process neither stores nor
//! restores runs.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::codec::{self, RunFile};
use super::error::CacheError;
use super::key::{Key, Kind};
use super::stats::Counter;
use super::store::{dir_bytes, KvStore, Tree};
use super::{now_ms, put_entry, Cache};

/// Directory of run entries inside the cache directory.
pub const RUNS_DIR: &str = "runs";

/// The copy of an entry's manifest inside its directory (a name no entry
/// file may take).
pub const MANIFEST_FILE: &str = ".manifest";

/// Prefix of a directory being filled by [`Cache::store_files`].
const TMP_PREFIX: &str = ".tmp-";

/// Copy buffer: large enough that syscalls and hashing calls are few on
/// tens of MB, small enough to run one per file in parallel.
const BUF: usize = 1 << 20;

/// Why a streamed copy stopped. The variant says which side failed and
/// whether the destination file was created (and must be cleaned up).
#[derive(Debug)]
enum CopyError {
    /// The source could not be opened (nothing created).
    OpenSrc(io::Error),
    /// The destination could not be created (nothing created).
    CreateDst(io::Error),
    /// Reading the source failed midway (destination created).
    Read(io::Error),
    /// Writing the destination failed midway (destination created).
    Write(io::Error),
    /// The source is longer than allowed (destination created).
    TooLong,
}

impl CopyError {
    fn created_dst(&self) -> bool {
        matches!(
            self,
            CopyError::Read(_) | CopyError::Write(_) | CopyError::TooLong
        )
    }
}

/// Copies `src` to `dst` (created or truncated), hashing the bytes as they
/// pass so each file is read once; stops past `max` bytes. Returns the
/// size and blake3 of what was copied.
fn copy_hashed(src: &Path, dst: &Path, max: u64) -> Result<(u64, [u8; 32]), CopyError> {
    let r = File::open(src).map_err(CopyError::OpenSrc)?;
    let mut w = File::create(dst).map_err(CopyError::CreateDst)?;
    read_hashed(r, max, &mut |b| w.write_all(b).map_err(CopyError::Write))
}

/// Restores the cached file `src` of a `kind` entry to `dst`, verifying it
/// as it goes; returns the size and blake3 of `dst` as [`copy_hashed`]
/// does.
///
/// Result files ([`Kind::Run`]) are copied: a restored directory shares
/// nothing with the cache, so a user editing a result in place can never
/// touch the cached copy. Report charts ([`Kind::Report`]) are rendered
/// artifacts that atc-bt only ever replaces, so they are hard-linked where
/// the file system allows (read once to hash), which spares a restore most
/// of its writes and new inodes; a link whose bytes cannot be read or run
/// past `max` is removed again.
fn restore_file(
    kind: Kind,
    src: &Path,
    dst: &Path,
    max: u64,
) -> Result<(u64, [u8; 32]), CopyError> {
    if kind != Kind::Report || std::fs::hard_link(src, dst).is_err() {
        return copy_hashed(src, dst, max);
    }
    let read = File::open(dst)
        .map_err(CopyError::Read)
        .and_then(|r| read_hashed(r, max, &mut |_| Ok(())));
    read.map_err(|e| {
        let _ = std::fs::remove_file(dst);
        // Nothing is left at `dst`: report it as a bad source.
        CopyError::OpenSrc(io::Error::other(format!("{e:?}")))
    })
}

/// Restores every file of a `kind` entry from its directory `dir` into
/// `dest_dir` with [`restore_file`], on all cores, checking each against
/// its manifest record. On any failure every file it wrote is removed
/// again; the error is [`RestoreFail::Blob`] if a cached file is bad (the
/// entry must go), else the destination's.
pub(super) fn restore_entry_files(
    kind: Kind,
    dir: &Path,
    files: &[RunFile],
    dest_dir: &Path,
) -> Result<(), RestoreFail> {
    let results: Vec<(bool, Result<(), RestoreFail>)> = files
        .par_iter()
        .map(|f| {
            let (src, dst) = (dir.join(&f.name), dest_dir.join(&f.name));
            match restore_file(kind, &src, &dst, f.size) {
                Ok((n, h)) if n == f.size && h == f.hash => (true, Ok(())),
                Ok(_) => (true, Err(RestoreFail::Blob)),
                Err(e) => {
                    let created = e.created_dst();
                    match e {
                        CopyError::CreateDst(e) | CopyError::Write(e) => {
                            (created, Err(RestoreFail::Dest(run_io(&dst)(e))))
                        }
                        _ => (created, Err(RestoreFail::Blob)),
                    }
                }
            }
        })
        .collect();
    if results.iter().all(|r| r.1.is_ok()) {
        return Ok(());
    }
    for (f, (created, _)) in files.iter().zip(&results) {
        if *created {
            let _ = fs::remove_file(dest_dir.join(&f.name));
        }
    }
    let errors: Vec<RestoreFail> = results.into_iter().filter_map(|r| r.1.err()).collect();
    if errors.iter().any(|e| matches!(e, RestoreFail::Blob)) {
        return Err(RestoreFail::Blob);
    }
    Err(errors.into_iter().next().unwrap_or(RestoreFail::Blob))
}

/// Size and blake3 of a file, streamed.
fn hash_file(path: &Path) -> io::Result<(u64, [u8; 32])> {
    let r = File::open(path)?;
    read_hashed(r, u64::MAX, &mut |_| Ok(())).map_err(|e| match e {
        CopyError::Read(e) => e,
        other => io::Error::other(format!("{other:?}")),
    })
}

/// Reads `r` to the end in blocks of at most [`BUF`], hashing each and
/// handing it to `sink`; stops past `max` bytes.
fn read_hashed(
    mut r: File,
    max: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), CopyError>,
) -> Result<(u64, [u8; 32]), CopyError> {
    let mut h = blake3::Hasher::new();
    // Sized to the file: most result files are far smaller than BUF, and
    // zeroing a fresh megabyte per file cost more than a small run's copy.
    let len = r.metadata().map_or(BUF as u64, |m| m.len());
    let mut buf = vec![0u8; (len.min(max).saturating_add(1)).clamp(4096, BUF as u64) as usize];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        n += k as u64;
        if n > max {
            return Err(CopyError::TooLong);
        }
        h.update(&buf[..k]);
        sink(&buf[..k])?;
    }
    Ok((n, *h.finalize().as_bytes()))
}

/// Stores `src` at `dst` as a hard link when both are on one file system
/// (no bytes written: a cold run pays only the hash), else as a copy;
/// returns the size and blake3 as [`copy_hashed`] does.
///
/// The run directory and the cache then share the files' inodes. atc-bt
/// never writes a result file in place (a rerun writes a new directory and
/// renames it; `run.json` and the report are replaced, not rewritten;
/// restored results are copies, see [`restore_file`]),
/// so only an outside edit could change a stored file, and the checksum
/// verified on every restore catches it.
fn link_hashed(src: &Path, dst: &Path) -> Result<(u64, [u8; 32]), CopyError> {
    if std::fs::hard_link(src, dst).is_ok() {
        match hash_file(dst) {
            Ok(v) => return Ok(v),
            Err(_) => {
                let _ = std::fs::remove_file(dst);
            }
        }
    }
    copy_hashed(src, dst, u64::MAX)
}

/// What eviction counts for a stored run value: the files' bytes (from
/// its manifest) plus the value's own; the value's length alone when the
/// manifest does not decode (`cache verify` removes it).
pub(crate) fn entry_size(key: &Key, value: &[u8]) -> u64 {
    let files = codec::open(key, value)
        .and_then(|(h, body)| codec::decode_run(&h, body))
        .map(|f| f.iter().map(|f| f.size).sum::<u64>())
        .unwrap_or(0);
    files.saturating_add(value.len() as u64)
}

/// Why [`Cache::store_files`] gave up: a problem with the caller's files (a
/// warning; the cache stays usable) or with the cache's own disk (the
/// on-disk tier is dropped for the rest of the run, as for other kinds).
enum StoreFail {
    Source(CacheError),
    Cache(CacheError),
}

fn run_io(path: &Path) -> impl Fn(io::Error) -> CacheError + '_ {
    move |source| CacheError::RunFiles {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the bytes of a file stored by [`Cache::store_entry`] come from.
#[derive(Debug, Clone)]
pub enum EntryFile<'a> {
    /// A file: hard-linked into the cache where possible, else copied.
    Path(PathBuf),
    /// Bytes written as they are.
    Bytes(&'a [u8]),
}

/// Why a file could not be restored: the cached copy is bad (the entry is
/// dropped) or the destination cannot be written (the entry is fine).
pub(super) enum RestoreFail {
    Blob,
    Dest(CacheError),
}

impl Cache {
    /// The directory of a run entry's files.
    pub(crate) fn run_dir(&self, key: &Key) -> PathBuf {
        self.runs_dir.join(key.to_hex())
    }

    /// Deletes a run entry's files (absent is fine: most keys have none).
    pub(crate) fn remove_run_dir(&self, key: &Key) {
        let _ = fs::remove_dir_all(self.run_dir(key));
    }

    /// Measured disk usage of the on-disk tier: the store and the files of
    /// run entries.
    pub(crate) fn disk_usage(&self, s: &dyn KvStore) -> u64 {
        s.disk_bytes().saturating_add(dir_bytes(&self.runs_dir))
    }

    /// Stores the files `files` found in `src_dir` as an entry of `kind`
    /// (one with [`Kind::has_files`]) under `key` (from [`super::run_key`]
    /// or [`super::report_key`]).
    ///
    /// Never fails the caller: an unreadable source file or an invalid
    /// name gives one warning; a failure to write the cache (full disk)
    /// also stops the on-disk tier for the rest of the process, like every
    /// other kind. A no-op when the cache is disabled or has no on-disk
    /// tier (L1 only), and when the files alone exceed the disk budget.
    /// Names must be plain file names (no path separators). An entry
    /// already under `key` is replaced. Call [`Cache::flush`] at the end
    /// of the run, as for other kinds, so eviction keeps the budget.
    pub fn store_files(&self, kind: Kind, key: &Key, src_dir: &Path, files: &[&str]) {
        let files: Vec<(&str, EntryFile<'_>)> = files
            .iter()
            .map(|n| (*n, EntryFile::Path(src_dir.join(n))))
            .collect();
        self.store_entry(kind, key, &files);
    }

    /// [`Cache::store_files`] with each file's source given on its own:
    /// a file anywhere (linked or copied) or bytes from memory.
    pub fn store_entry(&self, kind: Kind, key: &Key, files: &[(&str, EntryFile<'_>)]) {
        if !self.enabled || !kind.has_files() {
            return;
        }
        let Some(s) = self.live_l2().cloned() else {
            return;
        };
        match self.store_run_files(&*s, kind, key, files) {
            Ok(true) => self.bump(kind, Counter::Insert),
            Ok(false) => {}
            Err(StoreFail::Source(e)) => self.warn_once(format!(
                "warning: cache: not storing this run's result files: {e}"
            )),
            Err(StoreFail::Cache(e)) => self.l2_failed(&e),
        }
    }

    fn store_run_files(
        &self,
        s: &dyn KvStore,
        kind: Kind,
        key: &Key,
        files: &[(&str, EntryFile<'_>)],
    ) -> Result<bool, StoreFail> {
        for (i, (name, _)) in files.iter().enumerate() {
            if !codec::valid_run_file_name(name)
                || *name == MANIFEST_FILE
                || files[..i].iter().any(|f| f.0 == *name)
            {
                return Err(StoreFail::Source(CacheError::RunFileName {
                    name: (*name).to_string(),
                }));
            }
        }
        // Sizes first: a run bigger than the whole budget would only be
        // evicted again at flush, after costing its copy.
        let mut total = 0u64;
        for (_, src) in files {
            let len = match src {
                EntryFile::Path(p) => fs::metadata(p)
                    .map_err(|e| StoreFail::Source(run_io(p)(e)))?
                    .len(),
                EntryFile::Bytes(b) => b.len() as u64,
            };
            total = total.saturating_add(len);
        }
        if total > self.disk_cap {
            return Ok(false);
        }
        let runs = &self.runs_dir;
        fs::create_dir_all(runs).map_err(|e| StoreFail::Cache(run_io(runs)(e)))?;
        let tmp = runs.join(crate::files::owner::temp_name("", TMP_PREFIX));
        fs::create_dir(&tmp).map_err(|e| StoreFail::Cache(run_io(&tmp)(e)))?;
        let r = self.fill_and_commit(s, kind, key, files, &tmp);
        // After a successful rename there is nothing left to remove here.
        if r.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        r
    }

    fn fill_and_commit(
        &self,
        s: &dyn KvStore,
        kind: Kind,
        key: &Key,
        files: &[(&str, EntryFile<'_>)],
        tmp: &Path,
    ) -> Result<bool, StoreFail> {
        // The files are independent: store them on all cores.
        let copied: Vec<Result<RunFile, StoreFail>> = files
            .par_iter()
            .map(|(name, src)| {
                let dst = tmp.join(name);
                let src = match src {
                    EntryFile::Path(p) => p,
                    EntryFile::Bytes(b) => {
                        return match fs::write(&dst, b) {
                            Ok(()) => Ok(RunFile {
                                name: (*name).to_string(),
                                size: b.len() as u64,
                                hash: *blake3::hash(b).as_bytes(),
                            }),
                            Err(e) => Err(StoreFail::Cache(run_io(&dst)(e))),
                        }
                    }
                };
                match link_hashed(src, &dst) {
                    Ok((size, hash)) => Ok(RunFile {
                        name: (*name).to_string(),
                        size,
                        hash,
                    }),
                    Err(CopyError::OpenSrc(e) | CopyError::Read(e)) => {
                        Err(StoreFail::Source(run_io(src)(e)))
                    }
                    Err(CopyError::CreateDst(e) | CopyError::Write(e)) => {
                        Err(StoreFail::Cache(run_io(&dst)(e)))
                    }
                    Err(CopyError::TooLong) => Err(StoreFail::Source(CacheError::RunFiles {
                        path: src.clone(),
                        source: io::Error::other("file grew while being copied"),
                    })),
                }
            })
            .collect();
        let manifest_files = copied.into_iter().collect::<Result<Vec<_>, _>>()?;
        let created = now_ms();
        let manifest = codec::encode_run(key, kind, created, &manifest_files);
        let mpath = tmp.join(MANIFEST_FILE);
        fs::write(&mpath, &manifest).map_err(|e| StoreFail::Cache(run_io(&mpath)(e)))?;
        let size = manifest_files
            .iter()
            .map(|f| f.size)
            .sum::<u64>()
            .saturating_add(manifest.len() as u64);
        // Drop any previous entry under this key (or an orphan directory)
        // before its directory is replaced: a manifest never points at a
        // directory in flux.
        s.remove(Tree::Values, &key.0).map_err(StoreFail::Cache)?;
        s.remove(Tree::Meta, &key.0).map_err(StoreFail::Cache)?;
        let dir = self.run_dir(key);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreFail::Cache(run_io(&dir)(e))),
        }
        fs::rename(tmp, &dir).map_err(|e| StoreFail::Cache(run_io(&dir)(e)))?;
        if let Err(e) = put_entry(s, key, kind, created, &manifest, size) {
            // Without its manifest the directory is an orphan; remove it
            // now rather than leave it to gc.
            let _ = s.remove(Tree::Values, &key.0);
            let _ = fs::remove_dir_all(&dir);
            return Err(StoreFail::Cache(e));
        }
        Ok(true)
    }

    /// Restores the files of the `kind` entry stored under `key` into `dest_dir`
    /// (created if needed; same-named files are overwritten) and returns
    /// their names, or `None` (counted as a miss) when there is no usable
    /// entry: absent, past its TTL, disabled or L1-only cache, or damaged.
    ///
    /// Every file's size and blake3 are checked while it is copied; on any
    /// mismatch or missing file the entry is counted corrupt and removed,
    /// the files already copied into `dest_dir` are deleted, and `None`
    /// tells the caller to recompute. Restore into a fresh staging
    /// directory and rename it into place, as for a computed run.
    pub fn restore_files(&self, kind: Kind, key: &Key, dest_dir: &Path) -> Option<Vec<String>> {
        if !self.enabled || !kind.has_files() {
            return None;
        }
        match self.restore_run_files(kind, key, dest_dir) {
            Some(names) => {
                self.bump(kind, Counter::HitL2);
                self.note_l2_use(key);
                Some(names)
            }
            None => {
                self.bump(kind, Counter::Miss);
                None
            }
        }
    }

    fn restore_run_files(&self, kind: Kind, key: &Key, dest_dir: &Path) -> Option<Vec<String>> {
        // Absent, expired or corrupt manifests are counted and dropped here.
        let (_, bytes) = self.l2_get(key, kind)?;
        let files = match codec::open(key, &bytes).and_then(|(h, body)| codec::decode_run(&h, body))
        {
            Ok(f) => f,
            Err(_) => {
                self.drop_corrupt(key, kind);
                return None;
            }
        };
        if let Err(e) = fs::create_dir_all(dest_dir) {
            self.warn_once(format!(
                "warning: cache: cannot restore cached results: {}",
                run_io(dest_dir)(e)
            ));
            return None;
        }
        match restore_entry_files(kind, &self.run_dir(key), &files, dest_dir) {
            Ok(()) => return Some(files.into_iter().map(|f| f.name).collect()),
            Err(RestoreFail::Blob) => self.drop_corrupt(key, kind),
            Err(RestoreFail::Dest(e)) => self.warn_once(format!(
                "warning: cache: cannot restore cached results: {e}"
            )),
        }
        None
    }

    /// Whether every file of a run entry is present with its recorded size
    /// and blake3 (`cache verify`).
    pub(crate) fn run_files_intact(&self, key: &Key, files: &[RunFile]) -> bool {
        let dir = self.run_dir(key);
        files
            .par_iter()
            .all(|f| hash_file(&dir.join(&f.name)).is_ok_and(|(n, h)| n == f.size && h == f.hash))
    }

    /// `cache gc`: deletes run directories that no manifest owns and
    /// temporary directories whose writer is gone (or that are older than
    /// an hour). Returns how many were deleted. Other names are left alone.
    ///
    /// gc holds the database lock, so no other process can be writing
    /// here; the pid and age rules only spare a store in progress in this
    /// very process.
    pub(crate) fn sweep_runs_dir(&self, s: &dyn KvStore) -> Result<u64, CacheError> {
        let rd = match fs::read_dir(&self.runs_dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(run_io(&self.runs_dir)(e)),
        };
        let mut removed = 0;
        for entry in rd.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let stale = if let Some(key) = Key::from_hex(name) {
                let v = s.get(Tree::Values, &key.0)?;
                // Owned only by a files manifest under the same key.
                let owned = v.is_some_and(|v| codec::peek(&v).is_some_and(|(k, _)| k.has_files()));
                !owned
            } else if let Some(tag) = name.strip_prefix(TMP_PREFIX) {
                crate::files::owner::is_stale(tag, &entry.path())
            } else {
                false
            };
            if stale {
                let p = entry.path();
                let r = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                r.map_err(run_io(&p))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::MemStore;
    use super::super::{CacheConfig, KindStats};
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        store: Arc<MemStore>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().to_path_buf();
            fs::create_dir_all(root.join("src")).unwrap();
            Fixture {
                _tmp: tmp,
                root,
                store: Arc::new(MemStore::default()),
            }
        }

        fn cache_with(&self, ttl: Duration, disk: u64) -> Cache {
            let mut cfg = CacheConfig::new(self.root.join("cache"));
            cfg.ttl = ttl;
            cfg.disk_bytes = disk;
            Cache::with_store(Some(self.store.clone() as Arc<dyn KvStore>), &cfg)
        }

        fn cache(&self) -> Cache {
            self.cache_with(Duration::from_secs(3600), u64::MAX)
        }

        fn src(&self) -> PathBuf {
            self.root.join("src")
        }

        /// Writes `files` (name, seed, length) of pseudo-random bytes.
        fn write_src(&self, files: &[(&str, u64, usize)]) -> Vec<(String, Vec<u8>)> {
            files
                .iter()
                .map(|&(name, seed, len)| {
                    let mut rng = crate::synthetic::SplitMix64::new(seed);
                    let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                    fs::write(self.src().join(name), &bytes).unwrap();
                    (name.to_string(), bytes)
                })
                .collect()
        }

        fn runs(&self) -> PathBuf {
            self.root.join("cache").join(RUNS_DIR)
        }

        fn runs_entries(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(self.runs())
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        }
    }

    const FILES: [(&str, u64, usize); 3] = [
        ("equity.parquet", 1, 3 * BUF + 17),
        ("metrics.json", 2, 513),
        ("empty.csv", 3, 0),
    ];
    const NAMES: [&str; 3] = ["equity.parquet", "metrics.json", "empty.csv"];

    fn run_stats(c: &Cache) -> KindStats {
        c.stats().this_run[Kind::Run.index()]
    }

    fn key(n: u8) -> Key {
        super::super::run_key(&[b"strategy", &[n]])
    }

    #[test]
    fn store_then_restore_is_byte_identical() {
        let fx = Fixture::new();
        let want = fx.write_src(&FILES);
        let c = fx.cache();
        assert!(c
            .restore_files(Kind::Run, &key(1), &fx.root.join("out0"))
            .is_none());
        c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        assert_eq!(fx.runs_entries(), vec![key(1).to_hex()]);
        c.flush();
        // A fresh process over the same store.
        let c = fx.cache();
        let out = fx.root.join("out");
        let names = c.restore_files(Kind::Run, &key(1), &out).expect("hit");
        assert_eq!(names, NAMES.map(String::from).to_vec());
        for (name, bytes) in &want {
            assert_eq!(&fs::read(out.join(name)).unwrap(), bytes, "{name}");
        }
        // Another key is a miss.
        assert!(c
            .restore_files(Kind::Run, &key(2), &fx.root.join("out2"))
            .is_none());
        let s = run_stats(&c);
        assert_eq!((s.hits_l2, s.misses, s.corrupt), (1, 1, 0));
        // The stats see the entry with its files' bytes.
        let l2 = c.stats().l2.unwrap();
        let u = l2.usage[Kind::Run.index()];
        let files: u64 = want.iter().map(|f| f.1.len() as u64).sum();
        assert_eq!(u.entries, 1);
        assert!(u.bytes > files && u.bytes < files + 1000, "{}", u.bytes);
        assert!(l2.disk_bytes >= files);
        // Counters persist across flush.
        c.flush();
        let total = fx.cache().stats().total[Kind::Run.index()];
        assert_eq!((total.inserts, total.hits_l2, total.misses), (1, 1, 2));
    }

    #[test]
    fn one_flipped_byte_drops_the_entry() {
        let fx = Fixture::new();
        fx.write_src(&FILES);
        let c = fx.cache();
        c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
        let blob = fx.runs().join(key(1).to_hex()).join("equity.parquet");
        let mut bytes = fs::read(&blob).unwrap();
        bytes[2 * BUF + 5] ^= 1;
        fs::write(&blob, &bytes).unwrap();
        let out = fx.root.join("out");
        assert!(c.restore_files(Kind::Run, &key(1), &out).is_none());
        let s = run_stats(&c);
        assert_eq!((s.hits_l2, s.corrupt, s.misses), (0, 1, 1));
        // Entry, its files and whatever was copied out are gone.
        assert!(fx.runs_entries().is_empty());
        assert!(fx.store.get(Tree::Values, &key(1).0).unwrap().is_none());
        assert!(fx.store.get(Tree::Meta, &key(1).0).unwrap().is_none());
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
        // A second lookup is a plain miss.
        assert!(c.restore_files(Kind::Run, &key(1), &out).is_none());
        assert_eq!(run_stats(&c).corrupt, 1);
    }

    #[test]
    fn a_missing_or_truncated_file_drops_the_entry() {
        for damage in ["delete", "truncate", "extend"] {
            let fx = Fixture::new();
            fx.write_src(&FILES);
            let c = fx.cache();
            c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
            let blob = fx.runs().join(key(1).to_hex()).join("metrics.json");
            match damage {
                "delete" => fs::remove_file(&blob).unwrap(),
                "truncate" => fs::write(&blob, b"{}").unwrap(),
                _ => {
                    let mut b = fs::read(&blob).unwrap();
                    b.push(b'\n');
                    fs::write(&blob, b).unwrap();
                }
            }
            assert!(
                c.restore_files(Kind::Run, &key(1), &fx.root.join("out"))
                    .is_none(),
                "{damage}"
            );
            assert_eq!(run_stats(&c).corrupt, 1, "{damage}");
            assert!(fx.runs_entries().is_empty(), "{damage}");
            let left = fs::read_dir(fx.root.join("out")).unwrap().count();
            assert_eq!(left, 0, "{damage}");
        }
    }

    #[test]
    fn a_damaged_manifest_drops_the_entry_and_its_files() {
        let fx = Fixture::new();
        fx.write_src(&FILES);
        let c = fx.cache();
        c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
        assert_eq!(c.corrupt_values_for_test(1), 1);
        assert!(c
            .restore_files(Kind::Run, &key(1), &fx.root.join("out"))
            .is_none());
        assert_eq!(run_stats(&c).corrupt, 1);
        assert!(fx.runs_entries().is_empty());
    }

    /// The store-free path reads the entry's own manifest: it restores
    /// exactly what the store would, and refuses another kind, a damaged
    /// file, a damaged manifest and a past TTL, leaving nothing behind and
    /// the entry in place (the store decides about it).
    #[test]
    fn fast_restore_reads_the_entry_manifest_and_refuses_any_doubt() {
        use super::super::fast::FastCache;
        let fx = Fixture::new();
        let src = fx.write_src(&FILES);
        let c = fx.cache();
        c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
        let mut cfg = CacheConfig::new(fx.root.join("cache"));
        let fc = FastCache::new(&cfg).unwrap();
        let out = fx.root.join("fast");
        let mut names = fc.restore(Kind::Run, &key(1), &out).expect("restored");
        names.sort();
        let mut want: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(names, want);
        for (name, bytes) in &src {
            assert_eq!(&fs::read(out.join(name)).unwrap(), bytes);
        }
        let none = |fc: &FastCache, kind: Kind, tag: &str| {
            let o = fx.root.join(tag);
            assert!(fc.restore(kind, &key(1), &o).is_none(), "{tag}");
            let left = fs::read_dir(&o).map(|d| d.count()).unwrap_or(0);
            assert_eq!(left, 0, "{tag}: files left behind");
        };
        none(&fc, Kind::Report, "kind");
        cfg.ttl = Duration::from_millis(0);
        std::thread::sleep(Duration::from_millis(5));
        none(&FastCache::new(&cfg).unwrap(), Kind::Run, "ttl");
        let dir = fx.runs().join(key(1).to_hex());
        let victim = dir.join(NAMES[0]);
        let mut b = fs::read(&victim).unwrap();
        b[7] ^= 1;
        fs::remove_file(&victim).unwrap();
        fs::write(&victim, &b).unwrap();
        none(&fc, Kind::Run, "file");
        b[7] ^= 1;
        fs::remove_file(&victim).unwrap();
        fs::write(&victim, &b).unwrap();
        assert!(fc
            .restore(Kind::Run, &key(1), &fx.root.join("ok"))
            .is_some());
        let m = dir.join(MANIFEST_FILE);
        let mut mb = fs::read(&m).unwrap();
        mb[20] ^= 1;
        fs::write(&m, &mb).unwrap();
        none(&fc, Kind::Run, "manifest");
        assert_eq!(fx.runs_entries(), vec![key(1).to_hex()]);
    }

    #[test]
    fn expired_entries_are_not_restored_and_take_their_files() {
        let fx = Fixture::new();
        fx.write_src(&FILES);
        let ttl = Duration::from_millis(100);
        let c = fx.cache_with(ttl, u64::MAX);
        c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
        assert!(c
            .restore_files(Kind::Run, &key(1), &fx.root.join("a"))
            .is_some());
        std::thread::sleep(Duration::from_millis(250));
        assert!(c
            .restore_files(Kind::Run, &key(1), &fx.root.join("b"))
            .is_none());
        let s = run_stats(&c);
        assert_eq!((s.hits_l2, s.expired, s.misses), (1, 1, 1));
        assert!(fx.runs_entries().is_empty());
        assert!(!fx.root.join("b").exists());
    }

    #[test]
    fn eviction_under_a_tiny_cap_removes_run_directories() {
        let fx = Fixture::new();
        fx.write_src(&FILES);
        let one: u64 = FILES.iter().map(|f| f.2 as u64).sum();
        let c = fx.cache();
        for n in 0..4 {
            c.store_files(Kind::Run, &key(n), &fx.src(), &NAMES);
        }
        // Key 0 is used again: it outranks the others.
        for _ in 0..3 {
            assert!(c
                .restore_files(Kind::Run, &key(0), &fx.root.join("o"))
                .is_some());
        }
        c.flush();
        assert_eq!(fx.runs_entries().len(), 4);
        // Room for about two entries.
        let c = fx.cache_with(Duration::from_secs(3600), one * 5 / 2);
        c.flush();
        let left = fx.runs_entries();
        assert!(!left.is_empty() && left.len() < 4, "{left:?}");
        assert!(left.contains(&key(0).to_hex()), "{left:?}");
        let u = c.stats().l2.unwrap();
        assert!(u.disk_bytes <= one * 5 / 2, "{}", u.disk_bytes);
        assert_eq!(u.usage[Kind::Run.index()].entries, left.len() as u64);
        // Every evicted key is a clean miss, every survivor a hit.
        for n in 0..4 {
            let hit = c.restore_files(Kind::Run, &key(n), &fx.root.join(format!("r{n}")));
            assert_eq!(hit.is_some(), left.contains(&key(n).to_hex()), "key {n}");
        }
        assert_eq!(run_stats(&c).corrupt, 0);
    }

    #[test]
    fn gc_removes_orphans_and_stale_temporaries_only() {
        let fx = Fixture::new();
        fx.write_src(&FILES);
        let c = fx.cache();
        c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
        c.store_files(Kind::Run, &key(2), &fx.src(), &NAMES);
        // A crash between rename and insert: a directory with no manifest.
        fx.store.remove(Tree::Values, &key(2).0).unwrap();
        fx.store.remove(Tree::Meta, &key(2).0).unwrap();
        // A temporary directory of a dead writer, and one of this process.
        let dead = fx.runs().join(format!("{TMP_PREFIX}4294967295-abcd0"));
        let mine = fx
            .runs()
            .join(format!("{TMP_PREFIX}{}-abcd1", std::process::id()));
        for d in [&dead, &mine] {
            fs::create_dir_all(d).unwrap();
            fs::write(d.join("x"), b"partial").unwrap();
        }
        // Something that is not ours to judge.
        fs::write(fx.runs().join("README"), b"hands off").unwrap();
        let rep = c.gc().unwrap();
        let pid_check = cfg!(target_os = "linux") && Path::new("/proc/self/stat").exists();
        assert_eq!(rep.orphans, if pid_check { 2 } else { 1 });
        let left = fx.runs_entries();
        assert!(left.contains(&key(1).to_hex()));
        assert!(!left.contains(&key(2).to_hex()));
        assert!(left.iter().any(|n| n.ends_with("abcd1")), "{left:?}");
        assert!(left.contains(&"README".to_string()));
        assert_eq!(dead.exists(), !pid_check);
        assert!(c
            .restore_files(Kind::Run, &key(1), &fx.root.join("o"))
            .is_some());
        // A manifest whose directory vanished is dropped by gc too.
        fs::remove_dir_all(fx.runs().join(key(1).to_hex())).unwrap();
        let rep = c.gc().unwrap();
        assert_eq!(rep.corrupt, vec![key(1).to_string()]);
        assert!(fx.store.get(Tree::Values, &key(1).0).unwrap().is_none());
    }

    #[test]
    fn verify_rehashes_files_and_removes_bad_entries() {
        let fx = Fixture::new();
        fx.write_src(&FILES);
        let c = fx.cache();
        c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
        c.store_files(Kind::Run, &key(2), &fx.src(), &NAMES);
        assert!(c.verify().unwrap().corrupt.is_empty());
        let blob = fx.runs().join(key(2).to_hex()).join("metrics.json");
        let mut b = fs::read(&blob).unwrap();
        b[100] ^= 0x80;
        // Stored files may be hard links shared with the source and the
        // other entry: damage this entry's copy only.
        fs::remove_file(&blob).unwrap();
        fs::write(&blob, b).unwrap();
        let rep = c.verify().unwrap();
        assert_eq!(rep.checked, 2);
        assert_eq!(rep.corrupt, vec![key(2).to_string()]);
        assert_eq!(fx.runs_entries(), vec![key(1).to_hex()]);
        assert!(c
            .restore_files(Kind::Run, &key(1), &fx.root.join("o"))
            .is_some());
    }

    /// On one file system a stored file is the run's own file (no bytes
    /// copied), and a restore is a copy (the run may rewrite `run.json`).
    #[cfg(unix)]
    #[test]
    fn store_links_and_restore_copies() {
        use std::os::unix::fs::MetadataExt;
        let fx = Fixture::new();
        fx.write_src(&FILES);
        let c = fx.cache();
        c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        let stored = fx.runs().join(key(1).to_hex()).join(NAMES[0]);
        assert_eq!(ino(&stored), ino(&fx.src().join(NAMES[0])));
        let o = fx.root.join("o");
        fs::create_dir_all(&o).unwrap();
        assert!(c.restore_files(Kind::Run, &key(1), &o).is_some());
        assert_ne!(ino(&o.join(NAMES[0])), ino(&stored));
    }

    #[test]
    fn clear_removes_run_files() {
        let fx = Fixture::new();
        fx.write_src(&FILES);
        let c = fx.cache();
        c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
        drop(c);
        let dir = fx.root.join("cache");
        // Not tagged as a cache: refused, nothing removed.
        assert!(super::super::clear(&dir).is_err());
        assert!(fx.runs().exists());
        super::super::tag_dir(&dir);
        super::super::clear(&dir).unwrap();
        assert!(!fx.runs().exists());
    }

    #[test]
    fn bad_input_warns_and_stores_nothing() {
        let fx = Fixture::new();
        fx.write_src(&FILES);
        let c = fx.cache();
        c.store_files(Kind::Run, &key(1), &fx.src(), &["../escape"]);
        c.store_files(
            Kind::Run,
            &key(2),
            &fx.src(),
            &["metrics.json", "metrics.json"],
        );
        c.store_files(
            Kind::Run,
            &key(3),
            &fx.src(),
            &["metrics.json", "nope.parquet"],
        );
        assert_eq!(c.warnings().len(), 3, "{:?}", c.warnings());
        // The cache stays usable, nothing half-written is left.
        assert!(c.has_l2());
        assert!(fx.runs_entries().is_empty());
        assert_eq!(run_stats(&c).inserts, 0);
        c.store_files(Kind::Run, &key(4), &fx.src(), &NAMES);
        assert_eq!(run_stats(&c).inserts, 1);
    }

    #[test]
    fn a_failing_store_degrades_with_one_warning_and_leaves_no_directory() {
        let fx = Fixture::new();
        fx.write_src(&FILES);
        let c = fx.cache();
        fx.store
            .fail_writes
            .store(true, std::sync::atomic::Ordering::Relaxed);
        c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
        c.store_files(Kind::Run, &key(2), &fx.src(), &NAMES);
        assert!(!c.has_l2());
        assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
        assert!(fx.runs_entries().is_empty());
        assert!(c
            .restore_files(Kind::Run, &key(1), &fx.root.join("o"))
            .is_none());
    }

    #[test]
    fn disabled_and_l1_only_caches_do_nothing() {
        let fx = Fixture::new();
        fx.write_src(&FILES);
        let mut cfg = CacheConfig::new(fx.root.join("cache"));
        let l1_only = Cache::with_store(None, &cfg);
        cfg.enabled = false;
        let off = Cache::with_store(None, &cfg);
        for c in [&l1_only, &off] {
            c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
            assert!(c
                .restore_files(Kind::Run, &key(1), &fx.root.join("o"))
                .is_none());
        }
        assert!(!fx.runs().exists());
        assert_eq!(run_stats(&l1_only).misses, 1);
        assert_eq!(run_stats(&off).misses, 0);
    }

    #[test]
    fn too_big_for_the_budget_is_not_stored() {
        let fx = Fixture::new();
        fx.write_src(&FILES);
        let c = fx.cache_with(Duration::from_secs(3600), 1000);
        c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
        assert!(fx.runs_entries().is_empty());
        assert!(c.warnings().is_empty());
        assert_eq!(run_stats(&c).inserts, 0);
    }

    #[test]
    fn sled_round_trip_across_processes_and_format_change() {
        let fx = Fixture::new();
        let want = fx.write_src(&FILES);
        let dir = fx.root.join("cache");
        let cfg = CacheConfig::new(dir.clone());
        {
            let c = Cache::open(&cfg);
            assert!(c.has_l2(), "{:?}", c.warnings());
            c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
            c.flush();
        }
        {
            let c = Cache::open(&cfg);
            let out = fx.root.join("out");
            assert!(
                c.restore_files(Kind::Run, &key(1), &out).is_some(),
                "{:?}",
                c.warnings()
            );
            for (name, bytes) in &want {
                assert_eq!(&fs::read(out.join(name)).unwrap(), bytes, "{name}");
            }
            assert_eq!(run_stats(&c).hits_l2, 1);
            // As if an older build had written the database.
            let s = c.l2.clone().unwrap();
            s.insert(Tree::Info, b"format", b"atc-bt-cache/1 sled/0.34")
                .unwrap();
            c.flush();
        }
        let c = Cache::open(&cfg);
        assert!(c.has_l2());
        assert!(c.warnings().iter().any(|w| w.contains("moved it to")));
        assert!(!dir.join(RUNS_DIR).exists());
        assert!(c
            .restore_files(Kind::Run, &key(1), &fx.root.join("out2"))
            .is_none());
    }

    #[test]
    fn storing_again_replaces_the_entry() {
        let fx = Fixture::new();
        fx.write_src(&FILES);
        let c = fx.cache();
        c.store_files(Kind::Run, &key(1), &fx.src(), &NAMES);
        let new = fx.write_src(&[("metrics.json", 9, 40)]);
        c.store_files(Kind::Run, &key(1), &fx.src(), &["metrics.json"]);
        let out = fx.root.join("o");
        assert_eq!(
            c.restore_files(Kind::Run, &key(1), &out).unwrap(),
            vec!["metrics.json"]
        );
        assert_eq!(fs::read(out.join("metrics.json")).unwrap(), new[0].1);
        assert_eq!(fx.runs_entries(), vec![key(1).to_hex()]);
        let mut in_dir: Vec<String> = fs::read_dir(fx.runs().join(key(1).to_hex()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        in_dir.sort();
        assert_eq!(in_dir, vec![MANIFEST_FILE, "metrics.json"]);
    }
}
