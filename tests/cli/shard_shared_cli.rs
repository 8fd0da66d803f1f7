//! Shared cash (`--allocation shared`) and `--signals FILE` across shards:
//! the shards store signals (and, for shared cash, the bars the account
//! reads), `merge` runs the account once, and every file it writes equals
//! the single machine's (run.json after its per-process fields); parts of
//! different kinds or signals files are refused naming the part; a
//! signals run's report says what drove it.

use std::path::{Path, PathBuf};

use crate::common::*;
use predicates::prelude::*;

/// Files `merge` writes that must be byte-identical to one machine's.
const SAME: [&str; 4] = [
    "metrics.json",
    "equity.parquet",
    "trades.parquet",
    "signals.parquet",
];

/// run.json fields that depend on the process, not the results: what one
/// machine and a merge legitimately write differently.
const PER_PROCESS: [&str; 9] = [
    "command",
    "started_at",
    "timings_ms",
    "threads",
    "shards",
    "cache",
    "files",
    "outputs",
    "atc_bt_version",
];

/// Nine walks of different lengths: one starts late, one ends early (its
/// data ends inside the window), so windows and the timeline are ragged.
fn data(dir: &Path) -> PathBuf {
    let series: Vec<Series> = (0..9)
        .map(|k| {
            let mut s = walk(&format!("S{k}"), 70 + k, 320 + 9 * k as usize);
            if k == 4 {
                s.ts.drain(..120);
                s.open.drain(..120);
                s.close.drain(..120);
            }
            if k == 7 {
                s.ts.truncate(250);
                s.open.truncate(250);
                s.close.truncate(250);
            }
            s
        })
        .collect();
    let path = dir.join("d.parquet");
    write_ohlcv(&path, &series);
    path
}

fn run(dir: &Path, data: &Path, args: &[&str], out: &Path) -> assert_cmd::assert::Assert {
    atc(dir)
        .args(["run", "-q", "--no-report", "--no-cache", "--data"])
        .arg(data)
        .arg("--store")
        .arg(dir.join("store"))
        .args(args)
        .arg("--out")
        .arg(out)
        .assert()
}

fn shards(dir: &Path, data: &Path, args: &[&str], n: u32, parts: &Path) {
    for i in 0..n {
        let spec = format!("{i}/{n}");
        let mut a = args.to_vec();
        a.extend(["--shard", &spec]);
        run(dir, data, &a, parts).success();
    }
}

fn merge(dir: &Path, parts: &[&Path], out: &Path) -> assert_cmd::assert::Assert {
    atc(dir)
        .args(["merge", "-q", "--no-report"])
        .arg(out)
        .args(parts)
        .assert()
}

/// `run.json` without its per-process fields; `tz` of each series too
/// when `tz` is false (an equal-split merge writes the calendar's zone,
/// null for UTC, where one machine writes the data index's "UTC": older
/// than this change, left as it is so equal-split merges keep their
/// bytes).
fn masked_run_json(dir: &Path, tz: bool) -> serde_json::Value {
    let mut v = json(&dir.join("run.json"));
    let m = v.as_object_mut().unwrap();
    for k in PER_PROCESS {
        m.remove(k);
    }
    let data = m["data"].as_object_mut().unwrap();
    data.remove("store");
    if !tz {
        for s in data["series"].as_array_mut().unwrap() {
            s.as_object_mut().unwrap().remove("tz");
        }
    }
    v
}

fn assert_identical(single: &Path, merged: &Path) {
    let shared = json(&single.join("run.json"))["params"]["execution"]["allocation"] == "shared";
    for f in SAME {
        let a = std::fs::read(single.join(f)).unwrap();
        let b = std::fs::read(merged.join(f)).unwrap();
        assert!(
            a == b,
            "{f} differs between {} and {}",
            single.display(),
            merged.display()
        );
    }
    assert_eq!(
        masked_run_json(single, shared),
        masked_run_json(merged, shared)
    );
}

/// One machine against 2 and 3 shards + merge, on shared cash with a
/// position limit, with a weekly rebalance, with stops (high and low go
/// through the parts), long-short.
#[test]
fn shared_cash_merged_from_shards_equals_one_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let d = data(p);
    let cases: [&[&str]; 3] = [
        &["--max-positions", "3", "--fee-bps", "10"],
        &[
            "--max-positions",
            "4",
            "--rebalance",
            "weekly",
            "--mode",
            "long-short",
        ],
        &[
            "--max-positions",
            "2",
            "--stop-loss",
            "3",
            "--trailing-stop",
            "5",
        ],
    ];
    for (c, extra) in cases.iter().enumerate() {
        let mut args = vec!["--allocation", "shared", "--from", "2019-03-01"];
        args.extend_from_slice(extra);
        let single = p.join(format!("single-{c}"));
        run(p, &d, &args, &single).success();
        let run_json = json(&single.join("run.json"));
        assert!(run_json["symbols"].as_u64().unwrap() >= 8, "{run_json}");
        for n in [2, 3] {
            let parts = p.join(format!("parts-{c}-{n}"));
            shards(p, &d, &args, n, &parts);
            let part0 = json(&parts.join(format!("part-0-of-{n}/part.json")));
            assert_eq!(part0["format_version"], 5);
            assert!(part0["book"].is_array(), "{part0}");
            assert!(parts.join(format!("part-0-of-{n}/book.parquet")).is_file());
            let merged = p.join(format!("merged-{c}-{n}"));
            merge(p, &[&parts], &merged).success();
            assert_identical(&single, &merged);
        }
    }
    // More shards than symbols: most parts hold an empty book, still exact.
    let args = ["--allocation", "shared", "--max-positions", "3"];
    let single = p.join("single-many");
    run(p, &d, &args, &single).success();
    let parts = p.join("parts-many");
    shards(p, &d, &args, 20, &parts);
    let merged = p.join("merged-many");
    merge(p, &[&parts], &merged).success();
    assert_identical(&single, &merged);
}

/// A run's own signals file on 2 and 3 shards, equal-split and shared:
/// the merge equals the single run on the same file, run.json names the
/// file, and the parts record it.
#[test]
fn own_signals_on_shards_merge_to_one_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let d = data(p);
    run(p, &d, &["--mode", "long-short"], &p.join("atc")).success();
    let file = p.join("atc/signals.parquet");
    let file = file.to_str().unwrap();
    for (c, alloc) in [
        &["--mode", "long-short"][..],
        &["--allocation", "shared", "--max-positions", "3"],
    ]
    .iter()
    .enumerate()
    {
        let mut args = vec!["--signals", file];
        args.extend_from_slice(alloc);
        let single = p.join(format!("single-{c}"));
        run(p, &d, &args, &single).success();
        assert_eq!(json(&single.join("run.json"))["signals"]["path"], file);
        for n in [2, 3] {
            let parts = p.join(format!("parts-{c}-{n}"));
            shards(p, &d, &args, n, &parts);
            let part0 = json(&parts.join(format!("part-1-of-{n}/part.json")));
            assert_eq!(part0["signals"]["path"], file);
            assert_eq!(part0["format_version"], 5);
            let merged = p.join(format!("merged-{c}-{n}"));
            merge(p, &[&parts], &merged).success();
            assert_identical(&single, &merged);
        }
    }
}

/// Parts of an equal-split and a shared run, or of two signals files, or
/// with and without one, are refused before anything is written, naming
/// the odd part and what differs.
#[test]
fn merge_refuses_mixed_allocations_and_signals_files_naming_the_part() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let d = data(p);
    run(p, &d, &[], &p.join("atc")).success();
    let a = p.join("atc/signals.parquet");
    let b = p.join("b.parquet");
    std::fs::copy(&a, &b).unwrap();
    // Same rows, other bytes: append nothing but a different file name is
    // not enough (the identity is the content); write it again shifted.
    run(p, &d, &["--lambda", "0.05"], &p.join("atc2")).success();
    std::fs::copy(p.join("atc2/signals.parquet"), &b).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let part = |dir: &str, i: u32, args: &[&str]| -> PathBuf {
        let mut v = args.to_vec();
        let spec = format!("{i}/2");
        v.extend(["--shard", &spec]);
        run(p, &d, &v, &p.join(dir)).success();
        p.join(dir).join(format!("part-{i}-of-2"))
    };
    let cases: [(&[&str], &[&str], &str); 3] = [
        (
            &[],
            &["--allocation", "shared"],
            "a shared-cash part where the others are equal-split parts",
        ),
        (
            &["--signals", a],
            &["--signals", b],
            "made from signals file",
        ),
        (&[], &["--signals", a], "made from signals file"),
    ];
    for (k, (x, y, needle)) in cases.iter().enumerate() {
        let p0 = part(&format!("x{k}"), 0, x);
        let p1 = part(&format!("y{k}"), 1, y);
        let out = p.join(format!("m{k}"));
        merge(p, &[&p0, &p1], &out).failure().stderr(
            predicate::str::contains(*needle)
                .and(predicate::str::contains("foreign part"))
                .and(predicate::str::contains(p1.to_str().unwrap())),
        );
        assert!(!out.exists(), "a refused merge wrote {}", out.display());
    }
}

/// The report of a run on a signals file names the file where an ATC
/// run's names the ATC (page title, the equity chart's legend, the symbol
/// charts' signal panel).
#[test]
fn signals_run_report_is_labelled_with_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let d = data(p);
    let atc_out = p.join("atc");
    atc(p)
        .args(["run", "-q", "--no-cache", "--data"])
        .arg(&d)
        .arg("--out")
        .arg(&atc_out)
        .assert()
        .success();
    let own = p.join("own");
    atc(p)
        .args(["run", "-q", "--no-cache", "--data"])
        .arg(&d)
        .arg("--signals")
        .arg(atc_out.join("signals.parquet"))
        .arg("--out")
        .arg(&own)
        .assert()
        .success();
    let page = std::fs::read_to_string(own.join("report.html")).unwrap();
    assert!(
        page.contains("Backtest report · Signals: own file signals.parquet"),
        "no signals label in the title"
    );
    assert!(page.contains("Portfolio (Signals: own file signals.parquet)"));
    assert!(!page.contains("ATC backtest report"));
    // The symbol charts caption the signal as the file's, without the
    // ATC's thresholds.
    let svgs: Vec<String> = std::fs::read_dir(own.join("report_files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "svg") && p.to_string_lossy().contains("sym-")
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(!svgs.is_empty());
    for svg in &svgs {
        assert!(svg.contains("Signal strength (Signals: own file signals.parquet)"));
        assert!(!svg.contains("ATC average signal"));
    }
    let atc_page = std::fs::read_to_string(atc_out.join("report.html")).unwrap();
    assert!(atc_page.contains("ATC backtest report"));
    assert!(atc_page.contains("Portfolio (ATC)"));
}

/// F9: a shared-cash shard run again into the same parts directory (a
/// retry) replaces its own part, `book.parquet` included, as an
/// equal-split shard's retry does; the merge still equals one machine.
#[test]
fn retried_shared_shard_replaces_its_own_part() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let d = data(p);
    let args = ["--allocation", "shared", "--max-positions", "3"];
    let parts = p.join("parts");
    shards(p, &d, &args, 2, &parts);
    assert!(parts.join("part-0-of-2/book.parquet").is_file());
    let before = std::fs::read(parts.join("part-0-of-2/book.parquet")).unwrap();
    run(p, &d, &[&args[..], &["--shard", "0/2"]].concat(), &parts).success();
    assert_eq!(
        std::fs::read(parts.join("part-0-of-2/book.parquet")).unwrap(),
        before
    );
    let single = p.join("single");
    run(p, &d, &args, &single).success();
    let merged = p.join("merged");
    merge(p, &[&parts], &merged).success();
    assert_identical(&single, &merged);
}

/// F6: shards that name one signals file by different paths (relative,
/// `./`, absolute) made their parts from the same input: the merge
/// compares the file's content (size and blake3), as it does `--data`,
/// and equals one machine on that file.
#[test]
fn shards_naming_one_signals_file_by_other_paths_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let d = data(p);
    run(p, &d, &[], &p.join("atc")).success();
    std::fs::copy(p.join("atc/signals.parquet"), p.join("sig.parquet")).unwrap();
    let abs = p.join("sig.parquet");
    let names = ["sig.parquet", "./sig.parquet", abs.to_str().unwrap()];
    let parts = p.join("parts");
    for (i, name) in names.iter().enumerate() {
        let spec = format!("{i}/3");
        run(p, &d, &["--signals", name, "--shard", &spec], &parts).success();
    }
    let single = p.join("single");
    run(p, &d, &["--signals", "sig.parquet"], &single).success();
    let merged = p.join("merged");
    merge(p, &[&parts], &merged).success();
    for f in SAME {
        assert_eq!(
            std::fs::read(single.join(f)).unwrap(),
            std::fs::read(merged.join(f)).unwrap(),
            "{f}"
        );
    }
}

/// F3: parts do not carry `--outputs` and `merge` writes the default
/// files, so a shard with other outputs is refused, naming the flag and
/// the fix, and writes no part; the default still shards.
#[test]
fn merge_writes_what_the_shards_outputs_ask_or_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let d = data(p);
    for alloc in [&[][..], &["--allocation", "shared"]] {
        for outputs in ["all", "metrics"] {
            let parts = p.join(format!("parts-{}-{outputs}", alloc.len()));
            let args = [alloc, &["--outputs", outputs, "--shard", "0/2"]].concat();
            run(p, &d, &args, &parts).failure().stderr(
                predicate::str::contains("cannot be used with --shard")
                    .and(predicate::str::contains("drop --outputs")),
            );
            assert!(!parts.exists(), "a refused shard wrote {}", parts.display());
        }
    }
    let parts = p.join("parts-default");
    shards(p, &d, &[], 2, &parts);
    merge(p, &[&parts], &p.join("merged")).success();
}
