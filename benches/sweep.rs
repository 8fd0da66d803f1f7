//! Shared work in sweeps, side by side in one run (criterion).
//!
//! `per_combination`: the engine work of 8 (lambda, decay) combinations
//! over 64 symbols × 1,500 bars, three ways:
//! - `batched_engine`: the full batched engine once per combination (what
//!   `sweep` did before the shared stage);
//! - `single_bank_layers`: the single-series signal bank once per symbol,
//!   then `layers` per combination (the older alternative);
//! - `shared_stage_lanes`: the shared stage once per symbol, then the
//!   layer kernel with the 8 pairs in SIMD lanes and a direction per
//!   combination (what `sweep` does now).
//!
//! `shared_stage`: the shared stage of 500 symbols computed. (It was
//! measured here against a restore from a warm on-disk `bank` cache kind,
//! opened fresh as a second sweep would: the stage is ~1% of a sweep, so
//! the restore could not pay, and the kind was removed.)

use atc_bt::engine::batch::{compute_batch_isa, Isa};
use atc_bt::engine::{
    lane_directions, layers, shared_signals, signal_bank, AtcParams, BatchDetail, Detail,
    LaneScratch, LaneThresholds, LayerLanes,
};
use atc_bt::synthetic::random_walk;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const SYMBOLS: usize = 64;
const BARS: usize = 1_500;
const COMBOS: usize = 8;

fn combos() -> Vec<AtcParams> {
    (0..COMBOS)
        .map(|k| AtcParams {
            lambda: 0.01 + 0.01 * k as f64,
            decay: 0.01 + 0.005 * k as f64,
            ..AtcParams::default()
        })
        .collect()
}

fn per_combination(c: &mut Criterion) {
    let series: Vec<Vec<f64>> = (0..SYMBOLS).map(|s| random_walk(s as u64, BARS)).collect();
    let refs: Vec<&[f64]> = series.iter().map(|s| s.as_slice()).collect();
    let combos = combos();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a thread pool");
    let mut g = c.benchmark_group("per_combination");
    g.throughput(Throughput::Elements((SYMBOLS * BARS * COMBOS) as u64));
    g.sample_size(10);
    g.bench_function("batched_engine", |b| {
        b.iter(|| {
            pool.install(|| {
                combos
                    .iter()
                    .map(|p| {
                        compute_batch_isa(black_box(&refs), p, BatchDetail::Direction, Isa::Auto)
                            .map(|v| v.len())
                            .unwrap_or(0)
                    })
                    .sum::<usize>()
            })
        })
    });
    g.bench_function("single_bank_layers", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for close in &series {
                let (bank, _) = signal_bank(black_box(close), &combos[0], false);
                for p in &combos {
                    n += layers(&bank, p, Detail::Signal).dir.len();
                }
            }
            n
        })
    });
    let lane_params: Vec<&AtcParams> = combos.iter().collect();
    let lanes: Vec<LayerLanes> = lane_params
        .chunks(LayerLanes::max_width(Isa::Auto))
        .filter_map(|c| LayerLanes::new(c, BARS, Isa::Auto).ok())
        .collect();
    g.bench_function("shared_stage_lanes", |b| {
        b.iter(|| {
            pool.install(|| {
                let shared = shared_signals(black_box(&refs), &combos[0], Isa::Auto)
                    .map(|v| v.into_iter().flatten().collect::<Vec<_>>())
                    .unwrap_or_default();
                let (mut scratch, mut avg, mut dirs) =
                    (LaneScratch::default(), Vec::new(), Vec::new());
                let mut n = 0usize;
                for sh in &shared {
                    for ll in &lanes {
                        ll.average_signal(sh, &mut scratch, &mut avg);
                        let wanted: Vec<LaneThresholds> = combos
                            .iter()
                            .enumerate()
                            .take(ll.lanes())
                            .map(|(lane, p)| LaneThresholds::of(lane, p))
                            .collect();
                        dirs.resize(wanted.len(), Vec::new());
                        lane_directions(&avg, ll.width(), &wanted, &mut dirs);
                        n += dirs.iter().map(Vec::len).sum::<usize>();
                    }
                }
                n
            })
        })
    });
    g.finish();
}

fn shared_stage(c: &mut Criterion) {
    const MANY: usize = 500;
    let series: Vec<Vec<f64>> = (0..MANY).map(|s| random_walk(s as u64, BARS)).collect();
    let refs: Vec<&[f64]> = series.iter().map(|s| s.as_slice()).collect();
    let p = AtcParams::default();
    let mut g = c.benchmark_group("shared_stage");
    g.throughput(Throughput::Elements((MANY * BARS) as u64));
    g.sample_size(10);
    g.bench_function("compute", |b| {
        b.iter(|| shared_signals(black_box(&refs), &p, Isa::Auto).map(|v| v.len()))
    });
    g.finish();
}

criterion_group!(benches, per_combination, shared_stage);
criterion_main!(benches);
