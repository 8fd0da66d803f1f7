//! The portfolio: the sum of the symbols' sub-accounts on the union of
//! their timestamps.
//!
//! Every sub-account starts with `capital_per_symbol`. On a timestamp where
//! a symbol has no bar its sub-account's last value carries forward; before
//! its first bar it holds its starting cash (and no exposure). The sum runs
//! over the runs in slice order, always, so the result is bit-identical
//! however the runs were computed (any thread count) as long as the caller
//! keeps the slice in a fixed order (e.g. the symbol order of the input).

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};

use super::exec::{gross_fraction, SymbolRun};

/// An equity curve on its own timestamps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Timestamps, µs since epoch, UTC, strictly increasing.
    pub ts: Vec<i64>,
    /// Equity at each timestamp.
    pub equity: Vec<f64>,
    /// Gross exposure in currency at each timestamp (`Σ |units·close|`).
    pub gross: Vec<f64>,
}

impl Curve {
    /// Gross exposure as a fraction of equity (the `exposure` argument of
    /// [`metrics`](super::metrics)); `+∞` where exposed with equity ≤ 0.
    pub fn exposure(&self) -> Vec<f64> {
        gross_fraction(&self.gross, &self.equity)
    }
}

/// Metrics of a buy & hold curve against itself (beta 1, alpha 0, no
/// trades): the benchmark row of the statistics table. Use it for the
/// portfolio's benchmark curve from [`portfolio`] or a symbol's
/// [`SymbolRun::benchmark_curve`].
pub fn benchmark_metrics(
    initial: f64,
    bench: &Curve,
    opts: &super::MetricsOptions,
) -> super::Metrics {
    super::metrics_of_stats(
        initial,
        &bench.ts,
        &bench.equity,
        &bench.equity,
        &[],
        Some(&bench.exposure()),
        0.0,
        opts,
    )
}

/// Sorted, de-duplicated union of all runs' timestamps.
///
/// Sized exactly up front and shrunk after de-duplication: the
/// concatenation is symbols × bars long, the union only as long as the
/// calendar, and the curves keep it for the rest of the run.
fn union_ts<R: Borrow<SymbolRun>>(runs: &[R]) -> Vec<i64> {
    let total = runs.iter().map(|r| r.borrow().ts.len()).sum();
    let mut ts: Vec<i64> = Vec::with_capacity(total);
    for r in runs {
        ts.extend_from_slice(&r.borrow().ts);
    }
    ts.sort_unstable();
    ts.dedup();
    ts.shrink_to_fit();
    ts
}

/// Portfolio and benchmark curves from per-symbol runs.
///
/// Returns `(portfolio, benchmark)` on the union of the runs' timestamps.
/// The benchmark sums the runs' buy & hold curves the same way (cash before
/// a symbol's first bar, carried forward after its last), so it is buy &
/// hold under the same `1/N` split. `capital_per_symbol` is the cash a
/// sub-account holds before its first bar.
///
/// Takes owned runs or references (`&[SymbolRun]` or `&[&SymbolRun]`), so a
/// caller holding runs inside larger results need not clone them.
pub fn portfolio<R: Borrow<SymbolRun>>(runs: &[R], capital_per_symbol: f64) -> (Curve, Curve) {
    let mut acc = PortfolioSum::new(union_ts(runs), capital_per_symbol);
    for run in runs {
        acc.add(run.borrow());
    }
    acc.finish()
}

/// [`portfolio`] one run at a time, so a caller streaming thousands of
/// symbols never holds their per-bar vectors together.
///
/// The timeline is given up front and may be a superset of the runs'
/// timestamps (e.g. every window bar of the selection, before knowing
/// which symbols the backtester will refuse): a run's contribution at a
/// timestamp depends only on its own bars up to it, so [`finish`] dropping
/// the timestamps no added run has gives bit for bit what [`portfolio`]
/// gives on the exact union, as long as runs are added in the same order.
///
/// [`finish`]: PortfolioSum::finish
#[derive(Debug, Clone)]
pub struct PortfolioSum {
    capital_per_symbol: f64,
    port: Curve,
    bench: Curve,
    /// Whether an added run has a bar at each timeline timestamp.
    covered: Vec<bool>,
}

impl PortfolioSum {
    /// An empty sum over `timeline` (sorted, de-duplicated µs timestamps).
    pub fn new(timeline: Vec<i64>, capital_per_symbol: f64) -> PortfolioSum {
        let n = timeline.len();
        PortfolioSum {
            capital_per_symbol,
            port: Curve {
                ts: timeline.clone(),
                equity: vec![0.0; n],
                gross: vec![0.0; n],
            },
            bench: Curve {
                ts: timeline,
                equity: vec![0.0; n],
                gross: vec![0.0; n],
            },
            covered: vec![false; n],
        }
    }

    /// Adds one sub-account. Each timeline bar receives its terms in the
    /// order runs are added, so the floating-point sums are fixed by that
    /// order alone.
    pub fn add(&mut self, run: &SymbolRun) {
        let at = Self::alignment(&self.port.ts, run);
        self.add_at(run, at);
    }

    /// [`PortfolioSum::add`] with `at = alignment(timeline, run)` already
    /// known: the runs of one symbol and sample share their timestamps, so
    /// a sweep checks them against the timeline once, not once per
    /// combination. (Any `at` other than `alignment(run)` adds wrong
    /// sums; `None` is always right, only slower.)
    pub fn add_at(&mut self, run: &SymbolRun, at: Option<usize>) {
        match at {
            Some(a) => self.add_aligned(run, a),
            None => self.add_searching(run),
        }
    }

    /// Where `run` starts on `timeline` (this sum's: the one given to
    /// [`PortfolioSum::new`]) when its timestamps are a contiguous stretch
    /// of it and its vectors are all as long as them (the common case,
    /// added without a search); `None` otherwise.
    pub fn alignment(timeline: &[i64], run: &SymbolRun) -> Option<usize> {
        let m = run.ts.len();
        if m == 0 || run.equity.len() != m || run.gross.len() != m || run.benchmark.len() != m {
            return None;
        }
        let a = timeline.partition_point(|&t| t < run.ts[0]);
        (timeline.get(a..a + m) == Some(&run.ts[..])).then_some(a)
    }

    /// [`PortfolioSum::add`] for any run: each timeline bar takes the
    /// run's last bar at or before it.
    fn add_searching(&mut self, run: &SymbolRun) {
        let cap = self.capital_per_symbol;
        let mut j = 0; // next unread bar of this run
        let (mut eq, mut gross, mut b, mut bg) = (cap, 0.0, cap, 0.0);
        for (k, &t) in self.port.ts.iter().enumerate() {
            while j < run.ts.len() && run.ts[j] <= t {
                // `get`: a hand-built run with short vectors carries its last value.
                eq = run.equity.get(j).copied().unwrap_or(eq);
                gross = run.gross.get(j).copied().unwrap_or(0.0);
                b = run.benchmark.get(j).copied().unwrap_or(b);
                bg = b.abs();
                if run.ts[j] == t {
                    self.covered[k] = true;
                }
                j += 1;
            }
            self.port.equity[k] += eq;
            self.port.gross[k] += gross;
            self.bench.equity[k] += b;
            self.bench.gross[k] += bg;
        }
    }

    /// [`PortfolioSum::add`] for a run aligned at `a` (see
    /// [`PortfolioSum::alignment`]): the same additions, without the
    /// search.
    fn add_aligned(&mut self, run: &SymbolRun, a: usize) {
        let m = run.ts.len();
        let cap = self.capital_per_symbol;
        // Before the run's first bar: its starting cash, no exposure.
        for k in 0..a {
            self.port.equity[k] += cap;
            self.port.gross[k] += 0.0;
            self.bench.equity[k] += cap;
            self.bench.gross[k] += 0.0;
        }
        // Its bars, one per timeline bar.
        let rows = self.port.equity[a..a + m]
            .iter_mut()
            .zip(&mut self.port.gross[a..a + m])
            .zip(&mut self.bench.equity[a..a + m])
            .zip(&mut self.bench.gross[a..a + m]);
        for (j, (((pe, pg), be), bg)) in rows.enumerate() {
            *pe += run.equity[j];
            *pg += run.gross[j];
            *be += run.benchmark[j];
            *bg += run.benchmark[j].abs();
        }
        self.covered[a..a + m].fill(true);
        // After its last bar its last values carry forward.
        let (eq, gross, b) = (run.equity[m - 1], run.gross[m - 1], run.benchmark[m - 1]);
        for k in a + m..self.port.ts.len() {
            self.port.equity[k] += eq;
            self.port.gross[k] += gross;
            self.bench.equity[k] += b;
            self.bench.gross[k] += b.abs();
        }
    }

    /// `(portfolio, benchmark)` on the timestamps some added run has.
    pub fn finish(self) -> (Curve, Curve) {
        let PortfolioSum {
            mut port,
            mut bench,
            covered,
            ..
        } = self;
        if covered.iter().all(|&c| c) {
            return (port, bench);
        }
        for c in [&mut port, &mut bench] {
            let keep = |v: &mut Vec<f64>| {
                let mut it = covered.iter();
                v.retain(|_| it.next().copied().unwrap_or(false));
            };
            keep(&mut c.equity);
            keep(&mut c.gross);
            let mut it = covered.iter();
            c.ts.retain(|_| it.next().copied().unwrap_or(false));
        }
        (port, bench)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ts: &[i64], seed: u64) -> SymbolRun {
        let mut x = seed;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        SymbolRun {
            symbol: "S".into(),
            capital: 100.0,
            ts: ts.to_vec(),
            equity: ts.iter().map(|_| 50.0 + 100.0 * next()).collect(),
            position: ts.iter().map(|_| 0.0).collect(),
            gross: ts
                .iter()
                .map(|_| if next() < 0.3 { 0.0 } else { 80.0 * next() })
                .collect(),
            benchmark: ts.iter().map(|_| 50.0 + 100.0 * next()).collect(),
            trades: Vec::new(),
            total_fees: 0.0,
        }
    }

    fn bits(c: &Curve) -> (Vec<i64>, Vec<u64>, Vec<u64>) {
        let b = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect();
        (c.ts.clone(), b(&c.equity), b(&c.gross))
    }

    /// The aligned fast path adds exactly what the general search adds.
    #[test]
    fn aligned_runs_add_the_bits_of_the_search() {
        let timeline: Vec<i64> = (0..40).map(|i| i * 10).collect();
        let runs = [
            run(&timeline, 1),
            run(&timeline[5..30], 2),
            run(&timeline[..12], 3),
            run(&timeline[33..], 4),
            // Not aligned: a gap, and a timestamp between timeline bars.
            run(&[0, 10, 30, 40], 5),
            run(&[15, 20, 25], 6),
        ];
        let aligned: Vec<Option<usize>> = runs
            .iter()
            .map(|r| PortfolioSum::alignment(&timeline, r))
            .collect();
        assert_eq!(aligned, [Some(0), Some(5), Some(0), Some(33), None, None]);
        let mut fast = PortfolioSum::new(timeline.clone(), 100.0);
        let mut slow = PortfolioSum::new(timeline.clone(), 100.0);
        for r in &runs {
            fast.add(r);
            slow.add_searching(r);
        }
        let (fp, fb) = fast.finish();
        let (sp, sb) = slow.finish();
        assert_eq!(bits(&fp), bits(&sp));
        assert_eq!(bits(&fb), bits(&sb));
        // And on a timeline the runs do not fully cover.
        let mut fast = PortfolioSum::new(timeline.clone(), 7.0);
        let mut slow = PortfolioSum::new(timeline, 7.0);
        for r in &runs[1..4] {
            fast.add(r);
            slow.add_searching(r);
        }
        assert_eq!(bits(&fast.finish().0), bits(&slow.finish().0));
    }
}
