"""atc_bt.run / sweep / report call the library's job layer and write what
the command writes for the same arguments.

The binary makes the reference directories (the package never calls it);
each test compares the Python call's files with the command's: every
Parquet frame equal, metrics.json (and the sweep's heatmaps) byte for
byte, the manifests' parameters and ranking equal. Then the errors: an
unknown or mistyped keyword is a ValueError naming it, a value out of
range a ValueError with atc-bt's message, bad data an atc_bt.DataError."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import polars as pl
import pytest

import atc_bt
from conftest import ROOT, run_cli

DATA = ROOT / "data" / "btcusd_daily_2020_2021_yahoo.parquet"
STRATEGY = ROOT / "strategies" / "atc_fast_long_short.toml"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jobs")
    shutil.copy(DATA, tmp / DATA.name)
    return tmp / DATA.name


def same_run(cli_dir, py_dir):
    for name in ("equity", "trades", "signals"):
        a = pl.read_parquet(cli_dir / f"{name}.parquet")
        b = pl.read_parquet(py_dir / f"{name}.parquet")
        assert a.equals(b), name
        assert a.height > 0, name
    assert (cli_dir / "metrics.json").read_bytes() == (py_dir / "metrics.json").read_bytes()
    a, b = (json.loads((d / "run.json").read_text()) for d in (cli_dir, py_dir))
    assert a["params"] == b["params"]
    assert a["data"] == b["data"]
    assert a["window"] == b["window"]


def test_run_equals_the_command(atc_bt_bin, data, tmp_path):
    run_cli(atc_bt_bin, "run", "--data", str(data), "--symbols", "all", "--from", "2020-06",
            "--to", "2021-09-30", "--lambda", "0.05", "--decay", "0.1", "--fee-bps", "10",
            "--mode", "long-short", "--no-report", "--no-cache", "--out", str(tmp_path / "cli"),
            "-q")
    r = atc_bt.run(data, symbols=["BTC-USD"], start=dt.date(2020, 6, 1), end="2021-09-30",
                   lambda_=0.05, decay=0.1, fee_bps=10, mode="long-short", report=False,
                   cache=False, out=tmp_path / "py")
    assert isinstance(r, atc_bt.Run) and r.out_dir == tmp_path / "py"
    same_run(tmp_path / "cli", tmp_path / "py")
    assert r.metrics == json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert r.equity.equals(pl.read_parquet(tmp_path / "cli" / "equity.parquet"))
    assert r.signals.columns == ["ts", "symbol", "avg", "dir"]
    assert r.trades.height > 0


def test_run_with_a_strategy_file_and_the_cache(atc_bt_bin, data, tmp_path):
    """A strategy file with overrides on top, and the cached path (the
    second call restores what the first computed)."""
    args = ["--strategy", str(STRATEGY), "--capital", "5000", "--risk-free", "0.02",
            "--outputs", "all", "--cache-dir", str(tmp_path / "cache-cli")]
    run_cli(atc_bt_bin, "run", "--data", str(data), *args, "--no-report",
            "--out", str(tmp_path / "cli"), "-q")
    kw = dict(strategy=STRATEGY, capital=5000, risk_free=0.02, outputs="all",
              cache_dir=tmp_path / "cache-py", no_report=True)
    atc_bt.run(data, out=tmp_path / "py", **kw)
    same_run(tmp_path / "cli", tmp_path / "py")
    again = atc_bt.run(data, out=tmp_path / "py2", **kw)
    assert again.manifest["cache"]["kinds"]["run"] == {"hits": 1, "misses": 0}
    assert any("unchanged since the cached run" in m for m in again.messages)
    same_run(tmp_path / "cli", tmp_path / "py2")
    assert "close" in again.signals.columns and "drawdown" in again.equity.columns


def test_run_with_stops_equals_the_command(atc_bt_bin, data, tmp_path):
    """stop_loss / take_profit / trailing_stop are the flags' percent."""
    run_cli(atc_bt_bin, "run", "--data", str(data), "--stop-loss", "4", "--take-profit", "15",
            "--trailing-stop", "8", "--mode", "long-short", "--no-report", "--no-cache",
            "--out", str(tmp_path / "cli"), "-q")
    r = atc_bt.run(data, stop_loss=4, take_profit=15, trailing_stop=8, mode="long-short",
                   report=False, cache=False, out=tmp_path / "py")
    same_run(tmp_path / "cli", tmp_path / "py")
    reasons = set(r.trades["exit_reason"])
    assert reasons & {"stop_loss", "take_profit", "trailing_stop"}, reasons
    execution = r.manifest["params"]["execution"]
    assert (execution["stop_loss"], execution["take_profit"], execution["trailing_stop"]) == (
        4.0, 15.0, 8.0)


def test_run_with_shared_cash_equals_the_command(atc_bt_bin, tmp_path):
    """allocation / max_positions / rebalance are the flags; the shared
    account's portfolio rows carry its gross exposure."""
    src = ROOT / "data" / "us_stocks_daily_2000_2013_quandl_wiki.parquet"
    data = tmp_path / src.name
    shutil.copy(src, data)
    run_cli(atc_bt_bin, "run", "--data", str(data), "--from", "2010", "--allocation", "shared",
            "--max-positions", "2", "--rebalance", "weekly", "--fee-bps", "10", "--no-report",
            "--no-cache", "--out", str(tmp_path / "cli"), "-q")
    r = atc_bt.run(data, start="2010", allocation="shared", max_positions=2, rebalance="weekly",
                   fee_bps=10, report=False, cache=False, out=tmp_path / "py")
    same_run(tmp_path / "cli", tmp_path / "py")
    execution = r.manifest["params"]["execution"]
    assert (execution["allocation"], execution["max_positions"], execution["rebalance"]) == (
        "shared", 2, "weekly")
    assert "rebalance" in set(r.trades["exit_reason"])
    held = r.equity.filter(pl.col("symbol").is_not_null() & (pl.col("position") != 0))
    assert held.group_by("ts").len()["len"].max() == 2
    account = r.equity.filter(pl.col("aggregate") == "portfolio")
    assert account["gross"].null_count() == 0 and account["gross"].max() > 0


def test_shared_sweep_equals_the_command(atc_bt_bin, data, tmp_path):
    """allocation="shared" with max_positions as a grid axis writes the
    command's results, one account per position limit."""
    run_cli(atc_bt_bin, "sweep", "--data", str(data), "--decay", "0.01,0.1",
            "--allocation", "shared", "--max-positions", "2,5", "--rebalance", "weekly",
            "--no-report", "--no-cache", "--out", str(tmp_path / "cli"), "-q")
    s = atc_bt.sweep(data, grid={"decay": [0.01, 0.1]}, allocation="shared",
                     max_positions=[2, 5], rebalance="weekly", report=False, cache=False,
                     out=tmp_path / "py")
    cli = pl.read_parquet(tmp_path / "cli" / "results.parquet")
    assert s.results.equals(cli) and s.results.height > 0
    port = cli.filter(pl.col("aggregate") == "portfolio").sort("combo")
    assert port["max_positions"].to_list() == [2, 5, 2, 5]
    with pytest.raises(ValueError, match="max_positions in the grid"):
        atc_bt.sweep(data, grid={"decay": [0.01]}, max_positions=[2], cache=False,
                     out=tmp_path / "eq")


def test_sweep_equals_the_command(atc_bt_bin, data, tmp_path):
    run_cli(atc_bt_bin, "sweep", "--data", str(data), "--lambda", "0.01,0.05,0.2",
            "--cutout", "0:20:10", "--train-frac", "0.6", "--rank-by", "total_return",
            "--no-report", "--no-cache", "--out", str(tmp_path / "cli"), "-q")
    s = atc_bt.sweep(data, grid={"lambda_": [0.01, 0.05, 0.2], "cutout": "0:20:10"},
                     train_frac=0.6, rank_by="total_return", report=False, cache=False,
                     out=tmp_path / "py")
    assert isinstance(s, atc_bt.Sweep)
    cli = pl.read_parquet(tmp_path / "cli" / "results.parquet")
    assert s.results.equals(cli) and s.results.height > 0
    a, b = (json.loads((d / "sweep.json").read_text()) for d in (tmp_path / "cli", s.out_dir))
    for key in ("grid", "combinations", "params", "rank_by", "ranked_on_sample", "samples",
                "best", "ranking"):
        assert a[key] == b[key], key
    heatmaps = sorted(p.name for p in (tmp_path / "cli").glob("heatmap_*.json"))
    assert heatmaps
    for name in heatmaps:
        assert (tmp_path / "cli" / name).read_bytes() == (s.out_dir / name).read_bytes()
    # The ranking: every combination once, best first by total return.
    assert s.ranking["combo"].to_list() == a["ranking"]
    assert s.ranking["rank"].to_list() == list(range(1, 10))
    ret = s.ranking["total_return"].to_list()
    assert ret == sorted(ret, reverse=True)
    assert (s.ranking["sample"] == "in").all()
    assert atc_bt.open_sweep(s.out_dir).ranking.equals(s.ranking)


def test_report_renders_a_run_directory(data, tmp_path):
    r = atc_bt.run(data, out=tmp_path / "run", report=False, cache=False)
    assert not (r.out_dir / "report.html").exists()
    html = atc_bt.report(r.out_dir, format="html")
    assert html == r.out_dir / "report.html"
    assert html.read_text().lstrip().lower().startswith("<!doctype html")
    with pytest.raises(ValueError, match="cannot render the report"):
        atc_bt.report(tmp_path / "nothing")


@pytest.mark.parametrize(
    "kw, exc, words",
    [
        ({"fee_bsp": 1}, ValueError, "unknown keyword fee_bsp"),
        ({"shard": "0/2"}, ValueError, "unknown keyword shard"),
        ({"threads": True}, ValueError, "keyword threads"),
        ({"capital": "lots"}, ValueError, "keyword capital"),
        ({"lambda_": "x"}, ValueError, "keyword lambda_"),
        ({"lambda_": -1.0}, ValueError, "lambda = -1"),
        ({"ema_len": 3}, ValueError, "ema_len"),
        ({"fee_bps": -5.0}, ValueError, "fee_bps"),
        ({"stop_loss": 100}, ValueError, "stop_loss = 100"),
        ({"mode": "sideways"}, ValueError, "keyword mode"),
        ({"allocation": "kelly"}, ValueError, "keyword allocation"),
        ({"rebalance": "hourly"}, ValueError, "keyword rebalance"),
        ({"max_positions": 0}, ValueError, "max_positions"),
        ({"max_positions": 2.5}, ValueError, "keyword max_positions"),
        ({"outputs": "equity,pnl"}, ValueError, "keyword outputs"),
        ({"start": "2020-13"}, atc_bt.DataError, "2020-13"),
        ({"symbols": "NOPE"}, atc_bt.DataError, "unknown symbol \"NOPE\""),
        ({"start": "2030"}, ValueError, "2030"),
        ({"strategy": "no/such.toml"}, ValueError, "no/such.toml"),
        ({"log_scale": True, "linear_scale": True}, ValueError, "log_scale"),
    ],
)
def test_run_errors_name_the_keyword(data, tmp_path, kw, exc, words):
    with pytest.raises(exc) as e:
        atc_bt.run(data, out=tmp_path / "out", report=False, cache=False, **kw)
    assert words in str(e.value)
    assert not (tmp_path / "out").exists()


def test_data_errors(tmp_path):
    with pytest.raises(atc_bt.DataError, match="no Parquet files found"):
        atc_bt.run(tmp_path / "missing.parquet", report=False)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(atc_bt.DataError, match="bad.parquet"):
        atc_bt.sweep(bad, grid={"lambda": [0.01, 0.02]}, report=False)


@pytest.mark.parametrize(
    "grid, kw, words",
    [
        ({}, {}, "the grid is empty"),
        ({"lamda": [0.1]}, {}, "lamda"),
        ({"lambda": [True]}, {}, "boolean"),
        ({"lambda": [0.01]}, {"rank_by": "luck"}, "--rank-by luck"),
        ({"lambda": [0.01]}, {"train_frac": 1.5}, "--train-frac 1.5"),
        ({"lambda": [0.01]}, {"split": "2021", "train_frac": 0.5}, "not both"),
        ({"lambda": [0.01]}, {"walk_forward": "train=banana"}, "keyword walk_forward"),
        ({"lambda": "0.01:0.02:0"}, {}, "lambda"),
        ({"lambda": [0.01]}, {"top": "x"}, "keyword top"),
        ({"lambda": [0.01]}, {"mode": 3}, "keyword mode"),
    ],
)
def test_sweep_errors_name_the_keyword(data, tmp_path, grid, kw, words):
    with pytest.raises(ValueError) as e:
        atc_bt.sweep(data, grid=grid, out=tmp_path / "out", report=False, cache=False, **kw)
    assert words in str(e.value)
    assert not (tmp_path / "out").exists()


def test_a_job_prints_nothing_its_lines_are_in_messages(data, tmp_path, capfd):
    """The data layer's "opened store" line went to stderr from inside the
    library, past `Run.messages`; a job prints nothing."""
    capfd.readouterr()
    r = atc_bt.run(data, report=False, cache=False, out=tmp_path / "py")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert any(line.startswith("data: ") and "store" in line for line in r.messages), r.messages


def test_scan_rows_are_the_last_signals_of_a_run(data, tmp_path):
    """atc_bt.scan: one dict per symbol whose avg/dir are the last row of a
    run's signals with the same arguments; filters keep their side."""
    r = atc_bt.run(data, start="2020-06", end="2021-06-30", lambda_=0.05, report=False,
                   cache=False, out=tmp_path / "r", mode="long-short")
    rows = atc_bt.scan(data, start="2020-06", end="2021-06-30", lambda_=0.05, cache=False)
    last = r.signals.tail(1).row(0, named=True)
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == {"symbol", "ts", "avg", "dir", "bars_since_change", "rank"}
    assert row["symbol"] == last["symbol"] and row["rank"] == 1
    assert row["avg"] == last["avg"] and row["dir"] == last["dir"]
    assert dt.datetime.fromtimestamp(row["ts"] / 1e6, dt.timezone.utc) == last["ts"]
    side = "long" if row["dir"] == 1 else "short"
    other = "short" if side == "long" else "long"
    assert atc_bt.scan(data, end="2021-06-30", lambda_=0.05, cache=False, **{side: True}) == rows
    assert atc_bt.scan(data, end="2021-06-30", lambda_=0.05, cache=False, **{other: True}) == []
    with pytest.raises(ValueError, match="min_strength"):
        atc_bt.scan(data, min_strength=2)


def test_run_on_its_own_signals_gives_the_same_metrics(data, tmp_path):
    """atc_bt.run(signals=...): a run's own signals.parquet fed back."""
    a = atc_bt.run(data, report=False, cache=False, out=tmp_path / "a", mode="long-short")
    b = atc_bt.run(data, report=False, cache=False, out=tmp_path / "b", mode="long-short",
                   signals=a.out_dir / "signals.parquet")
    assert (a.out_dir / "metrics.json").read_bytes() == (b.out_dir / "metrics.json").read_bytes()
    assert b.manifest["signals"]["path"].endswith("signals.parquet")
