//! Reports: `report.html` and PNG charts rendered from a saved run or sweep
//! directory, without recomputing anything.
//!
//! * [`load`] reads the directory (only the files in it).
//! * [`charts`] draws with plotters (SVG for the page, PNG files).
//! * [`downsample`] keeps charts readable and small for any run size.
//! * [`html`] is the page template and escaping.
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use charts::{CellFormat, Chart, EquityChart, GridChart, Line, MemoryChart, SymbolChart};
use html::{escape, figure, section};
use load::{Curve, RunData, Series, SweepData};
pub use memory::{MemorySample, MemoryTimeline};

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

struct Writer {
    dir: PathBuf,
    files: Vec<PathBuf>,
    total: u64,
}

impl Writer {
    /// Removes the files the previous render listed; refuses to draw
    /// beside anything else in `report_files/`.
    fn new(dir: &Path) -> Result<Writer, ReportError> {
        let files_dir = dir.join(FILES_DIR);
        let foreign =
            crate::files::out::foreign_report_files(dir).map_err(|e| ReportError::Io {
                path: files_dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        if !foreign.is_empty() {
            return Err(ReportError::ForeignFiles {
                path: dir.to_path_buf(),
                entries: foreign,
            });
        }
        let listed = crate::files::out::report_listing(dir);
        for name in listed
            .iter()
            .map(String::as_str)
            .chain([crate::files::out::REPORT_LISTING])
        {
            let path = files_dir.join(name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(ReportError::Io { path, source: e });
                }
                _ => {}
            }
        }
        std::fs::create_dir_all(&files_dir).map_err(|source| ReportError::Io {
            path: files_dir.clone(),
            source,
        })?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            total: 0,
        })
    }

    /// Writes `bytes` at `rel` (relative to the directory).
    fn write(&mut self, rel: &str, bytes: &[u8]) -> Result<(), ReportError> {
        let path = self.dir.join(rel);
        // Replace, never rewrite in place: a chart may be a hard link into
        // the run cache (a restored report).
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, bytes).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        self.total += bytes.len() as u64;
        self.files.push(path);
        Ok(())
    }

    fn svg(&self, rel: &str, c: &impl Chart) -> Result<String, ReportError> {
        charts::to_svg(c).map_err(|message| ReportError::Chart {
            path: self.dir.join(rel),
            message,
        })
    }

    fn png(&mut self, rel: &str, c: &impl Chart) -> Result<(), ReportError> {
        let bytes = charts::to_png(c).map_err(|message| ReportError::Chart {
            path: self.dir.join(rel),
            message,
        })?;
        self.write(rel, &bytes)
    }

    fn finish(mut self, html: Option<&str>) -> Result<ReportSummary, ReportError> {
        let mut summary = ReportSummary::default();
        if let Some(h) = html {
            self.write("report.html", h.as_bytes())?;
            summary.html = Some(self.dir.join("report.html"));
            summary.html_bytes = h.len() as u64;
        }
        self.files.sort();
        // The listing that makes these files atc-bt's (and only these).
        let files_dir = self.dir.join(FILES_DIR);
        let names: Vec<String> = self
            .files
            .iter()
            .filter(|p| p.parent() == Some(files_dir.as_path()))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if files_dir.is_dir() {
            let listing = files_dir.join(crate::files::out::REPORT_LISTING);
            let mut json = serde_json::to_vec_pretty(&serde_json::json!({ "files": names }))
                .unwrap_or_default();
            json.push(b'\n');
            std::fs::write(&listing, json).map_err(|source| ReportError::Io {
                path: listing,
                source,
            })?;
        }
        summary.files = self.files;
        summary.total_bytes = self.total;
        Ok(summary)
    }
}

/// The file name (without extension) of a symbol's chart: unique and safe
/// whatever the symbol. `sym-<NNNN>-<safe>-<hash>`: the symbol's index in
/// the run (unique in the run), at most 32 of its characters with anything
/// but ASCII letters, digits, `-` and `_` replaced by `_` (readable, and
/// safe on every file system: no separators, dots, control characters or
/// reserved names), and the first 8 hex digits of the blake3 of its exact
/// bytes, so names that differ only in replaced characters, in letter case
/// (case-insensitive file systems) or beyond 32 characters still differ.
fn symbol_file_stem(index: usize, symbol: &str) -> String {
    let safe: String = symbol
        .chars()
        .take(32)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = blake3::hash(symbol.as_bytes()).to_hex();
    format!("sym-{:04}-{safe}-{}", index + 1, &hash.as_str()[..8])
}

fn metric_f64(m: &BTreeMap<String, Value>, name: &str) -> Option<f64> {
    m.get(name)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite())
}

/// Symbols chosen for their own chart: the best and worst N by total
/// return (ties and missing values ordered by name), in ranking order.
pub fn choose_symbols(
    metrics: &BTreeMap<String, BTreeMap<String, Value>>,
    which: SymbolsInReport,
) -> Vec<String> {
    let mut ranked: Vec<(&String, Option<f64>)> = metrics
        .iter()
        .map(|(s, m)| (s, metric_f64(m, "total_return")))
        .collect();
    ranked.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) => y.total_cmp(&x).then(a.0.cmp(b.0)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.0.cmp(b.0),
    });
    let n = match which {
        SymbolsInReport::All => ranked.len(),
        SymbolsInReport::Top(n) => n,
    };
    if 2 * n >= ranked.len() {
        return ranked.into_iter().map(|r| r.0.clone()).collect();
    }
    ranked[..n]
        .iter()
        .chain(&ranked[ranked.len() - n..])
        .map(|r| r.0.clone())
        .collect()
}

/// Metric names in the facts table's reading order, then any others
/// (from another build) alphabetically; the tables (per year, drawdowns)
/// are left out: they have their own sections.
fn ordered_metrics<'a>(keys: impl Iterator<Item = &'a String>) -> Vec<String> {
    use crate::backtest::facts::Kind;
    let set: BTreeSet<&String> = keys.collect();
    let mut out: Vec<String> = crate::backtest::METRICS
        .iter()
        .filter(|f| f.kind != Kind::Table && set.iter().any(|s| s.as_str() == f.key))
        .map(|f| f.key.to_string())
        .collect();
    for k in set {
        let table = crate::backtest::metric_fact(k).is_some_and(|f| f.kind == Kind::Table);
        if !out.contains(k) && !table {
            out.push(k.clone());
        }
    }
    out
}

/// The report's label of a metric (the facts table's, else the key).
fn metric_label(key: &str) -> String {
    crate::backtest::metric_fact(key).map_or_else(|| key.replace('_', " "), |f| f.label.into())
}

/// Yearly returns `year → return` of `metrics.json`'s `yearly_returns`
/// (empty for a metrics map without them).
fn yearly_of(m: &BTreeMap<String, Value>) -> BTreeMap<String, Option<f64>> {
    m.get("yearly_returns")
        .and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_f64())).collect())
        .unwrap_or_default()
}

/// `#yearly`: the return of each calendar year, portfolio beside buy &
/// hold and the difference, from `metrics.json`.
fn yearly_section(pm: &BTreeMap<String, Value>, bm: &BTreeMap<String, Value>) -> String {
    let (py, by) = (yearly_of(pm), yearly_of(bm));
    if py.is_empty() {
        return section(
            "yearly",
            "Returns per year",
            "<p class=\"caption\">metrics.json has no yearly_returns.</p>\n",
        );
    }
    let cell = |v: Option<f64>| {
        html::metric_cell("total_return", v.map(|x| serde_json::json!(x)).as_ref())
    };
    let mut t = String::from(
        "<div class=\"hscroll\"><table id=\"yearly-table\" class=\"sortable\"><thead><tr><th>year</th><th>portfolio</th><th>buy &amp; hold</th><th>difference</th></tr></thead><tbody>\n",
    );
    for (y, v) in &py {
        let b = by.get(y).copied().flatten();
        let diff = match (*v, b) {
            (Some(p), Some(b)) => Some(p - b),
            _ => None,
        };
        let _ = writeln!(
            t,
            "<tr data-year=\"{0}\"><td data-v=\"{0}\">{0}</td>{1}{2}{3}</tr>",
            escape(y),
            cell(*v),
            cell(b),
            cell(diff)
        );
    }
    t.push_str("</tbody></table></div>\n<p class=\"caption\">Compounded return of each calendar year (in the data's time zone), portfolio and buy &amp; hold, and the portfolio's lead in percentage points. A first or last year may be partial.</p>\n");
    section("yearly", "Returns per year", &t)
}

/// `#drawdowns`: the five deepest drawdowns of the portfolio from
/// `metrics.json` (start at the peak, valley, recovery, depth, length).
fn drawdowns_section(pm: &BTreeMap<String, Value>) -> String {
    let dds = pm
        .get("worst_drawdowns")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if dds.is_empty() {
        return section(
            "drawdowns",
            "Deepest drawdowns",
            "<p class=\"caption\">The portfolio never fell below a previous peak.</p>\n",
        );
    }
    let mut t = String::from("<div class=\"hscroll\"><table id=\"drawdowns-table\"><thead><tr><th>#</th><th>start (peak)</th><th>valley</th><th>recovery</th><th>depth</th><th>length</th><th>length (days)</th></tr></thead><tbody>\n");
    for (k, d) in dds.iter().enumerate() {
        let time = |key: &str| match d.get(key).and_then(Value::as_str) {
            Some(s) => format!(
                "<td data-v=\"{}\">{}</td>",
                escape(s),
                escape(&html::fmt_time(s))
            ),
            None => "<td class=\"na\" data-v=\"\">not yet</td>".to_string(),
        };
        let _ = writeln!(
            t,
            "<tr><td>{}</td>{}{}{}{}{}{}</tr>",
            k + 1,
            time("start"),
            time("valley"),
            time("recovery"),
            html::metric_cell("max_drawdown", d.get("depth")),
            html::metric_cell("max_drawdown_duration", d.get("bars")),
            html::metric_cell("max_drawdown_duration_days", d.get("days")),
        );
    }
    t.push_str("</tbody></table></div>\n<p class=\"caption\">The deepest falls of the portfolio below a previous peak: from the peak bar through the lowest bar to the first bar back at the peak (\u{201c}not yet\u{201d}: still below it at the end). Length counts the bars below the peak.</p>\n");
    section("drawdowns", "Deepest drawdowns", &t)
}

/// A timestamp (µs, UTC) for a table: the date at midnight, else date and
/// time.
fn fmt_us(t: i64) -> String {
    chrono::DateTime::from_timestamp_micros(t).map_or_else(String::new, |d| {
        html::fmt_time(&d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    })
}

/// Parses an RFC 3339 time of `metrics.json` to µs.
fn parse_time(v: Option<&Value>) -> Option<i64> {
    let s = v?.as_str()?;
    // `data::fmt_ts` writes a day's start as a bare date.
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_micros())
        .ok()
        .or_else(|| {
            let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
            Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
        })
}

/// `#coverage`: which symbols had data when (their first and last bars in
/// `metrics.json`), how many had data at each bar of the portfolio, and
/// what share of the starting capital that was.
fn coverage_section(
    w: &mut Writer,
    data: &RunData,
    opts: &ReportOptions,
) -> Result<String, ReportError> {
    let mut spans: Vec<(String, i64, i64)> = data
        .symbol_metrics
        .iter()
        .filter_map(|(s, m)| {
            Some((
                s.clone(),
                parse_time(m.get("start"))?,
                parse_time(m.get("end"))?,
            ))
        })
        .collect();
    let n = data.symbol_metrics.len();
    if spans.is_empty() || data.portfolio.equity.ts.is_empty() {
        return Ok(section(
            "coverage",
            "Coverage",
            "<p class=\"caption\">metrics.json has no first and last bar per symbol.</p>\n",
        ));
    }
    spans.sort_by(|a, b| a.1.cmp(&b.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
    let mut starts: Vec<i64> = spans.iter().map(|s| s.1).collect();
    let mut ends: Vec<i64> = spans.iter().map(|s| s.2).collect();
    starts.sort_unstable();
    ends.sort_unstable();
    let ts = &data.portfolio.equity.ts;
    let (mut i, mut j) = (0, 0);
    let live: Vec<(i64, f64)> = ts
        .iter()
        .map(|&t| {
            while i < starts.len() && starts[i] <= t {
                i += 1;
            }
            while j < ends.len() && ends[j] < t {
                j += 1;
            }
            (t, (i - j) as f64)
        })
        .collect();
    let mut counts: Vec<f64> = live.iter().map(|p| p.1).collect();
    counts.sort_by(f64::total_cmp);
    let median_live = counts[counts.len() / 2];
    let (first, last) = (ts[0], ts[ts.len() - 1]);
    let year_us = 365.25 * 86_400e6;
    let window_years = (last - first) as f64 / year_us;
    let mut lens: Vec<f64> = spans.iter().map(|s| (s.2 - s.1) as f64 / year_us).collect();
    lens.sort_by(f64::total_cmp);
    let median_years = lens[lens.len() / 2];
    let full = spans.iter().filter(|s| s.1 <= first && s.2 >= last).count();
    let bars_h = charts::CoverageChart::bars_height(spans.len());
    let c = charts::CoverageChart {
        spans,
        live,
        total: n,
        size: (1200, bars_h + 300),
    };
    let cap = format!(
        "{n} symbols; the window spans {window_years:.1} years ({} to {}). The median symbol has data for {median_years:.1} years; {full} of {n} cover the whole window. \
         At the median bar {median_live:.0} symbols had data, so {} of the starting capital was live (every symbol's sub-account starts with an equal share and holds it as cash before its first bar). \
         Annualised figures (CAGR, Sharpe, volatility) run over the whole window, including the years when few symbols were live.",
        fmt_us(first),
        fmt_us(last),
        html::fmt_pct(if n > 0 { median_live / n as f64 } else { 0.0 }, 0),
    );
    if opts.format.png() {
        w.png(&format!("{FILES_DIR}/coverage.png"), &c)?;
    }
    if !opts.format.html() {
        return Ok(String::new());
    }
    let svg = w.svg("coverage", &c)?;
    Ok(section(
        "coverage",
        "Coverage: which symbols had data when",
        &figure(&svg, &cap),
    ))
}

/// Most rows of the trade list (the charted symbols' trades; all of them
/// are in `trades.parquet`).
const TRADE_ROWS_MAX: usize = 2000;

/// `#trades`: the trades of the charted symbols, sortable.
fn trades_section(trades: &[load::TradeRow], chosen: usize) -> String {
    if trades.is_empty() {
        return section(
            "trades",
            "Trades of the charted symbols",
            "<p class=\"caption\">The charted symbols made no trades.</p>\n",
        );
    }
    let mut t = String::from("<div class=\"scroll\"><table id=\"trades-table\" class=\"sortable\"><thead><tr><th>symbol</th><th>side</th><th>entry</th><th>exit</th><th>entry price</th><th>exit price</th><th>return</th><th>P/L</th><th>bars held</th><th>exit reason</th></tr></thead><tbody>\n");
    let num = |v: Option<f64>, text: &dyn Fn(f64) -> String| match v.filter(|x| x.is_finite()) {
        Some(x) => format!(
            "<td data-v=\"{}\">{}</td>",
            serde_json::json!(x),
            escape(&text(x))
        ),
        None => "<td class=\"na\" data-v=\"\">n/a</td>".to_string(),
    };
    for r in trades.iter().take(TRADE_ROWS_MAX) {
        let exit = match r.exit_ts {
            Some(x) => format!("<td data-v=\"{x}\">{}</td>", escape(&fmt_us(x))),
            None => "<td data-v=\"\">open</td>".to_string(),
        };
        let ret_cls = if r.ret.is_some_and(|x| x < 0.0) {
            " class=\"neg\""
        } else {
            ""
        };
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td>{}</td><td data-v=\"{}\">{}</td>{exit}{}{}{}{}{}<td>{}</td></tr>",
            escape(&r.symbol),
            escape(&r.side),
            r.entry_ts,
            escape(&fmt_us(r.entry_ts)),
            num(Some(r.entry_price), &|x| html::fmt_axis(x)),
            num(Some(r.exit_price), &|x| html::fmt_axis(x)),
            num(r.ret, &|x| html::fmt_pct(x, 2)).replacen("<td ", &format!("<td{ret_cls} "), 1),
            num(r.pnl, &html::fmt_money),
            num(r.bars_held, &html::fmt_num),
            escape(&r.exit_reason),
        );
    }
    t.push_str("</tbody></table></div>\n");
    let more = trades.len().saturating_sub(TRADE_ROWS_MAX);
    let _ = writeln!(
        t,
        "<p class=\"caption\">{} trades of the {chosen} charted symbols{}; click a column to sort. Every trade of every symbol is in trades.parquet. The return of each closed trade is also drawn under its symbol's price chart.</p>",
        trades.len(),
        if more > 0 { format!(" (the first {TRADE_ROWS_MAX} shown)") } else { String::new() }
    );
    section("trades", "Trades of the charted symbols", &t)
}

/// Height of a symbol's chart (price, trade returns, signal).
const SYMBOL_CHART_HEIGHT: u32 = 640;

/// The caption's note on the equity chart's scale.
fn scale_caption(choice: ScaleChoice, eq: &EquityChart) -> String {
    match (choice, eq.log_scale, eq.log_ok()) {
        (_, true, false) => " Log scale requested but an equity value is not positive: drawn linear.".into(),
        (ScaleChoice::Auto, true, true) => format!(
            " Log scale: the curves span more than {AUTO_LOG_RATIO:.0}× (--linear-scale draws them linear)."
        ),
        (ScaleChoice::Auto, false, _) => format!(
            " Linear scale: the curves span less than {AUTO_LOG_RATIO:.0}× or touch zero (--log-scale forces log)."
        ),
        _ => String::new(),
    }
}

/// Columns of the per-symbol table (a subset keeps a 1,000-symbol page
/// small; `metrics.json` has them all).
const SYMBOL_COLUMNS: [&str; 9] = [
    "total_return",
    "cagr",
    "sharpe",
    "max_drawdown",
    "volatility",
    "trades",
    "win_rate",
    "profit_factor",
    "exposure",
];

/// Period returns of an equity curve: by calendar month, or by year when
/// bars are monthly or coarser. Returns (yearly?, year → period → return).
pub fn period_returns(s: &Series) -> (bool, BTreeMap<i32, BTreeMap<u32, f64>>) {
    use chrono::Datelike;
    let n = s.ts.len();
    let mut gaps: Vec<i64> = s.ts.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let median = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    // Monthly or coarser bars, or more than 40 years of them: by year.
    let years = match (s.ts.first(), s.ts.last()) {
        (Some(a), Some(b)) => (b - a) / (365 * 86_400_000_000),
        _ => 0,
    };
    let yearly = median >= 20 * 86_400_000_000 || years > 40;
    let mut out: BTreeMap<i32, BTreeMap<u32, f64>> = BTreeMap::new();
    let mut prev_end: Option<f64> = None;
    let mut i = 0;
    while i < n {
        let Some(t) = chrono::DateTime::from_timestamp_micros(s.ts[i]) else {
            i += 1;
            continue;
        };
        let key = (t.year(), if yearly { 0 } else { t.month() });
        let start_value = s.values[i];
        let mut j = i;
        while j + 1 < n {
            let Some(u) = chrono::DateTime::from_timestamp_micros(s.ts[j + 1]) else {
                break;
            };
            if (u.year(), if yearly { 0 } else { u.month() }) != key {
                break;
            }
            j += 1;
        }
        let end = s.values[j];
        let base = prev_end.unwrap_or(start_value);
        if base.is_finite() && base != 0.0 && end.is_finite() {
            out.entry(key.0)
                .or_default()
                .insert(key.1, end / base - 1.0);
        }
        prev_end = Some(end);
        i = j + 1;
    }
    (yearly, out)
}

fn returns_chart(s: &Series) -> Option<GridChart> {
    let (yearly, r) = period_returns(s);
    if r.is_empty() {
        return None;
    }
    let years: Vec<i32> = r.keys().copied().collect();
    let pct = CellFormat::Percent {
        decimals: 1,
        negate: false,
    };
    if yearly {
        // One row per decade, one column per year of the decade.
        let first = years[0].div_euclid(10);
        let last = years[years.len() - 1].div_euclid(10);
        let decades: Vec<i32> = (first..=last).collect();
        let h = (70 + 26 * decades.len() as u32).clamp(140, 1400);
        return Some(GridChart {
            title: "Yearly returns of the portfolio".into(),
            x_labels: (0..10).map(|y| format!("+{y}")).collect(),
            y_labels: decades.iter().map(|d| format!("{}s", d * 10)).collect(),
            x_name: String::new(),
            y_name: String::new(),
            values: decades
                .iter()
                .map(|d| {
                    (0..10)
                        .map(|y| r.get(&(d * 10 + y)).and_then(|m| m.get(&0)).copied())
                        .collect()
                })
                .collect(),
            diverging: true,
            lower_is_better: false,
            cells: pct,
            range: None,
            total_column: false,
            highlight: None,
            size: (1200, h),
        });
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let h = (70 + 26 * years.len() as u32).clamp(140, 1400);
    Some(GridChart {
        title: "Monthly returns of the portfolio, and each year's".into(),
        x_labels: MONTHS
            .iter()
            .map(|m| m.to_string())
            .chain(std::iter::once("Year".to_string()))
            .collect(),
        y_labels: years.iter().map(|y| y.to_string()).collect(),
        x_name: String::new(),
        y_name: String::new(),
        values: years
            .iter()
            .map(|y| {
                let months = r.get(y);
                let mut row: Vec<Option<f64>> = (1..=12)
                    .map(|m| months.and_then(|x| x.get(&m)).copied())
                    .collect();
                // Months chain from the previous month's last equity: their
                // product is the year's return.
                let year = months.map(|x| x.values().fold(1.0, |acc, r| acc * (1.0 + r)) - 1.0);
                row.push(year);
                row
            })
            .collect(),
        diverging: true,
        lower_is_better: false,
        cells: pct,
        range: None,
        total_column: true,
        highlight: None,
        size: (1200, h),
    })
}

fn downsample_caption(bars: usize, width: u32) -> String {
    if bars > 4 * width as usize {
        format!(
            "Drawn from {bars} bars downsampled for display to min/max per pixel column ({width} columns): every peak and drawdown stays visible; the Parquet files keep every bar."
        )
    } else {
        format!("{bars} bars, every bar drawn.")
    }
}

fn json_str(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return String::new(),
        }
    }
    match cur {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn details_html(meta: &Value) -> String {
    let mut s = String::from("<dl class=\"dl\">\n");
    let command = meta
        .get("command")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(load::label).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let timings = meta
        .get("timings_ms")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    format!(
                        "{k} {}",
                        v.as_f64().map_or("n/a".into(), |x| format!("{x:.1} ms"))
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    for (k, v) in [
        ("atc-bt version", json_str(meta, &["atc_bt_version"])),
        ("format version", json_str(meta, &["format_version"])),
        ("started at", json_str(meta, &["started_at"])),
        ("command", command),
        ("timings", timings),
        ("inputs hash", json_str(meta, &["inputs_hash"])),
        ("window from", json_str(meta, &["window", "from"])),
        ("window to", json_str(meta, &["window", "to"])),
        ("warm-up bars", json_str(meta, &["window", "warmup_bars"])),
        ("data", json_str(meta, &["data", "path"])),
        ("threads", json_str(meta, &["threads"])),
    ] {
        if !v.is_empty() {
            let _ = writeln!(s, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(&v));
        }
    }
    s.push_str("</dl>\n");
    if let Some(src) = meta.pointer("/data/sources").and_then(Value::as_array) {
        s.push_str("<h3>Data sources</h3>\n<div class=\"scroll\"><table><thead><tr><th>path</th><th>bytes</th><th>blake3</th></tr></thead><tbody>\n");
        for x in src {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&json_str(x, &["path"])),
                escape(&json_str(x, &["size"])),
                escape(&json_str(x, &["blake3"]))
            );
        }
        s.push_str("</tbody></table></div>\n");
    }
    for key in ["params", "grid", "base"] {
        if let Some(p) = meta.get(key) {
            let text = serde_json::to_string_pretty(p).unwrap_or_default();
            let _ = writeln!(s, "<h3>{}</h3>\n<pre>{}</pre>", escape(key), escape(&text));
        }
    }
    s
}

fn memory_section(
    w: &mut Writer,
    mem: Option<&MemoryTimeline>,
    opts: &ReportOptions,
) -> Result<String, ReportError> {
    let drawn = draw_memory_section(&w.dir, mem, opts)?;
    if let Some(png) = &drawn.png {
        w.write(MEMORY_PNG, png)?;
    }
    Ok(drawn.html)
}

/// `FILES_DIR/memory.png`.
const MEMORY_PNG: &str = "report_files/memory.png";

/// The memory section of a run report, drawn in memory: nothing touches
/// the directory, so it can be drawn while the directory is being
/// committed ([`finish_run_report`] writes it).
#[derive(Debug, Clone)]
pub struct MemorySection {
    html: String,
    png: Option<Vec<u8>>,
}

/// Draws the memory section of the timeline `mem` of the directory `dir`
/// (its PNG and its SVG on two threads; `dir` only names the files in
/// errors).
pub fn draw_memory_section(
    dir: &Path,
    mem: Option<&MemoryTimeline>,
    opts: &ReportOptions,
) -> Result<MemorySection, ReportError> {
    let Some(t) = mem.filter(|t| !t.samples.is_empty()) else {
        return Ok(MemorySection {
            html: section(
                "memory",
                "Memory timeline",
                "<p class=\"caption\">No memory.parquet in this directory (the sampler runs on Linux only).</p>\n",
            ),
            png: None,
        });
    };
    let c = MemoryChart {
        timeline: t,
        size: (1200, 380),
    };
    let chart_err = |rel: &str| {
        let path = dir.join(rel);
        move |message| ReportError::Chart { path, message }
    };
    let (png, svg) = rayon::join(
        || {
            opts.format
                .png()
                .then(|| charts::to_png(&c).map_err(chart_err(MEMORY_PNG)))
                .transpose()
        },
        || {
            opts.format
                .html()
                .then(|| charts::to_svg(&c).map_err(chart_err("memory")))
                .transpose()
        },
    );
    let (png, svg) = (png?, svg?);
    let Some(svg) = svg else {
        return Ok(MemorySection {
            html: String::new(),
            png,
        });
    };
    let peak = t.peak().map_or(String::new(), |p| {
        format!(
            " Peak {:.1} MiB at {:.2} s in phase {}; {} samples; last sample: {} bars done, cache {} hits / {} misses.",
            p.rss_bytes as f64 / 1048576.0,
            p.t_ms / 1e3,
            p.phase,
            t.samples.len(),
            t.samples.last().map_or(0, |s| s.bars_done),
            t.samples.last().map_or(0, |s| s.cache_hits),
            t.samples.last().map_or(0, |s| s.cache_misses),
        )
    });
    Ok(MemorySection {
        html: section(
            "memory",
            "Memory timeline",
            &figure(
                &svg,
                &format!("Resident set size sampled at a fixed interval, phases shaded.{peak}"),
            ),
        ),
        png,
    })
}

fn curve_line(name: &str, c: &Curve) -> Line {
    Line {
        name: name.to_string(),
        series: c.equity.clone(),
        drawdown: c.drawdown.clone(),
    }
}

/// Renders the report of a run directory.
pub fn render_run_report(dir: &Path, opts: &ReportOptions) -> Result<ReportSummary, ReportError> {
    render_run_report_parts(dir, opts).map(|(summary, _)| summary)
}

/// Version of the [`RunReportParts`] layout and of what the run report
/// draws: part of the key under which a cache keeps them, so a build that
/// draws differently never reuses another's charts.
pub const RUN_REPORT_LAYOUT: u32 = 3;

/// The half of a run report that depends only on the result files
/// (`metrics.json`, `equity.parquet`, `signals.parquet`, `trades.parquet`,
/// the result fields of `run.json`) and the options: every chart but the
/// memory timeline, and the page up to it. The memory timeline and the run
/// details describe the process that wrote the directory and are drawn
/// anew by [`finish_run_report`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunReportParts {
    /// The page's subtitle.
    pub subtitle: String,
    /// The page body before the memory section.
    pub body: String,
    /// Names of the chart files in [`FILES_DIR`] that `body` refers to.
    pub charts: Vec<String>,
}

/// Completes the report of a run directory whose result-derived half
/// comes from an earlier render of the same result files with the same
/// options: `parts` as [`render_run_report_parts`] returned it, its chart
/// files already copied into `dir/report_files/`; `run` is the directory's
/// `run.json` and `memory` its timeline's section
/// ([`draw_memory_section`]). Writes only the memory chart and the page,
/// which is byte-identical to a full render of the directory.
pub fn finish_run_report(
    dir: &Path,
    opts: &ReportOptions,
    parts: &RunReportParts,
    run: &Value,
    memory: MemorySection,
) -> Result<ReportSummary, ReportError> {
    let files_dir = dir.join(FILES_DIR);
    let mut w = Writer {
        dir: dir.to_path_buf(),
        files: Vec::new(),
        total: 0,
    };
    for name in &parts.charts {
        let path = files_dir.join(name);
        let len = std::fs::metadata(&path)
            .map_err(|source| ReportError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        w.total += len;
        w.files.push(path);
    }
    finish_run_page(w, opts, parts, memory, run)
}

/// [`finish_run_report`] reading `run.json` and `memory.parquet` from
/// `dir`.
pub fn finish_run_report_from_dir(
    dir: &Path,
    opts: &ReportOptions,
    parts: &RunReportParts,
) -> Result<ReportSummary, ReportError> {
    let run = load::read_json(&dir.join("run.json"))?;
    let memory = load::read_memory(&dir.join("memory.parquet"))?;
    let section = draw_memory_section(dir, memory.as_ref(), opts)?;
    finish_run_report(dir, opts, parts, &run, section)
}

/// The memory section, the run details and the page around `parts`.
fn finish_run_page(
    mut w: Writer,
    opts: &ReportOptions,
    parts: &RunReportParts,
    memory: MemorySection,
    run: &Value,
) -> Result<ReportSummary, ReportError> {
    if let Some(png) = &memory.png {
        w.write(MEMORY_PNG, png)?;
    }
    let mut body = parts.body.clone();
    body.push_str(&memory.html);
    if opts.format.html() {
        body.push_str(&section("details", "Run details", &details_html(run)));
    }
    let html = opts
        .format
        .html()
        .then(|| html::page("ATC backtest report", &parts.subtitle, &body));
    w.finish(html.as_deref())
}

/// Renders the report of a run directory ([`render_run_report`]) and also
/// returns its result-derived half, for a cache to keep.
pub fn render_run_report_parts(
    dir: &Path,
    opts: &ReportOptions,
) -> Result<(ReportSummary, RunReportParts), ReportError> {
    let mut data: RunData = load::load_run_meta(dir)?;
    let chosen = choose_symbols(&data.symbol_metrics, opts.symbols_in_report);
    let set: BTreeSet<String> = chosen.iter().cloned().collect();
    load::load_run_series(dir, &mut data, &set)?;
    let mut w = Writer::new(dir)?;
    let mut body = String::new();

    // Key figures.
    let pm = &data.portfolio_metrics;
    let bm = &data.benchmark_metrics;
    body.push_str("<div class=\"kpis\">\n");
    for k in ["total_return", "cagr", "sharpe", "max_drawdown", "trades"] {
        let v = pm.get(k);
        let text = v
            .and_then(Value::as_f64)
            .map_or("n/a".to_string(), |x| html::fmt_metric(k, x));
        let _ = writeln!(
            body,
            "<div class=\"kpi\" data-metric=\"{k}\" data-v=\"{}\"><b>{}</b><span>{}</span></div>",
            v.map(html::data_value).unwrap_or_default(),
            escape(&text),
            escape(&metric_label(k))
        );
    }
    let bh = bm.get("total_return").and_then(Value::as_f64);
    let _ = writeln!(
        body,
        "<div class=\"kpi\"><b>{}</b><span>buy &amp; hold return</span></div>\n</div>",
        bh.map_or("n/a".into(), |x| html::fmt_metric("total_return", x))
    );

    // Equity.
    let log_scale = opts.scale.resolve(
        data.portfolio
            .equity
            .values
            .iter()
            .chain(&data.benchmark.equity.values),
    );
    let eq = EquityChart {
        title: "Portfolio equity vs buy & hold".into(),
        strategy: curve_line("Portfolio (ATC)", &data.portfolio),
        benchmark: (!data.benchmark.equity.ts.is_empty())
            .then(|| curve_line("Buy & hold", &data.benchmark)),
        log_scale,
        markers: Vec::new(),
        size: (1200, 620),
    };
    if opts.format.png() {
        w.png(&format!("{FILES_DIR}/equity.png"), &eq)?;
    }
    if opts.format.html() {
        let svg = w.svg("equity", &eq)?;
        let mut cap = downsample_caption(data.portfolio.equity.ts.len(), 1200);
        cap.push_str(&scale_caption(opts.scale, &eq));
        body.push_str(&section(
            "equity",
            "Equity and drawdown",
            &figure(&svg, &cap),
        ));
    }

    // Statistics.
    let mut t = String::from(
        "<div class=\"hscroll\"><table id=\"stats\"><thead><tr><th>metric</th><th>portfolio</th><th>buy &amp; hold</th></tr></thead><tbody>\n",
    );
    for k in ordered_metrics(pm.keys().chain(bm.keys())) {
        let _ = writeln!(
            t,
            "<tr data-metric=\"{}\"><td title=\"{}\">{}</td>{}{}</tr>",
            escape(&k),
            escape(&k),
            escape(&metric_label(&k)),
            html::metric_cell(&k, pm.get(&k)),
            html::metric_cell(&k, bm.get(&k))
        );
    }
    t.push_str("</tbody></table></div>\n<p class=\"caption\">Every metric of metrics.json (hover a name for its key; definitions and peer equivalents in METRICS.md). Percentages are fractions × 100; drawdowns are shown negative, as in the chart; durations in bars and in calendar days.</p>\n");
    body.push_str(&section("statistics", "Statistics", &t));
    if opts.format.html() {
        body.push_str(&drawdowns_section(pm));
    }

    // Period returns.
    if let Some(c) = returns_chart(&data.portfolio.equity) {
        if opts.format.png() {
            w.png(&format!("{FILES_DIR}/returns.png"), &c)?;
        }
        if opts.format.html() {
            let svg = w.svg("returns", &c)?;
            let cap = if c.total_column {
                "Return of each calendar month, from the last equity of the previous month; the Year column compounds the months (coloured on its own scale)."
            } else {
                "Return of each calendar year, from the last equity of the previous year."
            };
            body.push_str(&section("returns", "Period returns", &figure(&svg, cap)));
        }
    }
    if opts.format.html() {
        body.push_str(&yearly_section(pm, bm));
    }
    body.push_str(&coverage_section(&mut w, &data, opts)?);

    // Per-symbol charts.
    let long_th = data
        .run
        .pointer("/params/atc/long_threshold")
        .and_then(Value::as_f64);
    let short_th = data
        .run
        .pointer("/params/atc/short_threshold")
        .and_then(Value::as_f64);
    let index: BTreeMap<&String, usize> = data
        .symbol_metrics
        .keys()
        .enumerate()
        .map(|(i, s)| (s, i))
        .collect();
    let trade_rows = load::read_trade_rows(dir, &set)?;
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let mut figs = String::new();
    for sym in &chosen {
        let panel = data.panels.remove(sym).unwrap_or_default();
        // Chosen symbols come from the same map: the index is always there.
        let stem = symbol_file_stem(index.get(sym).copied().unwrap_or(index.len()), sym);
        let bars = panel.avg.ts.len();
        let c = SymbolChart {
            symbol: sym.clone(),
            close: panel.close,
            avg: panel.avg,
            trades: panel.trades,
            trade_returns: trade_rows
                .iter()
                .filter(|r| &r.symbol == sym)
                .filter_map(|r| Some((r.exit_ts?, r.ret?)))
                .collect(),
            long_threshold: long_th,
            short_threshold: short_th,
            size: (1200, SYMBOL_CHART_HEIGHT),
        };
        if opts.format.png() {
            w.png(&format!("{FILES_DIR}/{stem}.png"), &c)?;
        }
        if opts.format.html() {
            let rel = format!("{FILES_DIR}/{stem}.svg");
            let svg = w.svg(&rel, &c)?;
            w.write(&rel, svg.as_bytes())?;
            links.insert(sym.clone(), rel.clone());
            let ret = data
                .symbol_metrics
                .get(sym)
                .and_then(|m| metric_f64(m, "total_return"))
                .map_or("n/a".into(), |x| html::fmt_metric("total_return", x));
            let _ = writeln!(
                figs,
                "<figure><a href=\"{0}\"><img loading=\"lazy\" src=\"{0}\" alt=\"{1}\" width=\"1200\" height=\"{SYMBOL_CHART_HEIGHT}\"></a>\
                 <figcaption class=\"caption\">{1}: total return {2}. {3}</figcaption></figure>",
                escape(&rel),
                escape(sym),
                escape(&ret),
                escape(&downsample_caption(bars, 1200))
            );
        }
    }
    if opts.format.html() && !chosen.is_empty() {
        let heading = match opts.symbols_in_report {
            SymbolsInReport::All => "Every symbol".to_string(),
            SymbolsInReport::Top(n) => format!("Best and worst {n} symbols by total return"),
        };
        body.push_str(&section("symbols", &heading, &figs));
        body.push_str(&trades_section(&trade_rows, chosen.len()));
    }

    // Per-symbol table.
    if opts.format.html() {
        let mut t = String::from("<div class=\"scroll\"><table id=\"symbols-table\" class=\"sortable\"><thead><tr><th>symbol</th>");
        for c in SYMBOL_COLUMNS {
            let _ = write!(t, "<th title=\"{c}\">{}</th>", escape(&metric_label(c)));
        }
        t.push_str("</tr></thead><tbody>\n");
        for (sym, m) in &data.symbol_metrics {
            let name = match links.get(sym) {
                Some(l) => format!("<a href=\"{}\">{}</a>", escape(l), escape(sym)),
                None => escape(sym),
            };
            let _ = write!(t, "<tr><td data-v=\"{}\">{name}</td>", escape(sym));
            for c in SYMBOL_COLUMNS {
                t.push_str(&html::metric_cell(c, m.get(c)));
            }
            t.push_str("</tr>\n");
        }
        t.push_str("</tbody></table></div>\n<p class=\"caption\">Click a column to sort. Linked symbols have a chart. All metrics per symbol are in metrics.json.</p>\n");
        body.push_str(&section(
            "per-symbol",
            &format!("Per-symbol results ({} symbols)", data.symbol_metrics.len()),
            &t,
        ));
    }

    let subtitle = format!(
        "{} symbols · {} bars · window {} to {} · atc-bt {}",
        data.symbol_metrics.len(),
        data.portfolio.equity.ts.len(),
        data.portfolio
            .equity
            .ts
            .first()
            .map_or(String::new(), |t| charts::date_label(*t as f64, 1e18)),
        data.portfolio
            .equity
            .ts
            .last()
            .map_or(String::new(), |t| charts::date_label(*t as f64, 1e18)),
        json_str(&data.run, &["atc_bt_version"]),
    );
    let files_dir = w.dir.join(FILES_DIR);
    let parts = RunReportParts {
        subtitle,
        body,
        charts: w
            .files
            .iter()
            .filter_map(|p| p.strip_prefix(&files_dir).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
    };
    let memory = draw_memory_section(dir, data.memory.as_ref(), opts)?;
    let summary = finish_run_page(w, opts, &parts, memory, &data.run)?;
    Ok((summary, parts))
}

/// Parameter columns of `results.parquet` (not metrics), as the sweep writes them.
use crate::sweep::output::PARAM_COLUMNS;

/// Metrics where smaller is better (the facts table's direction).
fn lower_is_better(metric: &str) -> bool {
    crate::sweep::output::lower_is_better(metric)
}

/// Heatmaps of one sample: x = lambda, y = decay (or the first axes), one
/// panel per value combination of the other axes (cutout, …).
fn sweep_heatmaps(
    h: &load::HeatmapFile,
    best: Option<&BTreeMap<String, String>>,
    cells: CellFormat,
) -> Vec<GridChart> {
    // One colour scale for every panel of the sample.
    let range = {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in h.values.iter().flatten().filter(|v| v.is_finite()) {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
        (lo <= hi).then_some((lo, hi))
    };
    let n = h.axes.len();
    if n == 0 {
        return Vec::new();
    }
    let find = |name: &str| h.axes.iter().position(|a| a.0 == name);
    let xi = find("lambda").unwrap_or(0);
    let yi = find("decay")
        .filter(|&i| i != xi)
        .or_else(|| (0..n).find(|&i| i != xi));
    let others: Vec<usize> = (0..n).filter(|&i| i != xi && Some(i) != yi).collect();
    let strides: Vec<usize> = (0..n)
        .map(|i| h.axes[i + 1..].iter().map(|a| a.1.len()).product())
        .collect();
    let other_count: usize = others.iter().map(|&i| h.axes[i].1.len()).product();
    let mut out = Vec::new();
    for k in 0..other_count.min(48) {
        let mut rem = k;
        let mut fixed = vec![0usize; n];
        for &i in others.iter().rev() {
            let len = h.axes[i].1.len().max(1);
            fixed[i] = rem % len;
            rem /= len;
        }
        let xs = &h.axes[xi].1;
        let ys: Vec<String> = yi.map_or(vec![String::new()], |i| h.axes[i].1.clone());
        let mut values = Vec::new();
        let mut highlight = None;
        for (r, _) in ys.iter().enumerate() {
            let mut row = Vec::new();
            for (c, _) in xs.iter().enumerate() {
                let mut idx = fixed.clone();
                idx[xi] = c;
                if let Some(i) = yi {
                    idx[i] = r;
                }
                let flat: usize = idx.iter().zip(&strides).map(|(a, b)| a * b).sum();
                row.push(h.values.get(flat).copied().flatten());
                if let Some(b) = best {
                    let is_best = (0..n).all(|a| {
                        b.get(&h.axes[a].0)
                            .is_some_and(|v| same_label(v, &h.axes[a].1[idx[a]]))
                    });
                    if is_best {
                        highlight = Some((r, c));
                    }
                }
            }
            values.push(row);
        }
        let fixed_text: Vec<String> = others
            .iter()
            .map(|&i| {
                format!(
                    "{} = {}",
                    h.axes[i].0,
                    h.axes[i].1.get(fixed[i]).cloned().unwrap_or_default()
                )
            })
            .collect();
        let label = metric_label(&h.metric);
        let title = if fixed_text.is_empty() {
            format!("{label} ({} sample)", h.sample)
        } else {
            format!("{label} ({} sample), {}", h.sample, fixed_text.join(", "))
        };
        let height = (90 + 30 * ys.len() as u32).clamp(160, 900);
        out.push(GridChart {
            title,
            x_labels: xs.clone(),
            y_labels: ys,
            x_name: h.axes[xi].0.clone(),
            y_name: yi.map_or(String::new(), |i| h.axes[i].0.clone()),
            values,
            diverging: false,
            lower_is_better: lower_is_better(&h.metric),
            cells,
            range,
            total_column: false,
            highlight,
            size: (640, height),
        });
    }
    out
}

/// A fold's `train` or `test` window `(from, to)` in µs, as
/// `walk_forward.json` writes it (`{"from", "to"}`).
fn fold_window(f: &Value, which: &str) -> (Option<i64>, Option<i64>) {
    let w = f.get(which);
    let get = |k: &str| parse_time(w.and_then(|w| w.get(k)));
    (get("from"), get("to"))
}

/// A window bound as a day when it is a day's start or its last second
/// (`2020-12-31T23:59:59Z` → `2020-12-31`), else date and time.
fn fmt_window_day(t: i64) -> String {
    let day = 86_400_000_000i64;
    let into = t.rem_euclid(day);
    if into >= day - 1_000_000 {
        fmt_us(t - into)
    } else {
        fmt_us(t)
    }
}

/// `#walk-forward` of a sweep run with `--walk-forward`: each fold's
/// training and test windows, the combination chosen on the training
/// window (its number and the grid's parameters), the ranking metric in
/// and out of sample, the test window's return beside buy & hold, and the
/// chained out-of-sample equity against buy & hold. Empty without
/// `walk_forward.json`.
fn walk_forward_section(
    w: &mut Writer,
    dir: &Path,
    axes: &[String],
    opts: &ReportOptions,
) -> Result<String, ReportError> {
    let Some(wf) = load::read_walk_forward(dir)? else {
        return Ok(String::new());
    };
    let j = &wf.json;
    let metric = json_str(j, &["rank_by"]);
    let label = metric_label(&metric);
    let folds = j
        .get("folds")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let starts: Vec<(i64, String)> = folds
        .iter()
        .enumerate()
        .filter_map(|(k, f)| Some((fold_window(f, "test").0?, k.to_string())))
        .collect();
    let mut html_out = String::new();
    if !wf.curve.equity.ts.is_empty() {
        let values = wf
            .curve
            .equity
            .values
            .iter()
            .chain(&wf.benchmark.equity.values);
        let eq = EquityChart {
            title: "Walk-forward: chained out-of-sample equity vs buy & hold".into(),
            strategy: curve_line("Out of sample (chained folds)", &wf.curve),
            benchmark: (!wf.benchmark.equity.ts.is_empty())
                .then(|| curve_line("Buy & hold (same windows)", &wf.benchmark)),
            log_scale: opts.scale.resolve(values),
            markers: starts,
            size: (1200, 620),
        };
        if opts.format.png() {
            w.png(&format!("{FILES_DIR}/walk_forward_equity.png"), &eq)?;
        }
        if opts.format.html() {
            let svg = w.svg("walk_forward_equity", &eq)?;
            let mut cap = downsample_caption(wf.curve.equity.ts.len(), 1200);
            cap.push_str(" Each fold's test window is traded with the combination chosen on its training window; the dashed lines mark where each test window starts (fold number at the top); each window starts from the previous one's final equity.");
            cap.push_str(&scale_caption(opts.scale, &eq));
            html_out.push_str(&figure(&svg, &cap));
        }
    }
    if !opts.format.html() {
        return Ok(String::new());
    }
    let num = |v: Option<&Value>, m: &str| html::metric_cell(m, v.filter(|x| x.is_number()));
    let mut t = String::from("<div class=\"hscroll\"><table id=\"walk-forward-folds\" class=\"sortable\"><thead><tr><th>fold</th><th>train</th><th>test</th><th>combination</th>");
    for a in axes {
        let _ = write!(t, "<th>{}</th>", escape(a));
    }
    let _ = writeln!(
        t,
        "<th title=\"{0}\">{1} (train)</th><th title=\"{0}\">{1} (test)</th><th>return (test)</th><th>buy &amp; hold (test)</th></tr></thead><tbody>",
        escape(&metric),
        escape(&label)
    );
    let window = |f: &Value, w: &str| {
        let (from, to) = fold_window(f, w);
        let show = |t: Option<i64>| t.map_or("?".to_string(), fmt_window_day);
        format!(
            "<td data-v=\"{}\">{} to {}</td>",
            from.map_or(String::new(), |t| t.to_string()),
            escape(&show(from)),
            escape(&show(to))
        )
    };
    for (k, f) in folds.iter().enumerate() {
        let _ = write!(
            t,
            "<tr data-fold=\"{k}\"><td data-v=\"{k}\">{k}</td>{}{}",
            window(f, "train"),
            window(f, "test")
        );
        match f.get("best_combo").and_then(Value::as_u64) {
            Some(c) => {
                let _ = write!(t, "<td data-v=\"{c}\">{c}</td>");
            }
            None => t.push_str("<td class=\"na\" data-v=\"\">none</td>"),
        }
        for a in axes {
            match f.get("params").and_then(|p| p.get(a)) {
                Some(Value::Number(n)) => {
                    let x = n.as_f64().unwrap_or(f64::NAN);
                    let _ = write!(t, "<td data-v=\"{n}\">{}</td>", html::fmt_compact(x, 6));
                }
                Some(Value::String(v)) => {
                    let _ = write!(t, "<td>{}</td>", escape(v));
                }
                _ => t.push_str("<td class=\"na\" data-v=\"\">n/a</td>"),
            }
        }
        let test = f.get("test_metrics");
        t.push_str(&num(f.get("train_metric"), &metric));
        t.push_str(&num(test.and_then(|m| m.get(&metric)), &metric));
        t.push_str(&num(
            test.and_then(|m| m.get("total_return")),
            "total_return",
        ));
        t.push_str(&num(
            test.and_then(|m| m.get("benchmark_return")),
            "total_return",
        ));
        t.push_str("</tr>\n");
    }
    t.push_str("</tbody></table></div>\n");
    let oos = j.get("out_of_sample");
    let bench = j.get("benchmark");
    let get = |m: Option<&Value>, k: &str| {
        m.and_then(|m| m.get(k))
            .and_then(Value::as_f64)
            .map_or("n/a".to_string(), |x| html::fmt_metric(k, x))
    };
    let spec = |k: &str| {
        j.pointer(&format!("/spec/{k}"))
            .map(|v| match v {
                Value::Object(o) => o
                    .iter()
                    .map(|(unit, n)| {
                        let unit = unit.to_lowercase();
                        let one = n.as_u64() == Some(1);
                        format!(
                            "{} {}",
                            load::label(n),
                            if one {
                                unit.trim_end_matches('s')
                            } else {
                                &unit
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                other => load::label(other),
            })
            .unwrap_or_default()
    };
    let _ = writeln!(
        t,
        "<p class=\"caption\">{} folds (train {}, test {}, step {}); in each, the combination with the best {} on the training window trades the test window. \
         Out of sample, chained: total return {} (buy &amp; hold {}), {} {} ({}), max drawdown {} ({}).</p>",
        folds.len(),
        escape(&spec("train")),
        escape(&spec("test")),
        escape(&spec("step")),
        escape(&label),
        get(oos, "total_return"),
        get(bench, "total_return"),
        escape(&label),
        get(oos, &metric),
        get(bench, &metric),
        get(oos, "max_drawdown"),
        get(bench, "max_drawdown"),
    );
    html_out.push_str(&t);
    Ok(section("walk-forward", "Walk-forward", &html_out))
}

/// Whether two parameter labels name the same value (`0` and `0.0` do).
fn same_label(a: &str, b: &str) -> bool {
    a == b || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
}

/// Renders the report of a sweep directory.
pub fn render_sweep_report(dir: &Path, opts: &ReportOptions) -> Result<ReportSummary, ReportError> {
    let data: SweepData = load::load_sweep(dir, &PARAM_COLUMNS)?;
    let mut w = Writer::new(dir)?;
    let mut body = String::new();
    let rank_by = json_str(&data.sweep, &["rank_by"]);
    let ranked_on = {
        let s = json_str(&data.sweep, &["ranked_on_sample"]);
        if s.is_empty() {
            "full".to_string()
        } else {
            s
        }
    };
    let axes: Vec<String> = data
        .heatmaps
        .first()
        .map(|h| h.axes.iter().map(|a| a.0.clone()).collect())
        .unwrap_or_default();
    // Best combination's parameter values, as axis labels.
    let best_combo = data.sweep.pointer("/best/combo").and_then(Value::as_u64);
    let best_labels: Option<BTreeMap<String, String>> = best_combo.and_then(|b| {
        let row = data.rows.iter().find(|r| r.combo == b)?;
        Some(
            axes.iter()
                .map(|a| {
                    let v = row
                        .strs
                        .get(a)
                        .cloned()
                        .or_else(|| {
                            row.nums
                                .get(a)
                                .copied()
                                .flatten()
                                .map(|x| load::label(&serde_json::json!(x)))
                        })
                        .unwrap_or_default();
                    (a.clone(), v)
                })
                .collect(),
        )
    });

    // Heatmaps: one number format for the page, one colour scale per sample.
    let cells = if html::is_percent(&rank_by) {
        CellFormat::Percent {
            decimals: 1,
            negate: html::is_drawdown(&rank_by),
        }
    } else {
        CellFormat::for_values(
            data.heatmaps
                .iter()
                .flat_map(|h| h.values.iter().flatten().copied()),
        )
    };
    let mut figs = String::new();
    let mut compressed: Vec<String> = Vec::new();
    for h in &data.heatmaps {
        let panels = sweep_heatmaps(h, best_labels.as_ref(), cells);
        if let Some((lo, hi)) = panels.first().and_then(|c| c.range) {
            if charts::scale_range(lo, hi).2 {
                compressed.push(format!(
                    "{} ({} to {})",
                    h.sample,
                    cells.text(lo),
                    cells.text(hi)
                ));
            }
        }
        for (k, c) in panels.iter().enumerate() {
            let stem = format!(
                "heatmap-{}-{:02}",
                h.sample.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
                k + 1
            );
            if opts.format.png() {
                w.png(&format!("{FILES_DIR}/{stem}.png"), c)?;
            }
            if opts.format.html() {
                let svg = w.svg(&stem, c)?;
                figs.push_str(&figure(&svg, ""));
            }
        }
    }
    if opts.format.html() {
        let mut cap = format!(
            "Each cell is the portfolio's {} for one combination; brighter is better, on one colour scale per sample (the colour bar at the right gives its values). The best combination (ranked on the {} sample) is outlined in red; grey cells have no value.",
            escape(&metric_label(&rank_by)),
            escape(&ranked_on)
        );
        if !compressed.is_empty() {
            let _ = write!(
                cap,
                " Values that differ by less than {:.0}% of their size share nearly one colour (the scale spans at least that much), so a negligible spread does not look like sensitivity: {}.",
                charts::MIN_RELATIVE_SPAN * 100.0,
                escape(&compressed.join("; "))
            );
        }
        body.push_str(&section(
            "heatmaps",
            &format!("Ranking metric: {}", metric_label(&rank_by)),
            &format!("<div class=\"grid2\">\n{figs}</div>\n<p class=\"caption\">{cap}</p>\n"),
        ));
    }

    // Top-N table.
    if opts.format.html() {
        let top = match opts.symbols_in_report {
            SymbolsInReport::All => usize::MAX,
            SymbolsInReport::Top(n) => n.max(20),
        };
        let ranking: Vec<u64> = data
            .sweep
            .get("ranking")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let samples: Vec<String> = data.heatmaps.iter().map(|h| h.sample.clone()).collect();
        let by: BTreeMap<(u64, &str), &load::ComboRow> = data
            .rows
            .iter()
            .map(|r| ((r.combo, r.sample.as_str()), r))
            .collect();
        let extra: Vec<&str> = ["total_return", "sharpe", "max_drawdown", "trades"]
            .into_iter()
            .filter(|m| *m != rank_by && data.metric_columns.iter().any(|c| c == m))
            .collect();
        let mut t = String::from("<div class=\"scroll\"><table id=\"top-table\" class=\"sortable\"><thead><tr><th>rank</th><th>combination</th>");
        for a in &axes {
            let _ = write!(t, "<th>{}</th>", escape(a));
        }
        for s in &samples {
            let _ = write!(
                t,
                "<th title=\"{}\">{} ({})</th>",
                escape(&rank_by),
                escape(&metric_label(&rank_by)),
                escape(s)
            );
        }
        for m in &extra {
            let _ = write!(
                t,
                "<th title=\"{m}\">{} ({})</th>",
                escape(&metric_label(m)),
                escape(&ranked_on)
            );
        }
        t.push_str("</tr></thead><tbody>\n");
        for (i, combo) in ranking.iter().take(top).enumerate() {
            let Some(row) = by.get(&(*combo, ranked_on.as_str())) else {
                continue;
            };
            let _ = write!(
                t,
                "<tr><td data-v=\"{}\">{}</td><td data-v=\"{combo}\">{combo}</td>",
                i + 1,
                i + 1
            );
            for a in &axes {
                match (row.strs.get(a), row.nums.get(a).copied().flatten()) {
                    (Some(s), _) => {
                        let _ = write!(t, "<td>{}</td>", escape(s));
                    }
                    (None, Some(x)) => {
                        let _ = write!(
                            t,
                            "<td data-v=\"{}\">{}</td>",
                            serde_json::json!(x),
                            html::fmt_compact(x, 6)
                        );
                    }
                    _ => t.push_str("<td class=\"na\">n/a</td>"),
                }
            }
            for s in &samples {
                let v = by
                    .get(&(*combo, s.as_str()))
                    .and_then(|r| r.nums.get(&rank_by).copied().flatten())
                    .map(|x| serde_json::json!(x));
                t.push_str(&html::metric_cell(&rank_by, v.as_ref()));
            }
            for m in &extra {
                let v = row
                    .nums
                    .get(*m)
                    .copied()
                    .flatten()
                    .map(|x| serde_json::json!(x));
                t.push_str(&html::metric_cell(m, v.as_ref()));
            }
            t.push_str("</tr>\n");
        }
        t.push_str(&format!(
            "</tbody></table></div>\n<p class=\"caption\">Portfolio rows of results.parquet, ranked by {} on the {} sample. Click a column to sort.</p>\n",
            escape(&rank_by),
            escape(&ranked_on)
        ));
        body.push_str(&section("top", "Top combinations", &t));
    }

    // Best equity.
    if !data.best.equity.ts.is_empty() {
        let split = parse_time(data.sweep.get("split"));
        let values = data
            .best
            .equity
            .values
            .iter()
            .chain(&data.benchmark.equity.values);
        let eq = EquityChart {
            title: format!(
                "Best combination{} vs buy & hold",
                best_combo.map_or(String::new(), |b| format!(" (#{b})"))
            ),
            strategy: curve_line("Best combination", &data.best),
            benchmark: (!data.benchmark.equity.ts.is_empty())
                .then(|| curve_line("Buy & hold", &data.benchmark)),
            log_scale: opts.scale.resolve(values),
            markers: split
                .map(|t| vec![(t, "in sample | out of sample".to_string())])
                .unwrap_or_default(),
            size: (1200, 620),
        };
        if opts.format.png() {
            w.png(&format!("{FILES_DIR}/best_equity.png"), &eq)?;
        }
        if opts.format.html() {
            let svg = w.svg("best_equity", &eq)?;
            let mut cap = downsample_caption(data.best.equity.ts.len(), 1200);
            if let Some(t) = split {
                let _ = write!(cap, " The dashed line marks the split at {}: the combination was chosen on the bars before it.", fmt_us(t));
            }
            cap.push_str(&scale_caption(opts.scale, &eq));
            body.push_str(&section("best", "Best combination", &figure(&svg, &cap)));
        }
    }
    body.push_str(&walk_forward_section(&mut w, dir, &axes, opts)?);
    body.push_str(&memory_section(&mut w, data.memory.as_ref(), opts)?);
    if opts.format.html() {
        body.push_str(&section(
            "details",
            "Sweep details",
            &details_html(&data.sweep),
        ));
    }
    let html = opts.format.html().then(|| {
        let subtitle = format!(
            "{} combinations · ranked by {} on the {} sample · atc-bt {}",
            json_str(&data.sweep, &["combinations"]),
            rank_by,
            ranked_on,
            json_str(&data.sweep, &["atc_bt_version"]),
        );
        html::page("ATC sweep report", &subtitle, &body)
    });
    w.finish(html.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_files_are_safe_and_unique() {
        let a = symbol_file_stem(0, "<script>alert(1)</script>");
        assert!(a.starts_with("sym-0001-_script_alert_1___script_-"), "{a}");
        let b = symbol_file_stem(9, "BTC/USDT");
        assert!(b.starts_with("sym-0010-BTC_USDT-"), "{b}");
        // Same index, names equal once made safe or cut: still different.
        let long = "X".repeat(40);
        let names = [
            "BTC/USDT".to_string(),
            "BTC_USDT".to_string(),
            "btc_usdt".to_string(),
            format!("{long}A"),
            format!("{long}B"),
            "..".to_string(),
            String::new(),
            "\u{1b}[2J".to_string(),
        ];
        let stems: std::collections::BTreeSet<String> =
            names.iter().map(|n| symbol_file_stem(0, n)).collect();
        assert_eq!(stems.len(), names.len());
        for s in &stems {
            assert!(s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
            assert!(s.len() <= 4 + 5 + 32 + 9 + 2, "{s}");
        }
    }

    #[test]
    fn chooses_best_and_worst() {
        let mut m = BTreeMap::new();
        for (s, r) in [("A", 0.1), ("B", -0.2), ("C", 0.3), ("D", 0.0), ("E", 0.2)] {
            let mut x = BTreeMap::new();
            x.insert("total_return".to_string(), serde_json::json!(r));
            m.insert(s.to_string(), x);
        }
        assert_eq!(choose_symbols(&m, SymbolsInReport::Top(1)), vec!["C", "B"]);
        assert_eq!(choose_symbols(&m, SymbolsInReport::All).len(), 5);
    }

    #[test]
    fn monthly_returns_chain_from_previous_month_end() {
        let day = 86_400_000_000i64;
        // 2024-01-01 .. 2024-03-01 daily-ish.
        let t0 = 1_704_067_200_000_000i64;
        let ts: Vec<i64> = (0..61).map(|i| t0 + i * day).collect();
        let values: Vec<f64> = (0..61).map(|i| 100.0 + i as f64).collect();
        let (yearly, r) = period_returns(&Series { ts, values });
        assert!(!yearly);
        let jan = r[&2024][&1];
        let feb = r[&2024][&2];
        assert!((jan - (130.0 / 100.0 - 1.0)).abs() < 1e-12);
        assert!((feb - (159.0 / 130.0 - 1.0)).abs() < 1e-12);
    }
}
