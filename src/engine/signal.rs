//! Persistent cross signals (spec sec. 7), `Cut` (sec. 10) and the
//! direction state machine (sec. 12).
//!
//! Every comparison involving NaN is false in IEEE arithmetic, which is
//! exactly Pine's "na comparisons are falsy" rule (sec. 13.1), so no explicit
//! na checks are needed.

/// `crossover(a, b)` at bar `i >= 1`.
#[inline]
fn crossover(a_now: f64, a_prev: f64, b_now: f64, b_prev: f64) -> bool {
    a_now > b_now && a_prev <= b_prev
}

/// `crossunder(a, b)` at bar `i >= 1`.
#[inline]
fn crossunder(a_now: f64, a_prev: f64, b_now: f64, b_prev: f64) -> bool {
    a_now < b_now && a_prev >= b_prev
}

/// The persistent cross signal of `close` against one MA: 0 until the first
/// cross, then +1 after a cross over and -1 after a cross under.
pub fn cross_signal(close: &[f64], ma: &[f64]) -> Vec<i8> {
    let n = close.len().min(ma.len());
    let mut out = vec![0i8; n];
    let mut s = 0i8;
    for i in 1..n {
        if crossover(close[i], close[i - 1], ma[i], ma[i - 1]) {
            s = 1;
        }
        if crossunder(close[i], close[i - 1], ma[i], ma[i - 1]) {
            s = -1;
        }
        out[i] = s;
    }
    out
}

/// Pine's `Cut`: 1 above 0.49, -1 below -0.49, else 0 (na gives 0).
#[inline]
pub fn cut(x: f64) -> f64 {
    if x > 0.49 {
        1.0
    } else if x < -0.49 {
        -1.0
    } else {
        0.0
    }
}

/// Direction from the average signal: +1 after `avg` crosses above
/// `long_threshold`, -1 after it crosses below `short_threshold` (-1 wins a
/// tie), 0 before either (Pine's na).
pub fn direction(avg: &[f64], long_threshold: f64, short_threshold: f64) -> Vec<i8> {
    let n = avg.len();
    let mut out = vec![0i8; n];
    let mut state = 0i8;
    for i in 1..n {
        if avg[i] > long_threshold && avg[i - 1] <= long_threshold {
            state = 1;
        }
        if avg[i] < short_threshold && avg[i - 1] >= short_threshold {
            state = -1;
        }
        out[i] = state;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cross_on_first_valid_ma_bar() {
        let close = [1.0, 3.0, 3.0];
        let ma = [f64::NAN, 2.0, 2.0];
        assert_eq!(cross_signal(&close, &ma), vec![0, 0, 0]);
    }

    #[test]
    fn signal_persists_and_flips() {
        let close = [1.0, 3.0, 3.0, 1.0, 1.0];
        let ma = [2.0, 2.0, 2.0, 2.0, 2.0];
        assert_eq!(cross_signal(&close, &ma), vec![0, 1, 1, -1, -1]);
    }

    #[test]
    fn cut_edges() {
        assert_eq!(cut(0.5), 1.0);
        assert_eq!(cut(0.49), 0.0);
        assert_eq!(cut(-0.5), -1.0);
        assert_eq!(cut(f64::NAN), 0.0);
    }

    #[test]
    fn direction_short_wins_and_na_is_zero() {
        let avg = [f64::NAN, 0.0, 0.5, 0.5, -0.5];
        assert_eq!(direction(&avg, 0.1, -0.1), vec![0, 0, 1, 1, -1]);
        // Both thresholds crossed on one bar (long above short): -1 wins.
        let avg = [0.0, 0.3];
        assert_eq!(direction(&avg, 0.1, 0.2), vec![0, 1]);
        let avg = [0.25, 0.15];
        assert_eq!(direction(&avg, 0.1, 0.2), vec![0, -1]);
    }
}
