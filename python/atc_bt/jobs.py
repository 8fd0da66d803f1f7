"""Backtests from Python: ``run``, ``sweep`` and ``report``.

Each calls the library's job layer (``atc_bt::job::run::run``,
``atc_bt::job::sweep::sweep``, ``atc_bt::report::render_report``) in the
compiled extension, with the GIL released while it works: the same code
as ``atc-bt run`` / ``sweep`` / ``report``, never the command itself. The
result directory is the one the command writes for the same arguments
(the same files, the same ``metrics.json``; the manifests differ only in
the ``command`` they record and their times) and comes back as
:class:`~atc_bt.results.Run` / :class:`~atc_bt.results.Sweep`.

Keywords are the command's flags with ``-`` written ``_`` (``--fee-bps``
is ``fee_bps``, ``--no-report`` is ``no_report`` or ``report=False``,
``--no-cache`` is ``no_cache`` or ``cache=False``), except ``--from`` /
``--to``, which are ``start`` / ``end`` (``from`` is a Python keyword) and
``lambda``, written ``lambda_`` (``lambda`` is accepted too where a dict
is unpacked). ``--shard`` is for the command line only (parts are merged
by ``atc-bt merge``); ``quiet`` and ``top`` are accepted and change
nothing (nothing is printed).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from . import _atc_bt
from .results import Run, Sweep

__all__ = ["run", "sweep", "scan", "report"]

PathLike = Union[str, "os.PathLike[str]"]


def _path(v):
    return None if v is None else os.fspath(v)


def _date(v, key: str):
    """A window bound as the flags take it: text, or a date / datetime
    (naive means UTC)."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=_dt.timezone.utc)
        return v.astimezone(_dt.timezone.utc).isoformat()
    if isinstance(v, _dt.date):
        return v.isoformat()
    raise ValueError(f"keyword {key} = {v!r}: expected a date text (2020, 2020-03, 2020-03-15, RFC 3339), a date or a datetime")


def _list(v, key: str):
    """``symbols`` / ``outputs``: text, or a list of names joined by commas."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (list, tuple, set, frozenset)) and all(isinstance(x, str) for x in v):
        return ",".join(v)
    raise ValueError(f"keyword {key} = {v!r}: expected a comma list or a list of names")


def _common(kw: dict[str, Any]) -> dict[str, Any]:
    """Python values the extension reads as the flags' text."""
    for key in ("store", "strategy", "cache_dir", "out", "grid_file", "signals"):
        if key in kw:
            kw[key] = _path(kw[key])
    for key in ("start", "end", "split"):
        if key in kw:
            kw[key] = _date(kw[key], key)
    for key in ("symbols", "outputs"):
        if key in kw:
            kw[key] = _list(kw[key], key)
    if isinstance(kw.get("cache_ttl"), _dt.timedelta):
        kw["cache_ttl"] = kw["cache_ttl"].total_seconds()
    return kw


def run(
    data: PathLike,
    *,
    symbols: Union[str, Sequence[str]] = "all",
    start=None,
    end=None,
    strategy: Optional[PathLike] = None,
    out: Optional[PathLike] = None,
    cache: bool = True,
    **overrides,
) -> Run:
    """Backtest the ATC direction over many symbols (``atc-bt run``).

    Parameters
    ----------
    data : str or path
        Parquet input: a file, a directory (every ``*.parquet`` in it) or a
        glob; long OHLCV format (README "Data").
    symbols : str or list of str
        ``"all"``, a comma list, ``"@file.txt"`` or a list of names
        (``--symbols``).
    start, end : str, date or datetime, optional
        First and last traded bar (``--from`` / ``--to``; ``"2020"``,
        ``"2020-03"``, ``"2020-03-15"``, RFC 3339; a naive datetime is UTC;
        ``end`` is inclusive, a year means its end). The engine still sees
        the history before ``start`` (``warmup_bars`` limits it).
    strategy : str or path, optional
        Strategy file (TOML with ``[atc]``, ``[execution]``, ``[metrics]``);
        default: the shipped ``strategies/atc_default.toml`` (the spec's
        values). Keywords override it.
    out : str or path, optional
        Output directory; default ``reports/runs/<UTC time>-<inputs hash>``
        (relative to the working directory). An existing directory is
        replaced only if atc-bt wrote all of it (``force=True`` replaces it
        anyway).
    cache : bool
        ``False``: compute everything, read and write no cache
        (``--no-cache``).
    **overrides
        Any other flag of ``atc-bt run``: the ATC parameters (``lambda_``,
        ``decay``, ``cutout``, ``robustness``, ``ema_len`` ...; spec names
        and units, spec/ATC.md sec. 2), ``mode`` (``"long-only"`` |
        ``"long-short"``), ``fee_bps``, ``slippage_bps`` (basis points),
        ``capital``, ``stop_loss`` / ``take_profit`` / ``trailing_stop``
        (percent), ``allocation`` (``"equal-split"`` | ``"shared"``: one
        account ranked by ATC strength, README "Shared cash"),
        ``max_positions`` (shared cash's slots, an int >= 1), ``rebalance``
        (``"on-change"`` | ``"daily"`` | ``"weekly"`` | ``"monthly"``),
        ``periods_per_year``, ``risk_free`` (annual fraction),
        ``store``, ``strict``, ``warmup_bars`` (bars), ``outputs`` (comma
        list or list: ``equity``, ``trades``, ``signals``, ``close``,
        ``drawdown``, ``all`` or ``metrics``), ``force``, ``threads``,
        ``cache_dir``, ``cache_mem`` / ``cache_size`` (bytes), ``cache_ttl``
        (seconds or a timedelta), ``report`` / ``no_report``,
        ``symbols_in_report`` (a count or ``"all"``), ``log_scale``,
        ``linear_scale``, ``signals`` (a Parquet or CSV file of ``ts,
        symbol, dir[, strength]`` traded instead of the ATC: ``--signals``,
        README "Your own signals").

    Returns
    -------
    Run
        The run directory: ``.metrics`` (``metrics.json`` as a dict:
        ``portfolio``, ``benchmark``, ``symbols``; every metric of
        METRICS.md), ``.equity``, ``.trades``, ``.signals`` (polars
        DataFrames; README "Output of run" gives their columns and units),
        ``.out_dir``, ``.manifest`` (``run.json``) and ``.messages`` (the
        warnings and notes the command prints to stderr).

    Raises
    ------
    ValueError
        An unknown keyword (named), a value of the wrong type or out of its
        range, a strategy file that cannot be read, an output directory
        atc-bt may not replace. The message is atc-bt's.
    DataError
        The data cannot be read, a symbol is unknown, or nothing is left in
        the window (``ValueError`` subclass; the message names the file,
        symbol, row and the fix).
    RuntimeError
        An internal error of atc-bt (a caught panic); please report it.
    """
    kw = _common(dict(overrides, symbols=symbols, start=start, end=end,
                      strategy=strategy, out=out, cache=cache))
    out_dir, messages = _atc_bt.run_job(os.fspath(data), **kw)
    r = Run(out_dir)
    r.messages = messages
    return r


def _axis(values) -> str:
    """A grid axis as its flag reads it: text as given (``"0.01:0.05:0.01"``
    or ``"0.01,0.02"``), a list / range / array of values comma-joined."""
    if isinstance(values, str):
        return values
    try:
        items = list(values)
    except TypeError:
        items = [values]
    out = []
    for v in items:
        if isinstance(v, bool):
            raise ValueError(f"grid value {v!r}: a boolean is not a parameter value")
        out.append(str(v))
    return ",".join(out)


def sweep(
    data: PathLike,
    grid: Union[Mapping[str, Any], PathLike, None] = None,
    *,
    symbols: Union[str, Sequence[str]] = "all",
    start=None,
    end=None,
    strategy: Optional[PathLike] = None,
    out: Optional[PathLike] = None,
    cache: bool = True,
    **options,
) -> Sweep:
    """Backtest every combination of a parameter grid (``atc-bt sweep``).

    Parameters
    ----------
    data, symbols, start, end, out, cache
        As for :func:`run`.
    grid : dict or str/path
        A dict of axes: parameter name (``lambda`` or ``lambda_``,
        ``decay``, ``cutout``, ``robustness``, the lengths, the thresholds)
        -> a list (or range, array) of values or the text of its flag
        (``"0.01:0.05:0.01"``, inclusive); spec units. Or the path of a
        grid file (``--grid``), whose axes ``grid_file=`` can also name
        while the dict adds or replaces axes.
    strategy : str or path, optional
        Base strategy: values of the parameters the grid does not vary
        (default: the grid file's ``strategy``, else the shipped default).
    **options
        Any other flag of ``atc-bt sweep``: ``split`` (a date) or
        ``train_frac`` (0 < F < 1), ``walk_forward``
        (``"train=3y,test=1y[,step=1y]"``), ``rank_by`` (a metric of
        ``metrics.json``, default ``"sharpe"``), ``max_combos``, ``mode``,
        ``fee_bps``, ``slippage_bps``, ``capital``, ``periods_per_year``,
        ``risk_free``, ``store``, ``strict``, ``warmup_bars``, ``force``,
        ``threads``, the cache and report keywords of :func:`run`.
        Shared cash: ``allocation="shared"``, ``rebalance`` as for
        :func:`run`, and ``max_positions`` a list of position limits (or
        one), the grid's last axis (``--max-positions 2,5``; also accepted
        as ``grid={"max_positions": [2, 5]}``).

    Returns
    -------
    Sweep
        ``.results`` (``results.parquet`` as polars: one row per
        combination x sample x symbol plus the ``portfolio`` /
        ``benchmark`` rows, every parameter and scalar metric),
        ``.ranking`` (the portfolio rows of the ranked sample, best first,
        with a ``rank`` column), ``.manifest`` (``sweep.json``),
        ``.out_dir``, ``.messages``.

    Raises
    ------
    ValueError
        An unknown keyword or axis, a value out of range, an empty or too
        large grid, an unknown ``rank_by``.
    DataError
        As for :func:`run`.
    """
    if grid is None:
        axes: dict[str, Any] = {}
    elif isinstance(grid, Mapping):
        axes = dict(grid)
    else:
        if "grid_file" in options:
            raise ValueError("give the grid file as grid= or grid_file=, not both")
        options["grid_file"] = grid
        axes = {}
    if "max_positions" in options:
        if "max_positions" in axes:
            raise ValueError("give max_positions in the grid or as a keyword, not both")
        axes["max_positions"] = options.pop("max_positions")
    pairs = [(str(k), _axis(v)) for k, v in axes.items()]
    kw = _common(dict(options, symbols=symbols, start=start, end=end,
                      strategy=strategy, out=out, cache=cache))
    out_dir, order, messages = _atc_bt.sweep_job(os.fspath(data), pairs, **kw)
    s = Sweep(out_dir, order=order)
    s.messages = messages
    return s


def scan(
    data: PathLike,
    *,
    symbols: Union[str, Sequence[str]] = "all",
    start=None,
    end=None,
    strategy: Optional[PathLike] = None,
    long: bool = False,
    short: bool = False,
    min_strength: Optional[float] = None,
    cache: bool = True,
    **overrides,
) -> list[dict[str, Any]]:
    """Today's ATC state of every selected symbol (``atc-bt scan``).

    Parameters
    ----------
    data, symbols, start, end, strategy, cache
        As :func:`run` (``end`` picks the bar that is "today").
    long, short : bool
        Only ``dir == 1`` / ``dir == -1`` (both: ``dir != 0``).
    min_strength : float, optional
        Only ``abs(avg) >= min_strength`` (0..1).
    **overrides
        The ATC parameters (``lambda_``, ``decay``, ...), ``store``,
        ``strict``, ``warmup_bars``, ``threads``, ``cache_dir`` ...

    Returns
    -------
    list of dict
        By rank (1 = largest ``abs(avg)``, ties in symbol order, ranked
        before the filters): ``symbol``, ``ts`` (int, microseconds since
        the epoch, UTC), ``avg`` (float in [-1, 1]), ``dir`` (-1, 0, 1),
        ``bars_since_change`` (0: the direction changed at that bar),
        ``rank``. ``avg`` and ``dir`` equal the last row of each symbol in
        the ``signals`` of a :func:`run` with the same arguments.

    Raises
    ------
    ValueError, DataError, RuntimeError
        As :func:`run`.
    """
    kw = _common(dict(overrides, symbols=symbols, start=start, end=end,
                      strategy=strategy, cache=cache, long=long, short=short))
    if min_strength is not None:
        kw["min_strength"] = min_strength
    rows, _messages = _atc_bt.scan_job(os.fspath(data), **kw)
    return rows


def report(out_dir: PathLike, *, format: str = "both", symbols_in_report: Union[int, str] = 5,
           log_scale: bool = False, linear_scale: bool = False) -> Optional[Path]:
    """Render ``report.html`` and the charts of a run or sweep directory
    from its files alone (``atc-bt report DIR``; the same directory always
    renders to the same bytes).

    ``format``: ``"html"`` (charts as inline SVG), ``"png"`` (files in
    ``report_files/``) or ``"both"``. Returns the path of ``report.html``
    (``None`` with ``"png"``). Raises ``ValueError`` with atc-bt's message
    when the directory cannot be rendered (not a result directory, a file
    missing or damaged).
    """
    html = _atc_bt.report_job(os.fspath(out_dir), format=format,
                              symbols_in_report=symbols_in_report,
                              log_scale=log_scale, linear_scale=linear_scale)
    return None if html is None else Path(html)
