//! What the signal cache saves, per kind, on one series: fetch from L1
//! (memory) and L2 (disk) against recomputing (was the hidden `atc-bt
//! cache selftest --measure`; a measurement, so it lives beside the
//! benchmarks, not in the shipped binary).
//!
//! `cargo run --release --example cache_measure -- CACHE_DIR [BARS]`

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use atc_bt::cache::{self, Cache, CacheConfig};
use atc_bt::engine::AtcParams;

fn series_hash(close: &[f64]) -> String {
    let mut h = blake3::Hasher::new();
    for c in close {
        h.update(&c.to_bits().to_le_bytes());
    }
    h.finalize().to_hex().to_string()
}

fn median_us(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Fetch vs recompute per kind on one series of `bars` bars.
fn measure(cfg: &CacheConfig, bars: usize) -> Result<(), Box<dyn Error>> {
    let close = atc_bt::synthetic::random_walk(42, bars);
    let h = series_hash(&close);
    let p = AtcParams::default();
    let reps = 31;
    let warm = Cache::open(cfg);
    if !warm.has_l2() {
        return Err(format!(
            "measure needs the on-disk cache: {}",
            warm.warnings().join("; ")
        )
        .into());
    }
    cache::cached_signals(&warm, &h, &close, &p);
    warm.flush();
    let store = cache::store::open_sled(&cfg.dir, Duration::from_secs(1))
        .store
        .ok_or("cannot reopen the store")?;
    let no_l1 = Cache::with_store(
        Some(store as std::sync::Arc<dyn cache::store::KvStore>),
        &CacheConfig {
            mem_bytes: 0,
            ..cfg.clone()
        },
    );
    let bank = atc_bt::engine::signal_bank(&close, &p, false).0;
    let rows = [
        (
            "bank recompute (54 MAs + signals)",
            median_us(reps, || {
                std::hint::black_box(atc_bt::engine::signal_bank(&close, &p, false));
            }),
        ),
        (
            "bank fetch L2 (sled get + verify + decode)",
            median_us(reps, || {
                std::hint::black_box(cache::cached_signal_bank(&no_l1, &h, &close, &p));
            }),
        ),
        (
            "bank fetch L1 (clone)",
            median_us(reps, || {
                std::hint::black_box(cache::cached_signal_bank(&warm, &h, &close, &p));
            }),
        ),
        (
            "signals recompute from bank (layers)",
            median_us(reps, || {
                std::hint::black_box(atc_bt::engine::layers(
                    &bank,
                    &p,
                    atc_bt::engine::Detail::Signal,
                ));
            }),
        ),
        (
            "signals recompute from close (bank + layers)",
            median_us(reps, || {
                let b = atc_bt::engine::signal_bank(&close, &p, false).0;
                std::hint::black_box(atc_bt::engine::layers(
                    &b,
                    &p,
                    atc_bt::engine::Detail::Signal,
                ));
            }),
        ),
        (
            "signals fetch L2",
            median_us(reps, || {
                std::hint::black_box(cache::cached_signals(&no_l1, &h, &close, &p));
            }),
        ),
        (
            "signals fetch L1",
            median_us(reps, || {
                std::hint::black_box(cache::cached_signals(&warm, &h, &close, &p));
            }),
        ),
        (
            "one EMA (len 28)",
            median_us(reps, || {
                std::hint::black_box(atc_bt::engine::ma::ema(&close, 28));
            }),
        ),
    ];
    println!("bars {bars}, median of {reps} (µs):");
    for (name, us) in rows {
        println!("  {name:<48} {us:>10.1}");
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: cache_measure CACHE_DIR [BARS]")?);
    let bars = args.next().map_or(Ok(1500), |b| b.parse())?;
    let cfg = CacheConfig {
        dir,
        mem_bytes: 256 << 20,
        disk_bytes: 2 << 30,
        ttl: Duration::from_secs(30 * 86_400),
        enabled: true,
    };
    measure(&cfg, bars)
}
