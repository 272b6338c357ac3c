//! The run JSON contract (DESIGN.md, `schema_version` 1): the object of `show --json`, the
//! document of `ls --json`, MLflow's `repro/run.json` and exports. Field names change only with
//! `schema_version`.

use serde_json::json;

use super::{Run, SCHEMA_VERSION};

/// The JSON object of one run, status liveness applied.
pub fn run_json(run: &Run) -> serde_json::Value {
    let mut v = serde_json::to_value(run).expect("run serialises");
    if let Some(code) = v.get_mut("code").and_then(|c| c.as_object_mut()) {
        code.remove("patch");
    }
    if let Some(obj) = v.as_object_mut() {
        obj.remove("pid_start");
        obj.remove("pid_ns");
    }
    v
}

/// The object of `show --json` (and of `ls --json`, and MLflow's `repro/run.json`): the run and
/// its metric summary under `metrics` (`{}` without metrics).
pub fn run_json_with_metrics(
    run: &Run,
    summaries: &[super::metrics::MetricSummary],
) -> serde_json::Value {
    let mut v = run_json(run);
    v["metrics"] = super::metrics::summary_json(summaries);
    v
}

/// `{"schema_version":1,"runs":[…]}` around run objects already built.
pub fn runs_json_values(list: Vec<serde_json::Value>) -> String {
    let doc = json!({"schema_version": SCHEMA_VERSION, "runs": list});
    let mut s = serde_json::to_string_pretty(&doc).expect("json");
    s.push('\n');
    s
}

/// `{"schema_version":1,"runs":[…]}`.
pub fn runs_json(runs: &[Run]) -> String {
    let list: Vec<_> = runs.iter().map(run_json).collect();
    let doc = json!({"schema_version": SCHEMA_VERSION, "runs": list});
    let mut s = serde_json::to_string_pretty(&doc).expect("json");
    s.push('\n');
    s
}
