//! How atc-bt writes Parquet: one table of encodings, codecs and
//! statistics for every file it produces (`equity.parquet`,
//! `signals.parquet`, `trades.parquet`, a sweep's `results.parquet`, shard
//! parts, `memory.parquet`), and a [`Table`] writer whose columns are
//! encoded in parallel without changing a byte.
//!
//! The choices, each measured on a 4,000 × 2,500-bar run (README,
//! Performance; `cargo bench --bench parquet_encodings -- DIR` repeats it,
//! in thread CPU time per row, min of the repeats):
//!
//! * Float columns (equity, avg, prices, metrics) hold few repeated values:
//!   dictionary encoding only costs hashing every value, so they are
//!   `PLAIN`; LZ4 (the `LZ4_RAW` codec) compresses them nearly as well as
//!   zstd at half the time. `BYTE_STREAM_SPLIT` was larger for all but one
//!   column and slower (again in round 30: `avg` 5.9 against 4.8 bytes per
//!   row, `position` 2.5 against 0.9), so it is not used. Their pages are
//!   built by [`ValueEncoder::encode_floats`] with no per-row work:
//!   `DATA_PAGE_V2` pages (levels stored apart from the compressed values),
//!   a symbol's values compressed where they lie, one page per symbol of at
//!   least 1,024 rows; parquet-rs's column writer copied every value into
//!   its page buffer and built a level per row (3% of a run's CPU time). A
//!   float column with statistics goes through parquet-rs's column writer
//!   fed the arrays' value slices, the same bytes as its Arrow writer
//!   (tested) without the Arrow writer's per-row work around the encoder
//!   (a vector of row indices, the values gathered through it, definition
//!   levels built even where nothing is null).
//! * Key columns, the ones a reader filters on (`ts`, `symbol`, …), carry
//!   min/max statistics (row group and page), so polars, DuckDB, pyarrow and
//!   the report skip row groups and pages; no other column pays for
//!   statistics. Sorted timestamps are `DELTA_BINARY_PACKED` (a symbol's
//!   bars are evenly spaced, so a page shrinks to a few bytes per block).
//!   String keys are `PLAIN` + zstd 1: a run's `symbol` is one name
//!   repeated, which zstd shrinks to 0.01 byte per row. Measured against
//!   it: dictionary encoding (one index per row, run-length encoded) is
//!   slower (22–30 against 16–21 ns per row: parquet-rs hashes every value
//!   to find its index), uncompressed `PLAIN` writes 12 bytes per row and is
//!   slower too, LZ4 is no faster within the noise and 7× larger.
//! * 8-bit integers (`dir`: −1, 0, 1) are `PLAIN` + zstd 1: dictionary
//!   encoding hashed every value to find one of three indices (16–28
//!   against 12 ns per row; 0.11 against 0.20 bytes per row).
//! * Every other column (directions of trades, counts, labels) keeps the
//!   default dictionary encoding and zstd level 1. LZ4 instead of zstd for
//!   them (parquet-rs creates a zstd context per page) saved nothing
//!   measurable in a run's CPU time and added 4% to the files.
//!
//! No column is nullable that can be null nowhere: `symbol`, `aggregate`
//! and `position` of `equity.parquet` are null on the other kind of row
//! (aggregate rows, symbol rows), `avg` in the warm-up, `exit_ts` while a
//! trade is open, `gross` off the account's rows.
//!
//! Row groups are cut where the caller says (a run cuts them at symbol
//! boundaries, so a symbol's rows share one row group), never by buffer
//! sizes, and each column's pages depend only on the values written to it:
//! the file's bytes are a function of the rows and their grouping, whatever
//! the thread count.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_writer::{
    compute_leaves, get_column_writers, ArrowColumnChunk, ArrowColumnWriter,
};
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::writer::{
    get_column_writer, ColumnCloseResult, ColumnWriter, ColumnWriterImpl,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, ColumnPath, SchemaDescriptor};
use rayon::prelude::*;

/// Errors writing a Parquet file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// File-system error.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Arrow/Parquet encoding error.
    #[error("{}: cannot write Parquet: {message}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl WriteError {
    /// The file the error concerns.
    pub fn path(&self) -> &Path {
        match self {
            WriteError::Io { path, .. } | WriteError::Parquet { path, .. } => path,
        }
    }
}

/// The encodings, codecs and statistics of a file. [`Layout::default`] is
/// what atc-bt writes; the other settings exist to measure the choice
/// (`benches/parquet_encodings.rs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    /// Codec of float columns.
    pub float_codec: Compression,
    /// Encoding of float columns; `None` is dictionary encoding.
    pub float_encoding: Option<Encoding>,
    /// Encoding of timestamp and integer key columns; `None` is
    /// dictionary encoding.
    pub key_int_encoding: Option<Encoding>,
    /// Encoding of string key columns; `None` is dictionary encoding.
    pub key_string_encoding: Option<Encoding>,
    /// Encoding of 8-bit integer columns (`dir`); `None` is dictionary
    /// encoding.
    pub small_int_encoding: Option<Encoding>,
    /// Codec of every other column.
    pub codec: Compression,
    /// Min/max statistics on every column, not only the keys (the
    /// parquet-rs default).
    pub statistics_everywhere: bool,
    /// At most this many rows per row group (a caller that cuts groups
    /// itself, like the run writer, keeps below it).
    pub row_group_rows: usize,
}

/// Version of the bytes this module writes for the same values (an
/// encoding, codec or page layout changed). The run cache's keys include
/// it, so an entry written by a build with another layout is never
/// restored: a cached run's files are the bytes a cold run writes.
/// Version 2: `dir` columns `PLAIN` instead of dictionary-encoded.
/// Version 3: a run's per-bar `symbol` and `aggregate` columns built as
/// runs ([`RunsEncoder`]). Version 4: their `ts` statistics computed by
/// the encoder ([`ValueEncoder`]), none in the page headers. Version 5:
/// their column index cuts names to 64 bytes. Version 6: the `symbol`
/// column of a run's `trades.parquet` built as runs too. Version 7: a
/// run's `dir` as runs ([`IntRunsEncoder`]). Version 8: float columns
/// without statistics as `DATA_PAGE_V2` pages built here, a page per
/// symbol ([`ValueEncoder::encode_floats`]).
pub const LAYOUT_VERSION: u32 = 8;

/// Rows per row group at most: about a million, the usual reader default.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

impl Default for Layout {
    fn default() -> Self {
        Layout {
            float_codec: Compression::LZ4_RAW,
            float_encoding: Some(Encoding::PLAIN),
            key_int_encoding: Some(Encoding::DELTA_BINARY_PACKED),
            key_string_encoding: Some(Encoding::PLAIN),
            small_int_encoding: Some(Encoding::PLAIN),
            codec: zstd1(),
            statistics_everywhere: false,
            row_group_rows: ROW_GROUP_ROWS,
        }
    }
}

/// zstd at level 1.
pub fn zstd1() -> Compression {
    Compression::ZSTD(ZstdLevel::default())
}

impl Layout {
    /// The writer properties of a file with columns `schema`, of which
    /// `keys` are filtered on (they get statistics).
    pub fn properties(&self, schema: &arrow_schema::Schema, keys: &[&str]) -> WriterProperties {
        self.builder(schema, keys).build()
    }

    fn builder(
        &self,
        schema: &arrow_schema::Schema,
        keys: &[&str],
    ) -> parquet::file::properties::WriterPropertiesBuilder {
        let stats = if self.statistics_everywhere {
            EnabledStatistics::Page
        } else {
            EnabledStatistics::None
        };
        let mut b = WriterProperties::builder()
            .set_compression(self.codec)
            .set_statistics_enabled(stats)
            .set_max_row_group_size(self.row_group_rows);
        for f in schema.fields() {
            let col = ColumnPath::from(f.name().as_str());
            let key = keys.contains(&f.name().as_str());
            if key {
                b = b.set_column_statistics_enabled(col.clone(), EnabledStatistics::Page);
            }
            let encoding = match f.data_type() {
                DataType::Float64 | DataType::Float32 => {
                    b = b.set_column_compression(col.clone(), self.float_codec);
                    self.float_encoding
                }
                DataType::Timestamp(_, _)
                | DataType::Int64
                | DataType::Int32
                | DataType::UInt64
                | DataType::UInt32
                    if key =>
                {
                    self.key_int_encoding
                }
                DataType::Utf8 if key => self.key_string_encoding,
                DataType::Int8 | DataType::UInt8 => self.small_int_encoding,
                _ => None,
            };
            if let Some(e) = encoding {
                b = b
                    .set_column_dictionary_enabled(col.clone(), false)
                    .set_column_encoding(col, e);
            }
        }
        b
    }
}

/// A Parquet file written one row group at a time. The columns of a row
/// group are encoded independently ([`Table::column_writers`], or all at
/// once in parallel by [`Table::write`]) and appended in schema order, so
/// the bytes do not depend on which thread encoded what.
pub struct Table {
    path: PathBuf,
    schema: SchemaRef,
    props: WriterPropertiesPtr,
    /// `props` without the statistics a [`ValueEncoder`] computes itself.
    own_statistics: WriterPropertiesPtr,
    descr: SchemaDescriptor,
    writer: SerializedFileWriter<TracedFile>,
    trace: IoTrace,
}

impl Table {
    /// Creates `path` for rows of `schema` in the default [`Layout`];
    /// `keys` are the columns readers filter on.
    pub fn create(path: &Path, schema: SchemaRef, keys: &[&str]) -> Result<Table, WriteError> {
        Table::create_with(path, schema, keys, &Layout::default())
    }

    /// [`Table::create`] with another layout.
    pub fn create_with(
        path: &Path,
        schema: SchemaRef,
        keys: &[&str],
        layout: &Layout,
    ) -> Result<Table, WriteError> {
        let perr = |e: &dyn std::fmt::Display| WriteError::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut props = layout.properties(&schema, keys);
        // What `ArrowWriter` adds: readers restore the exact Arrow types
        // (the timestamps' zone) from it.
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let descr = ArrowSchemaConverter::new()
            .convert(&schema)
            .map_err(|e| perr(&e))?;
        let props = Arc::new(props);
        let mut own = layout.builder(&schema, keys);
        for (i, f) in schema.fields().iter().enumerate() {
            if ValueEncoder::computes_statistics(f, &descr.column(i), &props) {
                own = own.set_column_statistics_enabled(
                    ColumnPath::from(f.name().as_str()),
                    EnabledStatistics::None,
                );
            }
        }
        let own_statistics = Arc::new(own.build());
        let (file, trace) = TracedFile::create(path).map_err(|source| WriteError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let writer = SerializedFileWriter::new(file, descr.root_schema_ptr(), props.clone())
            .map_err(|e| perr(&e))?;
        Ok(Table {
            path: path.to_path_buf(),
            schema,
            props,
            own_statistics,
            descr,
            writer,
            trace,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Arrow schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn err(&self, e: impl std::fmt::Display) -> WriteError {
        WriteError::Parquet {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// One writer per column for the next row group (flat schemas: one
    /// leaf per field). Feed each with [`write_column`] on any thread, then
    /// give their chunks to [`Table::append`].
    pub fn column_writers(&self) -> Result<Vec<ArrowColumnWriter>, WriteError> {
        get_column_writers(&self.descr, &self.props, &self.schema).map_err(|e| self.err(e))
    }

    /// The encoder of column `column` (by schema position) for the next
    /// row group, if that column holds `Float64` values or microsecond
    /// timestamps: the column encoded without Arrow's per-row levels and
    /// gathering ([`ValueEncoder`]), to any thread.
    pub fn value_encoder(&self, column: usize) -> Option<ValueEncoder> {
        let field = self.schema.fields().get(column)?;
        matches!(
            field.data_type(),
            DataType::Float64 | DataType::Timestamp(TimeUnit::Microsecond, _)
        )
        .then(|| ValueEncoder {
            descr: self.descr.column(column),
            props: self.props.clone(),
            own_statistics: None,
        })
    }

    /// [`Table::value_encoder`] computing a timestamp key's statistics
    /// itself (see [`ValueEncoder`]): the same values and statistics, but
    /// not the bytes of the Arrow writer (the page headers carry no
    /// statistics). A run's per-bar files are written so; files whose
    /// bytes are kept (a sweep's) are not.
    pub fn value_encoder_with_own_statistics(&self, column: usize) -> Option<ValueEncoder> {
        let mut e = self.value_encoder(column)?;
        let field = &self.schema.fields()[column];
        if ValueEncoder::computes_statistics(field, &e.descr, &self.props) {
            e.own_statistics = Some(self.own_statistics.clone());
        }
        Some(e)
    }

    /// The encoder of string column `column` (by schema position) for the
    /// next row group, for rows that come in runs of one value
    /// ([`RunsEncoder`]), if that column holds strings.
    pub fn runs_encoder(&self, column: usize) -> Option<RunsEncoder> {
        let field = self.schema.fields().get(column)?;
        let descr = self.descr.column(column);
        let statistics = self.props.statistics_enabled(descr.path()) != EnabledStatistics::None;
        (field.data_type() == &DataType::Utf8).then_some(RunsEncoder { descr, statistics })
    }

    /// The encoder of 8-bit integer column `column` (by schema position)
    /// for the next row group, for values in long runs
    /// ([`IntRunsEncoder`]), if that column is one and has no statistics.
    pub fn int_runs_encoder(&self, column: usize) -> Option<IntRunsEncoder> {
        let field = self.schema.fields().get(column)?;
        let descr = self.descr.column(column);
        (field.data_type() == &DataType::Int8
            && self.props.statistics_enabled(descr.path()) == EnabledStatistics::None)
            .then_some(IntRunsEncoder { descr })
    }

    /// Closes the column writers of one row group and appends it.
    pub fn append(&mut self, columns: Vec<ArrowColumnWriter>) -> Result<(), WriteError> {
        let chunks = columns
            .into_iter()
            .map(|c| c.close().map(Chunk::Arrow))
            .collect::<Result<Vec<Chunk>, _>>()
            .map_err(|e| self.err(e))?;
        self.append_chunks(chunks)
    }

    /// Appends one row group of encoded columns, in schema order.
    pub fn append_chunks(&mut self, chunks: Vec<Chunk>) -> Result<(), WriteError> {
        let path = self.path.clone();
        let trace = self.trace.clone();
        let perr = |e: parquet::errors::ParquetError| WriteError::Parquet {
            path: path.clone(),
            message: trace.explain(e),
        };
        let mut rg = self.writer.next_row_group().map_err(perr)?;
        for c in chunks {
            match c {
                Chunk::Arrow(c) => c.append_to_row_group(&mut rg),
                Chunk::Pages { data, close } => rg.append_column(&data, close),
            }
            .map_err(perr)?;
        }
        rg.close().map_err(perr)?;
        start_writeback(self.writer.inner().file());
        Ok(())
    }

    /// Writes `columns` (in schema order, equal lengths) as row groups of
    /// at most [`Layout::row_group_rows`] rows, each column encoded on its
    /// own rayon task. Nothing is written for zero rows.
    pub fn write(&mut self, columns: Vec<ArrayRef>) -> Result<(), WriteError> {
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| self.err(e))?;
        self.write_columns(batch.columns().iter().cloned().map(Column::Array).collect())
    }

    /// [`Table::write`] with string columns given as runs
    /// ([`Column::Runs`], encoded by [`RunsEncoder`]). An array must be of
    /// its field's type, without nulls where the field has none.
    pub fn write_columns(&mut self, columns: Vec<Column<'_>>) -> Result<(), WriteError> {
        let fields = self.schema.fields().clone();
        if columns.len() != fields.len() {
            return Err(self.err(format!(
                "{} columns for a schema of {}",
                columns.len(),
                fields.len()
            )));
        }
        let mut rows = None;
        for (c, f) in columns.iter().zip(fields.iter()) {
            let n = match c {
                Column::Array(a) => {
                    if a.data_type() != f.data_type() || (!f.is_nullable() && a.null_count() > 0) {
                        return Err(self.err(format!(
                            "column `{}`: {} values{} for a field of {}",
                            f.name(),
                            a.data_type(),
                            if a.null_count() > 0 {
                                " with nulls"
                            } else {
                                ""
                            },
                            f
                        )));
                    }
                    a.len()
                }
                Column::Runs(r) => r.iter().map(|r| r.1).sum(),
            };
            if *rows.get_or_insert(n) != n {
                return Err(self.err(format!(
                    "column `{}` has {n} rows, the first {}",
                    f.name(),
                    rows.unwrap_or(0)
                )));
            }
        }
        let rows = rows.unwrap_or(0);
        let step = self.props.max_row_group_size().max(1);
        let mut start = 0;
        while start < rows {
            let len = step.min(rows - start);
            let writers = self.column_writers()?;
            let floats: Vec<Option<ValueEncoder>> =
                (0..fields.len()).map(|i| self.value_encoder(i)).collect();
            let runs: Vec<Option<RunsEncoder>> =
                (0..fields.len()).map(|i| self.runs_encoder(i)).collect();
            let chunks = writers
                .into_par_iter()
                .zip(floats)
                .zip(runs)
                .zip(columns.par_iter())
                .zip(fields.par_iter())
                .map(
                    |((((mut w, float), runs), col), field)| match (col, float, runs) {
                        (Column::Array(a), Some(f), _) => f.encode([a.slice(start, len).as_ref()]),
                        (Column::Array(a), None, _) => {
                            write_column(&mut w, field, a.slice(start, len))?;
                            w.close().map(Chunk::Arrow).map_err(|e| e.to_string())
                        }
                        (Column::Runs(r), _, Some(e)) => {
                            e.encode(&runs_within(r, start..start + len))
                        }
                        (Column::Runs(_), _, None) => {
                            Err(format!("column `{}` is not a string column", field.name()))
                        }
                    },
                )
                .collect::<Result<Vec<Chunk>, String>>()
                .map_err(|e| self.err(e))?;
            self.append_chunks(chunks)?;
            start += len;
        }
        Ok(())
    }

    /// Writes the footer and syncs the file to disk.
    pub fn finish(self) -> Result<(), WriteError> {
        self.close()?.sync()
    }

    /// Writes the footer, leaving the sync to the caller
    /// ([`Unsynced::sync`]): a run syncs its large files on threads of
    /// their own while its last CPU work runs beside them.
    pub fn close(self) -> Result<Unsynced, WriteError> {
        let path = self.path;
        let trace = self.trace;
        let file = self.writer.into_inner().map_err(|e| WriteError::Parquet {
            path: path.clone(),
            message: trace.explain(e),
        })?;
        Ok(Unsynced {
            path,
            file: file.file,
        })
    }
}

/// A file whose bytes are all written but not yet synced to disk
/// ([`Table::close`]).
#[must_use = "a written file is durable only once synced"]
pub struct Unsynced {
    path: PathBuf,
    file: File,
}

impl Unsynced {
    /// `file`, written in full to `path`, to be synced.
    pub fn new(path: PathBuf, file: File) -> Unsynced {
        Unsynced { path, file }
    }

    /// Syncs the file's data and metadata to disk (`fsync`); the error
    /// names the file.
    pub fn sync(&self) -> Result<(), WriteError> {
        self.file.sync_all().map_err(|source| WriteError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// The rows of one column for [`Table::write_columns`].
#[derive(Clone)]
pub enum Column<'a> {
    /// The values.
    Array(ArrayRef),
    /// A string column as runs of one value (`None`: null) and their
    /// rows, in row order ([`RunsEncoder`]).
    Runs(Vec<(Option<&'a str>, usize)>),
}

/// The part of `runs` (values and their rows, in row order) that covers
/// rows `range`.
fn runs_within<'a>(
    runs: &[(Option<&'a str>, usize)],
    range: std::ops::Range<usize>,
) -> Vec<(Option<&'a str>, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    for &(v, n) in runs {
        let (lo, hi) = (at.max(range.start), (at + n).min(range.end));
        if lo < hi {
            out.push((v, hi - lo));
        }
        at += n;
        if at >= range.end {
            break;
        }
    }
    out
}

/// One encoded column chunk of a row group, for [`Table::append_chunks`].
pub enum Chunk {
    /// Encoded by parquet-rs's Arrow writer ([`Table::column_writers`]).
    Arrow(ArrowColumnChunk),
    /// Encoded by a [`ValueEncoder`]: the pages and their metadata.
    Pages {
        /// The column chunk's pages (offsets from 0).
        data: Bytes,
        /// What the column writer returned on closing.
        close: ColumnCloseResult,
    },
}

impl Chunk {
    /// A copy of a [`Chunk::Pages`] (its bytes are shared); `None` for a
    /// chunk of the Arrow writer, which cannot be copied.
    pub fn pages_clone(&self) -> Option<Chunk> {
        match self {
            Chunk::Pages { data, close } => Some(Chunk::Pages {
                data: data.clone(),
                close: close.clone(),
            }),
            Chunk::Arrow(_) => None,
        }
    }
}

/// Encodes one `Float64` or timestamp (µs) column of a row group with
/// parquet-rs's column writer itself, fed the arrays' value slices: the
/// pages, their statistics and metadata are those of the Arrow writer (the
/// same encoder, fed the same values in the same calls; tested), without
/// its per-row work around the encoder (a vector of row indices per array,
/// values gathered through it, definition levels built even where no
/// value is null), 13–19% of a float column's encoding time (README,
/// Performance). Built by [`Table::value_encoder`].
///
/// Built by [`Table::value_encoder_with_own_statistics`], a non-nullable
/// timestamp column with statistics (a per-bar file's `ts`) gets them
/// from this encoder, not from parquet-rs, whose min/max per value clones
/// the column's logical type for every comparison: 10% of a run's CPU
/// time. The chunk's statistics and the column index are those
/// parquet-rs computes (tested); the page headers carry none (the page
/// index has them).
#[derive(Clone)]
pub struct ValueEncoder {
    descr: ColumnDescPtr,
    props: WriterPropertiesPtr,
    /// The properties without the statistics this encoder computes.
    own_statistics: Option<WriterPropertiesPtr>,
}

impl ValueEncoder {
    /// Encodes `arrays` (of the column's type, in row order) as one column
    /// chunk. Errors are text: the caller names the file.
    pub fn encode<'a>(
        &self,
        arrays: impl IntoIterator<Item = &'a dyn Array>,
    ) -> Result<Chunk, String> {
        let arrays: Vec<&dyn Array> = arrays.into_iter().collect();
        if self.encodes_floats_itself() {
            return self.encode_floats(&arrays);
        }
        let mut sink = TrackedWrite::new(Vec::new());
        let pages = Box::new(SerializedPageWriter::new(&mut sink));
        let props = self.own_statistics.as_ref().unwrap_or(&self.props);
        let close = match get_column_writer(self.descr.clone(), props.clone(), pages) {
            ColumnWriter::DoubleColumnWriter(mut w) => {
                self.feed::<Float64Type, _>(&mut w, arrays.iter().copied())?;
                w.close()
            }
            ColumnWriter::Int64ColumnWriter(mut w) => {
                self.feed::<TimestampMicrosecondType, _>(&mut w, arrays.iter().copied())?;
                let close = w.close().map_err(|e| e.to_string())?;
                if self.own_statistics.is_some() {
                    self.with_statistics(close, &arrays)
                } else {
                    Ok(close)
                }
            }
            _ => {
                return Err(format!(
                    "column `{}` is neither floats nor timestamps",
                    self.descr.name()
                ))
            }
        }
        .map_err(|e| e.to_string())?;
        let data = sink.into_inner().map_err(|e| e.to_string())?;
        Ok(Chunk::Pages {
            data: Bytes::from(data),
            close,
        })
    }

    /// Whether this column's pages are built here ([`Self::encode_floats`]):
    /// floats, `PLAIN`, LZ4, no dictionary, no statistics (atc-bt's
    /// [`Layout`]), on a little-endian machine (the values' bytes are
    /// their `PLAIN` encoding).
    fn encodes_floats_itself(&self) -> bool {
        let (p, path) = (&self.props, self.descr.path());
        cfg!(target_endian = "little")
            && self.descr.physical_type() == parquet::basic::Type::DOUBLE
            && p.compression(path) == Compression::LZ4_RAW
            && p.encoding(path) == Some(Encoding::PLAIN)
            && !p.dictionary_enabled(path)
            && p.statistics_enabled(path) == EnabledStatistics::None
    }

    /// The column chunk of float `arrays` built directly, with no per-row
    /// work: `DATA_PAGE_V2` pages, whose definition levels are stored
    /// uncompressed beside the LZ4-compressed values, so an array (a
    /// symbol's rows) of at least [`FLOAT_PART_ROWS`] rows is compressed
    /// where it lies, in pages of at most [`FLOAT_PAGE_ROWS`] rows, and its
    /// levels are a run or a few (a warm-up's nulls). Shorter arrays share
    /// a page, their values gathered. parquet-rs's column writer copied
    /// every value into its page buffer and built one level per row.
    fn encode_floats(&self, arrays: &[&dyn Array]) -> Result<Chunk, String> {
        let name = self.descr.name();
        let nullable = self.descr.max_def_level() > 0;
        let arrays = arrays
            .iter()
            .map(|a| {
                let f = a.as_primitive_opt::<Float64Type>().ok_or_else(|| {
                    format!(
                        "column `{name}`: {} values in a column of {}",
                        a.data_type(),
                        DataType::Float64
                    )
                })?;
                if !nullable && f.null_count() > 0 {
                    return Err(format!("column `{name}` is not nullable but holds nulls"));
                }
                Ok(f)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let rows: usize = arrays.iter().map(|a| a.len()).sum();
        // Room for the values uncompressed (LZ4 adds at most 1/255 to
        // incompressible ones), their levels and the page headers.
        let bound = rows * 8 + rows / 64 + 4096;
        let mut pages = FloatPages {
            chunk: PagesBuilder::with_capacity(&self.descr, bound),
            nullable,
            gathered: Vec::new(),
            compressed: Vec::new(),
        };
        let mut short: Vec<(&Float64Array, std::ops::Range<usize>)> = Vec::new();
        let mut short_rows = 0;
        for a in arrays.iter().copied().filter(|a| !a.is_empty()) {
            if a.len() >= FLOAT_PART_ROWS {
                pages.page(&short)?;
                short.clear();
                short_rows = 0;
                let mut at = 0;
                while at < a.len() {
                    let end = (at + FLOAT_PAGE_ROWS).min(a.len());
                    pages.page(&[(a, at..end)])?;
                    at = end;
                }
            } else {
                short.push((a, 0..a.len()));
                short_rows += a.len();
                if short_rows >= FLOAT_PART_ROWS {
                    pages.page(&short)?;
                    short.clear();
                    short_rows = 0;
                }
            }
        }
        pages.page(&short)?;
        pages.chunk.finish(rows, None)
    }

    /// Whether a [`ValueEncoder`] of `field` (column `descr`, written with
    /// `props`) computes the column's statistics itself.
    fn computes_statistics(field: &Field, descr: &ColumnDescPtr, props: &WriterProperties) -> bool {
        matches!(
            field.data_type(),
            DataType::Timestamp(TimeUnit::Microsecond, _)
        ) && !field.is_nullable()
            && descr.max_def_level() == 0
            && props.statistics_enabled(descr.path()) == EnabledStatistics::Page
    }

    /// `close` (a chunk of `arrays`, non-null `i64` values, written without
    /// statistics) with the chunk's min/max statistics and the column index
    /// parquet-rs would have built: each page's min/max (pages from the
    /// offset index), the boundary order by its rule.
    fn with_statistics(
        &self,
        mut close: ColumnCloseResult,
        arrays: &[&dyn Array],
    ) -> Result<ColumnCloseResult, parquet::errors::ParquetError> {
        use parquet::file::metadata::{ColumnChunkMetaDataBuilder, ColumnIndexBuilder};
        use parquet::file::statistics::{Statistics, ValueStatistics};
        let values: Vec<&[i64]> = arrays
            .iter()
            .filter_map(|a| a.as_primitive_opt::<TimestampMicrosecondType>())
            .map(|a| a.values().as_ref())
            .collect();
        let rows: usize = values.iter().map(|v| v.len()).sum();
        let offsets = close.offset_index.as_ref().ok_or_else(|| {
            parquet::errors::ParquetError::General("no offset index to find the pages".into())
        })?;
        let mut starts: Vec<usize> = offsets
            .page_locations
            .iter()
            .map(|p| p.first_row_index as usize)
            .collect();
        starts.push(rows);
        // Min and max of rows `range` of the arrays, as one series.
        let min_max = |range: std::ops::Range<usize>| {
            let (mut at, mut m) = (0usize, None::<(i64, i64)>);
            for v in &values {
                let (lo, hi) = (range.start.max(at), range.end.min(at + v.len()));
                if lo < hi {
                    let part = &v[lo - at..hi - at];
                    let (a, b) = part
                        .iter()
                        .fold((i64::MAX, i64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
                    m = Some(m.map_or((a, b), |(c, d)| (c.min(a), d.max(b))));
                }
                at += v.len();
            }
            m
        };
        let mut index = ColumnIndexBuilder::new();
        let (mut ascending, mut descending) = (true, true);
        let mut last: Option<(i64, i64)> = None;
        for w in starts.windows(2) {
            let Some((lo, hi)) = min_max(w[0]..w[1]) else {
                continue;
            };
            if let Some((l, h)) = last {
                ascending &= !(l > lo || h > hi);
                descending &= !(lo > l || hi > h);
            }
            last = Some((lo, hi));
            index.append(
                false,
                lo.to_le_bytes().to_vec(),
                hi.to_le_bytes().to_vec(),
                0,
            );
        }
        index.set_boundary_order(boundary_order(ascending, descending));
        let all = min_max(0..rows);
        let statistics =
            ValueStatistics::new(all.map(|m| m.0), all.map(|m| m.1), None, Some(0), false)
                .with_backwards_compatible_min_max(self.descr.sort_order().is_signed());
        close.metadata = ColumnChunkMetaDataBuilder::from(close.metadata)
            .set_statistics(Statistics::Int64(statistics))
            .build()?;
        close.column_index = Some(index.build_to_thrift());
        Ok(close)
    }

    /// Writes `arrays` (values of Arrow type `A`) into `w`.
    fn feed<'a, A, P>(
        &self,
        w: &mut ColumnWriterImpl<'_, P>,
        arrays: impl IntoIterator<Item = &'a dyn Array>,
    ) -> Result<(), String>
    where
        A: ArrowPrimitiveType,
        P: parquet::data_type::DataType<T = A::Native>,
    {
        let nullable = self.descr.max_def_level() > 0;
        // Definition levels: all 1 for an array without nulls; else
        // 1/0 per row, and the non-null values alone.
        let (mut ones, mut levels, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for a in arrays {
            let a = a.as_primitive_opt::<A>().ok_or_else(|| {
                format!(
                    "column `{}`: {} values in a column of {}",
                    self.descr.name(),
                    a.data_type(),
                    A::DATA_TYPE
                )
            })?;
            let written = match a.nulls().filter(|n| n.null_count() > 0) {
                None if !nullable => w.write_batch(a.values(), None, None),
                None => {
                    if ones.len() < a.len() {
                        ones.resize(a.len(), 1i16);
                    }
                    w.write_batch(a.values(), Some(&ones[..a.len()]), None)
                }
                Some(_) if !nullable => {
                    return Err(format!(
                        "column `{}` is not nullable but holds nulls",
                        self.descr.name()
                    ))
                }
                Some(nulls) => {
                    // Run by run of valid rows (a warm-up's nulls are one).
                    levels.clear();
                    values.clear();
                    for (start, end) in nulls.inner().set_slices() {
                        levels.resize(start, 0);
                        levels.resize(end, 1);
                        values.extend_from_slice(&a.values()[start..end]);
                    }
                    levels.resize(a.len(), 0);
                    w.write_batch(&values, Some(&levels), None)
                }
            };
            written.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Rows of a float page at most (parquet-rs's default page row limit).
const FLOAT_PAGE_ROWS: usize = 20_000;

/// A float array (a symbol's rows) of at least this many rows gets pages
/// of its own; shorter ones share one until it holds this many.
const FLOAT_PART_ROWS: usize = 1_024;

/// The pages of one float column chunk ([`ValueEncoder::encode_floats`]),
/// with the buffers they reuse.
struct FloatPages {
    chunk: PagesBuilder,
    nullable: bool,
    /// The values of a page built from several parts.
    gathered: Vec<u8>,
    /// LZ4's output (kept at the largest size needed, so not zeroed again).
    compressed: Vec<u8>,
}

impl FloatPages {
    /// One page of rows `parts` (in row order); none if they are empty.
    fn page(&mut self, parts: &[(&Float64Array, std::ops::Range<usize>)]) -> Result<(), String> {
        let rows: usize = parts.iter().map(|(_, r)| r.len()).sum();
        if rows == 0 {
            return Ok(());
        }
        // Definition levels as runs (adjacent equal runs joined), and the
        // non-null values' bytes, slice by slice.
        let mut levels = Vec::new();
        let mut run = (1u32, 0usize);
        let mut level = |levels: &mut Vec<u8>, v: u32, n: usize| {
            if n == 0 {
                return;
            }
            if run.0 != v && run.1 > 0 {
                rle_run(levels, run.1, run.0, 1);
                run.1 = 0;
            }
            run = (v, run.1 + n);
        };
        let mut slices: Vec<&[u8]> = Vec::new();
        let mut nulls = 0;
        for (a, r) in parts {
            let bytes = a.values().inner().as_slice();
            match a.nulls().filter(|n| n.null_count() > 0) {
                None => {
                    level(&mut levels, 1, r.len());
                    slices.push(&bytes[r.start * 8..r.end * 8]);
                }
                Some(n) => {
                    let valid = n.inner().slice(r.start, r.len());
                    let mut at = r.start;
                    for (s, e) in valid.set_slices() {
                        let (s, e) = (r.start + s, r.start + e);
                        level(&mut levels, 0, s - at);
                        level(&mut levels, 1, e - s);
                        slices.push(&bytes[s * 8..e * 8]);
                        at = e;
                    }
                    level(&mut levels, 0, r.end - at);
                    nulls += r.len() - valid.count_set_bits();
                }
            }
        }
        if !self.nullable {
            levels.clear();
        } else if run.1 > 0 {
            rle_run(&mut levels, run.1, run.0, 1);
        }
        let values: &[u8] = match slices.as_slice() {
            [one] => one,
            _ => {
                self.gathered.clear();
                for s in &slices {
                    self.gathered.extend_from_slice(s);
                }
                &self.gathered
            }
        };
        let (levels_len, size) = (levels.len(), levels.len() + values.len());
        let mut buf = levels;
        let compression = if values.is_empty() {
            Compression::UNCOMPRESSED
        } else {
            let max = lz4_flex::block::get_maximum_output_size(values.len());
            if self.compressed.len() < max {
                self.compressed.resize(max, 0);
            }
            let n = lz4_flex::block::compress_into(values, &mut self.compressed).map_err(|e| {
                self.chunk
                    .err(parquet::errors::ParquetError::General(e.to_string()))
            })?;
            buf.reserve_exact(n);
            buf.extend_from_slice(&self.compressed[..n]);
            Compression::LZ4_RAW
        };
        self.chunk
            .data_page_v2(buf, levels_len, rows, nulls, size, compression)
    }
}

/// Encodes one string column of a row group whose rows come in runs of
/// one value (or null), as a run's per-bar files hold them: `symbol` is
/// the symbol's name on each of its bars, `aggregate` null on them. The
/// column chunk is built directly, with no per-row work:
///
/// * a dictionary page (`PLAIN`) of the distinct values, in order of first
///   appearance, then one data page per run of equal rows (`RLE_DICTIONARY`: the run is
///   one run-length-encoded index; a nullable column's definition levels
///   are one run too). A chunk with no value at all has no dictionary and
///   `PLAIN` pages with no values, as parquet-rs writes them;
/// * uncompressed (a page is a few bytes);
/// * the chunk's min/max statistics, and the page index (column index
///   with each page's value, offset index), where the layout gives the
///   column statistics (keys), so readers skip to a symbol's pages.
///
/// This is the encoding pyarrow and most writers give string columns by
/// default. parquet-rs would hash or copy, compare and compress every
/// row: 15–19 ns per row and file for `symbol` (README, Performance).
/// Built by [`Table::runs_encoder`].
#[derive(Clone)]
pub struct RunsEncoder {
    descr: ColumnDescPtr,
    statistics: bool,
}

/// Rows of one data page of a [`RunsEncoder`] at most (a longer run spans
/// several pages).
const RUN_PAGE_ROWS: usize = 1 << 20;

impl RunsEncoder {
    /// Encodes `runs` (each a value, `None` for null, and its rows; in row
    /// order) as one column chunk. Errors are text: the caller names the
    /// file.
    pub fn encode(&self, runs: &[(Option<&str>, usize)]) -> Result<Chunk, String> {
        use parquet::data_type::ByteArray;
        use parquet::file::metadata::ColumnIndexBuilder;
        use parquet::file::statistics::{Statistics, ValueStatistics};
        let nullable = self.descr.max_def_level() > 0;
        if self.descr.physical_type() != parquet::basic::Type::BYTE_ARRAY {
            return Err(format!(
                "column `{}` is not a string column",
                self.descr.name()
            ));
        }
        // The dictionary: distinct values in order of first appearance.
        let mut index: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        let mut values: Vec<&str> = Vec::new();
        let mut nulls = 0usize;
        for &(v, n) in runs.iter().filter(|r| r.1 > 0) {
            match v {
                Some(v) => {
                    index.entry(v).or_insert_with(|| {
                        values.push(v);
                        (values.len() - 1) as u32
                    });
                }
                None if nullable => nulls += n,
                None => {
                    return Err(format!(
                        "column `{}` is not nullable but holds nulls",
                        self.descr.name()
                    ))
                }
            }
        }
        let rows: usize = runs.iter().map(|r| r.1).sum();
        let width = index_width(values.len());
        let mut chunk = PagesBuilder::new(&self.descr);
        if !values.is_empty() {
            let mut buf = Vec::new();
            for v in &values {
                buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                buf.extend_from_slice(v.as_bytes());
            }
            chunk.dictionary_page(buf, values.len())?;
        }
        let mut column_index = ColumnIndexBuilder::new();
        let (mut ascending, mut descending) = (true, true);
        let mut last: Option<&str> = None;
        let (mut min, mut max): (Option<&str>, Option<&str>) = (None, None);
        // Equal neighbours (nulls above all) share pages.
        let mut merged: Vec<(Option<&str>, usize)> = Vec::with_capacity(runs.len());
        for &(v, n) in runs.iter().filter(|r| r.1 > 0) {
            match merged.last_mut() {
                Some((w, m)) if *w == v => *m += n,
                _ => merged.push((v, n)),
            }
        }
        for &(v, n) in &merged {
            let mut left = n;
            while left > 0 {
                let len = left.min(RUN_PAGE_ROWS);
                left -= len;
                let mut buf = Vec::new();
                if nullable {
                    let mut levels = Vec::new();
                    rle_run(&mut levels, len, u32::from(v.is_some()), 1);
                    buf.extend_from_slice(&(levels.len() as u32).to_le_bytes());
                    buf.extend_from_slice(&levels);
                }
                if !values.is_empty() {
                    buf.push(width);
                    if let Some(v) = v {
                        rle_run(&mut buf, len, index[v], width);
                    }
                }
                chunk.data_page(buf, len)?;
                match v {
                    Some(v) => {
                        column_index.append(false, index_min(v), index_max(v), 0);
                        if let Some(l) = last {
                            ascending &= l <= v;
                            descending &= l >= v;
                        }
                        last = Some(v);
                        min = Some(min.map_or(v, |m| m.min(v)));
                        max = Some(max.map_or(v, |m| m.max(v)));
                    }
                    None => column_index.append(true, vec![], vec![], len as i64),
                }
            }
        }
        let statistics = self.statistics.then(|| {
            let bytes = |v: Option<&str>| v.map(|v| ByteArray::from(v.as_bytes().to_vec()));
            column_index.set_boundary_order(boundary_order(ascending, descending));
            (
                Statistics::ByteArray(ValueStatistics::new(
                    bytes(min),
                    bytes(max),
                    None,
                    Some(nulls as u64),
                    false,
                )),
                column_index.build_to_thrift(),
            )
        });
        chunk.finish(rows, statistics)
    }
}

/// Bit width of dictionary indices into `values` values: at least 1
/// (some readers mishandle 0).
fn index_width(values: usize) -> u8 {
    (u32::BITS - (values.max(2) as u32 - 1).leading_zeros()) as u8
}

/// Encodes a column of small integers (`dir`: -1, 0, 1) that come in
/// long runs, part by part (a symbol's rows), with no per-row work beyond
/// finding the runs: a dictionary page (`PLAIN`) of the distinct values in
/// order of first appearance, then one `RLE_DICTIONARY` data page per part
/// (each run of equal values one run-length-encoded index; a nullable
/// column's definition levels one run), uncompressed, without statistics.
/// parquet-rs would copy every row to 32 bits and zstd-compress it (README,
/// Performance). Built by [`Table::int_runs_encoder`], for columns that
/// carry no statistics.
#[derive(Clone)]
pub struct IntRunsEncoder {
    descr: ColumnDescPtr,
}

impl IntRunsEncoder {
    /// Encodes `parts` (in row order) as one column chunk. Errors are
    /// text: the caller names the file.
    pub fn encode<'a>(&self, parts: impl IntoIterator<Item = &'a [i8]>) -> Result<Chunk, String> {
        let parts: Vec<&[i8]> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        let nullable = self.descr.max_def_level() > 0;
        // The dictionary: distinct values in order of first appearance.
        let mut index: [Option<u32>; 256] = [None; 256];
        let mut values: Vec<i8> = Vec::new();
        for &v in parts.iter().flat_map(|p| p.iter()) {
            let slot = &mut index[usize::from(v as u8)];
            if slot.is_none() {
                *slot = Some(values.len() as u32);
                values.push(v);
            }
        }
        let width = index_width(values.len());
        let mut chunk = PagesBuilder::new(&self.descr);
        if !values.is_empty() {
            let buf: Vec<u8> = values
                .iter()
                .flat_map(|&v| i32::from(v).to_le_bytes())
                .collect();
            chunk.dictionary_page(buf, values.len())?;
        }
        let rows: usize = parts.iter().map(|p| p.len()).sum();
        for p in &parts {
            for page in p.chunks(RUN_PAGE_ROWS) {
                let mut buf = Vec::new();
                if nullable {
                    let mut levels = Vec::new();
                    rle_run(&mut levels, page.len(), 1, 1);
                    buf.extend_from_slice(&(levels.len() as u32).to_le_bytes());
                    buf.extend_from_slice(&levels);
                }
                buf.push(width);
                let mut rest = page;
                while let Some(&v) = rest.first() {
                    let len = rest.iter().position(|&w| w != v).unwrap_or(rest.len());
                    let i =
                        index[usize::from(v as u8)].ok_or("a value missing from the dictionary")?;
                    rle_run(&mut buf, len, i, width);
                    rest = &rest[len..];
                }
                chunk.data_page(buf, page.len())?;
            }
        }
        chunk.finish(rows, None)
    }
}

/// The pages of one uncompressed column chunk written by atc-bt's own
/// encoders ([`RunsEncoder`], [`IntRunsEncoder`]): an optional dictionary
/// page, then data pages, with the chunk's metadata and offset index.
struct PagesBuilder {
    descr: ColumnDescPtr,
    sink: TrackedWrite<Vec<u8>>,
    sizes: (u64, u64, u64),
    dictionary_offset: Option<i64>,
    data_offset: Option<i64>,
    data_pages: i32,
    encoding: Encoding,
    /// The codec of the data pages (uncompressed unless
    /// [`PagesBuilder::data_page_v2`] compressed them).
    compression: Compression,
    /// `DATA_PAGE`, or `DATA_PAGE_V2` once [`PagesBuilder::data_page_v2`]
    /// wrote one.
    page_type: parquet::basic::PageType,
    offset_index: parquet::file::metadata::OffsetIndexBuilder,
}

impl PagesBuilder {
    fn new(descr: &ColumnDescPtr) -> PagesBuilder {
        PagesBuilder::with_capacity(descr, 0)
    }

    /// A builder whose pages fit in `bytes` without growing (copying) the
    /// buffer.
    fn with_capacity(descr: &ColumnDescPtr, bytes: usize) -> PagesBuilder {
        PagesBuilder {
            descr: descr.clone(),
            sink: TrackedWrite::new(Vec::with_capacity(bytes)),
            sizes: (0, 0, 0),
            dictionary_offset: None,
            data_offset: None,
            data_pages: 0,
            encoding: Encoding::PLAIN,
            compression: Compression::UNCOMPRESSED,
            page_type: parquet::basic::PageType::DATA_PAGE,
            offset_index: parquet::file::metadata::OffsetIndexBuilder::new(),
        }
    }

    fn err(&self, e: parquet::errors::ParquetError) -> String {
        format!("column `{}`: {e}", self.descr.name())
    }

    fn write(
        &mut self,
        page: parquet::column::page::Page,
        size: usize,
    ) -> Result<parquet::column::page::PageWriteSpec, String> {
        use parquet::column::page::{CompressedPage, PageWriter};
        let mut w = SerializedPageWriter::new(&mut self.sink);
        let spec = w.write_page(CompressedPage::new(page, size));
        let spec = spec.and_then(|s| w.close().map(|()| s));
        let spec = spec.map_err(|e| self.err(e))?;
        self.sizes.0 += spec.compressed_size as u64;
        self.sizes.1 += spec.uncompressed_size as u64;
        self.sizes.2 += spec.bytes_written;
        Ok(spec)
    }

    /// The dictionary page: `num_values` values, `PLAIN` in `buf`. Data
    /// pages after it are `RLE_DICTIONARY`.
    fn dictionary_page(&mut self, buf: Vec<u8>, num_values: usize) -> Result<(), String> {
        let size = buf.len();
        let spec = self.write(
            parquet::column::page::Page::DictionaryPage {
                buf: Bytes::from(buf),
                num_values: num_values as u32,
                encoding: Encoding::PLAIN,
                is_sorted: false,
            },
            size,
        )?;
        self.dictionary_offset = Some(spec.offset as i64);
        self.encoding = Encoding::RLE_DICTIONARY;
        Ok(())
    }

    /// A data page of `rows` rows (levels and values in `buf`).
    fn data_page(&mut self, buf: Vec<u8>, rows: usize) -> Result<(), String> {
        let size = buf.len();
        let spec = self.write(
            parquet::column::page::Page::DataPage {
                buf: Bytes::from(buf),
                num_values: rows as u32,
                encoding: self.encoding,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            },
            size,
        )?;
        self.data_written(&spec, rows);
        Ok(())
    }

    /// A `DATA_PAGE_V2` of `rows` rows, `nulls` of them null: `buf` holds
    /// the definition levels (`levels` bytes, uncompressed), then the
    /// values compressed with `compression` (`size`: the page's bytes
    /// uncompressed).
    fn data_page_v2(
        &mut self,
        buf: Vec<u8>,
        levels: usize,
        rows: usize,
        nulls: usize,
        size: usize,
        compression: Compression,
    ) -> Result<(), String> {
        let spec = self.write(
            parquet::column::page::Page::DataPageV2 {
                buf: Bytes::from(buf),
                num_values: rows as u32,
                encoding: self.encoding,
                num_nulls: nulls as u32,
                num_rows: rows as u32,
                def_levels_byte_len: levels as u32,
                rep_levels_byte_len: 0,
                is_compressed: compression != Compression::UNCOMPRESSED,
                statistics: None,
            },
            size,
        )?;
        if compression != Compression::UNCOMPRESSED {
            // The chunk's codec; a page of nulls alone says it is not
            // compressed (`is_compressed`).
            self.compression = compression;
        }
        self.page_type = parquet::basic::PageType::DATA_PAGE_V2;
        self.data_written(&spec, rows);
        Ok(())
    }

    fn data_written(&mut self, spec: &parquet::column::page::PageWriteSpec, rows: usize) {
        self.data_offset.get_or_insert(spec.offset as i64);
        self.data_pages += 1;
        self.offset_index
            .append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
        self.offset_index.append_row_count(rows as i64);
    }

    /// The chunk of `rows` rows, with the chunk's statistics and column
    /// index when given.
    fn finish(
        self,
        rows: usize,
        statistics: Option<(
            parquet::file::statistics::Statistics,
            parquet::format::ColumnIndex,
        )>,
    ) -> Result<Chunk, String> {
        use parquet::basic::PageType;
        use parquet::file::metadata::ColumnChunkMetaData;
        use parquet::file::page_encoding_stats::PageEncodingStats;
        let dictionary = self.dictionary_offset.is_some();
        let mut page_stats = Vec::new();
        if dictionary {
            page_stats.push(PageEncodingStats {
                page_type: PageType::DICTIONARY_PAGE,
                encoding: Encoding::PLAIN,
                count: 1,
            });
        }
        page_stats.push(PageEncodingStats {
            page_type: self.page_type,
            encoding: self.encoding,
            count: self.data_pages,
        });
        let mut encodings = vec![Encoding::PLAIN, Encoding::RLE];
        if dictionary {
            encodings.push(Encoding::RLE_DICTIONARY);
        }
        let (compressed, uncompressed, written) = self.sizes;
        let mut meta = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(self.compression)
            .set_encodings(encodings)
            .set_page_encoding_stats(page_stats)
            .set_total_compressed_size(compressed as i64)
            .set_total_uncompressed_size(uncompressed as i64)
            .set_num_values(rows as i64)
            .set_data_page_offset(self.data_offset.unwrap_or(0))
            .set_dictionary_page_offset(self.dictionary_offset);
        let (statistics, column_index) = match statistics {
            Some((s, c)) => (Some(s), Some(c)),
            None => (None, None),
        };
        if let Some(s) = statistics {
            meta = meta.set_statistics(s);
        }
        let err = |e: parquet::errors::ParquetError| format!("column `{}`: {e}", self.descr.name());
        let metadata = meta.build().map_err(err)?;
        let close = ColumnCloseResult {
            bytes_written: written,
            rows_written: rows as u64,
            metadata,
            bloom_filter: None,
            column_index,
            offset_index: Some(self.offset_index.build_to_thrift()),
        };
        let data = self.sink.into_inner().map_err(err)?;
        Ok(Chunk::Pages {
            data: Bytes::from(data),
            close,
        })
    }
}

/// A column index's boundary order, parquet-rs's rule: ascending if no
/// page's min or max is below the page before's (all pages equal
/// included), else descending if none is above, else unordered.
fn boundary_order(ascending: bool, descending: bool) -> parquet::format::BoundaryOrder {
    use parquet::format::BoundaryOrder;
    match (ascending, descending) {
        (true, _) => BoundaryOrder::ASCENDING,
        (false, true) => BoundaryOrder::DESCENDING,
        (false, false) => BoundaryOrder::UNORDERED,
    }
}

/// Bytes a column index keeps of a value at most, as parquet-rs (its
/// `DEFAULT_COLUMN_INDEX_TRUNCATE_LENGTH`): a long name is cut to a bound
/// (attack, round 32: 300 names of 20,000 bytes held twice each in the
/// index made the files 47% larger).
const INDEX_VALUE_BYTES: usize = 64;

/// A lower bound of `v` for a column index: `v`, or its longest prefix of
/// at most [`INDEX_VALUE_BYTES`] that is whole characters (parquet-rs's
/// rule).
fn index_min(v: &str) -> Vec<u8> {
    if v.len() <= INDEX_VALUE_BYTES {
        return v.as_bytes().to_vec();
    }
    match (1..=INDEX_VALUE_BYTES).rfind(|&i| v.is_char_boundary(i)) {
        Some(i) => v.as_bytes()[..i].to_vec(),
        None => v.as_bytes().to_vec(),
    }
}

/// An upper bound of `v` for a column index: `v`, or a prefix of at most
/// [`INDEX_VALUE_BYTES`] with its last character that can be incremented
/// incremented (to one of the same width), greater than every string that
/// starts with the prefix (parquet-rs's rule); `v` itself where no prefix
/// can be.
fn index_max(v: &str) -> Vec<u8> {
    if v.len() <= INDEX_VALUE_BYTES {
        return v.as_bytes().to_vec();
    }
    let lower = INDEX_VALUE_BYTES.saturating_sub(3);
    let Some(split) = (lower..=INDEX_VALUE_BYTES).rfind(|&i| v.is_char_boundary(i)) else {
        return v.as_bytes().to_vec();
    };
    let prefix = &v[..split];
    for (at, c) in prefix.char_indices().rev() {
        if let Some(next) = char::from_u32(c as u32 + 1).filter(|n| n.len_utf8() == c.len_utf8()) {
            let mut out = prefix.as_bytes()[..at].to_vec();
            let mut buf = [0u8; 4];
            out.extend_from_slice(next.encode_utf8(&mut buf).as_bytes());
            return out;
        }
    }
    v.as_bytes().to_vec()
}

/// Appends one run of the RLE/bit-packing hybrid encoding: `len` times
/// `value`, stored in `width` bits (a ULEB128 header `len << 1`, then the
/// value in whole bytes, little-endian).
fn rle_run(out: &mut Vec<u8>, len: usize, value: u32, width: u8) {
    let mut header = (len as u64) << 1;
    loop {
        let byte = (header & 0x7f) as u8;
        header >>= 7;
        if header == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    let bytes = usize::from(width).div_ceil(8);
    out.extend_from_slice(&value.to_le_bytes()[..bytes]);
}

/// A Parquet output file that keeps its first write error. parquet-rs
/// reports a failed write of a file's footer (thrift) as "External:
/// transport error", hiding the cause ("No space left on device");
/// messages about a file written through a `TracedFile` add it
/// ([`IoTrace::explain`]).
pub struct TracedFile<W = File> {
    file: W,
    trace: IoTrace,
}

/// The first write error of a [`TracedFile`] (shared with it).
#[derive(Debug, Clone, Default)]
pub struct IoTrace(Arc<std::sync::Mutex<Option<String>>>);

impl TracedFile {
    /// Creates `path` (as [`File::create`]) and its trace.
    pub fn create(path: &Path) -> std::io::Result<(TracedFile, IoTrace)> {
        Ok(TracedFile::new(File::create(path)?))
    }

    /// The file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl<W: std::io::Write> TracedFile<W> {
    /// Any writer, traced.
    pub fn new(file: W) -> (TracedFile<W>, IoTrace) {
        let trace = IoTrace::default();
        (
            TracedFile {
                file,
                trace: trace.clone(),
            },
            trace,
        )
    }
}

impl<W: std::io::Write> std::io::Write for TracedFile<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf).inspect_err(|e| self.trace.note(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().inspect_err(|e| self.trace.note(e))
    }
}

impl IoTrace {
    fn note(&self, e: &std::io::Error) {
        if let Ok(mut first) = self.0.lock() {
            first.get_or_insert_with(|| e.to_string());
        }
    }

    /// `e`'s message, followed by the file's first write error where the
    /// message does not already say it.
    pub fn explain(&self, e: impl std::fmt::Display) -> String {
        let message = e.to_string();
        match self.0.lock().ok().and_then(|first| first.clone()) {
            Some(io) if !message.contains(&io) => format!("{message} ({io})"),
            _ => message,
        }
    }
}

/// Asks the kernel to start writing `file`'s dirty pages to disk now, in
/// the background, so the `fsync` of [`Table::finish`] finds little left
/// to do: a run's files are written while it computes, and without this
/// the whole file (tens of MB) waits for the final sync, with the cores
/// idle. Does not wait and cannot fail the write (the final `fsync`
/// reports any error); a no-op off Linux.
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor `file` owns and
        // keeps open for the call; it reads no memory of this process.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Encodes `array` (the values of `field`) into the column writer `w`.
/// Errors are text: the caller names the file.
pub fn write_column(
    w: &mut ArrowColumnWriter,
    field: &Field,
    array: ArrayRef,
) -> Result<(), String> {
    for leaf in compute_leaves(field, &array).map_err(|e| e.to_string())? {
        w.write(&leaf).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Writes `batch` to `path` as one file (row groups of at most
/// [`ROW_GROUP_ROWS`] rows), synced to disk; `keys` get statistics.
pub fn write_batch(path: &Path, batch: &RecordBatch, keys: &[&str]) -> Result<(), WriteError> {
    let mut t = Table::create(path, batch.schema(), keys)?;
    t.write(batch.columns().to_vec())?;
    t.finish()
}

/// The columns a sweep's `results.parquet` (and a sweep shard's part of
/// it) is filtered on: they get statistics.
pub const SWEEP_RESULT_KEYS: [&str; 4] = ["combo", "sample", "symbol", "aggregate"];

/// Writes a sweep's `results.parquet` (or a shard part of it) in atc-bt's
/// layout: [`write_batch`] with [`SWEEP_RESULT_KEYS`]. The sweep's own
/// writer (`src/sweep/output.rs`) is meant to call this (or a [`Table`]
/// per file when it streams row groups), so sweeps, shards and merges
/// share the run's encodings.
pub fn write_sweep_results(path: &Path, batch: &RecordBatch) -> Result<(), WriteError> {
    write_batch(path, batch, &SWEEP_RESULT_KEYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attack (round 31): a disk that filled up while a Parquet file's
    /// footer was written gave "External: transport error" (thrift's
    /// message) without the cause. A sink that takes `room` bytes and then
    /// fails with ENOSPC: wherever the write fails (a page, the footer, the
    /// final magic), the message names the cause.
    #[test]
    fn full_disk_at_the_footer_names_the_cause() {
        use parquet::arrow::ArrowWriter;
        use std::io::Write;
        struct Disk {
            room: usize,
            bytes: Vec<u8>,
        }
        impl Write for Disk {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if self.bytes.len() + buf.len() > self.room {
                    return Err(std::io::Error::from_raw_os_error(28));
                }
                self.bytes.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        // Enough columns that the footer outgrows the writer's buffer.
        let fields: Vec<arrow_schema::Field> = (0..400)
            .map(|i| {
                let name = format!("a_long_column_name_{i}");
                arrow_schema::Field::new(name, arrow_schema::DataType::Float64, false)
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let column = Arc::new(Float64Array::from(vec![1.0, 2.0])) as arrow_array::ArrayRef;
        let batch = arrow_array::RecordBatch::try_new(schema.clone(), vec![column; 400]).unwrap();
        let write = |room: usize| {
            let (file, trace) = TracedFile::new(Disk {
                room,
                bytes: Vec::new(),
            });
            let mut w = ArrowWriter::try_new(file, schema.clone(), None).unwrap();
            w.write(&batch).unwrap();
            (w.into_inner().map(|d| d.file.bytes.len()), trace)
        };
        let total = write(usize::MAX).0.unwrap();
        let mut opaque = 0;
        for room in (0..total)
            .step_by(total / 40 + 1)
            .chain([total - 1, total - 8, total - 100])
        {
            let (r, trace) = write(room);
            let e = r.expect_err("a full disk fails the file");
            let raw = e.to_string();
            opaque += usize::from(!raw.contains("No space left on device"));
            let said = trace.explain(&e);
            assert!(said.contains("No space left on device"), "{room}: {said}");
            assert!(said.starts_with(&raw), "{said}");
        }
        // Some failing writes do hide the cause without the trace.
        assert!(opaque > 0, "parquet-rs now names the cause itself");
    }
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    use arrow_array::{Float64Array, Int64Array, TimestampMicrosecondArray};
    use arrow_schema::Schema;

    /// A float or timestamp column written by [`ValueEncoder`] has the
    /// bytes the Arrow writer gives the same arrays: non-nullable, nullable
    /// without nulls, nullable with nulls (a warm-up's `avg`, an open
    /// trade's `exit_ts`), NaN and infinities included, a float key with
    /// statistics, dictionary-encoded timestamps, several arrays per row
    /// group and pages of more than one. A timestamp key (statistics
    /// computed by the encoder, `DELTA_BINARY_PACKED`) has the values,
    /// pages, chunk statistics and column index of the Arrow writer's file
    /// (only its page headers lack statistics), in ascending, descending
    /// and unordered pages.
    #[test]
    fn value_encoder_writes_the_arrow_writers_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let utc = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("equity", DataType::Float64, false),
            Field::new("position", DataType::Float64, true),
            Field::new("avg", DataType::Float64, true),
            Field::new("ts", utc(), false),
            Field::new("exit_ts", utc(), true),
        ]));
        let rows = 25_000;
        let value = |i: usize| match i % 997 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -0.0,
            _ => (i as f64 * 0.37).sin() * 100.0,
        };
        let parts = |part: usize| -> Vec<ArrayRef> {
            let range = part * rows..(part + 1) * rows;
            vec![
                Arc::new(Float64Array::from_iter_values(range.clone().map(value))),
                Arc::new(Float64Array::from_iter_values(
                    range.clone().map(|i| value(i + 1)),
                )),
                Arc::new(Float64Array::from_iter(
                    range
                        .clone()
                        .map(|i| (i % rows >= 40 && i % 13 != 0).then(|| value(i))),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(range.clone().map(|i| {
                        let i = i as i64;
                        946_857_600_000_000
                            + match part {
                                0 | 1 => 86_400_000_000 * i,
                                2 | 3 => -86_400_000_000 * i,
                                _ => 3_600_000_000 * ((i / 3000) * 7919 % 13 * 100 + i % 50),
                            }
                    }))
                    .with_timezone("UTC"),
                ),
                Arc::new(
                    TimestampMicrosecondArray::from_iter(range.map(|i| {
                        (i % 7 != 3).then_some(i64::from((i % 500) as u32) * 3_600_000_000)
                    }))
                    .with_timezone("UTC"),
                ),
            ]
        };
        // Encoders: 0 the Arrow writer, 1 `value_encoder`, 2 with own
        // statistics.
        let write = |name: &str, encoder: u8, keys: &[&str]| {
            let path = dir.path().join(name);
            let mut t = Table::create(&path, schema.clone(), keys).unwrap();
            for group in [[0, 1], [2, 3], [4, 5]] {
                let arrays: Vec<Vec<ArrayRef>> = group.iter().map(|&p| parts(p)).collect();
                let mut w = t.column_writers().unwrap();
                let mut chunks = Vec::new();
                for (c, w) in w.drain(..).enumerate() {
                    let mut w = w;
                    if encoder > 0 {
                        let f = match encoder {
                            1 => t.value_encoder(c),
                            _ => t.value_encoder_with_own_statistics(c),
                        };
                        let f = f.unwrap();
                        chunks.push(f.encode(arrays.iter().map(|a| a[c].as_ref())).unwrap());
                    } else {
                        for a in &arrays {
                            write_column(&mut w, &schema.fields()[c], a[c].clone()).unwrap();
                        }
                        chunks.push(Chunk::Arrow(w.close().unwrap()));
                    }
                }
                t.append_chunks(chunks).unwrap();
            }
            t.finish().unwrap();
            std::fs::read(path).unwrap()
        };
        // Floats with statistics (keys) go through parquet-rs's column
        // writer; the others get pages of their own (`float_pages_…`).
        let floats = ["equity", "position", "avg"];
        let arrow = write("arrow.parquet", 0, &floats);
        assert!(arrow.len() > 100_000, "the column spans several pages");
        assert_eq!(write("values.parquet", 1, &floats), arrow);
        assert_eq!(write("own.parquet", 2, &floats), arrow, "no timestamp key");

        let keys = ["equity", "position", "avg", "ts"];
        let read = |bytes: Vec<u8>| {
            use parquet::arrow::arrow_reader::{
                ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
            };
            let options = ArrowReaderOptions::new().with_page_index(true);
            let b =
                ParquetRecordBatchReaderBuilder::try_new_with_options(Bytes::from(bytes), options)
                    .unwrap();
            let meta = b.metadata().clone();
            let rows: Vec<RecordBatch> = b.build().unwrap().map(|b| b.unwrap()).collect();
            (meta, rows)
        };
        let arrow = write("arrow_key.parquet", 0, &keys);
        assert_eq!(write("values_key.parquet", 1, &keys), arrow);
        let (am, arows) = read(arrow);
        let (vm, vrows) = read(write("own_key.parquet", 2, &keys));
        assert_eq!(vrows, arows);
        let ts = 3;
        let mut orders = Vec::new();
        for g in 0..am.num_row_groups() {
            let (a, v) = (am.row_group(g).column(ts), vm.row_group(g).column(ts));
            assert!(a.statistics().is_some());
            assert_eq!(v.statistics(), a.statistics(), "row group {g}");
            assert_eq!(v.encodings(), a.encodings());
            let pages = |m: &parquet::file::metadata::ParquetMetaData| {
                m.offset_index().unwrap()[g][ts]
                    .page_locations()
                    .iter()
                    .map(|p| p.first_row_index)
                    .collect::<Vec<_>>()
            };
            assert!(pages(&am).len() > 2, "several pages");
            assert_eq!(pages(&vm), pages(&am));
            let index = &vm.column_index().unwrap()[g][ts];
            assert_eq!(index, &am.column_index().unwrap()[g][ts]);
            let parquet::file::page_index::index::Index::INT64(index) = index else {
                panic!("no column index");
            };
            orders.push(index.boundary_order);
        }
        use parquet::format::BoundaryOrder;
        let want = [
            BoundaryOrder::ASCENDING,
            BoundaryOrder::DESCENDING,
            BoundaryOrder::UNORDERED,
        ];
        assert_eq!(orders, want);
    }

    /// A float encoder refuses nulls in a column that is not nullable
    /// (the Arrow writer's rule), naming the column.
    #[test]
    fn value_encoder_refuses_nulls_in_a_non_nullable_column() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "equity",
            DataType::Float64,
            false,
        )]));
        let t = Table::create(&dir.path().join("f.parquet"), schema, &[]).unwrap();
        let a = Float64Array::from(vec![Some(1.0), None]);
        let Err(e) = t.value_encoder(0).unwrap().encode([&a as &dyn Array]) else {
            panic!("nulls accepted in a non-nullable column");
        };
        assert!(e.contains("`equity`") && e.contains("null"), "{e}");
    }

    /// Float columns without statistics are built as `DATA_PAGE_V2` pages
    /// ([`ValueEncoder::encode_floats`]): every value reads back bit for
    /// bit (NaN payloads, −0.0, infinities, subnormals) with its nulls; an
    /// array of at least 1,024 rows gets pages of its own of at most 20,000
    /// rows, shorter ones share one, an all-null array's page holds only
    /// levels, and says it is not compressed: the chunk still says LZ4
    /// (a first build took the last page's codec for the chunk's, and
    /// every reader failed on the others).
    #[test]
    fn float_pages_hold_every_value_bit_for_bit_in_pages_per_part() {
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, false),
            Field::new("y", DataType::Float64, true),
        ]));
        let lens = [2500, 30, 40, 1000, 5, 45_000, 0, 1024, 2000];
        let bits = |i: usize| -> f64 {
            match i % 11 {
                0 => f64::from_bits(0x7ff8_0000_dead_beef),
                1 => -0.0,
                2 => f64::NEG_INFINITY,
                3 => f64::from_bits(1),
                _ => (i as f64 * 0.731).sin() * 1e3,
            }
        };
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        let mut at = 0;
        for (p, &n) in lens.iter().enumerate() {
            let range = at..at + n;
            xs.push(Float64Array::from_iter_values(range.clone().map(bits)));
            ys.push(Float64Array::from_iter(range.clone().map(|i| {
                let valid = match p {
                    0 => i - at >= 300 && i % 17 != 0,
                    5 => i % 5000 >= 7,
                    8 => false,
                    _ => true,
                };
                valid.then(|| bits(i + 3))
            })));
            at += n;
        }
        let path = dir.path().join("f.parquet");
        let mut t = Table::create(&path, schema.clone(), &[]).unwrap();
        let chunks = (0..2)
            .map(|c| {
                let parts: Vec<&dyn Array> = match c {
                    0 => xs.iter().map(|a| a as &dyn Array).collect(),
                    _ => ys.iter().map(|a| a as &dyn Array).collect(),
                };
                t.value_encoder(c).unwrap().encode(parts).unwrap()
            })
            .collect();
        t.append_chunks(chunks).unwrap();
        t.finish().unwrap();

        let options = ArrowReaderOptions::new().with_page_index(true);
        let b = ParquetRecordBatchReaderBuilder::try_new_with_options(
            File::open(&path).unwrap(),
            options,
        )
        .unwrap();
        let meta = b.metadata().clone();
        let batches: Vec<RecordBatch> = b.build().unwrap().map(|b| b.unwrap()).collect();
        let read = |c: usize| -> Vec<Option<u64>> {
            batches
                .iter()
                .flat_map(|b| {
                    let a = b.column(c).as_primitive::<Float64Type>().clone();
                    (0..a.len())
                        .map(|i| a.is_valid(i).then(|| a.value(i).to_bits()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let want = |arrays: &[Float64Array]| -> Vec<Option<u64>> {
            arrays
                .iter()
                .flat_map(|a| {
                    (0..a.len())
                        .map(|i| a.is_valid(i).then(|| a.value(i).to_bits()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        assert_eq!(read(0), want(&xs));
        assert_eq!(read(1), want(&ys));
        let starts: Vec<i64> = meta.offset_index().unwrap()[0][1]
            .page_locations()
            .iter()
            .map(|p| p.first_row_index)
            .collect();
        // 2500 alone; 30 + 40 + 1000 shared; 5 alone before the 45,000
        // split in three; 1024 alone; 2000 (all null) alone.
        assert_eq!(starts, [0, 2500, 3570, 3575, 23575, 43575, 48575, 49599]);
        for c in 0..2 {
            let col = meta.row_group(0).column(c);
            assert_eq!(col.compression(), Compression::LZ4_RAW);
            let stats = col.page_encoding_stats().unwrap();
            assert_eq!(stats[0].page_type, parquet::basic::PageType::DATA_PAGE_V2);
            assert_eq!(stats[0].count, 8);
            assert!(col.statistics().is_none());
        }
    }

    /// Attack (round 32): long names were kept whole in the column index
    /// (twice per page), 300 names of 20,000 bytes made a run's files 47%
    /// larger. Each page's index values are now at most 64 bytes and still
    /// bound the page's value (whole characters, multi-byte ones cut at
    /// the bound, the last character incremented for the maximum), except
    /// where no prefix can bound it from above (parquet-rs keeps the value
    /// then too); the values read back whole.
    #[test]
    fn long_symbol_names_keep_the_page_index_small() {
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
        use parquet::file::page_index::index::Index;
        let names: Vec<String> = vec![
            "x".repeat(20_000),
            format!("a{}", "é".repeat(40)),
            format!("{}z", "b".repeat(64)),
            "\u{10FFFF}".repeat(20),
            "short".into(),
            "日本語".repeat(30),
        ];
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "symbol",
            DataType::Utf8,
            false,
        )]));
        let path = dir.path().join("long.parquet");
        let mut t = Table::create(&path, schema, &["symbol"]).unwrap();
        let runs: Vec<(Option<&str>, usize)> =
            names.iter().map(|n| (Some(n.as_str()), 3)).collect();
        let chunk = t.runs_encoder(0).unwrap().encode(&runs).unwrap();
        t.append_chunks(vec![chunk]).unwrap();
        t.finish().unwrap();
        let options = ArrowReaderOptions::new().with_page_index(true);
        let file = std::fs::File::open(&path).unwrap();
        let b = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
        let Index::BYTE_ARRAY(index) = &b.metadata().column_index().unwrap()[0][0] else {
            panic!("no column index");
        };
        for (page, name) in index.indexes.iter().zip(&names) {
            let (min, max) = (page.min.as_ref().unwrap(), page.max.as_ref().unwrap());
            let (min, max) = (min.data(), max.data());
            assert!(min <= name.as_bytes() && name.as_bytes() <= max, "{name:?}");
            assert!(std::str::from_utf8(min).is_ok() && std::str::from_utf8(max).is_ok());
            assert!(min.len() <= INDEX_VALUE_BYTES, "{name:?}");
            if !name.starts_with('\u{10FFFF}') {
                assert!(max.len() <= INDEX_VALUE_BYTES, "{name:?}");
            }
        }
        assert_eq!(
            index.indexes[1].min.as_ref().unwrap().data().len(),
            63,
            "whole characters"
        );
        let got: Vec<String> = b
            .build()
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let c = b.column(0).as_string::<i32>().clone();
                c.iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>()
            })
            .collect();
        let want: Vec<String> = names.iter().flat_map(|n| vec![n.clone(); 3]).collect();
        assert_eq!(got, want);
        assert!(
            std::fs::metadata(&path).unwrap().len() < 25_000,
            "the name once, in the dictionary"
        );
    }

    /// A column of runs ([`RunsEncoder`]) reads back as the rows it was
    /// given (empty runs, equal neighbours, nulls, non-ASCII and control
    /// characters, a run longer than a page), with the chunk's min/max and
    /// null count, one page per run of equal rows in the offset index and
    /// each page's value in the column index, so a reader can skip to a
    /// symbol's pages; a column without statistics has no column index;
    /// a null in a non-nullable column is refused.
    #[test]
    fn write_columns_splits_runs_across_row_groups_and_refuses_bad_columns() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("x", DataType::Float64, false),
            Field::new("n", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
        ]));
        let layout = Layout {
            row_group_rows: 4,
            ..Layout::default()
        };
        let path = dir.path().join("t.parquet");
        let mut t = Table::create_with(&path, schema.clone(), &["symbol"], &layout).unwrap();
        // Runs that end at, cross and span row-group boundaries (4 rows).
        let runs = vec![
            (Some("a"), 1),
            (Some("b"), 0),
            (Some("c"), 6),
            (Some("d"), 3),
        ];
        let want: Vec<&str> = runs
            .iter()
            .flat_map(|&(v, n)| std::iter::repeat_n(v.unwrap(), n))
            .collect();
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let n: Vec<Option<i64>> = (0..10).map(|i| (i % 3 != 0).then_some(i)).collect();
        // Nulls at bits a row group's slice starts inside a byte.
        let f: Vec<Option<f64>> = (0..10)
            .map(|i| (i % 4 != 1 && i != 8).then_some(f64::from(i) * 0.5))
            .collect();
        let columns = |runs: Vec<(Option<&'static str>, usize)>| {
            vec![
                Column::Runs(runs),
                Column::Array(Arc::new(Float64Array::from(x.clone()))),
                Column::Array(Arc::new(Int64Array::from(n.clone()))),
                Column::Array(Arc::new(Float64Array::from(f.clone()))),
            ]
        };
        t.write_columns(columns(runs.clone())).unwrap();
        // Refused: rows that differ, a type that differs, nulls in a
        // non-nullable field, runs of a non-string column, a column short.
        let e = t.write_columns(columns(vec![(Some("a"), 9)])).unwrap_err();
        assert!(
            e.to_string()
                .contains("column `x` has 10 rows, the first 9"),
            "{e}"
        );
        let mut bad = columns(runs.clone());
        bad[1] = Column::Array(Arc::new(Int64Array::from(vec![1i64; 10])));
        let e = t.write_columns(bad).unwrap_err();
        assert!(e.to_string().contains("column `x`: Int64 values"), "{e}");
        let mut bad = columns(runs.clone());
        bad[1] = Column::Array(Arc::new(Float64Array::from(vec![None; 10])));
        let e = t.write_columns(bad).unwrap_err();
        assert!(e.to_string().contains("with nulls"), "{e}");
        let mut bad = columns(runs.clone());
        bad[2] = Column::Runs(vec![(Some("z"), 10)]);
        let e = t.write_columns(bad).unwrap_err();
        assert!(e.to_string().contains("`n` is not a string column"), "{e}");
        let e = t.write_columns(columns(runs)[..2].to_vec()).unwrap_err();
        assert!(e.to_string().contains("2 columns for a schema of 4"), "{e}");
        t.finish().unwrap();

        let file = std::fs::File::open(&path).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let groups: Vec<i64> = builder
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(groups, [4, 4, 2]);
        let (mut sym, mut xs, mut ns, mut fs) = (vec![], vec![], vec![], vec![]);
        for b in builder.build().unwrap() {
            let b = b.unwrap();
            sym.extend(
                b.column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.unwrap().to_string()),
            );
            xs.extend(
                b.column(1)
                    .as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
            ns.extend(
                b.column(2)
                    .as_primitive::<arrow_array::types::Int64Type>()
                    .iter(),
            );
            fs.extend(b.column(3).as_primitive::<Float64Type>().iter());
        }
        assert_eq!(fs, f);
        assert_eq!(sym, want);
        assert_eq!(xs, x);
        assert_eq!(ns, n);
    }

    #[test]
    fn int_runs_encoder_round_trips_a_page_per_part() {
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("dir", DataType::Int8, false),
            Field::new("maybe", DataType::Int8, true),
        ]));
        let long: Vec<i8> = (0..RUN_PAGE_ROWS + 5)
            .map(|i| [1, 1, 1, 0, -1][i % 5])
            .collect();
        let parts: Vec<Vec<i8>> = vec![
            vec![0, 0, 0],
            vec![],
            vec![-1, 1, 1, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            vec![i8::MIN, i8::MAX, 7],
            long,
            vec![1],
        ];
        let path = dir.path().join("dir.parquet");
        let mut t = Table::create(&path, schema.clone(), &[]).unwrap();
        let slices = || parts.iter().map(|p| p.as_slice());
        let chunks = vec![
            t.int_runs_encoder(0).unwrap().encode(slices()).unwrap(),
            t.int_runs_encoder(1).unwrap().encode(slices()).unwrap(),
        ];
        t.append_chunks(chunks).unwrap();
        // An empty row group: no dictionary, no pages.
        let empty = vec![
            t.int_runs_encoder(0).unwrap().encode([]).unwrap(),
            t.int_runs_encoder(1).unwrap().encode([&[][..]]).unwrap(),
        ];
        t.append_chunks(empty).unwrap();
        t.finish().unwrap();
        // Not for a column with statistics, nor one of another type.
        let keyed = Table::create(&dir.path().join("k.parquet"), schema.clone(), &["dir"]).unwrap();
        assert!(keyed.int_runs_encoder(0).is_none());
        assert!(keyed.int_runs_encoder(1).is_some());
        let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        let other = Table::create(&dir.path().join("o.parquet"), other, &[]).unwrap();
        assert!(other.int_runs_encoder(0).is_none());

        let file = std::fs::File::open(&path).unwrap();
        let options = ArrowReaderOptions::new().with_page_index(true);
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
        let meta = builder.metadata().clone();
        let want: Vec<i8> = parts.iter().flatten().copied().collect();
        let (mut got, mut maybe) = (Vec::new(), Vec::new());
        for b in builder.build().unwrap() {
            let b = b.unwrap();
            got.extend_from_slice(
                b.column(0)
                    .as_primitive::<arrow_array::types::Int8Type>()
                    .values(),
            );
            let m = b.column(1).as_primitive::<arrow_array::types::Int8Type>();
            assert_eq!(m.null_count(), 0);
            maybe.extend_from_slice(m.values());
        }
        assert_eq!(got, want);
        assert_eq!(maybe, want);
        assert_eq!(meta.row_group(0).num_rows() as usize, want.len());
        assert_eq!(meta.row_group(1).num_rows(), 0);
        // A page per non-empty part, the long one split.
        let offsets = &meta.offset_index().unwrap()[0][0].page_locations;
        let firsts: Vec<i64> = offsets.iter().map(|p| p.first_row_index).collect();
        assert_eq!(
            firsts,
            [
                0,
                3,
                23,
                26,
                26 + RUN_PAGE_ROWS as i64,
                26 + want.len() as i64 - 27
            ]
        );
        let col = meta.row_group(0).column(0);
        assert!(col.dictionary_page_offset().is_some());
        assert!(col.statistics().is_none());
        assert_eq!(col.compression(), Compression::UNCOMPRESSED);
    }

    #[test]
    fn runs_encoder_round_trips_with_statistics_and_page_index() {
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
        use parquet::file::page_index::index::Index;
        use parquet::file::statistics::Statistics;
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("aggregate", DataType::Utf8, true),
            Field::new("label", DataType::Utf8, false),
        ]));
        let odd = "Ü\u{1}\tx";
        let long = RUN_PAGE_ROWS + 3;
        let runs: [Vec<(Option<&str>, usize)>; 3] = [
            vec![
                (Some("B"), 3),
                (Some("AAPL"), 0),
                (Some("AAPL"), 2),
                (Some("AAPL"), 1),
                (None, 4),
                (Some("B"), 5),
                (Some(odd), long),
            ],
            vec![(None, 3), (None, 3), (None, 9 + long)],
            vec![(Some("x"), 10), (Some("y"), 5 + long)],
        ];
        let path = dir.path().join("runs.parquet");
        let mut t = Table::create(&path, schema.clone(), &["symbol", "aggregate"]).unwrap();
        let chunks = runs
            .iter()
            .enumerate()
            .map(|(c, r)| t.runs_encoder(c).unwrap().encode(r).unwrap())
            .collect();
        t.append_chunks(chunks).unwrap();
        let refused = t.runs_encoder(2).unwrap().encode(&[(None, 1)]);
        assert!(refused.is_err_and(|e| e.contains("not nullable")));
        t.finish().unwrap();

        let file = std::fs::File::open(&path).unwrap();
        let options = ArrowReaderOptions::new().with_page_index(true);
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
        let meta = builder.metadata().clone();
        let mut got: Vec<Vec<Option<String>>> = vec![Vec::new(); 3];
        for b in builder.build().unwrap() {
            let b = b.unwrap();
            for (c, col) in got.iter_mut().enumerate() {
                col.extend(
                    b.column(c)
                        .as_string::<i32>()
                        .iter()
                        .map(|v| v.map(String::from)),
                );
            }
        }
        for (c, r) in runs.iter().enumerate() {
            let want: Vec<Option<String>> = r
                .iter()
                .flat_map(|&(v, n)| std::iter::repeat_n(v.map(String::from), n))
                .collect();
            assert_eq!(got[c], want, "column {c}");
        }
        let rg = meta.row_group(0);
        let stats = |c: usize| match rg.column(c).statistics() {
            Some(Statistics::ByteArray(s)) => (
                s.min_opt().map(|v| v.as_utf8().unwrap().to_string()),
                s.max_opt().map(|v| v.as_utf8().unwrap().to_string()),
                s.null_count_opt(),
            ),
            other => panic!("column {c}: {other:?}"),
        };
        assert_eq!(stats(0), (Some("AAPL".into()), Some(odd.into()), Some(4)));
        assert_eq!(stats(1), (None, None, Some(15 + long as u64)));
        assert!(rg.column(2).statistics().is_none(), "not a key");
        // Pages: B, AAPL (three runs merged), nulls, B, the long run in two.
        let offsets = &meta.offset_index().unwrap()[0];
        let firsts: Vec<i64> = offsets[0]
            .page_locations()
            .iter()
            .map(|p| p.first_row_index)
            .collect();
        assert_eq!(firsts, [0, 3, 6, 10, 15, 15 + RUN_PAGE_ROWS as i64]);
        assert_eq!(offsets[1].page_locations().len(), 2, "nulls share pages");
        let Index::BYTE_ARRAY(index) = &meta.column_index().unwrap()[0][0] else {
            panic!("no column index");
        };
        let pages: Vec<Option<String>> = index
            .indexes
            .iter()
            .map(|p| {
                assert_eq!(p.min, p.max);
                p.min.as_ref().map(|v| v.as_utf8().unwrap().to_string())
            })
            .collect();
        let b = || Some("B".to_string());
        let o = || Some(odd.to_string());
        assert_eq!(pages, [b(), Some("AAPL".into()), None, b(), o(), o()]);
        assert!(matches!(meta.column_index().unwrap()[0][2], Index::NONE));
    }
}
