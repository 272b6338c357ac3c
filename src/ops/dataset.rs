//! `dataset verify`: check a file or directory against a dataset digest (`sha256:…`) or a file's
//! bare SHA-256 (as `sha256sum` prints it).

use std::path::{Path, PathBuf};

use crate::capture::dataset::{self, DatasetError, HashOptions, Progress};
use crate::error::Hinted;

/// Why a path could not be checked (a mismatch is a [`Check`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The expected value is neither form of digest.
    #[error("'{0}' is not a digest")]
    NotADigest(String),
    /// The path to check does not exist.
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    /// A file's SHA-256 was given for a directory.
    #[error("{} is a directory, but a bare SHA-256 is the hash of one file", .0.display())]
    DirectoryForFile(PathBuf),
    /// Hashing failed.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

impl Hinted for CheckError {
    fn hint(&self) -> Option<String> {
        match self {
            CheckError::NotADigest(_) => Some(
                "give sha256:<64 lowercase hex> (a dataset digest) or 64 hex digits (a file's SHA-256)"
                    .into(),
            ),
            CheckError::Missing(_) => None,
            CheckError::DirectoryForFile(_) => {
                Some("compare a directory with its dataset digest, sha256:…".into())
            }
            CheckError::Dataset(e) => e.hint(),
        }
    }

    fn is_usage(&self) -> bool {
        matches!(
            self,
            CheckError::NotADigest(_) | CheckError::DirectoryForFile(_)
        )
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The digest given (trimmed).
    pub expected: String,
    /// The digest of the path, in the same form.
    pub actual: String,
}

impl Check {
    /// Whether the path matches.
    pub fn matches(&self) -> bool {
        self.expected == self.actual
    }
}

fn valid_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Hashes `path` in the form of `expected`: a dataset digest (through the hash `cache`, with
/// `progress` reports) or, for 64 bare hex digits, the SHA-256 of one file.
pub fn verify_path(
    path: &Path,
    expected: &str,
    opts: &HashOptions,
    cache: Option<&rusqlite::Connection>,
    progress: Option<&dyn Fn(Progress)>,
) -> Result<Check, CheckError> {
    let expected = expected.trim();
    let file_form = valid_hex64(expected);
    if !file_form && !expected.strip_prefix("sha256:").is_some_and(valid_hex64) {
        return Err(CheckError::NotADigest(expected.to_string()));
    }
    let actual = if file_form {
        let o = dataset::hash_output(path)?;
        match (o.sha256, std::fs::metadata(path).map(|m| m.is_dir())) {
            (None, _) => return Err(CheckError::Missing(path.to_path_buf())),
            (Some(_), Ok(true)) => return Err(CheckError::DirectoryForFile(path.to_path_buf())),
            (Some(s), _) => s,
        }
    } else {
        dataset::hash_path(path, opts, cache, progress)?.digest
    };
    Ok(Check {
        expected: expected.to_string(),
        actual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_checks_by_its_sha256_and_a_directory_by_its_dataset_digest() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("m");
        std::fs::write(&f, b"abc").unwrap();
        let opts = HashOptions::default();
        // SHA-256("abc")
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(verify_path(&f, abc, &opts, None, None).unwrap().matches());
        let dir = verify_path(t.path(), abc, &opts, None, None).unwrap_err();
        assert!(matches!(dir, CheckError::DirectoryForFile(_)) && dir.is_usage());
        let gone = verify_path(&t.path().join("x"), abc, &opts, None, None).unwrap_err();
        assert!(matches!(gone, CheckError::Missing(_)) && !gone.is_usage());
        let digest = dataset::hash_path(t.path(), &opts, None, None)
            .unwrap()
            .digest;
        let c = verify_path(t.path(), &format!(" {digest}\n"), &opts, None, None).unwrap();
        assert!(c.matches(), "{c:?}");
        std::fs::write(&f, b"abd").unwrap();
        assert!(!verify_path(t.path(), &digest, &opts, None, None)
            .unwrap()
            .matches());
        assert!(verify_path(&f, "md5:abc", &opts, None, None)
            .unwrap_err()
            .is_usage());
    }
}
