//! Helpers shared by the integration tests: running the binary, reading
//! result Parquet files, writing small OHLCV Parquet inputs.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

/// The repository root (where `data/` and `strategies/` are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `atc-bt` with the working directory set to `dir`.
pub fn atc(dir: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("atc-bt").unwrap();
    c.current_dir(dir);
    c
}

/// A JSON file, parsed.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// All record batches of a Parquet file, concatenated by column name.
pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    reader.map(|b| b.unwrap()).collect()
}

/// A float column of all batches (None for nulls).
pub fn f64_col(batches: &[RecordBatch], name: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for b in batches {
        let a = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        let a = a.as_any().downcast_ref::<Float64Array>().unwrap();
        out.extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i))));
    }
    out
}

/// A numeric column of any type (integer or float) of all batches, as
/// f64 (None for nulls).
pub fn num_col(batches: &[RecordBatch], name: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for b in batches {
        let a = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        let a = arrow_cast::cast(a, &DataType::Float64).unwrap();
        let a = a.as_any().downcast_ref::<Float64Array>().unwrap();
        out.extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i))));
    }
    out
}

/// The data type of column `name` of a Parquet file's batches.
pub fn col_type(batches: &[RecordBatch], name: &str) -> DataType {
    batches[0]
        .schema()
        .field_with_name(name)
        .unwrap_or_else(|_| panic!("no column {name}"))
        .data_type()
        .clone()
}

/// A string column of all batches.
pub fn str_col(batches: &[RecordBatch], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let a = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        out.extend((0..a.len()).map(|i| a.value(i).to_string()));
    }
    out
}

/// A string column of all batches, None for nulls.
#[allow(dead_code)]
pub fn opt_str_col(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let a = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        out.extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i).to_string())));
    }
    out
}

/// A timestamp column of all batches (µs; None for nulls).
pub fn ts_col(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    let mut out = Vec::new();
    for b in batches {
        let a = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        let a = a
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        out.extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i))));
    }
    out
}

/// One OHLC series for [`write_ohlcv`].
pub struct Series {
    pub symbol: String,
    pub ts: Vec<i64>,
    pub open: Vec<f64>,
    pub close: Vec<f64>,
}

/// Writes a long-format OHLCV Parquet file (high/low from open/close).
pub fn write_ohlcv(path: &Path, series: &[Series]) {
    let (mut sym, mut ts, mut o, mut h, mut l, mut c, mut v) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for s in series {
        for i in 0..s.ts.len() {
            sym.push(s.symbol.clone());
            ts.push(s.ts[i]);
            o.push(s.open[i]);
            c.push(s.close[i]);
            h.push(s.open[i].max(s.close[i]) * 1.01);
            l.push(s.open[i].min(s.close[i]) * 0.99);
            v.push(1000.0);
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("close", DataType::Float64, false),
        Field::new("volume", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(sym)),
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
            Arc::new(Float64Array::from(o)),
            Arc::new(Float64Array::from(h)),
            Arc::new(Float64Array::from(l)),
            Arc::new(Float64Array::from(c)),
            Arc::new(Float64Array::from(v)),
        ],
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Daily timestamps (µs) from 2019-01-01 for `n` bars, weekdays only.
pub fn weekdays(n: usize) -> Vec<i64> {
    let day = 86_400_000_000i64;
    let start = 1_546_300_800_000_000i64; // 2019-01-01 (Tuesday)
    (0..)
        .map(|k| start + k * day)
        .filter(|t| {
            let dow = ((t / day) + 4).rem_euclid(7); // 0 = Sunday
            dow != 0 && dow != 6
        })
        .take(n)
        .collect()
}

/// A seeded random-walk series with opens between closes.
pub fn walk(symbol: &str, seed: u64, n: usize) -> Series {
    let close = atc_bt::synthetic::random_walk(seed, n);
    let open = (0..n)
        .map(|i| {
            if i == 0 {
                close[0]
            } else {
                (close[i - 1] + close[i]) / 2.0
            }
        })
        .collect();
    Series {
        symbol: symbol.into(),
        ts: weekdays(n),
        open,
        close,
    }
}

/// Writes `count` seeded random walks of `bars` bars to `path`, named
/// `<prefix><k>` (`k` zero-padded to `width` digits), seeds `seed + k`.
pub fn write_walks(path: &Path, prefix: &str, count: u64, width: usize, seed: u64, bars: usize) {
    let series: Vec<Series> = (0..count)
        .map(|k| walk(&format!("{prefix}{k:0width$}"), seed + k, bars))
        .collect();
    write_ohlcv(path, &series);
}
