//! The LRU+LFU hybrid eviction score, shared by both tiers.
//!
//! Each entry keeps a *decayed use count* `crf` and the time of its last
//! use. A use at time `t` does
//!
//! ```text
//! crf ← 1 + crf · 2^(−(t − last) / H)        last ← t
//! ```
//!
//! and the score at time `now` is `crf · 2^(−(now − last) / H)`: every
//! past use counts, but halves in weight every `H` ([`HALF_LIFE_MS`],
//! 3 days). This is the LRFU policy (Lee et al., 2001): `H → ∞` is pure
//! LFU, `H → 0` is pure LRU. The lowest score is evicted first; expired
//! entries go before anything else.
//!
//! Why: pure LRU lets one big sweep (thousands of entries used once,
//! all "recent") flush the entries every daily run needs; pure LFU keeps
//! last month's favourites for ever. With a 3-day half-life, an entry used
//! once a day converges to `crf ≈ 1 / (1 − 2^(−1/3)) ≈ 4.8`, so a sweep's
//! fresh one-off entries (score 1) are evicted before it, while an entry
//! nobody touched for two weeks decays below 0.04 and goes first.

/// Half-life of a use's weight in the score (3 days, in ms).
pub const HALF_LIFE_MS: f64 = 3.0 * 24.0 * 3600.0 * 1000.0;

/// The weight left after `age_ms`.
fn decay(age_ms: u64) -> f64 {
    (-(age_ms as f64) / HALF_LIFE_MS).exp2()
}

/// The score of an entry at `now_ms` (higher is kept longer).
pub fn score(crf: f64, last_ms: u64, now_ms: u64) -> f64 {
    crf * decay(now_ms.saturating_sub(last_ms))
}

/// The entry's `crf` after one more use at `now_ms`.
pub fn touch(crf: f64, last_ms: u64, now_ms: u64) -> f64 {
    1.0 + score(crf, last_ms, now_ms)
}

/// One candidate for eviction.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<K> {
    /// Its key.
    pub key: K,
    /// Bytes it occupies.
    pub bytes: u64,
    /// Its score ([`score`]).
    pub score: f64,
    /// Whether its TTL has passed.
    pub expired: bool,
}

/// The keys to remove so that `used` drops to at most `target` bytes:
/// every expired entry, then the lowest scores first (ties: the larger
/// entry first, since it frees more).
pub fn victims<K: Copy>(mut cands: Vec<Candidate<K>>, mut used: u64, target: u64) -> Vec<K> {
    cands.sort_by(|a, b| {
        b.expired
            .cmp(&a.expired)
            .then(a.score.total_cmp(&b.score))
            .then(b.bytes.cmp(&a.bytes))
    });
    let mut out = Vec::new();
    for c in cands {
        if !c.expired && used <= target {
            break;
        }
        used = used.saturating_sub(c.bytes);
        out.push(c.key);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_entry_outlives_a_sweep() {
        let day = 24 * 3600 * 1000;
        let mut crf = 0.0;
        let mut last = 0;
        for d in 0..20 {
            crf = touch(crf, last, d * day);
            last = d * day;
        }
        let now = 20 * day;
        let daily = score(crf, last, now);
        let sweep = score(1.0, now, now);
        assert!(daily > 3.0 * sweep, "{daily} vs {sweep}");
        // An entry untouched for two weeks ranks below a fresh one-off.
        assert!(score(4.8, 0, 14 * day) < sweep);
    }

    #[test]
    fn victims_take_expired_then_lowest_score() {
        let c = |key, score, expired| Candidate {
            key,
            bytes: 10,
            score,
            expired,
        };
        let v = victims(
            vec![
                c(1, 5.0, false),
                c(2, 1.0, false),
                c(3, 9.0, true),
                c(4, 2.0, false),
            ],
            40,
            20,
        );
        assert_eq!(v, vec![3, 2]);
    }
}
