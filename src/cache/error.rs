//! Errors of the result cache. None of them ever fails a run: [`super::Cache`]
//! turns each into one warning line and carries on with less caching.

use std::path::PathBuf;

/// What can go wrong in the cache's store or in a stored value.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Another process holds the store's lock (sled allows one per database).
    #[error("the cache database {path} is in use by another atc-bt process; hint: this run continues with the in-memory cache only")]
    Locked {
        /// The database directory.
        path: PathBuf,
    },
    /// The cache directory cannot be created or written.
    #[error("cannot write the cache directory {path}: {source}; hint: pass --cache-dir DIR or set ATC_CACHE_DIR to a writable directory")]
    Unwritable {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The store failed to open (corruption, a killed writer, a sled bug).
    #[error("cannot open the cache database {path}: {message}")]
    Open {
        /// The database directory.
        path: PathBuf,
        /// The store's own message.
        message: String,
    },
    /// The store is damaged: sled panicked or reported corruption. The
    /// database is moved aside and the run continues without it.
    #[error("the cache database {path} is damaged ({message})")]
    Damaged {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        message: String,
    },
    /// The store was written by another cache format or store version.
    #[error("the cache database {path} has format {found:?}, this build uses {expected:?}")]
    Version {
        /// The database directory.
        path: PathBuf,
        /// The format found in the store.
        found: String,
        /// The format of this build.
        expected: &'static str,
    },
    /// A read, write or flush of the store failed (a full disk, an I/O error).
    #[error("cache store I/O failed: {message}")]
    Io {
        /// The store's own message.
        message: String,
    },
    /// A file of a run entry could not be read, written or removed.
    #[error("cache run files: {path}: {source}")]
    RunFiles {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A run file name given to [`super::Cache::store_files`] is not a plain,
    /// unique file name (it would escape or clash inside the entry).
    #[error("cannot cache run file {name:?}: not a plain, unique file name")]
    RunFileName {
        /// The name.
        name: String,
    },
    /// A stored value failed its checks; it is dropped and recomputed.
    #[error("corrupt cache value: {0}")]
    Corrupt(#[from] super::codec::CodecError),
}
