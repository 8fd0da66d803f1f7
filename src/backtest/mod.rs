//! Backtest: direction → positions → fills → equity, trades and metrics.
