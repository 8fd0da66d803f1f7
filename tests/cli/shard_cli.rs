//! `--shard i/N` + `atc-bt merge` give byte-for-byte the single-machine
//! `metrics.json` / `results.parquet`, on `data/` and on a synthetic set;
//! bad parts and bad `--shard` values are clear errors that write nothing.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use predicates::prelude::*;

/// 14 seeded random walks of different lengths (so some symbols have no
/// bars in a late window and the union of timestamps is ragged).
fn synthetic(dir: &Path) -> PathBuf {
    let series: Vec<Series> = (0..14)
        .map(|k| {
            let mut s = walk(&format!("S{k:02}"), 100 + k as u64, 260 + 17 * k);
            if k % 5 == 4 {
                // A late starter: drop its first 150 bars.
                s.ts.drain(..150);
                s.open.drain(..150);
                s.close.drain(..150);
            }
            s
        })
        .collect();
    let path = dir.join("synth.parquet");
    write_ohlcv(&path, &series);
    path
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs `args` once on one machine and as `n` shards + merge; returns the
/// two output directories.
fn single_and_sharded(
    cmd: &str,
    data: &Path,
    args: &[&str],
    n: u32,
    tmp: &Path,
) -> (PathBuf, PathBuf) {
    let store = tmp.join("store");
    let single = tmp.join(format!("{cmd}-single"));
    atc(&root())
        .arg(cmd)
        .arg("--data")
        .arg(data)
        .arg("--store")
        .arg(&store)
        .args(args)
        .arg("--out")
        .arg(&single)
        .arg("-q")
        .assert()
        .success();
    let parts = tmp.join(format!("{cmd}-parts-{n}"));
    for i in 0..n {
        atc(&root())
            .arg(cmd)
            .arg("--data")
            .arg(data)
            .arg("--store")
            .arg(&store)
            .args(args)
            .arg("--out")
            .arg(&parts)
            .args(["--shard", &format!("{i}/{n}"), "-q"])
            .assert()
            .success();
    }
    let merged = tmp.join(format!("{cmd}-merged-{n}"));
    atc(&root())
        .arg("merge")
        .arg(&merged)
        .arg(&parts)
        .arg("-q")
        .assert()
        .success();
    (single, merged)
}

fn assert_run_identical(single: &Path, merged: &Path) {
    for f in [
        "metrics.json",
        "equity.parquet",
        "trades.parquet",
        "signals.parquet",
    ] {
        assert!(
            bytes(&single.join(f)) == bytes(&merged.join(f)),
            "{f} differs between {} and {}",
            single.display(),
            merged.display()
        );
    }
}

#[test]
fn run_shards_merge_to_the_single_run_on_bundled_data() {
    let tmp = tempfile::tempdir().unwrap();
    for n in 1..=3 {
        let (single, merged) = single_and_sharded(
            "run",
            &root().join("data"),
            &["--from", "2020", "--symbols", "all"],
            n,
            tmp.path(),
        );
        assert_run_identical(&single, &merged);
    }
}

#[test]
fn run_shards_merge_to_the_single_run_on_synthetic_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path());
    for n in 1..=3 {
        let (single, merged) = single_and_sharded(
            "run",
            &data,
            &["--from", "2019-06-01", "--mode", "long-short"],
            n,
            tmp.path(),
        );
        assert_run_identical(&single, &merged);
    }
    // More shards than symbols: most parts are empty, still exact.
    let (single, merged) =
        single_and_sharded("run", &data, &["--from", "2019-06-01"], 20, tmp.path());
    assert_run_identical(&single, &merged);
}

#[test]
fn sweep_shards_merge_to_the_single_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path());
    let args = [
        "--lambda",
        "0.01,0.03",
        "--decay",
        "0.01,0.05",
        "--ema-len",
        "20,28",
        "--from",
        "2019-03-01",
        "--split",
        "2019-09-01",
    ];
    for n in [2, 3] {
        let (single, merged) = single_and_sharded("sweep", &data, &args, n, tmp.path());
        for f in [
            "results.parquet",
            "heatmap_full.json",
            "heatmap_in.json",
            "heatmap_out.json",
            "best_equity.parquet",
        ] {
            assert!(
                bytes(&single.join(f)) == bytes(&merged.join(f)),
                "{f} differs with {n} shards"
            );
        }
    }
}

/// Two complete shards of a synthetic run in `parts`.
fn two_parts(tmp: &Path, extra: &[&str], parts: &Path) -> PathBuf {
    let data = tmp.join("synth.parquet");
    if !data.exists() {
        synthetic(tmp);
    }
    for i in 0..2 {
        atc(&root())
            .arg("run")
            .arg("--data")
            .arg(&data)
            .arg("--store")
            .arg(tmp.join("store"))
            .args(extra)
            .arg("--out")
            .arg(parts)
            .args(["--shard", &format!("{i}/2"), "-q"])
            .assert()
            .success();
    }
    data
}

fn merge_fails(tmp: &Path, parts: &[&Path], needle: &str) {
    let out = tmp.join("merged");
    let mut c = atc(&root());
    c.arg("merge").arg(&out);
    for p in parts {
        c.arg(p);
    }
    c.assert()
        .failure()
        .stderr(predicate::str::contains(needle));
    assert!(!out.exists(), "merge wrote {} on error", out.display());
    let leftovers: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".merged"))
        .collect();
    assert!(leftovers.is_empty(), "temporary output left behind");
}

#[test]
fn merge_refuses_bad_parts_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let parts = t.join("parts");
    two_parts(t, &[], &parts);
    let p0 = parts.join("part-0-of-2");
    let p1 = parts.join("part-1-of-2");

    // Missing: only part 0.
    merge_fails(t, &[&p0], "missing part(s) 1 of 2");

    // Duplicate: part 0 twice (a copy elsewhere).
    let dup = t.join("copy").join("part-0-of-2");
    std::fs::create_dir_all(&dup).unwrap();
    for e in std::fs::read_dir(&p0).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dup.join(e.file_name())).unwrap();
    }
    merge_fails(t, &[&p0, &p1, &dup], "both are part 0 of 2");

    // Foreign: part 1 from other parameters.
    let other = t.join("other");
    two_parts(t, &["--fee-bps", "9"], &other);
    let odd = other.join("part-1-of-2");
    merge_fails(t, &[&p0, &p1, &odd], "foreign part");
    merge_fails(t, &[&p0, &odd], &odd.display().to_string());
    merge_fails(t, &[&p0, &odd], "fee_bps");

    // Half-written: no success marker.
    std::fs::remove_file(p1.join("_SUCCESS")).unwrap();
    merge_fails(t, &[&parts], "half-written part");
    merge_fails(t, &[&p0, &p1], &p1.display().to_string());

    // Not a part at all.
    let empty = t.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    merge_fails(t, &[&empty], "no parts found");
}

#[test]
fn a_retried_shard_replaces_its_part() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let parts = t.join("parts");
    let data = two_parts(t, &[], &parts);
    let before = bytes(&parts.join("part-1-of-2").join("curves.parquet"));
    atc(&root())
        .arg("run")
        .arg("--data")
        .arg(&data)
        .arg("--store")
        .arg(t.join("store"))
        .arg("--out")
        .arg(&parts)
        .args(["--shard", "auto/2", "-q"])
        .env("JOB_COMPLETION_INDEX", "1")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .assert()
        .success();
    assert_eq!(
        before,
        bytes(&parts.join("part-1-of-2").join("curves.parquet"))
    );
    let names: Vec<String> = std::fs::read_dir(&parts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "only the two parts: {names:?}");
}

#[test]
fn bad_shard_values_name_the_flag_and_range() {
    let tmp = tempfile::tempdir().unwrap();
    for (spec, needle) in [
        ("3/3", "0 to 2"),
        ("x/0", "--shard"),
        ("1/0", "count at least 1"),
        ("abc", "INDEX/COUNT"),
        ("auto/2", "JOB_COMPLETION_INDEX"),
    ] {
        for cmd in ["run", "sweep"] {
            let mut c = atc(&root());
            c.args([cmd, "--shard", spec, "--out"])
                .arg(tmp.path().join("o"))
                .env_remove("JOB_COMPLETION_INDEX")
                .env_remove("AWS_BATCH_JOB_ARRAY_INDEX");
            if cmd == "sweep" {
                c.args(["--lambda", "0.01,0.02"]);
            }
            c.assert()
                .failure()
                .stderr(predicate::str::contains("--shard").and(predicate::str::contains(needle)));
        }
    }
    assert!(!tmp.path().join("o").exists());
}

#[test]
fn merge_refuses_a_part_with_a_flipped_bit_naming_the_part_file_and_shard() {
    // Fault (attack on main): one bit flipped in the middle of a part's
    // curves.parquet and `merge` succeeded with other metrics: part.json
    // carried no checksums. `_SUCCESS` now records the blake3 of every
    // file the part wrote, and merge verifies them.
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let parts = t.join("parts");
    two_parts(t, &[], &parts);
    let p1 = parts.join("part-1-of-2");
    let curves = p1.join("curves.parquet");
    let mut b = bytes(&curves);
    let mid = b.len() / 2;
    b[mid] ^= 0x10;
    std::fs::write(&curves, &b).unwrap();
    merge_fails(t, &[&parts], "rerun shard 1 of 2");
    merge_fails(t, &[&parts], "curves.parquet");
    merge_fails(t, &[&parts], &p1.display().to_string());
    b[mid] ^= 0x10;
    std::fs::write(&curves, &b).unwrap();
    atc(&root())
        .arg("merge")
        .arg(t.join("merged"))
        .arg(&parts)
        .assert()
        .success();
}

#[test]
fn merging_old_format_parts_says_which_parts_are_old_and_to_rerun_them() {
    // Fault (attack on main): parts of an older part format gave serde's
    // "strategy: invalid type: null", or blamed the newer parts.
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let parts = t.join("parts");
    two_parts(t, &[], &parts);
    let p0 = parts.join("part-0-of-2");
    let p1 = parts.join("part-1-of-2");
    // p0 as an older binary wrote it: format 2, without fields this one has.
    let hp = p0.join("part.json");
    let mut v: serde_json::Value = serde_json::from_slice(&bytes(&hp)).unwrap();
    v["format_version"] = 2.into();
    v["params"] = serde_json::Value::Null;
    std::fs::write(&hp, serde_json::to_vec(&v).unwrap()).unwrap();
    for order in [[p0.as_path(), p1.as_path()], [p1.as_path(), p0.as_path()]] {
        merge_fails(t, &order, "part format 2 was written by an older atc-bt");
        merge_fails(t, &order, "rerun those shards with this version");
        merge_fails(t, &order, &p0.display().to_string());
    }
}
