//! Provenance next to the image: `attest ID --sign KEY --push` attaches the DSSE envelope to the
//! run's image digest in its registry (the referrers API where served, else cosign's
//! `sha256-<hex>.att` tag, appending to what is there), and `attest verify --from-registry
//! REF@DIGEST` finds the envelopes attached to a digest and checks each (docs/attest.md).

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::{
    check_document, parse_statement, read_check_key, AttestError, Attestation, Check, CheckStatus,
    Checks, VerifyReport, MAX_DOCUMENT_BYTES,
};
use crate::attest::{self, Document};
use crate::capture::image::digest::Digest;
use crate::capture::image::reference::{self, Reference};
use crate::capture::image::registry::{RegistryClient, RegistryOptions};
use crate::oci_artifact::{
    self, manifest, ArtifactError, LayerSource, LayerSpec, PushSpec, ReferrersVia, SubjectOutcome,
};
use crate::ops::Events;
use crate::record::{ResolvedBy, Run};
use crate::store::artifacts::{ArtifactKind, RunArtifact};
use crate::store::Store;

/// The `artifactType` of the artifact repro pushes for an attestation.
pub const ATTESTATION_ARTIFACT_TYPE: &str = "application/vnd.dev.repro.attestation.v1+json";
/// The media type of a layer holding a DSSE envelope (as cosign and in-toto use it).
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The annotation naming the run (on the layer, and on the manifest of a referrers artifact).
pub const RUN_ID_ANNOTATION: &str = "dev.repro.run.id";
/// The annotation naming the statement's predicate type on the layer.
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// Where an attestation went.
#[derive(Debug, Clone)]
pub struct PushedAttestation {
    /// `REPOSITORY@DIGEST` of the image the attestation is attached to.
    pub image: String,
    /// How it is attached.
    pub via: ReferrersVia,
    /// `REPOSITORY@DIGEST` of the manifest holding the envelope.
    pub reference: String,
    /// That manifest's digest.
    pub digest: String,
    /// The tag, in the tag scheme (`sha256-<hex>.att`).
    pub tag: Option<String>,
    /// Envelopes already under the tag that were kept (the new one is appended).
    pub kept: usize,
    /// The envelope was attached already: nothing new was pushed.
    pub already: bool,
    /// The envelope layer's digest.
    pub layer: String,
}

/// Whether a run's attestation can be attached to its image: it has one, resolved to a digest
/// (checked before anything is written; that the registry has the digest is checked at the push).
pub fn pushable(run: &Run) -> Result<(), AttestError> {
    let Some(image) = &run.image else {
        return Err(AttestError::NoImage {
            run: run.id.clone(),
        });
    };
    if image.digest.is_none() || image.resolved_by == ResolvedBy::Unpinned {
        return Err(AttestError::Unresolved {
            run: run.id.clone(),
            reference: image.reference.clone(),
        });
    }
    Ok(())
}

/// The image a run's attestation is attached to: its repository and the digest that ran,
/// which the registry must have (a digest it never served cannot be a subject there).
fn run_image(
    client: &RegistryClient,
    run: &Run,
) -> Result<(Reference, Digest, manifest::Descriptor), AttestError> {
    pushable(run)?;
    let Some(image) = &run.image else {
        unreachable!("pushable checked the image")
    };
    let digest = image.digest.as_deref().unwrap_or_default();
    let bad = |problem: String| AttestError::ImageReference {
        reference: image.reference.clone(),
        problem,
    };
    let digest = Digest::parse(digest).map_err(|e| bad(e.to_string()))?;
    let repo = bare(reference::parse_normalized(&image.reference).map_err(|e| bad(e.to_string()))?);
    let Some(subject) = oci_artifact::subject_descriptor(client, &repo, &digest)? else {
        return Err(AttestError::NotInRegistry {
            run: run.id.clone(),
            image: format!("{}@{digest}", repo.name()),
        });
    };
    Ok((repo, digest, subject))
}

/// The registry options with what the run recorded it needed to reach its registry (declared
/// insecure, a CA certificate) added, so the push reaches it as the run did.
fn with_run_access(mut opts: RegistryOptions, run: &Run) -> RegistryOptions {
    if let Some(access) = &run.exec.registry {
        if access.insecure && !opts.is_insecure(&access.registry) {
            opts.insecure_registries.push(access.registry.clone());
        }
        if opts.ca_cert.is_none() {
            opts.ca_cert = access
                .ca_certs
                .iter()
                .map(|c| std::path::PathBuf::from(&c.path))
                .find(|p| p.is_file());
        }
    }
    opts
}

/// The repository of a reference (its tag and digest dropped).
fn bare(r: Reference) -> Reference {
    Reference {
        tag: None,
        digest: None,
        ..r
    }
}

/// Attaches a signed attestation to its run's image in the registry: a referrers artifact
/// (`subject` = the image) where the registry serves the referrers API; else, and when the
/// registry refused the `subject`, the envelope appended as a layer to the manifest under
/// `sha256-<hex>.att` (created when missing), as cosign does. The push is recorded with the run.
pub fn push(
    store: &mut Store,
    opts: RegistryOptions,
    a: &Attestation,
    events: &dyn Events,
) -> Result<PushedAttestation, AttestError> {
    let pushed = push_unrecorded(store, opts, a, events)?;
    let record = RunArtifact {
        run_id: a.run_id.clone(),
        kind: ArtifactKind::Attestation,
        reference: match &pushed.tag {
            Some(tag) => format!(
                "{}:{tag}",
                pushed.image.split('@').next().unwrap_or_default()
            ),
            None => pushed.reference.clone(),
        },
        digest: pushed.digest.clone(),
        pushed_at: crate::capture::host::rfc3339(crate::capture::host::now()),
    };
    // The envelope is in the registry; a record that fails to write is said, not fatal.
    if let Err(e) = store.record_artifact(&record) {
        events.warn(&format!(
            "the push was not recorded with run {}: {}",
            a.run_id,
            crate::error::report(e)
        ));
    }
    Ok(pushed)
}

/// The push itself: [`push`] without the record.
fn push_unrecorded(
    store: &Store,
    opts: RegistryOptions,
    a: &Attestation,
    events: &dyn Events,
) -> Result<PushedAttestation, AttestError> {
    if a.envelope.is_none() {
        return Err(AttestError::PushUnsigned);
    }
    let run = store.get_run(&a.run_id)?;
    pushable(&run)?;
    let client = &RegistryClient::new(with_run_access(opts, &run))?;
    let (repo, digest, subject) = run_image(client, &run)?;
    let image = format!("{}@{digest}", repo.name());
    let mut layer_annotations = BTreeMap::new();
    layer_annotations.insert(RUN_ID_ANNOTATION.to_string(), a.run_id.clone());
    layer_annotations.insert(
        PREDICATE_TYPE_ANNOTATION.to_string(),
        a.statement.predicate_type.clone(),
    );
    let layer = LayerSpec {
        source: LayerSource::Bytes(a.document.clone().into_bytes()),
        title: format!("{}-{}.intoto.json", a.run_id, &a.document_sha256[..12]),
        media_type: Some(DSSE_MEDIA_TYPE.into()),
        annotations: layer_annotations,
        known: None,
    };
    if oci_artifact::referrers_via(client, &repo, &digest)? == ReferrersVia::Api {
        let mut annotations = BTreeMap::new();
        annotations.insert(RUN_ID_ANNOTATION.to_string(), a.run_id.clone());
        annotations.insert(
            CREATED_ANNOTATION.to_string(),
            crate::capture::host::rfc3339(crate::capture::host::now()),
        );
        let pushed = oci_artifact::push(
            client,
            &PushSpec {
                repository: repo.clone(),
                tag: None,
                artifact_type: ATTESTATION_ARTIFACT_TYPE.into(),
                layers: vec![layer.clone()],
                annotations,
                subject: Some(subject.clone()),
            },
        )?;
        match &pushed.subject {
            SubjectOutcome::Dropped { why } => events.warn(&format!(
                "the registry refused the attestation's subject ({why}); it was pushed without one, and is attached through the tag {} instead",
                manifest::att_tag(&digest)
            )),
            _ => {
                return Ok(PushedAttestation {
                    image,
                    via: ReferrersVia::Api,
                    reference: pushed.reference,
                    digest: pushed.digest.to_string(),
                    tag: None,
                    kept: 0,
                    already: false,
                    layer: pushed.manifest.layers[0].digest.clone(),
                })
            }
        }
    }
    push_to_att_tag(client, &repo, &digest, subject, &layer, events)
        .map(|p| PushedAttestation { image, ..p })
}

/// The tag scheme: the envelope appended to the manifest under `sha256-<hex>.att` (whatever
/// else that manifest holds is kept, byte for byte), or a new artifact under that tag.
fn push_to_att_tag(
    client: &RegistryClient,
    repo: &Reference,
    digest: &Digest,
    subject: manifest::Descriptor,
    layer: &LayerSpec,
    events: &dyn Events,
) -> Result<PushedAttestation, AttestError> {
    let tag = manifest::att_tag(digest);
    let descriptor = layer.descriptor()?;
    let done = |d: &Digest, kept: usize, already: bool| PushedAttestation {
        image: String::new(),
        via: ReferrersVia::Tags,
        reference: format!("{}@{d}", repo.name()),
        digest: d.to_string(),
        tag: Some(tag.clone()),
        kept,
        already,
        layer: descriptor.digest.clone(),
    };
    let Some(existing) = oci_artifact::att_referrer(client, repo, digest)? else {
        let pushed = oci_artifact::push(
            client,
            &PushSpec {
                repository: repo.clone(),
                tag: Some(tag.clone()),
                artifact_type: ATTESTATION_ARTIFACT_TYPE.into(),
                layers: vec![layer.clone()],
                annotations: BTreeMap::new(),
                subject: Some(subject),
            },
        )?;
        if let SubjectOutcome::Dropped { why } = &pushed.subject {
            events.warn(&format!(
                "the registry refused the attestation's subject ({why}); pushed under {tag} without it"
            ));
        }
        return Ok(done(&pushed.digest, 0, false));
    };
    let kept = existing.manifest.layers.len();
    if existing
        .manifest
        .layers
        .iter()
        .any(|l| l.digest == descriptor.digest)
    {
        return Ok(done(&existing.digest, kept, true));
    }
    oci_artifact::push_layer(client, repo, layer, &descriptor)?;
    // The manifest as the registry holds it, with one more layer: cosign's own fields (its
    // config, annotations) stay as they are.
    let raw = client
        .manifest_by_digest(repo, &existing.digest)?
        .ok_or_else(|| ArtifactError::NotFound {
            reference: existing.found_at.clone(),
        })?;
    let mut value: serde_json::Value =
        serde_json::from_slice(&raw.body).map_err(|e| ArtifactError::Invalid {
            reference: existing.found_at.clone(),
            problem: e.to_string(),
        })?;
    match value.get_mut("layers").and_then(|l| l.as_array_mut()) {
        Some(layers) => layers.push(serde_json::to_value(&descriptor).expect("serialises")),
        None => {
            value["layers"] = serde_json::Value::Array(vec![
                serde_json::to_value(&descriptor).expect("serialises")
            ])
        }
    }
    let put = oci_artifact::put_manifest(client, repo, Some(&tag), &value)?;
    Ok(done(&put.digest, kept, false))
}

/// What `attest verify --from-registry` is asked for.
#[derive(Debug, Clone, Default)]
pub struct RegistryVerifyRequest {
    /// `REPOSITORY@sha256:…` (a tag may be written too; the digest decides).
    pub image: String,
    pub checks: Checks,
}

/// One envelope found and checked.
#[derive(Debug, Clone, Serialize)]
pub struct CheckedAttestation {
    /// Where its manifest was found (`REPO@DIGEST` or `REPO:sha256-….att`).
    pub found_at: String,
    /// The manifest's digest.
    pub manifest: String,
    /// The layer's digest and title.
    pub layer: String,
    pub title: Option<String>,
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// The outcome of `attest verify --from-registry`.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryVerifyReport {
    /// `REPOSITORY@DIGEST`.
    pub image: String,
    pub via: ReferrersVia,
    pub attestations: Vec<CheckedAttestation>,
}

impl RegistryVerifyReport {
    /// Whether at least one attestation passed every check.
    pub fn ok(&self) -> bool {
        self.attestations.iter().any(|a| a.ok)
    }
}

/// Finds the DSSE envelopes attached to `req.image` (the referrers API, plus the `.att` tag;
/// or the tag scheme where the API is not served) and checks each as `attest verify` checks a
/// file, plus that its statement names this image. None found is an error.
pub fn verify_from_registry(
    store: Option<&Store>,
    opts: RegistryOptions,
    req: &RegistryVerifyRequest,
) -> Result<RegistryVerifyReport, AttestError> {
    let key = read_check_key(&req.checks)?;
    let client = &RegistryClient::new(opts)?;
    let bad = |problem: String| AttestError::ImageReference {
        reference: req.image.clone(),
        problem,
    };
    let r = reference::parse_normalized(&req.image).map_err(|e| bad(e.to_string()))?;
    let Some(digest) = r.digest.clone() else {
        return Err(bad("it names no digest (REPOSITORY@sha256:…)".into()));
    };
    let repo = bare(r);
    let found = oci_artifact::referrers(client, &repo, &digest, Some(ATTESTATION_ARTIFACT_TYPE))?;
    let mut referrers = found.referrers;
    if found.via == ReferrersVia::Api {
        referrers.extend(oci_artifact::att_referrer(client, &repo, &digest)?);
    }
    let mut seen = HashSet::new();
    let mut attestations = Vec::new();
    for rf in &referrers {
        for layer in &rf.manifest.layers {
            if layer.media_type != DSSE_MEDIA_TYPE || !seen.insert(layer.digest.clone()) {
                continue;
            }
            let report = match oci_artifact::fetch_blob(client, &repo, layer, MAX_DOCUMENT_BYTES) {
                Ok(bytes) => check_fetched(store, &bytes, key.as_ref(), &req.checks, &digest)?,
                Err(e @ (ArtifactError::Layer { .. } | ArtifactError::LayerTooLarge { .. })) => {
                    failed("layer", crate::error::report(e))
                }
                Err(e) => return Err(e.into()),
            };
            attestations.push(CheckedAttestation {
                found_at: rf.found_at.clone(),
                manifest: rf.digest.to_string(),
                layer: layer.digest.clone(),
                title: layer.title().map(str::to_string),
                ok: report.ok(),
                checks: report.checks,
            });
        }
    }
    let image = format!("{}@{digest}", repo.name());
    if attestations.is_empty() {
        return Err(AttestError::NoneFound {
            image,
            looked: match found.via {
                ReferrersVia::Api => format!(
                    "the referrers API and the tag {}",
                    manifest::att_tag(&digest)
                ),
                ReferrersVia::Tags => format!(
                    "the registry serves no referrers API; the tags {} and {}",
                    manifest::att_tag(&digest),
                    manifest::referrers_tag(&digest)
                ),
            },
        });
    }
    Ok(RegistryVerifyReport {
        image,
        via: found.via,
        attestations,
    })
}

/// A report of one failed check.
fn failed(check: &str, detail: String) -> VerifyReport {
    let mut r = VerifyReport { checks: Vec::new() };
    r.push(check, CheckStatus::Fail, detail);
    r
}

/// The checks of one envelope from the registry, plus `image`: its statement's image is the
/// digest it is attached to (the platform manifest that ran, or the index it was resolved from),
/// so an envelope copied next to another image does not pass.
fn check_fetched(
    store: Option<&Store>,
    bytes: &[u8],
    key: Option<&crate::attest::PublicKey>,
    checks: &Checks,
    digest: &Digest,
) -> Result<VerifyReport, AttestError> {
    let doc = match attest::parse_document(bytes) {
        Ok(d) => d,
        Err(e) => return Ok(failed("document", format!("the layer is {e}"))),
    };
    let mut report = check_document(store, &doc, key, checks)?;
    let payload = match &doc {
        Document::Envelope(_, p) => p,
        Document::Statement(b) => b,
    };
    let Ok(statement) = parse_statement(payload) else {
        return Ok(report);
    };
    let image = statement
        .predicate
        .build_definition
        .resolved_dependencies
        .iter()
        .find(|d| d.name.as_deref() == Some("image"));
    let matches = image.is_some_and(|d| {
        d.digest.get("sha256").map(String::as_str) == Some(digest.hex())
            || d.annotations.get("indexDigest").and_then(|v| v.as_str())
                == Some(digest.to_string().as_str())
    });
    if matches {
        report.push(
            "image",
            CheckStatus::Ok,
            format!("the statement's image is {digest}"),
        );
    } else {
        report.push(
            "image",
            CheckStatus::Fail,
            format!("the statement's image is not {digest}: it is attached to another image"),
        );
    }
    Ok(report)
}
