//! The HTML template: one self-contained page (inline CSS, inline SVG, a few
//! lines of plain JavaScript to sort tables; no CDN, no web fonts), so it
//! opens offline and can be mailed as is.
//!
//! Everything that comes from data or the command line goes through
//! [`escape`]: a symbol named `<script>` shows as text. Numbers are printed
//! with fixed rules (no locale, no clock), so regenerating a report gives
//! the same bytes.

use std::fmt::Write as _;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    // Control and invisible characters shown visibly (`\u{7}`), as on the
    // terminal: raw they would be invalid in the page's text.
    let s = crate::term::escape(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Metrics shown as percentages (fractions in `metrics.json`): the facts
/// table's fractions and drawdowns ([`MetricFact::is_percent`]).
///
/// [`MetricFact::is_percent`]: crate::backtest::facts::MetricFact::is_percent
pub fn is_percent(metric: &str) -> bool {
    crate::backtest::metric_fact(metric).is_some_and(|f| f.is_percent())
}

/// Whether `metric` is a drawdown: stored positive, shown negative (as the
/// drawdown chart draws it).
pub fn is_drawdown(metric: &str) -> bool {
    crate::backtest::metric_fact(metric)
        .is_some_and(|f| f.unit == crate::backtest::facts::Unit::Drawdown)
}

/// A number for display, by the unit of `metric` in the facts table (one
/// place for every table, key figure and heatmap of the report):
///
/// | unit | shown as |
/// |---|---|
/// | fraction | `12.35%` |
/// | drawdown | `-12.35%` (stored positive; negative like the chart) |
/// | ratio | `1.235` |
/// | currency | `12,345.67` |
/// | bars | `42 bars`, `12.5 bars` |
/// | days | `1,871 days`, `12.3 days` |
/// | count, integer | `12` |
/// | per year | `252`, `365.25` |
///
/// Non-finite values show `n/a`; extreme ones switch to scientific
/// notation. Keys the table does not know print as plain numbers.
pub fn fmt_metric(metric: &str, v: f64) -> String {
    use crate::backtest::facts::{Kind, Unit};
    if !v.is_finite() {
        return "n/a".into();
    }
    let Some(f) = crate::backtest::metric_fact(metric) else {
        return fmt_num(v);
    };
    let pct = |fraction: f64| {
        let p = fraction * 100.0;
        if p.abs() >= 1e6 {
            format!("{p:.3e}%")
        } else {
            fmt_pct(fraction, 2)
        }
    };
    match f.unit {
        Unit::Fraction => pct(v),
        Unit::Drawdown => pct(-v),
        Unit::Bars => format!("{} bars", fmt_duration(v)),
        Unit::Days => format!("{} days", fmt_duration(v)),
        _ if f.kind == Kind::Int => fmt_count(v),
        Unit::Count => fmt_count(v),
        Unit::PerYear => fmt_compact(v, 2),
        Unit::Currency => fmt_money(v),
        Unit::Ratio | Unit::Timestamp | Unit::Table => {
            // Fixed precision, so a column of ratios lines up; only absurd
            // magnitudes switch to scientific notation.
            if v.abs() >= 1e7 {
                format!("{v:.3e}")
            } else {
                fmt_compact_fixed(v, 3)
            }
        }
    }
}

/// `v` with `decimals` decimals, never `-0.000`.
fn fmt_compact_fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// A whole number with thousands separators (`1,871`); fractional values
/// keep one decimal.
fn fmt_count(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        group_thousands(&format!("{v:.0}"))
    } else {
        fmt_num(v)
    }
}

/// A duration: whole numbers as integers, else one decimal.
fn fmt_duration(v: f64) -> String {
    if v.abs() >= 1e15 {
        format!("{v:.3e}")
    } else if v == v.trunc() {
        group_thousands(&format!("{v:.0}"))
    } else {
        group_thousands(&fmt_compact_fixed(v, 1))
    }
}

/// Money: two decimals with thousands separators (`12,345.67`).
pub fn fmt_money(v: f64) -> String {
    if v.abs() >= 1e15 {
        return format!("{v:.3e}");
    }
    group_thousands(&fmt_compact_fixed(v, 2))
}

/// Inserts `,` every three digits of the integer part of a plain decimal.
fn group_thousands(s: &str) -> String {
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", s),
    };
    let (int, frac) = match rest.find('.') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !int.bytes().all(|b| b.is_ascii_digit()) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + int.len() / 3);
    out.push_str(sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str(frac);
    out
}

/// A date or time of `metrics.json` (RFC 3339, UTC) for a table: the date
/// alone at midnight (`2020-03-23`), else date and time
/// (`2020-03-23 14:30`); anything else as written.
pub fn fmt_time(s: &str) -> String {
    let Some(t) = chrono::DateTime::parse_from_rfc3339(s).ok() else {
        return s.to_string();
    };
    let t = t.with_timezone(&chrono::Utc);
    if t.format("%H:%M:%S").to_string() == "00:00:00" {
        t.format("%Y-%m-%d").to_string()
    } else if t.format("%S").to_string() == "00" {
        t.format("%Y-%m-%d %H:%M").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// An axis tick label: compact, with k/M/G suffixes for large values
/// (`20000000` → `20M`).
pub fn fmt_axis(v: f64) -> String {
    let a = v.abs();
    if a >= 1e12 {
        format!("{v:.2e}")
    } else if a >= 1e9 {
        format!("{}G", fmt_compact(v / 1e9, 2))
    } else if a >= 1e6 {
        format!("{}M", fmt_compact(v / 1e6, 2))
    } else if a >= 1e4 {
        format!("{}k", fmt_compact(v / 1e3, 1))
    } else if a != 0.0 && a < 1e-3 {
        // Log axes spanning many decades: not a column of "0".
        format!("{v:.0e}")
    } else {
        fmt_compact(v, 4)
    }
}

/// A percentage with `decimals` decimals; never `-0.0%`.
pub fn fmt_pct(fraction: f64, decimals: usize) -> String {
    let s = format!("{:.decimals$}", fraction * 100.0);
    let s = if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    };
    format!("{s}%")
}

/// A short number for parameters and heatmap cells: at most `decimals`
/// decimals, trailing zeros dropped (`0.0300` → `0.03`).
pub fn fmt_compact(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// A plain number for display (deterministic, no locale).
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let a = v.abs();
    if !(1e-3..1e7).contains(&a) {
        format!("{v:.3e}")
    } else if a >= 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// The exact value of a JSON number as written in the JSON file, for the
/// `data-v` attribute (sorting and machine checks); empty for null.
pub fn data_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// A table cell for a JSON metric value.
pub fn metric_cell(metric: &str, v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            let negative = if is_drawdown(metric) {
                f > 0.0
            } else {
                f < 0.0
            };
            let cls = if is_percent(metric) && negative {
                " class=\"neg\""
            } else {
                ""
            };
            format!(
                "<td data-v=\"{}\"{cls}>{}</td>",
                escape(&n.to_string()),
                fmt_metric(metric, f)
            )
        }
        Some(serde_json::Value::String(s)) => {
            format!("<td data-v=\"{}\">{}</td>", escape(s), escape(&fmt_time(s)))
        }
        _ => "<td class=\"na\" data-v=\"\">n/a</td>".into(),
    }
}

const CSS: &str = r#"
:root{--fg:#1d2330;--mut:#5b6475;--line:#dfe3ea;--bg:#f6f7fa;--card:#fff;--acc:#1f5fbf}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
header{background:#1d2330;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px;font-size:22px;font-weight:600}
header p{margin:0;color:#c4cad6}
main{max-width:1320px;margin:0 auto;padding:20px 32px 40px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:16px 20px;margin:0 0 20px}
h2{font-size:17px;margin:0 0 10px}
h3{font-size:14px;margin:14px 0 6px}
.caption{color:var(--mut);font-size:12px;margin:6px 0 0}
figure{margin:0}
figure svg,figure img{width:100%;height:auto;display:block}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px}
.kpis{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 20px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:150px}
.kpi b{display:block;font-size:20px}
.kpi span{color:var(--mut);font-size:12px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead th{position:sticky;top:0;background:#eef1f6;font-weight:600}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[data-dir=asc]::after{content:" \25B2"}
table.sortable th[data-dir=desc]::after{content:" \25BC"}
.scroll{max-height:640px;overflow:auto;border:1px solid var(--line)}
.hscroll{overflow-x:auto}
.scroll td:first-child{max-width:320px;overflow:hidden;text-overflow:ellipsis}
nav.toc{display:flex;flex-wrap:wrap;gap:4px 14px;margin:0 0 16px;font-size:13px}
nav.toc a{text-decoration:none}
td.neg{color:#b3261e}
td.na{color:#9aa1ad}
pre{background:#f1f3f7;padding:10px;overflow:auto;font-size:12px;margin:0}
a{color:var(--acc)}
.small{font-size:12px}
.dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px}
.dl dt{color:var(--mut)}
.dl dd{margin:0;word-break:break-all}
"#;

const SORT_JS: &str = r#"
(function(){
  function key(td){var v=td.getAttribute('data-v');if(v===null){return {n:NaN,s:td.textContent};}if(v===''){return {n:NaN,s:null};}return {n:parseFloat(v),s:v};}
  document.querySelectorAll('table.sortable').forEach(function(t){
    t.querySelectorAll('thead th').forEach(function(th,i){
      th.addEventListener('click',function(){
        var asc=th.getAttribute('data-dir')!=='asc';
        t.querySelectorAll('thead th').forEach(function(h){h.removeAttribute('data-dir');});
        th.setAttribute('data-dir',asc?'asc':'desc');
        var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows);
        rows.sort(function(r1,r2){
          var a=key(r1.cells[i]),c=key(r2.cells[i]);
          if(a.s===null&&c.s===null)return 0;if(a.s===null)return 1;if(c.s===null)return -1;
          var d=(!isNaN(a.n)&&!isNaN(c.n))?a.n-c.n:String(a.s).localeCompare(String(c.s));
          return asc?d:-d;
        });
        rows.forEach(function(r){b.appendChild(r);});
      });
    });
  });
})();
"#;

/// A whole page: `title` (plain text), a header line, and `body` (HTML).
pub fn page(title: &str, subtitle: &str, body: &str) -> String {
    let mut s = String::with_capacity(body.len() + 4096);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"atc-bt report\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
         <header><h1>{}</h1><p>{}</p></header>\n<main>\n{}{body}</main>\n<script>{SORT_JS}</script>\n</body>\n</html>\n",
        escape(title),
        escape(title),
        escape(subtitle),
        toc(body),
    );
    s
}

/// Links to the page's sections (`<section id>` with its `<h2>`, as
/// [`section`] writes them), in page order: the anchors are stable, so a
/// link to `report.html#drawdowns` always lands on the same table.
fn toc(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("<section id=\"") {
        rest = &rest[i + 13..];
        let Some(end) = rest.find('"') else { break };
        let id = &rest[..end];
        let heading = rest
            .find("<h2>")
            .and_then(|a| rest[a + 4..].find("</h2>").map(|b| &rest[a + 4..a + 4 + b]))
            .unwrap_or(id);
        // Both were escaped when the section was written.
        let _ = write!(out, "<a href=\"#{id}\">{heading}</a>");
        rest = &rest[end..];
    }
    if out.is_empty() {
        out
    } else {
        format!("<nav class=\"toc\">{out}</nav>\n")
    }
}

/// A `<section>` with a heading (plain text) and HTML content.
pub fn section(id: &str, heading: &str, content: &str) -> String {
    format!(
        "<section id=\"{}\">\n<h2>{}</h2>\n{content}</section>\n",
        escape(id),
        escape(heading)
    )
}

/// A figure with inline SVG (already safe: produced by plotters from
/// escaped text) and a plain-text caption.
pub fn figure(svg: &str, caption: &str) -> String {
    let svg = strip_svg_size(svg);
    format!(
        "<figure>{svg}<figcaption class=\"caption\">{}</figcaption></figure>\n",
        escape(caption)
    )
}

/// plotters writes a fixed `width`/`height`; keep the `viewBox` so the SVG
/// scales with the page width.
fn strip_svg_size(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    let svg = &svg[start..];
    let Some(end) = svg.find('>') else {
        return svg.to_string();
    };
    let head = &svg[..end];
    let mut w = None;
    let mut h = None;
    let mut out_head = String::new();
    for part in head.split(' ') {
        if let Some(v) = part.strip_prefix("width=\"") {
            w = v.trim_end_matches('"').parse::<u32>().ok();
        } else if let Some(v) = part.strip_prefix("height=\"") {
            h = v.trim_end_matches('"').parse::<u32>().ok();
        } else {
            if !out_head.is_empty() {
                out_head.push(' ');
            }
            out_head.push_str(part);
        }
    }
    match (w, h) {
        (Some(w), Some(h)) if !head.contains("viewBox") => {
            format!("{out_head} viewBox=\"0 0 {w} {h}\"{}", &svg[end..])
        }
        _ => format!("{out_head}{}", &svg[end..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_of_many_decades_are_not_zero_and_percent_axes_have_no_minus_zero() {
        assert_eq!(fmt_axis(1e-5), "1e-5");
        assert_eq!(fmt_axis(2.5e-40), "2e-40");
        assert_eq!(fmt_axis(0.0), "0");
        assert_eq!(fmt_pct(-0.0 / 100.0, 1), "0.0%");
        assert_eq!(fmt_pct(-1e-9, 1), "0.0%");
    }

    #[test]
    fn page_text_shows_control_characters_escaped() {
        assert_eq!(escape("a\u{7}<b>"), "a\\u{7}&lt;b&gt;");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn numbers_are_fixed_format() {
        assert_eq!(fmt_metric("total_return", 0.12345), "12.35%");
        assert_eq!(fmt_metric("sharpe", 1.23456), "1.235");
        assert_eq!(fmt_metric("trades", 12.0), "12");
        assert_eq!(fmt_metric("sharpe", f64::NAN), "n/a");
        assert_eq!(fmt_metric("sharpe", 1.0), "1.000");
        assert_eq!(fmt_metric("sharpe", -0.0001), "0.000");
        assert_eq!(fmt_metric("sharpe", 2.5e9), "2.500e9");
        // Counts as integers, durations with their unit, money grouped.
        assert_eq!(fmt_metric("open_trades", 5.0), "5");
        assert_eq!(fmt_metric("days", 1871.0), "1,871 days");
        assert_eq!(fmt_metric("max_drawdown_duration_days", 12.34), "12.3 days");
        assert_eq!(fmt_metric("max_drawdown_duration", 42.0), "42 bars");
        assert_eq!(fmt_metric("avg_trade_duration", 7.26), "7.3 bars");
        assert_eq!(fmt_metric("final_equity", 1234567.891), "1,234,567.89");
        assert_eq!(fmt_metric("expectancy", -1234.5), "-1,234.50");
        assert_eq!(fmt_metric("periods_per_year", 252.0), "252");
        assert_eq!(fmt_metric("periods_per_year", 365.25), "365.25");
        // Drawdowns negative, like the chart.
        assert_eq!(fmt_metric("max_drawdown", 0.2345), "-23.45%");
        assert_eq!(fmt_metric("max_drawdown", 0.0), "0.00%");
        assert_eq!(fmt_time("2020-03-23T00:00:00Z"), "2020-03-23");
        assert_eq!(fmt_time("2020-03-23T14:30:00Z"), "2020-03-23 14:30");
        assert_eq!(fmt_time("not yet"), "not yet");
        assert_eq!(fmt_compact(0.0300, 4), "0.03");
        assert_eq!(fmt_compact(10.0, 4), "10");
        assert_eq!(fmt_compact(-0.00001, 3), "0");
        assert_eq!(fmt_axis(20_000_000.0), "20M");
        assert_eq!(fmt_axis(1.2e21), "1.20e21");
        assert_eq!(fmt_axis(12_500.0), "12.5k");
        assert_eq!(fmt_axis(950.5), "950.5");
        assert_eq!(fmt_pct(-0.0001, 1), "0.0%");
        assert_eq!(fmt_pct(-0.012, 1), "-1.2%");
    }

    #[test]
    fn svg_scales_with_the_page() {
        let s = strip_svg_size("<svg width=\"800\" height=\"600\" xmlns=\"x\">a</svg>");
        assert_eq!(s, "<svg xmlns=\"x\" viewBox=\"0 0 800 600\">a</svg>");
        let s = strip_svg_size("<svg width=\"8\" height=\"6\" viewBox=\"0 0 8 6\">a</svg>");
        assert_eq!(s, "<svg viewBox=\"0 0 8 6\">a</svg>");
    }
}
