//! Lookups that open neither the sled store nor the data store: a warm
//! rerun of a command already run pays for its files and nothing else.
//!
//! Opening sled costs ~10 ms (log recovery, a snapshot, a flusher thread)
//! and opening a data store a few more (its manifest and one header per
//! series), while restoring a small run's files takes about one. So a
//! command that can name its result without either does so:
//!
//! - A **memo** (`<cache dir>/memo/<64 hex>`) maps the key of an
//!   *invocation* (everything that fixes the result, with the data named by
//!   its source files' paths, sizes and modification times: the same
//!   evidence the data store itself trusts to skip a rebuild) to the content
//!   key of the run entry it produced, plus the lines the data layer
//!   printed. It is written by the process that holds the store after a run
//!   was stored or restored, and checksummed.
//! - Every file entry's directory holds a copy of its checksummed manifest
//!   ([`run_files::MANIFEST_FILE`]); [`FastCache::restore`] reads it,
//!   checks kind and TTL, and re-hashes every file while copying it, as
//!   the store path does.
//! - Hits are appended to a journal (`<cache dir>/uses.log`, one line per
//!   process, a single `O_APPEND` write); the next process that opens the
//!   store folds them into the hit counters, the last-run statistics and
//!   the eviction scores ([`super::Cache::open`]). A line lost to a crash
//!   only makes an entry look less used.
//!
//! Nothing here ever drops or counts an entry: any doubt (no memo, a
//! missing or changed file, a past TTL, another build's manifest) makes
//! the caller take the normal path, which opens the store and decides
//! with the authority of its manifest. Results are therefore the same
//! bytes either way.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::codec;
use super::key::{Key, Kind};
use super::run_files::{restore_entry_files, MANIFEST_FILE, RUNS_DIR};
use super::{now_ms, CacheConfig};

/// Directory of memos inside the cache directory.
pub const MEMO_DIR: &str = "memo";

/// The hit journal inside the cache directory.
pub const USES_LOG: &str = "uses.log";

/// Prefix of a journal being folded (renamed aside first, so that lines
/// appended meanwhile go to a fresh journal).
pub(crate) const FOLD_PREFIX: &str = "uses.log.fold-";

/// What an invocation key maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memo {
    /// Hex key of the [`Kind::Run`] entry the invocation produced.
    pub run: String,
    /// The caller's name for the inputs (`atc-bt run` names its default
    /// output directory with it).
    pub inputs_hash: String,
    /// Lines the data layer printed on stderr for this data (the store
    /// summary, warnings), shown again on a memo hit.
    pub notes: Vec<String>,
}

/// Reads memos and file entries without opening the store.
#[derive(Debug, Clone)]
pub struct FastCache {
    dir: PathBuf,
    ttl_ms: u64,
}

impl FastCache {
    /// The fast side of the cache `cfg` describes; `None` with `--no-cache`.
    pub fn new(cfg: &CacheConfig) -> Option<FastCache> {
        cfg.enabled.then(|| FastCache {
            dir: cfg.dir.clone(),
            ttl_ms: cfg.ttl.as_millis().min(u128::from(u64::MAX)) as u64,
        })
    }

    /// The memo of invocation key `key`, if present and intact.
    pub fn memo(&self, key: &Key) -> Option<Memo> {
        let bytes = fs::read(memo_path(&self.dir, key)).ok()?;
        decode_memo(key, &bytes)
    }

    /// Copies the files of the `kind` entry `key` into `dest_dir` (created
    /// if needed), verifying each one's size and blake3 against the
    /// entry's manifest, and returns their names; `None` if anything is
    /// absent, expired or different (the files copied so far are removed).
    pub fn restore(&self, kind: Kind, key: &Key, dest_dir: &Path) -> Option<Vec<String>> {
        let dir = self.dir.join(RUNS_DIR).join(key.to_hex());
        let bytes = fs::read(dir.join(MANIFEST_FILE)).ok()?;
        let (h, body) = codec::open(key, &bytes).ok()?;
        if h.kind != kind || now_ms().saturating_sub(h.created_ms) > self.ttl_ms {
            return None;
        }
        let files = codec::decode_run(&h, body).ok()?;
        fs::create_dir_all(dest_dir).ok()?;
        restore_entry_files(kind, &dir, &files, dest_dir).ok()?;
        Some(files.into_iter().map(|f| f.name).collect())
    }

    /// Appends this process's hits to the journal the store folds in
    /// later. Best effort: a cache directory that cannot be written only
    /// loses the statistics of this run.
    pub fn record_hits(&self, hits: &[(Kind, Key)]) {
        if hits.is_empty() {
            return;
        }
        let mut line = now_ms().to_string();
        for (kind, key) in hits {
            line.push(' ');
            line.push_str(kind.name());
            line.push(':');
            line.push_str(&key.to_hex());
        }
        line.push('\n');
        // One write of a short line with O_APPEND: concurrent writers never
        // interleave within a line.
        let _ = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(USES_LOG))
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

fn memo_path(dir: &Path, key: &Key) -> PathBuf {
    dir.join(MEMO_DIR).join(key.to_hex())
}

/// `json \n checksum-hex`: the checksum covers the key and the JSON, so a
/// torn or edited memo, or one under the wrong name, is never used.
fn encode_memo(key: &Key, memo: &Memo) -> Vec<u8> {
    let mut v = serde_json::to_vec(memo).unwrap_or_default();
    let sum = memo_sum(key, &v);
    v.push(b'\n');
    v.extend_from_slice(sum.as_bytes());
    v
}

fn memo_sum(key: &Key, json: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"atc-bt memo\0");
    h.update(&key.0);
    h.update(json);
    h.finalize().to_hex().to_string()
}

fn decode_memo(key: &Key, bytes: &[u8]) -> Option<Memo> {
    let nl = bytes.iter().rposition(|&b| b == b'\n')?;
    let (json, sum) = (&bytes[..nl], &bytes[nl + 1..]);
    if sum != memo_sum(key, json).as_bytes() {
        return None;
    }
    let memo: Memo = serde_json::from_slice(json).ok()?;
    Key::from_hex(&memo.run)?;
    Some(memo)
}

/// Writes the memo of invocation key `key` (a temporary file renamed into
/// place, so a reader sees the old memo or the new one, never half).
pub(crate) fn write_memo(dir: &Path, key: &Key, memo: &Memo) -> io::Result<()> {
    let mdir = dir.join(MEMO_DIR);
    fs::create_dir_all(&mdir)?;
    let tmp = mdir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        &key.to_hex()[..16]
    ));
    let r = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&encode_memo(key, memo))?;
        fs::rename(&tmp, memo_path(dir, key))
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// One journal line: when, and which entries were hit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UseLine {
    pub at_ms: u64,
    pub hits: Vec<(Kind, Key)>,
}

/// Parses a journal; malformed lines (a torn last line) are skipped.
pub(crate) fn parse_uses(text: &str) -> Vec<UseLine> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split(' ');
            let at_ms = it.next()?.parse().ok()?;
            let hits = it
                .map(|h| {
                    let (kind, hex) = h.split_once(':')?;
                    let kind = Kind::ALL.into_iter().find(|k| k.name() == kind)?;
                    Some((kind, Key::from_hex(hex)?))
                })
                .collect::<Option<Vec<_>>>()?;
            (!hits.is_empty()).then_some(UseLine { at_ms, hits })
        })
        .collect()
}

/// Moves the journal aside and returns the contents of every journal
/// waiting to be folded (this one and any left by a folder that crashed),
/// with their paths, which the caller deletes once the lines are applied.
pub(crate) fn take_uses(dir: &Path) -> Vec<(PathBuf, Vec<UseLine>)> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let _ = fs::rename(
        dir.join(USES_LOG),
        dir.join(format!("{FOLD_PREFIX}{}-{nanos}", std::process::id())),
    );
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(FOLD_PREFIX) {
            let text = fs::read_to_string(e.path()).unwrap_or_default();
            out.push((e.path(), parse_uses(&text)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `cache gc`: deletes memos that do not decode or whose run entry is
/// gone, and temporary memo files. Returns how many were deleted.
pub(crate) fn sweep_memos(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir.join(MEMO_DIR)) else {
        return 0;
    };
    let runs = dir.join(RUNS_DIR);
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let keep = Key::from_hex(&name).is_some_and(|key| {
            fs::read(e.path())
                .ok()
                .and_then(|b| decode_memo(&key, &b))
                .is_some_and(|m| runs.join(&m.run).is_dir())
        });
        if !keep && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_round_trips_and_rejects_damage_and_wrong_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let (k, other) = (Key([1; 32]), Key([2; 32]));
        let memo = Memo {
            run: Key([9; 32]).to_hex(),
            inputs_hash: "abc".into(),
            notes: vec!["data: x".into()],
        };
        write_memo(tmp.path(), &k, &memo).unwrap();
        let cfg = CacheConfig::new(tmp.path().to_path_buf());
        let fc = FastCache::new(&cfg).unwrap();
        assert_eq!(fc.memo(&k), Some(memo.clone()));
        assert_eq!(fc.memo(&other), None);
        let bytes = encode_memo(&k, &memo);
        assert!(decode_memo(&other, &bytes).is_none());
        for i in [0, bytes.len() / 2, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(decode_memo(&k, &b).is_none(), "flip at {i}");
        }
        assert!(decode_memo(&k, &bytes[..bytes.len() - 3]).is_none());
        let mut cfg = cfg;
        cfg.enabled = false;
        assert!(FastCache::new(&cfg).is_none());
    }

    #[test]
    fn journal_lines_parse_and_torn_lines_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let fc = FastCache::new(&CacheConfig::new(tmp.path().to_path_buf())).unwrap();
        fc.record_hits(&[(Kind::Run, Key([3; 32])), (Kind::Report, Key([4; 32]))]);
        fc.record_hits(&[]);
        fc.record_hits(&[(Kind::Run, Key([3; 32]))]);
        let mut f = OpenOptions::new()
            .append(true)
            .open(tmp.path().join(USES_LOG))
            .unwrap();
        f.write_all(b"123 run:abc\n99 nokind:00\n17 run:").unwrap();
        let taken = take_uses(tmp.path());
        assert_eq!(taken.len(), 1);
        let lines = &taken[0].1;
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0].hits,
            vec![(Kind::Run, Key([3; 32])), (Kind::Report, Key([4; 32]))]
        );
        assert_eq!(lines[1].hits, vec![(Kind::Run, Key([3; 32]))]);
        assert!(!tmp.path().join(USES_LOG).exists());
    }

    #[test]
    fn gc_keeps_memos_whose_run_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let run = Key([5; 32]);
        let memo = Memo {
            run: run.to_hex(),
            inputs_hash: String::new(),
            notes: vec![],
        };
        write_memo(tmp.path(), &Key([1; 32]), &memo).unwrap();
        write_memo(tmp.path(), &Key([2; 32]), &memo).unwrap();
        fs::write(
            tmp.path().join(MEMO_DIR).join(Key([3; 32]).to_hex()),
            b"junk",
        )
        .unwrap();
        assert_eq!(sweep_memos(tmp.path()), 3);
        write_memo(tmp.path(), &Key([1; 32]), &memo).unwrap();
        fs::create_dir_all(tmp.path().join(RUNS_DIR).join(run.to_hex())).unwrap();
        assert_eq!(sweep_memos(tmp.path()), 0);
        assert!(tmp
            .path()
            .join(MEMO_DIR)
            .join(Key([1; 32]).to_hex())
            .exists());
    }
}
