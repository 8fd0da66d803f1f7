//! The command line (the binary's, not the library's): parse with clap,
//! turn the flags into the library's settings ([`atc_bt::job`]), call the
//! job, print what it returns. Nothing else happens here.
//!
//! Modules: `run`, `sweep`, `scan`, `merge` (the jobs' flags and printing),
//! `params` (ATC parameter flags), `data`, `cache`, `compute`, `bench`,
//! `report`. None imports another's items except `run`'s shared pieces
//! (the progress display, report flags, strategy resolution and data
//! settings), used by `sweep` and `merge`.
//!
//! Exit codes: 0 success, 1 an error (printed to stderr with its causes),
//! 2 a usage error (clap). A closed stdout (`atc-bt … | head`) is not an
//! error.

mod bench;
mod cache;
mod compute;
mod data;
mod merge;
mod params;
mod report;
mod run;
mod scan;
mod sweep;

use clap::{Parser, Subcommand};

use cache::CacheArgs;
use compute::ComputeArgs;
use data::DataArgs;
use report::ReportArgs;

/// atc-bt: backtest the Adaptive Trend Classification (ATC) indicator.
///
/// ATC runs 6 moving-average families × 9 lengths, turns each into a
/// persistent cross signal, weights the signals by the equity they would
/// have earned, repeats across families, and averages to a signal in
/// [-1, 1] with a direction. Numbers follow spec/ATC.md (Pine-exact).
#[derive(Debug, Parser)]
#[command(name = "atc-bt", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// Parsed once per process: the size difference between variants is irrelevant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the ATC engine on one close series and write every intermediate
    /// (54 MAs, signals, equities, layer 1 and 2, avg, dir) as CSV in the
    /// golden layout
    Compute(ComputeArgs),
    /// Backtest the ATC direction over many symbols (the main job): next-bar
    /// fills, fees, slippage, per-symbol sub-accounts, metrics, Parquet/JSON
    /// results
    Run(Box<run::RunArgs>),
    /// Sweep a parameter grid (lambda, decay, cutout, lengths, robustness,
    /// thresholds) with shared work, ranking and in/out-of-sample metrics
    Sweep(Box<sweep::SweepArgs>),
    /// Today's ATC state of every selected symbol: last bar, average signal,
    /// direction, bars since it changed, strength rank; filters; table,
    /// JSON or CSV
    Scan(Box<scan::ScanArgs>),
    /// Merge the parts of a sharded `run --shard`/`sweep --shard` into the
    /// results one machine would write (byte-identical metrics.json /
    /// results.parquet)
    Merge(merge::MergeArgs),
    /// Inspect and ingest Parquet market data (info, ingest, synth)
    Data(DataArgs),
    /// Measure throughput (bars/s) of the full ATC or the backtest stage on a
    /// seeded synthetic set, at N threads and 1 thread, with peak memory
    Bench(bench::BenchArgs),
    /// Inspect and maintain the result cache: stats, gc, clear, verify
    Cache(CacheArgs),
    /// Render report.html and PNG charts from a saved run or sweep
    /// directory, without recomputing anything
    Report(ReportArgs),
}

/// Parses the command line and runs it; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(()) => 0,
        Err(err) => report_error(&err),
    };
    // Output lost to anything but a closed pipe is a failure.
    if let Some(e) = atc_bt::term::stdout_error() {
        errln!("error: cannot write to stdout: {e}; the output is incomplete");
        return 1;
    }
    code
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Compute(args) => compute::run(&args),
        Command::Run(args) => run::execute(&args),
        Command::Sweep(args) => sweep::execute(&args),
        Command::Scan(args) => scan::execute(&args),
        Command::Merge(args) => merge::execute(&args),
        Command::Data(args) => data::run(&args),
        Command::Bench(args) => bench::execute(&args),
        Command::Cache(args) => cache::run(&args),
        Command::Report(args) => report::run(&args),
    }
}

/// Prints an error with its chain of causes; a broken pipe exits quietly.
fn report_error(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return 0;
            }
        }
    }
    errln!("error: {err}");
    for cause in err.chain().skip(1) {
        errln!("  caused by: {cause}");
    }
    1
}
