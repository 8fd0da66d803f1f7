//! `atc-bt sweep`: parameter grids over lambda / decay / cutout (and the
//! lengths, robustness and thresholds), ranked, with out-of-sample checks.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::cache::CacheFlags;
use super::data::{DataSourceArgs, SelectionArgs};
use super::params::{AtcArgs, GridArgs};
use super::run::{overrides, ExecArgs, MetricArgs, ReportFlags};
use atc_bt::backtest::book::{Allocation, Rebalance};
use atc_bt::data::{fmt_ts, parse_date_bound};
use atc_bt::job::run::StrategyOverrides;
use atc_bt::job::{
    self,
    sweep::{Split, SweepOutcome, SweepSettings},
};
use atc_bt::sweep::grid::{GridFile, MAX_POSITIONS};
use atc_bt::sweep::output::metric_value;
use atc_bt::sweep::walk::{WalkForward, WalkForwardSpec};
use atc_bt::sweep::{Grid, Ranking};

/// Arguments of `atc-bt sweep`.
#[derive(Debug, Args)]
#[command(after_long_help = format!("{}\n\n{}", atc_bt::data::INPUT_HELP, super::data::POLICY_HELP))]
pub struct SweepArgs {
    #[command(flatten)]
    pub data: DataSourceArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Grid file (TOML): optional `strategy = "file.toml"` (relative to the
    /// grid file) and a `[grid]` table whose keys are parameters and whose
    /// values are lists or "start:stop:step" ranges. Flags below add or
    /// replace axes.
    #[arg(long, value_name = "FILE")]
    pub grid: Option<PathBuf>,
    /// Base strategy (values of parameters the grid does not vary)
    /// [default: the grid file's `strategy`, else strategies/atc_default.toml]
    #[arg(long, value_name = "FILE")]
    pub strategy: Option<PathBuf>,
    #[command(flatten)]
    pub axes: GridArgs,
    #[command(flatten)]
    pub exec: ExecArgs,
    /// equal-split: each symbol trades its own sub-account of capital/N;
    /// shared: per combination and sample one account, entries ranked by
    /// ATC strength |avg|, exactly as `run --allocation shared` (README,
    /// "Sweeps with shared cash") [default: equal-split]
    #[arg(help_heading = "Allocation", long, value_name = "equal-split|shared")]
    pub allocation: Option<Allocation>,
    /// Shared cash only: a grid axis of position limits N (each position
    /// targets 1/N of equity), a list `2,5,10`, a range `2:10:2` or one
    /// value; the last axis of the grid (the fastest): the same signals
    /// feed one account per value [default: the strategy's
    /// max_positions, else one slot per symbol]
    #[arg(help_heading = "Allocation", long, value_name = "SPEC")]
    pub max_positions: Option<String>,
    /// Shared cash: on-change trades only entries and exits; daily,
    /// weekly (ISO, Monday) or monthly trade every held position back to
    /// 1/N of equity on the first bar of each UTC period [default:
    /// on-change]
    #[arg(
        help_heading = "Allocation",
        long,
        value_name = "on-change|daily|weekly|monthly"
    )]
    pub rebalance: Option<Rebalance>,
    #[command(flatten)]
    pub metrics: MetricArgs,
    /// Split date: metrics in sample (before it) and out of sample (from it on)
    #[arg(
        help_heading = "Sweep",
        long,
        value_name = "DATE",
        conflicts_with = "train_frac"
    )]
    pub split: Option<String>,
    /// Split at this fraction of the window's time span instead of a date
    #[arg(
        help_heading = "Sweep",
        long,
        value_name = "F",
        allow_negative_numbers = true
    )]
    pub train_frac: Option<f64>,
    /// Walk-forward: `train=3y,test=1y[,step=1y]` (units y, m, w, d). At each
    /// step the best combination of the training window (by --rank-by) is
    /// traded in the next test window; the chained out-of-sample equity is
    /// reported beside buy & hold
    #[arg(help_heading = "Sweep", long, value_name = "SPEC")]
    pub walk_forward: Option<String>,
    /// Metric to rank combinations by: any number of metrics.json (e.g.
    /// sharpe, total_return, calmar, cagr, sortino, max_drawdown; those
    /// where less is better, such as drawdowns and volatility, rank
    /// ascending)
    #[arg(
        help_heading = "Sweep",
        long,
        value_name = "METRIC",
        default_value = "sharpe"
    )]
    pub rank_by: String,
    /// Refuse grids larger than this
    #[arg(
        help_heading = "Sweep",
        long,
        value_name = "N",
        default_value_t = 100_000
    )]
    pub max_combos: usize,
    /// Combinations to print
    #[arg(
        help_heading = "Sweep",
        long,
        value_name = "N",
        default_value_t = 10,
        allow_negative_numbers = true
    )]
    pub top: usize,
    #[command(flatten)]
    pub cache: CacheFlags,
    #[command(flatten)]
    pub report: ReportFlags,
    /// Output directory [default: reports/sweeps/<UTC time>-<hash of the inputs>/].
    /// An existing directory is replaced only if atc-bt wrote everything in
    /// it (its sweep.json lists its files); anything else is refused
    #[arg(help_heading = "Output", long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace --out even if it holds files atc-bt did not write (they are
    /// deleted)
    #[arg(long)]
    pub force: bool,
    /// Worker threads [default: all cores]
    #[arg(
        help_heading = "Output",
        long,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub threads: Option<usize>,
    /// No progress bar and no ranking table
    #[arg(help_heading = "Output", long, short)]
    pub quiet: bool,
    /// Process only shard I of N (the symbols with blake3(name) mod N = I)
    /// and write a part `part-I-of-N/` into --out (default
    /// reports/shards/<hash of the inputs>/) for `atc-bt merge`. `auto/N`
    /// reads I from $JOB_COMPLETION_INDEX or $AWS_BATCH_JOB_ARRAY_INDEX
    #[arg(help_heading = "Output", long, value_name = "I/N")]
    pub shard: Option<String>,
}

/// Runs `atc-bt sweep`.
pub fn execute(args: &SweepArgs) -> Result<()> {
    let shard = args
        .shard
        .as_deref()
        .map(atc_bt::shard::ShardSpec::from_arg)
        .transpose()?;
    let GridFile {
        mut grid,
        strategy: grid_strategy,
    } = match &args.grid {
        Some(p) => GridFile::load(p)?,
        None => GridFile::default(),
    };
    for (axis, spec) in &args.axes.axes {
        grid.set_axis(axis, spec)
            .with_context(|| format!("--{}", axis.replace('_', "-")))?;
    }
    if let Some(spec) = &args.max_positions {
        grid.set_axis(MAX_POSITIONS, spec)
            .context("--max-positions")?;
    }
    if grid.axes.is_empty() {
        bail!("the grid is empty: give --grid FILE or at least one axis flag such as --lambda 0.01:0.05:0.01");
    }
    let strategy_path = args.strategy.clone().or(grid_strategy);
    let base = job::run::resolve_strategy(
        strategy_path.as_deref(),
        &StrategyOverrides {
            allocation: args.allocation,
            rebalance: args.rebalance,
            ..overrides(&AtcArgs::default(), &args.exec, &args.metrics)
        },
    )?;
    let split = match (&args.split, args.train_frac) {
        (Some(s), _) => Split::At(parse_date_bound(s, false).with_context(|| "--split")?),
        (None, Some(f)) => Split::Fraction(f),
        _ => Split::None,
    };
    let walk_forward = match &args.walk_forward {
        Some(spec) => Some(
            spec.parse::<WalkForwardSpec>()
                .map_err(|e| anyhow::anyhow!("--walk-forward {spec}: {e}"))?,
        ),
        None => None,
    };
    let settings = SweepSettings {
        data: super::run::data_settings(&args.data, &args.selection)?,
        grid,
        base,
        split,
        walk_forward,
        rank_by: args.rank_by.clone(),
        max_combos: args.max_combos,
        cache: args.cache.settings(),
        report: args.report.settings(),
        out: args.out.clone(),
        force: args.force,
        threads: args.threads.unwrap_or(0),
        shard,
        show_ingest: !args.quiet,
    };
    // Settings that need no data are refused before the data is opened.
    job::sweep::validate(&settings)?;
    let progress = super::run::Bar::new(args.quiet);
    let done = match job::sweep::sweep(&settings, &progress)? {
        SweepOutcome::Part(p) => {
            if !args.quiet {
                outln!(
                    "shard {}: {} of {} symbols × {} combinations; part: {}",
                    p.spec,
                    p.symbols,
                    p.selection,
                    p.combinations,
                    p.dir.display()
                );
            }
            return Ok(());
        }
        SweepOutcome::Done(done) => done,
    };
    if !args.quiet {
        let grid = &settings.grid;
        let table = ranking_table(grid, &done.result, &done.ranking, &done.order, args.top);
        outln!("{}", table.trim_end_matches('\n'));
        let secs = done.compute_s.max(1e-9);
        outln!(
            "{} combinations × {} symbols in {:.2} s ({:.2}M combination-bars/s)",
            done.ranking.count(),
            done.manifest.data.series.len(),
            secs,
            done.result.combo_bars as f64 / secs / 1e6
        );
        if let Some(w) = &done.walk {
            let table = walk_forward_table(w, grid, &done.ranking);
            outln!("{}", table.trim_end_matches('\n'));
        }
        outln!("results: {}", done.out.display());
        let (hits, misses) = (done.cache_hits, done.cache_misses);
        if hits + misses > 0 {
            outln!(
                "cache: {hits} hits, {misses} misses ({:.0}% hit rate)",
                100.0 * hits as f64 / (hits + misses) as f64
            );
        }
    }
    super::run::print_report(done.report, args.quiet)
}

fn fmt_opt(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.3}"),
        _ => "n/a".into(),
    }
}

/// The values of combination `c` on the grid's axes, as shown.
fn axis_values(grid: &Grid, ranking: &Ranking, c: usize) -> Vec<String> {
    let p = serde_json::to_value(ranking.params(c)).unwrap_or_default();
    grid.axes
        .iter()
        .map(|(a, _)| {
            if a == MAX_POSITIONS {
                return grid
                    .max_positions(c, None)
                    .map(|n| n.to_string())
                    .unwrap_or_default();
            }
            p.get(a.as_str())
                .map(|v| v.to_string().trim_matches('"').to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// The ranking table: the top combinations by `metric` on the ranked
/// sample ([`ranked_sample`]), each column labelled with the sample it
/// shows (`[full]`, or `[in]`/`[out]` with a split). Walk-forward training
/// windows are never shown here: the folds have their own table
/// ([`walk_forward_table`]).
pub fn ranking_table(
    grid: &Grid,
    r: &atc_bt::sweep::SweepResult,
    ranking: &Ranking,
    order: &[usize],
    top: usize,
) -> String {
    let metric = ranking.metric();
    use std::fmt::Write as _;
    let by_name = |n: &str| r.samples.iter().position(|s| s.name == n);
    let (inn, out) = (by_name("in"), by_name("out"));
    let split = inn.is_some() && out.is_some();
    let mut t = String::new();
    let mut header = format!("{:>4} {:>6}", "rank", "combo");
    for (a, _) in &grid.axes {
        let _ = write!(header, " {a:>10}");
    }
    let cols: Vec<(String, Option<usize>, bool)> = if split {
        vec![
            (format!("{metric} [in]"), inn, false),
            (format!("{metric} [out]"), out, false),
            ("buy&hold [out]".to_string(), out, true),
        ]
    } else {
        vec![
            (format!("{metric} [full]"), Some(0), false),
            ("buy&hold [full]".to_string(), Some(0), true),
        ]
    };
    for (label, _, _) in &cols {
        let _ = write!(header, " {label:>16}");
    }
    let _ = writeln!(t, "{header}");
    for (pos, &c) in order.iter().take(top).enumerate() {
        let _ = write!(t, "{:>4} {:>6}", pos + 1, c);
        for v in axis_values(grid, ranking, c) {
            let _ = write!(t, " {v:>10}");
        }
        for (_, k, bench) in &cols {
            let v = k.and_then(|k| ranking.value(k, c, *bench));
            let _ = write!(t, " {:>16}", fmt_opt(v));
        }
        let _ = writeln!(t);
    }
    if let (true, Some(&best), Some(out)) = (split, order.first(), out) {
        let _ = writeln!(
            t,
            "in-sample best (combo {best}) ranks #{} of {} out of sample",
            ranking.position_in(out, best),
            ranking.count()
        );
    }
    t
}

/// The walk-forward table: per fold its windows, the combination chosen on
/// the training window (number and parameters), its `metric` there, and
/// its out-of-sample results in the test window beside buy & hold; then
/// the chained out-of-sample totals.
pub fn walk_forward_table(w: &WalkForward, grid: &Grid, ranking: &Ranking) -> String {
    use std::fmt::Write as _;
    let metric = ranking.metric();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "walk-forward: {} folds; in each, the best combination by {metric} on the training window is traded in the test window",
        w.folds.len()
    );
    let mut header = format!(
        "{:>4} {:>23} {:>23} {:>6}",
        "fold", "train", "test", "combo"
    );
    for (a, _) in &grid.axes {
        let _ = write!(header, " {a:>10}");
    }
    let _ = write!(
        header,
        " {:>16} {:>16} {:>15} {:>15}",
        format!("{metric} [train]"),
        format!("{metric} [test]"),
        "return [test]",
        "buy&hold [test]"
    );
    let _ = writeln!(t, "{header}");
    for (k, f) in w.folds.iter().enumerate() {
        let span = |a: i64, b: i64| format!("{}..{}", fmt_day(a), fmt_day(b));
        let chosen = f.best_combo;
        let _ = write!(
            t,
            "{k:>4} {:>23} {:>23} {:>6}",
            span(f.fold.train_from, f.fold.train_to),
            span(f.fold.test_from, f.fold.test_to),
            f.best_combo.map_or("-".into(), |c| c.to_string())
        );
        match chosen {
            Some(c) => {
                for v in axis_values(grid, ranking, c) {
                    let _ = write!(t, " {v:>10}");
                }
            }
            None => {
                for _ in &grid.axes {
                    let _ = write!(t, " {:>10}", "-");
                }
            }
        }
        let test = f.test.as_ref();
        let pct = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{:+.2}%", v * 100.0));
        let _ = writeln!(
            t,
            " {:>16} {:>16} {:>15} {:>15}",
            fmt_opt(f.train_metric),
            fmt_opt(test.and_then(|m| metric_value(m, metric))),
            pct(test.map(|m| m.total_return)),
            pct(test.map(|m| m.benchmark_return)),
        );
    }
    let (m, b) = (&w.metrics, &w.benchmark_metrics);
    let _ = writeln!(
        t,
        "out of sample, chained: return {:+.2}% (buy & hold {:+.2}%), {metric} {} ({}), max drawdown {:.2}% ({:.2}%)",
        m.total_return * 100.0,
        b.total_return * 100.0,
        fmt_opt(metric_value(m, metric)),
        fmt_opt(metric_value(b, metric)),
        m.max_drawdown * 100.0,
        b.max_drawdown * 100.0
    );
    t
}

/// A date for the fold table (`2020-01-01`).
fn fmt_day(us: i64) -> String {
    fmt_ts(us).chars().take(10).collect()
}
