//! The trade ledger: one [`Trade`] per round trip, from entry fill to exit
//! fill. Every trade statistic in [`Metrics`](super::Metrics) is derived from
//! this list, so the ledger and the statistics can never disagree.

use serde::{Deserialize, Serialize};

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

/// One round trip of one symbol.
///
/// Prices are fill prices, slippage included. A trade still open at the end
/// of the window is marked to the last close: `exit_price` is that close,
/// `exit_ts` is `None`, `open` is `true`, and `fees` holds only the entry fee
/// (no exit was paid for).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    /// The symbol traded.
    pub symbol: String,
    /// Long or short.
    pub side: Side,
    /// Timestamp (µs since epoch, UTC) of the bar whose open filled the entry.
    pub entry_ts: i64,
    /// Entry fill price: `open·(1+slippage)` for a long, `open·(1−slippage)` for a short.
    pub entry_price: f64,
    /// Timestamp of the bar whose open filled the exit; `None` while open.
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
    /// Closes at which the position was held: `exit_bar − entry_bar` for a
    /// closed trade, `last_bar + 1 − entry_bar` for an open one.
    pub bars_held: usize,
    /// `true` if the trade was still open at the end of the window.
    pub open: bool,
}

impl Trade {
    /// Calendar duration in days (`(exit_ts − entry_ts) / 86 400 s`); `None`
    /// for an open trade, whose end is not known from the trade alone.
    pub fn duration_days(&self) -> Option<f64> {
        self.exit_ts
            .map(|x| (x - self.entry_ts) as f64 / super::annualise::DAY_US as f64)
    }
}
