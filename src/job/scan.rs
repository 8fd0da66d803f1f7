//! The scan job (`atc-bt scan`): today's ATC state of every selected
//! symbol, for a trader's morning list.
//!
//! For each selected series with a bar in the window: its last bar's time
//! (the window's last bar, `--to` or the end of the data), the average
//! signal `avg` and direction `dir` there, how many bars ago the direction
//! last changed, and its strength rank. The engine sees exactly the bars a
//! `run` with the same settings gives it (the warm-up history plus the
//! window), and its signals come from and go to the same signals cache, so
//! `avg` and `dir` are bit-identical to the last row of each symbol in
//! that run's `signals.parquet`. Nothing is written but the cache; the
//! job prints nothing ([`super::Progress`] gets the data notes and
//! warnings).

use serde::Serialize;

use super::{Progress, Result};
use crate::cache::{Cache, CacheStats};
use crate::run::{engine_signals, prepare, Skipped, Strategy, RUN_CHUNK};

/// Which rows a scan keeps (the rank is over every scanned symbol, before
/// these filters).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScanFilter {
    /// Only `dir = 1` (with `short`: `dir ≠ 0`).
    pub long: bool,
    /// Only `dir = −1` (with `long`: `dir ≠ 0`).
    pub short: bool,
    /// Only `|avg| ≥` this.
    pub min_strength: Option<f64>,
}

impl ScanFilter {
    /// Whether `row` passes.
    pub fn keeps(&self, row: &ScanRow) -> bool {
        let side = match (self.long, self.short) {
            (false, false) => true,
            (true, false) => row.dir == 1,
            (false, true) => row.dir == -1,
            (true, true) => row.dir != 0,
        };
        side && self.min_strength.is_none_or(|m| row.avg.abs() >= m)
    }
}

/// What a scan needs.
#[derive(Debug, Clone, Default)]
pub struct ScanSettings {
    /// Data, symbols and window (the last bar is the window's).
    pub data: super::DataSettings,
    /// The strategy (only `[atc]` matters).
    pub strategy: Strategy,
    /// The signals cache.
    pub cache: super::CacheSettings,
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// Which rows to keep.
    pub filter: ScanFilter,
    /// Show the data ingest's progress bar when a store is built.
    pub show_ingest: bool,
}

/// One symbol's state at its last bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanRow {
    /// Series name.
    pub symbol: String,
    /// Its last bar's time, µs UTC.
    pub ts: i64,
    /// Average signal at that bar, in [−1, 1] (spec/ATC.md sec. 6).
    pub avg: f64,
    /// Direction at that bar: −1, 0 or 1.
    pub dir: i8,
    /// Bars since the direction last changed: 0 when it changed at the
    /// last bar; counted over the bars the engine saw, so a direction that
    /// never changed there gives that count minus one.
    pub bars_since_change: usize,
    /// 1 = the largest `|avg|` of the scan (ties in symbol order).
    pub rank: usize,
}

/// What a scan returns.
#[derive(Debug, Clone)]
pub struct ScanDone {
    /// The rows kept by the filter, by rank.
    pub rows: Vec<ScanRow>,
    /// How many symbols were scanned (ranked) before the filter.
    pub scanned: usize,
    /// Symbols left out (no bar in the window, engine refused).
    pub skipped: Vec<Skipped>,
    /// This process's cache counts.
    pub cache: CacheStats,
}

/// Scans the selection as `settings` say.
///
/// Errors: the data or the selection ([`super::JobError::Data`]), an ATC
/// parameter out of range, a window no selected symbol has bars in.
pub fn scan(settings: &ScanSettings, progress: &dyn Progress) -> Result<ScanDone> {
    let s = settings;
    s.strategy.atc.validate()?;
    let (data, plan, _notes) = super::open_selection(&s.data, s.show_ingest, false, progress)?;
    let cache = Cache::open(&s.cache.config(data.base()));
    super::cache_warnings(&cache, progress);
    let pool = super::pool(s.threads)?;
    let (active, mut skipped) = prepare(&data, &plan)?;
    progress.start("symbols", active.len() as u64);
    let mut rows = Vec::with_capacity(active.len());
    pool.install(|| {
        for chunk in active.chunks(RUN_CHUNK) {
            let signals = engine_signals(&data, chunk, &s.strategy.atc, &cache);
            for (a, sig) in chunk.iter().zip(signals) {
                let name = &data.series()[a.idx].name;
                match sig.unwrap_or_else(|| Err("no engine result".into())) {
                    Ok((avg, dir)) => {
                        let (Some(&last_avg), Some(&last_dir)) = (avg.last(), dir.last()) else {
                            continue;
                        };
                        let changed = dir.windows(2).rposition(|w| w[0] != w[1]);
                        let since = match changed {
                            Some(k) => dir.len() - 2 - k,
                            None => dir.len() - 1,
                        };
                        rows.push(ScanRow {
                            symbol: name.clone(),
                            ts: data.view(a.idx).ts[a.window.end - 1],
                            avg: last_avg,
                            dir: last_dir,
                            bars_since_change: since,
                            rank: 0,
                        });
                    }
                    Err(reason) => skipped.push(Skipped {
                        symbol: name.clone(),
                        reason,
                    }),
                }
                data.release(a.idx);
                progress.tick();
            }
            data.release_all();
        }
    });
    progress.finish();
    cache.flush();
    super::cache_warnings(&cache, progress);
    super::show_skipped(&skipped, progress);
    rank(&mut rows);
    let scanned = rows.len();
    rows.retain(|r| s.filter.keeps(r));
    Ok(ScanDone {
        rows,
        scanned,
        skipped,
        cache: cache.stats(),
    })
}

/// Sorts `rows` by strength (largest `|avg|` first; NaN last; ties in
/// symbol order) and numbers them from 1.
pub fn rank(rows: &mut [ScanRow]) {
    let key = |r: &ScanRow| if r.avg.is_nan() { -1.0 } else { r.avg.abs() };
    rows.sort_by(|a, b| {
        key(b)
            .total_cmp(&key(a))
            .then_with(|| a.symbol.cmp(&b.symbol))
    });
    for (k, r) in rows.iter_mut().enumerate() {
        r.rank = k + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(symbol: &str, avg: f64, dir: i8) -> ScanRow {
        ScanRow {
            symbol: symbol.into(),
            ts: 0,
            avg,
            dir,
            bars_since_change: 0,
            rank: 0,
        }
    }

    #[test]
    fn rank_is_by_strength_then_symbol_and_nan_is_last() {
        let mut v = vec![
            row("C", 0.2, 1),
            row("B", -0.5, -1),
            row("A", 0.2, 1),
            row("D", f64::NAN, 0),
            row("E", 0.0, 0),
        ];
        rank(&mut v);
        let order: Vec<(&str, usize)> = v.iter().map(|r| (r.symbol.as_str(), r.rank)).collect();
        assert_eq!(
            order,
            vec![("B", 1), ("A", 2), ("C", 3), ("E", 4), ("D", 5)]
        );
    }

    #[test]
    fn filters_keep_their_side_and_strength() {
        let (l, s, f) = (row("L", 0.6, 1), row("S", -0.3, -1), row("F", 0.01, 0));
        let keep = |f_: ScanFilter| -> Vec<bool> { [&l, &s, &f].map(|r| f_.keeps(r)).to_vec() };
        assert_eq!(keep(ScanFilter::default()), [true, true, true]);
        let long = ScanFilter {
            long: true,
            ..Default::default()
        };
        assert_eq!(keep(long), [true, false, false]);
        let short = ScanFilter {
            short: true,
            ..Default::default()
        };
        assert_eq!(keep(short), [false, true, false]);
        let both = ScanFilter {
            long: true,
            short: true,
            min_strength: Some(0.5),
        };
        assert_eq!(keep(both), [true, false, false]);
    }
}
