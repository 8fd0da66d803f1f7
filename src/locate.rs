//! Where the data store and the result cache live: one rule, the same for
//! every command given the same flags, whatever the spelling of `--data`.
//!
//! 1. `--data` is resolved to its Parquet files and its **data
//!    directory**: the directory itself, a file's directory, or a glob's
//!    fixed prefix (`data/*.parquet` → `data`). Both are canonicalised
//!    (absolute, symbolic links resolved), so `data`, `./data/`,
//!    `$PWD/data` and `'data/*.parquet'` name the same place.
//! 2. The **store** is `--store DIR`, else `<data dir>/.atc-store/<key>`
//!    when the data directory is writable, else
//!    `$XDG_CACHE_HOME/atc-bt/store/<key>` (or `~/.cache/atc-bt/store/<key>`),
//!    where `<key>` hashes the canonical paths of the source files: the same
//!    files make the same store, however they were named.
//! 3. The **cache** is `--cache-dir DIR`, else `$ATC_CACHE_DIR`, else
//!    `<data dir>/.atc-cache` when the data directory is writable, else
//!    `$XDG_CACHE_HOME/atc-bt/cache` (or `~/.cache/atc-bt/cache`). Every
//!    command takes the same `--data` (default `data`) to find it:
//!    `run`, `sweep`, `cache stats|gc|clear|verify`.
//!
//! "Writable" is decided the same way everywhere ([`local_ok`]): the
//! directory exists, its permissions are not read-only (even for root:
//! shared data must not grow a store), and a probe file can be created in
//! it.

use std::path::{Path, PathBuf};

use crate::data::DataError;

/// What `--data` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlace {
    /// The Parquet files, canonical, sorted, without duplicates.
    pub files: Vec<PathBuf>,
    /// The data directory, canonical.
    pub base: PathBuf,
}

fn is_parquet_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"))
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `p` made absolute with symbolic links resolved; where it does not exist
/// (yet), its longest existing ancestor is resolved and the rest appended,
/// lexically normalised.
pub fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    let mut existing = out.as_path();
    let mut rest = Vec::new();
    while let Some(parent) = existing.parent() {
        if let Ok(c) = std::fs::canonicalize(existing) {
            let mut c = c;
            for r in rest.iter().rev() {
                c.push(r);
            }
            return c;
        }
        if let Some(name) = existing.file_name() {
            rest.push(name.to_os_string());
        }
        existing = parent;
    }
    out
}

/// The data directory of a `--data` value, without listing any file (see
/// the module doc); canonical.
pub fn data_base(spec: &Path) -> PathBuf {
    let s = spec.display().to_string();
    if spec.is_dir() {
        return canonical(spec);
    }
    if !has_glob(&s) {
        let parent = spec
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        return canonical(parent);
    }
    let mut base = PathBuf::new();
    for c in spec.components() {
        if has_glob(&c.as_os_str().to_string_lossy()) {
            break;
        }
        base.push(c);
    }
    if base.as_os_str().is_empty() {
        base = PathBuf::from(".");
    }
    canonical(&base)
}

/// The Parquet files `--data` names (a file, a directory's `*.parquet` /
/// `*.pq`, or a glob) and its data directory, canonical.
pub fn resolve(spec: &Path) -> Result<DataPlace, DataError> {
    let s = spec.display().to_string();
    let no_files = || DataError::NoFiles {
        spec: crate::term::shown(spec),
    };
    let mut files: Vec<PathBuf> = if spec.is_file() {
        vec![spec.to_path_buf()]
    } else if spec.is_dir() {
        std::fs::read_dir(spec)
            .map_err(|source| DataError::Io {
                path: s.clone(),
                action: "cannot list the directory",
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_parquet_name(p))
            .collect()
    } else if has_glob(&s) {
        glob::glob(&s)
            .map_err(|e| DataError::BadSymbols {
                spec: s.clone(),
                problem: format!("bad glob: {e}"),
            })?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect()
    } else {
        Vec::new()
    };
    files = files.iter().map(|p| canonical(p)).collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(no_files());
    }
    Ok(DataPlace {
        files,
        base: data_base(spec),
    })
}

/// Prefix of the probe file [`local_ok`] creates (and removes at once);
/// `atc-bt data gc` removes those of killed commands.
pub const PROBE: &str = ".atc-bt-probe-";

/// Whether atc-bt may keep its store and cache in the directory `base`
/// (see the module doc).
pub fn local_ok(base: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(base) else {
        return false;
    };
    if !meta.is_dir() || meta.permissions().readonly() {
        return false;
    }
    let probe = base.join(crate::files::owner::temp_name("", PROBE));
    let ok = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// `$XDG_CACHE_HOME/atc-bt`, else `~/.cache/atc-bt`, else `<temp>/atc-bt`.
pub fn user_root() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return x.join("atc-bt");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h).join(".cache").join("atc-bt");
    }
    std::env::temp_dir().join("atc-bt")
}

/// The key of a store: a hash of its source files' canonical paths.
pub fn store_key(files: &[PathBuf]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"atc-bt store of\0");
    for f in files {
        let s = f.display().to_string();
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    h.finalize().to_hex().as_str()[..16].to_string()
}

/// The store directory for `place` (see the module doc).
pub fn store_dir(place: &DataPlace, explicit: Option<&Path>) -> PathBuf {
    if let Some(d) = explicit {
        return canonical(d);
    }
    let key = store_key(&place.files);
    if local_ok(&place.base) {
        place.base.join(".atc-store").join(key)
    } else {
        user_root().join("store").join(key)
    }
}

/// The directory holding the stores of the data in `base` (where stale
/// temporaries and outdated stores are cleaned up by `data gc`).
pub fn store_area(base: &Path) -> PathBuf {
    if local_ok(base) {
        base.join(".atc-store")
    } else {
        user_root().join("store")
    }
}

/// The cache directory for data in `base` (see the module doc).
pub fn cache_dir(base: &Path, explicit: Option<&Path>) -> PathBuf {
    if let Some(d) = explicit {
        return canonical(d);
    }
    if let Some(d) = std::env::var_os("ATC_CACHE_DIR").filter(|d| !d.is_empty()) {
        return canonical(Path::new(&d));
    }
    if local_ok(base) {
        base.join(".atc-cache")
    } else {
        user_root().join("cache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_the_data_names_one_place() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("data");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("a.parquet"), b"x").unwrap();
        std::fs::write(d.join("b.parquet"), b"x").unwrap();
        let spellings = [
            d.clone(),
            d.join("."),
            d.join("..").join("data"),
            d.join("*.parquet"),
        ];
        let places: Vec<DataPlace> = spellings.iter().map(|s| resolve(s).unwrap()).collect();
        for p in &places[1..] {
            assert_eq!(p, &places[0]);
        }
        let stores: Vec<PathBuf> = places.iter().map(|p| store_dir(p, None)).collect();
        assert!(stores.iter().all(|s| s == &stores[0]));
        assert!(stores[0].starts_with(canonical(&d).join(".atc-store")));
        assert_eq!(
            cache_dir(&places[0].base, Some(&d.join("c/../c"))),
            canonical(&d).join("c")
        );
    }
}
