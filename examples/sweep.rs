//! A sweep driven from Rust through the library alone, no CLI: a lambda ×
//! decay grid over a small seeded synthetic set, split in and out of
//! sample, ranked by Sharpe.
//!
//! `cargo run --release --example sweep -- [WORK_DIR]`

use std::error::Error;
use std::path::{Path, PathBuf};

use atc_bt::job::run::ReportSettings;
use atc_bt::job::sweep::{Split, SweepDone, SweepOutcome, SweepSettings};
use atc_bt::job::{self, CacheSettings, DataSettings};
use atc_bt::run::Strategy;
use atc_bt::sweep::Grid;

/// Writes a 12 × 600 synthetic set into `work/data/` and sweeps lambda
/// 0.02, 0.05 × decay 0.01, 0.03 over it, split at 2001-06-01, into
/// `work/sweep/` (no cache, no report): what `atc-bt sweep --data
/// work/data --lambda 0.02,0.05 --decay 0.01,0.03 --split 2001-06-01
/// --no-cache --no-report --out work/sweep` writes.
pub fn example(work: &Path) -> Result<SweepDone, Box<dyn Error>> {
    let data = work.join("data");
    std::fs::create_dir_all(&data)?;
    atc_bt::data::synth(12, 600, 7, &data.join("synth.parquet"))?;
    let mut grid = Grid::default();
    grid.set_axis("lambda", "0.02,0.05")?;
    grid.set_axis("decay", "0.01,0.03")?;
    let settings = SweepSettings {
        data: DataSettings {
            data,
            ..DataSettings::default()
        },
        grid,
        base: Strategy::shipped_default()?,
        split: Split::At(atc_bt::data::parse_date_bound("2001-06-01", false)?),
        cache: CacheSettings {
            enabled: false,
            ..CacheSettings::default()
        },
        report: ReportSettings {
            render: false,
            ..ReportSettings::default()
        },
        out: Some(work.join("sweep")),
        ..SweepSettings::default()
    };
    match job::sweep::sweep(&settings, &job::Quiet)? {
        SweepOutcome::Done(done) => Ok(*done),
        SweepOutcome::Part(_) => Err("a sweep without a shard wrote a part".into()),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let work = match std::env::args().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("atc-bt-example-sweep-{}", std::process::id())),
    };
    let done = example(&work)?;
    for (rank, &c) in done.order.iter().enumerate() {
        let p = done.ranking.params(c).atc;
        println!(
            "#{} combo {c}: lambda {} decay {}",
            rank + 1,
            p.lambda,
            p.decay
        );
    }
    println!("results: {}", done.out.display());
    Ok(())
}
