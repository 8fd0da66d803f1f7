//! The main job: replay the selected symbols through the ATC engine and
//! trade its direction (`atc-bt run`). Callable from Rust without the CLI.
//!
//! Per symbol (in parallel, results in selection order, so any thread count
//! gives bit-identical output): the engine sees the warm-up history plus the
//! window, never a bar after `--to`; the backtester trades the window.

pub mod output;
pub mod strategy;

use std::ops::Range;

use rayon::prelude::*;
use serde::Serialize;

use crate::backtest::{
    benchmark_metrics, metrics, portfolio, simulate, Bars, Curve, ExecConfig, Metrics, SymbolRun,
};
use crate::cache::{lookup_signals, store_signals, Cache};
use crate::data::{window, Dataset};
use crate::engine::{compute_batch, BatchDetail};
pub use strategy::{Execution, Strategy, StrategyError};

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

/// A symbol left out of the run, with why.
#[derive(Debug, Clone, Serialize)]
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
    /// The backtester refused its input.
    #[error("{symbol}: {source}")]
    Backtest {
        /// Series name.
        symbol: String,
        /// The backtester's error.
        source: crate::backtest::BacktestError,
    },
}

/// Prints skipped series to stderr, one line per reason with up to five
/// names, so a window that excludes hundreds of symbols stays readable.
pub fn print_skipped(skipped: &[Skipped]) {
    let mut by_reason: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for s in skipped {
        by_reason.entry(&s.reason).or_default().push(&s.symbol);
    }
    for (reason, names) in by_reason {
        let shown: Vec<&str> = names.iter().take(5).copied().collect();
        let more = if names.len() > 5 {
            format!(" and {} more", names.len() - 5)
        } else {
            String::new()
        };
        eprintln!(
            "warning: skipped {} series ({}{more}): {reason}",
            names.len(),
            shown.join(", ")
        );
    }
}

/// Formats µs since the epoch as an RFC 3339 UTC time (date only at midnight).
pub fn fmt_ts(us: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(us) {
        Some(t) if t.time() == chrono::NaiveTime::MIN => t.format("%Y-%m-%d").to_string(),
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => us.to_string(),
    }
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
}

/// Splits the plan's series into those with bars in the window and those
/// without; errors when none has any.
pub fn prepare(
    data: &Dataset,
    plan: &RunPlan,
) -> Result<(Vec<ActiveSeries>, Vec<Skipped>), RunError> {
    let series = data.series();
    let mut active = Vec::new();
    let mut skipped = Vec::new();
    for &idx in &plan.series {
        let view = data.view(idx);
        match window(view.ts, plan.from, plan.to, plan.warmup_bars) {
            Some((start, win)) => active.push(ActiveSeries {
                idx,
                start,
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
    Ok((active, skipped))
}

/// Trades one series given the engine's average signal and direction over
/// `a.start..a.window.end` (the bars the engine saw).
pub fn trade_series(
    data: &Dataset,
    a: &ActiveSeries,
    avg: &[f64],
    dir: &[i8],
    capital: f64,
    cfg: &ExecConfig,
) -> Result<SymbolResult, Skipped> {
    let name = &data.series()[a.idx].name;
    let view = data.view(a.idx);
    let (start, end) = (a.start, a.window.end);
    let bars = Bars {
        ts: &view.ts[start..end],
        open: &view.open[start..end],
        close: &view.close[start..end],
    };
    let local = a.window.start - start..end - start;
    let run = simulate(name, bars, dir, local.clone(), capital, cfg).map_err(|e| Skipped {
        symbol: name.clone(),
        reason: e.to_string(),
    })?;
    let m = run.metrics();
    Ok(SymbolResult {
        metrics: m,
        close: view.close[a.window.clone()].to_vec(),
        avg: avg[local.clone()].to_vec(),
        dir: dir[local].to_vec(),
        window: a.window.clone(),
        engine_bars: end - start,
        run,
    })
}

/// Sums the sub-accounts into the portfolio and benchmark (in the order of
/// `symbols`) and computes their metrics.
pub fn aggregate(
    symbols: Vec<SymbolResult>,
    skipped: Vec<Skipped>,
    capital_per_symbol: f64,
) -> RunResult {
    let runs: Vec<&SymbolRun> = symbols.iter().map(|s| &s.run).collect();
    let (portfolio_curve, benchmark_curve) = portfolio(&runs, capital_per_symbol);
    let trades: Vec<_> = runs.iter().flat_map(|r| r.trades.iter().cloned()).collect();
    // The portfolio starts with the capital of the sub-accounts it sums.
    let initial = capital_per_symbol * runs.len() as f64;
    let portfolio_metrics = metrics(
        initial,
        &portfolio_curve.ts,
        &portfolio_curve.equity,
        &benchmark_curve.equity,
        &trades,
        Some(&portfolio_curve.exposure()),
        runs.iter().map(|r| r.total_fees).sum(),
    );
    let benchmark_metrics = benchmark_metrics(initial, &benchmark_curve);
    let engine_bars = symbols.iter().map(|s| s.engine_bars).sum();
    RunResult {
        symbols,
        skipped,
        portfolio: portfolio_curve,
        benchmark: benchmark_curve,
        portfolio_metrics,
        benchmark_metrics,
        capital_per_symbol,
        engine_bars,
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
type Signals = (Vec<f64>, Vec<i8>);

/// Symbols per engine call in [`run`]: enough batches of
/// [`crate::engine::BATCH_LANES`] to keep every thread busy, few enough that
/// the engine's outputs in flight stay small.
const RUN_CHUNK: usize = 256;

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
/// the bars the engine saw.
pub fn run_with_cache(
    data: &Dataset,
    plan: &RunPlan,
    strategy: &Strategy,
    strict: bool,
    capital_symbols: Option<usize>,
    cache: &Cache,
    on_done: &(dyn Fn(usize) + Sync),
) -> Result<RunResult, RunError> {
    // The cached engine skips validation; parameters are checked once here.
    strategy.atc.validate()?;
    let (active, mut skipped) = prepare(data, plan)?;
    let capital_per_symbol =
        strategy.execution.capital / capital_symbols.unwrap_or(active.len()) as f64;
    let cfg = strategy.execution.exec_config();
    // Symbols stream through the batched engine a chunk at a time, so the
    // engine's working set stays a few chunks whatever the symbol count;
    // results keep plan order, so any thread count gives the same bits.
    // Signals found in the cache skip the engine; the misses of a chunk are
    // computed in one batch and stored.
    let mut outcomes: Vec<Result<SymbolResult, Skipped>> = Vec::with_capacity(active.len());
    for chunk in active.chunks(RUN_CHUNK) {
        let hashes: Vec<String> = chunk
            .iter()
            .map(|a| span_hash(&data.series()[a.idx].close_hash, a.start, a.window.end))
            .collect();
        let mut signals: Vec<Option<Result<Signals, String>>> = chunk
            .par_iter()
            .zip(&hashes)
            .map(|(a, h)| lookup_signals(cache, h, a.window.end - a.start, &strategy.atc).map(Ok))
            .collect();
        let missing: Vec<usize> = (0..chunk.len()).filter(|&i| signals[i].is_none()).collect();
        if !missing.is_empty() {
            let closes: Vec<&[f64]> = missing
                .iter()
                .map(|&i| &data.view(chunk[i].idx).close[chunk[i].start..chunk[i].window.end])
                .collect();
            match compute_batch(&closes, &strategy.atc, BatchDetail::Direction) {
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
                    store_signals(cache, &hashes[i], &strategy.atc, avg, dir);
                }
            });
        }
        let part: Vec<Result<SymbolResult, Skipped>> = chunk
            .par_iter()
            .zip(signals.into_par_iter())
            .map(|(a, sig)| {
                let sig = sig.unwrap_or_else(|| Err("no engine result".into()));
                let result = sig
                    .map_err(|reason| Skipped {
                        symbol: data.series()[a.idx].name.clone(),
                        reason,
                    })
                    .and_then(|(avg, dir)| {
                        trade_series(data, a, &avg, &dir, capital_per_symbol, &cfg)
                    });
                // Done with this series: let the kernel drop its mapped
                // pages, so resident memory does not grow with the number
                // of symbols.
                data.release(a.idx);
                on_done(a.window.end - a.start);
                result
            })
            .collect();
        outcomes.extend(part);
    }
    let symbols = collect(outcomes, &mut skipped, strict)?;
    Ok(aggregate(symbols, skipped, capital_per_symbol))
}
