//! Parameter grids: which ATC parameters a sweep varies and over which
//! values. A grid is the Cartesian product of its axes, enumerated in a
//! fixed order (axes in [`AXES`] order, the last axis fastest), so
//! combination numbers are stable across runs and machines.
//!
//! An axis is written as a list (`0.01,0.03,0.05` or a TOML array), a range
//! `start:stop:step` (stop inclusive), or one value.

use std::fmt;

use serde::Serialize;

use crate::engine::{AtcParams, EngineError, Robustness};

/// The parameters a grid may vary, in enumeration order.
pub const AXES: [&str; 12] = [
    "lambda",
    "decay",
    "cutout",
    "robustness",
    "ema_len",
    "hma_len",
    "wma_len",
    "dema_len",
    "lsma_len",
    "kama_len",
    "long_threshold",
    "short_threshold",
];

/// One value of an axis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A real parameter (lambda, decay, thresholds).
    Real(f64),
    /// An integer parameter (cutout, lengths).
    Int(usize),
    /// Robustness.
    Robustness(#[serde(serialize_with = "ser_rob")] Robustness),
}

fn ser_rob<S: serde::Serializer>(r: &Robustness, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.name())
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Real(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Robustness(r) => write!(f, "{r}"),
        }
    }
}

/// Errors in a grid, reported before any work starts.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    /// Not a parameter a grid can vary.
    #[error("{0} is not a sweepable parameter (sweepable: {list})", list = AXES.join(", "))]
    UnknownAxis(String),
    /// A value or range that does not parse.
    #[error("{axis}: cannot read {text:?}: {why}")]
    Syntax {
        /// The parameter.
        axis: String,
        /// What was given.
        text: String,
        /// Why it is wrong.
        why: String,
    },
    /// A range with no values, a zero step or a step of the wrong sign.
    #[error("{axis}: range {text:?} is empty or never reaches its end: {why}")]
    BadRange {
        /// The parameter.
        axis: String,
        /// What was given.
        text: String,
        /// Why it is wrong.
        why: String,
    },
    /// A value outside the spec's valid range.
    #[error("{axis} = {value} in the grid: {source}")]
    OutOfRange {
        /// The parameter.
        axis: String,
        /// The value.
        value: String,
        /// The engine's validation error.
        source: EngineError,
    },
    /// Too many combinations.
    #[error("the grid has {count} combinations, more than --max-combos {max}; narrow an axis or raise --max-combos")]
    TooMany {
        /// Combinations in the grid.
        count: u128,
        /// The limit.
        max: usize,
    },
}

/// A parameter grid.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Grid {
    /// `(parameter, values)` in [`AXES`] order; parameters not listed keep
    /// the base strategy's value.
    pub axes: Vec<(String, Vec<Value>)>,
}

fn syntax(axis: &str, text: &str, why: impl Into<String>) -> GridError {
    GridError::Syntax {
        axis: axis.into(),
        text: text.into(),
        why: why.into(),
    }
}

/// Rounds a computed range value to 12 decimals so that `0.01:0.05:0.01`
/// yields exactly the doubles of `0.01, 0.02, …` that a user would type.
fn tidy(v: f64) -> f64 {
    let scaled = (v * 1e12).round();
    if scaled.abs() < 9.0e15 {
        scaled / 1e12
    } else {
        v
    }
}

fn is_int_axis(axis: &str) -> bool {
    axis == "cutout" || axis.ends_with("_len")
}

fn parse_scalar(axis: &str, s: &str) -> Result<Value, GridError> {
    let s = s.trim();
    if axis == "robustness" {
        return s
            .parse::<Robustness>()
            .map(Value::Robustness)
            .map_err(|e| syntax(axis, s, e.to_string()));
    }
    if is_int_axis(axis) {
        return s
            .parse::<usize>()
            .map(Value::Int)
            .map_err(|_| syntax(axis, s, "expected a whole number >= 0"));
    }
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(Value::Real)
        .ok_or_else(|| syntax(axis, s, "expected a finite number"))
}

/// Parses one axis from text: `a,b,c`, `start:stop:step` or one value.
pub fn parse_axis(axis: &str, text: &str) -> Result<Vec<Value>, GridError> {
    if !AXES.contains(&axis) {
        return Err(GridError::UnknownAxis(axis.to_string()));
    }
    let t = text.trim();
    if t.is_empty() {
        return Err(GridError::BadRange {
            axis: axis.into(),
            text: text.into(),
            why: "no values".into(),
        });
    }
    if t.contains(':') {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() != 3 {
            return Err(syntax(axis, t, "a range is start:stop:step"));
        }
        if axis == "robustness" {
            return Err(syntax(
                axis,
                t,
                "robustness takes a list, e.g. narrow,medium,wide",
            ));
        }
        let bad = |why: &str| GridError::BadRange {
            axis: axis.into(),
            text: t.into(),
            why: why.into(),
        };
        let num = |s: &str| -> Result<f64, GridError> {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| syntax(axis, t, format!("{s:?} is not a finite number")))
        };
        let (start, stop, step) = (num(parts[0])?, num(parts[1])?, num(parts[2])?);
        if step == 0.0 {
            return Err(bad("the step is zero"));
        }
        if (stop - start) * step < 0.0 {
            return Err(bad("the step points away from the end (wrong sign)"));
        }
        let count = ((stop - start) / step + 1e-9).floor() as u64 + 1;
        if count > 1_000_000 {
            return Err(bad("more than 1,000,000 values"));
        }
        let mut out = Vec::with_capacity(count as usize);
        for k in 0..count {
            let v = tidy(start + k as f64 * step);
            out.push(if is_int_axis(axis) {
                if v < 0.0 || v.fract() != 0.0 {
                    return Err(syntax(
                        axis,
                        t,
                        "an integer parameter needs whole start and step >= 0",
                    ));
                }
                Value::Int(v as usize)
            } else {
                Value::Real(v)
            });
        }
        return Ok(out);
    }
    t.split(',').map(|s| parse_scalar(axis, s)).collect()
}

impl Grid {
    /// Adds (or replaces) an axis given as text.
    pub fn set_axis(&mut self, axis: &str, text: &str) -> Result<(), GridError> {
        let values = parse_axis(axis, text)?;
        self.set_values(axis, values);
        Ok(())
    }

    /// Adds (or replaces) an axis with parsed values, keeping [`AXES`] order.
    pub fn set_values(&mut self, axis: &str, values: Vec<Value>) {
        self.axes.retain(|(a, _)| a != axis);
        self.axes.push((axis.to_string(), values));
        self.axes
            .sort_by_key(|(a, _)| AXES.iter().position(|x| x == a).unwrap_or(usize::MAX));
    }

    /// Number of combinations (1 for an empty grid: the base strategy).
    pub fn count(&self) -> u128 {
        self.axes.iter().map(|(_, v)| v.len() as u128).product()
    }

    /// Checks the size limit and every value against the spec's ranges.
    pub fn validate(&self, base: &AtcParams, max_combos: usize) -> Result<(), GridError> {
        let count = self.count();
        if count > max_combos as u128 {
            return Err(GridError::TooMany {
                count,
                max: max_combos,
            });
        }
        for (axis, values) in &self.axes {
            for v in values {
                let mut p = base.clone();
                apply(&mut p, axis, *v);
                // Lengths are checked jointly with robustness below.
                if let Err(source) = p.validate() {
                    if !(axis.ends_with("_len") || axis == "robustness") {
                        return Err(GridError::OutOfRange {
                            axis: axis.clone(),
                            value: v.to_string(),
                            source,
                        });
                    }
                }
            }
        }
        for p in self.combos(base) {
            if let Err(source) = p.validate() {
                let axis = match &source {
                    EngineError::InvalidParam { name, .. }
                    | EngineError::LengthTooShort { name, .. } => name.to_string(),
                    _ => "parameters".into(),
                };
                return Err(GridError::OutOfRange {
                    axis,
                    value: "a combination".into(),
                    source,
                });
            }
        }
        Ok(())
    }

    /// The combination with number `index` (0-based, last axis fastest).
    pub fn combo(&self, base: &AtcParams, mut index: usize) -> AtcParams {
        let mut p = base.clone();
        for (axis, values) in self.axes.iter().rev() {
            let v = values[index % values.len()];
            index /= values.len();
            apply(&mut p, axis, v);
        }
        p
    }

    /// Every combination in order.
    pub fn combos<'a>(&'a self, base: &'a AtcParams) -> impl Iterator<Item = AtcParams> + 'a {
        (0..self.count() as usize).map(move |i| self.combo(base, i))
    }
}

/// Sets one parameter of `p`.
pub fn apply(p: &mut AtcParams, axis: &str, v: Value) {
    match (axis, v) {
        ("lambda", Value::Real(x)) => p.lambda = x,
        ("decay", Value::Real(x)) => p.decay = x,
        ("long_threshold", Value::Real(x)) => p.long_threshold = x,
        ("short_threshold", Value::Real(x)) => p.short_threshold = x,
        ("cutout", Value::Int(x)) => p.cutout = x,
        ("ema_len", Value::Int(x)) => p.ema_len = x,
        ("hma_len", Value::Int(x)) => p.hma_len = x,
        ("wma_len", Value::Int(x)) => p.wma_len = x,
        ("dema_len", Value::Int(x)) => p.dema_len = x,
        ("lsma_len", Value::Int(x)) => p.lsma_len = x,
        ("kama_len", Value::Int(x)) => p.kama_len = x,
        ("robustness", Value::Robustness(r)) => p.robustness = r,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reals(v: &[Value]) -> Vec<f64> {
        v.iter()
            .map(|x| match x {
                Value::Real(r) => *r,
                _ => f64::NAN,
            })
            .collect()
    }

    #[test]
    fn ranges_lists_and_single_values() {
        assert_eq!(
            reals(&parse_axis("lambda", "0.01:0.05:0.01").unwrap()),
            vec![0.01, 0.02, 0.03, 0.04, 0.05]
        );
        assert_eq!(
            reals(&parse_axis("decay", "0.01,0.03,0.05").unwrap()),
            vec![0.01, 0.03, 0.05]
        );
        assert_eq!(parse_axis("cutout", "0:100:25").unwrap().len(), 5);
        assert_eq!(parse_axis("cutout", "7").unwrap(), vec![Value::Int(7)]);
        assert_eq!(
            reals(&parse_axis("short_threshold", "-0.1:-0.3:-0.1").unwrap()),
            vec![-0.1, -0.2, -0.3]
        );
        assert_eq!(
            parse_axis("robustness", "narrow,WIDE").unwrap(),
            vec![
                Value::Robustness(Robustness::Narrow),
                Value::Robustness(Robustness::Wide)
            ]
        );
    }

    #[test]
    fn bad_ranges_name_the_parameter() {
        for (axis, text, needle) in [
            ("lambda", "0.05:0.01:0.01", "wrong sign"),
            ("lambda", "0.01:0.05:0", "zero"),
            ("decay", "", "no values"),
            ("cutout", "0:10:2.5", "whole"),
            ("lambda", "a,b", "not"),
            ("lamda", "1", "not a sweepable"),
        ] {
            let e = parse_axis(axis, text).unwrap_err().to_string();
            assert!(e.contains(axis) && e.contains(needle), "{e}");
        }
    }

    #[test]
    fn out_of_range_and_too_many() {
        let mut g = Grid::default();
        g.set_axis("decay", "50:150:50").unwrap();
        let e = g
            .validate(&AtcParams::default(), 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("decay = 100"), "{e}");
        let mut g = Grid::default();
        g.set_axis("lambda", "0:1:0.01").unwrap();
        g.set_axis("decay", "0:1:0.01").unwrap();
        let e = g
            .validate(&AtcParams::default(), 1000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("10201") && e.contains("--max-combos"), "{e}");
        let mut g = Grid::default();
        g.set_axis("ema_len", "3,28").unwrap();
        let e = g
            .validate(&AtcParams::default(), 1000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ema_len"), "{e}");
    }

    #[test]
    fn enumeration_order_is_last_axis_fastest() {
        let mut g = Grid::default();
        g.set_axis("decay", "0.01,0.02").unwrap();
        g.set_axis("lambda", "0.1,0.2,0.3").unwrap();
        let base = AtcParams::default();
        let c: Vec<(f64, f64)> = g.combos(&base).map(|p| (p.lambda, p.decay)).collect();
        assert_eq!(c[0], (0.1, 0.01));
        assert_eq!(c[1], (0.1, 0.02));
        assert_eq!(c[5], (0.3, 0.02));
        assert_eq!(g.count(), 6);
    }
}
