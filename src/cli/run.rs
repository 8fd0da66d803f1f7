//! `atc-bt run`: trade the ATC direction over many symbols.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::cache::CacheFlags;
use super::data::{DataSourceArgs, SelectionArgs};
use super::params::AtcArgs;
use atc_bt::backtest::book::{Allocation, Rebalance};
use atc_bt::backtest::Mode;
use atc_bt::job::run::{
    resolve_strategy, ReportSettings, RunDone, RunOutcome, RunSettings, StrategyOverrides,
};
use atc_bt::job::{self, DataSettings, JobError};
use atc_bt::report::{Format, ReportOptions, SymbolsInReport};
use atc_bt::run::output::Outputs;
use atc_bt::run::RunSummary;

/// Arguments of `atc-bt run`.
#[derive(Debug, Args)]
#[command(after_long_help = format!("{EXECUTION_HELP}\n\n{}\n\n{}", atc_bt::data::INPUT_HELP, super::data::POLICY_HELP))]
pub struct RunArgs {
    #[command(flatten)]
    pub data: DataSourceArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Strategy file (TOML with [atc] and [execution]); flags override it
    /// [default: strategies/atc_default.toml, the spec defaults]
    #[arg(long, value_name = "FILE")]
    pub strategy: Option<PathBuf>,
    /// Trade your own signals instead of the ATC: a Parquet (or .csv)
    /// file of ts, symbol, dir (-1/0/1) and optionally strength (ranks
    /// symbols by |strength|; default dir). A row sets its symbol's dir
    /// from that bar on (a bar without a row holds the previous row; before
    /// the first row, flat); dir[t] is traded at the open of t+1 as the
    /// ATC's is. The traded symbols are the file's within --symbols (a
    /// symbol --symbols names without rows is an error). A run's own
    /// signals.parquet reads back unchanged. See "Your own signals" in the
    /// README
    #[arg(long, value_name = "FILE")]
    pub signals: Option<PathBuf>,
    #[command(flatten)]
    pub atc: AtcArgs,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub allocation: AllocationArgs,
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

    /// The job's report settings for these flags.
    pub fn settings(&self) -> ReportSettings {
        ReportSettings {
            render: !self.no_report,
            options: self.options(),
        }
    }
}

/// Prints where a job's report is, or returns why it failed.
pub fn print_report(
    report: std::result::Result<Option<atc_bt::report::ReportSummary>, JobError>,
    quiet: bool,
) -> Result<()> {
    let summary = report?;
    if !quiet {
        if let Some(html) = summary.and_then(|s| s.html) {
            outln!("report: {}", html.display());
        }
    }
    Ok(())
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
    /// Stop-loss in percent of the entry fill price, 0 < P < 100: a long
    /// exits when a bar's low reaches entry·(1 − P/100), a short when its
    /// high reaches entry·(1 + P/100) (5 = 5%) [default: none]
    #[arg(long, value_name = "PCT", allow_negative_numbers = true)]
    pub stop_loss: Option<f64>,
    /// Take-profit in percent of the entry fill price, P > 0: a long exits
    /// when a bar's high reaches entry·(1 + P/100), a short when its low
    /// reaches entry·(1 − P/100) (10 = 10%) [default: none]
    #[arg(long, value_name = "PCT", allow_negative_numbers = true)]
    pub take_profit: Option<f64>,
    /// Trailing stop in percent, 0 < P < 100: a long exits when a bar's low
    /// reaches (highest high since the entry)·(1 − P/100), a short when its
    /// high reaches (lowest low)·(1 + P/100) [default: none]
    #[arg(long, value_name = "PCT", allow_negative_numbers = true)]
    pub trailing_stop: Option<f64>,
}

/// Allocation flags of `run` (override `[execution]` of the strategy
/// file): how the capital is shared between symbols.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Allocation")]
pub struct AllocationArgs {
    /// equal-split: each symbol trades its own sub-account of capital/N;
    /// shared: one account, entries ranked by ATC strength |avg|, at most
    /// --max-positions held, each 1/N of equity, no leverage (README,
    /// "Shared cash") [default: equal-split]
    #[arg(long, value_name = "equal-split|shared")]
    pub allocation: Option<Allocation>,
    /// Shared cash: hold at most N positions, each targeting 1/N of equity
    /// (unused slots stay in cash) [default: one slot per symbol]
    #[arg(long, value_name = "N")]
    pub max_positions: Option<usize>,
    /// Shared cash: on-change trades only entries and exits (held positions
    /// keep their units); daily, weekly (ISO, Monday) or monthly trade every
    /// held position back to 1/N of equity on the first bar of each UTC
    /// period [default: on-change]
    #[arg(long, value_name = "on-change|daily|weekly|monthly")]
    pub rebalance: Option<Rebalance>,
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
  hold under the same split. Every metric is defined in METRICS.md.

Stops (--stop-loss, --take-profit, --trailing-stop; percent of the entry
  fill price): checked on every bar from the entry bar on against its
  low/high. An open already beyond a level fills at the open; otherwise the
  exit fills at the level (·(1∓slippage), fee as any fill). A stop and a
  target inside one bar: the stop is taken. The trailing level follows the
  best high (short: low) of the bars before the current one and the entry
  price. After a stop exit the symbol re-enters only when its direction
  changes. trades.parquet's exit_reason says stop_loss, take_profit or
  trailing_stop.

Shared cash (--allocation shared):
  One account with --capital. At each open, for the symbols with a bar:
  exits first, then entries ranked by |avg| of the previous close (ties in
  symbol order) while fewer than --max-positions are held and buying power
  (equity − gross) lasts. Each entry targets 1/N of equity at that open
  (N = --max-positions, or the number of symbols), sized down to the
  buying power when less is left (skipped below 1% of the target). No
  leverage at entry (gross ≤ equity after each entry; shorts reserve
  their notional; losing shorts can still push gross above equity). Per-symbol
  rows of equity.parquet hold the position and its market value
  (units·close); the portfolio rows are the account.";

/// The strategy overrides of the ATC, execution and metric flags.
pub fn overrides(atc: &AtcArgs, exec: &ExecArgs, metrics: &MetricArgs) -> StrategyOverrides {
    StrategyOverrides {
        atc: atc.values.clone(),
        mode: exec.mode,
        fee_bps: exec.fee_bps,
        slippage_bps: exec.slippage_bps,
        capital: exec.capital,
        stop_loss: exec.stop_loss,
        take_profit: exec.take_profit,
        trailing_stop: exec.trailing_stop,
        periods_per_year: metrics.periods_per_year,
        risk_free: metrics.risk_free,
        ..StrategyOverrides::default()
    }
}

/// The command line's [`job::Progress`]: a progress bar on a terminal
/// (none with `--quiet` or when stderr is not a terminal), messages to
/// stderr.
pub struct Bar {
    bar: std::sync::Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Bar {
    /// A progress display (`quiet`: no bar; messages still print).
    pub fn new(quiet: bool) -> Bar {
        Bar {
            bar: std::sync::Mutex::new(None),
            quiet,
        }
    }
}

impl job::Progress for Bar {
    fn start(&self, what: &str, len: u64) {
        let pb = ProgressBar::new(len);
        if self.quiet || !std::io::stderr().is_terminal() {
            pb.set_draw_target(ProgressDrawTarget::hidden());
        }
        if let Ok(style) = ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
        )) {
            pb.set_style(style.progress_chars("=> "));
        }
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(pb);
        }
    }
    fn tick(&self) {
        if let Ok(b) = self.bar.lock() {
            if let Some(pb) = b.as_ref() {
                pb.inc(1);
            }
        }
    }
    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(pb) = b.take() {
                pb.finish_and_clear();
            }
        }
    }
    fn message(&self, line: &str) {
        errln!("{line}");
    }
    fn note(&self, line: &str) {
        if !self.quiet {
            errln!("{line}");
        }
    }
}

/// The job's data settings of the data and selection flags.
pub fn data_settings(data: &DataSourceArgs, sel: &SelectionArgs) -> Result<DataSettings> {
    Ok(DataSettings {
        data: data.data.clone(),
        store: data.store.clone(),
        strict: data.strict,
        warmup_bars: sel.warmup_bars,
        ..DataSettings::default()
    }
    .select(&sel.symbols, sel.from.as_deref(), sel.to.as_deref())?)
}

/// Runs `atc-bt run`.
pub fn execute(args: &RunArgs) -> Result<()> {
    let shard = args
        .shard
        .as_deref()
        .map(atc_bt::shard::ShardSpec::from_arg)
        .transpose()?;
    let strategy = resolve_strategy(
        args.strategy.as_deref(),
        &StrategyOverrides {
            allocation: args.allocation.allocation,
            max_positions: args.allocation.max_positions,
            rebalance: args.allocation.rebalance,
            ..overrides(&args.atc, &args.exec, &args.metrics)
        },
    )?;
    let settings = RunSettings {
        data: data_settings(&args.data, &args.selection)?,
        strategy,
        strategy_file: args.strategy.clone(),
        cache: args.cache.settings(),
        report: args.report.settings(),
        out: args.out.clone(),
        outputs: args.outputs,
        force: args.force,
        threads: args.threads.unwrap_or(0),
        shard,
        show_ingest: !args.quiet,
        signals: args.signals.clone(),
    };
    let progress = Bar::new(args.quiet);
    match job::run::run(&settings, &progress)? {
        RunOutcome::Part(p) => {
            if !args.quiet {
                outln!(
                    "shard {}: {} of {} symbols; part: {}",
                    p.spec,
                    p.symbols,
                    p.selection,
                    p.dir.display()
                );
            }
            Ok(())
        }
        RunOutcome::Done(done) => {
            let RunDone {
                out,
                summary,
                restored,
                compute_s,
                write_s,
                cache,
                report,
                ..
            } = *done;
            if !args.quiet {
                print_summary(&summary, &out, compute_s, write_s, restored);
                print_cache_line(&cache);
            }
            print_report(report, args.quiet)
        }
    }
}

/// One line per cached kind this process looked up.
fn print_cache_line(stats: &atc_bt::cache::CacheStats) {
    if !stats.enabled {
        return;
    }
    let parts: Vec<String> = atc_bt::cache::Kind::ALL
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
pub fn print_summary(
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
                    atc_bt::term::quote(&s.symbol),
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
                    atc_bt::term::quote(&s.symbol),
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
                    atc_bt::term::quote(&s.symbol),
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
