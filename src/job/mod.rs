//! The pipelines a command runs: typed settings in, result files and a
//! typed outcome out. What the CLI (`src/cli/`, in the binary) and any
//! other front end (a Python package, a notebook, a Rust program, see
//! `examples/`) call.
//!
//! | job | settings | writes | returns |
//! |-----|----------|--------|---------|
//! | [`run::run`] | [`run::RunSettings`] | a run directory ([`manifest::RunManifest`] `run.json`, `metrics.json`, Parquet) or, with a shard, a part | [`run::RunOutcome`] |
//! | [`sweep::sweep`] | [`sweep::SweepSettings`] | a sweep directory (`sweep.json`, `results.parquet`, heatmaps, `walk_forward.json`) or a part | [`sweep::SweepOutcome`] |
//! | [`scan::scan`] | [`scan::ScanSettings`] | nothing but the signals cache | [`scan::ScanDone`]: each symbol's state at its last bar |
//! | [`merge::merge`] | [`merge::MergeSettings`] | what the single-machine command writes | [`merge::MergeOutcome`] |
//!
//! A job never prints. What a command shows while it works (progress,
//! warnings, notes) goes through [`Progress`], which the CLI implements
//! with a progress bar and stderr; [`Quiet`] drops everything. Errors are
//! [`JobError`]: each names the file, symbol or setting and the fix.
//!
//! Every guarantee of the commands holds for any caller: an output
//! directory is replaced only when atc-bt wrote all of it
//! ([`crate::files::out`]); results are written into an owner-tagged
//! temporary sibling and renamed into place when complete; the cache
//! never fails a job (a damaged or unusable cache is a warning and a
//! recompute).

pub mod identity;
pub mod manifest;
pub mod memory;
pub mod merge;
pub mod run;
pub mod scan;
pub mod shard;
pub mod sweep;

use std::path::PathBuf;
use std::time::Duration;

use crate::cache::{Cache, CacheConfig};
use crate::data::{DataOptions, Dataset, SymbolSelection};
use crate::run::RunPlan;

/// What a job reports while it works. Every method has a do-nothing
/// default; a front end overrides what it shows. Called from worker
/// threads (`tick`), hence `Sync`.
pub trait Progress: Sync {
    /// A counted stage starts: `len` units of `what` (`symbols`,
    /// `combinations`).
    fn start(&self, _what: &str, _len: u64) {}
    /// One unit of the current stage is done.
    fn tick(&self) {}
    /// The current stage is over (a progress bar is cleared).
    fn finish(&self) {}
    /// A line for the user: a warning (`warning: …`), a data note or a
    /// cache message, complete as it should be shown.
    fn message(&self, _line: &str) {}
    /// A line that says how the work was done, not what it found (the
    /// data store was opened, built or left unopened): `--quiet` leaves
    /// it out. By default a [`Progress::message`].
    fn note(&self, line: &str) {
        self.message(line);
    }
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {}

/// Errors of a job: the library error that stopped it, or a setting that
/// cannot work, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Reading or selecting the data.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The engine or the backtest of a run.
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    /// Writing result files.
    #[error(transparent)]
    Output(#[from] crate::run::output::OutputError),
    /// The output directory is not ours to replace.
    #[error(transparent)]
    Out(#[from] crate::files::out::OutError),
    /// The strategy file or values.
    #[error(transparent)]
    Strategy(#[from] crate::run::strategy::StrategyError),
    /// The parameter grid.
    #[error(transparent)]
    Grid(#[from] crate::sweep::grid::GridError),
    /// A shard specification.
    #[error(transparent)]
    Shard(#[from] crate::shard::ShardError),
    /// Writing a shard's part.
    #[error(transparent)]
    Part(#[from] crate::shard::part::PartError),
    /// Merging parts.
    #[error(transparent)]
    Merge(#[from] crate::shard::merge::MergeError),
    /// Rendering the report.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// An ATC parameter out of its range.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// An ATC parameter's name or value.
    #[error(transparent)]
    Param(#[from] crate::engine::registry::ParamError),
    /// A signals file (`--signals`).
    #[error(transparent)]
    Signals(#[from] crate::data::SignalsError),
    /// A setting that cannot work (the message names it and its range).
    #[error("{0}")]
    Invalid(String),
    /// A failure with what was being done when it happened.
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl JobError {
    /// Wraps `source` with what was being done.
    pub fn context(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> JobError {
        JobError::Context {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// The result of a job.
pub type Result<T, E = JobError> = std::result::Result<T, E>;

/// Where the data is, how strictly to read it, and which series and dates
/// a job uses.
#[derive(Debug, Clone)]
pub struct DataSettings {
    /// Parquet input: a file, a directory or a glob (as `--data`).
    pub data: PathBuf,
    /// Store directory (default: see [`crate::locate`]).
    pub store: Option<PathBuf>,
    /// Data warnings and invalid series are errors.
    pub strict: bool,
    /// The symbols.
    pub selection: SymbolSelection,
    /// First traded bar, µs UTC.
    pub from: Option<i64>,
    /// Last traded bar (inclusive), µs UTC.
    pub to: Option<i64>,
    /// History before `from` the engine sees, in bars (default: all).
    pub warmup_bars: Option<usize>,
}

impl Default for DataSettings {
    /// `data/`, every symbol, the whole history.
    fn default() -> Self {
        DataSettings {
            data: PathBuf::from("data"),
            store: None,
            strict: false,
            selection: SymbolSelection::All,
            from: None,
            to: None,
            warmup_bars: None,
        }
    }
}

impl DataSettings {
    /// Sets the selection and window from their text, as the `--symbols`,
    /// `--from` and `--to` flags take them: `symbols` is `all`, a comma
    /// list or `@file.txt` ([`SymbolSelection::parse`]); `from` / `to` are
    /// `2020`, `2020-03`, `2020-03-15` or RFC 3339, UTC, `to` inclusive (a
    /// year means its end; [`crate::data::parse_date_bound`]).
    ///
    /// Errors: a file list that cannot be read, an empty list or a date
    /// that does not parse ([`crate::data::DataError`], naming the text).
    pub fn select(
        mut self,
        symbols: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> std::result::Result<Self, crate::data::DataError> {
        self.selection = SymbolSelection::parse(symbols)?;
        self.from = from
            .map(|s| crate::data::parse_date_bound(s, false))
            .transpose()?;
        self.to = to
            .map(|s| crate::data::parse_date_bound(s, true))
            .transpose()?;
        Ok(self)
    }

    /// The data layer's options (`progress`: show the ingest's bar).
    pub fn options(&self, progress: bool) -> DataOptions {
        DataOptions {
            data: self.data.clone(),
            store: self.store.clone(),
            strict: self.strict,
            progress,
        }
    }
}

/// The result cache's settings (as the `--cache-*` flags).
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Cache directory (default: see [`crate::locate::cache_dir`]).
    pub dir: Option<PathBuf>,
    /// Memory for the in-process cache (L1), bytes.
    pub mem_bytes: u64,
    /// Disk budget of the on-disk cache (L2), bytes.
    pub disk_bytes: u64,
    /// Entries older than this are never used.
    pub ttl: Duration,
    /// `false`: compute everything, read and write no cache.
    pub enabled: bool,
}

impl Default for CacheSettings {
    /// 256 MiB in memory, 2 GiB on disk, 30 days, enabled.
    fn default() -> Self {
        CacheSettings {
            dir: None,
            mem_bytes: 256 << 20,
            disk_bytes: 2 << 30,
            ttl: Duration::from_secs(30 * 86_400),
            enabled: true,
        }
    }
}

impl CacheSettings {
    /// The cache configuration for data whose data directory is `base`
    /// (see [`crate::locate`]). Nothing is created.
    pub fn config(&self, base: &std::path::Path) -> CacheConfig {
        CacheConfig {
            dir: crate::locate::cache_dir(base, self.dir.as_deref()),
            mem_bytes: self.mem_bytes,
            disk_bytes: self.disk_bytes,
            ttl: self.ttl,
            enabled: self.enabled,
        }
    }
}

/// Shows the cache's warnings not shown yet (one line each).
pub fn cache_warnings(cache: &Cache, progress: &dyn Progress) {
    for w in cache.take_warnings() {
        progress.message(&w);
    }
}

/// A worker pool of `threads` (0: all cores).
pub(crate) fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| JobError::context("cannot start worker threads", e))
}

/// The data problems of the selected series `idx` as lines for the user:
/// at most three warnings in full, a count of the others with the command
/// that lists them all, each invalid series the selection (`all`) would
/// have held, and one count for the problems of series not selected.
pub fn data_notes(data: &Dataset, idx: &[usize], all: bool) -> Vec<String> {
    let p = data.problems(idx, all);
    let mut lines: Vec<String> = p
        .warnings
        .iter()
        .take(3)
        .map(|x| format!("warning: {x}"))
        .collect();
    if p.warnings.len() > 3 {
        lines.push(format!(
            "warning: {} more data warnings for the selected series; `atc-bt data info --all-warnings` lists them",
            p.warnings.len() - 3
        ));
    }
    for bad in &p.invalid {
        lines.push(format!("warning: skipped {bad}"));
    }
    if p.other_warnings + p.other_invalid > 0 {
        lines.push(format!(
            "data: {} warning(s) and {} invalid series concern series not selected or without bars in the window; `atc-bt data info` lists them",
            p.other_warnings, p.other_invalid
        ));
    }
    lines
}

/// Opens the data, resolves the selection (an unknown or left-out name is
/// an error before anything else is shown), checks the selected series'
/// bytes against the store's checksums (a damaged store is rebuilt, with
/// one warning) and shows the selection's data notes. Returns the data,
/// the plan (its end pinned to the selection's last bar,
/// [`RunPlan::pinned`]) and the notes. `high_low`: the job reads the
/// bars' high and low too (stops), so their checksums are checked as well.
pub fn open_selection(
    settings: &DataSettings,
    show_ingest: bool,
    high_low: bool,
    progress: &dyn Progress,
) -> Result<(Dataset, RunPlan, Vec<String>)> {
    let opts = settings.options(show_ingest);
    let mut log = |line: &str| {
        if line.starts_with("warning") {
            progress.message(line)
        } else {
            progress.note(line)
        }
    };
    let dataset = Dataset::open(&opts, &mut log)?;
    let plan = RunPlan {
        series: dataset.select(&settings.selection)?,
        from: settings.from,
        to: settings.to,
        warmup_bars: settings.warmup_bars,
    }
    .pinned(&dataset);
    let columns = match high_low {
        true => crate::data::store::Columns::All,
        false => crate::data::store::Columns::Traded,
    };
    let dataset = dataset.verified(&opts, &plan.series, columns, &mut log)?;
    let all = settings.selection == SymbolSelection::All;
    // Warnings of the series the run trades: a selected series with no bar
    // in the window is skipped (said once below), its warnings only counted.
    let traded: Vec<usize> = plan
        .series
        .iter()
        .copied()
        .filter(|&i| {
            let s = &dataset.series()[i];
            s.bars > 0
                && plan.from.is_none_or(|f| s.last_ts >= f)
                && plan.to.is_none_or(|t| s.first_ts <= t)
        })
        .collect();
    let notes = data_notes(&dataset, &traded, all);
    for n in &notes {
        progress.message(n);
    }
    Ok((dataset, plan, notes))
}

/// Shows the skipped symbols of a result ([`crate::run::skipped_lines`]).
pub(crate) fn show_skipped(skipped: &[crate::run::Skipped], progress: &dyn Progress) {
    for line in crate::run::skipped_lines(skipped) {
        progress.message(&line);
    }
}

/// The command line of this process (recorded in manifests).
pub(crate) fn command_line() -> Vec<String> {
    std::env::args().collect()
}

/// Now, as manifests record it (`2024-05-01T12:00:00Z`).
pub(crate) fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
