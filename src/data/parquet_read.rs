//! Streaming reader of long-format OHLCV Parquet files.
//!
//! A file is read twice: first only its symbol column (cheap: one string
//! column, usually dictionary-encoded) to learn every symbol and the last row
//! where it occurs; then all columns in batches, handing each series to a
//! callback as soon as its last row has been read. For the usual file sorted
//! by symbol this holds one series (plus one batch) in memory at a time; a
//! file sorted by time instead holds all of it, which is still bounded by the
//! file.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::columns::{self, ColumnMap};
use super::error::DataError;

const BATCH_ROWS: usize = 65_536;

/// The bars of one symbol in one file, in file order, before validation.
#[derive(Debug, Default, Clone)]
pub struct RawSeries {
    /// Symbol as spelled in the file.
    pub symbol: String,
    /// 0-based file row of each bar.
    pub rows: Vec<u64>,
    /// µs UTC ([`columns::NULL_TS`] for null).
    pub ts: Vec<i64>,
    /// Prices, NaN for null.
    pub open: Vec<f64>,
    /// High.
    pub high: Vec<f64>,
    /// Low.
    pub low: Vec<f64>,
    /// Close.
    pub close: Vec<f64>,
    /// Volume, NaN for null or absent.
    pub volume: Vec<f64>,
    /// The file's timestamps are finer than µs (nanoseconds), so distinct
    /// instants may collapse into one µs in `ts`.
    pub sub_us: bool,
}

/// What the first pass learns about a file.
#[derive(Debug, Clone)]
pub struct FileScan {
    /// Path as given.
    pub path: String,
    /// Distinct symbols, sorted.
    pub symbols: Vec<String>,
    /// Last row of each symbol.
    pub last_row: HashMap<String, u64>,
    /// Total rows.
    pub rows: u64,
    /// Column positions.
    pub map: ColumnMap,
    /// Time zone of the timestamp column, when it is a Parquet TIMESTAMP
    /// with one (an IANA name such as `Asia/Tokyo`, or an offset); the
    /// weekdays of the file's series are judged in it.
    pub tz: Option<String>,
}

fn not_parquet(path: &str, e: impl std::fmt::Display) -> DataError {
    DataError::NotParquet {
        path: path.to_string(),
        detail: e.to_string(),
    }
}

fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, DataError> {
    let p = crate::term::shown(path);
    let file = File::open(path).map_err(|source| DataError::Io {
        path: p.clone(),
        action: "cannot open",
        source,
    })?;
    let len = file
        .metadata()
        .map_err(|source| DataError::Io {
            path: p.clone(),
            action: "cannot stat",
            source,
        })?
        .len();
    if len == 0 {
        return Err(DataError::EmptyFile { path: p });
    }
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| not_parquet(&p, e))
}

/// First pass: schema check and the symbols of a file.
pub fn scan(path: &Path) -> Result<FileScan, DataError> {
    let p = crate::term::shown(path);
    let b = builder(path)?;
    let map = columns::resolve(&p, b.schema())?;
    let tz = columns::time_zone(&p, b.schema(), map.ts)?;
    let rows = b.metadata().file_metadata().num_rows().max(0) as u64;
    if rows == 0 {
        return Err(DataError::EmptyFile { path: p });
    }
    let mask = ProjectionMask::roots(b.parquet_schema(), [map.symbol]);
    let reader = b
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| not_parquet(&p, e))?;
    let mut last_row: HashMap<String, u64> = HashMap::new();
    let mut row0 = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| not_parquet(&p, e))?;
        let syms = columns::symbols(&p, batch.column(0))?;
        let mut i = 0;
        while i < syms.len() {
            if syms.is_null(i) {
                return Err(DataError::NullSymbol {
                    path: p,
                    row: row0 + i as u64,
                });
            }
            let s = syms.value(i);
            let mut j = i + 1;
            while j < syms.len() && !syms.is_null(j) && syms.value(j) == s {
                j += 1;
            }
            let last = row0 + j as u64 - 1;
            match last_row.get_mut(s) {
                Some(v) => *v = last,
                None => {
                    last_row.insert(s.to_string(), last);
                }
            }
            i = j;
        }
        row0 += batch.num_rows() as u64;
    }
    let mut symbols: Vec<String> = last_row.keys().cloned().collect();
    symbols.sort();
    Ok(FileScan {
        path: p,
        symbols,
        last_row,
        rows: row0,
        map,
        tz,
    })
}

struct Cols {
    ts: Vec<i64>,
    o: Vec<f64>,
    h: Vec<f64>,
    l: Vec<f64>,
    c: Vec<f64>,
    v: Vec<f64>,
}

fn convert(p: &str, batch: &RecordBatch, map: &ColumnMap, row0: u64) -> Result<Cols, DataError> {
    let n = batch.num_rows();
    let mut cols = Cols {
        ts: Vec::with_capacity(n),
        o: Vec::with_capacity(n),
        h: Vec::with_capacity(n),
        l: Vec::with_capacity(n),
        c: Vec::with_capacity(n),
        v: Vec::with_capacity(n),
    };
    columns::timestamps(p, batch.column(map.ts), row0, &mut cols.ts)?;
    let names = ["open", "high", "low", "close"];
    for (k, out) in [&mut cols.o, &mut cols.h, &mut cols.l, &mut cols.c]
        .into_iter()
        .enumerate()
    {
        columns::floats(p, names[k], batch.column(map.ohlc[k]), out)?;
    }
    match map.volume {
        Some(i) => columns::floats(p, "volume", batch.column(i), &mut cols.v)?,
        None => cols.v.resize(n, f64::NAN),
    }
    Ok(cols)
}

/// Second pass: every series of the file (or only `only`), each handed to
/// `emit` once complete. Series completing in the same batch are emitted in
/// symbol order, so the order is deterministic.
pub fn read_series(
    path: &Path,
    scan: &FileScan,
    only: Option<&str>,
    mut emit: impl FnMut(RawSeries) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let p = scan.path.as_str();
    let reader = builder(path)?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| not_parquet(p, e))?;
    let mut open: HashMap<String, RawSeries> = HashMap::new();
    let mut row0 = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| not_parquet(p, e))?;
        let n = batch.num_rows();
        let syms = columns::symbols(p, batch.column(scan.map.symbol))?;
        let cols = convert(p, &batch, &scan.map, row0)?;
        let sub_us = matches!(
            batch.column(scan.map.ts).data_type(),
            arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Nanosecond, _)
        );
        let mut i = 0;
        while i < n {
            if syms.is_null(i) {
                return Err(DataError::NullSymbol {
                    path: p.to_string(),
                    row: row0 + i as u64,
                });
            }
            let s = syms.value(i);
            let mut j = i + 1;
            while j < n && !syms.is_null(j) && syms.value(j) == s {
                j += 1;
            }
            if only.map(|o| o == s).unwrap_or(true) {
                let r = open.entry(s.to_string()).or_insert_with(|| RawSeries {
                    symbol: s.to_string(),
                    ..Default::default()
                });
                r.sub_us |= sub_us;
                r.rows.extend(row0 + i as u64..row0 + j as u64);
                r.ts.extend_from_slice(&cols.ts[i..j]);
                r.open.extend_from_slice(&cols.o[i..j]);
                r.high.extend_from_slice(&cols.h[i..j]);
                r.low.extend_from_slice(&cols.l[i..j]);
                r.close.extend_from_slice(&cols.c[i..j]);
                r.volume.extend_from_slice(&cols.v[i..j]);
            }
            i = j;
        }
        row0 += n as u64;
        let mut done: Vec<String> = open
            .keys()
            .filter(|s| {
                scan.last_row
                    .get(*s)
                    .map(|&last| last < row0)
                    .unwrap_or(true)
            })
            .cloned()
            .collect();
        done.sort();
        for s in done {
            if let Some(r) = open.remove(&s) {
                emit(r)?;
            }
        }
    }
    let mut rest: Vec<String> = open.keys().cloned().collect();
    rest.sort();
    for s in rest {
        if let Some(r) = open.remove(&s) {
            emit(r)?;
        }
    }
    Ok(())
}
