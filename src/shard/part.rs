//! A shard's part directory: everything `merge` needs to rebuild the
//! single-machine results exactly.
//!
//! ```text
//! part-<i>-of-<N>/
//!   part.json        PartHeader: shard, inputs hash, resolved parameters,
//!                    capital split (f64 bits), window-skipped symbols
//!   symbols.parquet  one row per (combo, sample, symbol): capital,
//!                    total_fees, window, engine bars, time zone, or the
//!                    error
//!   curves.parquet   one row per (combo, sample, symbol, bar): ts, equity,
//!                    position, gross, benchmark (+ close, avg, dir for run)
//!   trades.parquet   one row per (combo, sample, symbol, trade)
//!   book.parquet     shared cash only (format 5): one row per (symbol,
//!                    bar) the account reads: ts, open, close, high/low
//!                    (null without stops), dir, avg
//!   _SUCCESS         written last: a part without it is half-written;
//!                    holds the blake3 of part.json and the tables
//!                    (`b3sum` lines, format 4 on), verified by `merge`
//! ```
//!
//! A shard of a shared-cash run (`--allocation shared`) cannot trade: the
//! account ranks every symbol at every bar. It stores what the account
//! reads instead, its symbols' signals and bars over `from..window.end`
//! (the window and the bar before it) in `book.parquet`, and each
//! symbol's window, engine bars, time zone and `data_ends` (or its
//! engine error) in the header's `book`; its three result tables stay
//! empty. `merge` reads every part's book and runs the account once over
//! all symbols in the selection's order ([`crate::run::shared`]), the
//! same code as one machine on the same numbers.
//!
//! Rows are written in the shard's processing order, one row group per
//! (combination, sample); combinations come in the same order in every part
//! (the sweep's fixed group order), so `merge` streams all parts in lockstep
//! one combination at a time and its memory is bounded by one combination's
//! curves. Floats are stored as Parquet doubles (bit-exact, NaN included);
//! header floats as their IEEE bits.
//!
//! Size: a `run` part holds about 9 values per bar per symbol (≈ 70 bytes
//! before compression). A sweep part holds ts, equity, position, gross and
//! benchmark for every (combination, sample, symbol, bar), ≈ 40 bytes per
//! combination-bar before zstd: 10,000 symbols × 1,500 bars × 1,000
//! combinations is ≈ 600 GB over all parts. The portfolio metrics need the
//! per-symbol curves because the floating-point sum must run in the
//! single-machine symbol order, which interleaves the shards.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, Int8Array, RecordBatch, StringArray,
    UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::ShardSpec;
use crate::backtest::{Bars, Calendar, ExitReason, Side, SymbolRun, Trade};
use crate::data::signals_file::SignalsSource;
use crate::parquet_write::{IoTrace, TracedFile};
use crate::run::shared::{BarSource, BookSeries};
use crate::run::{MetricsSettings, Skipped, SymbolResult};

/// Version of the part layout; `merge` refuses other versions. 2: trades
/// carry `exit_reason`, symbols their time zone `tz`. 3: the resolved
/// strategy is `params.params` for both kinds (was `params.strategy` of a
/// run, `params.base` of a sweep); `context.sources` lists each source's
/// `{path, size, mtime_ns, blake3}` for both kinds (see
/// [`crate::job::manifest`]). 4: `_SUCCESS` holds checksums. Parts of an
/// ATC run or sweep with equal-split are still written as 4, byte for
/// byte as before; see [`BOOK_FORMAT_VERSION`].
pub const PART_FORMAT_VERSION: u32 = 4;
/// Version of the parts an older `merge` would misread: a shared-cash
/// run's (`book` in the header, `book.parquet`) and a run on a signals
/// file (`signals` in the header). An older atc-bt refuses them as a
/// newer format rather than merging them wrongly.
pub const BOOK_FORMAT_VERSION: u32 = 5;
/// The table of a shared-cash part.
pub const BOOK_FILE: &str = "book.parquet";
/// The header file of a part.
pub const PART_JSON: &str = "part.json";
/// The success marker, written last.
pub const SUCCESS: &str = "_SUCCESS";
/// The table of the part's symbols.
pub const SYMBOLS_FILE: &str = "symbols.parquet";
/// The table of the part's curves.
pub const CURVES_FILE: &str = "curves.parquet";
/// The table of the part's trades.
pub const TRADES_FILE: &str = "trades.parquet";
/// Every file a part directory of atc-bt's may hold: the one list of a
/// part's own files. What a retried shard may replace
/// ([`crate::files::out`]) and what `_SUCCESS` checksums
/// ([`checked_files`]) both follow from it.
pub const PART_FILES: [&str; 6] = [
    PART_JSON,
    SYMBOLS_FILE,
    CURVES_FILE,
    TRADES_FILE,
    BOOK_FILE,
    SUCCESS,
];

/// Errors writing or reading a part.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// File-system error.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Parquet encoding or decoding error.
    #[error("{}: {message}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// `part.json` missing or unreadable.
    #[error("{}: not a readable part header ({why}); rerun the shard that wrote it", path.display())]
    Header {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The part directory cannot be replaced.
    #[error(transparent)]
    Out(crate::files::out::OutError),
    /// A table that does not have the layout this version writes.
    #[error("{}: corrupt part table: {why}; rerun the shard that wrote it", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// What produced a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartKind {
    /// `atc-bt run --shard`.
    Run,
    /// `atc-bt sweep --shard`.
    Sweep,
}

/// A symbol of the whole selection with no bars in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartSkipped {
    /// Position in the whole selection.
    pub pos: u32,
    /// Series name.
    pub symbol: String,
    /// Why, as shown to the user.
    pub reason: String,
}

/// `part.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartHeader {
    /// [`PART_FORMAT_VERSION`].
    pub format_version: u32,
    /// `run` or `sweep`.
    pub kind: PartKind,
    /// This shard's index.
    pub shard: u32,
    /// Number of shards.
    pub shards: u32,
    /// Hash of the whole selection's inputs (as the single-machine command
    /// computes it): parameters, window and every series' content.
    pub inputs_hash: String,
    /// Series in the whole selection.
    pub selection: usize,
    /// Per sample: symbols of the whole selection with bars in the window.
    pub active_symbols: Vec<usize>,
    /// Per sample: capital of each sub-account, as `f64::to_bits`.
    pub capital_bits: Vec<u64>,
    /// Resolved parameters (strategy, grid, window, split, …): all parts of
    /// one merge must agree on them.
    pub params: serde_json::Value,
    /// This shard's symbols without bars in the window (run only).
    pub skipped_window: Vec<PartSkipped>,
    /// Symbols this shard processed.
    pub symbols: usize,
    /// The single-machine description (`run.json`/`sweep.json`) as this
    /// shard would write it; `merge` completes it. Not compared.
    pub context: serde_json::Value,
    /// A shared-cash run's part: per symbol of this shard with bars in
    /// the window, what the account needs beside `book.parquet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub book: Option<Vec<PartBookSeries>>,
    /// The `--signals` file the shard traded (path, size, blake3); all
    /// parts of one merge must name the same file, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<SignalsSource>,
}

/// A symbol of a shared-cash part (header `book`): where its rows of
/// `book.parquet` sit in its series, or why the engine refused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartBookSeries {
    /// Position in the whole selection.
    pub pos: u32,
    /// Series name.
    pub symbol: String,
    /// First stored bar (absolute bar index: the bar before the window,
    /// or the window's first).
    pub from: usize,
    /// The traded window's first bar (absolute).
    pub window_start: usize,
    /// One past the window's last bar (absolute).
    pub window_end: usize,
    /// Bars the engine saw.
    pub engine_bars: usize,
    /// See [`crate::run::ActiveSeries::data_ends`].
    pub data_ends: bool,
    /// The source's time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// The engine's reason to skip it (then nothing is stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PartHeader {
    /// What must be equal across the parts of one merge, as text.
    pub fn identity(&self) -> String {
        serde_json::json!({
            "format_version": self.format_version,
            "kind": self.kind,
            "shards": self.shards,
            "inputs_hash": self.inputs_hash,
            "selection": self.selection,
            "active_symbols": self.active_symbols,
            "capital_bits": self.capital_bits,
            "params": self.params,
            "shared": self.book.is_some(),
            // The file by its content, as `--data` is: the same file named
            // by another path (relative, `./`, absolute) is the same input.
            "signals": self.signals.as_ref().map(|f| (f.size, &f.blake3)),
        })
        .to_string()
    }

    /// The format this header's part is written in.
    pub fn format_for(shared: bool, signals: bool) -> u32 {
        if shared || signals {
            BOOK_FORMAT_VERSION
        } else {
            PART_FORMAT_VERSION
        }
    }

    /// Capital per sub-account of sample `k`.
    pub fn capital(&self, k: usize) -> f64 {
        self.capital_bits
            .get(k)
            .map_or(f64::NAN, |&b| f64::from_bits(b))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PartError + '_ {
    move |source| PartError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn pq(path: &Path, e: impl std::fmt::Display) -> PartError {
    PartError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn key_fields() -> Vec<Field> {
    vec![
        Field::new("combo", DataType::UInt32, false),
        Field::new("sample", DataType::UInt32, false),
        Field::new("pos", DataType::UInt32, false),
    ]
}

fn symbols_schema() -> SchemaRef {
    let mut f = key_fields();
    f.extend([
        Field::new("symbol", DataType::Utf8, false),
        Field::new("capital", DataType::Float64, false),
        Field::new("total_fees", DataType::Float64, false),
        Field::new("window_start", DataType::UInt64, false),
        Field::new("window_end", DataType::UInt64, false),
        Field::new("engine_bars", DataType::UInt64, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("tz", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(f))
}

fn curves_schema() -> SchemaRef {
    let mut f = key_fields();
    f.extend([
        Field::new("ts", DataType::Int64, false),
        Field::new("equity", DataType::Float64, false),
        Field::new("position", DataType::Float64, false),
        Field::new("gross", DataType::Float64, false),
        Field::new("benchmark", DataType::Float64, false),
        Field::new("close", DataType::Float64, true),
        Field::new("avg", DataType::Float64, true),
        Field::new("dir", DataType::Int8, true),
    ]);
    Arc::new(Schema::new(f))
}

fn trades_schema() -> SchemaRef {
    let mut f = key_fields();
    f.extend([
        Field::new("long", DataType::Boolean, false),
        Field::new("entry_ts", DataType::Int64, false),
        Field::new("entry_price", DataType::Float64, false),
        Field::new("exit_ts", DataType::Int64, true),
        Field::new("exit_price", DataType::Float64, false),
        Field::new("qty", DataType::Float64, false),
        Field::new("fees", DataType::Float64, false),
        Field::new("pnl", DataType::Float64, false),
        Field::new("ret", DataType::Float64, false),
        Field::new("bars_held", DataType::UInt64, false),
        Field::new("open", DataType::Boolean, false),
        Field::new("exit_reason", DataType::Utf8, false),
    ]);
    Arc::new(Schema::new(f))
}

struct Table {
    path: PathBuf,
    schema: SchemaRef,
    writer: ArrowWriter<TracedFile>,
    trace: IoTrace,
}

impl Table {
    fn create(path: PathBuf, schema: SchemaRef) -> Result<Table, PartError> {
        let (file, trace) = TracedFile::create(&path).map_err(io(&path))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let writer =
            ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| pq(&path, e))?;
        Ok(Table {
            path,
            schema,
            writer,
            trace,
        })
    }

    fn write(&mut self, cols: Vec<ArrayRef>) -> Result<(), PartError> {
        let b = RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| pq(&self.path, e))?;
        if b.num_rows() == 0 {
            return Ok(());
        }
        let trace = &self.trace;
        self.writer
            .write(&b)
            .map_err(|e| pq(&self.path, trace.explain(e)))?;
        self.writer
            .flush()
            .map_err(|e| pq(&self.path, trace.explain(e)))
    }

    fn finish(self) -> Result<(), PartError> {
        let trace = &self.trace;
        let f = self
            .writer
            .into_inner()
            .map_err(|e| pq(&self.path, trace.explain(e)))?;
        f.file().sync_all().map_err(io(&self.path))
    }
}

/// Writes one part: rows go to a temporary sibling directory, which
/// [`PartWriter::finish`] completes with `part.json` and `_SUCCESS` and
/// renames into place.
pub struct PartWriter {
    out: PathBuf,
    tmp: PathBuf,
    force: bool,
    detail: bool,
    pos_of: HashMap<String, u32>,
    symbols: Table,
    curves: Table,
    trades: Table,
    book: Option<Table>,
}

fn book_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pos", DataType::UInt32, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, true),
        Field::new("low", DataType::Float64, true),
        Field::new("close", DataType::Float64, false),
        Field::new("dir", DataType::Int8, false),
        Field::new("avg", DataType::Float64, false),
    ]))
}

fn keys(n: usize, combo: usize, sample: usize) -> (ArrayRef, ArrayRef) {
    (
        Arc::new(UInt32Array::from(vec![combo as u32; n])),
        Arc::new(UInt32Array::from(vec![sample as u32; n])),
    )
}

impl PartWriter {
    /// Starts the part of `spec` under `parts_dir`. `selection` is the whole
    /// selection's series names in order (a symbol's position is its index
    /// there). `detail` keeps close, avg and dir (run) or leaves them null
    /// (sweep). An existing part directory is replaced only if it is a part
    /// (or with `force`); stale temporaries of killed shards beside it go.
    pub fn create(
        parts_dir: &Path,
        spec: ShardSpec,
        selection: &[String],
        detail: bool,
        force: bool,
    ) -> Result<PartWriter, PartError> {
        let out = parts_dir.join(spec.part_name());
        let tmp = crate::files::out::begin_dir(&out, force).map_err(PartError::Out)?;
        Ok(PartWriter {
            force,
            detail,
            pos_of: selection
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i as u32))
                .collect(),
            symbols: Table::create(tmp.join(SYMBOLS_FILE), symbols_schema())?,
            curves: Table::create(tmp.join(CURVES_FILE), curves_schema())?,
            trades: Table::create(tmp.join(TRADES_FILE), trades_schema())?,
            book: None,
            out,
            tmp,
        })
    }

    /// Appends the bars and signals of shared-cash series to
    /// `book.parquet` (one row group per call), their bars read from
    /// `src`; high and low only with `stops`. Returns their header
    /// entries (without the engine's failures, which the caller adds).
    pub fn write_book(
        &mut self,
        series: &[BookSeries],
        src: &dyn BarSource,
        stops: bool,
    ) -> Result<Vec<PartBookSeries>, PartError> {
        if self.book.is_none() {
            self.book = Some(Table::create(self.tmp.join(BOOK_FILE), book_schema())?);
        }
        let rows: usize = series.iter().map(|s| s.dir.len()).sum();
        let mut pos = Vec::with_capacity(rows);
        let (mut ts, mut open, mut close) = (
            Vec::with_capacity(rows),
            Vec::with_capacity(rows),
            Vec::with_capacity(rows),
        );
        let (mut high, mut low) = (Vec::new(), Vec::new());
        let (mut dir, mut avg) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        let mut meta = Vec::with_capacity(series.len());
        for s in series {
            let p = self.pos(&s.symbol)?;
            let b = src.bars(s);
            let n = s.dir.len();
            if [b.ts.len(), b.open.len(), b.close.len(), s.avg.len()]
                .iter()
                .any(|&l| l != n)
            {
                return Err(PartError::Corrupt {
                    path: self.tmp.join(BOOK_FILE),
                    why: format!("{}: columns of different lengths", s.symbol),
                });
            }
            pos.extend(std::iter::repeat_n(p, n));
            ts.extend_from_slice(b.ts);
            open.extend_from_slice(b.open);
            close.extend_from_slice(b.close);
            if stops {
                high.extend(b.high.iter().map(|&x| Some(x)));
                low.extend(b.low.iter().map(|&x| Some(x)));
            } else {
                high.extend(std::iter::repeat_n(None::<f64>, n));
                low.extend(std::iter::repeat_n(None::<f64>, n));
            }
            dir.extend_from_slice(&s.dir);
            avg.extend_from_slice(&s.avg);
            src.release(s);
            meta.push(PartBookSeries {
                pos: p,
                symbol: s.symbol.clone(),
                from: s.from,
                window_start: s.window.start,
                window_end: s.window.end,
                engine_bars: s.engine_bars,
                data_ends: s.data_ends,
                tz: s.calendar.zone().map(str::to_string),
                error: None,
            });
        }
        src.release_all();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(pos)),
            Arc::new(Int64Array::from(ts)),
            Arc::new(Float64Array::from(open)),
            Arc::new(Float64Array::from(high)),
            Arc::new(Float64Array::from(low)),
            Arc::new(Float64Array::from(close)),
            Arc::new(Int8Array::from(dir)),
            Arc::new(Float64Array::from(avg)),
        ];
        if let Some(t) = self.book.as_mut() {
            t.write(cols)?;
        }
        Ok(meta)
    }

    fn pos(&self, name: &str) -> Result<u32, PartError> {
        self.pos_of
            .get(name)
            .copied()
            .ok_or_else(|| PartError::Corrupt {
                path: self.tmp.clone(),
                why: format!("{name} is not in the selection"),
            })
    }

    /// Appends one (combination, sample): the symbols that traded and those
    /// that failed.
    pub fn write(
        &mut self,
        combo: usize,
        sample: usize,
        done: &[SymbolResult],
        failed: &[Skipped],
    ) -> Result<(), PartError> {
        // symbols.parquet
        let n = done.len() + failed.len();
        let mut pos = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        let (mut cap, mut fees, mut ws, mut we, mut eb, mut err) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut tz = Vec::with_capacity(n);
        for s in done {
            pos.push(self.pos(&s.run.symbol)?);
            names.push(s.run.symbol.as_str());
            cap.push(s.run.capital);
            fees.push(s.run.total_fees);
            ws.push(s.window.start as u64);
            we.push(s.window.end as u64);
            eb.push(s.engine_bars as u64);
            err.push(None);
            tz.push(s.calendar.zone());
        }
        for f in failed {
            pos.push(self.pos(&f.symbol)?);
            names.push(f.symbol.as_str());
            cap.push(f64::NAN);
            fees.push(f64::NAN);
            ws.push(0);
            we.push(0);
            eb.push(0);
            err.push(Some(f.reason.as_str()));
            tz.push(None);
        }
        let (c, k) = keys(n, combo, sample);
        self.symbols.write(vec![
            c,
            k,
            Arc::new(UInt32Array::from(pos)),
            Arc::new(StringArray::from(names)),
            Arc::new(Float64Array::from(cap)),
            Arc::new(Float64Array::from(fees)),
            Arc::new(UInt64Array::from(ws)),
            Arc::new(UInt64Array::from(we)),
            Arc::new(UInt64Array::from(eb)),
            Arc::new(StringArray::from(err)),
            Arc::new(StringArray::from(tz)),
        ])?;

        // curves.parquet
        let bars: usize = done.iter().map(|s| s.run.ts.len()).sum();
        let mut pos = Vec::with_capacity(bars);
        let (mut ts, mut eq, mut po, mut gr, mut be) = (
            Vec::with_capacity(bars),
            Vec::with_capacity(bars),
            Vec::with_capacity(bars),
            Vec::with_capacity(bars),
            Vec::with_capacity(bars),
        );
        let (mut close, mut avg, mut dir) = (vec![], vec![], vec![]);
        for s in done {
            let p = self.pos(&s.run.symbol)?;
            let r = &s.run;
            let len = r.ts.len();
            if [
                r.equity.len(),
                r.position.len(),
                r.gross.len(),
                r.benchmark.len(),
            ]
            .iter()
            .any(|&l| l != len)
                || (self.detail
                    && [s.close.len(), s.avg.len(), s.dir.len()]
                        .iter()
                        .any(|&l| l != len))
            {
                return Err(PartError::Corrupt {
                    path: self.curves.path.clone(),
                    why: format!("{}: columns of different lengths", r.symbol),
                });
            }
            pos.extend(std::iter::repeat_n(p, len));
            ts.extend_from_slice(&r.ts);
            eq.extend_from_slice(&r.equity);
            po.extend_from_slice(&r.position);
            gr.extend_from_slice(&r.gross);
            be.extend_from_slice(&r.benchmark);
            if self.detail {
                close.extend(s.close.iter().map(|&x| Some(x)));
                avg.extend(s.avg.iter().map(|&x| Some(x)));
                dir.extend(s.dir.iter().map(|&x| Some(x)));
            } else {
                close.extend(std::iter::repeat_n(None, len));
                avg.extend(std::iter::repeat_n(None, len));
                dir.extend(std::iter::repeat_n(None, len));
            }
        }
        let (c, k) = keys(bars, combo, sample);
        self.curves.write(vec![
            c,
            k,
            Arc::new(UInt32Array::from(pos)),
            Arc::new(Int64Array::from(ts)),
            Arc::new(Float64Array::from(eq)),
            Arc::new(Float64Array::from(po)),
            Arc::new(Float64Array::from(gr)),
            Arc::new(Float64Array::from(be)),
            Arc::new(Float64Array::from(close)),
            Arc::new(Float64Array::from(avg)),
            Arc::new(Int8Array::from(dir)),
        ])?;

        // trades.parquet
        let mut pos = vec![];
        let mut t: Vec<&Trade> = vec![];
        for s in done {
            let p = self.pos(&s.run.symbol)?;
            for tr in &s.run.trades {
                pos.push(p);
                t.push(tr);
            }
        }
        let (c, k) = keys(t.len(), combo, sample);
        let f = |g: fn(&Trade) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(t.iter().map(|x| g(x))))
        };
        self.trades.write(vec![
            c,
            k,
            Arc::new(UInt32Array::from(pos)),
            Arc::new(BooleanArray::from(
                t.iter().map(|x| x.side == Side::Long).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from_iter_values(t.iter().map(|x| x.entry_ts))),
            f(|x| x.entry_price),
            Arc::new(Int64Array::from(
                t.iter().map(|x| x.exit_ts).collect::<Vec<_>>(),
            )),
            f(|x| x.exit_price),
            f(|x| x.qty),
            f(|x| x.fees),
            f(|x| x.pnl),
            f(|x| x.ret),
            Arc::new(UInt64Array::from_iter_values(
                t.iter().map(|x| x.bars_held as u64),
            )),
            Arc::new(BooleanArray::from(
                t.iter().map(|x| x.open).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from_iter_values(
                t.iter().map(|x| x.exit_reason.name()),
            )),
        ])
    }

    /// Completes the part: closes the tables, writes `part.json`, then
    /// `_SUCCESS`, and renames the directory into place (replacing an older
    /// attempt of the same shard only once the new one is complete).
    pub fn finish(self, header: &PartHeader) -> Result<PathBuf, PartError> {
        self.symbols.finish()?;
        self.curves.finish()?;
        self.trades.finish()?;
        let book = self.book.is_some();
        if let Some(t) = self.book {
            t.finish()?;
        }
        let hp = self.tmp.join(PART_JSON);
        let text = serde_json::to_string_pretty(header).map_err(|e| PartError::Header {
            path: hp.clone(),
            why: e.to_string(),
        })?;
        write_synced(&hp, text.as_bytes())?;
        // Format 4: `_SUCCESS` holds the blake3 of every file the part
        // wrote (`b3sum` lines), which `merge` verifies.
        let mut sums = String::new();
        for name in checked_files(book) {
            let path = self.tmp.join(name);
            let _ = writeln!(sums, "{}  {name}", hash_file(&path)?.to_hex());
        }
        write_synced(&self.tmp.join(SUCCESS), sums.as_bytes())?;
        if let Err(e) = crate::files::out::commit_dir(&self.tmp, &self.out, self.force) {
            let _ = std::fs::remove_dir_all(&self.tmp);
            return Err(PartError::Out(e));
        }
        Ok(self.out)
    }

    /// Gives up: removes the temporary directory (the old part, if any,
    /// stays).
    pub fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// The files whose checksums a part's `_SUCCESS` holds (format 4 on):
/// every file of [`PART_FILES`] but `_SUCCESS` itself, [`BOOK_FILE`] only
/// with `book` (a shared-cash part).
fn checked_files(book: bool) -> impl Iterator<Item = &'static str> {
    PART_FILES
        .into_iter()
        .filter(move |&n| n != SUCCESS && (book || n != BOOK_FILE))
}

/// The blake3 of a file, streamed.
pub fn hash_file(path: &Path) -> Result<blake3::Hash, PartError> {
    let mut h = blake3::Hasher::new();
    let mut f = File::open(path).map_err(io(path))?;
    std::io::copy(&mut f, &mut h).map_err(io(path))?;
    Ok(h.finalize())
}

/// Checks the files of the part in `dir` against the checksums its
/// `_SUCCESS` recorded (with `book`, a shared-cash part's, its
/// [`BOOK_FILE`] too); the first file that is missing from the record or
/// differs from it, if any.
pub fn verify_files(dir: &Path, book: bool) -> Result<Option<String>, PartError> {
    let sp = dir.join(SUCCESS);
    let text = std::fs::read_to_string(&sp).map_err(io(&sp))?;
    for name in checked_files(book) {
        let recorded = text.lines().find_map(|l| {
            let (sum, file) = l.split_once("  ")?;
            (file == name).then_some(sum)
        });
        let path = dir.join(name);
        let ok = match recorded {
            Some(sum) => path.is_file() && hash_file(&path)?.to_hex().as_str() == sum,
            None => false,
        };
        if !ok {
            return Ok(Some(name.to_string()));
        }
    }
    Ok(None)
}

/// The `format_version` of the part in `dir`, read before anything else
/// in its header (whose other fields change between formats); `None` if
/// `part.json` is unreadable or has none.
pub fn read_format_version(dir: &Path) -> Option<u64> {
    let text = std::fs::read(dir.join(PART_JSON)).ok()?;
    serde_json::from_slice::<serde_json::Value>(&text)
        .ok()?
        .get("format_version")?
        .as_u64()
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), PartError> {
    use std::io::Write;
    let mut f = File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Reads a part's header; errors if the success marker is missing.
pub fn read_header(dir: &Path) -> Result<PartHeader, PartError> {
    let hp = dir.join(PART_JSON);
    let text = std::fs::read_to_string(&hp).map_err(|e| PartError::Header {
        path: hp.clone(),
        why: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| PartError::Header {
        path: hp,
        why: e.to_string(),
    })
}

/// Streams one table's rows combination by combination.
struct Cursor {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    buf: Option<RecordBatch>,
    off: usize,
}

impl Cursor {
    fn open(path: PathBuf) -> Result<Cursor, PartError> {
        let f = File::open(&path).map_err(io(&path))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .and_then(|b| b.with_batch_size(65_536).build())
            .map_err(|e| pq(&path, e))?;
        Ok(Cursor {
            path,
            reader,
            buf: None,
            off: 0,
        })
    }

    /// The rows of `combo` at the front of the table (none if the next row
    /// belongs to another combination).
    fn take(&mut self, combo: u32) -> Result<Vec<RecordBatch>, PartError> {
        let mut out = Vec::new();
        loop {
            if self.buf.as_ref().is_none_or(|b| self.off >= b.num_rows()) {
                match self.reader.next() {
                    None => {
                        self.buf = None;
                        break;
                    }
                    Some(b) => {
                        self.buf = Some(b.map_err(|e| pq(&self.path, e))?);
                        self.off = 0;
                    }
                }
            }
            let Some(b) = &self.buf else { break };
            let col = u32_col(&self.path, b, "combo")?;
            let start = self.off;
            while self.off < b.num_rows() && col.value(self.off) == combo {
                self.off += 1;
            }
            if self.off > start {
                out.push(b.slice(start, self.off - start));
            }
            if self.off < b.num_rows() {
                break;
            }
        }
        Ok(out)
    }

    /// Whether every row was taken.
    fn exhausted(&mut self) -> Result<bool, PartError> {
        if self.buf.as_ref().is_some_and(|b| self.off < b.num_rows()) {
            return Ok(false);
        }
        match self.reader.next() {
            None => Ok(true),
            Some(Ok(b)) => Ok(b.num_rows() == 0),
            Some(Err(e)) => Err(pq(&self.path, e)),
        }
    }
}

fn col<'a, T: 'static>(path: &Path, b: &'a RecordBatch, name: &str) -> Result<&'a T, PartError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| PartError::Corrupt {
            path: path.to_path_buf(),
            why: format!("column {name} missing or of the wrong type"),
        })
}

fn u32_col<'a>(path: &Path, b: &'a RecordBatch, name: &str) -> Result<&'a UInt32Array, PartError> {
    col::<UInt32Array>(path, b, name)
}

/// One symbol's stored outcome in one (combination, sample).
#[derive(Debug, Clone)]
pub enum Stored {
    /// It traded.
    Done(Box<SymbolResult>),
    /// It failed (engine or backtester), with the reason.
    Failed(Skipped),
}

impl Stored {
    /// As the outcome [`crate::run::collect`] takes.
    pub fn into_outcome(self) -> Result<SymbolResult, Skipped> {
        match self {
            Stored::Done(s) => Ok(*s),
            Stored::Failed(s) => Err(s),
        }
    }
}

/// A symbol's result while its rows are read.
struct Partial {
    calendar: Calendar,
    run: SymbolRun,
    close: Vec<f64>,
    avg: Vec<f64>,
    dir: Vec<i8>,
    window: std::ops::Range<usize>,
    engine_bars: usize,
}

/// Reads a complete part's tables in lockstep with the other parts.
pub struct PartReader {
    /// The part directory.
    pub dir: PathBuf,
    /// Its header.
    pub header: PartHeader,
    symbols: Cursor,
    curves: Cursor,
    trades: Cursor,
}

impl PartReader {
    /// Opens a part whose header was already read.
    pub fn open(dir: &Path, header: PartHeader) -> Result<PartReader, PartError> {
        Ok(PartReader {
            dir: dir.to_path_buf(),
            header,
            symbols: Cursor::open(dir.join(SYMBOLS_FILE))?,
            curves: Cursor::open(dir.join(CURVES_FILE))?,
            trades: Cursor::open(dir.join(TRADES_FILE))?,
        })
    }

    /// Reads the rows of `combo` into `into`, keyed by (sample, position in
    /// the selection): iterating the map gives the single-machine order.
    /// Each symbol's metrics are computed under `settings` in its own
    /// calendar, as the single machine computes them.
    pub fn take_combo(
        &mut self,
        combo: usize,
        settings: &MetricsSettings,
        into: &mut BTreeMap<(u32, u32), Stored>,
    ) -> Result<(), PartError> {
        let combo = combo as u32;
        let corrupt = |path: &Path, why: String| PartError::Corrupt {
            path: path.to_path_buf(),
            why,
        };
        let mut runs: BTreeMap<(u32, u32), Partial> = BTreeMap::new();
        let p = self.symbols.path.clone();
        for b in self.symbols.take(combo)? {
            let sample = u32_col(&p, &b, "sample")?;
            let pos = u32_col(&p, &b, "pos")?;
            let name = col::<StringArray>(&p, &b, "symbol")?;
            let cap = col::<Float64Array>(&p, &b, "capital")?;
            let fees = col::<Float64Array>(&p, &b, "total_fees")?;
            let ws = col::<UInt64Array>(&p, &b, "window_start")?;
            let we = col::<UInt64Array>(&p, &b, "window_end")?;
            let eb = col::<UInt64Array>(&p, &b, "engine_bars")?;
            let err = col::<StringArray>(&p, &b, "error")?;
            let tz = col::<StringArray>(&p, &b, "tz")?;
            for i in 0..b.num_rows() {
                let key = (sample.value(i), pos.value(i));
                let symbol = name.value(i).to_string();
                if into.contains_key(&key) || runs.contains_key(&key) {
                    return Err(corrupt(
                        &p,
                        format!("{symbol} appears twice in combination {combo}"),
                    ));
                }
                if !err.is_null(i) {
                    into.insert(
                        key,
                        Stored::Failed(Skipped {
                            symbol,
                            reason: err.value(i).to_string(),
                        }),
                    );
                    continue;
                }
                let (a, e) = (ws.value(i) as usize, we.value(i) as usize);
                let zone = (!tz.is_null(i)).then(|| tz.value(i));
                let calendar = Calendar::from_zone(zone).map_err(|why| corrupt(&p, why))?;
                runs.insert(
                    key,
                    Partial {
                        calendar,
                        run: SymbolRun {
                            symbol,
                            capital: cap.value(i),
                            ts: vec![],
                            equity: vec![],
                            position: vec![],
                            gross: vec![],
                            benchmark: vec![],
                            trades: vec![],
                            total_fees: fees.value(i),
                        },
                        close: vec![],
                        avg: vec![],
                        dir: vec![],
                        window: a..e,
                        engine_bars: eb.value(i) as usize,
                    },
                );
            }
        }
        let p = self.curves.path.clone();
        for b in self.curves.take(combo)? {
            let sample = u32_col(&p, &b, "sample")?;
            let pos = u32_col(&p, &b, "pos")?;
            let ts = col::<Int64Array>(&p, &b, "ts")?;
            let eq = col::<Float64Array>(&p, &b, "equity")?;
            let po = col::<Float64Array>(&p, &b, "position")?;
            let gr = col::<Float64Array>(&p, &b, "gross")?;
            let be = col::<Float64Array>(&p, &b, "benchmark")?;
            let close = col::<Float64Array>(&p, &b, "close")?;
            let avg = col::<Float64Array>(&p, &b, "avg")?;
            let dir = col::<Int8Array>(&p, &b, "dir")?;
            let mut i = 0;
            while i < b.num_rows() {
                let key = (sample.value(i), pos.value(i));
                let mut j = i;
                while j < b.num_rows() && (sample.value(j), pos.value(j)) == key {
                    j += 1;
                }
                let s = runs.get_mut(&key).ok_or_else(|| {
                    corrupt(&p, format!("curve rows of an unknown symbol {key:?}"))
                })?;
                s.run.ts.extend_from_slice(&ts.values()[i..j]);
                s.run.equity.extend_from_slice(&eq.values()[i..j]);
                s.run.position.extend_from_slice(&po.values()[i..j]);
                s.run.gross.extend_from_slice(&gr.values()[i..j]);
                s.run.benchmark.extend_from_slice(&be.values()[i..j]);
                if close.null_count() == 0 {
                    s.close.extend_from_slice(&close.values()[i..j]);
                    s.avg.extend_from_slice(&avg.values()[i..j]);
                    s.dir.extend_from_slice(&dir.values()[i..j]);
                }
                i = j;
            }
        }
        let p = self.trades.path.clone();
        for b in self.trades.take(combo)? {
            let sample = u32_col(&p, &b, "sample")?;
            let pos = u32_col(&p, &b, "pos")?;
            let long = col::<BooleanArray>(&p, &b, "long")?;
            let entry_ts = col::<Int64Array>(&p, &b, "entry_ts")?;
            let exit_ts = col::<Int64Array>(&p, &b, "exit_ts")?;
            let f = |n: &str| col::<Float64Array>(&p, &b, n);
            let (ep, xp, qty, fees, pnl, ret) = (
                f("entry_price")?,
                f("exit_price")?,
                f("qty")?,
                f("fees")?,
                f("pnl")?,
                f("ret")?,
            );
            let held = col::<UInt64Array>(&p, &b, "bars_held")?;
            let open = col::<BooleanArray>(&p, &b, "open")?;
            let reason = col::<StringArray>(&p, &b, "exit_reason")?;
            for i in 0..b.num_rows() {
                let key = (sample.value(i), pos.value(i));
                let s = runs.get_mut(&key).ok_or_else(|| {
                    corrupt(&p, format!("trade rows of an unknown symbol {key:?}"))
                })?;
                let symbol: Arc<str> = Arc::from(s.run.symbol.as_str());
                let exit_reason = ExitReason::from_name(reason.value(i)).ok_or_else(|| {
                    corrupt(&p, format!("unknown exit_reason {:?}", reason.value(i)))
                })?;
                s.run.trades.push(Trade {
                    symbol,
                    side: if long.value(i) {
                        Side::Long
                    } else {
                        Side::Short
                    },
                    entry_ts: entry_ts.value(i),
                    entry_price: ep.value(i),
                    exit_ts: (!exit_ts.is_null(i)).then(|| exit_ts.value(i)),
                    exit_price: xp.value(i),
                    qty: qty.value(i),
                    fees: fees.value(i),
                    pnl: pnl.value(i),
                    ret: ret.value(i),
                    bars_held: held.value(i) as usize,
                    open: open.value(i),
                    exit_reason,
                });
            }
        }
        for (key, s) in runs {
            into.insert(
                key,
                Stored::Done(Box::new(SymbolResult {
                    // The same call as `trade_series`, on the same numbers
                    // (its periods per year from the same window bars).
                    metrics: s.run.metrics_with(&settings.options(s.calendar.clone())),
                    calendar: s.calendar,
                    run: s.run,
                    close: s.close,
                    avg: s.avg,
                    dir: s.dir,
                    window: s.window,
                    engine_bars: s.engine_bars,
                    contribution: None,
                })),
            );
        }
        Ok(())
    }

    /// Errors if rows are left after the last combination (a part out of
    /// order with the others).
    pub fn check_exhausted(&mut self) -> Result<(), PartError> {
        for c in [&mut self.symbols, &mut self.curves, &mut self.trades] {
            if !c.exhausted()? {
                return Err(PartError::Corrupt {
                    path: c.path.clone(),
                    why: "rows left after the last combination (written in another order)".into(),
                });
            }
        }
        Ok(())
    }
}

/// The bars of shared-cash series as the shards stored them
/// (`book.parquet`): what `merge` hands the account as its
/// [`BarSource`]; a [`BookSeries`]' `src` indexes it.
#[derive(Debug, Default)]
pub struct StoredBars(Vec<SeriesBars>);

/// One series' stored bars.
#[derive(Debug, Default)]
struct SeriesBars {
    ts: Vec<i64>,
    open: Vec<f64>,
    /// Empty when the run has no stops (then never read).
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
}

impl BarSource for StoredBars {
    fn bars(&self, s: &BookSeries) -> Bars<'_> {
        let b = &self.0[s.src];
        // Without stops high and low are not stored, and not read: the
        // close stands in for their lengths.
        let (high, low) = if b.high.len() == b.close.len() {
            (&b.high[..], &b.low[..])
        } else {
            (&b.close[..], &b.close[..])
        };
        Bars {
            ts: &b.ts,
            open: &b.open,
            high,
            low,
            close: &b.close,
        }
    }
}

impl StoredBars {
    /// Reads the book of the shared-cash part in `dir` (header `header`):
    /// each symbol goes into `into` by its position in the selection, as
    /// a [`BookSeries`] whose bars are added here, or as the engine's
    /// failure.
    pub fn read_part(
        &mut self,
        dir: &Path,
        header: &PartHeader,
        into: &mut BTreeMap<u32, Result<BookSeries, Skipped>>,
    ) -> Result<(), PartError> {
        let path = dir.join(BOOK_FILE);
        let corrupt = |why: String| PartError::Corrupt {
            path: path.clone(),
            why,
        };
        let meta = header
            .book
            .as_ref()
            .ok_or_else(|| corrupt("the header has no book".into()))?;
        let mut at: HashMap<u32, (BookSeries, usize)> = HashMap::new();
        for m in meta {
            if into.contains_key(&m.pos) || at.contains_key(&m.pos) {
                return Err(corrupt(format!("{} appears twice", m.symbol)));
            }
            if let Some(reason) = &m.error {
                into.insert(
                    m.pos,
                    Err(Skipped {
                        symbol: m.symbol.clone(),
                        reason: reason.clone(),
                    }),
                );
                continue;
            }
            let calendar = Calendar::from_zone(m.tz.as_deref()).map_err(&corrupt)?;
            if m.from > m.window_start || m.window_start >= m.window_end {
                return Err(corrupt(format!("{}: a window out of order", m.symbol)));
            }
            let n = m.window_end - m.from;
            let src = self.0.len();
            self.0.push(SeriesBars::default());
            at.insert(
                m.pos,
                (
                    BookSeries {
                        symbol: m.symbol.clone(),
                        src,
                        calendar,
                        from: m.from,
                        window: m.window_start..m.window_end,
                        engine_bars: m.engine_bars,
                        data_ends: m.data_ends,
                        dir: Vec::with_capacity(n),
                        avg: Vec::with_capacity(n),
                    },
                    n,
                ),
            );
        }
        if !at.is_empty() {
            let cursor = Cursor::open(path.clone())?;
            for b in cursor.reader {
                let b = b.map_err(|e| pq(&path, e))?;
                let p = &path;
                let pos = u32_col(p, &b, "pos")?;
                let ts = col::<Int64Array>(p, &b, "ts")?;
                let open = col::<Float64Array>(p, &b, "open")?;
                let high = col::<Float64Array>(p, &b, "high")?;
                let low = col::<Float64Array>(p, &b, "low")?;
                let close = col::<Float64Array>(p, &b, "close")?;
                let dir = col::<Int8Array>(p, &b, "dir")?;
                let avg = col::<Float64Array>(p, &b, "avg")?;
                let mut i = 0;
                while i < b.num_rows() {
                    let key = pos.value(i);
                    let mut j = i;
                    while j < b.num_rows() && pos.value(j) == key {
                        j += 1;
                    }
                    let (s, _) = at
                        .get_mut(&key)
                        .ok_or_else(|| corrupt(format!("rows of an unknown symbol {key}")))?;
                    let bars = &mut self.0[s.src];
                    bars.ts.extend_from_slice(&ts.values()[i..j]);
                    bars.open.extend_from_slice(&open.values()[i..j]);
                    bars.close.extend_from_slice(&close.values()[i..j]);
                    if high.null_count() == 0 && low.null_count() == 0 {
                        bars.high.extend_from_slice(&high.values()[i..j]);
                        bars.low.extend_from_slice(&low.values()[i..j]);
                    }
                    s.dir.extend_from_slice(&dir.values()[i..j]);
                    s.avg.extend_from_slice(&avg.values()[i..j]);
                    i = j;
                }
            }
        }
        for (pos, (s, n)) in at {
            let b = &self.0[s.src];
            if s.dir.len() != n || b.ts.len() != n || !(b.high.is_empty() || b.high.len() == n) {
                return Err(corrupt(format!(
                    "{}: {} stored bars where its window needs {n}",
                    s.symbol,
                    s.dir.len()
                )));
            }
            into.insert(pos, Ok(s));
        }
        Ok(())
    }
}
