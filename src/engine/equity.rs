//! Rate of change, growth factors and the simulated equity curve that
//! weights every signal (spec sec. 6 and 8).

/// `R[i] = (close[i] - close[i-1]) / close[i-1]`, NaN at bar 0.
pub fn rate_of_change(close: &[f64]) -> Vec<f64> {
    let mut out = vec![f64::NAN; close.len()];
    for i in 1..close.len() {
        out[i] = (close[i] - close[i - 1]) / close[i - 1];
    }
    out
}

/// `R[i] · exp(La·(i − cutout))` for active bars (`i >= cutout`), NaN
/// before. Every equity curve with the same `lambda` and `cutout` uses the
/// same scaled returns, so they are computed once per series.
pub fn growth_scaled_returns(r: &[f64], la: f64, cutout: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; r.len()];
    for i in cutout..r.len() {
        let g = (la * (i - cutout) as f64).exp();
        out[i] = r[i] * g;
    }
    out
}

/// The Pine `eq()` function (spec sec. 8): an equity curve that earns
/// `±rg[i]` according to the sign of the previous bar's signal, decays by
/// `d` per bar and is floored at 0.25. `signal(i)` gives the signal at bar
/// `i` as a float (na allowed in layer 2); `rg` is from
/// [`growth_scaled_returns`].
///
/// The return `a` is a Pine `var`: when the previous signal is 0 or na it
/// keeps its last value instead of resetting to 0 (sec. 8, step 2).
pub fn equity_into(
    out: &mut [f64],
    start: f64,
    signal: impl Fn(usize) -> f64,
    rg: &[f64],
    d: f64,
    cutout: usize,
) {
    let n = out.len();
    let mut a = 0.0f64;
    let mut e_prev = f64::NAN;
    out[..cutout.min(n)].fill(f64::NAN);
    for i in cutout..n {
        let r = rg[i];
        let p = if i == 0 { f64::NAN } else { signal(i - 1) };
        if p > 0.0 {
            a = r;
        } else if p < 0.0 {
            a = -r;
        }
        let mut e = if e_prev.is_nan() {
            start
        } else {
            (e_prev * d) * (1.0 + a)
        };
        if e < 0.25 {
            e = 0.25;
        }
        out[i] = e;
        e_prev = e;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer2_reuses_stale_return_after_zero_signal() {
        let rg = [f64::NAN, 0.1, 0.2, 0.3];
        let sig = [1.0, 0.0, 0.0, 0.0];
        let mut out = [0.0; 4];
        equity_into(&mut out, 1.0, |i| sig[i], &rg, 1.0, 0);
        // bar 1 earns +0.1 (signal 1 at bar 0); bars 2, 3 keep a = 0.1.
        assert_eq!(out, [1.0, 1.1, 1.1 * 1.1, 1.1 * 1.1 * 1.1]);
    }

    #[test]
    fn floor_and_cutout() {
        let rg = [f64::NAN, f64::NAN, -0.9, -0.9];
        let sig = [1.0; 4];
        let mut out = [0.0; 4];
        equity_into(&mut out, 1.0, |i| sig[i], &rg, 1.0, 1);
        assert!(out[0].is_nan());
        assert_eq!(out[1], 1.0);
        assert_eq!(out[2], 0.25);
        assert_eq!(out[3], 0.25);
    }
}
