//! Errors, warnings and invalid-series reports of the data layer.
//!
//! Every message names the file, and where it applies the symbol, the row
//! (0-based data row of the Parquet file, as a reader such as pyarrow counts
//! it) or timestamp, what is wrong and a hint for the fix.

use std::fmt;

/// Everything that can go wrong in the data layer.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O error on a named path.
    #[error("{path}: {action}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What we were doing (e.g. "cannot open").
        action: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `--data` matched no Parquet file.
    #[error("{spec}: no Parquet files found\n  hint: --data takes a .parquet file, a directory holding *.parquet files, or a glob such as 'data/*.parquet'")]
    NoFiles {
        /// The --data value.
        spec: String,
    },
    /// The file is not Parquet, or is truncated.
    #[error("{path}: not a Parquet file, or the file is truncated or corrupt: {detail}\n  hint: re-export or re-download the file; every input must be a complete Parquet file")]
    NotParquet {
        /// The file.
        path: String,
        /// What the Parquet reader said.
        detail: String,
    },
    /// The file has no rows (or no bytes).
    #[error("{path}: the file is empty (no rows)\n  hint: remove it from the data directory or fill it with bars")]
    EmptyFile {
        /// The file.
        path: String,
    },
    /// A required column is missing.
    #[error("{path}: no `{column}` column (found: {found})\n  hint: accepted names, any letter case: {accepted}")]
    MissingColumn {
        /// The file.
        path: String,
        /// The canonical column name.
        column: &'static str,
        /// The columns the file has.
        found: String,
        /// The accepted spellings.
        accepted: String,
    },
    /// Two columns map to the same canonical column.
    #[error("{path}: columns {first:?} and {second:?} both name `{column}`\n  hint: drop or rename one of them")]
    AmbiguousColumn {
        /// The file.
        path: String,
        /// The canonical column name.
        column: &'static str,
        /// First matching column.
        first: String,
        /// Second matching column.
        second: String,
    },
    /// A column has a type we cannot use.
    #[error("{path}: column {column:?} has type {actual}, expected {expected}")]
    ColumnType {
        /// The file.
        path: String,
        /// The column as spelled in the file.
        column: String,
        /// Its Arrow type.
        actual: String,
        /// What is accepted (with a hint).
        expected: &'static str,
    },
    /// A row without a symbol cannot belong to any series.
    #[error("{path}: row {row}: the symbol is null\n  hint: every row needs a symbol")]
    NullSymbol {
        /// The file.
        path: String,
        /// The 0-based row.
        row: u64,
    },
    /// A timestamp outside what i64 microseconds can hold.
    #[error("{path}: row {row}: timestamp {value} does not fit in microseconds since 1970 (i64)")]
    TimestampRange {
        /// The file.
        path: String,
        /// The 0-based row.
        row: u64,
        /// The raw value.
        value: i64,
    },
    /// A series failed validation (used where a single series is asked for,
    /// and by `--strict`).
    #[error("{0}")]
    Invalid(Box<InvalidSeries>),
    /// `--strict`: warnings or invalid series are errors.
    #[error("--strict: {count} data problem(s); the first: {first}\n  hint: fix the data, or drop --strict to skip the affected bars and series with a warning")]
    Strict {
        /// How many problems.
        count: usize,
        /// The first one, in full.
        first: String,
    },
    /// The symbol is not in the data.
    #[error("unknown symbol {symbol:?}{}\n  hint: `atc-bt data info` lists every series", suggest(.suggestions))]
    UnknownSymbol {
        /// What the user asked for.
        symbol: String,
        /// Closest names.
        suggestions: Vec<String>,
    },
    /// The symbol asked for was left out of the store for bad rows.
    #[error("{} was left out: {}: row {} ({}): {}\n  hint: fix or drop the row in the source file, or leave {} out of --symbols", crate::term::quote(&.0.name), .0.file, .0.row, fmt_ts(.0.ts), .0.problem, crate::term::quote(&.0.name))]
    LeftOut(Box<InvalidSeries>),
    /// A bare symbol names series in several files.
    #[error("symbol {symbol:?} is in several files; name one of: {}", .candidates.join(", "))]
    AmbiguousSymbol {
        /// What the user asked for.
        symbol: String,
        /// The qualified names.
        candidates: Vec<String>,
    },
    /// The symbol is not in this file.
    #[error("{path}: no rows for symbol {symbol:?}{}", suggest(.suggestions))]
    SymbolNotInFile {
        /// The file.
        path: String,
        /// What was asked for.
        symbol: String,
        /// Closest symbols in the file.
        suggestions: Vec<String>,
    },
    /// A bad `--symbols` value.
    #[error("--symbols {spec:?}: {problem}\n  hint: use `all`, a comma list such as `AAPL,MSFT`, or `@file.txt` with one symbol per line")]
    BadSymbols {
        /// The value.
        spec: String,
        /// What is wrong.
        problem: String,
    },
    /// A bad date bound.
    #[error("date {input:?}: {problem}\n  hint: write 2020, 2020-03, 2020-03-15 or RFC 3339 such as 2020-03-15T14:30:00Z")]
    BadDate {
        /// The value.
        input: String,
        /// What is wrong.
        problem: String,
    },
    /// No selected bar lies in the date window.
    #[error("no bars between {from} and {to} in the selected series; the data covers {covers}\n  hint: change --from/--to")]
    EmptyWindow {
        /// Window start, as text.
        from: String,
        /// Window end, as text.
        to: String,
        /// The range the data covers.
        covers: String,
    },
    /// The store cannot be written or read.
    #[error("store {dir}: {detail}\n  hint: pass --store DIR to put the store elsewhere")]
    Store {
        /// The store directory.
        dir: String,
        /// What went wrong.
        detail: String,
    },
    /// The store's bytes fail their checksums and the store could not be
    /// rebuilt.
    #[error("{damage}, and it cannot be rebuilt: {detail}\n  hint: restore the Parquet files it was built from, or delete {dir} and run again with the data you have")]
    Damaged {
        /// What is damaged.
        damage: String,
        /// Why the rebuild failed.
        detail: String,
        /// The store directory.
        dir: String,
    },
    /// Writing a Parquet file failed.
    #[error("{path}: cannot write Parquet: {detail}")]
    WriteParquet {
        /// The file.
        path: String,
        /// The cause.
        detail: String,
    },
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("; closest: {}", s.join(", "))
    }
}

/// A problem that skips or changes one bar but keeps the series; an error
/// under `--strict`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataWarning {
    /// The source file.
    pub file: String,
    /// The symbol as spelled in the file.
    pub symbol: String,
    /// 0-based row in the file.
    pub row: u64,
    /// The bar's timestamp, µs UTC.
    pub ts: i64,
    /// What is wrong and what was done.
    pub problem: String,
}

impl fmt::Display for DataWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: symbol \"{}\": row {} ({}): {}",
            crate::term::escape(&self.file),
            crate::term::escape(&self.symbol),
            self.row,
            fmt_ts(self.ts),
            crate::term::escape(&self.problem)
        )
    }
}

/// A series that failed validation and is left out of the store's series.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InvalidSeries {
    /// The series name (bare or `<file stem>:<symbol>`).
    pub name: String,
    /// The source file.
    pub file: String,
    /// The symbol as spelled in the file.
    pub symbol: String,
    /// 0-based row of the first bad bar.
    pub row: u64,
    /// Its timestamp, µs UTC.
    pub ts: i64,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for InvalidSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: symbol \"{}\": row {} ({}): {}; series {} skipped\n  hint: fix or drop the row in the source file",
            crate::term::escape(&self.file),
            crate::term::escape(&self.symbol),
            self.row,
            fmt_ts(self.ts),
            crate::term::escape(&self.problem),
            crate::term::quote(&self.name)
        )
    }
}

/// Formats µs since the epoch as RFC 3339 UTC to the second
/// (`2020-03-15T14:30:00Z`), or the date alone at midnight (`2020-03-15`);
/// a value outside chrono's range as its number. The one formatter of
/// times: manifests (`run.json`, `sweep.json`, `walk_forward.json`), the
/// report, tables and error messages. Sub-seconds are dropped, as the
/// result files have always written them.
pub fn fmt_ts(us: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(us) {
        Some(t) if t.time() == chrono::NaiveTime::MIN => t.format("%Y-%m-%d").to_string(),
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => us.to_string(),
    }
}
