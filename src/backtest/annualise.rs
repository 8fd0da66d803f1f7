//! The annualisation rule: how many bars make a year, and the calendar
//! (time zone) it is judged in.
//!
//! Users compare our Sharpe and volatility against quantstats and
//! empyrical, which take `periods` as an argument; we infer it from the
//! timestamps and write it into the results (`Metrics::periods_per_year`) so
//! the comparison can use the same number. `--periods-per-year N` overrides
//! the inference (see `MetricsOptions`).
//!
//! # The rule
//!
//! Weekdays and calendar days are judged in the series' own time zone (the
//! zone of the Parquet timestamp column, kept in the data store; UTC when
//! the column has none). A market *trades on weekends* when weekend bars are
//! a real share of its bars: more than `0.6 · 2/7 ≈ 17%`, backtesting.py's
//! threshold (`backtesting/_stats.py`, `have_weekends`), so one special
//! Saturday session does not make a stock market 24/7. With `d` the median
//! spacing of consecutive timestamps:
//!
//! | median spacing `d`    | periods per year                                        |
//! |-----------------------|---------------------------------------------------------|
//! | fewer than 2 bars     | 252                                                     |
//! | `d < 20 h`, sessions  | `D · m`: `m` = median bars per local calendar day       |
//! | `d < 20 h`, otherwise | bars observed per year: `(n − 1) · 365 days / (ts_last − ts_first)` |
//! | `20 h ≤ d ≤ 4 days`   | `D`                                                     |
//! | `4 < d ≤ 10 days`     | 52 (weekly)                                             |
//! | `10 < d ≤ 45 days`    | 12 (monthly)                                            |
//! | `45 < d ≤ 135 days`   | 4 (quarterly)                                           |
//! | `d > 135 days`        | `365.25 days / d` (≈ 1 for yearly bars)                 |
//!
//! `D` is 365 for a market that trades on weekends, else 252. Intraday bars
//! come in *sessions* when they are time bars (at least half the gaps are
//! the median spacing, within 1%), a typical day holds at least two bars
//! and its bars span less than 20 hours (median over local days of
//! `last − first + d`): a stock
//! exchange's 7 hourly bars a weekday are `252 · 7 = 1,764` a year, not the
//! 1,830 its calendar span would suggest. Round-the-clock bars (FX, crypto)
//! and bars sampled by activity (dollar, volume, tick bars) have no session
//! to count, so they use the bars actually observed per year over the
//! series' span: 24/7 hourly bars give exactly `365 · 24 = 8,760`, EURUSD
//! hourly bars (closed at weekends) about 6,200.

use std::str::FromStr;

use arrow_array::timezone::Tz;
use chrono::{Datelike, NaiveDate, Offset, TimeZone};

/// One day in microseconds (timestamps are µs since the Unix epoch, UTC).
pub const DAY_US: i64 = 86_400_000_000;

/// Share of weekend bars above which a market is taken to trade on
/// weekends: backtesting.py's `2/7 · 0.6`.
pub const WEEKEND_SHARE: f64 = 2.0 / 7.0 * 0.6;

/// Weekday of a timestamp, 0 = Monday … 6 = Sunday (UTC).
///
/// 1970-01-01 was a Thursday (3).
pub fn weekday(ts: i64) -> u32 {
    (ts.div_euclid(DAY_US) + 3).rem_euclid(7) as u32
}

/// The time zone in which a series' weekdays, days and calendar years are
/// judged: the zone of its Parquet timestamp column, or UTC.
///
/// Accepts what Arrow accepts in a timestamp type: an IANA name
/// (`Asia/Tokyo`, `America/New_York`, `UTC`) or a fixed offset (`+09:00`).
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    /// `None` for UTC.
    tz: Option<(Tz, String)>,
}

impl PartialEq for Calendar {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Calendar {
    /// UTC.
    pub fn utc() -> Calendar {
        Calendar { tz: None }
    }

    /// The calendar of a zone name; `None` (no zone) is UTC. Names that
    /// mean UTC (`UTC`, `Etc/UTC`, `+00:00`, `Z`) give [`Calendar::utc`].
    /// An unknown name is an error naming it.
    pub fn from_zone(name: Option<&str>) -> Result<Calendar, String> {
        let Some(name) = name.map(str::trim) else {
            return Ok(Calendar::utc());
        };
        if matches!(
            name,
            "" | "UTC" | "utc" | "Z" | "Etc/UTC" | "+00:00" | "+0000" | "+00" | "GMT"
        ) {
            return Ok(Calendar::utc());
        }
        let tz = Tz::from_str(name).map_err(|e| format!("unknown time zone {name:?}: {e}"))?;
        Ok(Calendar {
            tz: Some((tz, name.to_string())),
        })
    }

    /// The zone's name (`UTC` for UTC).
    pub fn name(&self) -> &str {
        self.tz.as_ref().map_or("UTC", |(_, n)| n.as_str())
    }

    /// The zone's name, `None` for UTC (what the data store records).
    pub fn zone(&self) -> Option<&str> {
        self.tz.as_ref().map(|(_, n)| n.as_str())
    }

    /// `true` for UTC.
    pub fn is_utc(&self) -> bool {
        self.tz.is_none()
    }

    /// Local wall-clock time of `ts` as µs since the local epoch (UTC + the
    /// zone's offset at that instant).
    pub fn local(&self, ts: i64) -> i64 {
        match &self.tz {
            None => ts,
            Some((tz, _)) => match chrono::DateTime::from_timestamp_micros(ts) {
                Some(t) => {
                    let off = tz.offset_from_utc_datetime(&t.naive_utc()).fix();
                    ts + i64::from(off.local_minus_utc()) * 1_000_000
                }
                None => ts,
            },
        }
    }

    /// Local weekday of `ts`, 0 = Monday … 6 = Sunday.
    pub fn weekday(&self, ts: i64) -> u32 {
        weekday(self.local(ts))
    }

    /// The local calendar years that `ts_first..=ts_last` touches, each with
    /// the UTC instant (µs) of its local 1 January 00:00 (the earliest
    /// instant of that wall-clock time). One time-zone lookup per year, so
    /// per-year statistics stay cheap on long series.
    pub fn year_starts(&self, ts_first: i64, ts_last: i64) -> Vec<(i32, i64)> {
        let year =
            |ts: i64| chrono::DateTime::from_timestamp_micros(self.local(ts)).map(|t| t.year());
        let (Some(y0), Some(y1)) = (year(ts_first), year(ts_last)) else {
            return Vec::new();
        };
        (y0..=y1)
            .filter_map(|y| {
                let midnight = NaiveDate::from_ymd_opt(y, 1, 1)?.and_hms_opt(0, 0, 0)?;
                let utc = match &self.tz {
                    None => midnight.and_utc().timestamp_micros(),
                    Some((tz, _)) => tz
                        .from_local_datetime(&midnight)
                        .earliest()
                        .map(|t| t.timestamp_micros())
                        // Midnight skipped by a clock change: the UTC
                        // instant of midnight at the standard offset.
                        .unwrap_or_else(|| {
                            let off = tz.offset_from_utc_datetime(&midnight).fix();
                            midnight.and_utc().timestamp_micros()
                                - i64::from(off.local_minus_utc()) * 1_000_000
                        }),
                };
                Some((y, utc))
            })
            .collect()
    }
}

/// Median of a non-empty slice, by selection (O(n), the slice is
/// reordered; [`crate::data::validate::middle`]); the mean of the two
/// middle values when the length is even.
fn median_in_place<T: Copy + Ord + Into<f64>>(v: &mut [T]) -> f64 {
    match crate::data::validate::middle(v) {
        (mid, None) => mid.into(),
        (mid, Some(below)) => 0.5 * (below.into() + mid.into()),
    }
}

/// Bars per year of a series in UTC; see the module docs for the rule.
/// `ts` must be sorted (µs since epoch, UTC).
pub fn periods_per_year(ts: &[i64]) -> f64 {
    periods_per_year_in(ts, &Calendar::utc())
}

/// Bars per year of a series whose weekdays and days are judged in
/// `calendar`; see the module docs for the rule. `ts` must be sorted (µs
/// since epoch, UTC).
pub fn periods_per_year_in(ts: &[i64], calendar: &Calendar) -> f64 {
    // Gaps in whole seconds (exact in f64, cheap to select on).
    let mut gaps: Vec<u32> = ts
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|&g| g > 0)
        .map(|g| (g / 1_000_000).clamp(1, i64::from(u32::MAX)) as u32)
        .collect();
    if gaps.is_empty() {
        return 252.0;
    }
    let d_s = median_in_place(&mut gaps);
    let d = d_s / 86_400.0; // in days
                            // Time bars are regular: most gaps are the spacing itself. Bars sampled
                            // by activity (dollar, volume, tick bars) are not.
    let regular = gaps
        .iter()
        .filter(|&&g| (f64::from(g) - d_s).abs() <= 0.01 * d_s)
        .count()
        * 2
        >= gaps.len();
    if d > 4.0 {
        return if d <= 10.0 {
            52.0
        } else if d <= 45.0 {
            12.0
        } else if d <= 135.0 {
            4.0
        } else {
            365.25 / d
        };
    }
    let local = |t: i64| calendar.local(t);
    let weekend = ts.iter().filter(|&&t| weekday(local(t)) >= 5).count();
    let days_per_year = if weekend as f64 / ts.len() as f64 > WEEKEND_SHARE {
        365.0
    } else {
        252.0
    };
    if d >= 20.0 / 24.0 {
        return days_per_year;
    }
    // Intraday: bars per local calendar day, and how much of the day they
    // span (in seconds, including one spacing for the last bar).
    let d_us = (d_s * 1e6) as i64;
    let mut counts: Vec<u32> = Vec::new();
    let mut spans: Vec<u32> = Vec::new();
    let (mut day, mut first, mut prev) = (i64::MIN, 0i64, 0i64);
    for &t in ts {
        let l = local(t);
        if l.div_euclid(DAY_US) != day {
            if day != i64::MIN {
                spans.push(((prev - first + d_us) / 1_000_000) as u32);
            }
            day = l.div_euclid(DAY_US);
            first = l;
            counts.push(0);
        }
        if let Some(c) = counts.last_mut() {
            *c += 1;
        }
        prev = l;
    }
    spans.push(((prev - first + d_us) / 1_000_000) as u32);
    // A day of one bar is no session: a timeline whose typical day holds
    // one bar while its median spacing is intraday mixes frequencies (a
    // daily series beside a short intraday one) and is counted as observed.
    let session = regular
        && median_in_place(&mut counts) >= 2.0
        && median_in_place(&mut spans) < 20.0 * 3600.0;
    if session {
        days_per_year * median_in_place(&mut counts)
    } else {
        let span = (ts[ts.len() - 1] - ts[0]) as f64;
        (ts.len() - 1) as f64 * 365.0 * DAY_US as f64 / span
    }
}

/// A warning when the symbols of one run have different bar frequencies or
/// calendars (their periods per year differ by more than 10%): the
/// portfolio is then annualised on its own (mixed) timeline, and each
/// symbol's statistics on its own. `None` when they agree.
pub fn mixed_frequencies<'a>(
    per_symbol: impl IntoIterator<Item = (&'a str, f64)>,
    portfolio: f64,
) -> Option<String> {
    let mut lo: Option<(&str, f64)> = None;
    let mut hi: Option<(&str, f64)> = None;
    for (s, p) in per_symbol {
        if !p.is_finite() {
            continue;
        }
        if lo.is_none_or(|l| p < l.1) {
            lo = Some((s, p));
        }
        if hi.is_none_or(|h| p > h.1) {
            hi = Some((s, p));
        }
    }
    let (lo, hi) = (lo?, hi?);
    (hi.1 > lo.1 * 1.1).then(|| {
        format!(
            "symbols have different bar frequencies or calendars ({} {:.0} and {} {:.0} periods a year): \
             each symbol's metrics use its own, the portfolio's use its own timeline ({portfolio:.0} a year); \
             compare portfolio ratios with care or pass --periods-per-year",
            lo.0, lo.1, hi.0, hi.1
        )
    })
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
    fn one_weekend_session_does_not_make_a_24_7_market() {
        let mut ts = weekdays(300);
        ts.push(MON + 5 * DAY_US); // a Saturday
        ts.sort();
        assert_eq!(periods_per_year(&ts), 252.0);
    }

    #[test]
    fn weekdays_are_judged_in_the_series_zone() {
        // Tokyo midnight is 15:00 UTC the day before: Monday's bar is a
        // Sunday in UTC.
        let tokyo = Calendar::from_zone(Some("Asia/Tokyo")).unwrap();
        let ts: Vec<i64> = weekdays(60).iter().map(|t| t - 9 * H).collect();
        assert_eq!(periods_per_year(&ts), 365.0);
        assert_eq!(periods_per_year_in(&ts, &tokyo), 252.0);
        assert_eq!(tokyo.weekday(ts[0]), 0);
        let fixed = Calendar::from_zone(Some("+09:00")).unwrap();
        assert_eq!(periods_per_year_in(&ts, &fixed), 252.0);
        assert!(Calendar::from_zone(Some("Mars/Olympus")).is_err());
        assert!(Calendar::from_zone(Some("UTC")).unwrap().is_utc());
    }

    #[test]
    fn calendar_years_start_at_local_midnight() {
        let tokyo = Calendar::from_zone(Some("Asia/Tokyo")).unwrap();
        // 2024-01-01 00:00 in Tokyo is 2023-12-31 15:00 UTC.
        let ys = tokyo.year_starts(MON - 20 * DAY_US, MON + 20 * DAY_US);
        assert_eq!(ys, vec![(2023, 1_672_498_800_000_000), (2024, MON - 9 * H)]);
        let utc = Calendar::utc().year_starts(MON, MON);
        assert_eq!(utc, vec![(2024, MON)]);
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
    fn intraday_round_the_clock_is_observed_per_year() {
        let h: Vec<i64> = (0..24 * 10).map(|k| MON + k * H).collect();
        assert!((periods_per_year(&h) - 365.0 * 24.0).abs() < 1e-9);
        // Weekdays only, round the clock (FX): what is observed, not 24 · 252.
        let fx: Vec<i64> = (0..24 * 7 * 8)
            .map(|k| MON + k * H)
            .filter(|&t| weekday(t) < 5)
            .collect();
        let want = (fx.len() - 1) as f64 * 365.0 * 24.0 / ((fx[fx.len() - 1] - fx[0]) / H) as f64;
        assert!((periods_per_year(&fx) - want).abs() < 1e-9);
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
    fn mixed_daily_and_intraday_timeline_is_observed_not_one_bar_sessions() {
        // 300 weekday bars at midnight, plus 3,000 round-the-clock 7-minute
        // bars over ~15 days in the middle (a daily stock beside a short
        // intraday series on one portfolio timeline): most days hold one
        // bar, which is no session (it read 365 · 1 before).
        let m = 7 * 60 * 1_000_000;
        let mut ts: Vec<i64> = weekdays(300);
        let start = ts[100] + H / 2;
        ts.extend((0..3_000).map(|k| start + k * m));
        ts.sort_unstable();
        ts.dedup();
        let want =
            (ts.len() - 1) as f64 * 365.0 * DAY_US as f64 / (ts[ts.len() - 1] - ts[0]) as f64;
        assert!((periods_per_year(&ts) - want).abs() < 1e-9);
        assert!(want > 2_000.0, "{want}");
    }

    #[test]
    fn activity_bars_are_observed_per_year() {
        // Dollar-bar-like: irregular gaps, bunched in a 9-hour day.
        let mut ts = Vec::new();
        for (k, d) in weekdays(40).into_iter().enumerate() {
            let mut t = d + 13 * H;
            for j in 0..30 {
                t += 60_000_000 * (5 + ((k * 31 + j * 17) % 23) as i64);
                ts.push(t);
            }
        }
        let want =
            (ts.len() - 1) as f64 * 365.0 * DAY_US as f64 / (ts[ts.len() - 1] - ts[0]) as f64;
        assert!((periods_per_year(&ts) - want).abs() < 1e-9);
    }

    #[test]
    fn too_few_bars_default_252() {
        assert_eq!(periods_per_year(&[]), 252.0);
        assert_eq!(periods_per_year(&[MON]), 252.0);
    }

    #[test]
    fn mixed_frequencies_warn_once_they_differ() {
        assert!(mixed_frequencies([("A", 252.0), ("B", 252.0)], 252.0).is_none());
        assert!(mixed_frequencies([("A", 6201.0), ("B", 6210.0)], 6205.0).is_none());
        let w = mixed_frequencies([("AAPL", 252.0), ("BTC", 365.0)], 365.0).unwrap();
        assert!(w.contains("AAPL 252") && w.contains("BTC 365"), "{w}");
    }
}
