//! The manifests of result directories, each written by one serializer:
//! [`RunManifest`] (`run.json`), [`SweepManifest`] (`sweep.json`) and
//! [`WalkForwardManifest`] (`walk_forward.json`); a shard's `part.json`
//! is [`crate::shard::part::PartHeader`].
//!
//! One shape everywhere (format version [`RUN_FORMAT_VERSION`] 4):
//! - the resolved parameters are `params`: the strategy of a run, the base
//!   strategy of a sweep (the values its grid does not vary), and
//!   `params.params` in a part header;
//! - the data's source files are `data.sources`, each
//!   [`SourceInfo`] `{path, size, mtime_ns, blake3}` (a part header:
//!   `context.sources`);
//! - times are [`crate::data::fmt_ts`] text (`2020-01-01`, or
//!   `2020-01-01T14:30:00Z`), windows `{from, to, warmup_bars}`.
//!
//! Keys are written in alphabetical order (the JSON is built through a
//! sorted map), with `files` listing everything in the directory written
//! before the manifest: its presence marks a complete directory.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::{fmt_ts, SourceInfo};
pub use crate::run::output::RUN_FORMAT_VERSION;
use crate::run::output::{write_json, OutputError};
use crate::run::{Skipped, Strategy};

/// A window as manifests record it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Window {
    /// First traded bar (`None`: the data's start).
    pub from: Option<String>,
    /// Last traded bar, inclusive.
    pub to: Option<String>,
    /// History before `from` the engine saw, in bars (`None`: all).
    pub warmup_bars: Option<usize>,
}

impl Window {
    /// The window of µs bounds.
    pub fn of(from: Option<i64>, to: Option<i64>, warmup_bars: Option<usize>) -> Window {
        Window {
            from: from.map(fmt_ts),
            to: to.map(fmt_ts),
            warmup_bars,
        }
    }
}

/// `data.series[*]` of `run.json`: one traded symbol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSeries {
    /// The symbol.
    pub symbol: String,
    /// blake3 of its close column.
    pub close_hash: Option<String>,
    /// Bars the engine saw (warm-up included).
    pub engine_bars: usize,
    /// Bars in the traded window.
    pub window_bars: usize,
    /// The time zone of its calendar, when one was given.
    pub tz: Option<String>,
    /// Bars per year its metrics were annualised with.
    #[serde(default, deserialize_with = "nan_for_null")]
    pub periods_per_year: f64,
}

/// `data` of `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunData {
    /// `--data` as given.
    pub path: String,
    /// The store directory (absent in a merged run: each shard had its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// The source files.
    pub sources: Vec<SourceInfo>,
    /// The traded symbols, in selection order.
    pub series: Vec<RunSeries>,
}

/// `cache` of `run.json`: this process's hits and misses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheCounts {
    /// Whether a cache was used.
    pub enabled: bool,
    /// Hits over every kind.
    pub hits: u64,
    /// Misses over every kind.
    pub misses: u64,
    /// Per kind (`signals`, `run`, …): `{hits, misses}`.
    pub kinds: BTreeMap<String, HitsMisses>,
}

/// Hits and misses of one cached kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HitsMisses {
    /// Lookups found.
    pub hits: u64,
    /// Lookups not found.
    pub misses: u64,
}

impl CacheCounts {
    /// The counts of `stats` (this process's lookups).
    pub fn of(stats: &crate::cache::CacheStats) -> CacheCounts {
        let (hits, misses) = cache_totals(stats);
        CacheCounts {
            enabled: stats.enabled,
            hits,
            misses,
            kinds: crate::cache::Kind::ALL
                .iter()
                .zip(&stats.this_run)
                .map(|(k, s)| {
                    (
                        k.name().to_string(),
                        HitsMisses {
                            hits: s.hits_l1 + s.hits_l2,
                            misses: s.misses,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Hits and misses of this process over every cached kind.
pub fn cache_totals(stats: &crate::cache::CacheStats) -> (u64, u64) {
    stats.this_run.iter().fold((0, 0), |(h, m), k| {
        (h + k.hits_l1 + k.hits_l2, m + k.misses)
    })
}

/// `run.json`: what a run directory holds and how it was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
    /// [`RUN_FORMAT_VERSION`].
    pub format_version: u32,
    /// The program's version.
    pub atc_bt_version: String,
    /// The command line.
    pub command: Vec<String>,
    /// When it started (UTC, seconds).
    pub started_at: String,
    /// [`super::identity::run_inputs`].
    pub inputs_hash: String,
    /// The resolved strategy (its `atc` table is unused when `signals`
    /// is there).
    pub params: Strategy,
    /// The signals file traded instead of the ATC (`--signals`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<crate::data::SignalsSource>,
    /// The strategy file given, if any.
    pub strategy_file: Option<String>,
    /// The traded window.
    pub window: Window,
    /// The data.
    pub data: RunData,
    /// Symbols left out, with why.
    pub skipped: Vec<Skipped>,
    /// Warnings of the result (mixed bar frequencies).
    pub warnings: Vec<String>,
    /// Traded symbols.
    pub symbols: usize,
    /// Starting capital of each sub-account.
    #[serde(deserialize_with = "nan_for_null")]
    pub capital_per_symbol: f64,
    /// Bars per year of the portfolio's metrics.
    pub periods_per_year: Option<f64>,
    /// `override` or `inferred`.
    pub periods_per_year_source: String,
    /// Annual risk-free rate.
    pub risk_free: f64,
    /// Bars through the engine.
    pub engine_bars: usize,
    /// The files written (`--outputs`).
    pub outputs: String,
    /// Worker threads (absent in a merged run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Parts merged (a merged run only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Milliseconds per phase (`load`, `compute`, `restore`, `merge`).
    pub timings_ms: BTreeMap<String, f64>,
    /// Cache hits and misses (absent in a merged run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheCounts>,
    /// The files of the directory written before `run.json` (set on commit).
    #[serde(default)]
    pub files: Vec<String>,
}

/// `samples[*]` of `sweep.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleWindow {
    /// `full`, `in`, `out`, or `wf<k>` (a walk-forward training window).
    pub name: String,
    /// First bar.
    pub from: Option<String>,
    /// Last bar.
    pub to: Option<String>,
}

/// `data.series[*]` of `sweep.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepSeries {
    /// The symbol.
    pub symbol: String,
    /// blake3 of its close column.
    pub close_hash: serde_json::Value,
}

/// `data` of `sweep.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepData {
    /// `--data` as given.
    pub path: String,
    /// The source files.
    pub sources: Vec<SourceInfo>,
    /// The selected symbols.
    pub series: Vec<SweepSeries>,
}

/// `best` of `sweep.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Best {
    /// Its combination number.
    pub combo: usize,
    /// Its parameters (ATC, and `max_positions` where the grid varies it).
    pub params: crate::sweep::ComboParams,
}

/// `sweep.json`: what a sweep directory holds and how it was made.
#[derive(Debug, Clone, Serialize)]
pub struct SweepManifest {
    /// [`RUN_FORMAT_VERSION`].
    pub format_version: u32,
    /// The program's version.
    pub atc_bt_version: String,
    /// The command line.
    pub command: Vec<String>,
    /// When it started.
    pub started_at: String,
    /// [`super::identity::sweep_inputs`].
    pub inputs_hash: String,
    /// The grid.
    pub grid: crate::sweep::Grid,
    /// Its number of combinations.
    pub combinations: u64,
    /// The base strategy (values the grid does not vary).
    pub params: Strategy,
    /// The ranking metric.
    pub rank_by: String,
    /// The sample ranked on (`in` with a split, else `full`).
    pub ranked_on_sample: String,
    /// The samples.
    pub samples: Vec<SampleWindow>,
    /// The split, if any.
    pub split: Option<String>,
    /// The window.
    pub window: Window,
    /// The data.
    pub data: SweepData,
    /// The best combination.
    pub best: Option<Best>,
    /// The first 100 combinations by rank.
    pub ranking: Vec<usize>,
    /// Symbols left out.
    pub skipped: Vec<Skipped>,
    /// Warnings (absent in a merged sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
    /// Milliseconds per phase.
    pub timings_ms: BTreeMap<String, f64>,
    /// Combination-bars computed.
    pub combo_bars: u64,
    /// Worker threads (absent in a merged sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Parts merged (a merged sweep only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// The files written before `sweep.json` (set on commit).
    #[serde(default)]
    pub files: Vec<String>,
}

/// A fold's window of `walk_forward.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Span {
    /// First bar.
    pub from: String,
    /// Last bar.
    pub to: String,
}

/// One fold of `walk_forward.json`.
#[derive(Debug, Clone, Serialize)]
pub struct FoldEntry {
    /// The training window.
    pub train: Span,
    /// The test window.
    pub test: Span,
    /// The combination chosen on the training window.
    pub best_combo: Option<usize>,
    /// Its parameters (ATC, and `max_positions` where the grid varies it).
    pub params: Option<crate::sweep::ComboParams>,
    /// Its ranking metric on the training window.
    pub train_metric: Option<f64>,
    /// Its metrics in the test window.
    pub test_metrics: serde_json::Value,
}

/// `walk_forward.json`.
#[derive(Debug, Clone, Serialize)]
pub struct WalkForwardManifest {
    /// The walk-forward specification.
    pub spec: serde_json::Value,
    /// The ranking metric.
    pub rank_by: String,
    /// The folds.
    pub folds: Vec<FoldEntry>,
    /// The chained out-of-sample metrics.
    pub out_of_sample: serde_json::Value,
    /// Buy & hold's over the same bars.
    pub benchmark: serde_json::Value,
}

/// A manifest as the JSON value written (keys sorted).
fn value<T: Serialize>(m: &T, path: &Path) -> Result<serde_json::Value, OutputError> {
    serde_json::to_value(m).map_err(|e| OutputError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}

/// Writes `walk_forward.json` into `dir`.
pub fn write_walk_forward(dir: &Path, m: &WalkForwardManifest) -> Result<(), OutputError> {
    let path = dir.join("walk_forward.json");
    write_json(&path, &value(m, &path)?)
}

/// A manifest that lists the directory's files and names itself.
pub trait Manifest: Serialize {
    /// Its file name (`run.json`, `sweep.json`).
    const FILE: &'static str;
}

impl Manifest for RunManifest {
    const FILE: &'static str = "run.json";
}

impl Manifest for SweepManifest {
    const FILE: &'static str = "sweep.json";
}

/// Completes a result directory whose files are in `tmp`: writes the
/// manifest `m` last (its `files` listing everything written before it)
/// and renames `tmp` to `out` ([`crate::run::output::commit_dir_with_manifest`]).
/// On any error `tmp` is removed.
pub fn commit<M: Manifest>(tmp: &Path, out: &Path, m: &M, force: bool) -> Result<(), OutputError> {
    let v = match value(m, &tmp.join(M::FILE)) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_dir_all(tmp);
            return Err(e);
        }
    };
    crate::run::output::commit_dir_with_manifest(tmp, out, M::FILE, &v, force)
}

/// Reads a `run.json`.
pub fn read_run(path: &Path) -> Result<RunManifest, crate::report::ReportError> {
    let v = crate::report::load::read_json(path)?;
    serde_json::from_value(v).map_err(|e| crate::report::ReportError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn nan_for_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// `periods_per_year_source`: `override` (`--periods-per-year` or
/// `[metrics]`) or `inferred`.
pub fn periods_source(strategy: &Strategy) -> &'static str {
    if strategy.metrics.periods_per_year.is_some() {
        "override"
    } else {
        "inferred"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_manifest() -> RunManifest {
        RunManifest {
            format_version: RUN_FORMAT_VERSION,
            atc_bt_version: "0".into(),
            command: vec!["atc-bt".into(), "run".into()],
            started_at: "2026-01-01T00:00:00Z".into(),
            inputs_hash: "ab".into(),
            params: Strategy::default(),
            signals: None,
            strategy_file: None,
            window: Window::of(Some(1_577_836_800_000_000), None, Some(10)),
            data: RunData {
                path: "data".into(),
                store: None,
                sources: vec![SourceInfo {
                    path: "/d/a.parquet".into(),
                    size: 1,
                    mtime_ns: 2,
                    blake3: "ff".into(),
                }],
                series: vec![],
            },
            skipped: vec![],
            warnings: vec![],
            symbols: 0,
            capital_per_symbol: f64::NAN,
            periods_per_year: Some(252.0),
            periods_per_year_source: "inferred".into(),
            risk_free: 0.0,
            engine_bars: 0,
            outputs: "equity".into(),
            threads: None,
            shards: Some(3),
            timings_ms: BTreeMap::new(),
            cache: None,
            files: vec!["metrics.json".into()],
        }
    }

    #[test]
    fn run_manifest_has_one_shape_and_reads_back() {
        let v = serde_json::to_value(run_manifest()).unwrap();
        assert_eq!(v["params"]["atc"]["lambda"], 0.02);
        assert_eq!(v["window"]["from"], "2020-01-01");
        let source = v["data"]["sources"][0].as_object().unwrap();
        let keys: Vec<&str> = source.keys().map(String::as_str).collect();
        assert_eq!(keys, ["blake3", "mtime_ns", "path", "size"]);
        // Absent, not null: a merged run has no store, threads or cache.
        assert!(v["data"].get("store").is_none() && v.get("threads").is_none());
        assert!(v["capital_per_symbol"].is_null());
        let back: RunManifest = serde_json::from_value(v.clone()).unwrap();
        assert!(back.capital_per_symbol.is_nan());
        assert_eq!(serde_json::to_value(back).unwrap(), v);
    }
}
