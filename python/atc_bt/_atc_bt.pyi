"""Stubs of the compiled module ``atc_bt._atc_bt`` (python/src/lib.rs).

Call the wrappers in ``atc_bt`` instead: they normalise inputs and carry
the documentation. Parameters are the spec's (``spec/ATC.md`` sec. 2).
"""

import numpy as np
import numpy.typing as npt

__version__: str

class DataError(ValueError):
    """Data atc-bt refuses (a close series, or a run/sweep's data); the message names the file, symbol, bar and value."""

def compute_full(
    close: npt.NDArray[np.float64], **params: float | int | str
) -> dict[str, np.ndarray]:
    """One contiguous float64 series -> the 179 golden columns."""

def compute_many_raw(
    closes: list[npt.NDArray[np.float64]], detail: str, **params: float | int | str
) -> list[dict[str, np.ndarray]]:
    """Many float64 series -> one dict each (``detail``: "direction", "signal" or "full")."""

def resolve_params(**params: float | int | str) -> dict[str, float | int | str]:
    """Defaults filled in and validated; spec names (``lambda``)."""

def run_job(data: str, **options: object) -> tuple[str, list[str]]:
    """``atc-bt run`` through the job layer -> (run directory, messages).

    ``options``: the keywords of ``atc_bt.run`` (e.g. ``stop_loss=4``,
    ``allocation="shared"``, ``max_positions=5``, ``rebalance="weekly"``).
    """

def sweep_job(
    data: str, grid: list[tuple[str, str]], **options: object
) -> tuple[str, list[int], list[str]]:
    """``atc-bt sweep`` through the job layer -> (sweep directory, ranking, messages)."""

def scan_job(data: str, **options: object) -> tuple[list[dict[str, object]], list[str]]:
    """``atc-bt scan`` through the job layer -> (rows by rank, messages)."""

def report_job(out_dir: str, **options: object) -> str | None:
    """``atc-bt report`` -> the path of report.html (None for PNG only)."""
