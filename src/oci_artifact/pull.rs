//! Pulling an artifact: its manifest by tag or digest, then every layer streamed to a temporary
//! file beside its target and verified (digest and size) while written; the files are renamed
//! into place only when every layer verified, so a bad layer leaves nothing behind.

use std::path::{Component, Path, PathBuf};

use super::manifest::{self, Descriptor, ImageManifest};
use super::ArtifactError;
use crate::capture::image::digest::Digest;
use crate::capture::image::reference::Reference;
use crate::capture::image::registry::{RegistryClient, RegistryError};

/// What to pull, and where.
#[derive(Debug, Clone)]
pub struct PullSpec {
    /// The repository (its own tag and digest are ignored).
    pub repository: Reference,
    /// A tag or a `sha256:` digest.
    pub reference: String,
    /// The directory the layers are written under, at their titles (created when missing).
    pub dir: PathBuf,
    /// The largest layer accepted: checked on the descriptor, then on the bytes streamed.
    pub max_layer_bytes: u64,
    /// Replace existing files; without, an existing file is an error before anything is fetched.
    pub overwrite: bool,
}

/// One file written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledFile {
    pub title: String,
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

/// A pulled artifact.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The manifest's digest (its body hash, checked against what the registry said).
    pub digest: Digest,
    pub manifest: ImageManifest,
    pub files: Vec<PulledFile>,
}

/// The manifest `reference` (a tag or a digest) of `repo`, parsed as an image manifest.
pub fn fetch_manifest(
    client: &RegistryClient,
    repo: &Reference,
    reference: &str,
) -> Result<(Digest, ImageManifest), ArtifactError> {
    let (at, raw) = if reference.contains(':') {
        let d = Digest::parse(reference).map_err(|e| {
            ArtifactError::invalid(&repo.name(), format!("digest {reference:?}: {e}"))
        })?;
        (
            format!("{}@{d}", repo.name()),
            client.manifest_by_digest(repo, &d)?,
        )
    } else {
        (
            format!("{}:{reference}", repo.name()),
            client.manifest_by_tag(repo, reference)?,
        )
    };
    let Some(raw) = raw else {
        return Err(ArtifactError::NotFound { reference: at });
    };
    let m = manifest::parse_manifest(&raw.body, &raw.media_type)
        .map_err(|p| ArtifactError::invalid(&at, p))?;
    Ok((raw.digest, m))
}

/// A layer's bytes in memory (an attestation envelope), at most `limit` bytes, verified.
pub fn fetch_blob(
    client: &RegistryClient,
    repo: &Reference,
    layer: &Descriptor,
    limit: u64,
) -> Result<Vec<u8>, ArtifactError> {
    let reference = repo.name();
    let title = layer.title().unwrap_or(&layer.digest).to_string();
    if layer.size > limit {
        return Err(ArtifactError::LayerTooLarge {
            reference,
            title,
            size: layer.size,
            limit,
        });
    }
    let digest =
        manifest::sha256_digest(layer).map_err(|p| ArtifactError::invalid(&reference, p))?;
    let mut out = Vec::with_capacity(layer.size as usize);
    client
        .blob_to(repo, &digest, Some(layer.size), &mut out)
        .map_err(|e| layer_error(e, &reference, &title, &digest))?;
    Ok(out)
}

/// A layer's bytes streamed into a new file `dest` (which must not exist), verified; on any
/// error the file is removed. Returns the byte count.
pub fn fetch_blob_to(
    client: &RegistryClient,
    repo: &Reference,
    layer: &Descriptor,
    dest: &Path,
) -> Result<u64, ArtifactError> {
    let reference = repo.name();
    let title = layer.title().unwrap_or(&layer.digest).to_string();
    let digest =
        manifest::sha256_digest(layer).map_err(|p| ArtifactError::invalid(&reference, p))?;
    let werr = |source| ArtifactError::Write {
        path: dest.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(werr)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let res = client
        .blob_to(repo, &digest, Some(layer.size), &mut w)
        .map_err(|e| layer_error(e, &reference, &title, &digest))
        .and_then(|n| {
            let f = w.into_inner().map_err(|e| werr(e.into_error()))?;
            f.sync_all().map_err(werr)?;
            Ok(n)
        });
    if res.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    res
}

/// A mismatch of a layer's bytes names the layer; anything else stays a registry error.
fn layer_error(e: RegistryError, reference: &str, title: &str, digest: &Digest) -> ArtifactError {
    match e {
        RegistryError::DigestMismatch { .. } | RegistryError::BadManifest { .. } => {
            ArtifactError::Layer {
                reference: reference.to_string(),
                title: title.to_string(),
                digest: digest.to_string(),
                source: Box::new(e),
            }
        }
        e => ArtifactError::Registry(e),
    }
}

/// One layer to write: its title, digest, size and target path.
struct Planned {
    title: String,
    digest: Digest,
    size: u64,
    target: PathBuf,
}

/// What a pull created so far, undone when it fails.
#[derive(Default)]
struct Undo {
    dirs: Vec<PathBuf>,
    temps: Vec<PathBuf>,
}

impl Undo {
    fn rollback(&self) {
        for t in &self.temps {
            let _ = std::fs::remove_file(t);
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Pulls the artifact into `spec.dir`: every title validated (relative, no `..`, no clash) and
/// every size checked before anything is fetched; each layer streamed to a temporary file and
/// verified; then all renamed into place. On error nothing new is left in the directory.
pub fn pull(client: &RegistryClient, spec: &PullSpec) -> Result<Pulled, ArtifactError> {
    let repo = &spec.repository;
    let (digest, m) = fetch_manifest(client, repo, &spec.reference)?;
    let at = format!("{}@{digest}", repo.name());
    let plan = plan(&m, spec, &at)?;
    std::fs::create_dir_all(&spec.dir).map_err(|source| ArtifactError::Write {
        path: spec.dir.clone(),
        source,
    })?;
    let mut undo = Undo::default();
    match fetch_all(client, spec, &plan, &at, &mut undo) {
        Ok(temps) => {
            for (temp, p) in temps.iter().zip(&plan) {
                if let Err(source) = std::fs::rename(temp, &p.target) {
                    undo.rollback();
                    return Err(ArtifactError::Write {
                        path: p.target.clone(),
                        source,
                    });
                }
            }
        }
        Err(e) => {
            undo.rollback();
            return Err(e);
        }
    }
    let files = plan
        .into_iter()
        .map(|p| PulledFile {
            title: p.title,
            path: p.target,
            digest: p.digest,
            size: p.size,
        })
        .collect();
    Ok(Pulled {
        digest,
        manifest: m,
        files,
    })
}

/// The layers' targets, refusing an untitled, oversized or escaping layer, clashing titles, and
/// (without `overwrite`) a file already there.
fn plan(m: &ImageManifest, spec: &PullSpec, at: &str) -> Result<Vec<Planned>, ArtifactError> {
    let mut titles = Vec::with_capacity(m.layers.len());
    for (i, l) in m.layers.iter().enumerate() {
        let Some(t) = l.title() else {
            return Err(ArtifactError::invalid(
                at,
                format!(
                    "layer {} ({}) has no {} annotation",
                    i + 1,
                    l.digest,
                    manifest::TITLE
                ),
            ));
        };
        titles.push(t);
    }
    super::check_titles(titles.iter().copied())?;
    let mut out = Vec::with_capacity(titles.len());
    for (l, title) in m.layers.iter().zip(titles) {
        if l.size > spec.max_layer_bytes {
            return Err(ArtifactError::LayerTooLarge {
                reference: at.to_string(),
                title: title.to_string(),
                size: l.size,
                limit: spec.max_layer_bytes,
            });
        }
        let digest = manifest::sha256_digest(l).map_err(|p| ArtifactError::invalid(at, p))?;
        let target = spec.dir.join(title);
        // A validated title has only normal components; this is the belt to its braces.
        debug_assert!(Path::new(title)
            .components()
            .all(|c| matches!(c, Component::Normal(_))));
        if !spec.overwrite && std::fs::symlink_metadata(&target).is_ok() {
            return Err(ArtifactError::Exists { path: target });
        }
        out.push(Planned {
            title: title.to_string(),
            digest,
            size: l.size,
            target,
        });
    }
    Ok(out)
}

/// Streams every layer to a temporary file beside its target; returns the temporary paths.
fn fetch_all(
    client: &RegistryClient,
    spec: &PullSpec,
    plan: &[Planned],
    at: &str,
    undo: &mut Undo,
) -> Result<Vec<PathBuf>, ArtifactError> {
    let mut temps = Vec::with_capacity(plan.len());
    for (i, p) in plan.iter().enumerate() {
        let parent = p.target.parent().unwrap_or(&spec.dir).to_path_buf();
        make_dirs(&spec.dir, &parent, undo)?;
        let temp = parent.join(format!(".repro-pull-{}-{i}", std::process::id()));
        let werr = |source| ArtifactError::Write {
            path: temp.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(werr)?;
        undo.temps.push(temp.clone());
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        client
            .blob_to(&spec.repository, &p.digest, Some(p.size), &mut w)
            .map_err(|e| layer_error(e, at, &p.title, &p.digest))?;
        let file = w.into_inner().map_err(|e| werr(e.into_error()))?;
        file.sync_all().map_err(werr)?;
        temps.push(temp);
    }
    Ok(temps)
}

/// Creates the directories from `base` down to `dir`, refusing a component that exists as a
/// symbolic link or a file (a link would let a title write outside `base`).
fn make_dirs(base: &Path, dir: &Path, undo: &mut Undo) -> Result<(), ArtifactError> {
    let rel = dir.strip_prefix(base).unwrap_or(Path::new(""));
    let mut cur = base.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(ArtifactError::NotADirectory { path: cur }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur).map_err(|source| ArtifactError::Write {
                    path: cur.clone(),
                    source,
                })?;
                undo.dirs.push(cur.clone());
            }
            Err(source) => return Err(ArtifactError::Write { path: cur, source }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_through_a_symlink_are_refused_and_created_ones_undone() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("out");
        std::fs::create_dir(&base).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, base.join("link")).unwrap();
        let mut undo = Undo::default();
        let e = make_dirs(&base, &base.join("link/x"), &mut undo).unwrap_err();
        assert!(matches!(e, ArtifactError::NotADirectory { .. }), "{e}");
        assert!(!outside.join("x").exists());
        make_dirs(&base, &base.join("a/b"), &mut undo).unwrap();
        assert!(base.join("a/b").is_dir());
        undo.rollback();
        assert!(!base.join("a").exists());
        assert!(base.exists());
    }
}
