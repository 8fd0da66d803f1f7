//! Walk-forward analysis: at each step, the best combination in the
//! training window (by the ranking metric) is traded in the next test
//! window; the test windows' equity is chained into one out-of-sample
//! curve and compared with buy & hold over the same periods.
//!
//! Each test window is a fresh `run` of the chosen parameters (the engine
//! still sees all history before it as warm-up), so a fold's numbers are
//! exactly what `atc-bt run --from <test start> --to <test end>` gives.
//! Chaining scales each fold's curve (and its trades' money amounts) by
//! the previous fold's final equity over the starting capital.

use std::str::FromStr;

use chrono::{DateTime, Months, TimeDelta};
use serde::Serialize;

use super::{Ranking, Sample};
use crate::backtest::{metrics_of_stats, Curve, Metrics, MetricsOptions, TradeStat};
use crate::data::fmt_ts;
use crate::data::Dataset;
use crate::run::{common_calendar, run, series_calendar, RunError, RunPlan, Strategy};

/// A calendar span: `3y`, `6m`, `2w`, `90d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Span {
    /// Calendar years.
    Years(u32),
    /// Calendar months.
    Months(u32),
    /// Weeks.
    Weeks(u32),
    /// Days.
    Days(u32),
}

impl Span {
    /// `t` (µs UTC) moved forward by this span; None past the calendar's end.
    pub fn after(self, t: i64) -> Option<i64> {
        let dt = DateTime::from_timestamp_micros(t)?;
        let moved = match self {
            Span::Years(y) => dt.checked_add_months(Months::new(y.checked_mul(12)?))?,
            Span::Months(m) => dt.checked_add_months(Months::new(m))?,
            Span::Weeks(w) => dt.checked_add_signed(TimeDelta::try_weeks(i64::from(w))?)?,
            Span::Days(d) => dt.checked_add_signed(TimeDelta::try_days(i64::from(d))?)?,
        };
        Some(moved.timestamp_micros())
    }
}

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (num, unit) = s.split_at(s.len().saturating_sub(1));
        let n: u32 = num.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
            format!("{s:?}: expected a positive whole number and a unit y, m, w or d (e.g. 3y)")
        })?;
        match unit {
            "y" | "Y" => Ok(Span::Years(n)),
            "m" | "M" => Ok(Span::Months(n)),
            "w" | "W" => Ok(Span::Weeks(n)),
            "d" | "D" => Ok(Span::Days(n)),
            _ => Err(format!("{s:?}: unknown unit {unit:?}; use y, m, w or d")),
        }
    }
}

/// `train=3y,test=1y[,step=1y]` (step defaults to test).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WalkForwardSpec {
    /// Training window length.
    pub train: Span,
    /// Test window length.
    pub test: Span,
    /// Distance between consecutive folds (>= test, so test windows never overlap).
    pub step: Span,
}

impl FromStr for WalkForwardSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mut train, mut test, mut step) = (None, None, None);
        for part in s.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("{part:?}: expected key=value (train=3y,test=1y[,step=1y])")
            })?;
            let span: Span = v.parse()?;
            match k.trim() {
                "train" => train = Some(span),
                "test" => test = Some(span),
                "step" => step = Some(span),
                other => return Err(format!("unknown key {other:?}; keys are train, test, step")),
            }
        }
        let train = train.ok_or("train=… is required")?;
        let test = test.ok_or("test=… is required")?;
        Ok(WalkForwardSpec {
            train,
            test,
            step: step.unwrap_or(test),
        })
    }
}

/// One fold's windows (µs UTC, inclusive ends).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fold {
    /// Training window start.
    pub train_from: i64,
    /// Training window end.
    pub train_to: i64,
    /// Test window start.
    pub test_from: i64,
    /// Test window end.
    pub test_to: i64,
}

/// The folds covering `[start, end]`: the first training window starts at
/// `start`; folds continue while a test window starts before `end`.
pub fn folds(spec: &WalkForwardSpec, start: i64, end: i64) -> Result<Vec<Fold>, String> {
    let mut out = Vec::new();
    let mut train_from = start;
    loop {
        let test_from = spec.train.after(train_from).ok_or("date overflow")?;
        if test_from > end {
            break;
        }
        let test_end = spec.test.after(test_from).ok_or("date overflow")?;
        out.push(Fold {
            train_from,
            train_to: test_from - 1,
            test_from,
            test_to: (test_end - 1).min(end),
        });
        let next = spec.step.after(train_from).ok_or("date overflow")?;
        if spec.step.after(0).unwrap_or(0) < spec.test.after(0).unwrap_or(0) {
            return Err(
                "step must be at least as long as test (test windows must not overlap)".into(),
            );
        }
        train_from = next;
        if out.len() > 10_000 {
            return Err("more than 10,000 folds".into());
        }
    }
    if out.is_empty() {
        return Err(format!(
            "the data window {} to {} is shorter than one training window",
            fmt_ts(start),
            fmt_ts(end)
        ));
    }
    Ok(out)
}

/// The sweep samples of the folds: `wf<k>-train` for each fold.
pub fn train_samples(folds: &[Fold]) -> Vec<Sample> {
    folds
        .iter()
        .enumerate()
        .map(|(k, f)| Sample {
            name: format!("wf{k}-train"),
            from: Some(f.train_from),
            to: Some(f.train_to),
        })
        .collect()
}

/// One fold's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct FoldResult {
    /// The windows.
    pub fold: Fold,
    /// The combination chosen on the training window (None: no combination
    /// had a finite ranking metric there; the fold is flat).
    pub best_combo: Option<usize>,
    /// Its ranking metric on the training window.
    pub train_metric: Option<f64>,
    /// Metrics of the chosen combination in the test window.
    pub test: Option<Metrics>,
}

/// The stitched out-of-sample result.
#[derive(Debug, Clone)]
pub struct WalkForward {
    /// Per-fold outcomes.
    pub folds: Vec<FoldResult>,
    /// Chained out-of-sample portfolio.
    pub curve: Curve,
    /// Chained buy & hold over the same test windows.
    pub benchmark: Curve,
    /// Metrics of the chained curve (alpha/beta against the chained benchmark).
    pub metrics: Metrics,
    /// Metrics of the chained benchmark.
    pub benchmark_metrics: Metrics,
}

fn append_scaled(into: &mut Curve, c: &Curve, factor: f64) {
    into.ts.extend_from_slice(&c.ts);
    into.equity.extend(c.equity.iter().map(|e| e * factor));
    into.gross.extend(c.gross.iter().map(|g| g * factor));
}

/// Runs the walk-forward given the sweep's ranking, whose samples include
/// [`train_samples`] starting at index `first_train`.
pub fn walk_forward(
    data: &Dataset,
    plan: &RunPlan,
    base: &Strategy,
    folds: &[Fold],
    ranking: &Ranking,
    first_train: usize,
    strict: bool,
) -> Result<WalkForward, RunError> {
    let capital = base.execution.capital;
    let empty = || Curve {
        ts: Vec::new(),
        equity: Vec::new(),
        gross: Vec::new(),
    };
    let (mut curve, mut bench) = (empty(), empty());
    let (mut trades, mut fees): (Vec<TradeStat>, f64) = (Vec::new(), 0.0);
    let (mut level, mut bench_level) = (capital, capital);
    let mut out = Vec::new();
    for (k, fold) in folds.iter().enumerate() {
        let Some((best, train_metric)) = ranking.best_in(first_train + k) else {
            out.push(FoldResult {
                fold: *fold,
                best_combo: None,
                train_metric: None,
                test: None,
            });
            continue;
        };
        let strategy = ranking.strategy(base, best);
        let test_plan = RunPlan {
            from: Some(fold.test_from),
            to: Some(fold.test_to),
            ..plan.clone()
        }
        .pinned(data);
        let r = match run(data, &test_plan, &strategy, strict, &|| {}) {
            Ok(r) => r,
            Err(RunError::EmptyWindow { .. } | RunError::AllSkipped { .. }) => {
                out.push(FoldResult {
                    fold: *fold,
                    best_combo: Some(best),
                    train_metric: None,
                    test: None,
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let initial = r.capital_per_symbol * r.symbols.len() as f64;
        let f = level / initial;
        let fb = bench_level / initial;
        append_scaled(&mut curve, &r.portfolio, f);
        append_scaled(&mut bench, &r.benchmark, fb);
        level = curve.equity.last().copied().unwrap_or(level);
        bench_level = bench.equity.last().copied().unwrap_or(bench_level);
        for s in &r.symbols {
            for t in &s.run.trades {
                let mut t = TradeStat::of(t);
                t.pnl *= f;
                trades.push(t);
            }
            fees += s.run.total_fees * f;
        }
        out.push(FoldResult {
            fold: *fold,
            best_combo: Some(best),
            train_metric: Some(train_metric),
            test: Some(r.portfolio_metrics),
        });
    }
    let calendars: Vec<_> = plan
        .series
        .iter()
        .map(|&i| series_calendar(data, i))
        .collect();
    let opts: MetricsOptions = base.metrics.options(common_calendar(calendars.iter()));
    let m = metrics_of_stats(
        capital,
        &curve.ts,
        &curve.equity,
        &bench.equity,
        &trades,
        Some(&curve.exposure()),
        fees,
        &opts,
    );
    let bm = crate::backtest::benchmark_metrics(capital, &bench, &opts);
    Ok(WalkForward {
        folds: out,
        curve,
        benchmark: bench,
        metrics: m,
        benchmark_metrics: bm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_and_defaults_step() {
        let s: WalkForwardSpec = "train=3y,test=1y".parse().unwrap();
        assert_eq!(s.step, Span::Years(1));
        let s: WalkForwardSpec = "train=6m, test=2m,step=3m".parse().unwrap();
        assert_eq!(
            (s.train, s.test, s.step),
            (Span::Months(6), Span::Months(2), Span::Months(3))
        );
        for bad in [
            "train=3y",
            "test=1y",
            "train=0y,test=1y",
            "train=3x,test=1y",
            "foo=1y,test=1y",
        ] {
            assert!(bad.parse::<WalkForwardSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn folds_tile_the_window() {
        let day = 86_400_000_000i64;
        let start = 1_577_836_800_000_000; // 2020-01-01
        let end = start + 4 * 366 * day;
        let s: WalkForwardSpec = "train=1y,test=1y".parse().unwrap();
        let f = folds(&s, start, end).unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(f[0].test_from, 1_609_459_200_000_000); // 2021-01-01
        for w in f.windows(2) {
            assert_eq!(w[0].test_to + 1, w[1].test_from);
        }
        let s: WalkForwardSpec = "train=1y,test=1y,step=6m".parse().unwrap();
        assert!(folds(&s, start, end).unwrap_err().contains("step"));
        let s: WalkForwardSpec = "train=9y,test=1y".parse().unwrap();
        assert!(folds(&s, start, end).unwrap_err().contains("shorter"));
    }
}
