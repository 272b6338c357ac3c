//! `repro image archive`: copies the images of recorded runs, by digest, into an OCI image layout
//! shared between runs (the store is [`crate::oci_layout`]), or into an archive registry;
//! checks archived copies (for `repro audit`); removes blobs no recorded run needs (`--gc`); and
//! the words a re-run uses to fall back to the archive.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::capture::image::digest::{Algorithm, Digest};
use crate::capture::image::reference::{self, Reference};
use crate::capture::image::registry::content::RawManifest;
use crate::capture::image::registry::{
    RegistryClient, RegistryError, DOCKER_MANIFEST_LIST, OCI_INDEX,
};
use crate::error::Hinted;
use crate::oci_layout::{temp_sibling, Content, Layout, LayoutError};
pub use crate::oci_layout::{Descriptor, GcReport, REF_NAME};
use crate::ops::pool::parallel;
use crate::record::{Image, Run};
use crate::store::archive::{ArchiveKind, ArchiveRecord};
use crate::store::StoreError;

/// Errors of the archive operations.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{path}: {problem}")]
    Io {
        path: PathBuf,
        problem: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{digest} of {reference} is gone from the registry; it can no longer be archived from there")]
    Gone { reference: String, digest: String },
    #[error("manifest {digest}: {problem}")]
    BadManifest { digest: String, problem: String },
    #[error("manifest {manifest}: a blob could not be copied: {source}")]
    BlobNotCopied {
        manifest: String,
        /// Shared: one blob's failure fails every image that needs it.
        #[source]
        source: Arc<ArchiveError>,
    },
    #[error("run {run} has no image digest to archive (image {reference})")]
    NoDigest { run: String, reference: String },
    #[error("none of the {runs} selected run(s) ran in an image")]
    NothingToArchive { runs: usize },
    #[error("invalid archive registry repository {input:?}: {problem}")]
    BadDestination { input: String, problem: String },
}

impl Hinted for ArchiveError {
    fn hint(&self) -> Option<String> {
        match self {
            ArchiveError::Store(e) => e.hint(),
            ArchiveError::Registry(e) => archive_hint(e),
            ArchiveError::Layout(e) => e.hint(),
            ArchiveError::BlobNotCopied { source, .. } => source.hint(),
            ArchiveError::Gone { .. } => Some(
                "archive images while they exist: `repro image archive --to DIR` right after a run; `repro audit` finds digests at risk".into(),
            ),
            ArchiveError::NoDigest { .. } => Some(
                "only runs pinned to a digest can be archived; select them with `--digest sha256:`".into(),
            ),
            ArchiveError::NothingToArchive { .. } => {
                Some("select runs recorded with --image (e.g. `--image trainer`)".into())
            }
            ArchiveError::BadDestination { .. } => {
                Some("write REGISTRY[:PORT]/REPOSITORY, e.g. 127.0.0.1:5000/archive/trainer".into())
            }
            ArchiveError::Io { .. } | ArchiveError::BadManifest { .. } => None,
        }
    }
}

/// What to do about a registry error while archiving: the registry client's own hints speak of
/// `repro run` (`--offline`, `--resolve engine`, pinning a tag), which mean nothing here.
fn archive_hint(e: &RegistryError) -> Option<String> {
    match e {
        RegistryError::Transport { .. } | RegistryError::Deadline { .. }
            if !e.hint().is_some_and(|h| h.contains("--ca-cert") || h.contains("--insecure-registry")) =>
        {
            Some("check that the registry is up and run `repro image archive` again (already archived blobs are kept); REPRO_REGISTRY_TIMEOUT=SECONDS sets the deadline".into())
        }
        RegistryError::NotFound { .. } => Some(
            "the registry no longer serves this content, so it cannot be archived from there; `repro audit` shows which runs are at risk".into(),
        ),
        _ => e.hint(),
    }
}

/// The error with its causes on one line (what an image's `error` says).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = c.source();
    }
    s
}

fn io_err(path: &Path, problem: &str) -> impl Fn(std::io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    let problem = problem.to_string();
    move |source| ArchiveError::Io {
        path: path.clone(),
        problem: problem.clone(),
        source,
    }
}

fn is_index_type(media_type: &str, doc: &Content) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST || doc.manifests.is_some()
}

fn parse_doc(digest: &str, body: &[u8]) -> Result<Content, ArchiveError> {
    Content::parse(body).map_err(|e| ArchiveError::BadManifest {
        digest: digest.to_string(),
        problem: format!("not JSON: {e}"),
    })
}

fn parse_digest(s: &str) -> Result<Digest, ArchiveError> {
    let d = Digest::parse(s).map_err(|e| ArchiveError::BadManifest {
        digest: s.to_string(),
        problem: e.to_string(),
    })?;
    if d.algorithm() != Algorithm::Sha256 {
        return Err(ArchiveError::BadManifest {
            digest: s.to_string(),
            problem: "only sha256 content can be archived".into(),
        });
    }
    Ok(d)
}

/// Where `repro image archive` copies to.
#[derive(Debug, Clone)]
pub enum Destination {
    /// An OCI image layout directory.
    Layout(PathBuf),
    /// `REGISTRY/REPO` of an archive registry.
    Registry(Reference),
}

impl Destination {
    /// Parses `--to-registry REGISTRY/REPO` (no tag, no digest).
    pub fn registry(s: &str) -> Result<Destination, ArchiveError> {
        let bad = |p: &str| ArchiveError::BadDestination {
            input: s.to_string(),
            problem: p.to_string(),
        };
        let r = reference::parse_normalized(s).map_err(|e| bad(&e.to_string()))?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err(bad("give a repository without tag or digest"));
        }
        Ok(Destination::Registry(r))
    }
}

/// A request to archive runs.
#[derive(Debug, Clone)]
pub struct ArchiveRequest {
    pub runs: Vec<Run>,
    pub destination: Destination,
    /// For an index: every platform, not only the ones the runs used.
    pub all_platforms: bool,
    /// Parallel requests.
    pub jobs: usize,
}

/// One image (one source repository and top digest) archived for one or more runs.
#[derive(Debug, Clone, Serialize)]
pub struct ArchivedImage {
    pub runs: Vec<String>,
    pub reference: String,
    /// The index (multi-arch) or manifest digest archived.
    pub digest: String,
    /// The platform manifests archived with it (for an index).
    pub platform_digests: Vec<String>,
    /// `None` on success, else why this image could not be archived.
    pub error: Option<String>,
    /// What to do about `error` (for people: not part of the JSON).
    #[serde(skip)]
    pub hint: Option<String>,
}

/// What an archive did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveReport {
    /// `oci-layout` or `registry`.
    pub kind: String,
    pub location: String,
    pub images: Vec<ArchivedImage>,
    pub blobs_fetched: usize,
    pub blobs_present: usize,
    pub bytes_fetched: u64,
    /// Selected runs without a pinned image (nothing to archive).
    pub skipped: Vec<String>,
    /// Records to store (the CLI writes them).
    #[serde(skip)]
    pub records: Vec<ArchiveRecord>,
}

/// Runs grouped by (repository, top digest): one image to copy per group.
struct Group {
    source: Reference,
    reference: String,
    top: String,
    /// Platform digests the runs used (for an index).
    platforms: BTreeSet<String>,
    runs: Vec<String>,
}

/// Groups the runs with a pinned image; the others are returned as skipped.
fn group_runs(runs: &[Run]) -> Result<(Vec<Group>, Vec<String>), ArchiveError> {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut skipped = Vec::new();
    for run in runs {
        let Some(image) = &run.image else {
            skipped.push(run.id.clone());
            continue;
        };
        let Some(digest) = &image.digest else {
            skipped.push(run.id.clone());
            continue;
        };
        let source = source_repository(image)?;
        let top = image.index_digest.clone().unwrap_or_else(|| digest.clone());
        let key = (source.name(), top.clone());
        let g = groups.entry(key).or_insert_with(|| Group {
            source,
            reference: image.reference.clone(),
            top: top.clone(),
            platforms: BTreeSet::new(),
            runs: Vec::new(),
        });
        if image.index_digest.is_some() {
            g.platforms.insert(digest.clone());
        }
        g.runs.push(run.id.clone());
    }
    if groups.is_empty() {
        if let Some(run) = runs.iter().find(|r| r.image.is_some()) {
            return Err(ArchiveError::NoDigest {
                run: run.id.clone(),
                reference: run
                    .image
                    .as_ref()
                    .map(|i| i.reference.clone())
                    .unwrap_or_default(),
            });
        }
        return Err(ArchiveError::NothingToArchive { runs: runs.len() });
    }
    Ok((groups.into_values().collect(), skipped))
}

/// The repository a run's image came from (tag and digest dropped).
pub fn source_repository(image: &Image) -> Result<Reference, ArchiveError> {
    let mut r = reference::parse_normalized(&image.reference).map_err(|e| {
        ArchiveError::BadDestination {
            input: image.reference.clone(),
            problem: e.to_string(),
        }
    })?;
    r.tag = None;
    r.digest = None;
    Ok(r)
}

/// Fetches the manifests of one group: the top one and, for an index, the chosen platform
/// manifests. Returns (descriptor, raw) for each, top first.
fn fetch_manifests(
    client: &RegistryClient,
    g: &Group,
    all_platforms: bool,
) -> Result<Manifests, ArchiveError> {
    let top_digest = parse_digest(&g.top)?;
    let top = client
        .manifest_by_digest(&g.source, &top_digest)?
        .ok_or_else(|| ArchiveError::Gone {
            reference: g.reference.clone(),
            digest: g.top.clone(),
        })?;
    let doc = parse_doc(&g.top, &top.body)?;
    let mut out = vec![(
        Descriptor {
            media_type: top.media_type.clone(),
            digest: g.top.clone(),
            size: top.body.len() as u64,
            platform: None,
            annotations: BTreeMap::from([(REF_NAME.to_string(), g.top.clone())]),
        },
        top.clone(),
    )];
    if is_index_type(&top.media_type, &doc) {
        for entry in doc.manifests.iter().flatten() {
            if !all_platforms && !g.platforms.contains(&entry.digest) {
                continue;
            }
            let d = parse_digest(&entry.digest)?;
            let m =
                client
                    .manifest_by_digest(&g.source, &d)?
                    .ok_or_else(|| ArchiveError::Gone {
                        reference: g.reference.clone(),
                        digest: entry.digest.clone(),
                    })?;
            let mut desc = entry.clone();
            desc.annotations = BTreeMap::from([(REF_NAME.to_string(), entry.digest.clone())]);
            if desc.media_type.is_empty() {
                desc.media_type = m.media_type.clone();
            }
            out.push((desc, m));
        }
        for p in &g.platforms {
            if !out.iter().any(|(d, _)| &d.digest == p) {
                return Err(ArchiveError::BadManifest {
                    digest: g.top.clone(),
                    problem: format!("the index does not list the platform manifest {p} that ran"),
                });
            }
        }
    }
    Ok(out)
}

/// The manifests of one image: (descriptor, raw), top first.
type Manifests = Vec<(Descriptor, RawManifest)>;

/// Archives the runs' images. Per-image failures are reported in the result (and leave
/// nothing half-recorded); a failure to use the destination at all is an error.
pub fn archive(
    client: &RegistryClient,
    req: &ArchiveRequest,
    now: &str,
) -> Result<ArchiveReport, ArchiveError> {
    let (groups, skipped) = group_runs(&req.runs)?;
    let (kind, location, layout) = match &req.destination {
        Destination::Layout(dir) => {
            let l = Layout::create(dir)?;
            (
                ArchiveKind::OciLayout,
                l.root().display().to_string(),
                Some(l),
            )
        }
        Destination::Registry(r) => (ArchiveKind::Registry, r.name(), None),
    };
    let fetched: Vec<Result<Manifests, ArchiveError>> = parallel(&groups, req.jobs, |g| {
        fetch_manifests(client, g, req.all_platforms)
    });
    let mut report = ArchiveReport {
        kind: kind.as_str().to_string(),
        location: location.clone(),
        skipped,
        ..Default::default()
    };
    let blob_errors = copy_blobs(client, req, layout.as_ref(), &groups, &fetched, &mut report)?;
    for (g, f) in groups.iter().zip(fetched) {
        let mut img = ArchivedImage {
            runs: g.runs.clone(),
            reference: g.reference.clone(),
            digest: g.top.clone(),
            platform_digests: Vec::new(),
            error: None,
            hint: None,
        };
        let outcome =
            f.and_then(|ms| store_manifests(client, req, layout.as_ref(), &ms, &blob_errors));
        match outcome {
            Ok(platforms) => {
                img.platform_digests = platforms;
                for run in &g.runs {
                    report.records.push(ArchiveRecord {
                        run_id: run.clone(),
                        kind,
                        location: location.clone(),
                        digest: g.top.clone(),
                        archived_at: now.to_string(),
                    });
                }
            }
            Err(e) => {
                img.error = Some(describe(&e));
                img.hint = e.hint();
            }
        }
        report.images.push(img);
    }
    Ok(report)
}

/// Copies every blob the fetched manifests need, once (layers are shared between images), and
/// counts them in `report`; returns the failures by blob digest.
fn copy_blobs(
    client: &RegistryClient,
    req: &ArchiveRequest,
    layout: Option<&Layout>,
    groups: &[Group],
    fetched: &[Result<Manifests, ArchiveError>],
    report: &mut ArchiveReport,
) -> Result<BTreeMap<String, Arc<ArchiveError>>, ArchiveError> {
    let mut blobs: BTreeMap<String, (Descriptor, Reference)> = BTreeMap::new();
    for (g, f) in groups.iter().zip(fetched) {
        let Ok(ms) = f else { continue };
        for (_, m) in ms {
            let doc = parse_doc(&m.digest.to_string(), &m.body)?;
            for b in doc.blobs() {
                blobs
                    .entry(b.digest.clone())
                    .or_insert_with(|| (b, g.source.clone()));
            }
        }
    }
    let blob_list: Vec<(Descriptor, Reference)> = blobs.into_values().collect();
    let results: Vec<Result<(u64, bool), ArchiveError>> =
        parallel(&blob_list, req.jobs, |(d, src)| {
            match (layout, &req.destination) {
                (Some(l), _) => {
                    let digest = parse_digest(&d.digest)?;
                    let present = l.has_blob(&digest, d.size);
                    let n = l.put_blob(d, |out| {
                        client
                            .blob_to(src, &digest, Some(d.size), out)
                            .map_err(ArchiveError::from)
                    })?;
                    Ok((n, present))
                }
                (None, Destination::Registry(dst)) => push_blob(client, src, dst, d),
                (None, Destination::Layout(_)) => unreachable!("layout opened by the caller"),
            }
        });
    let mut errors = BTreeMap::new();
    for ((d, _), r) in blob_list.iter().zip(results) {
        match r {
            Ok((_, true)) => report.blobs_present += 1,
            Ok((n, false)) => {
                report.blobs_fetched += 1;
                report.bytes_fetched += n;
            }
            Err(e) => {
                errors.insert(d.digest.clone(), Arc::new(e));
            }
        }
    }
    Ok(errors)
}

/// Stores one image's manifests once all their blobs are there (children before parents, so
/// an entry never names content that is not there), then its `index.json` entries; returns
/// the platform manifests archived with an index.
fn store_manifests(
    client: &RegistryClient,
    req: &ArchiveRequest,
    layout: Option<&Layout>,
    ms: &Manifests,
    blob_errors: &BTreeMap<String, Arc<ArchiveError>>,
) -> Result<Vec<String>, ArchiveError> {
    for (_, m) in ms {
        let doc = parse_doc(&m.digest.to_string(), &m.body)?;
        if let Some(e) = doc.blobs().iter().find_map(|b| blob_errors.get(&b.digest)) {
            return Err(ArchiveError::BlobNotCopied {
                manifest: m.digest.to_string(),
                source: Arc::clone(e),
            });
        }
    }
    for (_, m) in ms.iter().rev() {
        match (layout, &req.destination) {
            (Some(l), _) => l.put_bytes(&m.digest, &m.body)?,
            (None, Destination::Registry(dst)) => {
                client.put_manifest(dst, &m.digest.to_string(), &m.media_type, &m.body)?
            }
            (None, Destination::Layout(_)) => unreachable!("layout opened by the caller"),
        }
    }
    if let Some(l) = layout {
        let entries: Vec<Descriptor> = ms.iter().map(|(d, _)| d.clone()).collect();
        l.add_to_index(&entries)?;
    }
    Ok(ms.iter().skip(1).map(|(d, _)| d.digest.clone()).collect())
}

/// Copies one blob to the archive registry: present, mounted, or fetched (verified) and uploaded.
fn push_blob(
    client: &RegistryClient,
    src: &Reference,
    dst: &Reference,
    d: &Descriptor,
) -> Result<(u64, bool), ArchiveError> {
    use crate::capture::image::registry::content::Pushed;
    let digest = parse_digest(&d.digest)?;
    let same_registry = src.domain == dst.domain;
    if same_registry {
        match client.push_blob(dst, Some(src), &digest, None) {
            Ok(Pushed::Present) => return Ok((0, true)),
            Ok(_) => return Ok((0, false)),
            Err(_) => {} // no mount: upload below
        }
    } else if client.has_blob(dst, &digest)? {
        return Ok((0, true));
    }
    let tmp = tempfile_in_tmp()?;
    let mut f = File::create(&tmp).map_err(io_err(&tmp, "cannot create"))?;
    let fetched = client.blob_to(src, &digest, Some(d.size), &mut f);
    drop(f);
    let res = fetched.map_err(ArchiveError::from).and_then(|n| {
        client
            .push_blob(dst, None, &digest, Some(&tmp))
            .map(|_| (n, false))
            .map_err(ArchiveError::from)
    });
    let _ = fs::remove_file(&tmp);
    res
}

fn tempfile_in_tmp() -> Result<PathBuf, ArchiveError> {
    let dir = std::env::temp_dir();
    Ok(temp_sibling(&dir.join("repro-blob")))
}

/// The health of one archived copy, as `repro audit` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveHealth {
    pub kind: String,
    pub location: String,
    /// Every manifest and blob the run needs is there with the right size (and, with `deep`,
    /// the right digest).
    pub intact: bool,
    pub problems: Vec<String>,
}

/// Checks that `layout` holds `top` and what `platforms` need (for an index: those platform
/// manifests; empty = the manifest is `top` itself): every blob present with its size, and
/// with `deep` re-hashed.
pub fn check_layout(dir: &Path, top: &str, platforms: &[String], deep: bool) -> ArchiveHealth {
    let problems = match Layout::open(dir) {
        Err(e) => vec![e.to_string()],
        Ok(l) => l.check(top, platforms, deep),
    };
    ArchiveHealth {
        kind: ArchiveKind::OciLayout.as_str().into(),
        location: dir.display().to_string(),
        intact: problems.is_empty(),
        problems,
    }
}

/// Removes from the layout every `index.json` entry whose digest no recorded run references
/// (`keep`), then every blob no kept entry reaches. Holds the layout lock throughout.
pub fn gc(dir: &Path, keep: &BTreeSet<String>) -> Result<GcReport, ArchiveError> {
    Ok(Layout::open(dir)?.gc(keep)?)
}

pub use crate::script::plan::PullFallback;

/// The fallback for a run's image given its recorded archives; `None` when the run has no
/// pinned digest or no archive.
pub fn pull_fallback(image: &Image, archives: &[ArchiveRecord]) -> Option<PullFallback> {
    let digest = image.digest.clone()?;
    if archives.is_empty() {
        return None;
    }
    let name = source_repository(image).ok()?.name();
    let mut fb = PullFallback {
        digest: digest.clone(),
        registries: Vec::new(),
        layouts: Vec::new(),
        name,
    };
    for a in archives {
        let (list, entry) = match a.kind {
            ArchiveKind::Registry => (&mut fb.registries, format!("{}@{digest}", a.location)),
            ArchiveKind::OciLayout => (&mut fb.layouts, a.location.clone()),
        };
        if !list.contains(&entry) {
            list.push(entry);
        }
    }
    Some(fb)
}

/// The fallback of `image` from every archive recorded for its digest (platform or index), by
/// whichever run: what `repro run`, `repro rerun` and `repro script` give the engine plan.
pub fn recorded_fallback(
    store: &crate::store::Store,
    image: &Image,
) -> Result<Option<PullFallback>, StoreError> {
    let digests: Vec<&str> = [image.digest.as_deref(), image.index_digest.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    if digests.is_empty() {
        return Ok(None);
    }
    Ok(pull_fallback(image, &store.archives_of_digests(&digests)?))
}

/// For `repro run`/`repro rerun`: after the registry pull of the run's image failed, pulls it
/// from the archives with the engine (`run_engine(args)` runs it and returns its stdout) and
/// returns the reference to run. Archive registries are pulled with `pull_flags`, the registry
/// flags of the normal pull. The caller then checks the digest as for any pull.
pub fn pull_from_archives(
    engine_is_podman: bool,
    fb: &PullFallback,
    pull_flags: &[String],
    run_engine: &mut dyn FnMut(&[String]) -> Result<String, String>,
) -> Result<String, String> {
    let mut tried: Vec<String> = Vec::new();
    for r in &fb.registries {
        let mut args = vec!["pull".to_string()];
        args.extend(pull_flags.iter().cloned());
        args.push(r.clone());
        match run_engine(&args) {
            Ok(_) => return Ok(r.clone()),
            Err(e) => tried.push(format!("{r}: {e}")),
        }
    }
    for dir in &fb.layouts {
        if !engine_is_podman {
            tried.push(format!(
                "{dir}: docker cannot load an OCI layout by manifest digest (use --engine podman)"
            ));
            continue;
        }
        let hex = fb.digest.split_once(':').map(|(_, h)| h).unwrap_or("");
        if !Path::new(dir).join("blobs/sha256").join(hex).is_file() {
            tried.push(format!("{dir}: the layout does not hold {}", fb.digest));
            continue;
        }
        // podman names the pulled image after the layout's path, which must then be a valid
        // lowercase repository name: pull through a link with such a name.
        let link = std::env::temp_dir().join(format!(
            "repro-archive-{}-{}",
            &hex[..hex.len().min(12)],
            std::process::id()
        ));
        let link = if link.to_string_lossy().to_lowercase() == link.to_string_lossy() {
            link
        } else {
            PathBuf::from(format!(
                "/tmp/{}",
                link.file_name().unwrap_or_default().to_string_lossy()
            ))
        };
        let _ = fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink(dir, &link) {
            tried.push(format!("{dir}: cannot link {}: {e}", link.display()));
            continue;
        }
        let src = format!("oci:{}:{}", link.display(), fb.digest);
        let pulled = run_engine(&["pull".into(), "-q".into(), src.clone()]);
        let _ = fs::remove_file(&link);
        match pulled {
            Ok(out) => {
                let id = out.trim().lines().last().unwrap_or("").to_string();
                if id.is_empty() {
                    tried.push(format!("{src}: no image id printed"));
                    continue;
                }
                run_engine(&["tag".into(), id, fb.local_tag()])
                    .map_err(|e| format!("tagging the archived image: {e}"))?;
                return Ok(fb.local_reference());
            }
            Err(e) => tried.push(format!("{src}: {e}")),
        }
    }
    Err(format!(
        "no recorded archive provided {} ({})",
        fb.digest,
        if tried.is_empty() {
            "none recorded".to_string()
        } else {
            tried.join("; ")
        }
    ))
}
