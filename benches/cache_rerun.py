#!/usr/bin/env python3
"""End-to-end wall time of `atc-bt run` with --no-cache, a cold cache and a
warm cache (issue 7's rerun target), each run into its own --out.

usage (from a directory holding data/, e.g. the repository root):
    python3 benches/cache_rerun.py target/release/atc-bt 21 [-- run flags...]
e.g. `... 21 -- --from 2020 --symbols all` or `... 21 -- --from 2020 --no-report`.
"Cold" deletes the cache (data/.atc-cache, and any <store>/.atc-cache)
before each run (the data store itself stays built: one untimed run builds
it first); "warm" reruns the command the cold run just stored. The three
modes are interleaved (no-cache, cold, warm per round), so load from other
processes falls on all three alike. Prints median, min and max per mode and
the two ratios. A fourth mode, "fees", follows each warm run with the same
command at another fee (`--fee-bps 7`): the run entry misses and the
per-series `signals` entries the cold run stored hit, so only the backtest
is recomputed (what the signals kind is for).
"""
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main():
    binary, n = sys.argv[1], int(sys.argv[2])
    flags = sys.argv[4:] if len(sys.argv) > 3 and sys.argv[3] == "--" else sys.argv[3:]
    outs = tempfile.mkdtemp(prefix="atc-rerun-")
    devnull = open(os.devnull, "w")
    med = {}
    modes = ["nocache", "cold", "warm", "fees"]
    times = {m: [] for m in modes}
    try:
        subprocess.run([binary, "run", *flags, "--no-cache", "--out", f"{outs}/store"],
                       stdout=devnull, stderr=devnull, check=True)
        for i in range(n):
            for mode in modes:
                args = [binary, "run", *flags, "--out", f"{outs}/{mode}-{i}"]
                if mode == "nocache":
                    args.append("--no-cache")
                if mode == "fees":
                    args += ["--fee-bps", "7"]
                if mode == "cold":
                    for c in glob.glob("data/.atc-cache") + glob.glob("data/.atc-store/*/.atc-cache"):
                        shutil.rmtree(c)
                t = time.perf_counter()
                subprocess.run(args, stdout=devnull, stderr=devnull, check=True)
                times[mode].append((time.perf_counter() - t) * 1e3)
                shutil.rmtree(f"{outs}/{mode}-{i}", ignore_errors=True)
        for mode in modes:
            t = times[mode]
            med[mode] = statistics.median(t)
            print(f"{mode:8} median {med[mode]:9.1f} ms  min {min(t):9.1f}  max {max(t):9.1f}  (n={len(t)})")
        print(f"warm is {med['cold'] / med['warm']:.1f}x faster than cold; "
              f"cold is {100 * (med['cold'] / med['nocache'] - 1):+.0f}% vs --no-cache; "
              f"fees (signals hit) is {med['nocache'] / med['fees']:.1f}x faster than --no-cache")
    finally:
        shutil.rmtree(outs, ignore_errors=True)


if __name__ == "__main__":
    main()
