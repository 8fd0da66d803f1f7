"""Shared helpers: the golden cases of ``tests/golden`` and the binary."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.json"))
INT_COLUMNS = ("bar", "dir")


def is_int_column(name: str) -> bool:
    return name in INT_COLUMNS or name.startswith("sig.")


def read_csv(path: Path) -> dict[str, np.ndarray]:
    """A golden-layout CSV as arrays: ints for bar/sig/dir, float64 (NaN for
    an empty field) otherwise; shortest round-trip text parses to the exact
    bits."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    out = {}
    for j, name in enumerate(header):
        cells = [r[j] for r in body]
        if is_int_column(name):
            out[name] = np.array([int(c) for c in cells], dtype=np.int64)
        else:
            out[name] = np.array([float(c) if c else np.nan for c in cells], dtype=np.float64)
    return out


def case_params(case: str) -> dict:
    """The case's parameters as Python keywords (``lambda`` -> ``lambda_``)."""
    params = json.loads((GOLDEN / f"{case}.json").read_text())["params"]
    return {("lambda_" if k == "lambda" else k): v for k, v in params.items()}


def cli_flags(case: str) -> list[str]:
    params = json.loads((GOLDEN / f"{case}.json").read_text())["params"]
    flags = []
    for k, v in params.items():
        flags += [f"--{k.replace('_', '-')}", str(v).lower() if k == "robustness" else repr(v)]
    return flags


def assert_golden(actual: dict, expected: dict, columns=None, where: str = "") -> None:
    """The golden rule (tests/golden/README.md): na exactly where expected,
    |a - e| <= 1e-9 * max(1, |e|), exact equality for integer columns."""
    for name in columns or expected:
        e = expected[name]
        a = np.asarray(actual[name])
        assert a.shape == e.shape, f"{where} {name}: shape {a.shape} != {e.shape}"
        if is_int_column(name):
            assert np.issubdtype(a.dtype, np.integer), f"{where} {name}: dtype {a.dtype}"
            bad = np.flatnonzero(a.astype(np.int64) != e)
        else:
            assert a.dtype == np.float64, f"{where} {name}: dtype {a.dtype}"
            na = np.isnan(e)
            tol = 1e-9 * np.maximum(1.0, np.abs(np.where(na, 0.0, e)))
            diff = np.abs(np.where(na, 0.0, a) - np.where(na, 0.0, e))
            bad = np.flatnonzero((np.isnan(a) != na) | (~na & ~(diff <= tol)))
        assert bad.size == 0, f"{where} {name}: first mismatch at bar {bad[0]}: {a[bad[0]]} vs {e[bad[0]]}"


def assert_same_bits(a: np.ndarray, b: np.ndarray, where: str) -> None:
    """Bit identity (NaN positions equal, every other value's bits equal)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, where
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        na = np.isnan(a64)
        assert np.array_equal(na, np.isnan(b64)), f"{where}: na positions differ"
        bad = np.flatnonzero(a64[~na].view(np.int64) != b64[~na].view(np.int64))
        assert bad.size == 0, f"{where}: bits differ at {bad[:5]}"
    else:
        assert np.array_equal(a.astype(np.int64), b.astype(np.int64)), where


@pytest.fixture(scope="session")
def golden():
    """case -> (expected columns, python keywords)."""
    return {c: (read_csv(GOLDEN / f"{c}.csv"), case_params(c)) for c in CASES}


@pytest.fixture(scope="session")
def atc_bt_bin():
    """The atc-bt binary: $ATC_BT_BIN (must exist when set, as in .ci/run),
    else target/{debug,release}/atc-bt; skipped when none is built."""
    env = os.environ.get("ATC_BT_BIN")
    if env:
        assert Path(env).is_file(), f"ATC_BT_BIN={env} does not exist"
        return env
    for p in (ROOT / "target" / "debug" / "atc-bt", ROOT / "target" / "release" / "atc-bt"):
        if p.is_file():
            return str(p)
    pytest.skip("no atc-bt binary built (cargo build), and ATC_BT_BIN not set")


def run_cli(binary: str, *args: str) -> None:
    r = subprocess.run([binary, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"atc-bt {' '.join(args)} failed: {r.stderr}"
