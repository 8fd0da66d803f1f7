//! `examples/run.rs` and `examples/sweep.rs` drive a run and a sweep
//! through the library alone. Each example's `example` function runs here
//! and its files are compared byte for byte with what the `atc-bt` binary
//! writes for the same command line: the library path and the CLI path
//! are one path.

use std::path::Path;

use assert_cmd::Command;

#[allow(dead_code)]
#[path = "../../examples/run.rs"]
mod run_example;

#[allow(dead_code)]
#[path = "../../examples/sweep.rs"]
mod sweep_example;

fn same_files(a: &Path, b: &Path, files: &[&str]) {
    for f in files {
        let (x, y) = (a.join(f), b.join(f));
        let (x, y) = (
            std::fs::read(&x).unwrap_or_else(|e| panic!("{}: {e}", x.display())),
            std::fs::read(&y).unwrap_or_else(|e| panic!("{}: {e}", y.display())),
        );
        assert!(!x.is_empty(), "{f} is empty");
        assert!(x == y, "{f} differs between the example and the CLI");
    }
}

fn manifest(path: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("manifest")).expect("JSON");
    for k in ["command", "started_at", "timings_ms", "threads", "cache"] {
        v.as_object_mut().expect("object").remove(k);
    }
    v
}

#[test]
fn example_run_writes_what_atc_bt_run_writes() {
    let t = tempfile::tempdir().unwrap();
    let done = run_example::example(t.path()).unwrap();
    assert_eq!(done.summary.symbols.len(), 12);
    assert_eq!(done.out, t.path().join("run"));
    assert_eq!(done.manifest.params.execution.fee_bps, 10.0);
    let cli = t.path().join("cli");
    Command::cargo_bin("atc-bt")
        .unwrap()
        .arg("run")
        .arg("--data")
        .arg(t.path().join("data"))
        .args(["--fee-bps", "10", "--no-cache", "--no-report", "--quiet"])
        .arg("--out")
        .arg(&cli)
        .assert()
        .success();
    same_files(
        &done.out,
        &cli,
        &[
            "metrics.json",
            "equity.parquet",
            "trades.parquet",
            "signals.parquet",
        ],
    );
    assert_eq!(
        manifest(&done.out.join("run.json")),
        manifest(&cli.join("run.json"))
    );
}

#[test]
fn example_sweep_writes_what_atc_bt_sweep_writes() {
    let t = tempfile::tempdir().unwrap();
    let done = sweep_example::example(t.path()).unwrap();
    assert_eq!(done.ranking.count(), 4);
    assert_eq!(done.order.len(), 4);
    let cli = t.path().join("cli");
    Command::cargo_bin("atc-bt")
        .unwrap()
        .arg("sweep")
        .arg("--data")
        .arg(t.path().join("data"))
        .args([
            "--lambda",
            "0.02,0.05",
            "--decay",
            "0.01,0.03",
            "--split",
            "2001-06-01",
            "--no-cache",
            "--no-report",
            "--quiet",
        ])
        .arg("--out")
        .arg(&cli)
        .assert()
        .success();
    same_files(
        &done.out,
        &cli,
        &[
            "results.parquet",
            "heatmap_full.json",
            "heatmap_in.json",
            "heatmap_out.json",
            "best_equity.parquet",
        ],
    );
    assert_eq!(
        manifest(&done.out.join("sweep.json")),
        manifest(&cli.join("sweep.json"))
    );
}
