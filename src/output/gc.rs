//! Rendering of `repro gc --outputs`: the kept copies that go (run, output, size) and what that
//! frees, as text or JSON.

use crate::ops::gc::{OutputsPlan, Space, Swept};
use crate::output::formats::human_bytes;
use crate::output::new_table;
use crate::sanitize::escape;

/// The outputs whose kept copies go, one row each: RUN NAME OUTPUT SIZE (at most `max` rows).
pub fn removals_table(plan: &OutputsPlan, tty: bool, max: usize) -> String {
    if plan.remove.is_empty() {
        return String::new();
    }
    let mut t = new_table(tty);
    t.set_header(vec!["RUN", "NAME", "OUTPUT", "SIZE"]);
    if !tty {
        for col in t.column_iter_mut() {
            col.set_padding((0, 2));
        }
    }
    for r in plan.remove.iter().take(max) {
        t.add_row(vec![
            r.run[..r.run.len().min(12)].to_string(),
            escape(r.name.as_deref().unwrap_or("-")).into_owned(),
            escape(&r.output).into_owned(),
            human_bytes(r.bytes),
        ]);
    }
    let mut s = String::new();
    for l in t.to_string().lines() {
        s.push_str(l.trim_end());
        s.push('\n');
    }
    if plan.remove.len() > max {
        s.push_str(&format!("… and {} more\n", plan.remove.len() - max));
    }
    s
}

fn runs_of(plan: &OutputsPlan) -> usize {
    let mut runs: Vec<&str> = plan.remove.iter().map(|r| r.run.as_str()).collect();
    runs.dedup();
    runs.len()
}

fn space(s: Space, what: &str) -> String {
    format!("{} in {} {what}", human_bytes(s.bytes), s.count)
}

/// The figures of a plan: what goes, what it frees, orphans and stale temporary files.
pub fn plan_summary(plan: &OutputsPlan, dry_run: bool) -> String {
    let would = if dry_run { "would remove" } else { "removes" };
    let recorded: u64 = plan.remove.iter().map(|r| r.bytes).sum();
    let mut s = if plan.remove.is_empty() {
        "no kept output goes\n".to_string()
    } else {
        format!(
            "{would} the kept copies of {} output(s) of {} run(s) ({} recorded); the run records stay\n",
            plan.remove.len(),
            runs_of(plan),
            human_bytes(recorded)
        )
    };
    s.push_str(&format!(
        "space returned: {} (objects that outputs staying still use free nothing)\n",
        space(plan.frees, "object(s)")
    ));
    s.push_str(&format!(
        "and orphans: {}; stale temporary files: {}\n",
        space(plan.orphans, "object(s) no run keeps"),
        space(plan.temps, "file(s)")
    ));
    if !plan.kept.is_empty() {
        s.push_str(&format!(
            "kept: the outputs of {} considered run(s) a keep rule holds for\n",
            plan.kept.len()
        ));
    }
    s
}

/// What was done.
pub fn done_text(unkept: u64, swept: &Swept) -> String {
    let mut s = format!(
        "removed the kept copies of {unkept} output(s); deleted {} no kept output needs, and {} stale temporary file(s)\n",
        space(swept.objects, "object(s)"),
        swept.temps.count
    );
    if swept.fresh > 0 {
        s.push_str(&format!(
            "left {} unneeded object(s) written or reused while gc ran (the next gc removes them if still unneeded)\n",
            swept.fresh
        ));
    }
    s
}

/// `{"schema_version":1,"dry_run":bool,"remove":[{"run","name","output","bytes"}],
/// "kept":[{"run","why":[…]}],"frees":{"count","bytes"},"orphans":{…},"temps":{…},
/// "unreadable":[…],"done":null|{"outputs","objects":{…},"fresh","temps":{…}}}`.
pub fn json(plan: &OutputsPlan, dry_run: bool, done: Option<(u64, &Swept)>) -> String {
    let done = done.map(|(n, s)| {
        serde_json::json!({"outputs": n, "objects": s.objects, "fresh": s.fresh, "temps": s.temps})
    });
    let v = serde_json::json!({
        "schema_version": crate::record::SCHEMA_VERSION,
        "dry_run": dry_run,
        "remove": plan.remove,
        "kept": plan.kept,
        "frees": plan.frees,
        "orphans": plan.orphans,
        "temps": plan.temps,
        "unreadable": plan.unreadable,
        "done": done,
    });
    format!("{v}\n")
}
