//! Import of runs exported as JSON lines (one DESIGN.md run object per line, patch included), and
//! batch insertion. Import is idempotent by run id and never overwrites finished provenance.

use std::io::{BufRead, Seek};
use std::path::Path;

use rusqlite::{params, OptionalExtension};
use sha2::{Digest as _, Sha256};

use super::kept::{parse_manifest, ManifestEntry};
use super::metrics::insert_metrics_in;
use super::objects::Objects;
use super::{insert_output_files, insert_outputs, insert_rows, sql_error, Store, StoreError};
use crate::error::Hinted;
use crate::record::environment::Environment;
use crate::record::metrics::summaries_of;
use crate::record::metrics::MetricPoint;
use crate::record::promotion::Promotion;
use crate::record::{DatasetKind, OutputFile, Run, Status, SCHEMA_VERSION};

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
    /// Channel moves (`repro promote`) the lines carried that the trail did not have.
    pub promotions: u64,
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

/// The files inside an imported run's directory outputs, read from their manifests when this
/// store holds them (the objects came along, or were fetched since): what `repro which` looks
/// up. Nothing for an output whose manifest is absent or does not hash to its digest.
fn directory_files(run: &Run, objects: &Objects) -> Vec<OutputFile> {
    let mut out = Vec::new();
    for (pos, o) in run.outputs.iter().enumerate() {
        let Some(hex) = o.sha256.as_deref().and_then(|d| d.strip_prefix("sha256:")) else {
            continue;
        };
        let Ok(Some(text)) = objects.read(hex) else {
            continue;
        };
        for e in parse_manifest(&text).unwrap_or_default() {
            if let ManifestEntry::File { rel, sha256, bytes } = e {
                out.push(OutputFile {
                    pos: pos as u32,
                    rel,
                    sha256,
                    bytes,
                });
            }
        }
    }
    out
}

/// An imported run's outputs are kept here only when this store has their objects: a copy
/// kept on the machine that recorded the run stays there.
fn localize_kept(run: &mut Run, objects: &super::objects::Objects) {
    for o in &mut run.outputs {
        let here = match o.sha256.as_deref() {
            Some(d) if !d.starts_with("sha256:") => objects.contains(d),
            Some(d) => objects.contains(d.trim_start_matches("sha256:")),
            None => false,
        };
        if o.kept == Some(true) && !here {
            o.kept = Some(false);
            o.not_kept =
                Some("kept where the run was recorded, not in this store (imported)".into());
        } else if o.kept == Some(false) && o.not_kept.is_none() {
            o.not_kept = Some("not kept where the run was recorded".into());
        }
    }
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
    check_times(run)?;
    check_outcome(run)?;
    for name in run.env.keys() {
        crate::config::check_env_name(name).map_err(|m| format!("env: {m}"))?;
    }
    // Replayed as `--volume=SRC:WORKDIR`: the same rule as a flag or a configuration file.
    if let Some(w) = &run.exec.workdir {
        crate::config::check_workdir(w).map_err(|m| format!("exec.workdir: {m}"))?;
    }
    if let Some(img) = &run.image {
        crate::capture::image::reference::parse_normalized(&img.reference).map_err(|e| {
            format!(
                "image.reference '{}' is not an image reference: {e}",
                img.reference
            )
        })?;
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
            (Some(_), None) => {
                return Err(
                    "code.patch has no code.patch_sha256: an unverifiable patch is never applied"
                        .into(),
                );
            }
            _ => {}
        }
    }
    for o in &run.outputs {
        check_relative(&o.path).map_err(|m| format!("output '{}': {m}", o.path))?;
        if let Some(h) = &o.sha256 {
            if !is_hex(h, 64) && !well_formed_digest(h) {
                return Err(format!(
                    "output '{}': sha256 '{h}' is not a SHA-256 (64 lowercase hex digits)",
                    o.path
                ));
            }
        }
    }
    for d in &run.datasets {
        if matches!(d.kind, DatasetKind::Path | DatasetKind::Dvc) {
            if let Some(uri) = &d.uri {
                check_dataset_path(uri).map_err(|m| format!("dataset '{}': {m}", d.name))?;
            }
        }
        if let Some(dg) = &d.digest {
            if !well_formed_digest(dg) {
                return Err(format!(
                    "dataset '{}': digest '{dg}' is not a digest",
                    d.name
                ));
            }
        }
    }
    // Where a re-run changes into and mounts: never outside the checkout (`rerun` checks again).
    crate::record::paths::check_run(run)
}

fn parse_time(what: &str, t: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let t = chrono::DateTime::parse_from_rfc3339(t)
        .map_err(|_| format!("{what} '{t}' is not an RFC 3339 time"))?
        .with_timezone(&chrono::Utc);
    // A recording clock never says 1969 or next year: such a date is a forged or broken export.
    let latest = crate::capture::host::now() + chrono::Duration::days(366);
    if t.timestamp() < 0 || t > latest {
        return Err(format!(
            "{what} '{}' is not a plausible date (before 1970 or more than a year ahead)",
            t.to_rfc3339()
        ));
    }
    Ok(t)
}

fn check_times(run: &Run) -> Result<(), String> {
    let started = parse_time("started_at", &run.started_at)?;
    if let Some(e) = &run.ended_at {
        if parse_time("ended_at", e)? < started {
            return Err(format!("ended_at '{e}' is before started_at"));
        }
    }
    if let Some(d) = run.duration_ms {
        if d < 0 {
            return Err(format!("duration_ms {d} is negative"));
        }
    }
    Ok(())
}

/// The outcome fields must agree with the status, as `repro run` writes them.
fn check_outcome(run: &Run) -> Result<(), String> {
    let code = run.exit_code;
    let bad = |why: &str| Err(format!("status '{}' {why}", run.status));
    match run.status {
        Status::Succeeded if code != Some(0) => bad("needs exit_code 0"),
        Status::Failed if code == Some(0) => bad("cannot have exit_code 0"),
        Status::Killed if run.signal.is_none() => bad("needs a signal"),
        _ if run.signal.is_some_and(|s| !(1..=64).contains(&s)) => {
            Err(format!("signal {:?} is not a signal number", run.signal))
        }
        _ => Ok(()),
    }
}

/// A relative path that stays below its directory: no `/…`, no `..`, no control characters.
fn check_relative(p: &str) -> Result<(), String> {
    if p.is_empty() || p.starts_with('/') {
        return Err("the path must be relative to the working directory".into());
    }
    if p.split('/').any(|c| c == "..") {
        return Err("the path may not contain '..'".into());
    }
    if p.chars().any(char::is_control) {
        return Err("the path contains a control character".into());
    }
    Ok(())
}

/// A dataset path: relative to the repository (no `..`) or absolute outside the system's own
/// directories (re-runs and `verify` read it).
fn check_dataset_path(p: &str) -> Result<(), String> {
    if p.chars().any(char::is_control) {
        return Err("the path contains a control character".into());
    }
    if p.split('/').any(|c| c == "..") {
        return Err(format!("path '{p}' may not contain '..'"));
    }
    if !p.starts_with('/') {
        return Ok(());
    }
    const SYSTEM: [&str; 13] = [
        "/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/run", "/bin", "/sbin", "/lib",
        "/lib64", "/usr", "/var/run",
    ];
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty()
        || SYSTEM
            .iter()
            .any(|s| trimmed == *s || trimmed.starts_with(&format!("{s}/")))
    {
        return Err(format!(
            "path '{p}' is a system directory, not a dataset a run could have used"
        ));
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
            .map_err(sql_error(&path, "begin"))?;
        for run in runs {
            insert_rows(&tx, run).map_err(|(what, source)| sql_error(&path, what)(source))?;
        }
        tx.commit().map_err(sql_error(&path, "commit"))
    }

    /// Imports JSON lines from `input` (spooled to an unlinked file next to the database when it
    /// cannot be read twice, e.g. stdin). See `import_with`.
    pub fn import_lines(
        &mut self,
        mut input: impl BufRead,
        source_name: &str,
    ) -> Result<ImportSummary, ImportError> {
        let read_err = |source| ImportError::Read {
            source_name: source_name.to_string(),
            source,
        };
        let mut spool = self.spool_file().map_err(read_err)?;
        std::io::copy(&mut input, &mut spool).map_err(read_err)?;
        self.import_with(
            &mut || {
                let mut f = spool.try_clone()?;
                f.seek(std::io::SeekFrom::Start(0))?;
                Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, f)))
            },
            source_name,
        )
    }

    /// Imports the JSON lines of a file written by `repro export`.
    pub fn import_file(&mut self, file: &Path) -> Result<ImportSummary, ImportError> {
        let name = file.display().to_string();
        self.import_with(
            &mut || {
                Ok(Box::new(std::io::BufReader::with_capacity(
                    1 << 16,
                    std::fs::File::open(file)?,
                )))
            },
            &name,
        )
    }

    fn spool_file(&self) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".import-{}", std::process::id()));
        let dir_or_tmp = if self.path.as_os_str() == ":memory:" {
            std::env::temp_dir().join(format!("repro-import-{}", std::process::id()))
        } else {
            std::path::PathBuf::from(p)
        };
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dir_or_tmp)?;
        // Unlinked at once: it disappears with the process, whatever happens.
        std::fs::remove_file(&dir_or_tmp)?;
        Ok(f)
    }

    /// Imports JSON lines in two passes. The first parses and validates every line: an invalid
    /// one stops the import with its line number and nothing written. The second writes in
    /// batches of at most `IMPORT_BATCH` runs or `IMPORT_BATCH_TIME`, each its own transaction
    /// (a run is never half-written), with a pause between batches so that `repro run`s waiting
    /// for the lock get it. Interrupted, it is resumed by running it again: runs already
    /// imported are recognised by id.
    pub fn import_with(
        &mut self,
        open: &mut dyn FnMut() -> std::io::Result<Box<dyn BufRead>>,
        source_name: &str,
    ) -> Result<ImportSummary, ImportError> {
        let read_err = |source| ImportError::Read {
            source_name: source_name.to_string(),
            source,
        };
        let invalid = |line: usize, message: String| ImportError::Invalid {
            source_name: source_name.to_string(),
            line,
            message,
        };
        let objects = super::objects::Objects::beside(&self.path);
        // From the check that an object is here (`localize_kept`) until the runs naming it are
        // committed, the store's keep lock (shared) stops `repro gc` deleting it in between (see
        // `Objects::lock`). Without an object store there is nothing to check or to delete; a
        // lock that cannot be taken (a read-only store) cannot be taken by gc either.
        let _keeping = if objects.root().is_dir() {
            objects
                .lock(super::objects::LockMode::Keep, &mut || {})
                .ok()
        } else {
            None
        };
        type Parsed = (Run, Vec<MetricPoint>, Option<Environment>, Vec<Promotion>);
        let parse = |line: usize, text: &str| -> Result<Parsed, ImportError> {
            let mut run: Run =
                serde_json::from_str(text).map_err(|e| invalid(line, e.to_string()))?;
            validate(&run).map_err(|m| invalid(line, m))?;
            localize_kept(&mut run, &objects);
            let metrics = metrics_of_line(text).map_err(|m| invalid(line, m))?;
            let environment = environment_of_line(text).map_err(|m| invalid(line, m))?;
            let promotions = promotions_of_line(text, &run).map_err(|m| invalid(line, m))?;
            Ok((run, metrics, environment, promotions))
        };
        for (i, text) in open().map_err(read_err)?.lines().enumerate() {
            let text = text.map_err(read_err)?;
            if !text.trim().is_empty() {
                parse(i + 1, &text)?;
            }
        }
        let path = self.path.clone();
        let sql = |what: &'static str| {
            let path = path.clone();
            move |source| ImportError::Store(sql_error(&path, what)(source))
        };
        // A bulk insert touches every index at random places: a 64 MiB page cache (instead of
        // 2 MiB) keeps them in memory for the length of the import.
        self.conn
            .execute_batch("PRAGMA cache_size = -65536")
            .map_err(sql("configure"))?;
        let mut summary = ImportSummary::default();
        let mut lines = open().map_err(read_err)?.lines().enumerate().peekable();
        while lines.peek().is_some() {
            let t0 = std::time::Instant::now();
            // unchecked: the store's own readers (get_run) run inside this transaction; dropping
            // it without commit rolls the batch back. Immediate: a deferred transaction that
            // read before another process wrote could not upgrade to a write (and would not wait).
            let tx = rusqlite::Transaction::new_unchecked(
                &self.conn,
                rusqlite::TransactionBehavior::Immediate,
            )
            .map_err(sql("begin"))?;
            let mut n = 0;
            while n < IMPORT_BATCH && t0.elapsed() < IMPORT_BATCH_TIME {
                let Some((i, text)) = lines.next() else { break };
                let text = text.map_err(read_err)?;
                if text.trim().is_empty() {
                    continue;
                }
                // Checked again: the file may have changed since the first pass.
                let (run, metrics, environment, promotions) = parse(i + 1, &text)?;
                let conflicts = summary.conflicts.len();
                self.import_one(&tx, &run, &metrics, i + 1, &mut summary)?;
                // A run kept as stored (it differs) does not take the other's channel moves.
                let conflicted = summary.conflicts.len() > conflicts;
                if let Some(e) = &environment {
                    // A stored run keeps the environment it has; one without gets the imported.
                    let has: Option<i64> = tx
                        .prepare_cached("SELECT 1 FROM run_environments WHERE run_id = ?1")
                        .and_then(|mut st| st.query_row([&run.id], |r| r.get(0)).optional())
                        .map_err(sql("read environment"))?;
                    if has.is_none() {
                        super::environment::insert_environment_in(&tx, &run.id, e)
                            .map_err(sql("insert environment"))?;
                    }
                }
                for p in promotions.iter().filter(|_| !conflicted) {
                    if super::promotions::import_promotion_in(&tx, p)
                        .map_err(sql("insert promotion"))?
                    {
                        summary.promotions += 1;
                    }
                }
                n += 1;
            }
            tx.commit().map_err(sql("commit"))?;
            if lines.peek().is_some() {
                std::thread::sleep(IMPORT_PAUSE);
            }
        }
        Ok(summary)
    }

    fn import_one(
        &self,
        tx: &rusqlite::Transaction,
        run: &Run,
        metrics: &[MetricPoint],
        line: usize,
        summary: &mut ImportSummary,
    ) -> Result<(), ImportError> {
        let path = self.path.clone();
        let sql = |what: &'static str| {
            let path = path.clone();
            move |source| ImportError::Store(sql_error(&path, what)(source))
        };
        let stored: Option<i64> = tx
            .prepare_cached("SELECT 1 FROM runs WHERE id = ?1")
            .and_then(|mut st| st.query_row([&run.id], |r| r.get(0)).optional())
            .map_err(sql("read run"))?;
        if stored.is_none() {
            insert_rows(tx, run)
                .map_err(|(what, source)| ImportError::Store(sql_error(&path, what)(source)))?;
            insert_output_files(
                tx,
                &run.id,
                &directory_files(run, &Objects::beside(&self.path)),
            )
            .map_err(sql("insert output"))?;
            if !metrics.is_empty() {
                insert_metrics_in(tx, &path, &run.id, metrics)?;
            }
            summary.imported += 1;
            return Ok(());
        }
        let old = self.get_run(&run.id)?;
        let (a, b) = (provenance(&old), provenance(run));
        let all = differing(&a, &b, &[]);
        let beyond_outcome = differing(&a, &b, &OUTCOME);
        if !beyond_outcome.is_empty() {
            summary.conflicts.push(Conflict {
                line,
                id: run.id.clone(),
                fields: beyond_outcome,
            });
            return Ok(());
        }
        // Metrics of a stored run: added when it has none (a run recorded before its metrics
        // were), else the stored history is kept and a different one is a conflict.
        if !metrics.is_empty() {
            let stored_points = self.metric_points(&run.id)?;
            if stored_points.is_empty() {
                insert_metrics_in(tx, &path, &run.id, metrics)?;
            } else if !same_history(&stored_points, metrics) {
                summary.conflicts.push(Conflict {
                    line,
                    id: run.id.clone(),
                    fields: vec!["history".into()],
                });
                return Ok(());
            }
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
            insert_outputs(tx, &run.id, &run.outputs).map_err(sql("update run"))?;
            insert_output_files(
                tx,
                &run.id,
                &directory_files(run, &Objects::beside(&self.path)),
            )
            .map_err(sql("update run"))?;
            summary.updated += 1;
        } else {
            summary.conflicts.push(Conflict {
                line,
                id: run.id.clone(),
                fields: all,
            });
            return Ok(());
        }
        // Same run: merge annotations (local params win on a differing value).
        for t in &run.tags {
            tx.prepare_cached("INSERT OR IGNORE INTO run_tags (run_id, tag) VALUES (?1, ?2)")
                .and_then(|mut st| st.execute(params![run.id, t]))
                .map_err(sql("merge tags"))?;
        }
        for (k, v) in &run.params {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO run_params (run_id, key, value, from_argv, from_job) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    run.id,
                    k,
                    v,
                    run.params_from_argv.contains(k),
                    run.params_from_job.contains(k)
                ])
            })
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
        Ok(())
    }
}

/// Most runs written by one import transaction.
/// Points compared as `show --json --history` shows them (per key in order; NaN equal to NaN;
/// times to the millisecond).
fn same_history(a: &[MetricPoint], b: &[MetricPoint]) -> bool {
    let norm = |pts: &[MetricPoint]| {
        let mut v: Vec<(String, Option<i64>, u64, Option<i64>)> = pts
            .iter()
            .map(|p| {
                (
                    p.key.to_string(),
                    p.step,
                    if p.value.is_nan() {
                        f64::NAN.to_bits()
                    } else {
                        p.value.to_bits()
                    },
                    p.time.map(|t| (t * 1000.0).round() as i64),
                )
            })
            .collect();
        // Keys in order, each key's points in report order (a stable sort keeps it).
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    norm(a) == norm(b)
}

/// The channel moves carried by an export line (`promotions`: the moves that pointed a channel
/// at this run's digest, as `repro export` writes them), each checked; none when absent.
pub fn promotions_of_line(text: &str, run: &Run) -> Result<Vec<Promotion>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Moved {
        repository: String,
        channel: String,
        digest: String,
        previous: Option<String>,
        kind: crate::record::promotion::PromotionKind,
        promoted_at: String,
        user: String,
        note: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Part {
        #[serde(default)]
        promotions: Vec<Moved>,
    }
    if !text.contains("\"promotions\"") {
        return Ok(Vec::new());
    }
    let part: Part = serde_json::from_str(text).map_err(|e| format!("promotions: {e}"))?;
    let mut out = Vec::with_capacity(part.promotions.len());
    for (i, m) in part.promotions.into_iter().enumerate() {
        let bad = |what: String| format!("promotions[{i}]: {what}");
        let printable = |s: &str, max: usize| s.len() <= max && !s.chars().any(char::is_control);
        // The normalised name `repro promote` records: it parses, and prints back the same.
        let repo_ok = crate::capture::image::reference::parse_normalized(&m.repository)
            .is_ok_and(|r| r.tag.is_none() && r.digest.is_none() && r.name() == m.repository);
        if !repo_ok {
            return Err(bad(format!(
                "repository {:?} is not a normalised repository name (registry/path)",
                m.repository
            )));
        }
        if !crate::capture::image::reference::is_tag(&m.channel) {
            return Err(bad(format!("channel {:?} is not a tag", m.channel)));
        }
        for d in std::iter::once(&m.digest).chain(m.previous.as_ref()) {
            if !well_formed_digest(d) {
                return Err(bad(format!("{d:?} is not a digest (sha256:64 hex)")));
            }
        }
        if chrono::DateTime::parse_from_rfc3339(&m.promoted_at).is_err()
            || !m.promoted_at.ends_with('Z')
        {
            return Err(bad(format!(
                "promoted_at {:?} is not an RFC 3339 UTC time",
                m.promoted_at
            )));
        }
        if m.user.is_empty() || !printable(&m.user, 256) {
            return Err(bad(
                "user is empty, too long or has control characters".into()
            ));
        }
        if m.note.as_deref().is_some_and(|n| !printable(n, 4096)) {
            return Err(bad(
                "note is longer than 4096 bytes or has control characters".into(),
            ));
        }
        out.push(Promotion {
            id: 0,
            run_id: Some(run.id.clone()),
            repository: m.repository,
            channel: m.channel,
            digest: m.digest,
            previous: m.previous,
            kind: m.kind,
            promoted_at: m.promoted_at,
            user: m.user,
            note: m.note,
        });
    }
    Ok(out)
}

/// The environment carried by an export line (`environment`, the `show --json` shape), checked;
/// `None` when the line has none.
pub fn environment_of_line(text: &str) -> Result<Option<Environment>, String> {
    #[derive(serde::Deserialize)]
    struct Part {
        #[serde(default)]
        environment: Option<Environment>,
    }
    if !text.contains("\"environment\"") {
        return Ok(None);
    }
    let part: Part = serde_json::from_str(text).map_err(|e| format!("environment: {e}"))?;
    if let Some(e) = &part.environment {
        e.check().map_err(|m| format!("environment: {m}"))?;
    }
    Ok(part.environment)
}

/// The metric history carried by an export line (`history`, the `show --json --history` shape:
/// `{"KEY": [[step, value, time], …]}` with value a number or "NaN"/"Infinity"/"-Infinity",
/// step an integer or null, time RFC 3339 or null), checked against its summary (`metrics`)
/// when given. No `history`: no points (a line without metrics).
pub fn metrics_of_line(text: &str) -> Result<Vec<MetricPoint>, String> {
    #[derive(serde::Deserialize)]
    struct Part {
        #[serde(default)]
        metrics: Option<serde_json::Value>,
        #[serde(default)]
        history: Option<serde_json::Value>,
    }
    // Only lines that mention metrics pay for the second parse.
    if !text.contains("\"history\"") && !text.contains("\"metrics\"") {
        return Ok(Vec::new());
    }
    let part: Part = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let summary = part.metrics.filter(|m| !m.is_null());
    let history = match part.history.filter(|h| !h.is_null()) {
        None => {
            return match summary {
                Some(m) if m.as_object().is_some_and(|o| !o.is_empty()) => Err(
                    "metrics has no history: import takes `repro export` output, which carries each metric's history".into(),
                ),
                _ => Ok(Vec::new()),
            };
        }
        Some(h) => h,
    };
    let serde_json::Value::Object(keys) = history else {
        return Err("history is not an object of metric histories".into());
    };
    let mut points = Vec::new();
    for (key, rows) in keys {
        // Any key `repro run` records (an empty one, control characters) is imported: an
        // export must import again. Terminals get it through `sanitize::escape`.
        let key: std::sync::Arc<str> = key.into();
        let Some(rows) = rows.as_array() else {
            return Err(format!(
                "history.{key} is not a list of [step, value, time]"
            ));
        };
        if rows.is_empty() {
            return Err(format!("history.{key} has no points"));
        }
        for (i, row) in rows.iter().enumerate() {
            let bad = |why: &str| format!("history.{key}[{i}]: {why}");
            let cells = row
                .as_array()
                .filter(|c| c.len() == 3)
                .ok_or_else(|| bad("not a [step, value, time] triple"))?;
            let step = match &cells[0] {
                serde_json::Value::Null => None,
                v => Some(v.as_i64().ok_or_else(|| bad("step is not an integer"))?),
            };
            let value = match &cells[1] {
                serde_json::Value::Number(n) => {
                    n.as_f64().ok_or_else(|| bad("value is not a number"))?
                }
                serde_json::Value::String(s) if s == "NaN" => f64::NAN,
                serde_json::Value::String(s) if s == "Infinity" => f64::INFINITY,
                serde_json::Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
                _ => {
                    return Err(bad(
                        "value is not a number, \"NaN\", \"Infinity\" or \"-Infinity\"",
                    ))
                }
            };
            let time = match &cells[2] {
                serde_json::Value::Null => None,
                serde_json::Value::String(t) => Some(metric_time(t).map_err(|m| bad(&m))?),
                _ => return Err(bad("time is not an RFC 3339 time or null")),
            };
            points.push(MetricPoint {
                key: key.clone(),
                step,
                value,
                time,
            });
        }
    }
    if let Some(given) = summary {
        let mut want = serde_json::Map::new();
        for s in summaries_of(&points) {
            want.insert(s.key.clone(), s.to_json());
        }
        if given != serde_json::Value::Object(want) {
            return Err(
                "metrics does not match the summary of history (an edited export?): fix or remove metrics".into(),
            );
        }
    }
    Ok(points)
}

/// A metric point's time: RFC 3339 within what `repro run` records
/// ([`crate::record::metrics::valid_time`]: 1970 to the year 9999). Unlike a run's start, a
/// job's own clock may say next decade: that is its report, not a forged record.
fn metric_time(t: &str) -> Result<f64, String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(t)
        .map_err(|_| format!("time '{t}' is not an RFC 3339 time"))?;
    let secs = parsed.timestamp_millis() as f64 / 1000.0;
    if !crate::record::metrics::valid_time(secs) {
        return Err(format!("time '{t}' is before 1970"));
    }
    Ok(secs)
}

const IMPORT_BATCH: usize = 2000;
/// Longest an import transaction holds the write lock (one run more may be written after it).
const IMPORT_BATCH_TIME: std::time::Duration = std::time::Duration::from_millis(150);
/// Pause between import batches, so that writers waiting for the lock get it.
const IMPORT_PAUSE: std::time::Duration = std::time::Duration::from_millis(30);

/// Fuzzing entry point (`fuzz/fuzz_targets/import.rs`): a hostile `repro export` line never
/// panics the parser or the validation that guards the database.
#[doc(hidden)]
pub fn fuzz_import_line(line: &[u8]) {
    let Ok(run) = serde_json::from_slice::<Run>(line) else {
        return;
    };
    if validate(&run).is_err() {
        return;
    }
    // What validation promises about an accepted run (the fuzzer looks for counter-examples).
    assert!(!(run.status == Status::Failed && run.exit_code == Some(0)));
    assert!(run.status != Status::Succeeded || run.exit_code == Some(0));
    assert!(run.duration_ms.is_none_or(|d| d >= 0));
    for o in &run.outputs {
        assert!(!o.path.starts_with('/') && !o.path.split('/').any(|c| c == ".."));
    }
    for name in run.env.keys() {
        assert!(crate::config::check_env_name(name).is_ok());
    }
    if let Some(code) = &run.code {
        if let Some(p) = &code.patch {
            let got = hex::encode(Sha256::digest(&p.0));
            assert_eq!(code.patch_sha256.as_deref(), Some(got.as_str()));
        }
    }
    if let Some(img) = &run.image {
        assert!(crate::capture::image::reference::parse_normalized(&img.reference).is_ok());
    }
    // Accepted channel moves carry no control characters to a terminal.
    if let Ok(text) = std::str::from_utf8(line) {
        for p in promotions_of_line(text, &run).unwrap_or_default() {
            for t in [&p.repository, &p.channel, &p.user] {
                assert!(!t.chars().any(char::is_control));
            }
            assert!(well_formed_digest(&p.digest));
        }
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
    fn import_fuzz_corpus_passes_and_each_forged_seed_is_refused() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/import");
        let mut refused = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap();
            fuzz_import_line(&data);
            let run: Run = serde_json::from_slice(&data).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name == "run.jsonl" {
                assert_eq!(validate(&run), Ok(()));
            } else {
                assert!(validate(&run).is_err(), "{name} must be refused");
                refused += 1;
            }
        }
        assert!(refused >= 7, "{refused}");
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
