//! Per-stage benchmarks of the engine (criterion), so a regression shows in
//! the stage that caused it: each MA family (nine lengths), the cross
//! signals, and the equity/layer stage. 10,000 seeded bars, default
//! parameters; throughput in bars per second.

use atc_bt::engine::{cross_signal, layers, ma, signal_bank, AtcParams, Detail, Family};
use atc_bt::synthetic::random_walk;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const BARS: usize = 10_000;

fn stages(c: &mut Criterion) {
    let params = AtcParams::default();
    let close = random_walk(3, BARS);
    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Elements(BARS as u64));
    g.sample_size(20);
    for family in Family::ALL {
        let lens = params.lengths(family).unwrap_or([28; 9]);
        g.bench_with_input(BenchmarkId::new("ma_x9", family.name()), &close, |b, x| {
            b.iter(|| {
                lens.iter()
                    .map(|&l| ma::moving_average(family, black_box(x), l)[BARS - 1])
                    .sum::<f64>()
            })
        });
    }
    let ema = ma::ema(&close, 28);
    g.bench_function("cross_signal_x54", |b| {
        b.iter(|| {
            (0..54)
                .map(|_| cross_signal(black_box(&close), &ema)[BARS - 1] as i32)
                .sum::<i32>()
        })
    });
    let (bank, _) = signal_bank(&close, &params, false);
    g.bench_function("signal_bank", |b| {
        b.iter(|| signal_bank(black_box(&close), &params, false).0.sig.len())
    });
    g.bench_function("layers", |b| {
        b.iter(|| layers(black_box(&bank), &params, Detail::Signal).dir[BARS - 1])
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
