//! Training plots (loss curves, learning rate, evaluation numbers) as PNG files.
//!
//! Drawn with `plotters` into an in-memory RGB buffer, encoded with `png`, and written atomically
//! (a temporary file in the same directory, then a rename) so a browser or TensorBoard polling the
//! run directory never sees half a plot.
//!
//! Text needs no system fonts: DejaVu Sans (`assets/fonts/DejaVuSans.ttf`, unmodified from
//! Debian's `fonts-dejavu-core` 2.37; licence in `assets/fonts/DejaVuSans-LICENSE.txt`) is
//! embedded in the binary and registered with plotters' `ab_glyph` renderer on first use, so plots
//! render the same on a bare machine without fontconfig or `/usr/share/fonts`.
//!
//! Every input is accepted: non-finite points are skipped, so are non-positive values on a log
//! axis, a single point gets a padded range, and a plot with nothing to show still gets written
//! with a "no data yet" note. Failures come back as [`PlotError`] naming the file.

use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

/// The embedded font (DejaVu Sans, see the module docs for its licence).
static FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// The family name plotters looks up for `FontFamily::SansSerif`.
const FONT_FAMILY: &str = "sans-serif";

/// Largest accepted side, in pixels.
const MAX_SIDE: u32 = 16_384;

/// Largest accepted area, in pixels (the RGB buffer is three bytes a pixel).
const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// Coordinates beyond this magnitude are treated like infinities and skipped: ranges built from
/// them would overflow to infinity.
const MAX_ABS: f64 = 1e300;

/// Line colours, cycled: the Tableau 10 palette, distinct on white and to most colour-blind eyes.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One named series of (x, y) points.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Shown in the legend.
    pub name: String,
    /// Drawn in order, joined by straight lines.
    pub points: Vec<(f64, f64)>,
    /// Drawn thin and pale, in the colour of the next full series: raw values under their
    /// smoothed line.
    pub faint: bool,
}

/// TensorBoard's smoothing: an exponential moving average with `weight` on the past, debiased
/// (divided by 1 − weightⁿ) so it starts at the first value instead of at 0. Non-finite values
/// are left out of the average.
pub fn smoothed(points: &[(f64, f64)], weight: f64) -> Vec<(f64, f64)> {
    let (mut average, mut mass) = (0.0, 0.0);
    points
        .iter()
        .filter(|(_, y)| y.is_finite())
        .map(|&(x, y)| {
            average = weight * average + (1.0 - weight) * y;
            mass = weight * mass + (1.0 - weight);
            (x, average / mass)
        })
        .collect()
}

/// Scale of the y axis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum YScale {
    /// Evenly spaced values.
    #[default]
    Linear,
    /// Evenly spaced powers of ten; values that are not positive are skipped.
    Log,
}

/// A line plot.
#[derive(Clone, Copy, Debug)]
pub struct PlotSpec<'a> {
    /// Drawn above the plot.
    pub title: &'a str,
    /// Description of the x axis.
    pub x_label: &'a str,
    /// Description of the y axis.
    pub y_label: &'a str,
    /// Linear or logarithmic y axis.
    pub y_scale: YScale,
    /// The lines, each in its own colour, named in the legend.
    pub series: &'a [Series],
}

/// A plot that could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Drawing, encoding or writing `path` failed.
    #[error("{}: {message}", path.display())]
    Draw {
        /// The PNG file that was to be written.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Draws `spec` as a `width`×`height` PNG at `path`, written atomically (temp file in the same
/// dir, then rename) so a browser or TensorBoard never sees half a plot.
///
/// Sizes must be non-zero and at most 16384 a side (64 Mi pixels in all); very small sizes are
/// drawn as well as they fit.
pub fn draw_line_plot(
    path: &Path,
    spec: &PlotSpec<'_>,
    width: u32,
    height: u32,
) -> Result<(), PlotError> {
    let fail = |message: String| PlotError::Draw {
        path: path.to_path_buf(),
        message,
    };
    if width == 0 || height == 0 {
        return Err(fail(format!("plot size {width}x{height} has a zero side")));
    }
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(fail(format!(
            "plot size {width}x{height} is too large (at most {MAX_SIDE} a side, {MAX_PIXELS} pixels)"
        )));
    }
    ensure_font().map_err(fail)?;

    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    // plotters is third-party drawing code full of arithmetic on pixel sizes; a plot is never
    // worth a crashed training run, so a panic in it is reported as an ordinary error.
    let drawn = panic::catch_unwind(AssertUnwindSafe(|| render(&mut rgb, width, height, spec)))
        .unwrap_or_else(|payload| Err(format!("plotting panicked: {}", panic_text(&payload))));
    drawn.map_err(fail)?;

    let png = encode_png(&rgb, width, height).map_err(|e| fail(format!("encoding PNG: {e}")))?;
    oxidiff_data::replace_file(path, &png).map_err(|e| fail(e.to_string()))
}

/// Registers the embedded font once per process.
fn ensure_font() -> Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| register_font(FONT_FAMILY, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err("the embedded font could not be loaded".to_string())
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// A series ready to draw: its points already on the plotted scale (log10 of y on a log axis).
struct Prepared<'a> {
    name: &'a str,
    points: Vec<(f64, f64)>,
    faint: bool,
}

/// Keeps the points that can be drawn on `scale`, mapping y to log10(y) on a log axis.
fn prepare<'a>(series: &'a [Series], scale: YScale) -> Vec<Prepared<'a>> {
    series
        .iter()
        .map(|s| Prepared {
            name: &s.name,
            faint: s.faint,
            points: s
                .points
                .iter()
                .filter(|(x, y)| usable(*x) && usable(*y))
                .filter_map(|&(x, y)| match scale {
                    YScale::Linear => Some((x, y)),
                    YScale::Log => (y > 0.0).then(|| (x, y.log10())),
                })
                .collect(),
        })
        .collect()
}

fn usable(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_ABS
}

/// The span of `values`, padded on both sides by `frac` of it; a (nearly) zero-width span is
/// widened around its value so the axis still has a sensible extent.
fn padded_range(values: impl Iterator<Item = f64>, frac: f64, log: bool) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return 0.0..1.0;
    }
    let magnitude = lo.abs().max(hi.abs());
    let span = hi - lo;
    let pad = if span > magnitude * 1e-9 && span > f64::MIN_POSITIVE {
        span * frac
    } else if log {
        // Half a decade either side of a flat line on a log axis.
        0.5
    } else if magnitude > 0.0 {
        magnitude * 0.05
    } else {
        1.0
    };
    (lo - pad)..(hi + pad)
}

/// Evenly spaced "nice" ticks (1, 2 or 5 times a power of ten apart) covering `range`, about
/// `target` of them; also the spacing.
fn nice_ticks(range: &Range<f64>, target: usize) -> (Vec<f64>, f64) {
    let span = range.end - range.start;
    if !(span.is_finite() && span > 0.0) {
        return (vec![range.start], 0.0);
    }
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    // The candidate spacing whose tick count is nearest `target` (by ratio).
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .min_by(|a, b| {
            let off = |s: f64| (s / raw).ln().abs();
            off(*a).total_cmp(&off(*b))
        })
        .unwrap_or(raw);
    if !(step.is_finite() && step > 0.0) {
        return (vec![range.start], 0.0);
    }
    let first = (range.start / step).ceil();
    let ticks = (0..64)
        .map(|i| (first + f64::from(i)) * step)
        .take_while(|&v| v <= range.end + step * 1e-9)
        // Snap round-off like 3e-17 to an honest zero.
        .map(|v| if v.abs() < step * 1e-9 { 0.0 } else { v })
        .collect();
    (ticks, step)
}

/// Ticks for a log axis over `range` (in log10 units): powers of ten, or 1-2-5 or 1..9 times them
/// when the range is short enough, plain nice ticks within a decade; at most about `max` of them.
/// Also returns minor ticks for light grid lines. All values in log10 units.
fn log_ticks(range: &Range<f64>, max: usize) -> (Vec<f64>, Vec<f64>) {
    let inside = |v: &f64| *v >= range.start - 1e-12 && *v <= range.end + 1e-12;
    let decades = |mantissas: &[f64]| -> Vec<f64> {
        let (k0, k1) = (range.start.floor() as i32, range.end.ceil() as i32);
        (k0..=k1)
            .flat_map(|k| mantissas.iter().map(move |m| m.log10() + f64::from(k)))
            .filter(inside)
            .collect()
    };
    let span = range.end - range.start;
    let all: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
    if span <= max as f64 + 1.0 {
        let minor = decades(all);
        for mantissas in [all, &[1.0, 2.0, 5.0], &[1.0]] {
            let ticks = decades(mantissas);
            if ticks.len() <= max && ticks.len() >= 2 {
                return (ticks, minor);
            }
        }
        if minor.len() < 2 {
            // Less than a decade without two round values in it: nice ticks on the values
            // themselves (the range is inside one or two decades, so this is safe from overflow).
            let values = 10f64.powf(range.start)..10f64.powf(range.end);
            let (ticks, _) = nice_ticks(&values, max.min(6));
            let ticks: Vec<f64> = ticks
                .into_iter()
                .filter(|v| *v > 0.0)
                .map(f64::log10)
                .filter(inside)
                .collect();
            if !ticks.is_empty() {
                return (ticks, Vec::new());
            }
        }
    }
    // Many decades: every 1st, 2nd, 5th, 10th, ... power of ten.
    let (ticks, step) = nice_ticks(range, max.min(8));
    let minor = if step <= 1.0 && span < 100.0 {
        decades(all)
    } else {
        Vec::new()
    };
    (ticks, minor)
}

/// A short tick label: up to four significant digits, exponent notation when far from 1.
fn fmt_tick(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let a = v.abs();
    if a == 0.0 {
        return "0".to_string();
    }
    if !(1e-3..1e6).contains(&a) {
        let s = format!("{v:.2e}");
        return match s.split_once('e') {
            Some((mantissa, exp)) => format!("{}e{exp}", trim_zeros(mantissa)),
            None => s,
        };
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 9) as usize;
    let s = format!("{v:.decimals$}");
    let s = trim_zeros(&s);
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A linear f64 axis with ticks chosen here rather than by plotters. (plotters' own
/// `WithKeyPoints` cannot be used on f64 axes with a custom label formatter.)
struct TickedAxis {
    inner: RangedCoordf64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl TickedAxis {
    fn new(range: Range<f64>, bold: Vec<f64>, light: Vec<f64>) -> Self {
        Self {
            inner: range.into(),
            bold,
            light,
        }
    }
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

/// Draws the whole plot into `rgb` (a `width`×`height` RGB buffer).
fn render(rgb: &mut [u8], width: u32, height: u32, spec: &PlotSpec<'_>) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::with_buffer(rgb, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;

    let log = spec.y_scale == YScale::Log;
    let series = prepare(spec.series, spec.y_scale);
    let has_data = series.iter().any(|s| !s.points.is_empty());

    // Sizes follow the image: 14 px labels on a 640×400 plot.
    let scale = ((f64::from(width) * f64::from(height)).sqrt() / 506.0).clamp(0.75, 4.0);
    let px = |v: f64| (v * scale).round().max(1.0);
    let title_font = (FontFamily::SansSerif, px(20.0)).into_font();
    let label_font = (FontFamily::SansSerif, px(13.0)).into_font();
    let desc_font = (FontFamily::SansSerif, px(14.0)).into_font();
    let legend_font = (FontFamily::SansSerif, px(13.0)).into_font();

    let (x_range, y_range) = if has_data {
        let all = || series.iter().flat_map(|s| s.points.iter());
        (
            padded_range(all().map(|p| p.0), 0.02, false),
            padded_range(all().map(|p| p.1), 0.05, log),
        )
    } else {
        (0.0..1.0, 0.0..1.0)
    };

    // Tick counts from the room available; labels are ~7 characters wide at most.
    let x_target = ((f64::from(width) / px(110.0)) as usize).clamp(2, 10);
    let y_target = ((f64::from(height) / px(60.0)) as usize).clamp(2, 10);
    let (x_ticks, x_step) = nice_ticks(&x_range, x_target);
    let x_minor = if x_step > 0.0 {
        nice_ticks(&x_range, x_target * 5).0
    } else {
        Vec::new()
    };
    let (y_ticks, y_minor) = if log && has_data {
        log_ticks(&y_range, y_target)
    } else {
        let (ticks, step) = nice_ticks(&y_range, y_target);
        let minor = if step > 0.0 {
            nice_ticks(&y_range, y_target * 5).0
        } else {
            Vec::new()
        };
        (ticks, minor)
    };
    // An empty plot gets no numbers: its axes mean nothing yet.
    let y_fmt = |v: &f64| match (has_data, log) {
        (false, _) => String::new(),
        (true, true) => fmt_tick(10f64.powf(*v)),
        (true, false) => fmt_tick(*v),
    };
    let x_fmt = |v: &f64| {
        if has_data {
            fmt_tick(*v)
        } else {
            String::new()
        }
    };

    // Room for the widest y tick label plus the rotated y description; plotters puts tick labels
    // a fixed 10 px (twice its tick mark) from the axis, whatever the size.
    let label_style = label_font.clone().into_text_style(&root);
    let widest_y = y_ticks
        .iter()
        .map(|v| {
            root.estimate_text_size(&y_fmt(v), &label_style)
                .map_or(0, |(w, _)| w)
        })
        .max()
        .unwrap_or(0);
    let y_area = widest_y + 10 + px(14.0 + 10.0) as u32;
    let x_area = 10 + px(13.0 + 14.0 + 10.0) as u32;

    let mut chart = ChartBuilder::on(&root)
        .caption(spec.title, title_font)
        .margin(px(12.0) as u32)
        .x_label_area_size(x_area)
        .y_label_area_size(y_area)
        .build_cartesian_2d(
            TickedAxis::new(x_range, x_ticks, x_minor),
            TickedAxis::new(y_range, y_ticks, y_minor),
        )
        .map_err(|e| err(&e))?;

    chart
        .configure_mesh()
        .x_desc(spec.x_label)
        .y_desc(spec.y_label)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(label_font)
        .axis_desc_style(desc_font.clone())
        .bold_line_style(BLACK.mix(0.15))
        .light_line_style(BLACK.mix(0.05))
        .draw()
        .map_err(|e| err(&e))?;

    if !has_data {
        let (xs, ys) = (chart.x_range(), chart.y_range());
        let centre = ((xs.start + xs.end) / 2.0, (ys.start + ys.end) / 2.0);
        let style = desc_font
            .color(&BLACK.mix(0.6))
            .pos(Pos::new(HPos::Center, VPos::Center));
        chart
            .plotting_area()
            .draw(&Text::new("no data yet", centre, style))
            .map_err(|e| err(&e))?;
        return root.present().map_err(|e| err(&e));
    }

    let stroke = px(2.0) as u32;
    let mut full = 0;
    for s in &series {
        let colour = PALETTE[full % PALETTE.len()];
        let style = if s.faint {
            colour.mix(0.35).stroke_width(1)
        } else {
            full += 1;
            colour.stroke_width(stroke)
        };
        let label = if s.points.is_empty() {
            format!("{} (no data)", s.name)
        } else {
            s.name.to_string()
        };
        let annotation = if s.points.len() == 1 {
            // A lone point would be an invisible zero-length line: draw it as a dot.
            chart.draw_series(
                s.points
                    .iter()
                    .map(|&p| Circle::new(p, stroke + 1, colour.filled())),
            )
        } else {
            chart.draw_series(LineSeries::new(s.points.iter().copied(), style))
        }
        .map_err(|e| err(&e))?;
        let legend_len = px(18.0) as i32;
        annotation
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + legend_len, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(legend_font)
        .margin(px(8.0) as u32)
        .legend_area_size(px(18.0 + 8.0) as u32)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests;
