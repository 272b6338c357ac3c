//! What `repro attest` shows: the report of `attest verify` (of a file, or of the attestations in
//! a registry) and the status lines of writing a document or a key pair and of a push.

use std::path::Path;

use crate::ops::attest::registry::{PushedAttestation, RegistryVerifyReport};
use crate::ops::attest::{Attestation, Check, CheckStatus, KeyFiles, VerifyReport};
use crate::sanitize::escape;

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
    check_lines(&report.checks)
}

/// The check lines; details come from the document (untrusted) and are escaped.
fn check_lines(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let status = match c.status {
            CheckStatus::Ok => "ok",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skipped => "skipped",
        };
        s.push_str(&format!(
            "{status:<7}  {:<11}  {}\n",
            escape(&c.check),
            escape(&c.detail.replace('\n', "; "))
        ));
    }
    s
}

/// `attest verify --from-registry`: a heading per attestation found (where, which layer), its
/// check lines, and a last line saying how many passed.
pub fn registry_verify_text(report: &RegistryVerifyReport) -> String {
    let mut s = String::new();
    let n = report.attestations.len();
    for (i, a) in report.attestations.iter().enumerate() {
        let title = a
            .title
            .as_deref()
            .map(|t| format!(" ({})", escape(t)))
            .unwrap_or_default();
        s.push_str(&format!(
            "attestation {} of {n}: {} layer {}{title}\n",
            i + 1,
            escape(&a.found_at),
            a.layer
        ));
        s.push_str(&check_lines(&a.checks));
    }
    let passed = report.attestations.iter().filter(|a| a.ok).count();
    s.push_str(&format!(
        "{passed} of {n} attestation(s) of {} passed every check (found through the {})\n",
        report.image,
        report.via.describe()
    ));
    s
}

/// `{"schema_version":1,"ok":bool,"image","via","attestations":[{found_at, manifest, layer,
/// title, ok, checks}]}` on one line.
pub fn registry_verify_json(report: &RegistryVerifyReport) -> String {
    let v = serde_json::json!({
        "schema_version": crate::record::SCHEMA_VERSION,
        "ok": report.ok(),
        "image": report.image,
        "via": report.via,
        "attestations": report.attestations,
    });
    format!("{v}\n")
}

/// The status line after a push.
pub fn pushed(p: &PushedAttestation) -> String {
    let how = match (&p.tag, p.already, p.kept) {
        (Some(tag), true, _) => format!("already under the tag {tag}; nothing pushed"),
        (Some(tag), false, 0) => format!("under the tag {tag} (the registry serves no referrers API)"),
        (Some(tag), false, kept) => format!(
            "appended under the tag {tag} beside {kept} attestation(s) already there (the registry serves no referrers API)"
        ),
        (None, _, _) => "as a referrer of the image (referrers API)".into(),
    };
    format!(
        "attached the attestation to {}: {} {how}",
        p.image, p.reference
    )
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
