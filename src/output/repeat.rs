//! `repro rerun ID --repeat N` rendered: one row per metric (the original's value, then min,
//! max, standard deviation over the repeats), one line per output (the same in every repeat, or
//! where the first differing repeat first differs); or the `--json` document.

use serde_json::{json, Value};

use crate::ops::repeat::RepeatReport;
use crate::output::diff::rounded;
use crate::output::metrics::value_text;
use crate::output::rerun::difference_text;
use crate::record::metrics::json_number;
use crate::record::SCHEMA_VERSION;
use crate::sanitize::escape;

fn opt_json(v: Option<f64>) -> Value {
    v.map(json_number).unwrap_or(Value::Null)
}

/// `{"schema_version", "original", "group", "asked", "interrupted", "repeats": [{seq, id,
/// exit_code}], "metrics": [{key, original, values, n, min, max, mean, stddev}], "outputs":
/// [{path, digests, differ, differs_at, first_difference}]}`; NaN and ±inf are the strings
/// "NaN", "Infinity", "-Infinity"; a repeat without the metric or output is `null`.
pub fn repeat_json(r: &RepeatReport) -> String {
    let repeats: Vec<Value> = r
        .repeats
        .iter()
        .map(|x| json!({"seq": x.seq, "id": x.id, "exit_code": x.exit}))
        .collect();
    let metrics: Vec<Value> = r
        .metrics
        .iter()
        .map(|m| {
            let present = m.stats.n > 0;
            let stat = |v: f64| if present { json_number(v) } else { Value::Null };
            json!({
                "key": m.key,
                "original": opt_json(m.original),
                "values": m.values.iter().map(|v| opt_json(*v)).collect::<Vec<_>>(),
                "n": m.stats.n,
                "min": stat(m.stats.min),
                "max": stat(m.stats.max),
                "mean": stat(m.stats.mean),
                "stddev": stat(m.stats.stddev),
            })
        })
        .collect();
    let outputs: Vec<Value> = r
        .outputs
        .iter()
        .map(|o| {
            json!({
                "path": o.path,
                "digests": o.digests,
                "differ": o.differs_at.is_some(),
                "differs_at": o.differs_at,
                "first_difference": o.difference.as_ref().map(|d| {
                    difference_text(d).trim_start_matches(": ").trim().to_string()
                }),
            })
        })
        .collect();
    let doc = json!({
        "schema_version": SCHEMA_VERSION,
        "original": r.original,
        "group": r.group,
        "asked": r.asked,
        "interrupted": r.interrupted(),
        "repeats": repeats,
        "metrics": metrics,
        "outputs": outputs,
    });
    let mut s = serde_json::to_string_pretty(&doc).expect("json");
    s.push('\n');
    s
}

/// The text of `rerun --repeat` (`tty`: a bordered table).
pub fn repeat_text(r: &RepeatReport, tty: bool) -> String {
    let mut s = format!(
        "{} repeat(s) of {} (group {}){}\n",
        r.repeats.len(),
        r.original,
        r.group,
        if r.interrupted() {
            format!(", interrupted: {} asked", r.asked)
        } else {
            String::new()
        }
    );
    if !r.metrics.is_empty() {
        let mut t = crate::output::new_table(tty);
        t.set_header(["METRIC (last)", "ORIGINAL", "MIN", "MAX", "STDDEV", "N"]);
        if !tty {
            for col in t.column_iter_mut() {
                col.set_padding((0, 2));
            }
        }
        for m in &r.metrics {
            let st = &m.stats;
            let stat = |v: f64| {
                if st.n > 0 {
                    value_text(v)
                } else {
                    "-".into()
                }
            };
            t.add_row(vec![
                escape(&m.key).into_owned(),
                m.original
                    .map(value_text)
                    .unwrap_or_else(|| "(none)".into()),
                stat(st.min),
                stat(st.max),
                if st.n > 0 {
                    rounded(st.stddev)
                } else {
                    "-".into()
                },
                format!("{}/{}", st.n, r.repeats.len()),
            ]);
        }
        let table = t.to_string();
        let lines: Vec<&str> = table.lines().map(str::trim_end).collect();
        s.push_str(&lines.join("\n"));
        s.push('\n');
    }
    for o in &r.outputs {
        let path = escape(&o.path);
        match o.differs_at {
            None if o.digests.iter().all(Option::is_none) => {
                s.push_str(&format!("output {path}: missing in every repeat\n"))
            }
            None => s.push_str(&format!("output {path}: the same in every repeat\n")),
            Some(k) => {
                let mut line = format!(
                    "output {path}: DIFFERS between repeats ({} distinct digests; repeat {k} vs repeat 1)",
                    o.distinct()
                );
                if let Some(d) = &o.difference {
                    line.push_str(&difference_text(d));
                }
                s.push_str(&line);
                s.push('\n');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::diff::one_point;
    use crate::ops::output_diff::Difference;
    use crate::ops::repeat::{metric_spreads, OutputSpread, Repeat};

    fn report() -> RepeatReport {
        let rep = |seq: u32, acc: f64| Repeat {
            seq,
            id: format!("r{seq}"),
            exit: 0,
            outputs: vec![],
            metrics: vec![one_point("acc", acc), one_point("loss\x1b", 0.5)],
        };
        let repeats = vec![rep(1, 0.9), rep(2, 0.8)];
        RepeatReport {
            original: "orig".into(),
            group: "g".into(),
            asked: 3,
            metrics: metric_spreads(&[one_point("acc", 0.85)], &repeats),
            outputs: vec![
                OutputSpread {
                    path: "log.txt".into(),
                    digests: vec![Some("a".into()), Some("b".into())],
                    differs_at: Some(2),
                    difference: Some(Difference::Lines {
                        file: None,
                        line: 2,
                        original: Some("x=1".into()),
                        rerun: Some("x=2".into()),
                    }),
                },
                OutputSpread {
                    path: "same.txt".into(),
                    digests: vec![Some("c".into()), Some("c".into())],
                    differs_at: None,
                    difference: None,
                },
                OutputSpread {
                    path: "gone.txt".into(),
                    digests: vec![None, None],
                    differs_at: None,
                    difference: None,
                },
            ],
            repeats,
        }
    }

    #[test]
    fn text_names_the_spread_and_the_first_difference() {
        insta::assert_snapshot!(repeat_text(&report(), false), @r###"
        2 repeat(s) of orig (group g), interrupted: 3 asked
        METRIC (last)  ORIGINAL  MIN  MAX  STDDEV     N
        acc            0.85      0.8  0.9  0.0707107  2/2
        loss\x1b       (none)    0.5  0.5  0          2/2
        output log.txt: DIFFERS between repeats (2 distinct digests; repeat 2 vs repeat 1): first difference at line 2: "x=1" vs "x=2"
        output same.txt: the same in every repeat
        output gone.txt: missing in every repeat
        "###);
    }

    #[test]
    fn json_carries_every_value() {
        let doc: Value = serde_json::from_str(&repeat_json(&report())).unwrap();
        assert_eq!(doc["interrupted"], true);
        assert_eq!(doc["metrics"][0]["values"], json!([0.9, 0.8]));
        assert_eq!(doc["metrics"][0]["original"], 0.85);
        assert_eq!(doc["outputs"][0]["differ"], true);
        assert_eq!(
            doc["outputs"][0]["first_difference"],
            "first difference at line 2: \"x=1\" vs \"x=2\""
        );
        assert_eq!(doc["outputs"][1]["first_difference"], Value::Null);
    }
}
