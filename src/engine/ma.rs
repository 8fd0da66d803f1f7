//! The moving averages of the six families (spec sec. 5).
//!
//! Each function takes the close series and one derived length and returns
//! a vector of the same length with NaN (Pine `na`) before the first valid
//! bar. Window sums are accumulated in the same order as the reference
//! (oldest to newest; WMA newest first): a cross between `close` and an MA
//! is a comparison of two floats, and summing in the reference's order keeps
//! even a 1-ulp tie on a flat stretch of prices on the same side. The cost
//! is O(n·L) per MA, linear in bars; the batched engine is where speed is
//! bought.

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

/// Sum of `w` from oldest to newest.
#[inline]
fn window_sum(w: &[f64]) -> f64 {
    let mut s = 0.0;
    for &v in w {
        s += v;
    }
    s
}

/// Simple moving average (`ta.sma`); first valid bar `len - 1`.
pub fn sma(x: &[f64], len: usize) -> Vec<f64> {
    let n = x.len();
    let mut out = vec![f64::NAN; n];
    if len == 0 || len > n {
        return out;
    }
    let l = len as f64;
    for i in len - 1..n {
        out[i] = window_sum(&x[i + 1 - len..=i]) / l;
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
    for i in len - 1..n {
        let mut s = 0.0;
        for j in 0..len {
            s += (len - j) as f64 * x[i - j];
        }
        out[i] = s / denom;
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
    for i in len - 1..n {
        let w = &x[i + 1 - len..=i];
        let mut sy = 0.0;
        let mut sxy = 0.0;
        for (j, &y) in w.iter().enumerate() {
            sy += y;
            sxy += j as f64 * y;
        }
        let slope = (l * sxy - sx * sy) / den;
        let intercept = (sy - slope * sx) / l;
        out[i] = intercept + slope * (l - 1.0);
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
    let mut k = 0.0; // nz(K[-1])
    for i in 0..n {
        let ratio = if i >= len && len > 0 {
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
        let sc = ratio * span + KAMA_SLOW;
        let smooth = sc * sc;
        k += smooth * (x[i] - k);
        out[i] = k;
    }
    out
}
