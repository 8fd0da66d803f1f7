//! Integration tests of the data layer: `atc-bt data …` on tiny Parquet
//! files written here, on the bundled `data/`, and (when present) on
//! `../shared/data/real`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampSecondArray,
};
use arrow_schema::{Field, Schema};
use assert_cmd::Command;
use atc_bt::data::{read_symbol_close, DataError, DataOptions, Dataset, SymbolSelection};
use parquet::arrow::ArrowWriter;
use predicates::prelude::*;
use tempfile::TempDir;

const DAY: i64 = 86_400_000_000;
/// 2020-01-01 in µs.
const Y2020: i64 = 1_577_836_800_000_000;

fn write_cols(path: &Path, cols: Vec<(&str, ArrayRef)>) {
    let fields: Vec<Field> = cols
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch =
        RecordBatch::try_new(schema.clone(), cols.into_iter().map(|(_, a)| a).collect()).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Bars: (symbol, day offset from 2020-01-01, open, high, low, close).
type Bar = (&'static str, i64, f64, f64, f64, f64);

fn write_bars(path: &Path, bars: &[Bar]) {
    write_cols(
        path,
        vec![
            (
                "symbol",
                Arc::new(StringArray::from(
                    bars.iter().map(|b| b.0).collect::<Vec<_>>(),
                )),
            ),
            (
                "ts",
                Arc::new(
                    TimestampMicrosecondArray::from(
                        bars.iter().map(|b| Y2020 + b.1 * DAY).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
            ),
            (
                "open",
                Arc::new(Float64Array::from(
                    bars.iter().map(|b| b.2).collect::<Vec<_>>(),
                )),
            ),
            (
                "high",
                Arc::new(Float64Array::from(
                    bars.iter().map(|b| b.3).collect::<Vec<_>>(),
                )),
            ),
            (
                "low",
                Arc::new(Float64Array::from(
                    bars.iter().map(|b| b.4).collect::<Vec<_>>(),
                )),
            ),
            (
                "close",
                Arc::new(Float64Array::from(
                    bars.iter().map(|b| b.5).collect::<Vec<_>>(),
                )),
            ),
            (
                "volume",
                Arc::new(Float64Array::from(vec![Some(100.0); bars.len()])),
            ),
        ],
    );
}

fn good(sym: &'static str, n: i64) -> Vec<Bar> {
    (0..n)
        .map(|i| {
            let c = 100.0 + i as f64;
            (sym, i, c - 0.5, c + 1.0, c - 1.0, c)
        })
        .collect()
}

fn bin() -> Command {
    Command::cargo_bin("atc-bt").unwrap()
}

fn info(data: &Path, store: &Path) -> Command {
    let mut c = bin();
    c.args(["data", "info", "--data"])
        .arg(data)
        .arg("--store")
        .arg(store);
    c
}

struct Case {
    _dir: TempDir,
    file: PathBuf,
    store: PathBuf,
}

fn case(name: &str, bars: &[Bar]) -> Case {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join(name);
    write_bars(&file, bars);
    let store = dir.path().join("store");
    Case {
        _dir: dir,
        file,
        store,
    }
}

// ---- file-level errors -------------------------------------------------

#[test]
fn missing_column_is_an_error_naming_file_and_column() {
    let dir = TempDir::new().unwrap();
    let f = dir.path().join("nohigh.parquet");
    write_cols(
        &f,
        vec![
            ("symbol", Arc::new(StringArray::from(vec!["A"]))),
            ("ts", Arc::new(TimestampMicrosecondArray::from(vec![Y2020]))),
            ("open", Arc::new(Float64Array::from(vec![1.0]))),
            ("low", Arc::new(Float64Array::from(vec![1.0]))),
            ("close", Arc::new(Float64Array::from(vec![1.0]))),
        ],
    );
    info(&f, &dir.path().join("s"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nohigh.parquet"))
        .stderr(predicate::str::contains("no `high` column"))
        .stderr(predicate::str::contains(
            "found: symbol, ts, open, low, close",
        ));
    assert!(!dir.path().join("s").exists(), "no store after an error");
}

#[test]
fn non_numeric_price_column_is_an_error() {
    let dir = TempDir::new().unwrap();
    let f = dir.path().join("textclose.parquet");
    write_cols(
        &f,
        vec![
            ("symbol", Arc::new(StringArray::from(vec!["A"]))),
            ("ts", Arc::new(TimestampMicrosecondArray::from(vec![Y2020]))),
            ("open", Arc::new(Float64Array::from(vec![1.0]))),
            ("high", Arc::new(Float64Array::from(vec![1.0]))),
            ("low", Arc::new(Float64Array::from(vec![1.0]))),
            ("close", Arc::new(StringArray::from(vec!["1.0"]))),
        ],
    );
    info(&f, &dir.path().join("s"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("textclose.parquet"))
        .stderr(predicate::str::contains("column \"close\" has type Utf8"))
        .stderr(predicate::str::contains("expected a number"));
}

#[test]
fn integer_timestamps_are_refused_with_a_hint() {
    let dir = TempDir::new().unwrap();
    let f = dir.path().join("intts.parquet");
    write_cols(
        &f,
        vec![
            ("symbol", Arc::new(StringArray::from(vec!["A"]))),
            ("ts", Arc::new(Int64Array::from(vec![1_577_836_800]))),
            ("open", Arc::new(Float64Array::from(vec![1.0]))),
            ("high", Arc::new(Float64Array::from(vec![1.0]))),
            ("low", Arc::new(Float64Array::from(vec![1.0]))),
            ("close", Arc::new(Float64Array::from(vec![1.0]))),
        ],
    );
    info(&f, &dir.path().join("s"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "intts.parquet: column \"ts\" has type Int64",
        ))
        .stderr(predicate::str::contains("carry no unit"));
}

#[test]
fn truncated_parquet_is_an_error() {
    let c = case("trunc.parquet", &good("A", 50));
    let bytes = std::fs::read(&c.file).unwrap();
    std::fs::write(&c.file, &bytes[..bytes.len() / 2]).unwrap();
    info(&c.file, &c.store)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "trunc.parquet: not a Parquet file, or the file is truncated",
        ));
    assert!(!c.store.exists());
}

#[test]
fn non_parquet_file_is_an_error() {
    let dir = TempDir::new().unwrap();
    let f = dir.path().join("prices.parquet");
    std::fs::write(&f, "symbol,ts,close\nA,2020-01-01,1\n").unwrap();
    info(&f, &dir.path().join("s"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "prices.parquet: not a Parquet file",
        ));
}

#[test]
fn empty_file_is_an_error() {
    let dir = TempDir::new().unwrap();
    let f = dir.path().join("zero.parquet");
    std::fs::write(&f, b"").unwrap();
    info(&f, &dir.path().join("s"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("zero.parquet: the file is empty"));
    let g = dir.path().join("norows.parquet");
    write_bars(&g, &[]);
    info(&g, &dir.path().join("s2"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "norows.parquet: the file is empty (no rows)",
        ));
}

#[test]
fn no_parquet_files_is_an_error() {
    let dir = TempDir::new().unwrap();
    info(dir.path(), &dir.path().join("s"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no Parquet files found"));
}

// ---- invalid series ----------------------------------------------------

fn invalid_case(name: &str, bad: Bar, expect: &str) {
    let mut bars = good("GOOD", 5);
    let mut b = good("BAD", 5);
    b[3] = bad;
    bars.extend(b);
    let c = case(name, &bars);
    // Row 8 = 5 GOOD rows + index 3; day 3 = 2020-01-04.
    info(&c.file, &c.store)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("GOOD"))
        .stderr(predicate::str::contains(format!(
            "{name}: symbol \"BAD\": row 8 (2020-01-04): {expect}"
        )))
        .stderr(predicate::str::contains("1 series invalid"));
    // The store holds the valid series and is not broken.
    let ds = Dataset::open(
        &DataOptions {
            data: c.file.clone(),
            store: Some(c.store.clone()),
            strict: false,
            progress: false,
        },
        &mut |_| {},
    )
    .unwrap();
    assert!(!ds.built_now());
    assert_eq!(ds.series().len(), 1);
    assert_eq!(ds.invalid().len(), 1);
    assert_eq!(ds.invalid()[0].name, "BAD");
}

#[test]
fn nan_price_invalidates_the_series() {
    invalid_case(
        "nan.parquet",
        ("BAD", 3, 1.0, 2.0, 0.5, f64::NAN),
        "close is NaN or null",
    );
}

#[test]
fn infinite_price_invalidates_the_series() {
    invalid_case(
        "inf.parquet",
        ("BAD", 3, 1.0, f64::INFINITY, 0.5, 1.0),
        "high is inf; prices must be finite",
    );
}

#[test]
fn non_positive_price_invalidates_the_series() {
    invalid_case(
        "zero.parquet",
        ("BAD", 3, 1.0, 2.0, 0.0, 1.0),
        "low is 0; prices must be > 0",
    );
    invalid_case(
        "neg.parquet",
        ("BAD", 3, -1.0, 2.0, 0.5, 1.0),
        "open is -1; prices must be > 0",
    );
}

#[test]
fn high_below_low_invalidates_the_series() {
    invalid_case(
        "hilo.parquet",
        ("BAD", 3, 1.0, 1.0, 2.0, 1.5),
        "high 1 is below low 2",
    );
}

#[test]
fn conflicting_duplicate_invalidates_the_series() {
    // Row 8 repeats day 2 (2020-01-03) with other values.
    let mut bars = good("GOOD", 5);
    let mut b = good("BAD", 5);
    b[3] = ("BAD", 2, 10.0, 11.0, 9.0, 10.0);
    bars.extend(b);
    let c = case("dup.parquet", &bars);
    info(&c.file, &c.store)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "dup.parquet: symbol \"BAD\": row 8 (2020-01-03): duplicate timestamp with different values (rows 7 and 8)",
        ));
    bin()
        .args(["data", "info", "--strict", "--data"])
        .arg(&c.file)
        .arg("--store")
        .arg(&c.store)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--strict: 1 data problem(s)"));
}

#[test]
fn read_symbol_close_reports_invalid_and_unknown() {
    let mut bars = good("A", 3);
    bars.push(("B", 0, 1.0, 2.0, 0.5, f64::NAN));
    let c = case("rsc.parquet", &bars);
    assert_eq!(
        read_symbol_close(&c.file, "A").unwrap(),
        vec![100.0, 101.0, 102.0]
    );
    let e = read_symbol_close(&c.file, "B").unwrap_err();
    assert!(matches!(e, DataError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("row 3"), "{e}");
    let e = read_symbol_close(&c.file, "AA").unwrap_err().to_string();
    assert!(e.contains("no rows for symbol \"AA\"; closest: A"), "{e}");
}

// ---- warnings and --strict --------------------------------------------

#[test]
fn ohlc_inconsistency_is_a_warning_and_the_bar_is_kept() {
    let mut bars = good("A", 5);
    bars[2] = ("A", 2, 105.0, 103.0, 101.0, 102.0); // open above high
    let c = case("ohlc.parquet", &bars);
    info(&c.file, &c.store)
        .assert()
        .success()
        .stdout(predicate::str::contains("1 series, 5 bars"))
        .stderr(predicate::str::contains(
            "warning: ",
        ))
        .stderr(predicate::str::contains(
            "ohlc.parquet: symbol \"A\": row 2 (2020-01-03): open 105 is outside [low 101, high 103]; bar kept",
        ));
    bin()
        .args(["data", "ingest", "--strict", "--quiet", "--data"])
        .arg(&c.file)
        .arg("--store")
        .arg(&c.store)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--strict: 1 data problem(s)"))
        .stderr(predicate::str::contains("open 105 is outside"));
}

#[test]
fn exact_duplicate_is_a_warning_and_dropped() {
    let mut bars = good("A", 4);
    bars.insert(2, bars[1]);
    let c = case("exactdup.parquet", &bars);
    info(&c.file, &c.store)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "exactdup.parquet: symbol \"A\": row 2 (2020-01-02): exact duplicate of row 1; dropped",
        ));
    let ds = Dataset::open(
        &DataOptions {
            data: c.file.clone(),
            store: Some(c.store.clone()),
            strict: false,
            progress: false,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(ds.view(0).close, &[100.0, 101.0, 102.0, 103.0]);
}

#[test]
fn unsorted_rows_are_sorted_not_an_error() {
    let mut bars = good("B", 4);
    bars.extend(good("A", 3));
    bars.reverse();
    let c = case("unsorted.parquet", &bars);
    bin()
        .args(["data", "info", "--strict", "--data"])
        .arg(&c.file)
        .arg("--store")
        .arg(&c.store)
        .assert()
        .success();
    let ds = Dataset::open(
        &DataOptions {
            data: c.file.clone(),
            store: Some(c.store.clone()),
            strict: true,
            progress: false,
        },
        &mut |_| {},
    )
    .unwrap();
    let names: Vec<&str> = ds.series().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
    assert_eq!(ds.view(1).close, &[100.0, 101.0, 102.0, 103.0]);
    assert_eq!(ds.view(1).ts[0], Y2020);
}

// ---- column spellings and timestamp types ------------------------------

#[test]
fn aliases_and_timestamp_units_are_accepted() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let px = |v: f64| -> ArrayRef { Arc::new(Float64Array::from(vec![v, v + 1.0])) };
    // Seconds with a non-UTC zone (instants are UTC in Arrow).
    write_cols(
        &d.join("secs.parquet"),
        vec![
            ("Ticker", Arc::new(StringArray::from(vec!["S", "S"]))),
            (
                "Timestamp",
                Arc::new(
                    TimestampSecondArray::from(vec![1_577_836_800, 1_577_923_200])
                        .with_timezone("+01:00"),
                ),
            ),
            ("OPEN", px(10.0)),
            ("High", px(11.0)),
            ("low", px(9.0)),
            ("Close", px(10.0)),
        ],
    );
    // Naive milliseconds.
    write_cols(
        &d.join("millis.parquet"),
        vec![
            ("symbol", Arc::new(StringArray::from(vec!["M", "M"]))),
            (
                "datetime",
                Arc::new(TimestampMillisecondArray::from(vec![
                    1_577_836_800_000,
                    1_577_923_200_000,
                ])),
            ),
            ("open", px(10.0)),
            ("high", px(11.0)),
            ("low", px(9.0)),
            ("close", px(10.0)),
            (
                "Volume",
                Arc::new(Float64Array::from(vec![None, Some(5.0)])),
            ),
        ],
    );
    // Date32 and text.
    write_cols(
        &d.join("dates.parquet"),
        vec![
            ("symbol", Arc::new(StringArray::from(vec!["D", "D"]))),
            ("Date", Arc::new(Date32Array::from(vec![18262, 18263]))),
            ("open", px(10.0)),
            ("high", px(11.0)),
            ("low", px(9.0)),
            ("close", px(10.0)),
        ],
    );
    write_cols(
        &d.join("text.parquet"),
        vec![
            ("symbol", Arc::new(StringArray::from(vec!["T", "T"]))),
            (
                "date",
                Arc::new(StringArray::from(vec![
                    "2020-01-01",
                    "2020-01-02T01:00:00+01:00",
                ])),
            ),
            ("open", px(10.0)),
            ("high", px(11.0)),
            ("low", px(9.0)),
            ("close", px(10.0)),
        ],
    );
    let ds = Dataset::open(
        &DataOptions {
            data: d.to_path_buf(),
            store: Some(d.join("store")),
            strict: true,
            progress: false,
        },
        &mut |_| {},
    )
    .unwrap();
    let names: Vec<&str> = ds.series().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["D", "M", "S", "T"]);
    for (i, name) in names.iter().enumerate() {
        let v = ds.view(i);
        assert_eq!(v.ts, &[Y2020, Y2020 + DAY], "{name}");
        assert_eq!(ds.series()[i].interval_us, DAY);
    }
    let m = ds.view(1);
    assert!(m.volume[0].is_nan());
    assert_eq!(m.volume[1], 5.0);
    bin()
        .args(["data", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ticker"))
        .stdout(predicate::str::contains("datetime"))
        .stdout(predicate::str::contains("with or without a time zone"));
}

// ---- names and selection -----------------------------------------------

#[test]
fn repeated_symbols_are_qualified_and_bare_names_are_ambiguous() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    write_bars(
        &d.join("one.parquet"),
        &[good("MSFT", 3), good("AAPL", 3)].concat(),
    );
    write_bars(&d.join("two.parquet"), &good("MSFT", 4));
    let ds = Dataset::open(
        &DataOptions {
            data: d.to_path_buf(),
            store: Some(d.join("store")),
            strict: false,
            progress: false,
        },
        &mut |_| {},
    )
    .unwrap();
    let names: Vec<&str> = ds.series().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["AAPL", "one:MSFT", "two:MSFT"]);
    assert_eq!(ds.series()[2].bars, 4);
    let e = ds
        .select(&SymbolSelection::parse("MSFT").unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("one:MSFT, two:MSFT"), "{e}");
    assert_eq!(
        ds.select(&SymbolSelection::parse("two:MSFT,AAPL").unwrap())
            .unwrap(),
        vec![0, 2]
    );
    let e = ds
        .select(&SymbolSelection::parse("APPL").unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown symbol \"APPL\"; closest: AAPL"), "{e}");
    let list = d.join("syms.txt");
    std::fs::write(&list, "# mine\nAAPL\n\none:MSFT\n").unwrap();
    let sel = SymbolSelection::parse(&format!("@{}", list.display())).unwrap();
    assert_eq!(ds.select(&sel).unwrap(), vec![0, 1]);
    // A window with no data names the range the data covers.
    let from = atc_bt::data::parse_date_bound("2021", false).unwrap();
    let e = atc_bt::data::ensure_window(ds.series(), &[0], Some(from), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the data covers 2020-01-01 – 2020-01-03"), "{e}");
}

// ---- the store -----------------------------------------------------------

#[test]
fn store_round_trip_equals_parquet_and_second_open_uses_the_store() {
    let dir = TempDir::new().unwrap();
    let f = dir.path().join("syn.parquet");
    atc_bt::data::synth(7, 300, 9, &f).unwrap();
    let store = dir.path().join("store");
    info(&f, &store)
        .assert()
        .success()
        .stderr(predicate::str::contains("data: built store"))
        .stderr(predicate::str::contains(
            "(7 series, 2100 bars) from 1 Parquet files",
        ));
    info(&f, &store)
        .assert()
        .success()
        .stderr(predicate::str::contains("data: opened store"))
        .stderr(predicate::str::contains("built store").not());
    let ds = Dataset::open(
        &DataOptions {
            data: f.clone(),
            store: Some(store.clone()),
            strict: true,
            progress: false,
        },
        &mut |_| {},
    )
    .unwrap();
    assert!(!ds.built_now());
    assert_eq!(ds.sources().len(), 1);
    assert_eq!(ds.sources()[0].blake3.len(), 64);
    for (i, s) in ds.series().iter().enumerate() {
        let close = read_symbol_close(&f, &s.symbol).unwrap();
        let v = ds.view(i);
        assert_eq!(v.close, close.as_slice());
        assert_eq!(v.ts.len(), 300);
        assert_eq!(
            s.close_hash,
            blake3::hash(
                &close
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect::<Vec<u8>>()
            )
            .to_hex()
            .to_string()
        );
        assert!(v.low.iter().zip(v.high).all(|(l, h)| l <= h));
        ds.release(i);
        assert_eq!(ds.view(i).close, close.as_slice(), "slices survive release");
    }
    // Same seed, same bytes.
    let g = dir.path().join("syn2.parquet");
    atc_bt::data::synth(7, 300, 9, &g).unwrap();
    assert_eq!(
        read_symbol_close(&g, "SYN00003").unwrap(),
        read_symbol_close(&f, "SYN00003").unwrap()
    );
}

fn open_quiet(data: &Path, store: &Path) -> Dataset {
    Dataset::open(
        &DataOptions {
            data: data.to_path_buf(),
            store: Some(store.to_path_buf()),
            strict: false,
            progress: false,
        },
        &mut |_| {},
    )
    .unwrap()
}

#[test]
fn touching_a_source_rebuilds_the_store() {
    let c = case("t.parquet", &good("A", 5));
    assert!(open_quiet(&c.file, &c.store).built_now());
    assert!(!open_quiet(&c.file, &c.store).built_now());
    let f = std::fs::File::options().write(true).open(&c.file).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    info(&c.file, &c.store)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "changed (size or modification time); rebuilding",
        ))
        .stderr(predicate::str::contains("data: built store"));
    // Changed content: new values come through.
    write_bars(&c.file, &good("A", 6));
    let ds = open_quiet(&c.file, &c.store);
    assert!(ds.built_now());
    assert_eq!(ds.series()[0].bars, 6);
}

#[test]
fn half_written_store_is_rebuilt() {
    let c = case("h.parquet", &good("A", 50));
    open_quiet(&c.file, &c.store);
    std::fs::remove_file(c.store.join("manifest.json")).unwrap();
    info(&c.file, &c.store)
        .assert()
        .success()
        .stderr(predicate::str::contains("no readable manifest"))
        .stderr(predicate::str::contains("data: built store"));
    let bars = c.store.join("bars.arrow");
    let bytes = std::fs::read(&bars).unwrap();
    std::fs::write(&bars, &bytes[..bytes.len() - 100]).unwrap();
    info(&c.file, &c.store)
        .assert()
        .success()
        .stderr(predicate::str::contains("rebuilding"))
        .stderr(predicate::str::contains("data: built store"));
    // Same size but a corrupt footer.
    let mut bytes = std::fs::read(&bars).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    std::fs::write(&bars, &bytes).unwrap();
    let ds = open_quiet(&c.file, &c.store);
    assert!(ds.built_now());
    assert_eq!(ds.view(0).close.len(), 50);
}

#[test]
fn ingest_builds_then_reports_up_to_date() {
    let c = case("i.parquet", &good("A", 10));
    let mut cmd = bin();
    cmd.args(["data", "ingest", "--data"])
        .arg(&c.file)
        .arg("--store")
        .arg(&c.store);
    cmd.assert()
        .success()
        .stderr(predicate::str::contains("ingested 10 bars"));
    let mut cmd = bin();
    cmd.args(["data", "ingest", "--data"])
        .arg(&c.file)
        .arg("--store")
        .arg(&c.store);
    cmd.assert()
        .success()
        .stderr(predicate::str::contains("up to date"));
}

// ---- real data -----------------------------------------------------------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn bundled_data_info_and_ingest() {
    let tmp = TempDir::new().unwrap();
    let store = tmp.path().join("store");
    info(&repo().join("data"), &store)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "us_stocks_daily_2000_2013_quandl_wiki:MSFT",
        ))
        .stdout(predicate::str::contains("BTC-USD"))
        .stdout(predicate::str::contains(
            "536 series, 152389 bars, 4 source file(s)",
        ));
    let ds = open_quiet(&repo().join("data"), &store);
    let e = ds
        .select(&SymbolSelection::parse("MSFT").unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("sp500_constituents_daily_2009_2010:MSFT"), "{e}");
    let btc = ds
        .select(&SymbolSelection::parse("BTC-USD").unwrap())
        .unwrap()[0];
    let v = ds.view(btc);
    let from = atc_bt::data::parse_date_bound("2021", false).unwrap();
    let (start, traded) = atc_bt::data::window(v.ts, Some(from), None, Some(30)).unwrap();
    assert_eq!(traded.start - start, 30);
    assert_eq!(atc_bt::data::fmt_ts(v.ts[traded.start]), "2021-01-01");
    bin()
        .args(["data", "info", "--strict", "--data"])
        .arg(repo().join("data"))
        .arg("--store")
        .arg(&store)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--strict: 78 data problem(s)"));
}

#[test]
fn shared_real_data_info() {
    let real = repo().join("../shared/data/real");
    let real = if real.is_dir() {
        real
    } else {
        PathBuf::from("/work/shared/data/real")
    };
    if !real.is_dir() {
        eprintln!("SKIPPED shared_real_data_info: ../shared/data/real not found");
        return;
    }
    let tmp = TempDir::new().unwrap();
    info(&real, &tmp.path().join("store"))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "856 series, 797547 bars, 22 source file(s)",
        ))
        .stdout(predicate::str::contains(
            "msft_daily_1986_2017_pmdarima:MSFT",
        ))
        .stderr(predicate::str::contains("574 warning(s)"));
}
