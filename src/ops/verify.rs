//! `verify`: re-hash a run's path datasets and outputs now and compare with the record.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::capture::dataset::{self, DatasetSpec, HashOptions};
use crate::record::{DatasetKind, Output, Run};
use crate::store::kept::{parse_manifest, ManifestEntry};
use crate::store::objects::{ObjectError, Objects};

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
    /// Why, for `error` and `unchecked`; for an output that no longer matches, what its kept
    /// copy says.
    pub detail: Option<String>,
    /// For an output that no longer matches: whether the kept copy (object store) still holds
    /// the recorded bytes; `None` when not checked or not kept.
    pub kept_copy: Option<KeptCopy>,
}

/// The kept copy of an output whose working file no longer matches the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeptCopy {
    /// Every object is there and rehashes to its name: `repro get` restores the output.
    Match,
    /// An object is gone from the store.
    Missing,
    /// An object no longer hashes to its name.
    Damaged,
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
        kept_copy: None,
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
    let out_base = output_base(run, base);
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
            kept_copy: None,
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

/// [`verify_run_with`], and for each output whose working file no longer matches (changed or
/// gone), whether the kept copy in `objects` does — said plainly in the item's detail. The
/// status stays `mismatch`/`missing`: the working file is what `verify` checks.
pub fn verify_run_kept(
    run: &Run,
    base: &Path,
    cache: Option<&rusqlite::Connection>,
    objects: &Objects,
) -> Vec<VerifyItem> {
    let mut items = verify_run_with(run, base, cache);
    let to = output_base(run, base);
    let outputs = items.iter_mut().skip(run.datasets.len());
    for (item, o) in outputs.zip(&run.outputs) {
        if matches!(item.status, VerifyStatus::Mismatch | VerifyStatus::Missing) {
            explain_kept(item, &run.id, o, &to, objects);
        }
    }
    items
}

/// Says what the kept copy of output `o` of run `id` (resolved under `to`) holds, in `item`.
fn explain_kept(item: &mut VerifyItem, id: &str, o: &Output, to: &Path, objects: &Objects) {
    let Some(digest) = &o.sha256 else { return };
    // `repro get` replaces a file that differs only when told to.
    let (working, force) = match item.status {
        VerifyStatus::Missing => ("working file is gone", ""),
        _ => ("working file changed since the run", " --force"),
    };
    let quote = |b: &[u8]| crate::script::quote::display(b);
    let found = match kept_copy(objects, digest) {
        Ok(k) => k,
        Err(e) => {
            item.detail = Some(format!(
                "{working}; cannot read its kept copy: {}",
                crate::error::report(e)
            ));
            return;
        }
    };
    item.detail = match (found, o.kept, &o.not_kept) {
        (Some(KeptCopy::Match), _, _) => Some(format!(
            "{working}; the kept copy matches — `repro get {id} {} --to {}{force}` restores it",
            quote(o.path.as_bytes()),
            quote(to.as_os_str().as_bytes()),
        )),
        (Some(KeptCopy::Damaged), _, _) => Some(format!("{working}; the kept copy is damaged too")),
        (_, Some(false), Some(why)) => Some(format!(
            "{working}; no copy was kept ({})",
            crate::sanitize::escape(why)
        )),
        (_, Some(true), _) => Some(format!(
            "{working}; its kept copy is gone from the object store"
        )),
        _ => return,
    };
    item.kept_copy = found.or((o.kept == Some(true)).then_some(KeptCopy::Missing));
}

/// Whether the object store holds the output with this recorded digest (a file's 64 hex, or a
/// directory's `sha256:` manifest digest with every file and link target): `None` when nothing
/// of it is there. Every object is rehashed.
pub fn kept_copy(objects: &Objects, digest: &str) -> Result<Option<KeptCopy>, ObjectError> {
    let Some(manifest) = digest.strip_prefix("sha256:") else {
        return Ok(objects.verify(digest)?.map(|ok| {
            if ok {
                KeptCopy::Match
            } else {
                KeptCopy::Damaged
            }
        }));
    };
    if !objects.contains(manifest) {
        return Ok(None);
    }
    // `read` checks the bytes against the name: `None` here is a damaged manifest.
    let Some(entries) = objects.read(manifest)?.as_deref().and_then(parse_manifest) else {
        return Ok(Some(KeptCopy::Damaged));
    };
    let mut state = KeptCopy::Match;
    for e in &entries {
        let sha = match e {
            ManifestEntry::File { sha256, .. } | ManifestEntry::Symlink { sha256, .. } => sha256,
        };
        match objects.verify(sha)? {
            Some(true) => {}
            Some(false) => return Ok(Some(KeptCopy::Damaged)),
            None => state = KeptCopy::Missing,
        }
    }
    Ok(Some(state))
}

/// The directory a run's outputs are resolved against: its recorded cwd under `base`.
fn output_base(run: &Run, base: &Path) -> PathBuf {
    if Path::new(&run.cwd).is_absolute() {
        PathBuf::from(&run.cwd)
    } else {
        // Components drop the `.` of a run recorded at the repository's top (`/repo/.`).
        base.join(&run.cwd).components().collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kept::{keep_outputs, KeepPolicy};
    use std::fs;

    #[test]
    fn the_kept_copy_of_a_file_or_directory_is_rehashed() {
        let d = tempfile::tempdir().unwrap();
        let objects = Objects::beside(&d.path().join("repro.db"));
        fs::create_dir_all(d.path().join("ckpt/sub")).unwrap();
        fs::write(d.path().join("model.txt"), b"model").unwrap();
        fs::write(d.path().join("ckpt/a.txt"), b"aaa").unwrap();
        fs::write(d.path().join("ckpt/sub/b.txt"), b"bb").unwrap();
        std::os::unix::fs::symlink("a.txt", d.path().join("ckpt/link")).unwrap();
        let policy = KeepPolicy {
            off: None,
            max_bytes: None,
        };
        let k = keep_outputs(
            &objects,
            &["model.txt".into(), "ckpt".into()],
            d.path(),
            &policy,
        );
        let file = k.outputs[0].sha256.clone().unwrap();
        let dir = k.outputs[1].sha256.clone().unwrap();
        assert!(dir.starts_with("sha256:"));
        assert_eq!(kept_copy(&objects, &file).unwrap(), Some(KeptCopy::Match));
        assert_eq!(kept_copy(&objects, &dir).unwrap(), Some(KeptCopy::Match));

        // One file of the directory damaged, then gone.
        let b = crate::store::kept::sha256_hex(b"bb");
        let at = objects.path_of(&b).unwrap();
        fs::set_permissions(&at, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        fs::write(&at, b"xx").unwrap();
        assert_eq!(kept_copy(&objects, &dir).unwrap(), Some(KeptCopy::Damaged));
        fs::remove_file(&at).unwrap();
        assert_eq!(kept_copy(&objects, &dir).unwrap(), Some(KeptCopy::Missing));
        objects.remove(&file).unwrap();
        assert_eq!(kept_copy(&objects, &file).unwrap(), None);
    }
}
