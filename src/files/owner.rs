//! Temporary names that say which process made them, so that a later
//! command can tell a temporary whose writer is gone (killed with SIGKILL,
//! a power cut) from one that is still being written, and remove only the
//! former.
//!
//! A temporary is named `<base><marker>w<pid>-<start>-<host>-<seq>`:
//!
//! - `pid` and `start` (the process's start time in clock ticks since boot,
//!   from `/proc/<pid>/stat`) identify the writer: a pid reused by a later
//!   process has another start time, so a reused pid never passes for the
//!   writer;
//! - `host` is a hash of the boot id and the pid namespace, because pids
//!   mean nothing across machines or containers: a temporary on a shared
//!   volume written by another machine is never judged by its pid, only by
//!   its age ([`STALE_AGE`]);
//! - `seq` makes names unique within one process.
//!
//! Names of earlier versions (`<marker><pid>` or `<marker><pid>-<n>`)
//! are judged by their pid where the platform tells (gone: stale) and by
//! their age otherwise.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// A temporary whose writer cannot be judged (another machine, another pid
/// namespace, a platform without `/proc`, a reused pid of an old-style
/// name) is stale after this long. No atc-bt command writes one temporary
/// for a day.
pub const STALE_AGE: Duration = Duration::from_secs(24 * 3600);

/// A process that may own temporaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (Linux); 0 where unknown.
    pub start: u64,
    /// Hash of the boot id and pid namespace; 0 where unknown.
    pub host: u32,
}

/// This process.
pub fn me() -> Owner {
    static ME: OnceLock<Owner> = OnceLock::new();
    *ME.get_or_init(|| {
        let pid = std::process::id();
        Owner {
            pid,
            start: start_time(pid).unwrap_or(0),
            host: host_id(),
        }
    })
}

/// The start time of `pid` (field 22 of `/proc/<pid>/stat`); `None` if no
/// such process (or no `/proc`).
fn start_time(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted from the last ')'. Field 3 is the first after it.
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `/proc` tells about processes here.
fn has_proc() -> bool {
    cfg!(target_os = "linux") && Path::new("/proc/self/stat").exists()
}

/// A hash of the boot id and the pid namespace: two processes see the same
/// value exactly when their pids name the same processes.
fn host_id() -> u32 {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if boot.is_empty() {
        return 0;
    }
    let h = blake3::hash(format!("{}|{ns}", boot.trim()).as_bytes());
    let b = h.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]).max(1)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh, unique temporary name: `base` + `marker` + this process's tag.
pub fn temp_name(base: &str, marker: &str) -> String {
    let o = me();
    format!(
        "{base}{marker}w{}-{}-{:08x}-{}",
        o.pid,
        o.start,
        o.host,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// What is known of a temporary's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// It runs (this very process included).
    Running,
    /// It is gone: the temporary is stale.
    Gone,
    /// Cannot tell here: judged by age.
    Unknown,
}

/// The writer of a temporary from what follows its marker (`w<pid>-…` or
/// an old-style `<pid>[-…]`); `None` if the text is not a tag.
pub fn writer_of(tag: &str) -> Option<Writer> {
    if let Some(t) = tag.strip_prefix('w') {
        let mut it = t.split('-');
        let pid: u32 = it.next()?.parse().ok()?;
        let start: u64 = it.next()?.parse().ok()?;
        let host = u32::from_str_radix(it.next()?, 16).ok()?;
        let me = me();
        if host == 0 || host != me.host || start == 0 || !has_proc() {
            return Some(Writer::Unknown);
        }
        return Some(match start_time(pid) {
            Some(s) if s == start => Writer::Running,
            _ => Writer::Gone,
        });
    }
    // Old style: a bare pid, perhaps followed by `-<anything>`.
    let pid_text = tag.split('-').next()?;
    if pid_text.is_empty() || !pid_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pid: u32 = pid_text.parse().ok()?;
    if !has_proc() {
        return Some(Writer::Unknown);
    }
    Some(match start_time(pid) {
        None => Writer::Gone,
        // The pid runs, but it may be a reused one.
        Some(_) => Writer::Unknown,
    })
}

/// Whether the entry at `path`, a temporary with tag `tag`, is stale: its
/// writer is gone, or cannot be judged and the entry is older than
/// [`STALE_AGE`]. `false` for anything that is not a tag.
pub fn is_stale(tag: &str, path: &Path) -> bool {
    match writer_of(tag) {
        None | Some(Writer::Running) => false,
        Some(Writer::Gone) => true,
        Some(Writer::Unknown) => std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AGE),
    }
}

/// Removes the entries of `dir` that are stale temporaries: names for
/// which `tag_of` returns a tag (the text after the marker) that
/// [`is_stale`] judges stale. Returns what was removed; entries that
/// cannot be removed are left (the next sweep retries).
pub fn sweep(dir: &Path, tag_of: impl Fn(&str) -> Option<&str>) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(tag) = tag_of(name) else { continue };
        let path = e.path();
        if !is_stale(tag, &path) {
            continue;
        }
        let r = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        if r.is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// The tag of a name `<anything><marker><tag>` (the last occurrence of the
/// marker).
pub fn tag_after<'a>(name: &'a str, marker: &str) -> Option<&'a str> {
    name.rfind(marker).map(|i| &name[i + marker.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_names_are_running_and_unique() {
        let a = temp_name(".x", ".partial-");
        let b = temp_name(".x", ".partial-");
        assert_ne!(a, b);
        let tag = tag_after(&a, ".partial-").unwrap();
        if has_proc() {
            assert_eq!(writer_of(tag), Some(Writer::Running));
        }
        assert!(!is_stale(tag, Path::new("/nonexistent")));
    }

    #[test]
    fn a_reused_pid_with_another_start_time_is_gone() {
        if !has_proc() {
            return;
        }
        let me = me();
        let tag = format!("w{}-{}-{:08x}-0", me.pid, me.start + 1, me.host);
        assert_eq!(writer_of(&tag), Some(Writer::Gone));
        // Another machine or namespace: judged by age only.
        let other = format!("w{}-{}-{:08x}-0", me.pid, me.start, me.host ^ 1);
        assert_eq!(writer_of(&other), Some(Writer::Unknown));
    }

    #[test]
    fn old_style_names_and_non_tags() {
        assert_eq!(writer_of("abc"), None);
        assert_eq!(writer_of(""), None);
        if has_proc() {
            // pid_max is at most 2^22 on Linux.
            assert_eq!(writer_of("4294967"), Some(Writer::Gone));
            assert_eq!(writer_of("4294967-123"), Some(Writer::Gone));
        }
    }
}
