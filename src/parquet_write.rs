//! How atc-bt writes Parquet: one table of encodings, codecs and
//! statistics for every file it produces (`equity.parquet`,
//! `signals.parquet`, `trades.parquet`, a sweep's `results.parquet`, shard
//! parts, `memory.parquet`), and a [`Table`] writer whose columns are
//! encoded in parallel without changing a byte.
//!
//! The choices, each measured on a 4,000 × 2,500-bar run (README,
//! Performance; `cargo bench --bench parquet_encodings -- DIR` repeats it):
//!
//! * Float columns (equity, avg, prices, metrics) hold few repeated values:
//!   dictionary encoding only costs hashing every value, so they are
//!   `PLAIN`; LZ4 (the `LZ4_RAW` codec) compresses them nearly as well as
//!   zstd at half the time. `BYTE_STREAM_SPLIT` was smaller for one column
//!   (equity, 3%) and larger for the rest, so it is not used.
//! * Key columns, the ones a reader filters on (`ts`, `symbol`, …), carry
//!   min/max statistics (row group and page), so polars, DuckDB, pyarrow and
//!   the report skip row groups and pages; no other column pays for
//!   statistics. Sorted timestamps are `DELTA_BINARY_PACKED` (a symbol's
//!   bars are evenly spaced, so a page shrinks to a few bytes per block).
//! * Every other column (symbol names, directions, counts) keeps the
//!   default dictionary encoding and zstd level 1.
//!
//! Row groups are cut where the caller says (a run cuts them at symbol
//! boundaries, so a symbol's rows share one row group), never by buffer
//! sizes, and each column's pages depend only on the values written to it:
//! the file's bytes are a function of the rows and their grouping, whatever
//! the thread count.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, SchemaRef};
use parquet::arrow::arrow_writer::{
    compute_leaves, get_column_writers, ArrowColumnChunk, ArrowColumnWriter,
};
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, SchemaDescriptor};
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
    /// Codec of every other column.
    pub codec: Compression,
    /// Min/max statistics on every column, not only the keys (the
    /// parquet-rs default).
    pub statistics_everywhere: bool,
    /// At most this many rows per row group (a caller that cuts groups
    /// itself, like the run writer, keeps below it).
    pub row_group_rows: usize,
}

/// Rows per row group at most: about a million, the usual reader default.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

impl Default for Layout {
    fn default() -> Self {
        Layout {
            float_codec: Compression::LZ4_RAW,
            float_encoding: Some(Encoding::PLAIN),
            key_int_encoding: Some(Encoding::DELTA_BINARY_PACKED),
            key_string_encoding: Some(Encoding::PLAIN),
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
                _ => None,
            };
            if let Some(e) = encoding {
                b = b
                    .set_column_dictionary_enabled(col.clone(), false)
                    .set_column_encoding(col, e);
            }
        }
        b.build()
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
    descr: SchemaDescriptor,
    writer: SerializedFileWriter<File>,
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
        let file = File::create(path).map_err(|source| WriteError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let writer = SerializedFileWriter::new(file, descr.root_schema_ptr(), props.clone())
            .map_err(|e| perr(&e))?;
        Ok(Table {
            path: path.to_path_buf(),
            schema,
            props,
            descr,
            writer,
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

    /// Closes the column writers of one row group and appends it.
    pub fn append(&mut self, columns: Vec<ArrowColumnWriter>) -> Result<(), WriteError> {
        let chunks = columns
            .into_iter()
            .map(|c| c.close())
            .collect::<Result<Vec<ArrowColumnChunk>, _>>()
            .map_err(|e| self.err(e))?;
        self.append_chunks(chunks)
    }

    fn append_chunks(&mut self, chunks: Vec<ArrowColumnChunk>) -> Result<(), WriteError> {
        let path = self.path.clone();
        let perr = |e: parquet::errors::ParquetError| WriteError::Parquet {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut rg = self.writer.next_row_group().map_err(perr)?;
        for c in chunks {
            c.append_to_row_group(&mut rg).map_err(perr)?;
        }
        rg.close().map_err(perr)?;
        start_writeback(self.writer.inner());
        Ok(())
    }

    /// Writes `columns` (in schema order, equal lengths) as row groups of
    /// at most [`Layout::row_group_rows`] rows, each column encoded on its
    /// own rayon task. Nothing is written for zero rows.
    pub fn write(&mut self, columns: Vec<ArrayRef>) -> Result<(), WriteError> {
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| self.err(e))?;
        let rows = batch.num_rows();
        let step = self.props.max_row_group_size().max(1);
        let mut start = 0;
        while start < rows {
            let len = step.min(rows - start);
            let part = batch.slice(start, len);
            let writers = self.column_writers()?;
            let fields = self.schema.fields().clone();
            let chunks = writers
                .into_par_iter()
                .zip(part.columns().par_iter())
                .zip(fields.par_iter())
                .map(|((mut w, col), field)| {
                    write_column(&mut w, field, col.clone())?;
                    w.close().map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<ArrowColumnChunk>, String>>()
                .map_err(|e| self.err(e))?;
            self.append_chunks(chunks)?;
            start += len;
        }
        Ok(())
    }

    /// Writes the footer and syncs the file to disk.
    pub fn finish(self) -> Result<(), WriteError> {
        let path = self.path;
        let file = self.writer.into_inner().map_err(|e| WriteError::Parquet {
            path: path.clone(),
            message: e.to_string(),
        })?;
        file.sync_all()
            .map_err(|source| WriteError::Io { path, source })
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
/// `array` may also be a dictionary whose values have `field`'s type: the
/// column gets the values the keys point at, the same bytes as the plain
/// array (a run's `symbol` column is one name repeated, written this way
/// without building the copies). Errors are text: the caller names the
/// file.
pub fn write_column(
    w: &mut ArrowColumnWriter,
    field: &Field,
    array: ArrayRef,
) -> Result<(), String> {
    let dictionary;
    let field = match array.data_type() {
        DataType::Dictionary(_, v) if v.as_ref() == field.data_type() => {
            dictionary = field.clone().with_data_type(array.data_type().clone());
            &dictionary
        }
        _ => field,
    };
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
    use arrow_array::types::Int8Type;
    use arrow_array::{DictionaryArray, Int8Array, StringArray};
    use arrow_schema::Schema;

    /// A string column fed as a dictionary (what a run's `symbol` column
    /// is) is written with the bytes of the plain column.
    #[test]
    fn dictionary_fed_string_column_writes_the_plain_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "symbol",
            DataType::Utf8,
            true,
        )]));
        let write = |name: &str, parts: Vec<ArrayRef>| {
            let path = dir.path().join(name);
            let mut t = Table::create(&path, schema.clone(), &["symbol"]).unwrap();
            let mut w = t.column_writers().unwrap();
            for p in parts {
                write_column(&mut w[0], &schema.fields()[0], p).unwrap();
            }
            t.append(w).unwrap();
            t.finish().unwrap();
            std::fs::read(path).unwrap()
        };
        let names = [("AAPL", 3), ("B", 2), ("CCCCCCCC", 4)];
        let plain: Vec<ArrayRef> = names
            .iter()
            .map(|&(s, n)| Arc::new(StringArray::from(vec![s; n])) as ArrayRef)
            .collect();
        let dict: Vec<ArrayRef> = names
            .iter()
            .map(|&(s, n)| {
                let keys = Int8Array::from(vec![0i8; n]);
                let values: ArrayRef = Arc::new(StringArray::from(vec![s]));
                Arc::new(DictionaryArray::<Int8Type>::new(keys, values)) as ArrayRef
            })
            .collect();
        assert_eq!(write("plain.parquet", plain), write("dict.parquet", dict));
    }
}
