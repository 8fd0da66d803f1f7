//! `atc-bt bench`: throughput on a seeded synthetic set.

use anyhow::Result;
use clap::Args;

use atc_bt::bench::{self, run_bench, BenchConfig};

/// What to measure (the library's [`bench::Stage`], as a flag value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// The full ATC engine per symbol.
    Full,
    /// Positions, fills, equity, trades and every metric, from a given
    /// direction series.
    Backtest,
    /// A lambda × decay sweep of `--combos` combinations (engine, backtest,
    /// metrics and `results.parquet`), timed beside one run of the same
    /// data; bars/s are combination-bars/s.
    Sweep,
    /// The end-to-end `run` path (what `atc-bt run --no-cache --no-report`
    /// does once the data is open: engine, backtest, metrics, the Parquet
    /// and JSON results written and synced), timed against the batched
    /// engine alone on the same bars, the two alternated.
    Run,
}

impl From<Stage> for bench::Stage {
    fn from(s: Stage) -> bench::Stage {
        match s {
            Stage::Full => bench::Stage::Full,
            Stage::Backtest => bench::Stage::Backtest,
            Stage::Sweep => bench::Stage::Sweep,
            Stage::Run => bench::Stage::Run,
        }
    }
}

/// Which ATC engine the `full` stage times ([`bench::EngineKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// `compute_batch`: symbols in SIMD lanes, batches in parallel (what
    /// `run` uses).
    Batched,
    /// `compute_unchecked` once per symbol, symbols in parallel.
    Single,
}

impl From<EngineKind> for bench::EngineKind {
    fn from(e: EngineKind) -> bench::EngineKind {
        match e {
            EngineKind::Batched => bench::EngineKind::Batched,
            EngineKind::Single => bench::EngineKind::Single,
        }
    }
}

/// Arguments of `atc-bt bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Synthetic symbols (seeded random walks, seeds 0..N)
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true, value_parser = clap::builder::RangedI64ValueParser::<usize>::new().range(1..))]
    pub symbols: usize,
    /// Bars per symbol
    #[arg(long, default_value_t = 1500, allow_negative_numbers = true, value_parser = clap::builder::RangedI64ValueParser::<usize>::new().range(1..))]
    pub bars: usize,
    /// Worker threads [default: all cores]; a 1-thread pass runs too, for the speedup
    #[arg(long, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Timed repetitions (min/median reported)
    #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = clap::builder::RangedI64ValueParser::<usize>::new().range(1..))]
    pub repeat: usize,
    /// full: the whole ATC engine; backtest: fills, equity, trades and
    /// metrics only; run: the whole `run` path (engine, backtest, metrics,
    /// result files written and synced, as `run --no-cache --no-report`)
    /// on `data synth`'s set in a scratch directory, alternated with the
    /// engine alone on the same bars, and their ratio; sweep: a lambda ×
    /// decay sweep of --combos combinations beside one run of the same data
    /// (ratio = the sweep in single runs)
    #[arg(long, value_enum, default_value_t = Stage::Full)]
    pub stage: Stage,
    /// Combinations of the sweep stage (lambda × decay, as square as the
    /// number allows; 100 is `--lambda 0.01:0.1:0.01 --decay 0.01:0.1:0.01`;
    /// 1 to 100,000, the default `sweep --max-combos`)
    #[arg(long, default_value_t = 100, allow_negative_numbers = true, value_parser = clap::builder::RangedI64ValueParser::<usize>::new().range(1..=100_000))]
    pub combos: usize,
    /// Engine for the full stage: batched (symbols in SIMD lanes, what `run` uses) or single (one series at a time)
    #[arg(long, value_enum, default_value_t = EngineKind::Batched)]
    pub engine: EngineKind,
    /// Also time the other engine in the same run and print the ratio
    #[arg(long)]
    pub compare: bool,
    /// The run stage's result files, as `run --outputs`
    #[arg(long, value_name = "LIST", default_value = "equity,trades,signals", value_parser = atc_bt::run::output::Outputs::parse)]
    pub outputs: atc_bt::run::output::Outputs,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs `atc-bt bench`.
pub fn execute(args: &BenchArgs) -> Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let cfg = BenchConfig {
        symbols: args.symbols,
        bars: args.bars,
        threads: threads.max(1),
        repeat: args.repeat,
        stage: args.stage.into(),
        engine: args.engine.into(),
        compare: args.compare,
        combos: args.combos,
        outputs: args.outputs,
    };
    let r = run_bench(&cfg)?;
    if args.json {
        outln!("{}", serde_json::to_string(&r)?);
    } else {
        outln!(
            "stage {:?} ({:?} engine): {} symbols × {} bars, {} threads, {} repeats",
            r.stage,
            r.engine,
            r.symbols,
            r.bars,
            r.threads,
            r.repeat
        );
        outln!(
            "  {:.2}M bars/s median (min {:.2}M, max {:.2}M)",
            r.bars_per_s_median / 1e6,
            r.bars_per_s_min / 1e6,
            r.bars_per_s_max / 1e6
        );
        if let (Some(one), Some(x)) = (r.bars_per_s_1_thread_median, r.speedup_vs_1_thread) {
            outln!(
                "  1 thread: {:.2}M bars/s median; speedup {:.2}×",
                one / 1e6,
                x
            );
        }
        if let Some(run) = &r.run {
            outln!(
                "  engine alone on the same bars: {:.2}M bars/s median",
                run.engine_bars_per_s_median / 1e6
            );
            outln!(
                "  run / engine: {:.0}% (wall, median; each: {}), {:.0}% (CPU time)",
                100.0 * run.run_vs_engine,
                run.run_vs_engine_each
                    .iter()
                    .map(|x| format!("{:.0}%", 100.0 * x))
                    .collect::<Vec<_>>()
                    .join(" "),
                100.0 * run.run_vs_engine_cpu
            );
            outln!(
                "  results: {:.2} bytes per bar ({})",
                run.output_bytes_per_bar,
                run.files
                    .iter()
                    .map(|(n, b)| format!("{n} {:.1} MB", *b as f64 / 1e6))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let (Some(o), Some(x)) = (r.other_engine_bars_per_s_median, r.ratio_vs_other_engine) {
            outln!(
                "  other engine: {:.2}M bars/s median; ratio {:.2}×",
                o / 1e6,
                x
            );
        }
        if let Some(s) = &r.sweep {
            outln!(
                "  sweep of {} combinations ({}): {:.3} s median = {:.2} single runs ({:.3} s); \
                 shared stage {:.3} s, layers {:.3} s",
                s.combos,
                s.grid,
                s.sweep_s_median,
                s.sweep_in_runs,
                s.run_s_median,
                s.shared_stage_s_median,
                s.layers_s_median
            );
        }
        outln!("  peak RSS {:.1} MiB", r.peak_rss_mib);
    }
    Ok(())
}
