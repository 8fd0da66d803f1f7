//! Seeded synthetic OHLCV for benchmarks: `atc-bt data synth`.
//!
//! Each symbol is a geometric random walk (daily drift 0.0002, volatility
//! 0.02 scaled by a per-symbol factor in [0.5, 1.5]) on business days from
//! 2000-01-03; open is the previous close with a small gap, high/low wrap
//! open and close. The project's SplitMix64 generator
//! ([`crate::synthetic::SplitMix64`]) keeps it dependency-free and
//! bit-reproducible: the same (symbols, bars, seed) give the same file.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::error::DataError;

const DAY_US: i64 = 86_400_000_000;
/// 2000-01-03 (a Monday), µs UTC.
const START_US: i64 = 946_857_600_000_000;

/// Writes `symbols` × `bars` seeded OHLCV bars as long-format Parquet
/// (symbols `SYN00000`…, sorted by symbol then ts, daily business-day
/// timestamps, snappy-compressed).
pub fn synth(symbols: usize, bars: usize, seed: u64, out: &Path) -> Result<(), DataError> {
    let p = out.display().to_string();
    let werr = |e: &dyn std::fmt::Display| DataError::WriteParquet {
        path: p.clone(),
        detail: e.to_string(),
    };
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
    let written = crate::files::out::write_file(out, |tmp| {
        write_synth(tmp, symbols, bars, seed, &schema, &werr)
    });
    match written {
        Ok(()) => Ok(()),
        Err(crate::files::out::FileWriteError::Write(e)) => Err(e),
        Err(crate::files::out::FileWriteError::Out(e)) => Err(DataError::Io {
            path: out.display().to_string(),
            action: "cannot move the finished file into place",
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// The key-value metadata that marks a file written by `data synth` (so
/// that a later `data synth --out` may overwrite it, and nothing else).
const SYNTH_KEY: &str = "atc-bt";
const SYNTH_VALUE: &str = "data synth";

/// Whether `path` is a Parquet file written by [`synth`].
pub fn is_synth_file(path: &Path) -> bool {
    use parquet::file::reader::FileReader;
    let Ok(f) = File::open(path) else {
        return false;
    };
    let Ok(r) = parquet::file::reader::SerializedFileReader::new(f) else {
        return false;
    };
    r.metadata()
        .file_metadata()
        .key_value_metadata()
        .is_some_and(|kv| {
            kv.iter()
                .any(|k| k.key == SYNTH_KEY && k.value.as_deref() == Some(SYNTH_VALUE))
        })
}

fn write_synth(
    tmp: &Path,
    symbols: usize,
    bars: usize,
    seed: u64,
    schema: &Arc<Schema>,
    werr: &dyn Fn(&dyn std::fmt::Display) -> DataError,
) -> Result<(), DataError> {
    let file = File::create(tmp).map_err(|source| DataError::Io {
        path: tmp.display().to_string(),
        action: "cannot create",
        source,
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_size(1 << 20)
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            SYNTH_KEY.to_string(),
            SYNTH_VALUE.to_string(),
        )]))
        .build();
    let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| werr(&e))?;
    let ts: Vec<i64> = (0..bars as i64)
        .map(|i| START_US + ((i / 5) * 7 + i % 5) * DAY_US)
        .collect();
    let mut rng = crate::synthetic::SplitMix64::new(seed);
    for s in 0..symbols {
        let scale = 0.5 + rng.next_f64();
        let mut close = 20.0 + 180.0 * rng.next_f64();
        let (mut o, mut h, mut l, mut c, mut v) = (
            Vec::with_capacity(bars),
            Vec::with_capacity(bars),
            Vec::with_capacity(bars),
            Vec::with_capacity(bars),
            Vec::with_capacity(bars),
        );
        for _ in 0..bars {
            let open = close * (1.0 + 0.002 * scale * rng.next_normal());
            close *= (0.0002 + 0.02 * scale * rng.next_normal()).exp();
            let hi = open.max(close) * (1.0 + 0.01 * scale * rng.next_f64());
            let lo = open.min(close) * (1.0 - 0.01 * scale * rng.next_f64());
            o.push(open);
            h.push(hi);
            l.push(lo);
            c.push(close);
            v.push((1e5 * (1.0 + 4.0 * rng.next_f64())).round());
        }
        let name = format!("SYN{s:05}");
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![name.as_str(); bars])),
            Arc::new(TimestampMicrosecondArray::from(ts.clone()).with_timezone("UTC")),
            Arc::new(Float64Array::from(o)),
            Arc::new(Float64Array::from(h)),
            Arc::new(Float64Array::from(l)),
            Arc::new(Float64Array::from(c)),
            Arc::new(Float64Array::from(v)),
        ];
        let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| werr(&e))?;
        w.write(&batch).map_err(|e| werr(&e))?;
    }
    w.close().map_err(|e| werr(&e))?;
    Ok(())
}
