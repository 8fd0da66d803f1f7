//! Reports: `report.html` and PNG charts rendered from a saved run or sweep
//! directory, without recomputing anything.
//!
//! * [`load`] reads the directory (only the files in it).
//! * [`charts`] draws with plotters (SVG for the page, PNG files).
//! * [`downsample`] keeps charts readable and small for any run size.
//! * [`html`] is the page template and escaping.
//! * `run_page` and `sweep_page` draw the two pages; `page` holds what they
//!   share.
//! * [`memory`] is the timeline read from `memory.parquet` (the sampler that
//!   writes it is [`crate::job::memory`]).
//!
//! Layout written into the directory:
//!
//! ```text
//! report.html                 the index page (inline SVG, offline)
//! report_files/               per-symbol charts (SVG for the page, PNG)
//!   equity.png returns.png coverage.png memory.png best_equity.png
//!   walk_forward_equity.png heatmap-<sample>-NN.png  (with --format png|both)
//!   sym-0001-AAPL.svg sym-0001-AAPL.png ...
//!   files.json                the names of the files this render wrote
//! ```
//!
//! A report carries no clock, no random id and iterates in sorted order:
//! rendering the same directory twice gives the same bytes. A render
//! removes the files the previous one listed, so no stale chart survives;
//! anything else in `report_files/` is the user's, and a render refuses to
//! run beside it (see [`crate::files::out`]).

pub mod charts;
pub mod downsample;
pub mod html;
pub mod load;
pub mod memory;
mod page;
mod run_page;
mod sweep_page;

use std::path::{Path, PathBuf};

pub use memory::{MemorySample, MemoryTimeline};
pub use page::{draw_memory_section, MemorySection};
pub use run_page::{
    choose_symbols, finish_run_report, finish_run_report_from_dir, period_returns,
    render_run_report, render_run_report_parts, RunReportParts, RUN_REPORT_LAYOUT,
};
pub use sweep_page::render_sweep_report;

/// Errors rendering a report. Each names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A JSON file is malformed.
    #[error("{}: invalid JSON: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A Parquet file could not be read or written.
    #[error("{}: {message}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Something the report needs is missing from a file.
    #[error("{}: missing {what}; was this directory written by `atc-bt run` or `atc-bt sweep`?", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: String,
    },
    /// The directory was written by an incompatible version.
    #[error(
        "{}: format_version {found} (written by atc-bt {written_by}) is not supported; this atc-bt {} reads format_version {} to {}. \
         Render it with the atc-bt version that wrote it, or rerun the backtest",
        path.display(), env!("CARGO_PKG_VERSION"), load::OLDEST_FORMAT_VERSION, load::SUPPORTED_FORMAT_VERSION
    )]
    Version {
        /// `run.json` or `sweep.json`.
        path: PathBuf,
        /// The version found.
        found: String,
        /// `atc_bt_version` in the file.
        written_by: String,
    },
    /// `report_files/` holds entries no report wrote.
    #[error("{}: refusing to redraw the report: report_files/ holds {} atc-bt did not write ({})\n  hint: move them out of report_files/ and run again", path.display(), if entries.len() == 1 { "1 entry".to_string() } else { format!("{} entries", entries.len()) }, entries.iter().take(8).map(|e| crate::term::quote(e).into_owned()).collect::<Vec<_>>().join(", "))]
    ForeignFiles {
        /// The result directory.
        path: PathBuf,
        /// The foreign entries, as `report_files/<name>`.
        entries: Vec<String>,
    },
    /// The directory holds neither `run.json` nor `sweep.json`.
    #[error("{}: not a run or sweep directory (no run.json or sweep.json); pass the directory `atc-bt run --out` or `atc-bt sweep --out` wrote", path.display())]
    NotAResultDir {
        /// The directory.
        path: PathBuf,
    },
    /// A chart could not be drawn.
    #[error("{}: cannot draw chart: {message}", path.display())]
    Chart {
        /// The output file.
        path: PathBuf,
        /// The plotting error.
        message: String,
    },
}

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `report.html` (charts inline as SVG, per-symbol charts as SVG files).
    Html,
    /// PNG files only.
    Png,
    /// Both.
    Both,
}

impl Format {
    fn html(self) -> bool {
        matches!(self, Format::Html | Format::Both)
    }
    fn png(self) -> bool {
        matches!(self, Format::Png | Format::Both)
    }
}

/// Which symbols get their own chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolsInReport {
    /// The best N and the worst N by total return.
    Top(usize),
    /// Every symbol.
    All,
}

/// The y scale of equity curves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScaleChoice {
    /// Log when the curves stay positive and their largest value is more
    /// than [`AUTO_LOG_RATIO`] times their smallest (a long exponential
    /// curve is flat for years on a linear scale); else linear.
    #[default]
    Auto,
    /// Always log (linear, with a note, when a value is not positive).
    Log,
    /// Always linear.
    Linear,
}

/// The max/min ratio of an equity chart above which [`ScaleChoice::Auto`]
/// draws it on a log scale: about an order of magnitude.
pub const AUTO_LOG_RATIO: f64 = 10.0;

impl ScaleChoice {
    /// Whether curves with these values are drawn on a log scale.
    pub fn resolve<'a>(self, values: impl IntoIterator<Item = &'a f64>) -> bool {
        match self {
            ScaleChoice::Log => true,
            ScaleChoice::Linear => false,
            ScaleChoice::Auto => {
                let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
                for &v in values.into_iter().filter(|v| v.is_finite()) {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
                lo > 0.0 && hi / lo > AUTO_LOG_RATIO
            }
        }
    }
}

/// Report options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    /// HTML, PNG or both.
    pub format: Format,
    /// Symbols with their own chart.
    pub symbols_in_report: SymbolsInReport,
    /// Linear or log equity curves (default: chosen from the curves).
    pub scale: ScaleChoice,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            format: Format::Both,
            symbols_in_report: SymbolsInReport::Top(5),
            scale: ScaleChoice::Auto,
        }
    }
}

/// What a render wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportSummary {
    /// Every file written, sorted.
    pub files: Vec<PathBuf>,
    /// `report.html`, when written.
    pub html: Option<PathBuf>,
    /// Size of `report.html` in bytes (0 without HTML).
    pub html_bytes: u64,
    /// Total bytes written.
    pub total_bytes: u64,
}

/// Directory of the per-chart files, inside the run or sweep directory.
pub const FILES_DIR: &str = "report_files";

/// Renders the report of `dir`, a run or a sweep directory.
pub fn render_report(dir: &Path, opts: &ReportOptions) -> Result<ReportSummary, ReportError> {
    // `report_files/` is recreated only inside a directory atc-bt wrote.
    if !crate::files::out::is_result_dir(dir) {
        return Err(ReportError::NotAResultDir {
            path: dir.to_path_buf(),
        });
    }
    if dir.join("run.json").exists() {
        render_run_report(dir, opts)
    } else if dir.join("sweep.json").exists() {
        render_sweep_report(dir, opts)
    } else {
        Err(ReportError::NotAResultDir {
            path: dir.to_path_buf(),
        })
    }
}
