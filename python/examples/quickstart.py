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
# ## A small lambda x robustness heatmap
# A crude score per combination: the mean over symbols of the summed
# next-bar log return times the direction (no fees, no fills: atc-bt's
# backtester and `sweep` do that properly). Only to show the shape of a grid
# in polars.

# %%
closes = [s["close"].to_numpy() for s in series.values()]
rets = [np.diff(np.log(c)) for c in closes]
rows = []
for lam in (0.01, 0.02, 0.05, 0.1):
    for rob in ("narrow", "medium", "wide"):
        outs = atc_bt.compute_many(closes, detail="direction", lambda_=lam, robustness=rob)
        score = np.mean([np.sum(o["dir"][:-1] * r) for o, r in zip(outs, rets)])
        rows.append({"lambda": lam, "robustness": rob, "score": score})
heat = pl.DataFrame(rows).pivot(on="robustness", index="lambda", values="score")
print(heat)
