//! `atc-bt scan`: today's ATC state of every selected symbol (the job is
//! [`atc_bt::job::scan`]; this prints its rows as a table, JSON or CSV).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::cache::CacheFlags;
use super::data::{DataSourceArgs, SelectionArgs};
use super::params::AtcArgs;
use super::run::{data_settings, Bar};
use atc_bt::data::fmt_ts;
use atc_bt::job::run::{resolve_strategy, StrategyOverrides};
use atc_bt::job::scan::{ScanFilter, ScanRow, ScanSettings};

/// Arguments of `atc-bt scan`.
#[derive(Debug, Args)]
#[command(after_long_help = SCAN_HELP)]
pub struct ScanArgs {
    #[command(flatten)]
    pub data: DataSourceArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Strategy file (TOML; only [atc] is used); flags override it
    /// [default: strategies/atc_default.toml, the spec defaults]
    #[arg(long, value_name = "FILE")]
    pub strategy: Option<PathBuf>,
    #[command(flatten)]
    pub atc: AtcArgs,
    #[command(flatten)]
    pub cache: CacheFlags,
    /// Only symbols whose direction is long (dir = 1); with --short, any
    /// non-flat direction
    #[arg(help_heading = "Filters", long)]
    pub long: bool,
    /// Only symbols whose direction is short (dir = -1)
    #[arg(help_heading = "Filters", long)]
    pub short: bool,
    /// Only symbols with |avg| >= X (0..1)
    #[arg(
        help_heading = "Filters",
        long,
        value_name = "X",
        allow_negative_numbers = true
    )]
    pub min_strength: Option<f64>,
    /// Print a JSON array of objects (symbol, ts, avg, dir,
    /// bars_since_change, rank) instead of a table
    #[arg(help_heading = "Output", long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV (header: rank,symbol,ts,avg,dir,bars_since_change)
    /// instead of a table
    #[arg(help_heading = "Output", long)]
    pub csv: bool,
    /// Worker threads [default: all cores]
    #[arg(help_heading = "Output", long, value_name = "N")]
    pub threads: Option<usize>,
    /// No progress bar and no summary line (errors and warnings still print)
    #[arg(help_heading = "Output", long, short)]
    pub quiet: bool,
}

const SCAN_HELP: &str = "\
What a row says:
  For each selected symbol with a bar in the window (--from/--to; default:
  the whole data), at its last bar: ts, the average signal avg in [-1, 1],
  the direction dir (-1, 0, 1; what `run` trades from the next open), the
  bars since dir last changed (0: it changed at that bar), and the rank by
  strength |avg| over every scanned symbol (1 = strongest, ties in symbol
  order; ranked before the filters). The engine sees the same bars as a
  `run` with the same flags (history before --from, limited by
  --warmup-bars), so avg and dir equal the last row of each symbol in that
  run's signals.parquet, and both share the signals cache.

Examples:
  atc-bt scan --data data/ --long --min-strength 0.5
  atc-bt scan --symbols @watchlist.txt --to 2024-06-30 --csv > today.csv";

/// Runs `atc-bt scan`.
pub fn execute(args: &ScanArgs) -> Result<()> {
    if let Some(m) = args.min_strength {
        if !(0.0..=1.0).contains(&m) {
            anyhow::bail!(
                "--min-strength {m}: out of range\n  hint: |avg| is in [0, 1]; give a number from 0 to 1"
            );
        }
    }
    let strategy = resolve_strategy(
        args.strategy.as_deref(),
        &StrategyOverrides {
            atc: args.atc.values.clone(),
            ..StrategyOverrides::default()
        },
    )?;
    let settings = ScanSettings {
        data: data_settings(&args.data, &args.selection)?,
        strategy,
        cache: args.cache.settings(),
        threads: args.threads.unwrap_or(0),
        filter: ScanFilter {
            long: args.long,
            short: args.short,
            min_strength: args.min_strength,
        },
        show_ingest: !args.quiet,
    };
    let progress = Bar::new(args.quiet);
    let done = atc_bt::job::scan::scan(&settings, &progress)?;
    if args.json {
        print_json(&done.rows)?;
    } else if args.csv {
        print_csv(&done.rows)?;
    } else {
        print_table(&done.rows);
        if !args.quiet {
            errln!(
                "{} of {} symbols shown{}",
                done.rows.len(),
                done.scanned,
                if done.skipped.is_empty() {
                    String::new()
                } else {
                    format!(", {} skipped", done.skipped.len())
                }
            );
        }
    }
    Ok(())
}

/// The value of `avg` as printed: enough digits to read it back exactly.
fn avg_text(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "NaN".into()
    }
}

fn print_table(rows: &[ScanRow]) {
    let names: Vec<String> = rows
        .iter()
        .map(|r| atc_bt::term::quote(&r.symbol).into_owned())
        .collect();
    let w = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    outln!(
        "{:>5}  {:<w$}  {:<20}  {:>8}  {:>3}  {:>6}",
        "rank",
        "symbol",
        "ts",
        "avg",
        "dir",
        "since"
    );
    for (r, name) in rows.iter().zip(&names) {
        if atc_bt::term::stdout_closed() {
            return;
        }
        let pad = w - name.chars().count();
        outln!(
            "{:>5}  {name}{:pad$}  {:<20}  {:>8.4}  {:>3}  {:>6}",
            r.rank,
            "",
            fmt_ts(r.ts),
            r.avg,
            r.dir,
            r.bars_since_change
        );
    }
}

fn print_json(rows: &[ScanRow]) -> Result<()> {
    let v: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "symbol": r.symbol,
                "ts": fmt_ts(r.ts),
                "avg": if r.avg.is_finite() { serde_json::json!(r.avg) } else { serde_json::Value::Null },
                "dir": r.dir,
                "bars_since_change": r.bars_since_change,
                "rank": r.rank,
            })
        })
        .collect();
    outln!(
        "{}",
        atc_bt::term::json_safe(&serde_json::to_string_pretty(&v)?)
    );
    Ok(())
}

fn print_csv(rows: &[ScanRow]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["rank", "symbol", "ts", "avg", "dir", "bars_since_change"])?;
    for r in rows {
        w.write_record([
            r.rank.to_string(),
            r.symbol.clone(),
            fmt_ts(r.ts),
            avg_text(r.avg),
            r.dir.to_string(),
            r.bars_since_change.to_string(),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    // A file or a pipe gets the names as they are (quoted by the CSV
    // writer), so two names never print the same; a terminal gets them
    // escaped, line by line.
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        atc_bt::term::out_raw(&bytes);
        return Ok(());
    }
    let text = String::from_utf8_lossy(&bytes);
    for line in text.lines() {
        if atc_bt::term::stdout_closed() {
            break;
        }
        outln!("{line}");
    }
    Ok(())
}
