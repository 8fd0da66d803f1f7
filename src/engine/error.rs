//! Errors of the numeric engine: bad parameters and bad input series.

use super::params::Robustness;

/// Everything the engine can refuse. Messages name the parameter or bar, the
/// value, and what would be valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// A parameter is outside the spec's valid range.
    #[error("invalid parameter {name} = {value}: valid range is {range}")]
    InvalidParam {
        /// The spec's parameter name (also the TOML key).
        name: &'static str,
        /// The offending value as given.
        value: String,
        /// The valid range in words.
        range: &'static str,
    },
    /// A base length makes one of the nine derived lengths shorter than 2.
    #[error(
        "invalid parameter {name} = {value}: with robustness {robustness} the shortest derived \
         length is {name} - {}, which must be >= 2; valid range is {name} >= {min}",
        min - 2
    )]
    LengthTooShort {
        /// The spec's parameter name (`ema_len`, …).
        name: &'static str,
        /// The base length given.
        value: usize,
        /// The robustness whose offsets were applied.
        robustness: Robustness,
        /// The smallest valid base length.
        min: usize,
    },
    /// A base length makes one of the nine derived lengths longer than
    /// [`MAX_BASE_LENGTH`](super::registry::MAX_BASE_LENGTH) allows (a
    /// moving average that long holds memory in proportion to its length
    /// and has no meaning on any data set that exists).
    #[error(
        "invalid parameter {name} = {value}: the longest base length is {max} bars; \
         valid range is {name} <= {max}"
    )]
    LengthTooLong {
        /// The spec's parameter name (`ema_len`, …).
        name: &'static str,
        /// The base length given.
        value: usize,
        /// The longest valid base length.
        max: usize,
    },
    /// The close series is empty.
    #[error("the close series is empty: at least one bar is needed")]
    EmptySeries,
    /// A close is NaN, infinite, zero or negative.
    #[error("close at bar {bar} is {value}: every close must be finite and > 0")]
    BadClose {
        /// 0-based bar index.
        bar: usize,
        /// The offending value.
        value: f64,
    },
}
