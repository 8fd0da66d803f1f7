//! The run page: `report.html` and the charts of a run directory (equity
//! against buy & hold, drawdown, returns, coverage, per-symbol charts, the
//! trade list and the statistics tables), and the parts a `run` draws
//! while it commits its directory ([`RunReportParts`], [`finish_run_report`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::charts::{self, CellFormat, EquityChart, GridChart, SymbolChart, UtilisationChart};
use super::html::{self, escape, figure, section};
use super::load::{self, Curve, RunData};
use super::page::*;
use super::{ReportError, ReportOptions, ReportSummary, SymbolsInReport, FILES_DIR};

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
    if spans.is_empty() || data.portfolio.ts.is_empty() {
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
    let ts = &data.portfolio.ts;
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

/// Columns of the per-symbol table (a subset keeps a 1,000-symbol page
/// small; `metrics.json` has them all).
/// The per-symbol table's columns.
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
/// bars are monthly or coarser. `ts` (µs) and `equity` are one curve's
/// columns. Returns (yearly?, year → period → return).
pub fn period_returns(ts: &[i64], equity: &[f64]) -> (bool, BTreeMap<i32, BTreeMap<u32, f64>>) {
    use chrono::Datelike;
    let n = ts.len();
    let mut gaps: Vec<i64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let median = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    // Monthly or coarser bars, or more than 40 years of them: by year.
    let years = match (ts.first(), ts.last()) {
        (Some(a), Some(b)) => (b - a) / (365 * 86_400_000_000),
        _ => 0,
    };
    let yearly = median >= 20 * 86_400_000_000 || years > 40;
    let mut out: BTreeMap<i32, BTreeMap<u32, f64>> = BTreeMap::new();
    let mut prev_end: Option<f64> = None;
    let mut i = 0;
    while i < n {
        let Some(t) = chrono::DateTime::from_timestamp_micros(ts[i]) else {
            i += 1;
            continue;
        };
        let key = (t.year(), if yearly { 0 } else { t.month() });
        let start_value = equity[i];
        let mut j = i;
        while j + 1 < n {
            let Some(u) = chrono::DateTime::from_timestamp_micros(ts[j + 1]) else {
                break;
            };
            if (u.year(), if yearly { 0 } else { u.month() }) != key {
                break;
            }
            j += 1;
        }
        let end = equity[j];
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

fn returns_chart(c: &Curve) -> Option<GridChart> {
    let (yearly, r) = period_returns(&c.ts, &c.equity);
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

/// Renders the report of a run directory.
pub fn render_run_report(dir: &Path, opts: &ReportOptions) -> Result<ReportSummary, ReportError> {
    render_run_report_parts(dir, opts).map(|(summary, _)| summary)
}

/// `#utilisation`: a shared-cash account's capital utilisation (gross /
/// equity) over time, from the `gross` column of its portfolio rows;
/// nothing for an equal-split run (no such column).
fn utilisation_section(
    w: &mut Writer,
    portfolio: &Curve,
    opts: &ReportOptions,
) -> Result<String, ReportError> {
    if portfolio.gross.is_empty() || portfolio.gross.len() != portfolio.ts.len() {
        return Ok(String::new());
    }
    let c = UtilisationChart {
        title: "Capital utilisation (gross exposure / equity)".into(),
        utilisation: load::Series {
            ts: portfolio.ts.clone(),
            values: portfolio.exposure(),
        },
        size: (1200, 320),
    };
    if opts.format.png() {
        w.png(&format!("{FILES_DIR}/utilisation.png"), &c)?;
    }
    if !opts.format.html() {
        return Ok(String::new());
    }
    let svg = w.svg("utilisation", &c)?;
    let mut cap = downsample_caption(portfolio.ts.len(), 1200);
    cap.push_str(" Gross exposure (Σ |position·close| over the held symbols) as a share of the shared account's equity at each close (the `gross` column of equity.parquet's portfolio rows); without leverage it stays at or below 100% (dashed); its peak is `max_gross_exposure`.");
    Ok(section(
        "utilisation",
        "Capital utilisation",
        &figure(&svg, &cap),
    ))
}

/// Version of the [`RunReportParts`] layout and of what the run report
/// draws: part of the key under which a cache keeps them, so a build that
/// draws differently never reuses another's charts.
pub const RUN_REPORT_LAYOUT: u32 = 4;

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
        // The restored charts, listed when they were restored.
        listed: crate::files::out::report_listing(dir),
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
    let title = match signals_label(run) {
        Some(label) => format!("Backtest report · {label}"),
        None => "ATC backtest report".into(),
    };
    let html = opts
        .format
        .html()
        .then(|| html::page(&title, &parts.subtitle, &body));
    w.finish(html.as_deref())
}

/// What drove a run that traded a `--signals` file rather than the ATC
/// (`run.json`'s `signals`): `Signals: own file <name>`; `None` for an
/// ATC run.
fn signals_label(run: &Value) -> Option<String> {
    let path = run.get("signals")?.get("path")?.as_str()?;
    let name = Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned());
    Some(format!("Signals: own file {name}"))
}

/// Renders the report of a run directory ([`render_run_report`]) and also
/// returns its result-derived half, for a cache to keep.
pub fn render_run_report_parts(
    dir: &Path,
    opts: &ReportOptions,
) -> Result<(ReportSummary, RunReportParts), ReportError> {
    // Of each symbol's metrics the report reads the table's columns and
    // the first and last bar (coverage).
    let read = |k: &str| SYMBOL_COLUMNS.contains(&k) || k == "start" || k == "end";
    let mut data: RunData = load::load_run_meta(dir, &read)?;
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
    let log_scale = opts
        .scale
        .resolve(data.portfolio.equity.iter().chain(&data.benchmark.equity));
    let eq = EquityChart {
        title: "Portfolio equity vs buy & hold".into(),
        strategy: curve_line(
            &format!(
                "Portfolio ({})",
                signals_label(&data.run).unwrap_or_else(|| "ATC".into())
            ),
            &data.portfolio,
        ),
        benchmark: (!data.benchmark.ts.is_empty())
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
        let mut cap = downsample_caption(data.portfolio.ts.len(), 1200);
        cap.push_str(&scale_caption(opts.scale, &eq));
        body.push_str(&section(
            "equity",
            "Equity and drawdown",
            &figure(&svg, &cap),
        ));
    }
    body.push_str(&utilisation_section(&mut w, &data.portfolio, opts)?);

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
    if let Some(c) = returns_chart(&data.portfolio) {
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

    // Per-symbol charts. A signals file's strength has no ATC thresholds.
    let own_signals = signals_label(&data.run);
    let threshold = |key: &str| {
        own_signals
            .is_none()
            .then(|| data.run.pointer(key).and_then(Value::as_f64))
            .flatten()
    };
    let long_th = threshold("/params/atc/long_threshold");
    let short_th = threshold("/params/atc/short_threshold");
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
            signal_caption: own_signals
                .as_ref()
                .map(|l| format!("Signal strength ({l})")),
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
        data.portfolio.ts.len(),
        data.portfolio
            .ts
            .first()
            .map_or(String::new(), |t| charts::date_label(*t as f64, 1e18)),
        data.portfolio
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
        let (yearly, r) = period_returns(&ts, &values);
        assert!(!yearly);
        let jan = r[&2024][&1];
        let feb = r[&2024][&2];
        assert!((jan - (130.0 / 100.0 - 1.0)).abs() < 1e-12);
        assert!((feb - (159.0 / 130.0 - 1.0)).abs() < 1e-12);
    }
}
