//! The canonical manifest and the directory walk that feeds it.
//!
//! Format (documented in `docs/datasets.md`): one line per entry, sorted bytewise by relative path
//! (`/`-separated, no leading `./`), each line terminated by `\n`:
//!
//! ```text
//! <sha256 of contents, 64 lowercase hex> <size in bytes, decimal> <relpath>     regular file
//! <sha256 of the link target string>     symlink                 <relpath>     symlink
//! ```
//!
//! fields separated by one space. The digest is `sha256:` + the SHA-256 of the manifest bytes.
//! For a single file the manifest has one line whose relpath is the file's name. Directories
//! (empty or not), modes, owners and timestamps are not part of the manifest. `.git` (file or
//! directory, at any depth) and paths matched by the root `.reproignore` are skipped.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{unreadable, DatasetError, HashOptions};

/// The name of the ignore file read at the root of a hashed directory.
pub const IGNORE_FILE: &str = ".reproignore";

/// The cache-relevant facts of a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileMeta {
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileMeta {
    pub(crate) fn of(m: &fs::Metadata) -> FileMeta {
        FileMeta {
            size: m.len(),
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        }
    }
}

/// What an entry of the manifest is.
#[derive(Debug, Clone)]
pub(crate) enum EntryKind {
    File(FileMeta),
    Symlink(Vec<u8>),
}

/// One manifest entry before hashing.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Relative path bytes with `/` separators.
    pub rel: Vec<u8>,
    pub kind: EntryKind,
}

/// The entries under a root (no absolute path per entry: 200k allocations saved on a warm run).
#[derive(Debug)]
pub(crate) struct Tree {
    /// Absolute path of what was hashed.
    pub root: PathBuf,
    /// The root is a single file (its one entry is named after it).
    pub single: bool,
    pub entries: Vec<Entry>,
}

impl Tree {
    /// Where entry `e` is read from.
    pub(crate) fn abs(&self, e: &Entry) -> PathBuf {
        if self.single {
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(&e.rel))
        }
    }
}

/// Appends one manifest line for a regular file.
pub(crate) fn file_line(out: &mut Vec<u8>, sha: &[u8; 32], size: u64, rel: &[u8]) {
    let mut hexbuf = [0u8; 64];
    hex::encode_to_slice(sha, &mut hexbuf).expect("64 bytes of room");
    out.extend_from_slice(&hexbuf);
    // Formatted in place: a String per line was a tenth of a warm re-version's user time.
    write!(out, " {size} ").expect("writing to a Vec cannot fail");
    out.extend_from_slice(rel);
    out.push(b'\n');
}

/// Appends one manifest line for a symlink.
pub(crate) fn symlink_line(out: &mut Vec<u8>, target_sha: &[u8; 32], rel: &[u8]) {
    let mut hexbuf = [0u8; 64];
    hex::encode_to_slice(target_sha, &mut hexbuf).expect("64 bytes of room");
    out.extend_from_slice(&hexbuf);
    out.extend_from_slice(b" symlink ");
    out.extend_from_slice(rel);
    out.push(b'\n');
}

/// Patterns from `.reproignore`, with gitignore semantics (see docs/datasets.md).
///
/// Parsed and matched by `ignore::gitignore` (ripgrep's implementation), so `!` negation,
/// anchoring, `**` and trailing-`/` rules behave exactly as in git instead of as an approximation.
#[derive(Debug, Default)]
pub(crate) struct Ignore {
    rules: Option<ignore::gitignore::Gitignore>,
}

impl Ignore {
    /// Reads `<root>/.reproignore` if present.
    pub(crate) fn load(root: &Path) -> Result<Ignore, DatasetError> {
        let path = root.join(IGNORE_FILE);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ignore::default()),
            Err(e) => return Err(unreadable(&path)(e)),
        };
        Ignore::parse(&text, &path)
    }

    pub(crate) fn parse(text: &[u8], path: &Path) -> Result<Ignore, DatasetError> {
        // Relative paths are matched, so the builder's root is never used to strip a prefix.
        let mut b = ignore::gitignore::GitignoreBuilder::new("");
        let mut n = 0;
        for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
            let bad = |message: String| DatasetError::BadIgnore {
                path: path.to_path_buf(),
                line: i + 1,
                message,
            };
            let line =
                std::str::from_utf8(raw).map_err(|_| bad("the pattern is not UTF-8".into()))?;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            b.add_line(Some(path.to_path_buf()), line)
                .map_err(|e| bad(glob_message(&e)))?;
            n += 1;
        }
        if n == 0 {
            return Ok(Ignore::default());
        }
        let rules = b.build().map_err(|e| DatasetError::BadIgnore {
            path: path.to_path_buf(),
            line: 0,
            message: glob_message(&e),
        })?;
        Ok(Ignore { rules: Some(rules) })
    }

    /// Whether the relative path is excluded (the last matching pattern decides, as in git).
    pub(crate) fn matches(&self, rel: &[u8], is_dir: bool) -> bool {
        match &self.rules {
            None => false,
            Some(r) => r
                .matched(Path::new(OsStr::from_bytes(rel)), is_dir)
                .is_ignore(),
        }
    }
}

/// The innermost message of an `ignore` error (its outer layers repeat the file name we print).
fn glob_message(e: &ignore::Error) -> String {
    match e {
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithLineNumber { err, .. }
        | ignore::Error::WithDepth { err, .. } => glob_message(err),
        other => other.to_string(),
    }
}

pub(crate) fn special_kind(ft: &fs::FileType) -> &'static str {
    if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

/// Lists the entries under `root` (already absolute) in manifest order, bytewise by relative
/// path. A root that is a file is named `name` (the last component of the path the user gave)
/// when there is one.
pub(crate) fn walk(
    root: &Path,
    name: Option<&OsStr>,
    opts: &HashOptions,
) -> Result<Tree, DatasetError> {
    // The root itself is always followed: the user named it.
    let meta = match fs::metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DatasetError::NotFound {
                path: root.to_path_buf(),
            })
        }
        Err(e) => return Err(unreadable(root)(e)),
    };
    let ft = meta.file_type();
    if ft.is_file() {
        let name = name
            .or(root.file_name())
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        if name.contains(&b'\n') {
            return Err(DatasetError::NewlineInPath {
                path: root.to_path_buf(),
            });
        }
        return Ok(Tree {
            root: root.to_path_buf(),
            single: true,
            entries: vec![Entry {
                rel: name,
                kind: EntryKind::File(FileMeta::of(&meta)),
            }],
        });
    }
    if !ft.is_dir() {
        return Err(DatasetError::SpecialFile {
            path: root.to_path_buf(),
            kind: special_kind(&ft),
        });
    }
    let ignore = Ignore::load(root)?;
    let walker = Walker {
        opts,
        ignore: &ignore,
    };
    Ok(Tree {
        root: root.to_path_buf(),
        single: false,
        entries: walker.dir(root, &[], &[(meta.dev(), meta.ino())])?,
    })
}

struct Walker<'a> {
    opts: &'a HashOptions,
    ignore: &'a Ignore,
}

enum Found {
    Entry(Entry),
    Dir(PathBuf, Vec<u8>, (u64, u64)),
    Skip,
}

impl Found {
    /// The relative path, and whether a '/' and the directory's entries follow it.
    fn key(&self) -> (&[u8], bool) {
        match self {
            Found::Entry(e) => (&e.rel, false),
            Found::Dir(_, rel, _) => (rel, true),
            Found::Skip => (&[], false),
        }
    }
}

/// The order of two siblings' subtrees in the manifest: a directory `d` sorts as `d/`, so `d-x`
/// comes before `d`'s entries and `d0` after them, as in a bytewise sort of the full paths.
fn walk_order((a, a_dir): (&[u8], bool), (b, b_dir): (&[u8], bool)) -> Ordering {
    let n = a.len().min(b.len());
    a[..n].cmp(&b[..n]).then_with(|| {
        // One is a prefix of the other: the next byte decides, an end before anything.
        let next = |s: &[u8], dir: bool| match s.get(n) {
            Some(&c) => u16::from(c) + 1,
            None if dir => u16::from(b'/') + 1,
            None => 0,
        };
        next(a, a_dir).cmp(&next(b, b_dir))
    })
}

impl Walker<'_> {
    fn dir(
        &self,
        dir: &Path,
        rel: &[u8],
        ancestors: &[(u64, u64)],
    ) -> Result<Vec<Entry>, DatasetError> {
        let rd = fs::read_dir(dir).map_err(unreadable(dir))?;
        let mut children = Vec::new();
        for de in rd {
            children.push(de.map_err(unreadable(dir))?);
        }
        // Stat in parallel too: a flat directory of 100k files would otherwise be one thread's work.
        let mut found: Vec<Found> = children
            .par_iter()
            .with_min_len(256)
            .map(|de| self.classify(de, rel, ancestors))
            .filter(|f| !matches!(f, Ok(Found::Skip)))
            .collect::<Result<_, _>>()?;
        // Siblings in manifest order, each directory's entries to come where its name (followed
        // by '/') sorts: concatenated depth first, the whole list is sorted without a global
        // sort, and each directory's sort runs on whichever thread walked it.
        found.sort_unstable_by(|a, b| walk_order(a.key(), b.key()));
        let nested: Vec<Vec<Entry>> = found
            .par_iter()
            .filter_map(|f| match f {
                Found::Dir(p, r, id) => Some((p, r, id)),
                _ => None,
            })
            .map(|(p, r, id)| {
                let mut anc = ancestors.to_vec();
                anc.push(*id);
                self.dir(p, r, &anc)
            })
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(found.len() + nested.iter().map(Vec::len).sum::<usize>());
        let mut nested = nested.into_iter();
        for f in found {
            match f {
                Found::Entry(e) => out.push(e),
                Found::Dir(..) => out.extend(nested.next().expect("one list per directory")),
                Found::Skip => {}
            }
        }
        Ok(out)
    }

    fn classify(
        &self,
        de: &fs::DirEntry,
        parent_rel: &[u8],
        ancestors: &[(u64, u64)],
    ) -> Result<Found, DatasetError> {
        let name = de.file_name();
        let name = name.as_bytes();
        if name == b".git" {
            return Ok(Found::Skip);
        }
        let mut rel = Vec::with_capacity(parent_rel.len() + 1 + name.len());
        if !parent_rel.is_empty() {
            rel.extend_from_slice(parent_rel);
            rel.push(b'/');
        }
        rel.extend_from_slice(name);
        let ft = de.file_type().map_err(|e| unreadable(&de.path())(e))?;
        if ft.is_file() && !name.contains(&b'\n') && !self.ignore.matches(&rel, false) {
            // The common case, without allocating the absolute path.
            let m = de.metadata().map_err(|e| unreadable(&de.path())(e))?;
            return Ok(Found::Entry(Entry {
                rel,
                kind: EntryKind::File(FileMeta::of(&m)),
            }));
        }
        let abs = de.path();
        let is_dir_like =
            ft.is_dir() || (ft.is_symlink() && self.opts.follow_symlinks && abs.is_dir());
        if self.ignore.matches(&rel, is_dir_like) {
            return Ok(Found::Skip);
        }
        if name.contains(&b'\n') {
            return Err(DatasetError::NewlineInPath { path: abs });
        }
        if ft.is_dir() {
            let m = de.metadata().map_err(unreadable(&abs))?;
            return Ok(Found::Dir(abs, rel, (m.dev(), m.ino())));
        }
        if ft.is_file() {
            let m = de.metadata().map_err(unreadable(&abs))?;
            return Ok(Found::Entry(Entry {
                rel,
                kind: EntryKind::File(FileMeta::of(&m)),
            }));
        }
        if ft.is_symlink() {
            if !self.opts.follow_symlinks {
                let target = fs::read_link(&abs).map_err(unreadable(&abs))?;
                return Ok(Found::Entry(Entry {
                    rel,
                    kind: EntryKind::Symlink(target.into_os_string().into_vec_bytes()),
                }));
            }
            let m = match fs::metadata(&abs) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(DatasetError::BrokenSymlink { path: abs })
                }
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    return Err(DatasetError::SymlinkLoop { path: abs })
                }
                Err(e) => return Err(unreadable(&abs)(e)),
            };
            let tft = m.file_type();
            if tft.is_dir() {
                let id = (m.dev(), m.ino());
                if ancestors.contains(&id) {
                    return Err(DatasetError::SymlinkLoop { path: abs });
                }
                return Ok(Found::Dir(abs, rel, id));
            }
            if tft.is_file() {
                return Ok(Found::Entry(Entry {
                    rel,
                    kind: EntryKind::File(FileMeta::of(&m)),
                }));
            }
            return Err(DatasetError::SpecialFile {
                path: abs,
                kind: special_kind(&tft),
            });
        }
        Err(DatasetError::SpecialFile {
            path: abs,
            kind: special_kind(&ft),
        })
    }
}

trait IntoVecBytes {
    fn into_vec_bytes(self) -> Vec<u8>;
}

impl IntoVecBytes for std::ffi::OsString {
    fn into_vec_bytes(self) -> Vec<u8> {
        std::os::unix::ffi::OsStringExt::into_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> Ignore {
        Ignore::parse(text.as_bytes(), Path::new(".reproignore")).unwrap()
    }

    /// The walk lists entries in bytewise order of their full relative paths without a global
    /// sort: a directory `d` sorts as `d/`, between siblings `d-x`/`d.x` and `d0`/`dA`.
    #[test]
    fn the_walk_lists_entries_in_bytewise_path_order() {
        let t = tempfile::tempdir().unwrap();
        let files = [
            "d-x",
            "d.x",
            "d0",
            "dA",
            "d/a",
            "d/b-c",
            "d/b/c",
            "d/b/c0",
            "d/b.c",
            "e",
            "d-",
            "d",
            "c/d/e",
            "c/d-e",
            "c/d0",
            "\u{e9}",
            "Z",
            "a b",
            "a/b/c/d/e/f",
        ];
        for f in files {
            let p = t.path().join(f);
            if p.exists() {
                continue; // "d" is a directory by then
            }
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f).unwrap();
        }
        // Many siblings too, so the parallel stat and sort of a directory are used.
        for i in 0..600 {
            std::fs::write(t.path().join(format!("d/n{}", i * 7919 % 1000)), b"x").unwrap();
        }
        let tree = walk(t.path(), None, &HashOptions::default()).unwrap();
        let rels: Vec<&[u8]> = tree.entries.iter().map(|e| e.rel.as_slice()).collect();
        let mut sorted = rels.clone();
        sorted.sort();
        assert_eq!(rels.len(), files.len() - 1 + 600);
        assert!(rels == sorted, "walk order {rels:?}");
    }

    #[test]
    fn ignore_patterns_follow_gitignore_anchoring() {
        let i = ig("# comment\n\n*.tmp\n/top.txt\ncache/\nsub/*.log\n");
        assert!(i.matches(b"a.tmp", false));
        assert!(i.matches(b"x/y/a.tmp", false));
        assert!(i.matches(b"top.txt", false));
        assert!(!i.matches(b"x/top.txt", false));
        assert!(i.matches(b"cache", true));
        assert!(i.matches(b"x/cache", true));
        assert!(
            !i.matches(b"cache", false),
            "dir-only pattern must not match a file"
        );
        assert!(i.matches(b"sub/a.log", false));
        assert!(!i.matches(b"sub/deeper/a.log", false), "* does not cross /");
        assert!(!i.matches(b"keep.txt", false));
    }

    #[test]
    fn negation_re_includes_and_the_last_matching_pattern_wins() {
        let i = ig("*.tmp\n!keep.tmp\nlogs/\n!logs/\nbuild/\n!build/a.txt\n");
        assert!(i.matches(b"x.tmp", false));
        assert!(!i.matches(b"keep.tmp", false), "re-included by !keep.tmp");
        assert!(
            !i.matches(b"sub/keep.tmp", false),
            "unanchored negation applies at any depth"
        );
        assert!(
            !i.matches(b"logs", true),
            "a later !logs/ re-includes the directory"
        );
        // As in git, a file cannot be re-included when its directory is excluded: the walker
        // never enters build/, so the negation of build/a.txt has no effect.
        assert!(i.matches(b"build", true));
        let i = ig("build/*\n!build/a.txt\n");
        assert!(
            !i.matches(b"build", true),
            "build/* leaves the directory walked"
        );
        assert!(!i.matches(b"build/a.txt", false) && i.matches(b"build/b.txt", false));
        let i = ig("!a.tmp\n*.tmp\n");
        assert!(
            i.matches(b"a.tmp", false),
            "order matters: the last match wins"
        );
        assert!(
            ig("\\!bang\n").matches(b"!bang", false),
            "\\! is a literal !"
        );
    }

    #[test]
    fn a_bad_pattern_is_refused_with_its_line_number() {
        let e = Ignore::parse(b"a\n[z-a\n", Path::new("/d/.reproignore")).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("/d/.reproignore:2: "), "{text}");
        let e = Ignore::parse(b"ok\n\xff\n", Path::new("/d/.reproignore")).unwrap_err();
        assert!(
            e.to_string().contains(":2: the pattern is not UTF-8"),
            "{e}"
        );
    }

    #[test]
    fn manifest_lines_have_the_documented_form() {
        let mut out = Vec::new();
        file_line(&mut out, &[0xab; 32], 12, b"a b/c");
        symlink_line(&mut out, &[0x01; 32], b"l");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!(
                "{} 12 a b/c\n{} symlink l\n",
                "ab".repeat(32),
                "01".repeat(32)
            )
        );
    }
}
