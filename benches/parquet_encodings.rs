//! What each Parquet encoding choice of `atc_bt::parquet_write` costs and
//! saves, column by column, on a real run directory:
//!
//! ```sh
//! atc-bt data synth --symbols 1000 --bars 2500 --out /tmp/enc/data/s.parquet
//! atc-bt run --data /tmp/enc/data --no-report --no-cache --outputs all --out /tmp/enc/run
//! cargo bench --bench parquet_encodings -- /tmp/enc/run [REPEATS]
//! ```
//!
//! Each column of `equity.parquet`, `signals.parquet` and `trades.parquet`
//! is re-encoded on one thread (row groups of 640,000 rows, as a run
//! writes them) as a run encodes it: a per-bar file's `symbol` as one run
//! per symbol (`parquet_write::RunsEncoder`), float and timestamp columns
//! through `parquet_write::ValueEncoder` (timestamp keys with the
//! encoder's own statistics), the rest through the Arrow writer; or
//! everything through the Arrow writer (the variant "all through the Arrow writer", as before
//! round 32); under atc-bt's [`Layout`] and under one change at a time;
//! the table gives bytes per row and encoding time per row (thread CPU
//! time, the least of the repeats), and each file's totals.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::Schema;
use atc_bt::parquet_write::{zstd1, Layout, Table};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding};

const ROWS_PER_GROUP: usize = 640_000;

/// The variant whose float columns go through parquet-rs's Arrow writer
/// (as before `ValueEncoder`), in atc-bt's layout.
const ARROW_FLOATS: &str = "all through the Arrow writer";

fn variants() -> Vec<(&'static str, Layout)> {
    let ours = Layout::default();
    vec![
        ("atc-bt layout", ours),
        (ARROW_FLOATS, ours),
        (
            "parquet-rs defaults, zstd 1 (before)",
            Layout {
                float_codec: zstd1(),
                float_encoding: None,
                key_int_encoding: None,
                key_string_encoding: None,
                small_int_encoding: None,
                codec: zstd1(),
                statistics_everywhere: true,
                ..ours
            },
        ),
        (
            "floats: dictionary",
            Layout {
                float_encoding: None,
                ..ours
            },
        ),
        (
            "floats: BYTE_STREAM_SPLIT",
            Layout {
                float_encoding: Some(Encoding::BYTE_STREAM_SPLIT),
                ..ours
            },
        ),
        (
            "floats: zstd 1",
            Layout {
                float_codec: zstd1(),
                ..ours
            },
        ),
        (
            "floats: snappy",
            Layout {
                float_codec: Compression::SNAPPY,
                ..ours
            },
        ),
        (
            "floats: uncompressed",
            Layout {
                float_codec: Compression::UNCOMPRESSED,
                ..ours
            },
        ),
        (
            "other columns: lz4",
            Layout {
                codec: Compression::LZ4_RAW,
                ..ours
            },
        ),
        (
            "8-bit ints: dictionary",
            Layout {
                small_int_encoding: None,
                ..ours
            },
        ),
        (
            "8-bit ints: DELTA_BINARY_PACKED",
            Layout {
                small_int_encoding: Some(Encoding::DELTA_BINARY_PACKED),
                ..ours
            },
        ),
        (
            "timestamp keys: dictionary",
            Layout {
                key_int_encoding: None,
                ..ours
            },
        ),
        (
            "string keys: dictionary",
            Layout {
                key_string_encoding: None,
                ..ours
            },
        ),
        (
            "statistics on every column",
            Layout {
                statistics_everywhere: true,
                ..ours
            },
        ),
    ]
}

/// CPU time of this thread, in seconds: unlike wall time, it does not
/// count the time other processes hold the cores.
fn thread_cpu_s() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// A run's `symbol` column as the run feeds it: one slice per symbol (the
/// aggregate rows' nulls, as they are).
fn as_run_writes(col: &ArrayRef) -> Vec<ArrayRef> {
    use arrow_array::{cast::AsArray, Array};
    let s = col.as_string::<i32>();
    let mut out = Vec::new();
    let mut start = 0;
    while start < s.len() {
        let mut end = start + 1;
        while end < s.len()
            && s.is_valid(end) == s.is_valid(start)
            && (s.is_null(start) || s.value(end) == s.value(start))
        {
            end += 1;
        }
        out.push(col.slice(start, end - start));
        start = end;
    }
    out
}

fn read(path: &std::path::Path) -> Option<Vec<RecordBatch>> {
    let f = std::fs::File::open(path).ok()?;
    let r = ParquetRecordBatchReaderBuilder::try_new(f)
        .ok()?
        .with_batch_size(ROWS_PER_GROUP)
        .build()
        .ok()?;
    r.collect::<Result<Vec<_>, _>>().ok()
}

/// Bytes and seconds to encode one column (`groups`: its arrays, one per
/// row group) into a file of that column alone (written to the page
/// cache; syncing it is not timed).
fn encode(
    field: &arrow_schema::Field,
    key: bool,
    groups: &[Vec<ArrayRef>],
    layout: &Layout,
    arrow_floats: bool,
    per_symbol: bool,
    dir: &std::path::Path,
) -> (u64, f64) {
    let schema = Arc::new(Schema::new(vec![field.clone()]));
    let path = dir.join("column.parquet");
    let keys: Vec<&str> = if key {
        vec![field.name().as_str()]
    } else {
        vec![]
    };
    let t = thread_cpu_s();
    let mut table = Table::create_with(&path, schema, &keys, layout).expect("create");
    for g in groups {
        let runs = per_symbol.then(|| table.runs_encoder(0)).flatten();
        if let Some(r) = runs.filter(|_| !arrow_floats) {
            use arrow_array::{cast::AsArray, Array};
            let runs: Vec<(Option<&str>, usize)> = g
                .iter()
                .map(|a| {
                    let s = a.as_string::<i32>();
                    (s.is_valid(0).then(|| s.value(0)), s.len())
                })
                .collect();
            let chunk = r.encode(&runs).expect("encode");
            table.append_chunks(vec![chunk]).expect("append");
            continue;
        }
        match table
            .value_encoder_with_own_statistics(0)
            .filter(|_| !arrow_floats)
        {
            Some(f) => {
                let chunk = f.encode(g.iter().map(|a| a.as_ref())).expect("encode");
                table.append_chunks(vec![chunk]).expect("append");
            }
            None => {
                let mut w = table.column_writers().expect("writers");
                for part in g {
                    atc_bt::parquet_write::write_column(&mut w[0], field, part.clone())
                        .expect("encode");
                }
                table.append(w).expect("append");
            }
        }
    }
    // Not timed: the footer and the fsync (disk latency, not encoding).
    let secs = thread_cpu_s() - t;
    table.finish().expect("finish");
    (std::fs::metadata(&path).map_or(0, |m| m.len()), secs)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(dir) = args.first().map(std::path::PathBuf::from) else {
        eprintln!("usage: cargo bench --bench parquet_encodings -- RUN_DIR [REPEATS]");
        return;
    };
    let repeats: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(3);
    let scratch = tempfile::tempdir().expect("temp dir");
    let keys = ["ts", "symbol"];
    let variants = variants();
    for file in ["equity.parquet", "signals.parquet", "trades.parquet"] {
        let Some(batches) = read(&dir.join(file)) else {
            println!("## {file}: not readable, skipped");
            continue;
        };
        let Some(schema) = batches.first().map(|b| b.schema()) else {
            continue;
        };
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        println!("\n## {file}: {rows} rows\n");
        println!("| variant | column | bytes/row | ns/row |");
        println!("|---|---|---|---|");
        let mut totals = vec![(0u64, 0f64); variants.len()];
        for (i, field) in schema.fields().iter().enumerate() {
            let per_symbol =
                matches!(field.name().as_str(), "symbol" | "aggregate") && file != "trades.parquet";
            let groups: Vec<Vec<ArrayRef>> = batches
                .iter()
                .map(|b| {
                    if per_symbol {
                        as_run_writes(b.column(i))
                    } else {
                        vec![b.column(i).clone()]
                    }
                })
                .collect();
            let key = keys.contains(&field.name().as_str())
                || (file == "trades.parquet" && field.name() == "symbol");
            for (v, (name, layout)) in variants.iter().enumerate() {
                let mut best = f64::INFINITY;
                let mut bytes = 0;
                for _ in 0..repeats.max(1) {
                    let arrow_floats = *name == ARROW_FLOATS;
                    let (b, s) = encode(
                        field,
                        key,
                        &groups,
                        layout,
                        arrow_floats,
                        per_symbol,
                        scratch.path(),
                    );
                    bytes = b;
                    best = best.min(s);
                }
                totals[v].0 += bytes;
                totals[v].1 += best;
                println!(
                    "| {name} | {} | {:.3} | {:.1} |",
                    field.name(),
                    bytes as f64 / rows as f64,
                    best * 1e9 / rows as f64
                );
            }
        }
        println!("\n| variant | {file} bytes/row | ns/row |");
        println!("|---|---|---|");
        for ((name, _), (bytes, secs)) in variants.iter().zip(&totals) {
            println!(
                "| {name} | {:.2} | {:.1} |",
                *bytes as f64 / rows as f64,
                secs * 1e9 / rows as f64
            );
        }
    }
}
