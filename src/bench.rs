//! `atc-bt bench`: throughput of the full ATC (54 MAs, 54 signals, 54
//! equities, layer 1 and 2, average, direction), of the backtest stage, or
//! of a whole parameter sweep on a seeded synthetic set, at N threads and
//! at 1 thread in the same run; or of the whole `run` path (engine,
//! backtest, metrics and the result files) against the engine alone on the
//! same bars, alternated.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::backtest::{simulate, Bars, ExecConfig};
use crate::cache::Cache;
use crate::data::Dataset;
use crate::engine::batch::Isa;
use crate::engine::{
    compute_batch, compute_unchecked, lane_directions, shared_signals, AtcParams, BatchDetail,
    Detail, LaneScratch, LaneThresholds, LayerLanes, SharedSignals,
};
use crate::files::owner;
use crate::run::output::{write_curves_parquet, Aggregate};
use crate::run::{run, run_to_dir, RunPlan, Strategy};
use crate::sweep::output::ResultsWriter;
use crate::sweep::{sweep, Grid, Ranking};
use crate::synthetic::random_walk;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
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

/// Which ATC engine the `full` stage times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// [`compute_batch`]: symbols in SIMD lanes, batches in parallel (what
    /// `run` uses).
    Batched,
    /// [`compute_unchecked`] once per symbol, symbols in parallel.
    Single,
}

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Synthetic symbols.
    pub symbols: usize,
    /// Bars per symbol.
    pub bars: usize,
    /// Worker threads for the main measurement.
    pub threads: usize,
    /// Timed repetitions (each over the whole set).
    pub repeat: usize,
    /// Stage to time.
    pub stage: Stage,
    /// Engine for the `full` stage.
    pub engine: EngineKind,
    /// Also time the other engine in the same run (`full` stage only), so
    /// the ratio between them is measured under the same machine load.
    pub compare: bool,
    /// Combinations of the `sweep` stage.
    pub combos: usize,
    /// The files the `run` stage writes.
    pub outputs: crate::run::output::Outputs,
}

/// Figures of one benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Stage timed.
    pub stage: Stage,
    /// Symbols in the set.
    pub symbols: usize,
    /// Bars per symbol.
    pub bars: usize,
    /// Threads of the main measurement.
    pub threads: usize,
    /// Repetitions.
    pub repeat: usize,
    /// Median bars/s at `threads`.
    pub bars_per_s_median: f64,
    /// Slowest repetition's bars/s at `threads`.
    pub bars_per_s_min: f64,
    /// Fastest repetition's bars/s at `threads`.
    pub bars_per_s_max: f64,
    /// Median bars/s at 1 thread (not measured for the `run` stage).
    pub bars_per_s_1_thread_median: Option<f64>,
    /// `bars_per_s_median / bars_per_s_1_thread_median`.
    pub speedup_vs_1_thread: Option<f64>,
    /// Peak resident memory of the process (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// Engine timed (`full` stage).
    pub engine: EngineKind,
    /// With `compare`: the other engine's median bars/s at `threads`.
    pub other_engine_bars_per_s_median: Option<f64>,
    /// With `compare`: `bars_per_s_median / other_engine_bars_per_s_median`.
    pub ratio_vs_other_engine: Option<f64>,
    /// The `sweep` stage's figures.
    pub sweep: Option<SweepFigures>,
    /// `run` stage: what the run path measured against the engine.
    pub run: Option<RunStageReport>,
}

/// What the `sweep` stage measures besides combination-bars/s, at the
/// main thread count.
#[derive(Debug, Clone, Serialize)]
pub struct SweepFigures {
    /// Combinations in the grid (`lambda` × `decay`).
    pub combos: usize,
    /// The grid as `atc-bt sweep` flags.
    pub grid: String,
    /// Median seconds of one `run` of the same data (engine, backtest,
    /// metrics and its result files, as `atc-bt run --no-report` after
    /// opening the data), the unit of the ratio.
    pub run_s_median: f64,
    /// Median seconds of the whole sweep (with `results.parquet` and the
    /// best combination's curves, as `atc-bt sweep --no-report`).
    pub sweep_s_median: f64,
    /// `sweep_s_median / run_s_median`: the sweep's cost in single runs.
    pub sweep_in_runs: f64,
    /// Median seconds of the shared stage alone (54 MAs and signals of
    /// every symbol, once).
    pub shared_stage_s_median: f64,
    /// Median seconds of the layer kernel and direction alone, every
    /// combination over every symbol.
    pub layers_s_median: f64,
}

/// The `run` stage's figures beside the engine's, from alternated
/// repetitions on the same bars.
#[derive(Debug, Clone, Serialize)]
pub struct RunStageReport {
    /// The batched engine alone: median bars/s (wall clock).
    pub engine_bars_per_s_median: f64,
    /// `bars_per_s_median` (the run) over `engine_bars_per_s_median`: the
    /// share of the engine's speed the whole run keeps (1 = writing costs
    /// nothing).
    pub run_vs_engine: f64,
    /// Each repetition's run/engine ratio, in order: a shared machine's
    /// load shows as their spread.
    pub run_vs_engine_each: Vec<f64>,
    /// The same ratio in process CPU time (user + system) per bar, less
    /// sensitive to other processes holding the cores.
    pub run_vs_engine_cpu: f64,
    /// Bytes of the result files per bar traded.
    pub output_bytes_per_bar: f64,
    /// Each result file and its size in bytes.
    pub files: Vec<(String, u64)>,
}

impl BenchReport {
    /// The figures of every stage: its configuration, the median bars/s
    /// `med` and the spread of `sorted_rates` (bars/s of each repetition,
    /// ascending), the peak RSS so far; nothing stage-specific.
    fn base(
        cfg: &BenchConfig,
        stage: Stage,
        engine: EngineKind,
        med: f64,
        sorted_rates: &[f64],
    ) -> BenchReport {
        BenchReport {
            stage,
            symbols: cfg.symbols,
            bars: cfg.bars,
            threads: cfg.threads,
            repeat: cfg.repeat.max(1),
            bars_per_s_median: med,
            bars_per_s_min: sorted_rates.first().copied().unwrap_or(0.0),
            bars_per_s_max: sorted_rates.last().copied().unwrap_or(0.0),
            bars_per_s_1_thread_median: None,
            speedup_vs_1_thread: None,
            peak_rss_mib: peak_rss_mib(),
            engine,
            other_engine_bars_per_s_median: None,
            ratio_vs_other_engine: None,
            sweep: None,
            run: None,
        }
    }
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Errors of a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A thread pool could not start.
    #[error("cannot start worker threads: {0}")]
    Threads(#[from] rayon::ThreadPoolBuildError),
    /// The synthetic data set could not be written or opened.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The run failed.
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    /// The benchmark's own grid did not parse (a defect of `bench_grid`).
    #[error("benchmark grid: {0}")]
    Grid(#[from] crate::sweep::grid::GridError),
    /// The benchmarked job failed.
    #[error("{0}")]
    Job(String),
    /// The scratch directory.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Runs the benchmark.
pub fn run_bench(cfg: &BenchConfig) -> Result<BenchReport, BenchError> {
    if cfg.stage == Stage::Sweep {
        return sweep_bench(cfg);
    }
    if cfg.stage == Stage::Run {
        return run_stage(cfg);
    }
    let params = AtcParams::default();
    let closes: Vec<Vec<f64>> = (0..cfg.symbols)
        .map(|s| random_walk(s as u64, cfg.bars))
        .collect();
    let day = 86_400_000_000i64;
    let ts: Vec<i64> = (0..cfg.bars as i64).map(|i| i * day).collect();
    let opens: Vec<Vec<f64>> = closes
        .iter()
        .map(|c| {
            std::iter::once(c[0])
                .chain(c.iter().copied())
                .take(c.len())
                .collect()
        })
        .collect();
    let dirs: Vec<Vec<i8>> = if cfg.stage == Stage::Backtest {
        closes
            .par_iter()
            .map(|c| compute_unchecked(c, &params, Detail::Signal).dir)
            .collect()
    } else {
        Vec::new()
    };
    let exec = ExecConfig::default();
    let refs: Vec<&[f64]> = closes.iter().map(|c| c.as_slice()).collect();
    // One pass over the whole set; returns a checksum so nothing is elided.
    let pass = |engine: EngineKind| -> usize {
        match (cfg.stage, engine) {
            (Stage::Full, EngineKind::Batched) => {
                compute_batch(&refs, &params, BatchDetail::Direction)
                    .map(|v| v.iter().flatten().map(|o| o.dir.len()).sum())
                    .unwrap_or(0)
            }
            (Stage::Full, EngineKind::Single) => (0..cfg.symbols)
                .into_par_iter()
                .map(|i| {
                    compute_unchecked(&closes[i], &params, Detail::Signal)
                        .dir
                        .len()
                })
                .sum(),
            (Stage::Run, _) => 0,
            (Stage::Backtest | Stage::Sweep, _) => (0..cfg.symbols)
                .into_par_iter()
                .map(|i| {
                    let bars = Bars {
                        ts: &ts,
                        open: &opens[i],
                        // Not read without stops.
                        high: &closes[i],
                        low: &closes[i],
                        close: &closes[i],
                    };
                    simulate("S", bars, &dirs[i], 0..cfg.bars, 1000.0, &exec, false)
                        .map(|r| r.metrics().trades)
                        .unwrap_or(0)
                })
                .sum(),
        }
    };
    let total = (cfg.symbols * cfg.bars) as f64;
    let measure =
        |threads: usize, engine: EngineKind| -> Result<Vec<f64>, rayon::ThreadPoolBuildError> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            // One untimed pass warms caches and the allocator.
            pool.install(|| pass(engine));
            Ok((0..cfg.repeat.max(1))
                .map(|_| {
                    let t = Instant::now();
                    let n = pool.install(|| pass(engine));
                    std::hint::black_box(n);
                    total / t.elapsed().as_secs_f64().max(1e-12)
                })
                .collect())
        };
    let mut many = measure(cfg.threads, cfg.engine)?;
    let mut one = if cfg.threads == 1 {
        many.clone()
    } else {
        measure(1, cfg.engine)?
    };
    let other = if cfg.compare && cfg.stage == Stage::Full {
        let kind = match cfg.engine {
            EngineKind::Batched => EngineKind::Single,
            EngineKind::Single => EngineKind::Batched,
        };
        Some(median(&mut measure(cfg.threads, kind)?))
    } else {
        None
    };
    let med = median(&mut many);
    let med1 = median(&mut one);
    Ok(BenchReport {
        bars_per_s_1_thread_median: Some(med1),
        speedup_vs_1_thread: Some(if med1 > 0.0 { med / med1 } else { 0.0 }),
        other_engine_bars_per_s_median: other,
        ratio_vs_other_engine: other.filter(|&o| o > 0.0).map(|o| med / o),
        ..BenchReport::base(cfg, cfg.stage, cfg.engine, med, &many)
    })
}

/// `lambda` × `decay` values with exactly `combos` combinations, as close
/// to square as `combos` allows (100 → 10 × 10, the grid: 0.01 …
/// 0.10 each).
fn bench_grid(combos: usize) -> Result<Grid, BenchError> {
    let combos = combos.max(1);
    let a = (1..=combos)
        .take_while(|a| a * a <= combos)
        .filter(|a| combos.is_multiple_of(*a))
        .last()
        .unwrap_or(1);
    let b = combos / a;
    let mut grid = Grid::default();
    let range = |k: usize| format!("0.01:{}:0.01", k as f64 / 100.0);
    grid.set_axis("lambda", &range(b))?;
    grid.set_axis("decay", &range(a))?;
    Ok(grid)
}

/// What follows the stage in a bench's scratch directory name, before its
/// owner tag ([`owner::temp_name`]).
const SCRATCH: &str = ".atc-bt-bench-";

/// A fresh scratch directory name for `stage` in the temporary directory:
/// `atc-bt-bench-<stage>.atc-bt-bench-<owner tag>`. A bench removes its
/// scratch when it ends, but one killed by a signal cannot: so first the
/// scratch directories of benches that no longer run are removed (only
/// names of exactly this form, judged by their tag).
fn scratch_dir(stage: &str) -> std::path::PathBuf {
    let tmp = std::env::temp_dir();
    owner::sweep(&tmp, |name| owner::tag_after(name, SCRATCH));
    tmp.join(owner::temp_name(&format!("atc-bt-bench-{stage}"), SCRATCH))
}

/// The `sweep` stage: a seeded synthetic data store in a temporary
/// directory, then one `run` and the sweep, each timed `repeat` times.
fn sweep_bench(cfg: &BenchConfig) -> Result<BenchReport, BenchError> {
    let tmp = scratch_dir("sweep");
    let out = sweep_bench_in(cfg, &tmp);
    std::fs::remove_dir_all(&tmp).ok();
    out
}

fn sweep_bench_in(cfg: &BenchConfig, tmp: &std::path::Path) -> Result<BenchReport, BenchError> {
    let data_err = |e: &dyn std::fmt::Display| BenchError::Job(format!("synthetic data: {e}"));
    std::fs::create_dir_all(tmp).map_err(|e| data_err(&e))?;
    let file = tmp.join("synth.parquet");
    crate::data::synth(cfg.symbols, cfg.bars, 42, &file).map_err(|e| data_err(&e))?;
    // The store's "built" line is not part of a benchmark's output.
    let data = Dataset::open(
        &crate::data::DataOptions {
            data: file,
            store: Some(tmp.join("store")),
            ..Default::default()
        },
        &mut |_| {},
    )
    .map_err(|e| data_err(&e))?;
    let plan = RunPlan {
        series: (0..data.series().len()).collect(),
        from: None,
        to: None,
        warmup_bars: None,
    }
    .pinned(&data);
    let strategy = Strategy::default();
    let grid = bench_grid(cfg.combos)?;
    let combos = grid.count() as usize;
    let mut samples = crate::sweep::samples(None, None, None);
    crate::sweep::pin_samples(&data, &plan.series, &mut samples);
    let cache = Cache::disabled();
    let job = |e: &dyn std::fmt::Display| BenchError::Job(e.to_string());
    // What `atc-bt run --no-report` does after opening the data: the
    // engine, the backtest and the result files.
    let one_run = || -> Result<(), BenchError> {
        let dir = tmp.join("run");
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).map_err(|e| job(&e))?;
        let r = run_to_dir(
            &data,
            &plan,
            &strategy,
            false,
            None,
            &cache,
            &|_| {},
            &dir,
            cfg.outputs,
        )
        .map_err(|e| job(&e))?;
        std::hint::black_box(r.portfolio_metrics.sharpe);
        Ok(())
    };
    // What `atc-bt sweep --no-report` does after opening the data: the
    // sweep with `results.parquet`, then the best combination's curves.
    let results = tmp.join("results.parquet");
    let one_sweep = || -> Result<(), BenchError> {
        let mut w = ResultsWriter::new(&results, &grid, &strategy.atc);
        let mut ranking = Ranking::new(&grid, &strategy.atc, "sharpe", &samples, 0);
        sweep(
            &data,
            &plan,
            &grid,
            &strategy,
            &samples,
            false,
            &cache,
            &mut |rows| {
                ranking.add(&rows);
                w.write(&rows)
            },
            &|| {},
        )
        .map_err(|e| job(&e))?;
        // As the job: the rows are still being encoded while the best
        // combination runs.
        if let Some(&best) = ranking.order().first() {
            let s = Strategy {
                atc: ranking.params(best).atc,
                execution: strategy.execution.clone(),
                metrics: strategy.metrics.clone(),
            };
            let b = run(&data, &plan, &s, false, &|| {}).map_err(|e| job(&e))?;
            write_curves_parquet(
                &tmp.join("best_equity.parquet"),
                &[
                    (Aggregate::Portfolio, &b.portfolio),
                    (Aggregate::Benchmark, &b.benchmark),
                ],
            )
            .map_err(|e| job(&e))?;
        }
        w.finish().map_err(|e| job(&e))?;
        Ok(())
    };
    // The two stages of the sweep's engine alone.
    let closes: Vec<&[f64]> = plan.series.iter().map(|&i| data.view(i).close).collect();
    let params: Vec<AtcParams> = grid.combos(&strategy.atc).collect();
    let shared_stage = || -> Vec<SharedSignals> {
        shared_signals(&closes, &strategy.atc, Isa::Auto)
            .map(|v| v.into_iter().flatten().collect())
            .unwrap_or_default()
    };
    let width = LayerLanes::max_width(Isa::Auto);
    let lanes: Vec<LayerLanes> = params
        .chunks(width)
        .filter_map(|c| {
            let refs: Vec<&AtcParams> = c.iter().collect();
            LayerLanes::new(&refs, cfg.bars, Isa::Auto).ok()
        })
        .collect();
    let time = |f: &dyn Fn() -> Result<(), BenchError>| -> Result<f64, BenchError> {
        let t = Instant::now();
        f()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let measure = |threads: usize| -> Result<[Vec<f64>; 4], BenchError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        pool.install(|| {
            // One untimed pass of each warms caches and the allocator.
            one_run()?;
            one_sweep()?;
            let mut t: [Vec<f64>; 4] = Default::default();
            for _ in 0..cfg.repeat.max(1) {
                t[0].push(time(&one_run)?);
                t[1].push(time(&one_sweep)?);
                let s = Instant::now();
                let shared = shared_stage();
                t[2].push(s.elapsed().as_secs_f64());
                let s = Instant::now();
                let n: usize = shared
                    .par_iter()
                    .map_init(
                        || (LaneScratch::default(), Vec::new(), Vec::new()),
                        |(sc, avg, dirs), sh| {
                            let mut n = 0;
                            for (ll, p) in lanes.iter().zip(params.chunks(width)) {
                                ll.average_signal(sh, sc, avg);
                                // As the sweep: every lane's direction in
                                // one pass.
                                let wanted: Vec<LaneThresholds> = p
                                    .iter()
                                    .enumerate()
                                    .map(|(lane, p)| LaneThresholds::of(lane, p))
                                    .collect();
                                dirs.resize(wanted.len(), Vec::new());
                                lane_directions(avg, ll.width(), &wanted, dirs);
                                n += dirs.iter().map(Vec::len).sum::<usize>();
                            }
                            n
                        },
                    )
                    .sum();
                std::hint::black_box(n);
                t[3].push(s.elapsed().as_secs_f64());
            }
            Ok(t)
        })
    };
    let combo_bars = (combos * cfg.symbols * cfg.bars) as f64;
    let [mut runs, mut sweeps, mut shared_s, mut layers_s] = measure(cfg.threads)?;
    let mut one = if cfg.threads == 1 {
        sweeps.clone()
    } else {
        measure(1)?[1].clone()
    };
    let (run_s, sweep_s) = (median(&mut runs), median(&mut sweeps));
    let rate = |s: f64| combo_bars / s.max(1e-12);
    let mut rates: Vec<f64> = sweeps.iter().map(|&s| rate(s)).collect();
    rates.sort_by(f64::total_cmp);
    let med1 = rate(median(&mut one));
    let med = rate(sweep_s);
    let flag = |name: &str| {
        grid.axes
            .iter()
            .find(|(a, _)| a == name)
            .map(|(_, v)| {
                v.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    Ok(BenchReport {
        bars_per_s_1_thread_median: Some(med1),
        speedup_vs_1_thread: Some(if med1 > 0.0 { med / med1 } else { 0.0 }),
        sweep: Some(SweepFigures {
            combos,
            grid: format!("--lambda {} --decay {}", flag("lambda"), flag("decay")),
            run_s_median: run_s,
            sweep_s_median: sweep_s,
            sweep_in_runs: sweep_s / run_s.max(1e-12),
            shared_stage_s_median: median(&mut shared_s),
            layers_s_median: median(&mut layers_s),
        }),
        ..BenchReport::base(cfg, cfg.stage, cfg.engine, med, &rates)
    })
}

/// Process CPU time (user + system, every thread) in seconds, from
/// `/proc/self/stat` (Linux; 0 elsewhere). Ticks are 1/100 s, the
/// `USER_HZ` of every Linux ABI.
pub fn process_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces).
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// The `run` stage: writes `data synth`'s seeded set into a scratch
/// directory, opens it (not timed), then alternates the engine alone and
/// the whole run path on it.
fn run_stage(cfg: &BenchConfig) -> Result<BenchReport, BenchError> {
    use crate::data::{DataOptions, Dataset};
    use crate::run::{run_to_dir, RunPlan, Strategy};
    let scratch = scratch_dir("run");
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| BenchError::Io { path, source }
    };
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(scratch.join("data")).map_err(io(&scratch))?;
    let result = (|| {
        let file = scratch.join("data").join("synth.parquet");
        crate::data::synth::synth(cfg.symbols, cfg.bars, 42, &file)?;
        let data = Dataset::open(
            &DataOptions {
                data: file,
                store: Some(scratch.join("store")),
                ..Default::default()
            },
            &mut |_| {},
        )?;
        let strategy = Strategy::shipped_default().map_err(|e| BenchError::Io {
            path: "strategies/atc_default.toml".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let plan = RunPlan {
            series: (0..data.series().len()).collect(),
            from: None,
            to: None,
            warmup_bars: None,
        }
        .pinned(&data);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .build()?;
        let total = data.total_bars() as f64;
        let engine = || -> usize {
            let closes: Vec<&[f64]> = plan.series.iter().map(|&i| data.view(i).close).collect();
            compute_batch(&closes, &strategy.atc, BatchDetail::Direction)
                .map(|v| v.iter().flatten().map(|o| o.dir.len()).sum())
                .unwrap_or(0)
        };
        let out = scratch.join("out");
        let mut files = Vec::new();
        // The previous pass's files are removed before the clock starts:
        // deleting 150 MB of output took 140 ms here, a cost of the
        // benchmark's loop, not of a run (which writes into a new
        // directory).
        let clear = || -> Result<(), BenchError> {
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out).map_err(io(&out))
        };
        let mut run = |keep: bool| -> Result<(), BenchError> {
            run_to_dir(
                &data,
                &plan,
                &strategy,
                false,
                None,
                &crate::cache::Cache::disabled(),
                &|_| {},
                &out,
                cfg.outputs,
            )?;
            if keep {
                files = list_files(&out);
            }
            Ok(())
        };
        // One untimed pass of each warms the page cache and the allocator.
        pool.install(engine);
        clear()?;
        pool.install(|| run(true))?;
        let (mut engine_rate, mut run_rate, mut each) = (vec![], vec![], vec![]);
        let (mut engine_cpu, mut run_cpu) = (0.0, 0.0);
        for _ in 0..cfg.repeat.max(1) {
            let (c, t) = (process_cpu_s(), Instant::now());
            std::hint::black_box(pool.install(engine));
            let e = total / t.elapsed().as_secs_f64().max(1e-12);
            engine_cpu += process_cpu_s() - c;
            clear()?;
            let (c, t) = (process_cpu_s(), Instant::now());
            pool.install(|| run(false))?;
            let r = total / t.elapsed().as_secs_f64().max(1e-12);
            run_cpu += process_cpu_s() - c;
            engine_rate.push(e);
            run_rate.push(r);
            each.push(r / e);
        }
        let bytes: u64 = files.iter().map(|f: &(String, u64)| f.1).sum();
        let (med, med_engine) = (median(&mut run_rate.clone()), median(&mut engine_rate));
        run_rate.sort_by(f64::total_cmp);
        Ok(BenchReport {
            run: Some(RunStageReport {
                engine_bars_per_s_median: med_engine,
                run_vs_engine: if med_engine > 0.0 {
                    med / med_engine
                } else {
                    0.0
                },
                run_vs_engine_each: each,
                run_vs_engine_cpu: if run_cpu > 0.0 {
                    engine_cpu / run_cpu
                } else {
                    0.0
                },
                output_bytes_per_bar: bytes as f64 / total.max(1.0),
                files,
            }),
            ..BenchReport::base(cfg, Stage::Run, EngineKind::Batched, med, &run_rate)
        })
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// The files of `dir` with their sizes, by name.
fn list_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.metadata().ok()?.len())))
        .collect();
    v.sort();
    v
}
