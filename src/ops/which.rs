//! `repro which FILE…`: the runs that produced a file (or directory) with this content, and the
//! runs that read it as part of a path dataset, newest first — one hash per path, then indexed
//! look-ups.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::capture::dataset::{self, DatasetError, HashOptions};
use crate::error::Hinted;
use crate::record::Arg;
use crate::store::liveness::{liveness, Liveness};
use crate::store::objects::Objects;
use crate::store::which::{ProducedRow, ReadRow};
use crate::store::{Store, StoreError};

/// The paths to look up.
#[derive(Debug, Clone, Default)]
pub struct WhichRequest {
    /// Files or directories, as the user named them.
    pub paths: Vec<PathBuf>,
}

/// A run that produced the content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Producer {
    pub run_id: String,
    pub name: Option<String>,
    /// The run's status now (`lost` or `running?` decided for a stored `running`).
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// The output path as the run recorded it.
    pub output: String,
    /// The path inside a directory output; `None` when the output is the content itself.
    pub inside: Option<Arg>,
    /// Whether a copy is still in the object store (`repro get` can give it back); `None`
    /// when the run was recorded before outputs were kept.
    pub kept: Option<bool>,
}

/// A run that read the content as (part of) a path dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reader {
    pub run_id: String,
    pub name: Option<String>,
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// The dataset's name in that run.
    pub dataset: String,
    /// The dataset's digest.
    pub digest: String,
    /// The path inside the dataset; `None` when the dataset is the content itself.
    pub inside: Option<Arg>,
}

/// What is known about one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WhichFile {
    /// As the user named it.
    pub path: PathBuf,
    /// A file's SHA-256 (64 hex), or a directory's dataset digest (`sha256:…`).
    pub sha256: String,
    /// Size (of all regular files, for a directory).
    pub bytes: u64,
    /// Newest first.
    pub produced_by: Vec<Producer>,
    /// Newest first.
    pub read_by: Vec<Reader>,
}

impl WhichFile {
    /// Whether any run knows this content.
    pub fn known(&self) -> bool {
        !self.produced_by.is_empty() || !self.read_by.is_empty()
    }
}

/// Why one path could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum WhichError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{} does not exist", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot hash {}", path.display())]
    Hash {
        path: PathBuf,
        #[source]
        source: DatasetError,
    },
}

impl Hinted for WhichError {
    fn hint(&self) -> Option<String> {
        match self {
            WhichError::Store(e) => e.hint(),
            WhichError::NotFound { .. } => Some("check the path".into()),
            WhichError::Hash { source, .. } => source.hint(),
        }
    }
}

/// Looks up every path; one path's failure does not stop the others (like `grep` over files).
pub fn which(store: &Store, req: &WhichRequest) -> Vec<(PathBuf, Result<WhichFile, WhichError>)> {
    let objects = Objects::beside(store.path());
    req.paths
        .iter()
        .map(|p| (p.clone(), which_one(store, &objects, p)))
        .collect()
}

fn which_one(store: &Store, objects: &Objects, path: &Path) -> Result<WhichFile, WhichError> {
    let failed = |source| WhichError::Hash {
        path: path.to_path_buf(),
        source,
    };
    let (sha256, bytes) = if path.is_dir() {
        // Through the hash cache: an unchanged directory is not read again. A cache that
        // cannot be written (a read-only database) only costs the reads.
        let opts = HashOptions::default();
        let d = match dataset::hash_path(path, &opts, Some(store.conn()), None) {
            Err(DatasetError::Cache { .. }) => dataset::hash_path(path, &opts, None, None),
            other => other,
        }
        .map_err(failed)?;
        (d.digest, d.bytes)
    } else {
        let hashed = dataset::hash_output(path).map_err(failed)?;
        let (Some(sha256), Some(bytes)) = (hashed.sha256, hashed.bytes) else {
            return Err(WhichError::NotFound {
                path: path.to_path_buf(),
            });
        };
        (sha256, bytes)
    };
    let (produced, read) = if sha256.starts_with("sha256:") {
        (store.produced_dir(&sha256)?, store.read_dir(&sha256)?)
    } else {
        (store.produced_file(&sha256)?, store.read_file(&sha256)?)
    };
    Ok(WhichFile {
        path: path.to_path_buf(),
        bytes,
        produced_by: produced
            .into_iter()
            .map(|r| producer(store, objects, &sha256, r))
            .collect(),
        read_by: read.into_iter().map(|r| reader(store, r)).collect(),
        sha256,
    })
}

/// The status as `show` gives it: a stored `running` whose wrapper is gone is `lost`.
fn status_now(store: &Store, id: &str, stored: String) -> String {
    if stored != "running" {
        return stored;
    }
    match store.get_run(id).map(|r| liveness(&r)) {
        Ok(Liveness::Lost) => "lost".into(),
        Ok(Liveness::Undecided(_)) => "running?".into(),
        _ => stored,
    }
}

fn inside(rel: Vec<u8>) -> Option<Arg> {
    (!rel.is_empty()).then(|| Arg::from(std::ffi::OsStr::from_bytes(&rel).to_os_string()))
}

fn producer(store: &Store, objects: &Objects, content: &str, r: ProducedRow) -> Producer {
    // Still kept: recorded kept, and the object is there (gc may have removed it since).
    let object = content.trim_start_matches("sha256:");
    Producer {
        status: status_now(store, &r.run_id, r.status),
        kept: r.kept.map(|k| k && objects.contains(object)),
        run_id: r.run_id,
        name: r.name,
        started_at: r.started_at,
        ended_at: r.ended_at,
        output: r.output,
        inside: inside(r.inside),
    }
}

fn reader(store: &Store, r: ReadRow) -> Reader {
    Reader {
        status: status_now(store, &r.run_id, r.status),
        run_id: r.run_id,
        name: r.name,
        started_at: r.started_at,
        ended_at: r.ended_at,
        dataset: r.dataset,
        digest: r.digest,
        inside: inside(r.inside),
    }
}
