//! The statistics table: what backtesting.py's `stats` and vectorbt's
//! `Portfolio.stats()` show, with one written-down formula per number.
//!
//! Conventions (see also `src/backtest/METRICS.md`):
//!
//! * Returns are fractions (0.25 = +25%).
//! * Per-bar returns: `r_0 = e_0 / initial − 1`, `r_t = e_t / e_{t−1} − 1`;
//!   a bar whose previous equity is ≤ 0 (a ruined sub-account) has return 0.
//!   This is quantstats/empyrical on the equity curve with `initial`
//!   prepended, so the first bar's move and the entry fee count.
//! * `ppy` = [`periods_per_year`] of `ts`; std uses `ddof = 1` (pandas);
//!   risk-free rate 0.
//! * Trade statistics use **closed** trades only (as vectorbt's "closed
//!   trades" statistics do); an open trade's mark-to-market result is in
//!   `open_trades` / `open_trade_pnl` and in the equity curve.
//! * A statistic that is undefined (no trades, zero variance, no losses, …)
//!   is `None`, which serializes to JSON `null`; no field is ever NaN or ±∞.

use serde::{Deserialize, Serialize};

use super::annualise::{periods_per_year, DAY_US};
use super::trade::Trade;

/// Every statistic of one equity curve (a symbol, the portfolio or the
/// benchmark). Field names are the column names of the results files.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Metrics {
    /// Bars per year used to annualise, from [`periods_per_year`].
    pub periods_per_year: f64,
    /// Number of bars `n` in the curve.
    pub bars: usize,
    /// Calendar span `(ts_last − ts_first) / 1 day`.
    pub days: f64,
    /// `e_last / initial − 1`.
    pub total_return: f64,
    /// Buy & hold: `b_last / initial − 1`.
    pub benchmark_return: f64,
    /// `(e_last / initial)^(365.25 / days) − 1`; −1 if `e_last ≤ 0`;
    /// `None` if `days = 0`.
    pub cagr: Option<f64>,
    /// Annualised volatility `std(r) · √ppy`; `None` with fewer than 2 bars.
    pub volatility: Option<f64>,
    /// `mean(r) / std(r) · √ppy` (rf = 0, quantstats); `None` if `std = 0`.
    pub sharpe: Option<f64>,
    /// `mean(r) / √(Σ min(r,0)² / n) · √ppy` (quantstats' downside deviation
    /// over all `n` bars); `None` if no bar loses.
    pub sortino: Option<f64>,
    /// `cagr / max_drawdown`; `None` if there is no drawdown.
    pub calmar: Option<f64>,
    /// `max_t (1 − e_t / peak_t)` with `peak_t = max(initial, e_0..e_t)`, a
    /// positive fraction (0.2 = −20% from the peak).
    pub max_drawdown: f64,
    /// Mean over drawdown episodes of each episode's deepest drawdown; 0 if
    /// none. An episode is a maximal run of bars below the running peak.
    pub avg_drawdown: f64,
    /// Longest episode in bars (number of bars below the peak).
    pub max_drawdown_duration: usize,
    /// Longest episode in days: `(ts of its last bar below the peak − ts of
    /// the peak bar) / 1 day`; the peak bar of an episode starting at bar 0
    /// is bar 0.
    pub max_drawdown_duration_days: f64,
    /// Mean episode length in bars; 0 if none.
    pub avg_drawdown_duration: f64,
    /// Mean episode length in days; 0 if none.
    pub avg_drawdown_duration_days: f64,
    /// OLS intercept of `r` on the benchmark's per-bar returns `r_b`, times
    /// `ppy` (quantstats' `greeks`); `None` if `var(r_b) = 0`.
    pub alpha: Option<f64>,
    /// OLS slope `cov(r, r_b) / var(r_b)`; `None` if `var(r_b) = 0`.
    pub beta: Option<f64>,
    /// Omega ratio at threshold 0: `Σ max(r,0) / Σ max(−r,0)`; `None` if no
    /// bar loses.
    pub omega: Option<f64>,
    /// Fraction of bars with a position at the close (exposure ≠ 0); `None`
    /// if no exposure series was given.
    pub exposure: Option<f64>,
    /// `max_t |units·close| / equity` over bars where it is finite.
    pub max_gross_exposure: Option<f64>,
    /// Number of closed trades `k`.
    pub trades: usize,
    /// Closed trades with `pnl > 0`, divided by `k`.
    pub win_rate: Option<f64>,
    /// `Σ pnl⁺ / |Σ pnl⁻|` over closed trades; `None` if nothing lost.
    pub profit_factor: Option<f64>,
    /// Mean closed-trade `pnl` in currency, net of fees (vectorbt's
    /// expectancy; the return version is `avg_trade_return`).
    pub expectancy: Option<f64>,
    /// System quality number `√k · mean(ret) / std(ret)` over closed trades'
    /// returns; `None` if `k < 2` or `std = 0`.
    pub sqn: Option<f64>,
    /// Kelly fraction `W − (1 − W) / (avg_winning_trade / |avg_losing_trade|)`
    /// with `W = win_rate`; `W` if nothing lost; `None` if nothing won.
    pub kelly: Option<f64>,
    /// Mean closed-trade `ret`.
    pub avg_trade_return: Option<f64>,
    /// Largest closed-trade `ret`.
    pub best_trade: Option<f64>,
    /// Smallest closed-trade `ret`.
    pub worst_trade: Option<f64>,
    /// Mean `ret` of closed trades with `pnl > 0`.
    pub avg_winning_trade: Option<f64>,
    /// Mean `ret` of closed trades with `pnl < 0` (negative).
    pub avg_losing_trade: Option<f64>,
    /// Mean `bars_held` of closed trades.
    pub avg_trade_duration: Option<f64>,
    /// Mean `(exit_ts − entry_ts) / 1 day` of closed trades.
    pub avg_trade_duration_days: Option<f64>,
    /// Largest `bars_held` of closed trades.
    pub max_trade_duration: Option<usize>,
    /// Largest closed-trade duration in days.
    pub max_trade_duration_days: Option<f64>,
    /// Fees paid in the window (entries of open trades included).
    pub total_fees: f64,
    /// Trades still open at the end (marked to the last close).
    pub open_trades: usize,
    /// `Σ pnl` of open trades (mark-to-market, entry fee deducted).
    pub open_trade_pnl: f64,
    /// `e_last` (`initial` for an empty curve).
    pub final_equity: f64,
    /// `max(initial, e_0..e_last)`.
    pub equity_peak: f64,
}

/// `Some(x)` if finite: undefined statistics become JSON `null`.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Sum from +0.0 (std's `Sum` for f64 starts at −0.0, which would print
/// "-0.0" for an empty set).
fn total(it: impl IntoIterator<Item = f64>) -> f64 {
    it.into_iter().fold(0.0, |a, b| a + b)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| total(v.iter().copied()) / v.len() as f64)
}

/// Sample standard deviation (ddof = 1), as pandas.
fn std(v: &[f64]) -> Option<f64> {
    let m = mean(v)?;
    (v.len() >= 2)
        .then(|| (total(v.iter().map(|x| (x - m) * (x - m))) / (v.len() - 1) as f64).sqrt())
}

/// Per-bar returns of a curve that started at `initial`; 0 after equity ≤ 0.
pub(crate) fn bar_returns(initial: f64, equity: &[f64]) -> Vec<f64> {
    let mut prev = initial;
    equity
        .iter()
        .map(|&e| {
            let r = if prev > 0.0 { e / prev - 1.0 } else { 0.0 };
            prev = e;
            r
        })
        .collect()
}

/// Drawdown summary: (max, avg, max bars, max days, avg bars, avg days).
struct Drawdowns {
    max: f64,
    avg: f64,
    max_bars: usize,
    max_days: f64,
    avg_bars: f64,
    avg_days: f64,
}

fn drawdowns(initial: f64, ts: &[i64], equity: &[f64]) -> Drawdowns {
    // (depth, bars, days) per episode
    let mut episodes: Vec<(f64, usize, f64)> = Vec::new();
    let mut peak = initial;
    let mut cur: Option<(usize, f64, usize)> = None; // (peak bar, depth, bars)
    let mut max = 0.0f64;
    let close_episode = |c: (usize, f64, usize), last: usize, eps: &mut Vec<(f64, usize, f64)>| {
        let days = (ts[last] - ts[c.0]) as f64 / DAY_US as f64;
        eps.push((c.1, c.2, days));
    };
    for (t, &e) in equity.iter().enumerate() {
        peak = peak.max(e);
        let dd = if peak > 0.0 { 1.0 - e / peak } else { 0.0 };
        max = max.max(dd);
        if dd > 0.0 {
            let c = cur.get_or_insert((t.saturating_sub(1), 0.0, 0));
            c.1 = c.1.max(dd);
            c.2 += 1;
        } else if let Some(c) = cur.take() {
            close_episode(c, t - 1, &mut episodes);
        }
    }
    if let Some(c) = cur.take() {
        close_episode(c, equity.len() - 1, &mut episodes);
    }
    let k = episodes.len() as f64;
    let sum = |f: fn(&(f64, usize, f64)) -> f64| total(episodes.iter().map(f));
    Drawdowns {
        max,
        avg: if k > 0.0 { sum(|e| e.0) / k } else { 0.0 },
        max_bars: episodes.iter().map(|e| e.1).max().unwrap_or(0),
        max_days: episodes.iter().map(|e| e.2).fold(0.0, f64::max),
        avg_bars: if k > 0.0 {
            sum(|e| e.1 as f64) / k
        } else {
            0.0
        },
        avg_days: if k > 0.0 { sum(|e| e.2) / k } else { 0.0 },
    }
}

/// All statistics of one curve; see [`Metrics`] for each formula.
///
/// * `initial`: the capital the curve started with (capital per symbol for
///   a symbol, the total for the portfolio); must be > 0.
/// * `ts`, `equity`, `benchmark`: the curve and its buy & hold on the same
///   bars (same length).
/// * `trades`: the ledger behind the curve (for the portfolio, all symbols'
///   trades in slice order).
/// * `exposure`: gross exposure fraction per bar
///   ([`SymbolRun::exposure`](super::SymbolRun::exposure),
///   [`Curve::exposure`](super::Curve::exposure)), or `None`.
/// * `total_fees`: fees paid, reported as given.
pub fn metrics(
    initial: f64,
    ts: &[i64],
    equity: &[f64],
    benchmark: &[f64],
    trades: &[Trade],
    exposure: Option<&[f64]>,
    total_fees: f64,
) -> Metrics {
    metrics_with_ppy(
        periods_per_year(ts),
        initial,
        ts,
        equity,
        benchmark,
        trades,
        exposure,
        total_fees,
    )
}

/// [`metrics`] with `ppy` = [`periods_per_year`]`(ts)` given by the caller
/// (a sweep computes it once per symbol, not once per combination).
#[allow(clippy::too_many_arguments)]
pub fn metrics_with_ppy(
    ppy: f64,
    initial: f64,
    ts: &[i64],
    equity: &[f64],
    benchmark: &[f64],
    trades: &[Trade],
    exposure: Option<&[f64]>,
    total_fees: f64,
) -> Metrics {
    let stats: Vec<TradeStat> = trades.iter().map(TradeStat::of).collect();
    metrics_of_stats_with_ppy(
        ppy, initial, ts, equity, benchmark, &stats, exposure, total_fees,
    )
}

/// What the metrics need of one trade: 40 bytes instead of a [`Trade`]
/// with its symbol, so a run over thousands of symbols can keep every
/// trade of the portfolio for its statistics after writing the ledger.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TradeStat {
    /// [`Trade::ret`].
    pub ret: f64,
    /// [`Trade::pnl`].
    pub pnl: f64,
    /// [`Trade::bars_held`].
    pub bars_held: usize,
    /// `exit_ts − entry_ts` in µs, if the trade has an exit.
    pub span_us: Option<i64>,
    /// [`Trade::open`].
    pub open: bool,
}

impl TradeStat {
    /// The statistics of `t`.
    pub fn of(t: &Trade) -> TradeStat {
        TradeStat {
            ret: t.ret,
            pnl: t.pnl,
            bars_held: t.bars_held,
            span_us: t.exit_ts.map(|x| x - t.entry_ts),
            open: t.open,
        }
    }

    /// [`Trade::duration_days`], bit for bit.
    fn duration_days(&self) -> Option<f64> {
        self.span_us.map(|d| d as f64 / DAY_US as f64)
    }
}

/// [`metrics`] from the trades' [`TradeStat`]s (same order, same bits).
pub fn metrics_of_stats(
    initial: f64,
    ts: &[i64],
    equity: &[f64],
    benchmark: &[f64],
    trades: &[TradeStat],
    exposure: Option<&[f64]>,
    total_fees: f64,
) -> Metrics {
    metrics_of_stats_with_ppy(
        periods_per_year(ts),
        initial,
        ts,
        equity,
        benchmark,
        trades,
        exposure,
        total_fees,
    )
}

/// [`metrics_of_stats`] with `ppy` = [`periods_per_year`]`(ts)` given.
#[allow(clippy::too_many_arguments)]
pub fn metrics_of_stats_with_ppy(
    ppy: f64,
    initial: f64,
    ts: &[i64],
    equity: &[f64],
    benchmark: &[f64],
    trades: &[TradeStat],
    exposure: Option<&[f64]>,
    total_fees: f64,
) -> Metrics {
    let n = equity.len().min(ts.len());
    let (ts, equity) = (&ts[..n], &equity[..n]);
    let days = if n >= 2 {
        (ts[n - 1] - ts[0]) as f64 / DAY_US as f64
    } else {
        0.0
    };
    let final_equity = equity.last().copied().unwrap_or(initial);
    let bench_final = benchmark.get(n.wrapping_sub(1)).copied().unwrap_or(initial);

    let r = bar_returns(initial, equity);
    let m = mean(&r);
    let sd = std(&r);
    let volatility = sd.and_then(|s| finite(s * ppy.sqrt()));
    let sharpe = match (m, sd) {
        (Some(m), Some(s)) if s > 0.0 => finite(m / s * ppy.sqrt()),
        _ => None,
    };
    let downside = mean(&r.iter().map(|x| x.min(0.0).powi(2)).collect::<Vec<_>>());
    let sortino = match (m, downside) {
        (Some(m), Some(d)) if d > 0.0 => finite(m / d.sqrt() * ppy.sqrt()),
        _ => None,
    };
    let cagr = if days > 0.0 {
        if final_equity <= 0.0 {
            Some(-1.0)
        } else {
            finite((final_equity / initial).powf(365.25 / days) - 1.0)
        }
    } else {
        None
    };
    let dd = drawdowns(initial, ts, equity);
    let calmar = match cagr {
        Some(c) if dd.max > 0.0 => finite(c / dd.max),
        _ => None,
    };

    // OLS of r on the benchmark's returns.
    let rb = bar_returns(initial, &benchmark[..n.min(benchmark.len())]);
    let k = r.len().min(rb.len());
    let (alpha, beta) = match (mean(&r[..k]), mean(&rb[..k])) {
        (Some(ms), Some(mb)) if k >= 2 => {
            let cov = total((0..k).map(|i| (r[i] - ms) * (rb[i] - mb)));
            let var = total(rb[..k].iter().map(|x| (x - mb) * (x - mb)));
            if var > 0.0 {
                let beta = cov / var;
                (finite((ms - beta * mb) * ppy), finite(beta))
            } else {
                (None, None)
            }
        }
        _ => (None, None),
    };
    let gains = total(r.iter().copied().filter(|&x| x > 0.0));
    let losses = -total(r.iter().copied().filter(|&x| x < 0.0));
    let omega = (losses > 0.0).then(|| finite(gains / losses)).flatten();

    let (exposure, max_gross_exposure) = match exposure {
        Some(x) if !x.is_empty() => {
            let inside = x.iter().filter(|&&v| v != 0.0).count() as f64 / x.len() as f64;
            let max = x
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))));
            (Some(inside), max)
        }
        _ => (None, None),
    };

    // Trade statistics: closed trades only.
    let closed: Vec<&TradeStat> = trades.iter().filter(|t| !t.open).collect();
    let rets: Vec<f64> = closed.iter().map(|t| t.ret).collect();
    let pnls: Vec<f64> = closed.iter().map(|t| t.pnl).collect();
    let wins: Vec<f64> = closed
        .iter()
        .filter(|t| t.pnl > 0.0)
        .map(|t| t.ret)
        .collect();
    let loss: Vec<f64> = closed
        .iter()
        .filter(|t| t.pnl < 0.0)
        .map(|t| t.ret)
        .collect();
    let nt = closed.len();
    let win_rate = (nt > 0).then(|| wins.len() as f64 / nt as f64);
    let gross_profit = total(pnls.iter().copied().filter(|&p| p > 0.0));
    let gross_loss = -total(pnls.iter().copied().filter(|&p| p < 0.0));
    let profit_factor = (gross_loss > 0.0)
        .then(|| finite(gross_profit / gross_loss))
        .flatten();
    let sqn = match (mean(&rets), std(&rets)) {
        (Some(m), Some(s)) if s > 0.0 => finite((nt as f64).sqrt() * m / s),
        _ => None,
    };
    let avg_win = mean(&wins);
    let avg_loss = mean(&loss);
    let kelly = match (win_rate, avg_win, avg_loss) {
        (Some(w), Some(aw), Some(al)) => finite(w - (1.0 - w) / (aw / al.abs())),
        (Some(w), Some(_), None) => Some(w),
        _ => None,
    };
    let bars_held: Vec<f64> = closed.iter().map(|t| t.bars_held as f64).collect();
    let durations: Vec<f64> = closed.iter().filter_map(|t| t.duration_days()).collect();
    let open: Vec<&TradeStat> = trades.iter().filter(|t| t.open).collect();

    Metrics {
        periods_per_year: ppy,
        bars: n,
        days,
        total_return: final_equity / initial - 1.0,
        benchmark_return: bench_final / initial - 1.0,
        cagr,
        volatility,
        sharpe,
        sortino,
        calmar,
        max_drawdown: dd.max,
        avg_drawdown: dd.avg,
        max_drawdown_duration: dd.max_bars,
        max_drawdown_duration_days: dd.max_days,
        avg_drawdown_duration: dd.avg_bars,
        avg_drawdown_duration_days: dd.avg_days,
        alpha,
        beta,
        omega,
        exposure,
        max_gross_exposure,
        trades: nt,
        win_rate,
        profit_factor,
        expectancy: mean(&pnls),
        sqn,
        kelly,
        avg_trade_return: mean(&rets),
        best_trade: rets.iter().copied().reduce(f64::max),
        worst_trade: rets.iter().copied().reduce(f64::min),
        avg_winning_trade: avg_win,
        avg_losing_trade: avg_loss,
        avg_trade_duration: mean(&bars_held),
        avg_trade_duration_days: mean(&durations),
        max_trade_duration: closed.iter().map(|t| t.bars_held).max(),
        max_trade_duration_days: durations.iter().copied().reduce(f64::max),
        total_fees,
        open_trades: open.len(),
        open_trade_pnl: total(open.iter().map(|t| t.pnl)),
        final_equity,
        equity_peak: equity.iter().copied().fold(initial, f64::max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_returns_start_from_initial_and_stop_after_ruin() {
        let r = bar_returns(100.0, &[110.0, 0.0, 50.0, -10.0]);
        assert_eq!(r[0], 0.10000000000000009); // 110/100 − 1 in f64
        assert_eq!(r[1], -1.0);
        assert_eq!(r[2], 0.0); // previous equity ≤ 0: no return
        assert_eq!(r[3], -1.2); // 50 → −10
    }

    #[test]
    fn empty_sums_are_positive_zero() {
        assert!(total(std::iter::empty()).is_sign_positive());
    }

    #[test]
    fn std_is_sample_std() {
        assert_eq!(std(&[1.0, 3.0]), Some(2f64.sqrt()));
        assert_eq!(std(&[1.0]), None);
        assert_eq!(mean(&[]), None);
    }

    #[test]
    fn empty_curve_reports_initial() {
        let m = metrics(100.0, &[], &[], &[], &[], None, 0.0);
        assert_eq!((m.bars, m.final_equity, m.total_return), (0, 100.0, 0.0));
        assert_eq!((m.sharpe, m.cagr, m.exposure), (None, None, None));
    }
}
