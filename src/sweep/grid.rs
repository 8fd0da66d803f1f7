//! Parameter grids: which ATC parameters a sweep varies and over which
//! values. A grid is the Cartesian product of its axes, enumerated in a
//! fixed order (axes in the parameter registry's order, the last axis
//! fastest), so
//! combination numbers are stable across runs and machines.
//!
//! An axis is written as a list (`0.01,0.03,0.05` or a TOML array), a range
//! `start:stop:step` (stop inclusive), or one value.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::registry::{self, Kind, ParamSpec};
use crate::engine::{AtcParams, EngineError};

/// One value of an axis (the registry's [`registry::ParamValue`]).
pub use crate::engine::registry::ParamValue as Value;

/// A combination's parameters as the sweep's JSON files write them
/// ([`Grid::combo_params`]): the ATC parameters, then `max_positions`
/// where the grid varies it, so `run` with them reproduces the
/// combination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComboParams {
    /// The ATC parameters.
    #[serde(flatten)]
    pub atc: AtcParams,
    /// The position limit ([`MAX_POSITIONS`] axis), where the grid has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_positions: Option<usize>,
}

/// The execution-level axis of a grid: shared cash's position limit
/// (`--max-positions`, `[execution] max_positions`). Not an ATC parameter
/// (it does not change the signals: one block of signals feeds one book
/// per value), so it is not in the parameter registry; it is always the
/// last axis, the fastest in the enumeration, so combination
/// `c = s·M + m` is signal combination `s` (the grid without it) with
/// the `m`-th of its `M` values, and a grid without it numbers its
/// combinations as before.
pub const MAX_POSITIONS: &str = "max_positions";

/// The names of the parameters a grid may vary, in enumeration order
/// (the registry's rows marked [`ParamSpec::axis`], then
/// [`MAX_POSITIONS`]).
pub fn axis_names() -> Vec<&'static str> {
    registry::axes()
        .map(|s| s.name)
        .chain([MAX_POSITIONS])
        .collect()
}

/// The registry row of a grid axis; an error naming it and listing the
/// sweepable parameters otherwise.
pub fn axis_spec(axis: &str) -> Result<&'static ParamSpec, GridError> {
    registry::axes()
        .find(|s| s.name == axis)
        .ok_or_else(|| GridError::UnknownAxis(axis.to_string()))
}

/// Errors in a grid, reported before any work starts.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    /// Not a parameter a grid can vary.
    #[error("{0} is not a sweepable parameter (sweepable: {list})", list = axis_names().join(", "))]
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
    /// The grid file cannot be read.
    #[error("{}: cannot read grid file", path.display())]
    Read {
        /// The grid file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The grid file is not valid TOML.
    #[error("{}: not valid TOML: {message}", path.display())]
    Toml {
        /// The grid file.
        path: PathBuf,
        /// The parser's message (it names the line).
        message: String,
    },
    /// A key of the grid file other than `strategy` and `[grid]`, or one
    /// of the wrong type.
    #[error("{}: {what}", path.display())]
    File {
        /// The grid file.
        path: PathBuf,
        /// What is wrong, and the fix.
        what: String,
    },
    /// An axis of the grid file is wrong.
    #[error("{}: [grid]", path.display())]
    InFile {
        /// The grid file.
        path: PathBuf,
        /// The axis' error.
        source: Box<GridError>,
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
    /// `(parameter, values)` in registry order ([`axis_names`]);
    /// parameters not listed keep the base strategy's value. Built by
    /// [`Grid::set_axis`] and [`Grid::set_values`], which refuse names
    /// that are not axes and values of the wrong kind.
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
    // `+ 0.0` turns -0 into 0: one value, one cache key, one column value.
    let v = v + 0.0;
    let scaled = (v * 1e12).round() + 0.0;
    if scaled.abs() < 9.0e15 {
        scaled / 1e12
    } else {
        v
    }
}

/// One value of an axis; grids take finite numbers only (a range of
/// NaN has no steps).
fn parse_scalar(spec: &ParamSpec, s: &str) -> Result<Value, GridError> {
    let want = match spec.kind {
        Kind::Real => "a finite number",
        _ => spec.kind_text(),
    };
    match spec.parse(s) {
        Ok(Value::Real(x)) if !x.is_finite() => {
            Err(syntax(spec.name, s.trim(), format!("expected {want}")))
        }
        Ok(v) => Ok(v),
        Err(_) => Err(syntax(spec.name, s.trim(), format!("expected {want}"))),
    }
}

/// Parses one axis from text: `a,b,c`, `start:stop:step` or one value.
pub fn parse_axis(axis: &str, text: &str) -> Result<Vec<Value>, GridError> {
    if axis == MAX_POSITIONS {
        return parse_max_positions(text);
    }
    let spec = axis_spec(axis)?;
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
        if spec.kind == Kind::Robustness {
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
        // In f64 first: a span of 1e20 steps (or 1e-300 wide ones) would
        // saturate an integer count and wrap to zero values.
        let steps = ((stop - start) / step + 1e-9).floor();
        if steps.is_nan() || steps >= 1_000_000.0 {
            return Err(bad("more than 1,000,000 values"));
        }
        let count = steps as u64 + 1;
        let mut out = Vec::with_capacity(count as usize);
        for k in 0..count {
            let v = tidy(start + k as f64 * step);
            out.push(if spec.kind == Kind::Int {
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
    t.split(',').map(|s| parse_scalar(spec, s)).collect()
}

/// The [`MAX_POSITIONS`] axis from text: whole numbers >= 1, as a list
/// or a `start:stop:step` range (the `cutout` axis' syntax).
fn parse_max_positions(text: &str) -> Result<Vec<Value>, GridError> {
    let cutout = registry::axes().find(|s| s.kind == Kind::Int);
    let values = match cutout {
        Some(spec) => parse_axis(spec.name, text).map_err(|e| match e {
            GridError::Syntax { text, why, .. } => GridError::Syntax {
                axis: MAX_POSITIONS.into(),
                text,
                why: why.replace(">= 0", ">= 1"),
            },
            GridError::BadRange { text, why, .. } => GridError::BadRange {
                axis: MAX_POSITIONS.into(),
                text,
                why,
            },
            other => other,
        })?,
        None => return Err(syntax(MAX_POSITIONS, text, "no integer axis")),
    };
    check_max_positions(&values)?;
    Ok(values)
}

/// Every value of a [`MAX_POSITIONS`] axis is a whole number >= 1.
fn check_max_positions(values: &[Value]) -> Result<(), GridError> {
    match values
        .iter()
        .find(|v| !matches!(v, Value::Int(n) if (1..=crate::run::strategy::MAX_POSITIONS_LIMIT).contains(n)))
    {
        Some(v) => Err(syntax(
            MAX_POSITIONS,
            &v.to_string(),
            crate::run::strategy::MAX_POSITIONS_RANGE,
        )),
        None => Ok(()),
    }
}

impl Grid {
    /// Adds (or replaces) an axis given as text.
    pub fn set_axis(&mut self, axis: &str, text: &str) -> Result<(), GridError> {
        let values = parse_axis(axis, text)?;
        self.set_values(axis, values)
    }

    /// Adds (or replaces) an axis with parsed values, keeping registry
    /// order; refuses a name that is not an axis and values of another
    /// kind than the parameter's.
    pub fn set_values(&mut self, axis: &str, values: Vec<Value>) -> Result<(), GridError> {
        if axis == MAX_POSITIONS {
            check_max_positions(&values)?;
        } else {
            let spec = axis_spec(axis)?;
            if let Some(v) = values.iter().find(|v| v.kind() != spec.kind) {
                return Err(syntax(
                    axis,
                    &v.to_string(),
                    format!("expected {}", spec.kind_text()),
                ));
            }
        }
        // A value twice is the same combination computed twice (and, from a
        // range finer than the 12-decimal rounding, not what was asked).
        let mut seen = std::collections::HashSet::with_capacity(values.len());
        for v in &values {
            let key = match *v {
                Value::Real(x) => (x + 0.0).to_bits(),
                Value::Int(n) => n as u64,
                Value::Robustness(r) => r as u64,
            };
            if !seen.insert(key) {
                return Err(syntax(
                    axis,
                    &v.to_string(),
                    "the value appears more than once on this axis (range values are rounded \
                     to 12 decimals: a step below 1e-12 repeats them)",
                ));
            }
        }
        self.axes.retain(|(a, _)| a != axis);
        self.axes.push((axis.to_string(), values));
        let order = axis_names();
        self.axes
            .sort_by_key(|(a, _)| order.iter().position(|x| x == a).unwrap_or(usize::MAX));
        Ok(())
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
        for (axis, values) in self.signal_axes() {
            for v in values {
                let spec = axis_spec(axis)?;
                let mut p = base.clone();
                apply(&mut p, axis, *v)?;
                // Lengths are checked jointly with robustness below.
                if let Err(source) = p.validate() {
                    if !(spec.range == registry::Range::BaseLength || spec.kind == Kind::Robustness)
                    {
                        return Err(GridError::OutOfRange {
                            axis: axis.clone(),
                            value: v.to_string(),
                            source,
                        });
                    }
                }
            }
        }
        for p in self.signal_grid().combos(base) {
            if let Err(source) = p.validate() {
                let axis = match &source {
                    EngineError::InvalidParam { name, .. }
                    | EngineError::LengthTooShort { name, .. }
                    | EngineError::LengthTooLong { name, .. } => name.to_string(),
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
    ///
    /// Every axis name and value was checked when the axis was set
    /// ([`Grid::set_values`]); an axis pushed into [`Grid::axes`] by hand
    /// that is not a parameter of its kind is a defect of the caller and
    /// panics naming it (run [`Grid::validate`] first to get an error).
    pub fn combo(&self, base: &AtcParams, mut index: usize) -> AtcParams {
        let mut p = base.clone();
        for (axis, values) in self.axes.iter().rev() {
            let v = values[index % values.len()];
            index /= values.len();
            if axis == MAX_POSITIONS {
                continue;
            }
            if let Err(e) = apply(&mut p, axis, v) {
                panic!("Grid::combo on a grid that fails validate(): {e}");
            }
        }
        p
    }

    /// The axes other than [`MAX_POSITIONS`]: those of the ATC parameters.
    fn signal_axes(&self) -> impl Iterator<Item = (&String, &Vec<Value>)> {
        self.axes
            .iter()
            .filter(|(a, _)| a != MAX_POSITIONS)
            .map(|(a, v)| (a, v))
    }

    /// The [`MAX_POSITIONS`] axis' values, when the grid has it.
    pub fn max_positions_axis(&self) -> Option<Vec<usize>> {
        let (_, values) = self.axes.iter().find(|(a, _)| a == MAX_POSITIONS)?;
        Some(
            values
                .iter()
                .map(|v| match v {
                    Value::Int(n) => *n,
                    _ => 0,
                })
                .collect(),
        )
    }

    /// The grid without the [`MAX_POSITIONS`] axis: one combination per
    /// distinct set of signals. Combination `c` of this grid is signal
    /// combination `c / M` of that one (`M` the axis' length).
    pub fn signal_grid(&self) -> Grid {
        Grid {
            axes: self
                .signal_axes()
                .map(|(a, v)| (a.clone(), v.clone()))
                .collect(),
        }
    }

    /// The position limit of combination `c`: the [`MAX_POSITIONS`]
    /// axis' value, or `base` (the strategy's) without the axis.
    pub fn max_positions(&self, c: usize, base: Option<usize>) -> Option<usize> {
        match self.max_positions_axis() {
            Some(v) if !v.is_empty() => Some(v[c % v.len()]),
            _ => base,
        }
    }

    /// The parameters of combination `c` as `sweep.json` and
    /// `walk_forward.json` name them: its ATC parameters, and its
    /// position limit when the grid has the [`MAX_POSITIONS`] axis (the
    /// combination depends on it; other grids' files stay as they were).
    pub fn combo_params(&self, base: &AtcParams, c: usize) -> ComboParams {
        ComboParams {
            atc: self.combo(base, c),
            max_positions: self.max_positions(c, None),
        }
    }

    /// The strategy of combination `c`: `base` with its ATC parameters
    /// and its position limit.
    pub fn strategy(&self, base: &crate::run::Strategy, c: usize) -> crate::run::Strategy {
        let mut s = base.clone();
        s.atc = self.combo(&base.atc, c);
        s.execution.max_positions = self.max_positions(c, base.execution.max_positions);
        s
    }

    /// Every combination in order.
    pub fn combos<'a>(&'a self, base: &'a AtcParams) -> impl Iterator<Item = AtcParams> + 'a {
        (0..self.count() as usize).map(move |i| self.combo(base, i))
    }
}

/// Sets the parameter `axis` of `p` to `v`; an error for a name that is not
/// an axis or a value of another kind.
pub fn apply(p: &mut AtcParams, axis: &str, v: Value) -> Result<(), GridError> {
    let spec = axis_spec(axis)?;
    spec.set(p, v)
        .map_err(|e| syntax(axis, &v.to_string(), e.to_string()))
}

/// A grid file: the grid and the base strategy it names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GridFile {
    /// The `[grid]` table's axes.
    pub grid: Grid,
    /// `strategy = "file.toml"`, resolved relative to the grid file.
    pub strategy: Option<PathBuf>,
}

impl GridFile {
    /// Reads a grid file (TOML): optional `strategy = "file.toml"`
    /// (relative to the grid file) and a `[grid]` table whose keys are
    /// axes and whose values are lists, `"start:stop:step"` ranges or one
    /// value.
    pub fn load(path: &Path) -> Result<GridFile, GridError> {
        let text = std::fs::read_to_string(path).map_err(|source| GridError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        GridFile::from_toml(&text, path)
    }

    /// Parses a grid file's text; `path` names it in errors and anchors a
    /// relative `strategy`.
    pub fn from_toml(text: &str, path: &Path) -> Result<GridFile, GridError> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| GridError::Toml {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        let file_err = |what: String| GridError::File {
            path: path.to_path_buf(),
            what,
        };
        let mut out = GridFile::default();
        for (key, value) in &doc {
            match (key.as_str(), value) {
                ("strategy", toml::Value::String(s)) => {
                    let p = PathBuf::from(s);
                    out.strategy = Some(if p.is_absolute() {
                        p
                    } else {
                        path.parent().unwrap_or(Path::new(".")).join(p)
                    });
                }
                ("grid", toml::Value::Table(t)) => {
                    for (axis, v) in t {
                        let spec = match v {
                            toml::Value::String(s) => s.clone(),
                            toml::Value::Integer(i) => i.to_string(),
                            toml::Value::Float(f) => f.to_string(),
                            toml::Value::Array(a) => a
                                .iter()
                                .map(|x| match x {
                                    toml::Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                })
                                .collect::<Vec<_>>()
                                .join(","),
                            other => {
                                return Err(file_err(format!(
                                    "[grid] {axis} = {other}: expected a list or a \"start:stop:step\" string"
                                )))
                            }
                        };
                        out.grid
                            .set_axis(axis, &spec)
                            .map_err(|e| GridError::InFile {
                                path: path.to_path_buf(),
                                source: Box::new(e),
                            })?;
                    }
                }
                (other, _) => {
                    return Err(file_err(format!(
                        "unknown key `{other}` (a grid file has `strategy = \"file.toml\"` and a [grid] table)"
                    )))
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Robustness;

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

    /// Each grid axis, given as text, sets exactly its field in the
    /// combination's AtcParams; a name that is not an axis is an error
    /// listing the axes (the old `apply` ignored it).
    #[test]
    fn every_axis_round_trips_to_the_combination() {
        let base = AtcParams::default();
        for s in registry::axes() {
            let v = match s.default {
                Value::Real(x) => Value::Real(x + 0.25),
                Value::Int(x) => Value::Int(x + 3),
                Value::Robustness(_) => Value::Robustness(Robustness::Wide),
            };
            let mut g = Grid::default();
            g.set_axis(s.name, &v.to_string()).unwrap();
            let p = g.combo(&base, 0);
            let mut want = base.clone();
            s.set(&mut want, v).unwrap();
            assert_eq!(p, want, "{}", s.name);
            assert_eq!((s.get)(&p), v, "{}", s.name);
        }
        let mut p = base.clone();
        for name in ["lamda", "starting_equity", "ema_w"] {
            let e = apply(&mut p, name, Value::Real(1.0))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(name) && e.contains("lambda, decay, cutout, robustness"),
                "{e}"
            );
        }
        let e = apply(&mut p, "cutout", Value::Real(1.5))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cutout") && e.contains("whole number"), "{e}");
        assert_eq!(p, base);
        let e = Grid::default()
            .set_values("ema_len", vec![Value::Real(3.0)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ema_len"), "{e}");
    }

    /// `max_positions` is always the last axis, the fastest: combination
    /// `c` has the ATC parameters of the grid without it at `c / M` and
    /// the limit `c % M`; without the axis numbers are unchanged; its
    /// values are whole numbers >= 1 from a list or a range.
    #[test]
    fn max_positions_is_the_fastest_axis_and_leaves_the_signals_alone() {
        let base = AtcParams::default();
        let mut g = Grid::default();
        g.set_axis(MAX_POSITIONS, "2:6:2").unwrap();
        g.set_axis("decay", "0.01,0.02").unwrap();
        g.set_axis("lambda", "0.1,0.2,0.3").unwrap();
        let names: Vec<&str> = g.axes.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(names, ["lambda", "decay", MAX_POSITIONS]);
        assert_eq!(g.count(), 18);
        let signals = g.signal_grid();
        assert_eq!(signals.count(), 6);
        for c in 0..18 {
            assert_eq!(g.combo(&base, c), signals.combo(&base, c / 3));
            assert_eq!(g.max_positions(c, None), Some([2, 4, 6][c % 3]));
        }
        assert_eq!(signals.max_positions(5, Some(7)), Some(7));
        g.validate(&base, 100).unwrap();
        for (text, needle) in [
            ("0,2", "from 1 to 1000000"),
            ("2,1000001", "from 1 to 1000000"),
            ("1.5", "whole number"),
            ("a", "whole number"),
            ("0:4:1.5", "whole"),
        ] {
            let e = parse_axis(MAX_POSITIONS, text).unwrap_err().to_string();
            assert!(
                e.starts_with("max_positions: ") && e.contains(needle),
                "{e}"
            );
        }
        let e = Grid::default()
            .set_values(MAX_POSITIONS, vec![Value::Real(2.0)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("a whole number from 1"), "{e}");
        let f =
            GridFile::from_toml("[grid]\nmax_positions = [1, 3]\n", Path::new("g.toml")).unwrap();
        assert_eq!(f.grid.max_positions_axis(), Some(vec![1, 3]));
    }

    /// The grid file parser (moved from the CLI): strategy relative to the
    /// file, lists, ranges and single values; unknown keys and axes are
    /// errors naming the file.
    #[test]
    fn grid_file_reads_axes_and_strategy() {
        let path = Path::new("/tmp/g/grid.toml");
        let f = GridFile::from_toml(
            "strategy = \"s.toml\"\n[grid]\nlambda = [0.01, 0.02]\ncutout = \"0:20:10\"\nrobustness = [\"narrow\", \"wide\"]\nema_len = 20\n",
            path,
        )
        .unwrap();
        assert_eq!(f.strategy, Some(PathBuf::from("/tmp/g/s.toml")));
        assert_eq!(f.grid.count(), 2 * 3 * 2);
        let names: Vec<&str> = f.grid.axes.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(names, ["lambda", "cutout", "robustness", "ema_len"]);
        for (text, needle) in [
            ("[grid]\nlamda = [1]", "lamda is not a sweepable"),
            ("stratgy = \"x\"", "unknown key `stratgy`"),
            ("[grid]\nlambda = {a = 1}", "expected a list"),
            ("[grid", "not valid TOML"),
        ] {
            let e = GridFile::from_toml(text, path).unwrap_err();
            // The message and its cause, as the CLI prints the chain.
            let e = match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            };
            assert!(
                e.starts_with("/tmp/g/grid.toml: ") && e.contains(needle),
                "{e}"
            );
        }
    }
}
