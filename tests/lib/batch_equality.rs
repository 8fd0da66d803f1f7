//! The batched engine (`engine::compute_batch`) must give, for every
//! series, exactly the bits of the single-series engine (`engine::compute`
//! with `Detail::Signal`): on random series of ragged lengths, for batch
//! sizes that fill, underfill and overflow the lanes, with and without a
//! cutout, on 1 and 2 threads, and on every instruction-set path. NaN is
//! compared as "both NaN" (its payload carries no meaning); every other
//! value bit for bit. The golden cases go through the batched path too.

use std::path::{Path, PathBuf};

use atc_bt::engine::batch::{compute_batch_isa, Isa};
use atc_bt::engine::{compute, AtcOutput, AtcParams, BatchDetail, Detail, Robustness};
use atc_bt::synthetic::SplitMix64;

fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

fn assert_same(batched: &AtcOutput, single: &AtcOutput, what: &str) {
    assert_eq!(batched.dir, single.dir, "{what}: dir");
    assert!(same(&batched.avg, &single.avg), "{what}: avg");
    assert!(same(&batched.r, &single.r), "{what}: r");
    assert_eq!(batched.l1.len(), 6, "{what}");
    for f in 0..6 {
        assert!(same(&batched.l1[f], &single.l1[f]), "{what}: l1 family {f}");
        assert!(
            same(&batched.eq2[f], &single.eq2[f]),
            "{what}: eq2 family {f}"
        );
    }
}

/// A price path with occasional flat stretches (ties between close and an
/// MA, zero KAMA noise) and large moves (equity floor).
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

fn params(rng: &mut SplitMix64) -> AtcParams {
    let pick = |rng: &mut SplitMix64, k: u64| (rng.next_u64() % k) as usize;
    let rob = [Robustness::Narrow, Robustness::Medium, Robustness::Wide][pick(rng, 3)];
    let mut p = AtcParams {
        robustness: rob,
        ema_len: 8 + pick(rng, 30),
        hma_len: 8 + pick(rng, 30),
        wma_len: 8 + pick(rng, 30),
        dema_len: 8 + pick(rng, 30),
        lsma_len: 8 + pick(rng, 30),
        kama_len: 8 + pick(rng, 30),
        lambda: 0.5 * rng.next_f64(),
        decay: 0.25 * rng.next_f64(),
        cutout: [0, 0, 1, 5, 40, 300][pick(rng, 6)],
        long_threshold: 0.3 * rng.next_f64(),
        short_threshold: -0.3 * rng.next_f64(),
        ..AtcParams::default()
    };
    if pick(rng, 2) == 0 {
        p.kama_w = 0.1; // below the 0.25 floor
        p.ema_w = 2.0;
    }
    p
}

fn check(closes: &[Vec<f64>], p: &AtcParams, threads: usize, isa: Isa, what: &str) {
    let refs: Vec<&[f64]> = closes.iter().map(|c| c.as_slice()).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let batched = pool
        .install(|| compute_batch_isa(&refs, p, BatchDetail::Signal, isa))
        .unwrap();
    assert_eq!(batched.len(), closes.len());
    for (s, (c, b)) in closes.iter().zip(batched).enumerate() {
        let single = compute(c, p, Detail::Signal).unwrap();
        assert_same(&b.unwrap(), &single, &format!("{what}, symbol {s}"));
    }
}

#[test]
fn batched_equals_single_on_random_series() {
    let mut rng = SplitMix64::new(7);
    for case in 0..24 {
        let p = params(&mut rng);
        let batch = [1usize, 2, 3, 4, 5, 8, 17][case % 7];
        let closes: Vec<Vec<f64>> = (0..batch)
            .map(|_| {
                let n = 1 + (rng.next_u64() % 700) as usize;
                series(&mut rng, n)
            })
            .collect();
        for threads in [1, 2] {
            for isa in [Isa::Auto, Isa::Avx2, Isa::Baseline] {
                let what = format!("case {case}, batch {batch}, {threads} threads, {isa:?}, {p:?}");
                check(&closes, &p, threads, isa, &what);
            }
        }
    }
}

#[test]
fn batched_equals_single_on_equal_lengths_and_defaults() {
    let mut rng = SplitMix64::new(11);
    let closes: Vec<Vec<f64>> = (0..9).map(|_| series(&mut rng, 1500)).collect();
    for cutout in [0, 3] {
        let p = AtcParams {
            cutout,
            ..AtcParams::default()
        };
        check(
            &closes,
            &p,
            2,
            Isa::Auto,
            &format!("defaults, cutout {cutout}"),
        );
    }
}

#[test]
fn bad_series_fail_alone() {
    let good: Vec<f64> = (1..=100).map(|i| i as f64).collect();
    let bad = vec![1.0, f64::NAN, 2.0];
    let empty: Vec<f64> = Vec::new();
    let refs: Vec<&[f64]> = vec![&good, &bad, &empty, &good];
    let out = atc_bt::engine::compute_batch(&refs, &AtcParams::default(), BatchDetail::Direction)
        .unwrap();
    let single = compute(&good, &AtcParams::default(), Detail::Signal).unwrap();
    for i in [0, 3] {
        let o = out[i].as_ref().unwrap();
        assert_eq!(o.dir, single.dir);
        assert!(same(&o.avg, &single.avg));
        assert!(o.l1.is_empty());
    }
    assert!(out[1].is_err());
    assert!(out[2].is_err());
    let bad_params = AtcParams {
        ema_len: 1,
        ..AtcParams::default()
    };
    assert!(atc_bt::engine::compute_batch(&refs, &bad_params, BatchDetail::Signal).is_err());
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every golden case, alone and inside a batch with other series, through
/// the batched engine: bitwise equal to the single engine, and within the
/// golden file's 1e-9 rule for `avg`, `L1.*`, `eq2.*` and exact for `dir`.
#[test]
fn golden_cases_through_the_batched_engine() {
    let mut paths: Vec<_> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 7);
    let mut rng = SplitMix64::new(3);
    for path in paths {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let p: AtcParams = serde_json::from_value(meta["params"].clone()).unwrap();
        let text =
            std::fs::read_to_string(golden_dir().join(meta["csv"].as_str().unwrap())).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        let close: Vec<f64> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
        let name = meta["case"].as_str().unwrap();

        // Alone (one lane) and third in a batch of five with ragged company.
        let others: Vec<Vec<f64>> = (0..4)
            .map(|i| series(&mut rng, close.len() / (i + 1) + i))
            .collect();
        let mut group: Vec<&[f64]> = others.iter().map(|o| o.as_slice()).collect();
        group.insert(2, &close);
        let single = compute(&close, &p, Detail::Signal).unwrap();
        for (refs, at) in [(vec![close.as_slice()], 0), (group, 2)] {
            let out = compute_batch_isa(&refs, &p, BatchDetail::Signal, Isa::Auto).unwrap();
            let b = out[at].as_ref().unwrap();
            assert_same(b, &single, name);

            let col = |want: &str| header.iter().position(|h| *h == want).unwrap();
            let check = |want: &str, actual: &[f64]| {
                let j = col(want);
                for (i, r) in rows.iter().enumerate() {
                    let e = r[j].trim();
                    if e.is_empty() {
                        assert!(actual[i].is_nan(), "{name} {want} bar {i}");
                    } else {
                        let ev: f64 = e.parse().unwrap();
                        assert!(
                            (actual[i] - ev).abs() <= 1e-9 * ev.abs().max(1.0),
                            "{name} {want} bar {i}: {} vs {ev}",
                            actual[i]
                        );
                    }
                }
            };
            check("avg", &b.avg);
            for (f, fam) in ["EMA", "HMA", "WMA", "DEMA", "LSMA", "KAMA"]
                .iter()
                .enumerate()
            {
                check(&format!("L1.{fam}"), &b.l1[f]);
                check(&format!("eq2.{fam}"), &b.eq2[f]);
            }
            let jd = col("dir");
            for (i, r) in rows.iter().enumerate() {
                assert_eq!(
                    r[jd].trim().parse::<i8>().unwrap(),
                    b.dir[i],
                    "{name} dir {i}"
                );
            }
        }
    }
}
