//! Data layer: Parquet history in, memory-mapped columnar store out.
//!
//! ```text
//!  --data (file | dir | glob) ─► parquet_read (2 passes, streaming)
//!     ─► validate (sort, check, warn) ─► store (Arrow IPC + manifest)
//!     ─► Dataset (mmap, zero-copy SeriesView) ─► select (symbols, dates)
//! ```
//!
//! A *series* is one symbol of one file. A symbol found in one file only is
//! named by its bare symbol; one found in several files is named
//! `<file stem>:<symbol>` everywhere. Timestamps are `i64` microseconds since
//! the Unix epoch, UTC. See [`validate`] for what is an error and what a
//! warning, and [`store`] for the store layout.

pub mod columns;
pub mod error;
pub mod parquet_read;
pub mod select;
pub mod signals_file;
pub mod store;
pub mod synth;
pub mod validate;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use columns::INPUT_HELP;
pub use error::{fmt_ts, DataError, DataWarning, InvalidSeries};
pub use select::{closest, ensure_window, parse_date_bound, window, SymbolSelection};
pub use signals_file::{SignalsError, SignalsFile, SignalsSource};
pub use store::Dataset;
pub use synth::synth;

/// How to find and open the data.
#[derive(Debug, Clone)]
pub struct DataOptions {
    /// A Parquet file, a directory (all `*.parquet` in it) or a glob.
    pub data: PathBuf,
    /// Store directory; default next to the data, or a per-user cache
    /// directory when the data directory is read-only.
    pub store: Option<PathBuf>,
    /// Treat warnings and invalid series as errors.
    pub strict: bool,
    /// Show a progress bar while building (only on a terminal).
    pub progress: bool,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            data: PathBuf::from("data"),
            store: None,
            strict: false,
            progress: false,
        }
    }
}

/// One series in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesInfo {
    /// Bare symbol, or `<file stem>:<symbol>` when the symbol is in several files.
    pub name: String,
    /// The symbol as spelled in the file.
    pub symbol: String,
    /// The source file's stem.
    pub file_stem: String,
    /// Number of bars.
    pub bars: usize,
    /// First timestamp, µs UTC.
    pub first_ts: i64,
    /// Last timestamp, µs UTC.
    pub last_ts: i64,
    /// Median spacing of bars in µs; 0 with fewer than 2 bars.
    pub interval_us: i64,
    /// blake3 hex of the close column's little-endian bytes: the key the
    /// result cache uses.
    pub close_hash: String,
    /// blake3 hex of the ts, open and close columns: everything a run reads
    /// of the series, so a cached run result is keyed by it.
    pub bars_hash: String,
    /// Time zone of the source's timestamp column (`Asia/Tokyo`, `+09:00`),
    /// `None` when it has none (UTC). Timestamps are UTC instants either
    /// way; the zone decides which weekday and calendar year a bar is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
}

/// Zero-copy columns of one series (slices into the memory-mapped store).
#[derive(Debug, Clone, Copy)]
pub struct SeriesView<'a> {
    /// µs UTC, strictly increasing.
    pub ts: &'a [i64],
    /// Open prices.
    pub open: &'a [f64],
    /// High prices.
    pub high: &'a [f64],
    /// Low prices.
    pub low: &'a [f64],
    /// Close prices.
    pub close: &'a [f64],
    /// Volume; NaN = null.
    pub volume: &'a [f64],
}

/// A source file of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Absolute path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// blake3 hex of the file's bytes (at build time).
    pub blake3: String,
}

/// Reads the close series of `symbol` from one long-format OHLCV Parquet
/// file, sorted by time and validated like the store does (warnings are
/// ignored; an invalid series is an error). No store is involved.
pub fn read_symbol_close(path: &Path, symbol: &str) -> Result<Vec<f64>, DataError> {
    let scan = parquet_read::scan(path)?;
    if !scan.last_row.contains_key(symbol) {
        return Err(DataError::SymbolNotInFile {
            path: scan.path.clone(),
            symbol: symbol.to_string(),
            suggestions: closest(symbol, scan.symbols.iter().map(String::as_str), 5),
        });
    }
    let mut raw = None;
    parquet_read::read_series(path, &scan, Some(symbol), |r| {
        raw = Some(r);
        Ok(())
    })?;
    let raw = raw.unwrap_or_default();
    let mut warnings = Vec::new();
    match validate::validate(&scan.path, raw, &mut warnings) {
        Ok(clean) => Ok(clean.close),
        Err(p) => Err(DataError::Invalid(Box::new(InvalidSeries {
            name: symbol.to_string(),
            file: scan.path.clone(),
            symbol: symbol.to_string(),
            row: p.row,
            ts: p.ts,
            problem: p.problem,
        }))),
    }
}
