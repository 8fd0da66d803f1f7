"""compute and compute_many against the golden vectors (1e-9) and against
the binary's `compute` CSV (bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest

import atc_bt
from conftest import CASES, GOLDEN, assert_golden, assert_same_bits, cli_flags, read_csv, run_cli

DEFAULT_CASES = [c for c in CASES if c in ("aapl_wiki_default", "grw_default", "flat_64", "goog_short_30", "one_bar")]


def test_columns_are_the_golden_csv_header(golden):
    expected, params = golden["grw_default"]
    out = atc_bt.compute(expected["close"], **params)
    assert tuple(out) == atc_bt.COLUMNS == tuple(expected)
    assert len(atc_bt.COLUMNS) == 179
    assert out["bar"].dtype == np.int64 and out["dir"].dtype == np.int8
    assert out["sig.EMA.0"].dtype == np.int8 and out["avg"].dtype == np.float64


@pytest.mark.parametrize("case", CASES)
def test_compute_matches_golden(golden, case):
    expected, params = golden[case]
    out = atc_bt.compute(expected["close"], **params)
    assert_golden(out, expected, where=case)


@pytest.mark.parametrize("case", CASES)
def test_compute_is_bit_identical_to_the_binary(golden, case, atc_bt_bin, tmp_path):
    expected, params = golden[case]
    csv_out = tmp_path / f"{case}.csv"
    run_cli(atc_bt_bin, "compute", "--input", str(GOLDEN / f"{case}.csv"), "--out", str(csv_out), *cli_flags(case))
    cli = read_csv(csv_out)
    out = atc_bt.compute(expected["close"], **params)
    assert tuple(cli) == tuple(out)
    for name in cli:
        assert_same_bits(out[name], cli[name], f"{case} {name}")


def test_compute_many_ragged_list_matches_golden_and_compute(golden):
    closes = [golden[c][0]["close"] for c in DEFAULT_CASES]
    many = atc_bt.compute_many(closes)
    full = atc_bt.compute_many(closes, detail="full")
    direction = atc_bt.compute_many(closes, detail="direction")
    assert len(many) == len(full) == len(direction) == len(DEFAULT_CASES)
    for case, sig, fl, dr in zip(DEFAULT_CASES, many, full, direction):
        expected = golden[case][0]
        assert tuple(dr) == atc_bt.DIRECTION_COLUMNS
        assert_golden(dr, expected, columns=atc_bt.DIRECTION_COLUMNS, where=f"{case} direction")
        assert tuple(sig) == atc_bt.SIGNAL_COLUMNS
        assert_golden(sig, expected, columns=atc_bt.SIGNAL_COLUMNS, where=f"{case} signal")
        assert_golden(fl, expected, where=f"{case} full")
        single = atc_bt.compute(expected["close"])
        for name in atc_bt.COLUMNS:
            assert_same_bits(fl[name], single[name], f"{case} full {name}")
        for name in atc_bt.SIGNAL_COLUMNS:
            assert_same_bits(sig[name], single[name], f"{case} signal {name}")
        for name in atc_bt.DIRECTION_COLUMNS:
            assert_same_bits(dr[name], single[name], f"{case} direction {name}")


@pytest.mark.parametrize("case", [c for c in CASES if c not in DEFAULT_CASES])
def test_compute_many_2d_array_matches_golden(golden, case):
    # Nine copies: two full SIMD batches (4 or 8 lanes) and a remainder.
    expected, params = golden[case]
    rows = np.vstack([expected["close"]] * 9)
    many = atc_bt.compute_many(rows, **params)
    assert len(many) == 9
    for i, out in enumerate(many):
        assert_golden(out, expected, columns=atc_bt.SIGNAL_COLUMNS, where=f"{case} row {i}")
        for name in atc_bt.SIGNAL_COLUMNS:
            assert_same_bits(out[name], many[0][name], f"{case} row {i} {name}")


def test_compute_accepts_lists_and_int_prices():
    a = atc_bt.compute([100, 101, 99, 102])
    b = atc_bt.compute(np.array([100.0, 101.0, 99.0, 102.0]))
    for name in atc_bt.COLUMNS:
        assert_same_bits(a[name], b[name], name)


def test_lambda_keyword_and_params_resolution():
    p = atc_bt.params(lambda_=0.05, robustness="WIDE", cutout=3)
    assert p["lambda"] == 0.05 and p["robustness"] == "Wide" and p["cutout"] == 3
    assert p["decay"] == 0.03 and p["ema_len"] == 28 and len(p) == 19
    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(7).normal(0.0, 0.02, 300)))
    assert_same_bits(atc_bt.compute(close, lambda_=0.05)["avg"], atc_bt.compute(close, **{"lambda": 0.05})["avg"], "lambda")
    assert not np.array_equal(atc_bt.compute(close, lambda_=0.5)["eq2.EMA"], atc_bt.compute(close)["eq2.EMA"])
