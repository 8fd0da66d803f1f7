//! The run job: data → engine → backtest → a run directory (or, with a
//! shard, a part), with the run cache's restore policy.
//!
//! Restore policy, in order:
//! 1. **Invocation memo** ([`crate::cache::fast`]): the same settings on
//!    unchanged source files (by path, size and time) restore the cached
//!    run without opening the data store or the cache's database. Anything
//!    short of a complete restore leaves nothing behind and falls through.
//! 2. **Run entry**: the data is opened and the entry keyed by
//!    [`identity::run_entry`] (the bars' content) is restored; files that
//!    pass their checksums but do not parse are a warning and a recompute.
//! 3. **Compute**, streaming results into the directory, then store the
//!    entry and the memo for next time.
//!
//! The report is drawn after the results are committed: from cached parts
//! when the report entry is there (only the memory timeline is new), else
//! in full (and its result-derived half stored). A report failure never
//! loses results: it comes back in [`RunDone::report`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::identity;
use super::manifest::{self, CacheCounts, RunData, RunManifest, RunSeries, Window};
use super::memory::{write_memory_parquet, MemorySampler};
use super::{JobError, Progress, Result};
use crate::backtest::book::{Allocation, Rebalance};
use crate::backtest::Mode;
use crate::cache::{Cache, CacheStats, EntryFile, FastCache, Key, Kind};
use crate::data::Dataset;
use crate::data::SignalsFile;
use crate::engine::registry::{self, ParamSpec, ParamValue};
use crate::report::{
    draw_memory_section, finish_run_report, finish_run_report_from_dir, render_run_report_parts,
    MemorySection, MemoryTimeline, ReportOptions, ReportSummary, RunReportParts, FILES_DIR,
    RUN_REPORT_LAYOUT,
};
use crate::run::output::{partial_dir, OutputError, Outputs};
use crate::run::{run_to_dir_from, RunPlan, RunSummary, Strategy};
use crate::shard::ShardSpec;

/// Whether and how a job draws its report.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// Draw `report.html` and the charts after the results.
    pub render: bool,
    /// The renderer's options.
    pub options: ReportOptions,
}

impl Default for ReportSettings {
    /// Drawn, with the renderer's defaults.
    fn default() -> Self {
        ReportSettings {
            render: true,
            options: ReportOptions::default(),
        }
    }
}

impl ReportSettings {
    /// The key of the cached report of the run entry `run` drawn with
    /// these options (and this build's drawing, [`RUN_REPORT_LAYOUT`]).
    /// A run on a `--signals` file adds the file's name, which the
    /// report's labels show: the run entry knows the file by its content
    /// only, so the same bytes under another name draw their own labels.
    pub fn cache_key(&self, run: &Key, signals: Option<&Path>) -> Key {
        let mut text = format!("{RUN_REPORT_LAYOUT}|{:?}", self.options);
        if let Some(name) = signals.and_then(Path::file_name) {
            text.push_str("|signals file ");
            text.push_str(&name.to_string_lossy());
        }
        crate::cache::report_key(run, text.as_bytes())
    }
}

/// Values that replace a strategy file's (the `run` and `sweep` flags;
/// `None` / absent: the file's value, or the spec default).
#[derive(Debug, Clone, Default)]
pub struct StrategyOverrides {
    /// ATC parameters (`[atc]`), by registry row, in spec units.
    pub atc: Vec<(&'static ParamSpec, ParamValue)>,
    /// `[execution] mode`.
    pub mode: Option<Mode>,
    /// `[execution] fee_bps`: basis points of traded notional.
    pub fee_bps: Option<f64>,
    /// `[execution] slippage_bps`: basis points of the open.
    pub slippage_bps: Option<f64>,
    /// `[execution] capital`: starting capital.
    pub capital: Option<f64>,
    /// `[execution] stop_loss`: percent of the entry fill price.
    pub stop_loss: Option<f64>,
    /// `[execution] take_profit`: percent of the entry fill price.
    pub take_profit: Option<f64>,
    /// `[execution] trailing_stop`: percent from the best price since entry.
    pub trailing_stop: Option<f64>,
    /// `[metrics] periods_per_year`: bars per year for annualising.
    pub periods_per_year: Option<f64>,
    /// `[metrics] risk_free`: annual rate as a fraction.
    pub risk_free: Option<f64>,
    /// `[execution] allocation`: equal-split or shared cash.
    pub allocation: Option<Allocation>,
    /// `[execution] max_positions`: shared cash's slots.
    pub max_positions: Option<usize>,
    /// `[execution] rebalance`: when shared cash resizes held positions.
    pub rebalance: Option<Rebalance>,
}

impl StrategyOverrides {
    /// Adds the ATC parameter `name` (a registry name such as `lambda` or
    /// `ema_len`) read from `text` as its flag reads it. Errors: an unknown
    /// name (listing the known ones) or text that is not a value of its
    /// kind; the range is checked by [`resolve_strategy`].
    pub fn set_atc(&mut self, name: &str, text: &str) -> Result<()> {
        let spec = registry::param(name)?;
        let value = spec.parse(text)?;
        self.atc.retain(|(s, _)| s.name != spec.name);
        self.atc.push((spec, value));
        Ok(())
    }
}

/// The strategy a run or a sweep uses: the strategy file `file` (or the
/// shipped default, `strategies/atc_default.toml`, the spec's values)
/// with `overrides` applied, then validated (spec/ATC.md sec. 2 ranges
/// for `[atc]`, the README's for `[execution]` and `[metrics]`).
///
/// Errors: the file cannot be read or parsed ([`JobError::Strategy`],
/// naming it), or a value is out of its range ([`JobError::Engine`] /
/// [`JobError::Strategy`], naming the key, the value and the range).
pub fn resolve_strategy(file: Option<&Path>, overrides: &StrategyOverrides) -> Result<Strategy> {
    let mut s = match file {
        Some(p) => Strategy::load(p)?,
        None => Strategy::shipped_default()?,
    };
    for (spec, v) in &overrides.atc {
        spec.set(&mut s.atc, *v)?;
    }
    let o = overrides;
    if let Some(m) = o.mode {
        s.execution.mode = m;
    }
    if let Some(v) = o.fee_bps {
        s.execution.fee_bps = v;
    }
    if let Some(v) = o.slippage_bps {
        s.execution.slippage_bps = v;
    }
    if let Some(v) = o.capital {
        s.execution.capital = v;
    }
    for (set, field) in [
        (o.stop_loss, &mut s.execution.stop_loss),
        (o.take_profit, &mut s.execution.take_profit),
        (o.trailing_stop, &mut s.execution.trailing_stop),
    ] {
        if set.is_some() {
            *field = set;
        }
    }
    if let Some(v) = o.periods_per_year {
        s.metrics.periods_per_year = Some(v);
    }
    if let Some(v) = o.risk_free {
        s.metrics.risk_free = v;
    }
    if let Some(v) = o.allocation {
        s.execution.allocation = v;
    }
    if let Some(v) = o.max_positions {
        s.execution.max_positions = Some(v);
    }
    if let Some(v) = o.rebalance {
        s.execution.rebalance = v;
    }
    s.atc.validate()?;
    s.execution.validate()?;
    s.metrics.validate()?;
    Ok(s)
}

/// Everything a run needs (the `run` command's flags, parsed and
/// resolved).
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Data, symbols and window.
    pub data: super::DataSettings,
    /// The resolved strategy ([`Strategy::shipped_default`] for the spec's).
    pub strategy: Strategy,
    /// The strategy file it came from, recorded in `run.json`.
    pub strategy_file: Option<PathBuf>,
    /// The result cache.
    pub cache: super::CacheSettings,
    /// The report.
    pub report: ReportSettings,
    /// Output directory (default: `reports/runs/<UTC time>-<inputs hash>`;
    /// a shard's parts: `reports/shards/<inputs hash>`).
    pub out: Option<PathBuf>,
    /// The result files.
    pub outputs: Outputs,
    /// Replace `out` even if it holds files atc-bt did not write.
    pub force: bool,
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// Process only this shard and write a part.
    pub shard: Option<ShardSpec>,
    /// Show the data ingest's progress bar when a store is built.
    pub show_ingest: bool,
    /// Trade the directions of this signals file (`--signals`) instead of
    /// the ATC's ([`crate::data::signals_file`]).
    pub signals: Option<PathBuf>,
}

impl Default for RunSettings {
    /// `data/`, the spec's strategy, the default outputs and cache, a
    /// report, all cores.
    fn default() -> Self {
        RunSettings {
            data: Default::default(),
            strategy: Strategy::default(),
            strategy_file: None,
            cache: Default::default(),
            report: Default::default(),
            out: None,
            outputs: Outputs::default(),
            force: false,
            threads: 0,
            shard: None,
            show_ingest: false,
            signals: None,
        }
    }
}

/// What a run leaves.
#[derive(Debug)]
pub enum RunOutcome {
    /// A run directory.
    Done(Box<RunDone>),
    /// A shard's part.
    Part(super::shard::PartDone),
}

/// A complete run directory.
#[derive(Debug)]
pub struct RunDone {
    /// The directory.
    pub out: PathBuf,
    /// Its `run.json`.
    pub manifest: RunManifest,
    /// The summary (the curves are empty when restored).
    pub summary: RunSummary,
    /// Restored from the run cache rather than computed.
    pub restored: bool,
    /// Seconds from the first symbol (or the restore) to the complete
    /// results, and to the directory committed.
    pub compute_s: f64,
    /// Seconds to write and commit.
    pub write_s: f64,
    /// This process's cache counts.
    pub cache: CacheStats,
    /// The report: `report.html` when drawn (`None` when not asked for),
    /// or why it failed (the results are complete either way).
    pub report: std::result::Result<Option<ReportSummary>, JobError>,
}

/// Runs a backtest as `settings` say.
pub fn run(settings: &RunSettings, progress: &dyn Progress) -> Result<RunOutcome> {
    let t0 = Instant::now();
    let sampler = MemorySampler::start(Duration::from_millis(20));
    sampler.phase("load");
    let s = settings;
    if let Some(out) = &s.out {
        crate::files::out::check_not_holding(out, &crate::locate::data_base(&s.data.data))?;
    }
    if s.shard.is_some() && s.outputs != Outputs::default() {
        // Parts do not record --outputs and `merge` writes the default
        // files: refuse rather than merge into files other than asked.
        return Err(JobError::Invalid(format!(
            "--outputs {} cannot be used with --shard: merge writes the default outputs ({})\n  hint: drop --outputs from the shards (run the whole selection on one machine for other outputs)",
            s.outputs.names(),
            Outputs::default().names()
        )));
    }
    // The same command on unchanged data ran before: restore its files
    // without opening the data store or the cache's database.
    // The memo knows the data's files, not a signals file: a run on one
    // opens the data and finds its entry by content (`run_entry`).
    let invocation = match (s.shard, &s.signals) {
        (None, None) => Invocation::new(s),
        _ => None,
    };
    let mut signals = match &s.signals {
        Some(path) => Some(SignalsFile::read(path)?),
        None => None,
    };
    let sampler = match &invocation {
        Some(inv) => match try_restore(s, inv, sampler, t0, progress)? {
            Restore::Done(done) => return Ok(RunOutcome::Done(done)),
            Restore::No(sampler) => sampler,
        },
        None => sampler,
    };
    let stops = s.strategy.execution.has_stops();
    let (dataset, mut plan, notes) =
        super::open_selection(&s.data, s.show_ingest, stops, progress)?;
    if let Some(file) = &mut signals {
        plan = signals_plan(s, file, &dataset, plan, progress)?;
        if let Some(spec) = s.shard {
            // Every shard narrows the plan the same way (the capital
            // split counts the whole selection); each keeps its own
            // symbols' rows only.
            file.retain(|name| spec.owns(name));
        }
    }
    let mut cache_cfg = s.cache.config(dataset.base());
    if let Some(spec) = &s.shard {
        // sled allows one process per database: each shard has its own.
        cache_cfg.dir = spec.cache_dir(&cache_cfg.dir);
    }
    let cache = Cache::open(&cache_cfg);
    super::cache_warnings(&cache, progress);
    let t_load = t0.elapsed();
    let pool = super::pool(s.threads)?;
    if let Some(spec) = s.shard {
        let r = super::shard::run_shard(
            s,
            spec,
            &dataset,
            &plan,
            (&pool, &cache),
            signals.as_ref(),
            progress,
        );
        cache.flush();
        super::cache_warnings(&cache, progress);
        return r.map(RunOutcome::Part);
    }
    let strategy = &s.strategy;
    let strict = s.data.strict;
    let source = signals.as_ref().map(|f| &f.source);
    let inputs_hash =
        identity::with_signals(identity::run_inputs(&dataset, &plan, strategy), source);
    let out = s.out.clone().unwrap_or_else(|| default_out(&inputs_hash));
    // What the next identical command needs to find this run without
    // opening anything (written once the run entry is in the cache).
    let memo = invocation.as_ref().map(|inv| {
        let mut lines = vec![format!(
            "data: store {} ({} series, {} bars) unchanged since the cached run; not opened",
            dataset.dir().display(),
            dataset.series().len(),
            dataset.total_bars()
        )];
        lines.extend(notes.iter().cloned());
        (inv.key, lines)
    });
    // Results are written into a temporary sibling of `out`, which becomes
    // `out` only when complete.
    let mut tmp = partial_dir(&out, s.force)?;
    let t1 = Instant::now();
    // The same run on the same bars was done before: restore its files.
    let run_key = cache
        .has_l2()
        .then(|| identity::run_entry(&dataset, &plan, strategy, strict, s.outputs))
        .map(|k| identity::entry_with_signals(k, source));
    let report_key = run_key
        .as_ref()
        .map(|k| s.report.cache_key(k, s.signals.as_deref()));
    if let Some(key) = &run_key {
        if cache.restore_files(Kind::Run, key, &tmp).is_some() {
            let parts = report_key.as_ref().and_then(|rk| {
                restore_report_parts(&tmp, |dest| cache.restore_files(Kind::Report, rk, dest))
            });
            let t_restore = t1.elapsed();
            let threads = pool.current_num_threads();
            match read_restored(s, Some(&dataset), cache.stats(), threads, &tmp) {
                Ok(restored) => {
                    let timings = [("load", t_load), ("restore", t_restore)];
                    let _turn = crate::files::out::lock_out(&out);
                    let (mut done, drawn) = restored.commit(
                        s,
                        (&tmp, &out),
                        sampler,
                        parts.is_some(),
                        timings,
                        progress,
                    )?;
                    if let Some((inv, notes)) = memo {
                        cache.put_memo(&inv, &memo_of(key, &inputs_hash, notes));
                    }
                    let store = report_key.as_ref().map(|k| (&cache, k));
                    done.report = report_run(s, &out, parts, store, Some(drawn));
                    cache.flush();
                    super::cache_warnings(&cache, progress);
                    return Ok(RunOutcome::Done(Box::new(done)));
                }
                // Files that passed their checksums but do not parse (another
                // build's layout): never fail the run for the cache.
                Err(e) => {
                    progress.message(&format!(
                        "warning: cache: cannot read the restored run ({}); recomputing",
                        chain(&e)
                    ));
                    tmp = partial_dir(&out, s.force)?;
                }
            }
        }
    }
    progress.start("symbols", plan.series.len() as u64);
    sampler.phase("compute");
    // Results stream into `tmp` as symbols finish (memory holds one chunk
    // of bars).
    let result = pool.install(|| {
        run_to_dir_from(
            &dataset,
            &plan,
            strategy,
            (strict, None),
            &cache,
            &|bars| {
                progress.tick();
                sampler.add_bars(bars as u64);
            },
            (&tmp, s.outputs),
            signals.as_ref(),
        )
    });
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
    };
    progress.finish();
    let t_compute = t1.elapsed();
    let stats = cache.stats();
    let (hits, misses) = manifest::cache_totals(&stats);
    sampler.set_cache(hits, misses);
    super::show_skipped(&result.skipped, progress);
    for w in &result.warnings {
        progress.message(&format!("warning: {w}"));
    }

    let t2 = Instant::now();
    sampler.phase("write");
    let mut m = run_manifest(s, &dataset, &plan, &result, &inputs_hash);
    m.signals = source.cloned();
    m.threads = Some(pool.current_num_threads());
    m.timings_ms = timings(&[("load", t_load), ("compute", t_compute)]);
    m.cache = Some(CacheCounts::of(&stats));
    // Held until the report is drawn (the end of this function).
    let _turn = crate::files::out::lock_out(&out);
    commit_with_memory(&tmp, &out, &m, &sampler.finish(), s.force)?;
    if let Some(key) = &run_key {
        cache.store_files(Kind::Run, key, &out, &s.outputs.files());
        if let Some((inv, notes)) = memo {
            cache.put_memo(&inv, &memo_of(key, &inputs_hash, notes));
        }
    }
    let t_write = t2.elapsed();
    let store = report_key.as_ref().map(|k| (&cache, k));
    let report = report_run(s, &out, None, store, None);
    cache.flush();
    super::cache_warnings(&cache, progress);
    Ok(RunOutcome::Done(Box::new(RunDone {
        out,
        manifest: m,
        summary: result,
        restored: false,
        compute_s: t_compute.as_secs_f64(),
        write_s: t_write.as_secs_f64(),
        cache: stats,
        report,
    })))
}

/// The plan of a run on a signals file: the selected series narrowed to
/// those with rows in `file` ([`SignalsFile::check`], which validates the
/// file against the data), its end pinned again, and a warning for the
/// symbols whose last row comes before the end of the window (their last
/// row's direction is held to the end).
fn signals_plan(
    s: &RunSettings,
    file: &SignalsFile,
    data: &Dataset,
    plan: RunPlan,
    progress: &dyn Progress,
) -> Result<RunPlan> {
    let explicit = s.data.selection != crate::data::SymbolSelection::All;
    let owns = |name: &str| s.shard.is_none_or(|spec| spec.owns(name));
    let (series, notes) = file.check_owned(data, &plan.series, explicit, &owns)?;
    for n in &notes {
        progress.message(n);
    }
    let plan = RunPlan {
        series,
        to: s.data.to,
        ..plan
    }
    .pinned(data);
    let end = plan.to.unwrap_or(i64::MAX);
    let held: Vec<String> = plan
        .series
        .iter()
        .map(|&i| &data.series()[i])
        .filter(|info| {
            file.last_ts(&info.name).is_some_and(|t| {
                t < info.last_ts.min(end) && plan.from.is_none_or(|f| info.last_ts >= f)
            })
        })
        .map(|info| crate::term::quote(&info.name).into_owned())
        .collect();
    if !held.is_empty() {
        let more = if held.len() > 5 {
            format!(" and {} more", held.len() - 5)
        } else {
            String::new()
        };
        progress.message(&format!(
            "warning: signals end before the window does for {} symbol(s) ({}{more}): each holds its last row's dir to the end",
            held.len(),
            held[..held.len().min(5)].join(", ")
        ));
    }
    Ok(plan)
}

/// An error and its causes on one line (`a: b: c`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `timings_ms` of a manifest.
pub(crate) fn timings(parts: &[(&str, Duration)]) -> std::collections::BTreeMap<String, f64> {
    parts
        .iter()
        .map(|(k, d)| (k.to_string(), d.as_secs_f64() * 1e3))
        .collect()
}

/// `reports/runs/<UTC time>-<first 12 hex of the inputs hash>`.
pub fn default_out(inputs_hash: &str) -> PathBuf {
    PathBuf::from("reports/runs").join(format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &inputs_hash[..inputs_hash.len().min(12)]
    ))
}

fn memo_of(run: &Key, inputs_hash: &str, notes: Vec<String>) -> crate::cache::Memo {
    crate::cache::Memo {
        run: run.to_hex(),
        inputs_hash: inputs_hash.to_string(),
        notes,
    }
}

/// The `run.json` of a computed run (the process fields, `threads`,
/// `timings_ms` and `cache`, are the caller's).
fn run_manifest(
    s: &RunSettings,
    data: &Dataset,
    plan: &RunPlan,
    r: &RunSummary,
    inputs_hash: &str,
) -> RunManifest {
    let series = data.series();
    let by_name: std::collections::HashMap<&str, &crate::data::SeriesInfo> = plan
        .series
        .iter()
        .map(|&i| (series[i].name.as_str(), &series[i]))
        .collect();
    RunManifest {
        format_version: manifest::RUN_FORMAT_VERSION,
        atc_bt_version: env!("CARGO_PKG_VERSION").to_string(),
        command: super::command_line(),
        started_at: super::now_utc(),
        inputs_hash: inputs_hash.to_string(),
        params: s.strategy.clone(),
        signals: None,
        strategy_file: s.strategy_file.as_ref().map(|p| p.display().to_string()),
        window: Window::of(plan.from, plan.to, plan.warmup_bars),
        data: RunData {
            path: s.data.data.display().to_string(),
            store: Some(data.dir().display().to_string()),
            sources: data.sources().to_vec(),
            series: r
                .symbols
                .iter()
                .map(|x| {
                    let info = by_name.get(x.symbol.as_str());
                    RunSeries {
                        symbol: x.symbol.clone(),
                        close_hash: info.map(|i| i.close_hash.clone()),
                        engine_bars: x.engine_bars,
                        window_bars: x.window_bars,
                        tz: info.and_then(|i| i.tz.clone()),
                        periods_per_year: x.metrics.periods_per_year,
                    }
                })
                .collect(),
        },
        skipped: r.skipped.clone(),
        warnings: r.warnings.clone(),
        symbols: r.symbols.len(),
        capital_per_symbol: r.capital_per_symbol,
        periods_per_year: Some(r.portfolio_metrics.periods_per_year),
        periods_per_year_source: manifest::periods_source(&s.strategy).to_string(),
        risk_free: s.strategy.metrics.risk_free,
        engine_bars: r.engine_bars,
        outputs: s.outputs.names(),
        threads: None,
        shards: None,
        timings_ms: Default::default(),
        cache: None,
        files: vec![],
    }
}

/// Adds this process's `memory.parquet` and `run.json` to the result files
/// in `tmp` and renames it to `out`; removes `tmp` if that fails.
fn commit_with_memory(
    tmp: &Path,
    out: &Path,
    m: &RunManifest,
    timeline: &MemoryTimeline,
    force: bool,
) -> Result<()> {
    let path = tmp.join("memory.parquet");
    if let Err(e) = write_memory_parquet(&path, timeline) {
        let _ = std::fs::remove_dir_all(tmp);
        return Err(OutputError::Parquet {
            path,
            message: e.to_string(),
        }
        .into());
    }
    Ok(manifest::commit(tmp, out, m, force)?)
}

/// The name under which a report entry carries its [`RunReportParts`].
const REPORT_PARTS_FILE: &str = "report-parts.json";

/// Restores a report entry into `tmp/report_files/` with `restore` and
/// takes its parts file back out; `None` (and nothing left behind) when
/// there is no usable entry.
fn restore_report_parts(
    tmp: &Path,
    restore: impl FnOnce(&Path) -> Option<Vec<String>>,
) -> Option<RunReportParts> {
    let dest = tmp.join(FILES_DIR);
    restore(&dest)?;
    let path = dest.join(REPORT_PARTS_FILE);
    let parts = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<RunReportParts>(&b).ok());
    let _ = std::fs::remove_file(&path);
    // Listed at once: the restored charts are atc-bt's even if the command
    // is killed before the report is finished.
    let listed = parts
        .as_ref()
        .is_some_and(|p| crate::files::out::write_report_listing(&dest, &p.charts).is_ok());
    if !listed {
        let _ = std::fs::remove_dir_all(&dest);
        return None;
    }
    parts
}

/// What [`Restored::commit`] leaves for the report.
struct Drawn {
    run_json: serde_json::Value,
    memory: Option<std::result::Result<MemorySection, crate::report::ReportError>>,
}

/// Draws the report of the run in `out` unless not asked for: from `parts`
/// (restored with their charts) when given, which draws only the memory
/// timeline and the run details; else in full, storing the result-derived
/// half as a report entry for the next rerun.
fn report_run(
    s: &RunSettings,
    out: &Path,
    parts: Option<RunReportParts>,
    store: Option<(&Cache, &Key)>,
    drawn: Option<Drawn>,
) -> std::result::Result<Option<ReportSummary>, JobError> {
    if !s.report.render {
        return Ok(None);
    }
    let opts = &s.report.options;
    let rendered = match (&parts, drawn) {
        (
            Some(p),
            Some(Drawn {
                run_json,
                memory: Some(memory),
            }),
        ) => memory.and_then(|m| finish_run_report(out, opts, p, &run_json, m)),
        (Some(p), _) => finish_run_report_from_dir(out, opts, p),
        (None, _) => render_run_report_parts(out, opts).map(|(summary, p)| {
            if let Some((cache, key)) = store {
                store_report_parts(cache, key, out, &p);
            }
            summary
        }),
    };
    rendered
        .map(Some)
        .map_err(|e| JobError::context(report_failed(out), e))
}

/// What a failed report says: the results are safe, and how to retry.
pub fn report_failed(dir: &Path) -> String {
    format!(
        "the results in {} are complete, but the report failed (retry with `atc-bt report {}`)",
        dir.display(),
        dir.display()
    )
}

/// Stores a report's charts and parts under `key` (best effort, like
/// every cache write).
fn store_report_parts(cache: &Cache, key: &Key, out: &Path, parts: &RunReportParts) {
    let Ok(json) = serde_json::to_vec(parts) else {
        return;
    };
    let dir = out.join(FILES_DIR);
    let mut files: Vec<(&str, EntryFile<'_>)> = parts
        .charts
        .iter()
        .map(|n| (n.as_str(), EntryFile::Path(dir.join(n))))
        .collect();
    files.push((REPORT_PARTS_FILE, EntryFile::Bytes(&json)));
    cache.store_entry(Kind::Report, key, &files);
}

/// A run whose result files were restored into a temporary directory.
struct Restored {
    manifest: RunManifest,
    summary: RunSummary,
    stats: CacheStats,
}

/// The `run.json` and summary of a run restored into `tmp`: `run.json`
/// keeps the result's fields and takes this invocation's (command, time,
/// paths, threads, cache counts). Without `dataset` (a restore that did
/// not open it) the sources stay as recorded, which the restore's key
/// vouches for.
fn read_restored(
    s: &RunSettings,
    dataset: Option<&Dataset>,
    stats: CacheStats,
    threads: usize,
    tmp: &Path,
) -> Result<Restored> {
    let mut m = manifest::read_run(&tmp.join("run.json"))?;
    let summary = summary_from_dir(tmp, &m)?;
    m.command = super::command_line();
    m.started_at = super::now_utc();
    m.strategy_file = s.strategy_file.as_ref().map(|p| p.display().to_string());
    // The entry's key vouches for the file's content, not its name.
    if let (Some(sig), Some(p)) = (m.signals.as_mut(), &s.signals) {
        sig.path = p.display().to_string();
    }
    m.data.path = s.data.data.display().to_string();
    if let Some(d) = dataset {
        m.data.sources = d.sources().to_vec();
    }
    m.threads = Some(threads);
    m.cache = Some(CacheCounts::of(&stats));
    Ok(Restored {
        manifest: m,
        summary,
        stats,
    })
}

/// The summary of a complete run directory's `metrics.json` and `run.json`
/// (what a front end shows; the curves are left empty).
pub fn summary_from_dir(dir: &Path, m: &RunManifest) -> Result<RunSummary> {
    use crate::backtest::Metrics;
    let path = dir.join("metrics.json");
    let metrics = crate::report::load::read_json(&path)?;
    let bad = |e: serde_json::Error| {
        JobError::from(crate::report::ReportError::Json {
            path: path.clone(),
            message: e.to_string(),
        })
    };
    let get = |v: &serde_json::Value| -> Result<Metrics> {
        serde_json::from_value(v.clone()).map_err(bad)
    };
    let mut symbols = Vec::new();
    for x in &m.data.series {
        symbols.push(crate::run::SymbolSummary {
            metrics: get(&metrics["symbols"][&x.symbol])?,
            symbol: x.symbol.clone(),
            engine_bars: x.engine_bars,
            window_bars: x.window_bars,
        });
    }
    let empty = crate::backtest::Curve {
        ts: vec![],
        equity: vec![],
        gross: vec![],
    };
    Ok(RunSummary {
        symbols,
        warnings: m.warnings.clone(),
        skipped: m.skipped.clone(),
        portfolio: empty.clone(),
        benchmark: empty,
        portfolio_metrics: get(&metrics["portfolio"])?,
        benchmark_metrics: get(&metrics["benchmark"])?,
        capital_per_symbol: m.capital_per_symbol,
        engine_bars: m.engine_bars,
    })
}

impl Restored {
    /// Adds this process's `memory.parquet` and `run.json`, renames the
    /// directory into place. When `draw`, the report's memory section is
    /// drawn from the same timeline meanwhile, on another thread (a
    /// restore is short enough that this matters).
    fn commit(
        self,
        s: &RunSettings,
        (tmp, out): (&Path, &Path),
        sampler: MemorySampler,
        draw: bool,
        timings_of: [(&str, Duration); 2],
        progress: &dyn Progress,
    ) -> Result<(RunDone, Drawn)> {
        let t2 = Instant::now();
        super::show_skipped(&self.summary.skipped, progress);
        for w in &self.summary.warnings {
            progress.message(&format!("warning: {w}"));
        }
        let (hits, misses) = manifest::cache_totals(&self.stats);
        sampler.set_cache(hits, misses);
        sampler.phase("write");
        let timeline = sampler.finish();
        let mut m = self.manifest;
        m.timings_ms = timings(&timings_of);
        let opts = &s.report.options;
        let (committed, memory) = rayon::join(
            || commit_with_memory(tmp, out, &m, &timeline, s.force),
            || draw.then(|| draw_memory_section(out, Some(&timeline), opts)),
        );
        committed?;
        let run_json = serde_json::to_value(&m).unwrap_or_default();
        let done = RunDone {
            out: out.to_path_buf(),
            manifest: m,
            summary: self.summary,
            restored: true,
            compute_s: timings_of[1].1.as_secs_f64(),
            write_s: t2.elapsed().as_secs_f64(),
            cache: self.stats,
            report: Ok(None),
        };
        Ok((done, Drawn { run_json, memory }))
    }
}

/// What identifies one run's result before anything is opened.
struct Invocation {
    key: Key,
    cfg: crate::cache::CacheConfig,
    /// The store the data names (see [`try_restore`]).
    store_dir: PathBuf,
}

impl Invocation {
    /// `None` without a cache, or when the data cannot be stat'ed (the
    /// normal path then reports why).
    fn new(s: &RunSettings) -> Option<Invocation> {
        if !s.cache.enabled {
            return None;
        }
        let (store_dir, sources) = crate::data::store::source_stamp(&s.data.options(false)).ok()?;
        let key = identity::invocation(&identity::InvocationInputs {
            strategy: &s.strategy,
            selection: &s.data.selection,
            from: s.data.from,
            to: s.data.to,
            warmup_bars: s.data.warmup_bars,
            strict: s.data.strict,
            outputs: s.outputs,
            store_dir: &store_dir,
            sources: &sources,
        });
        Some(Invocation {
            store_dir,
            key,
            // The same directory the normal path uses (nothing created).
            cfg: s.cache.config(&crate::locate::data_base(&s.data.data)),
        })
    }
}

enum Restore {
    Done(Box<RunDone>),
    No(MemorySampler),
}

/// Restores the run `inv` names, if the memo and every file allow, and
/// completes it (`memory.parquet`, `run.json`, report). Gives the sampler
/// back when it did not, for the normal path.
fn try_restore(
    s: &RunSettings,
    inv: &Invocation,
    sampler: MemorySampler,
    t0: Instant,
    progress: &dyn Progress,
) -> Result<Restore> {
    let Some(fc) = FastCache::new(&inv.cfg) else {
        return Ok(Restore::No(sampler));
    };
    // The memo's note says the store is unchanged: only true while it is
    // there (a --force or a user may have deleted it; the normal path
    // rebuilds it).
    if !inv.store_dir.join("manifest.json").is_file() {
        return Ok(Restore::No(sampler));
    }
    let Some((memo, run)) = fc
        .memo(&inv.key)
        .and_then(|m| Key::from_hex(&m.run).map(|k| (m, k)))
    else {
        return Ok(Restore::No(sampler));
    };
    let out = s
        .out
        .clone()
        .unwrap_or_else(|| default_out(&memo.inputs_hash));
    let tmp = partial_dir(&out, s.force)?;
    let t_load = t0.elapsed();
    let t1 = Instant::now();
    let report = s
        .report
        .render
        .then(|| s.report.cache_key(&run, s.signals.as_deref()));
    // The two entries are independent: restore them side by side.
    let (files, parts) = rayon::join(
        || fc.restore(Kind::Run, &run, &tmp),
        || match &report {
            Some(rk) => {
                restore_report_parts(&tmp, |dest| fc.restore(Kind::Report, rk, dest)).map(Some)
            }
            None => Some(None),
        },
    );
    let Some(parts) = files.and(parts) else {
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(Restore::No(sampler));
    };
    let t_restore = t1.elapsed();
    let mut hits = vec![(Kind::Run, run)];
    hits.extend(report.map(|rk| (Kind::Report, rk)));
    let mut stats = CacheStats {
        enabled: true,
        ..Default::default()
    };
    for (kind, _) in &hits {
        stats.this_run[kind.index()].hits_l2 += 1;
    }
    let threads = if s.threads > 0 {
        s.threads
    } else {
        rayon::current_num_threads()
    };
    let Ok(restored) = read_restored(s, None, stats, threads, &tmp) else {
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(Restore::No(sampler));
    };
    if let Some((store, notes)) = memo.notes.split_first() {
        progress.note(store);
        for line in notes {
            progress.message(line);
        }
    }
    let timings = [("load", t_load), ("restore", t_restore)];
    let _turn = crate::files::out::lock_out(&out);
    let (mut done, drawn) =
        restored.commit(s, (&tmp, &out), sampler, parts.is_some(), timings, progress)?;
    fc.record_hits(&hits);
    done.report = report_run(s, &out, parts, None, Some(drawn));
    Ok(Restore::Done(Box::new(done)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped strategy with overrides on top; a name, a value and a
    /// range refused with messages naming them (what `run`/`sweep` and
    /// the Python package show).
    #[test]
    fn resolve_strategy_applies_and_checks_overrides() {
        let mut o = StrategyOverrides::default();
        o.set_atc("lambda", "0.05").unwrap();
        o.set_atc("robustness", "Wide").unwrap();
        o.fee_bps = Some(12.5);
        o.mode = Some(Mode::LongShort);
        o.periods_per_year = Some(365.0);
        let s = resolve_strategy(None, &o).unwrap();
        let d = Strategy::shipped_default().unwrap();
        assert_eq!(s.atc.lambda, 0.05);
        assert_eq!(s.atc.robustness.name(), "Wide");
        assert_eq!(s.atc.decay, d.atc.decay);
        assert_eq!(s.execution.fee_bps, 12.5);
        assert_eq!(s.execution.mode, Mode::LongShort);
        assert_eq!(s.execution.capital, d.execution.capital);
        assert_eq!(s.metrics.periods_per_year, Some(365.0));

        let e = o.set_atc("lamda", "1").unwrap_err().to_string();
        assert!(e.contains("unknown ATC parameter `lamda`"), "{e}");
        let e = o.set_atc("ema_len", "2.5").unwrap_err().to_string();
        assert!(e.contains("ema_len: cannot read \"2.5\""), "{e}");
        o.set_atc("lambda", "-1").unwrap();
        let e = resolve_strategy(None, &o).unwrap_err().to_string();
        assert!(e.contains("lambda = -1"), "{e}");
        let o = StrategyOverrides {
            fee_bps: Some(-1.0),
            ..Default::default()
        };
        let e = resolve_strategy(None, &o).unwrap_err().to_string();
        assert!(e.contains("fee_bps"), "{e}");
        let e = resolve_strategy(Some(Path::new("no/such.toml")), &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no/such.toml"), "{e}");
    }

    /// `--symbols`, `--from`, `--to` through [`super::super::DataSettings::select`].
    #[test]
    fn data_settings_select_parses_as_the_flags() {
        let d = super::super::DataSettings::default()
            .select("AAPL,MSFT", Some("2020"), Some("2020"))
            .unwrap();
        assert_eq!(
            d.selection,
            crate::data::SymbolSelection::parse("AAPL,MSFT").unwrap()
        );
        assert_eq!(d.from, Some(1_577_836_800_000_000));
        assert_eq!(
            d.to,
            Some(crate::data::parse_date_bound("2020", true).unwrap())
        );
        assert!(d.to.unwrap() > 1_609_459_100_000_000);
        let e = super::super::DataSettings::default()
            .select("all", Some("2020-13"), None)
            .unwrap_err();
        assert!(e.to_string().contains("2020-13"), "{e}");
    }
}
