"""compute_many on SYMBOLS x BARS beside `atc-bt bench` on the same size.

    python python/benches/compute_many.py target/release/atc-bt [SYMBOLS BARS REPEAT]

Alternates the two, REPEAT times each, in one session (the machine is
shared: ratios side by side, min and median). The Python side times the
whole call: input copy, the batched engine on all cores with the GIL
released, and the output arrays (4 per series with detail="direction",
17 with "signal"); the close series are a
seeded lognormal random walk made once, outside the timing. `atc-bt
bench` times its batched engine on its own seeded synthetic set (direction
only, no output arrays), best of its own repetitions per call.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import numpy as np

import atc_bt


def main() -> None:
    binary = sys.argv[1]
    symbols, bars, repeat = (int(a) for a in (sys.argv[2:5] if len(sys.argv) >= 5 else (1000, 1500, 5)))
    rng = np.random.default_rng(20240601)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(2e-4, 0.015, (symbols, bars)), axis=1))
    atc_bt.compute_many(closes[:8])  # warm-up: pages, thread pool
    py_s = {"direction": [], "signal": []}
    cli_rate = []
    for _ in range(repeat):
        for detail, times in py_s.items():
            t = time.perf_counter()
            out = atc_bt.compute_many(closes, detail=detail)
            times.append(time.perf_counter() - t)
            assert len(out) == symbols
            del out
        r = subprocess.run(
            [binary, "bench", "--symbols", str(symbols), "--bars", str(bars), "--repeat", "1", "--json"],
            capture_output=True, text=True, check=True,
        )
        cli_rate.append(json.loads(r.stdout)["bars_per_s_median"])
    n = symbols * bars
    cli_s = [n / r for r in cli_rate]
    print(f"{symbols} x {bars} bars, {repeat} alternations")
    for detail, times in py_s.items():
        med = statistics.median(times)
        print(f"compute_many detail={detail:9}: min {min(times)*1e3:7.1f} ms  median {med*1e3:7.1f} ms"
              f"  ({n/med/1e6:.1f}M bars/s)  {med/statistics.median(cli_s):.2f}x bench")
    print(f"atc-bt bench                  : min {min(cli_s)*1e3:7.1f} ms  median {statistics.median(cli_s)*1e3:7.1f} ms"
          f"  ({statistics.median(cli_rate)/1e6:.1f}M bars/s)")

if __name__ == "__main__":
    main()
