//! What `repro image` shows: the fields of `inspect`, and the report of `archive` and `--gc`.

use serde_json::json;

use crate::ops::archive::{ArchiveReport, GcReport};
use crate::ops::image::Inspection;
use crate::sanitize::escape;

fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("json");
    s.push('\n');
    s
}

/// The JSON document of `image inspect` (schema_version 1); `input` as the user typed it.
pub fn inspect_json(input: &str, i: &Inspection) -> String {
    let r = &i.reference;
    let registry = i.remote.as_ref().map(|m| {
        json!({
            "digest": m.digest,
            "media_type": m.media_type,
            "is_index": m.is_index,
            "platforms": m.platforms,
            "platform_digest": m.platform_digest,
            "labels": m.labels,
        })
    });
    pretty(&json!({
        "schema_version": crate::record::SCHEMA_VERSION,
        "input": input,
        "domain": r.domain,
        "path": r.path,
        "tag": r.tag,
        "digest": r.digest.as_ref().map(|d| d.to_string()),
        "normalized": r.with_default_tag(),
        "registry": registry,
    }))
}

/// The text of `image inspect`: one `label value` line a field.
pub fn inspect_text(input: &str, i: &Inspection) -> String {
    let r = &i.reference;
    let mut out = String::new();
    // Registry answers (labels, media types) are untrusted: controls shown, never obeyed.
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<16}{}\n", escape(v)));
    line("input", input);
    line("domain", &r.domain);
    line("path", &r.path);
    line("tag", r.tag.as_deref().unwrap_or("-"));
    line(
        "digest",
        &r.digest
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or("-".into()),
    );
    line("normalized", &r.with_default_tag());
    line("familiar", &r.familiar());
    if let Some(m) = &i.remote {
        line("registry digest", &m.digest);
        line("media type", &m.media_type);
        line("index", if m.is_index { "yes" } else { "no" });
        for p in &m.platforms {
            line("  platform", &format!("{} {}", p.platform, p.digest));
        }
        if m.is_index {
            line(
                "runs",
                &format!(
                    "{} on {}",
                    m.platform_digest,
                    m.platform.as_deref().unwrap_or("?")
                ),
            );
        }
        for (k, v) in &m.labels {
            line("label", &format!("{k}={v}"));
        }
    }
    out
}

/// `{"schema_version":1,"gc":{…}}`.
pub fn gc_json(r: &GcReport) -> String {
    pretty(&json!({ "schema_version": crate::record::SCHEMA_VERSION, "gc": r }))
}

/// The one line of `image archive --gc`.
pub fn gc_text(r: &GcReport) -> String {
    format!(
        "{}: removed {} blob(s) ({} bytes) and {} index entr(ies); kept {} blob(s)\n",
        r.location,
        r.blobs_removed,
        r.bytes_freed,
        r.entries_dropped.len(),
        r.blobs_kept
    )
}

/// `{"schema_version":1,"archive":{…}}`.
pub fn archive_json(report: &ArchiveReport) -> String {
    pretty(&json!({ "schema_version": crate::record::SCHEMA_VERSION, "archive": report }))
}

/// One `archived` or `FAILED` line an image.
pub fn archive_text(report: &ArchiveReport) -> String {
    let mut s = String::new();
    for i in &report.images {
        let runs = i
            .runs
            .iter()
            .map(|r| &r[..r.len().min(12)])
            .collect::<Vec<_>>()
            .join(",");
        match &i.error {
            None => s.push_str(&format!(
                "archived  {}  {}  runs {runs}{}\n",
                escape(&i.reference),
                i.digest,
                if i.platform_digests.is_empty() {
                    String::new()
                } else {
                    format!("  platforms {}", i.platform_digests.join(","))
                }
            )),
            Some(e) => s.push_str(&format!(
                "FAILED    {}  {}  runs {runs}: {e}\n",
                escape(&i.reference),
                i.digest
            )),
        }
    }
    s
}

/// The status lines of a text archive report: runs skipped, then what was fetched.
pub fn archive_status(report: &ArchiveReport) -> Vec<String> {
    let mut s = Vec::new();
    if !report.skipped.is_empty() {
        s.push(format!(
            "{} run(s) without a pinned image skipped",
            report.skipped.len()
        ));
    }
    s.push(format!(
        "{} {}: {} blob(s) fetched ({} bytes), {} already there",
        report.kind,
        report.location,
        report.blobs_fetched,
        report.bytes_fetched,
        report.blobs_present
    ));
    s
}
