//! `atc-bt compute` on bad input: a clear error naming the file, the row and
//! the problem, a non-zero exit, never a panic.

use assert_cmd::Command;
use predicates::prelude::*;

fn compute_on(content: &str) -> (assert_cmd::assert::Assert, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("prices.csv");
    std::fs::write(&input, content).unwrap();
    let out = dir.path().join("out.csv");
    let a = Command::cargo_bin("atc-bt")
        .unwrap()
        .args(["compute", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .assert();
    assert!(!out.exists(), "no output file may be left on failure");
    (a, input.display().to_string())
}

fn fails_with(content: &str, needles: &[&str]) {
    let (a, path) = compute_on(content);
    let a = a.failure().code(1).stderr(predicate::str::contains(path));
    let mut a = a.stderr(predicate::str::contains("panicked").not());
    for n in needles {
        a = a.stderr(predicate::str::contains(*n));
    }
}

#[test]
fn nan_close_names_line_and_bar() {
    fails_with("close\n10\nNaN\n", &["line 3", "bar 1", "finite and > 0"]);
}

#[test]
fn infinite_close() {
    fails_with("close\n10\n11\ninf\n", &["line 4", "bar 2", "inf"]);
}

#[test]
fn zero_close() {
    fails_with("close\n0\n", &["line 2", "bar 0", "is 0"]);
}

#[test]
fn negative_close() {
    fails_with(
        "date,close\n2020-01-01,10\n2020-01-02,-5\n",
        &["line 3", "-5"],
    );
}

#[test]
fn empty_file() {
    fails_with("", &["empty"]);
}

#[test]
fn header_only() {
    fails_with("close\n", &["no data rows"]);
}

#[test]
fn missing_close_column() {
    fails_with("open,high\n1,2\n", &["no `close` column", "open, high"]);
}

#[test]
fn non_numeric_cell() {
    fails_with("close\n10\nabc\n", &["line 3", "\"abc\"", "not a number"]);
}

#[test]
fn missing_input_file() {
    let dir = tempfile::tempdir().unwrap();
    Command::cargo_bin("atc-bt")
        .unwrap()
        .args(["compute", "--input"])
        .arg(dir.path().join("nope.csv"))
        .arg("--out")
        .arg(dir.path().join("o.csv"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("nope.csv"));
}

#[test]
fn invalid_parameter_names_parameter_value_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("p.csv");
    std::fs::write(&input, "close\n1\n2\n").unwrap();
    for (flag, value, needle) in [
        ("--lambda", "-0.5", "lambda = -0.5"),
        ("--decay", "100", "decay = 100"),
        ("--ema-len", "5", "ema_len = 5"),
        ("--starting-equity", "0", "starting_equity = 0"),
        ("--long-threshold", "NaN", "long_threshold = NaN"),
    ] {
        Command::cargo_bin("atc-bt")
            .unwrap()
            .args(["compute", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(dir.path().join("o.csv"))
            .args([flag, value])
            .assert()
            .failure()
            .stderr(predicate::str::contains(needle))
            .stderr(predicate::str::contains("valid range"));
    }
}

#[test]
fn robustness_any_case_and_short_series() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("p.csv");
    std::fs::write(&input, "close\n1\n2\n3\n").unwrap();
    let out = dir.path().join("o.csv");
    Command::cargo_bin("atc-bt")
        .unwrap()
        .args(["compute", "--robustness", "WIDE", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 4);
    assert_eq!(text.lines().next().unwrap().split(',').count(), 179);
}
