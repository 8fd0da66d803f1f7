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
//! ledger and the bars on which it traded, and [`run_shared`] hands the
//! symbols' rows to the caller one at a time (the run directory's
//! writer streams them to disk as equal-split does).
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

use super::{
    chunk_signals, series_options, Cache, Curve, RunError, SignalsFile, Skipped, Strategy,
    SymbolResult, RUN_CHUNK,
};
use super::{ActiveSeries, Dataset};
use crate::backtest::book::{
    check_symbol, shared_book, BookConfig, BookSymbol, SharedRun, SymbolBook,
};
use crate::backtest::{metrics_of_stats, Bars, SymbolRun, TradeStat};
use rayon::prelude::*;

/// One series' signals kept for the book: bars `from..window.end` of the
/// series (`from` = the bar before the window, or the window's first bar
/// when the engine saw none before it).
#[derive(Clone)]
pub(crate) struct Kept {
    pub(crate) a: ActiveSeries,
    pub(crate) from: usize,
    pub(crate) dir: Vec<i8>,
    pub(crate) avg: Vec<f64>,
}

/// The shared account after it ran: what [`SharedAccount::emit`] turns
/// into the symbols' results.
pub(crate) struct SharedAccount {
    traded: Vec<Kept>,
    run: SharedRun,
    /// The benchmark's split: `capital / symbols traded`.
    pub(crate) capital_per_symbol: f64,
}

/// [`run_shared`] for a run: refused on a shard (the account needs every
/// symbol), and an error naming every skipped series when none could be
/// traded.
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
    match run_shared(
        data,
        active,
        (strategy, file),
        cache,
        strict,
        on_done,
        skipped,
    )? {
        Some(account) => Ok(account),
        None => Err(super::all_skipped(skipped)),
    }
}

/// Runs `active` with shared cash: signals (from the `--signals` file, or
/// `cache` or the engine),
/// then the account. Series the engine or the account's checks refuse are
/// added to `skipped` (or end the run with `strict`). `None` when no
/// series could be traded.
pub(super) fn run_shared(
    data: &Dataset,
    active: &[ActiveSeries],
    (strategy, file): (&Strategy, Option<&SignalsFile>),
    cache: &Cache,
    strict: bool,
    on_done: &(dyn Fn(usize) + Sync),
    skipped: &mut Vec<Skipped>,
) -> Result<Option<SharedAccount>, RunError> {
    let mut skip = |symbol: &str, reason: String| -> Result<(), RunError> {
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
    };
    let mut kept: Vec<Kept> = Vec::with_capacity(active.len());
    for chunk in active.chunks(RUN_CHUNK) {
        let signals = chunk_signals(data, chunk, (strategy, file), cache);
        for (a, sig) in chunk.iter().zip(signals) {
            match sig {
                Ok((avg, dir)) => {
                    let from = a.window.start.saturating_sub(1).max(a.start);
                    let k = from - a.start;
                    kept.push(Kept {
                        a: a.clone(),
                        from,
                        dir: dir[k..].to_vec(),
                        avg: avg[k..].to_vec(),
                    });
                }
                Err(reason) => skip(&data.series()[a.idx].name, reason)?,
            }
            data.release(a.idx);
            on_done(a.window.end - a.start);
        }
        data.release_all();
    }

    book_kept(data, kept, strategy, &mut skip)
}

/// The account over series whose signals are already in memory (`kept`,
/// in plan order): the second half of [`run_shared`], and what a shared
/// sweep calls with the signals of its layer kernel. Series the account's
/// checks refuse go to `skip`; `None` when none is left.
pub(crate) fn book_kept(
    data: &Dataset,
    kept: Vec<Kept>,
    strategy: &Strategy,
    skip: &mut dyn FnMut(&str, String) -> Result<(), RunError>,
) -> Result<Option<SharedAccount>, RunError> {
    let exec = strategy.execution.exec_config();
    let cfg = BookConfig {
        capital: strategy.execution.capital,
        exec,
        max_positions: strategy.execution.max_positions,
        rebalance: strategy.execution.rebalance,
    };
    // The account's checks, per symbol, so that one bad series is skipped
    // as equal-split skips it rather than ending the run.
    let mut traded: Vec<Kept> = Vec::with_capacity(kept.len());
    for k in kept {
        let check = check_symbol(&book_symbol(data, &k), &cfg);
        match check {
            Ok(()) => traded.push(k),
            Err(e) => skip(&data.series()[k.a.idx].name, e.to_string())?,
        }
    }
    if traded.is_empty() {
        return Ok(None);
    }
    let symbols: Vec<BookSymbol<'_>> = traded.iter().map(|k| book_symbol(data, k)).collect();
    let run = shared_book(&symbols, &cfg).map_err(|source| RunError::Backtest {
        symbol: "the shared account".into(),
        source,
    })?;
    drop(symbols);
    data.release_all();
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
    /// Hands each traded symbol's [`SymbolResult`] to `emit` in plan
    /// order, built one at a time (so a streaming caller never holds
    /// them together), and returns the account's curve: equity and gross
    /// at each close of the union of the windows.
    pub(crate) fn emit(
        self,
        data: &Dataset,
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
            let chunk: Vec<(Kept, SymbolBook)> = rest.by_ref().take(RUN_CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            let results: Vec<SymbolResult> = chunk
                .into_par_iter()
                .map(|(kept, book)| {
                    let r = symbol_result(data, strategy, capital_per_symbol, kept, book);
                    data.release(r.1);
                    r.0
                })
                .collect();
            data.release_all();
            for r in results {
                emit(r)?;
            }
        }
        data.release_all();
        Ok(run.curve)
    }
}

/// The book's view of a kept series: its bars and signals from `from`.
fn book_symbol<'a>(data: &'a Dataset, k: &'a Kept) -> BookSymbol<'a> {
    let view = data.view(k.a.idx);
    let span = k.from..k.a.window.end;
    BookSymbol {
        symbol: &data.series()[k.a.idx].name,
        bars: Bars {
            ts: &view.ts[span.clone()],
            open: &view.open[span.clone()],
            high: &view.high[span.clone()],
            low: &view.low[span.clone()],
            close: &view.close[span],
        },
        dir: &k.dir,
        avg: &k.avg,
        window: k.a.window.start - k.from..k.a.window.end - k.from,
        data_ends: k.a.data_ends,
    }
}

/// The [`SymbolResult`] of one traded symbol (and its series index, to
/// release its pages): its rows, its contribution's metrics, its ledger.
fn symbol_result(
    data: &Dataset,
    strategy: &Strategy,
    capital_per_symbol: f64,
    kept: Kept,
    book: SymbolBook,
) -> (SymbolResult, usize) {
    let a = &kept.a;
    let view = data.view(a.idx);
    let ts = view.ts[a.window.clone()].to_vec();
    let close = view.close[a.window.clone()].to_vec();
    let units = book.positions(ts.len());
    let value: Vec<f64> = units.iter().zip(&close).map(|(u, c)| u * c).collect();
    let gross: Vec<f64> = value.iter().map(|v| v.abs()).collect();
    // The symbol's contribution: the account's capital plus what
    // this symbol made or lost, so its total return is its share of
    // the account's (they sum to it) and its exposure the fraction
    // of the account it held.
    let capital = strategy.execution.capital;
    let contribution = book.contribution(&close, capital);
    let bench_units = capital_per_symbol / view.open[a.window.start];
    let benchmark: Vec<f64> = close.iter().map(|c| bench_units * c).collect();
    let scale = capital / capital_per_symbol;
    let own_benchmark: Vec<f64> = benchmark.iter().map(|b| b * scale).collect();
    let stats: Vec<TradeStat> = book.trades.iter().map(TradeStat::of).collect();
    let opts = series_options(data, a, &strategy.metrics);
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
    let skip_k = kept.a.window.start - kept.from;
    let result = SymbolResult {
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
        avg: kept.avg[skip_k..].to_vec(),
        dir: kept.dir[skip_k..].to_vec(),
        window: a.window.clone(),
        engine_bars: a.window.end - a.start,
        calendar: opts.calendar,
        contribution: Some(exposure.equity),
    };
    (result, a.idx)
}
