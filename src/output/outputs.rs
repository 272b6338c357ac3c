//! What `repro outputs push` shows: the pushed artifact (a status line and its digest, or JSON)
//! and the outputs left out.

use crate::ops::outputs::OutputsPushed;
use crate::sanitize::escape;

/// `{"schema_version":1,"run_id","reference","pinned","digest","files","bytes","uploaded",
/// "present","subject","no_subject","skipped":[{"path","why"}]}` on one line.
pub fn json(p: &OutputsPushed) -> String {
    let skipped: Vec<_> = p
        .skipped
        .iter()
        .map(|(path, why)| serde_json::json!({"path": path, "why": why}))
        .collect();
    let v = serde_json::json!({
        "schema_version": crate::record::SCHEMA_VERSION,
        "run_id": p.run_id,
        "reference": p.reference,
        "pinned": p.pinned,
        "digest": p.digest,
        "files": p.files,
        "bytes": p.bytes,
        "uploaded": p.uploaded,
        "present": p.present,
        "subject": p.subject,
        "no_subject": p.no_subject,
        "skipped": skipped,
    });
    format!("{v}\n")
}

/// The status line: where, how many files, what was sent, the subject.
pub fn status(p: &OutputsPushed) -> String {
    let subject = match (&p.subject, &p.no_subject) {
        (Some(s), _) => format!("; subject: the run's image {s}"),
        (None, Some(why)) => format!("; no subject: {}", escape(why)),
        (None, None) => String::new(),
    };
    format!(
        "pushed {} file(s), {} ({} uploaded, {} already there) of run {} to {}{subject}",
        p.files,
        crate::store::kept::human_bytes(p.bytes),
        p.uploaded,
        p.present,
        p.run_id,
        p.reference
    )
}

/// One warning per output left out.
pub fn warnings(p: &OutputsPushed) -> Vec<String> {
    p.skipped
        .iter()
        .map(|(path, why)| {
            format!(
                "output {} not pushed: not kept ({})",
                escape(path),
                escape(why)
            )
        })
        .collect()
}
