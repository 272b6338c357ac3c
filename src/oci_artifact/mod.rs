//! An OCI artifact client on the registry client: pushes an image manifest v1.1 artifact (files
//! streamed from disk as layers, the empty config, a `subject` where the registry accepts it),
//! finds the referrers of a digest (the referrers API where served, else the `sha256-<hex>.att`
//! and `sha256-<hex>` tags), and pulls an artifact into a directory (titles validated, each
//! layer's digest and size verified while writing, all files or none). Registry content is
//! untrusted input. Knows nothing of runs, the store or the renderers.

pub mod manifest;
mod pull;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::capture::image::digest::Digest;
use crate::capture::image::reference::Reference;
use crate::capture::image::registry::content::Pushed as BlobPushed;
use crate::capture::image::registry::{RegistryClient, RegistryError, OCI_MANIFEST};
use crate::error::Hinted;
use crate::sanitize::escape;
pub use manifest::{Descriptor, ImageManifest, ReferrersVia, TitleProblem};
pub use pull::{fetch_blob, fetch_blob_to, fetch_manifest, pull, PullSpec, Pulled, PulledFile};

/// What can go wrong pushing, finding or pulling an artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("layer title {:?}: {problem}", escape(title))]
    Title {
        title: String,
        problem: TitleProblem,
    },
    #[error("layer titles {:?} and {:?} cannot both be written (one file twice, or a file where a directory is needed)", escape(first), escape(second))]
    Clash { first: String, second: String },
    #[error("an artifact needs at least one file")]
    NoFiles,
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A manifest or index from the registry that is not what it must be.
    #[error("{reference}: {}", escape(problem))]
    Invalid { reference: String, problem: String },
    #[error(
        "{reference}: layer {:?} is {size} bytes, more than the {limit} bytes accepted",
        escape(title)
    )]
    LayerTooLarge {
        reference: String,
        title: String,
        size: u64,
        limit: u64,
    },
    /// A layer whose bytes do not match its descriptor (digest or size).
    #[error(
        "{reference}: layer {:?} ({digest}) does not match its descriptor",
        escape(title)
    )]
    Layer {
        reference: String,
        title: String,
        digest: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("{reference} does not exist")]
    NotFound { reference: String },
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
    #[error("{} is a symbolic link or not a directory; refusing to write through it", path.display())]
    NotADirectory { path: PathBuf },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Hinted for ArtifactError {
    fn hint(&self) -> Option<String> {
        match self {
            ArtifactError::Registry(e) => e.hint(),
            ArtifactError::Title { .. } | ArtifactError::Clash { .. } => Some(
                "a layer title is a relative path inside the target directory (no `/` at the start, no `..`, no empty or `.` component)".into(),
            ),
            ArtifactError::NoFiles => Some("give at least one file".into()),
            ArtifactError::Read { .. } => Some("check that the file exists and is readable".into()),
            ArtifactError::Invalid { .. } | ArtifactError::LayerTooLarge { .. } => Some(
                "the registry's content is not an artifact repro can read; look at it with `oras manifest fetch REF`".into(),
            ),
            ArtifactError::Layer { .. } => Some(
                "the registry holds other bytes than the manifest names (corrupt or tampered storage); nothing was written".into(),
            ),
            ArtifactError::NotFound { .. } => Some("check the repository and the tag or digest (`oras repo tags REPO`)".into()),
            ArtifactError::Exists { .. } => Some("move the file aside, or choose another directory".into()),
            ArtifactError::NotADirectory { .. } => Some(
                "choose a target directory without symbolic links in the artifact's paths".into(),
            ),
            ArtifactError::Write { .. } => Some("check the directory is writable and has space".into()),
        }
    }
}

impl ArtifactError {
    fn invalid(reference: &str, problem: impl Into<String>) -> ArtifactError {
        ArtifactError::Invalid {
            reference: reference.to_string(),
            problem: problem.into(),
        }
    }
}

/// Where a layer's bytes come from.
#[derive(Debug, Clone)]
pub enum LayerSource {
    /// A file, hashed and then uploaded in a stream (outputs may be larger than memory).
    File(PathBuf),
    /// Bytes in memory (an attestation envelope).
    Bytes(Vec<u8>),
}

/// One layer to push.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    pub source: LayerSource,
    /// The `org.opencontainers.image.title`: a relative path.
    pub title: String,
    /// Defaults to `application/octet-stream`.
    pub media_type: Option<String>,
    /// More layer annotations (the title is added).
    pub annotations: BTreeMap<String, String>,
    /// The digest and size when known (a content-addressed file): the file is not hashed
    /// first; the registry checks the digest of what it receives.
    pub known: Option<(Digest, u64)>,
}

impl LayerSpec {
    /// The layer's descriptor: its digest as known, else its source hashed (a file in a stream).
    pub fn descriptor(&self) -> Result<Descriptor, ArtifactError> {
        let (digest, size) = match (&self.known, &self.source) {
            (Some((d, n)), _) => (d.clone(), *n),
            (None, LayerSource::File(p)) => hash_file(p)?,
            (None, LayerSource::Bytes(b)) => (Digest::sha256_of(b), b.len() as u64),
        };
        Ok(manifest::file_layer(
            self.media_type.as_deref(),
            &digest,
            size,
            &self.title,
            self.annotations.clone(),
        ))
    }
}

/// Puts one layer's blob into `repo` unless the registry has it (HEAD); `true` when sent.
pub fn push_layer(
    client: &RegistryClient,
    repo: &Reference,
    layer: &LayerSpec,
    descriptor: &Descriptor,
) -> Result<bool, ArtifactError> {
    let digest =
        manifest::sha256_digest(descriptor).map_err(|p| ArtifactError::invalid(&repo.name(), p))?;
    let pushed = match &layer.source {
        LayerSource::File(p) => client.push_blob(repo, None, &digest, Some(p))?,
        LayerSource::Bytes(b) => client.push_blob_bytes(repo, &digest, b)?,
    };
    Ok(pushed != BlobPushed::Present)
}

/// What to push.
#[derive(Debug, Clone)]
pub struct PushSpec {
    /// The repository (its tag and digest are ignored).
    pub repository: Reference,
    /// Put the manifest under this tag; by its digest when `None`.
    pub tag: Option<String>,
    pub artifact_type: String,
    pub layers: Vec<LayerSpec>,
    pub annotations: BTreeMap<String, String>,
    pub subject: Option<Descriptor>,
}

/// What became of a manifest's `subject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectOutcome {
    /// The manifest had none.
    None,
    /// Stored, and the registry says it indexed it for the referrers API (`OCI-Subject`).
    Indexed,
    /// Stored in the manifest; the registry did not say it indexed it (no referrers API).
    Stored,
    /// The registry refused the manifest with it; pushed without. `why` is its answer.
    Dropped { why: String },
}

/// A pushed manifest.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    /// The bytes stored.
    pub body: Vec<u8>,
    pub subject: SubjectOutcome,
}

/// A pushed artifact.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `REPOSITORY@DIGEST`.
    pub reference: String,
    pub digest: Digest,
    pub manifest: ImageManifest,
    /// Layers sent, and layers the registry already had (HEAD) and were not sent again.
    pub uploaded: usize,
    pub present: usize,
    pub subject: SubjectOutcome,
}

/// SHA-256 and length of a file, read in a stream (outputs may be larger than memory).
pub fn hash_file(path: &Path) -> Result<(Digest, u64), ArtifactError> {
    let err = |source| ArtifactError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf).map_err(err)?;
        if got == 0 {
            break;
        }
        hasher.update(&buf[..got]);
        n += got as u64;
    }
    let hex = hex::encode(hasher.finalize());
    let digest = Digest::parse(&format!("sha256:{hex}")).expect("a sha256 digest parses");
    Ok((digest, n))
}

/// Checks every title and that no two clash.
pub fn check_titles<'a>(titles: impl IntoIterator<Item = &'a str>) -> Result<(), ArtifactError> {
    let titles: Vec<&str> = titles.into_iter().collect();
    for t in &titles {
        manifest::validate_title(t).map_err(|problem| ArtifactError::Title {
            title: t.to_string(),
            problem,
        })?;
    }
    match manifest::title_clash(titles) {
        Some((first, second)) => Err(ArtifactError::Clash { first, second }),
        None => Ok(()),
    }
}

/// Pushes an artifact: each layer hashed first (so its digest is known before the upload), then
/// uploaded (a file in a stream) unless the registry has it (HEAD); the empty config; the
/// manifest with its `subject` where the registry accepts it ([`put_manifest`]).
pub fn push(client: &RegistryClient, spec: &PushSpec) -> Result<Pushed, ArtifactError> {
    if spec.layers.is_empty() {
        return Err(ArtifactError::NoFiles);
    }
    check_titles(spec.layers.iter().map(|l| l.title.as_str()))?;
    let descriptors = spec
        .layers
        .iter()
        .map(LayerSpec::descriptor)
        .collect::<Result<Vec<_>, _>>()?;
    let repo = &spec.repository;
    let config_digest = Digest::sha256_of(manifest::EMPTY_CONFIG);
    client.push_blob_bytes(repo, &config_digest, manifest::EMPTY_CONFIG)?;
    let (mut uploaded, mut present) = (0, 0);
    for (l, d) in spec.layers.iter().zip(&descriptors) {
        if push_layer(client, repo, l, d)? {
            uploaded += 1;
        } else {
            present += 1;
        }
    }
    let mut m = manifest::build(
        &spec.artifact_type,
        descriptors,
        spec.annotations.clone(),
        spec.subject.clone(),
    );
    let value = serde_json::to_value(&m).expect("a manifest serialises");
    let put = put_manifest(client, repo, spec.tag.as_deref(), &value)?;
    if matches!(put.subject, SubjectOutcome::Dropped { .. }) {
        m.subject = None;
    }
    Ok(Pushed {
        reference: format!("{}@{}", repo.name(), put.digest),
        digest: put.digest,
        manifest: m,
        uploaded,
        present,
        subject: put.subject,
    })
}

/// Whether a refused manifest PUT may be the registry rejecting the `subject` field (older
/// registries validate strictly: 400 MANIFEST_INVALID, 415, 422).
fn may_refuse_subject(e: &RegistryError) -> bool {
    matches!(
        e,
        RegistryError::Status {
            status: 400 | 415 | 422,
            ..
        }
    )
}

/// Puts a manifest (JSON, its blobs already pushed) under `tag`, else under its digest. When
/// the registry refuses a manifest that has a `subject`, it is put once more without it, and the
/// outcome says so with the registry's answer.
pub fn put_manifest(
    client: &RegistryClient,
    repo: &Reference,
    tag: Option<&str>,
    value: &serde_json::Value,
) -> Result<PutManifest, ArtifactError> {
    let media_type = value
        .get("mediaType")
        .and_then(|t| t.as_str())
        .unwrap_or(OCI_MANIFEST)
        .to_string();
    let put = |v: &serde_json::Value| -> Result<(Digest, Vec<u8>, bool), RegistryError> {
        let body = serde_json::to_vec(v).expect("JSON serialises");
        let digest = Digest::sha256_of(&body);
        let reference = tag.map_or_else(|| digest.to_string(), str::to_string);
        let answer = client.put_manifest_answer(repo, &reference, &media_type, &body)?;
        Ok((digest, body, answer.subject.is_some()))
    };
    let has_subject = value.get("subject").is_some();
    match put(value) {
        Ok((digest, body, indexed)) => Ok(PutManifest {
            digest,
            body,
            subject: match (has_subject, indexed) {
                (false, _) => SubjectOutcome::None,
                (true, true) => SubjectOutcome::Indexed,
                (true, false) => SubjectOutcome::Stored,
            },
        }),
        Err(e) if has_subject && may_refuse_subject(&e) => {
            let mut without = value.clone();
            if let Some(o) = without.as_object_mut() {
                o.remove("subject");
            }
            let (digest, body, _) = put(&without)?;
            Ok(PutManifest {
                digest,
                body,
                subject: SubjectOutcome::Dropped { why: e.to_string() },
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// A manifest that refers to the subject, and where it was found.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub digest: Digest,
    /// `REPOSITORY@DIGEST` (referrers API, fallback index) or `REPOSITORY:TAG` (`.att` tag).
    pub found_at: String,
    pub manifest: ImageManifest,
}

/// The referrers of a digest.
#[derive(Debug, Clone)]
pub struct Referrers {
    pub via: ReferrersVia,
    pub referrers: Vec<Referrer>,
}

/// The manifests referring to `subject` in `repo` whose `artifactType` is `artifact_type` (all
/// when `None`): the referrers API when the registry serves it (200); on a 404 the tag scheme:
/// the manifest under `sha256-<hex>.att` (cosign's; returned whatever its artifactType, as
/// cosign's have none) and the entries of the OCI fallback index under `sha256-<hex>`.
pub fn referrers(
    client: &RegistryClient,
    repo: &Reference,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Result<Referrers, ArtifactError> {
    let at = format!("{}@{subject}", repo.name());
    let answer = client.referrers(repo, subject, artifact_type)?;
    let via = ReferrersVia::for_status(answer.status).ok_or_else(|| {
        ArtifactError::invalid(
            &at,
            format!("the referrers endpoint answered {}", answer.status),
        )
    })?;
    let mut out = Vec::new();
    match via {
        ReferrersVia::Api => {
            let listed = manifest::parse_referrers(&answer.body, artifact_type)
                .map_err(|p| ArtifactError::invalid(&at, format!("referrers index: {p}")))?;
            for d in listed {
                out.extend(referrer_by_digest(client, repo, &d)?);
            }
        }
        ReferrersVia::Tags => {
            out.extend(att_referrer(client, repo, subject)?);
            let tag = manifest::referrers_tag(subject);
            if let Some(raw) = client.manifest_by_tag(repo, &tag)? {
                let listed = manifest::parse_referrers(&raw.body, artifact_type)
                    .map_err(|p| ArtifactError::invalid(&format!("{}:{tag}", repo.name()), p))?;
                for d in listed {
                    out.extend(referrer_by_digest(client, repo, &d)?);
                }
            }
        }
    }
    Ok(Referrers {
        via,
        referrers: out,
    })
}

/// Where the referrers of `subject` are read: a probe of the referrers endpoint (200: the API;
/// 404: the tag scheme).
pub fn referrers_via(
    client: &RegistryClient,
    repo: &Reference,
    subject: &Digest,
) -> Result<ReferrersVia, ArtifactError> {
    let answer = client.referrers(repo, subject, None)?;
    ReferrersVia::for_status(answer.status).ok_or_else(|| {
        ArtifactError::invalid(
            &format!("{}@{subject}", repo.name()),
            format!("the referrers endpoint answered {}", answer.status),
        )
    })
}

/// The manifest under cosign's tag `sha256-<hex>.att` of `subject`, when there is one.
pub fn att_referrer(
    client: &RegistryClient,
    repo: &Reference,
    subject: &Digest,
) -> Result<Option<Referrer>, ArtifactError> {
    let tag = manifest::att_tag(subject);
    let Some(raw) = client.manifest_by_tag(repo, &tag)? else {
        return Ok(None);
    };
    let found_at = format!("{}:{tag}", repo.name());
    let m = manifest::parse_manifest(&raw.body, &raw.media_type)
        .map_err(|p| ArtifactError::invalid(&found_at, p))?;
    Ok(Some(Referrer {
        digest: raw.digest,
        found_at,
        manifest: m,
    }))
}

/// The manifest an index entry names; `None` when the registry no longer has it.
fn referrer_by_digest(
    client: &RegistryClient,
    repo: &Reference,
    d: &Descriptor,
) -> Result<Option<Referrer>, ArtifactError> {
    let digest = manifest::sha256_digest(d)
        .map_err(|p| ArtifactError::invalid(&repo.name(), format!("referrer: {p}")))?;
    let found_at = format!("{}@{digest}", repo.name());
    let Some(raw) = client.manifest_by_digest(repo, &digest)? else {
        return Ok(None);
    };
    let m = manifest::parse_manifest(&raw.body, &raw.media_type)
        .map_err(|p| ArtifactError::invalid(&found_at, p))?;
    Ok(Some(Referrer {
        digest,
        found_at,
        manifest: m,
    }))
}

/// The descriptor of manifest `digest` of `repo`, to name it as a `subject`; `None` when the
/// registry does not have it.
pub fn subject_descriptor(
    client: &RegistryClient,
    repo: &Reference,
    digest: &Digest,
) -> Result<Option<Descriptor>, ArtifactError> {
    Ok(client
        .manifest_by_digest(repo, digest)?
        .map(|raw| Descriptor {
            media_type: raw.media_type,
            digest: raw.digest.to_string(),
            size: raw.body.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }))
}
