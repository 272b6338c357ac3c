//! `repro outputs push`: a run's kept outputs as one OCI artifact in a registry (one layer per
//! file, titled with its output path), recorded with the run; and [`restore_missing`]: the
//! objects `repro get` needs, pulled back from that artifact into the object store when the
//! local copy is gone (docs/outputs.md).

use std::collections::BTreeMap;
use std::path::{Component, Path};

use crate::capture::dataset::manifest as dirmanifest;
use crate::capture::image::digest::Digest;
use crate::capture::image::reference::{self, Reference};
use crate::capture::image::registry::{RegistryClient, RegistryError, RegistryOptions};
use crate::error::Hinted;
use crate::oci_artifact::{
    self, manifest::Descriptor, ArtifactError, LayerSource, LayerSpec, PushSpec, SubjectOutcome,
};
use crate::ops::Events;
use crate::record::{Output, ResolvedBy, Run};
use crate::store::artifacts::{ArtifactKind, RunArtifact};
use crate::store::kept::{self, ManifestEntry};
use crate::store::objects::{ObjectError, Objects};
use crate::store::{Store, StoreError};

/// The `artifactType` of a run's outputs.
pub const OUTPUTS_ARTIFACT_TYPE: &str = "application/vnd.dev.repro.outputs.v1";
/// The media type of a layer holding a symbolic link's target (inside a directory output).
pub const SYMLINK_MEDIA_TYPE: &str = "application/vnd.dev.repro.symlink.v1";
/// The annotation naming the run.
pub const RUN_ID_ANNOTATION: &str = "dev.repro.run.id";
const REVISION_ANNOTATION: &str = "org.opencontainers.image.revision";
const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// What can go wrong pushing or restoring outputs.
#[derive(Debug, thiserror::Error)]
pub enum OutputsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("--to {}: {problem}", crate::sanitize::escape(to))]
    Destination { to: String, problem: String },
    #[error("run {id} recorded no outputs")]
    NoOutputs { id: String },
    #[error("no output of run {id} is kept, nothing to push ({why})")]
    NothingKept { id: String, why: String },
    #[error("the kept copy of output {path} (object {sha256}) is missing from {}", store.display())]
    Missing {
        path: String,
        sha256: String,
        store: std::path::PathBuf,
    },
    #[error(
        "output {} cannot be a layer title: {problem}",
        crate::sanitize::escape(path)
    )]
    Untitled { path: String, problem: String },
    #[error("the artifact {reference} does not hold output {path} as recorded: {problem}")]
    Mismatch {
        reference: String,
        path: String,
        problem: String,
    },
}

impl Hinted for OutputsError {
    fn hint(&self) -> Option<String> {
        match self {
            OutputsError::Store(e) => e.hint(),
            OutputsError::Object(e) => e.hint(),
            OutputsError::Artifact(e) => e.hint(),
            OutputsError::Registry(e) => e.hint(),
            OutputsError::Destination { .. } => Some(
                "write --to HOST[:PORT]/REPOSITORY[:TAG], e.g. registry.example.com/team/models:resnet-v3".into(),
            ),
            OutputsError::NoOutputs { .. } => Some("only files named with `repro run --output PATH` are kept and pushed".into()),
            OutputsError::NothingKept { .. } => Some(
                "outputs are kept from the run on (config `keep_outputs`, `keep_outputs_max`); re-run it to keep them: `repro rerun ID`".into(),
            ),
            OutputsError::Missing { .. } => Some(
                "`repro verify --store` lists damaged objects; get the outputs back from where they were pushed, or re-run: `repro rerun ID`".into(),
            ),
            OutputsError::Untitled { .. } => Some(
                "a layer title is a relative UTF-8 path; outputs outside the run's directory (`..`) or with non-UTF-8 names cannot be pushed".into(),
            ),
            OutputsError::Mismatch { .. } => Some(
                "the artifact was changed after the push (same tag pushed again?); push the outputs again from a machine that keeps them".into(),
            ),
        }
    }
}

/// What `repro outputs push` is asked for.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// The run (resolved id).
    pub id: String,
    /// `HOST[:PORT]/REPOSITORY[:TAG]`; without a tag, the run id is the tag.
    pub to: String,
}

/// A pushed outputs artifact.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutputsPushed {
    pub run_id: String,
    /// `HOST/REPO:TAG` as pushed.
    pub reference: String,
    /// `HOST/REPO@sha256:…`.
    pub pinned: String,
    pub digest: String,
    /// Files (layers) and their bytes.
    pub files: usize,
    pub bytes: u64,
    /// Layers uploaded, and layers the registry had already.
    pub uploaded: usize,
    pub present: usize,
    /// The image manifest named as `subject`, when it is in the target repository.
    pub subject: Option<String>,
    /// Why there is no subject, when there is none.
    pub no_subject: Option<String>,
    /// Outputs not pushed: (path, why).
    pub skipped: Vec<(String, String)>,
}

/// The repository and tag of `--to`.
fn destination(to: &str, run_id: &str) -> Result<(Reference, String), OutputsError> {
    let bad = |problem: String| OutputsError::Destination {
        to: to.to_string(),
        problem,
    };
    let r = reference::parse_normalized(to).map_err(|e| bad(e.to_string()))?;
    if r.digest.is_some() {
        return Err(bad(
            "a digest cannot be pushed to; give a tag or none".into()
        ));
    }
    let tag = r.tag.clone().unwrap_or_else(|| run_id.to_string());
    Ok((
        Reference {
            tag: None,
            digest: None,
            ..r
        },
        tag,
    ))
}

/// An output's path as a title: relative, `/`-separated, no `..` (absolute paths lose their
/// root, as `repro get` places them).
fn title_of(path: &str) -> Result<String, OutputsError> {
    let untitled = |problem: &str| OutputsError::Untitled {
        path: path.to_string(),
        problem: problem.to_string(),
    };
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => parts.push(
                n.to_str()
                    .ok_or_else(|| untitled("the path is not UTF-8"))?
                    .to_string(),
            ),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(untitled("it climbs out of the run's directory (`..`)"))
            }
        }
    }
    if parts.is_empty() {
        return Err(untitled("it names no file"));
    }
    Ok(parts.join("/"))
}

/// A layer for a kept object: the object's file, its digest known from its name.
fn object_layer(
    objects: &Objects,
    out: &Output,
    sha256: &str,
    bytes: u64,
    title: String,
    media_type: Option<&str>,
) -> Result<LayerSpec, OutputsError> {
    let path = objects.path_of(sha256)?;
    if !path.is_file() {
        return Err(OutputsError::Missing {
            path: out.path.clone(),
            sha256: sha256.to_string(),
            store: objects.root().to_path_buf(),
        });
    }
    let digest = Digest::parse(&format!("sha256:{sha256}"))
        .expect("an object name (checked by path_of) is a sha256 digest");
    Ok(LayerSpec {
        source: LayerSource::File(path),
        title,
        media_type: media_type.map(str::to_string),
        annotations: BTreeMap::new(),
        known: Some((digest, bytes)),
    })
}

/// The layers of one kept output: a file as one layer titled with its path; a directory as
/// one layer per file (and per symlink, its target) titled `DIR/rel/path`.
fn output_layers(objects: &Objects, out: &Output) -> Result<Vec<LayerSpec>, OutputsError> {
    let title = title_of(&out.path)?;
    let digest = out.sha256.clone().unwrap_or_default();
    let Some(mhex) = digest.strip_prefix("sha256:") else {
        return Ok(vec![object_layer(
            objects,
            out,
            &digest,
            out.bytes.unwrap_or(0),
            title,
            None,
        )?]);
    };
    let missing = || OutputsError::Missing {
        path: out.path.clone(),
        sha256: mhex.to_string(),
        store: objects.root().to_path_buf(),
    };
    let text = objects.read(mhex)?.ok_or_else(missing)?;
    let entries = kept::parse_manifest(&text).ok_or_else(missing)?;
    let mut layers = Vec::with_capacity(entries.len());
    for e in entries {
        let rel = std::str::from_utf8(e.rel()).map_err(|_| OutputsError::Untitled {
            path: format!("{}/{}", out.path, String::from_utf8_lossy(e.rel())),
            problem: "the path is not UTF-8".into(),
        })?;
        let t = format!("{title}/{rel}");
        layers.push(match &e {
            ManifestEntry::File { sha256, bytes, .. } => {
                object_layer(objects, out, sha256, *bytes, t, None)?
            }
            ManifestEntry::Symlink { sha256, .. } => {
                let n = std::fs::metadata(objects.path_of(sha256)?).map_or(0, |m| m.len());
                object_layer(objects, out, sha256, n, t, Some(SYMLINK_MEDIA_TYPE))?
            }
        });
    }
    Ok(layers)
}

/// The run's image manifest as `subject` when the target repository has it (a referrer lives
/// in its subject's repository); else why not.
fn subject_for(
    client: &RegistryClient,
    run: &Run,
    repo: &Reference,
) -> Result<(Option<Descriptor>, Option<String>), OutputsError> {
    let Some(image) = run.image.as_ref() else {
        return Ok((None, Some("the run has no image".into())));
    };
    let digest = match (&image.digest, image.resolved_by) {
        (Some(d), by) if by != ResolvedBy::Unpinned => d,
        _ => {
            return Ok((
                None,
                Some("the run's image was never pinned to a digest".into()),
            ))
        }
    };
    let Ok(digest) = Digest::parse(digest) else {
        return Ok((
            None,
            Some(format!("the recorded digest {digest} is not valid")),
        ));
    };
    match oci_artifact::subject_descriptor(client, repo, &digest)? {
        Some(d) => Ok((Some(d), None)),
        None => Ok((
            None,
            Some(format!(
                "the run's image {digest} is not in {}, so it cannot be the subject there",
                repo.name()
            )),
        )),
    }
}

/// Pushes the run's kept outputs as one artifact to `req.to` and records it with the run.
/// Outputs not kept are left out (and listed); none kept is an error saying which and why.
pub fn push(
    ev: &dyn Events,
    store: &mut Store,
    opts: RegistryOptions,
    req: &PushRequest,
) -> Result<OutputsPushed, OutputsError> {
    let run = store.get_run(&req.id)?;
    if run.outputs.is_empty() {
        return Err(OutputsError::NoOutputs { id: run.id });
    }
    let (repo, tag) = destination(&req.to, &run.id)?;
    let objects = Objects::beside(store.path());
    let (mut layers, mut skipped) = (Vec::new(), Vec::new());
    for out in &run.outputs {
        if out.kept == Some(true) {
            layers.extend(output_layers(&objects, out)?);
        } else {
            skipped.push((out.path.clone(), not_kept_why(out)));
        }
    }
    if layers.is_empty() {
        let why = if skipped.is_empty() {
            "its kept outputs are empty directories".to_string()
        } else {
            skipped
                .iter()
                .map(|(p, w)| format!("{p}: {w}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(OutputsError::NothingKept { id: run.id, why });
    }
    let client = RegistryClient::new(opts)?;
    let (subject, no_subject) = subject_for(&client, &run, &repo)?;
    let mut annotations = BTreeMap::new();
    annotations.insert(RUN_ID_ANNOTATION.to_string(), run.id.clone());
    if let Some(commit) = run.code.as_ref().and_then(|c| c.commit.clone()) {
        annotations.insert(REVISION_ANNOTATION.to_string(), commit);
    }
    let now = crate::capture::host::rfc3339(crate::capture::host::now());
    annotations.insert(CREATED_ANNOTATION.to_string(), now.clone());
    let pushed = oci_artifact::push(
        &client,
        &PushSpec {
            repository: repo.clone(),
            tag: Some(tag.clone()),
            artifact_type: OUTPUTS_ARTIFACT_TYPE.into(),
            layers,
            annotations,
            subject,
        },
    )?;
    let no_subject = match &pushed.subject {
        SubjectOutcome::Dropped { why } => Some(format!("the registry refused it: {why}")),
        _ => no_subject,
    };
    let reference = format!("{}:{tag}", repo.name());
    let record = RunArtifact {
        run_id: run.id.clone(),
        kind: ArtifactKind::Outputs,
        reference: reference.clone(),
        digest: pushed.digest.to_string(),
        pushed_at: now,
    };
    // The artifact is in the registry; a record that fails to write is said, not fatal.
    if let Err(e) = store.record_artifact(&record) {
        ev.warn(&format!(
            "the push was not recorded with run {}: {}",
            run.id,
            crate::error::report(e)
        ));
    }
    Ok(OutputsPushed {
        run_id: run.id,
        reference,
        pinned: pushed.reference,
        digest: pushed.digest.to_string(),
        files: pushed.manifest.layers.len(),
        bytes: pushed.manifest.layers.iter().map(|l| l.size).sum(),
        uploaded: pushed.uploaded,
        present: pushed.present,
        subject: pushed.manifest.subject.map(|s| s.digest),
        no_subject,
        skipped,
    })
}

fn not_kept_why(out: &Output) -> String {
    match (&out.kept, &out.not_kept) {
        (_, Some(why)) => why.clone(),
        (None, None) => "recorded before outputs were kept".into(),
        _ => "not kept".into(),
    }
}

/// What [`restore_missing`] brought back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// The artifact read (`HOST/REPO:TAG@sha256:…`), when one was.
    pub from: Option<String>,
    /// Objects written into the store, and their bytes.
    pub objects: usize,
    pub bytes: u64,
    /// Outputs that could not be restored, each with why (the others were).
    pub failed: Vec<(String, String)>,
}

/// Puts back into the object store every object the run's kept outputs need that is missing,
/// from the newest outputs artifact recorded for the run (its manifest fetched by the recorded
/// digest; every blob verified; a directory's manifest rebuilt from the artifact's titles and
/// checked against the recorded digest). Nothing missing, or no artifact recorded: nothing done.
/// An output that cannot be restored is listed in `failed`; the error is for the artifact.
pub fn restore_missing(
    ev: &dyn Events,
    store: &Store,
    opts: RegistryOptions,
    run: &Run,
) -> Result<Restored, OutputsError> {
    // The recorded artifact first (one indexed query), the objects' presence only then: a run
    // never pushed costs `repro get` nothing.
    let Some(artifact) = store
        .artifacts(&run.id, Some(ArtifactKind::Outputs))?
        .into_iter()
        .next()
    else {
        return Ok(Restored::default());
    };
    let objects = Objects::beside(store.path());
    let kept: Vec<&Output> = run
        .outputs
        .iter()
        .filter(|o| o.kept == Some(true))
        .collect();
    if kept.iter().all(|o| complete(&objects, o)) {
        return Ok(Restored::default());
    }
    let from = format!("{}@{}", artifact.reference, artifact.digest);
    ev.status(&format!(
        "the kept copy of run {}'s outputs is incomplete; fetching them from {from}",
        run.id
    ));
    let bad_ref = |problem: String| OutputsError::Destination {
        to: artifact.reference.clone(),
        problem,
    };
    let r = reference::parse_normalized(&artifact.reference).map_err(|e| bad_ref(e.to_string()))?;
    let repo = Reference {
        tag: None,
        digest: None,
        ..r
    };
    let client = RegistryClient::new(opts)?;
    let (_, m) = oci_artifact::fetch_manifest(&client, &repo, &artifact.digest)?;
    let mut done = Restored {
        from: Some(from.clone()),
        ..Restored::default()
    };
    for out in kept {
        // One output that cannot come back does not keep the others from coming back.
        if let Err(e) = restore_output(&client, &repo, &objects, &m.layers, out, &from, &mut done) {
            done.failed
                .push((out.path.clone(), crate::error::report(e)));
        }
    }
    Ok(done)
}

/// Whether every object an output needs is present.
fn complete(objects: &Objects, out: &Output) -> bool {
    let digest = out.sha256.as_deref().unwrap_or_default();
    let Some(mhex) = digest.strip_prefix("sha256:") else {
        return objects.contains(digest);
    };
    let Ok(Some(text)) = objects.read(mhex) else {
        return false;
    };
    kept::parse_manifest(&text).is_some_and(|entries| {
        entries.iter().all(|e| match e {
            ManifestEntry::File { sha256, .. } | ManifestEntry::Symlink { sha256, .. } => {
                objects.contains(sha256)
            }
        })
    })
}

/// Restores one output's objects from the artifact's layers.
fn restore_output(
    client: &RegistryClient,
    repo: &Reference,
    objects: &Objects,
    layers: &[Descriptor],
    out: &Output,
    from: &str,
    done: &mut Restored,
) -> Result<(), OutputsError> {
    let mismatch = |problem: String| OutputsError::Mismatch {
        reference: from.to_string(),
        path: out.path.clone(),
        problem,
    };
    let digest = out.sha256.as_deref().unwrap_or_default();
    let Some(mhex) = digest.strip_prefix("sha256:") else {
        let want = format!("sha256:{digest}");
        let layer = layers
            .iter()
            .find(|l| l.digest == want)
            .ok_or_else(|| mismatch(format!("no layer has its digest {want}")))?;
        return fetch_object(client, repo, objects, layer, digest, done);
    };
    let title = title_of(&out.path)?;
    if objects.read(mhex)?.is_none() {
        let text = rebuild_manifest(layers, &title);
        if kept::sha256_hex(&text) != mhex {
            return Err(mismatch(format!(
                "its files under {title}/ do not add up to the recorded digest sha256:{mhex}"
            )));
        }
        objects.store_bytes(&text)?;
    }
    let text = objects.read(mhex)?.unwrap_or_default();
    for e in kept::parse_manifest(&text).unwrap_or_default() {
        let sha = match &e {
            ManifestEntry::File { sha256, .. } | ManifestEntry::Symlink { sha256, .. } => sha256,
        };
        if objects.contains(sha) {
            continue;
        }
        let want = format!("sha256:{sha}");
        let layer = layers
            .iter()
            .find(|l| l.digest == want)
            .ok_or_else(|| mismatch(format!("no layer has the digest {want}")))?;
        fetch_object(client, repo, objects, layer, sha, done)?;
    }
    Ok(())
}

/// The canonical manifest of a directory output from the layers titled `DIR/…`: files and
/// symlinks (their target's digest), sorted by path bytes, as the object store wrote it.
fn rebuild_manifest(layers: &[Descriptor], dir: &str) -> Vec<u8> {
    let prefix = format!("{dir}/");
    let mut entries: Vec<(&[u8], &Descriptor)> = layers
        .iter()
        .filter_map(|l| {
            let rel = l.title()?.strip_prefix(&prefix)?;
            Some((rel.as_bytes(), l))
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut text = Vec::new();
    for (rel, l) in entries {
        let mut sha = [0u8; 32];
        let hexpart = l.digest.strip_prefix("sha256:").unwrap_or_default();
        if hex::decode_to_slice(hexpart, &mut sha).is_err() {
            continue;
        }
        if l.media_type == SYMLINK_MEDIA_TYPE {
            dirmanifest::symlink_line(&mut text, &sha, rel);
        } else {
            dirmanifest::file_line(&mut text, &sha, l.size, rel);
        }
    }
    text
}

/// One blob streamed to a temporary file in the store (verified while written), then stored
/// as the object `sha256` by the store's own copy.
fn fetch_object(
    client: &RegistryClient,
    repo: &Reference,
    objects: &Objects,
    layer: &Descriptor,
    sha256: &str,
    done: &mut Restored,
) -> Result<(), OutputsError> {
    let tmp_dir = objects.root().join("tmp");
    std::fs::create_dir_all(&tmp_dir).map_err(|source| ObjectError::Write {
        path: tmp_dir.clone(),
        source,
    })?;
    let tmp = tmp_dir.join(format!("restore-{}-{sha256}.part", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let n = oci_artifact::fetch_blob_to(client, repo, layer, &tmp)?;
    let stored = objects.store_file(&tmp);
    let _ = std::fs::remove_file(&tmp);
    let stored = stored?;
    debug_assert_eq!(stored.sha256, sha256);
    done.objects += 1;
    done.bytes += n;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths_become_relative_titles() {
        assert_eq!(title_of("model.bin").unwrap(), "model.bin");
        assert_eq!(title_of("./out/m.bin").unwrap(), "out/m.bin");
        assert_eq!(title_of("/abs/m").unwrap(), "abs/m");
        assert_eq!(title_of("out/").unwrap(), "out");
        assert!(title_of("../m").is_err());
        assert!(title_of(".").is_err());
    }

    #[test]
    fn the_tag_defaults_to_the_run_id_and_digests_are_refused() {
        let (r, tag) = destination("127.0.0.1:5000/team/out", "01abc").unwrap();
        assert_eq!(r.name(), "127.0.0.1:5000/team/out");
        assert_eq!(tag, "01abc");
        let (_, tag) = destination("127.0.0.1:5000/team/out:v2", "01abc").unwrap();
        assert_eq!(tag, "v2");
        let d = format!("127.0.0.1:5000/team/out@sha256:{}", "a".repeat(64));
        assert!(destination(&d, "01abc").is_err());
        assert!(destination("127.0.0.1:5000/team/out:bad tag", "01abc").is_err());
    }

    #[test]
    fn a_directory_manifest_is_rebuilt_from_titles() {
        let layer = |title: &str, fill: u8, size: u64, mt: &str| Descriptor {
            media_type: mt.into(),
            digest: format!("sha256:{}", hex::encode([fill; 32])),
            size,
            artifact_type: None,
            annotations: [(
                crate::oci_artifact::manifest::TITLE.to_string(),
                title.to_string(),
            )]
            .into(),
        };
        let layers = vec![
            layer("out/b.txt", 2, 5, "application/octet-stream"),
            layer("model.bin", 9, 1, "application/octet-stream"),
            layer("out/a/link", 3, 4, SYMLINK_MEDIA_TYPE),
            layer("out/a.txt", 1, 3, "application/octet-stream"),
        ];
        let text = String::from_utf8(rebuild_manifest(&layers, "out")).unwrap();
        let h = |b: u8| hex::encode([b; 32]);
        assert_eq!(
            text,
            format!(
                "{} 3 a.txt\n{} symlink a/link\n{} 5 b.txt\n",
                h(1),
                h(3),
                h(2)
            )
        );
    }
}
