//! What the run page and the sweep page share: the [`Writer`] that owns
//! `report_files/` during a render, the memory section, the run details,
//! and small formatters of labels, times and captions.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::charts::{self, Chart, EquityChart, Line, MemoryChart};
use super::html::{self, escape, figure, section};
use super::load::{self, Curve};
use super::memory::MemoryTimeline;
use super::{ReportError, ReportOptions, ReportSummary, ScaleChoice, AUTO_LOG_RATIO, FILES_DIR};

/// Writes one render's files. Each file of `report_files/` is named in
/// the directory's listing *before* it is written (see
/// [`crate::files::out::write_report_listing`]), so a render killed or
/// failed (a full disk) at any moment leaves only listed files there, which
/// the next `run`, `sweep` or `report` recognises as atc-bt's and replaces.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) files: Vec<PathBuf>,
    pub(super) total: u64,
    /// The names the listing holds now.
    pub(super) listed: Vec<String>,
}

impl Writer {
    /// Removes the files the previous render listed; refuses to draw
    /// beside anything else in `report_files/`.
    pub(super) fn new(dir: &Path) -> Result<Writer, ReportError> {
        let files_dir = dir.join(FILES_DIR);
        let foreign =
            crate::files::out::foreign_report_files(dir).map_err(|e| ReportError::Io {
                path: files_dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        if !foreign.is_empty() {
            return Err(ReportError::ForeignFiles {
                path: dir.to_path_buf(),
                entries: foreign,
            });
        }
        let listed = crate::files::out::report_listing(dir);
        for name in listed
            .iter()
            .map(String::as_str)
            .chain([crate::files::out::REPORT_LISTING])
        {
            let path = files_dir.join(name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(ReportError::Io { path, source: e });
                }
                _ => {}
            }
        }
        std::fs::create_dir_all(&files_dir).map_err(|source| ReportError::Io {
            path: files_dir.clone(),
            source,
        })?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            total: 0,
            listed: Vec::new(),
        })
    }

    /// Names `name` in the listing of `report_files/` (before it is
    /// written).
    fn list(&mut self, name: &str) -> Result<(), ReportError> {
        if self.listed.iter().any(|n| n == name) {
            return Ok(());
        }
        self.listed.push(name.to_string());
        let files_dir = self.dir.join(FILES_DIR);
        crate::files::out::write_report_listing(&files_dir, &self.listed).map_err(|source| {
            ReportError::Io {
                path: files_dir.join(crate::files::out::REPORT_LISTING),
                source,
            }
        })
    }

    /// Writes `bytes` at `rel` (relative to the directory).
    pub(super) fn write(&mut self, rel: &str, bytes: &[u8]) -> Result<(), ReportError> {
        let path = self.dir.join(rel);
        let files_dir = self.dir.join(FILES_DIR);
        if path.parent() == Some(files_dir.as_path()) {
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                self.list(name)?;
            }
        }
        // Replace, never rewrite in place: a chart may be a hard link into
        // the run cache (a restored report).
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, bytes).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        self.total += bytes.len() as u64;
        self.files.push(path);
        Ok(())
    }

    pub(super) fn svg(&self, rel: &str, c: &impl Chart) -> Result<String, ReportError> {
        charts::to_svg(c).map_err(|message| ReportError::Chart {
            path: self.dir.join(rel),
            message,
        })
    }

    pub(super) fn png(&mut self, rel: &str, c: &impl Chart) -> Result<(), ReportError> {
        let bytes = charts::to_png(c).map_err(|message| ReportError::Chart {
            path: self.dir.join(rel),
            message,
        })?;
        self.write(rel, &bytes)
    }

    pub(super) fn finish(mut self, html: Option<&str>) -> Result<ReportSummary, ReportError> {
        let mut summary = ReportSummary::default();
        if let Some(h) = html {
            self.write("report.html", h.as_bytes())?;
            summary.html = Some(self.dir.join("report.html"));
            summary.html_bytes = h.len() as u64;
        }
        self.files.sort();
        // The listing that makes these files atc-bt's (and only these).
        let files_dir = self.dir.join(FILES_DIR);
        let names: Vec<String> = self
            .files
            .iter()
            .filter(|p| p.parent() == Some(files_dir.as_path()))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if files_dir.is_dir() {
            crate::files::out::write_report_listing(&files_dir, &names).map_err(|source| {
                ReportError::Io {
                    path: files_dir.join(crate::files::out::REPORT_LISTING),
                    source,
                }
            })?;
        }
        summary.files = self.files;
        summary.total_bytes = self.total;
        Ok(summary)
    }
}

/// The report's label of a metric (the facts table's, else the key).
pub(super) fn metric_label(key: &str) -> String {
    crate::backtest::metric_fact(key).map_or_else(|| key.replace('_', " "), |f| f.label.into())
}

/// A timestamp (µs, UTC) for a table: the date at midnight, else date and
/// time.
pub(super) fn fmt_us(t: i64) -> String {
    chrono::DateTime::from_timestamp_micros(t).map_or_else(String::new, |d| {
        html::fmt_time(&d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    })
}

/// Parses an RFC 3339 time of `metrics.json` to µs.
pub(super) fn parse_time(v: Option<&Value>) -> Option<i64> {
    let s = v?.as_str()?;
    // `data::fmt_ts` writes a day's start as a bare date.
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_micros())
        .ok()
        .or_else(|| {
            let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
            Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
        })
}

/// The caption's note on the equity chart's scale.
pub(super) fn scale_caption(choice: ScaleChoice, eq: &EquityChart) -> String {
    match (choice, eq.log_scale, eq.log_ok()) {
        (_, true, false) => " Log scale requested but an equity value is not positive: drawn linear.".into(),
        (ScaleChoice::Auto, true, true) => format!(
            " Log scale: the curves span more than {AUTO_LOG_RATIO:.0}× (--linear-scale draws them linear)."
        ),
        (ScaleChoice::Auto, false, _) => format!(
            " Linear scale: the curves span less than {AUTO_LOG_RATIO:.0}× or touch zero (--log-scale forces log)."
        ),
        _ => String::new(),
    }
}

pub(super) fn downsample_caption(bars: usize, width: u32) -> String {
    if bars > 4 * width as usize {
        format!(
            "Drawn from {bars} bars downsampled for display to min/max per pixel column ({width} columns): every peak and drawdown stays visible; the Parquet files keep every bar."
        )
    } else {
        format!("{bars} bars, every bar drawn.")
    }
}

pub(super) fn json_str(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return String::new(),
        }
    }
    match cur {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn details_html(meta: &Value) -> String {
    let mut s = String::from("<dl class=\"dl\">\n");
    let command = meta
        .get("command")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(load::label).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let timings = meta
        .get("timings_ms")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    format!(
                        "{k} {}",
                        v.as_f64().map_or("n/a".into(), |x| format!("{x:.1} ms"))
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    for (k, v) in [
        ("atc-bt version", json_str(meta, &["atc_bt_version"])),
        ("format version", json_str(meta, &["format_version"])),
        ("started at", json_str(meta, &["started_at"])),
        ("command", command),
        ("timings", timings),
        ("inputs hash", json_str(meta, &["inputs_hash"])),
        ("window from", json_str(meta, &["window", "from"])),
        ("window to", json_str(meta, &["window", "to"])),
        ("warm-up bars", json_str(meta, &["window", "warmup_bars"])),
        ("data", json_str(meta, &["data", "path"])),
        ("threads", json_str(meta, &["threads"])),
    ] {
        if !v.is_empty() {
            let _ = writeln!(s, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(&v));
        }
    }
    s.push_str("</dl>\n");
    if let Some(src) = meta.pointer("/data/sources").and_then(Value::as_array) {
        s.push_str("<h3>Data sources</h3>\n<div class=\"scroll\"><table><thead><tr><th>path</th><th>bytes</th><th>blake3</th></tr></thead><tbody>\n");
        for x in src {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&json_str(x, &["path"])),
                escape(&json_str(x, &["size"])),
                escape(&json_str(x, &["blake3"]))
            );
        }
        s.push_str("</tbody></table></div>\n");
    }
    for key in ["params", "grid", "base"] {
        if let Some(p) = meta.get(key) {
            let text = serde_json::to_string_pretty(p).unwrap_or_default();
            let _ = writeln!(s, "<h3>{}</h3>\n<pre>{}</pre>", escape(key), escape(&text));
        }
    }
    s
}

pub(super) fn memory_section(
    w: &mut Writer,
    mem: Option<&MemoryTimeline>,
    opts: &ReportOptions,
) -> Result<String, ReportError> {
    let drawn = draw_memory_section(&w.dir, mem, opts)?;
    if let Some(png) = &drawn.png {
        w.write(MEMORY_PNG, png)?;
    }
    Ok(drawn.html)
}

/// `FILES_DIR/memory.png`.
pub(super) const MEMORY_PNG: &str = "report_files/memory.png";

/// The memory section of a run report, drawn in memory: nothing touches
/// the directory, so it can be drawn while the directory is being
/// committed ([`super::finish_run_report`] writes it).
#[derive(Debug, Clone)]
pub struct MemorySection {
    pub(super) html: String,
    pub(super) png: Option<Vec<u8>>,
}

/// Draws the memory section of the timeline `mem` of the directory `dir`
/// (its PNG and its SVG on two threads; `dir` only names the files in
/// errors).
pub fn draw_memory_section(
    dir: &Path,
    mem: Option<&MemoryTimeline>,
    opts: &ReportOptions,
) -> Result<MemorySection, ReportError> {
    let Some(t) = mem.filter(|t| !t.samples.is_empty()) else {
        return Ok(MemorySection {
            html: section(
                "memory",
                "Memory timeline",
                "<p class=\"caption\">No memory.parquet in this directory (the sampler runs on Linux only).</p>\n",
            ),
            png: None,
        });
    };
    let c = MemoryChart {
        timeline: t,
        size: (1200, 380),
    };
    let chart_err = |rel: &str| {
        let path = dir.join(rel);
        move |message| ReportError::Chart { path, message }
    };
    let (png, svg) = rayon::join(
        || {
            opts.format
                .png()
                .then(|| charts::to_png(&c).map_err(chart_err(MEMORY_PNG)))
                .transpose()
        },
        || {
            opts.format
                .html()
                .then(|| charts::to_svg(&c).map_err(chart_err("memory")))
                .transpose()
        },
    );
    let (png, svg) = (png?, svg?);
    let Some(svg) = svg else {
        return Ok(MemorySection {
            html: String::new(),
            png,
        });
    };
    let peak = t.peak().map_or(String::new(), |p| {
        format!(
            " Peak {:.1} MiB at {:.2} s in phase {}; {} samples; last sample: {} bars done, cache {} hits / {} misses.",
            p.rss_bytes as f64 / 1048576.0,
            p.t_ms / 1e3,
            p.phase,
            t.samples.len(),
            t.samples.last().map_or(0, |s| s.bars_done),
            t.samples.last().map_or(0, |s| s.cache_hits),
            t.samples.last().map_or(0, |s| s.cache_misses),
        )
    });
    Ok(MemorySection {
        html: section(
            "memory",
            "Memory timeline",
            &figure(
                &svg,
                &format!("Resident set size sampled at a fixed interval, phases shaded.{peak}"),
            ),
        ),
        png,
    })
}

pub(super) fn curve_line(name: &str, c: &Curve) -> Line {
    Line {
        name: name.to_string(),
        series: load::Series {
            ts: c.ts.clone(),
            values: c.equity.clone(),
        },
        drawdown: crate::run::output::drawdowns(&c.equity),
    }
}
