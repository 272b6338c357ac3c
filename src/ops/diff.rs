//! `diff`: the facts that differ between two runs, their metrics side by side with deltas, and
//! image/code revision mismatches.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::ops::repeat::Stats;
use crate::record::metrics::MetricSummary;
use crate::record::scheduler::flat_fields;
use crate::record::{Dataset, Run};
use crate::store::Store;

/// One differing fact: its dotted name and the two values (`null` when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub field: String,
    pub a: Value,
    pub b: Value,
}

fn push(out: &mut Vec<Change>, field: impl Into<String>, a: Value, b: Value) {
    if a != b {
        out.push(Change {
            field: field.into(),
            a,
            b,
        });
    }
}

fn map_diff(
    out: &mut Vec<Change>,
    prefix: &str,
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
) {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        push(
            out,
            format!("{prefix}.{k}"),
            json!(a.get(k)),
            json!(b.get(k)),
        );
    }
}

fn dataset_summary(d: &Dataset) -> String {
    let mut s = d.kind.as_str().to_string();
    if let Some(u) = &d.uri {
        s.push_str(&format!(" {u}"));
    }
    if let Some(v) = &d.version {
        s.push_str(&format!(" @ {v}"));
    }
    if let Some(dg) = d
        .digest
        .as_ref()
        .filter(|dg| Some(*dg) != d.version.as_ref())
    {
        s.push_str(&format!(" {dg}"));
    }
    s
}

/// Everything that differs between two runs, in a fixed order.
pub fn diff_runs(a: &Run, b: &Run) -> Vec<Change> {
    let mut out = Vec::new();
    push(&mut out, "name", json!(a.name), json!(b.name));
    image_changes(&mut out, a, b);
    code_changes(&mut out, a, b);
    dataset_changes(&mut out, a, b);
    command_changes(&mut out, a, b);
    exec_changes(&mut out, a, b);
    map_diff(&mut out, "param", &a.params, &b.params);
    map_diff(&mut out, "env", &a.env, &b.env);
    push(&mut out, "host", json!(a.host), json!(b.host));
    push(&mut out, "user", json!(a.user), json!(b.user));
    push(&mut out, "platform", json!(a.platform), json!(b.platform));
    scheduler_changes(&mut out, a, b);
    outcome_changes(&mut out, a, b);
    out
}

/// The image: field by field when both runs have one, else which one has it.
fn image_changes(out: &mut Vec<Change>, a: &Run, b: &Run) {
    match (&a.image, &b.image) {
        (None, None) => {}
        (Some(x), Some(y)) => {
            push(
                out,
                "image.reference",
                json!(x.reference),
                json!(y.reference),
            );
            push(out, "image.digest", json!(x.digest), json!(y.digest));
            push(
                out,
                "image.index_digest",
                json!(x.index_digest),
                json!(y.index_digest),
            );
            push(out, "image.platform", json!(x.platform), json!(y.platform));
            push(
                out,
                "image.resolved_by",
                json!(x.resolved_by.as_str()),
                json!(y.resolved_by.as_str()),
            );
            map_diff(out, "image.label", &x.labels, &y.labels);
        }
        (x, y) => push(
            out,
            "image",
            json!(x.as_ref().map(|i| &i.reference)),
            json!(y.as_ref().map(|i| &i.reference)),
        ),
    }
}

/// The code: field by field when both runs have it, else which commit each has.
fn code_changes(out: &mut Vec<Change>, a: &Run, b: &Run) {
    match (&a.code, &b.code) {
        (None, None) => {}
        (Some(x), Some(y)) => {
            push(out, "code.commit", json!(x.commit), json!(y.commit));
            push(out, "code.branch", json!(x.branch), json!(y.branch));
            push(out, "code.dirty", json!(x.dirty), json!(y.dirty));
            push(
                out,
                "code.patch_sha256",
                json!(x.patch_sha256),
                json!(y.patch_sha256),
            );
            push(
                out,
                "code.untracked",
                json!(x.untracked),
                json!(y.untracked),
            );
            push(out, "code.remote", json!(x.remote), json!(y.remote));
            push(
                out,
                "code.repo_root",
                json!(x.repo_root),
                json!(y.repo_root),
            );
        }
        (x, y) => push(
            out,
            "code",
            json!(x.as_ref().map(|c| &c.commit)),
            json!(y.as_ref().map(|c| &c.commit)),
        ),
    }
}

/// Each dataset of either run, by name, summarised.
fn dataset_changes(out: &mut Vec<Change>, a: &Run, b: &Run) {
    let names: BTreeSet<&String> = a
        .datasets
        .iter()
        .chain(&b.datasets)
        .map(|d| &d.name)
        .collect();
    for n in names {
        let find = |r: &Run| {
            r.datasets
                .iter()
                .find(|d| &d.name == n)
                .map(dataset_summary)
        };
        push(out, format!("dataset.{n}"), json!(find(a)), json!(find(b)));
    }
}

/// The argv, aligned (Myers diff, `similar`): an argument only B has is an insertion,
/// `command[+J]` (J its index in B); one only A has a removal, `command[-I]` (I its index in
/// A); a replaced one `command[I]` (A's index). Arguments after an insertion that are equal are
/// not reported as changed. Bytes that are not UTF-8 differ even when their lossy text matches.
fn command_changes(out: &mut Vec<Change>, a: &Run, b: &Run) {
    use similar::DiffOp;
    let text = |r: &Run, i: usize| json!(r.command[i].to_string_lossy());
    let removed = |out: &mut Vec<Change>, i: usize| {
        out.push(Change {
            field: format!("command[-{i}]"),
            a: text(a, i),
            b: Value::Null,
        })
    };
    let inserted = |out: &mut Vec<Change>, j: usize| {
        out.push(Change {
            field: format!("command[+{j}]"),
            a: Value::Null,
            b: text(b, j),
        })
    };
    let ops = similar::capture_diff_slices(similar::Algorithm::Myers, &a.command, &b.command);
    for op in ops {
        match op {
            DiffOp::Equal { .. } => {}
            DiffOp::Delete {
                old_index, old_len, ..
            } => (old_index..old_index + old_len).for_each(|i| removed(out, i)),
            DiffOp::Insert {
                new_index, new_len, ..
            } => (new_index..new_index + new_len).for_each(|j| inserted(out, j)),
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => {
                let pairs = old_len.min(new_len);
                for k in 0..pairs {
                    out.push(Change {
                        field: format!("command[{}]", old_index + k),
                        a: text(a, old_index + k),
                        b: text(b, new_index + k),
                    });
                }
                (old_index + pairs..old_index + old_len).for_each(|i| removed(out, i));
                (new_index + pairs..new_index + new_len).for_each(|j| inserted(out, j));
            }
        }
    }
}

/// Where and how the command ran.
fn exec_changes(out: &mut Vec<Change>, a: &Run, b: &Run) {
    push(out, "cwd", json!(a.cwd), json!(b.cwd));
    push(
        out,
        "exec.mode",
        json!(a.exec.mode.as_str()),
        json!(b.exec.mode.as_str()),
    );
    push(
        out,
        "exec.engine",
        json!(a.exec.engine),
        json!(b.exec.engine),
    );
    push(
        out,
        "exec.engine_args",
        json!(a.exec.engine_args),
        json!(b.exec.engine_args),
    );
    push(out, "exec.gpus", json!(a.exec.gpus), json!(b.exec.gpus));
}

/// The scheduler facts (Slurm, Kubernetes), flattened.
fn scheduler_changes(out: &mut Vec<Change>, a: &Run, b: &Run) {
    let (sa, sb) = (
        flat_fields(a.scheduler.as_ref()),
        flat_fields(b.scheduler.as_ref()),
    );
    let keys: BTreeSet<&String> = sa.keys().chain(sb.keys()).collect();
    for k in keys {
        let get = |m: &BTreeMap<String, Value>| m.get(k).cloned().unwrap_or(Value::Null);
        push(out, k.clone(), get(&sa), get(&sb));
    }
}

/// How it ended and what it wrote.
fn outcome_changes(out: &mut Vec<Change>, a: &Run, b: &Run) {
    push(
        out,
        "status",
        json!(a.status.as_str()),
        json!(b.status.as_str()),
    );
    push(out, "exit_code", json!(a.exit_code), json!(b.exit_code));
    push(out, "signal", json!(a.signal), json!(b.signal));
    push(
        out,
        "duration_ms",
        json!(a.duration_ms),
        json!(b.duration_ms),
    );
    let outs = |r: &Run| -> BTreeMap<String, String> {
        r.outputs
            .iter()
            .map(|o| {
                (
                    o.path.clone(),
                    o.sha256.clone().unwrap_or_else(|| "(missing)".into()),
                )
            })
            .collect()
    };
    map_diff(out, "output", &outs(a), &outs(b));
}

/// One metric of either run: its summary in A and in B (`None` where that run lacks it).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDelta {
    pub key: String,
    pub a: Option<MetricSummary>,
    pub b: Option<MetricSummary>,
}

impl MetricDelta {
    /// `B.last - A.last` (0 for equal values, the same infinity included; NaN when either is
    /// NaN); `None` when the key is in one run only.
    pub fn delta(&self) -> Option<f64> {
        let (a, b) = (self.a.as_ref()?.last, self.b.as_ref()?.last);
        // Equal values (including the same infinity) differ by 0, not inf - inf = NaN.
        Some(if a == b { 0.0 } else { b - a })
    }

    /// The delta relative to A's last value: `(B - A) / |A|`; `None` when A's value is 0 or
    /// not finite and the values differ (no meaningful ratio).
    pub fn relative(&self) -> Option<f64> {
        let d = self.delta()?;
        let a = self.a.as_ref()?.last;
        if d == 0.0 {
            Some(0.0)
        } else if a.is_finite() && a != 0.0 && d.is_finite() {
            Some(d / a.abs())
        } else {
            None
        }
    }
}

/// The spread of A's latest recorded repeats (`rerun A --repeat N`), against which `diff`
/// judges each metric delta.
#[derive(Debug, Clone, PartialEq)]
pub struct Noise {
    /// The repeat group.
    pub group: String,
    /// How many repeats the group holds.
    pub repeats: usize,
    /// Each metric's spread over the repeats, by key.
    pub spread: BTreeMap<String, Stats>,
}

impl Noise {
    /// A's repeats, when A was repeated.
    pub fn of(store: &Store, a: &str) -> Result<Option<Noise>, crate::store::StoreError> {
        let Some((group, ids)) = store.latest_repeats(a)? else {
            return Ok(None);
        };
        let spread = crate::ops::repeat::recorded_spread(store, &ids)?;
        Ok(Some(Noise {
            group,
            repeats: ids.len(),
            spread,
        }))
    }

    /// Whether `m`'s delta lies inside the spread of its metric over A's repeats
    /// ([`Stats::within_noise`]), with that spread; `None` when the metric is in one run only or
    /// was not reported by the repeats.
    pub fn judge(&self, m: &MetricDelta) -> Option<(bool, Stats)> {
        let d = m.delta()?;
        let s = self.spread.get(&m.key)?;
        Some((s.within_noise(d), *s))
    }
}

/// The environment drift from run `a` to run `b` (docs/environment.md); `None` when either
/// has no recorded environment.
pub fn environment_drift(
    store: &Store,
    a: &str,
    b: &str,
) -> Result<Option<Vec<crate::ops::env_drift::Change>>, crate::store::StoreError> {
    Ok(match (store.environment_of(a)?, store.environment_of(b)?) {
        (Some(x), Some(y)) => Some(crate::ops::env_drift::drift(&x, &y)),
        _ => None,
    })
}

/// Every metric key of either run, by key, with both summaries.
pub fn metric_deltas(a: &[MetricSummary], b: &[MetricSummary]) -> Vec<MetricDelta> {
    let keys: BTreeSet<&String> = a.iter().chain(b).map(|m| &m.key).collect();
    keys.into_iter()
        .map(|k| MetricDelta {
            key: k.clone(),
            a: a.iter().find(|m| &m.key == k).cloned(),
            b: b.iter().find(|m| &m.key == k).cloned(),
        })
        .collect()
}

/// Runs whose image says it was built from another commit than the code that ran.
pub fn revision_warnings(runs: [(&str, &Run); 2]) -> Vec<String> {
    let mut w = Vec::new();
    for (label, r) in runs {
        let (Some(img), Some(code)) = (&r.image, &r.code) else {
            continue;
        };
        let (Some(rev), Some(commit)) = (
            img.labels.get("org.opencontainers.image.revision"),
            &code.commit,
        ) else {
            continue;
        };
        if rev.is_empty() || !(commit.starts_with(rev.as_str()) || rev.starts_with(commit.as_str()))
        {
            w.push(format!(
                "run {label} ({}): the image label org.opencontainers.image.revision is {rev}, but the code was at commit {commit}",
                r.short_id()
            ));
        }
    }
    w
}

/// The summary of a metric with one point (unit tests of diff and check verdicts).
#[cfg(test)]
pub(crate) fn one_point(key: &str, last: f64) -> MetricSummary {
    MetricSummary {
        key: key.into(),
        last,
        min: last,
        max: last,
        count: 1,
        last_step: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Arg, Status};
    use crate::store::Store;

    fn sample() -> Run {
        // Reuse the store's sample through a round trip so this test sees real shapes.
        let mut s = Store::open_in_memory().unwrap();
        let json = r#"{"schema_version":1,"id":"01jd3k0000000000000000000a","name":null,"status":"succeeded","exit_code":0,"signal":null,
            "started_at":"2026-11-26T14:00:00.000Z","ended_at":"2026-11-26T14:00:01.000Z","duration_ms":1000,
            "command":["python","train.py"],"cwd":".","exec":{"mode":"host","engine":null},
            "image":{"reference":"r/app:1","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","index_digest":null,"platform":null,"resolved_by":"pinned","labels":{}},
            "code":null,"datasets":[],"outputs":[],"params":{},"tags":[],"notes":[],"env":{},"host":"h","user":"u","platform":"linux/amd64","pid":null,"boot_id":null,"rerun_of":null}"#;
        let run: Run = serde_json::from_str(json).unwrap();
        s.insert_run(&run).unwrap();
        s.get_run(&run.id).unwrap()
    }

    #[test]
    fn identical_runs_have_no_differences() {
        let a = sample();
        assert!(diff_runs(&a, &a.clone()).is_empty());
    }

    #[test]
    fn argv_is_aligned_so_an_insertion_shifts_nothing() {
        let a = sample();
        let mut a2 = a.clone();
        let words = |w: &[&str]| w.iter().map(|s| Arg::from(*s)).collect::<Vec<_>>();
        a2.command = words(&["python", "train.py", "--lr", "0.1", "--seed", "1"]);
        let mut b = a2.clone();
        b.command = words(&[
            "python", "train.py", "--epochs", "10", "--lr", "0.2", "--seed", "1",
        ]);
        let changes = diff_runs(&a2, &b);
        let got: Vec<(&str, Value, Value)> = changes
            .iter()
            .map(|c| (c.field.as_str(), c.a.clone(), c.b.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("command[+2]", Value::Null, json!("--epochs")),
                ("command[+3]", Value::Null, json!("10")),
                ("command[3]", json!("0.1"), json!("0.2")),
            ]
        );
        // And the other way round: removals, named by A's index.
        let back: Vec<String> = diff_runs(&b, &a2).into_iter().map(|c| c.field).collect();
        assert_eq!(back, vec!["command[-2]", "command[-3]", "command[5]"]);
    }

    #[test]
    fn a_replaced_argument_keeps_its_index_and_bytes_count() {
        let a = sample();
        let mut b = a.clone();
        b.command = vec![Arg::from("python"), Arg(vec![0x74, 0xff]), Arg::from("--x")];
        b.status = Status::Failed;
        b.exit_code = Some(1);
        let fields: Vec<String> = diff_runs(&a, &b).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            vec!["command[1]", "command[+2]", "status", "exit_code"]
        );
    }

    use crate::ops::diff::one_point as m;

    #[test]
    fn metric_deltas_cover_both_runs_and_odd_values() {
        let a = [
            m("acc", 0.8),
            m("inf", f64::INFINITY),
            m("nan", f64::NAN),
            m("only_a", 1.0),
            m("zero", 0.0),
        ];
        let b = [
            m("acc", 0.9),
            m("inf", f64::INFINITY),
            m("nan", 1.0),
            m("only_b", 2.0),
            m("zero", 0.5),
        ];
        let d = metric_deltas(&a, &b);
        let keys: Vec<&str> = d.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(keys, ["acc", "inf", "nan", "only_a", "only_b", "zero"]);
        assert!((d[0].delta().unwrap() - 0.1).abs() < 1e-12);
        assert!((d[0].relative().unwrap() - 0.125).abs() < 1e-12);
        assert_eq!((d[1].delta(), d[1].relative()), (Some(0.0), Some(0.0)));
        assert!(d[2].delta().unwrap().is_nan());
        assert_eq!(d[2].relative(), None);
        assert!(d[3].b.is_none() && d[3].delta().is_none() && d[3].relative().is_none());
        assert!(d[4].a.is_none() && d[4].delta().is_none());
        assert_eq!((d[5].delta(), d[5].relative()), (Some(0.5), None));
    }

    #[test]
    fn revision_label_mismatch_is_pointed_out() {
        let mut a = sample();
        a.code = Some(crate::record::Code {
            repo_root: "/r".into(),
            remote: None,
            commit: Some("b".repeat(40)),
            branch: None,
            dirty: false,
            untracked: vec![],
            patch_sha256: None,
            patch: None,
        });
        assert!(revision_warnings([("A", &a), ("B", &a)]).is_empty());
        a.image
            .as_mut()
            .unwrap()
            .labels
            .insert("org.opencontainers.image.revision".into(), "bbbbbbb".into());
        assert!(revision_warnings([("A", &a), ("B", &a)]).is_empty());
        a.image
            .as_mut()
            .unwrap()
            .labels
            .insert("org.opencontainers.image.revision".into(), "c".repeat(40));
        let w = revision_warnings([("A", &a), ("B", &sample())]);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("run A"), "{w:?}");
    }
}
