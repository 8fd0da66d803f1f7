//! Choosing series and dates: `--symbols`, `--from`, `--to`, `--warmup-bars`.

use std::ops::Range;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};

use super::error::{fmt_ts, DataError, InvalidSeries};
use super::SeriesInfo;

/// Which series to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymbolSelection {
    /// Every valid series.
    All,
    /// These names: bare symbols or `<file stem>:<symbol>`.
    Names(Vec<String>),
}

impl SymbolSelection {
    /// Parses `all`, `A,B,C` or `@file.txt` (one name per line; blank lines
    /// and lines starting with `#` are ignored).
    pub fn parse(spec: &str) -> Result<Self, DataError> {
        let spec_t = spec.trim();
        if spec_t.eq_ignore_ascii_case("all") {
            return Ok(SymbolSelection::All);
        }
        let bad = |problem: String| DataError::BadSymbols {
            spec: spec.to_string(),
            problem,
        };
        let names: Vec<String> = if let Some(file) = spec_t.strip_prefix('@') {
            let text = std::fs::read_to_string(file)
                .map_err(|e| bad(format!("cannot read {file}: {e}")))?;
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect()
        } else {
            spec_t
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        if names.is_empty() {
            return Err(bad("no symbols given".into()));
        }
        Ok(SymbolSelection::Names(names))
    }
}

/// Resolves a selection to indices into `series` (sorted by name, no
/// duplicates). A bare symbol that names series in several files is an
/// error listing the qualified names; a name of a series left out for bad
/// rows (`invalid`) is an error saying so, with the first bad row.
pub fn select(
    series: &[SeriesInfo],
    invalid: &[InvalidSeries],
    sel: &SymbolSelection,
) -> Result<Vec<usize>, DataError> {
    let names = match sel {
        SymbolSelection::All => return Ok((0..series.len()).collect()),
        SymbolSelection::Names(n) => n,
    };
    let mut out = Vec::with_capacity(names.len());
    for want in names {
        if let Ok(i) = series.binary_search_by(|s| s.name.as_str().cmp(want)) {
            out.push(i);
            continue;
        }
        let by_symbol: Vec<usize> = (0..series.len())
            .filter(|&i| series[i].symbol == *want)
            .collect();
        match by_symbol.len() {
            1 => out.push(by_symbol[0]),
            0 => {
                let left_out = invalid
                    .iter()
                    .find(|b| b.name == *want)
                    .or_else(|| invalid.iter().find(|b| b.symbol == *want));
                if let Some(bad) = left_out {
                    return Err(DataError::LeftOut(Box::new(bad.clone())));
                }
                return Err(DataError::UnknownSymbol {
                    symbol: want.clone(),
                    suggestions: closest(want, series.iter().map(|s| s.name.as_str()), 5),
                });
            }
            _ => {
                return Err(DataError::AmbiguousSymbol {
                    symbol: want.clone(),
                    candidates: by_symbol.iter().map(|&i| series[i].name.clone()).collect(),
                })
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The `k` candidates closest to `want` (case-insensitive edit distance,
/// substring matches first).
pub fn closest<'a>(want: &str, candidates: impl Iterator<Item = &'a str>, k: usize) -> Vec<String> {
    let w = want.to_lowercase();
    let mut scored: Vec<(usize, String)> = candidates
        .map(|c| {
            let cl = c.to_lowercase();
            let tail = cl.rsplit(':').next().unwrap_or(&cl).to_string();
            let d = levenshtein(&w, &cl).min(levenshtein(&w, &tail));
            let d = if cl.contains(&w) || w.contains(&tail) {
                d.min(1)
            } else {
                d
            };
            (d, c.to_string())
        })
        .collect();
    scored.sort();
    let limit = (w.chars().count() / 2).max(2);
    scored
        .into_iter()
        .filter(|(d, _)| *d <= limit)
        .take(k)
        .map(|(_, c)| c)
        .collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

const DAY_US: i64 = 86_400_000_000;

fn date_us(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_micros())
        .unwrap_or(0)
}

/// Parses one instant: RFC 3339, `YYYY-MM-DD[ T]HH:MM[:SS[.f]]` (UTC) or
/// `YYYY-MM-DD` (midnight UTC). Used for text timestamps in files too.
pub fn parse_instant(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%:z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.timestamp_micros());
        }
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(date_us)
}

/// Parses a `--from`/`--to` bound to µs UTC: `2020`, `2020-03`,
/// `2020-03-15` or RFC 3339. As a start (`end == false`) a period means its
/// first instant; as an end, its last microsecond (an inclusive bound), so
/// `--to 2020` includes all of 2020.
pub fn parse_date_bound(s: &str, end: bool) -> Result<i64, DataError> {
    let t = s.trim();
    let bad = |problem: &str| DataError::BadDate {
        input: s.to_string(),
        problem: problem.to_string(),
    };
    let parts: Vec<&str> = t.split('-').collect();
    let all_digits = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    let num = |p: &str| p.parse::<i32>().map_err(|_| bad("not a number"));
    if parts.len() == 1 && all_digits(parts[0]) && parts[0].len() == 4 {
        let y = num(parts[0])?;
        let start = NaiveDate::from_ymd_opt(y, 1, 1).ok_or_else(|| bad("no such year"))?;
        let next = NaiveDate::from_ymd_opt(y + 1, 1, 1).ok_or_else(|| bad("no such year"))?;
        return Ok(if end {
            date_us(next) - 1
        } else {
            date_us(start)
        });
    }
    if parts.len() == 2 && all_digits(parts[0]) && all_digits(parts[1]) && parts[0].len() == 4 {
        let (y, m) = (num(parts[0])?, num(parts[1])?);
        let start = NaiveDate::from_ymd_opt(y, m as u32, 1).ok_or_else(|| bad("no such month"))?;
        let next = if m == 12 {
            NaiveDate::from_ymd_opt(y + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(y, m as u32 + 1, 1)
        }
        .ok_or_else(|| bad("no such month"))?;
        return Ok(if end {
            date_us(next) - 1
        } else {
            date_us(start)
        });
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let _ = d.year();
        return Ok(if end {
            date_us(d) + DAY_US - 1
        } else {
            date_us(d)
        });
    }
    parse_instant(t).ok_or_else(|| bad("not a date"))
}

/// Locates a date window in one series' timestamps (sorted).
///
/// Returns `(engine_start, traded)`: `traded` is the range of bars with
/// `from <= ts <= to`; `engine_start` is where the engine should begin so
/// indicators warm up on history before `from`: 0, or `traded.start -
/// warmup_bars` when a warm-up limit is given. `None` when no bar is in the
/// window.
pub fn window(
    view_ts: &[i64],
    from: Option<i64>,
    to: Option<i64>,
    warmup_bars: Option<usize>,
) -> Option<(usize, Range<usize>)> {
    let start = from.map_or(0, |f| view_ts.partition_point(|&t| t < f));
    let end = to.map_or(view_ts.len(), |t| view_ts.partition_point(|&x| x <= t));
    if start >= end {
        return None;
    }
    let engine_start = warmup_bars.map_or(0, |w| start.saturating_sub(w));
    Some((engine_start, start..end))
}

/// Errors when none of `selected` has a bar in the window, saying which range
/// the data covers.
pub fn ensure_window(
    series: &[SeriesInfo],
    selected: &[usize],
    from: Option<i64>,
    to: Option<i64>,
) -> Result<(), DataError> {
    let lo = from.unwrap_or(i64::MIN);
    let hi = to.unwrap_or(i64::MAX);
    let any = selected.iter().any(|&i| {
        let s = &series[i];
        s.bars > 0 && s.first_ts <= hi && s.last_ts >= lo
    });
    if any || selected.is_empty() {
        return Ok(());
    }
    let first = selected
        .iter()
        .map(|&i| series[i].first_ts)
        .min()
        .unwrap_or(0);
    let last = selected
        .iter()
        .map(|&i| series[i].last_ts)
        .max()
        .unwrap_or(0);
    Err(DataError::EmptyWindow {
        from: from.map_or("the start".into(), fmt_ts),
        to: to.map_or("the end".into(), fmt_ts),
        covers: format!("{} – {}", fmt_ts(first), fmt_ts(last)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let y2020 = parse_date_bound("2020", false).unwrap();
        assert_eq!(fmt_ts(y2020), "2020-01-01");
        let e2020 = parse_date_bound("2020", true).unwrap();
        assert_eq!(e2020 + 1, parse_date_bound("2021", false).unwrap());
        assert_eq!(parse_date_bound("2020-12", true).unwrap(), e2020);
        assert_eq!(
            fmt_ts(parse_date_bound("2020-03", false).unwrap()),
            "2020-03-01"
        );
        assert_eq!(
            parse_date_bound("2020-03-15", true).unwrap() + 1,
            parse_date_bound("2020-03-16", false).unwrap()
        );
        assert_eq!(
            fmt_ts(parse_date_bound("2020-03-15T14:30:00+01:00", false).unwrap()),
            "2020-03-15T13:30:00Z"
        );
        assert!(parse_date_bound("2020-13", false).is_err());
        assert!(parse_date_bound("yesterday", false).is_err());
    }

    #[test]
    fn windows() {
        let ts = [10, 20, 30, 40, 50];
        assert_eq!(window(&ts, None, None, None), Some((0, 0..5)));
        assert_eq!(window(&ts, Some(25), None, None), Some((0, 2..5)));
        assert_eq!(window(&ts, Some(25), Some(40), Some(1)), Some((1, 2..4)));
        assert_eq!(window(&ts, Some(25), Some(40), Some(9)), Some((0, 2..4)));
        assert_eq!(window(&ts, Some(51), None, None), None);
        assert_eq!(window(&ts, Some(21), Some(29), None), None);
    }

    #[test]
    fn selections() {
        assert_eq!(SymbolSelection::parse("all").unwrap(), SymbolSelection::All);
        assert_eq!(
            SymbolSelection::parse(" A, B ,").unwrap(),
            SymbolSelection::Names(vec!["A".into(), "B".into()])
        );
        assert!(SymbolSelection::parse(" , ").is_err());
        assert_eq!(
            closest("MSFT", ["AAPL", "MSFX", "x:MSFT"].into_iter(), 5)[0],
            "x:MSFT"
        );
    }
}
