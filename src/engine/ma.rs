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
    // In place over e2: one n-vector less to allocate and fault in.
    for (b, &a) in e2.iter_mut().zip(&e1) {
        *b = 2.0 * a - *b;
    }
    e2
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
    // |x[j] - x[j-1]| for j >= 1; noise[i] is the window sum of these over
    // j = i-len+1 ..= i, oldest first, which for i >= len never touches the
    // na difference of bar 0.
    let mut noise = vec![f64::NAN; n];
    if len > 0 && len < n {
        let diffs: Vec<f64> = x.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
        // diffs[j-1] = |x[j] - x[j-1]|, so noise[i] = window sum ending at diffs[i-1].
        window_sums(&diffs, len, &mut noise[1..]);
    }
    kama_with_noise(x, len, &noise[1.min(n)..])
}

/// The KAMA recursion given the noise of bar `i` at `noise[i - 1]` (the
/// window of diffs ending at diff index `i − 1`; used only for `i >= len`).
fn kama_with_noise(x: &[f64], len: usize, noise: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut out = vec![f64::NAN; n];
    let span = KAMA_FAST - KAMA_SLOW;
    let mut k = 0.0; // nz(K[-1])
    for i in 0..n {
        let ratio = if i >= len && len > 0 {
            let noise = noise[i - 1];
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

/// The nine MAs of a family at once. For the SMA (HMA family), LSMA and the
/// KAMA's noise, windows that start on the same bar share their running
/// sum: the sum of a window of length `L` starting at bar `s`, accumulated
/// oldest to newest, is a prefix of the sum of any longer window starting
/// at `s`, so one pass of `max(L)` additions per start bar serves all nine
/// lengths with exactly the additions (and order) of the per-length code.
/// Starts are processed [`LANES`] at a time. Bit-identical to calling
/// [`moving_average`] per length (tested).
pub fn family_moving_averages(family: Family, x: &[f64], lens: &[usize]) -> Vec<Vec<f64>> {
    let n = x.len();
    let valid = !lens.is_empty() && lens.iter().all(|&l| l >= 1);
    match family {
        Family::Hma if valid => {
            let mut outs = vec![vec![f64::NAN; n]; lens.len()];
            shared_prefix_sums(x, lens, &mut outs, None);
            for (out, &l) in outs.iter_mut().zip(lens) {
                let lf = l as f64;
                for v in out.iter_mut().filter(|v| !v.is_nan()) {
                    *v /= lf;
                }
            }
            outs
        }
        Family::Lsma if valid => {
            let mut sy = vec![vec![f64::NAN; n]; lens.len()];
            let mut sxy = vec![vec![f64::NAN; n]; lens.len()];
            shared_prefix_sums(x, lens, &mut sy, Some(&mut sxy));
            // The line overwrites Sy in place: one n-vector per length less
            // to allocate and fault in.
            for ((sy, sxy), &len) in sy.iter_mut().zip(&sxy).zip(lens) {
                let l = len as f64;
                let sx = (len * (len - 1) / 2) as f64;
                let sxx = (len * (len - 1) * (2 * len - 1) / 6) as f64;
                let den = l * sxx - sx * sx;
                for (v, &sxy) in sy.iter_mut().zip(sxy) {
                    // NaN (no full window yet) stays NaN.
                    if !v.is_nan() {
                        let slope = (l * sxy - sx * *v) / den;
                        let intercept = (*v - slope * sx) / l;
                        *v = intercept + slope * (l - 1.0);
                    }
                }
            }
            sy
        }
        Family::Kama if valid && n > 1 => {
            let diffs: Vec<f64> = x.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
            let mut sums = vec![vec![f64::NAN; n - 1]; lens.len()];
            shared_prefix_sums(&diffs, lens, &mut sums, None);
            sums.iter()
                .zip(lens)
                // s[i - 1] is the window of diffs ending at bar i.
                .map(|(s, &len)| kama_with_noise(x, len, s))
                .collect()
        }
        _ => lens.iter().map(|&l| moving_average(family, x, l)).collect(),
    }
}

/// For every start bar `s` and every length `L` of `lens` whose window fits,
/// writes `Σ_{j<L} y[s+j]` (and, with `sxy`, `Σ_{j<L} j·y[s+j]`), summed
/// from `j = 0` up, at index `s + L - 1` of the matching output.
fn shared_prefix_sums(
    y: &[f64],
    lens: &[usize],
    sy: &mut [Vec<f64>],
    mut sxy: Option<&mut [Vec<f64>]>,
) {
    let n = y.len();
    let mut order: Vec<(usize, usize)> = lens.iter().enumerate().map(|(k, &l)| (l, k)).collect();
    order.sort_unstable();
    let lmax = order.last().map_or(0, |o| o.0);
    if lmax == 0 {
        return;
    }
    let with_xy = sxy.is_some();
    let mut s = 0;
    // Lane blocks where every lane's longest window fits.
    while s + LANES + lmax - 1 <= n {
        let mut acc = [0.0f64; LANES];
        let mut accxy = [0.0f64; LANES];
        let mut next = 0;
        for j in 0..lmax {
            let w = &y[s + j..s + j + LANES];
            for l in 0..LANES {
                acc[l] += w[l];
            }
            if with_xy {
                let jf = j as f64;
                for l in 0..LANES {
                    accxy[l] += jf * w[l];
                }
            }
            while next < order.len() && order[next].0 == j + 1 {
                let (len, k) = order[next];
                sy[k][s + len - 1..s + len - 1 + LANES].copy_from_slice(&acc);
                if let Some(sxy) = sxy.as_deref_mut() {
                    sxy[k][s + len - 1..s + len - 1 + LANES].copy_from_slice(&accxy);
                }
                next += 1;
            }
        }
        s += LANES;
    }
    // The remaining starts, one at a time, as far as the series goes.
    for s in s..n {
        let (mut acc, mut accxy) = (0.0f64, 0.0f64);
        let mut next = 0;
        for j in 0..lmax.min(n - s) {
            acc += y[s + j];
            if with_xy {
                accxy += j as f64 * y[s + j];
            }
            while next < order.len() && order[next].0 == j + 1 {
                let (len, k) = order[next];
                sy[k][s + len - 1] = acc;
                if let Some(sxy) = sxy.as_deref_mut() {
                    sxy[k][s + len - 1] = accxy;
                }
                next += 1;
            }
        }
    }
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

    proptest! {
        #[test]
        fn family_shared_sums_equal_per_length(
            x in prop::collection::vec(1.0f64..1000.0, 1..160),
            base in 9usize..40,
            wide in any::<bool>(),
        ) {
            let o = if wide { [1, 3, 5, 7] } else { [1, 2, 4, 6] };
            let lens = [base, base + o[0], base + o[1], base + o[2], base + o[3],
                        base - o[0], base - o[1], base - o[2], base - o[3]];
            for family in Family::ALL {
                let joint = family_moving_averages(family, &x, &lens);
                for (k, &len) in lens.iter().enumerate() {
                    prop_assert_eq!(bits(&joint[k]), bits(&moving_average(family, &x, len)),
                        "{} len {}", family, len);
                }
            }
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
