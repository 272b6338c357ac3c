//! Import of runs exported as JSON lines (one DESIGN.md run object per line, patch included), and
//! batch insertion. Import is idempotent by run id and never overwrites finished provenance.

use std::io::BufRead;

use rusqlite::{params, OptionalExtension};
use sha2::{Digest as _, Sha256};

use super::{insert_outputs, insert_rows, Store, StoreError};
use crate::error::Hinted;
use crate::record::{Run, Status, SCHEMA_VERSION};

/// Why an import stopped; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{source_name}, line {line}: {message}")]
    Invalid {
        source_name: String,
        line: usize,
        message: String,
    },
    #[error("cannot read {source_name}")]
    Read {
        source_name: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Hinted for ImportError {
    fn hint(&self) -> Option<String> {
        match self {
            ImportError::Invalid { .. } => Some(
                "import expects the output of `repro export`: one run object per line; nothing was imported"
                    .into(),
            ),
            ImportError::Read { .. } => Some("check the path and its permissions".into()),
            ImportError::Store(e) => e.hint(),
        }
    }
}

/// A run whose stored provenance differs from the imported one; the stored one was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub line: usize,
    pub id: String,
    /// Top-level fields that differ (`image`, `code`, `command`, …).
    pub fields: Vec<String>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// New runs inserted.
    pub imported: u64,
    /// Runs already stored with the same provenance (annotations merged).
    pub unchanged: u64,
    /// Runs stored as running/lost that the import showed finished: outcome filled in.
    pub updated: u64,
    /// Runs whose provenance differs from the stored one; never overwritten.
    pub conflicts: Vec<Conflict>,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `sha256:` + 64 lowercase hex, or `sha512:` + 128.
pub fn well_formed_digest(d: &str) -> bool {
    match d.split_once(':') {
        Some(("sha256", hex)) => is_hex(hex, 64),
        Some(("sha512", hex)) => is_hex(hex, 128),
        _ => false,
    }
}

/// A canonical run id: 26 lowercase Crockford base32 characters that decode as a ULID.
pub fn well_formed_id(id: &str) -> bool {
    id.len() == 26
        && id
            .chars()
            .all(|c| c.is_ascii_digit() || (c.is_ascii_lowercase() && !"ilou".contains(c)))
        && ulid::Ulid::from_string(id).is_ok()
}

/// Checks an imported run; the message says which field is wrong.
pub fn validate(run: &Run) -> Result<(), String> {
    if run.schema_version != SCHEMA_VERSION {
        return Err(format!(
            "schema_version {} is not supported (this repro reads {SCHEMA_VERSION})",
            run.schema_version
        ));
    }
    if !well_formed_id(&run.id) {
        return Err(format!(
            "id '{}' is not a run id (a ULID: 26 lowercase characters 0-9 a-z without i, l, o, u)",
            run.id
        ));
    }
    if let Some(r) = &run.rerun_of {
        if !well_formed_id(r) {
            return Err(format!("rerun_of '{r}' is not a run id"));
        }
    }
    if chrono::DateTime::parse_from_rfc3339(&run.started_at).is_err() {
        return Err(format!(
            "started_at '{}' is not an RFC 3339 time",
            run.started_at
        ));
    }
    if let Some(e) = &run.ended_at {
        if chrono::DateTime::parse_from_rfc3339(e).is_err() {
            return Err(format!("ended_at '{e}' is not an RFC 3339 time"));
        }
    }
    if let Some(img) = &run.image {
        for (what, d) in [("digest", &img.digest), ("index_digest", &img.index_digest)] {
            if let Some(d) = d {
                if !well_formed_digest(d) {
                    return Err(format!(
                        "image.{what} '{d}' is not a digest (sha256: and 64 lowercase hex digits)"
                    ));
                }
            }
        }
    }
    if let Some(code) = &run.code {
        if let Some(c) = &code.commit {
            if !is_hex(c, 40) && !is_hex(c, 64) {
                return Err(format!(
                    "code.commit '{c}' is not a full commit SHA (40 lowercase hex digits)"
                ));
            }
        }
        match (&code.patch, &code.patch_sha256) {
            (Some(p), Some(want)) => {
                let got = hex::encode(Sha256::digest(&p.0));
                if &got != want {
                    return Err(format!(
                        "code.patch does not match code.patch_sha256 (patch hashes to {got})"
                    ));
                }
            }
            (None, Some(h)) if !is_hex(h, 64) => {
                return Err(format!("code.patch_sha256 '{h}' is not a SHA-256"));
            }
            _ => {}
        }
    }
    for d in &run.datasets {
        if let Some(dg) = &d.digest {
            if !well_formed_digest(dg) {
                return Err(format!(
                    "dataset '{}': digest '{dg}' is not a digest",
                    d.name
                ));
            }
        }
    }
    Ok(())
}

fn unfinished(s: Status) -> bool {
    matches!(s, Status::Running | Status::Lost)
}

/// The run without annotations, and without the patch when the stored side has none to compare.
fn provenance(run: &Run) -> serde_json::Value {
    let mut v = serde_json::to_value(run).expect("run serialises");
    let obj = v.as_object_mut().expect("object");
    for k in ["params", "tags", "notes"] {
        obj.remove(k);
    }
    v
}

const OUTCOME: [&str; 6] = [
    "status",
    "exit_code",
    "signal",
    "ended_at",
    "duration_ms",
    "outputs",
];

fn differing(a: &serde_json::Value, b: &serde_json::Value, skip: &[&str]) -> Vec<String> {
    let (a, b) = (
        a.as_object().expect("object"),
        b.as_object().expect("object"),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !skip.contains(&k.as_str()))
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

impl Store {
    /// Inserts many new runs in one transaction (fails on an existing id).
    pub fn insert_runs<'a>(
        &mut self,
        runs: impl IntoIterator<Item = &'a Run>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sql {
                path: path.clone(),
                what: "begin".into(),
                source,
            })?;
        for run in runs {
            insert_rows(&tx, run).map_err(|(what, source)| StoreError::Sql {
                path: path.clone(),
                what: what.into(),
                source,
            })?;
        }
        tx.commit().map_err(|source| StoreError::Sql {
            path,
            what: "commit".into(),
            source,
        })
    }

    /// Imports JSON lines from `input` in one transaction. Invalid input aborts the whole
    /// import (nothing written); conflicts are reported and skipped.
    pub fn import_lines(
        &mut self,
        input: impl BufRead,
        source_name: &str,
    ) -> Result<ImportSummary, ImportError> {
        let path = self.path.clone();
        let sql = |what: &'static str| {
            let path = path.clone();
            move |source| {
                ImportError::Store(StoreError::Sql {
                    path: path.clone(),
                    what: what.into(),
                    source,
                })
            }
        };
        // unchecked: the store's own readers (get_run) run inside this transaction; dropping
        // it without commit rolls everything back.
        let tx = self.conn.unchecked_transaction().map_err(sql("begin"))?;
        tx.execute_batch("SELECT 1").map_err(sql("begin"))?;
        let mut summary = ImportSummary::default();
        let invalid = |line: usize, message: String| ImportError::Invalid {
            source_name: source_name.to_string(),
            line,
            message,
        };
        for (i, text) in input.lines().enumerate() {
            let line = i + 1;
            let text = text.map_err(|source| ImportError::Read {
                source_name: source_name.to_string(),
                source,
            })?;
            if text.trim().is_empty() {
                continue;
            }
            let run: Run = serde_json::from_str(&text).map_err(|e| invalid(line, e.to_string()))?;
            validate(&run).map_err(|m| invalid(line, m))?;
            let stored: Option<i64> = tx
                .prepare_cached("SELECT 1 FROM runs WHERE id = ?1")
                .and_then(|mut st| st.query_row([&run.id], |r| r.get(0)).optional())
                .map_err(sql("read run"))?;
            if stored.is_none() {
                insert_rows(&tx, &run).map_err(|(what, source)| {
                    ImportError::Store(StoreError::Sql {
                        path: path.clone(),
                        what: what.into(),
                        source,
                    })
                })?;
                summary.imported += 1;
                continue;
            }
            let old = self.get_run(&run.id)?;
            let (a, b) = (provenance(&old), provenance(&run));
            let all = differing(&a, &b, &[]);
            let beyond_outcome = differing(&a, &b, &OUTCOME);
            if !beyond_outcome.is_empty() {
                summary.conflicts.push(Conflict {
                    line,
                    id: run.id.clone(),
                    fields: beyond_outcome,
                });
                continue;
            }
            if all.is_empty() || (unfinished(old.status) && unfinished(run.status)) {
                summary.unchanged += 1;
            } else if unfinished(old.status) {
                tx.execute(
                    "UPDATE runs SET status = ?2, exit_code = ?3, signal = ?4, ended_at = ?5, duration_ms = ?6 WHERE id = ?1",
                    params![run.id, run.status.as_str(), run.exit_code, run.signal, run.ended_at, run.duration_ms],
                )
                .map_err(sql("update run"))?;
                tx.execute("DELETE FROM run_outputs WHERE run_id = ?1", [&run.id])
                    .map_err(sql("update run"))?;
                insert_outputs(&tx, &run.id, &run.outputs).map_err(sql("update run"))?;
                summary.updated += 1;
            } else {
                summary.conflicts.push(Conflict {
                    line,
                    id: run.id.clone(),
                    fields: all,
                });
                continue;
            }
            // Same run: merge annotations (local params win on a differing value).
            for t in &run.tags {
                tx.prepare_cached("INSERT OR IGNORE INTO run_tags (run_id, tag) VALUES (?1, ?2)")
                    .and_then(|mut st| st.execute(params![run.id, t]))
                    .map_err(sql("merge tags"))?;
            }
            for (k, v) in &run.params {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO run_params (run_id, key, value) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut st| st.execute(params![run.id, k, v]))
                .map_err(sql("merge params"))?;
            }
            for n in run.notes.iter().filter(|n| !old.notes.contains(n)) {
                tx.execute(
                    "INSERT INTO run_notes (run_id, pos, text)
                     VALUES (?1, (SELECT COALESCE(MAX(pos), -1) + 1 FROM run_notes WHERE run_id = ?1), ?2)",
                    params![run.id, n],
                )
                .map_err(sql("merge notes"))?;
            }
        }
        tx.commit().map_err(sql("commit"))?;
        Ok(summary)
    }
}

/// Fuzzing entry point (`fuzz/fuzz_targets/import.rs`): a hostile `repro export` line never
/// panics the parser or the validation that guards the database.
#[doc(hidden)]
pub fn fuzz_import_line(line: &[u8]) {
    if let Ok(run) = serde_json::from_slice::<Run>(line) {
        let _ = validate(&run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_run;

    fn line(run: &Run) -> String {
        serde_json::to_string(run).unwrap() + "\n"
    }

    #[test]
    fn import_is_idempotent_and_reports_conflicts() {
        let mut s = Store::open_in_memory().unwrap();
        let mut a = sample_run("01jd3k0000000000000000000a");
        a.code.as_mut().unwrap().patch_sha256 = Some(hex::encode(Sha256::digest(
            &a.code.as_ref().unwrap().patch.as_ref().unwrap().0,
        )));
        let b = Run {
            id: "01jd3k0000000000000000000b".into(),
            ..a.clone()
        };
        let input = line(&a) + &line(&b);
        let sum = s.import_lines(input.as_bytes(), "t").unwrap();
        assert_eq!((sum.imported, sum.unchanged), (2, 0));
        assert_eq!(s.get_run(&a.id).unwrap(), a);
        let sum = s.import_lines(input.as_bytes(), "t").unwrap();
        assert_eq!((sum.imported, sum.unchanged), (0, 2));

        let mut changed = a.clone();
        changed.command.push("--evil".into());
        changed.tags.push("merged?".into());
        let mut finished = b.clone();
        finished.status = Status::Succeeded;
        finished.exit_code = Some(0);
        finished.tags.push("new".into());
        let sum = s
            .import_lines((line(&changed) + &line(&finished)).as_bytes(), "t")
            .unwrap();
        assert_eq!(sum.updated, 1);
        assert_eq!(
            sum.conflicts,
            vec![Conflict {
                line: 1,
                id: a.id.clone(),
                fields: vec!["command".into()]
            }]
        );
        assert_eq!(s.get_run(&a.id).unwrap(), a);
        let got_b = s.get_run(&b.id).unwrap();
        assert_eq!(got_b.status, Status::Succeeded);
        assert!(got_b.tags.contains(&"new".to_string()));
    }

    #[test]
    fn invalid_lines_abort_with_the_line_number_and_write_nothing() {
        let mut s = Store::open_in_memory().unwrap();
        let mut a = sample_run("01jd3k0000000000000000000a");
        a.code.as_mut().unwrap().patch = None;
        let mut bad = a.clone();
        bad.id = "01jd3k0000000000000000000b".into();
        bad.image.as_mut().unwrap().digest = Some("sha256:xyz".into());
        let input = line(&a) + "\n" + &line(&bad);
        let err = s.import_lines(input.as_bytes(), "runs.jsonl").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("runs.jsonl, line 3: image.digest"), "{msg}");
        assert!(s.resolve_id(&a.id).is_err(), "nothing may be written");
        let err = s.import_lines("{not json".as_bytes(), "x").unwrap_err();
        assert!(err.to_string().starts_with("x, line 1: "), "{err}");
        let mut upper = a.clone();
        upper.id = upper.id.to_uppercase();
        assert!(validate(&upper).is_err());
        let mut v2 = a.clone();
        v2.schema_version = 2;
        assert!(validate(&v2).unwrap_err().contains("schema_version 2"));
    }
}
