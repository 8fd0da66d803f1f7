//! `atc-bt merge`, and the `--shard` paths of `run` and `sweep`: each shard
//! writes a part, `merge` writes what the single-machine command writes.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::run::{progress_bar, RunArgs};
use super::sweep::SweepArgs;
use crate::cache::Cache;
use crate::data::Dataset;
use crate::run::output::{write_curves_parquet, write_run_dir, Aggregate, RUN_FORMAT_VERSION};
use crate::run::{fmt_ts, prepare, run_with_cache, RunPlan, Skipped, Strategy};
use crate::shard::merge::{check_parts, discover, kind, merge_run, merge_sweep, sweep_curves};
use crate::shard::part::{PartHeader, PartKind, PartSkipped, PartWriter, PART_FORMAT_VERSION};
use crate::shard::ShardSpec;
use crate::sweep::output::{heatmap_json, rank, write_json, ResultsWriter};
use crate::sweep::{sweep_with, Grid, Sample};

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

fn parts_dir(out: Option<&PathBuf>, inputs_hash: &str) -> PathBuf {
    out.cloned().unwrap_or_else(|| {
        PathBuf::from("reports/shards").join(&inputs_hash[..inputs_hash.len().min(12)])
    })
}

fn selection_json(data: &Dataset, plan: &RunPlan) -> Vec<serde_json::Value> {
    plan.series
        .iter()
        .map(|&i| {
            let s = &data.series()[i];
            serde_json::json!({"symbol": s.name, "close_hash": s.close_hash})
        })
        .collect()
}

fn owned_skipped(
    spec: ShardSpec,
    skipped: &[Skipped],
    pos_of: &dyn Fn(&str) -> u32,
) -> Vec<PartSkipped> {
    skipped
        .iter()
        .filter(|s| spec.owns(&s.symbol))
        .map(|s| PartSkipped {
            pos: pos_of(&s.symbol),
            symbol: s.symbol.clone(),
            reason: s.reason.clone(),
        })
        .collect()
}

fn names(data: &Dataset, plan: &RunPlan) -> Vec<String> {
    plan.series
        .iter()
        .map(|&i| data.series()[i].name.clone())
        .collect()
}

fn pos_lookup(names: &[String]) -> impl Fn(&str) -> u32 + '_ {
    let map: std::collections::HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    move |n| map.get(n).copied().unwrap_or(u32::MAX)
}

/// `atc-bt run --shard`: the shard's symbols through `run`, with the capital
/// split of the whole selection, written as a part.
pub(super) fn run_shard(
    args: &RunArgs,
    spec: ShardSpec,
    data: &Dataset,
    plan: &RunPlan,
    strategy: &Strategy,
    pool: &rayon::ThreadPool,
    cache: &Cache,
) -> Result<()> {
    let t0 = Instant::now();
    // The whole selection decides the split: every shard counts the same.
    let (active_all, skipped_all) = prepare(data, plan)?;
    let inputs_hash = super::run::inputs_hash(data, plan, strategy);
    let names = names(data, plan);
    let pos_of = pos_lookup(&names);
    let shard_plan = RunPlan {
        series: spec.filter(data, &plan.series),
        ..plan.clone()
    };
    let shard_active = active_all
        .iter()
        .filter(|a| spec.owns(&data.series()[a.idx].name))
        .count();
    let skipped_window = owned_skipped(spec, &skipped_all, &pos_of);
    let dir = parts_dir(args.out.as_ref(), &inputs_hash);
    let mut writer = PartWriter::create(&dir, spec, &names, true, args.force)?;
    let mut processed = 0;
    if shard_active > 0 {
        let pb = progress_bar(shard_plan.series.len(), args.quiet, "symbols");
        let r = pool.install(|| {
            run_with_cache(
                data,
                &shard_plan,
                strategy,
                args.data.strict,
                Some(active_all.len()),
                cache,
                &|_| pb.inc(1),
            )
        });
        pb.finish_and_clear();
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                writer.abandon();
                return Err(e.into());
            }
        };
        crate::run::print_skipped(&r.skipped);
        // `run` lists the window-skipped symbols first, then the failures.
        let failed = r.skipped.get(skipped_window.len()..).unwrap_or_default();
        if let Err(e) = writer.write(0, 0, &r.symbols, failed) {
            writer.abandon();
            return Err(e.into());
        }
        processed = r.symbols.len() + failed.len();
    }
    let capital = strategy.execution.capital / active_all.len() as f64;
    let header = PartHeader {
        format_version: PART_FORMAT_VERSION,
        kind: PartKind::Run,
        shard: spec.index,
        shards: spec.count,
        inputs_hash: inputs_hash.clone(),
        selection: plan.series.len(),
        active_symbols: vec![active_all.len()],
        capital_bits: vec![capital.to_bits()],
        params: serde_json::json!({
            "strategy": strategy,
            "from_us": plan.from,
            "to_us": plan.to,
            "warmup_bars": plan.warmup_bars,
        }),
        skipped_window,
        symbols: processed,
        context: serde_json::json!({
            "strategy_file": args.strategy.as_ref().map(|p| p.display().to_string()),
            "data_path": args.data.data.display().to_string(),
            "sources": data.sources().iter().map(|s| serde_json::json!({
                "path": s.path, "size": s.size, "mtime_ns": s.mtime_ns, "blake3": s.blake3,
            })).collect::<Vec<_>>(),
            "selection": selection_json(data, plan),
            "compute_ms": t0.elapsed().as_secs_f64() * 1e3,
        }),
    };
    let out = writer.finish(&header)?;
    if !args.quiet {
        outln!(
            "shard {spec}: {processed} of {} symbols; part: {}",
            plan.series.len(),
            out.display()
        );
    }
    Ok(())
}

/// `atc-bt sweep --shard`: the shard's symbols through the sweep, with the
/// capital split of the whole selection per sample, written as a part.
#[allow(clippy::too_many_arguments)]
pub(super) fn sweep_shard(
    args: &SweepArgs,
    spec: ShardSpec,
    data: &Dataset,
    plan: &RunPlan,
    grid: &Grid,
    base: &Strategy,
    (samples, split): (&[Sample], Option<i64>),
    inputs_hash: &str,
    cache: &Cache,
) -> Result<()> {
    let t0 = Instant::now();
    let mut counts = Vec::new();
    let mut skipped_all = Vec::new();
    let mut shard_active = 0;
    for s in samples {
        let p = RunPlan {
            from: s.from,
            to: s.to,
            ..plan.clone()
        };
        match prepare(data, &p) {
            Ok((active, sk)) => {
                if s.name == "full" {
                    skipped_all = sk;
                    shard_active = active
                        .iter()
                        .filter(|a| spec.owns(&data.series()[a.idx].name))
                        .count();
                }
                counts.push(active.len());
            }
            Err(e) if s.name == "full" => return Err(e.into()),
            Err(_) => counts.push(0),
        }
    }
    let names = names(data, plan);
    let pos_of = pos_lookup(&names);
    let skipped_window = owned_skipped(spec, &skipped_all, &pos_of);
    let shard_plan = RunPlan {
        series: spec.filter(data, &plan.series),
        ..plan.clone()
    };
    let dir = parts_dir(args.out.as_ref(), inputs_hash);
    let mut writer = PartWriter::create(&dir, spec, &names, false, args.force)?;
    let mut combo_bars = 0;
    if shard_active > 0 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads.unwrap_or(0))
            .build()
            .context("cannot start worker threads")?;
        let pb = progress_bar(grid.count() as usize, args.quiet, "combinations");
        let r = pool.install(|| {
            sweep_with(
                data,
                &shard_plan,
                grid,
                base,
                samples,
                args.data.strict,
                cache,
                Some(&counts),
                &mut |_| Ok(()),
                &|| pb.inc(1),
                &mut |c, k, done, failed| {
                    writer.write(c, k, done, failed).map_err(|e| e.to_string())
                },
            )
        });
        pb.finish_and_clear();
        match r {
            Ok(r) => combo_bars = r.combo_bars,
            Err(e) => {
                writer.abandon();
                return Err(e.into());
            }
        }
    }
    let capital: Vec<u64> = counts
        .iter()
        .map(|&n| (base.execution.capital / n.max(1) as f64).to_bits())
        .collect();
    let header = PartHeader {
        format_version: PART_FORMAT_VERSION,
        kind: PartKind::Sweep,
        shard: spec.index,
        shards: spec.count,
        inputs_hash: inputs_hash.to_string(),
        selection: plan.series.len(),
        active_symbols: counts,
        capital_bits: capital,
        params: serde_json::json!({
            "grid": grid,
            "base": base,
            "from_us": plan.from,
            "to_us": plan.to,
            "warmup_bars": plan.warmup_bars,
            "split_us": split,
            "rank_by": args.rank_by,
            "samples": samples,
        }),
        skipped_window,
        symbols: shard_active,
        context: serde_json::json!({
            "data_path": args.data.data.display().to_string(),
            "sources": data.sources().iter().map(|s| serde_json::json!({"path": s.path, "size": s.size, "blake3": s.blake3})).collect::<Vec<_>>(),
            "selection": selection_json(data, plan),
            "combo_bars": combo_bars,
            "compute_ms": t0.elapsed().as_secs_f64() * 1e3,
        }),
    };
    let out = writer.finish(&header)?;
    if !args.quiet {
        outln!(
            "shard {spec}: {shard_active} of {} symbols × {} combinations; part: {}",
            plan.series.len(),
            grid.count(),
            out.display()
        );
    }
    Ok(())
}

/// Runs `atc-bt merge`.
pub fn execute(args: &MergeArgs) -> Result<()> {
    let t0 = Instant::now();
    // Refuse before any work: the directory is checked again at the end.
    crate::files::out::check_replaceable(&args.out, args.force)?;
    let paths = discover(&args.parts)?;
    let parts = check_parts(&paths)?;
    let out_abs = std::path::absolute(&args.out).unwrap_or_else(|_| args.out.clone());
    for p in &parts {
        let pa = std::path::absolute(&p.dir).unwrap_or_else(|_| p.dir.clone());
        if pa.starts_with(&out_abs) {
            bail!(
                "{}: the output directory holds the part {}; give another OUT",
                args.out.display(),
                p.dir.display()
            );
        }
    }
    let h = &parts[0].header;
    let ctx = &h.context;
    let command: Vec<String> = std::env::args().collect();
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match kind(&parts) {
        PartKind::Run => {
            let strategy = crate::shard::merge::run_strategy(&parts)?;
            let r = merge_run(&parts)?;
            crate::run::print_skipped(&r.skipped);
            super::run::print_result_warnings(&r.summary());
            let t_merge = t0.elapsed();
            let hashes: std::collections::HashMap<&str, &serde_json::Value> = ctx["selection"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| Some((s["symbol"].as_str()?, &s["close_hash"])))
                        .collect()
                })
                .unwrap_or_default();
            let p = &h.params;
            let run_json = serde_json::json!({
                "format_version": RUN_FORMAT_VERSION,
                "atc_bt_version": env!("CARGO_PKG_VERSION"),
                "command": command,
                "started_at": started,
                "inputs_hash": h.inputs_hash,
                "params": p["strategy"],
                "strategy_file": ctx["strategy_file"],
                "window": {
                    "from": p["from_us"].as_i64().map(fmt_ts),
                    "to": p["to_us"].as_i64().map(fmt_ts),
                    "warmup_bars": p["warmup_bars"],
                },
                "data": {
                    "path": ctx["data_path"],
                    "sources": ctx["sources"],
                    "series": r.symbols.iter().map(|s| serde_json::json!({
                        "symbol": s.run.symbol,
                        "close_hash": hashes.get(s.run.symbol.as_str()),
                        "engine_bars": s.engine_bars,
                        "window_bars": s.run.ts.len(),
                        "tz": s.calendar.zone(),
                        "periods_per_year": s.metrics.periods_per_year,
                    })).collect::<Vec<_>>(),
                },
                "skipped": r.skipped,
                "warnings": r.warnings,
                "symbols": r.symbols.len(),
                "capital_per_symbol": r.capital_per_symbol,
                "periods_per_year": r.portfolio_metrics.periods_per_year,
                "periods_per_year_source": super::run::periods_source(&strategy),
                "risk_free": strategy.metrics.risk_free,
                "engine_bars": r.engine_bars,
                "outputs": crate::run::output::Outputs::default().names(),
                "shards": h.shards,
                "timings_ms": {"merge": t_merge.as_secs_f64() * 1e3},
            });
            write_run_dir(&args.out, &r, &run_json, args.force, Default::default())?;
            if !args.quiet {
                super::run::print_summary(
                    &r.summary(),
                    &args.out,
                    t_merge.as_secs_f64(),
                    (t0.elapsed() - t_merge).as_secs_f64(),
                    false,
                );
            }
        }
        PartKind::Sweep => merge_sweep_dir(args, &parts, command, started, t0)?,
    }
    errln!(
        "merge: {} parts in {:.2} s",
        parts.len(),
        t0.elapsed().as_secs_f64()
    );
    args.report.render(&args.out, args.quiet)
}

fn merge_sweep_dir(
    args: &MergeArgs,
    parts: &[crate::shard::merge::Part],
    command: Vec<String>,
    started: String,
    t0: Instant,
) -> Result<()> {
    let h = &parts[0].header;
    let (grid, base, _) = crate::shard::merge::sweep_setup(parts)?;
    let rank_by = h.params["rank_by"].as_str().unwrap_or("sharpe").to_string();
    let out = &args.out;
    let tmp = crate::run::output::partial_dir(out, args.force)?;
    let result = (|| -> Result<_> {
        let mut writer = ResultsWriter::new(&tmp.join("results.parquet"), &grid, &base.atc);
        let r = merge_sweep(parts, &mut |rows| writer.write(&rows))?;
        writer.finish().map_err(anyhow::Error::msg)?;
        let split = h.params["split_us"].as_i64();
        let rank_k = super::sweep::ranked_sample(&r.samples);
        let order = rank(&r.combos, &rank_by, rank_k);
        for (k, s) in r.samples.iter().enumerate() {
            write_json(
                &tmp.join(format!("heatmap_{}.json", s.name)),
                &heatmap_json(&grid, &r.combos, &rank_by, s, k),
            )
            .map_err(anyhow::Error::msg)?;
        }
        let best = order.first().map(|&i| &r.combos[i]);
        let p = &h.params;
        let ctx = &h.context;
        let combo_bars: u64 = parts
            .iter()
            .filter_map(|p| p.header.context["combo_bars"].as_u64())
            .sum();
        let sweep_json = serde_json::json!({
            "format_version": RUN_FORMAT_VERSION,
            "atc_bt_version": env!("CARGO_PKG_VERSION"),
            "command": command,
            "started_at": started,
            "inputs_hash": h.inputs_hash,
            "grid": grid,
            "combinations": grid.count() as u64,
            "base": base,
            "rank_by": rank_by,
            "ranked_on_sample": r.samples[rank_k].name,
            "samples": r.samples.iter().map(|s| serde_json::json!({"name": s.name, "from": s.from.map(fmt_ts), "to": s.to.map(fmt_ts)})).collect::<Vec<_>>(),
            "split": split.map(fmt_ts),
            "window": {"from": p["from_us"].as_i64().map(fmt_ts), "to": p["to_us"].as_i64().map(fmt_ts), "warmup_bars": p["warmup_bars"]},
            "data": {"path": ctx["data_path"], "sources": ctx["sources"], "series": ctx["selection"]},
            "best": best.map(|b| serde_json::json!({"combo": b.combo, "params": b.params})),
            "ranking": order.iter().take(100).map(|&i| r.combos[i].combo).collect::<Vec<_>>(),
            "skipped": r.skipped,
            "timings_ms": {"merge": t0.elapsed().as_secs_f64() * 1e3},
            "combo_bars": combo_bars,
            "shards": h.shards,
        });
        if let Some(b) = best {
            if let Some((port, bench)) = sweep_curves(parts, b.combo)? {
                write_curves_parquet(
                    &tmp.join("best_equity.parquet"),
                    &[
                        (Aggregate::Portfolio, &port),
                        (Aggregate::Benchmark, &bench),
                    ],
                )?;
            }
        }
        Ok((r, order, sweep_json))
    })();
    let (r, order, sweep_json) = match result {
        Ok(x) => x,
        Err(e) => {
            std::fs::remove_dir_all(&tmp).ok();
            return Err(e);
        }
    };
    // sweep.json last: it lists the files written before it.
    crate::run::output::commit_dir_with_manifest(&tmp, out, "sweep.json", &sweep_json, args.force)?;
    if !args.quiet {
        let table = super::sweep::ranking_table(&grid, &r, &order, &rank_by, args.top);
        outln!("{}", table.trim_end_matches('\n'));
        outln!("results: {}", out.display());
    }
    Ok(())
}
