//! Shared cash in a sweep (`sweep --allocation shared`): per combination
//! and sample, one account trades every symbol ([`crate::backtest::book`]),
//! exactly as `run --allocation shared` with that combination's parameters
//! over that sample's window would.
//!
//! The account needs every symbol's direction and strength at each bar
//! before it trades the first one, so the sweep's per-symbol backtest
//! cannot stream here. Instead, a chunk of combinations runs through the
//! sweep's usual stages (the shared stage once per symbol block and
//! lengths group, the SIMD layer kernel once per lane group), keeping
//! each symbol's window signals (`dir` and `avg` from the bar before the
//! window: 9 bytes per bar, as a shared run keeps them); then every
//! (combination, position limit) of the chunk runs its books, in parallel
//! over them, and the rows are emitted in a fixed order (chunk order,
//! then the [`MAX_POSITIONS`](super::grid::MAX_POSITIONS) values in axis
//! order); then the chunk is dropped. The books run in batches
//! ([`batches`]) sized to the same budget, each emitted before the next
//! runs. So memory holds one chunk's signals and one batch's rows, both
//! sized to a budget ([`bytes_per_combo`], [`bytes_per_book`]): it does
//! not grow with the grid, nor with the `max_positions` axis.
//!
//! The position limit does not change the signals: one chunk's signals
//! feed one book per value of the `max_positions` axis. Combination
//! `c = s·M + m` is signal combination `s` with the `m`-th limit (see
//! [`Grid::signal_grid`]).
//!
//! What the rows carry is what a shared run's `metrics.json` does: each
//! symbol's metrics are those of its contribution to the account, the
//! portfolio row is the account, the benchmark row the `1/N` buy & hold
//! of the symbols traded. Bit-identical to `run` (tested), at any thread
//! count: the books run each on their own, and each sums its symbols in
//! plan order.

use rayon::prelude::*;

use super::{Ctx, Emitter, Grid, RanChunk, Row, Sample, SampleAcc};
use crate::backtest::TradeStat;
use crate::backtest::{Metrics, PortfolioSum};
use crate::run::output::Aggregate;
use crate::run::shared::{run_book, DataBars};
use crate::run::{common_calendar, portfolio_metrics, RunError, Skipped};

/// Bytes a chunk holds per signal combination: every symbol's window
/// signals in every sample (9 bytes per bar, plus the bar before), and,
/// per position limit, what a finished book leaves until it is emitted
/// ([`bytes_per_book`]).
pub(super) fn bytes_per_combo(
    window_bars: usize,
    timeline_bars: usize,
    symbol_rows: usize,
    limits: usize,
) -> usize {
    window_bars * 9 + limits * bytes_per_book(window_bars, timeline_bars, symbol_rows)
}

/// Bytes one finished book leaves until it is emitted: each symbol's
/// metrics, the account's curve and the benchmark's sum on the sample's
/// timeline, the trades' statistics.
pub(super) fn bytes_per_book(
    window_bars: usize,
    timeline_bars: usize,
    symbol_rows: usize,
) -> usize {
    timeline_bars * 56 + symbol_rows * (std::mem::size_of::<Metrics>() + 64) + window_bars * 2
}

/// The books of `combos` signal combinations × `limits` position limits
/// (book `j` = combination `j / limits`, limit `j % limits`) cut into
/// batches of at most `batch` books (at least one), in order: each
/// batch runs in parallel and is emitted before the next one runs, so a
/// long `max_positions` axis does not hold all its books' rows at once.
pub(super) fn batches(
    combos: usize,
    limits: usize,
    batch: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> {
    let total = combos * limits;
    let batch = batch.max(1);
    (0..total)
        .step_by(batch)
        .map(move |at| at..(at + batch).min(total))
}

/// The books of a shared sweep: what every chunk's books read.
pub(super) struct Books<'a> {
    /// The strategy whose execution and metric settings every book uses.
    pub base: &'a crate::run::Strategy,
    /// The grid without the position-limit axis (signal combinations).
    pub grid: &'a Grid,
    /// The position limit of each `m` (one entry, the strategy's, when
    /// the grid has no such axis).
    pub limits: Vec<Option<usize>>,
    /// Each sample's timeline (every window bar), as `run` builds it.
    pub timelines: &'a [Vec<i64>],
    /// The samples.
    pub samples: &'a [Sample],
    /// Books run (and their rows held) at once: see [`batches`].
    pub batch: usize,
}

/// What one book leaves: the rows of its combination, and the symbols
/// skipped in the first sample.
type Booked = (usize, Vec<Row>, Vec<Skipped>);

impl Books<'_> {
    /// Runs every (combination, limit) book of `ran` and emits their
    /// rows in order: chunk order, then limit order; in batches of
    /// [`Books::batch`] books, each run in parallel then emitted.
    pub(super) fn emit(
        &self,
        ctx: &Ctx<'_>,
        ran: RanChunk,
        out: &mut Emitter<'_, '_>,
    ) -> Result<(), RunError> {
        let m_count = self.limits.len();
        for batch in batches(ran.combos.len(), m_count, self.batch) {
            let booked: Vec<Result<Booked, RunError>> = batch
                .into_par_iter()
                .map(|j| {
                    let (i, m) = (j / m_count, j % m_count);
                    self.book(ctx, ran.combos[i], m, &ran.accs[i], out.strict)
                })
                .collect();
            for b in booked {
                let (c, rows, failed) = b?;
                if c == 0 {
                    out.skipped.extend(failed);
                }
                out.done(rows)?;
            }
        }
        Ok(())
    }

    /// The rows of signal combination `s` with the `m`-th limit: per
    /// sample, its symbols' contribution rows, then the account's and the
    /// benchmark's rows (nothing for a sample where no symbol trades).
    fn book(
        &self,
        ctx: &Ctx<'_>,
        s: usize,
        m: usize,
        accs: &[SampleAcc],
        strict: bool,
    ) -> Result<Booked, RunError> {
        let c = s * self.limits.len() + m;
        let mut strategy = self.base.clone();
        strategy.atc = self.grid.combo(&self.base.atc, s);
        strategy.execution.max_positions = self.limits[m];
        let mut rows = Vec::new();
        let mut first_failed = Vec::new();
        for (k, acc) in accs.iter().enumerate() {
            let mut failed = acc.failed.clone();
            if strict {
                if let Some(f) = failed.into_iter().next() {
                    return Err(RunError::Strict {
                        symbol: f.symbol,
                        reason: f.reason,
                    });
                }
                failed = Vec::new();
            }
            let account = run_book(
                &DataBars(ctx.data),
                acc.signals.clone(),
                &strategy,
                strict,
                &mut failed,
            )?;
            if k == 0 {
                first_failed = failed;
            }
            let Some(account) = account else { continue };
            let capital_per_symbol = account.capital_per_symbol;
            let sample = &self.samples[k].name;
            // The benchmark, trades, fees and calendar as the run
            // directory's writer gathers them from the same symbols.
            let mut sum = PortfolioSum::new(self.timelines[k].clone(), capital_per_symbol);
            let mut trades: Vec<TradeStat> = Vec::new();
            let mut fees: Vec<f64> = Vec::new();
            let mut calendars = Vec::new();
            let curve = account.emit(&DataBars(ctx.data), &strategy, &mut |r| {
                sum.add(&r.run);
                trades.extend(r.run.trades.iter().map(TradeStat::of));
                fees.push(r.run.total_fees);
                calendars.push(r.calendar);
                rows.push(Row {
                    combo: c,
                    sample: sample.clone(),
                    symbol: Some(r.run.symbol),
                    aggregate: None,
                    metrics: r.metrics,
                });
                Ok(())
            })?;
            let (_, benchmark) = sum.finish();
            let opts = ctx.settings.options(common_calendar(calendars.iter()));
            let (pm, bm) = portfolio_metrics(
                &curve,
                &benchmark,
                &trades,
                &fees,
                capital_per_symbol,
                &opts,
            );
            for (agg, metrics) in [(Aggregate::Portfolio, pm), (Aggregate::Benchmark, bm)] {
                rows.push(Row {
                    combo: c,
                    sample: sample.clone(),
                    symbol: None,
                    aggregate: Some(agg),
                    metrics,
                });
            }
        }
        Ok((c, rows, first_failed))
    }
}

#[cfg(test)]
mod tests {
    /// A long `max_positions` axis ran every book of a chunk at once and
    /// held all their rows (memory grew with the axis): the batches cover
    /// every (combination, limit) book once, in order, each within the
    /// budget and never empty.
    #[test]
    fn a_long_max_positions_axis_runs_its_books_in_batches_within_the_budget() {
        for (combos, limits, batch) in [(1, 6000, 32), (3, 7, 4), (5, 1, 64), (2, 3, 0), (0, 5, 3)]
        {
            let got: Vec<std::ops::Range<usize>> = super::batches(combos, limits, batch).collect();
            let flat: Vec<usize> = got.iter().cloned().flatten().collect();
            assert_eq!(flat, (0..combos * limits).collect::<Vec<_>>());
            assert!(got.iter().all(|b| !b.is_empty() && b.len() <= batch.max(1)));
        }
        assert_eq!(super::batches(1, 6000, 32).count(), 188);
    }
}
