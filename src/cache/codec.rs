//! Compact value encoding with a checksum verified on every read.
//!
//! Layout of every stored value (little endian):
//!
//! ```text
//! "AC" | format u8 | kind u8 | created_ms u64 | bars u32 | body … | checksum [u8; 8]
//! ```
//!
//! The checksum is the first 8 bytes of blake3 over the *key* and every
//! byte before it, so a flipped bit, a truncated value and a value stored
//! under the wrong key are all detected. Signals (-1, 0, 1) are stored per
//! series either run-length encoded (cross signals persist, so a series is
//! a few dozen runs) or packed four to a byte, whichever is smaller.
//! `f64`s are stored as raw bits, so decoding
//! is bit-identical.
//!
//! A [`Kind::Run`] or [`Kind::Report`] value is a manifest of the entry's files (the files
//! themselves live outside the store): `count` in the header's `bars`
//! field, then per file `name_len varint | name utf-8 | size u64 |
//! blake3 [u8; 32]`.

use super::key::{Key, Kind, FORMAT_VERSION};

/// Bytes before the body.
pub const HEADER_LEN: usize = 2 + 1 + 1 + 8 + 4;
/// Bytes of the trailing checksum.
pub const CHECKSUM_LEN: usize = 8;

/// Why a stored value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Shorter than a header and a checksum.
    #[error("value truncated ({0} bytes)")]
    Truncated(usize),
    /// The magic or the format byte is wrong.
    #[error("bad magic or format byte")]
    BadMagic,
    /// The checksum does not match the bytes.
    #[error("checksum mismatch")]
    Checksum,
    /// The kind byte is unknown or not the kind asked for.
    #[error("unexpected kind tag {0}")]
    BadKind(u8),
    /// The body does not decode to the announced shape.
    #[error("malformed body: {0}")]
    Body(&'static str),
}

/// The checked header of a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the value holds.
    pub kind: Kind,
    /// When it was written (ms since the Unix epoch).
    pub created_ms: u64,
    /// Length of every series in it.
    pub bars: usize,
}

fn checksum(key: &Key, bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut h = blake3::Hasher::new();
    h.update(&key.0);
    h.update(bytes);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&h.finalize().as_bytes()[..CHECKSUM_LEN]);
    out
}

fn begin(kind: Kind, created_ms: u64, bars: usize, capacity: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + capacity + CHECKSUM_LEN);
    v.extend_from_slice(b"AC");
    v.push(FORMAT_VERSION as u8);
    v.push(kind.tag());
    v.extend_from_slice(&created_ms.to_le_bytes());
    v.extend_from_slice(&(bars.min(u32::MAX as usize) as u32).to_le_bytes());
    v
}

fn finish(key: &Key, mut v: Vec<u8>) -> Vec<u8> {
    let c = checksum(key, &v);
    v.extend_from_slice(&c);
    v
}

/// Checks length, magic and checksum; returns the header and the body.
pub fn open<'a>(key: &Key, bytes: &'a [u8]) -> Result<(Header, &'a [u8]), CodecError> {
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(CodecError::Truncated(bytes.len()));
    }
    let (data, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if &data[..2] != b"AC" || data[2] != FORMAT_VERSION as u8 {
        return Err(CodecError::BadMagic);
    }
    if checksum(key, data) != sum {
        return Err(CodecError::Checksum);
    }
    let kind = Kind::from_tag(data[3]).ok_or(CodecError::BadKind(data[3]))?;
    let mut created = [0u8; 8];
    created.copy_from_slice(&data[4..12]);
    let mut bars = [0u8; 4];
    bars.copy_from_slice(&data[12..16]);
    let header = Header {
        kind,
        created_ms: u64::from_le_bytes(created),
        bars: u32::from_le_bytes(bars) as usize,
    };
    Ok((header, &data[HEADER_LEN..]))
}

/// Reads only the creation time and kind, without verifying (for stats
/// and eviction scans; a read for use always goes through [`open`]).
pub fn peek(bytes: &[u8]) -> Option<(Kind, u64)> {
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN || &bytes[..2] != b"AC" {
        return None;
    }
    let kind = Kind::from_tag(bytes[3])?;
    let mut created = [0u8; 8];
    created.copy_from_slice(&bytes[4..12]);
    Some((kind, u64::from_le_bytes(created)))
}

const ENC_PACKED: u8 = 0;
const ENC_RLE: u8 = 1;
const ENC_RAW: u8 = 2;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> Result<u64, CodecError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or(CodecError::Body("varint past end"))?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CodecError::Body("varint too long"))
}

/// Appends one i8 series (values -1, 0, 1 expected) in its smallest form.
fn put_i8s(out: &mut Vec<u8>, s: &[i8]) {
    if s.iter().any(|&x| !(-1..=1).contains(&x)) {
        out.push(ENC_RAW);
        out.extend(s.iter().map(|&x| x as u8));
        return;
    }
    let mut rle = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let v = s[i];
        let mut j = i + 1;
        while j < s.len() && s[j] == v {
            j += 1;
        }
        rle.push((v + 1) as u8);
        put_varint(&mut rle, (j - i) as u64);
        i = j;
    }
    let packed_len = s.len().div_ceil(4);
    if rle.len() < packed_len {
        out.push(ENC_RLE);
        put_varint(out, rle.len() as u64);
        out.extend_from_slice(&rle);
    } else {
        out.push(ENC_PACKED);
        for chunk in s.chunks(4) {
            let mut b = 0u8;
            for (k, &x) in chunk.iter().enumerate() {
                b |= ((x + 1) as u8) << (2 * k);
            }
            out.push(b);
        }
    }
}

fn get_i8s(b: &[u8], pos: &mut usize, n: usize) -> Result<Vec<i8>, CodecError> {
    let tag = *b.get(*pos).ok_or(CodecError::Body("series tag past end"))?;
    *pos += 1;
    match tag {
        ENC_RAW => {
            let s = b
                .get(*pos..*pos + n)
                .ok_or(CodecError::Body("raw series past end"))?;
            *pos += n;
            Ok(s.iter().map(|&x| x as i8).collect())
        }
        ENC_PACKED => {
            let len = n.div_ceil(4);
            let s = b
                .get(*pos..*pos + len)
                .ok_or(CodecError::Body("packed series past end"))?;
            *pos += len;
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let code = (s[i / 4] >> (2 * (i % 4))) & 3;
                if code > 2 {
                    return Err(CodecError::Body("packed code out of range"));
                }
                out.push(code as i8 - 1);
            }
            Ok(out)
        }
        ENC_RLE => {
            let len = get_varint(b, pos)? as usize;
            let end = pos
                .checked_add(len)
                .filter(|&e| e <= b.len())
                .ok_or(CodecError::Body("rle series past end"))?;
            let mut out = Vec::with_capacity(n);
            while *pos < end {
                let v = b[*pos];
                *pos += 1;
                if v > 2 {
                    return Err(CodecError::Body("rle value out of range"));
                }
                let run = get_varint(b, pos)? as usize;
                if run > n - out.len() {
                    return Err(CodecError::Body("rle run too long"));
                }
                out.resize(out.len() + run, v as i8 - 1);
            }
            if out.len() != n || *pos != end {
                return Err(CodecError::Body("rle length mismatch"));
            }
            Ok(out)
        }
        _ => Err(CodecError::Body("unknown series encoding")),
    }
}

/// Encodes an average signal and a direction of equal length.
pub fn encode_signals(key: &Key, created_ms: u64, avg: &[f64], dir: &[i8]) -> Vec<u8> {
    let mut v = begin(Kind::Signals, created_ms, avg.len(), avg.len() * 8 + 16);
    for x in avg {
        v.extend_from_slice(&x.to_bits().to_le_bytes());
    }
    put_varint(&mut v, dir.len() as u64);
    put_i8s(&mut v, dir);
    finish(key, v)
}

/// Decodes the body of a [`Kind::Signals`] value.
pub fn decode_signals(header: &Header, body: &[u8]) -> Result<(Vec<f64>, Vec<i8>), CodecError> {
    if header.kind != Kind::Signals {
        return Err(CodecError::BadKind(header.kind.tag()));
    }
    let n = header.bars;
    let raw = body.get(..n * 8).ok_or(CodecError::Body("avg past end"))?;
    let avg = raw
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            f64::from_bits(u64::from_le_bytes(b))
        })
        .collect();
    let mut pos = n * 8;
    let dlen = get_varint(body, &mut pos)? as usize;
    if dlen > n {
        return Err(CodecError::Body("dir longer than avg"));
    }
    let dir = get_i8s(body, &mut pos, dlen)?;
    if pos != body.len() {
        return Err(CodecError::Body("trailing bytes"));
    }
    Ok((avg, dir))
}

/// One file of a cached run, as its manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFile {
    /// The file's name inside the run directory (no path separators).
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// blake3 of its content.
    pub hash: [u8; 32],
}

/// Whether `name` is a plain file name that stays inside the directory it
/// is joined to: a manifest (or a caller) can never make the cache read or
/// write elsewhere.
pub fn valid_run_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
}

/// Encodes the manifest of the files of an entry of `kind` (one with
/// [`Kind::has_files`]).
pub fn encode_run(key: &Key, kind: Kind, created_ms: u64, files: &[RunFile]) -> Vec<u8> {
    let cap = files.iter().map(|f| f.name.len() + 42).sum();
    let mut v = begin(kind, created_ms, files.len(), cap);
    for f in files {
        put_varint(&mut v, f.name.len() as u64);
        v.extend_from_slice(f.name.as_bytes());
        v.extend_from_slice(&f.size.to_le_bytes());
        v.extend_from_slice(&f.hash);
    }
    finish(key, v)
}

/// Decodes the body of a files manifest ([`Kind::has_files`]); rejects
/// names that are not plain file names and duplicates.
pub fn decode_run(header: &Header, body: &[u8]) -> Result<Vec<RunFile>, CodecError> {
    if !header.kind.has_files() {
        return Err(CodecError::BadKind(header.kind.tag()));
    }
    let mut pos = 0;
    let mut files: Vec<RunFile> = Vec::new();
    for _ in 0..header.bars {
        let len = get_varint(body, &mut pos)? as usize;
        let name = pos
            .checked_add(len)
            .and_then(|end| body.get(pos..end))
            .ok_or(CodecError::Body("run file name past end"))?;
        pos += len;
        let name = std::str::from_utf8(name).map_err(|_| CodecError::Body("run file name"))?;
        if !valid_run_file_name(name) || files.iter().any(|f| f.name == name) {
            return Err(CodecError::Body("run file name"));
        }
        let fixed = body
            .get(pos..pos + 40)
            .ok_or(CodecError::Body("run file record past end"))?;
        pos += 40;
        let mut size = [0u8; 8];
        size.copy_from_slice(&fixed[..8]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&fixed[8..]);
        files.push(RunFile {
            name: name.to_string(),
            size: u64::from_le_bytes(size),
            hash,
        });
    }
    if pos != body.len() {
        return Err(CodecError::Body("trailing bytes"));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> Key {
        Key([7; 32])
    }

    #[test]
    fn checksum_detects_every_flipped_bit_and_truncation() {
        let avg = vec![f64::NAN, 0.5, -0.25, 1.0];
        let v = encode_signals(&key(), 1, &avg, &[0, 1, 1, -1]);
        for byte in 0..v.len() {
            for bit in 0..8 {
                let mut bad = v.clone();
                bad[byte] ^= 1 << bit;
                assert!(open(&key(), &bad).is_err(), "byte {byte} bit {bit}");
            }
        }
        for len in 0..v.len() {
            assert!(open(&key(), &v[..len]).is_err(), "truncated to {len}");
        }
        assert_eq!(open(&Key([8; 32]), &v).unwrap_err(), CodecError::Checksum);
    }

    #[test]
    fn run_manifest_round_trips_and_rejects_bad_names() {
        let files = vec![
            RunFile {
                name: "equity.parquet".into(),
                size: 12345,
                hash: [3; 32],
            },
            RunFile {
                name: "run.json".into(),
                size: 0,
                hash: [9; 32],
            },
        ];
        let v = encode_run(&key(), Kind::Run, 4, &files);
        let (h, body) = open(&key(), &v).unwrap();
        assert_eq!((h.kind, h.bars), (Kind::Run, 2));
        assert_eq!(decode_run(&h, body).unwrap(), files);
        assert!(decode_run(&h, &body[..body.len() - 1]).is_err());
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "a\0b"] {
            assert!(!valid_run_file_name(bad), "{bad:?}");
            let f = [RunFile {
                name: bad.into(),
                ..files[0].clone()
            }];
            let v = encode_run(&key(), Kind::Run, 4, &f);
            let (h, body) = open(&key(), &v).unwrap();
            assert!(decode_run(&h, body).is_err(), "{bad:?}");
        }
        let dup = [files[0].clone(), files[0].clone()];
        let v = encode_run(&key(), Kind::Run, 4, &dup);
        let (h, body) = open(&key(), &v).unwrap();
        assert!(decode_run(&h, body).is_err());
    }

    proptest! {
        #[test]
        fn signals_round_trip_bitwise(
            avg in prop::collection::vec(prop::num::f64::ANY, 0..200),
            seed in any::<u64>(),
        ) {
            let mut rng = crate::synthetic::SplitMix64::new(seed);
            let dir: Vec<i8> = avg.iter().map(|_| (rng.next_u64() % 3) as i8 - 1).collect();
            let v = encode_signals(&key(), 9, &avg, &dir);
            let (h, body) = open(&key(), &v).unwrap();
            let (a, d) = decode_signals(&h, body).unwrap();
            let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&a), bits(&avg));
            prop_assert_eq!(d, dir);
        }
    }
}
