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
//! Bar `i` reads only `dir[i−1]`, `open[i]` and `close[i]`, so changing any
//! later bar cannot change anything up to bar `i` (tested).
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

use serde::{Deserialize, Serialize};

use super::error::BacktestError;
use super::trade::{ExitReason, Side, Trade};

/// Which directions may be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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

/// Trading costs and the mode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecConfig {
    /// Long-only (default) or long-short.
    pub mode: Mode,
    /// Fee as a fraction of traded notional (0.0005 = 5 bp), in `[0, 1)`.
    pub fee: f64,
    /// Slippage as a fraction of the open price, in `[0, 1)`.
    pub slippage: f64,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            mode: Mode::LongOnly,
            fee: 0.0005,
            slippage: 0.0,
        }
    }
}

impl ExecConfig {
    /// Checks that fee and slippage are finite and in `[0, 1)`.
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
        Ok(())
    }
}

/// One symbol's bars, columnar, borrowed from the data store.
#[derive(Debug, Clone, Copy)]
pub struct Bars<'a> {
    /// Bar timestamps, µs since the Unix epoch, UTC, strictly increasing.
    pub ts: &'a [i64],
    /// Open prices (fills happen here).
    pub open: &'a [f64],
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
        super::metrics_of_stats(
            self.capital,
            &self.ts,
            &self.equity,
            &self.benchmark,
            &stats,
            Some(&self.exposure()),
            self.total_fees,
            opts,
        )
    }
}

/// `gross / equity` per bar; 0 when flat, `+∞` when exposed with equity ≤ 0.
pub(crate) fn gross_fraction(gross: &[f64], equity: &[f64]) -> Vec<f64> {
    gross
        .iter()
        .zip(equity)
        .map(|(&g, &e)| {
            if g == 0.0 {
                0.0
            } else if e > 0.0 {
                g / e
            } else {
                f64::INFINITY
            }
        })
        .collect()
}

/// A position being held (a lot, in the shared book).
#[derive(Debug, Clone)]
pub(super) struct Holding {
    pub(super) side: Side,
    pub(super) entry_bar: usize,
    pub(super) entry_price: f64,
    pub(super) qty: f64,
    pub(super) entry_fee: f64,
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
    for i in window.clone() {
        for (field, value) in [("open", bars.open[i]), ("close", bars.close[i])] {
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
    for v in [
        &mut run.equity,
        &mut run.position,
        &mut run.gross,
        &mut run.benchmark,
    ] {
        v.clear();
        v.reserve(len);
    }
    run.trades.clear();
    run.total_fees = 0.0;
    let bench_units = capital / bars.open[window.start];
    let mut cash = capital;
    let mut held: Option<Holding> = None;
    let mut ruined = false;

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
        let held_sign = held.as_ref().map_or(0, |h| h.side.sign() as i8);
        if held_sign != target {
            if let Some(h) = held.take() {
                cash += close_position(run, symbol, window.start, &h, open, cfg, (i, i, reason));
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
                    run.total_fees += fee;
                    held = Some(Holding {
                        side,
                        entry_bar: i,
                        entry_price: price,
                        qty: notional / price,
                        entry_fee: fee,
                    });
                } else {
                    ruined = true;
                }
            }
        }
        if data_ends && i + 1 == window.end {
            // The symbol's data ends here: close at this bar's close.
            if let Some(h) = held.take() {
                let exit = (i, i + 1, ExitReason::EndOfData);
                cash += close_position(run, symbol, window.start, &h, close, cfg, exit);
            }
        }
        let units = held.as_ref().map_or(0.0, |h| h.side.sign() * h.qty);
        run.equity.push(cash + units * close);
        run.position.push(units);
        run.gross.push((units * close).abs());
        run.benchmark.push(bench_units * close);
    }

    if let Some(h) = held {
        let last = window.end - 1;
        let price = bars.close[last];
        let mut t = make_trade(
            symbol,
            &h,
            (&run.ts, window.start),
            (last, last + 1, ExitReason::EndOfWindow),
            price,
            0.0,
        );
        t.exit_ts = None;
        t.open = true;
        run.trades.push(t);
    }
    Ok(())
}

/// Closes `h` at `quote` (an open, or the last close when the data ends):
/// filled at `quote·(1∓slippage)` against the side, the fee `fee·notional`
/// counted; records the trade (`exit`: exit bar, bars held to, reason) and
/// returns what the close adds to the cash.
fn close_position(
    run: &mut SymbolRun,
    symbol: &str,
    start: usize,
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
    run.total_fees += exit_fee;
    let trade = make_trade(symbol, h, (&run.ts, start), exit, price, exit_fee);
    run.trades.push(trade);
    h.side.sign() * notional - exit_fee
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
    let fees = h.entry_fee + exit_fee;
    let pnl = h.side.sign() * h.qty * (exit_price - h.entry_price) - fees;
    Trade {
        symbol: symbol.to_string(),
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
        };
        let cfg = ExecConfig {
            mode: Mode::LongShort,
            fee: 0.0,
            slippage: 0.0,
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
        };
        for (mode, dir) in [(Mode::LongOnly, 1), (Mode::LongShort, -1)] {
            let cfg = ExecConfig {
                mode,
                fee: 0.001,
                slippage: 0.0,
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
}
