//! `atc_bt._atc_bt`: the compiled half of the Python package.
//!
//! Thin by design: it turns keyword parameters into [`AtcParams`], runs the
//! library's engine with the GIL released, and hands the engine's vectors
//! to NumPy without changing a bit. Everything a user sees (argument
//! normalisation, pandas, polars, docstrings) lives in the pure-Python
//! package `atc_bt`, which calls only the four functions below.
//!
//! Errors: a parameter the engine refuses is a `ValueError`, a series it
//! refuses is `atc_bt.DataError` (a `ValueError` subclass), both with the
//! engine's own message. A panic never crosses into Python: every call into
//! the library runs under [`atc_bt::boundary::catch`] and a panic becomes a
//! `RuntimeError` asking for a report.

use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};
use rayon::prelude::*;

use atc_bt::engine::{
    compute, compute_batch, AtcOutput, AtcParams, BatchDetail, Detail, EngineError, Family,
    MA_COUNT,
};
use atc_bt::export::atc_columns;

create_exception!(
    _atc_bt,
    DataError,
    PyValueError,
    "A close series atc-bt refuses (empty, or a close that is not finite and > 0); \
     the message names the bar and the value."
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
            let key: String = k.extract()?;
            let name = if key == "lambda_" {
                "lambda".to_string()
            } else {
                key.clone()
            };
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
                return Err(PyValueError::new_err(format!(
                    "invalid parameter {key} = {}: {}",
                    v.repr()?,
                    python_names(&e.to_string())
                )));
            }
            table.insert(name, value);
        }
    }
    let params: AtcParams =
        serde_json::from_value(serde_json::Value::Object(table)).map_err(|e| {
            PyValueError::new_err(format!(
                "invalid parameter: {}",
                python_names(&e.to_string())
            ))
        })?;
    params.validate().map_err(engine_err)?;
    Ok(params)
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

/// The module `atc_bt._atc_bt`.
#[pymodule]
fn _atc_bt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(compute_full, m)?)?;
    m.add_function(wrap_pyfunction!(compute_many_raw, m)?)?;
    m.add_function(wrap_pyfunction!(resolve_params, m)?)?;
    m.add("DataError", m.py().get_type::<DataError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
