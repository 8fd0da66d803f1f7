//! `atc-bt merge`, and the `--shard` paths of `run` and `sweep`: each shard
//! writes a part, `merge` writes what the single-machine command writes.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use atc_bt::job::merge::{MergeSettings, Merged};
use atc_bt::job::{self};

/// Arguments of `atc-bt merge`.
#[derive(Debug, Args)]
#[command(after_long_help = MERGE_HELP)]
pub struct MergeArgs {
    /// Output directory: the run or sweep directory one machine would write.
    /// An existing directory is replaced only if atc-bt wrote everything in it
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// Replace OUT even if it holds files atc-bt did not write (they are
    /// deleted)
    #[arg(long)]
    pub force: bool,
    /// Part directories (part-<i>-of-<N>), or a directory holding them
    #[arg(value_name = "PART", required = true)]
    pub parts: Vec<PathBuf>,
    /// Combinations to print (sweeps)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10,
        allow_negative_numbers = true
    )]
    pub top: usize,
    /// No summary table
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub report: super::run::ReportFlags,
}

const MERGE_HELP: &str = "\
Contract:
  Every shard `atc-bt run|sweep … --shard i/N --out PARTS` writes
  PARTS/part-i-of-N/ (a success marker last; a retry replaces it atomically).
  `atc-bt merge OUT PARTS` checks that all N parts are there, complete and
  from the same data and parameters (naming any odd part), then writes OUT
  exactly as the single-machine command would: metrics.json and
  results.parquet are byte-identical. On any error nothing is written.";

/// Runs `atc-bt merge`.
pub fn execute(args: &MergeArgs) -> Result<()> {
    let settings = MergeSettings {
        out: args.out.clone(),
        parts: args.parts.clone(),
        force: args.force,
        report: args.report.settings(),
    };
    let progress = super::run::Bar::new(args.quiet);
    let done = job::merge::merge(&settings, &progress)?;
    if !args.quiet {
        match &done.merged {
            Merged::Run(run) => {
                super::run::print_summary(&run.1, &done.out, done.merge_s, done.write_s, false)
            }
            Merged::Sweep(sweep) => {
                let (_, grid, r, ranking, order) = &**sweep;
                let table = super::sweep::ranking_table(grid, r, ranking, order, args.top);
                outln!("{}", table.trim_end_matches('\n'));
                outln!("results: {}", done.out.display());
            }
        }
    }
    errln!(
        "merge: {} parts in {:.2} s",
        done.parts,
        done.merge_s + done.write_s
    );
    super::run::print_report(done.report, args.quiet)
}
