//! Parallel content hashing: cache lookup, largest-first scheduling over the pool's threads,
//! small files read whole and hashed two at a time, 1 MiB reads, and the manifest digest.

mod sha256x2;

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::cache;
use super::manifest::{self, EntryKind, FileMeta, Tree};
use super::{unreadable, DatasetDigest, DatasetError, HashOptions, Phase, Progress};

/// Read size: large enough that syscall overhead vanishes next to SHA-256 work.
const BUF_SIZE: usize = 1 << 20;

/// Files up to this size are read whole in one `read` and hashed in pairs ([`sha256x2`]).
const WHOLE_MAX: u64 = BUF_SIZE as u64;

/// Files at least this big are read on a helper thread while this one hashes.
const PIPELINE_MIN: u64 = 64 << 20;

/// Files at least this big get a sequential-read hint so readahead keeps up with SHA-NI.
const FADVISE_MIN: u64 = 8 << 20;

/// Reads of a file that keeps changing while it is hashed before giving up on it.
pub(crate) const MAX_ATTEMPTS: u32 = 3;

/// Hashes a file or directory into its dataset digest (see [`super::manifest`]).
///
/// Uses every thread of the current rayon pool. With `cache`, unchanged files are not read and
/// new hashes are stored, in one transaction. `progress` is called on the calling thread.
pub fn hash_path(
    path: &Path,
    opts: &HashOptions,
    cache: Option<&rusqlite::Connection>,
    progress: Option<&dyn Fn(Progress)>,
) -> Result<DatasetDigest, DatasetError> {
    run(path, opts, cache, progress, None)
}

/// The canonical manifest of a path (the bytes whose SHA-256 is the digest), for `--manifest`
/// and for checking a digest by hand.
pub fn manifest_of(path: &Path, opts: &HashOptions) -> Result<Vec<u8>, DatasetError> {
    let mut out = Vec::new();
    run(path, opts, None, None, Some(&mut out))?;
    Ok(out)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub(super) fn run(
    path: &Path,
    opts: &HashOptions,
    conn: Option<&rusqlite::Connection>,
    progress: Option<&dyn Fn(Progress)>,
    manifest_out: Option<&mut Vec<u8>>,
) -> Result<DatasetDigest, DatasetError> {
    // Taken before anything is stat'ed: a cache entry is only trusted when the file's
    // timestamps are clearly older than this (see cache.rs, "racily clean").
    let started_ns = now_ns();
    let root = absolute(path).map_err(unreadable(path))?;
    if let Some(p) = progress {
        p(Progress {
            phase: Phase::Scanning,
            files_done: 0,
            files_total: 0,
            bytes_done: 0,
            bytes_total: 0,
        });
    }
    // A single file is named by the last component of the path as given: for a symlink, the
    // link's name, not its target's (the rule of docs/datasets.md that `basename` follows).
    let given = std::path::absolute(path).map_err(unreadable(path))?;
    let (mut tree, preloaded) = match conn {
        None => (manifest::walk(&root, given.file_name(), opts)?, None),
        Some(c) => {
            // The cache's range scan needs only the root: it runs here, on the connection's
            // thread, while the pool walks the tree.
            let mut walked = None;
            let preloaded = rayon::in_place_scope(|s| {
                s.spawn(|_| walked = Some(manifest::walk(&root, given.file_name(), opts)));
                cache::preload(c, &root)
            });
            (
                walked.expect("the walk ran in the scope")?,
                Some(preloaded?),
            )
        }
    };
    // The walk lists entries in manifest order; sorting is only a safety net.
    if !tree.entries.is_sorted_by(|a, b| a.rel <= b.rel) {
        tree.entries.par_sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
    }
    let found = match (conn, preloaded) {
        (Some(c), Some(p)) => Some(cache::lookup(c, &tree, p)?),
        _ => None,
    };
    let entries = &tree.entries;
    let mut shas: Vec<Option<[u8; 32]>> = vec![None; entries.len()];
    let mut todo: Vec<usize> = Vec::new();
    let (mut bytes_total, mut from_cache, mut bytes_cached) = (0u64, 0u64, 0u64);
    for (i, e) in entries.iter().enumerate() {
        match &e.kind {
            EntryKind::File(m) => {
                bytes_total += m.size;
                match found.as_ref().and_then(|f| f.hits[i]) {
                    Some(sha) => {
                        shas[i] = Some(sha);
                        from_cache += 1;
                        bytes_cached += m.size;
                    }
                    None => todo.push(i),
                }
            }
            EntryKind::Symlink(target) => shas[i] = Some(Sha256::digest(target).into()),
        }
    }
    let files = entries.len() as u64;

    let fresh = hash_files(
        &tree,
        &todo,
        progress,
        files - todo.len() as u64,
        bytes_cached,
        bytes_total,
    )?;
    // A file may have changed between the walk and its (stable) read: the manifest line and the
    // cache row describe the file that was actually hashed.
    let mut hashed = Vec::with_capacity(fresh.len());
    for (i, sha, meta) in fresh {
        bytes_total = bytes_total - entry_size(&tree.entries[i].kind) + meta.size;
        tree.entries[i].kind = EntryKind::File(meta);
        shas[i] = Some(sha);
        hashed.push((i, sha));
    }
    let entries = &tree.entries;
    // In path order, the cache inserts append to the clustered B-tree instead of splitting pages
    // all over it.
    hashed.sort_unstable_by_key(|(i, _)| *i);
    if let (Some(c), Some(found)) = (conn, &found) {
        cache::store(c, &tree, found, &hashed, started_ns)?;
    }

    let mut man = Vec::with_capacity(entries.len() * 100);
    for (e, sha) in entries.iter().zip(&shas) {
        let sha = sha.as_ref().expect("every entry hashed");
        match &e.kind {
            EntryKind::File(m) => manifest::file_line(&mut man, sha, m.size, &e.rel),
            EntryKind::Symlink(_) => manifest::symlink_line(&mut man, sha, &e.rel),
        }
    }
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&man)));
    if let Some(out) = manifest_out {
        *out = man;
    }
    Ok(DatasetDigest {
        digest,
        files,
        bytes: bytes_total,
        from_cache,
    })
}

/// `path` made absolute without resolving symlinks in its last component, then canonicalised
/// where possible so cache keys do not depend on how the user spelled the path.
fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::path::absolute(path),
        Err(e) => Err(e),
    }
}

fn entry_size(k: &EntryKind) -> u64 {
    match k {
        EntryKind::File(m) => m.size,
        EntryKind::Symlink(_) => 0,
    }
}

/// (index into the entries, SHA-256, the file's metadata while it was read) from one worker.
type Hashed = Vec<(usize, [u8; 32], FileMeta)>;

/// Hashes the files `todo` (indices into `entries`) on `rayon::current_num_threads()` workers,
/// largest first so one big file starts at once and the small ones fill the other cores.
fn hash_files(
    tree: &Tree,
    todo: &[usize],
    progress: Option<&dyn Fn(Progress)>,
    files_already: u64,
    bytes_already: u64,
    bytes_total: u64,
) -> Result<Hashed, DatasetError> {
    let entries = &tree.entries;
    let mut order = todo.to_vec();
    order.sort_unstable_by_key(|&i| std::cmp::Reverse(entry_size(&entries[i].kind)));

    let files_total = files_already + todo.len() as u64;
    let next = AtomicUsize::new(0);
    let files_done = AtomicU64::new(files_already);
    let bytes_done = AtomicU64::new(bytes_already);
    let failed = AtomicBool::new(false);
    let finished = AtomicUsize::new(0);
    // The pool's size, so callers control parallelism with `ThreadPool::install`. Plain scoped
    // threads (not pool jobs) because a non-`Sync` progress callback must run on this thread.
    let workers = rayon::current_num_threads().clamp(1, order.len().max(1));
    let report = |phase| {
        if let Some(p) = progress {
            p(Progress {
                phase,
                files_done: files_done.load(Ordering::Relaxed),
                files_total,
                bytes_done: bytes_done.load(Ordering::Relaxed),
                bytes_total,
            })
        }
    };

    let results: Vec<Result<Hashed, DatasetError>> = std::thread::scope(|s| {
        let me = std::thread::current();
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let me = me.clone();
                let shared = Shared {
                    tree,
                    order: &order,
                    next: &next,
                    files_done: &files_done,
                    bytes_done: &bytes_done,
                    failed: &failed,
                };
                let finished = &finished;
                s.spawn(move || {
                    let result = shared.work();
                    if result.is_err() {
                        shared.failed.store(true, Ordering::Relaxed);
                    }
                    finished.fetch_add(1, Ordering::Release);
                    me.unpark();
                    result
                })
            })
            .collect();
        if progress.is_some() {
            while finished.load(Ordering::Acquire) < workers {
                report(Phase::Hashing);
                std::thread::park_timeout(Duration::from_millis(100));
            }
            report(Phase::Hashing);
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("hash worker panicked"))
            .collect()
    });

    let mut all = Vec::with_capacity(todo.len());
    let mut first_err: Option<(Vec<u8>, DatasetError)> = None;
    for r in results {
        match r {
            Ok(v) => all.extend(v),
            Err(e) => {
                // Report the same error whatever the thread timing: the one with the smallest path.
                let key = match &e {
                    DatasetError::Unreadable { path, .. }
                    | DatasetError::ChangedWhileHashing { path, .. } => {
                        path.as_os_str().as_encoded_bytes().to_vec()
                    }
                    _ => Vec::new(),
                };
                if first_err.as_ref().is_none_or(|(k, _)| key < *k) {
                    first_err = Some((key, e));
                }
            }
        }
    }
    match first_err {
        Some((_, e)) => Err(e),
        None => Ok(all),
    }
}

/// What the hashing workers share: the queue (largest first) and the counters.
#[derive(Clone, Copy)]
struct Shared<'a> {
    tree: &'a Tree,
    order: &'a [usize],
    next: &'a AtomicUsize,
    files_done: &'a AtomicU64,
    bytes_done: &'a AtomicU64,
    failed: &'a AtomicBool,
}

impl Shared<'_> {
    /// One worker: takes files off the queue until it is empty or another worker failed. A small
    /// file is read whole into one of two buffers and waits there for a second one, and the two
    /// are hashed together: SHA-256 runs at the latency of its rounds, so interleaving two
    /// messages almost doubles what a core hashes (see `sha256x2`).
    fn work(&self) -> Result<Hashed, DatasetError> {
        let mut bufs = [vec![0u8; BUF_SIZE + 1], vec![0u8; BUF_SIZE + 1]];
        let pair = sha256x2::interleaved();
        let mut out = Vec::new();
        // A small file read into bufs[0], waiting for a partner: (index, metadata).
        let mut waiting: Option<(usize, FileMeta)> = None;
        while !self.failed.load(Ordering::Relaxed) {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = self.order.get(k) else { break };
            let e = &self.tree.entries[i];
            let EntryKind::File(seen) = &e.kind else {
                continue;
            };
            let abs = self.tree.abs(e);
            let [first, second] = &mut bufs;
            let lane = if waiting.is_some() { second } else { first };
            let whole = if pair { WHOLE_MAX } else { 0 };
            match read_file(&abs, Some(*seen), lane, whole, self.bytes_done)? {
                Got::Hashed(sha, meta) => out.push((i, sha, meta)),
                Got::Whole(meta) => match waiting.take() {
                    None => {
                        waiting = Some((i, meta));
                        continue;
                    }
                    Some((j, first_meta)) => {
                        let (a, b) = sha256x2::digest2(
                            &bufs[0][..first_meta.size as usize],
                            &bufs[1][..meta.size as usize],
                        );
                        out.push((j, a, first_meta));
                        out.push((i, b, meta));
                        self.files_done.fetch_add(1, Ordering::Relaxed);
                    }
                },
            }
            self.files_done.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((j, meta)) = waiting {
            let (a, _) = sha256x2::digest2(&bufs[0][..meta.size as usize], &[]);
            out.push((j, a, meta));
            self.files_done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(out)
    }
}

/// A file read by [`read_file`].
enum Got {
    /// Read whole into the buffer (`size` bytes), not yet hashed.
    Whole(FileMeta),
    /// Hashed while it was read.
    Hashed([u8; 32], FileMeta),
}

/// SHA-256 of one file's contents and the file's metadata while it was read.
///
/// The file's size, inode, mtime and ctime when it was opened are compared with a `stat` by path
/// after its last byte is read: a file that moved meanwhile (an in-place edit of the same size
/// included, or a rename over it) is read again, up to [`MAX_ATTEMPTS`] times, then refused by
/// name. `hint` is the size the caller saw; the open file's own size chooses the read strategy.
pub(crate) fn hash_file(
    path: &Path,
    _hint: u64,
    buf: &mut [u8],
    bytes_done: &AtomicU64,
) -> Result<([u8; 32], FileMeta), DatasetError> {
    match read_file(path, None, buf, 0, bytes_done)? {
        Got::Hashed(sha, meta) => Ok((sha, meta)),
        Got::Whole(_) => unreachable!("read_file with whole_max 0 always hashes"),
    }
}

/// Reads one file, either whole into `buf` (when it has at most `whole_max` bytes and fits) or
/// hashing it as it streams through `buf`.
///
/// `seen` is the file's metadata from a `stat` by path moments ago (the walk's): the first attempt
/// trusts it instead of an `fstat` of the opened file. After the last byte, one `stat` by path
/// checks that the path still names the same inode with the same size, mtime and ctime as when
/// the read began (for the same inode that is also the open file's state, so no `fstat` after
/// is needed). Reading stops at the expected size, asking for one byte more to catch growth:
/// together with that check, no separate end-of-file `read` is needed.
fn read_file(
    path: &Path,
    seen: Option<FileMeta>,
    buf: &mut [u8],
    whole_max: u64,
    bytes_done: &AtomicU64,
) -> Result<Got, DatasetError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let f = open_for_reading(path)?;
        let before = match seen {
            Some(m) if attempt == 1 => m,
            _ => FileMeta::of(&f.metadata().map_err(unreadable(path))?),
        };
        let size = before.size;
        let whole = size <= whole_max && (size as usize) < buf.len();
        if size >= FADVISE_MIN {
            // Advisory only; a failure changes nothing but speed.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
            }
        }
        let (sha, read) = if whole {
            let n = read_whole(&f, path, size as usize, &mut buf[..size as usize + 1])?;
            bytes_done.fetch_add(n as u64, Ordering::Relaxed);
            (None, n as u64)
        } else if size >= PIPELINE_MIN {
            let (sha, n) = read_big(&f, path, bytes_done)?;
            (Some(sha), n)
        } else {
            let (sha, n) = read_small(&f, path, size, buf, bytes_done)?;
            (Some(sha), n)
        };
        drop(f);
        run_hook(path, attempt);
        let now = FileMeta::of(&std::fs::metadata(path).map_err(unreadable(path))?);
        let detail = if read != size {
            format!("{size} bytes when opened, {read} bytes read")
        } else if now.size != size {
            format!("size {size} became {}", now.size)
        } else if (now.dev, now.ino) != (before.dev, before.ino) {
            "the path now names another file (replaced)".into()
        } else if now.mtime_ns != before.mtime_ns {
            "its modification time changed".into()
        } else if now.ctime_ns != before.ctime_ns {
            "its change time moved".into()
        } else {
            return Ok(match sha {
                Some(sha) => Got::Hashed(sha, before),
                None => Got::Whole(before),
            });
        };
        bytes_done.fetch_sub(read, Ordering::Relaxed);
        if attempt >= MAX_ATTEMPTS {
            return Err(DatasetError::ChangedWhileHashing {
                path: path.to_path_buf(),
                attempts: attempt,
                detail,
            });
        }
    }
}

/// Set once opening with `O_NOATIME` was refused (files of another user): later opens skip it.
static NOATIME_REFUSED: AtomicBool = AtomicBool::new(false);

/// Opens a file to hash it, without updating its access time where allowed: hashing is not a
/// use of the data, and on a first read each access-time update dirties an inode for the journal.
fn open_for_reading(path: &Path) -> Result<File, DatasetError> {
    if !NOATIME_REFUSED.load(Ordering::Relaxed) {
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(path)
        {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                NOATIME_REFUSED.store(true, Ordering::Relaxed)
            }
            r => return r.map_err(unreadable(path)),
        }
    }
    File::open(path).map_err(unreadable(path))
}

/// Reads `f` into `buf` until `size` bytes are in, the buffer is full (the file grew) or the file
/// ends; the number of bytes read. A small file takes one `read`.
fn read_whole(
    mut f: &File,
    path: &Path,
    size: usize,
    buf: &mut [u8],
) -> Result<usize, DatasetError> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(unreadable(path)(e)),
        }
        if n >= size {
            break;
        }
    }
    Ok(n)
}

/// Hashes `size` bytes of `f` (and one more if the file grew) through `buf`.
fn read_small(
    mut f: &File,
    path: &Path,
    size: u64,
    buf: &mut [u8],
    bytes_done: &AtomicU64,
) -> Result<([u8; 32], u64), DatasetError> {
    let mut h = Sha256::new();
    let mut read = 0u64;
    while read <= size {
        let want = (size - read + 1).min(buf.len() as u64) as usize;
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unreadable(path)(e)),
        };
        h.update(&buf[..n]);
        read += n as u64;
        bytes_done.fetch_add(n as u64, Ordering::Relaxed);
        if read == size {
            break;
        }
    }
    Ok((h.finalize().into(), read))
}

/// Hashes a big file with reads on a second thread, so this one does nothing but SHA-256:
/// copying 1 GiB out of the page cache costs ~15% of a core, the difference between a big file
/// hashing at the SHA-NI limit or below it.
fn read_big(
    f: &File,
    path: &Path,
    bytes_done: &AtomicU64,
) -> Result<([u8; 32], u64), DatasetError> {
    const BUFS: usize = 4;
    let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(BUFS);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(BUFS);
    for _ in 0..BUFS {
        empty_tx
            .send(vec![0u8; BUF_SIZE])
            .expect("room for every buffer");
    }
    std::thread::scope(|s| {
        let reader = s.spawn(move || -> std::io::Result<u64> {
            let mut f = f;
            let mut total = 0u64;
            while let Ok(mut buf) = empty_rx.recv() {
                let mut n = 0;
                while n < buf.len() {
                    match f.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if n == 0 || full_tx.send((buf, n)).is_err() {
                    break;
                }
                total += n as u64;
            }
            Ok(total)
        });
        let mut h = Sha256::new();
        for (buf, n) in full_rx.iter() {
            h.update(&buf[..n]);
            bytes_done.fetch_add(n as u64, Ordering::Relaxed);
            let _ = empty_tx.send(buf);
        }
        let read = reader
            .join()
            .expect("reader thread panicked")
            .map_err(unreadable(path))?;
        Ok((h.finalize().into(), read))
    })
}

/// A hook run between reading a file and re-checking its metadata, for one path.
type Hook = Box<dyn FnMut(u32) + Send>;

static HOOKS: Mutex<Vec<(PathBuf, Hook)>> = Mutex::new(Vec::new());
static ANY_HOOK: AtomicBool = AtomicBool::new(false);

/// Test seam: runs `hook(attempt)` each time `path` has been read and before its metadata is
/// re-checked, until the returned guard is dropped. Lets a test edit the file at exactly the
/// moment a concurrent writer would, without timing luck.
pub fn on_read_done(path: &Path, hook: impl FnMut(u32) + Send + 'static) -> HookGuard {
    let mut hooks = HOOKS.lock().unwrap_or_else(|p| p.into_inner());
    hooks.push((path.to_path_buf(), Box::new(hook)));
    ANY_HOOK.store(true, Ordering::SeqCst);
    HookGuard(path.to_path_buf())
}

/// Removes the hook of [`on_read_done`] when dropped.
pub struct HookGuard(PathBuf);

impl Drop for HookGuard {
    fn drop(&mut self) {
        let mut hooks = HOOKS.lock().unwrap_or_else(|p| p.into_inner());
        hooks.retain(|(p, _)| *p != self.0);
        ANY_HOOK.store(!hooks.is_empty(), Ordering::SeqCst);
    }
}

fn run_hook(path: &Path, attempt: u32) {
    if !ANY_HOOK.load(Ordering::Relaxed) {
        return;
    }
    let mut hooks = HOOKS.lock().unwrap_or_else(|p| p.into_inner());
    for (p, hook) in hooks.iter_mut() {
        if p == path {
            hook(attempt);
        }
    }
}

/// SHA-256 of one file, for outputs.
pub(crate) fn sha256_file(path: &Path) -> Result<([u8; 32], u64), DatasetError> {
    let meta = std::fs::metadata(path).map_err(unreadable(path))?;
    let mut buf = vec![0u8; BUF_SIZE];
    let (sha, meta) = hash_file(path, meta.len(), &mut buf, &AtomicU64::new(0))?;
    Ok((sha, meta.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small files are hashed in pairs, a last odd one alone, bigger ones streamed: every file's
    /// line must still carry its plain SHA-256, whatever the pool size.
    #[test]
    fn files_of_every_size_class_hash_like_sha2_whatever_the_pairing() {
        let t = tempfile::tempdir().unwrap();
        let sizes = [
            0,
            1,
            55,
            56,
            64,
            1000,
            51_200,
            WHOLE_MAX as usize - 1,
            WHOLE_MAX as usize,
            WHOLE_MAX as usize + 1,
            3 << 20,
        ];
        let mut want = Vec::new();
        for (k, size) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..*size).map(|i| (i * 7 + k) as u8).collect();
            let name = format!("f{k:02}");
            std::fs::write(t.path().join(&name), &data).unwrap();
            manifest::file_line(
                &mut want,
                &Sha256::digest(&data).into(),
                *size as u64,
                name.as_bytes(),
            );
        }
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = pool
                .install(|| manifest_of(t.path(), &HashOptions::default()))
                .unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want.clone()).unwrap(),
                "{threads} threads"
            );
        }
    }
}
