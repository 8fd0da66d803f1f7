"""Drop-in for the original Python ATC module's ``compute_atc_signals``.

Switch with one import line::

    # from modules.adaptive_trend.core... import compute_atc_signals
    from atc_bt.compat import compute_atc_signals

Same signature, same 13 keys, pandas in and out; the values are atc-bt's
Pine-exact ones (``spec/ATC.md``), which differ from the original module on
purpose where that module departs from Pine (see the function's docstring).
"""

from __future__ import annotations

import re

import numpy as np

from . import DataError, _atc_bt, _series

__all__ = ["compute_atc_signals", "KEYS"]

_FAMILIES = ("EMA", "HMA", "WMA", "DEMA", "LSMA", "KAMA")

#: The 13 keys of the result, in the original module's order.
KEYS: tuple[str, ...] = tuple(
    k for f in _FAMILIES for k in (f"{f}_Signal", f"{f}_S")
) + ("Average_Signal",)


# atc-bt's parameter names -> this signature's; applied outside quoted
# values, so an error names what the caller wrote.
_RENAMES = {"lambda_": "La", "lambda": "La", "decay": "De", "hma_len": "hull_len"}
_NAME = re.compile(r"\b(lambda_|lambda|decay|hma_len)\b")
_QUOTED = re.compile(r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


def _compat_names(msg: str) -> str:
    """An atc-bt error message with this signature's keyword names."""
    parts = _QUOTED.split(msg)
    for i in range(0, len(parts), 2):
        parts[i] = _NAME.sub(lambda m: _RENAMES[m.group(1)], parts[i])
    return "".join(parts)


def compute_atc_signals(
    prices,
    src=None,
    *,
    ema_len: int = 28,
    hull_len: int = 28,
    wma_len: int = 28,
    dema_len: int = 28,
    lsma_len: int = 28,
    kama_len: int = 28,
    ema_w: float = 1.0,
    hma_w: float = 1.0,
    wma_w: float = 1.0,
    dema_w: float = 1.0,
    lsma_w: float = 1.0,
    kama_w: float = 1.0,
    robustness: str = "Medium",
    La: float = 0.02,
    De: float = 0.03,
    cutout: int = 0,
    long_threshold: float = 0.1,
    short_threshold: float = -0.1,
):
    """ATC family signals and equities of one price series, as pandas Series.

    The signature of the original module's entry point; the numbers are
    atc-bt's engine (``atc_bt.compute``), Pine-exact per ``spec/ATC.md``.

    Parameters
    ----------
    prices : pandas.Series of float, length n
        Close prices, oldest first, each finite and > 0 (spec sec. 1). Any
        1-D array-like of real numbers is accepted (list, tuple, ndarray;
        the result then has a RangeIndex), with the rules of
        ``atc_bt.compute``'s ``close`` (errors name ``prices``).
    src : pandas.Series, optional
        The original's "calculation source". Pine computes every moving
        average and cross from ``close`` (spec sec. 1), so atc-bt has one
        input series: ``src`` must be ``None`` or equal to ``prices``
        (else ``ValueError``).
    ema_len, hull_len, wma_len, dema_len, lsma_len, kama_len : int
        Base lengths in bars (default 28 each; atc-bt's ``hma_len`` is
        ``hull_len`` here). Every derived length must be >= 2 (spec sec. 3).
    ema_w, hma_w, wma_w, dema_w, lsma_w, kama_w : float
        Layer-2 starting equities (Pine "Weight"), default 1.0.
    robustness : {"Narrow", "Medium", "Wide"}
        Spread of the nine lengths (spec sec. 3), any letter case.
    La, De : float
        Growth factor and decay **in Pine input units**, as in the original
        entry point: the engine uses ``La / 1000`` and ``De / 100`` (spec
        sec. 2). Defaults 0.02 and 0.03.
    cutout : int
        Bars before the equities start (na before), default 0.
    long_threshold, short_threshold : float
        atc-bt's direction thresholds (spec sec. 12). They do not change any
        of the 13 returned series (see difference 2 below); they are
        validated and accepted so existing calls keep working.

    Returns
    -------
    dict[str, pandas.Series]
        13 float64 Series on ``prices``' index, named by their key:
        ``<F>_Signal`` (layer-1 family signal, multiples of 0.01 in [-1, 1];
        atc-bt column ``L1.<F>``) and ``<F>_S`` (layer-2 family equity;
        ``eq2.<F>``) for F in EMA, HMA, WMA, DEMA, LSMA, KAMA, and
        ``Average_Signal`` (``avg``, in [-1, 1]). na (NaN) before ``cutout``.

    Raises
    ------
    TypeError
        ``prices`` (or ``src``) is not a 1-D array-like of real numbers
        (None, a string, a DataFrame, bool/complex/text dtypes).
    ValueError
        A parameter is out of range (named as in this signature: ``La``,
        ``De``, ``hull_len``), or ``src`` differs from ``prices``.
    atc_bt.DataError
        ``prices`` is empty, not 1-D, masked on a bar, or holds a price
        that is not finite and > 0 (the message names the bar).

    Differences from the original module (deliberate: Pine wins)
    ----------------------------------------------------------
    1. **HMA family.** The original computes a true Hull moving average
       (``pandas_ta.hma``). The Pine script's "HMA" branch calls
       ``ta.sma``, so atc-bt's ``HMA_Signal``/``HMA_S`` come from simple
       moving averages (spec sec. 5, sec. 16 item 1). Expect different HMA
       series and, through them, a different ``Average_Signal``.
    2. **The final cut.** The original cuts each family signal at the
       ``long_threshold``/``short_threshold`` (±0.1 by default) before
       averaging. Pine's ``Cut`` is fixed at ±0.49 (spec sec. 10), so here a
       family counts in ``Average_Signal`` only from ±0.50 on, and the
       thresholds act only on the direction (spec sec. 12), which this
       function does not return.
    3. **Layer-2 return after a zero signal.** The original resets the
       equity's return term ``a`` to 0 when the previous signal is 0 (or
       na). Pine's ``var a`` keeps its previous value (spec sec. 8, sec. 16
       item 2). Layer 1 is unaffected (``a`` is 0 until the first cross);
       ``<F>_S`` differs after a bar where ``<F>_Signal`` was exactly 0.0.

    The original also departs from Pine in warm-up details that atc-bt does
    not copy either (KAMA start, pandas_ta's LSMA and DEMA, round half to
    even in layer 1): ``spec/ATC.md`` sec. 16 lists them all.
    """
    import pandas as pd

    if isinstance(prices, pd.DataFrame):
        raise TypeError(
            "prices: expected one price series (a pandas Series or a 1-D array-like), "
            "got a DataFrame; pass one column, e.g. df['close']"
        )
    index = prices.index if isinstance(prices, pd.Series) else None
    close = _series(prices, "prices")
    if src is not None and src is not prices:
        s = _series(src, "src")
        if s.shape != close.shape or not np.array_equal(s, close, equal_nan=True):
            raise ValueError(
                "src differs from prices: atc-bt computes every moving average and cross "
                "from one close series, as Pine does (spec/ATC.md sec. 1); pass src=None"
            )
    try:
        out = _atc_bt.compute_full(
            close,
            ema_len=ema_len,
            hma_len=hull_len,
            wma_len=wma_len,
            dema_len=dema_len,
            lsma_len=lsma_len,
            kama_len=kama_len,
            ema_w=ema_w,
            hma_w=hma_w,
            wma_w=wma_w,
            dema_w=dema_w,
            lsma_w=lsma_w,
            kama_w=kama_w,
            robustness=robustness,
            lambda_=La,
            decay=De,
            cutout=cutout,
            long_threshold=long_threshold,
            short_threshold=short_threshold,
        )
    except DataError as e:
        raise DataError(f"prices: {e}") from None
    except ValueError as e:
        raise ValueError(_compat_names(str(e))) from None

    if index is None:
        index = pd.RangeIndex(len(out["avg"]))
    result = {}
    for f in _FAMILIES:
        result[f"{f}_Signal"] = pd.Series(out[f"L1.{f}"], index=index, name=f"{f}_Signal")
        result[f"{f}_S"] = pd.Series(out[f"eq2.{f}"], index=index, name=f"{f}_S")
    result["Average_Signal"] = pd.Series(out["avg"], index=index, name="Average_Signal")
    return result
