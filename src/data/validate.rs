//! Validation of one series: the policy of what is an error and what is a
//! warning.
//!
//! | problem | outcome |
//! |---|---|
//! | rows not sorted by time | sorted, silently (not a problem) |
//! | empty (or blank) symbol | series invalid |
//! | null / NaN / ±inf / ≤ 0 open, high, low or close | series invalid |
//! | a price outside [1e-150, 1e150] (see [`MAX_PRICE`]) | series invalid |
//! | null timestamp | series invalid |
//! | high < low | series invalid |
//! | two rows with the same timestamp and different values | series invalid |
//! | two rows with the same timestamp and the same values | warning, the copy is dropped |
//! | open or close outside [low, high] (real data has these) | warning, bar kept as is |
//! | negative or infinite volume | warning, volume set to null |
//!
//! An invalid series is left out of the store and reported; `atc-bt data
//! info`/`ingest` then exit with status 1, and `run` skips it with a
//! warning. `--strict` turns every warning and invalid series into an error.
//! File-level problems (not Parquet, truncated, empty, missing column,
//! non-numeric column, null symbol) always fail the whole command.

use super::columns::NULL_TS;
use super::error::DataWarning;
use super::parquet_read::RawSeries;

/// A validated series: sorted by time, unique timestamps, positive prices.
#[derive(Debug, Clone, Default)]
pub struct CleanSeries {
    /// Symbol as spelled in the file.
    pub symbol: String,
    /// µs UTC, strictly increasing.
    pub ts: Vec<i64>,
    /// Open.
    pub open: Vec<f64>,
    /// High.
    pub high: Vec<f64>,
    /// Low.
    pub low: Vec<f64>,
    /// Close.
    pub close: Vec<f64>,
    /// Volume, NaN = null.
    pub volume: Vec<f64>,
}

/// Why a series is invalid: first bad row, its ts, the problem.
#[derive(Debug, Clone)]
pub struct Problem {
    /// 0-based file row.
    pub row: u64,
    /// Its timestamp.
    pub ts: i64,
    /// What is wrong.
    pub problem: String,
}

/// The largest price accepted (and [`MIN_PRICE`] the smallest): the bound
/// within which no arithmetic on prices can overflow f64 (max ≈ 1.8e308).
///
/// The largest intermediate of the engine is the least-squares MA's
/// `L·Σ j·close` over a window of length `L` (≈ close·L³/2); the backtest
/// divides equity by a price (units = equity / open), multiplies it back
/// (units · close) and takes returns as ratios of two prices. With every
/// price in [1e-150, 1e150], any ratio of two prices stays within 1e±300
/// and close·L³ stays finite for any length below 10^52, so prices alone
/// can never make a result infinite or NaN. Real prices are many orders of
/// magnitude inside the bound; prices scaled by 1e306 are not.
pub const MAX_PRICE: f64 = 1e150;
/// The smallest price accepted: see [`MAX_PRICE`].
pub const MIN_PRICE: f64 = 1e-150;

fn price_problem(name: &str, v: f64) -> Option<String> {
    if v.is_nan() {
        Some(format!("{name} is NaN or null"))
    } else if v.is_infinite() {
        Some(format!("{name} is {v}; prices must be finite"))
    } else if v <= 0.0 {
        Some(format!("{name} is {v}; prices must be > 0"))
    } else if !(MIN_PRICE..=MAX_PRICE).contains(&v) {
        Some(format!(
            "{name} is {v:e}; prices must lie within [{MIN_PRICE:e}, {MAX_PRICE:e}], where no arithmetic on them can overflow (the engine's least-squares MA sums close·length³, returns divide two prices)"
        ))
    } else {
        None
    }
}

fn same_bits(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Validates one series (see the module doc for the policy).
pub fn validate(
    file: &str,
    raw: RawSeries,
    warnings: &mut Vec<DataWarning>,
) -> Result<CleanSeries, Problem> {
    let n = raw.ts.len();
    if raw.symbol.trim().is_empty() {
        return Err(Problem {
            row: raw.rows.first().copied().unwrap_or(0),
            ts: raw.ts.first().copied().unwrap_or(0),
            problem: "the symbol is empty; every series needs a name".into(),
        });
    }
    let sorted = raw.ts.windows(2).all(|w| w[0] <= w[1]);
    let order: Vec<usize> = if sorted {
        (0..n).collect()
    } else {
        let mut o: Vec<usize> = (0..n).collect();
        o.sort_by_key(|&i| (raw.ts[i], raw.rows[i]));
        o
    };
    let mut out = CleanSeries {
        symbol: raw.symbol.clone(),
        ts: Vec::with_capacity(n),
        open: Vec::with_capacity(n),
        high: Vec::with_capacity(n),
        low: Vec::with_capacity(n),
        close: Vec::with_capacity(n),
        volume: Vec::with_capacity(n),
    };
    let mut prev: Option<usize> = None;
    let warn = |warnings: &mut Vec<DataWarning>, i: usize, problem: String| {
        warnings.push(DataWarning {
            file: file.to_string(),
            symbol: raw.symbol.clone(),
            row: raw.rows[i],
            ts: raw.ts[i],
            problem,
        })
    };
    for &i in &order {
        let bad = |problem: String| Problem {
            row: raw.rows[i],
            ts: raw.ts[i],
            problem,
        };
        if raw.ts[i] == NULL_TS {
            return Err(bad("the timestamp is null".into()));
        }
        let (o, h, l, c) = (raw.open[i], raw.high[i], raw.low[i], raw.close[i]);
        for (name, v) in [("open", o), ("high", h), ("low", l), ("close", c)] {
            if let Some(p) = price_problem(name, v) {
                return Err(bad(p));
            }
        }
        if h < l {
            return Err(bad(format!("high {h} is below low {l}")));
        }
        let mut vol = raw.volume[i];
        if let Some(p) = prev {
            if raw.ts[p] == raw.ts[i] {
                let same = same_bits(raw.open[p], o)
                    && same_bits(raw.high[p], h)
                    && same_bits(raw.low[p], l)
                    && same_bits(raw.close[p], c)
                    && same_bits(raw.volume[p], vol);
                if same {
                    warn(
                        warnings,
                        i,
                        format!("exact duplicate of row {}; dropped", raw.rows[p]),
                    );
                    continue;
                }
                return Err(bad(if raw.sub_us {
                    format!(
                        "rows {} and {} fall on the same microsecond with different values: the file's nanosecond timestamps are truncated to microseconds, the store's unit, so bars less than 1 µs apart collapse into one",
                        raw.rows[p], raw.rows[i]
                    )
                } else {
                    format!(
                        "duplicate timestamp with different values (rows {} and {})",
                        raw.rows[p], raw.rows[i]
                    )
                }));
            }
        }
        if o < l || o > h || c < l || c > h {
            let which = if o < l || o > h { "open" } else { "close" };
            let v = if which == "open" { o } else { c };
            warn(
                warnings,
                i,
                format!("{which} {v} is outside [low {l}, high {h}]; bar kept"),
            );
        }
        if vol.is_infinite() || vol < 0.0 {
            warn(
                warnings,
                i,
                format!("volume {vol} is negative or infinite; set to null"),
            );
            vol = f64::NAN;
        }
        out.ts.push(raw.ts[i]);
        out.open.push(o);
        out.high.push(h);
        out.low.push(l);
        out.close.push(c);
        out.volume.push(vol);
        prev = Some(i);
    }
    Ok(out)
}

/// Median spacing between bars in µs; 0 with fewer than 2 bars.
pub fn median_interval(ts: &[i64]) -> i64 {
    if ts.len() < 2 {
        return 0;
    }
    let mut d: Vec<i64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
    middle(&mut d).0
}

/// The middle of a non-empty slice by selection (O(n); the slice is
/// reordered): the upper middle value, and for an even length the lower
/// one too. The one median of bar spacing: [`median_interval`] takes the
/// upper middle, [`crate::backtest::annualise`] the mean of the two.
pub fn middle<T: Copy + Ord>(v: &mut [T]) -> (T, Option<T>) {
    let n = v.len();
    let (lo, mid, _) = v.select_nth_unstable(n / 2);
    let mid = *mid;
    let below = n
        .is_multiple_of(2)
        .then(|| lo.iter().copied().max().unwrap_or(mid));
    (mid, below)
}

/// blake3 hex of the little-endian bytes of `close`.
pub fn close_hash(close: &[f64]) -> String {
    let mut h = blake3::Hasher::new();
    put_le(&mut h, close.iter().map(|v| v.to_le_bytes()));
    h.finalize().to_hex().to_string()
}

/// blake3 hex of the little-endian bytes of `ts`, then `open`, then
/// `close` (each column length-prefixed, so no two inputs collide).
pub fn bars_hash(ts: &[i64], open: &[f64], close: &[f64]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"atc-bt bars: ts, open, close\0");
    h.update(&(ts.len() as u64).to_le_bytes());
    put_le(&mut h, ts.iter().map(|v| v.to_le_bytes()));
    h.update(&(open.len() as u64).to_le_bytes());
    put_le(&mut h, open.iter().map(|v| v.to_le_bytes()));
    h.update(&(close.len() as u64).to_le_bytes());
    put_le(&mut h, close.iter().map(|v| v.to_le_bytes()));
    h.finalize().to_hex().to_string()
}

/// Feeds 8-byte values to `h` in blocks (one `update` per value is slow).
fn put_le(h: &mut blake3::Hasher, values: impl Iterator<Item = [u8; 8]>) {
    let mut buf = Vec::with_capacity(8 * 4096);
    for v in values {
        buf.extend_from_slice(&v);
        if buf.len() == buf.capacity() {
            h.update(&buf);
            buf.clear();
        }
    }
    h.update(&buf);
}
