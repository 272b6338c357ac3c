//! Rendering of `repro verify --store`: one line per damaged, missing or unreadable object with
//! the outputs it breaks, and how to get them back.

use crate::ops::store_verify::{Problem, StoreCheck};
use crate::output::formats::human_bytes;
use crate::sanitize::escape;

/// `DAMAGED  <sha256>` lines, each followed by the outputs it breaks, then a summary line.
pub fn text(c: &StoreCheck) -> String {
    let mut s = String::new();
    for b in &c.bad {
        let what = match b.problem {
            Problem::Damaged => "DAMAGED",
            Problem::Missing => "MISSING",
            Problem::Unreadable => "UNREADABLE",
        };
        s.push_str(&format!("{what:<10}  {}", b.sha256));
        if let Some(e) = &b.error {
            s.push_str(&format!("  ({})", escape(e)));
        }
        s.push('\n');
        if b.affected.is_empty() {
            s.push_str(
                "            no kept output needs it (repro gc --outputs --orphans removes it)\n",
            );
        }
        for a in &b.affected {
            let name = a
                .name
                .as_deref()
                .map(|n| format!(" ({})", escape(n)))
                .unwrap_or_default();
            s.push_str(&format!(
                "            output {} of run {}{name}",
                escape(&a.output),
                a.run
            ));
            if !a.pushed.is_empty() {
                s.push_str(&format!(", pushed to {}", escape(&a.pushed.join(", "))));
            }
            s.push('\n');
        }
    }
    let count = |p: Problem| c.bad.iter().filter(|b| b.problem == p).count();
    s.push_str(&format!(
        "checked {} object(s), {}: {} damaged, {} missing, {} unreadable\n",
        c.checked.count,
        human_bytes(c.checked.bytes),
        count(Problem::Damaged),
        count(Problem::Missing),
        count(Problem::Unreadable)
    ));
    s
}

/// How to recover, for the hint line (`None` when all is well).
pub fn hint(c: &StoreCheck) -> Option<String> {
    if c.ok() {
        return None;
    }
    let pushed = c
        .bad
        .iter()
        .flat_map(|b| &b.affected)
        .any(|a| !a.pushed.is_empty());
    let orphans_only = c.bad.iter().all(|b| b.affected.is_empty());
    Some(if orphans_only {
        "no kept output needs these objects: `repro gc --outputs --orphans --yes` removes them"
            .into()
    } else if pushed {
        "get the broken outputs back from where they were pushed (listed above) with `repro get`, or re-run their runs: `repro rerun ID`; then `repro gc --outputs --orphans` removes damaged leftovers".into()
    } else {
        "the kept copies cannot be repaired here: re-run the runs listed (`repro rerun ID`) to produce the outputs again, or restore the object store from a backup; `repro gc --outputs --orphans` removes damaged leftovers".into()
    })
}

/// `{"schema_version":1,"ok":bool,"checked":{"count","bytes"},"bad":[{"sha256","problem",
/// "bytes","error","affected":[{"run","name","output","pushed"}]}]}`.
pub fn json(c: &StoreCheck) -> String {
    let v = serde_json::json!({
        "schema_version": crate::record::SCHEMA_VERSION,
        "ok": c.ok(),
        "checked": c.checked,
        "bad": c.bad,
    });
    format!("{v}\n")
}
