"""Result directories of a run or a sweep, as Python objects.

:func:`open_run` and :func:`open_sweep` read a directory that ``atc-bt run``
/ ``atc-bt sweep`` (or, once it lands, the library's job layer through
``atc_bt.run``/``atc_bt.sweep``) wrote: the JSON files as dicts, the
Parquet files as polars DataFrames (read on first use; ``.to_pandas()`` on
any of them). Nothing here computes or writes; the file formats are the
README's "Output of run" and "Sweeps" sections.

A directory is complete only once its manifest (``run.json`` /
``sweep.json``) exists: atc-bt writes it last, so a directory without one
is refused (``FileNotFoundError`` naming it).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

__all__ = ["Run", "Sweep", "open_run", "open_sweep"]


def _polars():
    try:
        import polars as pl
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("atc_bt result frames need polars: pip install polars") from None
    return pl


def _manifest(out_dir: Path, name: str, what: str) -> dict[str, Any]:
    path = out_dir / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{out_dir}: not a complete {what} directory: {name} is missing "
            f"(atc-bt writes it last; run the {what} again into this directory)"
        )
    return json.loads(path.read_text())


class Run:
    """A run directory: ``run.json``, ``metrics.json`` and the Parquet files.

    Attributes
    ----------
    out_dir : pathlib.Path
        The directory.
    manifest : dict
        ``run.json`` (command line, resolved parameters, sources, files).
    metrics : dict
        ``metrics.json``: ``{"portfolio": {...}, "benchmark": {...},
        "symbols": {name: {...}}}``, every metric of METRICS.md.
    equity, trades, signals : polars.DataFrame
        ``equity.parquet`` (``ts, symbol, aggregate, equity, position``),
        ``trades.parquet`` (one row per trade), ``signals.parquet`` (``ts,
        symbol, avg, dir``). ``FileNotFoundError`` when the run's
        ``--outputs`` left the file out.
    """

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.manifest = _manifest(self.out_dir, "run.json", "run")
        self.metrics: dict[str, Any] = json.loads((self.out_dir / "metrics.json").read_text())
        #: The warnings and notes the job showed (``atc_bt.run``; empty
        #: for a directory opened with :func:`open_run`).
        self.messages: list[str] = []

    def _frame(self, name: str):
        path = self.out_dir / f"{name}.parquet"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: not written by this run (its outputs: {self.manifest.get('outputs')}); "
                f"run again with --outputs including {name}"
            )
        return _polars().read_parquet(path)

    @cached_property
    def equity(self):
        return self._frame("equity")

    @cached_property
    def trades(self):
        return self._frame("trades")

    @cached_property
    def signals(self):
        return self._frame("signals")

    def __repr__(self) -> str:
        return f"Run({str(self.out_dir)!r})"


class Sweep:
    """A sweep directory: ``sweep.json`` and ``results.parquet``.

    Attributes
    ----------
    out_dir : pathlib.Path
    manifest : dict
        ``sweep.json`` (grid, data, ranking).
    results : polars.DataFrame
        ``results.parquet``: one row per combination x sample x symbol plus
        the aggregate rows (``aggregate`` = ``portfolio``/``benchmark``),
        every parameter and every scalar metric.
    ranking : polars.DataFrame
        The ``portfolio`` rows of the ranked sample (``in`` with a split,
        else ``full``), best first by ``rank_by``, with a ``rank`` column
        (1 = best): every combination after ``atc_bt.sweep``, the first
        100 (``sweep.json``'s ``ranking``) for a directory opened with
        :func:`open_sweep`.
    messages : list of str
        The warnings and notes the job showed (``atc_bt.sweep`` only).
    """

    def __init__(self, out_dir: str | Path, order: list[int] | None = None):
        self.out_dir = Path(out_dir)
        self.manifest = _manifest(self.out_dir, "sweep.json", "sweep")
        self._order = order if order else self.manifest.get("ranking", [])
        self.messages: list[str] = []

    @cached_property
    def results(self):
        return _polars().read_parquet(self.out_dir / "results.parquet")

    @cached_property
    def ranking(self):
        pl = _polars()
        rows = self.results.filter(
            (pl.col("aggregate") == "portfolio")
            & (pl.col("sample") == self.manifest["ranked_on_sample"])
        )
        rank = pl.DataFrame(
            {"rank": list(range(1, len(self._order) + 1)), "combo": self._order},
            schema={"rank": pl.UInt32, "combo": rows.schema["combo"]},
        )
        return rank.join(rows, on="combo", how="left").sort("rank")

    def __repr__(self) -> str:
        return f"Sweep({str(self.out_dir)!r})"


def open_run(out_dir: str | Path) -> Run:
    """The run directory ``out_dir`` (see :class:`Run`)."""
    return Run(out_dir)


def open_sweep(out_dir: str | Path) -> Sweep:
    """The sweep directory ``out_dir`` (see :class:`Sweep`)."""
    return Sweep(out_dir)
