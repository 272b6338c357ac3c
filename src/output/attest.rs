//! What `repro attest` shows: the report of `attest verify` and the status lines of writing a
//! document or a key pair.

use std::path::Path;

use crate::ops::attest::{Attestation, CheckStatus, KeyFiles, VerifyReport};

/// `{"schema_version":1,"ok":bool,"checks":[…]}` on one line.
pub fn verify_json(report: &VerifyReport) -> String {
    let v = serde_json::json!({
        "schema_version": crate::record::SCHEMA_VERSION,
        "ok": report.ok(),
        "checks": report.checks,
    });
    format!("{v}\n")
}

/// One line a check: `ok`/`FAIL`/`skipped`, the check, its detail.
pub fn verify_text(report: &VerifyReport) -> String {
    let mut s = String::new();
    for c in &report.checks {
        let status = match c.status {
            CheckStatus::Ok => "ok",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skipped => "skipped",
        };
        s.push_str(&format!(
            "{status:<7}  {:<11}  {}\n",
            c.check,
            c.detail.replace('\n', "; ")
        ));
    }
    s
}

/// The warnings of a new attestation: outputs left out, byproducts absent.
pub fn warnings(a: &Attestation) -> Vec<String> {
    let missing = a
        .skipped
        .missing_outputs
        .iter()
        .map(|o| format!("output {o} was missing when the run ended: it is not a subject"));
    missing.chain(a.notes.iter().cloned()).collect()
}

/// The status line after writing the document to `path`.
pub fn wrote(path: &Path, a: &Attestation) -> String {
    let signed = match &a.keyid {
        Some(k) => format!("DSSE envelope signed by key {k}"),
        None => "unsigned statement".into(),
    };
    format!(
        "wrote {} ({signed}, sha256 {})",
        path.display(),
        a.document_sha256
    )
}

/// The status line after writing a key pair.
pub fn wrote_keys(k: &KeyFiles) -> String {
    format!(
        "wrote {} (private) and {} (public)",
        k.private.display(),
        k.public.display()
    )
}
