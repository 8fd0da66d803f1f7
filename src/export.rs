//! Engine output in the golden CSV layout (spec sec. 15): 179 columns,
//! `bar, close, R, ma.*, sig.*, eq.*, L1.*, eq2.*, avg, dir`, floats in
//! shortest round-trip form, na as an empty field.

use std::io::{self, Write};

use crate::engine::{AtcOutput, Family, LENGTHS_PER_FAMILY};

/// The 179 column names in order.
pub fn atc_columns() -> Vec<String> {
    let mut cols = vec!["bar".to_string(), "close".into(), "R".into()];
    for prefix in ["ma", "sig", "eq"] {
        for f in Family::ALL {
            for k in 0..LENGTHS_PER_FAMILY {
                cols.push(format!("{prefix}.{}.{k}", f.name()));
            }
        }
    }
    for prefix in ["L1", "eq2"] {
        for f in Family::ALL {
            cols.push(format!("{prefix}.{}", f.name()));
        }
    }
    cols.push("avg".into());
    cols.push("dir".into());
    cols
}

/// Whether `path` is a CSV written by [`write_atc_csv`]: its first line is
/// exactly the header of [`atc_columns`].
pub fn is_atc_csv(path: &std::path::Path) -> bool {
    use std::io::{BufRead, BufReader, Read};
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut first = String::new();
    if BufReader::new(f)
        .take(1 << 16)
        .read_line(&mut first)
        .is_err()
    {
        return false;
    }
    first.trim_end_matches(['\n', '\r']) == atc_columns().join(",")
}

/// Writes `v` so that parsing it gives the same f64 (Rust's `Display` is
/// shortest round-trip); NaN becomes the empty field.
fn put_f64(buf: &mut String, v: f64) {
    use std::fmt::Write as _;
    if !v.is_nan() {
        let _ = write!(buf, "{v}");
    }
}

/// Writes the full engine output (computed with `Detail::Full`) as CSV.
///
/// Fails with `InvalidInput` if `out` lacks the per-MA columns.
pub fn write_atc_csv<W: Write>(mut w: W, close: &[f64], out: &AtcOutput) -> io::Result<()> {
    use std::fmt::Write as _;
    if out.ma.len() != 54 || out.sig.len() != 54 || out.eq.len() != 54 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "engine output lacks per-MA columns (compute with Detail::Full)",
        ));
    }
    writeln!(w, "{}", atc_columns().join(","))?;
    let mut line = String::with_capacity(4096);
    for i in 0..close.len() {
        line.clear();
        let _ = write!(line, "{i},");
        put_f64(&mut line, close[i]);
        line.push(',');
        put_f64(&mut line, out.r[i]);
        for col in &out.ma {
            line.push(',');
            put_f64(&mut line, col[i]);
        }
        for col in &out.sig {
            let _ = write!(line, ",{}", col[i]);
        }
        for col in out.eq.iter().chain(&out.l1).chain(&out.eq2) {
            line.push(',');
            put_f64(&mut line, col[i]);
        }
        line.push(',');
        put_f64(&mut line, out.avg[i]);
        let _ = writeln!(line, ",{}", out.dir[i]);
        w.write_all(line.as_bytes())?;
    }
    w.flush()
}
