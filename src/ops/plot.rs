//! `plot`: the history of one or more metrics for several runs, one line chart (panel) per
//! metric stacked in one picture (SVG or PNG), drawn with plotters. Text is laid out (and drawn, for PNG) with a font embedded in the binary, so
//! a machine with no fonts installed draws the same picture.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::Hinted;
use crate::store::{Store, StoreError};

/// What the x axis shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XAxis {
    /// The reported step (the report order for points without one).
    #[default]
    Step,
    /// Seconds since the run's first timed point (points without a time are left out).
    Time,
}

/// The picture format, from the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Svg,
    Png,
}

impl ImageFormat {
    /// `.svg` or `.png` (any case).
    pub fn from_path(path: &Path) -> Option<ImageFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "svg" => Some(ImageFormat::Svg),
            "png" => Some(ImageFormat::Png),
            _ => None,
        }
    }
}

/// A plot request: runs (ids or unique prefixes), the metrics (one panel each), the x axis and
/// the smoothing.
#[derive(Debug, Clone)]
pub struct PlotRequest {
    pub runs: Vec<String>,
    pub metrics: Vec<String>,
    pub x: XAxis,
    /// The weight of an exponential moving average drawn over each line (0 ≤ w < 1, as
    /// TensorBoard's smoothing slider); the raw line stays, faint. `None`: no smoothing.
    pub smooth: Option<f64>,
}

/// One line of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub run_id: String,
    /// The legend entry: the run's name and short id, or the short id.
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// NaN / ±inf values, which cannot be drawn.
    pub non_finite: usize,
    /// Points left out because they have no time (`XAxis::Time`).
    pub untimed: usize,
}

/// The data of a chart (one metric, one panel), ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub metric: String,
    pub x: XAxis,
    pub series: Vec<Series>,
    /// Runs that have no such metric (ids).
    pub missing: Vec<String>,
    /// The smoothing weight (see [`PlotRequest::smooth`]).
    pub smooth: Option<f64>,
}

/// Errors of `plot`.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("none of the runs has a metric '{metric}'")]
    NoSuchMetric { metric: String, known: Vec<String> },
    #[error("metric '{metric}' has nothing to draw: {why}")]
    Empty { metric: String, why: String },
    #[error("cannot draw the chart: {0}")]
    Render(String),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Hinted for PlotError {
    fn hint(&self) -> Option<String> {
        match self {
            PlotError::Store(e) => e.hint(),
            PlotError::NoSuchMetric { known, .. } if known.is_empty() => {
                Some("these runs recorded no metrics".into())
            }
            // Keys come from the jobs (ESC, OSC, U+202E…): shown, never obeyed.
            PlotError::NoSuchMetric { known, .. } => Some(format!(
                "their metrics: {}",
                known
                    .iter()
                    .map(|k| crate::sanitize::escape(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            PlotError::Empty { .. } => {
                Some("try --x step, or `repro show ID` to see the values".into())
            }
            PlotError::Render(_) => None,
            PlotError::Write { .. } => Some("check the directory exists and is writable".into()),
        }
    }
}

/// Loads one chart per metric of `req`, in the order given (a metric named twice is drawn once).
pub fn charts(store: &Store, req: &PlotRequest) -> Result<Vec<Chart>, PlotError> {
    let mut out: Vec<Chart> = Vec::new();
    for metric in &req.metrics {
        if out.iter().any(|c| &c.metric == metric) {
            continue;
        }
        out.push(chart(store, req, metric)?);
    }
    Ok(out)
}

/// Loads the history of `metric` for every run of `req`.
pub fn chart(store: &Store, req: &PlotRequest, metric: &str) -> Result<Chart, PlotError> {
    let mut series = Vec::new();
    let mut missing = Vec::new();
    let mut known = std::collections::BTreeSet::new();
    for prefix in &req.runs {
        let id = store.resolve_id(prefix)?;
        if series.iter().any(|s: &Series| s.run_id == id) {
            continue;
        }
        let history = store.metric_history(&id, metric)?;
        if history.is_empty() {
            known.extend(store.metric_summaries(&id)?.into_iter().map(|m| m.key));
            missing.push(id);
            continue;
        }
        let run = store.get_run(&id)?;
        let short = &id[..id.len().min(10)];
        let label = match &run.name {
            Some(n) if !n.is_empty() => format!("{n} ({short})"),
            _ => short.to_string(),
        };
        let t0 = history
            .iter()
            .filter_map(|p| p.time)
            .fold(f64::INFINITY, f64::min);
        let mut s = Series {
            run_id: id,
            label,
            points: Vec::with_capacity(history.len()),
            non_finite: 0,
            untimed: 0,
        };
        for p in &history {
            let x = match req.x {
                XAxis::Step => p.step.map(|s| s as f64).unwrap_or(p.seq as f64),
                XAxis::Time => match p.time {
                    Some(t) => t - t0,
                    None => {
                        s.untimed += 1;
                        continue;
                    }
                },
            };
            if !p.value.is_finite() {
                s.non_finite += 1;
                continue;
            }
            s.points.push((x, p.value));
        }
        series.push(s);
    }
    if series.is_empty() {
        return Err(PlotError::NoSuchMetric {
            metric: metric.to_string(),
            known: known.into_iter().collect(),
        });
    }
    if series.iter().all(|s| s.points.is_empty()) {
        let why = if series.iter().any(|s| s.untimed > 0) {
            "its points carry no time".to_string()
        } else {
            "every value is NaN or infinite".to_string()
        };
        return Err(PlotError::Empty {
            metric: metric.to_string(),
            why,
        });
    }
    Ok(Chart {
        metric: metric.to_string(),
        x: req.x,
        series,
        missing,
        smooth: req.smooth,
    })
}

const FONT: &str = "sans-serif";

/// Registers the embedded font once; plotters looks fonts up by family name.
pub(crate) fn register_font() -> Result<(), PlotError> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT)
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Render(
            "the embedded font could not be loaded".into(),
        ))
    }
}

/// The size of the whole picture: one `size` panel per chart, stacked.
pub fn picture_size(charts: &[Chart], size: (u32, u32)) -> (u32, u32) {
    (size.0, size.1.saturating_mul(charts.len().max(1) as u32))
}

/// Renders the charts (one panel of `size` each, stacked) as an SVG document.
pub fn render_svg(charts: &[Chart], size: (u32, u32)) -> Result<String, PlotError> {
    register_font()?;
    let mut out = String::new();
    {
        let root =
            SVGBackend::with_string(&mut out, picture_size(charts, size)).into_drawing_area();
        draw_all(&root, charts).map_err(|e| PlotError::Render(e.to_string()))?;
    }
    Ok(out)
}

/// Renders the charts as a PNG file at `path`.
pub fn render_png(charts: &[Chart], size: (u32, u32), path: &Path) -> Result<(), PlotError> {
    register_font()?;
    // Fail on an unwritable path with the I/O error, before any drawing.
    std::fs::File::create(path).map_err(|source| PlotError::Write {
        path: path.into(),
        source,
    })?;
    let root = BitMapBackend::new(path, picture_size(charts, size)).into_drawing_area();
    draw_all(&root, charts).map_err(|e| PlotError::Render(e.to_string()))
}

/// Renders the charts as an SVG file at `path`.
pub fn write_svg(charts: &[Chart], size: (u32, u32), path: &Path) -> Result<(), PlotError> {
    let svg = render_svg(charts, size)?;
    std::fs::write(path, svg).map_err(|source| PlotError::Write {
        path: path.into(),
        source,
    })
}

/// Distinct, readable line colours (Tableau 10), then plotters' 99-colour palette.
fn colour(i: usize) -> RGBColor {
    const T10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    match T10.get(i) {
        Some(&(r, g, b)) => RGBColor(r, g, b),
        None => {
            let c = Palette99::pick(i).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

fn bounds(chart: &Chart) -> (f64, f64, f64, f64) {
    let all = chart.series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        (x0, x1) = (x0 - 1.0, x0 + 1.0);
    }
    if y1 <= y0 {
        let d = if y0 == 0.0 { 1.0 } else { y0.abs() * 0.1 };
        (y0, y1) = (y0 - d, y1 + d);
    } else {
        let pad = (y1 - y0) * 0.05;
        (y0, y1) = (y0 - pad, y1 + pad);
    }
    (x0, x1, y0, y1)
}

fn hms(secs: f64) -> String {
    let s = secs.round() as i64;
    if s.abs() < 60 {
        format!("{s}s")
    } else if s.abs() < 3600 {
        format!("{}:{:02}", s / 60, (s % 60).abs())
    } else {
        format!(
            "{}:{:02}:{:02}",
            s / 3600,
            (s / 60 % 60).abs(),
            (s % 60).abs()
        )
    }
}

/// An axis label: integers without a fraction, others with at most 4 significant decimals.
pub(crate) fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e6) {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The points of a line worth drawing in `columns` pixel columns spanning `x0..=x1`: for each
/// run of consecutive points in one column its first, lowest, highest and last point, in their
/// order. A spike or a dip survives; 5 million points become a few per column (an SVG of 40 MB
/// was the result before).
pub fn downsample(points: &[(f64, f64)], x0: f64, x1: f64, columns: usize) -> Vec<(f64, f64)> {
    if points.len() <= 4 * columns {
        return points.to_vec();
    }
    let scale = columns as f64 / (x1 - x0).max(f64::MIN_POSITIVE);
    let column = |x: f64| ((x - x0) * scale).floor() as i64;
    let mut out = Vec::with_capacity(4 * columns + 4);
    let mut start = 0;
    while start < points.len() {
        let col = column(points[start].0);
        let mut end = start + 1;
        while end < points.len() && column(points[end].0) == col {
            end += 1;
        }
        let run = &points[start..end];
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in run.iter().enumerate() {
            if p.1 < run[lo].1 {
                lo = i;
            }
            if p.1 > run[hi].1 {
                hi = i;
            }
        }
        let mut keep = [0, lo, hi, run.len() - 1];
        keep.sort_unstable();
        let mut last = usize::MAX;
        for i in keep {
            if i != last {
                out.push(run[i]);
                last = i;
            }
        }
        start = end;
    }
    out
}

/// The exponential moving average of the values with weight `w`, debiased at the start (as
/// TensorBoard smooths: the first points are not pulled towards zero).
pub fn smooth(points: &[(f64, f64)], w: f64) -> Vec<(f64, f64)> {
    let mut last = 0.0;
    let mut weight = 1.0;
    points
        .iter()
        .map(|&(x, y)| {
            last = last * w + (1.0 - w) * y;
            weight *= w;
            let debias = 1.0 - weight;
            (x, if debias > 0.0 { last / debias } else { y })
        })
        .collect()
}

/// Legend entries longer than this many characters are cut with `…`.
const LEGEND_CHARS: usize = 40;

/// The legend text of a series: escaped (see [`draw`]) and cut to [`LEGEND_CHARS`].
fn legend_label(s: &Series) -> String {
    let label = crate::sanitize::escape(&s.label);
    if label.chars().count() <= LEGEND_CHARS {
        label.into_owned()
    } else {
        let mut cut: String = label.chars().take(LEGEND_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

/// The width of the legend strip right of a panel of width `w`: room for the longest entry
/// (about 7.5 px a character at 14 px), at most a third of the panel.
fn legend_width(charts: &[Chart], w: u32) -> u32 {
    let longest = charts
        .iter()
        .flat_map(|c| c.series.iter())
        .map(|s| legend_label(s).chars().count())
        .max()
        .unwrap_or(0);
    let want = 40 + (longest as f64 * 7.5).ceil() as u32;
    want.clamp(100, (w / 3).max(100))
}

/// Draws each chart in its own panel, top to bottom; every panel has the same legend width so
/// the x axes line up.
fn draw_all<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    charts: &[Chart],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let legend_w = legend_width(charts, root.dim_in_pixel().0);
    let panels = root.split_evenly((charts.len().max(1), 1));
    for (panel, chart) in panels.iter().zip(charts) {
        draw(panel, chart, legend_w)?;
    }
    root.present()?;
    Ok(())
}

/// Draws one chart: the plot on the left, its legend in a strip of `legend_w` pixels on the
/// right, so the legend never covers a line.
fn draw<DB: DrawingBackend>(
    panel: &DrawingArea<DB, Shift>,
    chart: &Chart,
    legend_w: u32,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let width = panel.dim_in_pixel().0;
    let (root, legend) = panel.split_horizontally(width.saturating_sub(legend_w).max(1));
    let (x0, x1, y0, y1) = bounds(chart);
    // Text from the runs (a metric key, a run's name) may hold control characters, which XML
    // does not allow even escaped: written visibly by the one sanitizer, so the SVG is valid.
    let metric = crate::sanitize::escape(&chart.metric);
    let columns = root.dim_in_pixel().0.max(1) as usize;
    let mut ch = ChartBuilder::on(&root)
        .caption(metric.as_ref(), (FONT, 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let x_desc = match chart.x {
        XAxis::Step => "step",
        XAxis::Time => "time since the first point",
    };
    let time_fmt = |x: &f64| hms(*x);
    let step_fmt = |x: &f64| num(*x);
    let y_fmt = |y: &f64| num(*y);
    let mut mesh = ch.configure_mesh();
    mesh.x_desc(x_desc)
        .y_desc(metric.as_ref())
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(235, 235, 235));
    match chart.x {
        XAxis::Time => mesh.x_label_formatter(&time_fmt),
        XAxis::Step => mesh.x_label_formatter(&step_fmt),
    };
    mesh.y_label_formatter(&y_fmt);
    mesh.draw()?;
    for (i, s) in chart.series.iter().enumerate() {
        let c = colour(i);
        let drawn = downsample(&s.points, x0, x1, columns);
        match chart.smooth {
            // The raw line faint, the moving average over it in the series' colour.
            Some(w) => {
                ch.draw_series(LineSeries::new(drawn, c.mix(0.3).stroke_width(1)))?;
                let smoothed = downsample(&smooth(&s.points, w), x0, x1, columns);
                ch.draw_series(LineSeries::new(smoothed, c.stroke_width(2)))?;
            }
            None => {
                ch.draw_series(LineSeries::new(drawn, c.stroke_width(2)))?;
            }
        }
        // Short histories get markers, so a one-point series is visible at all.
        if s.points.len() <= 30 {
            ch.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
        }
    }
    // The legend, in its own strip beside the plot: a sample of each line and its label, as
    // many as fit, then how many more.
    let (_, h) = legend.dim_in_pixel();
    let row = 22;
    let fit = ((h as i32 - 60) / row).max(1) as usize;
    for (i, s) in chart.series.iter().enumerate() {
        let y = 52 + (i as i32) * row;
        if i + 1 == fit && chart.series.len() > fit {
            let more = format!("+{} more", chart.series.len() - i);
            legend.draw(&Text::new(more, (10, y - 8), (FONT, 14)))?;
            break;
        }
        let c = colour(i);
        legend.draw(&PathElement::new(vec![(6, y), (28, y)], c.stroke_width(2)))?;
        legend.draw(&Text::new(legend_label(s), (34, y - 8), (FONT, 14)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_spikes_dips_and_ends_in_order() {
        let n = 100_000;
        let mut pts: Vec<(f64, f64)> = (0..n).map(|i| (i as f64, (i % 7) as f64)).collect();
        pts[31_337].1 = 1e3;
        pts[77_777].1 = -1e3;
        let d = downsample(&pts, 0.0, (n - 1) as f64, 800);
        assert!(d.len() <= 4 * 801, "{}", d.len());
        assert_eq!(d.first(), pts.first());
        assert_eq!(d.last(), pts.last());
        assert!(d.contains(&(31_337.0, 1e3)) && d.contains(&(77_777.0, -1e3)));
        assert!(d.windows(2).all(|w| w[0].0 <= w[1].0), "report order kept");
        let few = &pts[..100];
        assert_eq!(downsample(few, 0.0, 99.0, 800), few.to_vec());
    }

    fn two_series(metric: &str, smooth: Option<f64>) -> Chart {
        let line = |k: f64| (0..50).map(|i| (i as f64, k * (i % 5) as f64)).collect();
        Chart {
            metric: metric.into(),
            x: XAxis::Step,
            series: vec![
                Series {
                    run_id: "01jd3k0000000000000000000a".into(),
                    label: "alpha-run (01jd3k0000)".into(),
                    points: line(1.0),
                    non_finite: 0,
                    untimed: 0,
                },
                Series {
                    run_id: "01jd3k0000000000000000000b".into(),
                    label: "beta (01jd3k0000)".into(),
                    points: line(2.0),
                    non_finite: 0,
                    untimed: 0,
                },
            ],
            missing: vec![],
            smooth,
        }
    }

    #[test]
    fn smoothing_is_a_debiased_moving_average() {
        let flat = smooth(&[(0.0, 3.0), (1.0, 3.0), (2.0, 3.0)], 0.9);
        for (_, y) in &flat {
            assert!((y - 3.0).abs() < 1e-12, "{flat:?}");
        }
        let s = smooth(&[(0.0, 0.0), (1.0, 10.0)], 0.5);
        assert_eq!(s[0], (0.0, 0.0));
        assert!((s[1].1 - 5.0 / 0.75).abs() < 1e-12, "{s:?}");
        assert_eq!(
            smooth(&[(0.0, 4.0), (1.0, 8.0)], 0.0),
            [(0.0, 4.0), (1.0, 8.0)]
        );
    }

    /// Every legend entry sits right of every line: the legend never covers the data.
    #[test]
    fn the_legend_is_drawn_beside_the_lines_not_over_them() {
        let svg = render_svg(&[two_series("loss", None)], (800, 500)).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let mut right_of_data = 0.0f64;
        for n in doc.descendants().filter(|n| n.has_tag_name("polyline")) {
            let pts: Vec<f64> = n
                .attribute("points")
                .unwrap()
                .split_whitespace()
                .map(|p| p.split(',').next().unwrap().parse().unwrap())
                .collect();
            if pts.len() > 2 {
                right_of_data = pts.iter().copied().fold(right_of_data, f64::max);
            }
        }
        for label in ["alpha-run (01jd3k0000)", "beta (01jd3k0000)"] {
            let text = doc
                .descendants()
                .find(|n| n.has_tag_name("text") && n.text().map(str::trim) == Some(label))
                .unwrap_or_else(|| panic!("no legend entry {label}"));
            let x: f64 = text.attribute("x").unwrap().parse().unwrap();
            assert!(
                x > right_of_data,
                "{label} at x={x}, data up to {right_of_data}"
            );
        }
    }

    /// Two metrics: two panels stacked, each with its caption; smoothing adds a line per run.
    #[test]
    fn several_metrics_are_stacked_panels_and_smoothing_adds_a_line_per_run() {
        let charts = [two_series("loss", Some(0.6)), two_series("val_acc", None)];
        assert_eq!(picture_size(&charts, (800, 400)), (800, 800));
        let svg = render_svg(&charts, (800, 400)).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(doc.root_element().attribute("height"), Some("800"));
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        assert!(
            texts.contains(&"loss") && texts.contains(&"val_acc"),
            "{texts:?}"
        );
        let lines = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter(|n| n.attribute("points").unwrap().split_whitespace().count() > 2)
            .count();
        // loss: raw + smoothed per run (4); val_acc: one per run (2).
        assert_eq!(lines, 6);
    }

    /// Issue 22 item 14: a million points give an SVG of a few hundred kilobytes (was 40 MB
    /// for five million), still drawing the one spike.
    #[test]
    fn a_million_points_make_a_small_svg() {
        let n = 1_000_000;
        let mut points: Vec<(f64, f64)> = (0..n).map(|i| (i as f64, (i % 10) as f64)).collect();
        points[500_000].1 = 100.0;
        let chart = Chart {
            metric: "loss".into(),
            x: XAxis::Step,
            series: vec![Series {
                run_id: "01jd3k0000000000000000000a".into(),
                label: "big".into(),
                points,
                non_finite: 0,
                untimed: 0,
            }],
            missing: vec![],
            smooth: None,
        };
        let svg = render_svg(&[chart], (800, 500)).unwrap();
        assert!(svg.len() < 1 << 20, "{} bytes", svg.len());
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let line = doc
            .descendants()
            .find(|n| n.has_tag_name("polyline"))
            .unwrap();
        let ys: Vec<f64> = line
            .attribute("points")
            .unwrap()
            .split_whitespace()
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        let top = ys.iter().copied().fold(f64::INFINITY, f64::min);
        let second = ys
            .iter()
            .copied()
            .filter(|y| *y > top + 1.0)
            .fold(f64::INFINITY, f64::min);
        // The spike (100) is far above every other value (at most 9).
        assert!(second - top > 100.0, "top {top}, next {second}");
    }
}
