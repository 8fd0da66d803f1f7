//! `atc-bt run --allocation shared`: the invariants of one shared account
//! checked from the files it writes, and its refusals.

use crate::common;

use std::collections::BTreeMap;

use common::*;
use predicates::prelude::*;

/// Six random walks on weekdays, one of which stops early (its data ends
/// inside the window, so its position is closed at its last close).
fn shared_data(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("p.parquet");
    let mut series: Vec<Series> = (0..6)
        .map(|k| walk(&format!("S{k}"), 40 + k, 400))
        .collect();
    let s = &mut series[5];
    s.ts.truncate(300);
    s.open.truncate(300);
    s.close.truncate(300);
    write_ohlcv(&data, &series);
    data
}

#[test]
fn shared_cash_with_two_positions_keeps_its_invariants_in_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared_data(tmp.path());
    for mode in ["long-only", "long-short"] {
        let out = tmp.path().join(mode);
        // The long-only run draws its report (capital utilisation).
        let report: &[&str] = if mode == "long-only" {
            &[]
        } else {
            &["--no-report"]
        };
        atc(tmp.path())
            .args(["run", "-q", "--no-cache"])
            .args(report)
            .arg("--data")
            .arg(&data)
            .args(["--allocation", "shared", "--max-positions", "2"])
            .args([
                "--mode",
                mode,
                "--fee-bps",
                "10",
                "--capital",
                "10000",
                "--out",
            ])
            .arg(&out)
            .assert()
            .success();
        let run = json(&out.join("run.json"));
        assert_eq!(run["params"]["execution"]["allocation"], "shared");
        assert_eq!(run["params"]["execution"]["max_positions"], 2);
        assert!(run["params"]["execution"].get("rebalance").is_none());

        let eq = read_parquet(&out.join("equity.parquet"));
        let ts = ts_col(&eq, "ts");
        let sym = opt_str_col(&eq, "symbol");
        let agg = opt_str_col(&eq, "aggregate");
        let equity = f64_col(&eq, "equity");
        let pos = f64_col(&eq, "position");
        // Per bar: positions held, Σ |market value|, the account's equity.
        let mut held: BTreeMap<i64, usize> = BTreeMap::new();
        let mut gross: BTreeMap<i64, f64> = BTreeMap::new();
        let mut account: BTreeMap<i64, f64> = BTreeMap::new();
        for i in 0..ts.len() {
            let t = ts[i].unwrap();
            if sym[i].is_some() {
                if pos[i].unwrap() != 0.0 {
                    *held.entry(t).or_default() += 1;
                }
                *gross.entry(t).or_default() += equity[i].unwrap().abs();
            } else if agg[i].as_deref() == Some("portfolio") {
                account.insert(t, equity[i].unwrap());
            }
        }
        // The portfolio rows carry the account's gross (Σ |position·close|
        // of the symbols' rows), the other rows none; utilisation =
        // gross/equity peaks at metrics.json's max_gross_exposure.
        let gcol = f64_col(&eq, "gross");
        let mut utilisation: Vec<f64> = Vec::new();
        for i in 0..ts.len() {
            if agg[i].as_deref() != Some("portfolio") {
                assert!(
                    gcol[i].is_none(),
                    "{mode}: gross on a row not the account's"
                );
                continue;
            }
            let t = ts[i].unwrap();
            let g = gcol[i].unwrap();
            let want = gross.get(&t).copied().unwrap_or(0.0);
            assert!(
                (g - want).abs() <= 1e-9 * account[&t],
                "{mode} {t}: gross {g}, symbols' rows {want}"
            );
            utilisation.push(g / account[&t]);
        }
        assert_eq!(utilisation.len(), account.len());
        let peak = utilisation.iter().copied().fold(0.0, f64::max);
        assert!(peak > 0.5, "{mode}: peak utilisation {peak}");
        let m = json(&out.join("metrics.json"));
        let max_gross = m["portfolio"]["max_gross_exposure"].as_f64().unwrap();
        assert!(
            (peak - max_gross).abs() < 1e-12,
            "{mode}: {peak} vs {max_gross}"
        );
        if mode == "long-only" {
            assert!(
                utilisation.iter().all(|u| *u <= 1.0 + 1e-9),
                "{mode}: utilisation above 1"
            );
            let html = std::fs::read_to_string(out.join("report.html")).unwrap();
            assert!(
                html.contains("id=\"utilisation\""),
                "no utilisation section"
            );
            assert!(html.contains("Capital utilisation"));
            let png = std::fs::read(out.join("report_files/utilisation.png")).unwrap();
            assert!(png.starts_with(b"\x89PNG"), "utilisation.png is no PNG");
        }
        assert!(held.values().all(|&n| n <= 2), "{mode}: more than 2 held");
        assert!(held.values().any(|&n| n == 2), "{mode}: never 2 held");
        // No leverage: long-only at every close (cash ≥ 0); long-short
        // trades within it, but a short can drift past it between bars.
        if mode == "long-only" {
            for (t, g) in &gross {
                assert!(
                    *g <= account[t] * (1.0 + 1e-9),
                    "{mode} {t}: gross {g} > equity"
                );
            }
        }
        // metrics.json agrees with equity.parquet, the ledger with both.
        let m = json(&out.join("metrics.json"));
        let last = *account.values().last().unwrap();
        let p = &m["portfolio"];
        assert!((p["final_equity"].as_f64().unwrap() - last).abs() < 1e-6);
        assert!((p["total_return"].as_f64().unwrap() - (last / 10000.0 - 1.0)).abs() < 1e-12);
        let trades = read_parquet(&out.join("trades.parquet"));
        let pnl: f64 = f64_col(&trades, "pnl").iter().map(|p| p.unwrap()).sum();
        assert!(
            (pnl - (last - 10000.0)).abs() < 1e-6,
            "{mode}: ledger {pnl}"
        );
        // S5's data ends early: none of its trades is still open.
        let (names, exit) = (str_col(&trades, "symbol"), ts_col(&trades, "exit_ts"));
        assert!(
            names
                .iter()
                .zip(&exit)
                .all(|(n, x)| n != "S5" || x.is_some()),
            "{mode}"
        );
        // The symbols' contributions sum to the account's return.
        let sum: f64 = m["symbols"]
            .as_object()
            .unwrap()
            .values()
            .map(|s| s["total_return"].as_f64().unwrap())
            .sum();
        assert!((sum - (last / 10000.0 - 1.0)).abs() < 1e-9, "{mode}: {sum}");
    }
}

#[test]
fn shared_only_settings_are_refused_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared_data(tmp.path());
    atc(tmp.path())
        .args(["run", "-q", "--no-cache", "--no-report", "--data"])
        .arg(&data)
        .args(["--max-positions", "2"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("max_positions = 2")
                .and(predicate::str::contains("--allocation shared")),
        );
    atc(tmp.path())
        .args(["run", "-q", "--no-cache", "--no-report", "--data"])
        .arg(&data)
        .args(["--allocation", "shared", "--max-positions", "0"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("max_positions = 0"));
    atc(tmp.path())
        .args(["run", "-q", "--data"])
        .arg(&data)
        .args(["--allocation", "fund"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("equal-split and shared"));
    // The default writes no allocation keys (existing hashes stay).
    let out = tmp.path().join("eq");
    atc(tmp.path())
        .args(["run", "-q", "--no-cache", "--no-report", "--data"])
        .arg(&data)
        .args(["--allocation", "equal-split", "--out"])
        .arg(&out)
        .assert()
        .success();
    let run = json(&out.join("run.json"));
    assert!(run["params"]["execution"].get("allocation").is_none());
    // Equal-split files keep their columns: no gross, no utilisation.
    let eq = read_parquet(&out.join("equity.parquet"));
    assert!(eq[0].schema().column_with_name("gross").is_none());
}

#[test]
fn shared_cash_is_identical_for_any_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared_data(tmp.path());
    let mut outs = Vec::new();
    for threads in ["1", "2"] {
        let out = tmp.path().join(format!("t{threads}"));
        atc(tmp.path())
            .args([
                "run",
                "-q",
                "--no-cache",
                "--no-report",
                "--threads",
                threads,
            ])
            .args(["--allocation", "shared", "--max-positions", "3"])
            .args(["--rebalance", "weekly", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        outs.push(out);
    }
    for f in [
        "metrics.json",
        "equity.parquet",
        "trades.parquet",
        "signals.parquet",
    ] {
        let a = std::fs::read(outs[0].join(f)).unwrap();
        let b = std::fs::read(outs[1].join(f)).unwrap();
        assert!(a == b, "{f} differs between 1 and 2 threads");
    }
}

/// The sweep's shared-cash arguments of the tests below.
const SHARED_SWEEP: [&str; 14] = [
    "--decay",
    "0.01,0.1",
    "--cutout",
    "0,30",
    "--max-positions",
    "2,4",
    "--allocation",
    "shared",
    "--rebalance",
    "weekly",
    "--mode",
    "long-short",
    "--fee-bps",
    "10",
];

/// Every metric of `expected` (a `metrics.json` object) equals row `i` of
/// `rows` bit for bit.
fn row_equals(
    rows: &[arrow_array::RecordBatch],
    i: usize,
    expected: &serde_json::Value,
    what: &str,
) {
    for (k, v) in expected.as_object().unwrap() {
        if v.is_number() {
            assert_eq!(num_col(rows, k)[i], v.as_f64(), "{what} {k}");
        }
    }
}

#[test]
fn one_combination_of_a_shared_sweep_equals_run_shared() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared_data(tmp.path());
    let sweep_out = tmp.path().join("s");
    atc(tmp.path())
        .args(["sweep", "-q", "--no-cache", "--no-report", "--data"])
        .arg(&data)
        .args(SHARED_SWEEP)
        .args(["--split", "2019-11-01", "--out"])
        .arg(&sweep_out)
        .assert()
        .success();
    let rows = read_parquet(&sweep_out.join("results.parquet"));
    let combo = num_col(&rows, "combo");
    let sample = str_col(&rows, "sample");
    let sym = opt_str_col(&rows, "symbol");
    let agg = opt_str_col(&rows, "aggregate");
    let decay = f64_col(&rows, "decay");
    let cutout = num_col(&rows, "cutout");
    let limit = num_col(&rows, "max_positions");
    // max_positions is the last axis, the fastest: c = 2·(decay, cutout) + limit.
    let mut checked = 0;
    for (c, (l, cut, m)) in [
        ("0.01", "0", "2"),
        ("0.01", "0", "4"),
        ("0.01", "30", "2"),
        ("0.01", "30", "4"),
        ("0.1", "0", "2"),
        ("0.1", "0", "4"),
        ("0.1", "30", "2"),
        ("0.1", "30", "4"),
    ]
    .into_iter()
    .enumerate()
    {
        for (name, from) in [("full", None), ("out", Some("2019-11-01"))] {
            let run_out = tmp.path().join(format!("r{c}{name}"));
            let mut cmd = atc(tmp.path());
            cmd.args(["run", "-q", "--no-cache", "--no-report", "--data"])
                .arg(&data)
                .args(["--decay", l, "--cutout", cut, "--max-positions", m])
                .args(&SHARED_SWEEP[6..])
                .arg("--out")
                .arg(&run_out);
            if let Some(f) = from {
                cmd.args(["--from", f]);
            }
            cmd.assert().success();
            let metrics = json(&run_out.join("metrics.json"));
            let mut n = 0;
            for i in 0..sym.len() {
                if combo[i] != Some(c as f64) || sample[i] != name {
                    continue;
                }
                assert_eq!(decay[i], l.parse().ok(), "combination {c}");
                assert_eq!(cutout[i], cut.parse().ok(), "combination {c}");
                assert_eq!(limit[i], m.parse().ok(), "combination {c}");
                let expected = match (sym[i].as_deref(), agg[i].as_deref()) {
                    (None, Some(a)) => &metrics[a],
                    (Some(s), None) => &metrics["symbols"][s],
                    other => panic!("row {i}: {other:?}"),
                };
                row_equals(
                    &rows,
                    i,
                    expected,
                    &format!("combination {c} {name} {:?}", sym[i]),
                );
                n += 1;
            }
            let traded = metrics["symbols"].as_object().unwrap().len();
            assert_eq!(
                n,
                traded + 2,
                "combination {c} {name}: symbols + portfolio + benchmark"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
    // The position limit changes the account, not the signals.
    let sharpe = f64_col(&rows, "sharpe");
    let port = |c: f64| {
        (0..sym.len())
            .find(|&i| {
                combo[i] == Some(c) && sample[i] == "full" && agg[i].as_deref() == Some("portfolio")
            })
            .map(|i| sharpe[i])
    };
    assert_ne!(port(0.0), port(1.0));
}

#[test]
fn shared_sweep_is_identical_for_any_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared_data(tmp.path());
    let mut outs = Vec::new();
    for threads in ["1", "2"] {
        let out = tmp.path().join(format!("t{threads}"));
        atc(tmp.path())
            .args([
                "sweep",
                "-q",
                "--no-cache",
                "--no-report",
                "--threads",
                threads,
            ])
            .args(SHARED_SWEEP)
            .args(["--split", "2019-11-01", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        outs.push(out);
    }
    for f in [
        "results.parquet",
        "heatmap_full.json",
        "heatmap_in.json",
        "best_equity.parquet",
    ] {
        let a = std::fs::read(outs[0].join(f)).unwrap();
        let b = std::fs::read(outs[1].join(f)).unwrap();
        assert!(a == b, "{f} differs between 1 and 2 threads");
    }
    // The heatmap has the position limit as its last axis.
    let h = json(&outs[0].join("heatmap_full.json"));
    assert_eq!(h["axes"][2]["name"], "max_positions");
    assert_eq!(h["shape"], serde_json::json!([2, 2, 2]));
}

/// `best.params` of `sweep.json` and `folds[].params` of
/// `walk_forward.json` left out the position limit the combination was
/// chosen with: `run` with them as written traded another account. They
/// name it where the grid varies it, and only there.
#[test]
fn best_params_of_a_shared_sweep_name_its_max_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared_data(tmp.path());
    let sweep = |name: &str, args: &[&str]| {
        let out = tmp.path().join(name);
        atc(tmp.path())
            .args(["sweep", "-q", "--no-cache", "--no-report", "--data"])
            .arg(&data)
            .args(["--lambda", "0.02,0.5", "--allocation", "shared"])
            .args(["--walk-forward", "train=6m,test=3m"])
            .args(args)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        (
            json(&out.join("sweep.json")),
            json(&out.join("walk_forward.json")),
        )
    };
    let limits = [1, 3];
    let (s, wf) = sweep("axis", &["--max-positions", "1,3"]);
    let best = s["best"]["combo"].as_u64().unwrap() as usize;
    assert_eq!(s["best"]["params"]["max_positions"], limits[best % 2]);
    let folds = wf["folds"].as_array().unwrap();
    assert!(!folds.is_empty());
    for f in folds {
        let c = f["best_combo"].as_u64().unwrap() as usize;
        assert_eq!(f["params"]["max_positions"], limits[c % 2], "{f}");
    }
    // Without the axis the files stay as they were.
    let (s, wf) = sweep("no_axis", &[]);
    assert!(s["best"]["params"].get("max_positions").is_none());
    assert!(wf["folds"][0]["params"].get("max_positions").is_none());
}

#[test]
fn shared_sweep_refusals_name_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared_data(tmp.path());
    let sweep = |args: &[&str]| {
        let mut cmd = atc(tmp.path());
        cmd.args([
            "sweep",
            "-q",
            "--no-cache",
            "--no-report",
            "--lambda",
            "0.02,0.08",
            "--data",
        ])
        .arg(&data)
        .args(args);
        cmd.assert().failure()
    };
    sweep(&["--max-positions", "2,3"]).stderr(
        predicate::str::contains("max_positions in the grid")
            .and(predicate::str::contains("--allocation shared")),
    );
    let grid = tmp.path().join("g.toml");
    std::fs::write(&grid, "[grid]\nmax_positions = [1, 2]\n").unwrap();
    sweep(&["--grid", grid.to_str().unwrap()])
        .stderr(predicate::str::contains("max_positions in the grid"));
    sweep(&["--allocation", "shared", "--max-positions", "0,2"]).stderr(
        predicate::str::contains("max_positions")
            .and(predicate::str::contains("from 1 to 1000000")),
    );
    sweep(&["--allocation", "shared", "--shard", "0/2"]).stderr(predicate::str::contains(
        "--allocation shared cannot be sharded yet",
    ));
}

#[test]
fn max_positions_beyond_the_bound_is_refused_alike_in_run_and_sweep() {
    // 2^64 - 1 and 2^63 were accepted by sweep and written to
    // results.parquet's Int64 column as -1 and i64::MIN.
    let tmp = tempfile::tempdir().unwrap();
    let data = shared_data(tmp.path());
    for n in [
        "18446744073709551615",
        "9223372036854775808",
        "1000001",
        "0",
    ] {
        for cmd in [
            &["run", "--max-positions", n][..],
            &["sweep", "--lambda", "0.02,0.08", "--max-positions", n],
            &[
                "sweep",
                "--lambda",
                "0.02,0.08",
                "--max-positions",
                &format!("2,{n}"),
            ],
        ] {
            atc(tmp.path())
                .args(cmd)
                .args(["-q", "--no-cache", "--no-report", "--allocation", "shared"])
                .arg("--data")
                .arg(&data)
                .args(["--out", "o"])
                .assert()
                .failure()
                .stderr(
                    predicate::str::contains("max_positions")
                        .and(predicate::str::contains("a whole number from 1 to 1000000")),
                );
        }
    }
    // A number too large to show in full is shown in scientific notation.
    atc(tmp.path())
        .args([
            "run",
            "-q",
            "--no-cache",
            "--no-report",
            "--stop-loss",
            "1e308",
        ])
        .arg("--data")
        .arg(&data)
        .assert()
        .failure()
        .stderr(predicate::str::contains("stop_loss = 1e308:"));
}
