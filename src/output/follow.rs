//! `show --follow` as text: one line per metric point — its time (the job's `ts`, else when
//! the follower saw it), key, step and value — and the line that says how following ended.

use chrono::{DateTime, Local, Utc};

use crate::ops::follow::{FollowEnd, Seen};
use crate::output::metrics::value_text;
use crate::sanitize::escape;

/// A time in seconds since the epoch, to the millisecond (`-` when unknown).
fn time_text(secs: f64, utc: bool) -> String {
    if !secs.is_finite() {
        return "-".into();
    }
    let Some(t) = DateTime::<Utc>::from_timestamp_millis((secs * 1000.0).round() as i64) else {
        return "-".into();
    };
    if utc {
        t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
    } else {
        t.with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S%.3f %z")
            .to_string()
    }
}

/// `TIME  KEY  step=N  VALUE` (`step=-` without a step), ending in a newline.
pub fn point_line(s: &Seen, utc: bool) -> String {
    let p = &s.point;
    format!(
        "{}  {}  step={}  {}\n",
        time_text(p.time.unwrap_or(s.seen), utc),
        escape(&p.key),
        p.step.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
        value_text(p.value)
    )
}

/// `--json`: one object per line, `{"key", "step", "value", "time"}` — `time` the point's `ts`
/// or when the follower read it, as RFC 3339 (`null` when unknown); `value` NaN/±inf as the
/// strings "NaN", "Infinity", "-Infinity".
pub fn point_json_line(s: &Seen) -> String {
    use crate::record::metrics::{json_number, time_text, valid_time};
    let p = &s.point;
    let t = p.time.unwrap_or(s.seen);
    let mut line = serde_json::json!({
        "key": &*p.key,
        "step": p.step,
        "value": json_number(p.value),
        "time": valid_time(t).then(|| time_text(t)),
    })
    .to_string();
    line.push('\n');
    line
}

/// The status line when following ends.
pub fn end_text(id: &str, end: &FollowEnd) -> String {
    match end {
        FollowEnd::Ended(status) => format!("run {id} {}", status.as_str()),
        FollowEnd::Stopped => format!("stopped following run {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::metrics::MetricPoint;

    #[test]
    fn a_point_line_prefers_the_job_s_time_and_escapes_the_key() {
        let seen = |time: Option<f64>, step: Option<i64>| Seen {
            point: MetricPoint {
                key: "val\x1b[2Jacc".into(),
                step,
                value: 0.5,
                time,
            },
            seen: 1_764_856_800.25,
        };
        assert_eq!(
            point_line(&seen(None, Some(3)), true),
            "2025-12-04 14:00:00.250 UTC  val\\x1b[2Jacc  step=3  0.5\n"
        );
        assert_eq!(
            point_line(&seen(Some(1_764_856_801.0), None), true),
            "2025-12-04 14:00:01.000 UTC  val\\x1b[2Jacc  step=-  0.5\n"
        );
        let j: serde_json::Value =
            serde_json::from_str(&point_json_line(&seen(None, Some(3)))).unwrap();
        assert_eq!(j["key"], "val\x1b[2Jacc");
        assert_eq!(j["step"], 3);
        assert_eq!(j["value"], 0.5);
        assert!(
            j["time"]
                .as_str()
                .unwrap()
                .starts_with("2025-12-04T14:00:00.25"),
            "{j}"
        );
    }
}
