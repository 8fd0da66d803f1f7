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


@pytest.mark.parametrize(
    "close, words",
    [
        (None, "close: .*NoneType"),
        ("123", "close: .*str"),
        (b"123", "close: .*bytes"),
        (101.5, "close: .*scalar"),
        (["a", "b"], "close: dtype <U1"),
        (np.array([True, False, True]), "close: dtype bool"),
        (np.array([100.0 + 1j, 101.0]), "close: dtype complex128"),
        (np.array([100.0, None, 101.0], dtype=object), "close: dtype object holds None .* bar 1"),
        (np.array([100.0, "101"], dtype=object), "close: dtype object holds '101' .* bar 1"),
        (np.array(["2020-01-01"], dtype="datetime64[D]"), "close: dtype datetime64"),
    ],
)
def test_close_that_is_not_real_numbers_is_a_type_error(close, words):
    """Fault: None ran as one NaN bar, "123" as one bar of 123, bool and
    complex arrays were read as numbers (the imaginary part dropped)."""
    with pytest.raises(TypeError, match=words):
        atc_bt.compute(close)
    with pytest.raises(TypeError, match=words.replace("close:", "series 1:")):
        atc_bt.compute_many([CLOSE, close])


def test_close_that_is_not_real_numbers_accepts_ints_floats_and_numeric_objects():
    expected = atc_bt.compute(CLOSE)["avg"]
    for close in (list(CLOSE), tuple(CLOSE), np.array(list(CLOSE), dtype=object)):
        np.testing.assert_array_equal(atc_bt.compute(close)["avg"], expected)
    for close in (np.arange(100, 150, dtype=np.int64), np.arange(100, 150, dtype=np.uint16),
                  CLOSE.astype(np.float32)):
        np.testing.assert_array_equal(
            atc_bt.compute(close)["avg"], atc_bt.compute(close.astype(np.float64))["avg"]
        )
    with pytest.raises(TypeError, match="closes: .*NoneType"):
        atc_bt.compute_many(None)


def test_masked_close_bar_is_refused_naming_the_bar():
    """Fault: a numpy masked array's mask was ignored (masked values ran
    as closes)."""
    masked = np.ma.masked_array(CLOSE, mask=np.arange(50) == 7)
    with pytest.raises(atc_bt.DataError, match="close: bar 7 is masked"):
        atc_bt.compute(masked)
    with pytest.raises(atc_bt.DataError, match="series 1: bar 7 is masked"):
        atc_bt.compute_many([CLOSE, masked])
    with pytest.raises(atc_bt.DataError, match="series 1: bar 7 is masked"):
        atc_bt.compute_many(np.ma.vstack([CLOSE, masked]))
    unmasked = np.ma.masked_array(CLOSE, mask=False)
    np.testing.assert_array_equal(atc_bt.compute(unmasked)["avg"], atc_bt.compute(CLOSE)["avg"])


def test_robustness_error_says_it_once_with_control_characters_escaped():
    """Fault: "invalid parameter robustness = 'Mid': invalid parameter
    robustness = Mid" (said twice), with a NUL in the value shown raw."""
    with pytest.raises(ValueError) as e:
        atc_bt.compute(CLOSE, robustness="Mid")
    msg = str(e.value)
    assert msg.count("invalid parameter") == 1 and msg.count("Mid") == 1, msg
    assert msg.startswith("invalid parameter robustness = 'Mid': valid range is one of narrow"), msg
    for call in (atc_bt.compute, atc_bt.params):
        with pytest.raises(ValueError) as e:
            call(*([CLOSE] if call is atc_bt.compute else []), robustness="Mid\x00\x1b[31m")
        msg = str(e.value)
        assert msg.count("invalid parameter") == 1, msg
        assert "\x00" not in msg and "\x1b" not in msg, msg
        assert "'Mid\\x00\\x1b[31m'" in msg, msg
    with pytest.raises(ValueError) as e:
        atc_bt.compute(CLOSE, **{"ema\x00len": 20})
    assert "\x00" not in str(e.value) and "ema\\u{0}len" in str(e.value), str(e.value)
