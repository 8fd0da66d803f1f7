//! Column names and types: which spellings are accepted, and how each Arrow
//! type becomes `i64` µs UTC timestamps, `f64` prices and `String` symbols.
//!
//! Names are matched ignoring letter case and surrounding blanks. Two file
//! columns that map to the same canonical column are an error rather than a
//! silent pick.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, ArrayRef, StringArray};
use arrow_schema::{DataType, Schema, TimeUnit};

use super::error::DataError;

/// Canonical columns and the spellings accepted for each (lower case).
pub const ALIASES: [(&str, &[&str]); 7] = [
    ("symbol", &["symbol", "ticker", "sym"]),
    ("ts", &["ts", "timestamp", "date", "datetime", "time"]),
    ("open", &["open", "o"]),
    ("high", &["high", "h"]),
    ("low", &["low", "l"]),
    ("close", &["close", "c"]),
    ("volume", &["volume", "vol", "v"]),
];

/// Text for `--help` describing accepted input.
pub const INPUT_HELP: &str =
    "Input: Parquet files in long OHLCV format, one row per (symbol, bar). \
Columns (any letter case): symbol (or ticker, sym); ts (or timestamp, date, datetime, time); \
open, high, low, close (or o, h, l, c); volume (or vol, v; optional, nullable). \
Prices: any numeric type. Timestamps: Parquet TIMESTAMP of any unit (s, ms, µs, ns), with or \
without a time zone (no zone = UTC; stored as UTC instants, the zone kept to judge weekdays and \
calendar years in), DATE, or text in RFC 3339 / ISO 8601 \
(e.g. 2020-03-15 or 2020-03-15T14:30:00Z). Integer timestamps are refused: they carry no unit.";

/// Positions of the canonical columns in a file's schema.
#[derive(Debug, Clone, Copy)]
pub struct ColumnMap {
    /// symbol
    pub symbol: usize,
    /// ts
    pub ts: usize,
    /// open, high, low, close
    pub ohlc: [usize; 4],
    /// volume, if present
    pub volume: Option<usize>,
}

/// Finds the canonical columns in `schema`.
pub fn resolve(path: &str, schema: &Schema) -> Result<ColumnMap, DataError> {
    let mut found: [Option<usize>; 7] = [None; 7];
    for (i, field) in schema.fields().iter().enumerate() {
        let name = field.name().trim().to_ascii_lowercase();
        for (k, (canon, aliases)) in ALIASES.iter().enumerate() {
            if aliases.contains(&name.as_str()) {
                if let Some(prev) = found[k] {
                    return Err(DataError::AmbiguousColumn {
                        path: path.to_string(),
                        column: canon,
                        first: schema.field(prev).name().clone(),
                        second: field.name().clone(),
                    });
                }
                found[k] = Some(i);
            }
        }
    }
    let need = |k: usize| -> Result<usize, DataError> {
        found[k].ok_or_else(|| DataError::MissingColumn {
            path: path.to_string(),
            column: ALIASES[k].0,
            found: schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", "),
            accepted: ALIASES[k].1.join(", "),
        })
    };
    let map = ColumnMap {
        symbol: need(0)?,
        ts: need(1)?,
        ohlc: [need(2)?, need(3)?, need(4)?, need(5)?],
        volume: found[6],
    };
    for &i in &map.ohlc {
        check_numeric(path, schema, i)?;
    }
    if let Some(i) = map.volume {
        check_numeric(path, schema, i)?;
    }
    check_ts(path, schema, map.ts)?;
    check_symbol(path, schema, map.symbol)?;
    Ok(map)
}

fn type_err(path: &str, schema: &Schema, i: usize, expected: &'static str) -> DataError {
    DataError::ColumnType {
        path: path.to_string(),
        column: schema.field(i).name().clone(),
        actual: schema.field(i).data_type().to_string(),
        expected,
    }
}

fn check_numeric(path: &str, schema: &Schema, i: usize) -> Result<(), DataError> {
    let t = schema.field(i).data_type();
    if t.is_numeric() || matches!(t, DataType::Null) {
        Ok(())
    } else {
        Err(type_err(
            path,
            schema,
            i,
            "a number (float or integer)\n  hint: write prices as numbers, not text",
        ))
    }
}

fn check_ts(path: &str, schema: &Schema, i: usize) -> Result<(), DataError> {
    match schema.field(i).data_type() {
        DataType::Timestamp(_, _)
        | DataType::Date32
        | DataType::Date64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View => Ok(()),
        _ => Err(type_err(
            path,
            schema,
            i,
            "a timestamp, a date, or RFC 3339 text\n  hint: integer times carry no unit; store them as a Parquet TIMESTAMP",
        )),
    }
}

/// The time zone of timestamp column `i`, if it has one; an unknown zone
/// name is an error naming it (weekdays could not be judged in it).
pub fn time_zone(path: &str, schema: &Schema, i: usize) -> Result<Option<String>, DataError> {
    match schema.field(i).data_type() {
        DataType::Timestamp(_, Some(tz)) => {
            let tz = tz.to_string();
            if tz.parse::<arrow_array::timezone::Tz>().is_err() {
                return Err(type_err(
                    path,
                    schema,
                    i,
                    "a timestamp whose time zone is an IANA name (e.g. Asia/Tokyo) or an offset (+09:00)\n  hint: fix the zone in the file's schema, or write the timestamps in UTC",
                ));
            }
            Ok(Some(tz))
        }
        _ => Ok(None),
    }
}

fn check_symbol(path: &str, schema: &Schema, i: usize) -> Result<(), DataError> {
    let t = schema.field(i).data_type();
    let ok = match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => {
            matches!(
                **v,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        }
        t => t.is_integer(),
    };
    if ok {
        Ok(())
    } else {
        Err(type_err(path, schema, i, "text (or an integer id)"))
    }
}

/// Converts a symbol column to UTF-8 strings.
pub fn symbols(path: &str, col: &ArrayRef) -> Result<StringArray, DataError> {
    let arr = arrow_cast::cast(col, &DataType::Utf8).map_err(|e| DataError::ColumnType {
        path: path.to_string(),
        column: "symbol".into(),
        actual: format!("{} ({e})", col.data_type()),
        expected: "text",
    })?;
    Ok(arr.as_string::<i32>().clone())
}

/// Converts a price/volume column to f64 with NaN for nulls.
pub fn floats(path: &str, name: &str, col: &ArrayRef, out: &mut Vec<f64>) -> Result<(), DataError> {
    let arr = arrow_cast::cast(col, &DataType::Float64).map_err(|e| DataError::ColumnType {
        path: path.to_string(),
        column: name.to_string(),
        actual: format!("{} ({e})", col.data_type()),
        expected: "a number",
    })?;
    let a = arr.as_primitive::<arrow_array::types::Float64Type>();
    if a.null_count() == 0 {
        out.extend_from_slice(a.values());
    } else {
        out.extend(a.iter().map(|v| v.unwrap_or(f64::NAN)));
    }
    Ok(())
}

/// Sentinel for a null timestamp (validation reports it).
pub const NULL_TS: i64 = i64::MIN;

/// Converts a timestamp column to µs since the epoch, UTC. Arrow stores
/// zoned timestamps as UTC instants already; naive ones are taken as UTC.
/// `row0` is the file row of the first element (for messages).
pub fn timestamps(
    path: &str,
    col: &ArrayRef,
    row0: u64,
    out: &mut Vec<i64>,
) -> Result<(), DataError> {
    let conv =
        |out: &mut Vec<i64>, it: &mut dyn Iterator<Item = Option<i64>>, mul: i64, div: i64| {
            for (k, v) in it.enumerate() {
                match v {
                    None => out.push(NULL_TS),
                    Some(v) => {
                        let us = if div > 1 {
                            Some(v.div_euclid(div))
                        } else {
                            v.checked_mul(mul)
                        };
                        match us {
                            Some(us) if us != NULL_TS => out.push(us),
                            _ => {
                                return Err(DataError::TimestampRange {
                                    path: path.to_string(),
                                    row: row0 + k as u64,
                                    value: v,
                                })
                            }
                        }
                    }
                }
            }
            Ok(())
        };
    match col.data_type() {
        DataType::Timestamp(unit, _) => {
            let (mul, div) = match unit {
                TimeUnit::Second => (1_000_000, 1),
                TimeUnit::Millisecond => (1_000, 1),
                TimeUnit::Microsecond => (1, 1),
                TimeUnit::Nanosecond => (1, 1_000),
            };
            let mut it: Box<dyn Iterator<Item = Option<i64>>> = match unit {
                TimeUnit::Second => Box::new(col.as_primitive::<TimestampSecondType>().iter()),
                TimeUnit::Millisecond => {
                    Box::new(col.as_primitive::<TimestampMillisecondType>().iter())
                }
                TimeUnit::Microsecond => {
                    Box::new(col.as_primitive::<TimestampMicrosecondType>().iter())
                }
                TimeUnit::Nanosecond => {
                    Box::new(col.as_primitive::<TimestampNanosecondType>().iter())
                }
            };
            conv(out, &mut it, mul, div)
        }
        DataType::Date32 => conv(
            out,
            &mut col
                .as_primitive::<Date32Type>()
                .iter()
                .map(|d| d.map(i64::from)),
            86_400_000_000,
            1,
        ),
        DataType::Date64 => conv(out, &mut col.as_primitive::<Date64Type>().iter(), 1_000, 1),
        _ => {
            let s = arrow_cast::cast(col, &DataType::Utf8).map_err(|e| DataError::ColumnType {
                path: path.to_string(),
                column: "ts".into(),
                actual: format!("{} ({e})", col.data_type()),
                expected: "a timestamp",
            })?;
            for (k, v) in s.as_string::<i32>().iter().enumerate() {
                match v {
                    None => out.push(NULL_TS),
                    Some(text) => match super::select::parse_instant(text) {
                        Some(us) => out.push(us),
                        None => {
                            return Err(DataError::ColumnType {
                                path: path.to_string(),
                                column: format!("ts (row {}: {text:?})", row0 + k as u64),
                                actual: "text that is not a date or time".into(),
                                expected: "RFC 3339 or ISO 8601 text such as 2020-03-15 or 2020-03-15T14:30:00Z",
                            })
                        }
                    },
                }
            }
            Ok(())
        }
    }
}
