//! Backtest: direction → positions → fills (next open) → equity, trades and
//! metrics; portfolio across symbols.
//!
//! Pure functions, no I/O: [`simulate`] runs one symbol, [`portfolio`] sums
//! sub-accounts in slice order, [`metrics`] / [`metrics_of_stats`] compute
//! the statistics table. Definitions of every metric and the annualisation
//! rule are in `src/backtest/METRICS.md` and in the metric facts table
//! [`METRICS`].
//!
//! ```
//! use atc_bt::backtest::{metrics, portfolio, simulate, Bars, ExecConfig};
//! let ts = [0, 86_400_000_000, 172_800_000_000];
//! let open = [10.0, 10.0, 11.0];
//! let close = [10.0, 11.0, 12.0];
//! let dir = [1, 1, 1];
//! let bars = Bars { ts: &ts, open: &open, high: &close, low: &close, close: &close };
//! let run = simulate("X", bars, &dir, 0..3, 1000.0, &ExecConfig::default(), false).unwrap();
//! assert_eq!(run.trades.len(), 1); // entered at bar 1's open, still open
//! let (port, bench) = portfolio(std::slice::from_ref(&run), 1000.0);
//! let m = metrics(1000.0, &port.ts, &port.equity, &bench.equity, &run.trades,
//!                 Some(&port.exposure()), run.total_fees);
//! assert_eq!(m.open_trades, 1);
//! ```

pub mod annualise;
pub mod book;
mod error;
mod exec;
pub mod facts;
mod metrics;
mod portfolio;
mod trade;

pub use annualise::{periods_per_year, periods_per_year_in, Calendar};
pub use error::BacktestError;
pub use exec::{
    simulate, simulate_checked_into, Bars, CheckedInputs, ExecConfig, Mode, Stops, SymbolRun,
};
pub use facts::{metric_fact, metric_value, MetricFact, MetricValue, METRICS};
pub use metrics::{
    metrics, metrics_of_stats, quantile, Drawdown, Metrics, MetricsOptions, TradeStat, SPREAD_TOL,
};
pub use portfolio::{benchmark_metrics, portfolio, Curve, PortfolioSum};
pub use trade::{ExitReason, Side, Trade};
