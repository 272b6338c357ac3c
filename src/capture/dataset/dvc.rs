//! DVC-tracked paths: the `md5` (or `<md5>.dir`) DVC recorded for an output, read from
//! `PATH.dvc` or from a `dvc.lock` in a directory between the path and the repository root.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::DatasetError;

/// The hash DVC recorded for one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DvcHash {
    /// As DVC writes it: 32 hex digits, with a `.dir` suffix for a directory.
    pub hash: String,
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    /// The `.dvc` or `dvc.lock` file it came from.
    pub source: PathBuf,
}

#[derive(Deserialize)]
struct Out {
    path: String,
    #[serde(default)]
    md5: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    nfiles: Option<u64>,
}

#[derive(Deserialize)]
struct DvcFile {
    #[serde(default)]
    outs: Vec<Out>,
    /// Old (DVC 1) files may set the directory their paths are relative to.
    #[serde(default)]
    wdir: Option<String>,
}

#[derive(Deserialize)]
struct Stage {
    #[serde(default)]
    outs: Vec<Out>,
}

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    stages: BTreeMap<String, Stage>,
}

/// Lexically normalised absolute path: `.` dropped, `..` applied (no symlinks resolved, as DVC does).
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn bad(path: &Path, file: &Path, reason: impl Into<String>) -> DatasetError {
    DatasetError::Dvc {
        path: path.to_path_buf(),
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

fn pick(
    path: &Path,
    file: &Path,
    base: &Path,
    outs: &[Out],
) -> Result<Option<DvcHash>, DatasetError> {
    for o in outs {
        if normalize(&base.join(&o.path)) != path {
            continue;
        }
        let Some(md5) = o.md5.as_deref().filter(|m| !m.is_empty()) else {
            return Err(bad(
                path,
                file,
                format!("the output '{}' has no md5", o.path),
            ));
        };
        let hex = md5.strip_suffix(".dir").unwrap_or(md5);
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(path, file, format!("'{md5}' is not an md5 hash")));
        }
        return Ok(Some(DvcHash {
            hash: md5.to_ascii_lowercase(),
            files: o.nfiles,
            bytes: o.size,
            source: file.to_path_buf(),
        }));
    }
    Ok(None)
}

/// The DVC hash of `path` (absolute, normalised), if DVC tracks it. Looks at `PATH.dvc`, then
/// `dvc.lock` in the path's directory and its ancestors up to and including `stop`.
pub(crate) fn find(path: &Path, stop: Option<&Path>) -> Result<Option<DvcHash>, DatasetError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(None);
    };
    let mut dvc_name = name.to_os_string();
    dvc_name.push(".dvc");
    let dvc_file = parent.join(dvc_name);
    if dvc_file.is_file() {
        let text =
            fs::read_to_string(&dvc_file).map_err(|e| bad(path, &dvc_file, e.to_string()))?;
        let f: DvcFile =
            yaml_serde::from_str(&text).map_err(|e| bad(path, &dvc_file, e.to_string()))?;
        let base = normalize(&parent.join(f.wdir.as_deref().unwrap_or(".")));
        return match pick(path, &dvc_file, &base, &f.outs)? {
            Some(h) => Ok(Some(h)),
            None => Err(bad(path, &dvc_file, "it lists no output with this path")),
        };
    }
    let stop = stop.map(normalize);
    let mut dir = Some(parent);
    while let Some(d) = dir {
        let lock = d.join("dvc.lock");
        if lock.is_file() {
            let text = fs::read_to_string(&lock).map_err(|e| bad(path, &lock, e.to_string()))?;
            let l: Lock =
                yaml_serde::from_str(&text).map_err(|e| bad(path, &lock, e.to_string()))?;
            for stage in l.stages.values() {
                if let Some(h) = pick(path, &lock, d, &stage.outs)? {
                    return Ok(Some(h));
                }
            }
        }
        if stop.as_deref().is_none_or(|s| s == d) {
            break;
        }
        dir = d.parent();
    }
    Ok(None)
}

/// Fuzzing entry point (`fuzz/fuzz_targets/dvc.rs`): a hostile `.dvc` or `dvc.lock` text never
/// panics the parser or the output lookup.
#[doc(hidden)]
pub fn fuzz_dvc(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/repo");
    let path = Path::new("/repo/data");
    let file = Path::new("/repo/data.dvc");
    if let Ok(f) = yaml_serde::from_str::<DvcFile>(text) {
        let base = normalize(&base.join(f.wdir.as_deref().unwrap_or(".")));
        let _ = pick(path, file, &base, &f.outs);
    }
    if let Ok(l) = yaml_serde::from_str::<Lock>(text) {
        for stage in l.stages.values() {
            let _ = pick(path, file, base, &stage.outs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_applies_dots_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c/")), PathBuf::from("/a/c"));
    }
}
