//! Parameter sweeps (`atc-bt sweep`): every combination of a [`Grid`] over
//! the selected symbols, with shared work planned so each distinct piece is
//! computed once.
//!
//! - Every combination runs the batched engine ([`compute_batch`]) over all
//!   symbols at once, as `run` does: symbols in SIMD lanes, batches on all
//!   cores. It recomputes the moving averages per combination, and is still
//!   about twice as fast per combination as re-running only the layers of a
//!   shared single-series [`SignalBank`](crate::engine::SignalBank)
//!   (measured; see the README). Combinations are processed grouped by
//!   their lengths (robustness + six base lengths), in a fixed order.
//! - Each symbol's average signal and direction per combination are looked
//!   up in the result cache (the `signals` kind that `run` stores), so a
//!   combination that a run already computed is not recomputed. A sweep
//!   does not store them: measured on 1,000 × 1,500 × 12 combinations,
//!   storing cost +24% on the cold sweep and 280 MB of disk for a 1.3×
//!   faster rerun, and one big grid would push out the entries runs reuse.
//! - A combination's results come from the same functions as `atc-bt run`
//!   ([`trade_series`], [`aggregate`]): one combination of a sweep gives
//!   exactly the metrics of `run` with the same parameters.
//! - Memory is bounded independently of the grid: combinations are
//!   processed in chunks sized to a memory budget, and their rows are
//!   streamed to the results file before the next chunk starts.

pub mod grid;
pub mod output;
pub mod walk;

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use crate::backtest::Metrics;
use crate::backtest::MetricsOptions;
use crate::cache::{lookup_signals_once, Cache};
use crate::data::Dataset;
use crate::engine::{compute_batch, AtcParams, BatchDetail};
use crate::run::{
    aggregate, collect, last_bar, prepare, series_options, span_hash, trade_series, ActiveSeries,
    RunError, RunPlan, Skipped, Strategy,
};
pub use grid::{Grid, GridError, Value};

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

/// Per-combination portfolio results, for ranking.
#[derive(Debug, Clone)]
pub struct ComboSummary {
    /// Combination number (grid order).
    pub combo: usize,
    /// Its parameters.
    pub params: AtcParams,
    /// Portfolio metrics per sample (same order as the samples).
    pub portfolio: Vec<Option<Metrics>>,
    /// Benchmark metrics per sample.
    pub benchmark: Vec<Option<Metrics>>,
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

/// What a sweep returns besides the streamed rows.
#[derive(Debug, Clone)]
pub struct SweepResult {
    /// One summary per combination, in grid order.
    pub combos: Vec<ComboSummary>,
    /// The samples (`full`, and `in`/`out` with a split).
    pub samples: Vec<Sample>,
    /// Symbols skipped in some sample.
    pub skipped: Vec<Skipped>,
    /// Engine-bar × combination count processed (layer stage), for throughput.
    pub combo_bars: u64,
}

/// Appends the rows of one (combination, sample): each symbol, then the
/// portfolio and benchmark rows (aggregate rows: `symbol` null). Shared by
/// `sweep` and `merge`, so a merged sweep writes exactly the rows of a
/// single-machine one.
pub fn push_rows(rows: &mut Vec<Row>, combo: usize, sample: &str, r: &crate::run::RunResult) {
    use crate::run::output::Aggregate;
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

/// Per symbol: its active window in each sample (None where it has no
/// bars), and the metric options of each (its periods per year resolved
/// once, not per combination).
struct SymbolPlan {
    idx: usize,
    per_sample: Vec<Option<ActiveSeries>>,
    options: Vec<Option<MetricsOptions>>,
}

/// Distinct engine spans `(start, end)` of a symbol over its samples.
fn spans(sp: &SymbolPlan) -> Vec<(usize, usize)> {
    let mut by_start: BTreeMap<usize, usize> = BTreeMap::new();
    for a in sp.per_sample.iter().flatten() {
        let e = by_start.entry(a.start).or_insert(0);
        *e = (*e).max(a.window.end);
    }
    by_start.into_iter().collect()
}

/// A span's average signal and direction, or why the engine refused it.
type SpanSignals = Result<(Vec<f64>, Vec<i8>), String>;

/// The engine's output for every symbol's spans under `p`: `[symbol]` →
/// `(start, signals)`. Cached signals are taken from the cache; the rest
/// are computed in one batched call.
fn span_signals(
    data: &Dataset,
    symbol_plans: &[SymbolPlan],
    p: &AtcParams,
    cache: &Cache,
) -> Vec<Vec<(usize, SpanSignals)>> {
    let all: Vec<(usize, usize, usize)> = symbol_plans
        .iter()
        .enumerate()
        .flat_map(|(si, sp)| spans(sp).into_iter().map(move |(s, e)| (si, s, e)))
        .collect();
    let hash = |&(si, s, e): &(usize, usize, usize)| {
        span_hash(&data.series()[symbol_plans[si].idx].close_hash, s, e)
    };
    let mut out: Vec<Option<SpanSignals>> = all
        .par_iter()
        .map(|t| lookup_signals_once(cache, &hash(t), t.2 - t.1, p).map(Ok))
        .collect();
    let missing: Vec<usize> = (0..all.len()).filter(|&i| out[i].is_none()).collect();
    if !missing.is_empty() {
        let closes: Vec<&[f64]> = missing
            .iter()
            .map(|&i| {
                let (si, s, e) = all[i];
                &data.view(symbol_plans[si].idx).close[s..e]
            })
            .collect();
        match compute_batch(&closes, p, BatchDetail::Direction) {
            Ok(v) => {
                for (&i, r) in missing.iter().zip(v) {
                    out[i] = Some(r.map(|o| (o.avg, o.dir)).map_err(|e| e.to_string()));
                }
            }
            Err(e) => {
                for &i in &missing {
                    out[i] = Some(Err(e.to_string()));
                }
            }
        }
    }
    let mut per_symbol: Vec<Vec<(usize, SpanSignals)>> =
        symbol_plans.iter().map(|_| Vec::new()).collect();
    for (&(si, s, _), o) in all.iter().zip(out) {
        per_symbol[si].push((s, o.unwrap_or_else(|| Err("no engine result".into()))));
    }
    per_symbol
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
    sweep_with(
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
        &mut |_, _, _, _| Ok(()),
    )
}

/// What [`sweep_with`] shows per (combination, sample): the symbols that
/// traded, in plan order, and those that failed.
pub type Observer<'a> =
    dyn FnMut(usize, usize, &[crate::run::SymbolResult], &[Skipped]) -> Result<(), String> + 'a;

/// The order in which [`sweep`] processes (and emits) combinations: groups
/// of equal lengths in a fixed order, grid order inside a group.
pub fn combo_order(grid: &Grid, base: &AtcParams) -> Vec<usize> {
    let mut groups: BTreeMap<(u8, [usize; 6]), Vec<usize>> = BTreeMap::new();
    for c in 0..grid.count() as usize {
        groups
            .entry(lengths_key(&grid.combo(base, c)))
            .or_default()
            .push(c);
    }
    groups.into_values().flatten().collect()
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
    let mut symbol_plans: Vec<SymbolPlan> = per_sample_active[0]
        .iter()
        .map(|a| SymbolPlan {
            idx: a.idx,
            per_sample: Vec::with_capacity(samples.len()),
            options: Vec::with_capacity(samples.len()),
        })
        .collect();
    for sp in &mut symbol_plans {
        for active in &per_sample_active {
            sp.per_sample
                .push(active.iter().find(|a| a.idx == sp.idx).cloned());
        }
    }
    symbol_plans.par_iter_mut().for_each(|sp| {
        sp.options = sp
            .per_sample
            .iter()
            .map(|a| a.as_ref().map(|a| series_options(data, a, &base.metrics)))
            .collect();
    });
    let cfg = base.execution.exec_config();
    let total_window_bars: usize = symbol_plans
        .iter()
        .flat_map(|sp| sp.per_sample.iter().flatten())
        .map(|a| a.window.len())
        .sum();
    let engine_bars: usize = symbol_plans
        .iter()
        .flat_map(|sp| spans(sp).into_iter().map(|(s, e)| e - s))
        .sum();
    // Per combination a chunk holds each symbol's trade results (~64 bytes
    // per window bar) and the engine's signals (9 bytes per engine bar).
    let per_combo = total_window_bars * 64 + engine_bars * 9;
    let chunk = (CHUNK_BUDGET_BYTES / per_combo.max(1)).clamp(1, 4096);

    // Group combinations by lengths, keeping grid order inside a group.
    let count = grid.count() as usize;
    let mut groups: BTreeMap<(u8, [usize; 6]), Vec<usize>> = BTreeMap::new();
    for c in 0..count {
        groups
            .entry(lengths_key(&grid.combo(&base.atc, c)))
            .or_default()
            .push(c);
    }

    let mut summaries: Vec<Option<ComboSummary>> = vec![None; count];
    let mut combo_bars = 0u64;
    for combos in groups.values() {
        for chunk_combos in combos.chunks(chunk) {
            let params: Vec<AtcParams> = chunk_combos
                .iter()
                .map(|&c| grid.combo(&base.atc, c))
                .collect();
            // [combo][symbol] → (span start, signals)
            let signals: Vec<Vec<Vec<(usize, SpanSignals)>>> = params
                .iter()
                .map(|p| span_signals(data, &symbol_plans, p, cache))
                .collect();
            // [symbol][combo][sample]
            let per_symbol: Vec<Vec<Vec<Option<Result<_, Skipped>>>>> = symbol_plans
                .par_iter()
                .enumerate()
                .map(|(si, sp)| {
                    signals
                        .iter()
                        .map(|per_symbol| {
                            sp.per_sample
                                .iter()
                                .enumerate()
                                .map(|(k, a)| {
                                    let a = a.as_ref()?;
                                    let (_, sig) =
                                        per_symbol[si].iter().find(|(s, _)| *s == a.start)?;
                                    let len = a.window.end - a.start;
                                    Some(match sig {
                                        Ok((avg, dir)) => trade_series(
                                            data,
                                            a,
                                            &avg[..len],
                                            &dir[..len],
                                            capital[k],
                                            &cfg,
                                            sp.options[k].as_ref()?,
                                        ),
                                        Err(reason) => Err(Skipped {
                                            symbol: data.series()[sp.idx].name.clone(),
                                            reason: reason.clone(),
                                        }),
                                    })
                                })
                                .collect()
                        })
                        .collect()
                })
                .collect();
            drop(signals);
            // Transpose to combos, aggregate each sample in symbol order.
            let mut per_symbol: Vec<_> = per_symbol.into_iter().map(|v| v.into_iter()).collect();
            for (ci, &c) in chunk_combos.iter().enumerate() {
                let mut by_sample: Vec<Vec<Result<_, Skipped>>> = vec![Vec::new(); samples.len()];
                for it in per_symbol.iter_mut() {
                    if let Some(v) = it.next() {
                        for (k, r) in v.into_iter().enumerate() {
                            if let Some(r) = r {
                                by_sample[k].push(r);
                            }
                        }
                    }
                }
                let mut rows = Vec::new();
                let mut port = Vec::new();
                let mut bench = Vec::new();
                for (k, outcomes) in by_sample.into_iter().enumerate() {
                    let mut sk = Vec::new();
                    let symbols = collect(outcomes, &mut sk, strict)?;
                    observe(c, k, &symbols, &sk).map_err(|message| RunError::Output { message })?;
                    if c == 0 && k == 0 {
                        skipped.extend(sk);
                    }
                    if symbols.is_empty() {
                        port.push(None);
                        bench.push(None);
                        continue;
                    }
                    let r = aggregate(symbols, Vec::new(), capital[k], &base.metrics);
                    push_rows(&mut rows, c, &samples[k].name, &r);
                    port.push(Some(r.portfolio_metrics));
                    bench.push(Some(r.benchmark_metrics));
                }
                summaries[c] = Some(ComboSummary {
                    combo: c,
                    params: params[ci].clone(),
                    portfolio: port,
                    benchmark: bench,
                });
                emit(rows).map_err(|message| RunError::Output { message })?;
                combo_bars += engine_bars as u64;
                on_combo();
            }
        }
    }
    Ok(SweepResult {
        combos: summaries.into_iter().flatten().collect(),
        samples: samples.to_vec(),
        skipped,
        combo_bars,
    })
}
