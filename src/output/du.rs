//! Rendering of `repro du`: the store's totals, then runs largest first, as text or JSON.

use crate::ops::du::DuReport;
use crate::output::formats::human_bytes;
use crate::output::new_table;
use crate::sanitize::escape;

/// Totals, then a table RUN NAME OUTPUTS KEPT ONLY-HERE.
pub fn text(r: &DuReport, tty: bool) -> String {
    let mut s = format!(
        "objects    {} in {} object(s), {} on disk\n",
        human_bytes(r.objects.bytes),
        r.objects.count,
        human_bytes(r.disk_bytes)
    );
    s.push_str(&format!(
        "kept       {} in {} object(s) for {} run(s)\n",
        human_bytes(r.referenced.bytes),
        r.referenced.count,
        r.runs_total
    ));
    s.push_str(&format!(
        "orphans    {} in {} object(s) no run keeps{}\n",
        human_bytes(r.orphans.bytes),
        r.orphans.count,
        if r.orphans.count > 0 {
            " (repro gc --outputs --orphans removes them)"
        } else {
            ""
        }
    ));
    s.push_str(&format!(
        "temporary  {} in {} file(s)\n",
        human_bytes(r.temps.bytes),
        r.temps.count
    ));
    if r.missing > 0 {
        s.push_str(&format!(
            "missing    {} object(s) kept outputs need (repro verify --store names them)\n",
            r.missing
        ));
    }
    if r.runs.is_empty() {
        return s;
    }
    s.push('\n');
    let mut t = new_table(tty);
    t.set_header(vec!["RUN", "NAME", "OUTPUTS", "KEPT", "ONLY HERE"]);
    if !tty {
        for col in t.column_iter_mut() {
            col.set_padding((0, 2));
        }
    }
    for u in &r.runs {
        t.add_row(vec![
            u.id[..u.id.len().min(12)].to_string(),
            escape(u.name.as_deref().unwrap_or("-")).into_owned(),
            u.outputs.to_string(),
            human_bytes(u.bytes),
            human_bytes(u.only_bytes),
        ]);
    }
    for l in t.to_string().lines() {
        s.push_str(l.trim_end());
        s.push('\n');
    }
    if (r.runs.len() as u64) < r.runs_total {
        s.push_str(&format!(
            "… {} more run(s) (-n N or --all)\n",
            r.runs_total - r.runs.len() as u64
        ));
    }
    s
}

/// `{"schema_version":1,"objects":{"count","bytes"},"disk_bytes",…,"runs":[…],"runs_total"}`.
pub fn json(r: &DuReport) -> String {
    let mut v = serde_json::to_value(r).expect("the report serialises");
    v["schema_version"] = crate::record::SCHEMA_VERSION.into();
    format!("{v}\n")
}
