//! The run directory: `run.json`, `metrics.json`, `equity.parquet`,
//! `trades.parquet`, `signals.parquet` (ts, symbol, close, avg, dir). Written into a temporary sibling
//! directory and renamed into place, so an interrupted run never leaves a
//! half-written directory that looks complete.

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

use super::{MetricsSettings, RunResult, RunSummary, Skipped, SymbolResult, SymbolSummary};
use crate::backtest::{Calendar, PortfolioSum, Side, Trade, TradeStat};

/// An aggregate row: not a symbol of the data but a sum over them (or a
/// chain of runs). Aggregates never share a namespace with data: their
/// rows carry the aggregate's name in the `aggregate` column and a null
/// `symbol`, and a symbol's rows a null `aggregate`, so a symbol named
/// `PORTFOLIO` (or anything else) is just a symbol, in every file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregate {
    /// The portfolio: the sum of the sub-accounts.
    Portfolio,
    /// Buy & hold under the same split.
    Benchmark,
    /// The chained out-of-sample equity of a walk-forward.
    WalkForward,
}

impl Aggregate {
    /// The name in the `aggregate` column (and the key in `metrics.json`).
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Portfolio => "portfolio",
            Aggregate::Benchmark => "benchmark",
            Aggregate::WalkForward => "walk_forward",
        }
    }
}

/// The name of the column that marks aggregate rows.
pub const AGGREGATE_COLUMN: &str = "aggregate";

/// Version of the run-directory layout; readers refuse other versions.
/// 2: `trades.parquet` has `exit_reason`; `metrics.json` the facts table's
/// keys (start/end, annual_return, skew … worst_drawdowns); aggregate rows
/// moved from `symbol` to the `aggregate` column; `run.json`/`sweep.json`
/// list their `files`.
pub const RUN_FORMAT_VERSION: u32 = 2;

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
    /// The output directory cannot be replaced (see [`crate::files::out`]).
    #[error(transparent)]
    Out(#[from] crate::files::out::OutError),
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

fn equity_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        ts_field("ts", false),
        Field::new("symbol", DataType::Utf8, true),
        Field::new(AGGREGATE_COLUMN, DataType::Utf8, true),
        Field::new("equity", DataType::Float64, false),
        Field::new("position", DataType::Float64, true),
        Field::new("drawdown", DataType::Float64, false),
    ]))
}

fn signals_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        ts_field("ts", false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("close", DataType::Float64, false),
        Field::new("avg", DataType::Float64, true),
        Field::new("dir", DataType::Int8, false),
    ]))
}

/// The rows of [`SYMBOLS_PER_BATCH`] symbols waiting to be encoded.
#[derive(Default)]
struct PendingRows {
    symbols: usize,
    ts: Vec<i64>,
    sym: Vec<String>,
    sym_len: Vec<usize>,
    equity: Vec<f64>,
    position: Vec<Option<f64>>,
    drawdown: Vec<f64>,
    close: Vec<f64>,
    avg: Vec<Option<f64>>,
    dir: Vec<i8>,
    trades: Vec<Trade>,
}

impl PendingRows {
    fn push(&mut self, s: &SymbolResult) {
        let r = &s.run;
        self.symbols += 1;
        self.ts.extend_from_slice(&r.ts);
        self.sym.push(r.symbol.clone());
        self.sym_len.push(r.ts.len());
        self.equity.extend_from_slice(&r.equity);
        self.position.extend(r.position.iter().map(|&p| Some(p)));
        self.drawdown.extend(drawdowns(&r.equity));
        self.close.extend_from_slice(&s.close);
        self.avg
            .extend(s.avg.iter().map(|&a| (!a.is_nan()).then_some(a)));
        self.dir.extend_from_slice(&s.dir);
        self.trades.extend(r.trades.iter().cloned());
    }

    fn symbol_array(&self) -> ArrayRef {
        let mut v: Vec<&str> = Vec::with_capacity(self.ts.len());
        for (s, &n) in self.sym.iter().zip(&self.sym_len) {
            v.extend(std::iter::repeat_n(s.as_str(), n));
        }
        Arc::new(StringArray::from(v))
    }
}

/// Writes a run directory's result files while the run streams symbols
/// through it: `equity.parquet` and `signals.parquet` a batch of
/// [`SYMBOLS_PER_BATCH`] symbols at a time, the portfolio summed as the
/// symbols arrive ([`PortfolioSum`]), `trades.parquet` with the same
/// batches, and `metrics.json` at [`RunWriter::finish`]. Memory holds one batch of
/// per-bar rows, the trades and the per-symbol metrics, never every
/// symbol's bars.
///
/// The bytes depend only on the symbols pushed and their order (batches
/// always hold the same symbols), so a streamed run, [`write_run_dir`] of
/// an in-memory result and a merge of shards give identical files.
pub struct RunWriter {
    dir: PathBuf,
    equity: ParquetSink,
    signals: ParquetSink,
    trade_sink: ParquetSink,
    pending: PendingRows,
    portfolio: PortfolioSum,
    capital_per_symbol: f64,
    settings: MetricsSettings,
    /// The common calendar of the symbols so far (`None`: none yet), and
    /// whether they differ.
    calendar: Option<(Calendar, bool)>,
    trades: Vec<TradeStat>,
    fees: Vec<f64>,
    symbols: Vec<SymbolSummary>,
    engine_bars: usize,
}

impl RunWriter {
    /// Starts the result files in `dir` (an existing, empty directory).
    /// `timeline` must contain every timestamp of the runs to be pushed
    /// (it may hold more; see [`PortfolioSum`]); the portfolio's metrics
    /// use `settings`.
    pub fn create(
        dir: &Path,
        timeline: Vec<i64>,
        capital_per_symbol: f64,
        settings: MetricsSettings,
    ) -> Result<RunWriter, OutputError> {
        Ok(RunWriter {
            dir: dir.to_path_buf(),
            equity: ParquetSink::create(&dir.join("equity.parquet"), equity_schema())?,
            signals: ParquetSink::create(&dir.join("signals.parquet"), signals_schema())?,
            trade_sink: ParquetSink::create(&dir.join("trades.parquet"), trades_schema())?,
            pending: PendingRows::default(),
            portfolio: PortfolioSum::new(timeline, capital_per_symbol),
            capital_per_symbol,
            settings,
            calendar: None,
            trades: Vec::new(),
            fees: Vec::new(),
            symbols: Vec::new(),
            engine_bars: 0,
        })
    }

    /// Adds the next symbol (in output order).
    pub fn push(&mut self, s: &SymbolResult) -> Result<(), OutputError> {
        self.portfolio.add(&s.run);
        match &mut self.calendar {
            None => self.calendar = Some((s.calendar.clone(), false)),
            Some((c, mixed)) => *mixed |= *c != s.calendar,
        }
        // The portfolio's trade statistics need every trade, but only
        // what they use (the ledger itself goes to disk with the batch).
        self.trades.extend(s.run.trades.iter().map(TradeStat::of));
        self.fees.push(s.run.total_fees);
        self.symbols.push(SymbolSummary::of(s));
        self.engine_bars += s.engine_bars;
        self.pending.push(s);
        if self.pending.symbols == SYMBOLS_PER_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Encodes the pending rows into the three files (in parallel: they
    /// are independent).
    fn flush(&mut self) -> Result<(), OutputError> {
        let p = std::mem::take(&mut self.pending);
        if p.symbols == 0 {
            return Ok(());
        }
        let sym = p.symbol_array();
        let ts = ts_array(p.ts);
        let no_aggregate: ArrayRef = Arc::new(StringArray::new_null(p.equity.len()));
        let equity_cols = vec![
            ts.clone(),
            sym.clone(),
            no_aggregate,
            Arc::new(Float64Array::from(p.equity)) as ArrayRef,
            Arc::new(Float64Array::from(p.position)),
            Arc::new(Float64Array::from(p.drawdown)),
        ];
        let signal_cols = vec![
            ts,
            sym,
            Arc::new(Float64Array::from(p.close)) as ArrayRef,
            Arc::new(Float64Array::from(p.avg)),
            Arc::new(Int8Array::from(p.dir)),
        ];
        let trade_cols = trade_columns(&p.trades);
        let (equity, signals, trades) = (&mut self.equity, &mut self.signals, &mut self.trade_sink);
        let (a, (b, c)) = rayon::join(
            || equity.write(equity_cols),
            || rayon::join(|| signals.write(signal_cols), || trades.write(trade_cols)),
        );
        a.and(b).and(c)
    }

    /// Writes the last batch, the portfolio and benchmark rows and
    /// `metrics.json`, closes the files and returns the run's summary.
    pub fn finish(mut self, skipped: Vec<Skipped>) -> Result<RunSummary, OutputError> {
        self.flush()?;
        let (portfolio, benchmark) = self.portfolio.finish();
        let calendar = match self.calendar.take() {
            Some((c, false)) => c,
            _ => Calendar::utc(),
        };
        let (portfolio_metrics, benchmark_metrics) = super::portfolio_metrics(
            &portfolio,
            &benchmark,
            &self.trades,
            &self.fees,
            self.capital_per_symbol,
            &self.settings.options(calendar),
        );
        let warnings = super::frequency_warnings(
            self.symbols
                .iter()
                .map(|s| (s.symbol.as_str(), s.metrics.periods_per_year)),
            &portfolio_metrics,
        );
        for (agg, c) in [
            (Aggregate::Portfolio, &portfolio),
            (Aggregate::Benchmark, &benchmark),
        ] {
            self.equity.write(vec![
                ts_array(c.ts.clone()),
                Arc::new(StringArray::new_null(c.ts.len())),
                Arc::new(StringArray::from(vec![agg.name(); c.ts.len()])),
                Arc::new(Float64Array::from(c.equity.clone())),
                Arc::new(Float64Array::from(vec![None::<f64>; c.ts.len()])),
                Arc::new(Float64Array::from(drawdowns(&c.equity))),
            ])?;
        }
        let summary = RunSummary {
            symbols: self.symbols,
            skipped,
            portfolio,
            benchmark,
            portfolio_metrics,
            benchmark_metrics,
            capital_per_symbol: self.capital_per_symbol,
            engine_bars: self.engine_bars,
            warnings,
        };
        let (equity, signals, trades, dir) = (self.equity, self.signals, self.trade_sink, self.dir);
        let ((a, b), (c, d)) = rayon::join(
            || rayon::join(|| equity.finish(), || signals.finish()),
            || {
                rayon::join(
                    || trades.finish(),
                    || write_json(&dir.join("metrics.json"), &MetricsDoc(&summary)),
                )
            },
        );
        a.and(b).and(c).and(d)?;
        Ok(summary)
    }
}

fn trades_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
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
        Field::new("exit_reason", DataType::Utf8, false),
    ]))
}

fn trade_columns(trades: &[Trade]) -> Vec<ArrayRef> {
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
            TimestampMicrosecondArray::from(trades.iter().map(|t| t.exit_ts).collect::<Vec<_>>())
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
        Arc::new(StringArray::from_iter_values(
            trades.iter().map(|t| t.exit_reason.name()),
        )),
    ]
}

/// `metrics.json`: `{"benchmark": {...}, "portfolio": {...}, "symbols":
/// {...}}`, symbols by name, each metrics object in the order of the
/// metric facts table ([`crate::backtest::METRICS`]). Serialized straight
/// to the file, one symbol's metrics in memory at a time: a `Value` of the
/// whole document would cost a few KB per symbol at the end of a large run.
struct MetricsDoc<'a>(&'a RunSummary);

impl Serialize for MetricsDoc<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("benchmark", &self.0.benchmark_metrics)?;
        map.serialize_entry("portfolio", &self.0.portfolio_metrics)?;
        map.serialize_entry("symbols", &SymbolMetrics(self.0))?;
        map.end()
    }
}

/// The `symbols` object of [`MetricsDoc`], by name.
struct SymbolMetrics<'a>(&'a RunSummary);

impl Serialize for SymbolMetrics<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut by_name: Vec<&SymbolSummary> = self.0.symbols.iter().collect();
        by_name.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        let mut map = s.serialize_map(Some(by_name.len()))?;
        for x in by_name {
            map.serialize_entry(&x.symbol, &x.metrics)?;
        }
        map.end()
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), OutputError> {
    // Replace, never rewrite in place: the file may be a hard link into
    // the run cache (a restored `run.json`).
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(path)(e)),
        _ => {}
    }
    let f = File::create(path).map_err(io_err(path))?;
    let mut w = std::io::BufWriter::new(f);
    serde_json::to_writer_pretty(&mut w, value).map_err(|e| OutputError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    w.write_all(b"\n").map_err(io_err(path))?;
    let f = w.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
    f.sync_all().map_err(io_err(path))
}

/// Prepares to write the result directory `out`: refuses an `out` that
/// holds anything atc-bt did not write (unless `force`), removes stale
/// temporaries of killed commands beside it, and creates the empty
/// temporary sibling `.<name>.partial-<tag>` the results are written into
/// before [`commit_run_dir`] renames it (see [`crate::files::out`]).
pub fn partial_dir(out: &Path, force: bool) -> Result<PathBuf, OutputError> {
    Ok(crate::files::out::begin_dir(out, force)?)
}

/// Writes the whole run directory at `out` atomically: everything goes to a
/// temporary sibling first, which is renamed to `out` when complete. An
/// existing `out` is replaced only after the new one is complete, and only
/// if atc-bt wrote everything in it (or with `force`).
pub fn write_run_dir(
    out: &Path,
    r: &RunResult,
    run_json: &serde_json::Value,
    force: bool,
) -> Result<(), OutputError> {
    let tmp = partial_dir(out, force)?;
    let written = (|| {
        let mut w = RunWriter::create(
            &tmp,
            r.portfolio.ts.clone(),
            r.capital_per_symbol,
            r.settings.clone(),
        )?;
        for s in &r.symbols {
            w.push(s)?;
        }
        w.finish(r.skipped.clone())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    commit_run_dir(&tmp, out, run_json, force, |_| Ok(()))
}

/// Completes a result directory whose files are in `tmp` (from
/// [`partial_dir`]): writes its manifest `manifest` (`run.json`,
/// `sweep.json`) last, with `files` listing everything written before it
/// (its presence marks a complete directory, and the list tells a later
/// command what atc-bt may replace), and renames `tmp` to `out`. On any
/// error `tmp` is removed.
pub fn commit_dir_with_manifest(
    tmp: &Path,
    out: &Path,
    manifest: &str,
    value: &serde_json::Value,
    force: bool,
) -> Result<(), OutputError> {
    let r = (|| {
        let mut value = value.clone();
        value["files"] = serde_json::json!(crate::files::out::listing(tmp)?);
        write_json(&tmp.join(manifest), &value)?;
        crate::files::out::commit_dir(tmp, out, force)?;
        Ok(())
    })();
    if r.is_err() {
        let _ = std::fs::remove_dir_all(tmp);
    }
    r
}

/// Completes a run directory whose result files are in `tmp` (from
/// [`partial_dir`]): calls `extra` on it (e.g. to add `memory.parquet`),
/// then [`commit_dir_with_manifest`] with `run.json`. On any error `tmp`
/// is removed.
pub fn commit_run_dir(
    tmp: &Path,
    out: &Path,
    run_json: &serde_json::Value,
    force: bool,
    extra: impl FnOnce(&Path) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    if let Err(e) = extra(tmp) {
        let _ = std::fs::remove_dir_all(tmp);
        return Err(e);
    }
    commit_dir_with_manifest(tmp, out, "run.json", run_json, force)
}

/// Writes aggregate equity curves (`ts, symbol, aggregate, equity,
/// drawdown`, `symbol` null as on every aggregate row) as Parquet, e.g. the
/// best sweep combination's portfolio and benchmark.
pub fn write_curves_parquet(
    path: &Path,
    curves: &[(Aggregate, &crate::backtest::Curve)],
) -> Result<(), OutputError> {
    let (mut ts, mut agg, mut eq, mut dd) = (vec![], vec![], vec![], vec![]);
    for (a, c) in curves {
        ts.extend_from_slice(&c.ts);
        agg.extend(std::iter::repeat_n(a.name(), c.ts.len()));
        eq.extend_from_slice(&c.equity);
        dd.extend(drawdowns(&c.equity));
    }
    let b = batch(
        path,
        vec![
            ts_field("ts", false),
            Field::new("symbol", DataType::Utf8, true),
            Field::new(AGGREGATE_COLUMN, DataType::Utf8, true),
            Field::new("equity", DataType::Float64, false),
            Field::new("drawdown", DataType::Float64, false),
        ],
        vec![
            ts_array(ts),
            Arc::new(StringArray::new_null(agg.len())),
            Arc::new(StringArray::from(agg)),
            Arc::new(Float64Array::from(eq)),
            Arc::new(Float64Array::from(dd)),
        ],
    )?;
    write_parquet(path, &b)
}
