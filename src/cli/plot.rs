//! `repro plot`: metric histories of several runs, one chart per metric (SVG or PNG).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cli::filter::usage_with_hint;
use crate::cli::{print_out, Ctx};
use crate::error::{CliError, CliResult};
use crate::ops::parallel;
use crate::ops::plot::{self, ImageFormat, PlotRequest, XAxis};
use crate::output;
use crate::store::metrics::parse_metric_sort;

/// The x axis of `plot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XArg {
    /// The reported step (the report order where there is none)
    Step,
    /// Time since each run's first timed point
    Time,
}

/// Arguments of `repro plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run ids or unique prefixes, one line each
    #[arg(required_unless_present = "sweep", value_name = "ID")]
    pub ids: Vec<String>,
    /// The runs of this sweep (`repro sweep`; its id or a unique prefix), with any IDs given
    #[arg(long, value_name = "SWEEP")]
    pub sweep: Option<String>,
    /// A metric to draw; repeat for one panel per metric (`-m loss -m val_acc`)
    #[arg(short, long, value_name = "KEY", required_unless_present = "parallel")]
    pub metric: Vec<String>,
    /// Parallel coordinates instead of histories: one axis per parameter that differs among the
    /// runs, then this objective (`metric:KEY[:last|min|max]`), one line per run coloured by it
    #[arg(long, value_name = "metric:KEY[:STAT]", conflicts_with_all = ["metric", "smooth", "x"])]
    pub parallel: Option<String>,
    /// Draw an exponential moving average of weight W over each line (0 ≤ W < 1, e.g. 0.6, as
    /// TensorBoard's smoothing); the raw line stays, faint
    #[arg(long, value_name = "W", value_parser = parse_smooth)]
    pub smooth: Option<f64>,
    /// Write the picture to FILE (.svg or .png); without it, the SVG goes to stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// What the x axis shows
    #[arg(long, value_enum, default_value_t = XArg::Step)]
    pub x: XArg,
    /// Size of each panel in pixels (panels are stacked: the picture is W × H·panels)
    #[arg(long, value_name = "WxH", default_value = "960x540")]
    pub size: String,
}

fn parse_smooth(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(w) if (0.0..1.0).contains(&w) => Ok(w),
        _ => Err(format!(
            "'{s}' is not a smoothing weight: give a number from 0 (none) up to, not including, 1 (e.g. 0.6)"
        )),
    }
}

fn parse_size(s: &str) -> CliResult<(u32, u32)> {
    let bad = || {
        CliError::usage(format!("--size '{s}' is not WIDTHxHEIGHT"))
            .hint("e.g. --size 1280x720 (each side 100 to 8000 pixels)")
    };
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if !(100..=8000).contains(&w) || !(100..=8000).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

/// Draws the chart.
pub fn cmd_plot(ctx: &Ctx, args: &PlotArgs) -> CliResult {
    let size = parse_size(&args.size)?;
    let format = match &args.output {
        None => None,
        Some(p) => Some(ImageFormat::from_path(p).ok_or_else(|| {
            CliError::usage(format!("cannot tell the picture format of {}", p.display()))
                .hint("name the output FILE.svg or FILE.png")
        })?),
    };
    let store = ctx.open_store()?;
    let mut ids = args.ids.clone();
    if let Some(sweep) = &args.sweep {
        let runs = store.sweep_runs(sweep)?;
        if runs.is_empty() {
            return Err(CliError::user(format!(
                "no sweep matches '{}'",
                crate::sanitize::escape(sweep)
            ))
            .hint("`repro sweep` prints its id; `repro show ID` shows a run's sweep"));
        }
        ids.extend(runs);
    }
    if let Some(spec) = &args.parallel {
        let objective = parse_metric_sort(spec).map_err(|e| usage_with_hint("--parallel", e))?;
        let p = parallel::parallel(&store, &ids, &objective, spec)?;
        for w in output::plot::parallel_warnings(&p) {
            ctx.warn(w);
        }
        match (&args.output, format) {
            (Some(path), Some(f)) => parallel::write(&p, size, path, f)?,
            _ => return print_out(&parallel::render_svg(&p, size)?),
        }
        if let Some(path) = &args.output {
            ctx.status(format!("wrote {} ({} runs)", path.display(), p.lines.len()));
        }
        return Ok(());
    }
    let req = PlotRequest {
        runs: ids,
        metrics: args.metric.clone(),
        x: match args.x {
            XArg::Step => XAxis::Step,
            XArg::Time => XAxis::Time,
        },
        smooth: args.smooth,
    };
    let charts = plot::charts(&store, &req)?;
    for chart in &charts {
        for w in output::plot::warnings(chart) {
            ctx.warn(w);
        }
    }
    match (&args.output, format) {
        (Some(path), Some(ImageFormat::Png)) => plot::render_png(&charts, size, path)?,
        (Some(path), _) => plot::write_svg(&charts, size, path)?,
        (None, _) => return print_out(&plot::render_svg(&charts, size)?),
    }
    if let Some(path) = &args.output {
        ctx.status(output::plot::wrote(path, &charts));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{parse_size, parse_smooth};

    #[test]
    fn smoothing_weights() {
        assert_eq!(parse_smooth("0.6").unwrap(), 0.6);
        assert_eq!(parse_smooth("0").unwrap(), 0.0);
        for bad in ["1", "-0.1", "1.5", "x", "NaN"] {
            assert!(parse_smooth(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("960x540").unwrap(), (960, 540));
        assert_eq!(parse_size("100X8000").unwrap(), (100, 8000));
        for bad in ["960", "x540", "0x0", "99x100", "9000x100", "axb"] {
            assert_eq!(parse_size(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }
}
