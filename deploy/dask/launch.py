#!/usr/bin/env python3
"""Run an atc-bt `run` or `sweep` as N shards on a Dask cluster, then merge.

    python3 deploy/dask/launch.py --shards 3 --workers 2 --out OUT -- \
        run --data data/ --from 2020 --symbols all

Each shard is the same command with `--shard i/N --out PARTS -q` added,
executed with `subprocess` on a Dask worker (a LocalCluster of `--workers`
processes, or an existing cluster with `--scheduler tcp://host:8786`).
A failed shard is retried up to `--retries` times (Dask re-runs the task,
possibly on another worker; the shard replaces its own part atomically).
When every shard succeeded, `atc-bt merge OUT PARTS` runs here; if any
shard still fails, nothing is merged and the exit status is 1.

What must be shared: the atc-bt binary (`--bin`, same path on every
worker), the data (every worker reads `--data`), and the parts directory
(every worker writes into it; the merging machine reads it). The data store
(`--store`) is built by the first command that needs it: build it once
beforehand (`atc-bt data ingest`) or give shards separate stores.
Requires `distributed` (pip install "dask[distributed]").
"""

import argparse
import os
import subprocess
import sys
import time


def run_shard(binary, command, index, count, parts):
    """Runs one shard; raises (so Dask retries) if it fails."""
    argv = [binary, *command, "--shard", f"{index}/{count}", "--out", parts, "-q"]
    t0 = time.time()
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(
            f"shard {index}/{count} exited with {p.returncode}: {p.stderr.strip()[-2000:]}"
        )
    return {"index": index, "seconds": time.time() - t0}


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shards", type=int, required=True, help="number of shards N")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster workers")
    ap.add_argument("--scheduler", help="address of an existing Dask scheduler")
    ap.add_argument("--retries", type=int, default=2, help="retries per failed shard")
    ap.add_argument("--bin", default="atc-bt", help="path of the atc-bt binary")
    ap.add_argument("--parts", help="parts directory [default: OUT.parts]")
    ap.add_argument("--out", required=True, help="merged output directory")
    ap.add_argument("command", nargs=argparse.REMAINDER,
                    help="-- followed by the atc-bt run/sweep arguments")
    a = ap.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command or command[0] not in ("run", "sweep"):
        ap.error("give the atc-bt command after --, e.g. -- run --data data/ --from 2020")
    if a.shards < 1:
        ap.error("--shards must be at least 1")
    if any(x == "--shard" or x.startswith("--shard=") or x == "--out" or x.startswith("--out=")
           for x in command):
        ap.error("the launcher sets --shard and --out itself; give --out/--parts to the launcher")
    binary = os.path.abspath(a.bin) if os.path.sep in a.bin else a.bin
    parts = os.path.abspath(a.parts or (a.out.rstrip("/") + ".parts"))

    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        print("error: the Dask launcher needs `distributed`: pip install 'dask[distributed]'",
              file=sys.stderr)
        return 3

    cluster = None
    if a.scheduler:
        client = Client(a.scheduler)
    else:
        cluster = LocalCluster(n_workers=a.workers, threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
    failed = []
    try:
        futures = [
            client.submit(run_shard, binary, command, i, a.shards, parts,
                          key=f"atc-bt-shard-{i}-of-{a.shards}-{time.time_ns()}",
                          retries=a.retries, pure=False)
            for i in range(a.shards)
        ]
        for f in as_completed(futures):
            try:
                r = f.result()
                print(f"shard {r['index']}/{a.shards} done in {r['seconds']:.1f} s", file=sys.stderr)
            except Exception as e:  # noqa: BLE001 - reported, then exit 1
                failed.append(str(e))
                print(f"error: {e}", file=sys.stderr)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    if failed:
        print(f"error: {len(failed)} shard(s) failed after {a.retries} retries; not merging",
              file=sys.stderr)
        return 1
    t0 = time.time()
    p = subprocess.run([binary, "merge", a.out, parts, "-q"])
    if p.returncode != 0:
        return p.returncode
    print(f"merged {a.shards} parts into {a.out} in {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
