//! The object store of kept outputs: files named by the SHA-256 of their bytes under
//! `<data dir>/objects/sha256/ab/cdef…` (0600 files in a 0700 tree). An object is written under a
//! temporary name and renamed into place, so it is whole or absent; its name is the digest of
//! the bytes written, hashed from the private copy, never from a second read of a file a job may
//! still be writing. Copies are reflinks (`FICLONE`) where the filesystem shares extents, else
//! `copy_file_range` with the copy hashed as it lands, else a read/hash/write loop.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;

use sha2::{Digest, Sha256};

/// Bytes copied per `copy_file_range` call, and the unit of the hashing pipeline.
const CHUNK: usize = 8 << 20;

/// Files below this size are copied, then hashed, on one thread.
const PIPELINE_MIN: u64 = 32 << 20;

/// The content-addressed store beside a database.
#[derive(Debug, Clone)]
pub struct Objects {
    root: PathBuf,
}

/// How an object's bytes got there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyHow {
    /// Shared extents (`FICLONE`): no bytes copied.
    Reflink,
    /// In-kernel copy (`copy_file_range`).
    CopyRange,
    /// Read, hash and write in this process.
    Copy,
}

/// The result of copying a file while hashing the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub sha256: [u8; 32],
    pub bytes: u64,
    pub how: CopyHow,
}

/// One file put into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// 64 lowercase hex: the object's name.
    pub sha256: String,
    pub bytes: u64,
    pub how: CopyHow,
    /// The object did not exist before (a later failure of the same output may remove it).
    pub new: bool,
    /// The source's size or modification time moved while it was copied: the object holds the
    /// bytes read, which may be neither the old nor the new file.
    pub changed: bool,
}

/// Errors of the object store; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write to the object store {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no space left on the device of the object store {root}")]
    NoSpace { root: PathBuf },
    #[error("{sha256} is not a SHA-256 digest (64 lowercase hex digits)")]
    BadName { sha256: String },
}

impl crate::error::Hinted for ObjectError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            ObjectError::Read { .. } => "make the file readable to the user running repro".into(),
            ObjectError::Write { path, .. } => format!(
                "check the permissions of {} (it should belong to you, mode 0700), or set `keep_outputs = false`",
                path.display()
            ),
            ObjectError::NoSpace { .. } => "free space (`repro gc --outputs` removes kept outputs by policy, `repro du` shows what they take), or lower `keep_outputs_max`".into(),
            ObjectError::BadName { .. } => "give the full 64-hex SHA-256".into(),
        })
    }
}

fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

impl Objects {
    /// The store of the database at `db`: `objects/` in the same directory.
    pub fn beside(db: &Path) -> Objects {
        let dir = db.parent().filter(|p| !p.as_os_str().is_empty());
        Objects {
            root: dir.unwrap_or(Path::new(".")).join("objects"),
        }
    }

    /// The store rooted at `root` (the `objects` directory itself).
    pub fn at(root: PathBuf) -> Objects {
        Objects { root }
    }

    /// The `objects` directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the object named `sha256` (64 lowercase hex) lives, whether or not it exists.
    pub fn path_of(&self, sha256: &str) -> Result<PathBuf, ObjectError> {
        if !is_sha256_hex(sha256) {
            return Err(ObjectError::BadName {
                sha256: sha256.into(),
            });
        }
        Ok(self
            .root
            .join("sha256")
            .join(&sha256[..2])
            .join(&sha256[2..]))
    }

    /// Whether the object is present (not whether it is intact: see [`Objects::verify`]).
    pub fn contains(&self, sha256: &str) -> bool {
        self.path_of(sha256).is_ok_and(|p| p.is_file())
    }

    fn write_err(&self, source: io::Error) -> ObjectError {
        if is_no_space(&source) {
            ObjectError::NoSpace {
                root: self.root.clone(),
            }
        } else {
            ObjectError::Write {
                path: self.root.clone(),
                source,
            }
        }
    }

    fn mkdirs(&self, dir: &Path) -> Result<(), ObjectError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| self.write_err(e))
    }

    /// A new private temporary file inside the store (same filesystem as the objects).
    fn temp(&self) -> Result<(PathBuf, File), ObjectError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = self.root.join("tmp");
        self.mkdirs(&dir)?;
        loop {
            let name = format!(
                "{}-{}-{}.part",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed),
                nonce()
            );
            let path = dir.join(name);
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(f) => return Ok((path, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(self.write_err(e)),
            }
        }
    }

    /// Moves a finished temporary file to its name; `false` when the object already existed
    /// (the temporary is removed: same name, same bytes).
    fn settle(&self, tmp: &Path, sha256: &str) -> Result<bool, ObjectError> {
        let dest = self.path_of(sha256)?;
        if dest.is_file() {
            let _ = fs::remove_file(tmp);
            refresh(&dest);
            return Ok(false);
        }
        if let Some(parent) = dest.parent() {
            self.mkdirs(parent)?;
        }
        fs::rename(tmp, &dest).map_err(|e| {
            let _ = fs::remove_file(tmp);
            self.write_err(e)
        })?;
        Ok(true)
    }

    /// Copies the file at `src` into the store, hashing the copy.
    pub fn store_file(&self, src: &Path) -> Result<Stored, ObjectError> {
        let read_err = |source| ObjectError::Read {
            path: src.to_path_buf(),
            source,
        };
        let f = File::open(src).map_err(read_err)?;
        let before = f.metadata().map_err(read_err)?;
        let (tmp, out) = self.temp()?;
        let copied = match copy_hashing(&f, &out, before.len()) {
            Ok(c) => c,
            Err(CopyError::Read(e)) => {
                let _ = fs::remove_file(&tmp);
                return Err(read_err(e));
            }
            Err(CopyError::Write(e)) => {
                let _ = fs::remove_file(&tmp);
                return Err(self.write_err(e));
            }
        };
        drop(out);
        let after = f.metadata().map_err(read_err)?;
        let changed = after.len() != before.len()
            || after.mtime() != before.mtime()
            || after.mtime_nsec() != before.mtime_nsec();
        let sha256 = hex::encode(copied.sha256);
        let new = self.settle(&tmp, &sha256)?;
        Ok(Stored {
            sha256,
            bytes: copied.bytes,
            how: copied.how,
            new,
            changed,
        })
    }

    /// Puts `data` into the store; returns its name.
    pub fn store_bytes(&self, data: &[u8]) -> Result<String, ObjectError> {
        let sha256 = hex::encode(Sha256::digest(data));
        if self.contains(&sha256) {
            refresh(&self.path_of(&sha256)?);
            return Ok(sha256);
        }
        let (tmp, mut out) = self.temp()?;
        if let Err(e) = out.write_all(data) {
            let _ = fs::remove_file(&tmp);
            return Err(self.write_err(e));
        }
        drop(out);
        self.settle(&tmp, &sha256)?;
        Ok(sha256)
    }

    /// Reads a whole (small) object, checking its bytes against its name.
    pub fn read(&self, sha256: &str) -> Result<Option<Vec<u8>>, ObjectError> {
        let path = self.path_of(sha256)?;
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ObjectError::Read { path, source }),
        };
        if hex::encode(Sha256::digest(&data)) != sha256 {
            return Ok(None);
        }
        Ok(Some(data))
    }

    /// Rehashes an object: `Ok(true)` when its bytes still match its name, `Ok(false)` when
    /// they do not, `None` when it is absent.
    pub fn verify(&self, sha256: &str) -> Result<Option<bool>, ObjectError> {
        let path = self.path_of(sha256)?;
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ObjectError::Read { path, source }),
        };
        let (sha, _) = hash_reader(&f).map_err(|source| ObjectError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(Some(hex::encode(sha) == sha256))
    }

    /// Removes an object; `false` when it was not there.
    pub fn remove(&self, sha256: &str) -> Result<bool, ObjectError> {
        let path = self.path_of(sha256)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(parent) = path.parent() {
                    let _ = fs::remove_dir(parent);
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.write_err(e)),
        }
    }

    /// Every object present: (name, size in bytes), sorted by name. Files that are not objects
    /// (a stray name) are skipped.
    pub fn list(&self) -> Result<Vec<(String, u64)>, ObjectError> {
        Ok(self
            .entries()?
            .into_iter()
            .map(|e| (e.sha256, e.bytes))
            .collect())
    }

    /// Every object present with its sizes and modification time, sorted by name (`repro du`,
    /// `repro gc --outputs`). Files that are not objects are skipped.
    pub fn entries(&self) -> Result<Vec<ObjectEntry>, ObjectError> {
        let base = self.root.join("sha256");
        let mut out = Vec::new();
        let rd = match fs::read_dir(&base) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(source) => return Err(ObjectError::Read { path: base, source }),
        };
        for dir in rd.flatten() {
            let prefix = dir.file_name().to_string_lossy().into_owned();
            let Ok(inner) = fs::read_dir(dir.path()) else {
                continue;
            };
            for f in inner.flatten() {
                let sha256 = format!("{prefix}{}", f.file_name().to_string_lossy());
                if !is_sha256_hex(&sha256) {
                    continue;
                }
                let Ok(m) = f.metadata() else { continue };
                if m.is_file() {
                    out.push(ObjectEntry {
                        sha256,
                        bytes: m.len(),
                        disk_bytes: m.blocks() * 512,
                        modified: m.modified().unwrap_or(std::time::UNIX_EPOCH),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        Ok(out)
    }

    /// Temporary files in the store: writers at work, and those left by writers that died
    /// (older than an hour: what [`Objects::sweep_temps`] removes).
    pub fn temps(&self) -> Temps {
        let mut t = Temps::default();
        let Ok(rd) = fs::read_dir(self.root.join("tmp")) else {
            return t;
        };
        for m in rd.flatten().filter_map(|e| e.metadata().ok()) {
            if !m.is_file() {
                continue;
            }
            t.files += 1;
            t.bytes += m.len();
            if stale(&m) {
                t.stale_files += 1;
                t.stale_bytes += m.len();
            }
        }
        t
    }

    /// Removes temporary files left by writers that died (older than an hour); returns how
    /// many were removed and their bytes.
    pub fn sweep_temps(&self) -> (u64, u64) {
        let Ok(rd) = fs::read_dir(self.root.join("tmp")) else {
            return (0, 0);
        };
        let (mut n, mut bytes) = (0, 0);
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if stale(&m) && fs::remove_file(e.path()).is_ok() {
                n += 1;
                bytes += m.len();
            }
        }
        (n, bytes)
    }

    /// The store's clock now: the modification time a file written now gets (the kernel's
    /// coarse clock, at the filesystem's granularity), to compare objects' times with. Without
    /// a store yet, two seconds ago (coarser than any local filesystem's granularity).
    pub fn clock(&self) -> std::time::SystemTime {
        let fallback = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
        if !self.root.join("tmp").is_dir() {
            return fallback;
        }
        match self.temp() {
            Ok((path, f)) => {
                let t = f.metadata().and_then(|m| m.modified());
                drop(f);
                let _ = fs::remove_file(&path);
                t.unwrap_or(fallback)
            }
            Err(_) => fallback,
        }
    }

    /// Takes the store's lock (`objects/lock`, `flock`): [`LockMode::Keep`] (shared) by whoever
    /// writes objects, held until its database rows name them; [`LockMode::Delete`]
    /// (exclusive) by `repro gc` while it decides what is unreferenced and deletes it. So a run
    /// that reuses an object gc is about to delete either commits first (and gc sees the
    /// reference) or waits until the deletion is over (and writes the object afresh).
    /// `on_wait` is called once when the lock is held by someone else, before waiting.
    pub fn lock(
        &self,
        mode: LockMode,
        on_wait: &mut dyn FnMut(),
    ) -> Result<ObjectsLock, ObjectError> {
        self.mkdirs(&self.root)?;
        let path = self.root.join("lock");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| self.write_err(e))?;
        let op = match mode {
            LockMode::Keep => libc::LOCK_SH,
            LockMode::Delete => libc::LOCK_EX,
        };
        let flock = |op: libc::c_int| loop {
            // SAFETY: flock(2) on a descriptor this function owns; no memory is passed.
            if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        match flock(op | libc::LOCK_NB) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                on_wait();
                flock(op).map_err(|e| self.write_err(e))?;
            }
            Err(e) => return Err(self.write_err(e)),
        }
        Ok(ObjectsLock(f))
    }
}

/// A temporary file untouched for an hour belongs to a writer that died.
fn stale(m: &fs::Metadata) -> bool {
    m.modified()
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(3600))
}

/// The temporary files of the store ([`Objects::temps`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Temps {
    pub files: u64,
    pub bytes: u64,
    /// Those older than an hour.
    pub stale_files: u64,
    pub stale_bytes: u64,
}

/// Who takes the store's lock (see [`Objects::lock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// A writer of objects (shared: writers do not exclude each other).
    Keep,
    /// `repro gc` deleting unreferenced objects (exclusive).
    Delete,
}

/// The store's lock, held until dropped (closing the descriptor releases the `flock`).
#[derive(Debug)]
pub struct ObjectsLock(#[allow(dead_code)] File);

/// One object as listed by [`Objects::entries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    /// 64 lowercase hex: the object's name.
    pub sha256: String,
    /// Its length.
    pub bytes: u64,
    /// Blocks allocated on disk (a reflinked object may share them with its source).
    pub disk_bytes: u64,
    /// Last written or reused (a writer that finds the object present refreshes it).
    pub modified: std::time::SystemTime,
}

/// Marks an object reused now: `repro gc` never deletes an object touched after it started,
/// which protects writers that do not take the lock.
fn refresh(path: &Path) {
    if let Ok(f) = File::open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// A random-enough suffix for temporary names (two writers with the same pid live in
/// different pid namespaces).
pub(crate) fn nonce() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (std::ptr::addr_of!(t) as u64).rotate_left(32)
}

/// Whether `s` is 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Which side of a copy failed.
#[derive(Debug)]
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `src` (from its start) to the empty file `dst` and returns the SHA-256 of the bytes
/// that `dst` holds afterwards: a reflink then a hash of the clone; else `copy_file_range`
/// with each copied range hashed from `dst` (on a second thread for big files, so the copy and
/// the hash overlap); else read, hash, write. `size_hint` only chooses the strategy.
pub fn copy_hashing(src: &File, dst: &File, size_hint: u64) -> Result<Copied, CopyError> {
    // SAFETY: FICLONE takes the source descriptor as its argument; both are open files.
    let cloned = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE, src.as_raw_fd()) } == 0;
    if cloned {
        let (sha256, bytes) = hash_reader(dst).map_err(CopyError::Read)?;
        return Ok(Copied {
            sha256,
            bytes,
            how: CopyHow::Reflink,
        });
    }
    match copy_range_hashing(src, dst, size_hint) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => copy_in_process(src, dst),
        Err(e) => Err(e),
    }
}

/// `_IOW(0x94, 9, int)`: share the source's extents (btrfs, XFS, bcachefs, OCFS2).
const FICLONE: libc::c_ulong = 0x4004_9409;

/// `copy_file_range` in chunks, each hashed from `dst` once written. `None` when the kernel or
/// filesystem cannot do it at all (the caller copies in process).
fn copy_range_hashing(src: &File, dst: &File, size_hint: u64) -> Result<Option<Copied>, CopyError> {
    let pipelined = size_hint >= PIPELINE_MIN;
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<(u64, usize)>(4);
        let hasher = pipelined.then(|| {
            s.spawn(move || -> io::Result<[u8; 32]> {
                let mut h = Sha256::new();
                let mut buf = vec![0u8; CHUNK];
                for (off, len) in rx {
                    read_exact_at(dst, &mut buf[..len], off)?;
                    h.update(&buf[..len]);
                }
                Ok(h.finalize().into())
            })
        });
        let mut off = 0u64;
        let copied: Result<Option<u64>, CopyError> = loop {
            // SAFETY: plain file descriptors; null offsets use and advance the file positions.
            // The raw system call, not glibc's wrapper (glibc 2.27+): the wheel's binary runs on
            // glibc 2.17 (manylinux2014), where an old kernel answers ENOSYS and we fall back.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_copy_file_range,
                    src.as_raw_fd(),
                    std::ptr::null_mut::<libc::loff_t>(),
                    dst.as_raw_fd(),
                    std::ptr::null_mut::<libc::loff_t>(),
                    CHUNK,
                    0u32,
                )
            } as isize;
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
                        if off == 0 =>
                    {
                        break Ok(None)
                    }
                    _ if is_no_space(&e) => break Err(CopyError::Write(e)),
                    // Which side failed is not told; a read error is the likelier one.
                    Some(libc::EBADF) => break Err(CopyError::Write(e)),
                    _ => break Err(CopyError::Read(e)),
                }
            }
            if n == 0 {
                break Ok(Some(off));
            }
            if pipelined && tx.send((off, n as usize)).is_err() {
                break Ok(Some(off));
            }
            off += n as u64;
        };
        drop(tx);
        let from_thread = hasher.map(|h| h.join().expect("hash thread panicked"));
        let Some(bytes) = copied? else {
            return Ok(None);
        };
        let sha256 = match from_thread {
            Some(r) => r.map_err(CopyError::Read)?,
            None => {
                let mut h = Sha256::new();
                let mut buf = vec![0u8; CHUNK.min(bytes as usize).max(1)];
                let mut at = 0u64;
                while at < bytes {
                    let len = buf.len().min((bytes - at) as usize);
                    read_exact_at(dst, &mut buf[..len], at).map_err(CopyError::Read)?;
                    h.update(&buf[..len]);
                    at += len as u64;
                }
                h.finalize().into()
            }
        };
        Ok(Some(Copied {
            sha256,
            bytes,
            how: CopyHow::CopyRange,
        }))
    })
}

fn read_exact_at(f: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    f.read_exact_at(buf, off)
}

/// Read, hash, write: the copy when the kernel cannot copy between these files.
fn copy_in_process(mut src: &File, mut dst: &File) -> Result<Copied, CopyError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        dst.write_all(&buf[..n]).map_err(CopyError::Write)?;
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(Copied {
        sha256: h.finalize().into(),
        bytes,
        how: CopyHow::Copy,
    })
}

/// SHA-256 of a file's contents from its start, and its length.
pub fn hash_reader(f: &File) -> io::Result<([u8; 32], u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = match f.read_at(&mut buf, at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok((h.finalize().into(), at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn store() -> (tempfile::TempDir, Objects) {
        let d = tempfile::tempdir().unwrap();
        let o = Objects::beside(&d.path().join("repro.db"));
        (d, o)
    }

    #[test]
    fn a_file_is_named_by_its_digest_private_and_deduplicated() {
        let (d, o) = store();
        let src = d.path().join("model.bin");
        fs::write(&src, b"weights").unwrap();
        let a = o.store_file(&src).unwrap();
        assert_eq!(a.sha256, hex::encode(Sha256::digest(b"weights")));
        assert_eq!(a.bytes, 7);
        assert!(a.new && !a.changed);
        let p = o.path_of(&a.sha256).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"weights");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let dir = p.parent().unwrap();
        assert_eq!(
            fs::metadata(dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let b = o.store_file(&src).unwrap();
        assert_eq!(b.sha256, a.sha256);
        assert!(!b.new, "the second copy is the same object");
        assert_eq!(o.list().unwrap(), vec![(a.sha256.clone(), 7)]);
        assert_eq!(fs::read_dir(o.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn big_files_hash_the_same_through_the_pipeline() {
        let (d, o) = store();
        let src = d.path().join("big");
        let data: Vec<u8> = (0..(PIPELINE_MIN as usize + CHUNK + 12345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        fs::write(&src, &data).unwrap();
        let s = o.store_file(&src).unwrap();
        assert_eq!(s.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(s.bytes, data.len() as u64);
        assert_eq!(o.verify(&s.sha256).unwrap(), Some(true));
    }

    #[test]
    fn the_in_process_copy_hashes_what_it_writes() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), b"abc").unwrap();
        let src = File::open(d.path().join("a")).unwrap();
        let dst = File::create(d.path().join("b")).unwrap();
        let c = copy_in_process(&src, &dst).unwrap();
        assert_eq!(c.sha256, <[u8; 32]>::from(Sha256::digest(b"abc")));
        assert_eq!(fs::read(d.path().join("b")).unwrap(), b"abc");
    }

    #[test]
    fn damage_is_found_and_bad_names_refused() {
        let (_d, o) = store();
        let name = o.store_bytes(b"manifest\n").unwrap();
        assert_eq!(o.verify(&name).unwrap(), Some(true));
        assert_eq!(o.read(&name).unwrap().as_deref(), Some(&b"manifest\n"[..]));
        let p = o.path_of(&name).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&p, b"tampered\n").unwrap();
        assert_eq!(o.verify(&name).unwrap(), Some(false));
        assert_eq!(
            o.read(&name).unwrap(),
            None,
            "a damaged object is not served"
        );
        assert!(matches!(
            o.path_of("../../etc/passwd"),
            Err(ObjectError::BadName { .. })
        ));
        assert!(o.remove(&name).unwrap());
        assert_eq!(o.verify(&name).unwrap(), None);
    }
}
