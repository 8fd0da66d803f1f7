//! Input identities: one hash function for everything that names a job's
//! inputs, and the four identities built with it.
//!
//! | identity | what it covers | where it is kept |
//! |----------|----------------|------------------|
//! | [`run_inputs`] | strategy, window, each selected series' name and close hash (with stops: and its high and low hashes) | `run.json` `inputs_hash`, part headers, default output names |
//! | [`sweep_inputs`] | grid, base strategy, window and split, each series' name and close hash (with stops: high, low) | `sweep.json` `inputs_hash`, part headers |
//! | [`run_entry`] | program, layout and Parquet writer versions, strategy, window, `--strict`, the files written, each series' name and whole-bars hash (with stops: high, low) | the key of the run cache's entry |
//! | [`with_signals`], [`entry_with_signals`] | the two above combined with a `--signals` file's content hash | as above, for a run on a signals file |
//! | [`invocation`] | program, layout and Parquet writer versions, strategy, selection and window, `--strict`, outputs, the store and each source file's path, size and time | the key of the memo that restores a run without opening the data |
//!
//! Every identity is [`identity`]: blake3 over a domain tag and
//! length-prefixed parts, so no two different lists of parts (and no two
//! identities) can share a hash by concatenation. None covers file names
//! of outputs or times. Changing what an identity covers changes its
//! values: the cache's entries under the old keys are no longer found
//! (the first run after an upgrade recomputes and stores anew), and parts
//! of one sharded job must come from one build.

use crate::data::{Dataset, SourceInfo, SymbolSelection};
use crate::run::output::{Outputs, RUN_FORMAT_VERSION};
use crate::run::{RunPlan, Strategy};
use crate::sweep::Grid;

/// blake3 of the domain tag `domain` and each of `parts`, each preceded
/// by its length (u64, little endian).
pub fn identity<'a>(domain: &str, parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    let mut put = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    put(domain.as_bytes());
    for p in parts {
        put(p);
    }
    *h.finalize().as_bytes()
}

fn hex(bytes: [u8; 32]) -> String {
    blake3::Hash::from(bytes).to_hex().to_string()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `name`, `hash` of each selected series, in selection order.
fn series_parts<'a>(
    data: &'a Dataset,
    plan: &'a RunPlan,
    hash: fn(&crate::data::SeriesInfo) -> &str,
) -> Vec<&'a [u8]> {
    let mut v = Vec::with_capacity(plan.series.len() * 2);
    for &i in &plan.series {
        let s = &data.series()[i];
        v.push(s.name.as_bytes());
        v.push(hash(s).as_bytes());
    }
    v
}

/// With stops (`stops`), the blake3 (hex) of each selected series' high
/// and low columns, which the stops read; nothing without, so identities
/// of runs without stops are those of before stops existed.
fn high_low_parts(data: &Dataset, plan: &RunPlan, stops: bool) -> Vec<String> {
    use crate::data::validate::close_hash;
    if !stops {
        return Vec::new();
    }
    let mut v = Vec::with_capacity(plan.series.len() * 2);
    for &i in &plan.series {
        let view = data.view(i);
        v.push(close_hash(view.high));
        v.push(close_hash(view.low));
    }
    v
}

/// The inputs hash of a run (hex): everything that determines its
/// results, never file names.
pub fn run_inputs(data: &Dataset, plan: &RunPlan, strategy: &Strategy) -> String {
    let fixed = [
        RUN_FORMAT_VERSION.to_le_bytes().to_vec(),
        json(strategy).into_bytes(),
        format!("{:?}|{:?}|{:?}", plan.from, plan.to, plan.warmup_bars).into_bytes(),
    ];
    let series = series_parts(data, plan, |s| &s.close_hash);
    let hl = high_low_parts(data, plan, strategy.execution.has_stops());
    hex(identity(
        "atc-bt run inputs",
        fixed
            .iter()
            .map(Vec::as_slice)
            .chain(series)
            .chain(hl.iter().map(|h| h.as_bytes())),
    ))
}

/// The inputs hash of a sweep (hex): the grid, the base strategy, the
/// window and split, and the selected series.
pub fn sweep_inputs(
    data: &Dataset,
    plan: &RunPlan,
    grid: &Grid,
    base: &Strategy,
    split: Option<i64>,
) -> String {
    let fixed = [
        RUN_FORMAT_VERSION.to_le_bytes().to_vec(),
        json(grid).into_bytes(),
        json(base).into_bytes(),
        format!(
            "{:?}|{:?}|{:?}|{:?}",
            plan.from, plan.to, plan.warmup_bars, split
        )
        .into_bytes(),
    ];
    let series = series_parts(data, plan, |s| &s.close_hash);
    let hl = high_low_parts(data, plan, base.execution.has_stops());
    hex(identity(
        "atc-bt sweep inputs",
        fixed
            .iter()
            .map(Vec::as_slice)
            .chain(series)
            .chain(hl.iter().map(|h| h.as_bytes())),
    ))
}

/// The run cache's key: everything that determines the result files
/// (program and layout version, parameters, window, `--strict`, the files
/// written, and the name and content hash of each selected series, in
/// order).
pub fn run_entry(
    data: &Dataset,
    plan: &RunPlan,
    strategy: &Strategy,
    strict: bool,
    outputs: Outputs,
) -> crate::cache::Key {
    let fixed = [
        env!("CARGO_PKG_VERSION").as_bytes().to_vec(),
        RUN_FORMAT_VERSION.to_le_bytes().to_vec(),
        crate::parquet_write::LAYOUT_VERSION.to_le_bytes().to_vec(),
        json(strategy).into_bytes(),
        format!(
            "{:?}|{:?}|{:?}|{strict}|{}",
            plan.from,
            plan.to,
            plan.warmup_bars,
            outputs.names()
        )
        .into_bytes(),
    ];
    let series = series_parts(data, plan, |s| &s.bars_hash);
    let hl = high_low_parts(data, plan, strategy.execution.has_stops());
    // Shared cash: its `equity.parquet` gained a `gross` column, so an
    // entry cached before it is never restored (equal-split keys unchanged).
    let shared: &[&[u8]] =
        if strategy.execution.allocation == crate::backtest::book::Allocation::Shared {
            &[b"equity.parquet gross"]
        } else {
            &[]
        };
    crate::cache::Key(identity(
        "atc-bt run entry",
        fixed
            .iter()
            .map(Vec::as_slice)
            .chain(series)
            .chain(hl.iter().map(|h| h.as_bytes()))
            .chain(shared.iter().copied()),
    ))
}

/// The inputs hash `inputs` of a run (hex, [`run_inputs`]) that trades
/// the signals file `signals` (`--signals`): combined with the file's
/// content hash, so another file (or an edited one) is another run.
/// Unchanged without a file.
pub fn with_signals(inputs: String, signals: Option<&crate::data::SignalsSource>) -> String {
    match signals {
        None => inputs,
        Some(f) => hex(identity(
            "atc-bt run inputs with signals",
            [inputs.as_bytes(), f.blake3.as_bytes()],
        )),
    }
}

/// The run cache's key `entry` ([`run_entry`]) of a run that trades the
/// signals file `signals`: combined with its content hash. Unchanged
/// without a file.
pub fn entry_with_signals(
    entry: crate::cache::Key,
    signals: Option<&crate::data::SignalsSource>,
) -> crate::cache::Key {
    match signals {
        None => entry,
        Some(f) => crate::cache::Key(identity(
            "atc-bt run entry with signals",
            [entry.0.as_slice(), f.blake3.as_bytes()],
        )),
    }
}

/// What names a run before anything is opened: the selection and window
/// as given and the store's source files by path, size and time.
pub struct InvocationInputs<'a> {
    /// The resolved strategy.
    pub strategy: &'a Strategy,
    /// The symbols as given.
    pub selection: &'a SymbolSelection,
    /// The window as given, µs UTC.
    pub from: Option<i64>,
    /// The window's end as given.
    pub to: Option<i64>,
    /// The warm-up limit.
    pub warmup_bars: Option<usize>,
    /// `--strict`.
    pub strict: bool,
    /// The files written.
    pub outputs: Outputs,
    /// The store directory the data names.
    pub store_dir: &'a std::path::Path,
    /// The source files.
    pub sources: &'a [SourceInfo],
}

/// The key of the memo of a run invocation ([`crate::cache::fast`]).
pub fn invocation(i: &InvocationInputs) -> crate::cache::Key {
    let mut parts = vec![
        env!("CARGO_PKG_VERSION").as_bytes().to_vec(),
        RUN_FORMAT_VERSION.to_le_bytes().to_vec(),
        crate::parquet_write::LAYOUT_VERSION.to_le_bytes().to_vec(),
        json(i.strategy).into_bytes(),
        format!(
            "{:?}|{:?}|{:?}|{:?}|{}|{}",
            i.selection,
            i.from,
            i.to,
            i.warmup_bars,
            i.strict,
            i.outputs.names()
        )
        .into_bytes(),
        i.store_dir.display().to_string().into_bytes(),
    ];
    for s in i.sources {
        parts.push(format!("{}|{}|{}", s.path, s.size, s.mtime_ns).into_bytes());
    }
    crate::cache::Key(identity(
        "atc-bt run invocation",
        parts.iter().map(Vec::as_slice),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_separates_parts_and_domains() {
        let a = identity("d", [b"ab".as_slice(), b"c".as_slice()]);
        let b = identity("d", [b"a".as_slice(), b"bc".as_slice()]);
        let c = identity("e", [b"ab".as_slice(), b"c".as_slice()]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, identity("d", [b"ab".as_slice(), b"c".as_slice()]));
    }
}
