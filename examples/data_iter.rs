//! Measures the store: open time, iterating every series (sum of closes),
//! and peak RSS (VmHWM) before and after.
//!
//! `cargo run --release --example data_iter -- DATA [STORE] [--no-release]`

use std::time::Instant;

use atc_bt::data::{DataOptions, Dataset};

fn vm(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let data = args
        .first()
        .ok_or("usage: data_iter DATA [STORE] [--no-release]")?;
    let store = args.get(1).filter(|s| !s.starts_with("--")).map(Into::into);
    let release = !args.iter().any(|a| a == "--no-release");
    let t0 = Instant::now();
    let ds = Dataset::open(
        &DataOptions {
            data: data.into(),
            store,
            strict: false,
            progress: false,
        },
        &mut |_| {},
    )?;
    let open_ms = t0.elapsed().as_secs_f64() * 1e3;
    println!(
        "open: {open_ms:.1} ms (built_now={}), VmHWM {}, RssAnon {}, RssFile {}",
        ds.built_now(),
        vm("VmHWM"),
        vm("RssAnon"),
        vm("RssFile")
    );
    let t1 = Instant::now();
    let mut sum = 0.0;
    let mut bars = 0usize;
    for i in 0..ds.series().len() {
        let v = ds.view(i);
        sum += v.close.iter().sum::<f64>() + v.open[0] + v.ts.len() as f64;
        bars += v.close.len();
        if release {
            ds.release(i);
        }
    }
    let secs = t1.elapsed().as_secs_f64();
    println!(
        "iterate: {} series, {bars} bars in {:.1} ms ({:.0} Mbars/s), checksum {sum:.3}",
        ds.series().len(),
        secs * 1e3,
        bars as f64 / secs / 1e6
    );
    println!(
        "peak RSS VmHWM {} (release per series: {release})",
        vm("VmHWM")
    );
    Ok(())
}
