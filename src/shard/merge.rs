//! `atc-bt merge`: check a set of parts and rebuild the single-machine
//! results from them.
//!
//! Checks, before anything is written: every path is a complete part
//! (header and `_SUCCESS`), all parts come from the same inputs and
//! parameters (same inputs hash, shard count, capital split and resolved
//! parameters; the odd part is named), no index appears twice and none of
//! `0..N` is missing. Then the parts are read in lockstep, one combination
//! at a time, and each symbol's stored results are put back in the order of
//! the whole selection, so [`aggregate`] sums the portfolio in exactly the
//! single-machine order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::part::{
    read_header, PartError, PartHeader, PartKind, PartReader, Stored, StoredBars, SUCCESS,
};
use crate::backtest::Curve;
use crate::engine::registry::{self, Kind};
use crate::run::shared::{run_book, SharedAccount};
use crate::run::{
    aggregate, collect, MetricsSettings, RunError, RunResult, Skipped, Strategy, SymbolResult,
};
use crate::sweep::{combo_order, samples, Grid, Row, Sample, SweepResult, Value};

/// Errors of `merge`.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no parts found in {}; give the part directories (part-<i>-of-<N>) or the directory that holds them", path.display())]
    NoParts {
        /// Where we looked.
        path: PathBuf,
    },
    /// A path that is not a part.
    #[error("{}: not a part (no readable part.json: {why}); give directories written by `run --shard`/`sweep --shard`", path.display())]
    NotAPart {
        /// The path.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A part without its success marker.
    #[error("{}: half-written part (no {SUCCESS} marker): the shard did not finish; rerun shard {index} of {count}", path.display())]
    HalfWritten {
        /// The part.
        path: PathBuf,
        /// Its index, as its name says.
        index: String,
        /// The count, as its name says.
        count: String,
    },
    /// A file of a part differs from the checksum the shard recorded.
    #[error("{}: damaged part: {file} does not match the checksum its shard recorded in {SUCCESS} (changed or damaged since); rerun shard {index} of {count}", path.display())]
    Damaged {
        /// The part.
        path: PathBuf,
        /// The file.
        file: String,
        /// Its index.
        index: u32,
        /// The count.
        count: u32,
    },
    /// Parts written in another part format than this version's.
    #[error("part format {found} was written by {} atc-bt (this one writes and merges format {expected}); rerun those shards with this version: {}", if *.found < *.expected { "an older" } else { "a newer" }, .paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    OtherFormat {
        /// The parts of that format.
        paths: Vec<PathBuf>,
        /// Their format.
        found: u64,
        /// This version's.
        expected: u64,
    },
    /// A part from other inputs or parameters than the rest.
    #[error("{}: foreign part: {why} (the other parts, e.g. {}, agree); rerun it with the same data and parameters", path.display(), reference.display())]
    Foreign {
        /// The odd part.
        path: PathBuf,
        /// A part of the majority.
        reference: PathBuf,
        /// What differs.
        why: String,
    },
    /// Two parts with the same index.
    #[error("{} and {}: both are part {index} of {count}; keep one", first.display(), second.display())]
    Duplicate {
        /// The index.
        index: u32,
        /// The count.
        count: u32,
        /// One.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// Parts missing.
    #[error("missing part(s) {} of {count}: expected part-<i>-of-{count} for every i in 0..{count}; run the missing shard(s) with --shard <i>/{count}", missing.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "))]
    Missing {
        /// Missing indices.
        missing: Vec<u32>,
        /// The count.
        count: u32,
    },
    /// A part's header does not describe what merge needs.
    #[error("{}: {why}", path.display())]
    BadParams {
        /// The part.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Reading a part failed.
    #[error(transparent)]
    Part(#[from] PartError),
    /// Aggregation failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// A checked part: its directory and header.
#[derive(Debug, Clone)]
pub struct Part {
    /// The directory.
    pub dir: PathBuf,
    /// Its header.
    pub header: PartHeader,
}

fn looks_like_part(p: &Path) -> bool {
    p.join(super::part::PART_JSON).exists()
        || p.join(SUCCESS).exists()
        || p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("part-"))
}

/// Expands the arguments: a part directory is taken as is; any other
/// directory stands for the `part-*` directories in it (temporary
/// `.part-*.partial-*` directories of running or killed shards are ignored).
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, MergeError> {
    let mut out = Vec::new();
    for p in paths {
        if looks_like_part(p) || !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let rd = std::fs::read_dir(p).map_err(|source| PartError::Io {
            path: p.clone(),
            source,
        })?;
        let mut found: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|c| {
                c.is_dir()
                    && c.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("part-"))
            })
            .collect();
        if found.is_empty() {
            return Err(MergeError::NoParts { path: p.clone() });
        }
        found.sort();
        out.extend(found);
    }
    if out.is_empty() {
        return Err(MergeError::NoParts {
            path: PathBuf::from("."),
        });
    }
    Ok(out)
}

/// The `(i, N)` a part's directory name claims, as text.
fn name_claims(p: &Path) -> (String, String) {
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    match name
        .strip_prefix("part-")
        .and_then(|r| r.split_once("-of-"))
    {
        Some((i, n)) => (i.to_string(), n.to_string()),
        None => ("?".into(), "?".into()),
    }
}

/// The first leaf where two JSON values differ: `(path, a, b)`.
fn first_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
    path: String,
) -> Option<(String, String, String)> {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let null = serde_json::Value::Null;
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                first_difference(x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), p)
            })
        }
        _ if a == b => None,
        _ => Some((path, a.to_string(), b.to_string())),
    }
}

/// What differs between two headers, in words.
fn difference(a: &PartHeader, b: &PartHeader) -> String {
    if a.kind == b.kind && a.book.is_some() != b.book.is_some() {
        let (odd, others) = if a.book.is_some() {
            ("a shared-cash", "equal-split")
        } else {
            ("an equal-split", "shared-cash")
        };
        return format!(
            "{odd} part where the others are {others} parts (a shard of --allocation shared stores signals for merge to trade, an equal-split shard its own results)"
        );
    }
    let content = |h: &PartHeader| h.signals.as_ref().map(|f| (f.size, f.blake3.clone()));
    if content(a) != content(b) {
        let file = |h: &PartHeader| match &h.signals {
            Some(f) => format!(
                "signals file {} ({} bytes, blake3 {})",
                f.path,
                f.size,
                &f.blake3[..f.blake3.len().min(12)]
            ),
            None => "no signals file (the ATC's signals)".into(),
        };
        return format!("made from {} where the others used {}", file(a), file(b));
    }
    if a.format_version != b.format_version {
        return format!(
            "part format {} where the others have {}",
            a.format_version, b.format_version
        );
    }
    if a.kind != b.kind {
        return format!(
            "a {:?} part where the others are {:?} parts",
            a.kind, b.kind
        );
    }
    if a.shards != b.shards {
        return format!(
            "one of {} shards where the others are of {}",
            a.shards, b.shards
        );
    }
    if a.params != b.params {
        let (path, x, y) = first_difference(&a.params, &b.params, String::new())
            .unwrap_or_else(|| ("params".into(), "-".into(), "-".into()));
        return format!("different parameters ({path} = {x} where the others have {y})");
    }
    if a.inputs_hash != b.inputs_hash {
        return format!(
            "different input data (inputs hash {} where the others have {})",
            a.inputs_hash, b.inputs_hash
        );
    }
    if a.selection != b.selection {
        return format!(
            "a different selection ({} symbols where the others have {})",
            a.selection, b.selection
        );
    }
    "a different capital split (symbols with data in the window)".into()
}

/// Reads and checks the parts (see the module doc); returns them sorted by
/// index. Nothing is written.
pub fn check_parts(paths: &[PathBuf]) -> Result<Vec<Part>, MergeError> {
    let mut parts = Vec::new();
    for p in paths {
        let hp = p.join(super::part::PART_JSON);
        if !p.is_dir() || !hp.exists() {
            if p.is_dir() && !p.join(SUCCESS).exists() {
                let (index, count) = name_claims(p);
                return Err(MergeError::HalfWritten {
                    path: p.clone(),
                    index,
                    count,
                });
            }
            return Err(MergeError::NotAPart {
                path: p.clone(),
                why: if p.exists() {
                    "no part.json".into()
                } else {
                    "no such directory".into()
                },
            });
        }
        if !p.join(SUCCESS).exists() {
            let (index, count) = name_claims(p);
            return Err(MergeError::HalfWritten {
                path: p.clone(),
                index,
                count,
            });
        }
        if let Some(v) = super::part::read_format_version(p) {
            let known = [
                super::part::PART_FORMAT_VERSION,
                super::part::BOOK_FORMAT_VERSION,
            ];
            if !known.iter().any(|&k| u64::from(k) == v) {
                // Name every part of that format, not only the first.
                let paths = paths
                    .iter()
                    .filter(|q| super::part::read_format_version(q) == Some(v))
                    .cloned()
                    .collect();
                return Err(MergeError::OtherFormat {
                    paths,
                    found: v,
                    expected: u64::from(if v < u64::from(super::part::PART_FORMAT_VERSION) {
                        super::part::PART_FORMAT_VERSION
                    } else {
                        super::part::BOOK_FORMAT_VERSION
                    }),
                });
            }
        }
        let header = read_header(p).map_err(|e| MergeError::NotAPart {
            path: p.clone(),
            why: e.to_string(),
        })?;
        let damaged = super::part::verify_files(p, header.book.is_some()).map_err(|e| {
            MergeError::NotAPart {
                path: p.clone(),
                why: e.to_string(),
            }
        })?;
        if let Some(file) = damaged {
            return Err(MergeError::Damaged {
                path: p.clone(),
                file,
                index: header.shard,
                count: header.shards,
            });
        }
        parts.push(Part {
            dir: p.clone(),
            header,
        });
    }
    // The majority defines the merge; ties go to the group of the first part.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let id = p.header.identity();
        match groups.iter_mut().find(|(g, _)| *g == id) {
            Some((_, v)) => v.push(i),
            None => groups.push((id, vec![i])),
        }
    }
    if groups.len() > 1 {
        let best = groups
            .iter()
            .enumerate()
            .max_by_key(|(gi, (_, v))| (v.len(), std::cmp::Reverse(*gi)))
            .map(|(gi, _)| gi)
            .unwrap_or(0);
        let reference = &parts[groups[best].1[0]];
        let odd = groups
            .iter()
            .enumerate()
            .filter(|(gi, _)| *gi != best)
            .flat_map(|(_, (_, v))| v.iter().copied())
            .min()
            .unwrap_or(0);
        let odd = &parts[odd];
        return Err(MergeError::Foreign {
            path: odd.dir.clone(),
            reference: reference.dir.clone(),
            why: difference(&odd.header, &reference.header),
        });
    }
    parts.sort_by_key(|p| p.header.shard);
    for w in parts.windows(2) {
        if w[0].header.shard == w[1].header.shard {
            return Err(MergeError::Duplicate {
                index: w[0].header.shard,
                count: w[0].header.shards,
                first: w[0].dir.clone(),
                second: w[1].dir.clone(),
            });
        }
    }
    let count = parts[0].header.shards;
    let missing: Vec<u32> = (0..count)
        .filter(|i| !parts.iter().any(|p| p.header.shard == *i))
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing { missing, count });
    }
    Ok(parts)
}

fn open_readers(parts: &[Part]) -> Result<Vec<PartReader>, MergeError> {
    parts
        .iter()
        .map(|p| PartReader::open(&p.dir, p.header.clone()).map_err(MergeError::from))
        .collect()
}

/// The selection's window-skipped symbols over all parts, in selection order.
fn window_skipped(parts: &[Part]) -> Vec<Skipped> {
    let mut v: Vec<_> = parts
        .iter()
        .flat_map(|p| p.header.skipped_window.iter().cloned())
        .collect();
    v.sort_by_key(|s| s.pos);
    v.into_iter()
        .map(|s| Skipped {
            symbol: s.symbol,
            reason: s.reason,
        })
        .collect()
}

/// The strategy of a `run` part.
pub fn run_strategy(parts: &[Part]) -> Result<Strategy, MergeError> {
    serde_json::from_value(parts[0].header.params["params"].clone())
        .map_err(|e| bad(parts, format!("strategy: {e}")))
}

/// Rebuilds the result of a sharded `run` exactly as the single run
/// computes it.
pub fn merge_run(parts: &[Part]) -> Result<RunResult, MergeError> {
    let settings: MetricsSettings = run_strategy(parts)?.metrics;
    let mut skipped = window_skipped(parts);
    let mut map = BTreeMap::new();
    for mut r in open_readers(parts)? {
        r.take_combo(0, &settings, &mut map)?;
        r.check_exhausted()?;
    }
    let outcomes: Vec<Result<SymbolResult, Skipped>> =
        map.into_values().map(Stored::into_outcome).collect();
    let symbols = collect(outcomes, &mut skipped, false)?;
    Ok(aggregate(
        symbols,
        skipped,
        parts[0].header.capital(0),
        &settings,
    ))
}

/// Whether the parts are a shared-cash run's (`--allocation shared`):
/// signals and bars for the account, which [`merge_shared`] runs.
pub fn is_shared(parts: &[Part]) -> bool {
    parts[0].header.book.is_some()
}

/// The shared account of a sharded shared-cash run, run once over every
/// symbol of the parts: what the run directory is written from
/// ([`SharedAccount::emit`] with `bars`).
pub struct SharedMerge {
    /// The strategy the shards ran.
    pub strategy: Strategy,
    /// The bars the shards stored (the account's
    /// [`BarSource`](crate::run::shared::BarSource)).
    pub bars: StoredBars,
    /// The account after it traded.
    pub account: SharedAccount,
    /// Symbols left out, in the single machine's order: no bars in the
    /// window, then the engine's failures, then the account's refusals.
    pub skipped: Vec<Skipped>,
}

/// Runs the account of a sharded shared-cash run from its parts: every
/// part's book read into memory (its symbols' signals, 9 bytes a bar, and
/// the bars the account reads: ts, open, close, and high/low with stops),
/// put in the selection's order, then [`run_book`], the code the single
/// machine runs on the same numbers.
pub fn merge_shared(parts: &[Part]) -> Result<SharedMerge, MergeError> {
    let strategy = run_strategy(parts)?;
    let mut skipped = window_skipped(parts);
    let mut bars = StoredBars::default();
    let mut by_pos = BTreeMap::new();
    for p in parts {
        bars.read_part(&p.dir, &p.header, &mut by_pos)?;
    }
    let mut series = Vec::with_capacity(by_pos.len());
    for (_, s) in by_pos {
        match s {
            Ok(s) => series.push(s),
            Err(s) => skipped.push(s),
        }
    }
    let account = run_book(&bars, series, &strategy, false, &mut skipped)?
        .ok_or_else(|| crate::run::all_skipped(&skipped))?;
    Ok(SharedMerge {
        strategy,
        bars,
        account,
        skipped,
    })
}

fn bad(parts: &[Part], why: impl Into<String>) -> MergeError {
    MergeError::BadParams {
        path: parts[0].dir.join(super::part::PART_JSON),
        why: why.into(),
    }
}

/// The grid, base strategy and samples of a sweep part.
pub fn sweep_setup(parts: &[Part]) -> Result<(Grid, Strategy, Vec<Sample>), MergeError> {
    let p = &parts[0].header.params;
    let base: Strategy = serde_json::from_value(p["params"].clone())
        .map_err(|e| bad(parts, format!("base strategy: {e}")))?;
    let mut grid = Grid::default();
    let axes = p["grid"]["axes"]
        .as_array()
        .ok_or_else(|| bad(parts, "no grid axes"))?;
    for a in axes {
        let name = a[0]
            .as_str()
            .ok_or_else(|| bad(parts, "grid axis without a name"))?;
        let vals = a[1]
            .as_array()
            .ok_or_else(|| bad(parts, format!("grid axis {name} without values")))?;
        // Each value is read as the registry's kind of the axis, never
        // guessed from the JSON's shape.
        let spec = registry::param(name).map_err(|e| bad(parts, format!("grid axis: {e}")))?;
        let mut values = Vec::with_capacity(vals.len());
        for v in vals {
            let value = match spec.kind {
                Kind::Real => v.as_f64().map(Value::Real),
                Kind::Int => v
                    .as_u64()
                    .and_then(|i| usize::try_from(i).ok())
                    .map(Value::Int),
                Kind::Robustness => v.as_str().and_then(|s| spec.parse(s).ok()),
            };
            let value = value.ok_or_else(|| {
                bad(
                    parts,
                    format!("grid axis {name}: value {v} is not {}", spec.kind_text()),
                )
            })?;
            values.push(value);
        }
        grid.set_values(name, values)
            .map_err(|e| bad(parts, e.to_string()))?;
    }
    // The samples as the sweep pinned them (their ends at bars).
    let samples = match serde_json::from_value::<Vec<Sample>>(p["samples"].clone()) {
        Ok(s) if !s.is_empty() => s,
        _ => {
            let i = |k: &str| p[k].as_i64();
            samples(i("from_us"), i("to_us"), i("split_us"))
        }
    };
    Ok((grid, base, samples))
}

/// Rebuilds a sharded sweep: `emit` receives each combination's rows in
/// the single-machine order (write them with the same
/// [`ResultsWriter`](crate::sweep::output::ResultsWriter)).
pub fn merge_sweep(
    parts: &[Part],
    emit: &mut dyn FnMut(Vec<Row>) -> Result<(), String>,
) -> Result<SweepResult, MergeError> {
    let (grid, base, samples) = sweep_setup(parts)?;
    let capital: Vec<f64> = (0..samples.len())
        .map(|k| parts[0].header.capital(k))
        .collect();
    let mut skipped = window_skipped(parts);
    let mut readers = open_readers(parts)?;
    let mut combo_bars = 0u64;
    for c in combo_order(&grid, &base.atc) {
        let mut map = BTreeMap::new();
        for r in &mut readers {
            r.take_combo(c, &base.metrics, &mut map)?;
        }
        let mut by_sample: Vec<Vec<Result<SymbolResult, Skipped>>> =
            vec![Vec::new(); samples.len()];
        for ((k, _), st) in map {
            by_sample
                .get_mut(k as usize)
                .ok_or_else(|| bad(parts, format!("sample {k} out of range")))?
                .push(st.into_outcome());
        }
        // The same steps as `sweep_with` after its per-symbol work.
        let mut rows = Vec::new();
        for (k, outcomes) in by_sample.into_iter().enumerate() {
            let mut sk = Vec::new();
            let symbols = collect(outcomes, &mut sk, false)?;
            if c == 0 && k == 0 {
                skipped.extend(sk);
            }
            if symbols.is_empty() {
                continue;
            }
            let r = aggregate(symbols, Vec::new(), capital[k], &base.metrics);
            if k == 0 {
                combo_bars += r.engine_bars as u64;
            }
            crate::sweep::push_rows(&mut rows, c, &samples[k].name, &r);
        }
        emit(rows).map_err(|message| RunError::Output { message })?;
    }
    for r in &mut readers {
        r.check_exhausted()?;
    }
    Ok(SweepResult {
        samples,
        skipped,
        combo_bars,
        best_curve: None,
    })
}

/// The portfolio and benchmark curves of combination `combo` over the full
/// window (what a single-machine sweep writes to `best_equity.parquet`).
pub fn sweep_curves(parts: &[Part], combo: usize) -> Result<Option<(Curve, Curve)>, MergeError> {
    let (grid, base, _) = sweep_setup(parts)?;
    let mut readers = open_readers(parts)?;
    for c in combo_order(&grid, &base.atc) {
        let mut map = BTreeMap::new();
        for r in &mut readers {
            r.take_combo(c, &base.metrics, &mut map)?;
        }
        if c != combo {
            continue;
        }
        let outcomes: Vec<_> = map
            .into_iter()
            .filter(|((k, _), _)| *k == 0)
            .map(|(_, s)| s.into_outcome())
            .collect();
        let symbols = collect(outcomes, &mut Vec::new(), false)?;
        if symbols.is_empty() {
            return Ok(None);
        }
        let r = aggregate(
            symbols,
            Vec::new(),
            parts[0].header.capital(0),
            &base.metrics,
        );
        return Ok(Some((r.portfolio, r.benchmark)));
    }
    Ok(None)
}

/// Whether the parts are of a run or a sweep.
pub fn kind(parts: &[Part]) -> PartKind {
    parts[0].header.kind
}
