//! `atc-bt data info | ingest | synth`, and the data flags other commands
//! flatten in (`DataSourceArgs`, `SelectionArgs`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use atc_bt::data::store::Columns;
use atc_bt::data::{fmt_ts, synth, DataOptions, Dataset, INPUT_HELP};

/// What problems do: the policy, for `--help`.
pub const POLICY_HELP: &str = "Bad data: a file that is not Parquet, truncated, empty, lacks a \
column, has a non-numeric price column or a null symbol fails the command. A series with an \
empty symbol, a null/NaN/inf/<=0 price, a price outside [1e-150, 1e150] (beyond it arithmetic on \
prices can overflow), a null timestamp, high < low, or two rows with the same timestamp and \
different values is invalid: it is reported (file, symbol, row, timestamp, problem) and left out; \
`data info`/`data ingest` then exit with status 1, `run` skips it. Warnings (bar kept or \
dropped): open/close outside [low, high] (kept), an exact duplicate row (dropped), negative \
volume (set to null). Unsorted rows are sorted. --strict makes every warning and invalid series \
an error. A symbol found in several files is named <file stem>:<symbol>.";

/// `atc-bt data`: inspect, ingest and generate market data.
#[derive(Debug, Args)]
#[command(after_long_help = format!("{INPUT_HELP}\n\n{POLICY_HELP}"))]
pub struct DataArgs {
    /// The data subcommand.
    #[command(subcommand)]
    pub command: DataCommand,
}

/// Subcommands of `atc-bt data`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// List every series: bars, first and last timestamp, interval, source
    /// file; then warnings and invalid series. Builds the store if needed
    #[command(after_long_help = format!("{INPUT_HELP}\n\n{POLICY_HELP}"))]
    Info(InfoArgs),
    /// Build (or rebuild if stale or damaged) the memory-mapped store, with a
    /// progress bar
    #[command(after_long_help = format!("{INPUT_HELP}\n\n{POLICY_HELP}"))]
    Ingest(IngestArgs),
    /// Check every series of the store against the checksums written at
    /// ingest; a damaged store is rebuilt from its Parquet sources
    Verify(IngestArgs),
    /// Remove the temporaries of killed ingests and the stores that could
    /// only be rebuilt (a source file gone or changed, another format) from
    /// the directory holding the stores of --data
    Gc(GcArgs),
    /// Write a seeded synthetic OHLCV Parquet file (for benchmarks)
    Synth(SynthArgs),
}

/// Where the data is and how strictly to read it (shared by `data` and `run`).
#[derive(Debug, Clone, Args)]
pub struct DataSourceArgs {
    /// Parquet input: a file, a directory (every *.parquet in it) or a glob
    /// ('data/*.parquet'). Long OHLCV format; see the notes below for the
    /// accepted column names and timestamp types
    #[arg(long, value_name = "PATH", default_value = "data")]
    pub data: PathBuf,
    /// Store directory (default: <data dir>/.atc-store/<key>, or
    /// ~/.cache/atc-bt/store/<key> when the data directory is read-only)
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Treat data warnings and invalid series as errors
    #[arg(long)]
    pub strict: bool,
}

impl DataSourceArgs {
    /// The library options for these flags.
    pub fn options(&self, progress: bool) -> DataOptions {
        DataOptions {
            data: self.data.clone(),
            store: self.store.clone(),
            strict: self.strict,
            progress,
        }
    }
}

/// Which series and dates (for `run`).
#[derive(Debug, Clone, Args)]
pub struct SelectionArgs {
    /// `all`, a comma list (`AAPL,MSFT`), or `@file.txt` with one name per
    /// line. A symbol in several files must be named `<file stem>:<symbol>`
    #[arg(long, value_name = "LIST", default_value = "all")]
    pub symbols: String,
    /// First traded bar: 2020, 2020-03, 2020-03-15 or RFC 3339 (UTC). The
    /// engine still sees earlier history for warm-up
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last traded bar, inclusive: 2020 means the end of 2020
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Limit the history before --from that the engine sees to N bars
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub warmup_bars: Option<usize>,
}

/// Arguments of `data info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub source: DataSourceArgs,
    /// Print JSON (series, sources, warnings, invalid) instead of a table
    #[arg(long)]
    pub json: bool,
    /// Print every warning, not just the first 10
    #[arg(long)]
    pub all_warnings: bool,
}

/// Arguments of `data ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub source: DataSourceArgs,
    /// No progress bar
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `data gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// The data whose store directory to clean (its `.atc-store/`, or the
    /// per-user store directory when the data directory is read-only)
    #[arg(long, value_name = "PATH", default_value = "data")]
    pub data: PathBuf,
    /// A store directory given to other commands as --store: its parent is
    /// cleaned
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

/// Arguments of `data synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Number of symbols
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub symbols: usize,
    /// Bars per symbol (business days from 2000-01-03)
    #[arg(long, value_name = "M", allow_negative_numbers = true)]
    pub bars: usize,
    /// Random seed; the same seed gives the same file
    #[arg(long, default_value_t = 42, allow_negative_numbers = true)]
    pub seed: u64,
    /// Output Parquet file. An existing file is overwritten only if `data
    /// synth` wrote it
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Overwrite --out even if atc-bt did not write it
    #[arg(long)]
    pub force: bool,
}

/// Runs `atc-bt data …`.
pub fn run(args: &DataArgs) -> Result<()> {
    match &args.command {
        DataCommand::Info(a) => info(a),
        DataCommand::Ingest(a) => ingest(a),
        DataCommand::Verify(a) => verify(a),
        DataCommand::Gc(a) => gc(a),
        DataCommand::Synth(a) => {
            let t0 = std::time::Instant::now();
            atc_bt::files::out::check_file(
                &a.out,
                a.force,
                Some(&atc_bt::data::synth::is_synth_file),
            )?;
            synth(a.symbols, a.bars, a.seed, &a.out)?;
            errln!(
                "data: wrote {} ({} symbols × {} bars, seed {}) in {:.1} s",
                a.out.display(),
                a.symbols,
                a.bars,
                a.seed,
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

/// Human form of an interval in µs.
pub fn fmt_interval(us: i64) -> String {
    const S: i64 = 1_000_000;
    match us {
        0 => "-".into(),
        u if u % (86_400 * S) == 0 => format!("{}d", u / (86_400 * S)),
        u if u % (3_600 * S) == 0 => format!("{}h", u / (3_600 * S)),
        u if u % (60 * S) == 0 => format!("{}m", u / (60 * S)),
        u if u % S == 0 => format!("{}s", u / S),
        u => format!("{u}µs"),
    }
}

fn report_problems(ds: &Dataset, all: bool) -> Result<()> {
    let w = ds.warnings();
    if !w.is_empty() {
        let shown = if all { w.len() } else { w.len().min(10) };
        errln!("data: {} warning(s):", w.len());
        for x in &w[..shown] {
            errln!("warning: {x}");
        }
        if shown < w.len() {
            errln!(
                "  … {} more (see --all-warnings; --strict makes them errors)",
                w.len() - shown
            );
        }
    }
    for x in ds.invalid() {
        errln!("error: {x}");
    }
    if !ds.invalid().is_empty() {
        bail!(
            "{} series invalid and left out of the store {} (see above)",
            ds.invalid().len(),
            ds.dir().display()
        );
    }
    Ok(())
}

/// Opens the store of `source` with every series checked against its
/// checksum (a damaged store is rebuilt, with a warning).
fn open_all(source: &DataSourceArgs, progress: bool) -> Result<Dataset> {
    let opts = source.options(progress);
    let ds = Dataset::open(&opts, &mut |l| errln!("{l}"))?;
    let all: Vec<usize> = (0..ds.series().len()).collect();
    Ok(ds.verified(&opts, &all, Columns::All, &mut |l| errln!("{l}"))?)
}

fn info(a: &InfoArgs) -> Result<()> {
    let ds = open_all(&a.source, false)?;
    if a.json {
        let v = serde_json::json!({
            "store": ds.dir().display().to_string(),
            "series": ds.series(),
            "sources": ds.sources(),
            "warnings": ds.warnings(),
            "invalid": ds.invalid(),
        });
        // One write: a closed pipe drops the rest (see `atc_bt::term`).
        outln!(
            "{}",
            atc_bt::term::json_safe(&serde_json::to_string_pretty(&v)?)
        );
    } else {
        use atc_bt::term::quote;
        let w = ds
            .series()
            .iter()
            .map(|s| quote(&s.name).chars().count())
            .chain(ds.invalid().iter().map(|s| quote(&s.name).chars().count()))
            .max()
            .unwrap_or(4)
            .max(4);
        outln!(
            "{:<w$}  {:>8}  {:<20}  {:<20}  {:>8}  {:<16}  file",
            "name",
            "bars",
            "first",
            "last",
            "interval",
            "zone"
        );
        for s in ds.series() {
            if atc_bt::term::stdout_closed() {
                break;
            }
            outln!(
                "{:<w$}  {:>8}  {:<20}  {:<20}  {:>8}  {:<16}  {}",
                quote(&s.name),
                s.bars,
                fmt_ts(s.first_ts),
                fmt_ts(s.last_ts),
                fmt_interval(s.interval_us),
                // The zone weekdays and calendar years are judged in.
                s.tz.as_deref().unwrap_or("UTC (none)"),
                quote(&s.file_stem)
            );
        }
        for b in ds.invalid() {
            outln!(
                "{:<w$}  left out: row {} ({}): {}",
                quote(&b.name),
                b.row,
                fmt_ts(b.ts),
                atc_bt::term::escape(&b.problem)
            );
        }
        outln!(
            "{} series, {} bars, {} source file(s), store {}{}",
            ds.series().len(),
            ds.total_bars(),
            ds.sources().len(),
            ds.dir().display(),
            if ds.invalid().is_empty() {
                String::new()
            } else {
                format!("; {} series left out", ds.invalid().len())
            }
        );
    }
    report_problems(&ds, a.all_warnings)
}

fn ingest(a: &IngestArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    let ds = open_all(&a.source, !a.quiet)?;
    let secs = t0.elapsed().as_secs_f64();
    if ds.built_now() {
        errln!(
            "data: ingested {} bars in {:.2} s ({:.0} bars/s)",
            ds.total_bars(),
            secs,
            ds.total_bars() as f64 / secs.max(1e-9)
        );
    } else {
        errln!("data: store is up to date and intact; nothing to do (touch or change a source to rebuild)");
    }
    report_problems(&ds, false)
}

fn verify(a: &IngestArgs) -> Result<()> {
    let opts = a.source.options(!a.quiet);
    let ds = Dataset::open(&opts, &mut |l| errln!("{l}"))?;
    let all: Vec<usize> = (0..ds.series().len()).collect();
    let found = ds.verify(&all, Columns::All);
    let n = ds.series().len();
    if let (Some(damage), Ok(())) = (ds.repaired(), &found) {
        outln!("{damage}");
        outln!(
            "{}: rebuilt from the Parquet sources; {n} series, every checksum matches",
            ds.dir().display()
        );
        return Ok(());
    }
    match found {
        Ok(()) => {
            outln!(
                "{}: {n} series, {} bars: every checksum matches",
                ds.dir().display(),
                ds.total_bars()
            );
            Ok(())
        }
        Err(damage) => {
            outln!("{damage}");
            let ds = ds.verified(&opts, &all, Columns::All, &mut |l| errln!("{l}"))?;
            outln!(
                "{}: rebuilt from the Parquet sources; {} series, every checksum matches",
                ds.dir().display(),
                ds.series().len()
            );
            Ok(())
        }
    }
}

fn gc(a: &GcArgs) -> Result<()> {
    let r = atc_bt::data::store::gc(&DataOptions {
        data: a.data.clone(),
        store: a.store.clone(),
        strict: false,
        progress: false,
    })?;
    for p in &r.temporaries {
        outln!("removed stale temporary {}", p.display());
    }
    for p in &r.outdated {
        outln!("removed outdated store {}", p.display());
    }
    outln!(
        "{}: removed {} stale temporaries and {} outdated stores ({:.1} MiB)",
        r.area.display(),
        r.temporaries.len(),
        r.outdated.len(),
        r.bytes as f64 / 1048576.0
    );
    Ok(())
}
