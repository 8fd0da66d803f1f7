//! Sweep output: `results.parquet` (one row per combination × sample ×
//! symbol, plus the aggregate rows `portfolio` and `benchmark`, marked in
//! the `aggregate` column with a null `symbol`: the parameters and every
//! scalar metric of the facts table [`METRICS`], typed by its kind: counts,
//! bars, lengths and cutout as integers, start/end as timestamps),
//! `heatmap_<sample>.json` (the ranking metric as an n-dimensional array
//! over the grid axes) and `sweep.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt32Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::grid::MAX_POSITIONS;
use super::{Grid, Row};
use crate::backtest::facts::{Kind, MetricValue};
pub use crate::backtest::metric_value;
use crate::backtest::{metric_fact, MetricFact, METRICS};
use crate::engine::registry::{self, Kind as ParamKind, PARAM_COUNT};
use crate::engine::{AtcParams, ParamSpec, ParamValue, PARAMS};
use crate::parquet_write::{IoTrace, TracedFile};

/// Encoded bytes of `results.parquet` rows buffered before they are
/// written out as a row group.
const ROW_GROUP_BYTES: usize = 32 << 20;

/// The facts stored as columns of `results.parquet`: every fact but the
/// tables, in the facts table's order.
pub fn metric_columns() -> impl Iterator<Item = &'static MetricFact> {
    METRICS.iter().filter(|f| f.kind != Kind::Table)
}

/// Parameter columns of `results.parquet`, in order (the report reads them
/// too): every row of the parameter registry, typed by its kind.
pub const PARAM_COLUMNS: [&str; PARAM_COUNT] = registry::param_names();

/// The Arrow type of a parameter column.
fn param_type(kind: ParamKind) -> DataType {
    match kind {
        ParamKind::Robustness => DataType::Utf8,
        ParamKind::Int => DataType::Int64,
        ParamKind::Real => DataType::Float64,
    }
}

/// One parameter column for `params`, typed by its kind.
fn param_column(spec: &ParamSpec, params: &[AtcParams]) -> ArrayRef {
    let values = params.iter().map(|p| (spec.get)(p));
    match spec.kind {
        ParamKind::Robustness => Arc::new(StringArray::from_iter_values(values.map(|v| match v {
            ParamValue::Robustness(r) => r.name(),
            _ => unreachable_kind(spec),
        }))),
        ParamKind::Int => Arc::new(Int64Array::from_iter_values(values.map(|v| match v {
            ParamValue::Int(x) => x as i64,
            _ => unreachable_kind(spec),
        }))),
        ParamKind::Real => Arc::new(Float64Array::from_iter_values(values.map(|v| match v {
            ParamValue::Real(x) => x,
            _ => unreachable_kind(spec),
        }))),
    }
}

/// A registry row whose getter returns another kind than its `kind`: the
/// registry's macro derives both from the field's type, so this is
/// impossible by construction (and the registry's tests check it).
fn unreachable_kind(spec: &ParamSpec) -> ! {
    unreachable!("registry row {} reads a value of another kind", spec.name)
}

/// Streams rows into `results.parquet`, in row groups of about [`ROW_GROUP_BYTES`].
pub struct ResultsWriter {
    path: PathBuf,
    encoder: Option<Encoder>,
    schema: Option<SchemaRef>,
    grid: Grid,
    base: AtcParams,
}

/// Bytes of row batches queued for the encoding thread at most: the
/// rows of a chunk are encoded while the sweep goes on (the next chunk,
/// the best combination's run), in bounded memory.
const QUEUE_BYTES: usize = 32 << 20;

/// The thread that encodes and writes the batches, in the order given
/// (so the bytes are those of writing them in place).
struct Encoder {
    trace: IoTrace,
    queue: Option<std::sync::mpsc::SyncSender<RecordBatch>>,
    thread: Option<std::thread::JoinHandle<Result<ArrowWriter<TracedFile>, String>>>,
}

impl Drop for Encoder {
    /// A writer dropped unfinished (a failed sweep) still waits for its
    /// thread, so nothing writes into the output after the caller removes
    /// it.
    fn drop(&mut self) {
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Encoder {
    /// Creates `path` and starts the thread; `first` (the first batch,
    /// not sent) sizes the queue.
    fn start(path: &Path, first: &RecordBatch) -> Result<Encoder, String> {
        let shown = path.display().to_string();
        let (file, trace) = TracedFile::create(path).map_err(|e| format!("{shown}: {e}"))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let mut w = ArrowWriter::try_new(file, first.schema(), Some(props))
            .map_err(|e| format!("{shown}: {e}"))?;
        let slots = (QUEUE_BYTES / first.get_array_memory_size().max(1)).max(2);
        let (queue, batches) = std::sync::mpsc::sync_channel::<RecordBatch>(slots);
        let traced = trace.clone();
        let thread = std::thread::Builder::new()
            .name("results.parquet".into())
            .spawn(move || {
                for batch in batches {
                    w.write(&batch)
                        .map_err(|e| format!("{shown}: {}", traced.explain(e)))?;
                    // A row group per call kept every group's metadata
                    // (and a compressor per column and group) until the
                    // footer: resident memory grew by ~140 MB per 1,000
                    // combinations × 200 symbols. Groups cut at a size
                    // bound keep it flat; where they are cut depends only
                    // on the rows, so `sweep` and `merge` (one call per
                    // combination, in the same order) write the same bytes.
                    if w.in_progress_size() >= ROW_GROUP_BYTES {
                        w.flush()
                            .map_err(|e| format!("{shown}: {}", traced.explain(e)))?;
                    }
                }
                Ok(w)
            })
            .map_err(|e| format!("{}: cannot start its writer: {e}", path.display()))?;
        Ok(Encoder {
            trace,
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// The writer once every queued batch is written, or the first error
    /// (a panic inside the encoder is reported, not propagated).
    fn join(mut self, path: &Path) -> Result<ArrowWriter<TracedFile>, String> {
        self.queue = None;
        let panicked = || {
            Err(format!(
                "{}: the Parquet encoder panicked (a bug: please report it)",
                path.display()
            ))
        };
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| panicked()),
            None => panicked(),
        }
    }
}

impl ResultsWriter {
    /// Creates the file (the schema is fixed by the first batch's metrics).
    pub fn new(path: &Path, grid: &Grid, base: &AtcParams) -> ResultsWriter {
        ResultsWriter {
            path: path.to_path_buf(),
            encoder: None,
            schema: None,
            grid: grid.clone(),
            base: base.clone(),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> String {
        format!("{}: {e}", self.path.display())
    }

    /// Appends rows (buffered up to [`ROW_GROUP_BYTES`]).
    pub fn write(&mut self, rows: &[Row]) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        if self.schema.is_none() {
            let mut fields = vec![
                Field::new("combo", DataType::UInt32, false),
                Field::new("sample", DataType::Utf8, false),
                Field::new("symbol", DataType::Utf8, true),
                Field::new(crate::run::output::AGGREGATE_COLUMN, DataType::Utf8, true),
            ];
            for spec in PARAMS {
                fields.push(Field::new(spec.name, param_type(spec.kind), false));
            }
            // Shared cash's position limit, where the grid varies it
            // (without the axis the file keeps its columns and bytes).
            if self.grid.max_positions_axis().is_some() {
                fields.push(Field::new(MAX_POSITIONS, DataType::Int64, false));
            }
            for f in metric_columns() {
                let dt = match f.kind {
                    Kind::Int => DataType::Int64,
                    Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    _ => DataType::Float64,
                };
                fields.push(Field::new(f.key, dt, true));
            }
            let schema = Arc::new(Schema::new(fields));
            self.schema = Some(schema);
        }
        let params: Vec<AtcParams> = rows
            .iter()
            .map(|r| self.grid.combo(&self.base, r.combo))
            .collect();
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values(
                rows.iter().map(|r| r.combo as u32),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.sample.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.symbol.as_deref()),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.aggregate.map(|a| a.name())),
            )),
        ];
        for spec in PARAMS {
            cols.push(param_column(spec, &params));
        }
        if self.grid.max_positions_axis().is_some() {
            cols.push(Arc::new(Int64Array::from_iter_values(rows.iter().map(
                |r| self.grid.max_positions(r.combo, None).unwrap_or(0) as i64,
            ))));
        }
        for f in metric_columns() {
            let values = rows.iter().map(|r| (f.value)(&r.metrics));
            cols.push(match f.kind {
                Kind::Int => Arc::new(Int64Array::from(
                    values
                        .map(|v| match v {
                            MetricValue::Int(x) => x.map(|x| x as i64),
                            _ => None,
                        })
                        .collect::<Vec<_>>(),
                )) as ArrayRef,
                Kind::Time => Arc::new(
                    TimestampMicrosecondArray::from(
                        values
                            .map(|v| match v {
                                MetricValue::Time(x) => x,
                                _ => None,
                            })
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                _ => Arc::new(Float64Array::from(
                    values.map(|v| v.as_f64()).collect::<Vec<_>>(),
                )),
            });
        }
        let schema = self.schema.clone().ok_or_else(|| self.err("no schema"))?;
        let batch = RecordBatch::try_new(schema, cols).map_err(|e| self.err(e))?;
        let encoder = match &mut self.encoder {
            Some(e) => e,
            None => self.encoder.insert(Encoder::start(&self.path, &batch)?),
        };
        let sent = encoder.queue.as_ref().map(|q| q.send(batch));
        if let Some(Ok(())) = sent {
            return Ok(());
        }
        // The encoder stopped: its error.
        let stopped = self.encoder.take().map(|e| e.join(&self.path));
        Err(match stopped {
            Some(Err(e)) => e,
            _ => format!("{}: closed", self.path.display()),
        })
    }

    /// Finishes the file: waits for the queued rows, writes the footer
    /// and syncs.
    pub fn finish(self) -> Result<(), String> {
        if let Some(e) = self.encoder {
            let trace = e.trace.clone();
            let f = e
                .join(&self.path)?
                .into_inner()
                .map_err(|e| format!("{}: {}", self.path.display(), trace.explain(e)))?;
            f.file()
                .sync_all()
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
        }
        Ok(())
    }
}

/// Metrics where smaller is better (ranked ascending), from the facts table.
pub fn lower_is_better(metric: &str) -> bool {
    metric_fact(metric).is_some_and(MetricFact::lower_is_better)
}

/// Writes `value` as pretty JSON.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::registry::{self, ParamSpec};
    use crate::engine::Robustness;
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn other(s: &ParamSpec) -> ParamValue {
        match s.default {
            ParamValue::Real(x) => ParamValue::Real(x + 0.25),
            ParamValue::Int(x) => ParamValue::Int(x + 3),
            ParamValue::Robustness(_) => ParamValue::Robustness(Robustness::Wide),
        }
    }

    /// Every registry row is a `results.parquet` column of its kind, in
    /// registry order, holding the combination's value: grid axes from the
    /// grid, the other rows from the base strategy.
    #[test]
    fn every_parameter_round_trips_through_results_parquet() {
        let mut base = AtcParams::default();
        let mut grid = Grid::default();
        let mut want = AtcParams::default();
        for s in registry::PARAMS {
            let v = other(s);
            s.set(&mut want, v).unwrap();
            if s.axis {
                grid.set_values(s.name, vec![(s.get)(&AtcParams::default()), v])
                    .unwrap();
            } else {
                s.set(&mut base, v).unwrap();
            }
        }
        let last = grid.count() as usize - 1;
        assert_eq!(grid.combo(&base, last), want);
        let ts: Vec<i64> = (0..4)
            .map(|k| 1_704_067_200_000_000 + k * 86_400_000_000)
            .collect();
        let m = crate::backtest::metrics(
            100.0,
            &ts,
            &[100.0, 101.0, 99.0, 102.0],
            &[100.0; 4],
            &[],
            None,
            1.0,
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.parquet");
        let mut w = ResultsWriter::new(&path, &grid, &base);
        w.write(&[Row {
            combo: last,
            sample: "full".into(),
            symbol: Some("X".into()),
            aggregate: None,
            metrics: m,
        }])
        .unwrap();
        w.finish().unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let batch = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let names: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(&names[4..4 + PARAM_COUNT], &PARAM_COLUMNS[..]);
        for s in registry::PARAMS {
            let col = batch.column_by_name(s.name).unwrap();
            assert_eq!(col.data_type(), &param_type(s.kind), "{}", s.name);
            let got = match s.kind {
                ParamKind::Real => ParamValue::Real(
                    col.as_any()
                        .downcast_ref::<Float64Array>()
                        .unwrap()
                        .value(0),
                ),
                ParamKind::Int => ParamValue::Int(
                    col.as_any().downcast_ref::<Int64Array>().unwrap().value(0) as usize,
                ),
                ParamKind::Robustness => ParamValue::Robustness(
                    col.as_any()
                        .downcast_ref::<StringArray>()
                        .unwrap()
                        .value(0)
                        .parse()
                        .unwrap(),
                ),
            };
            assert_eq!(got, other(s), "{}", s.name);
        }
    }

    /// The heatmap's axes (which the report draws and labels) are the grid
    /// axes under their registry names.
    #[test]
    fn heatmap_axes_carry_registry_labels() {
        let mut grid = Grid::default();
        for s in registry::axes() {
            grid.set_values(s.name, vec![s.default]).unwrap();
        }
        let sample = super::super::Sample {
            name: "full".into(),
            from: None,
            to: None,
        };
        let h = super::super::Ranking::new(&grid, &AtcParams::default(), "sharpe", &[sample], 0)
            .heatmap_json(0);
        let names: Vec<&str> = h["axes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = registry::axes().map(|s| s.label()).collect();
        assert_eq!(names, want);
    }
}
