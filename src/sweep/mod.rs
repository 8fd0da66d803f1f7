//! Parameter sweeps (`atc-bt sweep`): every combination of a [`Grid`] over
//! the selected symbols, with shared work planned so each distinct piece is
//! computed once.
//!
//! - Combinations are processed grouped by their lengths (robustness + six
//!   base lengths), in a fixed order, grid order inside a group. Per group
//!   the shared stage of every symbol (its rate of change and 54 cross
//!   signals, [`shared_signals`]: the moving averages) is computed once;
//!   lambda, decay, cutout and the thresholds only change what follows.
//! - The combinations of a chunk are grouped into tasks (`plan.rs`): up to
//!   8 (lambda, decay) pairs with one cutout side by side in the SIMD lanes
//!   of the layer kernel ([`LayerLanes`]: layer 1, layer 2 and the average
//!   signal), with every combination that reads them (thresholds only act
//!   on the average signal, [`lane_directions`]). Symbols run in parallel,
//!   a group at a time, each through every task of the chunk; then every
//!   combination takes the group's results in symbol order, so each
//!   portfolio is summed in symbol order whatever the thread count:
//!   bit-identical results on any machine.
//! - Each combination's backtest is the library's, as in `run`
//!   ([`trade_series`], [`aggregate`]), without their copies: the
//!   simulation reuses its buffers ([`simulate_checked_into`], the bars
//!   checked once per symbol), each symbol's periods per year are computed
//!   once, and the portfolio is summed as the symbols stream by
//!   ([`PortfolioSum`] on the window timeline, as `run` streams it), so no
//!   per-symbol curve outlives its group. A symbol's backtest depends on
//!   the combination only through its direction series, and neighbouring
//!   combinations mostly cross the thresholds on the same bars: per symbol
//!   and sample, the combinations of a chunk whose directions are equal
//!   share one simulation and one set of metrics ([`Chunk::symbol_items`]).
//!   One combination of a sweep gives exactly the metrics of `run` with
//!   the same parameters (tested), and the results are byte-identical to
//!   computing every combination with the full engine (tested).
//! - Each symbol's average signal and direction per combination are looked
//!   up in the result cache (the `signals` kind that `run` stores), so a
//!   combination that a run already computed is not recomputed. A sweep
//!   does not store them: measured on 1,000 × 1,500 × 12 combinations,
//!   storing cost +24% on the cold sweep and 280 MB of disk for a 1.3×
//!   faster rerun, and one big grid would push out the entries runs reuse.
//!   Nor does it cache the shared stage (the `bank` kind): it is about one
//!   engine pass per lengths group, a few percent of a sweep (see the
//!   README).
//! - Memory is bounded independently of the grid: combinations are
//!   processed in chunks sized to a memory budget (as long as it allows,
//!   since outcomes are shared inside a chunk), symbols in groups whose
//!   outcomes fit a second budget even if no two combinations share one,
//!   and the rows are streamed to the results file (while the next chunk
//!   runs) before the chunk after that starts.

pub mod grid;
pub mod output;
mod plan;
pub mod rank;
mod shared;
pub mod walk;

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::Serialize;
use std::sync::Arc;

use crate::backtest::{
    simulate_checked_into, CheckedInputs, Curve, ExecConfig, Metrics, MetricsOptions, PortfolioSum,
    SymbolRun, TradeStat,
};
use crate::cache::{lookup_signals_once, Cache};
use crate::data::Dataset;
use crate::engine::batch::Isa;
use crate::engine::registry::{self, Stage};
use crate::engine::{
    lane_directions, shared_signals, AtcParams, LaneScratch, LaneThresholds, LayerLanes,
    SharedSignals, MA_COUNT,
};
use crate::run::output::Aggregate;
use crate::run::{
    aggregate, collect, common_calendar, last_bar, non_finite, portfolio_metrics, prepare,
    series_options, span_hash, trade_series, window_bars, window_timeline, ActiveSeries,
    MetricsSettings, RunError, RunPlan, Skipped, Strategy, SymbolResult,
};
pub use grid::{ComboParams, Grid, GridError, Value};
pub use rank::Ranking;

/// Bytes of per-symbol results one chunk of combinations may hold.
const CHUNK_BUDGET_BYTES: usize = 256 << 20;

/// A named sub-window of the run window: `full`, or `in`/`out` of sample.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Sample {
    /// `full`, `in`, `out`, or `wf<k>-train` / `wf<k>-test` for walk-forward folds.
    pub name: String,
    /// First traded bar time (µs UTC), inclusive.
    pub from: Option<i64>,
    /// Last traded bar time (µs UTC), inclusive.
    pub to: Option<i64>,
}

/// One row of `results.parquet`.
#[derive(Debug, Clone)]
pub struct Row {
    /// Combination number.
    pub combo: usize,
    /// Sample name.
    pub sample: String,
    /// Series name; `None` on an aggregate row.
    pub symbol: Option<String>,
    /// The aggregate (portfolio, benchmark) of an aggregate row.
    pub aggregate: Option<crate::run::output::Aggregate>,
    /// Metrics.
    pub metrics: Metrics,
}

/// What a sweep returns besides the streamed rows (a [`Ranking`] keeps
/// what the outputs need of them).
#[derive(Debug, Clone)]
pub struct SweepResult {
    /// The samples (`full`, and `in`/`out` with a split).
    pub samples: Vec<Sample>,
    /// Symbols skipped in some sample.
    pub skipped: Vec<Skipped>,
    /// Engine-bar × combination count processed (layer stage), for throughput.
    pub combo_bars: u64,
    /// The portfolio and buy & hold curves of the first sample (`full`) of
    /// the best combination by [`sweep_ranked`]'s metric, as
    /// [`Ranking::order`] ranks them: what a `run` of it returns, summed in
    /// the same order (tested). `None` for [`sweep`], when any chunk was
    /// not streamed (shared cash, an observer), when the best combination
    /// has no portfolio, or when a chunk's curves would not fit in
    /// [`CURVE_BUDGET_BYTES`]: the caller runs it again.
    pub best_curve: Option<BestCurve>,
}

/// The curves of [`SweepResult::best_curve`].
#[derive(Debug, Clone)]
pub struct BestCurve {
    /// The combination.
    pub combo: usize,
    /// Its portfolio equity.
    pub portfolio: Curve,
    /// Its buy & hold benchmark.
    pub benchmark: Curve,
}

/// How [`sweep_ranked`] picks the combination whose curves it keeps: the
/// ranking metric, on sample `ranked` (as [`Ranking::new`]).
#[derive(Debug, Clone, Copy)]
pub struct RankBy<'a> {
    /// A metric of the facts table.
    pub metric: &'a str,
    /// The ranked sample.
    pub ranked: usize,
}

/// Bytes of first-sample curves a streamed chunk may hold until each
/// combination's is compared with the best so far.
const CURVE_BUDGET_BYTES: usize = 64 << 20;

/// Appends the rows of one (combination, sample): each symbol, then the
/// portfolio and benchmark rows (aggregate rows: `symbol` null). Shared by
/// `sweep` and `merge`, so a merged sweep writes exactly the rows of a
/// single-machine one.
pub fn push_rows(rows: &mut Vec<Row>, combo: usize, sample: &str, r: &crate::run::RunResult) {
    for s in &r.symbols {
        rows.push(Row {
            combo,
            sample: sample.to_string(),
            symbol: Some(s.run.symbol.clone()),
            aggregate: None,
            metrics: s.metrics.clone(),
        });
    }
    for (agg, m) in [
        (Aggregate::Portfolio, &r.portfolio_metrics),
        (Aggregate::Benchmark, &r.benchmark_metrics),
    ] {
        rows.push(Row {
            combo,
            sample: sample.to_string(),
            symbol: None,
            aggregate: Some(agg),
            metrics: m.clone(),
        });
    }
}

/// Sets each sample's `to` to the last bar of `series` in it (as
/// [`RunPlan::pinned`] does for a run), so a symbol counts as ending
/// inside a sample only if others trade after it. Pin before sharding.
pub fn pin_samples(data: &Dataset, series: &[usize], samples: &mut [Sample]) {
    for s in samples {
        s.to = last_bar(data, series, s.from, s.to).or(s.to);
    }
}

/// Splits the run window at `split` (µs UTC): `in` is before it, `out` from it on.
pub fn samples(from: Option<i64>, to: Option<i64>, split: Option<i64>) -> Vec<Sample> {
    let mut v = vec![Sample {
        name: "full".into(),
        from,
        to,
    }];
    if let Some(s) = split {
        v.push(Sample {
            name: "in".into(),
            from,
            to: Some(s - 1),
        });
        v.push(Sample {
            name: "out".into(),
            from: Some(s),
            to,
        });
    }
    v
}

/// The lengths part of a parameter set: combinations are processed grouped
/// by it.
fn lengths_key(p: &AtcParams) -> (u8, [usize; 6]) {
    (
        p.robustness as u8,
        [
            p.ema_len, p.hma_len, p.wma_len, p.dema_len, p.lsma_len, p.kama_len,
        ],
    )
}

/// One engine span of a symbol: the bars `start..end` the engine sees, and
/// the samples whose window is traded on them.
struct Span {
    start: usize,
    end: usize,
    samples: Vec<usize>,
    /// [`span_hash`] (only with the cache enabled).
    hash: String,
}

/// Per symbol: its active window in each sample (None where it has no
/// bars), its engine spans, and the metric options of each window (its
/// periods per year resolved once, not per combination).
struct SymbolPlan {
    idx: usize,
    per_sample: Vec<Option<ActiveSeries>>,
    spans: Vec<Span>,
    options: Vec<Option<MetricsOptions>>,
}

/// Distinct engine spans `(start, end)` of a symbol over its samples.
fn spans(per_sample: &[Option<ActiveSeries>]) -> Vec<(usize, usize)> {
    let mut by_start: BTreeMap<usize, usize> = BTreeMap::new();
    for a in per_sample.iter().flatten() {
        let e = by_start.entry(a.start).or_insert(0);
        *e = (*e).max(a.window.end);
    }
    by_start.into_iter().collect()
}

/// Runs the sweep. `emit` receives each finished combination's rows (stream
/// them out); combinations are processed group by group (groups of equal
/// lengths, in a fixed order) and in grid order within a group, so the
/// order is deterministic. `on_combo` is called once per combination.
#[allow(clippy::too_many_arguments)]
pub fn sweep(
    data: &Dataset,
    plan: &RunPlan,
    grid: &Grid,
    base: &Strategy,
    samples: &[Sample],
    strict: bool,
    cache: &Cache,
    emit: &mut dyn FnMut(Vec<Row>) -> Result<(), String>,
    on_combo: &(dyn Fn() + Sync),
) -> Result<SweepResult, RunError> {
    sweep_inner(
        data, plan, grid, base, samples, strict, cache, None, emit, on_combo, None, None,
    )
}

/// [`sweep`], keeping the first sample's curves of the best combination
/// by `rank` ([`SweepResult::best_curve`]), so the caller need not run it
/// again for them.
#[allow(clippy::too_many_arguments)]
pub fn sweep_ranked(
    data: &Dataset,
    plan: &RunPlan,
    grid: &Grid,
    base: &Strategy,
    samples: &[Sample],
    strict: bool,
    cache: &Cache,
    rank: RankBy<'_>,
    emit: &mut dyn FnMut(Vec<Row>) -> Result<(), String>,
    on_combo: &(dyn Fn() + Sync),
) -> Result<SweepResult, RunError> {
    sweep_inner(
        data,
        plan,
        grid,
        base,
        samples,
        strict,
        cache,
        None,
        emit,
        on_combo,
        None,
        Some(rank),
    )
}

/// What [`sweep_with`] shows per (combination, sample): the symbols that
/// traded, in plan order, and those that failed.
pub type Observer<'a> =
    dyn FnMut(usize, usize, &[crate::run::SymbolResult], &[Skipped]) -> Result<(), String> + 'a;

/// The order in which [`sweep`] processes (and emits) combinations: groups
/// of equal lengths in a fixed order, grid order inside a group.
pub fn combo_order(grid: &Grid, base: &AtcParams) -> Vec<usize> {
    combo_groups(grid, base).into_values().flatten().collect()
}

/// [`sweep`] with the capital split given per sample (`capital_symbols[k]`
/// sub-accounts; a shard passes the whole selection's counts) and an
/// observer that sees every (combination, sample)'s per-symbol results
/// before they are aggregated (a shard writes them to its part).
#[allow(clippy::too_many_arguments)]
pub fn sweep_with(
    data: &Dataset,
    plan: &RunPlan,
    grid: &Grid,
    base: &Strategy,
    samples: &[Sample],
    strict: bool,
    cache: &Cache,
    capital_symbols: Option<&[usize]>,
    emit: &mut dyn FnMut(Vec<Row>) -> Result<(), String>,
    on_combo: &(dyn Fn() + Sync),
    observe: &mut Observer<'_>,
) -> Result<SweepResult, RunError> {
    sweep_inner(
        data,
        plan,
        grid,
        base,
        samples,
        strict,
        cache,
        capital_symbols,
        emit,
        on_combo,
        Some(observe),
        None,
    )
}

/// Bytes of shared-stage results (`R` and 54 signals per engine bar) one
/// block of symbols may hold.
const BANK_BUDGET_BYTES: usize = 64 << 20;

/// The fixed inputs of every task of a sweep.
struct Ctx<'a> {
    data: &'a Dataset,
    symbols: &'a [SymbolPlan],
    capital: &'a [f64],
    cfg: ExecConfig,
    settings: &'a MetricsSettings,
    cache: &'a Cache,
    /// Per sample, the timeline its portfolio sums are on.
    timelines: &'a [Vec<i64>],
    /// Keep every symbol's full result (for an observer).
    keep_full: bool,
    /// Keep every symbol's window signals (shared cash: [`shared`]).
    keep_signals: bool,
}

/// What one (combination, sample) gathers over the symbols, in symbol
/// order: the streamed portfolio of `aggregate`, or (with an observer)
/// the symbols' full results.
struct SampleAcc {
    sum: PortfolioSum,
    /// Each traded symbol's trade statistics, in symbol order (shared
    /// with the other combinations whose outcome it is).
    trades: Vec<Arc<[TradeStat]>>,
    fees: Vec<f64>,
    /// `(symbol plan index, metrics)` of each symbol that traded.
    rows: Vec<(usize, Metrics)>,
    failed: Vec<Skipped>,
    full: Vec<Result<SymbolResult, Skipped>>,
    /// Shared cash: each symbol's signals from the bar before its window
    /// (see [`shared`]).
    signals: Vec<crate::run::shared::BookSeries>,
}

/// One combination inside a task.
struct TaskCombo {
    /// Index in the chunk.
    at: usize,
    /// Lane of the task's kernel that computes its average signal.
    lane: usize,
    params: AtcParams,
    /// Why the engine refuses the parameters, if it does.
    invalid: Option<String>,
    accs: Vec<SampleAcc>,
}

/// One kernel's lanes and the combinations that read them (see
/// [`plan::plan_tasks`]).
struct TaskRun {
    lanes: Option<LayerLanes>,
    combos: Vec<TaskCombo>,
}

/// Buffers a worker thread reuses.
#[derive(Default)]
struct Worker {
    lane: LaneScratch,
    avg: Vec<f64>,
    lane_avg: Vec<f64>,
    dir: Vec<i8>,
    /// The directions of a task's combinations, before each is taken.
    dirs: Vec<Vec<i8>>,
    run: SymbolRun,
    exposure: Vec<f64>,
}

/// A symbol's backtest in one sample under one direction series: what
/// every combination with that direction adds to its portfolio and rows.
struct Outcome {
    /// The curve [`PortfolioSum::add`] reads (`ts`, `equity`, `gross`,
    /// `benchmark`, `total_fees`); no positions or trades.
    run: SymbolRun,
    /// [`PortfolioSum::alignment`] of `run` on the sample's timeline.
    at: Option<usize>,
    /// Held by each combination's portfolio until it is finished: shared,
    /// they cost memory per distinct outcome, not per combination.
    stats: Arc<[TradeStat]>,
    metrics: Metrics,
}

/// What one (symbol, combination, sample) adds to the combination's
/// [`SampleAcc`].
enum Item {
    Lean(Arc<Outcome>),
    Failed(String),
    Full(Box<Result<SymbolResult, Skipped>>),
    Signals(crate::run::shared::BookSeries),
}

/// Per combination of a chunk (flat order: task by task), the `(sample,
/// item)`s of one symbol, in span and sample order (or, transposed, per
/// symbol of a group, those of one combination).
type SymbolItems = Vec<Vec<(usize, Item)>>;

impl Chunk {
    /// Everything symbol `si` (whose shared stages are `bank`, one per
    /// span) adds to every combination of the chunk.
    ///
    /// The backtest and metrics of a symbol depend on the combination only
    /// through its direction series: combinations whose directions are
    /// equal over a sample's window share one [`Outcome`], computed once
    /// (neighbouring lambda/decay values mostly cross the thresholds on the
    /// same bars: 13–32% of (symbol, combination) pairs are distinct on a
    /// 10 × 10 grid over synthetic, S&P 500 and US stock histories). The
    /// outcome is a function of the series alone, so the bits do not
    /// depend on which combination computed it.
    fn symbol_items(
        &self,
        ctx: &Ctx<'_>,
        si: usize,
        bank: &[Result<SharedSignals, String>],
        w: &mut Worker,
    ) -> SymbolItems {
        let data = ctx.data;
        let sp = &ctx.symbols[si];
        let name = &data.series()[sp.idx].name;
        let lean = !(ctx.keep_full || ctx.keep_signals);
        let mut items: SymbolItems = self
            .tasks
            .iter()
            .flat_map(|t| t.combos.iter().map(|_| Vec::new()))
            .collect();
        for (span, shared) in sp.spans.iter().zip(bank) {
            let n = span.end - span.start;
            // The backtest's inputs other than the direction, checked once
            // for all the chunk's combinations (lean path only).
            let inputs: Vec<Option<Result<CheckedInputs<'_>, String>>> = (0..ctx.capital.len())
                .map(|k| {
                    let a = sp.per_sample[k].as_ref()?;
                    if !lean || !span.samples.contains(&k) {
                        return None;
                    }
                    let (bars, local) = window_bars(data, a);
                    Some(
                        CheckedInputs::new(
                            name,
                            bars,
                            a.window.end - a.start,
                            local,
                            ctx.capital[k],
                            &ctx.cfg,
                            a.data_ends,
                        )
                        .map_err(|e| e.to_string()),
                    )
                })
                .collect();
            // Per sample: the outcomes met so far, by direction series.
            let mut seen: Vec<HashMap<Vec<i8>, Arc<Outcome>>> =
                (0..ctx.capital.len()).map(|_| HashMap::new()).collect();
            let mut flat = 0;
            for task in &self.tasks {
                let hits: Vec<Option<(Vec<f64>, Vec<i8>)>> = task
                    .combos
                    .iter()
                    .map(|c| lookup_signals_once(ctx.cache, &span.hash, n, &c.params))
                    .collect();
                let computed = match (&task.lanes, shared) {
                    (Some(lanes), Ok(sh))
                        if task
                            .combos
                            .iter()
                            .zip(&hits)
                            .any(|(c, h)| h.is_none() && c.invalid.is_none()) =>
                    {
                        lanes.average_signal(sh, &mut w.lane, &mut w.avg);
                        Some(lanes.width())
                    }
                    _ => None,
                };
                // The directions of the combinations the kernel ran for,
                // eight series per pass over its output.
                let mut slots: Vec<Option<usize>> = vec![None; task.combos.len()];
                if let Some(width) = computed {
                    let mut wanted = Vec::new();
                    for ((c, hit), slot) in task.combos.iter().zip(&hits).zip(&mut slots) {
                        if hit.is_none() && c.invalid.is_none() {
                            *slot = Some(wanted.len());
                            wanted.push(LaneThresholds::of(c.lane, &c.params));
                        }
                    }
                    if w.dirs.len() < wanted.len() {
                        w.dirs.resize_with(wanted.len(), Vec::new);
                    }
                    lane_directions(&w.avg, width, &wanted, &mut w.dirs[..wanted.len()]);
                }
                for ((c, hit), slot) in task.combos.iter().zip(hits).zip(slots) {
                    let out = &mut items[flat];
                    flat += 1;
                    // This span's average signal and direction for `c`.
                    let signals: Result<(), &String> = match (hit, &c.invalid, shared, computed) {
                        (Some((avg, dir)), _, _, _) => {
                            (w.lane_avg, w.dir) = (avg, dir);
                            Ok(())
                        }
                        (None, Some(e), _, _) | (None, None, Err(e), _) => Err(e),
                        (None, None, Ok(_), Some(width)) => {
                            if let Some(j) = slot {
                                std::mem::swap(&mut w.dir, &mut w.dirs[j]);
                            }
                            if !lean {
                                w.lane_avg.clear();
                                w.lane_avg
                                    .extend(w.avg.iter().skip(c.lane).step_by(width).take(n));
                            }
                            Ok(())
                        }
                        (None, None, Ok(_), None) => unreachable!("computed when needed"),
                    };
                    for &k in &span.samples {
                        let (Some(a), Some(opts)) = (&sp.per_sample[k], &sp.options[k]) else {
                            continue;
                        };
                        let len = a.window.end - a.start;
                        let item = match signals {
                            Err(reason) if ctx.keep_signals || !ctx.keep_full => {
                                Item::Failed(reason.clone())
                            }
                            Err(reason) => Item::Full(Box::new(Err(Skipped {
                                symbol: name.clone(),
                                reason: reason.clone(),
                            }))),
                            Ok(()) if ctx.keep_signals => {
                                Item::Signals(crate::run::shared::BookSeries::new(
                                    data,
                                    a,
                                    &w.lane_avg[..len],
                                    &w.dir[..len],
                                ))
                            }
                            Ok(()) if ctx.keep_full => Item::Full(Box::new(trade_series(
                                data,
                                a,
                                &w.lane_avg[..len],
                                &w.dir[..len],
                                ctx.capital[k],
                                &ctx.cfg,
                                opts,
                            ))),
                            Ok(()) => match seen[k].get(&w.dir[..len]) {
                                Some(o) => Item::Lean(o.clone()),
                                None => match lean_outcome(
                                    &inputs[k],
                                    &ctx.timelines[k],
                                    a,
                                    opts,
                                    &w.dir[..len],
                                    &mut w.run,
                                    &mut w.exposure,
                                ) {
                                    Ok(o) => {
                                        let o = Arc::new(o);
                                        seen[k].insert(w.dir[..len].to_vec(), o.clone());
                                        Item::Lean(o)
                                    }
                                    Err(reason) => Item::Failed(reason),
                                },
                            },
                        };
                        out.push((k, item));
                    }
                }
            }
        }
        items
    }
}

/// `trade_series` without its copies: the same simulation and metrics,
/// into reused buffers, keeping what the portfolio and the rows read.
fn lean_outcome(
    inputs: &Option<Result<CheckedInputs<'_>, String>>,
    timeline: &[i64],
    a: &ActiveSeries,
    opts: &MetricsOptions,
    dir: &[i8],
    run: &mut SymbolRun,
    exposure: &mut Vec<f64>,
) -> Result<Outcome, String> {
    match inputs {
        Some(Ok(checked)) => simulate_checked_into(run, checked, dir)
            .map_err(|e| e.to_string())
            .and_then(|()| non_finite(run, a).map_or(Ok(()), Err))?,
        Some(Err(e)) => return Err(e.clone()),
        None => return Err("no window".into()),
    }
    // The trade statistics once, for the symbol's metrics and the
    // portfolio's.
    let stats: Arc<[TradeStat]> = run.trades.iter().map(TradeStat::of).collect();
    let metrics = run.metrics_of_stats(&stats, exposure, opts);
    let r = &*run;
    let run = SymbolRun {
        capital: r.capital,
        ts: r.ts.clone(),
        equity: r.equity.clone(),
        gross: r.gross.clone(),
        benchmark: r.benchmark.clone(),
        total_fees: r.total_fees,
        ..SymbolRun::default()
    };
    Ok(Outcome {
        at: PortfolioSum::alignment(timeline, &run),
        run,
        stats,
        metrics,
    })
}

impl SampleAcc {
    /// Adds symbol `si`'s `item`.
    fn push(&mut self, si: usize, name: &str, item: Item) {
        match item {
            Item::Lean(o) => {
                self.trades.push(o.stats.clone());
                self.sum.add_at(&o.run, o.at);
                self.fees.push(o.run.total_fees);
                self.rows.push((si, o.metrics.clone()));
            }
            Item::Failed(reason) => self.failed.push(Skipped {
                symbol: name.to_string(),
                reason,
            }),
            Item::Full(r) => self.full.push(*r),
            Item::Signals(s) => self.signals.push(s),
        }
    }
}

/// A finished (combination, sample) of the streamed path.
struct SampleOut {
    failed: Vec<Skipped>,
    rows: Vec<(usize, Metrics)>,
    metrics: Option<(Metrics, Metrics)>,
    /// The portfolio and benchmark curves, when asked for.
    curves: Option<Curves>,
}

/// A portfolio's equity curve and its buy & hold benchmark's.
type Curves = (Curve, Curve);

/// The portfolio of sample `k` of a streamed combination: what
/// [`aggregate`] computes from the same symbols, summed in the same
/// order, under the same options (the symbols' common calendar).
fn finish_sample(
    acc: SampleAcc,
    k: usize,
    capital: f64,
    symbols: &[SymbolPlan],
    settings: &MetricsSettings,
    keep_curves: bool,
) -> SampleOut {
    let mut curves = None;
    let metrics = (!acc.rows.is_empty()).then(|| {
        let calendars = acc
            .rows
            .iter()
            .filter_map(|&(si, _)| symbols[si].options[k].as_ref())
            .map(|o| &o.calendar);
        let opts = settings.options(common_calendar(calendars));
        let (port, bench) = acc.sum.finish();
        // The portfolio's trades, every symbol's in symbol order (as
        // `aggregate` lists them).
        let mut trades = Vec::with_capacity(acc.trades.iter().map(|t| t.len()).sum());
        for t in &acc.trades {
            trades.extend_from_slice(t);
        }
        let m = portfolio_metrics(&port, &bench, &trades, &acc.fees, capital, &opts);
        if keep_curves {
            curves = Some((port, bench));
        }
        m
    });
    SampleOut {
        failed: acc.failed,
        rows: acc.rows,
        metrics,
        curves,
    }
}

/// The shared stages of some symbols' spans: `[symbol][span]`.
type Banks = Vec<Vec<Result<SharedSignals, String>>>;

/// The shared stages of the spans of `symbols` under the lengths of `p`
/// (`None`: no valid parameters, nothing to compute).
fn shared_banks(data: &Dataset, symbols: &[SymbolPlan], p: Option<&AtcParams>) -> Banks {
    let spans: Vec<&[f64]> = symbols
        .iter()
        .flat_map(|sp| {
            let close = data.view(sp.idx).close;
            sp.spans.iter().map(move |s| &close[s.start..s.end])
        })
        .collect();
    let all: Vec<Result<SharedSignals, String>> = match p {
        Some(p) => match shared_signals(&spans, p, Isa::Auto) {
            Ok(v) => v
                .into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect(),
            Err(e) => spans.iter().map(|_| Err(e.to_string())).collect(),
        },
        None => spans
            .iter()
            .map(|_| Err("no valid parameters".into()))
            .collect(),
    };
    let mut all = all.into_iter();
    symbols
        .iter()
        .map(|sp| all.by_ref().take(sp.spans.len()).collect())
        .collect()
}

/// A chunk of one lengths group's combinations (in processing order)
/// with its tasks.
struct Chunk {
    combos: Vec<usize>,
    tasks: Vec<TaskRun>,
}

/// A chunk whose tasks have run: per combination, per sample, what it
/// gathered, back in chunk order.
struct RanChunk {
    combos: Vec<usize>,
    accs: Vec<Vec<SampleAcc>>,
}

impl Chunk {
    /// Runs every combination over every symbol: the shared stages are
    /// `kept`, or computed block by block (and their data pages released).
    /// Symbols run in parallel, `group` at a time (each with every
    /// combination, see [`Chunk::symbol_items`]); then each combination
    /// takes the group's results in symbol order, so its portfolio is
    /// summed in symbol order whatever the thread count.
    fn run(
        mut self,
        ctx: &Ctx<'_>,
        blocks: &[std::ops::Range<usize>],
        kept: Option<&Banks>,
        group: usize,
    ) -> RanChunk {
        let lengths = self
            .tasks
            .iter()
            .flat_map(|t| &t.combos)
            .find(|c| c.invalid.is_none())
            .map(|c| c.params.clone());
        for block in blocks {
            let computed;
            let banks = match kept {
                Some(all) => &all[block.clone()],
                None => {
                    computed =
                        shared_banks(ctx.data, &ctx.symbols[block.clone()], lengths.as_ref());
                    &computed[..]
                }
            };
            let symbols: Vec<usize> = block.clone().collect();
            for group in symbols.chunks(group.max(1)) {
                let items: Vec<SymbolItems> = group
                    .par_iter()
                    .map_init(Worker::default, |w, &si| {
                        self.symbol_items(ctx, si, &banks[si - block.start], w)
                    })
                    .collect();
                // Per combination (flat order), the group's items in
                // symbol order.
                let combos: usize = self.tasks.iter().map(|t| t.combos.len()).sum();
                let mut by_combo: Vec<SymbolItems> = (0..combos)
                    .map(|_| Vec::with_capacity(group.len()))
                    .collect();
                for per_symbol in items {
                    for (f, v) in per_symbol.into_iter().enumerate() {
                        by_combo[f].push(v);
                    }
                }
                let data = ctx.data;
                let pairs: Vec<(&mut TaskCombo, SymbolItems)> = self
                    .tasks
                    .iter_mut()
                    .flat_map(|t| t.combos.iter_mut())
                    .zip(by_combo)
                    .collect();
                pairs.into_par_iter().for_each(|(c, per_symbol)| {
                    for (&si, v) in group.iter().zip(per_symbol) {
                        let name = &data.series()[ctx.symbols[si].idx].name;
                        for (k, item) in v {
                            c.accs[k].push(si, name, item);
                        }
                    }
                });
            }
            if kept.is_none() {
                // Done with these series for this chunk: let the kernel
                // drop their mapped pages.
                for sp in &ctx.symbols[block.clone()] {
                    ctx.data.release(sp.idx);
                }
            }
        }
        let mut accs: Vec<Option<Vec<SampleAcc>>> = (0..self.combos.len()).map(|_| None).collect();
        for t in self.tasks {
            for c in t.combos {
                accs[c.at] = Some(c.accs);
            }
        }
        RanChunk {
            combos: self.combos,
            accs: accs.into_iter().map(Option::unwrap_or_default).collect(),
        }
    }
}

/// A streamed chunk with every portfolio summed, ready to emit.
struct FinishedChunk {
    combos: Vec<usize>,
    outs: Vec<Vec<SampleOut>>,
}

impl RanChunk {
    /// The portfolios of every (combination, sample), in parallel.
    /// `keep_curves`: keep each combination's first-sample curves.
    fn finish(self, ctx: &Ctx<'_>, keep_curves: bool) -> FinishedChunk {
        let outs = self
            .accs
            .into_par_iter()
            .map(|accs| {
                accs.into_iter()
                    .enumerate()
                    .map(|(k, acc)| {
                        let keep = k == 0 && keep_curves;
                        finish_sample(acc, k, ctx.capital[k], ctx.symbols, ctx.settings, keep)
                    })
                    .collect()
            })
            .collect();
        FinishedChunk {
            combos: self.combos,
            outs,
        }
    }
}

/// What the emitting side of a sweep updates, combination by combination.
struct Emitter<'e, 'o> {
    data: &'e Dataset,
    symbols: &'e [SymbolPlan],
    samples: &'e [Sample],
    capital: &'e [f64],
    settings: &'e MetricsSettings,
    strict: bool,
    engine_bars: usize,
    emit: &'e mut dyn FnMut(Vec<Row>) -> Result<(), String>,
    on_combo: &'e (dyn Fn() + Sync),
    observe: Option<&'e mut Observer<'o>>,
    skipped: Vec<Skipped>,
    combo_bars: u64,
    /// The ranking that picks [`SweepResult::best_curve`], with its
    /// direction (lower is better).
    rank: Option<(RankBy<'e>, bool)>,
    /// The best combination so far by `rank`, its metric, and its first
    /// sample's curves; `None` inside once a chunk was not streamed.
    best: Option<(usize, f64, Option<Curves>)>,
    /// Every chunk so far was streamed with its curves.
    curves_whole: bool,
}

impl Emitter<'_, '_> {
    fn done(&mut self, rows: Vec<Row>) -> Result<(), RunError> {
        (self.emit)(rows).map_err(|message| RunError::Output { message })?;
        self.combo_bars += self.engine_bars as u64;
        (self.on_combo)();
        Ok(())
    }

    /// Emits a streamed chunk: each combination's rows (symbols, then
    /// the portfolio and benchmark rows, per sample), as [`push_rows`] orders
    /// them.
    fn streamed(&mut self, fin: FinishedChunk) -> Result<(), RunError> {
        for (&c, mut outs) in fin.combos.iter().zip(fin.outs) {
            if let Some((rank, lower)) = self.rank {
                // As `Ranking::add` reads it from the rows, and
                // `Ranking::order` orders it.
                let v = outs
                    .get(rank.ranked)
                    .and_then(|o| o.metrics.as_ref())
                    .and_then(|(pm, _)| output::metric_value(pm, rank.metric))
                    .unwrap_or(f64::NAN);
                let better = self.best.as_ref().is_none_or(|&(b, bv, _)| {
                    rank::order_by(lower, (c, v), (b, bv)) == std::cmp::Ordering::Less
                });
                if better {
                    let curves = outs.first_mut().and_then(|o| o.curves.take());
                    self.best = Some((c, v, curves));
                }
            }
            let mut rows = Vec::new();
            for (k, out) in outs.into_iter().enumerate() {
                if self.strict {
                    if let Some(s) = out.failed.into_iter().next() {
                        return Err(RunError::Strict {
                            symbol: s.symbol,
                            reason: s.reason,
                        });
                    }
                } else if c == 0 && k == 0 {
                    self.skipped.extend(out.failed);
                }
                let Some((pm, bm)) = out.metrics else {
                    continue;
                };
                let sample = &self.samples[k].name;
                for (si, metrics) in out.rows {
                    rows.push(Row {
                        combo: c,
                        sample: sample.clone(),
                        symbol: Some(self.data.series()[self.symbols[si].idx].name.clone()),
                        aggregate: None,
                        metrics,
                    });
                }
                for (agg, m) in [(Aggregate::Portfolio, pm), (Aggregate::Benchmark, bm)] {
                    rows.push(Row {
                        combo: c,
                        sample: sample.clone(),
                        symbol: None,
                        aggregate: Some(agg),
                        metrics: m,
                    });
                }
            }
            self.done(rows)?;
        }
        Ok(())
    }

    /// Emits a chunk kept in full for the observer: the steps of `run`
    /// ([`collect`], [`aggregate`]) on each (combination, sample).
    fn observed(&mut self, ran: RanChunk) -> Result<(), RunError> {
        self.curves_whole = false;
        for (&c, accs) in ran.combos.iter().zip(ran.accs) {
            let mut rows = Vec::new();
            for (k, acc) in accs.into_iter().enumerate() {
                let mut sk = Vec::new();
                let symbols = collect(acc.full, &mut sk, self.strict)?;
                if let Some(observe) = self.observe.as_deref_mut() {
                    observe(c, k, &symbols, &sk).map_err(|message| RunError::Output { message })?;
                }
                if c == 0 && k == 0 {
                    self.skipped.extend(sk);
                }
                if symbols.is_empty() {
                    continue;
                }
                let r = aggregate(symbols, Vec::new(), self.capital[k], self.settings);
                push_rows(&mut rows, c, &self.samples[k].name, &r);
            }
            self.done(rows)?;
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn sweep_inner(
    data: &Dataset,
    plan: &RunPlan,
    grid: &Grid,
    base: &Strategy,
    samples: &[Sample],
    strict: bool,
    cache: &Cache,
    capital_symbols: Option<&[usize]>,
    emit: &mut dyn FnMut(Vec<Row>) -> Result<(), String>,
    on_combo: &(dyn Fn() + Sync),
    observe: Option<&mut Observer<'_>>,
    rank: Option<RankBy<'_>>,
) -> Result<SweepResult, RunError> {
    // Shared cash: the grid's position limits run one book each over the
    // signals of the grid without them ([`shared`]).
    let shared = base.execution.allocation == crate::backtest::book::Allocation::Shared;
    let limits: Vec<Option<usize>> = match grid.max_positions_axis() {
        Some(v) => v.into_iter().map(Some).collect(),
        None => vec![base.execution.max_positions],
    };
    let signal_grid = grid.signal_grid();
    let grid = &signal_grid;
    // Which symbols trade in which sample (and the capital split of each).
    let mut per_sample_active = Vec::new();
    let mut skipped = Vec::new();
    for s in samples {
        let p = RunPlan {
            from: s.from,
            to: s.to,
            ..plan.clone()
        };
        match prepare(data, &p) {
            Ok((active, sk)) => {
                if s.name == "full" {
                    skipped.extend(sk);
                }
                per_sample_active.push(active);
            }
            Err(e) if s.name == "full" => return Err(e),
            Err(_) => per_sample_active.push(Vec::new()),
        }
    }
    let capital: Vec<f64> = per_sample_active
        .iter()
        .enumerate()
        .map(|(k, a)| {
            let n = capital_symbols
                .and_then(|c| c.get(k).copied())
                .unwrap_or(a.len());
            base.execution.capital / n.max(1) as f64
        })
        .collect();
    // Every window bar of each sample: a superset of its portfolio's
    // timeline (see `PortfolioSum`).
    let timelines: Vec<Vec<i64>> = per_sample_active
        .iter()
        .map(|a| window_timeline(data, a))
        .collect();
    let symbol_plans = symbol_plans(
        data,
        &per_sample_active,
        samples.len(),
        cache,
        &base.metrics,
    );
    let keep_full = observe.is_some();
    let ctx = Ctx {
        data,
        symbols: &symbol_plans,
        capital: &capital,
        cfg: base.execution.exec_config(),
        settings: &base.metrics,
        cache,
        timelines: &timelines,
        keep_full,
        keep_signals: shared,
    };
    let total_window_bars: usize = symbol_plans
        .iter()
        .flat_map(|sp| sp.per_sample.iter().flatten())
        .map(|a| a.window.len())
        .sum();
    let span_bars = || {
        symbol_plans
            .iter()
            .flat_map(|sp| sp.spans.iter().map(|s| s.end - s.start))
    };
    let engine_bars: usize = span_bars().sum();
    let longest = span_bars().max().unwrap_or(0);
    // Per combination a chunk holds, per sample, a portfolio sum (~41
    // bytes per timeline bar) and each symbol's metrics, and the trade
    // statistics (~2 bytes per window bar at one trade per 28 bars); with
    // an observer, each symbol's full results (~64 bytes per window bar)
    // and signals (9 bytes per engine bar). Two chunks are alive at once
    // (one emitted while the next runs). A lean sweep measures the trade
    // statistics after its first chunk (see `Sizing`).
    let untraded_per_combo = timelines.iter().map(|t| t.len() * 41).sum::<usize>()
        + per_sample_active
            .iter()
            .map(|a| a.len() * (std::mem::size_of::<Metrics>() + 64))
            .sum::<usize>()
        + longest * 8;
    let per_combo = untraded_per_combo
        + total_window_bars * 2
        + if keep_full {
            total_window_bars * 64 + engine_bars * 9
        } else {
            0
        };
    let per_combo = if shared {
        shared::bytes_per_combo(
            total_window_bars,
            timelines.iter().map(Vec::len).sum(),
            per_sample_active.iter().map(Vec::len).sum(),
            limits.len(),
        )
    } else {
        per_combo
    };
    let budget_chunk = (CHUNK_BUDGET_BYTES / 2 / per_combo.max(1)).clamp(1, 4096);
    let threads = rayon::current_num_threads();
    // The shared books run in batches that fit the same budget, and no
    // longer than a few books per thread (each book is a whole account).
    let book_batch = (CHUNK_BUDGET_BYTES
        / 2
        / shared::bytes_per_book(
            total_window_bars,
            timelines.iter().map(Vec::len).sum(),
            per_sample_active.iter().map(Vec::len).sum(),
        )
        .max(1))
    .clamp(1, 8 * threads);
    // The shared stages of every symbol, kept for a whole lengths group
    // when they fit the budget; else computed per block of symbols (and
    // chunk).
    let bank_bytes = |sp: &SymbolPlan| -> usize {
        sp.spans
            .iter()
            .map(|s| (s.end - s.start) * (MA_COUNT + 8))
            .sum()
    };
    let keep_banks = symbol_plans.iter().map(bank_bytes).sum::<usize>() <= BANK_BUDGET_BYTES;
    let mut blocks: Vec<std::ops::Range<usize>> = Vec::new();
    let mut at = 0;
    while at < symbol_plans.len() {
        let mut end = at;
        let mut bytes = 0;
        while end < symbol_plans.len() && (end == at || bytes < BANK_BUDGET_BYTES) {
            bytes += bank_bytes(&symbol_plans[end]);
            end += 1;
        }
        blocks.push(at..end);
        at = end;
    }
    let width = LayerLanes::max_width(Isa::Auto);
    // Whole lanes where the grid allows (a multiple of width × the
    // combinations that share a layer key's cutout and thresholds).
    let repeat = grid
        .axes
        .iter()
        .filter(|(a, _)| {
            registry::param(a)
                .is_ok_and(|s| matches!(s.stage, Stage::LayerStart | Stage::Direction))
        })
        .map(|(_, v)| v.len())
        .product::<usize>()
        .max(1);
    let unit = width * repeat;
    let lean = !(keep_full || shared);
    // The first chunk: a few lane groups per thread, so one chunk's rows
    // are written while the next one runs; longer when the shared stages
    // are recomputed per chunk, so that stays a small part. A lean sweep
    // then sizes its chunks by what the chunks before held (see `Sizing`).
    let per_chunk_units = if keep_banks {
        2 * threads
    } else {
        16 * threads
    };
    let mut sizing = Sizing {
        curve_bytes: per_sample_active
            .iter()
            .map(|a| a.iter().map(|s| s.window.end - s.start).max().unwrap_or(0) * 40)
            .sum(),
        per_combo: untraded_per_combo,
        prior_trade_bytes: total_window_bars * 2,
        threads,
        unit,
        chunk: (unit * per_chunk_units).min(budget_chunk).max(1),
        max: budget_chunk,
        group: 4 * threads,
    };
    if lean {
        sizing.group = sizing.group_for(sizing.chunk, 2.0);
    }

    // The first sample's curves of a chunk's combinations, held until
    // each is compared with the best so far, within a budget: two curves
    // of a timestamp, an equity and a gross per bar.
    let curve_bytes = timelines.first().map_or(0, |t| t.len()) * 2 * 24;
    let keep_curves = rank.is_some() && curve_bytes * sizing.max <= CURVE_BUDGET_BYTES;
    let mut out = Emitter {
        data,
        symbols: &symbol_plans,
        samples,
        capital: &capital,
        settings: &base.metrics,
        strict,
        engine_bars,
        emit,
        on_combo,
        observe,
        skipped,
        combo_bars: 0,
        rank: rank.map(|r| (r, output::lower_is_better(r.metric))),
        best: None,
        curves_whole: keep_curves,
    };
    let new_acc = |k: usize| SampleAcc {
        sum: PortfolioSum::new(
            if keep_full {
                Vec::new()
            } else {
                timelines[k].clone()
            },
            capital[k],
        ),
        trades: Vec::new(),
        fees: Vec::new(),
        rows: Vec::new(),
        failed: Vec::new(),
        full: Vec::new(),
        signals: Vec::new(),
    };
    let plan_chunk = |combos: &[usize]| -> Chunk {
        let params: Vec<AtcParams> = combos.iter().map(|&c| grid.combo(&base.atc, c)).collect();
        let invalid: Vec<Option<String>> = params
            .iter()
            .map(|p| p.validate().err().map(|e| e.to_string()))
            .collect();
        let valid: Vec<bool> = invalid.iter().map(Option::is_none).collect();
        let tasks = plan::plan_tasks(&params, &valid, width)
            .into_iter()
            .map(|t| {
                let lane_params: Vec<&AtcParams> = t.lanes.iter().map(|&c| &params[c]).collect();
                TaskRun {
                    lanes: (!lane_params.is_empty())
                        .then(|| LayerLanes::new(&lane_params, longest, Isa::Auto).ok())
                        .flatten(),
                    combos: t
                        .combos
                        .iter()
                        .map(|&(at, lane)| TaskCombo {
                            at,
                            lane,
                            params: params[at].clone(),
                            invalid: invalid[at].clone(),
                            accs: (0..samples.len()).map(new_acc).collect(),
                        })
                        .collect(),
                }
            })
            .collect();
        Chunk {
            combos: combos.to_vec(),
            tasks,
        }
    };

    let books = shared::Books {
        base,
        grid,
        limits,
        timelines: &timelines,
        samples,
        batch: book_batch,
    };
    // The streamed chunk waiting to be emitted while the next one runs.
    let mut pending: Option<FinishedChunk> = None;
    for combos in combo_groups(grid, &base.atc).values() {
        let first_valid = combos
            .iter()
            .map(|&c| grid.combo(&base.atc, c))
            .find(|p| p.validate().is_ok());
        let kept = (keep_banks && first_valid.is_some())
            .then(|| shared_banks(data, &symbol_plans, first_valid.as_ref()));
        let mut rest = &combos[..];
        while !rest.is_empty() {
            let take = chunk_len(rest.len(), sizing.chunk, unit * threads, sizing.max);
            let (chunk_combos, later) = rest.split_at(take);
            rest = later;
            let group = sizing.group;
            let chunk = plan_chunk(chunk_combos);
            if shared {
                let ran = chunk.run(&ctx, &blocks, kept.as_ref(), group);
                out.curves_whole = false;
                books.emit(&ctx, ran, &mut out)?;
                continue;
            }
            if keep_full {
                let ran = chunk.run(&ctx, &blocks, kept.as_ref(), group);
                out.observed(ran)?;
                continue;
            }
            let mut ran = None;
            let mut emitted = Ok(());
            rayon::in_place_scope(|s| {
                s.spawn(|_| ran = Some(chunk.run(&ctx, &blocks, kept.as_ref(), group)));
                if let Some(fin) = pending.take() {
                    emitted = out.streamed(fin);
                }
            });
            emitted?;
            if let Some(r) = &ran {
                sizing.observe(r);
            }
            pending = ran.map(|r| r.finish(&ctx, keep_curves));
        }
    }
    if let Some(fin) = pending.take() {
        out.streamed(fin)?;
    }
    let best_curve = match out.best {
        Some((combo, _, Some((portfolio, benchmark)))) if out.curves_whole => Some(BestCurve {
            combo,
            portfolio,
            benchmark,
        }),
        _ => None,
    };
    Ok(SweepResult {
        samples: samples.to_vec(),
        skipped: out.skipped,
        combo_bars: out.combo_bars,
        best_curve,
    })
}

/// The length of the next chunk of `rest` combinations: `chunk`, except
/// that a remainder shorter than `short` joins it where the two fit in
/// `max` (the memory budget's chunk): alone it would be split over the
/// threads, one kernel pass per lane (a 10 × 10 grid ran 16 passes of 8
/// lanes' cost in chunks of 32, 32, 32 and 4; in 32, 32 and 36, 13).
fn chunk_len(rest: usize, chunk: usize, short: usize, max: usize) -> usize {
    let take = chunk.max(1).min(rest);
    if rest - take < short && rest <= max {
        rest
    } else {
        take
    }
}

/// How many combinations a chunk of a lean sweep holds and how many
/// symbols run at once. Combinations share outcomes only inside a chunk,
/// so chunks are as long as memory allows: each combination holds its
/// portfolio sum, its rows and its portfolio's trade statistics (a
/// `TradeStat` per trade: 56 bytes, from one trade per few hundred bars to
/// one every two bars; shared with the combinations whose outcome it is),
/// and a group of symbols holds, at worst, a curve (40 bytes a bar) and
/// the trade statistics per (symbol, combination). The trades are not
/// known before the sweep runs: the first chunk is short, and each later
/// one is sized by the trades the chunks before held, never below a prior
/// of one trade per 28 bars (a chunk that traded nothing says little of
/// the next). Sizes never change an output byte (no output depends on how
/// combinations are grouped).
struct Sizing {
    /// Curve bytes of one symbol's outcome in every sample.
    curve_bytes: usize,
    /// Per combination, everything but the trade statistics.
    per_combo: usize,
    /// Per combination, the trade statistics' bytes assumed at least (2
    /// bytes a window bar).
    prior_trade_bytes: usize,
    threads: usize,
    unit: usize,
    chunk: usize,
    /// The longest chunk the budget allows.
    max: usize,
    group: usize,
}

impl Sizing {
    /// Symbols per group for chunks of `chunk` combinations whose
    /// outcomes hold `trades_per_outcome` trades, as if every (symbol,
    /// combination) had its own.
    fn group_for(&self, chunk: usize, trades_per_outcome: f64) -> usize {
        let outcome = self.outcome_bytes(trades_per_outcome);
        (CHUNK_BUDGET_BYTES / 4 / (chunk.max(1) * outcome)).clamp(1, 4096)
    }

    fn outcome_bytes(&self, trades_per_outcome: f64) -> usize {
        // With a margin: symbols differ. At least the prior's trades.
        let trades = ((trades_per_outcome * 1.5 * std::mem::size_of::<TradeStat>() as f64)
            as usize)
            .max(self.curve_bytes / 20);
        (self.curve_bytes + trades + std::mem::size_of::<Metrics>() + 1024).max(1)
    }

    /// Sizes the next chunks by what `ran` holds. Trade statistics shared
    /// by combinations with equal directions are held once: they count
    /// per distinct outcome, but as at least half of what unshared ones
    /// would hold (the next chunks' combinations may be less alike).
    fn observe(&mut self, ran: &RanChunk) {
        let combos = ran.accs.len().max(1);
        let mut distinct = std::collections::HashSet::new();
        let (mut held, mut all, mut rows) = (0usize, 0usize, 0usize);
        for acc in ran.accs.iter().flatten() {
            rows += acc.trades.len();
            for t in &acc.trades {
                all += t.len();
                if distinct.insert(Arc::as_ptr(t) as *const TradeStat) {
                    held += t.len();
                }
            }
        }
        let trades = held.max(all / 2) as f64 * 1.5;
        let trade_bytes = ((trades * std::mem::size_of::<TradeStat>() as f64) as usize / combos)
            .max(self.prior_trade_bytes);
        let per_combo =
            self.per_combo + trade_bytes + rows * std::mem::size_of::<Arc<[TradeStat]>>() / combos;
        self.max = (CHUNK_BUDGET_BYTES / 2 / per_combo.max(1)).clamp(1, 4096);
        let per_outcome =
            (all as f64 / rows.max(1) as f64).max(held as f64 / distinct.len().max(1) as f64);
        // Groups of at least four symbols per thread (their work varies
        // with how many outcomes each symbol has).
        let c = (CHUNK_BUDGET_BYTES / 4 / (4 * self.threads * self.outcome_bytes(per_outcome)))
            .min(self.max)
            .max(1);
        self.chunk = if c >= self.unit { c - c % self.unit } else { c };
        self.group = self.group_for(self.chunk, per_outcome);
    }
}

/// Each symbol active in the first sample (`full`) with its windows,
/// engine spans and metric options in every sample.
fn symbol_plans(
    data: &Dataset,
    per_sample_active: &[Vec<ActiveSeries>],
    samples: usize,
    cache: &Cache,
    settings: &MetricsSettings,
) -> Vec<SymbolPlan> {
    per_sample_active[0]
        .par_iter()
        .map(|first| {
            let per_sample: Vec<Option<ActiveSeries>> = per_sample_active
                .iter()
                .map(|active| active.iter().find(|a| a.idx == first.idx).cloned())
                .collect();
            let options = per_sample
                .iter()
                .map(|a| a.as_ref().map(|a| series_options(data, a, settings)))
                .collect();
            let spans = spans(&per_sample)
                .into_iter()
                .map(|(start, end)| Span {
                    start,
                    end,
                    samples: (0..samples)
                        .filter(|&k| per_sample[k].as_ref().is_some_and(|a| a.start == start))
                        .collect(),
                    hash: if cache.is_enabled() {
                        span_hash(&data.series()[first.idx].close_hash, start, end)
                    } else {
                        String::new()
                    },
                })
                .collect();
            SymbolPlan {
                idx: first.idx,
                per_sample,
                spans,
                options,
            }
        })
        .collect()
}

/// Combination numbers grouped by lengths (in a fixed order), grid order
/// inside a group.
fn combo_groups(grid: &Grid, base: &AtcParams) -> BTreeMap<(u8, [usize; 6]), Vec<usize>> {
    let mut groups: BTreeMap<(u8, [usize; 6]), Vec<usize>> = BTreeMap::new();
    for c in 0..grid.count() as usize {
        groups
            .entry(lengths_key(&grid.combo(base, c)))
            .or_default()
            .push(c);
    }
    groups
}

#[cfg(test)]
mod tests {
    /// Attack on the reuse of outcomes (issue 20): chunks sized by the
    /// old estimate of one trade per 20 bars held 6× the budget on a
    /// sweep trading every few bars (1.6 GB against 0.2 GB before). After
    /// a chunk, the next ones are sized by the trades it held, and the
    /// estimated bytes of a chunk and of a symbol group stay within their
    /// budgets; trade statistics shared between combinations count once,
    /// but never as less than half of unshared ones. Attack on their
    /// sharing (round 31): a first chunk that shared everything and traded
    /// nothing (cutouts past the data) sized the next chunks, which traded
    /// every few bars and shared nothing, at 2× the old build's memory:
    /// a chunk that traded nothing keeps the prior of 2 bytes a bar, and
    /// groups are sized as if nothing were shared.
    #[test]
    fn trade_heavy_sweeps_size_chunks_by_the_trades_they_hold() {
        use super::*;
        let day = 86_400_000_000;
        let m = crate::backtest::metrics(1.0, &[0, day], &[1.0, 1.1], &[1.0, 1.0], &[], None, 0.0);
        let stat = TradeStat {
            ret: 0.0,
            pnl: 0.0,
            bars_held: 1,
            entry_ts: 0,
            exit_ts: Some(day),
            open: false,
        };
        let lists = |per_row: usize| -> Vec<Arc<[TradeStat]>> {
            (0..100).map(|_| vec![stat; per_row].into()).collect()
        };
        // 100 symbols of 1,000 bars in 32 combinations, each with its
        // own outcomes or all sharing one per symbol.
        let ran = |per_row: usize, shared: bool| {
            let common = lists(per_row);
            RanChunk {
                combos: (0..32).collect(),
                accs: (0..32)
                    .map(|_| {
                        vec![SampleAcc {
                            sum: PortfolioSum::new(Vec::new(), 1.0),
                            trades: if shared {
                                common.clone()
                            } else {
                                lists(per_row)
                            },
                            fees: Vec::new(),
                            rows: (0..100).map(|i| (i, m.clone())).collect(),
                            failed: Vec::new(),
                            full: Vec::new(),
                            signals: Vec::new(),
                        }]
                    })
                    .collect(),
            }
        };
        let mut s = Sizing {
            curve_bytes: 1000 * 40,
            per_combo: 100 * 1000,
            prior_trade_bytes: 100 * 1000 * 2,
            threads: 2,
            unit: 8,
            chunk: 32,
            max: 4096,
            group: 8,
        };
        // A trade per 200 bars, then one every two bars.
        s.observe(&ran(5, false));
        let light = s.chunk;
        s.observe(&ran(500, false));
        let heavy = s.chunk;
        assert!(heavy < light, "{heavy} {light}");
        let trades = 50_000 * std::mem::size_of::<TradeStat>();
        assert!(heavy * (s.per_combo + trades) <= CHUNK_BUDGET_BYTES / 2);
        let outcome = s.curve_bytes + 500 * std::mem::size_of::<TradeStat>();
        assert!(s.group * heavy * outcome <= CHUNK_BUDGET_BYTES / 4);
        assert!(s.group >= 4 * s.threads || heavy == 1);
        // Shared: longer chunks, within the budget if half the outcomes
        // were distinct; groups as if none were shared.
        s.observe(&ran(500, true));
        assert!(s.chunk > heavy, "{} {heavy}", s.chunk);
        assert!(s.chunk * (s.per_combo + trades / 2) <= CHUNK_BUDGET_BYTES / 2);
        assert!(s.group * s.chunk * outcome <= CHUNK_BUDGET_BYTES / 4);
        // Nothing traded: the prior still bounds the chunk and the groups.
        s.observe(&ran(0, true));
        assert!(s.chunk * (s.per_combo + s.prior_trade_bytes) <= CHUNK_BUDGET_BYTES / 2);
        let outcome = s.curve_bytes + s.curve_bytes / 20;
        assert!(s.group * s.chunk * outcome <= CHUNK_BUDGET_BYTES / 4);
    }

    /// A short last chunk joins the one before it; nothing is lost or
    /// reordered.
    #[test]
    fn a_short_last_chunk_joins_the_one_before() {
        let lens = |n: usize, chunk: usize, max: usize| {
            let mut v = Vec::new();
            let mut rest = n;
            while rest > 0 {
                let take = super::chunk_len(rest, chunk, 16, max);
                v.push(take);
                rest -= take;
            }
            v
        };
        assert_eq!(lens(100, 32, 40), vec![32, 32, 36]);
        assert_eq!(lens(100, 40, 40), vec![40, 40, 20]);
        // Not past the memory budget's chunk.
        assert_eq!(lens(77, 36, 40), vec![36, 36, 5]);
        assert_eq!(lens(100, 100, 100), vec![100]);
        assert_eq!(lens(4, 32, 40), vec![4]);
    }
}
