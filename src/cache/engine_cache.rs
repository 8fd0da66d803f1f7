//! The cached engine entry point: per-series, per-parameter-set average
//! signal and direction (what `run` and `sweep` look up and store).
//!
//! Granularity (measured, see the module's report in `cache selftest
//! --measure`): a single MA over 1,500 bars costs microseconds, less than a
//! store lookup, so MAs are not cached one by one; the final `avg`/`dir` of
//! a series are one value, and a hit skips everything. (A `bank` kind that
//! kept the 54 cross signals of a series was removed: no command read or
//! wrote it, since a sweep computes its shared stage once per symbol itself.)
//!
//! These functions behave like [`crate::engine::compute_unchecked`]: the
//! caller validates parameters and series once, beforehand. Their results
//! are bit-identical to the engine's whether the cache is cold, warm or
//! disabled.

use std::sync::Arc;

use super::codec;
use super::key::{bank_key, signals_key, Kind};
use super::l1::L1Value;
use super::stats::Counter;
use super::{now_ms, Cache};
use crate::engine::{layers, signal_bank, AtcParams, Detail};

/// The average signal and direction of `close` under `params`, from the
/// cache when possible; on a miss they are computed by the engine
/// ([`signal_bank`], then [`layers`]) and stored.
///
/// `close_hash` must identify the exact slice `close` (for a sub-span of a
/// series, a hash of `(series hash, start, end)`); `close.len()` is part of
/// the key as well.
pub fn cached_signals(
    cache: &Cache,
    close_hash: &str,
    close: &[f64],
    params: &AtcParams,
) -> (Vec<f64>, Vec<i8>) {
    if let Some(hit) = lookup_signals(cache, close_hash, close.len(), params) {
        return hit;
    }
    let bank = signal_bank(close, params, false).0;
    let out = layers(&bank, params, Detail::Signal);
    store_signals(cache, close_hash, params, &out.avg, &out.dir);
    (out.avg, out.dir)
}

/// The cached average signal and direction of a series of `bars` bars
/// identified by `close_hash`, or None (counted as a miss). Callers that
/// compute misses themselves (the batched engine in `run`) pair it with
/// [`store_signals`].
pub fn lookup_signals(
    cache: &Cache,
    close_hash: &str,
    bars: usize,
    params: &AtcParams,
) -> Option<(Vec<f64>, Vec<i8>)> {
    lookup(cache, close_hash, bars, params, true)
}

/// [`lookup_signals`] for a caller that uses the result once (`run`): an
/// L2 hit is not copied into the memory tier, which would only grow with
/// the number of symbols.
pub fn lookup_signals_once(
    cache: &Cache,
    close_hash: &str,
    bars: usize,
    params: &AtcParams,
) -> Option<(Vec<f64>, Vec<i8>)> {
    lookup(cache, close_hash, bars, params, false)
}

fn lookup(
    cache: &Cache,
    close_hash: &str,
    bars: usize,
    params: &AtcParams,
    keep_in_l1: bool,
) -> Option<(Vec<f64>, Vec<i8>)> {
    if !cache.is_enabled() {
        return None;
    }
    let key = signals_key(&bank_key(close_hash, bars, params), params);
    if let Some(L1Value::Signals(s)) = cache.l1_get(&key, Kind::Signals) {
        return Some((s.0.clone(), s.1.clone()));
    }
    if let Some((h, bytes)) = cache.l2_get(&key, Kind::Signals) {
        let decoded =
            codec::open(&key, &bytes).and_then(|(h, body)| codec::decode_signals(&h, body));
        match decoded {
            Ok((avg, dir)) if avg.len() == bars && dir.len() == bars => {
                cache.bump(Kind::Signals, Counter::HitL2);
                cache.note_l2_use(&key);
                if !keep_in_l1 {
                    return Some((avg, dir));
                }
                let s = Arc::new((avg, dir));
                cache.l1_put(key, L1Value::Signals(s.clone()), h.created_ms);
                return Some((s.0.clone(), s.1.clone()));
            }
            _ => cache.drop_corrupt(&key, Kind::Signals),
        }
    }
    cache.bump(Kind::Signals, Counter::Miss);
    None
}

/// Stores a series' average signal and direction (computed by the caller
/// with the engine, bit-identical to [`cached_signals`]).
pub fn store_signals(cache: &Cache, close_hash: &str, params: &AtcParams, avg: &[f64], dir: &[i8]) {
    store(cache, close_hash, params, avg, dir, true)
}

/// [`store_signals`] to the on-disk tier only (with [`lookup_signals_once`];
/// when there is no on-disk tier the memory tier still keeps them).
pub fn store_signals_once(
    cache: &Cache,
    close_hash: &str,
    params: &AtcParams,
    avg: &[f64],
    dir: &[i8],
) {
    store(cache, close_hash, params, avg, dir, !cache.has_l2())
}

fn store(
    cache: &Cache,
    close_hash: &str,
    params: &AtcParams,
    avg: &[f64],
    dir: &[i8],
    keep_in_l1: bool,
) {
    if !cache.is_enabled() {
        return;
    }
    let key = signals_key(&bank_key(close_hash, avg.len(), params), params);
    let created = now_ms();
    cache.l2_put(
        &key,
        Kind::Signals,
        created,
        &codec::encode_signals(&key, created, avg, dir),
    );
    if keep_in_l1 {
        cache.l1_put(
            key,
            L1Value::Signals(Arc::new((avg.to_vec(), dir.to_vec()))),
            created,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::{KvStore, MemStore};
    use super::super::{CacheConfig, Kind};
    use super::*;
    use crate::engine::Robustness;
    use proptest::prelude::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    fn mem_cache(store: Arc<MemStore>, ttl: Duration, disk: u64) -> Cache {
        let mut cfg = CacheConfig::new("mem".into());
        cfg.ttl = ttl;
        cfg.disk_bytes = disk;
        Cache::with_store(Some(store as Arc<dyn KvStore>), &cfg)
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn hash(close: &[f64]) -> String {
        let mut h = blake3::Hasher::new();
        for c in close {
            h.update(&c.to_bits().to_le_bytes());
        }
        h.finalize().to_hex().to_string()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Disabled, cold, warm (L1) and warm from disk (fresh L1) give the
        /// engine's bits.
        #[test]
        fn disabled_cold_warm_are_bit_identical(
            seed in any::<u64>(),
            bars in 1usize..400,
            len in 9usize..40,
            lambda in 0.0f64..1.0,
            decay in 0.0f64..5.0,
            cutout in 0usize..50,
            rob in 0u8..3,
        ) {
            let close = crate::synthetic::random_walk(seed, bars);
            let robustness = [Robustness::Narrow, Robustness::Medium, Robustness::Wide][rob as usize];
            let params = AtcParams { lambda, decay, cutout, robustness, ema_len: len, hma_len: len + 1,
                wma_len: len, dema_len: len + 2, lsma_len: len, kama_len: len + 3, ..AtcParams::default() };
            let h = hash(&close);
            let bank0 = signal_bank(&close, &params, false).0;
            let out0 = layers(&bank0, &params, Detail::Signal);
            let store = Arc::new(MemStore::default());
            let cold = mem_cache(store.clone(), Duration::from_secs(3600), u64::MAX);
            let warm_disk = mem_cache(store, Duration::from_secs(3600), u64::MAX);
            for c in [&Cache::disabled(), &cold, &cold, &warm_disk] {
                let (avg, dir) = cached_signals(c, &h, &close, &params);
                prop_assert_eq!(bits(&avg), bits(&out0.avg));
                prop_assert_eq!(&dir, &out0.dir);
            }
            let s = warm_disk.stats().this_run;
            prop_assert_eq!(s[Kind::Signals.index()].hits_l2, 1);
            prop_assert_eq!(s[Kind::Signals.index()].misses, 0);
        }
    }

    #[test]
    fn corrupt_value_is_counted_dropped_and_recomputed() {
        let close = crate::synthetic::random_walk(1, 300);
        let p = AtcParams::default();
        let store = Arc::new(MemStore::default());
        let want = cached_signals(
            &mem_cache(store.clone(), Duration::from_secs(60), u64::MAX),
            "h",
            &close,
            &p,
        );
        let c = mem_cache(store.clone(), Duration::from_secs(60), u64::MAX);
        assert_eq!(c.corrupt_values_for_test(10), 1);
        let got = cached_signals(&c, "h", &close, &p);
        assert_eq!(bits(&got.0), bits(&want.0));
        assert_eq!(got.1, want.1);
        let s = c.stats().this_run;
        assert_eq!(s[Kind::Signals.index()].corrupt, 1);
        // The recomputed values were stored again and verify cleanly.
        assert!(c.verify().unwrap().corrupt.is_empty());
    }

    #[test]
    fn tiny_ttl_expires_entries() {
        let close = crate::synthetic::random_walk(2, 200);
        let p = AtcParams::default();
        let store = Arc::new(MemStore::default());
        let ttl = Duration::from_millis(150);
        cached_signals(&mem_cache(store.clone(), ttl, u64::MAX), "h", &close, &p);
        let c = mem_cache(store.clone(), ttl, u64::MAX);
        cached_signals(&c, "h", &close, &p);
        assert_eq!(c.stats().this_run[Kind::Signals.index()].hits_l2, 1);
        std::thread::sleep(Duration::from_millis(300));
        let c = mem_cache(store.clone(), ttl, u64::MAX);
        cached_signals(&c, "h", &close, &p);
        let s = c.stats().this_run[Kind::Signals.index()];
        assert_eq!((s.hits_l2, s.expired, s.misses), (0, 1, 1));
        // gc reclaims what expired.
        std::thread::sleep(Duration::from_millis(300));
        let rep = mem_cache(store.clone(), ttl, u64::MAX).gc().unwrap();
        assert_eq!(rep.expired, 1);
        assert!(store.disk_bytes() < 200);
    }

    #[test]
    fn l2_eviction_under_tiny_cap_keeps_frequent_entries() {
        let p = AtcParams::default();
        let store = Arc::new(MemStore::default());
        let hot: Vec<Vec<f64>> = (0..3)
            .map(|s| crate::synthetic::random_walk(s, 300))
            .collect();
        for _ in 0..4 {
            let c = mem_cache(store.clone(), Duration::from_secs(60), u64::MAX);
            for (i, close) in hot.iter().enumerate() {
                cached_signals(&c, &format!("hot{i}"), close, &p);
            }
            c.flush();
        }
        let one = store.disk_bytes() / 3;
        // A sweep of 30 one-off series under a cap of ~8 series.
        let c = mem_cache(store.clone(), Duration::from_secs(60), one * 8);
        for s in 0..30 {
            let close = crate::synthetic::random_walk(100 + s, 300);
            cached_signals(&c, &format!("cold{s}"), &close, &p);
        }
        c.flush();
        assert!(
            store.disk_bytes() <= one * 8,
            "{} > {}",
            store.disk_bytes(),
            one * 8
        );
        let c = mem_cache(store.clone(), Duration::from_secs(60), one * 8);
        for (i, close) in hot.iter().enumerate() {
            cached_signals(&c, &format!("hot{i}"), close, &p);
        }
        assert_eq!(c.stats().this_run[Kind::Signals.index()].hits_l2, 3);
    }

    #[test]
    fn full_disk_degrades_to_l1_with_one_warning() {
        let close = crate::synthetic::random_walk(3, 200);
        let p = AtcParams::default();
        let store = Arc::new(MemStore::default());
        store.fail_writes.store(true, Ordering::Relaxed);
        let c = mem_cache(store, Duration::from_secs(60), u64::MAX);
        let a = cached_signals(&c, "h", &close, &p);
        let b = cached_signals(&c, "h", &close, &p);
        assert_eq!(bits(&a.0), bits(&b.0));
        assert!(!c.has_l2());
        assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
        assert_eq!(c.stats().this_run[Kind::Signals.index()].hits_l1, 1);
    }
}
