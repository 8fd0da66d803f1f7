//! The sweep's shared-work kernel (`engine::shared_signals` once per series
//! and length set, then `LayerLanes` for several (lambda, decay) pairs side
//! by side) must give, for every pair and every pair of thresholds, exactly
//! the bits of the engine run once per combination: the average signal,
//! the direction, and the signals and rate of change of the shared stage.
//! Random series (flat stretches, jumps, ragged lengths), random grids,
//! every instruction-set path, 1 and 2 threads. And the whole sweep: every
//! combination's rows equal `run` with that combination's parameters.

use atc_bt::engine::batch::{compute_batch_isa, Isa};
use atc_bt::engine::{
    compute, lane_directions, shared_signals, AtcParams, BatchDetail, Detail, LaneScratch,
    LaneThresholds, LayerLanes, Robustness,
};
use atc_bt::synthetic::SplitMix64;

use crate::common;

fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// A price path with flat stretches (ties, zero KAMA noise) and large
/// moves (the equity floor).
fn series(rng: &mut SplitMix64, n: usize) -> Vec<f64> {
    let mut p = 20.0 + 100.0 * rng.next_f64();
    (0..n)
        .map(|_| {
            let u = rng.next_f64();
            if u < 0.15 {
                // flat bar
            } else if u < 0.18 {
                p *= 0.5 + rng.next_f64();
            } else {
                p *= 1.0 + 0.04 * (rng.next_f64() - 0.5);
            }
            p
        })
        .collect()
}

fn pick(rng: &mut SplitMix64, k: u64) -> usize {
    (rng.next_u64() % k) as usize
}

/// Lengths and the non-swept parameters of one length group.
fn base(rng: &mut SplitMix64) -> AtcParams {
    let rob = [Robustness::Narrow, Robustness::Medium, Robustness::Wide][pick(rng, 3)];
    let mut p = AtcParams {
        robustness: rob,
        ema_len: 9 + pick(rng, 30),
        hma_len: 9 + pick(rng, 30),
        wma_len: 9 + pick(rng, 30),
        dema_len: 9 + pick(rng, 30),
        lsma_len: 9 + pick(rng, 30),
        kama_len: 9 + pick(rng, 30),
        ..AtcParams::default()
    };
    if pick(rng, 2) == 0 {
        p.kama_w = 0.1; // below the 0.25 floor
        p.ema_w = 2.0;
        p.starting_equity = 0.2;
    }
    p
}

#[test]
fn shared_kernel_equals_the_engine_per_combination() {
    let mut rng = SplitMix64::new(20);
    for case in 0..12 {
        let base = base(&mut rng);
        let cutout = [0, 0, 1, 5, 40, 300][pick(&mut rng, 6)];
        let symbols = [1usize, 3, 4, 9][case % 4];
        let closes: Vec<Vec<f64>> = (0..symbols)
            .map(|_| {
                let n = 1 + pick(&mut rng, 600);
                series(&mut rng, n)
            })
            .collect();
        let refs: Vec<&[f64]> = closes.iter().map(|c| c.as_slice()).collect();
        let longest = closes.iter().map(|c| c.len()).max().unwrap_or(0);
        for isa in [Isa::Auto, Isa::Avx2, Isa::Baseline] {
            let lanes = 1 + pick(&mut rng, LayerLanes::max_width(isa) as u64);
            let combos: Vec<AtcParams> = (0..lanes)
                .map(|_| AtcParams {
                    lambda: [0.0, 0.02, 0.5 * rng.next_f64(), 40.0][pick(&mut rng, 4)],
                    decay: [0.0, 0.03, 0.25 * rng.next_f64(), 20.0][pick(&mut rng, 4)],
                    cutout,
                    ..base.clone()
                })
                .collect();
            let lane_refs: Vec<&AtcParams> = combos.iter().collect();
            // A table shorter than some series exercises the slow growth path.
            let table_bars = if case % 3 == 0 { longest / 2 } else { longest };
            let ll = LayerLanes::new(&lane_refs, table_bars, isa).unwrap();
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let shared = pool.install(|| shared_signals(&refs, &base, isa)).unwrap();
                let mut scratch = LaneScratch::default();
                let mut avg = Vec::new();
                let mut dir = Vec::new();
                let mut dirs = Vec::new();
                for (s, (close, sh)) in closes.iter().zip(&shared).enumerate() {
                    // Every (thresholds, lane) direction at once, thresholds
                    // first (whole batches of lanes 0..width) and lanes first.
                    let mut all: Vec<(LaneThresholds, Vec<i8>)> = Vec::new();
                    let sh = sh.as_ref().unwrap();
                    ll.average_signal(sh, &mut scratch, &mut avg);
                    let w = ll.width();
                    for (l, p) in combos.iter().enumerate() {
                        let what = format!(
                            "case {case}, {isa:?}, {threads} threads, symbol {s}, lane {l}, {p:?}"
                        );
                        let full = compute(close, p, Detail::Full).unwrap();
                        if l == 0 {
                            assert!(same(sh.r(), &full.r), "{what}: r");
                            for ma in 0..54 {
                                let sig: Vec<i8> =
                                    (0..close.len()).map(|i| sh.signal(ma, i)).collect();
                                assert_eq!(sig, full.sig[ma], "{what}: signal {ma}");
                            }
                            assert_eq!(sh.to_bank().sig, full.sig, "{what}: to_bank");
                        }
                        let lane_avg: Vec<f64> = (0..close.len()).map(|i| avg[i * w + l]).collect();
                        assert!(same(&lane_avg, &full.avg), "{what}: avg");
                        for (lt, st) in [(0.1, -0.1), (0.0, 0.0), (0.3, -0.05)] {
                            let q = AtcParams {
                                long_threshold: lt,
                                short_threshold: st,
                                ..p.clone()
                            };
                            let want = compute(close, &q, Detail::Signal).unwrap();
                            let lane = LaneThresholds {
                                lane: l,
                                long: lt,
                                short: st,
                            };
                            lane_directions(&avg, w, &[lane], std::slice::from_mut(&mut dir));
                            assert_eq!(dir, want.dir, "{what}: dir {lt} {st}");
                            all.push((lane, want.dir));
                        }
                    }
                    for lanes_first in [false, true] {
                        let mut order: Vec<&(LaneThresholds, Vec<i8>)> = all.iter().collect();
                        if !lanes_first {
                            order.sort_by(|a, b| a.0.long.total_cmp(&b.0.long));
                        }
                        let wanted: Vec<LaneThresholds> = order.iter().map(|(t, _)| *t).collect();
                        dirs.resize(wanted.len(), Vec::new());
                        lane_directions(&avg, ll.width(), &wanted, &mut dirs);
                        for ((t, want), got) in order.iter().zip(&dirs) {
                            assert_eq!(got, want, "case {case}, {isa:?}, symbol {s}: {t:?}");
                        }
                    }
                }
                // And against the batched engine of `run`, on this path.
                let batched = pool
                    .install(|| compute_batch_isa(&refs, &combos[0], BatchDetail::Direction, isa))
                    .unwrap();
                for (sh, b) in shared.iter().zip(batched) {
                    ll.average_signal(sh.as_ref().unwrap(), &mut scratch, &mut avg);
                    let b = b.unwrap();
                    let lane: Vec<f64> = (0..b.avg.len()).map(|i| avg[i * ll.width()]).collect();
                    assert!(same(&lane, &b.avg), "case {case}, {isa:?}: batched avg");
                }
            }
        }
    }
}

#[test]
fn shared_stage_reports_bad_series_and_params_like_the_engine() {
    let good: Vec<f64> = (1..=100).map(|i| i as f64).collect();
    let bad = vec![1.0, f64::NAN, 2.0];
    let empty: Vec<f64> = Vec::new();
    let refs: Vec<&[f64]> = vec![&good, &bad, &empty, &good];
    let out = shared_signals(&refs, &AtcParams::default(), Isa::Auto).unwrap();
    assert!(out[0].is_ok() && out[3].is_ok());
    assert_eq!(
        out[1].as_ref().unwrap_err().to_string(),
        compute(&bad, &AtcParams::default(), Detail::Signal)
            .unwrap_err()
            .to_string()
    );
    assert!(out[2].is_err());
    let bad_params = AtcParams {
        ema_len: 1,
        ..AtcParams::default()
    };
    assert!(shared_signals(&refs, &bad_params, Isa::Auto).is_err());
    // Lanes must share cutout, starting equity and weights.
    let a = AtcParams::default();
    let b = AtcParams {
        cutout: 3,
        ..AtcParams::default()
    };
    let e = LayerLanes::new(&[&a, &b], 100, Isa::Auto).unwrap_err();
    assert!(e.to_string().contains("cutout"), "{e}");
    assert!(LayerLanes::new(&[], 100, Isa::Auto).is_err());
}

/// Every row of a sweep (each symbol, then the portfolio and benchmark
/// rows, in every sample) is the metrics of `run` with that combination's
/// parameters on that sample's window, bit for bit (compared as JSON,
/// which tells -0.0 from 0.0), on ragged series (some end inside a sample:
/// closed at their last bar), over lambda, decay, cutout, threshold and
/// lengths axes, with a risk-free rate, and a sweep on 1 thread writes the
/// rows of 2 threads.
#[test]
fn every_sweep_row_equals_run_with_its_parameters() {
    use atc_bt::backtest::ExitReason;
    use atc_bt::run::output::Aggregate;
    use atc_bt::run::{run, RunPlan, Strategy};
    use atc_bt::sweep::{pin_samples, samples, sweep, Grid, Row};

    let tmp = tempfile::tempdir().unwrap();
    let (data, plan, full) = ragged_data(tmp.path());
    // Many axes (one chunk per lengths group), and a long lambda axis
    // (several chunks: rows written while the next chunk runs).
    let grids: Vec<Grid> = [
        &[
            ("lambda", "0.02,0.07,0.3"),
            ("decay", "0.03,0.2"),
            ("cutout", "0,7,500"),
            ("long_threshold", "0.1,0.3"),
            ("ema_len", "20,28"),
        ][..],
        &[("lambda", "0.01:0.2:0.01"), ("decay", "0.03,0.2")][..],
    ]
    .iter()
    .map(|axes| {
        let mut g = Grid::default();
        for (axis, values) in axes.iter() {
            g.set_axis(axis, values).unwrap();
        }
        g
    })
    .collect();
    let mut base = Strategy::default();
    base.metrics.risk_free = 0.02;
    // As `atc-bt sweep` does: each sample ends at the selection's last bar.
    let mut smp = samples(plan.from, plan.to, Some(full[250]));
    pin_samples(&data, &plan.series, &mut smp);
    for grid in &grids {
        let rows_on = |threads: usize| -> Vec<Row> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut rows = Vec::new();
            let cache = atc_bt::cache::Cache::disabled();
            pool.install(|| {
                sweep(
                    &data,
                    &plan,
                    grid,
                    &base,
                    &smp,
                    false,
                    &cache,
                    &mut |r| {
                        rows.extend(r);
                        Ok(())
                    },
                    &|| {},
                )
            })
            .unwrap();
            rows
        };
        let text = |m: &atc_bt::backtest::Metrics| serde_json::to_string(m).unwrap();
        let who = |r: &Row| format!("{:?} {:?}", r.symbol, r.aggregate);
        let keyed = |rows: &[Row]| -> Vec<(usize, String, String, String)> {
            rows.iter()
                .map(|r| (r.combo, r.sample.clone(), who(r), text(&r.metrics)))
                .collect()
        };
        let rows = rows_on(2);
        let (one, two) = (keyed(&rows_on(1)), keyed(&rows));
        assert!(one == two, "1 and 2 threads differ");
        let mut checked = 0;
        let mut ended = 0;
        for c in 0..grid.count() as usize {
            let strategy = Strategy {
                atc: grid.combo(&base.atc, c),
                execution: base.execution.clone(),
                metrics: base.metrics.clone(),
            };
            for s in &smp {
                let p = RunPlan {
                    from: s.from,
                    to: s.to,
                    ..plan.clone()
                };
                let r = run(&data, &p, &strategy, false, &|| {}).unwrap();
                ended += r
                    .symbols
                    .iter()
                    .flat_map(|x| &x.run.trades)
                    .filter(|t| t.exit_reason == ExitReason::EndOfData)
                    .count();
                let mut want: Vec<(String, String)> = r
                    .symbols
                    .iter()
                    .map(|x| {
                        let symbol = Some(x.run.symbol.clone());
                        (format!("{symbol:?} None"), text(&x.metrics))
                    })
                    .collect();
                for (agg, m) in [
                    (Aggregate::Portfolio, &r.portfolio_metrics),
                    (Aggregate::Benchmark, &r.benchmark_metrics),
                ] {
                    want.push((format!("None {:?}", Some(agg)), text(m)));
                }
                let got: Vec<(String, String)> = rows
                    .iter()
                    .filter(|x| x.combo == c && x.sample == s.name)
                    .map(|x| (who(x), text(&x.metrics)))
                    .collect();
                assert_eq!(got, want, "combo {c} sample {}", s.name);
                checked += got.len();
            }
        }
        assert_eq!(checked, rows.len());
        assert!(ended > 0, "no position closed at the end of its data");
        assert!(checked >= grid.count() as usize * 3 * 5, "{checked}");
    }
}

/// The best combination's curves a sweep keeps ([`sweep_ranked`], what
/// `best_equity.parquet` is written from) are `run`'s portfolio and
/// benchmark for that combination, bit for bit: ragged series, a split
/// (ranked on `in`, and on `full`), several chunks, a metric where higher
/// is better and one where lower is (`max_drawdown`); the best is
/// `Ranking::order`'s first; and [`sweep`] (no ranking) keeps none.
#[test]
fn a_sweeps_best_curve_is_the_run_of_its_best_combination() {
    use atc_bt::run::{run, Strategy};
    use atc_bt::sweep::{pin_samples, samples, sweep, sweep_ranked, Grid, RankBy, Ranking};

    let tmp = tempfile::tempdir().unwrap();
    let (data, plan, full) = ragged_data(tmp.path());
    let mut grid = Grid::default();
    grid.set_axis("lambda", "0.01:0.2:0.01").unwrap();
    grid.set_axis("decay", "0.03,0.2").unwrap();
    let base = Strategy::default();
    let mut smp = samples(plan.from, plan.to, Some(full[250]));
    pin_samples(&data, &plan.series, &mut smp);
    let cache = atc_bt::cache::Cache::disabled();
    let bits = |c: &atc_bt::backtest::Curve| -> (Vec<i64>, Vec<u64>, Vec<u64>) {
        (
            c.ts.clone(),
            c.equity.iter().map(|v| v.to_bits()).collect(),
            c.gross.iter().map(|v| v.to_bits()).collect(),
        )
    };
    for (metric, ranked) in [("sharpe", 1), ("max_drawdown", 1), ("total_return", 0)] {
        let mut ranking = Ranking::new(&grid, &base.atc, metric, &smp, ranked);
        let result = sweep_ranked(
            &data,
            &plan,
            &grid,
            &base,
            &smp,
            false,
            &cache,
            RankBy { metric, ranked },
            &mut |rows| {
                ranking.add(&rows);
                Ok(())
            },
            &|| {},
        )
        .unwrap();
        let best = ranking.order()[0];
        let kept = result
            .best_curve
            .expect("the best combination's curves kept");
        assert_eq!(kept.combo, best, "{metric}");
        let r = run(&data, &plan, &grid.strategy(&base, best), false, &|| {}).unwrap();
        assert_eq!(
            bits(&kept.portfolio),
            bits(&r.portfolio),
            "{metric}: portfolio"
        );
        assert_eq!(
            bits(&kept.benchmark),
            bits(&r.benchmark),
            "{metric}: benchmark"
        );
        assert!(kept.portfolio.ts.len() > 300);
    }
    let plain = sweep(
        &data,
        &plan,
        &grid,
        &base,
        &smp,
        false,
        &cache,
        &mut |_| Ok(()),
        &|| {},
    );
    assert!(plain.unwrap().best_curve.is_none());
}

/// Seven ragged series (different lengths, starts and ends, so windows,
/// spans and the portfolio timeline differ per symbol and sample; one
/// rises into its last bar inside the window, so it is closed there at the
/// end of its data) in a store under `dir`, the plan of a window with
/// warm-up over them, and their weekday timestamps.
fn ragged_data(dir: &std::path::Path) -> (atc_bt::data::Dataset, atc_bt::run::RunPlan, Vec<i64>) {
    use atc_bt::data::{DataOptions, Dataset};
    let path = dir.join("ragged.parquet");
    let full = common::weekdays(420);
    let series: Vec<common::Series> = (0..7u64)
        .map(|k| {
            let (skip, len) = (
                [0, 30, 0, 90, 5, 0, 200][k as usize],
                [420, 390, 300, 330, 400, 250, 220][k as usize],
            );
            let mut s = common::walk(&format!("R{k}"), 90 + k, len);
            s.ts = full[skip..skip + len].to_vec();
            if k == 2 {
                for i in len - 80..len {
                    s.close[i] = s.close[i - 1] * 1.01;
                    s.open[i] = (s.close[i - 1] + s.close[i]) / 2.0;
                }
            }
            s
        })
        .collect();
    common::write_ohlcv(&path, &series);
    let data = Dataset::open(
        &DataOptions {
            data: path,
            store: Some(dir.join("store")),
            ..Default::default()
        },
        &mut |_| {},
    )
    .unwrap();
    let plan = atc_bt::run::RunPlan {
        series: (0..data.series().len()).collect(),
        from: Some(full[20]),
        to: Some(full[400]),
        warmup_bars: Some(60),
    };
    (data, plan, full)
}
