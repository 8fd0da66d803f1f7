//! What a sweep keeps of its combinations once their rows are written:
//! the ranking metric of each combination's portfolio (and of its buy &
//! hold) per sample, for the heatmaps, the ranking and the top table, and
//! only the best combination of each walk-forward training window.
//!
//! Everything else a combination produced streams to `results.parquet`
//! ([`ResultsWriter`](super::output::ResultsWriter)); [`Ranking::add`]
//! reads the aggregate rows as they go by. So a sweep holds 16 bytes per
//! combination and `full`/`in`/`out` sample (the heatmaps print one value
//! per combination: that is their size), nothing per walk-forward fold,
//! and no metrics: at the 100,000-combination limit, 1.6 MB per sample.

use std::cmp::Ordering;

use super::output::{lower_is_better, metric_value};
use super::{Grid, Row, Sample};
use crate::engine::AtcParams;
use crate::run::output::Aggregate;

/// What is kept of one sample.
#[derive(Debug, Clone)]
enum Kept {
    /// Every combination's ranking metric, portfolio and buy & hold
    /// (NaN: none, or not a finite number), in grid order.
    All { port: Vec<f64>, bench: Vec<f64> },
    /// Only the best combination and its finite metric (walk-forward
    /// training windows: a fold trades its best).
    Best(Option<(usize, f64)>),
}

/// The ranking of a sweep's combinations by one metric (see the module
/// documentation for what it keeps).
#[derive(Debug, Clone)]
pub struct Ranking {
    grid: Grid,
    base: AtcParams,
    metric: String,
    lower: bool,
    names: Vec<String>,
    ranked: usize,
    kept: Vec<Kept>,
}

/// Best first: finite values by `metric`'s direction, ties and the rest
/// (no value, or not finite) by combination number.
pub(crate) fn order_by(lower: bool, (a, va): (usize, f64), (b, vb): (usize, f64)) -> Ordering {
    let f = |v: f64| Some(v).filter(|v| v.is_finite());
    match (f(va), f(vb)) {
        (Some(x), Some(y)) => {
            let o = if lower {
                x.total_cmp(&y)
            } else {
                y.total_cmp(&x)
            };
            o.then(a.cmp(&b))
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(&b),
    }
}

impl Ranking {
    /// An empty ranking of `grid`'s combinations (the others parameters
    /// from `base`) by `metric` on sample `ranked` of `samples`.
    pub fn new(
        grid: &Grid,
        base: &AtcParams,
        metric: &str,
        samples: &[Sample],
        ranked: usize,
    ) -> Ranking {
        let n = grid.count() as usize;
        Ranking {
            grid: grid.clone(),
            base: base.clone(),
            metric: metric.to_string(),
            lower: lower_is_better(metric),
            names: samples.iter().map(|s| s.name.clone()).collect(),
            ranked,
            kept: samples
                .iter()
                .map(|s| {
                    if s.name.starts_with("wf") {
                        Kept::Best(None)
                    } else {
                        Kept::All {
                            port: vec![f64::NAN; n],
                            bench: vec![f64::NAN; n],
                        }
                    }
                })
                .collect(),
        }
    }

    /// Takes in the rows of one combination (what a sweep emits for it):
    /// its aggregate rows' ranking metric per sample.
    pub fn add(&mut self, rows: &[Row]) {
        for r in rows {
            let Some(agg) = r.aggregate else { continue };
            let Some(k) = self.names.iter().position(|n| *n == r.sample) else {
                continue;
            };
            let v = metric_value(&r.metrics, &self.metric).unwrap_or(f64::NAN);
            let c = r.combo;
            let lower = self.lower;
            match (&mut self.kept[k], agg) {
                (Kept::All { port, .. }, Aggregate::Portfolio) => port[c] = v,
                (Kept::All { bench, .. }, Aggregate::Benchmark) => bench[c] = v,
                (Kept::Best(best), Aggregate::Portfolio)
                    if v.is_finite()
                        && best.is_none_or(|b| order_by(lower, (c, v), b) == Ordering::Less) =>
                {
                    *best = Some((c, v))
                }
                _ => {}
            }
        }
    }

    /// The metric ranked by.
    pub fn metric(&self) -> &str {
        &self.metric
    }

    /// The sample ranked on.
    pub fn ranked(&self) -> usize {
        self.ranked
    }

    /// Number of combinations (the grid's).
    pub fn count(&self) -> usize {
        self.grid.count() as usize
    }

    /// The parameters of combination `c`, with its position limit where
    /// the grid varies it ([`Grid::combo_params`]).
    pub fn params(&self, c: usize) -> super::grid::ComboParams {
        self.grid.combo_params(&self.base, c)
    }

    /// The strategy of combination `c`: `base` with its parameters and
    /// its position limit ([`Grid::strategy`]).
    pub fn strategy(&self, base: &crate::run::Strategy, c: usize) -> crate::run::Strategy {
        self.grid.strategy(base, c)
    }

    /// Combination `c`'s ranking metric in sample `k`, of its portfolio
    /// (or of its buy & hold); None where it has none or the sample keeps
    /// only its best.
    pub fn value(&self, k: usize, c: usize, bench: bool) -> Option<f64> {
        match self.kept.get(k)? {
            Kept::All { port, bench: b } => {
                let v = if bench { b[c] } else { port[c] };
                (!v.is_nan()).then_some(v)
            }
            Kept::Best(_) => None,
        }
    }

    /// Every combination, best first on sample `k` (a kept sample).
    pub fn order_in(&self, k: usize) -> Vec<usize> {
        let Some(Kept::All { port, .. }) = self.kept.get(k) else {
            return Vec::new();
        };
        let mut order: Vec<usize> = (0..port.len()).collect();
        order.sort_unstable_by(|&a, &b| order_by(self.lower, (a, port[a]), (b, port[b])));
        order
    }

    /// Every combination, best first on the ranked sample.
    pub fn order(&self) -> Vec<usize> {
        self.order_in(self.ranked)
    }

    /// Where combination `c` ranks (1 = best) in sample `k`.
    pub fn position_in(&self, k: usize, c: usize) -> usize {
        let Some(Kept::All { port, .. }) = self.kept.get(k) else {
            return 0;
        };
        let at = (c, port[c]);
        1 + (0..port.len())
            .filter(|&j| order_by(self.lower, (j, port[j]), at) == Ordering::Less)
            .count()
    }

    /// The best combination of sample `k` with a finite metric, and that
    /// metric.
    pub fn best_in(&self, k: usize) -> Option<(usize, f64)> {
        match self.kept.get(k)? {
            Kept::Best(b) => *b,
            Kept::All { port, .. } => port
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(c, &v)| (c, v))
                .min_by(|&a, &b| order_by(self.lower, a, b)),
        }
    }

    /// `heatmap_<sample>.json`: the ranking metric of sample `k` as an
    /// n-dimensional array over the grid axes (row-major in axis order,
    /// which is combination order; null where there is none).
    pub fn heatmap_json(&self, k: usize) -> serde_json::Value {
        let values: Vec<serde_json::Value> = match self.kept.get(k) {
            Some(Kept::All { port, .. }) => port.iter().map(|&v| serde_json::json!(v)).collect(),
            _ => vec![serde_json::Value::Null; self.count()],
        };
        let grid = &self.grid;
        serde_json::json!({
            "metric": self.metric,
            "sample": self.names.get(k),
            "axes": grid.axes.iter().map(|(a, v)| serde_json::json!({"name": a, "values": v})).collect::<Vec<_>>(),
            "shape": grid.axes.iter().map(|(_, v)| v.len()).collect::<Vec<_>>(),
            "values": values,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order is `sort` of the old full-summary ranking: finite values
    /// by the metric's direction, ties by combination, non-finite and
    /// missing last by combination; a walk-forward sample keeps its best.
    #[test]
    fn ranking_orders_like_a_full_sort_and_keeps_only_the_best_of_a_fold() {
        let mut grid = Grid::default();
        grid.set_axis("lambda", "0.01,0.02,0.03,0.04,0.05,0.06")
            .unwrap();
        let samples: Vec<Sample> = ["full", "wf0-train"]
            .iter()
            .map(|n| Sample {
                name: n.to_string(),
                from: None,
                to: None,
            })
            .collect();
        let vals = [1.0, f64::NAN, 3.0, 1.0, f64::INFINITY, 2.0];
        let mut r = Ranking::new(&grid, &AtcParams::default(), "max_drawdown", &samples, 0);
        assert!(r.lower, "drawdown ranks ascending");
        for (c, &v) in vals.iter().enumerate() {
            let mut m = crate::backtest::metrics(
                100.0,
                &[0, 86_400_000_000],
                &[100.0, 100.0],
                &[100.0; 2],
                &[],
                None,
                1.0,
            );
            m.max_drawdown = v;
            let row = |sample: &str| Row {
                combo: c,
                sample: sample.into(),
                symbol: None,
                aggregate: Some(Aggregate::Portfolio),
                metrics: m.clone(),
            };
            if c != 5 {
                r.add(&[row("full"), row("wf0-train")]);
            }
        }
        // 5 has no rows (NaN): with 1 (NaN) and 4 (inf) at the end.
        assert_eq!(r.order(), vec![0, 3, 2, 1, 4, 5]);
        assert_eq!(r.best_in(0), Some((0, 1.0)));
        assert_eq!(r.best_in(1), Some((0, 1.0)));
        assert_eq!(r.position_in(0, 2), 3);
        assert_eq!(r.position_in(0, 5), 6);
        assert!(r.value(0, 4, false).is_none_or(f64::is_infinite));
        assert_eq!(r.value(0, 5, false), None);
        let h = r.heatmap_json(0);
        assert_eq!(h["values"][2], serde_json::json!(3.0));
        assert!(h["values"][4].is_null() && h["values"][5].is_null());
    }
}
