//! # atc-bt
//!
//! A backtesting framework for the Adaptive Trend Classification (ATC)
//! indicator. Data flows one way, and each stage owns one module:
//!
//! ```text
//!  Parquet files ─► data/      load, validate, select, memory-mapped store
//!                   engine/    pure ATC maths (slices in, vectors out)
//!                   backtest/  direction → positions → fills → equity, trades, metrics
//!                   run/       the main job: data → engine → backtest → results
//!                   sweep/     parameter grids with shared work
//!  cli/             clap commands: parse, call the library, print
//! ```
//!
//! Everything a command does is callable from Rust without the CLI.

pub mod backtest;
pub mod bench;
pub mod cache;
pub mod cli;
pub mod data;
pub mod engine;
pub mod export;
pub mod parquet_write;
pub mod report;
pub mod run;
pub mod shard;
pub mod sweep;
pub mod synthetic;
