//! `repro get`: a run's kept outputs written back under a directory, verified against the
//! recorded digests, never over a different file without `--force`.

use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::Hinted;
use crate::ops::Events;
use crate::record::{Output, Run};
use crate::store::kept::{self, ManifestEntry};
use crate::store::objects::{self, ObjectError, Objects};
use crate::store::{Store, StoreError};

/// What to get and where.
#[derive(Debug, Clone, Default)]
pub struct GetRequest {
    /// The run (resolved id).
    pub id: String,
    /// Outputs, or files inside directory outputs, as recorded (empty: all outputs).
    pub paths: Vec<String>,
    /// Directory the recorded paths are written under.
    pub to: PathBuf,
    /// Replace files that differ.
    pub force: bool,
    /// How to reach registries: when the kept copy is incomplete, the objects are pulled back
    /// from the outputs artifact recorded for the run (`repro outputs push`). `None`: local only.
    pub registry: Option<crate::capture::image::registry::RegistryOptions>,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placed {
    /// Written where nothing was.
    Written,
    /// Already there with the recorded contents; left alone.
    Unchanged,
    /// A different file was replaced (`--force`).
    Replaced,
}

/// One file written (or found in place).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GotFile {
    /// Where it is.
    pub path: PathBuf,
    /// The output it belongs to, as recorded.
    pub output: String,
    /// 64 hex; for a symlink, of its target string.
    pub sha256: String,
    pub bytes: u64,
    pub placed: Placed,
    /// A symbolic link (its target restored).
    pub symlink: bool,
}

/// The result of `repro get`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GetResult {
    pub files: Vec<GotFile>,
    /// Outputs left out because no copy is kept: (path, why).
    pub skipped: Vec<(String, String)>,
}

/// Why `repro get` could not do it; nothing is written in any of these cases, except
/// `Damaged`/`Write`, which stop before the file concerned (files already placed stay, each
/// whole and verified).
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("run {id} recorded no outputs")]
    NoOutputs { id: String },
    #[error("run {id} has no output {path:?} (its outputs: {known})")]
    NoSuchOutput {
        id: String,
        path: String,
        known: String,
    },
    #[error("output {path} of run {id} is not kept: {why}")]
    NotKept {
        id: String,
        path: String,
        why: String,
    },
    #[error("no output of run {id} is kept ({why})")]
    NothingKept { id: String, why: String },
    #[error("the kept copy of {path} (object {sha256}) is missing from {store}")]
    Missing {
        path: String,
        sha256: String,
        store: PathBuf,
    },
    #[error("the kept copy of {path} is damaged: object {sha256} no longer hashes to its name")]
    Damaged { path: String, sha256: String },
    #[error(
        "output {path} is recorded outside its run's directory; it cannot be placed under {to}"
    )]
    Unplaceable { path: String, to: PathBuf },
    #[error("{} file(s) exist with other contents: {}", paths.len(), list(paths))]
    WouldOverwrite { paths: Vec<PathBuf> },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let mut s: Vec<String> = paths
        .iter()
        .take(5)
        .map(|p| p.display().to_string())
        .collect();
    if paths.len() > 5 {
        s.push(format!("… {} more", paths.len() - 5));
    }
    s.join(", ")
}

impl Hinted for GetError {
    fn hint(&self) -> Option<String> {
        match self {
            GetError::Store(e) => e.hint(),
            GetError::Object(e) => e.hint(),
            GetError::NoOutputs { .. } => Some("only files named with `repro run --output PATH` are kept".into()),
            GetError::NoSuchOutput { .. } => Some("name an output as `repro show ID` lists it, or a file inside a directory output (DIR/file)".into()),
            GetError::NotKept { .. } | GetError::NothingKept { .. } => Some(
                "outputs are kept from the run on (config `keep_outputs`); if it was pushed, fetch it from where it went (the registry or MLflow); else re-run it: `repro rerun ID`".into(),
            ),
            GetError::Missing { .. } | GetError::Damaged { .. } => Some(
                "`repro verify --store` lists every damaged object; fetch the outputs from where they were pushed, or re-run: `repro rerun ID`".into(),
            ),
            GetError::Unplaceable { .. } => Some("name the output and a directory: `repro get ID PATH --to DIR` writes it as DIR/<its file name>".into()),
            GetError::WouldOverwrite { .. } => Some("add --force to replace them, or write elsewhere with --to DIR".into()),
            GetError::Write { .. } => Some("check the directory exists and is writable, or choose another with --to DIR".into()),
        }
    }
}

/// One file to place: where, what it should hold, and where the bytes are.
#[derive(Debug, Clone)]
struct Planned {
    dest: PathBuf,
    output: String,
    sha256: String,
    bytes: u64,
    symlink: bool,
}

/// Writes the run's kept outputs (all, or those named) under `req.to`.
pub fn get(ev: &dyn Events, store: &Store, req: &GetRequest) -> Result<GetResult, GetError> {
    let run = store.get_run(&req.id)?;
    let objects = Objects::beside(store.path());
    if run.outputs.is_empty() {
        return Err(GetError::NoOutputs { id: run.id });
    }
    // Objects fetched from the registry are held by the store's keep lock until they are recorded
    // and placed: a `repro gc` deleting meanwhile is waited for, one starting waits for this.
    let _keeping = req.registry.as_ref().and_then(|_| {
        let on_wait = &mut || ev.status("waiting for repro gc to finish deleting kept objects");
        objects
            .lock(crate::store::objects::LockMode::Keep, on_wait)
            .map_err(|e| ev.debug(&format!("object store lock: {}", crate::error::report(e))))
            .ok()
    });
    if let Some(opts) = &req.registry {
        // A registry that cannot give them back is said; what is still kept is placed anyway.
        match crate::ops::outputs::restore_missing(ev, store, opts.clone(), &run) {
            Ok(r) => {
                for (path, why) in &r.failed {
                    ev.warn(&format!("output {path} could not be fetched: {why}"));
                }
                if r.objects > 0 {
                    ev.status(&format!(
                        "fetched {} object(s), {} from {}",
                        r.objects,
                        crate::store::kept::human_bytes(r.bytes),
                        r.from.unwrap_or_default()
                    ));
                }
            }
            Err(e) => ev.warn(&format!(
                "the outputs could not be fetched from the registry: {}",
                crate::error::report(e)
            )),
        }
    }
    let mut result = GetResult::default();
    let mut plan = Vec::new();
    for (out, within) in select(&run, &req.paths)? {
        if out.kept != Some(true) {
            let why = not_kept_why(out);
            if !req.paths.is_empty() {
                return Err(GetError::NotKept {
                    id: run.id.clone(),
                    path: out.path.clone(),
                    why,
                });
            }
            result.skipped.push((out.path.clone(), why));
            continue;
        }
        plan.extend(plan_output(&objects, &run, out, within.as_deref(), req)?);
    }
    if plan.is_empty() {
        let why = result
            .skipped
            .iter()
            .map(|(p, w)| format!("{p}: {w}"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(GetError::NothingKept { id: run.id, why });
    }
    let mut conflicts = Vec::new();
    let mut placed = Vec::with_capacity(plan.len());
    for p in &plan {
        let state = present(p);
        if state == Some(false) && !req.force {
            conflicts.push(p.dest.clone());
        }
        placed.push(state);
    }
    if !conflicts.is_empty() {
        return Err(GetError::WouldOverwrite { paths: conflicts });
    }
    for (p, state) in plan.into_iter().zip(placed) {
        let how = match state {
            Some(true) => Placed::Unchanged,
            Some(false) => {
                write(&objects, &p)?;
                Placed::Replaced
            }
            None => {
                write(&objects, &p)?;
                Placed::Written
            }
        };
        ev.debug(&format!("{how:?}: {}", p.dest.display()));
        result.files.push(GotFile {
            path: p.dest,
            output: p.output,
            sha256: p.sha256,
            bytes: p.bytes,
            placed: how,
            symlink: p.symlink,
        });
    }
    Ok(result)
}

fn not_kept_why(out: &Output) -> String {
    match (&out.kept, &out.not_kept) {
        (_, Some(why)) => why.clone(),
        (None, None) => "recorded before outputs were kept".into(),
        _ => "not kept".into(),
    }
}

/// The outputs asked for, each with the path inside it when a file inside a directory output
/// was named.
fn select<'a>(
    run: &'a Run,
    paths: &[String],
) -> Result<Vec<(&'a Output, Option<String>)>, GetError> {
    if paths.is_empty() {
        return Ok(run.outputs.iter().map(|o| (o, None)).collect());
    }
    let norm = |s: &str| s.trim_start_matches("./").trim_end_matches('/').to_string();
    let mut out = Vec::new();
    for want in paths {
        let w = norm(want);
        let found = run.outputs.iter().find_map(|o| {
            let p = norm(&o.path);
            if p == w {
                Some((o, None))
            } else {
                w.strip_prefix(&format!("{p}/"))
                    .filter(|_| {
                        o.sha256
                            .as_deref()
                            .is_some_and(|d| d.starts_with("sha256:"))
                    })
                    .map(|rest| (o, Some(rest.to_string())))
            }
        });
        match found {
            Some(f) => out.push(f),
            None => {
                return Err(GetError::NoSuchOutput {
                    id: run.id.clone(),
                    path: want.clone(),
                    known: run
                        .outputs
                        .iter()
                        .map(|o| o.path.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
    }
    Ok(out)
}

/// Where a recorded output path goes under `to`: relative paths as they are, absolute ones
/// below `to` too; a path that climbs out (`..`) cannot be placed.
fn destination(to: &Path, recorded: &str) -> Option<PathBuf> {
    // Under the current directory, the recorded path as it is (`model.json`, not `./model.json`).
    let mut dest = if to == Path::new(".") {
        PathBuf::new()
    } else {
        to.to_path_buf()
    };
    let start = dest.clone();
    for c in Path::new(recorded).components() {
        match c {
            Component::Normal(n) => dest.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (dest != start).then_some(dest)
}

fn plan_output(
    objects: &Objects,
    run: &Run,
    out: &Output,
    within: Option<&str>,
    req: &GetRequest,
) -> Result<Vec<Planned>, GetError> {
    let digest = out.sha256.clone().unwrap_or_default();
    let dest = match (destination(&req.to, &out.path), req.paths.len() == 1) {
        (Some(d), _) => d,
        // One output named: it can go under its file name.
        (None, true) => match Path::new(&out.path).file_name() {
            Some(n) => req.to.join(n),
            None => return Err(unplaceable(out, req)),
        },
        (None, false) => return Err(unplaceable(out, req)),
    };
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Ok(vec![Planned {
            dest,
            output: out.path.clone(),
            sha256: digest,
            bytes: out.bytes.unwrap_or(0),
            symlink: false,
        }]);
    };
    let missing = || GetError::Missing {
        path: out.path.clone(),
        sha256: hex.to_string(),
        store: objects.root().to_path_buf(),
    };
    let manifest = objects.read(hex)?.ok_or_else(missing)?;
    let entries = kept::parse_manifest(&manifest).ok_or_else(|| GetError::Damaged {
        path: out.path.clone(),
        sha256: hex.to_string(),
    })?;
    let mut plan = Vec::new();
    for e in entries {
        let rel = e.rel();
        if let Some(w) = within {
            let w = w.as_bytes();
            let inside = rel == w || (rel.starts_with(w) && rel.get(w.len()) == Some(&b'/'));
            if !inside {
                continue;
            }
        }
        let (sha256, bytes, symlink) = match &e {
            ManifestEntry::File { sha256, bytes, .. } => (sha256.clone(), *bytes, false),
            ManifestEntry::Symlink { sha256, .. } => (sha256.clone(), 0, true),
        };
        plan.push(Planned {
            dest: kept::under(&dest, rel),
            output: out.path.clone(),
            sha256,
            bytes,
            symlink,
        });
    }
    if plan.is_empty() {
        return Err(GetError::NoSuchOutput {
            id: run.id.clone(),
            path: format!("{}/{}", out.path, within.unwrap_or("")),
            known: out.path.clone(),
        });
    }
    Ok(plan)
}

fn unplaceable(out: &Output, req: &GetRequest) -> GetError {
    GetError::Unplaceable {
        path: out.path.clone(),
        to: req.to.clone(),
    }
}

/// `None`: nothing there; `Some(true)`: the recorded contents are there; `Some(false)`:
/// something else is.
fn present(p: &Planned) -> Option<bool> {
    let meta = fs::symlink_metadata(&p.dest).ok()?;
    if p.symlink {
        let target = fs::read_link(&p.dest).ok();
        return Some(
            target.is_some_and(|t| kept::sha256_hex(t.as_os_str().as_bytes()) == p.sha256),
        );
    }
    if !meta.is_file() {
        return Some(false);
    }
    let same = File::open(&p.dest)
        .and_then(|f| objects::hash_reader(&f))
        .is_ok_and(|(sha, n)| n == p.bytes && hex::encode(sha) == p.sha256);
    Some(same)
}

/// Places one file: copied from its object to a temporary name beside the destination,
/// checked against the recorded digest, renamed over the destination.
fn write(objects: &Objects, p: &Planned) -> Result<(), GetError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GetError::Write { path, source }
    };
    let dir = p.dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(werr(dir))?;
    let name = p.dest.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.repro-get.{}.tmp",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let missing = || GetError::Missing {
        path: p.output.clone(),
        sha256: p.sha256.clone(),
        store: objects.root().to_path_buf(),
    };
    if p.symlink {
        let target = objects.read(&p.sha256)?.ok_or_else(missing)?;
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &tmp)
            .map_err(werr(&tmp))?;
        return fs::rename(&tmp, &p.dest).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            GetError::Write {
                path: p.dest.clone(),
                source: e,
            }
        });
    }
    let src = match File::open(objects.path_of(&p.sha256)?) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(source) => {
            return Err(GetError::Object(ObjectError::Read {
                path: objects.path_of(&p.sha256)?,
                source,
            }))
        }
    };
    let dst = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(werr(&tmp))?;
    let copied = objects::copy_hashing(&src, &dst, p.bytes);
    drop(dst);
    let fail = |e: GetError| {
        let _ = fs::remove_file(&tmp);
        e
    };
    let c = copied.map_err(|e| {
        fail(match e {
            objects::CopyError::Read(source) => GetError::Object(ObjectError::Read {
                path: objects.path_of(&p.sha256).unwrap_or_default(),
                source,
            }),
            objects::CopyError::Write(source) => GetError::Write {
                path: p.dest.clone(),
                source,
            },
        })
    })?;
    if hex::encode(c.sha256) != p.sha256 || c.bytes != p.bytes {
        return Err(fail(GetError::Damaged {
            path: p.output.clone(),
            sha256: p.sha256.clone(),
        }));
    }
    fs::rename(&tmp, &p.dest).map_err(|e| {
        fail(GetError::Write {
            path: p.dest.clone(),
            source: e,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_stay_under_the_directory() {
        let to = Path::new("/out");
        assert_eq!(
            destination(to, "model.json"),
            Some("/out/model.json".into())
        );
        assert_eq!(destination(to, "./a/b"), Some("/out/a/b".into()));
        assert_eq!(destination(to, "/abs/m"), Some("/out/abs/m".into()));
        assert_eq!(destination(to, "../m"), None);
        assert_eq!(destination(to, "a/../../m"), None);
        assert_eq!(destination(to, "."), None);
        assert_eq!(destination(Path::new("."), "m.json"), Some("m.json".into()));
    }
}
