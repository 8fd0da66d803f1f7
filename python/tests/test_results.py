"""open_run / open_sweep read what `atc-bt run` / `atc-bt sweep` write.

The binary only makes the directories here (the package never calls it);
the checks are that every file comes back as the documented object, and
that an incomplete directory is refused."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

import atc_bt
from conftest import ROOT, run_cli

DATA = ROOT / "data" / "btcusd_daily_2020_2021_yahoo.parquet"


@pytest.fixture(scope="module")
def dirs(atc_bt_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("results")
    shutil.copy(DATA, tmp / DATA.name)
    data = str(tmp / DATA.name)
    run_cli(atc_bt_bin, "run", "--data", data, "--symbols", "all", "--no-report", "--no-cache",
            "--out", str(tmp / "run"), "-q")
    run_cli(atc_bt_bin, "sweep", "--data", data, "--symbols", "all", "--lambda", "0.02,0.05",
            "--decay", "0.03", "--no-report", "--no-cache", "--out", str(tmp / "sweep"), "-q")
    return tmp


def test_run_directory(dirs):
    run = atc_bt.open_run(dirs / "run")
    assert run.manifest == json.loads((dirs / "run" / "run.json").read_text())
    assert run.metrics == json.loads((dirs / "run" / "metrics.json").read_text())
    assert set(run.metrics) >= {"portfolio", "benchmark", "symbols"}
    assert list(run.metrics["symbols"]) == ["BTC-USD"]
    for name in ("equity", "trades", "signals"):
        frame = getattr(run, name)
        assert isinstance(frame, pl.DataFrame)
        assert frame.equals(pl.read_parquet(dirs / "run" / f"{name}.parquet"))
    assert run.equity.columns[:5] == ["ts", "symbol", "aggregate", "equity", "position"]
    assert run.signals.columns == ["ts", "symbol", "avg", "dir"]
    assert run.signals.height > 400 and run.trades.height > 0
    assert set(run.equity["aggregate"].drop_nulls()) == {"portfolio", "benchmark"}


def test_sweep_directory(dirs):
    sweep = atc_bt.open_sweep(dirs / "sweep")
    assert sweep.manifest == json.loads((dirs / "sweep" / "sweep.json").read_text())
    assert sweep.results.equals(pl.read_parquet(dirs / "sweep" / "results.parquet"))
    assert sorted(sweep.results["lambda"].unique()) == [0.02, 0.05]


def test_incomplete_directory_is_refused(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="run.json is missing"):
        atc_bt.open_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="sweep.json is missing"):
        atc_bt.open_sweep(tmp_path)
