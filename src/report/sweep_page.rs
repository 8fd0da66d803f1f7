//! The sweep page: `report.html` and the charts of a sweep directory
//! (ranking, heatmaps per sample, the best combination's equity and the
//! walk-forward folds).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::charts::{self, CellFormat, EquityChart, GridChart};
use super::html::{self, escape, figure, section};
use super::load::{self, SweepData};
use super::page::*;
use super::{ReportError, ReportOptions, ReportSummary, SymbolsInReport, FILES_DIR};

/// Parameter columns of `results.parquet` (not metrics), as the sweep writes them.
use crate::sweep::output::PARAM_COLUMNS;

/// Metrics where smaller is better (the facts table's direction).
fn lower_is_better(metric: &str) -> bool {
    crate::sweep::output::lower_is_better(metric)
}

/// Heatmaps of one sample: x = lambda, y = decay (or the first axes), one
/// panel per value combination of the other axes (cutout, …).
fn sweep_heatmaps(
    h: &load::HeatmapFile,
    best: Option<&BTreeMap<String, String>>,
    cells: CellFormat,
) -> Vec<GridChart> {
    // One colour scale for every panel of the sample.
    let range = {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in h.values.iter().flatten().filter(|v| v.is_finite()) {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
        (lo <= hi).then_some((lo, hi))
    };
    let n = h.axes.len();
    if n == 0 {
        return Vec::new();
    }
    let find = |name: &str| h.axes.iter().position(|a| a.0 == name);
    let xi = find("lambda").unwrap_or(0);
    let yi = find("decay")
        .filter(|&i| i != xi)
        .or_else(|| (0..n).find(|&i| i != xi));
    let others: Vec<usize> = (0..n).filter(|&i| i != xi && Some(i) != yi).collect();
    let strides: Vec<usize> = (0..n)
        .map(|i| h.axes[i + 1..].iter().map(|a| a.1.len()).product())
        .collect();
    let other_count: usize = others.iter().map(|&i| h.axes[i].1.len()).product();
    let mut out = Vec::new();
    for k in 0..other_count.min(48) {
        let mut rem = k;
        let mut fixed = vec![0usize; n];
        for &i in others.iter().rev() {
            let len = h.axes[i].1.len().max(1);
            fixed[i] = rem % len;
            rem /= len;
        }
        let xs = &h.axes[xi].1;
        let ys: Vec<String> = yi.map_or(vec![String::new()], |i| h.axes[i].1.clone());
        let mut values = Vec::new();
        let mut highlight = None;
        for (r, _) in ys.iter().enumerate() {
            let mut row = Vec::new();
            for (c, _) in xs.iter().enumerate() {
                let mut idx = fixed.clone();
                idx[xi] = c;
                if let Some(i) = yi {
                    idx[i] = r;
                }
                let flat: usize = idx.iter().zip(&strides).map(|(a, b)| a * b).sum();
                row.push(h.values.get(flat).copied().flatten());
                if let Some(b) = best {
                    let is_best = (0..n).all(|a| {
                        b.get(&h.axes[a].0)
                            .is_some_and(|v| same_label(v, &h.axes[a].1[idx[a]]))
                    });
                    if is_best {
                        highlight = Some((r, c));
                    }
                }
            }
            values.push(row);
        }
        let fixed_text: Vec<String> = others
            .iter()
            .map(|&i| {
                format!(
                    "{} = {}",
                    h.axes[i].0,
                    h.axes[i].1.get(fixed[i]).cloned().unwrap_or_default()
                )
            })
            .collect();
        let label = metric_label(&h.metric);
        let title = if fixed_text.is_empty() {
            format!("{label} ({} sample)", h.sample)
        } else {
            format!("{label} ({} sample), {}", h.sample, fixed_text.join(", "))
        };
        let height = (90 + 30 * ys.len() as u32).clamp(160, 900);
        out.push(GridChart {
            title,
            x_labels: xs.clone(),
            y_labels: ys,
            x_name: h.axes[xi].0.clone(),
            y_name: yi.map_or(String::new(), |i| h.axes[i].0.clone()),
            values,
            diverging: false,
            lower_is_better: lower_is_better(&h.metric),
            cells,
            range,
            total_column: false,
            highlight,
            size: (640, height),
        });
    }
    out
}

/// A fold's `train` or `test` window `(from, to)` in µs, as
/// `walk_forward.json` writes it (`{"from", "to"}`).
fn fold_window(f: &Value, which: &str) -> (Option<i64>, Option<i64>) {
    let w = f.get(which);
    let get = |k: &str| parse_time(w.and_then(|w| w.get(k)));
    (get("from"), get("to"))
}

/// A window bound as a day when it is a day's start or its last second
/// (`2020-12-31T23:59:59Z` → `2020-12-31`), else date and time.
fn fmt_window_day(t: i64) -> String {
    let day = 86_400_000_000i64;
    let into = t.rem_euclid(day);
    if into >= day - 1_000_000 {
        fmt_us(t - into)
    } else {
        fmt_us(t)
    }
}

/// `#walk-forward` of a sweep run with `--walk-forward`: each fold's
/// training and test windows, the combination chosen on the training
/// window (its number and the grid's parameters), the ranking metric in
/// and out of sample, the test window's return beside buy & hold, and the
/// chained out-of-sample equity against buy & hold. Empty without
/// `walk_forward.json`.
fn walk_forward_section(
    w: &mut Writer,
    dir: &Path,
    axes: &[String],
    opts: &ReportOptions,
) -> Result<String, ReportError> {
    let Some(wf) = load::read_walk_forward(dir)? else {
        return Ok(String::new());
    };
    let j = &wf.json;
    let metric = json_str(j, &["rank_by"]);
    let label = metric_label(&metric);
    let folds = j
        .get("folds")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let starts: Vec<(i64, String)> = folds
        .iter()
        .enumerate()
        .filter_map(|(k, f)| Some((fold_window(f, "test").0?, k.to_string())))
        .collect();
    let mut html_out = String::new();
    if !wf.curve.ts.is_empty() {
        let values = wf.curve.equity.iter().chain(&wf.benchmark.equity);
        let eq = EquityChart {
            title: "Walk-forward: chained out-of-sample equity vs buy & hold".into(),
            strategy: curve_line("Out of sample (chained folds)", &wf.curve),
            benchmark: (!wf.benchmark.ts.is_empty())
                .then(|| curve_line("Buy & hold (same windows)", &wf.benchmark)),
            log_scale: opts.scale.resolve(values),
            markers: starts,
            size: (1200, 620),
        };
        if opts.format.png() {
            w.png(&format!("{FILES_DIR}/walk_forward_equity.png"), &eq)?;
        }
        if opts.format.html() {
            let svg = w.svg("walk_forward_equity", &eq)?;
            let mut cap = downsample_caption(wf.curve.ts.len(), 1200);
            cap.push_str(" Each fold's test window is traded with the combination chosen on its training window; the dashed lines mark where each test window starts (fold number at the top); each window starts from the previous one's final equity.");
            cap.push_str(&scale_caption(opts.scale, &eq));
            html_out.push_str(&figure(&svg, &cap));
        }
    }
    if !opts.format.html() {
        return Ok(String::new());
    }
    let num = |v: Option<&Value>, m: &str| html::metric_cell(m, v.filter(|x| x.is_number()));
    let mut t = String::from("<div class=\"hscroll\"><table id=\"walk-forward-folds\" class=\"sortable\"><thead><tr><th>fold</th><th>train</th><th>test</th><th>combination</th>");
    for a in axes {
        let _ = write!(t, "<th>{}</th>", escape(a));
    }
    let _ = writeln!(
        t,
        "<th title=\"{0}\">{1} (train)</th><th title=\"{0}\">{1} (test)</th><th>return (test)</th><th>buy &amp; hold (test)</th></tr></thead><tbody>",
        escape(&metric),
        escape(&label)
    );
    let window = |f: &Value, w: &str| {
        let (from, to) = fold_window(f, w);
        let show = |t: Option<i64>| t.map_or("?".to_string(), fmt_window_day);
        format!(
            "<td data-v=\"{}\">{} to {}</td>",
            from.map_or(String::new(), |t| t.to_string()),
            escape(&show(from)),
            escape(&show(to))
        )
    };
    for (k, f) in folds.iter().enumerate() {
        let _ = write!(
            t,
            "<tr data-fold=\"{k}\"><td data-v=\"{k}\">{k}</td>{}{}",
            window(f, "train"),
            window(f, "test")
        );
        match f.get("best_combo").and_then(Value::as_u64) {
            Some(c) => {
                let _ = write!(t, "<td data-v=\"{c}\">{c}</td>");
            }
            None => t.push_str("<td class=\"na\" data-v=\"\">none</td>"),
        }
        for a in axes {
            match f.get("params").and_then(|p| p.get(a)) {
                Some(Value::Number(n)) => {
                    let x = n.as_f64().unwrap_or(f64::NAN);
                    let _ = write!(t, "<td data-v=\"{n}\">{}</td>", html::fmt_compact(x, 6));
                }
                Some(Value::String(v)) => {
                    let _ = write!(t, "<td>{}</td>", escape(v));
                }
                _ => t.push_str("<td class=\"na\" data-v=\"\">n/a</td>"),
            }
        }
        let test = f.get("test_metrics");
        t.push_str(&num(f.get("train_metric"), &metric));
        t.push_str(&num(test.and_then(|m| m.get(&metric)), &metric));
        t.push_str(&num(
            test.and_then(|m| m.get("total_return")),
            "total_return",
        ));
        t.push_str(&num(
            test.and_then(|m| m.get("benchmark_return")),
            "total_return",
        ));
        t.push_str("</tr>\n");
    }
    t.push_str("</tbody></table></div>\n");
    let oos = j.get("out_of_sample");
    let bench = j.get("benchmark");
    let get = |m: Option<&Value>, k: &str| {
        m.and_then(|m| m.get(k))
            .and_then(Value::as_f64)
            .map_or("n/a".to_string(), |x| html::fmt_metric(k, x))
    };
    let spec = |k: &str| {
        j.pointer(&format!("/spec/{k}"))
            .map(|v| match v {
                Value::Object(o) => o
                    .iter()
                    .map(|(unit, n)| {
                        let unit = unit.to_lowercase();
                        let one = n.as_u64() == Some(1);
                        format!(
                            "{} {}",
                            load::label(n),
                            if one {
                                unit.trim_end_matches('s')
                            } else {
                                &unit
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                other => load::label(other),
            })
            .unwrap_or_default()
    };
    let _ = writeln!(
        t,
        "<p class=\"caption\">{} folds (train {}, test {}, step {}); in each, the combination with the best {} on the training window trades the test window. \
         Out of sample, chained: total return {} (buy &amp; hold {}), {} {} ({}), max drawdown {} ({}).</p>",
        folds.len(),
        escape(&spec("train")),
        escape(&spec("test")),
        escape(&spec("step")),
        escape(&label),
        get(oos, "total_return"),
        get(bench, "total_return"),
        escape(&label),
        get(oos, &metric),
        get(bench, &metric),
        get(oos, "max_drawdown"),
        get(bench, "max_drawdown"),
    );
    html_out.push_str(&t);
    Ok(section("walk-forward", "Walk-forward", &html_out))
}

/// Whether two parameter labels name the same value (`0` and `0.0` do).
fn same_label(a: &str, b: &str) -> bool {
    a == b || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
}

/// Renders the report of a sweep directory.
pub fn render_sweep_report(dir: &Path, opts: &ReportOptions) -> Result<ReportSummary, ReportError> {
    let data: SweepData = load::load_sweep(dir, &PARAM_COLUMNS)?;
    let mut w = Writer::new(dir)?;
    let mut body = String::new();
    let rank_by = json_str(&data.sweep, &["rank_by"]);
    let ranked_on = {
        let s = json_str(&data.sweep, &["ranked_on_sample"]);
        if s.is_empty() {
            "full".to_string()
        } else {
            s
        }
    };
    let axes: Vec<String> = data
        .heatmaps
        .first()
        .map(|h| h.axes.iter().map(|a| a.0.clone()).collect())
        .unwrap_or_default();
    // Best combination's parameter values, as axis labels.
    let best_combo = data.sweep.pointer("/best/combo").and_then(Value::as_u64);
    let best_labels: Option<BTreeMap<String, String>> = best_combo.and_then(|b| {
        let row = data.rows.iter().find(|r| r.combo == b)?;
        Some(
            axes.iter()
                .map(|a| {
                    let v = row
                        .strs
                        .get(a)
                        .cloned()
                        .or_else(|| {
                            row.nums
                                .get(a)
                                .copied()
                                .flatten()
                                .map(|x| load::label(&serde_json::json!(x)))
                        })
                        .unwrap_or_default();
                    (a.clone(), v)
                })
                .collect(),
        )
    });

    // Heatmaps: one number format for the page, one colour scale per sample.
    let cells = if html::is_percent(&rank_by) {
        CellFormat::Percent {
            decimals: 1,
            negate: html::is_drawdown(&rank_by),
        }
    } else {
        CellFormat::for_values(
            data.heatmaps
                .iter()
                .flat_map(|h| h.values.iter().flatten().copied()),
        )
    };
    let mut figs = String::new();
    let mut compressed: Vec<String> = Vec::new();
    for h in &data.heatmaps {
        let panels = sweep_heatmaps(h, best_labels.as_ref(), cells);
        if let Some((lo, hi)) = panels.first().and_then(|c| c.range) {
            if charts::scale_range(lo, hi).2 {
                compressed.push(format!(
                    "{} ({} to {})",
                    h.sample,
                    cells.text(lo),
                    cells.text(hi)
                ));
            }
        }
        for (k, c) in panels.iter().enumerate() {
            let stem = format!(
                "heatmap-{}-{:02}",
                h.sample.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
                k + 1
            );
            if opts.format.png() {
                w.png(&format!("{FILES_DIR}/{stem}.png"), c)?;
            }
            if opts.format.html() {
                let svg = w.svg(&stem, c)?;
                figs.push_str(&figure(&svg, ""));
            }
        }
    }
    if opts.format.html() {
        let mut cap = format!(
            "Each cell is the portfolio's {} for one combination; brighter is better, on one colour scale per sample (the colour bar at the right gives its values). The best combination (ranked on the {} sample) is outlined in red; grey cells have no value.",
            escape(&metric_label(&rank_by)),
            escape(&ranked_on)
        );
        if !compressed.is_empty() {
            let _ = write!(
                cap,
                " Values that differ by less than {:.0}% of their size share nearly one colour (the scale spans at least that much), so a negligible spread does not look like sensitivity: {}.",
                charts::MIN_RELATIVE_SPAN * 100.0,
                escape(&compressed.join("; "))
            );
        }
        body.push_str(&section(
            "heatmaps",
            &format!("Ranking metric: {}", metric_label(&rank_by)),
            &format!("<div class=\"grid2\">\n{figs}</div>\n<p class=\"caption\">{cap}</p>\n"),
        ));
    }

    // Top-N table.
    if opts.format.html() {
        let top = match opts.symbols_in_report {
            SymbolsInReport::All => usize::MAX,
            SymbolsInReport::Top(n) => n.max(20),
        };
        let ranking: Vec<u64> = data
            .sweep
            .get("ranking")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let samples: Vec<String> = data.heatmaps.iter().map(|h| h.sample.clone()).collect();
        let by: BTreeMap<(u64, &str), &load::ComboRow> = data
            .rows
            .iter()
            .map(|r| ((r.combo, r.sample.as_str()), r))
            .collect();
        let extra: Vec<&str> = ["total_return", "sharpe", "max_drawdown", "trades"]
            .into_iter()
            .filter(|m| *m != rank_by && data.metric_columns.iter().any(|c| c == m))
            .collect();
        let mut t = String::from("<div class=\"scroll\"><table id=\"top-table\" class=\"sortable\"><thead><tr><th>rank</th><th>combination</th>");
        for a in &axes {
            let _ = write!(t, "<th>{}</th>", escape(a));
        }
        for s in &samples {
            let _ = write!(
                t,
                "<th title=\"{}\">{} ({})</th>",
                escape(&rank_by),
                escape(&metric_label(&rank_by)),
                escape(s)
            );
        }
        for m in &extra {
            let _ = write!(
                t,
                "<th title=\"{m}\">{} ({})</th>",
                escape(&metric_label(m)),
                escape(&ranked_on)
            );
        }
        t.push_str("</tr></thead><tbody>\n");
        for (i, combo) in ranking.iter().take(top).enumerate() {
            let Some(row) = by.get(&(*combo, ranked_on.as_str())) else {
                continue;
            };
            let _ = write!(
                t,
                "<tr><td data-v=\"{}\">{}</td><td data-v=\"{combo}\">{combo}</td>",
                i + 1,
                i + 1
            );
            for a in &axes {
                match (row.strs.get(a), row.nums.get(a).copied().flatten()) {
                    (Some(s), _) => {
                        let _ = write!(t, "<td>{}</td>", escape(s));
                    }
                    (None, Some(x)) => {
                        let _ = write!(
                            t,
                            "<td data-v=\"{}\">{}</td>",
                            serde_json::json!(x),
                            html::fmt_compact(x, 6)
                        );
                    }
                    _ => t.push_str("<td class=\"na\">n/a</td>"),
                }
            }
            for s in &samples {
                let v = by
                    .get(&(*combo, s.as_str()))
                    .and_then(|r| r.nums.get(&rank_by).copied().flatten())
                    .map(|x| serde_json::json!(x));
                t.push_str(&html::metric_cell(&rank_by, v.as_ref()));
            }
            for m in &extra {
                let v = row
                    .nums
                    .get(*m)
                    .copied()
                    .flatten()
                    .map(|x| serde_json::json!(x));
                t.push_str(&html::metric_cell(m, v.as_ref()));
            }
            t.push_str("</tr>\n");
        }
        t.push_str(&format!(
            "</tbody></table></div>\n<p class=\"caption\">Portfolio rows of results.parquet, ranked by {} on the {} sample. Click a column to sort.</p>\n",
            escape(&rank_by),
            escape(&ranked_on)
        ));
        body.push_str(&section("top", "Top combinations", &t));
    }

    // Best equity.
    if !data.best.ts.is_empty() {
        let split = parse_time(data.sweep.get("split"));
        let values = data.best.equity.iter().chain(&data.benchmark.equity);
        let eq = EquityChart {
            title: format!(
                "Best combination{} vs buy & hold",
                best_combo.map_or(String::new(), |b| format!(" (#{b})"))
            ),
            strategy: curve_line("Best combination", &data.best),
            benchmark: (!data.benchmark.ts.is_empty())
                .then(|| curve_line("Buy & hold", &data.benchmark)),
            log_scale: opts.scale.resolve(values),
            markers: split
                .map(|t| vec![(t, "in sample | out of sample".to_string())])
                .unwrap_or_default(),
            size: (1200, 620),
        };
        if opts.format.png() {
            w.png(&format!("{FILES_DIR}/best_equity.png"), &eq)?;
        }
        if opts.format.html() {
            let svg = w.svg("best_equity", &eq)?;
            let mut cap = downsample_caption(data.best.ts.len(), 1200);
            if let Some(t) = split {
                let _ = write!(cap, " The dashed line marks the split at {}: the combination was chosen on the bars before it.", fmt_us(t));
            }
            cap.push_str(&scale_caption(opts.scale, &eq));
            body.push_str(&section("best", "Best combination", &figure(&svg, &cap)));
        }
    }
    body.push_str(&walk_forward_section(&mut w, dir, &axes, opts)?);
    body.push_str(&memory_section(&mut w, data.memory.as_ref(), opts)?);
    if opts.format.html() {
        body.push_str(&section(
            "details",
            "Sweep details",
            &details_html(&data.sweep),
        ));
    }
    let html = opts.format.html().then(|| {
        let subtitle = format!(
            "{} combinations · ranked by {} on the {} sample · atc-bt {}",
            json_str(&data.sweep, &["combinations"]),
            rank_by,
            ranked_on,
            json_str(&data.sweep, &["atc_bt_version"]),
        );
        html::page("ATC sweep report", &subtitle, &body)
    });
    w.finish(html.as_deref())
}
