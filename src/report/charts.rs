//! Every chart of the report, drawn with plotters on any backend: SVG for
//! the page (crisp, self-contained) and an in-memory bitmap encoded as PNG.
//!
//! Text is laid out with plotters' `ab_glyph` feature and a bundled subset
//! of DejaVu Sans (`fonts/`, Bitstream Vera licence, see
//! `fonts/LICENSE-DejaVu.txt`): no fontconfig, no freetype, no system
//! fonts, and the same pixels on every machine. In the SVG, text stays text
//! and the browser renders it with its own sans-serif font.
//!
//! Long series are reduced with [`min_max`] before drawing, to a few points
//! per pixel column.

use std::sync::Once;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::downsample::min_max;
use super::load::{Series, Trade};
use super::memory::MemoryTimeline;

/// The bundled font (DejaVu Sans, Latin-1 + a few symbols, 17 KB).
static FONT: &[u8] = include_bytes!("fonts/DejaVuSans-subset.ttf");
static FONT_ONCE: Once = Once::new();

const FAMILY: &str = "sans-serif";
const BLUE: RGBColor = RGBColor(31, 95, 191);
const GREY: RGBColor = RGBColor(128, 128, 128);
const RED_: RGBColor = RGBColor(196, 52, 44);
const GREEN_: RGBColor = RGBColor(22, 140, 70);
const INK: RGBColor = RGBColor(40, 44, 52);
const GRID: RGBColor = RGBColor(232, 235, 240);

fn ensure_font() {
    FONT_ONCE.call_once(|| {
        // The font is compiled in and known to parse; if it ever did not,
        // text would be missing from PNGs, never a crash.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn err<T: ToString>(e: T) -> String {
    e.to_string()
}

/// Something drawable at a fixed size on any plotters backend.
pub trait Chart {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws on `root` (already filled white).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Renders `c` as an SVG document.
pub fn to_svg(c: &impl Chart) -> Result<String, String> {
    ensure_font();
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, c.size()).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        c.draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(s)
}

/// Renders `c` as PNG bytes (RGB, 8 bits, deterministic).
pub fn to_png(c: &impl Chart) -> Result<Vec<u8>, String> {
    ensure_font();
    let (w, h) = c.size();
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        c.draw(&root)?;
        root.present().map_err(err)?;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(err)?;
        wr.write_image_data(&buf).map_err(err)?;
        wr.finish().map_err(err)?;
    }
    Ok(out)
}

/// A UTC date label for a timestamp in microseconds.
pub fn date_label(us: f64, span_us: f64) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_micros(us as i64) else {
        return String::new();
    };
    let day = 86_400e6;
    if span_us > 3.0 * 365.0 * day {
        t.format("%Y-%m").to_string()
    } else if span_us > 5.0 * day {
        t.format("%Y-%m-%d").to_string()
    } else {
        t.format("%m-%d %H:%M").to_string()
    }
}

fn points(s: &Series) -> Vec<(f64, f64)> {
    s.ts.iter()
        .zip(&s.values)
        .map(|(&t, &v)| (t as f64, v))
        .collect()
}

fn finite_range(it: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in it.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (lo <= hi).then_some((lo, hi))
}

fn pad(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    let d = if hi > lo {
        (hi - lo) * frac
    } else {
        lo.abs().max(1.0) * 0.05
    };
    (lo - d, hi + d)
}

fn font(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&INK)
}

fn message<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str) -> Result<(), String> {
    let (w, h) = area.dim_in_pixel();
    let st = font(16)
        .pos(Pos::new(HPos::Center, VPos::Center))
        .color(&GREY);
    area.draw(&Text::new(
        text.to_string(),
        (w as i32 / 2, h as i32 / 2),
        st,
    ))
    .map_err(err)
}

/// A named line of the equity chart.
pub struct Line {
    /// Legend name.
    pub name: String,
    /// The curve.
    pub series: Series,
    /// Drawdown per bar (positive fraction), same length as `series`.
    pub drawdown: Vec<f64>,
}

/// Equity of the strategy against buy & hold, drawdown underneath.
pub struct EquityChart {
    /// Title.
    pub title: String,
    /// The strategy (drawn in blue, drawdown filled red).
    pub strategy: Line,
    /// Buy & hold (grey; its drawdown dashed grey line).
    pub benchmark: Option<Line>,
    /// Log scale for equity (falls back to linear when a value is ≤ 0).
    pub log_scale: bool,
    /// Size in pixels.
    pub size: (u32, u32),
}

impl EquityChart {
    /// Whether the log scale can be used.
    pub fn log_ok(&self) -> bool {
        self.log_scale
            && self
                .strategy
                .series
                .values
                .iter()
                .chain(self.benchmark.iter().flat_map(|b| b.series.values.iter()))
                .all(|v| !v.is_finite() || *v > 0.0)
    }
}

fn draw_equity_lines<'a, DB: DrawingBackend + 'a, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    c: &EquityChart,
    span: f64,
    width: usize,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&|x| date_label(*x, span))
        .y_label_formatter(&|y| super::html::fmt_axis(*y))
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .label_style(font(12))
        .draw()
        .map_err(err)?;
    if let Some(b) = &c.benchmark {
        chart
            .draw_series(LineSeries::new(
                min_max(&points(&b.series), width),
                GREY.stroke_width(1),
            ))
            .map_err(err)?
            .label(b.name.clone())
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREY.stroke_width(2)));
    }
    chart
        .draw_series(LineSeries::new(
            min_max(&points(&c.strategy.series), width),
            BLUE.stroke_width(2),
        ))
        .map_err(err)?
        .label(c.strategy.name.clone())
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(GRID)
        .label_font(font(13))
        .draw()
        .map_err(err)
}

impl Chart for EquityChart {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let s = &self.strategy.series;
        let all_ts =
            s.ts.iter()
                .chain(self.benchmark.iter().flat_map(|b| b.series.ts.iter()))
                .map(|&t| t as f64);
        let (Some((x0, x1)), Some((y0, y1))) = (
            finite_range(all_ts),
            finite_range(
                s.values
                    .iter()
                    .chain(self.benchmark.iter().flat_map(|b| b.series.values.iter()))
                    .copied(),
            ),
        ) else {
            return message(root, "no equity recorded");
        };
        let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
        let span = x1 - x0;
        let width = self.size.0 as usize;
        let (_, h) = root.dim_in_pixel();
        let (upper, lower) = root.split_vertically((h as f64 * 0.7) as u32);
        let log = self.log_ok();
        let title = if log {
            format!("{} (log scale)", self.title)
        } else {
            self.title.clone()
        };
        let mut b = ChartBuilder::on(&upper);
        b.caption(title, font(18))
            .margin(10)
            .margin_right(24)
            .x_label_area_size(22)
            .y_label_area_size(80);
        if log {
            let (l0, l1) = (y0 * 0.97, y1 * 1.03);
            let mut chart = b
                .build_cartesian_2d(x0..x1, (l0..l1).log_scale())
                .map_err(err)?;
            draw_equity_lines(&mut chart, self, span, width)?;
        } else {
            let (p0, p1) = pad(y0, y1, 0.04);
            let mut chart = b.build_cartesian_2d(x0..x1, p0..p1).map_err(err)?;
            draw_equity_lines(&mut chart, self, span, width)?;
        }
        // Drawdown panel, in percent below the running peak.
        let dd: Vec<(f64, f64)> =
            s.ts.iter()
                .zip(&self.strategy.drawdown)
                .map(|(&t, &d)| (t as f64, -d * 100.0))
                .collect();
        let bdd: Vec<(f64, f64)> = self
            .benchmark
            .iter()
            .flat_map(|b| {
                b.series
                    .ts
                    .iter()
                    .zip(&b.drawdown)
                    .map(|(&t, &d)| (t as f64, -d * 100.0))
            })
            .collect();
        let lo = finite_range(dd.iter().chain(&bdd).map(|p| p.1)).map_or(-1.0, |r| r.0.min(-0.01));
        let mut chart = ChartBuilder::on(&lower)
            .margin(10)
            .margin_right(24)
            .x_label_area_size(28)
            .y_label_area_size(80)
            .caption("Drawdown (%)", font(13))
            .build_cartesian_2d(x0..x1, (lo * 1.05)..0.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(4)
            .x_label_formatter(&|x| date_label(*x, span))
            .y_label_formatter(&|y| format!("{y:.1}%"))
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .label_style(font(12))
            .draw()
            .map_err(err)?;
        if !bdd.is_empty() {
            chart
                .draw_series(LineSeries::new(min_max(&bdd, width), GREY.stroke_width(1)))
                .map_err(err)?;
        }
        chart
            .draw_series(
                AreaSeries::new(min_max(&dd, width), 0.0, RED_.mix(0.35)).border_style(RED_),
            )
            .map_err(err)?;
        Ok(())
    }
}

/// One symbol: price with trades marked, and the ATC average signal with
/// its thresholds.
pub struct SymbolChart {
    /// The symbol (plain text; plotters escapes it in SVG).
    pub symbol: String,
    /// Close prices (may be empty).
    pub close: Series,
    /// The ATC average signal.
    pub avg: Series,
    /// Trades.
    pub trades: Vec<Trade>,
    /// Long threshold (dashed green).
    pub long_threshold: Option<f64>,
    /// Short threshold (dashed red).
    pub short_threshold: Option<f64>,
    /// Size in pixels.
    pub size: (u32, u32),
}

impl Chart for SymbolChart {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let Some((x0, x1)) =
            finite_range(self.close.ts.iter().chain(&self.avg.ts).map(|&t| t as f64))
        else {
            return message(root, &format!("{}: no bars recorded", self.symbol));
        };
        let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
        let span = x1 - x0;
        let width = self.size.0 as usize;
        let (_, h) = root.dim_in_pixel();
        let (upper, lower) = root.split_vertically((h as f64 * 0.62) as u32);
        match finite_range(self.close.values.iter().copied()) {
            None => {
                let (_, uh) = upper.dim_in_pixel();
                upper
                    .draw(&Text::new(self.symbol.clone(), (90, 16), font(18)))
                    .map_err(err)?;
                let _ = uh;
                message(
                    &upper,
                    "close prices not recorded (`run --outputs close` keeps them in signals.parquet; the run's data is gone or changed)",
                )?;
            }
            Some((y0, y1)) => {
                let (p0, p1) = pad(y0, y1, 0.05);
                let mut chart = ChartBuilder::on(&upper)
                    .caption(format!("{} — price and trades", self.symbol), font(18))
                    .margin(10)
                    .margin_right(24)
                    .x_label_area_size(22)
                    .y_label_area_size(80)
                    .build_cartesian_2d(x0..x1, p0..p1)
                    .map_err(err)?;
                chart
                    .configure_mesh()
                    .x_labels(8)
                    .y_labels(6)
                    .x_label_formatter(&|x| date_label(*x, span))
                    .y_label_formatter(&|y| super::html::fmt_axis(*y))
                    .light_line_style(WHITE)
                    .bold_line_style(GRID)
                    .label_style(font(12))
                    .draw()
                    .map_err(err)?;
                chart
                    .draw_series(LineSeries::new(
                        min_max(&points(&self.close), width),
                        INK.stroke_width(1),
                    ))
                    .map_err(err)?
                    .label("close")
                    .legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], INK.stroke_width(2))
                    });
                let inside = |p: &(f64, f64)| p.0 >= x0 && p.0 <= x1 && p.1.is_finite();
                let long_in: Vec<(f64, f64)> = self
                    .trades
                    .iter()
                    .filter(|t| t.side != "short")
                    .map(|t| (t.entry_ts as f64, t.entry_price))
                    .filter(inside)
                    .collect();
                let short_in: Vec<(f64, f64)> = self
                    .trades
                    .iter()
                    .filter(|t| t.side == "short")
                    .map(|t| (t.entry_ts as f64, t.entry_price))
                    .filter(inside)
                    .collect();
                let exits: Vec<(f64, f64)> = self
                    .trades
                    .iter()
                    .filter_map(|t| t.exit_ts.map(|x| (x as f64, t.exit_price)))
                    .filter(inside)
                    .collect();
                chart
                    .draw_series(
                        long_in
                            .iter()
                            .map(|&p| TriangleMarker::new(p, 6, GREEN_.filled())),
                    )
                    .map_err(err)?
                    .label("long entry")
                    .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, GREEN_.filled()));
                chart
                    .draw_series(short_in.iter().map(|&p| {
                        EmptyElement::at(p)
                            + Polygon::new(vec![(-6, -5), (6, -5), (0, 6)], RED_.filled())
                    }))
                    .map_err(err)?
                    .label("short entry")
                    .legend(|(x, y)| {
                        Polygon::new(
                            vec![(x + 4, y - 4), (x + 16, y - 4), (x + 10, y + 6)],
                            RED_.filled(),
                        )
                    });
                chart
                    .draw_series(
                        exits
                            .iter()
                            .map(|&p| Cross::new(p, 4, BLUE.stroke_width(2))),
                    )
                    .map_err(err)?
                    .label("exit")
                    .legend(|(x, y)| Cross::new((x + 10, y), 4, BLUE.stroke_width(2)));
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.85))
                    .border_style(GRID)
                    .label_font(font(12))
                    .draw()
                    .map_err(err)?;
            }
        }
        let mut chart = ChartBuilder::on(&lower)
            .caption("ATC average signal and thresholds", font(13))
            .margin(10)
            .margin_right(24)
            .x_label_area_size(28)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, -1.05..1.05)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(5)
            .x_label_formatter(&|x| date_label(*x, span))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .label_style(font(12))
            .draw()
            .map_err(err)?;
        let hline = |y: f64| vec![(x0, y), (x1, y)];
        chart
            .draw_series(LineSeries::new(hline(0.0), GREY.stroke_width(1)))
            .map_err(err)?;
        for (th, color) in [(self.long_threshold, GREEN_), (self.short_threshold, RED_)] {
            if let Some(t) = th.filter(|t| t.is_finite()) {
                chart
                    .draw_series(DashedLineSeries::new(hline(t), 6, 4, color.stroke_width(1)))
                    .map_err(err)?;
            }
        }
        chart
            .draw_series(LineSeries::new(
                min_max(&points(&self.avg), width),
                BLUE.stroke_width(1),
            ))
            .map_err(err)?;
        Ok(())
    }
}

/// A grid of coloured cells with values: monthly returns or a sweep's
/// ranking metric over two parameters.
pub struct GridChart {
    /// Title.
    pub title: String,
    /// Column labels (left to right).
    pub x_labels: Vec<String>,
    /// Row labels (top to bottom).
    pub y_labels: Vec<String>,
    /// Axis names (may be empty).
    pub x_name: String,
    /// Axis name of the rows.
    pub y_name: String,
    /// `values[row][col]`.
    pub values: Vec<Vec<Option<f64>>>,
    /// Diverging red/white/green around zero (returns) instead of a
    /// sequential scale.
    pub diverging: bool,
    /// For sequential scales: whether lower values are better (the scale
    /// is flipped so that better is always brighter).
    pub lower_is_better: bool,
    /// Show values as percentages.
    pub percent: bool,
    /// Cell to outline (row, col): the best combination.
    pub highlight: Option<(usize, usize)>,
    /// Size in pixels.
    pub size: (u32, u32),
}

fn lerp(a: (u8, u8, u8), b: (u8, u8, u8), t: f64) -> RGBColor {
    let f = |x: u8, y: u8| {
        (x as f64 + (y as f64 - x as f64) * t)
            .round()
            .clamp(0.0, 255.0) as u8
    };
    RGBColor(f(a.0, b.0), f(a.1, b.1), f(a.2, b.2))
}

/// Viridis-like sequential scale, `t` in [0, 1].
fn sequential(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [
        (68, 1, 84),
        (59, 82, 139),
        (33, 145, 140),
        (94, 201, 98),
        (253, 231, 37),
    ];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    lerp(STOPS[i], STOPS[i + 1], t - i as f64)
}

fn diverging(v: f64, scale: f64) -> RGBColor {
    let t = if scale > 0.0 {
        (v / scale).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    if t >= 0.0 {
        lerp((250, 250, 250), (26, 150, 65), t)
    } else {
        lerp((250, 250, 250), (215, 48, 39), -t)
    }
}

impl Chart for GridChart {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (w, h) = root.dim_in_pixel();
        let (w, h) = (w as i32, h as i32);
        root.draw(&Text::new(
            self.title.clone(),
            (w / 2, 16),
            font(16).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(err)?;
        let rows = self.y_labels.len().max(1) as i32;
        let cols = self.x_labels.len().max(1) as i32;
        let (left, top, right, bottom) = (90, 36, 16, 46);
        let cw = ((w - left - right) / cols).max(1);
        let ch = ((h - top - bottom) / rows).max(1);
        let vals: Vec<f64> = self
            .values
            .iter()
            .flatten()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let (lo, hi) = finite_range(vals.iter().copied()).unwrap_or((0.0, 1.0));
        let scale = lo.abs().max(hi.abs());
        let label_size = (ch.min(cw) / 2).clamp(9, 14) as u32;
        for (r, row) in self.values.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let x = left + c as i32 * cw;
                let y = top + r as i32 * ch;
                let fill = match v {
                    Some(v) if v.is_finite() => {
                        if self.diverging {
                            diverging(*v, scale)
                        } else {
                            let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                            sequential(if self.lower_is_better { 1.0 - t } else { t })
                        }
                    }
                    _ => RGBColor(238, 238, 238),
                };
                root.draw(&Rectangle::new(
                    [(x, y), (x + cw - 1, y + ch - 1)],
                    fill.filled(),
                ))
                .map_err(err)?;
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    if cw >= 34 && ch >= 14 {
                        let text = if self.percent {
                            super::html::fmt_pct(v, 1)
                        } else {
                            super::html::fmt_compact(v, 3)
                        };
                        let dark = !self.diverging && {
                            let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                            let t = if self.lower_is_better { 1.0 - t } else { t };
                            t < 0.55
                        };
                        let color = if dark { WHITE } else { INK };
                        root.draw(&Text::new(
                            text,
                            (x + cw / 2, y + ch / 2),
                            (FAMILY, label_size)
                                .into_font()
                                .color(&color)
                                .pos(Pos::new(HPos::Center, VPos::Center)),
                        ))
                        .map_err(err)?;
                    }
                }
            }
        }
        if let Some((r, c)) = self.highlight {
            let x = left + c as i32 * cw;
            let y = top + r as i32 * ch;
            root.draw(&Rectangle::new(
                [(x, y), (x + cw - 1, y + ch - 1)],
                RED_.stroke_width(3),
            ))
            .map_err(err)?;
        }
        // Row labels, thinned so they never overlap.
        let row_step = (14 / ch + 1) as usize;
        for (r, l) in self.y_labels.iter().enumerate().step_by(row_step) {
            root.draw(&Text::new(
                l.clone(),
                (left - 6, top + r as i32 * ch + ch / 2),
                font(12).pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(err)?;
        }
        let longest = self
            .x_labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(1) as i32;
        let col_step = ((longest * 7 + 6) / cw + 1) as usize;
        for (c, l) in self.x_labels.iter().enumerate().step_by(col_step) {
            root.draw(&Text::new(
                l.clone(),
                (left + c as i32 * cw + cw / 2, top + rows * ch + 6),
                font(12).pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(err)?;
        }
        if !self.x_name.is_empty() {
            root.draw(&Text::new(
                self.x_name.clone(),
                (left + cols * cw / 2, top + rows * ch + 26),
                font(12).pos(Pos::new(HPos::Center, VPos::Top)).color(&GREY),
            ))
            .map_err(err)?;
        }
        if !self.y_name.is_empty() {
            root.draw(&Text::new(
                self.y_name.clone(),
                (6, top - 16),
                font(12)
                    .pos(Pos::new(HPos::Left, VPos::Center))
                    .color(&GREY),
            ))
            .map_err(err)?;
        }
        Ok(())
    }
}

/// Resident memory over time, phases shaded, peak marked.
pub struct MemoryChart<'a> {
    /// The samples.
    pub timeline: &'a MemoryTimeline,
    /// Size in pixels.
    pub size: (u32, u32),
}

const PHASE_COLORS: [RGBColor; 6] = [
    RGBColor(66, 133, 244),
    RGBColor(251, 188, 5),
    RGBColor(52, 168, 83),
    RGBColor(234, 67, 53),
    RGBColor(155, 89, 182),
    RGBColor(0, 172, 193),
];

/// Contiguous phase spans `(phase, t_start_s, t_end_s)` of a timeline.
pub fn phase_spans(t: &MemoryTimeline) -> Vec<(String, f64, f64)> {
    let mut out: Vec<(String, f64, f64)> = Vec::new();
    for s in &t.samples {
        let ts = s.t_ms / 1e3;
        match out.last_mut() {
            Some(last) if last.0 == s.phase => last.2 = ts,
            Some(last) => {
                last.2 = ts;
                out.push((s.phase.clone(), ts, ts));
            }
            None => out.push((s.phase.clone(), ts, ts)),
        }
    }
    out
}

impl Chart for MemoryChart<'_> {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let s = &self.timeline.samples;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let pts: Vec<(f64, f64)> = s.iter().map(|x| (x.t_ms / 1e3, mib(x.rss_bytes))).collect();
        let (Some((x0, x1)), Some((_, y1))) = (
            finite_range(pts.iter().map(|p| p.0)),
            finite_range(pts.iter().map(|p| p.1)),
        ) else {
            return message(root, "no memory samples");
        };
        let x1 = if x1 > x0 { x1 } else { x0 + 1e-3 };
        let y1 = y1 * 1.15 + 1.0;
        let mut chart = ChartBuilder::on(root)
            .caption("Resident memory (RSS) over time", font(18))
            .margin(10)
            .margin_right(24)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, 0.0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("MiB")
            .x_label_formatter(&|x| format!("{x:.2}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .label_style(font(12))
            .axis_desc_style(font(12))
            .draw()
            .map_err(err)?;
        let spans = phase_spans(self.timeline);
        let mut names: Vec<&str> = Vec::new();
        for (p, _, _) in &spans {
            if !names.contains(&p.as_str()) {
                names.push(p);
            }
        }
        let color = |p: &str| {
            PHASE_COLORS[names.iter().position(|n| *n == p).unwrap_or(0) % PHASE_COLORS.len()]
        };
        for (p, a, b) in &spans {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(*a, 0.0), (*b, y1)],
                    color(p).mix(0.15).filled(),
                )))
                .map_err(err)?;
        }
        for p in &names {
            let c = color(p);
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                .map_err(err)?
                .label(p.to_string())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.mix(0.4).filled())
                });
        }
        chart
            .draw_series(
                AreaSeries::new(min_max(&pts, self.size.0 as usize), 0.0, BLUE.mix(0.25))
                    .border_style(BLUE),
            )
            .map_err(err)?
            .label("RSS")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLUE.stroke_width(2)));
        if let Some(p) = self.timeline.peak() {
            let (px, py) = (p.t_ms / 1e3, mib(p.rss_bytes));
            chart
                .draw_series(std::iter::once(Circle::new((px, py), 5, RED_.filled())))
                .map_err(err)?;
            let anchor = if px > (x0 + x1) / 2.0 {
                HPos::Right
            } else {
                HPos::Left
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("peak {py:.1} MiB at {px:.2} s ({})", p.phase),
                    (px, py * 1.06),
                    font(13).color(&RED_).pos(Pos::new(anchor, VPos::Bottom)),
                )))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(GRID)
            .label_font(font(12))
            .draw()
            .map_err(err)
    }
}
