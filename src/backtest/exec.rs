//! Execution: direction → target position → fills at the next open →
//! equity marked at every close, for one symbol.
//!
//! # Event order (why there is no look-ahead)
//!
//! For every window bar `i`, in this order:
//!
//! 1. **Open of bar `i`.** The target sign is decided from `dir[i−1]`, which
//!    was known at the close of bar `i−1` (long-only: `max(dir, 0)`). If it
//!    differs from the sign held, the position is closed and/or opened at
//!    this open. The first window bar uses the last warm-up bar's `dir`; with
//!    no warm-up (`window.start == 0`) nothing is held at bar 0.
//! 2. **Close of bar `i`.** Equity is marked: `cash + units·close[i]`.
//!
//! Bar `i` reads only `dir[i−1]`, `open[i]` and `close[i]` (and, with
//! stops, `high[i]` and `low[i]`), so changing any later bar cannot change
//! anything up to bar `i` (tested).
//!
//! # Fills, fees, sizing
//!
//! * Buy price `open·(1+slippage)`, sell price `open·(1−slippage)`.
//! * Fee `fee·|qty·fill price|`, paid from cash.
//! * Full-equity sizing as vectorbt (`size=inf`) and backtesting.py do it:
//!   the fee fits inside the cash. An entry trades the notional
//!   `N = E / (1 + fee)`, i.e. `qty = E / (fill price·(1 + fee))`, where `E`
//!   is the cash available at that open after any close at the same open
//!   (so a flip long → short is two ledger trades and pays fees on both
//!   notionals, and the new position is sized from the equity left after
//!   the first trade's costs). A long entry leaves no cash (`E − N − fee·N
//!   = 0`); a short entry adds its proceeds `N` and pays `fee·N`, so in both
//!   cases the equity right after the entry is `E − fee·N`: the fee comes
//!   out of equity, never on top of it.
//! * While the target sign does not change the position is held as is
//!   (no rebalancing), as in backtesting.py.
//! * A short sale adds its proceeds to cash; equity is still
//!   `cash + units·close` with `units < 0`.
//!
//! # End of data
//!
//! When the symbol's data ends inside the run's window (`data_ends`: a
//! delisted symbol, or one whose file simply stops earlier than the
//! others'), a position held at its last bar is closed at that bar's close
//! (`close·(1∓slippage)`, fee as any fill); the sub-account then holds
//! cash, so it no longer counts as exposure and its trade is closed
//! ([`ExitReason::EndOfData`]). A position held at the end of the window
//! stays open ([`ExitReason::EndOfWindow`]), marked to the last close.
//!
//! # Stops
//!
//! [`Stops`] (none by default) adds three exits, each a fraction of the
//! entry fill price `e` (the CLI, the strategy file and Python take
//! percent):
//!
//! | stop | long exits when | short exits when | reason |
//! |------|-----------------|------------------|--------|
//! | `stop_loss = s` | low ≤ `e·(1−s)` | high ≥ `e·(1+s)` | [`ExitReason::StopLoss`] |
//! | `take_profit = p` | high ≥ `e·(1+p)` | low ≤ `e·(1−p)` | [`ExitReason::TakeProfit`] |
//! | `trailing_stop = t` | low ≤ `peak·(1−t)` | high ≥ `trough·(1+t)` | [`ExitReason::TrailingStop`] |
//!
//! Between steps 1 and 2 above, a position held after the open of bar `i`
//! is checked against bar `i`'s range, from its entry bar on (the entry
//! fills at the open, so that bar's whole range comes after the fill):
//!
//! * The stop level is the nearer of the stop-loss and trailing levels
//!   (for a long the higher one; the trailing one wins a tie only when
//!   strictly nearer). `peak` is the highest of the entry price and the
//!   highs of the bars since the entry *before* bar `i` (`trough`: the
//!   lowest low); bar `i`'s own extreme updates it only after bar `i` was
//!   checked, because the order of the high and the low inside a bar is
//!   unknown.
//! * If the open is already through a level (a gap), the exit fills at
//!   the open: the stop first, else the target. Otherwise, if the bar's
//!   range reaches the stop level, the exit fills at that level, else at
//!   the target level if the range reaches it. When both lie inside one
//!   bar the stop is taken (conservative: the order is unknown).
//! * The bar's range is `[min(low, open, close), max(high, open, close)]`:
//!   the store keeps bars whose open or close lies outside `[low, high]`
//!   (with a warning), and the bar did trade at its open and close.
//! * The exit fills at the level (or the open)·(1∓slippage) against the
//!   side and pays the fee, as any fill. `exit_ts` is bar `i`'s timestamp;
//!   `bars_held` counts bar `i` (`i + 1 − entry_bar`), as an exit at a
//!   close does. The account is flat at bar `i`'s close.
//! * After a stop exit the symbol re-enters only when its target sign
//!   changes (a new signal): while the target stays the stopped side it is
//!   treated as flat.
//! * Stops are checked after the open's liquidation check and before the
//!   close's end-of-data exit; a position closed by a stop is not closed
//!   again there.
//!
//! Without stops `high` and `low` are not read (nor checked), and every
//! result is the same as before stops existed.
//!
//! # Ruin
//!
//! A short can lose more than the sub-account's equity. If at an open the
//! equity `cash + units·open` is ≤ 0, the position is closed there (forced
//! liquidation, [`ExitReason::Liquidation`]) and the sub-account is
//! *ruined*: it stays flat for the rest of the window, and its equity
//! (possibly negative) is carried unchanged. An entry is also skipped (and
//! the account ruined) if the cash left after a close is ≤ 0. Equity is
//! never capped, so the numbers stay honest, and every value stays finite.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::BacktestError;
use super::trade::{ExitReason, Side, Trade};

/// Which directions may be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "String")]
pub enum Mode {
    /// Hold `max(dir, 0)`: long or flat. The default, because most users
    /// cannot short what they backtest.
    #[default]
    LongOnly,
    /// Hold `dir` itself: long, flat or short.
    LongShort,
}

impl Mode {
    /// The target sign for the next bar from a direction value.
    pub fn target(self, dir: i8) -> i8 {
        match self {
            Mode::LongOnly => dir.max(0),
            Mode::LongShort => dir,
        }
    }

    /// The CLI/JSON spelling (`long-only`, `long-short`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::LongOnly => "long-only",
            Mode::LongShort => "long-short",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for Mode {
    type Error = BacktestError;

    /// As [`FromStr`]: strategy files take any letter case too.
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for Mode {
    type Err = BacktestError;

    /// Accepts `long-only` / `long-short` (any letter case, `_` for `-`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "long-only" => Ok(Mode::LongOnly),
            "long-short" => Ok(Mode::LongShort),
            _ => Err(BacktestError::BadMode {
                value: s.to_string(),
            }),
        }
    }
}

/// Stop and target levels as fractions of the entry fill price (0.05 =
/// 5%); `None` = not used. See the module docs, *Stops*.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stops {
    /// Exit a long at `entry·(1−s)`, a short at `entry·(1+s)`; in `(0, 1)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_loss: Option<f64>,
    /// Exit a long at `entry·(1+p)`, a short at `entry·(1−p)`; finite and
    /// `> 0` (a short's target at `p ≥ 1` is never reached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub take_profit: Option<f64>,
    /// Exit a long at `peak·(1−t)`, a short at `trough·(1+t)`; in `(0, 1)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trailing_stop: Option<f64>,
}

impl Stops {
    /// `true` when no stop is set (the serialized form then omits them).
    pub fn is_none(&self) -> bool {
        self.stop_loss.is_none() && self.take_profit.is_none() && self.trailing_stop.is_none()
    }

    /// Checks the ranges of the levels that are set.
    pub fn validate(&self) -> Result<(), BacktestError> {
        let unit = "a fraction in (0, 1) of the entry fill price, e.g. 0.05 for 5%";
        for (name, value, range) in [
            ("stop_loss", self.stop_loss, unit),
            (
                "take_profit",
                self.take_profit,
                "a fraction > 0 of the entry fill price, e.g. 0.1 for 10%",
            ),
            ("trailing_stop", self.trailing_stop, unit),
        ] {
            let Some(v) = value else { continue };
            let ok = v.is_finite() && v > 0.0 && (name == "take_profit" || v < 1.0);
            if !ok {
                return Err(BacktestError::BadConfig {
                    name,
                    value: v,
                    range,
                });
            }
        }
        Ok(())
    }
}

/// Trading costs, the mode and the stops.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecConfig {
    /// Long-only (default) or long-short.
    pub mode: Mode,
    /// Fee as a fraction of traded notional (0.0005 = 5 bp), in `[0, 1)`.
    pub fee: f64,
    /// Slippage as a fraction of the open price, in `[0, 1)`.
    pub slippage: f64,
    /// Stop-loss, take-profit and trailing stop (none by default; left
    /// out of the serialized form when none is set).
    #[serde(skip_serializing_if = "Stops::is_none")]
    pub stops: Stops,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            mode: Mode::LongOnly,
            fee: 0.0005,
            slippage: 0.0,
            stops: Stops::default(),
        }
    }
}

impl ExecConfig {
    /// Checks that fee and slippage are finite and in `[0, 1)`, and the
    /// stops' ranges ([`Stops::validate`]).
    pub fn validate(&self) -> Result<(), BacktestError> {
        for (name, value) in [("fee", self.fee), ("slippage", self.slippage)] {
            if !(value.is_finite() && (0.0..1.0).contains(&value)) {
                return Err(BacktestError::BadConfig {
                    name,
                    value,
                    range: "a fraction in [0, 1), e.g. 0.0005 for 5 bp",
                });
            }
        }
        self.stops.validate()
    }
}

/// One symbol's bars, columnar, borrowed from the data store.
#[derive(Debug, Clone, Copy)]
pub struct Bars<'a> {
    /// Bar timestamps, µs since the Unix epoch, UTC, strictly increasing.
    pub ts: &'a [i64],
    /// Open prices (fills happen here).
    pub open: &'a [f64],
    /// High prices: read (and checked finite and > 0) only with stops.
    pub high: &'a [f64],
    /// Low prices: read (and checked finite and > 0) only with stops.
    pub low: &'a [f64],
    /// Close prices (equity is marked here; the engine ran on these).
    pub close: &'a [f64],
}

/// The result of simulating one symbol over its window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SymbolRun {
    /// The symbol.
    pub symbol: String,
    /// Starting capital of this sub-account.
    pub capital: f64,
    /// Timestamps of the window bars.
    pub ts: Vec<i64>,
    /// Equity marked at each window close: `cash + units·close`.
    pub equity: Vec<f64>,
    /// Units held at each close, signed (negative = short).
    pub position: Vec<f64>,
    /// Gross exposure at each close in currency: `|units·close|`.
    pub gross: Vec<f64>,
    /// Buy & hold equity: `capital / open[first window bar]` units bought
    /// without fees or slippage, marked at each close.
    pub benchmark: Vec<f64>,
    /// The trade ledger in entry order; an open trade (if any) comes last.
    pub trades: Vec<Trade>,
    /// Every fee paid in the window (entries and exits).
    pub total_fees: f64,
}

impl SymbolRun {
    /// Gross exposure as a fraction of equity at each close,
    /// `|units·close| / equity`: the `exposure` argument of
    /// [`metrics`](super::metrics). Where equity is ≤ 0 while a position is
    /// held the fraction is undefined and written as `+∞` (counted as "in the
    /// market", skipped by `max_gross_exposure`).
    pub fn exposure(&self) -> Vec<f64> {
        gross_fraction(&self.gross, &self.equity)
    }

    /// This symbol's buy & hold as a [`Curve`](super::Curve) (fully
    /// invested: gross = equity), for
    /// [`benchmark_metrics`](super::benchmark_metrics).
    pub fn benchmark_curve(&self) -> super::Curve {
        super::Curve {
            ts: self.ts.clone(),
            equity: self.benchmark.clone(),
            gross: self.benchmark.iter().map(|b| b.abs()).collect(),
        }
    }

    /// All metrics of this symbol against its own buy & hold, with default
    /// options (periods per year inferred in UTC, no risk-free rate).
    pub fn metrics(&self) -> super::Metrics {
        self.metrics_with(&super::MetricsOptions::default())
    }

    /// All metrics of this symbol against its own buy & hold, with `opts`.
    pub fn metrics_with(&self, opts: &super::MetricsOptions) -> super::Metrics {
        let stats: Vec<super::TradeStat> = self.trades.iter().map(super::TradeStat::of).collect();
        self.metrics_of_stats(&stats, &mut Vec::new(), opts)
    }

    /// [`SymbolRun::metrics_with`] from this run's trade statistics
    /// `stats` (its trades' [`TradeStat`](super::TradeStat)s, in order),
    /// with `scratch` as working memory (its content is overwritten): a
    /// sweep keeps the statistics for its portfolio anyway and reuses the
    /// buffer. The exposure statistics are taken from `gross` and `equity`
    /// directly, as [`SymbolRun::exposure`] would give them, without the
    /// series.
    pub fn metrics_of_stats(
        &self,
        stats: &[super::TradeStat],
        scratch: &mut Vec<f64>,
        opts: &super::MetricsOptions,
    ) -> super::Metrics {
        super::metrics::metrics_in(
            self.capital,
            &self.ts,
            &self.equity,
            &self.benchmark,
            stats,
            super::metrics::ExposureStats::of_gross(&self.gross, &self.equity),
            self.total_fees,
            opts,
            scratch,
        )
    }
}

/// `gross / equity` per bar; 0 when flat, `+∞` when exposed with equity ≤ 0.
pub(crate) fn gross_fraction(gross: &[f64], equity: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    gross_fraction_into(gross, equity, &mut out);
    out
}

/// [`gross_fraction`] into `out` (cleared first).
fn gross_fraction_into(gross: &[f64], equity: &[f64], out: &mut Vec<f64>) {
    out.clear();
    out.extend(gross.iter().zip(equity).map(|(&g, &e)| fraction(g, e)));
}

/// One bar of [`gross_fraction`].
#[inline]
pub(super) fn fraction(g: f64, e: f64) -> f64 {
    if g == 0.0 {
        0.0
    } else if e > 0.0 {
        g / e
    } else {
        f64::INFINITY
    }
}

/// A position being held (a lot, in the shared book).
#[derive(Debug, Clone)]
pub(super) struct Holding {
    pub(super) side: Side,
    pub(super) entry_bar: usize,
    pub(super) entry_price: f64,
    pub(super) qty: f64,
    pub(super) entry_fee: f64,
    /// Long: the highest of the entry price and the highs of the bars
    /// since the entry before the current one; short: the lowest low.
    pub(super) extreme: f64,
}

/// The checks of [`simulate`] that do not read the direction's values, in
/// its order (`dir_len`: the direction's length).
pub(super) fn validate_inputs(
    symbol: &str,
    bars: &Bars<'_>,
    dir_len: usize,
    window: &Range<usize>,
    capital: f64,
    cfg: &ExecConfig,
) -> Result<(), BacktestError> {
    let n = bars.ts.len();
    for (what, got) in [
        ("open", bars.open.len()),
        ("high", bars.high.len()),
        ("low", bars.low.len()),
        ("close", bars.close.len()),
        ("dir", dir_len),
    ] {
        if got != n {
            return Err(BacktestError::LengthMismatch {
                symbol: symbol.to_string(),
                what,
                expected: n,
                got,
            });
        }
    }
    if window.end > n {
        return Err(BacktestError::WindowOutOfRange {
            symbol: symbol.to_string(),
            start: window.start,
            end: window.end,
            len: n,
        });
    }
    if window.is_empty() {
        return Err(BacktestError::EmptyWindow {
            symbol: symbol.to_string(),
            start: window.start,
            end: window.end,
        });
    }
    if !(capital.is_finite() && capital > 0.0) {
        return Err(BacktestError::BadCapital { value: capital });
    }
    cfg.validate()?;
    let stops = !cfg.stops.is_none();
    // A branch-free test of the whole window first (it vectorises); the
    // loop below, which finds the first bad bar in its order, only when
    // it fails.
    let good = |v: &[f64]| {
        v.iter()
            .fold(true, |ok, &x| ok & (x > 0.0) & (x < f64::INFINITY))
    };
    let w = window.clone();
    let prices_ok = good(&bars.open[w.clone()])
        && good(&bars.close[w.clone()])
        && (!stops || (good(&bars.high[w.clone()]) && good(&bars.low[w.clone()])));
    let sorted = bars.ts[w].windows(2).fold(true, |ok, p| ok & (p[1] > p[0]));
    if prices_ok && sorted {
        return Ok(());
    }
    for i in window.clone() {
        let ohlc = [
            ("open", bars.open[i]),
            ("close", bars.close[i]),
            ("high", bars.high[i]),
            ("low", bars.low[i]),
        ];
        // high and low are read only with stops.
        for &(field, value) in &ohlc[..if stops { 4 } else { 2 }] {
            if !(value.is_finite() && value > 0.0) {
                return Err(BacktestError::BadPrice {
                    symbol: symbol.to_string(),
                    field,
                    bar: i,
                    ts: bars.ts[i],
                    value,
                });
            }
        }
        if i > window.start && bars.ts[i] <= bars.ts[i - 1] {
            return Err(BacktestError::UnsortedTs {
                symbol: symbol.to_string(),
                bar: i,
                ts: bars.ts[i],
                prev: bars.ts[i - 1],
            });
        }
    }
    Ok(())
}

/// The last check of [`simulate`]: the direction values it reads.
pub(super) fn validate_dir(
    symbol: &str,
    dir: &[i8],
    window: &Range<usize>,
) -> Result<(), BacktestError> {
    // Only dir[start-1 .. end-1] is read; the last bar's dir would fill after the window.
    let first_read = window.start.saturating_sub(1);
    // A branch-free test of the whole range first (it vectorises; a sweep
    // checks every combination's direction), the bar only on failure.
    let read = dir
        .get(first_read..window.end.min(dir.len()))
        .unwrap_or(&[]);
    if read.iter().fold(true, |ok, &d| ok & (-1..=1).contains(&d)) {
        return Ok(());
    }
    for (i, &d) in dir.iter().enumerate().take(window.end).skip(first_read) {
        if !(-1..=1).contains(&d) {
            return Err(BacktestError::BadDirection {
                symbol: symbol.to_string(),
                bar: i,
                value: d,
            });
        }
    }
    Ok(())
}

/// Simulates one symbol; see the module docs for the event order, fills,
/// sizing, end-of-data and ruin rules.
///
/// `bars` and `dir` are the full series the engine saw (warm-up + window,
/// same length); `window` is the index range of traded and measured bars.
/// Bars outside the window are not read, except `dir[window.start − 1]`
/// (the decision for the first window open) when `window.start > 0`.
/// `data_ends`: the symbol's data ends at the window's last bar while the
/// run goes on (a position held there is closed at its close).
pub fn simulate(
    symbol: &str,
    bars: Bars<'_>,
    dir: &[i8],
    window: Range<usize>,
    capital: f64,
    cfg: &ExecConfig,
    data_ends: bool,
) -> Result<SymbolRun, BacktestError> {
    let inputs = CheckedInputs::new(symbol, bars, dir.len(), window, capital, cfg, data_ends)?;
    let mut run = SymbolRun::default();
    simulate_checked_into(&mut run, &inputs, dir)?;
    Ok(run)
}

/// The inputs of [`simulate`] other than the direction, checked once: a
/// sweep simulates the same bars, window, capital and costs once per
/// combination ([`simulate_checked_into`]).
#[derive(Debug, Clone)]
pub struct CheckedInputs<'a> {
    symbol: &'a str,
    bars: Bars<'a>,
    window: Range<usize>,
    capital: f64,
    cfg: ExecConfig,
    data_ends: bool,
}

impl<'a> CheckedInputs<'a> {
    /// Runs the checks of [`simulate`] that do not read the direction's
    /// values, in its order (`dir_len`: the length of the directions that
    /// will be simulated): the same error `simulate` would return first.
    pub fn new(
        symbol: &'a str,
        bars: Bars<'a>,
        dir_len: usize,
        window: Range<usize>,
        capital: f64,
        cfg: &ExecConfig,
        data_ends: bool,
    ) -> Result<CheckedInputs<'a>, BacktestError> {
        validate_inputs(symbol, &bars, dir_len, &window, capital, cfg)?;
        Ok(CheckedInputs {
            symbol,
            bars,
            window,
            capital,
            cfg: *cfg,
            data_ends,
        })
    }
}

/// [`simulate`] on checked inputs, into `run` (its vectors' memory is
/// reused; it is overwritten entirely, and on an error its content is
/// unspecified). Only the direction is checked (its length, then its
/// values), so the result and any error are those of [`simulate`] with
/// the same arguments.
pub fn simulate_checked_into(
    run: &mut SymbolRun,
    inputs: &CheckedInputs<'_>,
    dir: &[i8],
) -> Result<(), BacktestError> {
    let CheckedInputs {
        symbol,
        bars,
        ref window,
        capital,
        ref cfg,
        data_ends,
    } = *inputs;
    let window = window.clone();
    if dir.len() != bars.ts.len() {
        return Err(BacktestError::LengthMismatch {
            symbol: symbol.to_string(),
            what: "dir",
            expected: bars.ts.len(),
            got: dir.len(),
        });
    }
    validate_dir(symbol, dir, &window)?;
    let len = window.len();
    run.symbol.clear();
    run.symbol.push_str(symbol);
    run.capital = capital;
    run.ts.clear();
    run.ts.extend_from_slice(&bars.ts[window.clone()]);
    // The per-bar series as locals for the loop (no call inside it can
    // reach them, so their lengths stay in registers), put back after.
    let mut equity = std::mem::take(&mut run.equity);
    let mut position = std::mem::take(&mut run.position);
    let mut gross = std::mem::take(&mut run.gross);
    let mut benchmark = std::mem::take(&mut run.benchmark);
    for v in [&mut equity, &mut position, &mut gross, &mut benchmark] {
        v.clear();
        v.reserve(len);
    }
    // Trades overwrite the previous run's in place (a sweep simulates each
    // symbol once per combination); the rest are cut at the end.
    let mut trades = Ledger {
        trades: &mut run.trades,
        used: 0,
        name: None,
    };
    let mut total_fees = 0.0;
    let run_ts = (&run.ts[..], window.start);
    let bench_units = capital / bars.open[window.start];
    let mut cash = capital;
    let mut held: Option<Holding> = None;
    let mut ruined = false;
    let stops = !cfg.stops.is_none();
    // The target sign a stop exited; treated as flat until the target changes.
    let mut stopped: i8 = 0;

    for i in window.clone() {
        let open = bars.open[i];
        let close = bars.close[i];
        // Decided at the close of bar i-1; nothing is held at bar 0 without warm-up.
        let mut target = if i == 0 {
            0
        } else {
            cfg.mode.target(dir[i - 1])
        };
        let mut reason = ExitReason::Signal;
        if let Some(h) = &held {
            if cash + h.side.sign() * h.qty * open <= 0.0 {
                ruined = true; // equity at this open is <= 0: forced liquidation
                reason = ExitReason::Liquidation;
            }
        }
        if ruined {
            target = 0;
        }
        if stopped != 0 {
            if target == stopped {
                target = 0;
            } else {
                stopped = 0;
            }
        }
        let held_sign = held.as_ref().map_or(0, |h| h.side.sign() as i8);
        if held_sign != target {
            if let Some(h) = held.take() {
                let exit = (i, i, reason);
                cash += close_position(
                    &mut trades,
                    run_ts,
                    &mut total_fees,
                    symbol,
                    &h,
                    open,
                    cfg,
                    exit,
                );
            }
            if target != 0 {
                if cash > 0.0 {
                    let side = if target > 0 { Side::Long } else { Side::Short };
                    let price = match side {
                        Side::Long => open * (1.0 + cfg.slippage),
                        Side::Short => open * (1.0 - cfg.slippage),
                    };
                    // The fee fits inside the cash: notional·(1 + fee) = cash.
                    let notional = cash / (1.0 + cfg.fee);
                    let fee = cfg.fee * notional;
                    cash -= side.sign() * notional + fee;
                    total_fees += fee;
                    held = Some(Holding {
                        side,
                        entry_bar: i,
                        entry_price: price,
                        qty: notional / price,
                        entry_fee: fee,
                        extreme: price,
                    });
                } else {
                    ruined = true;
                }
            }
        }
        if stops {
            let range = (
                bars.low[i].min(open).min(close),
                bars.high[i].max(open).max(close),
            );
            let hit = held
                .as_ref()
                .and_then(|h| stop_exit(h, &cfg.stops, open, range));
            if let Some((quote, why)) = hit {
                if let Some(h) = held.take() {
                    let exit = (i, i + 1, why);
                    cash += close_position(
                        &mut trades,
                        run_ts,
                        &mut total_fees,
                        symbol,
                        &h,
                        quote,
                        cfg,
                        exit,
                    );
                    stopped = h.side.sign() as i8;
                }
            } else if let Some(h) = &mut held {
                // This bar's extreme counts from the next bar on.
                h.extreme = match h.side {
                    Side::Long => h.extreme.max(range.1),
                    Side::Short => h.extreme.min(range.0),
                };
            }
        }
        if data_ends && i + 1 == window.end {
            // The symbol's data ends here: close at this bar's close.
            if let Some(h) = held.take() {
                let exit = (i, i + 1, ExitReason::EndOfData);
                cash += close_position(
                    &mut trades,
                    run_ts,
                    &mut total_fees,
                    symbol,
                    &h,
                    close,
                    cfg,
                    exit,
                );
            }
        }
        let units = held.as_ref().map_or(0.0, |h| h.side.sign() * h.qty);
        equity.push(cash + units * close);
        position.push(units);
        gross.push((units * close).abs());
        benchmark.push(bench_units * close);
    }

    if let Some(h) = held {
        let last = window.end - 1;
        let price = bars.close[last];
        let exit = (last, last + 1, ExitReason::EndOfWindow);
        let t = trades.record(symbol, &h, run_ts, exit, price, 0.0);
        t.exit_ts = None;
        t.open = true;
    }
    let used = trades.used;
    run.trades.truncate(used);
    run.total_fees = total_fees;
    run.equity = equity;
    run.position = position;
    run.gross = gross;
    run.benchmark = benchmark;
    Ok(())
}

/// The stop exit of `h` inside a bar with this `open` and price `range`
/// (low, high), if any: the price it fills at before slippage and the
/// reason (module docs, *Stops*). Gaps through a level fill at the open;
/// a stop and a target both inside the range: the stop.
pub(super) fn stop_exit(
    h: &Holding,
    stops: &Stops,
    open: f64,
    (low, high): (f64, f64),
) -> Option<(f64, ExitReason)> {
    let e = h.entry_price;
    // (level, reason) of the nearest stop, and the target level.
    let (stop, target) = match h.side {
        Side::Long => {
            let sl = stops
                .stop_loss
                .map(|s| (e * (1.0 - s), ExitReason::StopLoss));
            let tr = stops
                .trailing_stop
                .map(|t| (h.extreme * (1.0 - t), ExitReason::TrailingStop));
            let stop = match (sl, tr) {
                (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
                (a, b) => a.or(b),
            };
            (stop, stops.take_profit.map(|p| e * (1.0 + p)))
        }
        Side::Short => {
            let sl = stops
                .stop_loss
                .map(|s| (e * (1.0 + s), ExitReason::StopLoss));
            let tr = stops
                .trailing_stop
                .map(|t| (h.extreme * (1.0 + t), ExitReason::TrailingStop));
            let stop = match (sl, tr) {
                (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
                (a, b) => a.or(b),
            };
            (stop, stops.take_profit.map(|p| e * (1.0 - p)))
        }
    };
    // Whether price x is at or past a level against / for the position.
    let long = h.side == Side::Long;
    let adverse = |x: f64, level: f64| if long { x <= level } else { x >= level };
    let favourable = |x: f64, level: f64| if long { x >= level } else { x <= level };
    let (worst, best) = if long { (low, high) } else { (high, low) };
    if let Some((level, why)) = stop {
        if adverse(open, level) {
            return Some((open, why));
        }
    }
    if let Some(level) = target {
        if favourable(open, level) {
            return Some((open, ExitReason::TakeProfit));
        }
    }
    if let Some((level, why)) = stop {
        if adverse(worst, level) {
            return Some((level, why));
        }
    }
    match target {
        Some(level) if favourable(best, level) => Some((level, ExitReason::TakeProfit)),
        _ => None,
    }
}

/// Closes `h` at `quote` (an open, or the last close when the data ends):
/// filled at `quote·(1∓slippage)` against the side, the fee `fee·notional`
/// added to `total_fees`; records the trade in `ledger` (`ts`: the
/// window's timestamps and its first bar; `exit`: exit bar, bars held to,
/// reason) and returns what the close adds to the cash.
#[allow(clippy::too_many_arguments)]
fn close_position(
    ledger: &mut Ledger<'_>,
    ts: (&[i64], usize),
    total_fees: &mut f64,
    symbol: &str,
    h: &Holding,
    quote: f64,
    cfg: &ExecConfig,
    exit: (usize, usize, ExitReason),
) -> f64 {
    let price = match h.side {
        Side::Long => quote * (1.0 - cfg.slippage),
        Side::Short => quote * (1.0 + cfg.slippage),
    };
    let notional = h.qty * price;
    let exit_fee = cfg.fee * notional;
    *total_fees += exit_fee;
    ledger.record(symbol, h, ts, exit, price, exit_fee);
    h.side.sign() * notional - exit_fee
}

/// A trade vector being overwritten from its start: `trades[..used]` are
/// this simulation's, the rest the previous one's (cut when done).
struct Ledger<'a> {
    trades: &'a mut Vec<Trade>,
    used: usize,
    /// The symbol's name, shared by its trades (made at the first trade,
    /// or the previous run's when it was the same symbol's).
    name: Option<Arc<str>>,
}

impl Ledger<'_> {
    /// Appends [`make_trade`]'s trade, into the next old slot when there
    /// is one (reusing its symbol's memory); returns it.
    fn record(
        &mut self,
        symbol: &str,
        h: &Holding,
        ts: (&[i64], usize),
        exit: (usize, usize, ExitReason),
        exit_price: f64,
        exit_fee: f64,
    ) -> &mut Trade {
        let k = self.used;
        self.used += 1;
        let trades = &*self.trades;
        let name = self
            .name
            .get_or_insert_with(|| match trades.first() {
                Some(t) if &*t.symbol == symbol => t.symbol.clone(),
                _ => Arc::from(symbol),
            })
            .clone();
        if k < self.trades.len() {
            self.trades[k] = trade_named(name, h, ts, exit, exit_price, exit_fee);
        } else {
            let t = trade_named(name, h, ts, exit, exit_price, exit_fee);
            self.trades.push(t);
        }
        &mut self.trades[k]
    }
}

/// Builds the ledger entry for `h` exited at bar `exit_bar` (or marked
/// there); `held_to` is the bar index its `bars_held` counts up to
/// (`exit_bar` for an exit at an open, `exit_bar + 1` at a close). `ts`
/// holds the window's timestamps, which start at bar `start`.
pub(super) fn make_trade(
    symbol: &str,
    h: &Holding,
    (ts, start): (&[i64], usize),
    (exit_bar, held_to, exit_reason): (usize, usize, ExitReason),
    exit_price: f64,
    exit_fee: f64,
) -> Trade {
    let exit = (exit_bar, held_to, exit_reason);
    trade_named(
        Arc::from(symbol),
        h,
        (ts, start),
        exit,
        exit_price,
        exit_fee,
    )
}

/// [`make_trade`] with the symbol's string given.
fn trade_named(
    symbol: Arc<str>,
    h: &Holding,
    (ts, start): (&[i64], usize),
    (exit_bar, held_to, exit_reason): (usize, usize, ExitReason),
    exit_price: f64,
    exit_fee: f64,
) -> Trade {
    let fees = h.entry_fee + exit_fee;
    let pnl = h.side.sign() * h.qty * (exit_price - h.entry_price) - fees;
    Trade {
        symbol,
        side: h.side,
        entry_ts: ts[h.entry_bar - start],
        entry_price: h.entry_price,
        exit_ts: ts.get(exit_bar - start).copied(),
        exit_price,
        qty: h.qty,
        fees,
        pnl,
        ret: pnl / (h.qty * h.entry_price),
        bars_held: held_to - h.entry_bar,
        open: false,
        exit_reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gross_fraction_is_zero_flat_and_infinite_when_broke() {
        let f = gross_fraction(&[0.0, 50.0, 10.0, 0.0], &[100.0, 100.0, -5.0, -5.0]);
        assert_eq!(f, vec![0.0, 0.5, f64::INFINITY, 0.0]);
    }

    #[test]
    fn mode_targets() {
        assert_eq!(Mode::LongOnly.target(-1), 0);
        assert_eq!(Mode::LongOnly.target(1), 1);
        assert_eq!(Mode::LongShort.target(-1), -1);
    }

    #[test]
    fn equity_exactly_zero_at_an_open_liquidates() {
        // Short 10 units at 10 with cash 200; the open at 20 makes equity 0.
        let ts = [0, 1, 2, 3];
        let open = [10.0, 10.0, 20.0, 5.0];
        let close = [10.0, 15.0, 20.0, 5.0];
        let bars = Bars {
            ts: &ts,
            open: &open,
            close: &close,
            high: &close,
            low: &close,
        };
        let cfg = ExecConfig {
            mode: Mode::LongShort,
            fee: 0.0,
            slippage: 0.0,
            stops: Default::default(),
        };
        let run = simulate("Z", bars, &[-1; 4], 0..4, 100.0, &cfg, false).unwrap();
        assert_eq!(run.equity, vec![100.0, 50.0, 0.0, 0.0]);
        assert_eq!(run.position[2..], [0.0, 0.0]);
        assert_eq!(run.trades[0].exit_reason, ExitReason::Liquidation);
    }

    /// vectorbt `size=inf` / backtesting.py: `qty = cash / (price·(1+fee))`,
    /// so a long entry spends exactly the cash and a short's fee comes out
    /// of equity.
    #[test]
    fn entries_fit_the_fee_inside_the_cash() {
        let ts = [0, 1, 2];
        let open = [10.0, 10.0, 10.0];
        let close = [10.0, 10.0, 10.0];
        let bars = Bars {
            ts: &ts,
            open: &open,
            close: &close,
            high: &close,
            low: &close,
        };
        for (mode, dir) in [(Mode::LongOnly, 1), (Mode::LongShort, -1)] {
            let cfg = ExecConfig {
                mode,
                fee: 0.001,
                slippage: 0.0,
                stops: Default::default(),
            };
            let run = simulate("F", bars, &[dir; 3], 0..3, 1000.0, &cfg, false).unwrap();
            let qty = 1000.0 / (10.0 * 1.001);
            assert!((run.position[1].abs() - qty).abs() < 1e-12);
            // Equity right after the entry: capital − fee, never below it.
            let fee = 0.001 * qty * 10.0;
            assert!((run.equity[1] - (1000.0 - fee)).abs() < 1e-9, "{mode}");
            assert!((run.gross[1] / run.equity[1] - 10.0 * qty / (1000.0 - fee)).abs() < 1e-12);
            assert!(run.gross[1] / run.equity[1] <= 1.0 + 1e-12, "{mode}");
        }
    }

    #[test]
    fn data_ending_early_closes_at_the_last_close() {
        let ts = [0, 1, 2];
        let open = [10.0, 10.0, 12.0];
        let close = [10.0, 11.0, 13.0];
        let bars = Bars {
            ts: &ts,
            open: &open,
            close: &close,
            high: &close,
            low: &close,
        };
        let cfg = ExecConfig {
            fee: 0.001,
            ..ExecConfig::default()
        };
        let run = simulate("D", bars, &[1; 3], 0..3, 1000.0, &cfg, true).unwrap();
        let t = &run.trades[0];
        assert!(!t.open);
        assert_eq!(t.exit_reason, ExitReason::EndOfData);
        assert_eq!((t.exit_ts, t.exit_price, t.bars_held), (Some(2), 13.0, 2));
        assert_eq!((run.position[2], run.gross[2]), (0.0, 0.0));
        // All cash: the sale's proceeds less its fee.
        let cash = t.qty * 13.0 * (1.0 - 0.001);
        assert!((run.equity[2] - cash).abs() < 1e-9);
        assert!((run.equity[2] - (1000.0 + t.pnl)).abs() < 1e-9);
        // Without the end of data the trade stays open at the window's end.
        let open_end = simulate("D", bars, &[1; 3], 0..3, 1000.0, &cfg, false).unwrap();
        assert!(open_end.trades[0].open);
        assert_eq!(open_end.trades[0].exit_reason, ExitReason::EndOfWindow);
        assert_eq!(open_end.trades[0].bars_held, 2);
    }

    /// Simulates hand-built OHLC bars (ts = bar index) with `stops`
    /// (fractions), no fee or slippage unless `costs` says.
    fn ohlc(
        bars: [&[f64]; 4],
        dir: &[i8],
        mode: Mode,
        stops: Stops,
        costs: (f64, f64),
        data_ends: bool,
    ) -> SymbolRun {
        let [open, high, low, close] = bars;
        let ts: Vec<i64> = (0..open.len() as i64).collect();
        let bars = Bars {
            ts: &ts,
            open,
            high,
            low,
            close,
        };
        let cfg = ExecConfig {
            mode,
            fee: costs.0,
            slippage: costs.1,
            stops,
        };
        simulate("S", bars, dir, 0..ts.len(), 1000.0, &cfg, data_ends).unwrap()
    }

    fn sl(s: f64) -> Stops {
        Stops {
            stop_loss: Some(s),
            ..Stops::default()
        }
    }

    fn close_to(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    /// Long from bar 1's open at 100 (10 units), stop 5% at 95; bar 2's
    /// low 94 reaches it: out at 95, equity 950, flat after.
    #[test]
    fn long_stop_loss_hit_inside_the_bar() {
        let o = [100.0, 100.0, 98.0, 95.0, 96.0];
        let h = [101.0, 101.0, 99.0, 97.0, 98.0];
        let l = [99.0, 99.0, 94.0, 93.0, 95.0];
        let c = [100.0, 99.0, 96.0, 96.0, 97.0];
        let run = ohlc(
            [&o, &h, &l, &c],
            &[1; 5],
            Mode::LongOnly,
            sl(0.05),
            (0.0, 0.0),
            false,
        );
        assert_eq!(run.equity, vec![1000.0, 990.0, 950.0, 950.0, 950.0]);
        assert_eq!(run.position, vec![0.0, 10.0, 0.0, 0.0, 0.0]);
        assert_eq!(run.trades.len(), 1);
        let t = &run.trades[0];
        assert_eq!(t.exit_reason, ExitReason::StopLoss);
        assert_eq!((t.entry_ts, t.exit_ts, t.exit_price), (1, Some(2), 95.0));
        assert_eq!((t.pnl, t.bars_held, t.open), (-50.0, 2, false));

        // With fee 10 bp and slippage 20 bp: entry 100·1.002 = 100.2, the
        // level 100.2·0.95 = 95.19, the exit fills at 95.19·0.998.
        let (fee, slip) = (0.001, 0.002);
        let run = ohlc(
            [&o, &h, &l, &c],
            &[1; 5],
            Mode::LongOnly,
            sl(0.05),
            (fee, slip),
            false,
        );
        let t = &run.trades[0];
        let qty = 1000.0 / (1.0 + fee) / 100.2;
        let exit = 95.19 * (1.0 - slip);
        assert!(close_to(t.entry_price, 100.2) && close_to(t.qty, qty));
        assert!(close_to(t.exit_price, exit), "{}", t.exit_price);
        let cash = qty * exit * (1.0 - fee);
        assert!(close_to(run.equity[2], cash), "{} {cash}", run.equity[2]);
        assert!(close_to(t.fees, fee * qty * (100.2 + exit)));
        assert!(close_to(run.total_fees, t.fees));
    }

    /// Short from bar 1 at 100 (10 units, cash 2000), stop 5% at 105;
    /// bar 2's high 107 reaches it: bought back at 105, equity 950.
    #[test]
    fn short_stop_loss_hit_inside_the_bar() {
        let o = [100.0, 100.0, 103.0, 104.0];
        let h = [100.0, 102.0, 107.0, 105.0];
        let l = [100.0, 99.0, 101.0, 103.0];
        let c = [100.0, 101.0, 104.0, 104.0];
        let run = ohlc(
            [&o, &h, &l, &c],
            &[-1; 4],
            Mode::LongShort,
            sl(0.05),
            (0.0, 0.0),
            false,
        );
        assert_eq!(run.equity, vec![1000.0, 990.0, 950.0, 950.0]);
        assert_eq!(run.position, vec![0.0, -10.0, 0.0, 0.0]);
        let t = &run.trades[0];
        assert_eq!((t.side, t.exit_reason), (Side::Short, ExitReason::StopLoss));
        assert_eq!((t.exit_ts, t.exit_price, t.pnl), (Some(2), 105.0, -50.0));
        assert_eq!(run.trades.len(), 1);
    }

    /// Bar 2 opens at 90, below the stop at 95: out at the open, 900.
    /// A short whose bar opens above its stop (105) buys back at that open.
    #[test]
    fn a_gap_through_the_stop_fills_at_the_open() {
        let o = [100.0, 100.0, 90.0, 91.0];
        let h = [100.0, 101.0, 92.0, 92.0];
        let l = [100.0, 99.0, 89.0, 90.0];
        let c = [100.0, 100.0, 91.0, 91.0];
        let run = ohlc(
            [&o, &h, &l, &c],
            &[1; 4],
            Mode::LongOnly,
            sl(0.05),
            (0.0, 0.0),
            false,
        );
        let t = &run.trades[0];
        assert_eq!((t.exit_ts, t.exit_price, t.pnl), (Some(2), 90.0, -100.0));
        assert_eq!(t.exit_reason, ExitReason::StopLoss);
        assert_eq!(run.equity, vec![1000.0, 1000.0, 900.0, 900.0]);

        let o = [100.0, 100.0, 110.0];
        let h = [100.0, 101.0, 111.0];
        let l = [100.0, 99.0, 108.0];
        let c = [100.0, 100.0, 109.0];
        let run = ohlc(
            [&o, &h, &l, &c],
            &[-1; 3],
            Mode::LongShort,
            sl(0.05),
            (0.0, 0.0),
            false,
        );
        let t = &run.trades[0];
        assert_eq!((t.exit_price, t.pnl), (110.0, -100.0));
        assert_eq!(run.equity[2], 900.0);
    }

    /// Target 10% at 110: bar 2's high 111 reaches it (out at 110, +100).
    /// When the high stays below (109) and bar 3 opens at 112, the target
    /// fills at that open (+120).
    #[test]
    fn take_profit_inside_the_bar_and_through_a_gap() {
        let tp = Stops {
            take_profit: Some(0.10),
            ..Stops::default()
        };
        let o = [100.0, 100.0, 105.0, 112.0];
        let l = [100.0, 99.0, 104.0, 110.0];
        let c = [100.0, 103.0, 108.0, 113.0];
        let h = [100.0, 104.0, 111.0, 115.0];
        let run = ohlc(
            [&o, &h, &l, &c],
            &[1; 4],
            Mode::LongOnly,
            tp,
            (0.0, 0.0),
            false,
        );
        let t = &run.trades[0];
        assert_eq!(
            (t.exit_reason, t.exit_ts),
            (ExitReason::TakeProfit, Some(2))
        );
        // 100·(1 + 0.1) is 110.00000000000001 in f64.
        assert!(close_to(t.exit_price, 110.0) && close_to(t.pnl, 100.0));
        assert_eq!(run.equity[..2], [1000.0, 1030.0]);
        assert!(close_to(run.equity[2], 1100.0) && run.equity[3] == run.equity[2]);
        let h = [100.0, 104.0, 109.0, 115.0];
        let run = ohlc(
            [&o, &h, &l, &c],
            &[1; 4],
            Mode::LongOnly,
            tp,
            (0.0, 0.0),
            false,
        );
        let t = &run.trades[0];
        assert_eq!(t.exit_reason, ExitReason::TakeProfit);
        assert_eq!((t.exit_ts, t.exit_price, t.pnl), (Some(3), 112.0, 120.0));
        assert_eq!(run.equity[3], 1120.0);
    }

    /// Stop 5% (95) and target 10% (110) both inside bar 2 (low 94, high
    /// 111): the stop is taken.
    #[test]
    fn stop_and_target_in_one_bar_take_the_stop() {
        let both = Stops {
            stop_loss: Some(0.05),
            take_profit: Some(0.10),
            trailing_stop: None,
        };
        let o = [100.0, 100.0, 100.0];
        let h = [100.0, 101.0, 111.0];
        let l = [100.0, 99.0, 94.0];
        let c = [100.0, 100.0, 100.0];
        let run = ohlc(
            [&o, &h, &l, &c],
            &[1; 3],
            Mode::LongOnly,
            both,
            (0.0, 0.0),
            false,
        );
        let t = &run.trades[0];
        assert_eq!((t.exit_reason, t.exit_price), (ExitReason::StopLoss, 95.0));
        assert_eq!(run.equity[2], 950.0);
        // A short: stop 105, target 90, both inside: the stop.
        let h = [100.0, 101.0, 106.0];
        let l = [100.0, 99.0, 89.0];
        let run = ohlc(
            [&o, &h, &l, &c],
            &[-1; 3],
            Mode::LongShort,
            both,
            (0.0, 0.0),
            false,
        );
        let t = &run.trades[0];
        assert_eq!((t.exit_reason, t.exit_price), (ExitReason::StopLoss, 105.0));
    }

    /// Trailing 10% from 100: bar 1 (level 90) lifts the peak to 105, bar
    /// 2 (level 94.5) to 120, bar 3's level is 108 (low 112: held), bar
    /// 4's low 106 reaches 108: out at 108, +80. Bar 2's own high (120)
    /// does not count inside bar 2, or its low 107 would have hit 108.
    #[test]
    fn trailing_stop_ratchets_then_hits() {
        let o = [100.0, 100.0, 108.0, 118.0, 117.0, 110.0];
        let h = [100.0, 105.0, 120.0, 119.0, 118.0, 112.0];
        let l = [100.0, 99.0, 107.0, 112.0, 106.0, 100.0];
        let c = [100.0, 104.0, 118.0, 115.0, 110.0, 105.0];
        for stops in [
            Stops {
                trailing_stop: Some(0.10),
                ..Stops::default()
            },
            // The stop-loss at 95 is farther: the trailing level exits.
            Stops {
                stop_loss: Some(0.05),
                trailing_stop: Some(0.10),
                take_profit: None,
            },
        ] {
            let run = ohlc(
                [&o, &h, &l, &c],
                &[1; 6],
                Mode::LongOnly,
                stops,
                (0.0, 0.0),
                false,
            );
            assert_eq!(run.position, vec![0.0, 10.0, 10.0, 10.0, 0.0, 0.0]);
            let t = &run.trades[0];
            assert_eq!(t.exit_reason, ExitReason::TrailingStop);
            assert_eq!((t.exit_ts, t.exit_price, t.pnl), (Some(4), 108.0, 80.0));
            assert_eq!(run.equity[4..], [1080.0, 1080.0]);
        }
        // A short trails the lowest low: short at 100, lows 95 then 90,
        // the level falls to 104.5 then 99; bar 3's high 100 reaches it.
        let o = [100.0, 100.0, 96.0, 92.0];
        let h = [100.0, 101.0, 98.0, 100.0];
        let l = [100.0, 95.0, 90.0, 91.0];
        let c = [100.0, 96.0, 92.0, 94.0];
        let tr = Stops {
            trailing_stop: Some(0.10),
            ..Stops::default()
        };
        let run = ohlc(
            [&o, &h, &l, &c],
            &[-1; 4],
            Mode::LongShort,
            tr,
            (0.0, 0.0),
            false,
        );
        let t = &run.trades[0];
        assert_eq!(t.exit_reason, ExitReason::TrailingStop);
        assert!(close_to(t.exit_price, 99.0) && close_to(t.pnl, 10.0));
    }

    /// After the stop at bar 2 the signal stays long: no entry at bars 3
    /// and 4; it goes flat at bar 3's close, long again at bar 4's: the
    /// new entry fills at bar 5's open (97).
    #[test]
    fn no_reentry_until_the_direction_changes() {
        let o = [100.0, 100.0, 98.0, 95.0, 96.0, 97.0];
        let h = [101.0, 101.0, 99.0, 97.0, 98.0, 99.0];
        let l = [99.0, 99.0, 94.0, 93.0, 95.0, 96.0];
        let c = [100.0, 99.0, 96.0, 96.0, 97.0, 98.0];
        let dir = [1, 1, 1, 0, 1, 1];
        let run = ohlc(
            [&o, &h, &l, &c],
            &dir,
            Mode::LongOnly,
            sl(0.05),
            (0.0, 0.0),
            false,
        );
        assert_eq!(run.trades.len(), 2);
        assert_eq!(run.position[..5], [0.0, 10.0, 0.0, 0.0, 0.0]);
        assert_eq!(run.trades[1].entry_ts, 5);
        assert!(close_to(run.position[5], 950.0 / 97.0));
        assert!(run.trades[1].open);
        // The stop level is reset at the new entry (97·0.95 = 92.15).
        assert!(close_to(run.equity[5], 950.0 / 97.0 * 98.0));
        // Long-short: the flip to short is a new direction, entered at once.
        let dir = [1, 1, 1, -1, -1, -1];
        let run = ohlc(
            [&o, &h, &l, &c],
            &dir,
            Mode::LongShort,
            sl(0.05),
            (0.0, 0.0),
            false,
        );
        assert_eq!(run.position[3], 0.0);
        assert_eq!(run.trades[1].side, Side::Short);
        assert_eq!(run.trades[1].entry_ts, 4);
    }

    /// The data ends at bar 2: a stop hit there exits at the stop (not
    /// again at the close); not hit, the position closes at the close.
    #[test]
    fn stops_with_end_of_data() {
        let o = [100.0, 100.0, 99.0];
        let h = [100.0, 101.0, 100.0];
        let c = [100.0, 100.0, 96.0];
        let l = [100.0, 99.0, 94.0];
        let run = ohlc(
            [&o, &h, &l, &c],
            &[1; 3],
            Mode::LongOnly,
            sl(0.05),
            (0.0, 0.0),
            true,
        );
        assert_eq!(run.trades.len(), 1);
        let t = &run.trades[0];
        assert_eq!((t.exit_reason, t.exit_price), (ExitReason::StopLoss, 95.0));
        assert_eq!(run.equity[2], 950.0);
        let l = [100.0, 99.0, 96.0];
        let run = ohlc(
            [&o, &h, &l, &c],
            &[1; 3],
            Mode::LongOnly,
            sl(0.05),
            (0.0, 0.0),
            true,
        );
        let t = &run.trades[0];
        assert_eq!((t.exit_reason, t.exit_price), (ExitReason::EndOfData, 96.0));
        assert_eq!(run.equity[2], 960.0);
    }

    /// Short 100 at 10 with cash 2000; bar 2 opens at 20 (equity 0), beyond
    /// the 99% stop at 19.9 too: the liquidation at the open comes first,
    /// and the ruined account never re-enters.
    #[test]
    fn liquidation_comes_before_a_stop() {
        let o = [10.0, 10.0, 20.0, 5.0];
        let c = [10.0, 15.0, 20.0, 5.0];
        let run = ohlc(
            [&o, &c, &c, &c],
            &[-1; 4],
            Mode::LongShort,
            sl(0.99),
            (0.0, 0.0),
            false,
        );
        assert_eq!(run.trades.len(), 1);
        assert_eq!(run.trades[0].exit_reason, ExitReason::Liquidation);
        assert_eq!(run.equity, vec![1000.0, 500.0, 0.0, 0.0]);
        // A 40% stop (level 14) exits inside bar 1 (high 15) instead.
        let run = ohlc(
            [&o, &c, &c, &c],
            &[-1; 4],
            Mode::LongShort,
            sl(0.4),
            (0.0, 0.0),
            false,
        );
        let t = &run.trades[0];
        assert_eq!((t.exit_reason, t.exit_ts), (ExitReason::StopLoss, Some(1)));
        assert!(close_to(t.exit_price, 14.0) && close_to(run.equity[1], 600.0));
        assert_eq!(run.equity[1..], [run.equity[1]; 3]);
    }

    /// Without stops, high and low are not read (NaN is fine) and the
    /// result equals that of stops that never trigger, on seeded random
    /// walks with random directions, both modes, costs on.
    #[test]
    fn no_stops_equal_stops_that_never_trigger() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut reused = SymbolRun::default();
        for case in 0..20 {
            let n = 60;
            let mut close = vec![100.0];
            for _ in 1..n {
                let last = close[close.len() - 1];
                close.push(last * (1.0 + 0.04 * (next() - 0.5)));
            }
            let open: Vec<f64> = (0..n)
                .map(|i| {
                    if i == 0 {
                        close[0]
                    } else {
                        (close[i - 1] + close[i]) / 2.0
                    }
                })
                .collect();
            let high: Vec<f64> = (0..n).map(|i| open[i].max(close[i]) * 1.01).collect();
            let low: Vec<f64> = (0..n).map(|i| open[i].min(close[i]) * 0.99).collect();
            let nan = vec![f64::NAN; n];
            let dir: Vec<i8> = (0..n).map(|_| (next() * 3.0) as i8 - 1).collect();
            let ts: Vec<i64> = (0..n as i64).collect();
            let mode = if case % 2 == 0 {
                Mode::LongOnly
            } else {
                Mode::LongShort
            };
            let cfg = ExecConfig {
                mode,
                fee: 0.001,
                slippage: 0.0005,
                stops: Stops::default(),
            };
            let never = ExecConfig {
                stops: Stops {
                    stop_loss: Some(0.999_999),
                    take_profit: Some(1e9),
                    trailing_stop: Some(0.999_999),
                },
                ..cfg
            };
            let bars = |high, low| Bars {
                ts: &ts,
                open: &open,
                high,
                low,
                close: &close,
            };
            let plain = simulate(
                "R",
                bars(&nan, &nan),
                &dir,
                3..n,
                1000.0,
                &cfg,
                case % 3 == 0,
            )
            .unwrap();
            let with = simulate(
                "R",
                bars(&high, &low),
                &dir,
                3..n,
                1000.0,
                &never,
                case % 3 == 0,
            )
            .unwrap();
            assert_eq!(plain, with, "case {case}");
            assert!(!plain.trades.is_empty());
            // Into a run reused across cases (other symbols, more or
            // fewer trades): the same as a fresh one.
            let name = format!("S{}", "x".repeat(case));
            let checked = CheckedInputs::new(
                &name,
                bars(&high, &low),
                n,
                3..n,
                1000.0,
                &never,
                case % 3 == 0,
            )
            .unwrap();
            simulate_checked_into(&mut reused, &checked, &dir).unwrap();
            let fresh = simulate(
                &name,
                bars(&high, &low),
                &dir,
                3..n,
                1000.0,
                &never,
                case % 3 == 0,
            )
            .unwrap();
            assert_eq!(reused, fresh, "case {case}");
            // And NaN high/low are refused once stops read them.
            let err = simulate("R", bars(&nan, &nan), &dir, 3..n, 1000.0, &never, false)
                .unwrap_err()
                .to_string();
            assert!(err.contains("R: high at bar 3"), "{err}");
        }
    }

    #[test]
    fn stop_ranges_are_checked() {
        for (stops, name) in [
            (sl(0.0), "stop_loss"),
            (sl(1.0), "stop_loss"),
            (
                Stops {
                    take_profit: Some(f64::INFINITY),
                    ..Stops::default()
                },
                "take_profit",
            ),
            (
                Stops {
                    trailing_stop: Some(-0.1),
                    ..Stops::default()
                },
                "trailing_stop",
            ),
        ] {
            let cfg = ExecConfig {
                stops,
                ..ExecConfig::default()
            };
            assert!(
                matches!(cfg.validate(), Err(BacktestError::BadConfig { name: n, .. }) if n == name),
                "{name}"
            );
        }
        // Without stops the serialized form is that of before stops.
        let json = serde_json::to_string(&ExecConfig::default()).unwrap();
        assert_eq!(json, r#"{"mode":"long-only","fee":0.0005,"slippage":0.0}"#);
    }
}
