//! Shared work in sweeps, side by side in one run: N lambda/decay/cutout
//! combinations computed as N full engine runs versus one signal bank per
//! symbol plus N layer stages (what `atc-bt sweep` does). The ratio of the
//! two, and of one `layers` call to one full `compute`, is the marginal cost
//! of one more combination.

use atc_bt::engine::{compute_unchecked, layers, signal_bank, AtcParams, Detail};
use atc_bt::synthetic::random_walk;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const SYMBOLS: usize = 20;
const BARS: usize = 1_500;
const COMBOS: usize = 10;

fn combos() -> Vec<AtcParams> {
    (0..COMBOS)
        .map(|k| AtcParams {
            lambda: 0.01 + 0.01 * k as f64,
            decay: 0.01 + 0.005 * k as f64,
            cutout: 5 * k,
            ..AtcParams::default()
        })
        .collect()
}

fn sweep_vs_runs(c: &mut Criterion) {
    let series: Vec<Vec<f64>> = (0..SYMBOLS).map(|s| random_walk(s as u64, BARS)).collect();
    let combos = combos();
    let mut g = c.benchmark_group("sweep_10_combos");
    g.throughput(Throughput::Elements((SYMBOLS * BARS * COMBOS) as u64));
    g.sample_size(10);
    g.bench_function("separate_runs", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for close in &series {
                for p in &combos {
                    n += compute_unchecked(black_box(close), p, Detail::Signal)
                        .dir
                        .len();
                }
            }
            n
        })
    });
    g.bench_function("shared_bank", |b| {
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
    g.finish();
    let mut g = c.benchmark_group("one_combination");
    g.throughput(Throughput::Elements(BARS as u64));
    let (bank, _) = signal_bank(&series[0], &combos[0], false);
    g.bench_function("full_compute", |b| {
        b.iter(|| {
            compute_unchecked(black_box(&series[0]), &combos[1], Detail::Signal)
                .dir
                .len()
        })
    });
    g.bench_function("layers_only", |b| {
        b.iter(|| {
            layers(black_box(&bank), &combos[1], Detail::Signal)
                .dir
                .len()
        })
    });
    g.finish();
}

criterion_group!(benches, sweep_vs_runs);
criterion_main!(benches);
