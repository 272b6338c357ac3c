//! Keeping a run's outputs: each `--output` copied into the object store when the run ends — a
//! file as one object, a directory as one object per file plus its manifest (the same canonical
//! manifest a path dataset has, so the output's digest is the dataset digest) — within a size
//! budget per run; and the store's rows about them.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rusqlite::params;
use sha2::{Digest, Sha256};

use super::objects::{ObjectError, Objects, Stored};
use super::{Result, Store};
use crate::capture::dataset::manifest::{self, EntryKind};
use crate::capture::dataset::{self, DatasetError, HashOptions};
use crate::record::{Output, OutputFile};

/// Whether and how much to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepPolicy {
    /// `None`: keep; `Some(why)`: do not keep, and say why in the record.
    pub off: Option<String>,
    /// Most bytes kept for one run (`keep_outputs_max`); `None`: no limit.
    pub max_bytes: Option<u64>,
}

impl Default for KeepPolicy {
    /// Keep, up to the default `keep_outputs_max`.
    fn default() -> Self {
        KeepPolicy {
            off: None,
            max_bytes: Some(crate::config::DEFAULT_KEEP_OUTPUTS_MAX),
        }
    }
}

/// The outputs of a run as recorded, with the files of its directory outputs.
#[derive(Debug, Default)]
pub struct KeptOutputs {
    pub outputs: Vec<Output>,
    /// Files inside directory outputs (file outputs are recorded from `outputs`).
    pub files: Vec<OutputFile>,
    /// What the user should hear (an output not kept, a file that changed while kept).
    pub warnings: Vec<String>,
}

/// Why keeping one output failed.
#[derive(Debug, thiserror::Error)]
enum KeepError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

impl KeepError {
    fn short(self) -> String {
        match self {
            KeepError::Object(ObjectError::NoSpace { .. }) => "no space left on device".into(),
            KeepError::Object(e) => crate::error::report(e),
            KeepError::Dataset(e) => crate::error::report(e),
        }
    }
}

/// Hashes and keeps the outputs `paths` (relative to `cwd`). Never fails: an output that cannot
/// be kept is hashed as before and says why it is not kept; one that cannot be hashed either
/// has no digest (and a warning).
pub fn keep_outputs(
    objects: &Objects,
    paths: &[String],
    cwd: &Path,
    policy: &KeepPolicy,
) -> KeptOutputs {
    let mut out = KeptOutputs::default();
    let mut used = 0u64;
    objects.sweep_temps();
    for (pos, p) in paths.iter().enumerate() {
        let abs = cwd.join(p);
        let size = match size_of(&abs) {
            Ok(Some(s)) => s,
            Ok(None) => {
                let mut o = Output::hashed(p.clone(), None, None);
                o.kept = Some(false);
                o.not_kept = Some("missing when the run ended".into());
                out.outputs.push(o);
                continue;
            }
            Err(e) => {
                out.warnings.push(format!(
                    "cannot hash output {p}: {}",
                    crate::error::report(e)
                ));
                out.outputs.push(not_kept(p, None, "unreadable".into()));
                continue;
            }
        };
        let why_not = match (&policy.off, policy.max_bytes) {
            (Some(why), _) => Some(why.clone()),
            (None, Some(max)) if used.saturating_add(size) > max => Some(format!(
                "its {} would take this run past keep_outputs_max ({})",
                human_bytes(size),
                human_bytes(max)
            )),
            _ => None,
        };
        if let Some(why) = why_not {
            out.outputs.push(hash_only(&mut out.warnings, p, &abs, why));
            continue;
        }
        match keep_one(objects, &abs, pos as u32) {
            Ok((sha256, bytes, files, changed)) => {
                used += bytes;
                if changed {
                    out.warnings.push(format!(
                        "output {p} changed while it was kept; the record and the kept copy hold the bytes read"
                    ));
                }
                out.outputs.push(Output {
                    path: p.clone(),
                    sha256: Some(sha256),
                    bytes: Some(bytes),
                    kept: Some(true),
                    not_kept: None,
                });
                out.files.extend(files);
            }
            Err(e) => {
                let why = e.short();
                out.warnings.push(format!("output {p} not kept: {why}"));
                out.outputs.push(hash_only(&mut out.warnings, p, &abs, why));
            }
        }
    }
    out
}

fn not_kept(p: &str, o: Option<Output>, why: String) -> Output {
    let mut o = o.unwrap_or_else(|| Output::hashed(p.into(), None, None));
    o.path = p.into();
    o.kept = Some(false);
    o.not_kept = Some(why);
    o
}

/// The output hashed in place, as before outputs were kept.
fn hash_only(warnings: &mut Vec<String>, p: &str, abs: &Path, why: String) -> Output {
    match dataset::hash_output(abs) {
        Ok(o) => not_kept(p, Some(o), why),
        Err(e) => {
            warnings.push(format!(
                "cannot hash output {p}: {}",
                crate::error::report(e)
            ));
            not_kept(p, None, why)
        }
    }
}

/// Total size of the regular files of a path; `None` when it does not exist.
fn size_of(abs: &Path) -> std::result::Result<Option<u64>, DatasetError> {
    match std::fs::metadata(abs) {
        Ok(m) if m.is_dir() => {
            let tree = manifest::walk(&canonical(abs), None, &HashOptions::default())?;
            Ok(Some(
                tree.entries
                    .iter()
                    .map(|e| match &e.kind {
                        EntryKind::File(m) => m.size,
                        EntryKind::Symlink(_) => 0,
                    })
                    .sum(),
            ))
        }
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DatasetError::Unreadable {
            path: abs.to_path_buf(),
            source,
        }),
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Keeps one output: (digest as recorded, bytes, files inside a directory, changed while kept).
fn keep_one(
    objects: &Objects,
    abs: &Path,
    pos: u32,
) -> std::result::Result<(String, u64, Vec<OutputFile>, bool), KeepError> {
    let meta = std::fs::metadata(abs).map_err(|source| DatasetError::Unreadable {
        path: abs.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return keep_dir(objects, &canonical(abs), pos);
    }
    if !meta.is_file() {
        return Err(DatasetError::SpecialFile {
            path: abs.to_path_buf(),
            kind: manifest::special_kind(&meta.file_type()),
        }
        .into());
    }
    let s = objects.store_file(abs)?;
    Ok((s.sha256, s.bytes, Vec::new(), s.changed))
}

/// Keeps a directory: every file as an object, every symlink's target string as an object (so
/// `repro get` can recreate the link), and the manifest itself, whose SHA-256 is the digest.
/// On failure the objects this call created are removed again.
fn keep_dir(
    objects: &Objects,
    root: &Path,
    pos: u32,
) -> std::result::Result<(String, u64, Vec<OutputFile>, bool), KeepError> {
    let mut tree = manifest::walk(root, None, &HashOptions::default())?;
    tree.entries.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
    let stored: Vec<std::result::Result<Stored, ObjectError>> = tree
        .entries
        .par_iter()
        .map(|e| match &e.kind {
            EntryKind::File(_) => objects.store_file(&tree.abs(e)),
            EntryKind::Symlink(target) => {
                let sha256 = objects.store_bytes(target)?;
                Ok(Stored {
                    sha256,
                    bytes: 0,
                    how: super::objects::CopyHow::Copy,
                    new: false,
                    changed: false,
                })
            }
        })
        .collect();
    let undo = |stored: &[std::result::Result<Stored, ObjectError>]| {
        for s in stored.iter().flatten() {
            if s.new {
                let _ = objects.remove(&s.sha256);
            }
        }
    };
    if let Some(i) = stored.iter().position(|s| s.is_err()) {
        undo(&stored);
        let mut stored = stored;
        return Err(stored.swap_remove(i).expect_err("an error").into());
    }
    let stored: Vec<Stored> = stored.into_iter().map(|s| s.expect("checked")).collect();
    let mut man = Vec::with_capacity(tree.entries.len() * 100);
    let (mut files, mut bytes, mut changed) = (Vec::new(), 0u64, false);
    for (e, s) in tree.entries.iter().zip(&stored) {
        let mut sha = [0u8; 32];
        hex::decode_to_slice(&s.sha256, &mut sha).expect("object names are hex");
        match &e.kind {
            EntryKind::File(_) => {
                manifest::file_line(&mut man, &sha, s.bytes, &e.rel);
                bytes += s.bytes;
                changed |= s.changed;
                files.push(OutputFile {
                    pos,
                    rel: e.rel.clone(),
                    sha256: s.sha256.clone(),
                    bytes: s.bytes,
                });
            }
            EntryKind::Symlink(_) => manifest::symlink_line(&mut man, &sha, &e.rel),
        }
    }
    match objects.store_bytes(&man) {
        Ok(name) => Ok((format!("sha256:{name}"), bytes, files, changed)),
        Err(err) => {
            undo(&stored.into_iter().map(Ok).collect::<Vec<_>>());
            Err(err.into())
        }
    }
}

/// `1.5 GiB`-style sizes for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// One entry of a kept directory's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestEntry {
    File {
        rel: Vec<u8>,
        sha256: String,
        bytes: u64,
    },
    /// The SHA-256 names the object holding the link's target string.
    Symlink { rel: Vec<u8>, sha256: String },
}

impl ManifestEntry {
    /// The relative path bytes.
    pub fn rel(&self) -> &[u8] {
        match self {
            ManifestEntry::File { rel, .. } | ManifestEntry::Symlink { rel, .. } => rel,
        }
    }
}

/// Parses a canonical manifest (docs/datasets.md); `None` when a line does not have its shape
/// or a path could escape the directory it is written under.
pub fn parse_manifest(text: &[u8]) -> Option<Vec<ManifestEntry>> {
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, |&b| b == b' ');
        let sha = std::str::from_utf8(parts.next()?).ok()?;
        let size = std::str::from_utf8(parts.next()?).ok()?;
        let rel = parts.next()?.to_vec();
        if !super::objects::is_sha256_hex(sha) || !safe_rel(&rel) {
            return None;
        }
        out.push(if size == "symlink" {
            ManifestEntry::Symlink {
                rel,
                sha256: sha.into(),
            }
        } else {
            ManifestEntry::File {
                rel,
                sha256: sha.into(),
                bytes: size.parse().ok()?,
            }
        });
    }
    Some(out)
}

/// A relative path that stays below the directory it is joined to.
pub fn safe_rel(rel: &[u8]) -> bool {
    !rel.is_empty()
        && !rel.contains(&0)
        && rel[0] != b'/'
        && rel
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

/// The path of a manifest entry under `dir`.
pub fn under(dir: &Path, rel: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(rel))
}

/// SHA-256 hex of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Store {
    /// The files of a run's outputs (a file output is one row with an empty `rel`), by output
    /// position then path.
    pub fn output_files(&self, run_id: &str) -> Result<Vec<OutputFile>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT pos, rel, sha256, bytes FROM output_files WHERE run_id = ?1 ORDER BY pos, rel",
            )
            .map_err(self.sql_err("read output files"))?;
        let rows = st
            .query_map([run_id], |r| {
                Ok(OutputFile {
                    pos: r.get::<_, i64>(0)? as u32,
                    rel: r.get(1)?,
                    sha256: r.get(2)?,
                    bytes: r.get::<_, i64>(3)? as u64,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("read output files"))?;
        Ok(rows)
    }

    /// Marks one output of a run kept or not (with why), e.g. after `repro gc --outputs`.
    pub fn set_output_kept(
        &mut self,
        run_id: &str,
        pos: u32,
        kept: bool,
        not_kept: Option<&str>,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE run_outputs SET kept = ?3, not_kept = ?4 WHERE run_id = ?1 AND pos = ?2",
                params![run_id, pos as i64, kept, not_kept],
            )
            .map_err(self.sql_err("update output"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn policy() -> KeepPolicy {
        KeepPolicy {
            off: None,
            max_bytes: None,
        }
    }

    #[test]
    fn a_directory_output_has_the_dataset_digest_and_every_file_kept() {
        let d = tempfile::tempdir().unwrap();
        let o = Objects::beside(&d.path().join("repro.db"));
        let out = d.path().join("ckpt");
        fs::create_dir_all(out.join("sub")).unwrap();
        fs::write(out.join("a.bin"), b"aaa").unwrap();
        fs::write(out.join("sub/b.bin"), b"bb").unwrap();
        std::os::unix::fs::symlink("a.bin", out.join("link")).unwrap();
        let k = keep_outputs(&o, &["ckpt".into()], d.path(), &policy());
        assert!(k.warnings.is_empty(), "{:?}", k.warnings);
        let want = dataset::hash_output(&out).unwrap();
        assert_eq!(k.outputs[0].sha256, want.sha256);
        assert_eq!(k.outputs[0].bytes, Some(5));
        assert_eq!(k.outputs[0].kept, Some(true));
        assert_eq!(k.files.len(), 2);
        let man = o
            .read(
                k.outputs[0]
                    .sha256
                    .as_deref()
                    .unwrap()
                    .trim_start_matches("sha256:"),
            )
            .unwrap()
            .unwrap();
        let entries = parse_manifest(&man).unwrap();
        assert_eq!(entries.len(), 3);
        let ManifestEntry::Symlink { sha256, .. } = &entries[1] else {
            panic!("{entries:?}")
        };
        assert_eq!(o.read(sha256).unwrap().unwrap(), b"a.bin");
    }

    #[test]
    fn the_budget_and_the_switch_say_why_an_output_is_not_kept() {
        let d = tempfile::tempdir().unwrap();
        let o = Objects::beside(&d.path().join("repro.db"));
        fs::write(d.path().join("small"), b"12").unwrap();
        fs::write(d.path().join("large"), vec![7u8; 4096]).unwrap();
        let p = KeepPolicy {
            off: None,
            max_bytes: Some(1000),
        };
        let k = keep_outputs(
            &o,
            &["small".into(), "large".into(), "gone".into()],
            d.path(),
            &p,
        );
        assert_eq!(k.outputs[0].kept, Some(true));
        assert_eq!(k.outputs[1].kept, Some(false));
        assert!(k.outputs[1].sha256.is_some(), "still hashed");
        assert!(
            k.outputs[1]
                .not_kept
                .as_deref()
                .unwrap()
                .contains("keep_outputs_max"),
            "{:?}",
            k.outputs[1]
        );
        assert_eq!(k.outputs[2].sha256, None);
        assert_eq!(
            k.outputs[2].not_kept.as_deref(),
            Some("missing when the run ended")
        );
        let off = KeepPolicy {
            off: Some("keep_outputs = false".into()),
            max_bytes: None,
        };
        let k = keep_outputs(&o, &["small".into()], d.path(), &off);
        assert_eq!(
            k.outputs[0].not_kept.as_deref(),
            Some("keep_outputs = false")
        );
        assert_eq!(o.list().unwrap().len(), 1, "only the first run's object");
    }

    #[test]
    fn manifests_that_could_escape_are_refused() {
        let sha = "a".repeat(64);
        assert!(parse_manifest(format!("{sha} 3 ok/x\n").as_bytes()).is_some());
        for bad in ["../x", "/etc/x", "a/../../x", "a//b", "./a"] {
            assert!(
                parse_manifest(format!("{sha} 3 {bad}\n").as_bytes()).is_none(),
                "{bad}"
            );
        }
        assert!(parse_manifest(b"zz 3 a\n").is_none());
    }
}
