//! The streamed run (`run_to_dir`, what `atc-bt run` uses) writes exactly
//! the bytes of the in-memory run written by `write_run_dir`, across
//! several output batches, ragged calendars and a window that leaves
//! symbols out.

mod common;

use atc_bt::data::{DataOptions, Dataset};
use atc_bt::run::output::{commit_run_dir, partial_dir, write_run_dir};
use atc_bt::run::{run_to_dir, run_with_cache, RunPlan, Strategy};
use common::{walk, write_ohlcv};

#[test]
fn streamed_run_writes_the_bytes_of_the_in_memory_run() {
    let dir = tempfile::tempdir().unwrap();
    // More symbols than one output batch (256), on ragged calendars: some
    // start late, some end early, so the portfolio carries values forward.
    let series: Vec<_> = (0..300)
        .map(|k| {
            let mut s = walk(&format!("S{k:03}"), k as u64 + 1, 90);
            let (a, b) = (k % 7, 90 - (k % 5));
            s.ts = s.ts[a..b].to_vec();
            s.open = s.open[a..b].to_vec();
            s.close = s.close[a..b].to_vec();
            s
        })
        .collect();
    let data_path = dir.path().join("bars.parquet");
    write_ohlcv(&data_path, &series);
    let data = Dataset::open(&DataOptions {
        data: data_path,
        store: Some(dir.path().join("store")),
        ..Default::default()
    })
    .unwrap();
    let strategy = Strategy::shipped_default().unwrap();
    let plan = RunPlan {
        series: (0..data.series().len()).collect(),
        from: Some(data.series()[0].first_ts + 3 * 86_400_000_000),
        to: None,
        warmup_bars: Some(40),
    };
    let json = serde_json::json!({"test": true});

    let in_memory = run_with_cache(
        &data,
        &plan,
        &strategy,
        false,
        None,
        &atc_bt::cache::Cache::disabled(),
        &|_| {},
    )
    .unwrap();
    let a = dir.path().join("a");
    write_run_dir(&a, &in_memory, &json, false).unwrap();

    let b = dir.path().join("b");
    let tmp = partial_dir(&b, false).unwrap();
    let streamed = run_to_dir(
        &data,
        &plan,
        &strategy,
        false,
        None,
        &atc_bt::cache::Cache::disabled(),
        &|_| {},
        &tmp,
    )
    .unwrap();
    commit_run_dir(&tmp, &b, &json, false, |_| Ok(())).unwrap();

    assert_eq!(streamed.symbols.len(), in_memory.symbols.len());
    assert!(streamed.symbols.len() > 256, "must span two output batches");
    assert_eq!(streamed.portfolio, in_memory.portfolio);
    assert_eq!(streamed.benchmark, in_memory.benchmark);
    for f in [
        "equity.parquet",
        "signals.parquet",
        "trades.parquet",
        "metrics.json",
        "run.json",
    ] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs between the streamed and in-memory run");
    }
    assert!(
        !tmp.exists(),
        "the partial directory was renamed into place"
    );
}
