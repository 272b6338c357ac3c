//! `repro rerun` as text: the verdicts (every output, every metric that fails the check, one
//! line for all metrics; also `--on slurm --wait`) and the `--dry-run` commands.

use crate::ops::rerun::{Checks, MetricVerdict};
use crate::output::diff::rounded;
use crate::output::metrics::value_text;
use crate::sanitize::escape;

/// `--dry-run`: each command as a `+ WORD…` line, quoted for bash.
pub fn dry_run_text(cmds: &[Vec<std::ffi::OsString>]) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut text = String::new();
    for argv in cmds {
        text.push('+');
        for a in argv {
            text.push(' ');
            text.push_str(
                &crate::script::quote::bash(a.as_bytes()).unwrap_or_else(|_| "''".into()),
            );
        }
        text.push('\n');
    }
    text
}

/// The verdict lines, without the `repro: ` prefix.
pub fn check_lines(checks: &Checks) -> Vec<String> {
    let mut lines: Vec<String> = checks
        .outputs
        .iter()
        .map(|o| format!("output {}: {}", escape(&o.path), o.verdict))
        .collect();
    let t = checks.tolerance;
    let opt = |v: Option<f64>| v.map(value_text).unwrap_or_else(|| "(none)".into());
    let (mut ok, mut original, mut new) = (0, 0, 0);
    for m in &checks.metrics {
        let key = escape(&m.key);
        match m.verdict {
            MetricVerdict::Match => ok += 1,
            MetricVerdict::New => new += 1,
            MetricVerdict::OutOfTolerance => {
                let (now, was) = (m.now.unwrap_or(f64::NAN), m.original.unwrap_or(f64::NAN));
                lines.push(format!(
                    "metric {key}: OUT OF TOLERANCE: now {}, was {} (difference {}, allowed {})",
                    value_text(now),
                    value_text(was),
                    rounded(now - was),
                    rounded(t.atol + t.rtol * was.abs()),
                ));
            }
            MetricVerdict::MissingNow => lines.push(format!(
                "metric {key}: MISSING now (was {})",
                opt(m.original)
            )),
        }
        if m.original.is_some() {
            original += 1;
        }
    }
    if !checks.metrics.is_empty() {
        let mut line = format!(
            "metrics: {ok} of {original} within tolerance (rtol {}, atol {})",
            value_text(t.rtol),
            value_text(t.atol)
        );
        if new > 0 {
            line.push_str(&format!("; {new} new in the re-run"));
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::diff::one_point as m;
    use crate::ops::rerun::{compare_metrics, Tolerance};

    #[test]
    fn failing_metrics_and_a_summary_line() {
        let tol = Tolerance {
            rtol: 0.01,
            atol: 0.0,
        };
        let old = [
            m("acc", 0.9),
            m("gone", 1.0),
            m("loss", 0.5),
            m("nan", f64::NAN),
        ];
        let new = [
            m("acc", 0.905),
            m("loss", 0.6),
            m("nan", f64::NAN),
            m("extra", 2.0),
        ];
        let checks = Checks {
            outputs: vec![],
            metrics: compare_metrics(&old, &new, tol),
            tolerance: tol,
        };
        let lines = check_lines(&checks);
        assert_eq!(
            lines,
            vec![
                "metric gone: MISSING now (was 1)",
                "metric loss: OUT OF TOLERANCE: now 0.6, was 0.5 (difference 0.1, allowed 0.005)",
                "metrics: 2 of 4 within tolerance (rtol 0.01, atol 0); 1 new in the re-run",
            ]
        );
        assert_eq!(checks.failures(), 2);
        assert_eq!(checks.exit_code(0, true), 1);
        assert_eq!(checks.exit_code(0, false), 0);
        assert_eq!(checks.exit_code(3, true), 3);
    }
}
