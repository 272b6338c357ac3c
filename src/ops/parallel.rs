//! `plot --parallel`: parallel coordinates of runs — one vertical axis per parameter whose value
//! differs among the runs, then the objective (a metric statistic) — one line per run, coloured
//! by its objective. The picture of a sweep: which parameter values lead to a good objective.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::ops::plot::{num, ImageFormat, PlotError};
use crate::store::metrics::{MetricSort, Stat};
use crate::store::Store;

/// Where the runs' values lie on one axis.
#[derive(Debug, Clone, PartialEq)]
pub enum Scale {
    /// Numbers, evenly spaced from `min` to `max`.
    Linear { min: f64, max: f64 },
    /// Positive numbers spanning at least a factor of 100 (learning rates): logarithmic.
    Log { min: f64, max: f64 },
    /// Anything else: the distinct values in order, evenly spaced (a run without the
    /// parameter is `(none)`).
    Categories(Vec<String>),
}

impl Scale {
    /// The position of `value` on the axis, 0 (bottom) to 1 (top).
    fn place(&self, value: &str) -> f64 {
        let unit = |v: f64, lo: f64, hi: f64| {
            if hi > lo {
                ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
            } else {
                0.5
            }
        };
        match self {
            Scale::Linear { min, max } => unit(value.parse().unwrap_or(*min), *min, *max),
            Scale::Log { min, max } => unit(
                value.parse::<f64>().unwrap_or(*min).ln(),
                min.ln(),
                max.ln(),
            ),
            Scale::Categories(c) => {
                let i = c.iter().position(|v| v == value).unwrap_or(0);
                if c.len() > 1 {
                    i as f64 / (c.len() - 1) as f64
                } else {
                    0.5
                }
            }
        }
    }

    /// Tick labels and their positions.
    fn ticks(&self) -> Vec<(f64, String)> {
        match self {
            Scale::Linear { min, max } if max > min => (0..5)
                .map(|i| {
                    let t = i as f64 / 4.0;
                    (t, num(min + t * (max - min)))
                })
                .collect(),
            Scale::Linear { min, .. } => vec![(0.5, num(*min))],
            Scale::Log { min, max } => {
                let (a, b) = (min.log10().floor() as i32, max.log10().ceil() as i32);
                let mut out: Vec<(f64, String)> = (a..=b)
                    .map(|e| 10f64.powi(e))
                    .filter(|v| *v >= *min * 0.999 && *v <= *max * 1.001)
                    .map(|v| (self.place(&v.to_string()), num(v)))
                    .collect();
                for v in [*min, *max] {
                    if !out.iter().any(|(_, l)| *l == num(v)) {
                        out.push((self.place(&v.to_string()), num(v)));
                    }
                }
                out
            }
            Scale::Categories(c) => c
                .iter()
                .map(|v| (self.place(v), crate::sanitize::escape(v).into_owned()))
                .collect(),
        }
    }
}

/// One axis: a parameter, or (the last) the objective.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub name: String,
    pub scale: Scale,
}

/// One run's line: its place on every axis (0..=1) and its objective value.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub run_id: String,
    pub places: Vec<f64>,
    pub objective: f64,
}

/// A parallel-coordinates picture, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Parallel {
    pub axes: Vec<Axis>,
    pub lines: Vec<Line>,
    /// The objective as given (`metric:val_acc:max`).
    pub objective: String,
    /// Runs left out: they have no such metric (ids).
    pub missing: Vec<String>,
    /// Parameters every run has with the same value (not drawn: they explain nothing).
    pub constant: Vec<String>,
}

/// Loads the runs' parameters and objective.
pub fn parallel(
    store: &Store,
    runs: &[String],
    objective: &MetricSort,
    objective_spec: &str,
) -> Result<Parallel, PlotError> {
    let mut rows: Vec<(String, BTreeMap<String, String>, f64)> = Vec::new();
    let mut missing = Vec::new();
    let mut known = BTreeSet::new();
    for prefix in runs {
        let id = store.resolve_id(prefix)?;
        if rows.iter().any(|r| r.0 == id) || missing.contains(&id) {
            continue;
        }
        let summaries = store.metric_summaries(&id)?;
        match summaries.iter().find(|m| m.key == objective.key) {
            Some(m) if objective.stat.of(m).is_finite() => {
                let run = store.get_run(&id)?;
                rows.push((id, run.params, objective.stat.of(m)));
            }
            _ => {
                known.extend(summaries.into_iter().map(|m| m.key));
                missing.push(id);
            }
        }
    }
    if rows.is_empty() {
        return Err(PlotError::NoSuchMetric {
            metric: objective.key.clone(),
            known: known.into_iter().collect(),
        });
    }
    let keys: BTreeSet<&String> = rows.iter().flat_map(|r| r.1.keys()).collect();
    let mut axes = Vec::new();
    let mut constant = Vec::new();
    let none = "(none)".to_string();
    for key in keys {
        let values: Vec<&String> = rows.iter().map(|r| r.1.get(key).unwrap_or(&none)).collect();
        if values.iter().all(|v| *v == values[0]) {
            constant.push(key.clone());
            continue;
        }
        axes.push(Axis {
            name: key.clone(),
            scale: scale_of(&values),
        });
    }
    let objectives: Vec<f64> = rows.iter().map(|r| r.2).collect();
    let (lo, hi) = objectives
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let stat = match objective.stat {
        Stat::Last => "",
        Stat::Min => " (min)",
        Stat::Max => " (max)",
        Stat::Count => " (count)",
    };
    axes.push(Axis {
        name: format!("{}{stat}", objective.key),
        scale: Scale::Linear { min: lo, max: hi },
    });
    let n = axes.len();
    let lines = rows
        .iter()
        .map(|(id, params, obj)| {
            let mut places: Vec<f64> = axes[..n - 1]
                .iter()
                .map(|a| a.scale.place(params.get(&a.name).unwrap_or(&none)))
                .collect();
            places.push(axes[n - 1].scale.place(&obj.to_string()));
            Line {
                run_id: id.clone(),
                places,
                objective: *obj,
            }
        })
        .collect();
    Ok(Parallel {
        axes,
        lines,
        objective: objective_spec.to_string(),
        missing,
        constant,
    })
}

/// Numbers get a linear axis (logarithmic when all are positive and span a factor of 100 or
/// more); anything else, categories in numeric-then-text order.
fn scale_of(values: &[&String]) -> Scale {
    let nums: Option<Vec<f64>> = values
        .iter()
        .map(|v| v.trim().parse::<f64>().ok().filter(|x| x.is_finite()))
        .collect();
    match nums {
        Some(n) => {
            let (min, max) = n
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(*v), b.max(*v))
                });
            if min > 0.0 && max / min >= 100.0 {
                Scale::Log { min, max }
            } else {
                Scale::Linear { min, max }
            }
        }
        None => {
            let mut c: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            c.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => x.total_cmp(&y),
                (Ok(_), Err(_)) => std::cmp::Ordering::Less,
                (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
                _ => a.cmp(b),
            });
            c.dedup();
            Scale::Categories(c)
        }
    }
}

/// Viridis, five stops: dark purple (lowest objective) to yellow (highest).
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

const FONT: &str = "sans-serif";

/// Renders the picture as SVG.
pub fn render_svg(p: &Parallel, size: (u32, u32)) -> Result<String, PlotError> {
    crate::ops::plot::register_font()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        draw(&root, p).map_err(|e| PlotError::Render(e.to_string()))?;
    }
    Ok(out)
}

/// Writes the picture to `path` as SVG or PNG.
pub fn write(
    p: &Parallel,
    size: (u32, u32),
    path: &Path,
    format: ImageFormat,
) -> Result<(), PlotError> {
    let fail = |source| PlotError::Write {
        path: path.into(),
        source,
    };
    match format {
        ImageFormat::Svg => std::fs::write(path, render_svg(p, size)?).map_err(fail),
        ImageFormat::Png => {
            crate::ops::plot::register_font()?;
            std::fs::File::create(path).map_err(fail)?;
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw(&root, p).map_err(|e| PlotError::Render(e.to_string()))
        }
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    p: &Parallel,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (w, h) = root.dim_in_pixel();
    let (left, right, top, bottom) = (70i32, 70i32, 70i32, 60i32);
    let n = p.axes.len();
    let span_x = (w as i32 - left - right).max(1);
    let span_y = (h as i32 - top - bottom).max(1) as f64;
    let x_of = |i: usize| {
        if n > 1 {
            left + (i as i32 * span_x) / (n as i32 - 1)
        } else {
            left + span_x / 2
        }
    };
    let y_of = |t: f64| top + ((1.0 - t) * span_y).round() as i32;
    let title = crate::sanitize::escape(&p.objective);
    root.draw(&Text::new(
        format!("{} runs by {title}", p.lines.len()),
        (left, 14),
        (FONT, 20),
    ))?;
    let (lo, hi) = p
        .lines
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), l| {
            (a.min(l.objective), b.max(l.objective))
        });
    // Worst first, so the best lines are drawn on top.
    let mut order: Vec<&Line> = p.lines.iter().collect();
    order.sort_by(|a, b| a.objective.total_cmp(&b.objective));
    for l in order {
        let t = if hi > lo {
            (l.objective - lo) / (hi - lo)
        } else {
            1.0
        };
        let pts: Vec<(i32, i32)> = l
            .places
            .iter()
            .enumerate()
            .map(|(i, v)| (x_of(i), y_of(*v)))
            .collect();
        root.draw(&PathElement::new(pts, viridis(t).stroke_width(2)))?;
    }
    let grey = RGBColor(90, 90, 90);
    for (i, a) in p.axes.iter().enumerate() {
        let x = x_of(i);
        root.draw(&PathElement::new(
            vec![(x, y_of(0.0)), (x, y_of(1.0))],
            grey.stroke_width(1),
        ))?;
        let name = crate::sanitize::escape(&a.name);
        root.draw(&Text::new(
            name.into_owned(),
            (x - 20, top - 30),
            (FONT, 16),
        ))?;
        for (t, label) in a.scale.ticks() {
            let y = y_of(t);
            root.draw(&PathElement::new(vec![(x - 4, y), (x, y)], grey))?;
            root.draw(&Text::new(label, (x + 5, y - 7), (FONT, 12)))?;
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn numbers_are_linear_or_log_and_text_is_categories() {
        let lin = [s("0"), s("0.5"), s("1")];
        assert_eq!(
            scale_of(&lin.iter().collect::<Vec<_>>()),
            Scale::Linear { min: 0.0, max: 1.0 }
        );
        let lr = [s("0.1"), s("0.01"), s("0.001")];
        let log = scale_of(&lr.iter().collect::<Vec<_>>());
        assert_eq!(
            log,
            Scale::Log {
                min: 0.001,
                max: 0.1
            }
        );
        assert!((log.place("0.01") - 0.5).abs() < 1e-12);
        let opt = [s("sgd"), s("adam"), s("(none)"), s("adam")];
        let cat = scale_of(&opt.iter().collect::<Vec<_>>());
        assert_eq!(
            cat,
            Scale::Categories(vec![s("(none)"), s("adam"), s("sgd")])
        );
        assert_eq!(cat.place("adam"), 0.5);
        assert_eq!(cat.place("sgd"), 1.0);
    }

    #[test]
    fn one_line_per_run_through_every_axis_coloured_by_the_objective() {
        let p = Parallel {
            axes: vec![
                Axis {
                    name: "lr".into(),
                    scale: Scale::Log {
                        min: 0.001,
                        max: 0.1,
                    },
                },
                Axis {
                    name: "opt\u{1b}[2J".into(),
                    scale: Scale::Categories(vec![s("adam"), s("sgd")]),
                },
                Axis {
                    name: "val_acc (max)".into(),
                    scale: Scale::Linear { min: 0.5, max: 0.9 },
                },
            ],
            lines: (0..4)
                .map(|i| Line {
                    run_id: format!("run{i}"),
                    places: vec![i as f64 / 3.0, (i % 2) as f64, i as f64 / 3.0],
                    objective: 0.5 + 0.4 * i as f64 / 3.0,
                })
                .collect(),
            objective: "metric:val_acc:max".into(),
            missing: vec![],
            constant: vec![],
        };
        let svg = render_svg(&p, (800, 500)).unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        let lines: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter(|n| n.attribute("points").unwrap().split_whitespace().count() == 3)
            .collect();
        assert_eq!(lines.len(), 4, "one line per run");
        let colours: BTreeSet<&str> = lines
            .iter()
            .map(|n| n.attribute("stroke").unwrap())
            .collect();
        assert_eq!(colours.len(), 4, "coloured by objective: {colours:?}");
        // Drawn worst first: the last line is the best run, yellow.
        assert_eq!(lines[3].attribute("stroke"), Some("#FDE725"));
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        assert!(
            texts.contains(&"lr") && texts.contains(&"val_acc (max)"),
            "{texts:?}"
        );
        assert!(texts.contains(&"opt\\x1b[2J"), "escaped: {texts:?}");
        assert!(texts.contains(&"0.01"), "log ticks: {texts:?}");
    }
}
