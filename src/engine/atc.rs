//! The full ATC pipeline for one close series: MAs → cross signals →
//! layer-1 equities → family signals → layer-2 equities → average signal →
//! direction (spec sec. 5–12).

use rayon::prelude::*;

use super::equity::{equity_into, growth_scaled_returns, rate_of_change};
use super::error::EngineError;
use super::ma::family_moving_averages;
use super::params::{AtcParams, Family};
use super::signal::{cross_signal, cut, direction};

/// Number of MAs per family.
pub const LENGTHS_PER_FAMILY: usize = 9;
/// Number of MAs in total (6 families × 9 lengths).
pub const MA_COUNT: usize = 54;

/// Which intermediates [`compute`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Keep every column of the golden CSV (54 MAs, signals and equities).
    Full,
    /// Keep only what trading needs (`R`, layer 1 and 2, `avg`, `dir`):
    /// the 54 per-MA vectors are dropped as soon as they are folded into
    /// layer 1, so memory per series is a few vectors, not 162.
    Signal,
}

/// Everything the engine computes for one series. Per-MA vectors are
/// indexed `family.index() * 9 + k` (spec column order) and are empty with
/// [`Detail::Signal`].
#[derive(Debug, Clone, PartialEq)]
pub struct AtcOutput {
    /// Rate of change `R` (NaN at bar 0).
    pub r: Vec<f64>,
    /// The 54 moving averages.
    pub ma: Vec<Vec<f64>>,
    /// The 54 persistent cross signals (-1, 0, 1).
    pub sig: Vec<Vec<i8>>,
    /// The 54 layer-1 equity curves.
    pub eq: Vec<Vec<f64>>,
    /// Layer-1 family signals (multiples of 0.01), one per family.
    pub l1: Vec<Vec<f64>>,
    /// Layer-2 family equities, one per family.
    pub eq2: Vec<Vec<f64>>,
    /// The average signal in [-1, 1] (NaN before `cutout`).
    pub avg: Vec<f64>,
    /// Direction: 1 long, -1 short, 0 none yet.
    pub dir: Vec<i8>,
}

/// Pine `math.round(x, 2)`: nearest multiple of 0.01, ties toward +inf.
#[inline]
pub fn round2(x: f64) -> f64 {
    // floor_exact equals f64::floor bit for bit (tested) without a libm call.
    super::lanes::floor_exact(x * 100.0 + 0.5) / 100.0
}

/// Checks that every close is finite and > 0 and that there is at least one.
pub fn validate_close(close: &[f64]) -> Result<(), EngineError> {
    if close.is_empty() {
        return Err(EngineError::EmptySeries);
    }
    match close.iter().position(|&c| !(c.is_finite() && c > 0.0)) {
        Some(bar) => Err(EngineError::BadClose {
            bar,
            value: close[bar],
        }),
        None => Ok(()),
    }
}

/// Runs the full ATC on `close` with `params`.
///
/// Validates the parameters and the series first; the numbers follow
/// `spec/ATC.md` bar for bar. Pure: no I/O, no globals, deterministic.
pub fn compute(
    close: &[f64],
    params: &AtcParams,
    detail: Detail,
) -> Result<AtcOutput, EngineError> {
    params.validate()?;
    validate_close(close)?;
    Ok(compute_unchecked(close, params, detail))
}

/// The part of ATC that depends only on the close series and the lengths
/// (robustness and the six base lengths): the rate of change and the 54
/// persistent cross signals. Everything after it (equities, layers,
/// direction) depends on lambda, decay, cutout, weights and thresholds, so
/// a parameter sweep computes a bank once per symbol and re-runs only
/// [`layers`] per combination.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalBank {
    /// Rate of change `R` (NaN at bar 0).
    pub r: Vec<f64>,
    /// The 54 cross signals, indexed `family.index() * 9 + k`.
    pub sig: Vec<Vec<i8>>,
}

/// Computes the [`SignalBank`] of `close`; with `keep_ma` the 54 MAs are
/// returned too (for [`Detail::Full`]).
pub fn signal_bank(
    close: &[f64],
    params: &AtcParams,
    keep_ma: bool,
) -> (SignalBank, Vec<Vec<f64>>) {
    let mut sig = Vec::with_capacity(MA_COUNT);
    let mut mas = Vec::with_capacity(if keep_ma { MA_COUNT } else { 0 });
    for family in Family::ALL {
        // Validation guarantees the lengths; an invalid set yields NaNs.
        let lens = params.lengths(family).unwrap_or([0; 9]);
        for ma in family_moving_averages(family, close, &lens) {
            sig.push(cross_signal(close, &ma));
            if keep_ma {
                mas.push(ma);
            }
        }
    }
    let bank = SignalBank {
        r: rate_of_change(close),
        sig,
    };
    (bank, mas)
}

/// The nine layer-1 equities of one family, advanced bar by bar side by
/// side, and the family's weighted-signal numerator and denominator.
///
/// Each equity is a dependent chain (`e = e_prev·d·(1+a)`), so computing the
/// nine one after another is latency-bound; interleaving them gives the CPU
/// nine independent chains. Every lane performs exactly the operations of
/// [`equity_into`] in the same order, and `num`/`den` are summed in k order,
/// so the results are bit-identical (tested against [`equity_into`]).
/// `eqs` receives the per-MA equities when non-empty.
#[allow(clippy::too_many_arguments)]
fn family_layer1(
    sigs: &[Vec<i8>],
    start: f64,
    rg: &[f64],
    d: f64,
    cutout: usize,
    num: &mut [f64],
    den: &mut [f64],
    eqs: &mut [Vec<f64>],
) {
    const K: usize = LENGTHS_PER_FAMILY;
    let n = rg.len();
    let keep = !eqs.is_empty();
    let mut a = [0.0f64; K];
    let mut e = [f64::NAN; K];
    for i in 0..cutout.min(n) {
        num[i] = f64::NAN;
        den[i] = f64::NAN;
        for eq in eqs.iter_mut() {
            eq[i] = f64::NAN;
        }
    }
    // Signals transposed to one row of nine per bar, so each bar reads two
    // small contiguous rows instead of nine vectors; the per-lane updates
    // below are branch-free selects the compiler can vectorise.
    let rows: Vec<[i8; K]> = (0..n)
        .map(|i| std::array::from_fn(|k| sigs[k][i]))
        .collect();
    for i in cutout..n {
        let r = rg[i];
        let neg_r = -r;
        // A previous signal of 0 (or none, at bar 0) keeps `a` (Pine `var`).
        let prev = if i > 0 { rows[i - 1] } else { [0; K] };
        for k in 0..K {
            let p = prev[k];
            a[k] = if p > 0 {
                r
            } else if p < 0 {
                neg_r
            } else {
                a[k]
            };
        }
        if i == cutout {
            e = [start; K];
        } else {
            for k in 0..K {
                e[k] = (e[k] * d) * (1.0 + a[k]);
            }
        }
        for v in e.iter_mut() {
            *v = if *v < 0.25 { 0.25 } else { *v };
        }
        let cur = rows[i];
        let mut nm = 0.0;
        let mut dn = 0.0;
        for k in 0..K {
            nm += f64::from(cur[k]) * e[k];
            dn += e[k];
        }
        num[i] = nm;
        den[i] = dn;
        if keep {
            for k in 0..K {
                eqs[k][i] = e[k];
            }
        }
    }
}

/// Layer 1, the family signal and layer 2 of one family from its nine
/// cross signals (spec sec. 8, 9, 11): returns the nine layer-1 equities
/// (only when `keep_eq`), `L1` and `eq2`.
fn family_tail(
    sigs: &[Vec<i8>],
    family: Family,
    params: &AtcParams,
    rg: &[f64],
    keep_eq: bool,
) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
    let n = rg.len();
    let cutout = params.cutout;
    let d = params.decay_multiplier();
    let mut eqs: Vec<Vec<f64>> = if keep_eq {
        vec![vec![0.0; n]; LENGTHS_PER_FAMILY]
    } else {
        Vec::new()
    };
    let mut num = vec![0.0; n];
    let mut den = vec![0.0; n];
    family_layer1(
        sigs,
        params.starting_equity,
        rg,
        d,
        cutout,
        &mut num,
        &mut den,
        &mut eqs,
    );
    let l1: Vec<f64> = num.iter().zip(&den).map(|(&a, &b)| round2(a / b)).collect();
    let mut eq2 = den;
    equity_into(&mut eq2, params.weight(family), |i| l1[i], rg, d, cutout);
    (eqs, l1, eq2)
}

/// The average signal and the direction (spec sec. 12) from the six
/// families' `L1` and `eq2`, summed in family order.
fn average_and_direction(
    l1: &[Vec<f64>],
    eq2: &[Vec<f64>],
    params: &AtcParams,
) -> (Vec<f64>, Vec<i8>) {
    let n = l1.first().map_or(0, |v| v.len());
    let mut avg = vec![0.0; n];
    for (i, slot) in avg.iter_mut().enumerate() {
        let mut num = 0.0;
        let mut den = 0.0;
        for f in 0..Family::ALL.len() {
            let e2 = eq2[f][i];
            num += cut(l1[f][i]) * e2;
            den += e2;
        }
        *slot = num / den;
    }
    let dir = direction(&avg, params.long_threshold, params.short_threshold);
    (avg, dir)
}

/// Layers 1 and 2, the average signal and the direction from a bank.
/// Uses `lambda`, `decay`, `cutout`, `starting_equity`, the weights and the
/// thresholds of `params` (the lengths were used by [`signal_bank`]).
/// Per-MA equities are kept only with [`Detail::Full`]; `ma` is left empty.
pub fn layers(bank: &SignalBank, params: &AtcParams, detail: Detail) -> AtcOutput {
    let rg = growth_scaled_returns(&bank.r, params.la(), params.cutout);
    let keep = detail == Detail::Full;
    let mut out = AtcOutput {
        r: Vec::new(),
        ma: Vec::new(),
        sig: Vec::new(),
        eq: Vec::with_capacity(if keep { MA_COUNT } else { 0 }),
        l1: Vec::with_capacity(6),
        eq2: Vec::with_capacity(6),
        avg: Vec::new(),
        dir: Vec::new(),
    };
    for (fi, family) in Family::ALL.into_iter().enumerate() {
        let sigs = &bank.sig[fi * LENGTHS_PER_FAMILY..(fi + 1) * LENGTHS_PER_FAMILY];
        let (eqs, l1, eq2) = family_tail(sigs, family, params, &rg, keep);
        out.eq.extend(eqs);
        out.l1.push(l1);
        out.eq2.push(eq2);
    }
    (out.avg, out.dir) = average_and_direction(&out.l1, &out.eq2, params);
    out
}

/// Everything one family contributes: its MAs, signals and layer-1
/// equities (only for [`Detail::Full`]), `L1` and `eq2`.
struct FamilyOut {
    ma: Vec<Vec<f64>>,
    sig: Vec<Vec<i8>>,
    eq: Vec<Vec<f64>>,
    l1: Vec<f64>,
    eq2: Vec<f64>,
}

/// MAs, cross signals, layer 1 and layer 2 of one family: the families
/// are independent until the average signal, so they can run in any order
/// or at the same time with the same bits.
fn family_pipeline(
    family: Family,
    close: &[f64],
    params: &AtcParams,
    rg: &[f64],
    keep: bool,
) -> FamilyOut {
    // Validation guarantees the lengths; an invalid set yields NaNs.
    let lens = params.lengths(family).unwrap_or([0; 9]);
    let mas = family_moving_averages(family, close, &lens);
    let sig: Vec<Vec<i8>> = mas.iter().map(|ma| cross_signal(close, ma)).collect();
    let ma = if keep { mas } else { Vec::new() };
    let (eq, l1, eq2) = family_tail(&sig, family, params, rg, keep);
    FamilyOut {
        ma,
        sig: if keep { sig } else { Vec::new() },
        eq,
        l1,
        eq2,
    }
}

/// [`compute_unchecked`], family by family on this thread, or with
/// `parallel` the six families as tasks on the current rayon pool.
fn compute_families(
    close: &[f64],
    params: &AtcParams,
    detail: Detail,
    parallel: bool,
) -> AtcOutput {
    let keep = detail == Detail::Full;
    let r = rate_of_change(close);
    let rg = growth_scaled_returns(&r, params.la(), params.cutout);
    let run = |f: &Family| family_pipeline(*f, close, params, &rg, keep);
    let fams: Vec<FamilyOut> = if parallel {
        Family::ALL.par_iter().map(run).collect()
    } else {
        Family::ALL.iter().map(run).collect()
    };
    let mut out = AtcOutput {
        r,
        ma: Vec::with_capacity(if keep { MA_COUNT } else { 0 }),
        sig: Vec::with_capacity(if keep { MA_COUNT } else { 0 }),
        eq: Vec::with_capacity(if keep { MA_COUNT } else { 0 }),
        l1: Vec::with_capacity(6),
        eq2: Vec::with_capacity(6),
        avg: Vec::new(),
        dir: Vec::new(),
    };
    for f in fams {
        out.ma.extend(f.ma);
        out.sig.extend(f.sig);
        out.eq.extend(f.eq);
        out.l1.push(f.l1);
        out.eq2.push(f.eq2);
    }
    (out.avg, out.dir) = average_and_direction(&out.l1, &out.eq2, params);
    out
}

/// [`compute`] without validation, for callers that validated the
/// parameters and series once already. A bad input gives NaNs, never UB.
pub fn compute_unchecked(close: &[f64], params: &AtcParams, detail: Detail) -> AtcOutput {
    compute_families(close, params, detail, false)
}

/// [`compute_unchecked`] with the six families as parallel tasks on the
/// current rayon pool: for a lone long series, where there are no other
/// series to spread over the threads. Same bits (the families only meet
/// in the average signal, which is summed in family order as always).
pub fn compute_unchecked_par(close: &[f64], params: &AtcParams, detail: Detail) -> AtcOutput {
    compute_families(close, params, detail, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bits(v: &[f64]) -> Vec<u64> {
        // NaN payloads carry no meaning; every other value bit for bit.
        v.iter()
            .map(|x| if x.is_nan() { u64::MAX } else { x.to_bits() })
            .collect()
    }

    /// The families as parallel tasks give exactly the sequential output,
    /// every column of `Detail::Full`, on 1 and 2 threads.
    #[test]
    fn parallel_families_equal_sequential() {
        let mut p = 100.0;
        let close: Vec<f64> = (0..3000)
            .map(|i| {
                p *= 1.0 + 0.03 * ((i as f64 * 0.7).sin() + 0.2 * (i as f64 * 0.13).cos());
                p
            })
            .collect();
        for cutout in [0, 7] {
            let params = AtcParams {
                cutout,
                ..AtcParams::default()
            };
            let a = compute_unchecked(&close, &params, Detail::Full);
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let b = pool.install(|| compute_unchecked_par(&close, &params, Detail::Full));
                assert_eq!(a.sig, b.sig);
                assert_eq!(a.dir, b.dir);
                let pairs = [
                    (&a.ma, &b.ma),
                    (&a.eq, &b.eq),
                    (&a.l1, &b.l1),
                    (&a.eq2, &b.eq2),
                ];
                for (x, y) in pairs {
                    assert_eq!(x.len(), y.len());
                    for (u, v) in x.iter().zip(y) {
                        assert_eq!(bits(u), bits(v));
                    }
                }
                assert_eq!(bits(&a.avg), bits(&b.avg));
                assert_eq!(bits(&a.r), bits(&b.r));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// The interleaved layer-1 equities equal the one-at-a-time
        /// reference [`equity_into`] bit for bit, for any cutout.
        #[test]
        fn interleaved_equities_equal_reference(
            steps in prop::collection::vec(-0.05f64..0.05, 1..200),
            cutout in 0usize..60,
            lambda in 0.0f64..0.5,
            decay in 0.0f64..1.0,
        ) {
            let mut p = 50.0;
            let close: Vec<f64> = steps.iter().map(|s| { p *= 1.0 + s; p }).collect();
            let params = AtcParams { cutout, lambda, decay, robustness: crate::engine::Robustness::Narrow,
                ema_len: 6, hma_len: 6, wma_len: 6, dema_len: 6, lsma_len: 6, kama_len: 6, ..AtcParams::default() };
            let out = compute(&close, &params, Detail::Full).unwrap();
            let rg = growth_scaled_returns(&out.r, params.la(), cutout);
            for (k, sig) in out.sig.iter().enumerate() {
                let mut eq = vec![0.0; close.len()];
                equity_into(&mut eq, params.starting_equity, |i| f64::from(sig[i]), &rg, params.decay_multiplier(), cutout);
                let a: Vec<u64> = eq.iter().map(|v| v.to_bits()).collect();
                let b: Vec<u64> = out.eq[k].iter().map(|v| v.to_bits()).collect();
                prop_assert_eq!(a, b, "MA {}", k);
            }
        }
    }
}
