"""atc-bt from Python: the Pine-exact Adaptive Trend Classification engine.

NumPy in, NumPy out; the numbers are the bits of the Rust library (the same
code as the ``atc-bt`` command, called directly, never as a subprocess).

Functions
---------
compute(close, **params)
    One close series -> dict of the 179 golden CSV columns.
compute_many(closes, **params)
    Many series (list of 1-D arrays or a 2-D array, one row per series) ->
    list of dicts, through the batched engine on all cores, GIL released.
params(**params)
    The resolved, validated parameter set (defaults filled in).

Parameters (keyword only, spec ``spec/ATC.md`` sec. 2; names are the CLI
flags with ``-`` written ``_``; ``lambda_`` because ``lambda`` is a Python
keyword): ``lambda_`` (Pine input units, engine uses lambda/1000, default
0.02), ``decay`` (percent per bar, engine uses decay/100, default 0.03),
``cutout`` (bars, 0), ``robustness`` ("narrow" | "medium" | "wide", any
case, "medium"), ``ema_len`` ... ``kama_len`` (bars, 28), ``long_threshold``
(0.1), ``short_threshold`` (-0.1), ``starting_equity`` (1.0), ``ema_w`` ...
``kama_w`` (layer-2 starting equities, 1.0).

Errors
------
TypeError
    A close series is not a 1-D array-like of real numbers (None, a
    string, bool/complex/text dtypes; the message names it and the dtype).
ValueError
    A parameter is unknown, of the wrong type or out of its range (the
    message names it and the valid range).
DataError
    (a ``ValueError`` subclass) a close series is refused: empty, not 1-D,
    a masked array with a masked bar, or a close that is not finite and
    > 0 (the message names the bar).
RuntimeError
    An internal error of atc-bt (a caught panic); please report it.

``atc_bt.compat.compute_atc_signals`` is a drop-in for the original Python
module's entry point (pandas in and out).

Backtests (the library's job layer, the code of ``atc-bt run`` / ``sweep``
/ ``report``, called directly with the GIL released; see :mod:`atc_bt.jobs`):

run(data, *, symbols="all", start=None, end=None, strategy=None, out=None, cache=True, **overrides)
    A backtest -> ``Run`` (``.metrics`` dict, ``.equity``, ``.trades``,
    ``.signals`` polars frames, ``.out_dir``).
sweep(data, grid={"lambda": [...], "decay": [...]}, ...)
    A parameter grid -> ``Sweep`` (``.results``, ``.ranking``).
report(out_dir)
    Renders ``report.html`` of a run or sweep directory.

``open_run(dir)`` / ``open_sweep(dir)`` read a result directory that
``atc-bt run`` / ``atc-bt sweep`` wrote (the same objects).
"""

from __future__ import annotations

import numbers
from typing import Iterable, Union

import numpy as np

from . import _atc_bt
from ._atc_bt import DataError, __version__
from .jobs import report, run, scan, sweep
from .results import Run, Sweep, open_run, open_sweep

__all__ = [
    "compute",
    "compute_many",
    "params",
    "DataError",
    "COLUMNS",
    "SIGNAL_COLUMNS",
    "DIRECTION_COLUMNS",
    "run",
    "scan",
    "sweep",
    "report",
    "Run",
    "Sweep",
    "open_run",
    "open_sweep",
    "__version__",
]

_FAMILIES = ("EMA", "HMA", "WMA", "DEMA", "LSMA", "KAMA")

#: The 179 keys of :func:`compute`, in the golden CSV's order (spec sec. 15).
COLUMNS: tuple[str, ...] = (
    ("bar", "close", "R")
    + tuple(f"{p}.{f}.{k}" for p in ("ma", "sig", "eq") for f in _FAMILIES for k in range(9))
    + tuple(f"{p}.{f}" for p in ("L1", "eq2") for f in _FAMILIES)
    + ("avg", "dir")
)

#: The 17 keys of :func:`compute_many` with ``detail="signal"``.
SIGNAL_COLUMNS: tuple[str, ...] = tuple(
    c for c in COLUMNS if not c.startswith(("ma.", "sig.", "eq."))
)

#: The 4 keys of :func:`compute_many` with ``detail="direction"``.
DIRECTION_COLUMNS: tuple[str, ...] = ("bar", "close", "avg", "dir")


def _series(close, where: str) -> np.ndarray:
    """``close`` as a contiguous 1-D float64 array.

    Accepted: a 1-D array-like of real numbers (list, tuple, ndarray or
    pandas Series of an integer or float dtype; an object array only if
    every element is a real number). Refused, naming ``where``:
    ``TypeError`` for None, a scalar, a string or bytes, and bool, complex,
    text, date or other non-numeric dtypes; ``DataError`` for a series that
    is not 1-D, or a masked array with a masked bar (the message names the
    first one: fill or drop masked bars first).
    """
    if close is None or isinstance(close, (str, bytes, bytearray)):
        raise TypeError(
            f"{where}: expected a 1-D array-like of real numbers (list, tuple, "
            f"numpy array, pandas Series), got {type(close).__name__}"
        )
    if isinstance(close, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(close)
        if mask.any():
            first = int(np.flatnonzero(mask.ravel())[0])
            raise DataError(
                f"{where}: bar {first} is masked: atc-bt needs a close on every bar; "
                f"drop the masked bars (.compressed()) or fill them (.filled(value)) first"
            )
        close = close.data
    try:
        a = np.asarray(close)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: cannot read the close series as a 1-D array: {e}") from None
    if a.ndim == 0:
        raise TypeError(
            f"{where}: expected a 1-D array-like of real numbers (list, tuple, "
            f"numpy array, pandas Series), got a scalar {type(close).__name__}"
        )
    if a.ndim != 1:
        raise DataError(
            f"{where}: expected a 1-D close series (one value per bar), got shape {a.shape}"
        )
    if a.dtype.kind == "O":
        for i, x in enumerate(a):
            if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
                raise TypeError(
                    f"{where}: dtype object holds {x!r} ({type(x).__name__}) at bar {i}: "
                    f"expected real numbers (int or float)"
                )
    elif a.dtype.kind not in "iuf":
        raise TypeError(
            f"{where}: dtype {a.dtype} is not a real number type: expected integers "
            f"or floats (bool, complex, text and dates are refused)"
        )
    return np.ascontiguousarray(a, dtype=np.float64)


def compute(close, **params) -> dict[str, np.ndarray]:
    """Run the full ATC on one close series (``atc-bt compute`` without a file).

    Parameters
    ----------
    close : 1-D array-like of real numbers, shape (n,)
        Close prices, oldest first, every value finite and > 0, n >= 1
        (spec sec. 1): a list, tuple, ndarray or pandas Series of an
        integer or float dtype (an object array only if every element is
        an int or float); it is copied once as float64. A numpy masked
        array is accepted only with no bar masked.
    **params
        ATC parameters, keyword only, spec names and units (see the module
        docstring); anything left out takes the spec default.

    Returns
    -------
    dict[str, numpy.ndarray]
        179 arrays of shape (n,), keyed and ordered as the golden CSV and
        ``atc-bt compute`` (spec sec. 15, :data:`COLUMNS`): ``bar`` (int64),
        ``close``, ``R``, ``ma.<F>.<k>`` (54), ``sig.<F>.<k>`` (54, int8
        -1/0/1), ``eq.<F>.<k>`` (54), ``L1.<F>``, ``eq2.<F>``, ``avg``, ``dir``
        (int8; 0 = no direction yet). Floats are float64, the engine's bits
        exactly; na is NaN.

    Raises
    ------
    TypeError
        ``close`` is not an array-like of real numbers: None, a scalar, a
        string or bytes, or a bool, complex, text, date or object dtype
        holding something else than numbers (the message names ``close``
        and the dtype).
    ValueError
        A parameter is unknown, mistyped or out of range.
    DataError
        The series is empty, not 1-D, a masked array with a masked bar, or
        holds a close that is not finite and > 0 (the message names the
        bar).
    """
    return _atc_bt.compute_full(_series(close, "close"), **params)


def compute_many(closes, *, detail: str = "signal", **params) -> list[dict[str, np.ndarray]]:
    """Run the ATC on many close series with one parameter set.

    Parameters
    ----------
    closes : list of array-like, or 2-D array of shape (symbols, bars)
        One close series per entry (lengths may differ in a list), each as
        for :func:`compute`.
    detail : {"signal", "direction", "full"}
        ``"signal"`` (default): the batched engine (SIMD lanes across
        series, batches in parallel on all cores; bit-identical to
        :func:`compute`), returning the 17 :data:`SIGNAL_COLUMNS` (``bar``,
        ``close``, ``R``, ``L1.*``, ``eq2.*``, ``avg``, ``dir``).
        ``"direction"``: the batched engine keeping only what trading needs
        (:data:`DIRECTION_COLUMNS`: ``bar``, ``close``, ``avg``, ``dir``;
        what ``atc-bt run`` and ``atc-bt bench`` compute), the fastest.
        ``"full"``: the single-series engine on every series in parallel,
        returning all 179 :data:`COLUMNS`.
    **params
        ATC parameters as for :func:`compute`.

    Returns
    -------
    list[dict[str, numpy.ndarray]]
        One dict per series, in input order, each array of that series'
        length; values identical to :func:`compute` on that series.

    The GIL is released while the engine runs.

    Raises
    ------
    TypeError
        A series is not an array-like of real numbers, as for
        :func:`compute` (the message names its position: ``series 2``).
    ValueError
        A parameter is refused, or ``detail`` is not one of the three.
    DataError
        A series is refused (the message names its position and bar).
    """
    if detail not in ("direction", "signal", "full"):
        raise ValueError(f"invalid detail {detail!r}: expected 'direction', 'signal' or 'full'")
    if isinstance(closes, np.ndarray):
        if closes.ndim != 2:
            raise DataError(
                f"closes: expected a 2-D array (symbols, bars) or a list of 1-D series, got shape {closes.shape}"
            )
        series = [_series(row, f"series {i}") for i, row in enumerate(closes)]
    else:
        if isinstance(closes, (str, bytes)) or not isinstance(closes, Iterable):
            raise TypeError(
                f"closes: expected a list of 1-D close series or a 2-D array, got {type(closes).__name__}"
            )
        series = [_series(c, f"series {i}") for i, c in enumerate(closes)]
    return _atc_bt.compute_many_raw(series, detail, **params)


def params(**params) -> dict[str, Union[float, int, str]]:
    """The full parameter set after defaults and validation.

    Keys are the spec names (``lambda``, not ``lambda_``), values in spec
    units; raises ``ValueError`` exactly where :func:`compute` would.
    """
    return _atc_bt.resolve_params(**params)
