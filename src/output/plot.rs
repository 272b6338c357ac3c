//! What `repro plot` says on stderr: the runs and points left out of the chart, and where it
//! was written. (The picture itself is drawn by `ops::plot`.)

use std::path::Path;

use crate::ops::parallel::Parallel;
use crate::ops::plot::Chart;
use crate::sanitize::escape as esc;

/// One warning per run left out, and per run with points that could not be drawn.
pub fn warnings(chart: &Chart) -> Vec<String> {
    let mut w: Vec<String> = chart
        .missing
        .iter()
        .map(|id| format!("run {id} has no metric '{}'; left out", esc(&chart.metric)))
        .collect();
    for s in &chart.series {
        if s.non_finite > 0 {
            w.push(format!(
                "run {}: {} NaN or infinite values of '{}' not drawn",
                s.run_id,
                s.non_finite,
                esc(&chart.metric)
            ));
        }
        if s.untimed > 0 {
            w.push(format!(
                "run {}: {} points without a time not drawn",
                s.run_id, s.untimed
            ));
        }
    }
    w
}

/// The status line after writing the picture to `path`.
pub fn wrote(path: &Path, charts: &[Chart]) -> String {
    let runs = charts.iter().map(|c| c.series.len()).max().unwrap_or(0);
    let metrics: Vec<String> = charts
        .iter()
        .map(|c| format!("'{}'", esc(&c.metric)))
        .collect();
    let noun = if metrics.len() == 1 {
        "metric"
    } else {
        "metrics"
    };
    format!(
        "wrote {} ({runs} runs, {noun} {})",
        path.display(),
        metrics.join(", ")
    )
}

/// What `plot --parallel` left out: runs without the objective, parameters that do not vary.
pub fn parallel_warnings(p: &Parallel) -> Vec<String> {
    let mut w: Vec<String> = p
        .missing
        .iter()
        .map(|id| format!("run {id} has no value for {}; left out", esc(&p.objective)))
        .collect();
    if !p.constant.is_empty() {
        w.push(format!(
            "not drawn, the same in every run: {}",
            p.constant
                .iter()
                .map(|k| esc(k).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    w
}
