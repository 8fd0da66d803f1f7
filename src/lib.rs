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
//! Beside the stages: [`files`] (atc-bt replaces only what it wrote, and
//! recognises the temporaries of killed commands), [`locate`] (one rule
//! for where the store and the cache live) and [`term`] (names shown
//! safely, printing that survives a closed pipe).
//!
//! Everything a command does is callable from Rust without the CLI.

#[macro_use]
pub mod term;
pub mod backtest;
pub mod bench;
pub mod boundary;
pub mod cache;
pub mod cli;
pub mod data;
pub mod engine;
pub mod export;
pub mod files;
pub mod locate;
pub mod parquet_write;
pub mod report;
pub mod run;
pub mod shard;
pub mod sweep;
pub mod synthetic;
