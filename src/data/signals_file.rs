//! `--signals FILE`: your own directions in place of the ATC's.
//!
//! A signals file is long format, one row per (symbol, bar): `ts`,
//! `symbol`, `dir` (−1, 0 or 1: the position to hold from the next bar's
//! open, exactly what the engine's `dir` means) and optionally `strength`
//! (any finite number; `|strength|` ranks symbols where a portfolio has to
//! choose; without the column it is `dir`, so `|strength| = |dir|`). The
//! column spellings and timestamp forms are those of the OHLCV reader
//! ([`super::columns`]): `symbol`/`ticker`/`sym`, `ts`/`timestamp`/`date`/
//! `datetime`/`time`, Parquet TIMESTAMP of any unit, DATE or RFC 3339
//! text; `dir` may also be spelled `direction`, and `strength` may be
//! spelled `avg`, so a run's own `signals.parquet` reads back unchanged.
//! A file whose name ends in `.csv` is read as CSV with a header row
//! (timestamps as text); anything else as Parquet.
//!
//! Meaning, per symbol:
//! - a row at bar `t` sets the symbol's `dir` (and strength) from bar `t`
//!   on; a bar without a row **holds the previous row's values** (so a
//!   file may list only the changes); bars before the symbol's first row
//!   are flat (`dir` 0, strength 0);
//! - the first bar of a `--from` window trades on the row of the bar
//!   before it, as it trades on the last warm-up bar's `dir` under the
//!   ATC: give a row for that bar (or earlier) to be in the market on the
//!   first bar.
//!
//! Validated like OHLCV data, each error naming the file, the symbol, the
//! row (Parquet: 0-based data row, as pyarrow counts; CSV: the line, the
//! header being line 1) and the fix: missing columns, empty cells, a `dir`
//! that is not a whole number in −1..1, a non-finite strength, a symbol
//! that is not in the data, two rows for one (symbol, bar), a timestamp
//! that is no bar of its symbol ([`SignalsFile::check`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::Array;
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use super::columns::{self, NULL_TS};
use super::error::fmt_ts;
use super::{DataError, Dataset};
use crate::term::quote;

/// The accepted spellings of the signals file's columns (lower case).
const COLUMNS: [(&str, &[&str]); 4] = [
    ("symbol", columns::ALIASES[0].1),
    ("ts", columns::ALIASES[1].1),
    ("dir", &["dir", "direction"]),
    ("strength", &["strength", "avg"]),
];

/// Where a row is in its file, as messages show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowRef {
    /// 0-based data row of a Parquet file.
    Row(u64),
    /// 1-based line of a CSV file (the header is line 1).
    Line(u64),
}

impl std::fmt::Display for RowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowRef::Row(r) => write!(f, "row {r}"),
            RowRef::Line(l) => write!(f, "line {l}"),
        }
    }
}

const DIR_HINT: &str = "dir is the position to hold from the next bar's open: 1 long, -1 short, 0 flat (whole numbers); put a signal's size in the strength column";

/// Errors of a signals file: each names the file, and where it applies
/// the row, the symbol and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SignalsError {
    /// Reading the file (I/O, Parquet, column types, timestamps).
    #[error("signals file {0}")]
    Data(#[source] DataError),
    /// The CSV does not parse.
    #[error("signals file {path}: {at}: {detail}\n  hint: a CSV signals file has a header row (ts,symbol,dir[,strength]) and one row per symbol and bar")]
    Csv {
        /// The file.
        path: String,
        /// Where.
        at: RowRef,
        /// What the CSV reader said.
        detail: String,
    },
    /// A required column is missing.
    #[error("signals file {path}: no `{column}` column (found: {found})\n  hint: accepted names, any letter case: {accepted}; a signals file has ts, symbol, dir and optionally strength")]
    MissingColumn {
        /// The file.
        path: String,
        /// The canonical name.
        column: &'static str,
        /// The columns the file has.
        found: String,
        /// Accepted spellings.
        accepted: String,
    },
    /// Two columns name one canonical column.
    #[error("signals file {path}: columns {first:?} and {second:?} both name `{column}`\n  hint: drop or rename one of them")]
    AmbiguousColumn {
        /// The file.
        path: String,
        /// The canonical name.
        column: &'static str,
        /// First column.
        first: String,
        /// Second column.
        second: String,
    },
    /// A cell is empty (null) or does not parse.
    #[error("signals file {path}: {at}: {column} {problem}\n  hint: every row needs a symbol, a ts and a dir; a strength cell is a number, or empty for none")]
    BadCell {
        /// The file.
        path: String,
        /// Where.
        at: RowRef,
        /// The column.
        column: &'static str,
        /// What is wrong (`is empty`, `"x" is not a date or time`).
        problem: String,
    },
    /// `dir` is not −1, 0 or 1.
    #[error("signals file {path}: {at}: symbol {symbol}: dir is {value}, not -1, 0 or 1\n  hint: {DIR_HINT}")]
    BadDir {
        /// The file.
        path: String,
        /// Where.
        at: RowRef,
        /// The symbol (quoted).
        symbol: String,
        /// The value as read.
        value: String,
    },
    /// `strength` is NaN or infinite.
    #[error("signals file {path}: {at}: symbol {symbol}: strength is {value}, not a finite number\n  hint: strength ranks symbols by |strength|; write a finite number, or drop the column (strength is then dir)")]
    BadStrength {
        /// The file.
        path: String,
        /// Where.
        at: RowRef,
        /// The symbol (quoted).
        symbol: String,
        /// The value.
        value: f64,
    },
    /// The file has no rows.
    #[error("signals file {path}: no rows\n  hint: a signals file has one row per symbol and bar (ts, symbol, dir)")]
    Empty {
        /// The file.
        path: String,
    },
    /// A symbol of the file is not in the data.
    #[error("signals file {path}: {at}: symbol {symbol} is not in the data{suggest}\n  hint: spell it as `atc-bt data info` lists the data's symbols, or remove its rows")]
    UnknownSymbol {
        /// The file.
        path: String,
        /// Its first row.
        at: RowRef,
        /// The symbol (quoted).
        symbol: String,
        /// `; did you mean …?` or nothing.
        suggest: String,
    },
    /// Two rows for one (symbol, bar).
    #[error("signals file {path}: symbol {symbol} has two rows for {ts} ({first} and {second})\n  hint: keep one row per symbol and bar")]
    Duplicate {
        /// The file.
        path: String,
        /// The symbol (quoted).
        symbol: String,
        /// The bar's time.
        ts: String,
        /// One row.
        first: RowRef,
        /// The other.
        second: RowRef,
    },
    /// A timestamp that is no bar of its symbol.
    #[error("signals file {path}: {at}: symbol {symbol}: {ts} is not a bar of {symbol} ({near})\n  hint: stamp each row with the time of the bar at whose close it was decided, exactly as the data's ts (UTC)")]
    Unmatched {
        /// The file.
        path: String,
        /// Where.
        at: RowRef,
        /// The symbol (quoted).
        symbol: String,
        /// The row's time.
        ts: String,
        /// The nearest bars.
        near: String,
    },
    /// A symbol named in `--symbols` has no rows.
    #[error("signals file {path} has no rows for {symbol}, which --symbols selects\n  hint: add its rows, or leave it out of --symbols (with --symbols all the symbols of the file are traded)")]
    NoRows {
        /// The file.
        path: String,
        /// The symbol (quoted).
        symbol: String,
    },
}

/// One symbol's rows, sorted by time.
#[derive(Debug, Clone, Default)]
struct Rows {
    ts: Vec<i64>,
    dir: Vec<i8>,
    strength: Vec<f64>,
    at: Vec<RowRef>,
}

/// What `run.json` records of a signals file (`signals`): the file as
/// given, its size in bytes and the blake3 of its content (which the
/// run's identity covers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalsSource {
    /// The path as given.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// blake3 of the content (hex).
    pub blake3: String,
}

/// A read signals file: per symbol, rows sorted by time.
#[derive(Debug, Clone)]
pub struct SignalsFile {
    /// Path, size and content hash.
    pub source: SignalsSource,
    symbols: BTreeMap<String, Rows>,
}

/// Raw rows as read, in file order.
#[derive(Default)]
struct Raw {
    symbol: Vec<String>,
    ts: Vec<i64>,
    dir: Vec<i8>,
    strength: Vec<f64>,
    at: Vec<RowRef>,
}

impl SignalsFile {
    /// Reads and checks `path` on its own (columns, cells, `dir` range,
    /// finite strength, one row per (symbol, ts)); [`SignalsFile::check`]
    /// checks it against the data.
    pub fn read(path: &Path) -> Result<SignalsFile, SignalsError> {
        // `p` names the file in messages; the manifest records the path
        // as given.
        let p = crate::term::shown(path);
        let bytes = std::fs::read(path).map_err(|source| {
            SignalsError::Data(DataError::Io {
                path: p.clone(),
                action: "cannot read",
                source,
            })
        })?;
        let source = SignalsSource {
            path: path.display().to_string(),
            size: bytes.len() as u64,
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        };
        let is_csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        let raw = if is_csv {
            read_csv(&p, &bytes)?
        } else {
            drop(bytes);
            read_parquet(&p, path)?
        };
        if raw.ts.is_empty() {
            return Err(SignalsError::Empty { path: p });
        }
        let mut symbols: BTreeMap<String, Rows> = BTreeMap::new();
        let mut order: Vec<usize> = (0..raw.ts.len()).collect();
        order.sort_by(|&a, &b| {
            raw.symbol[a]
                .cmp(&raw.symbol[b])
                .then(raw.ts[a].cmp(&raw.ts[b]))
                .then(a.cmp(&b))
        });
        for k in order {
            let rows = symbols.entry(raw.symbol[k].clone()).or_default();
            if rows.ts.last() == Some(&raw.ts[k]) {
                let first = rows.at.last().copied().unwrap_or(raw.at[k]);
                return Err(SignalsError::Duplicate {
                    path: p,
                    symbol: quote(&raw.symbol[k]).into_owned(),
                    ts: fmt_ts(raw.ts[k]),
                    first,
                    second: raw.at[k],
                });
            }
            rows.ts.push(raw.ts[k]);
            rows.dir.push(raw.dir[k]);
            rows.strength.push(raw.strength[k]);
            rows.at.push(raw.at[k]);
        }
        Ok(SignalsFile { source, symbols })
    }

    /// The symbols of the file, sorted.
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.symbols.keys().map(String::as_str)
    }

    /// Checks the file against the data and narrows `selected` (indices
    /// into [`Dataset::series`], as a plan holds them) to the series the
    /// file has rows for. Errors: a symbol of the file that is not a
    /// series of the data; a row whose time is no bar of its symbol (only
    /// the selected symbols' bars are read); with `explicit` (`--symbols`
    /// named them), a selected series without rows. Returns the series to
    /// trade, in `selected`'s order, and notes for the user.
    pub fn check(
        &self,
        data: &Dataset,
        selected: &[usize],
        explicit: bool,
    ) -> Result<(Vec<usize>, Vec<String>), SignalsError> {
        self.check_owned(data, selected, explicit, &|_| true)
    }

    /// [`SignalsFile::check`] on a shard: the rows of the symbols `owns`
    /// accepts are checked against their bars (the other shards check the
    /// others'), and every symbol counts for the narrowing, so all shards
    /// narrow the selection alike.
    pub fn check_owned(
        &self,
        data: &Dataset,
        selected: &[usize],
        explicit: bool,
        owns: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<usize>, Vec<String>), SignalsError> {
        let path = &crate::term::escape(&self.source.path).into_owned();
        let by_name: HashMap<&str, usize> = data
            .series()
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        for (name, rows) in &self.symbols {
            if !by_name.contains_key(name.as_str()) {
                let near = super::select::closest(name, by_name.keys().copied(), 3);
                return Err(SignalsError::UnknownSymbol {
                    path: path.clone(),
                    at: rows
                        .at
                        .iter()
                        .min_by_key(|r| row_key(r))
                        .copied()
                        .unwrap_or(rows.at[0]),
                    symbol: quote(name).into_owned(),
                    suggest: if near.is_empty() {
                        String::new()
                    } else {
                        format!("; did you mean {}?", near.join(", "))
                    },
                });
            }
        }
        let mut traded = Vec::new();
        let mut without = 0usize;
        for &i in selected {
            let name = &data.series()[i].name;
            let Some(rows) = self.symbols.get(name) else {
                if explicit {
                    return Err(SignalsError::NoRows {
                        path: path.clone(),
                        symbol: quote(name).into_owned(),
                    });
                }
                without += 1;
                continue;
            };
            if !owns(name) {
                traded.push(i);
                continue;
            }
            let ts = data.view(i).ts;
            // Both sorted: one merge walk.
            let mut j = 0;
            for (k, &t) in rows.ts.iter().enumerate() {
                while j < ts.len() && ts[j] < t {
                    j += 1;
                }
                if j == ts.len() || ts[j] != t {
                    let before = j.checked_sub(1).map(|b| fmt_ts(ts[b]));
                    let after = ts.get(j).map(|&a| fmt_ts(a));
                    let near = match (before, after) {
                        (Some(b), Some(a)) => format!("the bars around it are {b} and {a}"),
                        (Some(b), None) => format!("its last bar is {b}"),
                        (None, Some(a)) => format!("its first bar is {a}"),
                        (None, None) => "it has no bars".into(),
                    };
                    return Err(SignalsError::Unmatched {
                        path: path.clone(),
                        at: rows.at[k],
                        symbol: quote(name).into_owned(),
                        ts: fmt_ts(t),
                        near,
                    });
                }
            }
            data.release(i);
            traded.push(i);
        }
        data.release_all();
        let mut notes = Vec::new();
        if without > 0 {
            notes.push(format!(
                "signals: {} of the {} selected series have rows in {path} and are traded; the other {without} are not",
                traded.len(),
                selected.len()
            ));
        }
        Ok((traded, notes))
    }

    /// The average signal (strength) and direction of series `name` on its
    /// bars `ts` (sorted, µs UTC), by the rule of the module docs: a row
    /// sets the values from its bar on, until the next row; before the
    /// first row, 0. `None` when the file has no rows for `name`.
    pub fn aligned(&self, name: &str, ts: &[i64]) -> Option<(Vec<f64>, Vec<i8>)> {
        let rows = self.symbols.get(name)?;
        let mut avg = Vec::with_capacity(ts.len());
        let mut dir = Vec::with_capacity(ts.len());
        // The last row at or before the first bar.
        let mut next = rows
            .ts
            .partition_point(|&r| r <= ts.first().copied().unwrap_or(0));
        let mut cur = next.checked_sub(1).map(|k| (rows.strength[k], rows.dir[k]));
        for &t in ts {
            while next < rows.ts.len() && rows.ts[next] <= t {
                cur = Some((rows.strength[next], rows.dir[next]));
                next += 1;
            }
            let (s, d) = cur.unwrap_or((0.0, 0));
            avg.push(s);
            dir.push(d);
        }
        Some((avg, dir))
    }

    /// Keeps the rows of the symbols `keep` accepts only (a shard's own).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.symbols.retain(|name, _| keep(name));
    }

    /// The time of `name`'s last row, if it has rows.
    pub fn last_ts(&self, name: &str) -> Option<i64> {
        self.symbols.get(name).and_then(|r| r.ts.last().copied())
    }
}

fn row_key(r: &RowRef) -> u64 {
    match *r {
        RowRef::Row(x) | RowRef::Line(x) => x,
    }
}

/// Finds the columns among `names`: `[symbol, ts, dir, strength?]`.
fn resolve(path: &str, names: &[String]) -> Result<[Option<usize>; 4], SignalsError> {
    let mut found: [Option<usize>; 4] = [None; 4];
    for (i, n) in names.iter().enumerate() {
        let n = n.trim().to_ascii_lowercase();
        for (k, (canon, aliases)) in COLUMNS.iter().enumerate() {
            if aliases.contains(&n.as_str()) {
                if let Some(prev) = found[k] {
                    return Err(SignalsError::AmbiguousColumn {
                        path: path.to_string(),
                        column: canon,
                        first: names[prev].clone(),
                        second: names[i].clone(),
                    });
                }
                found[k] = Some(i);
            }
        }
    }
    for k in 0..3 {
        if found[k].is_none() {
            return Err(SignalsError::MissingColumn {
                path: path.to_string(),
                column: COLUMNS[k].0,
                found: names.join(", "),
                accepted: COLUMNS[k].1.join(", "),
            });
        }
    }
    Ok(found)
}

/// Checks one row's `dir` (as a number) and `strength`, appending it.
/// A row's `strength` cell.
enum Strength {
    /// No `strength` column: the strength is `dir`.
    Absent,
    /// An empty cell: no strength (NaN, ranked after every strength), as
    /// a run's own `signals.parquet` leaves `avg` empty where the ATC has
    /// none (warm-up, cutout, equities that overflow with a large
    /// lambda, on flat and held bars alike), so it reads back as written.
    Empty,
    /// A number.
    Given(f64),
}

fn push_row(
    raw: &mut Raw,
    path: &str,
    at: RowRef,
    (symbol, ts, dir, strength): (String, i64, f64, Strength),
) -> Result<(), SignalsError> {
    if !(dir.fract() == 0.0 && (-1.0..=1.0).contains(&dir)) {
        return Err(SignalsError::BadDir {
            path: path.to_string(),
            at,
            symbol: quote(&symbol).into_owned(),
            value: format!("{dir}"),
        });
    }
    let dir = dir as i8;
    let strength = match strength {
        Strength::Given(s) if !s.is_finite() => {
            return Err(SignalsError::BadStrength {
                path: path.to_string(),
                at,
                symbol: quote(&symbol).into_owned(),
                value: s,
            })
        }
        Strength::Given(s) => s,
        Strength::Empty => f64::NAN,
        Strength::Absent => f64::from(dir),
    };
    raw.symbol.push(symbol);
    raw.ts.push(ts);
    raw.dir.push(dir);
    raw.strength.push(strength);
    raw.at.push(at);
    Ok(())
}

fn read_csv(path: &str, bytes: &[u8]) -> Result<Raw, SignalsError> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let csv_err = |line: u64, e: csv::Error| SignalsError::Csv {
        path: path.to_string(),
        at: RowRef::Line(line),
        detail: e.to_string(),
    };
    let names: Vec<String> = r
        .headers()
        .map_err(|e| csv_err(1, e))?
        .iter()
        .map(String::from)
        .collect();
    let [sym, ts, dir, strength] = resolve(path, &names)?;
    let (sym, ts, dir) = (sym.unwrap_or(0), ts.unwrap_or(0), dir.unwrap_or(0));
    let mut raw = Raw::default();
    for (k, rec) in r.records().enumerate() {
        let line = k as u64 + 2;
        let rec = rec.map_err(|e| csv_err(line, e))?;
        let at = RowRef::Line(line);
        let cell = |i: usize, column: &'static str| -> Result<&str, SignalsError> {
            match rec.get(i).map(str::trim) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(SignalsError::BadCell {
                    path: path.to_string(),
                    at,
                    column,
                    problem: "is empty".into(),
                }),
            }
        };
        let number = |i: usize, column: &'static str| -> Result<f64, SignalsError> {
            let v = cell(i, column)?;
            v.parse::<f64>().map_err(|_| SignalsError::BadCell {
                path: path.to_string(),
                at,
                column,
                problem: format!("{v:?} is not a number"),
            })
        };
        let symbol = cell(sym, "symbol")?.to_string();
        let t = cell(ts, "ts")?;
        let t = super::select::parse_instant(t).ok_or_else(|| SignalsError::BadCell {
            path: path.to_string(),
            at,
            column: "ts",
            problem: format!(
                "{t:?} is not a date or time (RFC 3339 or ISO 8601, e.g. 2020-03-15 or 2020-03-15T14:30:00Z)"
            ),
        })?;
        let d = number(dir, "dir")?;
        let s = match strength {
            None => Strength::Absent,
            Some(i) if rec.get(i).is_none_or(|v| v.trim().is_empty()) => Strength::Empty,
            Some(i) => Strength::Given(number(i, "strength")?),
        };
        push_row(&mut raw, path, at, (symbol, t, d, s))?;
    }
    Ok(raw)
}

fn read_parquet(p: &str, path: &Path) -> Result<Raw, SignalsError> {
    let data = SignalsError::Data;
    let not_parquet = |e: &dyn std::fmt::Display| {
        SignalsError::Data(DataError::NotParquet {
            path: p.to_string(),
            detail: e.to_string(),
        })
    };
    let file = File::open(path).map_err(|source| {
        data(DataError::Io {
            path: p.to_string(),
            action: "cannot open",
            source,
        })
    })?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| not_parquet(&e))?;
    let names: Vec<String> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let [sym, ts, dir, strength] = resolve(p, &names)?;
    let (sym, ts, dir) = (sym.unwrap_or(0), ts.unwrap_or(0), dir.unwrap_or(0));
    let reader = b
        .with_batch_size(65_536)
        .build()
        .map_err(|e| not_parquet(&e))?;
    let mut raw = Raw::default();
    let mut row0 = 0u64;
    let floats = |col: &arrow_array::ArrayRef, name: &'static str| {
        arrow_cast::cast(col, &DataType::Float64).map_err(|e| {
            data(DataError::ColumnType {
                path: p.to_string(),
                column: name.into(),
                actual: format!("{} ({e})", col.data_type()),
                expected: "a number",
            })
        })
    };
    for batch in reader {
        let batch = batch.map_err(|e| not_parquet(&e))?;
        let syms = columns::symbols(p, batch.column(sym)).map_err(data)?;
        let mut times = Vec::with_capacity(batch.num_rows());
        columns::timestamps(p, batch.column(ts), row0, &mut times).map_err(data)?;
        let dirs = floats(batch.column(dir), "dir")?;
        let dirs = dirs.as_primitive::<Float64Type>();
        let strengths = strength
            .map(|i| floats(batch.column(i), "strength"))
            .transpose()?;
        let strengths = strengths.as_ref().map(|s| s.as_primitive::<Float64Type>());
        for (k, &t) in times.iter().enumerate() {
            let at = RowRef::Row(row0 + k as u64);
            let empty = |column: &'static str| SignalsError::BadCell {
                path: p.to_string(),
                at,
                column,
                problem: "is empty (null)".into(),
            };
            if syms.is_null(k) {
                return Err(empty("symbol"));
            }
            if t == NULL_TS {
                return Err(empty("ts"));
            }
            if dirs.is_null(k) {
                return Err(empty("dir"));
            }
            let s = match strengths {
                Some(s) if s.is_null(k) => Strength::Empty,
                Some(s) => Strength::Given(s.value(k)),
                None => Strength::Absent,
            };
            let row = (syms.value(k).to_string(), t, dirs.value(k), s);
            push_row(&mut raw, p, at, row)?;
        }
        row0 += batch.num_rows() as u64;
    }
    Ok(raw)
}
