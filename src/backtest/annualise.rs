//! The annualisation rule: how many bars make a year.
//!
//! Users compare our Sharpe and volatility against quantstats and
//! empyrical, which take `periods` as an argument; we infer it from the
//! timestamps and write it into the results (`Metrics::periods_per_year`) so
//! the comparison can use the same number.
//!
//! Rule, on the median spacing `d` between consecutive timestamps:
//!
//! | median spacing `d`   | periods per year                                  |
//! |----------------------|---------------------------------------------------|
//! | fewer than 2 bars    | 252                                               |
//! | `d < 20 h` (intraday)| 24/7: `365 · 86 400 s / d`; sessions: `252 · median bars per UTC day` |
//! | `20 h ≤ d ≤ 4 days`  | 365 if any bar falls on a Saturday/Sunday (UTC), else 252 |
//! | `4 < d ≤ 10 days`    | 52 (weekly)                                       |
//! | `10 < d ≤ 45 days`   | 12 (monthly)                                      |
//! | `45 < d ≤ 135 days`  | 4 (quarterly)                                     |
//! | `d > 135 days`       | `365.25 days / d` (≈ 1 for yearly bars)           |
//!
//! "24/7" means the series has a bar on a weekend day. For a session market
//! (no weekend bars) intraday bars are counted per calendar day rather than
//! derived from the spacing, because the night gap makes `86 400 s / d`
//! overcount (1-hour stock bars are ~7 a day, not 24).

/// One day in microseconds (timestamps are µs since the Unix epoch, UTC).
pub const DAY_US: i64 = 86_400_000_000;

/// Weekday of a timestamp, 0 = Monday … 6 = Sunday (UTC).
///
/// 1970-01-01 was a Thursday (3).
pub fn weekday(ts: i64) -> u32 {
    (ts.div_euclid(DAY_US) + 3).rem_euclid(7) as u32
}

/// `true` if any timestamp falls on a Saturday or Sunday (UTC).
pub fn has_weekend_bars(ts: &[i64]) -> bool {
    ts.iter().any(|&t| weekday(t) >= 5)
}

/// Median of a non-empty sorted slice (mean of the two middle values when
/// the length is even).
fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Bars per year for annualising per-bar statistics; see the module docs
/// for the rule. `ts` must be sorted (µs since epoch, UTC).
pub fn periods_per_year(ts: &[i64]) -> f64 {
    let mut gaps: Vec<f64> = ts
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64)
        .filter(|&g| g > 0.0)
        .collect();
    if gaps.is_empty() {
        return 252.0;
    }
    gaps.sort_by(f64::total_cmp);
    let d = median_sorted(&gaps) / DAY_US as f64; // in days
    let weekend = has_weekend_bars(ts);
    let days_per_year = if weekend { 365.0 } else { 252.0 };
    if d < 20.0 / 24.0 {
        if weekend {
            365.0 / d
        } else {
            // Bars per UTC calendar day; ts is sorted, so each day is one run.
            let mut counts: Vec<f64> = Vec::new();
            let mut prev_day = None;
            for &t in ts {
                let day = t.div_euclid(DAY_US);
                if prev_day == Some(day) {
                    if let Some(c) = counts.last_mut() {
                        *c += 1.0;
                    }
                } else {
                    counts.push(1.0);
                    prev_day = Some(day);
                }
            }
            counts.sort_by(f64::total_cmp);
            252.0 * median_sorted(&counts)
        }
    } else if d <= 4.0 {
        days_per_year
    } else if d <= 10.0 {
        52.0
    } else if d <= 45.0 {
        12.0
    } else if d <= 135.0 {
        4.0
    } else {
        365.25 / d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = DAY_US / 24;
    /// 2024-01-01 00:00 UTC, a Monday.
    const MON: i64 = 1_704_067_200_000_000;

    fn weekdays(n: usize) -> Vec<i64> {
        (0..)
            .map(|k| MON + k * DAY_US)
            .filter(|&t| weekday(t) < 5)
            .take(n)
            .collect()
    }

    #[test]
    fn weekday_of_known_dates() {
        assert_eq!(weekday(0), 3); // 1970-01-01 Thursday
        assert_eq!(weekday(MON), 0);
        assert_eq!(weekday(MON + 5 * DAY_US), 5);
        assert_eq!(weekday(-DAY_US), 2); // 1969-12-31 Wednesday
    }

    #[test]
    fn daily_stocks_252_and_crypto_365() {
        assert_eq!(periods_per_year(&weekdays(30)), 252.0);
        let all: Vec<i64> = (0..30).map(|k| MON + k * DAY_US).collect();
        assert_eq!(periods_per_year(&all), 365.0);
    }

    #[test]
    fn weekly_monthly_quarterly_yearly() {
        let w: Vec<i64> = (0..10).map(|k| MON + k * 7 * DAY_US).collect();
        assert_eq!(periods_per_year(&w), 52.0);
        let m: Vec<i64> = (0..10).map(|k| MON + k * 30 * DAY_US).collect();
        assert_eq!(periods_per_year(&m), 12.0);
        let q: Vec<i64> = (0..10).map(|k| MON + k * 91 * DAY_US).collect();
        assert_eq!(periods_per_year(&q), 4.0);
        let y: Vec<i64> = (0..4).map(|k| MON + k * 365 * DAY_US).collect();
        assert!((periods_per_year(&y) - 365.25 / 365.0).abs() < 1e-12);
    }

    #[test]
    fn intraday_24_7_from_spacing() {
        let h: Vec<i64> = (0..24 * 10).map(|k| MON + k * H).collect();
        assert_eq!(periods_per_year(&h), 365.0 * 24.0);
    }

    #[test]
    fn intraday_sessions_count_bars_per_day() {
        // 7 hourly bars a weekday (13:30 … 19:30 UTC).
        let mut ts = Vec::new();
        for d in weekdays(10) {
            for k in 0..7 {
                ts.push(d + 13 * H + H / 2 + k * H);
            }
        }
        assert_eq!(periods_per_year(&ts), 252.0 * 7.0);
    }

    #[test]
    fn too_few_bars_default_252() {
        assert_eq!(periods_per_year(&[]), 252.0);
        assert_eq!(periods_per_year(&[MON]), 252.0);
    }
}
