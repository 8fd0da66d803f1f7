//! Engine benchmarks (criterion), single-series and batched: full ATC on seeded synthetic
//! prices. Throughput is reported in bars (elements) per second.

use atc_bt::engine::{compute, compute_batch, AtcParams, BatchDetail, Detail};
use atc_bt::synthetic::random_walk;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn single_series(c: &mut Criterion) {
    let params = AtcParams::default();
    let mut g = c.benchmark_group("engine_single");
    for bars in [1_000usize, 10_000, 100_000] {
        let close = random_walk(1, bars);
        g.throughput(Throughput::Elements(bars as u64));
        g.sample_size(10);
        g.bench_with_input(BenchmarkId::new("signal", bars), &close, |b, close| {
            b.iter(|| compute(black_box(close), &params, Detail::Signal).map(|o| o.dir.len()))
        });
    }
    g.finish();
}

fn many_series(c: &mut Criterion) {
    let params = AtcParams::default();
    let series: Vec<Vec<f64>> = (0..1_000).map(|s| random_walk(s, 1_500)).collect();
    let mut g = c.benchmark_group("engine_many");
    g.throughput(Throughput::Elements(1_000 * 1_500));
    g.sample_size(10);
    g.bench_function("1000x1500_signal_1thread", |b| {
        b.iter(|| {
            series
                .iter()
                .map(|s| {
                    compute(s, &params, Detail::Signal)
                        .map(|o| o.dir.len())
                        .unwrap_or(0)
                })
                .sum::<usize>()
        })
    });
    let refs: Vec<&[f64]> = series.iter().map(|s| s.as_slice()).collect();
    g.bench_function("1000x1500_batched_current_pool", |b| {
        b.iter(|| {
            compute_batch(black_box(&refs), &params, BatchDetail::Direction)
                .map(|v| v.len())
                .unwrap_or(0)
        })
    });
    g.finish();
}

criterion_group!(benches, single_series, many_series);
criterion_main!(benches);
