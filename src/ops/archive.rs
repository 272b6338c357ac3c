//! `repro image archive`: copies the images of recorded runs, by digest, into an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/…`) shared between runs, or into an archive
//! registry; checks archived copies (for `repro audit`); removes blobs no recorded run needs
//! (`--gc`); and the words a re-run uses to fall back to the archive.
//!
//! The layout is content-addressed: a blob already there (right size) is not fetched again, a
//! fetched blob is hashed while it streams and only renamed into place when its digest matched,
//! and `index.json` is rewritten under a lock (`.repro-lock`) by write-then-rename, so two
//! archives into one directory at once are safe.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::capture::image::digest::{Algorithm, Digest};
use crate::capture::image::reference::{self, Reference};
use crate::capture::image::registry::content::RawManifest;
use crate::capture::image::registry::{
    RegistryClient, RegistryError, DOCKER_MANIFEST_LIST, OCI_INDEX,
};
use crate::error::Hinted;
use crate::record::{Image, Run};
use crate::store::archive::{ArchiveKind, ArchiveRecord};
use crate::store::StoreError;

/// `index.json` annotation naming an entry; repro names each entry by its digest.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Errors of the archive operations.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{path}: {problem}")]
    Io {
        path: PathBuf,
        problem: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an OCI image layout ({problem})")]
    NotLayout { path: PathBuf, problem: String },
    #[error("{digest} of {reference} is gone from the registry; it can no longer be archived from there")]
    Gone { reference: String, digest: String },
    #[error("manifest {digest}: {problem}")]
    BadManifest { digest: String, problem: String },
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
            ArchiveError::Registry(e) => e.hint(),
            ArchiveError::NotLayout { .. } => Some(
                "give an empty or new directory, or one written by `repro image archive --to`"
                    .into(),
            ),
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
            _ => None,
        }
    }
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

/// An entry of `index.json` or of an image index: a content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct ContentDoc {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

fn is_index_type(media_type: &str, doc: &ContentDoc) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST || doc.manifests.is_some()
}

fn parse_doc(digest: &str, body: &[u8]) -> Result<ContentDoc, ArchiveError> {
    serde_json::from_slice(body).map_err(|e| ArchiveError::BadManifest {
        digest: digest.to_string(),
        problem: format!("not JSON: {e}"),
    })
}

/// The blobs a manifest names (config and layers; foreign layers with URLs are skipped, as
/// registries do not serve them).
fn manifest_blobs(doc: &ContentDoc) -> Vec<Descriptor> {
    let mut out: Vec<Descriptor> = doc.config.iter().cloned().collect();
    for l in doc.layers.iter().flatten() {
        if !l.media_type.contains("foreign") {
            out.push(l.clone());
        }
    }
    out
}

/// A directory in OCI image layout.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

/// Holds the layout's lock file (`flock`), released on drop.
struct LayoutLock(File);

impl Drop for LayoutLock {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by the file, which is still open here.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

impl Layout {
    /// Opens an OCI layout at `dir`, creating it (and `oci-layout`, `index.json`) when the
    /// directory is new or empty. A non-empty directory that is not a layout is refused.
    pub fn create(dir: &Path) -> Result<Layout, ArchiveError> {
        fs::create_dir_all(dir).map_err(io_err(dir, "cannot create the directory"))?;
        let root = fs::canonicalize(dir).map_err(io_err(dir, "cannot resolve the directory"))?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            let non_empty = fs::read_dir(&root)
                .map_err(io_err(&root, "cannot list the directory"))?
                .next()
                .is_some();
            if non_empty {
                return Err(ArchiveError::NotLayout {
                    path: root,
                    problem: "it is not empty and has no oci-layout file".into(),
                });
            }
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let layout = Layout::open(&root)?;
        fs::create_dir_all(layout.root.join("blobs/sha256"))
            .map_err(io_err(&layout.root, "cannot create blobs/sha256"))?;
        if !layout.root.join("index.json").exists() {
            let _lock = layout.lock()?;
            if !layout.root.join("index.json").exists() {
                layout.write_index(&[])?;
            }
        }
        Ok(layout)
    }

    /// Opens an existing OCI layout.
    pub fn open(dir: &Path) -> Result<Layout, ArchiveError> {
        let root = fs::canonicalize(dir).map_err(io_err(dir, "cannot open the archive"))?;
        let marker = root.join("oci-layout");
        let text = fs::read(&marker).map_err(|e| ArchiveError::NotLayout {
            path: root.clone(),
            problem: format!("oci-layout: {e}"),
        })?;
        let v: Value = serde_json::from_slice(&text).map_err(|e| ArchiveError::NotLayout {
            path: root.clone(),
            problem: format!("oci-layout is not JSON: {e}"),
        })?;
        if v.get("imageLayoutVersion").and_then(Value::as_str) != Some("1.0.0") {
            return Err(ArchiveError::NotLayout {
                path: root,
                problem: "oci-layout does not say imageLayoutVersion 1.0.0".into(),
            });
        }
        Ok(Layout { root })
    }

    /// The layout's absolute directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    fn lock(&self) -> Result<LayoutLock, ArchiveError> {
        let p = self.root.join(".repro-lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p, "cannot open the lock file"))?;
        // SAFETY: flock on a descriptor we own; blocks until the other archiver is done.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err(&p, "cannot lock")(std::io::Error::last_os_error()));
        }
        Ok(LayoutLock(f))
    }

    /// The entries of `index.json`.
    pub fn index(&self) -> Result<Vec<Descriptor>, ArchiveError> {
        let p = self.root.join("index.json");
        let bytes = fs::read(&p).map_err(io_err(&p, "cannot read"))?;
        #[derive(Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let i: Index = serde_json::from_slice(&bytes).map_err(|e| ArchiveError::NotLayout {
            path: self.root.clone(),
            problem: format!("index.json: {e}"),
        })?;
        Ok(i.manifests)
    }

    fn write_index(&self, entries: &[Descriptor]) -> Result<(), ArchiveError> {
        let v = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        });
        let mut body = serde_json::to_vec_pretty(&v).expect("index.json");
        body.push(b'\n');
        write_atomic(&self.root.join("index.json"), &body)
    }

    /// Adds entries to `index.json` (one per digest; an entry already there is kept).
    pub fn add_to_index(&self, add: &[Descriptor]) -> Result<(), ArchiveError> {
        let _lock = self.lock()?;
        let mut entries = self.index()?;
        for a in add {
            if !entries.iter().any(|e| e.digest == a.digest) {
                entries.push(a.clone());
            }
        }
        self.write_index(&entries)
    }

    /// Whether the blob is present with the expected size.
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Stores bytes already verified against `digest` (manifests fetched by digest).
    pub fn put_verified(&self, digest: &Digest, bytes: &[u8]) -> Result<(), ArchiveError> {
        let p = self.blob_path(digest);
        if self.has_blob(digest, bytes.len() as u64) {
            return Ok(());
        }
        write_atomic(&p, bytes)
    }

    /// Streams a blob from the registry into the layout unless it is already there; returns the
    /// bytes fetched (0 when present). Nothing lands under its digest name unless it verified.
    pub fn fetch_blob(
        &self,
        client: &RegistryClient,
        from: &Reference,
        d: &Descriptor,
    ) -> Result<u64, ArchiveError> {
        let digest = parse_digest(&d.digest)?;
        if self.has_blob(&digest, d.size) {
            return Ok(0);
        }
        let dest = self.blob_path(&digest);
        let tmp = temp_name(&dest);
        let mut f = File::create(&tmp).map_err(io_err(&tmp, "cannot create"))?;
        let res = client.blob_to(from, &digest, Some(d.size), &mut f);
        let n = match res {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        f.sync_all().map_err(io_err(&tmp, "cannot sync"))?;
        drop(f);
        fs::rename(&tmp, &dest).map_err(io_err(&dest, "cannot rename into place"))?;
        Ok(n)
    }

    /// Reads a stored blob.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, ArchiveError> {
        let p = self.blob_path(digest);
        fs::read(&p).map_err(io_err(&p, "cannot read"))
    }
}

fn temp_name(dest: &Path) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    dest.with_file_name(format!(
        ".tmp-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    let tmp = temp_name(dest);
    let mut f = File::create(&tmp).map_err(io_err(&tmp, "cannot create"))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io_err(&tmp, "cannot write"))?;
    drop(f);
    fs::rename(&tmp, dest).map_err(io_err(dest, "cannot rename into place"))
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
) -> Result<Vec<(Descriptor, RawManifest)>, ArchiveError> {
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

/// Runs `f` over `items` on at most `jobs` threads; results in input order.
pub fn parallel<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    break;
                }
                let r = f(&items[i]);
                if let Ok(mut o) = out.lock() {
                    o[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.expect("every item processed"))
        .collect()
}

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
    let fetched: Vec<Result<Vec<(Descriptor, RawManifest)>, ArchiveError>> =
        parallel(&groups, req.jobs, |g| {
            fetch_manifests(client, g, req.all_platforms)
        });
    // Every blob needed, once (layers are shared between images).
    let mut blobs: BTreeMap<String, (Descriptor, Reference)> = BTreeMap::new();
    for (g, f) in groups.iter().zip(&fetched) {
        let Ok(ms) = f else { continue };
        for (_, m) in ms {
            let doc = parse_doc(&m.digest.to_string(), &m.body)?;
            for b in manifest_blobs(&doc) {
                blobs
                    .entry(b.digest.clone())
                    .or_insert_with(|| (b, g.source.clone()));
            }
        }
    }
    let blob_list: Vec<(Descriptor, Reference)> = blobs.into_values().collect();
    let results: Vec<Result<(u64, bool), ArchiveError>> =
        parallel(&blob_list, req.jobs, |(d, src)| match &req.destination {
            Destination::Layout(_) => {
                let l = layout.as_ref().expect("layout");
                let present = l.has_blob(&parse_digest(&d.digest)?, d.size);
                let n = l.fetch_blob(client, src, d)?;
                Ok((n, present))
            }
            Destination::Registry(dst) => push_blob(client, src, dst, d),
        });
    let mut blob_errors: BTreeMap<String, String> = BTreeMap::new();
    let mut report = ArchiveReport {
        kind: kind.as_str().to_string(),
        location: location.clone(),
        skipped,
        ..Default::default()
    };
    for ((d, _), r) in blob_list.iter().zip(results) {
        match r {
            Ok((_, true)) => report.blobs_present += 1,
            Ok((n, false)) => {
                report.blobs_fetched += 1;
                report.bytes_fetched += n;
            }
            Err(e) => {
                blob_errors.insert(
                    d.digest.clone(),
                    crate::error::CliError::from(e).to_string(),
                );
            }
        }
    }
    for (g, f) in groups.iter().zip(fetched) {
        let mut img = ArchivedImage {
            runs: g.runs.clone(),
            reference: g.reference.clone(),
            digest: g.top.clone(),
            platform_digests: Vec::new(),
            error: None,
        };
        let outcome = f.and_then(|ms| {
            for (_, m) in &ms {
                let doc = parse_doc(&m.digest.to_string(), &m.body)?;
                if let Some(e) = manifest_blobs(&doc)
                    .iter()
                    .find_map(|b| blob_errors.get(&b.digest))
                {
                    return Err(ArchiveError::BadManifest {
                        digest: m.digest.to_string(),
                        problem: format!("a blob could not be copied: {e}"),
                    });
                }
            }
            // Children before parents, so an entry never names content that is not there.
            for (_, m) in ms.iter().rev() {
                match (&layout, &req.destination) {
                    (Some(l), _) => l.put_verified(&m.digest, &m.body)?,
                    (None, Destination::Registry(dst)) => {
                        client.put_manifest(dst, &m.digest.to_string(), &m.media_type, &m.body)?
                    }
                    (None, Destination::Layout(_)) => unreachable!("layout opened above"),
                }
            }
            if let Some(l) = &layout {
                let entries: Vec<Descriptor> = ms.iter().map(|(d, _)| d.clone()).collect();
                l.add_to_index(&entries)?;
            }
            Ok(ms.iter().skip(1).map(|(d, _)| d.digest.clone()).collect())
        });
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
            Err(e) => img.error = Some(crate::error::CliError::from(e).message),
        }
        report.images.push(img);
    }
    Ok(report)
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
    Ok(temp_name(&dir.join("repro-blob")))
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
    let mut problems = Vec::new();
    let location = dir.display().to_string();
    match Layout::open(dir) {
        Err(e) => problems.push(crate::error::CliError::from(e).message),
        Ok(l) => {
            match l.index() {
                Ok(entries) if !entries.iter().any(|e| e.digest == top) => {
                    problems.push(format!("index.json has no entry for {top}"))
                }
                Ok(_) => {}
                Err(e) => problems.push(crate::error::CliError::from(e).message),
            }
            let mut manifests: Vec<String> = vec![top.to_string()];
            manifests.extend(platforms.iter().cloned());
            for m in &manifests {
                check_manifest_tree(&l, m, deep, &mut problems);
            }
        }
    }
    ArchiveHealth {
        kind: ArchiveKind::OciLayout.as_str().into(),
        location,
        intact: problems.is_empty(),
        problems,
    }
}

fn check_blob(l: &Layout, d: &str, size: Option<u64>, deep: bool, problems: &mut Vec<String>) {
    let digest = match parse_digest(d) {
        Ok(x) => x,
        Err(e) => {
            problems.push(e.to_string());
            return;
        }
    };
    let p = l.blob_path(&digest);
    let meta = match fs::metadata(&p) {
        Ok(m) => m,
        Err(_) => {
            problems.push(format!("blob {d} is missing"));
            return;
        }
    };
    if let Some(s) = size.filter(|s| *s != meta.len()) {
        problems.push(format!("blob {d} is {} bytes, expected {s}", meta.len()));
        return;
    }
    if deep {
        match hash_file(&p) {
            Ok(h) if h == d => {}
            Ok(h) => problems.push(format!("blob {d} hashes to {h} (corrupted)")),
            Err(e) => problems.push(format!("blob {d}: {e}")),
        }
    }
}

fn check_manifest_tree(l: &Layout, digest: &str, deep: bool, problems: &mut Vec<String>) {
    let before = problems.len();
    // Manifests are always re-hashed: they are small and everything else hangs off them.
    check_blob(l, digest, None, true, problems);
    if problems.len() > before {
        return;
    }
    let Ok(d) = parse_digest(digest) else { return };
    let Ok(body) = l.read_blob(&d) else { return };
    let Ok(doc) = parse_doc(digest, &body) else {
        problems.push(format!("manifest {digest} is not JSON"));
        return;
    };
    for b in manifest_blobs(&doc) {
        check_blob(l, &b.digest, Some(b.size), deep, problems);
    }
}

/// Hex SHA-256 of a file as `sha256:…`.
pub fn hash_file(p: &Path) -> std::io::Result<String> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// A temporary blob file older than this is left from an interrupted archive (`--gc` removes it).
pub const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What `--gc` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub location: String,
    pub entries_dropped: Vec<String>,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub blobs_kept: usize,
}

/// Removes from the layout every `index.json` entry whose digest no recorded run references
/// (`keep`), then every blob no kept entry reaches. Holds the layout lock throughout.
pub fn gc(dir: &Path, keep: &BTreeSet<String>) -> Result<GcReport, ArchiveError> {
    let l = Layout::open(dir)?;
    let _lock = l.lock()?;
    let entries = l.index()?;
    let (kept, dropped): (Vec<Descriptor>, Vec<Descriptor>) =
        entries.into_iter().partition(|e| keep.contains(&e.digest));
    let mut reach: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<String> = kept.iter().map(|e| e.digest.clone()).collect();
    while let Some(d) = stack.pop() {
        if !reach.insert(d.clone()) {
            continue;
        }
        let Ok(digest) = parse_digest(&d) else {
            continue;
        };
        let Ok(body) = l.read_blob(&digest) else {
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<ContentDoc>(&body) else {
            continue; // a layer or config
        };
        if doc.media_type.is_none()
            && doc.config.is_none()
            && doc.manifests.is_none()
            && doc.layers.is_none()
        {
            continue;
        }
        for b in manifest_blobs(&doc) {
            reach.insert(b.digest);
        }
        for m in doc.manifests.iter().flatten() {
            // Platform manifests of an index are kept only when archived (present).
            stack.push(m.digest.clone());
        }
    }
    let mut report = GcReport {
        location: l.root().display().to_string(),
        entries_dropped: dropped.iter().map(|e| e.digest.clone()).collect(),
        ..Default::default()
    };
    l.write_index(&kept)?;
    let blobs_dir = l.root().join("blobs/sha256");
    let listing = fs::read_dir(&blobs_dir).map_err(io_err(&blobs_dir, "cannot list"))?;
    for e in listing.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(".tmp-") {
            // Left by an interrupted archive; a fresh one may be another archiver's in flight.
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_TEMP);
            if stale {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).map_err(io_err(&e.path(), "cannot remove"))?;
                report.bytes_freed += len;
            }
            continue;
        }
        if name.starts_with('.') {
            continue;
        }
        if reach.contains(&format!("sha256:{name}")) {
            report.blobs_kept += 1;
            continue;
        }
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        fs::remove_file(e.path()).map_err(io_err(&e.path(), "cannot remove"))?;
        report.blobs_removed += 1;
        report.bytes_freed += len;
    }
    Ok(report)
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
