//! The run directory: `run.json`, `metrics.json`, `equity.parquet`,
//! `trades.parquet`, `signals.parquet` (ts, symbol, close, avg, dir). Written into a temporary sibling
//! directory and renamed into place, so an interrupted run never leaves a
//! half-written directory that looks complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int8Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use super::RunResult;
use crate::backtest::Side;

/// Name of the portfolio rows in `equity.parquet` and `metrics.json`.
pub const PORTFOLIO: &str = "PORTFOLIO";
/// Name of the benchmark rows in `equity.parquet` and `metrics.json`.
pub const BENCHMARK: &str = "BENCHMARK";

/// Version of the run-directory layout; readers refuse other versions.
pub const RUN_FORMAT_VERSION: u32 = 1;

/// Errors writing results.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// File-system error on a path.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Parquet/Arrow encoding error.
    #[error("{}: cannot write Parquet: {message}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `batch` to `path` as zstd-compressed Parquet.
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), OutputError> {
    let perr = |e: &dyn std::fmt::Display| OutputError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::create(path).map_err(io_err(path))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(|e| perr(&e))?;
    w.write(batch).map_err(|e| perr(&e))?;
    let file = w.into_inner().map_err(|e| perr(&e))?;
    file.sync_all().map_err(io_err(path))
}

/// A Parquet file written batch by batch, so a large result is never held
/// as whole-file columns.
struct ParquetSink {
    path: PathBuf,
    schema: Arc<Schema>,
    writer: ArrowWriter<File>,
}

impl ParquetSink {
    fn create(path: &Path, schema: Arc<Schema>) -> Result<ParquetSink, OutputError> {
        let file = File::create(path).map_err(io_err(path))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| {
            OutputError::Parquet {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        Ok(ParquetSink {
            path: path.to_path_buf(),
            schema,
            writer,
        })
    }

    fn write(&mut self, cols: Vec<ArrayRef>) -> Result<(), OutputError> {
        let perr = |e: &dyn std::fmt::Display| OutputError::Parquet {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let b = RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| perr(&e))?;
        self.writer.write(&b).map_err(|e| perr(&e))
    }

    fn finish(self) -> Result<(), OutputError> {
        let path = self.path;
        let file = self.writer.into_inner().map_err(|e| OutputError::Parquet {
            path: path.clone(),
            message: e.to_string(),
        })?;
        file.sync_all().map_err(io_err(&path))
    }
}

/// Symbols per record batch of the per-bar files.
const SYMBOLS_PER_BATCH: usize = 256;

fn ts_field(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        nullable,
    )
}

fn ts_array(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

fn batch(path: &Path, fields: Vec<Field>, cols: Vec<ArrayRef>) -> Result<RecordBatch, OutputError> {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| OutputError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Drawdown as a positive fraction below the running peak.
fn drawdowns(equity: &[f64]) -> Vec<f64> {
    let mut peak = f64::NEG_INFINITY;
    equity
        .iter()
        .map(|&e| {
            peak = peak.max(e);
            if peak > 0.0 {
                1.0 - e / peak
            } else {
                0.0
            }
        })
        .collect()
}

fn write_equity(path: &Path, r: &RunResult) -> Result<(), OutputError> {
    let schema = Arc::new(Schema::new(vec![
        ts_field("ts", false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("equity", DataType::Float64, false),
        Field::new("position", DataType::Float64, true),
        Field::new("drawdown", DataType::Float64, false),
    ]));
    let mut sink = ParquetSink::create(path, schema)?;
    for chunk in r.symbols.chunks(SYMBOLS_PER_BATCH) {
        let (mut ts, mut sym, mut eq, mut pos, mut dd) = (vec![], vec![], vec![], vec![], vec![]);
        for s in chunk {
            ts.extend_from_slice(&s.run.ts);
            sym.extend(std::iter::repeat_n(s.run.symbol.as_str(), s.run.ts.len()));
            eq.extend_from_slice(&s.run.equity);
            pos.extend(s.run.position.iter().map(|&p| Some(p)));
            dd.extend(drawdowns(&s.run.equity));
        }
        sink.write(vec![
            ts_array(ts),
            Arc::new(StringArray::from(sym)),
            Arc::new(Float64Array::from(eq)),
            Arc::new(Float64Array::from(pos)),
            Arc::new(Float64Array::from(dd)),
        ])?;
    }
    for (name, c) in [(PORTFOLIO, &r.portfolio), (BENCHMARK, &r.benchmark)] {
        sink.write(vec![
            ts_array(c.ts.clone()),
            Arc::new(StringArray::from(vec![name; c.ts.len()])),
            Arc::new(Float64Array::from(c.equity.clone())),
            Arc::new(Float64Array::from(vec![None::<f64>; c.ts.len()])),
            Arc::new(Float64Array::from(drawdowns(&c.equity))),
        ])?;
    }
    sink.finish()
}

fn write_trades(path: &Path, r: &RunResult) -> Result<(), OutputError> {
    let trades: Vec<_> = r.symbols.iter().flat_map(|s| &s.run.trades).collect();
    let b = batch(
        path,
        vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("side", DataType::Utf8, false),
            ts_field("entry_ts", false),
            Field::new("entry_price", DataType::Float64, false),
            ts_field("exit_ts", true),
            Field::new("exit_price", DataType::Float64, false),
            Field::new("qty", DataType::Float64, false),
            Field::new("fees", DataType::Float64, false),
            Field::new("pnl", DataType::Float64, false),
            Field::new("return", DataType::Float64, false),
            Field::new("bars_held", DataType::UInt64, false),
            Field::new("open", DataType::Boolean, false),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                trades.iter().map(|t| t.symbol.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(trades.iter().map(
                |t| match t.side {
                    Side::Long => "long",
                    Side::Short => "short",
                },
            ))),
            ts_array(trades.iter().map(|t| t.entry_ts).collect()),
            Arc::new(Float64Array::from_iter_values(
                trades.iter().map(|t| t.entry_price),
            )),
            Arc::new(
                TimestampMicrosecondArray::from(
                    trades.iter().map(|t| t.exit_ts).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter_values(
                trades.iter().map(|t| t.exit_price),
            )),
            Arc::new(Float64Array::from_iter_values(trades.iter().map(|t| t.qty))),
            Arc::new(Float64Array::from_iter_values(
                trades.iter().map(|t| t.fees),
            )),
            Arc::new(Float64Array::from_iter_values(trades.iter().map(|t| t.pnl))),
            Arc::new(Float64Array::from_iter_values(trades.iter().map(|t| t.ret))),
            Arc::new(UInt64Array::from_iter_values(
                trades.iter().map(|t| t.bars_held as u64),
            )),
            Arc::new(BooleanArray::from(
                trades.iter().map(|t| t.open).collect::<Vec<_>>(),
            )),
        ],
    )?;
    write_parquet(path, &b)
}

fn write_signals(path: &Path, r: &RunResult) -> Result<(), OutputError> {
    let schema = Arc::new(Schema::new(vec![
        ts_field("ts", false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("close", DataType::Float64, false),
        Field::new("avg", DataType::Float64, true),
        Field::new("dir", DataType::Int8, false),
    ]));
    let mut sink = ParquetSink::create(path, schema)?;
    for chunk in r.symbols.chunks(SYMBOLS_PER_BATCH) {
        let (mut ts, mut sym, mut close, mut avg, mut dir) =
            (vec![], vec![], vec![], vec![], vec![]);
        for s in chunk {
            ts.extend_from_slice(&s.run.ts);
            sym.extend(std::iter::repeat_n(s.run.symbol.as_str(), s.run.ts.len()));
            close.extend_from_slice(&s.close);
            avg.extend(s.avg.iter().map(|&a| (!a.is_nan()).then_some(a)));
            dir.extend_from_slice(&s.dir);
        }
        sink.write(vec![
            ts_array(ts),
            Arc::new(StringArray::from(sym)),
            Arc::new(Float64Array::from(close)),
            Arc::new(Float64Array::from(avg)),
            Arc::new(Int8Array::from(dir)),
        ])?;
    }
    sink.finish()
}

/// `metrics.json`: `{"portfolio": {...}, "benchmark": {...}, "symbols": {...}}`.
pub fn metrics_json(r: &RunResult) -> serde_json::Value {
    let symbols: BTreeMap<&str, &crate::backtest::Metrics> = r
        .symbols
        .iter()
        .map(|s| (s.run.symbol.as_str(), &s.metrics))
        .collect();
    serde_json::json!({
        "portfolio": r.portfolio_metrics,
        "benchmark": r.benchmark_metrics,
        "symbols": symbols,
    })
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), OutputError> {
    let mut f = File::create(path).map_err(io_err(path))?;
    let text = serde_json::to_string_pretty(value).map_err(|e| OutputError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    f.write_all(text.as_bytes()).map_err(io_err(path))?;
    f.write_all(b"\n").map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Creates (empty) the temporary sibling `.<name>.partial-<pid>` of `out`
/// that a result directory is written into before it is renamed to `out`;
/// a leftover from a crashed process with the same pid is cleared first.
pub fn partial_dir(out: &Path) -> Result<PathBuf, OutputError> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    Ok(tmp)
}

/// Writes the whole run directory at `out` atomically: everything goes to a
/// temporary sibling first, which is renamed to `out` when complete. An
/// existing `out` is replaced only after the new one is complete.
pub fn write_run_dir(
    out: &Path,
    r: &RunResult,
    run_json: &serde_json::Value,
) -> Result<(), OutputError> {
    write_run_dir_with(out, r, run_json, |_| Ok(()))
}

/// [`write_run_dir`] with `extra` called on the temporary directory after
/// the result files and before `run.json` (e.g. to add `memory.parquet`).
pub fn write_run_dir_with(
    out: &Path,
    r: &RunResult,
    run_json: &serde_json::Value,
    extra: impl FnOnce(&Path) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    let tmp = partial_dir(out)?;
    let parent = tmp.parent().unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    // The files are independent: encode them on all cores (each file's bytes
    // do not depend on the order).
    let ((a, b), (c, d)) = rayon::join(
        || {
            rayon::join(
                || write_json(&tmp.join("metrics.json"), &metrics_json(r)),
                || write_equity(&tmp.join("equity.parquet"), r),
            )
        },
        || {
            rayon::join(
                || write_trades(&tmp.join("trades.parquet"), r),
                || write_signals(&tmp.join("signals.parquet"), r),
            )
        },
    );
    a.and(b).and(c).and(d)?;
    extra(&tmp)?;
    // run.json last: its presence marks a complete directory.
    write_json(&tmp.join("run.json"), run_json)?;
    if out.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(out, &old).map_err(io_err(out))?;
        std::fs::rename(&tmp, out).map_err(io_err(out))?;
        std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
    } else {
        std::fs::rename(&tmp, out).map_err(io_err(out))?;
    }
    Ok(())
}

/// Writes named equity curves (`ts, symbol, equity, drawdown`) as Parquet,
/// e.g. the best sweep combination's `PORTFOLIO` and `BENCHMARK`.
pub fn write_curves_parquet(
    path: &Path,
    curves: &[(&str, &crate::backtest::Curve)],
) -> Result<(), OutputError> {
    let (mut ts, mut sym, mut eq, mut dd) = (vec![], vec![], vec![], vec![]);
    for (name, c) in curves {
        ts.extend_from_slice(&c.ts);
        sym.extend(std::iter::repeat_n(*name, c.ts.len()));
        eq.extend_from_slice(&c.equity);
        dd.extend(drawdowns(&c.equity));
    }
    let b = batch(
        path,
        vec![
            ts_field("ts", false),
            Field::new("symbol", DataType::Utf8, false),
            Field::new("equity", DataType::Float64, false),
            Field::new("drawdown", DataType::Float64, false),
        ],
        vec![
            ts_array(ts),
            Arc::new(StringArray::from(sym)),
            Arc::new(Float64Array::from(eq)),
            Arc::new(Float64Array::from(dd)),
        ],
    )?;
    write_parquet(path, &b)
}
