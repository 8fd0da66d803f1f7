# %% [markdown]
# # atc-bt from Python: a notebook-style tour
#
# Run it as a script (`python python/examples/quickstart.py` from the
# repository root, after `pip install ./python polars`) or cell by cell in
# VS Code / Jupyter (`# %%` cells). It reads the bundled sample data in
# `data/` with polars and calls the engine through `atc_bt` (no CLI).

# %%
from pathlib import Path

import numpy as np
import polars as pl

import atc_bt

DATA = Path(__file__).resolve().parents[2] / "data"
bars = pl.read_parquet(DATA / "sp500_constituents_daily_2009_2010.parquet")
print(bars.head())

# %% [markdown]
# ## One series: every intermediate of the indicator
# `compute` returns the 179 golden CSV columns as NumPy arrays (spec
# `spec/ATC.md` sec. 15); a polars frame is one line away.

# %%
aapl = bars.filter(pl.col("symbol") == "AAPL").sort("ts")
out = atc_bt.compute(aapl["close"].to_numpy(), lambda_=0.02, decay=0.03, robustness="medium")
frame = pl.DataFrame({"ts": aapl["ts"], **{k: out[k] for k in ("close", "L1.EMA", "eq2.EMA", "avg", "dir")}})
print(frame.tail(5))
print("bars long / short / none:", [(out["dir"] == d).sum() for d in (1, -1, 0)])

# %% [markdown]
# ## Many series at once
# `compute_many` runs the batched engine over every symbol (all cores, the
# GIL released) and gives `avg`, `dir`, the layer-1 signals and layer-2
# equities of each.

# %%
series = bars.sort("symbol", "ts").partition_by("symbol", as_dict=True)
names = [k[0] for k in series]
many = atc_bt.compute_many([s["close"].to_numpy() for s in series.values()])
latest = pl.DataFrame({"symbol": names, "avg": [o["avg"][-1] for o in many], "dir": [o["dir"][-1] for o in many]})
print(latest.sort("avg", descending=True).head(10))

# %% [markdown]
# ## A backtest: `run`
# `atc_bt.run` is `atc-bt run` as a function call (the library's job layer,
# not the command): the same result directory, returned as a `Run` whose
# frames are polars. Keywords are the command's flags (`fee_bps`, `mode`,
# `start`/`end` for `--from`/`--to`, ...). The directories go to a
# temporary folder here; by default they land in `reports/`.

# %%
import tempfile

OUT = Path(tempfile.mkdtemp(prefix="atc-bt-quickstart-"))
SP500 = DATA / "sp500_constituents_daily_2009_2010.parquet"
run = atc_bt.run(SP500, symbols=["AAPL", "MSFT", "JPM", "XOM"], fee_bps=5, mode="long-only",
                 out=OUT / "run", report=False)
p, b = run.metrics["portfolio"], run.metrics["benchmark"]
print(f"ATC Sharpe {p['sharpe']:.2f} vs buy & hold {b['sharpe']:.2f}; "
      f"total return {p['total_return']:+.1%} vs {b['total_return']:+.1%}; {p['trades']} trades")

# %% [markdown]
# ## The equity frame
# `equity.parquet`: one row per bar and symbol (`symbol` set) plus the
# `portfolio` and `benchmark` rows (`aggregate` set); `equity` in account
# currency, `position` the held direction. Monthly portfolio equity against
# buy & hold, in polars:

# %%
eq = run.equity
print(eq.head())
monthly = (
    eq.filter(pl.col("aggregate").is_not_null())
    .sort("ts")
    .group_by_dynamic("ts", every="1mo", group_by="aggregate")
    .agg(pl.col("equity").last())
    .pivot(on="aggregate", index="ts", values="equity")
)
print(monthly.tail(6))
print(run.trades.head())

# %% [markdown]
# ## A sweep heatmap: lambda x robustness
# `atc_bt.sweep` backtests every combination of the grid (fees and fills as
# in `run`) and ranks them; `results` holds one row per combination x sample
# x symbol plus the portfolio rows. The heatmap is a pivot of the portfolio
# rows. (A uniform decay leaves the signals unchanged, so lambda and
# robustness make the more telling axes.)

# %%
sweep = atc_bt.sweep(SP500, grid={"lambda": [0.01, 0.02, 0.05, 0.1],
                                  "robustness": ["narrow", "medium", "wide"]},
                     rank_by="sharpe", out=OUT / "sweep", report=False)
portfolio = sweep.results.filter(pl.col("aggregate") == "portfolio")
heat = portfolio.pivot(on="robustness", index="lambda", values="sharpe").sort("lambda")
print(heat)
print(sweep.ranking.select("rank", "lambda", "robustness", "sharpe", "total_return").head(3))
