//! `atc-bt report DIR`: regenerate the report of a saved run or sweep.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};

use atc_bt::report::{render_report, Format, ReportOptions, ScaleChoice, SymbolsInReport};

/// Output format of `atc-bt report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// report.html with inline SVG charts.
    Html,
    /// PNG charts only.
    Png,
    /// Both.
    Both,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Html => Format::Html,
            FormatArg::Png => Format::Png,
            FormatArg::Both => Format::Both,
        }
    }
}

/// Parses `--symbols-in-report`: a number N (best and worst N) or `all`.
pub fn parse_symbols_in_report(s: &str) -> Result<SymbolsInReport, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(SymbolsInReport::All);
    }
    s.parse::<usize>()
        .map(SymbolsInReport::Top)
        .map_err(|_| format!("`{s}` is neither a number nor `all`"))
}

/// The equity scale of `--log-scale` / `--linear-scale` (neither: chosen
/// from the curves).
pub fn scale_choice(log: bool, linear: bool) -> ScaleChoice {
    match (log, linear) {
        (true, _) => ScaleChoice::Log,
        (_, true) => ScaleChoice::Linear,
        _ => ScaleChoice::Auto,
    }
}

/// Arguments of `atc-bt report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A directory written by `atc-bt run` or `atc-bt sweep`. Only the
    /// files in it are read; nothing is recomputed. The same directory
    /// always renders to the same bytes.
    pub dir: PathBuf,

    /// What to write: report.html (charts as inline SVG), PNG files in
    /// DIR/report_files/, or both.
    #[arg(long, value_enum, default_value = "both")]
    pub format: FormatArg,

    /// Symbols with their own chart: the best and worst N by total return,
    /// or `all`.
    #[arg(long, value_name = "N|all", default_value = "5", value_parser = parse_symbols_in_report)]
    pub symbols_in_report: SymbolsInReport,

    /// Draw equity curves on a log scale [default: log when a chart's
    /// curves span more than 10×, else linear].
    #[arg(long, conflicts_with = "linear_scale")]
    pub log_scale: bool,

    /// Draw equity curves on a linear scale, however far they span.
    #[arg(long)]
    pub linear_scale: bool,

    /// Print nothing on success.
    #[arg(long, short)]
    pub quiet: bool,
}

impl ReportArgs {
    /// The library options these arguments stand for.
    pub fn options(&self) -> ReportOptions {
        ReportOptions {
            format: self.format.into(),
            symbols_in_report: self.symbols_in_report,
            scale: scale_choice(self.log_scale, self.linear_scale),
        }
    }
}

/// Runs `atc-bt report`.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let t = Instant::now();
    // Not while a job commits into this directory or draws its report.
    let _turn = atc_bt::files::out::lock_out(
        &std::fs::canonicalize(&args.dir).unwrap_or_else(|_| args.dir.clone()),
    );
    let summary = render_report(&args.dir, &args.options())
        .with_context(|| format!("cannot render the report of {}", args.dir.display()))?;
    if !args.quiet {
        let secs = t.elapsed().as_secs_f64();
        match &summary.html {
            Some(h) => outln!(
                "report: {} ({:.1} KiB; {} files, {:.1} MiB in all; rendered in {secs:.2} s)",
                h.display(),
                summary.html_bytes as f64 / 1024.0,
                summary.files.len(),
                summary.total_bytes as f64 / 1048576.0
            ),
            None => outln!(
                "report: {} files in {} ({:.1} MiB; rendered in {secs:.2} s)",
                summary.files.len(),
                args.dir.join(atc_bt::report::FILES_DIR).display(),
                summary.total_bytes as f64 / 1048576.0
            ),
        }
    }
    Ok(())
}
