//! `repro diff` rendered: the differing fields side by side, then every metric of either run
//! (last values, absolute and relative delta), then warnings; or the `--json` document.

use serde_json::{json, Value};

use crate::ops::diff::{Change, MetricDelta, Noise};
use crate::output::metrics::value_text;
use crate::record::metrics::json_number;
use crate::record::text::human_duration;
use crate::record::{Run, SCHEMA_VERSION};
use crate::sanitize::escape;

/// What `diff` found, ready to render.
pub struct DiffView<'a> {
    pub a: &'a Run,
    pub b: &'a Run,
    pub changes: &'a [Change],
    pub metrics: &'a [MetricDelta],
    pub warnings: &'a [String],
    /// The spread of A's recorded repeats, when A was repeated (`rerun A --repeat N`).
    pub noise: Option<&'a Noise>,
    /// Environment drift from A to B (`None`: one of them has no recorded environment).
    pub environment: Option<&'a [crate::ops::env_drift::Change]>,
}

fn cell(field: &str, v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) if field == "duration_ms" => n
            .as_i64()
            .map(|ms| format!("{} ({ms} ms)", human_duration(ms)))
            .unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

fn opt_json(v: Option<f64>) -> Value {
    v.map(json_number).unwrap_or(Value::Null)
}

/// `{"schema_version", "a", "b", "differences": [{field, a, b}], "metrics": [{key, a, b,
/// delta, relative, noise}], "noise_group", "warnings"}`; a metric's `a`/`b` is its summary or
/// `null`, NaN and ±inf are the strings "NaN", "Infinity", "-Infinity". `noise` is `null`
/// unless A was repeated and the repeats reported the metric: `{"within", "range", "min",
/// "max", "stddev", "n"}` over A's latest repeats (`noise_group`).
pub fn diff_json(v: &DiffView<'_>) -> String {
    let differences: Vec<Value> = v
        .changes
        .iter()
        .map(|c| json!({"field": c.field, "a": c.a, "b": c.b}))
        .collect();
    let metrics: Vec<Value> = v
        .metrics
        .iter()
        .map(|m| {
            json!({
                "key": m.key,
                "a": m.a.as_ref().map(|s| s.to_json()),
                "b": m.b.as_ref().map(|s| s.to_json()),
                "delta": opt_json(m.delta()),
                "relative": opt_json(m.relative()),
                "noise": v.noise.and_then(|n| n.judge(m)).map(|(within, s)| json!({
                    "within": within,
                    "range": json_number(s.range()),
                    "min": json_number(s.min),
                    "max": json_number(s.max),
                    "stddev": json_number(s.stddev),
                    "n": s.n,
                })),
            })
        })
        .collect();
    let doc = json!({
        "schema_version": SCHEMA_VERSION,
        "a": v.a.id,
        "b": v.b.id,
        "differences": differences,
        "metrics": metrics,
        "noise_group": v.noise.map(|n| &n.group),
        "warnings": v.warnings,
        "environment": v.environment.map(crate::output::environment::drift_json),
    });
    let mut s = serde_json::to_string_pretty(&doc).expect("json");
    s.push('\n');
    s
}

/// A table as text: bordered on a terminal, plain columns (no trailing blanks) when piped.
fn table_text(header: Vec<String>, rows: Vec<Vec<String>>, tty: bool) -> String {
    let mut t = crate::output::new_table(tty);
    t.set_header(header);
    if !tty {
        for col in t.column_iter_mut() {
            col.set_padding((0, 2));
        }
    }
    for r in rows {
        t.add_row(r);
    }
    let table = t.to_string();
    let mut s = if tty {
        table
    } else {
        table
            .lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
    };
    s.push('\n');
    s
}

/// A computed value for reading: six significant digits (0.9 - 0.8 shows as 0.1, not
/// 0.09999999999999998; `--json` keeps the exact value).
pub(crate) fn rounded(v: f64) -> String {
    if v.is_finite() {
        value_text(format!("{v:.5e}").parse::<f64>().unwrap_or(v))
    } else {
        value_text(v)
    }
}

/// [`rounded`], with a `+` when positive.
fn signed(v: f64) -> String {
    let v = format!("{v:.5e}").parse::<f64>().unwrap_or(v);
    if v > 0.0 {
        format!("+{}", value_text(v))
    } else {
        value_text(v)
    }
}

/// The noise cell of a metric row: whether its delta lies inside the spread of A's repeats.
fn noise_cell(noise: &Noise, m: &MetricDelta) -> String {
    match noise.judge(m) {
        Some((true, s)) => format!("within noise (spread {})", rounded(s.range())),
        Some((false, s)) => format!("BEYOND noise (spread {})", rounded(s.range())),
        None => "-".into(),
    }
}

/// The metric rows: key, A's last, B's last, delta, relative delta (percent), and with `noise`
/// the verdict against A's repeats.
fn metric_rows(metrics: &[MetricDelta], noise: Option<&Noise>) -> Vec<Vec<String>> {
    let last = |s: &Option<crate::record::metrics::MetricSummary>| {
        s.as_ref()
            .map(|s| value_text(s.last))
            .unwrap_or_else(|| "(none)".into())
    };
    metrics
        .iter()
        .map(|m| {
            let delta = match (&m.a, &m.b, m.delta()) {
                (_, None, _) => "only in A".to_string(),
                (None, _, _) => "only in B".to_string(),
                (_, _, Some(d)) => signed(d),
                _ => "-".into(),
            };
            let rel = match m.relative() {
                Some(r) => format!("{}%", signed(r * 100.0)),
                None => "-".into(),
            };
            let mut row = vec![
                escape(&m.key).into_owned(),
                last(&m.a),
                last(&m.b),
                delta,
                rel,
            ];
            if let Some(n) = noise {
                row.push(noise_cell(n, m));
            }
            row
        })
        .collect()
}

/// The text of `repro diff` (`tty`: bordered tables).
pub fn diff_text(v: &DiffView<'_>, tty: bool) -> String {
    let (sa, sb) = (v.a.short_id(), v.b.short_id());
    let mut s = String::new();
    if v.changes.is_empty() {
        let metrics_differ = v.metrics.iter().any(|m| m.delta() != Some(0.0));
        s.push_str(&format!(
            "no differences between {} and {}{} (annotations aside)\n",
            v.a.id,
            v.b.id,
            if metrics_differ {
                " other than metrics"
            } else {
                ""
            }
        ));
    } else {
        let rows = v
            .changes
            .iter()
            .map(|c| {
                vec![
                    escape(&c.field).into_owned(),
                    escape(&cell(&c.field, &c.a)).into_owned(),
                    escape(&cell(&c.field, &c.b)).into_owned(),
                ]
            })
            .collect();
        s.push_str(&table_text(
            vec!["FIELD".into(), format!("A {sa}"), format!("B {sb}")],
            rows,
            tty,
        ));
    }
    if !v.metrics.is_empty() {
        s.push('\n');
        let mut header = vec![
            "METRIC (last)".into(),
            format!("A {sa}"),
            format!("B {sb}"),
            "DELTA".into(),
            "RELATIVE".into(),
        ];
        if let Some(n) = v.noise {
            header.push("NOISE".into());
            s.push_str(&format!(
                "noise: the spread of {} repeat(s) of A (group {})\n",
                n.repeats, n.group
            ));
        }
        s.push_str(&table_text(header, metric_rows(v.metrics, v.noise), tty));
    }
    if let Some(e) = v.environment {
        s.push('\n');
        s.push_str(&crate::output::environment::drift_text(e));
    }
    for w in v.warnings {
        s.push_str(&format!("warning: {}\n", escape(w)));
    }
    s
}
