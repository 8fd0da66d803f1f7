//! The trade ledger: one [`Trade`] per round trip, from entry fill to exit
//! fill. Every trade statistic in [`Metrics`](super::Metrics) is derived from
//! this list, so the ledger and the statistics can never disagree.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Direction of a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Bought first, sold to exit.
    Long,
    /// Sold first, bought back to exit.
    Short,
}

impl Side {
    /// `+1.0` for long, `-1.0` for short: the sign of the units held.
    pub fn sign(self) -> f64 {
        match self {
            Side::Long => 1.0,
            Side::Short => -1.0,
        }
    }
}

/// Why a trade ended: the `exit_reason` column of `trades.parquet`.
///
/// New reasons are new variants with a [`name`] and a line in
/// [`ExitReason::ALL`]; readers parse by name, so the set can grow without
/// a layout change.
///
/// [`name`]: ExitReason::name
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// The direction changed (long-only: the signal left long); filled at
    /// the next open.
    Signal,
    /// The symbol's data ends inside the window (delisted, or simply no
    /// later bar): closed at its last bar's close.
    EndOfData,
    /// Still open when the window ends: marked to the last close, not
    /// closed (`open = true`).
    EndOfWindow,
    /// Equity at an open was ≤ 0: forced out there, the account is ruined.
    Liquidation,
    /// The stop-loss level was reached inside a bar (filled there, or at
    /// the open when the open gapped through it).
    StopLoss,
    /// The take-profit level was reached inside a bar (filled there, or at
    /// the open when the open gapped through it).
    TakeProfit,
    /// The trailing stop was reached inside a bar (filled there, or at
    /// the open when the open gapped through it).
    TrailingStop,
    /// Shared cash with `--rebalance daily|weekly|monthly`: these units
    /// were sold (bought back, for a short) at the first open of a period
    /// to bring the position back to its target weight; the rest of the
    /// position stays open (see `backtest::book`).
    Rebalance,
}

impl ExitReason {
    /// Every reason, in declaration order.
    pub const ALL: [ExitReason; 8] = [
        ExitReason::Signal,
        ExitReason::EndOfData,
        ExitReason::EndOfWindow,
        ExitReason::Liquidation,
        ExitReason::StopLoss,
        ExitReason::TakeProfit,
        ExitReason::TrailingStop,
        ExitReason::Rebalance,
    ];

    /// The name written to files (`signal`, `end_of_data`, …).
    pub fn name(self) -> &'static str {
        match self {
            ExitReason::Signal => "signal",
            ExitReason::EndOfData => "end_of_data",
            ExitReason::EndOfWindow => "end_of_window",
            ExitReason::Liquidation => "liquidation",
            ExitReason::StopLoss => "stop_loss",
            ExitReason::TakeProfit => "take_profit",
            ExitReason::TrailingStop => "trailing_stop",
            ExitReason::Rebalance => "rebalance",
        }
    }

    /// The reason named `name` (as [`ExitReason::name`] writes it).
    pub fn from_name(name: &str) -> Option<ExitReason> {
        ExitReason::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// One round trip of one symbol.
///
/// Prices are fill prices, slippage included. A trade still open at the end
/// of the window is marked to the last close: `exit_price` is that close,
/// `exit_ts` is `None`, `open` is `true`, `exit_reason` is
/// [`ExitReason::EndOfWindow`], and `fees` holds only the entry fee (no exit
/// was paid for).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    /// The symbol traded (one allocation shared by a simulation's trades).
    pub symbol: Arc<str>,
    /// Long or short.
    pub side: Side,
    /// Timestamp (µs since epoch, UTC) of the bar whose open filled the entry.
    pub entry_ts: i64,
    /// Entry fill price: `open·(1+slippage)` for a long, `open·(1−slippage)` for a short.
    pub entry_price: f64,
    /// Timestamp of the bar that filled the exit: its open for a signal or
    /// a liquidation, its close at the end of the symbol's data, inside it
    /// for a stop or target; `None` while open.
    pub exit_ts: Option<i64>,
    /// Exit fill price, or the last close of the window if the trade is open.
    pub exit_price: f64,
    /// Units traded, always > 0 (the side carries the sign).
    pub qty: f64,
    /// Fees paid: `fee·qty·entry_price + fee·qty·exit_price` (entry only if open).
    pub fees: f64,
    /// Profit net of fees: `side·qty·(exit_price − entry_price) − fees`.
    pub pnl: f64,
    /// `pnl / (qty·entry_price)`: the return on the entry notional.
    pub ret: f64,
    /// Bars whose price move the trade carried: `exit_bar − entry_bar` for
    /// an exit at an open, `exit_bar + 1 − entry_bar` for an exit at a
    /// close (end of data), inside a bar (stops) and for an open trade (at
    /// the last bar).
    pub bars_held: usize,
    /// `true` if the trade was still open at the end of the window.
    pub open: bool,
    /// Why the trade ended.
    pub exit_reason: ExitReason,
}

impl Trade {
    /// Calendar duration in days (`(exit_ts − entry_ts) / 86 400 s`); `None`
    /// for an open trade, whose end is not known from the trade alone.
    pub fn duration_days(&self) -> Option<f64> {
        self.exit_ts
            .map(|x| (x - self.entry_ts) as f64 / super::annualise::DAY_US as f64)
    }
}
