//! The streamed run (`run_to_dir`, what `atc-bt run` uses) writes exactly
//! the bytes of the in-memory run written by `write_run_dir`, across
//! several output batches, ragged calendars and a window that leaves
//! symbols out; its pipelined writer (each batch encoded, column by column
//! on the pool, while the next chunk computes) gives the same bytes at any
//! thread count, for every choice of `--outputs`.

use crate::common;

use atc_bt::data::{DataOptions, Dataset};
use atc_bt::run::output::{commit_run_dir, partial_dir, write_run_dir, Outputs};
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
    let data = Dataset::open(
        &DataOptions {
            data: data_path,
            store: Some(dir.path().join("store")),
            ..Default::default()
        },
        &mut |_| {},
    )
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
    write_run_dir(&a, &in_memory, &json, false, Outputs::default()).unwrap();

    let stream = |name: &str, threads: usize, outputs: Outputs| {
        let b = dir.path().join(name);
        let tmp = partial_dir(&b, false).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let streamed = pool
            .install(|| {
                run_to_dir(
                    &data,
                    &plan,
                    &strategy,
                    false,
                    None,
                    &atc_bt::cache::Cache::disabled(),
                    &|_| {},
                    &tmp,
                    outputs,
                )
            })
            .unwrap();
        commit_run_dir(&tmp, &b, &json, false, |_| Ok(())).unwrap();
        assert!(
            !tmp.exists(),
            "the partial directory was renamed into place"
        );
        (b, streamed)
    };
    let (b, streamed) = stream("b", 2, Outputs::default());

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
    // The report reads only what it draws: the aggregate curves are a
    // row group of their own, and a symbol's rows one of the batches'.
    let read = |file: &str, column: &str, name: &str| {
        let (mut rows, mut names) = (0, std::collections::BTreeSet::new());
        let want: std::collections::BTreeSet<String> = [name.to_string()].into();
        atc_bt::report::load::for_each_batch_of(&b.join(file), &[], column, &want, |batch| {
            rows += batch.len();
            names.extend(batch.strs("symbol")?);
            Ok(())
        })
        .unwrap();
        (rows, names.len())
    };
    let curve = streamed.portfolio.ts.len() + streamed.benchmark.ts.len();
    assert_eq!(read("equity.parquet", "aggregate", "portfolio"), (curve, 1));
    let last = &streamed.symbols.last().unwrap().symbol;
    let (rows, symbols) = read("signals.parquet", "symbol", last);
    assert!(
        symbols <= streamed.symbols.len() - 256,
        "{rows} rows of {symbols} symbols read for one symbol of the last batch"
    );
    let same = |x: &std::path::Path, y: &std::path::Path, files: &[&str], what: &str| {
        for f in files {
            let (p, q) = (
                std::fs::read(x.join(f)).unwrap(),
                std::fs::read(y.join(f)).unwrap(),
            );
            assert!(p == q, "{f} differs: {what}");
        }
    };
    let files = Outputs::default().files();
    for threads in [1, 3] {
        let (c, _) = stream(&format!("t{threads}"), threads, Outputs::default());
        same(&b, &c, &files, &format!("2 threads against {threads}"));
    }
    // Every optional column and file, at two thread counts.
    let all = Outputs::parse("all").unwrap();
    let (d, _) = stream("all1", 1, all);
    let (e, _) = stream("all4", 4, all);
    same(&d, &e, &all.files(), "--outputs all, 1 thread against 4");
    // The streamed run moves the engine's vectors into its results and
    // copies the closes only when written: the optional columns are those
    // of the in-memory run, which copies them all.
    let a_all = dir.path().join("a_all");
    write_run_dir(&a_all, &in_memory, &json, false, all).unwrap();
    same(
        &a_all,
        &d,
        &all.files(),
        "--outputs all, in memory against streamed",
    );
    let names = |f: &str| {
        let b = common::read_parquet(&d.join(f));
        b[0].schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names("equity.parquet"),
        [
            "ts",
            "symbol",
            "aggregate",
            "equity",
            "position",
            "drawdown"
        ]
    );
    assert_eq!(
        names("signals.parquet"),
        ["ts", "symbol", "close", "avg", "dir"]
    );
    // The default leaves out the derived columns; the values of the rest
    // are those of `--outputs all`.
    let (dflt, full) = (
        common::read_parquet(&b.join("equity.parquet")),
        common::read_parquet(&d.join("equity.parquet")),
    );
    assert_eq!(
        common::f64_col(&dflt, "equity"),
        common::f64_col(&full, "equity")
    );
    assert!(dflt[0].schema().index_of("drawdown").is_err());
    // Metrics only: equity.parquet keeps the portfolio and benchmark rows.
    let (m, _) = stream("metrics", 2, Outputs::parse("metrics").unwrap());
    assert!(!m.join("signals.parquet").exists() && !m.join("trades.parquet").exists());
    let eq = common::read_parquet(&m.join("equity.parquet"));
    let mut aggs = common::str_col(&eq, "aggregate");
    aggs.dedup();
    assert_eq!(aggs, ["portfolio", "benchmark"]);
    same(
        &b,
        &m,
        &["metrics.json"],
        "metrics.json with --outputs metrics",
    );
}
