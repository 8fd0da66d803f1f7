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
    // Text drawn from names (a symbol with a BEL or ESC in it) would carry
    // characters XML 1.0 forbids, and the file would not open: they are
    // written visibly escaped, as on the terminal and in the page.
    Ok(crate::term::escape_controls_in_xml(&s).into_owned())
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

/// A calendar step between time-axis ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TickStep {
    /// Whole multiples of this many microseconds since the epoch
    /// (minutes, hours, days).
    Micros(i64),
    /// Mondays, every this many weeks.
    Weeks(i64),
    /// First day of every this many months (January-aligned).
    Months(i32),
    /// 1 January of every this many years (years divisible by it).
    Years(i32),
}

/// A time axis (µs since the epoch, UTC, as f64) whose ticks fall on
/// calendar boundaries: 1 January, the first of a month, Mondays, midnight,
/// whole hours. Values map linearly like plotters' `f64` axis, so series
/// are drawn as before; only the grid and the labels are calendar-aware.
#[derive(Debug, Clone)]
pub struct TimeAxis {
    lo: f64,
    hi: f64,
    step: TickStep,
    ticks: Vec<f64>,
}

const MINUTE_US: i64 = 60_000_000;
const HOUR_US: i64 = 60 * MINUTE_US;
const DAY_US: i64 = 24 * HOUR_US;

impl TimeAxis {
    /// The axis over `[lo, hi]` with at most `max_ticks` ticks (the
    /// smallest calendar step that fits).
    pub fn new(lo: f64, hi: f64, max_ticks: usize) -> TimeAxis {
        let max_ticks = max_ticks.max(2);
        let steps = [
            TickStep::Micros(MINUTE_US),
            TickStep::Micros(5 * MINUTE_US),
            TickStep::Micros(15 * MINUTE_US),
            TickStep::Micros(30 * MINUTE_US),
            TickStep::Micros(HOUR_US),
            TickStep::Micros(3 * HOUR_US),
            TickStep::Micros(6 * HOUR_US),
            TickStep::Micros(12 * HOUR_US),
            TickStep::Micros(DAY_US),
            TickStep::Micros(2 * DAY_US),
            TickStep::Weeks(1),
            TickStep::Weeks(2),
            TickStep::Months(1),
            TickStep::Months(2),
            TickStep::Months(3),
            TickStep::Months(6),
            TickStep::Years(1),
            TickStep::Years(2),
            TickStep::Years(5),
            TickStep::Years(10),
            TickStep::Years(20),
            TickStep::Years(50),
            TickStep::Years(100),
            TickStep::Years(200),
            TickStep::Years(500),
            TickStep::Years(1000),
        ];
        let span = (hi - lo).max(0.0);
        for step in steps {
            // Skip steps that cannot fit before generating any tick.
            let approx = match step {
                TickStep::Micros(u) => u as f64,
                TickStep::Weeks(w) => (w * 7 * DAY_US) as f64,
                TickStep::Months(m) => m as f64 * 28.0 * DAY_US as f64,
                TickStep::Years(y) => y as f64 * 365.0 * DAY_US as f64,
            };
            if span / approx > max_ticks as f64 + 1.0 {
                continue;
            }
            let ticks = calendar_ticks(lo, hi, step, max_ticks + 1);
            if ticks.len() <= max_ticks {
                return TimeAxis {
                    lo,
                    hi,
                    step,
                    ticks,
                };
            }
        }
        TimeAxis {
            lo,
            hi,
            step: TickStep::Years(1000),
            ticks: Vec::new(),
        }
    }

    /// The label of a tick: as precise as the step needs (`2021`,
    /// `Mar 2021`, `2021-03-15`, `03-15 14:00`).
    pub fn label(&self, us: f64) -> String {
        let Some(t) = chrono::DateTime::from_timestamp_micros(us.round() as i64) else {
            return String::new();
        };
        let fmt = match self.step {
            TickStep::Years(_) => "%Y",
            TickStep::Months(_) => "%b %Y",
            TickStep::Weeks(_) => "%Y-%m-%d",
            TickStep::Micros(u) if u >= DAY_US => "%Y-%m-%d",
            TickStep::Micros(_) => "%m-%d %H:%M",
        };
        t.format(fmt).to_string()
    }

    /// The tick positions.
    pub fn ticks(&self) -> &[f64] {
        &self.ticks
    }
}

/// Ticks of `step` inside `[lo, hi]`, stopping after `limit`.
fn calendar_ticks(lo: f64, hi: f64, step: TickStep, limit: usize) -> Vec<f64> {
    use chrono::{Datelike, NaiveDate};
    let mut out = Vec::new();
    if !(lo.is_finite() && hi.is_finite()) || hi < lo {
        return out;
    }
    let (lo_i, hi_i) = (lo.ceil() as i64, hi.floor() as i64);
    let first_ge = |t: i64, unit: i64, offset: i64| -> i64 {
        // The first offset + k·unit ≥ t.
        offset
            + (t - offset).div_euclid(unit) * unit
            + if (t - offset).rem_euclid(unit) == 0 {
                0
            } else {
                unit
            }
    };
    let midnight = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map(|x| x.and_utc().timestamp_micros())
    };
    match step {
        TickStep::Micros(_) | TickStep::Weeks(_) => {
            // Weeks: Mondays, 1970-01-05 being the first.
            let (unit, offset) = match step {
                TickStep::Weeks(w) => (w * 7 * DAY_US, 4 * DAY_US),
                TickStep::Micros(u) => (u, 0),
                _ => return out,
            };
            let mut t = first_ge(lo_i, unit, offset);
            while t <= hi_i && out.len() < limit {
                out.push(t as f64);
                t += unit;
            }
        }
        TickStep::Months(m) => {
            let Some(start) = chrono::DateTime::from_timestamp_micros(lo_i) else {
                return out;
            };
            let mut idx = start.year() * 12 + start.month0() as i32;
            loop {
                if idx.rem_euclid(m) == 0 {
                    let Some(t) = NaiveDate::from_ymd_opt(
                        idx.div_euclid(12),
                        idx.rem_euclid(12) as u32 + 1,
                        1,
                    )
                    .and_then(midnight) else {
                        break;
                    };
                    if t > hi_i || out.len() >= limit {
                        break;
                    }
                    if t >= lo_i {
                        out.push(t as f64);
                    }
                }
                idx += 1;
            }
        }
        TickStep::Years(y) => {
            let Some(start) = chrono::DateTime::from_timestamp_micros(lo_i) else {
                return out;
            };
            let mut year = start.year();
            year += (y - year.rem_euclid(y)) % y;
            while let Some(t) = NaiveDate::from_ymd_opt(year, 1, 1).and_then(midnight) {
                if t > hi_i || out.len() >= limit {
                    break;
                }
                if t >= lo_i {
                    out.push(t as f64);
                }
                year += y;
            }
        }
    }
    out
}

impl Ranged for TimeAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.lo..self.hi).map(value, limit)
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // The light-line request asks for more points than bold ones: the
        // calendar ticks are all bold.
        if hint.max_num_points() > hint.bold_points() {
            return Vec::new();
        }
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
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
    /// Log scale for equity (falls back to linear when a value is ≤ 0);
    /// [`ScaleChoice::resolve`](super::ScaleChoice::resolve) decides.
    pub log_scale: bool,
    /// Vertical markers `(time µs, label)`: the in/out-of-sample split, the
    /// start of each walk-forward test window.
    pub markers: Vec<(i64, String)>,
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

/// Capital utilisation of a shared-cash account over time: gross
/// exposure / equity in percent (≤ 100% without leverage), a filled area
/// from 0.
pub struct UtilisationChart {
    /// Title.
    pub title: String,
    /// Utilisation per bar, a fraction (`gross / equity`).
    pub utilisation: Series,
    /// Size in pixels.
    pub size: (u32, u32),
}

impl Chart for UtilisationChart {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let u = &self.utilisation;
        let pts: Vec<(f64, f64)> =
            u.ts.iter()
                .zip(&u.values)
                .filter(|(_, v)| v.is_finite())
                .map(|(&t, &v)| (t as f64, v * 100.0))
                .collect();
        let (Some((x0, x1)), Some((_, hi))) = (
            finite_range(pts.iter().map(|p| p.0)),
            finite_range(pts.iter().map(|p| p.1)),
        ) else {
            return message(root, "no utilisation recorded");
        };
        let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
        let axis = TimeAxis::new(x0, x1, 10);
        let top = hi.max(100.0) * 1.05;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, font(18))
            .margin(10)
            .margin_right(24)
            .x_label_area_size(28)
            .y_label_area_size(80)
            .build_cartesian_2d(axis.clone(), 0.0..top)
            .map_err(err)?;
        draw_pct_mesh(&mut chart, &axis, 6, 0)?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x0, 100.0), (x1, 100.0)],
                4,
                4,
                GREY.stroke_width(1),
            ))
            .map_err(err)?;
        chart
            .draw_series(
                AreaSeries::new(min_max(&pts, self.size.0 as usize), 0.0, BLUE.mix(0.25))
                    .border_style(BLUE),
            )
            .map_err(err)?;
        Ok(())
    }
}

/// The mesh of a time-axis chart whose y values are percent: calendar
/// labels on x, `y_labels` labels on y with `decimals` places.
fn draw_pct_mesh<'a, DB: DrawingBackend + 'a, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<TimeAxis, Y>>,
    axis: &TimeAxis,
    y_labels: usize,
    decimals: usize,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_labels(10)
        .y_labels(y_labels)
        .x_label_formatter(&|x| axis.label(*x))
        .y_label_formatter(&|y| super::html::fmt_pct(*y / 100.0, decimals))
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .label_style(font(12))
        .draw()
        .map_err(err)
}

/// Draws the vertical `markers` over a chart whose y range is `y0..y1`.
fn draw_markers<'a, DB: DrawingBackend + 'a, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<TimeAxis, Y>>,
    markers: &[(i64, String)],
    (y0, y1): (f64, f64),
    labels: bool,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64>,
{
    let (x0, x1) = (chart.x_range().start, chart.x_range().end);
    for (t, label) in markers {
        let x = *t as f64;
        if x < x0 || x > x1 {
            continue;
        }
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x, y0), (x, y1)],
                4,
                4,
                GREY.stroke_width(1),
            ))
            .map_err(err)?;
        if labels && !label.is_empty() {
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (x, y1),
                    font(11).color(&GREY).pos(Pos::new(HPos::Center, VPos::Top)),
                )))
                .map_err(err)?;
        }
    }
    Ok(())
}

fn draw_equity_lines<'a, DB: DrawingBackend + 'a, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<TimeAxis, Y>>,
    c: &EquityChart,
    axis: &TimeAxis,
    y_range: (f64, f64),
    width: usize,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_labels(10)
        .y_labels(8)
        .x_label_formatter(&|x| axis.label(*x))
        .y_label_formatter(&|y| super::html::fmt_axis(*y))
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .label_style(font(12))
        .draw()
        .map_err(err)?;
    draw_markers(chart, &c.markers, y_range, true)?;
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
        let axis = TimeAxis::new(x0, x1, 10);
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
                .build_cartesian_2d(axis.clone(), (l0..l1).log_scale())
                .map_err(err)?;
            draw_equity_lines(&mut chart, self, &axis, (l0, l1), width)?;
        } else {
            let (p0, p1) = pad(y0, y1, 0.04);
            let mut chart = b.build_cartesian_2d(axis.clone(), p0..p1).map_err(err)?;
            draw_equity_lines(&mut chart, self, &axis, (p0, p1), width)?;
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
            .build_cartesian_2d(axis.clone(), (lo * 1.05)..0.0)
            .map_err(err)?;
        draw_pct_mesh(&mut chart, &axis, 4, 1)?;
        draw_markers(&mut chart, &self.markers, (lo * 1.05, 0.0), false)?;
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

/// One symbol: price with trades marked, each closed trade's return at its
/// exit, and the ATC average signal with its thresholds.
pub struct SymbolChart {
    /// The symbol (plain text; plotters escapes it in SVG).
    pub symbol: String,
    /// Close prices (may be empty).
    pub close: Series,
    /// The ATC average signal.
    pub avg: Series,
    /// Trades.
    pub trades: Vec<Trade>,
    /// Return of each closed trade at its exit `(exit time µs, return as a
    /// fraction)`; the panel is left out when empty.
    pub trade_returns: Vec<(i64, f64)>,
    /// Long threshold (dashed green).
    pub long_threshold: Option<f64>,
    /// Short threshold (dashed red).
    pub short_threshold: Option<f64>,
    /// The lower panel's caption when the signal is not the ATC's (a run
    /// on a `--signals` file); `None`: the ATC's caption.
    pub signal_caption: Option<String>,
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
        let axis = TimeAxis::new(x0, x1, 10);
        let width = self.size.0 as usize;
        let (_, h) = root.dim_in_pixel();
        let has_returns = self.trade_returns.iter().any(|p| p.1.is_finite());
        let (upper, rest) =
            root.split_vertically((h as f64 * if has_returns { 0.52 } else { 0.62 }) as u32);
        let (middle, lower) = if has_returns {
            let (m, l) = rest.split_vertically((h as f64 * 0.2) as u32);
            (Some(m), l)
        } else {
            (None, rest)
        };
        match finite_range(self.close.values.iter().copied()) {
            None => {
                upper
                    .draw(&Text::new(self.symbol.clone(), (90, 16), font(18)))
                    .map_err(err)?;
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
                    .build_cartesian_2d(axis.clone(), p0..p1)
                    .map_err(err)?;
                chart
                    .configure_mesh()
                    .x_labels(10)
                    .y_labels(6)
                    .x_label_formatter(&|x| axis.label(*x))
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
                let entries = |short: bool| -> Vec<(f64, f64)> {
                    self.trades
                        .iter()
                        .filter(|t| (t.side == "short") == short)
                        .map(|t| (t.entry_ts as f64, t.entry_price))
                        .filter(inside)
                        .collect()
                };
                let (long_in, short_in) = (entries(false), entries(true));
                let exits: Vec<(f64, f64)> = self
                    .trades
                    .iter()
                    .filter_map(|t| t.exit_ts.map(|x| (x as f64, t.exit_price)))
                    .filter(inside)
                    .collect();
                // The legend names only the markers drawn: no "short
                // entry" in a long-only run.
                if !long_in.is_empty() {
                    chart
                        .draw_series(
                            long_in
                                .iter()
                                .map(|&p| TriangleMarker::new(p, 6, GREEN_.filled())),
                        )
                        .map_err(err)?
                        .label("long entry")
                        .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, GREEN_.filled()));
                }
                if !short_in.is_empty() {
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
                }
                if !exits.is_empty() {
                    chart
                        .draw_series(
                            exits
                                .iter()
                                .map(|&p| Cross::new(p, 4, BLUE.stroke_width(2))),
                        )
                        .map_err(err)?
                        .label("exit")
                        .legend(|(x, y)| Cross::new((x + 10, y), 4, BLUE.stroke_width(2)));
                }
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
        if let Some(middle) = middle {
            let pts: Vec<(f64, f64)> = self
                .trade_returns
                .iter()
                .map(|&(t, r)| (t as f64, r * 100.0))
                .filter(|p| p.1.is_finite() && p.0 >= x0 && p.0 <= x1)
                .collect();
            let (r0, r1) = finite_range(pts.iter().map(|p| p.1)).unwrap_or((-1.0, 1.0));
            let (r0, r1) = pad(r0.min(0.0), r1.max(0.0), 0.1);
            let mut chart = ChartBuilder::on(&middle)
                .caption("Return of each trade at its exit (%)", font(13))
                .margin(10)
                .margin_right(24)
                .x_label_area_size(0)
                .y_label_area_size(80)
                .build_cartesian_2d(axis.clone(), r0..r1)
                .map_err(err)?;
            draw_pct_mesh(&mut chart, &axis, 4, 1)?;
            chart
                .draw_series(LineSeries::new(
                    vec![(x0, 0.0), (x1, 0.0)],
                    GREY.stroke_width(1),
                ))
                .map_err(err)?;
            chart
                .draw_series(pts.iter().map(|&p| {
                    let c = if p.1 >= 0.0 { GREEN_ } else { RED_ };
                    Circle::new(p, 3, c.filled())
                }))
                .map_err(err)?;
        }
        let mut chart = ChartBuilder::on(&lower)
            .caption(
                self.signal_caption
                    .as_deref()
                    .unwrap_or("ATC average signal and thresholds"),
                font(13),
            )
            .margin(10)
            .margin_right(24)
            .x_label_area_size(28)
            .y_label_area_size(80)
            .build_cartesian_2d(axis.clone(), -1.05..1.05)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(10)
            .y_labels(5)
            .x_label_formatter(&|x| axis.label(*x))
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

/// How a heatmap prints its cells (one format per page, so that every
/// cell of every heatmap has the same precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellFormat {
    /// A percentage with these decimals; `negate` shows a stored positive
    /// drawdown as a negative percentage.
    Percent {
        /// Decimals.
        decimals: usize,
        /// Show `-v`.
        negate: bool,
    },
    /// A fixed number of decimals (`1.90`, not `1.9`).
    Fixed(usize),
}

impl CellFormat {
    /// The text of one value.
    pub fn text(&self, v: f64) -> String {
        match *self {
            CellFormat::Percent { decimals, negate } => {
                super::html::fmt_pct(if negate { -v } else { v }, decimals)
            }
            CellFormat::Fixed(d) => {
                let s = format!("{v:.d$}");
                if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
                    s[1..].to_string()
                } else {
                    s
                }
            }
        }
    }

    /// The format for plain numbers `values` (all the heatmaps of a page):
    /// enough decimals for three significant digits of the largest value,
    /// at most 4.
    pub fn for_values(values: impl Iterator<Item = f64>) -> CellFormat {
        let m = values
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        let d = if m > 0.0 {
            (2 - m.log10().floor() as i32).clamp(0, 4) as usize
        } else {
            2
        };
        CellFormat::Fixed(d)
    }
}

/// The spread below which a heatmap's colours are compressed: a scale
/// always spans at least this share of the largest |value| (centred on
/// the values), so that Sharpe 1.890 and 1.901 look alike instead of dark
/// and bright.
pub const MIN_RELATIVE_SPAN: f64 = 0.1;

/// The range a sequential colour scale spans for values in `[lo, hi]`, and
/// whether it was widened because the spread is negligible relative to the
/// values ([`MIN_RELATIVE_SPAN`]).
pub fn scale_range(lo: f64, hi: f64) -> (f64, f64, bool) {
    let mag = lo.abs().max(hi.abs());
    let min_span = MIN_RELATIVE_SPAN * mag;
    if hi - lo >= min_span || mag == 0.0 {
        return (lo, hi, false);
    }
    let mid = 0.5 * (lo + hi);
    (mid - 0.5 * min_span, mid + 0.5 * min_span, true)
}

/// A grid of coloured cells with values: monthly returns or a sweep's
/// ranking metric over two parameters, with a colour bar.
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
    /// How cells and the colour bar print values.
    pub cells: CellFormat,
    /// The values the colour scale spans (shared by the panels of one
    /// sweep sample); `None`: this chart's own values.
    pub range: Option<(f64, f64)>,
    /// The last column is a total (the year of a monthly grid): set apart,
    /// coloured on its own scale.
    pub total_column: bool,
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

/// A colour scale: maps a value to a colour and says whether text on it
/// should be white.
#[derive(Debug, Clone, Copy)]
enum Scale {
    /// Symmetric around zero, `±scale`.
    Diverging(f64),
    /// `lo..hi`, flipped when lower is better.
    Sequential { lo: f64, hi: f64, flip: bool },
}

impl Scale {
    fn t(&self, v: f64) -> f64 {
        match *self {
            Scale::Diverging(s) => {
                if s > 0.0 {
                    0.5 + 0.5 * (v / s).clamp(-1.0, 1.0)
                } else {
                    0.5
                }
            }
            Scale::Sequential { lo, hi, flip } => {
                let t = if hi > lo {
                    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
                } else {
                    0.5
                };
                if flip {
                    1.0 - t
                } else {
                    t
                }
            }
        }
    }

    fn color(&self, v: f64) -> RGBColor {
        match *self {
            Scale::Diverging(s) => diverging(v, s),
            Scale::Sequential { .. } => sequential(self.t(v)),
        }
    }

    fn dark(&self, v: f64) -> bool {
        matches!(self, Scale::Sequential { .. }) && self.t(v) < 0.55
    }

    /// The values at the bottom and the top of the colour bar (worst to
    /// best).
    fn ends(&self) -> (f64, f64) {
        match *self {
            Scale::Diverging(s) => (-s, s),
            Scale::Sequential { lo, hi, flip } => {
                if flip {
                    (hi, lo)
                } else {
                    (lo, hi)
                }
            }
        }
    }
}

fn grid_scale(
    diverging: bool,
    lower_is_better: bool,
    vals: &[f64],
    range: Option<(f64, f64)>,
) -> Scale {
    let (lo, hi) = range
        .or_else(|| finite_range(vals.iter().copied()))
        .unwrap_or((0.0, 1.0));
    if diverging {
        Scale::Diverging(lo.abs().max(hi.abs()))
    } else {
        let (lo, hi, _) = scale_range(lo, hi);
        Scale::Sequential {
            lo,
            hi,
            flip: lower_is_better,
        }
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
        // Room on the right for the colour bar and its labels.
        let (left, top, right, bottom) = (90, 36, 96, 46);
        let gap = if self.total_column { 8 } else { 0 };
        let cw = ((w - left - right - gap) / cols).max(1);
        let ch = ((h - top - bottom) / rows).max(1);
        let total_col = self.total_column.then_some(cols as usize - 1);
        let collect = |total: bool| -> Vec<f64> {
            self.values
                .iter()
                .flat_map(|row| {
                    row.iter()
                        .enumerate()
                        .filter(move |(c, _)| (Some(*c) == total_col) == total)
                        .filter_map(|(_, v)| *v)
                })
                .filter(|v| v.is_finite())
                .collect()
        };
        let main = grid_scale(
            self.diverging,
            self.lower_is_better,
            &collect(false),
            self.range,
        );
        let total = grid_scale(self.diverging, self.lower_is_better, &collect(true), None);
        // A grid without one value has no scale to show and no best cell.
        let has_values = !collect(false).is_empty();
        let label_size = (ch.min(cw) / 2).clamp(9, 14) as u32;
        let cell_x = |c: usize| left + c as i32 * cw + if Some(c) == total_col { gap } else { 0 };
        for (r, row) in self.values.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let x = cell_x(c);
                let y = top + r as i32 * ch;
                let scale = if Some(c) == total_col { &total } else { &main };
                let fill = match v {
                    Some(v) if v.is_finite() => scale.color(*v),
                    _ => RGBColor(238, 238, 238),
                };
                root.draw(&Rectangle::new(
                    [(x, y), (x + cw - 1, y + ch - 1)],
                    fill.filled(),
                ))
                .map_err(err)?;
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    if cw >= 34 && ch >= 14 {
                        let color = if scale.dark(v) { WHITE } else { INK };
                        root.draw(&Text::new(
                            self.cells.text(v),
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
        if let Some((r, c)) = self.highlight.filter(|_| has_values) {
            let x = cell_x(c);
            let y = top + r as i32 * ch;
            root.draw(&Rectangle::new(
                [(x - 1, y - 1), (x + cw, y + ch)],
                WHITE.stroke_width(1),
            ))
            .map_err(err)?;
            // Three 1-pixel frames: SVG rectangles ignore stroke widths.
            for i in 0..3 {
                root.draw(&Rectangle::new(
                    [(x + i, y + i), (x + cw - 1 - i, y + ch - 1 - i)],
                    RED_.stroke_width(1),
                ))
                .map_err(err)?;
            }
        }
        if !has_values {
            return Ok(());
        }
        // Colour bar: worst at the bottom, best at the top, with values.
        let (bx, by0, by1) = (w - right + 12, top, top + rows * ch);
        let steps = 64;
        let (v_lo, v_hi) = main.ends();
        for k in 0..steps {
            let f0 = k as f64 / steps as f64;
            let v = v_lo + (v_hi - v_lo) * (f0 + 0.5 / steps as f64);
            let ya = by1 - ((by1 - by0) as f64 * (k + 1) as f64 / steps as f64).round() as i32;
            let yb = by1 - ((by1 - by0) as f64 * f0).round() as i32;
            root.draw(&Rectangle::new(
                [(bx, ya), (bx + 14, yb)],
                main.color(v).filled(),
            ))
            .map_err(err)?;
        }
        root.draw(&Rectangle::new(
            [(bx, by0), (bx + 14, by1)],
            GRID.stroke_width(1),
        ))
        .map_err(err)?;
        let bar_labels: &[(f64, f64)] = if by1 - by0 >= 60 {
            &[(1.0, v_hi), (0.5, 0.5 * (v_lo + v_hi)), (0.0, v_lo)]
        } else {
            &[(1.0, v_hi), (0.0, v_lo)]
        };
        for &(f, v) in bar_labels {
            let y = by1 - ((by1 - by0) as f64 * f).round() as i32;
            root.draw(&Text::new(
                self.cells.text(v),
                (bx + 18, y),
                font(11).pos(Pos::new(HPos::Left, VPos::Center)),
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
                (cell_x(c) + cw / 2, top + rows * ch + 6),
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

/// Decimals of the seconds on a time axis spanning `span` seconds, so
/// that ticks about a tenth of the span apart read differently (`0.005`,
/// `0.010` on a 40 ms run; `20`, `40` on a minute).
pub fn seconds_decimals(span: f64) -> usize {
    if !(span.is_finite() && span > 0.0) {
        return 2;
    }
    // plotters steps by 1, 2 or 5 × 10^k with at most ten ticks: the step
    // is at least a tenth of the span.
    (-((span / 10.0).log10().floor() as i32)).clamp(0, 6) as usize
}

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
        let secs_decimals = seconds_decimals(x1 - x0);
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
            .x_label_formatter(&|x| format!("{x:.secs_decimals$}"))
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
                    format!("peak {py:.1} MiB at {px:.secs_decimals$} s ({})", p.phase),
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

/// Most symbols drawn one bar each in the coverage chart; more are shown
/// by their count only.
pub const COVERAGE_BARS_MAX: usize = 40;

/// Which symbols had data when: one bar per symbol from its first to its
/// last bar (up to [`COVERAGE_BARS_MAX`] symbols), and the number of
/// symbols with data over time.
pub struct CoverageChart {
    /// `(symbol, first bar µs, last bar µs)`, drawn top to bottom.
    pub spans: Vec<(String, i64, i64)>,
    /// `(time µs, symbols with data)`.
    pub live: Vec<(i64, f64)>,
    /// Symbols in the run.
    pub total: usize,
    /// Size in pixels.
    pub size: (u32, u32),
}

impl CoverageChart {
    /// Height of the per-symbol bars' panel (0 when there are too many
    /// symbols to draw one bar each).
    pub fn bars_height(n: usize) -> u32 {
        if n == 0 || n > COVERAGE_BARS_MAX {
            0
        } else {
            60 + 16 * n as u32
        }
    }
}

impl Chart for CoverageChart {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let times = self
            .spans
            .iter()
            .flat_map(|s| [s.1, s.2])
            .chain(self.live.iter().map(|p| p.0))
            .map(|t| t as f64);
        let Some((x0, x1)) = finite_range(times) else {
            return message(root, "no bars recorded");
        };
        let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
        let axis = TimeAxis::new(x0, x1, 10);
        let bars_h = CoverageChart::bars_height(self.spans.len());
        let (upper, lower) = root.split_vertically(bars_h);
        if bars_h > 0 {
            let n = self.spans.len();
            let names: Vec<&str> = self.spans.iter().map(|s| s.0.as_str()).collect();
            let row_of = |y: f64| -> Option<usize> {
                let r = y.round();
                ((y - r).abs() < 1e-6 && r >= 0.0 && (r as usize) < n).then(|| n - 1 - r as usize)
            };
            let mut chart = ChartBuilder::on(&upper)
                .caption("First to last bar of each symbol", font(15))
                .margin(10)
                .margin_right(24)
                .x_label_area_size(22)
                .y_label_area_size(150)
                .build_cartesian_2d(axis.clone(), -0.6..(n as f64 - 0.4))
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_labels(10)
                .y_labels(n)
                .x_label_formatter(&|x| axis.label(*x))
                .y_label_formatter(&|y| {
                    row_of(*y).map_or(String::new(), |r| {
                        let name = names[r];
                        if name.chars().count() > 22 {
                            format!("{}…", name.chars().take(21).collect::<String>())
                        } else {
                            name.to_string()
                        }
                    })
                })
                .light_line_style(WHITE)
                .bold_line_style(GRID)
                .label_style(font(11))
                .draw()
                .map_err(err)?;
            chart
                .draw_series(self.spans.iter().enumerate().map(|(i, s)| {
                    let y = (n - 1 - i) as f64;
                    Rectangle::new(
                        [(s.1 as f64, y - 0.32), (s.2 as f64, y + 0.32)],
                        BLUE.mix(0.7).filled(),
                    )
                }))
                .map_err(err)?;
        }
        let top = (self.total as f64 * 1.08).max(1.0);
        let mut chart = ChartBuilder::on(&lower)
            .caption(format!("Symbols with data (of {})", self.total), font(15))
            .margin(10)
            .margin_right(24)
            .x_label_area_size(28)
            .y_label_area_size(150)
            .build_cartesian_2d(axis.clone(), 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(10)
            .y_labels(5)
            .x_label_formatter(&|x| axis.label(*x))
            .y_label_formatter(&|y| {
                if *y == y.trunc() {
                    format!("{y:.0}")
                } else {
                    String::new()
                }
            })
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .label_style(font(12))
            .draw()
            .map_err(err)?;
        let pts: Vec<(f64, f64)> = self.live.iter().map(|&(t, c)| (t as f64, c)).collect();
        chart
            .draw_series(
                AreaSeries::new(min_max(&pts, self.size.0 as usize), 0.0, BLUE.mix(0.2))
                    .border_style(BLUE),
            )
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T2020: f64 = 1_577_836_800_000_000.0; // 2020-01-01
    const DAY: f64 = 86_400_000_000.0;

    fn labels(lo: f64, hi: f64) -> Vec<String> {
        let a = TimeAxis::new(lo, hi, 10);
        a.ticks().iter().map(|t| a.label(*t)).collect()
    }

    /// Attack on the report: a sweep panel where no combination has a
    /// value drew a made-up 0 … 1 colour bar and outlined a "best" cell.
    #[test]
    fn heatmap_without_values_has_no_colour_bar_and_no_best_cell() {
        let grid = |v: Option<f64>| GridChart {
            title: "Sharpe".into(),
            x_labels: vec!["0.01".into(), "0.02".into()],
            y_labels: vec!["0.03".into()],
            x_name: "lambda".into(),
            y_name: "decay".into(),
            values: vec![vec![v, None]],
            diverging: false,
            lower_is_better: false,
            cells: CellFormat::Fixed(2),
            range: Some((0.0, 1.0)),
            total_column: false,
            highlight: Some((0, 0)),
            size: (400, 200),
        };
        let red = |svg: &str| svg.to_ascii_uppercase().contains("#C4342C");
        let with = to_svg(&grid(Some(0.5))).unwrap();
        assert!(red(&with) && with.contains("1.00"));
        let without = to_svg(&grid(None)).unwrap();
        assert!(!red(&without) && !without.contains("1.00"), "{without}");
    }

    #[test]
    fn svg_text_never_holds_characters_xml_forbids() {
        let svg = to_svg(&grid_named("a\u{7}b\u{1b}c")).unwrap();
        assert!(!svg
            .chars()
            .any(|c| c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r')));
        assert!(svg.contains("a\\u{7}b\\u{1b}c"), "{svg}");
    }

    fn grid_named(title: &str) -> GridChart {
        GridChart {
            title: title.into(),
            x_labels: vec!["x".into()],
            y_labels: vec!["y".into()],
            x_name: String::new(),
            y_name: String::new(),
            values: vec![vec![Some(1.0)]],
            diverging: true,
            lower_is_better: false,
            cells: CellFormat::Fixed(2),
            range: None,
            total_column: false,
            highlight: None,
            size: (200, 120),
        }
    }

    #[test]
    fn time_ticks_fall_on_calendar_boundaries() {
        // 800 daily bars: quarters, labelled by month.
        let l = labels(T2020, T2020 + 799.0 * DAY);
        assert_eq!(l[..3], ["Jan 2020", "Apr 2020", "Jul 2020"]);
        assert!(l.len() <= 10);
        // 28 years: every 5 years, on 1 January.
        let l = labels(T2020 - 28.0 * 365.25 * DAY, T2020);
        assert_eq!(l, ["1995", "2000", "2005", "2010", "2015", "2020"]);
        // Two months of daily bars: Mondays.
        let a = TimeAxis::new(T2020, T2020 + 60.0 * DAY, 10);
        for t in a.ticks() {
            let d = chrono::DateTime::from_timestamp_micros(*t as i64).unwrap();
            assert_eq!(d.format("%a %H:%M").to_string(), "Mon 00:00");
        }
        // Three days of hourly bars: every 12 hours.
        let l = labels(T2020, T2020 + 3.0 * DAY);
        assert_eq!(l[..2], ["01-01 00:00", "01-01 12:00"]);
        // A degenerate range has no ticks, never a panic.
        assert!(TimeAxis::new(T2020, T2020, 10).ticks().len() <= 1);
        assert!(TimeAxis::new(f64::NAN, T2020, 10).ticks().is_empty());
    }

    #[test]
    fn memory_seconds_have_enough_decimals() {
        assert_eq!(seconds_decimals(2.0), 1);
        assert_eq!(seconds_decimals(0.04), 3);
        assert_eq!(seconds_decimals(60.0), 0);
        assert_eq!(seconds_decimals(0.0), 2);
    }

    #[test]
    fn heatmap_scale_and_cells() {
        // Negligible spread: widened around the middle.
        let (lo, hi, widened) = scale_range(1.890, 1.901);
        assert!(widened && (hi - lo - 0.1901).abs() < 1e-9);
        assert!(!scale_range(1.0, 2.0).2);
        assert!(!scale_range(0.0, 0.0).2);
        let f = CellFormat::for_values([1.89, 1.901].into_iter());
        assert_eq!((f.text(1.9), f.text(1.901)), ("1.90".into(), "1.90".into()));
        assert_eq!(
            CellFormat::for_values([120.0].into_iter()).text(120.4),
            "120"
        );
        let p = CellFormat::Percent {
            decimals: 1,
            negate: true,
        };
        assert_eq!(p.text(0.123), "-12.3%");
    }

    fn svg_of_symbol(sides: &[&str]) -> String {
        let ts: Vec<i64> = (0..50).map(|i| T2020 as i64 + i * DAY as i64).collect();
        let s = Series {
            ts: ts.clone(),
            values: (0..50).map(|i| 100.0 + i as f64).collect(),
        };
        let trades = sides
            .iter()
            .enumerate()
            .map(|(k, side)| Trade {
                side: side.to_string(),
                entry_ts: ts[10 * k + 1],
                entry_price: 101.0,
                exit_ts: Some(ts[10 * k + 5]),
                exit_price: 105.0,
            })
            .collect();
        to_svg(&SymbolChart {
            symbol: "X".into(),
            close: s.clone(),
            avg: s,
            trades,
            trade_returns: vec![(ts[5], 0.04)],
            long_threshold: Some(0.5),
            short_threshold: None,
            signal_caption: None,
            size: (800, 500),
        })
        .unwrap()
    }

    #[test]
    fn legend_names_only_the_markers_drawn() {
        let long_only = svg_of_symbol(&["long", "long"]);
        assert!(long_only.contains("long entry") && !long_only.contains("short entry"));
        let both = svg_of_symbol(&["long", "short"]);
        assert!(both.contains("short entry"));
        assert!(both.contains("Return of each trade at its exit"));
    }
}
