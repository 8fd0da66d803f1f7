//! `atc-bt compute`: one close series through the engine, every
//! intermediate written as CSV in the golden layout.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::params::AtcArgs;
use atc_bt::engine::{compute, AtcParams, Detail};
use atc_bt::export::write_atc_csv;

/// Arguments of `atc-bt compute`.
#[derive(Debug, Args)]
pub struct ComputeArgs {
    /// Input: a CSV file with a `close` column (other columns are ignored),
    /// or a Parquet file in the long OHLCV format (needs --symbol)
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Output CSV: 179 columns in the golden layout (spec sec. 15). An
    /// existing file is overwritten only with --force (a CSV cannot prove
    /// who wrote it: a reference vector has the same header)
    #[arg(long, value_name = "FILE.csv")]
    pub out: PathBuf,
    /// Overwrite an existing --out
    #[arg(long)]
    pub force: bool,
    /// Symbol to take from a Parquet input
    #[arg(long, value_name = "S")]
    pub symbol: Option<String>,
    #[command(flatten)]
    pub atc: AtcArgs,
}

/// Runs `compute`.
pub fn run(args: &ComputeArgs) -> Result<()> {
    let params = args.atc.apply(AtcParams::default());
    params.validate()?;
    let close = read_close(&args.input, args.symbol.as_deref())?;
    let out = compute(&close, &params, Detail::Full)
        .with_context(|| format!("{}: cannot run the engine", args.input.display()))?;
    atc_bt::files::out::check_file(&args.out, args.force, None)?;
    let written = atc_bt::files::out::write_file(&args.out, |tmp| {
        let file = File::create(tmp)?;
        write_atc_csv(BufWriter::new(file), &close, &out)
    });
    match written {
        Ok(()) => Ok(()),
        Err(atc_bt::files::out::FileWriteError::Write(e)) => {
            Err(e).with_context(|| format!("cannot write {}", args.out.display()))
        }
        Err(atc_bt::files::out::FileWriteError::Out(e)) => Err(e.into()),
    }
}

fn is_parquet(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"))
}

/// Reads the close series from a CSV or Parquet file.
fn read_close(path: &Path, symbol: Option<&str>) -> Result<Vec<f64>> {
    if is_parquet(path) {
        let Some(symbol) = symbol else {
            bail!(
                "{}: a Parquet input holds many symbols; choose one with --symbol",
                path.display()
            );
        };
        return Ok(atc_bt::data::read_symbol_close(path, symbol)?);
    }
    if symbol.is_some() {
        bail!("{}: --symbol only applies to Parquet input", path.display());
    }
    read_close_csv(path)
}

/// Reads a `close` column from CSV, checking every cell: the error names the
/// file, the 1-based line and the problem.
pub fn read_close_csv(path: &Path) -> Result<Vec<f64>> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_path(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    let headers = rdr
        .headers()
        .with_context(|| format!("{}: cannot read the header line", path.display()))?
        .clone();
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        bail!(
            "{}: the file is empty: expected a header line with a `close` column",
            path.display()
        );
    }
    let Some(col) = headers.iter().position(|h| h.eq_ignore_ascii_case("close")) else {
        bail!(
            "{}: no `close` column in the header (found: {})",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let mut close = Vec::new();
    for (row, rec) in rdr.records().enumerate() {
        let line = row + 2;
        let rec = rec.with_context(|| format!("{}: line {line}: malformed CSV", path.display()))?;
        let cell = rec.get(col).unwrap_or("");
        let v: f64 = cell.parse().map_err(|_| {
            anyhow::anyhow!(
                "{}: line {line} (bar {row}): close {cell:?} is not a number",
                path.display()
            )
        })?;
        if !(v.is_finite() && v > 0.0) {
            bail!(
                "{}: line {line} (bar {row}): close is {v}: every close must be finite and > 0",
                path.display()
            );
        }
        close.push(v);
    }
    if close.is_empty() {
        bail!(
            "{}: no data rows after the header: at least one bar is needed",
            path.display()
        );
    }
    Ok(close)
}
