//! Integration tests of the library alone (no binary): the backtester
//! against quantstats, batch against single-series engine results, the
//! streaming run and the sweep's shared stage; one test target, one link.

#[path = "../common/mod.rs"]
mod common;

mod backtest;
mod batch_equality;
mod run_stream;
mod sweep_shared;
