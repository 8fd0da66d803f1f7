"""Bad parameters raise ValueError, bad data atc_bt.DataError, with
atc-bt's messages; nothing panics across the boundary."""

from __future__ import annotations

import numpy as np
import pytest

import atc_bt

CLOSE = np.linspace(100.0, 110.0, 50)


@pytest.mark.parametrize(
    "params, words",
    [
        ({"lambda_": -1.0}, "lambda"),
        ({"decay": 100.0}, "decay"),
        ({"ema_len": 3}, "ema_len"),
        ({"robustness": "huge"}, "robustness"),
        ({"lamda": 0.1}, "lamda"),
        ({"cutout": -1}, "-1"),
        ({"cutout": 1.5}, "1.5"),
        ({"starting_equity": 0.0}, "starting_equity"),
        ({"long_threshold": float("nan")}, "long_threshold"),
        ({"kama_w": True}, "kama_w"),
        ({"ema_len": "28"}, "28"),
        ({"hma_len": [28]}, "hma_len"),
    ],
)
def test_bad_parameters_raise_value_error_naming_them(params, words):
    with pytest.raises(ValueError, match=words) as e:
        atc_bt.compute(CLOSE, **params)
    assert not isinstance(e.value, atc_bt.DataError)
    with pytest.raises(ValueError, match=words):
        atc_bt.compute_many([CLOSE], **params)
    with pytest.raises(ValueError, match=words):
        atc_bt.params(**params)


def test_unknown_keyword_lists_the_valid_names_with_lambda_underscore():
    with pytest.raises(ValueError, match="lambda_") as e:
        atc_bt.compute(CLOSE, emalen=20)
    assert "ema_len" in str(e.value)


@pytest.mark.parametrize(
    "close, words",
    [
        ([], "empty"),
        ([100.0, float("nan"), 101.0], "bar 1"),
        ([100.0, 101.0, -5.0], "bar 2"),
        ([100.0, 0.0], "bar 1"),
        ([100.0, float("inf")], "bar 1"),
        (np.ones((3, 4)), "1-D"),
        (["a", "b"], "float64"),
    ],
)
def test_bad_data_raises_data_error_naming_the_bar(close, words):
    with pytest.raises(atc_bt.DataError, match=words):
        atc_bt.compute(close)


def test_compute_many_names_the_bad_series():
    with pytest.raises(atc_bt.DataError, match="series 2.*bar 3"):
        atc_bt.compute_many([CLOSE, CLOSE, np.r_[CLOSE[:3], np.nan, CLOSE[4:]]])
    with pytest.raises(atc_bt.DataError, match="series 1"):
        atc_bt.compute_many([CLOSE, []], detail="full")
    with pytest.raises(atc_bt.DataError, match="2-D"):
        atc_bt.compute_many(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="detail"):
        atc_bt.compute_many([CLOSE], detail="everything")


def test_data_error_is_a_value_error_and_exported():
    assert issubclass(atc_bt.DataError, ValueError)
    assert atc_bt.DataError is atc_bt._atc_bt.DataError
