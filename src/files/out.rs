//! Output directories and files: atc-bt deletes only what it wrote.
//!
//! A result directory (`run`, `sweep`, `merge`) carries a manifest,
//! `run.json` or `sweep.json`, written last, whose `files` lists every
//! file written before it; a shard's part directory carries `part.json`
//! and the fixed files of its layout. The report's `report.html` belongs
//! to any result directory, and the files in `report_files/` that its
//! listing (`report_files/files.json`, written by every render) names;
//! anything else in `report_files/` is the user's. An existing `--out`
//! is replaced (atomically: the new directory is complete before the old
//! one moves aside) only when it is empty or holds nothing but what its
//! manifest owns; anything else in the way is refused with the entries
//! named and the choice offered (`--force`, or another path). `--force`
//! replaces whatever is there, except a directory that holds the current
//! directory (deleting the ground under the user's feet is never asked
//! for).
//!
//! Temporaries (`.<name>.atc-bt-partial-<tag>`, `.<name>.atc-bt-old-<tag>`,
//! see [`super::owner`]) of writers that are gone are removed by the next
//! command that writes beside them; nothing else beside `--out` is ever
//! touched.

use std::path::{Path, PathBuf};

use super::owner;

/// Marker of a directory or file being written.
pub const PARTIAL: &str = ".atc-bt-partial-";
/// Marker of a directory being replaced.
pub const OLD: &str = ".atc-bt-old-";

// The files of a part directory (`run --shard`, `sweep --shard`),
// shared cash's `book.parquet` included: defined once, by the part.
use crate::shard::part::{PART_FILES, PART_JSON};

/// What format 1 result directories (no `files` list) held.
const LEGACY_FILES: [&str; 11] = [
    "run.json",
    "metrics.json",
    "equity.parquet",
    "signals.parquet",
    "trades.parquet",
    "memory.parquet",
    "sweep.json",
    "results.parquet",
    "best_equity.parquet",
    "walk_forward.json",
    "walk_forward_equity.parquet",
];

/// The report's entries, which belong to every result directory (the
/// files inside `report_files/` only as far as its listing names them).
pub const REPORT_ENTRIES: [&str; 2] = ["report.html", REPORT_FILES];

/// The report's directory of charts.
pub const REPORT_FILES: &str = "report_files";

/// The listing a report writes into `report_files/`: the names of the
/// files it wrote there (`{"files": [...]}`).
pub const REPORT_LISTING: &str = "files.json";

/// Errors of output paths.
#[derive(Debug, thiserror::Error)]
pub enum OutError {
    /// Something atc-bt did not write is in the way.
    #[error("{}: refusing to replace it: it holds {} atc-bt did not write ({}){}\n  hint: choose another path, move those files away, or pass --force to replace the directory with everything in it", dir.display(), count(.entries.len()), .entries.iter().take(8).map(|e| crate::term::quote(e)).collect::<Vec<_>>().join(", "), if .entries.len() > 8 { format!(" and {} more", .entries.len() - 8) } else { String::new() })]
    InTheWay {
        /// The directory.
        dir: PathBuf,
        /// Its entries that atc-bt does not own.
        entries: Vec<String>,
    },
    /// The path exists and is not a directory atc-bt could have written.
    #[error("{}: refusing to replace it: it is {what}, not a directory atc-bt wrote\n  hint: choose another path, or pass --force to replace it", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
        /// What it is ("a file", "a symbolic link to …", "a device").
        what: String,
    },
    /// The directory `--out` goes into cannot be written.
    #[error("{}: cannot write it: {source} (in {})\n  hint: choose an --out in a directory you can write", path.display(), parent.display())]
    Unwritable {
        /// The output path.
        path: PathBuf,
        /// The directory it goes into.
        parent: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An existing output file atc-bt did not write.
    #[error("{}: refusing to overwrite it: atc-bt did not write this file\n  hint: choose another path, or pass --force to overwrite it", path.display())]
    ForeignFile {
        /// The file.
        path: PathBuf,
    },
    /// An existing output file, of a kind that cannot record who wrote it
    /// (a CSV): replaced only with `--force`.
    #[error("{}: refusing to overwrite an existing file (nothing in a CSV proves that atc-bt wrote it)\n  hint: choose another path, or pass --force to overwrite it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A device, named pipe or socket: never replaced.
    #[error("{}: refusing to replace it even with --force: it is {what}\n  hint: choose another path", path.display())]
    Special {
        /// The path.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// `--force` on a directory holding the current directory.
    #[error("{}: refusing to replace it even with --force: it holds the current directory", path.display())]
    HoldsCwd {
        /// The path.
        path: PathBuf,
    },
    /// The output directory holds the command's own input.
    #[error("{}: refusing to write results here: it holds {}, which this command reads\n  hint: choose an --out outside it", path.display(), input.display())]
    HoldsInput {
        /// The output path.
        path: PathBuf,
        /// The input it holds.
        input: PathBuf,
    },
    /// A file-system error.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 entry".into()
    } else {
        format!("{n} entries")
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutError + '_ {
    move |source| OutError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The names an atc-bt directory's manifest owns, with the manifest's own
/// name; `None` if `dir` holds no atc-bt manifest.
fn owned_names(dir: &Path) -> Option<Vec<String>> {
    for manifest in ["run.json", "sweep.json"] {
        let Ok(text) = std::fs::read(dir.join(manifest)) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
            continue;
        };
        if v.get("atc_bt_version").is_none() || v.get("format_version").is_none() {
            continue;
        }
        let mut names: Vec<String> = match v.get("files").and_then(|f| f.as_array()) {
            Some(list) => list
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            None => LEGACY_FILES
                .iter()
                .map(|s| s.to_string())
                .chain(
                    // Format 1 sweeps wrote one heatmap per sample.
                    ["full", "in", "out"]
                        .iter()
                        .map(|s| format!("heatmap_{s}.json")),
                )
                .collect(),
        };
        names.push(manifest.to_string());
        names.extend(REPORT_ENTRIES.iter().map(|s| s.to_string()));
        return Some(names);
    }
    let part: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(PART_JSON)).ok()?).ok()?;
    (part.get("format_version").is_some() && part.get("kind").is_some())
        .then(|| PART_FILES.iter().map(|s| s.to_string()).collect())
}

/// Whether `dir` is a result directory atc-bt wrote (a `run.json` or
/// `sweep.json` of atc-bt's), so that its report may be (re)drawn there.
pub fn is_result_dir(dir: &Path) -> bool {
    owned_names(dir).is_some() && !dir.join(PART_JSON).exists()
}

/// The entries of `dir` that atc-bt did not write (sorted); empty when `dir`
/// is absent, empty, or holds only what its manifest owns. A path that is
/// not a directory is one foreign entry: itself.
pub fn foreign_entries(dir: &Path) -> Result<Vec<String>, OutError> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    if !meta.is_dir() {
        return Err(OutError::NotADirectory {
            path: dir.to_path_buf(),
            what: what_is(dir, &meta),
        });
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        return Ok(names);
    }
    let Some(owned) = owned_names(dir) else {
        return Ok(names);
    };
    names.retain(|n| !owned.contains(n) || n == REPORT_FILES);
    if names.iter().any(|n| n == REPORT_FILES) {
        names.retain(|n| n != REPORT_FILES);
        names.extend(foreign_report_files(dir)?);
        names.sort();
    }
    Ok(names)
}

/// The entries of `dir/report_files` that no report of atc-bt's wrote
/// (those its listing does not name, and anything that is not a plain
/// file), as `report_files/<name>`, sorted; `report_files` itself if it is
/// not a directory. Empty when it is absent.
pub fn foreign_report_files(dir: &Path) -> Result<Vec<String>, OutError> {
    let files = dir.join(REPORT_FILES);
    let meta = match std::fs::symlink_metadata(&files) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&files)(e)),
    };
    if !meta.is_dir() {
        return Ok(vec![REPORT_FILES.to_string()]);
    }
    let listed = report_listing(dir);
    let mut foreign: Vec<String> = std::fs::read_dir(&files)
        .map_err(io(&files))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let plain = e.file_type().is_ok_and(|t| t.is_file());
            let ours = plain
                && (name == REPORT_LISTING
                    || listed.contains(&name)
                    || listing_temporary(&name).is_some());
            (!ours).then(|| format!("{REPORT_FILES}/{name}"))
        })
        .collect();
    foreign.sort();
    Ok(foreign)
}

/// The tag of a temporary of the listing (`.files.json.atc-bt-partial-<tag>`,
/// left by a render killed while rewriting it); `None` for any other name.
fn listing_temporary(name: &str) -> Option<&str> {
    let tag = name.strip_prefix(&format!(".{REPORT_LISTING}{PARTIAL}"))?;
    owner::writer_of(tag).map(|_| tag)
}

/// Writes the listing of `files_dir` (a `report_files/`) naming `names`,
/// atomically (a temporary renamed over it), so that a render killed at
/// any moment leaves either the old listing or the new one, never a torn
/// one. A render lists each file *before* writing it: whatever a killed
/// or failed render left in `report_files/` is listed, so the next command
/// knows it as atc-bt's and replaces it. Stale temporaries of the listing
/// go first.
pub fn write_report_listing(files_dir: &Path, names: &[String]) -> std::io::Result<()> {
    owner::sweep(files_dir, listing_temporary);
    let mut json = serde_json::to_vec_pretty(&serde_json::json!({ "files": names }))
        .map_err(std::io::Error::other)?;
    json.push(b'\n');
    let tmp = files_dir.join(owner::temp_name(&format!(".{REPORT_LISTING}"), PARTIAL));
    let r = std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, files_dir.join(REPORT_LISTING)));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// The names the listing in `dir/report_files` holds (none if it is
/// absent or unreadable). Names with a path separator are never listed.
pub fn report_listing(dir: &Path) -> Vec<String> {
    let path = dir.join(REPORT_FILES).join(REPORT_LISTING);
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    v.get("files")
        .and_then(|f| f.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .filter(|n| !n.contains(['/', '\\']) && !n.starts_with('.') && !n.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// What a path that is not a directory is, in words.
fn what_is(path: &Path, meta: &std::fs::Metadata) -> String {
    let t = meta.file_type();
    if t.is_symlink() {
        return match std::fs::read_link(path) {
            Ok(to) => format!("a symbolic link (to {})", to.display()),
            Err(_) => "a symbolic link".into(),
        };
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() || t.is_block_device() {
            return "a device".into();
        }
        if t.is_fifo() {
            return "a named pipe".into();
        }
        if t.is_socket() {
            return "a socket".into();
        }
    }
    "a file".into()
}

/// Whether `path` holds the current directory (or is it).
fn holds_cwd(path: &Path) -> bool {
    let (Ok(cwd), Ok(p)) = (std::env::current_dir(), std::fs::canonicalize(path)) else {
        return false;
    };
    let cwd = std::fs::canonicalize(&cwd).unwrap_or(cwd);
    cwd.starts_with(&p)
}

/// Refuses an `out` that is, or holds, `input` (the data a command reads):
/// replacing it would delete the input, even with `--force`.
pub fn check_not_holding(out: &Path, input: &Path) -> Result<(), OutError> {
    let (o, i) = (
        crate::locate::canonical(out),
        crate::locate::canonical(input),
    );
    if i.starts_with(&o) {
        return Err(OutError::HoldsInput {
            path: out.to_path_buf(),
            input: input.to_path_buf(),
        });
    }
    Ok(())
}

/// Checks that the directory `out` may be replaced: absent, empty, an
/// atc-bt directory holding only what it owns, or anything with `force`
/// (except a directory holding the current directory).
pub fn check_replaceable(out: &Path, force: bool) -> Result<(), OutError> {
    if force {
        if let Ok(meta) = std::fs::symlink_metadata(out) {
            let t = meta.file_type();
            if !(t.is_dir() || t.is_file() || t.is_symlink()) {
                return Err(OutError::Special {
                    path: out.to_path_buf(),
                    what: what_is(out, &meta),
                });
            }
        }
        if holds_cwd(out) {
            return Err(OutError::HoldsCwd {
                path: out.to_path_buf(),
            });
        }
        return Ok(());
    }
    let foreign = foreign_entries(out)?;
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(OutError::InTheWay {
            dir: out.to_path_buf(),
            entries: foreign,
        })
    }
}

/// The parent of `out` ("." for a bare name).
pub fn parent_of(out: &Path) -> &Path {
    out.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn name_of(out: &Path) -> String {
    out.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into())
}

/// An exclusive lock on the directory that holds an output directory,
/// taken by [`lock_out`] and released when dropped.
#[must_use = "the lock is held until dropped"]
pub struct OutLock {
    _dir: Option<std::fs::File>,
}

/// Locks the directory that holds `out`, waiting while another process
/// holds it. A job holds it from moving its results into `out` until their
/// report is drawn there, so two jobs writing the same `out` take turns:
/// `out` always ends with one job's results and that job's report, never
/// one's results under the other's report (attack F5 of round 33). Jobs
/// writing other directories beside it wait only while one of them commits
/// and draws its report. Where the directory cannot be opened or locked
/// (a platform or file system without locks) nothing is locked. Take it
/// once per job: a second lock of the same directory in one process waits
/// for the first.
pub fn lock_out(out: &Path) -> OutLock {
    // The directory that holds `out` as the file system names it: `.`,
    // `..` and links resolved, so `report .` inside a run directory and a
    // job writing it lock the same one.
    let holder = match out.file_name() {
        Some(_) => std::fs::canonicalize(parent_of(out)).ok(),
        None => std::fs::canonicalize(out)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf)),
    };
    // Only a directory: opening a FIFO would block (attack G3).
    let dir = holder
        .filter(|h| std::fs::metadata(h).is_ok_and(|m| m.is_dir()))
        .and_then(|h| std::fs::File::open(h).ok())
        .filter(|d| d.lock().is_ok());
    OutLock { _dir: dir }
}

/// Removes the stale temporaries (`.<name>.atc-bt-partial-<tag>`,
/// `.<name>.atc-bt-old-<tag>`) in `dir` whose writers are gone; returns
/// them.
pub fn sweep_stale(dir: &Path) -> Vec<PathBuf> {
    owner::sweep(dir, |name| {
        if !name.starts_with('.') {
            return None;
        }
        owner::tag_after(name, PARTIAL).or_else(|| owner::tag_after(name, OLD))
    })
}

/// Prepares to write the directory `out`: checks it may be replaced
/// ([`check_replaceable`]), removes stale temporaries beside it, and
/// creates the empty temporary sibling `.<name>.atc-bt-partial-<tag>` to write
/// into. [`commit_dir`] renames it to `out`.
pub fn begin_dir(out: &Path, force: bool) -> Result<PathBuf, OutError> {
    // Not while another job commits `out` or draws its report there: its
    // charts are not yet in the listing and would read as foreign (attack
    // G1). The caller must not hold the lock ([`lock_out`]).
    {
        let _turn = lock_out(out);
        check_replaceable(out, force)?;
    }
    let parent = parent_of(out);
    let unwritable = |source| OutError::Unwritable {
        path: out.to_path_buf(),
        parent: parent.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(parent).map_err(unwritable)?;
    sweep_stale(parent);
    let tmp = parent.join(owner::temp_name(&format!(".{}", name_of(out)), PARTIAL));
    std::fs::create_dir(&tmp).map_err(unwritable)?;
    Ok(tmp)
}

/// The sorted names of the files in `tmp` that a manifest lists (all but
/// the report's entries).
pub fn listing(tmp: &Path) -> Result<Vec<String>, OutError> {
    let mut names: Vec<String> = std::fs::read_dir(tmp)
        .map_err(io(tmp))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !REPORT_ENTRIES.contains(&n.as_str()))
        .collect();
    names.sort();
    Ok(names)
}

/// Renames the complete directory `tmp` to `out`, replacing an existing
/// `out` only if [`check_replaceable`] allows (checked again: something may
/// have appeared meanwhile). On refusal `tmp` is left for the caller.
pub fn commit_dir(tmp: &Path, out: &Path, force: bool) -> Result<(), OutError> {
    check_replaceable(out, force)?;
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return std::fs::rename(tmp, out).map_err(io(out));
        }
        Err(e) => return Err(io(out)(e)),
        Ok(_) => {}
    }
    let old = parent_of(out).join(owner::temp_name(&format!(".{}", name_of(out)), OLD));
    std::fs::rename(out, &old).map_err(io(out))?;
    if let Err(e) = std::fs::rename(tmp, out) {
        // Put the old one back: never leave the user with neither.
        let _ = std::fs::rename(&old, out);
        return Err(io(out)(e));
    }
    let r = if old.is_dir() {
        std::fs::remove_dir_all(&old)
    } else {
        std::fs::remove_file(&old)
    };
    r.map_err(io(&old))
}

/// Checks that the output file `out` may be overwritten: absent, written by
/// atc-bt (`ours` says so from a marker atc-bt always writes into such a
/// file, e.g. Parquet key-value metadata), or anything with `force`. With
/// `ours` = `None` (a format that carries no marker), only absent or
/// `force`.
pub fn check_file(
    out: &Path,
    force: bool,
    ours: Option<&dyn Fn(&Path) -> bool>,
) -> Result<(), OutError> {
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(out)(e)),
        Ok(m) if m.is_dir() => Err(OutError::ForeignFile {
            path: out.to_path_buf(),
        }),
        Ok(_) if force || ours.is_some_and(|ours| ours(out)) => Ok(()),
        Ok(_) if ours.is_none() => Err(OutError::Exists {
            path: out.to_path_buf(),
        }),
        Ok(_) => Err(OutError::ForeignFile {
            path: out.to_path_buf(),
        }),
    }
}

/// Writes the file `out` atomically: `write` fills a temporary sibling,
/// which is renamed over `out` once complete (synced). The caller checks
/// ownership first ([`check_file`]). Stale temporaries beside it go.
pub fn write_file<E>(
    out: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), FileWriteError<E>> {
    let parent = parent_of(out);
    let unwritable = |source| {
        FileWriteError::Out(OutError::Unwritable {
            path: out.to_path_buf(),
            parent: parent.to_path_buf(),
            source,
        })
    };
    std::fs::create_dir_all(parent).map_err(unwritable)?;
    sweep_stale(parent);
    let tmp = parent.join(owner::temp_name(&format!(".{}", name_of(out)), PARTIAL));
    // Created here first, so that an unwritable directory is reported
    // naming `out`, not the hidden temporary.
    std::fs::File::create(&tmp).map_err(unwritable)?;
    let r = write(&tmp).map_err(FileWriteError::Write).and_then(|()| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, out))
            .map_err(|e| FileWriteError::Out(io(out)(e)))
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Why [`write_file`] failed: the caller's writer, or the rename.
#[derive(Debug)]
pub enum FileWriteError<E> {
    /// The writer failed.
    Write(E),
    /// Moving the file into place failed.
    Out(OutError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `lock_out(path)` waits while `held` is held (in another
    /// thread: a second lock of the same directory waits in one process
    /// too).
    fn waits_for(held: OutLock, path: &Path) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        let path = path.to_path_buf();
        let t = std::thread::spawn(move || {
            let _l = lock_out(&path);
            let _ = tx.send(());
        });
        let waited = rx
            .recv_timeout(std::time::Duration::from_millis(300))
            .is_err();
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .map_or_else(|_| waited, |()| waited);
        t.join().unwrap();
        waited
    }

    #[test]
    fn out_lock_is_the_same_whatever_the_spelling_and_never_opens_a_fifo() {
        // Attack G2: `report .` inside the directory, or through a link,
        // took another lock than the job writing it.
        let t = tempfile::tempdir().unwrap();
        let runs = t.path().join("runs");
        std::fs::create_dir_all(runs.join("a")).unwrap();
        std::os::unix::fs::symlink(&runs, t.path().join("link")).unwrap();
        let a = runs.join("a");
        assert!(waits_for(lock_out(&a), &t.path().join("link").join("a")));
        assert!(waits_for(lock_out(&a), &runs.join("a/../b")));
        assert!(waits_for(lock_out(&a), &a.join(".")));
        // A path ending in `..` names the directory it leads to (`report
        // .` inside `runs/a` is `runs/a`, held by `runs`).
        std::fs::create_dir_all(a.join("sub")).unwrap();
        assert!(waits_for(lock_out(&a), &a.join("sub").join("..")));
        assert!(!waits_for(lock_out(&a), &a.join("..")));
        // Other holders: no wait.
        assert!(!waits_for(lock_out(&a), &a.join("inner")));
        // Attack G3: a FIFO where the holder should be is not opened
        // (opening it would block until a writer comes).
        let fifo = t.path().join("ff");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let (tx, rx) = std::sync::mpsc::channel();
            let inside = fifo.join("x");
            std::thread::spawn(move || {
                let _l = lock_out(&inside);
                let _ = tx.send(());
            });
            assert!(
                rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok(),
                "lock_out opened the FIFO"
            );
        }
    }

    #[test]
    fn foreign_entries_name_what_is_not_owned() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("out");
        assert!(foreign_entries(&d).unwrap().is_empty());
        std::fs::create_dir(&d).unwrap();
        assert!(foreign_entries(&d).unwrap().is_empty());
        std::fs::write(d.join("thesis.txt"), b"mine").unwrap();
        assert_eq!(foreign_entries(&d).unwrap(), vec!["thesis.txt"]);
        std::fs::write(
            d.join("run.json"),
            br#"{"format_version": 2, "atc_bt_version": "x", "files": ["metrics.json"]}"#,
        )
        .unwrap();
        std::fs::write(d.join("metrics.json"), b"{}").unwrap();
        std::fs::create_dir(d.join("report_files")).unwrap();
        assert_eq!(foreign_entries(&d).unwrap(), vec!["thesis.txt"]);
        std::fs::remove_file(d.join("thesis.txt")).unwrap();
        assert!(foreign_entries(&d).unwrap().is_empty());
        // A run.json that is not atc-bt's owns nothing.
        std::fs::write(d.join("run.json"), br#"{"x": 1}"#).unwrap();
        assert_eq!(foreign_entries(&d).unwrap().len(), 3);
    }

    #[test]
    fn commit_replaces_only_what_atc_bt_owns() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("thesis.txt"), b"mine").unwrap();
        let err = begin_dir(&out, false).unwrap_err().to_string();
        assert!(
            err.contains("thesis.txt") && err.contains("--force"),
            "{err}"
        );
        assert!(out.join("thesis.txt").exists());
        let tmp = begin_dir(&out, true).unwrap();
        std::fs::write(tmp.join("x"), b"1").unwrap();
        commit_dir(&tmp, &out, true).unwrap();
        assert!(out.join("x").exists() && !out.join("thesis.txt").exists());
        assert!(!tmp.exists());
    }
}
