//! Metrics in the data model: a reported point (key, step, value, time), the per-key summary
//! (last, min, max, count, last step) and the JSON shapes of DESIGN.md (`metrics`, `history`).
//! Parsing reports is `capture::metrics`; storing and querying them is `store::metrics`.

use std::sync::Arc;

/// One reported value of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// Metric name; nested objects are flattened with `.` (DVCLive names keep their `/`).
    pub key: Arc<str>,
    /// The step (epoch, iteration) when the job gave one.
    pub step: Option<i64>,
    /// The value; NaN and ±inf are kept.
    pub value: f64,
    /// When it was reported, in seconds since the Unix epoch, when the job said so.
    pub time: Option<f64>,
}

/// The summary of one metric of one run. `min`/`max` ignore NaN (NaN when every value was NaN);
/// `last` is the value at the highest step, or the last reported when no value had a step.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSummary {
    pub key: String,
    pub last: f64,
    pub min: f64,
    pub max: f64,
    pub count: u64,
    pub last_step: Option<i64>,
}

/// One stored point of a metric's history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryPoint {
    /// Position in the order reported, from 0.
    pub seq: u64,
    pub step: Option<i64>,
    pub value: f64,
    /// Seconds since the Unix epoch.
    pub time: Option<f64>,
}

/// A number for JSON: finite values as numbers, NaN and ±inf as the strings "NaN",
/// "Infinity", "-Infinity" (JSON has no literal for them).
pub fn json_number(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "Infinity".into()
    } else {
        "-Infinity".into()
    }
}

impl MetricSummary {
    /// `{"last": …, "min": …, "max": …, "count": …, "step": …}` as in DESIGN.md.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "last": json_number(self.last),
            "min": json_number(self.min),
            "max": json_number(self.max),
            "count": self.count,
            "step": self.last_step,
        })
    }
}

/// The summary of a batch of points of one key, in report order.
pub fn summarize(points: &[&MetricPoint]) -> (f64, Option<i64>, f64, f64) {
    let mut last: Option<(f64, Option<i64>)> = None;
    let (mut min, mut max) = (f64::NAN, f64::NAN);
    for p in points {
        // f64::min/max return the other operand when one is NaN: NaN values are ignored.
        min = min.min(p.value);
        max = max.max(p.value);
        last = match (last, p.step) {
            (Some((_, Some(best))), Some(s)) if s < best => last,
            (Some((_, Some(_))), None) => last,
            _ => Some((p.value, p.step)),
        };
    }
    let (last, last_step) = last.unwrap_or((f64::NAN, None));
    (last, last_step, min, max)
}

/// The summary of one key kept point by point, for a stream of points too large to hold at once:
/// after the same points, in the same order, it is exactly what [`summarize`] gives (last at the
/// highest step, later points winning ties, a point without a step never replacing one with a
/// step; min and max ignoring NaN), and a stored summary continues as if its points came first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunningSummary {
    last: Option<(f64, Option<i64>)>,
    min: f64,
    max: f64,
    count: u64,
}

impl Default for RunningSummary {
    fn default() -> Self {
        RunningSummary {
            last: None,
            min: f64::NAN,
            max: f64::NAN,
            count: 0,
        }
    }
}

impl RunningSummary {
    /// Continues a stored summary (`count` points, `last` at `last_step`; NaN for a NULL).
    pub fn resume(last: f64, last_step: Option<i64>, min: f64, max: f64, count: u64) -> Self {
        RunningSummary {
            last: (count > 0).then_some((last, last_step)),
            min,
            max,
            count,
        }
    }

    /// Adds the next point reported.
    pub fn add(&mut self, p: &MetricPoint) {
        // The rule of `summarize`, one point at a time.
        self.min = self.min.min(p.value);
        self.max = self.max.max(p.value);
        self.last = match (self.last, p.step) {
            (Some((_, Some(best))), Some(s)) if s < best => self.last,
            (Some((_, Some(_))), None) => self.last,
            _ => Some((p.value, p.step)),
        };
        self.count += 1;
    }

    /// `(last, last_step, min, max)`, as [`summarize`] returns them.
    pub fn parts(&self) -> (f64, Option<i64>, f64, f64) {
        let (last, last_step) = self.last.unwrap_or((f64::NAN, None));
        (last, last_step, self.min, self.max)
    }

    /// Points added, the resumed ones included.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// The summaries `insert_metrics` would store for these points of a fresh run, by key.
pub fn summaries_of(points: &[MetricPoint]) -> Vec<MetricSummary> {
    let mut groups: std::collections::BTreeMap<&str, Vec<&MetricPoint>> = Default::default();
    for p in points {
        groups.entry(&p.key).or_default().push(p);
    }
    groups
        .into_iter()
        .map(|(key, pts)| {
            let (last, last_step, min, max) = summarize(&pts);
            // Stored as NULL, NaN reads back as NaN: the same values `metric_summaries` gives.
            MetricSummary {
                key: key.to_string(),
                last,
                min,
                max,
                count: pts.len() as u64,
                last_step,
            }
        })
        .collect()
}

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
            // A time recorded before times were checked (1e27 s) is no time: written as null,
            // so that the export of an old database imports.
            .map(|p| {
                let time = p.time.filter(|t| valid_time(*t)).map(time_text);
                serde_json::json!([p.step, json_number(p.value), time])
            })
            .collect();
        m.insert(key.clone(), serde_json::Value::Array(rows));
    }
    serde_json::Value::Object(m)
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
pub const MAX_TIME: f64 = 253_402_300_799.0;

/// Whether `t` (seconds since the Unix epoch) is a time a metric point may carry: from 1970 to
/// the year 9999, so that `time_text` writes it as RFC 3339 and `import` reads it back. The
/// one rule for recording (`capture::metrics`) and importing (`store::transfer`).
pub fn valid_time(t: f64) -> bool {
    t.is_finite() && (0.0..=MAX_TIME).contains(&t)
}

/// Epoch seconds as RFC 3339 UTC with milliseconds.
pub fn time_text(t: f64) -> String {
    let ms = (t * 1000.0).round() as i64;
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(super::rfc3339)
        .unwrap_or_else(|| t.to_string())
}

/// A summary for tests: min 0.5, max 0.9, last step 3.
#[cfg(test)]
pub(crate) fn sample_summary(key: &str, last: f64, count: u64) -> MetricSummary {
    MetricSummary {
        key: key.into(),
        last,
        min: 0.5,
        max: 0.9,
        count,
        last_step: Some(3),
    }
}

#[cfg(test)]
mod tests {
    use super::sample_summary as summary;
    use super::*;

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

    /// Point by point, and resumed from a stored summary of a prefix, the running summary is
    /// what `summarize` gives for all the points at once.
    #[test]
    fn running_summary_is_summarize_point_by_point_and_resumed() {
        let steps = [
            Some(3),
            None,
            Some(1),
            Some(3),
            None,
            Some(7),
            Some(2),
            None,
            Some(7),
        ];
        let values = [0.5, f64::NAN, -1.0, 2.0, 9.0, f64::NAN, 4.0, -3.0, 1.5];
        let points: Vec<MetricPoint> = steps
            .iter()
            .zip(values)
            .map(|(step, value)| MetricPoint {
                key: "k".into(),
                step: *step,
                value,
                time: None,
            })
            .collect();
        let bits = |(l, s, mi, ma): (f64, Option<i64>, f64, f64)| {
            (l.to_bits(), s, mi.to_bits(), ma.to_bits())
        };
        for n in 0..=points.len() {
            let refs: Vec<&MetricPoint> = points[..n].iter().collect();
            let mut run = RunningSummary::default();
            refs.iter().for_each(|p| run.add(p));
            assert_eq!(bits(run.parts()), bits(summarize(&refs)), "{n} points");
            assert_eq!(run.count(), n as u64);
            // A stored summary of the first `cut` points, continued with the rest.
            for cut in 1..=n {
                let (l, s, mi, ma) = summarize(&refs[..cut]);
                let mut resumed = RunningSummary::resume(l, s, mi, ma, cut as u64);
                refs[cut..].iter().for_each(|p| resumed.add(p));
                assert_eq!(
                    bits(resumed.parts()),
                    bits(run.parts()),
                    "{n} points, cut {cut}"
                );
            }
        }
    }

    #[test]
    fn non_finite_numbers_are_json_strings() {
        assert_eq!(json_number(f64::INFINITY), "Infinity");
        assert_eq!(json_number(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(json_number(f64::NAN), "NaN");
        assert_eq!(json_number(0.5), 0.5);
    }
}
