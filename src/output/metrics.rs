//! Metrics as `show` renders them: the DESIGN.md JSON shapes (`metrics`, `history`) and text
//! lines (a sparkline per metric on a terminal, plain values when piped).

use crate::record::metrics::MetricSummary;

/// A value as text: shortest round-trip form, `NaN`, `inf`, `-inf`; very large or very small
/// magnitudes in exponent form (`1.797e308`, not 309 digits; `1e-9`, not `0.000000001`).
pub fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else if v != 0.0 && !(1e-6..1e16).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// The `metrics:` block of `show`: one line per key with last/min/max/count, and on a terminal
/// a sparkline of the history. Empty without metrics.
pub fn metrics_text(
    summaries: &[MetricSummary],
    histories: &[(String, Vec<f64>)],
    tty: bool,
) -> String {
    if summaries.is_empty() {
        return String::new();
    }
    let width = summaries
        .iter()
        .map(|s| s.key.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::from("metrics:\n");
    for s in summaries {
        let key = crate::sanitize::escape(&s.key);
        let pad = " ".repeat(width.saturating_sub(s.key.chars().count()));
        let mut line = format!(
            "  {key}{pad}  last {}  min {}  max {}  count {}",
            value_text(s.last),
            value_text(s.min),
            value_text(s.max),
            s.count
        );
        if let Some(step) = s.last_step {
            line.push_str(&format!("  step {step}"));
        }
        if tty && s.count > 1 {
            if let Some((_, values)) = histories.iter().find(|(k, _)| *k == s.key) {
                line.push_str("  ");
                line.push_str(&crate::output::sparkline::sparkline(values, 24));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::metrics::sample_summary as summary;

    #[test]
    fn huge_and_tiny_values_are_short() {
        assert_eq!(value_text(1.797e308), "1.797e308");
        assert_eq!(value_text(-f64::MAX), "-1.7976931348623157e308");
        assert_eq!(value_text(1e-9), "1e-9");
        assert_eq!(value_text(0.25), "0.25");
        assert_eq!(value_text(123456789.5), "123456789.5");
        assert_eq!(value_text(0.0), "0");
    }

    #[test]
    fn sparkline_only_on_a_terminal() {
        let s = [summary("acc", 0.9, 3)];
        let h = [("acc".to_string(), vec![0.5, 0.7, 0.9])];
        let tty = metrics_text(&s, &h, true);
        assert!(tty.contains("▁▄█"), "{tty}");
        let piped = metrics_text(&s, &h, false);
        assert!(!piped.contains('▁'), "{piped}");
        assert!(
            piped.contains("acc  last 0.9  min 0.5  max 0.9  count 3  step 3"),
            "{piped}"
        );
        assert_eq!(metrics_text(&[], &[], true), "");
    }
}
