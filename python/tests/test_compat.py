"""atc_bt.compat.compute_atc_signals: the original module's signature,
13 keys on the input's index, atc-bt's Pine-exact values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import atc_bt
from atc_bt.compat import KEYS, compute_atc_signals

FAMILIES = ("EMA", "HMA", "WMA", "DEMA", "LSMA", "KAMA")


def test_keys_index_and_names(golden):
    expected, _ = golden["aapl_wiki_default"]
    index = pd.bdate_range("2010-08-02", periods=len(expected["close"]), name="date")
    prices = pd.Series(expected["close"], index=index, name="close")
    out = compute_atc_signals(prices)
    assert tuple(out) == KEYS
    assert list(out) == [k for f in FAMILIES for k in (f"{f}_Signal", f"{f}_S")] + ["Average_Signal"]
    for key, s in out.items():
        assert isinstance(s, pd.Series) and s.name == key and s.dtype == np.float64
        assert s.index.equals(index)


@pytest.mark.parametrize("case", ["aapl_wiki_default", "msft_wiki_narrow_cutout", "ibm_wiki_wide_lengths"])
def test_golden_case_values(golden, case):
    expected, p = golden[case]
    prices = pd.Series(expected["close"], index=pd.RangeIndex(100, 100 + len(expected["close"])))
    out = compute_atc_signals(
        prices,
        ema_len=p["ema_len"], hull_len=p["hma_len"], wma_len=p["wma_len"],
        dema_len=p["dema_len"], lsma_len=p["lsma_len"], kama_len=p["kama_len"],
        ema_w=p["ema_w"], hma_w=p["hma_w"], wma_w=p["wma_w"],
        dema_w=p["dema_w"], lsma_w=p["lsma_w"], kama_w=p["kama_w"],
        robustness=p["robustness"], La=p["lambda_"], De=p["decay"], cutout=p["cutout"],
        long_threshold=p["long_threshold"], short_threshold=p["short_threshold"],
    )
    for f in FAMILIES:
        np.testing.assert_array_equal(out[f"{f}_Signal"].to_numpy(), expected[f"L1.{f}"])
        np.testing.assert_allclose(out[f"{f}_S"].to_numpy(), expected[f"eq2.{f}"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out["Average_Signal"].to_numpy(), expected["avg"], rtol=1e-9, atol=1e-9)
    assert out["Average_Signal"].index[0] == 100


def test_plain_arrays_get_a_range_index_and_src_must_be_prices():
    close = np.linspace(100.0, 120.0, 60)
    out = compute_atc_signals(close, close.copy())
    assert out["EMA_S"].index.equals(pd.RangeIndex(60))
    with pytest.raises(ValueError, match="src differs"):
        compute_atc_signals(close, close * 1.01)


def test_errors_are_value_error_and_data_error():
    with pytest.raises(ValueError, match="ema_len"):
        compute_atc_signals(pd.Series(np.linspace(100.0, 120.0, 60)), ema_len=3)
    with pytest.raises(atc_bt.DataError, match="bar 2"):
        compute_atc_signals(pd.Series([100.0, 101.0, np.nan]))


def test_compat_accepts_a_list_of_prices():
    """Fault: a list raised "Index(...) must be called with a collection"
    (list.index, a method, was taken for the index)."""
    close = np.linspace(100.0, 120.0, 60)
    expected = compute_atc_signals(pd.Series(close))
    for prices in (list(close), tuple(close), close):
        out = compute_atc_signals(prices)
        assert out["Average_Signal"].index.equals(pd.RangeIndex(60))
        for key in KEYS:
            pd.testing.assert_series_equal(out[key], expected[key])
    with pytest.raises(TypeError, match="prices: .*DataFrame"):
        compute_atc_signals(pd.DataFrame({"close": close}))
    with pytest.raises(TypeError, match="prices: .*NoneType"):
        compute_atc_signals(None)
    with pytest.raises(TypeError, match="prices: dtype complex128"):
        compute_atc_signals(close + 1j)
    with pytest.raises(TypeError, match="src: dtype bool"):
        compute_atc_signals(close, np.ones(60, dtype=bool))
    with pytest.raises(atc_bt.DataError, match="prices: bar 3 is masked"):
        compute_atc_signals(np.ma.masked_array(close, mask=np.arange(60) == 3))
    with pytest.raises(atc_bt.DataError, match="prices: .*bar 1"):
        compute_atc_signals([100.0, -1.0, 101.0])


@pytest.mark.parametrize(
    "kwargs, name, not_named",
    [
        ({"La": -1.0}, "La = -1", "lambda"),
        ({"La": "x"}, "La = 'x'", "lambda"),
        ({"De": 100.0}, "De = 100", "decay"),
        ({"hull_len": 3}, "hull_len = 3", "hma_len"),
        ({"robustness": "decay"}, "robustness = 'decay'", "De"),
        ({"ema_len": 3}, "ema_len = 3", "lambda"),
    ],
)
def test_compat_errors_use_compat_keyword_names(kwargs, name, not_named):
    """Fault: La=-1 was reported as lambda_ / lambda, De as decay."""
    with pytest.raises(ValueError) as e:
        compute_atc_signals(np.linspace(100.0, 120.0, 60), **kwargs)
    msg = str(e.value)
    assert name in msg and not_named not in msg, msg
