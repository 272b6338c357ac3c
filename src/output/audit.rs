//! What `repro audit` shows: the availability table, the JSON document, and the warnings and
//! status line that go to stderr.

use serde_json::json;

use crate::ops::audit::{AuditReport, Availability};
use crate::sanitize::escape;

fn short(d: &str) -> String {
    match d.split_once(':') {
        Some((a, h)) if h.len() > 12 => format!("{a}:{}", &h[..12]),
        _ => d.to_string(),
    }
}

/// `{"schema_version":1,"images":[…],"unpinned_runs":[…],"at_risk":bool}`.
pub fn json(report: &AuditReport) -> String {
    let mut s = serde_json::to_string_pretty(&json!({
        "schema_version": crate::record::SCHEMA_VERSION,
        "images": report.rows,
        "unpinned_runs": report.unpinned,
        "at_risk": report.at_risk(),
    }))
    .expect("json");
    s.push('\n');
    s
}

/// The audit table: RUNS, REFERENCE, DIGEST, STATUS, TAG, TAGS NOW.
pub fn table(report: &AuditReport, tty: bool) -> String {
    let mut t = super::new_table(tty);
    t.set_header(vec![
        "RUNS",
        "REFERENCE",
        "DIGEST",
        "STATUS",
        "TAG",
        "TAGS NOW",
    ]);
    if !tty {
        for col in t.column_iter_mut() {
            col.set_padding((0, 2));
        }
    }
    for r in &report.rows {
        let runs = match r.runs.len() {
            1 => r.runs[0][..r.runs[0].len().min(12)].to_string(),
            n => format!("{} (+{})", &r.runs[0][..r.runs[0].len().min(12)], n - 1),
        };
        let mut status = r.status.word().to_string();
        if r.status == Availability::Present && r.archives.iter().any(|a| a.intact) {
            status.push_str(" +archived");
        }
        if r.archives.iter().any(|a| !a.intact) {
            status.push_str(" (archive damaged)");
        }
        let tag = match &r.tag {
            None => "-".to_string(),
            Some(t) if !t.moved => format!("{}: unchanged", t.tag),
            Some(t) => match &t.digest {
                None => format!("{}: gone", t.tag),
                Some(d) => format!(
                    "{}: moved → {}{}",
                    t.tag,
                    short(d),
                    t.used_by
                        .as_ref()
                        .map(|u| format!(" (run {})", &u[..u.len().min(12)]))
                        .unwrap_or_else(|| " (no run here)".into())
                ),
            },
        };
        let mut tags_now = if r.tags_now.is_empty() {
            "-".to_string()
        } else {
            r.tags_now.join(",")
        };
        if r.tags_truncated {
            tags_now.push_str(" (tag list cut short)");
        }
        t.add_row(vec![
            runs,
            escape(&r.reference).to_string(),
            short(&r.digest),
            status,
            escape(&tag).to_string(),
            escape(&tags_now).to_string(),
        ]);
    }
    t.to_string()
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
}

/// The warnings of a text report: registry errors, then damaged archives.
pub fn warnings(report: &AuditReport) -> Vec<String> {
    let mut w: Vec<String> = report
        .rows
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| {
            format!(
                "{}: {}",
                r.reference,
                r.error.as_deref().unwrap_or_default()
            )
        })
        .collect();
    for r in &report.rows {
        for a in r.archives.iter().filter(|a| !a.intact) {
            w.push(format!(
                "archive {} of {}: {}",
                a.location,
                r.digest,
                a.problems.join("; ")
            ));
        }
    }
    w
}

/// The status line about runs that could not be checked, if any.
pub fn unchecked(report: &AuditReport) -> Option<String> {
    (!report.unpinned.is_empty()).then(|| {
        format!(
            "{} run(s) have no pinned digest and were not checked",
            report.unpinned.len()
        )
    })
}
