//! `atc-bt bench`: throughput of the full ATC (54 MAs, 54 signals, 54
//! equities, layer 1 and 2, average, direction) or of the backtest stage on
//! a seeded synthetic set, at N threads and at 1 thread in the same run.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::backtest::{simulate, Bars, ExecConfig};
use crate::engine::{compute_batch, compute_unchecked, AtcParams, BatchDetail, Detail};
use crate::synthetic::random_walk;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The full ATC engine per symbol.
    Full,
    /// Positions, fills, equity, trades and every metric, from a given
    /// direction series.
    Backtest,
}

/// Which ATC engine the `full` stage times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
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
    /// Median bars/s at 1 thread.
    pub bars_per_s_1_thread_median: f64,
    /// `bars_per_s_median / bars_per_s_1_thread_median`.
    pub speedup_vs_1_thread: f64,
    /// Peak resident memory of the process (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// Engine timed (`full` stage).
    pub engine: EngineKind,
    /// With `compare`: the other engine's median bars/s at `threads`.
    pub other_engine_bars_per_s_median: Option<f64>,
    /// With `compare`: `bars_per_s_median / other_engine_bars_per_s_median`.
    pub ratio_vs_other_engine: Option<f64>,
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

/// Runs the benchmark. Errors only if a thread pool cannot start.
pub fn run_bench(cfg: &BenchConfig) -> Result<BenchReport, rayon::ThreadPoolBuildError> {
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
            (Stage::Backtest, _) => (0..cfg.symbols)
                .into_par_iter()
                .map(|i| {
                    let bars = Bars {
                        ts: &ts,
                        open: &opens[i],
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
        stage: cfg.stage,
        symbols: cfg.symbols,
        bars: cfg.bars,
        threads: cfg.threads,
        repeat: cfg.repeat.max(1),
        bars_per_s_median: med,
        bars_per_s_min: many.first().copied().unwrap_or(0.0),
        bars_per_s_max: many.last().copied().unwrap_or(0.0),
        bars_per_s_1_thread_median: med1,
        speedup_vs_1_thread: if med1 > 0.0 { med / med1 } else { 0.0 },
        peak_rss_mib: peak_rss_mib(),
        engine: cfg.engine,
        other_engine_bars_per_s_median: other,
        ratio_vs_other_engine: other.filter(|&o| o > 0.0).map(|o| med / o),
    })
}
