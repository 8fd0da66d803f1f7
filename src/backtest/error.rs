//! Errors of the backtester: inputs that cannot describe a valid run.
//!
//! Each message names the symbol and bar (where there is one), the value,
//! and what would be valid, so the `run` command can pass it on unchanged.

/// Everything [`simulate`](super::simulate) and the parsers can refuse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BacktestError {
    /// Two per-bar inputs of one symbol have different lengths.
    #[error(
        "{symbol}: {what} has {got} values but ts has {expected}: \
         ts, open, close and dir must cover the same bars"
    )]
    LengthMismatch {
        /// The symbol.
        symbol: String,
        /// Which input (`open`, `close`, `dir`).
        what: &'static str,
        /// The number of timestamps.
        expected: usize,
        /// The length of the offending input.
        got: usize,
    },
    /// The window contains no bar.
    #[error(
        "{symbol}: the window {start}..{end} is empty: no bar has ts in [from, to]; \
         widen --from/--to or drop the symbol"
    )]
    EmptyWindow {
        /// The symbol.
        symbol: String,
        /// First bar index of the window.
        start: usize,
        /// One past the last bar index.
        end: usize,
    },
    /// The window reaches past the end of the series.
    #[error("{symbol}: the window {start}..{end} ends after the last bar ({len} bars)")]
    WindowOutOfRange {
        /// The symbol.
        symbol: String,
        /// First bar index of the window.
        start: usize,
        /// One past the last bar index.
        end: usize,
        /// The number of bars.
        len: usize,
    },
    /// Starting capital is zero, negative or not finite.
    #[error("capital per symbol is {value}: it must be finite and > 0")]
    BadCapital {
        /// The offending value.
        value: f64,
    },
    /// A cost parameter is outside its range.
    #[error("{name} = {value}: valid range is {range}")]
    BadConfig {
        /// `fee`, `slippage`, `stop_loss`, `take_profit` or `trailing_stop`.
        name: &'static str,
        /// The offending value.
        value: f64,
        /// The valid range in words.
        range: &'static str,
    },
    /// An open or close (with stops also a high or low) inside the window
    /// is NaN, infinite, zero or negative.
    #[error("{symbol}: {field} at bar {bar} (ts {ts}) is {value}: prices must be finite and > 0")]
    BadPrice {
        /// The symbol.
        symbol: String,
        /// `open`, `close`, `high` or `low`.
        field: &'static str,
        /// 0-based bar index in the full series.
        bar: usize,
        /// The bar's timestamp (µs since epoch).
        ts: i64,
        /// The offending value.
        value: f64,
    },
    /// Timestamps inside the window do not strictly increase.
    #[error(
        "{symbol}: ts at bar {bar} ({ts}) is not after the previous bar's ({prev}): \
         bars must be sorted by ts without duplicates"
    )]
    UnsortedTs {
        /// The symbol.
        symbol: String,
        /// 0-based bar index in the full series.
        bar: usize,
        /// The bar's timestamp.
        ts: i64,
        /// The previous bar's timestamp.
        prev: i64,
    },
    /// A direction value is not −1, 0 or +1.
    #[error("{symbol}: dir at bar {bar} is {value}: direction must be -1, 0 or 1")]
    BadDirection {
        /// The symbol.
        symbol: String,
        /// 0-based bar index in the full series.
        bar: usize,
        /// The offending value.
        value: i8,
    },
    /// A mode name that is neither `long-only` nor `long-short`.
    #[error("unknown mode {value:?}: valid modes are long-only and long-short")]
    BadMode {
        /// The text given.
        value: String,
    },
    /// A word that is not one of a setting's choices (`allocation`,
    /// `rebalance`).
    #[error("unknown {what} {value:?}: valid values are {valid}")]
    BadChoice {
        /// The setting.
        what: &'static str,
        /// The text given.
        value: String,
        /// The valid words.
        valid: &'static str,
    },
}
