//! `atc_bt._atc_bt`: the compiled half of the Python package.
//!
//! Thin by design: it turns keyword parameters into [`AtcParams`], runs the
//! library's engine with the GIL released, and hands the engine's vectors
//! to NumPy without changing a bit; `run_job`, `sweep_job` and
//! `report_job` turn keywords into the job layer's settings
//! ([`atc_bt::job`], through the same library functions the CLI uses:
//! [`resolve_strategy`], [`DataSettings::select`], the registry's parsers)
//! and run the job with the GIL released, returning the directory it
//! wrote. Everything a user sees (argument normalisation, pandas, polars,
//! docstrings) lives in the pure-Python package `atc_bt`, which calls only
//! the functions below.
//!
//! Errors: a parameter the engine refuses is a `ValueError`, a series it
//! refuses is `atc_bt.DataError` (a `ValueError` subclass), both with the
//! engine's own message; a job's error is `atc_bt.DataError` when the data
//! stopped it, else `ValueError`, with the message the command prints (its
//! causes on `caused by:` lines); an unknown keyword is a `ValueError`
//! naming it. A panic never crosses into Python: every call into
//! the library runs under [`atc_bt::boundary::catch`] and a panic becomes a
//! `RuntimeError` asking for a report.

use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyBool, PyDict, PyFloat, PyInt, PyString};
use rayon::prelude::*;

use atc_bt::backtest::book::{Allocation, Rebalance};
use atc_bt::backtest::Mode;
use atc_bt::data::parse_date_bound;
use atc_bt::engine::registry;
use atc_bt::engine::{
    compute, compute_batch, AtcOutput, AtcParams, BatchDetail, Detail, EngineError, Family,
    MA_COUNT,
};
use atc_bt::export::atc_columns;
use atc_bt::job::run::{
    resolve_strategy, ReportSettings, RunOutcome, RunSettings, StrategyOverrides,
};
use atc_bt::job::scan::{ScanFilter, ScanSettings};
use atc_bt::job::sweep::{Split, SweepOutcome, SweepSettings};
use atc_bt::job::{self, CacheSettings, DataSettings, JobError, Progress};
use atc_bt::report::{render_report, Format, ReportOptions, ScaleChoice, SymbolsInReport};
use atc_bt::run::output::Outputs;
use atc_bt::sweep::grid::GridFile;
use atc_bt::sweep::walk::WalkForwardSpec;
use std::path::PathBuf;

create_exception!(
    _atc_bt,
    DataError,
    PyValueError,
    "Data atc-bt refuses: a close series (empty, or a close that is not finite and > 0), \
     or the data of a run or sweep (unreadable, an unknown symbol, nothing in the window); \
     the message names the file, symbol, bar and value, and the fix."
);

/// Maps an engine error to the Python exception of its kind.
fn engine_err(e: EngineError) -> PyErr {
    match e {
        EngineError::EmptySeries | EngineError::BadClose { .. } => {
            DataError::new_err(e.to_string())
        }
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// Runs `f` (a call into the library) so that a panic becomes a Python
/// `RuntimeError` instead of unwinding into the interpreter.
fn guarded<T>(f: impl FnOnce() -> T) -> PyResult<T> {
    atc_bt::boundary::catch(f).map_err(|msg| {
        PyRuntimeError::new_err(format!(
            "internal error in atc-bt ({msg}); please report it with the input that caused it"
        ))
    })
}

/// Turns the keyword parameters into [`AtcParams`]: spec names (`lambda_`
/// is accepted for `lambda`, a Python keyword), spec units, serde's own
/// checks for unknown names and wrong types, then the engine's range
/// checks. Every refusal is a `ValueError` naming the parameter.
fn params_from(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<AtcParams> {
    let mut table = serde_json::Map::new();
    if let Some(kwargs) = kwargs {
        for (k, v) in kwargs.iter() {
            let raw: String = k.extract()?;
            let name = if raw == "lambda_" {
                "lambda".to_string()
            } else {
                raw.clone()
            };
            let key = escape_controls(&raw);
            let value = if v.is_instance_of::<PyBool>() {
                return Err(PyValueError::new_err(format!(
                    "invalid parameter {key} = {v}: a boolean is not a number"
                )));
            } else if v.is_instance_of::<PyString>() {
                serde_json::Value::String(v.extract()?)
            } else if v.is_instance_of::<PyInt>() || v.hasattr("__index__")? {
                match v.extract::<i64>() {
                    Ok(i) => serde_json::Value::from(i),
                    Err(_) => {
                        return Err(PyValueError::new_err(format!(
                            "invalid parameter {key} = {v}: out of range"
                        )))
                    }
                }
            } else if v.is_instance_of::<PyFloat>() || v.hasattr("__float__")? {
                let f: f64 = v.extract()?;
                // JSON has no NaN/inf; the engine refuses them anyway, with
                // its own message, so keep the value and check it below.
                match serde_json::Number::from_f64(f) {
                    Some(n) => serde_json::Value::Number(n),
                    None => {
                        return Err(PyValueError::new_err(format!(
                            "invalid parameter {key} = {f}: must be finite"
                        )))
                    }
                }
            } else {
                return Err(PyValueError::new_err(format!(
                    "invalid parameter {key} = {}: expected a number or, for robustness, a string",
                    v.repr()?
                )));
            };
            // One key at a time first, so a wrong type names its parameter
            // (serde's message alone does not).
            let mut one = serde_json::Map::new();
            one.insert(name.clone(), value.clone());
            if let Err(e) = serde_json::from_value::<AtcParams>(serde_json::Value::Object(one)) {
                // The engine's own refusals already say "invalid parameter
                // NAME = VALUE: "; keep only their reason, after the value
                // as Python writes it (repr: control characters escaped).
                let msg = e.to_string();
                let head = format!("invalid parameter {name} = ");
                let reason = match (msg.strip_prefix(&head), &value) {
                    (Some(rest), serde_json::Value::String(s)) => rest
                        .strip_prefix(s.as_str())
                        .and_then(|r| r.strip_prefix(": ")),
                    (Some(rest), _) => rest.split_once(": ").map(|(_, r)| r),
                    (None, _) => None,
                }
                .unwrap_or(&msg);
                return Err(PyValueError::new_err(escape_controls(&format!(
                    "invalid parameter {key} = {}: {}",
                    v.repr()?,
                    python_names(reason)
                ))));
            }
            table.insert(name, value);
        }
    }
    let params: AtcParams =
        serde_json::from_value(serde_json::Value::Object(table)).map_err(|e| {
            PyValueError::new_err(escape_controls(&format!(
                "invalid parameter: {}",
                python_names(&e.to_string())
            )))
        })?;
    params.validate().map_err(engine_err)?;
    Ok(params)
}

/// `msg` with every control character written as Rust escapes it
/// (`\u{0}`), so a NUL or an escape sequence in a name or value never
/// reaches the terminal raw.
fn escape_controls(msg: &str) -> String {
    msg.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Serde's message in Python's words: `lambda_` (the keyword), no Rust
/// type names.
fn python_names(msg: &str) -> String {
    msg.replace("`lambda`", "`lambda_`")
        .replace("expected usize", "expected a whole number >= 0")
        .replace("expected f64", "expected a number")
}

/// One column of the output, before it becomes a NumPy array.
enum Col {
    F(Vec<f64>),
    I8(Vec<i8>),
    I64(Vec<i64>),
}

/// The output of one series as a dict keyed by the golden CSV's column
/// names ([`atc_columns`], the names `atc-bt compute` writes), in its
/// order. Columns the engine did not keep ([`Detail::Signal`],
/// [`BatchDetail::Direction`]) are left out.
fn out_dict<'py>(py: Python<'py>, close: Vec<f64>, out: AtcOutput) -> PyResult<Bound<'py, PyDict>> {
    let n = close.len();
    // Absent groups padded with empty columns so names and columns align.
    let pad_f = |v: Vec<Vec<f64>>, k: usize| if v.is_empty() { vec![Vec::new(); k] } else { v };
    let pad_i = |v: Vec<Vec<i8>>, k: usize| if v.is_empty() { vec![Vec::new(); k] } else { v };
    let families = Family::ALL.len();
    let mut cols: Vec<Col> = Vec::with_capacity(179);
    cols.push(Col::I64((0..n as i64).collect()));
    cols.push(Col::F(close));
    cols.push(Col::F(out.r));
    cols.extend(pad_f(out.ma, MA_COUNT).into_iter().map(Col::F));
    cols.extend(pad_i(out.sig, MA_COUNT).into_iter().map(Col::I8));
    cols.extend(pad_f(out.eq, MA_COUNT).into_iter().map(Col::F));
    cols.extend(pad_f(out.l1, families).into_iter().map(Col::F));
    cols.extend(pad_f(out.eq2, families).into_iter().map(Col::F));
    cols.push(Col::F(out.avg));
    cols.push(Col::I8(out.dir));
    let d = PyDict::new(py);
    for (name, col) in atc_columns().into_iter().zip(cols) {
        match col {
            Col::F(v) if !v.is_empty() => d.set_item(name, v.into_pyarray(py))?,
            Col::I8(v) if !v.is_empty() => d.set_item(name, v.into_pyarray(py))?,
            Col::I64(v) if !v.is_empty() => d.set_item(name, v.into_pyarray(py))?,
            _ => {}
        }
    }
    Ok(d)
}

/// One series through the full engine (`Detail::Full`): the 179 golden
/// columns. The wrapper `atc_bt.compute` documents it.
#[pyfunction]
#[pyo3(signature = (close, **params))]
fn compute_full<'py>(
    py: Python<'py>,
    close: PyReadonlyArray1<'py, f64>,
    params: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let params = params_from(params)?;
    // A copy, so no Python thread can write the input while the GIL is
    // released (one f64 per bar: nothing next to the 162 output vectors).
    let close: Vec<f64> = close.as_array().to_vec();
    let (close, out) = py.detach(|| {
        guarded(|| {
            let out = compute(&close, &params, Detail::Full);
            (close, out)
        })
    })?;
    out_dict(py, close, out.map_err(engine_err)?)
}

/// Many series. `detail`: `"direction"` / `"signal"` run the batched
/// engine ([`compute_batch`] with [`BatchDetail::Direction`] /
/// [`BatchDetail::Signal`]), `"full"` the single-series engine on every
/// series in parallel (179 columns). The first refused series fails the
/// call, naming its position.
#[pyfunction]
#[pyo3(signature = (closes, detail, **params))]
fn compute_many_raw<'py>(
    py: Python<'py>,
    closes: Vec<PyReadonlyArray1<'py, f64>>,
    detail: &str,
    params: Option<&Bound<'py, PyDict>>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let batch = match detail {
        "direction" => Some(BatchDetail::Direction),
        "signal" => Some(BatchDetail::Signal),
        "full" => None,
        other => {
            return Err(PyValueError::new_err(format!(
                "invalid detail {other:?}: expected \"direction\", \"signal\" or \"full\""
            )))
        }
    };
    let params = params_from(params)?;
    let owned: Vec<Vec<f64>> = closes.iter().map(|c| c.as_array().to_vec()).collect();
    drop(closes);
    let results: Vec<Result<AtcOutput, EngineError>> = py
        .detach(|| {
            guarded(|| {
                if let Some(batch) = batch {
                    let refs: Vec<&[f64]> = owned.iter().map(Vec::as_slice).collect();
                    compute_batch(&refs, &params, batch)
                } else {
                    Ok(owned
                        .par_iter()
                        .map(|c| compute(c, &params, Detail::Full))
                        .collect())
                }
            })
        })?
        .map_err(engine_err)?;
    let mut dicts = Vec::with_capacity(results.len());
    for (i, (close, out)) in owned.into_iter().zip(results).enumerate() {
        let out = out.map_err(|e| match engine_err(e) {
            err if err.is_instance_of::<DataError>(py) => {
                DataError::new_err(format!("series {i}: {}", err.value(py)))
            }
            err => err,
        })?;
        dicts.push(out_dict(py, close, out)?);
    }
    Ok(dicts)
}

/// The resolved parameters as a dict (spec names, spec units): defaults
/// filled in, validated. `atc_bt.params()` documents it.
#[pyfunction]
#[pyo3(signature = (**params))]
fn resolve_params<'py>(
    py: Python<'py>,
    params: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let p = params_from(params)?;
    let value = serde_json::to_value(&p)
        .map_err(|e| PyRuntimeError::new_err(format!("internal error in atc-bt: {e}")))?;
    let d = PyDict::new(py);
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            match v {
                serde_json::Value::String(s) => d.set_item(k, s)?,
                serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => {
                    d.set_item(k, n.as_i64().unwrap_or_default())?
                }
                serde_json::Value::Number(n) => d.set_item(k, n.as_f64().unwrap_or(f64::NAN))?,
                other => d.set_item(k, other.to_string())?,
            }
        }
    }
    Ok(d)
}

// ---------------------------------------------------------------------
// Jobs: run, sweep, report (the library's job layer, never the CLI).
// ---------------------------------------------------------------------

/// A job's error as the command prints it (the error, then each cause on
/// a `caused by:` line), as `DataError` when the data stopped it, else
/// `ValueError`.
fn job_err(e: JobError) -> PyErr {
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        msg.push_str(&format!("\n  caused by: {c}"));
        cause = c.source();
    }
    match e {
        JobError::Data(_) => DataError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// A [`Progress`] that keeps the job's messages (warnings, data notes,
/// cache lines) for the Python side and shows nothing while it runs.
#[derive(Default)]
struct Collect(std::sync::Mutex<Vec<String>>);

impl Progress for Collect {
    fn message(&self, line: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push(line.to_string());
        }
    }
}

impl Collect {
    fn lines(self) -> Vec<String> {
        self.0.into_inner().unwrap_or_default()
    }
}

/// The keyword arguments of a job, taken one by one; what is left at the
/// end is an unknown keyword.
struct Opts<'py> {
    what: &'static str,
    map: std::collections::BTreeMap<String, Bound<'py, PyAny>>,
}

impl<'py> Opts<'py> {
    fn new(what: &'static str, kwargs: Option<&Bound<'py, PyDict>>) -> PyResult<Self> {
        let mut map = std::collections::BTreeMap::new();
        if let Some(kw) = kwargs {
            for (k, v) in kw.iter() {
                let k: String = k.extract()?;
                if !v.is_none() {
                    map.insert(k, v);
                }
            }
        }
        Ok(Opts { what, map })
    }

    fn bad(&self, key: &str, want: &str, v: &Bound<'py, PyAny>) -> PyErr {
        let shown = v.repr().map(|r| r.to_string()).unwrap_or_default();
        PyValueError::new_err(format!(
            "{}: keyword {key} = {shown}: expected {want}",
            self.what
        ))
    }

    fn string(&mut self, key: &str) -> PyResult<Option<String>> {
        match self.map.remove(key) {
            None => Ok(None),
            Some(v) if v.is_instance_of::<PyString>() => Ok(Some(v.extract()?)),
            Some(v) => Err(self.bad(key, "a string", &v)),
        }
    }

    fn path(&mut self, key: &str) -> PyResult<Option<PathBuf>> {
        Ok(self.string(key)?.map(PathBuf::from))
    }

    fn flag(&mut self, key: &str) -> PyResult<Option<bool>> {
        match self.map.remove(key) {
            None => Ok(None),
            Some(v) if v.is_instance_of::<PyBool>() => Ok(Some(v.extract()?)),
            Some(v) => Err(self.bad(key, "True or False", &v)),
        }
    }

    fn real(&mut self, key: &str) -> PyResult<Option<f64>> {
        match self.map.remove(key) {
            None => Ok(None),
            Some(v) if v.is_instance_of::<PyBool>() || v.is_instance_of::<PyString>() => {
                Err(self.bad(key, "a number", &v))
            }
            Some(v) => match v.extract::<f64>() {
                Ok(x) => Ok(Some(x)),
                Err(_) => Err(self.bad(key, "a number", &v)),
            },
        }
    }

    fn count(&mut self, key: &str) -> PyResult<Option<u64>> {
        match self.map.remove(key) {
            None => Ok(None),
            Some(v) if v.is_instance_of::<PyBool>() || !v.is_instance_of::<PyInt>() => {
                Err(self.bad(key, "a whole number >= 0", &v))
            }
            Some(v) => match v.extract::<u64>() {
                Ok(x) => Ok(Some(x)),
                Err(_) => Err(self.bad(key, "a whole number >= 0", &v)),
            },
        }
    }

    /// Every keyword was used, or a `ValueError` naming the first other.
    fn done(self, known: &[&str]) -> PyResult<()> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(PyValueError::new_err(format!(
                "{}: unknown keyword {k} (known: {})",
                self.what,
                known.join(", ")
            ))),
        }
    }
}

/// The keywords of `run` other than the ATC parameters.
const RUN_KEYS: &[&str] = &[
    "signals",
    "store",
    "strict",
    "symbols",
    "start",
    "end",
    "warmup_bars",
    "strategy",
    "mode",
    "fee_bps",
    "slippage_bps",
    "capital",
    "stop_loss",
    "take_profit",
    "trailing_stop",
    "allocation",
    "max_positions",
    "rebalance",
    "periods_per_year",
    "risk_free",
    "cache",
    "no_cache",
    "cache_dir",
    "cache_mem",
    "cache_size",
    "cache_ttl",
    "report",
    "no_report",
    "symbols_in_report",
    "log_scale",
    "linear_scale",
    "out",
    "outputs",
    "force",
    "threads",
    "quiet",
];

/// The keywords of `sweep` other than the grid.
const SWEEP_KEYS: &[&str] = &[
    "store",
    "strict",
    "symbols",
    "start",
    "end",
    "warmup_bars",
    "grid_file",
    "strategy",
    "mode",
    "fee_bps",
    "slippage_bps",
    "capital",
    "stop_loss",
    "take_profit",
    "trailing_stop",
    "periods_per_year",
    "risk_free",
    "allocation",
    "rebalance",
    "split",
    "train_frac",
    "walk_forward",
    "rank_by",
    "max_combos",
    "top",
    "cache",
    "no_cache",
    "cache_dir",
    "cache_mem",
    "cache_size",
    "cache_ttl",
    "report",
    "no_report",
    "symbols_in_report",
    "log_scale",
    "linear_scale",
    "out",
    "force",
    "threads",
    "quiet",
];

/// `symbols`, `start`, `end` and the source flags as [`DataSettings`],
/// through the library's own parsers ([`DataSettings::select`]).
fn data_from(data: &str, o: &mut Opts<'_>) -> PyResult<DataSettings> {
    let symbols = o.string("symbols")?.unwrap_or_else(|| "all".into());
    let start = o.string("start")?;
    let end = o.string("end")?;
    let base = DataSettings {
        data: PathBuf::from(data),
        store: o.path("store")?,
        strict: o.flag("strict")?.unwrap_or(false),
        warmup_bars: o.count("warmup_bars")?.map(|n| n as usize),
        ..DataSettings::default()
    };
    base.select(&symbols, start.as_deref(), end.as_deref())
        .map_err(|e| job_err(e.into()))
}

/// The execution and metric keywords (and, with `atc`, the ATC
/// parameters) as [`StrategyOverrides`].
fn overrides_from(o: &mut Opts<'_>, atc: bool) -> PyResult<StrategyOverrides> {
    let mut s = StrategyOverrides::default();
    if atc {
        for spec in registry::PARAMS {
            let key = if spec.name == "lambda" {
                "lambda_"
            } else {
                spec.name
            };
            let v = match (o.map.remove(key), o.map.remove(spec.name)) {
                (Some(v), None) | (None, Some(v)) => v,
                (None, None) => continue,
                (Some(_), Some(_)) => {
                    return Err(PyValueError::new_err(format!(
                        "{}: give lambda_ or lambda, not both",
                        o.what
                    )))
                }
            };
            if v.is_instance_of::<PyBool>() {
                return Err(o.bad(key, spec.kind_text(), &v));
            }
            let text = v.str()?.to_string();
            s.set_atc(spec.name, &text)
                .map_err(|e| PyValueError::new_err(format!("{}: keyword {key}: {e}", o.what)))?;
        }
    }
    s.mode = match o.string("mode")? {
        None => None,
        Some(m) => Some(m.parse::<Mode>().map_err(|e| {
            PyValueError::new_err(format!("{}: keyword mode = {m:?}: {e}", o.what))
        })?),
    };
    s.fee_bps = o.real("fee_bps")?;
    s.slippage_bps = o.real("slippage_bps")?;
    s.capital = o.real("capital")?;
    s.stop_loss = o.real("stop_loss")?;
    s.take_profit = o.real("take_profit")?;
    s.trailing_stop = o.real("trailing_stop")?;
    s.periods_per_year = o.real("periods_per_year")?;
    s.risk_free = o.real("risk_free")?;
    Ok(s)
}

/// `run`'s shared-cash keywords (`allocation`, `max_positions`,
/// `rebalance`: the flags `--allocation`, `--max-positions`,
/// `--rebalance`), parsed as the command line parses them; the job layer
/// validates them (`max_positions` ≥ 1, shared cash only).
fn allocation_from(o: &mut Opts<'_>, s: &mut StrategyOverrides) -> PyResult<()> {
    fn choice<T: std::str::FromStr>(o: &mut Opts<'_>, key: &str) -> PyResult<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        match o.string(key)? {
            None => Ok(None),
            Some(t) => t.parse::<T>().map(Some).map_err(|e| {
                PyValueError::new_err(format!("{}: keyword {key} = {t:?}: {e}", o.what))
            }),
        }
    }
    s.allocation = choice::<Allocation>(o, "allocation")?;
    s.rebalance = choice::<Rebalance>(o, "rebalance")?;
    s.max_positions = o.count("max_positions")?.map(|n| n as usize);
    Ok(())
}

/// The cache keywords (`cache=False` is `--no-cache`; sizes in bytes, the
/// time to live in seconds).
fn cache_from(o: &mut Opts<'_>) -> PyResult<CacheSettings> {
    let d = CacheSettings::default();
    let enabled = o.flag("cache")?.unwrap_or(true) && !o.flag("no_cache")?.unwrap_or(false);
    let ttl = match o.real("cache_ttl")? {
        None => d.ttl,
        Some(s) if s.is_finite() && s >= 0.0 => std::time::Duration::from_secs_f64(s),
        Some(s) => {
            return Err(PyValueError::new_err(format!(
                "{}: keyword cache_ttl = {s}: expected seconds >= 0",
                o.what
            )))
        }
    };
    Ok(CacheSettings {
        dir: o.path("cache_dir")?,
        mem_bytes: o.count("cache_mem")?.unwrap_or(d.mem_bytes),
        disk_bytes: o.count("cache_size")?.unwrap_or(d.disk_bytes),
        ttl,
        enabled,
    })
}

/// The report keywords (`report=False` is `--no-report`).
fn report_from(o: &mut Opts<'_>) -> PyResult<ReportSettings> {
    let render = o.flag("report")?.unwrap_or(true) && !o.flag("no_report")?.unwrap_or(false);
    Ok(ReportSettings {
        render,
        options: report_options(o)?,
    })
}

/// `symbols_in_report` (a count or `"all"`), `log_scale`, `linear_scale`
/// (and, for `report`, `format`).
fn report_options(o: &mut Opts<'_>) -> PyResult<ReportOptions> {
    let symbols_in_report = match o.map.remove("symbols_in_report") {
        None => SymbolsInReport::Top(5),
        Some(v) if v.is_instance_of::<PyString>() => {
            let t: String = v.extract()?;
            if t.eq_ignore_ascii_case("all") {
                SymbolsInReport::All
            } else {
                return Err(o.bad("symbols_in_report", "a whole number or \"all\"", &v));
            }
        }
        Some(v) if v.is_instance_of::<PyInt>() && !v.is_instance_of::<PyBool>() => {
            match v.extract::<usize>() {
                Ok(n) => SymbolsInReport::Top(n),
                Err(_) => return Err(o.bad("symbols_in_report", "a whole number or \"all\"", &v)),
            }
        }
        Some(v) => return Err(o.bad("symbols_in_report", "a whole number or \"all\"", &v)),
    };
    let log = o.flag("log_scale")?.unwrap_or(false);
    let linear = o.flag("linear_scale")?.unwrap_or(false);
    if log && linear {
        return Err(PyValueError::new_err(format!(
            "{}: log_scale and linear_scale cannot both be set",
            o.what
        )));
    }
    let scale = match (log, linear) {
        (true, _) => ScaleChoice::Log,
        (_, true) => ScaleChoice::Linear,
        _ => ScaleChoice::Auto,
    };
    let format = match o.string("format")?.as_deref() {
        None | Some("both") => Format::Both,
        Some("html") => Format::Html,
        Some("png") => Format::Png,
        Some(other) => {
            return Err(PyValueError::new_err(format!(
                "{}: keyword format = {other:?}: expected \"html\", \"png\" or \"both\"",
                o.what
            )))
        }
    };
    Ok(ReportOptions {
        format,
        symbols_in_report,
        scale,
    })
}

/// `atc-bt run` as a library call: returns the run directory and the
/// messages the command would have printed to stderr. `atc_bt.run`
/// documents the keywords.
#[pyfunction]
#[pyo3(signature = (data, **kwargs))]
fn run_job(
    py: Python<'_>,
    data: &str,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<(String, Vec<String>)> {
    let mut o = Opts::new("atc_bt.run", kwargs)?;
    let data = data_from(data, &mut o)?;
    let strategy_file = o.path("strategy")?;
    let mut overrides = overrides_from(&mut o, true)?;
    allocation_from(&mut o, &mut overrides)?;
    let outputs = match o.string("outputs")? {
        None => Outputs::default(),
        Some(t) => Outputs::parse(&t)
            .map_err(|e| PyValueError::new_err(format!("atc_bt.run: keyword outputs: {e}")))?,
    };
    let settings = RunSettings {
        data,
        strategy: guarded(|| resolve_strategy(strategy_file.as_deref(), &overrides))?
            .map_err(job_err)?,
        strategy_file,
        cache: cache_from(&mut o)?,
        report: report_from(&mut o)?,
        out: o.path("out")?,
        outputs,
        force: o.flag("force")?.unwrap_or(false),
        threads: o.count("threads")?.unwrap_or(0) as usize,
        shard: None,
        show_ingest: false,
        signals: o.path("signals")?,
    };
    let _quiet = o.flag("quiet")?;
    let mut known: Vec<&str> = RUN_KEYS.to_vec();
    known.extend(registry::names().map(|n| if n == "lambda" { "lambda_" } else { n }));
    o.done(&known)?;
    let progress = Collect::default();
    let out = py.detach(|| {
        guarded(|| -> Result<PathBuf, JobError> {
            match job::run::run(&settings, &progress)? {
                RunOutcome::Done(done) => {
                    done.report?;
                    Ok(done.out)
                }
                RunOutcome::Part(p) => Ok(p.dir),
            }
        })
    })?;
    let out = out.map_err(job_err)?;
    Ok((out.display().to_string(), progress.lines()))
}

/// The keywords of `scan` other than the ATC parameters.
const SCAN_KEYS: &[&str] = &[
    "store",
    "strict",
    "symbols",
    "start",
    "end",
    "warmup_bars",
    "strategy",
    "long",
    "short",
    "min_strength",
    "cache",
    "no_cache",
    "cache_dir",
    "cache_mem",
    "cache_size",
    "cache_ttl",
    "threads",
];

/// `atc-bt scan` as a library call: each selected symbol's state at its
/// last bar, by rank, as a list of dicts (`symbol`, `ts` in µs UTC, `avg`,
/// `dir`, `bars_since_change`, `rank`), and the messages. `atc_bt.scan`
/// documents the keywords.
#[pyfunction]
#[pyo3(signature = (data, **kwargs))]
fn scan_job<'py>(
    py: Python<'py>,
    data: &str,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<(Vec<Bound<'py, PyDict>>, Vec<String>)> {
    let mut o = Opts::new("atc_bt.scan", kwargs)?;
    let data = data_from(data, &mut o)?;
    let strategy_file = o.path("strategy")?;
    let overrides = overrides_from(&mut o, true)?;
    let min_strength = match o.map.remove("min_strength") {
        None => None,
        Some(v) => match v.extract::<f64>() {
            Ok(x) if (0.0..=1.0).contains(&x) => Some(x),
            _ => return Err(o.bad("min_strength", "a number from 0 to 1", &v)),
        },
    };
    let settings = ScanSettings {
        data,
        strategy: guarded(|| resolve_strategy(strategy_file.as_deref(), &overrides))?
            .map_err(job_err)?,
        cache: cache_from(&mut o)?,
        threads: o.count("threads")?.unwrap_or(0) as usize,
        filter: ScanFilter {
            long: o.flag("long")?.unwrap_or(false),
            short: o.flag("short")?.unwrap_or(false),
            min_strength,
        },
        show_ingest: false,
    };
    let mut known: Vec<&str> = SCAN_KEYS.to_vec();
    known.extend(registry::names().map(|n| if n == "lambda" { "lambda_" } else { n }));
    o.done(&known)?;
    let progress = Collect::default();
    let done = py.detach(|| guarded(|| job::scan::scan(&settings, &progress)))?;
    let done = done.map_err(job_err)?;
    let mut rows = Vec::with_capacity(done.rows.len());
    for r in &done.rows {
        let d = PyDict::new(py);
        d.set_item("symbol", &r.symbol)?;
        d.set_item("ts", r.ts)?;
        d.set_item("avg", r.avg)?;
        d.set_item("dir", r.dir)?;
        d.set_item("bars_since_change", r.bars_since_change)?;
        d.set_item("rank", r.rank)?;
        rows.push(d);
    }
    Ok((rows, progress.lines()))
}

/// `atc-bt sweep` as a library call. `grid`: axis name -> values as the
/// axis flags read them (`"0.01,0.02"` or `"0.01:0.05:0.01"`). Returns the
/// sweep directory, the ranking (combination indices best first) and the
/// messages. `atc_bt.sweep` documents the keywords.
#[pyfunction]
#[pyo3(signature = (data, grid, **kwargs))]
fn sweep_job(
    py: Python<'_>,
    data: &str,
    grid: Vec<(String, String)>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<(String, Vec<usize>, Vec<String>)> {
    let mut o = Opts::new("atc_bt.sweep", kwargs)?;
    let data = data_from(data, &mut o)?;
    let grid_file = o.path("grid_file")?;
    let GridFile {
        grid: mut g,
        strategy: grid_strategy,
    } = match &grid_file {
        Some(p) => guarded(|| GridFile::load(p))?.map_err(|e| job_err(e.into()))?,
        None => GridFile::default(),
    };
    for (axis, spec) in &grid {
        let axis = if axis == "lambda_" {
            "lambda"
        } else {
            axis.as_str()
        };
        g.set_axis(axis, spec)
            .map_err(|e| PyValueError::new_err(format!("atc_bt.sweep: grid axis {axis}: {e}")))?;
    }
    if g.axes.is_empty() {
        return Err(PyValueError::new_err(
            "atc_bt.sweep: the grid is empty: give grid={\"lambda\": [0.01, 0.02], ...} or grid_file=",
        ));
    }
    let strategy_file = o.path("strategy")?.or(grid_strategy);
    let mut overrides = overrides_from(&mut o, false)?;
    // `max_positions` is a grid axis of a sweep (`atc_bt.sweep` puts the
    // keyword into the grid), so only allocation and rebalance are read.
    allocation_from(&mut o, &mut overrides)?;
    let base =
        guarded(|| resolve_strategy(strategy_file.as_deref(), &overrides))?.map_err(job_err)?;
    let split_at = o.string("split")?;
    let train_frac = o.real("train_frac")?;
    let split = match (split_at, train_frac) {
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err(
                "atc_bt.sweep: give split or train_frac, not both",
            ))
        }
        (Some(s), None) => Split::At(
            parse_date_bound(&s, false)
                .map_err(|e| PyValueError::new_err(format!("atc_bt.sweep: keyword split: {e}")))?,
        ),
        (None, Some(f)) => Split::Fraction(f),
        (None, None) => Split::None,
    };
    let walk_forward = match o.string("walk_forward")? {
        None => None,
        Some(spec) => Some(spec.parse::<WalkForwardSpec>().map_err(|e| {
            PyValueError::new_err(format!(
                "atc_bt.sweep: keyword walk_forward = {spec:?}: {e}"
            ))
        })?),
    };
    let d = SweepSettings::default();
    let settings = SweepSettings {
        data,
        grid: g,
        base,
        split,
        walk_forward,
        rank_by: o.string("rank_by")?.unwrap_or(d.rank_by),
        max_combos: o.count("max_combos")?.map_or(d.max_combos, |n| n as usize),
        cache: cache_from(&mut o)?,
        report: report_from(&mut o)?,
        out: o.path("out")?,
        force: o.flag("force")?.unwrap_or(false),
        threads: o.count("threads")?.unwrap_or(0) as usize,
        shard: None,
        show_ingest: false,
    };
    let _ = (o.count("top")?, o.flag("quiet")?);
    o.done(SWEEP_KEYS)?;
    job::sweep::validate(&settings).map_err(job_err)?;
    let progress = Collect::default();
    let done = py.detach(|| {
        guarded(|| -> Result<(PathBuf, Vec<usize>), JobError> {
            match job::sweep::sweep(&settings, &progress)? {
                SweepOutcome::Done(done) => {
                    done.report?;
                    Ok((done.out, done.order))
                }
                SweepOutcome::Part(p) => Ok((p.dir, Vec::new())),
            }
        })
    })?;
    let (out, order) = done.map_err(job_err)?;
    Ok((out.display().to_string(), order, progress.lines()))
}

/// `atc-bt report DIR` as a library call: renders `report.html` and the
/// charts of a run or sweep directory from its files alone. Returns the
/// path of `report.html` (`None` with `format="png"`).
#[pyfunction]
#[pyo3(signature = (out_dir, **kwargs))]
fn report_job(
    py: Python<'_>,
    out_dir: &str,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Option<String>> {
    let mut o = Opts::new("atc_bt.report", kwargs)?;
    let opts = report_options(&mut o)?;
    o.done(&["format", "symbols_in_report", "log_scale", "linear_scale"])?;
    let dir = PathBuf::from(out_dir);
    let summary = py
        .detach(|| guarded(|| render_report(&dir, &opts)))?
        .map_err(|e| {
            job_err(JobError::context(
                format!("cannot render the report of {}", dir.display()),
                e,
            ))
        })?;
    Ok(summary.html.map(|h| h.display().to_string()))
}

/// The module `atc_bt._atc_bt`.
#[pymodule]
fn _atc_bt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(compute_full, m)?)?;
    m.add_function(wrap_pyfunction!(compute_many_raw, m)?)?;
    m.add_function(wrap_pyfunction!(resolve_params, m)?)?;
    m.add_function(wrap_pyfunction!(run_job, m)?)?;
    m.add_function(wrap_pyfunction!(sweep_job, m)?)?;
    m.add_function(wrap_pyfunction!(scan_job, m)?)?;
    m.add_function(wrap_pyfunction!(report_job, m)?)?;
    m.add("DataError", m.py().get_type::<DataError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
