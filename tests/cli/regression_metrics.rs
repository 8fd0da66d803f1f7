//! Regression tests named after the faults they pin (issue 17: numbers a
//! quant can reconcile), each on a small input it writes itself or a tiny
//! committed fixture. The inputs follow `../shared/cases/*/make.py`.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use common::*;
use predicates::prelude::*;

const DAY: i64 = 86_400_000_000;
const HOUR: i64 = DAY / 24;

/// Microseconds of a UTC date at midnight.
fn date(y: i32, m: u32, d: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

/// `n` weekdays (UTC midnight) from `start`.
fn weekdays_from(start: i64, n: usize) -> Vec<i64> {
    (0..)
        .map(|k| start + k * DAY)
        .filter(|&t| (t.div_euclid(DAY) + 3).rem_euclid(7) < 5)
        .take(n)
        .collect()
}

/// A seeded walk with trending stretches (so ATC trades), `n` closes.
fn prices(seed: u64, n: usize) -> Vec<f64> {
    atc_bt::synthetic::random_walk(seed, n)
}

/// Writes one symbol's bars (open = previous close) with the timestamp
/// column in `zone` (`None`: a TIMESTAMP without a zone, read as UTC).
fn write_bars(path: &Path, symbol: &str, ts: &[i64], close: &[f64], zone: Option<&str>) {
    let n = ts.len();
    let open: Vec<f64> = (0..n)
        .map(|i| if i == 0 { close[0] } else { close[i - 1] })
        .collect();
    let high: Vec<f64> = (0..n).map(|i| open[i].max(close[i]) * 1.005).collect();
    let low: Vec<f64> = (0..n).map(|i| open[i].min(close[i]) * 0.995).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, zone.map(Into::into)),
            false,
        ),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("close", DataType::Float64, false),
    ]));
    let mut tsa = TimestampMicrosecondArray::from(ts.to_vec());
    if let Some(z) = zone {
        tsa = tsa.with_timezone(z);
    }
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![symbol; n])),
            Arc::new(tsa),
            Arc::new(Float64Array::from(open)),
            Arc::new(Float64Array::from(high)),
            Arc::new(Float64Array::from(low)),
            Arc::new(Float64Array::from(close.to_vec())),
        ],
    )
    .unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// `atc-bt run` on `data` into `<tmp>/<name>` (quiet, no report) with
/// extra flags; returns the output directory and stderr.
fn run(tmp: &Path, data: &Path, name: &str, extra: &[&str]) -> (PathBuf, String) {
    let out = tmp.join(name);
    let a = atc(tmp)
        .args(["run", "-q", "--no-report", "--no-cache", "--data"])
        .arg(data)
        .arg("--store")
        .arg(tmp.join(format!("store-{name}")))
        .arg("--out")
        .arg(&out)
        .args(extra)
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    (out, stderr)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + b.abs())
}

/// Daily bars stamped at Tokyo midnight: Monday 00:00+09:00 is Sunday
/// 15:00 UTC, so judged in UTC every bar looked like a weekend market
/// (365, Sharpe 3.47). In the file's zone they are weekdays: 252, the same
/// as the same dates without a zone.
#[test]
fn tz_east_daily() {
    let tmp = tempfile::tempdir().unwrap();
    let days = weekdays_from(date(2020, 1, 6), 300);
    let px = prices(31, 300);
    let tokyo: Vec<i64> = days.iter().map(|t| t - 9 * HOUR).collect();
    let zoned = tmp.path().join("tokyo_daily_tz.parquet");
    let naive = tmp.path().join("tokyo_daily_naive.parquet");
    write_bars(&zoned, "7203.T", &tokyo, &px, Some("Asia/Tokyo"));
    write_bars(&naive, "7203.T", &days, &px, None);
    let (a, _) = run(tmp.path(), &zoned, "tz", &[]);
    let (b, _) = run(tmp.path(), &naive, "naive", &[]);
    let (ma, mb) = (json(&a.join("metrics.json")), json(&b.join("metrics.json")));
    for m in [&ma, &mb] {
        for part in ["portfolio", "benchmark"] {
            assert_eq!(m[part]["periods_per_year"], 252.0, "{part}");
        }
        assert_eq!(m["symbols"]["7203.T"]["periods_per_year"], 252.0);
    }
    // Same returns, same calendar: the same statistics.
    for k in [
        "sharpe",
        "sortino",
        "volatility",
        "annual_return",
        "yearly_returns",
    ] {
        assert_eq!(ma["benchmark"][k], mb["benchmark"][k], "{k}");
        assert_eq!(ma["portfolio"][k], mb["portfolio"][k], "{k}");
    }
    // The zone is kept in the store and recorded per series.
    let ra = json(&a.join("run.json"));
    assert_eq!(ra["data"]["series"][0]["tz"], "Asia/Tokyo");
    assert_eq!(
        json(&b.join("run.json"))["data"]["series"][0]["tz"],
        serde_json::Value::Null
    );
    let info = atc(tmp.path())
        .args(["data", "info", "--data"])
        .arg(&zoned)
        .arg("--store")
        .arg(tmp.path().join("store-tz"))
        .assert()
        .success();
    let text = String::from_utf8_lossy(&info.get_output().stdout).to_string();
    assert!(text.contains("Asia/Tokyo"), "{text}");
    // The first Tokyo bar is 2020-01-05 in UTC but 2020 in Tokyo: one year.
    let years = ma["portfolio"]["yearly_returns"].as_object().unwrap();
    assert_eq!(years.keys().collect::<Vec<_>>(), vec!["2020", "2021"]);
}

/// 300 weekday bars plus one special Saturday session (an exchange open
/// for a budget day): one bar in 301 does not make a 24/7 market.
#[test]
fn stray_weekend_bar() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ts = weekdays_from(date(2020, 1, 1), 300);
    ts.push(date(2020, 2, 1)); // a Saturday
    ts.sort();
    let px = prices(81, ts.len());
    let with = tmp.path().join("with_saturday.parquet");
    write_bars(&with, "RELIANCE", &ts, &px, Some("UTC"));
    let (out, _) = run(tmp.path(), &with, "with", &[]);
    let m = json(&out.join("metrics.json"));
    assert_eq!(m["portfolio"]["periods_per_year"], 252.0);
    assert_eq!(m["benchmark"]["periods_per_year"], 252.0);
    // 24/7 daily bars (2 in 7 at weekends) are still 365.
    let all: Vec<i64> = (0..300).map(|k| date(2020, 1, 1) + k * DAY).collect();
    let crypto = tmp.path().join("btc.parquet");
    write_bars(&crypto, "BTC", &all, &prices(82, 300), None);
    let (out, _) = run(tmp.path(), &crypto, "btc", &[]);
    assert_eq!(
        json(&out.join("metrics.json"))["portfolio"]["periods_per_year"],
        365.0
    );
}

/// Per-bar returns of the portfolio rows of `equity.parquet`, from the
/// starting capital.
fn portfolio_returns(dir: &Path, initial: f64) -> Vec<f64> {
    let eq = read_parquet(&dir.join("equity.parquet"));
    let agg = opt_str_col(&eq, "aggregate");
    let e: Vec<f64> = f64_col(&eq, "equity")
        .into_iter()
        .zip(&agg)
        .filter(|(_, a)| a.as_deref() == Some("portfolio"))
        .map(|(v, _)| v.unwrap())
        .collect();
    let mut prev = initial;
    e.iter()
        .map(|&x| {
            let r = x / prev - 1.0;
            prev = x;
            r
        })
        .collect()
}

/// Intraday bars: 24/7 hourly bars are 365 · 24 a year; a US session of 7
/// hourly bars a weekday is 252 · 7 (not the 1,830 its calendar span
/// implies); and the Sharpe is `mean(r)/std(r)·√ppy` on the written curve.
#[test]
fn crypto_hourly() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 2100;
    let px = prices(21, n);
    let start = date(2021, 1, 4);
    let h247: Vec<i64> = (0..n as i64).map(|k| start + k * HOUR).collect();
    let session: Vec<i64> = weekdays_from(start, n / 7)
        .into_iter()
        .flat_map(|d| (0..7).map(move |k| d + 13 * HOUR + HOUR / 2 + k * HOUR))
        .collect();
    for (name, ts, ppy) in [
        ("crypto_24x7", &h247, 8760.0),
        ("us_session", &session, 1764.0),
    ] {
        let data = tmp.path().join(format!("{name}.parquet"));
        write_bars(&data, "X", ts, &px, Some("UTC"));
        let (out, _) = run(tmp.path(), &data, name, &[]);
        let m = json(&out.join("metrics.json"));
        let p = &m["portfolio"];
        let got = p["periods_per_year"].as_f64().unwrap();
        assert!(close(got, ppy), "{name}: {got}");
        let r = portfolio_returns(&out, 100_000.0);
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (r.len() - 1) as f64;
        let sharpe = mean / var.sqrt() * got.sqrt();
        assert!(close(p["sharpe"].as_f64().unwrap(), sharpe), "{name}");
        assert!(
            p["trades"].as_u64().unwrap() > 0,
            "{name}: the test needs trades"
        );
    }
}

/// EURUSD hourly (2.2% of bars at weekends, closed Saturday): not a 24/7
/// market (8,760), not 24 · 252 either: the bars observed per year,
/// ≈ 6,200.
#[test]
fn eurusd_1h() {
    let tmp = tempfile::tempdir().unwrap();
    let data = root().join("tests/fixtures/eurusd_1h_timestamps.parquet");
    let (out, _) = run(tmp.path(), &data, "eurusd", &[]);
    let m = json(&out.join("metrics.json"));
    let got = m["symbols"]["EURUSD"]["periods_per_year"].as_f64().unwrap();
    // 4,999 gaps over 294.25 days, 365-day years.
    assert!(close(got, 4999.0 * 365.0 / 294.25), "{got}");
    assert!((6150.0..6250.0).contains(&got), "{got}");
}

/// A price growing by exactly 0.1% a bar: buy & hold's standard deviation
/// is float residue (1e-16), which gave a benchmark Sharpe of ~1.6e14.
/// Undefined ratios are `null`, the volatility 0.
#[test]
fn const_return() {
    let tmp = tempfile::tempdir().unwrap();
    let n: usize = 300;
    let ts: Vec<i64> = (0..n as i64).map(|k| date(2020, 1, 1) + k * DAY).collect();
    let close_px: Vec<f64> = (1..=n).map(|t| 100.0 * 1.001f64.powi(t as i32)).collect();
    let open: Vec<f64> = (0..n).map(|t| 100.0 * 1.001f64.powi(t as i32)).collect();
    let data = tmp.path().join("geo.parquet");
    write_ohlcv(
        &data,
        &[Series {
            symbol: "GEO".into(),
            ts,
            open,
            close: close_px,
        }],
    );
    let (out, _) = run(tmp.path(), &data, "geo", &[]);
    let m = json(&out.join("metrics.json"));
    for part in [&m["benchmark"], &m["symbols"]["GEO"]] {
        let null = serde_json::Value::Null;
        for k in ["sharpe", "sortino", "calmar", "omega", "skew", "kurtosis"] {
            assert_eq!(part[k], null, "{k} = {}", part[k]);
        }
        let vol = part["volatility"].as_f64().unwrap();
        assert!(vol < 1e-12, "{vol}");
    }
    assert_eq!(m["benchmark"]["alpha"], serde_json::Value::Null);
    assert!(m["benchmark"]["total_return"].as_f64().unwrap() > 0.3);
}

/// A symbol whose data ends inside the window was carried to the end of
/// the run (exposure, an open trade, a stale mark). Now its position is
/// closed at its last close, the trade says why, and the sub-account holds
/// cash.
#[test]
fn delisted_symbol_exits_at_its_last_close() {
    let tmp = tempfile::tempdir().unwrap();
    let days = weekdays(400); // LIVE's calendar (common::walk)
                              // GONE rises steadily (ATC goes long and stays) and stops at bar 300.
    let up: Vec<f64> = prices(9, 300)
        .iter()
        .enumerate()
        .map(|(t, p)| p * 1.004f64.powi(t as i32))
        .collect();
    let data = tmp.path().join("p.parquet");
    write_ohlcv(
        &data,
        &[
            walk("LIVE", 5, 400),
            Series {
                symbol: "GONE".into(),
                ts: days[..300].to_vec(),
                open: up.iter().map(|c| c / 1.001).collect(),
                close: up.clone(),
            },
        ],
    );
    let (out, _) = run(tmp.path(), &data, "run", &[]);
    let trades = read_parquet(&out.join("trades.parquet"));
    let sym = str_col(&trades, "symbol");
    let reason = str_col(&trades, "exit_reason");
    let exit = ts_col(&trades, "exit_ts");
    let open = trades
        .iter()
        .flat_map(|b| {
            let a = b
                .column_by_name("open")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::BooleanArray>()
                .unwrap()
                .clone();
            (0..a.len()).map(move |i| a.value(i))
        })
        .collect::<Vec<bool>>();
    let gone: Vec<usize> = (0..sym.len()).filter(|&i| sym[i] == "GONE").collect();
    let last = *gone.last().expect("GONE traded");
    assert_eq!(reason[last], "end_of_data");
    assert!(!open[last]);
    let last_ts = ts_col(&read_parquet(&out.join("signals.parquet")), "ts")
        .into_iter()
        .zip(str_col(
            &read_parquet(&out.join("signals.parquet")),
            "symbol",
        ))
        .filter(|(_, s)| s == "GONE")
        .map(|(t, _)| t.unwrap())
        .max()
        .unwrap();
    assert_eq!(exit[last], Some(last_ts));
    assert_eq!(last_ts, days[299]);
    for i in 0..sym.len() {
        assert!(
            ["signal", "end_of_data", "end_of_window", "liquidation"].contains(&reason[i].as_str())
        );
        assert_eq!(open[i], reason[i] == "end_of_window");
    }
    // GONE's trade is closed: it counts among the trades, not the open ones.
    let m = json(&out.join("metrics.json"));
    assert_eq!(m["symbols"]["GONE"]["open_trades"], 0);
    // GONE holds cash after its last bar: equity rows end there, position 0.
    let eq = read_parquet(&out.join("equity.parquet"));
    let (es, pos) = (str_col(&eq, "symbol"), f64_col(&eq, "position"));
    let gone_pos: Vec<f64> = (0..es.len())
        .filter(|&i| es[i] == "GONE")
        .map(|i| pos[i].unwrap())
        .collect();
    assert_eq!(gone_pos.len(), 300);
    assert_eq!(gone_pos[299], 0.0);
    assert!(gone_pos[298] > 0.0, "GONE was long before its data ended");
}

/// Spurious `end_of_data` exits (attack on issue 17): a weekday stock whose
/// last bar is a Friday, and the same dates stamped at Tokyo midnight,
/// beside a coin that trades on to Sunday, were closed as delisted (a fee,
/// `open = false`). Neither has ended: the others trade on after their
/// last bar for less than their own weekend gap.
#[test]
fn weekday_stock_and_tokyo_stamps_are_not_delisted_by_a_weekend() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let days = weekdays_from(date(2020, 1, 6), 300); // Monday … Friday
    let fri = *days.last().unwrap();
    assert_eq!(
        (fri.div_euclid(DAY) + 3).rem_euclid(7),
        4,
        "ends on a Friday"
    );
    // A walk with a steady rise: ATC goes long and stays long to the end.
    let up: Vec<f64> = prices(9, 300)
        .iter()
        .enumerate()
        .map(|(t, p)| p * 1.004f64.powi(t as i32))
        .collect();
    write_bars(&data.join("stk.parquet"), "STK", &days, &up, None);
    let tokyo: Vec<i64> = days.iter().map(|t| t - 9 * HOUR).collect();
    write_bars(
        &data.join("tokd.parquet"),
        "TOKD",
        &tokyo,
        &up,
        Some("Asia/Tokyo"),
    );
    let coin_ts: Vec<i64> = (0..)
        .map(|k| days[0] + k * DAY)
        .take_while(|&t| t <= fri + 2 * DAY)
        .collect();
    write_bars(
        &data.join("coin.parquet"),
        "COIN",
        &coin_ts,
        &prices(3, coin_ts.len()),
        None,
    );
    let (out, _) = run(tmp.path(), &data, "run", &[]);
    let trades = read_parquet(&out.join("trades.parquet"));
    let (sym, reason) = (str_col(&trades, "symbol"), str_col(&trades, "exit_reason"));
    for s in ["STK", "TOKD"] {
        let last = (0..sym.len()).rfind(|&i| sym[i] == s).expect(s);
        assert_eq!(reason[last], "end_of_window", "{s}");
    }
    assert!(!reason.iter().any(|r| r == "end_of_data"), "{reason:?}");
}

/// `--periods-per-year` and `--risk-free` apply to every curve and are
/// recorded; symbols of different calendars warn.
#[test]
fn periods_per_year_override_and_mixed_frequency_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("mix.parquet");
    let weekdays = weekdays_from(date(2020, 1, 1), 300);
    let all: Vec<i64> = (0..420).map(|k| date(2020, 1, 1) + k * DAY).collect();
    write_ohlcv(
        &data,
        &[
            Series {
                symbol: "STOCK".into(),
                ts: weekdays,
                ..walk("STOCK", 7, 300)
            },
            Series {
                symbol: "COIN".into(),
                ts: all,
                ..walk("COIN", 8, 420)
            },
        ],
    );
    let (out, stderr) = run(tmp.path(), &data, "mixed", &[]);
    assert!(
        stderr.contains("warning: symbols have different bar frequencies"),
        "{stderr}"
    );
    let r = json(&out.join("run.json"));
    assert_eq!(r["warnings"].as_array().unwrap().len(), 1);
    assert_eq!(r["periods_per_year_source"], "inferred");
    let m = json(&out.join("metrics.json"));
    assert_eq!(m["symbols"]["STOCK"]["periods_per_year"], 252.0);
    assert_eq!(m["symbols"]["COIN"]["periods_per_year"], 365.0);

    // A sweep over the same symbols says so too.
    let a = atc(tmp.path())
        .args([
            "sweep",
            "-q",
            "--no-report",
            "--no-cache",
            "--lambda",
            "0.02,0.05",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("sweep"))
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(stderr.contains("different bar frequencies"), "{stderr}");
    let sj = json(&tmp.path().join("sweep/sweep.json"));
    assert_eq!(sj["warnings"].as_array().unwrap().len(), 1);

    let (out, stderr) = run(
        tmp.path(),
        &data,
        "fixed",
        &["--periods-per-year", "260", "--risk-free", "0.03"],
    );
    assert!(!stderr.contains("different bar frequencies"), "{stderr}");
    let m = json(&out.join("metrics.json"));
    for p in [
        &m["portfolio"],
        &m["benchmark"],
        &m["symbols"]["STOCK"],
        &m["symbols"]["COIN"],
    ] {
        assert_eq!(p["periods_per_year"], 260.0);
        assert_eq!(p["risk_free"], 0.03);
    }
    let r = json(&out.join("run.json"));
    assert_eq!(r["periods_per_year_source"], "override");
    assert_eq!(r["params"]["metrics"]["periods_per_year"], 260.0);
    assert_eq!(r["risk_free"], 0.03);
    // Bad values are refused with the key and the range.
    atc(tmp.path())
        .args(["run", "-q", "--periods-per-year", "0", "--data"])
        .arg(&data)
        .assert()
        .failure()
        .stderr(predicates::str::contains("periods_per_year = 0"));
}

/// `sweep --walk-forward` without `--split` printed "sharpe IS / sharpe
/// OOS / B&H OOS" columns that held the first two training windows, and
/// ranked the in-sample best among them. The table now says which sample
/// it shows, and the folds' choices have their own table.
#[test]
fn walk_forward_table_labels_what_it_shows() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("p.parquet");
    write_walks(&data, "S", 2, 0, 60, 800);
    let sweep = |extra: &[&str]| -> String {
        let a = atc(tmp.path())
            .args([
                "sweep",
                "--no-report",
                "--no-cache",
                "--lambda",
                "0.02,0.08",
                "--data",
            ])
            .arg(&data)
            .arg("--out")
            .arg(tmp.path().join("s"))
            .args(extra)
            .assert()
            .success();
        String::from_utf8_lossy(&a.get_output().stdout).to_string()
    };
    let wf = sweep(&["--walk-forward", "train=1y,test=6m"]);
    let header = wf.lines().next().unwrap();
    assert!(
        header.contains("sharpe [full]") && header.contains("buy&hold [full]"),
        "{wf}"
    );
    for bad in ["IS", "OOS", "[in]", "[out]", "ranks #"] {
        assert!(!wf.contains(bad), "{bad} in\n{wf}");
    }
    let n: usize = wf
        .split("walk-forward: ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .expect("a walk-forward line");
    assert!(n >= 3, "{wf}");
    let folds: Vec<&str> = wf
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("fold"))
        .collect();
    assert!(folds[0].contains("sharpe [train]") && folds[0].contains("sharpe [test]"));
    assert!(folds[0].contains("lambda"), "{}", folds[0]);
    // One row per fold: its windows and the chosen combination's lambda.
    for k in 0..n {
        let row = folds[k + 1];
        assert!(row.trim_start().starts_with(&k.to_string()), "{row}");
        assert!(row.contains("0.02") || row.contains("0.08"), "{row}");
    }
    assert!(wf.contains("out of sample, chained"), "{wf}");

    let split = sweep(&["--split", "2020-06-01"]);
    let header = split.lines().next().unwrap();
    assert!(
        header.contains("sharpe [in]")
            && header.contains("sharpe [out]")
            && header.contains("buy&hold [out]"),
        "{split}"
    );
    assert!(split.contains("in-sample best (combo"), "{split}");
}

/// A timestamp zone that names no zone cannot be judged in: an error
/// naming the file and the fix, not a silent UTC.
#[test]
fn unknown_time_zone_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("mars.parquet");
    let ts = weekdays_from(date(2020, 1, 6), 50);
    write_bars(&data, "X", &ts, &prices(1, 50), Some("Mars/Olympus"));
    atc(tmp.path())
        .args(["run", "-q", "--no-report", "--no-cache", "--data"])
        .arg(&data)
        .assert()
        .failure()
        .stderr(
            predicates::str::contains("mars.parquet")
                .and(predicates::str::contains("Mars/Olympus"))
                .and(predicates::str::contains("IANA")),
        );
}
