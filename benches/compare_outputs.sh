#!/usr/bin/env bash
# Before/after byte comparison of every file atc-bt writes (issue 18).
#
#   benches/compare_outputs.sh BEFORE_BIN AFTER_BIN [WORK_DIR]
#
# Runs the same commands with each binary, each in its own copy of data/
# (so each builds its own store and cache), then compares every file of
# every output directory byte for byte. Files whose bytes legitimately
# differ between two invocations are compared after removing ONLY these
# fields (see VOLATILE below):
#
#   run.json / sweep.json   command, started_at, timings_ms, atc_bt_version,
#                           data.sources[*].mtime_ns (the synthetic set is
#                           written anew by each binary: its file time)
#   part.json               context.compute_ms, context.sources[*].mtime_ns
#   part-*/_SUCCESS         a checksum over the part's files, part.json
#                           included: same when part.json is, after masking
#   memory.parquet          every value (RSS and times of this process):
#                           its schema (column names and types) is compared
#   report.html             the memory section (RSS over time) is dropped;
#                           the run details' atc-bt version, started at,
#                           command and timings masked (normalize_html)
#   report_files/memory*.png  the memory timeline chart (drawn from RSS)
#
# Both binaries run in the same directory, on copies of data/ that keep
# the files' times, so paths and source stamps recorded are equal.
#
# Needs python3 (with pyarrow for memory.parquet: set PYTHON to a venv's
# python that has it; without pyarrow the schema check is skipped and said).
# Prints one line per file: same | same* (after masking) | DIFF | missing.
# Exit 0 when nothing differs.
set -euo pipefail

BEFORE=$(realpath "$1")
AFTER=$(realpath "$2")
WORK=${3:-$(mktemp -d /tmp/atc-compare.XXXXXX)}
PYTHON=${PYTHON:-python3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$WORK"

produce() {
  local bin=$1 dir=$2
  rm -rf "$dir"
  mkdir -p "$dir"
  # -p keeps the files' times: run.json records each source's mtime.
  cp -rp "$REPO/data" "$dir/data"
  cp -r "$REPO/tests/golden" "$dir/golden"
  (
    cd "$dir"
    export ATC_CACHE_DIR="$dir/cache"
    local q=(--quiet)
    # A run on data/ from 2020 (cold, then a warm rerun restored from the cache).
    "$bin" run --data data --from 2020 --out out/run "${q[@]}"
    "$bin" run --data data --from 2020 --out out/run_warm "${q[@]}"
    "$bin" run --data data --from 2020 --out out/run_nocache --no-cache "${q[@]}"
    # A small synthetic set.
    mkdir -p synth
    "$bin" data synth --symbols 12 --bars 600 --seed 7 --out synth/s12.parquet
    mkdir -p out/synth && cp synth/s12.parquet out/synth/
    "$bin" run --data synth --out out/run_synth --outputs all --no-cache "${q[@]}"
    # Sweeps: with a split, and a walk-forward.
    "$bin" sweep --data data --from 2015 --lambda 0.02,0.05 --decay 0.01,0.03 \
      --split 2020-01-01 --out out/sweep_split --no-cache "${q[@]}"
    "$bin" sweep --data synth --lambda 0.02,0.05 --cutout 0,50 \
      --walk-forward train=1y,test=3m --out out/sweep_wf --no-cache "${q[@]}"
    # Three shards and a merge, for a run and for a sweep.
    for i in 0 1 2; do
      "$bin" run --data synth --shard "$i/3" --out parts_run --no-cache "${q[@]}"
      "$bin" sweep --data synth --lambda 0.02,0.05 --decay 0.01,0.03 --split 2000-12-01 \
        --shard "$i/3" --out parts_sweep --no-cache "${q[@]}"
    done
    "$bin" merge out/merge_run parts_run "${q[@]}"
    "$bin" merge out/merge_sweep parts_sweep "${q[@]}"
    cp -r parts_run out/parts_run
    cp -r parts_sweep out/parts_sweep
    # compute on the golden cases.
    mkdir -p out/compute
    for j in golden/*.json; do
      c=$(basename "$j" .json)
      args=$("$PYTHON" - "$j" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1])).get("params", {})
flag = {"robustness": "--robustness", "lambda": "--lambda", "decay": "--decay",
        "cutout": "--cutout", "long_threshold": "--long-threshold",
        "short_threshold": "--short-threshold"}
out = []
for k, v in p.items():
    key = "--" + k.replace("_", "-")
    out += [key, str(v)]
print("\n".join(out))
EOF
)
      mapfile -t a <<<"$args"
      [ -z "${a[0]:-}" ] && a=()
      "$bin" compute --input "golden/$c.csv" --out "out/compute/$c.csv" "${a[@]}" || echo "compute $c failed" >> out/compute/errors.txt
    done
    # report on a run directory (again, into a copy).
    cp -r out/run_synth out/report_of_run
    "$bin" report out/report_of_run --quiet
  ) > "$dir/log.txt" 2>&1 || { echo "commands failed in $dir (see $dir/log.txt)"; tail -20 "$dir/log.txt"; exit 1; }
}

# Both binaries run in the same directory (paths recorded in manifests
# are then equal); each one's outputs are moved aside afterwards.
produce "$BEFORE" "$WORK/w"
rm -rf "$WORK/before"; mv "$WORK/w" "$WORK/before"
produce "$AFTER" "$WORK/w"
rm -rf "$WORK/after"; mv "$WORK/w" "$WORK/after"

"$PYTHON" - "$WORK/before/out" "$WORK/after/out" <<'EOF'
import json, os, re, sys

before, after = sys.argv[1], sys.argv[2]

# Fields that carry times, durations, command lines, versions or this
# machine's paths: removed before comparing (dotted paths; * = every item).
VOLATILE = {
    "run.json": ["command", "started_at", "timings_ms", "atc_bt_version",
                 "data.sources.*.mtime_ns"],
    "sweep.json": ["command", "started_at", "timings_ms", "atc_bt_version",
                   "data.sources.*.mtime_ns"],
    "part.json": ["context.compute_ms", "context.sources.*.mtime_ns"],
}

# Deliberate changes of issue 18 (manifest format 3 -> 4, part format 2 -> 3),
# undone on the BEFORE side (or masked on both) so that everything else
# must still be equal:
#   format_version          3 -> 4 (run.json, sweep.json), 2 -> 3 (part.json)
#   inputs_hash             one identity function (job::identity): new values
#   sweep.json base         renamed params (one name for resolved parameters)
#   part.json params.strategy / params.base   renamed params.params
#   sweep.json, part.json sources   gain mtime_ns (masked above: file times)
#   report.html             shows the two changed values (format version,
#                           inputs hash) and a sweep's `base` block as `params`
DELIBERATE = ["format_version", "inputs_hash"]

def undo_deliberate(name, j, before):
    for k in DELIBERATE:
        j.pop(k, None)
    if not before:
        return
    if name == "sweep.json" and "base" in j:
        j["params"] = j.pop("base")
    if name == "part.json":
        p = j.get("params", {})
        for old in ("strategy", "base"):
            if old in p:
                p["params"] = p.pop(old)

def drop(obj, path):
    head, _, rest = path.partition(".")
    if isinstance(obj, list) and head == "*":
        for x in obj:
            drop(x, rest) if rest else None
        return
    if not isinstance(obj, dict) or head not in obj:
        return
    if rest:
        drop(obj[head], rest)
    else:
        del obj[head]

def normalize_html(text):
    # The memory section is this process's RSS over time: dropped whole.
    text = re.sub(r'<section id="memory">.*?</section>', "<memory>", text, flags=re.S)
    # The run details' time, command line and durations (and version).
    text = re.sub(r"(<dt>(atc-bt version|started at|command|timings)</dt>\s*<dd>).*?</dd>",
                  r"\1<volatile></dd>", text, flags=re.S)
    # Deliberate: the format version and inputs hash values; the resolved
    # parameters' block (`base` before, `params` after, listed in a
    # different place): the blocks are compared as a set.
    text = re.sub(r"(<dt>(format version|inputs hash)</dt>\s*<dd>)[^<]*", r"\1<deliberate>", text)
    blocks = sorted((("params" if n == "base" else n), b) for n, b in
                    re.findall(r"<h3>(params|grid|base)</h3>\s*<pre>(.*?)</pre>", text, flags=re.S))
    text = re.sub(r"<h3>(params|grid|base)</h3>\s*<pre>(.*?)</pre>", "", text, flags=re.S)
    return text + repr(blocks)

def parquet_schema(path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    return str(pq.read_schema(path))

def files(root):
    out = set()
    for d, _, fs in os.walk(root):
        for f in fs:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out

rows = []
bad = 0
for rel in sorted(files(before) | files(after), key=lambda r: (os.path.basename(r) == "_SUCCESS", r)):
    a, b = os.path.join(before, rel), os.path.join(after, rel)
    if not (os.path.exists(a) and os.path.exists(b)):
        rows.append(("missing " + ("after" if os.path.exists(a) else "before"), rel)); bad += 1
        continue
    ba, bb = open(a, "rb").read(), open(b, "rb").read()
    if ba == bb:
        rows.append(("same", rel)); continue
    name = os.path.basename(rel)
    if name in VOLATILE:
        ja, jb = json.loads(ba), json.loads(bb)
        for p in VOLATILE[name]:
            drop(ja, p); drop(jb, p)
        undo_deliberate(name, ja, True); undo_deliberate(name, jb, False)
        if ja == jb:
            rows.append(("same*", rel)); continue
        keys = sorted(k for k in set(ja) | set(jb) if ja.get(k) != jb.get(k))
        rows.append(("DIFF " + ",".join(keys), rel)); bad += 1; continue
    if name == "memory.parquet":
        sa, sb = parquet_schema(a), parquet_schema(b)
        if sa is None:
            rows.append(("same* (no pyarrow: schema not checked)", rel)); continue
        rows.append(("same* (schema)" if sa == sb else "DIFF schema", rel)); bad += sa != sb; continue
    if name == "_SUCCESS":
        # A part's checksum over its files, part.json included (whose
        # compute_ms is a duration): equal iff part.json is equal after masking.
        pj = os.path.join(os.path.dirname(rel), "part.json")
        ok = [r for r in rows if r[1] == pj and r[0].startswith("same")]
        rows.append(("same* (checksum of part.json)" if ok else "DIFF", rel)); bad += not ok; continue
    if name.startswith("memory") and name.endswith(".png"):
        rows.append(("same* (memory chart)", rel)); continue
    if name.endswith(".html"):
        if normalize_html(ba.decode()) == normalize_html(bb.decode()):
            rows.append(("same*", rel)); continue
    if name == "files.json":
        # report_files/files.json lists the charts; same set expected
        pass
    rows.append(("DIFF", rel)); bad += 1

for status, rel in rows:
    print(f"{status:<40} {rel}")
print(f"\n{len(rows)} files: {sum(r[0]=='same' for r in rows)} identical, "
      f"{sum(r[0].startswith('same*') for r in rows)} identical after masking, {bad} different or missing")
sys.exit(1 if bad else 0)
EOF
