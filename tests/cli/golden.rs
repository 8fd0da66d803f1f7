//! Golden vectors: every column of every case in `tests/golden/` (copied
//! from the reference implementation's output) must match the engine:
//! floats within 1e-9 absolute (1e-9 relative above 1), na exactly where
//! the golden file has na, `bar`, `sig.*` and `dir` exactly.
//!
//! Checked twice: through the library and through `atc-bt compute`.

use std::path::{Path, PathBuf};

use atc_bt::engine::{compute, AtcParams, Detail};
use atc_bt::export::{atc_columns, write_atc_csv};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

struct Case {
    name: String,
    params: AtcParams,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let params: AtcParams = serde_json::from_value(meta["params"].clone()).unwrap();
        let csv_path = golden_dir().join(meta["csv"].as_str().unwrap());
        let (header, rows) = read_csv(&csv_path);
        out.push(Case {
            name: meta["case"].as_str().unwrap().to_string(),
            params,
            header,
            rows,
        });
    }
    assert!(
        out.len() >= 7,
        "expected the 7 golden cases, found {}",
        out.len()
    );
    out
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    (header, rows)
}

fn is_int_col(name: &str) -> bool {
    name == "bar" || name == "dir" || name.starts_with("sig.")
}

/// The comparison rules of `tests/golden/compare.py`. Returns the first
/// mismatch as text.
fn compare(expected: &Case, header: &[String], rows: &[Vec<String>]) -> Result<(), String> {
    if header != expected.header.as_slice() {
        return Err(format!("{}: header differs", expected.name));
    }
    if rows.len() != expected.rows.len() {
        return Err(format!(
            "{}: {} rows, expected {}",
            expected.name,
            rows.len(),
            expected.rows.len()
        ));
    }
    let mut checked = 0usize;
    for (i, (erow, arow)) in expected.rows.iter().zip(rows).enumerate() {
        for (j, col) in header.iter().enumerate() {
            let (e, a) = (erow[j].trim(), arow[j].trim());
            let ok = if is_int_col(col) {
                e.parse::<i64>().ok() == Some(a.parse::<i64>().map_err(|_| format!("{a:?}"))?)
            } else if e.is_empty() || a.is_empty() {
                e.is_empty() == a.is_empty()
            } else {
                let ev: f64 = e.parse().unwrap();
                let av: f64 = a.parse().unwrap();
                (av - ev).abs() <= 1e-9 * ev.abs().max(1.0)
            };
            if !ok {
                return Err(format!(
                    "{}: column {col}, bar {i}: expected {e:?}, actual {a:?}",
                    expected.name
                ));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, expected.rows.len() * 179);
    Ok(())
}

fn closes(case: &Case) -> Vec<f64> {
    case.rows.iter().map(|r| r[1].parse().unwrap()).collect()
}

#[test]
fn golden_cases_match_through_the_library() {
    for case in cases() {
        let close = closes(&case);
        let out = compute(&close, &case.params, Detail::Full).unwrap();
        let mut buf = Vec::new();
        write_atc_csv(&mut buf, &close, &out).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let mut lines = text.lines();
        let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
        assert_eq!(header, atc_columns());
        let rows: Vec<Vec<String>> = lines
            .map(|l| l.split(',').map(String::from).collect())
            .collect();
        if let Err(e) = compare(&case, &header, &rows) {
            panic!("{e}");
        }
    }
}

#[test]
fn signal_detail_gives_identical_avg_and_dir() {
    for case in cases() {
        let close = closes(&case);
        let full = compute(&close, &case.params, Detail::Full).unwrap();
        let lean = compute(&close, &case.params, Detail::Signal).unwrap();
        assert!(lean.ma.is_empty());
        assert_eq!(full.dir, lean.dir, "{}", case.name);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&full.avg), bits(&lean.avg), "{}", case.name);
        for f in 0..6 {
            assert_eq!(bits(&full.l1[f]), bits(&lean.l1[f]), "{}", case.name);
            assert_eq!(bits(&full.eq2[f]), bits(&lean.eq2[f]), "{}", case.name);
        }
    }
}

/// Every case through the binary, with the JSON's params mapped to flags
/// exactly as `check_cli.py` does (`ema_len` → `--ema-len`).
#[test]
fn golden_cases_match_through_atc_bt_compute() {
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let input = dir.path().join(format!("{}.in.csv", case.name));
        let out = dir.path().join(format!("{}.out.csv", case.name));
        let mut text = String::from("close\n");
        for r in &case.rows {
            text.push_str(&r[1]);
            text.push('\n');
        }
        std::fs::write(&input, text).unwrap();
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(golden_dir().join(format!("{}.json", case.name))).unwrap(),
        )
        .unwrap();
        let mut cmd = assert_cmd::Command::cargo_bin("atc-bt").unwrap();
        cmd.arg("compute")
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(&out);
        for (k, v) in meta["params"].as_object().unwrap() {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            cmd.arg(format!("--{}", k.replace('_', "-"))).arg(v);
        }
        cmd.assert().success();
        let (header, rows) = read_csv(&out);
        if let Err(e) = compare(&case, &header, &rows) {
            panic!("{e}");
        }
    }
}
