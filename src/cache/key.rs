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
pub const STORE_FORMAT: &str = "atc-bt-cache/1 sled/0.34";

/// The kinds of cached results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The 54 cross signals of a series (the part of a [`crate::engine::SignalBank`]
    /// that costs; `r` is recomputed from the close on a hit).
    Bank,
    /// The average signal and the direction of a series for one full
    /// parameter set.
    Signals,
}

impl Kind {
    /// Every kind, in tag order.
    pub const ALL: [Kind; 2] = [Kind::Bank, Kind::Signals];

    /// The name shown by `cache stats`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bank => "bank",
            Kind::Signals => "signals",
        }
    }

    /// The byte stored in keys and values.
    pub fn tag(self) -> u8 {
        match self {
            Kind::Bank => 1,
            Kind::Signals => 2,
        }
    }

    /// The kind of a stored tag, if any.
    pub fn from_tag(tag: u8) -> Option<Kind> {
        match tag {
            1 => Some(Kind::Bank),
            2 => Some(Kind::Signals),
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
}

/// A hasher with the common prefix of every key.
fn start(kind: Kind) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    h.update(b"atc-bt cache key\0");
    h.update(&FORMAT_VERSION.to_le_bytes());
    h.update(&[kind.tag()]);
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
/// (robustness, the six base lengths) and the series itself.
///
/// `close_hash` must identify the exact slice passed as the close (for a
/// sub-span, hash `(series hash, start, end)` once); `bars` (the slice
/// length) is keyed too, as a guard.
pub fn bank_key(close_hash: &str, bars: usize, params: &AtcParams) -> Key {
    let mut h = start(Kind::Bank);
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
}
