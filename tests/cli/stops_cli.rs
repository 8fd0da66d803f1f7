//! `--stop-loss`, `--take-profit`, `--trailing-stop` through the binary:
//! each stop exit in trades.parquet is checked against the bars it hit in,
//! the flags' ranges are errors naming the flag, the stops enter the
//! inputs hash only when set, and a sweep's combination equals `run` with
//! the same stops.

use crate::common;

use common::*;
use predicates::prelude::*;

/// The bars' high and low as [`write_ohlcv`] writes them.
fn high_low(s: &Series, i: usize) -> (f64, f64) {
    let (o, c) = (s.open[i], s.close[i]);
    (o.max(c) * 1.01, o.min(c) * 0.99)
}

/// Every stop, target and trailing exit of a long-short run fills where
/// the README says: at the level (or the open when the open is beyond
/// it) less slippage, in a bar whose range reaches the level; the
/// trailing level from the best high/low of the bars before the exit bar.
#[test]
fn stop_exits_fill_at_their_levels() {
    // Equal-split, and shared cash (one slot, so the symbols take turns).
    let shared = ["--allocation", "shared", "--max-positions", "1"];
    for extra in [&[][..], &shared[..]] {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("prices.parquet");
        let series = [walk("AAA", 21, 600), walk("BBB", 22, 600)];
        write_ohlcv(&data, &series);
        let out = tmp.path().join("run");
        atc(tmp.path())
            .args(["run", "-q", "--no-report", "--mode", "long-short", "--data"])
            .arg(&data)
            .args(["--slippage-bps", "10", "--stop-loss", "3", "--take-profit"])
            .args(["6", "--trailing-stop", "4", "--lambda", "0.1"])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let trades = read_parquet(&out.join("trades.parquet"));
        let sym = str_col(&trades, "symbol");
        let side = str_col(&trades, "side");
        let reason = str_col(&trades, "exit_reason");
        let entry_ts = ts_col(&trades, "entry_ts");
        let exit_ts = ts_col(&trades, "exit_ts");
        let entry = f64_col(&trades, "entry_price");
        let exit = f64_col(&trades, "exit_price");
        let slip = 0.001;
        let mut seen = std::collections::BTreeMap::new();
        for i in 0..sym.len() {
            let (sl, tp, tr) = (0.03, 0.06, 0.04);
            let long = side[i] == "long";
            let level = match reason[i].as_str() {
                "stop_loss" if long => entry[i].unwrap() * (1.0 - sl),
                "stop_loss" => entry[i].unwrap() * (1.0 + sl),
                "take_profit" if long => entry[i].unwrap() * (1.0 + tp),
                "take_profit" => entry[i].unwrap() * (1.0 - tp),
                "trailing_stop" => f64::NAN, // below, from the bars
                "signal" | "end_of_window" => continue,
                other => panic!("unexpected exit_reason {other}"),
            };
            *seen.entry(reason[i].clone()).or_insert(0) += 1;
            let s = series.iter().find(|s| s.symbol == sym[i]).unwrap();
            let e = s.ts.iter().position(|&t| Some(t) == entry_ts[i]).unwrap();
            let x = s.ts.iter().position(|&t| Some(t) == exit_ts[i]).unwrap();
            let level = if reason[i] == "trailing_stop" {
                let mut best = entry[i].unwrap();
                for b in e..x {
                    let (h, l) = high_low(s, b);
                    best = if long { best.max(h) } else { best.min(l) };
                }
                if long {
                    best * (1.0 - tr)
                } else {
                    best * (1.0 + tr)
                }
            } else {
                level
            };
            let (open, (high, low)) = (s.open[x], high_low(s, x));
            // A target is beyond the entry in the trade's favour, a stop against it.
            let up = (reason[i] == "take_profit") == long;
            let gap = if up { open >= level } else { open <= level };
            let quote = if gap { open } else { level };
            let reached = if up { high >= level } else { low <= level };
            assert!(reached, "trade {i}: bar {x} does not reach {level}");
            let want = if long {
                quote * (1.0 - slip)
            } else {
                quote * (1.0 + slip)
            };
            let got = exit[i].unwrap();
            assert!(
                (got - want).abs() <= 1e-9 * want,
                "trade {i} ({}, {}): exit {got}, want {want}",
                reason[i],
                side[i]
            );
        }
        for r in ["stop_loss", "take_profit", "trailing_stop"] {
            assert!(
                seen.contains_key(r),
                "no {r} exit; the test needs one: {seen:?}"
            );
        }
        let run = json(&out.join("run.json"));
        let ex = &run["params"]["execution"];
        assert_eq!(
            (&ex["stop_loss"], &ex["take_profit"], &ex["trailing_stop"]),
            (&3.0.into(), &6.0.into(), &4.0.into())
        );
    }
}

/// A range error names the key, the flag and the range; no stop set
/// leaves the strategy (and so the inputs hash) as before stops existed.
#[test]
fn stop_flags_are_checked_and_enter_the_inputs_hash_only_when_set() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("p.parquet");
    write_walks(&data, "S", 2, 0, 30, 300);
    for (flag, value) in [
        ("--stop-loss", "100"),
        ("--trailing-stop", "0"),
        ("--take-profit", "-1"),
    ] {
        atc(tmp.path())
            .args(["run", "-q", "--no-report", "--data"])
            .arg(&data)
            .args([flag, value])
            .assert()
            .failure()
            .stderr(
                predicate::str::contains(flag)
                    .and(predicate::str::contains("< 100").or(predicate::str::contains("> 0"))),
            );
    }
    let run = |extra: &[&str], out: &str| {
        atc(tmp.path())
            .args(["run", "-q", "--no-report", "--data"])
            .arg(&data)
            .args(extra)
            .arg("--out")
            .arg(tmp.path().join(out))
            .assert()
            .success();
        json(&tmp.path().join(out).join("run.json"))
    };
    let plain = run(&[], "a");
    let with = run(&["--stop-loss", "2"], "b");
    let ex = plain["params"]["execution"].as_object().unwrap();
    assert!(!ex.contains_key("stop_loss") && !ex.contains_key("trailing_stop"));
    assert_ne!(plain["inputs_hash"], with["inputs_hash"]);
}

/// Any combination of a sweep with stops gives exactly the metrics of
/// `run` with the same stops (the lean backtest and the run share the
/// stop logic).
#[test]
fn one_combination_equals_run_with_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("p.parquet");
    write_walks(&data, "S", 3, 0, 40, 400);
    let stops = [
        "--stop-loss",
        "2.5",
        "--take-profit",
        "5",
        "--trailing-stop",
        "3",
        "--mode",
        "long-short",
    ];
    let sweep_out = tmp.path().join("s");
    atc(tmp.path())
        .args(["sweep", "-q", "--no-report", "--lambda", "0.02,0.08"])
        .args(["--cutout", "0,30", "--data"])
        .arg(&data)
        .args(stops)
        .arg("--out")
        .arg(&sweep_out)
        .assert()
        .success();
    let run_out = tmp.path().join("r");
    atc(tmp.path())
        .args([
            "run",
            "-q",
            "--no-report",
            "--lambda",
            "0.08",
            "--cutout",
            "30",
        ])
        .arg("--data")
        .arg(&data)
        .args(stops)
        .arg("--out")
        .arg(&run_out)
        .assert()
        .success();
    let trades = read_parquet(&run_out.join("trades.parquet"));
    let reasons = str_col(&trades, "exit_reason");
    assert!(reasons
        .iter()
        .any(|r| r == "stop_loss" || r == "trailing_stop"));
    let metrics = json(&run_out.join("metrics.json"));
    let rows = read_parquet(&sweep_out.join("results.parquet"));
    let sym = opt_str_col(&rows, "symbol");
    let agg = opt_str_col(&rows, "aggregate");
    let lambda = f64_col(&rows, "lambda");
    let cutout = num_col(&rows, "cutout");
    let mut checked = 0;
    for i in 0..sym.len() {
        if lambda[i] != Some(0.08) || cutout[i] != Some(30.0) {
            continue;
        }
        let expected = match (sym[i].as_deref(), agg[i].as_deref()) {
            (None, Some(a)) => &metrics[a],
            (Some(s), None) => &metrics["symbols"][s],
            other => panic!("row {i}: {other:?}"),
        };
        for (k, v) in expected.as_object().unwrap() {
            if v.is_number() {
                assert_eq!(num_col(&rows, k)[i], v.as_f64(), "{:?} {k}", sym[i]);
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 3 + 2, "3 symbols + portfolio + benchmark");
}
