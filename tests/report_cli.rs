//! Reports checked as a user would: render a known run and sweep, check the
//! files (PNG signature and size, every referenced file exists, numbers
//! equal metrics.json, markup in symbol names escaped), regenerate
//! byte-identically, run `atc-bt report`, and screenshot the page in
//! headless Chromium when it is installed.

mod report_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use assert_cmd::Command as Cmd;
use atc_bt::report::{
    render_report, render_run_report, Format, ReportOptions, ScaleChoice, SymbolsInReport,
};
use report_support::{write_run_dir, write_sweep_dir, SYMBOLS};

fn opts(format: Format, n: SymbolsInReport) -> ReportOptions {
    ReportOptions {
        format,
        symbols_in_report: n,
        scale: ScaleChoice::Auto,
    }
}

fn small_run(dir: &Path) {
    let symbols: Vec<String> = SYMBOLS.iter().map(|s| s.to_string()).collect();
    write_run_dir(dir, &symbols, 800, true);
}

/// Every `src="…"` / `href="…"` of the page that is a local file.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            let r = &rest[..end];
            if !r.starts_with('#') && !r.starts_with("http") {
                out.push(r.replace("&amp;", "&"));
            }
            rest = &rest[end..];
        }
    }
    out
}

fn check_png(path: &Path) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
    assert!(w >= 600 && h >= 100, "{}: {w}x{h}", path.display());
    assert!(
        b.len() > 5_000,
        "{}: only {} bytes",
        path.display(),
        b.len()
    );
}

fn all_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    out.insert(
        PathBuf::from("report.html"),
        std::fs::read(dir.join("report.html")).unwrap_or_default(),
    );
    for e in std::fs::read_dir(dir.join("report_files")).unwrap() {
        let p = e.unwrap().path();
        out.insert(
            p.strip_prefix(dir).unwrap().to_path_buf(),
            std::fs::read(&p).unwrap(),
        );
    }
    out
}

#[test]
fn run_report_files_are_complete_escaped_and_match_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    small_run(&dir);
    let s = render_run_report(&dir, &opts(Format::Both, SymbolsInReport::Top(1))).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(s.html_bytes as usize, html.len());

    // PNGs: equity, returns, memory and one per chosen symbol.
    let pngs: Vec<&PathBuf> = s
        .files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    assert!(pngs.len() >= 5, "{pngs:?}");
    for p in &pngs {
        check_png(p);
    }
    for name in ["equity.png", "returns.png", "memory.png"] {
        assert!(dir.join("report_files").join(name).exists(), "{name}");
    }

    // Every referenced file exists.
    let refs = references(&html);
    assert!(refs.iter().any(|r| r.ends_with(".svg")), "{refs:?}");
    for r in &refs {
        assert!(dir.join(r).is_file(), "report.html references missing {r}");
    }

    // Markup in a symbol name is text.
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("CC&amp;D"));
    assert!(html.contains("data/&lt;odd &amp; name&gt;.parquet"));
    assert_eq!(
        html.matches("<script>").count(),
        1,
        "only the page's own sort script"
    );

    // Numbers equal metrics.json: exact in data-v, and as displayed.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (k, v) in m["portfolio"].as_object().unwrap() {
        if v.is_object() || v.is_array() {
            // Tables (per year, drawdowns) have their own sections.
            continue;
        }
        let row_start = html
            .find(&format!("<tr data-metric=\"{k}\">"))
            .unwrap_or_else(|| panic!("no row for {k}"));
        let row = &html[row_start..row_start + html[row_start..].find("</tr>").unwrap()];
        match v.as_f64() {
            Some(x) => {
                let shown = format!(
                    "data-v=\"{}\"",
                    serde_json::Number::from_f64(x).map_or(v.to_string(), |n| n.to_string())
                );
                assert!(
                    row.contains(&shown) || row.contains(&format!("data-v=\"{v}\"")),
                    "{k}: {row}"
                );
                let disp = atc_bt::report::html::fmt_metric(k, x);
                assert!(
                    row.contains(&format!(">{disp}</td>")),
                    "{k}: {disp} not in {row}"
                );
                // Units and thousands separators go; drawdowns are shown
                // negative.
                let num = disp
                    .trim_end_matches('%')
                    .trim_end_matches(" bars")
                    .trim_end_matches(" days")
                    .replace(',', "");
                let parsed: f64 = num.parse().unwrap_or_else(|_| panic!("{k}: {disp}"));
                let sign = if atc_bt::report::html::is_drawdown(k) {
                    -1.0
                } else {
                    1.0
                };
                let scale = sign * if disp.ends_with('%') { 100.0 } else { 1.0 };
                // Half a unit of the last digit shown.
                let tol = if num.contains('e') {
                    1e-3 * parsed.abs()
                } else {
                    0.5 * 10f64.powi(-(num.split('.').nth(1).map_or(0, str::len) as i32)) + 1e-12
                };
                assert!(
                    (parsed - x * scale).abs() <= tol,
                    "{k}: shown {disp}, value {x}"
                );
                checked += 1;
            }
            None => assert!(row.contains("n/a"), "{k}: null must show n/a"),
        }
    }
    assert!(checked >= 8);
    // Benchmark column too.
    let bret = m["benchmark"]["total_return"].as_f64().unwrap();
    assert!(html.contains(&format!("data-v=\"{}\"", m["benchmark"]["total_return"])));
    assert!(html.contains(&atc_bt::report::html::fmt_metric("total_return", bret)));
    // Per-symbol table has every symbol.
    for sym in SYMBOLS {
        assert!(html.contains(&atc_bt::report::html::escape(sym)));
    }
    assert!(html.contains("min/max per pixel column") || html.contains("every bar drawn"));
}

#[test]
fn regeneration_is_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    small_run(&dir);
    let o = opts(Format::Both, SymbolsInReport::Top(2));
    render_run_report(&dir, &o).unwrap();
    let first = all_files(&dir);
    // A stale chart from an older render (listed by it) must not survive.
    std::fs::write(dir.join("report_files/stale.svg"), "x").unwrap();
    let listing = dir.join("report_files/files.json");
    let mut l: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&listing).unwrap()).unwrap();
    l["files"].as_array_mut().unwrap().push("stale.svg".into());
    std::fs::write(&listing, serde_json::to_vec(&l).unwrap()).unwrap();
    render_run_report(&dir, &o).unwrap();
    let second = all_files(&dir);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (k, v) in &first {
        assert!(v == &second[k], "{} differs between renders", k.display());
    }

    let sdir = tmp.path().join("sweep");
    write_sweep_dir(&sdir);
    render_report(&sdir, &o).unwrap();
    let a = all_files(&sdir);
    render_report(&sdir, &o).unwrap();
    assert_eq!(a, all_files(&sdir));
}

#[test]
fn missing_close_column_degrades_gracefully() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    write_run_dir(&dir, &["X".to_string(), "Y".to_string()], 300, false);
    let s = render_run_report(&dir, &opts(Format::Both, SymbolsInReport::All)).unwrap();
    let chart = s
        .files
        .iter()
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("sym-0001-X-") && n.ends_with(".svg")
        })
        .expect("the chart of X");
    let svg = std::fs::read_to_string(chart).unwrap();
    assert!(svg.contains("close prices not recorded"));
}

#[test]
fn bad_format_version_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    small_run(&dir);
    let p = dir.join("run.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["format_version"] = serde_json::json!(99);
    v["atc_bt_version"] = serde_json::json!("9.9.9");
    std::fs::write(&p, v.to_string()).unwrap();
    let e = render_report(&dir, &ReportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("run.json") && e.contains("format_version 99") && e.contains("9.9.9"),
        "{e}"
    );

    Cmd::cargo_bin("atc-bt")
        .unwrap()
        .args(["report", dir.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("format_version 99"))
        .stderr(predicates::str::contains("panicked").not());

    // Corrupt metrics.json: an error naming the file, not a panic.
    v["format_version"] = serde_json::json!(2);
    std::fs::write(&p, v.to_string()).unwrap();
    std::fs::write(dir.join("metrics.json"), "{not json").unwrap();
    let e = render_report(&dir, &ReportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("metrics.json"), "{e}");

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = render_report(&empty, &ReportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a run or sweep directory"), "{e}");
}

use predicates::prelude::PredicateBooleanExt;

#[test]
fn cli_report_regenerates_run_and_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    small_run(&dir);
    Cmd::cargo_bin("atc-bt")
        .unwrap()
        .args([
            "report",
            dir.to_str().unwrap(),
            "--format",
            "html",
            "--symbols-in-report",
            "all",
            "--log-scale",
        ])
        .assert()
        .success()
        .stdout(predicates::str::contains("report.html"));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("(log scale)"));
    assert_eq!(html.matches("<figure><a href=").count(), SYMBOLS.len());
    assert!(
        !dir.join("report_files/equity.png").exists(),
        "--format html writes no PNG"
    );

    let sdir = tmp.path().join("sweep");
    write_sweep_dir(&sdir);
    Cmd::cargo_bin("atc-bt")
        .unwrap()
        .args(["report", sdir.to_str().unwrap(), "--format", "both"])
        .assert()
        .success();
    let html = std::fs::read_to_string(sdir.join("report.html")).unwrap();
    // One heatmap per cutout value and per sample (full, in, out).
    assert_eq!(html.matches("cutout = ").count(), 6, "heatmap titles");
    assert!(html.contains("id=\"top-table\""));
    assert!(html.contains("Best combination"));
    for r in references(&html) {
        assert!(sdir.join(&r).is_file(), "{r}");
    }
    let pngs = std::fs::read_dir(sdir.join("report_files"))
        .unwrap()
        .count();
    assert!(
        pngs >= 7,
        "{pngs} PNG files: 6 heatmaps and the best equity"
    );
    check_png(&sdir.join("report_files/best_equity.png"));

    Cmd::cargo_bin("atc-bt")
        .unwrap()
        .args([
            "report",
            dir.to_str().unwrap(),
            "--symbols-in-report",
            "many",
        ])
        .assert()
        .code(2);
}

/// Headless Chromium screenshots of the run, split sweep and walk-forward
/// sweep pages, kept in `target/report-screenshots/` for a person to look
/// at.
#[test]
fn chromium_screenshot() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(chromium) = chromium else {
        eprintln!("SKIPPED chromium_screenshot: no /usr/bin/chromium (install it with `apt-get install -y chromium`)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report-screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    // The rendered directories stay in target/ so a person can open them.
    let run = out_dir.join("run");
    let sweep = out_dir.join("sweep");
    let wf = out_dir.join("walk-forward");
    for d in [&run, &sweep, &wf] {
        if d.exists() {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
    small_run(&run);
    render_run_report(&run, &opts(Format::Both, SymbolsInReport::Top(1))).unwrap();
    write_sweep_dir(&sweep);
    render_report(&sweep, &opts(Format::Both, SymbolsInReport::Top(5))).unwrap();
    report_support::write_walk_forward_dir(&wf, 5);
    render_report(&wf, &opts(Format::Both, SymbolsInReport::Top(5))).unwrap();
    for (name, dir) in [("run", &run), ("sweep", &sweep), ("walk-forward", &wf)] {
        let shot = out_dir.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        let t = Instant::now();
        // Bounded: a hung browser must not hang the test suite.
        let mut cmd = if Path::new("/usr/bin/timeout").exists() {
            let mut c = Command::new("/usr/bin/timeout");
            c.args(["120", chromium]);
            c
        } else {
            Command::new(chromium)
        };
        let status = cmd
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                &format!(
                    "--user-data-dir={}",
                    tmp.path().join("chromium-profile").display()
                ),
                &format!("--screenshot={}", shot.display()),
                &format!(
                    "--window-size=1400,{}",
                    if name == "run" { 7200 } else { 4600 }
                ),
                &format!("file://{}", dir.join("report.html").display()),
            ])
            .output()
            .unwrap();
        assert!(
            shot.exists(),
            "no screenshot: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        check_png(&shot);
        eprintln!(
            "screenshot {} in {:.2} s",
            shot.display(),
            t.elapsed().as_secs_f64()
        );
    }
}

/// The large-run measurement (issue 9): a synthetic run of
/// `ATC_BT_REPORT_SYMBOLS` × `ATC_BT_REPORT_BARS` (default 1,000 × 100,000)
/// rendered in full; prints page size and render time. Run with
/// `cargo test --release --test report_cli -- --ignored large_run --nocapture`.
#[test]
#[ignore]
fn large_run_page_size_and_render_time() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, bars) = (
        env("ATC_BT_REPORT_SYMBOLS", 1000),
        env("ATC_BT_REPORT_BARS", 100_000),
    );
    let base = std::env::var("ATC_BT_REPORT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let dir = base.join(format!("atc-bt-large-{n}x{bars}"));
    if !dir.join("run.json").exists() {
        let t = Instant::now();
        let symbols: Vec<String> = (0..n).map(|i| format!("SYM{i:04}")).collect();
        write_run_dir(&dir, &symbols, bars, true);
        eprintln!(
            "fixture {n} x {bars} written in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    let s = render_run_report(&dir, &opts(Format::Both, SymbolsInReport::Top(5))).unwrap();
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "large run {n} symbols x {bars} bars: render {secs:.2} s, report.html {:.1} KiB, {} files, {:.1} MiB in all, peak RSS {:?} MiB, dir {}",
        s.html_bytes as f64 / 1024.0,
        s.files.len(),
        s.total_bytes as f64 / 1048576.0,
        atc_bt::job::memory::peak_rss_bytes().map(|b| b / 1048576),
        dir.display()
    );
    assert!(s.html_bytes < 5 * 1024 * 1024, "page must stay a few MB");
}

/// The texts of an SVG's `<text>` elements, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("</text>")
        .filter_map(|t| {
            let i = t.rfind("<text")?;
            let t = &t[i..];
            Some(t[t.find('>')? + 1..].trim().to_string())
        })
        .collect()
}

/// The `<section id=…>` of `html`, from its start to its end.
fn section_of<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id} section"));
    let end = start + html[start..].find("</section>").unwrap();
    &html[start..end]
}

/// The text of every cell of the row of `table` whose first cell holds
/// `first` (tags stripped).
fn row_cells(table: &str, marker: &str) -> Vec<String> {
    let start = table
        .find(marker)
        .unwrap_or_else(|| panic!("no row {marker}"));
    let row = &table[start..start + table[start..].find("</tr>").unwrap()];
    row.split("<td")
        .skip(1)
        .map(|c| {
            let text = &c[c.find('>').unwrap() + 1..];
            text.split('<').next().unwrap().to_string()
        })
        .collect()
}

#[test]
fn run_report_sections_have_stable_anchors_and_trader_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    small_run(&dir);
    render_run_report(&dir, &opts(Format::Both, SymbolsInReport::Top(1))).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    let p = &m["portfolio"];

    // Every section has its anchor and a link from the top of the page.
    for id in [
        "equity",
        "statistics",
        "drawdowns",
        "returns",
        "yearly",
        "coverage",
        "symbols",
        "trades",
        "per-symbol",
        "memory",
        "details",
    ] {
        section_of(&html, id);
        assert!(
            html.contains(&format!("<a href=\"#{id}\">")),
            "no link to #{id}"
        );
    }

    // Statistics: labels from the facts table, counts as integers,
    // durations with units, money grouped, drawdowns negative.
    let stats = section_of(&html, "statistics");
    // Cell 0 is the label, 1 the portfolio, 2 buy & hold.
    let cells = |k: &str| row_cells(stats, &format!("<tr data-metric=\"{k}\">"));
    let trades = p["trades"].as_u64().unwrap();
    assert_eq!(cells("trades")[1], trades.to_string(), "trades");
    assert_eq!(cells("trades")[2], "0", "buy & hold trades");
    assert_eq!(cells("open_trades")[1], "4");
    assert_eq!(cells("bars")[1], "800 bars");
    assert_eq!(cells("days")[1], "799 days");
    assert_eq!(cells("max_drawdown_duration_days")[1], "12.5 days");
    assert!(
        cells("final_equity")[1].contains(','),
        "{:?}",
        cells("final_equity")
    );
    assert!(
        cells("max_drawdown")[1].starts_with('-'),
        "{:?}",
        cells("max_drawdown")
    );
    assert_eq!(cells("max_drawdown")[0], "Max drawdown");
    for k in ["trades", "open_trades", "bars", "days"] {
        assert!(!cells(k)[1].contains('.'), "{k}: {:?}", cells(k));
    }
    // The key figure has the chart's sign.
    let kpi = &html[html.find("data-metric=\"max_drawdown\" data-v=").unwrap()..];
    assert!(kpi[kpi.find("<b>").unwrap() + 3..].starts_with('-'));

    // #drawdowns: the five deepest with dates, depth and length.
    let dd = section_of(&html, "drawdowns");
    let rows = dd.matches("<tr><td>").count();
    assert_eq!(rows, p["worst_drawdowns"].as_array().unwrap().len().min(5));
    assert!(rows >= 1);
    let first = row_cells(dd, "<tr><td>1</td>");
    assert_eq!(first.len(), 7, "{first:?}");
    for c in &first[1..3] {
        assert_eq!(c.len(), 10, "a date: {c}");
        assert!(!c.contains('T'));
    }
    assert!(
        first[4].starts_with('-') && first[4].ends_with('%'),
        "{first:?}"
    );
    assert!(
        first[5].ends_with(" bars") && first[6].ends_with(" days"),
        "{first:?}"
    );

    // #yearly: every year, portfolio and buy & hold.
    let yearly = section_of(&html, "yearly");
    for y in ["2020", "2021", "2022"] {
        let c = row_cells(yearly, &format!("<tr data-year=\"{y}\">"));
        assert_eq!(c.len(), 4, "{c:?}");
        let want = atc_bt::report::html::fmt_metric(
            "total_return",
            p["yearly_returns"][y].as_f64().unwrap(),
        );
        assert_eq!(c[1], want);
        assert!(c[2].ends_with('%') && c[3].ends_with('%'));
    }
    // The monthly heatmap has a year column.
    assert!(svg_texts(section_of(&html, "returns")).contains(&"Year".to_string()));

    // #coverage: every symbol covers the window in this run.
    let cov = section_of(&html, "coverage");
    assert!(cov.contains("4 of 4 cover the whole window"), "{cov}");
    assert!(cov.contains("First to last bar of each symbol"));

    // #trades: the charted symbols' trades, sortable, with formats.
    let trades = section_of(&html, "trades");
    assert!(trades.contains("<table id=\"trades-table\" class=\"sortable\">"));
    let rows = trades.matches("<tr><td>").count();
    assert!(rows > 3, "{rows} trades");
    assert!(trades.contains(&format!("{rows} trades of the 2 charted symbols")));
    // Per-symbol table headers are labels.
    let ps = section_of(&html, "per-symbol");
    assert!(ps.contains(">Total return</th>") && ps.contains(">Win rate</th>"));
    // The symbol charts: a trade return scatter, calendar ticks.
    let svg_name = std::fs::read_dir(dir.join("report_files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("sym-") && n.ends_with(".svg"))
        .unwrap();
    let svg = std::fs::read_to_string(dir.join("report_files").join(svg_name)).unwrap();
    assert!(svg.contains("Return of each trade at its exit"));
    let texts = svg_texts(&svg);
    for want in ["Jan 2020", "Apr 2020", "Jan 2021"] {
        assert!(
            texts.contains(&want.to_string()),
            "calendar ticks: {texts:?}"
        );
    }
    // The memory axis reads in seconds with enough decimals: 0 to 2 s.
    let texts = svg_texts(section_of(&html, "memory"));
    for want in ["0.0", "0.2", "1.8"] {
        assert!(texts.contains(&want.to_string()), "seconds: {texts:?}");
    }
}

#[test]
fn coverage_shows_which_symbols_had_data_when() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    small_run(&dir);
    // Stagger the symbols' histories as a bundled many-decade run has them.
    let mp = dir.join("metrics.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mp).unwrap()).unwrap();
    let day = report_support::DAY;
    for (k, (_, v)) in m["symbols"].as_object_mut().unwrap().iter_mut().enumerate() {
        let from = report_support::T0 + (k as i64) * 200 * day;
        v["start"] = serde_json::json!(report_support::rfc3339(from));
    }
    std::fs::write(&mp, m.to_string()).unwrap();
    render_run_report(&dir, &opts(Format::Both, SymbolsInReport::Top(1))).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let cov = section_of(&html, "coverage");
    assert!(cov.contains("1 of 4 cover the whole window"), "{cov}");
    // Bars 0..199: 1 symbol, 200..399: 2, 400..599: 3, 600..799: 4; the
    // median bar (400) has 3 of 4 symbols, 75% of the capital.
    assert!(
        cov.contains("At the median bar 3 symbols had data, so 75%"),
        "{cov}"
    );
    assert!(dir.join("report_files/coverage.png").is_file());
}

#[test]
fn sweep_heatmaps_have_a_colour_bar_one_precision_and_a_neutral_scale() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    write_sweep_dir(&dir);
    render_report(&dir, &opts(Format::Both, SymbolsInReport::Top(5))).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let heat = section_of(&html, "heatmaps");
    assert!(heat.contains("Ranking metric: Sharpe"));
    let svgs: Vec<&str> = heat.split("<svg").skip(1).collect();
    assert_eq!(svgs.len(), 6);
    for svg in &svgs {
        // 15 cells, the colour bar's 64 steps and its frame.
        assert!(svg.matches("<rect").count() >= 15 + 64, "no colour bar");
        // Every number printed (cells and colour bar) has two decimals.
        let texts = svg_texts(svg);
        let axis = ["0.01", "0.02", "0.03", "0.04", "0.05"];
        let numbers: Vec<&String> = texts
            .iter()
            .filter(|t| {
                t.parse::<f64>().is_ok()
                    && !axis.contains(&t.as_str())
                    && t.as_str() != "0"
                    && t.as_str() != "10"
            })
            .collect();
        assert!(numbers.len() >= 3, "{texts:?}");
        for text in numbers {
            assert_eq!(text.split('.').nth(1).map_or(0, str::len), 2, "{text}");
        }
    }
    assert!(heat.contains("colour bar"));
    assert!(!heat.contains("share nearly one colour"));
    // The best cell is outlined (three red frames) on each sample's
    // heatmap of its cutout.
    assert_eq!(
        heat.matches("fill=\"none\" stroke=\"#C4342C\"").count(),
        3 * 3,
        "best cell outline"
    );

    // Sharpe 1.890 to 1.901: nearly one colour, said in the caption.
    for s in ["full", "in", "out"] {
        let p = dir.join(format!("heatmap_{s}.json"));
        let mut h: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let n = h["values"].as_array().unwrap().len();
        h["values"] = serde_json::json!((0..n)
            .map(|i| 1.890 + 0.011 * i as f64 / (n - 1) as f64)
            .collect::<Vec<f64>>());
        std::fs::write(&p, h.to_string()).unwrap();
    }
    render_report(&dir, &opts(Format::Html, SymbolsInReport::Top(5))).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let heat = section_of(&html, "heatmaps");
    assert!(heat.contains("share nearly one colour"), "{heat}");
    assert!(heat.contains("in (1.89 to 1.90)"), "{heat}");
    // One precision for the page: 1.90, never 1.9.
    let texts = svg_texts(heat);
    assert!(texts.contains(&"1.90".to_string()) && !texts.contains(&"1.9".to_string()));
}

#[test]
fn walk_forward_section_lists_every_fold() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wf");
    report_support::write_walk_forward_dir(&dir, 4);
    let o = opts(Format::Both, SymbolsInReport::Top(5));
    render_report(&dir, &o).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let wf = section_of(&html, "walk-forward");
    assert!(html.contains("<a href=\"#walk-forward\">"));
    for k in 0..4 {
        let c = row_cells(wf, &format!("<tr data-fold=\"{k}\">"));
        // fold, train, test, combination, lambda, decay, cutout, 2 × sharpe,
        // return, buy & hold.
        assert_eq!(c.len(), 11, "{c:?}");
        assert_eq!(c[0], k.to_string());
        // Windows as days: the training window ends on the day before the
        // test window starts.
        let day = |i: i64| {
            chrono::DateTime::from_timestamp_micros(report_support::T0 + i * report_support::DAY)
                .unwrap()
                .format("%Y-%m-%d")
                .to_string()
        };
        let (train, test) = (k as i64 * 180, k as i64 * 180 + 360);
        assert_eq!(c[1], format!("{} to {}", day(train), day(test - 1)));
        // The test window is known even for a fold that chose nothing.
        assert_eq!(c[2], format!("{} to {}", day(test), day(test + 179)));
        if k == 1 {
            assert_eq!(c[3], "none");
            assert_eq!(c[7], "n/a");
        } else {
            assert_eq!(c[3], (k * 3).to_string());
            assert_eq!(
                c[4],
                atc_bt::report::html::fmt_compact(0.01 * (k as f64 + 1.0), 6)
            );
            assert!(c[9].ends_with('%'), "{c:?}");
        }
    }
    assert!(!wf.contains("data-fold=\"4\""));
    assert!(
        wf.contains("4 folds (train 1 year, test 6 months, step 6 months)"),
        "{wf}"
    );
    assert!(wf.contains("Walk-forward: chained out-of-sample equity vs buy &amp; hold"));
    assert!(dir.join("report_files/walk_forward_equity.png").is_file());
    // Regenerates byte-identically.
    let a = all_files(&dir);
    render_report(&dir, &o).unwrap();
    assert_eq!(a, all_files(&dir));
    // A sweep without walk-forward has no such section.
    let plain = tmp.path().join("plain");
    write_sweep_dir(&plain);
    render_report(&plain, &o).unwrap();
    let html = std::fs::read_to_string(plain.join("report.html")).unwrap();
    assert!(!html.contains("id=\"walk-forward\""));
    // The split sweep's best equity marks the split.
    assert!(html.contains("The dashed line marks the split at 2021-01-01"));
}

#[test]
fn equity_scale_is_chosen_from_the_curves_unless_forced() {
    use atc_bt::report::ScaleChoice;
    assert!(ScaleChoice::Auto.resolve(&[100.0, 1500.0]));
    assert!(!ScaleChoice::Auto.resolve(&[100.0, 900.0]));
    assert!(!ScaleChoice::Auto.resolve(&[-1.0, 1500.0]));
    assert!(!ScaleChoice::Linear.resolve(&[100.0, 1e6]));
    assert!(ScaleChoice::Log.resolve(&[100.0, 101.0]));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    small_run(&dir);
    let run = |args: &[&str]| {
        Cmd::cargo_bin("atc-bt")
            .unwrap()
            .args(["report", dir.to_str().unwrap(), "--format", "html"])
            .args(args)
            .assert()
    };
    run(&[]).success();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("Linear scale: the curves span less than 10×"));
    run(&["--log-scale"]).success();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("(log scale)"));
    run(&["--linear-scale"]).success();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(!html.contains("(log scale)") && !html.contains("Linear scale:"));
    run(&["--log-scale", "--linear-scale"])
        .code(2)
        .stderr(predicates::str::contains("cannot be used with"));
}
