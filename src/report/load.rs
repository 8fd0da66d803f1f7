//! Reading a run or sweep directory: only the files in it, never the data
//! they came from. Parquet files are streamed batch by batch and only the
//! rows the report draws are kept (the portfolio and benchmark curves, and
//! the symbols chosen for the report), so a 100-million-row run renders in
//! bounded memory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use super::memory::{MemorySample, MemoryTimeline};
use super::ReportError;

/// The newest run-directory layout version this reader understands.
pub const SUPPORTED_FORMAT_VERSION: u64 = crate::run::output::RUN_FORMAT_VERSION as u64;

/// The oldest one: version 1 kept the aggregate rows in the `symbol`
/// column, which this reader no longer trusts (such a directory is refused
/// with both versions named); 2 differs from 3 only in holding `close` and
/// `drawdown` always; this reader derives drawdown from `equity` (the
/// same bits as the column).
pub const OLDEST_FORMAT_VERSION: u64 = 2;

/// The `aggregate` value of the portfolio rows.
const PORTFOLIO: &str = "portfolio";
/// The `aggregate` value of the benchmark rows.
const BENCHMARK: &str = "benchmark";
use crate::run::output::AGGREGATE_COLUMN as AGGREGATE;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn pq(path: &Path, e: impl std::fmt::Display) -> ReportError {
    ReportError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Result<Value, ReportError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| ReportError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Checks `format_version` of a `run.json` / `sweep.json`.
pub fn check_version(path: &Path, v: &Value) -> Result<(), ReportError> {
    match v.get("format_version").and_then(Value::as_u64) {
        Some(OLDEST_FORMAT_VERSION..=SUPPORTED_FORMAT_VERSION) => Ok(()),
        other => Err(ReportError::Version {
            path: path.to_path_buf(),
            found: other.map_or_else(
                || {
                    v.get("format_version")
                        .map_or("none".to_string(), |x| x.to_string())
                },
                |x| x.to_string(),
            ),
            written_by: v
                .get("atc_bt_version")
                .and_then(Value::as_str)
                .unwrap_or("an unknown version")
                .to_string(),
        }),
    }
}

/// Writes `batch` to `path` as zstd-compressed Parquet.
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), ReportError> {
    write_parquet_with(path, batch, Compression::ZSTD(ZstdLevel::default()))
}

/// [`write_parquet`] with another compression.
pub fn write_parquet_with(
    path: &Path,
    batch: &RecordBatch,
    compression: Compression,
) -> Result<(), ReportError> {
    let file = File::create(path).map_err(io(path))?;
    let props = WriterProperties::builder()
        .set_compression(compression)
        .build();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(|e| pq(path, e))?;
    w.write(batch).map_err(|e| pq(path, e))?;
    w.close().map_err(|e| pq(path, e))?;
    Ok(())
}

/// One batch of a Parquet file with typed, name-based column access (any
/// numeric column reads as f64, any timestamp as microseconds).
pub struct Batch<'a> {
    path: &'a Path,
    batch: RecordBatch,
}

impl Batch<'_> {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// Whether column `name` holds timestamps.
    pub fn is_timestamp(&self, name: &str) -> bool {
        self.batch
            .column_by_name(name)
            .is_some_and(|c| matches!(c.data_type(), DataType::Timestamp(_, _)))
    }

    /// Whether the batch has column `name`.
    pub fn has(&self, name: &str) -> bool {
        self.batch.schema().index_of(name).is_ok()
    }

    fn col(&self, name: &str, to: &DataType) -> Result<ArrayRef, ReportError> {
        let c = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| ReportError::Missing {
                path: self.path.to_path_buf(),
                what: format!("column `{name}`"),
            })?;
        if c.data_type() == to {
            return Ok(c.clone());
        }
        arrow_cast::cast(c, to).map_err(|e| pq(self.path, format!("column `{name}`: {e}")))
    }

    /// Column `name` as f64 (null → None).
    pub fn f64s(&self, name: &str) -> Result<Vec<Option<f64>>, ReportError> {
        let a = self.col(name, &DataType::Float64)?;
        Ok(a.as_primitive::<Float64Type>().iter().collect())
    }

    /// Column `name` as timestamps in microseconds since the epoch.
    pub fn ts(&self, name: &str) -> Result<Vec<Option<i64>>, ReportError> {
        let c = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| ReportError::Missing {
                path: self.path.to_path_buf(),
                what: format!("column `{name}`"),
            })?;
        let tz = match c.data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let a = self.col(name, &DataType::Timestamp(TimeUnit::Microsecond, tz))?;
        Ok(a.as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect())
    }

    /// Column `name` as strings (null → empty), calling `f` per row.
    pub fn strs(&self, name: &str) -> Result<Vec<String>, ReportError> {
        let a = self.col(name, &DataType::Utf8)?;
        let s = a.as_string::<i32>();
        Ok((0..s.len())
            .map(|i| {
                if s.is_null(i) {
                    String::new()
                } else {
                    s.value(i).to_string()
                }
            })
            .collect())
    }

    /// Row indices whose string column `name` satisfies `keep`, without
    /// allocating a string per row.
    pub fn rows_where(
        &self,
        name: &str,
        mut keep: impl FnMut(&str) -> bool,
    ) -> Result<Vec<usize>, ReportError> {
        let a = self.col(name, &DataType::Utf8)?;
        let s = a.as_string::<i32>();
        // Rows of one symbol are contiguous: remember the last decision so
        // a 100-million-row file costs one short string compare per row.
        let mut last: Option<(&str, bool)> = None;
        Ok((0..s.len())
            .filter(|&i| {
                if s.is_null(i) {
                    return false;
                }
                let v = s.value(i);
                match last {
                    Some((l, k)) if l == v => k,
                    _ => {
                        let k = keep(v);
                        last = Some((v, k));
                        k
                    }
                }
            })
            .collect())
    }

    /// Names of all columns, in file order.
    pub fn column_names(&self) -> Vec<String> {
        self.batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// Whether column `name` holds strings.
    pub fn is_string(&self, name: &str) -> bool {
        self.batch.column_by_name(name).is_some_and(|c| {
            matches!(
                c.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        })
    }
}

/// Streams `path` batch by batch, reading only `columns` (all when empty);
/// columns the file lacks are skipped (callers check with [`Batch::has`]).
pub fn for_each_batch(
    path: &Path,
    columns: &[&str],
    f: impl FnMut(&Batch) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let file = File::open(path).map_err(io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| pq(path, e))?
        .with_batch_size(64 * 1024);
    stream(path, builder, columns, f)
}

/// Reads `builder`'s batches of `path`, only `columns` (all when empty).
fn stream(
    path: &Path,
    mut builder: ParquetRecordBatchReaderBuilder<File>,
    columns: &[&str],
    mut f: impl FnMut(&Batch) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    if !columns.is_empty() {
        let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
        builder = builder.with_projection(mask);
    }
    let reader = builder.build().map_err(|e| pq(path, e))?;
    for b in reader {
        let batch = b.map_err(|e| pq(path, e))?;
        f(&Batch { path, batch })?;
    }
    Ok(())
}

/// The rows of `meta`'s file whose column `column` (a string key: `symbol`
/// or `aggregate`) may hold one of `names`: the row groups and, within
/// them, the pages whose min/max statistics of the column allow it (the
/// column index, when the file has one; else every page of the row group).
/// A group or page in which the column is all null holds none of them (a
/// symbol's rows have a null `aggregate`, an aggregate's a null `symbol`);
/// one without statistics is kept. `None` when the file has no such
/// column.
fn key_selection(
    meta: &parquet::file::metadata::ParquetMetaData,
    column: &str,
    names: &BTreeSet<String>,
) -> Option<(Vec<usize>, RowSelection)> {
    use parquet::file::page_index::index::Index;
    let schema = meta.file_metadata().schema_descr();
    // The top-level string column (a nested leaf of the same name, or a
    // column of another type, says nothing about the names: read all).
    let col = (0..schema.num_columns()).find(|&i| {
        let c = schema.column(i);
        c.path().parts() == [column] && c.physical_type() == parquet::basic::Type::BYTE_ARRAY
    })?;
    let may_hold =
        |lo: Option<&[u8]>, hi: Option<&[u8]>, nulls: Option<u64>, rows: usize| match (lo, hi) {
            (Some(lo), Some(hi)) => names
                .iter()
                .any(|n| lo <= n.as_bytes() && n.as_bytes() <= hi),
            // No value but nulls: nothing to find there.
            _ if nulls == Some(rows as u64) => false,
            // No statistics: cannot tell.
            _ => true,
        };
    let (mut groups, mut selectors) = (Vec::new(), Vec::new());
    for (g, rg) in meta.row_groups().iter().enumerate() {
        let rows = rg.num_rows().max(0) as usize;
        if let Some(st) = rg.column(col).statistics() {
            if !may_hold(
                st.min_bytes_opt(),
                st.max_bytes_opt(),
                st.null_count_opt(),
                rows,
            ) {
                continue;
            }
        }
        groups.push(g);
        let pages = match (meta.column_index(), meta.offset_index()) {
            (Some(ci), Some(oi)) => match (&ci[g][col], oi[g][col].page_locations()) {
                (Index::BYTE_ARRAY(index), locations) if index.indexes.len() == locations.len() => {
                    Some((index, locations))
                }
                _ => None,
            },
            _ => None,
        };
        let Some((index, locations)) = pages else {
            selectors.push(RowSelector::select(rows));
            continue;
        };
        for (p, page) in index.indexes.iter().enumerate() {
            let first = locations[p].first_row_index.max(0) as usize;
            let end = locations
                .get(p + 1)
                .map_or(rows, |l| l.first_row_index.max(0) as usize);
            let n = end.saturating_sub(first);
            let nulls = page.null_count().map(|c| c.max(0) as u64);
            if may_hold(page.min_bytes(), page.max_bytes(), nulls, n) {
                selectors.push(RowSelector::select(n));
            } else {
                selectors.push(RowSelector::skip(n));
            }
        }
    }
    Some((groups, RowSelection::from(selectors)))
}

/// [`for_each_batch`] over only the row groups and pages of `path` that may
/// hold rows whose `column` is one of `names` (by the column's statistics,
/// see [`key_selection`]): a 10,000-symbol run's report reads a few pages
/// per chosen symbol and the aggregate rows, not the whole file. The
/// batches may still hold other rows from the same pages; callers filter.
pub fn for_each_batch_of(
    path: &Path,
    columns: &[&str],
    column: &str,
    names: &BTreeSet<String>,
    f: impl FnMut(&Batch) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let file = File::open(path).map_err(io(path))?;
    let options = ArrowReaderOptions::new().with_page_index(true);
    let mut builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|e| pq(path, e))?
        .with_batch_size(64 * 1024);
    if let Some((groups, selection)) = key_selection(builder.metadata(), column, names) {
        builder = builder
            .with_row_groups(groups)
            .with_row_selection(selection);
    }
    stream(path, builder, columns, f)
}

/// The `aggregate` values of the rows the run report draws (the portfolio
/// and benchmark curves).
pub fn aggregate_names() -> BTreeSet<String> {
    [PORTFOLIO, BENCHMARK].map(String::from).into()
}

/// Whether an `aggregate` value names the portfolio or benchmark rows.
pub fn is_aggregate(name: &str) -> bool {
    name == PORTFOLIO || name == BENCHMARK
}

/// A time series (timestamps in microseconds since the epoch, UTC).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Bar times.
    pub ts: Vec<i64>,
    /// Values.
    pub values: Vec<f64>,
}

/// An equity curve as the report reads it: the backtester's own
/// [`Curve`] with `ts` and `equity` from the curves file; `gross` from
/// its `gross` column (the portfolio of a shared-cash run), else empty. The drawdown the charts
/// draw is derived from `equity` by [`crate::run::output::drawdowns`], the function that
/// writes the `drawdown` column, so it has the column's bits whether or
/// not the run wrote one.
pub use crate::backtest::Curve;

/// One trade of a symbol drawn in the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    /// `long` or `short`.
    pub side: String,
    /// Entry time (µs).
    pub entry_ts: i64,
    /// Entry price.
    pub entry_price: f64,
    /// Exit time (µs); None while open.
    pub exit_ts: Option<i64>,
    /// Exit price.
    pub exit_price: f64,
}

/// What the report draws for one symbol.
#[derive(Debug, Clone, Default)]
pub struct SymbolPanel {
    /// Close prices: `signals.parquet`'s `close` column, else the run's
    /// input data when still current; empty when neither has them.
    pub close: Series,
    /// The ATC average signal (NaN while warming up).
    pub avg: Series,
    /// The symbol's trades.
    pub trades: Vec<Trade>,
}

/// A loaded run directory.
#[derive(Debug, Clone)]
pub struct RunData {
    /// `run.json`.
    pub run: Value,
    /// `metrics.json` portfolio metrics (name → JSON value).
    pub portfolio_metrics: BTreeMap<String, Value>,
    /// `metrics.json` benchmark metrics.
    pub benchmark_metrics: BTreeMap<String, Value>,
    /// `metrics.json` per-symbol metrics: those [`load_run_meta`] was
    /// asked to keep.
    pub symbol_metrics: BTreeMap<String, BTreeMap<String, Value>>,
    /// The portfolio curve.
    pub portfolio: Curve,
    /// Buy & hold.
    pub benchmark: Curve,
    /// Panels of the symbols chosen for the report.
    pub panels: BTreeMap<String, SymbolPanel>,
    /// `memory.parquet`, when present.
    pub memory: Option<MemoryTimeline>,
}

fn object(
    path: &Path,
    v: Option<Value>,
    key: &str,
) -> Result<BTreeMap<String, Value>, ReportError> {
    match v {
        Some(Value::Object(m)) => Ok(m.into_iter().collect()),
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(_) => Err(ReportError::Json {
            path: path.to_path_buf(),
            message: format!("`{key}` is not an object"),
        }),
    }
}

/// Reads `run.json` and `metrics.json` and checks the version. Of each
/// symbol's metrics only those `keep` accepts are kept (the others are skipped
/// while parsing: a 10,000-symbol `metrics.json` is 38 MB, and the report
/// shows a few metrics per symbol); the portfolio's and benchmark's are
/// kept whole. The file must be UTF-8 JSON whose `portfolio`, `benchmark`,
/// `symbols` and each symbol's metrics are objects (or null); values that
/// are skipped are checked for syntax only (a number out of range or a
/// lone surrogate escape there is not an error, as it cannot reach the
/// report).
pub fn load_run_meta(dir: &Path, keep: &dyn Fn(&str) -> bool) -> Result<RunData, ReportError> {
    let run_path = dir.join("run.json");
    let run = read_json(&run_path)?;
    check_version(&run_path, &run)?;
    let mpath = dir.join("metrics.json");
    // Read as text: invalid UTF-8 anywhere is refused, as a full parse
    // would (the values skipped below are not otherwise checked).
    let text = std::fs::read_to_string(&mpath).map_err(io(&mpath))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let metrics = serde::de::DeserializeSeed::deserialize(MetricsSeed(keep), &mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| ReportError::Json {
            path: mpath.clone(),
            message: e.to_string(),
        })?;
    let portfolio_metrics = object(&mpath, metrics.portfolio, "portfolio")?;
    let benchmark_metrics = object(&mpath, metrics.benchmark, "benchmark")?;
    Ok(RunData {
        run,
        portfolio_metrics,
        benchmark_metrics,
        symbol_metrics: metrics.symbols,
        portfolio: Curve::default(),
        benchmark: Curve::default(),
        panels: BTreeMap::new(),
        memory: None,
    })
}

/// What [`load_run_meta`] keeps of `metrics.json`.
#[derive(Default)]
struct MetricsFile {
    portfolio: Option<Value>,
    benchmark: Option<Value>,
    symbols: BTreeMap<String, BTreeMap<String, Value>>,
}

/// Parses `metrics.json` into a [`MetricsFile`], keeping of each symbol's
/// metrics only the names given (the rest is skipped unparsed into values).
struct MetricsSeed<'a>(&'a dyn Fn(&str) -> bool);

impl<'de> serde::de::DeserializeSeed<'de> for MetricsSeed<'_> {
    type Value = MetricsFile;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<MetricsFile, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for MetricsSeed<'_> {
    type Value = MetricsFile;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with `portfolio`, `benchmark` and `symbols`")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<MetricsFile, A::Error> {
        let mut out = MetricsFile::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "portfolio" => out.portfolio = Some(map.next_value()?),
                "benchmark" => out.benchmark = Some(map.next_value()?),
                "symbols" => out.symbols = map.next_value_seed(OrNull(SymbolsSeed(self.0)))?,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// The value of seed `S`, or its empty value for a JSON null.
struct OrNull<S>(S);

impl<'de, S> serde::de::DeserializeSeed<'de> for OrNull<S>
where
    S: serde::de::DeserializeSeed<'de>,
    S::Value: Default,
{
    type Value = S::Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S> serde::de::Visitor<'de> for OrNull<S>
where
    S: serde::de::DeserializeSeed<'de>,
    S::Value: Default,
{
    type Value = S::Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object or null")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<S::Value, E> {
        Ok(S::Value::default())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<S::Value, E> {
        Ok(S::Value::default())
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(d)
    }
}

/// `metrics.json`'s `symbols`: symbol → the kept metrics (null: none,
/// through [`OrNull`]).
struct SymbolsSeed<'a>(&'a dyn Fn(&str) -> bool);

impl<'de> serde::de::DeserializeSeed<'de> for SymbolsSeed<'_> {
    type Value = BTreeMap<String, BTreeMap<String, Value>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for SymbolsSeed<'_> {
    type Value = BTreeMap<String, BTreeMap<String, Value>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("`symbols` as an object of symbol → metrics")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(symbol) = map.next_key::<String>()? {
            let kept = map.next_value_seed(OrNull(Kept {
                keep: self.0,
                symbol: &symbol,
            }))?;
            out.insert(symbol, kept);
        }
        Ok(out)
    }
}

/// One symbol's metrics, only those `keep` accepts (null: none, through
/// [`OrNull`]).
struct Kept<'a> {
    keep: &'a dyn Fn(&str) -> bool,
    symbol: &'a str,
}

impl<'de> serde::de::DeserializeSeed<'de> for Kept<'_> {
    type Value = BTreeMap<String, Value>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Kept<'_> {
    type Value = BTreeMap<String, Value>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "`symbols.{}` as an object of metrics", self.symbol)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(name) = map.next_key::<String>()? {
            if (self.keep)(&name) {
                out.insert(name, map.next_value()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

/// Reads the curves, the panels of `symbols`, and `memory.parquet`: only
/// the row groups and pages that hold those rows ([`for_each_batch_of`]).
/// Only `ts` and `equity` of the curves are read (drawdown is derived
/// from them where drawn, with the bits of the `drawdown` column); a run
/// written without `signals.parquet` or `trades.parquet` has panels
/// without them.
pub fn load_run_series(
    dir: &Path,
    data: &mut RunData,
    symbols: &BTreeSet<String>,
) -> Result<(), ReportError> {
    let epath = dir.join("equity.parquet");
    for_each_batch_of(
        &epath,
        &["ts", AGGREGATE, "equity", "gross"],
        AGGREGATE,
        &aggregate_names(),
        |b| {
            let rows = b.rows_where(AGGREGATE, is_aggregate)?;
            if rows.is_empty() {
                return Ok(());
            }
            let sym = b.strs(AGGREGATE)?;
            let ts = b.ts("ts")?;
            let eq = b.f64s("equity")?;
            // Shared cash only: the account's gross exposure.
            let gross = if b.has("gross") {
                Some(b.f64s("gross")?)
            } else {
                None
            };
            for i in rows {
                let portfolio = sym[i] == PORTFOLIO;
                let c = if portfolio {
                    &mut data.portfolio
                } else {
                    &mut data.benchmark
                };
                if let Some(t) = ts[i] {
                    c.ts.push(t);
                    c.equity.push(eq[i].unwrap_or(f64::NAN));
                    if let (true, Some(g)) = (portfolio, &gross) {
                        c.gross.push(g[i].unwrap_or(f64::NAN));
                    }
                }
            }
            Ok(())
        },
    )?;
    if symbols.is_empty() {
        return load_memory(dir, data);
    }
    let spath = dir.join("signals.parquet");
    if spath.exists() {
        for_each_batch_of(
            &spath,
            &["ts", "symbol", "close", "avg"],
            "symbol",
            symbols,
            |b| {
                let rows = b.rows_where("symbol", |s| symbols.contains(s))?;
                if rows.is_empty() {
                    return Ok(());
                }
                let sym = b.strs("symbol")?;
                let ts = b.ts("ts")?;
                let avg = b.f64s("avg")?;
                let close = if b.has("close") {
                    Some(b.f64s("close")?)
                } else {
                    None
                };
                for i in rows {
                    let Some(t) = ts[i] else { continue };
                    let p = data.panels.entry(sym[i].clone()).or_default();
                    p.avg.ts.push(t);
                    p.avg.values.push(avg[i].unwrap_or(f64::NAN));
                    if let Some(c) = &close {
                        p.close.ts.push(t);
                        p.close.values.push(c[i].unwrap_or(f64::NAN));
                    }
                }
                Ok(())
            },
        )?;
    }
    let tpath = dir.join("trades.parquet");
    if tpath.exists() {
        for_each_batch_of(
            &tpath,
            &[
                "symbol",
                "side",
                "entry_ts",
                "entry_price",
                "exit_ts",
                "exit_price",
            ],
            "symbol",
            symbols,
            |b| {
                let rows = b.rows_where("symbol", |s| symbols.contains(s))?;
                if rows.is_empty() {
                    return Ok(());
                }
                let sym = b.strs("symbol")?;
                let side = b.strs("side")?;
                let ets = b.ts("entry_ts")?;
                let ep = b.f64s("entry_price")?;
                let xts = b.ts("exit_ts")?;
                let xp = b.f64s("exit_price")?;
                for i in rows {
                    let Some(entry_ts) = ets[i] else { continue };
                    data.panels
                        .entry(sym[i].clone())
                        .or_default()
                        .trades
                        .push(Trade {
                            side: side[i].clone(),
                            entry_ts,
                            entry_price: ep[i].unwrap_or(f64::NAN),
                            exit_ts: xts[i],
                            exit_price: xp[i].unwrap_or(f64::NAN),
                        });
                }
                Ok(())
            },
        )?;
    }
    closes_from_input(data);
    load_memory(dir, data)
}

/// Fills the close prices of the panels that `signals.parquet` did not
/// hold (a run writes them only with `--outputs close`) from the data the
/// run read: the store named in `run.json` (`data.path`, `data.store`),
/// opened only if it is current ([`Dataset::open_current`]: never built
/// here), and only for a series whose close hash is the one `run.json`
/// recorded, over the bars of the panel's signal. So the report drawn by
/// `run` and a later `atc-bt report` draw the same prices; with the data
/// gone or changed the chart says the prices were not recorded.
///
/// [`Dataset::open_current`]: crate::data::Dataset::open_current
fn closes_from_input(data: &mut RunData) {
    if data.panels.values().all(|p| !p.close.ts.is_empty()) {
        return;
    }
    let text = |p: &str| {
        data.run
            .pointer(p)
            .and_then(Value::as_str)
            .map(PathBuf::from)
    };
    let (Some(path), Some(store)) = (text("/data/path"), text("/data/store")) else {
        return;
    };
    let recorded: BTreeMap<&str, &str> = data
        .run
        .pointer("/data/series")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s.get("symbol")?.as_str()?, s.get("close_hash")?.as_str()?)))
        .collect();
    let Some(ds) = crate::data::Dataset::open_current(&crate::data::DataOptions {
        data: path,
        store: Some(store),
        ..Default::default()
    }) else {
        return;
    };
    for (name, panel) in data.panels.iter_mut() {
        if !panel.close.ts.is_empty() {
            continue;
        }
        let (Some(&first), Some(&last)) = (panel.avg.ts.first(), panel.avg.ts.last()) else {
            continue;
        };
        let Some(idx) = ds.series().iter().position(|s| &s.name == name) else {
            continue;
        };
        if recorded.get(name.as_str()) != Some(&ds.series()[idx].close_hash.as_str()) {
            continue;
        }
        let v = ds.view(idx);
        let (a, b) = (
            v.ts.partition_point(|&t| t < first),
            v.ts.partition_point(|&t| t <= last),
        );
        panel.close = Series {
            ts: v.ts[a..b].to_vec(),
            values: v.close[a..b].to_vec(),
        };
        ds.release(idx);
    }
}

fn load_memory(dir: &Path, data: &mut RunData) -> Result<(), ReportError> {
    data.memory = read_memory(&dir.join("memory.parquet"))?;
    Ok(())
}

/// Reads `memory.parquet` if it exists.
pub fn read_memory(path: &Path) -> Result<Option<MemoryTimeline>, ReportError> {
    if !path.exists() {
        return Ok(None);
    }
    let mut t = MemoryTimeline::default();
    for_each_batch(path, &[], |b| {
        let tm = b.f64s("t_ms")?;
        let rss = b.f64s("rss_bytes")?;
        let phase = b.strs("phase")?;
        let opt = |name: &str| -> Result<Vec<Option<f64>>, ReportError> {
            if b.has(name) {
                b.f64s(name)
            } else {
                Ok(vec![None; b.len()])
            }
        };
        let (bars, hits, misses) = (opt("bars_done")?, opt("cache_hits")?, opt("cache_misses")?);
        for i in 0..b.len() {
            t.samples.push(MemorySample {
                t_ms: tm[i].unwrap_or(f64::NAN),
                rss_bytes: rss[i].unwrap_or(0.0) as u64,
                phase: phase[i].clone(),
                bars_done: bars[i].unwrap_or(0.0) as u64,
                cache_hits: hits[i].unwrap_or(0.0) as u64,
                cache_misses: misses[i].unwrap_or(0.0) as u64,
            });
        }
        Ok(())
    })?;
    Ok(Some(t))
}

/// One heatmap file `heatmap_<sample>.json`.
#[derive(Debug, Clone)]
pub struct HeatmapFile {
    /// Ranking metric.
    pub metric: String,
    /// Sample name.
    pub sample: String,
    /// Axes `(name, value labels)`.
    pub axes: Vec<(String, Vec<String>)>,
    /// Values, row-major over the axes (None = no value).
    pub values: Vec<Option<f64>>,
}

/// A row of `results.parquet` for the portfolio.
#[derive(Debug, Clone)]
pub struct ComboRow {
    /// Combination number.
    pub combo: u64,
    /// Sample name.
    pub sample: String,
    /// Numeric columns (parameters and metrics).
    pub nums: BTreeMap<String, Option<f64>>,
    /// String columns (robustness).
    pub strs: BTreeMap<String, String>,
}

/// A loaded sweep directory.
#[derive(Debug, Clone)]
pub struct SweepData {
    /// `sweep.json`.
    pub sweep: Value,
    /// Heatmaps, one per sample, in `sweep.json` sample order.
    pub heatmaps: Vec<HeatmapFile>,
    /// Portfolio rows of `results.parquet`.
    pub rows: Vec<ComboRow>,
    /// Metric column names in file order.
    pub metric_columns: Vec<String>,
    /// Best combination's equity.
    pub best: Curve,
    /// Buy & hold over the same bars.
    pub benchmark: Curve,
    /// `memory.parquet`, when present.
    pub memory: Option<MemoryTimeline>,
}

/// Formats a JSON scalar for a label.
pub fn label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Columns of `results.parquet` that are not metrics.
pub const RESULT_KEY_COLUMNS: [&str; 4] = ["combo", "sample", "symbol", AGGREGATE];

/// Reads a sweep directory.
pub fn load_sweep(dir: &Path, param_columns: &[&str]) -> Result<SweepData, ReportError> {
    let spath = dir.join("sweep.json");
    let sweep = read_json(&spath)?;
    check_version(&spath, &sweep)?;
    let samples: Vec<String> = sweep
        .get("samples")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_else(|| vec!["full".to_string()]);
    let mut heatmaps = Vec::new();
    for s in &samples {
        let hpath = dir.join(format!("heatmap_{s}.json"));
        if !hpath.exists() {
            continue;
        }
        let h = read_json(&hpath)?;
        let bad = |m: &str| ReportError::Json {
            path: hpath.clone(),
            message: m.to_string(),
        };
        let axes = h
            .get("axes")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing `axes`"))?
            .iter()
            .map(|a| {
                let name = a
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                let values = a
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().map(label).collect())
                    .unwrap_or_default();
                (name, values)
            })
            .collect::<Vec<(String, Vec<String>)>>();
        let values: Vec<Option<f64>> = h
            .get("values")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing `values`"))?
            .iter()
            .map(Value::as_f64)
            .collect();
        let expected: usize = axes.iter().map(|a| a.1.len()).product();
        if values.len() != expected {
            return Err(bad(&format!(
                "{} values for a grid of {expected}",
                values.len()
            )));
        }
        heatmaps.push(HeatmapFile {
            metric: h
                .get("metric")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            sample: s.clone(),
            axes,
            values,
        });
    }
    let rpath = dir.join("results.parquet");
    let mut rows = Vec::new();
    let mut metric_columns = Vec::new();
    let portfolio: BTreeSet<String> = [PORTFOLIO.to_string()].into();
    for_each_batch_of(&rpath, &[], AGGREGATE, &portfolio, |b| {
        if metric_columns.is_empty() {
            metric_columns = b
                .column_names()
                .into_iter()
                .filter(|c| {
                    !RESULT_KEY_COLUMNS.contains(&c.as_str())
                        && !param_columns.contains(&c.as_str())
                        && c != crate::sweep::grid::MAX_POSITIONS
                })
                .collect();
        }
        let keep = b.rows_where(AGGREGATE, |s| s == PORTFOLIO)?;
        if keep.is_empty() {
            return Ok(());
        }
        let combo = b.f64s("combo")?;
        let sample = b.strs("sample")?;
        let names = b.column_names();
        let mut nums = BTreeMap::new();
        let mut strs = BTreeMap::new();
        for n in &names {
            if RESULT_KEY_COLUMNS.contains(&n.as_str()) {
                continue;
            }
            if b.is_string(n) {
                strs.insert(n.clone(), b.strs(n)?);
            } else if !b.is_timestamp(n) {
                nums.insert(n.clone(), b.f64s(n)?);
            }
        }
        for i in keep {
            rows.push(ComboRow {
                combo: combo[i].unwrap_or(f64::NAN) as u64,
                sample: sample[i].clone(),
                nums: nums.iter().map(|(k, v)| (k.clone(), v[i])).collect(),
                strs: strs
                    .iter()
                    .map(|(k, v)| (k.clone(), v[i].clone()))
                    .collect(),
            });
        }
        Ok(())
    })?;
    let bpath = dir.join("best_equity.parquet");
    let [best, benchmark] = if bpath.exists() {
        aggregate_curves(&bpath, [PORTFOLIO, BENCHMARK])?
    } else {
        Default::default()
    };
    let memory = read_memory(&dir.join("memory.parquet"))?;
    Ok(SweepData {
        sweep,
        heatmaps,
        rows,
        metric_columns,
        best,
        benchmark,
        memory,
    })
}

/// The path of `name` inside `dir`, for messages.
pub fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// One row of `trades.parquet` for the report's trade list.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeRow {
    /// The symbol.
    pub symbol: String,
    /// `long` or `short`.
    pub side: String,
    /// Entry time (µs).
    pub entry_ts: i64,
    /// Entry price.
    pub entry_price: f64,
    /// Exit time (µs); None while open.
    pub exit_ts: Option<i64>,
    /// Exit price (the last close while open).
    pub exit_price: f64,
    /// Profit or loss in money, fees included.
    pub pnl: Option<f64>,
    /// Return as a fraction.
    pub ret: Option<f64>,
    /// Bars held.
    pub bars_held: Option<f64>,
    /// Why the trade closed (empty in directories without the column).
    pub exit_reason: String,
}

/// The trades of `symbols` from `trades.parquet` (none when the file is
/// absent), in file order, read from the row groups and pages that may
/// hold them ([`for_each_batch_of`]). Separate from [`load_run_series`] so
/// that the trade list reads the columns only it shows.
pub fn read_trade_rows(
    dir: &Path,
    symbols: &BTreeSet<String>,
) -> Result<Vec<TradeRow>, ReportError> {
    let path = dir.join("trades.parquet");
    let mut out = Vec::new();
    if symbols.is_empty() || !path.exists() {
        return Ok(out);
    }
    let columns = [
        "symbol",
        "side",
        "entry_ts",
        "entry_price",
        "exit_ts",
        "exit_price",
        "pnl",
        "return",
        "bars_held",
        "exit_reason",
    ];
    for_each_batch_of(&path, &columns, "symbol", symbols, |b| {
        let rows = b.rows_where("symbol", |s| symbols.contains(s))?;
        if rows.is_empty() {
            return Ok(());
        }
        let opt = |name: &str| -> Result<Vec<Option<f64>>, ReportError> {
            if b.has(name) {
                b.f64s(name)
            } else {
                Ok(vec![None; b.len()])
            }
        };
        let sym = b.strs("symbol")?;
        let side = b.strs("side")?;
        let ets = b.ts("entry_ts")?;
        let ep = b.f64s("entry_price")?;
        let xts = b.ts("exit_ts")?;
        let xp = b.f64s("exit_price")?;
        let (pnl, ret, held) = (opt("pnl")?, opt("return")?, opt("bars_held")?);
        let reason = if b.has("exit_reason") {
            b.strs("exit_reason")?
        } else {
            vec![String::new(); b.len()]
        };
        for i in rows {
            let Some(entry_ts) = ets[i] else { continue };
            out.push(TradeRow {
                symbol: sym[i].clone(),
                side: side[i].clone(),
                entry_ts,
                entry_price: ep[i].unwrap_or(f64::NAN),
                exit_ts: xts[i],
                exit_price: xp[i].unwrap_or(f64::NAN),
                pnl: pnl[i],
                ret: ret[i],
                bars_held: held[i],
                exit_reason: reason[i].clone(),
            });
        }
        Ok(())
    })?;
    Ok(out)
}

/// A walk-forward sweep's `walk_forward.json` and its chained curves.
#[derive(Debug, Clone)]
pub struct WalkForwardData {
    /// `walk_forward.json` (folds, out-of-sample and benchmark metrics).
    pub json: Value,
    /// The chained out-of-sample equity.
    pub curve: Curve,
    /// Buy & hold chained over the same test windows.
    pub benchmark: Curve,
}

/// The equity curves of the aggregates `names` in
/// a curves file (`ts`, `aggregate`, `equity`), in the order named.
fn aggregate_curves<const N: usize>(
    path: &Path,
    names: [&str; N],
) -> Result<[Curve; N], ReportError> {
    let mut curves: [Curve; N] = std::array::from_fn(|_| Curve::default());
    for_each_batch(path, &["ts", AGGREGATE, "equity"], |b| {
        let agg = b.strs(AGGREGATE)?;
        let ts = b.ts("ts")?;
        let eq = b.f64s("equity")?;
        for i in 0..b.len() {
            let Some(k) = names.iter().position(|n| *n == agg[i].as_str()) else {
                continue;
            };
            if let Some(t) = ts[i] {
                curves[k].ts.push(t);
                curves[k].equity.push(eq[i].unwrap_or(f64::NAN));
            }
        }
        Ok(())
    })?;
    Ok(curves)
}

/// Reads `walk_forward.json` and `walk_forward_equity.parquet`; `None`
/// when the sweep had no walk-forward.
pub fn read_walk_forward(dir: &Path) -> Result<Option<WalkForwardData>, ReportError> {
    let jpath = dir.join("walk_forward.json");
    if !jpath.exists() {
        return Ok(None);
    }
    let json = read_json(&jpath)?;
    let epath = dir.join("walk_forward_equity.parquet");
    let [curve, benchmark] = if epath.exists() {
        aggregate_curves(
            &epath,
            [crate::run::output::Aggregate::WalkForward.name(), BENCHMARK],
        )?
    } else {
        Default::default()
    };
    Ok(Some(WalkForwardData {
        json,
        curve,
        benchmark,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_metrics(metrics: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let run = format!("{{\"format_version\": {SUPPORTED_FORMAT_VERSION}}}");
        std::fs::write(t.path().join("run.json"), run).unwrap();
        std::fs::write(t.path().join("metrics.json"), metrics).unwrap();
        t
    }

    #[test]
    fn run_meta_keeps_only_the_symbol_metrics_asked_for() {
        let t = dir_with_metrics(
            r#"{"portfolio": {"sharpe": 1.5, "per_year": [{"year": 2020}]},
                "other": {"deep": [1, {"x": null}]},
                "benchmark": null,
                "symbols": {
                    "AAA": {"sharpe": 0.5, "cagr": 0.1, "start": "2020-01-01", "table": [1, 2]},
                    "B\u0007B": null,
                    "CCC": {"cagr": null}
                }}"#,
        );
        let keep = |k: &str| k == "sharpe" || k == "start";
        let m = load_run_meta(t.path(), &keep).unwrap();
        // The portfolio is kept whole, nested values too.
        assert_eq!(m.portfolio_metrics.len(), 2);
        assert_eq!(m.portfolio_metrics["per_year"][0]["year"], 2020);
        assert!(m.benchmark_metrics.is_empty());
        let names: Vec<&str> = m.symbol_metrics.keys().map(String::as_str).collect();
        assert_eq!(names, ["AAA", "B\u{7}B", "CCC"]);
        let a = &m.symbol_metrics["AAA"];
        assert_eq!(
            a.keys().map(String::as_str).collect::<Vec<_>>(),
            ["sharpe", "start"]
        );
        assert_eq!(a["sharpe"], 0.5);
        assert!(m.symbol_metrics["B\u{7}B"].is_empty());
        assert!(m.symbol_metrics["CCC"].is_empty());
    }

    #[test]
    fn run_meta_refuses_invalid_utf8_anywhere() {
        // Attack F2: in a value the report skips, too.
        let t = dir_with_metrics("{\"zz\": \"\u{1}\", \"symbols\": {}}");
        let mut bytes = std::fs::read(t.path().join("metrics.json")).unwrap();
        let at = bytes.iter().position(|&b| b == 1).unwrap();
        bytes[at] = 0xc3;
        bytes.insert(at + 1, 0x28);
        std::fs::write(t.path().join("metrics.json"), bytes).unwrap();
        let e = load_run_meta(t.path(), &|_| true).unwrap_err().to_string();
        assert!(e.contains("metrics.json") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn trades_of_symbols_ignore_a_nested_leaf_of_the_same_name() {
        // Attack F1: a struct column with a `symbol` leaf before the real
        // one; its statistics ("zzz") must not prune the real rows.
        use arrow_array::{StringArray, StructArray};
        use arrow_schema::{Field, Schema};
        use std::sync::Arc;
        let t = tempfile::tempdir().unwrap();
        let n = 6;
        let inner = Arc::new(StringArray::from(vec!["zzz"; n])) as ArrayRef;
        let meta = StructArray::from(vec![(
            Arc::new(Field::new("symbol", DataType::Utf8, false)),
            inner,
        )]);
        let symbols = ["AAA", "AAA", "BBB", "BBB", "CCC", "CCC"];
        let ts = arrow_array::TimestampMicrosecondArray::from_iter_values(0..n as i64)
            .with_timezone("UTC");
        let price = arrow_array::Float64Array::from_iter_values((0..n).map(|i| i as f64 + 1.0));
        let schema = Arc::new(Schema::new(vec![
            Field::new("meta", meta.data_type().clone(), false),
            Field::new("symbol", DataType::Utf8, false),
            Field::new("side", DataType::Utf8, false),
            Field::new("entry_ts", ts.data_type().clone(), false),
            Field::new("entry_price", DataType::Float64, false),
            Field::new("exit_ts", ts.data_type().clone(), false),
            Field::new("exit_price", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(meta),
                Arc::new(StringArray::from(symbols.to_vec())),
                Arc::new(StringArray::from(vec!["long"; n])),
                Arc::new(ts.clone()),
                Arc::new(price.clone()),
                Arc::new(ts),
                Arc::new(price),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_size(2)
            .build();
        let f = File::create(t.path().join("trades.parquet")).unwrap();
        let mut w = ArrowWriter::try_new(f, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let want: BTreeSet<String> = ["BBB".to_string()].into();
        let rows = read_trade_rows(t.path(), &want).unwrap();
        let got: Vec<(&str, i64)> = rows
            .iter()
            .map(|r| (r.symbol.as_str(), r.entry_ts))
            .collect();
        assert_eq!(got, [("BBB", 2), ("BBB", 3)]);
    }

    #[test]
    fn run_meta_names_the_symbol_whose_metrics_are_not_an_object() {
        let t = dir_with_metrics(r#"{"symbols": {"AAA": {}, "ZZZ": [1, 2]}}"#);
        let e = load_run_meta(t.path(), &|_| true).unwrap_err().to_string();
        assert!(e.contains("metrics.json"), "{e}");
        assert!(e.contains("`symbols.ZZZ` as an object of metrics"), "{e}");
        assert!(e.contains("line 1"), "{e}");
        let t = dir_with_metrics(r#"{"symbols": {}} trailing"#);
        let e = load_run_meta(t.path(), &|_| true).unwrap_err().to_string();
        assert!(e.contains("trailing characters"), "{e}");
        let t = dir_with_metrics(r#"{"portfolio": 3}"#);
        let e = load_run_meta(t.path(), &|_| true).unwrap_err().to_string();
        assert!(e.contains("`portfolio` is not an object"), "{e}");
    }
}
