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
//!   column, the source's time zone, two xxh3 checksums of the series'
//!   columns as read from `bars.arrow`), invalid series and warnings, and
//!   an xxh3 checksum of the manifest itself.
//!
//! A build goes to a sibling temp directory that is renamed into place only
//! when complete, so a crash never leaves a store that looks valid. On open,
//! a missing or unreadable manifest, a manifest that fails its checksum,
//! another format version, a changed source (path set, size or mtime:
//! touching a file rebuilds), an IPC file of another size or a footer that
//! does not decode all mean "rebuild".
//!
//! **Verified, not trusted.** The bytes of a memory-mapped file can change
//! under a valid manifest (a flipped bit on disk, an edit that kept the
//! modification time). Each series carries two xxh3-64 checksums computed
//! at ingest over its columns as a reader decodes them: one over `ts`,
//! `open` and `close` (everything `run`, `sweep` and the engine read), one
//! over `high`, `low` and `volume`. A command checks the columns it reads
//! the first time it reads a series ([`Dataset::verify`]); a mismatch
//! rebuilds the store from its Parquet sources with one warning
//! ([`Dataset::verified`]), so results are those of an undamaged store.
//! Checksums of the decoded values also cover the batch headers: a damaged
//! header that still decodes yields other values. xxh3 rather than blake3
//! (which stays the identity of content: close and bars hashes): it runs at
//! memory speed, twice as fast as blake3 here; checking only the columns a
//! run reads halves the bytes (see the README for the measured cost).
//!
//! A build replaces only a directory that is a store (or empty), never one
//! holding anything else (`--store ~/Documents` is refused), and removes
//! the temporaries of killed builds beside it (see [`crate::files::owner`]).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

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

/// Version of the store layout; another value rebuilds. 4: each series
/// records its source's time zone and two xxh3 checksums of its columns.
pub const FORMAT: u32 = 4;
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
    /// xxh3-64 (hex) of this manifest serialized without it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    checksum: String,
}

impl Manifest {
    /// The checksum of the manifest's content, with `checksum` taken out
    /// (serde_json writes the same struct as the same bytes); returns the
    /// checksum it held.
    fn take_and_sum(&mut self) -> (String, String) {
        let held = std::mem::take(&mut self.checksum);
        let bytes = serde_json::to_vec(&*self).unwrap_or_default();
        (
            held,
            format!("{:016x}", twox_hash::XxHash3_64::oneshot(&bytes)),
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexEntry {
    #[serde(flatten)]
    info: SeriesInfo,
    /// Record batch number in `bars.arrow`.
    batch: usize,
    /// Offset of the series in bars from the start of the IPC file's data.
    offset: u64,
    /// xxh3-64 (hex) of the decoded `ts`, `open` and `close` columns.
    xxh3_traded: String,
    /// xxh3-64 (hex) of the decoded `high`, `low` and `volume` columns
    /// (values and validity).
    xxh3_rest: String,
}

/// An opened, memory-mapped store.
#[derive(Debug)]
pub struct Dataset {
    dir: PathBuf,
    base: PathBuf,
    series: Vec<SeriesInfo>,
    /// Per series: the checksums of its column groups ([`Columns`]), and
    /// which were checked and how (bits of [`Columns::bit`]).
    sums: Vec<[u64; 2]>,
    checked: Vec<AtomicU8>,
    batch_of: Vec<usize>,
    batches: Vec<RecordBatch>,
    byte_ranges: Vec<(usize, usize)>,
    mmap: Arc<Mmap>,
    sources: Vec<SourceInfo>,
    warnings: Vec<DataWarning>,
    invalid: Vec<InvalidSeries>,
    built_now: bool,
    /// The damage this `open` found and repaired by rebuilding.
    repaired: Option<String>,
    total_bars: u64,
    /// Bytes of series given up ([`Dataset::release`]) since the mapping's
    /// pages were last dropped.
    released: AtomicUsize,
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> DataError {
    let path = crate::term::shown(path);
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

/// Bytes of series given up by [`Dataset::release`] before their pages
/// are dropped (all at once): a bound on what the mapping adds to the
/// resident set between drops, beyond the series in use.
pub const RELEASE_BYTES: usize = 32 << 20;

/// Series checked between two [`Dataset::release_all`] calls by
/// [`Dataset::verify`]: a run's chunk size.
const VERIFY_CHUNK: usize = 256;

/// Which columns of a series a command reads, for [`Dataset::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// `ts`, `open` and `close`: what the engine and the backtester read.
    Traded,
    /// Every column.
    All,
}

impl Columns {
    /// The column groups (indices into a series' two checksums) covered.
    fn groups(self) -> &'static [usize] {
        match self {
            Columns::Traded => &[0],
            Columns::All => &[0, 1],
        }
    }

    /// Bit marking group `g` checked good (`bad`: checked bad).
    fn bit(g: usize, bad: bool) -> u8 {
        1 << (2 * g + usize::from(bad))
    }
}

/// Schema indices of the two column groups: `ts, open, close` and `high,
/// low, volume`.
const GROUPS: [[usize; 3]; 2] = [[0, 1, 4], [2, 3, 5]];

/// The xxh3-64 of column group `g` of `batch`, over the decoded buffers a
/// reader sees (values, and validity where present).
fn group_sum(batch: &RecordBatch, g: usize) -> u64 {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash3_64::with_seed(0);
    for &c in &GROUPS[g] {
        let data = batch.column(c).to_data();
        for b in data.buffers() {
            h.write(b.as_slice());
        }
        h.write_u8(0xfe);
        if let Some(n) = data.nulls() {
            h.write(n.validity());
        }
        h.write_u8(0xff);
    }
    h.finish()
}

/// The Parquet files named by `--data` (file, directory, or glob), sorted
/// and canonical, and the data directory (see [`crate::locate`]).
pub fn resolve_sources(spec: &Path) -> Result<(Vec<PathBuf>, PathBuf), DataError> {
    let place = crate::locate::resolve(spec)?;
    Ok((place.files, place.base))
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
            let meta = fs::metadata(p).map_err(io(p, "cannot stat"))?;
            Ok(SourceInfo {
                path: p.display().to_string(),
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

/// Where the store for `opts` lives (see [`crate::locate`]): `--store DIR`,
/// else `<data dir>/.atc-store/<key>` when writable, else
/// `$XDG_CACHE_HOME/atc-bt/store/<key>`; `key` hashes the canonical paths of
/// the source files, so every spelling of the same data shares one store.
pub fn store_dir(opts: &DataOptions, files: &[PathBuf], base: &Path) -> PathBuf {
    let place = crate::locate::DataPlace {
        files: files.to_vec(),
        base: base.to_path_buf(),
    };
    crate::locate::store_dir(&place, opts.store.as_deref())
}

/// Entries a store directory may hold: its files, the probe of an older
/// build, and the result cache older versions kept inside it.
fn store_entry_ok(name: &str) -> bool {
    name == BARS || name == MANIFEST || name == ".atc-cache" || name.starts_with(".probe-")
}

/// The entries of an existing `dir` that a store does not hold (empty:
/// the directory may be replaced by a build).
fn foreign_in_store(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return if dir.exists() && !dir.is_dir() {
            vec![dir.display().to_string()]
        } else {
            Vec::new()
        };
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !store_entry_ok(n))
        .collect();
    v.sort();
    v
}

/// Marker of a store being built, and of one being replaced.
const TMP: &str = ".atc-bt-tmp-";
const OLD: &str = ".atc-bt-old-";

/// Removes the temporaries of builds whose process is gone from the
/// directory holding stores (`.atc-store/`); returns them.
pub fn sweep_temporaries(area: &Path) -> Vec<PathBuf> {
    crate::files::owner::sweep(area, |name| {
        crate::files::owner::tag_after(name, TMP)
            .or_else(|| crate::files::owner::tag_after(name, OLD))
    })
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
    let foreign = foreign_in_store(dir);
    if !foreign.is_empty() {
        return Err(store_err(
            dir,
            format!(
                "refusing to build a store here: the directory holds files atc-bt did not write ({})",
                foreign
                    .iter()
                    .take(8)
                    .map(|f| crate::term::quote(f).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    // Builds killed before their rename left temporaries here.
    sweep_temporaries(parent);
    let tmp = parent.join(crate::files::owner::temp_name(&name, TMP));
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
            bar.set_message(crate::term::escape(&stem).into_owned());
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
                            xxh3_traded: String::new(),
                            xxh3_rest: String::new(),
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
        // The checksums of what was written, read back as a reader sees it.
        let sums = block_sums(&bars_path).map_err(|e| store_err(dir, e))?;
        if sums.len() != index.len() {
            return Err(store_err(dir, "the written IPC file lost record batches"));
        }
        for e in &mut index {
            e.xxh3_traded = format!("{:016x}", sums[e.batch][0]);
            e.xxh3_rest = format!("{:016x}", sums[e.batch][1]);
        }
        for (s, p) in sources.iter_mut().zip(files) {
            s.blake3 = hash_file(p)?;
        }
        index.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        invalid.sort_by(|a: &InvalidSeries, b| a.name.cmp(&b.name));
        let mut manifest = Manifest {
            format: FORMAT,
            created_by: format!("atc-bt {}", env!("CARGO_PKG_VERSION")),
            sources: std::mem::take(&mut sources),
            bars_file: BARS.into(),
            bars_size,
            total_bars: offset,
            series: index,
            invalid,
            warnings,
            checksum: String::new(),
        };
        manifest.checksum = manifest.take_and_sum().1;
        let mpath = tmp.join(MANIFEST);
        let mut mf = File::create(&mpath).map_err(|e| store_err(dir, e))?;
        serde_json::to_writer(BufWriter::new(&mut mf), &manifest).map_err(|e| store_err(dir, e))?;
        mf.flush().map_err(|e| store_err(dir, e))?;
        mf.sync_all().map_err(|e| store_err(dir, e))?;
        // Swap into place: the old store (if any) moves aside first, because
        // rename cannot replace a non-empty directory.
        let old = parent.join(crate::files::owner::temp_name(&name, OLD));
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

/// Why a store cannot be used as it is, and must be rebuilt.
#[derive(Debug)]
enum Unusable {
    /// Absent, of another format, or built from other sources.
    Stale(String),
    /// Its own files are damaged.
    Damaged(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Stale(r) | Unusable::Damaged(r) => f.write_str(r),
        }
    }
}

/// Loads a store; `Err` means it must be rebuilt.
/// [`load_mapped`], then every page it touched released: reading one
/// batch header per series faults in 64 KiB around each (fault-around),
/// which held 540 MB of a 10,000-series store resident before any series
/// was read.
fn load(dir: &Path, base: &Path, current: &[SourceInfo]) -> Result<Dataset, Unusable> {
    let ds = load_mapped(dir, base, current)?;
    ds.release_all();
    Ok(ds)
}

fn load_mapped(dir: &Path, base: &Path, current: &[SourceInfo]) -> Result<Dataset, Unusable> {
    use Unusable::{Damaged, Stale};
    let mtext =
        fs::read(dir.join(MANIFEST)).map_err(|e| Damaged(format!("no readable manifest ({e})")))?;
    let mut m: Manifest = serde_json::from_slice(&mtext)
        .map_err(|e| Damaged(format!("its manifest does not parse ({e})")))?;
    if m.format != FORMAT {
        return Err(Stale(format!(
            "format {} (this build reads {FORMAT})",
            m.format
        )));
    }
    let (held, sum) = m.take_and_sum();
    if held != sum {
        return Err(Damaged("its manifest fails its checksum".into()));
    }
    if m.bars_file != BARS {
        return Err(Damaged(format!(
            "the manifest names {:?}, not {BARS}",
            m.bars_file
        )));
    }
    if m.sources.len() != current.len() {
        return Err(Stale("the set of source files changed".into()));
    }
    for (a, b) in m.sources.iter().zip(current) {
        if a.path != b.path {
            return Err(Stale("the set of source files changed".into()));
        }
        if a.size != b.size || a.mtime_ns != b.mtime_ns {
            return Err(Stale(format!(
                "{} changed (size or modification time)",
                b.path
            )));
        }
    }
    let bars = dir.join(&m.bars_file);
    let file =
        File::open(&bars).map_err(|e| Damaged(format!("cannot open {} ({e})", bars.display())))?;
    let size = file.metadata().map_err(|e| Damaged(e.to_string()))?.len();
    if size != m.bars_size {
        return Err(Damaged(format!(
            "{} has {size} bytes, the manifest says {}",
            bars.display(),
            m.bars_size
        )));
    }
    // SAFETY: the store is ours and only ever replaced by rename, never
    // rewritten in place; a process truncating it under us would be a bug
    // outside this program.
    let mmap = unsafe { Mmap::map(&file) }
        .map_err(|e| Damaged(format!("cannot mmap {} ({e})", bars.display())))?;
    let mmap = Arc::new(mmap);
    let (batches, byte_ranges) = decode(&mmap, &file)
        .map_err(|e| Damaged(format!("{} does not decode ({e})", bars.display())))?;
    let mut series = Vec::with_capacity(m.series.len());
    let mut batch_of = Vec::with_capacity(m.series.len());
    let mut sums = Vec::with_capacity(m.series.len());
    for e in m.series {
        let ok = batches
            .get(e.batch)
            .is_some_and(|b| b.num_rows() == e.info.bars);
        let traded = u64::from_str_radix(&e.xxh3_traded, 16).ok();
        let rest = u64::from_str_radix(&e.xxh3_rest, 16).ok();
        let (true, Some(traded), Some(rest)) = (ok, traded, rest) else {
            return Err(Damaged(format!(
                "index entry {} does not match the IPC file",
                e.info.name
            )));
        };
        batch_of.push(e.batch);
        series.push(e.info);
        sums.push([traded, rest]);
    }
    Ok(Dataset {
        dir: dir.to_path_buf(),
        base: base.to_path_buf(),
        checked: (0..sums.len()).map(|_| AtomicU8::new(0)).collect(),
        sums,
        series,
        batch_of,
        batches,
        byte_ranges,
        mmap,
        sources: m.sources,
        warnings: m.warnings,
        invalid: m.invalid,
        built_now: false,
        repaired: None,
        total_bars: m.total_bars,
        released: AtomicUsize::new(0),
    })
}

type Decoded = (Vec<RecordBatch>, Vec<(usize, usize)>);

/// Zero-copy decode of an IPC file held in `mmap`. arrow-ipc may panic
/// on a damaged batch header ("the offset of the new Buffer cannot exceed
/// the existing length"), so the decode runs behind a panic boundary
/// ([`crate::boundary`]): a panic is one more way to say "damaged".
fn decode(mmap: &Arc<Mmap>, file: &File) -> Result<Decoded, String> {
    crate::boundary::catch(|| decode_unguarded(mmap, file))
        .unwrap_or_else(|panic| Err(format!("arrow-ipc rejected it: {panic}")))
}

fn decode_unguarded(mmap: &Arc<Mmap>, file: &File) -> Result<Decoded, String> {
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

/// The checksums of both column groups of every record batch of the IPC
/// file at `path`, in batch order, as a reader decodes them.
fn block_sums(path: &Path) -> Result<Vec<[u64; 2]>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: a file this process just wrote into its own temporary
    // directory; nothing else writes it.
    let mmap = Arc::new(unsafe { Mmap::map(&file) }.map_err(|e| e.to_string())?);
    let (batches, _) = decode(&mmap, &file)?;
    Ok(batches
        .iter()
        .map(|b| [group_sum(b, 0), group_sum(b, 1)])
        .collect())
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
    let dir = store_dir(opts, &files, &base);
    Ok((dir, stat_sources(&files)?))
}

/// What `atc-bt data gc` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gc {
    /// The directory that holds the stores.
    pub area: PathBuf,
    /// Temporaries of builds whose process is gone.
    pub temporaries: Vec<PathBuf>,
    /// Stores that can no longer be used as they are: a source file is
    /// gone or changed, another format, or a damaged manifest.
    pub outdated: Vec<PathBuf>,
    /// Bytes freed.
    pub bytes: u64,
}

/// Why the store in `dir` can only be rebuilt, if so: another format, or a
/// source file gone or changed. `None` for a current store, and for one
/// whose manifest cannot be read (being replaced by a build right now, or
/// damaged: the next open rebuilds it in place).
fn outdated(dir: &Path) -> Option<String> {
    let text = fs::read(dir.join(MANIFEST)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let format = v.get("format").and_then(serde_json::Value::as_u64)?;
    if format != u64::from(FORMAT) {
        return Some(format!("format {format}"));
    }
    let mut m = serde_json::from_value::<Manifest>(v).ok()?;
    let (held, sum) = m.take_and_sum();
    if held != sum {
        return None;
    }
    for s in &m.sources {
        let Ok(meta) = fs::metadata(&s.path) else {
            return Some(format!("{} is gone", s.path));
        };
        if meta.len() != s.size || mtime_ns(&meta) != s.mtime_ns {
            return Some(format!("{} changed", s.path));
        }
    }
    None
}

/// `atc-bt data gc`: in the directory holding the stores of `opts.data`
/// (its `.atc-store/`, or the per-user one), removes the temporaries of
/// killed builds and the stores that could only be rebuilt (see [`Gc`]),
/// and in the data directory the probe files of killed commands.
/// Only directories that hold nothing but store files are ever removed.
pub fn gc(opts: &DataOptions) -> Result<Gc, DataError> {
    let area = match &opts.store {
        Some(d) => crate::locate::canonical(d)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        None => crate::locate::store_area(&crate::locate::data_base(&opts.data)),
    };
    let before = crate::cache::store::dir_bytes(&area);
    let mut temporaries = sweep_temporaries(&area);
    // The probe files of a command killed while it checked that the data
    // directory is writable (see `crate::locate::local_ok`).
    temporaries.extend(crate::files::owner::sweep(
        &crate::locate::data_base(&opts.data),
        |n| n.strip_prefix(crate::locate::PROBE),
    ));
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(&area) {
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let temporary = name.contains(TMP) || name.contains(OLD);
            if name.starts_with('.') || temporary || !p.is_dir() || !foreign_in_store(&p).is_empty()
            {
                continue;
            }
            if outdated(&p).is_some() && fs::remove_dir_all(&p).is_ok() {
                out.push(p);
            }
        }
    }
    let after = crate::cache::store::dir_bytes(&area);
    Ok(Gc {
        area,
        temporaries,
        outdated: out,
        bytes: before.saturating_sub(after),
    })
}

/// The data problems of a selection ([`Dataset::problems`]).
#[derive(Debug, Clone, Default)]
pub struct Problems<'a> {
    /// Warnings of the selected series.
    pub warnings: Vec<&'a DataWarning>,
    /// Invalid series the selection would have held.
    pub invalid: Vec<&'a InvalidSeries>,
    /// Warnings of other series.
    pub other_warnings: usize,
    /// Invalid series outside the selection.
    pub other_invalid: usize,
}

/// A store whose bytes do not match their checksums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The store directory.
    pub dir: PathBuf,
    /// Names of the series that fail their checksum, in index order.
    pub series: Vec<String>,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<String> = self
            .series
            .iter()
            .take(5)
            .map(|n| crate::term::quote(n).into_owned())
            .collect();
        let more = if self.series.len() > 5 {
            format!(" and {} more", self.series.len() - 5)
        } else {
            String::new()
        };
        write!(
            f,
            "store {} is damaged: the bytes of {} series ({}{more}) do not match their checksums",
            self.dir.display(),
            self.series.len(),
            shown.join(", ")
        )
    }
}

impl Dataset {
    /// Opens the store for `opts.data`, building or rebuilding it when
    /// missing, stale or damaged. Gives `log` one line saying which (the
    /// library prints nothing: the CLI shows it on stderr, a job passes it
    /// to its [`Progress`](crate::job::Progress)). With
    /// `opts.strict`, any warning or invalid series is an error (the store
    /// itself does not depend on `strict`).
    ///
    /// The series' bytes are not checked here: [`Dataset::verified`] checks
    /// the series a command reads.
    pub fn open(opts: &DataOptions, log: &mut dyn FnMut(&str)) -> Result<Dataset, DataError> {
        Dataset::open_inner(opts, false, log)
    }

    /// The store of `opts` as it is, if it is current: never builds,
    /// rebuilds or prints; `None` when the data or its store is gone,
    /// changed or unreadable. For readers of results that want a few
    /// series of the data a run used (the report's close prices).
    pub fn open_current(opts: &DataOptions) -> Option<Dataset> {
        let (files, base) = resolve_sources(&opts.data).ok()?;
        let dir = store_dir(opts, &files, &base);
        let current = stat_sources(&files).ok()?;
        load(&dir, &base, &current).ok()
    }

    fn open_inner(
        opts: &DataOptions,
        rebuild: bool,
        log: &mut dyn FnMut(&str),
    ) -> Result<Dataset, DataError> {
        let t0 = Instant::now();
        let (files, base) = resolve_sources(&opts.data)?;
        let dir = store_dir(opts, &files, &base);
        let current = stat_sources(&files)?;
        let loaded = if rebuild {
            Err(None)
        } else {
            load(&dir, &base, &current).map_err(Some)
        };
        let ds = match loaded {
            Ok(ds) => {
                log(&format!(
                    "data: opened store {} ({} series, {} bars) in {:.1} ms",
                    dir.display(),
                    ds.series.len(),
                    ds.total_bars,
                    t0.elapsed().as_secs_f64() * 1e3
                ));
                ds
            }
            Err(reason) => {
                let damage = match reason {
                    Some(Unusable::Damaged(r)) if dir.exists() => {
                        let damage = format!("store {} is damaged: {r}", dir.display());
                        log(&format!(
                            "warning: data: {damage}; rebuilding it from the Parquet sources"
                        ));
                        Some(damage)
                    }
                    Some(Unusable::Stale(r)) if dir.exists() => {
                        log(&format!(
                            "data: store {} is stale: {r}; rebuilding",
                            dir.display()
                        ));
                        None
                    }
                    _ => None,
                };
                build(opts, &files, current.clone(), &dir).map_err(|e| match &damage {
                    Some(d) => DataError::Damaged {
                        damage: d.clone(),
                        detail: e.to_string(),
                        dir: dir.display().to_string(),
                    },
                    None => e,
                })?;
                let mut ds = load(&dir, &base, &current).map_err(|r| {
                    store_err(&dir, format!("cannot read the store just built: {r}"))
                })?;
                ds.built_now = true;
                if let Some(d) = damage {
                    if opts.strict {
                        return Err(DataError::Strict {
                            count: 1,
                            first: format!("{d}; it has been rebuilt from the Parquet sources"),
                        });
                    }
                    ds.repaired = Some(d);
                }
                log(&format!(
                    "data: built store {} ({} series, {} bars) from {} Parquet files in {:.1} ms",
                    dir.display(),
                    ds.series.len(),
                    ds.total_bars,
                    files.len(),
                    t0.elapsed().as_secs_f64() * 1e3
                ));
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

    /// Checks the `cols` of the series `idx` (indices into
    /// [`Dataset::series`]) against their checksums, on all cores; a column
    /// group is hashed once per process. Returns the damage found, if any.
    /// Pages read for the check are released again ([`Dataset::release`]),
    /// so memory stays bounded however many series are checked.
    pub fn verify(&self, idx: &[usize], cols: Columns) -> Result<(), Damage> {
        // A chunk at a time, every page of the mapping released after each:
        // the kernel maps neighbours' pages around each fault (see
        // [`Dataset::release_all`]), which per-series releases miss; without
        // this a 10,000 × 2,500 check peaked at 850 MB resident.
        let mut bad: Vec<usize> = Vec::new();
        for part in idx.chunks(VERIFY_CHUNK) {
            bad.extend(self.verify_part(part, cols));
            self.release_all();
        }
        if bad.is_empty() {
            return Ok(());
        }
        bad.sort_unstable();
        bad.dedup();
        Err(Damage {
            dir: self.dir.clone(),
            series: bad.iter().map(|&i| self.series[i].name.clone()).collect(),
        })
    }

    /// The series of `idx` whose `cols` fail their checksums.
    fn verify_part(&self, idx: &[usize], cols: Columns) -> Vec<usize> {
        use rayon::prelude::*;
        idx.par_iter()
            .copied()
            .filter(|&i| {
                let mut touched = false;
                let mut bad = false;
                for &g in cols.groups() {
                    let state = self.checked[i].load(Ordering::Relaxed);
                    if state & Columns::bit(g, true) != 0 {
                        bad = true;
                    } else if state & Columns::bit(g, false) == 0 {
                        let ok = group_sum(&self.batches[self.batch_of[i]], g) == self.sums[i][g];
                        self.checked[i].fetch_or(Columns::bit(g, !ok), Ordering::Relaxed);
                        bad |= !ok;
                        touched = true;
                    }
                }
                if touched {
                    self.release(i);
                }
                bad
            })
            .collect()
    }

    /// This store with the `cols` of the series `idx` verified
    /// ([`Dataset::verify`]). A
    /// damaged store is rebuilt from its Parquet sources, with one warning
    /// to `log`, and the rebuilt one returned (its series are the same, so
    /// indices stay valid); if the rebuild fails (the sources are gone or
    /// changed), the error names the store and the fix. With
    /// `opts.strict`, damage is an error even once repaired.
    pub fn verified(
        self,
        opts: &DataOptions,
        idx: &[usize],
        cols: Columns,
        log: &mut dyn FnMut(&str),
    ) -> Result<Dataset, DataError> {
        let Err(damage) = self.verify(idx, cols) else {
            return Ok(self);
        };
        log(&format!(
            "warning: data: {damage}; rebuilding it from the Parquet sources"
        ));
        let names: Vec<String> = self.series.iter().map(|s| s.name.clone()).collect();
        drop(self);
        let unrepaired = |detail: String| DataError::Damaged {
            damage: damage.to_string(),
            detail,
            dir: damage.dir.display().to_string(),
        };
        let rebuilt =
            Dataset::open_inner(opts, true, log).map_err(|e| unrepaired(e.to_string()))?;
        let same = rebuilt.series.len() == names.len()
            && rebuilt.series.iter().zip(&names).all(|(s, n)| &s.name == n);
        if !same {
            return Err(unrepaired(
                "the Parquet sources no longer hold the same series".into(),
            ));
        }
        if let Err(d) = rebuilt.verify(idx, cols) {
            return Err(unrepaired(format!("the rebuilt store fails too: {d}")));
        }
        if opts.strict {
            return Err(DataError::Strict {
                count: 1,
                first: format!("{damage}; it has been rebuilt from the Parquet sources"),
            });
        }
        Ok(rebuilt)
    }

    /// The data problems that concern the series `idx` (indices into
    /// [`Dataset::series`]): their warnings, and with `all` (the whole
    /// data was selected) the invalid series; the rest are only counted.
    pub fn problems(&self, idx: &[usize], all: bool) -> Problems<'_> {
        let chosen: std::collections::HashSet<(&str, &str)> = idx
            .iter()
            .map(|&i| {
                let s = &self.series[i];
                (s.file_stem.as_str(), s.symbol.as_str())
            })
            .collect();
        let mut p = Problems::default();
        for w in &self.warnings {
            let stem = file_stem(&w.file);
            if chosen.contains(&(stem.as_str(), w.symbol.as_str())) {
                p.warnings.push(w);
            } else {
                p.other_warnings += 1;
            }
        }
        if all {
            p.invalid = self.invalid.iter().collect();
        } else {
            p.other_invalid = self.invalid.len();
        }
        p
    }

    /// The data directory of `--data` (where the cache lives by default,
    /// see [`crate::locate`]).
    pub fn base(&self) -> &Path {
        &self.base
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
        super::select::select(&self.series, &self.invalid, symbols)
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

    /// The damage this `open` found in the store (files that do not
    /// decode, a manifest that fails its checksum) and repaired by
    /// rebuilding it, if any.
    pub fn repaired(&self) -> Option<&str> {
        self.repaired.as_deref()
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
    /// series with `release` keeps peak RSS within [`RELEASE_BYTES`] of one
    /// series instead of the whole store.
    ///
    /// The pages are dropped in bulk: once the series given up since the
    /// last drop hold [`RELEASE_BYTES`], one [`Dataset::release_all`] drops
    /// every page of the mapping. Each `madvise` makes the kernel flush
    /// the other cores' TLBs (an interrupt per core): one per series
    /// (12,000 calls in a 4,000-symbol run) cost 0.2 s of its 0.65 s of
    /// system time, about 5% of its CPU time.
    pub fn release(&self, idx: usize) {
        let (_, len) = self.byte_ranges[self.batch_of[idx]];
        let before = self.released.fetch_add(len, Ordering::Relaxed);
        if before + len >= RELEASE_BYTES {
            self.release_all();
        }
    }

    /// [`Dataset::release`] for every series at once. The kernel maps
    /// file pages around each fault (fault-around, 64 KiB by default), so
    /// reading one series also maps pieces of its neighbours, including
    /// ones already released; calling this after each chunk of series keeps
    /// the resident set at one chunk however many series a run reads.
    pub fn release_all(&self) {
        self.released.store(0, Ordering::Relaxed);
        // SAFETY: the mapping is read-only and shared (file-backed), so
        // MADV_DONTNEED only drops page-table entries; later reads fault
        // the same bytes back from the file (slices into it stay valid).
        // No data is lost or changed.
        #[cfg(unix)]
        unsafe {
            let _ = self
                .mmap
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed);
        }
    }
}
