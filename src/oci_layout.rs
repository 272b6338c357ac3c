//! An OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/…`) as a
//! content-addressed store shared between runs and between processes.
//!
//! A blob already there with the right size is not written again; a blob is written to a
//! temporary name, hashed while it streams, and renamed into place only when its digest and size
//! matched, so nothing lands under a digest name that it does not have. `index.json` is rewritten
//! under a lock (`.repro-lock`, `flock`) by write-then-rename, so two archivers into one directory
//! at once are safe. It knows nothing of registries, runs or the store: the caller says which
//! blobs to put and where their bytes come from, and which index entries are still needed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::capture::image::digest::{Algorithm, Digest};
use crate::capture::image::registry::OCI_INDEX;
use crate::error::Hinted;

/// `index.json` annotation naming an entry; repro names each entry by its digest.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A temporary blob file older than this is left from an interrupted write (`gc` removes it).
pub const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Failures of the layout store; each names the directory or file.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{path}: {problem}")]
    Io {
        path: PathBuf,
        problem: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an OCI image layout ({problem})")]
    NotLayout { path: PathBuf, problem: String },
    #[error("blob {digest}: {problem}")]
    BadDigest { digest: String, problem: String },
    #[error(
        "blob {digest}: got {got_size} bytes hashing to {got}, expected {size} bytes; not stored"
    )]
    Mismatch {
        digest: String,
        size: u64,
        got: String,
        got_size: u64,
    },
}

impl Hinted for LayoutError {
    fn hint(&self) -> Option<String> {
        match self {
            LayoutError::NotLayout { .. } => Some(
                "give an empty or new directory, or one written by `repro image archive --to`"
                    .into(),
            ),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, LayoutError>;

fn io_err(path: &Path, problem: &str) -> impl Fn(std::io::Error) -> LayoutError {
    let path = path.to_path_buf();
    let problem = problem.to_string();
    move |source| LayoutError::Io {
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

/// The parts of a manifest or an image index that name other content.
#[derive(Debug, Deserialize)]
pub struct Content {
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
}

impl Content {
    /// Parses a manifest or index; a layer or config blob is usually not JSON (an error).
    pub fn parse(body: &[u8]) -> serde_json::Result<Content> {
        serde_json::from_slice(body)
    }

    /// The blobs a manifest names (config and layers; foreign layers with URLs are skipped, as
    /// registries do not serve them).
    pub fn blobs(&self) -> Vec<Descriptor> {
        let mut out: Vec<Descriptor> = self.config.iter().cloned().collect();
        for l in self.layers.iter().flatten() {
            if !l.media_type.contains("foreign") {
                out.push(l.clone());
            }
        }
        out
    }

    /// Whether the JSON had none of the fields of a manifest or index (a config blob, say).
    fn is_empty(&self) -> bool {
        self.media_type.is_none()
            && self.config.is_none()
            && self.manifests.is_none()
            && self.layers.is_none()
    }
}

/// What [`Layout::gc`] removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub location: String,
    pub entries_dropped: Vec<String>,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub blobs_kept: usize,
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
    pub fn create(dir: &Path) -> Result<Layout> {
        fs::create_dir_all(dir).map_err(io_err(dir, "cannot create the directory"))?;
        let root = fs::canonicalize(dir).map_err(io_err(dir, "cannot resolve the directory"))?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            let non_empty = fs::read_dir(&root)
                .map_err(io_err(&root, "cannot list the directory"))?
                .next()
                .is_some();
            if non_empty {
                return Err(LayoutError::NotLayout {
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
    pub fn open(dir: &Path) -> Result<Layout> {
        let root = fs::canonicalize(dir).map_err(io_err(dir, "cannot open the archive"))?;
        let marker = root.join("oci-layout");
        let text = fs::read(&marker).map_err(|e| LayoutError::NotLayout {
            path: root.clone(),
            problem: format!("oci-layout: {e}"),
        })?;
        let v: Value = serde_json::from_slice(&text).map_err(|e| LayoutError::NotLayout {
            path: root.clone(),
            problem: format!("oci-layout is not JSON: {e}"),
        })?;
        if v.get("imageLayoutVersion").and_then(Value::as_str) != Some("1.0.0") {
            return Err(LayoutError::NotLayout {
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

    fn lock(&self) -> Result<LayoutLock> {
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
    pub fn index(&self) -> Result<Vec<Descriptor>> {
        let p = self.root.join("index.json");
        let bytes = fs::read(&p).map_err(io_err(&p, "cannot read"))?;
        #[derive(Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let i: Index = serde_json::from_slice(&bytes).map_err(|e| LayoutError::NotLayout {
            path: self.root.clone(),
            problem: format!("index.json: {e}"),
        })?;
        Ok(i.manifests)
    }

    fn write_index(&self, entries: &[Descriptor]) -> Result<()> {
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
    pub fn add_to_index(&self, add: &[Descriptor]) -> Result<()> {
        let _lock = self.lock()?;
        let mut entries = self.index()?;
        for a in add {
            if !entries.iter().any(|e| e.digest == a.digest) {
                entries.push(a.clone());
            }
        }
        self.write_index(&entries)
    }

    /// Whether the blob is present with the expected size and hashes to its digest (hashed only
    /// when it changed since it was last found intact: see [`Layout::blob_state`]).
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        self.blob_state(digest, Some(size), false) == BlobState::Intact
    }

    fn verified_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(VERIFIED_DIR).join(digest.hex())
    }

    /// What the stored blob is: absent, intact (its size, when given, and its digest match), or
    /// damaged (why). A blob is trusted without hashing only when its file is exactly as it was
    /// when last found intact — device, inode, size, mtime and ctime, the dataset cache's rule,
    /// kept in `.repro-verified/HEX` — so a byte flipped in place (same size) is always seen.
    /// `rehash` hashes it whatever the record says.
    pub fn blob_state(&self, digest: &Digest, size: Option<u64>, rehash: bool) -> BlobState {
        let p = self.blob_path(digest);
        let Ok(meta) = fs::metadata(&p) else {
            return BlobState::Absent;
        };
        if !meta.is_file() {
            return BlobState::Damaged("is not a file".into());
        }
        if let Some(s) = size.filter(|s| *s != meta.len()) {
            return BlobState::Damaged(format!("is {} bytes, expected {s}", meta.len()));
        }
        let now = file_stamp(&meta);
        let record = self.verified_path(digest);
        if !rehash && fs::read_to_string(&record).is_ok_and(|s| s == now) {
            return BlobState::Intact;
        }
        match hash_file(&p) {
            Ok(h) if h == digest.to_string() => {
                self.remember_intact(digest, &now);
                BlobState::Intact
            }
            Ok(h) => BlobState::Damaged(format!("hashes to {h} (corrupted)")),
            Err(e) => BlobState::Damaged(e.to_string()),
        }
    }

    /// Records that the blob, as its file is now (`stamp`), hashes to its digest.
    fn remember_intact(&self, digest: &Digest, stamp: &str) {
        let dir = self.root.join(VERIFIED_DIR);
        // Only a cache: without it every check hashes again.
        if fs::create_dir_all(&dir).is_ok() {
            let _ = write_atomic(&self.verified_path(digest), stamp.as_bytes());
        }
    }

    /// After a blob was written (hashed as it streamed): its file as it is now is intact.
    fn remember_written(&self, digest: &Digest) {
        if let Ok(m) = fs::metadata(self.blob_path(digest)) {
            self.remember_intact(digest, &file_stamp(&m));
        }
    }

    /// Stores `bytes` (a manifest) under `digest` unless it is already there intact (a damaged
    /// copy is replaced); refused when they do not hash to it.
    pub fn put_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        if self.has_blob(digest, bytes.len() as u64) {
            return Ok(());
        }
        let got = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        if got != digest.to_string() {
            return Err(LayoutError::Mismatch {
                digest: digest.to_string(),
                size: bytes.len() as u64,
                got,
                got_size: bytes.len() as u64,
            });
        }
        write_atomic(&self.blob_path(digest), bytes)?;
        self.remember_written(digest);
        Ok(())
    }

    /// Stores the blob `d` unless it is already there intact (size and digest; a damaged copy
    /// is fetched again and replaced): `fetch` writes its bytes
    /// (and returns how many), they are hashed as they stream to a temporary file, which is
    /// renamed into place only when digest and size match. Returns the bytes written (0 when
    /// present). `fetch`'s own error is returned as it is.
    pub fn put_blob<E: From<LayoutError>>(
        &self,
        d: &Descriptor,
        fetch: impl FnOnce(&mut dyn Write) -> std::result::Result<u64, E>,
    ) -> std::result::Result<u64, E> {
        let digest = parse_digest(&d.digest)?;
        if self.has_blob(&digest, d.size) {
            return Ok(0);
        }
        let dest = self.blob_path(&digest);
        let tmp = temp_sibling(&dest);
        let file = File::create(&tmp).map_err(io_err(&tmp, "cannot create"))?;
        let mut out = Hashing {
            file,
            hash: Sha256::new(),
            len: 0,
        };
        let n = match fetch(&mut out) {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = settle(out, d, &tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        self.remember_written(&digest);
        Ok(n)
    }

    /// Reads a stored blob.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        fs::read(&p).map_err(io_err(&p, "cannot read"))
    }

    /// What is wrong with the copy of `top` and what `platforms` need (for an index: those
    /// platform manifests; empty = the manifest is `top` itself): an entry in `index.json`,
    /// every manifest present and re-hashed, every blob they name present with its size and,
    /// with `deep`, re-hashed. Empty when intact.
    pub fn check(&self, top: &str, platforms: &[String], deep: bool) -> Vec<String> {
        let mut problems = Vec::new();
        match self.index() {
            Ok(entries) if !entries.iter().any(|e| e.digest == top) => {
                problems.push(format!("index.json has no entry for {top}"))
            }
            Ok(_) => {}
            Err(e) => problems.push(e.to_string()),
        }
        for m in std::iter::once(top).chain(platforms.iter().map(String::as_str)) {
            self.check_manifest_tree(m, deep, &mut problems);
        }
        problems
    }

    fn check_blob(&self, d: &str, size: Option<u64>, deep: bool, problems: &mut Vec<String>) {
        let digest = match parse_digest(d) {
            Ok(x) => x,
            Err(e) => {
                problems.push(e.to_string());
                return;
            }
        };
        match self.blob_state(&digest, size, deep) {
            BlobState::Intact => {}
            BlobState::Absent => problems.push(format!("blob {d} is missing")),
            BlobState::Damaged(why) => problems.push(format!("blob {d} {why}")),
        }
    }

    fn check_manifest_tree(&self, digest: &str, deep: bool, problems: &mut Vec<String>) {
        let before = problems.len();
        // Manifests are always re-hashed: they are small and everything else hangs off them.
        self.check_blob(digest, None, true, problems);
        if problems.len() > before {
            return;
        }
        let Ok(d) = parse_digest(digest) else { return };
        let Ok(body) = self.read_blob(&d) else { return };
        let Ok(doc) = Content::parse(&body) else {
            problems.push(format!("manifest {digest} is not JSON"));
            return;
        };
        for b in doc.blobs() {
            self.check_blob(&b.digest, Some(b.size), deep, problems);
        }
    }

    /// Removes every `index.json` entry whose digest is not in `keep`, then every blob no kept
    /// entry reaches, and temporary files older than [`STALE_TEMP`]. Holds the lock throughout.
    pub fn gc(&self, keep: &BTreeSet<String>) -> Result<GcReport> {
        let _lock = self.lock()?;
        let entries = self.index()?;
        let (kept, dropped): (Vec<Descriptor>, Vec<Descriptor>) =
            entries.into_iter().partition(|e| keep.contains(&e.digest));
        let reach = self.reachable(&kept);
        let mut report = GcReport {
            location: self.root().display().to_string(),
            entries_dropped: dropped.iter().map(|e| e.digest.clone()).collect(),
            ..Default::default()
        };
        self.write_index(&kept)?;
        let blobs_dir = self.root().join("blobs/sha256");
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
            let _ = fs::remove_file(self.root.join(VERIFIED_DIR).join(&name));
            report.blobs_removed += 1;
            report.bytes_freed += len;
        }
        Ok(report)
    }

    /// Every digest the entries reach: themselves, the blobs of their manifests, and the
    /// platform manifests of an index that are present (only those were archived).
    fn reachable(&self, entries: &[Descriptor]) -> BTreeSet<String> {
        let mut reach: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<String> = entries.iter().map(|e| e.digest.clone()).collect();
        while let Some(d) = stack.pop() {
            if !reach.insert(d.clone()) {
                continue;
            }
            let Ok(digest) = parse_digest(&d) else {
                continue;
            };
            let Ok(body) = self.read_blob(&digest) else {
                continue;
            };
            let Ok(doc) = Content::parse(&body) else {
                continue; // a layer or config
            };
            if doc.is_empty() {
                continue;
            }
            for b in doc.blobs() {
                reach.insert(b.digest);
            }
            for m in doc.manifests.iter().flatten() {
                stack.push(m.digest.clone());
            }
        }
        reach
    }
}

/// A file that hashes and counts what is written to it.
struct Hashing {
    file: File,
    hash: Sha256,
    len: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Renames a written blob into place if it has the descriptor's digest and size.
fn settle(written: Hashing, d: &Descriptor, tmp: &Path, dest: &Path) -> Result<()> {
    let Hashing { file, hash, len } = written;
    let got = format!("sha256:{}", hex::encode(hash.finalize()));
    if got != d.digest || len != d.size {
        return Err(LayoutError::Mismatch {
            digest: d.digest.clone(),
            size: d.size,
            got,
            got_size: len,
        });
    }
    file.sync_all().map_err(io_err(tmp, "cannot sync"))?;
    drop(file);
    fs::rename(tmp, dest).map_err(io_err(dest, "cannot rename into place"))
}

/// A unique temporary name beside `dest` (`.tmp-NAME-PID-N`), renamed over it when complete.
pub fn temp_sibling(dest: &Path) -> PathBuf {
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

/// Directory (in the layout) of the records of blobs found intact.
const VERIFIED_DIR: &str = ".repro-verified";

/// A stored blob checked against its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobState {
    Absent,
    Intact,
    /// Present but not what its name says: why (size, digest, not a file).
    Damaged(String),
}

/// The identity of a file as it is now: device, inode, size, mtime and ctime (nanoseconds).
fn file_stamp(m: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{} {} {} {}.{:09} {}.{:09}\n",
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(dest);
    let mut f = File::create(&tmp).map_err(io_err(&tmp, "cannot create"))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io_err(&tmp, "cannot write"))?;
    drop(f);
    fs::rename(&tmp, dest).map_err(io_err(dest, "cannot rename into place"))
}

/// A sha256 digest (the only algorithm the layout stores).
pub fn parse_digest(s: &str) -> Result<Digest> {
    let d = Digest::parse(s).map_err(|e| LayoutError::BadDigest {
        digest: s.to_string(),
        problem: e.to_string(),
    })?;
    if d.algorithm() != Algorithm::Sha256 {
        return Err(LayoutError::BadDigest {
            digest: s.to_string(),
            problem: "only sha256 content can be archived".into(),
        });
    }
    Ok(d)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    fn desc(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }

    fn digest(d: &Descriptor) -> Digest {
        parse_digest(&d.digest).unwrap()
    }

    /// Puts `bytes` as the blob `d` describes, through the streaming path.
    fn put(l: &Layout, d: &Descriptor, bytes: &[u8]) -> Result<u64> {
        l.put_blob(d, |out| {
            out.write_all(bytes)
                .map_err(io_err(Path::new("source"), "cannot write"))?;
            Ok(bytes.len() as u64)
        })
    }

    /// A manifest naming `config` and `layers`, stored; returns its descriptor.
    fn manifest(l: &Layout, config: &Descriptor, layers: &[&Descriptor]) -> Descriptor {
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config,
            "layers": layers,
        }))
        .unwrap();
        let d = desc(MANIFEST, &body);
        l.put_bytes(&digest(&d), &body).unwrap();
        d
    }

    /// Stores an image (config and one layer of its own, plus `shared`) and indexes it.
    fn image(l: &Layout, name: &str, shared: &Descriptor) -> (Descriptor, Vec<Descriptor>) {
        let config = desc("application/vnd.oci.image.config.v1+json", name.as_bytes());
        let own = desc(
            "application/vnd.oci.image.layer.v1.tar",
            format!("{name} layer").as_bytes(),
        );
        put(l, &config, name.as_bytes()).unwrap();
        put(l, &own, format!("{name} layer").as_bytes()).unwrap();
        let m = manifest(l, &config, &[&own, shared]);
        l.add_to_index(std::slice::from_ref(&m)).unwrap();
        (m, vec![config, own])
    }

    fn temp_files(l: &Layout) -> Vec<String> {
        fs::read_dir(l.root().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect()
    }

    #[test]
    fn a_new_directory_becomes_a_layout_and_a_foreign_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(&dir.path().join("archive")).unwrap();
        let marker: Value =
            serde_json::from_slice(&fs::read(l.root().join("oci-layout")).unwrap()).unwrap();
        assert_eq!(marker["imageLayoutVersion"], "1.0.0");
        assert!(l.index().unwrap().is_empty());
        assert!(l.root().join("blobs/sha256").is_dir());
        // Opening it again keeps what it holds.
        let d = desc("x", b"kept");
        put(&l, &d, b"kept").unwrap();
        l.add_to_index(std::slice::from_ref(&d)).unwrap();
        let again = Layout::create(l.root()).unwrap();
        assert_eq!(again.index().unwrap(), [d]);

        let foreign = dir.path().join("photos");
        fs::create_dir(&foreign).unwrap();
        fs::write(foreign.join("cat.jpg"), b"meow").unwrap();
        let err = Layout::create(&foreign).unwrap_err();
        assert!(matches!(err, LayoutError::NotLayout { .. }), "{err:?}");
        assert!(err.hint().is_some());
        assert!(!foreign.join("oci-layout").exists());
        assert!(matches!(
            Layout::open(&dir.path().join("missing")),
            Err(LayoutError::Io { .. })
        ));
    }

    #[test]
    fn a_blob_lands_only_under_its_own_digest() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(dir.path()).unwrap();
        let d = desc("layer", b"the real bytes");
        assert_eq!(put(&l, &d, b"the real bytes").unwrap(), 14);
        assert_eq!(
            fs::read(l.blob_path(&digest(&d))).unwrap(),
            b"the real bytes"
        );
        // Present with its size: the source is not asked again.
        let n = l
            .put_blob(&d, |_| -> Result<u64> {
                panic!("fetched a blob that is there")
            })
            .unwrap();
        assert_eq!(n, 0);

        // Other bytes of the same size, or of another size: refused, nothing left behind.
        let other = desc("layer", b"the fake bytes");
        let err = put(&l, &other, b"the real bytes!").unwrap_err();
        assert!(
            matches!(err, LayoutError::Mismatch { got_size: 15, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("expected 14 bytes"), "{err}");
        let err = put(&l, &other, b"the real bytes").unwrap_err();
        assert!(matches!(err, LayoutError::Mismatch { .. }), "{err:?}");
        assert!(!l.blob_path(&digest(&other)).exists());
        assert!(temp_files(&l).is_empty(), "{:?}", temp_files(&l));

        // The source's own failure comes back as it is, and leaves nothing either.
        let err = l
            .put_blob(&other, |out| {
                out.write_all(b"the fa").unwrap();
                Err(LayoutError::BadDigest {
                    digest: "source".into(),
                    problem: "connection reset".into(),
                })
            })
            .unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err}");
        assert!(!l.blob_path(&digest(&other)).exists());
        assert!(temp_files(&l).is_empty());

        // Whole bytes (manifests) are checked the same way.
        let m = desc(MANIFEST, b"{}");
        assert!(matches!(
            l.put_bytes(&digest(&m), b"{ }"),
            Err(LayoutError::Mismatch { .. })
        ));
        l.put_bytes(&digest(&m), b"{}").unwrap();
        assert_eq!(l.read_blob(&digest(&m)).unwrap(), b"{}");
        // Only sha256 content.
        let err = parse_digest(&format!("sha512:{}", "a".repeat(128))).unwrap_err();
        assert!(err.to_string().contains("only sha256"), "{err}");
    }

    #[test]
    fn a_blob_of_the_wrong_size_is_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(dir.path()).unwrap();
        let d = desc("layer", b"0123456789");
        // An interrupted copy from an older tool left it short under its final name.
        fs::write(l.blob_path(&digest(&d)), b"01234").unwrap();
        assert!(!l.has_blob(&digest(&d), d.size));
        let top = manifest(&l, &desc("c", b"c"), &[&d]);
        put(&l, &desc("c", b"c"), b"c").unwrap();
        l.add_to_index(std::slice::from_ref(&top)).unwrap();
        let problems = l.check(&top.digest, &[], false);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("is 5 bytes, expected 10"),
            "{problems:?}"
        );

        let mut asked = 0;
        let n = l
            .put_blob(&d, |out| {
                asked += 1;
                out.write_all(b"0123456789")
                    .map_err(io_err(Path::new("source"), "cannot write"))?;
                Ok::<u64, LayoutError>(10)
            })
            .unwrap();
        assert_eq!((asked, n), (1, 10));
        assert!(l.has_blob(&digest(&d), d.size));
        assert_eq!(l.check(&top.digest, &[], true), Vec::<String>::new());
    }

    #[test]
    fn concurrent_writers_keep_every_index_entry_and_blob() {
        let dir = tempfile::tempdir().unwrap();
        let root = Layout::create(dir.path()).unwrap().root().to_path_buf();
        let shared = Arc::new(desc("layer", b"shared by everyone"));
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let root = root.clone();
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    // Each writer its own handle (and lock file descriptor), as two processes.
                    let l = Layout::open(&root).unwrap();
                    for i in 0..10 {
                        put(&l, &shared, b"shared by everyone").unwrap();
                        let bytes = format!("writer {w} blob {i}");
                        let d = desc("layer", bytes.as_bytes());
                        put(&l, &d, bytes.as_bytes()).unwrap();
                        l.add_to_index(&[d, (*shared).clone()]).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let l = Layout::open(&root).unwrap();
        let index = l.index().unwrap();
        assert_eq!(index.len(), 81, "80 own entries and the shared one, once");
        let distinct: BTreeSet<&str> = index.iter().map(|e| e.digest.as_str()).collect();
        assert_eq!(distinct.len(), 81);
        for e in &index {
            assert!(l.has_blob(&digest(e), e.size), "{}", e.digest);
        }
        assert!(temp_files(&l).is_empty(), "{:?}", temp_files(&l));
    }

    #[test]
    fn gc_keeps_what_kept_entries_reach_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(dir.path()).unwrap();
        let shared = desc("layer", b"base layer");
        put(&l, &shared, b"base layer").unwrap();
        let (kept, kept_blobs) = image(&l, "kept", &shared);
        let (dropped, dropped_blobs) = image(&l, "dropped", &shared);
        // A multi-arch entry: the index and the one platform manifest archived (`kept`'s).
        let index_body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [kept, desc(MANIFEST, b"a platform never archived")],
        }))
        .unwrap();
        let multi = desc(OCI_INDEX, &index_body);
        l.put_bytes(&digest(&multi), &index_body).unwrap();
        l.add_to_index(std::slice::from_ref(&multi)).unwrap();
        // Left by interrupted writers: one a day old, one in flight.
        let stale = l.root().join("blobs/sha256/.tmp-old-1-0");
        fs::write(&stale, b"old").unwrap();
        let day_ago = std::time::SystemTime::now() - STALE_TEMP * 2;
        File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(day_ago)
            .unwrap();
        let fresh = l.root().join("blobs/sha256/.tmp-new-1-1");
        fs::write(&fresh, b"new").unwrap();

        let keep: BTreeSet<String> = [multi.digest.clone()].into();
        let report = l.gc(&keep).unwrap();
        assert_eq!(
            report.entries_dropped,
            [kept.digest.clone(), dropped.digest.clone()]
        );
        assert_eq!(l.index().unwrap(), std::slice::from_ref(&multi));
        for d in [&multi, &kept, &shared]
            .into_iter()
            .chain(kept_blobs.iter())
        {
            assert!(l.has_blob(&digest(d), d.size), "{} was removed", d.digest);
        }
        for d in std::iter::once(&dropped).chain(dropped_blobs.iter()) {
            assert!(!l.blob_path(&digest(d)).exists(), "{} was kept", d.digest);
        }
        assert_eq!(report.blobs_kept, 5);
        assert_eq!(report.blobs_removed, 3);
        assert!(!stale.exists());
        assert!(
            fresh.exists(),
            "another archiver's file in flight is left alone"
        );
        assert_eq!(
            l.check(&multi.digest, std::slice::from_ref(&kept.digest), true),
            Vec::<String>::new()
        );

        // Keeping nothing empties it (but the temporary file in flight).
        let report = l.gc(&BTreeSet::new()).unwrap();
        assert_eq!(report.blobs_removed, 5);
        assert!(l.index().unwrap().is_empty());
        assert!(fresh.exists());
    }

    #[test]
    fn check_reports_what_is_missing_short_or_corrupted() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(dir.path()).unwrap();
        let shared = desc("layer", b"base layer");
        put(&l, &shared, b"base layer").unwrap();
        let (m, _) = image(&l, "app", &shared);
        assert_eq!(l.check(&m.digest, &[], true), Vec::<String>::new());
        let path = l.blob_path(&digest(&shared));
        // Same size, other bytes: the file changed since it was found intact, so even a
        // check without `deep` hashes it again; and an unchanged file is not hashed again.
        assert!(l.has_blob(&digest(&shared), shared.size));
        fs::write(&path, b"BASE LAYER").unwrap();
        for deep in [false, true] {
            let p = l.check(&m.digest, &[], deep);
            assert!(p.len() == 1 && p[0].ends_with("(corrupted)"), "{p:?}");
        }
        assert!(!l.has_blob(&digest(&shared), shared.size));
        // Put again: the damaged copy is replaced by the right bytes.
        put(&l, &shared, b"base layer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"base layer");
        assert_eq!(l.check(&m.digest, &[], false), Vec::<String>::new());
        fs::remove_file(&path).unwrap();
        let gone = l.check(&m.digest, &[], false);
        assert_eq!(gone, [format!("blob {} is missing", shared.digest)]);
        let other = desc(MANIFEST, b"never stored");
        let problems = l.check(&other.digest, &[], false);
        assert_eq!(
            problems,
            [
                format!("index.json has no entry for {}", other.digest),
                format!("blob {} is missing", other.digest)
            ]
        );
    }
}
