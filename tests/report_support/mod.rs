//! Writes run and sweep directories in the layout of `atc-bt run` /
//! `atc-bt sweep` (format_version 3) from seeded synthetic data, so report
//! tests need no backtest.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int8Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use atc_bt::job::memory::write_memory_parquet;
use atc_bt::report::{MemorySample, MemoryTimeline};
use atc_bt::synthetic::random_walk;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{json, Value};

/// 2020-01-01T00:00:00Z in microseconds.
pub const T0: i64 = 1_577_836_800_000_000;
/// One day in microseconds.
pub const DAY: i64 = 86_400_000_000;

fn ts_field(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        nullable,
    )
}

fn ts_array(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

/// Streams record batches into one Parquet file.
pub struct PqWriter {
    w: ArrowWriter<std::fs::File>,
    schema: Arc<Schema>,
}

impl PqWriter {
    pub fn new(path: &Path, fields: Vec<Field>) -> PqWriter {
        let schema = Arc::new(Schema::new(fields));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let f = std::fs::File::create(path).unwrap();
        PqWriter {
            w: ArrowWriter::try_new(f, schema.clone(), Some(props)).unwrap(),
            schema,
        }
    }
    pub fn write(&mut self, cols: Vec<ArrayRef>) {
        let b = RecordBatch::try_new(self.schema.clone(), cols).unwrap();
        self.w.write(&b).unwrap();
    }
    pub fn close(self) {
        self.w.close().unwrap();
    }
}

fn drawdowns(e: &[f64]) -> Vec<f64> {
    let mut peak = f64::NEG_INFINITY;
    e.iter()
        .map(|&x| {
            peak = peak.max(x);
            1.0 - x / peak
        })
        .collect()
}

fn metrics(e: &[f64], trades: usize) -> Value {
    let r: Vec<f64> = e.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    let n = r.len().max(1) as f64;
    let mean = r.iter().sum::<f64>() / n;
    let sd = (r.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
    let mdd = drawdowns(e).into_iter().fold(0.0, f64::max);
    let total = e.last().unwrap() / e[0] - 1.0;
    json!({
        "periods_per_year": 252.0,
        "bars": e.len(),
        "total_return": total,
        "cagr": (1.0 + total).powf(252.0 / n) - 1.0,
        "volatility": sd * 252f64.sqrt(),
        "sharpe": if sd > 0.0 { Some(mean / sd * 252f64.sqrt()) } else { None },
        "sortino": Value::Null,
        "max_drawdown": mdd,
        "trades": trades,
        "win_rate": 0.5,
        "exposure": 0.75,
    })
}

/// The symbols of the small fixture: one named like markup.
pub const SYMBOLS: [&str; 4] = ["AAA", "BBB", "<script>alert(1)</script>", "CC&D"];

/// Writes a run directory with `symbols` × `bars` daily bars. With
/// `close`, `signals.parquet` has the `close` column.
pub fn write_run_dir(dir: &Path, symbols: &[String], bars: usize, close: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let ts: Vec<i64> = (0..bars as i64).map(|i| T0 + i * DAY).collect();
    let mut sig_fields = vec![
        ts_field("ts", false),
        Field::new("symbol", DataType::Utf8, false),
    ];
    if close {
        sig_fields.push(Field::new("close", DataType::Float64, false));
    }
    sig_fields.push(Field::new("avg", DataType::Float64, true));
    sig_fields.push(Field::new("dir", DataType::Int8, false));
    let mut sig = PqWriter::new(&dir.join("signals.parquet"), sig_fields);
    let mut eqw = PqWriter::new(
        &dir.join("equity.parquet"),
        vec![
            ts_field("ts", false),
            Field::new("symbol", DataType::Utf8, true),
            Field::new("aggregate", DataType::Utf8, true),
            Field::new("equity", DataType::Float64, false),
            Field::new("position", DataType::Float64, true),
            Field::new("drawdown", DataType::Float64, false),
        ],
    );
    let mut portfolio = vec![0.0; bars];
    let mut bench = vec![0.0; bars];
    let mut sym_metrics = BTreeMap::new();
    let (mut t_sym, mut t_side, mut t_ets, mut t_ep, mut t_xts, mut t_xp) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut t_ret: Vec<f64> = vec![];
    let mut n_trades_total = 0;
    for (k, s) in symbols.iter().enumerate() {
        let px = random_walk(k as u64 + 1, bars);
        let avg: Vec<Option<f64>> = (0..bars)
            .map(|i| {
                if i < 20 {
                    None
                } else {
                    Some(((i as f64) / 37.0 + k as f64).sin() * 0.8)
                }
            })
            .collect();
        let dir_: Vec<i8> = avg
            .iter()
            .map(|a| match a {
                Some(a) if *a > 0.5 => 1,
                Some(a) if *a < -0.5 => -1,
                _ => 0,
            })
            .collect();
        // Equity: long when dir = 1, short when -1, next-bar fills.
        let mut eq = vec![1000.0; bars];
        let mut pos = 0i8;
        let mut entry: Option<(usize, i8)> = None;
        let mut n_trades = 0;
        for i in 1..bars {
            eq[i] = eq[i - 1] * (1.0 + pos as f64 * (px[i] / px[i - 1] - 1.0));
            let want = dir_[i - 1];
            if want != pos {
                if let Some((e, side)) = entry.take() {
                    t_sym.push(s.clone());
                    t_side.push(if side > 0 { "long" } else { "short" });
                    t_ets.push(Some(ts[e]));
                    t_ep.push(px[e]);
                    t_xts.push(Some(ts[i]));
                    t_xp.push(px[i]);
                    t_ret.push(side as f64 * (px[i] / px[e] - 1.0));
                    n_trades += 1;
                }
                if want != 0 {
                    entry = Some((i, want));
                }
                pos = want;
            }
        }
        if let Some((e, side)) = entry {
            t_sym.push(s.clone());
            t_side.push(if side > 0 { "long" } else { "short" });
            t_ets.push(Some(ts[e]));
            t_ep.push(px[e]);
            t_xts.push(None);
            t_xp.push(px[bars - 1]);
            t_ret.push(side as f64 * (px[bars - 1] / px[e] - 1.0));
            n_trades += 1;
        }
        n_trades_total += n_trades;
        for i in 0..bars {
            portfolio[i] += eq[i];
            bench[i] += 1000.0 * px[i] / px[0];
        }
        let mut m = metrics(&eq, n_trades);
        m["start"] = json!(rfc3339(ts[0]));
        m["end"] = json!(rfc3339(ts[bars - 1]));
        sym_metrics.insert(s.clone(), m);
        let names: Vec<&str> = vec![s.as_str(); bars];
        let mut cols: Vec<ArrayRef> = vec![
            ts_array(ts.iter().map(|&t| Some(t)).collect()),
            Arc::new(StringArray::from(names.clone())),
        ];
        if close {
            cols.push(Arc::new(Float64Array::from(px.clone())));
        }
        cols.push(Arc::new(Float64Array::from(avg)));
        cols.push(Arc::new(Int8Array::from(dir_)));
        sig.write(cols);
        eqw.write(vec![
            ts_array(ts.iter().map(|&t| Some(t)).collect()),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::new_null(bars)),
            Arc::new(Float64Array::from(eq.clone())),
            Arc::new(Float64Array::from(vec![Some(1.0); bars])),
            Arc::new(Float64Array::from(drawdowns(&eq))),
        ]);
    }
    for (name, e) in [("portfolio", &portfolio), ("benchmark", &bench)] {
        eqw.write(vec![
            ts_array(ts.iter().map(|&t| Some(t)).collect()),
            Arc::new(StringArray::new_null(bars)),
            Arc::new(StringArray::from(vec![name; bars])),
            Arc::new(Float64Array::from(e.clone())),
            Arc::new(Float64Array::from(vec![None::<f64>; bars])),
            Arc::new(Float64Array::from(drawdowns(e))),
        ]);
    }
    sig.close();
    eqw.close();
    let n = t_sym.len();
    let mut tw = PqWriter::new(
        &dir.join("trades.parquet"),
        vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("side", DataType::Utf8, false),
            ts_field("entry_ts", false),
            Field::new("entry_price", DataType::Float64, false),
            ts_field("exit_ts", true),
            Field::new("exit_price", DataType::Float64, false),
            Field::new("qty", DataType::Float64, false),
            Field::new("fees", DataType::Float64, false),
            Field::new("pnl", DataType::Float64, false),
            Field::new("return", DataType::Float64, false),
            Field::new("bars_held", DataType::UInt64, false),
            Field::new("open", DataType::Boolean, false),
        ],
    );
    let open: Vec<bool> = t_xts.iter().map(|x| x.is_none()).collect();
    tw.write(vec![
        Arc::new(StringArray::from(t_sym)),
        Arc::new(StringArray::from(t_side)),
        ts_array(t_ets),
        Arc::new(Float64Array::from(t_ep)),
        ts_array(t_xts),
        Arc::new(Float64Array::from(t_xp)),
        Arc::new(Float64Array::from(vec![1.0; n])),
        Arc::new(Float64Array::from(vec![0.0; n])),
        Arc::new(Float64Array::from(
            t_ret.iter().map(|r| r * 1000.0).collect::<Vec<f64>>(),
        )),
        Arc::new(Float64Array::from(t_ret.clone())),
        Arc::new(UInt64Array::from(vec![1u64; n])),
        Arc::new(BooleanArray::from(open)),
    ]);
    tw.close();
    let mut pm = metrics(&portfolio, n_trades_total);
    pm["benchmark_return"] = json!(bench[bars - 1] / bench[0] - 1.0);
    pm["yearly_returns"] = yearly_returns(&ts, &portfolio);
    pm["worst_drawdowns"] = worst_drawdowns(&ts, &portfolio);
    pm["days"] = json!((bars - 1) as f64);
    pm["open_trades"] = json!(symbols.len());
    pm["max_drawdown_duration_days"] = json!(12.5);
    pm["final_equity"] = json!(portfolio[bars - 1]);
    let mut bmet = metrics(&bench, 0);
    bmet["yearly_returns"] = yearly_returns(&ts, &bench);
    let m = json!({"portfolio": pm, "benchmark": bmet, "symbols": sym_metrics});
    std::fs::write(
        dir.join("metrics.json"),
        serde_json::to_string_pretty(&m).unwrap(),
    )
    .unwrap();
    let run = json!({
        "format_version": 3,
        "atc_bt_version": "0.1.0",
        "command": ["atc-bt", "run", "--data", "data/<odd & name>.parquet"],
        "started_at": "2026-01-02T03:04:05Z",
        "inputs_hash": "abc123",
        "params": {"atc": {"lambda": 0.02, "decay": 0.03, "cutout": 0, "long_threshold": 0.5, "short_threshold": -0.5}, "execution": {"mode": "long_short"}},
        "window": {"from": null, "to": null, "warmup_bars": 0},
        "data": {
            "path": "data/<odd & name>.parquet",
            "sources": [{"path": "data/<odd & name>.parquet", "size": 1234, "mtime_ns": 1, "blake3": "ffee"}],
            "series": symbols.iter().map(|s| json!({"symbol": s, "close_hash": "00", "engine_bars": bars, "window_bars": bars})).collect::<Vec<_>>(),
        },
        "timings_ms": {"load": 12.5, "compute": 340.25},
        "periods_per_year": 252.0,
        "symbols": symbols.len(),
    });
    std::fs::write(
        dir.join("run.json"),
        serde_json::to_string_pretty(&run).unwrap(),
    )
    .unwrap();
    write_memory_parquet(&dir.join("memory.parquet"), &synthetic_memory()).unwrap();
}

/// `ts` (µs) as RFC 3339, as `metrics.json` writes times.
pub fn rfc3339(ts: i64) -> String {
    chrono::DateTime::from_timestamp_micros(ts)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Compounded return per calendar year, as `metrics.json`'s
/// `yearly_returns` (the first bar's equity starts the first year).
fn yearly_returns(ts: &[i64], e: &[f64]) -> Value {
    use chrono::Datelike;
    let mut out = serde_json::Map::new();
    let mut base = e[0];
    for i in 0..ts.len() {
        let y = chrono::DateTime::from_timestamp_micros(ts[i])
            .unwrap()
            .year();
        let last = i + 1 == ts.len()
            || chrono::DateTime::from_timestamp_micros(ts[i + 1])
                .unwrap()
                .year()
                != y;
        if last {
            out.insert(y.to_string(), json!(e[i] / base - 1.0));
            base = e[i];
        }
    }
    Value::Object(out)
}

/// The five deepest drawdown episodes, as `metrics.json`'s
/// `worst_drawdowns`.
fn worst_drawdowns(ts: &[i64], e: &[f64]) -> Value {
    let mut eps: Vec<(usize, usize, Option<usize>, f64)> = Vec::new();
    let (mut peak, mut peak_i) = (e[0], 0);
    let mut cur: Option<(usize, usize, f64)> = None;
    for (i, &x) in e.iter().enumerate() {
        if x >= peak {
            if let Some((s, v, d)) = cur.take() {
                eps.push((s, v, Some(i), d));
            }
            peak = x;
            peak_i = i;
        } else {
            let dd = 1.0 - x / peak;
            match &mut cur {
                Some((_, v, d)) if dd > *d => {
                    *v = i;
                    *d = dd;
                }
                Some(_) => {}
                None => cur = Some((peak_i, i, dd)),
            }
        }
    }
    if let Some((s, v, d)) = cur {
        eps.push((s, v, None, d));
    }
    eps.sort_by(|a, b| b.3.total_cmp(&a.3));
    Value::Array(
        eps.iter()
            .take(5)
            .map(|&(s, v, r, d)| {
                let end = r.unwrap_or(e.len());
                json!({
                    "start": rfc3339(ts[s]),
                    "valley": rfc3339(ts[v]),
                    "recovery": r.map(|r| rfc3339(ts[r])),
                    "depth": d,
                    "bars": end - s - 1,
                    "days": (ts[end - 1] - ts[s]) as f64 / DAY as f64,
                })
            })
            .collect(),
    )
}

/// A memory timeline with four phases and a peak in `compute`.
pub fn synthetic_memory() -> MemoryTimeline {
    let phases = ["load", "ingest", "compute", "write"];
    let samples = (0..200u64)
        .map(|i| {
            let phase = phases[(i as usize / 50).min(3)];
            let rss = 50.0
                + (i as f64) * 0.8
                + if i == 130 {
                    60.0
                } else {
                    (i as f64 / 5.0).sin() * 4.0
                };
            MemorySample {
                t_ms: i as f64 * 10.0,
                rss_bytes: (rss * 1048576.0) as u64,
                phase: phase.to_string(),
                bars_done: i * 1000,
                cache_hits: i,
                cache_misses: i / 2,
            }
        })
        .collect();
    let _ = Duration::ZERO;
    MemoryTimeline { samples }
}

/// Writes a sweep directory: lambda × decay × cutout, split in/out.
pub fn write_sweep_dir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let lambdas = [0.01, 0.02, 0.03, 0.04, 0.05];
    let decays = [0.01, 0.02, 0.03];
    let cutouts = [0usize, 10];
    let samples = ["full", "in", "out"];
    let count = lambdas.len() * decays.len() * cutouts.len();
    let score = |c: usize, s: usize| -> f64 {
        let (l, rest) = (
            c / (decays.len() * cutouts.len()),
            c % (decays.len() * cutouts.len()),
        );
        let (d, k) = (rest / cutouts.len(), rest % cutouts.len());
        1.0 - ((l as f64 - 2.0).powi(2) + (d as f64 - 1.0).powi(2)) * 0.2 - k as f64 * 0.1
            + s as f64 * 0.05
    };
    let mut rw = PqWriter::new(
        &dir.join("results.parquet"),
        vec![
            Field::new("combo", DataType::UInt32, false),
            Field::new("sample", DataType::Utf8, false),
            Field::new("symbol", DataType::Utf8, true),
            Field::new("aggregate", DataType::Utf8, true),
            Field::new("lambda", DataType::Float64, false),
            Field::new("decay", DataType::Float64, false),
            Field::new("cutout", DataType::Float64, false),
            Field::new("robustness", DataType::Utf8, false),
            Field::new("sharpe", DataType::Float64, true),
            Field::new("total_return", DataType::Float64, true),
            Field::new("max_drawdown", DataType::Float64, true),
            Field::new("trades", DataType::Float64, true),
        ],
    );
    let mut aggregate: Vec<Option<&str>> = vec![];
    let (
        mut combo,
        mut sample,
        mut symbol,
        mut la,
        mut de,
        mut cu,
        mut ro,
        mut sh,
        mut tr,
        mut md,
        mut nt,
    ) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for c in 0..count {
        for (si, s) in samples.iter().enumerate() {
            for (sym, agg) in [
                (None, Some("portfolio")),
                (None, Some("benchmark")),
                (Some("AAA"), None),
            ] {
                let (l, rest) = (
                    c / (decays.len() * cutouts.len()),
                    c % (decays.len() * cutouts.len()),
                );
                combo.push(c as u32);
                sample.push(*s);
                symbol.push(sym);
                aggregate.push(agg);
                la.push(lambdas[l]);
                de.push(decays[rest / cutouts.len()]);
                cu.push(cutouts[rest % cutouts.len()] as f64);
                ro.push("Medium");
                sh.push(if c == 7 && si == 2 {
                    None
                } else {
                    Some(score(c, si))
                });
                tr.push(Some(score(c, si) * 0.3));
                md.push(Some(0.1 + c as f64 * 0.001));
                nt.push(Some(10.0 + c as f64));
            }
        }
    }
    rw.write(vec![
        Arc::new(UInt32Array::from(combo)),
        Arc::new(StringArray::from(sample)),
        Arc::new(StringArray::from(symbol)),
        Arc::new(StringArray::from(aggregate)),
        Arc::new(Float64Array::from(la)),
        Arc::new(Float64Array::from(de)),
        Arc::new(Float64Array::from(cu)),
        Arc::new(StringArray::from(ro)),
        Arc::new(Float64Array::from(sh)),
        Arc::new(Float64Array::from(tr)),
        Arc::new(Float64Array::from(md)),
        Arc::new(Float64Array::from(nt)),
    ]);
    rw.close();
    for (si, s) in samples.iter().enumerate() {
        let values: Vec<Value> = (0..count)
            .map(|c| {
                if c == 7 && si == 2 {
                    Value::Null
                } else {
                    json!(score(c, si))
                }
            })
            .collect();
        let h = json!({
            "metric": "sharpe", "sample": s,
            "axes": [{"name": "lambda", "values": lambdas}, {"name": "decay", "values": decays}, {"name": "cutout", "values": cutouts}],
            "shape": [lambdas.len(), decays.len(), cutouts.len()],
            "values": values,
        });
        std::fs::write(
            dir.join(format!("heatmap_{s}.json")),
            serde_json::to_string_pretty(&h).unwrap(),
        )
        .unwrap();
    }
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by(|a, b| score(*b, 1).total_cmp(&score(*a, 1)).then(a.cmp(b)));
    let best = order[0];
    let sweep = json!({
        "format_version": 3,
        "atc_bt_version": "0.1.0",
        "command": ["atc-bt", "sweep"],
        "started_at": "2026-01-02T03:04:05Z",
        "grid": {"axes": [["lambda", lambdas], ["decay", decays], ["cutout", cutouts]]},
        "combinations": count,
        "rank_by": "sharpe",
        "ranked_on_sample": "in",
        "samples": [{"name": "full"}, {"name": "in"}, {"name": "out"}],
        "split": "2021-01-01T00:00:00Z",
        "best": {"combo": best, "params": {"lambda": 0.03, "decay": 0.02}},
        "ranking": order,
        "timings_ms": {"load": 1.0, "compute": 2.0},
        "data": {"path": "data", "sources": [], "series": []},
    });
    std::fs::write(
        dir.join("sweep.json"),
        serde_json::to_string_pretty(&sweep).unwrap(),
    )
    .unwrap();
    let bars = 500;
    let px = random_walk(99, bars);
    let mut bw = PqWriter::new(
        &dir.join("best_equity.parquet"),
        vec![
            ts_field("ts", false),
            Field::new("aggregate", DataType::Utf8, false),
            Field::new("equity", DataType::Float64, false),
        ],
    );
    let ts: Vec<Option<i64>> = (0..bars as i64).map(|i| Some(T0 + i * DAY)).collect();
    let best_eq: Vec<f64> = (0..bars)
        .map(|i| 1000.0 * (1.0 + i as f64 * 0.001) * (px[i] / px[0]).sqrt())
        .collect();
    let bh: Vec<f64> = px.iter().map(|p| 1000.0 * p / px[0]).collect();
    for (name, e) in [("portfolio", best_eq), ("benchmark", bh)] {
        bw.write(vec![
            ts_array(ts.clone()),
            Arc::new(StringArray::from(vec![name; bars])),
            Arc::new(Float64Array::from(e)),
        ]);
    }
    bw.close();
}

/// Writes a walk-forward sweep directory: [`write_sweep_dir`] plus
/// `walk_forward.json` with `folds` folds (1-year train, 6-month test;
/// fold 1 has no combination) and `walk_forward_equity.parquet`.
pub fn write_walk_forward_dir(dir: &Path, folds: usize) {
    write_sweep_dir(dir);
    let month = 30 * DAY;
    let mut fj = Vec::new();
    let (mut ts, mut agg, mut eq) = (vec![], vec![], vec![]);
    let (mut level, mut blevel) = (1000.0f64, 1000.0f64);
    let px = random_walk(7, folds * 180 + 1);
    for k in 0..folds {
        let train_from = T0 + k as i64 * 6 * month;
        let test_from = train_from + 12 * month;
        let test_to = test_from + 6 * month - 1;
        let none = k == 1;
        let ret = if none {
            0.0
        } else {
            0.02 * (k as f64 + 1.0) - 0.03
        };
        // As `atc-bt sweep` writes it.
        fj.push(json!({
            "train": {"from": rfc3339(train_from), "to": rfc3339(test_from - 1)},
            "test": {"from": rfc3339(test_from), "to": rfc3339(test_to)},
            "best_combo": if none { Value::Null } else { json!(k * 3) },
            "params": if none { Value::Null } else { json!({"lambda": 0.01 * (k as f64 + 1.0), "decay": 0.02, "cutout": 0}) },
            "train_metric": if none { Value::Null } else { json!(1.5 + k as f64 * 0.1) },
            "test_metrics": if none { Value::Null } else { json!({
                "start": rfc3339(test_from),
                "end": rfc3339(test_from + 179 * DAY),
                "sharpe": 0.8 - k as f64 * 0.1,
                "total_return": ret,
                "benchmark_return": 0.01 * k as f64,
            }) },
        }));
        for d in 0..180usize {
            let t = test_from + d as i64 * DAY;
            let i = k * 180 + d;
            ts.push(Some(t));
            agg.push("walk_forward");
            eq.push(level * (1.0 + ret * d as f64 / 179.0));
            ts.push(Some(t));
            agg.push("benchmark");
            eq.push(blevel * px[i + 1] / px[k * 180]);
        }
        level *= 1.0 + ret;
        blevel *= px[k * 180 + 180] / px[k * 180];
    }
    let wf = json!({
        "spec": {"train": {"Years": 1}, "test": {"Months": 6}, "step": {"Months": 6}},
        "rank_by": "sharpe",
        "folds": fj,
        "out_of_sample": {"total_return": level / 1000.0 - 1.0, "sharpe": 0.55, "max_drawdown": 0.08},
        "benchmark": {"total_return": blevel / 1000.0 - 1.0, "sharpe": 0.3, "max_drawdown": 0.2},
    });
    std::fs::write(
        dir.join("walk_forward.json"),
        serde_json::to_string_pretty(&wf).unwrap(),
    )
    .unwrap();
    // The aggregate rows are interleaved; readers keep each aggregate's
    // rows in order.
    let mut w = PqWriter::new(
        &dir.join("walk_forward_equity.parquet"),
        vec![
            ts_field("ts", false),
            Field::new("symbol", DataType::Utf8, true),
            Field::new("aggregate", DataType::Utf8, true),
            Field::new("equity", DataType::Float64, false),
            Field::new("drawdown", DataType::Float64, false),
        ],
    );
    let n = ts.len();
    w.write(vec![
        ts_array(ts),
        Arc::new(StringArray::new_null(n)),
        Arc::new(StringArray::from(agg)),
        Arc::new(Float64Array::from(eq)),
        Arc::new(Float64Array::from(vec![0.0; n])),
    ]);
    w.close();
}
