//! Dataset versions: content digests of local paths, DVC hashes, labels and URIs.
//!
//! A local path is versioned by the SHA-256 of a canonical manifest (see [`manifest`] and
//! `docs/datasets.md`), one line per regular file or symlink, sorted bytewise by relative path.
//! Files are hashed on every core of the current rayon pool, largest first, and an optional
//! SQLite hash cache keyed by (device, inode, size, mtime, ctime) lets an unchanged dataset be
//! re-versioned without reading its contents.

mod cache;
mod dvc;
mod hash;
pub mod manifest;
mod spec;

use std::path::{Path, PathBuf};

use crate::error::Hinted;

pub use dvc::fuzz_dvc;
#[doc(hidden)]
pub use hash::on_read_done;
pub use hash::{hash_path, manifest_of};
pub use spec::{capture, capture_with_manifest, hash_output, parse_spec, DatasetSpec};

/// How a path is hashed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashOptions {
    /// Follow symlinks (hash what they point at) instead of recording them as links.
    pub follow_symlinks: bool,
}

/// Which stage a progress report comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listing the directory tree (totals not yet known).
    Scanning,
    /// Reading and hashing file contents.
    Hashing,
}

/// A progress report, delivered on the calling thread about ten times a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    /// Files hashed so far (cache hits count as done).
    pub files_done: u64,
    pub files_total: u64,
    /// Bytes read or served from the cache so far.
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// The content digest of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetDigest {
    /// `sha256:<64 hex>` of the canonical manifest.
    pub digest: String,
    /// Entries in the manifest (regular files and symlinks).
    pub files: u64,
    /// Total size of the regular files.
    pub bytes: u64,
    /// Files whose hash came from the cache instead of being read.
    pub from_cache: u64,
}

/// Errors of dataset capture; each names the path or spec involved.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("dataset path {path} does not exist")]
    NotFound { path: PathBuf },
    #[error("cannot read {path}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is a {kind}; only regular files, directories and symlinks can be hashed")]
    SpecialFile { path: PathBuf, kind: &'static str },
    #[error("the file name {path:?} contains a newline, which the manifest cannot represent")]
    NewlineInPath { path: PathBuf },
    #[error("{path} changed while it was being hashed, {attempts} times in a row ({detail})")]
    ChangedWhileHashing {
        path: PathBuf,
        attempts: u32,
        /// What differed on the last attempt (size, timestamps, inode).
        detail: String,
    },
    #[error("the symlink {path} points at nothing (following symlinks)")]
    BrokenSymlink { path: PathBuf },
    #[error("the symlink {path} leads back to a directory above it (following symlinks)")]
    SymlinkLoop { path: PathBuf },
    #[error("{path}:{line}: {message}")]
    BadIgnore {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("the hash cache failed while {what}")]
    Cache {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("invalid --dataset '{spec}': {reason}")]
    BadSpec { spec: String, reason: String },
    #[error("cannot read the DVC hash of {path} from {file}: {reason}")]
    Dvc {
        path: PathBuf,
        file: PathBuf,
        reason: String,
    },
}

impl Hinted for DatasetError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            DatasetError::NotFound { .. } => "check the path; for a dataset that is not local, give `name@version` or `name=URI@version` (e.g. imagenet=s3://bucket/imagenet@v3)".into(),
            DatasetError::Unreadable { path, .. } => format!(
                "make it readable, or exclude it with a line in .reproignore (e.g. `{}`)",
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ),
            DatasetError::SpecialFile { path, .. } => format!(
                "remove it or exclude it with a line in .reproignore (e.g. `{}`)",
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ),
            DatasetError::NewlineInPath { .. } => {
                "rename the file, or exclude it with a line in .reproignore".into()
            }
            DatasetError::ChangedWhileHashing { .. } => {
                "hash the dataset when nothing is writing to it (stop the writer, or exclude the file in .reproignore)".into()
            }
            DatasetError::BrokenSymlink { .. } => {
                "fix or remove the link, or hash without --follow-symlinks to record links as links".into()
            }
            DatasetError::SymlinkLoop { .. } => {
                "hash without --follow-symlinks to record links as links".into()
            }
            DatasetError::BadIgnore { .. } => "see docs/datasets.md for the .reproignore syntax".into(),
            DatasetError::Cache { .. } => {
                "retry with --no-cache; check free disk space and permissions of the database".into()
            }
            DatasetError::BadSpec { .. } => "use `name@version`, `name=URI@version` (URI with a scheme such as s3://, gs://, hf://, https://) or `[name=]PATH`".into(),
            DatasetError::Dvc { .. } => "run `dvc commit` or `dvc repro` so the hash is recorded, or give the path without DVC by removing the .dvc file".into(),
        })
    }
}

/// `Unreadable` for an I/O error on `path`.
fn unreadable(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Unreadable {
        path: path.to_path_buf(),
        source,
    }
}
