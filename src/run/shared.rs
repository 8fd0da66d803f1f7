//! A run with shared cash (`--allocation shared`): every symbol's signals
//! first, then one account trades them all ([`crate::backtest::book`]),
//! then the per-symbol rows are rebuilt one symbol at a time for the same
//! output files.
//!
//! The account needs every symbol's direction and strength at each bar
//! before it can trade the first one, so, unlike equal-split, the signals
//! of all symbols are held at once: only the window's `dir` (i8) and
//! `avg` (f64), plus the bar before it (the first window open's
//! decision): 9 bytes per bar, about 225 MB for 10,000 symbols × 2,500
//! bars. The per-bar results are not held: the book keeps each symbol's
//! ledger and the bars on which it traded, and [`SharedAccount::emit`]
//! hands the symbols' rows to the caller one at a time (the run
//! directory's writer streams them to disk as equal-split does).
//!
//! Two steps, one code path wherever the signals come from:
//! [`signals_of`] turns the engine's (or a `--signals` file's) output into
//! [`BookSeries`] (signals in memory, bars by reference); [`run_book`]
//! and [`SharedAccount::emit`] read the bars through a [`BarSource`]:
//! the memory-mapped data on one machine ([`DataBars`]), or the bars a
//! shard stored in its part when `merge` runs the account
//! ([`crate::shard::part`]).
//!
//! What the per-symbol rows mean in shared mode (README, *Shared cash*):
//! `position` is the units held at each close; `equity` is the
//! position's market value `units·close` (signed; 0 when flat), so the
//! portfolio's equity is cash plus the sum of the symbols' rows. A
//! symbol's metrics in `metrics.json` are those of its *contribution*:
//! the curve `capital + everything this symbol has made or lost so far`
//! (fees included). Its total return is its share of the account's
//! return (the symbols' total returns sum to the account's), its exposure
//! the fraction of the account's capital it held, its alpha and beta
//! against its own buy & hold of the whole capital; its trade statistics
//! come from its ledger. The portfolio's buy & hold benchmark is the same
//! `1/N` split as equal-split's.

use std::ops::Range;

use super::{
    chunk_signals, series_calendar, Cache, Curve, RunError, SignalsFile, Skipped, Strategy,
    SymbolResult, RUN_CHUNK,
};
use super::{ActiveSeries, Dataset};
use crate::backtest::annualise::periods_per_year_in;
use crate::backtest::book::{
    check_symbol, shared_book, BookConfig, BookSymbol, SharedRun, SymbolBook,
};
use crate::backtest::{metrics_of_stats, Bars, Calendar, MetricsOptions, SymbolRun, TradeStat};
use rayon::prelude::*;

/// One symbol's input to the shared account, wherever its signals came
/// from: `dir` and `avg` over bars `from..window.end` of its series
/// (`from` = the bar before the window, or the window's first bar when
/// the engine saw none before it), and what its output rows need. Its
/// bars are read through a [`BarSource`] with `src`.
#[derive(Debug, Clone)]
pub struct BookSeries {
    /// Series name.
    pub symbol: String,
    /// The key of its bars in the [`BarSource`] (a series index of the
    /// data, or a position in the bars a merge read).
    pub src: usize,
    /// Its calendar (the source's time zone).
    pub calendar: Calendar,
    /// First bar kept (absolute bar index of the series).
    pub from: usize,
    /// The traded window (absolute bar indices).
    pub window: Range<usize>,
    /// Bars the engine saw (warm-up + window).
    pub engine_bars: usize,
    /// See [`ActiveSeries::data_ends`].
    pub data_ends: bool,
    /// Direction per bar of `from..window.end`.
    pub dir: Vec<i8>,
    /// Average signal (strength) per bar of `from..window.end`.
    pub avg: Vec<f64>,
}

impl BookSeries {
    /// The series `a` of `data` with its engine span's signals (`avg`
    /// and `dir` from `a.start`, as long as `a.window.end - a.start`),
    /// kept from the bar before the window.
    pub fn new(data: &Dataset, a: &ActiveSeries, avg: &[f64], dir: &[i8]) -> BookSeries {
        let from = a.window.start.saturating_sub(1).max(a.start);
        let k = from - a.start;
        BookSeries {
            symbol: data.series()[a.idx].name.clone(),
            src: a.idx,
            calendar: series_calendar(data, a.idx),
            from,
            window: a.window.clone(),
            engine_bars: a.window.end - a.start,
            data_ends: a.data_ends,
            dir: dir[k..].to_vec(),
            avg: avg[k..].to_vec(),
        }
    }

    /// The window's first bar as an index into `dir`, `avg` and the bars.
    fn skip(&self) -> usize {
        self.window.start - self.from
    }
}

/// Where the account reads a series' bars: `bars(s)` are the bars
/// `s.from..s.window.end` of `s`'s series (high and low read only with
/// stops).
pub trait BarSource: Sync {
    /// The bars of `s`, as long as `s.dir`.
    fn bars(&self, s: &BookSeries) -> Bars<'_>;
    /// Done with `s`'s bars for now (a memory-mapped source drops them).
    fn release(&self, _s: &BookSeries) {}
    /// Done with every series' bars for now.
    fn release_all(&self) {}
}

/// The bars of the data a run opened (memory-mapped; `src` is the
/// series index).
pub struct DataBars<'a>(pub &'a Dataset);

impl BarSource for DataBars<'_> {
    fn bars(&self, s: &BookSeries) -> Bars<'_> {
        let view = self.0.view(s.src);
        let span = s.from..s.window.end;
        Bars {
            ts: &view.ts[span.clone()],
            open: &view.open[span.clone()],
            high: &view.high[span.clone()],
            low: &view.low[span.clone()],
            close: &view.close[span],
        }
    }
    fn release(&self, s: &BookSeries) {
        self.0.release(s.src);
    }
    fn release_all(&self) {
        self.0.release_all();
    }
}

/// The shared account after it ran: what [`SharedAccount::emit`] turns
/// into the symbols' results.
pub struct SharedAccount {
    traded: Vec<BookSeries>,
    run: SharedRun,
    /// The benchmark's split: `capital / symbols traded`.
    pub capital_per_symbol: f64,
}

/// [`run_shared`] for a run: refused on a shard (the account needs every
/// symbol; a shard stores its signals instead, see
/// [`crate::job::shard`]), and an error naming every skipped series when
/// none could be traded.
pub(super) fn account(
    (data, active): (&Dataset, &[ActiveSeries]),
    (strategy, file): (&Strategy, Option<&SignalsFile>),
    (cache, strict, capital_symbols): (&Cache, bool, Option<usize>),
    on_done: &(dyn Fn(usize) + Sync),
    skipped: &mut Vec<Skipped>,
) -> Result<SharedAccount, RunError> {
    if capital_symbols.is_some() {
        return Err(RunError::SharedSharded);
    }
    let series = signals_of(
        data,
        active,
        (strategy, file),
        cache,
        on_done,
        &mut |s, r| skip_or_fail(skipped, strict, s, r),
    )?;
    match run_book(&DataBars(data), series, strategy, strict, skipped)? {
        Some(account) => Ok(account),
        None => Err(super::all_skipped(skipped)),
    }
}

/// Adds a series to `skipped`, or ends the run with `strict`.
pub fn skip_or_fail(
    skipped: &mut Vec<Skipped>,
    strict: bool,
    symbol: &str,
    reason: String,
) -> Result<(), RunError> {
    if strict {
        return Err(RunError::Strict {
            symbol: symbol.to_string(),
            reason,
        });
    }
    skipped.push(Skipped {
        symbol: symbol.to_string(),
        reason,
    });
    Ok(())
}

/// The signals of `active` for the account, in plan order: from the
/// `--signals` file, or `cache` or the engine. A series the engine
/// refuses goes to `skip(symbol, reason)` (which may end the run).
pub fn signals_of(
    data: &Dataset,
    active: &[ActiveSeries],
    (strategy, file): (&Strategy, Option<&SignalsFile>),
    cache: &Cache,
    on_done: &(dyn Fn(usize) + Sync),
    skip: &mut dyn FnMut(&str, String) -> Result<(), RunError>,
) -> Result<Vec<BookSeries>, RunError> {
    let mut kept: Vec<BookSeries> = Vec::with_capacity(active.len());
    for chunk in active.chunks(RUN_CHUNK) {
        let signals = chunk_signals(data, chunk, (strategy, file), cache);
        for (a, sig) in chunk.iter().zip(signals) {
            let symbol = &data.series()[a.idx].name;
            match sig {
                Ok((avg, dir)) => kept.push(BookSeries::new(data, a, &avg, &dir)),
                Err(reason) => skip(symbol, reason)?,
            }
            data.release(a.idx);
            on_done(a.window.end - a.start);
        }
        data.release_all();
    }
    Ok(kept)
}

/// The account's configuration of `strategy`.
fn book_config(strategy: &Strategy) -> BookConfig {
    BookConfig {
        capital: strategy.execution.capital,
        exec: strategy.execution.exec_config(),
        max_positions: strategy.execution.max_positions,
        rebalance: strategy.execution.rebalance,
    }
}

/// The account's own checks of one series (bars, signals, window): the
/// error a run skips it for, if any.
pub fn check_series(
    src: &dyn BarSource,
    s: &BookSeries,
    strategy: &Strategy,
) -> Result<(), String> {
    check_symbol(&book_symbol(src, s), &book_config(strategy)).map_err(|e| e.to_string())
}

/// Runs the shared account over `series` (in plan order), their bars read
/// from `src`. Series the account's checks refuse are added to `skipped`
/// (or end the run with `strict`). `None` when no series could be traded.
pub fn run_book(
    src: &dyn BarSource,
    series: Vec<BookSeries>,
    strategy: &Strategy,
    strict: bool,
    skipped: &mut Vec<Skipped>,
) -> Result<Option<SharedAccount>, RunError> {
    let cfg = book_config(strategy);
    // The account's checks, per symbol, so that one bad series is skipped
    // as equal-split skips it rather than ending the run.
    let mut traded: Vec<BookSeries> = Vec::with_capacity(series.len());
    for s in series {
        match check_symbol(&book_symbol(src, &s), &cfg) {
            Ok(()) => traded.push(s),
            Err(e) => skip_or_fail(skipped, strict, &s.symbol, e.to_string())?,
        }
    }
    if traded.is_empty() {
        return Ok(None);
    }
    let symbols: Vec<BookSymbol<'_>> = traded.iter().map(|s| book_symbol(src, s)).collect();
    let run = shared_book(&symbols, &cfg).map_err(|source| RunError::Backtest {
        symbol: "the shared account".into(),
        source,
    })?;
    drop(symbols);
    src.release_all();
    for (what, values) in [("equity", &run.curve.equity), ("gross", &run.curve.gross)] {
        if let Some(bar) = values.iter().position(|v| !v.is_finite()) {
            return Err(RunError::SharedNonFinite {
                what,
                bar,
                ts: crate::data::fmt_ts(run.curve.ts[bar]),
            });
        }
    }

    let capital_per_symbol = cfg.capital / traded.len() as f64;
    Ok(Some(SharedAccount {
        traded,
        run,
        capital_per_symbol,
    }))
}

impl SharedAccount {
    /// Every timestamp of the traded symbols' windows, sorted and
    /// de-duplicated (the run directory's timeline).
    pub fn timeline(&self, src: &dyn BarSource) -> Vec<i64> {
        let mut timeline: Vec<i64> = Vec::new();
        for (k, s) in self.traded.iter().enumerate() {
            let ts = &src.bars(s).ts[s.skip()..];
            if !super::is_subset(ts, &timeline) {
                timeline = super::merge_sorted(&timeline, ts);
            }
            src.release(s);
            if k % RUN_CHUNK == RUN_CHUNK - 1 {
                src.release_all();
            }
        }
        src.release_all();
        timeline
    }

    /// Hands each traded symbol's [`SymbolResult`] to `emit` in plan
    /// order, built one at a time (so a streaming caller never holds
    /// them together), and returns the account's curve: equity and gross
    /// at each close of the union of the windows.
    pub fn emit(
        self,
        src: &dyn BarSource,
        strategy: &Strategy,
        emit: &mut dyn FnMut(SymbolResult) -> Result<(), RunError>,
    ) -> Result<Curve, RunError> {
        let SharedAccount {
            traded,
            run,
            capital_per_symbol,
        } = self;
        // Each symbol's rows and metrics are independent: built a chunk
        // at a time in parallel, handed over in plan order.
        let mut rest = traded.into_iter().zip(run.symbols);
        loop {
            let chunk: Vec<(BookSeries, SymbolBook)> = rest.by_ref().take(RUN_CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            let results: Vec<SymbolResult> = chunk
                .into_par_iter()
                .map(|(s, book)| symbol_result(src, strategy, capital_per_symbol, s, book))
                .collect();
            src.release_all();
            for r in results {
                emit(r)?;
            }
        }
        src.release_all();
        Ok(run.curve)
    }
}

/// The book's view of a series: its bars and signals from `from`.
fn book_symbol<'a>(src: &'a dyn BarSource, s: &'a BookSeries) -> BookSymbol<'a> {
    BookSymbol {
        symbol: &s.symbol,
        bars: src.bars(s),
        dir: &s.dir,
        avg: &s.avg,
        window: s.skip()..s.window.end - s.from,
        data_ends: s.data_ends,
    }
}

/// The [`SymbolResult`] of one traded symbol: its rows, its
/// contribution's metrics, its ledger.
fn symbol_result(
    src: &dyn BarSource,
    strategy: &Strategy,
    capital_per_symbol: f64,
    s: BookSeries,
    book: SymbolBook,
) -> SymbolResult {
    let skip = s.skip();
    let bars = src.bars(&s);
    let ts = bars.ts[skip..].to_vec();
    let close = bars.close[skip..].to_vec();
    let first_open = bars.open[skip];
    let units = book.positions(ts.len());
    let value: Vec<f64> = units.iter().zip(&close).map(|(u, c)| u * c).collect();
    let gross: Vec<f64> = value.iter().map(|v| v.abs()).collect();
    // The symbol's contribution: the account's capital plus what
    // this symbol made or lost, so its total return is its share of
    // the account's (they sum to it) and its exposure the fraction
    // of the account it held.
    let capital = strategy.execution.capital;
    let contribution = book.contribution(&close, capital);
    let bench_units = capital_per_symbol / first_open;
    let benchmark: Vec<f64> = close.iter().map(|c| bench_units * c).collect();
    let scale = capital / capital_per_symbol;
    let own_benchmark: Vec<f64> = benchmark.iter().map(|b| b * scale).collect();
    let stats: Vec<TradeStat> = book.trades.iter().map(TradeStat::of).collect();
    // As `series_options`: periods per year from the window's bars.
    let settings = &strategy.metrics;
    let opts = MetricsOptions {
        periods_per_year: Some(
            settings
                .periods_per_year
                .unwrap_or_else(|| periods_per_year_in(&ts, &s.calendar)),
        ),
        risk_free: settings.risk_free,
        calendar: s.calendar.clone(),
    };
    src.release(&s);
    let exposure = Curve {
        ts: Vec::new(),
        equity: contribution,
        gross: gross.clone(),
    };
    let metrics = metrics_of_stats(
        capital,
        &ts,
        &exposure.equity,
        &own_benchmark,
        &stats,
        Some(&exposure.exposure()),
        book.total_fees,
        &opts,
    );
    let mut avg = s.avg;
    let mut dir = s.dir;
    avg.drain(..skip);
    dir.drain(..skip);
    SymbolResult {
        run: SymbolRun {
            symbol: book.symbol,
            capital: capital_per_symbol,
            ts,
            equity: value,
            position: units,
            gross,
            benchmark,
            trades: book.trades,
            total_fees: book.total_fees,
        },
        metrics,
        close,
        avg,
        dir,
        window: s.window,
        engine_bars: s.engine_bars,
        calendar: opts.calendar,
        contribution: Some(exposure.equity),
    }
}
