//! A run driven from Rust through the library alone, no CLI: a small
//! seeded synthetic set, the spec's default strategy with a 10 bps fee,
//! the result directory and its summary.
//!
//! `cargo run --release --example run -- [WORK_DIR]` (default: a fresh
//! directory under the system's temporary directory)

use std::error::Error;
use std::path::{Path, PathBuf};

use atc_bt::job::run::{ReportSettings, RunDone, RunOutcome, RunSettings};
use atc_bt::job::{self, CacheSettings, DataSettings};
use atc_bt::run::Strategy;

/// Writes a 12 × 600 synthetic set into `work/data/` and runs it into
/// `work/run/` (no cache, no report): what `atc-bt data synth --symbols 12
/// --bars 600 --seed 7 --out work/data/synth.parquet` then `atc-bt run
/// --data work/data --fee-bps 10 --no-cache --no-report --out work/run`
/// write.
pub fn example(work: &Path) -> Result<RunDone, Box<dyn Error>> {
    let data = work.join("data");
    std::fs::create_dir_all(&data)?;
    atc_bt::data::synth(12, 600, 7, &data.join("synth.parquet"))?;
    let mut strategy = Strategy::shipped_default()?;
    strategy.execution.fee_bps = 10.0;
    let settings = RunSettings {
        data: DataSettings {
            data,
            ..DataSettings::default()
        },
        strategy,
        cache: CacheSettings {
            enabled: false,
            ..CacheSettings::default()
        },
        report: ReportSettings {
            render: false,
            ..ReportSettings::default()
        },
        out: Some(work.join("run")),
        ..RunSettings::default()
    };
    match job::run::run(&settings, &job::Quiet)? {
        RunOutcome::Done(done) => Ok(*done),
        RunOutcome::Part(_) => Err("a run without a shard wrote a part".into()),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let work = match std::env::args().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("atc-bt-example-run-{}", std::process::id())),
    };
    let done = example(&work)?;
    let p = &done.summary.portfolio_metrics;
    println!(
        "{} symbols, {} engine bars: total return {:+.2}%, Sharpe {}, max drawdown {:.2}%",
        done.summary.symbols.len(),
        done.summary.engine_bars,
        p.total_return * 100.0,
        p.sharpe.map_or("n/a".into(), |s| format!("{s:.2}")),
        p.max_drawdown * 100.0
    );
    println!("results: {}", done.out.display());
    Ok(())
}
