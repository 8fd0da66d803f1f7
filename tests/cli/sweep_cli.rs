//! `atc-bt sweep` end to end: the shipped grid on bundled data, one
//! combination equals `atc-bt run`, and grid errors before any work.

use crate::common;

use common::*;
use predicates::prelude::*;

#[test]
fn shipped_grid_on_bundled_data_with_split() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    atc(&root())
        .args([
            "sweep",
            "--grid",
            "strategies/sweep_lambda_decay_cutout.toml",
            "--from",
            "2020",
        ])
        .args([
            "--split",
            "2021-01-01",
            "--walk-forward",
            "train=6m,test=6m",
            "--store",
        ])
        .arg(tmp.path().join("store"))
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("in-sample best"));
    let sweep = json(&out.join("sweep.json"));
    assert_eq!(sweep["combinations"], 60);
    assert_eq!(sweep["ranked_on_sample"], "in");
    let heat = json(&out.join("heatmap_out.json"));
    assert_eq!(heat["shape"], serde_json::json!([5, 4, 3]));
    assert_eq!(heat["values"].as_array().unwrap().len(), 60);
    let rows = read_parquet(&out.join("results.parquet"));
    let symbols = opt_str_col(&rows, "symbol");
    let aggregates = opt_str_col(&rows, "aggregate");
    let samples = str_col(&rows, "sample");
    // Aggregate rows have no symbol, symbol rows no aggregate.
    assert!((0..symbols.len()).all(|i| symbols[i].is_some() != aggregates[i].is_some()));
    let portfolio_rows = (0..symbols.len())
        .filter(|&i| {
            aggregates[i].as_deref() == Some("portfolio")
                && ["full", "in", "out"].contains(&samples[i].as_str())
        })
        .count();
    assert_eq!(
        portfolio_rows,
        60 * 3,
        "a portfolio row per combination and sample"
    );
    assert!(samples.iter().any(|s| s == "out"));
    assert!(
        samples.iter().any(|s| s == "wf0-train"),
        "walk-forward training rows"
    );
    assert!(out.join("best_equity.parquet").is_file());
    assert!(out.join("report.html").is_file());
    let wf = json(&out.join("walk_forward.json"));
    let folds = wf["folds"].as_array().unwrap();
    assert!(folds.len() >= 5, "{}", folds.len());
    // Each fold keeps its test window and its test metrics apart (the
    // metrics once overwrote the window under one key `test`).
    for f in folds {
        for w in ["train", "test"] {
            assert!(f[w]["from"].is_string() && f[w]["to"].is_string(), "{f}");
        }
        assert!(f.get("test_metrics").is_some(), "{f}");
    }
    // The report reads those windows (bare dates included): no "?" bound.
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    let sec = &page[page.find("id=\"walk-forward\"").expect("#walk-forward")..];
    let sec = &sec[..sec.find("</section>").unwrap_or(sec.len())];
    assert!(
        !sec.contains("? to ") && !sec.contains(" to ?"),
        "unknown window bound"
    );
    assert!(wf["out_of_sample"]["total_return"].is_number());
    let curve = read_parquet(&out.join("walk_forward_equity.parquet"));
    let names = str_col(&curve, "aggregate");
    assert!(names.iter().any(|n| n == "walk_forward") && names.iter().any(|n| n == "benchmark"));
}

/// Any combination of a sweep gives exactly the metrics of `run`.
#[test]
fn one_combination_equals_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("p.parquet");
    write_walks(&data, "S", 4, 0, 40, 500);
    let sweep_out = tmp.path().join("s");
    atc(tmp.path())
        .args([
            "sweep",
            "-q",
            "--lambda",
            "0.02,0.08",
            "--decay",
            "0.03,0.2",
            "--cutout",
            "0,30",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(&sweep_out)
        .assert()
        .success();
    let run_out = tmp.path().join("r");
    atc(tmp.path())
        .args([
            "run", "-q", "--lambda", "0.08", "--decay", "0.2", "--cutout", "30", "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(&run_out)
        .assert()
        .success();
    let metrics = json(&run_out.join("metrics.json"));
    let rows = read_parquet(&sweep_out.join("results.parquet"));
    let sym = opt_str_col(&rows, "symbol");
    let agg = opt_str_col(&rows, "aggregate");
    let lambda = f64_col(&rows, "lambda");
    let decay = f64_col(&rows, "decay");
    let cutout = num_col(&rows, "cutout");
    // Whole numbers are integer columns.
    for c in [
        "cutout",
        "ema_len",
        "trades",
        "bars",
        "max_drawdown_duration",
        "max_trade_duration",
        "open_trades",
        "max_winning_streak",
    ] {
        assert_eq!(col_type(&rows, c), arrow_schema::DataType::Int64, "{c}");
    }
    assert_eq!(col_type(&rows, "sharpe"), arrow_schema::DataType::Float64);
    assert!(matches!(
        col_type(&rows, "start"),
        arrow_schema::DataType::Timestamp(_, _)
    ));
    let mut checked = 0;
    for i in 0..sym.len() {
        if lambda[i] != Some(0.08) || decay[i] != Some(0.2) || cutout[i] != Some(30.0) {
            continue;
        }
        let expected = match (sym[i].as_deref(), agg[i].as_deref()) {
            (None, Some(a)) => &metrics[a],
            (Some(s), None) => &metrics["symbols"][s],
            other => panic!("row {i}: {other:?}"),
        };
        for (k, v) in expected.as_object().unwrap() {
            match v {
                // Tables (per year, drawdowns) live in metrics.json only.
                serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                    assert!(rows[0].schema().column_with_name(k).is_none(), "{k}")
                }
                serde_json::Value::String(t) => {
                    let got = ts_col(&rows, k)[i].unwrap();
                    let want = chrono::DateTime::parse_from_rfc3339(t).unwrap();
                    assert_eq!(got, want.timestamp_micros(), "{:?} {k}", sym[i]);
                }
                _ => assert_eq!(num_col(&rows, k)[i], v.as_f64(), "{:?} {k}", sym[i]),
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 4 + 2, "4 symbols + portfolio + benchmark");
}

/// A sweep reuses the signals a run stored (one lookup per symbol and
/// combination), computes the rest, and writes the bytes of an uncached
/// sweep.
#[test]
fn sweep_reuses_the_signals_of_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("p.parquet");
    write_walks(&data, "U", 4, 0, 70, 400);
    let cache = tmp.path().join("cache");
    atc(tmp.path())
        .args(["run", "-q", "--no-report", "--lambda", "0.05", "--data"])
        .arg(&data)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--out")
        .arg(tmp.path().join("r"))
        .assert()
        .success();
    let sweep = |extra: &[&str], out: &str| {
        let assert = atc(tmp.path())
            .args(["sweep", "--no-report", "--lambda", "0.05,0.07", "--data"])
            .arg(&data)
            .args(extra)
            .arg("--out")
            .arg(tmp.path().join(out))
            .assert()
            .success();
        String::from_utf8_lossy(&assert.get_output().stdout).to_string()
    };
    let cache_arg = cache.display().to_string();
    let stdout = sweep(&["--cache-dir", &cache_arg], "cached");
    assert!(
        stdout.contains("cache: 4 hits, 4 misses (50% hit rate)"),
        "{stdout}"
    );
    sweep(&["--no-cache"], "uncached");
    let a = std::fs::read(tmp.path().join("cached/results.parquet")).unwrap();
    let b = std::fs::read(tmp.path().join("uncached/results.parquet")).unwrap();
    assert!(a == b, "results.parquet differs with and without the cache");
}

#[test]
fn bad_grids_fail_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["--lambda", "0.05:0.01:0.01"], "lambda"),
        (vec!["--decay", "0.01:0.05:0"], "step is zero"),
        (vec!["--decay", "50:150:50"], "decay = 100"),
        (
            vec!["--lambda", "0:1:0.001", "--decay", "0:1:0.01"],
            "--max-combos",
        ),
        (
            vec!["--lambda", "0.02", "--rank-by", "luck"],
            "unknown metric",
        ),
        (vec![], "grid is empty"),
    ] {
        // A missing data directory proves the error comes before any data is read.
        atc(tmp.path())
            .args(["sweep", "-q", "--data", "nowhere"])
            .args(&args)
            .assert()
            .failure()
            .stderr(predicate::str::contains(needle));
    }
}
