//! Downsampling for display: min/max per pixel column.
//!
//! A chart `width` pixels wide cannot show more than `width` columns, so a
//! 100,000-bar series is reduced to at most four points per column: the
//! first, the minimum, the maximum and the last, in time order. Every peak
//! and every drawdown trough survives (a plain stride would drop them), the
//! line drawn through the points covers exactly the pixels the full series
//! would, and the page stays small. The data files keep every bar.

/// Reduces `(x, y)` (x ascending) to at most 4 points per pixel column of a
/// chart `width` columns wide over `[x_min, x_max]`. Non-finite y values are
/// dropped. Returns the input unchanged when it is already small enough.
pub fn min_max(points: &[(f64, f64)], width: usize) -> Vec<(f64, f64)> {
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let width = width.max(1);
    if finite.len() <= 4 * width {
        return finite;
    }
    let x0 = finite[0].0;
    let x1 = finite[finite.len() - 1].0;
    let span = x1 - x0;
    if span <= 0.0 {
        return finite;
    }
    let column = |x: f64| (((x - x0) / span * width as f64) as usize).min(width - 1);
    let mut out = Vec::with_capacity(4 * width);
    let mut start = 0;
    while start < finite.len() {
        let c = column(finite[start].0);
        let mut end = start + 1;
        while end < finite.len() && column(finite[end].0) == c {
            end += 1;
        }
        let bucket = &finite[start..end];
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in bucket.iter().enumerate() {
            if p.1 < bucket[lo].1 {
                lo = i;
            }
            if p.1 > bucket[hi].1 {
                hi = i;
            }
        }
        let mut idx = [0, lo, hi, bucket.len() - 1];
        idx.sort_unstable();
        let mut last = usize::MAX;
        for i in idx {
            if i != last {
                out.push(bucket[i]);
                last = i;
            }
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_every_extreme_and_bounds_the_size() {
        let n = 100_000;
        let pts: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                (
                    i as f64,
                    ((i * 7919) % 1013) as f64 - if i == 54_321 { 5000.0 } else { 0.0 },
                )
            })
            .collect();
        let d = min_max(&pts, 500);
        assert!(d.len() <= 2000, "{} points", d.len());
        let min = d.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let max = d.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(min, -5000.0 + ((54_321 * 7919) % 1013) as f64);
        assert_eq!(
            max,
            pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max)
        );
        assert_eq!(d.first(), pts.first());
        assert_eq!(d.last(), pts.last());
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn small_input_is_unchanged_but_nan_dropped() {
        let pts = vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0)];
        assert_eq!(min_max(&pts, 100), vec![(0.0, 1.0), (2.0, 3.0)]);
    }
}
