//! The moving averages of the six families (spec sec. 5).
//!
//! Each function takes the close series and one derived length and returns
//! a vector of the same length with NaN (Pine `na`) before the first valid
//! bar. Window sums are accumulated in the same order as the reference
//! (oldest to newest; WMA newest first): a cross between `close` and an MA
//! is a comparison of two floats, and summing in the reference's order keeps
//! even a 1-ulp tie on a flat stretch of prices on the same side. The cost
//! is O(n·L) per MA, linear in bars. To make it fast without changing a bit,
//! the windows of [`LANES`] consecutive bars are summed side by side: every
//! lane adds its own window in exactly the scalar order, but the lanes are
//! independent, so the compiler turns them into SIMD adds instead of one
//! long dependent chain of additions.

use super::params::Family;

/// Pine `fast` constant of the script's KAMA (used as written).
pub const KAMA_FAST: f64 = 0.666;
/// Pine `slow` constant of the script's KAMA (used as written).
pub const KAMA_SLOW: f64 = 0.064;

/// The moving average of `family` at length `len` (>= 1) over `x`.
pub fn moving_average(family: Family, x: &[f64], len: usize) -> Vec<f64> {
    match family {
        Family::Ema => ema(x, len),
        Family::Hma => sma(x, len),
        Family::Wma => wma(x, len),
        Family::Dema => dema(x, len),
        Family::Lsma => lsma(x, len),
        Family::Kama => kama(x, len),
    }
}

/// Bars whose windows are summed side by side (see the module doc).
pub const LANES: usize = 8;

/// Sum of `w` from oldest to newest.
#[inline]
fn window_sum(w: &[f64]) -> f64 {
    let mut s = 0.0;
    for &v in w {
        s += v;
    }
    s
}

/// `out[i] = Σ_{j=0}^{len-1} x[i+1-len+j]` (oldest to newest) for every
/// `i >= len - 1`, [`LANES`] bars at a time; each sum is bit-identical to
/// [`window_sum`] of its window.
fn window_sums(x: &[f64], len: usize, out: &mut [f64]) {
    let n = x.len();
    if len == 0 || len > n {
        return;
    }
    let mut i = len - 1;
    while i + LANES <= n {
        let mut acc = [0.0f64; LANES];
        let base = i + 1 - len;
        for j in 0..len {
            let w = &x[base + j..base + j + LANES];
            for l in 0..LANES {
                acc[l] += w[l];
            }
        }
        out[i..i + LANES].copy_from_slice(&acc);
        i += LANES;
    }
    for k in i..n {
        out[k] = window_sum(&x[k + 1 - len..=k]);
    }
}

/// Simple moving average (`ta.sma`); first valid bar `len - 1`.
pub fn sma(x: &[f64], len: usize) -> Vec<f64> {
    let n = x.len();
    let mut out = vec![f64::NAN; n];
    if len == 0 || len > n {
        return out;
    }
    window_sums(x, len, &mut out);
    let l = len as f64;
    for v in &mut out[len - 1..] {
        *v /= l;
    }
    out
}

/// EMA over `x[start..]`, seeded with the SMA of its first `len` values
/// (Pine `ta.ema`, and the inner EMA of `ta.dema` which skips e1's leading
/// na). Writes `out[start + len - 1..]`.
fn ema_from(x: &[f64], start: usize, len: usize, out: &mut [f64]) {
    let n = x.len();
    if len == 0 || start + len > n {
        return;
    }
    let alpha = 2.0 / (len as f64 + 1.0);
    let beta = 1.0 - alpha;
    let seed = start + len - 1;
    let mut prev = window_sum(&x[start..=seed]) / len as f64;
    out[seed] = prev;
    for i in seed + 1..n {
        prev = alpha * x[i] + beta * prev;
        out[i] = prev;
    }
}

/// Exponential moving average (`ta.ema`); first valid bar `len - 1`.
pub fn ema(x: &[f64], len: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    ema_from(x, 0, len, &mut out);
    out
}

/// Weighted moving average (`ta.wma`), newest weight `len`, oldest 1; first
/// valid bar `len - 1`.
pub fn wma(x: &[f64], len: usize) -> Vec<f64> {
    let n = x.len();
    let mut out = vec![f64::NAN; n];
    if len == 0 || len > n {
        return out;
    }
    let denom = (len * (len + 1) / 2) as f64;
    let mut i = len - 1;
    while i + LANES <= n {
        let mut acc = [0.0f64; LANES];
        for j in 0..len {
            let wgt = (len - j) as f64;
            let w = &x[i - j..i - j + LANES];
            for l in 0..LANES {
                acc[l] += wgt * w[l];
            }
        }
        for l in 0..LANES {
            out[i + l] = acc[l] / denom;
        }
        i += LANES;
    }
    for k in i..n {
        let mut s = 0.0;
        for j in 0..len {
            s += (len - j) as f64 * x[k - j];
        }
        out[k] = s / denom;
    }
    out
}

/// Double EMA (`ta.dema`): `2·e1 − EMA(e1)`; first valid bar `2·len − 2`.
pub fn dema(x: &[f64], len: usize) -> Vec<f64> {
    let n = x.len();
    let e1 = ema(x, len);
    let mut e2 = vec![f64::NAN; n];
    if len >= 1 && len <= n {
        ema_from(&e1, len - 1, len, &mut e2);
    }
    e1.iter().zip(&e2).map(|(&a, &b)| 2.0 * a - b).collect()
}

/// Least-squares MA (`ta.linreg(x, len, 0)`): the regression line through
/// the window evaluated at its newest point; first valid bar `len - 1`.
pub fn lsma(x: &[f64], len: usize) -> Vec<f64> {
    let n = x.len();
    let mut out = vec![f64::NAN; n];
    if len == 0 || len > n {
        return out;
    }
    let l = len as f64;
    let sx = (len * (len - 1) / 2) as f64;
    let sxx = (len * (len - 1) * (2 * len - 1) / 6) as f64;
    let den = l * sxx - sx * sx;
    let line = |sy: f64, sxy: f64| {
        let slope = (l * sxy - sx * sy) / den;
        let intercept = (sy - slope * sx) / l;
        intercept + slope * (l - 1.0)
    };
    let mut i = len - 1;
    while i + LANES <= n {
        let mut sy = [0.0f64; LANES];
        let mut sxy = [0.0f64; LANES];
        let base = i + 1 - len;
        for j in 0..len {
            let jf = j as f64;
            let w = &x[base + j..base + j + LANES];
            for l in 0..LANES {
                sy[l] += w[l];
                sxy[l] += jf * w[l];
            }
        }
        for l in 0..LANES {
            out[i + l] = line(sy[l], sxy[l]);
        }
        i += LANES;
    }
    for k in i..n {
        let mut sy = 0.0;
        let mut sxy = 0.0;
        for (j, &y) in x[k + 1 - len..=k].iter().enumerate() {
            sy += y;
            sxy += j as f64 * y;
        }
        out[k] = line(sy, sxy);
    }
    out
}

/// The script's own KAMA (not `ta.kama`), defined from bar 0: it starts at
/// `slow²·x[0]` and, while `i < len`, the efficiency ratio is 0 because the
/// noise window still holds bar 0's na difference (spec sec. 5 and 13.1).
pub fn kama(x: &[f64], len: usize) -> Vec<f64> {
    let n = x.len();
    let mut out = vec![f64::NAN; n];
    let span = KAMA_FAST - KAMA_SLOW;
    // |x[j] - x[j-1]| for j >= 1; noise[i] is the window sum of these over
    // j = i-len+1 ..= i, oldest first, which for i >= len never touches the
    // na difference of bar 0.
    let mut noise = vec![f64::NAN; n];
    if len > 0 && len < n {
        let diffs: Vec<f64> = x.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
        // diffs[j-1] = |x[j] - x[j-1]|, so noise[i] = window sum ending at diffs[i-1].
        window_sums(&diffs, len, &mut noise[1..]);
    }
    let mut k = 0.0; // nz(K[-1])
    for i in 0..n {
        let ratio = if i >= len && len > 0 {
            let noise = noise[i];
            let signal = (x[i] - x[i - len]).abs();
            if noise != 0.0 {
                signal / noise
            } else {
                0.0
            }
        } else {
            0.0
        };
        let sc = ratio * span + KAMA_SLOW;
        let smooth = sc * sc;
        k += smooth * (x[i] - k);
        out[i] = k;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Plain scalar restatements of spec sec. 5, one window at a time. The
    // lane-parallel versions above must equal them bit for bit.
    fn sma_ref(x: &[f64], len: usize) -> Vec<f64> {
        (0..x.len())
            .map(|i| {
                if i + 1 >= len {
                    window_sum(&x[i + 1 - len..=i]) / len as f64
                } else {
                    f64::NAN
                }
            })
            .collect()
    }
    fn wma_ref(x: &[f64], len: usize) -> Vec<f64> {
        let denom = (len * (len + 1) / 2) as f64;
        (0..x.len())
            .map(|i| {
                if i + 1 < len {
                    return f64::NAN;
                }
                let mut s = 0.0;
                for j in 0..len {
                    s += (len - j) as f64 * x[i - j];
                }
                s / denom
            })
            .collect()
    }
    fn lsma_ref(x: &[f64], len: usize) -> Vec<f64> {
        let l = len as f64;
        let sx = (len * (len - 1) / 2) as f64;
        let sxx = (len * (len - 1) * (2 * len - 1) / 6) as f64;
        (0..x.len())
            .map(|i| {
                if i + 1 < len {
                    return f64::NAN;
                }
                let (mut sy, mut sxy) = (0.0, 0.0);
                for (j, &y) in x[i + 1 - len..=i].iter().enumerate() {
                    sy += y;
                    sxy += j as f64 * y;
                }
                let slope = (l * sxy - sx * sy) / (l * sxx - sx * sx);
                (sy - slope * sx) / l + slope * (l - 1.0)
            })
            .collect()
    }
    fn kama_ref(x: &[f64], len: usize) -> Vec<f64> {
        let mut k = 0.0;
        (0..x.len())
            .map(|i| {
                let ratio = if i >= len {
                    let mut noise = 0.0;
                    for j in i + 1 - len..=i {
                        noise += (x[j] - x[j - 1]).abs();
                    }
                    let signal = (x[i] - x[i - len]).abs();
                    if noise != 0.0 {
                        signal / noise
                    } else {
                        0.0
                    }
                } else {
                    0.0
                };
                let sc = ratio * (KAMA_FAST - KAMA_SLOW) + KAMA_SLOW;
                k += sc * sc * (x[i] - k);
                k
            })
            .collect()
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    proptest! {
        #[test]
        fn lane_sums_equal_scalar_reference(
            x in prop::collection::vec(1.0f64..1000.0, 1..120),
            len in 2usize..40,
        ) {
            prop_assert_eq!(bits(&sma(&x, len)), bits(&sma_ref(&x, len)));
            prop_assert_eq!(bits(&wma(&x, len)), bits(&wma_ref(&x, len)));
            prop_assert_eq!(bits(&lsma(&x, len)), bits(&lsma_ref(&x, len)));
            prop_assert_eq!(bits(&kama(&x, len)), bits(&kama_ref(&x, len)));
        }
    }

    #[test]
    fn flat_powers_of_two_stay_exact() {
        let x = vec![64.0; 50];
        for f in [sma, wma, lsma, ema, dema] {
            let out = f(&x, 28);
            assert!(out.iter().filter(|v| !v.is_nan()).all(|&v| v == 64.0));
        }
    }
}
