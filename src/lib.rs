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
//!                   report/    result directories → HTML and PNG
//!  job/             the pipelines a command runs (run, sweep, merge,
//!                   shards): typed settings in, manifests and files out
//! ```
//!
//! The command line is the binary's (`src/main.rs`, `src/cli/`): it parses
//! flags into [`job`] settings, calls the job and prints. The library has
//! no clap; everything a command does is a function here, e.g.
//!
//! ```no_run
//! use atc_bt::job::{self, run::{RunOutcome, RunSettings}};
//!
//! let settings = RunSettings { show_ingest: false, ..RunSettings::default() };
//! match job::run::run(&settings, &job::Quiet)? {
//!     RunOutcome::Done(done) => println!("{}", done.out.display()),
//!     RunOutcome::Part(part) => println!("part {}", part.dir.display()),
//! }
//! # Ok::<(), atc_bt::job::JobError>(())
//! ```
//!
//! See `examples/run.rs` and `examples/sweep.rs`.
//!
//! Beside the stages: [`files`] (atc-bt replaces only what it wrote, and
//! recognises the temporaries of killed commands), [`locate`] (one rule
//! for where the store and the cache live) and [`term`] (names shown
//! safely, printing that survives a closed pipe).

#[macro_use]
pub mod term;
pub mod backtest;
pub mod bench;
pub mod boundary;
pub mod cache;
pub mod data;
pub mod engine;
pub mod export;
pub mod files;
pub mod job;
pub mod locate;
pub mod parquet_write;
pub mod report;
pub mod run;
pub mod shard;
pub mod sweep;
pub mod synthetic;
