//! The main job: replay the selected symbols through the ATC engine and
//! trade its direction (`atc-bt run`). Callable from Rust without the CLI.
//!
//! Per symbol (in parallel, results in selection order, so any thread count
//! gives bit-identical output): the engine sees the warm-up history plus the
//! window, never a bar after `--to`; the backtester trades the window.

pub mod output;
pub mod shared;
pub mod strategy;

use std::ops::Range;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use std::path::Path;

use crate::backtest::annualise::mixed_frequencies;
use crate::backtest::book::Allocation;
use crate::backtest::{
    benchmark_metrics, metrics_of_stats, periods_per_year_in, portfolio, simulate, Bars, Calendar,
    Curve, ExecConfig, Metrics, MetricsOptions, SymbolRun, TradeStat,
};
use crate::cache::{lookup_signals_once, store_signals_once, Cache};
use crate::data::{fmt_ts, window, Dataset, SignalsFile};
use crate::engine::{compute_batch, BatchDetail};
pub use strategy::{Execution, MetricsSettings, Strategy, StrategyError};

/// What to trade: series indices into [`Dataset::series`] and the window.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Series to run, in output order.
    pub series: Vec<usize>,
    /// First traded bar time (µs UTC), inclusive.
    pub from: Option<i64>,
    /// Last traded bar time (µs UTC), inclusive.
    pub to: Option<i64>,
    /// Bars of history before the window that the engine sees (all if None).
    pub warmup_bars: Option<usize>,
}

impl RunPlan {
    /// The plan with `to` set to the last bar any of its series has in the
    /// window (`None` if none has one). The window's bars are unchanged;
    /// what changes is that `to` is a bar of the selection, so a symbol
    /// counts as ending inside the window (closed at its last bar, see
    /// [`ActiveSeries::data_ends`]) only if others trade after it. Pin the
    /// whole selection's plan *before* splitting it into shards, so every
    /// shard judges the same end.
    pub fn pinned(mut self, data: &Dataset) -> RunPlan {
        self.to = last_bar(data, &self.series, self.from, self.to).or(self.to);
        self
    }
}

/// The last bar time (µs UTC) in `[from, to]` over `series`; `None` if
/// none has a bar there.
pub fn last_bar(
    data: &Dataset,
    series: &[usize],
    from: Option<i64>,
    to: Option<i64>,
) -> Option<i64> {
    let mut last = None;
    for (k, &i) in series.iter().enumerate() {
        let info = &data.series()[i];
        let t = match to {
            // The store's index knows each series' last bar: no page of
            // the series is read (reading one maps 64 KiB around it, which
            // for 10,000 series made 540 MB resident before the run began).
            None => (info.bars > 0).then_some(info.last_ts),
            Some(to) => {
                let ts = data.view(i).ts;
                let end = ts.partition_point(|&x| x <= to);
                if k % RUN_CHUNK == RUN_CHUNK - 1 {
                    data.release_all();
                }
                end.checked_sub(1).and_then(|e| ts.get(e)).copied()
            }
        };
        if let Some(t) = t {
            if from.is_none_or(|f| t >= f) {
                last = Some(last.map_or(t, |l: i64| l.max(t)));
            }
        }
    }
    if to.is_some() {
        data.release_all();
    }
    last
}

/// A symbol left out of the run, with why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    /// Series name.
    pub symbol: String,
    /// The reason, as shown to the user.
    pub reason: String,
}

/// One symbol's result.
#[derive(Debug, Clone)]
pub struct SymbolResult {
    /// The simulated sub-account.
    pub run: SymbolRun,
    /// Its metrics.
    pub metrics: Metrics,
    /// Close prices over the window bars.
    pub close: Vec<f64>,
    /// Average signal over the window bars.
    pub avg: Vec<f64>,
    /// Direction over the window bars.
    pub dir: Vec<i8>,
    /// Index range of the window in the series.
    pub window: Range<usize>,
    /// Bars the engine saw (warm-up + window).
    pub engine_bars: usize,
    /// The calendar (time zone) of the series: its metrics are judged in it.
    pub calendar: Calendar,
    /// Shared cash only: the symbol's contribution (capital plus what it
    /// made or lost, per window bar), the curve its metrics and its
    /// `drawdown` column are computed on; `None` for a sub-account, whose
    /// `run.equity` is that curve.
    pub contribution: Option<Vec<f64>>,
}

/// Everything a run produces, before it is written.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Per-symbol results in plan order.
    pub symbols: Vec<SymbolResult>,
    /// Symbols left out (no data in the window, engine refused).
    pub skipped: Vec<Skipped>,
    /// Portfolio equity curve.
    pub portfolio: Curve,
    /// Buy & hold benchmark under the same split.
    pub benchmark: Curve,
    /// Portfolio metrics (alpha/beta against the benchmark).
    pub portfolio_metrics: Metrics,
    /// Benchmark metrics.
    pub benchmark_metrics: Metrics,
    /// Capital of each sub-account.
    pub capital_per_symbol: f64,
    /// Engine bars processed (warm-up included), for throughput.
    pub engine_bars: usize,
    /// Warnings about the results (mixed bar frequencies).
    pub warnings: Vec<String>,
    /// The metric settings the results were computed with.
    pub settings: MetricsSettings,
}

/// What a run keeps of one symbol once its bars are written: enough for
/// `run.json`, `metrics.json` and the terminal summary.
#[derive(Debug, Clone)]
pub struct SymbolSummary {
    /// Series name.
    pub symbol: String,
    /// Its metrics.
    pub metrics: Metrics,
    /// Bars the engine saw (warm-up + window).
    pub engine_bars: usize,
    /// Bars traded (the window).
    pub window_bars: usize,
}

impl SymbolSummary {
    /// The summary of a symbol's full result.
    pub fn of(s: &SymbolResult) -> SymbolSummary {
        SymbolSummary {
            symbol: s.run.symbol.clone(),
            metrics: s.metrics.clone(),
            engine_bars: s.engine_bars,
            window_bars: s.run.ts.len(),
        }
    }
}

/// A run streamed to its directory by [`run_to_dir`]: everything of
/// [`RunResult`] except the per-bar vectors of each symbol, which are
/// already on disk.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Per-symbol summaries in plan order.
    pub symbols: Vec<SymbolSummary>,
    /// Symbols left out (no data in the window, engine refused).
    pub skipped: Vec<Skipped>,
    /// Portfolio equity curve.
    pub portfolio: Curve,
    /// Buy & hold benchmark under the same split.
    pub benchmark: Curve,
    /// Portfolio metrics (alpha/beta against the benchmark).
    pub portfolio_metrics: Metrics,
    /// Benchmark metrics.
    pub benchmark_metrics: Metrics,
    /// Capital of each sub-account.
    pub capital_per_symbol: f64,
    /// Engine bars processed (warm-up included), for throughput.
    pub engine_bars: usize,
    /// Warnings about the results (mixed bar frequencies).
    pub warnings: Vec<String>,
}

impl RunResult {
    /// The summary of an in-memory result (what [`run_to_dir`] returns for
    /// the same run).
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            symbols: self.symbols.iter().map(SymbolSummary::of).collect(),
            skipped: self.skipped.clone(),
            portfolio: self.portfolio.clone(),
            benchmark: self.benchmark.clone(),
            portfolio_metrics: self.portfolio_metrics.clone(),
            benchmark_metrics: self.benchmark_metrics.clone(),
            capital_per_symbol: self.capital_per_symbol,
            engine_bars: self.engine_bars,
            warnings: self.warnings.clone(),
        }
    }
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No selected symbol has a bar in the window.
    #[error(
        "no selected symbol has data between {from} and {to}; the selected data covers {covers}"
    )]
    EmptyWindow {
        /// Window start as text.
        from: String,
        /// Window end as text.
        to: String,
        /// The range the data covers.
        covers: String,
    },
    /// Every selected series was left out before the run (invalid data).
    #[error("no series to run: every selected series was left out of the store for bad data ({count} in all; {first})\n  hint: `atc-bt data info` lists every problem; fix or drop the rows in the source files")]
    NothingSelected {
        /// How many were left out.
        count: usize,
        /// The first few, with their reasons.
        first: String,
    },
    /// Every series with data in the window was skipped while running.
    #[error("every selected series was skipped ({count} in all): {first}\n  hint: the reasons above name each series; fix the data or change the parameters")]
    AllSkipped {
        /// How many were skipped.
        count: usize,
        /// The first few, with their reasons.
        first: String,
    },
    /// A symbol failed and `--strict` was given.
    #[error("{symbol}: {reason} (without --strict the symbol would be skipped)")]
    Strict {
        /// Series name.
        symbol: String,
        /// What went wrong.
        reason: String,
    },
    /// A parameter is out of range.
    #[error(transparent)]
    Params(#[from] crate::engine::EngineError),
    /// Writing streamed results failed.
    #[error("cannot write results: {message}")]
    Output {
        /// What went wrong.
        message: String,
    },
    /// The shared account was asked to trade on a shard (the account
    /// needs every symbol: a shard stores its signals and `merge` runs
    /// the account).
    #[error("the shared account cannot trade on a shard (it needs every symbol's signals): a shard of a shared run stores its signals, and `atc-bt merge` runs the account")]
    SharedSharded,
    /// The shared account's equity or gross exposure overflowed (not a
    /// finite number): equal-split skips such a series; one account
    /// cannot be partly skipped, so the run stops.
    #[error(
        "the shared account's {what} is not a finite number at {ts} (bar {bar} of the timeline): \
         the amounts overflow 64-bit floats; use a smaller --capital"
    )]
    SharedNonFinite {
        /// `equity` or `gross`.
        what: &'static str,
        /// Index in the union timeline.
        bar: usize,
        /// That bar's time.
        ts: String,
    },
    /// The backtester refused its input.
    #[error("{symbol}: {source}")]
    Backtest {
        /// Series name.
        symbol: String,
        /// The backtester's error.
        source: crate::backtest::BacktestError,
    },
}

/// Skipped series as lines for the user, one per reason with up to five
/// names, so a window that excludes hundreds of symbols stays readable.
pub fn skipped_lines(skipped: &[Skipped]) -> Vec<String> {
    let mut by_reason: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for s in skipped {
        by_reason.entry(&s.reason).or_default().push(&s.symbol);
    }
    by_reason
        .into_iter()
        .map(|(reason, names)| {
            let shown: Vec<String> = names
                .iter()
                .take(5)
                .map(|n| crate::term::quote(n).into_owned())
                .collect();
            let more = if names.len() > 5 {
                format!(" and {} more", names.len() - 5)
            } else {
                String::new()
            };
            format!(
                "warning: skipped {} series ({}{more}): {reason}",
                names.len(),
                shown.join(", ")
            )
        })
        .collect()
}

/// A selected series with data in the window.
#[derive(Debug, Clone)]
pub struct ActiveSeries {
    /// Index into [`Dataset::series`].
    pub idx: usize,
    /// First bar the engine sees (warm-up start).
    pub start: usize,
    /// The traded window (absolute bar indices).
    pub window: Range<usize>,
    /// The series' data ends inside the run's window: its last bar is the
    /// window's last for it, and the window goes on after it (the plan's
    /// `to`, or the last bar of the other series) for longer than the
    /// longest gap in the series' own history ([`ended_before`]). A
    /// position held there is closed at that bar's close.
    pub data_ends: bool,
}

/// Splits the plan's series into those with bars in the window and those
/// without; errors when none has any. The window ends at `plan.to` (see
/// [`RunPlan::pinned`]) or, without one, at the last bar of the series
/// with data in it; a series whose data stops before that end
/// [`data_ends`](ActiveSeries::data_ends).
pub fn prepare(
    data: &Dataset,
    plan: &RunPlan,
) -> Result<(Vec<ActiveSeries>, Vec<Skipped>), RunError> {
    let series = data.series();
    if plan.series.is_empty() {
        let bad = data.invalid();
        return Err(RunError::NothingSelected {
            count: bad.len(),
            first: bad
                .iter()
                .take(3)
                .map(|b| {
                    format!(
                        "{}: row {}: {}",
                        crate::term::quote(&b.name),
                        b.row,
                        b.problem
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    let mut active = Vec::new();
    let mut skipped = Vec::new();
    for (k, &idx) in plan.series.iter().enumerate() {
        // Only a few pages of each series are read, but fault-around maps
        // their neighbours: release them now and then.
        if k % RUN_CHUNK == RUN_CHUNK - 1 {
            data.release_all();
        }
        let view = data.view(idx);
        // A `from` at or before the series' first bar, or a `to` at or
        // after its last (the store's index has both), cuts nothing: no
        // timestamp is read to find that (a binary search faulted in a
        // dozen pages of every series).
        let info = &series[idx];
        let from = plan.from.filter(|&f| info.bars == 0 || f > info.first_ts);
        let to = plan.to.filter(|&t| info.bars == 0 || t < info.last_ts);
        match window(view.ts, from, to, plan.warmup_bars) {
            Some((start, win)) => active.push(ActiveSeries {
                idx,
                start,
                // Whether the window goes on after it is known below.
                data_ends: win.end == view.ts.len(),
                window: win,
            }),
            None => skipped.push(Skipped {
                symbol: series[idx].name.clone(),
                reason: "no bars in the window".into(),
            }),
        }
    }
    if active.is_empty() {
        let first = plan
            .series
            .iter()
            .map(|&i| series[i].first_ts)
            .min()
            .unwrap_or(0);
        let last = plan
            .series
            .iter()
            .map(|&i| series[i].last_ts)
            .max()
            .unwrap_or(0);
        return Err(RunError::EmptyWindow {
            from: plan.from.map(fmt_ts).unwrap_or_else(|| "the start".into()),
            to: plan.to.map(fmt_ts).unwrap_or_else(|| "the end".into()),
            covers: format!("{} to {}", fmt_ts(first), fmt_ts(last)),
        });
    }
    // Each window's last bar: from the store's index where the window runs
    // to the end of the series, so no page is read (reading one maps 64
    // KiB around it: 10,000 series made 640 MB resident here).
    let lasts: Vec<i64> = active
        .iter()
        .enumerate()
        .map(|(k, a)| {
            let info = &series[a.idx];
            if a.window.end == info.bars {
                return info.last_ts;
            }
            if k % RUN_CHUNK == RUN_CHUNK - 1 {
                data.release_all();
            }
            data.view(a.idx).ts[a.window.end - 1]
        })
        .collect();
    data.release_all();
    let end = plan
        .to
        .unwrap_or_else(|| lasts.iter().copied().max().unwrap_or(i64::MAX));
    for (k, (a, &last)) in active.iter_mut().zip(&lasts).enumerate() {
        // The whole series' timestamps are read only for one that stops
        // before the end (delisted, or a weekend away from it).
        a.data_ends = a.data_ends && last < end && ended_before(data.view(a.idx).ts, end);
        if k % RUN_CHUNK == RUN_CHUNK - 1 {
            data.release_all();
        }
    }
    data.release_all();
    Ok((active, skipped))
}

/// Whether a series whose bars are `ts` (sorted, µs UTC) has ended by
/// `end`: the run goes on after its last bar for longer than the longest
/// gap between two of its own bars. A weekday stock whose last bar is a
/// Friday has not ended when a 24/7 coin trades on to Sunday (its history
/// has weekend gaps), nor has a series stamped at Tokyo midnight when a UTC
/// series trades on to UTC midnight of the same date; a symbol delisted a
/// month before the others has. A series with one bar has ended at any
/// later `end`.
pub fn ended_before(ts: &[i64], end: i64) -> bool {
    let Some(&last) = ts.last() else {
        return false;
    };
    let longest_gap = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    end.saturating_sub(last) > longest_gap
}

/// The calendar of series `idx`: its source's time zone, else UTC (an
/// unknown zone, which the store refuses to record, reads as UTC).
pub fn series_calendar(data: &Dataset, idx: usize) -> Calendar {
    Calendar::from_zone(data.series()[idx].tz.as_deref()).unwrap_or_default()
}

/// The metric options of series `a` under `settings`: its calendar, and
/// its periods per year resolved once from its window's timestamps (a
/// sweep reuses them for every combination).
pub fn series_options(
    data: &Dataset,
    a: &ActiveSeries,
    settings: &MetricsSettings,
) -> MetricsOptions {
    let calendar = series_calendar(data, a.idx);
    let ppy = settings
        .periods_per_year
        .unwrap_or_else(|| periods_per_year_of(&data.view(a.idx).ts[a.window.clone()], &calendar));
    MetricsOptions {
        periods_per_year: Some(ppy),
        risk_free: settings.risk_free,
        calendar,
    }
}

/// [`periods_per_year_in`], kept for the last window seen on this thread:
/// the symbols of one calendar share their timestamps, and inferring the
/// frequency (a median of the gaps, the weekday of every bar) once per
/// symbol was 2–3% of a run's CPU. A pure function of the timestamps and
/// the calendar's name, so the result is the same bits.
fn periods_per_year_of(ts: &[i64], calendar: &Calendar) -> f64 {
    type Last = (Vec<i64>, Option<Calendar>, f64);
    thread_local! {
        static LAST: std::cell::RefCell<Last> =
            const { std::cell::RefCell::new((Vec::new(), None, 0.0)) };
    }
    LAST.with_borrow_mut(|(t, c, ppy)| {
        if t.as_slice() != ts || c.as_ref() != Some(calendar) {
            *ppy = periods_per_year_in(ts, calendar);
            t.clear();
            t.extend_from_slice(ts);
            *c = Some(calendar.clone());
        }
        *ppy
    })
}

/// The bars a backtest of `a` reads (engine start to window end) and its
/// window inside them.
pub(crate) fn window_bars<'d>(
    data: &'d Dataset,
    a: &ActiveSeries,
) -> (Bars<'d>, std::ops::Range<usize>) {
    let view = data.view(a.idx);
    let (start, end) = (a.start, a.window.end);
    let bars = Bars {
        ts: &view.ts[start..end],
        open: &view.open[start..end],
        high: &view.high[start..end],
        low: &view.low[start..end],
        close: &view.close[start..end],
    };
    (bars, a.window.start - start..end - start)
}

/// Trades one series given the engine's average signal and direction over
/// `a.start..a.window.end` (the bars the engine saw); its metrics use
/// `opts` (from [`series_options`]).
#[allow(clippy::too_many_arguments)]
pub fn trade_series(
    data: &Dataset,
    a: &ActiveSeries,
    avg: &[f64],
    dir: &[i8],
    capital: f64,
    cfg: &ExecConfig,
    opts: &MetricsOptions,
) -> Result<SymbolResult, Skipped> {
    let name = &data.series()[a.idx].name;
    let (bars, local) = window_bars(data, a);
    let run = simulate(name, bars, dir, local.clone(), capital, cfg, a.data_ends).map_err(|e| {
        Skipped {
            symbol: name.clone(),
            reason: e.to_string(),
        }
    })?;
    if let Some(reason) = non_finite(&run, a) {
        return Err(Skipped {
            symbol: name.clone(),
            reason,
        });
    }
    let m = run.metrics_with(opts);
    Ok(SymbolResult {
        metrics: m,
        close: data.view(a.idx).close[a.window.clone()].to_vec(),
        avg: avg[local.clone()].to_vec(),
        dir: dir[local].to_vec(),
        window: a.window.clone(),
        engine_bars: a.window.end - a.start,
        calendar: opts.calendar.clone(),
        run,
        contribution: None,
    })
}

/// Why `run` (series `a`'s simulation) is left out, if its equity or
/// benchmark is not finite somewhere. Validation keeps prices where the
/// arithmetic stays finite; should a sub-account still overflow, it is
/// left out rather than turn the portfolio into NaN.
pub fn non_finite(run: &SymbolRun, a: &ActiveSeries) -> Option<String> {
    // A branch-free test first (it vectorises: a sweep checks every
    // symbol of every combination); the search only when it fails.
    let finite = |v: &[f64]| v.iter().fold(true, |ok, x| ok & x.is_finite());
    if finite(&run.equity) && finite(&run.benchmark) {
        return None;
    }
    let at = |v: &[f64]| v.iter().position(|v| !v.is_finite());
    let (what, k) = match (at(&run.equity), at(&run.benchmark)) {
        (Some(k), _) => ("equity", k),
        (None, Some(k)) => ("buy & hold equity", k),
        (None, None) => return None,
    };
    Some(format!(
        "its {what} is not a finite number at bar {} ({}); left out so the portfolio stays finite",
        a.window.start + k,
        fmt_ts(run.ts.get(k).copied().unwrap_or(0))
    ))
}

/// Sums the sub-accounts into the portfolio and benchmark (in the order of
/// `symbols`) and computes their metrics under `settings`.
pub fn aggregate(
    symbols: Vec<SymbolResult>,
    skipped: Vec<Skipped>,
    capital_per_symbol: f64,
    settings: &MetricsSettings,
) -> RunResult {
    aggregate_with(symbols, skipped, capital_per_symbol, settings, None)
}

/// [`aggregate`], with the portfolio's curve given (`Some`: the shared
/// account's) instead of summed from the symbols; the benchmark is still
/// their sum.
fn aggregate_with(
    symbols: Vec<SymbolResult>,
    skipped: Vec<Skipped>,
    capital_per_symbol: f64,
    settings: &MetricsSettings,
    account: Option<Curve>,
) -> RunResult {
    let runs: Vec<&SymbolRun> = symbols.iter().map(|s| &s.run).collect();
    let (summed, benchmark_curve) = portfolio(&runs, capital_per_symbol);
    let portfolio_curve = account.unwrap_or(summed);
    let trades: Vec<TradeStat> = runs
        .iter()
        .flat_map(|r| r.trades.iter().map(TradeStat::of))
        .collect();
    let fees: Vec<f64> = runs.iter().map(|r| r.total_fees).collect();
    let opts = settings.options(common_calendar(symbols.iter().map(|s| &s.calendar)));
    let (portfolio_metrics, benchmark_metrics) = portfolio_metrics(
        &portfolio_curve,
        &benchmark_curve,
        &trades,
        &fees,
        capital_per_symbol,
        &opts,
    );
    let engine_bars = symbols.iter().map(|s| s.engine_bars).sum();
    let warnings = frequency_warnings(
        symbols
            .iter()
            .map(|s| (s.run.symbol.as_str(), s.metrics.periods_per_year)),
        &portfolio_metrics,
    );
    RunResult {
        symbols,
        skipped,
        portfolio: portfolio_curve,
        benchmark: benchmark_curve,
        portfolio_metrics,
        benchmark_metrics,
        capital_per_symbol,
        engine_bars,
        warnings,
        settings: settings.clone(),
    }
}

/// The mixed-frequency warning of a plan before anything is computed (what
/// [`aggregate`] finds after a run): each series' periods per year in its
/// window, and the portfolio's on the union of the windows. A sweep, which
/// keeps no per-symbol summary, reports it from here.
pub fn plan_warnings(
    data: &Dataset,
    plan: &RunPlan,
    settings: &MetricsSettings,
) -> Result<Vec<String>, RunError> {
    let (active, _) = prepare(data, plan)?;
    let per_symbol: Vec<(String, f64, Calendar)> = active
        .iter()
        .map(|a| {
            let o = series_options(data, a, settings);
            let ppy = o.periods_per_year.unwrap_or(252.0);
            (data.series()[a.idx].name.clone(), ppy, o.calendar)
        })
        .collect();
    let calendar = common_calendar(per_symbol.iter().map(|s| &s.2));
    let portfolio = settings
        .periods_per_year
        .unwrap_or_else(|| periods_per_year_in(&window_timeline(data, &active), &calendar));
    Ok(
        mixed_frequencies(per_symbol.iter().map(|s| (s.0.as_str(), s.1)), portfolio)
            .into_iter()
            .collect(),
    )
}

/// The portfolio's calendar: the symbols' common time zone, or UTC when
/// they differ (or there are none).
pub fn common_calendar<'a>(mut calendars: impl Iterator<Item = &'a Calendar>) -> Calendar {
    let Some(first) = calendars.next() else {
        return Calendar::utc();
    };
    if calendars.all(|c| c == first) {
        first.clone()
    } else {
        Calendar::utc()
    }
}

/// The mixed-frequency warning (if the symbols' periods per year differ),
/// as a list for `run.json`.
pub fn frequency_warnings<'a>(
    per_symbol: impl IntoIterator<Item = (&'a str, f64)>,
    portfolio: &Metrics,
) -> Vec<String> {
    mixed_frequencies(per_symbol, portfolio.periods_per_year)
        .into_iter()
        .collect()
}

/// The portfolio's and the benchmark's metrics, from the summed curves, every
/// trade and each sub-account's fees (one entry per sub-account, in order),
/// with `opts` (the portfolio's calendar; periods per year from its own
/// timeline unless overridden).
pub fn portfolio_metrics(
    portfolio_curve: &Curve,
    benchmark_curve: &Curve,
    trades: &[TradeStat],
    fees: &[f64],
    capital_per_symbol: f64,
    opts: &MetricsOptions,
) -> (Metrics, Metrics) {
    // The portfolio starts with the capital of the sub-accounts it sums.
    let initial = capital_per_symbol * fees.len() as f64;
    // Both curves share the timeline: infer their periods per year once.
    let opts = MetricsOptions {
        periods_per_year: Some(
            opts.periods_per_year
                .unwrap_or_else(|| periods_per_year_in(&portfolio_curve.ts, &opts.calendar)),
        ),
        ..opts.clone()
    };
    let m = metrics_of_stats(
        initial,
        &portfolio_curve.ts,
        &portfolio_curve.equity,
        &benchmark_curve.equity,
        trades,
        Some(&portfolio_curve.exposure()),
        fees.iter().sum(),
        &opts,
    );
    (m, benchmark_metrics(initial, benchmark_curve, &opts))
}

/// The error of a run in which every series with data in the window was
/// skipped (`skipped` holds them all).
pub fn all_skipped(skipped: &[Skipped]) -> RunError {
    RunError::AllSkipped {
        count: skipped.len(),
        first: skipped
            .iter()
            .take(3)
            .map(|s| format!("{}: {}", crate::term::quote(&s.symbol), s.reason))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Collects per-symbol outcomes: failures are skipped, or end the run with
/// `strict`.
pub fn collect(
    outcomes: Vec<Result<SymbolResult, Skipped>>,
    skipped: &mut Vec<Skipped>,
    strict: bool,
) -> Result<Vec<SymbolResult>, RunError> {
    let mut symbols = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        match o {
            Ok(r) => symbols.push(r),
            Err(s) if strict => {
                return Err(RunError::Strict {
                    symbol: s.symbol,
                    reason: s.reason,
                })
            }
            Err(s) => skipped.push(s),
        }
    }
    Ok(symbols)
}

/// A series' average signal and direction over the bars the engine saw.
pub type Signals = (Vec<f64>, Vec<i8>);

/// Symbols per engine call in [`run`]: enough batches of
/// [`crate::engine::BATCH_LANES`] to keep every thread busy, few enough that
/// the engine's outputs in flight stay small.
pub const RUN_CHUNK: usize = 256;

/// Runs the plan without the result cache. `on_done` is called once per
/// finished symbol (progress).
pub fn run(
    data: &Dataset,
    plan: &RunPlan,
    strategy: &Strategy,
    strict: bool,
    on_done: &(dyn Fn() + Sync),
) -> Result<RunResult, RunError> {
    run_with_cache(
        data,
        plan,
        strategy,
        strict,
        None,
        &Cache::disabled(),
        &|_| on_done(),
    )
}

/// A content hash of the exact bars the engine sees for one series: the
/// series' close hash (computed once by the data store) with the span, so
/// the price data is never rehashed per result.
pub fn span_hash(close_hash: &str, start: usize, end: usize) -> String {
    let mut h = blake3::Hasher::new();
    h.update(close_hash.as_bytes());
    h.update(&(start as u64).to_le_bytes());
    h.update(&(end as u64).to_le_bytes());
    h.finalize().to_hex().to_string()
}

/// [`run`] with the capital split given: `capital_symbols` is the number
/// of sub-accounts the capital is divided by (a shard passes the whole
/// selection's count of symbols with data in the window; `None` counts the
/// plan's own).
pub fn run_with(
    data: &Dataset,
    plan: &RunPlan,
    strategy: &Strategy,
    strict: bool,
    capital_symbols: Option<usize>,
    on_done: &(dyn Fn() + Sync),
) -> Result<RunResult, RunError> {
    run_with_cache(
        data,
        plan,
        strategy,
        strict,
        capital_symbols,
        &Cache::disabled(),
        &|_| on_done(),
    )
}

/// Runs the plan, taking the engine's per-symbol signals from `cache` when
/// present (bit-identical to computing them), with the capital split of
/// [`run_with`]. `on_done(bars)` is called once per finished symbol with
/// the bars the engine saw. Holds every symbol's per-bar result in memory;
/// [`run_to_dir`] streams them to disk instead.
pub fn run_with_cache(
    data: &Dataset,
    plan: &RunPlan,
    strategy: &Strategy,
    strict: bool,
    capital_symbols: Option<usize>,
    cache: &Cache,
    on_done: &(dyn Fn(usize) + Sync),
) -> Result<RunResult, RunError> {
    run_with_signals(
        data,
        plan,
        strategy,
        (strict, capital_symbols),
        cache,
        on_done,
        None,
    )
}

/// [`run_with_cache`] taking each series' average signal and direction
/// from `signals` (`--signals FILE`) instead of the engine when given, as
/// [`run_to_dir_from`] does (a shard of a run on a signals file).
pub fn run_with_signals(
    data: &Dataset,
    plan: &RunPlan,
    strategy: &Strategy,
    (strict, capital_symbols): (bool, Option<usize>),
    cache: &Cache,
    on_done: &(dyn Fn(usize) + Sync),
    signals: Option<&SignalsFile>,
) -> Result<RunResult, RunError> {
    strategy.atc.validate()?;
    let (active, mut skipped) = prepare(data, plan)?;
    if strategy.execution.allocation == Allocation::Shared {
        let account = shared::account(
            (data, &active),
            (strategy, signals),
            (cache, strict, capital_symbols),
            on_done,
            &mut skipped,
        )?;
        let capital_per_symbol = account.capital_per_symbol;
        let mut symbols = Vec::with_capacity(active.len());
        let curve = account.emit(&shared::DataBars(data), strategy, &mut |r| {
            symbols.push(r);
            Ok(())
        })?;
        return Ok(aggregate_with(
            symbols,
            skipped,
            capital_per_symbol,
            &strategy.metrics,
            Some(curve),
        ));
    }
    let capital_per_symbol =
        strategy.execution.capital / capital_symbols.unwrap_or(active.len()) as f64;
    let mut sink = Collect(Vec::with_capacity(active.len()));
    run_chunks(
        data,
        &active,
        (strategy, signals),
        capital_per_symbol,
        cache,
        on_done,
        &mut sink,
    )?;
    let outcomes = sink.0;
    let symbols = collect(outcomes, &mut skipped, strict)?;
    if symbols.is_empty() && capital_symbols.is_none() {
        return Err(all_skipped(&skipped));
    }
    Ok(aggregate(
        symbols,
        skipped,
        capital_per_symbol,
        &strategy.metrics,
    ))
}

/// [`run_with_cache`] streamed into the run directory being written at
/// `dir` (the temporary directory of [`output::partial_dir`]), writing the
/// files of `outputs`: each chunk of symbols is encoded while the next one
/// computes, and the portfolio is summed as it goes, so memory holds a few
/// chunks of per-bar results however many symbols run. The files are
/// byte-identical to [`output::write_run_dir`] of [`run_with_cache`]'s
/// result at any thread count; `run.json` is the caller's (see
/// [`output::commit_run_dir`]).
#[allow(clippy::too_many_arguments)]
pub fn run_to_dir(
    data: &Dataset,
    plan: &RunPlan,
    strategy: &Strategy,
    strict: bool,
    capital_symbols: Option<usize>,
    cache: &Cache,
    on_done: &(dyn Fn(usize) + Sync),
    dir: &Path,
    outputs: output::Outputs,
) -> Result<RunSummary, RunError> {
    run_to_dir_from(
        data,
        plan,
        strategy,
        (strict, capital_symbols),
        cache,
        on_done,
        (dir, outputs),
        None,
    )
}

/// [`run_to_dir`] taking each series' average signal and direction from
/// `signals` (`--signals FILE`, aligned to its bars by
/// [`SignalsFile::aligned`]) instead of the engine when given; everything
/// downstream (execution, metrics, files) is the same. The plan's series
/// must have rows in the file ([`SignalsFile::check`]).
#[allow(clippy::too_many_arguments)]
pub fn run_to_dir_from(
    data: &Dataset,
    plan: &RunPlan,
    strategy: &Strategy,
    (strict, capital_symbols): (bool, Option<usize>),
    cache: &Cache,
    on_done: &(dyn Fn(usize) + Sync),
    (dir, outputs): (&Path, output::Outputs),
    signals: Option<&SignalsFile>,
) -> Result<RunSummary, RunError> {
    strategy.atc.validate()?;
    let (active, mut skipped) = prepare(data, plan)?;
    if strategy.execution.allocation == Allocation::Shared {
        // The account trades before any row can be written: the writer
        // starts once it knows the symbols traded (the benchmark's split),
        // then takes their rows in plan order.
        let timeline = window_timeline(data, &active);
        let account = shared::account(
            (data, &active),
            (strategy, signals),
            (cache, strict, capital_symbols),
            on_done,
            &mut skipped,
        )?;
        let mut writer = output::RunWriter::create(
            dir,
            timeline,
            account.capital_per_symbol,
            strategy.metrics.clone(),
            outputs,
            true,
        )
        .map_err(out_err)?;
        let curve = account.emit(&shared::DataBars(data), strategy, &mut |r| {
            writer.push(r).map_err(out_err)
        })?;
        writer.set_portfolio(curve);
        return writer.finish(skipped).map_err(out_err);
    }
    let capital_per_symbol =
        strategy.execution.capital / capital_symbols.unwrap_or(active.len()) as f64;
    let timeline = window_timeline(data, &active);
    let writer = output::RunWriter::create(
        dir,
        timeline,
        capital_per_symbol,
        strategy.metrics.clone(),
        outputs,
        false,
    )
    .map_err(out_err)?;
    let mut sink = Stream {
        writer,
        skipped,
        strict,
        traded: 0,
    };
    run_chunks(
        data,
        &active,
        (strategy, signals),
        capital_per_symbol,
        cache,
        on_done,
        &mut sink,
    )?;
    if sink.traded == 0 && capital_symbols.is_none() {
        return Err(all_skipped(&sink.skipped));
    }
    sink.writer.finish(sink.skipped).map_err(out_err)
}

fn out_err(e: output::OutputError) -> RunError {
    RunError::Output {
        message: e.to_string(),
    }
}

/// Where [`run_chunks`] hands each chunk's outcomes.
trait ChunkSink: Send {
    /// Work that runs beside the computation of the next chunk (encoding
    /// the previous one).
    fn background(&mut self) -> Result<(), RunError> {
        Ok(())
    }
    /// Takes a chunk's outcomes, in plan order.
    fn take(&mut self, part: Vec<Result<SymbolResult, Skipped>>) -> Result<(), RunError>;
}

/// Keeps every outcome in memory ([`run_with_cache`]).
struct Collect(Vec<Result<SymbolResult, Skipped>>);

impl ChunkSink for Collect {
    fn take(&mut self, part: Vec<Result<SymbolResult, Skipped>>) -> Result<(), RunError> {
        self.0.extend(part);
        Ok(())
    }
}

/// Streams outcomes into a [`output::RunWriter`] ([`run_to_dir`]).
struct Stream {
    writer: output::RunWriter,
    skipped: Vec<Skipped>,
    strict: bool,
    /// Symbols traded so far.
    traded: usize,
}

impl ChunkSink for Stream {
    fn background(&mut self) -> Result<(), RunError> {
        self.writer.drain().map_err(out_err)
    }

    fn take(&mut self, part: Vec<Result<SymbolResult, Skipped>>) -> Result<(), RunError> {
        for o in part {
            match o {
                Ok(r) => {
                    self.traded += 1;
                    self.writer.push(r).map_err(out_err)?
                }
                Err(s) if self.strict => {
                    return Err(RunError::Strict {
                        symbol: s.symbol,
                        reason: s.reason,
                    })
                }
                Err(s) => self.skipped.push(s),
            }
        }
        Ok(())
    }
}

/// Every timestamp of the active windows, sorted and de-duplicated: a
/// superset of the portfolio's timeline (a symbol the backtester refuses
/// drops out later). Each chunk of [`RUN_CHUNK`] series is merged one
/// window at a time on its own task, then the chunks' unions in pairs, so
/// memory is a few calendars, never symbols × bars; each series' pages
/// are released after reading.
pub(crate) fn window_timeline(data: &Dataset, active: &[ActiveSeries]) -> Vec<i64> {
    // Each chunk's union on its own task, then the unions merged in pairs
    // (a union is the same whatever the order).
    let unions: Vec<i64> = active
        .par_chunks(RUN_CHUNK)
        .map(|chunk| {
            let mut timeline: Vec<i64> = Vec::new();
            for a in chunk {
                let ts = &data.view(a.idx).ts[a.window.clone()];
                if !is_subset(ts, &timeline) {
                    timeline = merge_sorted(&timeline, ts);
                }
                data.release(a.idx);
            }
            // Fault-around maps neighbours' pages that per-series
            // releases miss: release everything after each chunk, or a
            // 10,000-symbol run holds most of the store resident (see
            // `Dataset::release_all`).
            data.release_all();
            timeline
        })
        .reduce(Vec::new, |a, b| {
            if is_subset(&b, &a) {
                a
            } else if is_subset(&a, &b) {
                b
            } else {
                merge_sorted(&a, &b)
            }
        });
    unions
}

/// Whether every element of sorted `a` is in sorted `b`.
fn is_subset(a: &[i64], b: &[i64]) -> bool {
    let mut j = match a.first() {
        Some(f) => b.partition_point(|x| x < f),
        None => return true,
    };
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j == b.len() || b[j] != x {
            return false;
        }
    }
    true
}

/// The sorted union of two sorted, de-duplicated slices.
fn merge_sorted(a: &[i64], b: &[i64]) -> Vec<i64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Streams the active series through the batched engine and the
/// backtester a chunk at a time, handing each chunk's outcomes (in plan
/// order) to `sink`, so the engine's working set stays a few chunks
/// whatever the symbol count and any thread count gives the same bits.
/// While a chunk computes, the sink's background work (encoding the
/// previous chunk) runs on the same pool. Signals found in the cache skip
/// the engine; the misses of a chunk are computed in one batch and stored.
fn run_chunks(
    data: &Dataset,
    active: &[ActiveSeries],
    (strategy, signals): (&Strategy, Option<&SignalsFile>),
    capital_per_symbol: f64,
    cache: &Cache,
    on_done: &(dyn Fn(usize) + Sync),
    sink: &mut dyn ChunkSink,
) -> Result<(), RunError> {
    let cfg = strategy.execution.exec_config();
    for chunk in active.chunks(RUN_CHUNK) {
        let (background, part) = rayon::join(
            || sink.background(),
            || {
                compute_chunk(
                    data,
                    chunk,
                    (strategy, signals),
                    capital_per_symbol,
                    cache,
                    on_done,
                    &cfg,
                )
            },
        );
        background?;
        sink.take(part)?;
    }
    sink.background()
}

/// One chunk of [`run_chunks`]: signals from the signals file, or from
/// the cache or the batched engine, then the backtest of each series.
fn compute_chunk(
    data: &Dataset,
    chunk: &[ActiveSeries],
    (strategy, file): (&Strategy, Option<&SignalsFile>),
    capital_per_symbol: f64,
    cache: &Cache,
    on_done: &(dyn Fn(usize) + Sync),
    cfg: &ExecConfig,
) -> Vec<Result<SymbolResult, Skipped>> {
    let signals = chunk_signals(data, chunk, (strategy, file), cache);
    let part: Vec<Result<SymbolResult, Skipped>> = chunk
        .par_iter()
        .zip(signals.into_par_iter())
        .map(|(a, sig)| {
            let result = sig
                .map_err(|reason| Skipped {
                    symbol: data.series()[a.idx].name.clone(),
                    reason,
                })
                .and_then(|(avg, dir)| {
                    let opts = series_options(data, a, &strategy.metrics);
                    trade_series(data, a, &avg, &dir, capital_per_symbol, cfg, &opts)
                });
            // Done with this series: let the kernel drop its mapped
            // pages, so resident memory does not grow with the number
            // of symbols.
            data.release(a.idx);
            on_done(a.window.end - a.start);
            result
        })
        .collect();
    data.release_all();
    part
}

/// The signals `(avg, dir)` of a chunk of series over the bars the engine
/// sees (`a.start..a.window.end`), in chunk order: from the signals file
/// (`--signals`) when given, else [`engine_signals`]. `Err` holds the
/// series' reason to be skipped.
fn chunk_signals(
    data: &Dataset,
    chunk: &[ActiveSeries],
    (strategy, file): (&Strategy, Option<&SignalsFile>),
    cache: &Cache,
) -> Vec<Result<Signals, String>> {
    let signals = match file {
        Some(file) => chunk
            .par_iter()
            .map(|a| {
                let name = &data.series()[a.idx].name;
                let ts = &data.view(a.idx).ts[a.start..a.window.end];
                Some(
                    file.aligned(name, ts)
                        .ok_or_else(|| "no rows in the signals file".to_string()),
                )
            })
            .collect(),
        None => engine_signals(data, chunk, &strategy.atc, cache),
    };
    signals
        .into_iter()
        .map(|s| s.unwrap_or_else(|| Err("no engine result".into())))
        .collect()
}

/// The engine's average signal and direction over each series' engine
/// bars (`a.start..a.window.end`), in `chunk`'s order: from the signals
/// cache when there, else computed in one batch and stored (bit-identical
/// either way). `Err` holds why a series has none (the engine refused it).
pub fn engine_signals(
    data: &Dataset,
    chunk: &[ActiveSeries],
    atc: &crate::engine::AtcParams,
    cache: &Cache,
) -> Vec<Option<Result<Signals, String>>> {
    let hashes: Vec<String> = chunk
        .iter()
        .map(|a| span_hash(&data.series()[a.idx].close_hash, a.start, a.window.end))
        .collect();
    // A run uses each series' signals once: the cache's memory tier
    // would only hold them until the process exits.
    let mut signals: Vec<Option<Result<Signals, String>>> = chunk
        .par_iter()
        .zip(&hashes)
        .map(|(a, h)| lookup_signals_once(cache, h, a.window.end - a.start, atc).map(Ok))
        .collect();
    let missing: Vec<usize> = (0..chunk.len()).filter(|&i| signals[i].is_none()).collect();
    if !missing.is_empty() {
        let closes: Vec<&[f64]> = missing
            .iter()
            .map(|&i| &data.view(chunk[i].idx).close[chunk[i].start..chunk[i].window.end])
            .collect();
        match compute_batch(&closes, atc, BatchDetail::Direction) {
            Ok(v) => {
                for (&i, r) in missing.iter().zip(v) {
                    signals[i] = Some(r.map(|o| (o.avg, o.dir)).map_err(|e| e.to_string()));
                }
            }
            Err(e) => {
                for &i in &missing {
                    signals[i] = Some(Err(e.to_string()));
                }
            }
        }
        missing.par_iter().for_each(|&i| {
            if let Some(Ok((avg, dir))) = &signals[i] {
                store_signals_once(cache, &hashes[i], atc, avg, dir);
            }
        });
    }
    signals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_names_the_curve_and_the_bar_of_the_window() {
        let mut run = SymbolRun {
            ts: vec![10, 20, 30],
            equity: vec![1.0, 2.0, 3.0],
            benchmark: vec![1.0, f64::INFINITY, 3.0],
            ..SymbolRun::default()
        };
        let a = ActiveSeries {
            idx: 0,
            start: 0,
            window: 5..8,
            data_ends: false,
        };
        let m = non_finite(&run, &a).unwrap();
        assert!(
            m.starts_with("its buy & hold equity is not a finite number at bar 6 "),
            "{m}"
        );
        run.equity[2] = f64::NAN;
        let m = non_finite(&run, &a).unwrap();
        assert!(
            m.starts_with("its equity is not a finite number at bar 7 "),
            "{m}"
        );
        run.equity[2] = 3.0;
        run.benchmark[1] = 2.0;
        assert!(non_finite(&run, &a).is_none());
    }

    #[test]
    fn end_of_data_is_not_a_weekend_or_a_time_zone() {
        const D: i64 = 86_400_000_000;
        // Mon 2021-01-04 00:00 UTC, then weekdays to Fri 2021-01-29.
        let mon = 1_609_718_400_000_000;
        let stock: Vec<i64> = (0..26)
            .map(|k| mon + k * D)
            .filter(|t| (t / D + 3) % 7 < 5)
            .collect();
        let fri = *stock.last().unwrap();
        // A coin trading on to Sunday: the stock has not ended.
        assert!(!ended_before(&stock, fri + 2 * D));
        // The same dates stamped at Tokyo midnight end 9 hours earlier.
        let tokyo: Vec<i64> = stock.iter().map(|t| t - 9 * D / 24).collect();
        assert!(!ended_before(&tokyo, fri));
        // Others trading a week past its last bar: ended (delisted).
        assert!(ended_before(&stock, fri + 7 * D));
        // One bar: any later end; never when nothing comes after it.
        assert!(ended_before(&[mon], mon + 1));
        assert!(!ended_before(&[mon], mon));
        assert!(!ended_before(&[], mon));
    }

    #[test]
    fn timeline_merge_is_the_sorted_union() {
        assert!(is_subset(&[], &[]));
        assert!(is_subset(&[2, 3], &[1, 2, 3, 4]));
        assert!(!is_subset(&[2, 5], &[1, 2, 3, 4]));
        assert!(!is_subset(&[0], &[1, 2]));
        assert!(!is_subset(&[5], &[1, 2]));
        assert_eq!(merge_sorted(&[1, 3, 5], &[2, 3, 6]), vec![1, 2, 3, 5, 6]);
        assert_eq!(merge_sorted(&[], &[2, 3]), vec![2, 3]);
    }

    /// The per-thread memo of [`periods_per_year_of`] answers what
    /// [`periods_per_year_in`] answers, whatever came before: the same bars
    /// in another calendar (weekday bars at 20:00 UTC are Tuesday to
    /// Saturday in Tokyo: 365 a year there, 252 in UTC), other bars, a
    /// prefix of the last ones, and the first ones again.
    #[test]
    fn periods_per_year_memo_answers_as_the_inference() {
        let day = 86_400_000_000i64;
        let monday_20h = 1_704_067_200_000_000 + 20 * 3_600_000_000; // 2024-01-01 20:00
        let weekdays: Vec<i64> = (0..400)
            .map(|k| monday_20h + (k / 5 * 7 + k % 5) * day)
            .collect();
        let hourly: Vec<i64> = (0..500).map(|k| monday_20h + k * 3_600_000_000).collect();
        let utc = Calendar::utc();
        let tokyo = Calendar::from_zone(Some("Asia/Tokyo")).unwrap();
        let cases: [(&[i64], &Calendar); 6] = [
            (&weekdays, &utc),
            (&weekdays, &tokyo),
            (&hourly, &tokyo),
            (&hourly[..3], &tokyo),
            (&weekdays, &utc),
            (&weekdays, &utc),
        ];
        let mut seen = Vec::new();
        for (ts, c) in cases {
            let want = periods_per_year_in(ts, c);
            assert_eq!(periods_per_year_of(ts, c).to_bits(), want.to_bits());
            seen.push(want);
        }
        assert_eq!(seen[..2], [252.0, 365.0], "the calendars differ");
        assert_ne!(seen[2], seen[3], "a prefix differs");
    }
}
