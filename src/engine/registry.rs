//! The ATC parameter registry: one row per field of [`AtcParams`] (name,
//! unit, kind, default, valid range, spec section, help text, and how the
//! value is read from and written to an [`AtcParams`]) that everything
//! naming a parameter reads, so adding a parameter touches this table and
//! the struct only.
//!
//! Readers: [`AtcParams::validate`] (ranges, in this order), the CLI's ATC
//! flags (`--lambda`, `--ema-len`, …: generated from the table, help text
//! and defaults included), the sweep's grid axes and their flags (the rows
//! with [`ParamSpec::axis`]), the grid file parser, the parameter columns
//! of `results.parquet` (one per row, typed by [`Kind`], in this order) and
//! the report's parameter labels (the name itself: one name everywhere).
//! Strategy TOML keys are the serde field names of [`AtcParams`]; the
//! table's macro reads the field of the same name, so the two cannot
//! differ (a test checks the key order too).
//!
//! The twin of the metric facts table (`backtest/facts.rs`), built the
//! same way: a static slice of plain structs filled by a macro that names
//! the field once, and tests that each row round-trips.

use std::fmt;

use serde::Serialize;

use super::error::EngineError;
use super::params::{AtcParams, Robustness};

/// What a parameter's number means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Pine input units; the engine divides by 1000 (`lambda`).
    PineInput,
    /// Percent per bar; the engine divides by 100 (`decay`).
    PercentPerBar,
    /// A number of bars (lengths, `cutout`).
    Bars,
    /// One of a few named choices (`robustness`).
    Choice,
    /// Units of the average signal, which lies in [-1, 1] (thresholds).
    Signal,
    /// Equity units (starting equities and layer-2 weights).
    Equity,
}

impl Unit {
    /// The unit in words, as the spec's parameter table says it.
    pub fn describe(self) -> &'static str {
        match self {
            Unit::PineInput => "Pine input units (engine: /1000)",
            Unit::PercentPerBar => "percent per bar (engine: /100)",
            Unit::Bars => "bars",
            Unit::Choice => "narrow, medium or wide",
            Unit::Signal => "signal units",
            Unit::Equity => "equity units",
        }
    }
}

/// How a parameter is stored: its Rust type, the column type of
/// `results.parquet` and how text parses into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `f64`; a `Float64` column.
    Real,
    /// `usize`; an `Int64` column.
    Int,
    /// [`Robustness`]; a `Utf8` column with the spec's spelling.
    Robustness,
}

/// The first stage of the ATC computation a parameter changes (spec
/// sections in brackets). A sweep computes every stage before it once for
/// all combinations that differ only in this parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The moving averages and cross signals (sec. 3–7): the lengths.
    /// A sweep's shared stage ([`shared_signals`](super::shared_signals)),
    /// once per series and length set.
    Signals,
    /// Layer 1, layer 2 and the average signal (sec. 6–11), each value in
    /// its own SIMD lane of the layer kernel
    /// ([`LayerLanes`](super::LayerLanes)).
    Layers,
    /// The same stage, with one value shared by all the lanes of a
    /// layer-kernel call: the bar where equities start (sec. 10).
    LayerStart,
    /// The direction from the average signal (sec. 12): after the layers,
    /// per combination, sharing its average signal.
    Direction,
}

/// The valid range of a parameter, checked by [`ParamSpec::check`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// Every value of the type.
    Any,
    /// Finite.
    Finite,
    /// Finite and `>= lo`.
    AtLeast(f64),
    /// Finite and `> lo`.
    Above(f64),
    /// Finite and `lo <= x < hi`.
    HalfOpen(f64, f64),
    /// A base length: every derived length (spec sec. 3) is `>= 2` under
    /// the parameters' robustness.
    BaseLength,
}

/// One value of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A real parameter (lambda, decay, thresholds, equities).
    Real(f64),
    /// An integer parameter (cutout, lengths).
    Int(usize),
    /// Robustness.
    Robustness(#[serde(serialize_with = "ser_rob")] Robustness),
}

fn ser_rob<S: serde::Serializer>(r: &Robustness, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.name())
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Real(v) => write!(f, "{v}"),
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Robustness(r) => write!(f, "{r}"),
        }
    }
}

impl ParamValue {
    /// The kind of this value.
    pub fn kind(&self) -> Kind {
        match self {
            ParamValue::Real(_) => Kind::Real,
            ParamValue::Int(_) => Kind::Int,
            ParamValue::Robustness(_) => Kind::Robustness,
        }
    }
}

/// A field type of [`AtcParams`] and how it converts to a [`ParamValue`].
pub trait FieldValue: Sized {
    /// The kind of every value of this type.
    const KIND: Kind;
    /// The value.
    fn to_value(&self) -> ParamValue;
    /// The field's value from `v`, if `v` is of this kind.
    fn from_value(v: ParamValue) -> Option<Self>;
}

impl FieldValue for f64 {
    const KIND: Kind = Kind::Real;
    fn to_value(&self) -> ParamValue {
        ParamValue::Real(*self)
    }
    fn from_value(v: ParamValue) -> Option<Self> {
        match v {
            ParamValue::Real(x) => Some(x),
            _ => None,
        }
    }
}
impl FieldValue for usize {
    const KIND: Kind = Kind::Int;
    fn to_value(&self) -> ParamValue {
        ParamValue::Int(*self)
    }
    fn from_value(v: ParamValue) -> Option<Self> {
        match v {
            ParamValue::Int(x) => Some(x),
            _ => None,
        }
    }
}
impl FieldValue for Robustness {
    const KIND: Kind = Kind::Robustness;
    fn to_value(&self) -> ParamValue {
        ParamValue::Robustness(*self)
    }
    fn from_value(v: ParamValue) -> Option<Self> {
        match v {
            ParamValue::Robustness(x) => Some(x),
            _ => None,
        }
    }
}

/// The kind of a field, from its accessor (used by the table's macro).
pub const fn kind_of<T: FieldValue>(_field: fn(&AtcParams) -> &T) -> Kind {
    T::KIND
}

/// Errors naming a parameter: unknown names and values of the wrong kind.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    /// No parameter has this name.
    #[error("unknown ATC parameter `{name}` (known: {known})", known = names().collect::<Vec<_>>().join(", "))]
    Unknown {
        /// The name given.
        name: String,
    },
    /// A value of another kind than the parameter's.
    #[error("{name} takes {want}, not {value}")]
    WrongKind {
        /// The parameter.
        name: &'static str,
        /// What it takes, in words.
        want: &'static str,
        /// The value given.
        value: String,
    },
    /// Text that does not read as a value of the parameter.
    #[error("{name}: cannot read {text:?}: expected {want}")]
    Syntax {
        /// The parameter.
        name: &'static str,
        /// The text given.
        text: String,
        /// What it takes, in words.
        want: &'static str,
    },
}

/// One row of the registry.
#[derive(Clone, Copy)]
pub struct ParamSpec {
    /// The one name: field of [`AtcParams`], TOML key under `[atc]`, CLI
    /// flag (with `_` written `-`), grid axis, `results.parquet` column and
    /// report label.
    pub name: &'static str,
    /// What the number means.
    pub unit: Unit,
    /// How it is stored.
    pub kind: Kind,
    /// The spec's default (`AtcParams::default()`; a test keeps them equal).
    pub default: ParamValue,
    /// The valid range, checked by [`ParamSpec::check`].
    pub range: Range,
    /// The valid range in words, as errors and `--help` give it.
    pub range_text: &'static str,
    /// Where `spec/ATC.md` defines it.
    pub spec: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// Whether a sweep grid may vary it (a grid axis and a `sweep` flag).
    pub axis: bool,
    /// The first stage of the computation it changes: what a sweep can
    /// share between combinations that differ in it.
    pub stage: Stage,
    /// Reads the value.
    pub get: fn(&AtcParams) -> ParamValue,
    /// Writes the value; `None` if `v` is of another kind.
    pub put: fn(&mut AtcParams, ParamValue) -> Option<()>,
}

impl fmt::Debug for ParamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParamSpec")
            .field("name", &self.name)
            .field("unit", &self.unit)
            .field("kind", &self.kind)
            .field("default", &self.default)
            .finish()
    }
}

impl PartialEq for ParamSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl ParamSpec {
    /// The CLI flag: the name with `_` written `-` (`ema_len` → `ema-len`).
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }

    /// The report's label for the parameter: its name (one name for one
    /// thing, in files and on the page alike).
    pub fn label(&self) -> &'static str {
        self.name
    }

    /// What the parameter takes, in words.
    pub fn kind_text(&self) -> &'static str {
        match self.kind {
            Kind::Real => "a number",
            Kind::Int => "a whole number >= 0",
            Kind::Robustness => "one of narrow, medium, wide (any letter case)",
        }
    }

    /// Reads one value from text (no range check, so `NaN` and `inf` read
    /// as numbers for [`ParamSpec::check`] to refuse naming the range).
    pub fn parse(&self, text: &str) -> Result<ParamValue, ParamError> {
        let t = text.trim();
        let syntax = || ParamError::Syntax {
            name: self.name,
            text: t.to_string(),
            want: self.kind_text(),
        };
        match self.kind {
            // `+ 0.0`: -0 reads as 0 (one value, one cache key).
            Kind::Real => t
                .parse::<f64>()
                .map(|x| ParamValue::Real(x + 0.0))
                .map_err(|_| syntax()),
            Kind::Int => t
                .parse::<usize>()
                .map(ParamValue::Int)
                .map_err(|_| syntax()),
            Kind::Robustness => t
                .parse::<Robustness>()
                .map(ParamValue::Robustness)
                .map_err(|_| syntax()),
        }
    }

    /// Sets the parameter of `p` to `v`; an error if `v` is of another kind.
    pub fn set(&self, p: &mut AtcParams, v: ParamValue) -> Result<(), ParamError> {
        (self.put)(p, v).ok_or_else(|| ParamError::WrongKind {
            name: self.name,
            want: self.kind_text(),
            value: v.to_string(),
        })
    }

    /// Checks the parameter's value in `p` against its valid range; the
    /// error names the parameter, its value and the range.
    pub fn check(&self, p: &AtcParams) -> Result<(), EngineError> {
        let v = (self.get)(p);
        let ok = match (self.range, v) {
            (Range::Any, _) => true,
            (Range::Finite, ParamValue::Real(x)) => x.is_finite(),
            (Range::AtLeast(lo), ParamValue::Real(x)) => x.is_finite() && x >= lo,
            (Range::Above(lo), ParamValue::Real(x)) => x.is_finite() && x > lo,
            (Range::HalfOpen(lo, hi), ParamValue::Real(x)) => x.is_finite() && x >= lo && x < hi,
            (Range::BaseLength, ParamValue::Int(b)) => {
                if b > MAX_BASE_LENGTH {
                    return Err(EngineError::LengthTooLong {
                        name: self.name,
                        value: b,
                        max: MAX_BASE_LENGTH,
                    });
                }
                // The offsets grow: the widest decides both ends.
                let o4 = p.robustness.offsets()[3];
                if b.checked_add(o4).is_some() && b.checked_sub(o4).is_some_and(|l| l >= 2) {
                    return Ok(());
                }
                return Err(EngineError::LengthTooShort {
                    name: self.name,
                    value: b,
                    robustness: p.robustness,
                    min: o4 + 2,
                });
            }
            // A range of another kind than the field: a defect of the
            // table, which the registry's tests rule out.
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(EngineError::InvalidParam {
                name: self.name,
                value: v.to_string(),
                range: self.range_text,
            })
        }
    }
}

macro_rules! param {
    ($name:ident, $unit:ident, $default:expr, $range:expr, $range_text:expr, $spec:literal, axis: $axis:literal, stage: $stage:ident, $help:literal $(,)?) => {
        ParamSpec {
            name: stringify!($name),
            unit: Unit::$unit,
            kind: kind_of(|p: &AtcParams| &p.$name),
            default: $default,
            range: $range,
            range_text: $range_text,
            spec: $spec,
            help: $help,
            axis: $axis,
            stage: Stage::$stage,
            get: |p: &AtcParams| FieldValue::to_value(&p.$name),
            put: |p: &mut AtcParams, v: ParamValue| {
                p.$name = FieldValue::from_value(v)?;
                Some(())
            },
        }
    };
}

/// The longest base length: 100,000 bars (about 400 years of daily bars).
/// Without a ceiling a length such as 2^32 made the batched engine try to
/// reserve memory in proportion to the length and abort the process (and a
/// Python interpreter with it) instead of refusing the parameter.
pub const MAX_BASE_LENGTH: usize = 100_000;

const LEN_RANGE: &str =
    "every derived length >= 2: base >= 6 narrow, >= 8 medium, >= 9 wide; base <= 100000";
const WEIGHT_RANGE: &str = "a finite number (below 0.25 acts as 0.25)";

use ParamValue::{Int, Real};

/// Every ATC parameter, in the order of [`AtcParams`]'s fields, of
/// validation, of grid enumeration and of the `results.parquet` columns.
pub const PARAMS: &[ParamSpec] = &[
    param!(lambda, PineInput, Real(0.02), Range::AtLeast(0.0), "finite and >= 0",
        "spec/ATC.md sec. 2, 6", axis: true, stage: Layers,
        "Growth factor in Pine input units (engine uses lambda/1000)"),
    param!(decay, PercentPerBar, Real(0.03), Range::HalfOpen(0.0, 100.0),
        "0 <= decay < 100 (percent per bar)", "spec/ATC.md sec. 2, 8", axis: true, stage: Layers,
        "Equity decay in percent per bar (engine uses decay/100)"),
    param!(cutout, Bars, Int(0), Range::Any, "a whole number >= 0",
        "spec/ATC.md sec. 2, 10", axis: true, stage: LayerStart,
        "Bars before equities start (na before)"),
    param!(robustness, Choice, ParamValue::Robustness(Robustness::Medium), Range::Any,
        "one of narrow, medium, wide (any letter case)", "spec/ATC.md sec. 2, 3", axis: true, stage: Signals,
        "Spread of the nine lengths: narrow (1,2,3,4), medium (1,2,4,6), wide (1,3,5,7)"),
    param!(ema_len, Bars, Int(28), Range::BaseLength, LEN_RANGE, "spec/ATC.md sec. 2, 3",
        axis: true, stage: Signals, "Base length of the EMA family"),
    param!(hma_len, Bars, Int(28), Range::BaseLength, LEN_RANGE, "spec/ATC.md sec. 2, 3",
        axis: true, stage: Signals, "Base length of the HMA family (Pine's HMA branch is an SMA)"),
    param!(wma_len, Bars, Int(28), Range::BaseLength, LEN_RANGE, "spec/ATC.md sec. 2, 3",
        axis: true, stage: Signals, "Base length of the WMA family"),
    param!(dema_len, Bars, Int(28), Range::BaseLength, LEN_RANGE, "spec/ATC.md sec. 2, 3",
        axis: true, stage: Signals, "Base length of the DEMA family"),
    param!(lsma_len, Bars, Int(28), Range::BaseLength, LEN_RANGE, "spec/ATC.md sec. 2, 3",
        axis: true, stage: Signals, "Base length of the LSMA family"),
    param!(kama_len, Bars, Int(28), Range::BaseLength, LEN_RANGE, "spec/ATC.md sec. 2, 3",
        axis: true, stage: Signals, "Base length of the KAMA family"),
    param!(long_threshold, Signal, Real(0.1), Range::Finite, "a finite number",
        "spec/ATC.md sec. 2, 12", axis: true, stage: Direction,
        "Average signal crossing above this goes long"),
    param!(short_threshold, Signal, Real(-0.1), Range::Finite, "a finite number",
        "spec/ATC.md sec. 2, 12", axis: true, stage: Direction,
        "Average signal crossing below this goes short"),
    param!(starting_equity, Equity, Real(1.0), Range::Above(0.0), "finite and > 0",
        "spec/ATC.md sec. 2, 8", axis: false, stage: Layers,
        "Starting equity of every layer-1 equity curve"),
    param!(ema_w, Equity, Real(1.0), Range::Finite, WEIGHT_RANGE, "spec/ATC.md sec. 2, 11",
        axis: false, stage: Layers, "Layer-2 starting equity (Pine weight) of the EMA family"),
    param!(hma_w, Equity, Real(1.0), Range::Finite, WEIGHT_RANGE, "spec/ATC.md sec. 2, 11",
        axis: false, stage: Layers, "Layer-2 starting equity of the HMA family"),
    param!(wma_w, Equity, Real(1.0), Range::Finite, WEIGHT_RANGE, "spec/ATC.md sec. 2, 11",
        axis: false, stage: Layers, "Layer-2 starting equity of the WMA family"),
    param!(dema_w, Equity, Real(1.0), Range::Finite, WEIGHT_RANGE, "spec/ATC.md sec. 2, 11",
        axis: false, stage: Layers, "Layer-2 starting equity of the DEMA family"),
    param!(lsma_w, Equity, Real(1.0), Range::Finite, WEIGHT_RANGE, "spec/ATC.md sec. 2, 11",
        axis: false, stage: Layers, "Layer-2 starting equity of the LSMA family"),
    param!(kama_w, Equity, Real(1.0), Range::Finite, WEIGHT_RANGE, "spec/ATC.md sec. 2, 11",
        axis: false, stage: Layers, "Layer-2 starting equity of the KAMA family"),
];

/// Number of parameters.
pub const PARAM_COUNT: usize = PARAMS.len();

/// Every parameter name, in registry order, as an array (for constants such
/// as the `results.parquet` column list).
pub const fn param_names() -> [&'static str; PARAM_COUNT] {
    let mut out = [""; PARAM_COUNT];
    let mut i = 0;
    while i < PARAM_COUNT {
        out[i] = PARAMS[i].name;
        i += 1;
    }
    out
}

/// Every parameter name, in registry order.
pub fn names() -> impl Iterator<Item = &'static str> {
    PARAMS.iter().map(|s| s.name)
}

/// The parameter named `name`; an error naming it and listing the known
/// ones otherwise.
pub fn param(name: &str) -> Result<&'static ParamSpec, ParamError> {
    PARAMS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ParamError::Unknown {
            name: name.to_string(),
        })
}

/// The parameters a sweep grid may vary, in enumeration order.
pub fn axes() -> impl Iterator<Item = &'static ParamSpec> {
    PARAMS.iter().filter(|s| s.axis)
}

/// Parameter checks live here, beside the ranges they read, so that
/// `params.rs` (the types) imports neither the registry nor the errors.
impl AtcParams {
    /// Checks every parameter against the spec's valid range, in the
    /// registry's order ([`PARAMS`]); the error names the parameter, its
    /// value and the range.
    pub fn validate(&self) -> Result<(), EngineError> {
        PARAMS.iter().try_for_each(|s| s.check(self))
    }

    /// Writes every real parameter equal to zero as +0: `-0` computes the
    /// same numbers, but as a distinct value it would be a distinct cache
    /// key, grid value and manifest entry.
    pub fn normalize_zeros(&mut self) {
        for s in PARAMS {
            if let ParamValue::Real(x) = (s.get)(self) {
                // Cannot fail: the value is of the field's own kind.
                let _ = s.set(self, ParamValue::Real(x + 0.0));
            }
        }
    }
}

impl std::str::FromStr for Robustness {
    type Err = EngineError;

    /// Accepts `narrow`, `medium`, `wide` in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "narrow" => Ok(Robustness::Narrow),
            "medium" => Ok(Robustness::Medium),
            "wide" => Ok(Robustness::Wide),
            _ => Err(EngineError::InvalidParam {
                name: "robustness",
                value: s.to_string(),
                range: "one of narrow, medium, wide (any letter case)",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value of the parameter's kind that differs from its default.
    pub(crate) fn other_value(s: &ParamSpec) -> ParamValue {
        match s.default {
            ParamValue::Real(x) => ParamValue::Real(x + 0.25),
            ParamValue::Int(x) => ParamValue::Int(x + 3),
            ParamValue::Robustness(_) => ParamValue::Robustness(Robustness::Wide),
        }
    }

    /// The shared stage of a sweep is keyed by the lengths: a parameter
    /// changes them exactly when the registry says it is of the signals
    /// stage, so the sweep's planning (which reads `stage`) shares only
    /// what is equal.
    #[test]
    fn signals_stage_is_exactly_what_changes_the_lengths() {
        for s in PARAMS {
            let base = AtcParams::default();
            let mut p = base.clone();
            s.set(&mut p, other_value(s)).unwrap();
            let changed = crate::engine::Family::ALL
                .iter()
                .any(|&f| p.lengths(f) != base.lengths(f));
            assert_eq!(changed, s.stage == Stage::Signals, "{}", s.name);
        }
    }

    #[test]
    fn names_are_unique_and_defaults_match_the_struct() {
        let mut n: Vec<&str> = names().collect();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), PARAMS.len(), "duplicate name");
        let d = AtcParams::default();
        for s in PARAMS {
            assert_eq!((s.get)(&d), s.default, "{}", s.name);
            assert_eq!(s.default.kind(), s.kind, "{}", s.name);
            assert!(s.check(&d).is_ok(), "{}: default out of range", s.name);
            assert!(!s.help.is_empty() && s.spec.starts_with("spec/ATC.md sec. "));
            // Ranges are of the field's kind (else check() reports every
            // value as out of range).
            let fits = match s.range {
                Range::Any => true,
                Range::BaseLength => s.kind == Kind::Int,
                _ => s.kind == Kind::Real,
            };
            assert!(fits, "{}: range of another kind", s.name);
        }
        assert_eq!(param_names().to_vec(), names().collect::<Vec<_>>());
    }

    /// Setting each parameter to another value changes exactly that field
    /// of `AtcParams`: the registry covers every field, once.
    #[test]
    fn registry_covers_every_field_of_atc_params() {
        let base = AtcParams::default();
        let base_toml: toml::Table = toml::Table::try_from(&base).unwrap();
        // Every serialized field (= every struct field, the serializer is
        // derived) is a registry name, in the same order.
        let keys: Vec<&str> = base_toml.keys().map(|k| k.as_str()).collect();
        let mut sorted: Vec<&str> = names().collect();
        sorted.sort();
        assert_eq!(keys, sorted, "toml::Table sorts its keys");
        // The TOML text (and run.json) lists the fields in struct order:
        // the registry's order.
        let text = toml::to_string(&base).unwrap();
        let order: Vec<&str> = text.lines().filter_map(|l| l.split(" = ").next()).collect();
        assert_eq!(order, names().collect::<Vec<_>>());
        for s in PARAMS {
            let mut p = base.clone();
            s.set(&mut p, other_value(s)).unwrap();
            assert_ne!(p, base, "{} changed nothing", s.name);
            let changed = toml::Table::try_from(&p).unwrap();
            let diff: Vec<&String> = changed
                .iter()
                .filter(|(k, v)| base_toml.get(*k) != Some(*v))
                .map(|(k, _)| k)
                .collect();
            assert_eq!(diff, vec![s.name], "{} set another field", s.name);
            assert_eq!((s.get)(&p), other_value(s), "{}", s.name);
        }
    }

    #[test]
    fn wrong_kind_and_unknown_name_are_errors() {
        let mut p = AtcParams::default();
        let e = param("lambda")
            .unwrap()
            .set(&mut p, ParamValue::Int(3))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lambda") && e.contains("a number"), "{e}");
        assert_eq!(p, AtcParams::default());
        let e = param("lamda").unwrap_err().to_string();
        assert!(
            e.contains("`lamda`") && e.contains("lambda, decay, cutout"),
            "{e}"
        );
    }

    #[test]
    fn parse_reads_each_kind_and_names_the_parameter() {
        for s in PARAMS {
            let v = other_value(s);
            assert_eq!(s.parse(&v.to_string()).unwrap(), v, "{}", s.name);
            let e = s.parse("x").unwrap_err().to_string();
            assert!(e.contains(s.name) && e.contains("\"x\""), "{e}");
        }
        let lambda = param("lambda").unwrap();
        let mut p = AtcParams::default();
        lambda.set(&mut p, lambda.parse("inf").unwrap()).unwrap();
        assert!(lambda
            .check(&p)
            .unwrap_err()
            .to_string()
            .contains("lambda = inf"));
        assert!(param("cutout").unwrap().parse("-1").is_err());
    }

    #[test]
    fn checks_name_parameter_value_and_range() {
        for (name, v) in [
            ("lambda", ParamValue::Real(-0.1)),
            ("decay", ParamValue::Real(100.0)),
            ("long_threshold", ParamValue::Real(f64::NAN)),
            ("starting_equity", ParamValue::Real(0.0)),
            ("kama_w", ParamValue::Real(f64::INFINITY)),
            ("ema_len", ParamValue::Int(7)),
        ] {
            let s = param(name).unwrap();
            let mut p = AtcParams::default();
            s.set(&mut p, v).unwrap();
            let e = s.check(&p).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(&v.to_string()), "{e}");
            assert!(e.contains("valid"), "{e}");
        }
    }
}
