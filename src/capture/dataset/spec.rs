//! `--dataset` values (`name@version`, `name=URI@version`, `[name=]PATH`), capture into the run
//! record, and `--output` hashing.

use std::path::{Path, PathBuf};

use super::dvc::{self, normalize};
use super::hash::{self, hash_path, sha256_file};
use super::{unreadable, DatasetError, HashOptions, Progress};
use crate::record::{Dataset, DatasetKind, Output};

/// A parsed `--dataset` value, validated against the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetSpec {
    /// `name@version`: a version label the user vouches for.
    Label { name: String, version: String },
    /// `[name=]URI@version` with a scheme (`s3://`, `gs://`, `hf://`, `https://`, …); credentials stripped.
    Uri {
        name: String,
        uri: String,
        version: String,
    },
    /// A local file or directory, versioned by its content digest.
    Path {
        name: String,
        /// Absolute, lexically normalised.
        path: PathBuf,
        /// Relative to the repository root when inside it, else absolute.
        uri: String,
    },
    /// A DVC-tracked path, versioned by the hash DVC recorded.
    Dvc {
        name: String,
        path: PathBuf,
        uri: String,
        /// DVC's md5 (`<32 hex>` or `<32 hex>.dir`).
        hash: String,
        files: Option<u64>,
        bytes: Option<u64>,
        /// The `.dvc` or `dvc.lock` file the hash was read from.
        source: PathBuf,
    },
}

impl DatasetSpec {
    /// The dataset's name.
    pub fn name(&self) -> &str {
        match self {
            DatasetSpec::Label { name, .. }
            | DatasetSpec::Uri { name, .. }
            | DatasetSpec::Path { name, .. }
            | DatasetSpec::Dvc { name, .. } => name,
        }
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
}

/// `scheme://…` per RFC 3986 (`[a-zA-Z][a-zA-Z0-9+.-]*`).
fn has_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once("://") else {
        return false;
    };
    let mut cs = scheme.chars();
    cs.next().is_some_and(|c| c.is_ascii_alphabetic())
        && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
}

/// Drops `user:password@` from a URI's authority (guarantee 5: no secrets stored).
fn strip_credentials(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..auth_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => uri.to_string(),
    }
}

/// Parses a `--dataset` value. Relative paths are taken from `cwd`; a path's `uri` is relative to
/// `repo_root` when inside it. A path that is neither present nor tracked by DVC is an error.
///
/// Forms, tried in order: `[name=]URI@version` (URI with a scheme), `name@version` (no `/`),
/// `[name=]PATH`. Write `./data@v2` for a path containing `@`, and `./a=b` for one containing `=`.
pub fn parse_spec(
    spec: &str,
    cwd: &Path,
    repo_root: Option<&Path>,
) -> Result<DatasetSpec, DatasetError> {
    let bad = |reason: &str| DatasetError::BadSpec {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    if spec.trim().is_empty() {
        return Err(bad("it is empty"));
    }
    if spec.chars().any(char::is_control) {
        return Err(bad("it contains a control character"));
    }
    let (name, rest) = match spec.split_once('=') {
        Some((n, r)) if valid_name(n) => (Some(n.to_string()), r),
        Some((n, _)) if !n.contains('/') && !n.is_empty() && !has_scheme(spec) => {
            return Err(bad(
                "the name before '=' may only contain letters, digits, '.', '_', '-' and '+'",
            ))
        }
        _ => (None, spec),
    };
    if has_scheme(rest) {
        let Some((uri, version)) = rest
            .rsplit_once('@')
            .filter(|(_, v)| !v.is_empty() && !v.contains('/'))
        else {
            return Err(bad("a URI needs a version: name=URI@version (an S3 object version, a Hugging Face revision, …)"));
        };
        let uri = strip_credentials(uri);
        let name = match name {
            Some(n) => n,
            None => uri
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty() && !s.ends_with(':'))
                .map(str::to_string)
                .ok_or_else(|| bad("cannot derive a name from the URI; write name=URI@version"))?,
        };
        return Ok(DatasetSpec::Uri {
            name,
            uri,
            version: version.to_string(),
        });
    }
    if name.is_none() && !rest.contains('/') {
        if let Some((n, v)) = rest.split_once('@') {
            if !valid_name(n) {
                return Err(bad(
                    "the name before '@' may only contain letters, digits, '.', '_', '-' and '+'",
                ));
            }
            if v.is_empty() {
                return Err(bad("the version after '@' is empty"));
            }
            return Ok(DatasetSpec::Label {
                name: n.to_string(),
                version: v.to_string(),
            });
        }
    }
    if rest.is_empty() {
        return Err(bad("the path after '=' is empty"));
    }
    let path = normalize(&cwd.join(rest));
    let name = match name {
        Some(n) => n,
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".to_string()),
    };
    let uri = display_uri(&path, repo_root);
    if let Some(h) = dvc::find(&path, repo_root.or(Some(cwd)))? {
        return Ok(DatasetSpec::Dvc {
            name,
            path,
            uri,
            hash: h.hash,
            files: h.files,
            bytes: h.bytes,
            source: h.source,
        });
    }
    match std::fs::metadata(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DatasetError::NotFound { path })
        }
        Err(e) => return Err(unreadable(&path)(e)),
    }
    Ok(DatasetSpec::Path { name, path, uri })
}

/// The path relative to the repository root when inside it, else absolute.
fn display_uri(path: &Path, repo_root: Option<&Path>) -> String {
    let rel = |p: &Path, root: &Path| -> Option<String> {
        let r = p.strip_prefix(root).ok()?;
        Some(if r.as_os_str().is_empty() {
            ".".to_string()
        } else {
            r.to_string_lossy().into_owned()
        })
    };
    if let Some(root) = repo_root {
        let root_n = normalize(root);
        if let Some(r) = rel(path, &root_n) {
            return r;
        }
        if let (Ok(p), Ok(r)) = (path.canonicalize(), root.canonicalize()) {
            if let Some(r) = rel(&p, &r) {
                return r;
            }
        }
    }
    path.to_string_lossy().into_owned()
}

/// Fills the dataset part of the run record; hashes a path dataset.
pub fn capture(
    spec: &DatasetSpec,
    opts: &HashOptions,
    cache: Option<&rusqlite::Connection>,
    progress: Option<&dyn Fn(Progress)>,
) -> Result<Dataset, DatasetError> {
    Ok(match spec {
        DatasetSpec::Label { name, version } => Dataset {
            name: name.clone(),
            kind: DatasetKind::Label,
            uri: None,
            version: Some(version.clone()),
            digest: None,
            files: None,
            bytes: None,
        },
        DatasetSpec::Uri { name, uri, version } => Dataset {
            name: name.clone(),
            kind: DatasetKind::Uri,
            uri: Some(uri.clone()),
            version: Some(version.clone()),
            digest: None,
            files: None,
            bytes: None,
        },
        DatasetSpec::Path { name, path, uri } => {
            path_dataset(name, uri, hash_path(path, opts, cache, progress)?)
        }
        DatasetSpec::Dvc {
            name,
            uri,
            hash,
            files,
            bytes,
            ..
        } => Dataset {
            name: name.clone(),
            kind: DatasetKind::Dvc,
            uri: Some(uri.clone()),
            version: Some(hash.clone()),
            digest: None,
            files: *files,
            bytes: *bytes,
        },
    })
}

/// [`capture`], also giving a path dataset's canonical manifest (the hasher builds it anyway;
/// keeping it costs memory, not time), so the caller can record which files the dataset holds.
pub fn capture_with_manifest(
    spec: &DatasetSpec,
    opts: &HashOptions,
    cache: Option<&rusqlite::Connection>,
    progress: Option<&dyn Fn(Progress)>,
) -> Result<(Dataset, Option<Vec<u8>>), DatasetError> {
    let DatasetSpec::Path { name, path, uri } = spec else {
        return Ok((capture(spec, opts, cache, progress)?, None));
    };
    let mut manifest = Vec::new();
    let d = hash::run(path, opts, cache, progress, Some(&mut manifest))?;
    Ok((path_dataset(name, uri, d), Some(manifest)))
}

/// The record of a path dataset with digest `d`.
fn path_dataset(name: &str, uri: &str, d: super::DatasetDigest) -> Dataset {
    Dataset {
        name: name.to_string(),
        kind: DatasetKind::Path,
        uri: Some(uri.to_string()),
        version: Some(d.digest.clone()),
        digest: Some(d.digest),
        files: Some(d.files),
        bytes: Some(d.bytes),
    }
}

/// Hashes an `--output` after the run: a file's SHA-256 hex, a directory's dataset digest
/// (`sha256:…`), or nulls when it does not exist.
pub fn hash_output(path: &Path) -> Result<Output, DatasetError> {
    let shown = path.to_string_lossy().into_owned();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Output::hashed(shown, None, None))
        }
        Err(e) => return Err(unreadable(path)(e)),
    };
    if meta.is_dir() {
        let d = hash_path(path, &HashOptions::default(), None, None)?;
        return Ok(Output::hashed(shown, Some(d.digest), Some(d.bytes)));
    }
    if !meta.is_file() {
        return Err(DatasetError::SpecialFile {
            path: path.to_path_buf(),
            kind: super::manifest::special_kind(&meta.file_type()),
        });
    }
    let (sha, bytes) = sha256_file(path)?;
    Ok(Output::hashed(shown, Some(hex::encode(sha)), Some(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(spec: &str) -> Result<DatasetSpec, DatasetError> {
        parse_spec(spec, Path::new("/nonexistent-cwd"), None)
    }

    #[test]
    fn labels_and_uris() {
        assert_eq!(
            p("imagenet@v3").unwrap(),
            DatasetSpec::Label {
                name: "imagenet".into(),
                version: "v3".into()
            }
        );
        assert_eq!(
            p("imagenet=s3://corp-data/imagenet@v3").unwrap(),
            DatasetSpec::Uri {
                name: "imagenet".into(),
                uri: "s3://corp-data/imagenet".into(),
                version: "v3".into()
            }
        );
        assert_eq!(
            p("hf://datasets/org/squad@a1b2c3").unwrap(),
            DatasetSpec::Uri {
                name: "squad".into(),
                uri: "hf://datasets/org/squad".into(),
                version: "a1b2c3".into()
            }
        );
        assert_eq!(
            p("w=https://user:secret@host.example/w.tar@2024-01").unwrap(),
            DatasetSpec::Uri {
                name: "w".into(),
                uri: "https://host.example/w.tar".into(),
                version: "2024-01".into()
            }
        );
    }

    #[test]
    fn bad_specs_say_why() {
        for (spec, why) in [
            ("", "empty"),
            ("x=s3://b/k", "needs a version"),
            ("https://user:pw@host/x", "needs a version"),
            ("name@", "version after '@' is empty"),
            ("na me@v1", "name before '@'"),
            ("n m=./x", "name before '='"),
        ] {
            let e = p(spec).unwrap_err().to_string();
            assert!(e.contains(why), "{spec:?}: {e}");
        }
    }

    #[test]
    fn a_missing_path_is_named() {
        let e = p("./data@v2").unwrap_err();
        assert!(
            matches!(&e, DatasetError::NotFound { path } if path == Path::new("/nonexistent-cwd/data@v2")),
            "{e:?}"
        );
        let e = p("train=../data/train").unwrap_err();
        assert!(e.to_string().contains("/data/train"), "{e}");
    }

    #[test]
    fn uri_is_relative_to_the_repo_root_when_inside() {
        assert_eq!(
            display_uri(Path::new("/r/data/x"), Some(Path::new("/r"))),
            "data/x"
        );
        assert_eq!(display_uri(Path::new("/r"), Some(Path::new("/r/"))), ".");
        assert_eq!(
            display_uri(Path::new("/other/x"), Some(Path::new("/r"))),
            "/other/x"
        );
    }
}
