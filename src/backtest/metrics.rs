//! The statistics table: what quantstats' full report, backtesting.py's
//! `stats` and vectorbt's `Portfolio.stats()` show, with one written-down
//! formula per number.
//!
//! Conventions (see also `src/backtest/METRICS.md`, and the metric facts
//! table [`METRICS`](super::METRICS) for each number's definition, unit and
//! peer equivalent):
//!
//! * Returns are fractions (0.25 = +25%).
//! * Per-bar returns: `r_0 = e_0 / initial − 1`, `r_t = e_t / e_{t−1} − 1`;
//!   a bar whose previous equity is ≤ 0 (a ruined sub-account) has return 0.
//!   This is quantstats/empyrical on the equity curve with `initial`
//!   prepended, so the first bar's move and the entry fee count.
//! * `ppy` = [`MetricsOptions::periods_per_year`] or, by default,
//!   [`periods_per_year_in`] of `ts` in the curve's calendar; std uses
//!   `ddof = 1` (pandas); the risk-free rate (annual) enters Sharpe and
//!   Sortino as quantstats does: `r − ((1 + rf)^(1/ppy) − 1)`.
//! * Trade statistics use **closed** trades only (as vectorbt's "closed
//!   trades" statistics do); an open trade's mark-to-market result is in
//!   `open_trades` / `open_trade_pnl` and in the equity curve.
//! * A statistic that is undefined (no trades, zero variance, no losses, …)
//!   is `None`, which serializes to JSON `null`; no field is ever NaN or ±∞.
//!   A spread (standard deviation, downside deviation, sum of losses,
//!   drawdown, average loss, lower quantile) at most [`SPREAD_TOL`] times
//!   the magnitude it is compared with counts as zero: it is float residue
//!   (a price growing by exactly 0.1% a bar has a float standard deviation
//!   of 1e-16, not a Sharpe of 1e14).
//!
//! Cost: a sweep computes every metric of every combination, so everything
//! here is one or two passes over the curve; the quantiles use selection
//! (`select_nth_unstable`, O(n)), never a full sort.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::annualise::{periods_per_year_in, Calendar, DAY_US};
use super::trade::Trade;

/// A spread at most this fraction of the magnitude it is compared with
/// (the mean return for a standard deviation, the gains for the losses, …)
/// is float residue and counts as zero. Real series are many orders of
/// magnitude away on both sides: a per-bar Sharpe of 1e9 does not exist,
/// and the residue of a constant return is ~1e-13 of it.
pub const SPREAD_TOL: f64 = 1e-9;

/// How a curve's statistics are annualised and against which rate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsOptions {
    /// Bars per year; `None` infers it from the curve's timestamps
    /// ([`periods_per_year_in`] in `calendar`).
    pub periods_per_year: Option<f64>,
    /// Annual risk-free rate as a fraction (0.02 = 2%), used by Sharpe and
    /// Sortino (quantstats' `rf`); 0 by default.
    pub risk_free: f64,
    /// Time zone of weekdays (annualisation) and calendar years
    /// (`yearly_returns`).
    pub calendar: Calendar,
}

/// One drawdown episode: a maximal run of bars below the running peak.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drawdown {
    /// Timestamp of the peak bar: the last bar at the high-water mark
    /// before the episode (bar 0 when the episode starts there, where the
    /// peak is the starting capital). RFC 3339 in JSON.
    #[serde(with = "rfc3339")]
    pub start: i64,
    /// Timestamp of the deepest bar.
    #[serde(with = "rfc3339")]
    pub valley: i64,
    /// Timestamp of the first bar back at (or above) the peak; `None`
    /// (JSON `null`) while still under water at the end.
    #[serde(with = "rfc3339_opt")]
    pub recovery: Option<i64>,
    /// Deepest drawdown of the episode, a positive fraction.
    #[serde(deserialize_with = "f64_or_nan")]
    pub depth: f64,
    /// Bars below the peak.
    pub bars: usize,
    /// `(ts of the last bar below the peak − start) / 1 day`.
    #[serde(deserialize_with = "f64_or_nan")]
    pub days: f64,
}

/// Every statistic of one equity curve (a symbol, the portfolio or the
/// benchmark). Field names are the keys of `metrics.json` and the columns
/// of the sweep's `results.parquet`; the definition, unit and peer
/// equivalent of each are in the metric facts table
/// [`METRICS`](super::METRICS), which also serializes this struct.
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct Metrics {
    /// First bar of the curve (µs UTC; RFC 3339 in JSON).
    #[serde(with = "rfc3339_opt")]
    pub start: Option<i64>,
    /// Last bar of the curve.
    #[serde(with = "rfc3339_opt")]
    pub end: Option<i64>,
    /// Number of bars `n` in the curve.
    pub bars: usize,
    /// Calendar span `(ts_last − ts_first) / 1 day`.
    #[serde(deserialize_with = "f64_or_nan")]
    pub days: f64,
    /// Bars per year used to annualise.
    #[serde(deserialize_with = "f64_or_nan")]
    pub periods_per_year: f64,
    /// Annual risk-free rate used by Sharpe and Sortino.
    #[serde(deserialize_with = "f64_or_nan")]
    pub risk_free: f64,
    /// `e_last / initial − 1`.
    #[serde(deserialize_with = "f64_or_nan")]
    pub total_return: f64,
    /// Buy & hold: `b_last / initial − 1`.
    #[serde(deserialize_with = "f64_or_nan")]
    pub benchmark_return: f64,
    /// Calendar CAGR `(e_last / initial)^(365.25 / days) − 1`.
    pub cagr: Option<f64>,
    /// Geometric annualised return `(e_last / initial)^(ppy / n) − 1`.
    pub annual_return: Option<f64>,
    /// `std(r) · √ppy`.
    pub volatility: Option<f64>,
    /// `mean(x) / std(x) · √ppy` on excess returns `x`.
    pub sharpe: Option<f64>,
    /// `mean(x) / √(Σ min(x,0)² / n) · √ppy`.
    pub sortino: Option<f64>,
    /// `annual_return / max_drawdown`.
    pub calmar: Option<f64>,
    /// `max_t (1 − e_t / peak_t)`, `peak_t = max(initial, e_0..e_t)`.
    #[serde(deserialize_with = "f64_or_nan")]
    pub max_drawdown: f64,
    /// Mean over drawdown episodes of each episode's depth.
    #[serde(deserialize_with = "f64_or_nan")]
    pub avg_drawdown: f64,
    /// Longest episode in bars below the peak.
    pub max_drawdown_duration: usize,
    /// Longest episode in days.
    #[serde(deserialize_with = "f64_or_nan")]
    pub max_drawdown_duration_days: f64,
    /// Mean episode length in bars.
    #[serde(deserialize_with = "f64_or_nan")]
    pub avg_drawdown_duration: f64,
    /// Mean episode length in days.
    #[serde(deserialize_with = "f64_or_nan")]
    pub avg_drawdown_duration_days: f64,
    /// Sample skewness of `r` (pandas).
    pub skew: Option<f64>,
    /// Sample excess kurtosis of `r` (pandas).
    pub kurtosis: Option<f64>,
    /// Historical 95% value at risk: the 5% quantile of `r`.
    pub var_95: Option<f64>,
    /// Historical 95% expected shortfall: mean of `r_t ≤ var_95`.
    pub cvar_95: Option<f64>,
    /// `|q95(r) / q05(r)|`.
    pub tail_ratio: Option<f64>,
    /// OLS intercept of `r` on `r_b`, times `ppy`.
    pub alpha: Option<f64>,
    /// OLS slope of `r` on `r_b`.
    pub beta: Option<f64>,
    /// `Σ max(r,0) / Σ max(−r,0)`.
    pub omega: Option<f64>,
    /// Fraction of bars with a position at the close.
    pub exposure: Option<f64>,
    /// `max_t |units·close| / equity`.
    pub max_gross_exposure: Option<f64>,
    /// Number of closed trades `k`.
    pub trades: usize,
    /// Closed trades with `pnl > 0`, divided by `k`.
    pub win_rate: Option<f64>,
    /// `Σ pnl⁺ / |Σ pnl⁻|`.
    pub profit_factor: Option<f64>,
    /// Mean closed-trade `pnl` in currency.
    pub expectancy: Option<f64>,
    /// `√k · mean(ret) / std(ret)`.
    pub sqn: Option<f64>,
    /// `W − (1 − W) / payoff_ratio`.
    pub kelly: Option<f64>,
    /// `avg_winning_trade / |avg_losing_trade|`.
    pub payoff_ratio: Option<f64>,
    /// Mean closed-trade `ret`.
    pub avg_trade_return: Option<f64>,
    /// Largest closed-trade `ret`.
    pub best_trade: Option<f64>,
    /// Smallest closed-trade `ret`.
    pub worst_trade: Option<f64>,
    /// Mean `ret` of winning trades.
    pub avg_winning_trade: Option<f64>,
    /// Mean `ret` of losing trades.
    pub avg_losing_trade: Option<f64>,
    /// Mean `bars_held` of closed trades.
    pub avg_trade_duration: Option<f64>,
    /// Mean duration in days of closed trades.
    pub avg_trade_duration_days: Option<f64>,
    /// Largest `bars_held` of closed trades.
    pub max_trade_duration: Option<usize>,
    /// Largest closed-trade duration in days.
    pub max_trade_duration_days: Option<f64>,
    /// Mean `bars_held` of winning trades.
    pub avg_winning_trade_duration: Option<f64>,
    /// Mean `bars_held` of losing trades.
    pub avg_losing_trade_duration: Option<f64>,
    /// Mean duration in days of winning trades.
    pub avg_winning_trade_duration_days: Option<f64>,
    /// Mean duration in days of losing trades.
    pub avg_losing_trade_duration_days: Option<f64>,
    /// Most consecutive winning trades (in exit order).
    pub max_winning_streak: usize,
    /// Most consecutive losing trades (in exit order).
    pub max_losing_streak: usize,
    /// Fees paid in the window.
    #[serde(deserialize_with = "f64_or_nan")]
    pub total_fees: f64,
    /// Trades still open at the end.
    pub open_trades: usize,
    /// `Σ pnl` of open trades.
    #[serde(deserialize_with = "f64_or_nan")]
    pub open_trade_pnl: f64,
    /// `e_last`.
    #[serde(deserialize_with = "f64_or_nan")]
    pub final_equity: f64,
    /// `max(initial, e_0..e_last)`.
    #[serde(deserialize_with = "f64_or_nan")]
    pub equity_peak: f64,
    /// Compounded return of each calendar year (in the curve's calendar).
    pub yearly_returns: BTreeMap<i32, Option<f64>>,
    /// The five deepest drawdown episodes, deepest first.
    pub worst_drawdowns: Vec<Drawdown>,
}

impl Serialize for Metrics {
    /// The facts table's keys in its order ([`METRICS`](super::METRICS)),
    /// so `metrics.json` holds exactly the documented metrics.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let facts = super::facts::METRICS;
        let mut map = s.serialize_map(Some(facts.len()))?;
        for f in facts {
            map.serialize_entry(f.key, &(f.value)(self))?;
        }
        map.end()
    }
}

/// Timestamps as RFC 3339 text in JSON (`2020-01-02T00:00:00Z`).
pub(crate) fn fmt_rfc3339(us: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(us) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => us.to_string(),
    }
}

fn parse_rfc3339<E: serde::de::Error>(s: &str) -> Result<i64, E> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|e| E::custom(format!("{s:?} is not an RFC 3339 time: {e}")))
}

mod rfc3339 {
    use super::*;
    pub fn serialize<S: Serializer>(us: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&fmt_rfc3339(*us))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        parse_rfc3339(&String::deserialize(d)?)
    }
}

mod rfc3339_opt {
    use super::*;
    pub fn serialize<S: Serializer>(us: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match us {
            Some(us) => s.serialize_str(&fmt_rfc3339(*us)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| parse_rfc3339(&s))
            .transpose()
    }
}

/// Reads a number written by [`Metrics`]' serializer back: JSON has no
/// NaN or infinity, so serde_json writes a non-finite `f64` as `null`;
/// `null` reads back as NaN (so a run whose equity overflowed can still
/// be restored and reported, showing "n/a" as the first time).
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// `Some(x)` if finite: undefined statistics become JSON `null`.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// `f64::max(acc, x)` for an `acc` that is not NaN, in one instruction
/// (`maxsd`) instead of the NaN handling around it, which sat on the
/// dependency chain of every running max here: a NaN `x` keeps `acc`, as
/// `f64::max` does, and so does a tie (`f64::max` leaves which of ±0 it
/// returns unspecified; on x86-64 it compiles to keeping `acc` too).
#[inline(always)]
fn max_keep(acc: f64, x: f64) -> f64 {
    if x > acc {
        x
    } else {
        acc
    }
}

/// A spread that is float residue next to `scale` counts as zero.
fn spread(s: f64, scale: f64) -> f64 {
    if s <= SPREAD_TOL * scale.abs() {
        0.0
    } else {
        s
    }
}

/// Sum from +0.0 (std's `Sum` for f64 starts at −0.0, which would print
/// "-0.0" for an empty set). The folds this file computes inline (in
/// [`metrics_in`], [`trade_summary`], [`EpisodeStats`]) are these sums
/// with their terms in the same order; `total`, [`mean`] and [`std`] are
/// their definitions, kept as the tests' reference.
#[cfg(test)]
fn total(it: impl IntoIterator<Item = f64>) -> f64 {
    it.into_iter().fold(0.0, |a, b| a + b)
}

#[cfg(test)]
fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| total(v.iter().copied()) / v.len() as f64)
}

/// Sample standard deviation (ddof = 1), as pandas.
#[cfg(test)]
fn std(v: &[f64]) -> Option<f64> {
    let m = mean(v)?;
    (v.len() >= 2)
        .then(|| (total(v.iter().map(|x| (x - m) * (x - m))) / (v.len() - 1) as f64).sqrt())
}

/// Per-bar returns of a curve that started at `initial`; 0 after equity ≤ 0.
/// ([`metrics_of_stats`] computes them inline; this is their definition,
/// kept for the tests.)
#[cfg(test)]
fn bar_returns(initial: f64, equity: &[f64]) -> Vec<f64> {
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

/// The `q` quantile of `v` with linear interpolation between order
/// statistics (numpy's default, pandas' `quantile`): `h = (n − 1)·q`,
/// `x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋])`. By selection, O(n); `v` is
/// reordered. `None` for an empty slice.
pub fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    quantile_from(v, q, 0).map(|(x, _)| x)
}

/// [`quantile`] where `v[..from]` is known to hold the `from` smallest
/// values of `v` (in `f64::total_cmp` order, as a selection leaves them):
/// the selection runs on the rest only and finds the same order
/// statistics, so the same bits. Returns the quantile and the index of
/// its lower order statistic (a later call's `from`).
fn quantile_from(v: &mut [f64], q: f64, from: usize) -> Option<(f64, usize)> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let h = (n - 1) as f64 * q;
    let lo = (h.floor() as usize).min(n - 1);
    let from = from.min(lo);
    let (_, x_lo, above) = v[from..].select_nth_unstable_by(lo - from, f64::total_cmp);
    let x_lo = *x_lo;
    let frac = h - lo as f64;
    if frac == 0.0 || above.is_empty() {
        return Some((x_lo, lo));
    }
    let x_hi = above.iter().copied().fold(f64::INFINITY, f64::min);
    Some((x_lo + frac * (x_hi - x_lo), lo))
}

/// `Σ x` and the count of the `x ≤ q` of `v`, added in slice order from
/// +0.0, as one filtered fold over `v`. After a selection at `lo` the
/// qualifying values are (nearly always) all in `v[..=lo]`: the rest is
/// first tested branch-free for any `x ≤ q` (it vectorises) and folded
/// only if it has one, so the same terms are added in the same order.
fn tail_sum(v: &[f64], lo: usize, q: f64) -> (f64, usize) {
    let add = |(s, c): (f64, usize), &x: &f64| if x <= q { (s + x, c + 1) } else { (s, c) };
    let (head, rest) = v.split_at((lo + 1).min(v.len()));
    let acc = head.iter().fold((0.0, 0usize), add);
    if rest.iter().fold(false, |any, &x| any | (x <= q)) {
        rest.iter().fold(acc, add)
    } else {
        acc
    }
}

/// `Σa², Σa³, Σa⁴` with `a = x − m`, each in slice order from +0.0: the
/// separate pass [`metrics_of_stats`] fused into its second pass, kept as
/// the tests' reference.
#[cfg(test)]
fn central_sums(v: &[f64], m: f64) -> (f64, f64, f64) {
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for &x in v {
        let a = x - m;
        let a2 = a * a;
        m2 += a2;
        m3 += a2 * a;
        m4 += a2 * a2;
    }
    (m2, m3, m4)
}

/// Pandas' bias-corrected sample skewness (G1) and excess kurtosis (G2) of
/// `len` values from their central sums `Σa², Σa³, Σa⁴`; `None` below 3 (skew) / 4
/// (kurtosis) values or for a zero spread `sd`.
fn moments(len: usize, (m2, m3, m4): (f64, f64, f64), sd: f64) -> (Option<f64>, Option<f64>) {
    let n = len as f64;
    if sd == 0.0 || len < 3 {
        return (None, None);
    }
    let skew = finite(n * (n - 1.0).sqrt() / (n - 2.0) * (m3 / m2.powf(1.5)));
    let kurt = (len >= 4)
        .then(|| {
            let num = n * (n + 1.0) * (n - 1.0) * m4;
            let den = (n - 2.0) * (n - 3.0) * m2 * m2;
            finite(num / den - 3.0 * (n - 1.0) * (n - 1.0) / ((n - 2.0) * (n - 3.0)))
        })
        .flatten();
    (skew, kurt)
}

/// One drawdown episode while it is being measured.
#[derive(Clone, Copy)]
struct Episode {
    peak: usize,
    valley: usize,
    depth: f64,
    bars: usize,
    /// Bar index at which equity is back at the peak, if it is.
    recovery: Option<usize>,
    /// `(ts of the last bar below the peak − ts of the peak) / 1 day`.
    days: f64,
}

/// Drawdown summary of a curve.
struct Drawdowns {
    max: f64,
    avg: f64,
    max_bars: usize,
    max_days: f64,
    avg_bars: f64,
    avg_days: f64,
    worst: Vec<Drawdown>,
}

/// The episodes' statistics, taken as each episode ends (in the order
/// the episodes come, which is the order a list of them had): each sum
/// adds the same terms in the same order from +0.0 as a fold over that
/// list, each max takes the same values in the same order, and the five
/// deepest are kept in a bounded sorted array instead of a selection over
/// every episode.
struct EpisodeStats {
    count: usize,
    sum_depth: f64,
    sum_bars: f64,
    sum_days: f64,
    max_bars: usize,
    max_days: f64,
    /// The deepest episodes so far, deepest first (ties: earlier peak
    /// first); `top[..kept]` is valid.
    top: [Episode; 5],
    kept: usize,
}

impl EpisodeStats {
    fn new() -> EpisodeStats {
        let none = Episode {
            peak: 0,
            valley: 0,
            depth: 0.0,
            bars: 0,
            recovery: None,
            days: 0.0,
        };
        EpisodeStats {
            count: 0,
            sum_depth: 0.0,
            sum_bars: 0.0,
            sum_days: 0.0,
            max_bars: 0,
            max_days: 0.0,
            top: [none; 5],
            kept: 0,
        }
    }

    fn push(&mut self, e: Episode) {
        self.count += 1;
        self.sum_depth += e.depth;
        self.sum_bars += e.bars as f64;
        self.sum_days += e.days;
        self.max_bars = self.max_bars.max(e.bars);
        self.max_days = f64::max(self.max_days, e.days);
        // A total order (peaks differ, and come in increasing order): the
        // first five of a sort of every episode by it.
        let at = self.top[..self.kept]
            .iter()
            .position(|t| deeper(&e, t).is_lt())
            .unwrap_or(self.kept);
        if at < 5 {
            let end = self.kept.min(4);
            self.top.copy_within(at..end, at + 1);
            self.top[at] = e;
            self.kept = (self.kept + 1).min(5);
        }
    }
}

/// Deeper first, then the earlier peak: the order of `worst_drawdowns`.
fn deeper(a: &Episode, b: &Episode) -> std::cmp::Ordering {
    b.depth.total_cmp(&a.depth).then(a.peak.cmp(&b.peak))
}

fn drawdowns(initial: f64, ts: &[i64], equity: &[f64]) -> Drawdowns {
    // The running peak is never NaN from a number start (a NaN bar keeps
    // it), so `max_keep` is `f64::max` there; a NaN start (no caller has
    // one: capital is checked > 0) takes `f64::max` itself.
    if initial.is_nan() {
        drawdowns_with(initial, ts, equity, f64::max)
    } else {
        drawdowns_with(initial, ts, equity, max_keep)
    }
}

fn drawdowns_with(
    initial: f64,
    ts: &[i64],
    equity: &[f64],
    peak_max: impl Fn(f64, f64) -> f64,
) -> Drawdowns {
    let mut stats = EpisodeStats::new();
    let mut peak = initial;
    let mut cur: Option<Episode> = None;
    let mut max = 0.0f64;
    // Days from the peak bar to the last bar below it.
    let days = |e: &Episode, last: usize| (ts[last] - ts[e.peak]) as f64 / DAY_US as f64;
    for (t, &e) in equity.iter().enumerate() {
        peak = peak_max(peak, e);
        let dd = if peak > 0.0 { 1.0 - e / peak } else { 0.0 };
        // `max` starts at 0 and is never NaN: `max_keep` is `f64::max`.
        max = max_keep(max, dd);
        if dd > 0.0 {
            let c = cur.get_or_insert(Episode {
                peak: t.saturating_sub(1),
                valley: t,
                depth: 0.0,
                bars: 0,
                recovery: None,
                days: 0.0,
            });
            if dd > c.depth {
                c.depth = dd;
                c.valley = t;
            }
            c.bars += 1;
        } else if let Some(mut c) = cur.take() {
            c.recovery = Some(t);
            c.days = days(&c, t - 1);
            stats.push(c);
        }
    }
    if let Some(mut c) = cur.take() {
        c.days = days(&c, equity.len() - 1);
        stats.push(c);
    }
    let k = stats.count as f64;
    let avg = |sum: f64| if k > 0.0 { sum / k } else { 0.0 };
    Drawdowns {
        max,
        avg: avg(stats.sum_depth),
        max_bars: stats.max_bars,
        max_days: stats.max_days,
        avg_bars: avg(stats.sum_bars),
        avg_days: avg(stats.sum_days),
        worst: stats.top[..stats.kept]
            .iter()
            .map(|e| Drawdown {
                start: ts[e.peak],
                valley: ts[e.valley],
                recovery: e.recovery.map(|r| ts[r]),
                depth: e.depth,
                bars: e.bars,
                days: e.days,
            })
            .collect(),
    }
}

/// Compounded return `Π(1 + r_t) − 1` of each calendar year of `ts` in
/// `calendar` (quantstats' end-of-year returns). `None` for a year whose
/// product is not finite.
fn yearly_returns(ts: &[i64], r: &[f64], calendar: &Calendar) -> BTreeMap<i32, Option<f64>> {
    let mut out = BTreeMap::new();
    let (Some(&first), Some(&last)) = (ts.first(), ts.last()) else {
        return out;
    };
    let starts = calendar.year_starts(first, last);
    for (k, &(year, from)) in starts.iter().enumerate() {
        let a = ts.partition_point(|&t| t < from);
        let b = starts
            .get(k + 1)
            .map_or(ts.len(), |&(_, next)| ts.partition_point(|&t| t < next));
        if a < b {
            let growth = r[a..b].iter().fold(1.0, |g, x| g * (1.0 + x));
            out.insert(year, finite(growth - 1.0));
        }
    }
    out
}

/// All statistics of one curve with default options (ppy inferred in UTC,
/// risk-free rate 0); see [`Metrics`] and [`metrics_of_stats`].
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
    let stats: Vec<TradeStat> = trades.iter().map(TradeStat::of).collect();
    metrics_of_stats(
        initial,
        ts,
        equity,
        benchmark,
        &stats,
        exposure,
        total_fees,
        &MetricsOptions::default(),
    )
}

/// What the metrics need of one trade: 48 bytes instead of a [`Trade`]
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
    /// [`Trade::entry_ts`].
    pub entry_ts: i64,
    /// [`Trade::exit_ts`].
    pub exit_ts: Option<i64>,
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
            entry_ts: t.entry_ts,
            exit_ts: t.exit_ts,
            open: t.open,
        }
    }

    /// [`Trade::duration_days`], bit for bit.
    fn duration_days(&self) -> Option<f64> {
        self.exit_ts
            .map(|x| (x - self.entry_ts) as f64 / DAY_US as f64)
    }
}

/// Longest runs of winning and losing trades (`pnl > 0` / `< 0`; a trade
/// with `pnl = 0` ends both) among the closed trades of `trades`, taken
/// in exit order (ties in slice order). Trades usually come in exit order
/// (one symbol's ledger). A portfolio's ledger is every symbol's trades,
/// one after the other; they exit on bars of the curve `ts` (sorted), so
/// they are put in exit order by counting per exit bar (stable; a binary
/// search per trade, then O(trades + bars)); a trade exiting off `ts`
/// falls back to a stable sort.
fn streaks(trades: &[TradeStat], ts: &[i64]) -> (usize, usize) {
    let closed = || trades.iter().filter(|t| !t.open);
    if closed().is_sorted_by_key(|t| t.exit_ts) {
        return streaks_in_order(closed().map(|t| t.pnl));
    }
    if let Some(pnls) = in_exit_bar_order(closed(), ts) {
        return streaks_in_order(pnls.into_iter());
    }
    // What the streaks need of each trade, 16 bytes in one block: the
    // sort compares keys in place instead of through a pointer per trade
    // (a portfolio's ledger is every symbol's trades).
    let mut order: Vec<(Option<i64>, f64)> = closed().map(|t| (t.exit_ts, t.pnl)).collect();
    order.sort_by_key(|&(exit, _)| exit);
    streaks_in_order(order.into_iter().map(|(_, pnl)| pnl))
}

/// The pnls of `closed` in the order of a stable sort by exit time, by
/// counting them per exit bar of `ts`; `None` when `ts` is not sorted or a
/// trade does not exit on one of its bars. (Equal timestamps in `ts` map
/// to the first: ties keep their order.)
fn in_exit_bar_order<'a>(
    closed: impl Iterator<Item = &'a TradeStat> + Clone,
    ts: &[i64],
) -> Option<Vec<f64>> {
    if !ts.is_sorted() {
        return None;
    }
    let mut bar = Vec::with_capacity(closed.size_hint().0);
    for t in closed.clone() {
        let x = t.exit_ts?;
        let b = ts.partition_point(|&y| y < x);
        if ts.get(b) != Some(&x) {
            return None;
        }
        bar.push(b);
    }
    // `at[b]`: where the first trade exiting on bar `b` goes.
    let mut at = vec![0usize; ts.len() + 1];
    for &b in &bar {
        at[b + 1] += 1;
    }
    for b in 1..at.len() {
        at[b] += at[b - 1];
    }
    let mut pnls = vec![0.0; bar.len()];
    for (t, &b) in closed.zip(&bar) {
        pnls[at[b]] = t.pnl;
        at[b] += 1;
    }
    Some(pnls)
}

/// [`streaks`] of the pnls of trades already in exit order.
fn streaks_in_order(pnls: impl Iterator<Item = f64>) -> (usize, usize) {
    let (mut win, mut loss, mut best_win, mut best_loss) = (0, 0, 0, 0);
    for pnl in pnls {
        if pnl > 0.0 {
            win += 1;
            loss = 0;
        } else if pnl < 0.0 {
            loss += 1;
            win = 0;
        } else {
            win = 0;
            loss = 0;
        }
        best_win = usize::max(best_win, win);
        best_loss = usize::max(best_loss, loss);
    }
    (best_win, best_loss)
}

/// A sum from +0.0 and the number of its terms: a [`mean`] taken on the
/// fly, adding the same values in the same order.
#[derive(Clone, Copy, Default)]
struct Avg {
    sum: f64,
    count: usize,
}

impl Avg {
    fn add(&mut self, x: f64) {
        self.sum += x;
        self.count += 1;
    }

    /// As [`mean`] of the values added.
    fn mean(self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// `Some(max)` of the values seen, as `reduce(f64::max)`: the first value,
/// then `max(acc, x)` in order.
fn reduce_max(acc: Option<f64>, x: f64) -> Option<f64> {
    Some(acc.map_or(x, |a| a.max(x)))
}

/// `Some(min)` of the values seen, as `reduce(f64::min)`.
fn reduce_min(acc: Option<f64>, x: f64) -> Option<f64> {
    Some(acc.map_or(x, |a| a.min(x)))
}

/// The statistics of the closed (and open) trades, in one pass over them
/// (plus one for the spread of the returns) instead of a vector per
/// subset: every mean adds the same values in the same order from +0.0
/// as a [`mean`] of the vector it replaced, every max/min reduces the
/// same values in the same order.
struct TradeSummary {
    closed: usize,
    wins: usize,
    /// `Σ pnl⁺`, `Σ pnl⁻` (the latter ≤ 0) in slice order from +0.0.
    gross_profit: f64,
    gross_loss_sum: f64,
    ret: Avg,
    pnl: Avg,
    win_ret: Avg,
    loss_ret: Avg,
    held: Avg,
    win_held: Avg,
    loss_held: Avg,
    days: Avg,
    win_days: Avg,
    loss_days: Avg,
    best: Option<f64>,
    worst: Option<f64>,
    max_held: Option<usize>,
    max_days: Option<f64>,
    open: usize,
    open_pnl: f64,
    /// Sample standard deviation of the closed trades' returns ([`std`]).
    ret_std: Option<f64>,
}

fn trade_summary(trades: &[TradeStat]) -> TradeSummary {
    let mut s = TradeSummary {
        closed: 0,
        wins: 0,
        gross_profit: 0.0,
        gross_loss_sum: 0.0,
        ret: Avg::default(),
        pnl: Avg::default(),
        win_ret: Avg::default(),
        loss_ret: Avg::default(),
        held: Avg::default(),
        win_held: Avg::default(),
        loss_held: Avg::default(),
        days: Avg::default(),
        win_days: Avg::default(),
        loss_days: Avg::default(),
        best: None,
        worst: None,
        max_held: None,
        max_days: None,
        open: 0,
        open_pnl: 0.0,
        ret_std: None,
    };
    for t in trades {
        if t.open {
            s.open += 1;
            s.open_pnl += t.pnl;
            continue;
        }
        s.closed += 1;
        s.ret.add(t.ret);
        s.pnl.add(t.pnl);
        let held = t.bars_held as f64;
        s.held.add(held);
        s.best = reduce_max(s.best, t.ret);
        s.worst = reduce_min(s.worst, t.ret);
        s.max_held = Some(s.max_held.map_or(t.bars_held, |m| m.max(t.bars_held)));
        let days = t.duration_days();
        if let Some(d) = days {
            s.days.add(d);
            s.max_days = reduce_max(s.max_days, d);
        }
        if t.pnl > 0.0 {
            s.wins += 1;
            s.gross_profit += t.pnl;
            s.win_ret.add(t.ret);
            s.win_held.add(held);
            if let Some(d) = days {
                s.win_days.add(d);
            }
        } else if t.pnl < 0.0 {
            s.gross_loss_sum += t.pnl;
            s.loss_ret.add(t.ret);
            s.loss_held.add(held);
            if let Some(d) = days {
                s.loss_days.add(d);
            }
        }
    }
    // As [`std`] of the returns: `√(Σ(x − m)² / (k − 1))`.
    if let Some(m) = s.ret.mean().filter(|_| s.closed >= 2) {
        let ss = trades
            .iter()
            .filter(|t| !t.open)
            .fold(0.0, |a, t| a + (t.ret - m) * (t.ret - m));
        s.ret_std = Some((ss / (s.closed - 1) as f64).sqrt());
    }
    s
}

/// How much of a curve was in the market: `exposure` (fraction of bars
/// with a nonzero gross exposure fraction) and `max_gross_exposure` (the
/// largest finite fraction).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ExposureStats {
    inside: Option<f64>,
    max: Option<f64>,
}

impl ExposureStats {
    /// Of a series of gross exposure fractions (`None` for none or an
    /// empty one).
    fn of_fractions(x: Option<&[f64]>) -> ExposureStats {
        match x {
            Some(x) if !x.is_empty() => {
                let mut acc = ExposureAcc::new();
                for &v in x {
                    acc.add(v);
                }
                acc.finish(x.len())
            }
            _ => ExposureStats {
                inside: None,
                max: None,
            },
        }
    }

    /// [`ExposureStats::of_fractions`] of
    /// `gross_fraction(gross, equity)`, without the series: each fraction
    /// is computed as there and counted at once.
    pub(crate) fn of_gross(gross: &[f64], equity: &[f64]) -> ExposureStats {
        let len = gross.len().min(equity.len());
        if len == 0 {
            return ExposureStats::of_fractions(None);
        }
        let mut acc = ExposureAcc::new();
        for (&g, &e) in gross.iter().zip(equity) {
            acc.add(super::exec::fraction(g, e));
        }
        acc.finish(len)
    }
}

/// The running counts of [`ExposureStats`].
struct ExposureAcc {
    nonzero: usize,
    max: f64,
}

impl ExposureAcc {
    fn new() -> ExposureAcc {
        ExposureAcc {
            nonzero: 0,
            max: f64::NEG_INFINITY,
        }
    }

    /// No `Option` and no branch per bar, the max in a register: a
    /// non-finite fraction enters as −∞, and `max(m, −∞)` is `m` (never
    /// NaN here), so the result is the same `max`es of the finite values
    /// in the same order as the optional fold it replaced, starting from
    /// the first; −∞ at the end means there was none.
    #[inline]
    fn add(&mut self, v: f64) {
        self.nonzero += usize::from(v != 0.0);
        let w = if v.is_finite() { v } else { f64::NEG_INFINITY };
        self.max = max_keep(self.max, w);
    }

    fn finish(self, len: usize) -> ExposureStats {
        ExposureStats {
            inside: Some(self.nonzero as f64 / len as f64),
            max: (self.max != f64::NEG_INFINITY).then_some(self.max),
        }
    }
}

/// [`metrics`] from the trades' [`TradeStat`]s (same order, same bits),
/// with `opts` (periods per year, risk-free rate, calendar). This is the
/// one function every path (run, sweep, merge, walk-forward) computes its
/// statistics with.
#[allow(clippy::too_many_arguments)]
pub fn metrics_of_stats(
    initial: f64,
    ts: &[i64],
    equity: &[f64],
    benchmark: &[f64],
    trades: &[TradeStat],
    exposure: Option<&[f64]>,
    total_fees: f64,
    opts: &MetricsOptions,
) -> Metrics {
    metrics_in(
        initial,
        ts,
        equity,
        benchmark,
        trades,
        ExposureStats::of_fractions(exposure),
        total_fees,
        opts,
        &mut Vec::new(),
    )
}

/// [`metrics_of_stats`] with the exposure statistics already taken and
/// `scratch` as the memory of the bar returns (a sweep computes this for
/// every symbol of every combination and reuses the buffer).
#[allow(clippy::too_many_arguments)]
pub(crate) fn metrics_in(
    initial: f64,
    ts: &[i64],
    equity: &[f64],
    benchmark: &[f64],
    trades: &[TradeStat],
    exposure: ExposureStats,
    total_fees: f64,
    opts: &MetricsOptions,
    scratch: &mut Vec<f64>,
) -> Metrics {
    let n = equity.len().min(ts.len());
    let (ts, equity) = (&ts[..n], &equity[..n]);
    let ppy = opts
        .periods_per_year
        .unwrap_or_else(|| periods_per_year_in(ts, &opts.calendar));
    let days = if n >= 2 {
        (ts[n - 1] - ts[0]) as f64 / DAY_US as f64
    } else {
        0.0
    };
    let final_equity = equity.last().copied().unwrap_or(initial);
    let bench_final = benchmark.get(n.wrapping_sub(1)).copied().unwrap_or(initial);
    let growth = |years: f64| {
        if final_equity <= 0.0 {
            Some(-1.0)
        } else {
            finite((final_equity / initial).powf(1.0 / years) - 1.0)
        }
    };

    // Excess returns: quantstats de-annualises rf over the same periods.
    let rf = if opts.risk_free != 0.0 {
        (1.0 + opts.risk_free).powf(1.0 / ppy) - 1.0
    } else {
        0.0
    };
    // Two passes instead of one per statistic: the first takes the bar
    // returns of the curve and the benchmark and every sum that needs no
    // mean, the second the sums around the means. Each sum still adds the
    // same terms in slice order from +0.0, so the bits of the separate
    // folds it replaced (`mean`, `central_sums`, …); the chains of
    // dependent additions now overlap instead of running one after the
    // other (a sweep computes this for every symbol of every combination).
    let kb = n.min(benchmark.len());
    scratch.clear();
    scratch.resize(n + kb, 0.0);
    let (r, rb) = scratch.split_at_mut(n);
    let (mut sum_r, mut sum_rb) = (0.0, 0.0);
    let (mut down, mut gains, mut losses) = (0.0, 0.0, 0.0);
    let mut equity_peak = initial;
    let (mut prev, mut prev_b) = (initial, initial);
    // One bar of the curve (into slices, not pushes: a push's growth path
    // kept the sums in memory instead of registers).
    macro_rules! bar {
        ($x:expr, $e:expr) => {
            let e = $e;
            // As `bar_returns`.
            let x = if prev > 0.0 { e / prev - 1.0 } else { 0.0 };
            prev = e;
            *$x = x;
            sum_r += x;
            let dx = (x - rf).min(0.0);
            down += dx * dx;
            // Branch-free (the sign of a return is a coin flip for the
            // predictor): adding +0.0 to a sum that is not −0.0 (these
            // start at +0.0 and only grow) leaves its bits as they are.
            gains += if x > 0.0 { x } else { 0.0 };
            losses -= if x < 0.0 { x } else { 0.0 };
            // `f64::max` while the peak is not NaN (see `drawdowns`);
            // fixed after the loop otherwise.
            equity_peak = max_keep(equity_peak, e);
        };
    }
    let (r_head, r_tail) = r.split_at_mut(kb);
    for ((x, y), (&e, &bv)) in r_head
        .iter_mut()
        .zip(rb.iter_mut())
        .zip(equity.iter().zip(&benchmark[..kb]))
    {
        bar!(x, e);
        let yv = if prev_b > 0.0 { bv / prev_b - 1.0 } else { 0.0 };
        prev_b = bv;
        *y = yv;
        sum_rb += yv;
    }
    let sum_r_kb = sum_r;
    for (x, &e) in r_tail.iter_mut().zip(&equity[kb..]) {
        bar!(x, e);
    }
    if initial.is_nan() {
        equity_peak = equity.iter().copied().fold(initial, f64::max);
    }
    let m = (n > 0).then(|| sum_r / n as f64);
    // OLS of r on the benchmark's returns, over their common bars.
    let ms = if kb == n {
        m
    } else {
        (kb > 0).then(|| sum_r_kb / kb as f64)
    };
    let mb = (kb > 0).then(|| sum_rb / kb as f64);
    let ols = match (ms, mb) {
        (Some(ms), Some(mb)) if kb >= 2 => Some((ms, mb)),
        _ => None,
    };
    // `Σa², Σa³, Σa⁴` with `a = x − m` (`Σa²` is the sum [`std`] takes),
    // and the OLS sums.
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    let (mut cov, mut var) = (0.0, 0.0);
    let mm = m.unwrap_or(0.0);
    let split = if ols.is_some() { kb } else { 0 };
    let (ms0, mb0) = ols.unwrap_or((0.0, 0.0));
    for (&x, &y) in r[..split].iter().zip(&rb[..split]) {
        let a = x - mm;
        let a2 = a * a;
        m2 += a2;
        m3 += a2 * a;
        m4 += a2 * a2;
        let bd = y - mb0;
        cov += (x - ms0) * bd;
        var += bd * bd;
    }
    for &x in &r[split..] {
        let a = x - mm;
        let a2 = a * a;
        m2 += a2;
        m3 += a2 * a;
        m4 += a2 * a2;
    }
    let sums = m.map(|_| (m2, m3, m4));
    // As [`std`]: `√(Σa² / (n − 1))`.
    let raw_sd = sums
        .filter(|_| n >= 2)
        .map(|(m2, _, _)| (m2 / (n - 1) as f64).sqrt());
    let sd = match (raw_sd, m) {
        (Some(s), Some(m)) => Some(spread(s, m)),
        _ => None,
    };
    let volatility = sd.and_then(|s| finite(s * ppy.sqrt()));
    let mx = m.map(|m| m - rf);
    let sharpe = match (mx, sd) {
        (Some(mx), Some(s)) if s > 0.0 => finite(mx / s * ppy.sqrt()),
        _ => None,
    };
    let downside = (n > 0).then(|| (down / n as f64).sqrt());
    let sortino = match (mx, m, downside) {
        (Some(mx), Some(m), Some(d)) if spread(d, m) > 0.0 => finite(mx / d * ppy.sqrt()),
        _ => None,
    };
    let cagr = if days > 0.0 {
        growth(days / 365.25)
    } else {
        None
    };
    let annual_return = if n > 0 { growth(n as f64 / ppy) } else { None };
    let dd = drawdowns(initial, ts, equity);
    let calmar = match annual_return {
        Some(a) if spread(dd.max, a) > 0.0 => finite(a / dd.max),
        _ => None,
    };
    let (skew, kurtosis) = match (sums, sd) {
        (Some(sums), Some(s)) => moments(n, sums, s),
        _ => (None, None),
    };
    let (alpha, beta) = match ols {
        Some((ms, mb)) => {
            let sb = (var / (kb - 1) as f64).sqrt();
            if spread(sb, mb) > 0.0 {
                let beta = cov / var;
                (finite((ms - beta * mb) * ppy), finite(beta))
            } else {
                (None, None)
            }
        }
        None => (None, None),
    };
    let omega = (spread(losses, gains) > 0.0)
        .then(|| finite(gains / losses))
        .flatten();

    let yearly_returns = yearly_returns(ts, r, &opts.calendar);
    // Quantiles last: selection reorders `r`.
    let var_95 = quantile_from(r, 0.05, 0);
    let (var_95, lo) = (var_95.map(|(x, _)| x), var_95.map_or(0, |(_, lo)| lo));
    let cvar_95 = var_95.and_then(|q| {
        let (s, c) = tail_sum(r, lo, q);
        (c > 0).then(|| s / c as f64)
    });
    let q95 = quantile_from(r, 0.95, lo).map(|(x, _)| x);
    let tail_ratio = match (q95, var_95) {
        (Some(hi), Some(lo)) if spread(lo.abs(), hi) > 0.0 => finite((hi / lo).abs()),
        _ => None,
    };

    let ExposureStats {
        inside: exposure,
        max: max_gross_exposure,
    } = exposure;

    // Trade statistics: closed trades only.
    let tr = trade_summary(trades);
    let nt = tr.closed;
    let win_rate = (nt > 0).then(|| tr.wins as f64 / nt as f64);
    let gross_profit = tr.gross_profit;
    let gross_loss = -tr.gross_loss_sum;
    let profit_factor = (spread(gross_loss, gross_profit) > 0.0)
        .then(|| finite(gross_profit / gross_loss))
        .flatten();
    let sqn = match (tr.ret.mean(), tr.ret_std) {
        (Some(m), Some(s)) if spread(s, m) > 0.0 => finite((nt as f64).sqrt() * m / s),
        _ => None,
    };
    let avg_win = tr.win_ret.mean();
    let avg_loss = tr.loss_ret.mean();
    let payoff_ratio = match (avg_win, avg_loss) {
        (Some(aw), Some(al)) if spread(al.abs(), aw) > 0.0 => finite(aw / al.abs()),
        _ => None,
    };
    let kelly = match (win_rate, avg_win, avg_loss) {
        (Some(w), Some(aw), Some(al)) if spread(aw, al) > 0.0 => {
            finite(w - (1.0 - w) / (aw / al.abs()))
        }
        (Some(w), Some(_), None) => Some(w),
        _ => None,
    };
    let (max_winning_streak, max_losing_streak) = streaks(trades, ts);

    Metrics {
        start: ts.first().copied(),
        end: ts.last().copied(),
        bars: n,
        days,
        periods_per_year: ppy,
        risk_free: opts.risk_free,
        total_return: final_equity / initial - 1.0,
        benchmark_return: bench_final / initial - 1.0,
        cagr,
        annual_return,
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
        skew,
        kurtosis,
        var_95,
        cvar_95,
        tail_ratio,
        alpha,
        beta,
        omega,
        exposure,
        max_gross_exposure,
        trades: nt,
        win_rate,
        profit_factor,
        expectancy: tr.pnl.mean(),
        sqn,
        kelly,
        payoff_ratio,
        avg_trade_return: tr.ret.mean(),
        best_trade: tr.best,
        worst_trade: tr.worst,
        avg_winning_trade: avg_win,
        avg_losing_trade: avg_loss,
        avg_trade_duration: tr.held.mean(),
        avg_trade_duration_days: tr.days.mean(),
        max_trade_duration: tr.max_held,
        max_trade_duration_days: tr.max_days,
        avg_winning_trade_duration: tr.win_held.mean(),
        avg_losing_trade_duration: tr.loss_held.mean(),
        avg_winning_trade_duration_days: tr.win_days.mean(),
        avg_losing_trade_duration_days: tr.loss_days.mean(),
        max_winning_streak,
        max_losing_streak,
        total_fees,
        open_trades: tr.open,
        open_trade_pnl: tr.open_pnl,
        final_equity,
        equity_peak,
        yearly_returns,
        worst_drawdowns: dd.worst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attack on shared cash (issue 22): a curve that overflowed wrote
    /// `null` for its non-finite numbers, and reading `metrics.json` back
    /// (the run cache's restore, `report`) failed on "expected f64".
    #[test]
    fn non_finite_metrics_read_back_from_metrics_json() {
        let day = 86_400_000_000;
        let ts: Vec<i64> = (0..5).map(|k| k * day).collect();
        let equity = [100.0, 1e308, f64::INFINITY, f64::INFINITY, 1.0];
        let bench = [100.0, 101.0, 102.0, 103.0, f64::INFINITY];
        let m = metrics_of_stats(
            100.0,
            &ts,
            &equity,
            &bench,
            &[],
            None,
            0.0,
            &MetricsOptions::default(),
        );
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("null"), "{json}");
        let back: Metrics = serde_json::from_str(&json).unwrap();
        assert_eq!(back.bars, m.bars);
        assert!(back.benchmark_return.is_nan() || back.benchmark_return.is_finite());
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }

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
    fn quantile_interpolates_linearly_like_numpy() {
        // np.percentile([1, 2, 3, 4], 5) = 1.15; [.., 95] = 3.85.
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert!((quantile(&mut v, 0.05).unwrap() - 1.15).abs() < 1e-15);
        assert!((quantile(&mut v, 0.95).unwrap() - 3.85).abs() < 1e-15);
        assert_eq!(quantile(&mut [7.0], 0.05), Some(7.0));
        assert_eq!(quantile(&mut [], 0.05), None);
        // The 95% quantile selected after the 5% one, on the part above
        // it only: the same bits as on a fresh copy (ties, signed zeros
        // and a NaN included).
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let v: Vec<f64> = (0..997)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match i % 50 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => 0.5,
                    3 if i == 3 => f64::NAN,
                    _ => (x % 2001) as f64 / 1000.0 - 1.0,
                }
            })
            .collect();
        for q in [0.05, 0.5, 0.95, 1.0] {
            let mut fresh = v.clone();
            let want = quantile(&mut fresh, q).unwrap();
            let mut w = v.clone();
            let (_, lo) = quantile_from(&mut w, 0.05, 0).unwrap();
            let got = quantile_from(&mut w, q, lo).unwrap().0;
            assert_eq!(got.to_bits(), want.to_bits(), "{q}");
        }
        let mut w = vec![5.0, 1.0, 9.0];
        assert_eq!(quantile(&mut w, 0.5), Some(5.0));
        // The CVaR sum split at the selection: the bits of one filtered
        // fold over the whole slice, whatever the split and the threshold.
        let mut w = v.clone();
        let (q, lo) = quantile_from(&mut w, 0.05, 0).unwrap();
        for (lo, q) in [(lo, q), (lo, 0.5), (0, 0.0), (996, -0.0), (3, f64::NAN)] {
            let (s, c) = w
                .iter()
                .filter(|&&x| x <= q)
                .fold((0.0, 0usize), |(s, c), &x| (s + x, c + 1));
            let (s2, c2) = tail_sum(&w, lo, q);
            assert_eq!((s.to_bits(), c), (s2.to_bits(), c2), "{lo} {q}");
        }
    }

    /// The two fused passes of `metrics_of_stats` give the bits of one
    /// fold per statistic (the code before the fusion, restated here), on
    /// curves with ruin, flat stretches, a shorter benchmark and a
    /// risk-free rate.
    #[test]
    fn fused_passes_equal_one_fold_per_statistic() {
        let mut z = 0x2545_f491_4f6c_dd1du64;
        let mut u = || {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            (z >> 11) as f64 / (1u64 << 53) as f64
        };
        for case in 0..200 {
            let n = 1 + (u() * 400.0) as usize;
            let mut e = 100.0;
            let mut b = 100.0;
            let (mut eq, mut bench) = (Vec::new(), Vec::new());
            for _ in 0..n {
                let x = u();
                if x > 0.1 {
                    e *= 1.0 + 0.05 * (u() - 0.5);
                }
                if case % 7 == 0 && x < 0.01 {
                    e = -1.0; // ruin
                }
                b *= 1.0 + 0.04 * (u() - 0.5);
                eq.push(e);
                bench.push(b);
            }
            if case % 5 == 0 {
                bench.truncate(n / 2);
            }
            let ts: Vec<i64> = (0..n as i64).map(|k| k * DAY_US).collect();
            let opts = MetricsOptions {
                periods_per_year: Some(252.0),
                risk_free: if case % 3 == 0 { 0.02 } else { 0.0 },
                ..MetricsOptions::default()
            };
            let got = metrics_of_stats(100.0, &ts, &eq, &bench, &[], None, 0.0, &opts);
            // The separate folds.
            let ppy = 252.0;
            let r = bar_returns(100.0, &eq);
            let m = mean(&r);
            let sums = m.map(|m| central_sums(&r, m));
            let sd = sums
                .filter(|_| n >= 2)
                .map(|(m2, _, _)| spread((m2 / (n - 1) as f64).sqrt(), m.unwrap_or(0.0)));
            let rf = if opts.risk_free != 0.0 {
                (1.0 + opts.risk_free).powf(1.0 / ppy) - 1.0
            } else {
                0.0
            };
            let sharpe = match (m, sd) {
                (Some(m), Some(s)) if s > 0.0 => finite((m - rf) / s * ppy.sqrt()),
                _ => None,
            };
            let d = (total(r.iter().map(|&x| {
                let e = (x - rf).min(0.0);
                e * e
            })) / n as f64)
                .sqrt();
            let sortino = match m {
                Some(m) if spread(d, m) > 0.0 => finite((m - rf) / d * ppy.sqrt()),
                _ => None,
            };
            let (skew, kurt) = match (sums, sd) {
                (Some(sums), Some(s)) => moments(n, sums, s),
                _ => (None, None),
            };
            let rb = bar_returns(100.0, &bench[..n.min(bench.len())]);
            let k = r.len().min(rb.len());
            let ms = if k == r.len() { m } else { mean(&r[..k]) };
            let (alpha, beta) = match (ms, mean(&rb[..k])) {
                (Some(ms), Some(mb)) if k >= 2 => {
                    let (mut cov, mut var) = (0.0, 0.0);
                    for (x, y) in r[..k].iter().zip(&rb[..k]) {
                        let b = y - mb;
                        cov += (x - ms) * b;
                        var += b * b;
                    }
                    if spread((var / (k - 1) as f64).sqrt(), mb) > 0.0 {
                        let beta = cov / var;
                        (finite((ms - beta * mb) * ppy), finite(beta))
                    } else {
                        (None, None)
                    }
                }
                _ => (None, None),
            };
            let (g, l) = r.iter().fold((0.0, 0.0), |(g, l), &x| {
                if x > 0.0 {
                    (g + x, l)
                } else if x < 0.0 {
                    (g, l - x)
                } else {
                    (g, l)
                }
            });
            let omega = (spread(l, g) > 0.0).then(|| finite(g / l)).flatten();
            let bits = |x: Option<f64>| x.map(f64::to_bits);
            let vol = sd.and_then(|s| finite(s * ppy.sqrt()));
            let want = [sharpe, sortino, skew, kurt, alpha, beta, omega, vol];
            let have = [
                got.sharpe,
                got.sortino,
                got.skew,
                got.kurtosis,
                got.alpha,
                got.beta,
                got.omega,
                got.volatility,
            ];
            assert_eq!(want.map(bits), have.map(bits), "case {case}");
            let peak = eq.iter().copied().fold(100.0, f64::max);
            assert_eq!(peak.to_bits(), got.equity_peak.to_bits(), "case {case}");
        }
    }

    /// The drawdown statistics as a list of episodes gave them (the code
    /// before they were taken on the fly), restated as the reference.
    struct OldEpisode {
        peak: usize,
        valley: usize,
        depth: f64,
        bars: usize,
        recovery: Option<usize>,
    }

    fn drawdowns_reference(initial: f64, ts: &[i64], equity: &[f64]) -> Drawdowns {
        let mut episodes: Vec<OldEpisode> = Vec::new();
        let mut peak = initial;
        let mut cur: Option<OldEpisode> = None;
        let mut max = 0.0f64;
        for (t, &e) in equity.iter().enumerate() {
            peak = peak.max(e);
            let dd = if peak > 0.0 { 1.0 - e / peak } else { 0.0 };
            max = max.max(dd);
            if dd > 0.0 {
                let c = cur.get_or_insert(OldEpisode {
                    peak: t.saturating_sub(1),
                    valley: t,
                    depth: 0.0,
                    bars: 0,
                    recovery: None,
                });
                if dd > c.depth {
                    c.depth = dd;
                    c.valley = t;
                }
                c.bars += 1;
            } else if let Some(mut c) = cur.take() {
                c.recovery = Some(t);
                episodes.push(c);
            }
        }
        episodes.extend(cur.take());
        // Days from the peak bar to the last bar below it.
        let days = |e: &OldEpisode| {
            let last = e.recovery.map_or(equity.len() - 1, |r| r - 1);
            (ts[last] - ts[e.peak]) as f64 / DAY_US as f64
        };
        let k = episodes.len() as f64;
        let avg = |f: &dyn Fn(&OldEpisode) -> f64| {
            if k > 0.0 {
                total(episodes.iter().map(f)) / k
            } else {
                0.0
            }
        };
        // The five deepest, in order: a total order (peaks differ), so
        // selecting them first gives the order a full sort would.
        let deeper = |a: &&OldEpisode, b: &&OldEpisode| {
            b.depth.total_cmp(&a.depth).then(a.peak.cmp(&b.peak))
        };
        let mut by_depth: Vec<&OldEpisode> = episodes.iter().collect();
        if by_depth.len() > 5 {
            by_depth.select_nth_unstable_by(4, deeper);
            by_depth.truncate(5);
        }
        by_depth.sort_by(deeper);
        Drawdowns {
            max,
            avg: avg(&|e| e.depth),
            max_bars: episodes.iter().map(|e| e.bars).max().unwrap_or(0),
            max_days: episodes.iter().map(days).fold(0.0, f64::max),
            avg_bars: avg(&|e| e.bars as f64),
            avg_days: avg(&days),
            worst: by_depth
                .into_iter()
                .take(5)
                .map(|e| Drawdown {
                    start: ts[e.peak],
                    valley: ts[e.valley],
                    recovery: e.recovery.map(|r| ts[r]),
                    depth: e.depth,
                    bars: e.bars,
                    days: days(e),
                })
                .collect(),
        }
    }

    /// The trade statistics as one vector per subset gave them (the code
    /// before the one-pass summary), restated: the values of the fields
    /// of [`Metrics`] they fill, in order.
    fn trade_fields_reference(trades: &[TradeStat]) -> Vec<Option<f64>> {
        let closed: Vec<&TradeStat> = trades.iter().filter(|t| !t.open).collect();
        let rets: Vec<f64> = closed.iter().map(|t| t.ret).collect();
        let pnls: Vec<f64> = closed.iter().map(|t| t.pnl).collect();
        let won: Vec<&TradeStat> = closed.iter().copied().filter(|t| t.pnl > 0.0).collect();
        let lost: Vec<&TradeStat> = closed.iter().copied().filter(|t| t.pnl < 0.0).collect();
        let wins: Vec<f64> = won.iter().map(|t| t.ret).collect();
        let loss: Vec<f64> = lost.iter().map(|t| t.ret).collect();
        let nt = closed.len();
        let win_rate = (nt > 0).then(|| wins.len() as f64 / nt as f64);
        let gross_profit = total(pnls.iter().copied().filter(|&p| p > 0.0));
        let gross_loss = -total(pnls.iter().copied().filter(|&p| p < 0.0));
        let profit_factor = (spread(gross_loss, gross_profit) > 0.0)
            .then(|| finite(gross_profit / gross_loss))
            .flatten();
        let sqn = match (mean(&rets), std(&rets)) {
            (Some(m), Some(s)) if spread(s, m) > 0.0 => finite((nt as f64).sqrt() * m / s),
            _ => None,
        };
        let avg_win = mean(&wins);
        let avg_loss = mean(&loss);
        let payoff_ratio = match (avg_win, avg_loss) {
            (Some(aw), Some(al)) if spread(al.abs(), aw) > 0.0 => finite(aw / al.abs()),
            _ => None,
        };
        let kelly = match (win_rate, avg_win, avg_loss) {
            (Some(w), Some(aw), Some(al)) if spread(aw, al) > 0.0 => {
                finite(w - (1.0 - w) / (aw / al.abs()))
            }
            (Some(w), Some(_), None) => Some(w),
            _ => None,
        };
        let held =
            |v: &[&TradeStat]| mean(&v.iter().map(|t| t.bars_held as f64).collect::<Vec<_>>());
        let held_days = |v: &[&TradeStat]| {
            mean(
                &v.iter()
                    .filter_map(|t| t.duration_days())
                    .collect::<Vec<_>>(),
            )
        };
        let durations: Vec<f64> = closed.iter().filter_map(|t| t.duration_days()).collect();
        let mut order: Vec<&TradeStat> = closed.to_vec();
        order.sort_by_key(|t| t.exit_ts);
        let (ws, ls) = streaks_in_order(order.into_iter().map(|t| t.pnl));
        let open: Vec<&TradeStat> = trades.iter().filter(|t| t.open).collect();
        vec![
            Some(nt as f64),
            win_rate,
            profit_factor,
            mean(&pnls),
            sqn,
            kelly,
            payoff_ratio,
            mean(&rets),
            rets.iter().copied().reduce(f64::max),
            rets.iter().copied().reduce(f64::min),
            avg_win,
            avg_loss,
            held(&closed),
            mean(&durations),
            closed.iter().map(|t| t.bars_held as f64).reduce(f64::max),
            durations.iter().copied().reduce(f64::max),
            held(&won),
            held(&lost),
            held_days(&won),
            held_days(&lost),
            Some(ws as f64),
            Some(ls as f64),
            Some(open.len() as f64),
            Some(total(open.iter().map(|t| t.pnl))),
        ]
    }

    fn trade_fields(m: &Metrics) -> Vec<Option<f64>> {
        vec![
            Some(m.trades as f64),
            m.win_rate,
            m.profit_factor,
            m.expectancy,
            m.sqn,
            m.kelly,
            m.payoff_ratio,
            m.avg_trade_return,
            m.best_trade,
            m.worst_trade,
            m.avg_winning_trade,
            m.avg_losing_trade,
            m.avg_trade_duration,
            m.avg_trade_duration_days,
            m.max_trade_duration.map(|d| d as f64),
            m.max_trade_duration_days,
            m.avg_winning_trade_duration,
            m.avg_losing_trade_duration,
            m.avg_winning_trade_duration_days,
            m.avg_losing_trade_duration_days,
            Some(m.max_winning_streak as f64),
            Some(m.max_losing_streak as f64),
            Some(m.open_trades as f64),
            Some(m.open_trade_pnl),
        ]
    }

    /// The one-pass trade statistics, the drawdown episodes taken on the
    /// fly and the exposure counted without its series give the bits of
    /// the vectors they replaced (restated above), on random ledgers
    /// (open trades, zero pnl, exits out of order, a missing exit time,
    /// signed zeros) and curves (flat stretches, ruin, ties in depth).
    #[test]
    fn one_pass_statistics_equal_the_vectors_they_replaced() {
        let mut z = 0x9e37_79b9_7f4a_7c15u64;
        let mut u = move || {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            (z >> 11) as f64 / (1u64 << 53) as f64
        };
        for case in 0..300 {
            // A ledger.
            let k = (u() * 40.0) as usize;
            let mut trades = Vec::new();
            let mut exit = 0i64;
            for j in 0..k {
                let pnl = match (u() * 10.0) as u32 {
                    0 => 0.0,
                    1 => -0.0,
                    _ => 100.0 * (u() - 0.45),
                };
                exit += (u() * 3.0 * DAY_US as f64) as i64;
                trades.push(TradeStat {
                    ret: if j % 11 == 3 {
                        -0.0
                    } else {
                        pnl / 1000.0 + 1e-3 * u()
                    },
                    pnl,
                    bars_held: (u() * 30.0) as usize,
                    entry_ts: exit - (u() * 5.0 * DAY_US as f64) as i64,
                    exit_ts: (case % 13 != 0 || j != 2).then_some(exit),
                    open: j + 1 == k && case % 2 == 0,
                });
            }
            if case % 3 == 0 && k > 3 {
                trades.swap(0, k / 2); // exits out of order (a portfolio)
            }
            // A curve with its gross exposure.
            let n = (u() * 300.0) as usize;
            let mut e = 100.0;
            let (mut eq, mut gross) = (Vec::new(), Vec::new());
            for t in 0..n {
                let x = u();
                if x > 0.3 {
                    e *= 1.0 + 0.04 * (u() - 0.5);
                }
                if case % 7 == 0 && x < 0.01 {
                    e = -1.0; // ruin
                }
                if case % 5 == 0 && t % 9 == 4 {
                    e = 100.0 * (1.0 - 0.01 * ((t / 9) % 3) as f64); // tied depths
                }
                eq.push(e);
                gross.push(match (u() * 5.0) as u32 {
                    0 => 0.0,
                    1 => 5e-324,
                    _ => e.abs() * u(),
                });
            }
            let ts: Vec<i64> = (0..n as i64).map(|t| t * DAY_US + t * t).collect();
            let opts = MetricsOptions {
                periods_per_year: Some(252.0),
                ..MetricsOptions::default()
            };
            let exposure = super::super::exec::gross_fraction(&gross, &eq);
            let via_series =
                metrics_of_stats(100.0, &ts, &eq, &eq, &trades, Some(&exposure), 0.0, &opts);
            let fused = metrics_in(
                100.0,
                &ts,
                &eq,
                &eq,
                &trades,
                ExposureStats::of_gross(&gross, &eq),
                0.0,
                &opts,
                &mut vec![7.0; 3],
            );
            assert_eq!(
                serde_json::to_string(&via_series).unwrap(),
                serde_json::to_string(&fused).unwrap(),
                "case {case}"
            );
            let bits = |v: Vec<Option<f64>>| {
                v.into_iter()
                    .map(|x| x.map(f64::to_bits))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                bits(trade_fields(&fused)),
                bits(trade_fields_reference(&trades)),
                "case {case}"
            );
            // The exposure loop it replaced.
            let (inside, max) = if exposure.is_empty() {
                (None, None)
            } else {
                let nonzero = exposure.iter().filter(|&&v| v != 0.0).count();
                let max = exposure
                    .iter()
                    .copied()
                    .filter(|v| v.is_finite())
                    .reduce(f64::max);
                (Some(nonzero as f64 / exposure.len() as f64), max)
            };
            assert_eq!(
                (
                    fused.exposure.map(f64::to_bits),
                    fused.max_gross_exposure.map(f64::to_bits)
                ),
                (inside.map(f64::to_bits), max.map(f64::to_bits)),
                "case {case}"
            );
            let (new, old) = (
                drawdowns(100.0, &ts, &eq),
                drawdowns_reference(100.0, &ts, &eq),
            );
            assert_eq!(
                [new.max, new.avg, new.max_days, new.avg_bars, new.avg_days].map(f64::to_bits),
                [old.max, old.avg, old.max_days, old.avg_bars, old.avg_days].map(f64::to_bits),
                "case {case}"
            );
            assert_eq!(new.max_bars, old.max_bars, "case {case}");
            assert_eq!(
                serde_json::to_string(&new.worst).unwrap(),
                serde_json::to_string(&old.worst).unwrap(),
                "case {case}"
            );
        }
    }

    #[test]
    fn skew_and_kurtosis_match_pandas() {
        // pandas: Series([0.01, -0.02, 0.03, -0.01, 0.02]).skew() / .kurt()
        let v = [0.01, -0.02, 0.03, -0.01, 0.02];
        let m = mean(&v).unwrap();
        let (s, k) = moments(v.len(), central_sums(&v, m), std(&v).unwrap());
        assert!((s.unwrap() - -0.23551393640880602).abs() < 1e-12, "{s:?}");
        assert!((k.unwrap() - -1.9632233639805297).abs() < 1e-12, "{k:?}");
    }

    #[test]
    fn streaks_follow_exit_order() {
        let t = |pnl: f64, exit: i64| TradeStat {
            ret: pnl,
            pnl,
            bars_held: 1,
            entry_ts: 0,
            exit_ts: Some(exit),
            open: false,
        };
        let a = [t(1.0, 1), t(1.0, 5), t(-1.0, 6)];
        let b = [t(1.0, 2), t(-1.0, 3), t(-1.0, 4), t(0.0, 7)];
        let all: Vec<TradeStat> = a.iter().chain(&b).copied().collect();
        // Exit order: +1 +1 −1 −1 +1 −1 0 → 2 wins, 2 losses in a row,
        // counted per exit bar or sorted (an exit off the bars).
        let bars: Vec<i64> = (0..9).collect();
        assert_eq!(streaks(&all, &bars), (2, 2));
        assert_eq!(streaks(&all, &[1, 2, 3]), (2, 2));
        assert_eq!(streaks(&all, &[]), (2, 2));
    }

    /// The order by exit bar is the stable sort's: random ledgers of
    /// symbols one after the other, ties on a bar, open trades, duplicate
    /// and unsorted timestamps, exits off the bars.
    #[test]
    fn exit_bar_order_is_the_stable_sort() {
        let mut rng = crate::synthetic::SplitMix64::new(7);
        for case in 0..300 {
            let bars = 1 + (rng.next_u64() % 40) as usize;
            let mut ts: Vec<i64> = (0..bars as i64).map(|i| 10 * i).collect();
            if case % 7 == 0 && bars > 2 {
                ts[1] = ts[2]; // duplicate
            }
            if case % 11 == 0 && bars > 2 {
                ts.swap(0, 2); // unsorted
            }
            let trades: Vec<TradeStat> = (0..rng.next_u64() % 60)
                .map(|_| {
                    let exit = 10 * (rng.next_u64() % bars as u64) as i64
                        + if rng.next_u64().is_multiple_of(50) {
                            5
                        } else {
                            0
                        };
                    TradeStat {
                        ret: 0.0,
                        pnl: (rng.next_u64() % 3) as f64 - 1.0,
                        bars_held: 1,
                        entry_ts: 0,
                        exit_ts: Some(exit),
                        open: rng.next_u64().is_multiple_of(10),
                    }
                })
                .collect();
            let closed = || trades.iter().filter(|t| !t.open);
            let mut sorted: Vec<(Option<i64>, f64)> =
                closed().map(|t| (t.exit_ts, t.pnl)).collect();
            sorted.sort_by_key(|&(x, _)| x);
            let want: Vec<u64> = sorted.iter().map(|&(_, p)| p.to_bits()).collect();
            if let Some(got) = in_exit_bar_order(closed(), &ts) {
                let got: Vec<u64> = got.iter().map(|p| p.to_bits()).collect();
                assert_eq!(got, want, "case {case}");
            } else {
                let on_bars = closed().all(|t| ts.contains(&t.exit_ts.unwrap_or(-1)));
                assert!(
                    !ts.is_sorted() || !on_bars,
                    "case {case}: fell back needlessly"
                );
            }
            let in_order = streaks_in_order(sorted.iter().map(|&(_, p)| p));
            assert_eq!(streaks(&trades, &ts), in_order, "case {case}");
        }
    }

    #[test]
    fn empty_curve_reports_initial() {
        let m = metrics(100.0, &[], &[], &[], &[], None, 0.0);
        assert_eq!((m.bars, m.final_equity, m.total_return), (0, 100.0, 0.0));
        assert_eq!((m.sharpe, m.cagr, m.exposure), (None, None, None));
        assert_eq!((m.start, m.annual_return, m.var_95), (None, None, None));
        assert!(m.worst_drawdowns.is_empty() && m.yearly_returns.is_empty());
    }
}
