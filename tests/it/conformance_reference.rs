//! Conformance with the upstream test tables in `../shared/conformance` (read at test time,
//! never copied): distribution/reference `ParseNormalizedNamed` and go-digest `Parse`.

use std::path::PathBuf;

use repro::capture::image::digest::{self, DigestError};
use repro::capture::image::reference::{self, ReferenceError};
use serde_json::Value;

fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance")
}

/// Reads a JSONL table, or `None` (with a SKIPPED line) when the folder is absent — except
/// under `CI`, where a missing table fails the test.
fn table(file: &str) -> Option<Vec<Value>> {
    let path = conformance_dir().join(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            // Locally the tables may be absent; in CI a silent pass would hide a broken checkout.
            crate::support::skip_or_fail(&format!(
                "conformance table {} not readable ({e}; ../shared/conformance beside the repository)",
                path.display()
            ));
            return None;
        }
    };
    let rows: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("conformance row is JSON"))
        .collect();
    assert!(!rows.is_empty(), "{} is empty", path.display());
    Some(rows)
}

fn s<'a>(row: &'a Value, key: &str) -> Option<&'a Value> {
    row.as_object().and_then(|o| o.get(key))
}

/// Compares one expectation object (`valid`/`ok`, domain, path, tag, digest, name, normalized,
/// familiar) against our parse; returns a description of every disagreement.
fn check_normalized(input: &str, exp: &Value, valid_key: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let want_valid = s(exp, valid_key)
        .and_then(Value::as_bool)
        .expect("validity");
    let got = reference::parse_normalized(input);
    match (&got, want_valid) {
        (Ok(_), false) => bad.push(format!("{input:?}: accepted, upstream rejects")),
        (Err(e), true) => bad.push(format!("{input:?}: rejected ({e}), upstream accepts")),
        _ => {}
    }
    let Ok(r) = got else {
        if let Some(err) = s(exp, "error").and_then(Value::as_str) {
            let e = reference::parse_normalized(input).unwrap_err();
            if !error_matches(&e, err) {
                bad.push(format!("{input:?}: error {e:?}, upstream {err}"));
            }
        }
        return bad;
    };
    let mut field = |key: &str, got: Option<String>| {
        if let Some(want) = s(exp, key) {
            let want = want.as_str().map(str::to_string);
            if want != got {
                bad.push(format!("{input:?}: {key} {got:?}, upstream {want:?}"));
            }
        }
    };
    field("domain", Some(r.domain.clone()));
    field("path", Some(r.path.clone()));
    field("name", Some(r.name()));
    field("tag", r.tag.clone());
    field("digest", r.digest.as_ref().map(|d| d.to_string()));
    field("normalized", Some(r.to_string()));
    field("familiar", Some(r.familiar()));
    if valid_key == "ok" {
        field("string", Some(r.to_string()));
    }
    bad
}

fn error_matches(e: &ReferenceError, upstream: &str) -> bool {
    match upstream {
        "ErrNameEmpty" => matches!(e, ReferenceError::Empty),
        "ErrReferenceInvalidFormat" => matches!(e, ReferenceError::InvalidFormat { .. }),
        "ErrNameContainsUppercase" => {
            matches!(
                e,
                ReferenceError::Uppercase { .. } | ReferenceError::RemoteUppercase { .. }
            )
        }
        "ErrNameTooLong" => matches!(e, ReferenceError::NameTooLong { .. }),
        "digest.ErrDigestInvalidLength" => matches!(
            e,
            ReferenceError::Digest {
                source: DigestError::InvalidLength { .. },
                ..
            }
        ),
        "digest.ErrDigestUnsupported" => matches!(
            e,
            ReferenceError::Digest {
                source: DigestError::Unsupported { .. },
                ..
            }
        ),
        _ => true, // rows that name no specific error only assert "some error"
    }
}

#[test]
fn parse_normalized_named_agrees_with_reference_jsonl() {
    let Some(rows) = table("reference.jsonl") else {
        return;
    };
    let mut checked = 0;
    let mut skipped_registration = 0;
    let mut bad = Vec::new();
    for row in &rows {
        if s(row, "api").and_then(Value::as_str) != Some("ParseNormalizedNamed") {
            continue;
        }
        if s(row, "registration_dependent").and_then(Value::as_bool) == Some(true) {
            skipped_registration += 1;
            continue;
        }
        let input = s(row, "input").and_then(Value::as_str).unwrap();
        bad.extend(check_normalized(input, row, "valid"));
        checked += 1;
    }
    eprintln!(
        "reference.jsonl: {checked} ParseNormalizedNamed rows checked, {skipped_registration} registration-dependent rows skipped"
    );
    assert!(checked > 100, "too few rows checked: {checked}");
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn parse_normalized_named_agrees_with_oracle() {
    let Some(rows) = table("reference_oracle.jsonl") else {
        return;
    };
    let mut bad = Vec::new();
    for row in &rows {
        let input = s(row, "input").and_then(Value::as_str).unwrap();
        let exp = s(row, "ParseNormalizedNamed").expect("oracle has ParseNormalizedNamed");
        bad.extend(check_normalized(input, exp, "ok"));
    }
    eprintln!(
        "reference_oracle.jsonl: {} ParseNormalizedNamed rows checked",
        rows.len()
    );
    assert!(rows.len() > 250);
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn plain_parse_agrees_with_oracle() {
    // Not required by the issue, but `Parse` is the layer ParseNormalizedNamed is built on.
    let Some(rows) = table("reference_oracle.jsonl") else {
        return;
    };
    let mut bad = Vec::new();
    for row in &rows {
        let input = s(row, "input").and_then(Value::as_str).unwrap();
        let exp = s(row, "Parse").unwrap();
        let want = s(exp, "ok").and_then(Value::as_bool).unwrap();
        match reference::parse(input) {
            Ok(r) => {
                if !want {
                    bad.push(format!("{input:?}: accepted, upstream rejects"));
                } else if s(exp, "domain").and_then(Value::as_str) != Some(r.domain.as_str())
                    || s(exp, "path").and_then(Value::as_str) != Some(r.path.as_str())
                {
                    bad.push(format!("{input:?}: split {}|{}", r.domain, r.path));
                }
            }
            Err(e) if want => bad.push(format!("{input:?}: rejected ({e})")),
            Err(_) => {}
        }
    }
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn digest_parse_agrees_with_digest_jsonl() {
    let Some(rows) = table("digest.jsonl") else {
        return;
    };
    let mut checked = 0;
    let mut skipped = Vec::new();
    let mut bad = Vec::new();
    for row in &rows {
        if s(row, "api").and_then(Value::as_str) != Some("digest.Parse") {
            continue;
        }
        let input = s(row, "input").and_then(Value::as_str).unwrap();
        if s(row, "registration_dependent").and_then(Value::as_bool) == Some(true) {
            // We register sha256 and sha512 only; these rows need sha384/blake3 registered.
            skipped.push(input.to_string());
            assert!(
                digest::parse(input).is_err(),
                "{input:?} needs an algorithm we do not support"
            );
            continue;
        }
        checked += 1;
        let want = s(row, "valid").and_then(Value::as_bool).unwrap();
        let got = digest::parse(input);
        match (&got, want) {
            (Ok(d), true) => {
                if let Some(a) = s(row, "algorithm").and_then(Value::as_str) {
                    if d.algorithm().as_str() != a {
                        bad.push(format!("{input:?}: algorithm {}", d.algorithm()));
                    }
                }
                if let Some(h) = s(row, "hex").and_then(Value::as_str) {
                    if d.hex() != h {
                        bad.push(format!("{input:?}: hex {}", d.hex()));
                    }
                }
            }
            (Ok(_), false) => bad.push(format!("{input:?}: accepted, upstream rejects")),
            (Err(e), true) => bad.push(format!("{input:?}: rejected ({e})")),
            (Err(e), false) => {
                let want_err = s(row, "error").and_then(Value::as_str).unwrap_or("");
                let ok = match want_err {
                    "ErrDigestInvalidFormat" => matches!(e, DigestError::InvalidFormat { .. }),
                    "ErrDigestInvalidLength" => matches!(e, DigestError::InvalidLength { .. }),
                    "ErrDigestUnsupported" => matches!(e, DigestError::Unsupported { .. }),
                    _ => true,
                };
                if !ok {
                    bad.push(format!("{input:?}: {e:?}, upstream {want_err}"));
                }
            }
        }
    }
    eprintln!(
        "digest.jsonl: {checked} digest.Parse rows checked, {} registration-dependent skipped: {skipped:?}",
        skipped.len()
    );
    assert!(checked >= 15, "too few rows: {checked}");
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
