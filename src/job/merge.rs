//! The merge job: the parts of a sharded run or sweep into the directory
//! one machine would write (`metrics.json` and `results.parquet` byte for
//! byte), its manifest completed from the parts' headers.

use std::path::PathBuf;
use std::time::Instant;

use super::manifest::{
    self, Best, RunData, RunManifest, RunSeries, SweepData, SweepManifest, SweepSeries, Window,
};
use super::run::{timings, ReportSettings};
use super::{JobError, Progress, Result};
use crate::data::SourceInfo;
use crate::report::ReportSummary;
use crate::run::output::{
    commit_run_dir, write_curves_parquet, write_run_partial, Aggregate, Outputs, RunWriter,
};
use crate::run::RunSummary;
use crate::shard::merge::{
    check_parts, discover, is_shared, kind, merge_run, merge_shared, merge_sweep, sweep_curves,
    Part,
};
use crate::shard::part::PartKind;
use crate::sweep::output::{write_json, ResultsWriter};
use crate::sweep::{Grid, Ranking, SweepResult};

/// What `merge` needs.
#[derive(Debug, Clone)]
pub struct MergeSettings {
    /// The directory to write (a run or sweep directory).
    pub out: PathBuf,
    /// Part directories (`part-<i>-of-<N>`), or directories holding them.
    pub parts: Vec<PathBuf>,
    /// Replace `out` even if it holds files atc-bt did not write.
    pub force: bool,
    /// The report.
    pub report: ReportSettings,
}

/// What a merge leaves.
#[derive(Debug)]
pub struct MergeOutcome {
    /// The directory written.
    pub out: PathBuf,
    /// Parts merged.
    pub parts: usize,
    /// A run's or a sweep's result.
    pub merged: Merged,
    /// Seconds merging, and writing.
    pub merge_s: f64,
    /// Seconds writing the directory.
    pub write_s: f64,
    /// The report, or why it failed.
    pub report: std::result::Result<Option<ReportSummary>, JobError>,
}

/// The merged result.
#[derive(Debug)]
pub enum Merged {
    /// A run: its manifest and summary.
    Run(Box<(RunManifest, RunSummary)>),
    /// A sweep: its manifest, the grid, the result, the ranking and every
    /// combination best first.
    Sweep(Box<(SweepManifest, Grid, SweepResult, Ranking, Vec<usize>)>),
}

fn sources(ctx: &serde_json::Value) -> Vec<SourceInfo> {
    serde_json::from_value(ctx["sources"].clone()).unwrap_or_default()
}

fn str_of(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Merges the parts as `settings` say.
pub fn merge(settings: &MergeSettings, progress: &dyn Progress) -> Result<MergeOutcome> {
    let t0 = Instant::now();
    let s = settings;
    // Refuse before any work: the directory is checked again at the end.
    {
        let _turn = crate::files::out::lock_out(&s.out);
        crate::files::out::check_replaceable(&s.out, s.force)?;
    }
    let paths = discover(&s.parts)?;
    let parts = check_parts(&paths)?;
    let out_abs = std::path::absolute(&s.out).unwrap_or_else(|_| s.out.clone());
    for p in &parts {
        let pa = std::path::absolute(&p.dir).unwrap_or_else(|_| p.dir.clone());
        if pa.starts_with(&out_abs) {
            return Err(JobError::Invalid(format!(
                "{}: the output directory holds the part {}; give another OUT",
                s.out.display(),
                p.dir.display()
            )));
        }
    }
    let command = super::command_line();
    let started = super::now_utc();
    // Held from the commit until the report is drawn.
    let turn: Option<crate::files::out::OutLock>;
    let (merged, merge_s) = match kind(&parts) {
        PartKind::Run => {
            let h = &parts[0].header;
            let strategy = crate::shard::merge::run_strategy(&parts)?;
            let manifest = |r: &RunSummary, tz: &dyn Fn(&str) -> Option<String>, t_merge| {
                merged_run_manifest(h, &strategy, (command, started), r, tz, t_merge)
            };
            let (m, r, t_merge) = if is_shared(&parts) {
                // The shards stored signals: the account trades here, and
                // the directory is written as the single machine streams it.
                let sm = merge_shared(&parts)?;
                let tz: std::collections::HashMap<String, Option<String>> = parts
                    .iter()
                    .flat_map(|p| p.header.book.iter().flatten())
                    .map(|b| (b.symbol.clone(), b.tz.clone()))
                    .collect();
                let tmp = crate::run::output::partial_dir(&s.out, s.force)?;
                let written = (|| -> std::result::Result<RunSummary, crate::run::RunError> {
                    let out_err =
                        |e: crate::run::output::OutputError| crate::run::RunError::Output {
                            message: e.to_string(),
                        };
                    let timeline = sm.account.timeline(&sm.bars);
                    let mut writer = RunWriter::create(
                        &tmp,
                        timeline,
                        sm.account.capital_per_symbol,
                        sm.strategy.metrics.clone(),
                        Outputs::default(),
                        true,
                    )
                    .map_err(out_err)?;
                    let curve = sm.account.emit(&sm.bars, &sm.strategy, &mut |x| {
                        writer.push(x).map_err(out_err)
                    })?;
                    writer.set_portfolio(curve);
                    writer.finish(sm.skipped).map_err(out_err)
                })();
                let r = match written {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&tmp);
                        return Err(e.into());
                    }
                };
                let t_merge = t0.elapsed();
                let m = manifest(&r, &|x| tz.get(x).cloned().flatten(), t_merge);
                let value =
                    serde_json::to_value(&m).map_err(|e| JobError::context("run.json", e))?;
                turn = Some(crate::files::out::lock_out(&s.out));
                commit_run_dir(&tmp, &s.out, &value, s.force, |_| Ok(()))?;
                (m, r, t_merge)
            } else {
                let r = merge_run(&parts)?;
                let t_merge = t0.elapsed();
                let tz: std::collections::HashMap<&str, Option<&str>> = r
                    .symbols
                    .iter()
                    .map(|x| (x.run.symbol.as_str(), x.calendar.zone()))
                    .collect();
                let summary = r.summary();
                let m = manifest(
                    &summary,
                    &|x| tz.get(x).copied().flatten().map(str::to_string),
                    t_merge,
                );
                let value =
                    serde_json::to_value(&m).map_err(|e| JobError::context("run.json", e))?;
                let tmp = write_run_partial(&s.out, &r, s.force, Default::default())?;
                turn = Some(crate::files::out::lock_out(&s.out));
                commit_run_dir(&tmp, &s.out, &value, s.force, |_| Ok(()))?;
                (m, summary, t_merge)
            };
            super::show_skipped(&r.skipped, progress);
            for w in &r.warnings {
                progress.message(&format!("warning: {w}"));
            }
            (Merged::Run(Box::new((m, r))), t_merge)
        }
        PartKind::Sweep => {
            let (m, grid, r, ranking, order, held) =
                merge_sweep_dir(s, &parts, command, started, t0)?;
            turn = Some(held);
            (
                Merged::Sweep(Box::new((m, grid, r, ranking, order))),
                t0.elapsed(),
            )
        }
    };
    let report = super::sweep::render(&s.report, &s.out);
    drop(turn);
    Ok(MergeOutcome {
        out: s.out.clone(),
        parts: parts.len(),
        merged,
        merge_s: merge_s.as_secs_f64(),
        write_s: (t0.elapsed() - merge_s).as_secs_f64(),
        report,
    })
}

/// The merged run's `run.json`, from the parts' headers and the merged
/// summary (`tz`: each symbol's time zone).
fn merged_run_manifest(
    h: &crate::shard::part::PartHeader,
    strategy: &crate::run::Strategy,
    (command, started): (Vec<String>, String),
    r: &RunSummary,
    tz: &dyn Fn(&str) -> Option<String>,
    t_merge: std::time::Duration,
) -> RunManifest {
    let ctx = &h.context;
    let hashes: std::collections::HashMap<&str, &str> = ctx["selection"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| Some((s["symbol"].as_str()?, s["close_hash"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let p = &h.params;
    RunManifest {
        format_version: manifest::RUN_FORMAT_VERSION,
        atc_bt_version: env!("CARGO_PKG_VERSION").to_string(),
        command,
        started_at: started,
        inputs_hash: h.inputs_hash.clone(),
        params: strategy.clone(),
        signals: h.signals.clone(),
        strategy_file: ctx["strategy_file"].as_str().map(str::to_string),
        window: Window::of(
            p["from_us"].as_i64(),
            p["to_us"].as_i64(),
            p["warmup_bars"].as_u64().map(|x| x as usize),
        ),
        data: RunData {
            path: str_of(&ctx["data_path"]),
            store: None,
            sources: sources(ctx),
            series: r
                .symbols
                .iter()
                .map(|x| RunSeries {
                    symbol: x.symbol.clone(),
                    close_hash: hashes.get(x.symbol.as_str()).map(|h| h.to_string()),
                    engine_bars: x.engine_bars,
                    window_bars: x.window_bars,
                    tz: tz(&x.symbol),
                    periods_per_year: x.metrics.periods_per_year,
                })
                .collect(),
        },
        skipped: r.skipped.clone(),
        warnings: r.warnings.clone(),
        symbols: r.symbols.len(),
        capital_per_symbol: r.capital_per_symbol,
        periods_per_year: Some(r.portfolio_metrics.periods_per_year),
        periods_per_year_source: manifest::periods_source(strategy).to_string(),
        risk_free: strategy.metrics.risk_free,
        engine_bars: r.engine_bars,
        outputs: Outputs::default().names(),
        threads: None,
        shards: Some(h.shards),
        timings_ms: timings(&[("merge", t_merge)]),
        cache: None,
        files: vec![],
    }
}

fn merge_sweep_dir(
    s: &MergeSettings,
    parts: &[Part],
    command: Vec<String>,
    started: String,
    t0: Instant,
) -> Result<(
    SweepManifest,
    Grid,
    SweepResult,
    Ranking,
    Vec<usize>,
    crate::files::out::OutLock,
)> {
    let h = &parts[0].header;
    let (grid, base, samples) = crate::shard::merge::sweep_setup(parts)?;
    let rank_by = h.params["rank_by"].as_str().unwrap_or("sharpe").to_string();
    let out = &s.out;
    let tmp = crate::run::output::partial_dir(out, s.force)?;
    let result = (|| -> Result<_> {
        let mut writer = ResultsWriter::new(&tmp.join("results.parquet"), &grid, &base.atc);
        let rank_k = super::sweep::ranked_sample(&samples);
        let mut ranking = Ranking::new(&grid, &base.atc, &rank_by, &samples, rank_k);
        let r = merge_sweep(parts, &mut |rows| {
            ranking.add(&rows);
            writer.write(&rows)
        })?;
        writer.finish().map_err(JobError::Invalid)?;
        let split = h.params["split_us"].as_i64();
        let order = ranking.order();
        for (k, smp) in r.samples.iter().enumerate() {
            write_json(
                &tmp.join(format!("heatmap_{}.json", smp.name)),
                &ranking.heatmap_json(k),
            )
            .map_err(JobError::Invalid)?;
        }
        let best = order.first().copied();
        let p = &h.params;
        let ctx = &h.context;
        let combo_bars: u64 = parts
            .iter()
            .filter_map(|p| p.header.context["combo_bars"].as_u64())
            .sum();
        let m = SweepManifest {
            format_version: manifest::RUN_FORMAT_VERSION,
            atc_bt_version: env!("CARGO_PKG_VERSION").to_string(),
            command,
            started_at: started,
            inputs_hash: h.inputs_hash.clone(),
            grid: grid.clone(),
            combinations: grid.count() as u64,
            params: base.clone(),
            rank_by: rank_by.clone(),
            ranked_on_sample: r.samples[rank_k].name.clone(),
            samples: super::sweep::sample_windows(&r.samples),
            split: split.map(crate::data::fmt_ts),
            window: Window::of(
                p["from_us"].as_i64(),
                p["to_us"].as_i64(),
                p["warmup_bars"].as_u64().map(|x| x as usize),
            ),
            data: SweepData {
                path: str_of(&ctx["data_path"]),
                sources: sources(ctx),
                series: ctx["selection"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| SweepSeries {
                        symbol: str_of(&x["symbol"]),
                        close_hash: x["close_hash"].clone(),
                    })
                    .collect(),
            },
            best: best.map(|c| Best {
                combo: c,
                params: ranking.params(c),
            }),
            ranking: order.iter().take(100).copied().collect(),
            skipped: r.skipped.clone(),
            warnings: None,
            timings_ms: timings(&[("merge", t0.elapsed())]),
            combo_bars,
            threads: None,
            shards: Some(h.shards),
            files: vec![],
        };
        if let Some(b) = best {
            if let Some((port, bench)) = sweep_curves(parts, b)? {
                write_curves_parquet(
                    &tmp.join("best_equity.parquet"),
                    &[
                        (Aggregate::Portfolio, &port),
                        (Aggregate::Benchmark, &bench),
                    ],
                )?;
            }
        }
        Ok((r, ranking, order, m))
    })();
    let (r, ranking, order, m) = match result {
        Ok(x) => x,
        Err(e) => {
            std::fs::remove_dir_all(&tmp).ok();
            return Err(e);
        }
    };
    // sweep.json last: it lists the files written before it. The lock is
    // held until the caller has drawn the report.
    let turn = crate::files::out::lock_out(out);
    manifest::commit(&tmp, out, &m, s.force)?;
    Ok((m, grid, r, ranking, order, turn))
}
