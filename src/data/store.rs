//! The columnar store: an Arrow IPC file (uncompressed, 64-byte aligned
//! buffers) with one record batch per series, plus `manifest.json` with the
//! sources and the index. Later runs memory-map the IPC file and decode its
//! batches zero-copy ([`arrow_ipc::reader::FileDecoder`] over
//! [`Buffer::from_custom_allocation`]), so a [`SeriesView`] is a set of plain
//! `&[f64]`/`&[i64]` slices into the page cache.
//!
//! Layout of a store directory:
//!
//! - `bars.arrow`: schema `ts: timestamp[us, UTC]`, `open`, `high`, `low`,
//!   `close: float64`, `volume: float64` (nullable; the value under a null is
//!   NaN, so the raw slice reads NaN). Record batch *k* is series *k* of the
//!   build; any Arrow reader (pyarrow `pa.ipc.open_file`) can read it.
//! - `manifest.json`, written last: format version, sources (path, size,
//!   mtime, blake3), the index (name, symbol, file stem, batch, offset in
//!   bars, bar count, first/last ts, median interval, blake3 of the close
//!   column, the source's time zone), invalid series and warnings.
//!
//! A build goes to a sibling temp directory that is renamed into place only
//! when complete, so a crash never leaves a store that looks valid. On open,
//! a missing or unreadable manifest, another format version, a changed
//! source (path set, size or mtime: touching a file rebuilds), an IPC file of
//! another size or a footer that does not decode all mean "rebuild".

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use arrow_array::{ArrayRef, Float64Array, RecordBatch, TimestampMicrosecondArray};
use arrow_buffer::{Buffer, NullBuffer};
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::error::{DataError, DataWarning, InvalidSeries};
use super::parquet_read;
use super::validate::{self, CleanSeries};
use super::{DataOptions, SeriesInfo, SeriesView, SourceInfo, SymbolSelection};

/// Version of the store layout; another value rebuilds. 3: each series
/// records its source's time zone.
pub const FORMAT: u32 = 3;
const BARS: &str = "bars.arrow";
const MANIFEST: &str = "manifest.json";

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    created_by: String,
    sources: Vec<SourceInfo>,
    bars_file: String,
    bars_size: u64,
    total_bars: u64,
    series: Vec<IndexEntry>,
    invalid: Vec<InvalidSeries>,
    warnings: Vec<DataWarning>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexEntry {
    #[serde(flatten)]
    info: SeriesInfo,
    /// Record batch number in `bars.arrow`.
    batch: usize,
    /// Offset of the series in bars from the start of the IPC file's data.
    offset: u64,
}

/// An opened, memory-mapped store.
#[derive(Debug)]
pub struct Dataset {
    dir: PathBuf,
    series: Vec<SeriesInfo>,
    batch_of: Vec<usize>,
    batches: Vec<RecordBatch>,
    byte_ranges: Vec<(usize, usize)>,
    mmap: Arc<Mmap>,
    sources: Vec<SourceInfo>,
    warnings: Vec<DataWarning>,
    invalid: Vec<InvalidSeries>,
    built_now: bool,
    total_bars: u64,
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.display().to_string();
    move |source| DataError::Io {
        path,
        action,
        source,
    }
}

fn store_err(dir: &Path, detail: impl std::fmt::Display) -> DataError {
    DataError::Store {
        dir: dir.display().to_string(),
        detail: detail.to_string(),
    }
}

fn is_parquet_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"))
}

/// The Parquet files named by `--data` (file, directory, or glob), sorted,
/// and the directory a default store goes next to.
pub fn resolve_sources(spec: &Path) -> Result<(Vec<PathBuf>, PathBuf), DataError> {
    let s = spec.display().to_string();
    let no_files = || DataError::NoFiles { spec: s.clone() };
    if spec.is_file() {
        let base = spec
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        return Ok((vec![spec.to_path_buf()], base));
    }
    if spec.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(spec)
            .map_err(io(spec, "cannot list the directory"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_parquet_name(p))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(no_files());
        }
        return Ok((files, spec.to_path_buf()));
    }
    if s.contains(['*', '?', '[']) {
        let paths = glob::glob(&s).map_err(|e| DataError::BadSymbols {
            spec: s.clone(),
            problem: format!("bad glob: {e}"),
        })?;
        let mut files: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(no_files());
        }
        let mut base = PathBuf::new();
        for c in spec.components() {
            let cs = c.as_os_str().to_string_lossy();
            if cs.contains(['*', '?', '[']) {
                break;
            }
            base.push(c);
        }
        if base.as_os_str().is_empty() {
            base = PathBuf::from(".");
        }
        return Ok((files, base));
    }
    Err(no_files())
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128)
}

fn stat_sources(files: &[PathBuf]) -> Result<Vec<SourceInfo>, DataError> {
    files
        .iter()
        .map(|p| {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            let meta = fs::metadata(p).map_err(io(p, "cannot stat"))?;
            Ok(SourceInfo {
                path: abs.display().to_string(),
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
                blake3: String::new(),
            })
        })
        .collect()
}

fn hash_file(p: &Path) -> Result<String, DataError> {
    let mut f = File::open(p).map_err(io(p, "cannot open"))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(p, "cannot read"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

fn writable(dir: &Path) -> bool {
    if fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    let ok = File::create(&probe).is_ok();
    let _ = fs::remove_file(&probe);
    ok
}

/// Where the store for `opts` lives: `--store DIR`, else
/// `<data dir>/.atc-store/<key>` when writable, else
/// `$XDG_CACHE_HOME/atc-bt/store/<key>` (or `~/.cache/…`); `key` is a hash of
/// the absolute `--data` value, so different selections of one directory get
/// different stores.
pub fn store_dir(opts: &DataOptions, base: &Path) -> Result<PathBuf, DataError> {
    if let Some(d) = &opts.store {
        return Ok(d.clone());
    }
    let abs = std::path::absolute(&opts.data).unwrap_or_else(|_| opts.data.clone());
    let key = blake3::hash(abs.display().to_string().as_bytes()).to_hex();
    let key = &key.as_str()[..16];
    let local = base.join(".atc-store");
    // Respect a read-only data directory even when running as root (who
    // could write anyway): shared data must not grow a store.
    let base_ro = fs::metadata(base).map_or(true, |m| m.permissions().readonly());
    if !base_ro && writable(&local) {
        return Ok(local.join(key));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or_else(|| {
            store_err(
                &local,
                "the data directory is read-only and neither XDG_CACHE_HOME nor HOME is set",
            )
        })?;
    Ok(cache.join("atc-bt").join("store").join(key))
}

fn schema() -> SchemaRef {
    let mut meta = HashMap::new();
    meta.insert("atc-bt.format".to_string(), FORMAT.to_string());
    Arc::new(
        Schema::new(vec![
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
        ])
        .with_metadata(meta),
    )
}

fn to_batch(schema: &SchemaRef, s: CleanSeries) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let nulls = if s.volume.iter().any(|v| v.is_nan()) {
        Some(NullBuffer::from_iter(s.volume.iter().map(|v| !v.is_nan())))
    } else {
        None
    };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(s.ts).with_timezone("UTC")),
        Arc::new(Float64Array::from(s.open)),
        Arc::new(Float64Array::from(s.high)),
        Arc::new(Float64Array::from(s.low)),
        Arc::new(Float64Array::from(s.close)),
        Arc::new(Float64Array::new(s.volume.into(), nulls)),
    ];
    RecordBatch::try_new(schema.clone(), cols)
}

fn file_stem(p: &str) -> String {
    Path::new(p)
        .file_stem()
        .map_or_else(|| p.to_string(), |s| s.to_string_lossy().into_owned())
}

/// Builds the store for `files` into `dir` (atomically replacing it).
fn build(
    opts: &DataOptions,
    files: &[PathBuf],
    mut sources: Vec<SourceInfo>,
    dir: &Path,
) -> Result<(), DataError> {
    // Pass 1 over every file first: schema errors surface before any work,
    // and names need to know which symbols repeat across files.
    let scans: Vec<parquet_read::FileScan> = files
        .iter()
        .map(|f| parquet_read::scan(f))
        .collect::<Result<_, _>>()?;
    let mut count: HashMap<&str, usize> = HashMap::new();
    for sc in &scans {
        for s in &sc.symbols {
            *count.entry(s.as_str()).or_default() += 1;
        }
    }
    let total_rows: u64 = scans.iter().map(|s| s.rows).sum();
    let bar = if opts.progress && std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total_rows);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} ingest {bar:40} {human_pos}/{human_len} bars {per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };

    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent)
        .map_err(|e| store_err(dir, format!("cannot create {}: {e}", parent.display())))?;
    let name = dir
        .file_name()
        .map_or_else(|| "store".into(), |n| n.to_string_lossy().into_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = parent.join(format!("{name}.tmp-{}-{nanos}", std::process::id()));
    let result = (|| -> Result<(), DataError> {
        fs::create_dir_all(&tmp)
            .map_err(|e| store_err(dir, format!("cannot create {}: {e}", tmp.display())))?;
        let bars_path = tmp.join(BARS);
        let f = File::create(&bars_path)
            .map_err(|e| store_err(dir, format!("cannot create {}: {e}", bars_path.display())))?;
        let schema = schema();
        let options = IpcWriteOptions::try_new(64, false, arrow_ipc::MetadataVersion::V5)
            .map_err(|e| store_err(dir, e))?;
        let mut w = FileWriter::try_new_with_options(
            BufWriter::with_capacity(1 << 20, f),
            &schema,
            options,
        )
        .map_err(|e| store_err(dir, e))?;
        let mut index: Vec<IndexEntry> = Vec::new();
        let mut invalid = Vec::new();
        let mut warnings = Vec::new();
        let mut offset = 0u64;
        for (sc, file) in scans.iter().zip(files) {
            let stem = file_stem(&sc.path);
            bar.set_message(stem.clone());
            parquet_read::read_series(file, sc, None, |raw| {
                bar.inc(raw.ts.len() as u64);
                let symbol = raw.symbol.clone();
                let name = if count.get(symbol.as_str()).copied().unwrap_or(0) > 1 {
                    format!("{stem}:{symbol}")
                } else {
                    symbol.clone()
                };
                match validate::validate(&sc.path, raw, &mut warnings) {
                    Err(p) => invalid.push(InvalidSeries {
                        name,
                        file: sc.path.clone(),
                        symbol,
                        row: p.row,
                        ts: p.ts,
                        problem: p.problem,
                    }),
                    Ok(clean) => {
                        let bars = clean.ts.len();
                        let info = SeriesInfo {
                            name,
                            symbol,
                            file_stem: stem.clone(),
                            bars,
                            first_ts: clean.ts.first().copied().unwrap_or(0),
                            last_ts: clean.ts.last().copied().unwrap_or(0),
                            interval_us: validate::median_interval(&clean.ts),
                            close_hash: validate::close_hash(&clean.close),
                            bars_hash: validate::bars_hash(&clean.ts, &clean.open, &clean.close),
                            tz: sc.tz.clone(),
                        };
                        let batch = to_batch(&schema, clean).map_err(|e| store_err(dir, e))?;
                        w.write(&batch).map_err(|e| store_err(dir, e))?;
                        index.push(IndexEntry {
                            info,
                            batch: index.len(),
                            offset,
                        });
                        offset += bars as u64;
                    }
                }
                Ok(())
            })?;
        }
        w.finish().map_err(|e| store_err(dir, e))?;
        let buf = w.into_inner().map_err(|e| store_err(dir, e))?;
        let f = buf.into_inner().map_err(|e| store_err(dir, e.error()))?;
        f.sync_all().map_err(|e| store_err(dir, e))?;
        let bars_size = fs::metadata(&bars_path)
            .map_err(|e| store_err(dir, e))?
            .len();
        for (s, p) in sources.iter_mut().zip(files) {
            s.blake3 = hash_file(p)?;
        }
        index.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        invalid.sort_by(|a: &InvalidSeries, b| a.name.cmp(&b.name));
        let manifest = Manifest {
            format: FORMAT,
            created_by: format!("atc-bt {}", env!("CARGO_PKG_VERSION")),
            sources: std::mem::take(&mut sources),
            bars_file: BARS.into(),
            bars_size,
            total_bars: offset,
            series: index,
            invalid,
            warnings,
        };
        let mpath = tmp.join(MANIFEST);
        let mut mf = File::create(&mpath).map_err(|e| store_err(dir, e))?;
        serde_json::to_writer(BufWriter::new(&mut mf), &manifest).map_err(|e| store_err(dir, e))?;
        mf.flush().map_err(|e| store_err(dir, e))?;
        mf.sync_all().map_err(|e| store_err(dir, e))?;
        // Swap into place: the old store (if any) moves aside first, because
        // rename cannot replace a non-empty directory.
        let old = parent.join(format!("{name}.old-{}-{nanos}", std::process::id()));
        if dir.exists() {
            fs::rename(dir, &old)
                .map_err(|e| store_err(dir, format!("cannot move the old store aside: {e}")))?;
        }
        fs::rename(&tmp, dir)
            .map_err(|e| store_err(dir, format!("cannot move the new store into place: {e}")))?;
        let _ = fs::remove_dir_all(&old);
        Ok(())
    })();
    bar.finish_and_clear();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

/// Loads a store; `Err(reason)` means it must be rebuilt.
fn load(dir: &Path, current: &[SourceInfo]) -> Result<Dataset, String> {
    let mtext = fs::read(dir.join(MANIFEST)).map_err(|e| format!("no readable manifest ({e})"))?;
    let m: Manifest =
        serde_json::from_slice(&mtext).map_err(|e| format!("manifest does not parse ({e})"))?;
    if m.format != FORMAT {
        return Err(format!("format {} (this build reads {FORMAT})", m.format));
    }
    if m.sources.len() != current.len() {
        return Err("the set of source files changed".into());
    }
    for (a, b) in m.sources.iter().zip(current) {
        if a.path != b.path {
            return Err("the set of source files changed".into());
        }
        if a.size != b.size || a.mtime_ns != b.mtime_ns {
            return Err(format!("{} changed (size or modification time)", b.path));
        }
    }
    let bars = dir.join(&m.bars_file);
    let file = File::open(&bars).map_err(|e| format!("cannot open {} ({e})", bars.display()))?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    if size != m.bars_size {
        return Err(format!(
            "{} has {size} bytes, the manifest says {}",
            bars.display(),
            m.bars_size
        ));
    }
    // SAFETY: the store is ours and only ever replaced by rename, never
    // rewritten in place; a process truncating it under us would be a bug
    // outside this program.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| format!("cannot mmap ({e})"))?;
    let mmap = Arc::new(mmap);
    let (batches, byte_ranges) =
        decode(&mmap, &file).map_err(|e| format!("{} does not decode ({e})", bars.display()))?;
    let mut series = Vec::with_capacity(m.series.len());
    let mut batch_of = Vec::with_capacity(m.series.len());
    for e in m.series {
        let ok = batches
            .get(e.batch)
            .is_some_and(|b| b.num_rows() == e.info.bars);
        if !ok {
            return Err(format!(
                "index entry {} does not match the IPC file",
                e.info.name
            ));
        }
        batch_of.push(e.batch);
        series.push(e.info);
    }
    Ok(Dataset {
        dir: dir.to_path_buf(),
        series,
        batch_of,
        batches,
        byte_ranges,
        mmap,
        sources: m.sources,
        warnings: m.warnings,
        invalid: m.invalid,
        built_now: false,
        total_bars: m.total_bars,
    })
}

type Decoded = (Vec<RecordBatch>, Vec<(usize, usize)>);

/// Zero-copy decode of an IPC file held in `mmap`.
fn decode(mmap: &Arc<Mmap>, file: &File) -> Result<Decoded, String> {
    let len = mmap.len();
    if len < 10 {
        return Err("too short".into());
    }
    let ptr = NonNull::new(mmap.as_ptr() as *mut u8).ok_or("null mapping")?;
    // SAFETY: the pointer and length describe the live mapping, which the
    // Arc keeps alive as long as any buffer slices it.
    let buffer = unsafe { Buffer::from_custom_allocation(ptr, len, mmap.clone()) };
    let mut trailer = [0u8; 10];
    trailer.copy_from_slice(&buffer[len - 10..]);
    let footer_len = arrow_ipc::reader::read_footer_length(trailer).map_err(|e| e.to_string())?;
    if footer_len + 10 > len {
        return Err("footer longer than the file".into());
    }
    let footer = arrow_ipc::root_as_footer(&buffer[len - 10 - footer_len..len - 10])
        .map_err(|e| format!("bad footer: {e}"))?;
    let schema = footer.schema().ok_or("no schema in footer")?;
    let schema = Arc::new(arrow_ipc::convert::fb_to_schema(schema));
    if schema.fields() != self::schema().fields() {
        return Err("unexpected schema".into());
    }
    // Each batch's small metadata message is read with a plain file read,
    // not through the mapping: touching one header per series through the
    // mmap makes the kernel map 64 KiB around each (fault-around), so opening
    // a 600 MB store would make half of it resident. Only the bodies are
    // mapped, zero-copy, and stay untouched until a series is viewed.
    let mut file = file;
    let no_dicts = HashMap::new();
    let mut batches = Vec::new();
    let mut ranges = Vec::new();
    let mut meta = Vec::new();
    for block in footer.recordBatches().iter().flatten() {
        let off = usize::try_from(block.offset()).map_err(|_| "bad block offset")?;
        let mlen = usize::try_from(block.metaDataLength()).map_err(|_| "bad block")?;
        let blen = usize::try_from(block.bodyLength()).map_err(|_| "bad block")?;
        let end = off.checked_add(mlen).and_then(|x| x.checked_add(blen));
        if mlen < 8 || end.is_none_or(|end| end > len) {
            return Err("block outside the file".into());
        }
        meta.resize(mlen, 0);
        file.seek(SeekFrom::Start(off as u64))
            .map_err(|e| e.to_string())?;
        file.read_exact(&mut meta).map_err(|e| e.to_string())?;
        let skip = if meta[..4] == [0xff; 4] { 8 } else { 4 };
        let message = arrow_ipc::root_as_message(&meta[skip..])
            .map_err(|e| format!("bad batch header: {e}"))?;
        let rb = message
            .header_as_record_batch()
            .ok_or("a block is not a record batch")?;
        let body = buffer.slice_with_length(off + mlen, blen);
        let batch = arrow_ipc::reader::read_record_batch(
            &body,
            rb,
            schema.clone(),
            &no_dicts,
            None,
            &message.version(),
        )
        .map_err(|e| e.to_string())?;
        batches.push(batch);
        ranges.push((off, mlen + blen));
    }
    Ok((batches, ranges))
}

/// The data `opts` names, identified without opening or building its
/// store: the store directory and each source file's absolute path, size
/// and modification time, which is exactly the evidence
/// [`Dataset::open`] accepts to reuse a store without rebuilding it (the
/// `blake3` fields are left empty). Cheap: a directory listing and a
/// `stat` per file. Callers use it to recognise data they have seen before
/// (the run cache's memos).
pub fn source_stamp(opts: &DataOptions) -> Result<(PathBuf, Vec<SourceInfo>), DataError> {
    let (files, base) = resolve_sources(&opts.data)?;
    let dir = store_dir(opts, &base)?;
    Ok((dir, stat_sources(&files)?))
}

impl Dataset {
    /// Opens the store for `opts.data`, building or rebuilding it when
    /// missing, stale or damaged. Logs one line on stderr saying which. With
    /// `opts.strict`, any warning or invalid series is an error (the store
    /// itself does not depend on `strict`).
    pub fn open(opts: &DataOptions) -> Result<Dataset, DataError> {
        let t0 = Instant::now();
        let (files, base) = resolve_sources(&opts.data)?;
        let dir = store_dir(opts, &base)?;
        let current = stat_sources(&files)?;
        let ds = match load(&dir, &current) {
            Ok(ds) => {
                eprintln!(
                    "data: opened store {} ({} series, {} bars) in {:.1} ms",
                    dir.display(),
                    ds.series.len(),
                    ds.total_bars,
                    t0.elapsed().as_secs_f64() * 1e3
                );
                ds
            }
            Err(reason) => {
                if dir.exists() {
                    eprintln!(
                        "data: store {} is stale: {reason}; rebuilding",
                        dir.display()
                    );
                }
                build(opts, &files, current.clone(), &dir)?;
                let mut ds = load(&dir, &current).map_err(|r| {
                    store_err(&dir, format!("cannot read the store just built: {r}"))
                })?;
                ds.built_now = true;
                eprintln!(
                    "data: built store {} ({} series, {} bars) from {} Parquet files in {:.1} ms",
                    dir.display(),
                    ds.series.len(),
                    ds.total_bars,
                    files.len(),
                    t0.elapsed().as_secs_f64() * 1e3
                );
                ds
            }
        };
        if opts.strict {
            let n = ds.warnings.len() + ds.invalid.len();
            if n > 0 {
                let first = ds
                    .invalid
                    .first()
                    .map(ToString::to_string)
                    .or_else(|| ds.warnings.first().map(ToString::to_string))
                    .unwrap_or_default();
                return Err(DataError::Strict { count: n, first });
            }
        }
        Ok(ds)
    }

    /// All valid series, sorted by name.
    pub fn series(&self) -> &[SeriesInfo] {
        &self.series
    }

    /// Zero-copy slices of series `idx` (an index into [`Dataset::series`]).
    ///
    /// # Panics
    /// If `idx >= self.series().len()` (a programming error, not a data one).
    pub fn view(&self, idx: usize) -> SeriesView<'_> {
        let b = &self.batches[self.batch_of[idx]];
        let f = |i: usize| b.column(i).as_primitive::<Float64Type>().values().as_ref();
        SeriesView {
            ts: b
                .column(0)
                .as_primitive::<TimestampMicrosecondType>()
                .values()
                .as_ref(),
            open: f(1),
            high: f(2),
            low: f(3),
            close: f(4),
            volume: f(5),
        }
    }

    /// Resolves a symbol selection to indices into [`Dataset::series`].
    pub fn select(&self, symbols: &SymbolSelection) -> Result<Vec<usize>, DataError> {
        super::select::select(&self.series, symbols)
    }

    /// The Parquet files the store was built from.
    pub fn sources(&self) -> &[SourceInfo] {
        &self.sources
    }

    /// Warnings of the build (bars skipped or kept with a problem).
    pub fn warnings(&self) -> &[DataWarning] {
        &self.warnings
    }

    /// Series that failed validation; not in [`Dataset::series`].
    pub fn invalid(&self) -> &[InvalidSeries] {
        &self.invalid
    }

    /// True if this `open` built the store.
    pub fn built_now(&self) -> bool {
        self.built_now
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Total bars over all valid series.
    pub fn total_bars(&self) -> u64 {
        self.total_bars
    }

    /// Tells the kernel this process is done with series `idx` for now, so
    /// its pages leave the resident set (they stay in the page cache and
    /// fault back in on the next access; slices stay valid). Iterating all
    /// series with `release` keeps peak RSS near one series instead of the
    /// whole store.
    pub fn release(&self, idx: usize) {
        let (off, len) = self.byte_ranges[self.batch_of[idx]];
        // SAFETY: the mapping is read-only and shared (file-backed), so
        // MADV_DONTNEED only drops page-table entries; later reads fault the
        // same bytes back from the file. No data is lost or changed.
        #[cfg(unix)]
        unsafe {
            let _ = self
                .mmap
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, off, len);
        }
        #[cfg(not(unix))]
        let _ = (off, len);
    }

    /// [`Dataset::release`] for every series at once. The kernel maps
    /// file pages around each fault (fault-around, 64 KiB by default), so
    /// reading one series also maps pieces of its neighbours, including
    /// ones already released; calling this after each chunk of series keeps
    /// the resident set at one chunk however many series a run reads.
    pub fn release_all(&self) {
        // SAFETY: as in `release`: a read-only shared file mapping, so
        // MADV_DONTNEED only drops page-table entries.
        #[cfg(unix)]
        unsafe {
            let _ = self
                .mmap
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed);
        }
    }
}
