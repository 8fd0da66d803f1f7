//! `atc-bt sweep`: parameter grids over lambda / decay / cutout (and the
//! lengths, robustness and thresholds), ranked, with out-of-sample checks.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::cache::CacheFlags;
use super::data::{DataSourceArgs, SelectionArgs};
use super::params::{AtcArgs, GridArgs};
use super::run::{progress_bar, resolve_strategy, ExecArgs, MetricArgs, ReportFlags};
use crate::cache::Cache;
use crate::data::{parse_date_bound, Dataset};
use crate::report::{write_memory_parquet, MemorySampler};
use crate::run::output::{write_curves_parquet, Aggregate};
use crate::run::{fmt_ts, run, RunPlan, Strategy};
use crate::sweep::grid::GridFile;
use crate::sweep::output::{heatmap_json, metric_value, rank, write_json, ResultsWriter};
use crate::sweep::walk::{folds, train_samples, walk_forward, WalkForward, WalkForwardSpec};
use crate::sweep::{sweep, Grid};

/// Arguments of `atc-bt sweep`.
#[derive(Debug, Args)]
#[command(after_long_help = format!("{}\n\n{}", crate::data::INPUT_HELP, super::data::POLICY_HELP))]
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
    let t0 = Instant::now();
    let shard = args
        .shard
        .as_deref()
        .map(crate::shard::ShardSpec::from_arg)
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
    if grid.axes.is_empty() {
        bail!("the grid is empty: give --grid FILE or at least one axis flag such as --lambda 0.01:0.05:0.01");
    }
    let strategy_path = args.strategy.clone().or(grid_strategy);
    let base = resolve_strategy(
        strategy_path.as_ref(),
        &AtcArgs::default(),
        &args.exec,
        &args.metrics,
    )?;
    grid.validate(&base.atc, args.max_combos)?;
    if let Some(f) = args.train_frac {
        if !(f > 0.0 && f < 1.0) {
            bail!("--train-frac {f}: valid range is 0 < F < 1");
        }
    }
    if !crate::backtest::facts::rankable_keys().any(|k| k == args.rank_by) {
        let known: Vec<&str> = crate::backtest::facts::rankable_keys().collect();
        bail!(
            "--rank-by {}: unknown metric; choose one of {}",
            args.rank_by,
            known.join(", ")
        );
    }

    if let Some(out) = &args.out {
        crate::files::out::check_not_holding(out, &crate::locate::data_base(&args.data.data))?;
    }
    let sampler = MemorySampler::start(std::time::Duration::from_millis(20));
    sampler.phase("load");
    let (dataset, plan, _) = super::run::open_selection(&args.data, &args.selection, !args.quiet)?;
    // A shard opens its own cache below (sled allows one process per
    // database): the shared one stays closed.
    let cache = match shard {
        Some(_) => Cache::disabled(),
        None => Cache::open(&args.cache.config(dataset.base())),
    };
    super::cache::print_new_warnings(&cache);
    let strict = args.data.strict;
    let split = match (&args.split, args.train_frac) {
        (Some(s), _) => Some(parse_date_bound(s, false).with_context(|| "--split")?),
        (None, Some(f)) => {
            let (lo, hi) = window_span(&dataset, &plan);
            Some(lo + ((hi - lo) as f64 * f) as i64)
        }
        _ => None,
    };

    let mut samples = crate::sweep::samples(plan.from, plan.to, split);
    let wf = match &args.walk_forward {
        Some(spec) => {
            let spec: WalkForwardSpec = spec
                .parse()
                .map_err(|e| anyhow::anyhow!("--walk-forward {spec}: {e}"))?;
            let (lo, hi) = window_span(&dataset, &plan);
            let folds = folds(&spec, lo, hi).map_err(|e| anyhow::anyhow!("--walk-forward: {e}"))?;
            let first = samples.len();
            samples.extend(train_samples(&folds));
            Some((spec, folds, first))
        }
        None => None,
    };
    // Each sample ends at the selection's last bar in it, before any
    // sharding, so every shard judges which symbols end inside it alike.
    crate::sweep::pin_samples(&dataset, &plan.series, &mut samples);
    // Symbols of different frequencies or calendars: say so once.
    let warnings = crate::run::plan_warnings(&dataset, &plan, &base.metrics)?;
    for w in &warnings {
        errln!("warning: {w}");
    }
    let mut h = blake3::Hasher::new();
    h.update(serde_json::to_string(&grid).unwrap_or_default().as_bytes());
    h.update(serde_json::to_string(&base).unwrap_or_default().as_bytes());
    h.update(
        format!(
            "{:?}|{:?}|{:?}|{:?}",
            plan.from, plan.to, plan.warmup_bars, split
        )
        .as_bytes(),
    );
    for &i in &plan.series {
        h.update(dataset.series()[i].close_hash.as_bytes());
    }
    let inputs_hash = h.finalize().to_hex().to_string();
    if let Some(spec) = shard {
        if args.walk_forward.is_some() {
            bail!("--walk-forward cannot be sharded yet: run the walk-forward on one machine");
        }
        let mut cfg = args.cache.config(dataset.base());
        cfg.dir = spec.cache_dir(&cfg.dir);
        let shard_cache = Cache::open(&cfg);
        super::cache::print_new_warnings(&shard_cache);
        let r = super::merge::sweep_shard(
            args,
            spec,
            &dataset,
            &plan,
            &grid,
            &base,
            (&samples, split),
            &inputs_hash,
            &shard_cache,
        );
        shard_cache.flush();
        super::cache::print_new_warnings(&shard_cache);
        return r;
    }
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("reports/sweeps").join(format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            &inputs_hash[..12]
        ))
    });
    let tmp = crate::run::output::partial_dir(&out, args.force)?;

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()
        .context("cannot start worker threads")?;
    let t_load = t0.elapsed();
    let pb = progress_bar(grid.count() as usize, args.quiet, "combinations");
    let bars_per_combo: u64 = plan
        .series
        .iter()
        .map(|&i| dataset.series()[i].bars as u64)
        .sum();
    let mut writer = ResultsWriter::new(&tmp.join("results.parquet"), &grid, &base.atc);
    let t1 = Instant::now();
    sampler.phase("compute");
    let result = pool.install(|| {
        sweep(
            &dataset,
            &plan,
            &grid,
            &base,
            &samples,
            strict,
            &cache,
            &mut |rows| writer.write(&rows),
            &|| {
                pb.inc(1);
                sampler.add_bars(bars_per_combo);
            },
        )
    });
    pb.finish_and_clear();
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            std::fs::remove_dir_all(&tmp).ok();
            return Err(e.into());
        }
    };
    writer.finish().map_err(anyhow::Error::msg)?;
    let t_compute = t1.elapsed();
    cache.flush();
    let (hits, misses) = super::run::cache_counts(&cache.stats());
    sampler.set_cache(hits, misses);
    sampler.phase("write");
    crate::run::print_skipped(&result.skipped);

    let rank_k = ranked_sample(&result.samples);
    let order = rank(&result.combos, &args.rank_by, rank_k);
    for (k, s) in result
        .samples
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.name.starts_with("wf"))
    {
        write_json(
            &tmp.join(format!("heatmap_{}.json", s.name)),
            &heatmap_json(&grid, &result.combos, &args.rank_by, s, k),
        )
        .map_err(anyhow::Error::msg)?;
    }
    let best = order.first().map(|&i| &result.combos[i]);
    let sweep_json = serde_json::json!({
        "format_version": crate::run::output::RUN_FORMAT_VERSION,
        "atc_bt_version": env!("CARGO_PKG_VERSION"),
        "command": std::env::args().collect::<Vec<_>>(),
        "started_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "inputs_hash": inputs_hash,
        "grid": grid,
        "combinations": grid.count() as u64,
        "base": base,
        "rank_by": args.rank_by,
        "ranked_on_sample": result.samples[rank_k].name,
        "samples": result.samples.iter().map(|s| serde_json::json!({"name": s.name, "from": s.from.map(fmt_ts), "to": s.to.map(fmt_ts)})).collect::<Vec<_>>(),
        "split": split.map(fmt_ts),
        "window": {"from": plan.from.map(fmt_ts), "to": plan.to.map(fmt_ts), "warmup_bars": plan.warmup_bars},
        "data": {
            "path": args.data.data.display().to_string(),
            "sources": dataset.sources().iter().map(|s| serde_json::json!({"path": s.path, "size": s.size, "blake3": s.blake3})).collect::<Vec<_>>(),
            "series": plan.series.iter().map(|&i| serde_json::json!({"symbol": dataset.series()[i].name, "close_hash": dataset.series()[i].close_hash})).collect::<Vec<_>>(),
        },
        "best": best.map(|b| serde_json::json!({"combo": b.combo, "params": b.params})),
        "ranking": order.iter().take(100).map(|&i| result.combos[i].combo).collect::<Vec<_>>(),
        "skipped": result.skipped,
        "warnings": warnings,
        "timings_ms": {"load": t_load.as_secs_f64() * 1e3, "compute": t_compute.as_secs_f64() * 1e3},
        "combo_bars": result.combo_bars,
        "threads": pool.current_num_threads(),
    });
    let walk = match &wf {
        Some((spec, folds, first)) => {
            let w = pool.install(|| {
                walk_forward(
                    &dataset,
                    &plan,
                    &base,
                    folds,
                    &result.combos,
                    *first,
                    &args.rank_by,
                    strict,
                )
            })?;
            write_json(
                &tmp.join("walk_forward.json"),
                &serde_json::json!({
                    "spec": spec,
                    "rank_by": args.rank_by,
                    "folds": w.folds.iter().map(|f| serde_json::json!({
                        "train": {"from": fmt_ts(f.fold.train_from), "to": fmt_ts(f.fold.train_to)},
                        "test": {"from": fmt_ts(f.fold.test_from), "to": fmt_ts(f.fold.test_to)},
                        "best_combo": f.best_combo,
                        "params": f.best_combo.and_then(|c| result.combos.iter().find(|x| x.combo == c)).map(|c| &c.params),
                        "train_metric": f.train_metric,
                        "test_metrics": f.test,
                    })).collect::<Vec<_>>(),
                    "out_of_sample": w.metrics,
                    "benchmark": w.benchmark_metrics,
                }),
            )
            .map_err(anyhow::Error::msg)?;
            write_curves_parquet(
                &tmp.join("walk_forward_equity.parquet"),
                &[
                    (Aggregate::WalkForward, &w.curve),
                    (Aggregate::Benchmark, &w.benchmark),
                ],
            )?;
            Some(w)
        }
        None => None,
    };
    if let Some(b) = best {
        // The best combination once more through `run`, for its equity curve
        // (a sweep keeps no curves: memory stays bounded by the grid size).
        let strategy = Strategy {
            atc: b.params.clone(),
            execution: base.execution.clone(),
            metrics: base.metrics.clone(),
        };
        let r = pool.install(|| run(&dataset, &plan, &strategy, strict, &|| {}))?;
        write_curves_parquet(
            &tmp.join("best_equity.parquet"),
            &[
                (Aggregate::Portfolio, &r.portfolio),
                (Aggregate::Benchmark, &r.benchmark),
            ],
        )?;
    }
    write_memory_parquet(&tmp.join("memory.parquet"), &sampler.finish())?;
    // sweep.json last: it lists the files written before it.
    crate::run::output::commit_dir_with_manifest(
        &tmp,
        &out,
        "sweep.json",
        &sweep_json,
        args.force,
    )?;
    super::cache::print_new_warnings(&cache);

    if !args.quiet {
        let table = ranking_table(&grid, &result, &order, &args.rank_by, args.top);
        outln!("{}", table.trim_end_matches('\n'));
        let secs = t_compute.as_secs_f64().max(1e-9);
        outln!(
            "{} combinations × {} symbols in {:.2} s ({:.2}M combination-bars/s)",
            result.combos.len(),
            plan.series.len(),
            secs,
            result.combo_bars as f64 / secs / 1e6
        );
        if let Some(w) = &walk {
            let table = walk_forward_table(w, &grid, &result.combos, &args.rank_by);
            outln!("{}", table.trim_end_matches('\n'));
        }
        outln!("results: {}", out.display());
        if hits + misses > 0 {
            outln!(
                "cache: {hits} hits, {misses} misses ({:.0}% hit rate)",
                100.0 * hits as f64 / (hits + misses) as f64
            );
        }
    }
    args.report.render(&out, args.quiet)
}

/// The earliest and latest window bar over the selected series.
fn window_span(data: &Dataset, plan: &RunPlan) -> (i64, i64) {
    let mut lo = i64::MAX;
    let mut hi = i64::MIN;
    for &i in &plan.series {
        let s = &data.series()[i];
        lo = lo.min(plan.from.map_or(s.first_ts, |f| f.max(s.first_ts)));
        hi = hi.max(plan.to.map_or(s.last_ts, |t| t.min(s.last_ts)));
    }
    (lo, hi)
}

fn fmt_opt(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.3}"),
        _ => "n/a".into(),
    }
}

/// The sample combinations are ranked on: `in` with a split, else `full`.
pub(super) fn ranked_sample(samples: &[crate::sweep::Sample]) -> usize {
    samples.iter().position(|s| s.name == "in").unwrap_or(0)
}

/// A value of `metric` of combination `c`'s portfolio (or buy & hold) in
/// sample `k`.
fn sample_value(
    c: &crate::sweep::ComboSummary,
    k: Option<usize>,
    metric: &str,
    bench: bool,
) -> Option<f64> {
    let m = if bench { &c.benchmark } else { &c.portfolio };
    m.get(k?)
        .and_then(|m| m.as_ref())
        .and_then(|m| metric_value(m, metric))
}

/// The parameter values of combination `c` on the grid's axes, as shown.
fn axis_values(grid: &Grid, c: &crate::sweep::ComboSummary) -> Vec<String> {
    let p = serde_json::to_value(&c.params).unwrap_or_default();
    grid.axes
        .iter()
        .map(|(a, _)| {
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
pub(super) fn ranking_table(
    grid: &Grid,
    r: &crate::sweep::SweepResult,
    order: &[usize],
    metric: &str,
    top: usize,
) -> String {
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
    for (pos, &i) in order.iter().take(top).enumerate() {
        let c = &r.combos[i];
        let _ = write!(t, "{:>4} {:>6}", pos + 1, c.combo);
        for v in axis_values(grid, c) {
            let _ = write!(t, " {v:>10}");
        }
        for (_, k, bench) in &cols {
            let _ = write!(t, " {:>16}", fmt_opt(sample_value(c, *k, metric, *bench)));
        }
        let _ = writeln!(t);
    }
    if let (true, Some(&best), Some(out)) = (split, order.first(), out) {
        let oos = rank(&r.combos, metric, out);
        let pos = oos.iter().position(|&i| i == best).map_or(0, |p| p + 1);
        let _ = writeln!(
            t,
            "in-sample best (combo {}) ranks #{} of {} out of sample",
            r.combos[best].combo,
            pos,
            r.combos.len()
        );
    }
    t
}

/// The walk-forward table: per fold its windows, the combination chosen on
/// the training window (number and parameters), its `metric` there, and
/// its out-of-sample results in the test window beside buy & hold; then
/// the chained out-of-sample totals.
pub(super) fn walk_forward_table(
    w: &WalkForward,
    grid: &Grid,
    combos: &[crate::sweep::ComboSummary],
    metric: &str,
) -> String {
    use std::fmt::Write as _;
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
        let chosen = f
            .best_combo
            .and_then(|c| combos.iter().find(|x| x.combo == c));
        let _ = write!(
            t,
            "{k:>4} {:>23} {:>23} {:>6}",
            span(f.fold.train_from, f.fold.train_to),
            span(f.fold.test_from, f.fold.test_to),
            f.best_combo.map_or("-".into(), |c| c.to_string())
        );
        match chosen {
            Some(c) => {
                for v in axis_values(grid, c) {
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
