//! Metrics as `show` renders them: the DESIGN.md JSON shapes (`metrics`, `history`) and text
//! lines (a sparkline per metric on a terminal, plain values when piped).

use crate::store::metrics::{json_number, HistoryPoint, MetricSummary};

/// `{"acc": {"last", "min", "max", "count", "step"}, …}`; `{}` without metrics.
pub fn summary_json(summaries: &[MetricSummary]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for s in summaries {
        m.insert(s.key.clone(), s.to_json());
    }
    serde_json::Value::Object(m)
}

/// `{"acc": [[step, value, "time"], …], …}` (step and time `null` when not reported).
pub fn history_json(histories: &[(String, Vec<HistoryPoint>)]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (key, points) in histories {
        let rows = points
            .iter()
            .map(|p| serde_json::json!([p.step, json_number(p.value), p.time.map(time_text)]))
            .collect();
        m.insert(key.clone(), serde_json::Value::Array(rows));
    }
    serde_json::Value::Object(m)
}

/// Epoch seconds as RFC 3339 UTC with milliseconds.
pub fn time_text(t: f64) -> String {
    let ms = (t * 1000.0).round() as i64;
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(crate::capture::host::rfc3339)
        .unwrap_or_else(|| t.to_string())
}

/// A value as text: shortest round-trip form, `NaN`, `inf`, `-inf`.
pub fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
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
        let key = crate::output::sanitize::escape(&s.key);
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

    fn summary(key: &str, last: f64, count: u64) -> MetricSummary {
        MetricSummary {
            key: key.into(),
            last,
            min: 0.5,
            max: 0.9,
            count,
            last_step: Some(3),
        }
    }

    #[test]
    fn json_shapes() {
        let s = summary_json(&[summary("acc", 0.9, 3)]);
        assert_eq!(
            s,
            serde_json::json!({"acc": {"last": 0.9, "min": 0.5, "max": 0.9, "count": 3, "step": 3}})
        );
        assert_eq!(summary_json(&[]), serde_json::json!({}));
        let h = history_json(&[(
            "loss".into(),
            vec![
                HistoryPoint {
                    seq: 0,
                    step: Some(1),
                    value: f64::NAN,
                    time: Some(0.5),
                },
                HistoryPoint {
                    seq: 1,
                    step: None,
                    value: 2.0,
                    time: None,
                },
            ],
        )]);
        assert_eq!(
            h,
            serde_json::json!({"loss": [[1, "NaN", "1970-01-01T00:00:00.500Z"], [null, 2.0, null]]})
        );
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
