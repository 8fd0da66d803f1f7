//! Content keys: blake3 over a format version, the kind of result, its
//! parameters in canonical form and the content hash of each input.
//!
//! Keys never include file names or timestamps, so a result computed once is
//! found again by any run and any process that asks for the same maths on
//! the same numbers. Bumping [`FORMAT_VERSION`] changes every key, so old
//! entries are simply never read again (and age out by TTL and eviction).
//!
//! The price series is hashed once per series by the data layer (the
//! `close_hash`); a derived result is keyed by the key of the result it
//! derives from, so no key ever rehashes a price series.

use std::fmt;

use crate::engine::{AtcParams, Family};

/// Version of the key derivation and the value encoding. Bump it whenever
/// the engine's numbers, the key layout or the codec change.
pub const FORMAT_VERSION: u32 = 1;

/// The schema and store version written into the store; a database with
/// another value is moved aside and the run starts cold.
///
/// Version 2 added [`Kind::Run`]: the persisted counters grew a third kind
/// and run entries own files under `<cache dir>/runs/`, which a version 1
/// build would neither account for nor delete. Version 3 added
/// [`Kind::Report`] (a fourth counter) and a `.manifest` file inside every
/// entry directory, which sled-free lookups read. Version 4 removed the
/// `bank` kind (tag 1; no command read or wrote it): the persisted counters
/// shrank to three kinds, and a version 3 database, whose bank entries this
/// build could neither evict nor account for, is moved aside.
pub const STORE_FORMAT: &str = "atc-bt-cache/4 sled/0.34";

/// The kinds of cached results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The average signal and the direction of a series for one full
    /// parameter set.
    Signals,
    /// The finished result files of a whole run (`atc-bt run`), keyed by a
    /// content key the caller derives with [`run_key`]; the value is a
    /// manifest, the files live under `<cache dir>/runs/<key hex>/`.
    Run,
    /// The charts and result-derived HTML of a run's report, for one set of
    /// report options; keyed by [`report_key`] from the run's key. Files
    /// live like a run's, under `<cache dir>/runs/<key hex>/`.
    Report,
}

impl Kind {
    /// Every kind, in tag order.
    pub const ALL: [Kind; Kind::COUNT] = [Kind::Signals, Kind::Run, Kind::Report];

    /// Number of kinds: the length of every per-kind array.
    pub const COUNT: usize = 3;

    /// Whether an entry of this kind is a manifest of files kept under
    /// `<cache dir>/runs/` (removed along with the entry).
    pub fn has_files(self) -> bool {
        matches!(self, Kind::Run | Kind::Report)
    }

    /// The name shown by `cache stats`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Signals => "signals",
            Kind::Run => "run",
            Kind::Report => "report",
        }
    }

    /// The byte stored in keys and values. Tag 1 belonged to the removed
    /// `bank` kind; it is never reused (a signals key still hashes it, see
    /// [`signals_key`]).
    pub fn tag(self) -> u8 {
        match self {
            Kind::Signals => 2,
            Kind::Run => 3,
            Kind::Report => 4,
        }
    }

    /// The kind of a stored tag, if any.
    pub fn from_tag(tag: u8) -> Option<Kind> {
        match tag {
            2 => Some(Kind::Signals),
            3 => Some(Kind::Run),
            4 => Some(Kind::Report),
            _ => None,
        }
    }

    /// Position in [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A 32-byte blake3 content key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Key {
    /// The key of a stored key's bytes, if they have the right length.
    pub fn from_slice(bytes: &[u8]) -> Option<Key> {
        bytes.try_into().ok().map(Key)
    }

    /// All 32 bytes as 64 lowercase hex digits (the name of a run entry's
    /// directory; [`fmt::Display`] shows only the first 8 bytes).
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in &self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    /// The key written by [`Key::to_hex`]; `None` unless `s` is exactly 64
    /// lowercase hex digits (so a stray directory name never parses).
    pub fn from_hex(s: &str) -> Option<Key> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = (digit(b[2 * i])? << 4) | digit(b[2 * i + 1])?;
        }
        Some(Key(out))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A hasher with the common prefix of every key.
fn start(kind: Kind) -> blake3::Hasher {
    start_tag(kind.tag())
}

fn start_tag(tag: u8) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    h.update(b"atc-bt cache key\0");
    h.update(&FORMAT_VERSION.to_le_bytes());
    h.update(&[tag]);
    h
}

fn put_usize(h: &mut blake3::Hasher, v: usize) {
    h.update(&(v as u64).to_le_bytes());
}

/// `to_bits` keeps every distinction the engine could see (`-0.0`, NaN
/// payloads), so two parameter sets share a key only if they are the same
/// numbers bit for bit.
fn put_f64(h: &mut blake3::Hasher, v: f64) {
    h.update(&v.to_bits().to_le_bytes());
}

/// Key of the signal bank of a series: what the 54 cross signals depend on
/// (robustness, the six base lengths) and the series itself. No bank is
/// stored; this key is the first half of [`signals_key`], hashed with the
/// tag of the removed `bank` kind (1) so that signals keys, and the entries
/// they name, did not change when that kind went.
///
/// `close_hash` must identify the exact slice passed as the close (for a
/// sub-span, hash `(series hash, start, end)` once); `bars` (the slice
/// length) is keyed too, as a guard.
pub fn bank_key(close_hash: &str, bars: usize, params: &AtcParams) -> Key {
    let mut h = start_tag(1);
    h.update(params.robustness.name().as_bytes());
    h.update(&[0]);
    for family in Family::ALL {
        put_usize(&mut h, params.base_len(family));
    }
    put_usize(&mut h, close_hash.len());
    h.update(close_hash.as_bytes());
    put_usize(&mut h, bars);
    Key(*h.finalize().as_bytes())
}

/// Key of the average signal and direction: the key of the bank they derive
/// from plus every parameter [`crate::engine::layers`] reads, in a fixed
/// order.
pub fn signals_key(bank: &Key, params: &AtcParams) -> Key {
    let mut h = start(Kind::Signals);
    h.update(&bank.0);
    put_f64(&mut h, params.lambda);
    put_f64(&mut h, params.decay);
    put_usize(&mut h, params.cutout);
    put_f64(&mut h, params.long_threshold);
    put_f64(&mut h, params.short_threshold);
    put_f64(&mut h, params.starting_equity);
    for family in Family::ALL {
        put_f64(&mut h, params.weight(family));
    }
    Key(*h.finalize().as_bytes())
}

/// Builds a [`Kind::Run`] key from canonical bytes fed part by part (the
/// strategy, the window, each series' content hash, …).
///
/// Every part is length-prefixed and the number of parts is hashed at the
/// end, so `["ab", "c"]` and `["a", "bc"]` give different keys: the caller
/// only has to make each part canonical, not the joins between them.
#[derive(Debug, Clone)]
pub struct RunKeyHasher {
    h: blake3::Hasher,
    parts: u64,
}

impl Default for RunKeyHasher {
    fn default() -> Self {
        RunKeyHasher::new()
    }
}

impl RunKeyHasher {
    /// A hasher with the common key prefix (format version, [`Kind::Run`]).
    pub fn new() -> RunKeyHasher {
        RunKeyHasher {
            h: start(Kind::Run),
            parts: 0,
        }
    }

    /// Adds one part.
    pub fn part(&mut self, bytes: &[u8]) -> &mut RunKeyHasher {
        put_usize(&mut self.h, bytes.len());
        self.h.update(bytes);
        self.parts += 1;
        self
    }

    /// The key of the parts added so far.
    pub fn finish(&self) -> Key {
        let mut h = self.h.clone();
        h.update(&self.parts.to_le_bytes());
        Key(*h.finalize().as_bytes())
    }
}

/// The [`Kind::Run`] key of `parts` (see [`RunKeyHasher`]).
pub fn run_key(parts: &[&[u8]]) -> Key {
    let mut h = RunKeyHasher::new();
    for p in parts {
        h.part(p);
    }
    h.finish()
}

/// The [`Kind::Report`] key of the report of the run `run` drawn with the
/// options `options` (their canonical text; the caller includes its
/// renderer's layout version there).
pub fn report_key(run: &Key, options: &[u8]) -> Key {
    let mut h = start(Kind::Report);
    h.update(&run.0);
    put_usize(&mut h, options.len());
    h.update(options);
    Key(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_every_input() {
        let p = AtcParams::default();
        let b = bank_key("abc", 100, &p);
        assert_eq!(b, bank_key("abc", 100, &p));
        assert_ne!(b, bank_key("abd", 100, &p));
        assert_ne!(b, bank_key("abc", 99, &p));
        let p2 = AtcParams {
            kama_len: 29,
            ..p.clone()
        };
        assert_ne!(b, bank_key("abc", 100, &p2));
        // Layer parameters do not change the bank key, but do change signals.
        let p3 = AtcParams {
            lambda: 0.5,
            ..p.clone()
        };
        assert_eq!(b, bank_key("abc", 100, &p3));
        assert_ne!(signals_key(&b, &p), signals_key(&b, &p3));
        let p4 = AtcParams {
            kama_w: 2.0,
            ..p.clone()
        };
        assert_ne!(signals_key(&b, &p), signals_key(&b, &p4));
    }

    #[test]
    fn run_keys_separate_parts_and_kinds() {
        let k = run_key(&[b"ab", b"c"]);
        assert_eq!(k, run_key(&[b"ab", b"c"]));
        assert_ne!(k, run_key(&[b"a", b"bc"]));
        assert_ne!(k, run_key(&[b"ab", b"c", b""]));
        assert_ne!(run_key(&[]), run_key(&[b""]));
        let mut h = RunKeyHasher::new();
        h.part(b"ab").part(b"c");
        assert_eq!(h.finish(), k);
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let k = run_key(&[b"x"]);
        let hex = k.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with(&k.to_string()));
        assert_eq!(Key::from_hex(&hex), Some(k));
        assert_eq!(Key::from_hex(&hex.to_uppercase()), None);
        assert_eq!(Key::from_hex(&hex[..63]), None);
        assert_eq!(Key::from_hex(&format!("{}g", &hex[..63])), None);
        assert_eq!(Key::from_hex(".tmp-1-ab"), None);
    }

    #[test]
    fn kind_tags_round_trip() {
        for (i, k) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_ne!(k.tag(), 1, "tag 1 belonged to the removed bank kind");
            assert_eq!(Kind::from_tag(k.tag()), Some(k));
        }
        assert_eq!(Kind::Run.tag(), 3);
        assert_eq!(Kind::Run.name(), "run");
        assert_eq!(Kind::Report.tag(), 4);
        assert!(Kind::Run.has_files() && Kind::Report.has_files());
        assert!(!Kind::Signals.has_files());
        assert_eq!(Kind::from_tag(1), None);
        assert_eq!(Kind::from_tag(5), None);
    }
}
