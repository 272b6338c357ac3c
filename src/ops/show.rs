//! The document `repro show --json` prints (and `repro ui`'s `/api/runs/ID` answers): the run
//! object `ls --json` lists, with its metric histories on request and its sweep.

use crate::record::json::run_json_with_metrics;
use crate::record::metrics::history_json;
use crate::store::{Store, StoreError};

/// The `show --json` object of run `id` (a full id); `history` adds each metric's points.
pub fn run_document(
    store: &Store,
    id: &str,
    history: bool,
) -> Result<serde_json::Value, StoreError> {
    let run = store.get_run(id)?;
    let summaries = store.metric_summaries(id)?;
    let mut j = run_json_with_metrics(&run, &summaries);
    if history {
        let mut h = Vec::new();
        for m in &summaries {
            h.push((m.key.clone(), store.metric_history(id, &m.key)?));
        }
        j["history"] = history_json(&h);
    }
    if let Some(sw) = store.sweep_of(id)? {
        j["sweep"] = serde_json::Value::from(sw);
    }
    // Absent for a run recorded without one (by an older repro); `ls --json` has the same.
    if let Some(e) = store.environment_of(id)? {
        j["environment"] = serde_json::to_value(&e).expect("environment serialises");
    }
    Ok(j)
}
