//! `repro rerun` as text: the verdicts (every output, every metric that fails the check, one
//! line for all metrics; also `--on slurm --wait`) and the `--dry-run` commands.

use crate::ops::output_diff::Difference;
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

/// Characters of a differing line shown; a longer line is shown around its first difference.
const LINE_SHOWN: usize = 60;

/// A file name inside an output, escaped.
fn file_text(rel: &[u8]) -> String {
    escape(&String::from_utf8_lossy(rel)).into_owned()
}

/// The part of `line` shown (from char `from`, at most [`LINE_SHOWN`] chars, `…` where cut),
/// quoted and escaped; `end of file` for a side without the line.
fn quoted(line: Option<&str>, from: usize) -> String {
    let Some(line) = line else {
        return "end of file".into();
    };
    let chars: Vec<char> = line.chars().collect();
    let start = from.min(chars.len());
    let end = (start + LINE_SHOWN).min(chars.len());
    let mut shown: String = chars[start..end].iter().collect();
    shown = escape(&shown).replace('"', "\\\"");
    let (pre, post) = (
        if start > 0 { "…" } else { "" },
        if end < chars.len() { "…" } else { "" },
    );
    format!("\"{pre}{shown}{post}\"")
}

/// `: first difference at line N: "…" vs "…"` and the other shapes of [`Difference`].
pub(crate) fn difference_text(d: &Difference) -> String {
    match d {
        Difference::Lines {
            file,
            line,
            original,
            rerun,
        } => {
            let (a, b) = (original.as_deref(), rerun.as_deref());
            // Both lines from a little before their first differing character.
            let same = match (a, b) {
                (Some(a), Some(b)) => a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count(),
                _ => 0,
            };
            let longest = a
                .map_or(0, |l| l.chars().count())
                .max(b.map_or(0, |l| l.chars().count()));
            let from = if longest > LINE_SHOWN {
                same.saturating_sub(LINE_SHOWN / 4)
            } else {
                0
            };
            let in_file = file
                .as_deref()
                .map(|f| format!(" in {}", file_text(f)))
                .unwrap_or_default();
            format!(
                ": first difference{in_file} at line {line}: {} vs {}",
                quoted(a, from),
                quoted(b, from)
            )
        }
        Difference::OnlyIn { file, original } => format!(
            ": first difference: {} only in the {}",
            file_text(file),
            if *original { "original" } else { "re-run" }
        ),
        Difference::NotCompared { file: Some(f), why } => {
            format!(": first difference in {} ({why})", file_text(f))
        }
        Difference::NotCompared { file: None, why } => format!(" ({why})"),
        Difference::Unknown(why) => format!(" (no line comparison: {why})"),
    }
}

/// The verdict lines, without the `repro: ` prefix.
pub fn check_lines(checks: &Checks) -> Vec<String> {
    let mut lines: Vec<String> = checks
        .outputs
        .iter()
        .map(|o| {
            let mut line = format!("output {}: {}", escape(&o.path), o.verdict);
            if let Some(d) = &o.difference {
                line.push_str(&difference_text(d));
            }
            line
        })
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

    #[test]
    fn an_output_mismatch_names_where_it_first_differs() {
        let check = |d: Difference| {
            let c = Checks {
                outputs: vec![crate::ops::rerun::OutputCheck {
                    path: "out".into(),
                    verdict: "MISMATCH",
                    difference: Some(d),
                }],
                ..Checks::default()
            };
            check_lines(&c).remove(0)
        };
        assert_eq!(
            check(Difference::Lines {
                file: None,
                line: 3,
                original: Some("count=1".into()),
                rerun: Some("count=\"2\"\x1b[2J".into()),
            }),
            r#"output out: MISMATCH: first difference at line 3: "count=1" vs "count=\"2\"\x1b[2J""#
        );
        assert_eq!(
            check(Difference::Lines {
                file: Some(b"sub/log\n.txt".to_vec()),
                line: 2,
                original: Some("x".into()),
                rerun: None,
            }),
            r#"output out: MISMATCH: first difference in sub/log\n.txt at line 2: "x" vs end of file"#
        );
        let long_a = format!("{}A{}", "x".repeat(100), "y".repeat(100));
        let long_b = format!("{}B{}", "x".repeat(100), "y".repeat(100));
        let line = check(Difference::Lines {
            file: None,
            line: 1,
            original: Some(long_a),
            rerun: Some(long_b),
        });
        assert_eq!(
            line,
            format!(
                r#"output out: MISMATCH: first difference at line 1: "…{x}A{y}…" vs "…{x}B{y}…""#,
                x = "x".repeat(15),
                y = "y".repeat(44)
            )
        );
        assert_eq!(
            check(Difference::OnlyIn {
                file: b"b.txt".to_vec(),
                original: false
            }),
            "output out: MISMATCH: first difference: b.txt only in the re-run"
        );
        assert_eq!(
            check(Difference::Unknown("the original's output is not kept")),
            "output out: MISMATCH (no line comparison: the original's output is not kept)"
        );
    }
}
