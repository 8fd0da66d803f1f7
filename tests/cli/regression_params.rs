//! Regression tests of the attack on the parameter registry and grids
//! (issue 18), one per fault, each named after the fault.

use crate::common::*;

use std::path::Path;

/// A temp dir with `data/p.parquet` (2 symbols × 300 bars).
fn setup() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("data")).unwrap();
    write_walks(&t.path().join("data/p.parquet"), "S", 2, 1, 3, 300);
    t
}

/// Runs `atc-bt args…` in `dir` and returns (exit code, stderr).
fn atc_in(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = atc(dir)
        .env_remove("ATC_CACHE_DIR")
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (o.status.code(), err)
}

#[test]
fn huge_moving_average_lengths_are_refused_not_an_abort() {
    let t = setup();
    // 2^32 + 1 made the batched engine reserve 8.6 GB per thread and abort
    // (rc 134); a length near u64::MAX overflowed the derived-length check
    // and was told "valid range is ema_len >= 8".
    for (flag, value) in [
        ("--hma-len", "4294967297"),
        ("--kama-len", "100001"),
        ("--ema-len", "18446744073709551610"),
    ] {
        let name = flag.trim_start_matches("--").replace('-', "_");
        let (code, err) = atc_in(
            t.path(),
            &[
                "run",
                "--no-report",
                "--no-cache",
                "--out",
                "o",
                &format!("{flag}={value}"),
            ],
        );
        assert_eq!(code, Some(1), "{flag}={value}: {err}");
        assert!(
            err.contains(&format!("{name} <= 100000")),
            "{flag}={value}: {err}"
        );
    }
    // The ceiling itself is valid.
    let (code, err) = atc_in(
        t.path(),
        &[
            "run",
            "--no-report",
            "--no-cache",
            "--out",
            "o",
            "--wma-len=100000",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_range_with_too_many_values_is_refused_not_zero_combinations() {
    let t = setup();
    // The value count saturated and wrapped to 0: "0 combinations", a
    // sweep.json without results, and a failed report.
    for axis in [
        "--lambda=0:1:1e-300",
        "--lambda=0:1e20:1",
        "--decay=1e308:-1e308:-1e308",
        "--ema-len=8:18446744073709551615:1",
    ] {
        let (code, err) = atc_in(t.path(), &["sweep", "--no-report", "--out", "s", axis]);
        assert_eq!(code, Some(1), "{axis}: {err}");
        assert!(err.contains("more than 1,000,000 values"), "{axis}: {err}");
        assert!(!t.path().join("s/sweep.json").exists(), "{axis}");
    }
}

#[test]
fn repeated_grid_values_are_refused() {
    let t = setup();
    // Each ran as its own, identical combination (and a range finer than
    // the 12-decimal rounding gave 5 × 0.0 and 6 × 1e-12).
    for axis in [
        "--lambda=0.01,0.01,0.01",
        "--lambda=-0,0",
        "--robustness=wide,WIDE",
        "--lambda=0:1e-12:1e-13",
    ] {
        let (code, err) = atc_in(t.path(), &["sweep", "--no-report", "--out", "s", axis]);
        assert_eq!(code, Some(1), "{axis}: {err}");
        assert!(err.contains("appears more than once"), "{axis}: {err}");
    }
    std::fs::write(
        t.path().join("g.toml"),
        "[grid]\nrobustness = [\"wide\", \"Wide\"]\n",
    )
    .unwrap();
    let (code, err) = atc_in(
        t.path(),
        &["sweep", "--no-report", "--out", "s", "--grid", "g.toml"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("appears more than once"), "{err}");
}

#[test]
fn negative_zero_is_zero_in_manifests_and_cache_keys() {
    let t = setup();
    // `--lambda=-0` was written as -0.0 in run.json and missed the cache
    // entry of `--lambda=0`.
    let (code, err) = atc_in(
        t.path(),
        &["run", "--no-report", "--out", "a", "--lambda=0"],
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = atc_in(
        t.path(),
        &["run", "--no-report", "--out", "b", "--lambda=-0"],
    );
    assert_eq!(code, Some(0), "{err}");
    let b = std::fs::read_to_string(t.path().join("b/run.json")).unwrap();
    assert!(!b.contains("-0.0"), "{b}");
    let (a, b) = (
        json(&t.path().join("a/run.json")),
        json(&t.path().join("b/run.json")),
    );
    assert_eq!(a["params"], b["params"]);
    assert_eq!(a["inputs_hash"], b["inputs_hash"]);
    // The second run was served from the first one's cache entry.
    assert_eq!(b["cache"]["kinds"]["run"]["hits"], 1, "{}", b["cache"]);
    std::fs::write(t.path().join("s.toml"), "[atc]\ndecay = -0.0\n").unwrap();
    let (code, err) = atc_in(
        t.path(),
        &[
            "run",
            "--no-report",
            "--no-cache",
            "--out",
            "c",
            "--strategy",
            "s.toml",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let c = std::fs::read_to_string(t.path().join("c/run.json")).unwrap();
    assert!(!c.contains("-0.0"), "{c}");
}
