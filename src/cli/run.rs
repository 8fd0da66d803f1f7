//! `atc-bt run`: trade the ATC direction over many symbols.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::cache::CacheFlags;
use super::data::{DataSourceArgs, SelectionArgs};
use super::params::AtcArgs;
use crate::backtest::Mode;
use crate::cache::{Cache, EntryFile, Kind};
use crate::data::Dataset;
use crate::report::{
    draw_memory_section, finish_run_report, finish_run_report_from_dir, render_report,
    render_run_report_parts, write_memory_parquet, Format, MemorySampler, MemorySection,
    MemoryTimeline, ReportOptions, RunReportParts, SymbolsInReport, FILES_DIR, RUN_REPORT_LAYOUT,
};
use crate::run::output::{commit_run_dir, partial_dir, OutputError, Outputs, RUN_FORMAT_VERSION};
use crate::run::{fmt_ts, run_to_dir, RunPlan, RunSummary, Strategy};

/// Arguments of `atc-bt run`.
#[derive(Debug, Args)]
#[command(after_long_help = format!("{EXECUTION_HELP}\n\n{}\n\n{}", crate::data::INPUT_HELP, super::data::POLICY_HELP))]
pub struct RunArgs {
    #[command(flatten)]
    pub data: DataSourceArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Strategy file (TOML with [atc] and [execution]); flags override it
    /// [default: strategies/atc_default.toml, the spec defaults]
    #[arg(long, value_name = "FILE")]
    pub strategy: Option<PathBuf>,
    #[command(flatten)]
    pub atc: AtcArgs,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub metrics: MetricArgs,
    #[command(flatten)]
    pub cache: CacheFlags,
    #[command(flatten)]
    pub report: ReportFlags,
    /// Output directory [default: reports/runs/<UTC time>-<hash of the inputs>/].
    /// An existing directory is replaced only if atc-bt wrote everything in
    /// it (its run.json lists its files); anything else is refused
    #[arg(help_heading = "Output", long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Result files, a comma list: equity (each symbol's rows in
    /// equity.parquet), trades (trades.parquet), signals (signals.parquet:
    /// ts, symbol, avg, dir), close (signals.parquet with the input's
    /// close too), drawdown (equity.parquet's drawdown column), all; or
    /// metrics alone (run.json, metrics.json and the portfolio and
    /// benchmark rows of equity.parquet: a universe scan)
    #[arg(help_heading = "Output", long, value_name = "LIST", default_value = "equity,trades,signals", value_parser = Outputs::parse)]
    pub outputs: Outputs,
    /// Replace --out even if it holds files atc-bt did not write (they are
    /// deleted)
    #[arg(long)]
    pub force: bool,
    /// Worker threads [default: all cores]
    #[arg(
        help_heading = "Output",
        long,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub threads: Option<usize>,
    /// No progress bar and no summary table (errors and warnings still print)
    #[arg(help_heading = "Output", long, short)]
    pub quiet: bool,
    /// Process only shard I of N (the symbols with blake3(name) mod N = I)
    /// and write a part `part-I-of-N/` into --out (default
    /// reports/shards/<hash of the inputs>/) for `atc-bt merge`. `auto/N`
    /// reads I from $JOB_COMPLETION_INDEX or $AWS_BATCH_JOB_ARRAY_INDEX
    #[arg(help_heading = "Output", long, value_name = "I/N")]
    pub shard: Option<String>,
}

/// Report flags shared by `run` and `sweep`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Report")]
pub struct ReportFlags {
    /// Do not render report.html and the PNG charts (`atc-bt report DIR` can later)
    #[arg(long)]
    pub no_report: bool,
    /// Symbols with their own chart: the best and worst N by total return, or `all`
    #[arg(long, value_name = "N|all", default_value = "5", value_parser = crate::cli::report::parse_symbols_in_report)]
    pub symbols_in_report: SymbolsInReport,
    /// Draw equity curves on a log scale [default: log when a chart's curves span more than 10×]
    #[arg(long, conflicts_with = "linear_scale")]
    pub log_scale: bool,
    /// Draw equity curves on a linear scale, however far they span
    #[arg(long)]
    pub linear_scale: bool,
}

impl ReportFlags {
    /// The renderer's options for these flags.
    pub fn options(&self) -> ReportOptions {
        ReportOptions {
            format: Format::Both,
            symbols_in_report: self.symbols_in_report,
            scale: crate::cli::report::scale_choice(self.log_scale, self.linear_scale),
        }
    }

    /// The key of the cached report of the run entry `run` drawn with
    /// these flags (and this build's drawing, [`RUN_REPORT_LAYOUT`]).
    pub fn cache_key(&self, run: &crate::cache::Key) -> crate::cache::Key {
        let text = format!("{RUN_REPORT_LAYOUT}|{:?}", self.options());
        crate::cache::report_key(run, text.as_bytes())
    }

    /// Renders the report of `dir` unless `--no-report`; prints where it is.
    pub fn render(&self, dir: &std::path::Path, quiet: bool) -> Result<()> {
        if self.no_report {
            return Ok(());
        }
        let summary = render_report(dir, &self.options()).with_context(|| report_failed(dir))?;
        if !quiet {
            if let Some(html) = summary.html {
                outln!("report: {}", html.display());
            }
        }
        Ok(())
    }
}

/// What a failed report says: the results are safe, and how to retry.
fn report_failed(dir: &std::path::Path) -> String {
    format!(
        "the results in {} are complete, but the report failed (retry with `atc-bt report {}`)",
        dir.display(),
        dir.display()
    )
}

/// Execution flags (override `[execution]` of the strategy file).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Execution")]
pub struct ExecArgs {
    /// long-only trades max(dir, 0); long-short trades dir [default: long-only]
    #[arg(long, value_name = "long-only|long-short")]
    pub mode: Option<Mode>,
    /// Fee in basis points of traded notional [default: 5]
    #[arg(long, value_name = "BPS", allow_negative_numbers = true)]
    pub fee_bps: Option<f64>,
    /// Slippage in basis points: buys at open·(1+s), sells at open·(1−s) [default: 0]
    #[arg(long, value_name = "BPS", allow_negative_numbers = true)]
    pub slippage_bps: Option<f64>,
    /// Starting capital, split equally over the symbols with data in the window [default: 100000]
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub capital: Option<f64>,
}

/// Metric flags (override `[metrics]` of the strategy file).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Metrics")]
pub struct MetricArgs {
    /// Bars per year for annualising every curve (e.g. 252, 365, 8760)
    /// [default: inferred per curve from its calendar: 252 for weekday daily
    /// bars, 365 when weekends trade, sessions × bars a day, or the bars
    /// observed per year for round-the-clock and irregular bars]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub periods_per_year: Option<f64>,
    /// Annual risk-free rate as a fraction (0.02 = 2%), subtracted per bar
    /// ((1+rf)^(1/periods) − 1) by Sharpe and Sortino, as quantstats does
    /// [default: 0]
    #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
    pub risk_free: Option<f64>,
}

const EXECUTION_HELP: &str = "\
Execution model:
  dir[t] is known at the close of bar t. The position held from the open of
  bar t+1 is dir[t] (long-short) or max(dir[t], 0) (long-only); orders fill at
  open[t+1]·(1±slippage) and pay fee × |notional| in cash. Each symbol is a
  sub-account with capital/N that invests its whole equity, sized so the fee
  fits inside it (qty = cash / (price·(1+fee)), as vectorbt and
  backtesting.py do); equity is marked at every close. A symbol whose data
  ends before the window does is closed at its last close. --from/--to
  select the traded window; the engine also sees the history before --from
  (limited by --warmup-bars) so indicators are warm. The benchmark is buy &
  hold under the same split. Every metric is defined in METRICS.md.";

/// Resolves the strategy: file (or the shipped default), then flags.
pub fn resolve_strategy(
    path: Option<&PathBuf>,
    atc: &AtcArgs,
    exec: &ExecArgs,
    metrics: &MetricArgs,
) -> Result<Strategy> {
    let mut s = match path {
        Some(p) => Strategy::load(p)?,
        None => Strategy::shipped_default()?,
    };
    s.atc = atc.apply(s.atc);
    if let Some(m) = exec.mode {
        s.execution.mode = m;
    }
    if let Some(v) = exec.fee_bps {
        s.execution.fee_bps = v;
    }
    if let Some(v) = exec.slippage_bps {
        s.execution.slippage_bps = v;
    }
    if let Some(v) = exec.capital {
        s.execution.capital = v;
    }
    if let Some(v) = metrics.periods_per_year {
        s.metrics.periods_per_year = Some(v);
    }
    if let Some(v) = metrics.risk_free {
        s.metrics.risk_free = v;
    }
    s.atc.validate()?;
    s.execution.validate()?;
    s.metrics.validate()?;
    Ok(s)
}

pub fn progress_bar(len: usize, quiet: bool, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    if quiet || !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
    )) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// The data problems of the selected series `idx` as lines for stderr:
/// at most three warnings in full, a count of the others with the command
/// that lists them all, each invalid series the selection (`all`) would
/// have held, and one count for the problems of series not selected.
pub fn data_notes(data: &Dataset, idx: &[usize], all: bool) -> Vec<String> {
    let p = data.problems(idx, all);
    let mut lines: Vec<String> = p
        .warnings
        .iter()
        .take(3)
        .map(|x| format!("warning: {x}"))
        .collect();
    if p.warnings.len() > 3 {
        lines.push(format!(
            "warning: {} more data warnings for the selected series; `atc-bt data info --all-warnings` lists them",
            p.warnings.len() - 3
        ));
    }
    for bad in &p.invalid {
        lines.push(format!("warning: skipped {bad}"));
    }
    if p.other_warnings + p.other_invalid > 0 {
        lines.push(format!(
            "data: {} warning(s) and {} invalid series concern series not selected or without bars in the window; `atc-bt data info` lists them",
            p.other_warnings, p.other_invalid
        ));
    }
    lines
}

/// Opens the data of `args`, resolves the selection (an unknown or
/// left-out name is an error before anything else is printed), checks the
/// selected series' bytes against the store's checksums (a damaged store
/// is rebuilt, with one warning) and prints the selection's data notes.
/// Returns the data, the plan and the notes.
pub fn open_selection(
    data: &super::data::DataSourceArgs,
    sel: &SelectionArgs,
    progress: bool,
) -> Result<(Dataset, RunPlan, Vec<String>)> {
    let opts = data.options(progress);
    let dataset = Dataset::open(&opts)?;
    let plan = resolve_plan(sel, &dataset)?;
    let dataset = dataset.verified(&opts, &plan.series, crate::data::store::Columns::Traded)?;
    let all = sel.selection()? == crate::data::SymbolSelection::All;
    // Warnings of the series the run trades: a selected series with no bar
    // in the window is skipped (said once below), its warnings only counted.
    let traded: Vec<usize> = plan
        .series
        .iter()
        .copied()
        .filter(|&i| {
            let s = &dataset.series()[i];
            s.bars > 0
                && plan.from.is_none_or(|f| s.last_ts >= f)
                && plan.to.is_none_or(|t| s.first_ts <= t)
        })
        .collect();
    let notes = data_notes(&dataset, &traded, all);
    for n in &notes {
        errln!("{n}");
    }
    Ok((dataset, plan, notes))
}

/// The series and window selected by the flags, the window's end pinned
/// to the selection's last bar in it ([`RunPlan::pinned`]).
pub fn resolve_plan(sel: &SelectionArgs, data: &Dataset) -> Result<RunPlan> {
    Ok(RunPlan {
        series: data.select(&sel.selection()?)?,
        from: sel.from_us()?,
        to: sel.to_us()?,
        warmup_bars: sel.warmup_bars,
    }
    .pinned(data))
}

/// Runs `atc-bt run`.
pub fn execute(args: &RunArgs) -> Result<()> {
    let t0 = Instant::now();
    let sampler = MemorySampler::start(std::time::Duration::from_millis(20));
    sampler.phase("load");
    let shard = args
        .shard
        .as_deref()
        .map(crate::shard::ShardSpec::from_arg)
        .transpose()?;
    let strategy = resolve_strategy(args.strategy.as_ref(), &args.atc, &args.exec, &args.metrics)?;
    if let Some(out) = &args.out {
        crate::files::out::check_not_holding(out, &crate::locate::data_base(&args.data.data))?;
    }
    // The same command on unchanged data ran before: restore its files
    // without opening the data store or the cache's database.
    let invocation = match shard {
        Some(_) => None,
        None => super::rerun::Invocation::new(args, &strategy),
    };
    let sampler = match &invocation {
        Some(inv) => match super::rerun::try_restore(args, inv, sampler, t0)? {
            Some(sampler) => sampler,
            None => return Ok(()),
        },
        None => sampler,
    };
    let (dataset, plan, notes) = open_selection(&args.data, &args.selection, !args.quiet)?;
    let mut cache_cfg = args.cache.config(dataset.base());
    if let Some(spec) = &shard {
        // sled allows one process per database: each shard has its own.
        cache_cfg.dir = spec.cache_dir(&cache_cfg.dir);
    }
    let cache = Cache::open(&cache_cfg);
    super::cache::print_new_warnings(&cache);
    let strict = args.data.strict;
    let t_load = t0.elapsed();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()
        .context("cannot start worker threads")?;
    if let Some(spec) = shard {
        let r = super::merge::run_shard(args, spec, &dataset, &plan, &strategy, &pool, &cache);
        cache.flush();
        super::cache::print_new_warnings(&cache);
        return r;
    }
    let inputs_hash = inputs_hash(&dataset, &plan, &strategy);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&inputs_hash));
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
    // Results are written into a temporary sibling of --out, which becomes
    // --out only when complete.
    let tmp = partial_dir(&out, args.force)?;
    let t1 = Instant::now();
    // The same run on the same bars was done before: restore its files.
    let run_key = cache
        .has_l2()
        .then(|| run_cache_key(&dataset, &plan, &strategy, strict, args.outputs));
    let report_key = run_key.as_ref().map(|k| args.report.cache_key(k));
    let mut tmp = tmp;
    if let Some(key) = &run_key {
        if cache.restore_files(Kind::Run, key, &tmp).is_some() {
            let parts = report_key.as_ref().and_then(|rk| {
                restore_report_parts(&tmp, |dest| cache.restore_files(Kind::Report, rk, dest))
            });
            let t_restore = t1.elapsed();
            let threads = pool.current_num_threads();
            let stats = cache.stats();
            match read_restored(
                args,
                Some(&dataset),
                stats,
                (&tmp, &out),
                threads,
                (t_load, t_restore),
            ) {
                Ok(done) => {
                    let drawn = done.commit(args, sampler, parts.is_some())?;
                    if let Some((inv, notes)) = memo {
                        cache.put_memo(&inv, &memo_of(key, &inputs_hash, notes));
                    }
                    let store = report_key.as_ref().map(|k| (&cache, k));
                    let r = report_run(args, &out, parts, store, Some(drawn));
                    cache.flush();
                    super::cache::print_new_warnings(&cache);
                    return r;
                }
                // Files that passed their checksums but do not parse (another
                // build's layout): never fail the run for the cache.
                Err(e) => {
                    errln!("warning: cache: cannot read the restored run ({e:#}); recomputing");
                    tmp = partial_dir(&out, args.force)?;
                }
            }
        }
    }
    let pb = progress_bar(plan.series.len(), args.quiet, "symbols");
    sampler.phase("compute");
    // Results stream into `tmp` as symbols finish (memory holds one chunk
    // of bars).
    let result = pool.install(|| {
        run_to_dir(
            &dataset,
            &plan,
            &strategy,
            strict,
            None,
            &cache,
            &|bars| {
                pb.inc(1);
                sampler.add_bars(bars as u64);
            },
            &tmp,
            args.outputs,
        )
    });
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
    };
    pb.finish_and_clear();
    let t_compute = t1.elapsed();
    let stats = cache.stats();
    let (hits, misses) = cache_counts(&stats);
    sampler.set_cache(hits, misses);
    crate::run::print_skipped(&result.skipped);
    print_result_warnings(&result);

    let t2 = Instant::now();
    sampler.phase("write");
    let mut run_json = run_json(
        args,
        &dataset,
        &plan,
        &strategy,
        &result,
        &inputs_hash,
        pool.current_num_threads(),
    );
    run_json["timings_ms"] = serde_json::json!({
        "load": t_load.as_secs_f64() * 1e3,
        "compute": t_compute.as_secs_f64() * 1e3,
    });
    run_json["cache"] = cache_json(&stats);
    commit_with_memory(&tmp, &out, &run_json, &sampler.finish(), args.force)?;
    if let Some(key) = &run_key {
        cache.store_files(Kind::Run, key, &out, &args.outputs.files());
        if let Some((inv, notes)) = memo {
            cache.put_memo(&inv, &memo_of(key, &inputs_hash, notes));
        }
    }
    let t_write = t2.elapsed();
    if !args.quiet {
        print_summary(
            &result,
            &out,
            t_compute.as_secs_f64(),
            t_write.as_secs_f64(),
            false,
        );
        print_cache_line(&stats);
    }
    let store = report_key.as_ref().map(|k| (&cache, k));
    let r = report_run(args, &out, None, store, None);
    cache.flush();
    super::cache::print_new_warnings(&cache);
    r
}

/// `reports/runs/<UTC time>-<first 12 hex of the inputs hash>`.
pub(super) fn default_out(inputs_hash: &str) -> PathBuf {
    PathBuf::from("reports/runs").join(format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &inputs_hash[..inputs_hash.len().min(12)]
    ))
}

fn memo_of(run: &crate::cache::Key, inputs_hash: &str, notes: Vec<String>) -> crate::cache::Memo {
    crate::cache::Memo {
        run: run.to_hex(),
        inputs_hash: inputs_hash.to_string(),
        notes,
    }
}

/// The name under which a report entry carries its [`RunReportParts`].
const REPORT_PARTS_FILE: &str = "report-parts.json";

/// Restores a report entry into `tmp/report_files/` with `restore` and
/// takes its parts file back out; `None` (and nothing left behind) when
/// there is no usable entry.
pub(super) fn restore_report_parts(
    tmp: &std::path::Path,
    restore: impl FnOnce(&std::path::Path) -> Option<Vec<String>>,
) -> Option<RunReportParts> {
    let dest = tmp.join(FILES_DIR);
    restore(&dest)?;
    let path = dest.join(REPORT_PARTS_FILE);
    let parts = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<RunReportParts>(&b).ok());
    let _ = std::fs::remove_file(&path);
    if parts.is_none() {
        let _ = std::fs::remove_dir_all(&dest);
    }
    parts
}

/// Renders the report of the run in `out` unless `--no-report`: from
/// `parts` (restored with their charts) when given, which draws only the
/// memory timeline and the run details; else in full, storing the
/// result-derived half as a report entry for the next rerun.
pub(super) fn report_run(
    args: &RunArgs,
    out: &std::path::Path,
    parts: Option<RunReportParts>,
    store: Option<(&Cache, &crate::cache::Key)>,
    drawn: Option<Committed>,
) -> Result<()> {
    if args.report.no_report {
        return Ok(());
    }
    let opts = args.report.options();
    let rendered = match (&parts, drawn) {
        (
            Some(p),
            Some(Committed {
                run_json,
                memory: Some(memory),
            }),
        ) => memory.and_then(|m| finish_run_report(out, &opts, p, &run_json, m)),
        (Some(p), _) => finish_run_report_from_dir(out, &opts, p),
        (None, _) => render_run_report_parts(out, &opts).map(|(summary, p)| {
            if let Some((cache, key)) = store {
                store_report_parts(cache, key, out, &p);
            }
            summary
        }),
    };
    let summary = rendered.with_context(|| report_failed(out))?;
    if !args.quiet {
        if let Some(html) = summary.html {
            outln!("report: {}", html.display());
        }
    }
    Ok(())
}

/// Stores a report's charts and parts under `key` (best effort, like
/// every cache write).
fn store_report_parts(
    cache: &Cache,
    key: &crate::cache::Key,
    out: &std::path::Path,
    parts: &RunReportParts,
) {
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

/// A run whose result files were restored into `tmp`.
pub(super) struct Restored<'a> {
    tmp: &'a std::path::Path,
    out: &'a std::path::Path,
    run_json: serde_json::Value,
    summary: RunSummary,
    t_restore: std::time::Duration,
    stats: crate::cache::CacheStats,
}

/// What [`Restored::commit`] leaves for the report.
pub(super) struct Committed {
    run_json: serde_json::Value,
    memory: Option<Result<MemorySection, crate::report::ReportError>>,
}

impl Restored<'_> {
    /// Adds this process's `memory.parquet` and `run.json`, renames the
    /// directory into place and prints the summary. With `draw`, the
    /// report's memory section is drawn from the same timeline meanwhile,
    /// on another thread (a restore is short enough that this matters).
    pub(super) fn commit(
        self,
        args: &RunArgs,
        sampler: MemorySampler,
        draw: bool,
    ) -> Result<Committed> {
        let t2 = Instant::now();
        crate::run::print_skipped(&self.summary.skipped);
        print_result_warnings(&self.summary);
        let (hits, misses) = cache_counts(&self.stats);
        sampler.set_cache(hits, misses);
        sampler.phase("write");
        let timeline = sampler.finish();
        let opts = args.report.options();
        let (committed, memory) = rayon::join(
            || commit_with_memory(self.tmp, self.out, &self.run_json, &timeline, args.force),
            || draw.then(|| draw_memory_section(self.out, Some(&timeline), &opts)),
        );
        committed?;
        if !args.quiet {
            print_summary(
                &self.summary,
                self.out,
                self.t_restore.as_secs_f64(),
                t2.elapsed().as_secs_f64(),
                true,
            );
            print_cache_line(&self.stats);
        }
        Ok(Committed {
            run_json: self.run_json,
            memory,
        })
    }
}

/// Adds this process's `memory.parquet` and `run.json` to the result files
/// in `tmp` and renames it to `out`; removes `tmp` if that fails.
fn commit_with_memory(
    tmp: &std::path::Path,
    out: &std::path::Path,
    run_json: &serde_json::Value,
    timeline: &MemoryTimeline,
    force: bool,
) -> Result<()> {
    let committed = commit_run_dir(tmp, out, run_json, force, |tmp: &std::path::Path| {
        let path = tmp.join("memory.parquet");
        write_memory_parquet(&path, timeline).map_err(|e| OutputError::Parquet {
            path: path.clone(),
            message: e.to_string(),
        })
    });
    if let Err(e) = committed {
        let _ = std::fs::remove_dir_all(tmp);
        return Err(e.into());
    }
    Ok(())
}

/// The run cache's key: everything that determines the result files
/// (program and layout version, parameters, window, `--strict`, the files
/// written, and the name and content hash of each selected series, in
/// order), never file names or times. (A cached run restores the files of
/// [`Outputs::files`]; `memory.parquet`, this process's timeline, and the
/// report are made anew.)
fn run_cache_key(
    data: &Dataset,
    plan: &RunPlan,
    strategy: &Strategy,
    strict: bool,
    outputs: Outputs,
) -> crate::cache::Key {
    let text = |v: &str| v.as_bytes().to_vec();
    let mut parts: Vec<Vec<u8>> = vec![
        text(env!("CARGO_PKG_VERSION")),
        RUN_FORMAT_VERSION.to_le_bytes().to_vec(),
        text(&serde_json::to_string(strategy).unwrap_or_default()),
        text(&format!(
            "{:?}|{:?}|{:?}|{strict}|{}",
            plan.from,
            plan.to,
            plan.warmup_bars,
            outputs.names()
        )),
    ];
    for &i in &plan.series {
        let s = &data.series()[i];
        parts.push(text(&s.name));
        parts.push(text(&s.bars_hash));
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    crate::cache::run_key(&refs)
}

/// The `run.json` and summary of a run restored into `tmp`, to commit to
/// `out`: `run.json`
/// keeps the result's fields and takes this invocation's (command, time,
/// paths, threads, timings, cache counts). Without `dataset` (a restore
/// that did not open it) the sources stay as recorded, which the
/// restore's key vouches for.
pub(super) fn read_restored<'a>(
    args: &RunArgs,
    dataset: Option<&Dataset>,
    stats: crate::cache::CacheStats,
    (tmp, out): (&'a std::path::Path, &'a std::path::Path),
    threads: usize,
    (t_load, t_restore): (std::time::Duration, std::time::Duration),
) -> Result<Restored<'a>> {
    let mut run_json = crate::report::load::read_json(&tmp.join("run.json"))?;
    let summary = summary_from_dir(tmp, &run_json)?;
    run_json["command"] = serde_json::json!(std::env::args().collect::<Vec<_>>());
    run_json["started_at"] =
        serde_json::json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    run_json["strategy_file"] =
        serde_json::json!(args.strategy.as_ref().map(|p| p.display().to_string()));
    run_json["data"]["path"] = serde_json::json!(args.data.data.display().to_string());
    if let Some(d) = dataset {
        run_json["data"]["sources"] = sources_json(d);
    }
    run_json["threads"] = serde_json::json!(threads);
    run_json["timings_ms"] = serde_json::json!({
        "load": t_load.as_secs_f64() * 1e3,
        "restore": t_restore.as_secs_f64() * 1e3,
    });
    run_json["cache"] = cache_json(&stats);
    Ok(Restored {
        tmp,
        out,
        run_json,
        summary,
        t_restore,
        stats,
    })
}

/// The summary of a complete run directory's `metrics.json` and `run.json`
/// (what the terminal shows; the curves are left empty).
pub(super) fn summary_from_dir(
    dir: &std::path::Path,
    run_json: &serde_json::Value,
) -> Result<RunSummary> {
    use crate::backtest::Metrics;
    let metrics = crate::report::load::read_json(&dir.join("metrics.json"))?;
    let m = |v: &serde_json::Value| -> Result<Metrics> { Ok(serde_json::from_value(v.clone())?) };
    let mut symbols = Vec::new();
    for s in run_json["data"]["series"].as_array().into_iter().flatten() {
        let name = s["symbol"].as_str().unwrap_or_default().to_string();
        symbols.push(crate::run::SymbolSummary {
            metrics: m(&metrics["symbols"][&name])?,
            symbol: name,
            engine_bars: s["engine_bars"].as_u64().unwrap_or(0) as usize,
            window_bars: s["window_bars"].as_u64().unwrap_or(0) as usize,
        });
    }
    let empty = crate::backtest::Curve {
        ts: vec![],
        equity: vec![],
        gross: vec![],
    };
    Ok(RunSummary {
        symbols,
        warnings: serde_json::from_value(run_json["warnings"].clone()).unwrap_or_default(),
        skipped: serde_json::from_value(run_json["skipped"].clone())?,
        portfolio: empty.clone(),
        benchmark: empty,
        portfolio_metrics: m(&metrics["portfolio"])?,
        benchmark_metrics: m(&metrics["benchmark"])?,
        capital_per_symbol: run_json["capital_per_symbol"].as_f64().unwrap_or(f64::NAN),
        engine_bars: run_json["engine_bars"].as_u64().unwrap_or(0) as usize,
    })
}

/// `run.json`'s `cache` object: this process's hits and misses, in all and
/// per kind.
fn cache_json(stats: &crate::cache::CacheStats) -> serde_json::Value {
    let (hits, misses) = cache_counts(stats);
    let kinds: serde_json::Map<String, serde_json::Value> = crate::cache::Kind::ALL
        .iter()
        .zip(&stats.this_run)
        .map(|(k, s)| {
            (
                k.name().to_string(),
                serde_json::json!({"hits": s.hits_l1 + s.hits_l2, "misses": s.misses}),
            )
        })
        .collect();
    serde_json::json!({
        "enabled": stats.enabled,
        "hits": hits,
        "misses": misses,
        "kinds": kinds,
    })
}

/// One line per cached kind this process looked up.
pub(super) fn print_cache_line(stats: &crate::cache::CacheStats) {
    if !stats.enabled {
        return;
    }
    let parts: Vec<String> = crate::cache::Kind::ALL
        .iter()
        .zip(&stats.this_run)
        .filter(|(_, s)| s.hits_l1 + s.hits_l2 + s.misses > 0)
        .map(|(k, s)| {
            let hits = s.hits_l1 + s.hits_l2;
            format!(
                "{k} {hits}/{} hits ({:.0}%)",
                hits + s.misses,
                100.0 * hits as f64 / (hits + s.misses) as f64
            )
        })
        .collect();
    if !parts.is_empty() {
        outln!("cache: {}", parts.join(", "));
    }
}

/// Hits and misses of this process over every cached kind.
pub fn cache_counts(stats: &crate::cache::CacheStats) -> (u64, u64) {
    stats.this_run.iter().fold((0, 0), |(h, m), k| {
        (h + k.hits_l1 + k.hits_l2, m + k.misses)
    })
}

/// blake3 of everything that determines the results (parameters, selection,
/// window, and the content of each selected series), never file names.
pub(super) fn inputs_hash(data: &Dataset, plan: &RunPlan, strategy: &Strategy) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&RUN_FORMAT_VERSION.to_le_bytes());
    h.update(
        serde_json::to_string(strategy)
            .unwrap_or_default()
            .as_bytes(),
    );
    h.update(format!("{:?}|{:?}|{:?}", plan.from, plan.to, plan.warmup_bars).as_bytes());
    for &i in &plan.series {
        let s = &data.series()[i];
        h.update(s.name.as_bytes());
        h.update(s.close_hash.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

fn run_json(
    args: &RunArgs,
    data: &Dataset,
    plan: &RunPlan,
    strategy: &Strategy,
    r: &RunSummary,
    inputs_hash: &str,
    threads: usize,
) -> serde_json::Value {
    let series = data.series();
    let by_name: std::collections::HashMap<&str, &crate::data::SeriesInfo> = plan
        .series
        .iter()
        .map(|&i| (series[i].name.as_str(), &series[i]))
        .collect();
    serde_json::json!({
        "format_version": RUN_FORMAT_VERSION,
        "atc_bt_version": env!("CARGO_PKG_VERSION"),
        "command": std::env::args().collect::<Vec<_>>(),
        "started_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "inputs_hash": inputs_hash,
        "params": strategy,
        "strategy_file": args.strategy.as_ref().map(|p| p.display().to_string()),
        "window": {
            "from": plan.from.map(fmt_ts),
            "to": plan.to.map(fmt_ts),
            "warmup_bars": plan.warmup_bars,
        },
        "data": {
            "path": args.data.data.display().to_string(),
            "store": data.dir().display().to_string(),
            "sources": sources_json(data),
            "series": r.symbols.iter().map(|s| {
                let info = by_name.get(s.symbol.as_str());
                serde_json::json!({
                    "symbol": s.symbol,
                    "close_hash": info.map(|i| i.close_hash.clone()),
                    "engine_bars": s.engine_bars,
                    "window_bars": s.window_bars,
                    "tz": info.and_then(|i| i.tz.clone()),
                    "periods_per_year": s.metrics.periods_per_year,
                })
            }).collect::<Vec<_>>(),
        },
        "skipped": r.skipped,
        "warnings": r.warnings,
        "symbols": r.symbols.len(),
        "capital_per_symbol": r.capital_per_symbol,
        "periods_per_year": r.portfolio_metrics.periods_per_year,
        "periods_per_year_source": periods_source(strategy),
        "risk_free": strategy.metrics.risk_free,
        "engine_bars": r.engine_bars,
        "outputs": args.outputs.names(),
        "threads": threads,
    })
}

/// `run.json`'s `data.sources`: each source file with its size, time and
/// content hash.
fn sources_json(data: &Dataset) -> serde_json::Value {
    serde_json::json!(data
        .sources()
        .iter()
        .map(|s| serde_json::json!({
            "path": s.path, "size": s.size, "mtime_ns": s.mtime_ns, "blake3": s.blake3,
        }))
        .collect::<Vec<_>>())
}

/// `run.json`'s `periods_per_year_source`: `override` (`--periods-per-year`
/// or `[metrics]`) or `inferred`.
pub(super) fn periods_source(strategy: &Strategy) -> &'static str {
    if strategy.metrics.periods_per_year.is_some() {
        "override"
    } else {
        "inferred"
    }
}

/// Prints the result's warnings (mixed bar frequencies) to stderr.
pub(super) fn print_result_warnings(r: &RunSummary) {
    for w in &r.warnings {
        errln!("warning: {w}");
    }
}

fn pct(x: f64) -> String {
    let p = x * 100.0;
    if !p.is_finite() {
        "n/a".into()
    } else if p.abs() >= 1e9 {
        // Absurd but finite (a short in a price that exploded): keep the
        // table readable.
        format!("{p:+.2e}%")
    } else {
        format!("{p:+.2}%")
    }
}

fn money(x: f64) -> String {
    if x.is_finite() && x.abs() >= 1e15 {
        format!("{x:.3e}")
    } else {
        format!("{x:.2}")
    }
}

fn num(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.2}"),
        _ => "n/a".into(),
    }
}

/// The terminal summary. `compute_s + write_s` is the time from the first
/// symbol to the complete directory (engine, backtest and the streamed
/// files), or to the restored one when `restored` (from the run cache).
pub(super) fn print_summary(
    r: &RunSummary,
    out: &std::path::Path,
    compute_s: f64,
    write_s: f64,
    restored: bool,
) {
    let p = &r.portfolio_metrics;
    let b = &r.benchmark_metrics;
    outln!("{:<16} {:>12} {:>12}", "", "ATC", "buy & hold");
    outln!(
        "{:<16} {:>12} {:>12}",
        "total return",
        pct(p.total_return),
        pct(b.total_return)
    );
    outln!(
        "{:<16} {:>12} {:>12}",
        "CAGR",
        pct(p.cagr.unwrap_or(f64::NAN)),
        pct(b.cagr.unwrap_or(f64::NAN))
    );
    outln!(
        "{:<16} {:>12} {:>12}",
        "max drawdown",
        pct(-p.max_drawdown),
        pct(-b.max_drawdown)
    );
    outln!(
        "{:<16} {:>12} {:>12}",
        "sharpe",
        num(p.sharpe),
        num(b.sharpe)
    );
    outln!(
        "{:<16} {:>12} {:>12}",
        "final equity",
        money(p.final_equity),
        money(b.final_equity)
    );
    outln!("{:<16} {:>12}", "trades", p.trades);
    let mut by_ret: Vec<_> = r.symbols.iter().collect();
    by_ret.sort_by(|a, b| b.metrics.total_return.total_cmp(&a.metrics.total_return));
    let k = by_ret.len().min(5);
    if by_ret.len() <= 10 {
        outln!(
            "by return: {}",
            by_ret
                .iter()
                .map(|s| format!(
                    "{} {}",
                    crate::term::quote(&s.symbol),
                    pct(s.metrics.total_return)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        outln!(
            "top:    {}",
            by_ret[..k]
                .iter()
                .map(|s| format!(
                    "{} {}",
                    crate::term::quote(&s.symbol),
                    pct(s.metrics.total_return)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        outln!(
            "bottom: {}",
            by_ret[by_ret.len() - k..]
                .iter()
                .rev()
                .map(|s| format!(
                    "{} {}",
                    crate::term::quote(&s.symbol),
                    pct(s.metrics.total_return)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let skipped = if r.skipped.is_empty() {
        String::new()
    } else {
        format!(", {} skipped", r.skipped.len())
    };
    let total_s = compute_s + write_s;
    if restored {
        outln!(
            "{} symbols ({} engine bars) restored from the run cache in {total_s:.2} s{skipped}",
            r.symbols.len(),
            r.engine_bars,
        );
    } else {
        let rate = r.engine_bars as f64 / total_s.max(1e-9);
        outln!(
            "{} symbols, {} bars through the engine, traded and written in {total_s:.2} s ({:.2}M bars/s){skipped}",
            r.symbols.len(),
            r.engine_bars,
            rate / 1e6,
        );
    }
    outln!("results: {}", out.display());
}
