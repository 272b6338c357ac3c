//! `verify`: re-hash a run's path datasets and outputs now and compare with the record.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::capture::dataset::{self, DatasetSpec, HashOptions};
use crate::record::{DatasetKind, Run};

/// The outcome for one dataset or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyStatus {
    /// Same digest as recorded (or recorded missing and still missing).
    Match,
    /// A different digest now.
    Mismatch,
    /// Recorded with a digest, gone now.
    Missing,
    /// Could not be hashed (unreadable, special file, …); see `detail`.
    Error,
    /// Not content-addressed (`label`, `uri`): nothing to check.
    Unchecked,
}

/// One line of a verification report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyItem {
    /// `dataset` or `output`.
    pub what: &'static str,
    /// Dataset name, or the output path as recorded.
    pub name: String,
    /// Where it was looked for, when it is local.
    pub path: Option<PathBuf>,
    pub expected: Option<String>,
    pub actual: Option<String>,
    pub status: VerifyStatus,
    /// Why, for `error` and `unchecked`.
    pub detail: Option<String>,
}

impl VerifyItem {
    /// Whether this item makes `repro verify` fail (exit 1).
    pub fn failed(&self) -> bool {
        matches!(
            self.status,
            VerifyStatus::Mismatch | VerifyStatus::Missing | VerifyStatus::Error
        )
    }
}

/// Re-hashes the run's `path` datasets and its outputs, reads `dvc` datasets' current DVC hash,
/// and reports each. `base` is the repository root the run's relative paths are resolved
/// against (dataset uris are relative to it; outputs to `base/<run.cwd>`). No hash cache.
pub fn verify_run(run: &Run, base: &Path) -> Vec<VerifyItem> {
    verify_run_with(run, base, None)
}

/// Checks one dataset against the record: `path` datasets re-hashed under `base`, `dvc` ones by
/// DVC's current hash; `label`/`uri` ones are unchecked. Shared with `rerun`.
pub fn verify_dataset(
    d: &crate::record::Dataset,
    base: &Path,
    cache: Option<&rusqlite::Connection>,
) -> VerifyItem {
    let mut item = VerifyItem {
        what: "dataset",
        name: d.name.clone(),
        path: None,
        expected: d.version.clone(),
        actual: None,
        status: VerifyStatus::Unchecked,
        detail: None,
    };
    let local = d.uri.as_deref().map(|u| base.join(u));
    match d.kind {
        DatasetKind::Label | DatasetKind::Uri => {
            item.detail = Some(format!(
                "a {} dataset is not content-addressed",
                d.kind.as_str()
            ));
        }
        DatasetKind::Path => {
            item.expected = d.digest.clone().or(d.version.clone());
            item.path = local.clone();
            match local {
                None => no_path(&mut item),
                Some(p) if !exists(&p) => item.status = VerifyStatus::Missing,
                Some(p) => match dataset::hash_path(&p, &HashOptions::default(), cache, None) {
                    Ok(h) => compare(&mut item, Some(h.digest)),
                    Err(e) => error(&mut item, e),
                },
            }
        }
        DatasetKind::Dvc => {
            item.path = local.clone();
            match local {
                None => no_path(&mut item),
                Some(p) => {
                    // `./` keeps a path with `@` or `=` from reading as another form.
                    let spec = if p.is_absolute() {
                        p.to_string_lossy().into_owned()
                    } else {
                        format!("./{}", p.to_string_lossy())
                    };
                    match dataset::parse_spec(&spec, base, Some(base)) {
                        Ok(DatasetSpec::Dvc { hash, .. }) => {
                            item.detail =
                                Some("DVC's recorded hash; `dvc status` checks the content".into());
                            compare(&mut item, Some(hash))
                        }
                        Ok(_) => {
                            item.status = VerifyStatus::Mismatch;
                            item.detail = Some("no longer tracked by DVC".into());
                        }
                        Err(dataset::DatasetError::NotFound { .. }) => {
                            item.status = VerifyStatus::Missing
                        }
                        Err(e) => error(&mut item, e),
                    }
                }
            }
        }
    }
    item
}

/// [`verify_run`] with an optional hash cache (never stale; see docs/datasets.md).
pub fn verify_run_with(
    run: &Run,
    base: &Path,
    cache: Option<&rusqlite::Connection>,
) -> Vec<VerifyItem> {
    let mut items: Vec<VerifyItem> = run
        .datasets
        .iter()
        .map(|d| verify_dataset(d, base, cache))
        .collect();
    let out_base = if Path::new(&run.cwd).is_absolute() {
        PathBuf::from(&run.cwd)
    } else {
        base.join(&run.cwd)
    };
    for o in &run.outputs {
        let p = out_base.join(&o.path);
        let mut item = VerifyItem {
            what: "output",
            name: o.path.clone(),
            path: Some(p.clone()),
            expected: o.sha256.clone(),
            actual: None,
            status: VerifyStatus::Match,
            detail: None,
        };
        match dataset::hash_output(&p) {
            Ok(now) => match (&o.sha256, now.sha256) {
                (Some(_), None) => item.status = VerifyStatus::Missing,
                (_, actual) => compare(&mut item, actual),
            },
            Err(e) => error(&mut item, e),
        }
        items.push(item);
    }
    items
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

fn no_path(item: &mut VerifyItem) {
    item.status = VerifyStatus::Error;
    item.detail = Some("the record has no path for it".into());
}

fn compare(item: &mut VerifyItem, actual: Option<String>) {
    item.status = if actual == item.expected {
        VerifyStatus::Match
    } else {
        VerifyStatus::Mismatch
    };
    item.actual = actual;
}

fn error(item: &mut VerifyItem, e: dataset::DatasetError) {
    item.status = VerifyStatus::Error;
    item.detail = Some(crate::error::report(e));
}

/// The directory a run's relative paths are resolved against by default: the git work tree
/// containing `cwd`, else the run's recorded repository root, else `cwd`. Never fails: a
/// directory outside any repository falls back.
pub fn default_base(run: &Run, cwd: &Path) -> PathBuf {
    if let Ok(repo) = git2::Repository::discover(cwd) {
        if let Some(w) = repo.workdir() {
            return w.to_path_buf();
        }
    }
    run.code
        .as_ref()
        .map(|c| PathBuf::from(&c.repo_root))
        .unwrap_or_else(|| cwd.to_path_buf())
}
