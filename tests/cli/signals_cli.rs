//! `run --signals FILE` (your own signals) and `atc-bt scan` through the
//! binary: round trips of a run's own signals.parquet (Parquet and CSV),
//! one test per validation error, the hold rule, and scan's identity with
//! a run's last signals rows.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

/// Result files that must be byte-identical on a round trip.
const SAME: [&str; 4] = [
    "metrics.json",
    "equity.parquet",
    "trades.parquet",
    "signals.parquet",
];

fn run_to(dir: &Path, data: &Path, out: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    atc(dir)
        .args(["run", "-q", "--no-report", "--mode", "long-short", "--data"])
        .arg(data)
        .args(["--out", out])
        .args(extra)
        .assert()
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

fn assert_same(a: &Path, b: &Path, files: &[&str]) {
    for f in files {
        let x = std::fs::read(a.join(f)).unwrap();
        let y = std::fs::read(b.join(f)).unwrap();
        assert!(
            x == y,
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// A run's `signals.parquet` as CSV (`ts,symbol,avg,dir`; avg written
/// with Rust's shortest round-trip form, so it reads back exactly).
fn signals_as_csv(parquet: &Path, csv: &Path) {
    let b = read_parquet(parquet);
    let ts = ts_col(&b, "ts");
    let sym = str_col(&b, "symbol");
    let avg = f64_col(&b, "avg");
    let dir = num_col(&b, "dir");
    let mut text = String::from("ts,symbol,avg,dir\n");
    for i in 0..ts.len() {
        let t = chrono::DateTime::from_timestamp_micros(ts[i].unwrap()).unwrap();
        text.push_str(&format!(
            "{},{},{},{}\n",
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            sym[i],
            avg[i].unwrap(),
            dir[i].unwrap()
        ));
    }
    std::fs::write(csv, text).unwrap();
}

/// The issue's identity test: a run's own signals.parquet fed back with
/// `--signals` gives byte-identical metrics.json (and every other result
/// file), from Parquet and from CSV; run.json names the file by path, size
/// and blake3, and another file is another inputs hash.
#[test]
fn own_signals_fed_back_give_identical_results_parquet_and_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let data = p.join("d.parquet");
    write_walks(&data, "S", 4, 0, 300, 400);
    run_to(p, &data, "atc", &[]).success();
    run_to(p, &data, "own", &["--signals", "atc/signals.parquet"]).success();
    assert_same(&p.join("atc"), &p.join("own"), &SAME);
    let m = json(&p.join("own/run.json"));
    let bytes = std::fs::read(p.join("atc/signals.parquet")).unwrap();
    assert_eq!(m["signals"]["size"], bytes.len() as u64);
    assert_eq!(
        m["signals"]["blake3"],
        blake3::hash(&bytes).to_hex().to_string()
    );
    assert!(json(&p.join("atc/run.json")).get("signals").is_none());

    signals_as_csv(&p.join("atc/signals.parquet"), &p.join("own.csv"));
    run_to(p, &data, "csv", &["--signals", "own.csv"]).success();
    assert_same(&p.join("atc"), &p.join("csv"), &SAME);
    let h = |d: &str| json(&p.join(d).join("run.json"))["inputs_hash"].clone();
    assert_ne!(h("own"), h("csv"), "another file, another inputs hash");
    assert_ne!(h("atc"), h("own"));

    // A rerun is restored from the run cache under the file's content.
    run_to(p, &data, "own2", &["--signals", "atc/signals.parquet"]).success();
    assert_same(&p.join("atc"), &p.join("own2"), &SAME);
    assert_eq!(
        json(&p.join("own2/run.json"))["cache"]["kinds"]["run"]["hits"],
        1
    );
}

/// Attack (round 34, older than it): a run's own `signals.parquet` with
/// empty `avg` cells was refused when fed back ("strength is empty
/// (null)"), though the README calls it a valid signals file. A run
/// leaves `avg` empty before `--cutout` (flat bars) and where a large
/// lambda overflows the equities (a second attack: held bars too, `dir`
/// ±1). An empty strength now reads as no strength: every result file
/// byte-identical, from Parquet and from the same rows as CSV (empty
/// cells there), in both cases.
#[test]
fn own_signals_with_empty_avg_cells_fed_back_give_identical_results() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let data = p.join("d.parquet");
    write_walks(&data, "S", 3, 0, 300, 400);
    own_signals_round_trip(p, &data, &["--cutout", "60"], false);
    own_signals_round_trip(p, &data, &["--lambda", "1000"], true);
}

/// A run with `opts`, its own signals fed back from Parquet and from CSV;
/// `held`: some empty `avg` cells are on bars that hold a side.
fn own_signals_round_trip(p: &Path, data: &Path, opts: &[&str], held: bool) {
    for d in ["atc", "own", "csv"] {
        let _ = std::fs::remove_dir_all(p.join(d));
    }
    run_to(p, data, "atc", opts).success();
    let b = read_parquet(&p.join("atc/signals.parquet"));
    let (avg, dir) = (f64_col(&b, "avg"), num_col(&b, "dir"));
    assert!(
        avg.iter().any(Option::is_none),
        "{opts:?}: no empty avg cell"
    );
    let on_held = avg
        .iter()
        .zip(&dir)
        .any(|(a, d)| a.is_none() && *d != Some(0.0));
    assert_eq!(on_held, held, "{opts:?}: empty avg cells on held bars");
    let mut args = opts.to_vec();
    args.extend(["--signals", "atc/signals.parquet"]);
    run_to(p, data, "own", &args).success();
    assert_same(&p.join("atc"), &p.join("own"), &SAME);
    // The same rows as CSV, an empty cell where avg is.
    let (ts, sym) = (ts_col(&b, "ts"), str_col(&b, "symbol"));
    let mut text = String::from("ts,symbol,avg,dir\n");
    for i in 0..ts.len() {
        let t = chrono::DateTime::from_timestamp_micros(ts[i].unwrap()).unwrap();
        let a = avg[i].map_or(String::new(), |v| v.to_string());
        text.push_str(&format!(
            "{},{},{a},{}\n",
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            sym[i],
            dir[i].unwrap()
        ));
    }
    std::fs::write(p.join("own.csv"), text).unwrap();
    let mut args = opts.to_vec();
    args.extend(["--signals", "own.csv"]);
    run_to(p, data, "csv", &args).success();
    assert_same(&p.join("atc"), &p.join("csv"), &SAME);
}

/// With `--from`, the window's first open trades on the row of the bar
/// before it (the ATC's last warm-up bar): signals of a run over the whole
/// history, fed to a `--from` run, reproduce the ATC's `--from` run.
#[test]
fn signals_before_from_decide_the_first_open_as_the_warm_up_does() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let data = p.join("d.parquet");
    write_walks(&data, "S", 3, 0, 310, 400);
    let from = ["--from", "2019-09-02"];
    run_to(p, &data, "whole", &[]).success();
    run_to(p, &data, "atc", &from).success();
    let mut args = from.to_vec();
    args.extend(["--signals", "whole/signals.parquet"]);
    run_to(p, &data, "own", &args).success();
    assert_same(
        &p.join("atc"),
        &p.join("own"),
        &["metrics.json", "equity.parquet", "trades.parquet"],
    );
    // The `--from` run's own file starts at --from: fed back, its first
    // bar is flat (the documented rule), so the results differ here,
    // where the warm-up left positions open.
    let mut args = from.to_vec();
    args.extend(["--signals", "atc/signals.parquet"]);
    run_to(p, &data, "short", &args).success();
    let eq = read_parquet(&p.join("short/equity.parquet"));
    let (sym, pos) = (opt_str_col(&eq, "symbol"), f64_col(&eq, "position"));
    let first: Vec<f64> = ["S0", "S1", "S2"]
        .iter()
        .map(|s| pos[sym.iter().position(|x| x.as_deref() == Some(*s)).unwrap()].unwrap())
        .collect();
    assert_eq!(first, vec![0.0; 3]);
    let a = std::fs::read(p.join("atc/metrics.json")).unwrap();
    let b = std::fs::read(p.join("short/metrics.json")).unwrap();
    assert!(
        a != b,
        "the warm-up's last dir was traded at the first open"
    );
}

fn write(p: &Path, name: &str, text: &str) -> String {
    std::fs::write(p.join(name), text).unwrap();
    name.to_string()
}

/// Each validation error through the binary names the file, the row (CSV
/// line / Parquet row), the symbol and the fix.
#[test]
fn bad_signals_files_are_refused_naming_file_row_symbol_and_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let data = p.join("d.parquet");
    write_walks(&data, "S", 2, 0, 320, 30);
    let cases: [(&str, &str, &[&str]); 10] = [
        (
            "ts,symbol\n2019-01-01,S0\n",
            "m.csv",
            &["no `dir` column (found: ts, symbol)", "accepted names"],
        ),
        (
            "ts,symbol,dir\n2019-01-01,S0,1\n2019-01-02,ZZ,1\n",
            "u.csv",
            &["u.csv: line 3: symbol ZZ is not in the data", "hint:"],
        ),
        (
            "ts,symbol,dir\n2019-01-01,S0,1\n2019-01-02,S0,0\n2019-01-01,S0,-1\n",
            "d.csv",
            &["symbol S0 has two rows for 2019-01-01 (line 2 and line 4)", "one row per symbol and bar"],
        ),
        (
            "ts,symbol,dir\n2019-01-05,S0,1\n",
            "t.csv",
            &[
                "t.csv: line 2: symbol S0: 2019-01-05 is not a bar of S0 (the bars around it are 2019-01-04 and 2019-01-07)",
                "stamp each row",
            ],
        ),
        (
            "ts,symbol,dir\n2019-01-01,S0,2\n",
            "r.csv",
            &["line 2: symbol S0: dir is 2, not -1, 0 or 1", "1 long, -1 short, 0 flat"],
        ),
        (
            "ts,symbol,dir\n2019-01-01,S1,0.5\n",
            "f.csv",
            &["line 2: symbol S1: dir is 0.5, not -1, 0 or 1"],
        ),
        (
            "ts,symbol,dir,strength\n2019-01-01,S0,1,NaN\n",
            "s.csv",
            &["line 2: symbol S0: strength is NaN, not a finite number", "drop the column"],
        ),
        (
            "ts,symbol,dir\n2019-01-01,S0,\n",
            "e.csv",
            &["e.csv: line 2: dir is empty"],
        ),
        (
            "ts,symbol,dir,strength\n2019-01-01,S0,-1,abc\n",
            "es.csv",
            &[
                "es.csv: line 2: strength \"abc\" is not a number",
                "a strength cell is a number, or empty for none",
            ],
        ),
        (
            "ts,symbol,dir\nyesterday,S0,1\n",
            "x.csv",
            &["line 2: ts \"yesterday\" is not a date or time"],
        ),
    ];
    for (text, name, want) in cases {
        let f = write(p, name, text);
        let a = run_to(p, &data, "o", &["--signals", &f]).failure();
        let e = stderr_of(&a);
        for w in want {
            assert!(e.contains(w), "{name}: want {w:?} in:\n{e}");
        }
        assert!(!p.join("o").exists(), "{name}: nothing written");
    }
    // A symbol --symbols names without rows.
    let f = write(p, "one.csv", "ts,symbol,dir\n2019-01-01,S0,1\n");
    let a = run_to(p, &data, "o", &["--signals", &f, "--symbols", "S0,S1"]).failure();
    let e = stderr_of(&a);
    assert!(
        e.contains("signals file one.csv has no rows for S1, which --symbols selects"),
        "{e}"
    );
    // Parquet rows are counted from 0, as pyarrow does: a run's own file
    // with one dir changed.
    run_to(p, &data, "ok", &[]).success();
    let b = read_parquet(&p.join("ok/signals.parquet"));
    let ts = ts_col(&b, "ts");
    let sym = str_col(&b, "symbol");
    write_signals_parquet(&p.join("bad.parquet"), &ts, &sym, |i| {
        if i == 3 {
            -2
        } else {
            1
        }
    });
    let a = run_to(p, &data, "o", &["--signals", "bad.parquet"]).failure();
    let e = stderr_of(&a);
    assert!(
        e.contains("bad.parquet: row 3: symbol S0: dir is -2, not -1, 0 or 1"),
        "{e}"
    );
}

/// A minimal Parquet signals file: ts (µs UTC), symbol, dir (Int8).
fn write_signals_parquet(
    path: &Path,
    ts: &[Option<i64>],
    sym: &[String],
    dir: impl Fn(usize) -> i8,
) {
    use arrow_array::{Int8Array, RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("dir", DataType::Int8, false),
    ]));
    let n = ts.len();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(
                TimestampMicrosecondArray::from(ts.iter().map(|t| t.unwrap()).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(sym.to_vec())),
            Arc::new(Int8Array::from((0..n).map(&dir).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// A sparse file: a row sets the direction until the next row; bars
/// before the first row are flat; a symbol whose rows end early holds its
/// last row (with a warning); with `--symbols all` only the file's
/// symbols trade (with a note); without strength, avg is dir.
#[test]
fn sparse_signals_hold_the_last_row_and_trade_only_the_files_symbols() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let data = p.join("d.parquet");
    write_walks(&data, "S", 3, 0, 330, 10);
    // Bars: 2019-01-01 (Tue) .. 2019-01-14 (Mon), weekdays.
    let f = write(
        p,
        "sparse.csv",
        "ts,symbol,dir\n2019-01-03,S1,1\n2019-01-08,S1,-1\n2019-01-10,S1,0\n",
    );
    let a = run_to(p, &data, "o", &["--signals", &f]).success();
    let e = stderr_of(&a);
    assert!(
        e.contains("signals: 1 of the 3 selected series have rows in sparse.csv and are traded; the other 2 are not"),
        "{e}"
    );
    assert!(
        e.contains("warning: signals end before the window does for 1 symbol(s) (S1)"),
        "{e}"
    );
    let b = read_parquet(&p.join("o/signals.parquet"));
    assert_eq!(str_col(&b, "symbol"), vec!["S1"; 10]);
    let dir: Vec<i64> = num_col(&b, "dir")
        .iter()
        .map(|d| d.unwrap() as i64)
        .collect();
    assert_eq!(dir, vec![0, 0, 1, 1, 1, -1, -1, 0, 0, 0]);
    let avg: Vec<f64> = f64_col(&b, "avg").iter().map(|d| d.unwrap()).collect();
    assert_eq!(avg, dir.iter().map(|&d| d as f64).collect::<Vec<_>>());
    assert_eq!(json(&p.join("o/run.json"))["symbols"], 1);
    // Traded: long from the open after 2019-01-03, short after 01-08.
    let t = read_parquet(&p.join("o/trades.parquet"));
    assert_eq!(str_col(&t, "side"), vec!["long", "short"]);
}

fn scan_json(dir: &Path, data: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let o = atc(dir)
        .args(["scan", "-q", "--json", "--data"])
        .arg(data)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The issue's identity test: scan's avg and dir equal the last row of
/// each symbol in a run's signals.parquet with the same flags (window and
/// warm-up included), bit for bit; ranks are by |avg| then symbol; bars
/// since the change agree with the run's directions; filters keep their
/// side; CSV and the table carry the same rows.
#[test]
fn scan_equals_the_last_signals_row_of_a_run_and_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let data = p.join("d.parquet");
    write_walks(&data, "S", 12, 2, 340, 300);
    let flags = [
        "--from",
        "2019-06-03",
        "--to",
        "2019-12-31",
        "--warmup-bars",
        "60",
        "--lambda",
        "0.03",
    ];
    run_to(p, &data, "r", &flags).success();
    let b = read_parquet(&p.join("r/signals.parquet"));
    let (ts, sym, avg, dir) = (
        ts_col(&b, "ts"),
        str_col(&b, "symbol"),
        f64_col(&b, "avg"),
        num_col(&b, "dir"),
    );
    let rows = scan_json(p, &data, &flags);
    assert_eq!(rows.len(), 12);
    let mut last_abs = f64::INFINITY;
    for (k, r) in rows.iter().enumerate() {
        let s = r["symbol"].as_str().unwrap();
        let idx: Vec<usize> = (0..sym.len()).filter(|&i| sym[i] == s).collect();
        let last = *idx.last().unwrap();
        assert_eq!(
            r["avg"].as_f64().unwrap().to_bits(),
            avg[last].unwrap().to_bits(),
            "{s}"
        );
        assert_eq!(r["dir"].as_i64().unwrap(), dir[last].unwrap() as i64, "{s}");
        let t = chrono::DateTime::from_timestamp_micros(ts[last].unwrap()).unwrap();
        assert_eq!(r["ts"], t.format("%Y-%m-%d").to_string());
        assert_eq!(r["rank"], k as u64 + 1);
        let a = r["avg"].as_f64().unwrap().abs();
        assert!(a <= last_abs, "ranked by |avg|");
        last_abs = a;
        // A change inside the window is counted from the run's rows.
        let d: Vec<i64> = idx.iter().map(|&i| dir[i].unwrap() as i64).collect();
        if let Some(c) = d.windows(2).rposition(|w| w[0] != w[1]) {
            assert_eq!(r["bars_since_change"], (d.len() - 2 - c) as u64, "{s}");
        }
    }
    let long = scan_json(p, &data, &[&flags[..], &["--long"]].concat());
    assert!(long.iter().all(|r| r["dir"] == 1));
    assert_eq!(long.len(), rows.iter().filter(|r| r["dir"] == 1).count());
    let strong = scan_json(p, &data, &[&flags[..], &["--min-strength", "0.3"]].concat());
    assert_eq!(
        strong.len(),
        rows.iter()
            .filter(|r| r["avg"].as_f64().unwrap().abs() >= 0.3)
            .count()
    );
    // CSV: a header and the same rows in rank order.
    let o = atc(p)
        .args(["scan", "-q", "--csv", "--data"])
        .arg(&data)
        .args(flags)
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "rank,symbol,ts,avg,dir,bars_since_change");
    assert_eq!(lines.len(), 13);
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(first[1], rows[0]["symbol"].as_str().unwrap());
    assert_eq!(
        first[3].parse::<f64>().unwrap(),
        rows[0]["avg"].as_f64().unwrap()
    );
    // The table: a header and one aligned row per symbol.
    let o = atc(p)
        .args(["scan", "--data"])
        .arg(&data)
        .args(flags)
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("rank") && lines[0].contains("symbol") && lines[0].contains("since"));
    assert_eq!(lines.len(), 13);
    assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("12 of 12 symbols shown"));
}

/// `scan | head -1`: a closed pipe is not an error; `--help` explains.
#[test]
fn scan_closed_pipe_is_quiet_and_help_explains() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let data = p.join("d.parquet");
    write_walks(&data, "S", 300, 3, 350, 60);
    for fmt in ["--csv", "--json", "--quiet"] {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("atc-bt"))
            .current_dir(p)
            .args(["scan", fmt, "--data"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{fmt}: {e}");
        assert!(
            !e.contains("panicked") && !e.contains("Broken pipe"),
            "{fmt}: {e}"
        );
    }
    let o = atc(p).args(["scan", "--help"]).output().unwrap();
    let h = String::from_utf8(o.stdout).unwrap();
    for w in [
        "--long",
        "--short",
        "--min-strength",
        "--json",
        "--csv",
        "signals.parquet",
        "bars since dir last changed",
    ] {
        assert!(h.contains(w), "{w}: {h}");
    }
    let o = atc(p).args(["run", "--help"]).output().unwrap();
    assert!(String::from_utf8(o.stdout)
        .unwrap()
        .contains("--signals <FILE>"));
}

/// The cache knows a signals file by its content: a second file with the
/// same bytes under another name restored the first run's charts, whose
/// legend and panels named the first file.
#[test]
fn cached_signals_run_labels_its_own_file() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let data = p.join("d.parquet");
    write_walks(&data, "S", 2, 0, 200, 30);
    run_to(p, &data, "base", &[]).success();
    for name in ["alpha.parquet", "beta.parquet"] {
        std::fs::copy(p.join("base/signals.parquet"), p.join(name)).unwrap();
        atc(p)
            .args(["run", "-q", "--mode", "long-short", "--data"])
            .arg(&data)
            .args([
                "--signals",
                name,
                "--out",
                name.trim_end_matches(".parquet"),
            ])
            .assert()
            .success();
    }
    let run = json(&p.join("beta/run.json"));
    assert!(
        run["cache"]["hits"].as_u64() >= Some(1),
        "the second run is restored: {run}"
    );
    let mut text = std::fs::read_to_string(p.join("beta/report.html")).unwrap();
    for e in std::fs::read_dir(p.join("beta/report_files")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "svg") {
            text.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    assert!(text.contains("own file beta.parquet"), "no label");
    assert!(
        !text.contains("own file alpha"),
        "a label of the other file"
    );
}
