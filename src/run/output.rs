//! The run directory: `run.json`, `metrics.json`, `equity.parquet`,
//! `trades.parquet`, `signals.parquet` (ts, symbol, avg, dir; `close` with
//! `--outputs close`), in the layout of [`crate::parquet_write`]. Written
//! into a temporary sibling directory and renamed into place, so an
//! interrupted run never leaves a half-written directory that looks
//! complete.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int8Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow_buffer::{BooleanBuffer, NullBuffer};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_writer::ArrowColumnWriter;
use rayon::prelude::*;
use serde::Serialize;

use crate::parquet_write::{
    write_column, Chunk, Column, IntRunsEncoder, RunsEncoder, Table, Unsynced, ValueEncoder,
    WriteError,
};

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
/// list their `files`. 3: the Parquet layout of [`crate::parquet_write`];
/// `signals.parquet` without `close` and `equity.parquet` without
/// `drawdown` unless asked (`--outputs close,drawdown`); `run.json` has
/// `outputs`. 4: one manifest shape ([`crate::job::manifest`]): the
/// resolved parameters are `params` in `sweep.json` too (was `base`), and
/// `data.sources` lists `{path, size, mtime_ns, blake3}` in both; the
/// result files are unchanged (readers accept 3).
pub const RUN_FORMAT_VERSION: u32 = 4;

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

/// Writes `batch` to `path` as one Parquet file in atc-bt's layout
/// ([`crate::parquet_write`]); `keys` are the columns readers filter on.
pub fn write_parquet(path: &Path, batch: &RecordBatch, keys: &[&str]) -> Result<(), OutputError> {
    crate::parquet_write::write_batch(path, batch, keys).map_err(OutputError::from)
}

impl From<WriteError> for OutputError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Io { path, source } => OutputError::Io { path, source },
            WriteError::Parquet { path, message } => OutputError::Parquet { path, message },
        }
    }
}

/// What a run writes besides `run.json` and `metrics.json` (`--outputs`).
/// `equity.parquet` always holds the portfolio and benchmark rows (the
/// report draws them); the flags add the per-symbol rows and files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Outputs {
    /// Each symbol's rows in `equity.parquet`.
    pub equity: bool,
    /// `trades.parquet`.
    pub trades: bool,
    /// `signals.parquet` (`ts, symbol, avg, dir`).
    pub signals: bool,
    /// The `close` column of `signals.parquet` (a copy of the input's
    /// close; implies `signals`).
    pub close: bool,
    /// The `drawdown` column of `equity.parquet` (derived from `equity`:
    /// `1 − equity / running peak`).
    pub drawdown: bool,
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs {
            equity: true,
            trades: true,
            signals: true,
            close: false,
            drawdown: false,
        }
    }
}

/// The words `--outputs` takes, with what each adds.
pub const OUTPUT_NAMES: [(&str, &str); 6] = [
    ("metrics", "run.json and metrics.json only (always written)"),
    ("equity", "per-symbol rows of equity.parquet"),
    ("trades", "trades.parquet"),
    ("signals", "signals.parquet (ts, symbol, avg, dir)"),
    ("close", "signals.parquet with the input's close column"),
    ("drawdown", "the drawdown column of equity.parquet"),
];

impl Outputs {
    /// Parses a comma list of [`OUTPUT_NAMES`] (`metrics` alone writes no
    /// per-symbol rows; `all` is every one).
    pub fn parse(text: &str) -> Result<Outputs, String> {
        let mut o = Outputs {
            equity: false,
            trades: false,
            signals: false,
            close: false,
            drawdown: false,
        };
        let words: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            return Err("no output named; say `metrics` for metrics alone".into());
        }
        if words.contains(&"metrics") && words.len() > 1 {
            return Err(format!(
                "`metrics` means metrics alone, but {} names other outputs too; drop one",
                crate::term::quote(text)
            ));
        }
        for word in words {
            match word {
                "metrics" => {}
                "equity" => o.equity = true,
                "trades" => o.trades = true,
                "signals" => o.signals = true,
                "close" => {
                    o.signals = true;
                    o.close = true;
                }
                "drawdown" => o.drawdown = true,
                "all" => {
                    o = Outputs {
                        equity: true,
                        trades: true,
                        signals: true,
                        close: true,
                        drawdown: true,
                    }
                }
                other => {
                    return Err(format!(
                        "unknown output `{}`; expected a comma list of {} or all",
                        crate::term::quote(other),
                        OUTPUT_NAMES.map(|n| n.0).join(", ")
                    ))
                }
            }
        }
        Ok(o)
    }

    /// The canonical comma list (what [`Outputs::parse`] reads back).
    pub fn names(&self) -> String {
        let mut v = vec!["metrics"];
        for (on, name) in [
            (self.equity, "equity"),
            (self.trades, "trades"),
            (self.signals && !self.close, "signals"),
            (self.close, "close"),
            (self.drawdown, "drawdown"),
        ] {
            if on {
                v.push(name);
            }
        }
        v.join(",")
    }

    /// The result files these outputs write, `run.json` and
    /// `metrics.json` included.
    pub fn files(&self) -> Vec<&'static str> {
        let mut v = vec!["run.json", "metrics.json", "equity.parquet"];
        if self.signals {
            v.push("signals.parquet");
        }
        if self.trades {
            v.push("trades.parquet");
        }
        v
    }
}

/// Symbols per batch of the per-bar files: a batch's rows are encoded
/// together while the next chunk of symbols computes.
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

/// Drawdown as a positive fraction below the running peak: the
/// `drawdown` column of `equity.parquet`, and what the report draws.
pub fn drawdowns(equity: &[f64]) -> Vec<f64> {
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

/// The columns readers filter the per-bar files on.
const BAR_KEYS: [&str; 3] = ["ts", "symbol", AGGREGATE_COLUMN];

/// `gross` (shared cash only): the account's gross exposure on the
/// portfolio rows, null on the others; equal-split files do not have the
/// column, so their bytes are those of before it existed.
fn equity_schema(drawdown: bool, gross: bool) -> Arc<Schema> {
    let mut f = vec![
        ts_field("ts", false),
        Field::new("symbol", DataType::Utf8, true),
        Field::new(AGGREGATE_COLUMN, DataType::Utf8, true),
        Field::new("equity", DataType::Float64, false),
        Field::new("position", DataType::Float64, true),
    ];
    if gross {
        f.push(Field::new("gross", DataType::Float64, true));
    }
    if drawdown {
        f.push(Field::new("drawdown", DataType::Float64, false));
    }
    Arc::new(Schema::new(f))
}

fn signals_schema(close: bool) -> Arc<Schema> {
    let mut f = vec![
        ts_field("ts", false),
        Field::new("symbol", DataType::Utf8, false),
    ];
    if close {
        f.push(Field::new("close", DataType::Float64, false));
    }
    f.push(Field::new("avg", DataType::Float64, true));
    f.push(Field::new("dir", DataType::Int8, false));
    Arc::new(Schema::new(f))
}

/// A per-bar column of `equity.parquet` or `signals.parquet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BarColumn {
    Ts,
    Symbol,
    Aggregate,
    Equity,
    Position,
    Gross,
    Drawdown,
    Close,
    Avg,
    Dir,
}

impl BarColumn {
    fn of(name: &str) -> Option<BarColumn> {
        Some(match name {
            "ts" => BarColumn::Ts,
            "symbol" => BarColumn::Symbol,
            AGGREGATE_COLUMN => BarColumn::Aggregate,
            "equity" => BarColumn::Equity,
            "position" => BarColumn::Position,
            "gross" => BarColumn::Gross,
            "drawdown" => BarColumn::Drawdown,
            "close" => BarColumn::Close,
            "avg" => BarColumn::Avg,
            "dir" => BarColumn::Dir,
            _ => return None,
        })
    }
}

/// One symbol's per-bar columns.
struct SymbolColumns {
    /// As Arrow arrays, indexed by [`BarColumn`]. The vectors of the
    /// symbol's result become the arrays (moved, never copied); `None`
    /// where no file wants the column, and for `symbol` and `aggregate`,
    /// which are runs of one value ([`RunsEncoder`]): the name on each of
    /// the symbol's rows, null.
    arrays: [Option<ArrayRef>; BAR_COLUMNS],
    symbol: String,
    rows: usize,
}

/// How many [`BarColumn`]s there are.
const BAR_COLUMNS: usize = 10;

/// Takes a symbol's result apart into the columns `want` (by
/// [`BarColumn`]) and its trades.
/// `fill`: the batch's shared constant columns.
fn take_columns(
    s: SymbolResult,
    want: &[bool; BAR_COLUMNS],
    fill: &Fill,
) -> (SymbolColumns, Vec<Trade>) {
    let SymbolResult {
        run,
        close,
        avg,
        dir,
        contribution,
        ..
    } = s;
    let n = run.ts.len();
    let mut c: [Option<ArrayRef>; BAR_COLUMNS] = Default::default();
    let on = |k: BarColumn| want[k as usize];
    if on(BarColumn::Drawdown) {
        c[BarColumn::Drawdown as usize] = Some(Arc::new(Float64Array::from(drawdowns(
            contribution.as_deref().unwrap_or(&run.equity),
        ))));
    }
    if on(BarColumn::Ts) {
        c[BarColumn::Ts as usize] = Some(ts_array(run.ts));
    }
    if on(BarColumn::Gross) {
        // Only the account's rows carry a gross.
        c[BarColumn::Gross as usize] = Some(fill.nulls(&fill.null_floats, n));
    }
    if on(BarColumn::Equity) {
        c[BarColumn::Equity as usize] = Some(Arc::new(Float64Array::from(run.equity)));
    }
    if on(BarColumn::Position) {
        c[BarColumn::Position as usize] = Some(Arc::new(Float64Array::from(run.position)));
    }
    if on(BarColumn::Close) {
        c[BarColumn::Close as usize] = Some(Arc::new(Float64Array::from(close)));
    }
    if on(BarColumn::Avg) {
        // NaN (warm-up) is written as null.
        let nulls = NullBuffer::new(BooleanBuffer::collect_bool(avg.len(), |i| !avg[i].is_nan()));
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        c[BarColumn::Avg as usize] = Some(Arc::new(Float64Array::new(avg.into(), nulls)));
    }
    if on(BarColumn::Dir) {
        c[BarColumn::Dir as usize] = Some(Arc::new(Int8Array::from(dir)));
    }
    let columns = SymbolColumns {
        arrays: c,
        symbol: run.symbol,
        rows: n,
    };
    (columns, run.trades)
}

/// The all-null `gross` column of a batch's symbols (only the account's
/// rows carry a gross), allocated once per batch and sliced for each
/// symbol (a slice shares the buffer). The Parquet bytes are those of
/// per-symbol arrays.
struct Fill {
    null_floats: ArrayRef,
}

impl Fill {
    /// Columns for symbols of up to `rows` bars.
    fn new(rows: usize) -> Fill {
        Fill {
            null_floats: Arc::new(Float64Array::new_null(rows)),
        }
    }

    /// `n` rows of the all-null column `nulls`.
    fn nulls(&self, nulls: &ArrayRef, n: usize) -> ArrayRef {
        if n <= nulls.len() {
            nulls.slice(0, n)
        } else {
            arrow_array::new_null_array(nulls.data_type(), n)
        }
    }
}

/// Splits a batch into row groups of whole symbols of at most
/// [`crate::parquet_write::ROW_GROUP_ROWS`] rows (a longer symbol is a row
/// group alone), so a reader that wants a symbol reads one row group.
fn row_groups(batch: &[SymbolResult]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut rows) = (0, 0);
    for (i, s) in batch.iter().enumerate() {
        let n = s.run.ts.len();
        if i > start && rows + n > crate::parquet_write::ROW_GROUP_ROWS {
            out.push(start..i);
            start = i;
            rows = 0;
        }
        rows += n;
    }
    if start < batch.len() {
        out.push(start..batch.len());
    }
    out
}

/// What the run keeps of the symbols once written, summed in output
/// order: the portfolio, trade statistics, fees and summaries.
struct Book {
    portfolio: PortfolioSum,
    /// The common calendar of the symbols so far (`None`: none yet), and
    /// whether they differ.
    calendar: Option<(Calendar, bool)>,
    trades: Vec<TradeStat>,
    fees: Vec<f64>,
    symbols: Vec<SymbolSummary>,
    engine_bars: usize,
}

impl Book {
    fn add(&mut self, s: &SymbolResult) {
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
    }
}

/// Writes a run directory's result files while the run streams symbols
/// through it: `equity.parquet`, `signals.parquet` and `trades.parquet` a
/// batch of [`SYMBOLS_PER_BATCH`] symbols at a time, the portfolio summed
/// as the symbols arrive ([`PortfolioSum`]), and `metrics.json` at
/// [`RunWriter::finish`]. Memory holds a batch or two of per-bar rows, the
/// trades' statistics and the per-symbol metrics, never every symbol's
/// bars.
///
/// [`RunWriter::push`] only queues a symbol; [`RunWriter::drain`] sums
/// the full batches into the portfolio and encodes them, every column of
/// the three files on its own rayon task, so a caller can run it beside
/// the computation of the next symbols ([`crate::run::run_to_dir`] does).
/// The bytes depend only on the symbols pushed and their order (batches
/// always hold the same symbols, row groups are cut at symbol boundaries),
/// so a streamed run, [`write_run_dir`] of an in-memory result and a merge
/// of shards give identical files at any thread count.
pub struct RunWriter {
    dir: PathBuf,
    files: Files,
    pending: Vec<SymbolResult>,
    ready: Vec<Vec<SymbolResult>>,
    book: Book,
    capital_per_symbol: f64,
    settings: MetricsSettings,
    /// The shared account's curve, written instead of the symbols' sum.
    account: Option<crate::backtest::Curve>,
    /// Shared cash: `equity.parquet` has a `gross` column.
    gross: bool,
}

/// The Parquet files of a run being written.
struct Files {
    outputs: Outputs,
    equity: Table,
    signals: Option<Table>,
    trades: Option<Table>,
    ts_memo: TsMemo,
}

impl RunWriter {
    /// Starts the result files of `outputs` in `dir` (an existing, empty
    /// directory). `timeline` must contain every timestamp of the runs to
    /// be pushed (it may hold more; see [`PortfolioSum`]); the portfolio's
    /// metrics use `settings`. `shared`: a shared-cash run, whose
    /// `equity.parquet` has the account's `gross` column (its curve comes
    /// from [`RunWriter::set_portfolio`]).
    pub fn create(
        dir: &Path,
        timeline: Vec<i64>,
        capital_per_symbol: f64,
        settings: MetricsSettings,
        outputs: Outputs,
        shared: bool,
    ) -> Result<RunWriter, OutputError> {
        let signals = outputs
            .signals
            .then(|| {
                Table::create(
                    &dir.join("signals.parquet"),
                    signals_schema(outputs.close),
                    &BAR_KEYS,
                )
            })
            .transpose()?;
        let trade_table = outputs
            .trades
            .then(|| Table::create(&dir.join("trades.parquet"), trades_schema(), &["symbol"]))
            .transpose()?;
        Ok(RunWriter {
            dir: dir.to_path_buf(),
            files: Files {
                outputs,
                equity: Table::create(
                    &dir.join("equity.parquet"),
                    equity_schema(outputs.drawdown, shared),
                    &BAR_KEYS,
                )?,
                signals,
                trades: trade_table,
                ts_memo: TsMemo::default(),
            },
            pending: Vec::with_capacity(SYMBOLS_PER_BATCH),
            ready: Vec::new(),
            book: Book {
                portfolio: PortfolioSum::new(timeline, capital_per_symbol),
                calendar: None,
                trades: Vec::new(),
                fees: Vec::new(),
                symbols: Vec::new(),
                engine_bars: 0,
            },
            capital_per_symbol,
            settings,
            account: None,
            gross: shared,
        })
    }

    /// The result files being written.
    pub fn outputs(&self) -> Outputs {
        self.files.outputs
    }

    /// Shared cash: the portfolio is `curve` (the account's equity and
    /// gross), not the sum of the symbols' rows (their market values);
    /// the benchmark is still their buy & hold sum.
    pub fn set_portfolio(&mut self, curve: crate::backtest::Curve) {
        self.account = Some(curve);
    }

    /// Adds the next symbol (in output order). Cheap: the symbol waits in
    /// its batch for [`RunWriter::drain`] (called here too once two full
    /// batches wait, so memory stays bounded without it).
    pub fn push(&mut self, s: SymbolResult) -> Result<(), OutputError> {
        self.pending.push(s);
        if self.pending.len() == SYMBOLS_PER_BATCH {
            let full = std::mem::replace(&mut self.pending, Vec::with_capacity(SYMBOLS_PER_BATCH));
            self.ready.push(full);
        }
        if self.ready.len() >= 2 {
            self.drain()?;
        }
        Ok(())
    }

    /// Encodes and writes every full batch waiting.
    pub fn drain(&mut self) -> Result<(), OutputError> {
        for batch in std::mem::take(&mut self.ready) {
            self.write_batch(batch)?;
        }
        Ok(())
    }

    /// Writes one batch: the book adds its symbols in order, then its row
    /// groups go into the files ([`Files::encode`]).
    fn write_batch(&mut self, batch: Vec<SymbolResult>) -> Result<(), OutputError> {
        for s in &batch {
            self.book.add(s);
        }
        self.files.encode(batch)
    }

    /// Writes the last batch, the portfolio and benchmark rows and
    /// `metrics.json`, closes the files and returns the run's summary.
    ///
    /// The portfolio's metrics are computed while the last batches are
    /// encoded (the book has every symbol once they are added).
    pub fn finish(mut self, skipped: Vec<Skipped>) -> Result<RunSummary, OutputError> {
        let last = std::mem::take(&mut self.pending);
        self.ready.push(last);
        let batches = std::mem::take(&mut self.ready);
        for s in batches.iter().flatten() {
            self.book.add(s);
        }
        let RunWriter {
            dir,
            mut files,
            book,
            capital_per_symbol,
            settings,
            account,
            gross,
            ..
        } = self;
        let (metrics, encoded) = rayon::join(
            || {
                let (summed, benchmark) = book.portfolio.finish();
                let portfolio = account.unwrap_or(summed);
                let calendar = match book.calendar {
                    Some((c, false)) => c,
                    _ => Calendar::utc(),
                };
                let (portfolio_metrics, benchmark_metrics) = super::portfolio_metrics(
                    &portfolio,
                    &benchmark,
                    &book.trades,
                    &book.fees,
                    capital_per_symbol,
                    &settings.options(calendar),
                );
                let warnings = super::frequency_warnings(
                    book.symbols
                        .iter()
                        .map(|s| (s.symbol.as_str(), s.metrics.periods_per_year)),
                    &portfolio_metrics,
                );
                (
                    portfolio,
                    benchmark,
                    portfolio_metrics,
                    benchmark_metrics,
                    warnings,
                )
            },
            || batches.into_iter().try_for_each(|b| files.encode(b)),
        );
        encoded?;
        let (portfolio, benchmark, portfolio_metrics, benchmark_metrics, warnings) = metrics;
        let Files {
            outputs,
            mut equity,
            signals,
            trades,
            ..
        } = files;
        equity.write(aggregate_columns(
            &[
                (Aggregate::Portfolio, &portfolio),
                (Aggregate::Benchmark, &benchmark),
            ],
            outputs.drawdown,
            gross,
        ))?;
        let summary = RunSummary {
            symbols: book.symbols,
            skipped,
            portfolio,
            benchmark,
            portfolio_metrics,
            benchmark_metrics,
            capital_per_symbol,
            engine_bars: book.engine_bars,
            warnings,
        };
        let (a, b) = rayon::join(|| equity.close(), || signals.map(Table::close).transpose());
        let large: Vec<Unsynced> = std::iter::once(a?).chain(b?).collect();
        // Syncing the two large files waits on the disk with no work for
        // the CPU (60–180 ms at 4,000 × 2,500 bars here): it waits on
        // threads of its own while rayon's workers write `trades.parquet`
        // and `metrics.json` (whose syncs wait here after), instead of
        // holding the workers idle first.
        std::thread::scope(|s| {
            let syncing: Vec<_> = large
                .iter()
                .map(|f| {
                    let thread = std::thread::Builder::new().name("atc-bt-sync".into());
                    (f, thread.spawn_scoped(s, || f.sync()).ok())
                })
                .collect();
            let (c, d) = rayon::join(
                || trades.map(Table::close).transpose(),
                || write_metrics_json(&dir.join("metrics.json"), &summary),
            );
            let small = c?.into_iter().chain(Some(d?));
            let synced = small.map(|f| f.sync()).collect::<Result<Vec<()>, _>>();
            syncing
                .into_iter()
                .map(|(f, thread)| match thread {
                    Some(t) => t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    // No thread could be started: sync here.
                    None => f.sync(),
                })
                .collect::<Result<Vec<()>, _>>()
                .and(synced)
                .map_err(OutputError::from)
        })?;
        Ok(summary)
    }
}

impl Files {
    /// Encodes one batch of symbols: their row groups of
    /// `equity.parquet` and `signals.parquet` (every column of every file
    /// on its own rayon task) beside their trades' rows.
    fn encode(&mut self, batch: Vec<SymbolResult>) -> Result<(), OutputError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tables: Vec<&mut Table> = Vec::new();
        if self.outputs.equity {
            tables.push(&mut self.equity);
        }
        if let Some(t) = self.signals.as_mut() {
            tables.push(t);
        }
        let mut want = [false; BAR_COLUMNS];
        for t in &tables {
            for f in t.schema().fields() {
                if let Some(c) = BarColumn::of(f.name()) {
                    want[c as usize] = true;
                }
            }
        }
        let groups = row_groups(&batch);
        let longest = batch.iter().map(|s| s.run.ts.len()).max().unwrap_or(0);
        let fill = Fill::new(longest);
        let mut trades: Vec<Trade> =
            Vec::with_capacity(batch.iter().map(|s| s.run.trades.len()).sum());
        let mut symbols = batch.into_iter();
        let parts: Vec<Vec<SymbolColumns>> = groups
            .into_iter()
            .map(|g| {
                symbols
                    .by_ref()
                    .take(g.len())
                    .map(|s| {
                        let (c, t) = take_columns(s, &want, &fill);
                        trades.extend(t);
                        c
                    })
                    .collect()
            })
            .collect();
        let trade_table = self.trades.as_mut();
        let ts_memo = &mut self.ts_memo;
        let (bars, trades) = rayon::join(
            || {
                parts
                    .iter()
                    .try_for_each(|cols| encode_bar_group(&mut tables, cols, Some(&mut *ts_memo)))
            },
            || match trade_table {
                Some(t) if !trades.is_empty() => t
                    .write_columns(trade_columns(&trades))
                    .map_err(OutputError::from),
                _ => Ok(()),
            },
        );
        bars.and(trades)
    }
}

/// The `equity.parquet` rows of the aggregate curves (portfolio,
/// benchmark): `symbol` and `position` null, drawdown (with `drawdown`)
/// from the curve, and with `gross` (shared cash) the portfolio's gross
/// exposure (null on the benchmark's rows).
fn aggregate_columns(
    curves: &[(Aggregate, &crate::backtest::Curve)],
    drawdown: bool,
    gross: bool,
) -> Vec<ArrayRef> {
    let (mut ts, mut agg, mut eq, mut dd) = (vec![], vec![], vec![], vec![]);
    let mut gr: Vec<Option<f64>> = Vec::new();
    for (a, c) in curves {
        ts.extend_from_slice(&c.ts);
        agg.extend(std::iter::repeat_n(a.name(), c.ts.len()));
        eq.extend_from_slice(&c.equity);
        if gross {
            if *a == Aggregate::Portfolio && c.gross.len() == c.ts.len() {
                gr.extend(c.gross.iter().map(|&g| Some(g)));
            } else {
                gr.extend(std::iter::repeat_n(None, c.ts.len()));
            }
        }
        if drawdown {
            dd.extend(drawdowns(&c.equity));
        }
    }
    let n = ts.len();
    let mut cols: Vec<ArrayRef> = vec![
        ts_array(ts),
        Arc::new(StringArray::new_null(n)),
        Arc::new(StringArray::from(agg)),
        Arc::new(Float64Array::from(eq)),
        Arc::new(Float64Array::from(vec![None::<f64>; n])),
    ];
    if gross {
        cols.push(Arc::new(Float64Array::from(gr)));
    }
    if drawdown {
        cols.push(Arc::new(Float64Array::from(dd)));
    }
    cols
}

/// The `ts` column chunk of the last row group encoded, with its values
/// and how they were split between symbols: the next group's chunk when
/// both are the same (a run whose symbols share a calendar has the same
/// `ts` in every full row group). The split counts: the column writer
/// gets a symbol at a time, and cuts pages only between the batches it
/// is fed.
#[derive(Default)]
struct TsMemo {
    values: Vec<i64>,
    lengths: Vec<usize>,
    chunk: Option<Chunk>,
}

impl TsMemo {
    /// The chunk kept, if `group`'s `ts` values are the ones it was
    /// encoded from.
    fn chunk_of(&self, group: &[SymbolColumns]) -> Option<Chunk> {
        let chunk = self.chunk.as_ref()?;
        if group.len() != self.lengths.len() {
            return None;
        }
        let mut at = 0;
        for (c, &n) in group.iter().zip(&self.lengths) {
            let ts = c.arrays[BarColumn::Ts as usize]
                .as_ref()?
                .as_primitive_opt::<TimestampMicrosecondType>()?;
            let v = ts.values();
            if ts.null_count() > 0
                || v.len() != n
                || self.values.get(at..at + v.len())? != v.as_ref()
            {
                return None;
            }
            at += v.len();
        }
        (at == self.values.len())
            .then(|| chunk.pages_clone())
            .flatten()
    }

    /// Keeps `chunk`, encoded from `group`'s `ts`.
    fn keep(&mut self, group: &[SymbolColumns], chunk: &Chunk) {
        self.values.clear();
        self.lengths.clear();
        for c in group {
            match c.arrays[BarColumn::Ts as usize]
                .as_ref()
                .and_then(|a| a.as_primitive_opt::<TimestampMicrosecondType>())
            {
                Some(ts) => {
                    self.values.extend_from_slice(ts.values());
                    self.lengths.push(ts.len());
                }
                // Nothing to compare with: keep nothing.
                None => {
                    self.chunk = None;
                    return;
                }
            }
        }
        self.chunk = chunk.pages_clone();
    }
}

/// Encodes one row group of whole symbols (their columns, in order) into
/// each of `tables` (the per-bar files), every column of every file on its
/// own rayon task, fed symbol by symbol, and appends the groups in file
/// order.
///
/// With `memo`, the `ts` column is encoded once for all the files (their
/// `ts` is the same column, written with the same properties: the chunk
/// is the same bytes) and not at all when its values are the last
/// group's ([`TsMemo`]); the files' bytes are those of encoding every
/// `ts` (tested).
fn encode_bar_group(
    tables: &mut [&mut Table],
    group: &[SymbolColumns],
    memo: Option<&mut TsMemo>,
) -> Result<(), OutputError> {
    struct Job {
        file: usize,
        encoder: Encoder,
        field: Arc<Field>,
        column: BarColumn,
    }
    /// Float and timestamp columns skip the Arrow writer's per-row work
    /// ([`ValueEncoder`]), `symbol` and `aggregate` are runs
    /// ([`RunsEncoder`]), `dir` too ([`IntRunsEncoder`]); the others go
    /// through the Arrow writer. `Same`: the shared `ts` chunk (kept, or
    /// encoded for the first file), filled in after.
    enum Encoder {
        Values(ValueEncoder),
        Runs(RunsEncoder),
        IntRuns(IntRunsEncoder),
        Arrow(Box<ArrowColumnWriter>),
        Same,
    }
    let kept = memo.as_deref().and_then(|m| m.chunk_of(group));
    let reused = kept.is_some();
    let mut ts_encoded = false;
    let mut jobs: Vec<Job> = Vec::new();
    for (file, t) in tables.iter().enumerate() {
        let writers = t.column_writers()?;
        for (i, (writer, field)) in writers
            .into_iter()
            .zip(t.schema().fields().iter())
            .enumerate()
        {
            let column = BarColumn::of(field.name()).ok_or_else(|| OutputError::Parquet {
                path: t.path().to_path_buf(),
                message: format!("no per-bar column `{}`", field.name()),
            })?;
            let runs = match column {
                BarColumn::Symbol | BarColumn::Aggregate => t.runs_encoder(i),
                _ => None,
            };
            let int_runs = match column {
                BarColumn::Dir => t.int_runs_encoder(i),
                _ => None,
            };
            let shared = memo.is_some() && column == BarColumn::Ts;
            let encoder = match (t.value_encoder_with_own_statistics(i), runs) {
                (_, _) if shared && (reused || ts_encoded) => Encoder::Same,
                (Some(f), _) => {
                    ts_encoded |= shared;
                    Encoder::Values(f)
                }
                (None, Some(r)) => Encoder::Runs(r),
                (None, None) => match int_runs {
                    Some(r) => Encoder::IntRuns(r),
                    None => Encoder::Arrow(Box::new(writer)),
                },
            };
            jobs.push(Job {
                file,
                encoder,
                field: field.clone(),
                column,
            });
        }
    }
    let done: Vec<(usize, BarColumn, Result<Option<Chunk>, String>)> = jobs
        .into_par_iter()
        .map(|j| {
            let arrays = group
                .iter()
                .filter_map(|c| c.arrays[j.column as usize].as_ref());
            let r = match j.encoder {
                Encoder::Same => return (j.file, j.column, Ok(None)),
                Encoder::Values(f) => f.encode(arrays.map(|a| a.as_ref())),
                Encoder::IntRuns(r) => arrays
                    .map(|a| {
                        a.as_primitive_opt::<Int8Type>()
                            .filter(|a| a.null_count() == 0)
                            .map(|a| a.values().as_ref())
                            .ok_or_else(|| {
                                format!(
                                    "column `{}`: not 8-bit values without nulls",
                                    j.field.name()
                                )
                            })
                    })
                    .collect::<Result<Vec<&[i8]>, String>>()
                    .and_then(|parts| r.encode(parts)),
                Encoder::Runs(r) => {
                    let runs: Vec<(Option<&str>, usize)> = group
                        .iter()
                        .map(|c| match j.column {
                            BarColumn::Symbol => (Some(c.symbol.as_str()), c.rows),
                            _ => (None, c.rows),
                        })
                        .collect();
                    r.encode(&runs)
                }
                Encoder::Arrow(mut w) => arrays
                    .cloned()
                    .try_for_each(|a| write_column(&mut w, &j.field, a))
                    .and_then(|_| w.close().map(Chunk::Arrow).map_err(|e| e.to_string())),
            };
            (j.file, j.column, r.map(Some))
        })
        .collect();
    let mut per_file: Vec<Vec<Chunk>> = tables.iter().map(|_| Vec::new()).collect();
    let mut ts: Option<Chunk> = kept;
    for (file, column, r) in done {
        let c = r.map_err(|message| OutputError::Parquet {
            path: tables[file].path().to_path_buf(),
            message,
        })?;
        // Jobs come back in file order: the encoded `ts` (or the kept one)
        // before its copies.
        let c =
            match (c, column == BarColumn::Ts && memo.is_some()) {
                (Some(c), true) => {
                    ts = c.pages_clone();
                    c
                }
                (Some(c), false) => c,
                (None, _) => ts.as_ref().and_then(Chunk::pages_clone).ok_or_else(|| {
                    OutputError::Parquet {
                        path: tables[file].path().to_path_buf(),
                        message: "no `ts` chunk to share".into(),
                    }
                })?,
            };
        per_file[file].push(c);
    }
    if let (Some(m), Some(c), false) = (memo, ts.as_ref(), reused) {
        m.keep(group, c);
    }
    for (t, chunks) in tables.iter_mut().zip(per_file) {
        t.append_chunks(chunks)?;
    }
    Ok(())
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

/// The columns of `trades.parquet`; `symbol` as runs (the trades come
/// symbol by symbol).
fn trade_columns(trades: &[Trade]) -> Vec<Column<'_>> {
    let mut symbols: Vec<(Option<&str>, usize)> = Vec::new();
    for t in trades {
        match symbols.last_mut() {
            Some((Some(s), n)) if **s == *t.symbol => *n += 1,
            _ => symbols.push((Some(&t.symbol), 1)),
        }
    }
    let arrays: Vec<ArrayRef> = vec![
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
    ];
    std::iter::once(Column::Runs(symbols))
        .chain(arrays.into_iter().map(Column::Array))
        .collect()
}

/// `metrics.json`: `{"benchmark": {...}, "portfolio": {...}, "symbols":
/// {...}}`, symbols by name, each metrics object in the order of the
/// metric facts table ([`crate::backtest::METRICS`]): what
/// [`write_metrics_json`] writes, in parallel (tested against this).
#[cfg(test)]
struct MetricsDoc<'a>(&'a RunSummary);

#[cfg(test)]
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
#[cfg(test)]
struct SymbolMetrics<'a>(&'a RunSummary);

#[cfg(test)]
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

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), OutputError> {
    write_json_with(path, |w| {
        serde_json::to_writer_pretty(w, value).map_err(std::io::Error::other)
    })
}

/// Writes a new file at `path` (replacing, never rewriting in place: the
/// file may be a hard link into the run cache, a restored `run.json`) with
/// `body`, then a newline, and syncs it.
fn write_json_with(
    path: &Path,
    body: impl FnOnce(&mut std::io::BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), OutputError> {
    Ok(write_json_unsynced(path, body)?.sync()?)
}

/// [`write_json_with`] without the sync, left to the caller.
fn write_json_unsynced(
    path: &Path,
    body: impl FnOnce(&mut std::io::BufWriter<File>) -> std::io::Result<()>,
) -> Result<Unsynced, OutputError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(path)(e)),
        _ => {}
    }
    let f = File::create(path).map_err(io_err(path))?;
    let mut w = std::io::BufWriter::new(f);
    body(&mut w).map_err(io_err(path))?;
    w.write_all(b"\n").map_err(io_err(path))?;
    let f = w.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
    Ok(Unsynced::new(path.to_path_buf(), f))
}

/// Symbols of `metrics.json` serialized at once, in parallel: the text
/// held in memory is bounded whatever the number of symbols.
const JSON_SYMBOLS_AT_ONCE: usize = 2048;

/// `metrics.json`: the bytes of `serde_json::to_writer_pretty` of
/// [`MetricsDoc`] (tested), with the symbols' entries serialized in
/// parallel, [`JSON_SYMBOLS_AT_ONCE`] at a time, and written in name
/// order. Serialized on one thread, it was the last 2% of a run's wall
/// time, with the other core idle.
fn write_metrics_json(path: &Path, summary: &RunSummary) -> Result<Unsynced, OutputError> {
    use std::io::Write as _;
    write_json_unsynced(path, |w| {
        let mut head = Vec::new();
        head.extend_from_slice(b"{\n  \"benchmark\": ");
        pretty_at(&summary.benchmark_metrics, 1, &mut head)?;
        head.extend_from_slice(b",\n  \"portfolio\": ");
        pretty_at(&summary.portfolio_metrics, 1, &mut head)?;
        head.extend_from_slice(b",\n  \"symbols\": ");
        w.write_all(&head)?;
        let mut by_name: Vec<&SymbolSummary> = summary.symbols.iter().collect();
        by_name.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        if by_name.is_empty() {
            w.write_all(b"{}")?;
        } else {
            w.write_all(b"{\n")?;
            for (k, part) in by_name.chunks(JSON_SYMBOLS_AT_ONCE).enumerate() {
                let texts = part
                    .par_chunks(64)
                    .map(|few| {
                        let mut out = Vec::new();
                        for x in few {
                            out.extend_from_slice(b",\n    ");
                            serde_json::to_writer(&mut out, &x.symbol)?;
                            out.extend_from_slice(b": ");
                            pretty_at(&x.metrics, 2, &mut out)?;
                        }
                        Ok(out)
                    })
                    .collect::<std::io::Result<Vec<Vec<u8>>>>()?;
                for (j, t) in texts.iter().enumerate() {
                    // The first entry has no comma before it.
                    let skip = if k == 0 && j == 0 { 2 } else { 0 };
                    w.write_all(&t[skip..])?;
                }
            }
            w.write_all(b"\n  }")?;
        }
        w.write_all(b"\n}")
    })
}

/// Appends `value` as `to_writer_pretty` writes it `depth` levels deep:
/// each line after the first indented two spaces a level (a JSON string
/// holds no raw newline).
fn pretty_at<T: Serialize>(value: &T, depth: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    let start = out.len();
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::other)?;
    if depth > 0 && out[start..].contains(&b'\n') {
        let text = out.split_off(start);
        let indent = "  ".repeat(depth);
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.push(b'\n');
                out.extend_from_slice(indent.as_bytes());
            }
            out.extend_from_slice(line);
        }
    }
    Ok(())
}

/// Prepares to write the result directory `out`: refuses an `out` that
/// holds anything atc-bt did not write (unless `force`), removes stale
/// temporaries of killed commands beside it, and creates the empty
/// temporary sibling `.<name>.atc-bt-partial-<tag>` the results are written into
/// before [`commit_run_dir`] renames it (see [`crate::files::out`]).
pub fn partial_dir(out: &Path, force: bool) -> Result<PathBuf, OutputError> {
    Ok(crate::files::out::begin_dir(out, force)?)
}

/// Writes the whole run directory at `out` atomically (the files of
/// `outputs`): everything goes to a
/// temporary sibling first, which is renamed to `out` when complete. An
/// existing `out` is replaced only after the new one is complete, and only
/// if atc-bt wrote everything in it (or with `force`).
pub fn write_run_dir(
    out: &Path,
    r: &RunResult,
    run_json: &serde_json::Value,
    force: bool,
    outputs: Outputs,
) -> Result<(), OutputError> {
    let tmp = write_run_partial(out, r, force, outputs)?;
    commit_run_dir(&tmp, out, run_json, force, |_| Ok(()))
}

/// The first half of [`write_run_dir`]: `r`'s files (all but `run.json`)
/// in a new temporary sibling of `out` ([`partial_dir`]), returned for
/// [`commit_run_dir`].
pub fn write_run_partial(
    out: &Path,
    r: &RunResult,
    force: bool,
    outputs: Outputs,
) -> Result<PathBuf, OutputError> {
    let tmp = partial_dir(out, force)?;
    let written = (|| {
        let mut w = RunWriter::create(
            &tmp,
            r.portfolio.ts.clone(),
            r.capital_per_symbol,
            r.settings.clone(),
            outputs,
            false,
        )?;
        for s in &r.symbols {
            w.push(s.clone())?;
        }
        w.finish(r.skipped.clone())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(tmp)
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
    write_parquet(path, &b, &BAR_KEYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symbol's per-bar columns: `ts` given, the rest made up.
    fn symbol(name: &str, ts: &[i64]) -> SymbolColumns {
        let n = ts.len();
        let f = |k: f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values((0..n).map(|i| k + i as f64)))
        };
        let mut arrays: [Option<ArrayRef>; BAR_COLUMNS] = Default::default();
        arrays[BarColumn::Ts as usize] = Some(ts_array(ts.to_vec()));
        arrays[BarColumn::Equity as usize] = Some(f(100.0));
        arrays[BarColumn::Position as usize] = Some(f(0.5));
        arrays[BarColumn::Avg as usize] = Some(Arc::new(Float64Array::from_iter(
            (0..n).map(|i| (i > 0).then_some(i as f64 / 10.0)),
        )));
        arrays[BarColumn::Dir as usize] = Some(Arc::new(Int8Array::from_iter_values(
            (0..n).map(|i| (i % 3) as i8 - 1),
        )));
        SymbolColumns {
            arrays,
            symbol: name.to_string(),
            rows: n,
        }
    }

    /// `metrics.json` written in parallel is `to_writer_pretty`'s bytes:
    /// no symbol, names that need escaping (quotes, backslash, newline,
    /// control characters, non-ASCII), non-finite metrics (nulls), nested
    /// tables (yearly returns, drawdowns), and more symbols than are
    /// serialized at once, out of name order.
    #[test]
    fn metrics_json_written_in_parallel_is_the_pretty_printers_bytes() {
        use crate::backtest::metrics;
        let day = 86_400_000_000i64;
        let ts: Vec<i64> = (0..800).map(|i| i * day).collect();
        let curve = |k: usize| -> Vec<f64> {
            (0..800)
                .map(|i| 100.0 + ((i * (k + 3)) as f64 * 0.01).sin() * (k % 7) as f64)
                .collect()
        };
        let m = |k: usize| metrics(100.0, &ts, &curve(k), &curve(k + 1), &[], None, 0.0);
        let names = ["b\"q\\\n", "\u{1}ctl\t", "Zürich", "a", "日本"];
        let dir = tempfile::tempdir().unwrap();
        for count in [0, 5, JSON_SYMBOLS_AT_ONCE + 70] {
            let symbols: Vec<SymbolSummary> = (0..count)
                .map(|k| SymbolSummary {
                    symbol: names.get(k).map_or_else(
                        || format!("S{:05}", (k * 7919) % 100_000),
                        |n| n.to_string(),
                    ),
                    metrics: m(k % 11),
                    engine_bars: 800,
                    window_bars: 800,
                })
                .collect();
            let summary = RunSummary {
                symbols,
                skipped: Vec::new(),
                portfolio: Default::default(),
                benchmark: Default::default(),
                portfolio_metrics: m(1),
                benchmark_metrics: metrics(100.0, &[], &[], &[], &[], None, 0.0),
                capital_per_symbol: 100.0,
                engine_bars: 0,
                warnings: Vec::new(),
            };
            let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
            write_json(&a, &MetricsDoc(&summary)).unwrap();
            write_metrics_json(&b, &summary).unwrap().sync().unwrap();
            let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
            assert!(a == b, "{count} symbols: the bytes differ");
            let text = String::from_utf8(b).unwrap();
            assert!(text.contains("null") && text.contains("yearly_returns"));
        }
    }

    #[test]
    fn shared_ts_chunks_write_the_bytes_of_encoding_every_ts() {
        let day = 86_400_000_000i64;
        let a: Vec<i64> = (0..7).map(|i| i * day).collect();
        let b: Vec<i64> = (3..12).map(|i| i * day).collect();
        // Long enough for several pages (20,000 rows at most): the column
        // writer cuts pages between the symbols it is fed, so the same
        // values split otherwise between symbols are other pages (attack
        // F4: a memo keyed on the values alone reused the wrong chunk).
        let c: Vec<i64> = (0..30_000).map(|i| i * 60_000_000).collect();
        // The second group's `ts` is the first's values cut differently;
        // the fourth repeats the third; the fifth is the first again; the
        // last two the long calendar cut in two ways.
        let groups = vec![
            vec![symbol("A", &a[..4]), symbol("B", &a[4..])],
            vec![symbol("C", &a[..2]), symbol("D", &a[2..])],
            vec![symbol("E", &b), symbol("F", &a)],
            vec![symbol("G", &b), symbol("H", &a)],
            vec![symbol("I\u{7}", &a[..4]), symbol("J", &a[4..])],
            vec![symbol("K", &c[..15_000]), symbol("L", &c[15_000..])],
            vec![symbol("M", &c[..5_000]), symbol("N", &c[5_000..])],
            vec![symbol("O", &c[..5_000]), symbol("P", &c[5_000..])],
        ];
        let write = |memo: bool| -> Vec<Vec<u8>> {
            let dir = tempfile::tempdir().unwrap();
            let paths = [dir.path().join("e.parquet"), dir.path().join("s.parquet")];
            let mut e = Table::create(&paths[0], equity_schema(false, false), &BAR_KEYS).unwrap();
            let mut s = Table::create(&paths[1], signals_schema(false), &BAR_KEYS).unwrap();
            let mut m = TsMemo::default();
            for g in &groups {
                let mut tables: Vec<&mut Table> = vec![&mut e, &mut s];
                encode_bar_group(&mut tables, g, memo.then_some(&mut m)).unwrap();
            }
            e.finish().unwrap();
            s.finish().unwrap();
            paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
        };
        let (shared, each) = (write(true), write(false));
        for (i, name) in ["equity.parquet", "signals.parquet"].iter().enumerate() {
            assert!(
                shared[i] == each[i],
                "{name}: {} bytes with the memo, {} without",
                shared[i].len(),
                each[i].len()
            );
        }
        // And the files hold every group's `ts`.
        let file = bytes::Bytes::from(shared[1].clone());
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 64).unwrap();
        let mut ts = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            ts.extend_from_slice(
                batch
                    .column(0)
                    .as_primitive::<TimestampMicrosecondType>()
                    .values(),
            );
        }
        let want: Vec<i64> = [&a, &a, &b, &a, &b, &a, &a, &c, &c, &c]
            .iter()
            .flat_map(|v| v.iter().copied())
            .collect();
        assert_eq!(ts, want);
    }

    #[test]
    fn ts_memo_answers_only_for_the_same_values() {
        let mut m = TsMemo::default();
        let g = vec![symbol("A", &[1, 2, 3]), symbol("B", &[4, 5])];
        assert!(m.chunk_of(&g).is_none(), "nothing kept yet");
        let chunk = Chunk::Pages {
            data: bytes::Bytes::from_static(b"x"),
            close: {
                let dir = tempfile::tempdir().unwrap();
                let t = Table::create(
                    &dir.path().join("t.parquet"),
                    signals_schema(false),
                    &BAR_KEYS,
                )
                .unwrap();
                let enc = t.value_encoder(0).unwrap();
                match enc.encode([ts_array(vec![1]).as_ref()]).unwrap() {
                    Chunk::Pages { close, .. } => close,
                    Chunk::Arrow(_) => unreachable!("a value encoder's chunk"),
                }
            },
        };
        m.keep(&g, &chunk);
        assert!(m.chunk_of(&g).is_some());
        assert!(m
            .chunk_of(&[symbol("X", &[1, 2, 3]), symbol("Y", &[4, 5])])
            .is_some());
        for other in [
            // The same values split otherwise between symbols.
            vec![symbol("C", &[1, 2, 3, 4, 5])],
            vec![symbol("A", &[1, 2]), symbol("B", &[3, 4, 5])],
            vec![symbol("A", &[1, 2, 3]), symbol("B", &[4, 6])],
            vec![symbol("A", &[1, 2, 3]), symbol("B", &[4])],
            vec![symbol("A", &[1, 2, 3]), symbol("B", &[4, 5, 6])],
            vec![symbol("A", &[1, 2, 3])],
            vec![],
        ] {
            assert!(m.chunk_of(&other).is_none());
        }
    }
}
