//! The metrics hooks of `run` and `rerun`: before the child starts, a JSON-lines file per run
//! under the data directory (`REPRO_METRICS`, mode 0600) and `REPRO_RUN_ID`; after it ends, that
//! file and every `--metrics PATH` are read and their points stored. Nothing here changes a
//! run's status or exit code: every problem is a warning.

use std::path::{Path, PathBuf};

use crate::capture::metrics::{read_path, Parsed};
use crate::ops::Events;
use crate::store::Store;

/// The variable naming the run's id in the child.
pub const RUN_ID_VAR: &str = "REPRO_RUN_ID";
/// The variable naming the JSON-lines file the child may append metrics to.
pub const METRICS_VAR: &str = "REPRO_METRICS";

/// The directory of per-run metrics files of the database at `db`: `<db dir>/metrics`.
pub fn metrics_dir(db: &Path) -> PathBuf {
    db.parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join("metrics")
}

/// The `--metrics` paths of a run: the configuration's first, then the flags', without repeats.
pub fn paths(configured: &[String], flags: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = configured.iter().map(PathBuf::from).collect();
    for f in flags {
        if !out.contains(f) {
            out.push(f.clone());
        }
    }
    out
}

/// Creates the run's empty metrics file (0600). `None` (with a warning) when it cannot be
/// created: the run still starts, with `REPRO_METRICS` unset.
pub fn prepare(ev: &dyn Events, store: &Store, run_id: &str) -> Option<PathBuf> {
    if store.path() == Path::new(":memory:") {
        return None;
    }
    let dir = metrics_dir(store.path());
    let path = dir.join(format!("{run_id}.jsonl"));
    let made = std::fs::create_dir_all(&dir).and_then(|_| {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map(|_| ())
    });
    match made {
        Ok(()) => {
            let _ = crate::store::chmod(&path, 0o600);
            Some(path.canonicalize().unwrap_or(path))
        }
        Err(e) => {
            ev.warn(&format!(
                "cannot create the metrics file {} ({e}); {METRICS_VAR} is not set for this run",
                path.display()
            ));
            None
        }
    }
}

/// The variables for the child: `REPRO_RUN_ID` and, when the file exists, `REPRO_METRICS`.
pub fn child_env(run_id: &str, file: Option<&Path>) -> Vec<(String, String)> {
    let mut env = vec![(RUN_ID_VAR.to_string(), run_id.to_string())];
    if let Some(f) = file {
        env.push((METRICS_VAR.to_string(), f.to_string_lossy().into_owned()));
    }
    env
}

/// Reads the run's metrics file and the `--metrics` paths (relative ones against `cwd`) and
/// stores the points. Warnings only; the metrics file is removed once its points are stored.
pub fn collect(
    ev: &dyn Events,
    store: &mut Store,
    run_id: &str,
    file: Option<&Path>,
    paths: &[PathBuf],
    cwd: &Path,
) {
    let mut parsed = Parsed::default();
    if let Some(f) = file {
        // An empty file (the job reported nothing) gives no points and no warnings.
        if std::fs::metadata(f).map(|m| m.len() > 0).unwrap_or(false) {
            parsed.extend(crate::capture::metrics::parse_bytes(
                crate::capture::metrics::Format::Jsonl,
                &std::fs::read(f).unwrap_or_default(),
                METRICS_VAR,
            ));
        }
    }
    for p in paths {
        parsed.extend(read_path(&cwd.join(p)));
    }
    for w in &parsed.warnings {
        ev.warn(&format!("metrics: {w}"));
    }
    let stored = if parsed.points.is_empty() {
        true
    } else {
        match store.insert_metrics(run_id, &parsed.points) {
            Ok(w) => {
                ev.debug(&format!(
                    "stored {} metric point(s) of {} key(s)",
                    w.points, w.keys
                ));
                true
            }
            Err(e) => {
                ev.warn(&format!(
                    "could not store the metrics of run {run_id}: {}",
                    crate::error::report(e)
                ));
                false
            }
        }
    };
    if let (true, Some(f)) = (stored, file) {
        let _ = std::fs::remove_file(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Collect;

    #[test]
    fn file_is_private_and_points_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("repro.db");
        let mut store = Store::open(&db).unwrap();
        let run = crate::script::sample_run();
        store.insert_run(&run).unwrap();
        let ev = Collect::default();
        let f = prepare(&ev, &store, &run.id).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(
            &f,
            "{\"step\": 1, \"acc\": 0.5}\n{\"step\": 2, \"acc\": 0.75}\nnot json\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("m.json"), "{\"val\": {\"loss\": 0.25}}").unwrap();
        collect(
            &ev,
            &mut store,
            &run.id,
            Some(&f),
            &[PathBuf::from("m.json"), PathBuf::from("missing.csv")],
            dir.path(),
        );
        let s = store.metric_summaries(&run.id).unwrap();
        let keys: Vec<_> = s.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["acc", "val.loss"]);
        assert_eq!(s[0].last, 0.75);
        assert_eq!(s[0].count, 2);
        let msgs = ev.0.borrow().join("\n");
        assert!(msgs.contains("missing.csv"), "{msgs}");
        assert!(msgs.contains("REPRO_METRICS"), "{msgs}");
        assert!(!f.exists(), "stored points leave no file behind");
    }
}
