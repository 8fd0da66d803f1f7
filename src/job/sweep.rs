//! The sweep job: a parameter grid over the selection with shared work
//! ([`crate::sweep`]), ranked, with an optional split and walk-forward,
//! written as a sweep directory (or, with a shard, a part).
//!
//! Files: `results.parquet` (one row per combination, sample and symbol
//! or aggregate), `heatmap_<sample>.json`, `best_equity.parquet` (the
//! best combination's portfolio and benchmark: the curves the sweep kept of
//! its best so far ([`crate::sweep::SweepResult::best_curve`]), or, where
//! it kept none (shared cash, a chunk's curves over budget), the best
//! combination once more through `run`), `walk_forward.json` and
//! `walk_forward_equity.parquet` with
//! a walk-forward, `memory.parquet`, and `sweep.json` last
//! ([`SweepManifest`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::manifest::{
    self, Best, FoldEntry, SampleWindow, Span, SweepData, SweepManifest, SweepSeries,
    WalkForwardManifest, Window,
};
use super::memory::{write_memory_parquet, MemorySampler};
use super::run::{report_failed, timings, ReportSettings};
use super::{JobError, Progress, Result};
use crate::cache::Cache;
use crate::data::{fmt_ts, Dataset};
use crate::report::{render_report, ReportSummary};
use crate::run::output::{write_curves_parquet, Aggregate};
use crate::run::{run, RunPlan, Strategy};
use crate::shard::ShardSpec;
use crate::sweep::output::{write_json, ResultsWriter};
use crate::sweep::walk::{folds, train_samples, walk_forward, WalkForward, WalkForwardSpec};
use crate::sweep::{sweep_ranked, Grid, RankBy, Ranking, Sample, SweepResult};

/// Where in-sample ends.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Split {
    /// No split: one sample, `full`.
    #[default]
    None,
    /// Out of sample from this bar on (µs UTC).
    At(i64),
    /// At this fraction (0 < F < 1) of the window's time span.
    Fraction(f64),
}

/// Everything a sweep needs (the `sweep` command's flags, parsed and
/// resolved).
#[derive(Debug, Clone)]
pub struct SweepSettings {
    /// Data, symbols and window.
    pub data: super::DataSettings,
    /// The grid (axes and values).
    pub grid: Grid,
    /// The base strategy: values of the parameters the grid does not vary.
    pub base: Strategy,
    /// In and out of sample.
    pub split: Split,
    /// A walk-forward over the window.
    pub walk_forward: Option<WalkForwardSpec>,
    /// The metric combinations are ranked by (a key of `metrics.json`).
    pub rank_by: String,
    /// Refuse grids larger than this.
    pub max_combos: usize,
    /// The result cache.
    pub cache: super::CacheSettings,
    /// The report.
    pub report: ReportSettings,
    /// Output directory (default: `reports/sweeps/<UTC time>-<inputs hash>`).
    pub out: Option<PathBuf>,
    /// Replace `out` even if it holds files atc-bt did not write.
    pub force: bool,
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// Process only this shard and write a part.
    pub shard: Option<ShardSpec>,
    /// Show the data ingest's progress bar when a store is built.
    pub show_ingest: bool,
}

impl Default for SweepSettings {
    /// An empty grid (give it axes) over `data/` with the spec's strategy,
    /// ranked by Sharpe.
    fn default() -> Self {
        SweepSettings {
            data: Default::default(),
            grid: Grid::default(),
            base: Strategy::default(),
            split: Split::None,
            walk_forward: None,
            rank_by: "sharpe".into(),
            max_combos: 100_000,
            cache: Default::default(),
            report: Default::default(),
            out: None,
            force: false,
            threads: 0,
            shard: None,
            show_ingest: false,
        }
    }
}

/// What a sweep leaves.
#[derive(Debug)]
pub enum SweepOutcome {
    /// A sweep directory.
    Done(Box<SweepDone>),
    /// A shard's part.
    Part(super::shard::PartDone),
}

/// A complete sweep directory.
#[derive(Debug)]
pub struct SweepDone {
    /// The directory.
    pub out: PathBuf,
    /// Its `sweep.json`.
    pub manifest: SweepManifest,
    /// The samples, skipped symbols and bars processed.
    pub result: SweepResult,
    /// What is kept of every combination: its ranking metric per sample.
    pub ranking: Ranking,
    /// Every combination (its number) best first.
    pub order: Vec<usize>,
    /// The walk-forward, when asked for.
    pub walk: Option<WalkForward>,
    /// Seconds computing the grid.
    pub compute_s: f64,
    /// Cache hits and misses of this process.
    pub cache_hits: u64,
    /// Cache misses of this process.
    pub cache_misses: u64,
    /// The report, or why it failed (the results are complete either way).
    pub report: std::result::Result<Option<ReportSummary>, JobError>,
}

/// The sample combinations are ranked on: `in` with a split, else `full`.
pub fn ranked_sample(samples: &[Sample]) -> usize {
    samples.iter().position(|s| s.name == "in").unwrap_or(0)
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

fn msg(e: String) -> JobError {
    JobError::Invalid(e)
}

/// Checks the settings that need no data: the grid's size and values,
/// the split fraction and the ranking metric.
pub fn validate(s: &SweepSettings) -> Result<()> {
    s.grid.validate(&s.base.atc, s.max_combos)?;
    let shared = s.base.execution.allocation == crate::backtest::book::Allocation::Shared;
    if shared && s.shard.is_some() {
        return Err(JobError::Invalid(
            "--allocation shared cannot be sharded yet (each combination's account needs every symbol's signals): run the sweep without --shard".into(),
        ));
    }
    if !shared && s.grid.max_positions_axis().is_some() {
        return Err(JobError::Invalid(
            "max_positions in the grid: a position limit applies to shared cash only; add --allocation shared (or allocation = \"shared\" in [execution]), or drop the axis".into(),
        ));
    }
    if let Split::Fraction(f) = s.split {
        if !(f > 0.0 && f < 1.0) {
            return Err(JobError::Invalid(format!(
                "--train-frac {f}: valid range is 0 < F < 1"
            )));
        }
    }
    if !crate::backtest::facts::rankable_keys().any(|k| k == s.rank_by) {
        let known: Vec<&str> = crate::backtest::facts::rankable_keys().collect();
        return Err(JobError::Invalid(format!(
            "--rank-by {}: unknown metric; choose one of {}",
            s.rank_by,
            known.join(", ")
        )));
    }
    Ok(())
}

/// Sweeps the grid as `settings` say.
pub fn sweep(settings: &SweepSettings, progress: &dyn Progress) -> Result<SweepOutcome> {
    let t0 = Instant::now();
    let s = settings;
    validate(s)?;
    if let Some(out) = &s.out {
        crate::files::out::check_not_holding(out, &crate::locate::data_base(&s.data.data))?;
    }
    let sampler = MemorySampler::start(Duration::from_millis(20));
    sampler.phase("load");
    let stops = s.base.execution.has_stops();
    let (dataset, plan, _) = super::open_selection(&s.data, s.show_ingest, stops, progress)?;
    // A shard opens its own cache below (sled allows one process per
    // database): the shared one stays closed.
    let cache = match s.shard {
        Some(_) => Cache::disabled(),
        None => Cache::open(&s.cache.config(dataset.base())),
    };
    super::cache_warnings(&cache, progress);
    let strict = s.data.strict;
    let split = match s.split {
        Split::At(t) => Some(t),
        Split::Fraction(f) => {
            let (lo, hi) = window_span(&dataset, &plan);
            Some(lo + ((hi - lo) as f64 * f) as i64)
        }
        Split::None => None,
    };
    let grid = &s.grid;
    let base = &s.base;
    let mut samples = crate::sweep::samples(plan.from, plan.to, split);
    let wf = match &s.walk_forward {
        Some(spec) => {
            let (lo, hi) = window_span(&dataset, &plan);
            let folds = folds(spec, lo, hi).map_err(|e| msg(format!("--walk-forward: {e}")))?;
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
        progress.message(&format!("warning: {w}"));
    }
    let inputs_hash = super::identity::sweep_inputs(&dataset, &plan, grid, base, split);
    if let Some(spec) = s.shard {
        if s.walk_forward.is_some() {
            return Err(msg(
                "--walk-forward cannot be sharded yet: run the walk-forward on one machine".into(),
            ));
        }
        let mut cfg = s.cache.config(dataset.base());
        cfg.dir = spec.cache_dir(&cfg.dir);
        let shard_cache = Cache::open(&cfg);
        super::cache_warnings(&shard_cache, progress);
        let shard = super::shard::SweepShard {
            spec,
            grid,
            samples: &samples,
            split,
            inputs_hash: &inputs_hash,
        };
        let r = super::shard::sweep_shard(s, shard, &dataset, &plan, &shard_cache, progress);
        shard_cache.flush();
        super::cache_warnings(&shard_cache, progress);
        return r.map(SweepOutcome::Part);
    }
    let out = s.out.clone().unwrap_or_else(|| {
        PathBuf::from("reports/sweeps").join(format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            &inputs_hash[..12]
        ))
    });
    let tmp = crate::run::output::partial_dir(&out, s.force)?;
    let pool = super::pool(s.threads)?;
    let t_load = t0.elapsed();
    progress.start("combinations", grid.count() as u64);
    let bars_per_combo: u64 = plan
        .series
        .iter()
        .map(|&i| dataset.series()[i].bars as u64)
        .sum();
    let mut writer = ResultsWriter::new(&tmp.join("results.parquet"), grid, &base.atc);
    let rank_k = ranked_sample(&samples);
    let mut ranking = Ranking::new(grid, &base.atc, &s.rank_by, &samples, rank_k);
    let t1 = Instant::now();
    sampler.phase("compute");
    let result = pool.install(|| {
        sweep_ranked(
            &dataset,
            &plan,
            grid,
            base,
            &samples,
            strict,
            &cache,
            RankBy {
                metric: &s.rank_by,
                ranked: rank_k,
            },
            &mut |rows| {
                ranking.add(&rows);
                writer.write(&rows)
            },
            &|| {
                progress.tick();
                sampler.add_bars(bars_per_combo);
            },
        )
    });
    progress.finish();
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            std::fs::remove_dir_all(&tmp).ok();
            return Err(e.into());
        }
    };
    let written = (|| -> Result<_> {
        // results.parquet is still being encoded on its own thread
        // (finished below, after the best combination's run).
        let t_compute = t1.elapsed();
        cache.flush();
        let (hits, misses) = manifest::cache_totals(&cache.stats());
        sampler.set_cache(hits, misses);
        sampler.phase("write");
        super::show_skipped(&result.skipped, progress);

        let order = ranking.order();
        for (k, smp) in result
            .samples
            .iter()
            .enumerate()
            .filter(|(_, smp)| !smp.name.starts_with("wf"))
        {
            write_json(
                &tmp.join(format!("heatmap_{}.json", smp.name)),
                &ranking.heatmap_json(k),
            )
            .map_err(msg)?;
        }
        let best = order.first().map(|&c| (c, ranking.params(c)));
        let mut m = SweepManifest {
            format_version: manifest::RUN_FORMAT_VERSION,
            atc_bt_version: env!("CARGO_PKG_VERSION").to_string(),
            command: super::command_line(),
            started_at: super::now_utc(),
            inputs_hash: inputs_hash.clone(),
            grid: grid.clone(),
            combinations: grid.count() as u64,
            params: base.clone(),
            rank_by: s.rank_by.clone(),
            ranked_on_sample: result.samples[rank_k].name.clone(),
            samples: sample_windows(&result.samples),
            split: split.map(fmt_ts),
            window: Window::of(plan.from, plan.to, plan.warmup_bars),
            data: SweepData {
                path: s.data.data.display().to_string(),
                sources: dataset.sources().to_vec(),
                series: plan
                    .series
                    .iter()
                    .map(|&i| SweepSeries {
                        symbol: dataset.series()[i].name.clone(),
                        close_hash: dataset.series()[i].close_hash.clone().into(),
                    })
                    .collect(),
            },
            best: best.clone().map(|(combo, params)| Best { combo, params }),
            ranking: order.iter().take(100).copied().collect(),
            skipped: result.skipped.clone(),
            warnings: Some(warnings.clone()),
            timings_ms: timings(&[("load", t_load), ("compute", t_compute)]),
            combo_bars: result.combo_bars,
            threads: Some(pool.current_num_threads()),
            shards: None,
            files: vec![],
        };
        let walk = match &wf {
            Some((spec, folds, first)) => {
                let w = pool.install(|| {
                    walk_forward(&dataset, &plan, base, folds, &ranking, *first, strict)
                })?;
                manifest::write_walk_forward(&tmp, &walk_forward_manifest(spec, s, &w, &ranking))?;
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
        if let Some((best_combo, _)) = best {
            // The best combination's curves as the sweep kept them (its
            // first sample is the run's window), or, where it could not,
            // once more through `run`.
            let rerun;
            let (portfolio, benchmark) = match &result.best_curve {
                Some(b) if b.combo == best_combo => (&b.portfolio, &b.benchmark),
                _ => {
                    let strategy = grid.strategy(base, best_combo);
                    rerun = pool.install(|| run(&dataset, &plan, &strategy, strict, &|| {}))?;
                    (&rerun.portfolio, &rerun.benchmark)
                }
            };
            write_curves_parquet(
                &tmp.join("best_equity.parquet"),
                &[
                    (Aggregate::Portfolio, portfolio),
                    (Aggregate::Benchmark, benchmark),
                ],
            )?;
        }
        writer.finish().map_err(msg)?;
        let path = tmp.join("memory.parquet");
        write_memory_parquet(&path, &sampler.finish())?;
        m.timings_ms = timings(&[("load", t_load), ("compute", t_compute)]);
        Ok((m, order, walk, t_compute, hits, misses))
    })();
    let (m, order, walk, t_compute, hits, misses) = match written {
        Ok(x) => x,
        Err(e) => {
            std::fs::remove_dir_all(&tmp).ok();
            return Err(e);
        }
    };
    // sweep.json last: it lists the files written before it. Held until
    // the report is drawn.
    let turn = crate::files::out::lock_out(&out);
    manifest::commit(&tmp, &out, &m, s.force)?;
    super::cache_warnings(&cache, progress);
    let report = render(&s.report, &out);
    drop(turn);
    Ok(SweepOutcome::Done(Box::new(SweepDone {
        out,
        manifest: m,
        result,
        ranking,
        order,
        walk,
        compute_s: t_compute.as_secs_f64(),
        cache_hits: hits,
        cache_misses: misses,
        report,
    })))
}

/// `samples` of `sweep.json`.
pub(crate) fn sample_windows(samples: &[Sample]) -> Vec<SampleWindow> {
    samples
        .iter()
        .map(|s| SampleWindow {
            name: s.name.clone(),
            from: s.from.map(fmt_ts),
            to: s.to.map(fmt_ts),
        })
        .collect()
}

fn walk_forward_manifest(
    spec: &WalkForwardSpec,
    s: &SweepSettings,
    w: &WalkForward,
    ranking: &Ranking,
) -> WalkForwardManifest {
    WalkForwardManifest {
        spec: v(spec),
        rank_by: s.rank_by.clone(),
        folds: w
            .folds
            .iter()
            .map(|f| FoldEntry {
                train: Span {
                    from: fmt_ts(f.fold.train_from),
                    to: fmt_ts(f.fold.train_to),
                },
                test: Span {
                    from: fmt_ts(f.fold.test_from),
                    to: fmt_ts(f.fold.test_to),
                },
                best_combo: f.best_combo,
                params: f.best_combo.map(|c| ranking.params(c)),
                train_metric: f.train_metric,
                test_metrics: v(&f.test),
            })
            .collect(),
        out_of_sample: v(&w.metrics),
        benchmark: v(&w.benchmark_metrics),
    }
}

/// Any serializable value as JSON (metrics keep their own serializer).
fn v<T: serde::Serialize>(x: &T) -> serde_json::Value {
    serde_json::to_value(x).unwrap_or_default()
}

/// Draws the report of the result directory `out` when asked for.
pub(crate) fn render(
    r: &ReportSettings,
    out: &std::path::Path,
) -> std::result::Result<Option<ReportSummary>, JobError> {
    if !r.render {
        return Ok(None);
    }
    render_report(out, &r.options)
        .map(Some)
        .map_err(|e| JobError::context(report_failed(out), e))
}
